//! The `Store` seam: where room state is made durable.
//!
//! A document is stored as an optional snapshot (a full encoded state) plus an append-only
//! log of updates written after it. Rooms append every update *before* broadcasting it
//! (write-ahead), and now and then replace snapshot + log prefix with a fresh snapshot
//! (compaction). Implementations: `MemoryStore` here (tests, ephemeral rooms) and the SQL
//! stores in `lectern-db`.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::DocId;

/// A stored document: snapshot plus the updates appended after it, oldest first.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StoredDoc {
    /// The full encoded state at the last compaction, if any.
    pub snapshot: Option<Vec<u8>>,
    /// Updates appended since the snapshot, in append order.
    pub updates: Vec<StoredUpdate>,
}

/// One logged update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUpdate {
    /// Position in the document's log; strictly increasing per document.
    pub seq: i64,
    /// The encoded (lib0 v1) update.
    pub bytes: Vec<u8>,
}

/// Why the store could not do what was asked. The source is kept for logs; clients only
/// learn that storage is unavailable.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend (database, disk) failed.
    #[error("storage backend failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Durable storage for room documents.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Loads a document; an unknown document is an empty `StoredDoc`, not an error.
    async fn load(&self, doc: &DocId) -> Result<StoredDoc, StoreError>;

    /// Appends one update to the document's log and returns its sequence number. When this
    /// returns `Ok`, the update survives a crash.
    async fn append(&self, doc: &DocId, update: &[u8]) -> Result<i64, StoreError>;

    /// Replaces the snapshot with `snapshot` and deletes log entries with `seq <= through_seq`,
    /// atomically: a crash leaves either the old or the new state, never a mix.
    async fn compact(
        &self,
        doc: &DocId,
        snapshot: &[u8],
        through_seq: i64,
    ) -> Result<(), StoreError>;
}

/// A store that keeps everything in memory: for tests and for throwaway deployments.
#[derive(Debug, Default)]
pub struct MemoryStore {
    // A std mutex: every critical section is a short map operation with no await inside.
    docs: Mutex<HashMap<DocId, MemoryDoc>>,
}

#[derive(Debug, Default)]
struct MemoryDoc {
    stored: StoredDoc,
    next_seq: i64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with_docs<T>(&self, f: impl FnOnce(&mut HashMap<DocId, MemoryDoc>) -> T) -> T {
        // A poisoned lock only means another thread panicked mid-operation on a plain map;
        // the map itself is still consistent, so keep serving.
        let mut docs = self
            .docs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut docs)
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn load(&self, doc: &DocId) -> Result<StoredDoc, StoreError> {
        Ok(self.with_docs(|docs| {
            docs.get(doc)
                .map(|stored| stored.stored.clone())
                .unwrap_or_default()
        }))
    }

    async fn append(&self, doc: &DocId, update: &[u8]) -> Result<i64, StoreError> {
        Ok(self.with_docs(|docs| {
            let entry = docs.entry(doc.clone()).or_default();
            entry.next_seq += 1;
            entry.stored.updates.push(StoredUpdate {
                seq: entry.next_seq,
                bytes: update.to_vec(),
            });
            entry.next_seq
        }))
    }

    async fn compact(
        &self,
        doc: &DocId,
        snapshot: &[u8],
        through_seq: i64,
    ) -> Result<(), StoreError> {
        self.with_docs(|docs| {
            let entry = docs.entry(doc.clone()).or_default();
            entry.stored.snapshot = Some(snapshot.to_vec());
            entry
                .stored
                .updates
                .retain(|update| update.seq > through_seq);
        });
        Ok(())
    }
}
