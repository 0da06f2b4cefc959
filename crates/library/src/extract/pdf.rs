//! PDF: one section per page, or per part of a page under one heading.
//!
//! `lopdf` parses the file and `pdf-extract` lays out each page's text (font encodings,
//! ToUnicode maps, spacing inferred from glyph positions), which is what makes the page
//! number of a passage available for citations. PDFs rarely say where their headings are
//! (tagged structure is uncommon in handouts), so headings are told from the layout the
//! way a reader tells them: a short line set clearly larger than the body text, or a short
//! numbered section line ("2.3 Osmosis"); see [`heading_of`]. `pdf-extract` uses `unwrap` freely on
//! malformed objects, so each page runs under `catch_unwind`: one broken page costs that
//! page, not the document.
//!
//! `pdf-extract` also trusts the file's structure: it climbs `/Parent` links until it finds
//! an inherited key (a cycle never ends), draws a form XObject by recursing into it (a form
//! that draws itself overflows the stack, which aborts the process: no `catch_unwind`
//! helps), and inflates every content stream whole (1 MiB of deflate becomes 1 GiB). It
//! has no hooks, so before a page is handed to it, [`check_page_tree`] and [`PageScan`]
//! walk the same structure the way it will, with bounds: no cycles in the page tree, form
//! XObjects nested at most [`MAX_FORM_DEPTH`] deep and drawn at most [`MAX_DRAWS`] times
//! per page, and the streams one page draws inflating to at most
//! [`Limits::max_decompressed_bytes`] in all (counted while inflating, without keeping
//! the bytes). What stays out of reach here (object streams `lopdf` inflates while
//! loading, fonts, LZW streams) is bounded by the server's extraction child process and
//! its memory and CPU limits.

use std::collections::{HashMap, HashSet};
use std::io::Read as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;

use lopdf::content::Content;
use lopdf::{Dictionary, Document, Object, ObjectId, Stream};

use super::Deadline;
use super::text::HeadingPath;
use crate::{ExtractError, Extracted, Limits, Section};

pub(super) fn extract(
    bytes: &[u8],
    limits: &Limits,
    deadline: &Deadline,
) -> Result<Extracted, ExtractError> {
    let doc =
        Document::load_mem(bytes).map_err(|e| ExtractError::Malformed(format!("PDF: {e}")))?;
    // lopdf opens files encrypted with an empty user password by itself (owner-only
    // "permissions" encryption, common in publishers' handouts, which any viewer opens
    // without asking); what is still encrypted afterwards needs a password we do not have.
    if doc.is_encrypted() && !doc.was_encrypted() {
        return Err(ExtractError::Encrypted);
    }
    let pages = doc.get_pages();
    if pages.len() > limits.max_pages as usize {
        return Err(ExtractError::TooLarge(format!(
            "the PDF has {} pages (at most {} are accepted)",
            pages.len(),
            limits.max_pages
        )));
    }
    check_page_tree(&doc, &pages)?;
    let mut scan = PageScan::new(&doc, limits.max_decompressed_bytes, deadline);
    let mut read = Vec::with_capacity(pages.len());
    let mut first_failure = None;
    for (&page, &page_id) in &pages {
        deadline.check()?;
        scan.check(page, page_id)?;
        match page_lines(&doc, page) {
            Ok(lines) => read.push((page, lines)),
            Err(reason) => {
                tracing::debug!(page, %reason, "PDF page unreadable");
                first_failure.get_or_insert(format!("page {page}: {reason}"));
            }
        }
    }
    let sections = sections(&read);
    if sections.is_empty() {
        if let Some(reason) = first_failure {
            return Err(ExtractError::Malformed(format!(
                "PDF: no page could be read ({reason})"
            )));
        }
        return Err(ExtractError::NoText);
    }
    Ok(Extracted { sections })
}

fn page_lines(doc: &Document, page: u32) -> Result<Vec<Line>, String> {
    let mut output = LineOutput::default();
    let result = catch_unwind(AssertUnwindSafe(|| {
        pdf_extract::output_doc_page(doc, &mut output, page)
    }));
    match result {
        Ok(Ok(())) => Ok(output.lines),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the page could not be decoded".to_owned()),
    }
}

/// One line of a page's text and the largest font size on it.
#[derive(Debug, Default, Clone, PartialEq)]
struct Line {
    text: String,
    /// In points as drawn (text matrix and page transform applied); 0 when unknown.
    size: f64,
}

/// `pdf-extract`'s plain-text layout (the spacing and line-break rules of its
/// `PlainTextOutput`, so the text is the same), keeping each line's font size, from which
/// headings are told.
#[derive(Debug, Default)]
struct LineOutput {
    lines: Vec<Line>,
    /// The page height, to flip y downwards as `PlainTextOutput` does.
    height: f64,
    last_end: f64,
    last_y: f64,
    first_char: bool,
}

impl LineOutput {
    fn current(&mut self) -> &mut Line {
        if self.lines.is_empty() {
            self.lines.push(Line::default());
        }
        let last = self.lines.len() - 1;
        &mut self.lines[last]
    }
}

impl pdf_extract::OutputDev for LineOutput {
    fn begin_page(
        &mut self,
        _page_num: u32,
        media_box: &pdf_extract::MediaBox,
        _art_box: Option<(f64, f64, f64, f64)>,
    ) -> Result<(), pdf_extract::OutputError> {
        self.height = media_box.ury - media_box.lly;
        self.last_end = 100_000.0;
        self.last_y = 0.0;
        self.first_char = false;
        Ok(())
    }

    fn end_page(&mut self) -> Result<(), pdf_extract::OutputError> {
        Ok(())
    }

    fn output_character(
        &mut self,
        trm: &pdf_extract::Transform,
        width: f64,
        _spacing: f64,
        font_size: f64,
        char: &str,
    ) -> Result<(), pdf_extract::OutputError> {
        // The position after the page flip, and the side of a square with the area of the
        // transformed font box, exactly as `PlainTextOutput` computes them.
        let (x, y) = (trm.m31, self.height - trm.m32);
        let size_x = font_size * trm.m11 + font_size * trm.m21;
        let size_y = font_size * trm.m12 + font_size * trm.m22;
        let size = (size_x * size_y).sqrt();
        if self.first_char {
            if (y - self.last_y).abs() > size * 1.5 {
                self.lines.push(Line::default());
            }
            // Moved to the left and down.
            if x < self.last_end && (y - self.last_y).abs() > size * 0.5 {
                self.lines.push(Line::default());
            }
            if x > self.last_end + size * 0.1 {
                self.current().text.push(' ');
            }
        }
        let line = self.current();
        line.text.push_str(char);
        if size.is_finite() && size > line.size && !char.trim().is_empty() {
            line.size = size;
        }
        self.first_char = false;
        self.last_y = y;
        self.last_end = x + width * size;
        Ok(())
    }

    fn begin_word(&mut self) -> Result<(), pdf_extract::OutputError> {
        self.first_char = true;
        Ok(())
    }

    fn end_word(&mut self) -> Result<(), pdf_extract::OutputError> {
        Ok(())
    }

    fn end_line(&mut self) -> Result<(), pdf_extract::OutputError> {
        Ok(())
    }
}

/// A line set at least this many times the body text's size is a heading (if short):
/// body text is 10–12 pt and headings are 14 pt or more in nearly every handout, while
/// emphasis inside body text keeps the body size.
const HEADING_SIZE_RATIO: f64 = 1.2;

/// Longest heading, in characters and in words: longer lines are text, whatever their size.
const HEADING_MAX_CHARS: usize = 90;
const HEADING_MAX_WORDS: usize = 14;

/// What a line of a PDF is.
#[derive(Debug, Clone, PartialEq)]
enum Told {
    Text,
    /// A heading and its level (1 = top).
    Heading(usize, String),
}

/// The sections of the pages read: each page split at its headings. A heading applies until
/// the next one, across pages, as a book's section does.
fn sections(pages: &[(u32, Vec<Line>)]) -> Vec<Section> {
    let body = body_size(pages);
    // Heading sizes, largest first, give the levels of unnumbered headings.
    let mut sizes: Vec<i64> = pages
        .iter()
        .flat_map(|(_, lines)| lines)
        .filter(|line| is_larger(line.size, body) && heading_text(&line.text).is_some())
        .map(|line| size_key(line.size))
        .collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    sizes.dedup();

    let mut sections = Vec::new();
    let mut path = HeadingPath::default();
    for (page, lines) in pages {
        let mut text = String::new();
        let mut index = 0;
        while index < lines.len() {
            let line = &lines[index];
            index += 1;
            let Told::Heading(level, mut title) = heading_of(line, body, &sizes) else {
                text.push_str(&line.text);
                text.push('\n');
                continue;
            };
            // A title wrapped over several lines of the same size is one heading.
            while let Some(next) = lines.get(index) {
                match heading_of(next, body, &sizes) {
                    Told::Heading(next_level, more)
                        if next_level == level
                            && size_key(next.size) == size_key(line.size)
                            && title.chars().count() + more.chars().count() < HEADING_MAX_CHARS =>
                    {
                        title.push(' ');
                        title.push_str(&more);
                        index += 1;
                    }
                    _ => break,
                }
            }
            push_page_section(&mut sections, &mut text, *page, path.current());
            path.enter(level, title);
        }
        push_page_section(&mut sections, &mut text, *page, path.current());
    }
    sections
}

fn push_page_section(
    sections: &mut Vec<Section>,
    text: &mut String,
    page: u32,
    heading: Option<String>,
) {
    let taken = std::mem::take(text);
    let trimmed = taken.trim();
    if !trimmed.is_empty() {
        sections.push(Section {
            text: trimmed.to_owned(),
            page: Some(page),
            heading,
            line: None,
        });
    }
}

/// Whether `line` is a heading, and of which level.
fn heading_of(line: &Line, body: f64, sizes: &[i64]) -> Told {
    let Some(title) = heading_text(&line.text) else {
        return Told::Text;
    };
    if let Some(depth) = numbered(&title) {
        return Told::Heading(depth, title);
    }
    if is_larger(line.size, body) {
        let rank = sizes
            .iter()
            .position(|size| *size == size_key(line.size))
            .unwrap_or(0);
        return Told::Heading((rank + 1).min(6), title);
    }
    Told::Text
}

/// The line as a heading title, if it reads like one: short, with a letter, not ending the
/// way a sentence or a list item does.
fn heading_text(line: &str) -> Option<String> {
    let title = line.split_whitespace().collect::<Vec<_>>().join(" ");
    let words = title.split(' ').count();
    let fits = !title.is_empty()
        && title.chars().count() <= HEADING_MAX_CHARS
        && words <= HEADING_MAX_WORDS
        && title.chars().any(char::is_alphabetic)
        && !title.ends_with(['.', ',', ';']);
    fits.then_some(title)
}

/// The depth of a numbered section title: `"2.3 Osmosis"` → 2, `"Chapter 4 Cells"` → 1.
/// A single number with a dot (`"2. Add water"`) is a list item, not a section.
fn numbered(title: &str) -> Option<usize> {
    let (first, rest) = title.split_once(' ')?;
    let lower = first.to_lowercase();
    if matches!(
        lower.as_str(),
        "chapter" | "unit" | "lesson" | "part" | "section"
    ) {
        let number = rest
            .split(' ')
            .next()
            .unwrap_or("")
            .trim_end_matches([':', '.']);
        let is_number = !number.is_empty() && number.chars().all(|c| c.is_ascii_digit());
        return is_number.then_some(1);
    }
    // Titles are capitalised; "3.14 is pi" is a sentence.
    if !rest.starts_with(char::is_uppercase) {
        return None;
    }
    let parts: Vec<&str> = first.trim_end_matches('.').split('.').collect();
    let all_numbers = parts.iter().all(|part| {
        !part.is_empty() && part.len() <= 3 && part.chars().all(|c| c.is_ascii_digit())
    });
    (all_numbers && parts.len() >= 2).then_some(parts.len().min(6))
}

/// The body text's size: the size most characters are set in.
fn body_size(pages: &[(u32, Vec<Line>)]) -> f64 {
    let mut chars: HashMap<i64, usize> = HashMap::new();
    for line in pages.iter().flat_map(|(_, lines)| lines) {
        if line.size > 0.0 {
            *chars.entry(size_key(line.size)).or_default() += line.text.chars().count();
        }
    }
    chars
        .into_iter()
        .max_by_key(|(size, count)| (*count, -*size))
        .map_or(0.0, |(size, _)| size as f64 / 2.0)
}

fn is_larger(size: f64, body: f64) -> bool {
    body > 0.0 && size >= body * HEADING_SIZE_RATIO
}

/// Sizes compared to the half point, so one size drawn through slightly different matrices
/// counts once.
fn size_key(size: f64) -> i64 {
    (size * 2.0).round() as i64
}

/// How deep the page tree may be (real files: 2 to 5 levels).
const MAX_TREE_DEPTH: usize = 64;

/// How deep form XObjects may nest (a form drawing a form...); real files nest two or three.
pub(crate) const MAX_FORM_DEPTH: usize = 16;

/// How many XObjects one page may draw in all, repeats included (ten nested forms each
/// drawing the next twice would otherwise be drawn 1024 times).
pub(crate) const MAX_DRAWS: usize = 10_000;

/// Refuses a page tree `pdf-extract` would loop in: a page whose `/Parent` chain comes back
/// to itself or never ends, or a node listed twice (which would make it its own ancestor
/// or give one page two numbers).
fn check_page_tree(
    doc: &Document,
    pages: &std::collections::BTreeMap<u32, ObjectId>,
) -> Result<(), ExtractError> {
    let mut listed = HashSet::with_capacity(pages.len());
    for (&page, &page_id) in pages {
        if !listed.insert(page_id) {
            return Err(malformed(format!(
                "page {page} appears twice in the page tree"
            )));
        }
        let mut seen = HashSet::new();
        let mut node = page_id;
        loop {
            if !seen.insert(node) {
                return Err(malformed(format!(
                    "the page tree above page {page} loops back on itself"
                )));
            }
            if seen.len() > MAX_TREE_DEPTH {
                return Err(malformed(format!(
                    "the page tree above page {page} is more than {MAX_TREE_DEPTH} levels deep"
                )));
            }
            let Ok(dict) = doc.get_dictionary(node) else {
                break;
            };
            match dict.get(b"Parent").and_then(Object::as_reference) {
                Ok(parent) => node = parent,
                Err(_) => break,
            }
        }
    }
    Ok(())
}

/// Walks what one page will draw (its content streams and, recursively, the XObjects
/// they invoke with `Do`), the way `pdf-extract` will, with bounds. Results per stream are
/// kept across pages, so a form shared by every page is inflated once here.
struct PageScan<'a> {
    doc: &'a Document,
    /// Bytes the streams of one page may inflate to in all.
    budget: u64,
    deadline: &'a Deadline,
    /// Inflated size per stream (`None`: more than the budget).
    sizes: HashMap<ObjectId, Option<u64>>,
    /// XObject names each stream invokes with `Do`, in order.
    draws: HashMap<ObjectId, Rc<[Vec<u8>]>>,
}

/// Per-page state of a [`PageScan`].
struct PageWalk {
    page: u32,
    inflated: u64,
    drawn: usize,
    /// Forms being drawn, outermost first (a form on this path drawn again is a cycle).
    path: Vec<ObjectId>,
}

impl<'a> PageScan<'a> {
    fn new(doc: &'a Document, budget: u64, deadline: &'a Deadline) -> Self {
        PageScan {
            doc,
            budget,
            deadline,
            sizes: HashMap::new(),
            draws: HashMap::new(),
        }
    }

    fn check(&mut self, page: u32, page_id: ObjectId) -> Result<(), ExtractError> {
        let mut walk = PageWalk {
            page,
            inflated: 0,
            drawn: 0,
            path: Vec::new(),
        };
        let contents = self.doc.get_page_contents(page_id);
        for &id in &contents {
            self.add_size(&mut walk, id)?;
        }
        let Some(resources) = self.page_resources(page_id) else {
            return Ok(());
        };
        if !has_xobjects(self.doc, resources) {
            return Ok(());
        }
        // `pdf-extract` reads the page's streams as one content stream.
        let mut names = Vec::new();
        for &id in &contents {
            names.extend(self.names_drawn(id).iter().cloned());
        }
        self.draw_all(&mut walk, &names, resources)
    }

    /// The page's `/Resources`, inherited like `pdf-extract` does (the tree was checked
    /// for cycles already).
    fn page_resources(&self, page_id: ObjectId) -> Option<&'a Dictionary> {
        let mut node = self.doc.get_dictionary(page_id).ok()?;
        for _ in 0..=MAX_TREE_DEPTH {
            if let Some(resources) = deref_dict(self.doc, node.get(b"Resources").ok()) {
                return Some(resources);
            }
            let parent = node.get(b"Parent").and_then(Object::as_reference).ok()?;
            node = self.doc.get_dictionary(parent).ok()?;
        }
        None
    }

    /// Follows every `Do` of `names` (resolved in `resources`), depth first.
    fn draw_all(
        &mut self,
        walk: &mut PageWalk,
        names: &[Vec<u8>],
        resources: &'a Dictionary,
    ) -> Result<(), ExtractError> {
        let Some(xobjects) = deref_dict(self.doc, resources.get(b"XObject").ok()) else {
            return Ok(());
        };
        for name in names {
            let Ok(Object::Reference(id)) = xobjects.get(name) else {
                continue; // missing or direct: `pdf-extract` fails the page on it
            };
            let id = *id;
            let Ok(stream) = self.doc.get_object(id).and_then(Object::as_stream) else {
                continue;
            };
            walk.drawn += 1;
            if walk.drawn > MAX_DRAWS {
                return Err(malformed(format!(
                    "page {} draws more than {MAX_DRAWS} objects",
                    walk.page
                )));
            }
            if walk.drawn.is_multiple_of(256) {
                self.deadline.check()?;
            }
            if walk.path.contains(&id) {
                return Err(malformed(format!(
                    "page {}: a drawing (form XObject) draws itself",
                    walk.page
                )));
            }
            if walk.path.len() >= MAX_FORM_DEPTH {
                return Err(malformed(format!(
                    "page {}: drawings (form XObjects) are nested more than {MAX_FORM_DEPTH} deep",
                    walk.page
                )));
            }
            self.add_size(walk, id)?;
            // A form without resources of its own uses its caller's.
            let inner =
                deref_dict(self.doc, stream.dict.get(b"Resources").ok()).unwrap_or(resources);
            if !has_xobjects(self.doc, inner) {
                continue;
            }
            let inner_names = self.names_drawn(id);
            walk.path.push(id);
            // Recursion bounded by MAX_FORM_DEPTH above.
            self.draw_all(walk, &inner_names, inner)?;
            walk.path.pop();
        }
        Ok(())
    }

    /// Adds what stream `id` inflates to to the page's total.
    fn add_size(&mut self, walk: &mut PageWalk, id: ObjectId) -> Result<(), ExtractError> {
        let budget = self.budget;
        let size = match self.sizes.get(&id) {
            Some(size) => *size,
            None => {
                let size = match self.doc.get_object(id).and_then(Object::as_stream) {
                    Ok(stream) => inflated_size(stream, budget),
                    Err(_) => Some(0),
                };
                self.sizes.insert(id, size);
                size
            }
        };
        walk.inflated = walk.inflated.saturating_add(size.unwrap_or(u64::MAX));
        if walk.inflated > budget {
            return Err(ExtractError::TooLarge(format!(
                "page {} inflates to more than {} MiB of drawing instructions",
                walk.page,
                budget / (1024 * 1024)
            )));
        }
        Ok(())
    }

    /// The XObject names stream `id` draws, in order (its size was checked already).
    fn names_drawn(&mut self, id: ObjectId) -> Rc<[Vec<u8>]> {
        if let Some(names) = self.draws.get(&id) {
            return Rc::clone(names);
        }
        let names: Rc<[Vec<u8>]> = match self.doc.get_object(id).and_then(Object::as_stream) {
            Ok(stream) => {
                let bytes = stream
                    .decompressed_content()
                    .unwrap_or_else(|_| stream.content.clone());
                match Content::decode(&bytes) {
                    Ok(content) => content
                        .operations
                        .into_iter()
                        .filter(|op| op.operator == "Do")
                        .filter_map(|op| op.operands.first()?.as_name().ok().map(<[u8]>::to_vec))
                        .collect(),
                    Err(_) => Rc::from(Vec::new()),
                }
            }
            Err(_) => Rc::from(Vec::new()),
        };
        self.draws.insert(id, Rc::clone(&names));
        names
    }
}

fn deref_dict<'a>(doc: &'a Document, object: Option<&'a Object>) -> Option<&'a Dictionary> {
    doc.dereference(object?).ok()?.1.as_dict().ok()
}

fn has_xobjects(doc: &Document, resources: &Dictionary) -> bool {
    deref_dict(doc, resources.get(b"XObject").ok()).is_some_and(|x| !x.is_empty())
}

/// What `stream` inflates to, counted while inflating and without keeping the bytes;
/// `None` once it exceeds `cap`. Only a leading `FlateDecode` (nearly every stream) is
/// inflated here; `lopdf` decodes other filters whole, which the extraction process's
/// memory limit bounds.
fn inflated_size(stream: &Stream, cap: u64) -> Option<u64> {
    let flate = matches!(stream.filters().as_deref(), Ok([first, ..]) if *first == b"FlateDecode");
    if !flate {
        return Some(stream.content.len() as u64);
    }
    let content = stream.content.as_slice();
    let count = |reader: &mut dyn std::io::Read| {
        let mut limited = reader.take(cap.saturating_add(1));
        // A corrupt stream stops early; what came out before the error still counts
        // (lopdf keeps it too).
        let mut sink = CountingSink(0);
        let _ = std::io::copy(&mut limited, &mut sink);
        sink.0
    };
    let mut inflated = count(&mut flate2::read::ZlibDecoder::new(content));
    if inflated == 0 && content.len() > 2 {
        // lopdf retries a broken zlib stream as raw deflate.
        inflated = count(&mut flate2::read::DeflateDecoder::new(&content[2..]));
    }
    (inflated <= cap).then_some(inflated)
}

/// An `io::Write` that only counts.
struct CountingSink(u64);

impl std::io::Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn malformed(reason: String) -> ExtractError {
    ExtractError::Malformed(format!("PDF: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str, size: f64) -> Line {
        Line {
            text: text.to_owned(),
            size,
        }
    }

    #[test]
    fn numbered_section_titles() {
        assert_eq!(numbered("2.3 Osmosis"), Some(2));
        assert_eq!(numbered("1.2.1. Water potential"), Some(3));
        assert_eq!(numbered("Chapter 4 Cells"), Some(1));
        assert_eq!(numbered("2. Add water"), None);
        assert_eq!(numbered("3.14 is pi"), None);
        assert_eq!(numbered("1990 was a year"), None);
        assert_eq!(numbered("Chapter and verse"), None);
    }

    #[test]
    fn larger_short_lines_become_headings_and_split_pages() {
        let pages = vec![
            (
                1,
                vec![
                    line("Cell Biology", 20.0),
                    line("Cells are the basic unit of life and every organism", 11.0),
                    line("is made of them.", 11.0),
                    line("Mitochondria", 15.0),
                    line("They make ATP for the cell in large amounts.", 11.0),
                ],
            ),
            (
                2,
                vec![
                    line("The inner membrane holds the transport chain.", 11.0),
                    line("2.1 Respiration", 11.0),
                    line("Glucose is broken down step by step in the cell.", 11.0),
                ],
            ),
        ];
        let found: Vec<(Option<u32>, Option<String>, String)> = sections(&pages)
            .into_iter()
            .map(|s| (s.page, s.heading, s.text))
            .collect();
        let heading = |h: &str| Some(h.to_owned());
        assert_eq!(
            found,
            vec![
                (
                    Some(1),
                    heading("Cell Biology"),
                    "Cells are the basic unit of life and every organism\nis made of them."
                        .to_owned()
                ),
                (
                    Some(1),
                    heading("Cell Biology > Mitochondria"),
                    "They make ATP for the cell in large amounts.".to_owned()
                ),
                (
                    Some(2),
                    heading("Cell Biology > Mitochondria"),
                    "The inner membrane holds the transport chain.".to_owned()
                ),
                (
                    Some(2),
                    heading("Cell Biology > 2.1 Respiration"),
                    "Glucose is broken down step by step in the cell.".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn body_sized_text_and_long_large_lines_stay_text() {
        let pages = vec![(
            1,
            vec![
                line("Short line", 11.0),
                line(
                    "A whole sentence set large for emphasis in the handout.",
                    16.0,
                ),
                line(
                    "Body text goes on here for a good while, much longer.",
                    11.0,
                ),
            ],
        )];
        let found = sections(&pages);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].heading, None);
    }
}
