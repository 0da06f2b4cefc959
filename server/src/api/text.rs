//! What text the API accepts from clients, decided in one place.
//!
//! Three rules, from loose to strict:
//! - **Any text** (every string in a JSON body, every path): no control characters other
//!   than tab, line feed and carriage return. PostgreSQL cannot store NUL in a text
//!   column (SQLite can), so a NUL that reached a query was a 500 on one backend and
//!   stored data on the other; no client has a use for the other controls either.
//!   Enforced by [`crate::api::extract::ApiJson`] and [`crate::api::extract::checked_path`]
//!   for every endpoint, so no handler checks it.
//! - **Names** others see (display names, classroom names, emails, languages): also no
//!   line breaks, no bidirectional controls (U+202A–U+202E, U+2066–U+2069, U+200E/U+200F,
//!   U+061C) and no other invisible formatting characters, which let one name pose as
//!   another or display in a different order than it reads. Refused with 400
//!   ([`visible_text`], used by the DTOs through `#[serde(deserialize_with)]`).
//! - **File names** of uploads: the same characters are removed rather than refused
//!   ([`clean_file_name`]), so `invoice\u{202E}txt.exe` is kept as `invoicetxt.exe` and
//!   no longer displays as if it ended in `.txt`.
//!
//! Joiners (U+200C, U+200D) and emoji tag characters stay allowed in names: emoji
//! sequences and several scripts need them, and they do not reorder text.

use serde::{Deserialize, Deserializer};

/// Whether `c` is refused in any text: a control character other than tab, LF and CR.
pub(crate) fn is_forbidden(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r')
}

/// Whether `c` is refused in names: any control character (line breaks included), a line
/// or paragraph separator, or an invisible formatting character (Unicode category `Cf`)
/// other than the joiners and emoji tags.
pub(crate) fn is_invisible(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') || is_format(c)
}

/// Unicode general category `Cf` (as of Unicode 15.1; std has no table for it), minus
/// ZWNJ/ZWJ and the emoji tag characters, which names legitimately contain. Inclusive
/// ranges; also the source of [`name_pattern`], so the rule and the schema agree.
const FORMAT: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),
    ('\u{0600}', '\u{0605}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{06DD}', '\u{06DD}'),
    ('\u{070F}', '\u{070F}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08E2}', '\u{08E2}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200B}'),
    ('\u{200E}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0001}', '\u{E0001}'),
];

fn is_format(c: char) -> bool {
    FORMAT.iter().any(|&(low, high)| (low..=high).contains(&c))
}

/// What Rust's `str::trim` removes (Unicode `White_Space`), as pattern ranges.
const WHITESPACE: &[(char, char)] = &[
    ('\u{0009}', '\u{000D}'),
    ('\u{0020}', '\u{0020}'),
    ('\u{0085}', '\u{0085}'),
    ('\u{00A0}', '\u{00A0}'),
    ('\u{1680}', '\u{1680}'),
    ('\u{2000}', '\u{200A}'),
    ('\u{2028}', '\u{2029}'),
    ('\u{202F}', '\u{202F}'),
    ('\u{205F}', '\u{205F}'),
    ('\u{3000}', '\u{3000}'),
];

/// Control characters refused in any text (all but tab, LF, CR).
const FORBIDDEN: &[(char, char)] = &[
    ('\u{0000}', '\u{0008}'),
    ('\u{000B}', '\u{000C}'),
    ('\u{000E}', '\u{001F}'),
    ('\u{007F}', '\u{009F}'),
];

/// Every control character, and line and paragraph separators.
const CONTROLS: &[(char, char)] = &[
    ('\u{0000}', '\u{001F}'),
    ('\u{007F}', '\u{009F}'),
    ('\u{2028}', '\u{2029}'),
];

/// The ranges as the inside of a regex character class that ECMA-262 (with the `u`
/// flag) and Python's `re` read alike: `\uXXXX` escapes in the BMP, the characters
/// themselves beyond it.
fn class(sets: &[&[(char, char)]]) -> String {
    fn escape(c: char) -> String {
        if u32::from(c) <= 0xFFFF {
            format!("\\u{:04X}", u32::from(c))
        } else {
            c.to_string()
        }
    }
    let mut class = String::new();
    for &(low, high) in sets.iter().copied().flatten() {
        class.push_str(&escape(low));
        if high != low {
            class.push('-');
            class.push_str(&escape(high));
        }
    }
    class
}

/// JSON Schema `pattern` of any text: no control characters but tab, LF and CR.
/// `non_blank` also requires a character that is not whitespace (the server trims).
pub(crate) fn text_pattern(non_blank: bool) -> String {
    let forbidden = class(&[FORBIDDEN]);
    if non_blank {
        let whitespace = class(&[WHITESPACE]);
        format!("^[^{forbidden}]*[^{forbidden}{whitespace}][^{forbidden}]*$")
    } else {
        format!("^[^{forbidden}]*$")
    }
}

/// JSON Schema `pattern` of a path parameter: no control characters at all.
pub(crate) fn path_pattern() -> String {
    format!("^[^{}]*$", class(&[CONTROLS]))
}

/// JSON Schema `pattern` of a name ([`visible_text`]); `non_blank` as in
/// [`text_pattern`].
pub(crate) fn name_pattern(non_blank: bool) -> String {
    let invisible = class(&[CONTROLS, FORMAT]);
    if non_blank {
        let whitespace = class(&[WHITESPACE]);
        format!("^[^{invisible}]*[^{invisible}{whitespace}][^{invisible}]*$")
    } else {
        format!("^[^{invisible}]*$")
    }
}

/// JSON Schema `pattern` of an email `register` accepts: `local@domain` where the domain
/// has a dot, no whitespace, nothing invisible.
pub(crate) fn email_pattern() -> String {
    let refused = class(&[CONTROLS, FORMAT, WHITESPACE]);
    format!("^[^{refused}@]+@[^{refused}]*\\.[^{refused}]*$")
}

/// `U+XXXX`, for messages (the character itself would not show).
fn code_point(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}

/// Checks every string (and object key) of a JSON body against the any-text rule. The
/// error names where the character is, as a JSON pointer.
pub(crate) fn check_json(value: &serde_json::Value) -> Result<(), String> {
    fn walk(value: &serde_json::Value, pointer: &mut String) -> Result<(), String> {
        match value {
            serde_json::Value::String(text) => check(text, pointer),
            serde_json::Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    let length = pointer.len();
                    pointer.push_str(&format!("/{index}"));
                    walk(item, pointer)?;
                    pointer.truncate(length);
                }
                Ok(())
            }
            serde_json::Value::Object(fields) => {
                for (key, item) in fields {
                    check(key, pointer)?;
                    let length = pointer.len();
                    pointer.push('/');
                    pointer.push_str(key);
                    walk(item, pointer)?;
                    pointer.truncate(length);
                }
                Ok(())
            }
            serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {
                Ok(())
            }
        }
    }
    fn check(text: &str, pointer: &str) -> Result<(), String> {
        match text.chars().find(|&c| is_forbidden(c)) {
            None => Ok(()),
            Some(c) => Err(format!(
                "{}: control characters are not allowed (found {})",
                if pointer.is_empty() { "/" } else { pointer },
                code_point(c)
            )),
        }
    }
    // serde_json refuses nesting deeper than 128 while parsing, so this recursion is
    // bounded.
    walk(value, &mut String::new())
}

/// A `#[serde(deserialize_with)]` for names others see: refuses control, bidirectional
/// and invisible formatting characters (see the module docs).
pub(crate) fn visible_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    check_visible(&text).map_err(serde::de::Error::custom)?;
    Ok(text)
}

/// [`visible_text`] for optional fields.
pub(crate) fn optional_visible_text<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let text = Option::<String>::deserialize(deserializer)?;
    if let Some(text) = &text {
        check_visible(text).map_err(serde::de::Error::custom)?;
    }
    Ok(text)
}

fn check_visible(text: &str) -> Result<(), String> {
    match text.chars().find(|&c| is_invisible(c)) {
        None => Ok(()),
        Some(c) => Err(format!(
            "control, bidirectional and invisible formatting characters are not allowed (found {})",
            code_point(c)
        )),
    }
}

/// What an uploader called a file, made safe to store and show: the last path component,
/// without control, bidirectional or invisible formatting characters, trimmed, at most
/// `max_chars` characters; `upload` when nothing is left.
pub(crate) fn clean_file_name(name: Option<&str>, max_chars: usize) -> String {
    let name = name.unwrap_or_default();
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .filter(|&c| !is_invisible(c))
        .take(max_chars)
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() {
        "upload".to_owned()
    } else {
        cleaned.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_text_refuses_nul_and_controls_but_keeps_line_breaks() {
        let body = serde_json::json!({"a": "line\nnext\ttab\r", "b": ["x", 1, {"c": null}]});
        assert_eq!(check_json(&body), Ok(()));
        let error =
            check_json(&serde_json::json!({"a": ["ok", {"b": "x\u{0}y"}]})).expect_err("NUL");
        assert!(error.starts_with("/a/1/b:"), "{error}");
        assert!(error.contains("U+0000"), "{error}");
        assert!(
            check_json(&serde_json::json!({"k\u{1b}": 1})).is_err(),
            "keys too"
        );
        assert!(
            check_json(&serde_json::json!("\u{85}")).is_err(),
            "C1 controls too"
        );
    }

    #[test]
    fn names_refuse_bidi_and_invisible_characters_but_keep_emoji() {
        for bad in [
            "Ada\u{202E}",
            "\u{2066}x",
            "a\u{200B}b",
            "a\u{200F}",
            "a\nb",
            "a\u{2028}b",
            "\u{FEFF}a",
            "a\u{061C}",
        ] {
            assert!(check_visible(bad).is_err(), "{bad:?}");
        }
        for good in [
            "Ada Lovelace",
            "Zoë",
            "محمد",
            "👩\u{200D}👩\u{200D}👧",
            "李雷",
        ] {
            assert_eq!(check_visible(good), Ok(()), "{good:?}");
        }
    }

    #[test]
    fn file_names_lose_paths_controls_and_bidi_overrides() {
        assert_eq!(
            clean_file_name(Some("invoice\u{202E}txt.exe"), 255),
            "invoicetxt.exe"
        );
        assert_eq!(
            clean_file_name(Some("a\u{2067}b\u{2069}.pdf"), 255),
            "ab.pdf"
        );
        assert_eq!(clean_file_name(Some("../../etc/passwd"), 255), "passwd");
        assert_eq!(clean_file_name(Some("a\u{0}b\n.txt"), 255), "ab.txt");
        assert_eq!(clean_file_name(Some("\u{202E} "), 255), "upload");
        assert_eq!(clean_file_name(None, 255), "upload");
        assert_eq!(clean_file_name(Some("abcdef"), 3), "abc");
    }
}
