//! PDF: one section per page.
//!
//! `lopdf` parses the file and `pdf-extract` lays out each page's text (font encodings,
//! ToUnicode maps, spacing inferred from glyph positions), which is what makes the page
//! number of a passage available for citations. `pdf-extract` uses `unwrap` freely on
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
    let mut sections = Vec::with_capacity(pages.len());
    let mut first_failure = None;
    for (&page, &page_id) in &pages {
        deadline.check()?;
        scan.check(page, page_id)?;
        match page_text(&doc, page) {
            Ok(text) => {
                let text = text.trim();
                if !text.is_empty() {
                    sections.push(Section {
                        text: text.to_owned(),
                        page: Some(page),
                        heading: None,
                    });
                }
            }
            Err(reason) => {
                tracing::debug!(page, %reason, "PDF page unreadable");
                first_failure.get_or_insert(format!("page {page}: {reason}"));
            }
        }
    }
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

fn page_text(doc: &Document, page: u32) -> Result<String, String> {
    let mut text = String::new();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut output = pdf_extract::PlainTextOutput::new(&mut text);
        pdf_extract::output_doc_page(doc, &mut output, page)
    }));
    match result {
        Ok(Ok(())) => Ok(text),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the page could not be decoded".to_owned()),
    }
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
