//! AI for classrooms: sentence embeddings for retrieval and text generation backends that
//! stream tokens, all behind traits so the embedded default (local ONNX models) and a
//! deployment with an OpenAI-compatible API run the same code above them.
//!
//! # Layout
//! - [`runtime`]: loading the ONNX Runtime shared library once per process.
//! - [`models`]: preparing model files from registry packages into a models directory.
//! - [`embed`]: sentence embeddings (all-MiniLM-L6-v2 through ONNX Runtime).
//! - [`backend`]: the streaming generation [`Backend`](backend::Backend) trait.

pub mod backend;
pub mod embed;
pub mod models;
pub mod runtime;
