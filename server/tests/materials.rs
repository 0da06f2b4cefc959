//! Course material through the real server: uploads of every format into local disk and a
//! real S3-protocol server, extraction with positions, progress over the WebSocket,
//! semantic search on the real embedding model, authorization, and hostile uploads.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use yrs::updates::decoder::Decode;
use yrs::{Doc, Map, Out, StateVector, Transact, Update};

use lectern_library::testing::{self as fixtures, Block};

use crate::api::{Api, Session, code, servers};
use crate::support::connect;

/// A classroom with its teacher, one student and one outsider (also used by the `ai` tests).
pub(crate) struct Class {
    pub(crate) id: String,
    pub(crate) teacher: Session,
    pub(crate) student: Session,
    pub(crate) outsider: Session,
}

pub(crate) async fn class(api: &Api) -> Class {
    let teacher = api.register("teacher@example.edu", "faculty").await;
    let (status, body) = api
        .post(
            "/classrooms",
            Some(&teacher.access),
            json!({"name": "Biology"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().expect("id").to_owned();
    let join_code = body["join_code"].as_str().expect("code").to_owned();
    let student = api.register("student@example.edu", "student").await;
    let outsider = api.register("outsider@example.edu", "student").await;
    let (status, body) = api
        .post(
            "/classrooms/join",
            Some(&student.access),
            json!({"join_code": join_code}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    Class {
        id,
        teacher,
        student,
        outsider,
    }
}

pub(crate) async fn upload(
    api: &Api,
    classroom_id: &str,
    token: &str,
    file_name: &str,
    bytes: Vec<u8>,
) -> (StatusCode, Value) {
    let form = Form::new().part("file", Part::bytes(bytes).file_name(file_name.to_owned()));
    let url = api
        .server()
        .http(&format!("/api/v1/classrooms/{classroom_id}/materials"));
    api.call(api.client().post(url).multipart(form), Some(token))
        .await
}

/// Uploads and expects 202; returns the material id.
async fn upload_ok(api: &Api, class: &Class, file_name: &str, bytes: Vec<u8>) -> String {
    let (status, body) = upload(api, &class.id, &class.teacher.access, file_name, bytes).await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "{} {file_name}: {body}",
        api.backend
    );
    body["id"].as_str().expect("id").to_owned()
}

/// Polls a material until its ingestion is over; returns it.
async fn settled(api: &Api, token: &str, material_id: &str) -> Value {
    for _ in 0..1200 {
        let (status, body) = api
            .get(&format!("/materials/{material_id}"), Some(token))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if matches!(body["status"].as_str(), Some("ready" | "failed")) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("material {material_id} never finished ingesting");
}

pub(crate) async fn ready(api: &Api, token: &str, material_id: &str) -> Value {
    let material = settled(api, token, material_id).await;
    assert_eq!(material["status"], "ready", "{} {material}", api.backend);
    material
}

async fn chunks(api: &Api, token: &str, material_id: &str) -> Vec<Value> {
    let (status, body) = api
        .get(&format!("/materials/{material_id}/chunks"), Some(token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array().expect("array").clone()
}

async fn search(api: &Api, token: &str, classroom_id: &str, body: Value) -> (StatusCode, Value) {
    api.post(
        &format!("/classrooms/{classroom_id}/search"),
        Some(token),
        body,
    )
    .await
}

pub(crate) const CELL_PAGES: [&str; 3] = [
    "Cells are the basic unit of life. Every living organism is made of one or more cells, \
     and new cells arise only from existing cells.",
    "Photosynthesis in plant chloroplasts turns light, water and carbon dioxide into glucose \
     and oxygen. Chlorophyll absorbs mostly red and blue light.",
    "The electron transport chain sits in the inner membrane of the mitochondrion, where it \
     pumps protons to drive ATP synthase.",
];

#[tokio::test]
async fn every_format_is_extracted_with_its_positions_and_found_by_meaning() {
    for api in servers(|_| {}).await {
        let class = class(&api).await;
        let teacher = class.teacher.access.as_str();

        let pdf = upload_ok(&api, &class, "cells.pdf", fixtures::pdf(&CELL_PAGES)).await;
        let docx = fixtures::docx(&[
            Block::Heading(1, "Cells".into()),
            Block::Paragraph("Organelles divide the work of a cell.".into()),
            Block::Heading(2, "Organelles".into()),
            Block::Table(vec![
                vec!["Organelle".into(), "Function".into()],
                vec!["Ribosome".into(), "Protein synthesis".into()],
            ]),
        ]);
        let docx = upload_ok(&api, &class, "organelles.docx", docx).await;
        let markdown = upload_ok(
            &api,
            &class,
            "algebra.md",
            b"# Algebra\n\nLetters stand for numbers.\n\n## Quadratics\n\nThe discriminant \
              b^2 - 4ac tells how many real roots a quadratic has.\n"
                .to_vec(),
        )
        .await;
        let text = upload_ok(
            &api,
            &class,
            "history.txt",
            "The Treaty of Westphalia was signed in 1648.\n\nIt ended the Thirty Years' War."
                .as_bytes()
                .to_vec(),
        )
        .await;

        let material = ready(&api, teacher, &pdf).await;
        assert_eq!(material["format"], "pdf");
        assert_eq!(material["sections"], 3, "{material}");
        let pdf_chunks = chunks(&api, teacher, &pdf).await;
        assert_eq!(
            pdf_chunks.len(),
            3,
            "one short page, one chunk: {pdf_chunks:?}"
        );
        for (page, chunk) in pdf_chunks.iter().enumerate() {
            assert_eq!(chunk["page"], page + 1);
            let first_words = CELL_PAGES[page].split(',').next().expect("words");
            assert!(
                chunk["text"].as_str().expect("text").contains(first_words),
                "{chunk}"
            );
        }

        assert_eq!(ready(&api, teacher, &docx).await["format"], "docx");
        let docx_chunks = chunks(&api, teacher, &docx).await;
        let table = docx_chunks
            .iter()
            .find(|chunk| {
                chunk["text"]
                    .as_str()
                    .expect("text")
                    .contains("Ribosome | Protein synthesis")
            })
            .unwrap_or_else(|| panic!("table rows as text: {docx_chunks:?}"));
        assert_eq!(table["heading"], "Cells > Organelles");

        assert_eq!(ready(&api, teacher, &markdown).await["format"], "markdown");
        let markdown_chunks = chunks(&api, teacher, &markdown).await;
        assert!(
            markdown_chunks
                .iter()
                .any(|chunk| chunk["heading"] == "Algebra > Quadratics"
                    && chunk["text"]
                        .as_str()
                        .expect("text")
                        .contains("discriminant")),
            "{markdown_chunks:?}"
        );
        // Where each passage is in the file: the discriminant is on line 7.
        let quadratics = markdown_chunks
            .iter()
            .find(|chunk| chunk["heading"] == "Algebra > Quadratics")
            .expect("the Quadratics section");
        assert_eq!(
            (&quadratics["line_start"], &quadratics["line_end"]),
            (&json!(7), &json!(7)),
            "{quadratics}"
        );

        assert_eq!(ready(&api, teacher, &text).await["format"], "text");
        assert!(
            chunks(&api, teacher, &text).await[0]["text"]
                .as_str()
                .expect("text")
                .contains("1648")
        );

        // A fact only page 3 states, asked in other words, by a student.
        let (status, body) = search(
            &api,
            &class.student.access,
            &class.id,
            json!({"query": "Where in the cell is the electron transport chain?", "k": 3}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let best = &body["hits"][0];
        assert_eq!(best["material_id"], pdf.as_str(), "{body}");
        assert_eq!(best["page"], 3, "{body}");
        assert_eq!(best["file_name"], "cells.pdf");
        assert!(best["score"].as_f64().expect("score") > 0.4, "{body}");
        assert_eq!(body["hits"].as_array().expect("hits").len(), 3);

        // Restricted to chosen materials: the best answer elsewhere is not returned.
        let (status, body) = search(
            &api,
            teacher,
            &class.id,
            json!({"query": "electron transport chain", "material_ids": [text, markdown]}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        for hit in body["hits"].as_array().expect("hits") {
            assert_ne!(hit["material_id"], pdf.as_str(), "{body}");
        }

        // Downloads give the bytes back; deleting removes the file and its passages.
        let url = api
            .server()
            .http(&format!("/api/v1/materials/{text}/content"));
        let response = api
            .client()
            .get(url)
            .bearer_auth(teacher)
            .send()
            .await
            .expect("download");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; charset=utf-8"
        );
        assert!(
            response
                .text()
                .await
                .expect("body")
                .starts_with("The Treaty of Westphalia")
        );
        let (status, _) = api
            .delete(&format!("/materials/{pdf}"), Some(teacher))
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = api.get(&format!("/materials/{pdf}"), Some(teacher)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (_, body) = search(
            &api,
            teacher,
            &class.id,
            json!({"query": "Where in the cell is the electron transport chain?"}),
        )
        .await;
        for hit in body["hits"].as_array().expect("hits") {
            assert_ne!(
                hit["material_id"],
                pdf.as_str(),
                "deleted material searched: {body}"
            );
        }
        api.stop().await;
    }
}

#[tokio::test]
async fn only_members_read_and_only_uploaders_or_faculty_delete() {
    for api in servers(|_| {}).await {
        let class = class(&api).await;
        let material = upload_ok(&api, &class, "notes.md", b"# Notes\n\nOsmosis.".to_vec()).await;
        ready(&api, &class.teacher.access, &material).await;
        let outsider = class.outsider.access.as_str();

        let (status, body) = search(&api, outsider, &class.id, json!({"query": "osmosis"})).await;
        assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
        for path in [
            format!("/materials/{material}"),
            format!("/materials/{material}/content"),
            format!("/materials/{material}/chunks"),
            format!("/classrooms/{}/materials", class.id),
        ] {
            let url = api.server().http(&format!("/api/v1{path}"));
            let response = api
                .client()
                .get(url)
                .bearer_auth(outsider)
                .send()
                .await
                .expect("request");
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
        }
        let (status, _) = upload(&api, &class.id, outsider, "x.txt", b"hello".to_vec()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // A student may not delete the teacher's upload, but may delete their own.
        let (status, _) = api
            .delete(
                &format!("/materials/{material}"),
                Some(&class.student.access),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, body) = upload(
            &api,
            &class.id,
            &class.student.access,
            "mine.txt",
            b"my own notes".to_vec(),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let mine = body["id"].as_str().expect("id");
        let (status, _) = api
            .delete(&format!("/materials/{mine}"), Some(&class.student.access))
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);

        // Searching a material of another classroom is refused, not silently ignored.
        let other = api.register("other-teacher@example.edu", "faculty").await;
        let (_, body) = api
            .post("/classrooms", Some(&other.access), json!({"name": "Other"}))
            .await;
        let other_class = body["id"].as_str().expect("id").to_owned();
        let (status, body) = search(
            &api,
            &other.access,
            &other_class,
            json!({"query": "osmosis", "material_ids": [material]}),
        )
        .await;
        assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
        let (status, body) = search(&api, outsider, &class.id, json!({"query": ""})).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "membership first: {body}");
        let (status, body) = search(
            &api,
            &class.teacher.access,
            &class.id,
            json!({"query": " "}),
        )
        .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "invalid_request")
        );
        // Each listed material is a database lookup: the list is bounded before any is made.
        let many: Vec<String> = (0..21).map(|i| format!("no-such-material-{i}")).collect();
        let (status, body) = search(
            &api,
            &class.teacher.access,
            &class.id,
            json!({"query": "osmosis", "material_ids": many}),
        )
        .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{body}"
        );
        api.stop().await;
    }
}

/// Files in the server's object directory (uploads that were kept).
fn stored_objects(api: &Api) -> usize {
    fn count(dir: &std::path::Path) -> usize {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .filter_map(Result::ok)
            .map(|entry| {
                let path = entry.path();
                if path.is_dir() { count(&path) } else { 1 }
            })
            .sum()
    }
    count(&api.server().data_dir().join("objects").join("classrooms"))
}

#[tokio::test]
async fn hostile_uploads_get_a_clear_4xx_keep_nothing_and_the_server_carries_on() {
    for api in servers(|config| config.max_upload_bytes = 4 * 1024 * 1024).await {
        let class = class(&api).await;
        let teacher = class.teacher.access.as_str();
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend(std::iter::repeat_n(7u8, 4000));
        let mut elf = b"\x7fELF\x02\x01\x01\0".to_vec();
        elf.extend(std::iter::repeat_n(0u8, 4000));
        let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
            (
                "bomb.docx",
                fixtures::docx_zip_bomb(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "unreadable_file",
            ),
            (
                "locked.pdf",
                fixtures::encrypted_pdf(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "unreadable_file",
            ),
            (
                "broken.pdf",
                b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 9 0 R >> endobj\ngarbage".to_vec(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "unreadable_file",
            ),
            (
                "picture.txt",
                png,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_file_type",
            ),
            (
                "program.md",
                elf,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_file_type",
            ),
            (
                "empty.txt",
                Vec::new(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "unreadable_file",
            ),
            (
                "too-big.txt",
                vec![b'a'; 5 * 1024 * 1024],
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
            ),
        ];
        for (name, bytes, expected, expected_code) in cases {
            let (status, body) = upload(&api, &class.id, teacher, name, bytes).await;
            assert_eq!(
                (status, code(&body)),
                (expected, expected_code),
                "{} {name}: {body}",
                api.backend
            );
            let message = body["error"]["message"].as_str().expect("message");
            assert!(!message.is_empty(), "{name}: a reason for the teacher");
        }
        assert_eq!(
            stored_objects(&api),
            0,
            "refused uploads leave no file behind"
        );
        let (_, listed) = api
            .get(
                &format!("/classrooms/{}/materials", class.id),
                Some(teacher),
            )
            .await;
        assert_eq!(listed, json!([]), "and no record");

        // A 1 GB body: refused from its Content-Length before a byte is read, and, sent
        // without a length, cut off at the limit.
        let status = raw_upload(&api, &class.id, teacher, Some(1 << 30)).await;
        assert_eq!(status, 413);
        let status = raw_upload(&api, &class.id, teacher, None).await;
        assert_eq!(status, 413);
        assert_eq!(stored_objects(&api), 0);

        // The server still serves everyone.
        let material = upload_ok(&api, &class, "fine.txt", b"Still here.".to_vec()).await;
        ready(&api, teacher, &material).await;

        // The ingestion is counted just after the material shows as ready: poll.
        let expected = [
            "lectern_materials_uploads_refused_total{reason=\"unsupported\"} 2",
            "lectern_materials_uploads_refused_total{reason=\"unreadable\"} 4",
            "lectern_materials_uploads_accepted_total 1",
            "lectern_materials_ingestions_total{outcome=\"ready\"} 1",
        ];
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let metrics = api
                .client()
                .get(api.server().http("/metrics"))
                .send()
                .await
                .expect("metrics")
                .text()
                .await
                .expect("text");
            let missing: Vec<_> = expected
                .iter()
                .filter(|line| !metrics.contains(*line))
                .collect();
            if missing.is_empty() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{missing:?} in\n{metrics}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        api.stop().await;
    }
}

/// Sends a 1 GiB upload over a raw socket (`Content-Length` when `declared`, else chunked,
/// streaming until the server stops reading); returns the response status.
async fn raw_upload(api: &Api, classroom_id: &str, token: &str, declared: Option<u64>) -> u16 {
    let mut socket = tokio::net::TcpStream::connect(api.server().address)
        .await
        .expect("connect");
    let length = match declared {
        Some(length) => format!("content-length: {length}\r\n"),
        None => "transfer-encoding: chunked\r\n".to_owned(),
    };
    let head = format!(
        "POST /api/v1/classrooms/{classroom_id}/materials HTTP/1.1\r\nhost: test\r\n\
         authorization: Bearer {token}\r\n\
         content-type: multipart/form-data; boundary=XyZ\r\n{length}\r\n"
    );
    socket.write_all(head.as_bytes()).await.expect("head");
    let (mut reader, mut writer) = socket.into_split();
    let chunked = declared.is_none();
    let writing = tokio::spawn(async move {
        let part =
            b"--XyZ\r\ncontent-disposition: form-data; name=\"file\"; filename=\"big.txt\"\r\n\r\n";
        let block = vec![b'a'; 64 * 1024];
        let mut sent = 0u64;
        let mut first = true;
        while sent < 1 << 30 {
            let data: &[u8] = if first { part } else { &block };
            first = false;
            let result = if chunked {
                let mut framed = format!("{:x}\r\n", data.len()).into_bytes();
                framed.extend_from_slice(data);
                framed.extend_from_slice(b"\r\n");
                writer.write_all(&framed).await
            } else {
                writer.write_all(data).await
            };
            if result.is_err() {
                break; // the server answered and closed
            }
            sent += data.len() as u64;
        }
        sent
    });
    let mut response = Vec::new();
    let mut buffer = [0u8; 1024];
    while !response.windows(4).any(|window| window == b"\r\n\r\n") {
        let read = tokio::time::timeout(Duration::from_secs(30), reader.read(&mut buffer))
            .await
            .expect("a response within 30 s")
            .expect("read");
        assert!(read > 0, "connection closed without a response");
        response.extend_from_slice(&buffer[..read]);
    }
    let sent = writing.await.expect("writer");
    assert!(
        sent < 1 << 30,
        "the server stopped reading long before 1 GiB"
    );
    let status_line = String::from_utf8_lossy(&response);
    status_line
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .expect("status code")
}

/// Collects the statuses a material goes through, as seen by a member's WebSocket on the
/// classroom's feed document.
async fn watch_feed(
    api: &Api,
    classroom_id: &str,
    token: &str,
) -> tokio::sync::mpsc::UnboundedReceiver<(String, String)> {
    let url = api.server().ws(&format!(
        "/ws/classroom/{classroom_id}/materials?token={token}"
    ));
    let mut socket = connect(&url).await;
    let step1 = yrs::sync::Message::Sync(yrs::sync::SyncMessage::SyncStep1(StateVector::default()));
    socket
        .send(Message::Binary(
            yrs::updates::encoder::Encode::encode_v1(&step1).into(),
        ))
        .await
        .expect("send");
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let doc = Doc::new();
        let map = doc.get_or_insert_map("materials");
        let mut last = std::collections::HashMap::<String, String>::new();
        while let Some(Ok(message)) = socket.next().await {
            let Message::Binary(bytes) = message else {
                continue;
            };
            let update = match yrs::sync::Message::decode_v1(&bytes) {
                Ok(yrs::sync::Message::Sync(
                    yrs::sync::SyncMessage::SyncStep2(update)
                    | yrs::sync::SyncMessage::Update(update),
                )) => update,
                _ => continue,
            };
            let update = Update::decode_v1(&update).expect("update");
            doc.transact_mut().apply_update(update).expect("apply");
            let txn = doc.transact();
            for (id, value) in map.iter(&txn) {
                let Out::Any(yrs::Any::Map(fields)) = value else {
                    continue;
                };
                let Some(yrs::Any::String(status)) = fields.get("status") else {
                    continue;
                };
                if last.get(id).map(String::as_str) != Some(status.as_ref()) {
                    last.insert(id.to_owned(), status.to_string());
                    if sender.send((id.to_owned(), status.to_string())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    receiver
}

#[tokio::test]
async fn members_watch_ingestion_progress_live_over_the_websocket() {
    let api = servers(|_| {}).await.into_iter().next().expect("sqlite");
    let class = class(&api).await;
    let mut feed = watch_feed(&api, &class.id, &class.student.access).await;
    let material = upload_ok(&api, &class, "long.pdf", fixtures::large_pdf(20)).await;
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("ready") {
        let (id, status) = tokio::time::timeout(Duration::from_secs(60), feed.recv())
            .await
            .expect("progress within 60 s")
            .expect("feed open");
        assert_eq!(id, material);
        assert_ne!(status, "failed");
        seen.push(status);
    }
    let order = ["queued", "extracting", "embedding", "ready"];
    let positions: Vec<_> = order
        .iter()
        .map(|status| seen.iter().position(|seen| seen == status))
        .collect();
    assert!(
        positions.iter().all(Option::is_some) && positions.is_sorted(),
        "every state, in order: {seen:?}"
    );

    // The feed is the server's: a member's edit is refused (read-only access).
    let (status, body) = api
        .get(
            &format!("/materials/{material}"),
            Some(&class.student.access),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["feed_doc_id"],
        format!("classroom/{}/materials", class.id)
    );
    api.stop().await;
}

#[tokio::test]
async fn uploads_go_to_a_real_s3_server_when_configured() {
    let s3 = lectern_storage::testing::S3TestServer::start().await;
    let s3_config = s3.config();
    let api = servers(|config| {
        config.s3_bucket = Some(s3_config.bucket.clone());
        config.s3_region = s3_config.region.clone();
        config.s3_endpoint = s3_config.endpoint.clone();
        config.s3_force_path_style = true;
        config.s3_access_key_id = s3_config.access_key_id.clone();
        config.s3_secret_access_key = s3_config.secret_access_key.clone().map(Into::into);
    })
    .await
    .into_iter()
    .next()
    .expect("sqlite");
    let class = class(&api).await;
    let teacher = class.teacher.access.as_str();
    // Larger than one 8 MiB multipart part, so the upload goes multipart.
    let mut body = "Lecture transcript.\n\n".repeat(500_000).into_bytes();
    body.truncate(10 * 1024 * 1024);
    let material = upload_ok(&api, &class, "transcript.txt", body.clone()).await;
    assert_eq!(stored_objects(&api), 0, "nothing on local disk");

    let url = api
        .server()
        .http(&format!("/api/v1/materials/{material}/content"));
    let downloaded = api
        .client()
        .get(url)
        .bearer_auth(teacher)
        .send()
        .await
        .expect("download")
        .bytes()
        .await
        .expect("bytes");
    assert!(downloaded == body, "byte-exact round trip through S3");

    let key = format!("classrooms/{}/materials/{material}", class.id);
    let head = s3
        .client()
        .head_object()
        .bucket(&s3_config.bucket)
        .key(&key)
        .send()
        .await
        .expect("object in the bucket");
    assert_eq!(head.content_length(), Some(body.len() as i64));

    let (status, _) = api
        .delete(&format!("/materials/{material}"), Some(teacher))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(
        s3.client()
            .head_object()
            .bucket(&s3_config.bucket)
            .key(&key)
            .send()
            .await
            .is_err(),
        "deleted from the bucket"
    );
    api.stop().await;
}

#[tokio::test]
async fn without_the_embedding_model_uploads_are_kept_and_search_says_why() {
    let models = tempfile::tempdir().expect("temp dir");
    let models_dir = models.path().to_path_buf();
    let api = servers(move |config| {
        config.models_dir = Some(models_dir.clone());
        config.prepare_models = false;
    })
    .await
    .into_iter()
    .next()
    .expect("sqlite");
    let class = class(&api).await;
    let teacher = class.teacher.access.as_str();
    let material = upload_ok(
        &api,
        &class,
        "a.txt",
        b"Kept even without a model.".to_vec(),
    )
    .await;
    let settled = settled(&api, teacher, &material).await;
    assert_eq!(settled["status"], "failed");
    let reason = settled["error"].as_str().expect("reason");
    assert!(
        reason.contains("prepare-models"),
        "says how to fix it: {reason}"
    );

    let (status, body) = search(&api, teacher, &class.id, json!({"query": "anything"})).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::SERVICE_UNAVAILABLE, "ai_unavailable")
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("prepare-models"),
        "{body}"
    );
    // The file itself is still there to download.
    let url = api
        .server()
        .http(&format!("/api/v1/materials/{material}/content"));
    let response = api
        .client()
        .get(url)
        .bearer_auth(teacher)
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), StatusCode::OK);
    api.stop().await;
}

/// Puts `material`, in the SQLite database under `data_dir`, back where a crash before its
/// ingestion finished leaves it: `embedding`, with no passages.
async fn interrupt_ingestion(data_dir: &std::path::Path, material: &str) {
    let url = format!("sqlite://{}", data_dir.join("lectern.db").display());
    let database = lectern_db::Database::connect(&url).await.expect("database");
    let materials = lectern_db::Materials::new(database.clone());
    materials
        .finish(material, &[], 0)
        .await
        .expect("drop the passages");
    materials
        .set_status(
            material,
            lectern_db::materials::MaterialStatus::Embedding,
            40,
            None,
            None,
            0,
        )
        .await
        .expect("status");
    database.close().await;
}

#[tokio::test]
async fn ingestion_interrupted_by_a_restart_is_resumed_from_the_stored_file() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let data_path = data_dir.path().to_path_buf();
    // Same data and the same signing secret, so the second server accepts the first's tokens.
    let in_data_dir = move |config: &mut lectern::Config| {
        config.data_dir = data_path.clone();
        config.jwt_secret = Some("restart-test-secret-of-at-least-32-bytes".into());
    };

    let api = crate::api::Api::on(crate::support::TestServer::start(in_data_dir.clone()).await);
    let class = class(&api).await;
    let teacher = class.teacher.access.clone();
    let material = upload_ok(&api, &class, "cells.pdf", fixtures::pdf(&CELL_PAGES)).await;
    ready(&api, &teacher, &material).await;
    api.stop().await;

    // As if the server had died mid-ingestion: the material is back to `embedding` with no
    // passages (what a crash before `finish` leaves).
    interrupt_ingestion(data_dir.path(), &material).await;

    let api = crate::api::Api::on(crate::support::TestServer::start(in_data_dir).await);
    let resumed = ready(&api, &teacher, &material).await;
    assert_eq!(resumed["chunk_count"], 3, "{resumed}");
    let (status, body) = search(
        &api,
        &teacher,
        &class.id,
        json!({"query": "Where in the cell is the electron transport chain?", "k": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["hits"][0]["page"], 3, "{body}");
    api.stop().await;
}

/// `name`'s value in the server's metrics (0 when absent).
async fn counter(api: &Api, name: &str) -> u64 {
    let text = api
        .client()
        .get(api.server().http("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn two_nodes_resuming_the_same_unfinished_material_ingest_it_once() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let data_path = data_dir.path().to_path_buf();
    // Both nodes use one database and one object directory, and accept each other's tokens.
    let in_data_dir = move |config: &mut lectern::Config| {
        config.data_dir = data_path.clone();
        config.jwt_secret = Some("two-nodes-test-secret-of-at-least-32-bytes".into());
    };
    let api = crate::api::Api::on(crate::support::TestServer::start(in_data_dir.clone()).await);
    let class = class(&api).await;
    let teacher = class.teacher.access.clone();
    let material = upload_ok(&api, &class, "cells.pdf", fixtures::pdf(&CELL_PAGES)).await;
    ready(&api, &teacher, &material).await;
    api.stop().await;

    // As if the node had died mid-ingestion (see the restart test above).
    interrupt_ingestion(data_dir.path(), &material).await;

    // Two nodes start on it; each queues the material again at start.
    let nodes = [
        crate::api::Api::on(crate::support::TestServer::start(in_data_dir.clone()).await),
        crate::api::Api::on(crate::support::TestServer::start(in_data_dir).await),
    ];
    let resumed = ready(&nodes[1], &teacher, &material).await;
    assert_eq!(resumed["chunk_count"], 3, "{resumed}");
    let outcome = |outcome: &'static str| {
        let nodes = &nodes;
        async move {
            let name = format!("lectern_materials_ingestions_total{{outcome=\"{outcome}\"}}");
            counter(&nodes[0], &name).await + counter(&nodes[1], &name).await
        }
    };
    // Wait until both workers have dealt with it, one way or the other.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while outcome("ready").await + outcome("skipped").await + outcome("failed").await < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "a node never took up the material"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(outcome("ready").await, 1, "ingested by exactly one node");
    assert_eq!(outcome("skipped").await, 1, "left alone by the other");
    assert_eq!(outcome("failed").await, 0);
    for node in nodes {
        node.stop().await;
    }
}
