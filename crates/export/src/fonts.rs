//! The fonts PDFs are set in: typst's embedded fonts (Libertinus Serif, New Computer
//! Modern, DejaVu Sans Mono) and every font the system has (Debian's `fonts-noto-core`
//! and `fonts-noto-cjk` cover Arabic, Devanagari, CJK and most other scripts;
//! `fonts-dejavu-core` Greek and Cyrillic). Built once per process on first use: scanning
//! the system's fonts reads every font file's tables.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use typst::text::{Coverage, Font, FontBook};
use typst::utils::LazyHash;
use typst_kit::fonts::FontStore;

/// The font store and what each font covers.
pub(crate) struct Fonts {
    /// The fonts, loaded lazily, in book order.
    pub store: FontStore,
    /// Each font's character coverage, for the missing-glyph check.
    coverage: Vec<Coverage>,
    /// The families the template asks for, in order: a text face, the script faces, the
    /// other text faces (those the store has).
    pub families: Vec<String>,
}

impl std::fmt::Debug for Fonts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fonts")
            .field("fonts", &self.coverage.len())
            .field("families", &self.families)
            .finish()
    }
}

/// Faces for Latin text, best first: the first the system has sets the text.
const TEXT_FACES: &[&str] = &["Noto Sans", "DejaVu Sans", "Libertinus Serif"];

/// A face per script, tried after the text face and before the other text faces, so typst
/// picks one made for the script before its general fallback (any font covering the
/// character).
const SCRIPT_FACES: &[&str] = &[
    "Noto Sans Arabic",
    "Noto Naskh Arabic",
    "Noto Sans Hebrew",
    "Noto Sans Devanagari",
    "Noto Sans Bengali",
    "Noto Sans Tamil",
    "Noto Sans Thai",
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Noto Sans CJK KR",
    "Noto Sans Symbols",
    "Noto Sans Symbols 2",
    "Noto Sans Math",
];

static FONTS: LazyLock<Fonts> = LazyLock::new(load);

/// The process's font set.
pub(crate) fn fonts() -> &'static Fonts {
    &FONTS
}

fn load() -> Fonts {
    let mut store = FontStore::new();
    let mut coverage = Vec::new();
    let embedded: Vec<(Font, typst::text::FontInfo)> = typst_kit::fonts::embedded().collect();
    for (font, info) in embedded {
        coverage.push(info.coverage.clone());
        store.push((font, info));
    }
    for (path, info) in typst_kit::fonts::system() {
        coverage.push(info.coverage.clone());
        store.push((path, info));
    }
    let book: &LazyHash<FontBook> = store.book();
    let has = |family: &&&str| book.contains_family(&family.to_lowercase());
    let text = TEXT_FACES.iter().find(has);
    let families = text
        .into_iter()
        .chain(SCRIPT_FACES.iter().filter(has))
        .chain(
            TEXT_FACES
                .iter()
                .filter(has)
                .filter(|family| Some(*family) != text),
        )
        .map(|family| (*family).to_owned())
        .collect();
    let fonts = Fonts {
        store,
        coverage,
        families,
    };
    tracing::info!(fonts = fonts.coverage.len(), families = ?fonts.families, "export fonts loaded");
    fonts
}

impl Fonts {
    /// The characters of `text` that no font covers, sorted, each once. Whitespace and
    /// characters that have no glyph of their own (joiners, direction marks, variation
    /// selectors) are not looked up.
    pub(crate) fn missing(&self, chars: impl Iterator<Item = char>) -> Vec<char> {
        let distinct: BTreeSet<char> = chars.filter(|c| !invisible(*c)).collect();
        distinct
            .into_iter()
            .filter(|c| !self.coverage.iter().any(|cov| cov.contains(u32::from(*c))))
            .collect()
    }

    /// Font `index` of the book.
    pub(crate) fn font(&self, index: usize) -> Option<Font> {
        self.store.font(index)
    }
}

fn invisible(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(c,
            '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{E0100}'..='\u{E01EF}')
}
