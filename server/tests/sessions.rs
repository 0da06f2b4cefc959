//! Live sessions through the real HTTP server, on SQLite and on PostgreSQL: starting,
//! joining, locking, ending, focus and handouts, and who sees which document with which
//! access.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api::{Api, Session, code, servers};

/// A classroom with its faculty, two enrolled students and one outsider.
struct Class {
    id: String,
    teacher: Session,
    alice: Session,
    bob: Session,
    mallory: Session,
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
async fn start(api: &Api, class: &Class) -> String {
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

/// The session's own three documents, all with `access`.
fn session_documents(session_id: &str, access: &str) -> Vec<(String, String)> {
    ["notes", "mindmap", "chat"]
        .into_iter()
        .map(|kind| (format!("session/{session_id}/{kind}"), access.to_owned()))
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
