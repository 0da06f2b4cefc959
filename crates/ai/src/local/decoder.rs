//! The ONNX decoder: one forward pass over new tokens, extending a KV cache.
//!
//! The converted graph (see `scripts/convert_smollm2.py`) takes the new tokens, an attention
//! mask over everything seen so far, their positions and the keys/values of every earlier
//! token (`past_key_values.{i}.key|value`); it returns the logits of the *last* new token
//! and the extended keys/values (`present.*`). [`KvCache`] keeps those outputs as ONNX
//! Runtime values and feeds them straight back, so each decoding step computes one token.

use std::borrow::Cow;
use std::fs;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

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

/// The `generation.json` layout this code understands.
pub(crate) const FACTS_FORMAT: u32 = 1;

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

/// The ONNX decoder session and its facts.
///
/// `Session::run` needs `&mut` in `ort` rc.15, so the session sits behind a std `Mutex`
/// held for exactly one forward pass (a std lock, not tokio's: it is only ever taken on
/// blocking threads). The KV cache lives outside it, with each generation, so concurrent
/// generations interleave step by step instead of queueing for a whole answer: a second
/// request gets its first token after one prefill, not after the first answer ends. Each
/// shares the one CPU core the session uses (1 intra-op thread), so both slow down.
#[derive(Debug)]
pub struct Decoder {
    /// The session; locked per forward pass.
    session: Mutex<Session>,
    /// What `generation.json` says about the model.
    facts: ModelFacts,
    /// `past_key_values.{i}.key|value` in the order the cache stores them.
    past_names: Vec<String>,
    /// `present.{i}.key|value`, in the same order.
    present_names: Vec<String>,
}

impl Decoder {
    /// Loads `model.onnx` with 1 intra-op thread (2 measured 2–3× slower on the 2-core
    /// machines this runs on, because they fight the rest of the server).
    pub(crate) fn load(model: &Path, facts: ModelFacts) -> Result<Self, ort::Error> {
        let environment = crate::runtime::environment()
            .map_err(|error| ort::Error::new(format!("ONNX Runtime is not available: {error}")))?;
        let session = Session::builder(&environment)?
            .with_optimization_level(GraphOptimizationLevel::All)?
            .with_intra_threads(1)?
            .with_inter_threads(1)?
            .commit_from_file(model)?;
        let mut past_names = Vec::with_capacity(facts.layers * 2);
        let mut present_names = Vec::with_capacity(facts.layers * 2);
        for layer in 0..facts.layers {
            for kind in ["key", "value"] {
                past_names.push(format!("past_key_values.{layer}.{kind}"));
                present_names.push(format!("present.{layer}.{kind}"));
            }
        }
        Ok(Self {
            session: Mutex::new(session),
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
    /// Blocking and CPU-heavy: call it from a blocking thread.
    pub fn forward(&self, cache: &mut KvCache, tokens: &[u32]) -> Result<Vec<f32>, BackendError> {
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
        let past = std::mem::take(&mut cache.values);
        let past_len = cache.len;
        cache.len = 0;

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

        let mut session = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        let mut outputs = session.run(inputs).map_err(inference)?;
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
        let logits = logits.to_vec();
        let mut present = Vec::with_capacity(self.present_names.len());
        for name in &self.present_names {
            present.push(
                outputs.remove(name.as_str()).ok_or_else(|| {
                    BackendError::Inference(format!("the model returned no {name}"))
                })?,
            );
        }
        drop(outputs);
        drop(session);
        cache.values = present;
        cache.len = total;
        Ok(logits)
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
