//! The AI as a Yjs peer of the document it writes into.
//!
//! Each job keeps its own replica of the target document under a client id of its own,
//! makes its edits there, and ships each transaction's update to the room with
//! [`Rooms::apply_update`], so the room persists and broadcasts it like any client's edit.
//! Every item the job creates therefore carries the AI's client id.
//!
//! **AI authorship is an item's identity, recorded by the server.** The job's client id,
//! its target document and how far its clock got are written into the session's `lectern`
//! document (`ai_clients`, `ai_jobs`), which only the server writes. A Yjs item is
//! identified by (client id, clock), and a peer can never re-create an id the document
//! already has (Yjs skips ids it has seen), so an item of the target document is the AI's
//! exactly when its client id is registered for that document and its clock is below the
//! recorded `clock`. The client id is drawn so that it does not occur in the target document
//! yet, and the job's items start at clock 0; while the job runs, the room refuses client
//! updates under that id ([`Rooms::reserve_client`]). A field such as a chat message's
//! `author: "ai"` is display only: anyone who can write the document can write it.
//!
//! The replica is never refreshed from the room. It does not need to be: the job only
//! appends after its own items (its message, its anchored region), and the CRDT merges
//! concurrent human edits around them. That is also why two jobs cannot garble each other:
//! each writes after its own last item, never at a position computed from text it has not
//! seen.

use std::collections::HashMap;
use std::sync::Arc;

use yrs::updates::decoder::Decode;
use yrs::{
    Any, ClientID, Doc, Map, MapPrelim, ReadTxn, StateVector, Transact, TransactionMut, Update,
    WriteTxn,
};

use lectern_collab::{ClientReservation, DocId, RoomError, Rooms, SERVER_AUTHOR};

use crate::room_effects::LECTERN_MAP;

/// Key of the map (inside the `lectern` document's root map) from AI client id (decimal) to
/// `{job_id, kind, doc_id}`.
pub const AI_CLIENTS: &str = "ai_clients";
/// Key of the map (inside the `lectern` document's root map) from job id to `{kind, status,
/// error?, queue_position?, client_id, started_by, doc_id, clock}`.
pub const AI_JOBS: &str = "ai_jobs";

/// A job's replica of its target document.
#[derive(Debug)]
pub struct AiPeer {
    /// The replica, with the job's own client id.
    doc: Doc,
    /// The document in the room.
    target: DocId,
    /// The session's server-owned document, where the job's status and client id live.
    lectern: DocId,
    /// Where updates go.
    rooms: Rooms,
    /// The job this peer writes for.
    job_id: Arc<str>,
    /// What the job is, for its status entry.
    kind: &'static str,
    /// Who started it.
    started_by: Arc<str>,
    /// Keeps clients from writing under the job's client id in the target while the job
    /// runs (released when the peer is dropped, at the job's end).
    _reservation: ClientReservation,
}

impl AiPeer {
    /// Loads a replica of `target` under a fresh client id (one the document has never
    /// seen), then registers that id and the job's `streaming` status in the session's
    /// `lectern` document.
    pub async fn join(
        rooms: &Rooms,
        target: DocId,
        lectern: DocId,
        job_id: &str,
        kind: &'static str,
        started_by: &str,
    ) -> Result<Self, RoomError> {
        let state = rooms.encode_state(&target).await?;
        let update = Update::decode_v1(&state).map_err(RoomError::InvalidUpdate)?;
        let seen = update.state_vector();
        let client_id = fresh_client_id(&seen);
        // Reserved before anyone can learn the id (it is published below): no client can
        // take the job's next clocks and pass its text off as the AI's.
        let reservation = rooms.reserve_client(&target, client_id);
        let doc = Doc::with_client_id(client_id);
        {
            let mut txn = doc.transact_mut();
            if let Err(error) = txn.apply_update(update) {
                // The room's own state always applies; if it did not, the replica would
                // only lack context, and appends still merge correctly.
                tracing::warn!(%error, "replica could not apply the room's state");
            }
        }
        let peer = Self {
            doc,
            target,
            lectern,
            rooms: rooms.clone(),
            job_id: job_id.into(),
            kind,
            started_by: started_by.into(),
            _reservation: reservation,
        };
        let client = Any::Map(Arc::new(HashMap::from([
            ("job_id".to_owned(), Any::from(job_id)),
            ("kind".to_owned(), Any::from(kind)),
            ("doc_id".to_owned(), Any::from(peer.target.as_str())),
        ])));
        let status = peer.status_value("streaming", None);
        let client_key = peer.client_id().to_string();
        let job_key = job_id.to_owned();
        rooms
            .edit(&peer.lectern, SERVER_AUTHOR, move |txn| {
                let lectern = txn.get_or_insert_map(LECTERN_MAP);
                let clients = nested_map(txn, &lectern, AI_CLIENTS);
                clients.insert(txn, client_key.as_str(), client.clone());
                let jobs = nested_map(txn, &lectern, AI_JOBS);
                jobs.insert(txn, job_key.as_str(), status.clone());
            })
            .await?;
        Ok(peer)
    }

    /// The replica's client id: the id every item this job creates carries.
    pub fn client_id(&self) -> u64 {
        self.doc.client_id().get()
    }

    /// Who the job's edits are attributed to in the document's history.
    pub fn author(&self) -> String {
        ai_author(&self.job_id)
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
        self.rooms
            .apply_update(&self.target, update, &self.author())
            .await?;
        Ok(result)
    }

    /// Sets the job's entry in the session's `lectern.ai_jobs`, with the clock the job has
    /// reached in its target document: every item it wrote so far is then attributable.
    /// Call after the writes it should cover have returned.
    pub async fn put_status(&self, status: &str, error: Option<&str>) -> Result<(), RoomError> {
        self.put_entry(self.status_value(status, error)).await
    }

    /// Sets the job's entry to `queued` with its place in line for a generation slot
    /// (`queue_position`, 1 = next); the next [`AiPeer::put_status`] drops the place.
    pub async fn put_queued(&self, position: usize) -> Result<(), RoomError> {
        let mut value = self.status_value("queued", None);
        if let Any::Map(fields) = &mut value {
            Arc::make_mut(fields).insert(
                "queue_position".to_owned(),
                Any::from(f64::from(u32::try_from(position).unwrap_or(u32::MAX))),
            );
        }
        self.put_entry(value).await
    }

    /// Replaces the job's entry in the session's `lectern.ai_jobs` with `value`.
    async fn put_entry(&self, value: Any) -> Result<(), RoomError> {
        let job_key = self.job_id.to_string();
        self.rooms
            .edit(&self.lectern, SERVER_AUTHOR, move |txn| {
                let lectern = txn.get_or_insert_map(LECTERN_MAP);
                let jobs = nested_map(txn, &lectern, AI_JOBS);
                jobs.insert(txn, job_key.as_str(), value.clone());
            })
            .await
    }

    /// How far the job's clock got: its items in the target are `(client_id, 0..clock)`.
    fn clock(&self) -> u32 {
        self.doc
            .transact()
            .state_vector()
            .get(&self.doc.client_id())
    }

    /// The job's status entry as it is now.
    fn status_value(&self, status: &str, error: Option<&str>) -> Any {
        let mut fields = HashMap::from([
            ("kind".to_owned(), Any::from(self.kind)),
            ("status".to_owned(), Any::from(status)),
            // Yjs client ids are 32-bit (see `fresh_client_id`): exact as a JS number.
            ("client_id".to_owned(), Any::from(self.client_id() as f64)),
            ("started_by".to_owned(), Any::from(&*self.started_by)),
            ("doc_id".to_owned(), Any::from(self.target.as_str())),
            ("clock".to_owned(), Any::from(f64::from(self.clock()))),
        ]);
        if let Some(error) = error {
            fields.insert("error".to_owned(), Any::from(error));
        }
        Any::Map(Arc::new(fields))
    }
}

/// A client id `seen` does not contain. Yjs clients draw 32-bit ids; so do we, to stay
/// readable by every client library. A fresh id means the job's items start at clock 0 and
/// nobody wrote under that id before the job.
fn fresh_client_id(seen: &StateVector) -> u64 {
    loop {
        let id = u64::from(rand::random::<u32>().max(1));
        if !seen.contains_client(&ClientID::new(id)) {
            return id;
        }
    }
}

/// `parent[key]` as a map, created if missing. Only ever called inside the room of the
/// `lectern` document, where creation cannot race with another writer of the same key.
fn nested_map(txn: &mut TransactionMut<'_>, parent: &yrs::MapRef, key: &str) -> yrs::MapRef {
    match parent.get(txn, key) {
        Some(yrs::Out::YMap(map)) => map,
        _ => parent.insert(txn, key, MapPrelim::default()),
    }
}

/// The author an AI job's edits carry in a document's history: `ai:<job id>`.
pub fn ai_author(job_id: &str) -> String {
    format!("ai:{job_id}")
}
