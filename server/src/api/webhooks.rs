//! A classroom's webhooks: register, list, delete, and read a webhook's delivery log.
//!
//! Faculty of the classroom (and admins) only: a webhook sends the classroom's events to
//! another system, and its log shows what was sent. The URL is checked against the SSRF
//! guard (`webhooks/ssrf.rs`) here, with DNS, and again at every delivery. The signing
//! secret is shown once, in the answer to the registration.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use lectern_db::accounts::Role;
use lectern_db::classrooms::MemberRole;
use lectern_db::webhooks::Webhook;
use lectern_db::{Classrooms, Webhooks};

use crate::AppState;
use crate::api::dto::{CreateWebhookRequest, ErrorBody, WebhookDeliveryResponse, WebhookResponse};
use crate::api::error::ApiError;
use crate::api::extract::{Account, ApiJson};
use crate::auth::now_secs;
use crate::webhooks::ssrf::UrlError;
use crate::webhooks::{EVENT_NAMES, MAX_PER_CLASSROOM, sign};

/// Longest webhook URL.
const MAX_URL_CHARS: usize = 2048;

/// Deliveries listed per page by default, and at most.
const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 200;

/// 404 if classroom `id` does not exist; 403 unless the caller is its faculty or an admin.
async fn require_faculty(state: &AppState, id: &str, account: &Account) -> Result<(), ApiError> {
    let classrooms = Classrooms::new(state.database().clone());
    classrooms.get(id).await?.ok_or(ApiError::NotFound)?;
    if account.role == Role::Admin {
        return Ok(());
    }
    match classrooms.membership(id, &account.id).await? {
        Some(MemberRole::Faculty) => Ok(()),
        Some(MemberRole::Student) | None => Err(ApiError::Forbidden),
    }
}

/// The classroom's active webhook `webhook_id`, or 404.
async fn webhook_of(
    state: &AppState,
    classroom_id: &str,
    webhook_id: &str,
) -> Result<Webhook, ApiError> {
    Webhooks::new(state.database().clone())
        .get(webhook_id)
        .await?
        .filter(|webhook| webhook.active && webhook.classroom_id == classroom_id)
        .ok_or(ApiError::NotFound)
}

/// The requested events: known names, at least one, each once, in the documented order.
fn parse_events(requested: &[String]) -> Result<Vec<String>, ApiError> {
    if let Some(unknown) = requested
        .iter()
        .find(|name| !EVENT_NAMES.contains(&name.as_str()))
    {
        return Err(ApiError::InvalidRequest(format!(
            "unknown event {unknown:?}; events are {}",
            EVENT_NAMES.join(", ")
        )));
    }
    let events: Vec<String> = EVENT_NAMES
        .iter()
        .filter(|name| requested.iter().any(|wanted| wanted == *name))
        .map(|name| (*name).to_owned())
        .collect();
    if events.is_empty() {
        return Err(ApiError::InvalidRequest(
            "events must name at least one event".into(),
        ));
    }
    Ok(events)
}

impl From<UrlError> for ApiError {
    fn from(error: UrlError) -> Self {
        match error {
            UrlError::Invalid(_) | UrlError::Unresolvable { .. } => {
                Self::InvalidRequest(error.to_string())
            }
            UrlError::Refused { .. } | UrlError::LocalName(_) => {
                Self::WebhookAddressRefused(error.to_string())
            }
        }
    }
}

/// Registers a webhook (faculty of the classroom or admins): deliveries of the chosen
/// events are POSTed to `url`, signed with the secret in the answer, which is shown only
/// here. At most 20 per classroom.
#[utoipa::path(
    post, path = "/api/v1/classrooms/{id}/webhooks", tag = "webhooks",
    operation_id = "create_webhook",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Classroom id")),
    request_body = CreateWebhookRequest,
    responses(
        (status = 201, description = "Registered; `secret` is shown only here", body = WebhookResponse),
        (status = 400, description = "`invalid_request` (unknown event, bad URL, unresolvable host, too many webhooks) or `webhook_address_refused`", body = ErrorBody),
        (status = 403, description = "Not faculty of this classroom", body = ErrorBody),
        (status = 404, description = "No such classroom", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    account: Account,
    Path(classroom_id): Path<String>,
    ApiJson(request): ApiJson<CreateWebhookRequest>,
) -> Result<(StatusCode, Json<WebhookResponse>), ApiError> {
    require_faculty(&state, &classroom_id, &account).await?;
    let events = parse_events(&request.events)?;
    let url = request.url.trim();
    if url.chars().count() > MAX_URL_CHARS {
        return Err(ApiError::InvalidRequest(format!(
            "url must be at most {MAX_URL_CHARS} characters"
        )));
    }
    let guard = state.webhooks().settings().guard;
    let url = guard.check_url_resolved(url).await?;
    let webhook = Webhook {
        id: uuid::Uuid::new_v4().to_string(),
        classroom_id,
        url: url.to_string(),
        events,
        secret: sign::new_secret(),
        created_by: account.id,
        created_at: i64::try_from(now_secs()).unwrap_or(i64::MAX),
        active: true,
    };
    let stored = Webhooks::new(state.database().clone())
        .create(&webhook, MAX_PER_CLASSROOM)
        .await?;
    if !stored {
        return Err(ApiError::InvalidRequest(format!(
            "a classroom has at most {MAX_PER_CLASSROOM} webhooks; delete one first"
        )));
    }
    let secret = webhook.secret.clone();
    let mut response = WebhookResponse::from(webhook);
    response.secret = Some(secret);
    Ok((StatusCode::CREATED, Json(response)))
}

/// The classroom's webhooks, oldest first (faculty of the classroom or admins); without
/// their secrets.
#[utoipa::path(
    get, path = "/api/v1/classrooms/{id}/webhooks", tag = "webhooks",
    operation_id = "list_webhooks",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Classroom id")),
    responses(
        (status = 200, description = "The webhooks", body = [WebhookResponse]),
        (status = 403, description = "Not faculty of this classroom", body = ErrorBody),
        (status = 404, description = "No such classroom", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    account: Account,
    Path(classroom_id): Path<String>,
) -> Result<Json<Vec<WebhookResponse>>, ApiError> {
    require_faculty(&state, &classroom_id, &account).await?;
    let webhooks = Webhooks::new(state.database().clone())
        .of_classroom(&classroom_id)
        .await?;
    Ok(Json(webhooks.into_iter().map(Into::into).collect()))
}

/// Deletes a webhook (faculty of the classroom or admins): it gets no new deliveries, and
/// its pending ones are failed.
#[utoipa::path(
    delete, path = "/api/v1/classrooms/{id}/webhooks/{webhook_id}", tag = "webhooks",
    operation_id = "delete_webhook",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "Classroom id"),
        ("webhook_id" = String, Path, description = "Webhook id"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not faculty of this classroom", body = ErrorBody),
        (status = 404, description = "No such classroom or webhook", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    account: Account,
    Path((classroom_id, webhook_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    require_faculty(&state, &classroom_id, &account).await?;
    let found = Webhooks::new(state.database().clone())
        .deactivate(&classroom_id, &webhook_id, "the webhook was deleted")
        .await?;
    if found {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

/// Paging of the delivery log.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// Deliveries per page (default 50, at most 200).
    limit: Option<u32>,
    /// The last delivery id of the previous page: list older ones.
    before: Option<String>,
}

/// A webhook's deliveries, newest first (faculty of the classroom or admins): the event,
/// where it is, attempts and how the last one went.
#[utoipa::path(
    get, path = "/api/v1/classrooms/{id}/webhooks/{webhook_id}/deliveries", tag = "webhooks",
    operation_id = "list_webhook_deliveries",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "Classroom id"),
        ("webhook_id" = String, Path, description = "Webhook id"),
        ("limit" = Option<u32>, Query, description = "Deliveries per page (default 50, at most 200)"),
        ("before" = Option<String>, Query, description = "The last delivery id of the previous page: list older ones"),
    ),
    responses(
        (status = 200, description = "Newest first", body = [WebhookDeliveryResponse]),
        (status = 400, description = "A malformed `limit`", body = ErrorBody),
        (status = 403, description = "Not faculty of this classroom", body = ErrorBody),
        (status = 404, description = "No such classroom or webhook", body = ErrorBody),
    )
)]
pub async fn deliveries(
    State(state): State<AppState>,
    account: Account,
    Path((classroom_id, webhook_id)): Path<(String, String)>,
    query: Result<Query<DeliveriesQuery>, QueryRejection>,
) -> Result<Json<Vec<WebhookDeliveryResponse>>, ApiError> {
    let Query(query) =
        query.map_err(|rejection| ApiError::InvalidRequest(rejection.body_text()))?;
    require_faculty(&state, &classroom_id, &account).await?;
    webhook_of(&state, &classroom_id, &webhook_id).await?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let deliveries = Webhooks::new(state.database().clone())
        .deliveries(&webhook_id, limit, query.before.as_deref())
        .await?;
    Ok(Json(deliveries.into_iter().map(Into::into).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_checked_deduplicated_and_ordered() {
        let names = |list: &[&str]| {
            list.iter()
                .map(|name| (*name).to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            parse_events(&names(&[
                "member.joined",
                "session.started",
                "member.joined"
            ]))
            .expect("valid"),
            names(&["session.started", "member.joined"])
        );
        assert!(matches!(
            parse_events(&names(&["session.started", "session.paused"])),
            Err(ApiError::InvalidRequest(message)) if message.contains("session.paused")
        ));
        assert!(parse_events(&[]).is_err());
    }
}
