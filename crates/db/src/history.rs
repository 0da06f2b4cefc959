//! A document's history: restorable versions and who changed how much, when.
//!
//! The update log says who wrote each entry (`document_updates.authors`), but compaction
//! folds the log away; what outlives it is kept here:
//! - `document_activity`: per document, author and minute, the characters inserted and
//!   deleted and the number of edits. Written with every append (one upsert per author of
//!   the entry), it is what the contributions report adds up.
//! - `document_versions`: whole states kept at moments that matter (session start and end,
//!   around AI jobs, checkpoints, periodically while edited). Retention drops versions
//!   older than `max_age` and beyond the newest `max_versions` of a document, when a new
//!   one is kept; activity older than `max_age` goes at the same time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::Row;

use lectern_collab::{Edit, NewVersion};

use crate::{Database, DbError};

/// How long history is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Versions and activity older than this are dropped.
    pub max_age: Duration,
    /// At most this many versions per document (the newest).
    pub max_versions: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(180 * 24 * 3600),
            max_versions: 200,
        }
    }
}

/// A kept version, without its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    pub id: i64,
    pub doc_id: String,
    /// When it was kept, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Why it was kept (`VersionReason::as_str`).
    pub reason: String,
    pub label: Option<String>,
    /// Who asked for it, if someone did (a user tag, `ai:<job id>`).
    pub author: Option<String>,
    /// Size of the encoded state in bytes.
    pub bytes: i64,
}

/// What one author changed in one document in one minute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub doc_id: String,
    pub author: String,
    /// Minutes since the Unix epoch.
    pub minute: i64,
    pub inserted: i64,
    pub deleted: i64,
    pub edits: i64,
    /// First and last edit in that minute, milliseconds since the Unix epoch.
    pub first_at_ms: i64,
    pub last_at_ms: i64,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// The `authors` column of a log entry.
pub(crate) fn authors_column(edits: &[Edit]) -> String {
    edits
        .iter()
        .map(|edit| edit.author.as_ref())
        .collect::<Vec<_>>()
        .join(",")
}

/// Reading versions and activity.
#[derive(Debug, Clone)]
pub struct History {
    database: Database,
}

impl History {
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    /// The versions kept of `doc`, newest first.
    pub async fn versions(&self, doc: &str) -> Result<Vec<VersionInfo>, DbError> {
        let rows = match &self.database {
            Database::Sqlite(pool) => sqlx::query(
                "SELECT id, doc_id, created_at_ms, reason, label, author, \
                     length(snapshot) AS bytes \
                     FROM document_versions WHERE doc_id = ? ORDER BY id DESC",
            )
            .bind(doc)
            .fetch_all(pool)
            .await?
            .iter()
            .map(version_info_sqlite)
            .collect(),
            Database::Postgres(pool) => sqlx::query(
                "SELECT id, doc_id, created_at_ms, reason, label, author, \
                 octet_length(snapshot)::BIGINT AS bytes \
                 FROM document_versions WHERE doc_id = $1 ORDER BY id DESC",
            )
            .bind(doc)
            .fetch_all(pool)
            .await?
            .iter()
            .map(version_info_postgres)
            .collect(),
        };
        Ok(rows)
    }

    /// Version `id` of `doc` and its content (a whole encoded v1 state), if kept.
    pub async fn version(
        &self,
        doc: &str,
        id: i64,
    ) -> Result<Option<(VersionInfo, Vec<u8>)>, DbError> {
        let found = match &self.database {
            Database::Sqlite(pool) => sqlx::query(
                "SELECT id, doc_id, created_at_ms, reason, label, author, \
                 length(snapshot) AS bytes, snapshot \
                 FROM document_versions WHERE doc_id = ? AND id = ?",
            )
            .bind(doc)
            .bind(id)
            .fetch_optional(pool)
            .await?
            .map(|row| (version_info_sqlite(&row), row.get("snapshot"))),
            Database::Postgres(pool) => sqlx::query(
                "SELECT id, doc_id, created_at_ms, reason, label, author, \
                 octet_length(snapshot)::BIGINT AS bytes, snapshot \
                 FROM document_versions WHERE doc_id = $1 AND id = $2",
            )
            .bind(doc)
            .bind(id)
            .fetch_optional(pool)
            .await?
            .map(|row| (version_info_postgres(&row), row.get("snapshot"))),
        };
        Ok(found)
    }

    /// What each author changed in each of `docs`, minute by minute, between `from_ms`
    /// and `to_ms` (milliseconds since the Unix epoch), oldest first.
    pub async fn activity(
        &self,
        docs: &[String],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Activity>, DbError> {
        let mut all = Vec::new();
        // One query per document keeps the SQL the same on both backends (no array
        // binding); a session has a handful of documents.
        for doc in docs {
            let rows = match &self.database {
                Database::Sqlite(pool) => sqlx::query(
                    "SELECT doc_id, author, minute, inserted, deleted, edits, first_at_ms, \
                     last_at_ms FROM document_activity \
                     WHERE doc_id = ? AND last_at_ms >= ? AND first_at_ms <= ? \
                     ORDER BY minute, author",
                )
                .bind(doc)
                .bind(from_ms)
                .bind(to_ms)
                .fetch_all(pool)
                .await?
                .iter()
                .map(activity_sqlite)
                .collect::<Vec<_>>(),
                Database::Postgres(pool) => sqlx::query(
                    "SELECT doc_id, author, minute, inserted, deleted, edits, first_at_ms, \
                     last_at_ms FROM document_activity \
                     WHERE doc_id = $1 AND last_at_ms >= $2 AND first_at_ms <= $3 \
                     ORDER BY minute, author",
                )
                .bind(doc)
                .bind(from_ms)
                .bind(to_ms)
                .fetch_all(pool)
                .await?
                .iter()
                .map(activity_postgres)
                .collect::<Vec<_>>(),
            };
            all.extend(rows);
        }
        Ok(all)
    }
}

fn version_info_sqlite(row: &sqlx::sqlite::SqliteRow) -> VersionInfo {
    VersionInfo {
        id: row.get("id"),
        doc_id: row.get("doc_id"),
        created_at_ms: row.get("created_at_ms"),
        reason: row.get("reason"),
        label: row.get("label"),
        author: row.get("author"),
        bytes: row.get("bytes"),
    }
}

fn version_info_postgres(row: &sqlx::postgres::PgRow) -> VersionInfo {
    VersionInfo {
        id: row.get("id"),
        doc_id: row.get("doc_id"),
        created_at_ms: row.get("created_at_ms"),
        reason: row.get("reason"),
        label: row.get("label"),
        author: row.get("author"),
        bytes: row.get("bytes"),
    }
}

fn activity_sqlite(row: &sqlx::sqlite::SqliteRow) -> Activity {
    Activity {
        doc_id: row.get(0),
        author: row.get(1),
        minute: row.get(2),
        inserted: row.get(3),
        deleted: row.get(4),
        edits: row.get(5),
        first_at_ms: row.get(6),
        last_at_ms: row.get(7),
    }
}

fn activity_postgres(row: &sqlx::postgres::PgRow) -> Activity {
    Activity {
        doc_id: row.get(0),
        author: row.get(1),
        minute: row.get(2),
        inserted: row.get(3),
        deleted: row.get(4),
        edits: row.get(5),
        first_at_ms: row.get(6),
        last_at_ms: row.get(7),
    }
}

/// Appends one log entry with its authors and adds each author's edit to the activity, in
/// one transaction. Returns the entry's sequence number.
pub(crate) async fn append(
    database: &Database,
    doc: &str,
    update: &[u8],
    edits: &[Edit],
) -> Result<i64, DbError> {
    let at = now_ms();
    let minute = at / 60_000;
    let authors = authors_column(edits);
    let seq = match database {
        Database::Sqlite(pool) => {
            let mut tx = pool.begin().await?;
            let seq: i64 = sqlx::query_scalar(
                "INSERT INTO document_updates (doc_id, update_v1, authors, created_at_ms) \
                 VALUES (?, ?, ?, ?) RETURNING seq",
            )
            .bind(doc)
            .bind(update)
            .bind(&authors)
            .bind(at)
            .fetch_one(&mut *tx)
            .await?;
            for edit in edits {
                sqlx::query(ACTIVITY_UPSERT_SQLITE)
                    .bind(doc)
                    .bind(edit.author.as_ref())
                    .bind(minute)
                    .bind(count(edit.inserted))
                    .bind(count(edit.deleted))
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            seq
        }
        Database::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            let seq: i64 = sqlx::query_scalar(
                "INSERT INTO document_updates (doc_id, update_v1, authors, created_at_ms) \
                 VALUES ($1, $2, $3, $4) RETURNING seq",
            )
            .bind(doc)
            .bind(update)
            .bind(&authors)
            .bind(at)
            .fetch_one(&mut *tx)
            .await?;
            for edit in edits {
                sqlx::query(ACTIVITY_UPSERT_POSTGRES)
                    .bind(doc)
                    .bind(edit.author.as_ref())
                    .bind(minute)
                    .bind(count(edit.inserted))
                    .bind(count(edit.deleted))
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            seq
        }
    };
    Ok(seq)
}

const ACTIVITY_UPSERT_SQLITE: &str = "INSERT INTO document_activity \
     (doc_id, author, minute, inserted, deleted, edits, first_at_ms, last_at_ms) \
     VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?6) \
     ON CONFLICT (doc_id, author, minute) DO UPDATE SET \
     inserted = document_activity.inserted + excluded.inserted, \
     deleted = document_activity.deleted + excluded.deleted, \
     edits = document_activity.edits + 1, \
     last_at_ms = excluded.last_at_ms";

const ACTIVITY_UPSERT_POSTGRES: &str = "INSERT INTO document_activity \
     (doc_id, author, minute, inserted, deleted, edits, first_at_ms, last_at_ms) \
     VALUES ($1, $2, $3, $4, $5, 1, $6, $6) \
     ON CONFLICT (doc_id, author, minute) DO UPDATE SET \
     inserted = document_activity.inserted + excluded.inserted, \
     deleted = document_activity.deleted + excluded.deleted, \
     edits = document_activity.edits + 1, \
     last_at_ms = excluded.last_at_ms";

fn count(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Keeps `version` of `doc`, then applies `retention` to the document's history.
pub(crate) async fn save_version(
    database: &Database,
    doc: &str,
    version: &NewVersion,
    retention: Retention,
) -> Result<i64, DbError> {
    let at = now_ms();
    let oldest_kept =
        at.saturating_sub(i64::try_from(retention.max_age.as_millis()).unwrap_or(i64::MAX));
    let max_versions = i64::try_from(retention.max_versions).unwrap_or(i64::MAX);
    let author = version.author.as_deref();
    let id = match database {
        Database::Sqlite(pool) => {
            let mut tx = pool.begin().await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO document_versions \
                 (doc_id, created_at_ms, reason, label, author, snapshot) \
                 VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            )
            .bind(doc)
            .bind(at)
            .bind(version.reason.as_str())
            .bind(version.label.as_deref())
            .bind(author)
            .bind(&version.snapshot)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(
                "DELETE FROM document_versions WHERE doc_id = ?1 AND (created_at_ms < ?2 \
                 OR id NOT IN (SELECT id FROM document_versions WHERE doc_id = ?1 \
                               ORDER BY id DESC LIMIT ?3))",
            )
            .bind(doc)
            .bind(oldest_kept)
            .bind(max_versions)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM document_activity WHERE doc_id = ? AND last_at_ms < ?")
                .bind(doc)
                .bind(oldest_kept)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            id
        }
        Database::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO document_versions \
                 (doc_id, created_at_ms, reason, label, author, snapshot) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(doc)
            .bind(at)
            .bind(version.reason.as_str())
            .bind(version.label.as_deref())
            .bind(author)
            .bind(&version.snapshot)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(
                "DELETE FROM document_versions WHERE doc_id = $1 AND (created_at_ms < $2 \
                 OR id NOT IN (SELECT id FROM document_versions WHERE doc_id = $1 \
                               ORDER BY id DESC LIMIT $3))",
            )
            .bind(doc)
            .bind(oldest_kept)
            .bind(max_versions)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM document_activity WHERE doc_id = $1 AND last_at_ms < $2")
                .bind(doc)
                .bind(oldest_kept)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            id
        }
    };
    Ok(id)
}
