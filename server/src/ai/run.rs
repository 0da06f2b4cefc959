//! What a job does, from retrieval to the last token in the document.
//!
//! Tokens are written in batches that adapt to the backend's speed: after each write
//! becomes durable, every token that arrived meanwhile goes into the next transaction. A
//! slow model therefore shows each token as it comes; a fast one does not pay one store
//! append and one broadcast per token.

use std::sync::Arc;
use std::time::Instant;

use futures_util::{FutureExt as _, StreamExt as _};
use tokio_util::sync::CancellationToken;
use yrs::types::{Attrs, ToJson as _};
use yrs::updates::decoder::Decode;
use yrs::{
    Any, Array, ArrayPrelim, ArrayRef, Doc, GetString, In, Map, MapPrelim, MapRef, Out, Text,
    TextPrelim, TextRef, Transact, TransactionMut, Update, WriteTxn,
};

use lectern_ai::backend::{
    Backend, BackendError, Event, EventStream, GenerationRequest, Message, OutputFormat, Role,
    Usage,
};
use lectern_ai::quality;
use lectern_ai::structured::{self, MindmapBuilder, ParseHints, PromptOptions, SourceExcerpt};
use lectern_collab::{DocId, RoomError, VersionReason};
use lectern_db::ai_jobs::{JobStatus, JobUsage};

use super::guard::{CacheKey, CacheKeyBuilder};
use super::peer::{AiPeer, ai_author};
use super::queue::Ticket;
use super::sources::{self, Passage};
use super::{AiService, Plan, now};
use crate::api::dto::{AiJobKind, AiJobStatus};
use crate::materials::SearchHit;

/// Root `Y.Array` of the chat document.
pub const CHAT_MESSAGES: &str = "messages";
/// Root `Y.Text` of notes documents (and of translations).
pub const NOTES_TEXT: &str = "content";
/// Root `Y.Text` into which structured kinds stream their raw output.
pub const DRAFT_TEXT: &str = "draft";
/// The formatting attribute on AI text in shared texts humans also write: `{ai: job_id}`.
pub const AI_ATTRIBUTE: &str = "ai";

/// Most tokens written in one transaction.
const MAX_BATCH_EVENTS: usize = 256;
/// Passages retrieved for chat.
const CHAT_PASSAGES: usize = 4;
/// Fewest chunks retrieved for notes, mindmaps and structured kinds; a larger context
/// window gets more (see [`sources::chunks_for_window`]).
const CONTEXT_PASSAGES: usize = 6;
/// Longest document text put into a prompt (qa, translate), in characters.
const MAX_DOC_CHARS: usize = 8000;

/// A job, owned by its task.
pub(super) struct Job {
    /// The service (registry, rooms, library, metrics, budget, cache).
    pub service: AiService,
    /// Its id (and its record's).
    pub job_id: String,
    /// Fires to cancel it (a cancel request, from any node, or shutdown).
    pub cancel: CancellationToken,
    /// What the checks decided.
    pub plan: Plan,
    /// The generator.
    pub backend: Arc<dyn Backend>,
    /// The account that started it.
    pub requester: String,
    /// Its place in line for a generation slot.
    pub ticket: Ticket,
}

/// How a job ended.
enum Outcome {
    /// It produced a usable result, in its document.
    Done {
        /// Tokens spent (zero for a cached answer).
        usage: Usage,
        /// The answer was replayed from the cache.
        cached: bool,
    },
    /// Someone cancelled it; what it wrote stays.
    Cancelled,
    /// It failed for this reason; what it wrote stays (an answer cut off by a broken
    /// connection is still worth reading).
    Failed(String),
    /// It failed for this reason and what it wrote is taken back: output judged unusable
    /// (empty, a loop, an echo, untranslated), and any failure of a structured kind, whose
    /// half-made draft students must not study from.
    Discarded(String),
}

/// Why a job stopped early.
#[derive(Debug, thiserror::Error)]
enum JobError {
    #[error("{0}")]
    Backend(#[from] BackendError),
    #[error("the document could not be written; try again")]
    Room(#[from] RoomError),
    #[error("{0}")]
    Sources(String),
}

/// What a job asks the backend, or that it need not ask.
enum Prompt {
    /// Ask the model.
    Ask {
        /// The conversation.
        messages: Vec<Message>,
        /// The passages in the prompt: `[n]` is `passages[n - 1]`.
        passages: Vec<Passage>,
        /// Where the answer is cached.
        key: CacheKey,
    },
    /// No passage of the course materials reaches the relevance floor: the answer is
    /// [`sources::NOT_COVERED`], without the model.
    NotCovered,
}

/// What retrieval found for a job's prompt.
enum Found {
    /// No material to search: none is ready (or none of the plan's `material_ids`).
    NoMaterial,
    /// Material, but no passage reaches the relevance floor.
    NotCovered,
    /// The passages for the prompt, fitted to the context window; empty when not even
    /// the best one fits next to the instructions and the answer.
    Passages(Vec<Passage>),
}

impl Found {
    /// The passages, none when there are none to give.
    fn passages(self) -> Vec<Passage> {
        match self {
            Self::Passages(passages) => passages,
            Self::NoMaterial | Self::NotCovered => Vec::new(),
        }
    }
}

/// Why a job that needs passages has none although some are relevant.
const TOO_SMALL_WINDOW: &str = "the course passages do not fit the model's context window; \
                                lower --ai-max-tokens or use a model with a larger window";

/// Where the job's text goes in the replica.
enum Sink {
    /// Its own chat message: text, status, citations.
    Message {
        message: MapRef,
        text: TextRef,
        citations: ArrayRef,
    },
    /// An anchored region at the end of a shared text, marked `{ai: job_id}`.
    Region {
        text: TextRef,
        attrs: Attrs,
        /// Where the region starts in the replica's text. The replica only ever receives
        /// the job's own appends, so everything from here on is the job's.
        start: u32,
    },
    /// The `mindmap` map, growing a node per completed outline line.
    Mindmap {
        builder: std::sync::Mutex<MindmapBuilder>,
        /// The map the document held before this job replaced it, put back if the job's
        /// own map is discarded.
        previous: Option<serde_json::Value>,
    },
}

impl Sink {
    fn append(&self, txn: &mut TransactionMut<'_>, chunk: &str) {
        match self {
            Self::Message { text, .. } => {
                let end = text.len(txn);
                text.insert(txn, end, chunk);
            }
            Self::Region { text, attrs, .. } => {
                let end = text.len(txn);
                text.insert_with_attributes(txn, end, chunk, attrs.clone());
            }
            Self::Mindmap { builder, .. } => {
                let events = builder
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(chunk);
                for event in &events {
                    structured::apply_mindmap_event(txn, event);
                }
            }
        }
    }

    /// Takes back everything the job wrote here, so the document reads as before the job:
    /// the message's text and citations (the message stays, to carry the reason), the
    /// region with its separator, or the previous mind map.
    fn retract(&self, txn: &mut TransactionMut<'_>) {
        match self {
            Self::Message {
                text, citations, ..
            } => {
                let len = text.len(txn);
                text.remove_range(txn, 0, len);
                let cited = citations.len(txn);
                citations.remove_range(txn, 0, cited);
            }
            Self::Region { text, start, .. } => {
                let end = text.len(txn);
                if end > *start {
                    text.remove_range(txn, *start, end - *start);
                }
            }
            Self::Mindmap { previous, .. } => {
                structured::reset_mindmap(txn);
                if let Some(previous) = previous {
                    structured::write_structured(txn, structured::crdt::MINDMAP_MAP, previous);
                }
            }
        }
    }

    fn finish(&self, txn: &mut TransactionMut<'_>, status: AiJobStatus, error: Option<&str>) {
        if let Self::Message { message, .. } = self {
            message.insert(txn, "status", status.as_str());
            if let Some(error) = error {
                message.insert(txn, "error", error);
            }
        }
    }

    /// Writes the citations of passages `used` (numbers from 1) of `passages`.
    fn cite(&self, txn: &mut TransactionMut<'_>, used: &[usize], passages: &[Passage]) {
        if let Self::Message { citations, .. } = self {
            for &number in used {
                if let Some(passage) = passages.get(number.wrapping_sub(1)) {
                    citations.push_back(txn, sources::citation(number, passage));
                }
            }
        }
    }
}

impl Drop for Job {
    /// However the task ends (even by a panic), the job no longer runs here: it leaves the
    /// node's heartbeat, so if its end was never recorded, readers soon report it lost.
    fn drop(&mut self) {
        self.service.forget_local(&self.job_id);
    }
}

impl Job {
    /// Runs the job to its end and records how it ended, in the registry and the document.
    pub async fn run(self) {
        let metrics = self.service.0.metrics.clone();
        metrics.jobs_running.inc();
        let accepted = Instant::now();
        let (outcome, peer, sink) = self.execute(accepted).await;
        // A job that ended before generating must not hold up the line.
        self.ticket.leave();
        // A structured kind that failed leaves no half-made quiz or map behind.
        let outcome = match outcome {
            Outcome::Failed(reason) if is_structured(self.plan.kind) => Outcome::Discarded(reason),
            outcome => outcome,
        };
        let retract = matches!(outcome, Outcome::Discarded(_));
        let (status, error, usage) = match &outcome {
            Outcome::Done { usage, cached } => (
                AiJobStatus::Done,
                None,
                JobUsage {
                    prompt_tokens: usage.prompt_tokens,
                    completion_tokens: usage.completion_tokens,
                    cached: *cached,
                },
            ),
            Outcome::Cancelled => (AiJobStatus::Cancelled, None, JobUsage::default()),
            Outcome::Failed(reason) | Outcome::Discarded(reason) => {
                metrics
                    .job_errors
                    .get_or_create(&vec![("kind", self.plan.kind.as_str())])
                    .inc();
                tracing::info!(%reason, "AI job failed");
                (
                    AiJobStatus::Failed,
                    Some(reason.clone()),
                    JobUsage::default(),
                )
            }
        };
        // The registry first: anyone who sees the end in a document and then asks for the
        // job's status must find it ended too.
        self.service
            .record_end(&self.job_id, status, error.as_deref(), usage)
            .await;
        if let Some(peer) = &peer {
            // The end in the target first, then the status (with the clock that covers it)
            // in the session's server-owned document. What is taken back goes in the same
            // update as the end, so no client sees a discarded answer marked ended.
            let mut recorded = peer
                .write(|txn| {
                    if let Some(sink) = &sink {
                        if retract {
                            sink.retract(txn);
                        }
                        sink.finish(txn, status, error.as_deref());
                    }
                })
                .await;
            if recorded.is_ok() {
                recorded = peer.put_status(status.as_str(), error.as_deref()).await;
            }
            if let Err(error) = recorded {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "could not record the job's end in its document"
                );
            }
            self.keep_version(VersionReason::AfterAiJob).await;
        }
        metrics.jobs_running.dec();
    }

    /// Keeps a version of the target document, attributed to the job. History is not
    /// worth failing a job for: a failure is logged (by `Rooms::save_version`).
    async fn keep_version(&self, reason: VersionReason) {
        let author = ai_author(&self.job_id);
        let _ = self
            .service
            .0
            .rooms
            .save_version(&self.plan.target, reason, None, Some(&author))
            .await;
    }

    /// Everything up to the end of the stream; returns the peer and sink so `run` can
    /// record the outcome in the document.
    async fn execute(&self, accepted: Instant) -> (Outcome, Option<AiPeer>, Option<Sink>) {
        let service = &self.service.0;
        let plan = &self.plan;
        if matches!(plan.kind, AiJobKind::Chat | AiJobKind::Qa)
            && let Err(error) = self.post_question().await
        {
            return (
                Outcome::Failed(JobError::from(error).to_string()),
                None,
                None,
            );
        }
        let lectern = match crate::room_effects::lectern_doc(&plan.session_id) {
            Ok(lectern) => lectern,
            Err(error) => return (Outcome::Failed(error.to_string()), None, None),
        };
        let peer = match AiPeer::join(
            &service.rooms,
            plan.target.clone(),
            lectern,
            &self.job_id,
            plan.kind.as_str(),
            &self.requester,
        )
        .await
        {
            Ok(peer) => peer,
            Err(error) => {
                return (
                    Outcome::Failed(JobError::from(error).to_string()),
                    None,
                    None,
                );
            }
        };
        let sink = match self.open_sink(&peer).await {
            Ok(sink) => sink,
            Err(error) => return (Outcome::Failed(error.to_string()), Some(peer), None),
        };
        // Record the clock past the sink, so the job's message or region is attributable
        // to it from the start (not only once the job ends). The job is `queued` in the
        // feed until it has a generation slot (`generate`).
        if let Err(error) = peer.put_status(AiJobStatus::Queued.as_str(), None).await {
            return (
                Outcome::Failed(JobError::from(error).to_string()),
                Some(peer),
                Some(sink),
            );
        }
        let outcome = self.generate(&peer, &sink, accepted).await;
        (outcome, Some(peer), Some(sink))
    }

    async fn generate(&self, peer: &AiPeer, sink: &Sink, accepted: Instant) -> Outcome {
        let cancel = self.cancel.clone();
        let (messages, passages, key) = match self.prompt().await {
            Ok(Prompt::Ask {
                messages,
                passages,
                key,
            }) => (messages, passages, key),
            Ok(Prompt::NotCovered) => return self.not_covered(peer, sink).await,
            Err(error) => return Outcome::Failed(error.to_string()),
        };
        let service = &self.service.0;
        let cached = service.cache.get(&key).await;
        let is_cached = cached.is_some();
        // Held until the generation (and any repair) is over, however it ends. A cached
        // answer replays without the model, so it gives up its place instead of waiting.
        let _slot = if is_cached {
            self.ticket.leave();
            None
        } else {
            // While it waits, the session's job feed shows its place in line.
            let waited = self
                .ticket
                .slot(&cancel, |position| async move {
                    if let Err(error) = peer.put_queued(position).await {
                        tracing::warn!(
                            error = &error as &dyn std::error::Error,
                            "could not show the job's place in line"
                        );
                    }
                })
                .await;
            match waited {
                Some(slot) => Some(slot),
                None => return Outcome::Cancelled,
            }
        };
        // The document as it was before the job writes, to go back to.
        self.keep_version(VersionReason::BeforeAiJob).await;
        if let Err(error) = peer.put_status(AiJobStatus::Streaming.as_str(), None).await {
            return Outcome::Failed(JobError::from(error).to_string());
        }
        // What the answer is judged against, before the messages go to the backend.
        let judged = Judged::new(self.plan.kind, &self.plan.prompt, &messages, &passages);
        let stream = match cached {
            Some(answer) => {
                service.metrics.cache_hits.inc();
                replay(&answer)
            }
            None => {
                let request = GenerationRequest {
                    messages,
                    max_tokens: service.limits.max_tokens,
                    temperature: 0.0,
                    top_p: 1.0,
                    // A model that starts restating the prompt's own headings is looping
                    // ("Question: …" again): the answer is over.
                    stop: match self.plan.kind {
                        AiJobKind::Chat | AiJobKind::Qa | AiJobKind::Notes => {
                            ["\nQuestion:", "\nPassages:", "\nPassage:"]
                                .map(str::to_owned)
                                .to_vec()
                        }
                        AiJobKind::Translate
                        | AiJobKind::Mindmap
                        | AiJobKind::Quiz
                        | AiJobKind::Flashcards
                        | AiJobKind::Exam
                        | AiJobKind::LessonPlan => Vec::new(),
                    },
                    // Structured kinds are decoded under their grammar (local) or asked
                    // for with their JSON Schema (API): valid by construction.
                    format: match self.plan.kind {
                        AiJobKind::Mindmap
                        | AiJobKind::Quiz
                        | AiJobKind::Flashcards
                        | AiJobKind::Exam
                        | AiJobKind::LessonPlan => {
                            structured::output_format(structured_kind(self.plan.kind))
                        }
                        AiJobKind::Chat
                        | AiJobKind::Qa
                        | AiJobKind::Notes
                        | AiJobKind::Translate => OutputFormat::Text,
                    },
                };
                let started = tokio::select! {
                    () = cancel.cancelled() => return Outcome::Cancelled,
                    started = self.backend.generate(request, cancel.clone()) => started,
                };
                match started {
                    Ok(stream) => stream,
                    Err(BackendError::Cancelled) => return Outcome::Cancelled,
                    Err(error) => return Outcome::Failed(error.to_string()),
                }
            }
        };
        let streamed = self.stream_into(peer, sink, stream, accepted).await;
        match streamed {
            Ok(Streamed {
                text,
                usage,
                tokens,
            }) => {
                if !is_cached {
                    self.service.charge(&self.plan.classroom_id, usage).await;
                }
                let hit_token_limit = tokens.max(u64::from(usage.completion_tokens))
                    >= u64::from(service.limits.max_tokens);
                if let Err(flaw) = judged.check(&text, hit_token_limit) {
                    tracing::info!(%flaw, tokens, hit_token_limit, "answer discarded");
                    return Outcome::Discarded(flaw.reason().to_owned());
                }
                if let Err(reason) = self.complete(peer, sink, &text).await {
                    return Outcome::Failed(reason);
                }
                // Only an answer that stands cites anything (a structured one, as written).
                if let Err(error) = self.cite(peer, sink, &text, &passages).await {
                    return Outcome::Failed(JobError::from(error).to_string());
                }
                // Only an answer that stands is cached, so a bad one is never replayed.
                if !is_cached {
                    service.cache.put(key, text.as_str().into()).await;
                }
                Outcome::Done {
                    usage,
                    cached: is_cached,
                }
            }
            Err(JobError::Backend(BackendError::Cancelled)) => Outcome::Cancelled,
            Err(error) => Outcome::Failed(error.to_string()),
        }
    }

    /// Once the answer stands, it cites the passages it used, and only those: a chat
    /// message by its `[n]` markers (else by shared wording); a quiz, flashcards, exam or
    /// lesson plan by the markers in the document as written, into its root map
    /// [`sources::SOURCES_MAP`] so each `[n]` opens the passage.
    async fn cite(
        &self,
        peer: &AiPeer,
        sink: &Sink,
        answer: &str,
        passages: &[Passage],
    ) -> Result<(), RoomError> {
        if passages.is_empty() {
            return Ok(());
        }
        match self.plan.kind {
            AiJobKind::Chat => {
                let used = sources::cited(answer, &self.plan.prompt, passages);
                if used.is_empty() {
                    return Ok(());
                }
                peer.write(|txn| sink.cite(txn, &used, passages)).await
            }
            AiJobKind::Quiz | AiJobKind::Flashcards | AiJobKind::Exam | AiJobKind::LessonPlan => {
                let map_name = structured_kind(self.plan.kind).map_name();
                peer.write(|txn| sources::cite_document(txn, map_name, passages))
                    .await
            }
            // Mind map labels carry no markers; notes are the class's own text; qa and
            // translate have no passages.
            AiJobKind::Mindmap | AiJobKind::Notes | AiJobKind::Qa | AiJobKind::Translate => Ok(()),
        }
    }

    /// Nothing in the course materials is relevant: says so, without the model (and
    /// without citations), and the job is done.
    async fn not_covered(&self, peer: &AiPeer, sink: &Sink) -> Outcome {
        match peer
            .write(|txn| sink.append(txn, sources::NOT_COVERED))
            .await
        {
            Ok(()) => Outcome::Done {
                usage: Usage::default(),
                cached: false,
            },
            Err(error) => Outcome::Failed(JobError::from(error).to_string()),
        }
    }

    /// Streams `stream` into the sink; returns the whole text, the usage and the tokens
    /// streamed.
    async fn stream_into(
        &self,
        peer: &AiPeer,
        sink: &Sink,
        mut stream: EventStream,
        accepted: Instant,
    ) -> Result<Streamed, JobError> {
        let metrics = &self.service.0.metrics;
        let cancel = self.cancel.clone();
        let mut text = String::new();
        let mut tokens: u64 = 0;
        let mut first_token: Option<Instant> = None;
        loop {
            let next = tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(BackendError::Cancelled.into()),
                next = stream.next() => next,
            };
            // Everything that arrived while the last batch was being made durable.
            let mut batch = String::new();
            let mut batch_tokens = 0;
            let mut end = None;
            let mut event = next;
            for _ in 0..MAX_BATCH_EVENTS {
                match event {
                    Some(Ok(Event::Token(token))) => {
                        batch.push_str(&token);
                        batch_tokens += 1;
                    }
                    Some(Ok(Event::Done(usage))) => {
                        end = Some(Ok(usage));
                        break;
                    }
                    Some(Err(error)) => {
                        end = Some(Err(error));
                        break;
                    }
                    None => {
                        end = Some(Err(BackendError::Protocol(
                            "the stream ended without finishing".into(),
                        )));
                        break;
                    }
                }
                match stream.next().now_or_never() {
                    Some(next) => event = next,
                    None => break,
                }
            }
            if !batch.is_empty() {
                peer.write(|txn| sink.append(txn, &batch)).await?;
                text.push_str(&batch);
                tokens += batch_tokens;
                metrics.tokens_generated.inc_by(batch_tokens);
                if first_token.is_none() {
                    first_token = Some(Instant::now());
                    metrics
                        .time_to_first_token_seconds
                        .observe(accepted.elapsed().as_secs_f64());
                    self.service
                        .record_status(&self.job_id, JobStatus::Streaming)
                        .await;
                }
            }
            match end {
                None => {}
                Some(Ok(usage)) => {
                    if let Some(first) = first_token {
                        let seconds = first.elapsed().as_secs_f64();
                        if seconds > 0.0 && tokens > 1 {
                            metrics.tokens_per_second.observe(tokens as f64 / seconds);
                        }
                    }
                    return Ok(Streamed {
                        text,
                        usage,
                        tokens,
                    });
                }
                Some(Err(error)) => return Err(error.into()),
            }
        }
    }

    /// After the stream: mind maps take their last line; structured kinds are parsed,
    /// validated and written, with one model-assisted repair if the output is unusable.
    async fn complete(&self, peer: &AiPeer, sink: &Sink, text: &str) -> Result<(), String> {
        let kind = self.plan.kind;
        if let Sink::Mindmap { builder, .. } = sink {
            // A root alone (the topic, which the builder shows before the model starts) is
            // no mind map.
            let (events, built) = {
                let mut builder = builder
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                (builder.finish(), builder.has_branches())
            };
            peer.write(|txn| {
                for event in &events {
                    structured::apply_mindmap_event(txn, event);
                }
            })
            .await
            .map_err(|error| JobError::from(error).to_string())?;
            if built {
                return Ok(());
            }
            // No outline branches: maybe the model answered in JSON; parse it whole.
        }
        if !matches!(
            kind,
            AiJobKind::Mindmap
                | AiJobKind::Quiz
                | AiJobKind::Flashcards
                | AiJobKind::Exam
                | AiJobKind::LessonPlan
        ) {
            return Ok(());
        }
        let structured_kind = structured_kind(kind);
        let hints = ParseHints {
            title: (!self.plan.prompt.is_empty()).then(|| self.plan.prompt.clone()),
            duration_minutes: None,
        };
        let parsed = match structured::parse(structured_kind, text, &hints) {
            Ok(parsed) => parsed,
            Err(first) => {
                tracing::info!(error = %first, "structured output unusable; one repair attempt");
                let repaired = self.repair(structured_kind, text, &first).await?;
                structured::parse(structured_kind, &repaired, &hints).map_err(|error| {
                    format!(
                        "the model's answer could not be turned into a {}: {error} (also after \
                         one repair attempt)",
                        structured_kind.label()
                    )
                })?
            }
        };
        if !parsed.repairs.is_empty() {
            tracing::info!(repairs = ?parsed.repairs, "structured output repaired");
        }
        let value = parsed.value;
        peer.write(|txn| value.write(txn))
            .await
            .map_err(|error| JobError::from(error).to_string())
    }

    /// Asks the model once to fix `bad_output`; returns its whole new answer.
    async fn repair(
        &self,
        kind: structured::Kind,
        bad_output: &str,
        error: &structured::StructuredError,
    ) -> Result<String, String> {
        let service = &self.service.0;
        let request = GenerationRequest {
            messages: structured::repair_prompt(kind, bad_output, error),
            max_tokens: service.limits.max_tokens,
            temperature: 0.0,
            top_p: 1.0,
            stop: Vec::new(),
            format: structured::output_format(kind),
        };
        let cancel = self.cancel.clone();
        let mut stream = self
            .backend
            .generate(request, cancel)
            .await
            .map_err(|error| format!("the repair attempt failed: {error}"))?;
        let mut text = String::new();
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::Token(token)) => text.push_str(&token),
                Ok(Event::Done(usage)) => {
                    self.service.charge(&self.plan.classroom_id, usage).await;
                    return Ok(text);
                }
                Err(error) => return Err(format!("the repair attempt failed: {error}")),
            }
        }
        Err("the repair attempt ended without an answer".into())
    }

    /// Chat and qa: the user's question goes into the chat first, as the server (not the
    /// AI), so the answer that follows reads as a reply to it.
    async fn post_question(&self) -> Result<(), RoomError> {
        let job_id = self.job_id.clone();
        let question = self.plan.prompt.clone();
        let author = self.requester.clone();
        let created_at = now();
        // The question is the user's contribution, not the AI's.
        let user = crate::credentials::user_tag(&self.requester);
        self.service
            .0
            .rooms
            .edit(&self.plan.target, &user, move |txn| {
                let messages = txn.get_or_insert_array(CHAT_MESSAGES);
                let message: MapPrelim = MapPrelim::from_iter([
                    ("id", In::from(format!("{job_id}-question"))),
                    ("role", In::from("user")),
                    ("author", In::from(author.as_str())),
                    ("text", In::from(TextPrelim::new(question.as_str()))),
                    ("citations", In::from(ArrayPrelim::default())),
                    ("status", In::from("done")),
                    ("job_id", In::from(job_id.as_str())),
                    ("created_at", In::from(created_at)),
                ]);
                messages.push_back(txn, message);
            })
            .await
    }

    /// Creates where the job writes, in the replica (shipped at once, so the class sees a
    /// placeholder before the first token).
    async fn open_sink(&self, peer: &AiPeer) -> Result<Sink, JobError> {
        let job_id = self.job_id.clone();
        let kind = self.plan.kind;
        let sink = peer
            .write(|txn| match kind {
                AiJobKind::Chat | AiJobKind::Qa => {
                    let messages = txn.get_or_insert_array(CHAT_MESSAGES);
                    let message = messages.push_back(
                        txn,
                        MapPrelim::from_iter([
                            ("id", In::from(job_id.as_str())),
                            ("role", In::from("assistant")),
                            ("author", In::from("ai")),
                            ("text", In::from(TextPrelim::new(""))),
                            ("citations", In::from(ArrayPrelim::default())),
                            ("status", In::from(AiJobStatus::Streaming.as_str())),
                            ("job_id", In::from(job_id.as_str())),
                            ("reply_to", In::from(format!("{job_id}-question"))),
                            ("created_at", In::from(now())),
                        ]),
                    );
                    let text = match message.get(txn, "text") {
                        Some(Out::YText(text)) => Some(text),
                        _ => None,
                    };
                    let citations = match message.get(txn, "citations") {
                        Some(Out::YArray(array)) => Some(array),
                        _ => None,
                    };
                    text.zip(citations).map(|(text, citations)| Sink::Message {
                        message,
                        text,
                        citations,
                    })
                }
                AiJobKind::Mindmap => {
                    // One map per document: a new mind map replaces the previous one, which
                    // is kept to be put back if this one is discarded.
                    let old = txn.get_or_insert_map(structured::crdt::MINDMAP_MAP);
                    let previous = (old.len(txn) > 0)
                        .then(|| serde_json::to_value(old.to_json(txn)).ok())
                        .flatten();
                    structured::reset_mindmap(txn);
                    let builder = if self.plan.prompt.is_empty() {
                        MindmapBuilder::new()
                    } else {
                        MindmapBuilder::with_root(&self.plan.prompt)
                    };
                    Some(Sink::Mindmap {
                        builder: std::sync::Mutex::new(builder),
                        previous,
                    })
                }
                _ => {
                    let root = match kind {
                        AiJobKind::Notes | AiJobKind::Translate => NOTES_TEXT,
                        _ => DRAFT_TEXT,
                    };
                    let text = txn.get_or_insert_text(root);
                    let start = text.len(txn);
                    let attrs = Attrs::from([(AI_ATTRIBUTE.into(), Any::from(job_id.as_str()))]);
                    // Start the region on a fresh paragraph of its own.
                    let existing = text.get_string(txn);
                    if !existing.is_empty() && !existing.ends_with("\n\n") {
                        let separator = if existing.ends_with('\n') {
                            "\n"
                        } else {
                            "\n\n"
                        };
                        let end = text.len(txn);
                        text.insert_with_attributes(txn, end, separator, attrs.clone());
                    }
                    Some(Sink::Region { text, attrs, start })
                }
            })
            .await?;
        sink.ok_or_else(|| JobError::Sources("the message could not be created".into()))
    }

    /// What to ask the backend (the conversation, the passages it may cite, the cache key),
    /// or that the course materials do not cover the request.
    async fn prompt(&self) -> Result<Prompt, JobError> {
        let plan = &self.plan;
        let service = &self.service.0;
        let mut key = CacheKeyBuilder::default()
            .part(plan.kind.as_str())
            .part(&service.model_name)
            .part(&service.limits.max_tokens.to_string());
        let (system, user, passages) = match plan.kind {
            AiJobKind::Chat => {
                let system = "You are a teaching assistant. Answer the question using only the \
                              numbered passages. Cite the passages you use by number in square \
                              brackets, like [1]. If the passages do not contain the answer, say \
                              so briefly."
                    .to_owned();
                let question = format!("Question: {}", plan.prompt);
                let found = self
                    .sources(
                        &plan.prompt,
                        CHAT_PASSAGES,
                        true,
                        vec![system.clone(), format!("Passages:\n\n{question}")],
                        service.limits.chat_source_tokens,
                    )
                    .await?;
                let passages = match found {
                    Found::NoMaterial => {
                        return Err(JobError::Sources(
                            "no course material is ready to answer from; upload some first".into(),
                        ));
                    }
                    Found::NotCovered => return Ok(Prompt::NotCovered),
                    Found::Passages(passages) if passages.is_empty() => {
                        return Err(JobError::Sources(TOO_SMALL_WINDOW.into()));
                    }
                    Found::Passages(passages) => passages,
                };
                let user = format!("Passages:\n{}\n{question}", sources::numbered(&passages));
                (system, user, passages)
            }
            AiJobKind::Notes => {
                let system = "You write concise study notes for students in Markdown: short \
                              headings and bullet points, only facts from the passages."
                    .to_owned();
                let task = format!(
                    "Write study notes{}.",
                    if plan.prompt.is_empty() {
                        String::new()
                    } else {
                        format!(" about: {}", plan.prompt)
                    }
                );
                let query = or_default(&plan.prompt, "key ideas, definitions and examples");
                // A topic must be covered; without one, the best passages there are will do.
                let floored = !plan.prompt.is_empty();
                let found = self
                    .sources(
                        query,
                        self.context_chunks(),
                        floored,
                        vec![system.clone(), format!("Passages:\n\n{task}")],
                        None,
                    )
                    .await?;
                let passages = match found {
                    Found::NoMaterial => {
                        return Err(JobError::Sources(
                            "no course material is ready to take notes from; upload some first"
                                .into(),
                        ));
                    }
                    Found::NotCovered => return Ok(Prompt::NotCovered),
                    Found::Passages(passages) if passages.is_empty() => {
                        return Err(JobError::Sources(TOO_SMALL_WINDOW.into()));
                    }
                    Found::Passages(passages) => passages,
                };
                let user = format!("Passages:\n{}\n{task}", sources::numbered(&passages));
                (system, user, passages)
            }
            AiJobKind::Qa => {
                let notes = self.document_text(NOTES_TEXT).await?;
                if notes.trim().is_empty() {
                    return Err(JobError::Sources(
                        "the session notes are empty; there is nothing to answer from".into(),
                    ));
                }
                key = key.part(&notes);
                (
                    "You are a teaching assistant. Answer the question using only the class \
                     notes. If the notes do not contain the answer, say so briefly."
                        .to_owned(),
                    format!("Class notes:\n{notes}\n\nQuestion: {}", plan.prompt),
                    Vec::new(),
                )
            }
            AiJobKind::Translate => {
                let text = self.document_text(NOTES_TEXT).await?;
                if text.trim().is_empty() {
                    return Err(JobError::Sources(
                        "the document to translate is empty".into(),
                    ));
                }
                key = key.part(&text);
                let language = plan.language.as_deref().unwrap_or("English");
                (
                    format!(
                        "You are a translator. Translate the user's text into {language}. Keep the \
                         Markdown structure. Answer with the translation only."
                    ),
                    text,
                    Vec::new(),
                )
            }
            AiJobKind::Mindmap
            | AiJobKind::Quiz
            | AiJobKind::Flashcards
            | AiJobKind::Exam
            | AiJobKind::LessonPlan => {
                let kind = structured_kind(plan.kind);
                let topic = or_default(&plan.prompt, "the course material");
                let query = or_default(&plan.prompt, "key ideas, definitions and examples");
                // The instructions without sources take about what they take with them.
                let instructions =
                    structured::messages(kind, topic, &[], &PromptOptions::default())
                        .into_iter()
                        .map(|message| message.content)
                        .collect();
                // Without relevant material the model may use general knowledge (the prompt
                // says so).
                let floored = !plan.prompt.is_empty();
                let passages = self
                    .sources(query, self.context_chunks(), floored, instructions, None)
                    .await?
                    .passages();
                let excerpts: Vec<SourceExcerpt> = passages
                    .iter()
                    .enumerate()
                    .map(|(index, passage)| SourceExcerpt {
                        label: format!("[{}] {}", index + 1, passage.place()),
                        text: passage.text.clone(),
                    })
                    .collect();
                // The passages were fitted to the window already: nothing more to cut.
                let options = PromptOptions {
                    max_source_chars: excerpts
                        .iter()
                        .map(|excerpt| excerpt.text.chars().count() + 100)
                        .sum(),
                    ..PromptOptions::default()
                };
                let messages = structured::messages(kind, topic, &excerpts, &options);
                for passage in &passages {
                    key = key
                        .part(&passage.material_id)
                        .part(&format!("{}-{}", passage.ordinals.0, passage.ordinals.1));
                }
                for message in &messages {
                    key = key.part(&message.content);
                }
                return Ok(Prompt::Ask {
                    messages,
                    passages,
                    key: key.finish(),
                });
            }
        };
        for passage in &passages {
            key = key
                .part(&passage.material_id)
                .part(&format!("{}-{}", passage.ordinals.0, passage.ordinals.1));
        }
        let messages = vec![
            Message {
                role: Role::System,
                content: system,
            },
            Message {
                role: Role::User,
                content: user,
            },
        ];
        for message in &messages {
            key = key.part(&message.content);
        }
        Ok(Prompt::Ask {
            messages,
            passages,
            key: key.finish(),
        })
    }

    /// The passages for `query`: the `k` best chunks, those below the relevance floor
    /// dropped when `floored`, neighbours merged, cut to their sentences nearest `query`
    /// when `condensed_to` sets a number of tokens, fitted to what the backend's context
    /// window leaves after `instructions` and the answer.
    async fn sources(
        &self,
        query: &str,
        k: usize,
        floored: bool,
        instructions: Vec<String>,
        condensed_to: Option<usize>,
    ) -> Result<Found, JobError> {
        let service = &self.service.0;
        let hits = self.retrieve(query, k).await?;
        if hits.is_empty() {
            return Ok(Found::NoMaterial);
        }
        let floor = floored.then_some(service.limits.relevance_floor);
        let passages = sources::passages(&hits, floor);
        if passages.is_empty() {
            return Ok(Found::NotCovered);
        }
        let counter = sources::Counter::new(&self.backend);
        let (context, max_tokens) = self.window();
        let query = query.to_owned();
        // Counting may tokenise (the local model): off the reactor.
        let fitted = tokio::task::spawn_blocking(move || {
            let passages = match condensed_to {
                Some(tokens) => sources::condense(passages, &query, tokens, &counter),
                None => passages,
            };
            let instructions: Vec<&str> = instructions.iter().map(String::as_str).collect();
            let budget = sources::source_budget(&counter, context, max_tokens, &instructions);
            sources::fit(passages, budget, &counter)
        })
        .await
        .map_err(|error| JobError::Sources(format!("fitting the passages failed: {error}")))?;
        Ok(Found::Passages(fitted))
    }

    /// The backend's context window and the longest answer, in tokens.
    fn window(&self) -> (usize, usize) {
        let limits = &self.service.0.limits;
        let context = self
            .backend
            .context_tokens()
            .unwrap_or(limits.context_tokens);
        let max_tokens = usize::try_from(limits.max_tokens).unwrap_or(usize::MAX);
        (context, max_tokens)
    }

    /// How many chunks notes, mind maps and structured kinds retrieve: enough to fill
    /// what the window leaves for sources, so a large API model sees much of the course.
    fn context_chunks(&self) -> usize {
        let (context, max_tokens) = self.window();
        sources::chunks_for_window(context, max_tokens).max(CONTEXT_PASSAGES)
    }

    async fn retrieve(&self, query: &str, k: usize) -> Result<Vec<SearchHit>, JobError> {
        self.service
            .0
            .library
            .search(
                &self.plan.classroom_id,
                query,
                self.plan.material_ids.clone(),
                k,
            )
            .await
            .map_err(|error| {
                JobError::Sources(format!("retrieving course material failed: {error}"))
            })
    }

    /// The current text of the plan's source document (root `root`), cut to what a prompt
    /// holds (the end: the most recent notes).
    async fn document_text(&self, root: &str) -> Result<String, JobError> {
        let Some(source) = &self.plan.source else {
            return Ok(String::new());
        };
        read_text(&self.service, source, root).await
    }
}

/// The text of `root` in `doc`, at most [`MAX_DOC_CHARS`] (the end).
async fn read_text(service: &AiService, doc: &DocId, root: &str) -> Result<String, JobError> {
    let state = service.0.rooms.encode_state(doc).await?;
    let replica = Doc::new();
    let text = replica.get_or_insert_text(root);
    let update = Update::decode_v1(&state).map_err(RoomError::InvalidUpdate)?;
    let mut txn = replica.transact_mut();
    txn.apply_update(update).map_err(|error| {
        JobError::Sources(format!("the source document is unreadable: {error}"))
    })?;
    let whole = text.get_string(&txn);
    let skip = whole.chars().count().saturating_sub(MAX_DOC_CHARS);
    Ok(whole.chars().skip(skip).collect())
}

/// A cached answer as a stream, in word-sized pieces, so it reaches the document the same
/// way a generated one does.
fn replay(answer: &str) -> EventStream {
    let mut events: Vec<Result<Event, BackendError>> = answer
        .split_inclusive(char::is_whitespace)
        .map(|piece| Ok(Event::Token(piece.to_owned())))
        .collect();
    events.push(Ok(Event::Done(Usage::default())));
    Box::pin(futures_util::stream::iter(events))
}

/// What a finished answer was generated from, to judge it by (`lectern_ai::quality`).
struct Judged {
    /// The system prompt and the user's own request.
    instructions: Vec<String>,
    /// What the answer may quote: the passages, or the class notes for qa.
    material: Vec<String>,
    /// For a translation, the text translated.
    translated_from: Option<String>,
    /// Whether to judge at all: structured kinds are judged by their validation instead.
    judged: bool,
}

impl Judged {
    /// The context of a `kind` job asked `prompt` with `messages` (system first, the user's
    /// message last) over `passages`.
    fn new(kind: AiJobKind, prompt: &str, messages: &[Message], passages: &[Passage]) -> Self {
        let system = messages
            .iter()
            .filter(|message| message.role == Role::System)
            .map(|message| message.content.clone());
        let user = messages
            .iter()
            .rev()
            .find(|message| message.role == Role::User)
            .map(|message| message.content.clone())
            .unwrap_or_default();
        let mut judged = Self {
            instructions: system.collect(),
            material: passages
                .iter()
                .map(|passage| passage.text.clone())
                .collect(),
            translated_from: None,
            judged: !is_structured(kind),
        };
        match kind {
            // The user's message holds the notes (qa) or the text (translate), not only the
            // request: quoting it is not an echo of the instructions.
            AiJobKind::Qa => judged.material.push(user),
            AiJobKind::Translate => judged.translated_from = Some(user),
            _ => {}
        }
        if !prompt.is_empty() {
            judged.instructions.push(prompt.to_owned());
        }
        judged
    }

    fn check(&self, answer: &str, hit_token_limit: bool) -> Result<(), quality::Flaw> {
        if !self.judged {
            return Ok(());
        }
        let instructions: Vec<&str> = self.instructions.iter().map(String::as_str).collect();
        let material: Vec<&str> = self.material.iter().map(String::as_str).collect();
        quality::check(
            answer,
            &quality::Context {
                instructions: &instructions,
                material: &material,
                translated_from: self.translated_from.as_deref(),
                hit_token_limit,
            },
        )
    }
}

/// What a stream left once it ended.
struct Streamed {
    /// The whole text.
    text: String,
    /// The usage the backend reported.
    usage: Usage,
    /// Tokens streamed (what the backend sent, whatever it reported).
    tokens: u64,
}

/// Whether `kind` is parsed into a structured value (and may not leave a draft behind).
fn is_structured(kind: AiJobKind) -> bool {
    match kind {
        AiJobKind::Mindmap
        | AiJobKind::Quiz
        | AiJobKind::Flashcards
        | AiJobKind::Exam
        | AiJobKind::LessonPlan => true,
        AiJobKind::Chat | AiJobKind::Notes | AiJobKind::Qa | AiJobKind::Translate => false,
    }
}

/// The structured helper's kind for a structured job kind.
fn structured_kind(kind: AiJobKind) -> structured::Kind {
    match kind {
        AiJobKind::Quiz => structured::Kind::Quiz,
        AiJobKind::Flashcards => structured::Kind::Flashcards,
        AiJobKind::Exam => structured::Kind::Exam,
        AiJobKind::LessonPlan => structured::Kind::LessonPlan,
        // Only called for structured kinds; the mind map is the remaining one.
        AiJobKind::Mindmap
        | AiJobKind::Chat
        | AiJobKind::Notes
        | AiJobKind::Qa
        | AiJobKind::Translate => structured::Kind::Mindmap,
    }
}

fn or_default<'a>(text: &'a str, default: &'a str) -> &'a str {
    if text.is_empty() { default } else { text }
}
