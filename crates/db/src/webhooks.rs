//! Webhooks and their outbox.
//!
//! A webhook is a classroom's URL with the events it wants. When an event happens, one
//! delivery row per subscribed webhook is written ([`Webhooks::enqueue`]) before anything
//! is sent; a delivery worker then claims due rows, sends them and records the outcome. So
//! the outbox is also the delivery log faculty read, and a restart (or a crash) between
//! the event and its delivery loses nothing: the row is still pending.
//!
//! Several nodes share the outbox. A node *claims* a row by writing its holder name and an
//! expiry (`claimed_until_ms`) in one statement that only picks rows nobody holds (on
//! PostgreSQL with `FOR UPDATE SKIP LOCKED`, so concurrent claimers skip each other's rows
//! instead of waiting); only the holder may record the outcome. A node that dies while
//! sending only delays the row until its claim expires. Delivery is therefore at least
//! once: a holder slower than its claim may send a row another node sends again, which is
//! why receivers deduplicate by delivery id.
//!
//! Due times are judged by the database's clock, never a node's (as for leases).

use std::time::Duration;

use crate::{Database, DbError};

/// The database's clock in Unix milliseconds, per backend (as literals, so queries stay
/// `&'static str`). The same expressions as in `leases.rs`.
macro_rules! sqlite_now_ms {
    () => {
        "CAST(unixepoch('subsec') * 1000 AS INTEGER)"
    };
}
macro_rules! postgres_now_ms {
    () => {
        "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
    };
}

/// The columns of `webhooks`, as a literal.
macro_rules! webhook_columns {
    () => {
        "id, classroom_id, url, events, secret, created_by, created_at, active"
    };
}

/// The columns of `webhook_deliveries` a [`Delivery`] is read from, as a literal.
macro_rules! delivery_columns {
    () => {
        "id, webhook_id, event, body, created_at_ms, attempts, next_attempt_at_ms, state, \
         last_status, last_error, delivered_at_ms"
    };
}

/// A stored webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Opaque, server-generated id.
    pub id: String,
    /// The classroom whose events it receives.
    pub classroom_id: String,
    /// Where deliveries are POSTed.
    pub url: String,
    /// The event names it receives (at least one).
    pub events: Vec<String>,
    /// The HMAC key its deliveries are signed with.
    pub secret: String,
    /// The account that registered it.
    pub created_by: String,
    /// When it was registered, Unix seconds.
    pub created_at: i64,
    /// False once deleted.
    pub active: bool,
}

impl Webhook {
    /// Whether it receives events named `event`.
    pub fn wants(&self, event: &str) -> bool {
        self.events.iter().any(|wanted| wanted == event)
    }
}

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Not delivered yet; sent when due.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up: retried for as long as allowed, or its webhook was deleted.
    Failed,
}

impl DeliveryState {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Result<Self, DbError> {
        match text {
            "pending" => Ok(Self::Pending),
            "delivered" => Ok(Self::Delivered),
            "failed" => Ok(Self::Failed),
            other => Err(DbError::UnknownDeliveryState(other.to_owned())),
        }
    }
}

/// A delivery to write into the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// Opaque, server-generated id (also inside `body`).
    pub id: String,
    /// The webhook it goes to.
    pub webhook_id: String,
    /// The event name.
    pub event: String,
    /// The JSON body, sent as is at every attempt.
    pub body: String,
}

/// A delivery as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Opaque id.
    pub id: String,
    /// The webhook it goes to.
    pub webhook_id: String,
    /// The event name.
    pub event: String,
    /// The JSON body.
    pub body: String,
    /// When it was enqueued, Unix milliseconds (database clock).
    pub created_at_ms: i64,
    /// Attempts made so far.
    pub attempts: u32,
    /// When it is (or was last) due, Unix milliseconds (database clock).
    pub next_attempt_at_ms: i64,
    /// Where it is.
    pub state: DeliveryState,
    /// The receiver's HTTP status at the last attempt, if it answered.
    pub last_status: Option<u16>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    /// When the receiver accepted it, Unix milliseconds (database clock).
    pub delivered_at_ms: Option<i64>,
}

/// Columns of `webhooks`, in `webhook_columns!` order.
type WebhookRow = (String, String, String, String, String, String, i64, bool);

fn webhook_from_row(row: WebhookRow) -> Webhook {
    let (id, classroom_id, url, events, secret, created_by, created_at, active) = row;
    Webhook {
        id,
        classroom_id,
        url,
        events: split_events(&events),
        secret,
        created_by,
        created_at,
        active,
    }
}

/// Columns of `webhook_deliveries`, in `delivery_columns!` order.
type DeliveryRow = (
    String,
    String,
    String,
    String,
    i64,
    i32,
    i64,
    String,
    Option<i32>,
    Option<String>,
    Option<i64>,
);

fn delivery_from_row(row: DeliveryRow) -> Result<Delivery, DbError> {
    let (
        id,
        webhook_id,
        event,
        body,
        created_at_ms,
        attempts,
        next_attempt_at_ms,
        state,
        last_status,
        last_error,
        delivered_at_ms,
    ) = row;
    Ok(Delivery {
        id,
        webhook_id,
        event,
        body,
        created_at_ms,
        attempts: u32::try_from(attempts).unwrap_or(0),
        next_attempt_at_ms,
        state: DeliveryState::parse(&state)?,
        last_status: last_status.and_then(|status| u16::try_from(status).ok()),
        last_error,
        delivered_at_ms,
    })
}

fn deliveries_from_rows(rows: Vec<DeliveryRow>) -> Result<Vec<Delivery>, DbError> {
    rows.into_iter().map(delivery_from_row).collect()
}

/// Event names are stored comma-separated: they are fixed identifiers without commas.
fn split_events(stored: &str) -> Vec<String> {
    stored
        .split(',')
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Webhooks and the delivery outbox in SQLite or PostgreSQL. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Webhooks {
    database: Database,
}

impl Webhooks {
    /// Webhooks on `database` (already migrated).
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    /// Stores a new webhook unless its classroom already has `max_per_classroom` active
    /// ones. Returns whether it was stored.
    pub async fn create(&self, webhook: &Webhook, max_per_classroom: u32) -> Result<bool, DbError> {
        let events = webhook.events.join(",");
        let max = i64::from(max_per_classroom);
        let rows = match &self.database {
            // One writer at a time: the count and the insert cannot interleave with another.
            Database::Sqlite(pool) => sqlx::query(
                "INSERT INTO webhooks (id, classroom_id, url, events, secret, created_by, \
                 created_at, active) SELECT ?, ?, ?, ?, ?, ?, ?, ? \
                 WHERE (SELECT COUNT(*) FROM webhooks WHERE classroom_id = ? AND active = 1) < ?",
            )
            .bind(&webhook.id)
            .bind(&webhook.classroom_id)
            .bind(&webhook.url)
            .bind(&events)
            .bind(&webhook.secret)
            .bind(&webhook.created_by)
            .bind(webhook.created_at)
            .bind(webhook.active)
            .bind(&webhook.classroom_id)
            .bind(max)
            .execute(pool)
            .await?
            .rows_affected(),
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                // Two registrations at once would both count below the cap: lock the
                // classroom so they take turns.
                sqlx::query("SELECT id FROM classrooms WHERE id = $1 FOR UPDATE")
                    .bind(&webhook.classroom_id)
                    .execute(&mut *tx)
                    .await?;
                let rows = sqlx::query(
                    "INSERT INTO webhooks (id, classroom_id, url, events, secret, created_by, \
                     created_at, active) SELECT $1, $2, $3, $4, $5, $6, $7, $8 \
                     WHERE (SELECT COUNT(*) FROM webhooks WHERE classroom_id = $2 AND active) \
                     < $9",
                )
                .bind(&webhook.id)
                .bind(&webhook.classroom_id)
                .bind(&webhook.url)
                .bind(&events)
                .bind(&webhook.secret)
                .bind(&webhook.created_by)
                .bind(webhook.created_at)
                .bind(webhook.active)
                .bind(max)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tx.commit().await?;
                rows
            }
        };
        Ok(rows == 1)
    }

    /// The webhook with this id, deleted or not.
    pub async fn get(&self, id: &str) -> Result<Option<Webhook>, DbError> {
        let row: Option<WebhookRow> = match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    webhook_columns!(),
                    " FROM webhooks WHERE id = ?"
                ))
                .bind(id)
                .fetch_optional(pool)
                .await?
            }
            Database::Postgres(pool) => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    webhook_columns!(),
                    " FROM webhooks WHERE id = $1"
                ))
                .bind(id)
                .fetch_optional(pool)
                .await?
            }
        };
        Ok(row.map(webhook_from_row))
    }

    /// The classroom's active webhooks, oldest first.
    pub async fn of_classroom(&self, classroom_id: &str) -> Result<Vec<Webhook>, DbError> {
        let rows: Vec<WebhookRow> = match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    webhook_columns!(),
                    " FROM webhooks WHERE classroom_id = ? AND active = 1 \
                     ORDER BY created_at, id"
                ))
                .bind(classroom_id)
                .fetch_all(pool)
                .await?
            }
            Database::Postgres(pool) => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    webhook_columns!(),
                    " FROM webhooks WHERE classroom_id = $1 AND active \
                     ORDER BY created_at, id"
                ))
                .bind(classroom_id)
                .fetch_all(pool)
                .await?
            }
        };
        Ok(rows.into_iter().map(webhook_from_row).collect())
    }

    /// Deletes an active webhook of the classroom: it gets no new deliveries and its
    /// pending ones fail with `reason`. Its log stays (for the server's records). Returns
    /// whether there was such a webhook.
    pub async fn deactivate(
        &self,
        classroom_id: &str,
        id: &str,
        reason: &str,
    ) -> Result<bool, DbError> {
        macro_rules! deactivate {
            ($pool:expr, $deactivate:expr, $fail:expr) => {{
                let mut tx = $pool.begin().await?;
                let rows = sqlx::query($deactivate)
                    .bind(id)
                    .bind(classroom_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if rows == 1 {
                    sqlx::query($fail)
                        .bind(reason)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                rows == 1
            }};
        }
        let found = match &self.database {
            Database::Sqlite(pool) => deactivate!(
                pool,
                "UPDATE webhooks SET active = 0 WHERE id = ? AND classroom_id = ? AND active = 1",
                "UPDATE webhook_deliveries SET state = 'failed', last_error = ?, \
                 claimed_by = NULL, claimed_until_ms = NULL \
                 WHERE webhook_id = ? AND state = 'pending'"
            ),
            Database::Postgres(pool) => deactivate!(
                pool,
                "UPDATE webhooks SET active = FALSE WHERE id = $1 AND classroom_id = $2 AND active",
                "UPDATE webhook_deliveries SET state = 'failed', last_error = $1, \
                 claimed_by = NULL, claimed_until_ms = NULL \
                 WHERE webhook_id = $2 AND state = 'pending'"
            ),
        };
        Ok(found)
    }

    /// Writes deliveries into the outbox, all or none, due now.
    pub async fn enqueue(&self, deliveries: &[NewDelivery]) -> Result<(), DbError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        macro_rules! enqueue {
            ($pool:expr, $sql:expr) => {{
                let mut tx = $pool.begin().await?;
                for delivery in deliveries {
                    sqlx::query($sql)
                        .bind(&delivery.id)
                        .bind(&delivery.webhook_id)
                        .bind(&delivery.event)
                        .bind(&delivery.body)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }};
        }
        match &self.database {
            Database::Sqlite(pool) => enqueue!(
                pool,
                concat!(
                    "INSERT INTO webhook_deliveries (id, webhook_id, event, body, created_at_ms, \
                     next_attempt_at_ms) VALUES (?, ?, ?, ?, ",
                    sqlite_now_ms!(),
                    ", ",
                    sqlite_now_ms!(),
                    ")"
                )
            ),
            Database::Postgres(pool) => enqueue!(
                pool,
                concat!(
                    "INSERT INTO webhook_deliveries (id, webhook_id, event, body, created_at_ms, \
                     next_attempt_at_ms) VALUES ($1, $2, $3, $4, ",
                    postgres_now_ms!(),
                    ", ",
                    postgres_now_ms!(),
                    ")"
                )
            ),
        }
        Ok(())
    }

    /// Claims up to `limit` due deliveries for `holder` for `claim_for`, oldest due first:
    /// pending rows whose next attempt is due and that nobody holds (or whose holder let
    /// the claim expire). Until the claim expires no other holder gets them.
    pub async fn claim(
        &self,
        holder: &str,
        limit: u32,
        claim_for: Duration,
    ) -> Result<Vec<Delivery>, DbError> {
        let claim_ms = millis(claim_for);
        let limit = i64::from(limit);
        let rows: Vec<DeliveryRow> = match &self.database {
            // One writer at a time: the select and the update are one atomic statement.
            Database::Sqlite(pool) => {
                sqlx::query_as(concat!(
                    "UPDATE webhook_deliveries SET claimed_by = ?, claimed_until_ms = ",
                    sqlite_now_ms!(),
                    " + ? WHERE seq IN (SELECT seq FROM webhook_deliveries \
                     WHERE state = 'pending' AND next_attempt_at_ms <= ",
                    sqlite_now_ms!(),
                    " AND (claimed_until_ms IS NULL OR claimed_until_ms <= ",
                    sqlite_now_ms!(),
                    ") ORDER BY next_attempt_at_ms LIMIT ?) RETURNING ",
                    delivery_columns!()
                ))
                .bind(holder)
                .bind(claim_ms)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
            Database::Postgres(pool) => {
                sqlx::query_as(concat!(
                    // MATERIALIZED: the due rows are picked (and locked) once; left to
                    // the planner, a subquery can be re-run per updated row and pick more
                    // rows than the limit.
                    "WITH due AS MATERIALIZED (SELECT seq FROM webhook_deliveries \
                     WHERE state = 'pending' AND next_attempt_at_ms <= ",
                    postgres_now_ms!(),
                    " AND (claimed_until_ms IS NULL OR claimed_until_ms <= ",
                    postgres_now_ms!(),
                    ") ORDER BY next_attempt_at_ms LIMIT $3 FOR UPDATE SKIP LOCKED) \
                     UPDATE webhook_deliveries d SET claimed_by = $1, claimed_until_ms = ",
                    postgres_now_ms!(),
                    " + $2 FROM due WHERE d.seq = due.seq AND d.state = 'pending' \
                     RETURNING d.id, d.webhook_id, d.event, d.body, d.created_at_ms, \
                     d.attempts, d.next_attempt_at_ms, d.state, d.last_status, d.last_error, \
                     d.delivered_at_ms"
                ))
                .bind(holder)
                .bind(claim_ms)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
        };
        let mut deliveries = deliveries_from_rows(rows)?;
        // RETURNING does not keep the subquery's order.
        deliveries.sort_by_key(|delivery| delivery.next_attempt_at_ms);
        Ok(deliveries)
    }

    /// Records that `holder`'s claimed delivery was accepted with HTTP `status`. Returns
    /// false when `holder` no longer held it (its claim expired and another took it).
    pub async fn delivered(&self, id: &str, holder: &str, status: u16) -> Result<bool, DbError> {
        let rows = match &self.database {
            Database::Sqlite(pool) => sqlx::query(concat!(
                "UPDATE webhook_deliveries SET state = 'delivered', attempts = attempts + 1, \
                 last_status = ?, last_error = NULL, delivered_at_ms = ",
                sqlite_now_ms!(),
                ", claimed_by = NULL, claimed_until_ms = NULL \
                 WHERE id = ? AND claimed_by = ? AND state = 'pending'"
            ))
            .bind(i32::from(status))
            .bind(id)
            .bind(holder)
            .execute(pool)
            .await?
            .rows_affected(),
            Database::Postgres(pool) => sqlx::query(concat!(
                "UPDATE webhook_deliveries SET state = 'delivered', attempts = attempts + 1, \
                 last_status = $1, last_error = NULL, delivered_at_ms = ",
                postgres_now_ms!(),
                ", claimed_by = NULL, claimed_until_ms = NULL \
                 WHERE id = $2 AND claimed_by = $3 AND state = 'pending'"
            ))
            .bind(i32::from(status))
            .bind(id)
            .bind(holder)
            .execute(pool)
            .await?
            .rows_affected(),
        };
        Ok(rows == 1)
    }

    /// Records a failed attempt of `holder`'s claimed delivery (`status` if the receiver
    /// answered, and why it failed) and schedules the next one `retry_in` from now; if that
    /// falls more than `retry_for` after the delivery was enqueued, it is `Failed` instead.
    /// Returns the delivery's new state, or `None` when `holder` no longer held it.
    pub async fn attempt_failed(
        &self,
        id: &str,
        holder: &str,
        status: Option<u16>,
        error: &str,
        retry_in: Duration,
        retry_for: Duration,
    ) -> Result<Option<DeliveryState>, DbError> {
        let retry_in = millis(retry_in);
        let retry_for = millis(retry_for);
        let status = status.map(i32::from);
        let state: Option<String> = match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query_scalar(concat!(
                    "UPDATE webhook_deliveries SET attempts = attempts + 1, last_status = ?, \
                     last_error = ?, claimed_by = NULL, claimed_until_ms = NULL, \
                     next_attempt_at_ms = ",
                    sqlite_now_ms!(),
                    " + ?, state = CASE WHEN ",
                    sqlite_now_ms!(),
                    " + ? > created_at_ms + ? THEN 'failed' ELSE 'pending' END \
                     WHERE id = ? AND claimed_by = ? AND state = 'pending' RETURNING state"
                ))
                .bind(status)
                .bind(error)
                .bind(retry_in)
                .bind(retry_in)
                .bind(retry_for)
                .bind(id)
                .bind(holder)
                .fetch_optional(pool)
                .await?
            }
            Database::Postgres(pool) => {
                sqlx::query_scalar(concat!(
                    "UPDATE webhook_deliveries SET attempts = attempts + 1, last_status = $1, \
                     last_error = $2, claimed_by = NULL, claimed_until_ms = NULL, \
                     next_attempt_at_ms = ",
                    postgres_now_ms!(),
                    " + $3, state = CASE WHEN ",
                    postgres_now_ms!(),
                    " + $3 > created_at_ms + $4 THEN 'failed' ELSE 'pending' END \
                     WHERE id = $5 AND claimed_by = $6 AND state = 'pending' RETURNING state"
                ))
                .bind(status)
                .bind(error)
                .bind(retry_in)
                .bind(retry_for)
                .bind(id)
                .bind(holder)
                .fetch_optional(pool)
                .await?
            }
        };
        state.as_deref().map(DeliveryState::parse).transpose()
    }

    /// Fails `holder`'s claimed delivery at once (its webhook is gone, or its URL is no
    /// longer acceptable), without counting an attempt. Returns whether `holder` held it.
    pub async fn give_up(&self, id: &str, holder: &str, error: &str) -> Result<bool, DbError> {
        let rows = match &self.database {
            Database::Sqlite(pool) => sqlx::query(
                "UPDATE webhook_deliveries SET state = 'failed', last_error = ?, \
                 claimed_by = NULL, claimed_until_ms = NULL \
                 WHERE id = ? AND claimed_by = ? AND state = 'pending'",
            )
            .bind(error)
            .bind(id)
            .bind(holder)
            .execute(pool)
            .await?
            .rows_affected(),
            Database::Postgres(pool) => sqlx::query(
                "UPDATE webhook_deliveries SET state = 'failed', last_error = $1, \
                 claimed_by = NULL, claimed_until_ms = NULL \
                 WHERE id = $2 AND claimed_by = $3 AND state = 'pending'",
            )
            .bind(error)
            .bind(id)
            .bind(holder)
            .execute(pool)
            .await?
            .rows_affected(),
        };
        Ok(rows == 1)
    }

    /// Gives every claim of `holder` back unchanged (its node is stopping), so another
    /// node, or this one after a restart, sends those rows without waiting for the claims
    /// to expire.
    pub async fn release_all(&self, holder: &str) -> Result<(), DbError> {
        match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query(
                    "UPDATE webhook_deliveries SET claimed_by = NULL, claimed_until_ms = NULL \
                     WHERE claimed_by = ?",
                )
                .bind(holder)
                .execute(pool)
                .await?;
            }
            Database::Postgres(pool) => {
                sqlx::query(
                    "UPDATE webhook_deliveries SET claimed_by = NULL, claimed_until_ms = NULL \
                     WHERE claimed_by = $1",
                )
                .bind(holder)
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }

    /// How long until the next pending delivery is due (zero if one is due now, counting
    /// a claimed row as due when its claim expires); `None` when nothing is pending.
    pub async fn next_due_in(&self) -> Result<Option<Duration>, DbError> {
        let delay: Option<i64> =
            match &self.database {
                Database::Sqlite(pool) => {
                    sqlx::query_scalar(concat!(
                        "SELECT MIN(MAX(next_attempt_at_ms, COALESCE(claimed_until_ms, 0))) - ",
                        sqlite_now_ms!(),
                        " FROM webhook_deliveries WHERE state = 'pending'"
                    ))
                    .fetch_one(pool)
                    .await?
                }
                Database::Postgres(pool) => sqlx::query_scalar(concat!(
                    "SELECT MIN(GREATEST(next_attempt_at_ms, COALESCE(claimed_until_ms, 0))) - ",
                    postgres_now_ms!(),
                    " FROM webhook_deliveries WHERE state = 'pending'"
                ))
                .fetch_one(pool)
                .await?,
            };
        Ok(delay.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))))
    }

    /// A webhook's deliveries, newest first: up to `limit` of them, enqueued before the
    /// delivery `before` when given (the last id of the previous page).
    pub async fn deliveries(
        &self,
        webhook_id: &str,
        limit: u32,
        before: Option<&str>,
    ) -> Result<Vec<Delivery>, DbError> {
        let limit = i64::from(limit);
        let rows: Vec<DeliveryRow> = match (&self.database, before) {
            (Database::Sqlite(pool), None) => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    delivery_columns!(),
                    " FROM webhook_deliveries WHERE webhook_id = ? ORDER BY seq DESC LIMIT ?"
                ))
                .bind(webhook_id)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
            (Database::Sqlite(pool), Some(before)) => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    delivery_columns!(),
                    " FROM webhook_deliveries WHERE webhook_id = ? AND seq < \
                     (SELECT seq FROM webhook_deliveries WHERE id = ?) \
                     ORDER BY seq DESC LIMIT ?"
                ))
                .bind(webhook_id)
                .bind(before)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
            (Database::Postgres(pool), None) => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    delivery_columns!(),
                    " FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY seq DESC LIMIT $2"
                ))
                .bind(webhook_id)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
            (Database::Postgres(pool), Some(before)) => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    delivery_columns!(),
                    " FROM webhook_deliveries WHERE webhook_id = $1 AND seq < \
                     (SELECT seq FROM webhook_deliveries WHERE id = $2) \
                     ORDER BY seq DESC LIMIT $3"
                ))
                .bind(webhook_id)
                .bind(before)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
        };
        deliveries_from_rows(rows)
    }
}

/// `duration` in milliseconds, bounded so that adding it to the clock cannot overflow.
fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).map_or(i64::MAX / 4, |ms| ms.min(i64::MAX / 4))
}
