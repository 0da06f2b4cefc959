//! Live AI jobs: a generator streaming token by token into the shared documents of a live
//! session, so the whole class watches an answer, notes, a mindmap or a quiz appear, and
//! can edit alongside it. The contract (endpoints, job kinds, document shapes) is
//! `docs/ai.md`.
//!
//! # Layout
//! - `generator.rs`: which [`Backend`] jobs use (`--ai-backend`), the local model loaded
//!   lazily on a blocking thread.
//! - `peer.rs`: [`peer::AiPeer`], a job's own Yjs replica of its target document, so every
//!   AI edit carries the AI's client id; edits reach the room through `Rooms::apply_update`.
//! - `run.rs`: what each kind of job does (retrieval, prompt, streaming into the document).
//! - `sources.rs`: the passages a prompt is grounded in (relevance floor, merged neighbours
//!   without repeated text, fitted to the backend's context window) and what an answer cites.
//! - `guard.rs`: the per-classroom daily token budget and the answer cache.
//! - `queue.rs`: the generation slots (`--ai-max-concurrent-jobs`) and the fair line of
//!   jobs waiting for one, round-robin across classrooms.
//! - `control.rs`: the WebSocket control message carrying AI requests (sans-IO codec).
//! - `metrics.rs`: Prometheus metrics (time to first token, tokens, tokens/s, errors).
//! - this file: [`AiService`], the handle in `AppState`: checks (who may start what,
//!   budget, rate limit, availability), the job registry, cancellation and shutdown.
//!
//! # The job registry
//! Jobs are records in the database (`lectern_db::ai_jobs`), so their status and their
//! cancellation work through any node of a cluster, and a job outlives its node as a
//! record. What only the running node knows stays in memory here: the cancellation token
//! of each *local* job and its place in line. One heartbeat task per node, every second,
//! runs one statement for all its local jobs: it marks them alive and brings back the
//! cancel requests made through other nodes, so such a cancel stops the job within about
//! a second with no messaging between nodes. A job still unfinished whose node has been
//! silent longer than `--ai-job-heartbeat-timeout-ms` lost its node: it is reported (and
//! recorded, when read) as failed.
//!
//! **Architecture invariant:** AI never blocks realtime collaboration. Jobs are tasks
//! owned by the service's tracker, their edits go through the room like any client's, and
//! an unavailable or failing backend fails jobs (visible in REST and in the document),
//! never the server or a room.

pub mod control;
pub mod generator;
pub mod guard;
pub mod metrics;
pub mod peer;
mod queue;
mod run;
mod sources;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use lectern_ai::backend::Usage;
use lectern_collab::{DocId, RoomError, Rooms};
use lectern_db::accounts::Role;
use lectern_db::ai_jobs::{AiJobRecord, JobStatus, JobUsage};
use lectern_db::classrooms::MemberRole;
use lectern_db::sessions::SessionState;
use lectern_db::{AiJobs, Classrooms, Database, DbError, Sessions};

use crate::access::{Access, AccessError};
use crate::api::RateLimiter;
use crate::api::dto::{AiJobKind, AiJobRequest, AiJobResponse, AiJobStatus};
use crate::auth::{Origin, Principal, now_secs};
use crate::cluster::{Cluster, ClusterEvent};
use crate::cluster_store::ClusterStore;
use crate::config::{AiBackendKind, Config};
use crate::events::{Event, Events};
use crate::materials::Library;
use generator::Generator;
use guard::{AnswerCache, DailyBudget};
use metrics::AiMetrics;
use queue::Scheduler;

/// Longest prompt, in characters.
pub const MAX_PROMPT_CHARS: usize = 4000;
/// Most materials one job may be restricted to.
pub const MAX_MATERIALS: usize = 20;
/// Longest target language name, in characters.
const MAX_LANGUAGE_CHARS: usize = 40;
/// Finished jobs are kept for status queries this long.
const FINISHED_JOB_TTL_SECS: i64 = 24 * 3600;
/// How often a node marks its jobs alive and looks for cancel requests made elsewhere.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// Heartbeats between two prunings of old job records (ten minutes).
const PRUNE_EVERY_BEATS: u64 = 600;
/// What a job whose node stopped without recording its end is reported as.
const INTERRUPTED: &str = "interrupted: the server running it stopped";
/// How long shutdown waits for jobs to record their cancellation.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);
/// Generations at once by default with the local model. Its generations take turns on the
/// one model a forward pass at a time (`lectern_ai::local`), so three questions asked
/// together all stream instead of two waiting for whole answers; each streams at about a
/// third of the speed (~11 tokens/s each measured on 2 cores, still faster than a class
/// reads). More would slow every answer below reading speed and delay every first token by
/// another prompt's prefill, so further jobs wait in the fair line.
const DEFAULT_LOCAL_CONCURRENT_JOBS: u32 = 3;
/// Tokens of passages in a chat prompt by default with the local model. Reading the prompt
/// is most of the wait for a first token (benchmarks/ai-chat.md), and the 135M model answers
/// no worse from the few sentences that matter than from four whole chunks (`eval/`).
const DEFAULT_LOCAL_CHAT_SOURCE_TOKENS: usize = 256;
/// Generations at once by default with an OpenAI-compatible server, which batches requests.
const DEFAULT_REMOTE_CONCURRENT_JOBS: u32 = 8;
/// `Retry-After` when a classroom's line is full: a hint, since how fast the line moves
/// depends on the answers being generated.
const QUEUE_FULL_RETRY_AFTER: Duration = Duration::from_secs(10);

/// Why an AI request was refused.
#[derive(Debug, thiserror::Error)]
pub enum AiError {
    /// The request is malformed; the message says what to fix.
    #[error("{0}")]
    InvalidRequest(String),
    /// No such session, job or material.
    #[error("not found")]
    NotFound,
    /// The caller may not do this.
    #[error("not allowed")]
    Forbidden,
    /// The session has ended.
    #[error("this session has ended")]
    SessionEnded,
    /// The generator cannot be used; the message says why and how to fix it.
    #[error("{0}")]
    Unavailable(Arc<str>),
    /// The generator works but cannot do this kind of job (translation on the embedded
    /// model); the message says how to fix it.
    #[error("{0}")]
    Unsupported(String),
    /// The classroom spent its AI tokens for today.
    #[error(
        "this classroom has used its AI budget of {limit} tokens for today; it resets at midnight UTC"
    )]
    BudgetExhausted {
        /// The daily limit.
        limit: u64,
        /// Until the budget resets.
        retry_after: Duration,
    },
    /// The classroom already has as many jobs waiting for the model as it may.
    #[error(
        "this classroom already has {limit} AI jobs waiting for the model; try again when some have finished"
    )]
    QueueFull {
        /// The most jobs one classroom may have waiting.
        limit: usize,
        /// A hint for when to try again.
        retry_after: Duration,
    },
    /// The user started too many jobs recently.
    #[error("too many AI jobs; try again later")]
    RateLimited {
        /// When the caller may try again.
        retry_after: Duration,
    },
    /// The database failed.
    #[error("database access failed")]
    Database(#[from] DbError),
    /// Deciding document access failed.
    #[error("deciding access failed")]
    Access(#[from] AccessError),
    /// A room could not be written.
    #[error("room unavailable")]
    Room(#[from] RoomError),
}

/// Who asks: a signed-in local account.
#[derive(Debug, Clone)]
pub struct Requester {
    /// The account id.
    pub user_id: String,
    /// Its server-wide role.
    pub role: Role,
}

impl Requester {
    fn principal(&self) -> Principal {
        Principal {
            subject: self.user_id.clone(),
            role: self.role,
            origin: Origin::Local,
            docs: None,
            expires_at: 0,
            session: None,
        }
    }
}

/// Limits and sizes of AI jobs, from the configuration.
#[derive(Debug, Clone)]
pub struct AiLimits {
    /// Most tokens one job generates.
    pub max_tokens: u32,
    /// The context window of a backend that does not know its own (an API), in tokens.
    pub context_tokens: usize,
    /// Cosine similarity a passage must reach to be given to the model.
    pub relevance_floor: f32,
    /// Tokens per classroom per UTC day; 0: unlimited.
    pub classroom_daily_tokens: u64,
    /// Jobs per user per minute.
    pub jobs_per_minute: u32,
    /// Generations running at once on this node.
    pub max_concurrent_jobs: u32,
    /// Jobs one classroom may have waiting for a generation slot.
    pub queue_per_classroom: u32,
    /// Most tokens of passages in a chat prompt (cut to the sentences nearest the
    /// question); None: what the context window leaves.
    pub chat_source_tokens: Option<usize>,
    /// How long a node may go without marking an unfinished job alive before the job is
    /// reported as failed (its node stopped).
    pub heartbeat_timeout: Duration,
}

/// Live AI jobs: the generator, the job registry, budgets, the answer cache. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AiService(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    generator: Generator,
    model_name: String,
    limits: AiLimits,
    rooms: Rooms,
    database: Database,
    library: Library,
    metrics: AiMetrics,
    rate: RateLimiter,
    budget: DailyBudget,
    cache: AnswerCache,
    /// Who generates next.
    scheduler: Scheduler,
    /// Every job's record, whichever node runs it.
    records: AiJobs,
    /// This node, as named in the records of the jobs it runs.
    node: String,
    /// The jobs running on this node: what cancels each (a cancel request or shutdown).
    // A std mutex: map operations only, never held across an await.
    local: Mutex<HashMap<String, CancellationToken>>,
    /// Whether the heartbeat task runs (started with the first job).
    heartbeat_started: AtomicBool,
    /// Other nodes, told at once when a job is cancelled (they also learn it from the
    /// job's record within a heartbeat). None on a node on its own.
    cluster: Option<Cluster>,
    /// Where `ai_job.finished` is told.
    events: Events,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

/// What the checks decided about a new job.
#[derive(Debug, Clone)]
struct Plan {
    kind: AiJobKind,
    session_id: String,
    classroom_id: String,
    /// Where the job writes.
    target: DocId,
    /// Whether `target` must be registered as a new classroom document first.
    new_document: bool,
    /// The notes document read by qa and translate.
    source: Option<DocId>,
    prompt: String,
    material_ids: Option<HashSet<String>>,
    language: Option<String>,
}

impl AiService {
    /// The service `config` describes, writing through `rooms`; rate limits, budgets and
    /// the answer cache shared through `store`. `shutdown` cancels every job.
    // Every handle the service holds, given once at start (see `AppState::build`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: &Config,
        rooms: Rooms,
        database: Database,
        library: Library,
        metrics: AiMetrics,
        store: &ClusterStore,
        events: Events,
        shutdown: CancellationToken,
    ) -> Self {
        Self::with_generator(
            Generator::from_config(config),
            config,
            rooms,
            database,
            library,
            metrics,
            store,
            events,
            shutdown,
        )
    }

    /// Like [`AiService::new`] with a given generator (benchmarks inject a backend).
    // Every handle the service holds, given once at start (see `AppState::build`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn with_generator(
        generator: Generator,
        config: &Config,
        rooms: Rooms,
        database: Database,
        library: Library,
        metrics: AiMetrics,
        store: &ClusterStore,
        events: Events,
        shutdown: CancellationToken,
    ) -> Self {
        let limits = AiLimits {
            max_tokens: config.ai_max_tokens.max(1),
            context_tokens: usize::try_from(config.ai_context_tokens).unwrap_or(usize::MAX),
            relevance_floor: config.ai_relevance_floor,
            classroom_daily_tokens: config.ai_classroom_daily_tokens,
            jobs_per_minute: config.ai_jobs_per_minute,
            max_concurrent_jobs: config
                .ai_max_concurrent_jobs
                .unwrap_or(match config.ai_backend {
                    AiBackendKind::Local => DEFAULT_LOCAL_CONCURRENT_JOBS,
                    AiBackendKind::Openai | AiBackendKind::Off => DEFAULT_REMOTE_CONCURRENT_JOBS,
                }),
            queue_per_classroom: config.ai_queue_per_classroom,
            chat_source_tokens: match (config.ai_chat_source_tokens, &config.ai_backend) {
                (Some(tokens), _) => usize::try_from(tokens).ok(),
                (None, AiBackendKind::Local) => Some(DEFAULT_LOCAL_CHAT_SOURCE_TOKENS),
                (None, AiBackendKind::Openai | AiBackendKind::Off) => None,
            },
            heartbeat_timeout: Duration::from_millis(config.ai_job_heartbeat_timeout_ms),
        };
        let scheduler = Scheduler::new(
            usize::try_from(limits.max_concurrent_jobs).unwrap_or(usize::MAX),
            usize::try_from(limits.queue_per_classroom).unwrap_or(usize::MAX),
            metrics.jobs_waiting.clone(),
        );
        Self(Arc::new(Inner {
            model_name: generator.model_name(config),
            generator,
            rate: RateLimiter::new(
                "ai_jobs",
                limits.jobs_per_minute,
                limits.jobs_per_minute,
                store,
            ),
            budget: DailyBudget::new(limits.classroom_daily_tokens, store),
            limits,
            rooms,
            records: AiJobs::new(database.clone()),
            node: uuid::Uuid::new_v4().to_string(),
            database,
            library,
            metrics,
            cache: AnswerCache::new(guard::CACHE_ENTRIES, store),
            scheduler,
            local: Mutex::new(HashMap::new()),
            heartbeat_started: AtomicBool::new(false),
            cluster: store.cluster().cloned(),
            events,
            tracker: TaskTracker::new(),
            shutdown,
        }))
    }

    /// The generator in use.
    pub fn generator(&self) -> &Generator {
        &self.0.generator
    }

    /// Starts a job in session `session_id` for `requester`, after every check; it runs in
    /// the background and is returned `queued`.
    pub async fn start(
        &self,
        requester: &Requester,
        session_id: &str,
        request: AiJobRequest,
    ) -> Result<AiJobResponse, AiError> {
        let plan = self.plan(requester, session_id, request).await?;
        self.0
            .rate
            .check(&requester.user_id)
            .await
            .map_err(|retry_after| AiError::RateLimited { retry_after })?;
        self.0.budget.check(&plan.classroom_id).await?;
        let backend = self
            .0
            .generator
            .backend()
            .await
            .map_err(AiError::Unavailable)?;
        // Refused now rather than failed later: the embedded model returns the text
        // unchanged, which would only look like a translation.
        if plan.kind == AiJobKind::Translate && !backend.can_translate() {
            return Err(AiError::Unsupported(format!(
                "this server's AI model ({}) cannot translate; to translate, run the server \
                 with an OpenAI-compatible backend (--ai-backend openai with --ai-base-url \
                 and --ai-model)",
                backend.name()
            )));
        }
        let job_id = uuid::Uuid::new_v4().to_string();
        // Its place in line is taken now, so a full line is refused before anything is
        // created, and its position is known from the first answer.
        let ticket = self
            .0
            .scheduler
            .join(&plan.classroom_id, &job_id)
            .map_err(|full| AiError::QueueFull {
                limit: full.limit,
                retry_after: QUEUE_FULL_RETRY_AFTER,
            })?;
        if plan.new_document {
            Sessions::new(self.0.database.clone())
                .create_template(plan.target.as_str(), &plan.classroom_id, now())
                .await?;
        }
        let record = AiJobRecord {
            id: job_id.clone(),
            kind: plan.kind.as_str().to_owned(),
            session_id: plan.session_id.clone(),
            classroom_id: plan.classroom_id.clone(),
            doc_id: plan.target.as_str().to_owned(),
            status: JobStatus::Queued,
            error: None,
            cached: false,
            prompt_tokens: 0,
            completion_tokens: 0,
            started_by: requester.user_id.clone(),
            created_at: now(),
            finished_at: None,
            node: self.0.node.clone(),
            heartbeat_at_ms: now_ms(),
            cancel_requested: false,
        };
        self.0.records.insert(&record).await?;
        let cancel = self.0.shutdown.child_token();
        self.0
            .local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(job_id.clone(), cancel.clone());
        self.start_heartbeat();
        let response = self.view(record).await?;
        let kind = plan.kind.as_str();
        self.0
            .metrics
            .jobs_started
            .get_or_create(&vec![("kind", kind)])
            .inc();
        let job = run::Job {
            service: self.clone(),
            job_id: job_id.clone(),
            cancel,
            plan,
            backend,
            requester: requester.user_id.clone(),
            ticket,
        };
        let span = tracing::info_span!("ai_job", job_id = %job_id, kind);
        self.0.tracker.spawn(job.run().instrument(span));
        Ok(response)
    }

    /// Job `job_id` as `requester` may see it: the one who started it, faculty of its
    /// classroom and admins.
    /// Works for jobs of any node, and for jobs whose node is gone.
    pub async fn get(&self, requester: &Requester, job_id: &str) -> Result<AiJobResponse, AiError> {
        let record = self.visible(requester, job_id).await?;
        self.view(record).await
    }

    /// Cancels job `job_id` (idempotent; a finished job stays as it ended), whichever node
    /// runs it: here at once, elsewhere at that node's next heartbeat. What it wrote so far
    /// stays in the document. Answers the job as it was when the cancel was asked.
    pub async fn cancel(
        &self,
        requester: &Requester,
        job_id: &str,
    ) -> Result<AiJobResponse, AiError> {
        let record = self.visible(requester, job_id).await?;
        if !record.status.is_final() {
            self.0.records.request_cancel(job_id).await?;
            self.cancel_local(job_id);
            if let Some(cluster) = &self.0.cluster {
                cluster.publish(ClusterEvent::AiJobCancelled {
                    job_id: job_id.to_owned(),
                });
            }
        }
        self.view(record).await
    }

    /// Cancels job `job_id` if it runs on this node (no-op otherwise): its task stops and
    /// records the cancellation. Also for cancel requests arriving from other nodes.
    pub(crate) fn cancel_local(&self, job_id: &str) {
        let token = self
            .0
            .local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(job_id)
            .cloned();
        if let Some(token) = token {
            token.cancel();
            // Out of line at once, so the jobs behind it move up now, not when its task
            // wakes.
            self.0.scheduler.remove(job_id);
        }
    }

    /// Cancels every job and waits (bounded) for them to record it in their documents.
    /// Call before the rooms shut down.
    pub async fn shutdown(&self) {
        self.0.shutdown.cancel();
        self.0.tracker.close();
        if tokio::time::timeout(SHUTDOWN_WAIT, self.0.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some AI jobs did not stop in time");
        }
    }

    /// Tracks a task that belongs to the AI service (a WebSocket AI request being
    /// answered), so shutdown waits for it.
    pub(crate) fn spawn_owned(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.0.tracker.spawn(task);
    }

    /// A token cancelled when the service shuts down.
    pub(crate) fn shutdown_token(&self) -> CancellationToken {
        self.0.shutdown.clone()
    }

    /// What clients see of job `record`: the record, failed if its node is gone, and its
    /// place in line while it waits here.
    async fn view(&self, record: AiJobRecord) -> Result<AiJobResponse, AiError> {
        let local = self
            .0
            .local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&record.id);
        let record = if local || record.status.is_final() {
            record
        } else {
            self.unless_lost(record).await?
        };
        let mut job = response(&record)?;
        if local && job.status == AiJobStatus::Queued {
            job.queue_position = self
                .0
                .scheduler
                .position(&job.job_id)
                .map(|position| u32::try_from(position).unwrap_or(u32::MAX));
        }
        Ok(job)
    }

    /// `record` (a job of another node, unfinished), or the job failed as interrupted when
    /// its node has been silent too long: then the record says so too, for every reader.
    async fn unless_lost(&self, record: AiJobRecord) -> Result<AiJobRecord, AiError> {
        let timeout =
            i64::try_from(self.0.limits.heartbeat_timeout.as_millis()).unwrap_or(i64::MAX);
        let stale_before = now_ms().saturating_sub(timeout);
        if record.heartbeat_at_ms >= stale_before {
            return Ok(record);
        }
        let records = &self.0.records;
        if let Some(failed) = records
            .interrupt_if_stale(&record.id, stale_before, INTERRUPTED, now())
            .await?
        {
            tracing::info!(job_id = %record.id, node = %record.node, "AI job lost its node");
            self.announce_end(&failed).await;
            return Ok(failed);
        }
        // It changed meanwhile (a heartbeat, its end): read it as it is now.
        Ok(records.get(&record.id).await?.unwrap_or(record))
    }

    /// Records that job `job_id` moved to a running status. A failure is logged: the job
    /// goes on, and its end is recorded separately.
    async fn record_status(&self, job_id: &str, status: JobStatus) {
        if let Err(error) = self.0.records.set_status(job_id, status).await {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "could not record the job's status"
            );
        }
    }

    /// Records how job `job_id` ended. Called before the end is written into the document:
    /// anyone who sees the end there and then asks for the job's status finds it ended.
    async fn record_end(
        &self,
        job_id: &str,
        status: AiJobStatus,
        error: Option<&str>,
        usage: JobUsage,
    ) {
        let recorded = self
            .0
            .records
            .finish(job_id, stored_status(status), error, usage, now())
            .await;
        match recorded {
            Ok(true) => match self.0.records.get(job_id).await {
                Ok(Some(record)) => self.announce_end(&record).await,
                Ok(None) => {}
                Err(error) => tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "could not read the ended job for its event"
                ),
            },
            // Another end was recorded first (and announced by whoever recorded it).
            Ok(false) => {}
            Err(error) => {
                // Its heartbeat stops with it, so readers report it interrupted in time.
                tracing::error!(
                    error = &error as &dyn std::error::Error,
                    "could not record the job's end"
                );
            }
        }
    }

    /// Emits `ai_job.finished` for a job whose end was just recorded.
    async fn announce_end(&self, record: &AiJobRecord) {
        self.0
            .events
            .emit(Event::AiJobFinished {
                classroom_id: record.classroom_id.clone(),
                session_id: record.session_id.clone(),
                job_id: record.id.clone(),
                kind: record.kind.clone(),
                requested_by: record.started_by.clone(),
                status: record.status.as_str().to_owned(),
                doc_id: record.doc_id.clone(),
            })
            .await;
    }

    /// Forgets job `job_id` as running here (its task is over).
    fn forget_local(&self, job_id: &str) {
        self.0
            .local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(job_id);
    }

    /// Starts the node's heartbeat task, once.
    fn start_heartbeat(&self) {
        if self.0.heartbeat_started.swap(true, Ordering::AcqRel) {
            return;
        }
        // A weak handle: the task must not keep the service alive by itself.
        let service = Arc::downgrade(&self.0);
        let shutdown = self.0.shutdown.clone();
        let span = tracing::info_span!("ai_heartbeat", node = %self.0.node);
        self.0
            .tracker
            .spawn(heartbeat(service, shutdown).instrument(span));
    }

    /// One heartbeat: marks every local job alive and cancels those someone asked to
    /// cancel through another node; one statement for all of them.
    async fn beat(&self) {
        let ids: Vec<String> = self
            .0
            .local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        if ids.is_empty() {
            return;
        }
        match self.0.records.heartbeat(&ids, now_ms()).await {
            Ok(cancelled) => {
                for job_id in cancelled {
                    self.cancel_local(&job_id);
                }
            }
            Err(error) => tracing::warn!(
                error = &error as &dyn std::error::Error,
                "could not mark the AI jobs alive"
            ),
        }
    }

    /// Deletes the records of jobs that ended long ago, and of jobs whose node went silent
    /// as long ago and nobody read since.
    async fn prune(&self) {
        let finished_before = now().saturating_sub(FINISHED_JOB_TTL_SECS);
        let silent_before_ms = now_ms().saturating_sub(FINISHED_JOB_TTL_SECS * 1000);
        match self
            .0
            .records
            .prune(finished_before, silent_before_ms)
            .await
        {
            Ok(0) => {}
            Ok(pruned) => tracing::debug!(pruned, "old AI job records deleted"),
            Err(error) => tracing::warn!(
                error = &error as &dyn std::error::Error,
                "could not delete old AI job records"
            ),
        }
    }

    async fn visible(&self, requester: &Requester, job_id: &str) -> Result<AiJobRecord, AiError> {
        let record = self.0.records.get(job_id).await?.ok_or(AiError::NotFound)?;
        if requester.role == Role::Admin || record.started_by == requester.user_id {
            return Ok(record);
        }
        let role = Classrooms::new(self.0.database.clone())
            .membership(&record.classroom_id, &requester.user_id)
            .await?;
        match role {
            Some(MemberRole::Faculty) => Ok(record),
            // Members know jobs exist (they watch them in the documents); the details are
            // the starter's and faculty's. Non-members learn nothing.
            Some(MemberRole::Student) => Err(AiError::Forbidden),
            None => Err(AiError::NotFound),
        }
    }

    /// Every check that does not spend anything: the request, the session, who may start
    /// this kind, access to the documents involved, the materials.
    async fn plan(
        &self,
        requester: &Requester,
        session_id: &str,
        request: AiJobRequest,
    ) -> Result<Plan, AiError> {
        let kind = request.kind;
        let prompt = request.prompt.unwrap_or_default().trim().to_owned();
        if prompt.chars().count() > MAX_PROMPT_CHARS {
            return Err(AiError::InvalidRequest(format!(
                "prompt must be at most {MAX_PROMPT_CHARS} characters"
            )));
        }
        if matches!(kind, AiJobKind::Chat | AiJobKind::Qa) && prompt.is_empty() {
            return Err(AiError::InvalidRequest(format!(
                "a {} job needs a prompt (the question)",
                kind.as_str()
            )));
        }
        let language = request.language.map(|language| language.trim().to_owned());
        if kind == AiJobKind::Translate {
            match &language {
                Some(language)
                    if !language.is_empty() && language.chars().count() <= MAX_LANGUAGE_CHARS => {}
                _ => {
                    return Err(AiError::InvalidRequest(format!(
                        "a translate job needs a language (1 to {MAX_LANGUAGE_CHARS} characters)"
                    )));
                }
            }
        }
        if request
            .material_ids
            .as_ref()
            .is_some_and(|ids| ids.is_empty() || ids.len() > MAX_MATERIALS)
        {
            return Err(AiError::InvalidRequest(format!(
                "material_ids must list 1 to {MAX_MATERIALS} materials"
            )));
        }

        let database = &self.0.database;
        let session = Sessions::new(database.clone())
            .get(session_id)
            .await?
            .ok_or(AiError::NotFound)?;
        let membership = Classrooms::new(database.clone())
            .membership(&session.classroom_id, &requester.user_id)
            .await?;
        let faculty = requester.role == Role::Admin || membership == Some(MemberRole::Faculty);
        if membership.is_none() && requester.role != Role::Admin {
            return Err(AiError::Forbidden);
        }
        if session.state == SessionState::Ended {
            return Err(AiError::SessionEnded);
        }
        let session_doc = |name: &str| doc_id(&format!("session/{session_id}/{name}"));
        let (target, new_document) = match kind {
            AiJobKind::Chat | AiJobKind::Qa => (session_doc("chat")?, false),
            AiJobKind::Notes => (session_doc("notes")?, false),
            AiJobKind::Mindmap => (session_doc("mindmap")?, false),
            AiJobKind::Quiz
            | AiJobKind::Flashcards
            | AiJobKind::Exam
            | AiJobKind::LessonPlan
            | AiJobKind::Translate => {
                if !faculty {
                    return Err(AiError::Forbidden);
                }
                let id = format!(
                    "template/{}/ai-{}-{}",
                    session.classroom_id,
                    kind.as_str().replace('_', "-"),
                    uuid::Uuid::new_v4()
                );
                (doc_id(&id)?, true)
            }
        };
        let principal = requester.principal();
        if !new_document
            && crate::access::resolve(database, &principal, target.as_str()).await?
                != Some(Access::Write)
        {
            return Err(AiError::Forbidden);
        }
        let source = match kind {
            AiJobKind::Qa => Some(session_doc("notes")?),
            AiJobKind::Translate => {
                let source = match &request.source_doc_id {
                    Some(id) => doc_id(id).map_err(|_| AiError::NotFound)?,
                    None => session_doc("notes")?,
                };
                Some(source)
            }
            _ => None,
        };
        if let Some(source) = &source {
            let readable = crate::access::resolve(database, &principal, source.as_str()).await?;
            let same_classroom = Sessions::new(database.clone())
                .document(source.as_str())
                .await?
                .is_some_and(|entry| entry.document.classroom_id == session.classroom_id);
            if readable.is_none() || !same_classroom {
                return Err(AiError::Forbidden);
            }
        }
        let material_ids = match request.material_ids {
            None => None,
            Some(ids) => {
                let mut allowed = HashSet::new();
                for id in ids {
                    let material = self
                        .0
                        .library
                        .materials()
                        .get(&id)
                        .await?
                        .ok_or(AiError::NotFound)?;
                    if material.classroom_id != session.classroom_id {
                        return Err(AiError::Forbidden);
                    }
                    allowed.insert(id);
                }
                Some(allowed)
            }
        };
        Ok(Plan {
            kind,
            session_id: session.id,
            classroom_id: session.classroom_id,
            target,
            new_document,
            source,
            prompt,
            material_ids,
            language,
        })
    }

    /// Records the tokens a finished generation used against its classroom's budget.
    async fn charge(&self, classroom_id: &str, usage: Usage) {
        self.0
            .budget
            .charge(
                classroom_id,
                u64::from(usage.prompt_tokens) + u64::from(usage.completion_tokens),
            )
            .await;
    }
}

/// A server-made document id (always valid; the error is defensive).
fn doc_id(name: &str) -> Result<DocId, AiError> {
    DocId::new(name).map_err(|_| AiError::InvalidRequest(format!("invalid document id {name:?}")))
}

fn now() -> i64 {
    i64::try_from(now_secs()).unwrap_or(i64::MAX)
}

/// Now in Unix milliseconds (heartbeats).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// The node's heartbeat, every [`HEARTBEAT_INTERVAL`] until shutdown or until the service
/// is gone; prunes old records now and then.
async fn heartbeat(service: Weak<Inner>, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(HEARTBEAT_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut beats: u64 = 0;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let Some(inner) = service.upgrade() else {
            return;
        };
        let service = AiService(inner);
        service.beat().await;
        if beats.is_multiple_of(PRUNE_EVERY_BEATS) {
            service.prune().await;
        }
        beats = beats.wrapping_add(1);
    }
}

/// What clients see of a stored job (without its place in line).
fn response(record: &AiJobRecord) -> Result<AiJobResponse, AiError> {
    let kind = AiJobKind::ALL
        .into_iter()
        .find(|kind| kind.as_str() == record.kind)
        .ok_or_else(|| AiError::Database(DbError::UnknownAiJobValue(record.kind.clone())))?;
    Ok(AiJobResponse {
        job_id: record.id.clone(),
        kind,
        session_id: record.session_id.clone(),
        doc_id: record.doc_id.clone(),
        status: wire_status(record.status),
        error: record.error.clone(),
        cached: record.cached,
        prompt_tokens: record.prompt_tokens,
        completion_tokens: record.completion_tokens,
        started_by: record.started_by.clone(),
        created_at: record.created_at,
        finished_at: record.finished_at,
        queue_position: None,
    })
}

fn wire_status(status: JobStatus) -> AiJobStatus {
    match status {
        JobStatus::Queued => AiJobStatus::Queued,
        JobStatus::Streaming => AiJobStatus::Streaming,
        JobStatus::Done => AiJobStatus::Done,
        JobStatus::Failed => AiJobStatus::Failed,
        JobStatus::Cancelled => AiJobStatus::Cancelled,
    }
}

fn stored_status(status: AiJobStatus) -> JobStatus {
    match status {
        AiJobStatus::Queued => JobStatus::Queued,
        AiJobStatus::Streaming => JobStatus::Streaming,
        AiJobStatus::Done => JobStatus::Done,
        AiJobStatus::Failed => JobStatus::Failed,
        AiJobStatus::Cancelled => JobStatus::Cancelled,
    }
}
