//! Blocks as DOCX (`docx-rs`): Word's own heading styles (`Heading1`...), so the
//! navigation pane and a table of contents work; real numbering definitions for lists
//! (each list numbered from its own start, nested levels indented); tables with a bold
//! header row; right-to-left paragraphs marked `bidi`.

use std::io::Cursor;

use docx_rs::{
    AbstractNumbering, BreakType, Docx, Hyperlink, HyperlinkType, IndentLevel, Level, LevelJc,
    LevelText, NumberFormat, Numbering, NumberingId, Paragraph, Run, RunFonts, SpecialIndentType,
    Start, Style, StyleType, Table, TableCell, TableRow, WidthType,
};

use crate::ExportError;
use crate::blocks::{Block, MAX_DEPTH, Span};

/// Twentieths of a point per list level.
const INDENT: i32 = 720;
const MONOSPACE: &str = "Courier New";
/// The text width of a default page (Letter or A4 with Word's margins), in twentieths of
/// a point.
const TEXT_WIDTH: usize = 9_000;

/// `blocks` as a DOCX file.
pub(crate) fn render(blocks: &[Block]) -> Result<Vec<u8>, ExportError> {
    let mut writer = Writer::default();
    for block in blocks {
        writer.block(block, &Place::default());
    }
    let mut docx = styles(Docx::new());
    for numbering in writer.numberings {
        let (abstract_numbering, numbering) = numbering;
        docx = docx
            .add_abstract_numbering(abstract_numbering)
            .add_numbering(numbering);
    }
    for child in writer.children {
        docx = match child {
            Child::Paragraph(paragraph) => docx.add_paragraph(*paragraph),
            Child::Table(table) => docx.add_table(*table),
        };
    }
    let mut bytes = Cursor::new(Vec::new());
    docx.pack(&mut bytes)
        .map_err(|error| ExportError::Docx(error.to_string()))?;
    Ok(bytes.into_inner())
}

fn styles(docx: Docx) -> Docx {
    let sizes = [40, 32, 28, 24, 22, 22];
    let mut docx = docx.add_style(
        Style::new("Title", StyleType::Paragraph)
            .name("Title")
            .size(56)
            .bold(),
    );
    for (i, size) in sizes.into_iter().enumerate() {
        let level = i + 1;
        let mut style = Style::new(format!("Heading{level}"), StyleType::Paragraph)
            .name(format!("heading {level}"))
            .size(size)
            .bold()
            .outline_lvl(i);
        if level == 6 {
            style = style.italic();
        }
        docx = docx.add_style(style);
    }
    docx.add_style(
        Style::new("Quote", StyleType::Paragraph)
            .name("Quote")
            .italic()
            .indent(Some(INDENT), None, None, None),
    )
}

#[derive(Debug)]
enum Child {
    Paragraph(Box<Paragraph>),
    Table(Box<Table>),
}

/// Where a block sits: in which list at which level, how deep in quotes.
#[derive(Debug, Clone, Default)]
struct Place {
    /// The numbering id of the enclosing list and the item's level (0 = outermost).
    list: Option<(usize, usize)>,
    /// Whether this block is the first of its list item (it carries the number).
    first_in_item: bool,
    quotes: usize,
}

#[derive(Debug, Default)]
struct Writer {
    children: Vec<Child>,
    numberings: Vec<(AbstractNumbering, Numbering)>,
    first_heading: bool,
}

impl Writer {
    fn block(&mut self, block: &Block, place: &Place) {
        match block {
            Block::Heading { level, spans, rtl } => {
                let style = if !self.first_heading && place.list.is_none() && place.quotes == 0 {
                    self.first_heading = true;
                    "Title".to_owned()
                } else {
                    format!("Heading{level}")
                };
                let paragraph = paragraph(spans, *rtl).style(&style);
                self.paragraph(paragraph, place);
            }
            Block::Paragraph { spans, rtl } => {
                self.paragraph(paragraph(spans, *rtl), place);
            }
            Block::List {
                ordered,
                start,
                items,
            } => {
                let (id, level) = match place.list {
                    Some((id, level)) => (id, (level + 1).min(MAX_DEPTH)),
                    None => (self.numbering(block, *ordered, *start), 0),
                };
                for item in items {
                    for (i, inner) in item.iter().enumerate() {
                        let inner_place = Place {
                            list: Some((id, level)),
                            first_in_item: i == 0,
                            quotes: place.quotes,
                        };
                        self.block(inner, &inner_place);
                    }
                    if item.is_empty() {
                        let inner_place = Place {
                            list: Some((id, level)),
                            first_in_item: true,
                            quotes: place.quotes,
                        };
                        self.paragraph(Paragraph::new(), &inner_place);
                    }
                }
            }
            Block::Table { header, rows } => {
                let columns = rows
                    .iter()
                    .map(Vec::len)
                    .chain(std::iter::once(header.len()))
                    .max()
                    .unwrap_or(0)
                    .max(1);
                let row = |cells: &[Vec<Span>], bold: bool| {
                    TableRow::new(
                        (0..columns)
                            .map(|i| {
                                let spans = cells.get(i).cloned().unwrap_or_default();
                                let spans: Vec<Span> = spans
                                    .into_iter()
                                    .map(|span| Span {
                                        bold: span.bold || bold,
                                        ..span
                                    })
                                    .collect();
                                TableCell::new().add_paragraph(paragraph(&spans, false))
                            })
                            .collect(),
                    )
                };
                let mut table_rows = Vec::with_capacity(rows.len() + 1);
                if !header.is_empty() {
                    table_rows.push(row(header, true));
                }
                table_rows.extend(rows.iter().map(|cells| row(cells, false)));
                // Word expects a column grid: equal columns across the text width.
                let grid = vec![TEXT_WIDTH / columns; columns];
                let table = Table::new(table_rows)
                    .set_grid(grid)
                    .width(TEXT_WIDTH, WidthType::Dxa);
                self.children.push(Child::Table(Box::new(table)));
            }
            Block::Code { text } => {
                let mut run = Run::new()
                    .fonts(RunFonts::new().ascii(MONOSPACE).hi_ansi(MONOSPACE))
                    .size(20);
                for (i, line) in text.split('\n').enumerate() {
                    if i > 0 {
                        run = run.add_break(BreakType::TextWrapping);
                    }
                    run = run.add_text(line);
                }
                self.paragraph(Paragraph::new().add_run(run), place);
            }
            Block::Quote { blocks } => {
                let inner = Place {
                    quotes: place.quotes + 1,
                    ..place.clone()
                };
                for (i, inner_block) in blocks.iter().enumerate() {
                    let inner = Place {
                        first_in_item: place.first_in_item && i == 0,
                        ..inner.clone()
                    };
                    self.block(inner_block, &inner);
                }
            }
            Block::Rule => {
                let rule = Paragraph::new()
                    .align(docx_rs::AlignmentType::Center)
                    .add_run(Run::new().add_text("* * *"));
                self.paragraph(rule, place);
            }
        }
    }

    /// Adds `paragraph` where `place` says: numbered as a list item's first paragraph,
    /// indented as its later ones, in the quote style inside quotes.
    fn paragraph(&mut self, mut paragraph: Paragraph, place: &Place) {
        let quote_indent = i32::try_from(place.quotes).unwrap_or(0) * INDENT;
        match place.list {
            Some((id, level)) if place.first_in_item => {
                paragraph = paragraph.numbering(NumberingId::new(id), IndentLevel::new(level));
            }
            Some((_, level)) => {
                let left = INDENT * (i32::try_from(level).unwrap_or(0) + 1) + quote_indent;
                paragraph = paragraph.indent(Some(left), None, None, None);
            }
            None if place.quotes > 0 => {
                paragraph = paragraph
                    .style("Quote")
                    .indent(Some(quote_indent), None, None, None);
            }
            None => {}
        }
        self.children.push(Child::Paragraph(Box::new(paragraph)));
    }

    /// A numbering definition for the list `block` (outermost): each level numbered or
    /// bulleted as the first list found at that depth, level 0 from the list's start.
    fn numbering(&mut self, block: &Block, ordered: bool, start: u64) -> usize {
        let id = self.numberings.len() + 1;
        let mut kinds = [None; MAX_DEPTH + 1];
        list_kinds(block, 0, &mut kinds);
        let mut abstract_numbering = AbstractNumbering::new(id);
        for (level, kind) in kinds.iter().enumerate() {
            let numbered = kind.unwrap_or(ordered);
            let first = if level == 0 {
                usize::try_from(start).unwrap_or(1)
            } else {
                1
            };
            let (format, text) = if numbered {
                ("decimal", format!("%{}.", level + 1))
            } else {
                ("bullet", ["•", "◦", "▪"][level % 3].to_owned())
            };
            let left = INDENT * (i32::try_from(level).unwrap_or(0) + 1);
            abstract_numbering = abstract_numbering.add_level(
                Level::new(
                    level,
                    Start::new(first),
                    NumberFormat::new(format),
                    LevelText::new(text),
                    LevelJc::new("left"),
                )
                .indent(
                    Some(left),
                    Some(SpecialIndentType::Hanging(360)),
                    None,
                    None,
                ),
            );
        }
        self.numberings
            .push((abstract_numbering, Numbering::new(id, id)));
        id
    }
}

/// Whether the lists at each depth under `block` are numbered (the first one found).
fn list_kinds(block: &Block, depth: usize, kinds: &mut [Option<bool>; MAX_DEPTH + 1]) {
    if let Block::List { ordered, items, .. } = block {
        let Some(slot) = kinds.get_mut(depth) else {
            return;
        };
        slot.get_or_insert(*ordered);
        for inner in items.iter().flatten() {
            list_kinds(inner, depth + 1, kinds);
        }
    } else if let Block::Quote { blocks } = block {
        for inner in blocks {
            list_kinds(inner, depth, kinds);
        }
    }
}

/// A paragraph of `spans`: one run per span (line breaks inside), links as hyperlinks.
fn paragraph(spans: &[Span], rtl: bool) -> Paragraph {
    let mut paragraph = Paragraph::new();
    if rtl {
        paragraph.property = paragraph.property.bidi(true);
    }
    for span in spans {
        let mut run = Run::new();
        if span.bold {
            run = run.bold();
        }
        if span.italic {
            run = run.italic();
        }
        if span.strike {
            run = run.strike();
        }
        if span.code {
            run = run.fonts(RunFonts::new().ascii(MONOSPACE).hi_ansi(MONOSPACE));
        }
        for (i, line) in span.text.split('\n').enumerate() {
            if i > 0 {
                run = run.add_break(BreakType::TextWrapping);
            }
            if !line.is_empty() {
                run = run.add_text(line);
            }
        }
        paragraph = match &span.link {
            Some(link) => paragraph.add_hyperlink(
                Hyperlink::new(link, HyperlinkType::External).add_run(run.style("Hyperlink")),
            ),
            None => paragraph.add_run(run),
        };
    }
    paragraph
}
