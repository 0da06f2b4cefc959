//! One room: the actor that owns a document and its awareness.
//!
//! Architecture invariant: an update is appended to the store *before* any client or other
//! node sees it. If the store fails, the room closes every client with
//! `StorageUnavailable` and unloads, so it never serves state that is not durable; clients
//! reconnect and resend what they have (Yjs sync makes that lossless).
//!
//! Updates arriving together are applied in one transaction and go out as one merged update:
//! one store append and one encoded frame for many client edits (group commit).
//!
//! Hostile input is contained here: an update is checked against the member's access, then
//! against the update limits (`limits.rs`), and only then decoded; updates whose
//! dependencies are missing (held by yrs as "pending") are bounded per room; awareness is
//! bounded per member (client ids it owns, bytes per state, a rate).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use yrs::sync::{Awareness, AwarenessUpdate};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{ClientID, Doc, IdSet, ReadTxn, StateVector, Transact, TransactionMut, Update, WriteTxn};

use crate::fanout::{FanoutMessage, FanoutPayload, NodeId, Subscription};
use crate::limits::StructRef;
use crate::limits::{self, LimitError, UpdateLimits};
use crate::outbox::{Outbox, Route, SendError};
use crate::protocol::{self, ClientMessage};
use crate::rate::TokenBucket;
use crate::store::{Edit, NewVersion, SERVER_AUTHOR, StoredDoc, VersionReason};
use crate::type_depth::{Checked, TypeDepths};
use crate::{
    Access, AccessChange, CloseReason, CollabMetrics, DocId, Fanout, Guest, JoinError, RoomConfig,
    Store, StoreError, UpdateRefused,
};

/// Identifies one client's membership in a room.
pub(crate) type MemberId = u64;

/// The member id under which the server itself edits documents (see `Rooms::apply_update`).
/// Client memberships are numbered from 1.
pub(crate) const SERVER_MEMBER: MemberId = 0;

/// How many queued commands a room takes in one turn; bounds the latency a burst adds.
const MAX_BATCH: usize = 256;

/// What a room is asked to do.
#[derive(Debug)]
pub(crate) enum Command {
    Join {
        member: MemberId,
        guest: Guest,
        outbox: Outbox,
        route: Route,
        reply: oneshot::Sender<Result<(), JoinError>>,
    },
    Client {
        member: MemberId,
        message: ClientMessage,
    },
    Leave {
        member: MemberId,
    },
    /// Changes the access of every connection of the named users.
    ChangeAccess {
        changes: Vec<(Arc<str>, AccessChange)>,
    },
    /// Closes the connections that authenticated in login session `session`.
    CloseSession {
        session: Arc<str>,
        reason: CloseReason,
    },
    /// Lists the users connected to this room.
    Users {
        reply: oneshot::Sender<Vec<Arc<str>>>,
    },
    /// An edit made by the server itself (AI output, a copied template...): persisted and
    /// broadcast to every member like a client's update.
    ServerUpdate {
        /// An encoded (v1) update the caller has already checked decodes.
        update: Bytes,
        /// Who the edit is attributed to (`ai:<job id>`, `server`...).
        author: Arc<str>,
        reply: oneshot::Sender<()>,
    },
    /// An update sent over REST by a caller with write access: checked exactly like a
    /// member's, and answered (applied, or why not) instead of closing anything.
    RestUpdate {
        update: Bytes,
        author: Arc<str>,
        reply: oneshot::Sender<Result<(), UpdateRefused>>,
    },
    /// Keeps the document's current state as a version (nothing when it is empty).
    SaveVersion {
        reason: VersionReason,
        label: Option<String>,
        author: Option<Arc<str>>,
        reply: oneshot::Sender<Result<Option<i64>, StoreError>>,
    },
    /// Runs a server-side edit on the document itself (so it builds on the current state),
    /// then persists and broadcasts what it changed.
    Edit {
        edit: ServerEdit,
        /// Who the edit is attributed to.
        author: Arc<str>,
        reply: oneshot::Sender<()>,
    },
    /// Encodes the whole document state.
    EncodeState {
        reply: oneshot::Sender<Vec<u8>>,
    },
}

/// A server-side edit: a function the room runs inside a write transaction.
#[derive(Clone)]
pub(crate) struct ServerEdit(pub Arc<dyn Fn(&mut TransactionMut<'_>) + Send + Sync>);

impl std::fmt::Debug for ServerEdit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerEdit")
    }
}

/// Everything a room needs from the registry that spawned it.
#[derive(Debug, Clone)]
pub(crate) struct RoomContext {
    pub store: Arc<dyn Store>,
    /// Client ids clients may not write under (shared by every room of the registry).
    pub reserved: crate::reserved::ReservedClients,
    pub fanout: Arc<dyn Fanout>,
    pub node: NodeId,
    pub config: RoomConfig,
    pub metrics: CollabMetrics,
    pub shutdown: CancellationToken,
}

/// Why a room could not be loaded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored snapshot or log entry fails the update limits or does not decode: the
    /// document is refused rather than crash the server (or silently lose that part).
    #[error("stored document is unreadable")]
    Unreadable(#[source] LimitError),
}

/// Why a room stopped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// No clients for the grace period: flushed and unloaded.
    Idle,
    /// The server is shutting down.
    Shutdown,
    /// The store failed; the room dropped its in-memory state.
    StorageFailed,
}

#[derive(Debug)]
struct Member {
    /// The user behind this connection.
    user: Arc<str>,
    /// The login session it authenticated in, if revocable.
    session: Option<Arc<str>>,
    /// What this connection may do; updates from read-only members are refused.
    access: Access,
    outbox: Outbox,
    route: Route,
    /// Awareness client ids this member owns (has announced a state for); cleared for it
    /// when it leaves. No other member may set or remove their states.
    awareness_clients: HashSet<ClientID>,
    /// The member's awareness rate limit.
    awareness_bucket: TokenBucket,
    /// Whether the member was already sent a sync step 1 because its update left something
    /// pending; reset once nothing is pending any more.
    resync_sent: bool,
}

pub(crate) struct Room {
    doc_id: DocId,
    awareness: Awareness,
    members: HashMap<MemberId, Member>,
    context: RoomContext,
    /// Encoded `SyncStep2` with the whole document, shared by every joiner that starts from
    /// an empty state (the join-storm case). Dropped whenever the document changes.
    full_state: Option<Bytes>,
    /// Log entries appended since the last snapshot, and their bytes.
    log_updates: usize,
    log_bytes: usize,
    /// The newest sequence number this room knows is in the store.
    last_seq: i64,
    /// Approximate encoded size of the document (snapshot + log).
    document_bytes: usize,
    /// A compaction running in the background, if any: compacting a big log takes
    /// milliseconds, which must not stall the room's broadcasts.
    compaction: Option<Compaction>,
    /// Which member owns each awareness client id announced on this node.
    awareness_owners: HashMap<ClientID, MemberId>,
    /// Updates (and their encoded bytes) that left something pending since the document last
    /// had nothing pending: an upper bound of what yrs holds until the dependencies arrive.
    pending_updates: usize,
    pending_bytes: usize,
    /// The depths of the document's types, to refuse updates nesting types too deep.
    type_depths: TypeDepths,
    /// Numbers this room's updates to other nodes: its stream id and the last number used.
    stream: u64,
    published_seq: u64,
    /// The last update heard from each other node's room: its stream and number, to notice
    /// a lost message.
    heard: HashMap<NodeId, (u64, u64)>,
    /// When to next ask the other nodes for what this room lacks (None: no need).
    sync_due: Option<tokio::time::Instant>,
    /// When it last asked, to ask at most every `MIN_SYNC_REQUEST_GAP`.
    last_sync_request: Option<tokio::time::Instant>,
    /// Whether the next request follows a (possible) lost message.
    sync_after_gap: bool,
    /// `published_seq` at the last periodic check, and as last stated to the other nodes.
    seq_at_last_check: u64,
    stated_seq: u64,
    /// Whether the next request should also read the document back from the store: the
    /// node that published a lost update may be gone, but the store has it.
    read_store_wanted: bool,
    /// A read of the stored document running in the background, if any.
    store_read: Option<tokio::task::JoinHandle<Result<StoredDoc, StoreError>>>,
    /// When a version was last kept (or the room loaded), and whether the document changed
    /// since: activity versions (`RoomConfig::version_interval`).
    last_version: tokio::time::Instant,
    edited_since_version: bool,
}

/// Asking other nodes for what a room lacks is cheap but not free: after a gap a burst of
/// triggers (every later message, every answer) makes one request, not one each.
const MIN_SYNC_REQUEST_GAP: std::time::Duration = std::time::Duration::from_millis(100);

/// Other nodes' rooms a room remembers update numbers for; beyond that (nodes come and go
/// over a long-lived room) it forgets them all, and the next message from each counts as
/// a gap: one extra state comparison, never a loss.
const MAX_HEARD_STREAMS: usize = 64;

/// A background compaction and what it covers, to settle the log counters when it ends.
#[derive(Debug)]
struct Compaction {
    task: tokio::task::JoinHandle<Result<(), StoreError>>,
    /// Log entries and bytes folded into the snapshot being written.
    log_updates: usize,
    log_bytes: usize,
    snapshot_bytes: usize,
}

impl std::fmt::Debug for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Room")
            .field("doc_id", &self.doc_id)
            .field("members", &self.members.len())
            .finish_non_exhaustive()
    }
}

impl Room {
    /// Loads a document from the store. A stored part that fails the update limits or does
    /// not decode makes the whole document fail to load: skipping it would serve (and then
    /// compact away) a document missing edits, and decoding it could crash the server.
    pub(crate) async fn load(doc_id: DocId, context: RoomContext) -> Result<Self, LoadError> {
        let stored = context.store.load(&doc_id).await?;
        // Stored parts were checked when they arrived, but may predate the checks; their size
        // was bounded then, so only the depth matters here.
        let limits = UpdateLimits {
            max_values: usize::MAX,
            ..context.config.update_limits
        };
        let doc = Doc::new();
        let mut document_bytes = 0;
        let mut last_seq = 0;
        let mut type_depths = TypeDepths::default();
        {
            let mut txn = doc.transact_mut();
            let parts = stored
                .snapshot
                .iter()
                .map(Vec::as_slice)
                .chain(stored.updates.iter().map(|update| update.bytes.as_slice()));
            for bytes in parts {
                document_bytes += bytes.len();
                // Each part is checked against the document built so far, so a stored chain
                // of types too deep is refused before yrs could delete it recursively. A
                // snapshot may carry structs that were pending when it was written (their
                // depth was checked when they arrived): those are left pending again.
                let (update, checked, _) = checked_decode_in(
                    bytes,
                    &limits,
                    context.config.max_type_depth,
                    &mut type_depths,
                    &txn,
                )
                .map_err(LoadError::Unreadable)?;
                if let Err(error) = txn.apply_update(update) {
                    tracing::error!(doc = %doc_id, %error, "stored update does not apply");
                } else if let Checked::Within(created) = checked {
                    type_depths.record(created);
                }
            }
        }
        if let Some(last) = stored.updates.last() {
            last_seq = last.seq;
        }
        Ok(Self {
            doc_id,
            awareness: Awareness::new(doc),
            members: HashMap::new(),
            log_updates: stored.updates.len(),
            log_bytes: stored.updates.iter().map(|update| update.bytes.len()).sum(),
            context,
            full_state: None,
            last_seq,
            document_bytes,
            compaction: None,
            awareness_owners: HashMap::new(),
            pending_updates: 0,
            pending_bytes: 0,
            type_depths,
            stream: random_stream_id(),
            published_seq: 0,
            heard: HashMap::new(),
            sync_due: None,
            last_sync_request: None,
            sync_after_gap: false,
            seq_at_last_check: 0,
            stated_seq: 0,
            read_store_wanted: false,
            store_read: None,
            last_version: tokio::time::Instant::now(),
            edited_since_version: false,
        })
    }

    /// Runs the room until it is idle past the grace period, the server shuts down, or the
    /// store fails. Commands still queued when it stops are answered by the caller
    /// (`Rooms`), which dropped this room's handle first.
    pub(crate) async fn run(
        &mut self,
        commands: &mut mpsc::Receiver<Command>,
        mut subscription: Option<Subscription>,
    ) -> Exit {
        // Grows with the first burst instead of up front: most rooms are quiet, and 256
        // commands' worth of capacity was the largest part of an idle room's memory.
        let mut batch = Vec::new();
        let mut resync = subscription
            .as_mut()
            .and_then(|subscription| subscription.resync.take());
        let mut sync_tick = match (&subscription, self.context.config.cluster_sync_interval) {
            (Some(_), Some(period)) => {
                let mut tick =
                    tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                Some(tick)
            }
            _ => None,
        };
        if subscription.is_some() {
            // Updates other nodes published before this room subscribed, or while it was
            // loading, are asked for now.
            self.request_sync_soon(true);
        }
        // Since when the room has had no members and no commands. Messages from other nodes
        // do not count: a room that only relays another node's traffic still unloads.
        let mut idle_since = None;
        loop {
            if !self.members.is_empty() {
                idle_since = None;
            } else if idle_since.is_none() {
                idle_since = Some(tokio::time::Instant::now());
            }
            let idle = idle_since.is_some();
            let grace = tokio::time::sleep_until(
                idle_since.unwrap_or_else(tokio::time::Instant::now)
                    + self.context.config.unload_grace,
            );
            let sync_due = self.sync_due;
            tokio::select! {
                biased;
                () = self.context.shutdown.cancelled() => {
                    // Apply what clients already sent before closing them: their edits are
                    // kept, not left for them to resend after reconnecting.
                    while let Ok(command) = commands.try_recv() {
                        batch.push(command);
                    }
                    if let Err(error) = self.handle_batch(&mut batch).await {
                        tracing::error!(doc = %self.doc_id, error = &error as &dyn std::error::Error, "store failed during shutdown");
                        self.context.metrics.store_errors.inc();
                    }
                    self.close_all(CloseReason::ShuttingDown);
                    self.compact_before_unload().await;
                    return Exit::Shutdown;
                }
                received = commands.recv_many(&mut batch, MAX_BATCH) => {
                    if received == 0 {
                        // Every handle is gone: the registry itself was dropped.
                        return Exit::Shutdown;
                    }
                    idle_since = None;
                    if let Err(error) = self.handle_batch(&mut batch).await {
                        tracing::error!(doc = %self.doc_id, error = &error as &dyn std::error::Error, "store failed; unloading room");
                        self.context.metrics.store_errors.inc();
                        self.close_all(CloseReason::StorageUnavailable);
                        return Exit::StorageFailed;
                    }
                }
                Some(message) = next_fanout(&mut subscription) => {
                    self.handle_fanout(message);
                }
                () = next_change(&mut resync) => {
                    // The transport reconnected: whatever was published meanwhile is lost.
                    self.suspect_loss();
                }
                _ = next_tick(&mut sync_tick) => {
                    self.periodic_check();
                }
                () = sleep_until_due(sync_due) => {
                    self.send_sync_request();
                }
                result = store_read_done(&mut self.store_read) => {
                    self.store_read = None;
                    self.apply_store_read(result);
                }
                result = compaction_done(&mut self.compaction) => {
                    self.finish_compaction(result);
                }
                () = grace, if idle => {
                    self.compact_before_unload().await;
                    return Exit::Idle;
                }
            }
        }
    }

    async fn handle_batch(&mut self, batch: &mut Vec<Command>) -> Result<(), StoreError> {
        let mut commands = batch.drain(..).peekable();
        while let Some(command) = commands.next() {
            match command {
                Command::Client {
                    member,
                    message: ClientMessage::Update(update),
                } => {
                    // Apply this update and every update directly behind it in one
                    // transaction, so they are persisted and broadcast as one.
                    let mut updates = vec![(Sender::Member(member), update)];
                    while let Some(Command::Client {
                        message: ClientMessage::Update(_),
                        ..
                    }) = commands.peek()
                    {
                        if let Some(Command::Client {
                            member,
                            message: ClientMessage::Update(update),
                        }) = commands.next()
                        {
                            updates.push((Sender::Member(member), update));
                        }
                    }
                    self.apply_client_updates(updates).await?;
                }
                Command::Client {
                    member,
                    message: ClientMessage::SyncStep1(state_vector),
                } => {
                    let reply = self.sync_step2_for(&state_vector);
                    self.send_to(member, reply);
                }
                Command::Client {
                    member,
                    message: ClientMessage::Awareness(update),
                } => self.apply_client_awareness(member, update),
                Command::Client {
                    member,
                    message: ClientMessage::AwarenessQuery,
                } => {
                    if let Ok(update) = self.awareness.update() {
                        self.send_to(member, protocol::encode_awareness(&update));
                    }
                }
                Command::Join {
                    member,
                    guest,
                    outbox,
                    route,
                    reply,
                } => {
                    self.join(member, guest, outbox, route);
                    let _ = reply.send(Ok(()));
                }
                Command::Leave { member } => self.leave(member),
                Command::ChangeAccess { changes } => self.change_access(&changes),
                Command::CloseSession { session, reason } => {
                    let closing: Vec<MemberId> = self
                        .members
                        .iter()
                        .filter(|(_, member)| member.session.as_ref() == Some(&session))
                        .map(|(id, _)| *id)
                        .collect();
                    for member in closing {
                        self.kick(member, reason);
                    }
                }
                Command::Users { reply } => {
                    let users = self.members.values().map(|member| member.user.clone());
                    let _ = reply.send(users.collect());
                }
                Command::ServerUpdate {
                    update,
                    author,
                    reply,
                } => {
                    self.apply_client_updates(vec![(Sender::Server(author), update)])
                        .await?;
                    let _ = reply.send(());
                }
                Command::RestUpdate {
                    update,
                    author,
                    reply,
                } => {
                    self.apply_client_updates(vec![(Sender::Rest { author, reply }, update)])
                        .await?;
                }
                Command::Edit {
                    edit,
                    author,
                    reply,
                } => {
                    let diff = {
                        let mut txn = self.awareness.doc().transact_mut();
                        let sv_before = txn.state_vector();
                        (edit.0)(&mut txn);
                        let changed =
                            txn.before_state() != txn.after_state() || !txn.delete_set().is_empty();
                        changed.then(|| {
                            let deleted = deleted_len(txn.delete_set());
                            (txn.encode_update_v1(), sv_before, deleted)
                        })
                    };
                    if let Some((diff, sv_before, deleted)) = diff {
                        // The server's own encoding: its text length is read the same way
                        // as a client's update.
                        let inserted = limits::scan_update_v1(
                            &diff,
                            &UpdateLimits {
                                max_values: usize::MAX,
                                ..self.context.config.update_limits
                            },
                        )
                        .map_or(0, |(_, structs)| limits::new_text_len(&structs, &sv_before));
                        let mut edits = Vec::new();
                        note_edit(&mut edits, &author, inserted, deleted);
                        self.commit(diff, &edits, None).await?;
                    }
                    let _ = reply.send(());
                }
                Command::SaveVersion {
                    reason,
                    label,
                    author,
                    reply,
                } => {
                    let saved = self.save_version(reason, label, author).await;
                    let _ = reply.send(saved);
                }
                Command::EncodeState { reply } => {
                    let _ = reply.send(self.encode_snapshot());
                }
            }
        }
        Ok(())
    }

    fn join(&mut self, member: MemberId, guest: Guest, outbox: Outbox, route: Route) {
        let state_vector = self.awareness.doc().transact().state_vector();
        let _ = outbox.send(route, protocol::encode_sync_step1(&state_vector));
        if let Ok(update) = self.awareness.update()
            && !update.clients.is_empty()
        {
            let _ = outbox.send(route, protocol::encode_awareness(&update));
        }
        self.members.insert(
            member,
            Member {
                user: guest.user,
                session: guest.session,
                access: guest.access,
                outbox,
                route,
                awareness_clients: HashSet::new(),
                awareness_bucket: TokenBucket::full(self.context.config.awareness_burst),
                resync_sent: false,
            },
        );
        self.context.metrics.room_members.inc();
    }

    fn change_access(&mut self, changes: &[(Arc<str>, AccessChange)]) {
        let mut closing = Vec::new();
        let mut upgraded = Vec::new();
        for (id, member) in &mut self.members {
            let change = changes.iter().find(|(user, _)| *user == member.user);
            match change {
                Some((_, AccessChange::Set(access))) => {
                    if member.access == Access::Read && *access == Access::Write {
                        upgraded.push(*id);
                    }
                    member.access = *access;
                }
                Some((_, AccessChange::Close(reason))) => closing.push((*id, *reason)),
                None => {}
            }
        }
        for (member, reason) in closing {
            self.kick(member, reason);
        }
        // What a member typed while it was read-only was refused, and Yjs cannot discard it
        // on the client: every later edit would depend on it and wait as pending forever.
        // Asking for everything the room lacks merges the edits made during the lock.
        if !upgraded.is_empty() {
            let step1 = self.sync_step1();
            for member in upgraded {
                self.send_to(member, step1.clone());
            }
        }
    }

    fn leave(&mut self, member: MemberId) {
        let Some(left) = self.members.remove(&member) else {
            return;
        };
        self.context.metrics.room_members.dec();
        if left.awareness_clients.is_empty() {
            return;
        }
        for client in &left.awareness_clients {
            self.awareness.remove_state(*client);
            self.awareness_owners.remove(client);
        }
        if let Ok(removal) = self
            .awareness
            .update_with_clients(left.awareness_clients.iter().copied())
        {
            self.broadcast(protocol::encode_awareness(&removal), None);
            self.publish(FanoutPayload::Awareness(Bytes::from(removal.encode_v1())));
        }
    }

    fn sync_step2_for(&mut self, state_vector: &StateVector) -> Bytes {
        if state_vector.is_empty() {
            if let Some(full_state) = &self.full_state {
                return full_state.clone();
            }
            let encoded = self
                .awareness
                .doc()
                .transact()
                .encode_diff_v1(&StateVector::default());
            let message = protocol::encode_sync_step2(&encoded);
            self.full_state = Some(message.clone());
            return message;
        }
        let diff = self.awareness.doc().transact().encode_diff_v1(state_vector);
        protocol::encode_sync_step2(&diff)
    }

    async fn apply_client_updates(
        &mut self,
        updates: Vec<(Sender, Bytes)>,
    ) -> Result<(), StoreError> {
        let config = &self.context.config;
        let mut senders = HashSet::new();
        let mut rejected = Vec::new();
        let mut resync = Vec::new();
        let mut edits: Vec<Edit> = Vec::new();
        let mut answers = Vec::new();
        let diff = {
            let mut txn = self.awareness.doc().transact_mut();
            let mut accepted_bytes = 0;
            for (sender, payload) in updates {
                let (member, author, trusted, answer) = match sender {
                    Sender::Member(member) => {
                        if rejected.iter().any(|(refused, _)| *refused == member) {
                            continue; // closed earlier in this batch
                        }
                        let Some(joined) = self.members.get(&member) else {
                            continue; // closed earlier in this batch
                        };
                        // Access first: a read-only member's bytes are never decoded.
                        if joined.access == Access::Read {
                            // Refused without closing: the client may still follow the
                            // document and send awareness. Its local edit stays local (see
                            // `change_access`). Hostile bytes still close it: the limits
                            // walk does not decode.
                            if let Err(error) =
                                limits::check_update_v1(&payload, &config.update_limits)
                            {
                                tracing::info!(doc = %self.doc_id, member, error = &error as &dyn std::error::Error, "update refused");
                                rejected.push((member, CloseReason::InvalidMessage));
                            } else {
                                tracing::debug!(doc = %self.doc_id, member, "update from a read-only member refused");
                                self.context.metrics.messages_rejected.inc();
                            }
                            continue;
                        }
                        (member, joined.user.clone(), false, None)
                    }
                    Sender::Server(author) => (SERVER_MEMBER, author, true, None),
                    Sender::Rest { author, reply } => (SERVER_MEMBER, author, false, Some(reply)),
                };
                // Refuses this update: a member is closed, a REST caller is told why.
                let mut refuse = |reason: CloseReason, answer: Option<RestReply>| match answer {
                    Some(reply) => {
                        let _ = reply.send(Err(UpdateRefused::from_close(reason)));
                    }
                    None => rejected.push((member, reason)),
                };
                let sv_before = txn.state_vector();
                let (update, checked, structs) = match checked_decode_in(
                    &payload,
                    &config.update_limits,
                    config.max_type_depth,
                    &mut self.type_depths,
                    &txn,
                ) {
                    Ok(decoded) => decoded,
                    Err(error) => {
                        tracing::info!(doc = %self.doc_id, member, error = &error as &dyn std::error::Error, "update refused");
                        refuse(CloseReason::InvalidMessage, answer);
                        continue;
                    }
                };
                let created = match checked {
                    Checked::Within(created) => created,
                    Checked::Unknown => {
                        // A new type's depth depends on changes the room lacks: applying it
                        // could let yrs integrate an unchecked type later. Ask the sender
                        // for everything the room lacks instead; its answer carries both.
                        tracing::debug!(doc = %self.doc_id, member, "update with a type of unknown depth held back");
                        if let Some(reply) = answer {
                            let _ = reply.send(Err(UpdateRefused::MissingDependencies));
                        } else if let Some(joined) = self.members.get_mut(&member)
                            && !joined.resync_sent
                        {
                            joined.resync_sent = true;
                            resync.push(member);
                        }
                        continue;
                    }
                };
                if !trusted && self.context.reserved.is_forged(&self.doc_id, &update) {
                    tracing::info!(doc = %self.doc_id, member, "update under a reserved client id refused");
                    refuse(CloseReason::ReservedClientId, answer);
                    continue;
                }
                if self.document_bytes + accepted_bytes + payload.len() > config.max_document_bytes
                {
                    refuse(CloseReason::DocumentTooLarge, answer);
                    continue;
                }
                let was_pending = txn.has_missing_updates();
                let deleted_before = deleted_len(txn.delete_set());
                if let Err(error) = txn.apply_update(update) {
                    tracing::warn!(doc = %self.doc_id, member, %error, "update does not apply");
                    refuse(CloseReason::InvalidMessage, answer);
                    continue;
                }
                accepted_bytes += payload.len();
                self.type_depths.record(created);
                note_edit(
                    &mut edits,
                    &author,
                    limits::new_text_len(&structs, &sv_before),
                    deleted_len(txn.delete_set()).saturating_sub(deleted_before),
                );
                senders.insert(member);
                if !txn.has_missing_updates() {
                    if let Some(reply) = answer {
                        answers.push(reply);
                    }
                    // Nothing waits: this member may be asked again next time.
                    if let Some(joined) = self.members.get_mut(&member) {
                        joined.resync_sent = false;
                    }
                    if self.pending_updates > 0 {
                        self.pending_updates = 0;
                        self.pending_bytes = 0;
                        for joined in self.members.values_mut() {
                            joined.resync_sent = false;
                        }
                    }
                    continue;
                }
                if let Some(reply) = answer {
                    // A REST caller cannot be asked for what is missing: what applied stays
                    // (it is valid on its own), the rest is dropped unless other members'
                    // updates were already waiting, and the caller is told.
                    if !was_pending {
                        txn.prune_pending();
                    }
                    let _ = reply.send(Err(UpdateRefused::MissingDependencies));
                    continue;
                }
                // Part of this update waits for changes the room has not seen. yrs keeps it
                // in memory until they come, outside the document size: bound it.
                self.pending_updates += 1;
                self.pending_bytes += payload.len();
                if self.pending_updates > config.max_pending_updates
                    || self.pending_bytes > config.max_pending_bytes
                {
                    tracing::info!(doc = %self.doc_id, member, updates = self.pending_updates, bytes = self.pending_bytes, "pending updates over the limit; dropped");
                    txn.prune_pending();
                    self.pending_updates = 0;
                    self.pending_bytes = 0;
                    self.context.metrics.pending_overflows.inc();
                    rejected.push((member, CloseReason::TooManyPending));
                    continue;
                }
                // Ask the sender for what is missing instead of waiting forever.
                if let Some(joined) = self.members.get_mut(&member)
                    && !joined.resync_sent
                {
                    joined.resync_sent = true;
                    resync.push(member);
                }
            }
            let changed = txn.before_state() != txn.after_state() || !txn.delete_set().is_empty();
            changed.then(|| txn.encode_update_v1())
        };
        for (member, reason) in rejected {
            self.context.metrics.messages_rejected.inc();
            self.kick(member, reason);
        }
        if !resync.is_empty() {
            let step1 = self.sync_step1();
            for member in resync {
                self.send_to(member, step1.clone());
            }
        }
        if let Some(diff) = diff {
            // The sender already has its own edit; when several members contributed, each
            // gets the merged update (re-applying known changes is a no-op in Yjs).
            let only_sender = (senders.len() == 1)
                .then(|| senders.iter().next().copied())
                .flatten();
            self.commit(diff, &edits, only_sender).await?;
        }
        // Answered once durable.
        for reply in answers {
            let _ = reply.send(Ok(()));
        }
        Ok(())
    }

    /// A sync step 1 with the room's state vector: the peer answers with what the room lacks.
    fn sync_step1(&self) -> Bytes {
        let state_vector = self.awareness.doc().transact().state_vector();
        protocol::encode_sync_step1(&state_vector)
    }

    /// Makes an update already applied to the document durable, then sends it to every
    /// member but `except` and to the other nodes.
    async fn commit(
        &mut self,
        diff: Vec<u8>,
        edits: &[Edit],
        except: Option<MemberId>,
    ) -> Result<(), StoreError> {
        self.full_state = None;
        self.context.metrics.updates_applied.inc();

        let started = Instant::now();
        let seq = self
            .context
            .store
            .append(&self.doc_id, &diff, edits)
            .await?;
        self.context
            .metrics
            .persist_seconds
            .observe(started.elapsed().as_secs_f64());
        self.last_seq = seq;
        self.log_updates += 1;
        self.log_bytes += diff.len();
        self.document_bytes += diff.len();

        self.broadcast(protocol::encode_update(&diff), except);
        self.published_seq += 1;
        self.publish(FanoutPayload::Update {
            stream: self.stream,
            seq: self.published_seq,
            update: Bytes::from(diff),
        });
        self.start_compaction_if_needed();
        // Documents only the server writes (session state, inboxes, progress feeds) are
        // nobody's work to go back to: no activity versions for them.
        if edits.iter().any(|edit| &*edit.author != SERVER_AUTHOR) {
            self.keep_activity_version();
        }
        Ok(())
    }

    /// Keeps the current state as a version, unless the document is empty; the next
    /// activity version is due an interval from now.
    async fn save_version(
        &mut self,
        reason: VersionReason,
        label: Option<String>,
        author: Option<Arc<str>>,
    ) -> Result<Option<i64>, StoreError> {
        let snapshot = self.encode_snapshot();
        self.edited_since_version = false;
        self.last_version = tokio::time::Instant::now();
        // An empty document is worth keeping at a moment that matters (a session starts:
        // restoring it undoes everything since), not as activity.
        if reason == VersionReason::Activity && is_empty_state(&snapshot) {
            return Ok(None);
        }
        let version = NewVersion {
            snapshot,
            reason,
            label,
            author,
        };
        self.context
            .store
            .save_version(&self.doc_id, &version)
            .await
            .map(Some)
    }

    /// While the document is edited, keeps a version every `version_interval`. Written in
    /// the background: a version is history, not durability, and the room must not wait.
    fn keep_activity_version(&mut self) {
        self.edited_since_version = true;
        let Some(interval) = self.context.config.version_interval else {
            return;
        };
        if self.last_version.elapsed() < interval {
            return;
        }
        self.spawn_activity_version();
    }

    fn spawn_activity_version(&mut self) {
        self.edited_since_version = false;
        self.last_version = tokio::time::Instant::now();
        let version = NewVersion {
            snapshot: self.encode_snapshot(),
            reason: VersionReason::Activity,
            label: None,
            author: None,
        };
        let store = self.context.store.clone();
        let doc_id = self.doc_id.clone();
        tokio::spawn(async move {
            if let Err(error) = store.save_version(&doc_id, &version).await {
                tracing::warn!(doc = %doc_id, error = &error as &dyn std::error::Error, "could not keep a version");
            }
        });
    }

    /// Applies and relays a member's awareness update within its limits. Entries for client
    /// ids another member owns, and removals of ids nobody here owns, are dropped silently
    /// (a stock client removes peers it timed out, and a reconnecting tab may race its old
    /// socket); so are whole updates over the rate. A state over the size limit, or more
    /// client ids than a member may own, closes the member: no stock client does that.
    fn apply_client_awareness(&mut self, member: MemberId, update: AwarenessUpdate) {
        let config = &self.context.config;
        let Some(joined) = self.members.get_mut(&member) else {
            return;
        };
        if !joined
            .awareness_bucket
            .take(config.awareness_rate, config.awareness_burst)
        {
            self.context.metrics.awareness_dropped.inc();
            return;
        }
        let mut accepted = HashMap::new();
        let mut violation = false;
        for (client, entry) in update.clients {
            if entry.json.len() > config.max_awareness_state_bytes {
                violation = true;
                break;
            }
            let owner = self.awareness_owners.get(&client).copied();
            if owner.is_some_and(|owner| owner != member) {
                self.context.metrics.awareness_dropped.inc();
                continue;
            }
            if &*entry.json == "null" {
                if owner.is_none() {
                    self.context.metrics.awareness_dropped.inc();
                    continue;
                }
                joined.awareness_clients.remove(&client);
                self.awareness_owners.remove(&client);
            } else if owner.is_none() {
                if joined.awareness_clients.len() >= config.max_awareness_clients {
                    violation = true;
                    break;
                }
                joined.awareness_clients.insert(client);
                self.awareness_owners.insert(client, member);
            }
            accepted.insert(client, entry);
        }
        if violation {
            tracing::info!(doc = %self.doc_id, member, "awareness limits exceeded");
            self.context.metrics.messages_rejected.inc();
            self.kick(member, CloseReason::AwarenessLimit);
            return;
        }
        if accepted.is_empty() {
            return;
        }
        let update = AwarenessUpdate { clients: accepted };
        let encoded = protocol::encode_awareness(&update);
        if let Err(error) = self.awareness.apply_update(update.clone()) {
            tracing::warn!(doc = %self.doc_id, member, %error, "awareness update rejected");
            return;
        }
        self.broadcast(encoded, Some(member));
        self.publish(FanoutPayload::Awareness(Bytes::from(update.encode_v1())));
    }

    fn handle_fanout(&mut self, message: FanoutMessage) {
        match message.payload {
            FanoutPayload::Update {
                stream,
                seq,
                update,
            } => {
                let gap = self.note_number(message.origin, stream, seq);
                if self.apply_remote_update(&update) && !gap {
                    self.note_missing_dependencies();
                }
            }
            FanoutPayload::SyncReply { to, update } => {
                if to == self.context.node && self.apply_remote_update(&update) {
                    self.note_missing_dependencies();
                }
            }
            FanoutPayload::SyncRequest {
                state_vector,
                after_gap,
                stream,
                seq,
            } => {
                self.note_last_number(message.origin, stream, seq);
                self.answer_sync_request(message.origin, &state_vector, after_gap);
            }
            FanoutPayload::Awareness(bytes) => match limits::check_awareness_v1(&bytes)
                .map_err(|error| error.to_string())
                .and_then(|()| AwarenessUpdate::decode_v1(&bytes).map_err(|e| e.to_string()))
            {
                Ok(update) => {
                    let encoded = protocol::encode_awareness(&update);
                    if self.awareness.apply_update(update).is_ok() {
                        self.broadcast(encoded, None);
                    }
                }
                Err(error) => {
                    tracing::warn!(doc = %self.doc_id, %error, "fan-out awareness does not decode");
                }
            },
        }
    }

    /// Checks that `seq` follows the last update heard from `origin`'s room; a skipped
    /// number means a message was lost, and the room asks for what it lacks. True when
    /// it noticed a gap.
    fn note_number(&mut self, origin: NodeId, stream: u64, seq: u64) -> bool {
        let expected = match self.heard.get(&origin) {
            Some(&(heard_stream, last)) if heard_stream == stream => last.wrapping_add(1),
            // A room instance not heard from before starts at 1; anything else means this
            // room subscribed after some of its updates went out.
            _ => 1,
        };
        if seq != expected {
            self.context.metrics.fanout_gaps.inc();
            tracing::debug!(doc = %self.doc_id, expected, seq, "fan-out gap; asking for what is missing");
            self.suspect_loss();
        }
        self.remember_number(origin, stream, seq);
        seq != expected
    }

    /// An update from another node builds on changes this room never got: a lost message
    /// (one the update numbers did not already reveal). Ask for them.
    fn note_missing_dependencies(&mut self) {
        self.context.metrics.fanout_gaps.inc();
        self.suspect_loss();
    }

    /// Checks the last number `origin`'s room says it used against what this room heard: a
    /// lost last update (no later one to reveal it) shows here.
    fn note_last_number(&mut self, origin: NodeId, stream: u64, seq: u64) {
        let missed = match self.heard.get(&origin) {
            Some(&(heard_stream, last)) if heard_stream == stream => last < seq,
            _ => seq > 0,
        };
        if missed {
            self.context.metrics.fanout_gaps.inc();
            self.suspect_loss();
            // What it announced is accounted for by the request just made.
            self.remember_number(origin, stream, seq);
        }
    }

    fn remember_number(&mut self, origin: NodeId, stream: u64, seq: u64) {
        if self.heard.len() >= MAX_HEARD_STREAMS && !self.heard.contains_key(&origin) {
            self.heard.clear();
        }
        self.heard.insert(origin, (stream, seq));
    }

    /// Applies an update another node made durable, and relays it to this node's members.
    /// True when part of it waits for changes this room lacks.
    fn apply_remote_update(&mut self, bytes: &Bytes) -> bool {
        // Another node checked it against the same limits; a node running older code, or a
        // forged message on a shared bus, must not crash this one either.
        let config = &self.context.config;
        let mut txn = self.awareness.doc().transact_mut();
        // The type depth check too; a type of unknown depth is applied all the same: the
        // node that accepted it resolved it, and refusing would leave this node's copy
        // behind until its clients resync.
        let checked = checked_decode_in(
            bytes,
            &config.update_limits,
            config.max_type_depth,
            &mut self.type_depths,
            &txn,
        );
        let (update, checked, _) = match checked {
            Ok(decoded) => decoded,
            Err(error) => {
                tracing::warn!(doc = %self.doc_id, error = &error as &dyn std::error::Error, "fan-out update refused");
                return false;
            }
        };
        if let Err(error) = txn.apply_update(update) {
            tracing::warn!(doc = %self.doc_id, %error, "fan-out update does not apply");
            return false;
        }
        let changed = txn.before_state() != txn.after_state() || !txn.delete_set().is_empty();
        let missing = txn.has_missing_updates();
        drop(txn);
        if let Checked::Within(created) = checked {
            self.type_depths.record(created);
        }
        if changed || missing {
            // Unless already known (an answer overlapping what arrived live).
            self.full_state = None;
            self.document_bytes += bytes.len();
            self.broadcast(protocol::encode_update(bytes), None);
        }
        missing
    }

    /// Applies what the store holds that this room lacks, and relays it to the members.
    fn apply_store_read(&mut self, result: Result<StoredDoc, StoreError>) {
        let stored = match result {
            Ok(stored) => stored,
            Err(error) => {
                self.context.metrics.store_errors.inc();
                tracing::warn!(doc = %self.doc_id, error = &error as &dyn std::error::Error, "reading the store back after a gap failed");
                return;
            }
        };
        // As when loading: sizes were bounded when the parts were stored.
        let limits = UpdateLimits {
            max_values: usize::MAX,
            ..self.context.config.update_limits
        };
        let max_type_depth = self.context.config.max_type_depth;
        let update = {
            let mut txn = self.awareness.doc().transact_mut();
            let parts = stored
                .snapshot
                .iter()
                .map(Vec::as_slice)
                .chain(stored.updates.iter().map(|update| update.bytes.as_slice()));
            for bytes in parts {
                let decoded =
                    checked_decode_in(bytes, &limits, max_type_depth, &mut self.type_depths, &txn);
                match decoded {
                    Ok((update, checked, _)) => {
                        if txn.apply_update(update).is_ok()
                            && let Checked::Within(created) = checked
                        {
                            self.type_depths.record(created);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(doc = %self.doc_id, error = &error as &dyn std::error::Error, "stored part refused while reading back");
                    }
                }
            }
            let changed = txn.before_state() != txn.after_state() || !txn.delete_set().is_empty();
            changed.then(|| txn.encode_update_v1())
        };
        if let Some(update) = update {
            self.context.metrics.fanout_repairs.inc();
            self.full_state = None;
            self.document_bytes += update.len();
            self.broadcast(protocol::encode_update(&update), None);
        }
    }

    /// Answers another node's state vector with what it lacks, and asks in turn when it has
    /// something this room lacks.
    fn answer_sync_request(&mut self, origin: NodeId, state_vector: &[u8], after_gap: bool) {
        let theirs = match limits::check_state_vector_v1(state_vector)
            .map_err(|error| error.to_string())
            .and_then(|()| StateVector::decode_v1(state_vector).map_err(|e| e.to_string()))
        {
            Ok(theirs) => theirs,
            Err(error) => {
                tracing::warn!(doc = %self.doc_id, %error, "fan-out state vector does not decode");
                return;
            }
        };
        let (diff, they_have_more) = {
            let txn = self.awareness.doc().transact();
            let ours = txn.state_vector();
            let they_have_more = theirs
                .iter()
                .any(|(client, clock)| ours.get(client) < *clock);
            let lacking = ours
                .iter()
                .any(|(client, clock)| theirs.get(client) < *clock);
            // A state vector does not show deletions: after a gap the answer goes out even
            // when the vectors agree (it carries the whole delete set); a routine check is
            // answered only when they lack inserts. ARCHITECTURE.md explains why a lost
            // deletion is still always noticed (update numbers).
            let answer = after_gap || lacking;
            (answer.then(|| txn.encode_diff_v1(&theirs)), they_have_more)
        };
        if let Some(diff) = diff {
            self.context.metrics.fanout_repairs.inc();
            self.publish(FanoutPayload::SyncReply {
                to: origin,
                update: Bytes::from(diff),
            });
        }
        if they_have_more {
            self.request_sync_soon(false);
        }
    }

    /// Asks the other nodes for what this room lacks, now or as soon as the last request is
    /// `MIN_SYNC_REQUEST_GAP` old.
    fn request_sync_soon(&mut self, after_gap: bool) {
        self.sync_after_gap |= after_gap;
        let now = tokio::time::Instant::now();
        let earliest = self
            .last_sync_request
            .map_or(now, |last| (last + MIN_SYNC_REQUEST_GAP).max(now));
        self.sync_due = Some(self.sync_due.map_or(earliest, |due| due.min(earliest)));
    }

    /// The periodic check: once a room that published has gone quiet (nothing published
    /// for a whole interval), it states its state vector and last update number, so a
    /// receiver that lost its last update notices (the number) and gets what it lacks (the
    /// state vector). While updates flow, each new number reveals any gap by itself, and a
    /// room that has published nothing new has nothing to state: idle and busy rooms cost
    /// Redis nothing.
    fn periodic_check(&mut self) {
        let quiet = self.published_seq == self.seq_at_last_check;
        self.seq_at_last_check = self.published_seq;
        if quiet && self.published_seq != self.stated_seq {
            self.request_sync_soon(false);
        }
    }

    /// A message from another node may have been lost: ask the other nodes, and read the
    /// store back too (it holds every update any node accepted, even one whose node has
    /// since unloaded the room or died).
    fn suspect_loss(&mut self) {
        self.read_store_wanted = true;
        self.request_sync_soon(true);
    }

    fn send_sync_request(&mut self) {
        if std::mem::take(&mut self.read_store_wanted) && self.store_read.is_none() {
            let (store, doc_id) = (self.context.store.clone(), self.doc_id.clone());
            self.store_read = Some(tokio::spawn(
                async move { store.load(&doc_id).await }.instrument(tracing::Span::current()),
            ));
        }
        self.sync_due = None;
        self.last_sync_request = Some(tokio::time::Instant::now());
        self.context.metrics.fanout_sync_requests.inc();
        let state_vector = self.awareness.doc().transact().state_vector().encode_v1();
        let after_gap = std::mem::take(&mut self.sync_after_gap);
        self.stated_seq = self.published_seq;
        self.publish(FanoutPayload::SyncRequest {
            state_vector: Bytes::from(state_vector),
            after_gap,
            stream: self.stream,
            seq: self.published_seq,
        });
    }

    /// Sends `payload` to every member but `except`; members that cannot keep up are closed.
    fn broadcast(&mut self, payload: Bytes, except: Option<MemberId>) {
        let mut dropped = Vec::new();
        let mut delivered = 0u64;
        for (id, member) in &self.members {
            if Some(*id) == except {
                continue;
            }
            match member.outbox.send(member.route, payload.clone()) {
                Ok(()) => delivered += 1,
                Err(SendError::Lagging) => dropped.push((*id, Some(CloseReason::Lagging))),
                Err(SendError::Closed) => dropped.push((*id, None)),
            }
        }
        self.context.metrics.deliveries.inc_by(delivered);
        for (id, reason) in dropped {
            match reason {
                Some(reason) => self.kick(id, reason),
                None => self.leave(id),
            }
        }
    }

    fn send_to(&mut self, member: MemberId, payload: Bytes) {
        let Some(joined) = self.members.get(&member) else {
            return;
        };
        match joined.outbox.send(joined.route, payload) {
            Ok(()) => {
                self.context.metrics.deliveries.inc();
            }
            Err(SendError::Lagging) => self.kick(member, CloseReason::Lagging),
            Err(SendError::Closed) => self.leave(member),
        }
    }

    /// Closes one member's connection to this room.
    fn kick(&mut self, member: MemberId, reason: CloseReason) {
        if let Some(joined) = self.members.get(&member) {
            tracing::info!(doc = %self.doc_id, member, ?reason, "closing member");
            joined.outbox.close(joined.route, reason);
        }
        self.leave(member);
    }

    pub(crate) fn close_all(&mut self, reason: CloseReason) {
        let members: Vec<MemberId> = self.members.keys().copied().collect();
        for member in members {
            self.kick(member, reason);
        }
    }

    /// Hands a message to the other nodes. Never waits: a failure only costs other nodes a
    /// live update (their clients catch up on their next sync), so it is logged, not fatal.
    fn publish(&self, payload: FanoutPayload) {
        let message = FanoutMessage {
            origin: self.context.node,
            payload,
        };
        if let Err(error) = self.context.fanout.publish(&self.doc_id, message) {
            tracing::warn!(doc = %self.doc_id, error = &error as &dyn std::error::Error, "fan-out publish failed");
        }
    }

    /// Starts folding the update log into a snapshot in the background once the log has
    /// grown past the configured limits. A failure is logged and retried at the next
    /// trigger: the log alone is still complete.
    fn start_compaction_if_needed(&mut self) {
        let config = &self.context.config;
        let over_limit = self.log_updates >= config.compact_after_updates
            || self.log_bytes >= config.compact_after_bytes;
        if !over_limit || self.compaction.is_some() {
            return;
        }
        self.spawn_compaction();
    }

    /// Writes the current state as the snapshot through the last appended update, in a task
    /// the room polls from its loop.
    fn spawn_compaction(&mut self) {
        let snapshot = self.encode_snapshot();
        let snapshot_bytes = snapshot.len();
        let (store, doc_id, through_seq) = (
            self.context.store.clone(),
            self.doc_id.clone(),
            self.last_seq,
        );
        let task = tokio::spawn(
            async move { store.compact(&doc_id, &snapshot, through_seq).await }
                .instrument(tracing::Span::current()),
        );
        self.compaction = Some(Compaction {
            task,
            log_updates: self.log_updates,
            log_bytes: self.log_bytes,
            snapshot_bytes,
        });
    }

    /// Settles the log counters once a background compaction has ended.
    fn finish_compaction(&mut self, result: Result<(), StoreError>) {
        let Some(done) = self.compaction.take() else {
            return;
        };
        match result {
            Ok(()) => {
                self.context.metrics.compactions.inc();
                // Updates appended while it ran are still in the log.
                self.log_updates -= done.log_updates;
                self.log_bytes -= done.log_bytes;
                self.document_bytes = done.snapshot_bytes + self.log_bytes;
            }
            Err(error) => {
                self.context.metrics.store_errors.inc();
                tracing::warn!(doc = %self.doc_id, error = &error as &dyn std::error::Error, "compaction failed; log kept");
            }
        }
    }

    /// Before unloading: waits for a running compaction, then folds whatever log is left into
    /// the snapshot, so the next load is one read.
    async fn compact_before_unload(&mut self) {
        // The state editing stopped at is kept, whatever the interval.
        if self.edited_since_version
            && self.context.config.version_interval.is_some()
            && let Err(error) = self.save_version(VersionReason::Activity, None, None).await
        {
            tracing::warn!(doc = %self.doc_id, error = &error as &dyn std::error::Error, "could not keep a version");
        }
        if self.compaction.is_some() {
            let result = compaction_done(&mut self.compaction).await;
            self.finish_compaction(result);
        }
        if self.log_updates == 0 {
            return;
        }
        self.spawn_compaction();
        let result = compaction_done(&mut self.compaction).await;
        self.finish_compaction(result);
    }

    /// The document's integrated state. Never `encode_state_as_update_v1`: that also
    /// merges in yrs' pending (not yet integrable) structs, and a hostile pending update
    /// makes that merge panic (found by fuzzing). Pending structs are not needed by anyone:
    /// a peer cannot integrate them either, and once their dependencies arrive they are
    /// integrated, stored and broadcast like any change.
    fn encode_snapshot(&self) -> Vec<u8> {
        self.awareness
            .doc()
            .transact()
            .encode_diff_v1(&StateVector::default())
    }
}

/// Checks `bytes` against `limits` and the types they create against `max_type_depth` in
/// the document `txn` reads, then decodes them: yrs never sees an update that could make it
/// recurse too deep, now or when a type is deleted later.
fn checked_decode_in<T: ReadTxn>(
    bytes: &[u8],
    limits: &UpdateLimits,
    max_type_depth: u32,
    type_depths: &mut TypeDepths,
    txn: &T,
) -> Result<(Update, Checked, Vec<StructRef>), LimitError> {
    let (_, structs) = limits::scan_update_v1(bytes, limits)?;
    let checked = type_depths.check(txn, &structs, max_type_depth)?;
    Ok((Update::decode_v1(bytes)?, checked, structs))
}

/// How many ids a delete set covers.
fn deleted_len(set: &IdSet) -> u64 {
    set.iter()
        .flat_map(|(_, ranges)| {
            ranges
                .iter()
                .map(|range| u64::from(range.end - range.start))
        })
        .sum()
}

/// Adds what `author` changed to the batch's edits (one entry per author).
fn note_edit(edits: &mut Vec<Edit>, author: &Arc<str>, inserted: u64, deleted: u64) {
    match edits.iter_mut().find(|edit| edit.author == *author) {
        Some(edit) => {
            edit.inserted += inserted;
            edit.deleted += deleted;
        }
        None => edits.push(Edit {
            author: author.clone(),
            inserted,
            deleted,
        }),
    }
}

/// Whether an encoded state holds nothing (no structs, no deletions).
fn is_empty_state(state: &[u8]) -> bool {
    // An empty v1 update is two zero counts.
    state == [0, 0]
}

/// Who sent an update the room applies.
enum Sender {
    /// A connected member.
    Member(MemberId),
    /// The server itself (AI output, copied templates): trusted, under its author.
    Server(Arc<str>),
    /// A REST caller with write access: checked like a member, answered instead of closed.
    Rest { author: Arc<str>, reply: RestReply },
}

type RestReply = oneshot::Sender<Result<(), UpdateRefused>>;

/// Resolves when the running compaction ends; never, when none runs.
async fn compaction_done(compaction: &mut Option<Compaction>) -> Result<(), StoreError> {
    match compaction {
        Some(running) => match (&mut running.task).await {
            Ok(result) => result,
            Err(join_error) => Err(StoreError::Backend(Box::new(join_error))),
        },
        None => std::future::pending().await,
    }
}

/// Resolves when the running store read ends; never, when none runs.
async fn store_read_done(
    read: &mut Option<tokio::task::JoinHandle<Result<StoredDoc, StoreError>>>,
) -> Result<StoredDoc, StoreError> {
    match read {
        Some(running) => match running.await {
            Ok(result) => result,
            Err(join_error) => Err(StoreError::Backend(Box::new(join_error))),
        },
        None => std::future::pending().await,
    }
}

async fn next_fanout(subscription: &mut Option<Subscription>) -> Option<FanoutMessage> {
    match subscription {
        Some(subscription) => subscription.messages.recv().await,
        None => std::future::pending().await,
    }
}

/// Resolves when `receiver` changes; never, once its sender is gone (or without one).
async fn next_change(receiver: &mut Option<watch::Receiver<u64>>) {
    if let Some(changes) = receiver {
        if changes.changed().await.is_ok() {
            return;
        }
        *receiver = None;
    }
    std::future::pending().await
}

async fn next_tick(tick: &mut Option<tokio::time::Interval>) -> tokio::time::Instant {
    match tick {
        Some(tick) => tick.tick().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_due(due: Option<tokio::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// A stream id for a newly loaded room's updates: random, so a reloaded room's numbers are
/// never mistaken for the previous instance's.
fn random_stream_id() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}
