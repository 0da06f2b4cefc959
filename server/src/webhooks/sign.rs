//! Delivery signatures: `X-Lectern-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
//!
//! The timestamp is signed with the body so a receiver can refuse old deliveries (a
//! replayed request carries its old timestamp, and changing it breaks the signature); the
//! delivery id in the body lets it refuse one it has already processed. `docs/api.md`
//! ("Webhooks") shows a receiver's check.
//!
//! HMAC (RFC 2104) is written out over `sha2` here: it is a dozen lines, and the `hmac`
//! crate in the lock file is built for a newer `digest` than our `sha2`. The RFC 4231 test
//! vectors below pin it.

use rand::Rng as _;
use sha2::{Digest as _, Sha256};

/// SHA-256's block size in bytes.
const BLOCK: usize = 64;

/// The scheme prefix of the signature header; a new scheme would be `v2=`.
const SCHEME: &str = "v1=";

/// HMAC-SHA256 of `message` under `key`.
fn hmac_sha256(key: &[u8], message: &[&[u8]]) -> [u8; 32] {
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|byte| byte ^ 0x36));
    for part in message {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(block.map(|byte| byte ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut text, byte| {
            let _ = write!(text, "{byte:02x}");
            text
        })
}

/// The `X-Lectern-Signature` value for `body` sent at `timestamp` (Unix seconds).
pub(crate) fn signature(secret: &str, timestamp: u64, body: &str) -> String {
    let timestamp = timestamp.to_string();
    let mac = hmac_sha256(
        secret.as_bytes(),
        &[timestamp.as_bytes(), b".", body.as_bytes()],
    );
    format!("{SCHEME}{}", hex(&mac))
}

/// A new signing secret: 32 random bytes, hex, with a prefix that tells what it is (and
/// lets secret scanners find a leaked one).
pub(crate) fn new_secret() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    format!("whsec_{}", hex(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&text[at..at + 2], 16).expect("hex"))
            .collect()
    }

    /// RFC 4231 test cases 1, 2, 4, 6 (6: a key longer than a block).
    #[test]
    fn hmac_matches_rfc_4231() {
        let cases: [(Vec<u8>, Vec<u8>, &str); 4] = [
            (
                vec![0x0b; 20],
                b"Hi There".to_vec(),
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe".to_vec(),
                b"what do ya want for nothing?".to_vec(),
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                unhex("0102030405060708090a0b0c0d0e0f10111213141516171819"),
                vec![0xcd; 50],
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
            ),
            (
                vec![0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
        ];
        for (key, message, expected) in cases {
            assert_eq!(hex(&hmac_sha256(&key, &[&message])), expected);
        }
    }

    #[test]
    fn the_signature_covers_timestamp_and_body() {
        let signed = signature("whsec_k", 1_700_000_000, r#"{"a":1}"#);
        assert!(signed.starts_with("v1="));
        assert_eq!(signed.len(), 3 + 64);
        // The same as signing the joined string in one piece.
        let joined = hex(&hmac_sha256(b"whsec_k", &[b"1700000000.{\"a\":1}"]));
        assert_eq!(signed, format!("v1={joined}"));
        assert_ne!(signed, signature("whsec_k", 1_700_000_001, r#"{"a":1}"#));
        assert_ne!(signed, signature("whsec_k", 1_700_000_000, r#"{"a":2}"#));
        assert_ne!(signed, signature("whsec_j", 1_700_000_000, r#"{"a":1}"#));
    }

    #[test]
    fn secrets_are_random_and_recognisable() {
        let one = new_secret();
        assert!(one.starts_with("whsec_") && one.len() == 6 + 64, "{one}");
        assert_ne!(one, new_secret());
    }
}
