//! Classrooms, their join codes and their members.
//!
//! Like `accounts`, this module stores what the server decides: ids, join codes and times
//! come from the caller. A join code is unique among live classrooms; rotating it replaces
//! the stored value, so the old code stops matching at once.

use crate::{Database, DbError, is_unique_violation};

/// What a member may do inside one classroom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberRole {
    /// Teaches this class: rotates the join code, removes members.
    Faculty,
    /// Enrolled with the join code.
    Student,
}

impl MemberRole {
    /// The stored (and wire) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Faculty => "faculty",
            Self::Student => "student",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Result<Self, DbError> {
        match text {
            "faculty" => Ok(Self::Faculty),
            "student" => Ok(Self::Student),
            other => Err(DbError::UnknownRole(other.to_owned())),
        }
    }
}

/// A stored classroom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classroom {
    /// Opaque, server-generated id.
    pub id: String,
    /// Shown to members.
    pub name: String,
    /// The current code students enrol with.
    pub join_code: String,
    /// The faculty account that created it.
    pub created_by: String,
    /// When it was created, Unix seconds.
    pub created_at: i64,
}

/// A classroom seen by one of its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolment {
    /// The classroom.
    pub classroom: Classroom,
    /// The member's role in it.
    pub role: MemberRole,
}

/// One member of a classroom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member's account id.
    pub user_id: String,
    /// The member's display name.
    pub display_name: String,
    /// The member's role in this classroom.
    pub role: MemberRole,
    /// When they joined, Unix seconds.
    pub joined_at: i64,
}

/// The outcome of removing a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The membership is gone.
    Removed,
    /// There was no such membership.
    NotMember,
    /// Refused: the member is the classroom's only faculty, and a classroom must keep one.
    LastFaculty,
}

/// Columns of `classrooms`: id, name, join_code, created_by, created_at.
type ClassroomRow = (String, String, String, String, i64);

fn classroom_from_row((id, name, join_code, created_by, created_at): ClassroomRow) -> Classroom {
    Classroom {
        id,
        name,
        join_code,
        created_by,
        created_at,
    }
}

/// Classrooms and memberships in SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct Classrooms {
    database: Database,
}

impl Classrooms {
    /// Classrooms on `database` (already migrated).
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    /// Stores a classroom and makes its creator a faculty member, in one transaction.
    /// Fails with [`DbError::JoinCodeTaken`] if the join code is in use (the caller picks
    /// another and retries).
    pub async fn create(&self, classroom: &Classroom) -> Result<(), DbError> {
        let result = match &self.database {
            Database::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                let inserted = sqlx::query(
                    "INSERT INTO classrooms (id, name, join_code, created_by, created_at) \
                     VALUES (?, ?, ?, ?, ?)",
                )
                .bind(&classroom.id)
                .bind(&classroom.name)
                .bind(&classroom.join_code)
                .bind(&classroom.created_by)
                .bind(classroom.created_at)
                .execute(&mut *tx)
                .await;
                match inserted {
                    Ok(_) => {
                        sqlx::query(
                            "INSERT INTO classroom_members (classroom_id, user_id, role, joined_at) \
                             VALUES (?, ?, 'faculty', ?)",
                        )
                        .bind(&classroom.id)
                        .bind(&classroom.created_by)
                        .bind(classroom.created_at)
                        .execute(&mut *tx)
                        .await?;
                        tx.commit().await.map(|_| ())
                    }
                    Err(error) => Err(error),
                }
            }
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let inserted = sqlx::query(
                    "INSERT INTO classrooms (id, name, join_code, created_by, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&classroom.id)
                .bind(&classroom.name)
                .bind(&classroom.join_code)
                .bind(&classroom.created_by)
                .bind(classroom.created_at)
                .execute(&mut *tx)
                .await;
                match inserted {
                    Ok(_) => {
                        sqlx::query(
                            "INSERT INTO classroom_members (classroom_id, user_id, role, joined_at) \
                             VALUES ($1, $2, 'faculty', $3)",
                        )
                        .bind(&classroom.id)
                        .bind(&classroom.created_by)
                        .bind(classroom.created_at)
                        .execute(&mut *tx)
                        .await?;
                        tx.commit().await.map(|_| ())
                    }
                    Err(error) => Err(error),
                }
            }
        };
        match result {
            Ok(()) => Ok(()),
            // The id is random, so the join code is the only unique column that can collide.
            Err(error) if is_unique_violation(&error) => Err(DbError::JoinCodeTaken),
            Err(error) => Err(error.into()),
        }
    }

    /// The classroom with this id, if any.
    pub async fn get(&self, id: &str) -> Result<Option<Classroom>, DbError> {
        let row: Option<ClassroomRow> = match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query_as(
                    "SELECT id, name, join_code, created_by, created_at \
                     FROM classrooms WHERE id = ?",
                )
                .bind(id)
                .fetch_optional(pool)
                .await?
            }
            Database::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT id, name, join_code, created_by, created_at \
                     FROM classrooms WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(pool)
                .await?
            }
        };
        Ok(row.map(classroom_from_row))
    }

    /// The classroom whose current join code is `code`, if any.
    pub async fn by_join_code(&self, code: &str) -> Result<Option<Classroom>, DbError> {
        let row: Option<ClassroomRow> = match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query_as(
                    "SELECT id, name, join_code, created_by, created_at \
                     FROM classrooms WHERE join_code = ?",
                )
                .bind(code)
                .fetch_optional(pool)
                .await?
            }
            Database::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT id, name, join_code, created_by, created_at \
                     FROM classrooms WHERE join_code = $1",
                )
                .bind(code)
                .fetch_optional(pool)
                .await?
            }
        };
        Ok(row.map(classroom_from_row))
    }

    /// Replaces the join code of classroom `id`. Returns whether the classroom exists;
    /// fails with [`DbError::JoinCodeTaken`] if `new_code` is in use.
    pub async fn set_join_code(&self, id: &str, new_code: &str) -> Result<bool, DbError> {
        let result = match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query("UPDATE classrooms SET join_code = ? WHERE id = ?")
                    .bind(new_code)
                    .bind(id)
                    .execute(pool)
                    .await
                    .map(|done| done.rows_affected())
            }
            Database::Postgres(pool) => {
                sqlx::query("UPDATE classrooms SET join_code = $1 WHERE id = $2")
                    .bind(new_code)
                    .bind(id)
                    .execute(pool)
                    .await
                    .map(|done| done.rows_affected())
            }
        };
        match result {
            Ok(rows) => Ok(rows == 1),
            Err(error) if is_unique_violation(&error) => Err(DbError::JoinCodeTaken),
            Err(error) => Err(error.into()),
        }
    }

    /// Adds `user_id` to the classroom with `role`, unless already a member. Returns the
    /// role the user now has there (an existing membership keeps its role, so a faculty
    /// member who uses the join code is not demoted).
    pub async fn add_member(
        &self,
        classroom_id: &str,
        user_id: &str,
        role: MemberRole,
        now: i64,
    ) -> Result<MemberRole, DbError> {
        match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query(
                    "INSERT INTO classroom_members (classroom_id, user_id, role, joined_at) \
                     VALUES (?, ?, ?, ?) ON CONFLICT (classroom_id, user_id) DO NOTHING",
                )
                .bind(classroom_id)
                .bind(user_id)
                .bind(role.as_str())
                .bind(now)
                .execute(pool)
                .await?;
            }
            Database::Postgres(pool) => {
                sqlx::query(
                    "INSERT INTO classroom_members (classroom_id, user_id, role, joined_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (classroom_id, user_id) DO NOTHING",
                )
                .bind(classroom_id)
                .bind(user_id)
                .bind(role.as_str())
                .bind(now)
                .execute(pool)
                .await?;
            }
        }
        // Present unless removed concurrently in between; report that as the asked role.
        Ok(self
            .membership(classroom_id, user_id)
            .await?
            .unwrap_or(role))
    }

    /// The role of `user_id` in the classroom, or `None` if not a member.
    pub async fn membership(
        &self,
        classroom_id: &str,
        user_id: &str,
    ) -> Result<Option<MemberRole>, DbError> {
        let role: Option<String> =
            match &self.database {
                Database::Sqlite(pool) => {
                    sqlx::query_scalar(
                        "SELECT role FROM classroom_members WHERE classroom_id = ? AND user_id = ?",
                    )
                    .bind(classroom_id)
                    .bind(user_id)
                    .fetch_optional(pool)
                    .await?
                }
                Database::Postgres(pool) => sqlx::query_scalar(
                    "SELECT role FROM classroom_members WHERE classroom_id = $1 AND user_id = $2",
                )
                .bind(classroom_id)
                .bind(user_id)
                .fetch_optional(pool)
                .await?,
            };
        role.as_deref().map(MemberRole::parse).transpose()
    }

    /// Every classroom `user_id` belongs to, oldest first.
    pub async fn for_user(&self, user_id: &str) -> Result<Vec<Enrolment>, DbError> {
        let rows: Vec<(String, String, String, String, i64, String)> = match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query_as(
                    "SELECT c.id, c.name, c.join_code, c.created_by, c.created_at, m.role \
                     FROM classroom_members m JOIN classrooms c ON c.id = m.classroom_id \
                     WHERE m.user_id = ? ORDER BY c.created_at, c.id",
                )
                .bind(user_id)
                .fetch_all(pool)
                .await?
            }
            Database::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT c.id, c.name, c.join_code, c.created_by, c.created_at, m.role \
                     FROM classroom_members m JOIN classrooms c ON c.id = m.classroom_id \
                     WHERE m.user_id = $1 ORDER BY c.created_at, c.id",
                )
                .bind(user_id)
                .fetch_all(pool)
                .await?
            }
        };
        rows.into_iter()
            .map(|(id, name, join_code, created_by, created_at, role)| {
                Ok(Enrolment {
                    classroom: classroom_from_row((id, name, join_code, created_by, created_at)),
                    role: MemberRole::parse(&role)?,
                })
            })
            .collect()
    }

    /// The members of a classroom: faculty first, then by join time.
    pub async fn members(&self, classroom_id: &str) -> Result<Vec<Member>, DbError> {
        let rows: Vec<(String, String, String, i64)> = match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query_as(
                    "SELECT m.user_id, u.display_name, m.role, m.joined_at \
                     FROM classroom_members m JOIN users u ON u.id = m.user_id \
                     WHERE m.classroom_id = ? \
                     ORDER BY m.role = 'faculty' DESC, m.joined_at, m.user_id",
                )
                .bind(classroom_id)
                .fetch_all(pool)
                .await?
            }
            Database::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT m.user_id, u.display_name, m.role, m.joined_at \
                     FROM classroom_members m JOIN users u ON u.id = m.user_id \
                     WHERE m.classroom_id = $1 \
                     ORDER BY m.role = 'faculty' DESC, m.joined_at, m.user_id",
                )
                .bind(classroom_id)
                .fetch_all(pool)
                .await?
            }
        };
        rows.into_iter()
            .map(|(user_id, display_name, role, joined_at)| {
                Ok(Member {
                    user_id,
                    display_name,
                    role: MemberRole::parse(&role)?,
                    joined_at,
                })
            })
            .collect()
    }

    /// Removes `user_id` from the classroom, unless they are its only faculty member.
    ///
    /// The check and the delete share a transaction; on PostgreSQL two faculty leaving at
    /// the same instant could still both pass the check (read committed). That leaves a
    /// classroom without faculty, which an admin can repair; it never loses data.
    pub async fn remove_member(
        &self,
        classroom_id: &str,
        user_id: &str,
    ) -> Result<Removal, DbError> {
        match &self.database {
            Database::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                let role: Option<String> = sqlx::query_scalar(
                    "SELECT role FROM classroom_members WHERE classroom_id = ? AND user_id = ?",
                )
                .bind(classroom_id)
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(role) = role else {
                    return Ok(Removal::NotMember);
                };
                if MemberRole::parse(&role)? == MemberRole::Faculty {
                    let faculty: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM classroom_members \
                         WHERE classroom_id = ? AND role = 'faculty'",
                    )
                    .bind(classroom_id)
                    .fetch_one(&mut *tx)
                    .await?;
                    if faculty <= 1 {
                        return Ok(Removal::LastFaculty);
                    }
                }
                sqlx::query("DELETE FROM classroom_members WHERE classroom_id = ? AND user_id = ?")
                    .bind(classroom_id)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(Removal::Removed)
            }
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let role: Option<String> = sqlx::query_scalar(
                    "SELECT role FROM classroom_members WHERE classroom_id = $1 AND user_id = $2",
                )
                .bind(classroom_id)
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(role) = role else {
                    return Ok(Removal::NotMember);
                };
                if MemberRole::parse(&role)? == MemberRole::Faculty {
                    let faculty: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM classroom_members \
                         WHERE classroom_id = $1 AND role = 'faculty'",
                    )
                    .bind(classroom_id)
                    .fetch_one(&mut *tx)
                    .await?;
                    if faculty <= 1 {
                        return Ok(Removal::LastFaculty);
                    }
                }
                sqlx::query(
                    "DELETE FROM classroom_members WHERE classroom_id = $1 AND user_id = $2",
                )
                .bind(classroom_id)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Removal::Removed)
            }
        }
    }
}
