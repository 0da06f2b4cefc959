//! Model output for a structured kind (quiz, flashcards, exam, lesson plan, mind map): the
//! first byte picks the kind and whether a title hint is given, the rest is the model's text.
//! It is found, repaired, validated and then written into a document as the AI job does.
//! A model can be steered by a prompt (or a poisoned source) into writing anything, so this
//! text is as hostile as a client's.
#![no_main]

use lectern_ai::structured::{Kind, ParseHints, parse};
use libfuzzer_sys::fuzz_target;
use yrs::{Doc, Transact};

fuzz_target!(|input: &[u8]| {
    let Some((&selector, text)) = input.split_first() else {
        return;
    };
    let Ok(output) = std::str::from_utf8(text) else {
        return;
    };
    let kinds = [
        Kind::Quiz,
        Kind::Flashcards,
        Kind::Exam,
        Kind::LessonPlan,
        Kind::Mindmap,
    ];
    let kind = kinds[usize::from(selector) % kinds.len()];
    let hints = ParseHints {
        title: (selector & 0x80 != 0).then(|| "Photosynthesis".to_owned()),
        duration_minutes: (selector & 0x40 != 0).then_some(50),
    };
    if let Ok(parsed) = parse(kind, output, &hints) {
        assert_eq!(parsed.value.kind(), kind);
        let doc = Doc::new();
        parsed.value.write(&mut doc.transact_mut());
    }
});
