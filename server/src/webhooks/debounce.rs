//! `document.updated`, debounced per document.
//!
//! A document being typed in changes many times a second; receivers want to hear "this
//! document changed" once it settles, not per keystroke. [`NotingStore`] wraps the room
//! store and notes a document each time an update of it is durably appended; [`run`]
//! emits `document.updated` for a document once it has been quiet for `quiet` (about
//! 2 s), and at most every `max_wait` (about 10 s) while updates keep coming.
//!
//! Rooms must never wait for this: a note is a `try_send` on a bounded channel, and a full
//! channel drops the note (counted in `lectern_webhooks_document_notes_dropped`; the next
//! update of the document notes it again). Only documents registered to a classroom are
//! announced, and not the server-owned `lectern` documents (their changes have events of
//! their own). Notes not yet announced when the server stops are announced on the way out;
//! a crash loses them (the edits themselves are durable).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use lectern_collab::store::StoredDoc;
use lectern_collab::{DocId, Edit, NewVersion, Store, StoreError};
use lectern_db::Sessions;
use lectern_db::sessions::DocKind;

use crate::events::{Event, Events};

/// Notes waiting for the debouncer; beyond this they are dropped (and counted).
pub(crate) const NOTE_CAPACITY: usize = 4096;

/// The room store, noting every document an update was appended to.
#[derive(Debug)]
pub(crate) struct NotingStore {
    /// The store that does the work.
    inner: Arc<dyn Store>,
    /// Where notes go.
    notes: mpsc::Sender<DocId>,
    /// Notes dropped because the channel was full.
    dropped: Counter,
}

impl NotingStore {
    /// Wraps `inner`; the receiver is [`run`]'s.
    pub(crate) fn wrap(
        inner: Arc<dyn Store>,
        dropped: Counter,
    ) -> (Arc<dyn Store>, mpsc::Receiver<DocId>) {
        let (notes, receiver) = mpsc::channel(NOTE_CAPACITY);
        let store = Self {
            inner,
            notes,
            dropped,
        };
        (Arc::new(store), receiver)
    }
}

#[async_trait]
impl Store for NotingStore {
    async fn load(&self, doc: &DocId) -> Result<StoredDoc, StoreError> {
        self.inner.load(doc).await
    }

    async fn append(&self, doc: &DocId, update: &[u8], edits: &[Edit]) -> Result<i64, StoreError> {
        let seq = self.inner.append(doc, update, edits).await?;
        match self.notes.try_send(doc.clone()) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped.inc();
            }
            // The debouncer has stopped (shutdown): nobody to tell.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
        Ok(seq)
    }

    async fn save_version(&self, doc: &DocId, version: &NewVersion) -> Result<i64, StoreError> {
        self.inner.save_version(doc, version).await
    }

    async fn compact(
        &self,
        doc: &DocId,
        snapshot: &[u8],
        through_seq: i64,
    ) -> Result<(), StoreError> {
        self.inner.compact(doc, snapshot, through_seq).await
    }
}

/// How updates are debounced.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Debounce {
    /// Announce a document once it has had no update for this long.
    pub(crate) quiet: Duration,
    /// ... or once this long has passed since its first unannounced update.
    pub(crate) max_wait: Duration,
}

/// A document with unannounced updates.
#[derive(Debug, Clone, Copy)]
struct Pending {
    first: Instant,
    last: Instant,
}

impl Pending {
    fn due_at(self, debounce: Debounce) -> Instant {
        (self.last + debounce.quiet).min(self.first + debounce.max_wait)
    }
}

/// Debounces notes into `document.updated` events until `stop`, then announces what is
/// still pending and returns.
pub(crate) async fn run(
    mut notes: mpsc::Receiver<DocId>,
    debounce: Debounce,
    sessions: Sessions,
    events: Events,
    stop: CancellationToken,
) {
    let mut pending: HashMap<DocId, Pending> = HashMap::new();
    // No later than the earliest due time of `pending` (a document's due time only moves
    // later as updates come, so a stale wake-up is merely early).
    let mut wake: Option<Instant> = None;
    loop {
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = stop.cancelled() => break,
            note = notes.recv() => {
                let Some(doc) = note else { break };
                let now = Instant::now();
                let entry = pending.entry(doc).or_insert(Pending { first: now, last: now });
                entry.last = now;
                let due = entry.due_at(debounce);
                wake = Some(wake.map_or(due, |at| at.min(due)));
            }
            () = sleep => {
                let now = Instant::now();
                let due: Vec<DocId> = pending
                    .iter()
                    .filter(|(_, entry)| entry.due_at(debounce) <= now)
                    .map(|(doc, _)| doc.clone())
                    .collect();
                for doc in &due {
                    pending.remove(doc);
                }
                wake = pending.values().map(|entry| entry.due_at(debounce)).min();
                for doc in due {
                    announce(&sessions, &events, &doc).await;
                }
            }
        }
    }
    // Stopping: what the rooms appended on their way out is announced too.
    while let Ok(doc) = notes.try_recv() {
        let now = Instant::now();
        pending.entry(doc).or_insert(Pending {
            first: now,
            last: now,
        });
    }
    for doc in pending.into_keys() {
        announce(&sessions, &events, &doc).await;
    }
}

/// Emits `document.updated` for `doc` if it is a classroom's document.
async fn announce(sessions: &Sessions, events: &Events, doc: &DocId) {
    let entry = match sessions.document(doc.as_str()).await {
        Ok(Some(entry)) => entry,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                doc = doc.as_str(),
                "could not look the updated document up"
            );
            return;
        }
    };
    if entry.document.kind == DocKind::Lectern {
        return;
    }
    events
        .emit(Event::DocumentUpdated {
            classroom_id: entry.document.classroom_id,
            doc_id: entry.document.doc_id,
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_is_due_when_quiet_or_when_it_waited_long_enough() {
        let debounce = Debounce {
            quiet: Duration::from_secs(2),
            max_wait: Duration::from_secs(10),
        };
        let start = Instant::now();
        let quiet = Pending {
            first: start,
            last: start + Duration::from_secs(1),
        };
        assert_eq!(quiet.due_at(debounce), start + Duration::from_secs(3));
        let busy = Pending {
            first: start,
            last: start + Duration::from_secs(9),
        };
        assert_eq!(busy.due_at(debounce), start + Duration::from_secs(10));
    }
}
