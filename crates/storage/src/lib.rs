//! Object storage for uploaded course material: local directory or S3.
//!
//! # Layout
//!
//! - [`ObjectStore`] (this file): the trait the server holds as `Arc<dyn ObjectStore>`. Bodies
//!   go in and come out as [`ByteStream`]s so an upload is never held in memory whole.
//! - `key`: [`ObjectKey`], the validated key both backends trust.
//! - `error`: [`StorageError`], the one error type, with typed sources.
//! - `local`: [`LocalStore`], a directory on disk; the embedded default.
//! - `s3`: [`S3Store`] and [`S3Config`], any S3-compatible service through `aws-sdk-s3`.
//! - `testing` (feature `testing`): [`testing::S3TestServer`], a real S3-protocol server
//!   in-process, for this crate's contract tests and the server's integration tests.
//!
//! # Contract
//!
//! Both backends pass the same suite (`tests/storage.rs`). The properties that matter to a
//! caller: a `put` either stores the whole body or leaves nothing new under the key (a failed
//! or cancelled upload never exposes a partial object, and never leaks a temp file or an open
//! S3 multipart upload); a body error comes back as [`StorageError::Body`], distinct from store
//! failures; reads of absent keys are [`StorageError::NotFound`]; deletes are idempotent.

use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};

mod error;
mod key;
mod local;
mod s3;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::{BoxError, StorageError};
pub use key::{MAX_KEY_LEN, ObjectKey};
pub use local::LocalStore;
pub use s3::{DEFAULT_PART_SIZE, MIN_PART_SIZE, S3Config, S3Store};

/// A stream of object bytes, in or out. Errors are `io::Error` so that HTTP body types
/// (axum/hyper) convert into and out of it without an adapter of our own.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// A place to keep uploaded files. See the crate docs for the guarantees every backend gives.
#[async_trait::async_trait]
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// Streams `body` to `key`, replacing any object there. Returns the bytes written.
    ///
    /// If `body` yields an error (the caller's size limit was exceeded, the client disconnected)
    /// or the store fails, nothing new is left under `key` — a previous object stays as it was —
    /// and a body error is returned unchanged as [`StorageError::Body`]. The same holds if the
    /// returned future is dropped before it completes.
    async fn put(&self, key: &ObjectKey, body: ByteStream) -> Result<u64, StorageError>;

    /// Streams the object under `key`; [`StorageError::NotFound`] if there is none. Errors while
    /// reading the stream are I/O errors of the store.
    async fn get(&self, key: &ObjectKey) -> Result<ByteStream, StorageError>;

    /// Reads a whole object into memory, for callers that must have it all (text extraction).
    /// Refuses objects over `max_bytes` with [`StorageError::TooLarge`] without reading more
    /// than `max_bytes` of them.
    async fn get_bytes(&self, key: &ObjectKey, max_bytes: u64) -> Result<Bytes, StorageError> {
        let body = self.get(key).await?;
        collect_limited(body, max_bytes, None).await
    }

    /// Removes the object under `key`; succeeds if there was none.
    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError>;

    /// Where the objects live, for logs: `local:/path` or `s3://bucket`.
    fn describe(&self) -> String;
}

/// Reads `body` into memory, failing as soon as it passes `max_bytes`. `size_hint` (the stored
/// size, when the backend knows it) only pre-sizes the buffer; the limit is enforced on the
/// bytes actually read, in case the object changed in between.
pub(crate) async fn collect_limited(
    mut body: ByteStream,
    max_bytes: u64,
    size_hint: Option<u64>,
) -> Result<Bytes, StorageError> {
    let capacity = size_hint
        .unwrap_or(0)
        .min(max_bytes)
        .try_into()
        .unwrap_or(0usize);
    let mut buf = BytesMut::with_capacity(capacity);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(StorageError::Io)?;
        let total = u64::try_from(buf.len() + chunk.len()).unwrap_or(u64::MAX);
        if total > max_bytes {
            return Err(StorageError::TooLarge { limit: max_bytes });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}
