//! Latency distribution of `VectorIndex::search` for 100 000 chunks × 384 dimensions, k = 10,
//! over 1 000 queries (criterion reports means; the budget is a p99).
//!
//! `cargo run --release -p lectern-library --example search_latency`

use std::collections::HashSet;
use std::time::{Duration, Instant};

use lectern_library::VectorIndex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CHUNKS: usize = 100_000;
const DIMS: usize = 384;
const DOCUMENTS: usize = 1_000;
const QUERIES: usize = 1_000;

fn random_unit(rng: &mut StdRng) -> Vec<f32> {
    let v: Vec<f32> = (0..DIMS).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// CPU time this process has used, from `/proc/self/stat` (Linux; `None` elsewhere). On a
/// shared machine wall-clock percentiles include time spent preempted; the CPU time per
/// query says what the search itself costs.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // USER_HZ is 100 on Linux.
    Some(Duration::from_millis((utime + stime) * 10))
}

fn report(label: &str, mut times: Vec<Duration>, cpu: Option<Duration>) {
    times.sort();
    let cpu = cpu.map_or_else(
        || "n/a".to_owned(),
        |c| format!("{:.3} ms", c.as_secs_f64() * 1e3 / times.len() as f64),
    );
    println!(
        "{label:<16} p50 {:>8.3} ms   p99 {:>8.3} ms   max {:>8.3} ms   mean CPU/query {cpu}",
        percentile(&times, 0.50).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        percentile(&times, 1.0).as_secs_f64() * 1e3,
    );
}

fn timed(
    queries: &[Vec<f32>],
    mut search: impl FnMut(&[f32]),
) -> (Vec<Duration>, Option<Duration>) {
    let cpu_before = cpu_time();
    let times = queries
        .iter()
        .map(|q| {
            let t = Instant::now();
            search(q);
            t.elapsed()
        })
        .collect();
    let cpu = cpu_before.zip(cpu_time()).map(|(a, b)| b.saturating_sub(a));
    (times, cpu)
}

fn main() {
    let mut rng = StdRng::seed_from_u64(42);
    let mut index = VectorIndex::new(DIMS);
    let started = Instant::now();
    for i in 0..CHUNKS {
        let doc = format!("doc-{}", i % DOCUMENTS);
        index
            .insert(&doc, i as i64, &random_unit(&mut rng))
            .expect("insert");
    }
    println!(
        "built {} chunks x {DIMS} dims in {:.2?}",
        index.len(),
        started.elapsed()
    );
    let queries: Vec<Vec<f32>> = (0..QUERIES).map(|_| random_unit(&mut rng)).collect();
    let subset: HashSet<String> = (0..10).map(|i| format!("doc-{}", i * 97)).collect();

    // Warm-up: fault the pages in and settle the frequency.
    for q in queries.iter().take(20) {
        index.search::<String>(q, None, 10).expect("search");
    }
    let (times, cpu) = timed(&queries, |q| {
        std::hint::black_box(index.search::<String>(q, None, 10).expect("search"));
    });
    report("all documents", times, cpu);
    let (times, cpu) = timed(&queries, |q| {
        std::hint::black_box(index.search(q, Some(&subset), 10).expect("search"));
    });
    report("10 documents", times, cpu);
}
