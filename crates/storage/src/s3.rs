//! [`S3Store`]: objects in an S3 bucket (AWS or any S3-compatible service).
//!
//! Uploads are streamed: a body that fits in one part goes as a single PutObject; a longer one
//! goes as a multipart upload, one part in memory at a time (parts are sent one after another,
//! trading throughput for a memory bound of one part per upload). A multipart upload that fails
//! is aborted before `put` returns; one whose `put` future is dropped is aborted from a spawned
//! task. As a backstop against a process killed mid-upload, production buckets should also have
//! an `AbortIncompleteMultipartUpload` lifecycle rule.
//!
//! The client is built directly from [`S3Config`] rather than through `aws_config::load`, so
//! the library reads no environment variables (no `AWS_ENDPOINT_URL`, `AWS_REGION`, ...): the
//! only exception is the SDK's default credential chain, used when the config has no keys.

use std::fmt;
use std::io;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream as SdkByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tracing::Instrument;

use crate::{ByteStream, ObjectKey, ObjectStore, StorageError, collect_limited};

/// S3's smallest allowed part (except the last one of an upload).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// S3's largest allowed part.
const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;

/// The default part size: large enough that an ordinary course PDF is a single PutObject,
/// small enough that many concurrent uploads stay cheap in memory.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;

/// Where and how to reach the bucket. Built by the server from its own config; this crate
/// reads no environment.
#[derive(Clone)]
pub struct S3Config {
    /// The bucket holding the objects. It must already exist.
    pub bucket: String,
    /// The bucket's region, e.g. `us-east-1` (any non-empty value for most S3-compatibles).
    pub region: String,
    /// A custom endpoint (`http://127.0.0.1:9000` for MinIO); `None` for AWS.
    pub endpoint: Option<String>,
    /// Address buckets as `endpoint/bucket` instead of `bucket.endpoint`. Needed by most
    /// S3-compatible services and by any endpoint that is an IP address or `localhost`.
    pub force_path_style: bool,
    /// Static access key id; with `secret_access_key`, or both `None` to use the SDK's default
    /// credential chain (environment, profile, web identity, container/instance roles).
    pub access_key_id: Option<String>,
    /// Static secret key; see `access_key_id`. Never printed by `Debug`.
    pub secret_access_key: Option<String>,
    /// The size of a multipart upload part, and so the upload memory bound per `put`. Bodies
    /// up to this size are sent as a single PutObject. At least [`MIN_PART_SIZE`].
    pub part_size: usize,
}

impl S3Config {
    /// A config for `bucket` in `region` with AWS's endpoint, the default credential chain and
    /// [`DEFAULT_PART_SIZE`].
    pub fn new(bucket: impl Into<String>, region: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            region: region.into(),
            endpoint: None,
            force_path_style: false,
            access_key_id: None,
            secret_access_key: None,
            part_size: DEFAULT_PART_SIZE,
        }
    }

    fn validate(&self) -> Result<(), StorageError> {
        let fail = |msg: &str| Err(StorageError::Config(msg.to_owned()));
        if self.bucket.is_empty() {
            return fail("S3 bucket is empty");
        }
        if self.region.is_empty() {
            return fail("S3 region is empty");
        }
        if let Some(endpoint) = &self.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return fail("S3 endpoint must start with http:// or https://");
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return fail("S3 access key id and secret access key must be given together");
        }
        if self.part_size < MIN_PART_SIZE {
            return fail("S3 part size is below S3's 5 MiB minimum");
        }
        if self.part_size > MAX_PART_SIZE {
            return fail("S3 part size is above S3's 5 GiB maximum");
        }
        Ok(())
    }

    /// Builds an SDK client. Shared with the test server, which needs a raw client.
    pub(crate) async fn client(&self) -> Result<Client, StorageError> {
        self.validate()?;
        let region = Region::new(self.region.clone());
        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(region.clone())
            .force_path_style(self.force_path_style);
        if let Some(endpoint) = &self.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        builder = match (&self.access_key_id, &self.secret_access_key) {
            (Some(id), Some(secret)) => builder.credentials_provider(Credentials::new(
                id.clone(),
                secret.clone(),
                None,
                None,
                "lectern-config",
            )),
            _ => builder.credentials_provider(
                aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                    .region(region)
                    .build()
                    .await,
            ),
        };
        Ok(Client::from_conf(builder.build()))
    }
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("force_path_style", &self.force_path_style)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("part_size", &self.part_size)
            .finish()
    }
}

/// Objects in an S3 bucket.
#[derive(Clone)]
pub struct S3Store {
    /// The SDK client; cheap to clone, shares one connection pool.
    client: Client,
    /// The bucket holding the objects.
    bucket: String,
    /// The endpoint, if not AWS's; only for [`ObjectStore::describe`].
    endpoint: Option<String>,
    /// See [`S3Config::part_size`].
    part_size: usize,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("part_size", &self.part_size)
            .finish_non_exhaustive()
    }
}

impl S3Store {
    /// Builds a store from `config`, failing with [`StorageError::Config`] if it is unusable.
    ///
    /// Sends no request: credentials and the bucket are first checked by the first operation,
    /// so a server can start while S3 is briefly unreachable.
    pub async fn connect(config: S3Config) -> Result<Self, StorageError> {
        let client = config.client().await?;
        Ok(Self {
            client,
            bucket: config.bucket,
            endpoint: config.endpoint,
            part_size: config.part_size,
        })
    }

    async fn put_single(&self, key: &ObjectKey, body: Bytes) -> Result<u64, StorageError> {
        let len = body.len();
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_length(to_i64(len))
            .body(SdkByteStream::from(body))
            .send()
            .await
            .map_err(|e| s3_error("PutObject", e))?;
        Ok(to_u64(len))
    }

    async fn put_multipart(
        &self,
        key: &ObjectKey,
        first: Bytes,
        reader: &mut PartReader,
    ) -> Result<u64, StorageError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(|e| s3_error("CreateMultipartUpload", e))?;
        let Some(upload_id) = created.upload_id else {
            return Err(StorageError::S3 {
                operation: "CreateMultipartUpload",
                message: "response has no upload id".to_owned(),
                source: "response has no upload id".into(),
            });
        };
        let mut guard = AbortGuard {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.as_str().to_owned(),
            upload_id: Some(upload_id.clone()),
        };
        match self.upload_parts(key, &upload_id, first, reader).await {
            Ok(written) => {
                guard.upload_id = None;
                Ok(written)
            }
            Err(e) => {
                guard.abort().await;
                Err(e)
            }
        }
    }

    /// Uploads `first` and the rest of `reader` as parts, then completes the upload.
    async fn upload_parts(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        first: Bytes,
        reader: &mut PartReader,
    ) -> Result<u64, StorageError> {
        let mut parts = Vec::new();
        let mut written = 0u64;
        let mut part = first;
        loop {
            let part_number = i32::try_from(parts.len() + 1).unwrap_or(i32::MAX);
            let len = part.len();
            let uploaded = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key.as_str())
                .upload_id(upload_id)
                .part_number(part_number)
                .content_length(to_i64(len))
                .body(SdkByteStream::from(part))
                .send()
                .await
                .map_err(|e| s3_error("UploadPart", e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(part_number)
                    .set_e_tag(uploaded.e_tag)
                    .build(),
            );
            written += to_u64(len);
            part = reader
                .fill(self.part_size)
                .await
                .map_err(StorageError::Body)?;
            if part.is_empty() {
                break;
            }
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| s3_error("CompleteMultipartUpload", e))?;
        Ok(written)
    }

    async fn get_object(
        &self,
        key: &ObjectKey,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, StorageError> {
        self.client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(|e| {
                if is_missing_object(&e) {
                    StorageError::NotFound {
                        key: key.to_string(),
                    }
                } else {
                    s3_error("GetObject", e)
                }
            })
    }
}

#[async_trait::async_trait]
impl ObjectStore for S3Store {
    async fn put(&self, key: &ObjectKey, body: ByteStream) -> Result<u64, StorageError> {
        let mut reader = PartReader { body, carry: None };
        let first = reader
            .fill(self.part_size)
            .await
            .map_err(StorageError::Body)?;
        // A body that fits in one part needs no multipart upload: one request, nothing to abort.
        if !reader.has_more().await.map_err(StorageError::Body)? {
            return self.put_single(key, first).await;
        }
        self.put_multipart(key, first, &mut reader).await
    }

    async fn get(&self, key: &ObjectKey) -> Result<ByteStream, StorageError> {
        let output = self.get_object(key).await?;
        Ok(sdk_stream(output.body))
    }

    async fn get_bytes(&self, key: &ObjectKey, max_bytes: u64) -> Result<Bytes, StorageError> {
        let output = self.get_object(key).await?;
        let size = output.content_length.and_then(|n| u64::try_from(n).ok());
        // Refuse on the advertised size; dropping the body closes the connection unread.
        if size.is_some_and(|size| size > max_bytes) {
            return Err(StorageError::TooLarge { limit: max_bytes });
        }
        collect_limited(sdk_stream(output.body), max_bytes, size).await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        // S3 answers 204 for an absent key; some compatibles answer NoSuchKey/404 instead.
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_missing_object(&e) => Ok(()),
            Err(e) => Err(s3_error("DeleteObject", e)),
        }
    }

    fn describe(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => format!("s3://{} at {endpoint}", self.bucket),
            None => format!("s3://{}", self.bucket),
        }
    }
}

/// Cuts an upload body into parts of exactly `part_size` (the last may be shorter), holding at
/// most one part plus one incoming chunk.
struct PartReader {
    /// The caller's body.
    body: ByteStream,
    /// Bytes read from `body` but not yet put in a part: the rest of a chunk that straddled a
    /// part boundary, or a chunk read to see whether the body had ended.
    carry: Option<Bytes>,
}

impl PartReader {
    /// Reads up to `part_size` bytes; an empty result means the body has ended.
    async fn fill(&mut self, part_size: usize) -> Result<Bytes, io::Error> {
        let mut buf = BytesMut::new();
        while buf.len() < part_size {
            let mut chunk = match self.carry.take() {
                Some(chunk) => chunk,
                None => match self.body.next().await {
                    Some(chunk) => chunk?,
                    None => break,
                },
            };
            let room = part_size - buf.len();
            if chunk.len() > room {
                self.carry = Some(chunk.split_off(room));
            }
            if buf.is_empty() && chunk.len() == part_size {
                // A chunk that is exactly a part needs no copy.
                return Ok(chunk);
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }

    /// Whether the body has more bytes, reading ahead one chunk if needed.
    async fn has_more(&mut self) -> Result<bool, io::Error> {
        while self.carry.is_none() {
            match self.body.next().await {
                None => return Ok(false),
                Some(chunk) => {
                    let chunk = chunk?;
                    if !chunk.is_empty() {
                        self.carry = Some(chunk);
                    }
                }
            }
        }
        Ok(true)
    }
}

/// Aborts a multipart upload that did not complete: awaited on errors, spawned from `Drop` when
/// the `put` future is cancelled (a client disconnect drops the server's handler mid-upload).
struct AbortGuard {
    /// The client to send AbortMultipartUpload with.
    client: Client,
    /// The upload's bucket.
    bucket: String,
    /// The upload's key.
    key: String,
    /// The upload to abort; `None` once completed or aborted.
    upload_id: Option<String>,
}

impl AbortGuard {
    async fn abort(&mut self) {
        if let Some(upload_id) = self.upload_id.take() {
            abort_upload(
                self.client.clone(),
                self.bucket.clone(),
                self.key.clone(),
                upload_id,
            )
            .await;
        }
    }
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        let Some(upload_id) = self.upload_id.take() else {
            return;
        };
        let abort = abort_upload(
            self.client.clone(),
            self.bucket.clone(),
            self.key.clone(),
            upload_id,
        );
        match tokio::runtime::Handle::try_current() {
            // Owned by no one by design: it must outlive the cancelled `put`, and it ends by
            // itself after one request (bounded by the SDK's timeouts).
            Ok(handle) => {
                handle.spawn(abort.instrument(tracing::info_span!("s3_abort_multipart")));
            }
            Err(_) => tracing::warn!(
                bucket = %self.bucket,
                key = %self.key,
                "put cancelled outside a Tokio runtime; multipart upload left open"
            ),
        }
    }
}

/// Best effort: the caller is already failing with a more useful error, so an abort failure is
/// logged, not returned. The bucket's lifecycle rule cleans up what this misses.
async fn abort_upload(client: Client, bucket: String, key: String, upload_id: String) {
    let result = client
        .abort_multipart_upload()
        .bucket(&bucket)
        .key(&key)
        .upload_id(&upload_id)
        .send()
        .await;
    if let Err(e) = result {
        tracing::warn!(
            %bucket, %key, %upload_id,
            error = %DisplayErrorContext(&e),
            "could not abort multipart upload"
        );
    }
}

/// Converts the SDK's body into the trait's stream without copying.
fn sdk_stream(body: SdkByteStream) -> ByteStream {
    Box::pin(futures_util::stream::try_unfold(
        body,
        |mut body| async move {
            match body.try_next().await {
                Ok(Some(chunk)) => Ok(Some((chunk, body))),
                Ok(None) => Ok(None),
                Err(e) => Err(io::Error::other(e)),
            }
        },
    ))
}

/// Whether an error means "no such object". A bare 404 counts (some S3-compatibles send one
/// without a code, and HEAD-like answers have no body) unless it says the *bucket* is missing:
/// a misconfigured bucket must surface as an error, not as every object being absent.
fn is_missing_object<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    let status = err.raw_response().map(|r| r.status().as_u16());
    err.code() == Some("NoSuchKey") || (status == Some(404) && err.code() != Some("NoSuchBucket"))
}

fn s3_error<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let message = match (err.code(), err.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => DisplayErrorContext(&err).to_string(),
    };
    StorageError::S3 {
        operation,
        message,
        source: Box::new(err),
    }
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::error::ErrorMetadata;
    use aws_sdk_s3::operation::get_object::GetObjectError;
    use aws_sdk_s3::primitives::SdkBody;
    use futures_util::stream;

    fn reader(chunks: &[&[u8]]) -> PartReader {
        let chunks: Vec<Result<Bytes, io::Error>> = chunks
            .iter()
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        PartReader {
            body: Box::pin(stream::iter(chunks)),
            carry: None,
        }
    }

    #[tokio::test]
    async fn part_reader_cuts_exact_parts_across_chunks() {
        let mut r = reader(&[b"abc", b"", b"defgh", b"ij"]);
        assert_eq!(r.fill(4).await.expect("fill"), &b"abcd"[..]);
        assert!(r.has_more().await.expect("peek"));
        assert_eq!(r.fill(4).await.expect("fill"), &b"efgh"[..]);
        assert_eq!(r.fill(4).await.expect("fill"), &b"ij"[..]);
        assert!(!r.has_more().await.expect("peek"));
        assert!(r.fill(4).await.expect("fill").is_empty());
    }

    #[tokio::test]
    async fn part_reader_sees_the_end_after_an_exact_part() {
        let mut r = reader(&[b"ab", b"cd", b""]);
        assert_eq!(r.fill(4).await.expect("fill"), &b"abcd"[..]);
        assert!(!r.has_more().await.expect("peek"));
    }

    #[test]
    fn config_validation() {
        let ok = S3Config::new("b", "us-east-1");
        ok.validate().expect("defaults are valid");
        let mut small = ok.clone();
        small.part_size = MIN_PART_SIZE - 1;
        assert!(matches!(small.validate(), Err(StorageError::Config(_))));
        let mut half_keys = ok.clone();
        half_keys.access_key_id = Some("id".into());
        assert!(matches!(half_keys.validate(), Err(StorageError::Config(_))));
        let mut bad_endpoint = ok.clone();
        bad_endpoint.endpoint = Some("localhost:9000".into());
        assert!(matches!(
            bad_endpoint.validate(),
            Err(StorageError::Config(_))
        ));
    }

    fn get_error(status: u16, code: Option<&str>) -> SdkError<GetObjectError, HttpResponse> {
        let mut meta = ErrorMetadata::builder();
        if let Some(code) = code {
            meta = meta.code(code);
        }
        let raw = HttpResponse::new(status.try_into().expect("valid status"), SdkBody::empty());
        SdkError::service_error(GetObjectError::generic(meta.build()), raw)
    }

    // s3s-fs answers NoSuchKey for a missing bucket too, so this is checked here, not against
    // the test server: a wrong bucket must never read as "every object is missing".
    #[test]
    fn missing_object_is_told_apart_from_missing_bucket() {
        assert!(is_missing_object(&get_error(404, Some("NoSuchKey"))));
        assert!(is_missing_object(&get_error(404, None)));
        assert!(!is_missing_object(&get_error(404, Some("NoSuchBucket"))));
        assert!(!is_missing_object(&get_error(403, Some("AccessDenied"))));
        assert!(!is_missing_object(&get_error(500, None)));
    }

    #[test]
    fn debug_redacts_the_secret() {
        let mut config = S3Config::new("b", "r");
        config.secret_access_key = Some("hunter2".into());
        config.access_key_id = Some("id".into());
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
