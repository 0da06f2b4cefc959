//! The room registry: finds or loads the room for a document, and unloads it when idle.
//!
//! Architecture invariant: at most one live room per document per node. A room deregisters
//! itself *before* it refuses the commands still queued to it, so a joiner that raced with
//! an unload simply retries and meets a freshly loaded room.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::FutureExt as _;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use yrs::updates::decoder::Decode;
use yrs::{TransactionMut, Update};

use crate::limits::{self, LimitError};

use crate::fanout::NodeId;
use crate::outbox::{Outbox, Route};
use crate::reserved::{ClientReservation, ReservedClients};
use crate::room::{Command, Exit, LoadError, MemberId, Room, RoomContext, ServerEdit};
use crate::{
    AccessChange, ClientMessage, CloseReason, CollabMetrics, DocId, Fanout, Guest, RoomConfig,
    Store, UpdateRefused, VersionReason,
};

/// Commands a room buffers before senders wait: back-pressure on clients that write faster
/// than the room applies.
const COMMAND_BUFFER: usize = 1024;

/// How often a request to a room (a join, a server edit...) is retried when it races with
/// the room unloading or failing to load.
const REQUEST_ATTEMPTS: usize = 3;

/// Why a client could not join a room.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The server is shutting down.
    #[error("server is shutting down")]
    ShuttingDown,
    /// The room could not be loaded (the store failed); try again later.
    #[error("room could not be loaded")]
    Unavailable,
    /// The stored document is damaged (a part fails the update limits or does not decode);
    /// it is refused until an operator repairs it, and other documents are unaffected.
    #[error("stored document is unreadable")]
    Unreadable,
}

/// Why the server's own request to a room failed.
#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    /// The server is shutting down.
    #[error("server is shutting down")]
    ShuttingDown,
    /// The room could not be loaded, or failed (the store failed); try again later.
    #[error("room unavailable")]
    Unavailable,
    /// The update to apply is not a valid (v1) Yjs update.
    #[error("not a valid update")]
    InvalidUpdate(#[source] yrs::encoding::read::Error),
    /// The update to apply exceeds the update limits (nesting, counts).
    #[error("update refused by the limits")]
    RefusedUpdate(#[source] LimitError),
}

/// Why [`Rooms::request_room`] got no answer.
#[derive(Debug)]
enum RequestFailed {
    ShuttingDown,
    Unavailable,
}

/// The room was unloaded (store failure or shutdown) while a member was still sending.
#[derive(Debug, thiserror::Error)]
#[error("room is gone")]
pub struct RoomGone;

/// All rooms of this node. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Rooms {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    // A std mutex: held only for map lookups and inserts, never across an await.
    rooms: Mutex<HashMap<DocId, RoomSlot>>,
    context: RoomContext,
    tracker: TaskTracker,
    next_member: AtomicU64,
    next_generation: AtomicU64,
}

#[derive(Debug, Clone)]
struct RoomSlot {
    commands: mpsc::Sender<Command>,
    generation: u64,
}

/// One client's place in one room. Send it the client's messages; dropping it leaves.
#[derive(Debug)]
pub struct Membership {
    doc: DocId,
    member: MemberId,
    commands: mpsc::Sender<Command>,
    left: bool,
}

impl Rooms {
    /// A registry whose rooms persist to `store` and meet other nodes through `fanout`.
    pub fn new(
        store: Arc<dyn Store>,
        fanout: Arc<dyn Fanout>,
        node: NodeId,
        config: RoomConfig,
        metrics: CollabMetrics,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                rooms: Mutex::new(HashMap::new()),
                context: RoomContext {
                    store,
                    reserved: ReservedClients::default(),
                    fanout,
                    node,
                    config,
                    metrics,
                    shutdown: CancellationToken::new(),
                },
                tracker: TaskTracker::new(),
                next_member: AtomicU64::new(1),
                next_generation: AtomicU64::new(1),
            }),
        }
    }

    /// Joins `doc`'s room, loading it if needed. The room immediately queues its sync step 1
    /// (and current awareness) into `outbox` under `route`.
    pub async fn join(
        &self,
        doc: DocId,
        guest: Guest,
        outbox: Outbox,
        route: Route,
    ) -> Result<Membership, JoinError> {
        let member = self.inner.next_member.fetch_add(1, Ordering::Relaxed);
        let (joined, commands) = self
            .request_room(&doc, |reply| Command::Join {
                member,
                guest: guest.clone(),
                outbox: outbox.clone(),
                route,
                reply,
            })
            .await
            .map_err(|failed| match failed {
                RequestFailed::ShuttingDown => JoinError::ShuttingDown,
                RequestFailed::Unavailable => JoinError::Unavailable,
            })?;
        joined?;
        Ok(Membership {
            doc,
            member,
            commands,
            left: false,
        })
    }

    /// Applies an edit made by the server itself (loading the room if needed): persisted,
    /// then broadcast to every member. Returns once it is durable.
    /// `author` is who the edit is attributed to in the document's history (`ai:<job id>`,
    /// `server`).
    pub async fn apply_update(
        &self,
        doc: &DocId,
        update: Vec<u8>,
        author: &str,
    ) -> Result<(), RoomError> {
        limits::check_update_v1(&update, &self.inner.context.config.update_limits)
            .map_err(RoomError::RefusedUpdate)?;
        Update::decode_v1(&update).map_err(RoomError::InvalidUpdate)?;
        let update = Bytes::from(update);
        let author: Arc<str> = author.into();
        self.request(doc, |reply| Command::ServerUpdate {
            update: update.clone(),
            author: author.clone(),
            reply,
        })
        .await
    }

    /// Applies an update a caller with write access sent over REST (loading the room if
    /// needed): checked exactly like a connected member's (limits, type depth, reserved
    /// client ids, document size), persisted, then broadcast to every member. The inner
    /// result says whether it was applied, and if not, why.
    pub async fn apply_rest_update(
        &self,
        doc: &DocId,
        update: Bytes,
        author: &str,
    ) -> Result<Result<(), UpdateRefused>, RoomError> {
        let author: Arc<str> = author.into();
        self.request(doc, |reply| Command::RestUpdate {
            update: update.clone(),
            author: author.clone(),
            reply,
        })
        .await
    }

    /// Keeps `doc`'s current state as a version (loading the room if needed) and returns its
    /// id once stored; `None` for an activity version of an empty document.
    pub async fn save_version(
        &self,
        doc: &DocId,
        reason: VersionReason,
        label: Option<String>,
        author: Option<&str>,
    ) -> Result<Option<i64>, RoomError> {
        let author: Option<Arc<str>> = author.map(Into::into);
        self.request(doc, |reply| Command::SaveVersion {
            reason,
            label: label.clone(),
            author: author.clone(),
            reply,
        })
        .await?
        .map_err(|error| {
            tracing::warn!(doc = %doc, error = &error as &dyn std::error::Error, "could not keep a version");
            RoomError::Unavailable
        })
    }

    /// Edits `doc` on the server (loading the room if needed): `edit` runs inside a write
    /// transaction on the room's own document, so it builds on the current state; what it
    /// changes is persisted, then broadcast to every member. Returns once it is durable.
    pub async fn edit(
        &self,
        doc: &DocId,
        author: &str,
        edit: impl Fn(&mut TransactionMut<'_>) + Send + Sync + 'static,
    ) -> Result<(), RoomError> {
        let edit = ServerEdit(Arc::new(edit));
        let author: Arc<str> = author.into();
        self.request(doc, |reply| Command::Edit {
            edit: edit.clone(),
            author: author.clone(),
            reply,
        })
        .await
    }

    /// Reserves `client` in `doc` until the returned guard is dropped: while reserved, the
    /// room refuses client updates carrying structs of that id (the client is closed with
    /// [`CloseReason::ReservedClientId`]). For a server-side peer (an AI job) whose items
    /// others attribute by client id; see `reserved.rs`.
    pub fn reserve_client(&self, doc: &DocId, client: u64) -> ClientReservation {
        self.inner.context.reserved.reserve(doc, client)
    }

    /// The whole state of `doc` as one encoded (v1) update, loading the room if needed.
    pub async fn encode_state(&self, doc: &DocId) -> Result<Vec<u8>, RoomError> {
        self.request(doc, |reply| Command::EncodeState { reply })
            .await
    }

    /// The documents whose rooms are loaded on this node now.
    pub fn loaded_docs(&self) -> Vec<DocId> {
        self.inner.lock_rooms().keys().cloned().collect()
    }

    /// The users connected to `doc` on this node (empty when its room is not loaded).
    pub async fn users(&self, doc: &DocId) -> Vec<Arc<str>> {
        let Some(slot) = self.loaded_room(doc) else {
            return Vec::new();
        };
        let (reply, users) = oneshot::channel();
        if slot.commands.send(Command::Users { reply }).await.is_err() {
            return Vec::new();
        }
        users.await.unwrap_or_default()
    }

    /// Changes what the named users' connections to `doc` on this node may do. A room that
    /// is not loaded has no connections, so there is nothing to change.
    pub async fn change_access(&self, doc: &DocId, changes: Vec<(Arc<str>, AccessChange)>) {
        if let Some(slot) = self.loaded_room(doc) {
            let _ = slot.commands.send(Command::ChangeAccess { changes }).await;
        }
    }

    /// Closes, in every loaded room of this node, the connections that authenticated in
    /// login session `session` (it was signed out or its refresh token was stolen).
    pub async fn close_session(&self, session: &str, reason: CloseReason) {
        let slots: Vec<RoomSlot> = self.inner.lock_rooms().values().cloned().collect();
        let session: Arc<str> = session.into();
        for slot in slots {
            let command = Command::CloseSession {
                session: session.clone(),
                reason,
            };
            let _ = slot.commands.send(command).await;
        }
    }

    /// Sends the command `make` builds to `doc`'s room (loading it if needed) and waits for
    /// its reply, retrying when the room unloads in between.
    async fn request<T>(
        &self,
        doc: &DocId,
        make: impl Fn(oneshot::Sender<T>) -> Command,
    ) -> Result<T, RoomError> {
        match self.request_room(doc, make).await {
            Ok((value, _)) => Ok(value),
            Err(RequestFailed::ShuttingDown) => Err(RoomError::ShuttingDown),
            Err(RequestFailed::Unavailable) => Err(RoomError::Unavailable),
        }
    }

    /// Like [`Rooms::request`], also returning the command channel of the room that
    /// answered (a joiner keeps it to send its messages).
    async fn request_room<T>(
        &self,
        doc: &DocId,
        make: impl Fn(oneshot::Sender<T>) -> Command,
    ) -> Result<(T, mpsc::Sender<Command>), RequestFailed> {
        for _ in 0..REQUEST_ATTEMPTS {
            if self.inner.context.shutdown.is_cancelled() {
                return Err(RequestFailed::ShuttingDown);
            }
            let slot = self.room_for(doc);
            let (reply, answer) = oneshot::channel();
            if slot.commands.send(make(reply)).await.is_ok()
                && let Ok(value) = answer.await
            {
                return Ok((value, slot.commands));
            }
            // The room stopped before answering (unload race or failed load): make sure its
            // stale slot is gone, then try a fresh one.
            self.inner.remove_if_current(doc, slot.generation);
        }
        Err(RequestFailed::Unavailable)
    }

    fn loaded_room(&self, doc: &DocId) -> Option<RoomSlot> {
        self.inner
            .lock_rooms()
            .get(doc)
            .filter(|slot| !slot.commands.is_closed())
            .cloned()
    }

    /// Rooms currently registered.
    pub fn loaded(&self) -> usize {
        self.inner.lock_rooms().len()
    }

    /// Closes every client (`ShuttingDown`), flushes every room and waits for all room tasks.
    pub async fn shutdown(&self) {
        self.inner.context.shutdown.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    fn room_for(&self, doc: &DocId) -> RoomSlot {
        let mut rooms = self.inner.lock_rooms();
        if let Some(slot) = rooms.get(doc)
            && !slot.commands.is_closed()
        {
            return slot.clone();
        }
        let (commands, receiver) = mpsc::channel(COMMAND_BUFFER);
        let generation = self.inner.next_generation.fetch_add(1, Ordering::Relaxed);
        let slot = RoomSlot {
            commands,
            generation,
        };
        rooms.insert(doc.clone(), slot.clone());
        let span = tracing::info_span!("room", doc = %doc);
        self.inner.tracker.spawn(
            run_room(self.inner.clone(), doc.clone(), receiver, generation).instrument(span),
        );
        slot
    }
}

impl Inner {
    fn lock_rooms(&self) -> std::sync::MutexGuard<'_, HashMap<DocId, RoomSlot>> {
        // Critical sections are single map operations: a poisoned map is still consistent.
        self.rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn remove_if_current(&self, doc: &DocId, generation: u64) {
        let mut rooms = self.lock_rooms();
        if rooms
            .get(doc)
            .is_some_and(|slot| slot.generation == generation)
        {
            rooms.remove(doc);
        }
    }
}

/// Decrements a gauge when dropped, so a panicking room task still counts as gone.
struct GaugeGuard(prometheus_client::metrics::gauge::Gauge);

impl GaugeGuard {
    fn new(gauge: &prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn run_room(
    inner: Arc<Inner>,
    doc: DocId,
    mut commands: mpsc::Receiver<Command>,
    generation: u64,
) {
    let context = inner.context.clone();
    let _task = GaugeGuard::new(&context.metrics.room_tasks);
    let subscription = match context.fanout.subscribe(&doc, context.node).await {
        Ok(subscription) => Some(subscription),
        Err(error) => {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "fan-out subscribe failed; room serves this node only"
            );
            None
        }
    };
    match Room::load(doc.clone(), context.clone()).await {
        Ok(mut room) => {
            let _loaded = GaugeGuard::new(&context.metrics.rooms_loaded);
            tracing::debug!("room loaded");
            // A panic inside yrs (or here) must not leave the document's clients connected
            // to a dead room that never answers: they are closed, and reconnecting loads the
            // document afresh from the store, which holds everything acknowledged.
            let run = AssertUnwindSafe(room.run(&mut commands, subscription)).catch_unwind();
            match run.await {
                Ok(exit) if exit != Exit::StorageFailed => {
                    tracing::debug!(?exit, "room unloaded");
                }
                Ok(_) => {}
                Err(_) => {
                    context.metrics.room_panics.inc();
                    tracing::error!(
                        "room failed; closing its clients so they resync from the store"
                    );
                    room.close_all(CloseReason::RoomFailed);
                }
            }
        }
        Err(LoadError::Store(error)) => {
            context.metrics.store_errors.inc();
            tracing::error!(
                error = &error as &dyn std::error::Error,
                "room could not be loaded"
            );
        }
        Err(LoadError::Unreadable(error)) => {
            // Logged at error: an operator must repair or remove this document. Joiners are
            // told so, rather than retrying a load that will fail the same way.
            context.metrics.documents_unreadable.inc();
            tracing::error!(
                error = &error as &dyn std::error::Error,
                "stored document is unreadable; refusing to open it"
            );
            inner.remove_if_current(&doc, generation);
            commands.close();
            while let Ok(command) = commands.try_recv() {
                if let Command::Join { reply, .. } = command {
                    let _ = reply.send(Err(JoinError::Unreadable));
                }
            }
            return;
        }
    }
    // Deregister first, then refuse what is still queued: dropping a join's reply makes the
    // joiner retry, and it will now find no slot and load a fresh room.
    inner.remove_if_current(&doc, generation);
    commands.close();
    while commands.try_recv().is_ok() {}
}

impl Membership {
    /// The document this membership is for.
    pub fn doc(&self) -> &DocId {
        &self.doc
    }

    /// Hands a client's message to the room. Waits when the room is busy (back-pressure).
    pub async fn send(&self, message: ClientMessage) -> Result<(), RoomGone> {
        self.commands
            .send(Command::Client {
                member: self.member,
                message,
            })
            .await
            .map_err(|_| RoomGone)
    }

    /// Leaves the room (its awareness states are removed for the others).
    pub async fn leave(mut self) {
        self.left = true;
        let _ = self
            .commands
            .send(Command::Leave {
                member: self.member,
            })
            .await;
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        if self.left {
            return;
        }
        let leave = Command::Leave {
            member: self.member,
        };
        if let Err(mpsc::error::TrySendError::Full(leave)) = self.commands.try_send(leave) {
            // The room is busy: deliver the leave later rather than leak the member.
            let commands = self.commands.clone();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = commands.send(leave).await;
                });
            }
        }
    }
}
