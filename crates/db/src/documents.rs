//! The SQL `Store` for room documents: a snapshot row plus an append-only update log.
//!
//! Architecture invariant: compaction never drops an update it has not folded in. Several
//! server nodes may hold a room for the same document and append to its log; a node's
//! in-memory snapshot may miss an update another node appended a moment ago. So compaction
//! merges the caller's snapshot with the stored snapshot and every log entry it deletes, and
//! replaces the stored snapshot only if no other node compacted in between (optimistic
//! check on `through_seq`); otherwise it leaves the log alone for the next attempt.
//!
//! On top of that, a lease (`compact:{doc_id}`, see [`crate::leases`]) lets one node at a
//! time compact a document, so several nodes holding the same room do not all merge the
//! same log: a node that does not get the lease skips this compaction (the log stays
//! complete, and its next trigger tries again). The lease saves work; the optimistic
//! check alone keeps compaction lossless, even if a lease expires under a slow holder.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use yrs::updates::decoder::Decode;
use yrs::{Doc, ReadTxn, StateVector, Transact, Update};

use lectern_collab::store::{StoredDoc, StoredUpdate};
use lectern_collab::{DocId, Edit, NewVersion, Store, StoreError};

use crate::history::{self, Retention};
use crate::leases::{self, Leases};
use crate::{Database, DbError};

/// How long a compaction may hold its document's lease. Far longer than a merge takes; it
/// only matters when a node dies mid-compaction (its document waits this long).
const COMPACTION_LEASE: Duration = Duration::from_secs(60);

/// Room documents in SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlDocumentStore {
    database: Database,
    /// How long versions and activity are kept.
    retention: Retention,
}

/// The stored snapshot of one document, if any.
struct SnapshotRow {
    snapshot: Vec<u8>,
    through_seq: i64,
}

impl SqlDocumentStore {
    /// A store on `database` (already migrated), keeping history for `retention`.
    pub fn new(database: Database, retention: Retention) -> Self {
        Self {
            database,
            retention,
        }
    }

    async fn snapshot(&self, doc: &str) -> Result<Option<SnapshotRow>, DbError> {
        let row = match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query("SELECT snapshot, through_seq FROM document_snapshots WHERE doc_id = ?")
                    .bind(doc)
                    .fetch_optional(pool)
                    .await?
                    .map(|row| (row.get(0), row.get(1)))
            }
            Database::Postgres(pool) => sqlx::query(
                "SELECT snapshot, through_seq FROM document_snapshots WHERE doc_id = $1",
            )
            .bind(doc)
            .fetch_optional(pool)
            .await?
            .map(|row| (row.get(0), row.get(1))),
        };
        Ok(row.map(|(snapshot, through_seq)| SnapshotRow {
            snapshot,
            through_seq,
        }))
    }

    /// Log entries of `doc` with `after < seq <= through`, oldest first.
    async fn updates(
        &self,
        doc: &str,
        after: i64,
        through: i64,
    ) -> Result<Vec<StoredUpdate>, DbError> {
        let rows: Vec<(i64, Vec<u8>)> = match &self.database {
            Database::Sqlite(pool) => sqlx::query(
                "SELECT seq, update_v1 FROM document_updates \
                 WHERE doc_id = ? AND seq > ? AND seq <= ? ORDER BY seq",
            )
            .bind(doc)
            .bind(after)
            .bind(through)
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect(),
            Database::Postgres(pool) => sqlx::query(
                "SELECT seq, update_v1 FROM document_updates \
                 WHERE doc_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq",
            )
            .bind(doc)
            .bind(after)
            .bind(through)
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect(),
        };
        Ok(rows
            .into_iter()
            .map(|(seq, bytes)| StoredUpdate { seq, bytes })
            .collect())
    }

    async fn load_doc(&self, doc: &str) -> Result<StoredDoc, DbError> {
        let snapshot = self.snapshot(doc).await?;
        let after = snapshot.as_ref().map_or(0, |row| row.through_seq);
        let updates = self.updates(doc, after, i64::MAX).await?;
        Ok(StoredDoc {
            snapshot: snapshot.map(|row| row.snapshot),
            updates,
        })
    }

    /// Compacts `doc` under its lease; skips (Ok) when another node is compacting it.
    async fn compact_doc(
        &self,
        doc: &str,
        snapshot: &[u8],
        through_seq: i64,
    ) -> Result<(), DbError> {
        let leases = Leases::new(self.database.clone());
        let lease = format!("compact:{doc}");
        // Each attempt is its own holder: two rooms of one node never share a lease.
        let holder = leases::unique_holder();
        if !leases
            .try_acquire(&lease, &holder, COMPACTION_LEASE)
            .await?
        {
            tracing::debug!(doc, "another node is compacting; log kept for next time");
            return Ok(());
        }
        let result = self.compact_leased(doc, snapshot, through_seq).await;
        if let Err(error) = leases.release(&lease, &holder).await {
            // It expires by itself; until then other nodes skip this document.
            tracing::warn!(
                doc,
                error = &error as &dyn std::error::Error,
                "could not release the compaction lease"
            );
        }
        result
    }

    /// The compaction itself (the caller holds the lease).
    async fn compact_leased(
        &self,
        doc: &str,
        snapshot: &[u8],
        through_seq: i64,
    ) -> Result<(), DbError> {
        let stored = self.snapshot(doc).await?;
        let previous_seq = stored.as_ref().map(|row| row.through_seq);
        if previous_seq.is_some_and(|previous| previous >= through_seq) {
            return Ok(()); // someone already compacted at least this far
        }
        let folded = self
            .updates(doc, previous_seq.unwrap_or(0), through_seq)
            .await?;
        let mut parts = vec![snapshot.to_vec()];
        parts.extend(stored.map(|row| row.snapshot));
        parts.extend(folded.into_iter().map(|update| update.bytes));
        // Merging a large document is CPU work: keep it off the async reactor.
        let merged = tokio::task::spawn_blocking(move || merge(&parts)).await??;

        let replaced = match &self.database {
            Database::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                let written = match previous_seq {
                    Some(previous) => sqlx::query(
                        "UPDATE document_snapshots \
                         SET snapshot = ?, through_seq = ?, \
                             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
                         WHERE doc_id = ? AND through_seq = ?",
                    )
                    .bind(&merged)
                    .bind(through_seq)
                    .bind(doc)
                    .bind(previous)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected(),
                    None => sqlx::query(
                        "INSERT INTO document_snapshots (doc_id, snapshot, through_seq) \
                         VALUES (?, ?, ?) ON CONFLICT (doc_id) DO NOTHING",
                    )
                    .bind(doc)
                    .bind(&merged)
                    .bind(through_seq)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected(),
                };
                if written == 1 {
                    sqlx::query("DELETE FROM document_updates WHERE doc_id = ? AND seq <= ?")
                        .bind(doc)
                        .bind(through_seq)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                written == 1
            }
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let written = match previous_seq {
                    Some(previous) => sqlx::query(
                        "UPDATE document_snapshots \
                         SET snapshot = $1, through_seq = $2, updated_at = now() \
                         WHERE doc_id = $3 AND through_seq = $4",
                    )
                    .bind(&merged)
                    .bind(through_seq)
                    .bind(doc)
                    .bind(previous)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected(),
                    None => sqlx::query(
                        "INSERT INTO document_snapshots (doc_id, snapshot, through_seq) \
                         VALUES ($1, $2, $3) ON CONFLICT (doc_id) DO NOTHING",
                    )
                    .bind(doc)
                    .bind(&merged)
                    .bind(through_seq)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected(),
                };
                if written == 1 {
                    sqlx::query("DELETE FROM document_updates WHERE doc_id = $1 AND seq <= $2")
                        .bind(doc)
                        .bind(through_seq)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                written == 1
            }
        };
        if !replaced {
            tracing::debug!(doc, "another node compacted first; log kept for next time");
        }
        Ok(())
    }
}

/// Folds encoded updates (any overlap allowed) into one update holding all of them.
fn merge(parts: &[Vec<u8>]) -> Result<Vec<u8>, DbError> {
    let doc = Doc::new();
    {
        let mut txn = doc.transact_mut();
        for part in parts {
            let update = Update::decode_v1(part).map_err(DbError::UndecodableUpdate)?;
            txn.apply_update(update)
                .map_err(DbError::InapplicableUpdate)?;
        }
    }
    let state = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    Ok(state)
}

fn backend(error: DbError) -> StoreError {
    StoreError::Backend(Box::new(error))
}

#[async_trait]
impl Store for SqlDocumentStore {
    async fn load(&self, doc: &DocId) -> Result<StoredDoc, StoreError> {
        self.load_doc(doc.as_str()).await.map_err(backend)
    }

    async fn append(&self, doc: &DocId, update: &[u8], edits: &[Edit]) -> Result<i64, StoreError> {
        history::append(&self.database, doc.as_str(), update, edits)
            .await
            .map_err(backend)
    }

    async fn save_version(&self, doc: &DocId, version: &NewVersion) -> Result<i64, StoreError> {
        history::save_version(&self.database, doc.as_str(), version, self.retention)
            .await
            .map_err(backend)
    }

    async fn compact(
        &self,
        doc: &DocId,
        snapshot: &[u8],
        through_seq: i64,
    ) -> Result<(), StoreError> {
        self.compact_doc(doc.as_str(), snapshot, through_seq)
            .await
            .map_err(backend)
    }
}
