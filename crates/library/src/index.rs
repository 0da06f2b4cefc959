//! Exact in-memory vector search, one index per classroom.
//!
//! A classroom's library is small enough (10⁴–10⁵ chunks) that an exact scan beats an
//! approximate index on every count that matters here: no recall loss, no build step,
//! inserts and deletes are trivial, and results are deterministic, which keeps citations
//! stable between identical questions.
//!
//! Vectors live per document in contiguous row-major buffers (`dims` values per chunk).
//! Per-document storage makes `remove_document` a map removal and a document filter a walk
//! over just those documents, while each segment is still one flat slice that the dot-product
//! loops (16 independent accumulators, so LLVM keeps them in SIMD registers without having
//! to reassociate one running sum) stream through.
//!
//! A scan is memory-bound: 100 000 × 384 `f32` is 154 MB per query, 20+ ms on this class of
//! machine. So each row is also kept as `i8` with a per-row scale (a quarter of the bytes),
//! and search runs in two passes that stay **exact**:
//! 1. Approximate every score from the `i8` rows, with a rigorous error bound per row
//!    (Cauchy–Schwarz on the quantisation residuals of row and query). The k-th largest
//!    *lower* bound is a floor under the true k-th score.
//! 2. Only rows whose *upper* bound reaches that floor can be in the top k; they (a few
//!    dozen in practice, all of them in the degenerate worst case) are rescored with the
//!    `f32` rows.
//!
//! Scores are cosine similarities: vectors are normalised on insert and the query on search,
//! so a dot product suffices. Ranking is by score descending, then `chunk_id` ascending, then
//! document id, so equal scores always come out in the same order.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;

/// Why a vector was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// The vector's length is not the index's dimension.
    #[error("vector has {got} dimensions, the index has {expected}")]
    Dimensions {
        /// The index's dimension.
        expected: usize,
        /// The vector's length.
        got: usize,
    },
    /// A NaN or infinite component, or an all-zero vector (it has no direction).
    #[error("vector is zero or has non-finite components")]
    Degenerate,
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The chunk's id, as given to [`VectorIndex::insert`].
    pub chunk_id: i64,
    /// The document the chunk belongs to.
    pub document_id: Arc<str>,
    /// Cosine similarity with the query, in `[-1, 1]`.
    pub score: f32,
}

/// The vectors of one document.
#[derive(Debug, Default)]
struct Segment {
    /// `chunk_ids.len() * dims` normalised floats, row `i` belongs to `chunk_ids[i]`.
    vectors: Vec<f32>,
    /// The same rows quantised: `vectors[j] ≈ quantised[j] * scales[row]`.
    quantised: Vec<i8>,
    /// Per-row quantisation scale.
    scales: Vec<f32>,
    /// Per-row L2 norm of the quantisation residual (`vector - quantised * scale`).
    residuals: Vec<f32>,
    chunk_ids: Vec<i64>,
}

impl Segment {
    fn push(&mut self, chunk_id: i64, normalised: &[f32]) {
        let q = Quantised::new(normalised);
        self.vectors.extend_from_slice(normalised);
        self.quantised.extend_from_slice(&q.values);
        self.scales.push(q.scale);
        self.residuals.push(q.residual);
        self.chunk_ids.push(chunk_id);
    }
}

/// A vector as `i8 × scale`, with the norm of what that loses.
struct Quantised {
    values: Vec<i8>,
    scale: f32,
    residual: f32,
}

impl Quantised {
    fn new(v: &[f32]) -> Self {
        let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        let mut residual = 0.0f32;
        let values = v
            .iter()
            .map(|&x| {
                // |x / scale| <= 127 by construction, so the cast cannot saturate.
                let q = (x / scale).round().clamp(-127.0, 127.0) as i8;
                let e = x - f32::from(q) * scale;
                residual += e * e;
                q
            })
            .collect();
        Quantised {
            values,
            scale,
            residual: residual.sqrt(),
        }
    }
}

/// Covers the float rounding of the bounds themselves (scores are within [-1, 1], so the
/// rounding is ~1e-6); generous on purpose, it only admits a few more rows to pass 2.
const BOUND_SLACK: f32 = 1e-4;

/// An exact cosine-similarity index over the chunks of one classroom.
#[derive(Debug)]
pub struct VectorIndex {
    dims: usize,
    documents: HashMap<Arc<str>, Segment>,
    len: usize,
}

impl VectorIndex {
    /// An empty index for vectors of `dims` components (384 for all-MiniLM-L6-v2).
    pub fn new(dims: usize) -> Self {
        VectorIndex {
            dims,
            documents: HashMap::new(),
            len: 0,
        }
    }

    /// The dimension every vector must have.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Number of chunks indexed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no chunk is indexed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of documents with at least one chunk.
    pub fn document_count(&self) -> usize {
        self.documents.len()
    }

    /// Adds a chunk's vector (normalised here, whatever the embedder did). Inserting the
    /// same `chunk_id` twice stores it twice: re-indexing a document goes through
    /// [`remove_document`](Self::remove_document) first.
    pub fn insert(
        &mut self,
        document_id: &str,
        chunk_id: i64,
        vector: &[f32],
    ) -> Result<(), IndexError> {
        let inv = self.inverse_norm(vector)?;
        let normalised: Vec<f32> = vector.iter().map(|x| x * inv).collect();
        let segment = match self.documents.get_mut(document_id) {
            Some(segment) => segment,
            None => self.documents.entry(Arc::from(document_id)).or_default(),
        };
        segment.push(chunk_id, &normalised);
        self.len += 1;
        Ok(())
    }

    /// Removes every chunk of a document; returns how many there were.
    pub fn remove_document(&mut self, document_id: &str) -> usize {
        let removed = self
            .documents
            .remove(document_id)
            .map_or(0, |s| s.chunk_ids.len());
        self.len -= removed;
        removed
    }

    /// The `k` chunks most similar to `query`, best first.
    ///
    /// With `documents`, only chunks of those documents are considered (unknown ids are
    /// ignored); the cost is then proportional to their chunks, not to the whole index.
    pub fn search<S>(
        &self,
        query: &[f32],
        documents: Option<&HashSet<S>>,
        k: usize,
    ) -> Result<Vec<Hit>, IndexError>
    where
        S: Borrow<str> + Eq + Hash,
    {
        let inv = self.inverse_norm(query)?;
        if k == 0 {
            return Ok(Vec::new());
        }
        let query: Vec<f32> = query.iter().map(|x| x * inv).collect();
        let segments: Vec<(&Arc<str>, &Segment)> = match documents {
            Some(ids) => ids
                .iter()
                .filter_map(|id| self.documents.get_key_value(id.borrow()))
                .collect(),
            None => self.documents.iter().collect(),
        };
        let rows: usize = segments.iter().map(|(_, s)| s.chunk_ids.len()).sum();
        let mut top = TopK::new(k);
        if rows <= k {
            // Everything is returned: no point in bounding.
            for (doc, segment) in &segments {
                for (row, &chunk_id) in segment
                    .vectors
                    .chunks_exact(self.dims)
                    .zip(&segment.chunk_ids)
                {
                    top.offer(dot(&query, row), chunk_id, doc);
                }
            }
            return Ok(top.into_hits());
        }

        // Pass 1: approximate scores and bounds from the i8 rows.
        let q = Quantised::new(&query);
        let q_norm = q
            .values
            .iter()
            .map(|&x| f32::from(x) * f32::from(x))
            .sum::<f32>()
            .sqrt()
            * q.scale;
        let q_wide: Vec<i16> = q.values.iter().map(|&x| i16::from(x)).collect();
        let mut floor = KthLargest::new(k);
        let mut uppers = Vec::with_capacity(rows);
        for (_, segment) in &segments {
            let rows = segment.quantised.chunks_exact(self.dims);
            for ((row, &scale), &residual) in rows.zip(&segment.scales).zip(&segment.residuals) {
                let approx = dot_i8(&q_wide, row) as f32 * (q.scale * scale);
                // |true - approx| <= |q̂ · e_row| + |e_q · row| <= ‖q̂‖ ‖e_row‖ + ‖e_q‖ ‖row‖,
                // and ‖row‖ = 1.
                let bound = q_norm * residual + q.residual + BOUND_SLACK;
                floor.offer(approx - bound);
                uppers.push(approx + bound);
            }
        }

        // Pass 2: rescore exactly the rows that can still reach the top k.
        let floor = floor.kth();
        let mut uppers = uppers.into_iter();
        for (doc, segment) in &segments {
            let rows = segment
                .vectors
                .chunks_exact(self.dims)
                .zip(&segment.chunk_ids);
            for ((row, &chunk_id), upper) in rows.zip(uppers.by_ref()) {
                if upper >= floor {
                    top.offer(dot(&query, row), chunk_id, doc);
                }
            }
        }
        Ok(top.into_hits())
    }

    fn inverse_norm(&self, vector: &[f32]) -> Result<f32, IndexError> {
        if vector.len() != self.dims {
            return Err(IndexError::Dimensions {
                expected: self.dims,
                got: vector.len(),
            });
        }
        let norm = dot(vector, vector).sqrt();
        if !norm.is_finite() || norm == 0.0 {
            return Err(IndexError::Degenerate);
        }
        Ok(1.0 / norm)
    }
}

/// Dot product with 16 independent partial sums: a single running sum is a serial
/// dependency chain that LLVM may not vectorise (float addition is not associative); 16
/// lanes map onto SSE/AVX registers.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let (a_chunks, a_rest) = a.as_chunks::<LANES>();
    let (b_chunks, b_rest) = b.as_chunks::<LANES>();
    let mut acc = [0.0f32; LANES];
    for (x, y) in a_chunks.iter().zip(b_chunks) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (x, y) in a_rest.iter().zip(b_rest) {
        sum += x * y;
    }
    sum
}

/// `i8` row times the query (widened to `i16` once per search, so only the row is widened
/// in the loop), accumulated in `i32` (384 products of at most 127² fit easily), in 16
/// lanes for the same reason as [`dot`].
fn dot_i8(a: &[i16], b: &[i8]) -> i32 {
    const LANES: usize = 16;
    let (a_chunks, a_rest) = a.as_chunks::<LANES>();
    let (b_chunks, b_rest) = b.as_chunks::<LANES>();
    let mut acc = [0i32; LANES];
    for (x, y) in a_chunks.iter().zip(b_chunks) {
        for i in 0..LANES {
            acc[i] += i32::from(x[i]) * i32::from(y[i]);
        }
    }
    let mut sum: i32 = acc.iter().sum();
    for (x, y) in a_rest.iter().zip(b_rest) {
        sum += i32::from(*x) * i32::from(*y);
    }
    sum
}

/// The k-th largest of the values offered (or -∞ while fewer than k were): a min-heap of
/// the k largest so far.
struct KthLargest {
    k: usize,
    heap: BinaryHeap<std::cmp::Reverse<OrdF32>>,
}

impl KthLargest {
    fn new(k: usize) -> Self {
        KthLargest {
            k,
            heap: BinaryHeap::with_capacity(k.min(1024) + 1),
        }
    }

    #[inline]
    fn offer(&mut self, value: f32) {
        if self.heap.len() < self.k {
            self.heap.push(std::cmp::Reverse(OrdF32(value)));
        } else if let Some(mut smallest) = self.heap.peek_mut()
            && value > smallest.0.0
        {
            *smallest = std::cmp::Reverse(OrdF32(value));
        }
    }

    fn kth(&self) -> f32 {
        if self.heap.len() < self.k {
            return f32::NEG_INFINITY;
        }
        self.heap.peek().map_or(f32::NEG_INFINITY, |r| r.0.0)
    }
}

/// `f32` with a total order, for the heap.
#[derive(Clone, Copy, PartialEq)]
struct OrdF32(f32);

impl Eq for OrdF32 {}
impl PartialOrd for OrdF32 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrdF32 {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// A candidate in the top-k heap, ordered so that the heap's maximum is the worst hit.
struct Candidate<'a> {
    score: f32,
    chunk_id: i64,
    doc: &'a Arc<str>,
}

impl Candidate<'_> {
    /// `Greater` when `self` ranks below `other`.
    fn worse(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then(self.chunk_id.cmp(&other.chunk_id))
            .then_with(|| self.doc.cmp(other.doc))
    }
}

impl PartialEq for Candidate<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.worse(other) == Ordering::Equal
    }
}
impl Eq for Candidate<'_> {}
impl PartialOrd for Candidate<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.worse(other)
    }
}

/// The best `k` candidates seen so far: a max-heap of "worseness", so the one to evict is
/// on top and most rows are rejected by one comparison with it.
struct TopK<'a> {
    k: usize,
    heap: BinaryHeap<Candidate<'a>>,
}

impl<'a> TopK<'a> {
    fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k.min(1024) + 1),
        }
    }

    #[inline]
    fn offer(&mut self, score: f32, chunk_id: i64, doc: &'a Arc<str>) {
        if self.heap.len() < self.k {
            self.heap.push(Candidate {
                score,
                chunk_id,
                doc,
            });
            return;
        }
        if let Some(mut worst) = self.heap.peek_mut() {
            // Fast path: strictly lower scores (nearly every row) cannot enter.
            if score < worst.score {
                return;
            }
            let candidate = Candidate {
                score,
                chunk_id,
                doc,
            };
            if candidate.worse(&worst) == Ordering::Less {
                *worst = candidate;
            }
        }
    }

    fn into_hits(self) -> Vec<Hit> {
        // Ascending "worseness" is best first.
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|c| Hit {
                chunk_id: c.chunk_id,
                document_id: Arc::clone(c.doc),
                score: c.score,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_handles_remainders() {
        let a: Vec<f32> = (0..37).map(|i| i as f32).collect();
        let expected: f32 = a.iter().map(|x| x * x).sum();
        assert!((dot(&a, &a) - expected).abs() < 1e-3);
    }

    #[test]
    fn ties_are_broken_by_chunk_id() {
        let mut index = VectorIndex::new(2);
        for id in [5, 3, 9, 1] {
            index.insert("d", id, &[1.0, 0.0]).expect("insert");
        }
        let hits = index
            .search::<String>(&[1.0, 0.0], None, 3)
            .expect("search");
        let ids: Vec<i64> = hits.iter().map(|h| h.chunk_id).collect();
        assert_eq!(ids, vec![1, 3, 5]);
    }

    #[test]
    fn bad_vectors_are_refused() {
        let mut index = VectorIndex::new(3);
        assert_eq!(
            index.insert("d", 1, &[1.0]),
            Err(IndexError::Dimensions {
                expected: 3,
                got: 1
            })
        );
        assert_eq!(index.insert("d", 1, &[0.0; 3]), Err(IndexError::Degenerate));
        assert_eq!(
            index.insert("d", 1, &[f32::NAN, 1.0, 0.0]),
            Err(IndexError::Degenerate)
        );
        assert!(index.is_empty());
    }
}
