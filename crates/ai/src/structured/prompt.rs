//! Prompts that ask a model for one structured output.
//!
//! Written for the weakest backend: SmolLM2-135M with a 2048-token context. Small models
//! follow a format shown far better than a schema description, so each prompt shows the
//! format as a compact skeleton with `<placeholders>` and a few short rules. (Earlier
//! prompts showed a filled-in example about the Moon, which the model copied; the parsers
//! still drop items copied from it.) Source excerpts are cut to
//! [`PromptOptions::max_source_chars`] so prompt and answer fit the context together.

use super::Kind;
use super::StructuredError;
use super::validate::DEFAULT_EXAM_MINUTES;
use crate::backend::{Message, Role};

/// The prompt of the question earlier prompts showed as an example; a question with this
/// prompt was copied, not written.
pub(crate) const EXAMPLE_QUESTION_PROMPT: &str = "Why does the Moon have phases?";
/// The front of the card earlier prompts showed, for the same check.
pub(crate) const EXAMPLE_CARD_FRONT: &str = "Lunar eclipse";

// The formats are skeletons with `<placeholders>` rather than a filled-in example: the
// small local model copied a concrete example's questions verbatim (measured: its whole
// quiz was the example's), while the local grammar cannot start a text with `<` and
// API models read placeholders well.
const QUIZ_EXAMPLE: &str = r#"{"title":"<title>","questions":[{"prompt":"<question>","options":["<option>","<option>","<option>","<option>"],"answer":<position of the correct option from 0>,"explanation":"<why, citing a source like [1]>","marks":1}]}"#;

const FLASHCARDS_EXAMPLE: &str = r#"{"title":"<title>","cards":[{"front":"<term or question>","back":"<one-sentence answer>"},{"front":"<term or question>","back":"<one-sentence answer>"}]}"#;

const EXAM_EXAMPLE: &str = r#"{"title":"<title>","duration_minutes":<minutes>,"sections":[{"title":"<section title>","questions":[{"prompt":"<question>","kind":"multiple_choice","options":["<option>","<option>","<option>","<option>"],"answer":<position of the correct option from 0>,"marks":<marks>},{"prompt":"<question>","kind":"short_answer","model_answer":"<what a full answer says>","marks":<marks>},{"prompt":"<question>","kind":"essay","guidance":"<marking guidance>","marks":<marks>}]}],"total_marks":<sum of the marks>}"#;

const LESSON_PLAN_EXAMPLE: &str = r#"{"title":"<title>","objectives":["<objective>"],"timeline":[{"minutes":<minutes>,"activity":"<what happens>"}],"activities":[{"name":"<activity name>","description":"<how it runs>"}],"assessment":["<how learning is checked>"]}"#;

const MINDMAP_EXAMPLE: &str =
    "- <topic>\n  - <subtopic>\n    - <detail>\n    - <detail>\n  - <subtopic>\n    - <detail>\n";

/// Questions, cards or steps asked for when [`PromptOptions::count`] is unset.
pub const DEFAULT_COUNT: u32 = 5;

/// Lesson length asked for when [`PromptOptions::duration_minutes`] is unset.
pub const DEFAULT_LESSON_MINUTES: u32 = 45;

/// How much of a bad answer the repair prompt repeats; its start holds the structure.
const REPAIR_ECHO_CHARS: usize = 2000;

/// A numbered passage from the class library that the output must be grounded in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceExcerpt {
    /// How the model should cite it, number first: `"[1] cells.pdf p. 3"`.
    pub label: String,
    /// The passage.
    pub text: String,
}

/// What to ask for beyond the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptOptions {
    /// How many questions (quiz, exam), cards or timeline steps; `None` asks for
    /// [`DEFAULT_COUNT`]. Ignored for mind maps.
    pub count: Option<u32>,
    /// Who it is for ("Year 9 biology"), if known.
    pub audience: Option<String>,
    /// Exam or lesson length in minutes, if known.
    pub duration_minutes: Option<u32>,
    /// Total characters of source text included; excerpts are cut in order to fit. The
    /// default (2400 characters, about 600 tokens) leaves the local model room for the
    /// instructions and about 1000 tokens of answer; raise it for API backends.
    pub max_source_chars: usize,
}

impl Default for PromptOptions {
    fn default() -> Self {
        Self {
            count: None,
            audience: None,
            duration_minutes: None,
            max_source_chars: 2400,
        }
    }
}

fn message(role: Role, content: String) -> Message {
    Message { role, content }
}

fn system(kind: Kind) -> String {
    match kind {
        Kind::Mindmap => "You make mind maps for teachers as indented outlines. Reply with the outline only.".to_owned(),
        _ => "You write classroom material for teachers as JSON. Reply with exactly one JSON object and nothing else.".to_owned(),
    }
}

fn example(kind: Kind) -> &'static str {
    match kind {
        Kind::Quiz => QUIZ_EXAMPLE,
        Kind::Flashcards => FLASHCARDS_EXAMPLE,
        Kind::Exam => EXAM_EXAMPLE,
        Kind::LessonPlan => LESSON_PLAN_EXAMPLE,
        Kind::Mindmap => MINDMAP_EXAMPLE,
    }
}

/// The task sentence and kind-specific rules.
fn task(kind: Kind, topic: &str, options: &PromptOptions) -> String {
    let n = options.count.unwrap_or(DEFAULT_COUNT);
    match kind {
        Kind::Quiz => format!(
            "Write a quiz with {n} multiple-choice questions about: {topic}\n\
             Rules: 4 options each. \"answer\" is the position of the correct option, counting from 0. \
             \"marks\" is 1. The explanation cites a source number."
        ),
        Kind::Flashcards => format!(
            "Write {n} flashcards about: {topic}\n\
             Rules: \"front\" is a short term or question, \"back\" is a one-sentence answer."
        ),
        Kind::Exam => {
            let minutes = options.duration_minutes.unwrap_or(DEFAULT_EXAM_MINUTES);
            format!(
                "Write a {minutes}-minute exam paper with {n} questions about: {topic}\n\
                 Rules: \"kind\" is multiple_choice, short_answer or essay. \"answer\" is the position \
                 of the correct option, counting from 0. \"total_marks\" is the sum of the marks."
            )
        }
        Kind::LessonPlan => {
            let minutes = options.duration_minutes.unwrap_or(DEFAULT_LESSON_MINUTES);
            format!(
                "Write a {minutes}-minute lesson plan about: {topic}\n\
                 Rules: the timeline minutes add up to {minutes}. Keep each line short."
            )
        }
        Kind::Mindmap => format!(
            "Make a mind map about: {topic}\n\
             Rules: one idea per line starting with \"- \". Indent 2 spaces per level. \
             The topic is the first line. At most 3 levels. Labels of 1 to 5 words."
        ),
    }
}

/// The sources block, cut to `budget` characters in order; later excerpts that no longer
/// fit are left out rather than reduced to a few words.
fn sources_block(sources: &[SourceExcerpt], budget: usize) -> String {
    let mut out = String::from("Sources:\n");
    let mut left = budget;
    for source in sources {
        if left < 80 {
            break;
        }
        let text = source.text.split_whitespace().collect::<Vec<_>>().join(" ");
        let cut = cut_chars(&text, left);
        left = left.saturating_sub(cut.chars().count());
        out.push_str(source.label.trim());
        out.push('\n');
        out.push_str(&cut);
        out.push_str("\n\n");
    }
    out
}

/// At most `max` characters of `text`, cut at a word boundary with an ellipsis.
fn cut_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let head: String = text.chars().take(max.saturating_sub(1)).collect();
    let head = match head.rfind(' ') {
        Some(i) if i > head.len() / 2 => &head[..i],
        _ => head.as_str(),
    };
    format!("{head}…")
}

/// The messages asking for one `kind` of output about `topic_or_instructions`, grounded in
/// `sources` (which may be empty; then general knowledge is allowed).
pub fn messages(
    kind: Kind,
    topic_or_instructions: &str,
    sources: &[SourceExcerpt],
    options: &PromptOptions,
) -> Vec<Message> {
    let mut user = String::new();
    if !sources.is_empty() {
        user.push_str(&sources_block(sources, options.max_source_chars));
    }
    user.push_str(&task(kind, topic_or_instructions.trim(), options));
    if let Some(audience) = options
        .audience
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        user.push_str(&format!("\nAudience: {audience}."));
    }
    match (sources.is_empty(), kind) {
        (true, _) => user.push_str("\nUse accurate, well-known facts."),
        // Citations would clutter short node labels.
        (false, Kind::Mindmap) => user.push_str("\nUse only facts from the sources."),
        (false, _) => user.push_str("\nUse only facts from the sources and cite them like [1]."),
    }
    match kind {
        Kind::Mindmap => user.push_str("\nFormat (replace each <placeholder>):\n"),
        _ => user.push_str("\nFormat (replace each <placeholder>; repeat items as needed):\n"),
    }
    user.push_str(example(kind));
    match kind {
        Kind::Mindmap => user.push_str("\nReply with the outline only."),
        _ => user.push_str("\nReply with the JSON only."),
    }
    vec![
        message(Role::System, system(kind)),
        message(Role::User, user),
    ]
}

/// The messages for one model-assisted retry after `bad_output` failed to parse with
/// `error`: the model is shown the problem, the format and (the start of) its answer, and
/// asked to rewrite it keeping its content.
pub fn repair_prompt(kind: Kind, bad_output: &str, error: &StructuredError) -> Vec<Message> {
    let format = match kind {
        Kind::Mindmap => "an indented outline (\"- \" lines, 2 spaces per level)",
        _ => "one valid JSON object",
    };
    let user = format!(
        "This {label} could not be used: {error}.\n\
         Rewrite it as {format} in this format (each <placeholder> replaced), keeping its \
         content and fixing the problem:\n\
         {example}\n\n\
         The {label} to fix:\n{bad}\n\n\
         Reply with the corrected {label} only.",
        label = kind.label(),
        example = example(kind),
        bad = cut_chars(bad_output.trim(), REPAIR_ECHO_CHARS),
    );
    vec![
        message(Role::System, system(kind)),
        message(Role::User, user),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_shows_every_field_of_its_schema() {
        fn keys(value: &serde_json::Value, out: &mut Vec<String>) {
            if let Some(properties) = value.get("properties").and_then(|p| p.as_object()) {
                for (key, inner) in properties {
                    out.push(key.clone());
                    keys(inner, out);
                }
            }
            if let Some(items) = value.get("items") {
                keys(items, out);
            }
            for inner in value
                .get("anyOf")
                .and_then(|a| a.as_array())
                .into_iter()
                .flatten()
            {
                keys(inner, out);
            }
        }
        for kind in Kind::ALL {
            if kind == Kind::Mindmap {
                continue;
            }
            let mut names = Vec::new();
            keys(&super::super::schema::schema(kind), &mut names);
            for name in names {
                assert!(
                    example(kind).contains(&format!("\"{name}\":")),
                    "{kind:?}: {name}"
                );
            }
        }
    }

    #[test]
    fn cut_keeps_whole_words() {
        assert_eq!(cut_chars("alpha beta gamma", 12), "alpha beta…");
        assert_eq!(cut_chars("short", 12), "short");
    }
}
