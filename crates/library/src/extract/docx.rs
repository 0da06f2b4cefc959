//! DOCX: paragraphs, headings and tables from `word/document.xml`.
//!
//! The archive is read with `zip` and the XML streamed with `quick-xml`, so memory follows the
//! extracted text, not the XML. A `.docx` is a zip, and a zip can declare one size and
//! inflate to another: the declared size of `word/document.xml` is checked first (cheap,
//! refuses honest bombs at once) and the bytes actually inflated are counted by
//! [`Bounded`] as the parser pulls them (catches lying headers). Nothing is inflated beyond
//! `max_decompressed_bytes + 1`.
//!
//! Only WordprocessingML text counts: `w:t` runs (deleted text `w:delText` and field codes
//! `w:instrText` are other elements, so they are skipped for free), `w:tab` and `w:br`.
//! Paragraphs styled `Title` or `Heading1`..`Heading9` open a new section and form the
//! heading path; tables become one line per row, `cell | cell`. The `mc:Fallback` branch of
//! markup-compatibility blocks repeats its `mc:Choice` (text boxes), so it is skipped.

use std::io::{self, BufReader, Cursor, Read};

use quick_xml::events::{BytesRef, BytesStart, Event};
use zip::ZipArchive;

use super::Deadline;
use super::text::HeadingPath;
use crate::{ExtractError, Extracted, Limits, Section};

/// The main part of a Word document.
const DOCUMENT: &str = "word/document.xml";

/// Real documents have tens of entries (hundreds with many images); a zip with more is
/// refused before anything is inflated.
const MAX_ENTRIES: usize = 10_000;

pub(super) fn extract(
    bytes: &[u8],
    limits: &Limits,
    deadline: &Deadline,
) -> Result<Extracted, ExtractError> {
    let mut archive = ZipArchive::new(Cursor::new(bytes)).map_err(|e| {
        ExtractError::Malformed(format!("Word document: not a readable zip archive ({e})"))
    })?;
    if archive.len() > MAX_ENTRIES {
        return Err(ExtractError::TooLarge(format!(
            "the archive has {} entries (at most {MAX_ENTRIES} are accepted)",
            archive.len()
        )));
    }
    if archive.index_for_name(DOCUMENT).is_none() {
        return Err(ExtractError::Unsupported {
            detected: zip_kind(&archive),
        });
    }
    let limit = limits.max_decompressed_bytes;
    let part = archive
        .by_name(DOCUMENT)
        .map_err(|e| ExtractError::Malformed(format!("Word document: {e}")))?;
    if part.size() > limit {
        return Err(too_large(limit));
    }
    let mut reader = quick_xml::Reader::from_reader(BufReader::new(Bounded {
        inner: part,
        remaining: limit,
        exceeded: false,
    }));
    let mut doc = DocBuilder::default();
    let mut buf = Vec::new();
    let mut events = 0u64;
    loop {
        events += 1;
        if events.is_multiple_of(4096) {
            deadline.check()?;
        }
        let event = match reader.read_event_into(&mut buf) {
            Ok(event) => event,
            Err(e) => {
                if reader.get_ref().get_ref().exceeded {
                    return Err(too_large(limit));
                }
                return Err(ExtractError::Malformed(format!(
                    "Word document: invalid XML ({e})"
                )));
            }
        };
        match event {
            Event::Eof => break,
            Event::Start(e) => doc.start(&e, false),
            Event::Empty(e) => doc.start(&e, true),
            Event::End(e) => doc.end(e.name().as_ref()),
            Event::Text(e) if doc.wants_text() => doc.para.push_str(&e.xml10_content()),
            Event::CData(e) if doc.wants_text() => doc.para.push_str(&e.xml10_content()),
            Event::GeneralRef(e) if doc.wants_text() => {
                if let Some(ch) = resolve_ref(&e) {
                    doc.para.push(ch);
                }
            }
            _ => {}
        }
        buf.clear();
    }
    // A document that ends mid-element is damaged, but what was read is still text.
    Ok(doc.finish())
}

fn too_large(limit: u64) -> ExtractError {
    ExtractError::TooLarge(format!(
        "the document's text part inflates to more than {} MiB",
        limit / (1024 * 1024)
    ))
}

/// Every kind [`zip_kind`] can name (the wire decoder maps names back to them).
pub(super) const ZIP_KINDS: [&str; 4] = [
    "a PowerPoint presentation; save it as PDF",
    "an Excel workbook; save it as PDF",
    "an OpenDocument file; save it as .docx or PDF",
    "a zip archive",
];

/// Names the kind of a zip that is not a Word document, for the refusal.
fn zip_kind<R: Read + io::Seek>(archive: &ZipArchive<R>) -> &'static str {
    if archive.index_for_name("ppt/presentation.xml").is_some() {
        ZIP_KINDS[0]
    } else if archive.index_for_name("xl/workbook.xml").is_some() {
        ZIP_KINDS[1]
    } else if archive.index_for_name("mimetype").is_some() {
        ZIP_KINDS[2]
    } else {
        ZIP_KINDS[3]
    }
}

/// `&amp;`, `&#233;` and friends, which quick-xml reports apart from the text around them.
fn resolve_ref(e: &BytesRef<'_>) -> Option<char> {
    if let Ok(Some(ch)) = e.resolve_char_ref() {
        return Some(ch);
    }
    match e.xml10_content().as_ref() {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        _ => None,
    }
}

/// Counts inflated bytes and fails the read once more than the limit arrive.
///
/// This is the `take()` of the zip-bomb defence, with a flag so that the error can be told
/// apart from a damaged stream: `take` alone would end the stream quietly and the XML parser
/// would report a truncated document instead of "too large".
struct Bounded<R> {
    inner: R,
    remaining: u64,
    exceeded: bool,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            // At the limit: one more byte means too large, none means the part just fits.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? == 0 {
                return Ok(0);
            }
            self.exceeded = true;
            return Err(io::Error::other("decompressed size limit exceeded"));
        }
        let max = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Turns the event stream into sections.
#[derive(Default)]
struct DocBuilder {
    sections: Vec<Section>,
    path: HeadingPath,
    /// Paragraphs of the current section, separated by blank lines.
    body: String,
    /// Text of the paragraph being read.
    para: String,
    /// Heading level of the paragraph being read (0 for `Title`).
    para_heading: Option<usize>,
    /// Whether a `w:p` is open.
    in_para: bool,
    /// Paragraphs interrupted by a paragraph nested inside them (a text box in a run), with
    /// their heading level, resumed when the nested one ends.
    interrupted: Vec<(String, Option<usize>)>,
    /// Inside `w:t`: its text is document text.
    in_text: bool,
    /// Inside `w:pPr`: a `w:tab` there is a tab stop, not a tab.
    in_props: bool,
    /// Nesting of `mc:Fallback`, whose content duplicates `mc:Choice`.
    skip: usize,
    /// Nesting of `w:tbl`; only the outermost table makes rows, inner ones feed its cells.
    tables: usize,
    /// Rendered rows of the outermost table.
    rows: Vec<String>,
    /// Cells of the current row.
    cells: Vec<String>,
    /// Text of the current cell.
    cell: String,
}

impl DocBuilder {
    fn wants_text(&self) -> bool {
        self.in_text && self.skip == 0
    }

    fn start(&mut self, e: &BytesStart<'_>, empty: bool) {
        let name = e.name();
        let name = name.as_ref();
        if name == "mc:Fallback" {
            if !empty {
                self.skip += 1;
            }
            return;
        }
        if self.skip > 0 {
            return;
        }
        match name {
            "w:p" if !empty => {
                if self.in_para {
                    let para = std::mem::take(&mut self.para);
                    self.interrupted.push((para, self.para_heading.take()));
                }
                self.in_para = true;
                self.para_heading = None;
            }
            "w:pPr" if !empty => self.in_props = true,
            "w:pStyle" => {
                if let Ok(Some(val)) = e.try_get_attribute("w:val") {
                    self.para_heading = heading_level(&val.value);
                }
            }
            "w:t" if !empty => self.in_text = true,
            "w:tab" if !self.in_props => self.para.push('\t'),
            "w:br" | "w:cr" => self.para.push('\n'),
            "w:noBreakHyphen" => self.para.push('-'),
            "w:tbl" if !empty => {
                self.tables += 1;
                if self.tables == 1 {
                    self.rows.clear();
                }
            }
            "w:tr" if self.tables == 1 => self.cells.clear(),
            "w:tc" if self.tables == 1 => self.cell.clear(),
            _ => {}
        }
    }

    fn end(&mut self, name: &str) {
        if name == "mc:Fallback" {
            self.skip = self.skip.saturating_sub(1);
            return;
        }
        if self.skip > 0 {
            return;
        }
        match name {
            "w:t" => self.in_text = false,
            "w:pPr" => self.in_props = false,
            "w:p" => {
                self.end_paragraph();
                match self.interrupted.pop() {
                    Some((para, heading)) => {
                        self.para = para;
                        self.para_heading = heading;
                    }
                    None => self.in_para = false,
                }
            }
            "w:tc" if self.tables == 1 => {
                let cell = collapse(&self.cell);
                self.cells.push(cell);
            }
            "w:tr" if self.tables == 1 => {
                let row = self.cells.join(" | ");
                if !row.trim_matches([' ', '|']).is_empty() {
                    self.rows.push(row);
                }
            }
            "w:tbl" => {
                self.tables = self.tables.saturating_sub(1);
                if self.tables == 0 && !self.rows.is_empty() {
                    let table = self.rows.join("\n");
                    self.rows.clear();
                    self.push_block(&table);
                }
            }
            _ => {}
        }
    }

    fn end_paragraph(&mut self) {
        let text = std::mem::take(&mut self.para);
        if self.tables > 0 {
            // A cell may hold several paragraphs (and nested tables): one line per cell.
            if !text.trim().is_empty() {
                if !self.cell.is_empty() {
                    self.cell.push(' ');
                }
                self.cell.push_str(text.trim());
            }
        } else if let Some(level) = self.para_heading.take() {
            self.flush_section();
            self.path.enter(level, collapse(&text));
        } else {
            self.push_block(&text);
        }
    }

    fn push_block(&mut self, text: &str) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        if !self.body.is_empty() {
            self.body.push_str("\n\n");
        }
        self.body.push_str(text);
    }

    fn flush_section(&mut self) {
        let text = std::mem::take(&mut self.body);
        if !text.is_empty() {
            self.sections.push(Section {
                text,
                page: None,
                heading: self.path.current(),
                line: None,
            });
        }
    }

    fn finish(mut self) -> Extracted {
        self.flush_section();
        Extracted {
            sections: self.sections,
        }
    }
}

/// `Heading1`..`Heading9` (Word's built-in style ids, also seen as `heading 1`) and `Title`.
fn heading_level(style: &str) -> Option<usize> {
    let style: String = style
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    if style == "title" {
        return Some(0);
    }
    let digits = style.strip_prefix("heading")?;
    match digits.parse::<usize>() {
        Ok(level @ 1..=9) => Some(level),
        _ => None,
    }
}

/// Collapses whitespace runs to one space.
fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heading_styles() {
        assert_eq!(heading_level("Heading1"), Some(1));
        assert_eq!(heading_level("heading 3"), Some(3));
        assert_eq!(heading_level("Title"), Some(0));
        assert_eq!(heading_level("Heading10"), None);
        assert_eq!(heading_level("Normal"), None);
    }
}
