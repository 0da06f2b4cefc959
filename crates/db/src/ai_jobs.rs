//! AI jobs as records: what each job is, where it is, how it ended, which node runs it and
//! when that node last said it was alive. Every node reads them, so a job's status and its
//! cancellation work through any node, and a job outlives the node that ran it as a record.
//!
//! A job is *unfinished* exactly while `finished_at` is NULL; every update below applies to
//! unfinished jobs only, so an ended job stays as it ended (first end wins).
//!
//! Heartbeat times are the running node's clock (Unix milliseconds), compared by readers
//! against theirs: a skew between nodes only shifts the staleness bound by that much, which
//! is nothing next to a bound of a minute.

use sqlx::QueryBuilder;

use crate::{Database, DbError};

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    /// Accepted; preparing or waiting for a generation slot.
    Queued,
    /// Writing into its document.
    Streaming,
    /// Finished; the document holds the result.
    Done,
    /// Failed; `error` says why.
    Failed,
    /// Cancelled; what it wrote stays.
    Cancelled,
}

impl JobStatus {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Streaming => "streaming",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Result<Self, DbError> {
        match text {
            "queued" => Ok(Self::Queued),
            "streaming" => Ok(Self::Streaming),
            "done" => Ok(Self::Done),
            "failed" => Ok(Self::Failed),
            "cancelled" => Ok(Self::Cancelled),
            other => Err(DbError::UnknownAiJobValue(other.to_owned())),
        }
    }

    /// Whether the job is over.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Cancelled)
    }
}

/// A stored AI job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AiJobRecord {
    /// Opaque, server-generated id.
    pub id: String,
    /// What it produces, as the server names its job kinds (`chat`, `notes`, ...).
    pub kind: String,
    /// The session it belongs to.
    pub session_id: String,
    /// The session's classroom (who may see the job depends on it).
    pub classroom_id: String,
    /// The document it writes into.
    pub doc_id: String,
    /// Where it is.
    pub status: JobStatus,
    /// Why it failed; `None` unless failed.
    pub error: Option<String>,
    /// Whether the answer came from the answer cache.
    pub cached: bool,
    /// Prompt tokens counted.
    pub prompt_tokens: u32,
    /// Generated tokens counted.
    pub completion_tokens: u32,
    /// The account that started it.
    pub started_by: String,
    /// When it was accepted, Unix seconds.
    pub created_at: i64,
    /// When it ended, Unix seconds; `None` while unfinished.
    pub finished_at: Option<i64>,
    /// The node running it.
    pub node: String,
    /// When that node last said it was alive, Unix milliseconds (its clock).
    pub heartbeat_at_ms: i64,
    /// Someone asked to cancel it.
    pub cancel_requested: bool,
}

/// What a job used, recorded when it ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobUsage {
    /// Prompt tokens counted.
    pub prompt_tokens: u32,
    /// Generated tokens counted.
    pub completion_tokens: u32,
    /// Whether the answer came from the answer cache.
    pub cached: bool,
}

/// Columns of `ai_jobs`, in `job_columns!` order.
type JobRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    bool,
    i64,
    i64,
    String,
    i64,
    Option<i64>,
    String,
    i64,
    bool,
);

/// The columns of `ai_jobs`, as a literal so queries stay `&'static str`.
macro_rules! job_columns {
    () => {
        "id, kind, session_id, classroom_id, doc_id, status, error, cached, prompt_tokens, \
         completion_tokens, started_by, created_at, finished_at, node, heartbeat_at_ms, \
         cancel_requested"
    };
}

fn job_from_row(row: JobRow) -> Result<AiJobRecord, DbError> {
    let (
        id,
        kind,
        session_id,
        classroom_id,
        doc_id,
        status,
        error,
        cached,
        prompt_tokens,
        completion_tokens,
        started_by,
        created_at,
        finished_at,
        node,
        heartbeat_at_ms,
        cancel_requested,
    ) = row;
    Ok(AiJobRecord {
        id,
        kind,
        session_id,
        classroom_id,
        doc_id,
        status: JobStatus::parse(&status)?,
        error,
        cached,
        prompt_tokens: tokens(prompt_tokens),
        completion_tokens: tokens(completion_tokens),
        started_by,
        created_at,
        finished_at,
        node,
        heartbeat_at_ms,
        cancel_requested,
    })
}

fn tokens(stored: i64) -> u32 {
    u32::try_from(stored.max(0)).unwrap_or(u32::MAX)
}

/// AI job records in SQLite or PostgreSQL. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AiJobs {
    database: Database,
}

impl AiJobs {
    /// AI jobs on `database` (already migrated).
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    /// Stores a new job.
    pub async fn insert(&self, job: &AiJobRecord) -> Result<(), DbError> {
        macro_rules! insert {
            ($sql:expr, $pool:expr) => {
                sqlx::query($sql)
                    .bind(&job.id)
                    .bind(&job.kind)
                    .bind(&job.session_id)
                    .bind(&job.classroom_id)
                    .bind(&job.doc_id)
                    .bind(job.status.as_str())
                    .bind(&job.error)
                    .bind(job.cached)
                    .bind(i64::from(job.prompt_tokens))
                    .bind(i64::from(job.completion_tokens))
                    .bind(&job.started_by)
                    .bind(job.created_at)
                    .bind(job.finished_at)
                    .bind(&job.node)
                    .bind(job.heartbeat_at_ms)
                    .bind(job.cancel_requested)
                    .execute($pool)
                    .await?
                    .rows_affected()
            };
        }
        match &self.database {
            Database::Sqlite(pool) => insert!(
                concat!(
                    "INSERT INTO ai_jobs (",
                    job_columns!(),
                    ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                pool
            ),
            Database::Postgres(pool) => insert!(
                concat!(
                    "INSERT INTO ai_jobs (",
                    job_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
                     $15, $16)"
                ),
                pool
            ),
        };
        Ok(())
    }

    /// The job with this id, if any.
    pub async fn get(&self, id: &str) -> Result<Option<AiJobRecord>, DbError> {
        let row: Option<JobRow> = match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    job_columns!(),
                    " FROM ai_jobs WHERE id = ?"
                ))
                .bind(id)
                .fetch_optional(pool)
                .await?
            }
            Database::Postgres(pool) => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    job_columns!(),
                    " FROM ai_jobs WHERE id = $1"
                ))
                .bind(id)
                .fetch_optional(pool)
                .await?
            }
        };
        row.map(job_from_row).transpose()
    }

    /// Moves an unfinished job to another running status (`queued` or `streaming`; an end
    /// goes through [`AiJobs::finish`]). Returns whether the job was unfinished.
    pub async fn set_status(&self, id: &str, status: JobStatus) -> Result<bool, DbError> {
        let rows = match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query("UPDATE ai_jobs SET status = ? WHERE id = ? AND finished_at IS NULL")
                    .bind(status.as_str())
                    .bind(id)
                    .execute(pool)
                    .await?
                    .rows_affected()
            }
            Database::Postgres(pool) => {
                sqlx::query("UPDATE ai_jobs SET status = $1 WHERE id = $2 AND finished_at IS NULL")
                    .bind(status.as_str())
                    .bind(id)
                    .execute(pool)
                    .await?
                    .rows_affected()
            }
        };
        Ok(rows == 1)
    }

    /// Records how an unfinished job ended. Returns whether it was unfinished (an ended job
    /// keeps its first end).
    pub async fn finish(
        &self,
        id: &str,
        status: JobStatus,
        error: Option<&str>,
        usage: JobUsage,
        finished_at: i64,
    ) -> Result<bool, DbError> {
        macro_rules! finish {
            ($sql:expr, $pool:expr) => {
                sqlx::query($sql)
                    .bind(status.as_str())
                    .bind(error)
                    .bind(usage.cached)
                    .bind(i64::from(usage.prompt_tokens))
                    .bind(i64::from(usage.completion_tokens))
                    .bind(finished_at)
                    .bind(id)
                    .execute($pool)
                    .await?
                    .rows_affected()
            };
        }
        let rows = match &self.database {
            Database::Sqlite(pool) => finish!(
                "UPDATE ai_jobs SET status = ?, error = ?, cached = ?, prompt_tokens = ?, \
                 completion_tokens = ?, finished_at = ? WHERE id = ? AND finished_at IS NULL",
                pool
            ),
            Database::Postgres(pool) => finish!(
                "UPDATE ai_jobs SET status = $1, error = $2, cached = $3, prompt_tokens = $4, \
                 completion_tokens = $5, finished_at = $6 WHERE id = $7 AND finished_at IS NULL",
                pool
            ),
        };
        Ok(rows == 1)
    }

    /// Asks for an unfinished job to be cancelled; its node sees it on its next heartbeat.
    /// Returns whether the job was unfinished.
    pub async fn request_cancel(&self, id: &str) -> Result<bool, DbError> {
        let rows = match &self.database {
            Database::Sqlite(pool) => sqlx::query(
                "UPDATE ai_jobs SET cancel_requested = 1 WHERE id = ? AND finished_at IS NULL",
            )
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected(),
            Database::Postgres(pool) => sqlx::query(
                "UPDATE ai_jobs SET cancel_requested = TRUE \
                 WHERE id = $1 AND finished_at IS NULL",
            )
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected(),
        };
        Ok(rows == 1)
    }

    /// One heartbeat for every job in `ids` that is still unfinished (one statement, however
    /// many jobs): records `now_ms` as their last sign of life and returns the ids of those
    /// someone asked to cancel.
    pub async fn heartbeat(&self, ids: &[String], now_ms: i64) -> Result<Vec<String>, DbError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(String, bool)> = match &self.database {
            Database::Sqlite(pool) => {
                // SQLite binds no arrays: one placeholder per id (jobs per node are few).
                let mut query = QueryBuilder::new("UPDATE ai_jobs SET heartbeat_at_ms = ");
                query.push_bind(now_ms);
                query.push(" WHERE finished_at IS NULL AND id IN (");
                let mut list = query.separated(", ");
                for id in ids {
                    list.push_bind(id);
                }
                query.push(") RETURNING id, cancel_requested");
                query.build_query_as().fetch_all(pool).await?
            }
            Database::Postgres(pool) => {
                sqlx::query_as(
                    "UPDATE ai_jobs SET heartbeat_at_ms = $1 \
                     WHERE finished_at IS NULL AND id = ANY($2) RETURNING id, cancel_requested",
                )
                .bind(now_ms)
                .bind(ids)
                .fetch_all(pool)
                .await?
            }
        };
        Ok(rows
            .into_iter()
            .filter_map(|(id, cancel)| cancel.then_some(id))
            .collect())
    }

    /// Fails job `id` with `error` if it is unfinished and its node's last heartbeat is older
    /// than `stale_before_ms` (the node stopped without recording an end). Returns the job
    /// as it now stands if it was failed by this call.
    pub async fn interrupt_if_stale(
        &self,
        id: &str,
        stale_before_ms: i64,
        error: &str,
        finished_at: i64,
    ) -> Result<Option<AiJobRecord>, DbError> {
        macro_rules! interrupt {
            ($sql:expr, $pool:expr) => {
                sqlx::query_as($sql)
                    .bind(JobStatus::Failed.as_str())
                    .bind(error)
                    .bind(finished_at)
                    .bind(id)
                    .bind(stale_before_ms)
                    .fetch_optional($pool)
                    .await?
            };
        }
        let row: Option<JobRow> = match &self.database {
            Database::Sqlite(pool) => interrupt!(
                concat!(
                    "UPDATE ai_jobs SET status = ?, error = ?, finished_at = ? \
                     WHERE id = ? AND finished_at IS NULL AND heartbeat_at_ms < ? RETURNING ",
                    job_columns!()
                ),
                pool
            ),
            Database::Postgres(pool) => interrupt!(
                concat!(
                    "UPDATE ai_jobs SET status = $1, error = $2, finished_at = $3 \
                     WHERE id = $4 AND finished_at IS NULL AND heartbeat_at_ms < $5 RETURNING ",
                    job_columns!()
                ),
                pool
            ),
        };
        row.map(job_from_row).transpose()
    }

    /// Deletes jobs that ended before `finished_before` (Unix seconds), and unfinished ones
    /// whose node has been silent since before `silent_before_ms` (Unix milliseconds).
    /// Returns how many.
    pub async fn prune(&self, finished_before: i64, silent_before_ms: i64) -> Result<u64, DbError> {
        let rows = match &self.database {
            Database::Sqlite(pool) => sqlx::query(
                "DELETE FROM ai_jobs WHERE (finished_at IS NOT NULL AND finished_at < ?) \
                 OR (finished_at IS NULL AND heartbeat_at_ms < ?)",
            )
            .bind(finished_before)
            .bind(silent_before_ms)
            .execute(pool)
            .await?
            .rows_affected(),
            Database::Postgres(pool) => sqlx::query(
                "DELETE FROM ai_jobs WHERE (finished_at IS NOT NULL AND finished_at < $1) \
                 OR (finished_at IS NULL AND heartbeat_at_ms < $2)",
            )
            .bind(finished_before)
            .bind(silent_before_ms)
            .execute(pool)
            .await?
            .rows_affected(),
        };
        Ok(rows)
    }
}
