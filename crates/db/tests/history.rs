//! Document history against real databases: who wrote what, and kept versions.

use std::sync::Arc;
use std::time::Duration;

use lectern_collab::{DocId, Edit, NewVersion, Store, VersionReason};
use lectern_db::{History, Retention, SqlDocumentStore};

use crate::backends;

fn edit(author: &str, inserted: u64, deleted: u64) -> Edit {
    Edit {
        author: Arc::from(author),
        inserted,
        deleted,
    }
}

fn version(reason: VersionReason, snapshot: &[u8]) -> NewVersion {
    NewVersion {
        snapshot: snapshot.to_vec(),
        reason,
        label: None,
        author: None,
    }
}

#[tokio::test]
async fn each_authors_edits_add_up_per_minute_and_outlive_compaction() {
    let (databases, _dir) = backends().await;
    for database in databases {
        let backend = database.backend();
        let store = SqlDocumentStore::new(database.clone(), Retention::default());
        let notes = DocId::new("class/notes").expect("doc id");
        // One log entry can merge two members' edits (group commit).
        store
            .append(
                &notes,
                &[0, 0],
                &[edit("user:ada", 5, 0), edit("user:bo", 3, 1)],
            )
            .await
            .expect("append");
        let seq = store
            .append(&notes, &[0, 0], &[edit("user:ada", 7, 2)])
            .await
            .expect("append");
        store.compact(&notes, &[0, 0], seq).await.expect("compact");

        let activity = History::new(database.clone())
            .activity(&[notes.as_str().to_owned()], 0, i64::MAX)
            .await
            .expect("activity");
        let total = |author: &str| {
            activity
                .iter()
                .filter(|row| row.author == author)
                .fold((0, 0, 0), |(i, d, e), row| {
                    (i + row.inserted, d + row.deleted, e + row.edits)
                })
        };
        assert_eq!(total("user:ada"), (12, 2, 2), "{backend}");
        assert_eq!(total("user:bo"), (3, 1, 1), "{backend}");
        assert!(
            activity
                .iter()
                .all(|row| row.first_at_ms <= row.last_at_ms && row.first_at_ms > 0),
            "{backend}"
        );
        let none = History::new(database.clone())
            .activity(&[notes.as_str().to_owned()], 0, 1)
            .await
            .expect("activity");
        assert!(none.is_empty(), "the time window filters: {backend}");
    }
}

#[tokio::test]
async fn versions_are_kept_newest_first_and_retention_drops_the_oldest() {
    let (databases, _dir) = backends().await;
    for database in databases {
        let backend = database.backend();
        let retention = Retention {
            max_age: Duration::from_secs(3600),
            max_versions: 2,
        };
        let store = SqlDocumentStore::new(database.clone(), retention);
        let notes = DocId::new("class/notes").expect("doc id");
        let other = DocId::new("class/other").expect("doc id");
        let first = store
            .save_version(&notes, &version(VersionReason::SessionStarted, b"one"))
            .await
            .expect("save");
        store
            .save_version(&other, &version(VersionReason::Checkpoint, b"elsewhere"))
            .await
            .expect("save");
        let mut checkpoint = version(VersionReason::Checkpoint, b"two");
        checkpoint.label = Some("before group work".into());
        checkpoint.author = Some(Arc::from("user:ada"));
        let second = store.save_version(&notes, &checkpoint).await.expect("save");
        let third = store
            .save_version(&notes, &version(VersionReason::SessionEnded, b"three"))
            .await
            .expect("save");

        let history = History::new(database.clone());
        let kept = history.versions(notes.as_str()).await.expect("versions");
        let ids: Vec<i64> = kept.iter().map(|info| info.id).collect();
        assert_eq!(
            ids,
            vec![third, second],
            "newest first, at most two: {backend}"
        );
        assert_eq!(
            kept[1].label.as_deref(),
            Some("before group work"),
            "{backend}"
        );
        assert_eq!(kept[1].author.as_deref(), Some("user:ada"), "{backend}");
        assert_eq!(kept[1].reason, "checkpoint", "{backend}");
        assert_eq!(kept[0].bytes, 5, "{backend}");
        assert!(
            history
                .version(notes.as_str(), first)
                .await
                .expect("read")
                .is_none()
        );
        let (_, content) = history
            .version(notes.as_str(), second)
            .await
            .expect("read")
            .expect("kept");
        assert_eq!(content, b"two", "{backend}");
        assert!(
            history
                .version(other.as_str(), second)
                .await
                .expect("read")
                .is_none(),
            "a version is read through its own document only: {backend}"
        );
        assert_eq!(
            history
                .versions(other.as_str())
                .await
                .expect("versions")
                .len(),
            1,
            "retention is per document: {backend}"
        );
    }
}
