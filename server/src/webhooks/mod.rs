//! Webhooks: a classroom's other systems hear what happened in it, reliably.
//!
//! Faculty register URLs per classroom and pick events (`api/webhooks.rs`). When an event
//! is emitted ([`crate::events`]), [`OutboxSink`] writes one delivery row per subscribed
//! webhook into the outbox (`lectern_db::webhooks`) before `emit` returns; the delivery
//! worker ([`WebhookService::start`]) claims due rows, POSTs them signed, and records the
//! outcome: 2xx is delivered, anything else (or a timeout) is retried with exponential
//! backoff and jitter until the row is older than `--webhook-retry-for-secs`, then it is
//! failed. A restart resumes pending rows; several nodes share the outbox, each row sent
//! by one node at a time (claims). Delivery is at least once: receivers deduplicate by
//! delivery id.
//!
//! # Layout
//! - this file: the settings, metrics, the sink, event bodies and the delivery worker.
//! - `ssrf.rs`: which URLs and addresses the server calls (and the resolver that pins
//!   what it checked).
//! - `sign.rs`: HMAC-SHA256 signatures and signing secrets.
//! - `debounce.rs`: `document.updated`, from the room store's appends, debounced per
//!   document.

pub(crate) mod debounce;
pub(crate) mod sign;
pub(crate) mod ssrf;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use rand::Rng as _;
use serde_json::json;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use lectern_collab::DocId;
use lectern_db::webhooks::{Delivery, DeliveryState, NewDelivery};
use lectern_db::{Database, DbError, Sessions, Webhooks};

use crate::Config;
use crate::auth::now_secs;
use crate::events::{Event, EventSink, Events};
use debounce::Debounce;
use ssrf::{Guard, GuardedResolver, UrlError};

/// Every event name a webhook may subscribe to (the `event` field of deliveries). A test
/// checks it against [`Event::name`].
pub(crate) const EVENT_NAMES: [&str; 8] = [
    "session.started",
    "session.ended",
    "material.ready",
    "material.failed",
    "ai_job.finished",
    "member.joined",
    "document.updated",
    "handout.given",
];

/// Most active webhooks a classroom may have.
pub(crate) const MAX_PER_CLASSROOM: u32 = 20;

/// Deliveries one node sends at once: a slow receiver holds one slot, not the worker.
const MAX_IN_FLIGHT: usize = 8;

/// How much of a receiver's response body is read (for the delivery log); the rest is
/// left unread.
const MAX_RESPONSE_BYTES: usize = 4 * 1024;

/// How much of it is kept in the log.
const KEPT_RESPONSE_CHARS: usize = 200;

/// Longest error text kept in the log.
const MAX_ERROR_CHARS: usize = 500;

/// The worker looks at the outbox at least this often, for rows other nodes enqueued or
/// gave back (it is woken at once for its own).
const POLL_AT_LEAST_EVERY: Duration = Duration::from_secs(30);

/// After a database error, the worker waits this long before trying again.
const AFTER_DATABASE_ERROR: Duration = Duration::from_secs(5);

/// How webhooks behave (from the configuration).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WebhookSettings {
    /// Which addresses deliveries may go to.
    pub(crate) guard: Guard,
    /// How long one attempt may take, response included.
    pub(crate) timeout: Duration,
    /// How long after its event a delivery is retried before it fails.
    pub(crate) retry_for: Duration,
    /// The wait after the first failed attempt; doubled after each further one.
    pub(crate) backoff: Duration,
    /// The longest wait between attempts.
    pub(crate) backoff_max: Duration,
    /// How `document.updated` is debounced.
    pub(crate) debounce: Debounce,
}

impl WebhookSettings {
    pub(crate) fn from_config(config: &Config) -> Self {
        Self {
            guard: Guard {
                allow_private: config.webhooks_allow_private,
            },
            timeout: Duration::from_millis(config.webhook_timeout_ms.max(1)),
            retry_for: Duration::from_secs(config.webhook_retry_for_secs),
            backoff: Duration::from_millis(config.webhook_backoff_ms.max(1)),
            backoff_max: Duration::from_millis(
                config
                    .webhook_backoff_max_ms
                    .max(config.webhook_backoff_ms.max(1)),
            ),
            debounce: Debounce {
                quiet: Duration::from_millis(config.webhook_debounce_ms),
                max_wait: Duration::from_millis(
                    config
                        .webhook_debounce_max_ms
                        .max(config.webhook_debounce_ms),
                ),
            },
        }
    }

    /// How long a node holds a claimed row: one attempt with room to record it; a dead
    /// node's rows are sent by another after this.
    fn claim_for(&self) -> Duration {
        self.timeout * 2 + Duration::from_secs(30)
    }

    /// The wait before attempt `attempts + 1`, after `attempts` failed ones: the backoff
    /// doubled per failure, capped, with ±20 % jitter so that receivers coming back are not
    /// hit by every retry at once.
    fn retry_in(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(30);
        let wait = self
            .backoff
            .saturating_mul(1u32 << doublings)
            .min(self.backoff_max);
        let jitter = rand::rng().random_range(0.8..=1.2);
        wait.mul_f64(jitter).min(self.backoff_max)
    }
}

/// Labels of the delivery counter: `outcome` (`delivered`, `retried`, `failed`).
type OutcomeLabels = Vec<(&'static str, &'static str)>;

/// Metrics of webhooks (`lectern_webhooks_*`). Cheap to clone.
#[derive(Debug, Clone)]
pub struct WebhookMetrics {
    /// Delivery attempts by outcome: `delivered`, `retried` (failed, will be retried),
    /// `failed` (failed for good).
    pub attempts: Family<OutcomeLabels, Counter>,
    /// Events whose deliveries could not be written into the outbox (database failure).
    pub enqueue_failures: Counter,
    /// `document.updated` notes dropped because the debouncer's channel was full.
    pub document_notes_dropped: Counter,
}

impl WebhookMetrics {
    /// Creates the metrics and registers them in `registry` under `webhooks_`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            attempts: Family::default(),
            enqueue_failures: Counter::default(),
            document_notes_dropped: Counter::default(),
        };
        let registry = registry.sub_registry_with_prefix("webhooks");
        registry.register(
            "attempts",
            "Webhook delivery attempts, by outcome",
            metrics.attempts.clone(),
        );
        registry.register(
            "enqueue_failures",
            "Events whose webhook deliveries could not be written to the outbox",
            metrics.enqueue_failures.clone(),
        );
        registry.register(
            "document_notes_dropped",
            "document.updated notes dropped because the debouncer was behind",
            metrics.document_notes_dropped.clone(),
        );
        metrics
    }
}

/// The webhook machinery of one node: the outbox sink, the delivery worker and the
/// `document.updated` debouncer. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct WebhookService(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    settings: WebhookSettings,
    webhooks: Webhooks,
    /// Wakes the worker when this node enqueued something.
    wake: Notify,
    metrics: WebhookMetrics,
    /// The worker and the debouncer.
    tasks: TaskTracker,
    /// Stops them. Not a child of the server's shutdown token: the debouncer must still
    /// hear the rooms' last appends, so [`WebhookService::shutdown`] runs after the rooms
    /// have stopped.
    stop: CancellationToken,
}

impl WebhookService {
    pub(crate) fn new(
        database: Database,
        settings: WebhookSettings,
        metrics: WebhookMetrics,
    ) -> Self {
        Self(Arc::new(Inner {
            settings,
            webhooks: Webhooks::new(database),
            wake: Notify::new(),
            metrics,
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
        }))
    }

    /// The settings in effect.
    pub(crate) fn settings(&self) -> &WebhookSettings {
        &self.0.settings
    }

    /// The sink that writes events into the outbox.
    pub(crate) fn sink(&self) -> Arc<dyn EventSink> {
        Arc::new(OutboxSink(self.clone()))
    }

    /// Starts the delivery worker and the `document.updated` debouncer (fed by `notes`,
    /// emitting into `events`), both stopped by [`WebhookService::shutdown`].
    pub(crate) fn start(
        &self,
        notes: mpsc::Receiver<DocId>,
        sessions: Sessions,
        events: Events,
    ) -> anyhow::Result<()> {
        let client = delivery_client(&self.0.settings)?;
        self.0.tasks.spawn(
            deliver_due(self.clone(), client).instrument(tracing::info_span!("webhook_worker")),
        );
        self.0.tasks.spawn(
            debounce::run(
                notes,
                self.0.settings.debounce,
                sessions,
                events,
                self.0.stop.clone(),
            )
            .instrument(tracing::info_span!("document_updates")),
        );
        Ok(())
    }

    /// Stops the worker (deliveries in flight are given back to the outbox, to be sent
    /// after the restart or by another node) after the debouncer announced what it held.
    pub(crate) async fn shutdown(&self) {
        self.0.stop.cancel();
        self.0.tasks.close();
        self.0.tasks.wait().await;
    }

    /// Writes one delivery per subscribed webhook of the event's classroom. Returns how many.
    async fn enqueue(&self, event: &Event) -> Result<usize, DbError> {
        let name = event.name();
        let subscribed: Vec<_> = self
            .0
            .webhooks
            .of_classroom(event.classroom_id())
            .await?
            .into_iter()
            .filter(|webhook| webhook.wants(name))
            .collect();
        if subscribed.is_empty() {
            return Ok(0);
        }
        let created_at = now_secs();
        let data = data(event);
        let deliveries: Vec<NewDelivery> = subscribed
            .into_iter()
            .map(|webhook| {
                let id = uuid::Uuid::new_v4().to_string();
                let body = json!({
                    "id": id,
                    "event": name,
                    "created_at": created_at,
                    "classroom_id": event.classroom_id(),
                    "data": data,
                });
                NewDelivery {
                    id,
                    webhook_id: webhook.id,
                    event: name.to_owned(),
                    body: body.to_string(),
                }
            })
            .collect();
        self.0.webhooks.enqueue(&deliveries).await?;
        Ok(deliveries.len())
    }
}

/// Writes events into the outbox and wakes the worker.
#[derive(Debug)]
struct OutboxSink(WebhookService);

#[async_trait]
impl EventSink for OutboxSink {
    async fn record(&self, event: &Event) {
        match self.0.enqueue(event).await {
            Ok(0) => {}
            Ok(_) => self.0.0.wake.notify_one(),
            Err(error) => {
                self.0.0.metrics.enqueue_failures.inc();
                tracing::error!(
                    error = &error as &dyn std::error::Error,
                    event = event.name(),
                    classroom = event.classroom_id(),
                    "could not write webhook deliveries"
                );
            }
        }
    }
}

/// The `data` of an event's body: everything the event says besides its classroom.
fn data(event: &Event) -> serde_json::Value {
    match event {
        Event::SessionStarted {
            session_id,
            started_by,
            ..
        } => json!({ "session_id": session_id, "started_by": started_by }),
        Event::SessionEnded { session_id, .. } => json!({ "session_id": session_id }),
        Event::MaterialReady {
            material_id,
            file_name,
            uploaded_by,
            ..
        } => json!({
            "material_id": material_id,
            "file_name": file_name,
            "uploaded_by": uploaded_by,
        }),
        Event::MaterialFailed {
            material_id,
            file_name,
            uploaded_by,
            reason,
            ..
        } => json!({
            "material_id": material_id,
            "file_name": file_name,
            "uploaded_by": uploaded_by,
            "reason": reason,
        }),
        Event::AiJobFinished {
            session_id,
            job_id,
            kind,
            requested_by,
            status,
            doc_id,
            ..
        } => json!({
            "session_id": session_id,
            "job_id": job_id,
            "kind": kind,
            "requested_by": requested_by,
            "status": status,
            "doc_id": doc_id,
        }),
        Event::MemberJoined { user_id, role, .. } => json!({ "user_id": user_id, "role": role }),
        Event::DocumentUpdated { doc_id, .. } => json!({ "doc_id": doc_id }),
        Event::HandedOut {
            session_id,
            doc_id,
            copies,
            ..
        } => json!({
            "session_id": session_id,
            "doc_id": doc_id,
            "copies": copies
                .iter()
                .map(|(user_id, doc_id)| json!({ "user_id": user_id, "doc_id": doc_id }))
                .collect::<Vec<_>>(),
        }),
    }
}

/// The HTTP client deliveries use: names resolved through the SSRF guard (so the
/// connection goes to the addresses checked), no redirects (a receiver must not send the
/// server elsewhere), no proxy from the environment (the proxy would resolve the name,
/// not the guard), the attempt timeout over the whole exchange.
fn delivery_client(settings: &WebhookSettings) -> anyhow::Result<reqwest::Client> {
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls_config()?)
        .dns_resolver(Arc::new(GuardedResolver {
            guard: settings.guard,
        }))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        .user_agent(concat!("Lectern-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()?;
    Ok(client)
}

/// TLS on aws-lc (as the rest of the server) with the system's roots. Without roots,
/// `https` receivers fail (and say so in the log) while `http` ones work.
fn tls_config() -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let loaded = rustls_native_certs::load_native_certs();
    let (added, _unparsable) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        tracing::warn!("no trusted root certificates found; https webhooks will fail");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The delivery worker: claims due rows (up to [`MAX_IN_FLIGHT`] at once), sends each in
/// its own task, and sleeps until it is woken by an enqueue, a finished delivery or the
/// next due time. Stops on [`WebhookService::shutdown`], giving its claims back.
async fn deliver_due(service: WebhookService, client: reqwest::Client) {
    let inner = &service.0;
    let holder = uuid::Uuid::new_v4().to_string();
    let claim_for = inner.settings.claim_for();
    let mut in_flight = JoinSet::new();
    loop {
        let free = MAX_IN_FLIGHT.saturating_sub(in_flight.len());
        let mut wait = None;
        if free > 0 {
            let limit = u32::try_from(free).unwrap_or(1);
            match inner.webhooks.claim(&holder, limit, claim_for).await {
                Ok(claimed) => {
                    for delivery in claimed {
                        let span = tracing::info_span!(
                            "webhook_delivery",
                            delivery = %delivery.id,
                            event = %delivery.event
                        );
                        in_flight.spawn(
                            deliver(service.clone(), client.clone(), holder.clone(), delivery)
                                .instrument(span),
                        );
                    }
                }
                Err(error) => {
                    tracing::warn!(
                        error = &error as &dyn std::error::Error,
                        "could not claim webhook deliveries"
                    );
                    wait = Some(AFTER_DATABASE_ERROR);
                }
            }
            // With a slot left, sleep until the next row is due; with none, until a
            // delivery finishes.
            if wait.is_none() && in_flight.len() < MAX_IN_FLIGHT {
                wait = Some(match inner.webhooks.next_due_in().await {
                    Ok(Some(due)) => due.min(POLL_AT_LEAST_EVERY),
                    Ok(None) => POLL_AT_LEAST_EVERY,
                    Err(error) => {
                        tracing::warn!(
                            error = &error as &dyn std::error::Error,
                            "could not read when webhook deliveries are due"
                        );
                        AFTER_DATABASE_ERROR
                    }
                });
            }
        }
        let sleep = async {
            match wait {
                Some(wait) => tokio::time::sleep(wait).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = inner.stop.cancelled() => break,
            () = inner.wake.notified() => {}
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            () = sleep => {}
        }
    }
    in_flight.abort_all();
    while in_flight.join_next().await.is_some() {}
    if let Err(error) = inner.webhooks.release_all(&holder).await {
        // They are sent once the claims expire.
        tracing::warn!(
            error = &error as &dyn std::error::Error,
            "could not give webhook deliveries back"
        );
    }
}

/// Why an attempt failed.
#[derive(Debug)]
enum AttemptError {
    /// The receiver answered, but not 2xx.
    Status(u16, String),
    /// No answer: refused address, connection failure, timeout...
    Transport(String),
}

/// Sends one claimed delivery and records the outcome.
async fn deliver(
    service: WebhookService,
    client: reqwest::Client,
    holder: String,
    delivery: Delivery,
) {
    let inner = &service.0;
    let webhook = match inner.webhooks.get(&delivery.webhook_id).await {
        Ok(Some(webhook)) if webhook.active => webhook,
        Ok(_) => {
            if let Err(error) = inner
                .webhooks
                .give_up(&delivery.id, &holder, "the webhook was deleted")
                .await
            {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "could not record the delivery's end"
                );
            }
            return;
        }
        Err(error) => {
            // The claim expires and the row is tried again then.
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "could not read the delivery's webhook"
            );
            return;
        }
    };
    let outcome = attempt(&client, inner.settings.guard, &webhook, &delivery).await;
    let recorded = match outcome {
        Ok(status) => {
            inner
                .metrics
                .attempts
                .get_or_create(&vec![("outcome", "delivered")])
                .inc();
            tracing::debug!(status, "webhook delivered");
            inner
                .webhooks
                .delivered(&delivery.id, &holder, status)
                .await
                .map(|_| ())
        }
        Err(error) => {
            let (status, text) = match error {
                AttemptError::Status(status, text) => (Some(status), text),
                AttemptError::Transport(text) => (None, text),
            };
            let retry_in = inner.settings.retry_in(delivery.attempts + 1);
            let state = inner
                .webhooks
                .attempt_failed(
                    &delivery.id,
                    &holder,
                    status,
                    &text,
                    retry_in,
                    inner.settings.retry_for,
                )
                .await;
            if let Ok(Some(state)) = &state {
                let outcome = match state {
                    DeliveryState::Failed => "failed",
                    DeliveryState::Pending | DeliveryState::Delivered => "retried",
                };
                inner
                    .metrics
                    .attempts
                    .get_or_create(&vec![("outcome", outcome)])
                    .inc();
                tracing::info!(
                    error = %text,
                    outcome,
                    retry_in_ms = u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX),
                    "webhook delivery attempt failed"
                );
            }
            state.map(|_| ())
        }
    };
    if let Err(error) = recorded {
        // The claim expires and the row is tried again then (at least once).
        tracing::warn!(
            error = &error as &dyn std::error::Error,
            "could not record a webhook delivery attempt"
        );
    }
}

/// One attempt: POSTs the body signed; `Ok(status)` for a 2xx answer.
async fn attempt(
    client: &reqwest::Client,
    guard: Guard,
    webhook: &lectern_db::webhooks::Webhook,
    delivery: &Delivery,
) -> Result<u16, AttemptError> {
    // Again at each attempt: the policy may have changed since registration. Names are
    // checked by the client's resolver when it connects.
    let url = guard
        .check_url(&webhook.url)
        .map_err(|error| AttemptError::Transport(error.to_string()))?;
    let timestamp = now_secs();
    let signature = sign::signature(&webhook.secret, timestamp, &delivery.body);
    let response = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Lectern-Event", &delivery.event)
        .header("X-Lectern-Delivery", &delivery.id)
        .header("X-Lectern-Timestamp", timestamp.to_string())
        .header("X-Lectern-Signature", signature)
        .body(delivery.body.clone())
        .send()
        .await
        .map_err(|error| AttemptError::Transport(describe(&error)))?;
    let status = response.status();
    if status.is_success() {
        return Ok(status.as_u16());
    }
    let excerpt = excerpt(response).await;
    let text = if excerpt.is_empty() {
        format!("HTTP {}", status.as_u16())
    } else {
        format!("HTTP {}: {excerpt}", status.as_u16())
    };
    Err(AttemptError::Status(status.as_u16(), text))
}

/// The start of a response body, for the log: at most [`MAX_RESPONSE_BYTES`] are read.
async fn excerpt(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < MAX_RESPONSE_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    bytes.truncate(MAX_RESPONSE_BYTES);
    String::from_utf8_lossy(&bytes)
        .chars()
        .filter(|c| !c.is_control())
        .take(KEPT_RESPONSE_CHARS)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// What went wrong in words for the delivery log: the SSRF guard's refusal as it said
/// it, a timeout as such, otherwise the error chain.
fn describe(error: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(refused) = current.downcast_ref::<UrlError>() {
            return truncate(&refused.to_string());
        }
        source = current.source();
    }
    if error.is_timeout() {
        return "timed out".to_owned();
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(current) = source {
        text.push_str(": ");
        text.push_str(&current.to_string());
        source = current.source();
    }
    truncate(&text)
}

fn truncate(text: &str) -> String {
    text.chars().take(MAX_ERROR_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_event() -> Vec<Event> {
        let c = || "c".to_owned();
        vec![
            Event::SessionStarted {
                classroom_id: c(),
                session_id: c(),
                started_by: c(),
            },
            Event::SessionEnded {
                classroom_id: c(),
                session_id: c(),
            },
            Event::MaterialReady {
                classroom_id: c(),
                material_id: c(),
                file_name: c(),
                uploaded_by: c(),
            },
            Event::MaterialFailed {
                classroom_id: c(),
                material_id: c(),
                file_name: c(),
                uploaded_by: c(),
                reason: c(),
            },
            Event::AiJobFinished {
                classroom_id: c(),
                session_id: c(),
                job_id: c(),
                kind: c(),
                requested_by: c(),
                status: c(),
                doc_id: c(),
            },
            Event::MemberJoined {
                classroom_id: c(),
                user_id: c(),
                role: c(),
            },
            Event::DocumentUpdated {
                classroom_id: c(),
                doc_id: c(),
            },
            Event::HandedOut {
                classroom_id: c(),
                session_id: c(),
                doc_id: c(),
                copies: vec![("u".into(), "d".into())],
            },
        ]
    }

    #[test]
    fn event_names_are_exactly_the_events() {
        let names: Vec<&str> = every_event().iter().map(Event::name).collect();
        assert_eq!(names, EVENT_NAMES);
    }

    #[test]
    fn data_never_repeats_the_classroom() {
        for event in every_event() {
            let data = data(&event);
            assert!(data.is_object(), "{}", event.name());
            assert!(data.get("classroom_id").is_none(), "{}", event.name());
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let settings = WebhookSettings {
            guard: Guard {
                allow_private: false,
            },
            timeout: Duration::from_secs(10),
            retry_for: Duration::from_secs(86_400),
            backoff: Duration::from_secs(10),
            backoff_max: Duration::from_secs(3600),
            debounce: Debounce {
                quiet: Duration::from_secs(2),
                max_wait: Duration::from_secs(10),
            },
        };
        for (attempts, nominal) in [(1, 10.0), (2, 20.0), (3, 40.0), (6, 320.0)] {
            for _ in 0..20 {
                let wait = settings.retry_in(attempts).as_secs_f64();
                assert!(
                    (nominal * 0.8..=nominal * 1.2).contains(&wait),
                    "{attempts}: {wait}"
                );
            }
        }
        for attempts in [10, 30, 1000] {
            assert!(settings.retry_in(attempts) <= Duration::from_secs(3600));
            assert!(settings.retry_in(attempts) >= Duration::from_secs(2880));
        }
    }
}
