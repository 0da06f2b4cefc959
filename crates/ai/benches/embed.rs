//! Embedding throughput: sentences per second for realistic ~20-word classroom sentences,
//! in batches of 32 on one intra-op thread (the default configuration).
//!
//! `scripts/bench_embed.py` measures the same model, tokenizer, sentences, batch size and
//! thread count with Python's onnxruntime, for comparison. Needs the `testing` feature (the
//! shared prepared models directory):
//! `cargo bench -p lectern-ai --features testing --bench embed`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lectern_ai::embed::{Embedder, EmbedderConfig};
use lectern_ai::testing;

/// 64 sentences of 20–25 words, shared with the Python script.
const SENTENCES: &str = include_str!("sentences.txt");

fn embed(c: &mut Criterion) {
    let prepared = testing::prepared();
    let config = EmbedderConfig::default();
    let embedder = Embedder::load(&prepared.files, config).expect("load the embedding model");
    let sentences: Vec<&str> = SENTENCES.lines().filter(|l| !l.is_empty()).collect();

    let mut group = c.benchmark_group("embed");
    group.throughput(Throughput::Elements(sentences.len() as u64));
    group.bench_function(
        format!(
            "minilm_int8/{}_sentences/batch_{}/threads_{}",
            sentences.len(),
            config.batch_size,
            config.intra_threads
        ),
        |b| b.iter(|| embedder.embed(black_box(&sentences)).expect("embed")),
    );
    group.finish();
}

criterion_group!(benches, embed);
criterion_main!(benches);
