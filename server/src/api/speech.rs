//! Speech input for the chat: a member records a question, the server has it transcribed
//! by an OpenAI-compatible speech server (`lectern_ai::speech`), posts the text in the
//! session's chat as that member's message, and, when asked, starts a chat AI job
//! answering it.
//!
//! # Why it behaves as it does
//! - **Cheap refusals first.** A declared `Content-Length` over the limit is refused before
//!   a byte is read. Whether speech is configured, who may write the chat and the rate limit
//!   are decided before any audio is kept: a refused body is read to its end and thrown
//!   away (bounded), because HTTP clients still sending it would otherwise see a broken
//!   pipe instead of the answer. The size is checked while the body is read (never more
//!   than `--speech-max-bytes` and the form's framing is held); the format (by its bytes)
//!   and a WAV's duration (from its header) before anything is sent to the speech server.
//!   Compressed formats would have to be decoded to know their length, so they are bounded
//!   by size and by the speech server.
//! - **A typed message, written by the server.** The message has the shape of any chat
//!   message a member types (docs/ai.md, "Chat"), with the speaker as its author; it goes
//!   through `Rooms::edit`, so it is persisted and broadcast like any edit. With `ask_ai`
//!   the chat job posts it instead, as every chat job posts its question, so the answer
//!   that follows replies to it.
//! - **Nothing said is lost.** When `ask_ai` is set but the job cannot start (AI off, over
//!   a limit), the message is posted anyway and the answer says why no job started.
//! - **Privacy.** Neither the audio nor the transcript is logged.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use yrs::{Array, ArrayPrelim, In, MapPrelim, TextPrelim, WriteTxn};

use lectern_ai::speech::{AudioFormat, SpeechClient, SpeechConfig, SpeechError, duration};
use lectern_collab::DocId;
use lectern_db::accounts::Role;
use lectern_db::sessions::SessionState;
use lectern_db::{Classrooms, Sessions};

use crate::access::Access;
use crate::ai::{MAX_PROMPT_CHARS, Requester};
use crate::api::RateLimiter;
use crate::api::dto::{
    AiJobKind, AiJobRequest, ErrorBody, ErrorDetail, SpeechForm, SpeechResponse,
};
use crate::api::error::ApiError;
use crate::api::extract::Account;
use crate::api::text;
use crate::auth::{Origin, Principal, now_secs};
use crate::cluster_store::ClusterStore;
use crate::{AppState, Config};

/// Multipart framing allowed on top of the recording before `Content-Length` alone says
/// the request is too large.
const MULTIPART_OVERHEAD: u64 = 16 * 1024;

/// Longest time spent reading the rest of a refused request's body (see [`discard`]).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest value of the small form fields (`ask_ai`, `language`), in bytes.
const MAX_FIELD_BYTES: usize = 16;

/// Root `Y.Array` of the chat document (docs/ai.md).
const CHAT_MESSAGES: &str = "messages";

/// Speech input: the speech server's client (or why there is none), the limits, and the
/// per-user rate limit.
#[derive(Debug)]
pub(crate) struct Speech {
    /// The client, or a sentence saying why speech input is unavailable and how to fix it.
    client: Result<Arc<SpeechClient>, Arc<str>>,
    /// Largest recording, in bytes.
    max_bytes: u64,
    /// Longest recording (checked for WAV).
    max_duration: Duration,
    /// Recordings per user per minute: transcription costs as much as an AI job, so it has
    /// the same limit (`--ai-jobs-per-minute`), in a bucket of its own.
    rate: RateLimiter,
}

impl Speech {
    /// Speech input as `config` describes it; rate limits shared through `store`. Never
    /// fails: a configuration that cannot work is reported on every speech request, so
    /// the rest of the server still serves.
    pub(crate) fn from_config(config: &Config, store: &ClusterStore) -> Self {
        let client = match &config.speech_base_url {
            None => Err(
                "speech input is not configured on this server: start it with \
                 --speech-base-url (LECTERN_SPEECH_BASE_URL) pointing at an \
                 OpenAI-compatible speech-to-text server, e.g. http://127.0.0.1:8000/v1"
                    .into(),
            ),
            Some(base_url) => {
                let mut speech = SpeechConfig::new(base_url.clone(), config.speech_model.clone());
                speech.api_key = config
                    .speech_api_key
                    .as_ref()
                    .map(|secret| secret.expose().to_owned());
                speech.request_timeout = Duration::from_secs(config.speech_timeout_secs);
                SpeechClient::new(speech).map(Arc::new).map_err(|error| {
                    format!("speech input cannot be set up: {error}; check --speech-base-url")
                        .into()
                })
            }
        };
        Self {
            client,
            max_bytes: config.speech_max_bytes,
            max_duration: Duration::from_secs(u64::from(config.speech_max_seconds)),
            rate: RateLimiter::new(
                "speech",
                config.ai_jobs_per_minute,
                config.ai_jobs_per_minute,
                store,
            ),
        }
    }
}

/// Transcribes a recording and posts it in the session's chat as the caller's message;
/// with `ask_ai=true` a chat AI job answers it.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/chat/speech", tag = "ai", operation_id = "post_chat_speech",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Session id")),
    request_body(content_type = "multipart/form-data", content = SpeechForm, description = "Field `audio`: a WAV, WebM, Ogg or MP3 recording; optional `ask_ai` (`true`/`false`) and `language` (ISO-639-1)"),
    responses(
        (status = 201, description = "Posted in the chat (and, with `ask_ai`, the job answering it)", body = SpeechResponse),
        (status = 400, description = "Not multipart, no `audio` field, an unknown or repeated field, or an invalid `ask_ai` or `language`", body = ErrorBody),
        (status = 403, description = "Not a member, or may not write the chat (a locked session)", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "`session_ended`", body = ErrorBody),
        (status = 413, description = "`payload_too_large` (over `--speech-max-bytes`) or `audio_too_long` (over `--speech-max-seconds`)", body = ErrorBody),
        (status = 415, description = "`unsupported_file_type`: not WAV, WebM, Ogg or MP3", body = ErrorBody),
        (status = 422, description = "`unreadable_file`: empty, a damaged WAV header, refused by the speech server, or no speech recognised", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
        (status = 503, description = "`speech_unavailable`: not configured, or the speech server cannot be reached, is busy or failed", body = ErrorBody),
    )
)]
pub async fn post_chat_speech(
    State(state): State<AppState>,
    account: Account,
    Path(session_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<SpeechResponse>), ApiError> {
    let speech = state.speech();
    let limit = speech.max_bytes.saturating_add(MULTIPART_OVERHEAD);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        // Refused before reading a byte of it.
        return Err(ApiError::PayloadTooLarge);
    }
    let (client, chat) = match admit(&state, speech, &account, &session_id).await {
        Ok(admitted) => admitted,
        Err(error) => {
            discard(body, limit).await;
            return Err(error);
        }
    };
    let body = read_body(body, limit).await?;
    let form = read_form(&headers, body, speech.max_bytes).await?;
    if form.audio.is_empty() {
        return Err(ApiError::UnreadableFile("the recording is empty".into()));
    }
    let format = AudioFormat::sniff(&form.audio).ok_or_else(|| {
        ApiError::UnsupportedFileType(
            "the recording is not WAV, WebM, Ogg or MP3 audio (judged by its content)".into(),
        )
    })?;
    // The length from the container; a WAV always declares it, so a WAV without one is
    // damaged, while a compressed file whose length cannot be told is bounded by its size.
    match duration(format, &form.audio) {
        Some(length) if length > speech.max_duration => {
            return Err(ApiError::AudioTooLong(format!(
                "the recording is {:.0} s long; at most {} s are accepted",
                length.as_secs_f64().ceil(),
                speech.max_duration.as_secs()
            )));
        }
        None if format == AudioFormat::Wav => {
            return Err(ApiError::UnreadableFile("the WAV header is damaged".into()));
        }
        Some(_) | None => {}
    }
    let transcript = client
        .transcribe(form.audio, format, form.language.as_deref())
        .await
        .map_err(from_speech_error)?;
    let text = clean(&transcript);
    if text.is_empty() {
        return Err(ApiError::UnreadableFile(
            "no speech was recognised in the recording".into(),
        ));
    }

    let mut job = None;
    let mut ai_error = None;
    if form.ask_ai {
        let requester = Requester {
            user_id: account.id.clone(),
            role: account.role,
        };
        let request = AiJobRequest {
            kind: AiJobKind::Chat,
            prompt: Some(text.clone()),
            material_ids: None,
            language: None,
            source_doc_id: None,
        };
        match state.ai().start(&requester, &session_id, request).await {
            Ok(started) => job = Some(started),
            Err(error) => ai_error = Some(error_detail(ApiError::from(error))),
        }
    }
    let message_id = match &job {
        // The job posts the question itself as it starts (see `ai::run`).
        Some(job) => format!("{}-question", job.job_id),
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            post_message(&state, &chat, &id, &account.id, &text).await?;
            id
        }
    };
    Ok((
        StatusCode::CREATED,
        Json(SpeechResponse {
            text,
            doc_id: chat.as_str().to_owned(),
            message_id,
            job,
            ai_error,
        }),
    ))
}

/// Whether `account` may speak into the session's chat now: speech is configured, the
/// chat is theirs to write, and they are within the rate limit. Returns the speech client
/// and the chat document.
async fn admit<'a>(
    state: &AppState,
    speech: &'a Speech,
    account: &Account,
    session_id: &str,
) -> Result<(&'a SpeechClient, DocId), ApiError> {
    let client = speech
        .client
        .as_ref()
        .map_err(|reason| ApiError::SpeechUnavailable(reason.to_string()))?;
    let chat = chat_writer(state, account, session_id).await?;
    speech
        .rate
        .check(&account.id)
        .await
        .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    Ok((client, chat))
}

/// Reads and throws away the rest of a refused request's body (at most `limit` bytes, for
/// at most [`DRAIN_TIMEOUT`]). HTTP clients (browsers' and Node's `fetch`) still sending a
/// recording when the answer comes and the connection closes report a broken pipe, not
/// the answer; read to its end, the body costs bandwidth but no memory, and the caller
/// sees why it was refused.
async fn discard(body: Body, limit: u64) {
    let mut stream = body.into_data_stream();
    let drain = async {
        let mut read = 0u64;
        while let Some(Ok(chunk)) = stream.next().await {
            read = read.saturating_add(u64::try_from(chunk.len()).unwrap_or(u64::MAX));
            if read > limit {
                break;
            }
        }
    };
    // Past the deadline the connection is closed with the answer, as before.
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
}

/// The whole request body, or 413 once it proves longer than `limit` (a client that sent no
/// `Content-Length`, or a wrong one).
async fn read_body(body: Body, limit: u64) -> Result<Bytes, ApiError> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut stream = body.into_data_stream();
    let mut bytes = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| {
            ApiError::InvalidRequest(format!("the request body could not be read: {error}"))
        })?;
        if bytes.len().saturating_add(chunk.len()) > limit {
            return Err(ApiError::PayloadTooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes.freeze())
}

/// The session's chat document, if `account` may write it: 404 for no such session, 403
/// for a non-member (admins excepted) or without write access (a locked session), 409
/// once the session has ended.
async fn chat_writer(
    state: &AppState,
    account: &Account,
    session_id: &str,
) -> Result<DocId, ApiError> {
    let database = state.database();
    let session = Sessions::new(database.clone())
        .get(session_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let membership = Classrooms::new(database.clone())
        .membership(&session.classroom_id, &account.id)
        .await?;
    if membership.is_none() && account.role != Role::Admin {
        return Err(ApiError::Forbidden);
    }
    if session.state == SessionState::Ended {
        return Err(ApiError::SessionEnded);
    }
    let chat = DocId::new(&format!("session/{session_id}/chat")).map_err(|_| ApiError::NotFound)?;
    let principal = Principal {
        subject: account.id.clone(),
        role: account.role,
        origin: Origin::Local,
        docs: None,
        expires_at: 0,
        session: None,
    };
    match crate::access::resolve(database, &principal, chat.as_str()).await? {
        Some(Access::Write) => Ok(chat),
        Some(Access::Read) | None => Err(ApiError::Forbidden),
    }
}

/// The fields of the form.
struct SpeechRequest {
    /// The recording.
    audio: Bytes,
    /// Whether a chat AI job should answer it.
    ask_ai: bool,
    /// The spoken language (ISO-639-1), when the client knows it.
    language: Option<String>,
}

/// Parses the multipart form in `body`; the recording may be at most `max_bytes` long.
async fn read_form(
    headers: &HeaderMap,
    body: Bytes,
    max_bytes: u64,
) -> Result<SpeechRequest, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        ApiError::InvalidRequest(
            "send the recording as multipart/form-data in a field named `audio`".into(),
        )
    })?;
    let max_audio = usize::try_from(max_bytes).unwrap_or(usize::MAX);
    let body = futures_util::stream::once(async move { Ok::<_, Infallible>(body) });
    let mut multipart = multer::Multipart::new(body, boundary);
    let mut audio = None;
    let mut ask_ai = None;
    let mut language = None;
    while let Some(mut field) = multipart.next_field().await.map_err(malformed)? {
        let name = field.name().unwrap_or_default().to_owned();
        let repeated = match name.as_str() {
            "audio" => audio.is_some(),
            "ask_ai" => ask_ai.is_some(),
            "language" => language.is_some(),
            _ => {
                return Err(ApiError::InvalidRequest(format!(
                    "unknown form field {name:?}: the form takes `audio`, `ask_ai` and `language`"
                )));
            }
        };
        if repeated {
            return Err(ApiError::InvalidRequest(format!(
                "the form field `{name}` appears more than once"
            )));
        }
        match name.as_str() {
            "audio" => {
                audio = Some(
                    read_field(&mut field, max_audio)
                        .await?
                        .ok_or(ApiError::PayloadTooLarge)?,
                );
            }
            "ask_ai" => {
                let value = small_field(&mut field, &name).await?;
                ask_ai = Some(match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(ApiError::InvalidRequest(
                            "`ask_ai` must be `true` or `false`".into(),
                        ));
                    }
                });
            }
            _ => {
                let value = small_field(&mut field, &name).await?;
                if value.len() != 2 || !value.bytes().all(|byte| byte.is_ascii_lowercase()) {
                    return Err(ApiError::InvalidRequest(
                        "`language` must be an ISO-639-1 code of two lowercase letters, e.g. `en`"
                            .into(),
                    ));
                }
                language = Some(value);
            }
        }
    }
    Ok(SpeechRequest {
        audio: audio.ok_or_else(|| {
            ApiError::InvalidRequest("the form has no field named `audio`".into())
        })?,
        ask_ai: ask_ai.unwrap_or(false),
        language,
    })
}

/// A field's bytes, or `None` as soon as it proves longer than `limit`.
async fn read_field(
    field: &mut multer::Field<'static>,
    limit: usize,
) -> Result<Option<Bytes>, ApiError> {
    let mut bytes = BytesMut::new();
    while let Some(chunk) = field.chunk().await.map_err(malformed)? {
        if bytes.len().saturating_add(chunk.len()) > limit {
            return Ok(None);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Some(bytes.freeze()))
}

/// A short text field's value.
async fn small_field(field: &mut multer::Field<'static>, name: &str) -> Result<String, ApiError> {
    let bytes = read_field(field, MAX_FIELD_BYTES)
        .await?
        .ok_or_else(|| ApiError::InvalidRequest(format!("the form field `{name}` is too long")))?;
    String::from_utf8(bytes.to_vec())
        .map_err(|_| ApiError::InvalidRequest(format!("the form field `{name}` is not UTF-8")))
}

fn malformed(error: multer::Error) -> ApiError {
    ApiError::InvalidRequest(format!("malformed multipart body: {error}"))
}

/// The transcript as a chat message: without control characters (the API's rule for any
/// text), with the speech server's segment breaks and runs of spaces made single spaces,
/// trimmed, and at most as long as an AI question may be (two minutes of speech are far
/// shorter).
fn clean(transcript: &str) -> String {
    let words: Vec<&str> = transcript
        .split(|c: char| c.is_whitespace() || text::is_forbidden(c))
        .filter(|word| !word.is_empty())
        .collect();
    words.join(" ").chars().take(MAX_PROMPT_CHARS).collect()
}

/// What a failed transcription means for the caller. Details that only an operator can
/// act on (addresses, the server's own errors) are logged, not sent.
fn from_speech_error(error: SpeechError) -> ApiError {
    let unavailable = |message: &str| {
        tracing::warn!(
            error = &error as &dyn std::error::Error,
            "transcription failed"
        );
        ApiError::SpeechUnavailable(message.to_owned())
    };
    match &error {
        SpeechError::Rejected {
            status: 400 | 413 | 415 | 422,
            message,
        } => ApiError::UnreadableFile(format!(
            "the speech server could not use this recording: {message}"
        )),
        SpeechError::Rejected { .. } | SpeechError::Protocol(_) | SpeechError::Config(_) => {
            unavailable(
                "the speech server failed to transcribe the recording; if this persists, the \
                 administrator should check --speech-base-url, --speech-model and \
                 --speech-api-key and the speech server's log",
            )
        }
        SpeechError::Transport(_) => {
            unavailable("the speech server cannot be reached; try again later")
        }
        SpeechError::Busy(_) => unavailable("the speech server is busy; try again shortly"),
        SpeechError::Timeout(_) => unavailable(
            "the speech server did not answer in time; try a shorter recording or try again later",
        ),
    }
}

/// The body of `error`, as a response would carry it; a server-side failure is logged
/// here, since it is never turned into a response.
fn error_detail(error: ApiError) -> ErrorDetail {
    if let ApiError::Internal(source) = &error {
        tracing::error!(
            error = &**source as &dyn std::error::Error,
            "the AI job answering a spoken message could not start"
        );
    }
    let (_, code) = error.parts();
    ErrorDetail {
        code,
        message: error.to_string(),
    }
}

/// Appends `text` to the chat as `author`'s message `id`, in the shape of a typed message.
async fn post_message(
    state: &AppState,
    chat: &DocId,
    id: &str,
    author: &str,
    text: &str,
) -> Result<(), ApiError> {
    let id = id.to_owned();
    let author = author.to_owned();
    let text = text.to_owned();
    let created_at = i64::try_from(now_secs()).unwrap_or(i64::MAX);
    // What someone said is their contribution.
    let user = crate::credentials::user_tag(&author);
    state
        .rooms()
        .edit(chat, &user, move |txn| {
            let messages = txn.get_or_insert_array(CHAT_MESSAGES);
            let message: MapPrelim = MapPrelim::from_iter([
                ("id", In::from(id.as_str())),
                ("role", In::from("user")),
                ("author", In::from(author.as_str())),
                ("text", In::from(TextPrelim::new(text.as_str()))),
                ("citations", In::from(ArrayPrelim::default())),
                ("status", In::from("done")),
                ("created_at", In::from(created_at)),
            ]);
            messages.push_back(txn, message);
        })
        .await
        .map_err(ApiError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcripts_lose_controls_and_segment_breaks() {
        assert_eq!(
            clean(" Where is the\n mitochondrion?\u{0} It  makes\tATP. "),
            "Where is the mitochondrion? It makes ATP."
        );
        assert_eq!(clean(" \n "), "");
        let long = "word ".repeat(MAX_PROMPT_CHARS);
        assert_eq!(clean(&long).chars().count(), MAX_PROMPT_CHARS);
    }
}
