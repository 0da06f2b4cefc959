//! The `Store` seam: where room state is made durable.
//!
//! A document is stored as an optional snapshot (a full encoded state) plus an append-only
//! log of updates written after it. Rooms append every update *before* broadcasting it
//! (write-ahead), and now and then replace snapshot + log prefix with a fresh snapshot
//! (compaction). Implementations: `MemoryStore` here (tests, ephemeral rooms) and the SQL
//! stores in `lectern-db`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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

/// The author of what the server itself writes (session state, copied templates, progress
/// feeds): not a person's contribution.
pub const SERVER_AUTHOR: &str = "server";

/// Who made (part of) a logged update, and how much it changed: the history the
/// contributions report and attribution are built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// Who: a member's user tag (`user:<id>`, a token's subject), `ai:<job id>` for an AI
    /// job's edits, or `server` for what the server itself writes.
    pub author: Arc<str>,
    /// Text inserted, in characters as Yjs counts them (UTF-16 code units).
    pub inserted: u64,
    /// Content deleted: text characters, and one per removed value of a map or array.
    pub deleted: u64,
}

/// Why a version was kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionReason {
    /// A live session started.
    SessionStarted,
    /// A live session ended.
    SessionEnded,
    /// Before an AI job wrote into the document.
    BeforeAiJob,
    /// After an AI job finished writing.
    AfterAiJob,
    /// Someone asked for a checkpoint.
    Checkpoint,
    /// Periodically while the document is edited, and when editing stops.
    Activity,
    /// Just before a version was restored (so the restore can be undone).
    BeforeRestore,
}

impl VersionReason {
    /// The stable name stored and shown on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SessionStarted => "session_started",
            Self::SessionEnded => "session_ended",
            Self::BeforeAiJob => "before_ai_job",
            Self::AfterAiJob => "after_ai_job",
            Self::Checkpoint => "checkpoint",
            Self::Activity => "activity",
            Self::BeforeRestore => "before_restore",
        }
    }
}

/// A version to keep: the document's whole state at a moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVersion {
    /// The whole encoded (v1) state.
    pub snapshot: Vec<u8>,
    /// Why it is kept.
    pub reason: VersionReason,
    /// A name someone gave it (checkpoints).
    pub label: Option<String>,
    /// Who asked for it, if someone did (same form as [`Edit::author`]).
    pub author: Option<Arc<str>>,
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

    /// Appends one update to the document's log, with who made it (`edits`, one per author),
    /// and returns its sequence number. When this returns `Ok`, the update survives a crash.
    async fn append(&self, doc: &DocId, update: &[u8], edits: &[Edit]) -> Result<i64, StoreError>;

    /// Keeps `version` of the document (apart from the log, so compaction does not fold
    /// it away) and returns its id. Old versions are dropped by the store's retention.
    async fn save_version(&self, doc: &DocId, version: &NewVersion) -> Result<i64, StoreError>;

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
    versions: Vec<NewVersion>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The versions kept of `doc`, oldest first (for tests).
    pub fn versions(&self, doc: &DocId) -> Vec<NewVersion> {
        self.with_docs(|docs| {
            docs.get(doc)
                .map(|stored| stored.versions.clone())
                .unwrap_or_default()
        })
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

    async fn append(&self, doc: &DocId, update: &[u8], _edits: &[Edit]) -> Result<i64, StoreError> {
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

    async fn save_version(&self, doc: &DocId, version: &NewVersion) -> Result<i64, StoreError> {
        Ok(self.with_docs(|docs| {
            let entry = docs.entry(doc.clone()).or_default();
            entry.versions.push(version.clone());
            i64::try_from(entry.versions.len()).unwrap_or(i64::MAX)
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
