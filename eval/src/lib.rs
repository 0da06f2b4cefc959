//! Lectern's evaluation suite: measures the AI against its purpose, right answers from the
//! class's own materials, as a user sees it.
//!
//! It drives a real `lectern serve` process over HTTP and WebSocket, exactly as a client
//! would: signs up a teacher, creates a classroom and a live session, uploads a small
//! course (`eval/course/`), waits for ingestion in the materials feed, then searches, asks
//! questions in the session chat and runs structured jobs, reading every result from the
//! shared documents through a `yrs` replica. The answer key (`eval/questions.json`) says
//! what a right answer states and which passage answers it. `eval/README.md` explains each
//! figure.
//!
//! # Layout
//! - [`suite`]: the answer key and the course.
//! - [`text`]: the key-fact matcher (tokens, numbers normalised).
//! - [`degenerate`]: the suite's own check for empty, looping or echoed output.
//! - [`structured`]: whether a quiz, flashcards, exam, lesson plan or mind map is usable.
//! - `server`: the `lectern serve` child process; `api`: REST calls; `replica`: a
//!   document kept in sync over the WebSocket.
//! - [`run`]: one run (setup, retrieval, chats, jobs); [`report`]: figures, table, JSON.

mod api;
pub mod degenerate;
mod replica;
pub mod report;
pub mod run;
mod server;
pub mod structured;
pub mod suite;
pub mod text;

use std::path::PathBuf;

pub use report::{Figures, Report};
pub use run::Run;
pub use server::{Backend, ServerOptions};
pub use suite::Suite;

/// Why a run could not be completed (a wrong answer is a figure, not an error).
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file of the suite could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The suite file is not the expected JSON.
    #[error("{path} is not a valid suite: {source}")]
    SuiteFormat {
        /// The file.
        path: PathBuf,
        /// Where and why.
        source: serde_json::Error,
    },
    /// The suite is consistent JSON but cannot give meaningful figures.
    #[error("invalid suite: {0}")]
    InvalidSuite(String),
    /// The server could not be started.
    #[error("cannot start the server: {0}")]
    Spawn(std::io::Error),
    /// The server exited before it listened.
    #[error("the server exited before it listened: {0}")]
    ServerExited(String),
    /// An HTTP request failed to complete.
    #[error("HTTP {what}: {source}")]
    Http {
        /// The request.
        what: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The server answered with an unexpected status.
    #[error("{path} answered {status}: {body}")]
    Api {
        /// The request path.
        path: String,
        /// Its status.
        status: u16,
        /// Its body.
        body: String,
    },
    /// A document's WebSocket failed.
    #[error("WebSocket for {doc_id}: {source}")]
    WebSocket {
        /// The document.
        doc_id: String,
        /// Why.
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    /// Something did not happen in time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// The server answered something the suite cannot read.
    #[error("unexpected: {0}")]
    Unexpected(String),
}
