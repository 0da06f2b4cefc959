//! The typed model of a document, read from its JSON roots (what `GET /documents/{doc}`
//! returns; shapes in docs/ai.md, "Document shapes", and `lectern_ai::structured::crdt`).
//!
//! Reading is tolerant: any member can write anything into a shared document, so a field
//! of the wrong type reads as absent, a number may arrive as a float or a string, and junk
//! gives an empty or partial document, never an error. Sizes are not bounded here (the
//! server bounds documents); the renderers' budget bounds what is rendered.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// What a document is, by the roots it has (the first present, in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Root map `quiz`.
    Quiz,
    /// Root map `flashcards`.
    Flashcards,
    /// Root map `exam`.
    Exam,
    /// Root map `lesson_plan`.
    LessonPlan,
    /// Root map `mindmap`.
    Mindmap,
    /// Root array `messages`.
    Chat,
    /// Root text `content` (notes, a translation, a text template).
    Notes,
}

impl Kind {
    /// A lowercase name for file names: `quiz`, `lesson-plan`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Quiz => "quiz",
            Kind::Flashcards => "flashcards",
            Kind::Exam => "exam",
            Kind::LessonPlan => "lesson-plan",
            Kind::Mindmap => "mindmap",
            Kind::Chat => "chat",
            Kind::Notes => "notes",
        }
    }

    /// A readable name, the title of a document that has none.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Quiz => "Quiz",
            Kind::Flashcards => "Flashcards",
            Kind::Exam => "Exam",
            Kind::LessonPlan => "Lesson plan",
            Kind::Mindmap => "Mind map",
            Kind::Chat => "Chat",
            Kind::Notes => "Notes",
        }
    }
}

/// A document to export: its parts in the order they are rendered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Document {
    pub(crate) parts: Vec<Part>,
    /// Root map `sources`: the citation behind each marker (`1` for `[1]`).
    pub(crate) sources: BTreeMap<u64, Citation>,
}

/// One root's content.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Part {
    Quiz(Quiz),
    Flashcards(Flashcards),
    Exam(Exam),
    LessonPlan(LessonPlan),
    Mindmap(Mindmap),
    Chat(Vec<Message>),
    Notes(String),
}

impl Part {
    fn kind(&self) -> Kind {
        match self {
            Part::Quiz(_) => Kind::Quiz,
            Part::Flashcards(_) => Kind::Flashcards,
            Part::Exam(_) => Kind::Exam,
            Part::LessonPlan(_) => Kind::LessonPlan,
            Part::Mindmap(_) => Kind::Mindmap,
            Part::Chat(_) => Kind::Chat,
            Part::Notes(_) => Kind::Notes,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Quiz {
    pub title: String,
    pub questions: Vec<Question>,
}

/// A quiz question, or an exam question (which has a `kind`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Question {
    pub prompt: String,
    pub options: Vec<String>,
    /// Index of the right option.
    pub answer: Option<usize>,
    pub explanation: String,
    pub marks: Option<u64>,
    /// `multiple_choice`, `short_answer`, `essay` (exams); empty in a quiz.
    pub kind: String,
    pub model_answer: String,
    pub guidance: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Flashcards {
    pub title: String,
    pub cards: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Exam {
    pub title: String,
    pub duration_minutes: Option<u64>,
    pub total_marks: Option<u64>,
    pub sections: Vec<(String, Vec<Question>)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LessonPlan {
    pub title: String,
    pub objectives: Vec<String>,
    pub timeline: Vec<(Option<u64>, String)>,
    pub activities: Vec<(String, String)>,
    pub assessment: Vec<String>,
}

/// A mind map as read: nodes by id, and which is the root.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Mindmap {
    pub root: Option<String>,
    pub nodes: BTreeMap<String, Node>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Node {
    pub label: String,
    pub parent: Option<String>,
    pub children: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Message {
    pub role: String,
    pub text: String,
    pub status: String,
    pub error: String,
    pub citations: Vec<Citation>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Citation {
    pub marker: Option<u64>,
    pub file_name: String,
    pub location: String,
}

impl Document {
    /// The document whose roots are `roots` (a JSON object of root name to content).
    /// Anything else gives an empty document.
    pub fn from_json(roots: &Value) -> Self {
        let Some(roots) = roots.as_object() else {
            return Self::default();
        };
        let mut parts = Vec::new();
        if let Some(quiz) = roots.get("quiz").and_then(Value::as_object) {
            parts.push(Part::Quiz(Quiz {
                title: string(quiz, "title"),
                questions: array(quiz, "questions").filter_map(question).collect(),
            }));
        }
        if let Some(cards) = roots.get("flashcards").and_then(Value::as_object) {
            parts.push(Part::Flashcards(Flashcards {
                title: string(cards, "title"),
                cards: array(cards, "cards")
                    .filter_map(Value::as_object)
                    .map(|card| (string(card, "front"), string(card, "back")))
                    .collect(),
            }));
        }
        if let Some(exam) = roots.get("exam").and_then(Value::as_object) {
            parts.push(Part::Exam(Exam {
                title: string(exam, "title"),
                duration_minutes: number(exam.get("duration_minutes")),
                total_marks: number(exam.get("total_marks")),
                sections: array(exam, "sections")
                    .filter_map(Value::as_object)
                    .map(|section| {
                        let questions = array(section, "questions").filter_map(question);
                        (string(section, "title"), questions.collect())
                    })
                    .collect(),
            }));
        }
        if let Some(plan) = roots.get("lesson_plan").and_then(Value::as_object) {
            parts.push(Part::LessonPlan(LessonPlan {
                title: string(plan, "title"),
                objectives: strings(plan, "objectives"),
                timeline: array(plan, "timeline")
                    .filter_map(Value::as_object)
                    .map(|step| (number(step.get("minutes")), string(step, "activity")))
                    .collect(),
                activities: array(plan, "activities")
                    .filter_map(Value::as_object)
                    .map(|activity| (string(activity, "name"), string(activity, "description")))
                    .collect(),
                assessment: strings(plan, "assessment"),
            }));
        }
        if let Some(map) = roots.get("mindmap").and_then(Value::as_object) {
            let nodes = map
                .get("nodes")
                .and_then(Value::as_object)
                .map(|nodes| {
                    nodes
                        .iter()
                        .filter_map(|(id, node)| Some((id.clone(), mind_node(node.as_object()?))))
                        .collect()
                })
                .unwrap_or_default();
            parts.push(Part::Mindmap(Mindmap {
                root: map.get("root").and_then(Value::as_str).map(str::to_owned),
                nodes,
            }));
        }
        if let Some(messages) = roots.get("messages").and_then(Value::as_array) {
            parts.push(Part::Chat(
                messages
                    .iter()
                    .filter_map(Value::as_object)
                    .map(message)
                    .collect(),
            ));
        }
        if let Some(content) = roots.get("content").and_then(Value::as_str) {
            // Notes first: a text template with a quiz under it reads top to bottom.
            parts.insert(0, Part::Notes(content.to_owned()));
        }
        let sources = roots
            .get("sources")
            .and_then(Value::as_object)
            .map(|sources| {
                sources
                    .iter()
                    .filter_map(|(marker, citation)| {
                        let marker = marker.trim().parse().ok()?;
                        Some((marker, self::citation(citation.as_object()?)))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self { parts, sources }
    }

    /// What the document is: its structured root if any, else a mind map, a chat, notes;
    /// `None` for a document with none of these (the session's `lectern` state, junk).
    pub fn kind(&self) -> Option<Kind> {
        let structured = self
            .parts
            .iter()
            .find(|part| !matches!(part, Part::Notes(_)));
        structured.or(self.parts.first()).map(Part::kind)
    }

    /// The title the document gives itself (a quiz's, an exam's...), if any.
    pub fn title(&self) -> Option<&str> {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Quiz(quiz) => quiz.title.as_str(),
                Part::Flashcards(cards) => cards.title.as_str(),
                Part::Exam(exam) => exam.title.as_str(),
                Part::LessonPlan(plan) => plan.title.as_str(),
                Part::Mindmap(map) => map
                    .root
                    .as_ref()
                    .and_then(|root| map.nodes.get(root))
                    .map_or("", |node| node.label.as_str()),
                Part::Chat(_) | Part::Notes(_) => "",
            })
            .map(str::trim)
            .find(|title| !title.is_empty())
    }

    /// Whether exporting with answers shows more than without: the document has answers,
    /// explanations, model answers, marking guidance or flashcard backs.
    pub fn has_answers(&self) -> bool {
        self.parts.iter().any(|part| match part {
            Part::Quiz(quiz) => !quiz.questions.is_empty(),
            Part::Flashcards(cards) => !cards.cards.is_empty(),
            Part::Exam(exam) => exam.sections.iter().any(|(_, q)| !q.is_empty()),
            Part::LessonPlan(_) | Part::Mindmap(_) | Part::Chat(_) | Part::Notes(_) => false,
        })
    }

    /// Whether there is nothing to export.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}

fn question(value: &Value) -> Option<Question> {
    let q = value.as_object()?;
    Some(Question {
        prompt: string(q, "prompt"),
        options: strings(q, "options"),
        answer: number(q.get("answer")).and_then(|n| usize::try_from(n).ok()),
        explanation: string(q, "explanation"),
        marks: number(q.get("marks")),
        kind: string(q, "kind"),
        model_answer: string(q, "model_answer"),
        guidance: string(q, "guidance"),
    })
}

fn mind_node(node: &Map<String, Value>) -> Node {
    Node {
        label: string(node, "label"),
        parent: node
            .get("parent")
            .and_then(Value::as_str)
            .map(str::to_owned),
        children: node
            .get("children")
            .and_then(Value::as_array)
            .map(|children| {
                children
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            }),
    }
}

fn message(m: &Map<String, Value>) -> Message {
    Message {
        role: string(m, "role"),
        text: string(m, "text"),
        status: string(m, "status"),
        error: string(m, "error"),
        citations: array(m, "citations")
            .filter_map(Value::as_object)
            .map(citation)
            .collect(),
    }
}

fn citation(c: &Map<String, Value>) -> Citation {
    Citation {
        marker: number(c.get("marker")),
        file_name: string(c, "file_name"),
        location: string(c, "location"),
    }
}

/// A string field; a number or boolean is shown as written, anything else is empty.
fn string(object: &Map<String, Value>, key: &str) -> String {
    match object.get(key) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(number)) => number.to_string(),
        Some(Value::Bool(flag)) => flag.to_string(),
        _ => String::new(),
    }
}

/// The strings of an array field (other entries shown as written or skipped).
fn strings(object: &Map<String, Value>, key: &str) -> Vec<String> {
    array(object, key)
        .filter_map(|value| match value {
            Value::String(text) => Some(text.clone()),
            Value::Number(number) => Some(number.to_string()),
            _ => None,
        })
        .collect()
}

fn array<'a>(object: &'a Map<String, Value>, key: &str) -> impl Iterator<Item = &'a Value> {
    object
        .get(key)
        .and_then(Value::as_array)
        .map(|values| values.iter())
        .unwrap_or_default()
}

/// A whole non-negative number, from an integer, a whole float or a numeric string.
fn number(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(number) => number.as_u64().or_else(|| {
            let float = number.as_f64()?;
            (float.fract() == 0.0 && (0.0..9.0e15).contains(&float)).then_some(float as u64)
        }),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn junk_reads_as_empty_or_partial() {
        for junk in [
            json!(null),
            json!(3),
            json!("x"),
            json!([1, 2]),
            json!({"quiz": 5}),
        ] {
            assert!(Document::from_json(&junk).is_empty(), "{junk}");
        }
        let partial = Document::from_json(&json!({
            "quiz": {"title": 7, "questions": [5, {"prompt": ["x"], "answer": "1", "marks": 2.0}]}
        }));
        let Part::Quiz(quiz) = &partial.parts[0] else {
            panic!("{partial:?}");
        };
        assert_eq!(quiz.title, "7");
        assert_eq!(quiz.questions.len(), 1);
        assert_eq!(quiz.questions[0].prompt, "");
        assert_eq!(quiz.questions[0].answer, Some(1));
        assert_eq!(quiz.questions[0].marks, Some(2));
    }

    #[test]
    fn kind_is_the_structured_root_first() {
        let doc = Document::from_json(&json!({"content": "x", "exam": {}}));
        assert_eq!(doc.kind(), Some(Kind::Exam));
        assert_eq!(
            Document::from_json(&json!({"content": "x"})).kind(),
            Some(Kind::Notes)
        );
        assert_eq!(Document::from_json(&json!({"lectern": {}})).kind(), None);
    }
}
