//! The `lectern` server: HTTP and WebSocket wiring around the domain crates.
//!
//! # Layout
//! - `config.rs`: the one typed configuration (flags + `LECTERN_*` environment).
//! - `ws.rs`: WebSocket upgrade, the per-socket reader and writer, close codes.
//! - `metrics.rs`: the Prometheus registry and the `/metrics` text.
//! - `transport.rs`: the accept loop: HTTP timeouts, the connection cap, `RLIMIT_NOFILE`.
//! - `auth/`: token issuing and verification, passwords, refresh tokens.
//! - `api/`: the REST API under `/api/v1` (accounts, classrooms, sessions, document tokens).
//! - `access.rs`: who may open which document, read or write (one pure `decide`).
//! - `cluster.rs`: this node among the others: the Redis link, document fan-out over it,
//!   and the cluster events other nodes apply (access changes, sign-outs, AI cancels...).
//! - `cluster_store.rs`: counters and caches shared through Redis (rate limits, AI
//!   budgets, AI answers), with the fallback to the node's own state.
//! - `room_effects.rs`: what REST changes (lock, end, removal, handouts) do to open rooms.
//! - `lazy_model.rs`: a model loaded once on a blocking thread, on first use.
//! - `materials/`: course material: uploads into object storage, background ingestion
//!   (extract, chunk, embed), semantic search, and progress in each classroom's feed.
//! - `ai/`: live AI jobs streaming into session documents (see `docs/ai.md`).
//! - `events.rs`: what happened in a classroom, told to the sinks below.
//! - `webhooks/`: classroom events POSTed to registered URLs from a durable outbox
//!   (signed, retried, SSRF-guarded), and the debounced `document.updated`.
//! - `notifications/`: each user's live inbox document (`user/{id}/inbox`) and optional
//!   email, from the same events.
//! - `web.rs`: the web app embedded from `web/dist` and served at `/`, and CORS
//!   (`--cors-origins`).
//! - this file: [`AppState`], the router ([`app`]) and the serve loop with graceful
//!   shutdown ([`serve`]).
//!
//! Rooms, sync and persistence live in `lectern-collab` and `lectern-db`; this crate only
//! connects them to sockets and configuration.

pub mod access;
pub mod ai;
pub mod api;
pub mod auth;
mod cluster;
mod cluster_store;
pub mod config;
pub mod credentials;
mod events;
pub mod lazy_model;
pub mod materials;
pub mod metrics;
mod notifications;
pub mod room_effects;
pub mod transport;
mod web;
mod webhooks;
pub mod ws;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use lectern_collab::{DocId, Rooms};
use lectern_db::Database;

pub use config::Config;
use metrics::Metrics;
use room_effects::RoomEffects;

/// Shared handles for request handlers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    config: Config,
    rooms: Rooms,
    database: Database,
    metrics: Metrics,
    shutdown: CancellationToken,
    connections: TaskTracker,
    authenticator: auth::Authenticator,
    rate_limits: api::RateLimits,
    room_effects: RoomEffects,
    library: materials::Library,
    ai: ai::AiService,
    speech: api::speech::Speech,
    cluster: cluster::Cluster,
    events: events::Events,
    webhooks: webhooks::WebhookService,
    notifications: notifications::NotificationService,
}

impl AppState {
    /// Connects the database (running migrations) and sets up rooms.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
        let database = Database::connect(&config.database_url())
            .await
            .context("connecting to the database")?;
        let metrics = Metrics::new();
        let cluster = cluster::Cluster::from_config(&config, metrics.cluster.clone())
            .context("configuring the Redis link")?;
        let webhooks = webhooks::WebhookService::new(
            database.clone(),
            webhooks::WebhookSettings::from_config(&config),
            metrics.webhooks.clone(),
        );
        // Rooms append through a store that notes each updated document for the
        // `document.updated` webhook event.
        let (document_store, document_notes) = webhooks::debounce::NotingStore::wrap(
            database.document_store(config.history_retention()),
            metrics.webhooks.document_notes_dropped.clone(),
        );
        let rooms = Rooms::new(
            document_store,
            cluster.fanout(),
            cluster.node(),
            config.room_config(),
            metrics.collab.clone(),
        );
        let authenticator =
            auth::Authenticator::from_config(&config).context("configuring authentication")?;
        let store = cluster_store::ClusterStore::new(&cluster, metrics.redis_fallbacks.clone());
        let rate_limits = api::rate_limits(&config, &store);
        let room_effects = RoomEffects::new(rooms.clone(), database.clone(), cluster.clone());
        let shutdown = CancellationToken::new();
        // Webhooks and notifications register their sinks here.
        let notifications = notifications::NotificationService::start(
            rooms.clone(),
            database.clone(),
            notifications::email::EmailSettings::from_config(&config)?,
        )
        .context("starting notifications")?;
        let events = events::Events::new(vec![webhooks.sink(), notifications.sink()]);
        webhooks
            .start(
                document_notes,
                lectern_db::Sessions::new(database.clone()),
                events.clone(),
            )
            .context("starting webhook delivery")?;
        let model = materials::EmbeddingModel::new(config.models_dir(), config.prepare_models);
        let library = materials::Library::start(
            object_store(&config).await?,
            database.clone(),
            rooms.clone(),
            model,
            materials::LibraryLimits::from_config(&config)
                .context("finding the extraction worker binary")?,
            metrics.materials.clone(),
            cluster.clone(),
            events.clone(),
            shutdown.child_token(),
        )
        .await
        .context("starting the materials library")?;
        let ai = ai::AiService::new(
            &config,
            rooms.clone(),
            database.clone(),
            library.clone(),
            metrics.ai.clone(),
            &store,
            events.clone(),
            shutdown.child_token(),
        );
        let speech = api::speech::Speech::from_config(&config, &store);
        let state = Self(Arc::new(Inner {
            library,
            ai,
            speech,
            cluster,
            events,
            webhooks,
            notifications,
            authenticator,
            rate_limits,
            room_effects,
            config,
            rooms,
            database,
            metrics,
            shutdown,
            connections: TaskTracker::new(),
        }));
        state.listen_to_cluster().await;
        Ok(state)
    }

    /// Applies other nodes' cluster events here until shutdown (nothing to do on a node on
    /// its own).
    async fn listen_to_cluster(&self) {
        let Some((guard, mut events)) = self.0.cluster.listen().await else {
            return;
        };
        let mut reconnects = self.0.cluster.reconnects();
        let state = self.clone();
        let shutdown = self.0.shutdown.clone();
        tokio::spawn(async move {
            let _guard = guard;
            loop {
                let event = tokio::select! {
                    () = shutdown.cancelled() => return,
                    event = events.recv() => match event {
                        Some(event) => event,
                        None => return,
                    },
                    () = next_reconnect(&mut reconnects) => {
                        // Events published while the link was down are lost: decide again.
                        state.0.room_effects.recheck_open_rooms().await;
                        continue;
                    }
                };
                state.apply_cluster_event(event).await;
            }
        });
    }

    /// What another node's event means here.
    async fn apply_cluster_event(&self, event: cluster::ClusterEvent) {
        use cluster::ClusterEvent;
        tracing::debug!(?event, "cluster event");
        let result = match event {
            ClusterEvent::AccessChanged { doc_ids } => {
                self.0.room_effects.apply_access_changed(doc_ids).await
            }
            ClusterEvent::SessionEnded { doc_ids } => {
                self.0.room_effects.apply_session_ended(doc_ids).await
            }
            ClusterEvent::LoginRevoked { family_id } => {
                self.0.room_effects.apply_login_revoked(&family_id).await;
                Ok(())
            }
            ClusterEvent::AiJobCancelled { job_id } => {
                self.0.ai.cancel_local(&job_id);
                Ok(())
            }
            ClusterEvent::MaterialsChanged { classroom_id } => {
                self.0.library.forget_index(&classroom_id);
                Ok(())
            }
        };
        if let Err(error) = result {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "applying a cluster event failed"
            );
        }
    }

    /// The configuration in effect.
    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// The room registry.
    pub fn rooms(&self) -> &Rooms {
        &self.0.rooms
    }

    /// All metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// Issues and verifies tokens (REST and WebSocket).
    pub fn authenticator(&self) -> &auth::Authenticator {
        &self.0.authenticator
    }

    pub(crate) fn rate_limits(&self) -> &api::RateLimits {
        &self.0.rate_limits
    }

    /// Applies REST-side changes (lock, end, removal, handouts) to open rooms.
    pub fn room_effects(&self) -> &RoomEffects {
        &self.0.room_effects
    }

    /// Course material: uploads, ingestion and search.
    pub fn library(&self) -> &materials::Library {
        &self.0.library
    }

    /// Live AI jobs.
    pub fn ai(&self) -> &ai::AiService {
        &self.0.ai
    }

    /// Speech input for the chat.
    pub(crate) fn speech(&self) -> &api::speech::Speech {
        &self.0.speech
    }

    /// Where handlers tell what happened (webhooks, notifications).
    pub(crate) fn events(&self) -> &events::Events {
        &self.0.events
    }

    /// Notifications: inboxes and email.
    pub(crate) fn notifications(&self) -> &notifications::NotificationService {
        &self.0.notifications
    }

    /// Webhooks: the outbox sink, delivery and its settings.
    pub(crate) fn webhooks(&self) -> &webhooks::WebhookService {
        &self.0.webhooks
    }

    pub(crate) fn database(&self) -> &Database {
        &self.0.database
    }

    pub(crate) fn shutdown_token(&self) -> CancellationToken {
        self.0.shutdown.clone()
    }

    pub(crate) fn connections(&self) -> &TaskTracker {
        &self.0.connections
    }

    /// Closes every socket with 4503 (draining), flushes every room, waits (bounded) for
    /// sockets to finish, and closes the database.
    pub async fn shutdown(&self) {
        self.0.shutdown.cancel();
        // Jobs record their cancellation in their documents, so they stop before rooms do.
        self.0.ai.shutdown().await;
        self.0.rooms.shutdown().await;
        self.0.connections.close();
        let timeout = Duration::from_millis(self.0.config.shutdown_timeout_ms);
        if tokio::time::timeout(timeout, self.0.connections.wait())
            .await
            .is_err()
        {
            tracing::warn!("some sockets did not close in time");
        }
        // After the rooms: their last appends are announced (`document.updated`) and
        // written to the outbox before the database closes.
        self.0.webhooks.shutdown().await;
        self.0.notifications.shutdown().await;
        self.0.database.close().await;
        self.0.cluster.close();
    }
}

/// Resolves when the Redis link reconnects; never on a node on its own (or once the link
/// is gone).
async fn next_reconnect(reconnects: &mut Option<tokio::sync::watch::Receiver<u64>>) {
    if let Some(changes) = reconnects {
        if changes.changed().await.is_ok() {
            return;
        }
        *reconnects = None;
    }
    std::future::pending().await
}

/// The object store configured: an S3 bucket, or a local directory by default.
async fn object_store(config: &Config) -> anyhow::Result<Arc<dyn lectern_storage::ObjectStore>> {
    match &config.s3_bucket {
        Some(bucket) => {
            let mut s3 = lectern_storage::S3Config::new(bucket.clone(), config.s3_region.clone());
            s3.endpoint = config.s3_endpoint.clone();
            s3.force_path_style = config.s3_force_path_style;
            s3.access_key_id = config.s3_access_key_id.clone();
            s3.secret_access_key = config
                .s3_secret_access_key
                .as_ref()
                .map(|secret| secret.expose().to_owned());
            let store = lectern_storage::S3Store::connect(s3)
                .await
                .context("configuring the S3 object store")?;
            Ok(Arc::new(store))
        }
        None => {
            let store = lectern_storage::LocalStore::new(config.objects_dir())
                .context("opening the local object directory")?;
            Ok(Arc::new(store))
        }
    }
}

/// The HTTP router: the operational endpoints, the WebSockets, the API, and (unless
/// turned off) the web app for every other path, all behind CORS when origins are
/// configured.
pub fn app(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/ws", get(multiplexed_socket))
        .route("/ws/{*doc}", get(document_socket))
        .nest("/api/v1", api::router());
    if state.config().web_app {
        router = router.fallback(web::app_file);
    }
    let cors_origins = state.config().cors_origins.clone();
    web::with_cors(router.with_state(state), &cors_origins)
}

/// Serves `state` on `listener` until `shutdown` resolves, then shuts down gracefully:
/// stops accepting, lets HTTP requests in flight finish, closes every WebSocket with 4503
/// and drains rooms ([`AppState::shutdown`]). Connections are served with the timeouts and
/// the connection cap of the configuration (see `transport.rs`).
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    transport::accept_loop(&state, app(state.clone()), listener, shutdown).await;
    state.shutdown().await;
    tracing::info!("shut down cleanly");
    Ok(())
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.0.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    match state.0.database.ping().await {
        // Cut off from the other nodes, this one still serves its own clients (edits stay
        // durable) and reconverges when Redis is back: ready, but saying so.
        Ok(()) if state.0.cluster.degraded() => "degraded: Redis unavailable".into_response(),
        Ok(()) => "ready".into_response(),
        Err(error) => {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "readiness check failed"
            );
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics().render(),
    )
        .into_response()
}

async fn document_socket(
    State(state): State<AppState>,
    Path(doc): Path<String>,
    request: Request,
) -> Response {
    match DocId::new(&doc) {
        Ok(doc) => ws::upgrade(request, state, ws::Target::Document(doc)),
        Err(error) => (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    }
}

async fn multiplexed_socket(State(state): State<AppState>, request: Request) -> Response {
    ws::upgrade(request, state, ws::Target::Multiplexed)
}
