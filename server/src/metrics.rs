//! The Prometheus registry: socket-level and accept-loop metrics owned here, room metrics from
//! `lectern-collab`, AI job metrics from `ai::metrics`, upload and ingestion
//! metrics from `materials::metrics`, and process/runtime gauges read at scrape time.

use std::fmt::Write as _;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use lectern_cluster::ClusterMetrics;
use lectern_collab::CollabMetrics;

use crate::ai::metrics::AiMetrics;
use crate::materials::metrics::MaterialsMetrics;
use crate::webhooks::WebhookMetrics;

/// Socket-level metrics.
#[derive(Debug, Clone, Default)]
pub struct SocketMetrics {
    /// WebSocket connections open now.
    pub connections: Gauge,
    /// WebSocket messages received from clients.
    pub messages_in: Counter,
    /// WebSocket messages sent to clients.
    pub messages_out: Counter,
    /// Payload bytes received from clients.
    pub bytes_in: Counter,
    /// Payload bytes sent to clients.
    pub bytes_out: Counter,
    /// Connections closed because the client broke the protocol or a limit.
    pub protocol_errors: Counter,
    /// Document routes (document id prefixes) held by multiplexed sockets now; follows the
    /// documents open, so a leak shows here.
    pub routes: Gauge,
}

/// TCP-level metrics of the accept loop (`transport.rs`).
#[derive(Debug, Clone, Default)]
pub struct TransportMetrics {
    /// TCP connections held now (HTTP and upgraded WebSockets).
    pub tcp_connections: Gauge,
    /// Connections refused with 503 because `--max-connections` were open.
    pub connections_refused: Counter,
    /// Connections closed because the request head did not arrive in time.
    pub header_timeouts: Counter,
    /// Request bodies failed for arriving too slowly (idle or below the minimum rate).
    pub body_timeouts: Counter,
    /// WebSocket upgrades that did not complete in time.
    pub handshake_timeouts: Counter,
}

/// All metrics of one server instance.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Socket-level metrics.
    pub sockets: SocketMetrics,
    /// Accept-loop metrics.
    pub transport: TransportMetrics,
    /// Room metrics, handed to `Rooms`.
    pub collab: CollabMetrics,
    /// Live AI job metrics.
    pub ai: AiMetrics,
    /// Upload and ingestion metrics.
    pub materials: MaterialsMetrics,
    /// The Redis link's metrics (zero on a node on its own).
    pub cluster: ClusterMetrics,
    /// Webhook delivery metrics.
    pub webhooks: WebhookMetrics,
    /// Counter and cache operations (rate limits, AI budgets, AI answers) this node served
    /// from its own state because Redis did not answer (`cluster_store.rs`).
    pub redis_fallbacks: Counter,
    process_resident_bytes: Gauge,
    runtime_alive_tasks: Gauge,
}

impl Metrics {
    /// Creates and registers every metric under the `lectern_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("lectern");
        let sockets = SocketMetrics::default();
        registry.register(
            "connections",
            "WebSocket connections open",
            sockets.connections.clone(),
        );
        registry.register(
            "messages_in",
            "WebSocket messages received",
            sockets.messages_in.clone(),
        );
        registry.register(
            "messages_out",
            "WebSocket messages sent",
            sockets.messages_out.clone(),
        );
        registry.register(
            "bytes_in",
            "Payload bytes received",
            sockets.bytes_in.clone(),
        );
        registry.register("bytes_out", "Payload bytes sent", sockets.bytes_out.clone());
        registry.register(
            "protocol_errors",
            "Connections closed for protocol errors or limits",
            sockets.protocol_errors.clone(),
        );
        registry.register(
            "socket_routes",
            "Document routes held by multiplexed sockets",
            sockets.routes.clone(),
        );
        let transport = TransportMetrics::default();
        registry.register(
            "tcp_connections",
            "TCP connections held (HTTP and WebSocket)",
            transport.tcp_connections.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections refused with 503 at the connection limit",
            transport.connections_refused.clone(),
        );
        registry.register(
            "http_header_timeouts",
            "Connections closed because the request head did not arrive in time",
            transport.header_timeouts.clone(),
        );
        registry.register(
            "http_body_timeouts",
            "Request bodies failed for arriving too slowly",
            transport.body_timeouts.clone(),
        );
        registry.register(
            "ws_handshake_timeouts",
            "WebSocket upgrades that did not complete in time",
            transport.handshake_timeouts.clone(),
        );
        let collab = CollabMetrics::register(&mut registry);
        let ai = AiMetrics::register(&mut registry);
        let materials = MaterialsMetrics::register(&mut registry);
        let cluster = ClusterMetrics::register(&mut registry);
        let webhooks = WebhookMetrics::register(&mut registry);
        let redis_fallbacks = Counter::default();
        registry.register(
            "redis_fallbacks",
            "Rate-limit, AI budget and answer-cache operations served by this node alone because Redis did not answer",
            redis_fallbacks.clone(),
        );
        let process_resident_bytes = Gauge::default();
        registry.register(
            "process_resident_bytes",
            "Resident memory of the server process",
            process_resident_bytes.clone(),
        );
        let runtime_alive_tasks = Gauge::default();
        registry.register(
            "runtime_alive_tasks",
            "Tokio tasks alive in the server runtime",
            runtime_alive_tasks.clone(),
        );
        Self {
            registry,
            sockets,
            transport,
            collab,
            ai,
            materials,
            cluster,
            webhooks,
            redis_fallbacks,
            process_resident_bytes,
            runtime_alive_tasks,
        }
    }

    /// Renders the Prometheus text format, refreshing the process and runtime gauges first.
    pub fn render(&self) -> String {
        self.materials.refresh();
        if let Some(rss) = resident_bytes() {
            self.process_resident_bytes.set(rss);
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let alive = runtime.metrics().num_alive_tasks();
            self.runtime_alive_tasks
                .set(i64::try_from(alive).unwrap_or(i64::MAX));
        }
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            // Encoding into a String cannot fail short of a bug in the encoder; say so in the
            // output rather than panicking in a request handler.
            let _ = writeln!(text, "# metrics encoding failed");
        }
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Resident set size from `/proc/self/statm` (Linux); `None` elsewhere.
fn resident_bytes() -> Option<i64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // The kernel's page size on every platform we ship (x86_64, aarch64 with 4K pages).
    Some(pages * 4096)
}
