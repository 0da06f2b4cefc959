//! Test support: a fresh PostgreSQL database per test, on the server named by
//! `LECTERN_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`).
//!
//! When PostgreSQL is unreachable a test skips its PostgreSQL half with a message, except
//! under `CI=true`, where it fails: CI must never pass without having run against the real
//! database. `scripts/test.sh` starts PostgreSQL and drops leftover `lectern_test_*`
//! databases before a run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// The server tests create their databases on, unless overridden.
const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Creates an empty database and returns its URL; `None` (outside CI) when PostgreSQL is
/// unreachable.
///
/// # Panics
/// Under `CI=true` when PostgreSQL is unreachable, and whenever the database cannot be
/// created on a server that answered.
pub async fn postgres_url() -> Option<String> {
    let admin_url =
        std::env::var("LECTERN_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.into());
    let mut admin = match PgConnection::connect(&admin_url).await {
        Ok(connection) => connection,
        Err(error) => {
            if std::env::var("CI").is_ok_and(|ci| ci == "true") {
                panic!("PostgreSQL at {admin_url} is required under CI=true: {error}");
            }
            eprintln!("skipping PostgreSQL: {admin_url} unreachable ({error})");
            return None;
        }
    };
    let name = unique_database_name();
    // The name is generated here from digits and underscores only.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|error| panic!("creating test database {name}: {error}"));
    let _ = admin.close().await;
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url.as_str(), |(base, _)| base);
    Some(format!("{base}/{name}"))
}

/// `lectern_test_<pid>_<n>_<nanos>`: unique across the parallel test processes of one run.
fn unique_database_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    format!(
        "lectern_test_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
