//! Structure-aware chunking.
//!
//! Retrieval quality depends on chunks that are about one thing and that a citation can point
//! at, so chunks follow the document's structure: a chunk never spans two [`Section`]s (pages
//! or headings), packs whole paragraphs while they fit, and only splits a paragraph that is
//! too long by itself, at sentence ends first, then between words, and only as a last resort
//! (a 2 000-character URL) between characters — always on `char` boundaries.
//!
//! Sizes are in characters, not bytes or tokens: all-MiniLM-L6-v2 truncates at 256 word
//! pieces, about 1 000 characters of English, so the default target of 800 leaves room for
//! the carried-over overlap and for languages that tokenise less densely.
//!
//! The overlap (the end of the previous chunk of the same section, cut at a word start)
//! keeps a sentence that straddles a boundary findable from both sides. Every chunk,
//! overlap included, is at most `target_chars` long. Each chunk records how long its
//! overlap is ([`Chunk::overlap_chars`]), so a reader that shows two neighbouring chunks
//! together (a prompt, a citation) can drop the repeated text exactly.
//!
//! Sections that know their place in a text file ([`Section::line`]: plain text and
//! Markdown) give their chunks a line range, tracked through the whitespace normalisation.

use std::ops::Range;

use crate::{Extracted, Section};

/// Chunk sizes, in characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkConfig {
    /// Largest chunk, overlap included (values below 16 are raised to 16).
    pub target_chars: usize,
    /// Characters carried from the previous chunk of the same section (at most half of
    /// `target_chars`).
    pub overlap_chars: usize,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        ChunkConfig {
            target_chars: 800,
            overlap_chars: 120,
        }
    }
}

/// A passage to embed and cite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Position in the document, from 0, without gaps.
    pub ordinal: u32,
    /// Whitespace-normalised text; paragraphs inside a chunk are separated by a blank line.
    pub text: String,
    /// The page of the section it came from (PDF).
    pub page: Option<u32>,
    /// The heading path of the section it came from (DOCX, Markdown, PDF headings).
    pub heading: Option<String>,
    /// First and last line (1-based, inclusive) of the source file that the text comes
    /// from, overlap included; `None` unless the section knows its lines (plain text and
    /// Markdown).
    pub lines: Option<(u32, u32)>,
    /// How many characters at the start of `text` repeat the end of the previous chunk
    /// (the overlap; 0 for the first chunk of a section). What follows them in `text` starts
    /// with the separator (`" "` or `"\n\n"`) that joins them to the new text.
    pub overlap_chars: u32,
}

/// Smallest accepted `target_chars`.
const MIN_TARGET: usize = 16;

/// Cuts every section of `extracted` into chunks. Deterministic: the same input and config
/// always give the same chunks.
pub fn chunk(extracted: &Extracted, config: &ChunkConfig) -> Vec<Chunk> {
    let target = config.target_chars.max(MIN_TARGET);
    let overlap = config.overlap_chars.min(target / 2);
    // A piece must fit after a full overlap and a paragraph separator.
    let piece_max = target - overlap - PARA.len();
    let mut chunks = Vec::new();
    for section in &extracted.sections {
        for piece in chunk_section(section, target, overlap, piece_max) {
            let ordinal = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
            let lines = section.line.map(|first| {
                (
                    first.saturating_add(piece.lines.0),
                    first.saturating_add(piece.lines.1),
                )
            });
            chunks.push(Chunk {
                ordinal,
                text: piece.text,
                page: section.page,
                heading: section.heading.clone(),
                lines,
                overlap_chars: u32::try_from(piece.overlap_chars).unwrap_or(u32::MAX),
            });
        }
    }
    chunks
}

const PARA: &str = "\n\n";

/// A unit the packer places whole, with what separates it from the previous one.
struct Piece {
    text: String,
    sep: &'static str,
    /// First and last line of the section's text it comes from, from 0.
    lines: (u32, u32),
}

/// A chunk of one section, before it gets its place in the document.
struct SectionChunk {
    text: String,
    /// First and last line of the section's text, from 0.
    lines: (u32, u32),
    overlap_chars: usize,
}

fn chunk_section(
    section: &Section,
    target: usize,
    overlap: usize,
    piece_max: usize,
) -> Vec<SectionChunk> {
    let mut pieces = Vec::new();
    for para in paragraphs(&section.text) {
        let mut sep = PARA;
        // Line `k` of the paragraph is line `first_line + k` of the section.
        let newlines: Vec<usize> = para
            .text
            .match_indices('\n')
            .map(|(index, _)| index)
            .collect();
        let line_of = |byte: usize| {
            let within = newlines.partition_point(|&newline| newline < byte);
            para.first_line
                .saturating_add(u32::try_from(within).unwrap_or(u32::MAX))
        };
        for (text, range) in split_paragraph(&para.text, piece_max) {
            let lines = (line_of(range.start), line_of(range.end));
            pieces.push(Piece { text, sep, lines });
            sep = " ";
        }
    }

    let mut out = Vec::new();
    let mut cur = String::new();
    let mut cur_len = 0;
    // Where each piece in `cur` starts (in characters) and its lines; the carried overlap
    // keeps the entries of the pieces it was cut from.
    let mut spans: Vec<(usize, (u32, u32))> = Vec::new();
    // Characters at the start of `cur` carried over from the previous chunk.
    let mut carried_len = 0;
    // Whether `cur` holds anything beyond the overlap carried into it.
    let mut fresh = false;
    for piece in pieces {
        let piece_len = piece.text.chars().count();
        let sep = if cur.is_empty() { "" } else { piece.sep };
        if cur_len + sep.len() + piece_len > target && fresh {
            // The tail is a suffix of `cur` (pieces have no outer whitespace).
            let carried = tail_at_word(&cur, overlap);
            let carried_chars = carried.chars().count();
            let start = cur_len - carried_chars;
            out.push(SectionChunk {
                text: std::mem::replace(&mut cur, carried),
                lines: span_lines(&spans),
                overlap_chars: carried_len,
            });
            spans = carried_spans(&spans, start, cur_len);
            cur_len = carried_chars;
            carried_len = carried_chars;
        }
        if !cur.is_empty() {
            cur.push_str(piece.sep);
            cur_len += piece.sep.len();
        }
        spans.push((cur_len, piece.lines));
        cur.push_str(&piece.text);
        cur_len += piece_len;
        fresh = true;
    }
    if fresh {
        out.push(SectionChunk {
            text: cur,
            lines: span_lines(&spans),
            overlap_chars: carried_len,
        });
    }
    out
}

/// The lines covered by the pieces of a chunk.
fn span_lines(spans: &[(usize, (u32, u32))]) -> (u32, u32) {
    let first = spans.first().map_or(0, |(_, lines)| lines.0);
    let last = spans
        .iter()
        .map(|(_, lines)| lines.1)
        .max()
        .unwrap_or(first);
    (first, last)
}

/// The entries of `spans` (pieces of a chunk `len` characters long) that the text from
/// character `start` on overlaps, re-based to start at 0.
fn carried_spans(
    spans: &[(usize, (u32, u32))],
    start: usize,
    len: usize,
) -> Vec<(usize, (u32, u32))> {
    spans
        .iter()
        .enumerate()
        .filter(|(index, _)| {
            let end = spans.get(index + 1).map_or(len, |(next, _)| *next);
            end > start
        })
        .map(|(_, (from, lines))| (from.saturating_sub(start), *lines))
        .collect()
}

/// A paragraph with whitespace normalised, and where it starts.
struct Paragraph {
    text: String,
    /// Its first line in the section's text, from 0; its `\n`s are the following lines.
    first_line: u32,
}

/// Paragraphs of `text` (separated by blank lines) with whitespace normalised: runs of
/// spaces and tabs become one space, lines are trimmed, single line breaks are kept (table
/// rows, verse, code).
fn paragraphs(text: &str) -> Vec<Paragraph> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut first_line = 0;
    for (index, line) in text.lines().enumerate() {
        let mut words = line.split_whitespace().peekable();
        if words.peek().is_none() {
            if !cur.is_empty() {
                out.push(Paragraph {
                    text: std::mem::take(&mut cur),
                    first_line,
                });
            }
            continue;
        }
        if cur.is_empty() {
            first_line = u32::try_from(index).unwrap_or(u32::MAX);
        } else {
            cur.push('\n');
        }
        for (i, word) in words.enumerate() {
            if i > 0 {
                cur.push(' ');
            }
            cur.push_str(word);
        }
    }
    if !cur.is_empty() {
        out.push(Paragraph {
            text: cur,
            first_line,
        });
    }
    out
}

/// A paragraph as pieces of at most `max` characters, each with its byte range in `para`:
/// whole if it fits, else sentences, else runs of words, else slices of characters.
fn split_paragraph(para: &str, max: usize) -> Vec<(String, Range<usize>)> {
    if para.chars().count() <= max {
        return vec![(para.to_owned(), 0..para.len())];
    }
    let mut out = Vec::new();
    for (start, sentence) in sentences(para) {
        if sentence.chars().count() <= max {
            out.push((sentence.to_owned(), start..start + sentence.len()));
        } else {
            for (text, range) in split_words(sentence, max) {
                out.push((text, start + range.start..start + range.end));
            }
        }
    }
    out
}

/// Sentence ends: `.`, `!`, `?` or `…` followed by whitespace, and the CJK full stops (which
/// are not followed by spaces). Returns trimmed, non-empty sentences with their byte
/// offsets in `text`.
fn sentences(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let end = i + c.len_utf8();
        let boundary = match c {
            '。' | '！' | '？' => true,
            '.' | '!' | '?' | '…' => chars.peek().is_none_or(|(_, next)| next.is_whitespace()),
            _ => false,
        };
        if boundary {
            out.extend(trimmed(text, start..end));
            start = end;
        }
    }
    out.extend(trimmed(text, start..text.len()));
    out
}

/// `text[range]` without outer whitespace and where that starts, unless nothing is left.
fn trimmed(text: &str, range: Range<usize>) -> Option<(usize, &str)> {
    let raw = &text[range.clone()];
    let start = range.start + (raw.len() - raw.trim_start().len());
    let trimmed = raw.trim();
    (!trimmed.is_empty()).then_some((start, trimmed))
}

/// Packs the words of `text` into pieces of at most `max` characters, each with its byte
/// range in `text`; a word longer than that is cut between characters.
fn split_words(text: &str, max: usize) -> Vec<(String, Range<usize>)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut cur_len = 0;
    let mut cur_range = 0..0;
    for (start, word) in words(text) {
        let len = word.chars().count();
        if len > max {
            if !cur.is_empty() {
                out.push((std::mem::take(&mut cur), cur_range.clone()));
                cur_len = 0;
            }
            let mut from = start;
            let chars: Vec<char> = word.chars().collect();
            for slice in chars.chunks(max) {
                let piece: String = slice.iter().collect();
                let to = from + piece.len();
                out.push((piece, from..to));
                from = to;
            }
            continue;
        }
        let sep = usize::from(!cur.is_empty());
        if cur_len + sep + len > max {
            out.push((std::mem::take(&mut cur), cur_range.clone()));
            cur_len = 0;
        }
        if cur.is_empty() {
            cur_range = start..start;
        } else {
            cur.push(' ');
            cur_len += 1;
        }
        cur.push_str(word);
        cur_len += len;
        cur_range.end = start + word.len();
    }
    if !cur.is_empty() {
        out.push((cur, cur_range));
    }
    out
}

/// The words of `text` (split at whitespace) with their byte offsets.
fn words(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split_whitespace()
        .map(move |word| (word.as_ptr() as usize - text.as_ptr() as usize, word))
}

/// The last `n` characters of `text`, moved forward to the start of a word so the overlap
/// does not begin with half a word (kept as is when it is all one word, e.g. CJK text).
fn tail_at_word(text: &str, n: usize) -> String {
    if n == 0 {
        return String::new();
    }
    let total = text.chars().count();
    if total <= n {
        return text.trim().to_owned();
    }
    let start = text
        .char_indices()
        .nth(total - n)
        .map_or(text.len(), |(i, _)| i);
    let tail = &text[start..];
    let starts_at_word = text[..start].ends_with(char::is_whitespace);
    let tail = if starts_at_word {
        tail
    } else {
        match tail.find(char::is_whitespace) {
            Some(ws) => &tail[ws..],
            None => tail,
        }
    };
    tail.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_split_after_terminators() {
        assert_eq!(
            sentences("One. Two! Three? 3.14 is pi"),
            vec![(0, "One."), (5, "Two!"), (10, "Three?"), (17, "3.14 is pi")]
        );
        assert_eq!(sentences("一。二。"), vec![(0, "一。"), (6, "二。")]);
    }

    #[test]
    fn words_know_where_they_are() {
        let text = "alpha  beta\ngamma";
        for (start, word) in words(text) {
            assert_eq!(&text[start..start + word.len()], word);
        }
        assert_eq!(
            split_words(text, 10),
            vec![
                ("alpha beta".to_owned(), 0..11),
                ("gamma".to_owned(), 12..17)
            ]
        );
    }

    #[test]
    fn tail_starts_at_a_word() {
        assert_eq!(tail_at_word("alpha beta gamma", 7), "gamma");
        assert_eq!(tail_at_word("alpha beta gamma", 6), "gamma");
        assert_eq!(tail_at_word("日本語の文章", 2), "文章");
    }

    #[test]
    fn paragraphs_normalise_whitespace_and_know_their_first_line() {
        let found: Vec<(String, u32)> = paragraphs("  a \t b \n c\n\n\n d  ")
            .into_iter()
            .map(|para| (para.text, para.first_line))
            .collect();
        assert_eq!(found, vec![("a b\nc".to_owned(), 0), ("d".to_owned(), 4)]);
    }
}
