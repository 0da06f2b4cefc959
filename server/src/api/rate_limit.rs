//! Token buckets: in Redis for a cluster, in process for a node on its own.
//!
//! Keyed by who is asking (an account id, or the email being tried for login). The client
//! address is a key only where nothing better identifies the caller: login, registration,
//! refresh and document tokens, with generous limits, because a whole class sits behind
//! one school NAT and shares that address.
//!
//! In a cluster every node takes its tokens from one bucket per key in Redis
//! (`{prefix}:rate:{limiter}:{key}`, a hash of tokens and the time they were counted),
//! updated atomically by one Lua script (`TOKEN_BUCKET_LUA`), so a limit holds however the
//! load balancer spreads the requests. The script reads Redis' own clock (`TIME`) rather
//! than taking the caller's: the nodes' clocks may disagree, and a node whose clock runs
//! ahead would refill every bucket it touches early (behind, it would refill none). Redis
//! 7 replicates scripts by their effects, so reading the clock in a script that writes is
//! allowed. A bucket expires once it would have refilled completely (a missing bucket is
//! a full one), so idle keys cost Redis nothing.
//!
//! When Redis does not answer (see `cluster_store.rs`) the node's in-process buckets
//! decide, as they do on a node on its own: each node then enforces the limit alone.
//! A std `Mutex` guards them rather than a tokio one: the critical section is a hash
//! lookup and some arithmetic, never held across an `.await`, so blocking is shorter than
//! a task switch.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use crate::AppState;
use crate::cluster_store::ClusterStore;
use crate::config::IpBlock;

/// Above this many tracked keys, buckets that have refilled completely are dropped (they
/// hold no information: a new bucket starts full).
const PRUNE_ABOVE: usize = 10_000;

/// One token bucket, taken from or refunded to atomically in Redis.
///
/// KEYS[1]: the bucket, a hash (`tokens`, and `at`, Redis' clock in milliseconds when they
/// were counted). ARGV: the capacity, the tokens added per millisecond, and 1 to take a
/// token or -1 to give one back. Returns {1, 0} when taken (or given back), {0, wait in
/// milliseconds until a token is available} when refused.
const TOKEN_BUCKET_LUA: &str = r"
local capacity = tonumber(ARGV[1])
local per_ms = tonumber(ARGV[2])
local change = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local stored = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(stored[1])
local at = tonumber(stored[2])
if tokens == nil or at == nil then
  if change < 0 then
    return {1, 0}
  end
  tokens = capacity
  at = now
end
if now > at then
  tokens = math.min(capacity, tokens + (now - at) * per_ms)
end
local taken = 1
local wait = 0
if change < 0 then
  tokens = math.min(capacity, tokens + 1)
elseif tokens >= 1 then
  tokens = tokens - 1
else
  taken = 0
  wait = math.ceil((1 - tokens) / per_ms)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((capacity - tokens) / per_ms)))
return {taken, wait}
";

/// [`TOKEN_BUCKET_LUA`], loaded into Redis on first use (by its hash afterwards).
static TOKEN_BUCKET: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(TOKEN_BUCKET_LUA));

/// A token bucket per key.
#[derive(Debug)]
pub struct RateLimiter {
    /// The limiter's name in Redis keys (`api`, `login`...).
    name: &'static str,
    /// Most tokens a bucket holds: the burst.
    capacity: f64,
    /// Tokens added per second: the sustained rate.
    refill_per_sec: f64,
    /// Bucket per key, in process: all there is on a node on its own, the fallback in a
    /// cluster.
    buckets: Mutex<HashMap<String, Bucket>>,
    /// Where a cluster's buckets are.
    store: ClusterStore,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens left (fractional: refill is continuous).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Instant,
}

impl RateLimiter {
    /// `per_minute` sustained, bursts of up to `burst` (both at least 1), shared through
    /// `store` in a cluster under `name` (unique per limiter).
    pub(crate) fn new(
        name: &'static str,
        per_minute: u32,
        burst: u32,
        store: &ClusterStore,
    ) -> Self {
        Self {
            name,
            capacity: f64::from(burst.max(1)),
            refill_per_sec: f64::from(per_minute.max(1)) / 60.0,
            buckets: Mutex::new(HashMap::new()),
            store: store.clone(),
        }
    }

    /// Takes one token for `key`, or says how long until one is available.
    pub async fn check(&self, key: &str) -> Result<(), Duration> {
        if self.store.is_shared()
            && let Some(verdict) = self.shared(key, Change::Take).await
        {
            return verdict;
        }
        self.check_at(key, Instant::now())
    }

    /// Gives back the token an attempt took (the attempt turned out not to count, e.g. a
    /// correct password). Never beyond the burst.
    pub async fn refund(&self, key: &str) {
        if self.store.is_shared() && self.shared(key, Change::Refund).await.is_some() {
            return;
        }
        self.refund_local(key);
    }

    /// Runs the bucket in Redis; `None` when Redis did not answer.
    async fn shared(&self, key: &str, change: Change) -> Option<Result<(), Duration>> {
        let capacity = self.capacity;
        let per_ms = self.refill_per_sec / 1000.0;
        let (taken, wait_ms): (i64, i64) = self
            .store
            .run(
                &format!("rate:{}:{key}", self.name),
                |key, mut connection| async move {
                    TOKEN_BUCKET
                        .key(key)
                        .arg(capacity)
                        .arg(per_ms)
                        .arg(change as i8)
                        .invoke_async(&mut connection)
                        .await
                },
            )
            .await?;
        Some(if taken == 1 {
            Ok(())
        } else {
            Err(Duration::from_millis(
                u64::try_from(wait_ms).unwrap_or(0).max(1),
            ))
        })
    }

    fn refund_local(&self, key: &str) {
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

/// What a call does to a bucket (the script's third argument).
#[derive(Debug, Clone, Copy)]
enum Change {
    Take = 1,
    Refund = -1,
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

    use crate::cluster_store::testing;

    fn local(per_minute: u32, burst: u32) -> RateLimiter {
        RateLimiter::new("test", per_minute, burst, &ClusterStore::local())
    }

    #[test]
    fn bursts_then_refills_at_the_sustained_rate() {
        let limiter = local(60, 3); // one token per second
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

    /// Two tokens, refunds, the burst as a ceiling: the same story in process and in
    /// Redis (`check` is `a`'s bucket, `refund_on` another handle on the same buckets).
    async fn refunds_go_up_to_the_burst(a: &RateLimiter, b: &RateLimiter) {
        assert!(a.check("alice").await.is_ok());
        assert!(b.check("alice").await.is_ok());
        assert!(a.check("alice").await.is_err());
        b.refund("alice").await;
        assert!(a.check("alice").await.is_ok());
        b.refund("alice").await;
        b.refund("alice").await;
        b.refund("alice").await;
        assert!(a.check("alice").await.is_ok());
        assert!(b.check("alice").await.is_ok());
        assert!(a.check("alice").await.is_err(), "never beyond the burst");
        // A refund to a bucket nobody took from is a no-op (a missing bucket is full).
        b.refund("nobody").await;
        assert!(a.check("nobody").await.is_ok());
    }

    #[tokio::test]
    async fn refunds_give_back_one_token_up_to_the_burst() {
        let limiter = local(1, 2);
        refunds_go_up_to_the_burst(&limiter, &limiter).await;
    }

    #[tokio::test]
    async fn limiters_of_two_nodes_share_one_bucket_in_redis() {
        let Some([(a, a_fallbacks), (b, b_fallbacks)]) = testing::two_nodes().await else {
            return;
        };
        let on_a = RateLimiter::new("api", 1, 3, &a);
        let on_b = RateLimiter::new("api", 1, 3, &b);
        assert!(on_a.check("user:1").await.is_ok());
        assert!(on_b.check("user:1").await.is_ok());
        assert!(on_a.check("user:1").await.is_ok());
        let wait = on_b
            .check("user:1")
            .await
            .expect_err("burst spent across nodes");
        // One token a minute: most of a minute to wait, never more (as in process).
        assert!(
            wait > Duration::from_secs(50) && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        assert!(on_b.check("user:2").await.is_ok(), "per key");
        let other = RateLimiter::new("login", 1, 3, &b);
        assert!(other.check("user:1").await.is_ok(), "per limiter");

        refunds_go_up_to_the_burst(
            &RateLimiter::new("refunds", 1, 2, &a),
            &RateLimiter::new("refunds", 1, 2, &b),
        )
        .await;
        assert_eq!(
            (a_fallbacks.get(), b_fallbacks.get()),
            (0, 0),
            "all in Redis"
        );
    }

    #[tokio::test]
    async fn a_bucket_in_redis_refills_at_the_sustained_rate_and_expires_when_full() {
        let Some([(a, _), (b, _)]) = testing::two_nodes().await else {
            return;
        };
        // 120 a minute: one token every 500 ms, bursts of 2.
        let on_a = RateLimiter::new("fast", 120, 2, &a);
        let on_b = RateLimiter::new("fast", 120, 2, &b);
        assert!(on_a.check("k").await.is_ok());
        assert!(on_b.check("k").await.is_ok());
        let wait = on_a.check("k").await.expect_err("spent");
        assert!(wait <= Duration::from_millis(500), "{wait:?}");
        // Refilled after about the wait it named (polled: Redis' clock decides, not ours).
        let deadline = Instant::now() + Duration::from_secs(5);
        while on_b.check("k").await.is_err() {
            assert!(Instant::now() < deadline, "never refilled");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The bucket lives only until it would be full again: at most two tokens' time.
        let ttl: i64 = a
            .run("rate:fast:k", |key, mut connection| async move {
                redis::cmd("PTTL")
                    .arg(key)
                    .query_async(&mut connection)
                    .await
            })
            .await
            .expect("PTTL");
        assert!((1..=1000).contains(&ttl), "{ttl}");
    }

    #[tokio::test]
    async fn without_redis_checks_fall_back_at_once_and_still_limit() {
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("free port")
            .port();
        let (store, fallbacks) = testing::store(
            &format!("redis://127.0.0.1:{port}"),
            &testing::unique_prefix(),
        );
        let limiter = RateLimiter::new("api", 1, 2, &store);
        let started = Instant::now();
        assert!(limiter.check("alice").await.is_ok());
        assert!(limiter.check("alice").await.is_ok());
        assert!(
            limiter.check("alice").await.is_err(),
            "the local bucket limits"
        );
        limiter.refund("alice").await;
        assert!(limiter.check("alice").await.is_ok(), "and takes refunds");
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "no waiting for a Redis that is not there: {:?}",
            started.elapsed()
        );
        assert_eq!(fallbacks.get(), 5);
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
        let limiter = local(60, 1);
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
