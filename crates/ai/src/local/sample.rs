//! Choosing the next token from the logits: greedy, or temperature with nucleus (top-p),
//! after [`Repetition`] control has discouraged the model from repeating itself.

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Divides a positive logit (multiplies a negative one) of a word the answer used
/// recently. 1.0 disables it.
const PENALTY: f32 = 1.15;

/// How many recent content tokens the penalty looks at.
const PENALTY_WINDOW: usize = 64;

/// Content tokens in a row that may not appear twice in an answer (0 disables the ban).
const NO_REPEAT_NGRAM: usize = 6;

/// Keeps the small model from looping.
///
/// SmolLM2-135M, decoded greedily, falls into cycles: a sentence or a whole "Passage: …"
/// block again and again until the token limit. Two measures, both over the answer's own
/// tokens (never the prompt, whose words the answer should reuse):
/// - a **repetition penalty** (CTRL-style, as llama.cpp's `repeat_penalty`) on the words of
///   the last [`PENALTY_WINDOW`] content tokens, which nudges away from short loops;
/// - a **no-repeat n-gram ban**: a content token that would complete a run of
///   [`NO_REPEAT_NGRAM`] content tokens already written is not allowed. This is what ends
///   long cycles, however long their period, which a windowed penalty cannot see.
///
/// Only *content* tokens — those writing letters — are judged and counted. Punctuation,
/// digits, whitespace and newlines are the skeleton of JSON and outlines (`","`, `"},{"`,
/// `"\n  - "`, answer indices, minutes) and legitimately repeat, so under a grammar the
/// control never pushes against the structure the grammar requires, and a ban that would
/// leave no allowed token at all is skipped.
#[derive(Debug)]
pub(crate) struct Repetition {
    /// Per token id, whether it writes letters (see `constrain.rs`).
    content: Arc<[bool]>,
    /// The content tokens of the answer so far, in order.
    written: Vec<u32>,
}

impl Repetition {
    /// Control for a new answer; `content` flags the token ids that write letters.
    pub(crate) fn new(content: Arc<[bool]>) -> Self {
        Self {
            content,
            written: Vec::new(),
        }
    }

    /// Records a token of the answer (sampled or forced by a grammar).
    pub(crate) fn push(&mut self, token: u32) {
        if self.is_content(token) {
            self.written.push(token);
        }
    }

    fn is_content(&self, token: u32) -> bool {
        self.content.get(token as usize).copied().unwrap_or(false)
    }

    /// Applies the penalty and the ban to the next step's `logits` (already masked by a
    /// grammar, if any: −∞ marks a disallowed token).
    pub(crate) fn apply(&self, logits: &mut [f32]) {
        let recent = &self.written[self.written.len().saturating_sub(PENALTY_WINDOW)..];
        let mut seen = Vec::with_capacity(recent.len());
        for &token in recent {
            if seen.contains(&token) {
                continue;
            }
            seen.push(token);
            if let Some(logit) = logits.get_mut(token as usize) {
                *logit = if *logit > 0.0 {
                    *logit / PENALTY
                } else {
                    *logit * PENALTY
                };
            }
        }
        let banned = self.banned();
        let allowed_left = logits
            .iter()
            .enumerate()
            .any(|(id, logit)| logit.is_finite() && !banned.contains(&(id as u32)));
        if allowed_left {
            for token in banned {
                if let Some(logit) = logits.get_mut(token as usize) {
                    *logit = f32::NEG_INFINITY;
                }
            }
        }
    }

    /// The content tokens that would repeat a run of [`NO_REPEAT_NGRAM`] content tokens.
    fn banned(&self) -> Vec<u32> {
        let n = NO_REPEAT_NGRAM;
        if n == 0 || self.written.len() < n {
            return Vec::new();
        }
        let tail = &self.written[self.written.len() - (n - 1)..];
        self.written
            .windows(n)
            .filter(|window| &window[..n - 1] == tail)
            .map(|window| window[n - 1])
            .collect()
    }
}

/// Picks tokens for one generation.
#[derive(Debug)]
pub(crate) enum Sampler {
    /// The most likely token every time (temperature 0): deterministic.
    Greedy,
    /// Softmax at `temperature`, cut to the smallest set of tokens whose probability
    /// reaches `top_p`, then a random draw.
    Nucleus {
        /// Divides the logits; below 1 sharpens, above 1 flattens.
        temperature: f32,
        /// Probability mass kept (1 keeps every token).
        top_p: f32,
        /// The random source (seeded in tests); boxed, as it is large next to `Greedy`.
        rng: Box<StdRng>,
    },
}

impl Sampler {
    /// A sampler for the request's settings; `seed` makes sampling reproducible.
    pub(crate) fn new(temperature: f32, top_p: f32, seed: Option<u64>) -> Self {
        if !(temperature.is_finite() && temperature > 0.0) {
            return Self::Greedy;
        }
        let rng = match seed {
            Some(seed) => Box::new(StdRng::seed_from_u64(seed)),
            None => Box::new(StdRng::from_os_rng()),
        };
        let top_p = if top_p.is_finite() {
            top_p.clamp(0.0, 1.0)
        } else {
            1.0
        };
        Self::Nucleus {
            temperature,
            top_p,
            rng,
        }
    }

    /// The next token id.
    pub(crate) fn pick(&mut self, logits: &[f32]) -> u32 {
        match self {
            Self::Greedy => argmax(logits),
            Self::Nucleus {
                temperature,
                top_p,
                rng,
            } => nucleus(logits, *temperature, *top_p, rng.random::<f32>()),
        }
    }
}

/// The index of the largest logit (the first one on ties; NaN never wins).
pub(crate) fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    let mut best_value = f32::NEG_INFINITY;
    for (index, &value) in logits.iter().enumerate() {
        if value > best_value {
            best = index;
            best_value = value;
        }
    }
    u32::try_from(best).unwrap_or(0)
}

/// Temperature + top-p sampling with `draw` uniform in [0, 1).
fn nucleus(logits: &[f32], temperature: f32, top_p: f32, draw: f32) -> u32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return argmax(logits);
    }
    let mut candidates: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .map(|(index, &logit)| {
            (
                u32::try_from(index).unwrap_or(0),
                ((logit - max) / temperature).exp(),
            )
        })
        // Negligible tokens cannot be in any nucleus worth keeping; dropping them first
        // makes the sort small.
        .filter(|&(_, weight)| weight > 1e-9)
        .collect();
    let sum: f32 = candidates.iter().map(|&(_, weight)| weight).sum();
    candidates.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut kept = 0.0;
    let mut end = 0;
    for &(_, weight) in &candidates {
        kept += weight;
        end += 1;
        if kept >= top_p * sum {
            break;
        }
    }
    let candidates = &candidates[..end.max(1)];
    let mut target = draw * kept;
    for &(id, weight) in candidates {
        if target < weight {
            return id;
        }
        target -= weight;
    }
    candidates.last().map_or(0, |&(id, _)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids below 100 write letters; 100 and above are punctuation.
    fn repetition() -> Repetition {
        let content: Arc<[bool]> = (0..120).map(|id| id < 100).collect();
        Repetition::new(content)
    }

    #[test]
    fn a_run_already_written_cannot_be_completed_again() {
        let mut control = repetition();
        // Content run 1 2 3 4 5 6; punctuation in between does not count.
        for token in [1, 100, 2, 3, 101, 4, 5, 6, 102, 1, 2, 3, 4, 5] {
            control.push(token);
        }
        let mut logits = vec![1.0; 120];
        logits[6] = 50.0;
        control.apply(&mut logits);
        assert_eq!(logits[6], f32::NEG_INFINITY, "6 would repeat 1 2 3 4 5 6");
        assert_eq!(argmax(&logits), 0, "another token wins");
        assert!(
            logits[100..].iter().all(|&l| l == 1.0),
            "punctuation untouched"
        );
    }

    #[test]
    fn the_ban_yields_when_it_would_leave_no_token() {
        let mut control = repetition();
        for token in [1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5] {
            control.push(token);
        }
        // A grammar allows only 6 here.
        let mut logits = vec![f32::NEG_INFINITY; 120];
        logits[6] = 2.0;
        control.apply(&mut logits);
        assert_eq!(argmax(&logits), 6);
        assert!(logits[6].is_finite());
    }

    #[test]
    fn recent_words_are_penalised_and_older_or_structural_ones_not() {
        let mut control = repetition();
        control.push(2);
        control.push(110);
        for token in 10..10 + PENALTY_WINDOW as u32 {
            control.push(token);
        }
        let mut logits = vec![2.0; 120];
        logits[11] = -2.0;
        control.apply(&mut logits);
        assert!(
            (logits[10] - 2.0 / PENALTY).abs() < 1e-6,
            "recent: {}",
            logits[10]
        );
        assert!(
            (logits[11] + 2.0 * PENALTY).abs() < 1e-6,
            "negative pushed down: {}",
            logits[11]
        );
        assert_eq!(logits[2], 2.0, "out of the window");
        assert_eq!(logits[110], 2.0, "punctuation is never penalised");
        assert_eq!(logits[99], 2.0, "never written");
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        assert_eq!(argmax(&[0.1, 3.0, 3.0, -1.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 1.0]), 1);
    }

    #[test]
    fn a_tiny_top_p_keeps_only_the_best_token() {
        let logits = [1.0, 5.0, 4.9, 0.0];
        for draw in [0.0, 0.5, 0.999] {
            assert_eq!(nucleus(&logits, 1.0, 0.01, draw), 1);
        }
    }

    #[test]
    fn the_nucleus_excludes_the_tail() {
        // Probabilities ≈ 0.665, 0.245, 0.090: top_p 0.8 keeps the first two.
        let logits = [2.0, 1.0, 0.0];
        let mut seen = [0; 3];
        for step in 0..1000 {
            let draw = step as f32 / 1000.0;
            seen[nucleus(&logits, 1.0, 0.8, draw) as usize] += 1;
        }
        assert_eq!(seen[2], 0, "{seen:?}");
        assert!(seen[0] > seen[1] && seen[1] > 0, "{seen:?}");
    }

    #[test]
    fn a_seeded_sampler_repeats_itself() {
        let logits: Vec<f32> = (0..100).map(|i| (i % 7) as f32 * 0.3).collect();
        let picks = |seed| {
            let mut sampler = Sampler::new(0.8, 0.95, Some(seed));
            (0..20).map(|_| sampler.pick(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(picks(7), picks(7));
        assert!(matches!(Sampler::new(0.0, 1.0, None), Sampler::Greedy));
    }
}
