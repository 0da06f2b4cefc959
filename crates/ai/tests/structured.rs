//! Structured outputs: repair of realistic broken model output, validation, the streaming
//! mind-map builder and the CRDT writers.

use lectern_ai::backend::Role;
use lectern_ai::structured::{
    self, ExamQuestionKind, Kind, MindmapBuilder, MindmapEvent, ParseHints, PromptOptions, Repair,
    SourceExcerpt, StructuredError, SyntaxFix, apply_mindmap_event, parse_exam, parse_flashcards,
    parse_lesson_plan, parse_mindmap, parse_quiz, write_quiz,
};
use serde_json::json;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Transact, Update, WriteTxn};

fn has_fix(repairs: &[Repair], fix: SyntaxFix) -> bool {
    repairs.contains(&Repair::Syntax { fix })
}

fn dropped(repairs: &[Repair]) -> Vec<&str> {
    repairs
        .iter()
        .filter_map(|r| match r {
            Repair::Dropped { path, .. } => Some(path.as_str()),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------- quiz repairs

#[test]
fn clean_quiz_has_no_repairs() {
    let out = r#"{"title":"Cells","questions":[{"prompt":"What makes ATP?","options":["Mitochondria","Nucleus","Ribosome","Vacuole"],"answer":0,"explanation":"Mitochondria make ATP [1].","marks":1}]}"#;
    let parsed = parse_quiz(out).expect("quiz");
    assert!(parsed.repairs.is_empty(), "{:?}", parsed.repairs);
    assert_eq!(parsed.value.questions[0].options[0], "Mitochondria");
}

#[test]
fn quiz_in_prose_and_json_fence() {
    let out = "Sure! Here is a quiz based on the sources:\n\n```json\n{\n  \"title\": \"Cells\",\n  \"questions\": [\n    {\"prompt\": \"What makes ATP?\", \"options\": [\"Mitochondria\", \"Nucleus\"], \"answer\": 0, \"explanation\": \"[1]\", \"marks\": 1}\n  ]\n}\n```\n\nLet me know if you want more questions!";
    let parsed = parse_quiz(out).expect("quiz");
    assert_eq!(parsed.value.title, "Cells");
    assert!(has_fix(&parsed.repairs, SyntaxFix::StrippedFence));
    assert!(has_fix(&parsed.repairs, SyntaxFix::ExtractedFromProse));
}

#[test]
fn quiz_prose_without_fence_and_citation_brackets() {
    let out = "Based on [1] and [2], the quiz is {\"title\": \"Cells\", \"questions\": [{\"prompt\": \"Which organelle holds DNA?\", \"options\": [\"Nucleus\", \"Cell wall\"], \"answer\": 0}]} I hope it helps.";
    let parsed = parse_quiz(out).expect("quiz");
    assert_eq!(
        parsed.value.questions[0].prompt,
        "Which organelle holds DNA?"
    );
    assert!(has_fix(&parsed.repairs, SyntaxFix::ExtractedFromProse));
}

#[test]
fn quiz_single_quotes_trailing_commas_unquoted_keys() {
    let out = "{title: 'Plant cells', questions: [{prompt: 'What do chloroplasts do?', options: ['Photosynthesis', 'Respiration', 'Digestion',], answer: 0, explanation: 'They hold chlorophyll [2].', marks: 1,},],}";
    let parsed = parse_quiz(out).expect("quiz");
    let q = &parsed.value.questions[0];
    assert_eq!(q.options, ["Photosynthesis", "Respiration", "Digestion"]);
    assert_eq!(q.explanation, "They hold chlorophyll [2].");
    for fix in [
        SyntaxFix::SingleQuotes,
        SyntaxFix::TrailingCommas,
        SyntaxFix::UnquotedKeys,
    ] {
        assert!(
            has_fix(&parsed.repairs, fix),
            "{fix:?}: {:?}",
            parsed.repairs
        );
    }
}

#[test]
fn quiz_smart_quotes_and_apostrophes() {
    let out = "{“title”: “Osmosis”, “questions”: [{“prompt”: “What is osmosis?”, “options”: [“Water moving across a membrane”, “Sugar burning”], “answer”: 0, “explanation”: “It’s the movement of water [1].”}]}";
    let parsed = parse_quiz(out).expect("quiz");
    assert_eq!(parsed.value.title, "Osmosis");
    assert_eq!(
        parsed.value.questions[0].explanation,
        "It’s the movement of water [1]."
    );
    assert!(has_fix(&parsed.repairs, SyntaxFix::SmartQuotes));
}

#[test]
fn quiz_smart_quotes_inside_ascii_strings_stay_text() {
    let out = r#"{"title": "Words", "questions": [{"prompt": "What does “osmosis” mean?", "options": ["Water movement", "Cell death"], "answer": 0}]}"#;
    let parsed = parse_quiz(out).expect("quiz");
    assert_eq!(
        parsed.value.questions[0].prompt,
        "What does “osmosis” mean?"
    );
}

#[test]
fn quiz_truncated_by_max_tokens_drops_the_incomplete_question() {
    let out = r#"{"title": "Cells", "questions": [
        {"prompt": "What makes ATP?", "options": ["Mitochondria", "Nucleus", "Ribosome"], "answer": 0, "explanation": "Mitochondria [1].", "marks": 1},
        {"prompt": "What holds DNA?", "options": ["Nucleus", "Cytoplasm"], "answer": 0, "explanation": "The nucleus [1].", "marks": 1},
        {"prompt": "What controls entry to the cell?", "options": ["Cell membrane", "Chlorop"#;
    let parsed = parse_quiz(out).expect("quiz");
    assert_eq!(parsed.value.questions.len(), 2);
    assert!(has_fix(&parsed.repairs, SyntaxFix::ClosedBrackets));
    assert!(has_fix(&parsed.repairs, SyntaxFix::DroppedIncomplete));
    assert_eq!(dropped(&parsed.repairs), ["questions[2]"]);
}

#[test]
fn quiz_truncated_in_explanation_keeps_question_without_half_sentence() {
    let out = r#"{"title": "Cells", "questions": [{"prompt": "What makes ATP?", "options": ["Mitochondria", "Nucleus"], "answer": 0, "explanation": "The mitochondria is the power"#;
    let parsed = parse_quiz(out).expect("quiz");
    let q = &parsed.value.questions[0];
    assert_eq!(q.explanation, "");
    assert_eq!(q.answer, 0);
}

#[test]
fn quiz_truncated_inside_an_escape_and_after_a_key() {
    let parsed = parse_quiz(r#"{"title": "A", "questions": [{"prompt": "Q1?", "options": ["x", "y"], "answer": 1}, {"prompt": "Say \"#)
        .expect("quiz");
    assert_eq!(parsed.value.questions.len(), 1);
    let parsed = parse_quiz(r#"{"title": "A", "questions": [{"prompt": "Q1?", "options": ["x", "y"], "answer": 1, "marks""#)
        .expect("quiz");
    assert_eq!(parsed.value.questions[0].marks, 1);
}

#[test]
fn answer_as_letter_text_one_based_and_flag() {
    let out = r#"{"title": "Mixed answers", "questions": [
        {"prompt": "Letter?", "options": ["Red", "Green", "Blue"], "answer": "B"},
        {"prompt": "Bracketed letter?", "options": ["Red", "Green", "Blue"], "answer": "(c)"},
        {"prompt": "Option text?", "options": ["Red", "Green", "Blue"], "answer": "blue"},
        {"prompt": "Lettered text?", "options": ["Red", "Green", "Blue"], "answer": "B) Green"},
        {"prompt": "One-based?", "options": ["Red", "Green", "Blue"], "answer": 3},
        {"prompt": "Index as text?", "options": ["Red", "Green", "Blue"], "answer": "1"},
        {"prompt": "Flagged?", "options": [{"text": "Red"}, {"text": "Green", "correct": true}]},
        {"prompt": "Lettered options?", "options": ["A) Red", "B) Green", "C) Blue"], "answer": "C"},
        {"prompt": "Options object?", "options": {"A": "Red", "B": "Green"}, "correct_answer": "A"}
    ]}"#;
    let parsed = parse_quiz(out).expect("quiz");
    let answers: Vec<usize> = parsed.value.questions.iter().map(|q| q.answer).collect();
    assert_eq!(answers, [1, 2, 2, 1, 2, 1, 1, 2, 0]);
    assert_eq!(parsed.value.questions[7].options, ["Red", "Green", "Blue"]);
    assert_eq!(parsed.value.questions[8].options, ["Red", "Green"]);
    assert!(dropped(&parsed.repairs).is_empty(), "{:?}", parsed.repairs);
}

#[test]
fn marks_as_strings_and_missing_optional_fields() {
    let out = r#"{"title": "Marks", "questions": [
        {"question": "String marks?", "choices": ["Yes", "No"], "answer": 0, "marks": "2"},
        {"question": "Marks with unit?", "choices": ["Yes", "No"], "answer": 0, "points": "3 marks"},
        {"question": "No marks or explanation?", "choices": ["Yes", "No"], "answer": 1}
    ]}"#;
    let parsed = parse_quiz(out).expect("quiz");
    let marks: Vec<u32> = parsed.value.questions.iter().map(|q| q.marks).collect();
    assert_eq!(marks, [2, 3, 1]);
    assert_eq!(parsed.value.questions[2].explanation, "");
    assert!(parsed.repairs.contains(&Repair::Defaulted {
        path: "questions[2].marks".into(),
        value: "1".into()
    }));
}

#[test]
fn python_literals_comments_missing_commas_and_unquoted_values() {
    let out = "{\n  \"title\": \"Misc\", // the title\n  \"questions\": [\n    {\"prompt\": \"True?\", \"options\": [\"Yes\", \"No\"], \"answer\": B, \"explanation\": None}\n    {\"prompt\": \"Also true?\", \"options\": [\"Yes\", \"No\"], \"answer\": 0}\n  ]\n}";
    let parsed = parse_quiz(out).expect("quiz");
    assert_eq!(parsed.value.questions.len(), 2);
    assert_eq!(parsed.value.questions[0].answer, 1);
    for fix in [
        SyntaxFix::Comments,
        SyntaxFix::MissingCommas,
        SyntaxFix::UnquotedStrings,
        SyntaxFix::NonJsonLiterals,
    ] {
        assert!(
            has_fix(&parsed.repairs, fix),
            "{fix:?}: {:?}",
            parsed.repairs
        );
    }
}

#[test]
fn repeated_options_are_removed_and_the_answer_follows_its_option() {
    let out = r#"{"title": "Capitals", "questions": [
        {"prompt": "Capital of France?", "options": ["London", "Paris", "paris", "Rome"], "answer": 2}
    ]}"#;
    let parsed = parse_quiz(out).expect("quiz");
    let question = &parsed.value.questions[0];
    assert_eq!(question.options, ["London", "Paris", "Rome"]);
    assert_eq!(
        question.answer, 1,
        "the answer's copy was removed; it names Paris"
    );
    assert!(
        parsed
            .repairs
            .iter()
            .any(|r| r.to_string().contains("removed repeated options")),
        "{:?}",
        parsed.repairs
    );
}

#[test]
fn invalid_questions_are_dropped_with_reasons() {
    let out = r#"{"title": "Validation", "questions": [
        {"prompt": "", "options": ["a", "b"], "answer": 0},
        {"prompt": "One option", "options": ["a"], "answer": 0},
        {"prompt": "Seven options", "options": ["a", "b", "c", "d", "e", "f", "g"], "answer": 0},
        {"prompt": "Duplicate options", "options": ["Yes", "yes"], "answer": 0},
        {"prompt": "Out of range", "options": ["a", "b"], "answer": 7},
        {"prompt": "Zero marks", "options": ["a", "b"], "answer": 0, "marks": 0},
        {"prompt": "No answer", "options": ["a", "b"]},
        {"prompt": "Why does the Moon have phases?", "options": ["a", "b"], "answer": 0},
        {"prompt": "Good", "options": ["a", "b"], "answer": 1},
        {"prompt": "good", "options": ["a", "b"], "answer": 0}
    ]}"#;
    let parsed = parse_quiz(out).expect("quiz");
    assert_eq!(parsed.value.questions.len(), 1);
    assert_eq!(parsed.value.questions[0].prompt, "Good");
    assert_eq!(dropped(&parsed.repairs).len(), 9, "{:?}", parsed.repairs);
    let reasons: Vec<String> = parsed.repairs.iter().map(ToString::to_string).collect();
    assert!(
        reasons.iter().any(|r| r.contains("out of range")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("2 different options")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("example")), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("duplicate question")),
        "{reasons:?}"
    );
}

#[test]
fn errors_are_typed() {
    assert!(matches!(
        parse_quiz("I'm sorry, I cannot help with that."),
        Err(StructuredError::NoJson { .. })
    ));
    match parse_quiz(r#"{"questions": [{"prompt": "Q?", "options": ["a", "b"], "answer": 0}]}"#) {
        Err(StructuredError::Invalid { field, .. }) => assert_eq!(field, "title"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    match parse_quiz(
        r#"{"title": "T", "questions": [{"prompt": "Q?", "options": ["a"], "answer": 0}]}"#,
    ) {
        Err(
            error @ StructuredError::Empty {
                field: "questions", ..
            },
        ) => {
            assert!(error.to_string().contains("questions[0]"), "{error}");
        }
        other => panic!("expected Empty, got {other:?}"),
    }
}

#[test]
fn title_hint_fills_a_missing_title_and_top_level_arrays_work() {
    let hints = ParseHints {
        title: Some("Photosynthesis".into()),
        ..ParseHints::default()
    };
    let out = r#"[{"prompt": "What gas is released?", "options": ["Oxygen", "Nitrogen"], "answer": "Oxygen"}]"#;
    let parsed = structured::parse(Kind::Quiz, out, &hints).expect("quiz");
    match parsed.value {
        structured::Structured::Quiz(quiz) => assert_eq!(quiz.title, "Photosynthesis"),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------- other kinds

#[test]
fn flashcards_in_many_shapes() {
    let out = r#"Here you go:
{"title": "Cell terms", "cards": [
  {"front": "Mitochondrion", "back": "Makes ATP [1]."},
  {"term": "Nucleus", "definition": "Holds DNA."},
  ["Ribosome", "Makes proteins."],
  {"Vacuole": "Stores water."},
  "Cell wall: Supports plant cells.",
  {"front": "Nucleus", "back": "Duplicate."},
  {"front": "Lonely"},
  {"front": "Lunar eclipse", "back": "Copied from the example."}
]}"#;
    let parsed = parse_flashcards(out).expect("cards");
    let fronts: Vec<&str> = parsed
        .value
        .cards
        .iter()
        .map(|c| c.front.as_str())
        .collect();
    assert_eq!(
        fronts,
        [
            "Mitochondrion",
            "Nucleus",
            "Ribosome",
            "Vacuole",
            "Cell wall"
        ]
    );
    assert_eq!(
        dropped(&parsed.repairs),
        ["cards[5]", "cards[6]", "cards[7]"]
    );
}

#[test]
fn exam_total_marks_is_recomputed_and_noted() {
    let out = r#"{"title": "Cells test", "duration_minutes": "45 minutes", "sections": [
      {"title": "Section A", "questions": [
        {"prompt": "Which organelle makes ATP?", "kind": "multiple_choice", "options": ["Mitochondria", "Nucleus"], "answer": "A", "marks": 1},
        {"prompt": "Define osmosis.", "type": "short answer", "answer": "Water moving across a membrane.", "marks": "2"}
      ]},
      {"questions": [
        {"prompt": "Explain how cells specialise.", "kind": "essay", "guidance": "Differentiation, examples.", "marks": 6},
        {"prompt": "Broken", "kind": "multiple_choice", "options": ["only one"], "answer": 0}
      ]}
    ], "total_marks": 20}"#;
    let parsed = parse_exam(out).expect("exam");
    let paper = &parsed.value;
    assert_eq!(paper.duration_minutes, 45);
    assert_eq!(paper.total_marks, 9);
    assert_eq!(paper.sections[1].title, "Section B");
    assert!(matches!(
        paper.sections[0].questions[1].kind,
        ExamQuestionKind::ShortAnswer { ref model_answer } if model_answer == "Water moving across a membrane."
    ));
    assert!(matches!(
        paper.sections[1].questions[0].kind,
        ExamQuestionKind::Essay { .. }
    ));
    assert!(parsed.repairs.contains(&Repair::Recomputed {
        path: "total_marks".into(),
        given: Some("20".into()),
        value: "9".into()
    }));
    assert_eq!(dropped(&parsed.repairs), ["sections[1].questions[1]"]);
}

#[test]
fn exam_without_sections_or_total_gets_one_section_and_a_computed_total() {
    let out = r#"{"title": "Quick test", "questions": [
        {"prompt": "Name a gas plants release.", "model_answer": "Oxygen", "marks": 2},
        {"prompt": "Pick one", "options": ["Leaf", "Rock"], "answer": 0}
    ]}"#;
    let hints = ParseHints {
        duration_minutes: Some(20),
        ..ParseHints::default()
    };
    let parsed = structured::parse(Kind::Exam, out, &hints).expect("exam");
    let structured::Structured::Exam(paper) = parsed.value else {
        panic!("not an exam");
    };
    assert_eq!(paper.sections.len(), 1);
    assert_eq!(paper.duration_minutes, 20);
    assert_eq!(paper.total_marks, 3);
    assert!(matches!(
        paper.sections[0].questions[1].kind,
        ExamQuestionKind::MultipleChoice { answer: 0, .. }
    ));
    assert!(
        parsed
            .repairs
            .iter()
            .any(|r| matches!(r, Repair::Recomputed { given: None, .. }))
    );
}

#[test]
fn lesson_plan_lenient_steps_and_validation() {
    let out = r#"```
{"title": "Photosynthesis", "objectives": "Describe photosynthesis",
 "timeline": [
   {"minutes": "10 min", "activity": "Starter quiz"},
   "15 min: Leaf experiment",
   {"minutes": 0, "activity": "Nothing"},
   {"duration": 20, "description": "Write up"},
   {"minutes": 5}
 ],
 "activities": [{"name": "Leaf experiment", "description": "Test leaves for starch [1]."}, "Exit ticket"],
 "assessment": [{"method": "Exit ticket"}]}
```"#;
    let parsed = parse_lesson_plan(out).expect("plan");
    let plan = &parsed.value;
    assert_eq!(plan.objectives, ["Describe photosynthesis"]);
    let minutes: Vec<u32> = plan.timeline.iter().map(|s| s.minutes).collect();
    assert_eq!(minutes, [10, 15, 20]);
    assert_eq!(plan.timeline[1].activity, "Leaf experiment");
    assert_eq!(plan.activities[1].name, "Exit ticket");
    assert_eq!(plan.assessment, ["Exit ticket"]);
    assert_eq!(dropped(&parsed.repairs), ["timeline[2]", "timeline[4]"]);
    assert!(matches!(
        parse_lesson_plan(r#"{"title": "Empty", "timeline": [{"minutes": -5, "activity": "x"}]}"#),
        Err(StructuredError::Empty {
            field: "timeline",
            ..
        })
    ));
}

// ---------------------------------------------------------------- prompts

#[test]
fn prompts_are_short_grounded_and_show_an_example() {
    let sources = vec![
        SourceExcerpt {
            label: "[1] cells.pdf p. 3".into(),
            text: "Mitochondria release energy. ".repeat(200),
        },
        SourceExcerpt {
            label: "[2] cells.pdf p. 4".into(),
            text: "The nucleus holds DNA.".into(),
        },
    ];
    for kind in Kind::ALL {
        let messages =
            structured::messages(kind, "cell organelles", &sources, &PromptOptions::default());
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].role, Role::System);
        let user = &messages[1].content;
        assert!(user.contains("[1] cells.pdf p. 3"), "{kind:?}");
        assert!(user.contains("cell organelles"));
        assert!(user.contains("Use only facts from the sources"));
        // Source budget (2400) plus instructions and example: fits the local model's context.
        assert!(
            user.chars().count() < 3800,
            "{kind:?}: {} chars",
            user.chars().count()
        );
        if kind == Kind::Mindmap {
            assert!(user.contains("\n  - "));
        } else {
            assert!(user.contains("{\"title\""));
        }
    }
    let error = parse_quiz("no json here").expect_err("fails");
    let retry = structured::repair_prompt(Kind::Quiz, "no json here", &error);
    assert!(retry[1].content.contains("no json here"));
    assert!(retry[1].content.contains("contains no JSON object"));
}

// ---------------------------------------------------------------- mind maps

fn labels_and_parents(events: &[MindmapEvent]) -> Vec<(String, Option<String>, String)> {
    events
        .iter()
        .map(
            |MindmapEvent::AddNode {
                 id,
                 parent_id,
                 label,
             }| { (id.clone(), parent_id.clone(), label.clone()) },
        )
        .collect()
}

const OUTLINE: &str = "Here is your mind map:\n- **Photosynthesis**\n  - Light reactions\n    - Chlorophyll absorbs light\n    - Water splits → O₂\n  - Calvin cycle:\n    * CO₂ fixed\n\t\t- Glucose made\n- Limiting factors\n  1. Light\n  2. Temperature\n";

#[test]
fn mindmap_streams_nodes_as_lines_complete_even_split_mid_char_and_mid_word() {
    // Split into every third character: mid-word, mid-line, and next to multi-byte
    // characters (→, ₂), always on char boundaries as &str requires.
    let chars: Vec<char> = OUTLINE.chars().collect();
    let mut builder = MindmapBuilder::new();
    let mut events = Vec::new();
    let mut count_when_line_done = Vec::new();
    for chunk in chars.chunks(3) {
        let delta: String = chunk.iter().collect();
        events.extend(builder.push(&delta));
        if delta.contains('\n') {
            count_when_line_done.push(events.len());
        }
    }
    events.extend(builder.finish());
    // A node appears in the same push that completes its line.
    assert!(count_when_line_done.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(count_when_line_done.last().copied(), Some(10));

    let got = labels_and_parents(&events);
    let expect = [
        ("n1", None, "Photosynthesis"),
        ("n2", Some("n1"), "Light reactions"),
        ("n3", Some("n2"), "Chlorophyll absorbs light"),
        ("n4", Some("n2"), "Water splits → O₂"),
        ("n5", Some("n1"), "Calvin cycle"),
        ("n6", Some("n5"), "CO₂ fixed"),
        ("n7", Some("n5"), "Glucose made"),
        // A second top-level line hangs under the first (one root).
        ("n8", Some("n1"), "Limiting factors"),
        ("n9", Some("n8"), "Light"),
        ("n10", Some("n8"), "Temperature"),
    ];
    let expect: Vec<(String, Option<String>, String)> = expect
        .iter()
        .map(|(id, p, l)| (id.to_string(), p.map(str::to_owned), l.to_string()))
        .collect();
    assert_eq!(got, expect);
    // Whole-text parse agrees with the stream.
    let whole = parse_mindmap(OUTLINE).expect("map");
    assert_eq!(whole.value.to_events(), events);
    assert_eq!(dropped(&whole.repairs), ["line 1"]);
}

#[test]
fn mindmap_last_line_without_newline_waits_for_finish() {
    let mut builder = MindmapBuilder::new();
    assert_eq!(builder.push("- Root\n  - Chi").len(), 1);
    assert!(builder.push("ld").is_empty());
    let events = builder.finish();
    assert_eq!(labels_and_parents(&events)[0].2, "Child");
}

#[test]
fn mindmap_inconsistent_indentation_depth_cap_and_empty_labels() {
    let text = "- Root\n    - Four\n  - Two\n   - Three\n-  \n- ****\n  - a\n    - b\n      - c\n        - d\n          - e\n            - f\n              - g\n";
    let parsed = parse_mindmap(text).expect("map");
    let root = &parsed.value.root;
    assert_eq!(root.label, "Root");
    // "Two" (indent 2) closes "Four" (indent 4) and is its sibling; "Three" is under "Two".
    let top: Vec<&str> = root.children.iter().map(|c| c.label.as_str()).collect();
    assert_eq!(top, ["Four", "Two", "a"]);
    assert_eq!(root.children[1].children[0].label, "Three");
    // Depth capped at 6 levels: root, a, b, c, d, e; f and g attach beside e.
    let d = &root.children[2].children[0].children[0].children[0];
    assert_eq!(d.label, "d");
    let under_d: Vec<&str> = d.children.iter().map(|c| c.label.as_str()).collect();
    assert_eq!(under_d, ["e", "f", "g"]);
    assert!(
        parsed
            .repairs
            .iter()
            .any(|r| r.to_string().contains("empty label"))
    );
}

#[test]
fn mindmap_synthetic_root_merges_a_repeated_topic() {
    let mut builder = MindmapBuilder::with_root("Photosynthesis");
    let first = builder.push("");
    assert_eq!(
        labels_and_parents(&first),
        [("n1".into(), None, "Photosynthesis".into())]
    );
    let mut events = builder.push("- photosynthesis\n  - Light\n- Calvin cycle\n");
    events.extend(builder.finish());
    let got = labels_and_parents(&events);
    assert_eq!(got[0], ("n2".into(), Some("n1".into()), "Light".into()));
    assert_eq!(
        got[1],
        ("n3".into(), Some("n1".into()), "Calvin cycle".into())
    );
}

#[test]
fn mindmap_from_json_tree_and_nothing_usable() {
    let parsed =
        parse_mindmap(r#"{"label": "Cells", "children": [{"label": "Nucleus"}]}"#).expect("map");
    assert_eq!(parsed.value.root.children[0].label, "Nucleus");
    assert!(matches!(
        parse_mindmap("Sorry, I can't do that."),
        Err(StructuredError::Empty { field: "nodes", .. })
    ));
}

// ---------------------------------------------------------------- CRDT writers

fn to_json(doc: &Doc, name: &str) -> serde_json::Value {
    let txn = doc.transact();
    let map = txn.get_map(name).expect("root map");
    let any = yrs::types::ToJson::to_json(&map, &txn);
    serde_json::to_value(any).expect("json")
}

fn sync(a: &Doc, b: &Doc) {
    let from_a = a
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    let from_b = b
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    b.transact_mut()
        .apply_update(Update::decode_v1(&from_a).expect("decode"))
        .expect("apply");
    a.transact_mut()
        .apply_update(Update::decode_v1(&from_b).expect("decode"))
        .expect("apply");
}

#[test]
fn quiz_is_written_as_nested_shared_types_and_replaced() {
    let quiz = parse_quiz(r#"{"title": "Cells", "questions": [{"prompt": "ATP?", "options": ["Mitochondria", "Nucleus"], "answer": 0, "explanation": "[1]", "marks": 2}]}"#)
        .expect("quiz")
        .value;
    let doc = Doc::new();
    {
        let mut txn = doc.transact_mut();
        structured::write_structured(&mut txn, "quiz", &json!({"stale": true, "title": "Old"}));
        write_quiz(&mut txn, &quiz);
    }
    assert_eq!(
        to_json(&doc, "quiz"),
        json!({"title": "Cells", "questions": [{"prompt": "ATP?", "options": ["Mitochondria", "Nucleus"], "answer": 0, "explanation": "[1]", "marks": 2}]})
    );
    // Nested values are shared types, not JSON strings.
    let txn = doc.transact();
    let map = txn.get_map("quiz").expect("map");
    let questions = yrs::Map::get(&map, &txn, "questions").expect("questions");
    assert!(matches!(questions, yrs::Out::YArray(_)), "{questions:?}");
}

#[test]
fn every_kind_writes_into_its_root_map() {
    let exam = parse_exam(r#"{"title": "T", "duration_minutes": 30, "sections": [{"title": "A", "questions": [{"prompt": "P?", "kind": "multiple_choice", "options": ["x", "y"], "answer": 1, "marks": 2}, {"prompt": "Essay", "kind": "essay", "guidance": "g", "marks": 3}]}], "total_marks": 5}"#)
        .expect("exam")
        .value;
    let doc = Doc::new();
    structured::Structured::Exam(exam).write(&mut doc.transact_mut());
    assert_eq!(
        to_json(&doc, Kind::Exam.map_name()),
        json!({"title": "T", "duration_minutes": 30, "total_marks": 5, "sections": [{"title": "A", "questions": [
            {"prompt": "P?", "kind": "multiple_choice", "options": ["x", "y"], "answer": 1, "marks": 2},
            {"prompt": "Essay", "kind": "essay", "guidance": "g", "marks": 3}
        ]}]})
    );
    let cards = parse_flashcards(r#"{"title": "D", "cards": [{"front": "f", "back": "b"}]}"#)
        .expect("cards")
        .value;
    let plan =
        parse_lesson_plan(r#"{"title": "L", "timeline": [{"minutes": 5, "activity": "a"}]}"#)
            .expect("plan")
            .value;
    {
        let mut txn = doc.transact_mut();
        structured::write_flashcards(&mut txn, &cards);
        structured::write_lesson_plan(&mut txn, &plan);
    }
    assert_eq!(
        to_json(&doc, "flashcards"),
        json!({"title": "D", "cards": [{"front": "f", "back": "b"}]})
    );
    assert_eq!(
        to_json(&doc, "lesson_plan"),
        json!({"title": "L", "objectives": [], "timeline": [{"minutes": 5, "activity": "a"}], "activities": [], "assessment": []})
    );
}

#[test]
fn mindmap_events_build_the_documented_shape() {
    let doc = Doc::new();
    let mut builder = MindmapBuilder::new();
    let mut events =
        builder.push("- Cells\n  - Nucleus\n  - Mitochondria\n    - ATP\n- Stray top level\n");
    events.extend(builder.finish());
    {
        let mut txn = doc.transact_mut();
        for event in &events {
            apply_mindmap_event(&mut txn, event);
        }
        // Idempotent: a retried event changes nothing.
        apply_mindmap_event(&mut txn, &events[1]);
        // A foreign parentless node still hangs under the one root.
        apply_mindmap_event(
            &mut txn,
            &MindmapEvent::AddNode {
                id: "x1".into(),
                parent_id: None,
                label: "Extra".into(),
            },
        );
    }
    assert_eq!(
        to_json(&doc, "mindmap"),
        json!({"root": "n1", "nodes": {
            "n1": {"label": "Cells", "parent": null, "children": ["n2", "n3", "n5", "x1"]},
            "n2": {"label": "Nucleus", "parent": "n1", "children": []},
            "n3": {"label": "Mitochondria", "parent": "n1", "children": ["n4"]},
            "n4": {"label": "ATP", "parent": "n3", "children": []},
            "n5": {"label": "Stray top level", "parent": "n1", "children": []},
            "x1": {"label": "Extra", "parent": "n1", "children": []}
        }})
    );
    structured::reset_mindmap(&mut doc.transact_mut());
    assert_eq!(to_json(&doc, "mindmap"), json!({}));
}

#[test]
fn same_writes_on_two_docs_converge() {
    let quiz = parse_quiz(r#"{"title": "Cells", "questions": [{"prompt": "ATP?", "options": ["a", "b"], "answer": 0}]}"#)
        .expect("quiz")
        .value;
    let map = parse_mindmap("- Cells\n  - Nucleus\n  - Wall\n")
        .expect("map")
        .value;
    let a = Doc::with_client_id(1);
    let b = Doc::with_client_id(2);
    for doc in [&a, &b] {
        let mut txn = doc.transact_mut();
        write_quiz(&mut txn, &quiz);
        structured::write_mindmap(&mut txn, &map);
        // Text in the same document is untouched by the writers.
        txn.get_or_insert_text("notes");
    }
    sync(&a, &b);
    for name in ["quiz", "mindmap"] {
        assert_eq!(to_json(&a, name), to_json(&b, name), "{name}");
    }
    assert_eq!(
        to_json(&a, "mindmap")["nodes"]["n1"]["children"],
        json!(["n2", "n3"])
    );
    let notes = a.transact().get_text("notes").expect("text");
    assert_eq!(notes.get_string(&a.transact()), "");
}

#[test]
fn streaming_mindmap_into_one_doc_syncs_to_a_peer_incrementally() {
    let server = Doc::with_client_id(10);
    let client = Doc::with_client_id(11);
    let mut builder = MindmapBuilder::with_root("Cells");
    for delta in ["", "- Nuc", "leus\n  - DNA\n", "- Wall"] {
        let events = builder.push(delta);
        let before = client.transact().state_vector();
        {
            let mut txn = server.transact_mut();
            for event in &events {
                apply_mindmap_event(&mut txn, event);
            }
        }
        let update = server.transact().encode_state_as_update_v1(&before);
        client
            .transact_mut()
            .apply_update(Update::decode_v1(&update).expect("decode"))
            .expect("apply");
    }
    for event in builder.finish() {
        apply_mindmap_event(&mut server.transact_mut(), &event);
    }
    sync(&server, &client);
    assert_eq!(to_json(&server, "mindmap"), to_json(&client, "mindmap"));
    assert_eq!(
        to_json(&client, "mindmap")["nodes"]["n1"]["children"],
        json!(["n2", "n4"])
    );
}
