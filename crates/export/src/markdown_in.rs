//! Markdown (notes, translations, chat messages) into [`Block`]s with `pulldown-cmark`,
//! tables and strikethrough enabled. Raw HTML is kept as the text it is: what members
//! write is data, never markup for a renderer.
//!
//! The conversion is a loop over events with an explicit stack (no recursion), and
//! containers past [`MAX_DEPTH`] are not opened: their content joins the deepest one.

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};

use crate::blocks::{Block, MAX_DEPTH, Span, clean, normalize, safe_link};

/// `markdown` as blocks.
pub(crate) fn parse(markdown: &str) -> Vec<Block> {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    let mut builder = Builder::default();
    for event in Parser::new_ext(markdown, options) {
        builder.event(event);
    }
    builder.finish()
}

/// An open container.
#[derive(Debug)]
enum Frame {
    /// The document, a quote or a list item: a sequence of blocks.
    Blocks { kind: Container, blocks: Vec<Block> },
    /// A list and its finished items.
    List {
        ordered: bool,
        start: u64,
        items: Vec<Vec<Block>>,
    },
    /// A table being read.
    Table {
        header: Vec<Vec<Span>>,
        rows: Vec<Vec<Vec<Span>>>,
        row: Vec<Vec<Span>>,
        in_head: bool,
    },
    /// A container past the depth bound, not opened: its end closes nothing.
    Flattened,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Root,
    Quote,
    Item,
}

/// Where inline text currently goes.
#[derive(Debug)]
enum Inline {
    Paragraph,
    Heading(u8),
    Cell,
    Code(String),
}

#[derive(Debug, Default)]
struct Style {
    bold: u32,
    italic: u32,
    strike: u32,
    links: Vec<Option<String>>,
}

#[derive(Debug)]
struct Builder {
    stack: Vec<Frame>,
    inline: Option<Inline>,
    spans: Vec<Span>,
    style: Style,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            stack: vec![Frame::Blocks {
                kind: Container::Root,
                blocks: Vec::new(),
            }],
            inline: None,
            spans: Vec::new(),
            style: Style::default(),
        }
    }
}

impl Builder {
    fn depth(&self) -> usize {
        self.stack
            .iter()
            .filter(|frame| !matches!(frame, Frame::Flattened))
            .count()
    }

    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(text) => self.text(&text, false),
            Event::Code(text) => self.text(&text, true),
            Event::InlineMath(text) | Event::DisplayMath(text) => self.text(&text, true),
            Event::Html(text) | Event::InlineHtml(text) => self.text(&text, false),
            Event::FootnoteReference(label) => self.text(&format!("[^{label}]"), false),
            Event::SoftBreak => self.text(" ", false),
            Event::HardBreak => self.text("\n", false),
            Event::Rule => {
                self.flush();
                self.push_block(Block::Rule);
            }
            Event::TaskListMarker(done) => self.text(if done { "[x] " } else { "[ ] " }, false),
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Paragraph => {
                self.flush();
                self.inline = Some(Inline::Paragraph);
            }
            Tag::Heading { level, .. } => {
                self.flush();
                self.inline = Some(Inline::Heading(heading_level(level)));
            }
            Tag::CodeBlock(_) => {
                self.flush();
                self.inline = Some(Inline::Code(String::new()));
            }
            Tag::BlockQuote(_) => self.open(Frame::Blocks {
                kind: Container::Quote,
                blocks: Vec::new(),
            }),
            Tag::List(start) => self.open(Frame::List {
                ordered: start.is_some(),
                start: start.unwrap_or(1),
                items: Vec::new(),
            }),
            Tag::Item => self.open(Frame::Blocks {
                kind: Container::Item,
                blocks: Vec::new(),
            }),
            Tag::Table(_) => self.open(Frame::Table {
                header: Vec::new(),
                rows: Vec::new(),
                row: Vec::new(),
                in_head: false,
            }),
            Tag::TableHead => {
                if let Some(Frame::Table { in_head, .. }) = self.stack.last_mut() {
                    *in_head = true;
                }
            }
            Tag::TableRow => {}
            Tag::TableCell => {
                self.flush();
                self.inline = Some(Inline::Cell);
            }
            Tag::Emphasis => self.style.italic += 1,
            Tag::Strong => self.style.bold += 1,
            Tag::Strikethrough => self.style.strike += 1,
            Tag::Link { dest_url, .. } => self.style.links.push(safe_link(&dest_url)),
            Tag::Image { dest_url, .. } => {
                // No pictures in exports: the alt text stays, linked to the picture.
                self.style.links.push(safe_link(&dest_url));
            }
            Tag::HtmlBlock => {
                self.flush();
                self.inline = Some(Inline::Paragraph);
            }
            Tag::FootnoteDefinition(_)
            | Tag::DefinitionList
            | Tag::DefinitionListTitle
            | Tag::DefinitionListDefinition
            | Tag::Superscript
            | Tag::Subscript
            | Tag::MetadataBlock(_) => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Paragraph | TagEnd::Heading(_) | TagEnd::CodeBlock => self.flush(),
            TagEnd::BlockQuote(_) | TagEnd::List(_) | TagEnd::Item => {
                self.flush();
                self.close();
            }
            TagEnd::Table => {
                self.flush();
                self.close();
            }
            TagEnd::TableHead => {
                self.flush();
                if let Some(Frame::Table {
                    header,
                    row,
                    in_head,
                    ..
                }) = self.stack.last_mut()
                {
                    header.append(row);
                    *in_head = false;
                }
            }
            TagEnd::TableRow => {
                self.flush();
                if let Some(Frame::Table { rows, row, .. }) = self.stack.last_mut() {
                    rows.push(std::mem::take(row));
                }
            }
            TagEnd::TableCell => {
                let spans = normalize(std::mem::take(&mut self.spans));
                self.inline = None;
                if let Some(Frame::Table { row, .. }) = self.stack.last_mut() {
                    row.push(spans);
                }
            }
            TagEnd::Emphasis => self.style.italic = self.style.italic.saturating_sub(1),
            TagEnd::Strong => self.style.bold = self.style.bold.saturating_sub(1),
            TagEnd::Strikethrough => self.style.strike = self.style.strike.saturating_sub(1),
            TagEnd::Link | TagEnd::Image => {
                self.style.links.pop();
            }
            TagEnd::HtmlBlock => {
                // Its lines arrive each with its newline: the last one ends the block.
                if let Some(last) = self.spans.last_mut()
                    && last.text.ends_with('\n')
                {
                    last.text.pop();
                }
                self.flush();
            }
            TagEnd::FootnoteDefinition
            | TagEnd::DefinitionList
            | TagEnd::DefinitionListTitle
            | TagEnd::DefinitionListDefinition
            | TagEnd::Superscript
            | TagEnd::Subscript
            | TagEnd::MetadataBlock(_) => {}
        }
    }

    fn text(&mut self, text: &str, code: bool) {
        match &mut self.inline {
            Some(Inline::Code(buffer)) => {
                buffer.push_str(text);
                return;
            }
            Some(_) => {}
            // Text of a tight list item, or HTML between blocks: an implicit paragraph.
            None => self.inline = Some(Inline::Paragraph),
        }
        let link = self.style.links.iter().rev().flatten().next().cloned();
        self.spans.push(Span {
            text: clean(text),
            bold: self.style.bold > 0,
            italic: self.style.italic > 0,
            code,
            strike: self.style.strike > 0,
            link,
        });
    }

    /// Ends the open inline run, if any, as its block.
    fn flush(&mut self) {
        let Some(inline) = self.inline.take() else {
            return;
        };
        let spans = normalize(std::mem::take(&mut self.spans));
        let block = match inline {
            Inline::Paragraph if spans.is_empty() => return,
            Inline::Paragraph => Block::paragraph(spans),
            Inline::Heading(level) => Block::heading(level, spans),
            Inline::Code(text) => Block::Code {
                text: clean(text.strip_suffix('\n').unwrap_or(&text)),
            },
            Inline::Cell => {
                // A cell's text is collected at its end; a block inside a cell does not
                // exist in Markdown tables.
                self.spans = spans;
                self.inline = Some(Inline::Cell);
                return;
            }
        };
        self.push_block(block);
    }

    fn open(&mut self, frame: Frame) {
        self.flush();
        if self.depth() > MAX_DEPTH {
            self.stack.push(Frame::Flattened);
        } else {
            self.stack.push(frame);
        }
    }

    fn close(&mut self) {
        if self.stack.len() <= 1 {
            return;
        }
        let Some(frame) = self.stack.pop() else {
            return;
        };
        match frame {
            Frame::Flattened => {}
            Frame::Blocks {
                kind: Container::Item,
                blocks,
            } => match self.stack.last_mut() {
                Some(Frame::List { items, .. }) => items.push(blocks),
                // An item outside a list (only past the depth bound): its blocks stay.
                _ => blocks.into_iter().for_each(|block| self.push_block(block)),
            },
            Frame::Blocks { blocks, .. } => self.push_block(Block::Quote { blocks }),
            Frame::List {
                ordered,
                start,
                items,
            } => self.push_block(Block::List {
                ordered,
                start,
                items,
            }),
            Frame::Table { header, rows, .. } => self.push_block(Block::Table { header, rows }),
        }
    }

    /// Adds `block` to the innermost container that holds blocks.
    fn push_block(&mut self, block: Block) {
        for frame in self.stack.iter_mut().rev() {
            match frame {
                Frame::Blocks { blocks, .. } => {
                    blocks.push(block);
                    return;
                }
                Frame::List { items, .. } => {
                    // Only past the depth bound: content between items joins the last one.
                    match items.last_mut() {
                        Some(item) => item.push(block),
                        None => items.push(vec![block]),
                    }
                    return;
                }
                Frame::Table { .. } | Frame::Flattened => {}
            }
        }
    }

    fn finish(mut self) -> Vec<Block> {
        self.flush();
        while self.stack.len() > 1 {
            self.close();
        }
        match self.stack.pop() {
            Some(Frame::Blocks { blocks, .. }) => blocks,
            _ => Vec::new(),
        }
    }
}

fn heading_level(level: HeadingLevel) -> u8 {
    match level {
        HeadingLevel::H1 => 1,
        HeadingLevel::H2 => 2,
        HeadingLevel::H3 => 3,
        HeadingLevel::H4 => 4,
        HeadingLevel::H5 => 5,
        HeadingLevel::H6 => 6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_lists_and_tables_become_blocks() {
        let blocks = parse(
            "# Cells\n\nSome **bold** and *it*.\n\n- one\n  1. inner\n- two\n\n| a | b |\n|---|---|\n| 1 | 2 |\n",
        );
        assert_eq!(blocks[0], Block::heading(1, vec![Span::plain("Cells")]));
        let Block::Paragraph { spans, .. } = &blocks[1] else {
            panic!("{:?}", blocks[1]);
        };
        assert!(spans.iter().any(|s| s.bold && s.text == "bold"));
        assert!(spans.iter().any(|s| s.italic && s.text == "it"));
        let Block::List { ordered, items, .. } = &blocks[2] else {
            panic!("{:?}", blocks[2]);
        };
        assert!(!ordered);
        assert_eq!(items.len(), 2);
        assert!(matches!(&items[0][1], Block::List { ordered: true, .. }));
        let Block::Table { header, rows } = &blocks[3] else {
            panic!("{:?}", blocks[3]);
        };
        assert_eq!(header.len(), 2);
        assert_eq!(
            rows,
            &vec![vec![vec![Span::plain("1")], vec![Span::plain("2")]]]
        );
    }

    #[test]
    fn deep_nesting_is_flattened_not_lost() {
        let markdown = format!("{}deep text", ">".repeat(10_000));
        let blocks = parse(&markdown);
        let mut depth = 0;
        let mut level = &blocks;
        while let [Block::Quote { blocks }] = level.as_slice() {
            depth += 1;
            level = blocks;
        }
        assert!(depth <= MAX_DEPTH, "{depth}");
        let mut text = String::new();
        crate::blocks::for_each_text(&blocks, &mut |t| text.push_str(t));
        assert_eq!(text, "deep text");
    }

    #[test]
    fn html_and_unsafe_links_stay_text() {
        let blocks = parse("<script>alert(1)</script>\n\n[x](javascript:alert(1))");
        let mut text = String::new();
        crate::blocks::for_each_text(&blocks, &mut |t| text.push_str(t));
        assert!(text.contains("<script>alert(1)</script>"), "{text}");
        let Block::Paragraph { spans, .. } = &blocks[1] else {
            panic!("{blocks:?}");
        };
        assert_eq!(spans[0].link, None);
    }
}
