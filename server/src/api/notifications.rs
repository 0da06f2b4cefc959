//! The caller's notifications: marking inbox items read, and the email opt-out.
//!
//! The inbox itself is the document `user/{id}/inbox`, read over the WebSocket (see
//! `notifications/inbox.rs` and docs/api.md "Notifications"); only the server writes it,
//! so marking read is a request here that the server applies to the document.

use std::collections::HashSet;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use lectern_db::Notifications;
use lectern_db::notifications::Settings;

use crate::AppState;
use crate::api::dto::{ErrorBody, MarkInboxReadRequest, NotificationSettings};
use crate::api::error::ApiError;
use crate::api::extract::{Account, ApiJson};
use crate::notifications::{InboxError, Selection};

/// Most ids one request marks (the inbox keeps at most 200 items).
const MAX_IDS: usize = 200;

/// Longest item id accepted (ids are UUIDs).
const MAX_ID_CHARS: usize = 64;

/// Marks items of the caller's inbox read: `{"ids": [...]}` or `{"all": true}`.
#[utoipa::path(
    post, path = "/api/v1/me/inbox/read", tag = "notifications",
    operation_id = "mark_inbox_read",
    security(("bearer" = [])),
    request_body = MarkInboxReadRequest,
    responses(
        (status = 204, description = "Marked (unknown ids are ignored)"),
        (status = 400, description = "Neither `ids` nor `all: true`, or both, or too many ids", body = ErrorBody),
    )
)]
pub async fn mark_inbox_read(
    State(state): State<AppState>,
    account: Account,
    ApiJson(request): ApiJson<MarkInboxReadRequest>,
) -> Result<StatusCode, ApiError> {
    let selection = match (request.ids, request.all) {
        (None, Some(true)) => Selection::All,
        (Some(ids), None | Some(false)) => {
            if ids.len() > MAX_IDS {
                return Err(ApiError::InvalidRequest(format!("ids: at most {MAX_IDS}")));
            }
            if ids.iter().any(|id| id.chars().count() > MAX_ID_CHARS) {
                return Err(ApiError::InvalidRequest(format!(
                    "ids: each at most {MAX_ID_CHARS} characters"
                )));
            }
            Selection::Ids(ids.into_iter().collect::<HashSet<_>>())
        }
        _ => {
            return Err(ApiError::InvalidRequest(
                "give either ids or all: true".into(),
            ));
        }
    };
    state
        .notifications()
        .mark_read(&account.id, selection)
        .await
        .map_err(|error| match error {
            InboxError::InvalidUser(_) | InboxError::Room(_) => ApiError::internal(error),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's notification settings.
#[utoipa::path(
    get, path = "/api/v1/me/notifications", tag = "notifications",
    operation_id = "get_notification_settings",
    security(("bearer" = [])),
    responses((status = 200, description = "The settings", body = NotificationSettings))
)]
pub async fn get_settings(
    State(state): State<AppState>,
    account: Account,
) -> Result<Json<NotificationSettings>, ApiError> {
    let settings = Notifications::new(state.database().clone())
        .settings(&account.id)
        .await?;
    Ok(Json(NotificationSettings {
        email: settings.email,
    }))
}

/// Changes the caller's notification settings (turning email off or on again).
#[utoipa::path(
    put, path = "/api/v1/me/notifications", tag = "notifications",
    operation_id = "set_notification_settings",
    security(("bearer" = [])),
    request_body = NotificationSettings,
    responses((status = 200, description = "The settings now", body = NotificationSettings))
)]
pub async fn set_settings(
    State(state): State<AppState>,
    account: Account,
    ApiJson(request): ApiJson<NotificationSettings>,
) -> Result<Json<NotificationSettings>, ApiError> {
    Notifications::new(state.database().clone())
        .set_settings(
            &account.id,
            Settings {
                email: request.email,
            },
        )
        .await?;
    Ok(Json(request))
}
