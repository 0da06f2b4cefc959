//! The `Fanout` seam: how rooms for the same document on different server nodes hear each
//! other's updates and awareness.
//!
//! The node that receives an update from a client persists it and then publishes it; other
//! nodes apply it to their copy of the room and forward it to their own clients, without
//! persisting it again. `LocalFanout` connects rooms inside one process (a single node, or
//! several `Rooms` in one test); the Redis implementation lives with the server wiring.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use crate::DocId;

/// Identifies a server node, so a node ignores its own publications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeId(pub u64);

impl NodeId {
    /// A random node id, unique enough for the nodes of one deployment.
    pub fn random() -> Self {
        use std::hash::{BuildHasher, RandomState};
        Self(RandomState::new().hash_one(std::process::id()))
    }
}

/// What crosses between nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanoutMessage {
    /// The node that published it.
    pub origin: NodeId,
    /// Its payload.
    pub payload: FanoutPayload,
}

/// The kinds of message rooms exchange.
///
/// A transport may lose messages (Redis pub/sub does when a subscriber lags or reconnects),
/// so updates are numbered and rooms repair gaps by comparing state (see `room.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FanoutPayload {
    /// An encoded document update, already durable at the origin. Updates from one room
    /// instance form a stream (`stream`, a random id per loaded room) numbered 1, 2, 3...
    /// (`seq`): a receiver that sees a number skipped knows it missed one.
    Update {
        /// Which room instance at the origin numbered it.
        stream: u64,
        /// Its number in that stream.
        seq: u64,
        /// The encoded (v1) update.
        update: Bytes,
    },
    /// An encoded awareness update.
    Awareness(Bytes),
    /// A room states what it has and asks for what it lacks: every other room for the
    /// document answers with a [`FanoutPayload::SyncReply`] when it has inserts the sender
    /// lacks, or always when `after_gap` is set.
    SyncRequest {
        /// The sender's encoded state vector.
        state_vector: Bytes,
        /// The sender may have missed an update: answer even when the state vectors agree,
        /// since deletions do not show in a state vector.
        after_gap: bool,
        /// The sender's own update stream and the last number it used in it (0: none yet),
        /// so a receiver that missed the stream's last update notices.
        stream: u64,
        /// See `stream`.
        seq: u64,
    },
    /// The answer to `to`'s [`FanoutPayload::SyncRequest`]: an encoded (v1) update holding
    /// what it lacked. Other nodes ignore it.
    SyncReply {
        /// The node that asked.
        to: NodeId,
        /// What it lacked.
        update: Bytes,
    },
}

/// A subscription to one document's messages; dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    /// Messages published by other nodes for this document.
    pub messages: mpsc::Receiver<FanoutMessage>,
    /// Changes whenever the transport may have lost messages (it reconnected): the room
    /// then asks the other nodes for what it lacks. None: the transport loses nothing.
    pub resync: Option<watch::Receiver<u64>>,
    /// Undoes the subscription when dropped.
    _unsubscribe: Box<dyn std::any::Any + Send + Sync>,
}

impl Subscription {
    /// Builds a subscription from a receiver and a guard whose `Drop` unsubscribes.
    pub fn new(
        messages: mpsc::Receiver<FanoutMessage>,
        unsubscribe: impl std::any::Any + Send + Sync,
    ) -> Self {
        Self {
            messages,
            resync: None,
            _unsubscribe: Box::new(unsubscribe),
        }
    }

    /// The same subscription, resynchronising whenever `resync` changes.
    pub fn with_resync(mut self, resync: watch::Receiver<u64>) -> Self {
        self.resync = Some(resync);
        self
    }
}

/// Why fan-out failed. Rooms keep serving their local clients when it does.
#[derive(Debug, thiserror::Error)]
pub enum FanoutError {
    /// The transport (for example Redis) failed.
    #[error("fan-out transport failed")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Cross-node delivery of room messages.
#[async_trait]
pub trait Fanout: Send + Sync + std::fmt::Debug + 'static {
    /// Starts receiving other nodes' messages for `doc`.
    async fn subscribe(&self, doc: &DocId, node: NodeId) -> Result<Subscription, FanoutError>;

    /// Queues a message for every other node's room for `doc`. Must not block: rooms call
    /// it inline, so implementations hand the message to their own sender task.
    fn publish(&self, doc: &DocId, message: FanoutMessage) -> Result<(), FanoutError>;
}

/// How many cross-node messages may wait for a slow room before new ones are dropped (the
/// room notices the gap in the update numbers and asks for what it missed).
pub const SUBSCRIBER_BUFFER: usize = 1024;

/// In-process fan-out: rooms of several `Rooms` registries in one process share documents.
#[derive(Debug, Default, Clone)]
pub struct LocalFanout {
    subscribers: Arc<Mutex<HashMap<DocId, Vec<LocalSubscriber>>>>,
}

#[derive(Debug)]
struct LocalSubscriber {
    id: u64,
    node: NodeId,
    sender: mpsc::Sender<FanoutMessage>,
}

#[derive(Debug)]
struct LocalUnsubscribe {
    subscribers: Arc<Mutex<HashMap<DocId, Vec<LocalSubscriber>>>>,
    doc: DocId,
    id: u64,
}

impl Drop for LocalUnsubscribe {
    fn drop(&mut self) {
        let mut subscribers = lock(&self.subscribers);
        if let Some(list) = subscribers.get_mut(&self.doc) {
            list.retain(|subscriber| subscriber.id != self.id);
            if list.is_empty() {
                subscribers.remove(&self.doc);
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Critical sections are plain map edits; a poisoned lock still guards a consistent map.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LocalFanout {
    /// An empty fan-out hub.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Fanout for LocalFanout {
    async fn subscribe(&self, doc: &DocId, node: NodeId) -> Result<Subscription, FanoutError> {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (sender, messages) = mpsc::channel(SUBSCRIBER_BUFFER);
        lock(&self.subscribers)
            .entry(doc.clone())
            .or_default()
            .push(LocalSubscriber { id, node, sender });
        let unsubscribe = LocalUnsubscribe {
            subscribers: self.subscribers.clone(),
            doc: doc.clone(),
            id,
        };
        Ok(Subscription::new(messages, unsubscribe))
    }

    fn publish(&self, doc: &DocId, message: FanoutMessage) -> Result<(), FanoutError> {
        let subscribers = lock(&self.subscribers);
        for subscriber in subscribers.get(doc).into_iter().flatten() {
            if subscriber.node != message.origin
                && let Err(mpsc::error::TrySendError::Full(_)) =
                    subscriber.sender.try_send(message.clone())
            {
                tracing::warn!(doc = %doc, "fan-out subscriber is lagging; message dropped");
            }
        }
        Ok(())
    }
}
