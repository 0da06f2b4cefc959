//! The ONNX decoder: one forward pass over new tokens, extending a KV cache.
//!
//! The converted graph (see `scripts/convert_smollm2.py`) takes the new tokens, an attention
//! mask over everything seen so far, their positions and the keys/values of every earlier
//! token (`past_key_values.{i}.key|value`); it returns the logits of the *last* new token
//! and the extended keys/values (`present.*`). [`KvCache`] keeps those outputs as ONNX
//! Runtime values and feeds them straight back, so each decoding step computes one token.
//!
//! # Sharing one session
//! Every generation has its own thread and cache but one model, taken one forward pass at a
//! time: decode steps run on one core (1 intra-op thread), prompt chunks on two (a second
//! session, [`PREFILL_THREADS`]). Two rules keep concurrent generations fair:
//! - **Turns are first come, first served** ([`FairLock`]): each forward pass queues for the
//!   session and is served in order. A std `Mutex` is not fair: a thread that unlocks and
//!   locks again in a loop (a decoding loop does exactly that) can keep the lock while another
//!   waits.
//! - **A prompt runs in chunks** of [`PREFILL_CHUNK`] tokens, each its own turn. A
//!   1,000-token prompt holds the session for seconds in one pass; in chunks, a generation
//!   already streaming keeps writing a token between two chunks of a newcomer's prompt.

use std::borrow::Cow;
use std::fs;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor};
use serde::Deserialize;

use crate::backend::BackendError;

/// Facts about the converted model, read from `generation.json` (written by the converter).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ModelFacts {
    /// The layout version of the prepared directory; the backend refuses others.
    pub format: u32,
    /// Most tokens (prompt and generated) one generation may hold.
    pub context_length: usize,
    /// Number of logits per step.
    pub vocab_size: usize,
    /// Transformer layers (one key and one value cache each).
    pub layers: usize,
    /// Key/value heads (grouped-query attention).
    pub kv_heads: usize,
    /// Size of one head.
    pub head_dim: usize,
    /// `<|im_start|>`'s id (the model adds no BOS token of its own).
    pub bos_token_id: u32,
    /// `<|im_end|>`'s id.
    pub eos_token_id: u32,
    /// Ids that end a generation (`<|im_end|>`, `<|endoftext|>`).
    pub stop_token_ids: Vec<u32>,
    /// The token that opens a chat turn.
    pub im_start: String,
    /// The token that closes a chat turn.
    pub im_end: String,
    /// The system message the chat template inserts when a conversation has none.
    pub default_system: String,
    /// Whether `logits` holds only the last position (always true for this converter).
    pub logits_last_only: bool,
}

/// The `generation.json` layout this code understands (2: the GGUF's own blocks, with the
/// fidelity files; see `scripts/convert_smollm2.py`).
pub(crate) const FACTS_FORMAT: u32 = 2;

impl ModelFacts {
    /// Reads `generation.json`.
    pub(crate) fn read(path: &Path) -> Result<Self, String> {
        let text = fs::read(path).map_err(|error| format!("{}: {error}", path.display()))?;
        let facts: Self = serde_json::from_slice(&text)
            .map_err(|error| format!("{}: {error}", path.display()))?;
        if facts.format != FACTS_FORMAT || !facts.logits_last_only {
            return Err(format!(
                "{} is format {}, expected {FACTS_FORMAT}: prepare the model again",
                path.display(),
                facts.format
            ));
        }
        Ok(facts)
    }
}

/// The keys and values of every token a generation has seen, as ONNX Runtime values.
///
/// Owned by one generation; the [`Decoder`] it is used with is shared. After a failed
/// [`Decoder::forward`] the cache is empty again (its values were moved into the failed run).
#[derive(Debug, Default)]
pub struct KvCache {
    /// `present.{i}.key`, `present.{i}.value` for every layer, in input order; empty
    /// before the first step.
    values: Vec<DynValue>,
    /// Tokens the cache covers.
    len: usize,
}

impl KvCache {
    /// An empty cache, for a new sequence.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tokens the cache covers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the cache covers no token yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Prompt tokens computed in one forward pass (one turn of the session). Smaller chunks let
/// other generations in more often but pay a fixed cost per pass (copying the growing
/// cache, the output head). Measured on a 773-token chat prompt (`benches/concurrent.rs`,
/// 2 busy cores): one pass 257 tokens/s; chunks of 512: 226, of 256: 222, of 128: 221 (a
/// pass ~0.5 s), of 64: 201, of 32: 202 tokens/s. 128 keeps nearly all the throughput while
/// a streaming answer waits at most one ~0.5 s pass between two of its tokens.
const PREFILL_CHUNK: usize = 128;

/// Intra-op threads of the session that reads prompts. A prompt chunk is a few large matrix
/// products, which two threads split well; a decode step is many small ones, which they do
/// not (NOTES: 2 threads 2–3× slower per step), so steps keep their own 1-thread session.
/// Both sit behind the one [`FairLock`], so a 2-thread pass never competes with a step.
/// Measured (`benches/concurrent.rs`, 773-token chat prompt, chunks of 128, 2 cores shared
/// with other work, load ~1): 1 thread 358 tokens/s, 2 threads 565; first token of one chat
/// 2.2 → 1.7 s, of three at once 7.5 → 4.6–5.1 s. The cost: a second copy of the weights in
/// memory and a second load (~0.1 s more; the bench process peaks at ~650 MB).
const PREFILL_THREADS: usize = 2;

/// The ONNX decoder sessions and their facts.
///
/// `Session::run` needs `&mut` in `ort` rc.15, so the sessions sit behind a [`FairLock`]
/// held for exactly one forward pass (a blocking lock: it is only ever taken on blocking
/// threads). The KV cache lives outside it, with each generation, so concurrent generations
/// interleave pass by pass instead of queueing for a whole answer (see the module docs).
/// Each shares the cores the passes use, so all slow down.
#[derive(Debug)]
pub struct Decoder {
    /// The sessions; taken in turn per forward pass.
    sessions: FairLock<Sessions>,
    /// What `generation.json` says about the model.
    facts: ModelFacts,
    /// `past_key_values.{i}.key|value` in the order the cache stores them.
    past_names: Vec<String>,
    /// `present.{i}.key|value`, in the same order.
    present_names: Vec<String>,
}

/// Two sessions of the same model: one per kind of pass.
#[derive(Debug)]
struct Sessions {
    /// One intra-op thread: single-token decode steps.
    step: Session,
    /// [`PREFILL_THREADS`] intra-op threads: prompt chunks of more than one token.
    prefill: Session,
}

impl Decoder {
    /// Loads `model.onnx` twice: with 1 intra-op thread for decode steps (2 measured 2–3×
    /// slower on the 2-core machines this runs on) and with [`PREFILL_THREADS`] for prompts.
    pub(crate) fn load(model: &Path, facts: ModelFacts) -> Result<Self, ort::Error> {
        let environment = crate::runtime::environment()
            .map_err(|error| ort::Error::new(format!("ONNX Runtime is not available: {error}")))?;
        let open = |threads: usize| -> Result<Session, ort::Error> {
            Session::builder(&environment)?
                .with_optimization_level(GraphOptimizationLevel::All)?
                .with_intra_threads(threads)?
                .with_inter_threads(1)?
                // The extra thread sleeps between passes instead of spinning on a core the
                // rest of the server needs.
                .with_intra_op_spinning(false)?
                .commit_from_file(model)
        };
        let sessions = Sessions {
            step: open(1)?,
            prefill: open(PREFILL_THREADS)?,
        };
        let mut past_names = Vec::with_capacity(facts.layers * 2);
        let mut present_names = Vec::with_capacity(facts.layers * 2);
        for layer in 0..facts.layers {
            for kind in ["key", "value"] {
                past_names.push(format!("past_key_values.{layer}.{kind}"));
                present_names.push(format!("present.{layer}.{kind}"));
            }
        }
        Ok(Self {
            sessions: FairLock::new(sessions),
            facts,
            past_names,
            present_names,
        })
    }

    /// What `generation.json` says about the model.
    pub fn facts(&self) -> &ModelFacts {
        &self.facts
    }

    /// Runs the model over `tokens` (the whole prompt at first, then one token per step),
    /// extends `cache` with them, and returns the logits for the token after the last one.
    ///
    /// A long prompt runs in chunks of [`PREFILL_CHUNK`] tokens, each waiting its turn for
    /// the session, so other generations make progress in between. After a failure `cache`
    /// is empty.
    ///
    /// Blocking and CPU-heavy: call it from a blocking thread.
    pub fn forward(&self, cache: &mut KvCache, tokens: &[u32]) -> Result<Vec<f32>, BackendError> {
        self.forward_chunked(cache, tokens, PREFILL_CHUNK)
    }

    /// [`Decoder::forward`] with prompt chunks of `chunk` tokens instead of
    /// [`PREFILL_CHUNK`] (benchmarks: what each chunk size costs).
    #[cfg(feature = "testing")]
    pub fn forward_in_chunks(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        chunk: usize,
    ) -> Result<Vec<f32>, BackendError> {
        self.forward_chunked(cache, tokens, chunk.max(1))
    }

    /// [`Decoder::forward`] in chunks of `chunk` (at least 1) tokens.
    fn forward_chunked(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        chunk: usize,
    ) -> Result<Vec<f32>, BackendError> {
        let facts = &self.facts;
        if tokens.is_empty() {
            return Err(BackendError::Inference("no tokens to run".into()));
        }
        let total = cache.len + tokens.len();
        if total > facts.context_length {
            return Err(BackendError::Inference(format!(
                "{total} tokens exceed the context of {}",
                facts.context_length
            )));
        }
        // Whole chunks first, then the rest (1 to `chunk` tokens), whose last token's
        // logits are the answer.
        let last_start = (tokens.len() - 1) / chunk * chunk;
        let (earlier, last) = tokens.split_at(last_start);
        for chunk in earlier.chunks(chunk) {
            self.pass(cache, chunk, false)?;
        }
        self.pass(cache, last, true)?
            .ok_or_else(|| BackendError::Inference("no logits were read".into()))
    }

    /// One forward pass over `tokens` (at most one chunk), in one turn of the session.
    /// Returns the logits when `want_logits` (earlier chunks of a prompt need only the cache).
    fn pass(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        want_logits: bool,
    ) -> Result<Option<Vec<f32>>, BackendError> {
        let facts = &self.facts;
        let past = std::mem::take(&mut cache.values);
        let past_len = cache.len;
        cache.len = 0;
        let total = past_len + tokens.len();

        let ids: Vec<i64> = tokens.iter().map(|&id| i64::from(id)).collect();
        let positions: Vec<i64> = (past_len..total).map(|p| p as i64).collect();
        let mut inputs: Vec<(Cow<'static, str>, SessionInputValue<'static>)> =
            Vec::with_capacity(3 + self.past_names.len());
        inputs.push(("input_ids".into(), tensor([1, tokens.len()], ids)?));
        inputs.push((
            "attention_mask".into(),
            tensor([1, total], vec![1_i64; total])?,
        ));
        inputs.push(("position_ids".into(), tensor([1, tokens.len()], positions)?));
        if past.is_empty() {
            let shape = [1, facts.kv_heads, 0, facts.head_dim];
            for name in &self.past_names {
                inputs.push((name.clone().into(), tensor(shape, Vec::<f32>::new())?));
            }
        } else {
            for (name, value) in self.past_names.iter().zip(past) {
                inputs.push((name.clone().into(), SessionInputValue::Owned(value)));
            }
        }

        let mut sessions = self.sessions.lock();
        let session = if tokens.len() > 1 {
            &mut sessions.prefill
        } else {
            &mut sessions.step
        };
        let mut outputs = session.run(inputs).map_err(inference)?;
        let logits = if want_logits {
            let logits = outputs
                .remove("logits")
                .ok_or_else(|| BackendError::Inference("the model returned no logits".into()))?;
            let (_, logits) = logits.try_extract_tensor::<f32>().map_err(inference)?;
            if logits.len() != facts.vocab_size {
                return Err(BackendError::Inference(format!(
                    "expected {} logits, got {}",
                    facts.vocab_size,
                    logits.len()
                )));
            }
            Some(logits.to_vec())
        } else {
            None
        };
        let mut present = Vec::with_capacity(self.present_names.len());
        for name in &self.present_names {
            present.push(
                outputs.remove(name.as_str()).ok_or_else(|| {
                    BackendError::Inference(format!("the model returned no {name}"))
                })?,
            );
        }
        drop(outputs);
        drop(sessions);
        cache.values = present;
        cache.len = total;
        Ok(logits)
    }
}

/// A lock that serves its users in the order they asked (a ticket lock).
///
/// Each [`FairLock::lock`] draws the next ticket and waits until every earlier ticket has
/// been served, so a thread that locks again right after unlocking goes behind everyone
/// already waiting. Blocking: for blocking threads only.
#[derive(Debug)]
struct FairLock<T> {
    /// Tickets drawn and served.
    turns: Mutex<Turns>,
    /// Signalled whenever a ticket is drawn or served.
    changed: Condvar,
    /// The value. Only the holder of the current turn locks it, so it is never contended;
    /// it is what lends the holder `&mut T` without unsafe code.
    value: Mutex<T>,
}

#[derive(Debug, Default)]
struct Turns {
    /// Tickets drawn so far (the next ticket's number).
    drawn: u64,
    /// The ticket being served; every lower one is done.
    serving: u64,
}

impl<T> FairLock<T> {
    fn new(value: T) -> Self {
        Self {
            turns: Mutex::new(Turns::default()),
            changed: Condvar::new(),
            value: Mutex::new(value),
        }
    }

    fn turns(&self) -> MutexGuard<'_, Turns> {
        // Nothing under this lock can panic halfway: the counters are always consistent.
        self.turns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for this caller's turn, after everyone who asked before.
    fn lock(&self) -> FairGuard<'_, T> {
        let mut turns = self.turns();
        let ticket = turns.drawn;
        turns.drawn += 1;
        self.changed.notify_all();
        let turns = self
            .changed
            .wait_while(turns, |turns| turns.serving != ticket)
            .unwrap_or_else(PoisonError::into_inner);
        drop(turns);
        // A pass that panicked left the session as ONNX Runtime left it; the next pass
        // builds all its inputs afresh, so the poison carries no broken state.
        let value = self.value.lock().unwrap_or_else(PoisonError::into_inner);
        FairGuard {
            lock: self,
            value: Some(value),
        }
    }

    /// Callers holding or waiting for a turn.
    #[cfg(test)]
    fn queued(&self) -> u64 {
        let turns = self.turns();
        turns.drawn - turns.serving
    }

    /// Waits until `count` callers hold or wait for a turn (tests: "the others are in line").
    #[cfg(test)]
    fn wait_queued(&self, count: u64, timeout: std::time::Duration) -> bool {
        let (turns, result) = self
            .changed
            .wait_timeout_while(self.turns(), timeout, |turns| {
                turns.drawn - turns.serving < count
            })
            .unwrap_or_else(PoisonError::into_inner);
        drop(turns);
        !result.timed_out()
    }
}

/// One turn of a [`FairLock`]: access to its value until dropped, then the next ticket's turn.
struct FairGuard<'a, T> {
    lock: &'a FairLock<T>,
    /// Always `Some` until dropped (released before the next turn starts).
    value: Option<MutexGuard<'a, T>>,
}

impl<T> Deref for FairGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.value.as_deref().expect("held until dropped")
    }
}

impl<T> DerefMut for FairGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value.as_deref_mut().expect("held until dropped")
    }
}

impl<T> Drop for FairGuard<'_, T> {
    fn drop(&mut self) {
        drop(self.value.take());
        self.lock.turns().serving += 1;
        self.lock.changed.notify_all();
    }
}

/// A tensor input from a shape and its data.
fn tensor<T, const N: usize>(
    shape: [usize; N],
    data: Vec<T>,
) -> Result<SessionInputValue<'static>, BackendError>
where
    T: ort::value::PrimitiveTensorElementType + Clone + std::fmt::Debug + 'static,
{
    Ok(SessionInputValue::Owned(
        Tensor::from_array((shape, data))
            .map_err(inference)?
            .into_dyn(),
    ))
}

/// Maps an ONNX Runtime failure (an internal error: the graph and inputs are ours).
fn inference(error: ort::Error) -> BackendError {
    BackendError::Inference(error.to_string())
}

#[cfg(test)]
mod tests {
    use std::thread;
    use std::time::Duration;

    use super::*;

    /// Long enough for a thread to start and draw its ticket on a loaded machine; the tests
    /// wait for the condition, not for this long.
    const PATIENCE: Duration = Duration::from_secs(30);

    #[test]
    fn turns_are_served_in_the_order_they_were_asked() {
        let lock = FairLock::new(Vec::new());
        thread::scope(|scope| {
            let held = lock.lock();
            for id in 1..=4 {
                let lock = &lock;
                scope.spawn(move || lock.lock().push(id));
                // The next thread asks only once this one is in line.
                assert!(lock.wait_queued(id + 1, PATIENCE), "thread {id} in line");
            }
            drop(held);
        });
        assert_eq!(*lock.lock(), [1, 2, 3, 4]);
        assert_eq!(lock.queued(), 0);
    }

    /// The decoding loop's pattern: a generation unlocks after a step and at once locks
    /// again for the next. A newcomer already waiting must get the turn in between.
    #[test]
    fn locking_again_goes_behind_those_already_waiting() {
        let lock = FairLock::new(Vec::new());
        thread::scope(|scope| {
            let held = lock.lock();
            let decoding = &lock;
            scope.spawn(move || {
                for _ in 0..3 {
                    decoding.lock().push("decoding");
                }
            });
            assert!(lock.wait_queued(2, PATIENCE), "the decoding thread waits");
            let newcomer = &lock;
            // One turn only: a second would race the decoding thread for the next ticket.
            scope.spawn(move || newcomer.lock().push("newcomer"));
            assert!(lock.wait_queued(3, PATIENCE), "the newcomer waits");
            drop(held);
        });
        assert_eq!(
            *lock.lock(),
            ["decoding", "newcomer", "decoding", "decoding"],
            "the newcomer's turn comes between the decoding thread's first two"
        );
    }

    #[test]
    fn a_turn_that_panics_hands_on_to_the_next() {
        let lock = FairLock::new(0);
        let panicked = thread::scope(|scope| {
            scope
                .spawn(|| {
                    let mut value = lock.lock();
                    *value += 1;
                    panic!("a forward pass failed badly");
                })
                .join()
        });
        assert!(panicked.is_err());
        *lock.lock() += 1;
        let value = lock.lock();
        assert_eq!(*value, 2);
        assert_eq!(lock.queued(), 1, "only the current holder");
    }
}
