//! This node's place among the others: the Redis link (when configured), the document
//! fan-out built on it, and the cluster events that carry everything else a REST change
//! does to other nodes' sockets, jobs and caches.
//!
//! A change is applied on the node that made it first (before the HTTP response, as on a
//! single node), then published as a [`ClusterEvent`]; every other node applies the same
//! effect to what it holds. Without Redis there are no other nodes and publishing does
//! nothing: that is the in-process implementation of the seam.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use lectern_cluster::{ChannelGuard, ClusterMetrics, RedisFanout, RedisLink};
use lectern_collab::{Fanout, LocalFanout, NodeId};

use crate::config::Config;

/// Something that happened on one node that other nodes must apply to what they hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ClusterEvent {
    /// Who may do what on these documents may have changed (lock, unlock, member removed):
    /// re-decide the access of every open socket on them.
    AccessChanged {
        /// The documents concerned.
        doc_ids: Vec<String>,
    },
    /// The session owning these documents ended: close every socket on them (4410).
    SessionEnded {
        /// The session's documents and forks.
        doc_ids: Vec<String>,
    },
    /// A login (refresh-token family) was revoked: close its sockets (4401).
    LoginRevoked {
        /// The refresh-token family.
        family_id: String,
    },
    /// An AI job was cancelled: stop it wherever it runs.
    AiJobCancelled {
        /// The job.
        job_id: String,
    },
    /// A classroom's searchable materials changed: search indexes read it afresh.
    MaterialsChanged {
        /// The classroom.
        classroom_id: String,
    },
}

/// An event as it travels: with its origin, so a node skips its own.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    origin: u64,
    event: ClusterEvent,
}

/// The node's cluster handles. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Cluster(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    node: NodeId,
    link: Option<RedisLink>,
    fanout: Arc<dyn Fanout>,
    /// Prefix of every Redis key and channel (`--redis-prefix`).
    prefix: String,
}

impl Cluster {
    /// A cluster node when `config` names a Redis, a node on its own otherwise.
    pub(crate) fn from_config(config: &Config, metrics: ClusterMetrics) -> anyhow::Result<Self> {
        let node = NodeId::random();
        let Some(url) = &config.redis_url else {
            return Ok(Self(Arc::new(Inner {
                node,
                link: None,
                fanout: Arc::new(LocalFanout::new()),
                prefix: config.redis_prefix.clone(),
            })));
        };
        let link = RedisLink::start(url.expose(), metrics.clone())?;
        let fanout = RedisFanout::new(link.clone(), &config.redis_prefix, metrics)
            .drop_updates_every(config.test_drop_fanout_every);
        tracing::info!(node = node.0, "joining the cluster through Redis");
        Ok(Self(Arc::new(Inner {
            node,
            link: Some(link),
            fanout: Arc::new(fanout),
            prefix: config.redis_prefix.clone(),
        })))
    }

    /// This node's id.
    pub(crate) fn node(&self) -> NodeId {
        self.0.node
    }

    /// How rooms meet their counterparts on other nodes.
    pub(crate) fn fanout(&self) -> Arc<dyn Fanout> {
        self.0.fanout.clone()
    }

    /// The Redis link, when this node is part of a cluster.
    pub(crate) fn link(&self) -> Option<&RedisLink> {
        self.0.link.as_ref()
    }

    /// The Redis key for `name` (e.g. `rate:api:{user}`), under this deployment's prefix.
    pub(crate) fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.0.prefix)
    }

    /// The channel cluster events travel on.
    fn events_channel(&self) -> Bytes {
        Bytes::from(self.key("events"))
    }

    /// Changes each time the Redis link (re)connects; None on a node on its own.
    pub(crate) fn reconnects(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.0.link.as_ref().map(RedisLink::reconnects)
    }

    /// Whether this node is cut off from the others (it has a Redis link that is down).
    pub(crate) fn degraded(&self) -> bool {
        self.0.link.as_ref().is_some_and(|link| !link.is_up())
    }

    /// Sends `event` to every other node (this node applied it already). Never waits;
    /// while Redis is down the event is lost (see ARCHITECTURE.md, "Cluster").
    pub(crate) fn publish(&self, event: ClusterEvent) {
        let Some(link) = &self.0.link else {
            return;
        };
        let envelope = Envelope {
            origin: self.0.node.0,
            event,
        };
        match serde_json::to_vec(&envelope) {
            Ok(bytes) => link.publish(self.events_channel(), Bytes::from(bytes)),
            Err(error) => tracing::error!(%error, "cluster event does not serialize"),
        }
    }

    /// Starts receiving other nodes' events; None on a node on its own. Events arrive in
    /// the order each node published them; keep the guard for as long as they should.
    pub(crate) async fn listen(
        &self,
    ) -> Option<(ChannelGuard, mpsc::UnboundedReceiver<ClusterEvent>)> {
        let link = self.0.link.as_ref()?;
        let (sender, receiver) = mpsc::unbounded_channel();
        let node = self.0.node.0;
        let deliver = move |bytes: Bytes| match serde_json::from_slice::<Envelope>(&bytes) {
            Ok(envelope) if envelope.origin != node => {
                let _ = sender.send(envelope.event);
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "cluster event does not decode"),
        };
        let guard = link
            .subscribe(self.events_channel(), Box::new(deliver))
            .await;
        Some((guard, receiver))
    }

    /// Stops the Redis link's background tasks.
    pub(crate) fn close(&self) {
        if let Some(link) = &self.0.link {
            link.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_keep_their_wire_names() {
        let envelope = Envelope {
            origin: 7,
            event: ClusterEvent::LoginRevoked {
                family_id: "f".into(),
            },
        };
        let json = serde_json::to_string(&envelope).expect("serializes");
        assert_eq!(
            json,
            r#"{"origin":7,"event":{"type":"login_revoked","family_id":"f"}}"#
        );
        let back: Envelope = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back.event, envelope.event);
    }
}
