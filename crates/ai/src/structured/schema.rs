//! The shapes of the structured outputs, as a JSON Schema for APIs and as a Lark grammar
//! for the local model's constrained decoding.
//!
//! Both come from one description per kind ([`Shape`]), so they cannot drift apart, and
//! both describe what `validate.rs` accepts without repairs: every required field present,
//! non-blank text, four options with an answer index in range, whole numbers ≥ 1.
//!
//! # Why the local grammar differs from the schema
//! A document cut off by `max_tokens` is invalid JSON, and the small local model gets a
//! budget of a few hundred tokens. So the grammar the local model decodes under bounds the
//! *tokens* of every free-text field (llguidance's `max_tokens=` on a terminal: when the cap
//! is reached the text ends and the closing quote is forced) and holds fewer items than the
//! schema allows. [`local_token_bound`] adds up the worst case, and a test keeps every kind
//! within [`LOCAL_BUDGET`]. The schema sent to an API keeps the roomier item counts (a
//! large model is not so tight on tokens).
//!
//! The mind map is written as an indented outline, not JSON, so the class sees it grow line
//! by line; its format is a Lark outline grammar on both backends (an API then generates
//! free text, parsed tolerantly). [`schema`] still describes the [`Mindmap`](super::Mindmap)
//! value for documentation and clients.

use serde_json::{Map, Value, json};

use super::Kind;
use crate::backend::OutputFormat;

/// Tokens the local grammar of every kind is guaranteed to close within (the server's
/// default `max_tokens`).
pub const LOCAL_BUDGET: usize = 512;

/// Options of a multiple-choice question: fixed, so the answer index can be bounded.
const OPTIONS: usize = 4;

/// First character of a free text in the local grammar: a letter (any non-ASCII character
/// counts as one), so a field is never blank, never starts with a quote or a placeholder's
/// `<`, and an outline label never starts with a bullet, number or heading marker. Not a
/// digit either: the small model, allowed one, filled options with `1.1.1.` runs.
const FIRST_CHAR: &str = r"[^\x00-\x40\x5b-\x60\x7b-\x7f]";

/// Any further character of a JSON string: no quote or backslash (no escapes to get
/// wrong) and no control character.
const JSON_CHAR: &str = r#"[^"\\\x00-\x1f]"#;

/// Any further character of an outline label: anything but control characters (newline).
const LABEL_CHAR: &str = r"[^\x00-\x1f]";

/// One part of a document's shape.
#[derive(Debug, Clone)]
enum Shape {
    /// An object with exactly these keys, in this order, all required.
    Object(Vec<(&'static str, Shape)>),
    /// A list.
    Array {
        /// Shape of every item.
        items: Box<Shape>,
        /// Fewest items.
        min: usize,
        /// Most items in the schema.
        max: usize,
        /// Most items in the local grammar (within the token budget).
        local_max: usize,
    },
    /// Non-blank text.
    Text {
        /// Most characters.
        max_chars: usize,
        /// Most tokens the local model may spend on it.
        max_tokens: usize,
    },
    /// A whole number in `min..=max`.
    Int {
        /// Smallest value.
        min: u32,
        /// Largest value.
        max: u32,
    },
    /// Exactly this string (a tag such as an exam question's `kind`).
    Const(&'static str),
    /// One of these shapes.
    OneOf(Vec<Shape>),
}

fn text(max_chars: usize, max_tokens: usize) -> Shape {
    Shape::Text {
        max_chars,
        max_tokens,
    }
}

fn array(items: Shape, min: usize, max: usize, local_max: usize) -> Shape {
    Shape::Array {
        items: Box::new(items),
        min,
        max,
        local_max,
    }
}

fn title() -> Shape {
    text(80, 12)
}

/// Four options of at most `max_tokens` tokens each.
fn options(max_tokens: usize) -> Shape {
    array(text(60, max_tokens), OPTIONS, OPTIONS, OPTIONS)
}

/// Index of the right option, counting from 0.
fn answer() -> Shape {
    Shape::Int {
        min: 0,
        max: (OPTIONS - 1) as u32,
    }
}

fn marks() -> Shape {
    Shape::Int { min: 1, max: 20 }
}

/// The shape of a JSON kind; `None` for the mind map, which is an outline.
fn shape(kind: Kind) -> Option<Shape> {
    let shape = match kind {
        Kind::Quiz => Shape::Object(vec![
            ("title", title()),
            (
                "questions",
                array(
                    Shape::Object(vec![
                        ("prompt", text(160, 24)),
                        ("options", options(8)),
                        ("answer", answer()),
                        ("explanation", text(200, 24)),
                        ("marks", Shape::Int { min: 1, max: 1 }),
                    ]),
                    1,
                    20,
                    3,
                ),
            ),
        ]),
        Kind::Flashcards => Shape::Object(vec![
            ("title", title()),
            (
                "cards",
                array(
                    Shape::Object(vec![("front", text(80, 10)), ("back", text(200, 28))]),
                    1,
                    30,
                    7,
                ),
            ),
        ]),
        Kind::Exam => {
            let question = |kind: &'static str, detail: Option<(&'static str, Shape)>| {
                let mut fields = vec![("prompt", text(200, 20)), ("kind", Shape::Const(kind))];
                match detail {
                    Some(field) => fields.push(field),
                    None => {
                        fields.push(("options", options(6)));
                        fields.push(("answer", answer()));
                    }
                }
                fields.push(("marks", marks()));
                Shape::Object(fields)
            };
            Shape::Object(vec![
                ("title", title()),
                ("duration_minutes", Shape::Int { min: 1, max: 240 }),
                (
                    "sections",
                    array(
                        Shape::Object(vec![
                            ("title", text(60, 6)),
                            (
                                "questions",
                                array(
                                    Shape::OneOf(vec![
                                        question("multiple_choice", None),
                                        question(
                                            "short_answer",
                                            Some(("model_answer", text(300, 24))),
                                        ),
                                        question("essay", Some(("guidance", text(300, 24)))),
                                    ]),
                                    1,
                                    15,
                                    3,
                                ),
                            ),
                        ]),
                        1,
                        6,
                        1,
                    ),
                ),
                ("total_marks", Shape::Int { min: 1, max: 500 }),
            ])
        }
        Kind::LessonPlan => Shape::Object(vec![
            ("title", title()),
            ("objectives", array(text(160, 16), 1, 8, 3)),
            (
                "timeline",
                array(
                    Shape::Object(vec![
                        ("minutes", Shape::Int { min: 1, max: 120 }),
                        ("activity", text(160, 12)),
                    ]),
                    1,
                    12,
                    5,
                ),
            ),
            (
                "activities",
                array(
                    Shape::Object(vec![("name", text(60, 8)), ("description", text(300, 20))]),
                    0,
                    8,
                    2,
                ),
            ),
            ("assessment", array(text(160, 16), 0, 6, 2)),
        ]),
        Kind::Mindmap => return None,
    };
    Some(shape)
}

/// The JSON Schema of `kind`'s document: what an API is asked to follow and what
/// `validate.rs` accepts unrepaired. For the mind map, the [`Mindmap`](super::Mindmap) value
/// (root and three levels of children).
pub fn schema(kind: Kind) -> Value {
    match shape(kind) {
        Some(shape) => to_schema(&shape),
        None => mindmap_schema(),
    }
}

/// The output format a structured job asks its backend for: the JSON Schema with the local
/// grammar for JSON kinds, the outline grammar for the mind map.
pub fn output_format(kind: Kind) -> OutputFormat {
    let name = match kind {
        Kind::Quiz => "quiz",
        Kind::Flashcards => "flashcards",
        Kind::Exam => "exam",
        Kind::LessonPlan => "lesson_plan",
        Kind::Mindmap => "mindmap",
    }
    .to_owned();
    match shape(kind) {
        Some(shape) => OutputFormat::JsonSchema {
            name,
            schema: to_schema(&shape),
            lark: Some(to_lark(&shape)),
        },
        None => OutputFormat::Grammar {
            name,
            lark: mindmap_lark(),
        },
    }
}

/// The most tokens the local grammar of `kind` can produce: every capped text at its cap,
/// every list full, and every byte of structure (JSON punctuation and keys, outline
/// bullets) a token of its own, which no real tokenizer is worse than.
pub fn local_token_bound(kind: Kind) -> usize {
    match shape(kind) {
        Some(shape) => bound(&shape),
        // One root, 5 branches of up to 3 leaves each; a line is its indent and bullet, the
        // label and a newline.
        None => {
            let line = |indent: usize| indent + 2 + MINDMAP_LABEL_TOKENS + 1;
            line(0) + MINDMAP_BRANCHES * (line(2) + MINDMAP_LEAVES * line(4))
        }
    }
}

fn to_schema(shape: &Shape) -> Value {
    match shape {
        Shape::Object(fields) => {
            let properties: Map<String, Value> = fields
                .iter()
                .map(|(key, shape)| ((*key).to_owned(), to_schema(shape)))
                .collect();
            let required: Vec<&str> = fields.iter().map(|(key, _)| *key).collect();
            json!({
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": false,
            })
        }
        Shape::Array {
            items, min, max, ..
        } => json!({
            "type": "array",
            "items": to_schema(items),
            "minItems": min,
            "maxItems": max,
        }),
        Shape::Text { max_chars, .. } => json!({
            "type": "string",
            "minLength": 1,
            "maxLength": max_chars,
        }),
        Shape::Int { min, max } => json!({"type": "integer", "minimum": min, "maximum": max}),
        Shape::Const(value) => json!({"type": "string", "enum": [value]}),
        Shape::OneOf(shapes) => json!({"anyOf": shapes.iter().map(to_schema).collect::<Vec<_>>()}),
    }
}

/// The mind map as a value: a node is a label and its children, three levels below the
/// root (a JSON Schema without recursion, which strict APIs handle best).
fn mindmap_schema() -> Value {
    let mut node = json!({
        "type": "object",
        "properties": {"label": {"type": "string", "minLength": 1}},
        "required": ["label"],
        "additionalProperties": false,
    });
    for _ in 0..3 {
        node = json!({
            "type": "object",
            "properties": {
                "label": {"type": "string", "minLength": 1},
                "children": {"type": "array", "items": node},
            },
            "required": ["label", "children"],
            "additionalProperties": false,
        });
    }
    json!({
        "type": "object",
        "properties": {"root": node},
        "required": ["root"],
        "additionalProperties": false,
    })
}

/// Most tokens of one outline label.
const MINDMAP_LABEL_TOKENS: usize = 8;
/// Most branches under the root.
const MINDMAP_BRANCHES: usize = 5;
/// Most leaves under a branch.
const MINDMAP_LEAVES: usize = 3;

/// The outline a mind map is written as: the topic, up to [`MINDMAP_BRANCHES`] branches
/// of up to [`MINDMAP_LEAVES`] leaves each, labels of a few words (the format `mindmap.rs`
/// reads). After any complete line the model may end the answer.
fn mindmap_lark() -> String {
    format!(
        "start: \"- \" label \"\\n\" branch{{1,{MINDMAP_BRANCHES}}}\n\
         branch: \"  - \" label \"\\n\" leaf{{0,{MINDMAP_LEAVES}}}\n\
         leaf: \"    - \" label \"\\n\"\n\
         label[max_tokens={MINDMAP_LABEL_TOKENS}]: /{FIRST_CHAR}{LABEL_CHAR}{{0,59}}/\n"
    )
}

/// Builds the Lark grammar: one `start` rule with the document inline, and one capped
/// terminal rule per distinct text size.
fn to_lark(shape: &Shape) -> String {
    let mut rules = Vec::new();
    let start = lark_expr(shape, &mut rules);
    let mut grammar = format!("start: {start}\n");
    for rule in rules {
        grammar.push_str(&rule);
        grammar.push('\n');
    }
    grammar
}

/// A Lark literal for `text` (its JSON form is valid Lark string syntax).
fn literal(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

fn lark_expr(shape: &Shape, rules: &mut Vec<String>) -> String {
    match shape {
        Shape::Object(fields) => {
            let mut parts = Vec::new();
            for (i, (key, shape)) in fields.iter().enumerate() {
                let open = if i == 0 { "{" } else { "," };
                parts.push(literal(&format!("{open}\"{key}\":")));
                parts.push(lark_expr(shape, rules));
            }
            parts.push(literal("}"));
            format!("({})", parts.join(" "))
        }
        Shape::Array {
            items,
            min,
            local_max,
            ..
        } => {
            // The item as a rule of its own, so the grammar names it once.
            let body = lark_expr(items, rules);
            let item = format!("item{}", rules.len());
            rules.push(format!("{item}: {body}"));
            let rest = match (*min, *local_max) {
                (_, 0 | 1) => String::new(),
                (min, max) => format!(
                    " ({} {item}){{{},{}}}",
                    literal(","),
                    min.saturating_sub(1),
                    max - 1
                ),
            };
            if *min == 0 {
                format!("({} ({item}{rest})? {})", literal("["), literal("]"))
            } else {
                format!("({} {item}{rest} {})", literal("["), literal("]"))
            }
        }
        Shape::Text {
            max_chars,
            max_tokens,
        } => {
            let name = format!("text_{max_chars}_{max_tokens}");
            let rule = format!(
                "{name}[max_tokens={max_tokens}]: /{FIRST_CHAR}{JSON_CHAR}{{0,{}}}/",
                max_chars - 1
            );
            if !rules.contains(&rule) {
                rules.push(rule);
            }
            format!("({q} {name} {q})", q = literal("\""))
        }
        Shape::Int { min, max } => {
            let values: Vec<String> = (*min..=*max).map(|n| literal(&n.to_string())).collect();
            if values.len() <= 12 {
                format!("({})", values.join(" | "))
            } else {
                // A number of at most as many digits as `max`, no leading zero: looser
                // than the range above, which `validate.rs` does not need.
                let digits = max.to_string().len();
                let first = if *min == 0 { "0|" } else { "" };
                format!("/{first}[1-9][0-9]{{0,{}}}/", digits - 1)
            }
        }
        Shape::Const(value) => literal(&format!("\"{value}\"")),
        Shape::OneOf(shapes) => {
            let alternatives: Vec<String> = shapes.iter().map(|s| lark_expr(s, rules)).collect();
            format!("({})", alternatives.join(" | "))
        }
    }
}

/// Worst-case tokens of `shape` under the local grammar (see [`local_token_bound`]).
fn bound(shape: &Shape) -> usize {
    match shape {
        Shape::Object(fields) => {
            fields
                .iter()
                .map(|(key, shape)| key.len() + 4 + bound(shape))
                .sum::<usize>()
                + 1
        }
        Shape::Array {
            items, local_max, ..
        } => 2 + local_max * (bound(items) + 1),
        Shape::Text { max_tokens, .. } => max_tokens + 2,
        Shape::Int { max, .. } => max.to_string().len(),
        Shape::Const(value) => value.len() + 2,
        Shape::OneOf(shapes) => shapes.iter().map(bound).max().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_local_grammar_closes_within_the_default_budget() {
        for kind in Kind::ALL {
            let bound = local_token_bound(kind);
            assert!(bound <= LOCAL_BUDGET, "{kind:?}: {bound} tokens");
        }
    }

    #[test]
    fn schemas_require_every_property_and_allow_no_others() {
        fn check(value: &Value, path: &str) {
            if let Some(properties) = value.get("properties").and_then(Value::as_object) {
                let required: Vec<&str> = value["required"]
                    .as_array()
                    .expect("required")
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                let keys: Vec<&str> = properties.keys().map(String::as_str).collect();
                assert_eq!(required.len(), keys.len(), "{path}");
                assert!(keys.iter().all(|k| required.contains(k)), "{path}");
                assert_eq!(value["additionalProperties"], false, "{path}");
                for (key, inner) in properties {
                    check(inner, &format!("{path}.{key}"));
                }
            }
            if let Some(items) = value.get("items") {
                check(items, &format!("{path}[]"));
            }
            for alternative in value
                .get("anyOf")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                check(alternative, &format!("{path}|"));
            }
        }
        for kind in Kind::ALL {
            check(&schema(kind), &format!("{kind:?}"));
        }
    }
}
