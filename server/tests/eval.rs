//! The evaluation suite (`eval/`, crate `lectern-eval`) against this build's `lectern`
//! binary, through HTTP and WebSocket as a user's client: the fast part (retrieval over
//! the whole answer key, and the suite's validity and degeneracy judges against the
//! server's own document writers and quality rules) in every run, and the local model's
//! structured jobs and chats as an ignored test (about two minutes). The full suite with every figure is the
//! `lectern-eval` binary (eval/README.md).

use std::time::Duration;

use lectern_eval::{Backend, Run, ServerOptions, Suite};

/// Longest one AI job may take here.
const JOB_TIMEOUT: Duration = Duration::from_secs(300);

fn options(backend: Backend) -> ServerOptions {
    // The embedding model (and ONNX Runtime) in the shared test models directory.
    lectern_ai::testing::prepared();
    ServerOptions {
        connect: None,
        binary: env!("CARGO_BIN_EXE_lectern").into(),
        backend,
        models_dir: Some(lectern_ai::testing::models_dir().path().to_path_buf()),
        prepare_models: false,
        max_tokens: None,
        chat_source_tokens: None,
    }
}

/// Retrieval over every question of the answer key: the passage that answers it must come
/// back from the search API. Measured on the current code: recall@1 0.778 (35/45),
/// recall@3 1.000 (45/45); the bounds leave a margin for retrieval changes that are not
/// regressions.
#[tokio::test]
async fn the_search_api_finds_the_passage_that_answers_each_question() {
    let suite = Suite::load(&Suite::default_path()).expect("suite");
    let run = Run::start(&suite, &options(Backend::Off), JOB_TIMEOUT)
        .await
        .expect("a server with the course ingested");
    let retrieval = run.retrieval(&suite.questions).await.expect("searches");
    run.stop().await;
    eprintln!(
        "recall@1 {:.3}, recall@3 {:.3} over {} questions",
        retrieval.recall_at_1,
        retrieval.recall_at_3,
        retrieval.results.len()
    );
    let misses: Vec<_> = retrieval
        .results
        .iter()
        .filter(|result| result.rank.is_none())
        .map(|result| (&result.id, &result.top_file))
        .collect();
    assert!(
        retrieval.recall_at_3 >= 0.9,
        "recall@3 {:.3}; missed (id, top hit's file): {misses:?}",
        retrieval.recall_at_3
    );
    assert!(
        retrieval.recall_at_1 >= 0.6,
        "recall@1 {:.3}; missed at 3: {misses:?}",
        retrieval.recall_at_1
    );
}

/// The local model on the course: every structured job lands a well-formed document, and
/// three chat answers (plus every structured document) are not degenerate. Ignored by
/// default for its length; run with `--run-ignored only -E 'test(/local_model_on_the_course/)'`.
#[tokio::test]
#[ignore = "about two minutes of local generation"]
async fn the_local_model_on_the_course_writes_valid_documents_and_no_degenerate_answers() {
    let suite = Suite::load(&Suite::default_path()).expect("suite");
    // The generator too, prepared before the server looks for it.
    lectern_ai::local::prepare_generator(&lectern_ai::testing::models_dir(), &|line| {
        eprintln!("{line}")
    })
    .expect("the local generator is prepared");
    let mut run = Run::start(&suite, &options(Backend::Local), JOB_TIMEOUT)
        .await
        .expect("a server with the course ingested");
    let mut failures = Vec::new();
    for question in suite.questions.iter().take(3) {
        let chat = run.ask(question).await.expect("the question is answered");
        if chat.status != "done" || chat.degenerate.is_some() {
            failures.push(format!(
                "chat {}: {} {:?}: {:?}",
                chat.id, chat.status, chat.degenerate, chat.answer
            ));
        }
    }
    for spec in &suite.jobs {
        let job = run.job(spec).await.expect("the job ends");
        if !job.valid || job.degenerate.is_some() {
            failures.push(format!(
                "{} ({}): {} {:?} {:?} {:?}",
                job.id, job.kind, job.status, job.error, job.problem, job.degenerate
            ));
        }
    }
    run.stop().await;
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The suite's validity judge on documents written by the server's own structured writers
/// and read back as a client reads them: each well-formed value passes, and the same
/// document without its questions, cards, sections, timeline or branches fails.
#[test]
fn the_validity_judge_agrees_with_the_documents_the_server_writes() {
    use lectern_ai::structured::{Kind, ParseHints, parse};
    use yrs::types::ToJson;
    use yrs::{Doc, Map, ReadTxn, Transact, WriteTxn};

    let outputs = [
        (
            Kind::Quiz,
            r#"{"title": "Floods", "questions": [{"prompt": "What was the Brennet's peak discharge in Storm Ottilie?", "options": ["148 cumecs", "95 cumecs", "12 cumecs"], "answer": 0, "explanation": "The gauge at Kettleford.", "marks": 1}]}"#,
            "questions",
        ),
        (
            Kind::Flashcards,
            r#"{"title": "Weather", "cards": [{"front": "Okta", "back": "An eighth of the sky covered by cloud"}]}"#,
            "cards",
        ),
        (
            Kind::Exam,
            r#"{"title": "The water cycle", "duration_minutes": 30, "sections": [{"title": "A", "questions": [{"prompt": "Define baseflow.", "marks": 2, "kind": "short_answer", "model_answer": "Water reaching the river through the ground."}, {"prompt": "Which rock is the aquifer?", "marks": 1, "kind": "multiple_choice", "options": ["Ketterby Sandstone", "Granite"], "answer": 0}]}]}"#,
            "sections",
        ),
        (
            Kind::LessonPlan,
            r#"{"title": "Fronts", "objectives": ["Name the three fronts"], "timeline": [{"minutes": 10, "activity": "Starter: read the synoptic chart"}, {"minutes": 30, "activity": "Map Storm Ottilie's fronts"}], "activities": [{"name": "Chart", "description": "Label the fronts"}], "assessment": ["Exit ticket"]}"#,
            "timeline",
        ),
        (
            Kind::Mindmap,
            "- The water cycle\n  - Stores\n    - Groundwater\n  - Flows\n    - Infiltration\n",
            "nodes",
        ),
    ];
    for (kind, output, essential) in outputs {
        let hints = ParseHints {
            title: Some("The water cycle".to_owned()),
            ..ParseHints::default()
        };
        let parsed = parse(kind, output, &hints)
            .unwrap_or_else(|error| panic!("{kind:?}: the example parses: {error}"));
        let doc = Doc::new();
        parsed.value.write(&mut doc.transact_mut());
        let read = |doc: &Doc| {
            let txn = doc.transact();
            let map = txn
                .get_map(kind.map_name())
                .expect("the root map is written");
            serde_json::to_value(map.to_json(&txn)).expect("JSON")
        };
        let value = read(&doc);
        assert_eq!(
            lectern_eval::structured::problem(kind.map_name(), &value),
            None,
            "{kind:?}: {value}"
        );
        {
            let mut txn = doc.transact_mut();
            let map = txn.get_or_insert_map(kind.map_name());
            map.remove(&mut txn, essential);
        }
        let broken = read(&doc);
        assert!(
            lectern_eval::structured::problem(kind.map_name(), &broken).is_some(),
            "{kind:?} without {essential} passed: {broken}"
        );
    }
}

/// The suite's degeneracy judge: the local model's old looping answer is flagged, an
/// answer from the course is not, and a job the server failed for looping counts.
#[test]
fn the_degeneracy_judge_flags_loops_and_passes_answers() {
    use lectern_eval::degenerate::{Degenerate, check, reported};

    let question = "What is the baseflow index of the River Brennet?";
    let looped = "Passage: The Brennet rises at Harl Tor. ".repeat(40);
    assert_eq!(check(&looped, question, true), Some(Degenerate::Loop));
    let answer = "The River Brennet has a baseflow index of 0.46 [1]: almost half of its \
                  water reaches it through the ground, from the Ketterby Sandstone.";
    assert_eq!(check(answer, question, false), None);
    let reason = lectern_ai::quality::Flaw::Degenerate.reason();
    assert_eq!(reported(reason), Some(Degenerate::Loop));
}
