//! Format detection from bytes, never from the name.

use lectern_library::testing::{Block, docx, pdf};
use lectern_library::{ExtractError, Format, sniff};

#[test]
fn formats_are_detected_from_bytes() {
    assert_eq!(sniff(&pdf(&["x"]), "notes.txt").expect("pdf"), Format::Pdf);
    let word = docx(&[Block::Paragraph("x".into())]);
    assert_eq!(sniff(&word, "notes.pdf").expect("docx"), Format::Docx);
    assert_eq!(
        sniff(b"# Title\n\ntext", "notes.md").expect("md"),
        Format::Markdown
    );
    assert_eq!(
        sniff(b"# Title\n\ntext", "notes.markdown").expect("md"),
        Format::Markdown
    );
    assert_eq!(sniff(b"plain words", "notes").expect("txt"), Format::Text);
}

#[test]
fn png_renamed_txt_is_unsupported() {
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x10\0\0\0\x10\x08\x06\0\0\0";
    let err = sniff(png, "homework.txt").expect_err("png");
    assert!(
        matches!(
            err,
            ExtractError::Unsupported {
                detected: "a PNG image"
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("PNG"), "{err}");
}

#[test]
fn elf_renamed_txt_is_unsupported() {
    let elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0>\0\x01\0\0\0";
    assert!(matches!(
        sniff(elf, "notes.txt"),
        Err(ExtractError::Unsupported { .. })
    ));
}

#[test]
fn unknown_binary_is_unsupported() {
    let bytes: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    assert!(matches!(
        sniff(&bytes, "data.txt"),
        Err(ExtractError::Unsupported { .. })
    ));
}

#[test]
fn empty_file_is_empty() {
    assert!(matches!(sniff(b"", "empty.txt"), Err(ExtractError::Empty)));
}

#[test]
fn latin1_text_is_refused_with_a_hint() {
    let err = sniff(b"caf\xe9 cr\xe8me", "menu.txt").expect_err("latin-1");
    assert!(err.to_string().contains("UTF-8"), "{err}");
}
