//! The server under test: a `lectern serve` process of its own, on a temporary data
//! directory and a free port, or one already running that the suite only connects to.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::EvalError;

/// How long the server may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Which text generator the server uses.
#[derive(Debug, Clone)]
pub enum Backend {
    /// The embedded local model.
    Local,
    /// An OpenAI-compatible server. Its key, if it needs one, is read by `lectern` from
    /// `LECTERN_AI_API_KEY` in the environment (never on a command line).
    OpenAi {
        /// API root with its version segment, e.g. `http://127.0.0.1:11434/v1`.
        base_url: String,
        /// The model name that server knows.
        model: String,
    },
    /// No generator (retrieval only).
    Off,
}

impl Backend {
    /// A short name for reports.
    pub fn describe(&self) -> String {
        match self {
            Self::Local => "local".to_owned(),
            Self::OpenAi { base_url, model } => format!("openai {model} at {base_url}"),
            Self::Off => "off".to_owned(),
        }
    }
}

/// How to start the server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Connect to this already running server (`http://host:port`) instead of starting
    /// one; the fields below are then not used. It must allow registration (the suite
    /// signs up its own faculty account) and let one user make a few hundred requests.
    pub connect: Option<String>,
    /// The `lectern` binary.
    pub binary: PathBuf,
    /// The generator.
    pub backend: Backend,
    /// Where the local models are (default: inside the temporary data directory, which
    /// means preparing them from scratch).
    pub models_dir: Option<PathBuf>,
    /// Whether the server prepares missing models at start.
    pub prepare_models: bool,
    /// Most tokens one job generates (default: the server's).
    pub max_tokens: Option<u32>,
    /// Most tokens of passages in a chat prompt (default: the server's).
    pub chat_source_tokens: Option<u32>,
}

/// The server under test.
#[derive(Debug)]
pub(crate) struct Server {
    /// `host:port`.
    pub(crate) address: String,
    /// The process, when the suite started it.
    process: Option<Process>,
}

/// A server process the suite started; killed when dropped.
#[derive(Debug)]
struct Process {
    child: Child,
    /// Holds the data directory (and the server's log, `lectern.log`) while it runs.
    data_dir: tempfile::TempDir,
}

impl Server {
    pub(crate) async fn start(options: &ServerOptions) -> Result<Self, EvalError> {
        if let Some(url) = &options.connect {
            let address = url
                .strip_prefix("http://")
                .ok_or_else(|| {
                    EvalError::Unexpected(format!("{url}: only http://host:port can be reached"))
                })?
                .trim_end_matches('/');
            return Ok(Self {
                address: address.to_owned(),
                process: None,
            });
        }
        let data_dir = tempfile::Builder::new()
            .prefix("lectern-eval-")
            .tempdir()
            .map_err(EvalError::Spawn)?;
        let mut command = Command::new(&options.binary);
        command.arg("serve").args(arguments(options, &data_dir));
        // The suite sets everything it relies on with flags; other `LECTERN_*` settings of
        // this shell (a database URL, say) must not leak into the run. The API key and the
        // log filter are the exceptions.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("LECTERN_") && name != "LECTERN_AI_API_KEY" && name != "LECTERN_LOG"
            {
                command.env_remove(name.as_ref());
            }
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(EvalError::Spawn)?;
        let stdout = child.stdout.take().ok_or(EvalError::ServerExited(
            "no standard output to read".to_owned(),
        ))?;
        let stderr = child.stderr.take().ok_or(EvalError::ServerExited(
            "no standard error to read".to_owned(),
        ))?;
        let log_path = data_dir.path().join("lectern.log");
        let (address_sender, address) = tokio::sync::oneshot::channel();
        tokio::spawn(copy_log(stdout, log_path.clone(), Some(address_sender)));
        tokio::spawn(copy_log(stderr, data_dir.path().join("lectern.err"), None));
        let address = match tokio::time::timeout(START_TIMEOUT, address).await {
            Ok(Ok(address)) => address,
            Ok(Err(_)) => {
                let status = child.wait().await.map_err(EvalError::Spawn)?;
                let log = std::fs::read_to_string(data_dir.path().join("lectern.err"))
                    .unwrap_or_default();
                return Err(EvalError::ServerExited(format!("{status}: {log}")));
            }
            Err(_) => return Err(EvalError::Timeout("the server to listen".to_owned())),
        };
        Ok(Self {
            address,
            process: Some(Process { child, data_dir }),
        })
    }

    pub(crate) fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub(crate) fn ws(&self, path: &str) -> String {
        format!("ws://{}{path}", self.address)
    }

    /// Stops the server if the suite started it (it keeps nothing: its data directory is
    /// removed); a server it only connected to keeps running.
    pub(crate) async fn stop(self) {
        if let Some(mut process) = self.process {
            let _ = process.child.kill().await;
            drop(process.data_dir);
        }
    }
}

fn arguments(options: &ServerOptions, data_dir: &tempfile::TempDir) -> Vec<String> {
    let mut args: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        // The suite signs up its own faculty account.
        "--registration",
        "open",
        // A full run outlasts the default 15-minute token.
        "--access-token-ttl-secs",
        "86400",
        "--doc-token-ttl-secs",
        "86400",
        // One user asks every question in a row: no limit may refuse it.
        "--rate-limit-per-minute",
        "1000000",
        "--rate-limit-burst",
        "100000",
        "--ai-jobs-per-minute",
        "100000",
        "--ai-classroom-daily-tokens",
        "0",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    args.push("--data-dir".to_owned());
    args.push(data_dir.path().display().to_string());
    if let Some(dir) = &options.models_dir {
        args.push("--models-dir".to_owned());
        args.push(dir.display().to_string());
    }
    args.push("--prepare-models".to_owned());
    args.push(options.prepare_models.to_string());
    if let Some(max_tokens) = options.max_tokens {
        args.push("--ai-max-tokens".to_owned());
        args.push(max_tokens.to_string());
    }
    if let Some(tokens) = options.chat_source_tokens {
        args.push("--ai-chat-source-tokens".to_owned());
        args.push(tokens.to_string());
    }
    match &options.backend {
        Backend::Local => args.extend(["--ai-backend".to_owned(), "local".to_owned()]),
        Backend::Off => args.extend(["--ai-backend".to_owned(), "off".to_owned()]),
        Backend::OpenAi { base_url, model } => args.extend([
            "--ai-backend".to_owned(),
            "openai".to_owned(),
            "--ai-base-url".to_owned(),
            base_url.clone(),
            "--ai-model".to_owned(),
            model.clone(),
        ]),
    }
    args
}

/// Copies the server's output into a file (kept for diagnosis while the run lasts), and
/// reports the address once the server logs that it listens.
async fn copy_log(
    stream: impl tokio::io::AsyncRead + Unpin,
    path: PathBuf,
    mut address: Option<tokio::sync::oneshot::Sender<String>>,
) {
    // Without a file the output is still drained, so the server never blocks on it.
    let mut file = tokio::fs::File::create(&path).await.ok();
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(file) = file.as_mut() {
            let _ = file.write_all(line.as_bytes()).await;
            let _ = file.write_all(b"\n").await;
        }
        if address.is_some()
            && let Some(found) = listening_address(&line)
            && let Some(sender) = address.take()
        {
            let _ = sender.send(found);
        }
    }
}

/// The address in the server's "lectern listening" JSON log line.
fn listening_address(line: &str) -> Option<String> {
    let record: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = record.get("fields")?;
    if fields.get("message")?.as_str()? != "lectern listening" {
        return None;
    }
    fields.get("address")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::listening_address;

    #[test]
    fn the_address_is_read_from_the_listening_line() {
        let line = r#"{"timestamp":"t","level":"INFO","fields":{"message":"lectern listening","address":"127.0.0.1:4321","max_connections":10},"target":"lectern"}"#;
        assert_eq!(listening_address(line).as_deref(), Some("127.0.0.1:4321"));
        let other = r#"{"fields":{"message":"models ready","address":"x"}}"#;
        assert_eq!(listening_address(other), None);
        assert_eq!(listening_address("not json"), None);
    }
}
