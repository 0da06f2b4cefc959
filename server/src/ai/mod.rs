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
//! - `guard.rs`: the per-classroom daily token budget and the answer cache.
//! - `queue.rs`: the generation slots (`--ai-max-concurrent-jobs`) and the fair line of
//!   jobs waiting for one, round-robin across classrooms.
//! - `control.rs`: the WebSocket control message carrying AI requests (sans-IO codec).
//! - `metrics.rs`: Prometheus metrics (time to first token, tokens, tokens/s, errors).
//! - this file: [`AiService`], the handle in `AppState`: checks (who may start what,
//!   budget, rate limit, availability), the job registry, cancellation and shutdown.
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

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use lectern_ai::backend::Usage;
use lectern_collab::{DocId, RoomError, Rooms};
use lectern_db::accounts::Role;
use lectern_db::classrooms::MemberRole;
use lectern_db::sessions::SessionState;
use lectern_db::{Classrooms, Database, DbError, Sessions};

use crate::access::{Access, AccessError};
use crate::api::RateLimiter;
use crate::api::dto::{AiJobKind, AiJobRequest, AiJobResponse, AiJobStatus};
use crate::auth::{Origin, Principal, now_secs};
use crate::config::{AiBackendKind, Config};
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
const FINISHED_JOB_TTL_SECS: u64 = 3600;
/// Above this many registered jobs, finished ones past their TTL are dropped.
const PRUNE_ABOVE: usize = 1000;
/// How long shutdown waits for jobs to record their cancellation.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);
/// Generations at once by default with the local model: one model instance computes on one
/// core, so a second generation only halves the speed of both.
const DEFAULT_LOCAL_CONCURRENT_JOBS: u32 = 1;
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
    /// Tokens per classroom per UTC day; 0: unlimited.
    pub classroom_daily_tokens: u64,
    /// Jobs per user per minute.
    pub jobs_per_minute: u32,
    /// Generations running at once on this node.
    pub max_concurrent_jobs: u32,
    /// Jobs one classroom may have waiting for a generation slot.
    pub queue_per_classroom: u32,
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
    // A std mutex: map operations only, never held across an await.
    jobs: Mutex<HashMap<String, Arc<JobEntry>>>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

/// One registered job.
#[derive(Debug)]
struct JobEntry {
    /// Fires to cancel it (cancel request or shutdown).
    cancel: CancellationToken,
    /// The classroom it runs in (for authorization of status and cancel).
    classroom_id: String,
    /// What clients see.
    info: Mutex<AiJobResponse>,
}

impl JobEntry {
    fn snapshot(&self) -> AiJobResponse {
        self.info
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn update(&self, change: impl FnOnce(&mut AiJobResponse)) {
        change(&mut self.info.lock().unwrap_or_else(PoisonError::into_inner));
    }
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
    /// The service `config` describes, writing through `rooms`. `shutdown` cancels every job.
    pub fn new(
        config: &Config,
        rooms: Rooms,
        database: Database,
        library: Library,
        metrics: AiMetrics,
        shutdown: CancellationToken,
    ) -> Self {
        Self::with_generator(
            Generator::from_config(config),
            config,
            rooms,
            database,
            library,
            metrics,
            shutdown,
        )
    }

    /// Like [`AiService::new`] with a given generator (benchmarks inject a backend).
    pub fn with_generator(
        generator: Generator,
        config: &Config,
        rooms: Rooms,
        database: Database,
        library: Library,
        metrics: AiMetrics,
        shutdown: CancellationToken,
    ) -> Self {
        let limits = AiLimits {
            max_tokens: config.ai_max_tokens.max(1),
            classroom_daily_tokens: config.ai_classroom_daily_tokens,
            jobs_per_minute: config.ai_jobs_per_minute,
            max_concurrent_jobs: config
                .ai_max_concurrent_jobs
                .unwrap_or(match config.ai_backend {
                    AiBackendKind::Local => DEFAULT_LOCAL_CONCURRENT_JOBS,
                    AiBackendKind::Openai | AiBackendKind::Off => DEFAULT_REMOTE_CONCURRENT_JOBS,
                }),
            queue_per_classroom: config.ai_queue_per_classroom,
        };
        let scheduler = Scheduler::new(
            usize::try_from(limits.max_concurrent_jobs).unwrap_or(usize::MAX),
            usize::try_from(limits.queue_per_classroom).unwrap_or(usize::MAX),
            metrics.jobs_waiting.clone(),
        );
        Self(Arc::new(Inner {
            model_name: generator.model_name(config),
            generator,
            rate: RateLimiter::new(limits.jobs_per_minute, limits.jobs_per_minute),
            budget: DailyBudget::new(limits.classroom_daily_tokens),
            limits,
            rooms,
            database,
            library,
            metrics,
            cache: AnswerCache::new(guard::CACHE_ENTRIES),
            scheduler,
            jobs: Mutex::new(HashMap::new()),
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
            .map_err(|retry_after| AiError::RateLimited { retry_after })?;
        self.0.budget.check(&plan.classroom_id)?;
        let backend = self
            .0
            .generator
            .backend()
            .await
            .map_err(AiError::Unavailable)?;
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
        let entry = Arc::new(JobEntry {
            cancel: self.0.shutdown.child_token(),
            classroom_id: plan.classroom_id.clone(),
            info: Mutex::new(AiJobResponse {
                job_id: job_id.clone(),
                kind: plan.kind,
                session_id: plan.session_id.clone(),
                doc_id: plan.target.as_str().to_owned(),
                status: AiJobStatus::Queued,
                error: None,
                cached: false,
                prompt_tokens: 0,
                completion_tokens: 0,
                started_by: requester.user_id.clone(),
                created_at: now(),
                finished_at: None,
                queue_position: None,
            }),
        });
        self.register(&job_id, entry.clone());
        let response = self.view(&entry);
        let kind = plan.kind.as_str();
        self.0
            .metrics
            .jobs_started
            .get_or_create(&vec![("kind", kind)])
            .inc();
        let job = run::Job {
            service: self.clone(),
            entry,
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
    pub async fn get(&self, requester: &Requester, job_id: &str) -> Result<AiJobResponse, AiError> {
        let entry = self.visible(requester, job_id).await?;
        Ok(self.view(&entry))
    }

    /// Cancels job `job_id` (idempotent; a finished job stays as it ended). What it wrote
    /// so far stays in the document.
    pub async fn cancel(
        &self,
        requester: &Requester,
        job_id: &str,
    ) -> Result<AiJobResponse, AiError> {
        let entry = self.visible(requester, job_id).await?;
        entry.cancel.cancel();
        // Out of line at once, so the jobs behind it move up now, not when its task wakes.
        self.0.scheduler.remove(job_id);
        Ok(self.view(&entry))
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

    /// What clients see of `entry`: its record, and its place in line while it waits.
    fn view(&self, entry: &JobEntry) -> AiJobResponse {
        let mut job = entry.snapshot();
        if job.status == AiJobStatus::Queued {
            job.queue_position = self
                .0
                .scheduler
                .position(&job.job_id)
                .map(|position| u32::try_from(position).unwrap_or(u32::MAX));
        }
        job
    }

    fn register(&self, job_id: &str, entry: Arc<JobEntry>) {
        let mut jobs = self.0.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        if jobs.len() > PRUNE_ABOVE {
            let now = now();
            jobs.retain(|_, job| {
                job.snapshot().finished_at.is_none_or(|finished| {
                    now.saturating_sub(finished) < FINISHED_JOB_TTL_SECS as i64
                })
            });
        }
        jobs.insert(job_id.to_owned(), entry);
    }

    async fn visible(&self, requester: &Requester, job_id: &str) -> Result<Arc<JobEntry>, AiError> {
        let entry = self
            .0
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(job_id)
            .cloned()
            .ok_or(AiError::NotFound)?;
        if requester.role == Role::Admin || entry.snapshot().started_by == requester.user_id {
            return Ok(entry);
        }
        let role = Classrooms::new(self.0.database.clone())
            .membership(&entry.classroom_id, &requester.user_id)
            .await?;
        match role {
            Some(MemberRole::Faculty) => Ok(entry),
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
    fn charge(&self, classroom_id: &str, usage: Usage) {
        self.0.budget.charge(
            classroom_id,
            u64::from(usage.prompt_tokens) + u64::from(usage.completion_tokens),
        );
    }
}

/// A server-made document id (always valid; the error is defensive).
fn doc_id(name: &str) -> Result<DocId, AiError> {
    DocId::new(name).map_err(|_| AiError::InvalidRequest(format!("invalid document id {name:?}")))
}

fn now() -> i64 {
    i64::try_from(now_secs()).unwrap_or(i64::MAX)
}
