//! Fixture builders for tests (cargo feature `testing`).
//!
//! Shared with the server's integration tests, so every fixture is generated, small in the
//! repository (nothing binary is committed) and deterministic. These functions panic on
//! failure (`expect`): they build known-good inputs, and a failure is a bug in the fixture.
#![allow(clippy::missing_panics_doc)]

use std::io::{Cursor, Write};

use lopdf::content::{Content, Operation};
use lopdf::{
    Document, EncryptionState, EncryptionVersion, Object, Permissions, Stream, StringFormat,
    dictionary,
};

/// A block of a generated Word document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    /// A heading: level 1..=9 uses style `Heading{level}`, level 0 uses `Title`.
    Heading(u8, String),
    /// A paragraph; `\t` becomes a tab and `\n` a line break.
    Paragraph(String),
    /// A table, row by row, one string per cell.
    Table(Vec<Vec<String>>),
}

const FONT_SIZE: i64 = 11;
/// Headings of [`pdf_with_headings`].
const HEADING_FONT_SIZE: i64 = 16;
const LEADING: i64 = 14;
/// Characters per line before the generator wraps (the text must stay on the page for a
/// viewer; the extractor would not care).
const LINE_CHARS: usize = 90;

/// A valid PDF with one page per entry of `pages`, its text set in Helvetica (a standard
/// Type 1 font, so nothing is embedded) with WinAnsi encoding. Blank lines in a page's text
/// become a paragraph gap; characters outside Latin-1 become `?`.
pub fn pdf(pages: &[&str]) -> Vec<u8> {
    save(&mut build_pdf(pages, false))
}

/// Like [`pdf`], but a line starting with `"# "` is set as a heading: the rest of the line
/// in a larger font (as handouts made in a word processor look to the extractor).
pub fn pdf_with_headings(pages: &[&str]) -> Vec<u8> {
    save(&mut build_pdf(pages, true))
}

/// A PDF that needs the user password `"classroom"` to open.
pub fn encrypted_pdf() -> Vec<u8> {
    encrypted_pdf_with("classroom", &["This page is locked."])
}

/// A PDF encrypted with RC4-128 and the given user password. An empty `user_password`
/// gives an owner-restricted file that opens without asking (as publishers' handouts do).
pub fn encrypted_pdf_with(user_password: &str, pages: &[&str]) -> Vec<u8> {
    let mut doc = build_pdf(pages, false);
    let state = EncryptionState::try_from(EncryptionVersion::V2 {
        document: &doc,
        owner_password: "owner-secret",
        user_password,
        key_length: 128,
        permissions: Permissions::PRINTABLE,
    })
    .expect("encryption state");
    doc.encrypt(&state).expect("encrypt");
    save(&mut doc)
}

/// A PDF of `pages` pages of distinct, deterministic prose (about 2 500 characters each),
/// for ingestion benchmarks and time-out tests.
pub fn large_pdf(pages: u32) -> Vec<u8> {
    let texts: Vec<String> = (1..=pages).map(prose_page).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    pdf(&refs)
}

fn save(doc: &mut Document) -> Vec<u8> {
    let mut out = Vec::new();
    doc.save_to(&mut out).expect("write PDF");
    out
}

fn build_pdf(pages: &[&str], headings: bool) -> Document {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font",
        "Subtype" => "Type1",
        "BaseFont" => "Helvetica",
        "Encoding" => "WinAnsiEncoding",
    });
    let resources_id = doc.add_object(dictionary! {
        "Font" => dictionary! { "F1" => font_id },
    });
    let mut kids = Vec::with_capacity(pages.len());
    for text in pages {
        let mut ops = vec![
            Operation::new("BT", vec![]),
            Operation::new("Tf", vec!["F1".into(), FONT_SIZE.into()]),
            Operation::new("TL", vec![LEADING.into()]),
            Operation::new("Td", vec![56.into(), 780.into()]),
        ];
        for line in wrap(text) {
            let heading = line.strip_prefix("# ").filter(|_| headings);
            if let Some(heading) = heading {
                ops.push(Operation::new(
                    "Tf",
                    vec!["F1".into(), HEADING_FONT_SIZE.into()],
                ));
                ops.push(Operation::new(
                    "Tj",
                    vec![Object::String(win_ansi(heading), StringFormat::Literal)],
                ));
                ops.push(Operation::new("Tf", vec!["F1".into(), FONT_SIZE.into()]));
            } else if !line.is_empty() {
                ops.push(Operation::new(
                    "Tj",
                    vec![Object::String(win_ansi(&line), StringFormat::Literal)],
                ));
            }
            ops.push(Operation::new("T*", vec![]));
        }
        ops.push(Operation::new("ET", vec![]));
        let content = Content { operations: ops }
            .encode()
            .expect("encode content");
        let content_id = doc.add_object(Stream::new(dictionary! {}, content));
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page",
            "Parent" => pages_id,
            "Contents" => content_id,
        });
        kids.push(Object::Reference(page_id));
    }
    let count = i64::try_from(kids.len()).expect("page count");
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => kids,
            "Count" => count,
            "Resources" => resources_id,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        }),
    );
    let catalog_id = doc.add_object(dictionary! {
        "Type" => "Catalog",
        "Pages" => pages_id,
    });
    doc.trailer.set("Root", catalog_id);
    // Encryption keys are derived from the file identifier.
    let id = Object::String(b"lectern-fixture-0".to_vec(), StringFormat::Hexadecimal);
    doc.trailer.set("ID", vec![id.clone(), id]);
    doc
}

/// Lines of at most [`LINE_CHARS`], wrapped at spaces; input line breaks are kept.
fn wrap(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for input in text.lines() {
        let mut line = String::new();
        for word in input.split_whitespace() {
            if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > LINE_CHARS {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    lines
}

/// WinAnsi agrees with Latin-1 on printable characters, which is all the fixtures need.
fn win_ansi(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| match u32::from(c) {
            code @ (0x20..=0x7e | 0xa0..=0xff) => u8::try_from(code).unwrap_or(b'?'),
            _ => b'?',
        })
        .collect()
}

/// Deterministic prose for page `n`, different on every page.
fn prose_page(n: u32) -> String {
    const WORDS: &[&str] = &[
        "cell",
        "membrane",
        "energy",
        "protein",
        "students",
        "observe",
        "the",
        "a",
        "of",
        "and",
        "mitochondria",
        "nucleus",
        "experiment",
        "results",
        "chapter",
        "between",
        "process",
        "carbon",
        "light",
        "water",
        "model",
        "theory",
        "evidence",
        "measure",
        "growth",
        "structure",
        "function",
        "diffusion",
        "enzyme",
        "reaction",
        "temperature",
        "sample",
        "microscope",
        "tissue",
        "organism",
        "genetic",
        "inherit",
        "variation",
        "population",
        "ecosystem",
        "compare",
        "describe",
        "explain",
        "record",
        "table",
        "graph",
        "rate",
    ];
    let mut state = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        // xorshift64: cheap, deterministic, good enough to vary the prose.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut text = format!("Page {n}: notes on topic {}.", n * 7 % 101);
    while text.len() < 2500 {
        let words = 8 + (next() % 9) as usize;
        let mut sentence = String::new();
        for i in 0..words {
            let word = WORDS[(next() % WORDS.len() as u64) as usize];
            if i == 0 {
                let mut chars = word.chars();
                if let Some(first) = chars.next() {
                    sentence.extend(first.to_uppercase());
                    sentence.push_str(chars.as_str());
                }
            } else {
                sentence.push(' ');
                sentence.push_str(word);
            }
        }
        sentence.push('.');
        text.push(if next() % 5 == 0 { '\n' } else { ' ' });
        if text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&sentence);
    }
    text
}

const W_NS: &str = "http://schemas.openxmlformats.org/wordprocessingml/2006/main";

/// A minimal but valid `.docx` (Word opens it) made of `blocks`.
pub fn docx(blocks: &[Block]) -> Vec<u8> {
    let mut body = String::new();
    for block in blocks {
        match block {
            Block::Heading(level, text) => {
                let style = if *level == 0 {
                    "Title".to_owned()
                } else {
                    format!("Heading{level}")
                };
                body.push_str(&paragraph_xml(Some(&style), text));
            }
            Block::Paragraph(text) => body.push_str(&paragraph_xml(None, text)),
            Block::Table(rows) => {
                body.push_str("<w:tbl><w:tblPr><w:tblW w:w=\"0\" w:type=\"auto\"/></w:tblPr>");
                for row in rows {
                    body.push_str("<w:tr>");
                    for cell in row {
                        body.push_str("<w:tc>");
                        body.push_str(&paragraph_xml(None, cell));
                        body.push_str("</w:tc>");
                    }
                    body.push_str("</w:tr>");
                }
                body.push_str("</w:tbl>");
            }
        }
    }
    let document = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\
         <w:document xmlns:w=\"{W_NS}\"><w:body>{body}<w:sectPr/></w:body></w:document>"
    );
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, content) in [
        ("[Content_Types].xml", CONTENT_TYPES),
        ("_rels/.rels", RELS),
        ("word/document.xml", document.as_str()),
    ] {
        zip.start_file(name, options).expect("zip entry");
        zip.write_all(content.as_bytes()).expect("zip write");
    }
    zip.finish().expect("zip finish").into_inner()
}

const CONTENT_TYPES: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\
<Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">\
<Default Extension=\"rels\" ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/>\
<Default Extension=\"xml\" ContentType=\"application/xml\"/>\
<Override PartName=\"/word/document.xml\" \
ContentType=\"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml\"/>\
</Types>";

const RELS: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\
<Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">\
<Relationship Id=\"rId1\" \
Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument\" \
Target=\"word/document.xml\"/></Relationships>";

fn paragraph_xml(style: Option<&str>, text: &str) -> String {
    let mut xml = String::from("<w:p>");
    if let Some(style) = style {
        xml.push_str(&format!("<w:pPr><w:pStyle w:val=\"{style}\"/></w:pPr>"));
    }
    xml.push_str("<w:r>");
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            xml.push_str("<w:br/>");
        }
        for (j, part) in line.split('\t').enumerate() {
            if j > 0 {
                xml.push_str("<w:tab/>");
            }
            if !part.is_empty() {
                xml.push_str(&format!(
                    "<w:t xml:space=\"preserve\">{}</w:t>",
                    escape_xml(part)
                ));
            }
        }
    }
    xml.push_str("</w:r></w:p>");
    xml
}

fn escape_xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Bytes `word/document.xml` of [`docx_zip_bomb`] inflates to: 1 GiB.
pub const ZIP_BOMB_INFLATED: u64 = 1 << 30;

/// A `.docx` of about 1 MiB whose `word/document.xml` inflates to
/// [`ZIP_BOMB_INFLATED`] bytes of well-formed paragraphs. Its zip headers state the true size.
pub fn docx_zip_bomb() -> Vec<u8> {
    zip_bomb(None)
}

/// Like [`docx_zip_bomb`], but its zip headers claim `word/document.xml` is only
/// `declared` bytes: only counting what is actually inflated catches it.
pub fn docx_zip_bomb_understated(declared: u32) -> Vec<u8> {
    zip_bomb(Some(declared))
}

/// Writes the zip by hand: the deflate stream is one compressed 1 MiB block repeated, so
/// generating 1 GiB of content takes milliseconds and about 2 MiB of memory.
///
/// A deflate stream is a sequence of blocks; each segment below comes from a fresh
/// compressor (its back-references stay inside it) and ends with a sync flush (non-final,
/// byte-aligned), so segments concatenate into one valid stream, which the last segment
/// closes with a final block. The CRC of the whole is combined from the segments' CRCs.
fn zip_bomb(declared: Option<u32>) -> Vec<u8> {
    let head = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><w:document xmlns:w=\"{W_NS}\"><w:body>"
    );
    let tail = "<w:sectPr/></w:body></w:document>";
    let unit = "<w:p><w:r><w:t>All work and no play makes Jack a dull boy.</w:t></w:r></w:p>";
    let block = unit.repeat((1 << 20) / unit.len());
    let repeats = ZIP_BOMB_INFLATED.div_ceil(block.len() as u64);

    let head_z = deflate_segment(head.as_bytes(), false);
    let block_z = deflate_segment(block.as_bytes(), false);
    let tail_z = deflate_segment(tail.as_bytes(), true);

    let crc_of = |bytes: &[u8]| {
        let mut h = crc32fast::Hasher::new();
        h.update(bytes);
        h
    };
    let mut crc = crc_of(head.as_bytes());
    let block_crc = crc_of(block.as_bytes());
    for _ in 0..repeats {
        crc.combine(&block_crc);
    }
    crc.combine(&crc_of(tail.as_bytes()));
    let crc = crc.finalize();

    let inflated = head.len() as u64 + repeats * block.len() as u64 + tail.len() as u64;
    let inflated = u32::try_from(inflated).expect("bomb fits a non-zip64 entry");
    let declared = declared.unwrap_or(inflated);
    let compressed = head_z.len() as u64 + repeats * block_z.len() as u64 + tail_z.len() as u64;
    let compressed = u32::try_from(compressed).expect("compressed size");

    let name = b"word/document.xml";
    let mut out = Vec::with_capacity(compressed as usize + 256);
    // Local file header.
    out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    out.extend_from_slice(&20u16.to_le_bytes()); // version needed
    out.extend_from_slice(&0u16.to_le_bytes()); // flags
    out.extend_from_slice(&8u16.to_le_bytes()); // deflate
    out.extend_from_slice(&0u16.to_le_bytes()); // time
    out.extend_from_slice(&0x21u16.to_le_bytes()); // date: 1980-01-01
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&compressed.to_le_bytes());
    out.extend_from_slice(&declared.to_le_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // extra length
    out.extend_from_slice(name);
    out.extend_from_slice(&head_z);
    for _ in 0..repeats {
        out.extend_from_slice(&block_z);
    }
    out.extend_from_slice(&tail_z);
    // Central directory.
    let cd_start = u32::try_from(out.len()).expect("offset");
    out.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    out.extend_from_slice(&20u16.to_le_bytes()); // version made by
    out.extend_from_slice(&20u16.to_le_bytes()); // version needed
    out.extend_from_slice(&0u16.to_le_bytes()); // flags
    out.extend_from_slice(&8u16.to_le_bytes()); // deflate
    out.extend_from_slice(&0u16.to_le_bytes()); // time
    out.extend_from_slice(&0x21u16.to_le_bytes()); // date
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&compressed.to_le_bytes());
    out.extend_from_slice(&declared.to_le_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&[0; 2 + 2 + 2 + 2 + 4]); // extra, comment, disk, internal, external
    out.extend_from_slice(&0u32.to_le_bytes()); // local header offset
    out.extend_from_slice(name);
    let cd_len = u32::try_from(out.len()).expect("offset") - cd_start;
    // End of central directory.
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // disk numbers
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&cd_len.to_le_bytes());
    out.extend_from_slice(&cd_start.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// Raw deflate of `data` by a fresh compressor: sync-flushed (ends byte-aligned, not final)
/// or finished (ends with the final block).
fn deflate_segment(data: &[u8], last: bool) -> Vec<u8> {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).expect("deflate");
    if last {
        encoder.finish().expect("deflate finish")
    } else {
        encoder.flush().expect("deflate flush");
        let bytes = encoder.get_ref().clone();
        // Dropping would finish the stream into the discarded buffer; harmless.
        bytes
    }
}

// ---------------------------------------------------------------------------------------
// Hostile PDFs. Each one once took the whole server down or ate its memory: a form
// XObject that draws itself (unbounded recursion in the text extractor: a stack overflow
// aborts the process), two forms drawing each other, a page tree whose `/Parent` chain is a
// cycle (the extractor climbs it forever looking for an inherited key), a 1 MiB content
// stream that inflates to 1 GiB, and a page made of many streams that inflate to 2 GiB.

/// Bytes the content stream of [`pdf_flate_bomb`] inflates to: 1 GiB.
pub const FLATE_BOMB_INFLATED: u64 = 1 << 30;

/// A one-page PDF whose page draws the form XObject `/X0`, which draws itself.
pub fn pdf_self_drawing_xobject() -> Vec<u8> {
    xobject_loop_pdf(1)
}

/// A one-page PDF whose page draws `/X0`, which draws `/X1`, which draws `/X0` again.
pub fn pdf_xobjects_drawing_each_other() -> Vec<u8> {
    xobject_loop_pdf(2)
}

/// `forms` form XObjects in a ring: `/X{i}` draws `/X{(i + 1) % forms}`.
fn xobject_loop_pdf(forms: usize) -> Vec<u8> {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = helvetica(&mut doc);
    let ids: Vec<_> = (0..forms).map(|_| doc.new_object_id()).collect();
    let xobjects = || {
        let mut names = lopdf::Dictionary::new();
        for (i, id) in ids.iter().enumerate() {
            names.set(format!("X{i}"), Object::Reference(*id));
        }
        names
    };
    for (i, id) in ids.iter().enumerate() {
        let next = (i + 1) % forms;
        let content = format!("BT /F1 11 Tf 56 700 Td (form {i}) Tj ET /X{next} Do");
        let form = Stream::new(
            dictionary! {
                "Type" => "XObject",
                "Subtype" => "Form",
                "BBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
                "Resources" => dictionary! {
                    "Font" => dictionary! { "F1" => font_id },
                    "XObject" => xobjects(),
                },
            },
            content.into_bytes(),
        );
        doc.objects.insert(*id, Object::Stream(form));
    }
    let content_id = doc.add_object(Stream::new(dictionary! {}, b"/X0 Do".to_vec()));
    let page_id = doc.add_object(dictionary! {
        "Type" => "Page",
        "Parent" => pages_id,
        "Contents" => content_id,
        "Resources" => dictionary! {
            "Font" => dictionary! { "F1" => font_id },
            "XObject" => xobjects(),
        },
    });
    finish_one_page(&mut doc, pages_id, page_id, true);
    save(&mut doc)
}

/// A one-page PDF (670 bytes or so) whose page tree node is its own `/Parent`, and whose
/// page inherits its resources and media box (so a reader climbs the cycle to find them).
pub fn pdf_parent_cycle() -> Vec<u8> {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let content = b"BT /F1 11 Tf 56 700 Td (lost) Tj ET".to_vec();
    let content_id = doc.add_object(Stream::new(dictionary! {}, content));
    let page_id = doc.add_object(dictionary! {
        "Type" => "Page",
        "Parent" => pages_id,
        "Contents" => content_id,
    });
    finish_one_page(&mut doc, pages_id, page_id, false);
    if let Ok(Object::Dictionary(pages)) = doc.get_object_mut(pages_id) {
        pages.set("Parent", pages_id);
    }
    save(&mut doc)
}

/// A PDF of about 1 MiB whose one page's content stream inflates to
/// [`FLATE_BOMB_INFLATED`] bytes of spaces.
pub fn pdf_flate_bomb() -> Vec<u8> {
    let repeats = usize::try_from(FLATE_BOMB_INFLATED >> 20).expect("repeats");
    let stream = zlib_repeated(&[b' '; 1 << 20], repeats);
    flate_streams_pdf(&[stream])
}

/// A PDF of about 2 MiB whose one page is drawn by 64 content streams that inflate to
/// 32 MiB each (2 GiB for the page).
pub fn pdf_many_flate_streams() -> Vec<u8> {
    let stream = zlib_repeated(&[b' '; 1 << 20], 32);
    let streams = vec![stream; 64];
    flate_streams_pdf(&streams)
}

/// One page whose contents are `streams` (already zlib-compressed), with a visible line of
/// text first so the page is not empty.
fn flate_streams_pdf(streams: &[Vec<u8>]) -> Vec<u8> {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = helvetica(&mut doc);
    let mut contents = vec![Object::Reference(doc.add_object(Stream::new(
        dictionary! {},
        b"BT /F1 11 Tf 56 700 Td (inflated) Tj ET\n".to_vec(),
    )))];
    for stream in streams {
        let id = doc.add_object(
            Stream::new(dictionary! { "Filter" => "FlateDecode" }, stream.clone())
                .with_compression(false),
        );
        contents.push(Object::Reference(id));
    }
    let page_id = doc.add_object(dictionary! {
        "Type" => "Page",
        "Parent" => pages_id,
        "Contents" => contents,
        "Resources" => dictionary! { "Font" => dictionary! { "F1" => font_id } },
    });
    finish_one_page(&mut doc, pages_id, page_id, true);
    save(&mut doc)
}

fn helvetica(doc: &mut Document) -> lopdf::ObjectId {
    doc.add_object(dictionary! {
        "Type" => "Font",
        "Subtype" => "Type1",
        "BaseFont" => "Helvetica",
        "Encoding" => "WinAnsiEncoding",
    })
}

/// The page tree root (with a media box when `media_box`), the catalog and the trailer.
fn finish_one_page(
    doc: &mut Document,
    pages_id: lopdf::ObjectId,
    page_id: lopdf::ObjectId,
    media_box: bool,
) {
    let mut pages = dictionary! {
        "Type" => "Pages",
        "Kids" => vec![Object::Reference(page_id)],
        "Count" => 1,
    };
    if media_box {
        pages.set("MediaBox", vec![0.into(), 0.into(), 595.into(), 842.into()]);
    }
    doc.objects.insert(pages_id, Object::Dictionary(pages));
    let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog_id);
}

/// A zlib stream of `block` repeated `repeats` times, built like the zip bomb: one
/// compressed segment repeated, so a gigabyte of content costs milliseconds to generate.
/// The Adler-32 trailer is combined from the segments' checksums.
fn zlib_repeated(block: &[u8], repeats: usize) -> Vec<u8> {
    let segment = deflate_segment(block, false);
    let last = deflate_segment(b"", true);
    let block_adler = adler32(block);
    let mut adler = 1u32;
    for _ in 0..repeats {
        adler = adler32_combine(adler, block_adler, block.len() as u64);
    }
    let mut out = Vec::with_capacity(2 + segment.len() * repeats + last.len() + 4);
    out.extend_from_slice(&[0x78, 0x9c]);
    for _ in 0..repeats {
        out.extend_from_slice(&segment);
    }
    out.extend_from_slice(&last);
    out.extend_from_slice(&adler.to_be_bytes());
    out
}

const ADLER_BASE: u32 = 65_521;

fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in bytes {
        a = (a + u32::from(byte)) % ADLER_BASE;
        b = (b + a) % ADLER_BASE;
    }
    (b << 16) | a
}

/// The Adler-32 of `first ++ second` from the checksums of each (zlib's `adler32_combine`).
fn adler32_combine(first: u32, second: u32, second_len: u64) -> u32 {
    let base = u64::from(ADLER_BASE);
    let rem = second_len % base;
    let (a1, b1) = (u64::from(first & 0xffff), u64::from(first >> 16));
    let (a2, b2) = (u64::from(second & 0xffff), u64::from(second >> 16));
    let a = (a1 + a2 + base - 1) % base;
    let b = (rem * a1 % base + b1 + b2 + base - rem) % base;
    u32::try_from((b << 16) | a).expect("fits")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_adler32_matches_the_whole() {
        let (a, b) = (b"Wikipedia".as_slice(), b" is an encyclopedia".as_slice());
        let whole = [a, b].concat();
        assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398);
        assert_eq!(
            adler32_combine(adler32(a), adler32(b), b.len() as u64),
            adler32(&whole)
        );
    }
}
