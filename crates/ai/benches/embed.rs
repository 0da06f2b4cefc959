//! Embedding throughput: sentences per second for realistic ~20-word classroom sentences,
//! in batches of 32 on one intra-op thread (the default configuration).
//!
//! Two measurements of the same work:
//! - `wall`: elapsed time, what a user sees on an idle machine.
//! - `thread_cpu`: CPU time of the benchmark thread (which is where ONNX Runtime runs with one
//!   intra-op thread), from `/proc/thread-self/schedstat`. On a shared machine, where other
//!   processes steal the cores, this is the figure that stays comparable between runs and
//!   with the Python script.
//!
//! `scripts/bench_embed.py` measures the same model, tokenizer, sentences, batch size and
//! thread count with Python's onnxruntime, both ways. Needs the `testing` feature (the
//! shared prepared models directory):
//! `cargo bench -p lectern-ai --features testing --bench embed`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lectern_ai::embed::{Embedder, EmbedderConfig};
use lectern_ai::testing;

/// 64 sentences of 20–25 words, shared with the Python script.
const SENTENCES: &str = include_str!("sentences.txt");

/// Nanoseconds the calling thread has spent on a CPU (Linux), if the kernel says.
fn thread_cpu_nanos() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

fn embed(c: &mut Criterion) {
    let prepared = testing::prepared();
    let config = EmbedderConfig::default();
    let embedder = Embedder::load(&prepared.files, config).expect("load the embedding model");
    let sentences: Vec<&str> = SENTENCES.lines().filter(|l| !l.is_empty()).collect();
    let name = format!(
        "minilm_int8/{}_sentences/batch_{}/threads_{}",
        sentences.len(),
        config.batch_size,
        config.intra_threads
    );

    let mut group = c.benchmark_group("embed");
    group.throughput(Throughput::Elements(sentences.len() as u64));
    group.bench_function(format!("wall/{name}"), |b| {
        b.iter(|| embedder.embed(black_box(&sentences)).expect("embed"))
    });
    if thread_cpu_nanos().is_some() {
        group.bench_function(format!("thread_cpu/{name}"), |b| {
            b.iter_custom(|iterations| {
                let started = thread_cpu_nanos().unwrap_or(0);
                let wall = Instant::now();
                for _ in 0..iterations {
                    black_box(embedder.embed(black_box(&sentences)).expect("embed"));
                }
                // Fall back to wall time if the counter vanished mid-run (it does not).
                thread_cpu_nanos()
                    .map(|ended| Duration::from_nanos(ended.saturating_sub(started)))
                    .unwrap_or_else(|| wall.elapsed())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, embed);
criterion_main!(benches);
