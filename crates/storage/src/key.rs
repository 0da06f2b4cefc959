//! Object keys.
//!
//! Keys are validated once, at the edge, so that both backends can trust them: the local store
//! joins a key onto its root directory, and a key that could climb out of it (`..`), name the
//! root itself (empty, `.`) or collide with the store's own scratch files must never get that
//! far. The alphabet is deliberately narrow (no spaces, no `%`, no `~`): keys are made by the
//! server from ids, never taken verbatim from a user's file name, and a narrow alphabet means the
//! same key is valid, and means the same object, on a filesystem and on S3.

use std::fmt;

use crate::StorageError;

/// The longest key accepted, in bytes. S3 allows 1024; half of that leaves room for a bucket
/// prefix and keeps local paths well under `PATH_MAX`.
pub const MAX_KEY_LEN: usize = 512;

/// A validated object key: `[A-Za-z0-9/_.-]`, `/`-separated segments that are neither empty
/// nor `.` nor `..`, at most [`MAX_KEY_LEN`] bytes.
///
/// Built only through [`ObjectKey::new`], so holding one proves it is valid.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Validates `key`. Fails with [`StorageError::InvalidKey`] naming the rule it broke.
    pub fn new(key: &str) -> Result<Self, StorageError> {
        let invalid = |reason| Err(StorageError::InvalidKey { reason });
        if key.is_empty() {
            return invalid("key is empty");
        }
        if key.len() > MAX_KEY_LEN {
            return invalid("key is longer than 512 bytes");
        }
        if !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'.' | b'-'))
        {
            return invalid("key has a character outside [A-Za-z0-9/_.-]");
        }
        for segment in key.split('/') {
            match segment {
                "" => return invalid("key has an empty segment (leading, trailing or double '/')"),
                "." | ".." => return invalid("key has a '.' or '..' segment"),
                _ => {}
            }
        }
        Ok(Self(key.to_owned()))
    }

    /// The key as a string, e.g. to log it or to name the S3 object.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ObjectKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for ObjectKey {
    type Err = StorageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(key: &str) -> &'static str {
        match ObjectKey::new(key) {
            Err(StorageError::InvalidKey { reason }) => reason,
            other => panic!("{key:?} should be refused as InvalidKey, got {other:?}"),
        }
    }

    #[test]
    fn accepts_ordinary_keys() {
        for key in [
            "a",
            "courses/42/materials/0b9f-11.pdf",
            "A_b-c.d/e",
            ".hidden/x",
            "a..b",
            "...",
        ] {
            let parsed = ObjectKey::new(key).expect("key should be valid");
            assert_eq!(parsed.as_str(), key);
        }
        let longest = "k".repeat(MAX_KEY_LEN);
        ObjectKey::new(&longest).expect("a key of exactly the maximum length is valid");
    }

    #[test]
    fn refuses_bad_keys() {
        assert_eq!(reason(""), "key is empty");
        for key in ["/a", "a/", "a//b", "/"] {
            assert!(reason(key).contains("empty segment"), "{key:?}");
        }
        for key in [".", "..", "../x", "a/../b", "a/./b", "a/.."] {
            assert!(reason(key).contains("'..'"), "{key:?}");
        }
        for key in ["a b", "a\\b", "a~", "é", "a%2F", "a\0b", "a:b"] {
            assert!(reason(key).contains("character"), "{key:?}");
        }
        assert!(reason(&"k".repeat(MAX_KEY_LEN + 1)).contains("longer"));
    }
}
