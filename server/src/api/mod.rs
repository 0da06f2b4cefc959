//! The REST API under `/api/v1`: accounts, classrooms and document tokens, JSON in and out.
//!
//! # Layout
//! - `dto.rs`: every wire type (the SDK's contract), with OpenAPI schemas.
//! - `error.rs`: [`ApiError`] and the stable [`ErrorCode`]s; one exhaustive status mapping.
//! - `extract.rs`: bearer-token and JSON extractors that fail with [`ApiError`].
//! - `rate_limit.rs`: per-user token buckets.
//! - `accounts.rs`, `classrooms.rs`, `sessions.rs`, `doc_tokens.rs`, `materials.rs`, `ai.rs`:
//!   the handlers.
//! - this file: the router and the OpenAPI document (`GET /api/v1/openapi.json`).
//!
//! See `docs/api.md` for the auth model, lifetimes, limits and error codes.

pub mod accounts;
pub mod ai;
pub mod classrooms;
pub mod doc_tokens;
pub mod dto;
pub mod error;
pub mod extract;
pub mod materials;
pub mod rate_limit;
pub mod sessions;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

pub use error::{ApiError, ErrorCode};
pub use rate_limit::{RateLimiter, RateLimits};

use crate::{AppState, Config};

/// Largest JSON body accepted, in bytes. Every request here is small; the limit keeps a
/// client from making the server buffer megabytes before validation rejects them.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The routes, to be nested under `/api/v1`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi_json))
        .route("/auth/register", post(accounts::register))
        .route("/auth/login", post(accounts::login))
        .route("/auth/refresh", post(accounts::refresh))
        .route("/auth/logout", post(accounts::logout))
        .route("/me", get(accounts::me))
        .route("/doc-tokens", post(doc_tokens::create))
        .route(
            "/classrooms",
            get(classrooms::list_mine).post(classrooms::create),
        )
        .route("/classrooms/join", post(classrooms::join))
        .route("/classrooms/{id}", get(classrooms::get))
        .route(
            "/classrooms/{id}/join-code",
            post(classrooms::rotate_join_code),
        )
        .route("/classrooms/{id}/members", get(classrooms::members))
        .route(
            "/classrooms/{id}/members/{user_id}",
            delete(classrooms::remove_member),
        )
        .route("/classrooms/{id}/sessions", post(sessions::start))
        .route("/classrooms/{id}/sessions/current", get(sessions::current))
        .route(
            "/classrooms/{id}/templates",
            post(sessions::create_template),
        )
        .route("/sessions/{id}", get(sessions::get))
        .route("/sessions/{id}/lock", post(sessions::lock))
        .route("/sessions/{id}/unlock", post(sessions::unlock))
        .route("/sessions/{id}/end", post(sessions::end))
        .route("/sessions/{id}/focus", put(sessions::set_focus))
        .route("/sessions/{id}/handouts", post(sessions::hand_out))
        .route(
            "/classrooms/{id}/materials",
            get(materials::list).post(materials::upload),
        )
        .route("/classrooms/{id}/search", post(materials::search))
        .route(
            "/materials/{id}",
            get(materials::get).delete(materials::delete),
        )
        .route("/materials/{id}/content", get(materials::content))
        .route("/materials/{id}/chunks", get(materials::chunks))
        .route("/sessions/{id}/ai/jobs", post(ai::create_job))
        .route("/ai/jobs/{id}", get(ai::get_job))
        .route("/ai/jobs/{id}/cancel", post(ai::cancel_job))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Rate limiters configured from `config`.
pub fn rate_limits(config: &Config) -> RateLimits {
    RateLimits {
        api: RateLimiter::new(config.rate_limit_per_minute, config.rate_limit_burst),
        login: RateLimiter::new(
            config.login_rate_limit_per_minute,
            config.login_rate_limit_per_minute,
        ),
    }
}

/// Unknown paths under `/api/v1` answer in the API's error format too.
async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// The OpenAPI document, generated from the handlers and DTOs.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Lectern API", version = "1", description = "Accounts, classrooms, live sessions, document tokens, course material and live AI jobs. See docs/api.md and docs/ai.md."),
    paths(
        accounts::register,
        accounts::login,
        accounts::refresh,
        accounts::logout,
        accounts::me,
        doc_tokens::create,
        classrooms::create,
        classrooms::list_mine,
        classrooms::get,
        classrooms::join,
        classrooms::rotate_join_code,
        classrooms::members,
        classrooms::remove_member,
        sessions::start,
        sessions::current,
        sessions::get,
        sessions::lock,
        sessions::unlock,
        sessions::end,
        sessions::set_focus,
        sessions::hand_out,
        sessions::create_template,
        materials::upload,
        materials::list,
        materials::get,
        materials::content,
        materials::chunks,
        materials::delete,
        materials::search,
        ai::create_job,
        ai::get_job,
        ai::cancel_job,
    ),
    components(schemas(dto::ErrorBody, dto::ErrorDetail, ErrorCode)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "auth", description = "Accounts and tokens"),
        (name = "classrooms", description = "Classrooms and membership"),
        (name = "sessions", description = "Live sessions, their documents and handouts"),
        (name = "embedding", description = "Document tokens for embedders"),
        (name = "materials", description = "Course material: upload, ingestion, search"),
        (name = "ai", description = "Live AI jobs streaming into session documents"),
    )
)]
pub struct ApiDoc;

/// Declares the two bearer schemes: access tokens and the server API key.
#[derive(Debug)]
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
