//! Document tokens for embedders (the y-sweet model): a backend holding the server API key
//! asks for a short-lived token for one document, and hands it to its browser client.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;

use lectern_collab::DocId;

use crate::AppState;
use crate::api::dto::{DocTokenRequest, DocTokenResponse, ErrorBody};
use crate::api::error::ApiError;
use crate::api::extract::{ApiJson, bearer};
use crate::api::rate_limit::ClientAddress;

/// Mints a document token. Authenticated with `Authorization: Bearer <server API key>`;
/// with no key configured every request is refused.
#[utoipa::path(
    post, path = "/api/v1/doc-tokens", tag = "embedding", operation_id = "create_doc_token",
    security(("api_key" = [])),
    request_body = DocTokenRequest,
    responses(
        (status = 200, description = "A token for the document", body = DocTokenResponse),
        (status = 400, description = "Invalid document id", body = ErrorBody),
        (status = 401, description = "`invalid_api_key`", body = ErrorBody),
        (status = 429, description = "Too many requests from this caller", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    address: ClientAddress,
    headers: HeaderMap,
    ApiJson(request): ApiJson<DocTokenRequest>,
) -> Result<Json<DocTokenResponse>, ApiError> {
    // Limited per caller before the key is checked, so wrong keys are limited too. The
    // caller is an embedder's backend, known by its address; without one, all callers
    // share a bucket.
    let key = address.key().unwrap_or_else(|| "unknown".to_owned());
    state
        .rate_limits()
        .doc_tokens
        .check(&key)
        .await
        .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    let presented = match bearer(&headers) {
        Ok(key) => key,
        Err(_) => return Err(ApiError::InvalidApiKey),
    };
    if !state.authenticator().check_api_key(presented) {
        return Err(ApiError::InvalidApiKey);
    }
    let doc = DocId::new(&request.doc)
        .map_err(|error| ApiError::InvalidRequest(format!("doc: {error}")))?;
    let issued = state
        .authenticator()
        .issue_doc_token(doc.as_str(), request.access)?;
    Ok(Json(DocTokenResponse {
        token: issued.token,
        doc: doc.as_str().to_owned(),
        access: request.access,
        expires_in: issued.expires_in,
    }))
}
