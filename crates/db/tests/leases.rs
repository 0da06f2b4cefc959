//! Leases and the compaction lease against real databases: a SQLite file and the real
//! PostgreSQL. Every test runs the same assertions on both backends.

use std::time::{Duration, Instant};

use lectern_collab::{DocId, Store};
use lectern_db::{Database, Leases, Retention, SqlDocumentStore};
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

use crate::backends;

const LONG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_lease_has_one_holder_until_it_is_released() {
    let (databases, _dir) = backends().await;
    for database in databases {
        let backend = database.backend();
        let leases = Leases::new(database);
        assert!(
            leases.try_acquire("job", "a", LONG).await.expect("a"),
            "{backend}"
        );
        assert!(
            !leases.try_acquire("job", "b", LONG).await.expect("b"),
            "{backend}"
        );
        assert!(
            !leases.try_acquire("job", "a", LONG).await.expect("a again"),
            "not re-entrant ({backend})"
        );
        // Other names are independent.
        assert!(
            leases.try_acquire("other", "b", LONG).await.expect("other"),
            "{backend}"
        );
        // Only the holder renews or releases.
        assert!(
            leases.renew("job", "a", LONG).await.expect("renew"),
            "{backend}"
        );
        assert!(
            !leases.renew("job", "b", LONG).await.expect("renew b"),
            "{backend}"
        );
        assert!(
            !leases.release("job", "b").await.expect("release b"),
            "{backend}"
        );
        assert!(
            !leases.try_acquire("job", "b", LONG).await.expect("b"),
            "{backend}"
        );
        assert!(
            leases.release("job", "a").await.expect("release"),
            "{backend}"
        );
        assert!(
            leases.try_acquire("job", "b", LONG).await.expect("b"),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_and_its_old_holder_cannot_renew_it() {
    let (databases, _dir) = backends().await;
    for database in databases {
        let backend = database.backend();
        let leases = Leases::new(database);
        let ttl = Duration::from_millis(300);
        let taken = Instant::now();
        assert!(
            leases
                .try_acquire("ingest:m1", "dead-node", ttl)
                .await
                .expect("a")
        );
        // Refused while it lasts; taken as soon as it has expired.
        let mut refused = 0;
        loop {
            if leases
                .try_acquire("ingest:m1", "next-node", LONG)
                .await
                .expect("b")
            {
                break;
            }
            refused += 1;
            assert!(
                taken.elapsed() < Duration::from_secs(10),
                "never expired ({backend})"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(refused > 0, "refused before expiry ({backend})");
        assert!(
            taken.elapsed() >= ttl,
            "taken over after {:?}, before its ttl ({backend})",
            taken.elapsed()
        );
        assert!(
            !leases
                .renew("ingest:m1", "dead-node", LONG)
                .await
                .expect("renew"),
            "{backend}"
        );
        assert!(
            !leases
                .release("ingest:m1", "dead-node")
                .await
                .expect("release"),
            "the new holder keeps it ({backend})"
        );
        assert!(
            !leases
                .try_acquire("ingest:m1", "third", LONG)
                .await
                .expect("c")
        );
        assert_eq!(leases.prune_expired().await.expect("prune"), 0, "{backend}");
    }
}

fn doc_id(name: &str) -> DocId {
    DocId::new(name).expect("doc id")
}

fn text_of(store_parts: &[Vec<u8>]) -> String {
    let doc = Doc::new();
    let body = doc.get_or_insert_text("body");
    let mut txn = doc.transact_mut();
    for part in store_parts {
        txn.apply_update(Update::decode_v1(part).expect("decode"))
            .expect("apply");
    }
    body.get_string(&txn)
}

async fn stored(store: &SqlDocumentStore, doc: &DocId) -> (bool, usize, String) {
    let loaded = store.load(doc).await.expect("load");
    let mut parts: Vec<Vec<u8>> = loaded.snapshot.iter().cloned().collect();
    parts.extend(loaded.updates.iter().map(|update| update.bytes.clone()));
    (
        loaded.snapshot.is_some(),
        loaded.updates.len(),
        text_of(&parts),
    )
}

async fn compaction_lease_is_held_elsewhere(database: &Database, doc: &str) -> Leases {
    let leases = Leases::new(database.clone());
    assert!(
        leases
            .try_acquire(&format!("compact:{doc}"), "other-node", LONG)
            .await
            .expect("lease")
    );
    leases
}

#[tokio::test]
async fn a_document_another_node_is_compacting_is_skipped_and_loses_nothing() {
    let (databases, _dir) = backends().await;
    for database in databases {
        let backend = database.backend();
        let store = SqlDocumentStore::new(database.clone(), Retention::default());
        let notes = doc_id("leased-notes");
        let writer = Doc::new();
        let body = writer.get_or_insert_text("body");
        let mut through = 0;
        for word in ["one ", "two "] {
            let update = {
                let mut txn = writer.transact_mut();
                let end = body.len(&txn);
                body.insert(&mut txn, end, word);
                txn.encode_update_v1()
            };
            through = store.append(&notes, &update, &[]).await.expect("append");
        }
        let snapshot = writer
            .transact()
            .encode_state_as_update_v1(&StateVector::default());

        let leases = compaction_lease_is_held_elsewhere(&database, notes.as_str()).await;
        store
            .compact(&notes, &snapshot, through)
            .await
            .expect("a skipped compaction is not an error");
        assert_eq!(
            stored(&store, &notes).await,
            (false, 2, "one two ".to_owned()),
            "the log is untouched ({backend})"
        );

        // Once the other node is done, the next trigger compacts.
        assert!(
            leases
                .release(&format!("compact:{}", notes.as_str()), "other-node")
                .await
                .expect("release")
        );
        store
            .compact(&notes, &snapshot, through)
            .await
            .expect("compact");
        assert_eq!(
            stored(&store, &notes).await,
            (true, 0, "one two ".to_owned()),
            "{backend}"
        );
        // And the compaction gave its lease back.
        assert!(
            leases
                .try_acquire(&format!("compact:{}", notes.as_str()), "other-node", LONG)
                .await
                .expect("free again"),
            "{backend}"
        );
    }
}
