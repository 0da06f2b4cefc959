//! A mind map streamed by a model: the text arrives in arbitrary pieces (split here at NUL
//! bytes), each piece goes through `MindmapBuilder::push`, and every event is applied to a
//! document as the AI job does. The documented caps must hold whatever the text says.
#![no_main]

use lectern_ai::structured::mindmap::{MAX_DEPTH, MAX_NODES};
use lectern_ai::structured::types::Node;
use lectern_ai::structured::{MindmapBuilder, apply_mindmap_event, parse_mindmap};
use libfuzzer_sys::fuzz_target;
use yrs::{Doc, Transact};

fn count(node: &Node, depth: usize) -> (usize, usize) {
    node.children
        .iter()
        .map(|child| count(child, depth + 1))
        .fold((1, depth), |(nodes, deepest), (n, d)| {
            (nodes + n, deepest.max(d))
        })
}

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let mut builder = if text.starts_with('#') {
        MindmapBuilder::with_root("Topic")
    } else {
        MindmapBuilder::new()
    };
    let doc = Doc::new();
    for piece in text.split('\0') {
        for event in builder.push(piece) {
            apply_mindmap_event(&mut doc.transact_mut(), &event);
        }
    }
    for event in builder.finish() {
        apply_mindmap_event(&mut doc.transact_mut(), &event);
    }
    if let Some(map) = builder.mindmap() {
        let (nodes, depth) = count(&map.root, 1);
        assert!(nodes <= MAX_NODES, "{nodes} nodes");
        assert!(depth <= MAX_DEPTH, "depth {depth}");
    }
    let _ = parse_mindmap(&text.replace('\0', ""));
});
