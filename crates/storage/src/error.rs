//! The crate's one error type.
//!
//! Callers branch on it (the server maps it to HTTP statuses with one exhaustive `match`), so
//! each case a caller can act on has its own variant, and every variant that wraps a lower-level
//! failure keeps it as a typed `source` rather than a string.

use std::io;

/// A boxed error, used where the concrete type differs per call site (each S3 operation has its
/// own SDK error type) but must stay reachable through [`std::error::Error::source`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The key broke a rule of [`crate::ObjectKey`]. A client error: the caller built a bad key.
    #[error("invalid object key: {reason}")]
    InvalidKey {
        /// Which rule the key broke.
        reason: &'static str,
    },

    /// No object exists under this key.
    #[error("object {key:?} not found")]
    NotFound {
        /// The key that was looked up.
        key: String,
    },

    /// [`crate::ObjectStore::get_bytes`] refused an object larger than the caller's limit.
    #[error("object is larger than the {limit}-byte limit")]
    TooLarge {
        /// The limit the caller passed.
        limit: u64,
    },

    /// The upload body passed to [`crate::ObjectStore::put`] yielded this error (the caller's
    /// size limit, a client that disconnected, ...). It is returned unchanged so the caller can
    /// recognise its own error; nothing was stored.
    #[error("upload body failed")]
    Body(#[source] io::Error),

    /// The local filesystem failed (or reading a stored object's bytes failed).
    #[error("storage I/O failed")]
    Io(#[source] io::Error),

    /// An S3 request failed.
    #[error("S3 {operation} failed: {message}")]
    S3 {
        /// The S3 operation, e.g. `"PutObject"`.
        operation: &'static str,
        /// The service's error code and message when it sent one, so logs say more than the
        /// SDK's bare "service error".
        message: String,
        /// The SDK's error, typed (downcast to `SdkError<…>` to inspect it).
        #[source]
        source: BoxError,
    },

    /// The store's configuration is unusable; detected before any object is touched.
    #[error("invalid storage configuration: {0}")]
    Config(String),
}
