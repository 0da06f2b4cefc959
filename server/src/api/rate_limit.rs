//! Per-user token buckets, in process.
//!
//! Keyed by who is asking (an account id, or the email being tried for login), never by IP
//! address: a whole class sits behind one school NAT and must not share one budget.
//!
//! A std `Mutex` rather than a tokio one: the critical section is a hash lookup and some
//! arithmetic, never held across an `.await`, so blocking is shorter than a task switch.
//! The limits are per node; behind a load balancer each node enforces its own.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Above this many tracked keys, buckets that have refilled completely are dropped (they
/// hold no information: a new bucket starts full).
const PRUNE_ABOVE: usize = 10_000;

/// A token bucket per key.
#[derive(Debug)]
pub struct RateLimiter {
    /// Most tokens a bucket holds: the burst.
    capacity: f64,
    /// Tokens added per second: the sustained rate.
    refill_per_sec: f64,
    /// Bucket per key.
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens left (fractional: refill is continuous).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Instant,
}

impl RateLimiter {
    /// `per_minute` sustained, bursts of up to `burst` (both at least 1).
    pub fn new(per_minute: u32, burst: u32) -> Self {
        Self {
            capacity: f64::from(burst.max(1)),
            refill_per_sec: f64::from(per_minute.max(1)) / 60.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`, or says how long until one is available.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        // A poisoned lock only means another request panicked mid-update; the counts are
        // still usable.
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, bucket| self.refilled(*bucket, now) < self.capacity);
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.capacity,
            updated: now,
        });
        bucket.tokens = self.refilled(*bucket, now);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.refill_per_sec,
            ))
        }
    }

    fn refilled(&self, bucket: Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        (bucket.tokens + elapsed * self.refill_per_sec).min(self.capacity)
    }
}

/// The limiters the API uses.
#[derive(Debug)]
pub struct RateLimits {
    /// Authenticated requests, keyed by principal.
    pub api: RateLimiter,
    /// Login and registration, keyed by the email tried.
    pub login: RateLimiter,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills_at_the_sustained_rate() {
        let limiter = RateLimiter::new(60, 3); // one token per second
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at("alice", start).is_ok());
        }
        let wait = limiter.check_at("alice", start).expect_err("burst spent");
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
        // Someone else behind the same NAT is unaffected.
        assert!(limiter.check_at("bob", start).is_ok());
        assert!(
            limiter
                .check_at("alice", start + Duration::from_secs(1))
                .is_ok()
        );
        assert!(
            limiter
                .check_at("alice", start + Duration::from_secs(1))
                .is_err()
        );
    }

    #[test]
    fn idle_full_buckets_are_pruned() {
        let limiter = RateLimiter::new(60, 1);
        let start = Instant::now();
        for key in 0..=PRUNE_ABOVE {
            let _ = limiter.check_at(&key.to_string(), start);
        }
        let later = start + Duration::from_secs(5);
        let _ = limiter.check_at("fresh", later);
        let tracked = limiter.buckets.lock().expect("lock").len();
        assert_eq!(tracked, 1, "refilled buckets carry no state");
    }
}
