//! Token buckets, in process.
//!
//! Keyed by who is asking (an account id, or the email being tried for login). The client
//! address is a key only where nothing better identifies the caller: login, registration,
//! refresh and document tokens, with generous limits, because a whole class sits behind
//! one school NAT and shares that address.
//!
//! A std `Mutex` rather than a tokio one: the critical section is a hash lookup and some
//! arithmetic, never held across an `.await`, so blocking is shorter than a task switch.
//! The limits are per node; behind a load balancer each node enforces its own.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use crate::AppState;
use crate::config::IpBlock;

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

    /// Gives back the token an attempt took (the attempt turned out not to count, e.g. a
    /// correct password). Never beyond the burst.
    pub fn refund(&self, key: &str) {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(bucket) = buckets.get_mut(key) {
            bucket.tokens = (bucket.tokens + 1.0).min(self.capacity);
        }
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
    /// Failed logins (and registrations), keyed by the email tried and the client address:
    /// a low threshold that locks out only the address doing the guessing.
    pub login: RateLimiter,
    /// Failed logins keyed by the email alone, from every address: a much higher ceiling
    /// against guessing spread over many addresses.
    pub login_email: RateLimiter,
    /// Login, registration and refresh requests, keyed by client address.
    pub login_address: RateLimiter,
    /// Document-token requests, keyed by client address.
    pub doc_tokens: RateLimiter,
}

/// The client's address as a rate-limit key, when the server knows it (the TCP peer,
/// from the `ConnectInfo<SocketAddr>` the serve loop attaches to each connection; without
/// it, per-address limits are skipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub Option<IpAddr>);

impl ClientAddress {
    /// The key for this address: IPv4 as is, IPv6 by its /64 prefix (one host usually
    /// holds a whole /64, so per-address limits would otherwise be free to dodge).
    pub fn key(self) -> Option<String> {
        self.0.map(|address| match address {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let s = v6.segments();
                    let prefix = Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                    format!("{prefix}/64")
                }
            },
        })
    }
}

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.ip());
        let forwarded = parts
            .headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|value| value.to_str().ok());
        Ok(Self(peer.map(|peer| {
            client_ip(peer, forwarded, &state.config().trusted_proxies)
        })))
    }
}

const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// The client behind `peer`: the peer itself, unless it is a trusted proxy; then the
/// rightmost `X-Forwarded-For` entry that is not a trusted proxy (entries left of it were
/// written by the client and prove nothing). Unparsable entries end the walk at the last
/// trusted hop.
fn client_ip<'a>(
    peer: IpAddr,
    forwarded: impl Iterator<Item = &'a str>,
    trusted: &[IpBlock],
) -> IpAddr {
    let is_trusted = |address: IpAddr| trusted.iter().any(|block| block.contains(address));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded.flat_map(|value| value.split(',')).collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(address) = hop.trim().parse::<IpAddr>() else {
            break;
        };
        client = address;
        if !is_trusted(address) {
            break;
        }
    }
    client
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
    fn refunds_give_back_one_token_up_to_the_burst() {
        let limiter = RateLimiter::new(1, 2);
        assert!(limiter.check("alice").is_ok());
        assert!(limiter.check("alice").is_ok());
        assert!(limiter.check("alice").is_err());
        limiter.refund("alice");
        assert!(limiter.check("alice").is_ok());
        limiter.refund("alice");
        limiter.refund("alice");
        limiter.refund("alice");
        assert!(limiter.check("alice").is_ok());
        assert!(limiter.check("alice").is_ok());
        assert!(limiter.check("alice").is_err(), "never beyond the burst");
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_prefix() {
        let key = |text: &str| ClientAddress(Some(text.parse().expect("ip"))).key();
        assert_eq!(key("192.0.2.7").as_deref(), Some("192.0.2.7"));
        assert_eq!(key("::ffff:192.0.2.7").as_deref(), Some("192.0.2.7"));
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::2"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(ClientAddress(None).key(), None);
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

    fn block(text: &str) -> IpBlock {
        let (address, prefix) = text.split_once('/').expect("cidr");
        IpBlock {
            address: address.parse().expect("address"),
            prefix: prefix.parse().expect("prefix"),
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let trusted = [block("10.0.0.0/8")];
        // From an untrusted peer the header is the client's own word: ignored.
        let header = ["1.2.3.4"];
        assert_eq!(
            client_ip(ip("203.0.113.9"), header.into_iter(), &trusted),
            ip("203.0.113.9")
        );
        // Behind the proxy: the rightmost hop the proxies did not add, whatever the client
        // wrote to the left of it.
        let header = ["6.6.6.6, 198.51.100.7", "10.1.2.3"];
        assert_eq!(
            client_ip(ip("10.0.0.1"), header.into_iter(), &trusted),
            ip("198.51.100.7")
        );
        // No header, or garbage: the proxy's own address (all its clients share a key).
        assert_eq!(
            client_ip(ip("10.0.0.1"), std::iter::empty(), &trusted),
            ip("10.0.0.1")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), ["nonsense"].into_iter(), &trusted),
            ip("10.0.0.1")
        );
        // Nothing trusted: never read.
        assert_eq!(
            client_ip(ip("10.0.0.1"), ["198.51.100.7"].into_iter(), &[]),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn ip_blocks_match_by_prefix() {
        assert!(block("10.0.0.0/8").contains(ip("10.255.0.1")));
        assert!(!block("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(block("192.168.1.0/23").contains(ip("192.168.0.77")));
        assert!(!block("192.168.1.0/24").contains(ip("192.168.0.77")));
        assert!(block("fd00::/8").contains(ip("fd12::1")));
        assert!(block("127.0.0.1/32").contains(ip("::ffff:127.0.0.1")));
        assert!(!block("fd00::/8").contains(ip("10.0.0.1")));
        assert!(block("0.0.0.0/0").contains(ip("8.8.8.8")));
    }
}
