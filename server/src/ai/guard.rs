//! What keeps AI affordable: a per-classroom daily token budget and a cache of answers.
//!
//! In a cluster both live in Redis (see `cluster_store.rs`), so every node spends from
//! the same budget and finds the answers any node cached:
//! - the budget is a counter per classroom and UTC day, `{prefix}:budget:{classroom}:
//!   {yyyy-mm-dd}`, raised with `INCRBY` (atomic, whichever node charges) and expiring
//!   after two days;
//! - an answer is a string under `{prefix}:ai-answer:{key in hex}`, set with a TTL of
//!   [`SHARED_ANSWER_TTL`]; answers over [`MAX_CACHED_ANSWER_BYTES`] are not cached at
//!   all. Redis should run with a `maxmemory` and the `volatile-lru` policy so that the
//!   cache, not Redis, gives way when memory runs short (deploy/README.md).
//!
//! Each node also keeps its own state, always: it is all there is on a node on its own,
//! what decides while Redis does not answer, and, for answers, a first level in front of
//! Redis. The budget check takes the larger of the shared and the node's own count, so a
//! node never forgets what it spent while Redis was out. A std `Mutex` guards each: the
//! critical sections are map operations, never held across an `.await`.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::AiError;
use crate::auth::now_secs;
use crate::cluster_store::ClusterStore;

/// Answers kept in each node's own cache.
pub const CACHE_ENTRIES: usize = 256;

/// Larger answers are not cached (neither in Redis nor in process): the cache is for
/// the short answers a class asks for again and again, and Redis memory is shared.
pub const MAX_CACHED_ANSWER_BYTES: usize = 64 * 1024;

/// How long Redis keeps a cached answer.
pub const SHARED_ANSWER_TTL: Duration = Duration::from_secs(3600);

const SECONDS_PER_DAY: u64 = 24 * 3600;

/// How long Redis keeps a day's budget counter after its last charge: longer than the day
/// itself, with a margin for nodes whose clocks disagree about when the day ends; nothing
/// reads it afterwards.
const BUDGET_TTL_SECS: u64 = 2 * SECONDS_PER_DAY;

/// Tokens spent per classroom per UTC day.
#[derive(Debug)]
pub struct DailyBudget {
    /// Tokens per classroom per day; 0: unlimited.
    limit: u64,
    /// Classroom → (UTC day number, tokens this node spent that day).
    spent: Mutex<HashMap<String, (u64, u64)>>,
    /// Where the cluster's counts are.
    store: ClusterStore,
}

impl DailyBudget {
    /// A budget of `limit` tokens per classroom per UTC day (0: unlimited), shared
    /// through `store` in a cluster.
    pub(crate) fn new(limit: u64, store: &ClusterStore) -> Self {
        Self {
            limit,
            spent: Mutex::new(HashMap::new()),
            store: store.clone(),
        }
    }

    /// Refuses when `classroom_id` has spent its budget today. A job that starts under the
    /// budget may end over it by at most its own size: jobs are not cut off mid-answer.
    pub async fn check(&self, classroom_id: &str) -> Result<(), AiError> {
        if self.limit == 0 {
            return Ok(());
        }
        let now = now_secs();
        let shared = if self.store.is_shared() {
            self.store
                .run(
                    &budget_key(classroom_id, now),
                    |key, mut connection| async move {
                        redis::cmd("GET")
                            .arg(key)
                            .query_async::<Option<u64>>(&mut connection)
                            .await
                    },
                )
                .await
                .flatten()
        } else {
            None
        };
        self.check_at(classroom_id, now, shared.unwrap_or(0))
    }

    /// The check at `now`, given what the cluster spent today (0 when unknown).
    fn check_at(&self, classroom_id: &str, now: u64, shared: u64) -> Result<(), AiError> {
        if self.limit == 0 {
            return Ok(());
        }
        let today = now / SECONDS_PER_DAY;
        let own = {
            let spent = self.spent.lock().unwrap_or_else(PoisonError::into_inner);
            match spent.get(classroom_id) {
                Some((day, tokens)) if *day == today => *tokens,
                _ => 0,
            }
        };
        if own.max(shared) >= self.limit {
            return Err(AiError::BudgetExhausted {
                limit: self.limit,
                retry_after: Duration::from_secs((today + 1) * SECONDS_PER_DAY - now),
            });
        }
        Ok(())
    }

    /// Adds `tokens` to what `classroom_id` spent today.
    pub async fn charge(&self, classroom_id: &str, tokens: u64) {
        let now = now_secs();
        self.charge_at(classroom_id, tokens, now);
        // Unlimited: nobody reads the count.
        if self.limit == 0 || !self.store.is_shared() {
            return;
        }
        // INCRBY and EXPIRE together, so no counter is ever left without its expiry.
        let _: Option<()> = self
            .store
            .run(
                &budget_key(classroom_id, now),
                |key, mut connection| async move {
                    redis::pipe()
                        .atomic()
                        .cmd("INCRBY")
                        .arg(&key)
                        .arg(tokens)
                        .ignore()
                        .cmd("EXPIRE")
                        .arg(&key)
                        .arg(BUDGET_TTL_SECS)
                        .ignore()
                        .query_async(&mut connection)
                        .await
                },
            )
            .await;
    }

    fn charge_at(&self, classroom_id: &str, tokens: u64, now: u64) {
        let today = now / SECONDS_PER_DAY;
        let mut spent = self.spent.lock().unwrap_or_else(PoisonError::into_inner);
        // Yesterday's counts are worthless; dropping them keeps the map to active classes.
        spent.retain(|_, (day, _)| *day == today);
        let entry = spent.entry(classroom_id.to_owned()).or_insert((today, 0));
        entry.1 = entry.1.saturating_add(tokens);
    }
}

/// What identifies an answer: the kind, the model, the exact prompt sent (which embeds the
/// question and the text of every source passage) and the identities of the sources.
pub type CacheKey = [u8; 32];

/// Builds a [`CacheKey`] from its parts, each length-prefixed so no two part lists collide.
#[derive(Debug, Default)]
pub struct CacheKeyBuilder(Sha256);

impl CacheKeyBuilder {
    /// Adds one part.
    pub fn part(mut self, part: &str) -> Self {
        self.0.update((part.len() as u64).to_le_bytes());
        self.0.update(part.as_bytes());
        self
    }

    /// The key.
    pub fn finish(self) -> CacheKey {
        self.0.finalize().into()
    }
}

/// The Redis key name of `classroom_id`'s budget on the UTC day of `now`.
fn budget_key(classroom_id: &str, now: u64) -> String {
    format!("budget:{classroom_id}:{}", utc_date(now / SECONDS_PER_DAY))
}

/// `yyyy-mm-dd` of a day counted from 1970-01-01 (the proleptic Gregorian calendar;
/// Howard Hinnant's `civil_from_days`).
fn utc_date(day: u64) -> String {
    let z = day + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day_of_month = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day_of_month:02}")
}

/// The answers, and their keys oldest first.
type Entries = (HashMap<CacheKey, Arc<str>>, VecDeque<CacheKey>);

/// A bounded cache of complete answers: in Redis for a cluster (with a TTL), in front of
/// it the node's own, oldest evicted first.
#[derive(Debug)]
pub struct AnswerCache {
    capacity: usize,
    entries: Mutex<Entries>,
    /// Where the cluster's answers are.
    store: ClusterStore,
}

impl AnswerCache {
    /// A cache of at most `capacity` answers on this node, shared through `store` in a
    /// cluster.
    pub(crate) fn new(capacity: usize, store: &ClusterStore) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: Mutex::new((HashMap::new(), VecDeque::new())),
            store: store.clone(),
        }
    }

    /// The answer stored under `key`: this node's, else the cluster's (then kept here).
    pub async fn get(&self, key: &CacheKey) -> Option<Arc<str>> {
        if let Some(answer) = self.get_local(key) {
            return Some(answer);
        }
        if !self.store.is_shared() {
            return None;
        }
        let bytes = self
            .store
            .run(&answer_key(key), |key, mut connection| async move {
                redis::cmd("GET")
                    .arg(key)
                    .query_async::<Option<Vec<u8>>>(&mut connection)
                    .await
            })
            .await
            .flatten()?;
        // Only this code writes these keys; anything else is not an answer of ours.
        let answer: Arc<str> = String::from_utf8(bytes).ok()?.into();
        self.put_local(*key, answer.clone());
        Some(answer)
    }

    /// Stores a complete answer (unless it is over [`MAX_CACHED_ANSWER_BYTES`]).
    pub async fn put(&self, key: CacheKey, answer: Arc<str>) {
        if answer.len() > MAX_CACHED_ANSWER_BYTES {
            return;
        }
        self.put_local(key, answer.clone());
        if !self.store.is_shared() {
            return;
        }
        let ttl_ms = u64::try_from(SHARED_ANSWER_TTL.as_millis()).unwrap_or(u64::MAX);
        let _: Option<()> = self
            .store
            .run(&answer_key(&key), |key, mut connection| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(answer.as_bytes())
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async(&mut connection)
                    .await
            })
            .await;
    }

    fn get_local(&self, key: &CacheKey) -> Option<Arc<str>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.0.get(key).cloned()
    }

    fn put_local(&self, key: CacheKey, answer: Arc<str>) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let (map, order) = &mut *entries;
        if map.insert(key, answer).is_none() {
            order.push_back(key);
        }
        while map.len() > self.capacity {
            let Some(oldest) = order.pop_front() else {
                break;
            };
            map.remove(&oldest);
        }
    }
}

/// The Redis key name of an answer.
fn answer_key(key: &CacheKey) -> String {
    let mut name = String::with_capacity("ai-answer:".len() + 2 * key.len());
    name.push_str("ai-answer:");
    for byte in key {
        let _ = write!(name, "{byte:02x}");
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster_store::testing;

    const NOON: u64 = 20_000 * SECONDS_PER_DAY + 12 * 3600;

    #[test]
    fn the_budget_refuses_once_spent_and_resets_at_midnight_utc() {
        let budget = DailyBudget::new(100, &ClusterStore::local());
        assert!(budget.check_at("c", NOON, 0).is_ok());
        budget.charge_at("c", 60, NOON);
        assert!(budget.check_at("c", NOON, 0).is_ok());
        budget.charge_at("c", 60, NOON);
        match budget.check_at("c", NOON, 0) {
            Err(AiError::BudgetExhausted { retry_after, .. }) => {
                assert_eq!(retry_after, Duration::from_secs(12 * 3600));
            }
            other => panic!("expected exhaustion, got {other:?}"),
        }
        assert!(budget.check_at("other", NOON, 0).is_ok(), "per classroom");
        assert!(
            budget.check_at("c", NOON + 12 * 3600, 0).is_ok(),
            "a new day"
        );
        assert!(
            DailyBudget::new(0, &ClusterStore::local())
                .check_at("c", NOON, 1_000)
                .is_ok(),
            "0 is unlimited"
        );
    }

    #[test]
    fn the_larger_of_the_shared_and_the_own_count_decides() {
        let budget = DailyBudget::new(100, &ClusterStore::local());
        assert!(budget.check_at("c", NOON, 100).is_err(), "spent elsewhere");
        budget.charge_at("c", 100, NOON);
        assert!(
            budget.check_at("c", NOON, 0).is_err(),
            "spent here while Redis was out"
        );
    }

    #[test]
    fn budget_keys_name_the_utc_day() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(19_723), "2024-01-01");
        assert_eq!(utc_date(19_782), "2024-02-29");
        assert_eq!(utc_date(11_016), "2000-02-29");
        assert_eq!(utc_date(20_818), "2026-12-31");
        assert_eq!(utc_date(20_819), "2027-01-01");
        assert_eq!(
            budget_key("c1", 19_723 * SECONDS_PER_DAY + SECONDS_PER_DAY - 1),
            "budget:c1:2024-01-01"
        );
    }

    #[tokio::test]
    async fn a_budget_spent_through_one_node_is_spent_for_the_other() {
        let Some([(a, a_fallbacks), (b, b_fallbacks)]) = testing::two_nodes().await else {
            return;
        };
        let on_a = DailyBudget::new(100, &a);
        let on_b = DailyBudget::new(100, &b);
        on_a.charge("c", 60).await;
        assert!(on_b.check("c").await.is_ok());
        on_b.charge("c", 60).await;
        assert!(
            matches!(
                on_a.check("c").await,
                Err(AiError::BudgetExhausted { limit: 100, .. })
            ),
            "A sees what B spent"
        );
        assert!(on_b.check("c").await.is_err());
        assert!(on_a.check("other").await.is_ok(), "per classroom");
        let ttl: i64 = a
            .run(
                &budget_key("c", now_secs()),
                |key, mut connection| async move {
                    redis::cmd("TTL")
                        .arg(key)
                        .query_async(&mut connection)
                        .await
                },
            )
            .await
            .expect("TTL");
        let ttl = u64::try_from(ttl).expect("an expiry");
        assert!(
            ttl > BUDGET_TTL_SECS - 60 && ttl <= BUDGET_TTL_SECS,
            "{ttl}"
        );
        assert_eq!(
            (a_fallbacks.get(), b_fallbacks.get()),
            (0, 0),
            "all in Redis"
        );
    }

    fn key(text: &str) -> CacheKey {
        CacheKeyBuilder::default().part(text).finish()
    }

    #[tokio::test]
    async fn the_cache_evicts_the_oldest_answer() {
        let cache = AnswerCache::new(2, &ClusterStore::local());
        cache.put(key("a"), "A".into()).await;
        cache.put(key("b"), "B".into()).await;
        cache.put(key("c"), "C".into()).await;
        assert!(cache.get(&key("a")).await.is_none());
        assert_eq!(cache.get(&key("c")).await.as_deref(), Some("C"));
    }

    #[tokio::test]
    async fn answers_over_the_size_cap_are_not_cached() {
        let cache = AnswerCache::new(2, &ClusterStore::local());
        let huge: Arc<str> = "x".repeat(MAX_CACHED_ANSWER_BYTES + 1).into();
        cache.put(key("huge"), huge).await;
        assert!(cache.get(&key("huge")).await.is_none());
    }

    #[tokio::test]
    async fn an_answer_cached_by_one_node_is_found_by_the_other() {
        let Some([(a, _), (b, b_fallbacks)]) = testing::two_nodes().await else {
            return;
        };
        let on_a = AnswerCache::new(2, &a);
        let on_b = AnswerCache::new(2, &b);
        assert!(on_b.get(&key("question")).await.is_none());
        on_a.put(key("question"), "the answer".into()).await;
        assert_eq!(
            on_b.get(&key("question")).await.as_deref(),
            Some("the answer")
        );
        // Kept on B too now: found there without Redis.
        assert_eq!(
            on_b.get_local(&key("question")).as_deref(),
            Some("the answer")
        );
        // Too large for anyone.
        let huge: Arc<str> = "x".repeat(MAX_CACHED_ANSWER_BYTES + 1).into();
        on_a.put(key("huge"), huge).await;
        assert!(on_b.get(&key("huge")).await.is_none());
        let ttl: i64 = a
            .run(
                &answer_key(&key("question")),
                |key, mut connection| async move {
                    redis::cmd("PTTL")
                        .arg(key)
                        .query_async(&mut connection)
                        .await
                },
            )
            .await
            .expect("PTTL");
        let limit = i64::try_from(SHARED_ANSWER_TTL.as_millis()).expect("ms");
        assert!(ttl > limit - 60_000 && ttl <= limit, "{ttl}");
        assert_eq!(b_fallbacks.get(), 0);
    }

    #[test]
    fn key_parts_do_not_run_into_each_other() {
        let one = CacheKeyBuilder::default().part("ab").part("c").finish();
        let two = CacheKeyBuilder::default().part("a").part("bc").finish();
        assert_ne!(one, two);
    }
}
