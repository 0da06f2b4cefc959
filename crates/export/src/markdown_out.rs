//! Blocks as Markdown (CommonMark with tables). Text is escaped so it reads back as the
//! same text: what a member typed as `# x` or `*x*` inside a paragraph stays literal.

use crate::blocks::{Block, Span};

/// `blocks` as a Markdown document.
pub(crate) fn render(blocks: &[Block]) -> String {
    let mut out = render_blocks(blocks);
    out.push('\n');
    out
}

fn render_blocks(blocks: &[Block]) -> String {
    let mut parts: Vec<String> = Vec::with_capacity(blocks.len());
    let mut previous: Option<&Block> = None;
    let mut alternated = false;
    for block in blocks {
        // Two lists of one kind in a row would read back as one: alternate the marker.
        let alternate = !alternated && same_list_kind(previous, block);
        alternated = alternate;
        let text = render_block(block, alternate);
        if !text.is_empty() {
            parts.push(text);
        }
        previous = Some(block);
    }
    parts.join("\n\n")
}

fn same_list_kind(previous: Option<&Block>, block: &Block) -> bool {
    matches!(
        (previous, block),
        (Some(Block::List { ordered: a, .. }), Block::List { ordered: b, .. }) if a == b
    )
}

fn render_block(block: &Block, alternate: bool) -> String {
    match block {
        Block::Heading { level, spans, .. } => {
            let text = inline(spans).replace("\\\n", " ");
            format!("{} {}", "#".repeat(usize::from(*level)), text.trim())
        }
        Block::Paragraph { spans, .. } => inline(spans),
        Block::List {
            ordered,
            start,
            items,
        } => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let marker = match (ordered, alternate) {
                    (true, false) => format!("{}. ", start.saturating_add(i as u64)),
                    (true, true) => format!("{}) ", start.saturating_add(i as u64)),
                    (false, false) => "- ".to_owned(),
                    (false, true) => "* ".to_owned(),
                };
                let body = render_item(item);
                let indent = " ".repeat(marker.len());
                let mut lines = body.lines();
                let first = lines.next().unwrap_or("");
                let mut text = format!("{marker}{first}");
                for line in lines {
                    text.push('\n');
                    if !line.is_empty() {
                        text.push_str(&indent);
                        text.push_str(line);
                    }
                }
                out.push(text.trim_end().to_owned());
            }
            out.join("\n")
        }
        Block::Table { header, rows } => {
            let columns = rows
                .iter()
                .map(Vec::len)
                .chain(std::iter::once(header.len()))
                .max()
                .unwrap_or(0)
                .max(1);
            let row = |cells: &[Vec<Span>]| {
                let mut text = String::from("|");
                for i in 0..columns {
                    let cell = cells.get(i).map(|c| inline(c)).unwrap_or_default();
                    text.push(' ');
                    text.push_str(cell.replace("\\\n", " ").trim());
                    text.push_str(" |");
                }
                text
            };
            let mut lines = vec![row(header), format!("|{}", " --- |".repeat(columns))];
            lines.extend(rows.iter().map(|cells| row(cells)));
            lines.join("\n")
        }
        Block::Code { text } => {
            let fence = "`".repeat(longest_run(text, '`').max(2) + 1);
            format!("{fence}\n{text}\n{fence}")
        }
        Block::Quote { blocks } => render_blocks(blocks)
            .lines()
            .map(|line| {
                if line.is_empty() {
                    ">".to_owned()
                } else {
                    format!("> {line}")
                }
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Block::Rule => "---".to_owned(),
    }
}

/// An item's blocks: tight (one line apart) when it is a paragraph and lists, else loose.
fn render_item(item: &[Block]) -> String {
    let texts = item
        .iter()
        .filter(|block| !matches!(block, Block::List { .. }))
        .count();
    if texts <= 1 {
        let mut out: Vec<String> = Vec::new();
        let mut previous: Option<&Block> = None;
        let mut alternated = false;
        for block in item {
            let alternate = !alternated && same_list_kind(previous, block);
            alternated = alternate;
            out.push(render_block(block, alternate));
            previous = Some(block);
        }
        out.join("\n")
    } else {
        render_blocks(item)
    }
}

/// Spans as inline Markdown: escaped text, emphasis, code spans, links; `\n` as a hard
/// line break.
fn inline(spans: &[Span]) -> String {
    let mut out = String::new();
    for span in spans {
        if span.text.is_empty() {
            continue;
        }
        let mut text = if span.code {
            code_span(&span.text)
        } else {
            escape(&span.text, out.is_empty() || out.ends_with('\n'))
        };
        // Delimiters must touch the text: leading and trailing spaces go outside.
        let (lead, core, trail) = split_spaces(&text);
        if !core.is_empty() && (span.bold || span.italic || span.strike) && !span.code {
            let mut marks = String::new();
            if span.strike {
                marks.push_str("~~");
            }
            if span.bold {
                marks.push_str("**");
            }
            if span.italic {
                marks.push('*');
            }
            let closing: String = marks.chars().rev().collect();
            text = format!("{lead}{marks}{core}{closing}{trail}");
        }
        if let Some(link) = &span.link {
            let (lead, core, trail) = split_spaces(&text);
            text = format!("{lead}[{core}](<{}>){trail}", link_target(link));
        }
        out.push_str(&text);
    }
    out
}

fn split_spaces(text: &str) -> (String, String, String) {
    let core = text.trim_matches(' ');
    let lead = &text[..text.len() - text.trim_start_matches(' ').len()];
    let trail = &text[text.trim_end_matches(' ').len()..];
    (lead.to_owned(), core.to_owned(), trail.to_owned())
}

/// Escapes ASCII punctuation that could start markup, and what only means something at
/// the start of a line (list markers, headings' `#`, setext underlines). A `\n` becomes a
/// hard break (`\` and newline).
fn escape(text: &str, at_line_start: bool) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for (index, line) in text.split('\n').enumerate() {
        if index > 0 {
            out.push_str("\\\n");
        }
        let line_start = index > 0 || at_line_start;
        // Leading spaces would make an indented code block or be dropped anyway.
        let line = if line_start {
            line.trim_start_matches(' ')
        } else {
            line
        };
        let digits = line.chars().take_while(char::is_ascii_digit).count();
        for (i, c) in line.chars().enumerate() {
            let escaped = match c {
                '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '|' | '~' | '&' | '!' => {
                    true
                }
                '-' | '+' | '=' => line_start && i == 0,
                '.' | ')' => line_start && digits > 0 && i == digits,
                _ => false,
            };
            if escaped {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out
}

fn code_span(text: &str) -> String {
    let text = text.replace('\n', " ");
    let ticks = "`".repeat(longest_run(&text, '`') + 1);
    let pad = text.starts_with('`') || text.ends_with('`') || text.starts_with(' ');
    if pad {
        format!("{ticks} {text} {ticks}")
    } else {
        format!("{ticks}{text}{ticks}")
    }
}

fn longest_run(text: &str, c: char) -> usize {
    let mut longest = 0;
    let mut run = 0;
    for ch in text.chars() {
        if ch == c {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    longest
}

/// A link target inside `<...>`: the characters that would end it percent-encoded.
fn link_target(link: &str) -> String {
    link.replace('<', "%3C")
        .replace('>', "%3E")
        .replace(' ', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::markdown_in::parse;

    /// Markdown → blocks → Markdown → blocks gives the same blocks.
    fn round_trips(markdown: &str) {
        let blocks = parse(markdown);
        let rendered = render(&blocks);
        assert_eq!(parse(&rendered), blocks, "rendered:\n{rendered}");
    }

    #[test]
    fn headings_round_trip() {
        round_trips("# One\n\n## Two *it*\n\n###### Six\n");
    }

    #[test]
    fn nested_lists_round_trip() {
        round_trips("- a\n- b\n  1. x\n  2. y\n     - deep\n- c\n\n3. three\n4. four\n");
        round_trips("- a\n\n  second paragraph\n- b\n");
        round_trips("- one list\n\n<!-- -->\n\n- another\n");
    }

    #[test]
    fn tables_round_trip() {
        round_trips("| a | b |\n|---|---|\n| 1 | **2** |\n| x \\| y | `z` |\n");
    }

    #[test]
    fn literal_markup_stays_literal() {
        round_trips(
            "a \\# b \\*c\\* \\[d\\](e) 1\\. f \\<g\\> h\\_i\\_ & `x` \\`\n\nline\\\nbreak\n",
        );
        let text = render(&[Block::text("# not a heading\n- not a list\n1. nor this")]);
        let blocks = parse(&text);
        assert_eq!(blocks.len(), 1, "{text}");
        assert!(matches!(blocks[0], Block::Paragraph { .. }), "{text}");
    }

    #[test]
    fn quotes_code_and_links_round_trip() {
        round_trips(
            "> quoted **text**\n>\n> - item\n\n```\nfn main() {}\n```\n\n[link](https://x.test/a b) and ---\n\n---\n",
        );
    }
}
