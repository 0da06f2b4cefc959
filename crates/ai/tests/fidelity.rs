//! The Rust decoder against the float32 reference of the same GGUF (issue #12).
//!
//! The converter installs, next to the model, the next-token log-probabilities of the GGUF
//! dequantized to float32 at 30 positions of fixed chat prompts (`fidelity.bin`) and the
//! token ids it fed (`fidelity.json`). This test feeds the same ids through
//! `lectern_ai::local`'s `Decoder` the way a generation does — one prefill, then one cached
//! token per step — and holds it to the bounds the preparation applies in Python. A
//! re-quantized model (version 1: mean KL 0.42, top-1 24/30) fails it; so would a decoder
//! that mishandles its KV cache, positions or mask.

use std::fs;

use lectern_ai::local::testing::local_backend;
use lectern_ai::local::{KvCache, generator_dir};
use lectern_ai::testing::models_dir;
use serde::Deserialize;

/// The largest mean KL divergence (reference ‖ decoder) allowed over all positions.
const MAX_MEAN_KL: f64 = 0.02;
/// The fewest positions whose most likely token must agree with the reference's.
const MIN_TOP1: usize = 29;
/// Positions the converter checks (the bounds above are meant for this many).
const POSITIONS: usize = 30;

/// `fidelity.json`, as far as this test reads it.
#[derive(Debug, Deserialize)]
struct Fidelity {
    /// Logits per position.
    vocab_size: usize,
    /// Rows in `fidelity.bin`.
    positions: usize,
    /// The prompts, in the order of the rows.
    sequences: Vec<Sequence>,
}

/// One prompt: its first `prefill` ids are fed at once, then one id per step; every forward
/// pass yields one row (the distribution of the token after what was fed).
#[derive(Debug, Deserialize)]
struct Sequence {
    ids: Vec<u32>,
    prefill: usize,
}

/// Log-softmax in f64.
fn log_probs(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let shifted: Vec<f64> = logits.iter().map(|&l| f64::from(l - max)).collect();
    let log_sum = shifted.iter().map(|s| s.exp()).sum::<f64>().ln();
    shifted.iter().map(|s| s - log_sum).collect()
}

fn argmax(values: impl Iterator<Item = f64>) -> usize {
    values
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0
}

#[test]
fn decoder_matches_the_float32_reference_of_the_gguf() {
    let backend = local_backend();
    let dir = generator_dir(&models_dir());
    let fidelity: Fidelity = serde_json::from_slice(
        &fs::read(dir.join("fidelity.json")).expect("fidelity.json is installed"),
    )
    .expect("fidelity.json parses");
    let bytes = fs::read(dir.join("fidelity.bin")).expect("fidelity.bin is installed");
    let vocab = fidelity.vocab_size;
    assert_eq!(fidelity.positions, POSITIONS);
    assert_eq!(vocab, backend.decoder().facts().vocab_size);
    assert_eq!(
        bytes.len(),
        POSITIONS * vocab * 4,
        "fidelity.bin holds [30, vocab] f32"
    );
    let reference: Vec<f64> = bytes
        .chunks_exact(4)
        .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        .collect();

    let decoder = backend.decoder();
    let mut kls = Vec::new();
    let mut agree = 0;
    for sequence in &fidelity.sequences {
        assert!(
            0 < sequence.prefill && sequence.prefill <= sequence.ids.len(),
            "{sequence:?}"
        );
        let mut cache = KvCache::new();
        // The prefill, then each remaining id as one cached step.
        let steps = std::iter::once(&sequence.ids[..sequence.prefill])
            .chain(sequence.ids[sequence.prefill..].chunks(1));
        for step in steps {
            let logits = decoder.forward(&mut cache, step).expect("forward pass");
            let row = kls.len();
            assert!(row < POSITIONS, "more positions than fidelity.bin holds");
            let expected = &reference[row * vocab..(row + 1) * vocab];
            let actual = log_probs(&logits);
            let kl: f64 = expected
                .iter()
                .zip(&actual)
                .map(|(&p, &q)| p.exp() * (p - q))
                .sum();
            kls.push(kl);
            if argmax(expected.iter().copied()) == argmax(actual.iter().copied()) {
                agree += 1;
            }
        }
        assert_eq!(
            cache.len(),
            sequence.ids.len(),
            "the cache covers every id fed"
        );
    }
    assert_eq!(kls.len(), POSITIONS, "every reference row compared");
    let mean_kl = kls.iter().sum::<f64>() / kls.len() as f64;
    let max_kl = kls.iter().copied().fold(0.0, f64::max);
    eprintln!("fidelity: mean KL {mean_kl:.6} (max {max_kl:.6}), top-1 {agree}/{POSITIONS}");
    assert!(
        mean_kl <= MAX_MEAN_KL && agree >= MIN_TOP1,
        "the decoder drifts from the GGUF: mean KL {mean_kl:.5} (at most {MAX_MEAN_KL}), \
         top-1 agreement {agree}/{POSITIONS} (at least {MIN_TOP1}); per position: {kls:.4?}"
    );
}
