//! Structured AI outputs: quizzes, flashcards, exam papers, lesson plans and mind maps that a
//! model writes and the class then sees as shared Yjs data.
//!
//! Everything here is synchronous and pure so the job engine can call it from any task and
//! the tests need no model: prompts are built from the request, the model's text is parsed
//! back, and the result is written into a `yrs` transaction the caller owns.
//!
//! # Layout
//! - [`types`]: the validated values ([`Quiz`], [`Flashcards`], [`ExamPaper`],
//!   [`LessonPlan`], [`Mindmap`]).
//! - [`schema`]: the document shapes as JSON Schemas (for APIs) and Lark grammars (for the
//!   local model's constrained decoding), and [`output_format`] to ask a backend for them.
//! - [`prompt`]: the chat messages that ask a model for one of them, and the one-shot repair
//!   prompt.
//! - `json` (private): a tolerant JSON reader for what real models print (prose, fences,
//!   single quotes, trailing commas, text cut off by `max_tokens`).
//! - `validate` (private): lenient field lookup, normalisation and validation per kind.
//! - [`mindmap`]: the streaming outline parser ([`MindmapBuilder`]) that lets nodes appear
//!   while the model is still writing.
//! - [`crdt`]: the writers and the document shapes clients read.
//!
//! # Valid by construction, and a tolerant reader behind it
//! A structured job asks its backend for [`output_format`]: the local model decodes under
//! a grammar (llguidance), so its answer always parses, validates and closes within its
//! token budget (see [`schema`]); an API gets the JSON Schema as `response_format`. The
//! tolerant reader stays for APIs that refuse or ignore `response_format` and for what a
//! grammar cannot say (repeated options, duplicate questions). Most defects are mechanical
//! (a missing bracket, a letter for an answer), so they are fixed here and reported as
//! [`Repair`]s; only output with nothing usable left becomes a [`StructuredError`], for
//! which [`prompt::repair_prompt`] offers one model-assisted retry.

pub mod crdt;
mod json;
pub mod mindmap;
pub mod prompt;
pub mod schema;
pub mod types;
mod validate;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use crdt::{
    apply_mindmap_event, reset_mindmap, write_exam, write_flashcards, write_lesson_plan,
    write_mindmap, write_quiz, write_structured,
};
pub use mindmap::{MindmapBuilder, MindmapEvent, parse_mindmap};
pub use prompt::{PromptOptions, SourceExcerpt, messages, repair_prompt};
pub use schema::output_format;
pub use types::{
    Activity, Card, ExamPaper, ExamQuestion, ExamQuestionKind, ExamSection, Flashcards, LessonPlan,
    Mindmap, Node, Question, Quiz, Step,
};
pub use validate::{
    DEFAULT_EXAM_MINUTES, parse_exam, parse_flashcards, parse_lesson_plan, parse_quiz,
};

/// Which structured output a job asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A multiple-choice [`Quiz`].
    Quiz,
    /// A deck of [`Flashcards`].
    Flashcards,
    /// An [`ExamPaper`] with sections and mixed question kinds.
    Exam,
    /// A [`LessonPlan`].
    LessonPlan,
    /// A [`Mindmap`], written by the model as an indented outline rather than JSON.
    Mindmap,
}

impl Kind {
    /// Every kind, for exhaustive tests and UI lists.
    pub const ALL: [Kind; 5] = [
        Kind::Quiz,
        Kind::Flashcards,
        Kind::Exam,
        Kind::LessonPlan,
        Kind::Mindmap,
    ];

    /// The root `Y.Map` this kind is written into (see [`crdt`]).
    pub fn map_name(self) -> &'static str {
        match self {
            Kind::Quiz => crdt::QUIZ_MAP,
            Kind::Flashcards => crdt::FLASHCARDS_MAP,
            Kind::Exam => crdt::EXAM_MAP,
            Kind::LessonPlan => crdt::LESSON_PLAN_MAP,
            Kind::Mindmap => crdt::MINDMAP_MAP,
        }
    }

    /// A human name for messages and prompts ("quiz", "lesson plan").
    pub fn label(self) -> &'static str {
        match self {
            Kind::Quiz => "quiz",
            Kind::Flashcards => "flashcards",
            Kind::Exam => "exam paper",
            Kind::LessonPlan => "lesson plan",
            Kind::Mindmap => "mind map",
        }
    }
}

/// Any parsed structured output, for callers that handle every [`Kind`] alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Structured {
    /// A quiz.
    Quiz(Quiz),
    /// A flashcard deck.
    Flashcards(Flashcards),
    /// An exam paper.
    Exam(ExamPaper),
    /// A lesson plan.
    LessonPlan(LessonPlan),
    /// A mind map.
    Mindmap(Mindmap),
}

impl Structured {
    /// Which kind this is.
    pub fn kind(&self) -> Kind {
        match self {
            Structured::Quiz(_) => Kind::Quiz,
            Structured::Flashcards(_) => Kind::Flashcards,
            Structured::Exam(_) => Kind::Exam,
            Structured::LessonPlan(_) => Kind::LessonPlan,
            Structured::Mindmap(_) => Kind::Mindmap,
        }
    }

    /// Writes this value into its root map ([`Kind::map_name`]), replacing what was there.
    pub fn write(&self, txn: &mut yrs::TransactionMut) {
        match self {
            Structured::Quiz(v) => write_quiz(txn, v),
            Structured::Flashcards(v) => write_flashcards(txn, v),
            Structured::Exam(v) => write_exam(txn, v),
            Structured::LessonPlan(v) => write_lesson_plan(txn, v),
            Structured::Mindmap(v) => write_mindmap(txn, v),
        }
    }
}

/// What the caller already knows about the request, used when the model leaves it out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParseHints {
    /// Title to use when the output has none (usually the requested topic). For mind maps it
    /// becomes a synthetic root (see [`MindmapBuilder::with_root`]). Without it a missing
    /// title is [`StructuredError::Invalid`].
    pub title: Option<String>,
    /// Exam duration to use when the output has none; without it the default is
    /// [`DEFAULT_EXAM_MINUTES`].
    pub duration_minutes: Option<u32>,
}

/// A parsed value and what had to be fixed to get it.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed<T> {
    /// The validated value.
    pub value: T,
    /// Every fix, default and drop, in the order they were made; empty for clean output.
    /// Worth logging and showing to the teacher ("2 questions were dropped").
    pub repairs: Vec<Repair>,
}

/// Parses model output of any kind; see the per-kind functions ([`parse_quiz`] and so on)
/// for what is repaired.
pub fn parse(
    kind: Kind,
    output: &str,
    hints: &ParseHints,
) -> Result<Parsed<Structured>, StructuredError> {
    fn wrap<T>(
        parsed: Result<Parsed<T>, StructuredError>,
        f: fn(T) -> Structured,
    ) -> Result<Parsed<Structured>, StructuredError> {
        parsed.map(|p| Parsed {
            value: f(p.value),
            repairs: p.repairs,
        })
    }
    match kind {
        Kind::Quiz => wrap(validate::quiz(output, hints), Structured::Quiz),
        Kind::Flashcards => wrap(validate::flashcards(output, hints), Structured::Flashcards),
        Kind::Exam => wrap(validate::exam(output, hints), Structured::Exam),
        Kind::LessonPlan => wrap(validate::lesson_plan(output, hints), Structured::LessonPlan),
        Kind::Mindmap => wrap(
            mindmap::parse_with_root(output, hints.title.as_deref()),
            Structured::Mindmap,
        ),
    }
}

/// Why model output could not be turned into a structured value.
#[derive(Debug, thiserror::Error)]
pub enum StructuredError {
    /// The output contains no JSON object or array (for mind maps: no outline line).
    #[error("the model's answer contains no {expected}")]
    NoJson {
        /// What was looked for ("JSON object", "outline").
        expected: &'static str,
    },
    /// The JSON was found and repaired but does not have the expected top-level shape.
    #[error("the model's answer is not a usable JSON value")]
    Malformed(#[source] serde_json::Error),
    /// A required field is missing or wrong and cannot be dropped (the title, for example).
    #[error("`{field}` {reason}")]
    Invalid {
        /// Path of the field (`title`, `sections[1].title`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Every item of a required list was invalid or missing.
    #[error("no usable {field}{}", reasons_suffix(.reasons))]
    Empty {
        /// The list that ended up empty (`questions`, `cards`, `timeline`, `nodes`).
        field: &'static str,
        /// Why its items were dropped (up to a few), for logs and the repair prompt.
        reasons: Vec<String>,
    },
}

fn reasons_suffix(reasons: &[String]) -> String {
    if reasons.is_empty() {
        String::new()
    } else {
        format!(": {}", reasons.join("; "))
    }
}

/// A mechanical fix to the JSON text itself, made before its content was looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyntaxFix {
    /// Prose before or after the JSON was ignored.
    ExtractedFromProse,
    /// A Markdown code fence (```` ```json ````) around the JSON was removed.
    StrippedFence,
    /// Strings in single quotes were read as strings.
    SingleQuotes,
    /// Typographic quotes (“ ” ‘ ’) delimiting strings were read as quotes.
    SmartQuotes,
    /// Quotes inside a string that were not escaped were kept as text.
    UnescapedQuotes,
    /// Commas before a closing bracket were ignored.
    TrailingCommas,
    /// Missing commas between items were assumed.
    MissingCommas,
    /// Object keys without quotes were read as keys.
    UnquotedKeys,
    /// Values without quotes (`answer: B`) were read as strings.
    UnquotedStrings,
    /// `True`, `False`, `None` and similar were read as JSON literals.
    NonJsonLiterals,
    /// `//` and `/* */` comments were ignored.
    Comments,
    /// A closing bracket of the wrong kind was read as closing the open container.
    MismatchedBrackets,
    /// The output ended inside objects or arrays, which were closed.
    ClosedBrackets,
    /// The output ended in the middle of a value (a string, number or key), which was dropped
    /// rather than kept half-written.
    DroppedIncomplete,
}

/// One change made to get a valid value out of model output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "repair", rename_all = "snake_case")]
pub enum Repair {
    /// The JSON text was fixed.
    Syntax {
        /// Which fix.
        fix: SyntaxFix,
    },
    /// An invalid item was removed and the rest kept.
    Dropped {
        /// Path of the removed item (`questions[2]`, `line 7`).
        path: String,
        /// Why it was invalid.
        reason: String,
    },
    /// A value was given in another form and converted (an answer as the letter "B", marks
    /// as a string).
    Converted {
        /// Path of the converted field.
        path: String,
        /// What was converted and how.
        note: String,
    },
    /// An optional field was missing and got its default.
    Defaulted {
        /// Path of the field.
        path: String,
        /// The default used, as text.
        value: String,
    },
    /// A derived field was recomputed because it was missing or wrong (an exam's
    /// `total_marks`).
    Recomputed {
        /// Path of the field.
        path: String,
        /// What the model gave, if anything.
        given: Option<String>,
        /// The recomputed value.
        value: String,
    },
}

impl fmt::Display for Repair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Repair::Syntax { fix } => write!(f, "fixed JSON syntax: {fix:?}"),
            Repair::Dropped { path, reason } => write!(f, "dropped {path}: {reason}"),
            Repair::Converted { path, note } => write!(f, "converted {path}: {note}"),
            Repair::Defaulted { path, value } => write!(f, "defaulted {path} to {value}"),
            Repair::Recomputed { path, given, value } => match given {
                Some(given) => write!(f, "recomputed {path}: {given} -> {value}"),
                None => write!(f, "computed missing {path}: {value}"),
            },
        }
    }
}
