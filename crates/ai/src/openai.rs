//! A [`Backend`] that streams from any OpenAI-compatible `chat/completions` endpoint: vLLM,
//! Ollama, llama.cpp's server, TGI, and the OpenAI-compatible gateways of hosted models.
//!
//! # Why it behaves as it does
//! - **Retries only before the first token.** Connection failures and 429/500/502/503/504
//!   are retried with exponential backoff and jitter (or after the server's `Retry-After`),
//!   but only while nothing has been emitted: tokens go straight into a shared document,
//!   so a retry after the first token would write a second, different answer after the
//!   first half of another. Once the stream has started, any failure ends it with an error.
//! - **Three timeouts.** `connect_timeout` bounds TCP/TLS set-up; `first_token_timeout`
//!   bounds each attempt from sending the request to the first content token (it covers a
//!   queueing server and a model being loaded); `idle_timeout` bounds the gap between two
//!   chunks after that, which catches a server that stalls mid-answer.
//! - **Usage.** Taken from the `usage` of the final chunk (the request asks for it with
//!   `stream_options.include_usage`). A server that sends none gets an estimate:
//!   `completion_tokens` is the number of content deltas (most servers send one token per
//!   delta) and `prompt_tokens` is 0, because counting the prompt would need the model's
//!   tokenizer.
//! - **Lenient end of stream.** `data: [DONE]` ends the answer; a server that closes the
//!   connection without it (some llama.cpp forks do) still ends cleanly if it has sent a
//!   `finish_reason`. A close before that is a [`BackendError::Transport`] error.
//! - **Secrets.** The API key is sent as a bearer token marked sensitive, is redacted from
//!   `Debug`, and neither it nor any prompt or answer text is logged.
//! - **Cancellation.** Every wait selects on the caller's token, and the stream owns the
//!   HTTP response: firing the token or dropping the stream drops the response, which closes
//!   the connection, so the server stops generating. No task is spawned.
//! - **Limits enforced here too.** `max_tokens` and up to [`MAX_API_STOPS`] stop sequences
//!   are sent, but a server may ignore them (or count differently), so the stream also ends
//!   by itself — with `Done`, counting the content deltas it let through — once
//!   `max_tokens` deltas arrived or a stop sequence appeared (checked across deltas, and
//!   never streaming text that turns out to start one). The response is then dropped, which
//!   closes the connection so the server stops too.
//! - **Structured output.** [`OutputFormat::JsonSchema`] is sent as a strict
//!   `response_format` of type `json_schema` (without the string-length bounds, which are a
//!   budget for the small local model and which strict APIs refuse). A server that rejects
//!   the request because of it (400/422 naming `response_format` or `json_schema`, or the
//!   500 with such a validation error that llama-cpp-python's server sends) is asked
//!   once more without it, and never again with it by this backend; the caller's tolerant
//!   parser then does the work. Lark grammars are never sent.
//!
//! The event-stream framing lives in [`sse`], a sans-IO parser.

pub mod sse;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt as _, stream};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;

use std::sync::atomic::{AtomicBool, Ordering};

use crate::backend::{
    Backend, BackendError, Event, EventStream, GenerationRequest, Message, OutputFormat, Usage,
};
use crate::stop::StopFilter;
use sse::{SseEvent, SseParser};

/// How much of an error response body is read to find the server's message; the rest is
/// dropped so a misbehaving server cannot make us buffer without limit.
const ERROR_BODY_LIMIT: usize = 16 * 1024;

/// Longest server message carried in an error, in characters.
const ERROR_MESSAGE_LIMIT: usize = 500;

/// Most stop sequences OpenAI-compatible APIs accept; any further ones are only enforced
/// on the stream.
pub const MAX_API_STOPS: usize = 4;

/// Where and how to reach an OpenAI-compatible server.
#[derive(Clone)]
pub struct OpenAiConfig {
    /// The API root, ending in the version segment, e.g. `http://127.0.0.1:11434/v1` (Ollama)
    /// or `https://api.openai.com/v1`; `/chat/completions` is appended.
    pub base_url: String,
    /// Sent as `Authorization: Bearer …` when set; local servers usually need none.
    pub api_key: Option<String>,
    /// The model name the server knows, sent with every request.
    pub model: String,
    /// Longest time to establish a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Longest time from sending a request to its first content token, per attempt. Generous
    /// by default because servers such as Ollama load the model on the first request.
    pub first_token_timeout: Duration,
    /// Longest gap between two received chunks once the first token has arrived.
    pub idle_timeout: Duration,
    /// Retries after the first attempt (so up to `max_retries + 1` requests), only before
    /// any token has been emitted.
    pub max_retries: u32,
    /// Delay before the first retry; it doubles with each retry, with jitter.
    pub initial_backoff: Duration,
    /// Cap on any delay between attempts, including one asked for by `Retry-After`, so one
    /// odd header cannot stall a live class for minutes.
    pub max_backoff: Duration,
    /// Ask for token usage in the stream (`stream_options.include_usage`). Leave on; turn off
    /// only for a server that rejects the `stream_options` field.
    pub stream_usage: bool,
}

impl OpenAiConfig {
    /// A configuration with the default timeouts and retry policy and no API key.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            model: model.into(),
            connect_timeout: Duration::from_secs(5),
            first_token_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(30),
            max_retries: 3,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
            stream_usage: true,
        }
    }
}

impl fmt::Debug for OpenAiConfig {
    /// Shows everything but the API key, so configs can be logged.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .field("connect_timeout", &self.connect_timeout)
            .field("first_token_timeout", &self.first_token_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_retries", &self.max_retries)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("stream_usage", &self.stream_usage)
            .finish()
    }
}

/// The OpenAI-compatible streaming backend. Cheap to share: one connection pool serves all
/// generations.
#[derive(Debug)]
pub struct OpenAiBackend {
    /// Pooled HTTP client, built once with the connect timeout and TLS settings.
    client: reqwest::Client,
    /// `{base_url}/chat/completions`, parsed once.
    endpoint: Url,
    /// The configuration it was built from.
    config: OpenAiConfig,
    /// The server refused a `response_format` of type `json_schema` once: never send it
    /// again.
    schema_refused: AtomicBool,
}

impl OpenAiBackend {
    /// Builds the backend. Fails with [`BackendError::Unavailable`] when the URL is invalid or,
    /// for `https`, when the system has no trusted root certificates.
    pub fn new(config: OpenAiConfig) -> Result<Self, BackendError> {
        let url = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
        let endpoint = Url::parse(&url).map_err(|e| {
            BackendError::Unavailable(format!(
                "invalid OpenAI base URL {:?}: {e}",
                config.base_url
            ))
        })?;
        let https = match endpoint.scheme() {
            "https" => true,
            "http" => false,
            other => {
                return Err(BackendError::Unavailable(format!(
                    "OpenAI base URL must be http or https, not {other}"
                )));
            }
        };
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls_config(https)?)
            .connect_timeout(config.connect_timeout)
            // A redirected POST may turn into a GET or lose its body; better to say where
            // the server points so the operator fixes the base URL.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                BackendError::Unavailable(format!("cannot build the HTTP client: {}", chain(&e)))
            })?;
        Ok(Self {
            client,
            endpoint,
            config,
            schema_refused: AtomicBool::new(false),
        })
    }

    /// The request body; with `response_format` unless `with_schema` is false.
    fn body(&self, request: &GenerationRequest, with_schema: bool) -> Result<Bytes, BackendError> {
        let stop: Vec<&str> = request
            .stop
            .iter()
            .map(String::as_str)
            .filter(|s| !s.is_empty())
            .take(MAX_API_STOPS)
            .collect();
        let response_format = match &request.format {
            OutputFormat::JsonSchema { name, schema, .. } if with_schema => Some(ResponseFormat {
                kind: "json_schema",
                json_schema: JsonSchemaFormat {
                    name,
                    schema: api_schema(schema),
                    strict: true,
                },
            }),
            OutputFormat::JsonSchema { .. } | OutputFormat::Text | OutputFormat::Grammar { .. } => {
                None
            }
        };
        let body = ChatRequest {
            model: &self.config.model,
            messages: &request.messages,
            stream: true,
            stream_options: self.config.stream_usage.then_some(StreamOptions {
                include_usage: true,
            }),
            max_tokens: request.max_tokens,
            temperature: request.temperature,
            top_p: request.top_p,
            stop,
            response_format,
        };
        serde_json::to_vec(&body)
            .map(Bytes::from)
            .map_err(|e| BackendError::Protocol(format!("cannot encode the request: {e}")))
    }

    /// The configuration this backend was built from.
    pub fn config(&self) -> &OpenAiConfig {
        &self.config
    }

    /// One request: connection, status, and the body up to the response headers.
    async fn attempt(&self, body: Bytes, deadline: Instant, cancel: &CancellationToken) -> Attempt {
        let mut request = self
            .client
            .post(self.endpoint.clone())
            .header(ACCEPT, "text/event-stream")
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key);
        }
        let response = tokio::select! {
            biased;
            () = cancel.cancelled() => return Attempt::Fatal(BackendError::Cancelled),
            sent = timeout_at(deadline, request.send()) => match sent {
                Err(_) => return Attempt::Fatal(self.first_token_timeout()),
                // Nothing reached the caller yet, so any failure to get a response is safe
                // to retry (refused connection, reset, stale pooled connection).
                Ok(Err(e)) => return Attempt::Retry {
                    error: BackendError::Transport(chain(&e)),
                    retry_after: None,
                },
                Ok(Ok(response)) => response,
            },
        };
        let status = response.status();
        if status.is_success() {
            let json = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/json"));
            if json {
                return Attempt::Fatal(BackendError::Protocol(
                    "the server answered with JSON, not an event stream; does it support \
                     \"stream\": true?"
                        .to_owned(),
                ));
            }
            return Attempt::Streaming(response);
        }
        let retry_after = retry_after(response.headers());
        let message = match read_error_message(response, deadline, cancel).await {
            Some(message) => message,
            None => return Attempt::Fatal(BackendError::Cancelled),
        };
        let message = format!("HTTP {status}: {message}");
        // llama-cpp-python's server answers a body it cannot validate with 500 and the
        // validation error: a refusal of what we sent, which no retry changes.
        if status == StatusCode::INTERNAL_SERVER_ERROR && names_response_format(&message) {
            return Attempt::Refused { status, message };
        }
        match status {
            StatusCode::TOO_MANY_REQUESTS
            | StatusCode::INTERNAL_SERVER_ERROR
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT => Attempt::Retry {
                error: BackendError::Busy(message),
                retry_after,
            },
            _ => Attempt::Refused { status, message },
        }
    }

    /// The error for a first token that did not come in time.
    fn first_token_timeout(&self) -> BackendError {
        BackendError::Timeout(format!(
            "no first token within {:?}",
            self.config.first_token_timeout
        ))
    }
}

#[async_trait::async_trait]
impl Backend for OpenAiBackend {
    fn name(&self) -> &str {
        "openai"
    }

    /// The models served behind such APIs are large enough to translate.
    fn can_translate(&self) -> bool {
        true
    }

    /// Sends the request, retrying as described in the module docs, and returns the token
    /// stream once the server has accepted it. Errors before that (rejected, busy after
    /// retries, timeout, cancelled) are returned here; later ones end the stream.
    async fn generate(
        &self,
        request: GenerationRequest,
        cancel: CancellationToken,
    ) -> Result<EventStream, BackendError> {
        if request.max_tokens == 0 {
            // Some servers reject 0 and others ignore it; nothing to ask for either way.
            return Ok(Box::pin(stream::iter([Ok(Event::Done(Usage::default()))])));
        }
        let mut with_schema = matches!(request.format, OutputFormat::JsonSchema { .. })
            && !self.schema_refused.load(Ordering::Relaxed);
        let mut body = self.body(&request, with_schema)?;
        let mut retry = 0;
        loop {
            let deadline = Instant::now() + self.config.first_token_timeout;
            let (error, retry_after) = match self.attempt(body.clone(), deadline, &cancel).await {
                Attempt::Streaming(response) => {
                    return Ok(TokenStream {
                        response,
                        parser: SseParser::new(),
                        cancel,
                        first_token_deadline: deadline,
                        first_token_timeout: self.config.first_token_timeout,
                        idle_timeout: self.config.idle_timeout,
                        deltas: 0,
                        max_tokens: request.max_tokens,
                        stops: StopFilter::new(&request.stop),
                        usage: None,
                        finished: false,
                        eof: false,
                        ending: None,
                    }
                    .into_stream());
                }
                Attempt::Refused { status, message } => {
                    if with_schema && refuses_schema(status, &message) {
                        // Once per backend; this retry does not count against
                        // `max_retries`, as the server answered at once.
                        tracing::info!(
                            %status,
                            "the server refuses response_format json_schema; asking without it"
                        );
                        self.schema_refused.store(true, Ordering::Relaxed);
                        with_schema = false;
                        body = self.body(&request, false)?;
                        continue;
                    }
                    return Err(BackendError::Rejected(message));
                }
                Attempt::Fatal(error) => return Err(error),
                Attempt::Retry { error, retry_after } => (error, retry_after),
            };
            if retry >= self.config.max_retries {
                return Err(error);
            }
            let delay = match retry_after {
                Some(asked) => asked.min(self.config.max_backoff),
                None => backoff(self.config.initial_backoff, self.config.max_backoff, retry),
            };
            retry += 1;
            tracing::debug!(retry, delay_ms = delay.as_millis() as u64, %error, "retrying");
            tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(BackendError::Cancelled),
                () = tokio::time::sleep(delay) => {}
            }
        }
    }
}

/// How one request went.
enum Attempt {
    /// Accepted: the body is the event stream.
    Streaming(reqwest::Response),
    /// Failed in a way worth another try; `retry_after` is the server's requested delay.
    Retry {
        /// The error to report if no retry is left.
        error: BackendError,
        /// From `retry-after-ms` or `Retry-After`, when the server sent one.
        retry_after: Option<Duration>,
    },
    /// The server refused the request (a 4xx other than 429): not retried as such.
    Refused {
        /// The response status.
        status: StatusCode,
        /// `HTTP {status}: {server's message}`.
        message: String,
    },
    /// Failed for good.
    Fatal(BackendError),
}

/// Whether a refusal is about the `response_format` we sent: a 400 or 422 whose message
/// names it (OpenAI, vLLM and llama.cpp's server all name the field), or the 500 with a
/// validation error naming it that llama-cpp-python's server answers.
fn refuses_schema(status: StatusCode, message: &str) -> bool {
    matches!(
        status,
        StatusCode::BAD_REQUEST
            | StatusCode::UNPROCESSABLE_ENTITY
            | StatusCode::INTERNAL_SERVER_ERROR
    ) && names_response_format(message)
}

/// Whether an error message names the request's `response_format`.
fn names_response_format(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    ["response_format", "json_schema", "response format"]
        .iter()
        .any(|name| message.contains(name))
}

/// The schema as sent to an API: without `minLength`/`maxLength`, which strict structured
/// output refuses and which only budget the small local model's tokens.
fn api_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(key, _)| !matches!(key.as_str(), "minLength" | "maxLength"))
                .map(|(key, value)| (key.clone(), api_schema(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(api_schema).collect()),
        other => other.clone(),
    }
}

/// The delay before retry number `retry` (0-based): `initial` doubled per retry, capped at
/// `max`, with "equal jitter" (half fixed, half random) so that clients refused together do
/// not come back together.
pub(crate) fn backoff(initial: Duration, max: Duration, retry: u32) -> Duration {
    let factor = 1u32.checked_shl(retry).unwrap_or(u32::MAX);
    let full = initial.saturating_mul(factor).min(max);
    full / 2 + full.mul_f64(0.5 * rand::random::<f64>())
}

/// The server's requested delay: OpenAI's `retry-after-ms`, else `Retry-After` in seconds
/// (decimals accepted). The HTTP-date form is ignored in favour of our own backoff.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    if let Some(ms) = number("retry-after-ms") {
        return Duration::try_from_secs_f64(ms / 1000.0).ok();
    }
    number(RETRY_AFTER.as_str()).and_then(|s| Duration::try_from_secs_f64(s).ok())
}

/// Reads at most [`ERROR_BODY_LIMIT`] bytes of an error response (until `deadline`) and
/// extracts the server's message. `None` means the caller cancelled meanwhile.
pub(crate) async fn read_error_message(
    mut response: reqwest::Response,
    deadline: Instant,
    cancel: &CancellationToken,
) -> Option<String> {
    let reason = response
        .status()
        .canonical_reason()
        .unwrap_or("error")
        .to_owned();
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_LIMIT {
        tokio::select! {
            biased;
            () = cancel.cancelled() => return None,
            chunk = timeout_at(deadline, response.chunk()) => match chunk {
                Ok(Ok(Some(bytes))) => body.extend_from_slice(&bytes),
                // End of body, a broken body or no time left: use what we have.
                _ => break,
            },
        }
    }
    body.truncate(ERROR_BODY_LIMIT);
    let message = match serde_json::from_slice::<Value>(&body) {
        Ok(value) => message_in(&value),
        Err(_) => Some(String::from_utf8_lossy(&body).trim().to_owned()).filter(|m| !m.is_empty()),
    };
    Some(truncate(message.unwrap_or(reason)))
}

/// The human-readable message in an error body, whatever the server's dialect: OpenAI and
/// vLLM `{"error": {"message"}}`, Ollama and TGI `{"error": "…"}`, FastAPI `{"detail"}`,
/// and Gemini's list-wrapped `[{"error": …}]`.
fn message_in(value: &Value) -> Option<String> {
    match value {
        Value::Array(items) => items.first().and_then(message_in),
        Value::Object(map) => {
            match map.get("error") {
                Some(Value::String(message)) => return Some(message.clone()),
                Some(inner @ (Value::Object(_) | Value::Array(_))) => {
                    if let Some(message) = message_in(inner) {
                        return Some(message);
                    }
                }
                _ => {}
            }
            ["message", "detail", "msg"]
                .iter()
                .find_map(|key| match map.get(*key) {
                    Some(Value::String(message)) => Some(message.clone()),
                    Some(inner @ Value::Array(_)) => message_in(inner),
                    _ => None,
                })
        }
        _ => None,
    }
}

/// An HTTP-like status code in an error object (`{"error": {"code": 400}}` or `{"code": …}`).
fn code_in(value: &Value) -> Option<u16> {
    let code = value
        .get("error")
        .and_then(|e| e.get("code"))
        .or_else(|| value.get("code"))?;
    match code {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The error for an error the server reported inside the stream. Its code, when it looks
/// like an HTTP status, decides the kind as a response status would; it is never retried,
/// because the request was already accepted.
fn stream_error(payload: &Value) -> BackendError {
    let message = truncate(message_in(payload).unwrap_or_else(|| "unknown error".to_owned()));
    match code_in(payload) {
        Some(429) | Some(500..=599) => BackendError::Busy(message),
        Some(400..=499) => BackendError::Rejected(message),
        _ => BackendError::Transport(format!("the server reported an error: {message}")),
    }
}

/// Limits a server-provided message to [`ERROR_MESSAGE_LIMIT`] characters.
fn truncate(message: String) -> String {
    match message.char_indices().nth(ERROR_MESSAGE_LIMIT) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message,
    }
}

/// An error with its sources, e.g. "error sending request: connection refused"; reqwest's
/// own `Display` leaves the useful part in the source chain.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// TLS with rustls on aws-lc (the crypto the rest of the workspace uses, so `ring` is not
/// built) and the system's trusted roots. Plain `http` needs no roots, so tests and local
/// servers do not depend on the system store.
pub(crate) fn tls_config(https: bool) -> Result<rustls::ClientConfig, BackendError> {
    let mut roots = rustls::RootCertStore::empty();
    if https {
        let loaded = rustls_native_certs::load_native_certs();
        let (added, _unparsable) = roots.add_parsable_certificates(loaded.certs);
        if added == 0 {
            return Err(BackendError::Unavailable(
                "no trusted root certificates found on this system (install ca-certificates)"
                    .to_owned(),
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BackendError::Unavailable(format!("TLS set-up failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The request body of `POST /chat/completions`.
#[derive(Serialize)]
struct ChatRequest<'a> {
    /// The configured model.
    model: &'a str,
    /// The conversation.
    messages: &'a [Message],
    /// Always true: we stream.
    stream: bool,
    /// Asks for a final usage chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    /// Most tokens to generate.
    max_tokens: u32,
    /// Sampling temperature.
    temperature: f32,
    /// Nucleus sampling mass.
    top_p: f32,
    /// Up to [`MAX_API_STOPS`] stop sequences.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop: Vec<&'a str>,
    /// The JSON Schema the answer must follow, when the request has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<ResponseFormat<'a>>,
}

/// `response_format` of the request.
#[derive(Serialize)]
struct ResponseFormat<'a> {
    /// Always `json_schema`.
    #[serde(rename = "type")]
    kind: &'static str,
    /// The schema and its name.
    json_schema: JsonSchemaFormat<'a>,
}

/// `response_format.json_schema` of the request.
#[derive(Serialize)]
struct JsonSchemaFormat<'a> {
    /// The schema's name (APIs require one).
    name: &'a str,
    /// The schema, as [`api_schema`] sends it.
    schema: Value,
    /// Ask for the schema to be enforced, not just hinted.
    strict: bool,
}

/// `stream_options` of the request.
#[derive(Serialize)]
struct StreamOptions {
    /// Ask for a final chunk carrying `usage`.
    include_usage: bool,
}

/// One streamed chunk; fields we do not use (ids, `reasoning_content`, logprobs) are skipped
/// by serde without being allocated.
#[derive(Deserialize)]
struct Chunk<'a> {
    /// Usually one choice; null or absent in the final usage chunk of some servers.
    #[serde(default, borrow)]
    choices: Option<Vec<Choice<'a>>>,
    /// Token counts, in the final chunk.
    #[serde(default)]
    usage: Option<ChunkUsage>,
    /// An error reported in place of a chunk.
    #[serde(default)]
    error: Option<Value>,
}

/// One choice of a chunk.
#[derive(Deserialize)]
struct Choice<'a> {
    /// The new text, if any.
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
    /// Set (to any value) on the choice's last chunk.
    #[serde(default)]
    finish_reason: Option<IgnoredAny>,
}

/// The increment of a choice.
#[derive(Deserialize)]
struct Delta<'a> {
    /// Answer text; borrowed from the event unless it contains escapes.
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
}

/// `usage` of a chunk; servers that send only `total_tokens` give zeros.
#[derive(Deserialize)]
struct ChunkUsage {
    /// Prompt tokens.
    #[serde(default)]
    prompt_tokens: u32,
    /// Generated tokens.
    #[serde(default)]
    completion_tokens: u32,
}

/// What one step of the token stream produced.
enum Step {
    /// A token; more may follow.
    Item(Event),
    /// The last item: `Done` or an error.
    Last(Result<Event, BackendError>),
}

/// The state behind an [`EventStream`]: it owns the response, so dropping it closes the
/// connection.
struct TokenStream {
    /// The streaming HTTP response.
    response: reqwest::Response,
    /// Framing of the response body.
    parser: SseParser,
    /// The caller's cancellation.
    cancel: CancellationToken,
    /// When the first token must have arrived (set when the request was sent).
    first_token_deadline: Instant,
    /// For the timeout message.
    first_token_timeout: Duration,
    /// Longest gap between chunks after the first token.
    idle_timeout: Duration,
    /// Content deltas received so far; also the fallback completion token count.
    deltas: u32,
    /// The request's `max_tokens`: the stream ends after that many content deltas.
    max_tokens: u32,
    /// The request's stop sequences, all of them (the server got at most four).
    stops: StopFilter,
    /// Usage reported by the server, if any.
    usage: Option<Usage>,
    /// A `finish_reason` has been seen, so a close without `[DONE]` is still a clean end.
    finished: bool,
    /// The body has ended; only what the parser still holds remains.
    eof: bool,
    /// The last item, when the answer is over but a last piece of text goes first.
    ending: Option<Result<Event, BackendError>>,
}

impl TokenStream {
    /// Wraps the state into the stream handed to the caller. After the last item the state
    /// (and with it the HTTP response) is dropped at once, not when the caller drops the
    /// stream.
    fn into_stream(self) -> EventStream {
        Box::pin(stream::unfold(Some(self), |state| async move {
            let mut state = state?;
            match state.step().await {
                Step::Item(event) => Some((Ok(event), Some(state))),
                Step::Last(last) => Some((last, None)),
            }
        }))
    }

    /// Produces the next item, reading from the network only when the parser has nothing.
    async fn step(&mut self) -> Step {
        if let Some(last) = self.ending.take() {
            return Step::Last(last);
        }
        loop {
            if self.cancel.is_cancelled() {
                return Step::Last(Err(BackendError::Cancelled));
            }
            if let Some(event) = self.parser.next_event() {
                match self.on_event(event) {
                    Some(step) => return step,
                    None => continue,
                }
            }
            if self.eof {
                if self.finished {
                    return self.end(Ok(Event::Done(self.usage())));
                }
                return Step::Last(Err(BackendError::Transport(
                    "the stream ended before the answer was complete".to_owned(),
                )));
            }
            let deadline = if self.deltas == 0 {
                self.first_token_deadline
            } else {
                Instant::now() + self.idle_timeout
            };
            let chunk = tokio::select! {
                biased;
                () = self.cancel.cancelled() => return Step::Last(Err(BackendError::Cancelled)),
                chunk = timeout_at(deadline, self.response.chunk()) => chunk,
            };
            match chunk {
                Ok(Ok(Some(bytes))) => self.parser.push(&bytes),
                Ok(Ok(None)) => {
                    self.eof = true;
                    self.parser.finish();
                }
                Ok(Err(e)) => return Step::Last(Err(BackendError::Transport(chain(&e)))),
                Err(_) if self.deltas == 0 => {
                    return Step::Last(Err(BackendError::Timeout(format!(
                        "no first token within {:?}",
                        self.first_token_timeout
                    ))));
                }
                Err(_) => {
                    return Step::Last(Err(BackendError::Timeout(format!(
                        "no data for {:?} in the middle of the answer",
                        self.idle_timeout
                    ))));
                }
            }
        }
    }

    /// Interprets one event; `None` when it carries nothing for the caller (role-only delta,
    /// usage, keep-alive, unknown event type).
    fn on_event(&mut self, event: SseEvent) -> Option<Step> {
        if event.event == "error" {
            let payload = serde_json::from_str(&event.data)
                .unwrap_or_else(|_| Value::String(event.data.clone()));
            let payload = match payload {
                message @ Value::String(_) => serde_json::json!({ "error": message }),
                other => other,
            };
            return Some(Step::Last(Err(stream_error(&payload))));
        }
        if event.event != "message" {
            return None;
        }
        if event.data.trim() == "[DONE]" {
            self.drain();
            return Some(self.end(Ok(Event::Done(self.usage()))));
        }
        let chunk: Chunk<'_> = match serde_json::from_str(&event.data) {
            Ok(chunk) => chunk,
            // serde_json's message gives a position, never the text itself.
            Err(e) => {
                return Some(Step::Last(Err(BackendError::Protocol(format!(
                    "invalid JSON in the stream: {e}"
                )))));
            }
        };
        if let Some(error) = chunk.error {
            let payload = serde_json::json!({ "error": error });
            return Some(Step::Last(Err(stream_error(&payload))));
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(Usage {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
            });
        }
        let choice = chunk.choices?.into_iter().next()?;
        if choice.finish_reason.is_some() {
            self.finished = true;
        }
        let content = choice.delta?.content?;
        if content.is_empty() {
            return None;
        }
        self.deltas = self.deltas.saturating_add(1);
        let text = self.stops.push(&content);
        if self.stops.stopped() || self.deltas >= self.max_tokens {
            // Ours to end: the server's final usage will not be read, so the completion
            // is what was let through.
            let usage = Usage {
                prompt_tokens: self.usage.map_or(0, |usage| usage.prompt_tokens),
                completion_tokens: self.deltas,
            };
            let last = Ok(Event::Done(usage));
            if text.is_empty() {
                return Some(Step::Last(last));
            }
            self.ending = Some(last);
            return Some(Step::Item(Event::Token(text)));
        }
        if text.is_empty() {
            return None;
        }
        Some(Step::Item(Event::Token(text)))
    }

    /// Ends the stream with `last`, after the text the stop sequences still held back (it
    /// did not start one after all).
    fn end(&mut self, last: Result<Event, BackendError>) -> Step {
        let held = self.stops.finish();
        if held.is_empty() {
            return Step::Last(last);
        }
        self.ending = Some(last);
        Step::Item(Event::Token(held))
    }

    /// The reported usage, or the estimate described in the module docs.
    fn usage(&self) -> Usage {
        self.usage.unwrap_or(Usage {
            prompt_tokens: 0,
            completion_tokens: self.deltas,
        })
    }

    /// Reads what is already buffered after `[DONE]` (normally just the end of the body)
    /// without waiting, so a finished connection goes back to the pool instead of being
    /// closed; saves a TLS handshake per request to hosted APIs.
    fn drain(&mut self) {
        for _ in 0..4 {
            match self.response.chunk().now_or_never() {
                Some(Ok(Some(_))) => {}
                _ => return,
            }
        }
    }
}
