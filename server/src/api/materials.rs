//! Course material: upload (streaming multipart), list, download, passages, delete, and
//! semantic search over a classroom's materials.
//!
//! Members of a classroom read its materials and upload to it; the uploader and the
//! classroom's faculty may delete. Everyone else gets 403 (404 when it does not exist).

use std::collections::HashSet;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;

use lectern_db::Classrooms;
use lectern_db::classrooms::MemberRole;
use lectern_db::materials::Material;

use crate::AppState;
use crate::api::classrooms::membership;
use crate::api::dto::{
    ChunkResponse, ErrorBody, MaterialResponse, SearchHitResponse, SearchRequest, SearchResponse,
    UploadForm,
};
use crate::api::error::ApiError;
use crate::api::extract::{Account, ApiJson};
use crate::auth::now_secs;
use crate::materials::library_format;

/// Multipart framing allowed on top of the file itself before `Content-Length` alone
/// says the upload is too large.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;

/// Longest file name kept (longer ones are cut).
const MAX_FILE_NAME_CHARS: usize = 255;

/// Most passages one search returns.
const MAX_K: usize = 50;

/// Longest search query.
const MAX_QUERY_CHARS: usize = 2000;

/// Most materials one search may be restricted to (each is looked up in the database).
const MAX_MATERIAL_IDS: usize = 20;

fn now() -> i64 {
    i64::try_from(now_secs()).unwrap_or(i64::MAX)
}

/// The material and the caller's role in its classroom: 404 if it does not exist, 403 if
/// the caller is not a member.
async fn readable(
    state: &AppState,
    material_id: &str,
    account: &Account,
) -> Result<(Material, MemberRole), ApiError> {
    let material = state
        .library()
        .materials()
        .get(material_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let classrooms = Classrooms::new(state.database().clone());
    let enrolment = membership(&classrooms, &material.classroom_id, account).await?;
    Ok((material, enrolment.role))
}

/// What the uploader called the file, without any path, control, bidirectional or
/// invisible formatting characters, and within bounds (see `api::text`).
fn clean_file_name(name: Option<&str>) -> String {
    crate::api::text::clean_file_name(name, MAX_FILE_NAME_CHARS)
}

/// Uploads a file (`multipart/form-data`, field `file`) to a classroom. The body is
/// streamed into storage, never held in memory. Answers once the file is stored and its
/// text extracted; embedding continues in the background (watch `status`, or the feed
/// document `feed_doc_id` over the WebSocket).
#[utoipa::path(
    post, path = "/api/v1/classrooms/{id}/materials", tag = "materials", operation_id = "upload_material",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Classroom id")),
    request_body(content_type = "multipart/form-data", content = UploadForm, description = "Field `file`: a PDF, DOCX, Markdown or text file"),
    responses(
        (status = 202, description = "Stored and readable; ingestion queued", body = MaterialResponse),
        (status = 400, description = "Not multipart, no `file` field, or interrupted", body = ErrorBody),
        (status = 403, description = "Not a member", body = ErrorBody),
        (status = 413, description = "Larger than the upload limit", body = ErrorBody),
        (status = 415, description = "Not a supported file type", body = ErrorBody),
        (status = 422, description = "Empty, password-protected, damaged or too large once decompressed", body = ErrorBody),
    )
)]
pub async fn upload(
    State(state): State<AppState>,
    account: Account,
    Path(classroom_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<MaterialResponse>), ApiError> {
    let classrooms = Classrooms::new(state.database().clone());
    membership(&classrooms, &classroom_id, &account).await?;

    let limit = state.library().limits().max_upload_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit.saturating_add(MULTIPART_OVERHEAD)) {
        // Refused before reading a byte of it.
        return Err(ApiError::PayloadTooLarge);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        ApiError::InvalidRequest(
            "send the file as multipart/form-data in a field named `file`".into(),
        )
    })?;
    let mut multipart = multer::Multipart::new(body.into_data_stream(), boundary);
    let field = loop {
        match multipart.next_field().await {
            Ok(Some(field)) if field.name() == Some("file") => break field,
            Ok(Some(_)) => continue,
            Ok(None) => {
                return Err(ApiError::InvalidRequest(
                    "the form has no field named `file`".into(),
                ));
            }
            Err(error) => {
                return Err(ApiError::InvalidRequest(format!(
                    "malformed multipart body: {error}"
                )));
            }
        }
    };
    let file_name = clean_file_name(field.file_name());
    let bytes = field.map_err(std::io::Error::other);
    let material = state
        .library()
        .upload(&classroom_id, &account.id, &file_name, bytes, now())
        .await?;
    Ok((StatusCode::ACCEPTED, Json(material.into())))
}

/// Lists a classroom's materials, oldest first.
#[utoipa::path(
    get, path = "/api/v1/classrooms/{id}/materials", tag = "materials", operation_id = "list_materials",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Classroom id")),
    responses(
        (status = 200, description = "The materials", body = Vec<MaterialResponse>),
        (status = 403, description = "Not a member", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    account: Account,
    Path(classroom_id): Path<String>,
) -> Result<Json<Vec<MaterialResponse>>, ApiError> {
    let classrooms = Classrooms::new(state.database().clone());
    membership(&classrooms, &classroom_id, &account).await?;
    let materials = state
        .library()
        .materials()
        .list_for_classroom(&classroom_id)
        .await?;
    Ok(Json(materials.into_iter().map(Into::into).collect()))
}

/// One material and its ingestion state.
#[utoipa::path(
    get, path = "/api/v1/materials/{id}", tag = "materials", operation_id = "get_material",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Material id")),
    responses(
        (status = 200, description = "The material", body = MaterialResponse),
        (status = 403, description = "Not a member of its classroom", body = ErrorBody),
        (status = 404, description = "No such material", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    account: Account,
    Path(material_id): Path<String>,
) -> Result<Json<MaterialResponse>, ApiError> {
    let (material, _) = readable(&state, &material_id, &account).await?;
    Ok(Json(material.into()))
}

/// Downloads the file as uploaded (streamed).
#[utoipa::path(
    get, path = "/api/v1/materials/{id}/content", tag = "materials", operation_id = "download_material",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Material id")),
    responses(
        (status = 200, description = "The file, with the media type of its format", content(
            ("application/pdf"),
            ("application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
            ("text/markdown"),
            ("text/plain"),
        )),
        (status = 403, description = "Not a member of its classroom", body = ErrorBody),
        (status = 404, description = "No such material", body = ErrorBody),
    )
)]
pub async fn content(
    State(state): State<AppState>,
    account: Account,
    Path(material_id): Path<String>,
) -> Result<Response, ApiError> {
    let (material, _) = readable(&state, &material_id, &account).await?;
    let stream = state.library().open(&material).await?;
    let media_type = library_format(material.format).media_type();
    let mut response = Body::from_stream(stream.map_err(axum::Error::new)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    if let Ok(length) = HeaderValue::from_str(&material.size_bytes.to_string()) {
        headers.insert(header::CONTENT_LENGTH, length);
    }
    if let Ok(disposition) = HeaderValue::from_str(&content_disposition(&material.file_name)) {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    // The bytes are whatever a member uploaded: never let a browser sniff them into HTML.
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

/// `attachment` with the name percent-encoded (RFC 6266 / 5987), so any name is safe.
fn content_disposition(file_name: &str) -> String {
    let mut encoded = String::with_capacity(file_name.len());
    for byte in file_name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("attachment; filename*=UTF-8''{encoded}")
}

/// The extracted passages of a material, in order, with their pages or headings.
#[utoipa::path(
    get, path = "/api/v1/materials/{id}/chunks", tag = "materials", operation_id = "list_material_chunks",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Material id")),
    responses(
        (status = 200, description = "The passages (empty until ready)", body = Vec<ChunkResponse>),
        (status = 403, description = "Not a member of its classroom", body = ErrorBody),
        (status = 404, description = "No such material", body = ErrorBody),
    )
)]
pub async fn chunks(
    State(state): State<AppState>,
    account: Account,
    Path(material_id): Path<String>,
) -> Result<Json<Vec<ChunkResponse>>, ApiError> {
    let (material, _) = readable(&state, &material_id, &account).await?;
    let chunks = state.library().materials().chunks(&material.id).await?;
    Ok(Json(chunks.into_iter().map(Into::into).collect()))
}

/// Deletes a material: its file, passages and search vectors. The uploader and the
/// classroom's faculty may.
#[utoipa::path(
    delete, path = "/api/v1/materials/{id}", tag = "materials", operation_id = "delete_material",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Material id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Neither its uploader nor faculty of its classroom", body = ErrorBody),
        (status = 404, description = "No such material", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    account: Account,
    Path(material_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (material, role) = readable(&state, &material_id, &account).await?;
    if role != MemberRole::Faculty && material.uploaded_by != account.id {
        return Err(ApiError::Forbidden);
    }
    state.library().delete(&material.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Finds the passages of a classroom's materials closest in meaning to a query.
#[utoipa::path(
    post, path = "/api/v1/classrooms/{id}/search", tag = "materials", operation_id = "search_materials",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Classroom id")),
    request_body = SearchRequest,
    responses(
        (status = 200, description = "Best passages first", body = SearchResponse),
        (status = 400, description = "Empty or too long query, or k out of range", body = ErrorBody),
        (status = 403, description = "Not a member, or a material of another classroom", body = ErrorBody),
        (status = 404, description = "A listed material does not exist", body = ErrorBody),
        (status = 503, description = "The embedding model is not ready", body = ErrorBody),
    )
)]
pub async fn search(
    State(state): State<AppState>,
    account: Account,
    Path(classroom_id): Path<String>,
    ApiJson(request): ApiJson<SearchRequest>,
) -> Result<Json<SearchResponse>, ApiError> {
    let classrooms = Classrooms::new(state.database().clone());
    membership(&classrooms, &classroom_id, &account).await?;
    let query = request.query.trim();
    if query.is_empty() || query.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::InvalidRequest(format!(
            "query must be 1 to {MAX_QUERY_CHARS} characters"
        )));
    }
    let k = request.k.unwrap_or(5);
    if !(1..=MAX_K).contains(&k) {
        return Err(ApiError::InvalidRequest(format!("k must be 1 to {MAX_K}")));
    }
    let restrict = match request.material_ids {
        None => None,
        Some(ids) => {
            if !(1..=MAX_MATERIAL_IDS).contains(&ids.len()) {
                return Err(ApiError::InvalidRequest(format!(
                    "material_ids must list 1 to {MAX_MATERIAL_IDS} materials"
                )));
            }
            let mut allowed = HashSet::new();
            for id in ids {
                let material = state
                    .library()
                    .materials()
                    .get(&id)
                    .await?
                    .ok_or(ApiError::NotFound)?;
                if material.classroom_id != classroom_id {
                    return Err(ApiError::Forbidden);
                }
                allowed.insert(id);
            }
            Some(allowed)
        }
    };
    let hits = state
        .library()
        .search(&classroom_id, query, restrict, k)
        .await?;
    Ok(Json(SearchResponse {
        hits: hits
            .into_iter()
            .map(|hit| SearchHitResponse {
                chunk: hit.chunk.into(),
                file_name: hit.file_name,
                score: hit.score,
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_lose_paths_and_control_characters() {
        assert_eq!(clean_file_name(Some("../../etc/passwd")), "passwd");
        assert_eq!(
            clean_file_name(Some("C:\\Users\\x\\Notes.pdf")),
            "Notes.pdf"
        );
        assert_eq!(clean_file_name(Some("a\u{0}b\n.txt")), "ab.txt");
        assert_eq!(clean_file_name(Some("  ")), "upload");
        assert_eq!(clean_file_name(None), "upload");
    }

    #[test]
    fn downloads_name_the_file_safely() {
        assert_eq!(
            content_disposition("Zellbiologie \"1\".pdf"),
            "attachment; filename*=UTF-8''Zellbiologie%20%221%22.pdf"
        );
        assert_eq!(
            content_disposition("é.md"),
            "attachment; filename*=UTF-8''%C3%A9.md"
        );
    }
}
