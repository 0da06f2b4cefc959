//! Text extraction with positions.
//!
//! Each format module turns bytes into [`Section`]s: a page of a PDF (or the part of a page
//! under one heading), or the body under one heading of a Word or Markdown document.
//! Sections are the unit of citation ("page 4", "Cells > Mitochondria", "lines 12–30") and
//! the chunker never lets a chunk span two of them.
//!
//! Uploaded files are hostile until proven otherwise. The defences here, in order:
//! - [`Limits`] bound pages, decompressed bytes, extracted text and time; the format
//!   modules check the time budget cooperatively (between pages, every few thousand XML
//!   events), so an honest but huge file stops promptly.
//! - The PDF reader walks a file's structure before the third-party extractor does and
//!   refuses what would make it recurse forever, loop or inflate a bomb (see `pdf.rs`).
//! - Third-party parsers can panic on crafted input: [`extract`] catches the unwind and
//!   reports [`ExtractError::Malformed`].
//!
//! What no in-process defence can stop (a stack overflow aborts the process; a parser
//! looping inside one call cannot be interrupted; memory a parser allocates cannot be
//! capped) is the caller's to contain: the server runs [`extract`] in a child process with
//! memory, CPU and wall-time limits and reads the outcome back through [`wire`].
//! [`extract_bounded`] (a thread and a deadline) remains for tools that trust their input.

mod docx;
mod pdf;
mod text;
pub mod wire;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{ExtractError, Format};

/// Resource bounds for one extraction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes any compressed part may inflate to (DOCX `word/document.xml`); both the
    /// size a zip header declares and the bytes actually read are checked.
    pub max_decompressed_bytes: u64,
    /// Most pages a PDF may have.
    pub max_pages: u32,
    /// Wall-clock budget for the whole extraction.
    pub max_time: Duration,
    /// Most bytes of text one extraction may yield, headings and a few bytes per section
    /// included (so the encoded outcome, see [`wire`], stays within it); also the largest
    /// plain-text or Markdown input accepted.
    pub max_text_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_decompressed_bytes: 64 * 1024 * 1024,
            max_pages: 2000,
            max_time: Duration::from_secs(60),
            max_text_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The text of a document, in reading order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extracted {
    /// Non-empty sections in document order.
    pub sections: Vec<Section>,
}

/// A run of text with one position: a PDF page, or the body under one heading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The text; paragraphs are separated by a blank line (`"\n\n"`).
    pub text: String,
    /// 1-based page number (PDF only).
    pub page: Option<u32>,
    /// Heading path such as `"Cells > Mitochondria"` (DOCX, Markdown, and PDF headings told
    /// by their font size or numbering; `None` before the first heading and for plain text).
    pub heading: Option<String>,
    /// The 1-based line of the source file on which `text` starts; each `\n` in `text` is
    /// the next line (plain text and Markdown; `None` for formats without lines).
    pub line: Option<u32>,
}

/// Extracts the text of `bytes`, already identified as `format` by [`sniff`](crate::sniff()).
///
/// Synchronous and CPU-bound: call it from a blocking thread. It honours `limits` and
/// converts parser panics into [`ExtractError::Malformed`], but a parser stuck inside one
/// call cannot be interrupted here; [`extract_bounded`] covers that.
pub fn extract(format: Format, bytes: &[u8], limits: &Limits) -> Result<Extracted, ExtractError> {
    let deadline = Deadline::new(limits.max_time);
    if bytes.is_empty() {
        return Err(ExtractError::Empty);
    }
    // Text formats yield about what they are.
    if matches!(format, Format::Markdown | Format::Text)
        && bytes.len() as u64 > limits.max_text_bytes
    {
        return Err(ExtractError::TooMuchText {
            limit_bytes: limits.max_text_bytes,
        });
    }
    let result = catch_unwind(AssertUnwindSafe(|| match format {
        Format::Pdf => pdf::extract(bytes, limits, &deadline),
        Format::Docx => docx::extract(bytes, limits, &deadline),
        Format::Markdown => text::extract_markdown(bytes, &deadline),
        Format::Text => text::extract_text(bytes),
    }));
    let extracted = match result {
        Ok(extracted) => extracted?,
        Err(panic) => {
            return Err(ExtractError::Malformed(format!(
                "{}: the reader failed ({})",
                format.as_str(),
                panic_message(&panic)
            )));
        }
    };
    let sections: Vec<Section> = extracted
        .sections
        .into_iter()
        .filter(|s| !s.text.trim().is_empty())
        .collect();
    if sections.is_empty() {
        return Err(ExtractError::NoText);
    }
    let yielded = sections.iter().fold(0u64, |total, s| {
        let heading = s.heading.as_ref().map_or(0, String::len);
        total.saturating_add((s.text.len() + heading + SECTION_OVERHEAD) as u64)
    });
    if yielded > limits.max_text_bytes {
        return Err(ExtractError::TooMuchText {
            limit_bytes: limits.max_text_bytes,
        });
    }
    Ok(Extracted { sections })
}

/// Bytes [`wire`] spends on a section besides its text and heading.
const SECTION_OVERHEAD: usize = 16;

/// Threads started by [`extract_bounded`] that outlived their time budget and are still
/// running (for a metric; should stay at 0).
static STUCK: AtomicUsize = AtomicUsize::new(0);

/// How many abandoned extraction threads are still running. A value that grows means a
/// parser loops on some input: worth a look at the logs.
pub fn stuck_extractions() -> usize {
    STUCK.load(Ordering::Relaxed)
}

/// Runs [`extract`] on a thread of its own and gives up after [`Limits::max_time`].
///
/// Only for input that is trusted not to crash or exhaust the process (benchmarks,
/// tools): the server parses uploads in a child process instead (see the module docs).
///
/// On time-out the thread is abandoned, not killed: Rust has no safe way to stop a thread,
/// and a parser looping inside a third-party call never reaches a cancellation check. This
/// is acceptable because (1) the format readers check the same deadline between pages and
/// XML events, so an ordinary large file ends its thread moments after the caller gave up;
/// (2) what a truly stuck thread holds is bounded by the upload size and `limits`; (3) such
/// inputs are rare and [`stuck_extractions`] makes them visible. Isolating parsers in a
/// child process would be the next step if that metric ever moves.
pub fn extract_bounded(
    format: Format,
    bytes: Arc<[u8]>,
    limits: &Limits,
) -> Result<Extracted, ExtractError> {
    // Who finishes first, the worker or the caller's patience, decides who accounts for a
    // stuck thread: whoever flips `state` second sees the other's mark.
    let state = Arc::new(AtomicUsize::new(RUNNING));
    let (tx, rx) = mpsc::sync_channel(1);
    let thread_limits = limits.clone();
    let thread_state = Arc::clone(&state);
    let spawned = std::thread::Builder::new()
        .name(format!("extract-{}", format.as_str()))
        .spawn(move || {
            let result = extract(format, &bytes, &thread_limits);
            // Ignored when the caller gave up: nobody wants the result any more.
            let _ = tx.send(result);
            if thread_state.swap(DONE, Ordering::AcqRel) == ABANDONED {
                STUCK.fetch_sub(1, Ordering::Relaxed);
            }
        });
    if let Err(e) = spawned {
        return Err(ExtractError::Malformed(format!(
            "could not start the reader: {e}"
        )));
    }
    match rx.recv_timeout(limits.max_time) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            if state.swap(ABANDONED, Ordering::AcqRel) == DONE {
                // Finished just now: the result is in the channel.
                if let Ok(result) = rx.try_recv() {
                    return result;
                }
            } else {
                STUCK.fetch_add(1, Ordering::Relaxed);
            }
            tracing::warn!(
                format = format.as_str(),
                "extraction abandoned after its time budget"
            );
            Err(ExtractError::Timeout(limits.max_time))
        }
        // `extract` catches panics, so the sender only disappears without a message if
        // catching failed.
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(ExtractError::Malformed(format!(
            "{}: the reader stopped unexpectedly",
            format.as_str()
        ))),
    }
}

const RUNNING: usize = 0;
const DONE: usize = 1;
const ABANDONED: usize = 2;

/// The cooperative time budget the format readers check between units of work.
#[derive(Debug)]
pub(crate) struct Deadline {
    at: Option<Instant>,
    budget: Duration,
}

impl Deadline {
    fn new(budget: Duration) -> Self {
        Deadline {
            at: Instant::now().checked_add(budget),
            budget,
        }
    }

    /// `Err(Timeout)` once the budget is spent.
    pub(crate) fn check(&self) -> Result<(), ExtractError> {
        match self.at {
            Some(at) if Instant::now() >= at => Err(ExtractError::Timeout(self.budget)),
            _ => Ok(()),
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}
