//! Exports: one document, or every document of a session the caller may read as a zip, to
//! Markdown, DOCX or PDF (`lectern-export`).
//!
//! A document is read exactly as `GET /documents/{doc}` reads it
//! ([`documents::content_json`]) and its caller decided the same way (read access
//! needed). Answers (right options, explanations, model answers, marking guidance,
//! flashcard backs, answer keys) are for those who teach: classroom faculty and admins, and
//! tokens that may write the document (a full document token, an external token naming
//! it). A student asking for them on a document that has any gets 403; without `answers`,
//! faculty get them and everyone else does not.
//!
//! Rendering runs on blocking threads, a few at once per node ([`Slots`]); past that and a
//! short line, callers get 503 with `Retry-After`, so exports cannot starve the server.

use std::io::{Cursor, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use lectern_collab::DocId;
use lectern_db::accounts::Role;
use lectern_db::classrooms::MemberRole;
use lectern_db::sessions::{DocKind, DocumentEntry};
use lectern_db::{Accounts, Classrooms, Sessions};
use lectern_export::{Document, Exported, Format, Options};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::AppState;
use crate::access::{Access, Caller, DocFacts, decide};
use crate::api::documents::{self, Revision};
use crate::api::dto::ErrorBody;
use crate::api::error::ApiError;
use crate::api::extract::Account;
use crate::api::rate_limit::ClientAddress;
use crate::auth::Origin;
use crate::credentials::Credentials;

/// The characters of the export no font on the server has, as `U+XXXX` separated by
/// spaces (PDF only); absent when there are none.
pub(crate) const MISSING_GLYPHS_HEADER: HeaderName =
    HeaderName::from_static("x-lectern-missing-glyphs");

/// `true` when the export was cut at the character budget (it says so at its end).
pub(crate) const TRUNCATED_HEADER: HeaderName =
    HeaderName::from_static("x-lectern-export-truncated");

/// Most code points named in the missing-glyphs header (the PDF names them all).
const MAX_MISSING_IN_HEADER: usize = 100;

/// How long a caller refused for lack of a slot is told to wait.
const BUSY_RETRY_AFTER: Duration = Duration::from_secs(5);

/// `GET /documents/{doc}/export` and `GET /sessions/{id}/export` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// `md`, `docx` or `pdf`.
    format: ExportFormat,
    /// A kept version to export instead of the live document (`GET .../versions`).
    #[serde(default)]
    version: Option<i64>,
    /// With answers (see the module docs); by default for faculty only.
    answers: Option<bool>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum ExportFormat {
    Md,
    Docx,
    Pdf,
}

impl From<ExportFormat> for Format {
    fn from(format: ExportFormat) -> Self {
        match format {
            ExportFormat::Md => Format::Markdown,
            ExportFormat::Docx => Format::Docx,
            ExportFormat::Pdf => Format::Pdf,
        }
    }
}

/// One document as a file.
#[utoipa::path(
    get, path = "/api/v1/documents/{doc}/export", tag = "documents", operation_id = "export_document",
    security(("bearer" = []), ()),
    params(
        ("doc" = String, Path, description = "Document id, percent-encoded as one segment (`/` as `%2F`)"),
        ("format" = String, Query, description = "`md`, `docx` or `pdf`"),
        ("version" = Option<i64>, Query, description = "A kept version's id: export the document as it was (`GET /documents/{doc}/versions`)"),
        ("answers" = Option<bool>, Query, description = "With answers, explanations and answer keys (faculty, admins, tokens that may write the document); by default for faculty only"),
    ),
    responses(
        (status = 200, description = "The file (`text/markdown`, DOCX or `application/pdf`) as an attachment; `X-Lectern-Missing-Glyphs` lists characters no font has (PDF), `X-Lectern-Export-Truncated` says the export was cut at its character budget"),
        (status = 400, description = "A malformed id or query", body = ErrorBody),
        (status = 401, description = "A token that does not verify, or none where one is needed", body = ErrorBody),
        (status = 403, description = "The caller may not read the document, or asked for answers it may not see", body = ErrorBody),
        (status = 503, description = "`server_busy`: too many exports at once; see `Retry-After`", body = ErrorBody),
    )
)]
pub async fn export_document(
    State(state): State<AppState>,
    address: ClientAddress,
    headers: HeaderMap,
    Path(doc): Path<String>,
    query: Result<Query<ExportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let query = checked(query)?;
    let doc = DocId::new(&doc)
        .map_err(|error| ApiError::InvalidRequest(format!("document id: {error}")))?;
    let credentials = documents::credentials(&state, address, &headers).await?;
    let Some(access) = credentials.access(&state, &doc).await else {
        return Err(match credentials {
            Credentials::Anonymous => ApiError::Unauthenticated,
            _ => ApiError::Forbidden,
        });
    };
    let entry = Sessions::new(state.database().clone())
        .document(doc.as_str())
        .await?;
    let teaches = may_see_answers(&state, &credentials, access, entry.as_ref()).await?;
    let revision = query.version.map_or(Revision::Current, Revision::Version);
    let roots = documents::content_json(&state, &doc, revision).await?;
    let document = Document::from_json(&roots);
    let answers = answers(query.answers, teaches, document.has_answers())?;
    let format = Format::from(query.format);
    let title = document
        .title()
        .map(str::to_owned)
        .or_else(|| document.kind().map(|kind| kind.label().to_owned()))
        .or_else(|| {
            entry
                .as_ref()
                .map(|entry| kind_label(entry.document.kind).to_owned())
        })
        .unwrap_or_else(|| "Document".to_owned());
    let options = Options {
        answers,
        title: Some(title.clone()),
        ..Options::default()
    };
    let permit = slots().admit().await?;
    let exported = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        lectern_export::export(&document, format, &options)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    let file_name = format!("{title} {}.{}", today(), format.extension());
    Ok(attachment(format.content_type(), &file_name, exported))
}

/// Every document of a session the caller may read, each as a file, in one zip.
#[utoipa::path(
    get, path = "/api/v1/sessions/{id}/export", tag = "sessions", operation_id = "export_session",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "Session id"),
        ("format" = String, Query, description = "`md`, `docx` or `pdf`: the format of each file in the zip"),
        ("answers" = Option<bool>, Query, description = "With answers (faculty and admins only); by default for faculty"),
    ),
    responses(
        (status = 200, description = "`application/zip`: the session's notes, mind map and chat, the documents its AI jobs made, and (for faculty) each student's handout copy; a student gets their own copies only"),
        (status = 403, description = "Not a member of its classroom, or a student asking for answers", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 503, description = "`server_busy`: too many exports at once; see `Retry-After`", body = ErrorBody),
    )
)]
pub async fn export_session(
    State(state): State<AppState>,
    account: Account,
    Path(id): Path<String>,
    query: Result<Query<ExportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let query = checked(query)?;
    if query.version.is_some() {
        return Err(ApiError::InvalidRequest(
            "version names one document's version: export that document".into(),
        ));
    }
    let sessions = Sessions::new(state.database().clone());
    let session = sessions.get(&id).await?.ok_or(ApiError::NotFound)?;
    let membership = Classrooms::new(state.database().clone())
        .membership(&session.classroom_id, &account.id)
        .await?;
    if membership.is_none() && account.role != Role::Admin {
        return Err(ApiError::Forbidden);
    }
    let teaches = account.role == Role::Admin || membership == Some(MemberRole::Faculty);
    let caller = Caller {
        user_id: &account.id,
        role: account.role,
        membership,
    };
    let answers = answers(query.answers, teaches, true)?;
    let format = Format::from(query.format);

    let mut entries: Vec<DocumentEntry> = sessions
        .documents_of_session(&session.id)
        .await?
        .into_iter()
        .map(|document| DocumentEntry {
            document,
            session_state: Some(session.state),
        })
        .collect();
    let mut lectern = None;
    // What each AI-made document is, by its job's kind, for a name when it has no title.
    let mut ai_kinds = std::collections::HashMap::new();
    entries.retain(|entry| {
        let is_lectern = entry.document.kind == DocKind::Lectern;
        if is_lectern {
            lectern = Some(entry.document.doc_id.clone());
        }
        !is_lectern
    });
    // The documents the session's AI jobs wrote are classroom templates; the session's
    // `lectern` document records which (`ai_jobs`).
    if let Some(lectern) = lectern {
        let lectern = DocId::new(&lectern).map_err(ApiError::internal)?;
        let roots = documents::content_json(&state, &lectern, Revision::Current).await?;
        for (doc_id, kind) in ai_documents(&roots) {
            ai_kinds.insert(doc_id.clone(), kind);
            if entries.iter().any(|entry| entry.document.doc_id == doc_id) {
                continue;
            }
            if let Some(entry) = sessions.document(&doc_id).await?
                && entry.document.classroom_id == session.classroom_id
            {
                entries.push(entry);
            }
        }
    }

    let accounts = Accounts::new(state.database().clone());
    let mut files: Vec<(String, Document, Options)> = Vec::new();
    for entry in entries {
        if decide(&DocFacts::of(&entry)?, &caller).is_none() {
            continue;
        }
        let doc = DocId::new(&entry.document.doc_id).map_err(ApiError::internal)?;
        let roots = documents::content_json(&state, &doc, Revision::Current).await?;
        let document = Document::from_json(&roots);
        let kind = match ai_kinds.get(&entry.document.doc_id).map(String::as_str) {
            Some("translate") => "Translation",
            _ => document
                .kind()
                .map_or(kind_label(entry.document.kind), |kind| kind.label()),
        };
        let title = document.title().unwrap_or(kind).to_owned();
        let name = match (entry.document.kind, &entry.document.owner_user_id) {
            (DocKind::Fork, Some(owner)) => {
                let student = accounts
                    .user_by_id(owner)
                    .await?
                    .map_or_else(|| owner.clone(), |user| user.display_name);
                format!("handouts/{}/{}", slug(&student), slug(&title))
            }
            (DocKind::Template, _) => format!("ai/{}", slug(&title)),
            _ => slug(kind),
        };
        let options = Options {
            answers,
            title: Some(title),
            ..Options::default()
        };
        files.push((name, document, options));
    }

    let permit = slots().admit().await?;
    let (bytes, missing, truncated) = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        zip_exports(files, format)
    })
    .await
    .map_err(ApiError::internal)??;
    let exported = Exported {
        bytes,
        missing,
        truncated,
    };
    let file_name = format!("session {}.zip", today());
    Ok(attachment("application/zip", &file_name, exported))
}

/// The query, or `400 invalid_request` in the API's error format saying what is wrong.
fn checked(query: Result<Query<ExportQuery>, QueryRejection>) -> Result<ExportQuery, ApiError> {
    query
        .map(|Query(query)| query)
        .map_err(|rejection| ApiError::InvalidRequest(rejection.body_text()))
}

/// The documents `lectern`'s roots say AI jobs of the session finished writing, with the
/// jobs' kinds.
fn ai_documents(roots: &Value) -> Vec<(String, String)> {
    let Some(jobs) = roots
        .get("lectern")
        .and_then(|lectern| lectern.get("ai_jobs"))
        .and_then(Value::as_object)
    else {
        return Vec::new();
    };
    let mut ids: Vec<(String, String)> = jobs
        .values()
        .filter(|job| job.get("status").and_then(Value::as_str) == Some("done"))
        .filter_map(|job| {
            let doc_id = job.get("doc_id").and_then(Value::as_str)?;
            let kind = job.get("kind").and_then(Value::as_str).unwrap_or_default();
            doc_id
                .starts_with("template/")
                .then(|| (doc_id.to_owned(), kind.to_owned()))
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Every file exported and zipped; names made unique. Returns the zip, the characters no
/// font had in any of them, and whether any was cut.
fn zip_exports(
    files: Vec<(String, Document, Options)>,
    format: Format,
) -> Result<(Vec<u8>, Vec<char>, bool), ApiError> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mut names = std::collections::HashSet::new();
    let mut missing = std::collections::BTreeSet::new();
    let mut truncated = false;
    for (name, document, export_options) in files {
        let exported = lectern_export::export(&document, format, &export_options)
            .map_err(ApiError::internal)?;
        let mut unique = format!("{name}.{}", format.extension());
        let mut n = 2;
        while !names.insert(unique.clone()) {
            unique = format!("{name} ({n}).{}", format.extension());
            n += 1;
        }
        zip.start_file(unique, options)
            .map_err(ApiError::internal)?;
        zip.write_all(&exported.bytes).map_err(ApiError::internal)?;
        missing.extend(exported.missing);
        truncated |= exported.truncated;
    }
    let bytes = zip.finish().map_err(ApiError::internal)?.into_inner();
    Ok((bytes, missing.into_iter().collect(), truncated))
}

/// Whether the export shows answers: as asked, else by default for those who teach. A
/// caller who does not teach asking for them gets 403 when the document has any.
fn answers(asked: Option<bool>, teaches: bool, has_answers: bool) -> Result<bool, ApiError> {
    match asked {
        Some(true) if !teaches && has_answers => Err(ApiError::Forbidden),
        Some(asked) => Ok(asked && teaches),
        None => Ok(teaches),
    }
}

/// Whether the caller teaches where the document is: an admin or faculty of its classroom
/// (local accounts), or a token that may write it (document, external and anonymous
/// access are not classroom roles).
async fn may_see_answers(
    state: &AppState,
    credentials: &Credentials,
    access: Access,
    entry: Option<&DocumentEntry>,
) -> Result<bool, ApiError> {
    match credentials {
        Credentials::User(principal) if principal.origin == Origin::Local => {
            if principal.role == Role::Admin {
                return Ok(true);
            }
            let Some(entry) = entry else {
                return Ok(false);
            };
            let membership = Classrooms::new(state.database().clone())
                .membership(&entry.document.classroom_id, &principal.subject)
                .await?;
            Ok(membership == Some(MemberRole::Faculty))
        }
        Credentials::User(_) | Credentials::Document(_) | Credentials::Anonymous => {
            Ok(access == Access::Write)
        }
    }
}

fn kind_label(kind: DocKind) -> &'static str {
    match kind {
        DocKind::Notes => "Notes",
        DocKind::Mindmap => "Mind map",
        DocKind::Chat => "Chat",
        DocKind::Lectern => "Session state",
        DocKind::Template => "Document",
        DocKind::Fork => "Handout",
    }
}

/// The response: the bytes as an attachment named `file_name`, with the export headers.
fn attachment(content_type: &'static str, file_name: &str, exported: Exported) -> Response {
    let mut response = exported.bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&content_disposition(file_name)) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    if !exported.missing.is_empty() {
        let mut points: Vec<String> = exported
            .missing
            .iter()
            .take(MAX_MISSING_IN_HEADER)
            .map(|c| format!("U+{:04X}", u32::from(*c)))
            .collect();
        if exported.missing.len() > MAX_MISSING_IN_HEADER {
            points.push("...".to_owned());
        }
        if let Ok(value) = HeaderValue::from_str(&points.join(" ")) {
            headers.insert(MISSING_GLYPHS_HEADER, value);
        }
    }
    if exported.truncated {
        headers.insert(TRUNCATED_HEADER, HeaderValue::from_static("true"));
    }
    response
}

/// `attachment` with an ASCII `filename` (letters, digits, `-`, `_`, `.`; other runs
/// become `-`) and, when the name is not plain ASCII, the exact one in `filename*`
/// (RFC 6266, percent-encoded UTF-8).
fn content_disposition(file_name: &str) -> String {
    let mut ascii = String::with_capacity(file_name.len());
    for c in file_name.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
            ascii.push(c);
        } else if !ascii.ends_with('-') {
            ascii.push('-');
        }
    }
    let ascii = ascii.trim_matches(['-', '.']);
    let ascii = if ascii.is_empty() { "export" } else { ascii };
    let exact = slug(file_name);
    if exact.is_ascii() && exact == ascii {
        return format!("attachment; filename=\"{ascii}\"");
    }
    let mut encoded = String::with_capacity(exact.len() * 3);
    for byte in exact.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// A file name from `text`: letters and digits of any script kept, separators, controls
/// and anything a file system or zip reader might take as a path become `-`; at most 80
/// characters.
fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() || matches!(c, '.' | '_' | '(' | ')') {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
        if out.chars().count() >= 80 {
            break;
        }
    }
    let out = out.trim_matches(['-', '.']).to_owned();
    if out.is_empty() {
        "document".to_owned()
    } else {
        out
    }
}

/// Today's date (UTC) as `YYYY-MM-DD`.
fn today() -> String {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() / 86_400);
    let (year, month, day) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!("{year:04}-{month:02}-{day:02}")
}

/// The proleptic Gregorian date `days` after 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Export slots of this node: `running` renders at once (half the cores, at least one),
/// and as many callers again may wait for one; beyond that callers are refused at once.
#[derive(Debug)]
struct Slots {
    running: Arc<Semaphore>,
    admitted: Arc<AtomicUsize>,
    max_admitted: usize,
}

/// A caller's place among the admitted; given back when dropped.
#[derive(Debug)]
struct Admission(Arc<AtomicUsize>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A running export's slot: its permit and its place.
#[derive(Debug)]
struct Slot {
    _permit: OwnedSemaphorePermit,
    _admission: Admission,
}

/// One set of slots per process (a node), whatever number of servers a test runs in it.
fn slots() -> &'static Slots {
    static SLOTS: LazyLock<Slots> = LazyLock::new(|| {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let running = (cores / 2).max(1);
        Slots {
            running: Arc::new(Semaphore::new(running)),
            admitted: Arc::new(AtomicUsize::new(0)),
            max_admitted: running * 2,
        }
    });
    &SLOTS
}

impl Slots {
    async fn admit(&self) -> Result<Slot, ApiError> {
        let busy = || ApiError::ServerBusy {
            retry_after: BUSY_RETRY_AFTER,
        };
        let before = self.admitted.fetch_add(1, Ordering::AcqRel);
        let admission = Admission(Arc::clone(&self.admitted));
        if before >= self.max_admitted {
            return Err(busy());
        }
        let permit = Arc::clone(&self.running)
            .acquire_owned()
            .await
            .map_err(|_| busy())?;
        Ok(Slot {
            _permit: permit,
            _admission: admission,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_safe_and_keep_the_exact_name() {
        assert_eq!(
            content_disposition("Cells quiz 2026-12-03.pdf"),
            "attachment; filename=\"Cells-quiz-2026-12-03.pdf\""
        );
        let arabic = content_disposition("الخلية 2026-12-03.pdf");
        assert!(
            arabic.starts_with("attachment; filename=\"2026-12-03.pdf\"; filename*=UTF-8''%D8%A7"),
            "{arabic}"
        );
        let hostile = content_disposition("a\"b\r\n/c.pdf");
        assert_eq!(hostile, "attachment; filename=\"a-b-c.pdf\"", "{hostile}");
        assert_eq!(slug("../../etc/passwd"), "etc-passwd");
    }

    #[test]
    fn the_documents_of_finished_ai_jobs_are_found_in_the_lectern_document() {
        let roots = serde_json::json!({"lectern": {"ai_jobs": {
            "a": {"kind": "quiz", "status": "done", "doc_id": "template/c/ai-quiz-1"},
            "b": {"kind": "exam", "status": "failed", "doc_id": "template/c/ai-exam-2"},
            "c": {"kind": "chat", "status": "done", "doc_id": "session/s/chat"},
            "d": {"kind": "translate", "status": "done", "doc_id": "template/c/ai-translate-3"},
            "e": {"kind": "quiz", "status": "done"},
        }}});
        assert_eq!(
            ai_documents(&roots),
            [
                ("template/c/ai-quiz-1".to_owned(), "quiz".to_owned()),
                (
                    "template/c/ai-translate-3".to_owned(),
                    "translate".to_owned()
                ),
            ]
        );
        assert!(ai_documents(&serde_json::json!({"lectern": 5})).is_empty());
    }

    #[test]
    fn dates_are_gregorian() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_790), (2026, 12, 3));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn students_may_not_ask_for_answers() {
        assert!(matches!(
            answers(Some(true), false, true),
            Err(ApiError::Forbidden)
        ));
        assert!(!answers(Some(true), false, false).unwrap_or(true));
        assert!(!answers(None, false, true).unwrap_or(true));
        assert!(answers(None, true, true).unwrap_or(false));
        assert!(!answers(Some(false), true, true).unwrap_or(true));
    }
}
