//! Every shape to every format, read back: Markdown as text, DOCX as its
//! `word/document.xml` and `word/numbering.xml`, PDF through its extracted text.

use std::io::{Cursor, Read, Write};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::{Document, Format, Kind, Options, export};

const ARABIC: &str = "الخلية هي وحدة الحياة";
const HINDI: &str = "कोशिका जीवन की इकाई है";
const CHINESE: &str = "细胞是生命的基本单位";
const GREEK: &str = "Το κύτταρο";
const RUSSIAN: &str = "Клетка";

fn notes() -> Value {
    json!({"content": format!(
        "# Cell biology\n\nThe **cell** is the *unit* of life.\n\n\
         - Organelles\n  1. Nucleus\n  2. Mitochondria\n- Membranes\n\n\
         | Organelle | Role |\n|---|---|\n| Nucleus | Holds DNA |\n| Ribosome | Makes proteins |\n\n\
         {ARABIC}\n\n{HINDI}\n\n{CHINESE}\n\n{GREEK} {RUSSIAN}\n"
    )})
}

fn chat() -> Value {
    json!({"messages": [
        {"id": "j-question", "role": "user", "author": "u1", "text": "What is a cell?", "status": "done"},
        {"id": "j", "role": "assistant", "author": "ai", "text": "The basic unit of life [1].",
         "status": "done", "citations": [
            {"material_id": "m", "file_name": "biology.pdf", "page": 3, "heading": null,
             "marker": 1, "ordinal": 0, "line_start": null, "line_end": null, "location": "p. 3"}
        ]},
        {"id": "k", "role": "assistant", "author": "ai", "text": "", "status": "failed",
         "error": "the model got stuck repeating itself; the answer was discarded"},
    ]})
}

fn mindmap() -> Value {
    json!({"mindmap": {"root": "n1", "nodes": {
        "n1": {"label": "Photosynthesis", "parent": null, "children": ["n2", "n3"]},
        "n2": {"label": "Light reactions", "parent": "n1", "children": ["n4"]},
        "n3": {"label": "Calvin cycle", "parent": "n1", "children": []},
        "n4": {"label": "Chlorophyll", "parent": "n2", "children": []},
    }}})
}

fn quiz() -> Value {
    json!({"quiz": {"title": "Cells quiz", "questions": [
        {"prompt": "Which organelle makes ATP?", "options": ["Nucleus", "Mitochondrion", "Ribosome"],
         "answer": 1, "explanation": "Mitochondria run cellular respiration [1].", "marks": 2},
        {"prompt": "Where is DNA kept?", "options": ["Nucleus", "Vacuole"], "answer": 0,
         "explanation": "In the nucleus.", "marks": 1},
    ]}, "sources": {"1": {"file_name": "biology.pdf", "location": "p. 3", "marker": 1}}})
}

fn flashcards() -> Value {
    json!({"flashcards": {"title": "Cell cards", "cards": [
        {"front": "Mitochondrion", "back": "Makes ATP"},
        {"front": "Ribosome", "back": "Makes proteins"},
    ]}})
}

fn exam() -> Value {
    json!({"exam": {"title": "Biology exam", "duration_minutes": 45, "total_marks": 9, "sections": [
        {"title": "Section A", "questions": [
            {"kind": "multiple_choice", "prompt": "Powerhouse of the cell?",
             "options": ["Golgi", "Mitochondrion"], "answer": 1, "marks": 1},
            {"kind": "short_answer", "prompt": "Name the cell's control centre.",
             "model_answer": "The nucleus", "marks": 2},
        ]},
        {"title": "Section B", "questions": [
            {"kind": "essay", "prompt": "Explain osmosis.", "guidance": "Mentions a membrane", "marks": 6},
        ]},
    ]}})
}

fn lesson_plan() -> Value {
    json!({"lesson_plan": {"title": "Cells lesson", "objectives": ["Name organelles"],
        "timeline": [{"minutes": 10, "activity": "Warm-up"}, {"minutes": 30, "activity": "Microscopes"}],
        "activities": [{"name": "Microscopes", "description": "Look at onion cells"}],
        "assessment": ["Exit ticket"]}})
}

fn shapes() -> Vec<(Kind, Value, &'static [&'static str])> {
    vec![
        (
            Kind::Notes,
            notes(),
            &["Cell biology", "Mitochondria", "Holds DNA"],
        ),
        (
            Kind::Chat,
            chat(),
            &[
                "What is a cell?",
                "basic unit of life",
                "biology.pdf",
                "stuck repeating",
            ],
        ),
        (
            Kind::Mindmap,
            mindmap(),
            &[
                "Photosynthesis",
                "Light reactions",
                "Chlorophyll",
                "Calvin cycle",
            ],
        ),
        (
            Kind::Quiz,
            quiz(),
            &["Cells quiz", "Which organelle makes ATP?", "Mitochondrion"],
        ),
        (
            Kind::Flashcards,
            flashcards(),
            &["Cell cards", "Mitochondrion", "Ribosome"],
        ),
        (
            Kind::Exam,
            exam(),
            &[
                "Biology exam",
                "Section A",
                "Explain osmosis.",
                "45 minutes",
            ],
        ),
        (
            Kind::LessonPlan,
            lesson_plan(),
            &[
                "Cells lesson",
                "Warm-up",
                "Look at onion cells",
                "Exit ticket",
            ],
        ),
    ]
}

fn markdown(value: &Value, answers: bool) -> String {
    let options = Options {
        answers,
        ..Options::default()
    };
    let out = export(&Document::from_json(value), Format::Markdown, &options).expect("markdown");
    String::from_utf8(out.bytes).expect("utf-8")
}

/// A DOCX's parts: `word/document.xml` and `word/numbering.xml`.
fn docx_xml(bytes: &[u8]) -> (String, String) {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).expect("a DOCX is a zip");
    let mut part = |name: &str| {
        let mut text = String::new();
        archive
            .by_name(name)
            .unwrap_or_else(|_| panic!("{name} in the DOCX"))
            .read_to_string(&mut text)
            .expect("utf-8 xml");
        text
    };
    (part("word/document.xml"), part("word/numbering.xml"))
}

/// The text of a PDF, whitespace collapsed, read by poppler's `pdftotext` (it maps
/// shaped Devanagari and Arabic glyphs back to their characters, in logical order).
pub(crate) fn pdf_text(bytes: &[u8]) -> String {
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
    let text = String::from_utf8(output.stdout).expect("utf-8");
    // Direction marks pdftotext puts around right-to-left runs are not text.
    text.replace(['\u{202B}', '\u{202C}', '\u{200F}'], "")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn every_shape_exports_to_markdown() {
    for (kind, value, expected) in shapes() {
        let document = Document::from_json(&value);
        assert_eq!(document.kind(), Some(kind));
        let text = markdown(&value, true);
        for word in expected {
            assert!(text.contains(word), "{kind:?}: {word:?} in\n{text}");
        }
    }
}

#[test]
fn every_shape_exports_to_docx() {
    for (kind, value, expected) in shapes() {
        let options = Options {
            answers: true,
            ..Options::default()
        };
        let out = export(&Document::from_json(&value), Format::Docx, &options).expect("docx");
        let (document, _) = docx_xml(&out.bytes);
        for word in expected {
            assert!(document.contains(word), "{kind:?}: {word:?} in\n{document}");
        }
    }
}

#[test]
fn every_shape_exports_to_pdf() {
    for (kind, value, expected) in shapes() {
        let options = Options {
            answers: true,
            ..Options::default()
        };
        let out = export(&Document::from_json(&value), Format::Pdf, &options).expect("pdf");
        assert!(out.bytes.starts_with(b"%PDF-"), "{kind:?}");
        let text = pdf_text(&out.bytes);
        for word in expected {
            assert!(text.contains(word), "{kind:?}: {word:?} in\n{text}");
        }
    }
}

#[test]
fn docx_has_heading_styles_table_rows_and_list_numbering() {
    let out = export(
        &Document::from_json(&notes()),
        Format::Docx,
        &Options::default(),
    )
    .expect("docx");
    let (document, numbering) = docx_xml(&out.bytes);
    assert!(
        document.contains(r#"<w:pStyle w:val="Heading1" />"#),
        "{document}"
    );
    assert_eq!(document.matches("<w:tr>").count(), 3, "{document}");
    assert!(document.contains("<w:numPr>"), "{document}");
    assert!(
        document.contains(r#"<w:ilvl w:val="1" />"#),
        "nested item: {document}"
    );
    assert!(
        numbering.contains(r#"<w:numFmt w:val="bullet" />"#),
        "{numbering}"
    );
    assert!(
        numbering.contains(r#"<w:numFmt w:val="decimal" />"#),
        "{numbering}"
    );
    for script in [ARABIC, HINDI, CHINESE, GREEK, RUSSIAN] {
        assert!(document.contains(script), "{script}");
    }
    assert!(
        document.contains("<w:bidi />"),
        "the Arabic paragraph reads right to left"
    );
}

#[test]
fn docx_escapes_markup_characters() {
    let value = json!({"content": "a <b> & \"c\" </w:t> d"});
    let out = export(
        &Document::from_json(&value),
        Format::Docx,
        &Options::default(),
    )
    .expect("docx");
    let (document, _) = docx_xml(&out.bytes);
    assert!(document.contains("a &lt;b&gt; &amp;"), "{document}");
}

#[test]
fn pdf_shows_arabic_devanagari_and_chinese() {
    let out = export(
        &Document::from_json(&notes()),
        Format::Pdf,
        &Options::default(),
    )
    .expect("pdf");
    assert_eq!(out.missing, Vec::<char>::new());
    let text = pdf_text(&out.bytes);
    for script in [HINDI, CHINESE, GREEK, RUSSIAN, "Holds DNA"] {
        assert!(text.contains(script), "{script:?} in\n{text}");
    }
    assert!(text.contains(ARABIC), "{ARABIC:?} in\n{text}");
}

#[test]
fn a_character_no_font_has_is_reported_and_named() {
    // A private-use code point of plane 16: no font has a glyph for it.
    let value = json!({"content": "before \u{10FFFD} after"});
    let out = export(
        &Document::from_json(&value),
        Format::Pdf,
        &Options::default(),
    )
    .expect("pdf");
    assert_eq!(out.missing, vec!['\u{10FFFD}']);
    let text = pdf_text(&out.bytes);
    assert!(text.contains("U+10FFFD"), "{text}");
    assert!(text.contains("before") && text.contains("after"), "{text}");
}

#[test]
fn user_text_is_never_typst_markup() {
    let hostile = "#panic(\"x\") $x^2$ #read(\"/etc/passwd\") = not heading \\ ] [ } {";
    let value =
        json!({"content": hostile, "quiz": {"title": "#set page(width: 1pt)", "questions": []}});
    let out = export(
        &Document::from_json(&value),
        Format::Pdf,
        &Options::default(),
    )
    .expect("pdf");
    let text = pdf_text(&out.bytes);
    assert!(text.contains("#panic(\"x\")"), "{text}");
    assert!(text.contains("#read(\"/etc/passwd\")"), "{text}");
    assert!(text.contains("#set page(width: 1pt)"), "{text}");
}

#[test]
fn quiz_without_answers_hides_them_in_every_format() {
    for format in [Format::Markdown, Format::Docx, Format::Pdf] {
        let document = Document::from_json(&quiz());
        let read = |answers| {
            let options = Options {
                answers,
                ..Options::default()
            };
            let out = export(&document, format, &options).expect("export");
            match format {
                Format::Markdown => String::from_utf8(out.bytes).expect("utf-8"),
                Format::Docx => docx_xml(&out.bytes).0,
                Format::Pdf => pdf_text(&out.bytes),
            }
        };
        let (with, without) = (read(true), read(false));
        for secret in ["correct answer", "cellular respiration", "Answer key"] {
            assert!(with.contains(secret), "{format:?} {secret}");
            assert!(!without.contains(secret), "{format:?} {secret}");
        }
        assert!(without.contains("Which organelle makes ATP?"), "{format:?}");
    }
}

#[test]
fn exam_without_answers_leaves_room_to_write() {
    let with = markdown(&exam(), true);
    let without = markdown(&exam(), false);
    assert!(with.contains("The nucleus") && with.contains("Mentions a membrane"));
    assert!(!without.contains("The nucleus") && !without.contains("Mentions a membrane"));
    assert!(without.contains("\\_\\_\\_"), "{without}");
}

#[test]
fn flashcards_without_answers_list_the_fronts_only() {
    let without = markdown(&flashcards(), false);
    assert!(
        without.contains("Mitochondrion") && !without.contains("Makes ATP"),
        "{without}"
    );
}

#[test]
fn junk_exports_without_panicking() {
    for junk in [
        json!(null),
        json!({"quiz": [1]}),
        json!({"messages": {"a": 1}}),
        json!({"mindmap": {"root": 5, "nodes": [1]}}),
        json!({"content": 7}),
        // Empty items, cells, quotes, code and headings.
        json!({"content": "-\n- b\n\n1.\n\n| a |\n|---|\n| |\n\n>\n\n```\n```\n\n#"}),
    ] {
        for format in [Format::Markdown, Format::Docx, Format::Pdf] {
            export(&Document::from_json(&junk), format, &Options::default()).expect("export");
        }
    }
}
