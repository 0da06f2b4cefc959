//! Exports through the real server, on SQLite and on PostgreSQL: a document written over
//! the WebSocket read back as Markdown, DOCX and PDF; answers for faculty only; a session
//! as a zip of what the caller may read; refusals.

use std::io::{Cursor, Read, Write};
use std::process::{Command, Stdio};

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_DISPOSITION, CONTENT_TYPE, HeaderMap};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Any, Doc, GetString, Map, StateVector, Text, Transact, Update, WriteTxn};

use crate::api::{Api, code, servers};
use crate::sessions::{Class, class, start};
use crate::support::{Client, connect};

const API_KEY: &str = "embedder-secret-key-of-at-least-32-bytes";
const ARABIC: &str = "الخلية هي وحدة الحياة";
const CHINESE: &str = "细胞是生命的基本单位";

fn notes_text() -> String {
    format!(
        "# Cells\n\nAll living things are made of cells.\n\n\
         - Organelles\n  - Nucleus\n  - Mitochondria\n- Membranes\n\n\
         | Organelle | Role |\n|---|---|\n| Nucleus | Holds DNA |\n| Ribosome | Makes proteins |\n\n\
         {ARABIC}\n\n{CHINESE}\n"
    )
}

fn quiz_json() -> Value {
    json!({"title": "Cells quiz", "questions": [
        {"prompt": "Which organelle makes ATP?", "options": ["Nucleus", "Mitochondrion"],
         "answer": 1, "explanation": "Mitochondria run cellular respiration.", "marks": 1}
    ]})
}

/// A template with a quiz in it, written by the teacher; returns its id.
async fn quiz_template(api: &Api, class: &Class) -> String {
    let (status, template) = api
        .post(
            &format!("/classrooms/{}/templates", class.id),
            Some(&class.teacher.access),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{} {template}", api.backend);
    let doc_id = template["doc_id"].as_str().expect("doc_id").to_owned();
    let mut writer = Writer::open(api, &doc_id, &class.teacher.access).await;
    let quiz = Any::from_json(&quiz_json().to_string()).expect("quiz as Any");
    writer
        .edit(|txn| {
            let map = txn.get_or_insert_map("quiz");
            if let Any::Map(fields) = quiz {
                for (key, value) in fields.iter() {
                    map.insert(txn, key.as_str(), value.clone());
                }
            }
        })
        .await;
    doc_id
}

/// A bare y-sync client on one document.
struct Writer {
    socket: Client,
}

impl Writer {
    async fn open(api: &Api, doc_id: &str, token: &str) -> Self {
        let socket = connect(&api.server().ws(&format!("/ws/{doc_id}?token={token}"))).await;
        Self { socket }
    }

    /// Sends `edit` as an update, then waits until the room has applied it (it answers a
    /// sync step 1 sent after it with its whole state, which then holds the edit).
    async fn edit(&mut self, edit: impl FnOnce(&mut yrs::TransactionMut<'_>)) -> Doc {
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
        let step1 =
            yrs::sync::Message::Sync(yrs::sync::SyncMessage::SyncStep1(StateVector::default()));
        self.socket
            .send(Message::Binary(step1.encode_v1().into()))
            .await
            .expect("send step 1");
        let read = async {
            while let Some(message) = self.socket.next().await {
                let Message::Binary(bytes) = message.expect("socket") else {
                    continue;
                };
                if let Ok(yrs::sync::Message::Sync(yrs::sync::SyncMessage::SyncStep2(update))) =
                    yrs::sync::Message::decode_v1(&bytes)
                {
                    let state = Doc::new();
                    let update = Update::decode_v1(&update).expect("update");
                    state.transact_mut().apply_update(update).expect("apply");
                    return state;
                }
            }
            panic!("the socket closed before the state came");
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), read)
            .await
            .expect("state within 10 s")
    }
}

/// `GET /api/v1{path}`: status, headers, body bytes.
async fn get_raw(api: &Api, path: &str, token: Option<&str>) -> (StatusCode, HeaderMap, Vec<u8>) {
    let request = api
        .client()
        .get(api.server().http(&format!("/api/v1{path}")));
    let request = match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let response = request.send().await.expect("request");
    let status = response.status();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.bytes().await.expect("body").to_vec(),
    )
}

fn export_path(doc_id: &str, query: &str) -> String {
    format!("/documents/{}/export?{query}", doc_id.replace('/', "%2F"))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
}

fn error_code(bytes: &[u8]) -> String {
    let body: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    code(&body).to_owned()
}

/// One part of a zip (a DOCX, an export), as text.
fn zip_part(bytes: &[u8], name: &str) -> String {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).expect("a zip");
    let mut text = String::new();
    archive
        .by_name(name)
        .unwrap_or_else(|_| panic!("{name} in the zip"))
        .read_to_string(&mut text)
        .expect("utf-8");
    text
}

fn zip_names(bytes: &[u8]) -> Vec<String> {
    let archive = zip::ZipArchive::new(Cursor::new(bytes)).expect("a zip");
    let mut names: Vec<String> = archive.file_names().map(str::to_owned).collect();
    names.sort();
    names
}

/// A PDF's text through poppler's `pdftotext`, whitespace collapsed.
fn pdf_text(bytes: &[u8]) -> String {
    let mut child = Command::new("pdftotext")
        .args(["-", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("pdftotext (Debian: poppler-utils; scripts/test.sh installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(bytes)
        .expect("PDF to pdftotext");
    let output = child.wait_with_output().expect("pdftotext output");
    assert!(output.status.success(), "pdftotext: {output:?}");
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .replace(['\u{202B}', '\u{202C}', '\u{200F}'], "")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test]
async fn notes_export_as_markdown_docx_and_pdf() {
    for api in servers(|_| {}).await {
        let backend = api.backend;
        let class = class(&api).await;
        let id = start(&api, &class).await;
        let notes = format!("session/{id}/notes");
        let mut alices = Writer::open(&api, &notes, &class.alice.access).await;
        let state = alices
            .edit(|txn| {
                txn.get_or_insert_text("content")
                    .insert(txn, 0, &notes_text());
            })
            .await;
        assert_eq!(
            state
                .get_or_insert_text("content")
                .get_string(&state.transact()),
            notes_text()
        );

        // Markdown, read by a classmate.
        let (status, headers, bytes) = get_raw(
            &api,
            &export_path(&notes, "format=md"),
            Some(&class.bob.access),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{backend} {}",
            String::from_utf8_lossy(&bytes)
        );
        assert!(header(&headers, CONTENT_TYPE.as_str()).starts_with("text/markdown"));
        let disposition = header(&headers, CONTENT_DISPOSITION.as_str());
        assert!(
            disposition.starts_with("attachment; filename=\"Notes-20")
                && disposition.ends_with(".md\""),
            "{backend} {disposition}"
        );
        let markdown = String::from_utf8(bytes).expect("utf-8");
        for expected in [
            "# Cells",
            "- Organelles",
            "  - Nucleus",
            "| Nucleus | Holds DNA |",
            ARABIC,
            CHINESE,
        ] {
            assert!(
                markdown.contains(expected),
                "{backend}: {expected:?} in\n{markdown}"
            );
        }

        // DOCX: heading styles, list numbering, table rows, the scripts.
        let (status, headers, bytes) = get_raw(
            &api,
            &export_path(&notes, "format=docx"),
            Some(&class.bob.access),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{backend}");
        assert_eq!(
            header(&headers, CONTENT_TYPE.as_str()),
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        );
        let document = zip_part(&bytes, "word/document.xml");
        for expected in [
            r#"<w:pStyle w:val="Heading1" />"#,
            "<w:numPr>",
            "Holds DNA",
            ARABIC,
            CHINESE,
        ] {
            assert!(document.contains(expected), "{backend}: {expected:?}");
        }
        assert_eq!(document.matches("<w:tr>").count(), 3, "{backend}");

        // PDF: the words come back out, every character had a font.
        let (status, headers, bytes) = get_raw(
            &api,
            &export_path(&notes, "format=pdf"),
            Some(&class.bob.access),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{backend}");
        assert_eq!(header(&headers, CONTENT_TYPE.as_str()), "application/pdf");
        assert!(
            headers.get("x-lectern-missing-glyphs").is_none(),
            "{backend} {headers:?}"
        );
        let text = pdf_text(&bytes);
        for expected in ["Cells", "Mitochondria", "Holds DNA", ARABIC, CHINESE] {
            assert!(
                text.contains(expected),
                "{backend}: {expected:?} in\n{text}"
            );
        }

        // A character no font has is named in a header and in the PDF.
        alices
            .edit(|txn| {
                txn.get_or_insert_text("content")
                    .insert(txn, 0, "\u{10FFFD} ");
            })
            .await;
        let (status, headers, bytes) = get_raw(
            &api,
            &export_path(&notes, "format=pdf"),
            Some(&class.bob.access),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{backend}");
        assert_eq!(
            header(&headers, "x-lectern-missing-glyphs"),
            "U+10FFFD",
            "{backend}"
        );
        assert!(pdf_text(&bytes).contains("U+10FFFD"), "{backend}");

        // Refused: no token, an outsider, a format that does not exist.
        let (status, _, bytes) = get_raw(&api, &export_path(&notes, "format=pdf"), None).await;
        assert_eq!(
            (status, error_code(&bytes).as_str()),
            (StatusCode::UNAUTHORIZED, "unauthenticated")
        );
        let (status, _, bytes) = get_raw(
            &api,
            &export_path(&notes, "format=pdf"),
            Some(&class.mallory.access),
        )
        .await;
        assert_eq!(
            (status, error_code(&bytes).as_str()),
            (StatusCode::FORBIDDEN, "forbidden")
        );
        let (status, _, bytes) = get_raw(
            &api,
            &export_path(&notes, "format=odt"),
            Some(&class.bob.access),
        )
        .await;
        assert_eq!(
            (status, error_code(&bytes).as_str()),
            (StatusCode::BAD_REQUEST, "invalid_request")
        );
        api.stop().await;
    }
}

#[tokio::test]
async fn a_quiz_exports_with_answers_for_faculty_only() {
    for api in servers(|config| config.api_key = Some(API_KEY.into())).await {
        let backend = api.backend;
        let class = class(&api).await;
        let template = quiz_template(&api, &class).await;
        let markdown = |token: String, query: &'static str| {
            let api = &api;
            let template = &template;
            async move {
                let (status, headers, bytes) =
                    get_raw(api, &export_path(template, query), Some(&token)).await;
                (
                    status,
                    headers,
                    String::from_utf8_lossy(&bytes).into_owned(),
                )
            }
        };
        let secrets = ["correct answer", "cellular respiration", "Answer key"];

        // Faculty get the answers by default, and can leave them out.
        let (status, headers, text) = markdown(class.teacher.access.clone(), "format=md").await;
        assert_eq!(status, StatusCode::OK, "{backend} {text}");
        assert!(
            text.contains("Which organelle makes ATP?"),
            "{backend} {text}"
        );
        for secret in secrets {
            assert!(text.contains(secret), "{backend}: {secret} in\n{text}");
        }
        assert!(
            header(&headers, CONTENT_DISPOSITION.as_str())
                .starts_with("attachment; filename=\"Cells-quiz-20"),
            "{backend} {headers:?}"
        );
        let (_, _, text) = markdown(class.teacher.access.clone(), "format=md&answers=false").await;
        for secret in secrets {
            assert!(!text.contains(secret), "{backend}: {secret} in\n{text}");
        }

        // A student reads the questions only, and may not ask for the answers.
        let (status, _, bytes) = get_raw(
            &api,
            &export_path(&template, "format=pdf"),
            Some(&class.alice.access),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{backend}");
        let text = pdf_text(&bytes);
        assert!(
            text.contains("Which organelle makes ATP?"),
            "{backend} {text}"
        );
        for secret in secrets {
            assert!(!text.contains(secret), "{backend}: {secret} in\n{text}");
        }
        let (status, _, text) =
            markdown(class.alice.access.clone(), "format=docx&answers=true").await;
        assert_eq!(
            (status, error_code(text.as_bytes()).as_str()),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{backend}"
        );

        // Document tokens: answers with write access only.
        for (access, allowed) in [("read", false), ("full", true)] {
            let (status, minted) = api
                .post(
                    "/doc-tokens",
                    Some(API_KEY),
                    json!({"doc": template, "access": access}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{backend} {minted}");
            let token = minted["token"].as_str().expect("token").to_owned();
            let (status, _, text) = markdown(token, "format=md&answers=true").await;
            if allowed {
                assert_eq!(status, StatusCode::OK, "{backend} {text}");
                assert!(text.contains("correct answer"), "{backend} {text}");
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{backend} {text}");
            }
        }
        api.stop().await;
    }
}

#[tokio::test]
async fn a_session_exports_as_a_zip_of_what_the_caller_may_read() {
    for api in servers(|_| {}).await {
        let backend = api.backend;
        let class = class(&api).await;
        let id = start(&api, &class).await;
        let mut writer =
            Writer::open(&api, &format!("session/{id}/notes"), &class.teacher.access).await;
        writer
            .edit(|txn| {
                txn.get_or_insert_text("content")
                    .insert(txn, 0, &notes_text());
            })
            .await;
        let template = quiz_template(&api, &class).await;
        let (status, body) = api
            .post(
                &format!("/sessions/{id}/handouts"),
                Some(&class.teacher.access),
                json!({"template_doc_id": template}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{backend} {body}");

        let zip = |token: Option<String>, query: &'static str| {
            let api = &api;
            let id = &id;
            async move {
                get_raw(
                    api,
                    &format!("/sessions/{id}/export?{query}"),
                    token.as_deref(),
                )
                .await
            }
        };
        let (status, headers, bytes) = zip(Some(class.teacher.access.clone()), "format=md").await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{backend} {}",
            String::from_utf8_lossy(&bytes)
        );
        assert_eq!(header(&headers, CONTENT_TYPE.as_str()), "application/zip");
        assert!(
            header(&headers, CONTENT_DISPOSITION.as_str())
                .starts_with("attachment; filename=\"session-20"),
            "{backend} {headers:?}"
        );
        assert_eq!(
            zip_names(&bytes),
            [
                "Chat.md",
                "Mind-map.md",
                "Notes.md",
                "handouts/alice-example.edu/Cells-quiz.md",
                "handouts/bob-example.edu/Cells-quiz.md",
            ],
            "{backend}"
        );
        assert!(zip_part(&bytes, "Notes.md").contains(ARABIC), "{backend}");
        let handout = zip_part(&bytes, "handouts/bob-example.edu/Cells-quiz.md");
        assert!(
            handout.contains("correct answer"),
            "{backend}: faculty get answers\n{handout}"
        );

        // A student gets the session's documents and their own copy, without answers.
        let (status, _, bytes) = zip(Some(class.alice.access.clone()), "format=docx").await;
        assert_eq!(status, StatusCode::OK, "{backend}");
        assert_eq!(
            zip_names(&bytes),
            [
                "Chat.docx",
                "Mind-map.docx",
                "Notes.docx",
                "handouts/alice-example.edu/Cells-quiz.docx"
            ],
            "{backend}"
        );
        let mut archive = zip::ZipArchive::new(Cursor::new(&bytes)).expect("zip");
        let mut docx = Vec::new();
        archive
            .by_name("handouts/alice-example.edu/Cells-quiz.docx")
            .expect("handout")
            .read_to_end(&mut docx)
            .expect("read");
        let document = zip_part(&docx, "word/document.xml");
        assert!(document.contains("Which organelle makes ATP?"), "{backend}");
        assert!(!document.contains("correct answer"), "{backend}");

        // Refused: asking for answers as a student, an outsider, no token, no such session.
        let (status, _, bytes) =
            zip(Some(class.alice.access.clone()), "format=md&answers=true").await;
        assert_eq!(
            (status, error_code(&bytes).as_str()),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{backend}"
        );
        let (status, _, bytes) = zip(Some(class.mallory.access.clone()), "format=md").await;
        assert_eq!(
            (status, error_code(&bytes).as_str()),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{backend}"
        );
        let (status, _, _) = zip(None, "format=md").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{backend}");
        let (status, _, _) = get_raw(
            &api,
            "/sessions/no-such-session/export?format=md",
            Some(&class.teacher.access),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{backend}");
        api.stop().await;
    }
}
