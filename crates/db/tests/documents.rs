//! The SQL document store against real databases.

use std::sync::Arc;

use lectern_collab::{CollabMetrics, DocId, LocalFanout, NodeId, RoomConfig, Rooms, Store};
use lectern_db::{Database, DbError, Retention, SqlDocumentStore, testing};

use crate::backends;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

fn doc_id(name: &str) -> DocId {
    DocId::new(name).expect("doc id")
}

/// An update that appends `text` to `doc`'s "body".
fn edit(doc: &Doc, text: &str) -> Vec<u8> {
    let body = doc.get_or_insert_text("body");
    let mut txn = doc.transact_mut();
    let end = body.len(&txn);
    body.insert(&mut txn, end, text);
    txn.encode_update_v1()
}

/// The "body" text of what the store holds for `doc`.
async fn stored_text(store: &SqlDocumentStore, doc: &DocId) -> String {
    let stored = store.load(doc).await.expect("load");
    let copy = Doc::new();
    let body = copy.get_or_insert_text("body");
    let mut txn = copy.transact_mut();
    for bytes in stored
        .snapshot
        .iter()
        .chain(stored.updates.iter().map(|update| &update.bytes))
    {
        txn.apply_update(Update::decode_v1(bytes).expect("decode"))
            .expect("apply");
    }
    body.get_string(&txn)
}

#[tokio::test]
async fn unknown_documents_load_empty() {
    let (databases, _dir) = backends().await;
    for database in databases {
        let store = SqlDocumentStore::new(database.clone(), Retention::default());
        let stored = store.load(&doc_id("nothing-here")).await.expect("load");
        assert_eq!(stored.snapshot, None, "{}", database.backend());
        assert!(stored.updates.is_empty(), "{}", database.backend());
    }
}

#[tokio::test]
async fn appended_updates_load_in_order_with_increasing_sequence_numbers() {
    let (databases, _dir) = backends().await;
    for database in databases {
        let store = SqlDocumentStore::new(database.clone(), Retention::default());
        let (notes, chat) = (doc_id("class/notes"), doc_id("class/chat"));
        let writer = Doc::new();
        let mut seqs = Vec::new();
        for word in ["one ", "two ", "three "] {
            seqs.push(
                store
                    .append(&notes, &edit(&writer, word), &[])
                    .await
                    .expect("append"),
            );
            store
                .append(&chat, &edit(&Doc::new(), "other document"), &[])
                .await
                .expect("append");
        }
        assert!(seqs.windows(2).all(|pair| pair[0] < pair[1]), "{seqs:?}");
        let stored = store.load(&notes).await.expect("load");
        assert_eq!(
            stored
                .updates
                .iter()
                .map(|update| update.seq)
                .collect::<Vec<_>>(),
            seqs,
            "{}",
            database.backend()
        );
        assert_eq!(stored_text(&store, &notes).await, "one two three ");
        assert_eq!(
            stored_text(&store, &chat).await.len(),
            3 * "other document".len()
        );
    }
}

#[tokio::test]
async fn compaction_replaces_the_log_prefix_with_a_snapshot() {
    let (databases, _dir) = backends().await;
    for database in databases {
        let store = SqlDocumentStore::new(database.clone(), Retention::default());
        let notes = doc_id("notes");
        let writer = Doc::new();
        store
            .append(&notes, &edit(&writer, "a"), &[])
            .await
            .expect("append");
        let through = store
            .append(&notes, &edit(&writer, "b"), &[])
            .await
            .expect("append");
        let snapshot = writer
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        store
            .compact(&notes, &snapshot, through)
            .await
            .expect("compact");
        store
            .append(&notes, &edit(&writer, "c"), &[])
            .await
            .expect("append");

        let stored = store.load(&notes).await.expect("load");
        assert!(stored.snapshot.is_some(), "{}", database.backend());
        assert_eq!(stored.updates.len(), 1, "only the tail after the snapshot");
        assert_eq!(stored_text(&store, &notes).await, "abc");

        // A compaction older than the stored snapshot changes nothing.
        store
            .compact(&notes, &[0, 0], through)
            .await
            .expect("stale compact");
        assert_eq!(stored_text(&store, &notes).await, "abc");
    }
}

/// Regression guard for the multi-node invariant: node A compacts with a snapshot that
/// misses an update node B appended in between; that update must survive.
#[tokio::test]
async fn compaction_keeps_updates_its_snapshot_did_not_include() {
    let (databases, _dir) = backends().await;
    for database in databases {
        let store = SqlDocumentStore::new(database.clone(), Retention::default());
        let notes = doc_id("shared");
        let node_a = Doc::new();
        let node_b = Doc::new();
        store
            .append(&notes, &edit(&node_a, "from A;"), &[])
            .await
            .expect("append");
        let through = store
            .append(&notes, &edit(&node_b, "from B;"), &[])
            .await
            .expect("append");
        let a_only = node_a
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        store
            .compact(&notes, &a_only, through)
            .await
            .expect("compact");
        let text = stored_text(&store, &notes).await;
        assert!(
            text.contains("from A;") && text.contains("from B;"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn reconnecting_reapplies_no_migration_and_keeps_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("again.db").display());
    let mut urls = vec![url];
    urls.extend(testing::postgres_url().await);
    for url in urls {
        let first = Database::connect(&url).await.expect("first connect");
        let notes = doc_id("kept");
        first
            .document_store(Retention::default())
            .append(&notes, &edit(&Doc::new(), "still here"), &[])
            .await
            .expect("append");
        first.close().await;
        let second = Database::connect(&url).await.expect("second connect");
        second.ping().await.expect("ping");
        assert_eq!(
            stored_text(&SqlDocumentStore::new(second, Retention::default()), &notes).await,
            "still here"
        );
    }
}

#[tokio::test]
async fn unsupported_urls_are_a_clear_error() {
    let error = Database::connect("mysql://localhost/db")
        .await
        .expect_err("mysql is not supported");
    assert!(matches!(error, DbError::UnsupportedUrl(_)), "{error:?}");
}

/// Rooms on the SQL store: edits survive the room unloading and loading again.
#[tokio::test]
async fn rooms_reload_what_they_stored() {
    let (databases, _dir) = backends().await;
    for database in databases {
        let rooms = Rooms::new(
            database.document_store(Retention::default()),
            Arc::new(LocalFanout::new()),
            NodeId::random(),
            RoomConfig {
                compact_after_updates: 3,
                ..RoomConfig::default()
            },
            CollabMetrics::default(),
        );
        let notes = doc_id("room-notes");
        let (outbox, _inbox) = lectern_collab::outbox(1 << 20);
        let guest = lectern_collab::Guest::new("writer", lectern_collab::Access::Write);
        let membership = rooms
            .join(notes.clone(), guest, outbox, 0)
            .await
            .expect("join");
        let writer = Doc::new();
        for word in ["w1 ", "w2 ", "w3 ", "w4 ", "w5 "] {
            let frame = lectern_collab::protocol::encode_update(&edit(&writer, word));
            for message in lectern_collab::protocol::decode_frame(&frame).expect("frame") {
                membership.send(message).await.expect("send");
            }
        }
        membership.leave().await;
        rooms.shutdown().await;
        let store = SqlDocumentStore::new(database.clone(), Retention::default());
        assert_eq!(stored_text(&store, &notes).await, "w1 w2 w3 w4 w5 ");
        let stored = store.load(&notes).await.expect("load");
        assert!(
            stored.snapshot.is_some(),
            "shutdown compacts ({})",
            database.backend()
        );
        assert!(stored.updates.is_empty(), "{}", database.backend());
    }
}
