//! The one error type of the REST API and its stable, machine-readable codes.
//!
//! API boundary: [`ErrorCode`] strings are a contract. The TypeScript SDK branches on them,
//! so a code is never renamed or reused for another meaning; new failure kinds get new
//! codes. Every [`ApiError`] maps to its status and code in ONE exhaustive `match`
//! ([`ApiError::parts`]), so adding a variant without deciding its status does not compile.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use lectern_db::DbError;
use lectern_storage::StorageError;

use crate::access::AccessError;
use crate::api::dto::{ErrorBody, ErrorDetail};
use crate::auth::AuthError;
use crate::auth::password::PasswordError;
use crate::materials::{SearchError, UploadError};
use crate::room_effects::RoomEffectsError;

/// Stable error codes sent as `{"error": {"code": ...}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the body or a parameter is malformed or fails validation.
    InvalidRequest,
    /// 401: no `Authorization: Bearer` token was sent.
    Unauthenticated,
    /// 401: the token is malformed, forged, for another audience or algorithm.
    InvalidToken,
    /// 401: the token has expired; refresh it.
    TokenExpired,
    /// 401: wrong email or password.
    InvalidCredentials,
    /// 401: the refresh token is unknown, expired or revoked; log in again.
    InvalidRefreshToken,
    /// 401: the refresh token was already used; its whole family is now revoked.
    RefreshTokenReused,
    /// 401: the API key is wrong (or none is configured).
    InvalidApiKey,
    /// 403: authenticated, but not allowed to do this.
    Forbidden,
    /// 404: no such resource (or route).
    NotFound,
    /// 404: no classroom has this join code (it may have been rotated).
    InvalidJoinCode,
    /// 409: an account with this email already exists.
    EmailTaken,
    /// 409: the last faculty member cannot leave or be removed.
    LastFaculty,
    /// 409: the classroom already has a live or locked session; end it first.
    SessionAlreadyRunning,
    /// 409: the session has ended and cannot change any more.
    SessionEnded,
    /// 413: the request body is larger than the limit.
    PayloadTooLarge,
    /// 415: the uploaded file is not a PDF, Word (.docx), Markdown or text file (judged
    /// by its content, not its name).
    UnsupportedFileType,
    /// 422: the uploaded file cannot be read: empty, password-protected, damaged, too
    /// large once decompressed, or too slow to read. The message says which.
    UnreadableFile,
    /// 429: too many requests for this user; see `Retry-After`.
    RateLimited,
    /// 500: something failed on the server; details are in its log.
    Internal,
    /// 503: the AI model this needs is not ready (being prepared, or unavailable); the
    /// message says why and how to fix it.
    AiUnavailable,
    /// 429: the classroom has used its AI token budget for today (UTC); `Retry-After` says
    /// when it resets.
    AiBudgetExhausted,
    /// 429: the classroom already has as many AI jobs waiting for the model as it may
    /// (`--ai-queue-per-classroom`); try again after `Retry-After`.
    AiQueueFull,
    /// 403: the server's registration policy does not let this account self-register (an
    /// admin creates it); the message says which policy applies.
    RegistrationRefused,
    /// 503: the server is at capacity for this kind of work (password checks, reading
    /// uploaded files); try again after `Retry-After`.
    ServerBusy,
    /// 503: speech input cannot be used: no speech server is configured
    /// (`--speech-base-url`), or it cannot be reached, is busy or failed; the message says
    /// which and how to fix it.
    SpeechUnavailable,
    /// 413: the recording is longer than the server accepts (`--speech-max-seconds`).
    AudioTooLong,
    /// 422: the server's AI model cannot do this kind of job (translation on the embedded
    /// model, which would return the text unchanged); the message says how to fix it.
    AiUnsupported,
    /// 422: a document update sent over REST is not a valid Yjs update (v1), is over the
    /// update limits, or writes under a client id the server reserves; the message says
    /// which.
    UpdateRefused,
    /// 409: a document update sent over REST depends on changes the document does not
    /// have (fetch `format=update&sv=...` and merge first); what could be applied was.
    UpdateIncomplete,
    /// 400: a webhook URL's host is, or resolves to, an address the server does not call
    /// (loopback, private, link-local...) or a `localhost` name; the message says which.
    WebhookAddressRefused,
}

impl ErrorCode {
    /// Every code, for documentation checks.
    pub const ALL: [ErrorCode; 31] = [
        Self::InvalidRequest,
        Self::Unauthenticated,
        Self::InvalidToken,
        Self::TokenExpired,
        Self::InvalidCredentials,
        Self::InvalidRefreshToken,
        Self::RefreshTokenReused,
        Self::InvalidApiKey,
        Self::Forbidden,
        Self::NotFound,
        Self::InvalidJoinCode,
        Self::EmailTaken,
        Self::LastFaculty,
        Self::SessionAlreadyRunning,
        Self::SessionEnded,
        Self::PayloadTooLarge,
        Self::UnsupportedFileType,
        Self::UnreadableFile,
        Self::RateLimited,
        Self::Internal,
        Self::AiUnavailable,
        Self::AiBudgetExhausted,
        Self::AiQueueFull,
        Self::RegistrationRefused,
        Self::ServerBusy,
        Self::SpeechUnavailable,
        Self::AudioTooLong,
        Self::AiUnsupported,
        Self::WebhookAddressRefused,
        Self::UpdateRefused,
        Self::UpdateIncomplete,
    ];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::Unauthenticated => "unauthenticated",
            Self::InvalidToken => "invalid_token",
            Self::TokenExpired => "token_expired",
            Self::InvalidCredentials => "invalid_credentials",
            Self::InvalidRefreshToken => "invalid_refresh_token",
            Self::RefreshTokenReused => "refresh_token_reused",
            Self::InvalidApiKey => "invalid_api_key",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::InvalidJoinCode => "invalid_join_code",
            Self::EmailTaken => "email_taken",
            Self::LastFaculty => "last_faculty",
            Self::SessionAlreadyRunning => "session_already_running",
            Self::SessionEnded => "session_ended",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedFileType => "unsupported_file_type",
            Self::UnreadableFile => "unreadable_file",
            Self::RateLimited => "rate_limited",
            Self::Internal => "internal",
            Self::AiUnavailable => "ai_unavailable",
            Self::AiBudgetExhausted => "ai_budget_exhausted",
            Self::AiQueueFull => "ai_queue_full",
            Self::RegistrationRefused => "registration_refused",
            Self::ServerBusy => "server_busy",
            Self::SpeechUnavailable => "speech_unavailable",
            Self::AudioTooLong => "audio_too_long",
            Self::AiUnsupported => "ai_unsupported",
            Self::WebhookAddressRefused => "webhook_address_refused",
            Self::UpdateRefused => "update_refused",
            Self::UpdateIncomplete => "update_incomplete",
        }
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed; the message says what to fix.
    #[error("{0}")]
    InvalidRequest(String),
    /// No bearer token.
    #[error("authentication required")]
    Unauthenticated,
    /// A token that does not verify.
    #[error("invalid token")]
    InvalidToken,
    /// A token past its expiry.
    #[error("token expired")]
    TokenExpired,
    /// Wrong email or password.
    #[error("wrong email or password")]
    InvalidCredentials,
    /// Unknown, expired or revoked refresh token.
    #[error("refresh token is not valid; log in again")]
    InvalidRefreshToken,
    /// A refresh token presented a second time.
    #[error("refresh token was already used; all sessions of this login are revoked")]
    RefreshTokenReused,
    /// Wrong or unconfigured API key.
    #[error("invalid API key")]
    InvalidApiKey,
    /// Not allowed.
    #[error("not allowed")]
    Forbidden,
    /// No such resource.
    #[error("not found")]
    NotFound,
    /// No classroom has this join code.
    #[error("no classroom has this join code")]
    InvalidJoinCode,
    /// Email already registered.
    #[error("an account with this email already exists")]
    EmailTaken,
    /// Would leave a classroom without faculty.
    #[error("a classroom must keep at least one faculty member")]
    LastFaculty,
    /// The classroom already runs a session.
    #[error("this classroom already has a running session; end it first")]
    SessionAlreadyRunning,
    /// The session has ended.
    #[error("this session has ended")]
    SessionEnded,
    /// Body over the limit.
    #[error("request body is too large")]
    PayloadTooLarge,
    /// An upload of a type that is not supported; the message says what it looks like.
    #[error("{0}")]
    UnsupportedFileType(String),
    /// An upload that cannot be read; the message says why.
    #[error("{0}")]
    UnreadableFile(String),
    /// The AI model is not ready; the message says why.
    #[error("{0}")]
    AiUnavailable(String),
    /// The AI model cannot do this kind of job; the message says how to fix it.
    #[error("{0}")]
    AiUnsupported(String),
    /// The classroom's AI budget for today is spent.
    #[error("{message}")]
    AiBudgetExhausted {
        /// Says the limit and when it resets.
        message: String,
        /// Until the budget resets.
        retry_after: Duration,
    },
    /// Self-registration refused by the registration policy; the message says why.
    #[error("{0}")]
    RegistrationRefused(String),
    /// At capacity for password checks.
    #[error("the server is busy; try again shortly")]
    ServerBusy {
        /// When the caller may try again.
        retry_after: Duration,
    },
    /// The classroom's line of AI jobs waiting for the model is full.
    #[error("{message}")]
    AiQueueFull {
        /// Says the limit.
        message: String,
        /// A hint for when to try again.
        retry_after: Duration,
    },
    /// Over the rate limit.
    #[error("too many requests")]
    RateLimited {
        /// When the caller may try again.
        retry_after: Duration,
    },
    /// Speech input cannot be used; the message says why and how to fix it.
    #[error("{0}")]
    SpeechUnavailable(String),
    /// A recording over the duration limit; the message says its length and the limit.
    #[error("{0}")]
    AudioTooLong(String),
    /// A webhook URL naming an address the server does not call; the message says which.
    #[error("{0}")]
    WebhookAddressRefused(String),
    /// A document update sent over REST was refused; the message says why.
    #[error("{0}")]
    UpdateRefused(String),
    /// A document update sent over REST depends on changes the document lacks.
    #[error(
        "the update depends on changes the document does not have; fetch what you lack (format=update&sv=...) and merge first"
    )]
    UpdateIncomplete,
    /// A server-side failure; logged, never described to the client.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// Wraps any server-side failure.
    pub fn internal(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(error))
    }

    /// The HTTP status and code. The one place that decides them.
    pub fn parts(&self) -> (StatusCode, ErrorCode) {
        match self {
            Self::InvalidRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest),
            Self::Unauthenticated => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated),
            Self::InvalidToken => (StatusCode::UNAUTHORIZED, ErrorCode::InvalidToken),
            Self::TokenExpired => (StatusCode::UNAUTHORIZED, ErrorCode::TokenExpired),
            Self::InvalidCredentials => (StatusCode::UNAUTHORIZED, ErrorCode::InvalidCredentials),
            Self::InvalidRefreshToken => (StatusCode::UNAUTHORIZED, ErrorCode::InvalidRefreshToken),
            Self::RefreshTokenReused => (StatusCode::UNAUTHORIZED, ErrorCode::RefreshTokenReused),
            Self::InvalidApiKey => (StatusCode::UNAUTHORIZED, ErrorCode::InvalidApiKey),
            Self::Forbidden => (StatusCode::FORBIDDEN, ErrorCode::Forbidden),
            Self::NotFound => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            Self::InvalidJoinCode => (StatusCode::NOT_FOUND, ErrorCode::InvalidJoinCode),
            Self::EmailTaken => (StatusCode::CONFLICT, ErrorCode::EmailTaken),
            Self::LastFaculty => (StatusCode::CONFLICT, ErrorCode::LastFaculty),
            Self::SessionAlreadyRunning => (StatusCode::CONFLICT, ErrorCode::SessionAlreadyRunning),
            Self::SessionEnded => (StatusCode::CONFLICT, ErrorCode::SessionEnded),
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::PayloadTooLarge),
            Self::UnsupportedFileType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedFileType,
            ),
            Self::UnreadableFile(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::UnreadableFile)
            }
            Self::AiUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::AiUnavailable),
            Self::AiUnsupported(_) => (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::AiUnsupported),
            Self::AiBudgetExhausted { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, ErrorCode::AiBudgetExhausted)
            }
            Self::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited),
            Self::AiQueueFull { .. } => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::AiQueueFull),
            Self::RegistrationRefused(_) => (StatusCode::FORBIDDEN, ErrorCode::RegistrationRefused),
            Self::ServerBusy { .. } => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::ServerBusy),
            Self::SpeechUnavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::SpeechUnavailable,
            ),
            Self::AudioTooLong(_) => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::AudioTooLong),
            Self::WebhookAddressRefused(_) => {
                (StatusCode::BAD_REQUEST, ErrorCode::WebhookAddressRefused)
            }
            Self::UpdateRefused(_) => (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::UpdateRefused),
            Self::UpdateIncomplete => (StatusCode::CONFLICT, ErrorCode::UpdateIncomplete),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
        }
    }
}

impl From<lectern_collab::UpdateRefused> for ApiError {
    fn from(refused: lectern_collab::UpdateRefused) -> Self {
        use lectern_collab::UpdateRefused;
        match refused {
            UpdateRefused::DocumentTooLarge => Self::PayloadTooLarge,
            UpdateRefused::MissingDependencies => Self::UpdateIncomplete,
            UpdateRefused::Invalid | UpdateRefused::ReservedClientId => {
                Self::UpdateRefused(refused.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        if let Self::Internal(source) = &self {
            // Logged here, once, with its source chain; the client only sees "internal".
            tracing::error!(
                error = &**source as &dyn std::error::Error,
                "request failed"
            );
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message: self.to_string(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let Self::RateLimited { retry_after }
        | Self::AiBudgetExhausted { retry_after, .. }
        | Self::AiQueueFull { retry_after, .. }
        | Self::ServerBusy { retry_after } = &self
        {
            // Whole seconds, rounded up: "0" would invite an immediate retry.
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}

impl From<DbError> for ApiError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::EmailTaken => Self::EmailTaken,
            DbError::SessionAlreadyRunning => Self::SessionAlreadyRunning,
            // Everything else (including a join-code collision that outlived its retries)
            // is the server's problem, not the caller's.
            other => Self::internal(other),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Expired => Self::TokenExpired,
            AuthError::Malformed
            | AuthError::WrongAlgorithm
            | AuthError::BadSignature
            | AuthError::NotYetValid
            | AuthError::WrongAudience
            | AuthError::WrongIssuer
            | AuthError::InvalidClaims => {
                tracing::debug!(error = &error as &dyn std::error::Error, "token rejected");
                Self::InvalidToken
            }
            AuthError::Signing(_) => Self::internal(error),
        }
    }
}

impl From<AccessError> for ApiError {
    fn from(error: AccessError) -> Self {
        Self::internal(error)
    }
}

impl From<RoomEffectsError> for ApiError {
    fn from(error: RoomEffectsError) -> Self {
        Self::internal(error)
    }
}

impl From<UploadError> for ApiError {
    fn from(error: UploadError) -> Self {
        match error {
            UploadError::TooLarge { .. } => Self::PayloadTooLarge,
            UploadError::Unsupported(reason) => Self::UnsupportedFileType(reason.to_string()),
            UploadError::Unreadable(reason) => Self::UnreadableFile(reason.to_string()),
            UploadError::Interrupted(reason) => {
                Self::InvalidRequest(format!("the upload was interrupted: {reason}"))
            }
            UploadError::Busy => Self::ServerBusy {
                retry_after: Duration::from_secs(5),
            },
            UploadError::Storage(_) | UploadError::Database(_) | UploadError::Sandbox(_) => {
                Self::internal(error)
            }
        }
    }
}

impl From<SearchError> for ApiError {
    fn from(error: SearchError) -> Self {
        match error {
            SearchError::ModelUnavailable(reason) => Self::AiUnavailable(reason.to_string()),
            SearchError::Embedding(_) | SearchError::Database(_) => Self::internal(error),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::NotFound { .. } => Self::NotFound,
            other => Self::internal(other),
        }
    }
}

impl From<PasswordError> for ApiError {
    fn from(error: PasswordError) -> Self {
        match error {
            PasswordError::Busy { retry_after } => Self::ServerBusy { retry_after },
            PasswordError::Hash(_) | PasswordError::Task(_) => Self::internal(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_snake_case_and_serialize_as_documented() {
        for code in ErrorCode::ALL {
            let text = code.as_str();
            assert!(
                text.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{text}"
            );
            assert_eq!(
                serde_json::to_value(code).expect("serialize"),
                serde_json::Value::String(text.into())
            );
        }
    }

    /// docs/api.md is what SDK authors read: every code must be in its table.
    #[test]
    fn every_code_is_documented() {
        let docs = include_str!("../../../docs/api.md");
        for code in ErrorCode::ALL {
            assert!(
                docs.contains(&format!("`{}`", code.as_str())),
                "{} missing from docs/api.md",
                code.as_str()
            );
        }
    }

    #[test]
    fn rate_limited_responses_say_when_to_retry() {
        let response = ApiError::RateLimited {
            retry_after: Duration::from_millis(1500),
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }
}
