//! Leases: named locks with an expiry, so that exactly one node of a cluster does a piece
//! of work (compacting a document, ingesting a material) and a node that dies holding one
//! only delays that work until the lease expires.
//!
//! Expiry is judged by the database's clock, never a node's: every node compares against
//! the same clock, so skew between nodes cannot let two of them hold a lease at once.
//! A lease is advisory: work that must stay correct even if a lease expires under a slow
//! holder (compaction) keeps its own safety check; the lease only avoids doing it twice.

use std::time::Duration;

use crate::{Database, DbError};

/// The database's clock in Unix milliseconds, per backend (as literals, so queries stay
/// `&'static str`).
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

/// Leases in SQLite or PostgreSQL. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Leases {
    database: Database,
}

impl Leases {
    /// Leases on `database` (already migrated).
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    /// Takes lease `name` for `holder` for `ttl`, if nobody holds it or its holder let it
    /// expire. Returns whether `holder` now holds it. Not re-entrant: a holder asking again
    /// for a lease it holds is refused (use [`Leases::renew`]).
    pub async fn try_acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, DbError> {
        let ttl = millis(ttl);
        // One statement: the insert, or the takeover of an expired lease, happens atomically
        // (PostgreSQL serialises conflicting inserts on the key; SQLite has one writer).
        let rows = match &self.database {
            Database::Sqlite(pool) => sqlx::query(concat!(
                "INSERT INTO leases (name, holder, expires_at_ms) VALUES (?, ?, ",
                sqlite_now_ms!(),
                " + ?) ON CONFLICT (name) DO UPDATE \
                 SET holder = excluded.holder, expires_at_ms = excluded.expires_at_ms \
                 WHERE leases.expires_at_ms <= ",
                sqlite_now_ms!()
            ))
            .bind(name)
            .bind(holder)
            .bind(ttl)
            .execute(pool)
            .await?
            .rows_affected(),
            Database::Postgres(pool) => sqlx::query(concat!(
                "INSERT INTO leases (name, holder, expires_at_ms) VALUES ($1, $2, ",
                postgres_now_ms!(),
                " + $3) ON CONFLICT (name) DO UPDATE \
                 SET holder = excluded.holder, expires_at_ms = excluded.expires_at_ms \
                 WHERE leases.expires_at_ms <= ",
                postgres_now_ms!()
            ))
            .bind(name)
            .bind(holder)
            .bind(ttl)
            .execute(pool)
            .await?
            .rows_affected(),
        };
        Ok(rows == 1)
    }

    /// Extends lease `name` to `ttl` from now if `holder` still holds it. Returns false when
    /// another holder took it over (the caller should stop the work it guards).
    pub async fn renew(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, DbError> {
        let ttl = millis(ttl);
        let rows = match &self.database {
            Database::Sqlite(pool) => sqlx::query(concat!(
                "UPDATE leases SET expires_at_ms = ",
                sqlite_now_ms!(),
                " + ? WHERE name = ? AND holder = ?"
            ))
            .bind(ttl)
            .bind(name)
            .bind(holder)
            .execute(pool)
            .await?
            .rows_affected(),
            Database::Postgres(pool) => sqlx::query(concat!(
                "UPDATE leases SET expires_at_ms = ",
                postgres_now_ms!(),
                " + $1 WHERE name = $2 AND holder = $3"
            ))
            .bind(ttl)
            .bind(name)
            .bind(holder)
            .execute(pool)
            .await?
            .rows_affected(),
        };
        Ok(rows == 1)
    }

    /// Gives lease `name` up if `holder` holds it (a lease another holder took over is left
    /// alone). Returns whether it was released.
    pub async fn release(&self, name: &str, holder: &str) -> Result<bool, DbError> {
        let rows = match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query("DELETE FROM leases WHERE name = ? AND holder = ?")
                    .bind(name)
                    .bind(holder)
                    .execute(pool)
                    .await?
                    .rows_affected()
            }
            Database::Postgres(pool) => {
                sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
                    .bind(name)
                    .bind(holder)
                    .execute(pool)
                    .await?
                    .rows_affected()
            }
        };
        Ok(rows == 1)
    }

    /// Deletes leases that expired (left by nodes that died holding them). Returns how
    /// many. Housekeeping only: an expired lease is free whether or not it is deleted.
    pub async fn prune_expired(&self) -> Result<u64, DbError> {
        let rows = match &self.database {
            Database::Sqlite(pool) => sqlx::query(concat!(
                "DELETE FROM leases WHERE expires_at_ms <= ",
                sqlite_now_ms!()
            ))
            .execute(pool)
            .await?
            .rows_affected(),
            Database::Postgres(pool) => sqlx::query(concat!(
                "DELETE FROM leases WHERE expires_at_ms <= ",
                postgres_now_ms!()
            ))
            .execute(pool)
            .await?
            .rows_affected(),
        };
        Ok(rows)
    }
}

/// A holder name unique to this call in this process and, with overwhelming probability,
/// across the nodes of a cluster: for work where each attempt is its own holder.
pub(crate) fn unique_holder() -> String {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let attempt = NEXT.fetch_add(1, Ordering::Relaxed);
    // RandomState is seeded randomly per process (and per instance after that).
    let random = RandomState::new().hash_one((std::process::id(), attempt));
    format!("{random:016x}-{attempt}")
}

/// `duration` in milliseconds, bounded so that adding it to the clock cannot overflow.
fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).map_or(i64::MAX / 4, |ms| ms.min(i64::MAX / 4))
}
