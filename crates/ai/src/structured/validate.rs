//! From the tolerant reader's [`Value`] to validated types.
//!
//! The intermediate form is the `serde_json` value, read field by field (keys compared
//! case-insensitively, `_` matching spaces and dashes) through alias lists rather than through
//! `#[serde(alias)]`: models use several names for the same field and sometimes more than
//! one of them at once, which serde's derive rejects as a duplicate field.
//!
//! Policy: an invalid *item* (a question, a card, a timeline step) is dropped and recorded
//! as [`Repair::Dropped`] as long as something valid remains; an invalid *required field*
//! of the whole value (its title) or an empty required list is an error.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::json::{self, Extracted};
use super::prompt::{EXAMPLE_CARD_FRONT, EXAMPLE_QUESTION_PROMPT};
use super::types::{
    Activity, Card, ExamPaper, ExamQuestion, ExamQuestionKind, ExamSection, Flashcards, LessonPlan,
    Question, Quiz, Step,
};
use super::{ParseHints, Parsed, Repair, StructuredError};

/// Exam length used when neither the output nor [`ParseHints`] gives one.
pub const DEFAULT_EXAM_MINUTES: u32 = 60;

/// Options per multiple-choice question.
const MIN_OPTIONS: usize = 2;
const MAX_OPTIONS: usize = 6;

/// How many drop reasons an [`StructuredError::Empty`] carries; enough to explain, short
/// enough for a repair prompt.
const MAX_REASONS: usize = 3;

const TITLE: &[&str] = &["title", "name", "topic", "heading", "subject"];

/// Parses a quiz from model output (a JSON object like the prompt's example).
///
/// Repairs JSON syntax (see [`SyntaxFix`](super::SyntaxFix)), accepts `question`/`choices`/
/// `correct_answer` style field names, answers given as option text, a letter (`"B"`,
/// `"(b)"`, `"Option B"`) or a 1-based number, options given as an object (`{"A": ...}`)
/// or with `A)` prefixes, repeated options (removed) and marks given as strings. Questions
/// that remain invalid (missing prompt, 2..=6 options of which 2 differ, answer out of
/// range, marks < 1), duplicates and copies of the prompt's example are dropped.
pub fn parse_quiz(output: &str) -> Result<Parsed<Quiz>, StructuredError> {
    quiz(output, &ParseHints::default())
}

/// Parses a flashcard deck from model output; cards may also be `[front, back]` pairs,
/// `{"term": "definition"}` objects or `"term: definition"` strings.
pub fn parse_flashcards(output: &str) -> Result<Parsed<Flashcards>, StructuredError> {
    flashcards(output, &ParseHints::default())
}

/// Parses an exam paper from model output. Questions directly under the paper become one
/// section; each question's kind is taken from `kind`/`type` or inferred from its fields;
/// `total_marks` is always recomputed as the sum and a difference is recorded as
/// [`Repair::Recomputed`].
pub fn parse_exam(output: &str) -> Result<Parsed<ExamPaper>, StructuredError> {
    exam(output, &ParseHints::default())
}

/// Parses a lesson plan from model output; timeline minutes may be strings (`"10 min"`),
/// steps may be `"10 min: starter"` strings, and list fields may be a single string.
pub fn parse_lesson_plan(output: &str) -> Result<Parsed<LessonPlan>, StructuredError> {
    lesson_plan(output, &ParseHints::default())
}

/// Collects repairs while a value is normalised.
struct Ctx {
    repairs: Vec<Repair>,
}

impl Ctx {
    fn dropped(&mut self, path: String, reason: impl Into<String>) {
        self.repairs.push(Repair::Dropped {
            path,
            reason: reason.into(),
        });
    }

    fn converted(&mut self, path: String, note: impl Into<String>) {
        self.repairs.push(Repair::Converted {
            path,
            note: note.into(),
        });
    }

    fn defaulted(&mut self, path: String, value: impl Into<String>) {
        self.repairs.push(Repair::Defaulted {
            path,
            value: value.into(),
        });
    }

    /// Reasons of the most recent drops, for an [`StructuredError::Empty`].
    fn reasons(&self, since: usize) -> Vec<String> {
        self.repairs[since..]
            .iter()
            .filter_map(|r| match r {
                Repair::Dropped { path, reason } => Some(format!("{path}: {reason}")),
                _ => None,
            })
            .take(MAX_REASONS)
            .collect()
    }
}

/// Reads the JSON.
fn read(output: &str) -> Result<(Value, Ctx), StructuredError> {
    let Extracted { value, fixes } = json::extract(output).ok_or(StructuredError::NoJson {
        expected: "JSON object",
    })?;
    let repairs = fixes
        .into_iter()
        .map(|fix| Repair::Syntax { fix })
        .collect();
    Ok((value, Ctx { repairs }))
}

/// A key as looked up: `"Model Answer"` and `"model-answer"` both read as `model_answer`.
/// Keys are compared in this form rather than rewritten, since some keys are content
/// (`{"Vacuole": "Stores water."}`).
fn key_matches(key: &str, name: &str) -> bool {
    let key = key.trim();
    key.len() == name.len()
        && key.chars().zip(name.chars()).all(|(k, n)| {
            let k = if k == ' ' || k == '-' {
                '_'
            } else {
                k.to_ascii_lowercase()
            };
            k == n
        })
}

/// The first present, non-null field among `names` (in `names` order).
fn field<'a>(obj: &'a Map<String, Value>, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|name| {
        obj.get(*name).filter(|v| !v.is_null()).or_else(|| {
            obj.iter()
                .find(|(k, v)| !v.is_null() && key_matches(k, name))
                .map(|(_, v)| v)
        })
    })
}

/// Text of a scalar (numbers become text); arrays of text are joined with spaces. `None`
/// for missing or blank values.
fn text(value: Option<&Value>) -> Option<String> {
    let text = match value? {
        Value::String(s) => s.split_whitespace().collect::<Vec<_>>().join(" "),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => items
            .iter()
            .filter_map(|v| text(Some(v)))
            .collect::<Vec<_>>()
            .join(" "),
        Value::Null | Value::Object(_) => return None,
    };
    (!text.is_empty()).then_some(text)
}

/// A whole number from a number or from text starting with digits (`"2"`, `"10 min"`,
/// `"3 marks"`); the flag says it came from text.
fn whole(value: &Value) -> Option<(i64, bool)> {
    match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some((i, false))
            } else {
                let f = n.as_f64()?;
                (f.fract() == 0.0 && f.abs() < 1e12).then_some((f as i64, false))
            }
        }
        Value::String(s) => {
            let s = s.trim();
            let digits: String = s
                .char_indices()
                .take_while(|(i, c)| c.is_ascii_digit() || (*i == 0 && *c == '-'))
                .map(|(_, c)| c)
                .collect();
            digits.parse().ok().map(|n| (n, true))
        }
        Value::Array(items) if items.len() == 1 => whole(&items[0]),
        _ => None,
    }
}

/// Marks: missing means 1 (recorded), otherwise a whole number ≥ 1.
fn marks(obj: &Map<String, Value>, path: &str, ctx: &mut Ctx) -> Result<u32, String> {
    let Some(value) = field(obj, &["marks", "mark", "points", "score"]) else {
        ctx.defaulted(format!("{path}.marks"), "1");
        return Ok(1);
    };
    match whole(value) {
        Some((n, from_text)) if n >= 1 => {
            if from_text {
                ctx.converted(format!("{path}.marks"), format!("{value} read as {n}"));
            }
            u32::try_from(n).map_err(|_| format!("marks {n} is too large"))
        }
        Some((n, _)) => Err(format!("marks must be at least 1, got {n}")),
        None => Err(format!("marks must be a whole number, got {value}")),
    }
}

fn title(
    obj: &Map<String, Value>,
    hints: &ParseHints,
    ctx: &mut Ctx,
) -> Result<String, StructuredError> {
    if let Some(title) = text(field(obj, TITLE)) {
        return Ok(title);
    }
    match hints.title.as_deref().map(str::trim) {
        Some(hint) if !hint.is_empty() => {
            ctx.defaulted("title".to_owned(), hint);
            Ok(hint.to_owned())
        }
        _ => Err(StructuredError::Invalid {
            field: "title".to_owned(),
            reason: "is missing or empty".to_owned(),
        }),
    }
}

/// The item list of a value: `names` of the top-level object, or the top-level array
/// itself (some models print just the list).
fn items<'a>(root: &'a Value, names: &[&str]) -> Option<&'a Vec<Value>> {
    match root {
        Value::Array(items) => Some(items),
        Value::Object(obj) => match field(obj, names)? {
            Value::Array(items) => Some(items),
            _ => None,
        },
        _ => None,
    }
}

fn root_object(root: &Value) -> Map<String, Value> {
    match root {
        Value::Object(obj) => obj.clone(),
        _ => Map::new(),
    }
}

fn same_text(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim()) || a.trim().to_lowercase() == b.trim().to_lowercase()
}

pub(crate) fn quiz(output: &str, hints: &ParseHints) -> Result<Parsed<Quiz>, StructuredError> {
    let (root, mut ctx) = read(output)?;
    let obj = root_object(&root);
    let title = title(&obj, hints, &mut ctx)?;
    let since = ctx.repairs.len();
    let mut questions = Vec::new();
    let mut seen = HashSet::new();
    for (i, item) in items(&root, &["questions", "items", "quiz", "mcqs"])
        .into_iter()
        .flatten()
        .enumerate()
    {
        let path = format!("questions[{i}]");
        match question(item, &path, &mut ctx) {
            Ok(q) if same_text(&q.prompt, EXAMPLE_QUESTION_PROMPT) => {
                ctx.dropped(path, "copied from the prompt's example");
            }
            Ok(q) if !seen.insert(q.prompt.to_lowercase()) => {
                ctx.dropped(path, "duplicate question");
            }
            Ok(q) => questions.push(q),
            Err(reason) => ctx.dropped(path, reason),
        }
    }
    if questions.is_empty() {
        return Err(StructuredError::Empty {
            field: "questions",
            reasons: ctx.reasons(since),
        });
    }
    Ok(Parsed {
        value: Quiz { title, questions },
        repairs: ctx.repairs,
    })
}

fn prompt_of(obj: &Map<String, Value>) -> Result<String, String> {
    text(field(obj, &["prompt", "question", "q", "stem", "text"]))
        .ok_or_else(|| "prompt is missing or empty".to_owned())
}

fn question(item: &Value, path: &str, ctx: &mut Ctx) -> Result<Question, String> {
    let Value::Object(obj) = item else {
        return Err("not an object".to_owned());
    };
    let prompt = prompt_of(obj)?;
    let (options, answer) = choice(obj, path, ctx)?;
    let explanation =
        text(field(obj, &["explanation", "reason", "rationale", "why"])).unwrap_or_default();
    let marks = marks(obj, path, ctx)?;
    Ok(Question {
        prompt,
        options,
        answer,
        explanation,
        marks,
    })
}

/// Options and the answer index of a multiple-choice question.
fn choice(
    obj: &Map<String, Value>,
    path: &str,
    ctx: &mut Ctx,
) -> Result<(Vec<String>, usize), String> {
    let raw = field(obj, &["options", "choices", "answers", "alternatives"])
        .ok_or("options are missing")?;
    let mut flagged = None;
    let mut options: Vec<String> = match raw {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Object(o) => {
                    if matches!(
                        field(o, &["correct", "is_correct"]),
                        Some(Value::Bool(true))
                    ) {
                        flagged = Some(i);
                    }
                    text(field(o, &["text", "option", "label", "value", "answer"]))
                        .unwrap_or_default()
                }
                other => text(Some(other)).unwrap_or_default(),
            })
            .collect(),
        // {"A": "...", "B": "..."}: the keys are letters, so key order is option order.
        Value::Object(map) => {
            ctx.converted(format!("{path}.options"), "options given as an object");
            map.values()
                .map(|v| text(Some(v)).unwrap_or_default())
                .collect()
        }
        _ => return Err("options are not a list".to_owned()),
    };
    if options.len() < MIN_OPTIONS || options.len() > MAX_OPTIONS {
        return Err(format!(
            "needs {MIN_OPTIONS} to {MAX_OPTIONS} options, got {}",
            options.len()
        ));
    }
    if options.iter().any(String::is_empty) {
        return Err("an option is empty".to_owned());
    }
    if let Some(stripped) = strip_letter_prefixes(&options) {
        ctx.converted(format!("{path}.options"), "removed `A)` style prefixes");
        options = stripped;
    }
    // Where each option ends up once repeats are removed: a repeated option is the same
    // choice twice, so the answer may name either copy.
    let mut unique: Vec<String> = Vec::new();
    let mut position = Vec::with_capacity(options.len());
    for option in &options {
        match unique
            .iter()
            .position(|u| u.to_lowercase() == option.to_lowercase())
        {
            Some(i) => position.push(i),
            None => {
                position.push(unique.len());
                unique.push(option.clone());
            }
        }
    }
    if unique.len() < MIN_OPTIONS {
        return Err(format!(
            "needs {MIN_OPTIONS} different options, got {}",
            unique.len()
        ));
    }
    let answer = match field(
        obj,
        &[
            "answer",
            "correct_answer",
            "correct",
            "answer_index",
            "correct_option",
            "solution",
        ],
    ) {
        Some(value) => resolve_answer(value, &options, path, ctx)?,
        None => match flagged {
            Some(i) => i,
            None => return Err("answer is missing".to_owned()),
        },
    };
    if unique.len() < options.len() {
        ctx.converted(format!("{path}.options"), "removed repeated options");
    }
    Ok((unique, position[answer]))
}

/// `["A) x", "B) y"]` → `["x", "y"]` when every option carries its own letter in order.
fn strip_letter_prefixes(options: &[String]) -> Option<Vec<String>> {
    options
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let letter = char::from(b'a' + u8::try_from(i).ok()?);
            let rest = o.strip_prefix('(').unwrap_or(o);
            let mut chars = rest.chars();
            let first = chars.next()?;
            let sep = chars.next()?;
            let body = chars.as_str();
            (first.to_ascii_lowercase() == letter
                && matches!(sep, ')' | '.' | ':')
                && body.starts_with(' ')
                && !body.trim().is_empty())
            .then(|| body.trim().to_owned())
        })
        .collect()
}

/// The option index an answer refers to, whatever form it takes.
fn resolve_answer(
    value: &Value,
    options: &[String],
    path: &str,
    ctx: &mut Ctx,
) -> Result<usize, String> {
    let field_path = format!("{path}.answer");
    let index = |n: i64, ctx: &mut Ctx| -> Result<usize, String> {
        let len = options.len() as i64;
        if (0..len).contains(&n) {
            Ok(n as usize)
        } else if n == len {
            // Out of range from 0 but the last option from 1: models often count from 1.
            ctx.converted(field_path.clone(), format!("{n} read as counting from 1"));
            Ok((n - 1) as usize)
        } else {
            Err(format!("answer {n} is out of range for {len} options"))
        }
    };
    match value {
        Value::Number(_) => match whole(value) {
            Some((n, _)) => index(n, ctx),
            None => Err(format!("answer {value} is not a whole number")),
        },
        Value::String(s) => {
            let s = s.trim();
            if let Some(i) = options.iter().position(|o| same_text(o, s)) {
                ctx.converted(field_path, "given as the option text");
                return Ok(i);
            }
            if let Ok(n) = s.parse::<i64>() {
                ctx.converted(field_path.clone(), "given as text");
                return index(n, ctx);
            }
            if let Some(i) = letter(s).filter(|i| *i < options.len()) {
                ctx.converted(field_path, format!("given as the letter {s:?}"));
                return Ok(i);
            }
            // "B) ATP" or "Option B: ATP"
            if let Some(stripped) = strip_letter_prefixes(&[s.to_owned()])
                && let Some(i) = options.iter().position(|o| same_text(o, &stripped[0]))
            {
                ctx.converted(field_path, "given as lettered option text");
                return Ok(i);
            }
            Err(format!("answer {s:?} matches no option"))
        }
        Value::Array(items) if items.len() == 1 => resolve_answer(&items[0], options, path, ctx),
        _ => Err(format!("answer {value} is not an index, letter or option")),
    }
}

/// `B`, `b`, `(B)`, `B)`, `B.`, `Option B`, `Answer: B`, `B) ATP` → 1.
fn letter(s: &str) -> Option<usize> {
    let lower = s.to_lowercase();
    let rest = ["option ", "answer: ", "answer ", "choice "]
        .iter()
        .find_map(|p| lower.strip_prefix(p))
        .unwrap_or(&lower);
    let rest = rest.trim_start_matches('(');
    let mut chars = rest.chars();
    let first = chars.next()?;
    let tail = chars.as_str();
    // Not a bare space: "A cell wall" is option text, not the letter A.
    let separated = tail.is_empty() || tail.starts_with([')', '.', ':']);
    if first.is_ascii_lowercase() && first <= 'f' && separated {
        Some((first as u8 - b'a') as usize)
    } else {
        None
    }
}

pub(crate) fn flashcards(
    output: &str,
    hints: &ParseHints,
) -> Result<Parsed<Flashcards>, StructuredError> {
    let (root, mut ctx) = read(output)?;
    let obj = root_object(&root);
    let title = title(&obj, hints, &mut ctx)?;
    let since = ctx.repairs.len();
    let mut cards = Vec::new();
    let mut seen = HashSet::new();
    for (i, item) in items(&root, &["cards", "flashcards", "items", "deck"])
        .into_iter()
        .flatten()
        .enumerate()
    {
        let path = format!("cards[{i}]");
        match card(item) {
            Ok(c) if same_text(&c.front, EXAMPLE_CARD_FRONT) => {
                ctx.dropped(path, "copied from the prompt's example");
            }
            Ok(c) if !seen.insert(c.front.to_lowercase()) => ctx.dropped(path, "duplicate card"),
            Ok(c) => cards.push(c),
            Err(reason) => ctx.dropped(path, reason),
        }
    }
    if cards.is_empty() {
        return Err(StructuredError::Empty {
            field: "cards",
            reasons: ctx.reasons(since),
        });
    }
    Ok(Parsed {
        value: Flashcards { title, cards },
        repairs: ctx.repairs,
    })
}

fn card(item: &Value) -> Result<Card, String> {
    let (front, back) = match item {
        Value::Object(obj) => {
            let front = text(field(
                obj,
                &[
                    "front", "term", "question", "q", "word", "concept", "prompt",
                ],
            ));
            let back = text(field(
                obj,
                &[
                    "back",
                    "definition",
                    "answer",
                    "a",
                    "meaning",
                    "explanation",
                ],
            ));
            match (front, back, obj.len()) {
                (Some(f), Some(b), _) => (f, b),
                // {"ATP": "the cell's energy currency"}
                (None, None, 1) => {
                    let (k, v) = obj.iter().next().ok_or("empty card")?;
                    (k.clone(), text(Some(v)).ok_or("back is missing or empty")?)
                }
                (None, _, _) => return Err("front is missing or empty".to_owned()),
                (_, None, _) => return Err("back is missing or empty".to_owned()),
            }
        }
        Value::Array(pair) if pair.len() == 2 => (
            text(pair.first()).ok_or("front is empty")?,
            text(pair.get(1)).ok_or("back is empty")?,
        ),
        Value::String(s) => {
            let (f, b) = s
                .split_once(": ")
                .or_else(|| s.split_once(" - "))
                .ok_or("a text card needs `front: back`")?;
            (f.trim().to_owned(), b.trim().to_owned())
        }
        _ => return Err("not a card".to_owned()),
    };
    if front.is_empty() || back.is_empty() {
        return Err("front or back is empty".to_owned());
    }
    Ok(Card { front, back })
}

pub(crate) fn exam(output: &str, hints: &ParseHints) -> Result<Parsed<ExamPaper>, StructuredError> {
    let (root, mut ctx) = read(output)?;
    let obj = root_object(&root);
    let title = title(&obj, hints, &mut ctx)?;
    let duration_minutes = match field(
        &obj,
        &[
            "duration_minutes",
            "durationminutes",
            "duration",
            "minutes",
            "time",
            "time_minutes",
        ],
    )
    .and_then(whole)
    {
        Some((n, _)) if n >= 1 => u32::try_from(n).unwrap_or(DEFAULT_EXAM_MINUTES),
        _ => {
            let minutes = hints
                .duration_minutes
                .filter(|m| *m >= 1)
                .unwrap_or(DEFAULT_EXAM_MINUTES);
            ctx.defaulted("duration_minutes".to_owned(), minutes.to_string());
            minutes
        }
    };
    let since = ctx.repairs.len();
    let raw_sections: Vec<Value> = match field(&obj, &["sections", "parts"]) {
        Some(Value::Array(sections)) => sections.clone(),
        _ => match items(&root, &["questions", "items"]) {
            // Questions without sections: one section.
            Some(questions) => {
                ctx.converted(
                    "sections".to_owned(),
                    "questions without sections put in one section",
                );
                vec![Value::Object(Map::from_iter([(
                    "questions".to_owned(),
                    Value::Array(questions.clone()),
                )]))]
            }
            None => Vec::new(),
        },
    };
    let mut sections = Vec::new();
    let mut seen = HashSet::new();
    for (s, raw) in raw_sections.iter().enumerate() {
        let path = format!("sections[{s}]");
        let Value::Object(section) = raw else {
            ctx.dropped(path, "not an object");
            continue;
        };
        let section_title = match text(field(section, &["title", "name", "heading"])) {
            Some(t) => t,
            None => {
                let letter = char::from(b'A' + u8::try_from(sections.len() % 26).unwrap_or(0));
                let t = format!("Section {letter}");
                ctx.defaulted(format!("{path}.title"), t.clone());
                t
            }
        };
        let mut questions = Vec::new();
        let list = match field(section, &["questions", "items"]) {
            Some(Value::Array(list)) => list.as_slice(),
            _ => &[],
        };
        for (i, item) in list.iter().enumerate() {
            let qpath = format!("{path}.questions[{i}]");
            match exam_question(item, &qpath, &mut ctx) {
                Ok(q) if !seen.insert(q.prompt.to_lowercase()) => {
                    ctx.dropped(qpath, "duplicate question");
                }
                Ok(q) => questions.push(q),
                Err(reason) => ctx.dropped(qpath, reason),
            }
        }
        if questions.is_empty() {
            ctx.dropped(path, "no valid questions");
            continue;
        }
        sections.push(ExamSection {
            title: section_title,
            questions,
        });
    }
    if sections.is_empty() {
        return Err(StructuredError::Empty {
            field: "sections",
            reasons: ctx.reasons(since),
        });
    }
    let mut paper = ExamPaper {
        title,
        duration_minutes,
        sections,
        total_marks: 0,
    };
    paper.total_marks = paper.sum_of_marks();
    let given = field(
        &obj,
        &[
            "total_marks",
            "totalmarks",
            "total",
            "marks",
            "total_points",
        ],
    );
    let matches = given
        .and_then(whole)
        .is_some_and(|(n, _)| n == i64::from(paper.total_marks));
    if !matches {
        ctx.repairs.push(Repair::Recomputed {
            path: "total_marks".to_owned(),
            given: given.map(Value::to_string),
            value: paper.total_marks.to_string(),
        });
    }
    Ok(Parsed {
        value: paper,
        repairs: ctx.repairs,
    })
}

fn exam_question(item: &Value, path: &str, ctx: &mut Ctx) -> Result<ExamQuestion, String> {
    let Value::Object(obj) = item else {
        return Err("not an object".to_owned());
    };
    let prompt = prompt_of(obj)?;
    let declared = text(field(obj, &["kind", "type", "question_type", "format"]))
        .unwrap_or_default()
        .to_lowercase();
    let has_options = field(obj, &["options", "choices"]).is_some();
    let kind = if declared.contains("choice")
        || declared.contains("mcq")
        || declared.contains("multiple")
        || (declared.is_empty() && has_options)
    {
        let (options, answer) = choice(obj, path, ctx)?;
        ExamQuestionKind::MultipleChoice { options, answer }
    } else if declared.contains("essay")
        || declared.contains("long")
        || declared.contains("extended")
    {
        ExamQuestionKind::Essay {
            guidance: text(field(
                obj,
                &[
                    "guidance",
                    "marking_guidance",
                    "rubric",
                    "mark_scheme",
                    "marking_scheme",
                    "model_answer",
                    "answer",
                ],
            ))
            .unwrap_or_default(),
        }
    } else {
        if !declared.is_empty() && !declared.contains("short") {
            if has_options {
                let (options, answer) = choice(obj, path, ctx)?;
                ctx.converted(
                    format!("{path}.kind"),
                    format!("unknown kind {declared:?} read as multiple_choice"),
                );
                return Ok(ExamQuestion {
                    prompt,
                    kind: ExamQuestionKind::MultipleChoice { options, answer },
                    marks: marks(obj, path, ctx)?,
                });
            }
            ctx.converted(
                format!("{path}.kind"),
                format!("unknown kind {declared:?} read as short_answer"),
            );
        }
        ExamQuestionKind::ShortAnswer {
            model_answer: text(field(
                obj,
                &[
                    "model_answer",
                    "modelanswer",
                    "answer",
                    "expected_answer",
                    "solution",
                    "mark_scheme",
                ],
            ))
            .unwrap_or_default(),
        }
    };
    let marks = marks(obj, path, ctx)?;
    Ok(ExamQuestion {
        prompt,
        kind,
        marks,
    })
}

pub(crate) fn lesson_plan(
    output: &str,
    hints: &ParseHints,
) -> Result<Parsed<LessonPlan>, StructuredError> {
    let (root, mut ctx) = read(output)?;
    let obj = root_object(&root);
    let title = title(&obj, hints, &mut ctx)?;
    let objectives = strings(
        &obj,
        &["objectives", "learning_objectives", "goals", "aims"],
        &["objective", "text", "description"],
    );
    let assessment = strings(
        &obj,
        &[
            "assessment",
            "assessments",
            "assessment_methods",
            "evaluation",
            "checks",
        ],
        &["method", "text", "description"],
    );
    let since = ctx.repairs.len();
    let mut timeline = Vec::new();
    if let Some(Value::Array(steps)) =
        field(&obj, &["timeline", "schedule", "steps", "agenda", "plan"])
    {
        for (i, item) in steps.iter().enumerate() {
            let path = format!("timeline[{i}]");
            match step(item, &path, &mut ctx) {
                Ok(s) => timeline.push(s),
                Err(reason) => ctx.dropped(path, reason),
            }
        }
    }
    if timeline.is_empty() {
        return Err(StructuredError::Empty {
            field: "timeline",
            reasons: ctx.reasons(since),
        });
    }
    let mut activities = Vec::new();
    if let Some(Value::Array(list)) = field(&obj, &["activities", "activity_details"]) {
        for (i, item) in list.iter().enumerate() {
            let path = format!("activities[{i}]");
            let parsed = match item {
                Value::Object(o) => {
                    text(field(o, &["name", "title", "activity"])).map(|name| Activity {
                        name,
                        description: text(field(
                            o,
                            &["description", "details", "instructions", "how"],
                        ))
                        .unwrap_or_default(),
                    })
                }
                other => text(Some(other)).map(|name| Activity {
                    name,
                    description: String::new(),
                }),
            };
            match parsed {
                Some(a) => activities.push(a),
                None => ctx.dropped(path, "name is missing or empty"),
            }
        }
    }
    Ok(Parsed {
        value: LessonPlan {
            title,
            objectives,
            timeline,
            activities,
            assessment,
        },
        repairs: ctx.repairs,
    })
}

/// A list of texts that may come as strings, objects with a text field, or one string.
fn strings(obj: &Map<String, Value>, names: &[&str], inner: &[&str]) -> Vec<String> {
    match field(obj, names) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| match item {
                Value::Object(o) => text(field(o, inner)),
                other => text(Some(other)),
            })
            .collect(),
        Some(other) => text(Some(other)).into_iter().collect(),
        None => Vec::new(),
    }
}

fn step(item: &Value, path: &str, ctx: &mut Ctx) -> Result<Step, String> {
    let (minutes, activity) = match item {
        Value::Object(o) => (
            field(
                o,
                &["minutes", "duration", "time", "mins", "duration_minutes"],
            )
            .cloned(),
            text(field(
                o,
                &["activity", "description", "step", "name", "title", "what"],
            )),
        ),
        // "10 min: Starter quiz"
        Value::String(s) => {
            let (head, tail) = s
                .split_once(':')
                .or_else(|| s.split_once(" - "))
                .ok_or("a text step needs `minutes: activity`")?;
            ctx.converted(path.to_owned(), "step given as text");
            (
                Some(Value::String(head.to_owned())),
                text(Some(&Value::String(tail.to_owned()))),
            )
        }
        _ => return Err("not a step".to_owned()),
    };
    let activity = activity.ok_or("activity is missing or empty")?;
    let minutes = match minutes.as_ref().and_then(whole) {
        Some((n, from_text)) if n >= 1 => {
            if from_text && !matches!(item, Value::String(_)) {
                ctx.converted(format!("{path}.minutes"), format!("read as {n}"));
            }
            u32::try_from(n).map_err(|_| format!("minutes {n} is too large"))?
        }
        Some((n, _)) => return Err(format!("minutes must be more than 0, got {n}")),
        None => return Err("minutes are missing".to_owned()),
    };
    Ok(Step { minutes, activity })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_parse() {
        assert_eq!(letter("B"), Some(1));
        assert_eq!(letter("(c)"), Some(2));
        assert_eq!(letter("Option D"), Some(3));
        assert_eq!(letter("B) ATP"), Some(1));
        assert_eq!(letter("Blue"), None);
        assert_eq!(letter("A cell wall"), None);
        assert_eq!(letter("g"), None);
    }

    #[test]
    fn whole_numbers_from_text() {
        assert_eq!(whole(&Value::String("10 min".into())), Some((10, true)));
        assert_eq!(whole(&serde_json::json!(2.0)), Some((2, false)));
        assert_eq!(whole(&serde_json::json!(2.5)), None);
        assert_eq!(whole(&Value::String("ten".into())), None);
    }
}
