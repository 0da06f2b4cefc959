//! What keeps AI affordable: a per-classroom daily token budget and a cache of answers.
//!
//! Both are in process, per node (like the REST rate limits): behind a load balancer each
//! node enforces its own budget. A std `Mutex` guards each: the critical sections are map
//! operations, never held across an `.await`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::AiError;
use crate::auth::now_secs;

/// Answers kept in the cache.
pub const CACHE_ENTRIES: usize = 256;

const SECONDS_PER_DAY: u64 = 24 * 3600;

/// Tokens spent per classroom per UTC day.
#[derive(Debug)]
pub struct DailyBudget {
    /// Tokens per classroom per day; 0: unlimited.
    limit: u64,
    /// Classroom → (UTC day number, tokens spent that day).
    spent: Mutex<HashMap<String, (u64, u64)>>,
}

impl DailyBudget {
    /// A budget of `limit` tokens per classroom per UTC day (0: unlimited).
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            spent: Mutex::new(HashMap::new()),
        }
    }

    /// Refuses when `classroom_id` has spent its budget today. A job that starts under the
    /// budget may end over it by at most its own size: jobs are not cut off mid-answer.
    pub fn check(&self, classroom_id: &str) -> Result<(), AiError> {
        self.check_at(classroom_id, now_secs())
    }

    fn check_at(&self, classroom_id: &str, now: u64) -> Result<(), AiError> {
        if self.limit == 0 {
            return Ok(());
        }
        let today = now / SECONDS_PER_DAY;
        let spent = self.spent.lock().unwrap_or_else(PoisonError::into_inner);
        match spent.get(classroom_id) {
            Some((day, tokens)) if *day == today && *tokens >= self.limit => {
                Err(AiError::BudgetExhausted {
                    limit: self.limit,
                    retry_after: Duration::from_secs((today + 1) * SECONDS_PER_DAY - now),
                })
            }
            _ => Ok(()),
        }
    }

    /// Adds `tokens` to what `classroom_id` spent today.
    pub fn charge(&self, classroom_id: &str, tokens: u64) {
        self.charge_at(classroom_id, tokens, now_secs());
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

/// The answers, and their keys oldest first.
type Entries = (HashMap<CacheKey, Arc<str>>, VecDeque<CacheKey>);

/// A bounded cache of complete answers, oldest evicted first.
#[derive(Debug)]
pub struct AnswerCache {
    capacity: usize,
    entries: Mutex<Entries>,
}

impl AnswerCache {
    /// A cache of at most `capacity` answers.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    /// The answer stored under `key`.
    pub fn get(&self, key: &CacheKey) -> Option<Arc<str>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.0.get(key).cloned()
    }

    /// Stores a complete answer.
    pub fn put(&self, key: CacheKey, answer: Arc<str>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refuses_once_spent_and_resets_at_midnight_utc() {
        let budget = DailyBudget::new(100);
        let noon = 20_000 * SECONDS_PER_DAY + 12 * 3600;
        assert!(budget.check_at("c", noon).is_ok());
        budget.charge_at("c", 60, noon);
        assert!(budget.check_at("c", noon).is_ok());
        budget.charge_at("c", 60, noon);
        match budget.check_at("c", noon) {
            Err(AiError::BudgetExhausted { retry_after, .. }) => {
                assert_eq!(retry_after, Duration::from_secs(12 * 3600));
            }
            other => panic!("expected exhaustion, got {other:?}"),
        }
        assert!(budget.check_at("other", noon).is_ok(), "per classroom");
        assert!(budget.check_at("c", noon + 12 * 3600).is_ok(), "a new day");
        assert!(
            DailyBudget::new(0).check_at("c", noon).is_ok(),
            "0 is unlimited"
        );
    }

    #[test]
    fn the_cache_evicts_the_oldest_answer() {
        let cache = AnswerCache::new(2);
        let key = |text: &str| CacheKeyBuilder::default().part(text).finish();
        cache.put(key("a"), "A".into());
        cache.put(key("b"), "B".into());
        cache.put(key("c"), "C".into());
        assert!(cache.get(&key("a")).is_none());
        assert_eq!(cache.get(&key("c")).as_deref(), Some("C"));
    }

    #[test]
    fn key_parts_do_not_run_into_each_other() {
        let one = CacheKeyBuilder::default().part("ab").part("c").finish();
        let two = CacheKeyBuilder::default().part("a").part("bc").finish();
        assert_ne!(one, two);
    }
}
