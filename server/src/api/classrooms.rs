//! Classrooms: create, list, join by code, rotate the code, members, leave, remove.
//!
//! Authorization is by membership in the classroom, looked up per request: a classroom's
//! faculty manage it, its members see it, everyone else gets 403 (or 404 when it does not
//! exist; ids are random, so that reveals nothing worth hiding).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rand::Rng as _;

use lectern_db::accounts::Role;
use lectern_db::classrooms::{Classroom, Enrolment, MemberRole, Removal};
use lectern_db::{Classrooms, DbError, Sessions};

use crate::AppState;
use crate::api::dto::{
    ClassroomResponse, CreateClassroomRequest, ErrorBody, JoinClassroomRequest, MemberResponse,
};
use crate::api::error::ApiError;
use crate::api::extract::{Account, ApiJson};
use crate::auth::now_secs;
use crate::events::Event;

/// Join-code characters: upper-case letters and digits without look-alikes (0/O, 1/I/L),
/// so a code read off a projector is typed right.
const JOIN_CODE_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";

/// Join-code length: 31^8 ≈ 8.5e11 codes, far more than classrooms.
const JOIN_CODE_LEN: usize = 8;

/// Attempts to find an unused code before giving up (a collision is already rare).
const JOIN_CODE_ATTEMPTS: usize = 5;

/// Longest classroom name.
const MAX_NAME_CHARS: usize = 200;

fn new_join_code() -> String {
    let mut rng = rand::rng();
    (0..JOIN_CODE_LEN)
        .map(|_| char::from(JOIN_CODE_ALPHABET[rng.random_range(0..JOIN_CODE_ALPHABET.len())]))
        .collect()
}

/// A typed code in canonical form, or `None` if it cannot be a code at all.
fn normalize_join_code(code: &str) -> Option<String> {
    let code: String = code
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let valid =
        code.len() == JOIN_CODE_LEN && code.bytes().all(|byte| JOIN_CODE_ALPHABET.contains(&byte));
    valid.then_some(code)
}

fn now() -> i64 {
    i64::try_from(now_secs()).unwrap_or(i64::MAX)
}

/// The classroom and the caller's role in it: 404 if it does not exist, 403 if the caller
/// is not a member.
pub(crate) async fn membership(
    classrooms: &Classrooms,
    id: &str,
    account: &Account,
) -> Result<Enrolment, ApiError> {
    let classroom = classrooms.get(id).await?.ok_or(ApiError::NotFound)?;
    let role = classrooms
        .membership(id, &account.id)
        .await?
        .ok_or(ApiError::Forbidden)?;
    Ok(Enrolment { classroom, role })
}

/// Creates a classroom; the caller becomes its faculty. Faculty (and admin) accounts only.
#[utoipa::path(
    post, path = "/api/v1/classrooms", tag = "classrooms", operation_id = "create_classroom",
    security(("bearer" = [])),
    request_body = CreateClassroomRequest,
    responses(
        (status = 201, description = "Created", body = ClassroomResponse),
        (status = 400, description = "Invalid name", body = ErrorBody),
        (status = 403, description = "Not a faculty account", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    account: Account,
    ApiJson(request): ApiJson<CreateClassroomRequest>,
) -> Result<(StatusCode, Json<ClassroomResponse>), ApiError> {
    if !matches!(account.role, Role::Faculty | Role::Admin) {
        return Err(ApiError::Forbidden);
    }
    let name = request.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::InvalidRequest(format!(
            "name must be 1 to {MAX_NAME_CHARS} characters"
        )));
    }
    let classrooms = Classrooms::new(state.database().clone());
    let mut classroom = Classroom {
        id: uuid::Uuid::new_v4().to_string(),
        name,
        join_code: new_join_code(),
        created_by: account.id,
        created_at: now(),
    };
    for attempt in 1..=JOIN_CODE_ATTEMPTS {
        match classrooms.create(&classroom).await {
            Ok(()) => {
                let enrolment = Enrolment {
                    classroom,
                    role: MemberRole::Faculty,
                };
                return Ok((StatusCode::CREATED, Json(enrolment.into())));
            }
            Err(DbError::JoinCodeTaken) if attempt < JOIN_CODE_ATTEMPTS => {
                classroom.join_code = new_join_code();
            }
            Err(error) => return Err(error.into()),
        }
    }
    Err(ApiError::internal(DbError::JoinCodeTaken))
}

/// The classrooms the caller belongs to.
#[utoipa::path(
    get, path = "/api/v1/classrooms", tag = "classrooms", operation_id = "list_classrooms",
    security(("bearer" = [])),
    responses((status = 200, description = "The caller's classrooms", body = [ClassroomResponse]))
)]
pub async fn list_mine(
    State(state): State<AppState>,
    account: Account,
) -> Result<Json<Vec<ClassroomResponse>>, ApiError> {
    let enrolments = Classrooms::new(state.database().clone())
        .for_user(&account.id)
        .await?;
    Ok(Json(enrolments.into_iter().map(Into::into).collect()))
}

/// One classroom (members only).
#[utoipa::path(
    get, path = "/api/v1/classrooms/{id}", tag = "classrooms", operation_id = "get_classroom",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Classroom id")),
    responses(
        (status = 200, description = "The classroom", body = ClassroomResponse),
        (status = 403, description = "Not a member", body = ErrorBody),
        (status = 404, description = "No such classroom", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    account: Account,
    Path(id): Path<String>,
) -> Result<Json<ClassroomResponse>, ApiError> {
    let classrooms = Classrooms::new(state.database().clone());
    Ok(Json(membership(&classrooms, &id, &account).await?.into()))
}

/// Enrols the caller as a student with a join code. Enrolling again changes nothing.
/// An unknown or rotated-away code is 404 `invalid_join_code`.
#[utoipa::path(
    post, path = "/api/v1/classrooms/join", tag = "classrooms",
    security(("bearer" = [])),
    request_body = JoinClassroomRequest,
    responses(
        (status = 200, description = "Enrolled", body = ClassroomResponse),
        (status = 404, description = "`invalid_join_code`", body = ErrorBody),
    )
)]
pub async fn join(
    State(state): State<AppState>,
    account: Account,
    ApiJson(request): ApiJson<JoinClassroomRequest>,
) -> Result<Json<ClassroomResponse>, ApiError> {
    let code = normalize_join_code(&request.join_code).ok_or(ApiError::InvalidJoinCode)?;
    let classrooms = Classrooms::new(state.database().clone());
    let classroom = classrooms
        .by_join_code(&code)
        .await?
        .ok_or(ApiError::InvalidJoinCode)?;
    // Only a new member is news (joining again changes nothing).
    let already = classrooms
        .membership(&classroom.id, &account.id)
        .await?
        .is_some();
    let role = classrooms
        .add_member(&classroom.id, &account.id, MemberRole::Student, now())
        .await?;
    if !already {
        state
            .events()
            .emit(Event::MemberJoined {
                classroom_id: classroom.id.clone(),
                user_id: account.id.clone(),
                role: role.as_str().to_owned(),
            })
            .await;
    }
    Ok(Json(Enrolment { classroom, role }.into()))
}

/// Replaces the join code (faculty of the classroom only); the old code stops working.
#[utoipa::path(
    post, path = "/api/v1/classrooms/{id}/join-code", tag = "classrooms",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Classroom id")),
    responses(
        (status = 200, description = "The classroom with its new code", body = ClassroomResponse),
        (status = 403, description = "Not faculty of this classroom", body = ErrorBody),
        (status = 404, description = "No such classroom", body = ErrorBody),
    )
)]
pub async fn rotate_join_code(
    State(state): State<AppState>,
    account: Account,
    Path(id): Path<String>,
) -> Result<Json<ClassroomResponse>, ApiError> {
    let classrooms = Classrooms::new(state.database().clone());
    let mut enrolment = membership(&classrooms, &id, &account).await?;
    if enrolment.role != MemberRole::Faculty {
        return Err(ApiError::Forbidden);
    }
    for attempt in 1..=JOIN_CODE_ATTEMPTS {
        let code = new_join_code();
        match classrooms.set_join_code(&id, &code).await {
            Ok(true) => {
                enrolment.classroom.join_code = code;
                return Ok(Json(enrolment.into()));
            }
            Ok(false) => return Err(ApiError::NotFound), // deleted meanwhile
            Err(DbError::JoinCodeTaken) if attempt < JOIN_CODE_ATTEMPTS => {}
            Err(error) => return Err(error.into()),
        }
    }
    Err(ApiError::internal(DbError::JoinCodeTaken))
}

/// The members of a classroom (members only).
#[utoipa::path(
    get, path = "/api/v1/classrooms/{id}/members", tag = "classrooms",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Classroom id")),
    responses(
        (status = 200, description = "Faculty first, then by join time", body = [MemberResponse]),
        (status = 403, description = "Not a member", body = ErrorBody),
        (status = 404, description = "No such classroom", body = ErrorBody),
    )
)]
pub async fn members(
    State(state): State<AppState>,
    account: Account,
    Path(id): Path<String>,
) -> Result<Json<Vec<MemberResponse>>, ApiError> {
    let classrooms = Classrooms::new(state.database().clone());
    membership(&classrooms, &id, &account).await?;
    let members = classrooms.members(&id).await?;
    Ok(Json(members.into_iter().map(Into::into).collect()))
}

/// Leaves the classroom (`user_id` = `me` or the caller's id), or, for its faculty, removes
/// a student. Faculty cannot remove other faculty; the last faculty cannot leave. Open
/// sockets of the removed member on the classroom's documents lose their access.
#[utoipa::path(
    delete, path = "/api/v1/classrooms/{id}/members/{user_id}", tag = "classrooms",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "Classroom id"),
        ("user_id" = String, Path, description = "Member's account id, or `me`"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "Not allowed to remove this member", body = ErrorBody),
        (status = 404, description = "No such classroom or member", body = ErrorBody),
        (status = 409, description = "`last_faculty`", body = ErrorBody),
    )
)]
pub async fn remove_member(
    State(state): State<AppState>,
    account: Account,
    Path((id, user_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let classrooms = Classrooms::new(state.database().clone());
    let caller = membership(&classrooms, &id, &account).await?;
    let target = if user_id == "me" {
        account.id.clone()
    } else {
        user_id
    };
    if target != account.id {
        if caller.role != MemberRole::Faculty {
            return Err(ApiError::Forbidden);
        }
        match classrooms.membership(&id, &target).await? {
            None => return Err(ApiError::NotFound),
            Some(MemberRole::Faculty) => return Err(ApiError::Forbidden),
            Some(MemberRole::Student) => {}
        }
    }
    match classrooms.remove_member(&id, &target).await? {
        Removal::Removed => {
            // Whoever left may have sockets open on the classroom's documents.
            let mut doc_ids = Sessions::new(state.database().clone())
                .doc_ids_of_classroom(&id)
                .await?;
            doc_ids.push(crate::materials::feed::doc_id_of(&id));
            state.room_effects().access_changed(doc_ids).await?;
            Ok(StatusCode::NO_CONTENT)
        }
        Removal::NotMember => Err(ApiError::NotFound),
        Removal::LastFaculty => Err(ApiError::LastFaculty),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_codes_use_the_unambiguous_alphabet_and_normalise() {
        for _ in 0..100 {
            let code = new_join_code();
            assert_eq!(normalize_join_code(&code).as_deref(), Some(code.as_str()));
            assert!(!code.contains(['0', 'O', '1', 'I', 'L']), "{code}");
        }
        assert_eq!(
            normalize_join_code(" abcd-efgh ").as_deref(),
            Some("ABCDEFGH")
        );
        assert_eq!(
            normalize_join_code("ABCDEFG0"),
            None,
            "0 is not in the alphabet"
        );
        assert_eq!(normalize_join_code("ABC"), None);
    }
}
