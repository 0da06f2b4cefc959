//! Document fan-out over Redis: the [`Fanout`] seam on sharded pub/sub, one channel per
//! document, every room of this node multiplexed on the link's one subscriber connection.
//!
//! Pub/sub loses messages (a lagging or reconnecting subscriber, a node subscribing after
//! an update was published); the rooms detect and repair that (numbered updates, state
//! vector exchange; see `lectern_collab` `room.rs` and ARCHITECTURE.md). This module only
//! carries messages, tags them with their origin, and drops a node's own messages early.
//!
//! Wire format of a message (all integers little-endian):
//! `version u8 = 1 | kind u8 | origin u64 | ...` then per kind:
//! 1 update: `stream u64 | seq u64 | update`; 2 awareness: `update`;
//! 3 sync request: `after_gap u8 | stream u64 | seq u64 | state vector`;
//! 4 sync reply: `to u64 | update`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::{BufMut as _, Bytes, BytesMut};
use tokio::sync::mpsc;

use lectern_collab::fanout::{
    FanoutError, FanoutMessage, FanoutPayload, SUBSCRIBER_BUFFER, Subscription,
};
use lectern_collab::{DocId, Fanout, NodeId};

use crate::link::RedisLink;
use crate::metrics::ClusterMetrics;

const VERSION: u8 = 1;
const KIND_UPDATE: u8 = 1;
const KIND_AWARENESS: u8 = 2;
const KIND_SYNC_REQUEST: u8 = 3;
const KIND_SYNC_REPLY: u8 = 4;

/// Rooms of several nodes meeting through Redis.
#[derive(Debug, Clone)]
pub struct RedisFanout {
    link: RedisLink,
    /// Prefix of the channel names (the deployment's Redis prefix).
    prefix: String,
    metrics: ClusterMetrics,
    /// Test hook: drop every Nth update received (0: never), as a lagging subscriber would.
    drop_every: u64,
    received_updates: Arc<AtomicU64>,
}

impl RedisFanout {
    /// Fan-out over `link`, on channels named `{prefix}:doc:{...}`.
    pub fn new(link: RedisLink, prefix: &str, metrics: ClusterMetrics) -> Self {
        Self {
            link,
            prefix: prefix.to_owned(),
            metrics,
            drop_every: 0,
            received_updates: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Test hook: drops every `n`th document update this node receives (0: none), so tests
    /// can show that a lost message is repaired.
    pub fn drop_updates_every(mut self, n: u64) -> Self {
        self.drop_every = n;
        self
    }
}

/// The channel of `doc`. The braces make it a Redis Cluster hash tag: the document id picks
/// the shard.
fn channel(prefix: &str, doc: &DocId) -> Bytes {
    Bytes::from(format!("{prefix}:doc:{{{}}}", doc.as_str()))
}

#[async_trait]
impl Fanout for RedisFanout {
    async fn subscribe(&self, doc: &DocId, node: NodeId) -> Result<Subscription, FanoutError> {
        let (sender, messages) = mpsc::channel(SUBSCRIBER_BUFFER);
        let metrics = self.metrics.clone();
        let drop_every = self.drop_every;
        let received_updates = self.received_updates.clone();
        let deliver = move |bytes: Bytes| {
            let message = match decode(bytes) {
                Some(message) => message,
                None => {
                    metrics.receive_invalid.inc();
                    return;
                }
            };
            if message.origin == node {
                return;
            }
            if drop_every > 0 && matches!(message.payload, FanoutPayload::Update { .. }) {
                let count = received_updates.fetch_add(1, Ordering::Relaxed) + 1;
                if count.is_multiple_of(drop_every) {
                    tracing::debug!("test hook: dropping a received update");
                    return;
                }
            }
            if sender.try_send(message).is_err() {
                metrics.receive_dropped.inc();
            }
        };
        let guard = self
            .link
            .subscribe(channel(&self.prefix, doc), Box::new(deliver))
            .await;
        Ok(Subscription::new(messages, guard).with_resync(self.link.reconnects()))
    }

    fn publish(&self, doc: &DocId, message: FanoutMessage) -> Result<(), FanoutError> {
        self.link
            .publish(channel(&self.prefix, doc), encode(&message));
        Ok(())
    }
}

fn encode(message: &FanoutMessage) -> Bytes {
    let body_len = match &message.payload {
        FanoutPayload::Update { update, .. } => 16 + update.len(),
        FanoutPayload::Awareness(bytes) => bytes.len(),
        FanoutPayload::SyncRequest { state_vector, .. } => 17 + state_vector.len(),
        FanoutPayload::SyncReply { update, .. } => 8 + update.len(),
    };
    let mut out = BytesMut::with_capacity(10 + body_len);
    out.put_u8(VERSION);
    let kind = match &message.payload {
        FanoutPayload::Update { .. } => KIND_UPDATE,
        FanoutPayload::Awareness(_) => KIND_AWARENESS,
        FanoutPayload::SyncRequest { .. } => KIND_SYNC_REQUEST,
        FanoutPayload::SyncReply { .. } => KIND_SYNC_REPLY,
    };
    out.put_u8(kind);
    out.put_u64_le(message.origin.0);
    match &message.payload {
        FanoutPayload::Update {
            stream,
            seq,
            update,
        } => {
            out.put_u64_le(*stream);
            out.put_u64_le(*seq);
            out.put_slice(update);
        }
        FanoutPayload::Awareness(bytes) => out.put_slice(bytes),
        FanoutPayload::SyncRequest {
            state_vector,
            after_gap,
            stream,
            seq,
        } => {
            out.put_u8(u8::from(*after_gap));
            out.put_u64_le(*stream);
            out.put_u64_le(*seq);
            out.put_slice(state_vector);
        }
        FanoutPayload::SyncReply { to, update } => {
            out.put_u64_le(to.0);
            out.put_slice(update);
        }
    }
    out.freeze()
}

/// Decodes a message; None for anything else (another version, a stranger on the channel).
fn decode(mut bytes: Bytes) -> Option<FanoutMessage> {
    fn take_u64(bytes: &mut Bytes) -> Option<u64> {
        let head = bytes.get(..8)?;
        let value = u64::from_le_bytes(head.try_into().ok()?);
        let _ = bytes.split_to(8);
        Some(value)
    }
    if bytes.len() < 2 || bytes[0] != VERSION {
        return None;
    }
    let kind = bytes[1];
    let _ = bytes.split_to(2);
    let origin = NodeId(take_u64(&mut bytes)?);
    let payload = match kind {
        KIND_UPDATE => FanoutPayload::Update {
            stream: take_u64(&mut bytes)?,
            seq: take_u64(&mut bytes)?,
            update: bytes,
        },
        KIND_AWARENESS => FanoutPayload::Awareness(bytes),
        KIND_SYNC_REQUEST => {
            let after_gap = match bytes.first()? {
                0 => false,
                1 => true,
                _ => return None,
            };
            let _ = bytes.split_to(1);
            FanoutPayload::SyncRequest {
                after_gap,
                stream: take_u64(&mut bytes)?,
                seq: take_u64(&mut bytes)?,
                state_vector: bytes,
            }
        }
        KIND_SYNC_REPLY => FanoutPayload::SyncReply {
            to: NodeId(take_u64(&mut bytes)?),
            update: bytes,
        },
        _ => return None,
    };
    Some(FanoutMessage { origin, payload })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips() {
        let payloads = [
            FanoutPayload::Update {
                stream: 7,
                seq: 42,
                update: Bytes::from_static(b"\x01\x02"),
            },
            FanoutPayload::Awareness(Bytes::from_static(b"aw")),
            FanoutPayload::SyncRequest {
                state_vector: Bytes::from_static(b"\x00"),
                after_gap: true,
                stream: 3,
                seq: 0,
            },
            FanoutPayload::SyncReply {
                to: NodeId(9),
                update: Bytes::from_static(b"diff"),
            },
        ];
        for payload in payloads {
            let message = FanoutMessage {
                origin: NodeId(u64::MAX),
                payload,
            };
            assert_eq!(decode(encode(&message)), Some(message));
        }
    }

    #[test]
    fn strangers_and_truncations_are_refused() {
        assert_eq!(decode(Bytes::from_static(b"")), None);
        assert_eq!(
            decode(Bytes::from_static(b"\x02\x01")),
            None,
            "other version"
        );
        assert_eq!(
            decode(Bytes::from_static(b"\x01\x09\0\0\0\0\0\0\0\0")),
            None
        );
        assert_eq!(decode(Bytes::from_static(b"\x01\x01\0\0\0")), None);
        let update = encode(&FanoutMessage {
            origin: NodeId(1),
            payload: FanoutPayload::Update {
                stream: 1,
                seq: 1,
                update: Bytes::new(),
            },
        });
        assert_eq!(decode(update.slice(..update.len() - 1)), None);
    }
}
