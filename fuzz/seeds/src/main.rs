//! Writes the seed corpus of every fuzz target into `fuzz/corpus/<target>/`.
//!
//! Seeds are small valid inputs that give the fuzzer a head start past the format's
//! envelope: y-sync frames and updates made by yrs itself (text, formats, embeds, nested
//! values, XML, sub-documents, deletions, several clients), awareness states, PDF and DOCX
//! files from `lectern_library::testing`, Markdown, and model output for every structured
//! kind. Run again after a format changes (files are named by what they hold and
//! overwritten); hand-made seeds and reduced crash inputs can sit beside them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use lectern_library::testing::{self, Block};
use yrs::sync::{Awareness, Message, SyncMessage};
use yrs::types::xml::{Xml, XmlElementPrelim, XmlFragment, XmlTextPrelim};
use yrs::updates::encoder::Encode;
use yrs::{Any, Array, Doc, GetString, Map, MapPrelim, ReadTxn, StateVector, Text, Transact};

/// The corpus directory (`fuzz/corpus`), next to this package.
fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus")
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = corpus().join(target);
    std::fs::create_dir_all(&dir).expect("create corpus dir");
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

/// Updates yrs produces for the kinds of content the format has.
fn updates() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();

    let doc = Doc::with_client_id(1);
    let body = doc.get_or_insert_text("body");
    body.insert(&mut doc.transact_mut(), 0, "hello world");
    out.push(("text", full_state(&doc)));
    let before = doc.transact().state_vector();
    body.remove_range(&mut doc.transact_mut(), 0, 6);
    out.push(("delete", diff(&doc, &before)));

    let doc = Doc::with_client_id(2);
    let body = doc.get_or_insert_text("body");
    {
        let mut txn = doc.transact_mut();
        body.insert(&mut txn, 0, "bold and plain");
        let bold: HashMap<std::sync::Arc<str>, Any> =
            HashMap::from([("bold".into(), Any::Bool(true))]);
        body.format(&mut txn, 0, 4, bold);
        body.insert_embed(
            &mut txn,
            4,
            Any::from(HashMap::from([("image".to_owned(), Any::from("cell.png"))])),
        );
    }
    out.push(("format_embed", full_state(&doc)));

    let doc = Doc::with_client_id(3);
    let meta = doc.get_or_insert_map("meta");
    let list = doc.get_or_insert_array("list");
    {
        let mut txn = doc.transact_mut();
        let nested = Any::from(vec![
            Any::from(1.5),
            Any::from("x"),
            Any::from(HashMap::from([(
                "deeper".to_owned(),
                Any::from(vec![Any::from(vec![Any::Null, Any::Bool(false)])]),
            )])),
        ]);
        meta.insert(&mut txn, "focus", "photosynthesis");
        meta.insert(&mut txn, "nested", nested);
        meta.insert(&mut txn, "big", Any::from(1i64 << 40));
        meta.insert(&mut txn, "bytes", Any::from(vec![0u8, 1, 2, 255]));
        meta.insert(&mut txn, "child", MapPrelim::from([("k", "v")]));
        list.push_back(&mut txn, 42);
        list.push_back(&mut txn, "item");
        list.push_back(&mut txn, Any::Undefined);
    }
    out.push(("map_array_any", full_state(&doc)));

    let doc = Doc::with_client_id(4);
    let xml = doc.get_or_insert_xml_fragment("xml");
    {
        let mut txn = doc.transact_mut();
        let paragraph = xml.insert(&mut txn, 0, XmlElementPrelim::empty("paragraph"));
        paragraph.insert_attribute(&mut txn, "class", "lead");
        let text = paragraph.insert(&mut txn, 0, XmlTextPrelim::new("Mitochondria"));
        let _ = text.get_string(&txn);
    }
    out.push(("xml", full_state(&doc)));

    let doc = Doc::with_client_id(5);
    let docs = doc.get_or_insert_map("docs");
    docs.insert(&mut doc.transact_mut(), "handout", Doc::new());
    out.push(("subdoc", full_state(&doc)));

    // Two clients editing concurrently, merged.
    let a = Doc::with_client_id(6);
    let b = Doc::with_client_id(7);
    a.get_or_insert_text("body")
        .insert(&mut a.transact_mut(), 0, "from a");
    b.get_or_insert_text("body")
        .insert(&mut b.transact_mut(), 0, "from b");
    let merged = yrs::merge_updates_v1([full_state(&a), full_state(&b)]).expect("merge");
    out.push(("two_clients", merged));
    out
}

fn full_state(doc: &Doc) -> Vec<u8> {
    doc.transact()
        .encode_state_as_update_v1(&StateVector::default())
}

fn diff(doc: &Doc, since: &StateVector) -> Vec<u8> {
    doc.transact().encode_state_as_update_v1(since)
}

fn awareness_updates() -> Vec<(&'static str, Vec<u8>)> {
    let doc = Doc::with_client_id(11);
    let mut awareness = Awareness::new(doc);
    awareness.set_local_state_raw(
        r##"{"user":{"name":"Ann","color":"#30bced"},"cursor":{"anchor":3,"head":7}}"##,
    );
    let present = awareness.update().expect("awareness").encode_v1();
    let client = awareness.client_id();
    awareness.clean_local_state();
    let gone = awareness
        .update_with_clients([client])
        .expect("awareness")
        .encode_v1();
    vec![("present", present), ("removed", gone)]
}

fn sync_frames(
    updates: &[(&'static str, Vec<u8>)],
    awareness: &[(&'static str, Vec<u8>)],
) -> Vec<(String, Vec<u8>)> {
    let mut frames = Vec::new();
    let doc = Doc::with_client_id(1);
    doc.get_or_insert_text("body")
        .insert(&mut doc.transact_mut(), 0, "x");
    for (name, sv) in [
        ("step1_empty", StateVector::default()),
        ("step1", doc.transact().state_vector()),
    ] {
        frames.push((
            name.to_owned(),
            Message::Sync(SyncMessage::SyncStep1(sv)).encode_v1(),
        ));
    }
    for (name, update) in updates {
        frames.push((
            format!("update_{name}"),
            Message::Sync(SyncMessage::Update(update.clone())).encode_v1(),
        ));
        frames.push((
            format!("step2_{name}"),
            Message::Sync(SyncMessage::SyncStep2(update.clone())).encode_v1(),
        ));
    }
    for (name, payload) in awareness {
        let mut frame = vec![1u8];
        yrs::encoding::write::Write::write_buf(&mut frame, payload);
        frames.push((format!("awareness_{name}"), frame));
    }
    frames.push((
        "awareness_query".to_owned(),
        Message::AwarenessQuery.encode_v1(),
    ));
    // Several messages in one frame, as the protocol allows.
    let mut several = Message::Sync(SyncMessage::SyncStep1(StateVector::default())).encode_v1();
    several.extend(Message::AwarenessQuery.encode_v1());
    several.extend(Message::Sync(SyncMessage::Update(updates[0].1.clone())).encode_v1());
    frames.push(("several".to_owned(), several));
    frames
}

fn main() {
    let updates = updates();
    let awareness = awareness_updates();
    for (name, update) in &updates {
        write("sync_apply", name, update);
    }
    for (name, payload) in &awareness {
        write("awareness", name, payload);
    }
    let frames = sync_frames(&updates, &awareness);
    for (name, frame) in &frames {
        write("sync_frame", name, frame);
        let mut multiplexed = Vec::new();
        yrs::encoding::write::Write::write_string(&mut multiplexed, "session/s1/notes");
        multiplexed.extend_from_slice(frame);
        write("multiplexed", name, &multiplexed);
    }
    let mut leave = Vec::new();
    yrs::encoding::write::Write::write_string(&mut leave, "session/s1/notes");
    leave.push(100);
    write("multiplexed", "leave", &leave);

    write(
        "extract_pdf",
        "two_pages.pdf",
        &testing::pdf(&[
            "Photosynthesis\n\nLight reactions happen in the thylakoids.",
            "Calvin cycle",
        ]),
    );
    write("extract_pdf", "encrypted.pdf", &testing::encrypted_pdf());
    write(
        "extract_docx",
        "headings_table.docx",
        &testing::docx(&[
            Block::Heading(0, "Cells".into()),
            Block::Heading(1, "Mitochondria".into()),
            Block::Paragraph("They make ATP.\tTabbed\nline".into()),
            Block::Table(vec![
                vec!["Organelle".into(), "Role".into()],
                vec!["Nucleus".into(), "DNA".into()],
            ]),
        ]),
    );
    // The first byte picks the format: even Markdown, odd plain text.
    write(
        "extract_text",
        "markdown",
        b"\x00# Cells\n\nIntro.\n\n## Mitochondria\n\n- ATP\n- *membranes*\n\n```\ncode\n```\n",
    );
    write(
        "extract_text",
        "text",
        "\x01Plain text, accents é and → arrows.\n\nSecond paragraph.".as_bytes(),
    );

    // The first byte picks the kind (quiz, flashcards, exam, lesson plan, mind map by
    // value % 5) and its high bits the hints.
    let structured: [(&str, u8, &str); 8] = [
        (
            "quiz",
            0,
            r#"{"title":"Cells","questions":[{"prompt":"What makes ATP?","options":["Mitochondria","Nucleus","Ribosome","Vacuole"],"answer":0,"explanation":"Mitochondria make ATP [1].","marks":1}]}"#,
        ),
        (
            "quiz_fenced_truncated",
            0,
            "Sure! Here it is:\n```json\n{\"title\": \"Cells\", \"questions\": [{\"prompt\": \"What makes ATP?\", \"options\": [\"Mitochondria\", \"Nucleus\"], \"answer\": 0, \"explanation\": \"The mitochondria is the power",
        ),
        (
            "flashcards",
            1,
            r#"{"title": "D", "cards": [{"front": "Lunar eclipse", "back": "Earth's shadow on the Moon"}]}"#,
        ),
        (
            "exam",
            2 | 0x40,
            r#"{"title": "Cells test", "duration_minutes": "45 minutes", "sections": [{"title": "Section A", "questions": [{"prompt": "Which organelle makes ATP?", "kind": "multiple_choice", "options": ["Mitochondria", "Nucleus"], "answer": "A", "marks": 1}, {"prompt": "Define osmosis.", "type": "short answer", "answer": "Water moving across a membrane.", "marks": "2"}]}, {"questions": [{"prompt": "Explain how cells specialise.", "kind": "essay", "guidance": "Differentiation, examples.", "marks": 6}]}], "total_marks": 20}"#,
        ),
        (
            "lesson_plan",
            3,
            r#"{"title": "Leaves", "objectives": ["Explain photosynthesis"], "timeline": [{"minutes": 10, "activity": "Starter"}, {"minutes": 15, "activity": "Leaf experiment"}], "activities": [{"name": "Exit ticket", "description": "Three questions"}], "assessment": ["Exit ticket"]}"#,
        ),
        (
            "mindmap_outline",
            4 | 0x80,
            "Here is your mind map:\n- **Photosynthesis**\n  - Light reactions\n    - Chlorophyll absorbs light\n  - Calvin cycle:\n    * CO₂ fixed\n\t\t- Glucose made\n- Limiting factors\n  1. Light\n",
        ),
        (
            "mindmap_json",
            4,
            r#"{"label": "Cells", "children": [{"label": "Nucleus", "children": [{"label": "DNA"}]}]}"#,
        ),
        (
            "array_of_questions",
            0x80, // quiz, with a title hint
            r#"[{"prompt": "What gas is released?", "options": ["Oxygen", "Nitrogen"], "answer": "Oxygen"}]"#,
        ),
    ];
    for (name, selector, text) in structured {
        let mut seed = vec![selector];
        seed.extend_from_slice(text.as_bytes());
        write("structured_json", name, &seed);
    }
    // Streamed outlines; NUL bytes mark where the stream is cut into pieces, '#' at the
    // start asks for a synthetic root.
    write("mindmap", "outline", "- Photosynthesis\n  - Light\0 reactions\n    - Chloro\0phyll\n  - Calvin cycle\n- Limiting factors\n  1. Light\n  2. Temperature".as_bytes());
    write(
        "mindmap",
        "with_root",
        "#\0Light\n  Dark\n\tDeep\n      Deeper\n        Deepest\n          Too deep\n".as_bytes(),
    );
    eprintln!("seeds written to {}", corpus().display());
}
