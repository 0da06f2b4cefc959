//! Each format round-trips its fixture with page / heading positions.

use lectern_library::testing::{Block, docx, encrypted_pdf_with, pdf, pdf_with_headings};
use lectern_library::{ExtractError, Format, Limits, extract};

use crate::normalise;

fn headings(sections: &[lectern_library::Section]) -> Vec<Option<&str>> {
    sections.iter().map(|s| s.heading.as_deref()).collect()
}

#[test]
fn pdf_pages_round_trip() {
    let pages = [
        "Cells are the basic unit of life.",
        "Mitochondria release energy from glucose.\n\nThey have their own DNA.",
        "Photosynthesis happens in chloroplasts: caf\u{e9} cr\u{e8}me (Latin-1 survives).",
    ];
    let out = extract(Format::Pdf, &pdf(&pages), &Limits::default()).expect("extract");
    assert_eq!(out.sections.len(), 3);
    for (i, (section, expected)) in out.sections.iter().zip(pages).enumerate() {
        assert_eq!(section.page, Some(i as u32 + 1));
        assert_eq!(section.heading, None);
        assert_eq!(normalise(&section.text), normalise(expected));
    }
}

#[test]
fn pdf_headings_are_told_by_their_larger_font_and_kept_with_pages() {
    let pages = [
        "# Cell structure\nCells are the basic unit of life.\n\n# Mitochondria\nThey release energy.",
        "Their inner membrane is folded.\n\n2.1 Respiration in Detail\nGlucose is broken down.",
    ];
    let out =
        extract(Format::Pdf, &pdf_with_headings(&pages), &Limits::default()).expect("extract");
    let found: Vec<(Option<u32>, Option<&str>, String)> = out
        .sections
        .iter()
        .map(|s| (s.page, s.heading.as_deref(), normalise(&s.text)))
        .collect();
    assert_eq!(
        found,
        vec![
            (
                Some(1),
                Some("Cell structure"),
                "Cells are the basic unit of life.".to_owned()
            ),
            (
                Some(1),
                Some("Mitochondria"),
                "They release energy.".to_owned()
            ),
            (
                Some(2),
                Some("Mitochondria"),
                "Their inner membrane is folded.".to_owned()
            ),
            (
                Some(2),
                Some("Mitochondria > 2.1 Respiration in Detail"),
                "Glucose is broken down.".to_owned()
            ),
        ]
    );
}

#[test]
fn pdf_blank_pages_are_skipped_but_numbering_kept() {
    let out =
        extract(Format::Pdf, &pdf(&["one", "", "three"]), &Limits::default()).expect("extract");
    let pages: Vec<Option<u32>> = out.sections.iter().map(|s| s.page).collect();
    assert_eq!(pages, vec![Some(1), Some(3)]);
}

#[test]
fn pdf_without_text_is_no_text() {
    let err = extract(Format::Pdf, &pdf(&["", ""]), &Limits::default()).expect_err("scanned");
    assert!(matches!(err, ExtractError::NoText), "{err:?}");
}

#[test]
fn pdf_with_owner_password_only_is_read() {
    let bytes = encrypted_pdf_with("", &["Restricted but readable."]);
    let out = extract(Format::Pdf, &bytes, &Limits::default()).expect("extract");
    assert_eq!(normalise(&out.sections[0].text), "Restricted but readable.");
}

#[test]
fn docx_headings_form_paths() {
    let bytes = docx(&[
        Block::Heading(0, "Biology".into()),
        Block::Paragraph("Introduction to the course.".into()),
        Block::Heading(1, "Cells".into()),
        Block::Paragraph("Cells are small.".into()),
        Block::Paragraph("They divide.".into()),
        Block::Heading(2, "Mitochondria".into()),
        Block::Paragraph("Energy & <power> \"plants\".".into()),
        Block::Heading(1, "Plants".into()),
        Block::Paragraph("col1\tcol2\nnext line".into()),
    ]);
    let out = extract(Format::Docx, &bytes, &Limits::default()).expect("extract");
    assert_eq!(
        headings(&out.sections),
        vec![
            Some("Biology"),
            Some("Biology > Cells"),
            Some("Biology > Cells > Mitochondria"),
            Some("Biology > Plants")
        ]
    );
    assert_eq!(out.sections[0].text, "Introduction to the course.");
    assert_eq!(out.sections[1].text, "Cells are small.\n\nThey divide.");
    assert_eq!(out.sections[2].text, "Energy & <power> \"plants\".");
    assert_eq!(out.sections[3].text, "col1\tcol2\nnext line");
    assert!(out.sections.iter().all(|s| s.page.is_none()));
}

#[test]
fn docx_table_comes_out_row_by_row() {
    let table = vec![
        vec!["Organelle".to_owned(), "Function".to_owned()],
        vec!["Nucleus".to_owned(), "Holds DNA".to_owned()],
        vec!["Ribosome".to_owned(), "Makes proteins".to_owned()],
    ];
    let bytes = docx(&[
        Block::Paragraph("Before.".into()),
        Block::Table(table),
        Block::Paragraph("After.".into()),
    ]);
    let out = extract(Format::Docx, &bytes, &Limits::default()).expect("extract");
    assert_eq!(out.sections.len(), 1);
    assert_eq!(
        out.sections[0].text,
        "Before.\n\nOrganelle | Function\nNucleus | Holds DNA\nRibosome | Makes proteins\n\nAfter."
    );
}

#[test]
fn zip_that_is_not_a_word_document_is_unsupported() {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file(
        "ppt/presentation.xml",
        zip::write::SimpleFileOptions::default(),
    )
    .expect("entry");
    zip.write_all(b"<p:presentation/>").expect("write");
    let bytes = zip.finish().expect("finish").into_inner();
    assert_eq!(
        lectern_library::sniff(&bytes, "slides.docx").expect("sniff"),
        Format::Docx
    );
    let err = extract(Format::Docx, &bytes, &Limits::default()).expect_err("pptx");
    assert!(
        matches!(err, ExtractError::Unsupported { detected } if detected.contains("PowerPoint")),
        "{err:?}"
    );
}

#[test]
fn markdown_sections_follow_atx_headings() {
    let md = "Preamble line.\n\n# Cells\nCells are small.\n\n## Mitochondria ##\nPowerhouse.\n\n```\n# not a heading\n```\n\n# Plants\nGreen.\n";
    let out = extract(Format::Markdown, md.as_bytes(), &Limits::default()).expect("extract");
    assert_eq!(
        headings(&out.sections),
        vec![
            None,
            Some("Cells"),
            Some("Cells > Mitochondria"),
            Some("Plants")
        ]
    );
    assert_eq!(out.sections[0].text, "Preamble line.");
    assert_eq!(out.sections[1].text, "Cells are small.");
    assert_eq!(
        out.sections[2].text,
        "Powerhouse.\n\n```\n# not a heading\n```"
    );
    assert_eq!(out.sections[3].text, "Green.");
    let lines: Vec<Option<u32>> = out.sections.iter().map(|s| s.line).collect();
    assert_eq!(lines, vec![Some(1), Some(4), Some(7), Some(14)]);
}

#[test]
fn text_is_one_section_with_normalised_line_ends() {
    let out = extract(
        Format::Text,
        b"\xef\xbb\xbfline one\r\nline two\r\n\r\npara two",
        &Limits::default(),
    )
    .expect("extract");
    assert_eq!(out.sections.len(), 1);
    assert_eq!(out.sections[0].text, "line one\nline two\n\npara two");
    assert_eq!(
        (out.sections[0].page, out.sections[0].heading.as_deref()),
        (None, None)
    );
}

#[test]
fn invalid_utf8_after_the_sniffed_head_is_not_utf8() {
    let mut bytes = "ok ".repeat(5000).into_bytes();
    bytes.extend_from_slice(b"\xff\xfe bad");
    assert_eq!(
        lectern_library::sniff(&bytes[..8192], "a.txt").expect("head is text"),
        Format::Text
    );
    let err = extract(Format::Text, &bytes, &Limits::default()).expect_err("invalid");
    assert!(
        matches!(err, ExtractError::NotUtf8 { offset: 15000 }),
        "{err:?}"
    );
}

#[test]
fn whitespace_only_text_is_no_text() {
    assert!(matches!(
        extract(Format::Text, b" \n\n\t ", &Limits::default()),
        Err(ExtractError::NoText)
    ));
}

/// Word stores a text box's paragraphs inside a run of the surrounding paragraph, once in
/// `mc:Choice` and again in `mc:Fallback`: the box is read once and the outer paragraph
/// keeps its text on both sides of it.
#[test]
fn docx_text_box_is_read_once_without_losing_its_paragraph() {
    use std::io::Write;
    let xml = r#"<?xml version="1.0"?><w:document xmlns:w="w" xmlns:mc="mc"><w:body>
        <w:p><w:r><w:t>Before the box, </w:t></w:r><w:r><mc:AlternateContent>
          <mc:Choice><w:drawing><w:txbxContent><w:p><w:r><w:t>Inside &amp; boxed</w:t></w:r></w:p></w:txbxContent></w:drawing></mc:Choice>
          <mc:Fallback><w:pict><w:txbxContent><w:p><w:r><w:t>Inside &amp; boxed</w:t></w:r></w:p></w:txbxContent></w:pict></mc:Fallback>
        </mc:AlternateContent></w:r><w:r><w:t>after the box.</w:t></w:r></w:p>
        <w:p><w:pPr><w:tabs><w:tab w:val="left" w:pos="720"/></w:tabs></w:pPr><w:r><w:t>No stray tab.</w:t><w:delText>deleted</w:delText></w:r></w:p>
        </w:body></w:document>"#;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file(
        "word/document.xml",
        zip::write::SimpleFileOptions::default(),
    )
    .expect("entry");
    zip.write_all(xml.as_bytes()).expect("write");
    let bytes = zip.finish().expect("finish").into_inner();
    let out = extract(Format::Docx, &bytes, &Limits::default()).expect("extract");
    assert_eq!(out.sections.len(), 1);
    assert_eq!(
        out.sections[0].text,
        "Inside & boxed\n\nBefore the box, after the box.\n\nNo stray tab."
    );
}
