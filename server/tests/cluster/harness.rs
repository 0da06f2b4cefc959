//! The harness of the cluster tests: real `lectern` processes (the binary cargo built),
//! the services they share, a y-sync client with its own replica, and a slow model.
//!
//! Everything here waits on conditions with deadlines; nothing sleeps a fixed time.

use std::collections::{HashMap, VecDeque};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Message as Frame;
use yrs::sync::awareness::AwarenessUpdateEntry;
use yrs::sync::{AwarenessUpdate, Message, MessageReader, SyncMessage};
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

/// The signing secret every node of a test shares, so a token from one works on all.
pub const JWT_SECRET: &str = "cluster-test-secret-of-at-least-32-bytes!";

/// The Redis every node uses unless a test brings its own.
const SHARED_REDIS: &str = "127.0.0.1:6379";

/// How long a node may take to answer `/readyz` with `ready` (migrations on a fresh
/// database, the first connection to Redis).
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Log lines kept per node, printed when a test fails.
const KEPT_LOG_LINES: usize = 60;

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|ci| ci == "true")
}

/// Skips a test (outside CI) or fails it (under `CI=true`) because `what` is missing.
fn missing(what: &str) {
    assert!(!under_ci(), "{what} is required under CI=true");
    eprintln!("skipping: {what}");
}

/// What the nodes of one test share: a fresh PostgreSQL database and a Redis key prefix
/// of their own.
pub struct Services {
    /// The test's PostgreSQL database.
    pub database_url: String,
    /// The shared Redis, `redis://127.0.0.1:6379`.
    pub redis_url: String,
    /// A prefix no other test uses.
    pub prefix: String,
}

/// PostgreSQL (a fresh database) and the shared Redis; None (outside CI) when either is
/// unreachable, after saying so.
pub async fn services() -> Option<Services> {
    if !redis_answers(SHARED_REDIS).await {
        missing(&format!("Redis at {SHARED_REDIS}"));
        return None;
    }
    let database_url = lectern_db::testing::postgres_url().await?;
    Some(Services {
        database_url,
        redis_url: format!("redis://{SHARED_REDIS}"),
        prefix: unique_prefix(),
    })
}

/// `cluster-test-<pid>-<n>-<nanos>`: unique across the test processes of one run.
fn unique_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    format!(
        "cluster-test-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether a Redis answers PING at `address`.
async fn redis_answers(address: &str) -> bool {
    let ping = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).await.ok()?;
        Some(&reply == b"+PONG\r\n")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), ping).await,
        Ok(Some(true))
    )
}

/// A free TCP port on 127.0.0.1 (bound, then released for the caller to use).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Polls `check` until it gives a value, for at most `within`; panics naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    loop {
        poll.tick().await;
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
    }
}

/// A `lectern serve` process of a test's cluster. Killed when dropped.
pub struct Node {
    /// A name for messages ("A", "B"...).
    pub name: &'static str,
    /// Where it listens.
    pub address: String,
    child: Child,
    logs: Arc<Mutex<VecDeque<String>>>,
    http: reqwest::Client,
    _data_dir: tempfile::TempDir,
}

impl Node {
    /// Starts a node on `services`' database and Redis with `extra` flags (later flags win)
    /// and waits until it listens; see [`Node::wait_ready`].
    pub async fn start(name: &'static str, services: &Services, extra: &[&str]) -> Self {
        Self::start_with_redis(name, services, &services.redis_url, extra).await
    }

    /// [`Node::start`] against the Redis at `redis_url`.
    pub async fn start_with_redis(
        name: &'static str,
        services: &Services,
        redis_url: &str,
        extra: &[&str],
    ) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let models = lectern_ai::testing::models_dir().path().to_path_buf();
        let mut command = Command::new(env!("CARGO_BIN_EXE_lectern"));
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(["--database-url", &services.database_url])
            .args(["--redis-url", redis_url])
            .args(["--redis-prefix", &services.prefix])
            .args(["--jwt-secret", JWT_SECRET])
            .args(["--log-format", "json"])
            .args(["--registration", "open"])
            .arg("--models-dir")
            .arg(&models)
            .args(["--prepare-models", "false"])
            // The tests poll; the REST rate limit is not what they check.
            .args(["--rate-limit-burst", "100000"])
            .args(extra)
            .env("LECTERN_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("lectern starts");
        let logs = Arc::new(Mutex::new(VecDeque::new()));
        let (listening, address) = oneshot::channel();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        tokio::spawn(drain(stdout, logs.clone(), Some(listening)));
        tokio::spawn(drain(stderr, logs.clone(), None));
        let address = match tokio::time::timeout(READY_WITHIN, address).await {
            Ok(Ok(address)) => address,
            _ => panic!(
                "node {name} never said where it listens:\n{}",
                logs.lock()
                    .expect("logs")
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        };
        Self {
            name,
            address,
            child,
            logs,
            http: http_client(),
            _data_dir: data_dir,
        }
    }

    /// `http://<address><path>`.
    pub fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// `ws://<address><path>`.
    pub fn ws(&self, path: &str) -> String {
        format!("ws://{}{path}", self.address)
    }

    /// What `/readyz` says now (None when it does not answer).
    pub async fn readyz(&self) -> Option<String> {
        let response = self.http.get(self.http("/readyz")).send().await.ok()?;
        response.text().await.ok()
    }

    /// Waits until `/readyz` says exactly `expected`.
    pub async fn wait_readyz(&self, expected: &str, within: Duration) {
        let what = format!("node {} /readyz to say {expected:?}", self.name);
        eventually(&what, within, || async {
            (self.readyz().await.as_deref() == Some(expected)).then_some(())
        })
        .await;
    }

    /// Waits until the node is ready: database reachable and Redis link up.
    pub async fn wait_ready(&self) {
        self.wait_readyz("ready", READY_WITHIN).await;
    }

    /// The value of the first sample of metric `name` (exact name, labels ignored).
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self
            .http
            .get(self.http("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("node {} has no metric {name}", self.name))
    }

    /// SIGKILL, and waits for the process to be gone.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        // Not every answer is JSON (e.g. a plain-text 404): keep it as a string then.
        let body = match serde_json::from_str(&text) {
            _ if text.is_empty() => Value::Null,
            Ok(json) => json,
            Err(_) => Value::String(text),
        };
        (status, body)
    }

    /// `POST /api/v1<path>` with a JSON body.
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        let url = self.http(&format!("/api/v1{path}"));
        self.send(self.http.post(url).json(&body), token).await
    }

    /// `GET /api/v1<path>`.
    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let url = self.http(&format!("/api/v1{path}"));
        self.send(self.http.get(url), token).await
    }

    /// `DELETE /api/v1<path>`.
    pub async fn delete(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let url = self.http(&format!("/api/v1{path}"));
        self.send(self.http.delete(url), token).await
    }

    /// Uploads `bytes` as `file_name` to a classroom's materials.
    pub async fn upload(
        &self,
        classroom_id: &str,
        token: &str,
        file_name: &str,
        bytes: Vec<u8>,
    ) -> (StatusCode, Value) {
        let part = reqwest::multipart::Part::bytes(bytes).file_name(file_name.to_owned());
        let form = reqwest::multipart::Form::new().part("file", part);
        let url = self.http(&format!("/api/v1/classrooms/{classroom_id}/materials"));
        self.send(self.http.post(url).multipart(form), Some(token))
            .await
    }

    /// Registers an account; its tokens and id.
    pub async fn register(&self, email: &str, role: &str) -> Login {
        let body =
            json!({"email": email, "display_name": email, "password": PASSWORD, "role": role});
        let (status, body) = self.post("/auth/register", None, body).await;
        assert_eq!(status, StatusCode::CREATED, "register {email}: {body}");
        Login::from(body)
    }

    /// Logs `email` in again: another login (another device) of the same account.
    pub async fn login(&self, email: &str) -> Login {
        let body = json!({"email": email, "password": PASSWORD});
        let (status, body) = self.post("/auth/login", None, body).await;
        assert_eq!(status, StatusCode::OK, "login {email}: {body}");
        Login::from(body)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = self
                .logs
                .lock()
                .map(|logs| logs.iter().cloned().collect::<Vec<_>>());
            eprintln!(
                "---- last log lines of node {} ({}) ----\n{}",
                self.name,
                self.address,
                logs.unwrap_or_default().join("\n")
            );
        }
    }
}

/// Reads a node's output line by line, keeping the last lines, and reports the address
/// from its `lectern listening` line.
async fn drain(
    output: impl AsyncRead + Unpin,
    logs: Arc<Mutex<VecDeque<String>>>,
    mut listening: Option<oneshot::Sender<String>>,
) {
    let mut lines = BufReader::new(output).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Ok(entry) = serde_json::from_str::<Value>(&line)
            && entry["fields"]["message"] == "lectern listening"
            && let Some(address) = entry["fields"]["address"].as_str()
            && let Some(listening) = listening.take()
        {
            let _ = listening.send(address.to_owned());
        }
        if let Ok(mut logs) = logs.lock() {
            if logs.len() == KEPT_LOG_LINES {
                logs.pop_front();
            }
            logs.push_back(line);
        }
    }
}

/// The password of every account the tests make.
const PASSWORD: &str = "correct horse battery staple";

/// An HTTP client. lectern-ai builds reqwest without a default TLS crypto provider, and
/// reqwest refuses to build a client without one, even for plain HTTP.
fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::new()
}

/// A login's tokens and its account id.
pub struct Login {
    /// The access token.
    pub access: String,
    /// The refresh token (what logout takes).
    pub refresh: String,
    /// The account id.
    pub user_id: String,
}

impl From<Value> for Login {
    fn from(body: Value) -> Self {
        Self {
            access: body["access_token"].as_str().expect("access_token").into(),
            refresh: body["refresh_token"]
                .as_str()
                .expect("refresh_token")
                .into(),
            user_id: body["user"]["id"].as_str().expect("user id").into(),
        }
    }
}

/// A `redis-server` owned by one test, on a port of its own, without persistence.
pub struct OwnedRedis {
    /// Its port.
    pub port: u16,
    child: Option<Child>,
}

impl OwnedRedis {
    /// Starts one on a free port; None (outside CI) when `redis-server` is not installed.
    pub async fn start() -> Option<Self> {
        let mut redis = Self {
            port: free_port(),
            child: None,
        };
        if !redis.restart().await {
            missing("redis-server (the test runs its own)");
            return None;
        }
        Some(redis)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on its port and waits until it answers; false when it cannot run.
    pub async fn restart(&mut self) -> bool {
        let port = self.port.to_string();
        let spawned = Command::new("redis-server")
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let Ok(child) = spawned else {
            return false;
        };
        self.child = Some(child);
        let address = format!("127.0.0.1:{}", self.port);
        eventually(
            "the test's redis-server to answer",
            Duration::from_secs(10),
            || {
                let address = address.clone();
                async move { redis_answers(&address).await.then_some(()) }
            },
        )
        .await;
        true
    }

    /// SIGKILL, and waits for the process to be gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

/// What a client's reader has seen so far.
#[derive(Debug, Default)]
struct Seen {
    /// Sync step 2 messages received (the answers to this client's step 1s).
    step2s: Vec<Vec<u8>>,
    /// Awareness states of other clients by client id (JSON), as last received.
    awareness: HashMap<u64, String>,
    /// Frames received, so waiters wake on every change.
    frames: u64,
    /// Set when the socket ended: the close code, if the server sent one.
    closed: Option<Option<u16>>,
}

/// A y-sync client on one document over its own WebSocket, with its own replica. A reader
/// task applies what the server sends and answers its sync step 1; edits are made on the
/// replica and sent as updates.
pub struct YClient {
    /// What the client is called in messages.
    pub name: String,
    doc: Doc,
    outgoing: mpsc::UnboundedSender<Frame>,
    seen: watch::Receiver<Seen>,
    awareness_clock: u32,
}

impl YClient {
    /// Connects to `url` and starts syncing (sync step 1 with its empty state).
    pub async fn connect(name: &str, url: &str) -> Self {
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .unwrap_or_else(|error| panic!("{name}: websocket connect to {url}: {error}"));
        let (mut sink, stream) = socket.split();
        let (outgoing, mut frames) = mpsc::unbounded_channel::<Frame>();
        tokio::spawn(async move {
            while let Some(frame) = frames.recv().await {
                if sink.send(frame).await.is_err() {
                    return;
                }
            }
        });
        let doc = Doc::new();
        let (seen_sender, seen) = watch::channel(Seen::default());
        tokio::spawn(read_loop(
            stream,
            doc.clone(),
            outgoing.clone(),
            seen_sender,
        ));
        let client = Self {
            name: name.to_owned(),
            doc,
            outgoing,
            seen,
            awareness_clock: 0,
        };
        client.send(&Message::Sync(SyncMessage::SyncStep1(
            StateVector::default(),
        )));
        client
    }

    fn send(&self, message: &Message) {
        // A closed socket shows in `closed`; the tests check that, not each send.
        let _ = self
            .outgoing
            .send(Frame::Binary(message.encode_v1().into()));
    }

    /// Waits until the server answered the first sync step 1 (the client has the document).
    pub async fn synced(&self) {
        self.wait_seen("the first sync step 2", Duration::from_secs(10), |seen| {
            !seen.step2s.is_empty()
        })
        .await;
    }

    async fn wait_seen(&self, what: &str, within: Duration, check: impl Fn(&Seen) -> bool) {
        let mut seen = self.seen.clone();
        let waited = tokio::time::timeout(within, seen.wait_for(|seen| check(seen))).await;
        match waited {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => panic!("{}: reader gone while waiting for {what}", self.name),
            Err(_) => panic!(
                "{}: timed out after {within:?} waiting for {what} (closed: {:?}, text: {:?})",
                self.name,
                self.seen.borrow().closed,
                self.text()
            ),
        }
    }

    /// Appends `text` to the root text `root` of the replica and sends the change.
    pub fn append_to(&self, root: &str, text: &str) {
        let body = self.doc.get_or_insert_text(root);
        let update = {
            let mut txn = self.doc.transact_mut();
            let end = body.len(&txn);
            body.insert(&mut txn, end, text);
            txn.encode_update_v1()
        };
        self.send(&Message::Sync(SyncMessage::Update(update)));
    }

    /// Appends `text` to the root text `body`.
    pub fn append(&self, text: &str) {
        self.append_to("body", text);
    }

    /// The replica's root text `body`.
    pub fn text(&self) -> String {
        let body = self.doc.get_or_insert_text("body");
        body.get_string(&self.doc.transact())
    }

    /// Waits until the replica's `body` holds every one of `tokens`.
    pub async fn wait_for_tokens(&self, tokens: &[String], within: Duration) {
        let what = format!("{} tokens", tokens.len());
        let body = self.doc.get_or_insert_text("body");
        let doc = self.doc.clone();
        let has_all = move |_: &Seen| {
            let text = body.get_string(&doc.transact());
            tokens.iter().all(|token| text.contains(token.as_str()))
        };
        let mut seen = self.seen.clone();
        if tokio::time::timeout(within, seen.wait_for(has_all))
            .await
            .is_err()
        {
            let text = self.text();
            let lacking: Vec<&String> = tokens
                .iter()
                .filter(|token| !text.contains(token.as_str()))
                .collect();
            panic!(
                "{}: after {within:?} still lacks {} of {what}: {lacking:?} (closed: {:?})",
                self.name,
                lacking.len(),
                self.seen.borrow().closed
            );
        }
    }

    /// The server room's whole state, asked for with a sync step 1 on this socket. A room
    /// handles a socket's messages in order, so every update sent before was applied (or
    /// refused) by then.
    pub async fn server_state(&self) -> Doc {
        let before = self.seen.borrow().step2s.len();
        self.send(&Message::Sync(SyncMessage::SyncStep1(
            StateVector::default(),
        )));
        self.wait_seen(
            "the answer to a sync step 1",
            Duration::from_secs(10),
            |seen| seen.step2s.len() > before,
        )
        .await;
        let state = self.seen.borrow().step2s.last().cloned().expect("a step 2");
        let doc = Doc::new();
        doc.transact_mut()
            .apply_update(Update::decode_v1(&state).expect("step 2 decodes"))
            .expect("step 2 applies");
        doc
    }

    /// Announces this client's awareness state (`json`).
    pub fn set_awareness(&mut self, json: &str) {
        self.awareness_clock += 1;
        let entry = AwarenessUpdateEntry {
            clock: self.awareness_clock,
            json: Arc::from(json),
        };
        let update = AwarenessUpdate {
            clients: HashMap::from([(self.doc.client_id(), entry)]),
        };
        self.send(&Message::Awareness(update));
    }

    /// This client's id (in its updates and awareness).
    pub fn client_id(&self) -> u64 {
        self.doc.client_id().get()
    }

    /// Waits until the awareness state of `client_id` received is `json`.
    pub async fn wait_for_awareness(&self, client_id: u64, json: &str, within: Duration) {
        let what = format!("awareness {json} of client {client_id}");
        self.wait_seen(&what, within, |seen| {
            seen.awareness.get(&client_id).map(String::as_str) == Some(json)
        })
        .await;
    }

    /// Waits until the server closes the socket; its close code (None: no close frame).
    pub async fn closed(&self, within: Duration) -> Option<u16> {
        self.wait_seen("the socket to close", within, |seen| seen.closed.is_some())
            .await;
        self.seen.borrow().closed.flatten()
    }
}

/// Reads a client's socket: applies updates, answers sync step 1, records step 2s,
/// awareness and the close.
async fn read_loop(
    mut stream: futures_util::stream::SplitStream<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
    >,
    doc: Doc,
    outgoing: mpsc::UnboundedSender<Frame>,
    seen: watch::Sender<Seen>,
) {
    let closed = loop {
        let bytes = match stream.next().await {
            Some(Ok(Frame::Binary(bytes))) => bytes,
            Some(Ok(Frame::Close(frame))) => break frame.map(|frame| u16::from(frame.code)),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => break None,
        };
        let mut decoder = DecoderV1::from(bytes.as_ref());
        let mut step2 = None;
        let mut awareness = Vec::new();
        for message in MessageReader::new(&mut decoder) {
            match message {
                Ok(Message::Sync(SyncMessage::SyncStep1(theirs))) => {
                    let diff = doc.transact().encode_state_as_update_v1(&theirs);
                    let reply = Message::Sync(SyncMessage::SyncStep2(diff));
                    let _ = outgoing.send(Frame::Binary(reply.encode_v1().into()));
                }
                Ok(Message::Sync(SyncMessage::SyncStep2(update))) => {
                    apply(&doc, &update);
                    step2 = Some(update);
                }
                Ok(Message::Sync(SyncMessage::Update(update))) => apply(&doc, &update),
                Ok(Message::Awareness(update)) => {
                    awareness.extend(
                        update
                            .clients
                            .into_iter()
                            .map(|(id, entry)| (id.get(), entry.json.to_string())),
                    );
                }
                // Control replies and anything else: not what these tests read.
                Ok(_) => {}
                Err(_) => break,
            }
        }
        seen.send_modify(|seen| {
            seen.frames += 1;
            seen.step2s.extend(step2);
            for (id, json) in awareness {
                if json == "null" {
                    seen.awareness.remove(&id);
                } else {
                    seen.awareness.insert(id, json);
                }
            }
        });
    };
    seen.send_modify(|seen| seen.closed = Some(closed));
}

fn apply(doc: &Doc, update: &[u8]) {
    let update = Update::decode_v1(update).expect("the server sends updates that decode");
    doc.transact_mut()
        .apply_update(update)
        .expect("the server sends updates that apply");
}

/// The text of root `body` of `doc`.
pub fn body_text(doc: &Doc) -> String {
    let body = doc.get_or_insert_text("body");
    body.get_string(&doc.transact())
}

/// The `;`-terminated tokens in `text` (what the streaming tests append), in order.
pub fn tokens_in(text: &str) -> Vec<String> {
    text.split_inclusive(';')
        .filter(|token| token.ends_with(';'))
        .map(str::to_owned)
        .collect()
}

/// A request that reached the slow model.
pub struct Arrival {
    /// Resolves (with an error) once the server stopped reading the answer: the generation
    /// was given up.
    pub abandoned: oneshot::Receiver<()>,
}

/// A local OpenAI-compatible server that answers slowly and without end: one token every
/// 100 ms, so a job is still running when a test cancels it.
pub struct SlowModel {
    /// Its API root (`--ai-base-url`).
    pub base_url: String,
    arrivals: mpsc::UnboundedReceiver<Arrival>,
}

impl SlowModel {
    /// Starts it on a free port.
    pub async fn start() -> Self {
        let (sender, arrivals) = mpsc::unbounded_channel();
        let app = Router::new().route(
            "/v1/chat/completions",
            post(move |_body: Bytes| {
                let sender = sender.clone();
                async move {
                    let (guard, abandoned) = oneshot::channel::<()>();
                    let _ = sender.send(Arrival { abandoned });
                    slow_answer(guard)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            base_url: format!("http://{address}/v1"),
            arrivals,
        }
    }

    /// The next request to reach the model.
    pub async fn next(&mut self) -> Arrival {
        tokio::time::timeout(Duration::from_secs(30), self.arrivals.recv())
            .await
            .expect("a request reaches the model within 30 s")
            .expect("model running")
    }
}

/// An SSE answer of one token every 100 ms, for a minute; `guard` is dropped with the
/// stream, i.e. when the server stops reading it.
fn slow_answer(guard: oneshot::Sender<()>) -> Response {
    let ticks = tokio_stream_interval(Duration::from_millis(100)).take(600);
    let body = ticks.enumerate().map(move |(index, ())| {
        let _keep = &guard;
        let data = json!({
            "choices": [{"index": 0, "delta": {"content": format!("w{index} ")}, "finish_reason": null}],
        });
        Ok::<_, std::io::Error>(Bytes::from(format!("data: {data}\n\n")))
    });
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        Body::from_stream(body),
    )
        .into_response()
}

/// A stream yielding every `period` (the first at once).
fn tokio_stream_interval(period: Duration) -> impl futures_util::Stream<Item = ()> {
    futures_util::stream::unfold(tokio::time::interval(period), |mut interval| async move {
        interval.tick().await;
        Some(((), interval))
    })
}

/// Prepares the test models directory every node uses (the materials test embeds for
/// real; the nodes do not prepare models themselves).
pub async fn prepare_models() {
    tokio::task::spawn_blocking(|| {
        lectern_ai::testing::prepared();
    })
    .await
    .expect("models prepared");
}
