//! Registration, login, token refresh and logout; accounts made by an admin.
//!
//! Guessing is limited in three ways (see `rate_limit.rs`): every login, registration and
//! refresh counts against the client address (generous: a class shares one NAT); failed
//! logins count against the email *from that address* (a low threshold, so an attacker
//! locks out only themself) and against the email alone (a much higher ceiling, against
//! guessing spread over many addresses). A correct password gives its tokens back.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use lectern_db::accounts::{NewRefreshToken, Role, Rotation, User};
use lectern_db::{Accounts, Database};

use crate::AppState;
use crate::api::dto::{
    CreateUserRequest, ErrorBody, LoginRequest, RefreshRequest, RegisterRequest, SessionResponse,
    UserResponse,
};
use crate::api::error::ApiError;
use crate::api::extract::{Account, ApiJson};
use crate::api::rate_limit::ClientAddress;
use crate::auth::now_secs;
use crate::auth::password::Passwords;
use crate::auth::refresh::{self, RefreshToken};
use crate::config::RegistrationPolicy;

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

/// A new account's fields as given: by self-registration, by an admin through the API,
/// or by `lectern create-user`.
#[derive(Debug)]
pub struct NewAccount {
    /// The login name (normalised here).
    pub email: String,
    /// The name shown to others (trimmed here).
    pub display_name: String,
    /// The password in clear; only its hash is stored.
    pub password: String,
    /// The server-wide role.
    pub role: Role,
}

/// Checks a new account's fields, hashes its password and stores it. The one way accounts
/// are made, so every path applies the same rules.
pub async fn create_account(
    database: &Database,
    passwords: &Passwords,
    account: NewAccount,
) -> Result<User, ApiError> {
    let email = normalize_email(&account.email)?;
    let display_name = account.display_name.trim().to_owned();
    if display_name.is_empty() || display_name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::InvalidRequest(format!(
            "display_name must be 1 to {MAX_NAME_CHARS} characters"
        )));
    }
    let length = account.password.chars().count();
    if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&length) {
        return Err(ApiError::InvalidRequest(format!(
            "password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"
        )));
    }
    let user = User {
        id: uuid::Uuid::new_v4().to_string(),
        email,
        display_name,
        password_hash: passwords.hash(account.password).await?,
        role: account.role,
        created_at: seconds(now_secs()),
    };
    Accounts::new(database.clone()).create_user(&user).await?;
    Ok(user)
}

fn rate_limited(retry_after: std::time::Duration) -> ApiError {
    ApiError::RateLimited { retry_after }
}

/// Login, registration and refresh are limited per client address (when it is known).
async fn limit_address(state: &AppState, address: ClientAddress) -> Result<(), ApiError> {
    match address.key() {
        Some(key) => state
            .rate_limits()
            .login_address
            .check(&key)
            .await
            .map_err(rate_limited),
        None => Ok(()),
    }
}

/// The failure-counting buckets one login attempt took a token from.
struct LoginAttempt<'a> {
    /// The limiters.
    state: &'a AppState,
    /// Key of the (email, address) bucket.
    pair: String,
    /// Key of the email's bucket.
    email: String,
}

impl<'a> LoginAttempt<'a> {
    /// Takes a token from the email-and-address bucket, then from the email's own.
    async fn begin(
        state: &'a AppState,
        email: &str,
        address: ClientAddress,
    ) -> Result<Self, ApiError> {
        let limits = state.rate_limits();
        let from = address.key().unwrap_or_else(|| "unknown".to_owned());
        let pair = format!("email:{email} from:{from}");
        limits.login.check(&pair).await.map_err(rate_limited)?;
        let email = format!("email:{email}");
        if let Err(retry_after) = limits.login_email.check(&email).await {
            limits.login.refund(&pair).await;
            return Err(rate_limited(retry_after));
        }
        Ok(Self { state, pair, email })
    }

    /// The attempt was not a failed guess (right password, or never checked): give the
    /// tokens back, so only failures count.
    async fn forgive(self) {
        let limits = self.state.rate_limits();
        limits.login.refund(&self.pair).await;
        limits.login_email.refund(&self.email).await;
    }
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
    post, path = "/api/v1/auth/register", tag = "auth", operation_id = "register",
    security(),
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Account created and signed in", body = SessionResponse),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 403, description = "`registration_refused`: the registration policy does not allow it", body = ErrorBody),
        (status = 409, description = "`email_taken`", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 429, description = "Too many attempts for this email or from this address", body = ErrorBody),
        (status = 503, description = "`server_busy`: too many password checks at once; see `Retry-After`", body = ErrorBody),
    )
)]
pub async fn register(
    State(state): State<AppState>,
    address: ClientAddress,
    ApiJson(request): ApiJson<RegisterRequest>,
) -> Result<(StatusCode, Json<SessionResponse>), ApiError> {
    let role = Role::from(request.role);
    match (state.config().registration, role) {
        (RegistrationPolicy::Open, _) | (RegistrationPolicy::StudentsOnly, Role::Student) => {}
        (RegistrationPolicy::StudentsOnly, _) => {
            return Err(ApiError::RegistrationRefused(
                "only students may register here; an administrator creates faculty accounts".into(),
            ));
        }
        (RegistrationPolicy::Closed, _) => {
            return Err(ApiError::RegistrationRefused(
                "registration is closed; an administrator creates accounts".into(),
            ));
        }
    }
    let email = normalize_email(&request.email)?;
    limit_address(&state, address).await?;
    // Registration spends a login attempt for the email (never given back): it is how
    // one probes whether an email is taken.
    let from = address.key().unwrap_or_else(|| "unknown".to_owned());
    state
        .rate_limits()
        .login
        .check(&format!("email:{email} from:{from}"))
        .await
        .map_err(rate_limited)?;
    let account = NewAccount {
        email,
        display_name: request.display_name,
        password: request.password,
        role,
    };
    let passwords = state.authenticator().passwords();
    let user = create_account(state.database(), passwords, account).await?;
    let session = new_session(&state, user).await?;
    Ok((StatusCode::CREATED, Json(session)))
}

/// Signs in with email and password.
#[utoipa::path(
    post, path = "/api/v1/auth/login", tag = "auth", operation_id = "login",
    security(),
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = SessionResponse),
        (status = 401, description = "`invalid_credentials`", body = ErrorBody),
        (status = 429, description = "Too many failed attempts for this email, or too many requests from this address", body = ErrorBody),
        (status = 503, description = "`server_busy`: too many password checks at once; see `Retry-After`", body = ErrorBody),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    address: ClientAddress,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Json<SessionResponse>, ApiError> {
    let email = request.email.trim().to_lowercase();
    if request.password.chars().count() > MAX_PASSWORD_CHARS {
        return Err(ApiError::InvalidCredentials);
    }
    limit_address(&state, address).await?;
    let attempt = LoginAttempt::begin(&state, &email, address).await?;
    let user = match Accounts::new(state.database().clone())
        .user_by_email(&email)
        .await
    {
        Ok(user) => user,
        Err(error) => {
            attempt.forgive().await;
            return Err(error.into());
        }
    };
    // Without an account, `verify` still spends one hash, so timing does not tell which
    // emails are registered.
    let stored = user.as_ref().map(|user| user.password_hash.clone());
    let verified = state
        .authenticator()
        .passwords()
        .verify(request.password, stored)
        .await;
    match (user, verified) {
        (Some(user), Ok(true)) => {
            attempt.forgive().await;
            Ok(Json(new_session(&state, user).await?))
        }
        (_, Ok(_)) => Err(ApiError::InvalidCredentials),
        // Busy or broken: the password was never judged, so it is not a failed guess.
        (_, Err(error)) => {
            attempt.forgive().await;
            Err(error.into())
        }
    }
}

/// Exchanges a refresh token for a new access token and a new refresh token. Each refresh
/// token works once; presenting a used one revokes every token of that login.
#[utoipa::path(
    post, path = "/api/v1/auth/refresh", tag = "auth", operation_id = "refresh",
    security(),
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New token pair", body = SessionResponse),
        (status = 401, description = "`invalid_refresh_token` or `refresh_token_reused`", body = ErrorBody),
        (status = 429, description = "Too many requests from this address", body = ErrorBody),
    )
)]
pub async fn refresh(
    State(state): State<AppState>,
    address: ClientAddress,
    ApiJson(request): ApiJson<RefreshRequest>,
) -> Result<Json<SessionResponse>, ApiError> {
    limit_address(&state, address).await?;
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
    post, path = "/api/v1/auth/logout", tag = "auth", operation_id = "logout",
    security(),
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

/// Creates an account of any role (faculty and admins under `--registration
/// students-only`, everyone under `closed`). Admins only.
#[utoipa::path(
    post, path = "/api/v1/admin/users", tag = "admin",
    security(("bearer" = [])),
    request_body = CreateUserRequest,
    responses(
        (status = 201, description = "Account created", body = UserResponse),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "`forbidden`: the caller is not an admin", body = ErrorBody),
        (status = 409, description = "`email_taken`", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "`server_busy`: too many password checks at once; see `Retry-After`", body = ErrorBody),
    )
)]
pub async fn create_user(
    State(state): State<AppState>,
    account: Account,
    ApiJson(request): ApiJson<CreateUserRequest>,
) -> Result<(StatusCode, Json<UserResponse>), ApiError> {
    if account.role != Role::Admin {
        return Err(ApiError::Forbidden);
    }
    let new = NewAccount {
        email: request.email,
        display_name: request.display_name,
        password: request.password,
        role: request.role.into(),
    };
    let passwords = state.authenticator().passwords();
    let user = create_account(state.database(), passwords, new).await?;
    tracing::info!(admin = %account.id, user = %user.id, role = user.role.as_str(), "account created by an admin");
    Ok((StatusCode::CREATED, Json(user.into())))
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
