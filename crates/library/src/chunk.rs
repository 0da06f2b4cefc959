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
//! overlap included, is at most `target_chars` long.

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
    /// The heading path of the section it came from (DOCX, Markdown).
    pub heading: Option<String>,
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
        for text in chunk_section(section, target, overlap, piece_max) {
            let ordinal = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
            chunks.push(Chunk {
                ordinal,
                text,
                page: section.page,
                heading: section.heading.clone(),
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
}

fn chunk_section(
    section: &Section,
    target: usize,
    overlap: usize,
    piece_max: usize,
) -> Vec<String> {
    let mut pieces = Vec::new();
    for para in paragraphs(&section.text) {
        let mut sep = PARA;
        for text in split_paragraph(&para, piece_max) {
            pieces.push(Piece { text, sep });
            sep = " ";
        }
    }

    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut cur_len = 0;
    // Whether `cur` holds anything beyond the overlap carried into it.
    let mut fresh = false;
    for piece in pieces {
        let piece_len = piece.text.chars().count();
        let sep = if cur.is_empty() { "" } else { piece.sep };
        if cur_len + sep.len() + piece_len > target && fresh {
            let carried = tail_at_word(&cur, overlap);
            out.push(std::mem::replace(&mut cur, carried));
            cur_len = cur.chars().count();
        }
        if !cur.is_empty() {
            cur.push_str(piece.sep);
            cur_len += piece.sep.len();
        }
        cur.push_str(&piece.text);
        cur_len += piece_len;
        fresh = true;
    }
    if fresh {
        out.push(cur);
    }
    out
}

/// Paragraphs of `text` (separated by blank lines) with whitespace normalised: runs of
/// spaces and tabs become one space, lines are trimmed, single line breaks are kept (table
/// rows, verse, code).
fn paragraphs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let mut words = line.split_whitespace().peekable();
        if words.peek().is_none() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if !cur.is_empty() {
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
        out.push(cur);
    }
    out
}

/// A paragraph as pieces of at most `max` characters: whole if it fits, else sentences,
/// else runs of words, else slices of characters.
fn split_paragraph(para: &str, max: usize) -> Vec<String> {
    if para.chars().count() <= max {
        return vec![para.to_owned()];
    }
    let mut out = Vec::new();
    for sentence in sentences(para) {
        if sentence.chars().count() <= max {
            out.push(sentence.to_owned());
        } else {
            split_words(sentence, max, &mut out);
        }
    }
    out
}

/// Sentence ends: `.`, `!`, `?` or `…` followed by whitespace, and the CJK full stops (which
/// are not followed by spaces). Returns trimmed, non-empty sentences.
fn sentences(text: &str) -> Vec<&str> {
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
            let s = text[start..end].trim();
            if !s.is_empty() {
                out.push(s);
            }
            start = end;
        }
    }
    let s = text[start..].trim();
    if !s.is_empty() {
        out.push(s);
    }
    out
}

/// Packs the words of `text` into pieces of at most `max` characters; a word longer than
/// that is cut between characters.
fn split_words(text: &str, max: usize, out: &mut Vec<String>) {
    let mut cur = String::new();
    let mut cur_len = 0;
    for word in text.split_whitespace() {
        let len = word.chars().count();
        if len > max {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
                cur_len = 0;
            }
            let chars: Vec<char> = word.chars().collect();
            for slice in chars.chunks(max) {
                out.push(slice.iter().collect());
            }
            continue;
        }
        let sep = usize::from(!cur.is_empty());
        if cur_len + sep + len > max {
            out.push(std::mem::take(&mut cur));
            cur_len = 0;
        }
        if !cur.is_empty() {
            cur.push(' ');
            cur_len += 1;
        }
        cur.push_str(word);
        cur_len += len;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
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
            vec!["One.", "Two!", "Three?", "3.14 is pi"]
        );
        assert_eq!(sentences("一。二。"), vec!["一。", "二。"]);
    }

    #[test]
    fn tail_starts_at_a_word() {
        assert_eq!(tail_at_word("alpha beta gamma", 7), "gamma");
        assert_eq!(tail_at_word("alpha beta gamma", 6), "gamma");
        assert_eq!(tail_at_word("日本語の文章", 2), "文章");
    }

    #[test]
    fn paragraphs_normalise_whitespace() {
        assert_eq!(
            paragraphs("  a \t b \n c\n\n\n d  "),
            vec!["a b\nc".to_owned(), "d".to_owned()]
        );
    }
}
