//! User accounts and their rotating refresh tokens.
//!
//! This module stores what the server decides; it never hashes passwords or mints tokens
//! itself (that is the server's `auth` module). Callers pass ids, hashes and times in, which
//! keeps the SQL free of clocks and randomness and the tests deterministic.
//!
//! Architecture invariant: a refresh token is used at most once. Rotation marks the old
//! token used with a conditional `UPDATE ... WHERE used_at IS NULL` and inserts its
//! successor in the same transaction, so two concurrent uses of one token cannot both
//! succeed: the loser sees a used token and revokes the whole family, as reuse must.

use crate::{Database, DbError, is_unique_violation};

/// What an account may do across the whole server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Teaches: creates classrooms and (later) runs live sessions.
    Faculty,
    /// Learns: enrols in classrooms with a join code.
    Student,
    /// Operates the server; only created out of band.
    Admin,
}

impl Role {
    /// The stored (and wire) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Faculty => "faculty",
            Self::Student => "student",
            Self::Admin => "admin",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Result<Self, DbError> {
        match text {
            "faculty" => Ok(Self::Faculty),
            "student" => Ok(Self::Student),
            "admin" => Ok(Self::Admin),
            other => Err(DbError::UnknownRole(other.to_owned())),
        }
    }
}

/// A stored account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Opaque, server-generated id.
    pub id: String,
    /// Lower-cased email address; unique.
    pub email: String,
    /// Name shown to classmates.
    pub display_name: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Server-wide role.
    pub role: Role,
    /// When the account was created, Unix seconds.
    pub created_at: i64,
}

/// A refresh token to store: only its hash, never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRefreshToken {
    /// SHA-256 of the token the client holds.
    pub token_hash: Vec<u8>,
    /// The login this token descends from; revoked together.
    pub family_id: String,
    /// Whose token it is.
    pub user_id: String,
    /// When it was issued, Unix seconds.
    pub created_at: i64,
    /// When it stops being accepted, Unix seconds.
    pub expires_at: i64,
}

/// The outcome of presenting a refresh token for rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was valid: it is now used and its successor is stored.
    Rotated {
        /// Whose token it was.
        user_id: String,
        /// Its family (the successor's too).
        family_id: String,
    },
    /// No such token.
    Unknown,
    /// The token is past its expiry.
    Expired,
    /// The token's family was revoked (logout or earlier reuse).
    Revoked,
    /// The token had already been used: it was stolen or replayed, so its whole family is
    /// now revoked.
    Reused {
        /// The revoked family.
        family_id: String,
    },
}

/// Accounts and refresh tokens in SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct Accounts {
    database: Database,
}

/// The `users` columns every query selects: id, email, display_name, password_hash, role,
/// created_at.
type UserRow = (String, String, String, String, String, i64);

fn user_from_row(row: UserRow) -> Result<User, DbError> {
    let (id, email, display_name, password_hash, role, created_at) = row;
    Ok(User {
        id,
        email,
        display_name,
        password_hash,
        role: Role::parse(&role)?,
        created_at,
    })
}

/// Columns of one refresh token's state: family, expiry, used, revoked.
type TokenStateRow = (String, i64, Option<i64>, Option<i64>);

impl Accounts {
    /// Accounts on `database` (already migrated).
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    /// Stores a new account. Fails with [`DbError::EmailTaken`] if the email is in use.
    pub async fn create_user(&self, user: &User) -> Result<(), DbError> {
        let result = match &self.database {
            Database::Sqlite(pool) => sqlx::query(
                "INSERT INTO users (id, email, display_name, password_hash, role, created_at) \
                     VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&user.id)
            .bind(&user.email)
            .bind(&user.display_name)
            .bind(&user.password_hash)
            .bind(user.role.as_str())
            .bind(user.created_at)
            .execute(pool)
            .await
            .map(|_| ()),
            Database::Postgres(pool) => sqlx::query(
                "INSERT INTO users (id, email, display_name, password_hash, role, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&user.id)
            .bind(&user.email)
            .bind(&user.display_name)
            .bind(&user.password_hash)
            .bind(user.role.as_str())
            .bind(user.created_at)
            .execute(pool)
            .await
            .map(|_| ()),
        };
        match result {
            Ok(()) => Ok(()),
            // The id is random, so the email is the only unique column that can collide.
            Err(error) if is_unique_violation(&error) => Err(DbError::EmailTaken),
            Err(error) => Err(error.into()),
        }
    }

    /// The account with this (lower-cased) email, if any.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>, DbError> {
        let row: Option<UserRow> = match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query_as(
                    "SELECT id, email, display_name, password_hash, role, created_at \
                     FROM users WHERE email = ?",
                )
                .bind(email)
                .fetch_optional(pool)
                .await?
            }
            Database::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT id, email, display_name, password_hash, role, created_at \
                     FROM users WHERE email = $1",
                )
                .bind(email)
                .fetch_optional(pool)
                .await?
            }
        };
        row.map(user_from_row).transpose()
    }

    /// The account with this id, if any.
    pub async fn user_by_id(&self, id: &str) -> Result<Option<User>, DbError> {
        let row: Option<UserRow> = match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query_as(
                    "SELECT id, email, display_name, password_hash, role, created_at \
                     FROM users WHERE id = ?",
                )
                .bind(id)
                .fetch_optional(pool)
                .await?
            }
            Database::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT id, email, display_name, password_hash, role, created_at \
                     FROM users WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(pool)
                .await?
            }
        };
        row.map(user_from_row).transpose()
    }

    /// Stores the first refresh token of a new family (at login or registration).
    pub async fn insert_refresh_token(&self, token: &NewRefreshToken) -> Result<(), DbError> {
        match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query(
                    "INSERT INTO refresh_tokens \
                     (token_hash, family_id, user_id, created_at, expires_at) \
                     VALUES (?, ?, ?, ?, ?)",
                )
                .bind(&token.token_hash)
                .bind(&token.family_id)
                .bind(&token.user_id)
                .bind(token.created_at)
                .bind(token.expires_at)
                .execute(pool)
                .await?;
            }
            Database::Postgres(pool) => {
                sqlx::query(
                    "INSERT INTO refresh_tokens \
                     (token_hash, family_id, user_id, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&token.token_hash)
                .bind(&token.family_id)
                .bind(&token.user_id)
                .bind(token.created_at)
                .bind(token.expires_at)
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }

    /// Uses the token hashed as `old_hash` at time `now`: if it is valid, marks it used and
    /// stores its successor (`new_hash`, expiring at `new_expires_at`, same family). If it
    /// was already used, revokes its family. See [`Rotation`].
    pub async fn rotate_refresh_token(
        &self,
        old_hash: &[u8],
        new_hash: &[u8],
        new_expires_at: i64,
        now: i64,
    ) -> Result<Rotation, DbError> {
        match &self.database {
            Database::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                let claimed: Option<(String, String)> = sqlx::query_as(
                    "UPDATE refresh_tokens SET used_at = ? \
                     WHERE token_hash = ? AND used_at IS NULL AND revoked_at IS NULL \
                       AND expires_at > ? \
                     RETURNING user_id, family_id",
                )
                .bind(now)
                .bind(old_hash)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some((user_id, family_id)) = claimed {
                    sqlx::query(
                        "INSERT INTO refresh_tokens \
                         (token_hash, family_id, user_id, created_at, expires_at) \
                         VALUES (?, ?, ?, ?, ?)",
                    )
                    .bind(new_hash)
                    .bind(&family_id)
                    .bind(&user_id)
                    .bind(now)
                    .bind(new_expires_at)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    return Ok(Rotation::Rotated { user_id, family_id });
                }
                let state: Option<TokenStateRow> = sqlx::query_as(
                    "SELECT family_id, expires_at, used_at, revoked_at \
                     FROM refresh_tokens WHERE token_hash = ?",
                )
                .bind(old_hash)
                .fetch_optional(&mut *tx)
                .await?;
                let outcome = classify(state, now);
                if matches!(outcome, Rotation::Reused { .. }) {
                    sqlx::query(
                        "UPDATE refresh_tokens SET revoked_at = ? \
                         WHERE family_id = (SELECT family_id FROM refresh_tokens \
                                            WHERE token_hash = ?) \
                           AND revoked_at IS NULL",
                    )
                    .bind(now)
                    .bind(old_hash)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(outcome)
            }
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let claimed: Option<(String, String)> = sqlx::query_as(
                    "UPDATE refresh_tokens SET used_at = $1 \
                     WHERE token_hash = $2 AND used_at IS NULL AND revoked_at IS NULL \
                       AND expires_at > $1 \
                     RETURNING user_id, family_id",
                )
                .bind(now)
                .bind(old_hash)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some((user_id, family_id)) = claimed {
                    sqlx::query(
                        "INSERT INTO refresh_tokens \
                         (token_hash, family_id, user_id, created_at, expires_at) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(new_hash)
                    .bind(&family_id)
                    .bind(&user_id)
                    .bind(now)
                    .bind(new_expires_at)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    return Ok(Rotation::Rotated { user_id, family_id });
                }
                let state: Option<TokenStateRow> = sqlx::query_as(
                    "SELECT family_id, expires_at, used_at, revoked_at \
                     FROM refresh_tokens WHERE token_hash = $1",
                )
                .bind(old_hash)
                .fetch_optional(&mut *tx)
                .await?;
                let outcome = classify(state, now);
                if matches!(outcome, Rotation::Reused { .. }) {
                    sqlx::query(
                        "UPDATE refresh_tokens SET revoked_at = $1 \
                         WHERE family_id = (SELECT family_id FROM refresh_tokens \
                                            WHERE token_hash = $2) \
                           AND revoked_at IS NULL",
                    )
                    .bind(now)
                    .bind(old_hash)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(outcome)
            }
        }
    }

    /// Whether login session (refresh-token family) `family_id` was revoked: by logout, or
    /// because one of its refresh tokens was reused.
    pub async fn family_revoked(&self, family_id: &str) -> Result<bool, DbError> {
        let revoked: Option<i64> = match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query_scalar(
                    "SELECT 1 FROM refresh_tokens \
                     WHERE family_id = ? AND revoked_at IS NOT NULL LIMIT 1",
                )
                .bind(family_id)
                .fetch_optional(pool)
                .await?
            }
            Database::Postgres(pool) => {
                sqlx::query_scalar(
                    "SELECT 1::BIGINT FROM refresh_tokens \
                     WHERE family_id = $1 AND revoked_at IS NOT NULL LIMIT 1",
                )
                .bind(family_id)
                .fetch_optional(pool)
                .await?
            }
        };
        Ok(revoked.is_some())
    }

    /// Revokes the family of the token hashed as `token_hash` (logout). Returns the revoked
    /// family, if the token was known.
    pub async fn revoke_family(
        &self,
        token_hash: &[u8],
        now: i64,
    ) -> Result<Option<String>, DbError> {
        let family: Option<String> = match &self.database {
            Database::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                let family: Option<String> =
                    sqlx::query_scalar("SELECT family_id FROM refresh_tokens WHERE token_hash = ?")
                        .bind(token_hash)
                        .fetch_optional(&mut *tx)
                        .await?;
                if let Some(family) = &family {
                    sqlx::query(
                        "UPDATE refresh_tokens SET revoked_at = ? \
                         WHERE family_id = ? AND revoked_at IS NULL",
                    )
                    .bind(now)
                    .bind(family)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                family
            }
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let family: Option<String> = sqlx::query_scalar(
                    "SELECT family_id FROM refresh_tokens WHERE token_hash = $1",
                )
                .bind(token_hash)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(family) = &family {
                    sqlx::query(
                        "UPDATE refresh_tokens SET revoked_at = $1 \
                         WHERE family_id = $2 AND revoked_at IS NULL",
                    )
                    .bind(now)
                    .bind(family)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                family
            }
        };
        Ok(family)
    }
}

/// Why a token could not be claimed, from its stored state. Revocation wins over reuse:
/// a revoked family stays revoked and needs no second revocation.
fn classify(state: Option<TokenStateRow>, now: i64) -> Rotation {
    match state {
        None => Rotation::Unknown,
        Some((_, _, _, Some(_revoked))) => Rotation::Revoked,
        Some((family_id, _, Some(_used), None)) => Rotation::Reused { family_id },
        Some((_, expires_at, None, None)) if expires_at <= now => Rotation::Expired,
        // Unreachable in practice (the claiming UPDATE would have matched); treat as
        // unknown rather than guess.
        Some(_) => Rotation::Unknown,
    }
}
