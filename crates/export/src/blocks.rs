//! The one intermediate model every document becomes and every renderer reads: headings,
//! paragraphs of styled spans, lists, tables, code, quotes. It is also what the PDF
//! template receives as JSON, so its serialized shape is the template's contract.

use serde::Serialize;

/// How deep lists and quotes nest. Deeper content stays, flattened into the deepest
/// container allowed: a hostile note of ten thousand `>` must not become ten thousand
/// nested frames in a renderer (typst bounds its call depth; Word shows nine list levels).
pub(crate) const MAX_DEPTH: usize = 8;

/// A block of a document.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub(crate) enum Block {
    /// A heading, level 1 (largest) to 6.
    Heading {
        /// 1 to 6.
        level: u8,
        /// Its text.
        spans: Vec<Span>,
        /// Whether the text runs right to left (it starts with Arabic or Hebrew).
        #[serde(skip_serializing_if = "is_false")]
        rtl: bool,
    },
    /// A paragraph.
    Paragraph {
        /// Its text.
        spans: Vec<Span>,
        /// Whether the text runs right to left.
        #[serde(skip_serializing_if = "is_false")]
        rtl: bool,
    },
    /// A list, each item a sequence of blocks (nested lists included).
    List {
        /// Numbered (from `start`) or bulleted.
        ordered: bool,
        /// The first number of a numbered list.
        start: u64,
        /// The items.
        items: Vec<Vec<Block>>,
    },
    /// A table: a header row (possibly empty) and body rows; a cell is a run of spans.
    Table {
        /// The header cells.
        header: Vec<Vec<Span>>,
        /// The body rows.
        rows: Vec<Vec<Vec<Span>>>,
    },
    /// Preformatted text.
    Code {
        /// The text, lines separated by `\n`.
        text: String,
    },
    /// A quotation.
    Quote {
        /// Its blocks.
        blocks: Vec<Block>,
    },
    /// A thematic break.
    Rule,
}

fn is_false(value: &bool) -> bool {
    !value
}

/// A run of text with one style. A `\n` in `text` is a line break.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Span {
    /// The text.
    pub text: String,
    /// Bold.
    #[serde(skip_serializing_if = "is_false")]
    pub bold: bool,
    /// Italic.
    #[serde(skip_serializing_if = "is_false")]
    pub italic: bool,
    /// Inline code.
    #[serde(skip_serializing_if = "is_false")]
    pub code: bool,
    /// Struck through.
    #[serde(skip_serializing_if = "is_false")]
    pub strike: bool,
    /// A link target: only `http`, `https` and `mailto` are kept (see [`safe_link`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

impl Span {
    /// Plain text.
    pub(crate) fn plain(text: impl AsRef<str>) -> Self {
        Self {
            text: clean(text.as_ref()),
            ..Self::default()
        }
    }

    /// Bold text.
    pub(crate) fn bold(text: impl AsRef<str>) -> Self {
        Self {
            bold: true,
            ..Self::plain(text)
        }
    }

    /// Italic text.
    pub(crate) fn italic(text: impl AsRef<str>) -> Self {
        Self {
            italic: true,
            ..Self::plain(text)
        }
    }

    /// Whether two spans can be one (same style and link).
    pub(crate) fn same_style(&self, other: &Span) -> bool {
        self.bold == other.bold
            && self.italic == other.italic
            && self.code == other.code
            && self.strike == other.strike
            && self.link == other.link
    }
}

impl Block {
    /// A paragraph of `spans`, its direction taken from its text.
    pub(crate) fn paragraph(spans: Vec<Span>) -> Self {
        let rtl = starts_rtl(&spans);
        Block::Paragraph { spans, rtl }
    }

    /// A heading of `spans`.
    pub(crate) fn heading(level: u8, spans: Vec<Span>) -> Self {
        let rtl = starts_rtl(&spans);
        Block::Heading {
            level: level.clamp(1, 6),
            spans,
            rtl,
        }
    }

    /// A paragraph of plain text (line breaks kept).
    pub(crate) fn text(text: impl AsRef<str>) -> Self {
        Self::paragraph(vec![Span::plain(text)])
    }
}

/// Merges neighbouring spans of one style, drops empty ones: renderers then emit fewer runs.
pub(crate) fn normalize(spans: Vec<Span>) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::with_capacity(spans.len());
    for span in spans {
        if span.text.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.same_style(&span) => last.text.push_str(&span.text),
            _ => out.push(span),
        }
    }
    out
}

/// Text made safe for every format without losing a character silently: control
/// characters (which XML 1.0, and so DOCX, cannot carry) become U+FFFD, visibly; tabs
/// become spaces; `\r\n` and `\r` become `\n`.
pub(crate) fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    out.push('\n');
                }
            }
            '\n' => out.push('\n'),
            '\t' => out.push(' '),
            c if c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// A link target if it is one a reader may follow: `http(s)` and `mailto` only, so a
/// document cannot carry `javascript:` or `file:` links into a PDF or DOCX.
pub(crate) fn safe_link(target: &str) -> Option<String> {
    let target = target.trim();
    let lower = target.to_ascii_lowercase();
    let allowed = ["http://", "https://", "mailto:"]
        .iter()
        .any(|scheme| lower.starts_with(scheme));
    (allowed && !target.chars().any(char::is_control)).then(|| target.to_owned())
}

/// Whether the first strongly directional letter of `spans` is right-to-left (Hebrew,
/// Arabic, Syriac, Thaana, N'Ko and their presentation forms): the paragraph then reads
/// right to left.
fn starts_rtl(spans: &[Span]) -> bool {
    for c in spans.iter().flat_map(|span| span.text.chars()) {
        if is_rtl(c) {
            return true;
        }
        if c.is_alphabetic() {
            return false;
        }
    }
    false
}

fn is_rtl(c: char) -> bool {
    matches!(c,
        '\u{0590}'..='\u{08FF}'
        | '\u{FB1D}'..='\u{FDFF}'
        | '\u{FE70}'..='\u{FEFF}'
        | '\u{10800}'..='\u{10FFF}'
        | '\u{1E800}'..='\u{1EFFF}')
}

/// Every character of `blocks`' text, in order (for glyph coverage and the budget).
pub(crate) fn for_each_text(blocks: &[Block], f: &mut dyn FnMut(&str)) {
    for block in blocks {
        match block {
            Block::Heading { spans, .. } | Block::Paragraph { spans, .. } => {
                spans.iter().for_each(|span| f(&span.text));
            }
            Block::List { items, .. } => items.iter().for_each(|item| for_each_text(item, f)),
            Block::Table { header, rows } => {
                for cell in header.iter().chain(rows.iter().flatten()) {
                    cell.iter().for_each(|span| f(&span.text));
                }
            }
            Block::Code { text } => f(text),
            Block::Quote { blocks } => for_each_text(blocks, f),
            Block::Rule => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible_replacements() {
        assert_eq!(clean("a\u{1}b\r\nc\rd\te"), "a\u{FFFD}b\nc\nd e");
    }

    #[test]
    fn only_web_and_mail_links_are_kept() {
        assert_eq!(
            safe_link(" https://x.test/a "),
            Some("https://x.test/a".into())
        );
        assert_eq!(safe_link("MAILTO:a@b.test"), Some("MAILTO:a@b.test".into()));
        assert_eq!(safe_link("javascript:alert(1)"), None);
        assert_eq!(safe_link("file:///etc/passwd"), None);
    }

    #[test]
    fn direction_comes_from_the_first_strong_letter() {
        assert!(starts_rtl(&[Span::plain("1. مرحبا world")]));
        assert!(!starts_rtl(&[Span::plain("hello مرحبا")]));
        assert!(!starts_rtl(&[Span::plain("你好")]));
    }
}
