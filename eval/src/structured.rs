//! Whether a structured AI document is usable by a class, judged from the document as a
//! client reads it (shapes in `docs/ai.md`), not from what the server says of it.
//!
//! The checks are the minimum a teacher needs, and ignore fields they do not know (the
//! server may add some): a quiz has questions, each with at least two options and a correct
//! answer among them; flashcards have both sides; an exam's questions are well formed and
//! its marks add up; a lesson plan has objectives and a timeline; a mind map is one tree of
//! labelled nodes, more than its root.

use serde_json::Value;

/// Why the structured value of a job of `kind` (its document's root map of the same name)
/// is not valid, or `None` when it is.
pub fn problem(kind: &str, value: &Value) -> Option<String> {
    match kind {
        "quiz" => quiz(value),
        "flashcards" => flashcards(value),
        "exam" => exam(value),
        "lesson_plan" => lesson_plan(value),
        "mindmap" => mindmap(value),
        other => Some(format!("unknown kind {other}")),
    }
}

fn non_empty_string(value: &Value) -> bool {
    value.as_str().is_some_and(|text| !text.trim().is_empty())
}

fn items<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// A whole number stored in a document (Yjs numbers may come back as floats).
fn whole(value: &Value) -> Option<i64> {
    let number = value.as_f64()?;
    (number.fract() == 0.0).then_some(number as i64)
}

/// A multiple-choice question: at least two non-empty options and an answer index in range.
fn choice(question: &Value) -> Option<String> {
    let options = items(question, "options");
    if options.len() < 2 || !options.iter().all(non_empty_string) {
        return Some(format!("needs at least two options: {question}"));
    }
    match question.get("answer").and_then(whole) {
        Some(answer) if (0..options.len() as i64).contains(&answer) => None,
        _ => Some(format!("answer index out of range: {question}")),
    }
}

fn quiz(value: &Value) -> Option<String> {
    let questions = items(value, "questions");
    if questions.is_empty() {
        return Some("a quiz without questions".to_owned());
    }
    questions.iter().find_map(|question| {
        if !non_empty_string(&question["prompt"]) {
            return Some(format!("a question without a prompt: {question}"));
        }
        choice(question)
    })
}

fn flashcards(value: &Value) -> Option<String> {
    let cards = items(value, "cards");
    if cards.is_empty() {
        return Some("no cards".to_owned());
    }
    cards.iter().find_map(|card| {
        (!non_empty_string(&card["front"]) || !non_empty_string(&card["back"]))
            .then(|| format!("a card without two sides: {card}"))
    })
}

fn exam(value: &Value) -> Option<String> {
    let sections = items(value, "sections");
    if sections.is_empty() {
        return Some("an exam without sections".to_owned());
    }
    let mut marks = 0;
    for section in sections {
        let questions = items(section, "questions");
        if questions.is_empty() {
            return Some(format!("a section without questions: {section}"));
        }
        for question in questions {
            if !non_empty_string(&question["prompt"]) {
                return Some(format!("a question without a prompt: {question}"));
            }
            match question.get("marks").and_then(whole) {
                Some(mark) if mark > 0 => marks += mark,
                _ => return Some(format!("a question without marks: {question}")),
            }
            let problem = match question["kind"].as_str() {
                Some("multiple_choice") => choice(question),
                Some("short_answer") => (!non_empty_string(&question["model_answer"]))
                    .then(|| format!("a short answer without a model answer: {question}")),
                Some("essay") => (!non_empty_string(&question["guidance"]))
                    .then(|| format!("an essay question without guidance: {question}")),
                _ => Some(format!("a question of no known kind: {question}")),
            };
            if problem.is_some() {
                return problem;
            }
        }
    }
    match value.get("total_marks").and_then(whole) {
        Some(total) if total == marks => None,
        _ => Some(format!(
            "total_marks {} is not the sum of the marks, {marks}",
            value["total_marks"]
        )),
    }
}

fn lesson_plan(value: &Value) -> Option<String> {
    if !non_empty_string(&value["title"]) {
        return Some("a lesson plan without a title".to_owned());
    }
    let objectives = items(value, "objectives");
    if objectives.is_empty() || !objectives.iter().all(non_empty_string) {
        return Some("no objectives".to_owned());
    }
    let timeline = items(value, "timeline");
    if timeline.is_empty() {
        return Some("no timeline".to_owned());
    }
    timeline.iter().find_map(|step| {
        let minutes = step.get("minutes").and_then(whole);
        (minutes.is_none_or(|minutes| minutes <= 0) || !non_empty_string(&step["activity"]))
            .then(|| format!("a timeline step without minutes or activity: {step}"))
    })
}

fn mindmap(value: &Value) -> Option<String> {
    let Some(nodes) = value.get("nodes").and_then(Value::as_object) else {
        return Some("a mind map without nodes".to_owned());
    };
    let Some(root) = value.get("root").and_then(Value::as_str) else {
        return Some("a mind map without a root".to_owned());
    };
    if !nodes.contains_key(root) {
        return Some(format!("the root {root} is not a node"));
    }
    if nodes.len() < 2 {
        return Some("a mind map with its root alone".to_owned());
    }
    for (id, node) in nodes {
        if !non_empty_string(&node["label"]) {
            return Some(format!("node {id} has no label"));
        }
        match node.get("parent").and_then(Value::as_str) {
            None if id == root => {}
            None => return Some(format!("node {id} is a second root")),
            Some(parent) if nodes.contains_key(parent) => {}
            Some(parent) => return Some(format!("node {id} hangs from a missing node {parent}")),
        }
    }
    // Every node reachable from the root: no cycles, nothing detached.
    let mut seen = std::collections::HashSet::from([root.to_owned()]);
    let mut frontier = vec![root.to_owned()];
    while let Some(id) = frontier.pop() {
        for (child, node) in nodes {
            if node["parent"].as_str() == Some(id.as_str()) && seen.insert(child.clone()) {
                frontier.push(child.clone());
            }
        }
    }
    (seen.len() != nodes.len()).then(|| "nodes not reachable from the root".to_owned())
}

/// Every string in `value`, one per line: the text a degeneracy check reads.
pub fn strings(value: &Value) -> String {
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(text) => out.push(text.clone()),
            Value::Array(items) => items.iter().for_each(|item| walk(item, out)),
            Value::Object(map) => map.values().for_each(|item| walk(item, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, &mut out);
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_well_formed_quiz_is_valid_and_a_broken_one_is_not() {
        let good = json!({"title": "Floods", "questions": [
            {"prompt": "Peak discharge?", "options": ["148 cumecs", "95 cumecs"], "answer": 0.0}
        ]});
        assert_eq!(problem("quiz", &good), None);
        for bad in [
            json!({"title": "Floods", "questions": []}),
            json!({"questions": [{"prompt": "Q?", "options": ["only one"], "answer": 0}]}),
            json!({"questions": [{"prompt": "Q?", "options": ["a", "b"], "answer": 2}]}),
            json!({"questions": [{"prompt": "", "options": ["a", "b"], "answer": 0}]}),
        ] {
            assert!(problem("quiz", &bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn an_exam_must_add_up() {
        let exam = |total| {
            json!({"title": "T", "total_marks": total, "sections": [{"title": "A", "questions": [
                {"prompt": "Define baseflow.", "marks": 2, "kind": "short_answer", "model_answer": "Groundwater."},
                {"prompt": "Which?", "marks": 1, "kind": "multiple_choice", "options": ["a", "b"], "answer": 1}
            ]}]})
        };
        assert_eq!(problem("exam", &exam(3)), None);
        assert!(problem("exam", &exam(4)).is_some());
    }

    #[test]
    fn a_mind_map_is_one_tree_larger_than_its_root() {
        let good = json!({"root": "n1", "nodes": {
            "n1": {"label": "Basin", "parent": null, "children": ["n2"]},
            "n2": {"label": "Stores", "parent": "n1", "children": []}
        }});
        assert_eq!(problem("mindmap", &good), None);
        let root_alone = json!({"root": "n1", "nodes": {
            "n1": {"label": "Basin", "parent": null, "children": []}
        }});
        assert!(problem("mindmap", &root_alone).is_some());
        let two_roots = json!({"root": "n1", "nodes": {
            "n1": {"label": "Basin", "parent": null, "children": []},
            "n2": {"label": "Basin", "parent": null, "children": []}
        }});
        assert!(problem("mindmap", &two_roots).is_some());
        let cycle = json!({"root": "n1", "nodes": {
            "n1": {"label": "Basin", "parent": null, "children": []},
            "n2": {"label": "A", "parent": "n3", "children": []},
            "n3": {"label": "B", "parent": "n2", "children": []}
        }});
        assert!(problem("mindmap", &cycle).is_some());
    }

    #[test]
    fn flashcards_and_lesson_plans_need_their_parts() {
        assert_eq!(
            problem(
                "flashcards",
                &json!({"cards": [{"front": "Okta", "back": "An eighth of the sky"}]})
            ),
            None
        );
        assert!(
            problem(
                "flashcards",
                &json!({"cards": [{"front": "Okta", "back": ""}]})
            )
            .is_some()
        );
        let plan = json!({"title": "Fronts", "objectives": ["Name the fronts"],
            "timeline": [{"minutes": 10, "activity": "Starter"}], "activities": [], "assessment": []});
        assert_eq!(problem("lesson_plan", &plan), None);
        let no_timeline = json!({"title": "Fronts", "objectives": ["x"], "timeline": []});
        assert!(problem("lesson_plan", &no_timeline).is_some());
    }
}
