//! Request extractors that turn HTTP details into typed inputs or [`ApiError`]s.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use serde::de::DeserializeOwned;

use lectern_db::accounts::Role;

use crate::AppState;
use crate::api::error::ApiError;
use crate::api::text;
use crate::auth::{Origin, Principal};

/// A JSON body whose rejections are [`ApiError`]s (so oversized bodies are a JSON 413 and
/// malformed ones a JSON 400, like every other error). Every string in it has passed
/// [`text::check_json`] (no NUL or other control characters), whatever `T` is.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        // Parsed as a tree first, so the text rule sees every string before any field
        // type does (bodies are at most MAX_BODY_BYTES, so the second pass is cheap).
        let value = match axum::Json::<serde_json::Value>::from_request(request, state).await {
            Ok(axum::Json(value)) => value,
            Err(rejection) if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(ApiError::PayloadTooLarge);
            }
            Err(rejection) => return Err(ApiError::InvalidRequest(rejection.body_text())),
        };
        text::check_json(&value).map_err(ApiError::InvalidRequest)?;
        let mut value = value;
        integral_floats_as_integers(&mut value);
        match serde_path_to_error::deserialize(value) {
            Ok(value) => Ok(Self(value)),
            Err(error) => Err(ApiError::InvalidRequest(format!(
                "Failed to deserialize the JSON body into the target type: {error}"
            ))),
        }
    }
}

/// JSON Schema counts `11.0` as an integer, and so does the API: such numbers become
/// integers before integer fields see them (serde would refuse them).
fn integral_floats_as_integers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(number) => {
            if let Some(float) = number.as_f64().filter(|_| number.is_f64())
                && float.fract() == 0.0
                && float.abs() < 9.007_199_254_740_992e15
            {
                // Below 2^53 every integral float converts exactly.
                #[allow(clippy::cast_possible_truncation)]
                let integer = float as i64;
                *number = serde_json::Number::from(integer);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        serde_json::Value::Object(fields) => {
            fields.values_mut().for_each(integral_floats_as_integers)
        }
        serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::String(_) => {}
    }
}

/// Middleware for every API route: a path whose percent-decoding is not UTF-8 or holds a
/// control character (`%00`...) is refused with 400 before any handler or database sees
/// it, so path parameters obey the same text rule as JSON bodies.
pub(crate) async fn checked_path(request: Request, next: Next) -> Result<Response, ApiError> {
    let decoded = String::from_utf8(percent_decode(request.uri().path())).map_err(|_| {
        ApiError::InvalidRequest("the path is not UTF-8 once percent-decoded".into())
    })?;
    if let Some(c) = decoded.chars().find(|&c| c.is_control()) {
        return Err(ApiError::InvalidRequest(format!(
            "control characters are not allowed in the path (found U+{:04X})",
            u32::from(c)
        )));
    }
    Ok(next.run(request).await)
}

/// The bytes `%XX` escapes stand for; anything else (including a malformed escape) as is,
/// like the router treats it.
fn percent_decode(path: &str) -> Vec<u8> {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escape = (bytes[index] == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            // from_str_radix would also take a sign ("%+1").
            .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escape {
            Some(byte) => {
                decoded.push(byte);
                index += 3;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    decoded
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
        within_api_rate_limit(state, &key).await?;
        Ok(Self(principal))
    }
}

/// Counts a request against the API rate limit of `key` (who is calling); `429` over it.
pub async fn within_api_rate_limit(state: &AppState, key: &str) -> Result<(), ApiError> {
    state
        .rate_limits()
        .api
        .check(key)
        .await
        .map_err(|retry_after| ApiError::RateLimited { retry_after })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_percent_decoded_like_the_router_does() {
        assert_eq!(percent_decode("/a%00b"), b"/a\0b");
        assert_eq!(percent_decode("/%C3%A9%2f"), "/é/".as_bytes());
        assert_eq!(percent_decode("/100%"), b"/100%");
        assert_eq!(percent_decode("/%zz%4"), b"/%zz%4");
        assert_eq!(percent_decode("/%+1"), b"/%+1");
    }

    #[test]
    fn integral_floats_become_integers() {
        let mut value = serde_json::json!({"k": 11.0, "x": [2.5, -3.0, 1e300], "n": 7});
        integral_floats_as_integers(&mut value);
        assert_eq!(
            value,
            serde_json::json!({"k": 11, "x": [2.5, -3, 1e300], "n": 7})
        );
        assert!(value["k"].is_i64());
    }
}
