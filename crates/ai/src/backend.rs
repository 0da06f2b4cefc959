//! The streaming generation backend: messages in, tokens out.
//!
//! Every generator (the local ONNX model, an OpenAI-compatible HTTP API) implements
//! [`Backend`]; live AI jobs only ever see this trait.

use std::fmt;
use std::pin::Pin;

use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// Who said a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The person asking.
    User,
    /// The model's earlier answers.
    Assistant,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: String,
}

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    /// The conversation so far; the model continues it.
    pub messages: Vec<Message>,
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// Sampling temperature; 0 means greedy.
    pub temperature: f32,
    /// Nucleus sampling mass (1.0 disables it).
    pub top_p: f32,
    /// Text that ends the answer when the model writes it; the stop text itself is not
    /// part of the answer.
    pub stop: Vec<String>,
    /// The shape the answer must have.
    pub format: OutputFormat,
}

/// The shape a generation's text must have.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum OutputFormat {
    /// Free text.
    #[default]
    Text,
    /// One JSON value valid against `schema` (a JSON Schema): constrained decoding on the
    /// local backend, `response_format` on an API that supports it.
    JsonSchema {
        /// A short name for the schema (`quiz`, `flashcards`, ...); APIs require one.
        name: String,
        /// The JSON Schema.
        schema: serde_json::Value,
        /// The same shape as a Lark grammar for the local backend, which then decodes under
        /// it instead of the schema: it can cap the tokens of each free-text field so the
        /// document always closes within `max_tokens` (see `structured::schema`). `None`
        /// compiles the schema.
        lark: Option<String>,
    },
    /// Text matching a Lark grammar (llguidance's dialect): constrained decoding on the
    /// local backend; an API backend generates free text, which the caller must parse
    /// tolerantly.
    Grammar {
        /// A short name for logs.
        name: String,
        /// The grammar.
        lark: String,
    },
}

/// Tokens counted for one generation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
}

/// One item of a generation stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The next piece of text (one token, or a few when a backend batches them).
    Token(String),
    /// The generation finished; always the last item of a stream that did not fail.
    Done(Usage),
}

/// Why a generation failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The backend is not configured or its model is not prepared; the message says how
    /// to fix it.
    #[error("AI backend unavailable: {0}")]
    Unavailable(String),
    /// The backend refused the request (bad request, authentication, unknown model).
    #[error("AI backend rejected the request: {0}")]
    Rejected(String),
    /// The backend is overloaded or rate limited, after retries.
    #[error("AI backend is busy: {0}")]
    Busy(String),
    /// No first token, or no progress, within the configured time.
    #[error("AI backend timed out: {0}")]
    Timeout(String),
    /// The connection failed or the stream broke off.
    #[error("AI backend connection failed: {0}")]
    Transport(String),
    /// The backend answered something that is not a valid stream.
    #[error("AI backend sent an invalid response: {0}")]
    Protocol(String),
    /// Running the local model failed.
    #[error("local model failed: {0}")]
    Inference(String),
    /// The caller cancelled the generation.
    #[error("generation cancelled")]
    Cancelled,
}

/// A stream of generated text; ends after [`Event::Done`] or the first error.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Event, BackendError>> + Send>>;

/// A text generator that streams tokens.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + fmt::Debug {
    /// A short name for logs and metrics (`"openai"`, `"local"`).
    fn name(&self) -> &str;

    /// Whether this backend's model can translate between languages. False unless a
    /// backend claims it: the embedded model cannot (it returns the text unchanged), so
    /// translation requests are refused up front instead of failing after the wait.
    fn can_translate(&self) -> bool {
        false
    }

    /// How many tokens (prompt and answer together) one generation may hold, if the
    /// backend knows it (the local model does; for an API the server's configuration says).
    fn context_tokens(&self) -> Option<usize> {
        None
    }

    /// How many tokens `text` takes for this model, if the backend can count exactly
    /// (blocking: it tokenises); callers estimate otherwise.
    fn count_tokens(&self, _text: &str) -> Option<usize> {
        None
    }

    /// Starts generating. The stream stops (with [`BackendError::Cancelled`]) soon after
    /// `cancel` fires; dropping the stream also stops the generation.
    async fn generate(
        &self,
        request: GenerationRequest,
        cancel: CancellationToken,
    ) -> Result<EventStream, BackendError>;
}
