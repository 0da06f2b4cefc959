//! `VectorIndex::search` over 100 000 chunks × 384 dimensions (all-MiniLM-L6-v2), k = 10:
//! the whole classroom, and a 10-document subset.
//!
//! `cargo bench -p lectern-library --bench search`

use std::collections::HashSet;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use lectern_library::VectorIndex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CHUNKS: usize = 100_000;
const DIMS: usize = 384;
/// 100 chunks per document, as a mid-sized textbook chapter gives.
const DOCUMENTS: usize = 1_000;

fn random_unit(rng: &mut StdRng) -> Vec<f32> {
    let v: Vec<f32> = (0..DIMS).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

fn bench(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(42);
    let mut index = VectorIndex::new(DIMS);
    for i in 0..CHUNKS {
        let doc = format!("doc-{}", i % DOCUMENTS);
        index
            .insert(&doc, i as i64, &random_unit(&mut rng))
            .expect("insert");
    }
    let queries: Vec<Vec<f32>> = (0..64).map(|_| random_unit(&mut rng)).collect();
    let subset: HashSet<String> = (0..10).map(|i| format!("doc-{}", i * 97)).collect();

    let mut group = c.benchmark_group("search_100k_x_384");
    let mut q = queries.iter().cycle();
    group.bench_function("all_documents_k10", |b| {
        b.iter(|| {
            index
                .search::<String>(black_box(q.next().expect("cycle")), None, 10)
                .expect("search")
        })
    });
    let mut q = queries.iter().cycle();
    group.bench_function("ten_documents_k10", |b| {
        b.iter(|| {
            index
                .search(black_box(q.next().expect("cycle")), Some(&subset), 10)
                .expect("search")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
