//! Mind maps from an indented outline, node by node as the model writes.
//!
//! A mind map is asked for as an outline (`- label` lines, 2 spaces per level) rather than
//! JSON: every finished line is a finished node, so the map grows live in front of the
//! class, and a model cut off by `max_tokens` still leaves a valid map.
//!
//! # Tree rules
//! - Indentation decides the parent: a line's parent is the nearest earlier line indented
//!   *less* than it. Tabs count as 2 spaces; odd or inconsistent widths therefore still map
//!   to the nearest sensible parent.
//! - **One root.** Without a synthetic root ([`MindmapBuilder::new`]) the first outline line
//!   is the root, and any later line at the root's level or above becomes a child of it
//!   (models often write the topic and then its branches flush left). With
//!   [`MindmapBuilder::with_root`] the root is the given topic, emitted before any line.
//!   Either way the root never changes once emitted, so clients never see a node
//!   re-parented.
//! - **No duplicates.** Small models very often repeat the topic as their first line
//!   ("- Photosynthesis" under the root "Photosynthesis"), and sometimes repeat a branch.
//!   A line naming the root, its own parent or an existing sibling (compared by
//!   [`same_label`]: case, punctuation, articles and a trailing "mind map" aside) adds no
//!   node: the line stands for that node, so the lines indented under it become its
//!   children. A map therefore never shows the topic twice.
//! - A map needs at least one node besides its root ([`MindmapBuilder::has_branches`]): a
//!   root alone is not a mind map, and parsing it fails.
//! - Depth is capped at [`MAX_DEPTH`] levels; deeper lines attach at the last level.
//! - Bullets `-` `*` `+` `•`, numbers (`1.`, `2)`) and Markdown headings are accepted;
//!   `**bold**`, trailing colons and code fences are removed; empty labels are skipped.
//!   Lines without a bullet are prose ("Here is your mind map:") and skipped, except a short
//!   first line, which models use for the topic.
//! - At most [`MAX_NODES`] nodes, so a model stuck in a loop cannot flood the document.

use serde::{Deserialize, Serialize};

use super::json;
use super::types::{Mindmap, Node};
use super::{Parsed, Repair, StructuredError};

/// Most levels in a map, the root included.
pub const MAX_DEPTH: usize = 6;

/// Most nodes in a map.
pub const MAX_NODES: usize = 256;

/// Longest label kept, in characters; longer labels are cut with an ellipsis.
pub const MAX_LABEL_CHARS: usize = 120;

/// A change to a streaming mind map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum MindmapEvent {
    /// A node was completed. Parents are always added before their children.
    AddNode {
        /// Unique within one builder: `n1`, `n2`, ... in order of appearance.
        id: String,
        /// The parent's id; `None` only for the root (the first event).
        parent_id: Option<String>,
        /// The node's text; never empty.
        label: String,
    },
}

#[derive(Debug, Clone)]
struct BuiltNode {
    /// The cleaned label.
    label: String,
    /// The parent's index; `None` for the root.
    parent: Option<usize>,
    /// Levels below the root (the root is 0).
    depth: usize,
    /// Children's indexes, in order.
    children: Vec<usize>,
}

/// Turns streamed outline text into [`MindmapEvent`]s, one per completed line.
#[derive(Debug, Clone, Default)]
pub struct MindmapBuilder {
    /// Text after the last newline, waiting for the rest of its line.
    pending: String,
    /// Every node so far, the root first; children point at their parent by index.
    nodes: Vec<BuiltNode>,
    /// Open ancestors: (indent, node). The root's indent is `None` so it is never closed.
    /// A line that repeats a node pushes that node, so its sub-lines hang under it.
    stack: Vec<(Option<usize>, usize)>,
    /// The synthetic root's event has not been returned yet.
    root_unannounced: bool,
    /// An outline line has been seen: from then on, lines without a bullet are prose.
    seen_line: bool,
    /// [`MAX_NODES`] was reached (and recorded once).
    capped: bool,
    /// Non-empty lines read so far, for the paths of repairs.
    line_no: usize,
    /// What was skipped or adjusted, in order.
    repairs: Vec<Repair>,
}

impl MindmapBuilder {
    /// A builder whose first outline line becomes the root.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder with a synthetic root labelled `topic` (id `n1`), returned by the first
    /// [`push`](Self::push) (call `push("")` to show it before the model starts). Every
    /// top-level outline line becomes its child. An empty topic behaves like [`new`](Self::new).
    pub fn with_root(topic: &str) -> Self {
        let mut builder = Self::default();
        let label = clean_label(topic);
        if !label.is_empty() {
            builder.nodes.push(BuiltNode {
                label,
                parent: None,
                depth: 0,
                children: Vec::new(),
            });
            builder.stack.push((None, 0));
            builder.root_unannounced = true;
        }
        builder
    }

    /// Feeds the next piece of streamed text and returns the nodes it completed.
    pub fn push(&mut self, delta: &str) -> Vec<MindmapEvent> {
        let mut events = self.announce_root();
        self.pending.push_str(delta);
        while let Some(end) = self.pending.find('\n') {
            let line: String = self.pending.drain(..=end).collect();
            events.extend(self.line(&line));
        }
        events
    }

    /// Ends the stream: the last line counts even without a newline.
    pub fn finish(&mut self) -> Vec<MindmapEvent> {
        let mut events = self.announce_root();
        let line = std::mem::take(&mut self.pending);
        events.extend(self.line(&line));
        events
    }

    /// The map built so far; `None` before the first node.
    pub fn mindmap(&self) -> Option<Mindmap> {
        if self.nodes.is_empty() {
            return None;
        }
        Some(Mindmap { root: self.tree(0) })
    }

    /// What was skipped or adjusted so far (prose lines, depth caps, node cap).
    pub fn repairs(&self) -> &[Repair] {
        &self.repairs
    }

    fn tree(&self, index: usize) -> Node {
        let node = &self.nodes[index];
        Node {
            label: node.label.clone(),
            children: node.children.iter().map(|&c| self.tree(c)).collect(),
        }
    }

    fn announce_root(&mut self) -> Vec<MindmapEvent> {
        if !std::mem::take(&mut self.root_unannounced) {
            return Vec::new();
        }
        vec![self.event(0)]
    }

    fn event(&self, index: usize) -> MindmapEvent {
        MindmapEvent::AddNode {
            id: id(index),
            parent_id: self.nodes[index].parent.map(id),
            label: self.nodes[index].label.clone(),
        }
    }

    fn skip(&mut self, reason: &str) {
        self.repairs.push(Repair::Dropped {
            path: format!("line {}", self.line_no),
            reason: reason.to_owned(),
        });
    }

    /// Whether the map has a node besides its root (a root alone is not a mind map).
    pub fn has_branches(&self) -> bool {
        self.nodes.len() > 1
    }

    fn line(&mut self, raw: &str) -> Option<MindmapEvent> {
        let raw = raw.trim_end_matches(['\n', '\r']);
        if raw.trim().is_empty() {
            return None;
        }
        self.line_no += 1;
        if raw.trim_start().starts_with("```") {
            return None;
        }
        let mut indent = 0;
        let mut rest = raw;
        for (i, c) in raw.char_indices() {
            match c {
                '\t' => indent += 2,
                c if c.is_whitespace() => indent += 1,
                _ => {
                    rest = &raw[i..];
                    break;
                }
            }
        }
        let (bulleted, body, indent) = match strip_marker(rest) {
            Marker::Bullet(body) => (true, body, indent),
            Marker::Heading(level, body) => (true, body, (level - 1) * 2),
            Marker::None => (false, rest, indent),
        };
        if !bulleted && (self.seen_line || !looks_like_topic(body)) {
            self.skip("not an outline item");
            return None;
        }
        let label = clean_label(body);
        if label.is_empty() {
            self.skip("empty label");
            return None;
        }
        self.seen_line = true;
        self.attach(indent, label)
    }

    /// Adds the node of an outline line indented `indent`, unless it repeats the root, its
    /// parent or a sibling: then the line stands for that node (lines under it become its
    /// children) and nothing is added.
    fn attach(&mut self, indent: usize, label: String) -> Option<MindmapEvent> {
        while let Some(&(Some(open), _)) = self.stack.last() {
            if open >= indent {
                self.stack.pop();
            } else {
                break;
            }
        }
        if let Some(existing) = self.duplicate_of(&label) {
            self.repairs.push(Repair::Converted {
                path: format!("line {}", self.line_no),
                note: format!(
                    "repeats the node {:?}; merged into it",
                    self.nodes[existing].label
                ),
            });
            self.stack.push((Some(indent), existing));
            return None;
        }
        if self.nodes.len() >= MAX_NODES {
            if !std::mem::replace(&mut self.capped, true) {
                self.skip("too many nodes; the rest of the outline is ignored");
            }
            return None;
        }
        let index = self.nodes.len();
        let parent = match self.stack.last() {
            None => None,
            Some(&(_, mut parent)) => {
                if self.nodes[parent].depth + 1 >= MAX_DEPTH {
                    self.repairs.push(Repair::Converted {
                        path: format!("line {}", self.line_no),
                        note: format!(
                            "deeper than {MAX_DEPTH} levels; attached at level {MAX_DEPTH}"
                        ),
                    });
                    while self.nodes[parent].depth + 1 >= MAX_DEPTH {
                        match self.nodes[parent].parent {
                            Some(p) => parent = p,
                            None => break,
                        }
                    }
                }
                Some(parent)
            }
        };
        let depth = parent.map_or(0, |p| self.nodes[p].depth + 1);
        self.nodes.push(BuiltNode {
            label,
            parent,
            depth,
            children: Vec::new(),
        });
        match parent {
            Some(p) => {
                self.nodes[p].children.push(index);
                self.stack.push((Some(indent), index));
            }
            // The first line is the root; it stays open for every later line.
            None => self.stack.push((None, index)),
        }
        Some(self.event(index))
    }

    /// The node a line labelled `label` would repeat: the root, or the parent it would get
    /// (the top of the stack) or one of that parent's children.
    fn duplicate_of(&self, label: &str) -> Option<usize> {
        let root = self.nodes.first()?;
        if same_label(&root.label, label) {
            return Some(0);
        }
        let &(_, parent) = self.stack.last()?;
        let parent_node = &self.nodes[parent];
        if same_label(&parent_node.label, label) {
            return Some(parent);
        }
        parent_node
            .children
            .iter()
            .copied()
            .find(|&child| same_label(&self.nodes[child].label, label))
    }
}

/// Words that do not tell two labels apart: articles, and the "mind map" models append to
/// the topic ("Photosynthesis mind map").
const FILLER_WORDS: [&str; 6] = ["a", "an", "the", "mind", "map", "mindmap"];

/// Whether two labels name the same node: equal once lowercased, reduced to their words
/// (punctuation, Markdown and spacing aside), without [`FILLER_WORDS`] and with a plural
/// `s` dropped ("Cells" and "cell", "The Water Cycle:" and "water cycle"). Labels with no
/// word left are compared as written.
pub fn same_label(a: &str, b: &str) -> bool {
    let (key_a, key_b) = (label_key(a), label_key(b));
    if key_a.is_empty() || key_b.is_empty() {
        return a.trim().to_lowercase() == b.trim().to_lowercase();
    }
    key_a == key_b
}

/// The words of a label that [`same_label`] compares.
fn label_key(label: &str) -> Vec<String> {
    label
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .filter(|word| !FILLER_WORDS.contains(&word.as_str()))
        .map(|word| match word.strip_suffix('s') {
            // "cells" → "cell", but not "gas" → "ga" or "is" → "i".
            Some(stem) if stem.chars().count() >= 3 && !stem.ends_with('s') => stem.to_owned(),
            _ => word,
        })
        .collect()
}

fn id(index: usize) -> String {
    format!("n{}", index + 1)
}

enum Marker<'a> {
    Bullet(&'a str),
    Heading(usize, &'a str),
    None,
}

fn strip_marker(line: &str) -> Marker<'_> {
    let hashes = line.chars().take_while(|&c| c == '#').count();
    if hashes > 0 && line[hashes..].starts_with(' ') {
        return Marker::Heading(hashes.min(MAX_DEPTH), &line[hashes..]);
    }
    let mut chars = line.char_indices();
    match chars.next() {
        Some((_, '-' | '*' | '+' | '•' | '–' | '·')) => {
            let after = &line[line.chars().next().map_or(0, char::len_utf8)..];
            if after.is_empty() || after.starts_with(char::is_whitespace) {
                return Marker::Bullet(after);
            }
            Marker::None
        }
        Some((_, c)) if c.is_ascii_digit() => {
            let digits = line.chars().take_while(char::is_ascii_digit).count();
            let after = &line[digits..];
            match after.strip_prefix(['.', ')']) {
                Some(body) if body.is_empty() || body.starts_with(char::is_whitespace) => {
                    Marker::Bullet(body)
                }
                _ => Marker::None,
            }
        }
        _ => Marker::None,
    }
}

/// A line without a bullet that is short and not a sentence: models put the topic there.
fn looks_like_topic(body: &str) -> bool {
    let body = body.trim();
    if !body.starts_with(char::is_alphanumeric) && !body.starts_with("**") {
        return false;
    }
    let words = body.split_whitespace().count();
    (1..=8).contains(&words) && !body.ends_with([':', '.', '!', '?'])
}

fn clean_label(raw: &str) -> String {
    let mut label = raw.replace("**", "").replace("__", "");
    label = label.split_whitespace().collect::<Vec<_>>().join(" ");
    let label = label
        .trim_matches(|c: char| c == '`' || c == '*' || c == '_')
        .trim();
    let label = label.trim_end_matches(':').trim();
    if label.chars().count() > MAX_LABEL_CHARS {
        let cut: String = label.chars().take(MAX_LABEL_CHARS - 1).collect();
        return format!("{}…", cut.trim_end());
    }
    label.to_owned()
}

/// Parses a complete outline (or, from API models that ignore the instructions, a JSON tree
/// of `{label, children}` objects) into a [`Mindmap`].
pub fn parse_mindmap(output: &str) -> Result<Parsed<Mindmap>, StructuredError> {
    parse_with_root(output, None)
}

pub(crate) fn parse_with_root(
    output: &str,
    root: Option<&str>,
) -> Result<Parsed<Mindmap>, StructuredError> {
    let mut builder = match root {
        Some(topic) => MindmapBuilder::with_root(topic),
        None => MindmapBuilder::new(),
    };
    // API models sometimes answer with a JSON tree despite the instructions.
    let trimmed = output.trim_start();
    if (trimmed.starts_with(['{', '[']) || trimmed.starts_with("```json"))
        && let Some(found) = json::extract(output)
        && let Some(mut tree) = json_node(&found.value, 0)
    {
        let mut repairs: Vec<Repair> = found
            .fixes
            .into_iter()
            .map(|fix| Repair::Syntax { fix })
            .collect();
        if let Some(topic) = root.map(clean_label).filter(|t| !t.is_empty())
            && !same_label(&topic, &tree.label)
        {
            repairs.push(Repair::Converted {
                path: "root".to_owned(),
                note: format!("put under the topic {topic:?}"),
            });
            tree = Node {
                label: topic,
                children: vec![tree],
            };
        }
        let root_label = tree.label.clone();
        merge_duplicates(&mut tree, &root_label, &mut repairs);
        if tree.children.is_empty() {
            return Err(StructuredError::Empty {
                field: "nodes",
                reasons: vec!["the map has only its root".to_owned()],
            });
        }
        return Ok(Parsed {
            value: Mindmap { root: tree },
            repairs,
        });
    }
    builder.push(output);
    builder.finish();
    match builder.mindmap() {
        Some(value) if builder.has_branches() => Ok(Parsed {
            value,
            repairs: builder.repairs,
        }),
        _ => Err(StructuredError::Empty {
            field: "nodes",
            reasons: builder
                .repairs
                .iter()
                .take(3)
                .map(ToString::to_string)
                .collect(),
        }),
    }
}

/// The builder's duplicate rule for a whole tree: a child repeating the root or its parent
/// is replaced by its own children, and children repeating an earlier sibling are merged
/// into it.
fn merge_duplicates(node: &mut Node, root_label: &str, repairs: &mut Vec<Repair>) {
    let mut merged: Vec<Node> = Vec::with_capacity(node.children.len());
    let mut pending: std::collections::VecDeque<Node> = std::mem::take(&mut node.children).into();
    while let Some(child) = pending.pop_front() {
        if same_label(&child.label, &node.label) || same_label(&child.label, root_label) {
            repairs.push(Repair::Converted {
                path: child.label.clone(),
                note: "repeats its parent or the root; its children moved up".to_owned(),
            });
            for (offset, grandchild) in child.children.into_iter().enumerate() {
                pending.insert(offset, grandchild);
            }
        } else if let Some(sibling) = merged
            .iter_mut()
            .find(|sibling| same_label(&sibling.label, &child.label))
        {
            repairs.push(Repair::Converted {
                path: child.label.clone(),
                note: "repeats a sibling; merged into it".to_owned(),
            });
            sibling.children.extend(child.children);
        } else {
            merged.push(child);
        }
    }
    for child in &mut merged {
        merge_duplicates(child, root_label, repairs);
    }
    node.children = merged;
}

fn json_node(value: &serde_json::Value, depth: usize) -> Option<Node> {
    let serde_json::Value::Object(obj) = value else {
        return None;
    };
    if let Some(inner) = obj.get("root").or_else(|| obj.get("mindmap")) {
        return json_node(inner, depth);
    }
    let label = ["label", "name", "title", "text", "topic"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(serde_json::Value::as_str))
        .map(clean_label)
        .filter(|l| !l.is_empty())?;
    let children = if depth + 1 < MAX_DEPTH {
        ["children", "subtopics", "nodes", "branches"]
            .iter()
            .find_map(|k| obj.get(*k).and_then(serde_json::Value::as_array))
            .map(|items| {
                items
                    .iter()
                    .filter_map(|c| json_node(c, depth + 1))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    Some(Node { label, children })
}

impl Mindmap {
    /// The events that build this map from nothing, parents first, with the ids a
    /// [`MindmapBuilder`] would have given (`n1` for the root).
    pub fn to_events(&self) -> Vec<MindmapEvent> {
        fn walk(node: &Node, parent: Option<String>, events: &mut Vec<MindmapEvent>) {
            let id = id(events.len());
            events.push(MindmapEvent::AddNode {
                id: id.clone(),
                parent_id: parent,
                label: node.label.clone(),
            });
            for child in &node.children {
                walk(child, Some(id.clone()), events);
            }
        }
        let mut events = Vec::new();
        walk(&self.root, None, &mut events);
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(node: &Node) -> Vec<&str> {
        node.children
            .iter()
            .map(|child| child.label.as_str())
            .collect()
    }

    fn all_labels(node: &Node) -> Vec<String> {
        let mut found = vec![node.label.clone()];
        for child in &node.children {
            found.extend(all_labels(child));
        }
        found
    }

    #[test]
    fn labels_compare_by_their_words() {
        for (a, b) in [
            ("Photosynthesis", "photosynthesis"),
            ("Photosynthesis", "Photosynthesis Mind Map"),
            ("The Water Cycle:", "water cycle"),
            ("Cells", "cell"),
            ("**Cells**", "Cells."),
            ("CO₂", "co₂"),
        ] {
            assert!(same_label(a, b), "{a} = {b}");
        }
        for (a, b) in [
            ("Light", "Light reactions"),
            ("Gas", "Ga"),
            ("Cells", "Cell wall"),
            ("Mind map", "Photosynthesis"),
        ] {
            assert!(!same_label(a, b), "{a} != {b}");
        }
    }

    #[test]
    fn the_topic_repeated_anywhere_adds_no_second_root() {
        let mut builder = MindmapBuilder::with_root("Photosynthesis");
        let mut events = builder.push(
            "Photosynthesis mind map\n- **Photosynthesis**\n  - Light reactions\n  - Calvin \
             cycle\n- The photosynthesis:\n  - Chlorophyll\n",
        );
        events.extend(builder.finish());
        let map = builder.mindmap().expect("map");
        assert_eq!(map.root.label, "Photosynthesis");
        assert_eq!(
            labels(&map.root),
            ["Light reactions", "Calvin cycle", "Chlorophyll"]
        );
        let roots = all_labels(&map.root)
            .iter()
            .filter(|label| same_label(label, "Photosynthesis"))
            .count();
        assert_eq!(roots, 1);
        // The events say the same: one parentless node, no other with the topic's label.
        assert_eq!(events.len(), 4);
        assert!(events.iter().all(|MindmapEvent::AddNode { label, .. }| {
            label == "Photosynthesis" || !same_label(label, "Photosynthesis")
        }));
    }

    #[test]
    fn a_branch_repeating_its_parent_or_a_sibling_is_merged_into_it() {
        let parsed = parse_mindmap(
            "- Cells\n  - Cells\n    - Nucleus\n  - Membrane\n  - membrane\n    - Proteins\n",
        )
        .expect("map");
        let root = &parsed.value.root;
        assert_eq!(labels(root), ["Nucleus", "Membrane"]);
        assert_eq!(labels(&root.children[1]), ["Proteins"]);
    }

    #[test]
    fn a_root_alone_is_not_a_mind_map() {
        let mut builder = MindmapBuilder::with_root("Photosynthesis");
        builder.push("- Photosynthesis\n");
        builder.finish();
        assert!(!builder.has_branches());
        for (output, topic) in [
            ("- Photosynthesis\n", Some("Photosynthesis")),
            ("Photosynthesis", Some("Photosynthesis")),
            ("- Cells", None),
            (
                r#"{"label": "Photosynthesis", "children": []}"#,
                Some("Photosynthesis"),
            ),
            (
                r#"{"label": "Cells", "children": [{"label": "cells"}]}"#,
                None,
            ),
        ] {
            assert!(
                matches!(
                    parse_with_root(output, topic),
                    Err(StructuredError::Empty { field: "nodes", .. })
                ),
                "{output}"
            );
        }
    }

    #[test]
    fn a_json_tree_repeating_its_topic_is_not_nested_twice() {
        let parsed = parse_with_root(
            r#"{"label": "Photosynthesis mind map", "children": [{"label": "photosynthesis",
                "children": [{"label": "Light"}, {"label": "Dark"}]}, {"label": "Light"}]}"#,
            Some("Photosynthesis"),
        )
        .expect("map");
        assert_eq!(parsed.value.root.label, "Photosynthesis mind map");
        assert_eq!(labels(&parsed.value.root), ["Light", "Dark"]);
    }
}
