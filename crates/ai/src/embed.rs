//! Sentence embeddings: all-MiniLM-L6-v2 (int8 weights, 384 dimensions) on ONNX Runtime.
//!
//! [`Embedder`] is the blocking engine: tokenise, run the transformer, mean-pool the last
//! hidden state over the real (non-padding) tokens, L2-normalise — the recipe the
//! sentence-transformers model was trained with, so cosine similarity is a dot product.
//! [`Embeddings`] is the cheap-to-clone async handle the server keeps; it moves every call
//! onto tokio's blocking pool, because one batch is tens of milliseconds of pure CPU that
//! must never run on the reactor.
//!
//! Padding: the model's `tokenizer.json` pads every input to 128 tokens. That padding is
//! turned off and each batch is padded here to its own longest input instead: the result is
//! the same (pooling uses the attention mask) but short sentences cost a fraction of the
//! compute.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::TensorRef;
use tokenizers::{Encoding, Tokenizer, TruncationParams};

use crate::runtime::{self, RuntimeError};

/// The files of an embedding model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedderFiles {
    /// The ONNX graph (inputs `input_ids`, `attention_mask`, optionally `token_type_ids`;
    /// first output the last hidden state, `[batch, tokens, dims]`).
    pub model: PathBuf,
    /// The Hugging Face `tokenizer.json` that goes with it.
    pub tokenizer: PathBuf,
}

impl EmbedderFiles {
    /// `model.onnx` and `tokenizer.json` in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            model: dir.join("model.onnx"),
            tokenizer: dir.join("tokenizer.json"),
        }
    }
}

/// How an [`Embedder`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbedderConfig {
    /// Threads ONNX Runtime uses inside one inference. 1 is right for small machines: on two
    /// cores, two threads measured 2–3× slower, and other requests want the second core.
    pub intra_threads: usize,
    /// Longest input in tokens (special tokens included); longer texts are truncated. The
    /// model was trained on 128 and accepts up to 512.
    pub max_tokens: usize,
    /// Texts per inference call: larger batches amortise per-call overhead, but pad short
    /// texts to the longest of the batch.
    pub batch_size: usize,
}

impl Default for EmbedderConfig {
    fn default() -> Self {
        Self {
            intra_threads: 1,
            max_tokens: 256,
            batch_size: 32,
        }
    }
}

/// Why embedding failed.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// ONNX Runtime is not loaded (see [`crate::runtime::init`]).
    #[error(transparent)]
    Unavailable(#[from] RuntimeError),
    /// The configuration cannot work (a zero batch size, say).
    #[error("invalid embedder configuration: {0}")]
    Config(&'static str),
    /// The model file could not be loaded into a session.
    #[error("could not load the embedding model {}", path.display())]
    Model {
        /// The model file.
        path: PathBuf,
        /// What ONNX Runtime said.
        #[source]
        source: ort::Error,
    },
    /// The tokenizer file could not be loaded or configured.
    #[error("could not load the tokenizer {}", path.display())]
    TokenizerFile {
        /// The tokenizer file.
        path: PathBuf,
        /// What the tokenizers library said.
        #[source]
        source: tokenizers::Error,
    },
    /// Tokenising the input failed.
    #[error("could not tokenise the input")]
    Tokenizer(#[source] tokenizers::Error),
    /// Running the model failed.
    #[error("embedding inference failed")]
    Runtime(#[from] ort::Error),
    /// The model's inputs or outputs are not what a sentence embedding model has.
    #[error("unexpected model shape: {0}")]
    Shape(String),
    /// The blocking task running the embedding panicked or was cancelled.
    #[error("embedding task failed")]
    Task(#[from] tokio::task::JoinError),
}

/// A sentence embedding model, ready to run. Blocking; see [`Embeddings`] for async code.
pub struct Embedder {
    /// `Session::run` needs `&mut`. A std `Mutex` rather than tokio's: it is only ever
    /// locked on blocking threads and never held across an `.await`, so an async mutex would
    /// add cost and nothing else. Tokenisation and pooling run outside it, so concurrent
    /// callers overlap those with each other's inference. One session is enough with one
    /// intra-op thread on small machines; more throughput would mean a pool of sessions.
    session: Mutex<Session>,
    /// The model's tokenizer, with padding off and truncation at `max_tokens`.
    tokenizer: Tokenizer,
    /// How it runs.
    config: EmbedderConfig,
    /// Length of one embedding.
    dims: usize,
    /// Whether the graph takes `token_type_ids` (BERT exports usually do).
    token_type_ids: bool,
}

impl fmt::Debug for Embedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Embedder")
            .field("config", &self.config)
            .field("dims", &self.dims)
            .finish_non_exhaustive()
    }
}

impl Embedder {
    /// Loads the model and tokenizer. [`crate::runtime::init`] must have succeeded.
    /// Blocking (a few hundred milliseconds).
    pub fn load(files: &EmbedderFiles, config: EmbedderConfig) -> Result<Self, EmbedError> {
        if config.batch_size == 0 {
            return Err(EmbedError::Config("batch_size must be at least 1"));
        }
        if config.intra_threads == 0 {
            return Err(EmbedError::Config("intra_threads must be at least 1"));
        }
        let environment = runtime::environment()?;
        let session = build_session(&environment, &files.model, config).map_err(|source| {
            EmbedError::Model {
                path: files.model.clone(),
                source,
            }
        })?;

        let inputs: Vec<&str> = session.inputs().iter().map(|input| input.name()).collect();
        for required in ["input_ids", "attention_mask"] {
            if !inputs.contains(&required) {
                return Err(EmbedError::Shape(format!(
                    "the model has no `{required}` input (it has {inputs:?})"
                )));
            }
        }
        let token_type_ids = inputs.contains(&"token_type_ids");
        let dims = session
            .outputs()
            .first()
            .and_then(|output| output.dtype().tensor_shape())
            .and_then(|shape| shape.last().copied())
            .filter(|dims| *dims > 0)
            .ok_or_else(|| {
                EmbedError::Shape(
                    "the first output is not a [batch, tokens, dims] tensor with fixed dims".into(),
                )
            })?;
        let dims = usize::try_from(dims)
            .map_err(|_| EmbedError::Shape(format!("embedding size {dims}")))?;

        let tokenizer_error = |source| EmbedError::TokenizerFile {
            path: files.tokenizer.clone(),
            source,
        };
        let mut tokenizer = Tokenizer::from_file(&files.tokenizer).map_err(tokenizer_error)?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: config.max_tokens,
                ..TruncationParams::default()
            }))
            .map_err(tokenizer_error)?;

        Ok(Self {
            session: Mutex::new(session),
            tokenizer,
            config,
            dims,
            token_type_ids,
        })
    }

    /// Length of one embedding (384 for all-MiniLM-L6-v2).
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// How it runs.
    pub fn config(&self) -> EmbedderConfig {
        self.config
    }

    /// Embeds `texts`, one unit-length vector each, in order. Blocking: tens of milliseconds
    /// per batch of `batch_size`.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        // `encode_batch_fast` skips character offsets, which pooling does not need.
        let encodings = self
            .tokenizer
            .encode_batch_fast(texts.to_vec(), true)
            .map_err(EmbedError::Tokenizer)?;
        // Batches of similar lengths waste less compute on padding (what sentence-transformers
        // does too); the vectors go back in input order below.
        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|&i| encodings[i].len());
        let mut embeddings = vec![Vec::new(); encodings.len()];
        for batch in order.chunks(self.config.batch_size) {
            let batch_encodings: Vec<&Encoding> = batch.iter().map(|&i| &encodings[i]).collect();
            let vectors = self.embed_batch(&batch_encodings)?;
            for (&i, vector) in batch.iter().zip(vectors) {
                embeddings[i] = vector;
            }
        }
        Ok(embeddings)
    }

    /// Embeds one batch of tokenised texts, in order.
    fn embed_batch(&self, encodings: &[&Encoding]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let rows = encodings.len();
        // At least one column, so an input that tokenises to nothing pools to a zero vector
        // instead of making a zero-sized tensor.
        let columns = encodings.iter().map(|e| e.len()).max().unwrap_or(0).max(1);

        // Right-padded with zeros (the `[PAD]` id, attention 0, segment 0).
        let mut ids = vec![0_i64; rows * columns];
        let mut mask = vec![0_i64; rows * columns];
        let mut types = vec![0_i64; rows * columns];
        for (row, encoding) in encodings.iter().enumerate() {
            let start = row * columns;
            for (i, &id) in encoding.get_ids().iter().enumerate() {
                ids[start + i] = i64::from(id);
            }
            for (i, &m) in encoding.get_attention_mask().iter().enumerate() {
                mask[start + i] = i64::from(m);
            }
            for (i, &t) in encoding.get_type_ids().iter().enumerate() {
                types[start + i] = i64::from(t);
            }
        }

        let shape = [rows, columns];
        let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = vec![
            (
                "input_ids".into(),
                TensorRef::from_array_view((shape, ids.as_slice()))?.into(),
            ),
            (
                "attention_mask".into(),
                TensorRef::from_array_view((shape, mask.as_slice()))?.into(),
            ),
        ];
        if self.token_type_ids {
            inputs.push((
                "token_type_ids".into(),
                TensorRef::from_array_view((shape, types.as_slice()))?.into(),
            ));
        }

        // A panic while holding the lock cannot leave the session half-changed (ONNX Runtime
        // keeps no state between runs), so a poisoned lock is still usable.
        let mut session = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        let outputs = session.run(inputs)?;
        let (output_shape, hidden) = outputs[0].try_extract_tensor::<f32>()?;
        let expected = [rows, columns, self.dims].map(|n| n as i64);
        if output_shape[..] != expected[..] {
            return Err(EmbedError::Shape(format!(
                "the model returned {output_shape:?}, expected {expected:?}"
            )));
        }
        Ok(hidden
            .chunks_exact(columns * self.dims)
            .zip(mask.chunks_exact(columns))
            .map(|(hidden, mask)| mean_pool(hidden, mask, self.dims))
            .collect())
    }
}

/// A session for `model` with the settings of `config`.
fn build_session(
    environment: &Environment,
    model: &Path,
    config: EmbedderConfig,
) -> Result<Session, ort::Error> {
    Session::builder(environment)?
        // What Python's onnxruntime does by default: every graph rewrite, including the
        // fused attention and layer-norm kernels.
        .with_optimization_level(GraphOptimizationLevel::All)?
        .with_intra_threads(config.intra_threads)?
        .with_inter_threads(1)?
        .commit_from_file(model)
}

/// The mean of the token vectors whose attention mask is 1, scaled to unit length.
fn mean_pool(hidden: &[f32], mask: &[i64], dims: usize) -> Vec<f32> {
    let mut sum = vec![0_f32; dims];
    let mut count = 0_u32;
    for (token, &m) in hidden.chunks_exact(dims).zip(mask) {
        if m != 0 {
            count += 1;
            for (s, &h) in sum.iter_mut().zip(token) {
                *s += h;
            }
        }
    }
    // Dividing by the count does not change the direction, but it is what the reference
    // does before normalising; keep it so the intermediate is comparable when debugging.
    let count = count.max(1) as f32;
    let norm = sum
        .iter()
        .map(|s| (s / count) * (s / count))
        .sum::<f32>()
        .sqrt();
    // Same floor as sentence-transformers' `normalize`, so an all-zero vector stays zero.
    let scale = 1.0 / (count * norm.max(1e-12));
    sum.iter_mut().for_each(|s| *s *= scale);
    sum
}

/// The server's handle on an [`Embedder`]: cheap to clone, async, runs on tokio's blocking
/// pool.
#[derive(Debug, Clone)]
pub struct Embeddings {
    /// The shared engine.
    embedder: Arc<Embedder>,
}

impl Embeddings {
    /// Wraps a loaded embedder.
    pub fn new(embedder: Embedder) -> Self {
        Self {
            embedder: Arc::new(embedder),
        }
    }

    /// Length of one embedding.
    pub fn dims(&self) -> usize {
        self.embedder.dims()
    }

    /// The blocking engine, for callers already on a blocking thread.
    pub fn embedder(&self) -> &Embedder {
        &self.embedder
    }

    /// Embeds `texts` on a blocking thread. If this future is dropped, the batch in flight
    /// still finishes (ONNX Runtime cannot be interrupted mid-run) and its result is
    /// discarded.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let embedder = Arc::clone(&self.embedder);
        tokio::task::spawn_blocking(move || {
            let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
            embedder.embed(&texts)
        })
        .await?
    }
}

impl From<Embedder> for Embeddings {
    fn from(embedder: Embedder) -> Self {
        Self::new(embedder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_ignores_padding_and_normalises() {
        // Two real tokens and one padding token that would change the mean if counted.
        let hidden = [1.0, 0.0, 3.0, 0.0, 100.0, 100.0];
        let pooled = mean_pool(&hidden, &[1, 1, 0], 2);
        assert_eq!(pooled, [1.0, 0.0]);
    }

    #[test]
    fn pooling_a_zero_vector_stays_finite() {
        let pooled = mean_pool(&[0.0, 0.0], &[1], 2);
        assert_eq!(pooled, [0.0, 0.0]);
    }
}
