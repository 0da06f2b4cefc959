//! The one error type of extraction.
//!
//! Messages are written for a teacher looking at a failed upload: they say what is wrong
//! with the file and, where possible, what to do about it. Internal detail (a parser's own
//! message) rides along in [`ExtractError::Malformed`] so it can be logged; the server decides
//! whether to show it.

use std::time::Duration;

/// Why a file could not be turned into text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// The file has no bytes at all.
    #[error("the file is empty")]
    Empty,
    /// The bytes are not one of the supported formats.
    #[error(
        "this file type is not supported ({detected}); upload a PDF, a Word document (.docx), \
         Markdown or plain text"
    )]
    Unsupported {
        /// What the bytes look like, for the message ("a PNG image", "a program (ELF)").
        detected: &'static str,
    },
    /// A PDF that needs a password to open.
    #[error("the PDF is password-protected; upload a copy without a password")]
    Encrypted,
    /// The file claims a format but its structure is broken.
    /// The reason names the format and what failed ("PDF: invalid cross-reference table").
    #[error("the file is damaged and could not be read ({0})")]
    Malformed(String),
    /// A plain-text or Markdown file that is not valid UTF-8.
    #[error(
        "the text file is not UTF-8 (problem at byte {offset}); save it as UTF-8 and upload it again"
    )]
    NotUtf8 {
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// The file is well-formed but contains no text (e.g. a scanned PDF with images only).
    #[error("no text could be found in the file (a scanned document needs text recognition first)")]
    NoText,
    /// The file (or what it decompresses to) exceeds a [`Limits`](crate::Limits) bound.
    #[error("the file is too large to process: {0}")]
    TooLarge(String),
    /// Extraction took longer than [`Limits::max_time`](crate::Limits::max_time).
    #[error("reading the file took too long (more than {} s)", .0.as_secs_f32())]
    Timeout(Duration),
    /// The reader died on the file (killed by a signal: a stack overflow or another crash
    /// in a parser). Only an isolated reader (a child process) survives to report it.
    #[error("the file made the reader crash ({0}); it is damaged or crafted")]
    Crashed(String),
    /// Reading the file needed more memory than the reader may use.
    #[error(
        "reading the file needs more than {} MiB of memory; it is too large or crafted",
        .limit_bytes / (1024 * 1024)
    )]
    OutOfMemory {
        /// The reader's memory limit.
        limit_bytes: u64,
    },
    /// Reading the file used more processor time than the reader may use.
    #[error("reading the file used more than {} s of processor time", .0.as_secs())]
    CpuTime(Duration),
    /// The file yields more text than accepted.
    #[error("the file yields more than {} MiB of text", .limit_bytes / (1024 * 1024))]
    TooMuchText {
        /// The limit on the extracted text, in bytes.
        limit_bytes: u64,
    },
}
