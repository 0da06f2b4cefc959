//! Persistence on SQLite (the embedded default) or PostgreSQL, through sqlx.
//!
//! # Layout
//! - this file: [`Database`], the pool for one backend chosen by URL, with its migrations
//!   (`migrations/sqlite` and `migrations/postgres`: one folder per backend, the same schema
//!   semantics, applied at connect).
//! - [`documents`]: [`SqlDocumentStore`], the `lectern_collab::Store` for room documents.
//! - [`accounts`]: [`Accounts`], users and their rotating refresh tokens.
//! - [`classrooms`]: [`Classrooms`], classrooms, join codes and memberships.
//! - [`sessions`]: [`Sessions`], live sessions and the registry of classroom documents
//!   (which classroom, session and student a document id belongs to).
//! - [`materials`]: [`Materials`], course material uploaded to a classroom, its ingestion
//!   state, and its text chunks with their embeddings.
//! - [`ai_jobs`]: [`AiJobs`], AI job records: status, usage, the node running each job and
//!   its heartbeat, cancel requests; readable from every node.
//! - [`leases`]: [`Leases`], named locks with an expiry, so exactly one node of a cluster
//!   does a piece of work (compacting a document, ingesting a material).
//! - [`webhooks`]: [`Webhooks`], classrooms' webhooks and their outbox (the delivery log),
//!   claimed by one node at a time.
//! - [`notifications`]: [`Notifications`], each user's notification settings (email on or
//!   off) and the students of a class who get email.
//! - [`testing`]: helpers that give tests a fresh PostgreSQL database.
//!
//! Queries are written out per backend rather than through `sqlx::Any`: the two dialects
//! differ (placeholders, types), and seeing both side by side keeps them honestly equal.

pub mod accounts;
pub mod ai_jobs;
mod checkpoint;
pub mod classrooms;
pub mod documents;
pub mod history;
pub mod leases;
pub mod materials;
pub mod notifications;
pub mod sessions;
pub mod testing;
pub mod webhooks;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use accounts::Accounts;
pub use ai_jobs::AiJobs;
pub use classrooms::Classrooms;
pub use documents::SqlDocumentStore;
pub use history::{History, Retention};
pub use leases::Leases;
pub use materials::Materials;
pub use notifications::Notifications;
pub use sessions::Sessions;
pub use webhooks::Webhooks;

/// How long a SQLite connection waits for another writer before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// SQLite allows one writer at a time. With several connections, two rooms appending at
/// once meet SQLite's busy handler, which *sleeps* (1 ms and up) before retrying: a latency
/// spike on the broadcast path. One connection makes them queue in the pool instead, which
/// costs microseconds.
const SQLITE_MAX_CONNECTIONS: u32 = 1;

/// PostgreSQL connections per server node.
const POSTGRES_MAX_CONNECTIONS: u32 = 16;

/// How long to wait for a free pooled connection before reporting the database unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL is neither `sqlite:` nor `postgres:`/`postgresql:`.
    #[error("unsupported database URL scheme in {0:?} (expected sqlite:// or postgres://)")]
    UnsupportedUrl(String),
    /// Connecting or querying failed.
    #[error("database query failed")]
    Query(#[from] sqlx::Error),
    /// Applying the schema migrations failed.
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored update could not be decoded while compacting its document.
    #[error("stored update does not decode")]
    UndecodableUpdate(#[source] yrs::encoding::read::Error),
    /// A stored update decoded but could not be applied while compacting its document.
    #[error("stored update does not apply")]
    InapplicableUpdate(#[source] yrs::error::UpdateError),
    /// A blocking helper task panicked or was cancelled.
    #[error("background task failed")]
    Task(#[from] tokio::task::JoinError),
    /// Another account already uses this email address.
    #[error("email address already registered")]
    EmailTaken,
    /// Another classroom already uses this join code.
    #[error("join code already in use")]
    JoinCodeTaken,
    /// A stored role is not one this version knows (written by a newer version?).
    #[error("unknown role {0:?} in the database")]
    UnknownRole(String),
    /// The classroom already has a session that has not ended.
    #[error("the classroom already has a running session")]
    SessionAlreadyRunning,
    /// A stored session state is not one this version knows.
    #[error("unknown session state {0:?} in the database")]
    UnknownSessionState(String),
    /// A stored document kind is not one this version knows.
    #[error("unknown document kind {0:?} in the database")]
    UnknownDocKind(String),
    /// A stored material format or status is not one this version knows.
    #[error("unknown material format or status {0:?} in the database")]
    UnknownMaterialValue(String),
    /// A stored AI job status is not one this version knows.
    #[error("unknown AI job value {0:?} in the database")]
    UnknownAiJobValue(String),
    /// A stored webhook delivery state is not one this version knows.
    #[error("unknown webhook delivery state {0:?} in the database")]
    UnknownDeliveryState(String),
    /// A stored embedding is not a whole number of f32s.
    #[error("stored embedding of {0} bytes is not a list of f32s")]
    CorruptEmbedding(usize),
}

/// Whether `error` is a unique-constraint violation (both backends report it the same way
/// through sqlx), so callers can turn it into a typed [`DbError`].
fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(database) if database.is_unique_violation())
}

/// A connection pool to one backend. Cheap to clone.
#[derive(Debug, Clone)]
pub enum Database {
    /// The embedded default: one SQLite file in WAL mode.
    Sqlite(SqlitePool),
    /// A PostgreSQL server, for several server nodes sharing one database.
    Postgres(PgPool),
}

impl Database {
    /// Connects to `url` (`sqlite://FILE` — created if missing — or `postgres://...`) and
    /// applies the migrations.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        let database = if url.starts_with("sqlite:") {
            // WAL with synchronous=NORMAL: a commit survives a crash of this process (the
            // write-ahead guarantee rooms rely on); a power loss may lose the last commits.
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .pragma("wal_autocheckpoint", "0");
            let pool = SqlitePoolOptions::new()
                .max_connections(SQLITE_MAX_CONNECTIONS)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options.clone())
                .await?;
            sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
            checkpoint::spawn_checkpointer(&options, pool.clone()).await?;
            Self::Sqlite(pool)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = PgPoolOptions::new()
                .max_connections(POSTGRES_MAX_CONNECTIONS)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect(url)
                .await?;
            sqlx::migrate!("./migrations/postgres").run(&pool).await?;
            Self::Postgres(pool)
        } else {
            return Err(DbError::UnsupportedUrl(url.to_owned()));
        };
        Ok(database)
    }

    /// Which backend this is, for logs.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// Checks that the database answers (for readiness probes).
    pub async fn ping(&self) -> Result<(), DbError> {
        match self {
            Self::Sqlite(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
            Self::Postgres(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
        }
        Ok(())
    }

    /// The room document store on this database, keeping history for `retention`.
    pub fn document_store(&self, retention: Retention) -> Arc<dyn lectern_collab::Store> {
        Arc::new(SqlDocumentStore::new(self.clone(), retention))
    }

    /// Waits for in-flight queries and closes every connection.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }
}
