//! Room behaviour through the public API: real rooms, in-memory and failing stores, two
//! "nodes" joined by `LocalFanout`. No sockets: outboxes stand in for clients.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use lectern_collab::outbox::{OutboxReceiver, outbox};
use lectern_collab::protocol::{self, decode_frame};
use lectern_collab::store::{Edit, NewVersion, StoreError, StoredDoc};
use lectern_collab::{
    Access, AccessChange, CloseReason, CollabMetrics, DocId, Fanout, Guest, LocalFanout,
    Membership, MemoryStore, NodeId, RoomConfig, Rooms, Store,
};
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

mod hostile;
mod repair;

/// A test client: a yrs document, a membership and the outbox the room writes into.
struct Client {
    doc: Doc,
    membership: Membership,
    inbox: OutboxReceiver,
}

impl Client {
    async fn join(rooms: &Rooms, doc: &str) -> Self {
        Self::join_as(rooms, doc, Guest::new("someone", Access::Write)).await
    }

    async fn join_as(rooms: &Rooms, doc: &str, guest: Guest) -> Self {
        let (sender, inbox) = outbox(16 * 1024 * 1024);
        let membership = rooms
            .join(DocId::new(doc).expect("doc id"), guest, sender, 0)
            .await
            .expect("join");
        let client = Self {
            doc: Doc::new(),
            membership,
            inbox,
        };
        let state_vector = client.doc.transact().state_vector();
        client
            .send(protocol::encode_sync_step1(&state_vector))
            .await;
        client
    }

    async fn send(&self, frame: Bytes) {
        for message in decode_frame(&frame).expect("valid frame") {
            self.membership.send(message).await.expect("room alive");
        }
    }

    async fn insert(&self, index: u32, text: &str) {
        let update = {
            let body = self.doc.get_or_insert_text("body");
            let mut txn = self.doc.transact_mut();
            body.insert(&mut txn, index, text);
            txn.encode_update_v1()
        };
        self.send(protocol::encode_update(&update)).await;
    }

    fn text(&self) -> String {
        let body = self.doc.get_or_insert_text("body");
        body.get_string(&self.doc.transact())
    }

    /// Applies every frame the room has queued for this client (waiting for at least one).
    async fn receive(&mut self) -> Vec<Message> {
        let mut messages = Vec::new();
        let first = tokio::time::timeout(Duration::from_secs(5), self.inbox.recv())
            .await
            .expect("a frame within 5 s")
            .expect("outbox open");
        messages.push(self.apply(&first.payload));
        while let Some(item) = self.inbox.try_recv() {
            messages.push(self.apply(&item.payload));
        }
        messages
    }

    /// Receives until `text` is what the document says.
    async fn receive_until_text(&mut self, text: &str) {
        while self.text() != text {
            self.receive().await;
        }
    }

    fn apply(&self, frame: &[u8]) -> Message {
        let message = Message::decode_v1(frame).expect("server frame decodes");
        if let Message::Sync(SyncMessage::SyncStep2(update) | SyncMessage::Update(update)) =
            &message
        {
            let update = Update::decode_v1(update).expect("update decodes");
            self.doc
                .transact_mut()
                .apply_update(update)
                .expect("update applies");
        }
        message
    }
}

fn config() -> RoomConfig {
    RoomConfig {
        unload_grace: Duration::from_millis(50),
        ..RoomConfig::default()
    }
}

fn rooms_with(store: Arc<dyn Store>, config: RoomConfig) -> (Rooms, CollabMetrics) {
    let metrics = CollabMetrics::default();
    let rooms = Rooms::new(
        store,
        Arc::new(LocalFanout::new()),
        NodeId(1),
        config,
        metrics.clone(),
    );
    (rooms, metrics)
}

/// The room's document as it is now (the room must be loaded, or is loaded by asking).
async fn room_doc(rooms: &Rooms, doc: &str) -> Doc {
    let state = rooms
        .encode_state(&DocId::new(doc).expect("doc id"))
        .await
        .expect("room alive");
    let copy = Doc::new();
    copy.transact_mut()
        .apply_update(Update::decode_v1(&state).expect("decode"))
        .expect("apply");
    copy
}

async fn wait_for(mut condition: impl FnMut() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached within 5 s");
}

/// The text of the room's own copy of the document (not any client's).
async fn room_text(rooms: &Rooms, doc: &str) -> String {
    let copy = room_doc(rooms, doc).await;
    let body = copy.get_or_insert_text("body");
    body.get_string(&copy.transact())
}

#[tokio::test]
async fn two_clients_converge_and_the_sender_gets_no_echo() {
    let (rooms, _) = rooms_with(Arc::new(MemoryStore::new()), config());
    let mut alice = Client::join(&rooms, "notes").await;
    let mut bob = Client::join(&rooms, "notes").await;
    alice.receive().await; // step 1 + step 2 of the empty doc
    bob.receive().await;

    alice.insert(0, "hello").await;
    bob.receive_until_text("hello").await;
    bob.insert(5, " world").await;
    // Everything Alice receives from here on, up to Bob's edit. An echo of her own edit
    // would be queued before Bob's (the room handles them in that order), so it would be
    // among these; the check is on what she received, not on what is left in her inbox.
    let mut received = Vec::new();
    while alice.text() != "hello world" {
        received.extend(alice.receive().await);
    }
    let alice_id = alice.doc.client_id();
    for message in &received {
        if let Message::Sync(SyncMessage::SyncStep2(update) | SyncMessage::Update(update)) = message
        {
            let authors = Update::decode_v1(update).expect("decodes").state_vector();
            assert_eq!(
                authors.get(&alice_id),
                0,
                "Alice was sent her own edit back: {authors:?}"
            );
        }
    }
    assert!(alice.inbox.try_recv().is_none());
}

#[tokio::test]
async fn late_joiner_receives_full_state_shared_between_joiners() {
    let (rooms, _) = rooms_with(Arc::new(MemoryStore::new()), config());
    let writer = Client::join(&rooms, "big").await;
    writer.insert(0, &"x".repeat(100_000)).await;

    let mut payloads = Vec::new();
    for _ in 0..3 {
        let mut joiner = Client::join(&rooms, "big").await;
        let step2 = loop {
            let item = joiner.inbox.recv().await.expect("frame");
            if matches!(
                Message::decode_v1(&item.payload),
                Ok(Message::Sync(SyncMessage::SyncStep2(_)))
            ) {
                break item.payload;
            }
        };
        joiner.apply(&step2);
        assert_eq!(joiner.text().len(), 100_000);
        payloads.push(step2);
    }
    // One encoding of the document served every joiner: the same buffer, not copies.
    assert!(
        payloads
            .windows(2)
            .all(|pair| pair[0].as_ptr() == pair[1].as_ptr())
    );
}

#[tokio::test]
async fn awareness_is_relayed_and_removed_when_its_owner_leaves() {
    let (rooms, _) = rooms_with(Arc::new(MemoryStore::new()), config());
    let alice = Client::join(&rooms, "presence").await;
    let mut bob = Client::join(&rooms, "presence").await;
    bob.receive().await;

    let mut awareness = yrs::sync::Awareness::new(alice.doc.clone());
    awareness
        .set_local_state(serde_like_state())
        .expect("state");
    let update = awareness.update().expect("awareness update");
    alice.send(protocol::encode_awareness(&update)).await;

    let announced = loop {
        let messages = bob.receive().await;
        if let Some(Message::Awareness(update)) = messages
            .into_iter()
            .find(|message| matches!(message, Message::Awareness(_)))
        {
            break update;
        }
    };
    let client = alice.doc.client_id();
    assert!(announced.clients[&client].json.contains("alice"));

    alice.membership.leave().await;
    let removed = loop {
        let messages = bob.receive().await;
        if let Some(Message::Awareness(update)) = messages
            .into_iter()
            .find(|message| matches!(message, Message::Awareness(_)))
        {
            break update;
        }
    };
    assert_eq!(&*removed.clients[&client].json, "null");
}

fn serde_like_state() -> std::collections::HashMap<&'static str, &'static str> {
    std::collections::HashMap::from([("user", "alice")])
}

#[tokio::test]
async fn an_update_past_the_document_limit_is_refused_and_not_applied() {
    let config = RoomConfig {
        max_document_bytes: 1_000,
        ..config()
    };
    let (rooms, metrics) = rooms_with(Arc::new(MemoryStore::new()), config);
    let mut small = Client::join(&rooms, "limited").await;
    let big = Client::join(&rooms, "limited").await;
    small.receive().await;

    big.insert(0, &"y".repeat(5_000)).await;
    big.inbox.close_requests().requested().await;
    assert_eq!(
        big.inbox.close_requests().take()[0].reason,
        CloseReason::DocumentTooLarge
    );
    assert_eq!(metrics.messages_rejected.get(), 1);

    // The room carries on for everyone else, without the refused text.
    small.insert(0, "ok").await;
    let mut observer = Client::join(&rooms, "limited").await;
    observer.receive_until_text("ok").await;
}

#[tokio::test]
async fn idle_room_is_flushed_unloaded_and_reloads_the_same_content() {
    let store = Arc::new(MemoryStore::new());
    let (rooms, metrics) = rooms_with(store.clone(), config());
    let writer = Client::join(&rooms, "lifecycle").await;
    writer.insert(0, "persisted").await;
    let mut reader = Client::join(&rooms, "lifecycle").await;
    reader.receive_until_text("persisted").await;
    assert_eq!(metrics.rooms_loaded.get(), 1);
    assert_eq!(metrics.room_members.get(), 2);

    writer.membership.leave().await;
    reader.membership.leave().await;
    wait_for(|| rooms.loaded() == 0 && metrics.room_tasks.get() == 0).await;
    assert_eq!(metrics.rooms_loaded.get(), 0);
    assert_eq!(metrics.room_members.get(), 0);

    // Unloading compacted the log into a snapshot.
    let stored = store
        .load(&DocId::new("lifecycle").expect("doc id"))
        .await
        .expect("load");
    assert!(stored.snapshot.is_some());
    assert!(stored.updates.is_empty());

    let mut again = Client::join(&rooms, "lifecycle").await;
    again.receive_until_text("persisted").await;
}

#[tokio::test]
async fn log_is_compacted_after_the_configured_number_of_updates() {
    let store = Arc::new(MemoryStore::new());
    let config = RoomConfig {
        compact_after_updates: 5,
        ..config()
    };
    let (rooms, metrics) = rooms_with(store.clone(), config);
    let mut client = Client::join(&rooms, "compact").await;
    let mut observer = Client::join(&rooms, "compact").await;
    client.receive().await;
    for index in 0..12 {
        client.insert(index, "a").await;
        // One at a time, so each becomes its own log entry.
        observer
            .receive_until_text(&"a".repeat(index as usize + 1))
            .await;
    }
    assert_eq!(metrics.compactions.get(), 2);
    let stored = store
        .load(&DocId::new("compact").expect("doc id"))
        .await
        .expect("load");
    assert_eq!(stored.updates.len(), 2);
    assert!(stored.snapshot.is_some());
}

/// A store whose appends fail while `failing` is set, and whose next append panics once
/// `panic_next` is set (standing in for any bug inside a room's turn).
#[derive(Debug, Default)]
struct FlakyStore {
    inner: MemoryStore,
    failing: AtomicBool,
    panic_next: AtomicBool,
}

#[async_trait]
impl Store for FlakyStore {
    async fn load(&self, doc: &DocId) -> Result<StoredDoc, StoreError> {
        self.inner.load(doc).await
    }
    async fn append(&self, doc: &DocId, update: &[u8], edits: &[Edit]) -> Result<i64, StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("disk on fire".into()));
        }
        assert!(
            !self.panic_next.swap(false, Ordering::SeqCst),
            "a bug in the room"
        );
        self.inner.append(doc, update, edits).await
    }
    async fn save_version(&self, doc: &DocId, version: &NewVersion) -> Result<i64, StoreError> {
        self.inner.save_version(doc, version).await
    }
    async fn compact(&self, doc: &DocId, snapshot: &[u8], seq: i64) -> Result<(), StoreError> {
        self.inner.compact(doc, snapshot, seq).await
    }
}

#[tokio::test]
async fn store_failure_closes_the_room_without_serving_unsaved_state() {
    let store = Arc::new(FlakyStore::default());
    let (rooms, metrics) = rooms_with(store.clone(), config());
    let writer = Client::join(&rooms, "flaky").await;
    let mut watcher = Client::join(&rooms, "flaky").await;
    writer.insert(0, "saved ").await;
    watcher.receive_until_text("saved ").await;

    store.failing.store(true, Ordering::SeqCst);
    writer.insert(6, "lost?").await;
    watcher.inbox.close_requests().requested().await;
    assert_eq!(
        watcher.inbox.close_requests().take()[0].reason,
        CloseReason::StorageUnavailable
    );
    // The unsaved edit never reached the watcher: apply whatever the room queued for it
    // before closing it.
    while let Some(item) = watcher.inbox.try_recv() {
        watcher.apply(&item.payload);
    }
    assert_eq!(watcher.text(), "saved ");
    assert!(metrics.store_errors.get() >= 1);
    wait_for(|| rooms.loaded() == 0).await;

    // Once storage is back, the writer reconnects and its sync restores the edit.
    store.failing.store(false, Ordering::SeqCst);
    let (sender, _inbox) = outbox(1024 * 1024);
    let rejoined = rooms
        .join(
            DocId::new("flaky").expect("doc id"),
            Guest::new("someone", Access::Write),
            sender,
            0,
        )
        .await
        .expect("rejoin");
    let update = writer
        .doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    for message in decode_frame(&protocol::encode_sync_step2(&update)).expect("frame") {
        rejoined.send(message).await.expect("send");
    }
    let mut fresh = Client::join(&rooms, "flaky").await;
    fresh.receive_until_text("saved lost?").await;
}

#[tokio::test]
async fn rooms_on_two_nodes_share_updates_through_fanout() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let fanout: Arc<dyn Fanout> = Arc::new(LocalFanout::new());
    let node = |id| {
        Rooms::new(
            store.clone(),
            fanout.clone(),
            NodeId(id),
            config(),
            CollabMetrics::default(),
        )
    };
    let (first, second) = (node(1), node(2));
    let on_first = Client::join(&first, "shared").await;
    let mut on_second = Client::join(&second, "shared").await;
    on_first.insert(0, "across nodes").await;
    on_second.receive_until_text("across nodes").await;

    // Persisted once, by the node that received it.
    let stored = store
        .load(&DocId::new("shared").expect("doc id"))
        .await
        .expect("load");
    assert_eq!(stored.updates.len(), 1);
}

#[tokio::test]
async fn shutdown_closes_members_and_stops_every_room_task() {
    let (rooms, metrics) = rooms_with(Arc::new(MemoryStore::new()), config());
    let clients = [
        Client::join(&rooms, "a").await,
        Client::join(&rooms, "b").await,
    ];
    rooms.shutdown().await;
    assert_eq!(metrics.room_tasks.get(), 0);
    for client in &clients {
        assert_eq!(
            client.inbox.close_requests().take()[0].reason,
            CloseReason::ShuttingDown
        );
    }
    let (sender, _inbox) = outbox(1024);
    assert!(
        rooms
            .join(
                DocId::new("c").expect("doc id"),
                Guest::new("someone", Access::Write),
                sender,
                0
            )
            .await
            .is_err()
    );
}

#[tokio::test]
async fn malformed_frames_never_reach_a_room() {
    let store = Arc::new(MemoryStore::new());
    let (rooms, metrics) = rooms_with(store.clone(), config());
    let mut watcher = Client::join(&rooms, "guarded").await;
    watcher.receive().await;
    let sender = Client::join(&rooms, "guarded").await;

    // Each bad frame starts with a valid edit: a reader that passed on the messages before
    // the damage would let "graffiti" into the document.
    let graffiti = {
        let doc = Doc::new();
        let body = doc.get_or_insert_text("body");
        let mut txn = doc.transact_mut();
        body.insert(&mut txn, 0, "graffiti");
        txn.encode_update_v1()
    };
    let valid = protocol::encode_update(&graffiti).to_vec();
    let followed_by = |tail: &[u8]| [valid.as_slice(), tail].concat();
    let bad_frames = [
        followed_by(&valid[..valid.len() - 3]), // a second message cut short
        followed_by(&[0xff]),                   // a tag that never ends
        followed_by(&[7, 1, 0]),                // a message kind clients may not send
        followed_by(&[0, 9, 0]),                // an unknown sync message
        followed_by(&[0, 2, 200, 1, 2]),        // a length past the end of the frame
    ];
    for frame in &bad_frames {
        // What the transport does: a frame is delivered whole or not at all.
        match decode_frame(frame) {
            Ok(messages) => {
                for message in messages {
                    sender.membership.send(message).await.expect("room alive");
                }
            }
            Err(_) => continue, // the server closes the socket; nothing reaches the room
        }
    }
    // A well-formed frame whose update is garbage reaches the room, which refuses it and
    // closes its sender.
    sender
        .send(protocol::encode_update(&[0xff, 0xff, 0xff, 0x01, 0x02]))
        .await;
    tokio::time::timeout(
        Duration::from_secs(5),
        sender.inbox.close_requests().requested(),
    )
    .await
    .expect("the sender of a garbage update is closed");
    assert_eq!(
        sender.inbox.close_requests().take()[0].reason,
        CloseReason::InvalidMessage
    );
    assert_eq!(metrics.messages_rejected.get(), 1);

    // The room carries on, and holds only what was sent after.
    let writer = Client::join(&rooms, "guarded").await;
    writer.insert(0, "ok").await;
    while !watcher.text().contains("ok") {
        watcher.receive().await;
    }
    assert_eq!(room_text(&rooms, "guarded").await, "ok");
    assert_eq!(watcher.text(), "ok");
    let stored = store
        .load(&DocId::new("guarded").expect("doc id"))
        .await
        .expect("load");
    assert_eq!(stored.updates.len(), 1, "only the writer's edit was stored");
}

#[tokio::test]
async fn a_read_only_member_follows_but_its_edits_are_refused() {
    let (rooms, metrics) = rooms_with(Arc::new(MemoryStore::new()), config());
    let mut teacher = Client::join_as(&rooms, "lesson", Guest::new("teacher", Access::Write)).await;
    let mut student = Client::join_as(&rooms, "lesson", Guest::new("student", Access::Read)).await;
    teacher.receive().await;
    student.receive().await;

    student.insert(0, "graffiti").await;
    teacher.insert(0, "lesson plan").await;
    // The student follows the teacher (its own edit stays local to it)...
    while !student.text().contains("lesson plan") {
        student.receive().await;
    }
    assert!(student.text().contains("graffiti"));
    // The teacher got nothing from the student, and the room holds only the teacher's text.
    assert!(teacher.inbox.try_recv().is_none());
    assert_eq!(metrics.messages_rejected.get(), 1);
    assert_eq!(room_text(&rooms, "lesson").await, "lesson plan");
}

#[tokio::test]
async fn access_changes_address_users_and_can_close_them() {
    let (rooms, _) = rooms_with(Arc::new(MemoryStore::new()), config());
    let doc = DocId::new("class-notes").expect("doc id");
    let mut teacher = Client::join_as(&rooms, "class-notes", Guest::new("t", Access::Write)).await;
    let mut ann = Client::join_as(&rooms, "class-notes", Guest::new("ann", Access::Write)).await;
    let mut bob = Client::join_as(&rooms, "class-notes", Guest::new("bob", Access::Write)).await;
    for client in [&mut teacher, &mut ann, &mut bob] {
        client.receive().await;
    }
    let mut users: Vec<String> = rooms
        .users(&doc)
        .await
        .iter()
        .map(|u| u.to_string())
        .collect();
    users.sort();
    assert_eq!(users, ["ann", "bob", "t"]);

    // Lock: ann becomes read-only; bob is removed from the class.
    rooms
        .change_access(
            &doc,
            vec![
                ("ann".into(), AccessChange::Set(Access::Read)),
                ("bob".into(), AccessChange::Close(CloseReason::Forbidden)),
            ],
        )
        .await;
    bob.inbox.close_requests().requested().await;
    assert_eq!(
        bob.inbox.close_requests().take()[0].reason,
        CloseReason::Forbidden
    );

    ann.insert(0, "refused").await;
    teacher.insert(0, "kept").await;
    while !ann.text().contains("kept") {
        ann.receive().await;
    }
    assert_eq!(room_text(&rooms, "class-notes").await, "kept");
    assert!(
        teacher.inbox.try_recv().is_none(),
        "ann's edit reached the teacher"
    );
}

#[tokio::test]
async fn server_edits_are_stored_and_reach_every_member() {
    let store = Arc::new(MemoryStore::new());
    let (rooms, _) = rooms_with(store.clone(), config());
    let doc = DocId::new("ai-notes").expect("doc id");
    let mut watcher = Client::join(&rooms, "ai-notes").await;
    watcher.receive().await;

    let author = Doc::new();
    let update = {
        let body = author.get_or_insert_text("body");
        let mut txn = author.transact_mut();
        body.insert(&mut txn, 0, "written by the server");
        txn.encode_update_v1()
    };
    rooms
        .apply_update(&doc, update, "server")
        .await
        .expect("apply");
    watcher.receive_until_text("written by the server").await;
    assert_eq!(store.load(&doc).await.expect("load").updates.len(), 1);

    let garbage = rooms
        .apply_update(&doc, vec![0xff, 0xff, 0x01], "server")
        .await;
    assert!(matches!(
        garbage,
        Err(lectern_collab::RoomError::RefusedUpdate(_))
    ));
}

#[tokio::test]
async fn server_edits_build_on_the_current_state() {
    let (rooms, _) = rooms_with(Arc::new(MemoryStore::new()), config());
    let doc = DocId::new("focus").expect("doc id");
    let mut watcher = Client::join(&rooms, "focus").await;
    watcher.receive().await;
    watcher.insert(0, "typed by a person").await;
    for section in ["intro", "photosynthesis"] {
        rooms
            .edit(&doc, "server", move |txn| {
                let meta = yrs::WriteTxn::get_or_insert_map(txn, "meta");
                yrs::Map::insert(&meta, txn, "focus", section);
            })
            .await
            .expect("edit");
    }
    // The second write supersedes the first because it was made on top of it (a write from a
    // fresh document would be concurrent and could lose to the first). Wait until the
    // watcher has everything the room has, then look.
    let room_state = rooms.encode_state(&doc).await.expect("state");
    let room_version = Update::decode_v1(&room_state)
        .expect("decode")
        .state_vector();
    while watcher.doc.transact().state_vector() != room_version {
        watcher.receive().await;
    }
    let meta = watcher.doc.get_or_insert_map("meta");
    let focus = yrs::Map::get(&meta, &watcher.doc.transact(), "focus");
    assert!(
        matches!(&focus, Some(yrs::Out::Any(yrs::Any::String(value))) if &**value == "photosynthesis"),
        "focus is {focus:?}"
    );
    assert_eq!(watcher.text(), "typed by a person");
}

#[tokio::test]
async fn a_panicking_room_closes_its_clients_and_the_next_join_reloads_it() {
    let store = Arc::new(FlakyStore::default());
    let (rooms, metrics) = rooms_with(store.clone(), config());
    let writer = Client::join(&rooms, "panics").await;
    let mut watcher = Client::join(&rooms, "panics").await;
    writer.insert(0, "saved ").await;
    watcher.receive_until_text("saved ").await;

    store.panic_next.store(true, Ordering::SeqCst);
    writer.insert(6, "lost?").await;
    // Not left connected to a dead room that never answers: closed, so they reconnect.
    tokio::time::timeout(
        Duration::from_secs(10),
        watcher.inbox.close_requests().requested(),
    )
    .await
    .expect("closed, not left hanging");
    assert_eq!(
        watcher.inbox.close_requests().take()[0].reason,
        CloseReason::RoomFailed
    );
    assert_eq!(metrics.room_panics.get(), 1);
    wait_for(|| rooms.loaded() == 0).await;
    let mut again = Client::join(&rooms, "panics").await;
    again.receive_until_text("saved ").await;
}

#[tokio::test]
async fn activity_versions_are_kept_for_members_edits_not_for_the_servers_own() {
    let store = Arc::new(MemoryStore::new());
    let config = RoomConfig {
        // Every edit is "a while" after the last version.
        version_interval: Some(Duration::ZERO),
        ..config()
    };
    let (rooms, _) = rooms_with(store.clone(), config);
    let doc = DocId::new("history").expect("doc id");
    // What only the server writes (session state, an inbox) is nobody's work.
    rooms
        .edit(&doc, lectern_collab::SERVER_AUTHOR, |txn| {
            use yrs::{Map as _, WriteTxn as _};
            txn.get_or_insert_map("state").insert(txn, "phase", "live");
        })
        .await
        .expect("server edit");
    let writer = Client::join(&rooms, "history").await;
    writer.insert(0, "typed by a member").await;
    // The member's version holds their text (versions are written in the background).
    let has_text = |snapshot: &[u8]| {
        let copy = Doc::new();
        copy.transact_mut()
            .apply_update(Update::decode_v1(snapshot).expect("decodes"))
            .expect("applies");
        let text = copy.get_or_insert_text("body").get_string(&copy.transact());
        text == "typed by a member"
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !store
        .versions(&doc)
        .iter()
        .any(|version| has_text(&version.snapshot))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no activity version kept"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let versions = store.versions(&doc);
    assert_eq!(
        versions.len(),
        1,
        "one for the member's edit, none for the server's"
    );
    assert_eq!(versions[0].reason, lectern_collab::VersionReason::Activity);
}
