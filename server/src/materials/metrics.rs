//! Prometheus metrics of course material (`lectern_materials_*`), registered with the
//! server's registry.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of outcome metrics: `outcome` (`ready`, `failed`) or `reason` (why an upload was
/// refused).
pub type OutcomeLabels = Vec<(&'static str, &'static str)>;

/// Metrics of uploads and ingestion. Cheap to clone (every metric is an `Arc` inside).
#[derive(Debug, Clone)]
pub struct MaterialsMetrics {
    /// Uploads accepted (stored and readable).
    pub uploads_accepted: Counter,
    /// Uploads refused, by reason (`too_large`, `unsupported`, `unreadable`, `interrupted`,
    /// `busy`, `internal`).
    pub uploads_refused: Family<OutcomeLabels, Counter>,
    /// Ingestions finished, by outcome (`ready`, `failed`), and queued materials this node
    /// left alone (`skipped`: another node was ingesting or had finished it, it was
    /// deleted, or the database could not tell; the periodic re-scan tries again).
    pub ingestions: Family<OutcomeLabels, Counter>,
    /// Seconds from the worker taking a material to it being searchable.
    pub ingest_seconds: Histogram,
    /// Extraction child processes running now.
    pub extraction_processes: Gauge,
    /// Extraction processes that hit a hard limit or died, by reason (`timeout`, `memory`,
    /// `cpu`, `crash`); a file refused by the reader's own checks is not counted.
    pub extractions_killed: Family<OutcomeLabels, Counter>,
}

impl MaterialsMetrics {
    /// Creates the metrics and registers them in `registry` under `materials_`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            uploads_accepted: Counter::default(),
            uploads_refused: Family::default(),
            ingestions: Family::default(),
            // 50 ms .. ~14 min
            ingest_seconds: Histogram::new(exponential_buckets(0.05, 2.0, 15)),
            extraction_processes: Gauge::default(),
            extractions_killed: Family::default(),
        };
        let registry = registry.sub_registry_with_prefix("materials");
        registry.register(
            "uploads_accepted",
            "Uploads stored and accepted for ingestion",
            metrics.uploads_accepted.clone(),
        );
        registry.register(
            "uploads_refused",
            "Uploads refused, by reason",
            metrics.uploads_refused.clone(),
        );
        registry.register(
            "ingestions",
            "Ingestions finished, by outcome",
            metrics.ingestions.clone(),
        );
        registry.register(
            "ingest_seconds",
            "Time from ingestion start to searchable",
            metrics.ingest_seconds.clone(),
        );
        registry.register(
            "extraction_processes",
            "Extraction child processes running",
            metrics.extraction_processes.clone(),
        );
        registry.register(
            "extractions_killed",
            "Extraction processes that hit a limit or died, by reason",
            metrics.extractions_killed.clone(),
        );
        metrics
    }

    /// Refreshes the gauges read at scrape time (none today: extraction runs in child
    /// processes, which the sandbox counts as they start and end).
    pub fn refresh(&self) {}
}
