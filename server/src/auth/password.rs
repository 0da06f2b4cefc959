//! Password hashing with argon2id (the `argon2` crate's defaults: 19 MiB, 2 passes, one
//! lane, the OWASP baseline). Hashing is deliberately slow, so it runs on blocking threads
//! and never stalls the reactor that serves sockets.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// Why hashing or checking a password failed (never "wrong password": that is `Ok(false)`).
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The hasher failed, or a stored hash is not a valid PHC string.
    #[error("password hashing failed")]
    Hash(#[source] argon2::password_hash::Error),
    /// The blocking task panicked or was cancelled.
    #[error("password hashing task failed")]
    Task(#[from] tokio::task::JoinError),
}

/// Hashes `password` into a PHC string with a fresh random salt.
pub async fn hash(password: String) -> Result<String, PasswordError> {
    tokio::task::spawn_blocking(move || hash_blocking(&password)).await?
}

/// Whether `password` matches the PHC string `stored`. With `stored = None` (no such
/// account) it still spends one hash, so response times do not reveal which emails exist.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool, PasswordError> {
    tokio::task::spawn_blocking(move || match stored {
        Some(stored) => verify_blocking(&password, &stored),
        None => {
            let _ = verify_blocking(&password, dummy_hash()?);
            Ok(false)
        }
    })
    .await?
}

fn hash_blocking(password: &str) -> Result<String, PasswordError> {
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
        let stored = hash("correct horse".into()).await.expect("hash");
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(
            verify("correct horse".into(), Some(stored.clone()))
                .await
                .expect("verify")
        );
        assert!(
            !verify("wrong horse".into(), Some(stored))
                .await
                .expect("verify")
        );
        assert!(!verify("anything".into(), None).await.expect("no account"));
    }
}
