//! Prometheus metrics of live AI jobs, registered with the server's registry (`lectern_ai_*`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of per-kind metrics: `kind` (`chat`, `notes`, ...).
pub type KindLabels = Vec<(&'static str, &'static str)>;

/// Metrics of AI jobs. Cheap to clone (every metric is an `Arc` inside).
#[derive(Debug, Clone)]
pub struct AiMetrics {
    /// Seconds from accepting a job to its first token being in the shared document.
    pub time_to_first_token_seconds: Histogram,
    /// Tokens generated (or replayed from the answer cache) into documents.
    pub tokens_generated: Counter,
    /// Generation speed of each finished job, tokens per second.
    pub tokens_per_second: Histogram,
    /// Jobs started, by kind.
    pub jobs_started: Family<KindLabels, Counter>,
    /// Jobs that failed, by kind.
    pub job_errors: Family<KindLabels, Counter>,
    /// Jobs answered from the answer cache, without calling the backend.
    pub cache_hits: Counter,
    /// Jobs running now.
    pub jobs_running: Gauge,
    /// Jobs waiting for a generation slot (`--ai-max-concurrent-jobs`).
    pub jobs_waiting: Gauge,
}

impl AiMetrics {
    /// Creates the metrics and registers them in `registry` under `ai_`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            // 5 ms .. ~80 s
            time_to_first_token_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 15)),
            tokens_generated: Counter::default(),
            // 1 .. ~4000 tokens/s
            tokens_per_second: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            jobs_started: Family::default(),
            job_errors: Family::default(),
            cache_hits: Counter::default(),
            jobs_running: Gauge::default(),
            jobs_waiting: Gauge::default(),
        };
        let ai = registry.sub_registry_with_prefix("ai");
        ai.register(
            "time_to_first_token_seconds",
            "Time from accepting an AI job to its first token in the shared document",
            metrics.time_to_first_token_seconds.clone(),
        );
        ai.register(
            "tokens_generated",
            "Tokens written into documents by AI jobs",
            metrics.tokens_generated.clone(),
        );
        ai.register(
            "tokens_per_second",
            "Generation speed of finished AI jobs",
            metrics.tokens_per_second.clone(),
        );
        ai.register(
            "jobs_started",
            "AI jobs started, by kind",
            metrics.jobs_started.clone(),
        );
        ai.register(
            "job_errors",
            "AI jobs that failed, by kind",
            metrics.job_errors.clone(),
        );
        ai.register(
            "cache_hits",
            "AI jobs answered from the answer cache",
            metrics.cache_hits.clone(),
        );
        ai.register(
            "jobs_running",
            "AI jobs running now",
            metrics.jobs_running.clone(),
        );
        ai.register(
            "jobs_waiting",
            "AI jobs waiting for a generation slot",
            metrics.jobs_waiting.clone(),
        );
        metrics
    }
}
