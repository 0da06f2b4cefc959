//! Per-user notification settings, and who of a classroom gets email.
//!
//! The in-app inbox is a document (written by the server), not a table; what is stored here
//! is only each user's choice about email. A user without a row has the defaults, so
//! accounts created before this table existed (or that never chose) get email.

use crate::{Database, DbError};

/// A user's notification settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Whether session starts and handouts are also sent by email.
    pub email: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self { email: true }
    }
}

/// A student of a classroom who wants email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailRecipient {
    /// The account id.
    pub user_id: String,
    /// The account's (lower-cased) email address.
    pub email: String,
    /// The name shown to classmates, used as the address's display name.
    pub display_name: String,
}

/// Notification settings in SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct Notifications {
    database: Database,
}

impl Notifications {
    /// Settings on `database` (already migrated).
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    /// The settings of `user_id` (the defaults if they never chose).
    pub async fn settings(&self, user_id: &str) -> Result<Settings, DbError> {
        let email: Option<bool> = match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query_scalar("SELECT email FROM notification_settings WHERE user_id = ?")
                    .bind(user_id)
                    .fetch_optional(pool)
                    .await?
            }
            Database::Postgres(pool) => {
                sqlx::query_scalar("SELECT email FROM notification_settings WHERE user_id = $1")
                    .bind(user_id)
                    .fetch_optional(pool)
                    .await?
            }
        };
        Ok(email.map_or_else(Settings::default, |email| Settings { email }))
    }

    /// Stores the settings of `user_id`.
    pub async fn set_settings(&self, user_id: &str, settings: Settings) -> Result<(), DbError> {
        match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query(
                    "INSERT INTO notification_settings (user_id, email) VALUES (?, ?) \
                     ON CONFLICT (user_id) DO UPDATE SET email = excluded.email",
                )
                .bind(user_id)
                .bind(settings.email)
                .execute(pool)
                .await?;
            }
            Database::Postgres(pool) => {
                sqlx::query(
                    "INSERT INTO notification_settings (user_id, email) VALUES ($1, $2) \
                     ON CONFLICT (user_id) DO UPDATE SET email = excluded.email",
                )
                .bind(user_id)
                .bind(settings.email)
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }

    /// The students of `classroom_id` who have not turned email off, in join order: one
    /// query for a whole class, whatever its size.
    pub async fn student_email_recipients(
        &self,
        classroom_id: &str,
    ) -> Result<Vec<EmailRecipient>, DbError> {
        let rows: Vec<(String, String, String)> = match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query_as(
                    "SELECT u.id, u.email, u.display_name \
                     FROM classroom_members m JOIN users u ON u.id = m.user_id \
                     LEFT JOIN notification_settings s ON s.user_id = m.user_id \
                     WHERE m.classroom_id = ? AND m.role = 'student' \
                       AND COALESCE(s.email, 1) = 1 \
                     ORDER BY m.joined_at, m.user_id",
                )
                .bind(classroom_id)
                .fetch_all(pool)
                .await?
            }
            Database::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT u.id, u.email, u.display_name \
                     FROM classroom_members m JOIN users u ON u.id = m.user_id \
                     LEFT JOIN notification_settings s ON s.user_id = m.user_id \
                     WHERE m.classroom_id = $1 AND m.role = 'student' \
                       AND COALESCE(s.email, TRUE) \
                     ORDER BY m.joined_at, m.user_id",
                )
                .bind(classroom_id)
                .fetch_all(pool)
                .await?
            }
        };
        Ok(rows
            .into_iter()
            .map(|(user_id, email, display_name)| EmailRecipient {
                user_id,
                email,
                display_name,
            })
            .collect())
    }
}
