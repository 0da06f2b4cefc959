//! Course material: format sniffing, text extraction with positions, chunking, vector search.
//!
//! A teacher uploads a file to a classroom; the server stores it, then (on a blocking thread)
//! asks this crate what it is ([`sniff()`]), what it says and where ([`extract()`], run in a child
//! process whose outcome comes back through [`extract::wire`]), how to
//! cut it into passages for retrieval ([`chunk()`]), and later which passages answer a question
//! ([`VectorIndex::search`]). Everything here is synchronous, CPU-bound and free of I/O:
//! embeddings (`lectern-ai`) and storage (`lectern-storage`, `lectern-db`) live elsewhere.
//!
//! # Layout
//!
//! - [`sniff`](mod@sniff): decides the [`Format`] from the first bytes, never from the name.
//! - [`extract`](mod@extract): PDF (`pdf.rs`), DOCX (`docx.rs`), TXT/Markdown (`text.rs`)
//!   to [`Extracted`] sections that keep their page or heading path for citations; [`Limits`]
//!   and the PDF structure checks defend against hostile files (zip and flate bombs,
//!   drawing and page-tree cycles, panics); `wire.rs` encodes an outcome for the process
//!   boundary.
//! - [`error`]: [`ExtractError`], whose messages are fit to show a teacher.
//! - [`chunk`](mod@chunk): structure-aware chunking with overlap, never crossing a section.
//! - [`index`]: [`VectorIndex`], an exact in-memory cosine index per classroom.
//! - `testing` (cargo feature `testing`): fixture builders (PDF, encrypted PDF, DOCX, zip bomb,
//!   hostile PDFs) shared with the server's integration tests.
//!
//! **API boundary:** callers see [`Format`], [`Extracted`]/[`Section`], [`Chunk`] and
//! [`Hit`]; which PDF or XML crate sits underneath is an implementation detail.

#![warn(missing_docs)]

pub mod chunk;
pub mod error;
pub mod extract;
pub mod index;
pub mod sniff;
#[cfg(feature = "testing")]
pub mod testing;

pub use chunk::{Chunk, ChunkConfig, chunk};
pub use error::ExtractError;
pub use extract::{Extracted, Limits, Section, extract, extract_bounded, stuck_extractions};
pub use index::{Hit, IndexError, VectorIndex};
pub use sniff::{Format, sniff};
