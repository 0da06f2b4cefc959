//! Blocks as PDF, laid out by typst: shaping (Arabic joining, Devanagari conjuncts), bidi
//! and line breaking (CJK included) come from a real typesetter.
//!
//! **Architecture Invariant:** no typst markup is ever built from document text. The
//! blocks are serialized as JSON into the virtual file `/data.json`, and the fixed
//! template `template.typ` (compiled into the crate) reads it with `json(...)`; strings
//! from it are shown as text. The world has no other files and no packages, so a template
//! can reach nothing else.

use std::sync::LazyLock;

use serde::Serialize;
use typst::diag::{FileError, FileResult};
use typst::foundations::{Bytes, Datetime, Duration};
use typst::syntax::{FileId, RootedPath, Source, VirtualPath, VirtualRoot};
use typst::text::{Font, FontBook};
use typst::utils::LazyHash;
use typst::{Library, LibraryExt, World};

use crate::ExportError;
use crate::blocks::{Block, Span, for_each_text};
use crate::fonts::{Fonts, fonts};

const TEMPLATE: &str = include_str!("template.typ");

/// The standard library, built once (it is the same for every export).
static LIBRARY: LazyLock<LazyHash<Library>> = LazyLock::new(|| LazyHash::new(Library::default()));

/// What the template reads.
#[derive(Debug, Serialize)]
struct Data<'a> {
    title: String,
    fonts: &'a [String],
    blocks: &'a [Block],
    /// Characters no font has, as `U+XXXX` (the characters themselves would not show).
    missing: Vec<String>,
}

/// `blocks` as a PDF, and the characters no font has.
pub(crate) fn render(blocks: &[Block]) -> Result<(Vec<u8>, Vec<char>), ExportError> {
    let fonts = fonts();
    let mut chars = Vec::new();
    for_each_text(blocks, &mut |text| chars.extend(text.chars()));
    let missing = fonts.missing(chars.into_iter());
    let data = Data {
        title: title(blocks),
        fonts: &fonts.families,
        blocks,
        missing: missing
            .iter()
            .map(|c| format!("U+{:04X}", u32::from(*c)))
            .collect(),
    };
    let world = ExportWorld::new(fonts, serde_json::to_vec(&data)?)?;
    let document = typst::compile(&world).output.map_err(|errors| {
        let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
        ExportError::Pdf(messages.join("; "))
    })?;
    // typst memoizes across compilations, process-wide; every export's data differs, so
    // without eviction the cache would only grow. Entries the last compilation used stay.
    typst::comemo::evict(1);
    let bytes = typst_pdf::pdf(&document, &typst_pdf::PdfOptions::default()).map_err(|errors| {
        let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
        ExportError::Pdf(messages.join("; "))
    })?;
    Ok((bytes, missing))
}

/// The first heading's text, the PDF's title.
fn title(blocks: &[Block]) -> String {
    blocks
        .iter()
        .find_map(|block| match block {
            Block::Heading { spans, .. } => {
                Some(spans.iter().map(|s: &Span| s.text.as_str()).collect())
            }
            _ => None,
        })
        .unwrap_or_default()
}

/// A world of two files: the template (main) and the data.
struct ExportWorld {
    fonts: &'static Fonts,
    main: FileId,
    data_id: FileId,
    source: Source,
    data: Bytes,
}

impl ExportWorld {
    fn new(fonts: &'static Fonts, data: Vec<u8>) -> Result<Self, ExportError> {
        let id = |path: &str| {
            let path = VirtualPath::new(path).map_err(|e| ExportError::Pdf(e.to_string()))?;
            Ok::<_, ExportError>(FileId::new(RootedPath::new(VirtualRoot::Project, path)))
        };
        let main = id("/main.typ")?;
        Ok(Self {
            fonts,
            main,
            data_id: id("/data.json")?,
            source: Source::new(main, TEMPLATE.to_owned()),
            data: Bytes::new(data),
        })
    }
}

impl World for ExportWorld {
    fn library(&self) -> &LazyHash<Library> {
        &LIBRARY
    }

    fn book(&self) -> &LazyHash<FontBook> {
        self.fonts.store.book()
    }

    fn main(&self) -> FileId {
        self.main
    }

    fn source(&self, id: FileId) -> FileResult<Source> {
        if id == self.main {
            Ok(self.source.clone())
        } else {
            Err(FileError::AccessDenied)
        }
    }

    fn file(&self, id: FileId) -> FileResult<Bytes> {
        if id == self.data_id {
            Ok(self.data.clone())
        } else if id == self.main {
            Ok(Bytes::from_string(self.source.clone()))
        } else {
            Err(FileError::AccessDenied)
        }
    }

    fn font(&self, index: usize) -> Option<Font> {
        self.fonts.font(index)
    }

    fn today(&self, _offset: Option<Duration>) -> Option<Datetime> {
        None
    }
}
