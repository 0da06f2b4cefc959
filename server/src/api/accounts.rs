//! Registration, login, token refresh and logout.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use lectern_db::Accounts;
use lectern_db::accounts::{NewRefreshToken, Rotation, User};

use crate::AppState;
use crate::api::dto::{
    ErrorBody, LoginRequest, RefreshRequest, RegisterRequest, SessionResponse, UserResponse,
};
use crate::api::error::ApiError;
use crate::api::extract::{Account, ApiJson};
use crate::auth::refresh::{self, RefreshToken};
use crate::auth::{now_secs, password};

/// Longest email address (RFC 5321 path limit).
const MAX_EMAIL_CHARS: usize = 254;
/// Shortest password accepted.
const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted: hashing cost grows with length.
const MAX_PASSWORD_CHARS: usize = 1024;
/// Longest display name.
const MAX_NAME_CHARS: usize = 100;

/// Trims and lower-cases an email; checks only its rough shape (a mail round trip is the
/// real check, and out of scope here).
fn normalize_email(email: &str) -> Result<String, ApiError> {
    let email = email.trim().to_lowercase();
    let valid = email.chars().count() <= MAX_EMAIL_CHARS
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !email.chars().any(char::is_whitespace);
    if valid {
        Ok(email)
    } else {
        Err(ApiError::InvalidRequest(
            "email is not a valid address".into(),
        ))
    }
}

/// Password guessing is limited per email, whoever tries it.
fn limit_login(state: &AppState, email: &str) -> Result<(), ApiError> {
    state
        .rate_limits()
        .login
        .check(&format!("email:{email}"))
        .map_err(|retry_after| ApiError::RateLimited { retry_after })
}

/// Issues an access token and the first refresh token of a new family.
async fn new_session(state: &AppState, user: User) -> Result<SessionResponse, ApiError> {
    let refresh = RefreshToken::generate();
    let now = now_secs();
    let refresh_ttl = state.config().refresh_token_ttl_secs;
    let family_id = uuid::Uuid::new_v4().to_string();
    Accounts::new(state.database().clone())
        .insert_refresh_token(&NewRefreshToken {
            token_hash: refresh.hash,
            family_id: family_id.clone(),
            user_id: user.id.clone(),
            created_at: seconds(now),
            expires_at: seconds(now.saturating_add(refresh_ttl)),
        })
        .await?;
    session_response(state, user, refresh.token, &family_id)
}

/// A signed-in answer: a fresh access token in login session `family_id` and its refresh
/// token.
fn session_response(
    state: &AppState,
    user: User,
    refresh_token: String,
    family_id: &str,
) -> Result<SessionResponse, ApiError> {
    let access = state
        .authenticator()
        .issue_access(&user.id, user.role, family_id)?;
    Ok(SessionResponse {
        user: user.into(),
        access_token: access.token,
        token_type: "Bearer".into(),
        expires_in: access.expires_in,
        refresh_token,
        refresh_expires_in: state.config().refresh_token_ttl_secs,
    })
}

/// Unix seconds as the database stores them.
fn seconds(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// Creates an account and signs it in.
#[utoipa::path(
    post, path = "/api/v1/auth/register", tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Account created and signed in", body = SessionResponse),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 409, description = "`email_taken`", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 429, description = "Too many attempts for this email", body = ErrorBody),
    )
)]
pub async fn register(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<RegisterRequest>,
) -> Result<(StatusCode, Json<SessionResponse>), ApiError> {
    let email = normalize_email(&request.email)?;
    let display_name = request.display_name.trim().to_owned();
    if display_name.is_empty() || display_name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::InvalidRequest(format!(
            "display_name must be 1 to {MAX_NAME_CHARS} characters"
        )));
    }
    let length = request.password.chars().count();
    if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&length) {
        return Err(ApiError::InvalidRequest(format!(
            "password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"
        )));
    }
    limit_login(&state, &email)?;
    let user = User {
        id: uuid::Uuid::new_v4().to_string(),
        email,
        display_name,
        password_hash: password::hash(request.password).await?,
        role: request.role.into(),
        created_at: seconds(now_secs()),
    };
    Accounts::new(state.database().clone())
        .create_user(&user)
        .await?;
    let session = new_session(&state, user).await?;
    Ok((StatusCode::CREATED, Json(session)))
}

/// Signs in with email and password.
#[utoipa::path(
    post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = SessionResponse),
        (status = 401, description = "`invalid_credentials`", body = ErrorBody),
        (status = 429, description = "Too many attempts for this email", body = ErrorBody),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Json<SessionResponse>, ApiError> {
    let email = request.email.trim().to_lowercase();
    if request.password.chars().count() > MAX_PASSWORD_CHARS {
        return Err(ApiError::InvalidCredentials);
    }
    limit_login(&state, &email)?;
    let user = Accounts::new(state.database().clone())
        .user_by_email(&email)
        .await?;
    // Without an account, `verify` still spends one hash, so timing does not tell which
    // emails are registered.
    let stored = user.as_ref().map(|user| user.password_hash.clone());
    let matches = password::verify(request.password, stored).await?;
    match user {
        Some(user) if matches => Ok(Json(new_session(&state, user).await?)),
        Some(_) | None => Err(ApiError::InvalidCredentials),
    }
}

/// Exchanges a refresh token for a new access token and a new refresh token. Each refresh
/// token works once; presenting a used one revokes every token of that login.
#[utoipa::path(
    post, path = "/api/v1/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New token pair", body = SessionResponse),
        (status = 401, description = "`invalid_refresh_token` or `refresh_token_reused`", body = ErrorBody),
    )
)]
pub async fn refresh(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<RefreshRequest>,
) -> Result<Json<SessionResponse>, ApiError> {
    let accounts = Accounts::new(state.database().clone());
    let next = RefreshToken::generate();
    let now = now_secs();
    let expires_at = seconds(now.saturating_add(state.config().refresh_token_ttl_secs));
    let rotation = accounts
        .rotate_refresh_token(
            &refresh::hash(&request.refresh_token),
            &next.hash,
            expires_at,
            seconds(now),
        )
        .await?;
    match rotation {
        Rotation::Rotated { user_id, family_id } => {
            let Some(user) = accounts.user_by_id(&user_id).await? else {
                tracing::debug!(%family_id, "refresh token of a deleted account");
                return Err(ApiError::InvalidRefreshToken);
            };
            Ok(Json(session_response(
                &state, user, next.token, &family_id,
            )?))
        }
        Rotation::Reused { family_id } => {
            tracing::warn!(%family_id, "refresh token reused: its family is revoked");
            state.room_effects().session_revoked(&family_id).await;
            Err(ApiError::RefreshTokenReused)
        }
        Rotation::Unknown | Rotation::Expired | Rotation::Revoked => {
            Err(ApiError::InvalidRefreshToken)
        }
    }
}

/// Signs out: revokes the refresh token and every token rotated from the same login.
/// Idempotent: unknown tokens also get 204. Sockets opened with the login's access tokens
/// are closed (4401) and refused from then on; on the REST API those access tokens stay
/// valid until they expire.
#[utoipa::path(
    post, path = "/api/v1/auth/logout", tag = "auth",
    request_body = RefreshRequest,
    responses((status = 204, description = "Signed out"))
)]
pub async fn logout(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    let revoked = Accounts::new(state.database().clone())
        .revoke_family(&refresh::hash(&request.refresh_token), seconds(now_secs()))
        .await?;
    if let Some(family_id) = revoked {
        state.room_effects().session_revoked(&family_id).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in account.
#[utoipa::path(
    get, path = "/api/v1/me", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's account", body = UserResponse),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
    )
)]
pub async fn me(
    State(state): State<AppState>,
    account: Account,
) -> Result<Json<UserResponse>, ApiError> {
    let user = Accounts::new(state.database().clone())
        .user_by_id(&account.id)
        .await?
        // A valid token for a deleted account: it no longer identifies anyone.
        .ok_or(ApiError::InvalidToken)?;
    Ok(Json(user.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_roughly_checked() {
        assert_eq!(
            normalize_email("  Ada@Example.EDU ").expect("valid"),
            "ada@example.edu"
        );
        for bad in [
            "",
            "ada",
            "@example.edu",
            "ada@localhost",
            "a da@example.edu",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
    }
}
