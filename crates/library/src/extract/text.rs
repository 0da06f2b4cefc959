//! Plain text and Markdown.
//!
//! Plain text is one section: splitting it into paragraphs is the chunker's job. Markdown is
//! split at ATX headings (`#` to `######`) into sections carrying the heading path; the
//! Markdown itself is kept (emphasis markers and links read fine to an embedding model and
//! to a student), only the heading lines move into [`Section::heading`].

use super::Deadline;
use crate::{ExtractError, Extracted, Section};

/// Decodes UTF-8 (dropping a byte-order mark) with `\r\n` and `\r` line ends made `\n`.
fn decode(bytes: &[u8]) -> Result<String, ExtractError> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| ExtractError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    Ok(if text.contains('\r') {
        text.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        text.to_owned()
    })
}

pub(super) fn extract_text(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let text = decode(bytes)?;
    Ok(Extracted {
        sections: vec![Section {
            text,
            page: None,
            heading: None,
            line: Some(1),
        }],
    })
}

pub(super) fn extract_markdown(
    bytes: &[u8],
    deadline: &Deadline,
) -> Result<Extracted, ExtractError> {
    let text = decode(bytes)?;
    let mut sections = Vec::new();
    let mut path = HeadingPath::default();
    let mut body = String::new();
    // The line (from 0) `body` starts on.
    let mut body_line = 0;
    // Inside a fenced code block a `#` line is a comment, not a heading.
    let mut fence: Option<(char, usize)> = None;
    for (n, line) in text.split('\n').enumerate() {
        if n.is_multiple_of(4096) {
            deadline.check()?;
        }
        let trimmed = line.trim_start_matches(' ');
        let indent = line.len() - trimmed.len();
        if indent < 4 {
            if let Some((ch, len)) = fence_marker(trimmed) {
                match fence {
                    None => fence = Some((ch, len)),
                    Some((open, open_len)) if open == ch && len >= open_len => fence = None,
                    Some(_) => {}
                }
            } else if fence.is_none()
                && let Some((level, title)) = atx_heading(trimmed)
            {
                push_section(&mut sections, &mut body, body_line, path.current());
                path.enter(level, title);
                continue;
            }
        }
        if body.is_empty() {
            body_line = n;
        }
        body.push_str(line);
        body.push('\n');
    }
    push_section(&mut sections, &mut body, body_line, path.current());
    Ok(Extracted { sections })
}

/// Ends the section whose `body` starts on line `body_line` (from 0).
fn push_section(
    sections: &mut Vec<Section>,
    body: &mut String,
    body_line: usize,
    heading: Option<String>,
) {
    let body = std::mem::take(body);
    let text = body.trim();
    if !text.is_empty() {
        // Blank lines trimmed from the front move the start down.
        let skipped = body[..body.len() - body.trim_start().len()]
            .matches('\n')
            .count();
        let line = u32::try_from(body_line + skipped + 1).unwrap_or(u32::MAX);
        sections.push(Section {
            text: text.to_owned(),
            page: None,
            heading,
            line: Some(line),
        });
    }
}

/// ```` ``` ```` or `~~~` (three or more) opening or closing a fenced code block.
fn fence_marker(line: &str) -> Option<(char, usize)> {
    let ch = line.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let len = line.chars().take_while(|c| *c == ch).count();
    (len >= 3).then_some((ch, len))
}

/// `## Title ##` → `(2, "Title")`. A heading needs a space after the hashes (`#hashtag` is
/// text) and may be empty.
fn atx_heading(line: &str) -> Option<(usize, String)> {
    let level = line.bytes().take_while(|&b| b == b'#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &line[level..];
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let mut title = rest.trim();
    // An optional closing sequence of hashes, separated by a space.
    let without_closing = title.trim_end_matches('#');
    if without_closing.is_empty() || without_closing.ends_with([' ', '\t']) {
        title = without_closing.trim_end();
    }
    Some((level, title.to_owned()))
}

/// The stack of open headings, shared by the Markdown and DOCX readers.
#[derive(Debug, Default)]
pub(super) struct HeadingPath {
    open: Vec<(usize, String)>,
}

impl HeadingPath {
    /// A heading of `level` closes every open heading at the same or a deeper level.
    pub(super) fn enter(&mut self, level: usize, title: String) {
        while self.open.last().is_some_and(|(l, _)| *l >= level) {
            self.open.pop();
        }
        if !title.is_empty() {
            self.open.push((level, title));
        }
    }

    /// `"A > B > C"`, or `None` outside any heading.
    pub(super) fn current(&self) -> Option<String> {
        if self.open.is_empty() {
            return None;
        }
        let titles: Vec<&str> = self.open.iter().map(|(_, t)| t.as_str()).collect();
        Some(titles.join(" > "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atx_headings() {
        assert_eq!(atx_heading("# A"), Some((1, "A".into())));
        assert_eq!(atx_heading("### B ###"), Some((3, "B".into())));
        assert_eq!(atx_heading("## C#"), Some((2, "C#".into())));
        assert_eq!(atx_heading("#hashtag"), None);
        assert_eq!(atx_heading("####### seven"), None);
    }

    #[test]
    fn hashes_in_code_fences_are_not_headings() {
        let md = "# Top\nintro\n```sh\n# a comment\n```\n## Sub\nbody";
        let deadline = Deadline::new(std::time::Duration::from_secs(5));
        let out = extract_markdown(md.as_bytes(), &deadline).expect("markdown");
        assert_eq!(out.sections.len(), 2);
        assert!(out.sections[0].text.contains("# a comment"));
        assert_eq!(out.sections[1].heading.as_deref(), Some("Top > Sub"));
    }

    #[test]
    fn markdown_sections_know_their_first_line() {
        let md = "intro\n# Top\n\n\nfirst body line\nsecond\n## Sub\nbody";
        let deadline = Deadline::new(std::time::Duration::from_secs(5));
        let out = extract_markdown(md.as_bytes(), &deadline).expect("markdown");
        let lines: Vec<Option<u32>> = out.sections.iter().map(|s| s.line).collect();
        assert_eq!(lines, vec![Some(1), Some(5), Some(8)]);
    }
}
