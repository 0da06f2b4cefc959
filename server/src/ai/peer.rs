//! The AI as a Yjs peer of the document it writes into.
//!
//! Each job keeps its own replica of the target document under a client id of its own
//! (registered in the document's `lectern.ai_clients` map), makes its edits there, and
//! ships each transaction's update to the room with [`Rooms::apply_update`], so the room
//! persists and broadcasts it like any client's edit. Every item the job creates therefore
//! carries the AI's client id: other clients tell AI text apart by it (and, in shared
//! texts humans also write, by the `ai` formatting attribute).
//!
//! The replica is never refreshed from the room. It does not need to be: the job only
//! appends after its own items (its message, its anchored region), and the CRDT merges
//! concurrent human edits around them. That is also why two jobs cannot garble each other:
//! each writes after its own last item, never at a position computed from text it has not
//! seen.

use std::collections::HashMap;
use std::sync::Arc;

use yrs::updates::decoder::Decode;
use yrs::{Any, Doc, Map, MapPrelim, Transact, TransactionMut, Update, WriteTxn};

use lectern_collab::{DocId, RoomError, Rooms};

use crate::room_effects::SESSION_MAP;

/// Key of the map (inside `lectern`) from AI client id (decimal) to `{job_id, kind}`.
pub const AI_CLIENTS: &str = "ai_clients";
/// Key of the map (inside `lectern`) from job id to `{kind, status, error?, client_id,
/// started_by}`.
pub const AI_JOBS: &str = "ai_jobs";

/// A job's replica of its target document.
#[derive(Debug)]
pub struct AiPeer {
    /// The replica, with the job's own client id.
    doc: Doc,
    /// The document in the room.
    target: DocId,
    /// Where updates go.
    rooms: Rooms,
    /// The job this peer writes for.
    job_id: Arc<str>,
    /// What the job is, for its status entry.
    kind: &'static str,
    /// Who started it.
    started_by: Arc<str>,
}

impl AiPeer {
    /// Registers a new AI client in `target` (inside the room, so concurrent jobs each get
    /// their entry) and loads a replica of the document.
    pub async fn join(
        rooms: &Rooms,
        target: DocId,
        job_id: &str,
        kind: &'static str,
        started_by: &str,
    ) -> Result<Self, RoomError> {
        // Yjs clients draw 32-bit ids; so do we, to stay readable by every client library.
        let client_id = u64::from(rand::random::<u32>().max(1));
        let entry = Any::Map(Arc::new(HashMap::from([
            ("job_id".to_owned(), Any::from(job_id)),
            ("kind".to_owned(), Any::from(kind)),
        ])));
        let status = status_value(kind, "streaming", None, client_id, started_by);
        let job_key = job_id.to_owned();
        rooms
            .edit(&target, move |txn| {
                let lectern = txn.get_or_insert_map(SESSION_MAP);
                let clients = nested_map(txn, &lectern, AI_CLIENTS);
                clients.insert(txn, client_id.to_string(), entry.clone());
                let jobs = nested_map(txn, &lectern, AI_JOBS);
                jobs.insert(txn, job_key.as_str(), status.clone());
            })
            .await?;
        let state = rooms.encode_state(&target).await?;
        let doc = Doc::with_client_id(client_id);
        {
            let update = Update::decode_v1(&state).map_err(RoomError::InvalidUpdate)?;
            let mut txn = doc.transact_mut();
            if let Err(error) = txn.apply_update(update) {
                // The room's own state always applies; if it did not, the replica would
                // only lack context, and appends still merge correctly.
                tracing::warn!(%error, "replica could not apply the room's state");
            }
        }
        Ok(Self {
            doc,
            target,
            rooms: rooms.clone(),
            job_id: job_id.into(),
            kind,
            started_by: started_by.into(),
        })
    }

    /// The replica's client id: the id every item this job creates carries.
    pub fn client_id(&self) -> u64 {
        self.doc.client_id().get()
    }

    /// The target document.
    pub fn target(&self) -> &DocId {
        &self.target
    }

    /// Runs `edit` in one transaction on the replica and ships what it changed to the room
    /// (persisted, then broadcast). Returns once durable.
    pub async fn write<R>(
        &self,
        edit: impl FnOnce(&mut TransactionMut<'_>) -> R,
    ) -> Result<R, RoomError> {
        let (result, update) = {
            let mut txn = self.doc.transact_mut();
            let result = edit(&mut txn);
            (result, txn.encode_update_v1())
        };
        self.rooms.apply_update(&self.target, update).await?;
        Ok(result)
    }

    /// Sets the job's entry in `lectern.ai_jobs`, inside `txn` (so it lands in the same
    /// update as whatever else the job writes with it).
    pub fn put_status(&self, txn: &mut TransactionMut<'_>, status: &str, error: Option<&str>) {
        let value = status_value(self.kind, status, error, self.client_id(), &self.started_by);
        let lectern = txn.get_or_insert_map(SESSION_MAP);
        let jobs = nested_map(txn, &lectern, AI_JOBS);
        jobs.insert(txn, &*self.job_id, value);
    }
}

/// `parent[key]` as a map, created if missing. Only ever called where creation cannot race
/// with another writer of the same key: inside the room, or on a replica that already has
/// the map from the room.
fn nested_map(txn: &mut TransactionMut<'_>, parent: &yrs::MapRef, key: &str) -> yrs::MapRef {
    match parent.get(txn, key) {
        Some(yrs::Out::YMap(map)) => map,
        _ => parent.insert(txn, key, MapPrelim::default()),
    }
}

/// A job's status entry.
fn status_value(
    kind: &str,
    status: &str,
    error: Option<&str>,
    client_id: u64,
    started_by: &str,
) -> Any {
    let mut fields = HashMap::from([
        ("kind".to_owned(), Any::from(kind)),
        ("status".to_owned(), Any::from(status)),
        ("client_id".to_owned(), Any::from(client_id.to_string())),
        ("started_by".to_owned(), Any::from(started_by)),
    ]);
    if let Some(error) = error {
        fields.insert("error".to_owned(), Any::from(error));
    }
    Any::Map(Arc::new(fields))
}
