//! Choosing the next token from the logits: greedy, or temperature with nucleus (top-p).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

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
