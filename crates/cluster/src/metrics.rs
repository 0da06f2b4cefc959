//! Prometheus metrics of the Redis link. Registered once by the server.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Link-level metrics.
#[derive(Debug, Clone, Default)]
pub struct ClusterMetrics {
    /// 1 while the subscriber connection to Redis is up, 0 otherwise.
    pub redis_up: Gauge,
    /// Messages published to Redis.
    pub published: Counter,
    /// Messages that could not be published (Redis down, queue full): other nodes repair
    /// what they miss by comparing state.
    pub publish_dropped: Counter,
    /// Messages received from Redis.
    pub received: Counter,
    /// Received messages dropped because a room was not keeping up (repaired likewise).
    pub receive_dropped: Counter,
    /// Received messages that did not decode (another version, or not ours).
    pub receive_invalid: Counter,
}

impl ClusterMetrics {
    /// Creates the metrics and registers them under `registry` (prefix it as you like).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "redis_up",
            "Whether this node's Redis link is up (1) or down (0)",
            metrics.redis_up.clone(),
        );
        registry.register(
            "redis_published",
            "Messages published to Redis",
            metrics.published.clone(),
        );
        registry.register(
            "redis_publish_dropped",
            "Messages not published (Redis down or slow)",
            metrics.publish_dropped.clone(),
        );
        registry.register(
            "redis_received",
            "Messages received from Redis",
            metrics.received.clone(),
        );
        registry.register(
            "redis_receive_dropped",
            "Messages from Redis dropped because a room was not keeping up",
            metrics.receive_dropped.clone(),
        );
        registry.register(
            "redis_receive_invalid",
            "Messages from Redis that did not decode",
            metrics.receive_invalid.clone(),
        );
        metrics
    }
}
