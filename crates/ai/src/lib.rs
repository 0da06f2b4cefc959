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
//! - [`quality`]: whether a finished answer is empty, a loop, an echo or untranslated.
//! - [`structured`]: prompts, schemas, parsing, repair and CRDT writers for structured outputs.
//! - [`speech`]: speech to text through OpenAI-compatible `audio/transcriptions` servers.
//! - `stop` (private): stop sequences over streamed text, shared by both backends.

pub mod backend;
pub mod embed;
pub mod local;
pub mod models;
pub mod openai;
pub mod quality;
pub mod runtime;
pub mod speech;
mod stop;
pub mod structured;
#[cfg(feature = "testing")]
pub mod testing;
