//! `lectern-db` against real databases: a SQLite file and the real PostgreSQL (a fresh
//! database per test; under `CI=true` an unreachable PostgreSQL fails the test). Every test
//! runs the same assertions on both backends.

mod ai_jobs;
mod documents;
mod history;
mod identity;
mod leases;
mod materials;
mod notifications;
mod sessions;
mod webhooks;

use lectern_db::{Database, testing};

/// The backends to test on; the temp dir keeps the SQLite file alive for the test.
async fn backends() -> (Vec<Database>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite_url = format!("sqlite://{}", dir.path().join("test.db").display());
    let mut databases = vec![Database::connect(&sqlite_url).await.expect("sqlite")];
    if let Some(url) = testing::postgres_url().await {
        databases.push(Database::connect(&url).await.expect("postgres"));
    }
    (databases, dir)
}
