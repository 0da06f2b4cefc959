//! Live sessions: start, look at, lock, unlock, end, focus, hand out templates; and the
//! classroom templates handouts copy.
//!
//! Authorization is by membership in the session's classroom, looked up per request:
//! its faculty run the session, its members see it, everyone else gets 403 (404 when the
//! session or classroom does not exist). Which documents a member may open, and whether
//! read or write, is decided by [`crate::access::decide`], the same function the
//! WebSocket uses.
//!
//! Changes that affect open sockets are passed on to [`crate::room_effects::RoomEffects`]
//! after they are committed and before the response, so a client that got its answer can
//! rely on sockets having been told.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use lectern_collab::VersionReason;
use lectern_db::classrooms::MemberRole;
use lectern_db::sessions::{
    DocKind, DocumentEntry, Handout, NewSession, Session, SessionState, SessionUpdate,
};
use lectern_db::{Classrooms, Sessions};

use crate::AppState;
use crate::access::{Access, Caller, DocFacts, decide};
use crate::api::dto::{
    DocumentResponse, ErrorBody, Focus, HandoutRequest, HandoutResponse, LiveSessionResponse,
    SessionSummaryResponse,
};
use crate::api::error::ApiError;
use crate::api::extract::{Account, ApiJson};
use crate::api::history;
use crate::auth::now_secs;
use crate::events::Event;

/// Longest focus `section`, in characters.
const MAX_SECTION_CHARS: usize = 200;

fn now() -> i64 {
    i64::try_from(now_secs()).unwrap_or(i64::MAX)
}

/// The caller's role in classroom `id`: 404 if it does not exist, 403 if not a member.
async fn classroom_role(
    state: &AppState,
    id: &str,
    account: &Account,
) -> Result<MemberRole, ApiError> {
    let classrooms = Classrooms::new(state.database().clone());
    classrooms.get(id).await?.ok_or(ApiError::NotFound)?;
    classrooms
        .membership(id, &account.id)
        .await?
        .ok_or(ApiError::Forbidden)
}

/// Session `id` and the caller's role in its classroom: 404 if it does not exist, 403 if
/// the caller is not a member.
async fn session_role(
    state: &AppState,
    id: &str,
    account: &Account,
) -> Result<(Session, MemberRole), ApiError> {
    let session = Sessions::new(state.database().clone())
        .get(id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let role = Classrooms::new(state.database().clone())
        .membership(&session.classroom_id, &account.id)
        .await?
        .ok_or(ApiError::Forbidden)?;
    Ok((session, role))
}

/// 403 unless `role` is faculty.
fn require_faculty(role: MemberRole) -> Result<(), ApiError> {
    match role {
        MemberRole::Faculty => Ok(()),
        MemberRole::Student => Err(ApiError::Forbidden),
    }
}

/// The session as the caller sees it: only the documents they may open, with their access.
async fn view(
    state: &AppState,
    session: Session,
    account: &Account,
    role: MemberRole,
) -> Result<LiveSessionResponse, ApiError> {
    let documents = Sessions::new(state.database().clone())
        .documents_of_session(&session.id)
        .await?;
    let caller = Caller {
        user_id: &account.id,
        role: account.role,
        membership: Some(role),
    };
    let mut visible = Vec::with_capacity(documents.len());
    for document in documents {
        let entry = DocumentEntry {
            document,
            session_state: Some(session.state),
        };
        if let Some(access) = decide(&DocFacts::of(&entry)?, &caller) {
            visible.push(DocumentResponse::new(entry.document, access));
        }
    }
    let focus = session
        .focus
        .as_deref()
        .map(serde_json::from_str::<Focus>)
        .transpose()
        .map_err(ApiError::internal)?;
    Ok(LiveSessionResponse {
        id: session.id,
        classroom_id: session.classroom_id,
        state: session.state.into(),
        started_by: session.started_by,
        started_at: session.started_at,
        ended_at: session.ended_at,
        focus,
        documents: visible,
    })
}

/// The ids of every document of a session (its own and its forks).
async fn doc_ids_of_session(state: &AppState, session_id: &str) -> Result<Vec<String>, ApiError> {
    let documents = Sessions::new(state.database().clone())
        .documents_of_session(session_id)
        .await?;
    Ok(documents
        .into_iter()
        .map(|document| document.doc_id)
        .collect())
}

/// The session after an update, or the error for why it was refused.
fn updated(update: SessionUpdate) -> Result<Session, ApiError> {
    match update {
        SessionUpdate::Updated(session) => Ok(session),
        SessionUpdate::Ended => Err(ApiError::SessionEnded),
        SessionUpdate::NotFound => Err(ApiError::NotFound), // deleted meanwhile
    }
}

/// Starts a live session in the classroom (its faculty only) with fresh shared notes,
/// mindmap and chat. A classroom runs one session at a time: `409 session_already_running`.
#[utoipa::path(
    post, path = "/api/v1/classrooms/{id}/sessions", tag = "sessions",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Classroom id")),
    responses(
        (status = 201, description = "Started", body = LiveSessionResponse),
        (status = 403, description = "Not faculty of this classroom", body = ErrorBody),
        (status = 404, description = "No such classroom", body = ErrorBody),
        (status = 409, description = "`session_already_running`", body = ErrorBody),
    )
)]
pub async fn start(
    State(state): State<AppState>,
    account: Account,
    Path(classroom_id): Path<String>,
) -> Result<(StatusCode, Json<LiveSessionResponse>), ApiError> {
    let role = classroom_role(&state, &classroom_id, &account).await?;
    require_faculty(role)?;
    let new = NewSession {
        id: uuid::Uuid::new_v4().to_string(),
        classroom_id,
        started_by: account.id.clone(),
        started_at: now(),
    };
    let (session, documents) = Sessions::new(state.database().clone()).start(&new).await?;
    let doc_ids: Vec<String> = documents
        .into_iter()
        .map(|document| document.doc_id)
        .collect();
    history::keep_versions(&state, &doc_ids, VersionReason::SessionStarted).await;
    state
        .room_effects()
        .state_changed(&session.id, session.state)
        .await?;
    state
        .events()
        .emit(Event::SessionStarted {
            classroom_id: session.classroom_id.clone(),
            session_id: session.id.clone(),
            started_by: session.started_by.clone(),
        })
        .await;
    let view = view(&state, session, &account, role).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// The classroom's running (live or locked) session (members only); 404 if none.
#[utoipa::path(
    get, path = "/api/v1/classrooms/{id}/sessions/current", tag = "sessions",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Classroom id")),
    responses(
        (status = 200, description = "The running session", body = LiveSessionResponse),
        (status = 403, description = "Not a member", body = ErrorBody),
        (status = 404, description = "No such classroom, or no running session", body = ErrorBody),
    )
)]
pub async fn current(
    State(state): State<AppState>,
    account: Account,
    Path(classroom_id): Path<String>,
) -> Result<Json<LiveSessionResponse>, ApiError> {
    let role = classroom_role(&state, &classroom_id, &account).await?;
    let session = Sessions::new(state.database().clone())
        .current(&classroom_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(view(&state, session, &account, role).await?))
}

/// How many sessions `GET /classrooms/{id}/sessions` lists: a term of daily classes.
const LISTED_SESSIONS: u32 = 100;

/// The classroom's sessions, newest first (members only): the running one, if any, then
/// the ended ones a member reviews read-only.
#[utoipa::path(
    get, path = "/api/v1/classrooms/{id}/sessions", tag = "sessions", operation_id = "list_sessions",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Classroom id")),
    responses(
        (status = 200, description = "Its most recent sessions (at most 100), newest first", body = [SessionSummaryResponse]),
        (status = 403, description = "Not a member", body = ErrorBody),
        (status = 404, description = "No such classroom", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    account: Account,
    Path(classroom_id): Path<String>,
) -> Result<Json<Vec<SessionSummaryResponse>>, ApiError> {
    classroom_role(&state, &classroom_id, &account).await?;
    let sessions = Sessions::new(state.database().clone())
        .recent(&classroom_id, LISTED_SESSIONS)
        .await?;
    Ok(Json(sessions.into_iter().map(Into::into).collect()))
}

/// A session and the documents the caller may open in it (members of its classroom only).
/// Students join a session by calling this and opening the listed documents over the
/// WebSocket.
#[utoipa::path(
    get, path = "/api/v1/sessions/{id}", tag = "sessions", operation_id = "get_session",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The session", body = LiveSessionResponse),
        (status = 403, description = "Not a member of its classroom", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    account: Account,
    Path(id): Path<String>,
) -> Result<Json<LiveSessionResponse>, ApiError> {
    let (session, role) = session_role(&state, &id, &account).await?;
    Ok(Json(view(&state, session, &account, role).await?))
}

/// Moves a session to `target` (faculty only) and tells open sockets.
async fn transition(
    state: &AppState,
    account: &Account,
    id: &str,
    target: SessionState,
) -> Result<LiveSessionResponse, ApiError> {
    let (_, role) = session_role(state, id, account).await?;
    require_faculty(role)?;
    let session = updated(
        Sessions::new(state.database().clone())
            .set_state(id, target, now())
            .await?,
    )?;
    let doc_ids = doc_ids_of_session(state, id).await?;
    let effects = state.room_effects();
    match target {
        SessionState::Live | SessionState::Locked => {
            effects.access_changed(doc_ids).await?;
            effects.state_changed(id, session.state).await?;
        }
        SessionState::Ended => {
            history::keep_versions(state, &doc_ids, VersionReason::SessionEnded).await;
            // Written while the sockets are still open, so they receive it before 4410.
            effects.state_changed(id, session.state).await?;
            effects.session_ended(doc_ids).await?;
            state
                .events()
                .emit(Event::SessionEnded {
                    classroom_id: session.classroom_id.clone(),
                    session_id: session.id.clone(),
                })
                .await;
        }
    }
    view(state, session, account, role).await
}

/// Locks the session (faculty only): students can only read its documents, at once.
/// Their own forks stay writable. Locking a locked session changes nothing.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/lock", tag = "sessions",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "Locked", body = LiveSessionResponse),
        (status = 403, description = "Not faculty of its classroom", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "`session_ended`", body = ErrorBody),
    )
)]
pub async fn lock(
    State(state): State<AppState>,
    account: Account,
    Path(id): Path<String>,
) -> Result<Json<LiveSessionResponse>, ApiError> {
    Ok(Json(
        transition(&state, &account, &id, SessionState::Locked).await?,
    ))
}

/// Unlocks the session (faculty only): students can write again.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/unlock", tag = "sessions",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "Live again", body = LiveSessionResponse),
        (status = 403, description = "Not faculty of its classroom", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "`session_ended`", body = ErrorBody),
    )
)]
pub async fn unlock(
    State(state): State<AppState>,
    account: Account,
    Path(id): Path<String>,
) -> Result<Json<LiveSessionResponse>, ApiError> {
    Ok(Json(
        transition(&state, &account, &id, SessionState::Live).await?,
    ))
}

/// Ends the session (faculty only), for good: sockets on its documents are closed, and
/// the documents (forks included) stay readable for review.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/end", tag = "sessions",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "Ended", body = LiveSessionResponse),
        (status = 403, description = "Not faculty of its classroom", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "`session_ended`: it already had", body = ErrorBody),
    )
)]
pub async fn end(
    State(state): State<AppState>,
    account: Account,
    Path(id): Path<String>,
) -> Result<Json<LiveSessionResponse>, ApiError> {
    Ok(Json(
        transition(&state, &account, &id, SessionState::Ended).await?,
    ))
}

/// Sets the follow-the-teacher focus (faculty only): a document of the classroom and
/// optionally a section in it. Members see it in the session and live over the socket.
#[utoipa::path(
    put, path = "/api/v1/sessions/{id}/focus", tag = "sessions",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Session id")),
    request_body = Focus,
    responses(
        (status = 200, description = "Stored", body = LiveSessionResponse),
        (status = 400, description = "Not a document of this classroom, or section too long", body = ErrorBody),
        (status = 403, description = "Not faculty of its classroom", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "`session_ended`", body = ErrorBody),
    )
)]
pub async fn set_focus(
    State(state): State<AppState>,
    account: Account,
    Path(id): Path<String>,
    ApiJson(focus): ApiJson<Focus>,
) -> Result<Json<LiveSessionResponse>, ApiError> {
    let (session, role) = session_role(&state, &id, &account).await?;
    require_faculty(role)?;
    if focus
        .section
        .as_ref()
        .is_some_and(|section| section.chars().count() > MAX_SECTION_CHARS)
    {
        return Err(ApiError::InvalidRequest(format!(
            "section must be at most {MAX_SECTION_CHARS} characters"
        )));
    }
    let sessions = Sessions::new(state.database().clone());
    let in_classroom = sessions
        .document(&focus.doc_id)
        .await?
        .is_some_and(|entry| entry.document.classroom_id == session.classroom_id);
    if !in_classroom {
        return Err(ApiError::InvalidRequest(
            "doc_id must be a document of the session's classroom".into(),
        ));
    }
    let json = serde_json::to_string(&focus).map_err(ApiError::internal)?;
    let session = updated(sessions.set_focus(&id, &json).await?)?;
    state.room_effects().focus_changed(&id, &focus).await?;
    Ok(Json(view(&state, session, &account, role).await?))
}

/// Hands a template out (faculty only): every student of the classroom gets their own
/// fork of it, which only they and faculty can open. Calling it again creates forks only
/// for students who have none yet (those who enrolled since) and returns them all.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/handouts", tag = "sessions",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Session id")),
    request_body = HandoutRequest,
    responses(
        (status = 200, description = "Every student's fork", body = HandoutResponse),
        (status = 400, description = "Not a template or session document of this classroom", body = ErrorBody),
        (status = 403, description = "Not faculty of its classroom", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "`session_ended`", body = ErrorBody),
    )
)]
pub async fn hand_out(
    State(state): State<AppState>,
    account: Account,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<HandoutRequest>,
) -> Result<Json<HandoutResponse>, ApiError> {
    let (session, role) = session_role(&state, &id, &account).await?;
    require_faculty(role)?;
    let sessions = Sessions::new(state.database().clone());
    let template = request.template_doc_id;
    let usable = sessions.document(&template).await?.is_some_and(|entry| {
        entry.document.classroom_id == session.classroom_id && entry.document.kind != DocKind::Fork
    });
    if !usable {
        return Err(ApiError::InvalidRequest(
            "template_doc_id must be a template or session document of the session's classroom"
                .into(),
        ));
    }
    // Only used when this template was not handed out in the session before.
    let handout_id = uuid::Uuid::new_v4().simple().to_string();
    let forks = match sessions
        .create_forks(&id, &template, &handout_id, now())
        .await?
    {
        Handout::Forks { forks, created } => {
            for fork in &created {
                state.room_effects().fork_created(&template, fork).await?;
            }
            // After the forks have their content, so a student who fetches the session
            // when this changes finds a complete copy.
            state
                .room_effects()
                .handed_out(&id, &template, now())
                .await?;
            if !created.is_empty() {
                // The copies this call made (a repeated handout names only the new ones).
                let copies = forks
                    .iter()
                    .filter(|fork| created.contains(&fork.doc_id))
                    .filter_map(|fork| {
                        let owner = fork.owner_user_id.clone()?;
                        Some((owner, fork.doc_id.clone()))
                    })
                    .collect();
                state
                    .events()
                    .emit(Event::HandedOut {
                        classroom_id: session.classroom_id.clone(),
                        session_id: id.clone(),
                        doc_id: template.clone(),
                        copies,
                    })
                    .await;
            }
            forks
        }
        Handout::Ended => return Err(ApiError::SessionEnded),
        Handout::NotFound => return Err(ApiError::NotFound),
    };
    Ok(Json(HandoutResponse {
        template_doc_id: template,
        forks: forks
            .into_iter()
            .map(|fork| DocumentResponse::new(fork, Access::Write))
            .collect(),
    }))
}

/// Registers a new, empty template document in the classroom (faculty only). Faculty
/// write it over the WebSocket, students of the classroom can read it, and
/// `POST /sessions/{id}/handouts` copies it for each student.
#[utoipa::path(
    post, path = "/api/v1/classrooms/{id}/templates", tag = "sessions",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Classroom id")),
    responses(
        (status = 201, description = "Created", body = DocumentResponse),
        (status = 403, description = "Not faculty of this classroom", body = ErrorBody),
        (status = 404, description = "No such classroom", body = ErrorBody),
    )
)]
pub async fn create_template(
    State(state): State<AppState>,
    account: Account,
    Path(classroom_id): Path<String>,
) -> Result<(StatusCode, Json<DocumentResponse>), ApiError> {
    require_faculty(classroom_role(&state, &classroom_id, &account).await?)?;
    let doc_id = format!("template/{classroom_id}/{}", uuid::Uuid::new_v4());
    let document = Sessions::new(state.database().clone())
        .create_template(&doc_id, &classroom_id, now())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(DocumentResponse::new(document, Access::Write)),
    ))
}
