//! Live AI jobs over REST: start one in a session, look at it, cancel it. The same requests
//! also travel over the WebSocket (`ai::control`). See `docs/ai.md`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::AppState;
use crate::ai::{AiError, Requester};
use crate::api::dto::{AiJobRequest, AiJobResponse, ErrorBody};
use crate::api::error::ApiError;
use crate::api::extract::{Account, ApiJson};

fn requester(account: Account) -> Requester {
    Requester {
        user_id: account.id,
        role: account.role,
    }
}

/// Starts an AI job in a live session; it streams into the document named in the answer.
#[utoipa::path(
    post,
    path = "/api/v1/sessions/{id}/ai/jobs",
    tag = "ai",
    params(("id" = String, Path, description = "Session id")),
    request_body = AiJobRequest,
    responses(
        (status = 202, description = "Accepted; watch `doc_id`", body = AiJobResponse),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, description = "ai_unsupported: the server's model cannot do this kind (translate on the embedded model)", body = ErrorBody),
        (status = 429, description = "rate_limited, ai_budget_exhausted or ai_queue_full", body = ErrorBody),
        (status = 503, description = "ai_unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create_job(
    State(state): State<AppState>,
    account: Account,
    Path(session_id): Path<String>,
    ApiJson(request): ApiJson<AiJobRequest>,
) -> Result<(StatusCode, Json<AiJobResponse>), ApiError> {
    let job = state
        .ai()
        .start(&requester(account), &session_id, request)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(job)))
}

/// An AI job: its status, and why it failed. Visible to whoever started it, faculty of
/// its classroom and admins.
#[utoipa::path(
    get,
    path = "/api/v1/ai/jobs/{id}",
    tag = "ai",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, body = AiJobResponse),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_job(
    State(state): State<AppState>,
    account: Account,
    Path(job_id): Path<String>,
) -> Result<Json<AiJobResponse>, ApiError> {
    Ok(Json(state.ai().get(&requester(account), &job_id).await?))
}

/// Cancels an AI job (idempotent). What it wrote stays; its status becomes `cancelled`
/// within moments.
#[utoipa::path(
    post,
    path = "/api/v1/ai/jobs/{id}/cancel",
    tag = "ai",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job as it was when the cancel was asked", body = AiJobResponse),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn cancel_job(
    State(state): State<AppState>,
    account: Account,
    Path(job_id): Path<String>,
) -> Result<Json<AiJobResponse>, ApiError> {
    Ok(Json(state.ai().cancel(&requester(account), &job_id).await?))
}

impl From<AiError> for ApiError {
    fn from(error: AiError) -> Self {
        match error {
            AiError::InvalidRequest(message) => Self::InvalidRequest(message),
            AiError::NotFound => Self::NotFound,
            AiError::Forbidden => Self::Forbidden,
            AiError::SessionEnded => Self::SessionEnded,
            AiError::Unavailable(reason) => Self::AiUnavailable(reason.to_string()),
            AiError::Unsupported(reason) => Self::AiUnsupported(reason),
            AiError::BudgetExhausted { retry_after, .. } => Self::AiBudgetExhausted {
                message: error.to_string(),
                retry_after,
            },
            AiError::QueueFull { retry_after, .. } => Self::AiQueueFull {
                message: error.to_string(),
                retry_after,
            },
            AiError::RateLimited { retry_after } => Self::RateLimited { retry_after },
            AiError::Database(_) | AiError::Access(_) | AiError::Room(_) => Self::internal(error),
        }
    }
}
