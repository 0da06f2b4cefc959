//! The AI job queue through the real server: a local OpenAI-compatible SSE server whose
//! answers the test releases one by one shows which job the server lets generate next,
//! while several classrooms compete for one generation slot.

use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::SinkExt as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use yrs::types::ToJson as _;
use yrs::updates::decoder::Decode as _;
use yrs::updates::encoder::Encode as _;
use yrs::{Doc, GetString as _, StateVector, Text as _, Transact as _, Update};

use lectern::config::AiBackendKind;

use crate::api::{Api, Session, code, sqlite};
use crate::support::{Client, connect};

/// A request that reached the model, held until the test releases it (also used by the
/// `ai_nodes` tests).
pub(crate) struct Arrival {
    /// The question it asks (the qa prompt).
    pub(crate) question: String,
    /// Lets its answer stream.
    pub(crate) release: oneshot::Sender<()>,
}

/// A local OpenAI-compatible server that answers only when told to.
pub(crate) struct HeldModel {
    pub(crate) base_url: String,
    arrivals: mpsc::UnboundedReceiver<Arrival>,
}

impl HeldModel {
    pub(crate) async fn start() -> Self {
        let (sender, arrivals) = mpsc::unbounded_channel();
        let app = Router::new().route(
            "/v1/chat/completions",
            post(move |body: Bytes| {
                let sender = sender.clone();
                async move {
                    let (release, released) = oneshot::channel();
                    let _ = sender.send(Arrival {
                        question: question(&body),
                        release,
                    });
                    held_answer(released)
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
            arrivals,
        }
    }

    /// The next request to reach the model.
    pub(crate) async fn next(&mut self) -> Arrival {
        tokio::time::timeout(Duration::from_secs(60), self.arrivals.recv())
            .await
            .expect("a request reaches the model within 60 s")
            .expect("model running")
    }
}

/// The qa question in a chat-completions request body.
fn question(body: &[u8]) -> String {
    let request: Value = serde_json::from_slice(body).expect("JSON request");
    request["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|message| message["content"].as_str())
        .find_map(|content| content.rsplit_once("Question: "))
        .map(|(_, question)| question.trim().to_owned())
        .unwrap_or_default()
}

fn sse(data: &Value) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

/// Headers at once; the answer once `released` fires.
fn held_answer(released: oneshot::Receiver<()>) -> Response {
    let body = futures_util::stream::once(async move {
        let _ = released.await;
        let mut events = Vec::new();
        for token in ["It ", "is ", "in ", "the ", "notes."] {
            events.extend_from_slice(&sse(&json!({
                "choices": [{"index": 0, "delta": {"content": token}, "finish_reason": null}],
            })));
        }
        events.extend_from_slice(&sse(
            &json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        ));
        events.extend_from_slice(&sse(&json!({"choices": [], "usage": {
            "prompt_tokens": 20, "completion_tokens": 5}})));
        events.extend_from_slice(b"data: [DONE]\n\n");
        Ok::<_, std::io::Error>(Bytes::from(events))
    });
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        Body::from_stream(body),
    )
        .into_response()
}

async fn server(model: &HeldModel, adjust: impl FnOnce(&mut lectern::Config)) -> Api {
    let base_url = model.base_url.clone();
    sqlite(move |config| {
        config.ai_backend = AiBackendKind::Openai;
        config.ai_base_url = Some(base_url);
        config.ai_model = Some("held-model".into());
        // The test polls job status; the REST limit is not what it checks.
        config.rate_limit_burst = 10_000;
        adjust(config);
    })
    .await
}

/// A classroom with a live session whose notes say something, and its teacher.
pub(crate) struct Class {
    pub(crate) session: String,
    pub(crate) teacher: Session,
}

pub(crate) async fn class(api: &Api, name: &str) -> Class {
    let teacher = api
        .register(&format!("teacher-{name}@example.edu"), "faculty")
        .await;
    let (status, body) = api
        .post("/classrooms", Some(&teacher.access), json!({"name": name}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let classroom = body["id"].as_str().expect("classroom id").to_owned();
    let (status, body) = api
        .post(
            &format!("/classrooms/{classroom}/sessions"),
            Some(&teacher.access),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let session = body["id"].as_str().expect("session id").to_owned();
    write_notes(api, &session, &teacher.access, "Mitochondria make ATP.").await;
    Class { session, teacher }
}

/// Writes `text` into the session notes over a y-sync socket and waits until the server
/// has it (qa jobs read the notes).
async fn write_notes(api: &Api, session: &str, token: &str, text: &str) {
    let doc_url = api
        .server()
        .ws(&format!("/ws/session/{session}/notes?token={token}"));
    let mut socket = connect(&doc_url).await;
    let update = {
        let doc = Doc::new();
        let content = doc.get_or_insert_text("content");
        let mut txn = doc.transact_mut();
        content.insert(&mut txn, 0, text);
        txn.encode_update_v1()
    };
    let message = yrs::sync::Message::Sync(yrs::sync::SyncMessage::Update(update));
    socket
        .send(Message::Binary(message.encode_v1().into()))
        .await
        .expect("send notes");
    // Ask for the server's state until it holds the text.
    let step1 = yrs::sync::Message::Sync(yrs::sync::SyncMessage::SyncStep1(StateVector::default()));
    let wait = async {
        loop {
            socket
                .send(Message::Binary(step1.encode_v1().into()))
                .await
                .expect("send step 1");
            while let Some(Ok(frame)) = futures_util::StreamExt::next(&mut socket).await {
                let Message::Binary(bytes) = frame else {
                    continue;
                };
                let Ok(yrs::sync::Message::Sync(yrs::sync::SyncMessage::SyncStep2(state))) =
                    yrs::sync::Message::decode_v1(&bytes)
                else {
                    continue;
                };
                let doc = Doc::new();
                let content = doc.get_or_insert_text("content");
                let mut txn = doc.transact_mut();
                txn.apply_update(Update::decode_v1(&state).expect("update"))
                    .expect("apply");
                if content.get_string(&txn).contains(text) {
                    return;
                }
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .expect("notes stored within 30 s");
}

/// Starts a qa job asking `question`.
async fn ask(api: &Api, class: &Class, question: &str) -> (StatusCode, Value) {
    api.post(
        &format!("/sessions/{}/ai/jobs", class.session),
        Some(&class.teacher.access),
        json!({"kind": "qa", "prompt": question}),
    )
    .await
}

pub(crate) async fn ask_ok(api: &Api, class: &Class, question: &str) -> String {
    let (status, job) = ask(api, class, question).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["status"], "queued", "{job}");
    job["job_id"].as_str().expect("job id").to_owned()
}

pub(crate) async fn job(api: &Api, class: &Class, job_id: &str) -> Value {
    let (status, job) = api
        .get(&format!("/ai/jobs/{job_id}"), Some(&class.teacher.access))
        .await;
    assert_eq!(status, StatusCode::OK, "{job}");
    job
}

/// Polls a job until it is over; returns it.
async fn finished(api: &Api, class: &Class, job_id: &str) -> Value {
    for _ in 0..2400 {
        let job = job(api, class, job_id).await;
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

#[tokio::test]
async fn a_busy_classroom_cannot_starve_another_and_its_flood_is_refused() {
    let mut model = HeldModel::start().await;
    let api = server(&model, |config| {
        config.ai_max_concurrent_jobs = Some(1);
        config.ai_queue_per_classroom = 3;
    })
    .await;
    let busy = class(&api, "busy").await;
    let quiet = class(&api, "quiet").await;

    // The busy classroom takes the one slot, then queues three more jobs.
    let a0 = ask_ok(&api, &busy, "a0").await;
    let generating = model.next().await;
    assert_eq!(generating.question, "a0");
    let a1 = ask_ok(&api, &busy, "a1").await;
    let a2 = ask_ok(&api, &busy, "a2").await;
    let a3 = ask_ok(&api, &busy, "a3").await;
    // Its line is full: a flood is refused at once, with a code and a retry hint.
    let response = api
        .client()
        .post(
            api.server()
                .http(&format!("/api/v1/sessions/{}/ai/jobs", busy.session)),
        )
        .bearer_auth(&busy.teacher.access)
        .json(&json!({"kind": "qa", "prompt": "a4"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after = response.headers().get("retry-after").cloned();
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(code(&body), "ai_queue_full", "{body}");
    assert!(
        retry_after.is_some_and(|value| value.to_str().is_ok_and(|s| s.parse::<u64>().is_ok())),
        "Retry-After in seconds"
    );
    // The other classroom asks last, and is still served next but one.
    let b1 = ask_ok(&api, &quiet, "b1").await;

    let position = |job: &Value| job["queue_position"].as_u64();
    assert_eq!(position(&job(&api, &busy, &a0).await), None, "a0 generates");
    assert_eq!(position(&job(&api, &busy, &a1).await), Some(1));
    assert_eq!(position(&job(&api, &quiet, &b1).await), Some(2));
    assert_eq!(position(&job(&api, &busy, &a2).await), Some(3));
    assert_eq!(position(&job(&api, &busy, &a3).await), Some(4));

    // Cancelling a waiting job takes it out of line at once.
    let (status, cancelled) = api
        .post(
            &format!("/ai/jobs/{a2}/cancel"),
            Some(&busy.teacher.access),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(position(&cancelled), None, "{cancelled}");
    assert_eq!(position(&job(&api, &busy, &a3).await), Some(3));

    // Each answer released lets exactly the next job in fair order reach the model.
    let mut served = Vec::new();
    let mut current = generating;
    for _ in 0..3 {
        let _ = current.release.send(());
        current = model.next().await;
        served.push(current.question.clone());
    }
    let _ = current.release.send(());
    assert_eq!(served, ["a1", "b1", "a3"], "b1 second, not fourth");

    for (class, id) in [(&busy, &a0), (&busy, &a1), (&quiet, &b1), (&busy, &a3)] {
        let job = finished(&api, class, id).await;
        assert_eq!(job["status"], "done", "{job}");
        assert_eq!(position(&job), None);
    }
    assert_eq!(finished(&api, &busy, &a2).await["status"], "cancelled");
    // The line is empty again: the busy classroom may queue anew.
    let again = ask_ok(&api, &busy, "a5").await;
    let arrival = model.next().await;
    assert_eq!(arrival.question, "a5");
    let _ = arrival.release.send(());
    assert_eq!(finished(&api, &busy, &again).await["status"], "done");
    api.stop().await;
}

/// The session's job feed (`ai_jobs` in its `lectern` document), followed live over a
/// y-sync socket.
struct Feed {
    doc: Doc,
    socket: Client,
}

impl Feed {
    async fn open(api: &Api, class: &Class) -> Self {
        let url = api.server().ws(&format!(
            "/ws/session/{}/lectern?token={}",
            class.session, class.teacher.access
        ));
        let mut socket = connect(&url).await;
        let step1 =
            yrs::sync::Message::Sync(yrs::sync::SyncMessage::SyncStep1(StateVector::default()));
        socket
            .send(Message::Binary(step1.encode_v1().into()))
            .await
            .expect("send step 1");
        Self {
            doc: Doc::new(),
            socket,
        }
    }

    /// Job `job_id`'s entry as it is now (`null` if there is none).
    fn entry(&self, job_id: &str) -> Value {
        let map = self.doc.get_or_insert_map("lectern");
        let txn = self.doc.transact();
        let lectern = serde_json::to_value(map.to_json(&txn)).expect("json");
        lectern["ai_jobs"][job_id].clone()
    }

    /// Applies what the server sends until `check` holds for job `job_id`'s entry; returns it.
    async fn until(&mut self, job_id: &str, check: impl Fn(&Value) -> bool) -> Value {
        let wait = async {
            loop {
                let entry = self.entry(job_id);
                if check(&entry) {
                    return entry;
                }
                let frame = futures_util::StreamExt::next(&mut self.socket)
                    .await
                    .expect("socket open")
                    .expect("frame");
                let Message::Binary(bytes) = frame else {
                    continue;
                };
                let update = match yrs::sync::Message::decode_v1(&bytes) {
                    Ok(yrs::sync::Message::Sync(
                        yrs::sync::SyncMessage::SyncStep2(update)
                        | yrs::sync::SyncMessage::Update(update),
                    )) => update,
                    _ => continue,
                };
                self.doc
                    .transact_mut()
                    .apply_update(Update::decode_v1(&update).expect("update"))
                    .expect("apply");
            }
        };
        let waited = tokio::time::timeout(Duration::from_secs(30), wait).await;
        waited.unwrap_or_else(|_| {
            panic!(
                "job {job_id}'s feed entry never matched; it is {}",
                self.entry(job_id)
            )
        })
    }
}

/// Whether a feed entry shows a job waiting at `place` in line.
fn waiting_at(place: u64) -> impl Fn(&Value) -> bool {
    move |entry| entry["status"] == "queued" && entry["queue_position"].as_u64() == Some(place)
}

/// Whether a feed entry shows a job generating (no place in line any more).
fn generating(entry: &Value) -> bool {
    entry["status"] == "streaming" && entry.get("queue_position").is_none()
}

/// The session's job feed, not only `GET /ai/jobs/{id}`, shows each waiting job `queued`
/// with its place in line as the line moves, and a generating job without one.
#[tokio::test]
async fn the_job_feed_shows_each_waiting_jobs_place_in_line() {
    let mut model = HeldModel::start().await;
    let api = server(&model, |config| config.ai_max_concurrent_jobs = Some(1)).await;
    let busy = class(&api, "busy").await;
    let quiet = class(&api, "quiet").await;
    let mut busy_feed = Feed::open(&api, &busy).await;
    let mut quiet_feed = Feed::open(&api, &quiet).await;

    let a0 = ask_ok(&api, &busy, "a0").await;
    let generating_a0 = model.next().await;
    let a1 = ask_ok(&api, &busy, "a1").await;
    let a2 = ask_ok(&api, &busy, "a2").await;
    let b1 = ask_ok(&api, &quiet, "b1").await;

    busy_feed.until(&a0, generating).await;
    busy_feed.until(&a1, waiting_at(1)).await;
    quiet_feed.until(&b1, waiting_at(2)).await;
    busy_feed.until(&a2, waiting_at(3)).await;

    // A job ahead cancelled: those behind it move up.
    let (status, body) = api
        .post(
            &format!("/ai/jobs/{b1}/cancel"),
            Some(&quiet.teacher.access),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    busy_feed.until(&a2, waiting_at(2)).await;
    quiet_feed
        .until(&b1, |entry| entry["status"] == "cancelled")
        .await;

    // a0's answer ends: a1 generates, a2 is next.
    let _ = generating_a0.release.send(());
    let generating_a1 = model.next().await;
    assert_eq!(generating_a1.question, "a1");
    busy_feed
        .until(&a0, |entry| entry["status"] == "done")
        .await;
    busy_feed.until(&a1, generating).await;
    busy_feed.until(&a2, waiting_at(1)).await;

    let _ = generating_a1.release.send(());
    let generating_a2 = model.next().await;
    busy_feed.until(&a2, generating).await;
    let _ = generating_a2.release.send(());
    let done = busy_feed
        .until(&a2, |entry| entry["status"] == "done")
        .await;
    assert!(done.get("queue_position").is_none(), "{done}");
    api.stop().await;
}

/// Figures for docs/ai.md, not a check: a victim classroom's time to first token while
/// three other classrooms keep the real local model busy (3 or 9 jobs each, 128 tokens
/// at most), without a limit, with one generation at a time and with the local default
/// of three. Run with
/// `cargo nextest run --workspace -E 'test(measure_fair_queue)' --run-ignored only
/// --no-capture`.
#[tokio::test]
#[ignore = "measurement; prints figures"]
async fn measure_fair_queue() {
    // Prepares (once) and checks the shared model before the servers look for it.
    let _ = lectern_ai::local::testing::local_backend();
    for (limit, rounds) in [(1000, 3), (1, 3), (3, 3), (1000, 9), (1, 9), (3, 9)] {
        let api = sqlite(|config| {
            config.ai_backend = AiBackendKind::Local;
            config.ai_max_tokens = 128;
            config.ai_max_concurrent_jobs = Some(limit);
            config.rate_limit_burst = 10_000;
        })
        .await;
        let notes =
            "Cells are the basic unit of life. Mitochondria make ATP from glucose. ".repeat(20);
        let mut attackers = Vec::new();
        for name in ["x", "y", "z"] {
            let class = class(&api, name).await;
            write_notes(&api, &class.session, &class.teacher.access, &notes).await;
            attackers.push(class);
        }
        let victim = class(&api, "victim").await;
        // Each server loads the model lazily: wait for it, so loading is not measured.
        for _ in 0..600 {
            let (status, _) = ask(&api, &attackers[0], "warm-up").await;
            if status == StatusCode::ACCEPTED {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for round in 0..rounds {
            for class in &attackers {
                ask_ok(&api, class, &format!("What do cells do? ({round})")).await;
            }
        }
        let started = std::time::Instant::now();
        let job_id = ask_ok(&api, &victim, "What makes ATP?").await;
        let mut first_position = None;
        loop {
            let job = job(&api, &victim, &job_id).await;
            first_position = first_position.or(job["queue_position"].as_u64());
            if job["status"] != "queued" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!(
            "limit {limit}: victim's first token after {:.1} s (queue position at start {:?}), \
             with 3 classrooms x {rounds} jobs ahead",
            started.elapsed().as_secs_f64(),
            first_position
        );
        api.stop().await;
    }
}
