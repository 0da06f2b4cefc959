//! Starting a server in-process for a test, and a minimal y-websocket client.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use lectern::{AppState, Config};

/// A server running in this process on an ephemeral port.
pub struct TestServer {
    pub address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    _data_dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server on SQLite in a fresh temporary directory, with `adjust` applied to
    /// its default configuration.
    pub async fn start(adjust: impl FnOnce(&mut Config)) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let mut config = Config::with_defaults(address, data_dir.path().to_path_buf());
        // One prepared models directory shared by every test (prepared by scripts/test.sh,
        // or by the first test that needs it).
        config.models_dir = Some(lectern_ai::testing::models_dir().path().to_path_buf());
        // Uploads are parsed by child processes of the `lectern` binary; in-process, the
        // current executable is this test binary.
        config.extract_worker = Some(env!("CARGO_BIN_EXE_lectern").into());
        // Tests register faculty as well as students; the registration policy has its own
        // tests (hostile_auth.rs).
        config.registration = lectern::config::RegistrationPolicy::Open;
        adjust(&mut config);
        let state = AppState::build(config).await.expect("state");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(lectern::serve(state, listener, async move {
            let _ = stopped.await;
        }));
        Self {
            address,
            stop: Some(stop),
            task: Some(task),
            _data_dir: data_dir,
        }
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self._data_dir.path()
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn ws(&self, path: &str) -> String {
        format!("ws://{}{path}", self.address)
    }

    /// Shuts down gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server result");
        }
    }
}

pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub async fn connect(url: &str) -> Client {
    let (socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connect");
    socket
}

/// Reads until the server closes the socket; returns the close code.
pub async fn close_code(socket: &mut Client) -> Option<u16> {
    let wait = async {
        while let Some(message) = socket.next().await {
            match message {
                Ok(Message::Close(frame)) => return frame.map(|frame| u16::from(frame.code)),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), wait)
        .await
        .expect("close within 10 s")
}

pub async fn send_binary(socket: &mut Client, bytes: Vec<u8>) {
    socket
        .send(Message::Binary(bytes.into()))
        .await
        .expect("send");
}

/// An HTTP client for the tests. lectern-ai builds reqwest without a default TLS crypto
/// provider (it configures aws-lc itself), and reqwest refuses to build a client without
/// one, even for plain HTTP; so the tests install aws-lc as the process default.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::new()
}
