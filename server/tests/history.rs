//! After class: documents written over REST, versions kept and restored while clients are
//! connected, and who contributed what — through the real server and real y-sync clients.

use reqwest::StatusCode;
use serde_json::{Value, json};
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, WriteTxn};

use crate::ai::{
    Class, Watcher, class, fake_model, finished, notes_doc, notes_text, openai_server, say,
    start_ok, upload_cells,
};
use crate::api::{Api, code};

/// `/documents/{doc}...` with the id as one percent-encoded segment.
fn doc_path(doc: &str, rest: &str) -> String {
    format!("/documents/{}{rest}", doc.replace('/', "%2F"))
}

/// Text length as Yjs (and the contributions report) counts it: UTF-16 code units.
fn len16(text: &str) -> i64 {
    i64::try_from(text.encode_utf16().count()).expect("small")
}

/// POSTs a binary update; returns the status and the JSON body.
async fn post_update(
    api: &Api,
    doc: &str,
    token: Option<&str>,
    bytes: Vec<u8>,
) -> (StatusCode, Value) {
    let mut request = api
        .client()
        .post(
            api.server()
                .http(&format!("/api/v1{}", doc_path(doc, "/update"))),
        )
        .header("content-type", "application/octet-stream")
        .body(bytes);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// The contribution row of `user_id` in a report.
fn person<'a>(report: &'a Value, user_id: &str) -> &'a Value {
    report["people"]
        .as_array()
        .expect("people")
        .iter()
        .find(|row| row["user_id"] == user_id)
        .unwrap_or_else(|| panic!("{user_id} in {report}"))
}

fn reasons(versions: &Value) -> Vec<String> {
    versions
        .as_array()
        .expect("versions")
        .iter()
        .map(|version| version["reason"].as_str().expect("reason").to_owned())
        .collect()
}

#[tokio::test]
async fn a_vandalised_note_is_restored_live_and_contributions_count_exactly_what_each_wrote() {
    const AI_NOTES: &str = "## Cells\n- Cells are the basic unit of life.\n";
    let model = fake_model(say(AI_NOTES)).await;
    // A short log: compaction runs several times during the test and must keep history.
    let api = openai_server(&model, |config| config.compact_after_updates = 3).await;
    let class: Class = class(&api).await;
    upload_cells(&api, &class).await;
    let notes = notes_doc(&class);
    let mut teacher = Watcher::open(api.server(), &notes, &class.teacher.access).await;
    let mut student = Watcher::open(api.server(), &notes, &class.student.access).await;

    // Two people type, in several updates each, and the student deletes a little.
    for word in ["Intro ", "by ", "the class. "] {
        student
            .edit(|txn| {
                let text = txn.get_or_insert_text("content");
                let end = text.len(txn);
                text.insert(txn, end, word);
            })
            .await;
    }
    student
        .edit(|txn| {
            let text = txn.get_or_insert_text("content");
            let end = text.len(txn);
            text.remove_range(txn, end - 1, 1); // the trailing space
        })
        .await;
    let teacher_typed = "Teacher: read p. 3. ";
    teacher
        .until(|doc| (notes_text(doc) == "Intro by the class.").then_some(()))
        .await;
    teacher
        .edit(|txn| {
            let text = txn.get_or_insert_text("content");
            text.insert(txn, 0, teacher_typed);
        })
        .await;
    let before_ai = format!("{teacher_typed}Intro by the class.");
    student
        .until(|doc| (notes_text(doc) == before_ai).then_some(()))
        .await;

    // An AI job the teacher started writes its notes.
    let job = start_ok(
        &api,
        &class,
        &class.teacher.access,
        json!({"kind": "notes"}),
    )
    .await;
    let job_id = job["job_id"].as_str().expect("job").to_owned();
    assert_eq!(
        finished(&api, &class.teacher.access, &job_id).await["status"],
        "done"
    );
    let good = teacher
        .until(|doc| notes_text(doc).ends_with(AI_NOTES).then(|| notes_text(doc)))
        .await;
    student
        .until(|doc| (notes_text(doc) == good).then_some(()))
        .await;

    // The teacher keeps a checkpoint; a student cannot.
    let (status, body) = api
        .post(
            &doc_path(&notes, "/versions"),
            Some(&class.student.access),
            json!({"label": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, checkpoint) = api
        .post(
            &doc_path(&notes, "/versions"),
            Some(&class.teacher.access),
            json!({"label": "after the AI notes"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{checkpoint}");
    assert_eq!(checkpoint["label"], "after the AI notes");
    let version = checkpoint["id"].as_i64().expect("id");

    // The student vandalises the notes.
    let vandalism = "JUNK";
    student
        .edit(|txn| {
            let text = txn.get_or_insert_text("content");
            let end = text.len(txn);
            text.remove_range(txn, 0, end);
            text.insert(txn, 0, vandalism);
        })
        .await;
    teacher
        .until(|doc| (notes_text(doc) == vandalism).then_some(()))
        .await;

    // History: the session start, both sides of the AI job and the checkpoint.
    let (status, versions) = api
        .get(&doc_path(&notes, "/versions"), Some(&class.student.access))
        .await;
    assert_eq!(status, StatusCode::OK, "{versions}");
    let reasons = reasons(&versions);
    for expected in [
        "session_started",
        "before_ai_job",
        "after_ai_job",
        "checkpoint",
    ] {
        assert!(
            reasons.contains(&expected.to_owned()),
            "{expected} in {reasons:?}"
        );
    }
    // The version reads as it was.
    let (status, as_was) = api
        .get(
            &doc_path(&notes, &format!("/versions/{version}")),
            Some(&class.student.access),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{as_was}");
    assert_eq!(as_was["content"], good.as_str());

    // Only faculty restore; the teacher's restore reaches both connected clients live.
    let restore = doc_path(&notes, &format!("/versions/{version}/restore"));
    let (status, body) = api
        .post(&restore, Some(&class.student.access), json!({}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, restored) = api
        .post(&restore, Some(&class.teacher.access), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{restored}");
    assert_eq!(restored["changed"], true);
    teacher
        .until(|doc| (notes_text(doc) == good).then_some(()))
        .await;
    student
        .until(|doc| (notes_text(doc) == good).then_some(()))
        .await;
    // The restore itself is undone by restoring the version kept just before it.
    let before_restore = restored["before_restore"].as_i64().expect("before_restore");
    let (status, body) = api
        .post(
            &doc_path(&notes, &format!("/versions/{before_restore}/restore")),
            Some(&class.teacher.access),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    student
        .until(|doc| (notes_text(doc) == vandalism).then_some(()))
        .await;
    let (status, _) = api
        .post(&restore, Some(&class.teacher.access), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    student
        .until(|doc| (notes_text(doc) == good).then_some(()))
        .await;

    // Contributions: exactly what each typed; the AI's text counts for who asked for it;
    // restores count for nobody.
    let contributions = format!("/sessions/{}/contributions", class.session);
    let (status, body) = api.get(&contributions, Some(&class.student.access)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, report) = api.get(&contributions, Some(&class.teacher.access)).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let student_row = person(&report, &class.student.user_id);
    assert_eq!(
        student_row["inserted"],
        len16("Intro by the class. ") + len16(vandalism),
        "{report}"
    );
    assert_eq!(
        student_row["deleted"],
        1 + len16(&good),
        "the trailing space, then everything: {report}"
    );
    assert_eq!(student_row["ai_inserted"], 0, "{report}");
    let teacher_row = person(&report, &class.teacher.user_id);
    assert_eq!(teacher_row["inserted"], len16(teacher_typed), "{report}");
    assert_eq!(teacher_row["deleted"], 0, "{report}");
    assert_eq!(
        teacher_row["ai_inserted"],
        len16(&good) - len16(&before_ai),
        "the AI's region, separator included: {report}"
    );
    assert!(teacher_row["active_minutes"].as_i64().expect("minutes") >= 1);
    assert!(teacher_row["first_edit_at_ms"].as_i64() <= teacher_row["last_edit_at_ms"].as_i64());
    let notes_share = report["documents"]
        .as_array()
        .expect("documents")
        .iter()
        .find(|row| row["doc_id"] == notes.as_str())
        .expect("the notes");
    assert_eq!(notes_share["kind"], "notes");
    assert!(notes_share["ai_share"].as_f64().expect("share") > 0.0);

    // The same as CSV, one row per person and document.
    let response = api
        .client()
        .get(
            api.server()
                .http(&format!("/api/v1{contributions}?format=csv")),
        )
        .bearer_auth(&class.teacher.access)
        .send()
        .await
        .expect("csv");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/csv")
    );
    let csv = response.text().await.expect("csv");
    let student_line = csv
        .lines()
        .find(|line| line.starts_with(&class.student.user_id) && line.contains("notes"))
        .unwrap_or_else(|| panic!("a student row in {csv}"));
    assert!(
        student_line.contains(&format!(
            ",{},",
            len16("Intro by the class. ") + len16(vandalism)
        )),
        "{student_line}"
    );
    api.stop().await;
}

#[tokio::test]
async fn an_update_posted_over_rest_reaches_connected_clients_and_bad_ones_are_refused() {
    let model = fake_model(say("unused")).await;
    let api = openai_server(&model, |_| {}).await;
    let class = class(&api).await;
    let notes = notes_doc(&class);
    let mut watcher = Watcher::open(api.server(), &notes, &class.teacher.access).await;

    // A backend writes with its own replica.
    let replica = Doc::new();
    let update = {
        let text = replica.get_or_insert_text("content");
        let mut txn = replica.transact_mut();
        text.insert(&mut txn, 0, "Posted over REST.");
        txn.encode_update_v1()
    };
    let (status, body) = post_update(&api, &notes, Some(&class.student.access), update).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    watcher
        .until(|doc| (notes_text(doc) == "Posted over REST.").then_some(()))
        .await;

    // Without a token; not an update; an update building on changes the server lacks.
    let (status, body) = post_update(&api, &notes, None, vec![0, 0]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) =
        post_update(&api, &notes, Some(&class.student.access), vec![0xff; 8]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(code(&body), "update_refused");
    let ahead = Doc::with_client_id(4242);
    let first = {
        let text = ahead.get_or_insert_text("content");
        let mut txn = ahead.transact_mut();
        text.insert(&mut txn, 0, "first ");
        txn.encode_update_v1()
    };
    let _ = first; // never sent
    let second = {
        let text = ahead.get_or_insert_text("content");
        let mut txn = ahead.transact_mut();
        text.insert(&mut txn, 0, "second ");
        txn.encode_update_v1()
    };
    let (status, body) = post_update(&api, &notes, Some(&class.student.access), second).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(code(&body), "update_incomplete");
    // The refused part is not kept waiting: the document still reads as before.
    let (status, now) = api
        .get(&doc_path(&notes, ""), Some(&class.teacher.access))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(now["content"], "Posted over REST.");

    // Over the message size limit: 413 before anything is applied.
    let huge = {
        let doc = Doc::new();
        let text = doc.get_or_insert_text("content");
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, &"x".repeat(17 * 1024 * 1024));
        txn.encode_update_v1()
    };
    let (status, body) = post_update(&api, &notes, Some(&class.student.access), huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");

    // A read-only caller: the session's server-owned document is never writable.
    let lectern = format!("session/{}/lectern", class.session);
    let empty = Doc::new()
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    let (status, body) = post_update(&api, &lectern, Some(&class.teacher.access), empty).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let text = watcher.doc.get_or_insert_text("content");
    assert_eq!(
        text.get_string(&watcher.doc.transact()),
        "Posted over REST."
    );
    api.stop().await;
}
