//! Refresh tokens: 32 random bytes, base64url for the client, SHA-256 for storage.
//!
//! A plain hash (no salt, no argon2) is enough because the token is random with 256 bits
//! of entropy: there is nothing to guess, and the lookup must be by hash.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// A new refresh token: what the client gets and what the server stores.
#[derive(Debug)]
pub struct RefreshToken {
    /// Sent to the client once; never stored.
    pub token: String,
    /// Stored; the lookup key.
    pub hash: Vec<u8>,
}

impl RefreshToken {
    /// A fresh random token.
    pub fn generate() -> Self {
        let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let hash = hash(&token);
        Self { token, hash }
    }
}

/// The stored form of a token a client presents.
pub fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hash_consistently() {
        let first = RefreshToken::generate();
        let second = RefreshToken::generate();
        assert_ne!(first.token, second.token);
        assert_eq!(first.token.len(), 43, "32 bytes in unpadded base64url");
        assert_eq!(hash(&first.token), first.hash);
        assert_eq!(first.hash.len(), 32);
    }
}
