//! Request extractors that turn HTTP details into typed inputs or [`ApiError`]s.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;

use lectern_db::accounts::Role;

use crate::AppState;
use crate::api::error::ApiError;
use crate::auth::{Origin, Principal};

/// A JSON body whose rejections are [`ApiError`]s (so oversized bodies are a JSON 413 and
/// malformed ones a JSON 400, like every other error).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::PayloadTooLarge)
            }
            Err(rejection) => Err(ApiError::InvalidRequest(rejection.body_text())),
        }
    }
}

/// The bearer token of a request, if it has one.
pub fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthenticated)?;
    let value = value.to_str().map_err(|_| ApiError::InvalidToken)?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Ok(token.trim()),
        _ => Err(ApiError::Unauthenticated),
    }
}

/// A caller with a verified access token (ours or an external one), within its rate limit.
#[derive(Debug)]
pub struct Authenticated(pub Principal);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let principal = state
            .authenticator()
            .verify_access(bearer(&parts.headers)?)?;
        // Keyed by who, not by IP address (see rate_limit.rs); the prefix keeps an external
        // subject from sharing a bucket with a local id that happens to be equal.
        let key = match principal.origin {
            Origin::Local => format!("user:{}", principal.subject),
            Origin::External => format!("external:{}", principal.subject),
        };
        state
            .rate_limits()
            .api
            .check(&key)
            .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
        Ok(Self(principal))
    }
}

/// A caller signed in with a local account (classrooms belong to local accounts; external
/// principals get 403 here).
#[derive(Debug)]
pub struct Account {
    /// The `users.id`.
    pub id: String,
    /// The server-wide role from the token.
    pub role: Role,
}

impl FromRequestParts<AppState> for Account {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Authenticated(principal) = Authenticated::from_request_parts(parts, state).await?;
        match principal.origin {
            Origin::Local => Ok(Self {
                id: principal.subject,
                role: principal.role,
            }),
            Origin::External => Err(ApiError::Forbidden),
        }
    }
}
