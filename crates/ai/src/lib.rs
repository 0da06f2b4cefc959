//! AI for classrooms: sentence embeddings for retrieval and text generation backends that
//! stream tokens, all behind traits so the embedded default (local ONNX models) and a
//! deployment with an OpenAI-compatible API run the same code above them.
//!
//! # Layout
//! - [`runtime`]: loading the ONNX Runtime shared library once per process.
//! - [`models`]: preparing model files from registry packages into a models directory.
//! - [`embed`]: sentence embeddings (all-MiniLM-L6-v2 through ONNX Runtime).
//! - [`backend`]: the streaming generation [`Backend`](backend::Backend) trait.
//! - [`local`]: the embedded default generator (SmolLM2-135M-Instruct through ONNX Runtime).
//! - `testing` (feature `testing`): a shared prepared models directory and embedder for
//!   integration tests.
//! - [`openai`]: a [`Backend`](backend::Backend) streaming from OpenAI-compatible HTTP servers.
//! - [`structured`]: prompts, parsing, repair and CRDT writers for structured outputs.

pub mod backend;
pub mod embed;
pub mod local;
pub mod models;
pub mod openai;
pub mod runtime;
pub mod structured;
#[cfg(feature = "testing")]
pub mod testing;
