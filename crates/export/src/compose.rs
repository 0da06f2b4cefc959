//! A [`Document`] as [`Block`]s: how each kind reads on paper, with or without answers,
//! then cut to the character budget.

use std::collections::{BTreeSet, HashSet};

use crate::Options;
use crate::blocks::{Block, MAX_DEPTH, Span, for_each_text};
use crate::markdown_in;
use crate::model::{
    Citation, Document, Exam, Flashcards, LessonPlan, Message, Mindmap, Part, Question, Quiz,
};

/// `document` as blocks, its title first, and whether the budget cut it.
pub(crate) fn compose(document: &Document, options: &Options) -> (Vec<Block>, bool) {
    let mut blocks = Vec::new();
    let title = options
        .title
        .as_deref()
        .map(str::trim)
        .filter(|title| !title.is_empty())
        .or(document.title())
        .or(document.kind().map(|kind| kind.label()))
        .unwrap_or("Document");
    blocks.push(Block::heading(1, vec![Span::plain(title)]));
    for part in &document.parts {
        match part {
            Part::Notes(markdown) => blocks.extend(markdown_in::parse(markdown)),
            Part::Chat(messages) => chat(&mut blocks, messages),
            Part::Mindmap(map) => mindmap(&mut blocks, map),
            Part::Quiz(quiz) => self::quiz(&mut blocks, quiz, options.answers),
            Part::Flashcards(cards) => flashcards(&mut blocks, cards, options.answers),
            Part::Exam(exam) => self::exam(&mut blocks, exam, options.answers),
            Part::LessonPlan(plan) => lesson_plan(&mut blocks, plan),
        }
    }
    sources(&mut blocks, document);
    let cut = cut_to_budget(&mut blocks, options.budget);
    if cut {
        blocks.push(Block::paragraph(vec![Span::italic(format!(
            "This export stops here: the document is longer than the {} characters an export holds.",
            options.budget
        ))]));
    }
    (blocks, cut)
}

/// A part's own title, as a second-level heading when it differs from the document's.
fn part_title(blocks: &mut Vec<Block>, title: &str) {
    let title = title.trim();
    let first = blocks.first().and_then(|block| match block {
        Block::Heading { spans, .. } => spans.first().map(|span| span.text.as_str()),
        _ => None,
    });
    if !title.is_empty() && first != Some(title) {
        blocks.push(Block::heading(2, vec![Span::plain(title)]));
    }
}

fn chat(blocks: &mut Vec<Block>, messages: &[Message]) {
    for message in messages {
        let who = if message.role == "assistant" {
            "Answer"
        } else {
            "Question"
        };
        blocks.push(Block::heading(3, vec![Span::plain(who)]));
        if message.status == "failed" {
            let reason = if message.error.trim().is_empty() {
                "no answer".to_owned()
            } else {
                message.error.trim().to_owned()
            };
            blocks.push(Block::paragraph(vec![Span::italic(format!(
                "(failed: {reason})"
            ))]));
        }
        blocks.extend(markdown_in::parse(&message.text));
        if !message.citations.is_empty() {
            blocks.push(Block::paragraph(vec![Span::bold("Sources")]));
            blocks.push(Block::List {
                ordered: false,
                start: 1,
                items: message
                    .citations
                    .iter()
                    .map(|citation| vec![Block::text(cite(citation.marker, citation))])
                    .collect(),
            });
        }
    }
}

fn cite(marker: Option<u64>, citation: &Citation) -> String {
    let place = [citation.file_name.trim(), citation.location.trim()]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(", ");
    match marker {
        Some(marker) => format!("[{marker}] {place}"),
        None => place,
    }
}

/// The mind map as a nested list from its root. Each node is shown once (a cycle, or a
/// node listed under two parents, ends there), and nesting stops at [`MAX_DEPTH`]: deeper
/// nodes are listed at the deepest level.
fn mindmap(blocks: &mut Vec<Block>, map: &Mindmap) {
    let root = map
        .root
        .clone()
        .filter(|root| map.nodes.contains_key(root))
        .or_else(|| {
            map.nodes
                .iter()
                .find(|(_, node)| node.parent.is_none())
                .map(|(id, _)| id.clone())
        });
    let Some(root) = root else {
        return;
    };
    let mut seen = HashSet::new();
    seen.insert(root.clone());
    let label = map.nodes.get(&root).map_or("", |node| node.label.as_str());
    let items = subtree(map, &root, 1, &mut seen);
    if blocks.len() > 1 || document_title_differs(blocks, label) {
        blocks.push(Block::heading(2, vec![Span::plain(label)]));
    }
    if !items.is_empty() {
        blocks.push(Block::List {
            ordered: false,
            start: 1,
            items,
        });
    }
}

fn document_title_differs(blocks: &[Block], label: &str) -> bool {
    !matches!(blocks.first(), Some(Block::Heading { spans, .. })
        if spans.first().is_some_and(|span| span.text == label.trim()))
}

/// The items under `id`: an explicit work list instead of recursion, so a map of any depth
/// or shape costs one pass over its nodes.
fn subtree(map: &Mindmap, id: &str, depth: usize, seen: &mut HashSet<String>) -> Vec<Vec<Block>> {
    let mut items = Vec::new();
    for child in children(map, id) {
        if !seen.insert(child.clone()) {
            continue;
        }
        let label = map.nodes.get(&child).map_or("", |node| node.label.as_str());
        let mut item = vec![Block::text(label)];
        if depth < MAX_DEPTH {
            let nested = subtree(map, &child, depth + 1, seen);
            if !nested.is_empty() {
                item.push(Block::List {
                    ordered: false,
                    start: 1,
                    items: nested,
                });
            }
            items.push(item);
        } else {
            items.push(item);
            // At the depth bound: the rest of this branch, listed flat.
            let mut pending: Vec<String> = children(map, &child);
            while let Some(next) = pending.pop() {
                if seen.insert(next.clone()) {
                    let label = map.nodes.get(&next).map_or("", |node| node.label.as_str());
                    items.push(vec![Block::text(label)]);
                    let mut more = children(map, &next);
                    more.reverse();
                    pending.extend(more);
                }
            }
        }
    }
    items
}

/// A node's children: its `children` list if it has one, else the nodes naming it parent.
fn children(map: &Mindmap, id: &str) -> Vec<String> {
    match map.nodes.get(id).and_then(|node| node.children.as_ref()) {
        Some(children) => children
            .iter()
            .filter(|child| map.nodes.contains_key(*child))
            .cloned()
            .collect(),
        None => map
            .nodes
            .iter()
            .filter(|(_, node)| node.parent.as_deref() == Some(id))
            .map(|(child, _)| child.clone())
            .collect(),
    }
}

fn marks(marks: Option<u64>) -> String {
    match marks {
        Some(1) => " (1 mark)".to_owned(),
        Some(n) => format!(" ({n} marks)"),
        None => String::new(),
    }
}

fn letter(index: usize) -> String {
    match u8::try_from(index).ok().filter(|i| *i < 26) {
        Some(i) => char::from(b'A' + i).to_string(),
        None => (index + 1).to_string(),
    }
}

/// A question: number and marks, prompt, options (the right one marked with answers),
/// and with answers its explanation, model answer or marking guidance.
fn question(blocks: &mut Vec<Block>, number: usize, q: &Question, answers: bool) {
    blocks.push(Block::paragraph(vec![
        Span::bold(format!("Question {number}")),
        Span::plain(marks(q.marks)),
    ]));
    if !q.prompt.trim().is_empty() {
        blocks.push(Block::text(q.prompt.trim()));
    }
    if !q.options.is_empty() {
        let items = q
            .options
            .iter()
            .enumerate()
            .map(|(i, option)| {
                let mut spans = vec![Span::plain(format!("{}. {}", letter(i), option.trim()))];
                if answers && q.answer == Some(i) {
                    spans.push(Span::bold(" (correct answer)"));
                }
                vec![Block::paragraph(spans)]
            })
            .collect();
        blocks.push(Block::List {
            ordered: false,
            start: 1,
            items,
        });
    }
    if answers {
        for (label, text) in [
            ("Explanation: ", &q.explanation),
            ("Model answer: ", &q.model_answer),
            ("Marking guidance: ", &q.guidance),
        ] {
            if !text.trim().is_empty() {
                blocks.push(Block::paragraph(vec![
                    Span::bold(label),
                    Span::plain(text.trim()),
                ]));
            }
        }
    } else if q.kind == "short_answer" || q.kind == "essay" {
        let lines = if q.kind == "essay" { 8 } else { 3 };
        blocks.push(Block::text(vec!["_".repeat(60); lines].join("\n")));
    }
}

/// With answers: a table of each question's right option or model answer.
fn answer_key<'a>(blocks: &mut Vec<Block>, questions: impl Iterator<Item = &'a Question>) {
    let rows: Vec<Vec<Vec<Span>>> = questions
        .enumerate()
        .filter_map(|(i, q)| {
            let answer = match q.answer.filter(|a| *a < q.options.len()) {
                Some(a) => format!("{}. {}", letter(a), q.options[a].trim()),
                None if !q.model_answer.trim().is_empty() => q.model_answer.trim().to_owned(),
                None => return None,
            };
            let marks = q.marks.map(|m| m.to_string()).unwrap_or_default();
            Some(vec![
                vec![Span::plain((i + 1).to_string())],
                vec![Span::plain(answer)],
                vec![Span::plain(marks)],
            ])
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    blocks.push(Block::heading(2, vec![Span::plain("Answer key")]));
    blocks.push(Block::Table {
        header: vec![
            vec![Span::plain("Question")],
            vec![Span::plain("Answer")],
            vec![Span::plain("Marks")],
        ],
        rows,
    });
}

fn quiz(blocks: &mut Vec<Block>, quiz: &Quiz, answers: bool) {
    part_title(blocks, &quiz.title);
    for (i, q) in quiz.questions.iter().enumerate() {
        question(blocks, i + 1, q, answers);
    }
    if answers {
        answer_key(blocks, quiz.questions.iter());
    }
}

fn flashcards(blocks: &mut Vec<Block>, cards: &Flashcards, answers: bool) {
    part_title(blocks, &cards.title);
    if cards.cards.is_empty() {
        return;
    }
    if answers {
        blocks.push(Block::Table {
            header: vec![vec![Span::plain("Front")], vec![Span::plain("Back")]],
            rows: cards
                .cards
                .iter()
                .map(|(front, back)| {
                    vec![
                        vec![Span::plain(front.trim())],
                        vec![Span::plain(back.trim())],
                    ]
                })
                .collect(),
        });
    } else {
        blocks.push(Block::List {
            ordered: true,
            start: 1,
            items: cards
                .cards
                .iter()
                .map(|(front, _)| vec![Block::text(front.trim())])
                .collect(),
        });
    }
}

fn exam(blocks: &mut Vec<Block>, exam: &Exam, answers: bool) {
    part_title(blocks, &exam.title);
    let mut facts = Vec::new();
    if let Some(minutes) = exam.duration_minutes {
        facts.push(format!("Duration: {minutes} minutes"));
    }
    if let Some(total) = exam.total_marks {
        facts.push(format!("Total marks: {total}"));
    }
    if !facts.is_empty() {
        blocks.push(Block::text(facts.join(" · ")));
    }
    let mut number = 0;
    for (title, questions) in &exam.sections {
        if !title.trim().is_empty() {
            blocks.push(Block::heading(2, vec![Span::plain(title.trim())]));
        }
        for q in questions {
            number += 1;
            question(blocks, number, q, answers);
        }
    }
    if answers {
        answer_key(blocks, exam.sections.iter().flat_map(|(_, q)| q.iter()));
    }
}

fn lesson_plan(blocks: &mut Vec<Block>, plan: &LessonPlan) {
    part_title(blocks, &plan.title);
    let list = |items: &[String]| Block::List {
        ordered: false,
        start: 1,
        items: items
            .iter()
            .map(|item| vec![Block::text(item.trim())])
            .collect(),
    };
    if !plan.objectives.is_empty() {
        blocks.push(Block::heading(2, vec![Span::plain("Objectives")]));
        blocks.push(list(&plan.objectives));
    }
    if !plan.timeline.is_empty() {
        blocks.push(Block::heading(2, vec![Span::plain("Timeline")]));
        blocks.push(Block::Table {
            header: vec![vec![Span::plain("Minutes")], vec![Span::plain("Activity")]],
            rows: plan
                .timeline
                .iter()
                .map(|(minutes, activity)| {
                    let minutes = minutes.map(|m| m.to_string()).unwrap_or_default();
                    vec![
                        vec![Span::plain(minutes)],
                        vec![Span::plain(activity.trim())],
                    ]
                })
                .collect(),
        });
    }
    if !plan.activities.is_empty() {
        blocks.push(Block::heading(2, vec![Span::plain("Activities")]));
        for (name, description) in &plan.activities {
            blocks.push(Block::heading(3, vec![Span::plain(name.trim())]));
            if !description.trim().is_empty() {
                blocks.push(Block::text(description.trim()));
            }
        }
    }
    if !plan.assessment.is_empty() {
        blocks.push(Block::heading(2, vec![Span::plain("Assessment")]));
        blocks.push(list(&plan.assessment));
    }
}

/// The citations of the markers (`[n]`) the rendered text uses: without answers, the
/// passages behind explanations are not listed.
fn sources(blocks: &mut Vec<Block>, document: &Document) {
    if document.sources.is_empty() {
        return;
    }
    let mut used = BTreeSet::new();
    for_each_text(blocks, &mut |text| used.extend(markers(text)));
    let items: Vec<Vec<Block>> = document
        .sources
        .iter()
        .filter(|(marker, _)| used.contains(*marker))
        .map(|(marker, citation)| vec![Block::text(cite(Some(*marker), citation))])
        .collect();
    if items.is_empty() {
        return;
    }
    blocks.push(Block::heading(2, vec![Span::plain("Sources")]));
    blocks.push(Block::List {
        ordered: false,
        start: 1,
        items,
    });
}

/// The numbers `n` of every `[n]` in `text`.
fn markers(text: &str) -> Vec<u64> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        rest = &rest[open + 1..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !digits.is_empty()
            && rest[digits.len()..].starts_with(']')
            && let Ok(n) = digits.parse()
        {
            found.push(n);
        }
    }
    found
}

/// Cuts `blocks` after `budget` characters of text (counting every span, cell and code
/// line); returns whether anything was cut. The block where the budget ends keeps its
/// first characters.
fn cut_to_budget(blocks: &mut Vec<Block>, budget: usize) -> bool {
    let mut left = budget;
    cut_blocks(blocks, &mut left)
}

fn cut_blocks(blocks: &mut Vec<Block>, left: &mut usize) -> bool {
    for (i, block) in blocks.iter_mut().enumerate() {
        if cut_block(block, left) {
            blocks.truncate(i + 1);
            return true;
        }
    }
    false
}

fn cut_block(block: &mut Block, left: &mut usize) -> bool {
    match block {
        Block::Heading { spans, .. } | Block::Paragraph { spans, .. } => cut_spans(spans, left),
        Block::List { items, .. } => {
            for (i, item) in items.iter_mut().enumerate() {
                if cut_blocks(item, left) {
                    items.truncate(i + 1);
                    return true;
                }
            }
            false
        }
        Block::Table { header, rows } => {
            for cell in header.iter_mut() {
                if cut_spans(cell, left) {
                    rows.clear();
                    return true;
                }
            }
            for (i, row) in rows.iter_mut().enumerate() {
                for cell in row.iter_mut() {
                    if cut_spans(cell, left) {
                        rows.truncate(i + 1);
                        return true;
                    }
                }
            }
            false
        }
        Block::Code { text } => cut_text(text, left),
        Block::Quote { blocks } => cut_blocks(blocks, left),
        Block::Rule => false,
    }
}

fn cut_spans(spans: &mut Vec<Span>, left: &mut usize) -> bool {
    for (i, span) in spans.iter_mut().enumerate() {
        if cut_text(&mut span.text, left) {
            spans.truncate(i + 1);
            return true;
        }
    }
    false
}

fn cut_text(text: &mut String, left: &mut usize) -> bool {
    let count = text.chars().count();
    if count <= *left {
        *left -= count;
        return false;
    }
    let end = text
        .char_indices()
        .nth(*left)
        .map_or(text.len(), |(i, _)| i);
    text.truncate(end);
    text.push('…');
    *left = 0;
    true
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn text_of(blocks: &[Block]) -> String {
        let mut text = String::new();
        for_each_text(blocks, &mut |t| {
            text.push_str(t);
            text.push('\n');
        });
        text
    }

    #[test]
    fn a_mindmap_cycle_ends_and_every_node_shows_once() {
        let doc = Document::from_json(&json!({"mindmap": {"root": "n1", "nodes": {
            "n1": {"label": "Cells", "parent": null, "children": ["n2", "n3"]},
            "n2": {"label": "Nucleus", "parent": "n1", "children": ["n1", "n3"]},
            "n3": {"label": "Membrane", "parent": "n2", "children": ["n2"]},
        }}}));
        let (blocks, _) = compose(&doc, &Options::default());
        let text = text_of(&blocks);
        assert_eq!(text.matches("Nucleus").count(), 1, "{text}");
        assert_eq!(text.matches("Membrane").count(), 1, "{text}");
    }

    #[test]
    fn a_deep_mindmap_is_bounded_and_keeps_every_node() {
        let mut nodes = serde_json::Map::new();
        for i in 0..5_000 {
            let children = if i + 1 < 5_000 {
                vec![format!("n{}", i + 1)]
            } else {
                vec![]
            };
            nodes.insert(
                format!("n{i}"),
                json!({"label": format!("node {i}"), "children": children}),
            );
        }
        let doc = Document::from_json(&json!({"mindmap": {"root": "n0", "nodes": nodes}}));
        let (blocks, _) = compose(&doc, &Options::default());
        let text = text_of(&blocks);
        assert!(text.contains("node 4999"));
        fn depth(blocks: &[Block]) -> usize {
            blocks
                .iter()
                .map(|b| match b {
                    Block::List { items, .. } => {
                        1 + items.iter().map(|i| depth(i)).max().unwrap_or(0)
                    }
                    _ => 0,
                })
                .max()
                .unwrap_or(0)
        }
        assert!(depth(&blocks) <= MAX_DEPTH, "{}", depth(&blocks));
    }

    #[test]
    fn answers_show_only_when_asked() {
        let doc = Document::from_json(&json!({"quiz": {"title": "Cells", "questions": [
            {"prompt": "Powerhouse?", "options": ["Nucleus", "Mitochondria"], "answer": 1,
             "explanation": "It makes ATP [1].", "marks": 1}
        ]}, "sources": {"1": {"file_name": "bio.pdf", "location": "p. 3", "marker": 1}}}));
        let with = text_of(
            &compose(
                &doc,
                &Options {
                    answers: true,
                    ..Options::default()
                },
            )
            .0,
        );
        let without = text_of(&compose(&doc, &Options::default()).0);
        for shown in [
            "correct answer",
            "It makes ATP",
            "Answer key",
            "bio.pdf, p. 3",
        ] {
            assert!(with.contains(shown), "{shown}: {with}");
            assert!(!without.contains(shown), "{shown}: {without}");
        }
        assert!(without.contains("Powerhouse?") && without.contains("B. Mitochondria"));
    }

    #[test]
    fn the_budget_cuts_and_says_so() {
        let doc = Document::from_json(&json!({"content": "word ".repeat(1_000)}));
        let options = Options {
            budget: 100,
            ..Options::default()
        };
        let (blocks, cut) = compose(&doc, &options);
        assert!(cut);
        let text = text_of(&blocks);
        assert!(text.contains("export stops here"), "{text}");
        assert!(text.chars().count() < 300, "{}", text.len());
        let (_, cut) = compose(&doc, &Options::default());
        assert!(!cut);
    }
}
