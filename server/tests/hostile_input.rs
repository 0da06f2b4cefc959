//! Hostile text at the REST edge (issue 10, item 12) and the OpenAPI document's validity.
//!
//! PostgreSQL refuses NUL in text, so a NUL that reached a query used to be a 500 there
//! (SQLite stored it). Every JSON string field of every request body and every path
//! parameter now gets 400 `invalid_request` on both backends, names refuse bidirectional
//! and invisible characters, and upload file names lose them.
//!
//! The cases are data: [`json_cases`] holds one valid body per JSON endpoint, and the
//! tests derive every hostile variant from it (each string leaf in turn). The OpenAPI
//! document is the checklist: an endpoint with a JSON body, or a string field, that has no
//! case fails the test, so a new endpoint is covered by adding one line.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api::{Api, code, servers, sqlite};
use crate::materials::{Class, class, upload};

/// What the hostile strings are made of: NUL (the PostgreSQL 500) and another C0 control.
const HOSTILE: [&str; 2] = ["\u{0}", "\u{7}"];

/// The ids a case's path and body may refer to.
struct Fixture {
    class: Class,
    session_id: String,
    template_doc_id: String,
}

impl Fixture {
    async fn new(api: &Api) -> Self {
        let class = class(api).await;
        let teacher = class.teacher.access.clone();
        let (status, session) = api
            .post(
                &format!("/classrooms/{}/sessions", class.id),
                Some(&teacher),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{} {session}", api.backend);
        let (status, template) = api
            .post(
                &format!("/classrooms/{}/templates", class.id),
                Some(&teacher),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{} {template}", api.backend);
        Self {
            class,
            session_id: session["id"].as_str().expect("session id").to_owned(),
            template_doc_id: template["doc_id"].as_str().expect("doc id").to_owned(),
        }
    }

    /// `template` with `{classroom}`, `{session}` and `{template}` filled in.
    fn fill(&self, template: &str) -> String {
        template
            .replace("{classroom}", &self.class.id)
            .replace("{session}", &self.session_id)
            .replace("{template}", &self.template_doc_id)
            // A document id as one path segment (`/documents/{doc}/...`).
            .replace("{template_path}", &self.template_doc_id.replace('/', "%2F"))
    }
}

/// One valid request per endpoint with a JSON body: method, path (as in the OpenAPI
/// document, with our placeholders for its parameters) and a body naming every field.
/// Add a line here for a new endpoint; the tests below refuse to pass without it.
fn json_cases() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "post",
            "/auth/register",
            json!({"email": "new@example.edu", "display_name": "New", "password": "correct horse", "role": "student"}),
        ),
        (
            "post",
            "/auth/login",
            json!({"email": "teacher@example.edu", "password": "correct horse"}),
        ),
        (
            "post",
            "/auth/refresh",
            json!({"refresh_token": "a-refresh-token"}),
        ),
        (
            "post",
            "/auth/logout",
            json!({"refresh_token": "a-refresh-token"}),
        ),
        (
            "post",
            "/admin/users",
            json!({"email": "made@example.edu", "display_name": "Made", "password": "correct horse", "role": "student"}),
        ),
        (
            "post",
            "/doc-tokens",
            json!({"doc": "{template}", "access": "read"}),
        ),
        ("post", "/classrooms", json!({"name": "Chemistry"})),
        (
            "post",
            "/classrooms/join",
            json!({"join_code": "ABCD-EFGH"}),
        ),
        (
            "put",
            "/sessions/{session}/focus",
            json!({"doc_id": "{template}", "section": "intro"}),
        ),
        (
            "post",
            "/sessions/{session}/handouts",
            json!({"template_doc_id": "{template}"}),
        ),
        (
            "post",
            "/classrooms/{classroom}/search",
            json!({"query": "cells", "material_ids": ["a-material"], "k": 3}),
        ),
        (
            "post",
            "/sessions/{session}/ai/jobs",
            json!({"kind": "translate", "prompt": "why?", "material_ids": ["a-material"], "language": "French", "source_doc_id": "{template}"}),
        ),
        (
            "post",
            "/classrooms/{classroom}/webhooks",
            json!({"url": "http://93.184.216.34/hook", "events": ["session.started"]}),
        ),
        (
            "post",
            "/documents/{template_path}/versions",
            json!({"label": "before the lab"}),
        ),
        ("post", "/me/inbox/read", json!({"ids": ["an-item"]})),
        ("put", "/me/notifications", json!({"email": true})),
    ]
}

/// The JSON pointers of every string in `value`.
fn string_leaves(value: &Value, pointer: String, leaves: &mut Vec<String>) {
    match value {
        Value::String(_) => leaves.push(pointer),
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                string_leaves(item, format!("{pointer}/{index}"), leaves);
            }
        }
        Value::Object(fields) => {
            for (key, item) in fields {
                string_leaves(item, format!("{pointer}/{key}"), leaves);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Sends `body` to `method path` with the teacher's token.
async fn send(
    api: &Api,
    method: &str,
    path: &str,
    token: &str,
    body: Value,
) -> (StatusCode, Value) {
    match method {
        "post" => api.post(path, Some(token), body).await,
        "put" => api.put(path, Some(token), body).await,
        other => panic!("no JSON case uses {other}"),
    }
}

/// The OpenAPI document of `api`'s server.
async fn openapi(api: &Api) -> Value {
    let (status, document) = api.get("/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    document
}

/// `(method, path without /api/v1)` of every operation in `document`.
fn operations(document: &Value) -> Vec<(String, String, Value)> {
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            let path = path.trim_start_matches("/api/v1").to_owned();
            operations.push((method.clone(), path, operation.clone()));
        }
    }
    operations
}

/// The string properties (and string-array properties) of a request body schema.
fn string_properties(document: &Value, operation: &Value) -> BTreeSet<String> {
    let reference = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        .as_str()
        .expect("JSON request bodies are components");
    let name = reference.trim_start_matches("#/components/schemas/");
    let schema = &document["components"]["schemas"][name];
    // AiJobRequest is an allOf of the derived object and the per-kind conditions.
    let object = schema["allOf"].get(0).unwrap_or(schema);
    let mut names = BTreeSet::new();
    for (field, property) in object["properties"].as_object().expect("properties") {
        let types = |schema: &Value| schema["type"].to_string();
        let is_string = property.get("$ref").is_some() // enums travel as strings
            || types(property).contains("string")
            || types(&property["items"]).contains("string");
        if is_string {
            names.insert(field.clone());
        }
    }
    names
}

/// Every JSON string field of every request body, with NUL or another control character
/// in it, is 400 `invalid_request`, never a 500 (which PostgreSQL gave for NUL).
#[tokio::test]
async fn control_characters_in_any_json_string_are_refused_on_both_backends() {
    for api in servers(|_| {}).await {
        let backend = api.backend;
        let fixture = Fixture::new(&api).await;
        let token = fixture.class.teacher.access.clone();
        let cases = json_cases();

        // The document is the checklist: every JSON endpoint has a case, and each case
        // names every string field of its schema.
        let document = openapi(&api).await;
        for (method, path, operation) in operations(&document) {
            if operation["requestBody"]["content"]["application/json"].is_null() {
                continue;
            }
            // Same method and path, whatever the parameters are called.
            let same_segment = |(ours, theirs): (&str, &str)| {
                ours == theirs || (ours.starts_with('{') && theirs.starts_with('{'))
            };
            let case = cases.iter().find(|(case_method, case_path, _)| {
                *case_method == method
                    && case_path.split('/').count() == path.split('/').count()
                    && case_path.split('/').zip(path.split('/')).all(same_segment)
            });
            let Some((_, _, body)) = case else {
                panic!("{method} {path} has a JSON body but no case in json_cases()");
            };
            let fields: BTreeSet<String> =
                body.as_object().expect("object").keys().cloned().collect();
            let missing: Vec<_> = string_properties(&document, &operation)
                .difference(&fields)
                .cloned()
                .collect();
            assert!(
                missing.is_empty(),
                "{method} {path}: no case sets {missing:?}"
            );
        }

        let mut checked = 0;
        for (method, path, body) in &cases {
            let path = fixture.fill(path);
            let body: Value =
                serde_json::from_str(&fixture.fill(&body.to_string())).expect("filled body");
            let mut leaves = Vec::new();
            string_leaves(&body, String::new(), &mut leaves);
            for leaf in leaves {
                for hostile in HOSTILE {
                    let mut hostile_body = body.clone();
                    let value = hostile_body.pointer_mut(&leaf).expect("leaf");
                    let original = value.as_str().expect("string").to_owned();
                    *value = Value::String(format!("{original}{hostile}x"));
                    let (status, answer) = send(&api, method, &path, &token, hostile_body).await;
                    assert_eq!(
                        (status, code(&answer)),
                        (StatusCode::BAD_REQUEST, "invalid_request"),
                        "{backend} {method} {path} {leaf} with U+{:04X}: {answer}",
                        u32::from(hostile.chars().next().expect("char"))
                    );
                    checked += 1;
                }
            }
        }
        assert!(
            checked >= 2 * 25,
            "{backend}: only {checked} hostile bodies"
        );

        // The server still serves everyone afterwards.
        let (status, _) = api.get("/me", Some(&token)).await;
        assert_eq!(status, StatusCode::OK, "{backend}");
        api.stop().await;
    }
}

/// `%00` (or another control character) in any path parameter of any endpoint is 400
/// `invalid_request` before a handler or the database sees it.
#[tokio::test]
async fn control_characters_in_path_parameters_are_refused_on_both_backends() {
    for api in servers(|_| {}).await {
        let backend = api.backend;
        let fixture = Fixture::new(&api).await;
        let token = fixture.class.teacher.access.clone();
        let document = openapi(&api).await;
        let mut checked = 0;
        for (method, path, _) in operations(&document) {
            if !path.contains('{') {
                continue;
            }
            for hostile in ["%00", "%1B"] {
                // A real id with the control character after it, in every parameter.
                let mut url = String::new();
                for segment in path.split('/').skip(1) {
                    url.push('/');
                    if segment.starts_with('{') {
                        url.push_str(&fixture.class.id);
                        url.push_str(hostile);
                    } else {
                        url.push_str(segment);
                    }
                }
                let url = api.server().http(&format!("/api/v1{url}"));
                let request = match method.as_str() {
                    "get" => api.client().get(&url),
                    "post" => api.client().post(&url).json(&json!({})),
                    "put" => api.client().put(&url).json(&json!({})),
                    "delete" => api.client().delete(&url),
                    other => panic!("unexpected method {other}"),
                };
                let (status, answer) = api.call(request, Some(&token)).await;
                assert_eq!(
                    (status, code(&answer)),
                    (StatusCode::BAD_REQUEST, "invalid_request"),
                    "{backend} {method} {url}: {answer}"
                );
                checked += 1;
            }
        }
        assert!(checked >= 2 * 20, "{backend}: only {checked} hostile paths");
        let (status, _) = api.get("/me", Some(&token)).await;
        assert_eq!(status, StatusCode::OK, "{backend}");
        api.stop().await;
    }
}

/// Names others see refuse bidirectional overrides, isolates, marks and invisible
/// characters (one name posing as another), and accept real names, emoji included.
#[tokio::test]
async fn names_refuse_bidi_and_invisible_characters() {
    let api = sqlite(|_| {}).await;
    let fixture = Fixture::new(&api).await;
    let token = fixture.class.teacher.access.clone();
    let hostile = [
        "Ada\u{202E}ecalevoL",
        "\u{2066}Ada\u{2069}",
        "A\u{200B}da",
        "Ada\u{200F}",
        "Ada\nLovelace",
        "\u{FEFF}Ada",
        "Ada\u{061C}",
    ];
    for (index, name) in hostile.iter().enumerate() {
        let (status, answer) = api
            .post(
                "/auth/register",
                None,
                json!({"email": format!("bidi{index}@example.edu"), "display_name": name, "password": "correct horse", "role": "student"}),
            )
            .await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "display name {name:?}: {answer}"
        );
        let (status, answer) = api
            .post("/classrooms", Some(&token), json!({"name": name}))
            .await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "classroom name {name:?}: {answer}"
        );
    }
    let (status, answer) = api
        .post(
            "/auth/register",
            None,
            json!({"email": "ada\u{202E}@example.edu", "display_name": "Ada", "password": "correct horse", "role": "student"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "email: {answer}");

    for name in ["Zoë 👩\u{200D}👩\u{200D}👧", "محمد", "李雷"] {
        let (status, answer) = api
            .post("/classrooms", Some(&token), json!({"name": name}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{name:?}: {answer}");
        assert_eq!(answer["name"], name);
    }
    api.stop().await;
}

/// A file called `invoice<U+202E>txt.exe` displays as `invoiceexe.txt`; it is stored
/// without the override, so it shows what it is. (A raw control character in the
/// multipart header itself is already refused by the multipart parser with 400.)
#[tokio::test]
async fn uploaded_file_names_lose_bidi_and_invisible_characters() {
    for api in servers(|_| {}).await {
        let backend = api.backend;
        let class = class(&api).await;
        for (uploaded, stored) in [
            ("invoice\u{202E}txt.exe", "invoicetxt.exe"),
            ("notes\u{2067}.md\u{2069}.txt", "notes.md.txt"),
            ("\u{200F}\u{202E}", "upload"),
        ] {
            let (status, material) = upload(
                &api,
                &class.id,
                &class.teacher.access,
                uploaded,
                b"Cells are the unit of life.".to_vec(),
            )
            .await;
            assert_eq!(
                status,
                StatusCode::ACCEPTED,
                "{backend} {uploaded:?}: {material}"
            );
            assert_eq!(material["file_name"], stored, "{backend} {uploaded:?}");
        }
        api.stop().await;
    }
}

/// The OpenAPI document is valid (`openapi-spec-validator`, installed by scripts/test.sh
/// into `.cache/openapi-venv`), every operationId is unique, and every operation says
/// what security it needs (`[]` for public ones).
#[tokio::test]
async fn openapi_document_is_valid() {
    let api = sqlite(|_| {}).await;
    let document = openapi(&api).await;
    api.stop().await;

    let mut ids = BTreeSet::new();
    for (method, path, operation) in operations(&document) {
        let id = operation["operationId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(!id.is_empty(), "{method} {path} has no operationId");
        assert!(
            ids.insert(id.clone()),
            "operationId {id} repeats ({method} {path})"
        );
        assert!(
            operation["security"].is_array(),
            "{method} {path} does not declare its security (`security()` when public)"
        );
        for status in operation["responses"]
            .as_object()
            .expect("responses")
            .keys()
        {
            assert_ne!(
                status, "500",
                "{method} {path}: 500 is never part of the contract"
            );
        }
    }

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let validator = root.join(".cache/openapi-venv/bin/openapi-spec-validator");
    if !validator.exists() {
        let message = format!(
            "{} is missing: run scripts/test.sh (it installs openapi-spec-validator)",
            validator.display()
        );
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            panic!("{message}");
        }
        eprintln!("skipping the OpenAPI validator: {message}");
        return;
    }
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), document.to_string()).expect("write document");
    let output = std::process::Command::new(&validator)
        .arg(file.path())
        .output()
        .expect("run openapi-spec-validator");
    assert!(
        output.status.success(),
        "openapi-spec-validator refused the document:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
