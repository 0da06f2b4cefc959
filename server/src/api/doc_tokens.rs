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

/// Mints a document token. Authenticated with `Authorization: Bearer <server API key>`;
/// with no key configured every request is refused.
#[utoipa::path(
    post, path = "/api/v1/doc-tokens", tag = "embedding",
    security(("api_key" = [])),
    request_body = DocTokenRequest,
    responses(
        (status = 200, description = "A token for the document", body = DocTokenResponse),
        (status = 400, description = "Invalid document id", body = ErrorBody),
        (status = 401, description = "`invalid_api_key`", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<DocTokenRequest>,
) -> Result<Json<DocTokenResponse>, ApiError> {
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
