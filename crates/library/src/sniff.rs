//! Format detection from bytes.
//!
//! Upload names and `Content-Type` headers are chosen by the client, so they are never
//! trusted to pick a parser: a PNG renamed `notes.txt` must not reach the text path, and a
//! PDF renamed `notes.md` is still a PDF. The file name is consulted for one thing only: to
//! tell Markdown from plain text once the bytes are known to be text, because the two are
//! byte-for-byte indistinguishable.

use crate::ExtractError;

/// How many leading bytes [`sniff`] wants to see (it copes with fewer for short files).
pub const SNIFF_LEN: usize = 8 * 1024;

/// A supported input format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// PDF; one section per page.
    Pdf,
    /// Office Open XML word processing (`.docx`); sections follow headings.
    Docx,
    /// Markdown (UTF-8); sections follow ATX headings.
    Markdown,
    /// Plain UTF-8 text; one section.
    Text,
}

impl Format {
    /// A stable lowercase name, for logs, metrics and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Pdf => "pdf",
            Format::Docx => "docx",
            Format::Markdown => "markdown",
            Format::Text => "text",
        }
    }

    /// The media type to store alongside the file.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Pdf => "application/pdf",
            Format::Docx => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
            Format::Markdown => "text/markdown; charset=utf-8",
            Format::Text => "text/plain; charset=utf-8",
        }
    }
}

/// Known binary signatures, checked before the text heuristics so that the refusal can name
/// what the file actually is.
const SIGNATURES: &[(&[u8], &str)] = &[
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\x7fELF", "a program (ELF executable)"),
    (b"MZ", "a Windows program"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        "an old Office file (.doc/.ppt/.xls); save it as .docx or PDF",
    ),
    (b"{\\rtf", "an RTF document; save it as .docx or PDF"),
    (b"\xfe\xff", "UTF-16 text; save it as UTF-8"),
    (b"\xff\xfe", "UTF-16 text; save it as UTF-8"),
];

/// Decides the format of a file from its first bytes.
///
/// `head` is the first [`SNIFF_LEN`] bytes, or the whole file if it is shorter. A zip
/// archive is reported as [`Format::Docx`] provisionally: whether it really is a Word
/// document is only known once its directory is read, which [`extract`](crate::extract())
/// does (a presentation or a plain zip then fails there with
/// [`ExtractError::Unsupported`]).
pub fn sniff(head: &[u8], file_name: &str) -> Result<Format, ExtractError> {
    if head.is_empty() {
        return Err(ExtractError::Empty);
    }
    if head.starts_with(b"%PDF-") {
        return Ok(Format::Pdf);
    }
    if head.starts_with(b"PK\x03\x04") {
        return Ok(Format::Docx);
    }
    if head.starts_with(b"PK\x05\x06") {
        return Err(ExtractError::Unsupported {
            detected: "an empty zip archive",
        });
    }
    for (magic, detected) in SIGNATURES {
        if head.starts_with(magic) {
            return Err(ExtractError::Unsupported { detected });
        }
    }
    if let Err(not_text) = check_text(head) {
        // Readers accept junk before the PDF header (within the first 1024 bytes), and so do
        // we, but only when the bytes are not text: a Markdown file quoting "%PDF-" is text.
        if head[..head.len().min(1024)]
            .windows(5)
            .any(|w| w == b"%PDF-")
        {
            return Ok(Format::Pdf);
        }
        return Err(not_text);
    }
    Ok(if is_markdown_name(file_name) {
        Format::Markdown
    } else {
        Format::Text
    })
}

fn is_markdown_name(file_name: &str) -> bool {
    let lower = file_name.to_ascii_lowercase();
    lower.ends_with(".md") || lower.ends_with(".markdown")
}

/// Accepts `head` as text: UTF-8 (a multi-byte character cut by the end of the head is
/// fine), no NUL, and control characters below 1 % of the bytes (form feeds and stray
/// escapes occur in real text files; binaries are full of them).
fn check_text(head: &[u8]) -> Result<(), ExtractError> {
    if head.contains(&0) {
        return Err(ExtractError::Unsupported {
            detected: "binary data",
        });
    }
    let controls = head
        .iter()
        .filter(|&&b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0c)) || b == 0x7f)
        .count();
    if controls * 100 > head.len() {
        return Err(ExtractError::Unsupported {
            detected: "binary data",
        });
    }
    match std::str::from_utf8(head) {
        Ok(_) => Ok(()),
        // `error_len() == None` means the input ended inside a character: the head cut it.
        Err(e) if e.error_len().is_none() && head.len() - e.valid_up_to() < 4 => Ok(()),
        Err(_) => Err(ExtractError::Unsupported {
            detected: "text that is not UTF-8; save it as UTF-8",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_multibyte_char_at_the_end_is_text() {
        let text = "caf\u{e9} \u{1f600}".as_bytes();
        for cut in 1..text.len() {
            let head = &text[..cut];
            assert!(sniff(head, "a.txt").is_ok(), "cut at {cut}");
        }
    }

    #[test]
    fn invalid_utf8_in_the_middle_is_refused() {
        let head = b"abc\xff\xfedef";
        assert!(matches!(
            sniff(head, "a.txt"),
            Err(ExtractError::Unsupported { .. })
        ));
    }

    #[test]
    fn name_only_tells_markdown_from_text() {
        assert_eq!(sniff(b"# Title", "notes.MD").ok(), Some(Format::Markdown));
        assert_eq!(sniff(b"# Title", "notes.txt").ok(), Some(Format::Text));
        assert_eq!(sniff(b"%PDF-1.7", "notes.md").ok(), Some(Format::Pdf));
    }

    #[test]
    fn pdf_header_after_junk_counts_only_in_binary() {
        assert_eq!(
            sniff(b"\x01\x02\x03\x04\x05\x06\x07\x08%PDF-1.4", "x").ok(),
            Some(Format::Pdf)
        );
        assert_eq!(
            sniff(b"Files start with %PDF-1.7 as magic.", "pdf.md").ok(),
            Some(Format::Markdown)
        );
    }
}
