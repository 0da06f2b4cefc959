//! Webhooks through the real server, on SQLite and on PostgreSQL, delivering to a real
//! receiver (an axum server on 127.0.0.1:0 in the test; the server runs with
//! `--webhooks-allow-private` so it may call it): events arrive signed, a burst of edits is
//! one `document.updated`, failing receivers are retried and finally given up on, a
//! restart resumes pending deliveries, and the SSRF guard and faculty-only access hold.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use yrs::updates::encoder::Encode;
use yrs::{Doc, StateVector, Text, Transact};

use lectern::Config;

use crate::api::{Api, Session, code, servers};
use crate::support::{TestServer, connect};

/// How long any awaited delivery may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(20);

/// Short timings, so retries and debouncing happen within a test.
fn quick(config: &mut Config) {
    config.webhooks_allow_private = true;
    config.webhook_backoff_ms = 50;
    config.webhook_backoff_max_ms = 200;
    config.webhook_timeout_ms = 5_000;
    // Long enough that a burst of edits sent at once is one quiet period even on a slow
    // machine.
    config.webhook_debounce_ms = 700;
    config.webhook_debounce_max_ms = 5_000;
    // The tests read delivery logs until they settle; the REST limit is not what they check.
    config.rate_limit_burst = 10_000;
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: String,
    /// What the receiver answered.
    status: u16,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_else(|| panic!("header {name} missing"))
    }

    fn event(&self) -> String {
        self.json()["event"].as_str().expect("event").to_owned()
    }
}

/// A webhook receiver: answers 500 to its first `failures` requests (or to all when
/// `u32::MAX`), 204 after that, and records everything.
#[derive(Clone)]
struct Receiver {
    address: SocketAddr,
    inner: Arc<ReceiverInner>,
}

struct ReceiverInner {
    received: Mutex<Vec<Received>>,
    failures_left: AtomicU32,
    changed: Notify,
}

const ALWAYS: u32 = u32::MAX;

impl Receiver {
    async fn start(failures: u32) -> Self {
        let inner = Arc::new(ReceiverInner {
            received: Mutex::new(Vec::new()),
            failures_left: AtomicU32::new(failures),
            changed: Notify::new(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(inner.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { address, inner }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.address)
    }

    /// From now on, answer 204.
    fn recover(&self) {
        self.inner.failures_left.store(0, Ordering::SeqCst);
    }

    fn received(&self) -> Vec<Received> {
        self.inner.received.lock().expect("lock").clone()
    }

    /// Waits (bounded) until `done` holds for what was received; returns that.
    async fn wait_until(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let wait = async {
            loop {
                let changed = self.inner.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                let received = self.received();
                if done(&received) {
                    return received;
                }
                changed.await;
            }
        };
        match tokio::time::timeout(DEADLINE, wait).await {
            Ok(received) => received,
            Err(_) => panic!(
                "timed out waiting for {what}; received {:#?}",
                self.received()
            ),
        }
    }

    /// Waits until a 2xx-answered delivery of `event` matching `filter` arrived.
    async fn delivered(&self, event: &str, filter: impl Fn(&Value) -> bool) -> Received {
        let received = self
            .wait_until(event, |received| {
                received
                    .iter()
                    .any(|r| r.status < 300 && r.event() == event && filter(&r.json()))
            })
            .await;
        received
            .into_iter()
            .find(|r| r.status < 300 && r.event() == event && filter(&r.json()))
            .expect("found")
    }
}

async fn hook(
    State(inner): State<Arc<ReceiverInner>>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let failing = inner
        .failures_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| match left {
            0 => None,
            ALWAYS => Some(ALWAYS),
            left => Some(left - 1),
        })
        .is_ok();
    let status = if failing {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    };
    inner.received.lock().expect("lock").push(Received {
        headers,
        body,
        status: status.as_u16(),
    });
    inner.changed.notify_waiters();
    status
}

/// HMAC-SHA256 written out here, independently of the server's.
fn hmac_sha256(key: &[u8], message: &[u8]) -> String {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner = Sha256::new()
        .chain_update(block.map(|b| b ^ 0x36))
        .chain_update(message)
        .finalize();
    let outer = Sha256::new()
        .chain_update(block.map(|b| b ^ 0x5c))
        .chain_update(inner)
        .finalize();
    outer.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// What a receiver does: the signature over `<timestamp>.<body>` matches, and the
/// timestamp is recent.
fn verify(received: &Received, secret: &str) {
    let timestamp = received.header("x-lectern-timestamp");
    let expected = format!(
        "v1={}",
        hmac_sha256(
            secret.as_bytes(),
            format!("{timestamp}.{}", received.body).as_bytes()
        )
    );
    assert_eq!(received.header("x-lectern-signature"), expected);
    let sent: u64 = timestamp.parse().expect("a Unix time");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(now.abs_diff(sent) < 300, "timestamp {sent}, now {now}");
    let body = received.json();
    assert_eq!(received.header("x-lectern-delivery"), body["id"]);
    assert_eq!(received.header("x-lectern-event"), body["event"]);
    assert_eq!(received.header("content-type"), "application/json");
}

/// A classroom with its teacher and one student who has not joined yet.
struct Class {
    id: String,
    join_code: String,
    teacher: Session,
    student: Session,
}

async fn class(api: &Api) -> Class {
    let teacher = api.register("teacher@example.edu", "faculty").await;
    let (status, body) = api
        .post(
            "/classrooms",
            Some(&teacher.access),
            json!({"name": "Physics"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{} {body}", api.backend);
    let student = api.register("student@example.edu", "student").await;
    Class {
        id: body["id"].as_str().expect("id").to_owned(),
        join_code: body["join_code"].as_str().expect("code").to_owned(),
        teacher,
        student,
    }
}

/// Registers a webhook as the teacher; returns (id, secret).
async fn register(api: &Api, class: &Class, url: &str, events: &[&str]) -> (String, String) {
    let (status, body) = api
        .post(
            &format!("/classrooms/{}/webhooks", class.id),
            Some(&class.teacher.access),
            json!({"url": url, "events": events}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{} {body}", api.backend);
    (
        body["id"].as_str().expect("id").to_owned(),
        body["secret"].as_str().expect("secret").to_owned(),
    )
}

/// The webhook's delivery log.
async fn deliveries(api: &Api, class: &Class, webhook: &str) -> Vec<Value> {
    let (status, body) = api
        .get(
            &format!("/classrooms/{}/webhooks/{webhook}/deliveries", class.id),
            Some(&class.teacher.access),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{} {body}", api.backend);
    body.as_array().expect("a list").clone()
}

/// The webhook's delivery log once no delivery in it is pending: the receiver answers
/// before the server records the outcome, so the log can lag what the receiver saw by a
/// moment.
async fn settled_log(api: &Api, class: &Class, webhook: &str) -> Vec<Value> {
    let wait = async {
        loop {
            let log = deliveries(api, class, webhook).await;
            if log.iter().all(|row| row["state"] != "pending") {
                return log;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(DEADLINE, wait)
        .await
        .expect("deliveries settle")
}

/// Sends `count` edits of `doc_id` at once, then waits until the room applied them (it
/// answers a sync step 1 after handling everything sent before it).
async fn edit_burst(api: &Api, doc_id: &str, token: &str, count: usize) {
    let mut socket = connect(&api.server().ws(&format!("/ws/{doc_id}?token={token}"))).await;
    let doc = Doc::new();
    let text = doc.get_or_insert_text("content");
    for n in 0..count {
        let update = {
            let mut txn = doc.transact_mut();
            text.push(&mut txn, &format!("edit {n}. "));
            txn.encode_update_v1()
        };
        let message = yrs::sync::Message::Sync(yrs::sync::SyncMessage::Update(update));
        socket
            .send(Message::Binary(message.encode_v1().into()))
            .await
            .expect("send");
    }
    let step1 = yrs::sync::Message::Sync(yrs::sync::SyncMessage::SyncStep1(StateVector::default()));
    socket
        .send(Message::Binary(step1.encode_v1().into()))
        .await
        .expect("send step 1");
    let applied = async {
        while let Some(message) = socket.next().await {
            if let Message::Binary(bytes) = message.expect("socket")
                && let Ok(yrs::sync::Message::Sync(yrs::sync::SyncMessage::SyncStep2(_))) =
                    <yrs::sync::Message as yrs::updates::decoder::Decode>::decode_v1(&bytes)
            {
                return;
            }
        }
        panic!("closed before the state came");
    };
    tokio::time::timeout(DEADLINE, applied)
        .await
        .expect("edits applied");
    let _ = socket.close(None).await;
}

#[tokio::test]
async fn classroom_events_reach_the_receiver_signed() {
    for api in servers(quick).await {
        let backend = api.backend;
        let receiver = Receiver::start(0).await;
        let class = class(&api).await;
        let (webhook, secret) = register(
            &api,
            &class,
            &receiver.url(),
            &[
                "member.joined",
                "session.started",
                "session.ended",
                "document.updated",
            ],
        )
        .await;
        assert!(secret.starts_with("whsec_"), "{backend}: {secret}");

        // member.joined
        let (status, body) = api
            .post(
                "/classrooms/join",
                Some(&class.student.access),
                json!({"join_code": class.join_code}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{backend} {body}");
        let joined = receiver.delivered("member.joined", |_| true).await;
        verify(&joined, &secret);
        let body = joined.json();
        assert_eq!(body["classroom_id"], json!(class.id), "{backend}");
        assert_eq!(
            body["data"],
            json!({"user_id": class.student.user_id, "role": "student"}),
            "{backend}"
        );
        // Joining again is not news.
        let (status, _) = api
            .post(
                "/classrooms/join",
                Some(&class.student.access),
                json!({"join_code": class.join_code}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);

        // session.started
        let (status, session) = api
            .post(
                &format!("/classrooms/{}/sessions", class.id),
                Some(&class.teacher.access),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{backend} {session}");
        let session_id = session["id"].as_str().expect("session id").to_owned();
        let started = receiver.delivered("session.started", |_| true).await;
        verify(&started, &secret);
        assert_eq!(
            started.json()["data"],
            json!({"session_id": session_id, "started_by": class.teacher.user_id}),
            "{backend}"
        );

        // A burst of edits: one document.updated once the document is quiet.
        let notes = format!("session/{session_id}/notes");
        edit_burst(&api, &notes, &class.student.access, 5).await;
        let updated = receiver
            .delivered("document.updated", |body| {
                body["data"]["doc_id"] == json!(notes)
            })
            .await;
        verify(&updated, &secret);

        // session.ended, after which nothing about the burst can still be on its way.
        let (status, body) = api
            .post(
                &format!("/sessions/{session_id}/end"),
                Some(&class.teacher.access),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{backend} {body}");
        let ended = receiver.delivered("session.ended", |_| true).await;
        verify(&ended, &secret);

        let received = receiver.received();
        let count = |event: &str| received.iter().filter(|r| r.event() == event).count();
        assert_eq!(count("member.joined"), 1, "{backend}: {received:#?}");
        assert_eq!(count("session.started"), 1, "{backend}");
        let notes_updates = received
            .iter()
            .filter(|r| {
                r.event() == "document.updated" && r.json()["data"]["doc_id"] == json!(notes)
            })
            .count();
        assert_eq!(notes_updates, 1, "{backend}: {received:#?}");
        // Every delivery has its own id.
        let mut ids: Vec<&str> = received
            .iter()
            .map(|r| r.header("x-lectern-delivery"))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), received.len(), "{backend}");

        // The log shows them delivered, newest first; listing never shows the secret.
        let log = settled_log(&api, &class, &webhook).await;
        assert_eq!(log.len(), received.len(), "{backend}: {log:#?}");
        assert_eq!(log[0]["event"], "session.ended", "{backend}");
        assert!(
            log.iter()
                .all(|row| row["state"] == "delivered" && row["attempts"] == 1),
            "{backend}: {log:#?}"
        );
        let (status, listed) = api
            .get(
                &format!("/classrooms/{}/webhooks", class.id),
                Some(&class.teacher.access),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(listed[0]["id"], json!(webhook), "{backend}");
        assert!(listed[0].get("secret").is_none(), "{backend}: {listed}");
        api.stop().await;
    }
}

#[tokio::test]
async fn failing_receivers_are_retried_and_finally_given_up_on() {
    let adjust = |config: &mut Config| {
        quick(config);
        config.webhook_retry_for_secs = 1;
    };
    for api in servers(adjust).await {
        let backend = api.backend;
        let flaky = Receiver::start(2).await;
        let dead = Receiver::start(ALWAYS).await;
        let class = class(&api).await;
        let (flaky_hook, secret) = register(&api, &class, &flaky.url(), &["session.started"]).await;
        let (dead_hook, _) = register(&api, &class, &dead.url(), &["session.started"]).await;
        let (status, body) = api
            .post(
                &format!("/classrooms/{}/sessions", class.id),
                Some(&class.teacher.access),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{backend} {body}");

        // Two 500s, then delivered: three attempts of the same delivery, each signed.
        let delivered = flaky.delivered("session.started", |_| true).await;
        let attempts = flaky.received();
        assert_eq!(
            attempts.iter().map(|r| r.status).collect::<Vec<_>>(),
            [500, 500, 204],
            "{backend}"
        );
        for attempt in &attempts {
            verify(attempt, &secret);
            assert_eq!(
                attempt.header("x-lectern-delivery"),
                delivered.header("x-lectern-delivery"),
                "{backend}"
            );
        }
        let log = settled_log(&api, &class, &flaky_hook).await;
        assert_eq!(
            (
                &log[0]["state"],
                &log[0]["attempts"],
                &log[0]["last_status"]
            ),
            (&json!("delivered"), &json!(3), &json!(204)),
            "{backend}: {log:#?}"
        );

        // Always 500: retried until the delivery is older than the retry window, then
        // failed in the log with the last answer.
        let wait = async {
            loop {
                let log = deliveries(&api, &class, &dead_hook).await;
                if log[0]["state"] != "pending" {
                    return log;
                }
                // Look again after the next attempt (or a moment, should the last attempt
                // have come between reading the log and here).
                let _ =
                    tokio::time::timeout(Duration::from_millis(500), dead.inner.changed.notified())
                        .await;
            }
        };
        let log = tokio::time::timeout(DEADLINE, wait)
            .await
            .expect("given up within the deadline");
        assert_eq!(log[0]["state"], "failed", "{backend}: {log:#?}");
        assert_eq!(log[0]["last_status"], 500, "{backend}");
        assert!(
            log[0]["last_error"]
                .as_str()
                .is_some_and(|error| error.starts_with("HTTP 500")),
            "{backend}: {log:#?}"
        );
        let attempts = log[0]["attempts"].as_u64().expect("attempts");
        assert!(attempts >= 2, "{backend}: {attempts}");
        assert_eq!(
            u64::try_from(dead.received().len()).expect("count"),
            attempts,
            "{backend}"
        );
        api.stop().await;
    }
}

#[tokio::test]
async fn a_restart_resumes_pending_deliveries() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut urls = vec![(
        "sqlite",
        format!("sqlite://{}", dir.path().join("shared.db").display()),
    )];
    if let Some(url) = lectern_db::testing::postgres_url().await {
        urls.push(("postgres", url));
    }
    for (backend, url) in urls {
        let receiver = Receiver::start(ALWAYS).await;
        let first = {
            let url = url.clone();
            TestServer::start(move |config| {
                quick(config);
                config.database_url = Some(url);
            })
            .await
        };
        let api = Api::on(first);
        let class = class(&api).await;
        let (_, secret) = register(&api, &class, &receiver.url(), &["session.started"]).await;
        let (status, body) = api
            .post(
                &format!("/classrooms/{}/sessions", class.id),
                Some(&class.teacher.access),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{backend} {body}");
        // The first server tried (and failed); stop it with the delivery pending.
        receiver
            .wait_until("a first attempt", |received| !received.is_empty())
            .await;
        api.stop().await;
        let before = receiver.received();
        assert!(before.iter().all(|r| r.status == 500), "{backend}");
        let id = before[0].header("x-lectern-delivery").to_owned();

        // A new server on the same database delivers it.
        receiver.recover();
        let second = TestServer::start(move |config| {
            quick(config);
            config.database_url = Some(url);
        })
        .await;
        let delivered = receiver.delivered("session.started", |_| true).await;
        verify(&delivered, &secret);
        assert_eq!(delivered.header("x-lectern-delivery"), id, "{backend}");
        second.stop().await;
    }
}

#[tokio::test]
async fn only_faculty_register_webhooks_and_only_to_public_addresses() {
    // Without --webhooks-allow-private.
    for api in servers(|_| {}).await {
        let backend = api.backend;
        let class = class(&api).await;
        let (status, _) = api
            .post(
                "/classrooms/join",
                Some(&class.student.access),
                json!({"join_code": class.join_code}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let path = format!("/classrooms/{}/webhooks", class.id);
        let receiver = Receiver::start(0).await;
        for url in [
            receiver.url(),
            "http://[::1]/hook".to_owned(),
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "http://10.0.0.1/".to_owned(),
            "http://[::ffff:127.0.0.1]/".to_owned(),
            "http://localhost:9/".to_owned(),
        ] {
            let (status, body) = api
                .post(
                    &path,
                    Some(&class.teacher.access),
                    json!({"url": url, "events": ["session.started"]}),
                )
                .await;
            assert_eq!(
                (status, code(&body)),
                (StatusCode::BAD_REQUEST, "webhook_address_refused"),
                "{backend}: {url} {body}"
            );
        }
        for (url, events) in [
            ("ftp://example.com/", json!(["session.started"])),
            ("http://user:pw@example.com/", json!(["session.started"])),
            ("not a url", json!(["session.started"])),
            ("https://example.com/", json!(["session.paused"])),
            ("https://example.com/", json!([])),
        ] {
            let (status, body) = api
                .post(
                    &path,
                    Some(&class.teacher.access),
                    json!({"url": url, "events": events}),
                )
                .await;
            assert_eq!(
                (status, code(&body)),
                (StatusCode::BAD_REQUEST, "invalid_request"),
                "{backend}: {url} {events} {body}"
            );
        }
        // Students may neither register nor list; nothing was registered.
        let (status, body) = api
            .post(
                &path,
                Some(&class.student.access),
                json!({"url": "https://example.com/", "events": ["session.started"]}),
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{backend}"
        );
        let (status, _) = api.get(&path, Some(&class.student.access)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{backend}");
        let (status, listed) = api.get(&path, Some(&class.teacher.access)).await;
        assert_eq!((status, listed), (StatusCode::OK, json!([])), "{backend}");
        api.stop().await;
    }
}

#[tokio::test]
async fn deleted_webhooks_get_nothing_more() {
    let api = crate::api::sqlite(quick).await;
    let receiver = Receiver::start(0).await;
    let class = class(&api).await;
    let (webhook, _) = register(&api, &class, &receiver.url(), &["session.started"]).await;
    let (kept, _) = register(&api, &class, &receiver.url(), &["session.ended"]).await;
    let path = format!("/classrooms/{}/webhooks/{webhook}", class.id);
    let (status, _) = api.delete(&path, Some(&class.student.access)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api.delete(&path, Some(&class.teacher.access)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.delete(&path, Some(&class.teacher.access)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, listed) = api
        .get(
            &format!("/classrooms/{}/webhooks", class.id),
            Some(&class.teacher.access),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["id"], json!(kept));

    // A session start and end: only the kept webhook's event arrives.
    let (status, session) = api
        .post(
            &format!("/classrooms/{}/sessions", class.id),
            Some(&class.teacher.access),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let session_id = session["id"].as_str().expect("id");
    let (status, _) = api
        .post(
            &format!("/sessions/{session_id}/end"),
            Some(&class.teacher.access),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    receiver.delivered("session.ended", |_| true).await;
    assert!(
        receiver
            .received()
            .iter()
            .all(|r| r.event() == "session.ended"),
        "{:#?}",
        receiver.received()
    );
    api.stop().await;
}

#[tokio::test]
async fn a_finished_ai_job_is_announced() {
    let model = crate::ai::fake_model(crate::ai::say("unused")).await;
    let api = crate::ai::openai_server(&model, quick).await;
    let class = crate::ai::class(&api).await;
    let receiver = Receiver::start(0).await;
    let (status, body) = api
        .post(
            &format!("/classrooms/{}/webhooks", class.id),
            Some(&class.teacher.access),
            json!({"url": receiver.url(), "events": ["ai_job.finished"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let secret = body["secret"].as_str().expect("secret").to_owned();
    // A question about empty notes fails at once, without the model.
    let job = crate::ai::start_ok(
        &api,
        &class,
        &class.student.access,
        json!({"kind": "qa", "prompt": "Where do cells come from?"}),
    )
    .await;
    let job_id = job["job_id"].as_str().expect("id").to_owned();
    let finished = receiver
        .delivered("ai_job.finished", |body| {
            body["data"]["job_id"] == json!(job_id)
        })
        .await;
    verify(&finished, &secret);
    let data = &finished.json()["data"];
    assert_eq!(data["status"], "failed", "{data}");
    assert_eq!(data["kind"], "qa", "{data}");
    assert_eq!(data["session_id"], json!(class.session), "{data}");
    assert_eq!(data["requested_by"], json!(class.student.user_id), "{data}");
    assert_eq!(data["doc_id"], job["doc_id"], "{data}");
    api.stop().await;
}

#[tokio::test]
async fn an_ingested_material_is_announced() {
    let api = crate::api::sqlite(quick).await;
    let class = crate::materials::class(&api).await;
    let receiver = Receiver::start(0).await;
    let (status, body) = api
        .post(
            &format!("/classrooms/{}/webhooks", class.id),
            Some(&class.teacher.access),
            json!({"url": receiver.url(), "events": ["material.ready", "material.failed"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let secret = body["secret"].as_str().expect("secret").to_owned();
    let (status, material) = crate::materials::upload(
        &api,
        &class.id,
        &class.teacher.access,
        "notes.md",
        b"# Cells\n\nNew cells arise only from existing cells.\n".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{material}");
    let material_id = material["id"].as_str().expect("id").to_owned();
    let ready = receiver
        .delivered("material.ready", |body| {
            body["data"]["material_id"] == json!(material_id)
        })
        .await;
    verify(&ready, &secret);
    assert_eq!(
        ready.json()["data"],
        json!({
            "material_id": material_id,
            "file_name": "notes.md",
            "uploaded_by": class.teacher.user_id,
        })
    );
    assert!(
        receiver
            .received()
            .iter()
            .all(|r| r.event() == "material.ready")
    );
    api.stop().await;
}
