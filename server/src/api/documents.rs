//! REST access to a document's content, for backends and tools that do not speak the
//! WebSocket protocol (the y-sweet / y/hub convention): `GET /documents/{doc}` as JSON,
//! as Markdown when the document has a text body, or as a binary Yjs update (a diff
//! against `sv`, a client's state vector).
//!
//! Document ids contain `/`: a caller percent-encodes the id as one path segment
//! (`/documents/session%2F…%2Fnotes`); the router matches the raw path and `Path` decodes
//! it. Access is decided exactly as for a WebSocket ([`Credentials::access`]): a Lectern
//! access token, an external token's `docs` claim, a document token, or no token (what
//! `--anonymous-access` allows). Reading needs read access.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use lectern_collab::DocId;
use serde::Deserialize;
use serde_json::{Map as JsonMap, Value};
use yrs::types::ToJson;
use yrs::updates::decoder::Decode;
use yrs::{
    Any, ArrayRef, Doc, GetString, Map, MapRef, Out, ReadTxn, StateVector, TextRef, Transact,
    Update,
};

use crate::AppState;
use crate::api::dto::ErrorBody;
use crate::api::error::ApiError;
use crate::api::extract::{bearer, within_api_rate_limit};
use crate::api::rate_limit::ClientAddress;
use crate::credentials::Credentials;

/// The root names the server and its clients write, with their types (docs/ai.md,
/// "Document shapes"). A Yjs update does not say which type a root is; these are read as
/// what they are, other roots as what their content looks like (see [`root_json`]).
const TEXT_ROOTS: [&str; 2] = ["content", "draft"];
const ARRAY_ROOTS: [&str; 1] = ["messages"];
const MAP_ROOTS: [&str; 8] = [
    "lectern",
    "mindmap",
    "quiz",
    "flashcards",
    "exam",
    "lesson_plan",
    "sources",
    "materials",
];

/// The text root `?format=markdown` gives: the notes, a translation.
const MARKDOWN_ROOT: &str = "content";

/// `GET /documents/{doc}` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    /// `json` (default), `markdown` or `update`.
    #[serde(default)]
    format: Format,
    /// With `format=update`: the caller's state vector (v1, base64), to get only what it
    /// lacks.
    sv: Option<String>,
}

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Format {
    #[default]
    Json,
    Markdown,
    Update,
}

/// A document's content as JSON (its roots by name), as Markdown (its `content` text), or
/// as a binary Yjs update (v1).
#[utoipa::path(
    get, path = "/api/v1/documents/{doc}", tag = "documents", operation_id = "get_document",
    security(("bearer" = []), ()),
    params(
        ("doc" = String, Path, description = "Document id, percent-encoded as one segment (`/` as `%2F`)"),
        ("format" = Option<String>, Query, description = "`json` (default): the roots by name; `markdown`: the `content` text; `update`: a binary Yjs update (v1)"),
        ("sv" = Option<String>, Query, description = "With `format=update`: the caller's state vector (v1, base64), to get only what it lacks"),
    ),
    responses(
        (status = 200, description = "The content: `application/json`, `text/markdown` or `application/octet-stream`"),
        (status = 400, description = "A malformed id, `format` or `sv`, or `format=markdown` on a document with no `content` text", body = ErrorBody),
        (status = 401, description = "A token that does not verify, or none where one is needed", body = ErrorBody),
        (status = 403, description = "The caller may not read the document", body = ErrorBody),
    )
)]
pub async fn read(
    State(state): State<AppState>,
    address: ClientAddress,
    headers: HeaderMap,
    Path(doc): Path<String>,
    Query(query): Query<ReadQuery>,
) -> Result<Response, ApiError> {
    read_revision(&state, address, &headers, &doc, query, Revision::Current).await
}

/// `GET /documents/{doc}` of `revision` (the live document or a kept version).
pub(crate) async fn read_revision(
    state: &AppState,
    address: ClientAddress,
    headers: &HeaderMap,
    doc: &str,
    query: ReadQuery,
    revision: Revision,
) -> Result<Response, ApiError> {
    let doc = DocId::new(doc)
        .map_err(|error| ApiError::InvalidRequest(format!("document id: {error}")))?;
    // The request is checked whole before any room is loaded for it.
    let state_vector = match (query.format, &query.sv) {
        (Format::Update, Some(sv)) => Some(decode_state_vector(sv)?),
        (_, Some(_)) => {
            return Err(ApiError::InvalidRequest(
                "sv goes with format=update only".into(),
            ));
        }
        (_, None) => None,
    };
    let credentials = credentials(state, address, headers).await?;
    if credentials.access(state, &doc).await.is_none() {
        return Err(match credentials {
            Credentials::Anonymous => ApiError::Unauthenticated,
            _ => ApiError::Forbidden,
        });
    }
    let encoded = encoded_state(state, &doc, revision).await?;
    if query.format == Format::Update && state_vector.is_none() {
        // The whole state is what the room encoded: no replica needed.
        return Ok(binary(encoded));
    }
    let scratch = replica(&encoded)?;
    match query.format {
        Format::Update => {
            let state_vector = state_vector.unwrap_or_default();
            Ok(binary(
                scratch.transact().encode_state_as_update_v1(&state_vector),
            ))
        }
        Format::Markdown => {
            let has_text = scratch
                .transact()
                .root_refs()
                .any(|(name, _)| name == MARKDOWN_ROOT);
            if !has_text {
                return Err(ApiError::InvalidRequest(format!(
                    "format=markdown needs a document with a `{MARKDOWN_ROOT}` text; ask for format=json"
                )));
            }
            let text = scratch.get_or_insert_text(MARKDOWN_ROOT);
            let markdown = text.get_string(&scratch.transact());
            let mut response = markdown.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/markdown; charset=utf-8"),
            );
            Ok(response)
        }
        Format::Json => Ok(axum::Json(document_json(&scratch)).into_response()),
    }
}

/// Which state of a document to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Revision {
    /// What the document holds now (its room's state, the room loaded if need be).
    Current,
    /// A kept version, by id (`GET /documents/{doc}/versions`).
    Version(i64),
}

/// Document `doc` at `revision` as its JSON roots by name (what `format=json` answers).
/// The caller has decided access already.
pub(crate) async fn content_json(
    state: &AppState,
    doc: &DocId,
    revision: Revision,
) -> Result<Value, ApiError> {
    let encoded = encoded_state(state, doc, revision).await?;
    Ok(document_json(&replica(&encoded)?))
}

/// Document `doc` at `revision` as one Yjs update (v1).
async fn encoded_state(
    state: &AppState,
    doc: &DocId,
    revision: Revision,
) -> Result<Vec<u8>, ApiError> {
    match revision {
        Revision::Current => state
            .rooms()
            .encode_state(doc)
            .await
            .map_err(ApiError::internal),
        Revision::Version(id) => {
            let (_, snapshot) = lectern_db::History::new(state.database().clone())
                .version(doc.as_str(), id)
                .await?
                .ok_or(ApiError::NotFound)?;
            // Stored bytes reach yrs only through the limits, like a room's stored parts.
            let limits = lectern_collab::UpdateLimits {
                max_values: usize::MAX,
                ..state.config().room_config().update_limits
            };
            lectern_collab::check_update_v1(&snapshot, &limits).map_err(ApiError::internal)?;
            Ok(snapshot)
        }
    }
}

/// A scratch replica holding `encoded` (a Yjs update, v1), to read roots from.
fn replica(encoded: &[u8]) -> Result<Doc, ApiError> {
    let scratch = Doc::new();
    let update = Update::decode_v1(encoded).map_err(ApiError::internal)?;
    scratch
        .transact_mut()
        .apply_update(update)
        .map_err(ApiError::internal)?;
    Ok(scratch)
}

/// A Yjs update (v1) as the response body.
fn binary(update: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/octet-stream")], update).into_response()
}

/// Who calls: the `Authorization: Bearer` token if any (a document token or an access
/// token), within the API rate limit (per caller; per client address without a token, so
/// anonymous callers do not share one bucket).
pub(crate) async fn credentials(
    state: &AppState,
    address: ClientAddress,
    headers: &HeaderMap,
) -> Result<Credentials, ApiError> {
    let credentials = match headers.get(header::AUTHORIZATION) {
        None => Credentials::Anonymous,
        Some(_) => Credentials::from_token(state.authenticator(), bearer(headers)?)?,
    };
    let key = match (&credentials, address.key()) {
        (Credentials::Anonymous, Some(address)) => format!("anonymous:{address}"),
        _ => credentials.user_tag().to_string(),
    };
    within_api_rate_limit(state, &key).await?;
    Ok(credentials)
}

/// A state vector sent as base64 (standard or URL-safe, padded or not).
fn decode_state_vector(text: &str) -> Result<StateVector, ApiError> {
    let invalid = || ApiError::InvalidRequest("sv is not a base64 Yjs state vector (v1)".into());
    let trimmed = text.trim_end_matches('=');
    let bytes = URL_SAFE_NO_PAD
        .decode(trimmed.replace('+', "-").replace('/', "_"))
        .or_else(|_| STANDARD.decode(text))
        .map_err(|_| invalid())?;
    StateVector::decode_v1(&bytes).map_err(|_| invalid())
}

/// Every root of `doc` by name, as JSON.
fn document_json(doc: &Doc) -> Value {
    let names: Vec<String> = doc
        .transact()
        .root_refs()
        .map(|(name, _)| name.to_owned())
        .collect();
    let mut roots = JsonMap::new();
    for name in names {
        roots.insert(name.clone(), root_json(doc, &name));
    }
    Value::Object(roots)
}

/// Root `name` of `doc` as JSON: a known root as its type, another by its content.
fn root_json(doc: &Doc, name: &str) -> Value {
    if TEXT_ROOTS.contains(&name) {
        let text = doc.get_or_insert_text(name);
        return Value::String(text.get_string(&doc.transact()));
    }
    let any = if ARRAY_ROOTS.contains(&name) {
        let array = doc.get_or_insert_array(name);
        array.to_json(&doc.transact())
    } else if MAP_ROOTS.contains(&name) {
        let map = doc.get_or_insert_map(name);
        map.to_json(&doc.transact())
    } else {
        return unknown_root_json(doc, name);
    };
    json(any)
}

/// A root no client of ours writes (an embedder's): a map if it has keys, else text if it
/// holds text, else an array.
fn unknown_root_json(doc: &Doc, name: &str) -> Value {
    let txn = doc.transact();
    let Some((_, root)) = txn.root_refs().find(|(root, _)| *root == name) else {
        return Value::Null;
    };
    match root {
        Out::YText(text) => Value::String(text.get_string(&txn)),
        Out::YMap(map) => json(map.to_json(&txn)),
        Out::YArray(array) => json(array.to_json(&txn)),
        Out::UndefinedRef(branch) => {
            let map = MapRef::from(branch);
            let text = TextRef::from(branch).get_string(&txn);
            if map.len(&txn) > 0 {
                json(map.to_json(&txn))
            } else if !text.is_empty() {
                Value::String(text)
            } else {
                json(ArrayRef::from(branch).to_json(&txn))
            }
        }
        other => json(other.to_json(&txn)),
    }
}

fn json(any: Any) -> Value {
    serde_json::to_value(any).unwrap_or(Value::Null)
}
