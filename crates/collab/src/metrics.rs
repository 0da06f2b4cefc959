//! Prometheus metrics for rooms. Registered once by the server into its registry and shared
//! by every room through `Rooms`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Room-level metrics.
#[derive(Debug, Clone)]
pub struct CollabMetrics {
    /// Rooms currently loaded in memory.
    pub rooms_loaded: Gauge,
    /// Room actor tasks alive (should equal `rooms_loaded` except during load/unload).
    pub room_tasks: Gauge,
    /// Client memberships across all rooms.
    pub room_members: Gauge,
    /// Updates applied from clients (after batching).
    pub updates_applied: Counter,
    /// Client messages refused (malformed, too large, ...).
    pub messages_rejected: Counter,
    /// Frames handed to client outboxes (one per receiver).
    pub deliveries: Counter,
    /// Time to make an update durable (store append), seconds.
    pub persist_seconds: Histogram,
    /// Log compactions performed.
    pub compactions: Counter,
    /// Store operations that failed.
    pub store_errors: Counter,
    /// Documents refused at load because a stored part is damaged or fails the limits.
    pub documents_unreadable: Counter,
    /// Rooms that failed unexpectedly (a panic, caught) and closed their clients.
    pub room_panics: Counter,
    /// Times a room dropped its pending updates because they exceeded the bound.
    pub pending_overflows: Counter,
    /// Awareness updates or entries dropped (over the rate, foreign or unowned client ids).
    pub awareness_dropped: Counter,
    /// Messages from other nodes found missing (a skipped update number, an update
    /// building on unknown changes): each makes the room ask for what it lacks.
    pub fanout_gaps: Counter,
    /// State vectors sent to other nodes asking for what a room lacks.
    pub fanout_sync_requests: Counter,
    /// Answers sent to other nodes' requests, carrying what they lacked.
    pub fanout_repairs: Counter,
}

impl Default for CollabMetrics {
    fn default() -> Self {
        Self {
            rooms_loaded: Gauge::default(),
            room_tasks: Gauge::default(),
            room_members: Gauge::default(),
            updates_applied: Counter::default(),
            messages_rejected: Counter::default(),
            deliveries: Counter::default(),
            // 20 µs .. ~5 s
            persist_seconds: Histogram::new(exponential_buckets(0.000_02, 2.0, 18)),
            compactions: Counter::default(),
            store_errors: Counter::default(),
            documents_unreadable: Counter::default(),
            room_panics: Counter::default(),
            pending_overflows: Counter::default(),
            awareness_dropped: Counter::default(),
            fanout_gaps: Counter::default(),
            fanout_sync_requests: Counter::default(),
            fanout_repairs: Counter::default(),
        }
    }
}

impl CollabMetrics {
    /// Creates the metrics and registers them under `registry` (prefix it as you like).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "rooms_loaded",
            "Rooms loaded in memory",
            metrics.rooms_loaded.clone(),
        );
        registry.register(
            "room_tasks",
            "Room actor tasks alive",
            metrics.room_tasks.clone(),
        );
        registry.register(
            "room_members",
            "Client memberships across all rooms",
            metrics.room_members.clone(),
        );
        registry.register(
            "updates_applied",
            "Document updates applied from clients",
            metrics.updates_applied.clone(),
        );
        registry.register(
            "messages_rejected",
            "Client messages refused",
            metrics.messages_rejected.clone(),
        );
        registry.register(
            "deliveries",
            "Frames queued to client sockets",
            metrics.deliveries.clone(),
        );
        registry.register(
            "persist_seconds",
            "Time to append an update to the store",
            metrics.persist_seconds.clone(),
        );
        registry.register(
            "compactions",
            "Update log compactions",
            metrics.compactions.clone(),
        );
        registry.register(
            "store_errors",
            "Failed store operations",
            metrics.store_errors.clone(),
        );
        registry.register(
            "documents_unreadable",
            "Documents refused at load because a stored part is damaged",
            metrics.documents_unreadable.clone(),
        );
        registry.register(
            "room_panics",
            "Rooms that failed unexpectedly and closed their clients",
            metrics.room_panics.clone(),
        );
        registry.register(
            "pending_overflows",
            "Times a room dropped pending updates over the bound",
            metrics.pending_overflows.clone(),
        );
        registry.register(
            "awareness_dropped",
            "Awareness updates or entries dropped (rate, foreign or unowned client ids)",
            metrics.awareness_dropped.clone(),
        );
        registry.register(
            "fanout_gaps",
            "Messages from other nodes found missing (then asked for)",
            metrics.fanout_gaps.clone(),
        );
        registry.register(
            "fanout_sync_requests",
            "State vectors sent to other nodes asking for missing updates",
            metrics.fanout_sync_requests.clone(),
        );
        registry.register(
            "fanout_repairs",
            "Answers sent to other nodes carrying updates they lacked",
            metrics.fanout_repairs.clone(),
        );
        metrics
    }
}
