//! A token bucket, for limits on how often one client may do something (awareness updates
//! in a room, frames on a socket). Owned by that one client's state, so no lock: callers
//! hold it by `&mut`.

use tokio::time::Instant;

/// `rate` tokens per second, holding at most `burst`; starts full.
#[derive(Debug)]
pub struct TokenBucket {
    /// Tokens left (fractional: refill is continuous).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    refilled: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens.
    pub fn full(burst: u32) -> Self {
        Self {
            tokens: f64::from(burst),
            refilled: Instant::now(),
        }
    }

    /// Takes one token if there is one, refilling at `rate` per second up to `burst`.
    pub fn take(&mut self, rate: u32, burst: u32) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * f64::from(rate)).min(f64::from(burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn bursts_then_refills_at_the_rate() {
        let mut bucket = TokenBucket::full(3);
        for _ in 0..3 {
            assert!(bucket.take(2, 3));
        }
        assert!(!bucket.take(2, 3), "burst spent");
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(bucket.take(2, 3), "one token after half a second at 2/s");
        assert!(!bucket.take(2, 3));
        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..3 {
            assert!(bucket.take(2, 3));
        }
        assert!(!bucket.take(2, 3), "never more than the burst");
    }
}
