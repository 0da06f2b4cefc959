//! Live AI jobs through the real server: a local OpenAI-compatible SSE server (real HTTP,
//! real event-stream framing) stands in for the model, and Rust y-sync clients watch the
//! documents the jobs stream into. One test runs the real local ONNX model end to end.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{StatusCode as AxumStatus, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt as _;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use yrs::encoding::read::{Cursor, Read};
use yrs::encoding::write::Write;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Array, Doc, GetString, Map, Out, StateVector, Text, Transact, Update, WriteTxn};

use lectern::config::AiBackendKind;
use lectern_library::testing as fixtures;
use yrs::types::ToJson;

use crate::api::{Api, Session, code, sqlite};
use crate::support::{Client, TestServer, connect};

/// How the fake model answers.
#[derive(Debug, Clone)]
pub(crate) enum Script {
    /// These tokens, `gap` apart, then finish with this usage.
    Tokens {
        tokens: Vec<String>,
        gap: Duration,
        prompt_tokens: u32,
    },
    /// 500 Internal Server Error.
    Fail500,
    /// A few tokens, then the connection breaks.
    BreakAfter(usize),
}

/// A local OpenAI-compatible server: `POST /v1/chat/completions` with SSE streaming.
pub(crate) struct FakeModel {
    base_url: String,
    pub(crate) requests: Arc<AtomicUsize>,
}

pub(crate) async fn fake_model(script: Script) -> FakeModel {
    fake_model_seq(vec![script]).await
}

/// A fake model answering the n-th request with `scripts[n]` (the last one from then on).
pub(crate) async fn fake_model_seq(scripts: Vec<Script>) -> FakeModel {
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let scripts = Arc::new(scripts);
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |_body: Bytes| {
            let scripts = scripts.clone();
            let counter = counter.clone();
            async move {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                respond(scripts[n.min(scripts.len() - 1)].clone())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    FakeModel {
        base_url: format!("http://{address}/v1"),
        requests,
    }
}

fn chunk(content: &str) -> Bytes {
    let data = json!({
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}],
    });
    Bytes::from(format!("data: {data}\n\n"))
}

fn respond(script: Script) -> Response {
    let (parts, gap, fail_at_end): (Vec<Bytes>, Duration, bool) = match script {
        Script::Fail500 => {
            return (AxumStatus::INTERNAL_SERVER_ERROR, "model crashed").into_response();
        }
        Script::Tokens {
            tokens,
            gap,
            prompt_tokens,
        } => {
            let mut parts: Vec<Bytes> = tokens.iter().map(|token| chunk(token)).collect();
            let finish = json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
            parts.push(Bytes::from(format!("data: {finish}\n\n")));
            let usage = json!({"choices": [], "usage": {
                "prompt_tokens": prompt_tokens, "completion_tokens": tokens.len()}});
            parts.push(Bytes::from(format!("data: {usage}\n\n")));
            parts.push(Bytes::from_static(b"data: [DONE]\n\n"));
            (parts, gap, false)
        }
        Script::BreakAfter(count) => (
            (0..count)
                .map(|index| chunk(&format!("part{index} ")))
                .collect(),
            Duration::from_millis(10),
            true,
        ),
    };
    let body = futures_util::stream::unfold(
        (parts.into_iter(), true, fail_at_end),
        move |(mut parts, first, fail)| async move {
            // A zero sleep still waits for the 1 ms timer wheel: skip it.
            if !first && !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            match parts.next() {
                Some(part) => Some((Ok::<_, std::io::Error>(part), (parts, false, fail))),
                None if fail => Some((
                    Err(std::io::Error::other("scripted disconnect")),
                    (parts, false, false),
                )),
                None => None,
            }
        },
    );
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        Body::from_stream(body),
    )
        .into_response()
}

pub(crate) fn tokens(text: &str) -> Vec<String> {
    text.split_inclusive(' ').map(str::to_owned).collect()
}

const ANSWER: &str = "The electron transport chain sits in the inner membrane of the \
                      mitochondrion [1], where it pumps protons to drive ATP synthase [1].";

fn answering(gap_ms: u64) -> Script {
    Script::Tokens {
        tokens: tokens(ANSWER),
        gap: Duration::from_millis(gap_ms),
        prompt_tokens: 40,
    }
}

pub(crate) async fn openai_server(model: &FakeModel, adjust: impl Fn(&mut lectern::Config)) -> Api {
    let base_url = model.base_url.clone();
    sqlite(move |config| {
        config.ai_backend = AiBackendKind::Openai;
        config.ai_base_url = Some(base_url.clone());
        config.ai_model = Some("fake-model".into());
        // The tests poll job status quickly; the REST limit is not what they check.
        config.rate_limit_burst = 10_000;
        adjust(config);
    })
    .await
}

/// A classroom with a live session, a teacher, a student and an outsider.
pub(crate) struct Class {
    pub(crate) id: String,
    pub(crate) session: String,
    pub(crate) teacher: Session,
    pub(crate) student: Session,
    outsider: Session,
}

pub(crate) async fn class(api: &Api) -> Class {
    let class = crate::materials::class(api).await;
    let (status, body) = api
        .post(
            &format!("/classrooms/{}/sessions", class.id),
            Some(&class.teacher.access),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let session = body["id"].as_str().expect("session id").to_owned();
    Class {
        id: class.id,
        session,
        teacher: class.teacher,
        student: class.student,
        outsider: class.outsider,
    }
}

/// Uploads the three-page cells PDF and waits until it is searchable; returns its id.
pub(crate) async fn upload_cells(api: &Api, class: &Class) -> String {
    let token = class.teacher.access.as_str();
    let pdf = fixtures::pdf(&crate::materials::CELL_PAGES);
    let (status, body) = crate::materials::upload(api, &class.id, token, "cells.pdf", pdf).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["id"].as_str().expect("id").to_owned();
    crate::materials::ready(api, token, &id).await;
    id
}

pub(crate) async fn start_job(
    api: &Api,
    class: &Class,
    token: &str,
    body: Value,
) -> (StatusCode, Value) {
    api.post(
        &format!("/sessions/{}/ai/jobs", class.session),
        Some(token),
        body,
    )
    .await
}

pub(crate) async fn start_ok(api: &Api, class: &Class, token: &str, body: Value) -> Value {
    let (status, job) = start_job(api, class, token, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["status"], "queued");
    job
}

/// Polls a job until it is over; returns it.
pub(crate) async fn finished(api: &Api, token: &str, job_id: &str) -> Value {
    for _ in 0..1200 {
        let (status, job) = api.get(&format!("/ai/jobs/{job_id}"), Some(token)).await;
        assert_eq!(status, StatusCode::OK, "{job}");
        if matches!(
            job["status"].as_str(),
            Some("done" | "failed" | "cancelled")
        ) {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("job {job_id} never finished");
}

/// A y-sync client holding a replica of one document; every update it receives bumps a
/// counter that tests wait on.
pub(crate) struct Watcher {
    pub(crate) doc: Doc,
    updates: tokio::sync::watch::Receiver<usize>,
    sink: SplitSink<Client, Message>,
    replies: tokio::sync::mpsc::UnboundedReceiver<Value>,
}

impl Watcher {
    pub(crate) async fn open(server: &TestServer, doc_id: &str, token: &str) -> Self {
        let socket = connect(&server.ws(&format!("/ws/{doc_id}?token={token}"))).await;
        let (mut sink, mut stream) = socket.split();
        let step1 =
            yrs::sync::Message::Sync(yrs::sync::SyncMessage::SyncStep1(StateVector::default()));
        sink.send(Message::Binary(step1.encode_v1().into()))
            .await
            .expect("send step 1");
        let doc = Doc::new();
        let (counter, updates) = tokio::sync::watch::channel(0);
        let (reply_sender, replies) = tokio::sync::mpsc::unbounded_channel();
        let replica = doc.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Message::Binary(bytes) = message else {
                    continue;
                };
                if bytes.first() == Some(&103) {
                    let mut cursor = Cursor::new(&bytes[1..]);
                    let json = cursor.read_string().expect("reply json");
                    let _ = reply_sender.send(serde_json::from_str(json).expect("json"));
                    continue;
                }
                let update = match yrs::sync::Message::decode_v1(&bytes) {
                    Ok(yrs::sync::Message::Sync(
                        yrs::sync::SyncMessage::SyncStep2(update)
                        | yrs::sync::SyncMessage::Update(update),
                    )) => update,
                    _ => continue,
                };
                let update = Update::decode_v1(&update).expect("update");
                replica.transact_mut().apply_update(update).expect("apply");
                counter.send_modify(|count| *count += 1);
            }
        });
        Self {
            doc,
            updates,
            sink,
            replies,
        }
    }

    /// Waits until `check` holds on the replica (re-checked after every update).
    pub(crate) async fn until<T>(&mut self, mut check: impl FnMut(&Doc) -> Option<T>) -> T {
        let wait = async {
            loop {
                if let Some(value) = check(&self.doc) {
                    return value;
                }
                self.updates.changed().await.expect("socket open");
            }
        };
        tokio::time::timeout(Duration::from_secs(120), wait)
            .await
            .expect("condition within 120 s")
    }

    /// Edits the replica and sends the change to the server.
    pub(crate) async fn edit(&mut self, edit: impl FnOnce(&mut yrs::TransactionMut<'_>)) {
        let update = {
            let mut txn = self.doc.transact_mut();
            edit(&mut txn);
            txn.encode_update_v1()
        };
        let message = yrs::sync::Message::Sync(yrs::sync::SyncMessage::Update(update));
        self.sink
            .send(Message::Binary(message.encode_v1().into()))
            .await
            .expect("send update");
    }

    async fn send_raw(&mut self, bytes: Vec<u8>) {
        self.sink
            .send(Message::Binary(bytes.into()))
            .await
            .expect("send");
    }
}

/// The chat messages as JSON.
pub(crate) fn messages(doc: &Doc) -> Vec<Value> {
    let array = doc.get_or_insert_array("messages");
    let txn = doc.transact();
    let any = array.to_json(&txn);
    serde_json::to_value(&any)
        .ok()
        .and_then(|value| value.as_array().cloned())
        .unwrap_or_default()
}

/// The assistant message of job `job_id`.
pub(crate) fn answer(doc: &Doc, job_id: &str) -> Option<Value> {
    messages(doc)
        .into_iter()
        .find(|message| message["job_id"] == job_id && message["role"] == "assistant")
}

pub(crate) fn notes_text(doc: &Doc) -> String {
    let text = doc.get_or_insert_text("content");
    let txn = doc.transact();
    text.get_string(&txn)
}

pub(crate) fn lectern_doc(class: &Class) -> String {
    format!("session/{}/lectern", class.session)
}

/// The Yjs item id of every chat message map, by (job id, role).
fn message_ids(doc: &Doc) -> std::collections::HashMap<(String, String), yrs::ID> {
    let array = doc.get_or_insert_array("messages");
    let txn = doc.transact();
    array
        .iter(&txn)
        .filter_map(|value| match value {
            Out::YMap(map) => {
                let field = |key| match map.get(&txn, key) {
                    Some(Out::Any(yrs::Any::String(text))) => text.to_string(),
                    _ => String::new(),
                };
                let branch: &yrs::branch::Branch = map.as_ref();
                match branch.id() {
                    yrs::branch::BranchID::Nested(id) => {
                        Some(((field("job_id"), field("role")), id))
                    }
                    yrs::branch::BranchID::Root(_) => None,
                }
            }
            _ => None,
        })
        .collect()
}

pub(crate) fn chat_doc(class: &Class) -> String {
    format!("session/{}/chat", class.session)
}

pub(crate) fn notes_doc(class: &Class) -> String {
    format!("session/{}/notes", class.session)
}

#[tokio::test]
async fn a_chat_answer_streams_into_the_shared_chat_with_citations_on_both_clients() {
    let model = fake_model(answering(15)).await;
    let api = openai_server(&model, |_| {}).await;
    let class = class(&api).await;
    let material = upload_cells(&api, &class).await;
    let mut teacher = Watcher::open(api.server(), &chat_doc(&class), &class.teacher.access).await;
    let mut student = Watcher::open(api.server(), &chat_doc(&class), &class.student.access).await;

    let job = start_ok(
        &api,
        &class,
        &class.student.access,
        json!({"kind": "chat", "prompt": "Where is the electron transport chain?"}),
    )
    .await;
    let job_id = job["job_id"].as_str().expect("job id").to_owned();
    assert_eq!(job["doc_id"], chat_doc(&class));

    // The question first, then the answer growing: several distinct partial texts.
    let mut partials = std::collections::BTreeSet::new();
    let done = teacher
        .until(|doc| {
            let message = answer(doc, &job_id)?;
            partials.insert(message["text"].as_str().unwrap_or_default().to_owned());
            (message["status"] == "done").then_some(message)
        })
        .await;
    assert!(partials.len() >= 4, "several partial updates: {partials:?}");
    assert_eq!(done["text"], ANSWER);
    assert_eq!(done["author"], "ai");
    let all = messages(&teacher.doc);
    let question = all
        .iter()
        .position(|message| message["role"] == "user" && message["job_id"] == job_id)
        .expect("question");
    let reply = all
        .iter()
        .position(|message| message["role"] == "assistant" && message["job_id"] == job_id)
        .expect("answer");
    assert!(question < reply, "the question comes first: {all:?}");
    assert_eq!(all[question]["author"], class.student.user_id);

    let citations = done["citations"].as_array().expect("citations");
    assert!(!citations.is_empty());
    assert_eq!(citations[0]["material_id"], material);
    assert_eq!(citations[0]["file_name"], "cells.pdf");
    assert_eq!(
        citations[0]["page"], 3.0,
        "the passage's page: {citations:?}"
    );

    let seen_by_student = student
        .until(|doc| answer(doc, &job_id).filter(|message| message["status"] == "done"))
        .await;
    assert_eq!(seen_by_student, done, "both clients converge");

    // The AI's items carry a client id the server registered in the session's `lectern`
    // document, with the clock range the job wrote: the answer's map is the AI's by its
    // item id, the question (the server's, for the student) is not.
    let mut registry =
        Watcher::open(api.server(), &lectern_doc(&class), &class.student.access).await;
    let lectern = registry
        .until(|doc| {
            let lectern = map_json(doc, "lectern");
            (lectern["ai_jobs"][&job_id]["status"] == "done").then_some(lectern)
        })
        .await;
    let entry = &lectern["ai_jobs"][&job_id];
    assert_eq!(entry["doc_id"], chat_doc(&class), "{lectern}");
    let client_id = entry["client_id"].as_f64().expect("client id") as u64;
    let clock = entry["clock"].as_f64().expect("clock") as u32;
    assert_eq!(
        lectern["ai_clients"][client_id.to_string()],
        json!({"job_id": job_id, "kind": "chat", "doc_id": chat_doc(&class)}),
        "{lectern}"
    );
    let ids = message_ids(&teacher.doc);
    let answer_id = ids[&(job_id.clone(), "assistant".to_owned())];
    let question_id = ids[&(job_id.clone(), "user".to_owned())];
    assert_eq!(
        answer_id.client.get(),
        client_id,
        "the answer is the AI's item"
    );
    assert!(
        answer_id.clock < clock,
        "within the recorded range: {answer_id:?} {clock}"
    );
    assert_ne!(question_id.client.get(), client_id);
    assert_eq!(
        map_json(&teacher.doc, "lectern"),
        json!({}),
        "nothing server-owned is written into the chat any more"
    );

    let job = finished(&api, &class.student.access, &job_id).await;
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(job["completion_tokens"], tokens(ANSWER).len());
    assert_eq!(job["cached"], false);
    api.stop().await;
}

#[tokio::test]
async fn a_student_writing_under_a_running_jobs_client_id_is_refused() {
    use yrs::ReadTxn as _;
    // Slow enough that the job is still streaming when the forger acts.
    let model = fake_model(answering(250)).await;
    let api = openai_server(&model, |_| {}).await;
    let class = class(&api).await;
    upload_cells(&api, &class).await;
    let mut registry =
        Watcher::open(api.server(), &lectern_doc(&class), &class.student.access).await;
    let mut chat = Watcher::open(api.server(), &chat_doc(&class), &class.student.access).await;
    let job = start_ok(
        &api,
        &class,
        &class.teacher.access,
        json!({"kind": "chat", "prompt": "Where is the electron transport chain?"}),
    )
    .await;
    let job_id = job["job_id"].as_str().expect("job id").to_owned();
    let client_id = registry
        .until(|doc| map_json(doc, "lectern")["ai_jobs"][&job_id]["client_id"].as_f64())
        .await as u64;
    // The student takes the job's next ids: a replica under the AI's client id, caught up
    // with the room, writes a message of its own.
    chat.until(|doc| answer(doc, &job_id)).await;
    let forged = {
        let replica = Doc::with_client_id(client_id);
        let state = chat
            .doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        let mut txn = replica.transact_mut();
        txn.apply_update(Update::decode_v1(&state).expect("state"))
            .expect("apply");
        let before = txn.state_vector();
        let messages = txn.get_or_insert_array("messages");
        messages.push_back(
            &mut txn,
            yrs::MapPrelim::from_iter([
                ("id", yrs::In::from("forged")),
                ("role", yrs::In::from("assistant")),
                ("author", yrs::In::from("ai")),
            ]),
        );
        txn.encode_diff_v1(&before)
    };
    let mut forger = connect(&api.server().ws(&format!(
        "/ws/{}?token={}",
        chat_doc(&class),
        class.student.access
    )))
    .await;
    let message = yrs::sync::Message::Sync(yrs::sync::SyncMessage::Update(forged));
    crate::support::send_binary(&mut forger, message.encode_v1()).await;
    assert_eq!(
        crate::support::close_code(&mut forger).await,
        Some(1008),
        "an update with a running job's client id is refused"
    );

    // The job is unharmed: its whole answer lands, and the forged message does not.
    let job = finished(&api, &class.teacher.access, &job_id).await;
    assert_eq!(job["status"], "done", "{job}");
    let mut teacher = Watcher::open(api.server(), &chat_doc(&class), &class.teacher.access).await;
    let done = teacher
        .until(|doc| answer(doc, &job_id).filter(|message| message["status"] == "done"))
        .await;
    assert_eq!(done["text"], ANSWER);
    assert!(
        messages(&teacher.doc)
            .iter()
            .all(|message| message["id"] != "forged"),
        "{:?}",
        messages(&teacher.doc)
    );
    api.stop().await;
}

#[tokio::test]
async fn notes_stream_into_the_shared_text_and_a_human_edit_during_streaming_survives() {
    let model = fake_model(Script::Tokens {
        tokens: tokens(
            "## Cells\n- Cells are the basic unit of life.\n- New cells come from cells.\n",
        ),
        gap: Duration::from_millis(20),
        prompt_tokens: 30,
    })
    .await;
    let api = openai_server(&model, |_| {}).await;
    let class = class(&api).await;
    upload_cells(&api, &class).await;
    let mut teacher = Watcher::open(api.server(), &notes_doc(&class), &class.teacher.access).await;
    let mut student = Watcher::open(api.server(), &notes_doc(&class), &class.student.access).await;
    // Notes a human wrote before.
    student
        .edit(|txn| {
            let text = txn.get_or_insert_text("content");
            text.insert(txn, 0, "Intro by the class.");
        })
        .await;
    teacher
        .until(|doc| (notes_text(doc) == "Intro by the class.").then_some(()))
        .await;

    let job = start_ok(
        &api,
        &class,
        &class.teacher.access,
        json!({"kind": "notes"}),
    )
    .await;
    let job_id = job["job_id"].as_str().expect("job").to_owned();
    assert_eq!(job["doc_id"], notes_doc(&class));
    // While the AI writes, a student edits the top of the same text.
    student
        .until(|doc| notes_text(doc).contains("Cells").then_some(()))
        .await;
    student
        .edit(|txn| {
            let text = txn.get_or_insert_text("content");
            text.insert(txn, 0, "HUMAN ");
        })
        .await;
    let job = finished(&api, &class.teacher.access, &job_id).await;
    assert_eq!(job["status"], "done", "{job}");
    let expected = "HUMAN Intro by the class.\n\n## Cells\n- Cells are the basic unit of life.\n- New cells come from cells.\n";
    let text = teacher
        .until(|doc| (notes_text(doc) == expected).then(|| notes_text(doc)))
        .await;
    let on_student = student
        .until(|doc| (notes_text(doc) == expected).then(|| notes_text(doc)))
        .await;
    assert_eq!(text, on_student);

    // AI text carries the `ai` attribute; the human's does not.
    let delta = {
        let text = teacher.doc.get_or_insert_text("content");
        let txn = teacher.doc.transact();
        text.diff(&txn, yrs::types::text::YChange::identity)
    };
    let marked: String = delta
        .iter()
        .filter(|chunk| {
            chunk
                .attributes
                .as_ref()
                .is_some_and(|attrs| attrs.get("ai").is_some_and(|v| v.to_string() == job_id))
        })
        .map(|chunk| match &chunk.insert {
            Out::Any(yrs::Any::String(text)) => text.to_string(),
            _ => String::new(),
        })
        .collect();
    assert!(marked.contains("## Cells"), "{delta:?}");
    assert!(!marked.contains("HUMAN") && !marked.contains("Intro"));
    api.stop().await;
}

#[tokio::test]
async fn qa_answers_from_the_notes_into_the_chat() {
    let model = fake_model(Script::Tokens {
        tokens: tokens("From the notes: cells come from cells."),
        gap: Duration::from_millis(5),
        prompt_tokens: 20,
    })
    .await;
    let api = openai_server(&model, |_| {}).await;
    let class = class(&api).await;
    let (status, body) = start_job(
        &api,
        &class,
        &class.student.access,
        json!({"kind": "qa", "prompt": "Where do cells come from?"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let empty = finished(
        &api,
        &class.student.access,
        body["job_id"].as_str().expect("id"),
    )
    .await;
    assert_eq!(empty["status"], "failed");
    assert!(
        empty["error"]
            .as_str()
            .expect("reason")
            .contains("notes are empty")
    );

    let mut notes = Watcher::open(api.server(), &notes_doc(&class), &class.teacher.access).await;
    notes
        .edit(|txn| {
            let text = txn.get_or_insert_text("content");
            text.insert(txn, 0, "New cells arise only from existing cells.");
        })
        .await;
    let mut chat = Watcher::open(api.server(), &chat_doc(&class), &class.student.access).await;
    // The server has the edit once another client sees it.
    Watcher::open(api.server(), &notes_doc(&class), &class.student.access)
        .await
        .until(|doc| (!notes_text(doc).is_empty()).then_some(()))
        .await;
    let job = start_ok(
        &api,
        &class,
        &class.student.access,
        json!({"kind": "qa", "prompt": "Where do cells come from?"}),
    )
    .await;
    let job_id = job["job_id"].as_str().expect("id").to_owned();
    assert_eq!(job["doc_id"], chat_doc(&class));
    let message = chat
        .until(|doc| answer(doc, &job_id).filter(|message| message["status"] == "done"))
        .await;
    assert_eq!(message["text"], "From the notes: cells come from cells.");
    api.stop().await;
}

#[tokio::test]
async fn cancelling_mid_stream_keeps_the_partial_text() {
    let model = fake_model(Script::Tokens {
        tokens: (0..400).map(|index| format!("w{index} ")).collect(),
        gap: Duration::from_millis(10),
        prompt_tokens: 10,
    })
    .await;
    let api = openai_server(&model, |_| {}).await;
    let class = class(&api).await;
    upload_cells(&api, &class).await;
    let mut chat = Watcher::open(api.server(), &chat_doc(&class), &class.teacher.access).await;
    let job = start_ok(
        &api,
        &class,
        &class.teacher.access,
        json!({"kind": "chat", "prompt": "Tell me everything about cells"}),
    )
    .await;
    let job_id = job["job_id"].as_str().expect("id").to_owned();
    chat.until(|doc| {
        answer(doc, &job_id).filter(|message| message["text"].as_str().unwrap_or("").len() > 20)
    })
    .await;
    // Someone else may not cancel it.
    let (status, _) = api
        .post(
            &format!("/ai/jobs/{job_id}/cancel"),
            Some(&class.student.access),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = api
        .post(
            &format!("/ai/jobs/{job_id}/cancel"),
            Some(&class.teacher.access),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let job = finished(&api, &class.teacher.access, &job_id).await;
    assert_eq!(job["status"], "cancelled", "{job}");
    let message = chat
        .until(|doc| answer(doc, &job_id).filter(|message| message["status"] == "cancelled"))
        .await;
    let text = message["text"].as_str().expect("text");
    assert!(text.starts_with("w0 w1 "), "{text}");
    assert!(!text.contains("w399"), "stopped early: {text}");
    api.stop().await;
}

#[tokio::test]
async fn two_concurrent_jobs_into_the_chat_do_not_garble_each_other() {
    let model = fake_model(answering(10)).await;
    let api = openai_server(&model, |_| {}).await;
    let class = class(&api).await;
    upload_cells(&api, &class).await;
    let mut chat = Watcher::open(api.server(), &chat_doc(&class), &class.student.access).await;
    let first = start_ok(
        &api,
        &class,
        &class.teacher.access,
        json!({"kind": "chat", "prompt": "Where is the electron transport chain?"}),
    )
    .await;
    let second = start_ok(
        &api,
        &class,
        &class.student.access,
        json!({"kind": "chat", "prompt": "What does the transport chain drive?"}),
    )
    .await;
    // A human chats in between.
    chat.edit(|txn| {
        let messages = txn.get_or_insert_array("messages");
        messages.push_back(
            txn,
            yrs::MapPrelim::from_iter([("role", yrs::In::from("user")), ("id", "human".into())]),
        );
    })
    .await;
    for job in [&first, &second] {
        let job_id = job["job_id"].as_str().expect("id").to_owned();
        let message = chat
            .until(|doc| answer(doc, &job_id).filter(|message| message["status"] == "done"))
            .await;
        assert_eq!(message["text"], ANSWER, "each answer whole and alone");
    }
    let all = messages(&chat.doc);
    assert_eq!(
        all.len(),
        5,
        "2 questions, 2 answers, 1 human message: {all:?}"
    );
    assert_eq!(
        model.requests.load(Ordering::SeqCst),
        2,
        "different questions"
    );
    api.stop().await;
}

#[tokio::test]
async fn an_identical_request_over_identical_sources_is_answered_from_the_cache() {
    let model = fake_model(answering(1)).await;
    let api = openai_server(&model, |_| {}).await;
    let class = class(&api).await;
    upload_cells(&api, &class).await;
    let mut chat = Watcher::open(api.server(), &chat_doc(&class), &class.teacher.access).await;
    let request = json!({"kind": "chat", "prompt": "Where is the electron transport chain?"});
    let mut texts = Vec::new();
    for round in 0..2 {
        let job = start_ok(&api, &class, &class.teacher.access, request.clone()).await;
        let job_id = job["job_id"].as_str().expect("id").to_owned();
        let job = finished(&api, &class.teacher.access, &job_id).await;
        assert_eq!(job["status"], "done");
        assert_eq!(job["cached"], round == 1, "{job}");
        let message = chat
            .until(|doc| answer(doc, &job_id).filter(|message| message["status"] == "done"))
            .await;
        assert!(
            !message["citations"]
                .as_array()
                .expect("citations")
                .is_empty()
        );
        texts.push(message["text"].clone());
    }
    assert_eq!(texts[0], texts[1]);
    assert_eq!(
        model.requests.load(Ordering::SeqCst),
        1,
        "the model was asked once"
    );
    api.stop().await;
}

#[tokio::test]
async fn a_spent_daily_budget_refuses_new_jobs_with_its_own_code() {
    let model = fake_model(answering(1)).await;
    let api = openai_server(&model, |config| config.ai_classroom_daily_tokens = 50).await;
    let class = class(&api).await;
    upload_cells(&api, &class).await;
    let job = start_ok(
        &api,
        &class,
        &class.teacher.access,
        json!({"kind": "chat", "prompt": "Where is the electron transport chain?"}),
    )
    .await;
    let job = finished(
        &api,
        &class.teacher.access,
        job["job_id"].as_str().expect("id"),
    )
    .await;
    assert_eq!(job["status"], "done");
    let (status, body) = start_job(
        &api,
        &class,
        &class.student.access,
        json!({"kind": "chat", "prompt": "Anything else?"}),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(code(&body), "ai_budget_exhausted");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("50 tokens")
    );
    api.stop().await;
}

#[tokio::test]
async fn each_user_has_an_ai_rate_limit_of_their_own() {
    let model = fake_model(answering(1)).await;
    let api = openai_server(&model, |config| config.ai_jobs_per_minute = 1).await;
    let class = class(&api).await;
    upload_cells(&api, &class).await;
    let question = json!({"kind": "chat", "prompt": "Where is the electron transport chain?"});
    start_ok(&api, &class, &class.student.access, question.clone()).await;
    let (status, body) = start_job(&api, &class, &class.student.access, question.clone()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(code(&body), "rate_limited");
    // Another user of the same class (behind the same school NAT) is not held up.
    start_ok(&api, &class, &class.teacher.access, question).await;
    api.stop().await;
}

#[tokio::test]
async fn a_failing_backend_fails_the_job_visibly_and_the_server_carries_on() {
    for (script, expected) in [
        (Script::Fail500, "500"),
        (Script::BreakAfter(3), "connection"),
    ] {
        let partial = matches!(script, Script::BreakAfter(_));
        let model = fake_model(script).await;
        let api = openai_server(&model, |_| {}).await;
        let class = class(&api).await;
        upload_cells(&api, &class).await;
        let mut chat = Watcher::open(api.server(), &chat_doc(&class), &class.teacher.access).await;
        let job = start_ok(
            &api,
            &class,
            &class.teacher.access,
            json!({"kind": "chat", "prompt": "Where is the electron transport chain?"}),
        )
        .await;
        let job_id = job["job_id"].as_str().expect("id").to_owned();
        let job = finished(&api, &class.teacher.access, &job_id).await;
        assert_eq!(job["status"], "failed", "{job}");
        let reason = job["error"].as_str().expect("reason");
        assert!(reason.contains(expected), "{reason}");
        let message = chat
            .until(|doc| answer(doc, &job_id).filter(|message| message["status"] == "failed"))
            .await;
        assert_eq!(message["error"], reason);
        if partial {
            assert!(
                message["text"]
                    .as_str()
                    .expect("text")
                    .starts_with("part0 ")
            );
        }
        // Realtime collaboration is unaffected.
        chat.edit(|txn| {
            txn.get_or_insert_text("scratch")
                .insert(txn, 0, "still here");
        })
        .await;
        let (status, _) = api
            .get(
                &format!("/sessions/{}", class.session),
                Some(&class.student.access),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        api.stop().await;
    }
}

#[tokio::test]
async fn only_permitted_users_start_jobs() {
    let model = fake_model(answering(1)).await;
    let api = openai_server(&model, |_| {}).await;
    let class = class(&api).await;
    let chat = json!({"kind": "chat", "prompt": "Hello?"});
    let (status, body) = start_job(&api, &class, &class.outsider.access, chat.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    for kind in ["quiz", "exam", "lesson_plan", "flashcards"] {
        let (status, body) = start_job(
            &api,
            &class,
            &class.student.access,
            json!({"kind": kind, "prompt": "cells"}),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{kind}: {body}");
    }
    let (status, body) = start_job(
        &api,
        &class,
        &class.student.access,
        json!({"kind": "translate", "language": "French"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) =
        start_job(&api, &class, &class.student.access, json!({"kind": "chat"})).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a chat needs a question: {body}"
    );
    let (status, _) = api
        .post(
            "/sessions/nope/ai/jobs",
            Some(&class.teacher.access),
            chat.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api.get("/ai/jobs/nope", Some(&class.teacher.access)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Locked: students read only, so they may not start chat jobs; faculty still may.
    let (status, _) = api
        .post(
            &format!("/sessions/{}/lock", class.session),
            Some(&class.teacher.access),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = start_job(&api, &class, &class.student.access, chat.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    api.stop().await;
}

#[tokio::test]
async fn an_unprepared_local_model_answers_503_saying_how_to_fix_it() {
    let empty = tempfile::tempdir().expect("temp dir");
    let models_dir = empty.path().to_path_buf();
    let api = sqlite(move |config| {
        config.ai_backend = AiBackendKind::Local;
        config.models_dir = Some(models_dir.clone());
        config.prepare_models = false;
    })
    .await;
    let class = class(&api).await;
    let (status, body) = start_job(
        &api,
        &class,
        &class.teacher.access,
        json!({"kind": "qa", "prompt": "What did we cover?"}),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(code(&body), "ai_unavailable");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("prepare-models"), "{message}");
    api.stop().await;
}

#[tokio::test]
async fn without_a_backend_ai_answers_503_and_collaboration_works() {
    let api = sqlite(|config| config.ai_backend = AiBackendKind::Off).await;
    let class = class(&api).await;
    let (status, body) = start_job(
        &api,
        &class,
        &class.teacher.access,
        json!({"kind": "chat", "prompt": "Hello?"}),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(code(&body), "ai_unavailable");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("--ai-backend")
    );
    let mut a = Watcher::open(api.server(), &notes_doc(&class), &class.teacher.access).await;
    let mut b = Watcher::open(api.server(), &notes_doc(&class), &class.student.access).await;
    a.edit(|txn| txn.get_or_insert_text("content").insert(txn, 0, "works"))
        .await;
    b.until(|doc| (notes_text(doc) == "works").then_some(()))
        .await;
    api.stop().await;
}

#[tokio::test]
async fn jobs_start_over_the_websocket_with_a_control_message() {
    let model = fake_model(answering(1)).await;
    let api = openai_server(&model, |_| {}).await;
    let class = class(&api).await;
    upload_cells(&api, &class).await;
    let mut chat = Watcher::open(api.server(), &chat_doc(&class), &class.student.access).await;
    let request = |json: Value| {
        let mut bytes = Vec::new();
        bytes.write_var(102_u32);
        bytes.write_string(&json.to_string());
        bytes
    };
    chat.send_raw(request(json!({
        "request_id": 1, "action": "start", "session_id": class.session,
        "kind": "chat", "prompt": "Where is the electron transport chain?"
    })))
    .await;
    let reply = tokio::time::timeout(Duration::from_secs(30), chat.replies.recv())
        .await
        .expect("reply in time")
        .expect("reply");
    assert_eq!(reply["request_id"], 1);
    assert_eq!(reply["ok"], true, "{reply}");
    let job_id = reply["job"]["job_id"].as_str().expect("id").to_owned();
    let message = chat
        .until(|doc| answer(doc, &job_id).filter(|message| message["status"] == "done"))
        .await;
    assert_eq!(message["text"], ANSWER);

    chat.send_raw(request(
        json!({"request_id": "q", "action": "status", "job_id": job_id}),
    ))
    .await;
    let reply = chat.replies.recv().await.expect("reply");
    assert_eq!(reply["job"]["status"], "done", "{reply}");
    chat.send_raw(request(
        json!({"request_id": 2, "action": "start", "session_id": class.session, "kind": "quiz"}),
    ))
    .await;
    let reply = chat.replies.recv().await.expect("reply");
    assert_eq!(reply["ok"], false);
    assert_eq!(reply["error"]["code"], "forbidden", "{reply}");
    api.stop().await;
}

/// The real local model (SmolLM2 through ONNX Runtime), prepared in the shared test models
/// directory, streaming an answer into the chat while two clients watch.
#[tokio::test]
async fn the_local_model_streams_an_answer_into_a_watched_document() {
    // Prepares (once) and checks the shared model before the server looks for it.
    let _ = lectern_ai::local::testing::local_backend();
    let api = sqlite(|config| {
        config.ai_backend = AiBackendKind::Local;
        config.ai_max_tokens = 40;
    })
    .await;
    let class = class(&api).await;
    let mut notes = Watcher::open(api.server(), &notes_doc(&class), &class.teacher.access).await;
    notes
        .edit(|txn| {
            txn.get_or_insert_text("content").insert(
                txn,
                0,
                "Photosynthesis turns light, water and carbon dioxide into glucose and oxygen.",
            )
        })
        .await;
    let mut first = Watcher::open(api.server(), &chat_doc(&class), &class.teacher.access).await;
    let mut second = Watcher::open(api.server(), &chat_doc(&class), &class.student.access).await;
    Watcher::open(api.server(), &notes_doc(&class), &class.student.access)
        .await
        .until(|doc| (!notes_text(doc).is_empty()).then_some(()))
        .await;
    let job = start_ok(
        &api,
        &class,
        &class.student.access,
        json!({"kind": "qa", "prompt": "What does photosynthesis make?"}),
    )
    .await;
    let job_id = job["job_id"].as_str().expect("id").to_owned();
    let mut partials = std::collections::BTreeSet::new();
    let done = first
        .until(|doc| {
            let message = answer(doc, &job_id)?;
            partials.insert(message["text"].as_str().unwrap_or_default().to_owned());
            (message["status"] != "streaming").then_some(message)
        })
        .await;
    assert_eq!(done["status"], "done", "{done}");
    let text = done["text"].as_str().expect("text");
    assert!(!text.trim().is_empty());
    assert!(partials.len() >= 3, "several partial updates: {partials:?}");
    let other = second
        .until(|doc| answer(doc, &job_id).filter(|message| message["status"] == "done"))
        .await;
    assert_eq!(other["text"], done["text"]);
    let job = finished(&api, &class.student.access, &job_id).await;
    assert!(
        job["completion_tokens"].as_u64().expect("tokens") > 0,
        "{job}"
    );
    api.stop().await;
}

pub(crate) fn say(text: &str) -> Script {
    Script::Tokens {
        tokens: tokens(text),
        gap: Duration::from_millis(2),
        prompt_tokens: 10,
    }
}

const QUIZ: &str = r#"{"title": "Cells", "questions": [{"prompt": "What is the basic unit of life?", "options": ["The cell", "The atom", "The organ"], "answer": 0, "explanation": "Page 1 says so."}]}"#;

pub(crate) fn map_json(doc: &Doc, name: &str) -> Value {
    let map = doc.get_or_insert_map(name);
    let txn = doc.transact();
    serde_json::to_value(map.to_json(&txn)).expect("json")
}

#[tokio::test]
async fn a_quiz_streams_as_a_draft_then_lands_validated_or_fails_clearly() {
    // Valid at once; unusable then repaired; unusable twice.
    for (scripts, requests, outcome) in [
        (vec![say(QUIZ)], 1, "done"),
        (vec![say("I cannot do quizzes."), say(QUIZ)], 2, "done"),
        (vec![say("No."), say("Still no.")], 2, "failed"),
    ] {
        let model = fake_model_seq(scripts).await;
        let api = openai_server(&model, |_| {}).await;
        let class = class(&api).await;
        upload_cells(&api, &class).await;
        let job = start_ok(
            &api,
            &class,
            &class.teacher.access,
            json!({"kind": "quiz", "prompt": "cells"}),
        )
        .await;
        let doc_id = job["doc_id"].as_str().expect("doc").to_owned();
        assert!(
            doc_id.starts_with(&format!("template/{}/", class.id)),
            "{doc_id}"
        );
        let job_id = job["job_id"].as_str().expect("id").to_owned();
        let job = finished(&api, &class.teacher.access, &job_id).await;
        assert_eq!(job["status"], outcome, "{job}");
        assert_eq!(model.requests.load(Ordering::SeqCst), requests);
        // Students of the class can watch (read) the new document, and its job's status in
        // the session's lectern document.
        let mut registry =
            Watcher::open(api.server(), &lectern_doc(&class), &class.student.access).await;
        let lectern = registry
            .until(|doc| {
                let lectern = map_json(doc, "lectern");
                (lectern["ai_jobs"][&job_id]["status"] == outcome).then_some(lectern)
            })
            .await;
        assert_eq!(lectern["ai_jobs"][&job_id]["doc_id"], doc_id.as_str());
        let mut watcher = Watcher::open(api.server(), &doc_id, &class.student.access).await;
        if outcome == "done" {
            watcher
                .until(|doc| {
                    let text = doc.get_or_insert_text("draft");
                    let txn = doc.transact();
                    (!text.get_string(&txn).is_empty()).then_some(())
                })
                .await;
            // A failed job's draft is taken back (`ai_outcomes.rs`); a good one's stays.
            let quiz = map_json(&watcher.doc, "quiz");
            assert_eq!(quiz["questions"][0]["options"][0], "The cell", "{quiz}");
        } else {
            let reason = job["error"].as_str().expect("reason");
            assert!(reason.contains("quiz"), "{reason}");
            assert_eq!(lectern["ai_jobs"][&job_id]["error"], reason);
        }
        api.stop().await;
    }
}

#[tokio::test]
async fn a_mindmap_grows_node_by_node_in_the_session_mindmap() {
    let model = fake_model(Script::Tokens {
        tokens: tokens("- Cells\n  - Membrane\n  - Nucleus\n    - DNA\n"),
        gap: Duration::from_millis(10),
        prompt_tokens: 10,
    })
    .await;
    let api = openai_server(&model, |_| {}).await;
    let class = class(&api).await;
    let doc_id = format!("session/{}/mindmap", class.session);
    let mut watcher = Watcher::open(api.server(), &doc_id, &class.student.access).await;
    let job = start_ok(
        &api,
        &class,
        &class.student.access,
        json!({"kind": "mindmap"}),
    )
    .await;
    assert_eq!(job["doc_id"], doc_id);
    let mut sizes = std::collections::BTreeSet::new();
    let map = watcher
        .until(|doc| {
            let map = map_json(doc, "mindmap");
            let nodes = map["nodes"].as_object().map_or(0, |nodes| nodes.len());
            sizes.insert(nodes);
            (nodes == 4).then_some(map)
        })
        .await;
    assert!(sizes.len() >= 3, "nodes appear one by one: {sizes:?}");
    let labels: Vec<_> = map["nodes"]
        .as_object()
        .expect("nodes")
        .values()
        .map(|node| node["label"].as_str().expect("label").to_owned())
        .collect();
    assert!(labels.contains(&"DNA".to_owned()), "{labels:?}");
    api.stop().await;
}

#[tokio::test]
async fn a_translation_streams_into_a_new_classroom_document() {
    let model = fake_model(say("Les cellules sont l'unité de base de la vie.")).await;
    let api = openai_server(&model, |_| {}).await;
    let class = class(&api).await;
    let mut notes = Watcher::open(api.server(), &notes_doc(&class), &class.teacher.access).await;
    notes
        .edit(|txn| {
            txn.get_or_insert_text("content")
                .insert(txn, 0, "Cells are the basic unit of life.")
        })
        .await;
    Watcher::open(api.server(), &notes_doc(&class), &class.student.access)
        .await
        .until(|doc| (!notes_text(doc).is_empty()).then_some(()))
        .await;
    let job = start_ok(
        &api,
        &class,
        &class.teacher.access,
        json!({"kind": "translate", "language": "French"}),
    )
    .await;
    let doc_id = job["doc_id"].as_str().expect("doc").to_owned();
    let mut watcher = Watcher::open(api.server(), &doc_id, &class.student.access).await;
    let text = watcher
        .until(|doc| {
            let text = notes_text(doc);
            (text == "Les cellules sont l'unité de base de la vie.").then_some(text)
        })
        .await;
    assert!(!text.is_empty());
    let (status, session) = api
        .get(
            &format!("/sessions/{}", class.session),
            Some(&class.teacher.access),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let _ = session;
    api.stop().await;
}

/// Reads `name`'s `_sum` and `_count` from the server's metrics.
async fn histogram(api: &Api, name: &str) -> (f64, f64) {
    let text = api
        .client()
        .get(api.server().http("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let value = |suffix: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}_{suffix} ")))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0.0)
    };
    (value("sum"), value("count"))
}

async fn notes_then_qa(api: &Api, class: &Class) -> (String, Watcher) {
    let mut notes = Watcher::open(api.server(), &notes_doc(class), &class.teacher.access).await;
    notes
        .edit(|txn| {
            txn.get_or_insert_text("content").insert(
                txn,
                0,
                "Photosynthesis turns light, water and carbon dioxide into glucose and oxygen.",
            )
        })
        .await;
    Watcher::open(api.server(), &notes_doc(class), &class.student.access)
        .await
        .until(|doc| (!notes_text(doc).is_empty()).then_some(()))
        .await;
    let chat = Watcher::open(api.server(), &chat_doc(class), &class.student.access).await;
    let job = start_ok(
        api,
        class,
        &class.teacher.access,
        json!({"kind": "qa", "prompt": "What does photosynthesis make? Explain in detail."}),
    )
    .await;
    (job["job_id"].as_str().expect("id").to_owned(), chat)
}

/// Measurement, not a check (run with `--run-ignored only`): the server's overhead per
/// token over the HTTP backend, and the local model's first token and speed.
#[tokio::test]
#[ignore = "measurement; prints figures"]
async fn measure_ai_figures() {
    const N: usize = 2000;
    let model = fake_model(Script::Tokens {
        tokens: (0..N).map(|index| format!("t{index} ")).collect(),
        gap: Duration::ZERO,
        prompt_tokens: 10,
    })
    .await;
    let api = openai_server(&model, |config| config.ai_max_tokens = 100_000).await;
    let http_class = class(&api).await;
    let started = std::time::Instant::now();
    let (job_id, mut chat) = notes_then_qa(&api, &http_class).await;
    let setup = started.elapsed();
    let started = std::time::Instant::now();
    chat.until(|doc| answer(doc, &job_id).filter(|message| message["status"] == "done"))
        .await;
    let total = started.elapsed();
    println!(
        "HTTP backend: {N} tokens into a watched doc in {total:?} (setup {setup:?}): {:.1} µs/token",
        total.as_secs_f64() * 1e6 / N as f64
    );
    api.stop().await;

    let _ = lectern_ai::local::testing::local_backend();
    let api = sqlite(|config| {
        config.ai_backend = AiBackendKind::Local;
        config.ai_max_tokens = 128;
    })
    .await;
    let local_class = class(&api).await;
    // The model is loaded by the first job's availability check; the job itself then
    // measures prefill + first decode step + the write into the room.
    let (job_id, mut chat) = notes_then_qa(&api, &local_class).await;
    chat.until(|doc| answer(doc, &job_id).filter(|message| message["status"] != "streaming"))
        .await;
    let (ttft, count) = histogram(&api, "lectern_ai_time_to_first_token_seconds").await;
    let (speed, jobs) = histogram(&api, "lectern_ai_tokens_per_second").await;
    println!(
        "local backend: first token into the doc {:.0} ms (mean of {count}), {:.1} tokens/s (mean of {jobs})",
        ttft / count.max(1.0) * 1000.0,
        speed / jobs.max(1.0)
    );
    api.stop().await;
}

/// Grounded answers (issue #12): an answer cites only the passages it uses, with where they
/// are; an off-topic question is answered "not covered" without the model; prompts hold
/// each piece of text once and as much of the course as the backend's window takes; a
/// structured document's `[n]` open real passages.
mod grounding {
    use std::sync::Mutex;

    use super::*;

    /// A fake OpenAI-compatible model (as [`fake_model_seq`]) that also keeps every
    /// request body, to check what the server asked.
    struct Recorder {
        base_url: String,
        bodies: Arc<Mutex<Vec<Value>>>,
    }

    impl Recorder {
        async fn start(scripts: Vec<Script>) -> Self {
            let bodies = Arc::new(Mutex::new(Vec::new()));
            let kept = bodies.clone();
            let scripts = Arc::new(scripts);
            let app = Router::new().route(
                "/v1/chat/completions",
                post(move |body: Bytes| {
                    let scripts = scripts.clone();
                    let kept = kept.clone();
                    async move {
                        let body: Value = serde_json::from_slice(&body).expect("json request");
                        let n = {
                            let mut kept = kept.lock().expect("bodies");
                            kept.push(body);
                            kept.len() - 1
                        };
                        respond(scripts[n.min(scripts.len() - 1)].clone())
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let address = listener.local_addr().expect("address");
            tokio::spawn(async move { axum::serve(listener, app).await });
            Self {
                base_url: format!("http://{address}/v1"),
                bodies,
            }
        }

        fn requests(&self) -> usize {
            self.bodies.lock().expect("bodies").len()
        }

        /// The user message of the last request.
        fn last_prompt(&self) -> String {
            let bodies = self.bodies.lock().expect("bodies");
            let body = bodies.last().expect("a request");
            body["messages"]
                .as_array()
                .expect("messages")
                .iter()
                .filter(|message| message["role"] == "user")
                .map(|message| message["content"].as_str().expect("content").to_owned())
                .collect()
        }

        /// Every message of the last request, joined.
        fn last_messages(&self) -> String {
            let bodies = self.bodies.lock().expect("bodies");
            let body = bodies.last().expect("a request");
            body["messages"]
                .as_array()
                .expect("messages")
                .iter()
                .map(|message| message["content"].as_str().expect("content").to_owned())
                .collect::<Vec<_>>()
                .join("\n")
        }
    }

    async fn server(model: &Recorder, adjust: impl Fn(&mut lectern::Config)) -> Api {
        let base_url = model.base_url.clone();
        sqlite(move |config| {
            config.ai_backend = AiBackendKind::Openai;
            config.ai_base_url = Some(base_url.clone());
            config.ai_model = Some("fake-model".into());
            config.rate_limit_burst = 10_000;
            adjust(config);
        })
        .await
    }

    /// Uploads a material and waits until it is searchable; returns its id.
    async fn upload(api: &Api, class: &Class, file_name: &str, bytes: Vec<u8>) -> String {
        let token = class.teacher.access.as_str();
        let (status, body) =
            crate::materials::upload(api, &class.id, token, file_name, bytes).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let id = body["id"].as_str().expect("id").to_owned();
        crate::materials::ready(api, token, &id).await;
        id
    }

    /// Asks `question` in the chat; returns the finished answer message and the job.
    async fn ask(api: &Api, class: &Class, question: &str) -> (Value, Value) {
        let mut chat = Watcher::open(api.server(), &chat_doc(class), &class.teacher.access).await;
        let job = start_ok(
            api,
            class,
            &class.teacher.access,
            json!({"kind": "chat", "prompt": question}),
        )
        .await;
        let job_id = job["job_id"].as_str().expect("id").to_owned();
        let job = finished(api, &class.teacher.access, &job_id).await;
        let message = chat
            .until(|doc| answer(doc, &job_id).filter(|message| message["status"] != "streaming"))
            .await;
        (message, job)
    }

    /// The numbered passages of a prompt, `(place, text)` for `[1]`, `[2]`, …: entries
    /// `[n] (place) text` (chat) or a line `[n] place` then the text (structured jobs).
    fn passages_of(prompt: &str) -> Vec<(String, String)> {
        let mut starts = Vec::new();
        for number in 1.. {
            let marker = format!("[{number}] ");
            let from = starts.last().map_or(0, |&(_, end)| end);
            let found = prompt[from..]
                .match_indices(&marker)
                .map(|(index, _)| from + index)
                .find(|&index| index == 0 || prompt[..index].ends_with('\n'));
            match found {
                Some(index) => starts.push((index, index + marker.len())),
                None => break,
            }
        }
        let end_of_all = |from: usize| {
            ["\nQuestion: ", "\nWrite "]
                .iter()
                .filter_map(|end| prompt[from..].find(end).map(|index| from + index))
                .min()
                .unwrap_or(prompt.len())
        };
        starts
            .iter()
            .enumerate()
            .map(|(index, &(_, body))| {
                let end = starts
                    .get(index + 1)
                    .map_or_else(|| end_of_all(body), |&(next, _)| next);
                let entry = prompt[body..end].trim();
                match entry.strip_prefix('(') {
                    Some(rest) => {
                        let (place, text) = rest.split_once(") ").expect("(place) text");
                        (place.to_owned(), text.trim().to_owned())
                    }
                    None => {
                        let (place, text) = entry.split_once('\n').expect("label, then text");
                        (place.to_owned(), text.trim().to_owned())
                    }
                }
            })
            .collect()
    }

    fn normalised(text: &str) -> String {
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// A Markdown handout about volcanoes: a title, three sections, one of them long
    /// enough to be cut into several overlapping chunks.
    fn volcano_handout() -> String {
        let mut md = String::from("# Volcanoes\n\nA handout for Year 8 geography.\n\n");
        md.push_str("## Magma and eruptions\n\n");
        let facts = [
            "Magma forms when rock in the mantle melts under falling pressure.",
            "Magma rises because it is less dense than the solid rock around it.",
            "Gas dissolved in magma comes out of solution as the magma rises.",
            "Expanding gas bubbles drive an explosive eruption through the vent.",
            "Runny basaltic magma lets gas escape gently in effusive eruptions.",
            "Sticky andesitic magma traps gas until the pressure blasts it out.",
            "Pyroclastic flows are avalanches of hot gas and ash down the slopes.",
            "Lahars are mudflows of volcanic ash mixed with rain or meltwater.",
            "Volcanic bombs are lumps of lava thrown out that cool in the air.",
            "Ash clouds can rise into the stratosphere and ground aircraft.",
            "Sulphur dioxide from large eruptions can cool the climate for years.",
            "Magma that cools underground forms intrusions such as dykes and sills.",
            "Lava that reaches the surface cools into extrusive rocks like basalt.",
            "Geologists measure gas output to warn of a coming eruption.",
            "Tiltmeters detect the ground swelling as a magma chamber fills.",
            "Swarms of small earthquakes often come before an eruption.",
        ];
        // Hard-wrapped at two facts a line, in paragraphs of four lines.
        for (index, pair) in facts.chunks(2).enumerate() {
            md.push_str(&pair.join(" "));
            md.push('\n');
            if index % 2 == 1 {
                md.push('\n');
            }
        }
        md.push_str(
            "## Shield volcanoes\n\nShield volcanoes such as Mauna Loa have gentle \
                     slopes built by runny basaltic lava.\nThey form over hot spots and at \
                     constructive plate margins.\n\n",
        );
        md.push_str(
            "## Living near volcanoes\n\nFarmers live near volcanoes because \
                     weathered ash makes fertile soil.\nGeothermal power stations use the \
                     heat to make electricity.\n",
        );
        md
    }

    #[tokio::test]
    async fn an_answer_cites_only_the_passages_it_marks_by_their_numbers() {
        // Cites the second passage, and a passage that does not exist.
        let model = Recorder::start(vec![say(
            "Gas bubbles expanding in rising magma drive explosive eruptions [2]. See also [9].",
        )])
        .await;
        let api = server(&model, |_| {}).await;
        let class = class(&api).await;
        let material = upload(&api, &class, "volcanoes.md", volcano_handout().into_bytes()).await;
        let (message, job) = ask(&api, &class, "Why do volcanoes erupt explosively?").await;
        assert_eq!(job["status"], "done", "{job}");
        let passages = passages_of(&model.last_prompt());
        assert!(
            passages.len() >= 2,
            "two passages at least: {}",
            model.last_prompt()
        );
        let citations = message["citations"].as_array().expect("citations");
        assert_eq!(citations.len(), 1, "only [2]: {citations:?}");
        let citation = &citations[0];
        assert_eq!(citation["marker"], 2.0, "{citation}");
        assert_eq!(citation["material_id"], material.as_str());
        assert_eq!(
            format!(
                "volcanoes.md, {}",
                citation["location"].as_str().expect("location")
            ),
            passages[1].0,
            "the citation is the prompt's [2]"
        );
        api.stop().await;
    }

    #[tokio::test]
    async fn an_off_topic_question_is_not_covered_and_the_model_is_not_asked() {
        let model = Recorder::start(vec![answering(1)]).await;
        let api = server(&model, |_| {}).await;
        let class = class(&api).await;
        upload(&api, &class, "volcanoes.md", volcano_handout().into_bytes()).await;
        upload_cells(&api, &class).await;
        let (message, job) = ask(&api, &class, "Who wrote the novel Pride and Prejudice?").await;
        assert_eq!(job["status"], "done", "{job}");
        assert_eq!(message["text"], "Your course materials don't cover this.");
        assert_eq!(message["citations"], json!([]));
        assert_eq!(model.requests(), 0, "nothing to ground an answer in");
        // An on-topic question in the same classroom is asked.
        let (message, _) = ask(&api, &class, "Where is the electron transport chain?").await;
        assert_eq!(message["text"], ANSWER);
        assert_eq!(model.requests(), 1);
        api.stop().await;
    }

    #[tokio::test]
    async fn citations_give_lines_in_markdown_and_page_and_heading_in_a_pdf() {
        let model = Recorder::start(vec![say("That is what the handout says [1].")]).await;
        let api = server(&model, |_| {}).await;
        let class = class(&api).await;
        let handout = volcano_handout();
        upload(&api, &class, "volcanoes.md", handout.clone().into_bytes()).await;
        let pdf = fixtures::pdf_with_headings(&[
            "# Plate tectonics\nThe crust is broken into plates that move a few centimetres a \
             year.",
            "# Earthquakes\nAn earthquake's focus is where the rock first breaks; the point \
             above it on the surface is the epicentre.",
        ]);
        upload(&api, &class, "tectonics.pdf", pdf).await;

        let (message, _) = ask(&api, &class, "Why do farmers live near volcanoes?").await;
        let citation = &message["citations"][0];
        assert_eq!(citation["file_name"], "volcanoes.md", "{message}");
        assert_eq!(citation["heading"], "Volcanoes > Living near volcanoes");
        let (first, last) = (
            citation["line_start"].as_f64().expect("first line") as usize,
            citation["line_end"].as_f64().expect("last line") as usize,
        );
        // Those lines of the file are the passage.
        let lines: Vec<&str> = handout.lines().collect();
        let cited = normalised(&lines[first - 1..last].join(" "));
        let (_, text) = &passages_of(&model.last_prompt())[0];
        assert_eq!(cited, normalised(text), "lines {first}–{last}");
        assert_eq!(
            citation["location"],
            format!("Volcanoes > Living near volcanoes, lines {first}–{last}").as_str()
        );

        let (message, _) = ask(&api, &class, "What is the epicentre of an earthquake?").await;
        let citation = &message["citations"][0];
        assert_eq!(citation["file_name"], "tectonics.pdf", "{message}");
        assert_eq!(citation["page"], 2.0);
        assert_eq!(citation["heading"], "Earthquakes");
        assert_eq!(citation["line_start"], Value::Null);
        assert_eq!(citation["location"], "p. 2, Earthquakes");
        api.stop().await;
    }

    #[tokio::test]
    async fn a_chat_condensed_to_a_budget_reads_the_sentences_the_question_names() {
        let model = Recorder::start(vec![say("Gas drives eruptions [1].")]).await;
        // About 256 characters (an API's tokens are estimated at 4 characters).
        let api = server(&model, |config| config.ai_chat_source_tokens = Some(64)).await;
        let class = class(&api).await;
        upload(&api, &class, "volcanoes.md", volcano_handout().into_bytes()).await;
        ask(
            &api,
            &class,
            "How does gas in magma drive explosive eruptions?",
        )
        .await;
        let prompt = model.last_prompt();
        let passages = passages_of(&prompt);
        let text: String = passages.iter().map(|(_, text)| text.as_str()).collect();
        assert!(
            text.contains("Expanding gas bubbles drive an explosive eruption through the vent."),
            "{prompt}"
        );
        assert!(text.chars().count() <= 64 * 4, "{prompt}");
        // Whole chunks of the handout hold far more; the cut shows where text was left out.
        assert!(text.contains('…'), "{prompt}");
        // Each kept sentence is the handout's, unchanged.
        for sentence in text.split(['…']).flat_map(|part| part.split(". ")) {
            let sentence = sentence.trim().trim_end_matches('.');
            if sentence.len() > 10 {
                assert!(
                    volcano_handout().contains(sentence),
                    "{sentence:?} in {prompt}"
                );
            }
        }
        api.stop().await;
    }

    #[tokio::test]
    async fn neighbouring_chunks_reach_the_prompt_once_without_their_overlap() {
        let model = Recorder::start(vec![say("Gas drives eruptions [1].")]).await;
        let api = server(&model, |_| {}).await;
        let class = class(&api).await;
        let handout = volcano_handout();
        let material = upload(&api, &class, "volcanoes.md", handout.clone().into_bytes()).await;
        let (status, chunks) = api
            .get(
                &format!("/materials/{material}/chunks"),
                Some(&class.teacher.access),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{chunks}");
        let texts: Vec<String> = chunks
            .as_array()
            .expect("chunks")
            .iter()
            .map(|chunk| normalised(chunk["text"].as_str().expect("text")))
            .collect();
        ask(
            &api,
            &class,
            "How does gas in magma cause explosive eruptions?",
        )
        .await;
        let prompt = normalised(&model.last_prompt());
        // Consecutive chunks in the prompt together: the text they share is there once.
        let mut merged = 0;
        for pair in texts.windows(2) {
            let shared = (1..pair[1].len())
                .rev()
                .filter(|&end| pair[1].is_char_boundary(end))
                .find(|&end| pair[0].ends_with(&pair[1][..end]));
            let Some(end) = shared else { continue };
            let (before, after) = (&pair[0][..pair[0].len() - end], &pair[1][end..]);
            if prompt.contains(before.trim()) && prompt.contains(after.trim()) {
                merged += 1;
                let repeated = pair[1][..end].trim();
                assert_eq!(
                    prompt.matches(repeated).count(),
                    1,
                    "{repeated:?} once in {prompt}"
                );
            }
        }
        assert!(merged >= 1, "neighbouring chunks in the prompt: {prompt}");
        // And no sentence of the handout twice.
        for sentence in handout.split(['.', '\n']).map(str::trim) {
            if sentence.len() > 20 {
                assert!(
                    prompt.matches(sentence).count() <= 1,
                    "{sentence:?} twice in {prompt}"
                );
            }
        }
        api.stop().await;
    }

    /// A long Markdown handout of eruption case studies (about 10,000 characters).
    fn eruptions_handout() -> String {
        let cases = [
            (
                "Vesuvius",
                "AD 79",
                "Italy",
                "buried Pompeii and Herculaneum under ash and pumice",
            ),
            (
                "Krakatoa",
                "1883",
                "Indonesia",
                "set off tsunamis that killed tens of thousands",
            ),
            (
                "Mount Pelee",
                "1902",
                "Martinique",
                "sent a pyroclastic flow through Saint-Pierre",
            ),
            (
                "Mount St Helens",
                "1980",
                "the United States",
                "blew out its north flank sideways",
            ),
            (
                "Nevado del Ruiz",
                "1985",
                "Colombia",
                "melted ice into lahars that buried Armero",
            ),
            (
                "Pinatubo",
                "1991",
                "the Philippines",
                "cooled the world by half a degree for a year",
            ),
            (
                "Montserrat",
                "1995",
                "the Caribbean",
                "left the capital Plymouth abandoned",
            ),
            (
                "Eyjafjallajokull",
                "2010",
                "Iceland",
                "closed European airspace with its ash",
            ),
            (
                "Merapi",
                "2010",
                "Indonesia",
                "forced hundreds of thousands to evacuate",
            ),
            (
                "Kilauea",
                "2018",
                "Hawaii",
                "poured lava over hundreds of homes",
            ),
            (
                "Fuego",
                "2018",
                "Guatemala",
                "sent pyroclastic flows down its ravines",
            ),
            (
                "Hunga Tonga",
                "2022",
                "Tonga",
                "sent a pressure wave around the whole planet",
            ),
            (
                "Etna",
                "1669",
                "Sicily",
                "sent lava into the city of Catania",
            ),
            (
                "Tambora",
                "1815",
                "Indonesia",
                "caused the year without a summer",
            ),
            (
                "Laki",
                "1783",
                "Iceland",
                "poisoned livestock with fluorine gas",
            ),
            (
                "Sakurajima",
                "1914",
                "Japan",
                "joined the island to the mainland with lava",
            ),
            (
                "Heimaey",
                "1973",
                "Iceland",
                "was slowed by spraying seawater on the lava",
            ),
            (
                "Unzen",
                "1991",
                "Japan",
                "killed volcanologists in a pyroclastic flow",
            ),
            (
                "Nyiragongo",
                "2002",
                "the Congo",
                "sent fast lava through the city of Goma",
            ),
            (
                "Chaiten",
                "2008",
                "Chile",
                "buried the town of Chaiten in lahars",
            ),
            (
                "Ontake",
                "2014",
                "Japan",
                "surprised hikers near the summit",
            ),
            (
                "Taal",
                "2020",
                "the Philippines",
                "covered nearby towns in wet ash",
            ),
            (
                "La Palma",
                "2021",
                "Spain",
                "destroyed thousands of buildings",
            ),
            (
                "Soufriere",
                "2021",
                "Saint Vincent",
                "forced the north of the island to evacuate",
            ),
        ];
        let mut md = String::from("# Volcanic eruptions: case studies\n\n");
        for (name, year, place, effect) in cases {
            md.push_str(&format!(
                "The volcanic eruption of {name} in {place} in {year} {effect}. It is a \
                 case study of eruption hazards: how far the volcanic ash fell, where the \
                 lava and pyroclastic flows ran, how the eruption warnings were given and \
                 how long the people living near the volcano took to recover once the \
                 eruption of {year} was over.\n\n"
            ));
        }
        md
    }

    /// Questions on other subjects than the evaluation course's (a Year 9 geography
    /// course on the water cycle, a river and the weather), beyond the course's own six.
    const OTHER_SUBJECTS: &[&str] = &[
        "Who painted the Mona Lisa?",
        "How many players are there in a rugby union team?",
        "What is the past tense of the French verb aller?",
        "Who was the first emperor of Rome?",
        "How do I convert a fraction to a percentage?",
        "What is the chemical symbol for gold?",
        "How does a computer's CPU execute instructions?",
        "Which planet is the largest in the solar system?",
        "What does the heart do in the human body?",
        "How do I write a persuasive essay introduction?",
        "Who won the football World Cup in 2018?",
        "What are the rules for castling in chess?",
        "How do vaccines train the immune system?",
        "When did the Second World War end?",
        "What is the difference between a simile and a metaphor?",
        "How do you calculate the area of a circle?",
        "What is the tallest animal in the world?",
        "How do I tune a guitar?",
        "What does DNA stand for?",
        "Which languages are spoken in Switzerland?",
        "How is paper recycled?",
        "What did the Tudors eat?",
        "How do magnets work?",
        "What is the best way to revise for a maths exam?",
    ];

    /// Course questions as students ask them when they do not know the words: short,
    /// vague, without the handouts' terms.
    const VAGUE_COURSE_QUESTIONS: &[&str] = &[
        "Tell me about the river.",
        "What happens to rain?",
        "How does the weather station work?",
        "Explain fronts.",
        "What did we do on the field trip?",
        "Summarise the water cycle.",
        "Why does it flood?",
        "What is a depression?",
        "How do we measure wind?",
        "What should I write in my report?",
    ];

    /// Geography the course does not cover: reported, not asserted (a floor that refused
    /// these might refuse a rephrased course question too).
    const NEAR_THE_COURSE: &[&str] = &[
        "What causes earthquakes?",
        "How are volcanoes formed?",
        "What is the population of Tokyo?",
        "Why is the Amazon rainforest important?",
        "How do glaciers shape valleys?",
        "What is climate change?",
    ];

    /// The best search score of `question` over the classroom's materials.
    async fn best_score(api: &Api, class: &Class, question: &str) -> f64 {
        let (status, body) = api
            .post(
                &format!("/classrooms/{}/search", class.id),
                Some(&class.teacher.access),
                json!({"query": question, "k": 1}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["hits"][0]["score"].as_f64().expect("a hit")
    }

    /// The default relevance floor on the real embedding model (all-MiniLM-L6-v2) and the
    /// evaluation course (`eval/`): every question the course answers reaches it, no
    /// question on another subject does. Prints the figures the floor was chosen from.
    #[tokio::test]
    async fn the_relevance_floor_keeps_every_course_question_and_refuses_other_subjects() {
        let suite = lectern_eval::Suite::load(&lectern_eval::Suite::default_path()).expect("suite");
        let mut floor = 0.0;
        let api = sqlite(|config| {
            floor = f64::from(config.ai_relevance_floor);
            config.rate_limit_burst = 10_000;
        })
        .await;
        let class = class(&api).await;
        for name in &suite.materials {
            let bytes = suite.material_bytes(name).expect("material");
            upload(&api, &class, name, bytes).await;
        }
        let mut on_topic = Vec::new();
        for question in &suite.questions {
            let score = best_score(&api, &class, &question.question).await;
            on_topic.push((score, question.id.as_str()));
        }
        for question in VAGUE_COURSE_QUESTIONS {
            on_topic.push((best_score(&api, &class, question).await, question));
        }
        let mut off_topic = Vec::new();
        let others = suite
            .off_topic
            .iter()
            .map(|question| question.question.as_str());
        for question in others.chain(OTHER_SUBJECTS.iter().copied()) {
            off_topic.push((best_score(&api, &class, question).await, question));
        }
        let mut near = Vec::new();
        for question in NEAR_THE_COURSE {
            near.push((best_score(&api, &class, question).await, *question));
        }
        api.stop().await;
        on_topic.sort_by(|a, b| a.0.total_cmp(&b.0));
        off_topic.sort_by(|a, b| b.0.total_cmp(&a.0));
        near.sort_by(|a, b| b.0.total_cmp(&a.0));
        let figures = |scores: &[f64]| {
            let mut sorted = scores.to_vec();
            sorted.sort_by(f64::total_cmp);
            let at = |share: f64| sorted[((sorted.len() - 1) as f64 * share).round() as usize];
            format!(
                "n={} min={:.3} p10={:.3} median={:.3} p90={:.3} max={:.3}",
                sorted.len(),
                at(0.0),
                at(0.1),
                at(0.5),
                at(0.9),
                at(1.0)
            )
        };
        let scores =
            |list: &[(f64, &str)]| list.iter().map(|(score, _)| *score).collect::<Vec<_>>();
        let on = on_topic;
        eprintln!("floor {floor}");
        eprintln!("course questions: {}", figures(&scores(&on)));
        eprintln!("  lowest: {:?}", &on[..5]);
        eprintln!("other subjects: {}", figures(&scores(&off_topic)));
        eprintln!("  highest: {:?}", &off_topic[..5]);
        eprintln!("near the course: {}; {near:?}", figures(&scores(&near)));
        let refused: Vec<_> = on.iter().filter(|(score, _)| *score < floor).collect();
        assert!(
            refused.is_empty(),
            "course questions under {floor}: {refused:?}"
        );
        let let_through: Vec<_> = off_topic
            .iter()
            .filter(|(score, _)| *score >= floor)
            .collect();
        assert!(
            let_through.is_empty(),
            "other subjects at {floor} or more: {let_through:?}"
        );
    }

    /// A quiz citing passages [1] and [2], and a passage [7] that does not exist.
    const CITING_QUIZ: &str = r#"{"title": "Volcanoes", "questions": [{"prompt": "What drives an explosive eruption?", "options": ["Expanding gas", "Wind", "Rain", "Tides"], "answer": 0, "explanation": "Gas bubbles expand as magma rises [1]."}, {"prompt": "What are lahars?", "options": ["Mudflows", "Lava", "Ash clouds", "Bombs"], "answer": 0, "explanation": "Ash mixed with water [2], not [7]."}]}"#;

    /// Runs a quiz job on the volcano handout with a `context`-token API window; returns
    /// the model, the finished job and the server (still running).
    async fn quiz(context: u32, file_name: &str, handout: String) -> (Recorder, Api, Class, Value) {
        let model = Recorder::start(vec![say(CITING_QUIZ)]).await;
        let api = server(&model, |config| {
            config.ai_context_tokens = context;
            config.ai_max_tokens = 512;
        })
        .await;
        let class = class(&api).await;
        upload(&api, &class, file_name, handout.into_bytes()).await;
        let job = start_ok(
            &api,
            &class,
            &class.teacher.access,
            json!({"kind": "quiz", "prompt": "Volcanic eruptions and their hazards"}),
        )
        .await;
        let job_id = job["job_id"].as_str().expect("id").to_owned();
        let done = finished(&api, &class.teacher.access, &job_id).await;
        assert_eq!(done["status"], "done", "{done}");
        (model, api, class, job)
    }

    /// Characters of course text in a structured prompt.
    fn source_chars(prompt: &str) -> usize {
        passages_of(prompt)
            .iter()
            .map(|(_, text)| text.chars().count())
            .sum()
    }

    #[tokio::test]
    async fn structured_jobs_get_as_much_course_text_as_the_window_takes() {
        let (large, api, ..) = quiz(32_768, "eruptions.md", eruptions_handout()).await;
        api.stop().await;
        let (small, api, ..) = quiz(1024, "eruptions.md", eruptions_handout()).await;
        api.stop().await;
        let (large_prompt, small_prompt) = (large.last_prompt(), small.last_prompt());
        let (many, few) = (source_chars(&large_prompt), source_chars(&small_prompt));
        // The old fixed budget was 2,400 characters whatever the window.
        assert!(many > 5_000, "{many} characters: {large_prompt}");
        assert!(few > 0 && few < many, "{few} < {many}: {small_prompt}");
        // The small window's prompt leaves the answer its 512 tokens (estimated at 4
        // characters a token, as the server does for an API).
        let asked = small.last_messages().chars().count();
        assert!(
            asked <= 4 * (1024 - 512),
            "{asked} characters: {small_prompt}"
        );
    }

    #[tokio::test]
    async fn a_quizs_source_markers_open_the_passages_they_name() {
        // Sections apart: several passages.
        let (model, api, class, job) = quiz(8192, "volcanoes.md", volcano_handout()).await;
        let passages = passages_of(&model.last_prompt());
        assert!(passages.len() >= 2, "{}", model.last_prompt());
        let doc_id = job["doc_id"].as_str().expect("doc");
        let mut watcher = Watcher::open(api.server(), doc_id, &class.student.access).await;
        let sources = watcher
            .until(|doc| {
                let sources = map_json(doc, "sources");
                (!map_json(doc, "quiz").as_object()?.is_empty()).then_some(sources)
            })
            .await;
        let keys: std::collections::BTreeSet<&str> = sources
            .as_object()
            .expect("sources")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["1", "2"].into(), "[7] names no passage: {sources}");
        for (key, source) in sources.as_object().expect("sources") {
            let number: usize = key.parse().expect("number");
            assert_eq!(source["marker"], number as f64);
            // A client opens it: the material's chunk at `ordinal` is in that passage.
            let material = source["material_id"].as_str().expect("material");
            let (status, chunks) = api
                .get(
                    &format!("/materials/{material}/chunks"),
                    Some(&class.student.access),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{chunks}");
            let ordinal = source["ordinal"].clone();
            let chunk = chunks
                .as_array()
                .expect("chunks")
                .iter()
                .find(|chunk| chunk["ordinal"] == ordinal)
                .unwrap_or_else(|| panic!("chunk {ordinal} of {material}"));
            let (place, text) = &passages[number - 1];
            let start: String = normalised(chunk["text"].as_str().expect("text"))
                .chars()
                .take(60)
                .collect();
            assert!(
                normalised(text).starts_with(&start),
                "{start:?} opens {text:?}"
            );
            assert_eq!(
                format!(
                    "[{number}] volcanoes.md, {}",
                    source["location"].as_str().expect("loc")
                ),
                format!("[{number}] {place}")
            );
        }
        api.stop().await;
    }
}
