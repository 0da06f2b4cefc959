//! Percentiles of latency samples.
//!
//! Samples are whole microseconds in a `u32` (71 minutes at most), collected per client task
//! without locks and merged once at the end; a sorted `Vec` is exact and, at a few million
//! samples, cheaper than keeping a histogram in every task.

use serde::Serialize;

/// Nearest-rank percentile of an ascending slice: the smallest sample such that at least
/// `p` percent of the samples are less than or equal to it. `None` when empty.
pub fn percentile(sorted: &[u32], p: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Summary of a latency distribution, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Dist {
    /// Number of samples.
    pub n: usize,
    /// Median.
    pub p50_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// Largest sample.
    pub max_ms: Option<f64>,
}

impl Dist {
    /// Summarises microsecond samples (sorts them in place).
    pub fn from_micros(samples: &mut [u32]) -> Dist {
        samples.sort_unstable();
        let ms = |v: Option<u32>| v.map(|us| f64::from(us) / 1000.0);
        Dist {
            n: samples.len(),
            p50_ms: ms(percentile(samples, 50.0)),
            p99_ms: ms(percentile(samples, 99.0)),
            max_ms: ms(samples.last().copied()),
        }
    }
}

/// Microseconds in a duration, saturating at `u32::MAX`.
pub fn micros(d: std::time::Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 99.5), Some(100));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
    }

    #[test]
    fn small_and_empty_sets() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7], 99.0), Some(7));
        // 2 samples: the median is the lower one, p99 the upper one.
        assert_eq!(percentile(&[1, 9], 50.0), Some(1));
        assert_eq!(percentile(&[1, 9], 99.0), Some(9));
        // 3 samples: ceil(0.5 * 3) = 2nd.
        assert_eq!(percentile(&[1, 2, 3], 50.0), Some(2));
    }

    #[test]
    fn dist_sorts_and_converts_to_ms() {
        let mut v = vec![3000, 1000, 2000, 250_000];
        let d = Dist::from_micros(&mut v);
        assert_eq!(d.n, 4);
        assert_eq!(d.p50_ms, Some(2.0));
        assert_eq!(d.p99_ms, Some(250.0));
        assert_eq!(d.max_ms, Some(250.0));
        assert_eq!(Dist::from_micros(&mut []).p50_ms, None);
    }
}
