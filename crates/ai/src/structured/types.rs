//! The validated values. Their serde form is the JSON schema the prompts show the model and
//! the shape the [`crdt`](super::crdt) writers store; every value here has passed validation
//! (see the `parse_*` functions), so consumers need not re-check it.

use serde::{Deserialize, Serialize};

/// A multiple-choice quiz.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quiz {
    /// What the quiz is about; never empty.
    pub title: String,
    /// At least one question; prompts are unique.
    pub questions: Vec<Question>,
}

/// One multiple-choice question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Question {
    /// The question text; never empty.
    pub prompt: String,
    /// Between 2 and 6 distinct, non-empty options.
    pub options: Vec<String>,
    /// Index (from 0) of the correct option in `options`.
    pub answer: usize,
    /// Why the answer is right, ideally citing a source like `[1]`; may be empty.
    pub explanation: String,
    /// Marks for a correct answer; at least 1.
    pub marks: u32,
}

/// A deck of flashcards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flashcards {
    /// What the deck is about; never empty.
    pub title: String,
    /// At least one card; fronts are unique.
    pub cards: Vec<Card>,
}

/// One flashcard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Card {
    /// The cue (a term or question); never empty.
    pub front: String,
    /// The answer (a definition); never empty.
    pub back: String,
}

/// An exam paper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExamPaper {
    /// The paper's title; never empty.
    pub title: String,
    /// Time allowed, in minutes; at least 1.
    pub duration_minutes: u32,
    /// At least one section, each with at least one question.
    pub sections: Vec<ExamSection>,
    /// Always the sum of every question's marks (recomputed when parsing).
    pub total_marks: u32,
}

/// A section of an exam paper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExamSection {
    /// The section heading ("Section A"); never empty.
    pub title: String,
    /// At least one question.
    pub questions: Vec<ExamQuestion>,
}

/// One exam question. In JSON the kind is flattened into the question:
/// `{"prompt": "...", "kind": "multiple_choice", "options": [...], "answer": 1, "marks": 2}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExamQuestion {
    /// The question text; never empty.
    pub prompt: String,
    /// The kind of answer expected, with its kind-specific fields.
    #[serde(flatten)]
    pub kind: ExamQuestionKind,
    /// Marks available; at least 1.
    pub marks: u32,
}

/// The kind of answer an exam question expects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExamQuestionKind {
    /// Pick one option.
    MultipleChoice {
        /// Between 2 and 6 distinct, non-empty options.
        options: Vec<String>,
        /// Index (from 0) of the correct option.
        answer: usize,
    },
    /// A sentence or two.
    ShortAnswer {
        /// What a full-marks answer says; may be empty when the model gave none.
        model_answer: String,
    },
    /// An extended written answer.
    Essay {
        /// Marking guidance for the teacher; may be empty when the model gave none.
        guidance: String,
    },
}

/// A lesson plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LessonPlan {
    /// The lesson's title; never empty.
    pub title: String,
    /// What students will be able to do afterwards; may be empty.
    pub objectives: Vec<String>,
    /// The lesson minute by minute; at least one step.
    pub timeline: Vec<Step>,
    /// Activities referred to by the timeline, described in more detail; may be empty.
    pub activities: Vec<Activity>,
    /// How learning is checked; may be empty.
    pub assessment: Vec<String>,
}

/// One step of a lesson timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// How long the step takes; at least 1.
    pub minutes: u32,
    /// What happens; never empty.
    pub activity: String,
}

/// A classroom activity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// Its short name; never empty.
    pub name: String,
    /// How it runs; may be empty.
    pub description: String,
}

/// A mind map: one root and its subtopics, at most
/// [`MAX_DEPTH`](super::mindmap::MAX_DEPTH) levels deep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mindmap {
    /// The central topic.
    pub root: Node,
}

/// One node of a mind map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Its text; never empty.
    pub label: String,
    /// Its subtopics, in the order written.
    #[serde(default)]
    pub children: Vec<Node>,
}

impl ExamPaper {
    /// Sum of every question's marks (what `total_marks` must equal).
    pub fn sum_of_marks(&self) -> u32 {
        self.sections
            .iter()
            .flat_map(|s| &s.questions)
            .fold(0u32, |sum, q| sum.saturating_add(q.marks))
    }
}
