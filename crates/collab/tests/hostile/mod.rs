//! Hostile input against the limits and rooms: nested values, lying counts, poisoned stores,
//! pending floods, awareness floods, and edits typed during a lock.

use std::collections::HashMap;

use lectern_collab::JoinError;
use lectern_collab::limits::{DEFAULT_MAX_DEPTH, LimitError, UpdateLimits, check_update_v1};
use yrs::encoding::write::Write;
use yrs::sync::AwarenessUpdate;
use yrs::sync::awareness::AwarenessUpdateEntry;
use yrs::types::Attrs;
use yrs::types::xml::{XmlElementPrelim, XmlFragment, XmlTextPrelim};
use yrs::updates::encoder::{Encode, Encoder, EncoderV1};
use yrs::{Any, Array, ArrayPrelim, Map, MapPrelim, Xml};

use super::*;

/// A v1 update with one item of `Any` content in root array "a": `depth` nested arrays
/// around a null. 12,000 levels is the 24 KB frame that aborted the server.
fn nested_any_update(depth: usize) -> Vec<u8> {
    let mut encoder = EncoderV1::new();
    encoder.write_var(1u32); // one client
    encoder.write_var(1u32); // one struct
    encoder.write_var(7u64); // client id
    encoder.write_var(0u32); // clock
    encoder.write_u8(8); // item, Any content, no origins, no parent sub
    encoder.write_var(1u32); // parent is a root type...
    encoder.write_string("a"); // ...named "a"
    encoder.write_var(1u32); // one value
    for _ in 0..depth {
        encoder.write_u8(117); // array
        encoder.write_var(1u32); // of one element
    }
    encoder.write_u8(126); // null
    encoder.write_var(0u32); // empty delete set
    encoder.to_vec()
}

/// A v1 update with one embed in root text "t" whose JSON nests `depth` arrays.
fn nested_embed_update(depth: usize) -> Vec<u8> {
    let mut encoder = EncoderV1::new();
    encoder.write_var(1u32);
    encoder.write_var(1u32);
    encoder.write_var(7u64);
    encoder.write_var(0u32);
    encoder.write_u8(5); // item, embed content
    encoder.write_var(1u32);
    encoder.write_string("t");
    encoder.write_string(&format!("{}{}", "[".repeat(depth), "]".repeat(depth)));
    encoder.write_var(0u32);
    encoder.to_vec()
}

/// Nested `Any` of `depth` levels alternating maps and arrays, as a yrs value.
fn nested_any(depth: usize) -> Any {
    let mut value = Any::from("leaf");
    for level in 0..depth {
        value = if level % 2 == 0 {
            Any::from(vec![value])
        } else {
            Any::from(HashMap::from([("k".to_string(), value)]))
        };
    }
    value
}

#[test]
fn the_nested_array_attack_is_refused_without_recursion() {
    let limits = UpdateLimits::default();
    // Refused on a small stack: the walk itself must not recurse.
    let result = std::thread::Builder::new()
        .stack_size(64 * 1024)
        .spawn(move || {
            let attack = nested_any_update(12_000);
            assert!(attack.len() < 25_000);
            (
                check_update_v1(&attack, &limits).map(|_| ()),
                check_update_v1(&nested_embed_update(100_000), &limits).map(|_| ()),
            )
        })
        .expect("thread")
        .join()
        .expect("no stack overflow");
    assert!(matches!(result.0, Err(LimitError::TooDeep { .. })));
    assert!(matches!(result.1, Err(LimitError::TooDeep { .. })));
    let just_over = nested_any_update(DEFAULT_MAX_DEPTH + 1);
    assert!(matches!(
        check_update_v1(&just_over, &limits),
        Err(LimitError::TooDeep { .. })
    ));
}

#[test]
fn the_deepest_accepted_update_fits_a_small_stack() {
    // Everything yrs does recursively with an accepted update (decode, integrate, encode the
    // snapshot, decode and integrate that again, drop) on a 256 KiB stack: an eighth of a
    // tokio worker's 2 MiB.
    let limits = UpdateLimits::default();
    let deepest = vec![
        nested_any_update(DEFAULT_MAX_DEPTH),
        nested_embed_update(DEFAULT_MAX_DEPTH),
        {
            let doc = Doc::new();
            let map = doc.get_or_insert_map("m");
            let text = doc.get_or_insert_text("f");
            let mut txn = doc.transact_mut();
            map.insert(&mut txn, "deep", nested_any(DEFAULT_MAX_DEPTH));
            text.insert(&mut txn, 0, "formatted");
            let attrs = Attrs::from([("style".into(), nested_any(DEFAULT_MAX_DEPTH - 1))]);
            text.format(&mut txn, 0, 4, attrs);
            txn.encode_update_v1()
        },
    ];
    for update in &deepest {
        let summary = check_update_v1(update, &limits).expect("accepted");
        assert!(summary.depth >= DEFAULT_MAX_DEPTH - 1, "{summary:?}");
    }
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let doc = Doc::new();
            for update in &deepest {
                let update = Update::decode_v1(update).expect("decodes");
                doc.transact_mut().apply_update(update).expect("applies");
            }
            let snapshot = doc
                .transact()
                .encode_state_as_update_v1(&StateVector::default());
            let reloaded = Doc::new();
            reloaded
                .transact_mut()
                .apply_update(Update::decode_v1(&snapshot).expect("snapshot decodes"))
                .expect("snapshot applies");
            drop(doc);
            drop(reloaded);
        })
        .expect("thread")
        .join()
        .expect("no stack overflow");
}

#[test]
fn counts_larger_than_the_input_are_refused() {
    let limits = UpdateLimits::default();
    let mut encoder = EncoderV1::new();
    encoder.write_var(1u32);
    encoder.write_var(1u32);
    encoder.write_var(7u64);
    encoder.write_var(0u32);
    encoder.write_u8(8);
    encoder.write_var(1u32);
    encoder.write_string("a");
    encoder.write_var(u32::MAX); // four billion values in a few bytes
    assert!(matches!(
        check_update_v1(&encoder.to_vec(), &limits),
        Err(LimitError::CountExceedsInput { .. })
    ));
    let small = UpdateLimits {
        max_values: 10,
        ..limits
    };
    let wide = {
        let doc = Doc::new();
        let array = doc.get_or_insert_array("a");
        let mut txn = doc.transact_mut();
        array.insert_range(&mut txn, 0, (0..100).map(|i| i as f64));
        txn.encode_update_v1()
    };
    assert!(matches!(
        check_update_v1(&wide, &small),
        Err(LimitError::TooManyValues { max: 10 })
    ));
}

/// A small deterministic generator (xorshift), so failures reproduce from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn any(&mut self, depth: usize) -> Any {
        match self.below(if depth == 0 { 6 } else { 8 }) {
            0 => Any::Null,
            1 => Any::Bool(self.below(2) == 0),
            2 => Any::from(self.below(1 << 40) as i64 - (1 << 39)),
            3 => Any::from(self.below(1000) as f64 / 7.0),
            4 => Any::from(format!("s{}", self.below(100))),
            5 => Any::from(vec![self.below(256) as u8; self.below(8) as usize].as_slice()),
            6 => Any::from(
                (0..self.below(4))
                    .map(|_| self.any(depth - 1))
                    .collect::<Vec<_>>(),
            ),
            _ => Any::from(
                (0..self.below(4))
                    .map(|i| (format!("k{i}"), self.any(depth - 1)))
                    .collect::<HashMap<_, _>>(),
            ),
        }
    }
}

/// One random edit of every kind a yrs peer can make.
fn random_edit(rng: &mut Rng, doc: &Doc) -> Vec<u8> {
    let text = doc.get_or_insert_text("text");
    let map = doc.get_or_insert_map("map");
    let array = doc.get_or_insert_array("array");
    let xml = doc.get_or_insert_xml_fragment("xml");
    let mut txn = doc.transact_mut();
    for _ in 0..1 + rng.below(4) {
        let len = text.len(&txn);
        match rng.below(10) {
            0 => text.insert(&mut txn, rng.below(u64::from(len) + 1) as u32, "hello"),
            1 if len > 0 => {
                let at = rng.below(u64::from(len)) as u32;
                text.remove_range(&mut txn, at, 1.min(len - at));
            }
            2 if len > 1 => {
                let value = rng.any(3);
                text.format(&mut txn, 0, len / 2, Attrs::from([("b".into(), value)]));
            }
            3 => {
                let value = rng.any(3);
                text.insert_embed(&mut txn, 0, value);
            }
            4 => {
                let key = format!("k{}", rng.below(5));
                let value = rng.any(DEFAULT_MAX_DEPTH.min(6));
                map.insert(&mut txn, key, value);
            }
            5 => {
                let nested = map.insert(&mut txn, "nested", MapPrelim::default());
                nested.insert(&mut txn, "x", rng.any(2));
                let list = nested.insert(&mut txn, "list", ArrayPrelim::default());
                list.push_back(&mut txn, rng.any(2));
            }
            6 => {
                array.push_back(&mut txn, rng.any(4));
            }
            7 if array.len(&txn) > 0 => array.remove(&mut txn, 0),
            8 => {
                let element = xml.push_back(&mut txn, XmlElementPrelim::empty("p"));
                element.insert_attribute(&mut txn, "class", "x");
                element.push_back(&mut txn, XmlTextPrelim::new("para"));
            }
            _ => {
                let sub = Doc::new();
                map.insert(&mut txn, "sub", sub);
            }
        }
    }
    txn.encode_update_v1()
}

#[test]
fn every_update_yrs_produces_is_accepted() {
    let limits = UpdateLimits::default();
    for seed in 1..=60u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let peers = [Doc::with_client_id(seed), Doc::with_client_id(1000 + seed)];
        for _ in 0..25 {
            let author = &peers[rng.below(2) as usize];
            let update = random_edit(&mut rng, author);
            let summary = check_update_v1(&update, &limits)
                .unwrap_or_else(|error| panic!("seed {seed}: refused {error}"));
            assert!(
                summary
                    .clients
                    .iter()
                    .all(|client| *client == author.client_id().get())
            );
            // Exchange, so edits build on each other's content.
            for peer in &peers {
                peer.transact_mut()
                    .apply_update(Update::decode_v1(&update).expect("decodes"))
                    .expect("applies");
            }
        }
        let state = peers[0]
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        let summary = check_update_v1(&state, &limits).expect("full state accepted");
        let mut clients = summary.clients.clone();
        clients.sort_unstable();
        assert!(clients.iter().all(|c| [seed, 1000 + seed].contains(c)));
        // The awareness and state vector checks accept what yrs encodes, too.
        let sv = peers[0].transact().state_vector().encode_v1();
        lectern_collab::limits::check_state_vector_v1(&sv).expect("state vector");
    }
    let awareness = AwarenessUpdate {
        clients: HashMap::from([(
            yrs::ClientID::new(5),
            AwarenessUpdateEntry {
                clock: 3,
                json: r#"{"user":{"name":"ann"}}"#.into(),
            },
        )]),
    };
    lectern_collab::limits::check_awareness_v1(&awareness.encode_v1()).expect("awareness");
}

#[tokio::test]
async fn nested_updates_close_the_sender_and_leave_the_room_serving() {
    let (rooms, metrics) = rooms_with(Arc::new(MemoryStore::new()), config());
    let mut writer = Client::join_as(&rooms, "deep", Guest::new("w", Access::Write)).await;
    let mut reader = Client::join_as(&rooms, "deep", Guest::new("r", Access::Read)).await;
    let mut bystander = Client::join(&rooms, "deep").await;
    for client in [&mut writer, &mut reader, &mut bystander] {
        client.receive().await;
    }
    for client in [&writer, &reader] {
        client
            .send(protocol::encode_update(&nested_any_update(12_000)))
            .await;
        client.inbox.close_requests().requested().await;
        assert_eq!(
            client.inbox.close_requests().take()[0].reason,
            CloseReason::InvalidMessage
        );
    }
    assert_eq!(metrics.messages_rejected.get(), 2);
    bystander.insert(0, "still here").await;
    let copy = room_doc(&rooms, "deep").await;
    assert_eq!(
        copy.get_or_insert_text("body").get_string(&copy.transact()),
        "still here"
    );
    assert!(copy.transact().root_refs().all(|(name, _)| name != "a"));
}

#[tokio::test]
async fn a_poisoned_stored_document_fails_to_open_and_others_open() {
    let store = Arc::new(MemoryStore::new());
    let poisoned = DocId::new("poisoned").expect("doc id");
    store
        .append(&poisoned, &update_with_text_of("before the poison"), &[])
        .await
        .expect("append");
    // Stored before the limits existed: decoding it would abort the server.
    store
        .append(&poisoned, &nested_any_update(100_000), &[])
        .await
        .expect("append");
    let (rooms, metrics) = rooms_with(store.clone(), config());
    let (sender, _inbox) = outbox(1024);
    let refused = rooms
        .join(poisoned.clone(), Guest::new("x", Access::Write), sender, 0)
        .await;
    assert!(matches!(refused, Err(JoinError::Unreadable)), "{refused:?}");
    assert_eq!(metrics.documents_unreadable.get(), 1);
    // The store is untouched (an operator may repair it), and other documents open.
    assert_eq!(store.load(&poisoned).await.expect("load").updates.len(), 2);
    let mut healthy = Client::join(&rooms, "healthy").await;
    healthy.receive().await;
    healthy.insert(0, "fine").await;
    assert!(
        rooms
            .apply_update(&poisoned, update_with_text_of("x"), "server")
            .await
            .is_err()
    );
}

fn update_with_text_of(text: &str) -> Vec<u8> {
    let doc = Doc::new();
    let body = doc.get_or_insert_text("body");
    let mut txn = doc.transact_mut();
    body.insert(&mut txn, 0, text);
    txn.encode_update_v1()
}

/// `count` updates of one author, each depending on the one before.
fn chain(doc: &Doc, count: usize, bytes: usize) -> Vec<Vec<u8>> {
    let body = doc.get_or_insert_text("body");
    (0..count)
        .map(|_| {
            let mut txn = doc.transact_mut();
            body.insert(&mut txn, 0, &"x".repeat(bytes));
            txn.encode_update_v1()
        })
        .collect()
}

fn is_sync_step1(message: &Message) -> bool {
    matches!(message, Message::Sync(SyncMessage::SyncStep1(_)))
}

#[tokio::test]
async fn a_client_with_a_gap_is_asked_for_what_is_missing() {
    let (rooms, _) = rooms_with(Arc::new(MemoryStore::new()), config());
    let mut alice = Client::join(&rooms, "gap").await;
    let mut bob = Client::join(&rooms, "gap").await;
    alice.receive().await;
    bob.receive().await;
    // Alice's second edit arrives without her first (a lost frame, a bug, a reconnect).
    let edits = chain(&alice.doc, 2, 3);
    alice.send(protocol::encode_update(&edits[1])).await;
    let asked = alice.receive().await;
    assert!(asked.iter().any(is_sync_step1), "{asked:?}");
    // Her provider answers the step 1 with everything the room lacks.
    let Some(Message::Sync(SyncMessage::SyncStep1(state_vector))) =
        asked.into_iter().find(is_sync_step1)
    else {
        unreachable!()
    };
    let reply = alice
        .doc
        .transact()
        .encode_state_as_update_v1(&state_vector);
    alice.send(protocol::encode_sync_step2(&reply)).await;
    bob.receive_until_text("xxxxxx").await;
}

#[tokio::test]
async fn a_client_sending_only_out_of_order_updates_is_closed_and_pending_dropped() {
    let config = RoomConfig {
        max_pending_updates: 20,
        max_pending_bytes: 1024 * 1024,
        ..config()
    };
    let (rooms, metrics) = rooms_with(Arc::new(MemoryStore::new()), config);
    let mut attacker = Client::join(&rooms, "pending").await;
    attacker.receive().await;
    let edits = chain(&attacker.doc, 40, 100);
    // Never the first: everything after it waits for it.
    for edit in &edits[1..] {
        attacker.send(protocol::encode_update(edit)).await;
    }
    attacker.inbox.close_requests().requested().await;
    assert_eq!(
        attacker.inbox.close_requests().take()[0].reason,
        CloseReason::TooManyPending
    );
    assert_eq!(metrics.pending_overflows.get(), 1);
    // What was pending is gone: the stored state holds none of it.
    let state = rooms
        .encode_state(&DocId::new("pending").expect("doc id"))
        .await
        .expect("state");
    assert!(state.len() < 200, "pending kept: {} bytes", state.len());
}

#[tokio::test]
async fn edits_typed_during_a_lock_merge_after_the_unlock() {
    let (rooms, _) = rooms_with(Arc::new(MemoryStore::new()), config());
    let doc = DocId::new("locked").expect("doc id");
    let mut teacher = Client::join_as(&rooms, "locked", Guest::new("t", Access::Write)).await;
    let mut student = Client::join_as(&rooms, "locked", Guest::new("s", Access::Write)).await;
    teacher.receive().await;
    student.receive().await;
    rooms
        .change_access(&doc, vec![("s".into(), AccessChange::Set(Access::Read))])
        .await;
    student.insert(0, "during ").await; // refused: read-only
    rooms
        .change_access(&doc, vec![("s".into(), AccessChange::Set(Access::Write))])
        .await;
    // The unlock asks the student for what the room lacks; its provider answers.
    let asked = student.receive().await;
    let Some(Message::Sync(SyncMessage::SyncStep1(state_vector))) =
        asked.into_iter().find(is_sync_step1)
    else {
        panic!("no sync step 1 after the unlock");
    };
    let reply = student
        .doc
        .transact()
        .encode_state_as_update_v1(&state_vector);
    student.send(protocol::encode_sync_step2(&reply)).await;
    student.insert(7, "after").await;
    teacher.receive_until_text("during after").await;
}

fn awareness_frame(entries: &[(u64, u32, &str)]) -> Bytes {
    let update = AwarenessUpdate {
        clients: entries
            .iter()
            .map(|(client, clock, json)| {
                (
                    yrs::ClientID::new(*client),
                    AwarenessUpdateEntry {
                        clock: *clock,
                        json: (*json).into(),
                    },
                )
            })
            .collect(),
    };
    protocol::encode_awareness(&update)
}

#[tokio::test(start_paused = true)]
async fn awareness_is_bounded_per_connection() {
    let (rooms, metrics) = rooms_with(Arc::new(MemoryStore::new()), config());
    let mut ann = Client::join(&rooms, "presence").await;
    let mut bob = Client::join(&rooms, "presence").await;
    let mut eve = Client::join(&rooms, "presence").await;
    for client in [&mut ann, &mut bob, &mut eve] {
        client.receive().await;
    }
    ann.send(awareness_frame(&[(1, 1, r#"{"name":"ann"}"#)]))
        .await;
    bob.receive().await;
    eve.receive().await;

    // Eve may neither overwrite nor remove ann's state: dropped, not relayed.
    eve.send(awareness_frame(&[(1, 2, r#"{"name":"phish"}"#)]))
        .await;
    eve.send(awareness_frame(&[(1, 3, "null")])).await;
    // Her own state still goes through (and shows the others were dropped, not queued).
    eve.send(awareness_frame(&[(3, 1, r#"{"name":"eve"}"#)]))
        .await;
    let seen = bob.receive().await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    let Message::Awareness(update) = &seen[0] else {
        panic!("{seen:?}")
    };
    assert_eq!(
        update.clients.keys().map(|c| c.get()).collect::<Vec<_>>(),
        [3]
    );
    assert_eq!(metrics.awareness_dropped.get(), 2);

    // Over the rate: the burst passes, the rest is dropped until tokens refill (time is
    // paused, so only the polling below lets a few refill).
    let burst = RoomConfig::default().awareness_burst;
    for clock in 2..burst + 40 {
        ann.send(awareness_frame(&[(1, clock, r#"{"name":"ann"}"#)]))
            .await;
    }
    wait_for(|| metrics.awareness_dropped.get() >= 2 + 30).await;

    // A thousand fake client ids, or one oversized state, close the connection.
    let fake: Vec<(u64, u32, &str)> = (100..1100).map(|id| (id, 1, "{}")).collect();
    eve.send(awareness_frame(&fake)).await;
    eve.inbox.close_requests().requested().await;
    assert_eq!(
        eve.inbox.close_requests().take()[0].reason,
        CloseReason::AwarenessLimit
    );
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(20 * 1024));
    bob.send(awareness_frame(&[(2, 1, &big)])).await;
    bob.inbox.close_requests().requested().await;
    assert_eq!(
        bob.inbox.close_requests().take()[0].reason,
        CloseReason::AwarenessLimit
    );
}

// Nested Yjs types: yrs deletes them recursively, so their depth is bounded in the document.

/// The author of the type chains: deleting its first item deletes a chain's root.
const CHAIN_AUTHOR: u64 = 99;

/// A v1 update creating, in root map "root", a chain of `depth` maps nested under key "k".
fn type_chain_update(depth: u32) -> Vec<u8> {
    let doc = Doc::with_client_id(CHAIN_AUTHOR);
    let root = doc.get_or_insert_map("root");
    let mut txn = doc.transact_mut();
    let mut map = root.insert(&mut txn, "k", MapPrelim::default());
    for _ in 1..depth {
        map = map.insert(&mut txn, "k", MapPrelim::default());
    }
    txn.encode_update_v1()
}

/// `update` (with an empty delete set) plus the deletion of the chain's root entry.
fn with_chain_root_deleted(update: &[u8]) -> Vec<u8> {
    assert_eq!(
        update.last(),
        Some(&0),
        "an empty delete set ends the update"
    );
    let mut bytes = update[..update.len() - 1].to_vec();
    // One client, one range: clock 0, length 1.
    bytes.extend_from_slice(&[1, CHAIN_AUTHOR as u8, 1, 0, 1]);
    bytes
}

/// Whether the room's root map "root" has a "k" entry.
async fn room_has_chain(rooms: &Rooms, doc: &str) -> bool {
    // Decoding and applying a (bounded) chain is safe; deleting is what recursed.
    let copy = room_doc(rooms, doc).await;
    let root = copy.get_or_insert_map("root");
    root.get(&copy.transact(), "k").is_some()
}

async fn assert_closed_invalid(client: &Client) {
    tokio::time::timeout(
        Duration::from_secs(10),
        client.inbox.close_requests().requested(),
    )
    .await
    .expect("closed within 10 s");
    assert_eq!(
        client.inbox.close_requests().take()[0].reason,
        CloseReason::InvalidMessage
    );
}

#[test]
fn a_type_chain_at_the_limit_fits_a_small_stack() {
    // Everything yrs does recursively with the deepest accepted chain, on a 256 KiB stack (an
    // eighth of a tokio worker's): apply, encode, reload, delete and collect, encode, drop.
    // (Measured in a debug build: 256 KiB overflows at 160 to 192 levels, 2 MiB at 1,536
    // to 1,792; see `DEFAULT_MAX_TYPE_DEPTH`.)
    let chain = type_chain_update(lectern_collab::DEFAULT_MAX_TYPE_DEPTH);
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let doc = Doc::new();
            let root = doc.get_or_insert_map("root");
            doc.transact_mut()
                .apply_update(Update::decode_v1(&chain).expect("decodes"))
                .expect("applies");
            let snapshot = doc
                .transact()
                .encode_state_as_update_v1(&StateVector::default());
            let reloaded = Doc::new();
            reloaded
                .transact_mut()
                .apply_update(Update::decode_v1(&snapshot).expect("snapshot decodes"))
                .expect("snapshot applies");
            root.remove(&mut doc.transact_mut(), "k").expect("deleted");
            let collected = doc
                .transact()
                .encode_state_as_update_v1(&StateVector::default());
            reloaded
                .transact_mut()
                .apply_update(Update::decode_v1(&collected).expect("decodes"))
                .expect("deletion applies");
            drop(doc);
            drop(reloaded);
        })
        .expect("thread")
        .join()
        .expect("no stack overflow");
}

#[tokio::test]
async fn a_deep_type_chain_is_refused_whole_or_with_its_deletion() {
    let (rooms, _) = rooms_with(Arc::new(MemoryStore::new()), config());
    let mut bystander = Client::join(&rooms, "chain").await;
    bystander.receive().await;
    // 10,000 levels in one ~80 KB update; then the same with the deletion of its root, which
    // aborted the server when applied.
    let chain = type_chain_update(10_000);
    for attack in [chain.clone(), with_chain_root_deleted(&chain)] {
        let mut attacker = Client::join(&rooms, "chain").await;
        attacker.receive().await;
        attacker.send(protocol::encode_update(&attack)).await;
        assert_closed_invalid(&attacker).await;
    }
    assert!(!room_has_chain(&rooms, "chain").await);
    bystander.insert(0, "still here").await;
    assert_eq!(room_text(&rooms, "chain").await, "still here");
}

#[tokio::test]
async fn a_type_chain_at_the_limit_is_accepted_with_its_deletion() {
    let (rooms, _) = rooms_with(Arc::new(MemoryStore::new()), config());
    let mut member = Client::join(&rooms, "at-limit").await;
    member.receive().await;
    let chain = type_chain_update(lectern_collab::DEFAULT_MAX_TYPE_DEPTH);
    member.send(protocol::encode_update(&chain)).await;
    wait_for_chain(&rooms, "at-limit", true).await;
    member
        .send(protocol::encode_update(&with_chain_root_deleted(&chain)))
        .await;
    wait_for_chain(&rooms, "at-limit", false).await;
    assert!(member.inbox.close_requests().take().is_empty());
}

async fn wait_for_chain(rooms: &Rooms, doc: &str, present: bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while room_has_chain(rooms, doc).await != present {
        assert!(
            tokio::time::Instant::now() < deadline,
            "chain never {present}"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_type_chain_built_one_level_per_update_is_refused_at_the_limit() {
    let limit = lectern_collab::DEFAULT_MAX_TYPE_DEPTH;
    let (rooms, _) = rooms_with(Arc::new(MemoryStore::new()), config());
    let mut builder = Client::join(&rooms, "levels").await;
    builder.receive().await;
    let author = Doc::with_client_id(CHAIN_AUTHOR);
    let root = author.get_or_insert_map("root");
    let (mut map, first) = {
        let mut txn = author.transact_mut();
        let map = root.insert(&mut txn, "k", MapPrelim::default());
        (map, txn.encode_update_v1())
    };
    builder.send(protocol::encode_update(&first)).await;
    for level in 2..=limit + 1 {
        let update = {
            let mut txn = author.transact_mut();
            map = map.insert(&mut txn, "k", MapPrelim::default());
            txn.encode_update_v1()
        };
        builder.send(protocol::encode_update(&update)).await;
        if level <= limit {
            assert!(builder.inbox.close_requests().take().is_empty(), "{level}");
        }
    }
    assert_closed_invalid(&builder).await;
    // Everything up to the limit is kept, and deleting it is safe.
    wait_for_chain(&rooms, "levels", true).await;
    let mut other = Client::join(&rooms, "levels").await;
    other.receive().await;
    other
        .send(protocol::encode_update(&[
            0,
            1,
            CHAIN_AUTHOR as u8,
            1,
            0,
            1,
        ]))
        .await;
    wait_for_chain(&rooms, "levels", false).await;
}

#[tokio::test]
async fn a_deletion_sent_before_a_deep_chain_never_deletes_it() {
    // The deletion arrives first and waits in yrs' pending delete set; the chain would be
    // deleted (recursively) the moment it integrated. It never integrates.
    let (rooms, _) = rooms_with(Arc::new(MemoryStore::new()), config());
    let mut attacker = Client::join(&rooms, "delete-first").await;
    attacker.receive().await;
    let deletion = with_chain_root_deleted(&[0, 0]);
    attacker.send(protocol::encode_update(&deletion)).await;
    attacker
        .send(protocol::encode_update(&type_chain_update(10_000)))
        .await;
    assert_closed_invalid(&attacker).await;
    // A chain within the limit after the same deletion integrates and is deleted, safely.
    let mut member = Client::join(&rooms, "delete-first").await;
    member.receive().await;
    member.send(protocol::encode_update(&deletion)).await;
    member
        .send(protocol::encode_update(&type_chain_update(
            lectern_collab::DEFAULT_MAX_TYPE_DEPTH,
        )))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let copy = room_doc(&rooms, "delete-first").await;
        // Integrated (the author's clock advanced) and deleted.
        if copy
            .transact()
            .state_vector()
            .get(&yrs::block::ClientID::new(CHAIN_AUTHOR))
            > 0
        {
            assert!(
                copy.get_or_insert_map("root")
                    .get(&copy.transact(), "k")
                    .is_none()
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "chain never integrated"
        );
        tokio::task::yield_now().await;
    }
    assert!(member.inbox.close_requests().take().is_empty());
}

#[tokio::test]
async fn a_type_after_a_gap_waits_for_the_gap() {
    let (rooms, _) = rooms_with(Arc::new(MemoryStore::new()), config());
    let mut author = Client::join(&rooms, "type-gap").await;
    let mut reader = Client::join(&rooms, "type-gap").await;
    author.receive().await;
    reader.receive().await;
    let chat = author.doc.get_or_insert_array("chat");
    let edits: Vec<Vec<u8>> = (0..2)
        .map(|_| {
            let mut txn = author.doc.transact_mut();
            chat.push_back(&mut txn, MapPrelim::default());
            txn.encode_update_v1()
        })
        .collect();
    // The second map names the first as its origin: its depth is unknown without it.
    author.send(protocol::encode_update(&edits[1])).await;
    let asked = author.receive().await;
    let Some(Message::Sync(SyncMessage::SyncStep1(state_vector))) =
        asked.into_iter().find(is_sync_step1)
    else {
        panic!("not asked for what is missing")
    };
    let reply = author
        .doc
        .transact()
        .encode_state_as_update_v1(&state_vector);
    author.send(protocol::encode_sync_step2(&reply)).await;
    let chat = reader.doc.get_or_insert_array("chat");
    while chat.len(&reader.doc.transact()) < 2 {
        reader.receive().await;
    }
    assert!(author.inbox.close_requests().take().is_empty());
}

#[tokio::test]
async fn real_nested_documents_and_a_wide_chat_still_work() {
    let (rooms, _) = rooms_with(Arc::new(MemoryStore::new()), config());
    let mut author = Client::join(&rooms, "real").await;
    let mut reader = Client::join(&rooms, "real").await;
    author.receive().await;
    reader.receive().await;
    // A y-prosemirror-like tree ten levels deep, and maps and arrays nested ten levels.
    let update = {
        let tree = author.doc.get_or_insert_xml_fragment("prosemirror");
        let data = author.doc.get_or_insert_map("data");
        let mut txn = author.doc.transact_mut();
        let mut element = tree.push_back(&mut txn, XmlElementPrelim::empty("blockquote"));
        for level in 2..10 {
            let name = if level % 2 == 0 {
                "bullet_list"
            } else {
                "list_item"
            };
            element = element.push_back(&mut txn, XmlElementPrelim::empty(name));
        }
        element.push_back(&mut txn, XmlTextPrelim::new("deep text"));
        let mut map = data.insert(&mut txn, "m", MapPrelim::default());
        for _ in 0..4 {
            let array = map.insert(&mut txn, "a", ArrayPrelim::default());
            map = array.push_back(&mut txn, MapPrelim::default());
        }
        map.insert(&mut txn, "leaf", "value");
        txn.encode_update_v1()
    };
    author.send(protocol::encode_update(&update)).await;
    // A chat of 5,000 messages, each a Y.Map appended in its own update.
    let chat = author.doc.get_or_insert_array("chat");
    let messages = 5_000;
    let started = std::time::Instant::now();
    for index in 0..messages {
        let update = {
            let mut txn = author.doc.transact_mut();
            let message = chat.push_back(&mut txn, MapPrelim::default());
            message.insert(&mut txn, "text", format!("message {index}"));
            txn.encode_update_v1()
        };
        author.send(protocol::encode_update(&update)).await;
    }
    let reader_chat = reader.doc.get_or_insert_array("chat");
    while reader_chat.len(&reader.doc.transact()) < messages {
        reader.receive().await;
    }
    eprintln!("{messages} chat appends applied in {:?}", started.elapsed());
    let tree = reader.doc.get_or_insert_xml_fragment("prosemirror");
    assert!(
        tree.get_string(&reader.doc.transact())
            .contains("deep text")
    );
    assert!(author.inbox.close_requests().take().is_empty());
}

#[tokio::test]
async fn a_stored_type_chain_over_the_limit_fails_to_open() {
    let store = Arc::new(MemoryStore::new());
    let deep = DocId::new("deep-types").expect("doc id");
    // Stored before the bound existed (the chain alone applied fine then).
    store
        .append(
            &deep,
            &type_chain_update(lectern_collab::DEFAULT_MAX_TYPE_DEPTH + 1),
            &[],
        )
        .await
        .expect("append");
    let (rooms, metrics) = rooms_with(store, config());
    let (sender, _inbox) = outbox(1024);
    let refused = rooms
        .join(deep, Guest::new("x", Access::Write), sender, 0)
        .await;
    assert!(matches!(refused, Err(JoinError::Unreadable)), "{refused:?}");
    assert_eq!(metrics.documents_unreadable.get(), 1);
}

/// A v1 update of client 7: one `Y.Map` item per origin, each after the given id.
fn maps_after(origins: &[(u64, u32)]) -> Vec<u8> {
    let mut encoder = EncoderV1::new();
    encoder.write_var(1u32); // one client
    encoder.write_var(origins.len() as u32);
    encoder.write_var(7u64); // client id
    encoder.write_var(0u32); // first clock
    for &(client, clock) in origins {
        encoder.write_u8(0x80 | 7); // has an origin; type content
        encoder.write_var(client);
        encoder.write_var(clock);
        encoder.write_u8(1); // Y.Map
    }
    encoder.write_var(0u32); // empty delete set
    encoder.to_vec()
}

#[tokio::test]
async fn types_whose_parents_form_a_cycle_are_refused() {
    let (rooms, _) = rooms_with(Arc::new(MemoryStore::new()), config());
    let mut attacker = Client::join(&rooms, "cycle").await;
    attacker.receive().await;
    // Each map says "same parent as the other".
    attacker
        .send(protocol::encode_update(&maps_after(&[(7, 1), (7, 0)])))
        .await;
    assert_closed_invalid(&attacker).await;
}

#[tokio::test]
async fn types_placed_after_too_many_document_items_are_refused() {
    // Placing a type after an item of the document walks that item's left siblings: an update
    // naming hundreds of origins would make each check cost a walk of the document.
    let (rooms, _) = rooms_with(Arc::new(MemoryStore::new()), config());
    let mut author = Client::join(&rooms, "lookups").await;
    author.receive().await;
    let list = author.doc.get_or_insert_array("a");
    let update = {
        let mut txn = author.doc.transact_mut();
        for value in 0..1100 {
            list.push_back(&mut txn, value);
        }
        txn.encode_update_v1()
    };
    author.send(protocol::encode_update(&update)).await;
    let client = author.doc.client_id().get();
    let mut attacker = Client::join(&rooms, "lookups").await;
    attacker.receive().await;
    let origins: Vec<(u64, u32)> = (0..1100).map(|clock| (client, clock)).collect();
    attacker
        .send(protocol::encode_update(&maps_after(&origins)))
        .await;
    assert_closed_invalid(&attacker).await;
    // A handful of places is fine.
    let update = {
        let mut txn = author.doc.transact_mut();
        for index in [10, 100, 200] {
            list.insert(&mut txn, index, MapPrelim::default());
        }
        txn.encode_update_v1()
    };
    author.send(protocol::encode_update(&update)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let copy = room_doc(&rooms, "lookups").await;
        if copy.get_or_insert_array("a").len(&copy.transact()) == 1103 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "maps never applied");
        tokio::task::yield_now().await;
    }
    assert!(author.inbox.close_requests().take().is_empty());
}

/// Found by fuzzing (`fuzz/regressions/sync_apply/pending-update-panics-encode`): an update
/// that passes every check and goes pending (its left origin is missing, its right origin
/// is a classmate's item). yrs re-encodes pending structs into bytes it cannot decode, so
/// encoding the state with pending structs merged in panicked, and the room died without
/// closing anyone: the next joiner never got its sync step 2.
const PENDING_THAT_PANICS_A_MERGE: &[u8] = &[
    0x01, 0x01, 0x01, 0x00, 0xe2, 0x63, 0x05, 0xff, 0xff, 0x8c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x0b, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x20, 0x72, 0x6c, 0x64, 0x00,
];

#[tokio::test]
async fn a_pending_update_yrs_cannot_merge_leaves_the_room_serving() {
    let (rooms, _) = rooms_with(Arc::new(MemoryStore::new()), config());
    // The classmate whose item the attacker's right origin names (client 212991, clock 0).
    let classmate = Client::join(&rooms, "pending-merge").await;
    let base = Doc::with_options(yrs::Options {
        client_id: yrs::ClientID::new(212_991),
        ..yrs::Options::default()
    });
    let base_update = {
        let text = base.get_or_insert_text("body");
        let mut txn = base.transact_mut();
        text.insert(&mut txn, 0, "x");
        txn.encode_update_v1()
    };
    classmate.send(protocol::encode_update(&base_update)).await;
    let attacker = Client::join(&rooms, "pending-merge").await;
    attacker
        .send(protocol::encode_update(PENDING_THAT_PANICS_A_MERGE))
        .await;
    // A joiner's sync step 2 and the snapshot at unload both encode the whole state.
    let mut joiner = Client::join(&rooms, "pending-merge").await;
    joiner.receive().await;
    joiner.insert(0, "still ").await;
    let copy = room_doc(&rooms, "pending-merge").await;
    // Two concurrent inserts at 0: Yjs orders them by client id.
    let text = copy.get_or_insert_text("body").get_string(&copy.transact());
    assert!(text == "still x" || text == "xstill ", "{text}");
    // The same room, not one reloaded after a failure that closed everyone.
    assert!(joiner.inbox.close_requests().take().is_empty());
    assert!(classmate.inbox.close_requests().take().is_empty());
}

/// Found by fuzzing: Yjs client ids are 53-bit; yrs asserts that in debug builds (a panic in
/// the room or the socket) and truncates in release builds (so `2^60 | id` posed as `id`).
#[test]
fn client_ids_wider_than_53_bits_are_refused_everywhere() {
    let wide = (1u64 << 60) | 7;
    let limits = UpdateLimits::default();
    // An update whose struct group is authored by the wide id.
    let mut update = EncoderV1::new();
    update.write_var(1u32); // one client group
    update.write_var(1u32); // one struct
    update.write_var(wide);
    update.write_var(0u32); // clock
    update.write_u8(10); // a skip struct
    update.write_var(1u32);
    update.write_var(0u32); // empty delete set
    assert!(matches!(
        check_update_v1(&update.to_vec(), &limits),
        Err(LimitError::ClientIdTooLarge(id)) if id == wide
    ));
    // A state vector (sync step 1) naming it.
    let mut state_vector = EncoderV1::new();
    state_vector.write_var(1u32);
    state_vector.write_var(wide);
    state_vector.write_var(3u32);
    assert!(matches!(
        lectern_collab::limits::check_state_vector_v1(&state_vector.to_vec()),
        Err(LimitError::ClientIdTooLarge(_))
    ));
    // An awareness state claiming it.
    let mut awareness = EncoderV1::new();
    awareness.write_var(1u32);
    awareness.write_var(wide);
    awareness.write_var(1u32);
    awareness.write_string("{}");
    assert!(matches!(
        lectern_collab::limits::check_awareness_v1(&awareness.to_vec()),
        Err(LimitError::ClientIdTooLarge(_))
    ));
    // The widest legal id still passes.
    let mut state_vector = EncoderV1::new();
    state_vector.write_var(1u32);
    state_vector.write_var((1u64 << 53) - 1);
    state_vector.write_var(3u32);
    lectern_collab::limits::check_state_vector_v1(&state_vector.to_vec()).expect("53-bit id");
}

/// Every input that once crashed a fuzz target (`fuzz/regressions/`), replayed here too so a
/// plain test run catches a regression without the fuzzer: each frame is decoded and each
/// update checked, then (when the check passes) applied, encoded and reloaded as a room
/// would. None may panic; an error is fine.
#[test]
fn inputs_that_crashed_the_fuzzers_are_handled() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions");
    let mut replayed = 0;
    for target in ["sync_frame", "sync_apply", "multiplexed", "awareness"] {
        let Ok(entries) = std::fs::read_dir(root.join(target)) else {
            continue;
        };
        for entry in entries {
            let bytes = std::fs::read(entry.expect("entry").path()).expect("read");
            replayed += 1;
            let _ = lectern_collab::limits::check_state_vector_v1(&bytes);
            let _ = lectern_collab::limits::check_awareness_v1(&bytes);
            // The input as an update, and every update a frame of it carries.
            let mut updates = vec![Bytes::from(bytes.clone())];
            if let Ok(messages) = protocol::decode_frame(&bytes) {
                for message in messages {
                    if let lectern_collab::ClientMessage::Update(payload) = message {
                        updates.push(payload);
                    }
                }
            }
            for bytes in updates {
                if check_update_v1(&bytes, &UpdateLimits::default()).is_err() {
                    continue;
                }
                let Ok(update) = Update::decode_v1(&bytes) else {
                    continue;
                };
                let doc = Doc::new();
                if doc.transact_mut().apply_update(update).is_err() {
                    continue;
                }
                let snapshot = doc.transact().encode_diff_v1(&yrs::StateVector::default());
                check_update_v1(&snapshot, &UpdateLimits::default()).expect("snapshot checks");
            }
        }
    }
    assert!(replayed >= 7, "regression inputs found: {replayed}");
}
