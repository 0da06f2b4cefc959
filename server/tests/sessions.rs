//! Live sessions through the real HTTP server, on SQLite and on PostgreSQL: starting,
//! joining, locking, ending, focus and handouts, and who sees which document with which
//! access.

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use yrs::types::ToJson;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Array, Doc, GetString, Map, ReadTxn, StateVector, Text, Transact, Update, WriteTxn};

use crate::api::{Api, Session, code, servers};
use crate::support::{Client, connect};

/// A classroom with its faculty, two enrolled students and one outsider.
pub(crate) struct Class {
    pub(crate) id: String,
    pub(crate) teacher: Session,
    pub(crate) alice: Session,
    pub(crate) bob: Session,
    pub(crate) mallory: Session,
}

pub(crate) async fn class(api: &Api) -> Class {
    let teacher = api.register("teacher@example.edu", "faculty").await;
    let (status, body) = api
        .post(
            "/classrooms",
            Some(&teacher.access),
            json!({"name": "Physics"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{} {body}", api.backend);
    let id = body["id"].as_str().expect("id").to_owned();
    let join_code = body["join_code"].as_str().expect("code").to_owned();
    let alice = api.register("alice@example.edu", "student").await;
    let bob = api.register("bob@example.edu", "student").await;
    let mallory = api.register("mallory@example.edu", "student").await;
    for student in [&alice, &bob] {
        let (status, body) = api
            .post(
                "/classrooms/join",
                Some(&student.access),
                json!({"join_code": join_code}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{} {body}", api.backend);
    }
    Class {
        id,
        teacher,
        alice,
        bob,
        mallory,
    }
}

/// Starts a session as the class's teacher; returns its id.
pub(crate) async fn start(api: &Api, class: &Class) -> String {
    let (status, body) = api
        .post(
            &format!("/classrooms/{}/sessions", class.id),
            Some(&class.teacher.access),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{} {body}", api.backend);
    body["id"].as_str().expect("session id").to_owned()
}

/// `(doc_id, access)` of every listed document.
fn documents(session: &Value) -> Vec<(String, String)> {
    session["documents"]
        .as_array()
        .expect("documents")
        .iter()
        .map(|document| {
            (
                document["doc_id"].as_str().expect("doc_id").to_owned(),
                document["access"].as_str().expect("access").to_owned(),
            )
        })
        .collect()
}

/// The session's own four documents: notes, mindmap and chat with `access`, and the
/// server-owned `lectern` document, which every member only reads.
fn session_documents(session_id: &str, access: &str) -> Vec<(String, String)> {
    ["notes", "mindmap", "chat"]
        .into_iter()
        .map(|kind| (format!("session/{session_id}/{kind}"), access.to_owned()))
        .chain([(format!("session/{session_id}/lectern"), "read".to_owned())])
        .collect()
}

#[tokio::test]
async fn faculty_start_lock_and_end_sessions_that_students_join() {
    for api in servers(|_| {}).await {
        let backend = api.backend;
        let class = class(&api).await;
        let (status, body) = api
            .post(
                &format!("/classrooms/{}/sessions", class.id),
                Some(&class.alice.access),
                json!({}),
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{backend}: students cannot start sessions"
        );

        let (status, started) = api
            .post(
                &format!("/classrooms/{}/sessions", class.id),
                Some(&class.teacher.access),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{backend} {started}");
        let id = started["id"].as_str().expect("id").to_owned();
        assert_eq!(started["state"], "live");
        assert_eq!(started["classroom_id"], class.id.as_str());
        assert_eq!(started["started_by"], class.teacher.user_id.as_str());
        assert_eq!(started["ended_at"], Value::Null);
        assert_eq!(documents(&started), session_documents(&id, "write"));
        assert_eq!(started["documents"][2]["kind"], "chat");

        let (status, body) = api
            .post(
                &format!("/classrooms/{}/sessions", class.id),
                Some(&class.teacher.access),
                json!({}),
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::CONFLICT, "session_already_running"),
            "{backend}"
        );

        // Students find the running session and join it with write access.
        let (status, current) = api
            .get(
                &format!("/classrooms/{}/sessions/current", class.id),
                Some(&class.alice.access),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{backend} {current}");
        assert_eq!(current["id"], id.as_str());
        let (status, joined) = api
            .get(&format!("/sessions/{id}"), Some(&class.alice.access))
            .await;
        assert_eq!(status, StatusCode::OK, "{backend} {joined}");
        assert_eq!(documents(&joined), session_documents(&id, "write"));

        // Outsiders see nothing; unknown sessions are 404.
        for path in [
            format!("/sessions/{id}"),
            format!("/classrooms/{}/sessions/current", class.id),
        ] {
            let (status, body) = api.get(&path, Some(&class.mallory.access)).await;
            assert_eq!(
                (status, code(&body)),
                (StatusCode::FORBIDDEN, "forbidden"),
                "{backend} {path}"
            );
        }
        let (status, body) = api
            .get("/sessions/no-such-session", Some(&class.alice.access))
            .await;
        assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));

        // Only faculty lock, unlock and end.
        for action in ["lock", "unlock", "end"] {
            let (status, body) = api
                .post(
                    &format!("/sessions/{id}/{action}"),
                    Some(&class.alice.access),
                    json!({}),
                )
                .await;
            assert_eq!(
                (status, code(&body)),
                (StatusCode::FORBIDDEN, "forbidden"),
                "{backend} {action}"
            );
        }

        let (status, locked) = api
            .post(
                &format!("/sessions/{id}/lock"),
                Some(&class.teacher.access),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{backend} {locked}");
        assert_eq!(locked["state"], "locked");
        assert_eq!(
            documents(&locked),
            session_documents(&id, "write"),
            "{backend}: faculty keep writing"
        );
        let (_, seen) = api
            .get(&format!("/sessions/{id}"), Some(&class.bob.access))
            .await;
        assert_eq!(seen["state"], "locked");
        assert_eq!(
            documents(&seen),
            session_documents(&id, "read"),
            "{backend}"
        );

        let (status, unlocked) = api
            .post(
                &format!("/sessions/{id}/unlock"),
                Some(&class.teacher.access),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{backend} {unlocked}");
        let (_, seen) = api
            .get(&format!("/sessions/{id}"), Some(&class.bob.access))
            .await;
        assert_eq!(
            documents(&seen),
            session_documents(&id, "write"),
            "{backend}"
        );

        let (status, ended) = api
            .post(
                &format!("/sessions/{id}/end"),
                Some(&class.teacher.access),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{backend} {ended}");
        assert_eq!(ended["state"], "ended");
        assert!(ended["ended_at"].is_i64(), "{ended}");
        let (_, seen) = api
            .get(&format!("/sessions/{id}"), Some(&class.alice.access))
            .await;
        assert_eq!(seen["state"], "ended");
        assert_eq!(
            documents(&seen),
            session_documents(&id, "read"),
            "{backend}: kept for review, read-only"
        );
        let (status, body) = api
            .get(
                &format!("/classrooms/{}/sessions/current", class.id),
                Some(&class.alice.access),
            )
            .await;
        assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
        for action in ["lock", "unlock", "end"] {
            let (status, body) = api
                .post(
                    &format!("/sessions/{id}/{action}"),
                    Some(&class.teacher.access),
                    json!({}),
                )
                .await;
            assert_eq!(
                (status, code(&body)),
                (StatusCode::CONFLICT, "session_ended"),
                "{backend} {action}"
            );
        }

        // The next session may start; a removed student no longer sees the old one.
        let next = start(&api, &class).await;
        assert_ne!(next, id);
        let (status, _) = api
            .delete(
                &format!("/classrooms/{}/members/{}", class.id, class.bob.user_id),
                Some(&class.teacher.access),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{backend}");
        let (status, body) = api
            .get(&format!("/sessions/{id}"), Some(&class.bob.access))
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{backend}"
        );
        api.stop().await;
    }
}

#[tokio::test]
async fn handouts_give_each_student_a_fork_only_they_and_faculty_open() {
    for api in servers(|_| {}).await {
        let backend = api.backend;
        let class = class(&api).await;
        let id = start(&api, &class).await;

        let (status, body) = api
            .post(
                &format!("/classrooms/{}/templates", class.id),
                Some(&class.alice.access),
                json!({}),
            )
            .await;
        assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
        let (status, template) = api
            .post(
                &format!("/classrooms/{}/templates", class.id),
                Some(&class.teacher.access),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{backend} {template}");
        assert_eq!(template["kind"], "template");
        let template_id = template["doc_id"].as_str().expect("doc_id").to_owned();

        for bad in ["not/registered".to_owned(), format!("session/{id}")] {
            let (status, body) = api
                .post(
                    &format!("/sessions/{id}/handouts"),
                    Some(&class.teacher.access),
                    json!({"template_doc_id": bad}),
                )
                .await;
            assert_eq!(
                (status, code(&body)),
                (StatusCode::BAD_REQUEST, "invalid_request"),
                "{backend} {bad}"
            );
        }
        let (status, body) = api
            .post(
                &format!("/sessions/{id}/handouts"),
                Some(&class.alice.access),
                json!({"template_doc_id": template_id}),
            )
            .await;
        assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));

        let (status, handout) = api
            .post(
                &format!("/sessions/{id}/handouts"),
                Some(&class.teacher.access),
                json!({"template_doc_id": template_id}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{backend} {handout}");
        let forks = handout["forks"].as_array().expect("forks").clone();
        let mut owners: Vec<&str> = forks
            .iter()
            .map(|fork| fork["owner_user_id"].as_str().expect("owner"))
            .collect();
        owners.sort_unstable();
        let mut students = vec![class.alice.user_id.as_str(), class.bob.user_id.as_str()];
        students.sort_unstable();
        assert_eq!(owners, students, "{backend}: one fork per student");
        for fork in &forks {
            assert_eq!(fork["kind"], "fork");
            assert_eq!(fork["template_doc_id"], template_id.as_str());
        }
        let fork_of = |user_id: &str| {
            forks
                .iter()
                .find(|fork| fork["owner_user_id"] == user_id)
                .and_then(|fork| fork["doc_id"].as_str())
                .expect("fork")
                .to_owned()
        };
        let alices_fork = fork_of(&class.alice.user_id);
        let bobs_fork = fork_of(&class.bob.user_id);
        let (status, body) = api
            .post(
                &format!("/sessions/{id}/handouts"),
                Some(&class.teacher.access),
                json!({"template_doc_id": alices_fork}),
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{backend}: forks are not templates"
        );

        // Alice sees the session's documents and her own fork, not Bob's.
        let (_, seen) = api
            .get(&format!("/sessions/{id}"), Some(&class.alice.access))
            .await;
        let mut expected = session_documents(&id, "write");
        expected.push((alices_fork.clone(), "write".into()));
        assert_eq!(documents(&seen), expected, "{backend}");
        // Faculty see every fork.
        let (_, seen) = api
            .get(&format!("/sessions/{id}"), Some(&class.teacher.access))
            .await;
        let listed: Vec<String> = documents(&seen).into_iter().map(|(doc, _)| doc).collect();
        assert!(
            listed.contains(&alices_fork) && listed.contains(&bobs_fork),
            "{backend} {seen}"
        );

        // Handing out again changes nothing.
        let (status, again) = api
            .post(
                &format!("/sessions/{id}/handouts"),
                Some(&class.teacher.access),
                json!({"template_doc_id": template_id}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{backend} {again}");
        assert_eq!(again["forks"], handout["forks"], "{backend}: idempotent");

        // Locking the session leaves a student's own fork writable; ending makes it read-only.
        api.post(
            &format!("/sessions/{id}/lock"),
            Some(&class.teacher.access),
            json!({}),
        )
        .await;
        let (_, seen) = api
            .get(&format!("/sessions/{id}"), Some(&class.alice.access))
            .await;
        let mut expected = session_documents(&id, "read");
        expected.push((alices_fork.clone(), "write".into()));
        assert_eq!(documents(&seen), expected, "{backend}");

        api.post(
            &format!("/sessions/{id}/end"),
            Some(&class.teacher.access),
            json!({}),
        )
        .await;
        let (_, seen) = api
            .get(&format!("/sessions/{id}"), Some(&class.alice.access))
            .await;
        let mut expected = session_documents(&id, "read");
        expected.push((alices_fork, "read".into()));
        assert_eq!(documents(&seen), expected, "{backend}");
        let (status, body) = api
            .post(
                &format!("/sessions/{id}/handouts"),
                Some(&class.teacher.access),
                json!({"template_doc_id": template_id}),
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::CONFLICT, "session_ended"),
            "{backend}"
        );
        api.stop().await;
    }
}

#[tokio::test]
async fn focus_round_trips_to_members() {
    for api in servers(|_| {}).await {
        let backend = api.backend;
        let class = class(&api).await;
        let id = start(&api, &class).await;
        let notes = format!("session/{id}/notes");

        let (status, body) = api
            .get(&format!("/sessions/{id}"), Some(&class.alice.access))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["focus"], Value::Null, "{backend}: no focus at first");

        let focus = json!({"doc_id": notes, "section": "kinematics"});
        let (status, body) = api
            .put(
                &format!("/sessions/{id}/focus"),
                Some(&class.teacher.access),
                focus.clone(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{backend} {body}");
        assert_eq!(body["focus"], focus);
        let (_, seen) = api
            .get(&format!("/sessions/{id}"), Some(&class.alice.access))
            .await;
        assert_eq!(seen["focus"], focus, "{backend}");

        let (status, body) = api
            .put(
                &format!("/sessions/{id}/focus"),
                Some(&class.teacher.access),
                json!({"doc_id": notes}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{backend} {body}");
        assert_eq!(body["focus"], json!({"doc_id": notes, "section": null}));

        let (status, body) = api
            .put(
                &format!("/sessions/{id}/focus"),
                Some(&class.alice.access),
                json!({"doc_id": notes}),
            )
            .await;
        assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
        for bad in [
            json!({"doc_id": "some/other/doc"}),
            json!({"doc_id": notes, "section": "x".repeat(201)}),
            json!({"doc_id": notes, "page": 3}),
        ] {
            let (status, body) = api
                .put(
                    &format!("/sessions/{id}/focus"),
                    Some(&class.teacher.access),
                    bad.clone(),
                )
                .await;
            assert_eq!(
                (status, code(&body)),
                (StatusCode::BAD_REQUEST, "invalid_request"),
                "{backend} {bad}"
            );
        }

        api.post(
            &format!("/sessions/{id}/end"),
            Some(&class.teacher.access),
            json!({}),
        )
        .await;
        let (status, body) = api
            .put(
                &format!("/sessions/{id}/focus"),
                Some(&class.teacher.access),
                json!({"doc_id": notes}),
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::CONFLICT, "session_ended"),
            "{backend}"
        );
        let (_, seen) = api
            .get(&format!("/sessions/{id}"), Some(&class.alice.access))
            .await;
        assert_eq!(
            seen["focus"],
            json!({"doc_id": notes, "section": null}),
            "{backend}: the last focus is kept"
        );
        api.stop().await;
    }
}

/// A bare y-sync client on one document: sends updates, and reads the room's whole state.
pub(crate) struct RawDoc {
    pub(crate) socket: Client,
}

impl RawDoc {
    async fn open(api: &Api, doc_id: &str, token: &str) -> Self {
        Self::open_with(api, doc_id, Some(token)).await
    }

    /// Opens `doc_id` with `token`, or without one.
    pub(crate) async fn open_with(api: &Api, doc_id: &str, token: Option<&str>) -> Self {
        let query = token
            .map(|token| format!("?token={token}"))
            .unwrap_or_default();
        let socket = connect(&api.server().ws(&format!("/ws/{doc_id}{query}"))).await;
        Self { socket }
    }

    /// Sends `edit` (made on an empty replica) as a document update.
    pub(crate) async fn send_edit(&mut self, edit: impl FnOnce(&mut yrs::TransactionMut<'_>)) {
        let doc = Doc::new();
        let update = {
            let mut txn = doc.transact_mut();
            edit(&mut txn);
            txn.encode_update_v1()
        };
        let message = yrs::sync::Message::Sync(yrs::sync::SyncMessage::Update(update));
        self.socket
            .send(Message::Binary(message.encode_v1().into()))
            .await
            .expect("send update");
    }

    /// The room's whole state, asked for with a sync step 1 on this socket. The room handles
    /// a socket's messages in order, so everything sent before has been applied or refused.
    pub(crate) async fn state(&mut self) -> Doc {
        let step1 =
            yrs::sync::Message::Sync(yrs::sync::SyncMessage::SyncStep1(StateVector::default()));
        self.socket
            .send(Message::Binary(step1.encode_v1().into()))
            .await
            .expect("send step 1");
        let read = async {
            while let Some(message) = self.socket.next().await {
                let bytes = match message.expect("socket") {
                    Message::Binary(bytes) => bytes,
                    Message::Close(frame) => panic!("closed: {frame:?}"),
                    _ => continue,
                };
                if let Ok(yrs::sync::Message::Sync(yrs::sync::SyncMessage::SyncStep2(update))) =
                    yrs::sync::Message::decode_v1(&bytes)
                {
                    let doc = Doc::new();
                    let update = Update::decode_v1(&update).expect("update");
                    doc.transact_mut().apply_update(update).expect("apply");
                    return doc;
                }
            }
            panic!("the socket closed before the state came");
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), read)
            .await
            .expect("state within 10 s")
    }
}

/// The `lectern` root map of `doc` as JSON.
fn lectern_json(doc: &Doc) -> Value {
    let map = doc.get_or_insert_map("lectern");
    let txn = doc.transact();
    serde_json::to_value(map.to_json(&txn)).expect("json")
}

#[tokio::test]
async fn a_student_cannot_forge_the_focus_classmates_follow() {
    for api in servers(|_| {}).await {
        let backend = api.backend;
        let class = class(&api).await;
        let id = start(&api, &class).await;
        let notes = format!("session/{id}/notes");
        let lectern = format!("session/{id}/lectern");
        let forge = |txn: &mut yrs::TransactionMut<'_>| {
            let map = txn.get_or_insert_map("lectern");
            map.insert(txn, "focus", "https://evil.example/login");
            map.insert(txn, "ai_clients", "forged");
        };

        // Alice writes a focus into the notes (where the old server put it): the notes are
        // hers to edit, but that is not where classmates read the focus from.
        let mut alices_notes = RawDoc::open(&api, &notes, &class.alice.access).await;
        alices_notes.send_edit(forge).await;
        let notes_state = alices_notes.state().await;
        assert_eq!(
            lectern_json(&notes_state)["focus"],
            "https://evil.example/login",
            "{backend}: students may write their notes"
        );

        // The session's lectern document: every member reads it, nobody writes it. Alice's
        // update is refused (not applied) and her socket stays open.
        let mut alices_lectern = RawDoc::open(&api, &lectern, &class.alice.access).await;
        alices_lectern.send_edit(forge).await;
        assert_eq!(
            lectern_json(&alices_lectern.state().await),
            json!({"state": "live"}),
            "{backend}: a student's write to the server-owned document is refused"
        );
        let mut teachers_lectern = RawDoc::open(&api, &lectern, &class.teacher.access).await;
        teachers_lectern.send_edit(forge).await;
        assert_eq!(
            lectern_json(&teachers_lectern.state().await),
            json!({"state": "live"}),
            "{backend}: faculty speak through the API, not the socket"
        );

        let focus = json!({"doc_id": notes, "section": "kinematics"});
        let (status, body) = api
            .put(
                &format!("/sessions/{id}/focus"),
                Some(&class.teacher.access),
                focus.clone(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{backend} {body}");
        let mut bobs_lectern = RawDoc::open(&api, &lectern, &class.bob.access).await;
        let seen = lectern_json(&bobs_lectern.state().await);
        assert_eq!(
            seen,
            json!({"state": "live", "focus": focus}),
            "{backend}: what Bob follows"
        );
        // Alice's refused socket is still open and sees it too.
        assert_eq!(lectern_json(&alices_lectern.state().await), seen);
        // The server no longer writes the focus into documents students edit.
        let notes_state = alices_notes.state().await;
        assert_eq!(
            lectern_json(&notes_state)["focus"],
            "https://evil.example/login",
            "{backend}: the notes keep only what Alice wrote"
        );
        // Outsiders cannot read it.
        let mut mallorys = RawDoc::open(&api, &lectern, &class.mallory.access).await;
        assert_eq!(
            crate::support::close_code(&mut mallorys.socket).await,
            Some(4403),
            "{backend}"
        );
        api.stop().await;
    }
}

#[tokio::test]
async fn session_state_and_handouts_are_pushed_in_the_lectern_document() {
    for api in servers(|_| {}).await {
        let backend = api.backend;
        let class = class(&api).await;
        let id = start(&api, &class).await;
        let lectern = format!("session/{id}/lectern");
        let mut alices = RawDoc::open(&api, &lectern, &class.alice.access).await;
        assert_eq!(
            lectern_json(&alices.state().await)["state"],
            "live",
            "{backend}: written when the session starts"
        );

        // Lock and unlock change Alice's access in place: the state in the document is how
        // her open page learns of it.
        for (action, state) in [("lock", "locked"), ("unlock", "live"), ("lock", "locked")] {
            let (status, body) = api
                .post(
                    &format!("/sessions/{id}/{action}"),
                    Some(&class.teacher.access),
                    json!({}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{backend} {body}");
            assert_eq!(
                lectern_json(&alices.state().await)["state"],
                state,
                "{backend}: after {action}"
            );
        }

        // A handout is announced by template, with when it happened.
        let (status, template) = api
            .post(
                &format!("/classrooms/{}/templates", class.id),
                Some(&class.teacher.access),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{backend} {template}");
        let template_id = template["doc_id"].as_str().expect("doc_id").to_owned();
        let (status, body) = api
            .post(
                &format!("/sessions/{id}/handouts"),
                Some(&class.teacher.access),
                json!({"template_doc_id": template_id}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{backend} {body}");
        let handouts = lectern_json(&alices.state().await)["handouts"].clone();
        let at = handouts[&template_id].as_f64();
        assert!(
            at.is_some_and(|at| at > 1.0e9),
            "{backend}: {handouts} names the template with a unix time"
        );

        let (status, body) = api
            .post(
                &format!("/sessions/{id}/end"),
                Some(&class.teacher.access),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{backend} {body}");
        assert_eq!(
            crate::support::close_code(&mut alices.socket).await,
            Some(4410),
            "{backend}"
        );
        let mut review = RawDoc::open(&api, &lectern, &class.alice.access).await;
        assert_eq!(
            lectern_json(&review.state().await)["state"],
            "ended",
            "{backend}: after end"
        );
        api.stop().await;
    }
}

#[tokio::test]
async fn a_classrooms_sessions_are_listed_for_members_newest_first_for_review() {
    for api in servers(|_| {}).await {
        let backend = api.backend;
        let class = class(&api).await;
        let list = |token: String| {
            let api = &api;
            let path = format!("/classrooms/{}/sessions", class.id);
            async move { api.get(&path, Some(&token)).await }
        };
        let (status, empty) = list(class.alice.access.clone()).await;
        assert_eq!(
            (status, empty.clone()),
            (StatusCode::OK, json!([])),
            "{backend}"
        );

        let first = start(&api, &class).await;
        let (status, body) = api
            .post(
                &format!("/sessions/{first}/end"),
                Some(&class.teacher.access),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{backend} {body}");
        let second = start(&api, &class).await;

        let (status, listed) = list(class.alice.access.clone()).await;
        assert_eq!(status, StatusCode::OK, "{backend} {listed}");
        let summary: Vec<(String, String, bool)> = listed
            .as_array()
            .expect("a list")
            .iter()
            .map(|session| {
                (
                    session["id"].as_str().expect("id").to_owned(),
                    session["state"].as_str().expect("state").to_owned(),
                    session["ended_at"].is_null(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (second.clone(), "live".to_owned(), true),
                (first.clone(), "ended".to_owned(), false),
            ],
            "{backend}: the running session first, then the ended one"
        );

        // The ended one opens for review: a student reads its documents.
        let (status, review) = api
            .get(&format!("/sessions/{first}"), Some(&class.alice.access))
            .await;
        assert_eq!(status, StatusCode::OK, "{backend} {review}");
        assert_eq!(documents(&review), session_documents(&first, "read"));

        let (status, body) = list(class.mallory.access.clone()).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{backend}: outsiders see no sessions"
        );
    }
}

/// `GET /api/v1{path}` as bytes, with its status and content type.
async fn get_raw(api: &Api, path: &str, token: Option<&str>) -> (StatusCode, String, Vec<u8>) {
    let request = api
        .client()
        .get(api.server().http(&format!("/api/v1{path}")));
    let request = match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let response = request.send().await.expect("request");
    let status = response.status();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = response.bytes().await.expect("body").to_vec();
    (status, content_type, bytes)
}

/// The `content` text of `doc`.
fn content_of(doc: &Doc) -> String {
    let text = doc.get_or_insert_text("content");
    text.get_string(&doc.transact())
}

#[tokio::test]
async fn a_document_is_read_over_rest_as_json_markdown_or_a_yjs_update() {
    const API_KEY: &str = "embedder-secret-key-of-at-least-32-bytes";
    for api in servers(|config| config.api_key = Some(API_KEY.into())).await {
        let backend = api.backend;
        let class = class(&api).await;
        let id = start(&api, &class).await;
        let notes = format!("session/{id}/notes");
        // The id is one path segment, its slashes percent-encoded.
        let path = |query: &str| format!("/documents/{}{query}", notes.replace('/', "%2F"));
        let mut alices = RawDoc::open(&api, &notes, &class.alice.access).await;
        let first = "# Cells\n\nMitochondria make ATP.";
        alices
            .send_edit(|txn| {
                txn.get_or_insert_text("content").insert(txn, 0, first);
            })
            .await;
        assert_eq!(content_of(&alices.state().await), first, "{backend}");

        // JSON: the roots by name, read by a classmate.
        let (status, body) = api.get(&path(""), Some(&class.bob.access)).await;
        assert_eq!(status, StatusCode::OK, "{backend} {body}");
        assert_eq!(body, json!({"content": first}), "{backend}");

        // Markdown: the text itself.
        let (status, content_type, bytes) =
            get_raw(&api, &path("?format=markdown"), Some(&class.bob.access)).await;
        assert_eq!(status, StatusCode::OK, "{backend}");
        assert!(
            content_type.starts_with("text/markdown"),
            "{backend} {content_type}"
        );
        assert_eq!(String::from_utf8(bytes).expect("utf-8"), first);

        // A Yjs update: the whole state applied to a fresh document equals the live one...
        let (status, content_type, bytes) =
            get_raw(&api, &path("?format=update"), Some(&class.bob.access)).await;
        assert_eq!(status, StatusCode::OK, "{backend}");
        assert_eq!(content_type, "application/octet-stream");
        let replica = Doc::new();
        replica
            .transact_mut()
            .apply_update(Update::decode_v1(&bytes).expect("an update"))
            .expect("apply");
        assert_eq!(content_of(&replica), first, "{backend}");
        // ...and with the replica's state vector, only what it lacks brings it up to date.
        alices
            .send_edit(|txn| {
                txn.get_or_insert_text("more").insert(txn, 0, "x");
            })
            .await;
        let live = alices.state().await;
        let sv = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(replica.transact().state_vector().encode_v1());
        let (status, _, diff) = get_raw(
            &api,
            &path(&format!("?format=update&sv={sv}")),
            Some(&class.bob.access),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{backend}");
        assert!(
            diff.len() < bytes.len(),
            "{backend}: a diff, not the whole state"
        );
        replica
            .transact_mut()
            .apply_update(Update::decode_v1(&diff).expect("a diff"))
            .expect("apply");
        assert_eq!(
            replica.transact().state_vector(),
            live.transact().state_vector(),
            "{backend}: the diff brought the replica to the live state"
        );

        // A read-only document token of the embedder model reads it too.
        let (status, minted) = api
            .post(
                "/doc-tokens",
                Some(API_KEY),
                json!({"doc": notes, "access": "read"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{backend} {minted}");
        let (status, _) = api.get(&path(""), minted["token"].as_str()).await;
        assert_eq!(status, StatusCode::OK, "{backend}");

        // Roots the server writes are read as their types: the lectern document's map.
        let lectern = format!("/documents/session%2F{id}%2Flectern");
        let (status, body) = api.get(&lectern, Some(&class.bob.access)).await;
        assert_eq!(status, StatusCode::OK, "{backend} {body}");
        assert_eq!(body["lectern"]["state"], "live", "{backend} {body}");

        // An embedder's document, whose roots no client of ours writes: read by what they
        // hold (a map, a text, an array).
        let (status, full) = api
            .post(
                "/doc-tokens",
                Some(API_KEY),
                json!({"doc": "course/board", "access": "full"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{backend} {full}");
        let full = full["token"].as_str().expect("token");
        let mut board = RawDoc::open(&api, "course/board", full).await;
        board
            .send_edit(|txn| {
                txn.get_or_insert_map("cards")
                    .insert(txn, "a", "Mitochondria");
                txn.get_or_insert_text("title").insert(txn, 0, "Cells");
                txn.get_or_insert_array("order").push_back(txn, "a");
            })
            .await;
        board.state().await;
        let (status, body) = api.get("/documents/course%2Fboard", Some(full)).await;
        assert_eq!(status, StatusCode::OK, "{backend} {body}");
        assert_eq!(
            body,
            json!({"cards": {"a": "Mitochondria"}, "title": "Cells", "order": ["a"]}),
            "{backend}"
        );

        // Refused: an outsider, no token, a malformed state vector, Markdown of a document
        // without a text body.
        let (status, body) = api.get(&path(""), Some(&class.mallory.access)).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{backend}"
        );
        let (status, body) = api.get(&path(""), None).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNAUTHORIZED, "unauthenticated"),
            "{backend}"
        );
        let (status, body) = api
            .get(&path("?format=update&sv=%21%21"), Some(&class.bob.access))
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{backend}"
        );
        let chat = format!("/documents/session%2F{id}%2Fchat?format=markdown");
        let (status, body) = api.get(&chat, Some(&class.bob.access)).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{backend}"
        );
    }
}
