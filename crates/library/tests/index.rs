//! Vector index: exact top-k, document filter, removal.

use std::collections::HashSet;

use lectern_library::{Hit, VectorIndex};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DIMS: usize = 48;

fn random_vector(rng: &mut StdRng) -> Vec<f32> {
    (0..DIMS).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn normalised(v: &[f32]) -> Vec<f64> {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    v.iter().map(|x| f64::from(*x) / norm).collect()
}

struct Fixture {
    index: VectorIndex,
    rows: Vec<(String, i64, Vec<f64>)>,
}

fn fixture(seed: u64, n: usize, docs: usize) -> Fixture {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut index = VectorIndex::new(DIMS);
    let mut rows = Vec::new();
    for i in 0..n {
        let doc = format!("doc-{}", rng.random_range(0..docs));
        let v = random_vector(&mut rng);
        index.insert(&doc, i as i64, &v).expect("insert");
        rows.push((doc, i as i64, normalised(&v)));
    }
    Fixture { index, rows }
}

/// Brute force in f64: sort everything, best first, ties by chunk id.
fn reference(
    rows: &[(String, i64, Vec<f64>)],
    query: &[f32],
    docs: Option<&HashSet<String>>,
    k: usize,
) -> Vec<(i64, f64)> {
    let q = normalised(query);
    let mut scored: Vec<(i64, f64)> = rows
        .iter()
        .filter(|(doc, _, _)| docs.is_none_or(|d| d.contains(doc)))
        .map(|(_, id, v)| (*id, v.iter().zip(&q).map(|(a, b)| a * b).sum()))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.truncate(k);
    scored
}

fn assert_same(hits: &[Hit], expected: &[(i64, f64)]) {
    let ids: Vec<i64> = hits.iter().map(|h| h.chunk_id).collect();
    let expected_ids: Vec<i64> = expected.iter().map(|e| e.0).collect();
    assert_eq!(ids, expected_ids);
    for (hit, (_, score)) in hits.iter().zip(expected) {
        assert!(
            (f64::from(hit.score) - score).abs() < 1e-5,
            "{} vs {score}",
            hit.score
        );
    }
}

#[test]
fn top_k_matches_brute_force() {
    let f = fixture(1, 3000, 12);
    assert_eq!(f.index.len(), 3000);
    let mut rng = StdRng::seed_from_u64(99);
    for k in [1, 10, 50] {
        for _ in 0..20 {
            let q = random_vector(&mut rng);
            let hits = f.index.search::<String>(&q, None, k).expect("search");
            assert_same(&hits, &reference(&f.rows, &q, None, k));
        }
    }
}

#[test]
fn document_filter_restricts_hits() {
    let f = fixture(2, 2000, 10);
    let allowed: HashSet<String> = ["doc-1", "doc-4", "doc-7", "no-such-doc"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut rng = StdRng::seed_from_u64(5);
    for _ in 0..20 {
        let q = random_vector(&mut rng);
        let hits = f.index.search(&q, Some(&allowed), 10).expect("search");
        assert!(hits.iter().all(|h| allowed.contains(&*h.document_id)));
        assert_same(&hits, &reference(&f.rows, &q, Some(&allowed), 10));
    }
    let none: HashSet<&str> = HashSet::new();
    assert!(
        f.index
            .search(&random_vector(&mut rng), Some(&none), 10)
            .expect("search")
            .is_empty()
    );
}

#[test]
fn remove_document_drops_its_chunks() {
    let mut f = fixture(3, 1000, 5);
    let in_doc = f.rows.iter().filter(|r| r.0 == "doc-2").count();
    assert_eq!(f.index.remove_document("doc-2"), in_doc);
    assert_eq!(f.index.remove_document("doc-2"), 0);
    assert_eq!(f.index.len(), 1000 - in_doc);
    f.rows.retain(|r| r.0 != "doc-2");
    let mut rng = StdRng::seed_from_u64(8);
    for _ in 0..10 {
        let q = random_vector(&mut rng);
        let hits = f.index.search::<String>(&q, None, 20).expect("search");
        assert!(hits.iter().all(|h| &*h.document_id != "doc-2"));
        assert_same(&hits, &reference(&f.rows, &q, None, 20));
    }
}

#[test]
fn k_larger_than_the_index_returns_everything_sorted() {
    let f = fixture(4, 7, 2);
    let q = vec![0.5; DIMS];
    let hits = f.index.search::<String>(&q, None, 100).expect("search");
    assert_eq!(hits.len(), 7);
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(
        f.index
            .search::<String>(&q, None, 0)
            .expect("search")
            .is_empty()
    );
}

#[test]
fn unnormalised_vectors_score_as_cosine() {
    let mut index = VectorIndex::new(3);
    index.insert("d", 1, &[10.0, 0.0, 0.0]).expect("insert");
    index.insert("d", 2, &[0.0, 0.1, 0.0]).expect("insert");
    let hits = index
        .search::<String>(&[3.0, 3.0, 0.0], None, 2)
        .expect("search");
    assert!((hits[0].score - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
    assert!((hits[0].score - hits[1].score).abs() < 1e-6);
    assert_eq!(hits[0].chunk_id, 1, "ties go to the lower chunk id");
}

/// Near-duplicate vectors score within the quantisation error bound of each other, so the
/// second pass rescores most rows: the order must still be exact.
#[test]
fn near_duplicates_are_ranked_exactly() {
    let mut rng = StdRng::seed_from_u64(11);
    let base = random_vector(&mut rng);
    let mut index = VectorIndex::new(DIMS);
    let mut rows = Vec::new();
    for i in 0..2000 {
        let v: Vec<f32> = base
            .iter()
            .map(|x| x + rng.random_range(-1e-2f32..1e-2))
            .collect();
        let doc = format!("doc-{}", i % 3);
        index.insert(&doc, i, &v).expect("insert");
        rows.push((doc, i, normalised(&v)));
    }
    for _ in 0..10 {
        let q: Vec<f32> = base
            .iter()
            .map(|x| x + rng.random_range(-0.05f32..0.05))
            .collect();
        let hits = index.search::<String>(&q, None, 10).expect("search");
        let expected = reference(&rows, &q, None, 10);
        assert_same(&hits, &expected);
    }
}
