//! A tolerant JSON reader for model output.
//!
//! Rather than patching the text and hoping `serde_json` accepts it, this reads the text
//! with a small recursive-descent parser that accepts what models actually print and builds
//! a [`serde_json::Value`] directly, noting each deviation as a [`SyntaxFix`]. Strict JSON
//! reads exactly as `serde_json` would read it.
//!
//! Truncation (the model hit `max_tokens`) is the common case worth getting right: open
//! containers are closed and keep their complete items, while the one value that was cut
//! off mid-way (a half string, a number that may be missing digits, a key without a value)
//! is dropped, because a half sentence in front of a class is worse than a missing field.

use std::collections::BTreeSet;

use serde_json::{Map, Number, Value};

use super::SyntaxFix;

/// Nesting deeper than this is refused so hostile output cannot overflow the stack.
const MAX_NESTING: usize = 64;

/// Start positions tried before giving up; bounds the work on long prose with many
/// brackets.
const MAX_CANDIDATES: usize = 32;

/// The JSON found in model output.
#[derive(Debug)]
pub(crate) struct Extracted {
    /// The value, with containers closed and incomplete values dropped.
    pub value: Value,
    /// What had to be fixed, in a stable order.
    pub fixes: BTreeSet<SyntaxFix>,
}

/// Finds the outermost JSON object (or array of objects) in `output`: inside the first
/// code fence if there is one, else the first `{` or `[` that starts a usable value.
pub(crate) fn extract(output: &str) -> Option<Extracted> {
    if let Some((inner, outside)) = fenced(output)
        && let Some(mut found) = extract_from(inner)
    {
        found.fixes.insert(SyntaxFix::StrippedFence);
        if outside {
            found.fixes.insert(SyntaxFix::ExtractedFromProse);
        }
        return Some(found);
    }
    extract_from(output)
}

/// The body of the first ```` ``` ```` fence (to the closing fence or the end, since
/// truncated output may never close it) and whether there is prose outside it.
fn fenced(output: &str) -> Option<(&str, bool)> {
    let start = output.find("```")?;
    let after = &output[start + 3..];
    // Skip the info string (`json`) up to the end of the line.
    let body_start = after.find('\n').map_or(after.len(), |i| i + 1);
    let body = &after[body_start..];
    let (inner, rest) = match body.find("```") {
        Some(end) => (&body[..end], &body[end + 3..]),
        None => (body, ""),
    };
    let outside = !output[..start].trim().is_empty() || !rest.trim().is_empty();
    Some((inner, outside))
}

fn extract_from(text: &str) -> Option<Extracted> {
    let chars: Vec<char> = text.chars().collect();
    let starts = chars
        .iter()
        .enumerate()
        .filter(|(_, c)| matches!(c, '{' | '['))
        .map(|(i, _)| i)
        .take(MAX_CANDIDATES);
    for start in starts {
        let mut parser = Parser {
            chars: &chars,
            pos: start,
            fixes: BTreeSet::new(),
        };
        let Ok((value, _)) = parser.value(0) else {
            continue;
        };
        if !usable(&value) {
            continue;
        }
        let before = chars[..start].iter().any(|c| !c.is_whitespace());
        let after = chars[parser.pos.min(chars.len())..]
            .iter()
            .any(|c| !c.is_whitespace());
        if before || after {
            parser.fixes.insert(SyntaxFix::ExtractedFromProse);
        }
        return Some(Extracted {
            value,
            fixes: parser.fixes,
        });
    }
    None
}

/// An object, or an array holding at least one object: what every structured kind is made
/// of. Citations like `[1]` in prose are arrays too, and are skipped by this test.
fn usable(value: &Value) -> bool {
    match value {
        Value::Object(_) => true,
        Value::Array(items) => items.iter().any(Value::is_object),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => false,
    }
}

/// How a value ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// It was complete.
    No,
    /// The text ended inside this container, which was closed; the caller stops too.
    Container,
    /// The text ended inside this scalar, which must be dropped.
    Scalar,
}

/// The text cannot be read as JSON from this start position.
#[derive(Debug)]
struct Fail;

struct Parser<'a> {
    chars: &'a [char],
    pos: usize,
    fixes: BTreeSet<SyntaxFix>,
}

fn is_quote(c: char) -> bool {
    matches!(c, '"' | '\'' | '“' | '”' | '‘' | '’')
}

fn starts_value(c: char) -> bool {
    is_quote(c) || c == '{' || c == '[' || c == '-' || c.is_alphanumeric()
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    fn fix(&mut self, fix: SyntaxFix) {
        self.fixes.insert(fix);
    }

    /// Skips whitespace and comments.
    fn skip_ws(&mut self) {
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() => self.pos += 1,
                Some('/') if self.chars.get(self.pos + 1) == Some(&'/') => {
                    self.fix(SyntaxFix::Comments);
                    while let Some(c) = self.bump() {
                        if c == '\n' {
                            break;
                        }
                    }
                }
                Some('/') if self.chars.get(self.pos + 1) == Some(&'*') => {
                    self.fix(SyntaxFix::Comments);
                    self.pos += 2;
                    while self.pos < self.chars.len() {
                        if self.chars[self.pos] == '*' && self.chars.get(self.pos + 1) == Some(&'/')
                        {
                            self.pos += 2;
                            break;
                        }
                        self.pos += 1;
                    }
                }
                _ => return,
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<(Value, Cut), Fail> {
        if depth > MAX_NESTING {
            return Err(Fail);
        }
        self.skip_ws();
        match self.peek() {
            None => Ok((Value::Null, Cut::Scalar)),
            Some('{') => self.object(depth),
            Some('[') => self.array(depth),
            Some(c) if is_quote(c) => {
                let (text, cut) = self.string();
                let cut = if cut { Cut::Scalar } else { Cut::No };
                Ok((Value::String(text), cut))
            }
            // `"answer": ,` – a missing value reads as null and is left to validation.
            Some(',' | '}' | ']') => Ok((Value::Null, Cut::No)),
            Some(c) if c.is_alphanumeric() || matches!(c, '-' | '+' | '.') => Ok(self.bare()),
            Some(_) => Err(Fail),
        }
    }

    fn object(&mut self, depth: usize) -> Result<(Value, Cut), Fail> {
        self.pos += 1; // '{'
        let mut map = Map::new();
        loop {
            self.skip_ws();
            match self.peek() {
                None => {
                    self.fix(SyntaxFix::ClosedBrackets);
                    return Ok((Value::Object(map), Cut::Container));
                }
                Some('}') => {
                    self.pos += 1;
                    return Ok((Value::Object(map), Cut::No));
                }
                Some(']') => {
                    // Left for the enclosing array, which it closes.
                    self.fix(SyntaxFix::MismatchedBrackets);
                    return Ok((Value::Object(map), Cut::No));
                }
                Some(',') => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some('}') {
                        self.fix(SyntaxFix::TrailingCommas);
                    }
                    continue;
                }
                Some(_) => {}
            }
            let Some(key) = self.key()? else {
                self.fix(SyntaxFix::DroppedIncomplete);
                self.fix(SyntaxFix::ClosedBrackets);
                return Ok((Value::Object(map), Cut::Container));
            };
            self.skip_ws();
            match self.peek() {
                Some(':' | '=') => self.pos += 1,
                None => {
                    self.fix(SyntaxFix::DroppedIncomplete);
                    self.fix(SyntaxFix::ClosedBrackets);
                    return Ok((Value::Object(map), Cut::Container));
                }
                Some(_) => return Err(Fail),
            }
            let (value, cut) = self.value(depth + 1)?;
            match cut {
                Cut::Scalar => {
                    self.fix(SyntaxFix::DroppedIncomplete);
                    self.fix(SyntaxFix::ClosedBrackets);
                    return Ok((Value::Object(map), Cut::Container));
                }
                Cut::Container => {
                    map.insert(key, value);
                    return Ok((Value::Object(map), Cut::Container));
                }
                Cut::No => {
                    map.insert(key, value);
                }
            }
            self.skip_ws();
            match self.peek() {
                None | Some(',' | '}' | ']') => {}
                Some(c) if is_quote(c) || c.is_alphabetic() || c == '_' => {
                    self.fix(SyntaxFix::MissingCommas);
                }
                Some(_) => return Err(Fail),
            }
        }
    }

    /// Reads an object key; `None` when the text ends inside it.
    fn key(&mut self) -> Result<Option<String>, Fail> {
        match self.peek() {
            Some(c) if is_quote(c) => {
                let (key, cut) = self.string();
                Ok(if cut { None } else { Some(key) })
            }
            Some(c) if c.is_alphanumeric() || c == '_' || c == '$' => {
                self.fix(SyntaxFix::UnquotedKeys);
                let start = self.pos;
                while let Some(c) = self.peek() {
                    if c.is_alphanumeric() || matches!(c, '_' | '$' | '-') {
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
                if self.peek().is_none() {
                    return Ok(None);
                }
                Ok(Some(self.chars[start..self.pos].iter().collect()))
            }
            _ => Err(Fail),
        }
    }

    fn array(&mut self, depth: usize) -> Result<(Value, Cut), Fail> {
        self.pos += 1; // '['
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                None => {
                    self.fix(SyntaxFix::ClosedBrackets);
                    return Ok((Value::Array(items), Cut::Container));
                }
                Some(']') => {
                    self.pos += 1;
                    return Ok((Value::Array(items), Cut::No));
                }
                Some('}') => {
                    self.fix(SyntaxFix::MismatchedBrackets);
                    return Ok((Value::Array(items), Cut::No));
                }
                Some(',') => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some(']') {
                        self.fix(SyntaxFix::TrailingCommas);
                    }
                    continue;
                }
                Some(_) => {}
            }
            let (value, cut) = self.value(depth + 1)?;
            match cut {
                Cut::Scalar => {
                    self.fix(SyntaxFix::DroppedIncomplete);
                    self.fix(SyntaxFix::ClosedBrackets);
                    return Ok((Value::Array(items), Cut::Container));
                }
                Cut::Container => {
                    items.push(value);
                    return Ok((Value::Array(items), Cut::Container));
                }
                Cut::No => items.push(value),
            }
            self.skip_ws();
            match self.peek() {
                None | Some(',' | ']' | '}') => {}
                Some(c) if starts_value(c) => self.fix(SyntaxFix::MissingCommas),
                Some(_) => return Err(Fail),
            }
        }
    }

    /// Reads a quoted string (any of `"`, `'`, `“”`, `‘’`); the flag is true when the text
    /// ended inside it.
    fn string(&mut self) -> (String, bool) {
        let open = self.peek().unwrap_or('"');
        self.pos += 1;
        let closers: &[char] = match open {
            '\'' => {
                self.fix(SyntaxFix::SingleQuotes);
                &['\'']
            }
            '‘' | '’' => {
                self.fix(SyntaxFix::SmartQuotes);
                &['’', '\'', '‘']
            }
            '“' | '”' => {
                self.fix(SyntaxFix::SmartQuotes);
                &['”', '"', '“']
            }
            _ => &['"'],
        };
        let mut text = String::new();
        loop {
            let Some(c) = self.bump() else {
                return (text, true);
            };
            match c {
                '\\' => {
                    let Some(escaped) = self.bump() else {
                        return (text, true);
                    };
                    match escaped {
                        'n' => text.push('\n'),
                        't' => text.push('\t'),
                        'r' => text.push('\r'),
                        'b' => text.push('\u{8}'),
                        'f' => text.push('\u{c}'),
                        'u' => match self.unicode_escape() {
                            Some(ch) => text.push(ch),
                            None => text.push('\u{fffd}'),
                        },
                        // `\"`, `\\`, `\/`, `\'` and unknown escapes keep the character.
                        other => text.push(other),
                    }
                }
                c if closers.contains(&c) => {
                    if self.closes_here() {
                        return (text, false);
                    }
                    self.fix(SyntaxFix::UnescapedQuotes);
                    text.push(c);
                }
                c => text.push(c),
            }
        }
    }

    /// Whether a closing-quote candidate just read really ends the string: valid JSON always
    /// continues with `,` `:` `}` `]` or ends, so a quote followed by a letter is text
    /// (`"the "mitochondria" is"`, `'it's'`). A quote followed on a new line by another
    /// string or object also ends it (a missing comma between lines).
    fn closes_here(&self) -> bool {
        let mut i = self.pos;
        let mut newline = false;
        while let Some(&c) = self.chars.get(i) {
            if !c.is_whitespace() {
                break;
            }
            newline |= c == '\n';
            i += 1;
        }
        match self.chars.get(i) {
            None => true,
            Some(',' | ':' | '}' | ']') => true,
            Some(&c) => newline && (is_quote(c) || c == '{'),
        }
    }

    fn unicode_escape(&mut self) -> Option<char> {
        let first = self.hex4()?;
        if (0xD800..0xDC00).contains(&first) {
            if self.chars.get(self.pos) == Some(&'\\') && self.chars.get(self.pos + 1) == Some(&'u')
            {
                self.pos += 2;
                let second = self.hex4()?;
                let combined = 0x10000 + ((first - 0xD800) << 10) + (second.checked_sub(0xDC00)?);
                return char::from_u32(combined);
            }
            return None;
        }
        char::from_u32(first)
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits: String = self.chars.get(self.pos..self.pos + 4)?.iter().collect();
        let value = u32::from_str_radix(&digits, 16).ok()?;
        self.pos += 4;
        Some(value)
    }

    /// Reads an unquoted value up to the next `,` `}` `]` or line end: a number, a literal
    /// (`true`, Python's `True`/`None`) or bare text (`answer: B`). At the end of the text
    /// it may be cut short (`12` of `120`), so it is reported as cut.
    fn bare(&mut self) -> (Value, Cut) {
        let start = self.pos;
        // A number followed by another value (`[1 2]`, a missing comma) ends at the number;
        // one followed by words (`5 minutes`) is text, read below.
        let numeric = self.chars[start..]
            .iter()
            .take_while(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'))
            .count();
        if numeric > 0 {
            let token: String = self.chars[start..start + numeric].iter().collect();
            let mut next = start + numeric;
            while matches!(self.chars.get(next), Some(' ' | '\t')) {
                next += 1;
            }
            let ends = match self.chars.get(next) {
                None => true,
                Some(&c) => {
                    matches!(c, ',' | '}' | ']' | '\n' | '\r' | '{' | '[')
                        || is_quote(c)
                        || c.is_ascii_digit()
                }
            };
            if ends && let Some(n) = number(&token) {
                self.pos = start + numeric;
                let cut = if self.chars.get(next).is_none() {
                    Cut::Scalar
                } else {
                    Cut::No
                };
                return (Value::Number(n), cut);
            }
        }
        while let Some(c) = self.peek() {
            if matches!(c, ',' | '}' | ']' | '\n' | '\r') {
                break;
            }
            self.pos += 1;
        }
        let cut = if self.peek().is_none() {
            Cut::Scalar
        } else {
            Cut::No
        };
        let token: String = self.chars[start..self.pos].iter().collect();
        let token = token.trim();
        let value = match token {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            "null" => Value::Null,
            "True" | "TRUE" | "yes" => {
                self.fix(SyntaxFix::NonJsonLiterals);
                Value::Bool(true)
            }
            "False" | "FALSE" | "no" => {
                self.fix(SyntaxFix::NonJsonLiterals);
                Value::Bool(false)
            }
            "None" | "undefined" | "nil" | "NULL" => {
                self.fix(SyntaxFix::NonJsonLiterals);
                Value::Null
            }
            _ => match number(token) {
                Some(n) => Value::Number(n),
                None => {
                    self.fix(SyntaxFix::UnquotedStrings);
                    Value::String(token.to_owned())
                }
            },
        };
        (value, cut)
    }
}

fn number(token: &str) -> Option<Number> {
    let token = token.strip_prefix('+').unwrap_or(token);
    if let Ok(n) = token.parse::<i64>() {
        return Some(Number::from(n));
    }
    if !token.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.') {
        return None;
    }
    token.parse::<f64>().ok().and_then(Number::from_f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(text: &str) -> (Value, Vec<SyntaxFix>) {
        let found = extract(text).expect("json");
        (found.value, found.fixes.into_iter().collect())
    }

    #[test]
    fn strict_json_reads_unchanged() {
        let text = r#"{"a": [1, 2.5, -3, true, null, "x\"y\u00e9\ud83d\ude00"], "b": {}}"#;
        let (value, fixes) = read(text);
        let strict: Value = serde_json::from_str(text).expect("valid");
        assert_eq!(value, strict);
        assert!(fixes.is_empty(), "{fixes:?}");
    }

    #[test]
    fn truncated_string_in_array_is_dropped_and_containers_closed() {
        let (value, fixes) = read(r#"{"a": ["x", "y"], "b": ["p", "qr"#);
        assert_eq!(value, json!({"a": ["x", "y"], "b": ["p"]}));
        assert!(fixes.contains(&SyntaxFix::DroppedIncomplete));
        assert!(fixes.contains(&SyntaxFix::ClosedBrackets));
    }

    #[test]
    fn truncated_number_and_dangling_key_are_dropped() {
        assert_eq!(read(r#"{"a": 1, "b": 12"#).0, json!({"a": 1}));
        assert_eq!(read(r#"{"a": 1, "b":"#).0, json!({"a": 1}));
        assert_eq!(read(r#"{"a": 1, "b"#).0, json!({"a": 1}));
        assert_eq!(read(r#"{"a": 1,"#).0, json!({"a": 1}));
    }

    #[test]
    fn prose_brackets_before_the_json_are_skipped() {
        let (value, fixes) = read("As shown in [1], here it is: {\"a\": 1} Hope this helps!");
        assert_eq!(value, json!({"a": 1}));
        assert!(fixes.contains(&SyntaxFix::ExtractedFromProse));
    }

    #[test]
    fn unescaped_inner_quotes_stay_text() {
        let (value, _) = read(r#"{"p": "What does "osmosis" mean?", "q": 'it's fine'}"#);
        assert_eq!(
            value,
            json!({"p": "What does \"osmosis\" mean?", "q": "it's fine"})
        );
    }

    #[test]
    fn missing_commas_between_lines() {
        let (value, fixes) = read("{\"a\": \"x\"\n\"b\": [1 2]\n}");
        assert_eq!(value, json!({"a": "x", "b": [1, 2]}));
        assert!(fixes.contains(&SyntaxFix::MissingCommas));
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let text = "[".repeat(10_000);
        assert!(extract(&text).is_none());
    }
}
