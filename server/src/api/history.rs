//! After class: writing a document over REST, its versions, restoring one, and who
//! contributed what in a session.
//!
//! - `POST /documents/{doc}/update`: a binary Yjs update applied through the room, checked
//!   exactly like a connected member's (limits, type depth, reserved client ids, size), so
//!   connected clients see it at once. Needs write access.
//! - `GET /documents/{doc}/versions`, `GET /documents/{doc}/versions/{v}` (the content as it
//!   was, in the formats of `GET /documents/{doc}`): read access.
//! - `POST /documents/{doc}/versions` (a checkpoint) and
//!   `POST /documents/{doc}/versions/{v}/restore`: faculty of the document's classroom,
//!   admins, and embedders' tokens with write access ([`require_manager`]). A restore is a
//!   *new* update computed by `lectern_collab::history`, applied through the room, after a
//!   `before_restore` version is kept, so restoring that one undoes the restore.
//! - `GET /sessions/{id}/contributions` (JSON or CSV): faculty of the session's classroom.
//!
//! Document ids are percent-encoded as one path segment, as for `GET /documents/{doc}`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use lectern_collab::{Access, DocId, SERVER_AUTHOR, UpdateLimits, VersionReason};
use lectern_db::classrooms::MemberRole;
use lectern_db::history::Activity;
use lectern_db::sessions::DocKind;
use lectern_db::{Accounts, AiJobs, Classrooms, History, Sessions};

use crate::AppState;
use crate::api::documents::{self, ReadQuery, Revision};
use crate::api::dto::{
    CheckpointRequest, ContributionResponse, ContributionsResponse, DocumentContribution,
    DocumentShareResponse, ErrorBody, RestoreResponse, UpdateAppliedResponse, VersionResponse,
};
use crate::api::error::ApiError;
use crate::api::extract::{Account, ApiJson};
use crate::api::rate_limit::ClientAddress;
use lectern_db::accounts::Role;

use crate::auth::Origin;
use crate::credentials::{Credentials, is_server_owned, user_id_of_tag};

/// Longest checkpoint label, in characters.
const MAX_LABEL_CHARS: usize = 120;

/// Keeps a version of each of `doc_ids` (a session starting or ending). History is not
/// worth failing the request for: a failure is logged (by `Rooms::save_version`).
pub(crate) async fn keep_versions(state: &AppState, doc_ids: &[String], reason: VersionReason) {
    use futures_util::StreamExt as _;
    // A class's forks make this one document per student: a few at a time, so ending a
    // session of 200 does not take 200 room loads in a row nor 200 at once.
    const AT_ONCE: usize = 8;
    // The session's server-owned document is nobody's work and never restored.
    let docs = doc_ids
        .iter()
        .filter(|doc| !is_server_owned(doc))
        .filter_map(|doc| DocId::new(doc).ok());
    futures_util::stream::iter(docs)
        .for_each_concurrent(AT_ONCE, |doc| async move {
            let _ = state.rooms().save_version(&doc, reason, None, None).await;
        })
        .await;
}

/// The document id from the path, checked.
fn doc_id(raw: &str) -> Result<DocId, ApiError> {
    DocId::new(raw).map_err(|error| ApiError::InvalidRequest(format!("document id: {error}")))
}

/// The caller's access to `doc`: 401 without a token where one is needed, 403 without access.
async fn access_to(
    state: &AppState,
    credentials: &Credentials,
    doc: &DocId,
) -> Result<Access, ApiError> {
    credentials
        .access(state, doc)
        .await
        .ok_or(match credentials {
            Credentials::Anonymous => ApiError::Unauthenticated,
            _ => ApiError::Forbidden,
        })
}

/// 403 unless the caller may checkpoint and restore `doc`: write access, and for our own
/// accounts, faculty of the document's classroom or an admin (a student who may write the
/// class notes may not roll them back). Embedders' tokens with write access decide for
/// themselves who holds them.
async fn require_manager(
    state: &AppState,
    credentials: &Credentials,
    doc: &DocId,
) -> Result<(), ApiError> {
    if access_to(state, credentials, doc).await? != Access::Write {
        return Err(ApiError::Forbidden);
    }
    let Credentials::User(principal) = credentials else {
        return Ok(());
    };
    if principal.origin == Origin::External || principal.role == Role::Admin {
        return Ok(());
    }
    let Some(entry) = Sessions::new(state.database().clone())
        .document(doc.as_str())
        .await?
    else {
        // Not a classroom document: whoever may write it may manage it.
        return Ok(());
    };
    let role = Classrooms::new(state.database().clone())
        .membership(&entry.document.classroom_id, &principal.subject)
        .await?;
    match role {
        Some(MemberRole::Faculty) => Ok(()),
        Some(MemberRole::Student) | None => Err(ApiError::Forbidden),
    }
}

/// Applies a binary Yjs update (v1) to the document, through its room: connected clients
/// receive it at once. Checked like a connected member's update.
#[utoipa::path(
    post, path = "/api/v1/documents/{doc}/update", tag = "documents", operation_id = "apply_document_update",
    security(("bearer" = []), ()),
    params(("doc" = String, Path, description = "Document id, percent-encoded as one segment (`/` as `%2F`)")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "A Yjs update (v1)"),
    responses(
        (status = 200, description = "Applied and stored", body = UpdateAppliedResponse),
        (status = 401, description = "A token that does not verify, or none where one is needed", body = ErrorBody),
        (status = 403, description = "The caller may not write the document", body = ErrorBody),
        (status = 409, description = "`update_incomplete`: it depends on changes the document does not have", body = ErrorBody),
        (status = 413, description = "Over the size limit of a message, or the document's", body = ErrorBody),
        (status = 422, description = "`update_refused`: not a valid update, over the limits, or under a reserved client id", body = ErrorBody),
    )
)]
pub async fn apply_update(
    State(state): State<AppState>,
    address: ClientAddress,
    headers: HeaderMap,
    Path(doc): Path<String>,
    body: Body,
) -> Result<Json<UpdateAppliedResponse>, ApiError> {
    let doc = doc_id(&doc)?;
    let credentials = documents::credentials(&state, address, &headers).await?;
    if access_to(&state, &credentials, &doc).await? != Access::Write {
        return Err(ApiError::Forbidden);
    }
    // The body is read only once the caller may write, and no further than a WebSocket
    // message may be long (the API's 64 KiB JSON limit is for JSON).
    let body = axum::body::to_bytes(body, state.config().max_message_bytes)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    let author = credentials.user_tag();
    let outcome = state
        .rooms()
        .apply_rest_update(&doc, body, &author)
        .await
        .map_err(ApiError::internal)?;
    outcome.map_err(ApiError::from)?;
    Ok(Json(UpdateAppliedResponse { applied: true }))
}

/// The versions kept of a document, newest first.
#[utoipa::path(
    get, path = "/api/v1/documents/{doc}/versions", tag = "documents", operation_id = "list_document_versions",
    security(("bearer" = []), ()),
    params(("doc" = String, Path, description = "Document id, percent-encoded as one segment")),
    responses(
        (status = 200, description = "The versions, newest first", body = [VersionResponse]),
        (status = 401, description = "A token that does not verify, or none where one is needed", body = ErrorBody),
        (status = 403, description = "The caller may not read the document", body = ErrorBody),
    )
)]
pub async fn list_versions(
    State(state): State<AppState>,
    address: ClientAddress,
    headers: HeaderMap,
    Path(doc): Path<String>,
) -> Result<Json<Vec<VersionResponse>>, ApiError> {
    let doc = doc_id(&doc)?;
    let credentials = documents::credentials(&state, address, &headers).await?;
    access_to(&state, &credentials, &doc).await?;
    let versions = History::new(state.database().clone())
        .versions(doc.as_str())
        .await?;
    Ok(Json(
        versions.into_iter().map(VersionResponse::from).collect(),
    ))
}

/// Keeps the document's current state as a version now (a checkpoint).
#[utoipa::path(
    post, path = "/api/v1/documents/{doc}/versions", tag = "documents", operation_id = "checkpoint_document",
    security(("bearer" = [])),
    params(("doc" = String, Path, description = "Document id, percent-encoded as one segment")),
    request_body = CheckpointRequest,
    responses(
        (status = 201, description = "Kept", body = VersionResponse),
        (status = 403, description = "Not faculty of the document's classroom (or no write access)", body = ErrorBody),
        (status = 400, description = "A label over 120 characters", body = ErrorBody),
    )
)]
pub async fn checkpoint(
    State(state): State<AppState>,
    address: ClientAddress,
    headers: HeaderMap,
    Path(doc): Path<String>,
    ApiJson(request): ApiJson<CheckpointRequest>,
) -> Result<(StatusCode, Json<VersionResponse>), ApiError> {
    let doc = doc_id(&doc)?;
    let label = match request.label.as_deref().map(str::trim) {
        Some(label) if label.chars().count() > MAX_LABEL_CHARS => {
            return Err(ApiError::InvalidRequest(format!(
                "label is longer than {MAX_LABEL_CHARS} characters"
            )));
        }
        Some("") | None => None,
        Some(label) => Some(label.to_owned()),
    };
    let credentials = documents::credentials(&state, address, &headers).await?;
    require_manager(&state, &credentials, &doc).await?;
    let author = credentials.user_tag();
    let id = state
        .rooms()
        .save_version(&doc, VersionReason::Checkpoint, label, Some(&author))
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::internal(std::io::Error::other("no version id")))?;
    let (info, _) = History::new(state.database().clone())
        .version(doc.as_str(), id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok((StatusCode::CREATED, Json(VersionResponse::from(info))))
}

/// The document as it was at a version, in the formats of `GET /documents/{doc}`.
#[utoipa::path(
    get, path = "/api/v1/documents/{doc}/versions/{version}", tag = "documents", operation_id = "get_document_version",
    security(("bearer" = []), ()),
    params(
        ("doc" = String, Path, description = "Document id, percent-encoded as one segment"),
        ("version" = i64, Path, description = "Version id"),
        ("format" = Option<String>, Query, description = "`json` (default), `markdown` or `update`"),
        ("sv" = Option<String>, Query, description = "With `format=update`: the caller's state vector (v1, base64)"),
    ),
    responses(
        (status = 200, description = "The content as it was"),
        (status = 403, description = "The caller may not read the document", body = ErrorBody),
        (status = 404, description = "No such version of this document", body = ErrorBody),
    )
)]
pub async fn read_version(
    State(state): State<AppState>,
    address: ClientAddress,
    headers: HeaderMap,
    Path((doc, version)): Path<(String, i64)>,
    Query(query): Query<ReadQuery>,
) -> Result<Response, ApiError> {
    documents::read_revision(
        &state,
        address,
        &headers,
        &doc,
        query,
        Revision::Version(version),
    )
    .await
}

/// Brings the document back to a version, as a new update every connected client applies.
#[utoipa::path(
    post, path = "/api/v1/documents/{doc}/versions/{version}/restore", tag = "documents", operation_id = "restore_document_version",
    security(("bearer" = [])),
    params(
        ("doc" = String, Path, description = "Document id, percent-encoded as one segment"),
        ("version" = i64, Path, description = "Version id"),
    ),
    responses(
        (status = 200, description = "Restored", body = RestoreResponse),
        (status = 403, description = "Not faculty of the document's classroom (or no write access)", body = ErrorBody),
        (status = 404, description = "No such version of this document", body = ErrorBody),
    )
)]
pub async fn restore(
    State(state): State<AppState>,
    address: ClientAddress,
    headers: HeaderMap,
    Path((doc, version)): Path<(String, i64)>,
) -> Result<Json<RestoreResponse>, ApiError> {
    let doc = doc_id(&doc)?;
    let credentials = documents::credentials(&state, address, &headers).await?;
    require_manager(&state, &credentials, &doc).await?;
    let (_, kept) = History::new(state.database().clone())
        .version(doc.as_str(), version)
        .await?
        .ok_or(ApiError::NotFound)?;
    let author = credentials.user_tag();
    let rooms = state.rooms();
    let before = rooms
        .save_version(&doc, VersionReason::BeforeRestore, None, Some(&author))
        .await
        .map_err(ApiError::internal)?;
    let live = rooms.encode_state(&doc).await.map_err(ApiError::internal)?;
    let limits = UpdateLimits {
        max_values: usize::MAX,
        ..state.config().room_config().update_limits
    };
    // Undoing a long history is CPU work proportional to the document: off the reactor.
    let restoring = tokio::task::spawn_blocking(move || {
        lectern_collab::history::restoring_update(&live, &kept, &limits)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    let changed = restoring.is_some();
    if let Some(update) = restoring {
        // Putting back what was there is nobody's new contribution: the restore counts as
        // the server's edit (who asked is on the `before_restore` version).
        rooms
            .apply_rest_update(&doc, update.into(), SERVER_AUTHOR)
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::from)?;
    }
    Ok(Json(RestoreResponse {
        restored: version,
        changed,
        before_restore: before,
    }))
}

/// `GET /sessions/{id}/contributions` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContributionsQuery {
    /// `json` (default) or `csv`.
    #[serde(default)]
    format: ReportFormat,
}

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum ReportFormat {
    #[default]
    Json,
    Csv,
}

/// Who contributed what to a session's documents (faculty only): per person and document,
/// characters added and deleted, what AI jobs they started wrote, first and last edit and
/// active minutes; JSON or CSV.
#[utoipa::path(
    get, path = "/api/v1/sessions/{id}/contributions", tag = "sessions", operation_id = "session_contributions",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "Session id"),
        ("format" = Option<String>, Query, description = "`json` (default) or `csv` (one row per person and document)"),
    ),
    responses(
        (status = 200, description = "The report", body = ContributionsResponse),
        (status = 403, description = "Not faculty of its classroom", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
    )
)]
pub async fn contributions(
    State(state): State<AppState>,
    account: Account,
    Path(id): Path<String>,
    Query(query): Query<ContributionsQuery>,
) -> Result<Response, ApiError> {
    let sessions = Sessions::new(state.database().clone());
    let session = sessions.get(&id).await?.ok_or(ApiError::NotFound)?;
    let role = Classrooms::new(state.database().clone())
        .membership(&session.classroom_id, &account.id)
        .await?;
    if role != Some(MemberRole::Faculty) && account.role != Role::Admin {
        return Err(ApiError::Forbidden);
    }
    let documents: Vec<(String, DocKind)> = sessions
        .documents_of_session(&id)
        .await?
        .into_iter()
        .filter(|document| document.kind != DocKind::Lectern)
        .map(|document| (document.doc_id, document.kind))
        .collect();
    let doc_ids: Vec<String> = documents.iter().map(|(id, _)| id.clone()).collect();
    let from_ms = session.started_at.saturating_mul(1000);
    let to_ms = session.ended_at.map_or(i64::MAX, |ended| {
        ended.saturating_add(60).saturating_mul(1000)
    });
    let activity = History::new(state.database().clone())
        .activity(&doc_ids, from_ms, to_ms)
        .await?;
    let kinds: HashMap<String, DocKind> = documents.into_iter().collect();
    let report = build_report(&state, &id, activity, &kinds).await?;
    match query.format {
        ReportFormat::Json => Ok(Json(report).into_response()),
        ReportFormat::Csv => Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!(
                        "attachment; filename=\"contributions-{}.csv\"",
                        safe_name(&id)
                    ),
                ),
            ],
            csv(&report),
        )
            .into_response()),
    }
}

/// Adds up one person's (or one AI job's) minutes of activity.
#[derive(Debug, Default)]
struct Tally {
    inserted: i64,
    deleted: i64,
    ai_inserted: i64,
    edits: i64,
    first_at_ms: Option<i64>,
    last_at_ms: Option<i64>,
    minutes: BTreeSet<i64>,
}

impl Tally {
    fn add(&mut self, row: &Activity, by_ai: bool) {
        if by_ai {
            self.ai_inserted += row.inserted;
        } else {
            self.inserted += row.inserted;
            self.deleted += row.deleted;
            self.edits += row.edits;
            self.minutes.insert(row.minute);
        }
        self.first_at_ms = Some(
            self.first_at_ms
                .map_or(row.first_at_ms, |at| at.min(row.first_at_ms)),
        );
        self.last_at_ms = Some(
            self.last_at_ms
                .map_or(row.last_at_ms, |at| at.max(row.last_at_ms)),
        );
    }

    fn document(&self, doc_id: &str, kind: Option<DocKind>) -> DocumentContribution {
        DocumentContribution {
            doc_id: doc_id.to_owned(),
            kind: kind.map(|kind| kind.as_str().to_owned()),
            inserted: self.inserted,
            deleted: self.deleted,
            ai_inserted: self.ai_inserted,
            edits: self.edits,
            first_edit_at_ms: self.first_at_ms,
            last_edit_at_ms: self.last_at_ms,
            active_minutes: i64::try_from(self.minutes.len()).unwrap_or(i64::MAX),
        }
    }
}

/// The report from minute rows: each row's author is a person (`user:<id>` or an
/// embedder's subject), an AI job (`ai:<job id>`, counted for the person who started it),
/// or the server (not counted).
async fn build_report(
    state: &AppState,
    session_id: &str,
    activity: Vec<Activity>,
    kinds: &HashMap<String, DocKind>,
) -> Result<ContributionsResponse, ApiError> {
    let jobs = AiJobs::new(state.database().clone());
    let mut job_owner: HashMap<String, Option<String>> = HashMap::new();
    // person author tag -> doc id -> tally
    let mut people: BTreeMap<String, BTreeMap<String, Tally>> = BTreeMap::new();
    // doc id -> (human inserted, ai inserted)
    let mut shares: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for row in &activity {
        let (person, by_ai) = match row.author.strip_prefix("ai:") {
            Some(job_id) => {
                if !job_owner.contains_key(job_id) {
                    let owner = jobs.get(job_id).await?.map(|job| job.started_by);
                    job_owner.insert(job_id.to_owned(), owner);
                }
                let owner = job_owner.get(job_id).cloned().flatten();
                (owner.map(|user| crate::credentials::user_tag(&user)), true)
            }
            None if row.author == lectern_collab::SERVER_AUTHOR => (None, false),
            None => (Some(row.author.clone()), false),
        };
        let share = shares.entry(row.doc_id.clone()).or_default();
        if by_ai {
            share.1 += row.inserted;
        } else if person.is_some() {
            share.0 += row.inserted;
        }
        if let Some(person) = person {
            people
                .entry(person)
                .or_default()
                .entry(row.doc_id.clone())
                .or_default()
                .add(row, by_ai);
        }
    }
    let accounts = Accounts::new(state.database().clone());
    let mut rows = Vec::with_capacity(people.len());
    for (author, documents) in people {
        let user_id = user_id_of_tag(&author).map(str::to_owned);
        let display_name = match &user_id {
            Some(id) => accounts.user_by_id(id).await?.map(|user| user.display_name),
            None => None,
        };
        let mut total = Tally::default();
        let mut per_document = Vec::with_capacity(documents.len());
        for (doc_id, tally) in &documents {
            per_document.push(tally.document(doc_id, kinds.get(doc_id).copied()));
            total.inserted += tally.inserted;
            total.deleted += tally.deleted;
            total.ai_inserted += tally.ai_inserted;
            total.edits += tally.edits;
            total.minutes.extend(tally.minutes.iter().copied());
            total.first_at_ms = [total.first_at_ms, tally.first_at_ms]
                .into_iter()
                .flatten()
                .min();
            total.last_at_ms = [total.last_at_ms, tally.last_at_ms]
                .into_iter()
                .flatten()
                .max();
        }
        rows.push(ContributionResponse {
            author,
            user_id,
            display_name,
            inserted: total.inserted,
            deleted: total.deleted,
            ai_inserted: total.ai_inserted,
            ai_share: share_of(total.ai_inserted, total.inserted),
            edits: total.edits,
            first_edit_at_ms: total.first_at_ms,
            last_edit_at_ms: total.last_at_ms,
            active_minutes: i64::try_from(total.minutes.len()).unwrap_or(i64::MAX),
            documents: per_document,
        });
    }
    let documents = shares
        .into_iter()
        .map(|(doc_id, (human, ai))| DocumentShareResponse {
            kind: kinds.get(&doc_id).map(|kind| kind.as_str().to_owned()),
            doc_id,
            human_inserted: human,
            ai_inserted: ai,
            ai_share: share_of(ai, human),
        })
        .collect();
    Ok(ContributionsResponse {
        session_id: session_id.to_owned(),
        people: rows,
        documents,
    })
}

/// `ai` as a share of everything inserted (0 when nothing was).
fn share_of(ai: i64, human: i64) -> f64 {
    let total = ai.saturating_add(human);
    if total <= 0 {
        return 0.0;
    }
    // Counts are far below 2^52: exact as f64.
    #[allow(clippy::cast_precision_loss)]
    let share = ai as f64 / total as f64;
    (share * 1000.0).round() / 1000.0
}

/// The report as CSV: one row per person and document.
fn csv(report: &ContributionsResponse) -> String {
    let mut out = String::from(
        "user_id,display_name,author,doc_id,kind,inserted,deleted,ai_inserted,edits,\
         first_edit_at_ms,last_edit_at_ms,active_minutes\n",
    );
    for person in &report.people {
        for document in &person.documents {
            let fields = [
                person.user_id.clone().unwrap_or_default(),
                person.display_name.clone().unwrap_or_default(),
                person.author.clone(),
                document.doc_id.clone(),
                document.kind.clone().unwrap_or_default(),
                document.inserted.to_string(),
                document.deleted.to_string(),
                document.ai_inserted.to_string(),
                document.edits.to_string(),
                document
                    .first_edit_at_ms
                    .map(|at| at.to_string())
                    .unwrap_or_default(),
                document
                    .last_edit_at_ms
                    .map(|at| at.to_string())
                    .unwrap_or_default(),
                document.active_minutes.to_string(),
            ];
            let line: Vec<String> = fields.iter().map(|field| csv_field(field)).collect();
            out.push_str(&line.join(","));
            out.push('\n');
        }
    }
    out
}

/// One CSV field: quoted when it holds a separator, quote or line break, and defused when
/// a spreadsheet would read it as a formula (a display name like `=HYPERLINK(...)`).
fn csv_field(value: &str) -> String {
    let defused = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if defused.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", defused.replace('"', "\"\""))
    } else {
        defused
    }
}

/// `id` with only characters safe in a file name.
fn safe_name(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("Ada"), "Ada");
        assert_eq!(csv_field("Lovelace, Ada"), "\"Lovelace, Ada\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("-1"), "'-1");
    }

    #[test]
    fn the_ai_share_is_rounded_and_zero_without_text() {
        assert!((share_of(1, 3) - 0.25).abs() < f64::EPSILON);
        assert!(share_of(0, 0).abs() < f64::EPSILON);
    }
}
