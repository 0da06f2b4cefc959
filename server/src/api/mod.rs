//! The REST API under `/api/v1`: accounts, classrooms and document tokens, JSON in and out.
//!
//! # Layout
//! - `dto.rs`: every wire type (the SDK's contract), with OpenAPI schemas.
//! - `error.rs`: [`ApiError`] and the stable [`ErrorCode`]s; one exhaustive status mapping.
//! - `extract.rs`: bearer-token and JSON extractors that fail with [`ApiError`], and the
//!   path check every route passes.
//! - `text.rs`: which text is accepted (no NUL or controls anywhere; no bidi or invisible
//!   characters in names), and how upload file names are cleaned.
//! - `rate_limit.rs`: per-user token buckets (in Redis for a cluster).
//! - `accounts.rs`, `classrooms.rs`, `sessions.rs`, `doc_tokens.rs`, `materials.rs`, `ai.rs`,
//!   `speech.rs` (speech input for the chat), `documents.rs` (a document's content),
//!   `history.rs` (updates over REST, versions, restores, contributions),
//!   `export.rs` (documents and sessions as Markdown, DOCX, PDF), `webhooks.rs` (a
//!   classroom's webhooks and their delivery logs), `notifications.rs` (marking the inbox
//!   read, the email opt-out): the handlers.
//! - this file: the router and the OpenAPI document (`GET /api/v1/openapi.json`).
//!
//! See `docs/api.md` for the auth model, lifetimes, limits and error codes.

pub mod accounts;
pub mod ai;
pub mod classrooms;
pub mod doc_tokens;
pub(crate) mod documents;
pub mod dto;
pub mod error;
pub(crate) mod export;
pub mod extract;
pub(crate) mod history;
pub mod materials;
pub(crate) mod notifications;
pub mod rate_limit;
pub mod sessions;
pub(crate) mod speech;
pub(crate) mod text;
pub mod webhooks;

use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::schema::{AllOfBuilder, ArrayItems, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder, Schema};

pub use error::{ApiError, ErrorCode};
pub use rate_limit::{RateLimiter, RateLimits};

use crate::cluster_store::ClusterStore;
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
        .route(
            "/me/notifications",
            get(notifications::get_settings).put(notifications::set_settings),
        )
        .route("/me/inbox/read", post(notifications::mark_inbox_read))
        .route("/admin/users", post(accounts::create_user))
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
        .route(
            "/classrooms/{id}/sessions",
            post(sessions::start).get(sessions::list),
        )
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
        .route("/documents/{doc}", get(documents::read))
        .route("/documents/{doc}/update", post(history::apply_update))
        .route(
            "/documents/{doc}/versions",
            get(history::list_versions).post(history::checkpoint),
        )
        .route(
            "/documents/{doc}/versions/{version}",
            get(history::read_version),
        )
        .route(
            "/documents/{doc}/versions/{version}/restore",
            post(history::restore),
        )
        .route("/sessions/{id}/contributions", get(history::contributions))
        .route("/documents/{doc}/export", get(export::export_document))
        .route("/sessions/{id}/export", get(export::export_session))
        .route(
            "/materials/{id}",
            get(materials::get).delete(materials::delete),
        )
        .route("/materials/{id}/content", get(materials::content))
        .route("/materials/{id}/chunks", get(materials::chunks))
        .route("/sessions/{id}/ai/jobs", post(ai::create_job))
        .route("/ai/jobs/{id}", get(ai::get_job))
        .route("/ai/jobs/{id}/cancel", post(ai::cancel_job))
        .route("/sessions/{id}/chat/speech", post(speech::post_chat_speech))
        .route(
            "/classrooms/{id}/webhooks",
            get(webhooks::list).post(webhooks::create),
        )
        .route(
            "/classrooms/{id}/webhooks/{webhook_id}",
            delete(webhooks::delete),
        )
        .route(
            "/classrooms/{id}/webhooks/{webhook_id}/deliveries",
            get(webhooks::deliveries),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(extract::checked_path))
}

/// Rate limiters configured from `config`, shared through `store` in a cluster.
pub(crate) fn rate_limits(config: &Config, store: &ClusterStore) -> RateLimits {
    RateLimits {
        api: RateLimiter::new(
            "api",
            config.rate_limit_per_minute,
            config.rate_limit_burst,
            store,
        ),
        login: RateLimiter::new(
            "login",
            config.login_rate_limit_per_minute,
            config.login_rate_limit_per_minute,
            store,
        ),
        login_email: RateLimiter::new(
            "login_email",
            config.login_email_rate_limit_per_minute,
            config.login_email_rate_limit_per_minute,
            store,
        ),
        login_address: RateLimiter::new(
            "login_address",
            config.login_address_rate_limit_per_minute,
            config.login_address_rate_limit_burst,
            store,
        ),
        doc_tokens: RateLimiter::new(
            "doc_tokens",
            config.doc_token_rate_limit_per_minute,
            config.doc_token_rate_limit_burst,
            store,
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
        notifications::mark_inbox_read,
        notifications::get_settings,
        notifications::set_settings,
        accounts::create_user,
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
        sessions::list,
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
        documents::read,
        history::apply_update,
        history::list_versions,
        history::checkpoint,
        history::read_version,
        history::restore,
        history::contributions,
        export::export_document,
        export::export_session,
        ai::create_job,
        ai::get_job,
        ai::cancel_job,
        speech::post_chat_speech,
        webhooks::create,
        webhooks::list,
        webhooks::delete,
        webhooks::deliveries,
    ),
    components(schemas(dto::ErrorBody, dto::ErrorDetail, ErrorCode)),
    servers((url = "/", description = "This server")),
    modifiers(&SecuritySchemes, &ExtractorErrors, &TextRules),
    tags(
        (name = "auth", description = "Accounts and tokens"),
        (name = "admin", description = "Server administration (admin accounts only)"),
        (name = "classrooms", description = "Classrooms and membership"),
        (name = "sessions", description = "Live sessions, their documents and handouts"),
        (name = "documents", description = "A document's content over REST"),
        (name = "embedding", description = "Document tokens for embedders"),
        (name = "materials", description = "Course material: upload, ingestion, search"),
        (name = "ai", description = "Live AI jobs streaming into session documents"),
        (name = "webhooks", description = "Classroom events POSTed to other systems"),
        (name = "notifications", description = "The caller's inbox and email settings"),
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

/// Declares, on every operation, the errors its extractors and middleware answer with, so
/// each handler's annotation lists only the errors of its own logic (and a new endpoint
/// cannot forget them): a bearer token may be missing, invalid or expired (401), belong to
/// an external principal where a local account is needed (403) or be over its rate limit
/// (429); an API key may be wrong (401); a JSON body may be malformed or fail validation
/// (400) or be too large (413); a path parameter may hold a control character (400) or
/// name nothing (404). A response an annotation already declares is left as it is.
#[derive(Debug)]
struct ExtractorErrors;

impl utoipa::Modify for ExtractorErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in &mut openapi.paths.paths {
            let has_parameters = path.contains('{');
            for operation in operations(item) {
                let schemes: Vec<String> = operation
                    .security
                    .iter()
                    .flatten()
                    .filter_map(|requirement| serde_json::to_value(requirement).ok())
                    .filter_map(|value| {
                        value
                            .as_object()
                            .map(|fields| fields.keys().cloned().collect::<Vec<_>>())
                    })
                    .flatten()
                    .collect();
                let json_body = operation
                    .request_body
                    .as_ref()
                    .is_some_and(|body| body.content.contains_key("application/json"));
                let mut declared = Vec::new();
                if schemes.iter().any(|scheme| scheme == "bearer") {
                    declared.push((
                        "401",
                        "`unauthenticated`, `invalid_token` or `token_expired`",
                    ));
                    declared.push(("403", "`forbidden`"));
                    declared.push(("429", "`rate_limited`; see `Retry-After`"));
                }
                if schemes.iter().any(|scheme| scheme == "api_key") {
                    declared.push(("401", "`invalid_api_key`"));
                }
                if json_body {
                    declared.push(("400", "`invalid_request`: malformed JSON, an unknown field, or a value failing validation"));
                    declared.push(("413", "`payload_too_large`"));
                }
                if has_parameters {
                    declared.push((
                        "400",
                        "`invalid_request`: a path parameter holds a control character",
                    ));
                    declared.push(("404", "`not_found`"));
                }
                for (status, description) in declared {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| {
                            ResponseBuilder::new()
                                .description(description)
                                .content(
                                    "application/json",
                                    ContentBuilder::new()
                                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                                        .build(),
                                )
                                .build()
                                .into()
                        });
                }
            }
        }
    }
}

/// The operations of a path item.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
    ]
    .into_iter()
    .flatten()
}

/// Writes the text rules of `api::text` into the schemas, so a schema-driven client never
/// sends a string the server refuses: every string of a JSON request body gets the
/// any-text pattern unless its field declares a stricter one, path parameters get "no
/// control characters", and `AiJobRequest` gets its per-kind required fields.
#[derive(Debug)]
struct TextRules;

impl utoipa::Modify for TextRules {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let mut request_schemas = Vec::new();
        for item in openapi.paths.paths.values_mut() {
            for operation in operations(item) {
                for parameter in operation.parameters.iter_mut().flatten() {
                    if parameter.parameter_in == ParameterIn::Path
                        && let Some(RefOr::T(Schema::Object(object))) = &mut parameter.schema
                    {
                        object.min_length.get_or_insert(1);
                        object.pattern.get_or_insert_with(text::path_pattern);
                    }
                }
                // JSON bodies only: a multipart file is bytes, not text.
                let bodies = operation
                    .request_body
                    .iter()
                    .filter_map(|body| body.content.get("application/json"));
                for content in bodies {
                    if let Some(RefOr::Ref(reference)) = &content.schema {
                        let name = reference
                            .ref_location
                            .trim_start_matches("#/components/schemas/");
                        request_schemas.push(name.to_owned());
                    }
                }
            }
        }
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for name in request_schemas {
            if let Some(RefOr::T(schema)) = components.schemas.get_mut(&name) {
                add_text_pattern(schema);
            }
        }
        if let Some(RefOr::T(derived)) = components.schemas.get_mut("AiJobRequest") {
            let object = std::mem::take(derived);
            *derived = AllOfBuilder::new()
                .item(object)
                .item(Schema::OneOf(dto::ai_job_request_by_kind()))
                .build()
                .into();
        }
    }
}

/// Gives every string in `schema` without a pattern the any-text pattern.
fn add_text_pattern(schema: &mut Schema) {
    match schema {
        Schema::Object(object) => {
            let is_string = match &object.schema_type {
                SchemaType::Type(kind) => *kind == Type::String,
                SchemaType::Array(kinds) => kinds.contains(&Type::String),
                SchemaType::AnyValue => false,
            };
            if is_string {
                object
                    .pattern
                    .get_or_insert_with(|| text::text_pattern(false));
            }
            for property in object.properties.values_mut() {
                if let RefOr::T(property) = property {
                    add_text_pattern(property);
                }
            }
        }
        Schema::Array(array) => {
            if let ArrayItems::RefOrSchema(items) = &mut array.items
                && let RefOr::T(items) = items.as_mut()
            {
                add_text_pattern(items);
            }
        }
        // Composite schemas here are written by hand with their own patterns.
        _ => {}
    }
}
