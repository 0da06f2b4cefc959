//! Writing structured outputs into a shared `yrs` document: the contract clients read.
//!
//! Values are stored as nested `Y.Map`s and `Y.Array`s (never as a JSON string), so a
//! client can observe and edit one question or node without rewriting the rest. Numbers are
//! stored as integers (`Any::Number(Int)`), which Yjs reads as plain JS numbers (not
//! `BigInt`).
//!
//! | root `Y.Map` | key | type | content |
//! |---|---|---|---|
//! | `quiz` | `title` | string | |
//! | | `questions` | `Y.Array<Y.Map>` | `{prompt: string, options: Y.Array<string>, answer: number (index from 0), explanation: string, marks: number}` |
//! | `flashcards` | `title` | string | |
//! | | `cards` | `Y.Array<Y.Map>` | `{front: string, back: string}` |
//! | `exam` | `title` | string | |
//! | | `duration_minutes` | number | |
//! | | `total_marks` | number | always the sum of the questions' marks |
//! | | `sections` | `Y.Array<Y.Map>` | `{title: string, questions: Y.Array<Y.Map>}`; a question is `{prompt, marks, kind: "multiple_choice" \| "short_answer" \| "essay"}` plus `options: Y.Array<string>, answer: number` (multiple choice), `model_answer: string` (short answer) or `guidance: string` (essay) |
//! | `lesson_plan` | `title` | string | |
//! | | `objectives`, `assessment` | `Y.Array<string>` | |
//! | | `timeline` | `Y.Array<Y.Map>` | `{minutes: number, activity: string}` |
//! | | `activities` | `Y.Array<Y.Map>` | `{name: string, description: string}` |
//! | `mindmap` | `root` | string | id of the root node; set by the first node, never changed |
//! | | `nodes` | `Y.Map<id, Y.Map>` | `{label: string, parent: string \| null, children: Y.Array<string>}` (child ids in order) |
//!
//! Mind-map ids are `n1`, `n2`, ... from one [`MindmapBuilder`](super::MindmapBuilder);
//! call [`reset_mindmap`] before streaming a new map into a document that may hold an old
//! one. A node added without a parent when a root already exists becomes a child of the
//! root, so the map always has exactly one root, unless it names the root again: then it is
//! not added at all (the builder has the same rule, see [`mindmap`](super::mindmap)).
//!
//! **API Boundary:** the writers assume one writer per map (the job engine). Concurrent
//! writes from two peers converge, but each replaces the other's nested maps wholesale.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use yrs::{
    Any, Array, ArrayPrelim, In, Map, MapPrelim, MapRef, Number, Out, TransactionMut, WriteTxn,
};

use super::mindmap::{MindmapEvent, same_label};
use super::types::{ExamPaper, Flashcards, LessonPlan, Mindmap, Quiz};

/// Root map of a [`Quiz`].
pub const QUIZ_MAP: &str = "quiz";
/// Root map of [`Flashcards`].
pub const FLASHCARDS_MAP: &str = "flashcards";
/// Root map of an [`ExamPaper`].
pub const EXAM_MAP: &str = "exam";
/// Root map of a [`LessonPlan`].
pub const LESSON_PLAN_MAP: &str = "lesson_plan";
/// Root map of a [`Mindmap`].
pub const MINDMAP_MAP: &str = "mindmap";

/// Writes `value` into the root map `map_name` as nested `Y.Map`/`Y.Array`, replacing the
/// map's previous content: keys absent from `value` are removed, scalars that did not change
/// are left alone (no needless update), containers are rewritten. A value that is not an
/// object is stored under the key `value`.
pub fn write_structured(txn: &mut TransactionMut, map_name: &str, value: &Value) {
    let map = txn.get_or_insert_map(map_name);
    let entries: Vec<(&str, &Value)> = match value {
        Value::Object(obj) => obj.iter().map(|(k, v)| (k.as_str(), v)).collect(),
        other => vec![("value", other)],
    };
    let stale: Vec<String> = map
        .keys(txn)
        .filter(|k| !entries.iter().any(|(key, _)| key == k))
        .map(str::to_owned)
        .collect();
    for key in stale {
        map.remove(txn, &key);
    }
    for (key, value) in entries {
        let new = to_in(value);
        if let (In::Any(new_any), Some(Out::Any(old))) = (&new, map.get(txn, key))
            && *new_any == old
        {
            continue;
        }
        map.insert(txn, key, new);
    }
}

/// Converts JSON to `yrs` input: objects and arrays become shared types.
fn to_in(value: &Value) -> In {
    match value {
        Value::Object(obj) => In::Map(MapPrelim::from_iter(
            obj.iter()
                .map(|(k, v)| (Arc::<str>::from(k.as_str()), to_in(v))),
        )),
        Value::Array(items) => In::Array(ArrayPrelim::from_iter(items.iter().map(to_in))),
        scalar => In::Any(to_any(scalar)),
    }
}

fn to_any(value: &Value) -> Any {
    match value {
        Value::Null => Any::Null,
        Value::Bool(b) => Any::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Any::Number(Number::Int(i)),
            None => Any::Number(Number::Float(n.as_f64().unwrap_or(0.0))),
        },
        Value::String(s) => Any::String(Arc::from(s.as_str())),
        Value::Array(items) => Any::Array(items.iter().map(to_any).collect()),
        Value::Object(obj) => Any::Map(Arc::new(
            obj.iter().map(|(k, v)| (k.clone(), to_any(v))).collect(),
        )),
    }
}

/// Serialises a validated value and writes it. These types are plain structs with string
/// keys, for which `serde_json` cannot fail; should it ever, nothing is written and the
/// error is logged rather than half a value stored.
fn write_serialized<T: Serialize>(txn: &mut TransactionMut, map_name: &str, value: &T) {
    match serde_json::to_value(value) {
        Ok(json) => write_structured(txn, map_name, &json),
        Err(error) => tracing::error!(%error, map_name, "could not serialise a structured value"),
    }
}

/// Writes a quiz into the root map [`QUIZ_MAP`].
pub fn write_quiz(txn: &mut TransactionMut, quiz: &Quiz) {
    write_serialized(txn, QUIZ_MAP, quiz);
}

/// Writes flashcards into the root map [`FLASHCARDS_MAP`].
pub fn write_flashcards(txn: &mut TransactionMut, cards: &Flashcards) {
    write_serialized(txn, FLASHCARDS_MAP, cards);
}

/// Writes an exam paper into the root map [`EXAM_MAP`].
pub fn write_exam(txn: &mut TransactionMut, exam: &ExamPaper) {
    write_serialized(txn, EXAM_MAP, exam);
}

/// Writes a lesson plan into the root map [`LESSON_PLAN_MAP`].
pub fn write_lesson_plan(txn: &mut TransactionMut, plan: &LessonPlan) {
    write_serialized(txn, LESSON_PLAN_MAP, plan);
}

/// Empties the root map [`MINDMAP_MAP`], before a new map is streamed in.
pub fn reset_mindmap(txn: &mut TransactionMut) {
    let map = txn.get_or_insert_map(MINDMAP_MAP);
    map.clear(txn);
}

/// Replaces the mind map in the document with `mindmap` (ids as [`Mindmap::to_events`]).
pub fn write_mindmap(txn: &mut TransactionMut, mindmap: &Mindmap) {
    reset_mindmap(txn);
    for event in mindmap.to_events() {
        apply_mindmap_event(txn, &event);
    }
}

/// Applies one streamed event to the root map [`MINDMAP_MAP`]. Idempotent: a node id
/// already present is left alone, so a retried event does not duplicate a child.
pub fn apply_mindmap_event(txn: &mut TransactionMut, event: &MindmapEvent) {
    let MindmapEvent::AddNode {
        id,
        parent_id,
        label,
    } = event;
    let mindmap = txn.get_or_insert_map(MINDMAP_MAP);
    let nodes = match mindmap.get(txn, "nodes") {
        Some(Out::YMap(nodes)) => nodes,
        _ => mindmap.insert(txn, "nodes", MapPrelim::default()),
    };
    if nodes.get(txn, id).is_some() {
        return;
    }
    let root = match mindmap.get(txn, "root") {
        Some(Out::Any(Any::String(root))) => Some(root.to_string()),
        _ => None,
    };
    // One root only: a second parentless node naming the root is the root again (models
    // repeat the topic), so it is not added; any other hangs under the root.
    if parent_id.is_none()
        && let Some(root) = &root
        && let Some(Out::YMap(root_node)) = nodes.get(txn, root)
        && let Some(Out::Any(Any::String(root_label))) = root_node.get(txn, "label")
        && same_label(&root_label, label)
    {
        return;
    }
    let parent = match (parent_id, &root) {
        (Some(parent), _) => Some(parent.clone()),
        (None, Some(root)) => Some(root.clone()),
        (None, None) => None,
    };
    let node = MapPrelim::from_iter([
        ("label", In::Any(Any::String(Arc::from(label.as_str())))),
        (
            "parent",
            In::Any(match &parent {
                Some(p) => Any::String(Arc::from(p.as_str())),
                None => Any::Null,
            }),
        ),
        ("children", In::Array(ArrayPrelim::default())),
    ]);
    nodes.insert(txn, id.as_str(), node);
    match parent {
        Some(parent) => push_child(txn, &nodes, &parent, id),
        None => {
            mindmap.insert(txn, "root", id.as_str());
        }
    }
}

/// Appends `child` to the parent's `children`. A parent not (yet) in the document keeps
/// only the child's `parent` pointer, from which clients can still place it.
fn push_child(txn: &mut TransactionMut, nodes: &MapRef, parent: &str, child: &str) {
    if let Some(Out::YMap(parent)) = nodes.get(txn, parent)
        && let Some(Out::YArray(children)) = parent.get(txn, "children")
    {
        children.push_back(txn, child);
    }
}

#[cfg(test)]
mod tests {
    use yrs::types::ToJson as _;
    use yrs::{Doc, Transact as _};

    use super::*;

    fn add(txn: &mut TransactionMut, id: &str, parent: Option<&str>, label: &str) {
        apply_mindmap_event(
            txn,
            &MindmapEvent::AddNode {
                id: id.into(),
                parent_id: parent.map(str::to_owned),
                label: label.into(),
            },
        );
    }

    #[test]
    fn a_second_parentless_node_naming_the_root_is_not_added() {
        let doc = Doc::new();
        {
            let mut txn = doc.transact_mut();
            add(&mut txn, "n1", None, "Photosynthesis");
            add(&mut txn, "x1", None, "photosynthesis mind map");
            add(&mut txn, "x2", None, "Light");
        }
        let map = doc.get_or_insert_map(MINDMAP_MAP);
        let txn = doc.transact();
        let json = serde_json::to_value(map.to_json(&txn)).expect("json");
        let nodes = json["nodes"].as_object().expect("nodes");
        assert_eq!(nodes.len(), 2, "{json}");
        assert_eq!(json["nodes"]["n1"]["children"], serde_json::json!(["x2"]));
    }
}
