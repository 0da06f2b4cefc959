//! Hostile WebSocket clients against a real `lectern` process: nested values that used to
//! overflow the stack, a poisoned stored document, out-of-order update floods, awareness
//! floods, and edits typed during a lock.
//!
//! Crash cases run the server as a child process (a stack overflow aborts the whole process,
//! which would take the test binary with it in-process) and check it is still serving
//! afterwards. `LECTERN_HOSTILE_BIN` runs them against another binary, for example the build
//! from before the fixes, to watch them fail.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use yrs::encoding::read::{Cursor, Read};
use yrs::encoding::write::Write;
use yrs::sync::awareness::AwarenessUpdateEntry;
use yrs::sync::{AwarenessUpdate, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::{Encode, Encoder, EncoderV1};
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

use lectern_collab::{DocId, Store};

use crate::api::{self, Api};
use crate::support::{Client, close_code, connect, send_binary};

/// A `lectern serve` child process.
struct Server {
    child: Child,
    address: String,
}

fn binary() -> PathBuf {
    std::env::var_os("LECTERN_HOSTILE_BIN")
        .filter(|bin| !bin.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_lectern")))
}

impl Server {
    /// Starts `lectern serve` on 127.0.0.1:0 storing under `data_dir`, anonymous sockets
    /// getting `anonymous` access.
    async fn start(data_dir: &Path, anonymous: &str) -> Self {
        let models = lectern_ai::testing::models_dir();
        let mut child = Command::new(binary())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--anonymous-access",
                anonymous,
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--models-dir")
            .arg(models.path())
            .env("LECTERN_LOG_FORMAT", "json")
            .env("LECTERN_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn lectern");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let find = async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if entry["fields"]["message"] == "lectern listening" {
                    return entry["fields"]["address"].as_str().map(str::to_owned);
                }
            }
            None
        };
        let address = tokio::time::timeout(Duration::from_secs(60), find)
            .await
            .expect("listening within 60 s")
            .expect("lectern exited before listening");
        // Keep draining its logs, or a full pipe would block the server.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { child, address }
    }

    fn ws(&self, path: &str) -> String {
        format!("ws://{}{path}", self.address)
    }

    fn status(&self, field: &str) -> u64 {
        let pid = self.child.id().expect("server still running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{field}:")))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("field in /proc status")
    }

    /// Peak resident memory so far, in MiB.
    fn peak_rss_mib(&self) -> u64 {
        self.status("VmHWM") / 1024
    }

    /// The process is alive and a fresh client gets its sync step 1 on another document.
    async fn assert_serving(&mut self) {
        let mut socket = connect(&self.ws("/ws/another-class")).await;
        let first = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a frame within 10 s");
        assert!(
            matches!(first, Some(Ok(Message::Binary(_)))),
            "no sync step 1: {first:?}"
        );
        assert!(
            self.child.try_wait().expect("wait").is_none(),
            "the server died"
        );
    }

    async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A v1 update with one item of `Any` content in root array "a": `depth` nested arrays
/// around a null. 12,000 levels is the ~24 KB frame that aborted the server.
fn nested_any_update(depth: usize) -> Vec<u8> {
    let mut encoder = EncoderV1::new();
    encoder.write_var(1u32); // one client
    encoder.write_var(1u32); // one struct
    encoder.write_var(7u64); // client id
    encoder.write_var(0u32); // clock
    encoder.write_u8(8); // item with Any content, parent by name
    encoder.write_var(1u32);
    encoder.write_string("a");
    encoder.write_var(1u32); // one value
    for _ in 0..depth {
        encoder.write_u8(117); // an array...
        encoder.write_var(1u32); // ...of one element
    }
    encoder.write_u8(126); // null
    encoder.write_var(0u32); // empty delete set
    encoder.to_vec()
}

fn update_frame(update: &[u8]) -> Vec<u8> {
    y_message(SyncMessage::Update(update.to_vec()))
}

fn y_message(sync: SyncMessage) -> Vec<u8> {
    yrs::sync::Message::Sync(sync).encode_v1()
}

/// Reads multiplexed frames until `doc` is reported closed; returns its close code.
async fn doc_closed_code(socket: &mut Client, doc: &str) -> u16 {
    let wait = async {
        while let Some(message) = socket.next().await {
            let Ok(Message::Binary(frame)) = message else {
                panic!("socket ended instead: {message:?}");
            };
            let mut cursor = Cursor::new(&frame);
            let name = cursor.read_string().expect("prefix").to_owned();
            if name == doc && cursor.read_u8().ok() == Some(101) {
                return cursor.read_var::<u16>().expect("code");
            }
        }
        panic!("socket ended before the document was closed");
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("closed within 10 s")
}

#[tokio::test]
async fn nested_values_close_only_the_sender_on_every_endpoint() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut server = Server::start(data.path(), "write").await;
    let attack = update_frame(&nested_any_update(12_000));
    assert!(attack.len() < 25_000);

    // y-websocket endpoint.
    let mut bystander = connect(&server.ws("/ws/notes")).await;
    let mut attacker = connect(&server.ws("/ws/notes")).await;
    send_binary(&mut attacker, attack.clone()).await;
    assert_eq!(close_code(&mut attacker).await, Some(1007));
    server.assert_serving().await;

    // Multiplexed endpoint: the document is closed with 1007 on the socket.
    let mut multiplexed = connect(&server.ws("/ws")).await;
    let mut frame = Vec::new();
    frame.write_string("notes");
    frame.extend_from_slice(&attack);
    send_binary(&mut multiplexed, frame).await;
    assert_eq!(doc_closed_code(&mut multiplexed, "notes").await, 1007);
    server.assert_serving().await;

    // The bystander was never disturbed: its socket still answers.
    send_binary(
        &mut bystander,
        y_message(SyncMessage::SyncStep1(StateVector::default())),
    )
    .await;
    let next = tokio::time::timeout(Duration::from_secs(10), bystander.next())
        .await
        .expect("bystander answered");
    assert!(matches!(next, Some(Ok(Message::Binary(_)))), "{next:?}");
    server.kill().await;

    // A read-only member's bytes are never decoded, and hostile ones still close it.
    let mut server = Server::start(data.path(), "read").await;
    let mut reader = connect(&server.ws("/ws/notes")).await;
    send_binary(&mut reader, attack).await;
    assert_eq!(close_code(&mut reader).await, Some(1007));
    server.assert_serving().await;
    server.kill().await;
}

#[tokio::test]
async fn a_poisoned_stored_document_fails_to_open_and_others_open() {
    let data = tempfile::tempdir().expect("temp dir");
    // Create the database, then plant a document stored before the limits existed.
    Server::start(data.path(), "write").await.kill().await;
    let url = format!("sqlite://{}", data.path().join("lectern.db").display());
    let database = lectern_db::Database::connect(&url).await.expect("database");
    let store =
        lectern_db::documents::SqlDocumentStore::new(database, lectern_db::Retention::default());
    let poisoned = DocId::new("poisoned").expect("doc id");
    store
        .append(&poisoned, &nested_any_update(50_000), &[])
        .await
        .expect("plant");
    drop(store);

    let mut server = Server::start(data.path(), "write").await;
    let mut socket = connect(&server.ws("/ws/poisoned")).await;
    assert_eq!(close_code(&mut socket).await, Some(1011));
    server.assert_serving().await;
    // Again: refused each time, never a crash.
    let mut socket = connect(&server.ws("/ws/poisoned")).await;
    assert_eq!(close_code(&mut socket).await, Some(1011));
    server.assert_serving().await;
    server.kill().await;
}

#[tokio::test]
async fn out_of_order_floods_are_closed_and_memory_stays_bounded() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut server = Server::start(data.path(), "write").await;
    let mut attacker = connect(&server.ws("/ws/pending")).await;
    let doc = Doc::new();
    let body = doc.get_or_insert_text("body");
    let chunk = "x".repeat(256 * 1024);
    // Skip the first edit: every later one waits for it, forever.
    body.insert(&mut doc.transact_mut(), 0, &chunk);
    let mut closed = None;
    for _ in 0..400 {
        let update = {
            let mut txn = doc.transact_mut();
            body.insert(&mut txn, 0, &chunk);
            txn.encode_update_v1()
        };
        if attacker
            .send(Message::Binary(update_frame(&update).into()))
            .await
            .is_err()
        {
            break;
        }
        // Stop as soon as the server has had enough.
        if let Ok(Some(Ok(Message::Close(frame)))) =
            tokio::time::timeout(Duration::from_millis(1), drain_until_close(&mut attacker)).await
        {
            closed = frame.map(|frame| u16::from(frame.code));
            break;
        }
    }
    let peak = server.peak_rss_mib();
    eprintln!("out-of-order flood: peak RSS {peak} MiB");
    let closed = match closed {
        Some(code) => Some(code),
        None => close_code(&mut attacker).await,
    };
    assert_eq!(closed, Some(4429));
    assert!(peak < 100, "peak RSS {peak} MiB");
    server.assert_serving().await;
    server.kill().await;
}

/// Reads frames until a close arrives (other frames are skipped).
async fn drain_until_close(
    socket: &mut Client,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Close(frame))) => return Some(Ok(Message::Close(frame))),
            Some(Ok(_)) => continue,
            other => return other,
        }
    }
}

#[tokio::test]
async fn awareness_floods_from_a_read_only_member_are_closed() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut server = Server::start(data.path(), "read").await;
    let mut watcher = connect(&server.ws("/ws/presence")).await;
    let mut flooder = connect(&server.ws("/ws/presence")).await;
    let state: std::sync::Arc<str> = format!(r#"{{"pad":"{}"}}"#, "x".repeat(10_000)).into();
    let flood = AwarenessUpdate {
        clients: (1000..2000)
            .map(|id| {
                (
                    yrs::ClientID::new(id),
                    AwarenessUpdateEntry {
                        clock: 1,
                        json: state.clone(),
                    },
                )
            })
            .collect(),
    };
    let frame = yrs::sync::Message::Awareness(flood).encode_v1();
    let before = server.peak_rss_mib();
    // Ten messages of 1,000 fake ids × 10 KB; the first one closes the socket now.
    for _ in 0..10 {
        if flooder
            .send(Message::Binary(frame.clone().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let code = tokio::time::timeout(Duration::from_secs(10), drain_until_close(&mut flooder))
        .await
        .ok()
        .flatten()
        .and_then(|message| match message {
            Ok(Message::Close(frame)) => frame.map(|frame| u16::from(frame.code)),
            _ => None,
        });
    eprintln!(
        "awareness flood: peak RSS {before} -> {} MiB",
        server.peak_rss_mib()
    );
    assert_eq!(code, Some(1008));
    // The watcher got the room's hello, never the flood.
    let mut received = 0;
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout(Duration::from_millis(200), watcher.next()).await
    {
        received += message.len();
    }
    assert!(received < 100_000, "{received} bytes relayed");
    server.assert_serving().await;
    server.kill().await;
}

/// A client that behaves like a y-websocket provider: answers sync step 1 with what the
/// server lacks, applies what it receives.
struct Provider {
    socket: Client,
    doc: Doc,
}

impl Provider {
    async fn open(api: &Api, doc_id: &str, token: &str) -> Self {
        let socket = connect(&api.server().ws(&format!("/ws/{doc_id}?token={token}"))).await;
        Self {
            socket,
            doc: Doc::new(),
        }
    }

    async fn insert(&mut self, index: u32, text: &str) {
        let body = self.doc.get_or_insert_text("body");
        let update = {
            let mut txn = self.doc.transact_mut();
            body.insert(&mut txn, index, text);
            txn.encode_update_v1()
        };
        send_binary(&mut self.socket, update_frame(&update)).await;
    }

    fn text(&self) -> String {
        let body = self.doc.get_or_insert_text("body");
        body.get_string(&self.doc.transact())
    }

    /// Handles frames until `done` holds after one; panics after 10 s.
    async fn pump_until(&mut self, mut done: impl FnMut(&Self, bool) -> bool) {
        let pump = async {
            loop {
                let frame = match self.socket.next().await {
                    Some(Ok(Message::Binary(frame))) => frame,
                    Some(Ok(Message::Close(frame))) => panic!("closed: {frame:?}"),
                    Some(Ok(_)) => continue,
                    other => panic!("socket ended: {other:?}"),
                };
                let mut answered_step1 = false;
                match yrs::sync::Message::decode_v1(&frame) {
                    Ok(yrs::sync::Message::Sync(SyncMessage::SyncStep1(state_vector))) => {
                        let diff = self.doc.transact().encode_state_as_update_v1(&state_vector);
                        let reply = y_message(SyncMessage::SyncStep2(diff));
                        send_binary(&mut self.socket, reply).await;
                        answered_step1 = true;
                    }
                    Ok(yrs::sync::Message::Sync(
                        SyncMessage::SyncStep2(update) | SyncMessage::Update(update),
                    )) => {
                        let update = Update::decode_v1(&update).expect("update");
                        self.doc.transact_mut().apply_update(update).expect("apply");
                    }
                    _ => {}
                }
                if done(self, answered_step1) {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), pump)
            .await
            .expect("condition within 10 s");
    }
}

#[tokio::test]
async fn edits_typed_during_a_lock_reach_the_class_after_the_unlock() {
    let api = api::sqlite(|_| {}).await;
    let teacher = api.register("teacher@example.edu", "faculty").await;
    let (_, classroom) = api
        .post(
            "/classrooms",
            Some(&teacher.access),
            json!({"name": "Biology"}),
        )
        .await;
    let student = api.register("student@example.edu", "student").await;
    api.post(
        "/classrooms/join",
        Some(&student.access),
        json!({"join_code": classroom["join_code"]}),
    )
    .await;
    let classroom_id = classroom["id"].as_str().expect("classroom id");
    let (_, session) = api
        .post(
            &format!("/classrooms/{classroom_id}/sessions"),
            Some(&teacher.access),
            json!({}),
        )
        .await;
    let id = session["id"].as_str().expect("session id").to_owned();
    let notes = format!("session/{id}/notes");

    let mut teacher_doc = Provider::open(&api, &notes, &teacher.access).await;
    let mut student_doc = Provider::open(&api, &notes, &student.access).await;
    for provider in [&mut teacher_doc, &mut student_doc] {
        provider.pump_until(|_, answered| answered).await;
    }
    student_doc.insert(0, "before ").await;
    teacher_doc
        .pump_until(|doc, _| doc.text() == "before ")
        .await;

    api.post(
        &format!("/sessions/{id}/lock"),
        Some(&teacher.access),
        json!({}),
    )
    .await;
    student_doc.insert(7, "during ").await; // refused by the room, kept by the client
    api.post(
        &format!("/sessions/{id}/unlock"),
        Some(&teacher.access),
        json!({}),
    )
    .await;
    // The unlock asks the student's client for what the room lacks.
    student_doc.pump_until(|_, answered| answered).await;
    student_doc.insert(14, "after").await;
    teacher_doc
        .pump_until(|doc, _| doc.text() == "before during after")
        .await;
    api.stop().await;
}

/// A v1 update creating, in root map "root", a chain of `depth` maps nested under key "k",
/// authored by client 99, followed by the deletion of the chain's root entry.
fn type_chain_with_deletion(depth: u32) -> Vec<u8> {
    use yrs::{Map, MapPrelim};
    let doc = Doc::with_client_id(99);
    let root = doc.get_or_insert_map("root");
    let mut txn = doc.transact_mut();
    let mut map = root.insert(&mut txn, "k", MapPrelim::default());
    for _ in 1..depth {
        map = map.insert(&mut txn, "k", MapPrelim::default());
    }
    let mut update = txn.encode_update_v1();
    // Replace the empty delete set: one client (99), one range (clock 0, length 1).
    assert_eq!(update.pop(), Some(0));
    update.extend_from_slice(&[1, 99, 1, 0, 1]);
    update
}

#[tokio::test]
async fn deep_type_chains_close_the_sender_and_the_server_survives() {
    // yrs deletes nested types recursively: deleting a 10,000-level chain of maps (one ~80 KB
    // update) aborted the whole server.
    let data = tempfile::tempdir().expect("temp dir");
    let mut server = Server::start(data.path(), "write").await;
    let attack = update_frame(&type_chain_with_deletion(10_000));
    let mut bystander = connect(&server.ws("/ws/chain")).await;
    let mut attacker = connect(&server.ws("/ws/chain")).await;
    send_binary(&mut attacker, attack).await;
    assert_eq!(close_code(&mut attacker).await, Some(1007));
    server.assert_serving().await;
    // The bystander's socket still answers.
    send_binary(
        &mut bystander,
        y_message(SyncMessage::SyncStep1(StateVector::default())),
    )
    .await;
    let next = tokio::time::timeout(Duration::from_secs(10), bystander.next())
        .await
        .expect("bystander answered");
    assert!(matches!(next, Some(Ok(Message::Binary(_)))), "{next:?}");
    server.kill().await;
}
