//! SQLite WAL checkpoints off the commit path.
//!
//! By default SQLite checkpoints inside whichever commit pushes the WAL past 1000 pages, and
//! a checkpoint fsyncs the database file: tens of milliseconds added to one unlucky room's
//! broadcast. Lectern turns automatic checkpoints off and runs passive checkpoints from a
//! background task on a connection of its own; a passive checkpoint never blocks writers.
//!
//! Under a constant stream of commits a passive checkpoint may never catch up with the last
//! commit, and the WAL file is only rewound once it has. So when the WAL passes
//! [`MAX_WAL_FRAMES`] the checkpointer asks for a `TRUNCATE` checkpoint, which briefly holds
//! writers back (once per ~64 MiB of writes) and lets the WAL start over.

use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use sqlx::{ConnectOptions, Connection, Row};

/// How often the WAL is folded back into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// WAL frames (pages of 4 KiB) after which a blocking checkpoint rewinds the WAL.
const MAX_WAL_FRAMES: i64 = 16 * 1024;

/// Starts the checkpointer for `pool`'s database. It stops when the pool is closed.
pub(crate) async fn spawn_checkpointer(
    options: &SqliteConnectOptions,
    pool: SqlitePool,
) -> Result<(), sqlx::Error> {
    let mut connection = options.connect().await?;
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(CHECKPOINT_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if pool.is_closed() {
                break;
            }
            // The pragma answers (busy, frames in the WAL, frames checkpointed).
            match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_one(&mut connection)
                .await
            {
                Ok(row) if row.get::<i64, _>(1) > MAX_WAL_FRAMES => {
                    if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                        .execute(&mut connection)
                        .await
                    {
                        tracing::warn!(%error, "SQLite WAL truncation failed; retrying");
                    }
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "SQLite checkpoint failed; retrying"),
            }
        }
        // A final full checkpoint leaves a compact database file behind.
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut connection)
            .await;
        let _ = connection.close().await;
    });
    Ok(())
}
