//! Password hashing with argon2id (the `argon2` crate's defaults: 19 MiB, 2 passes, one
//! lane, the OWASP baseline). Hashing is deliberately slow, so it runs on blocking threads
//! and never stalls the reactor that serves sockets.
//!
//! Each hash holds 19 MiB and a core for its whole run, so [`Passwords`] admits only as
//! many at once as there are cores, lets a short queue wait behind them, and refuses the
//! rest at once ([`PasswordError::Busy`], answered 503 with `Retry-After`). Unbounded, 150
//! concurrent logins took 3.3 GiB and starved every other request of CPU.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use tokio::sync::Semaphore;

/// What a caller refused for load is told to wait: about one hash's time, rounded up.
const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Why hashing or checking a password failed (never "wrong password": that is `Ok(false)`).
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Every hashing slot is busy and the queue behind them is full; try again later.
    #[error("too many password checks in progress")]
    Busy {
        /// When to try again.
        retry_after: Duration,
    },
    /// The hasher failed, or a stored hash is not a valid PHC string.
    #[error("password hashing failed")]
    Hash(#[source] argon2::password_hash::Error),
    /// The blocking task panicked or was cancelled.
    #[error("password hashing task failed")]
    Task(#[from] tokio::task::JoinError),
}

/// The bounded pool that hashes and verifies passwords. Cheap to clone (shared counters).
#[derive(Debug, Clone)]
pub struct Passwords {
    /// One permit per hash allowed to run at once.
    running: Arc<Semaphore>,
    /// Hashes running or waiting for a permit.
    admitted: Arc<AtomicUsize>,
    /// Most hashes running or waiting; beyond it callers are refused at once.
    max_admitted: usize,
}

/// A place among the admitted hashes; gives it back when dropped (finished or abandoned).
#[derive(Debug)]
struct Admission {
    /// The shared count this place is part of.
    admitted: Arc<AtomicUsize>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Passwords {
    /// At most `concurrency` hashes at once (at least one), and at most `queue` more
    /// waiting for a turn.
    pub fn new(concurrency: usize, queue: usize) -> Self {
        let concurrency = concurrency.max(1);
        Self {
            running: Arc::new(Semaphore::new(concurrency)),
            admitted: Arc::new(AtomicUsize::new(0)),
            max_admitted: concurrency.saturating_add(queue),
        }
    }

    /// Hashes `password` into a PHC string with a fresh random salt.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        self.run(move || hash_blocking(&password)).await
    }

    /// Whether `password` matches the PHC string `stored`. With `stored = None` (no such
    /// account) it still spends one hash, so response times do not reveal which emails
    /// exist.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, PasswordError> {
        self.run(move || match stored {
            Some(stored) => verify_blocking(&password, &stored),
            None => {
                let _ = verify_blocking(&password, dummy_hash()?);
                Ok(false)
            }
        })
        .await
    }

    /// Runs `work` on a blocking thread once a slot is free, or refuses at once when the
    /// queue is full.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, PasswordError> + Send + 'static,
    ) -> Result<T, PasswordError> {
        let admission = self.admit()?;
        // The semaphore is never closed, so acquiring only fails if it were.
        let permit = Arc::clone(&self.running)
            .acquire_owned()
            .await
            .map_err(|_| PasswordError::Busy {
                retry_after: BUSY_RETRY_AFTER,
            })?;
        // The permit and the admission move into the thread: a client that hangs up does
        // not free the slot before its hash has actually finished.
        tokio::task::spawn_blocking(move || {
            let result = work();
            drop((permit, admission));
            result
        })
        .await?
    }

    fn admit(&self) -> Result<Admission, PasswordError> {
        let admitted = self
            .admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| {
                (count < self.max_admitted).then_some(count + 1)
            });
        match admitted {
            Ok(_) => Ok(Admission {
                admitted: Arc::clone(&self.admitted),
            }),
            Err(_) => Err(PasswordError::Busy {
                retry_after: BUSY_RETRY_AFTER,
            }),
        }
    }
}

/// Hashes `password` on the calling thread (for `lectern create-user`, which has no server
/// to protect).
pub fn hash_blocking(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(PasswordError::Hash)
}

fn verify_blocking(password: &str, stored: &str) -> Result<bool, PasswordError> {
    let parsed = PasswordHash::new(stored).map_err(PasswordError::Hash)?;
    match Argon2::default().verify_password(password.as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(error) => Err(PasswordError::Hash(error)),
    }
}

/// A hash of a random password, made once, to verify against for unknown accounts.
fn dummy_hash() -> Result<&'static str, PasswordError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(hash) = DUMMY.get() {
        return Ok(hash);
    }
    let made = hash_blocking(&format!("{:x}", rand::random::<u128>()))?;
    Ok(DUMMY.get_or_init(|| made))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_only_the_right_password() {
        let passwords = Passwords::new(2, 4);
        let stored = passwords.hash("correct horse".into()).await.expect("hash");
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(
            passwords
                .verify("correct horse".into(), Some(stored.clone()))
                .await
                .expect("verify")
        );
        assert!(
            !passwords
                .verify("wrong horse".into(), Some(stored))
                .await
                .expect("verify")
        );
        assert!(
            !passwords
                .verify("anything".into(), None)
                .await
                .expect("no account")
        );
    }

    #[tokio::test]
    async fn beyond_the_slots_and_the_queue_callers_are_refused_at_once() {
        let passwords = Passwords::new(1, 1);
        // Hold the only slot from outside, so admitted callers wait for it: two are
        // admitted (one slot plus a queue of one) and the third is refused.
        let slot = Arc::clone(&passwords.running)
            .acquire_owned()
            .await
            .expect("slot");
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let passwords = passwords.clone();
                tokio::spawn(async move { passwords.hash("waiting password".into()).await })
            })
            .collect();
        // Wait (without sleeping) until both have been admitted.
        while passwords.admitted.load(Ordering::Acquire) < 2 {
            tokio::task::yield_now().await;
        }
        let refused = passwords.hash("one too many".into()).await;
        assert!(
            matches!(refused, Err(PasswordError::Busy { .. })),
            "{refused:?}"
        );
        drop(slot);
        for task in waiting {
            task.await.expect("task").expect("an admitted hash runs");
        }
        assert_eq!(
            passwords.admitted.load(Ordering::Acquire),
            0,
            "all given back"
        );
        passwords
            .hash("room again".into())
            .await
            .expect("admitted again");
    }
}
