//! The `ObjectStore` contract, run against every backend.
//!
//! Each property is one `async fn(Backend)`; `contract!` instantiates it once per backend (as
//! `local::<property>` and `s3::<property>`), so the backends cannot drift apart. The S3
//! backend talks to a real S3-protocol server in-process (`S3TestServer`) with the smallest
//! part size S3 allows, so multipart uploads happen at 5 MiB. Checks that only make sense on
//! S3 (open multipart uploads, ETags) run when `backend.s3` is set. Backend-specific tests are at the
//! bottom.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use lectern_storage::testing::S3TestServer;
use lectern_storage::{
    ByteStream, LocalStore, MIN_PART_SIZE, ObjectKey, ObjectStore, S3Store, StorageError,
};

const MIB: usize = 1024 * 1024;

/// One backend under test, with whatever keeps it alive.
struct Backend {
    /// The store, shared so a test can move a `put` into a task and cancel it.
    store: Arc<dyn ObjectStore>,
    /// The S3 server, for S3-only checks; `None` for the local backend.
    s3: Option<S3TestServer>,
    /// The local store's directory, removed at the end of the test.
    _dir: Option<tempfile::TempDir>,
}

async fn local() -> Backend {
    let dir = tempfile::tempdir().expect("create temp dir");
    let store = LocalStore::new(dir.path().join("objects")).expect("open local store");
    Backend {
        store: Arc::new(store),
        s3: None,
        _dir: Some(dir),
    }
}

async fn s3() -> Backend {
    let server = S3TestServer::start().await;
    let config = server.config();
    assert_eq!(config.part_size, MIN_PART_SIZE);
    let store = S3Store::connect(config).await.expect("connect S3 store");
    Backend {
        store: Arc::new(store),
        s3: Some(server),
        _dir: None,
    }
}

macro_rules! contract {
    ($($property:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test]
                async fn $property() {
                    super::$property(super::local().await).await;
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test]
                async fn $property() {
                    super::$property(super::s3().await).await;
                }
            )*
        }
    };
}

contract!(
    put_get_roundtrip,
    empty_object_roundtrips,
    overwrite_replaces_the_whole_object,
    get_of_missing_key_is_not_found,
    delete_is_idempotent,
    key_validation_refuses_bad_keys,
    failing_body_leaves_nothing,
    failing_body_keeps_the_previous_object,
    failing_multipart_body_leaves_nothing,
    cancelled_put_leaves_nothing,
    large_object_goes_multipart_and_roundtrips,
    get_bytes_refuses_objects_over_the_limit,
    describe_names_the_location,
);

// ---- helpers ----

fn key(s: &str) -> ObjectKey {
    ObjectKey::new(s).expect("valid key")
}

/// Deterministic bytes that differ at every offset, so a misplaced or repeated chunk shows.
fn data(len: usize, seed: u64) -> Bytes {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect::<Vec<u8>>()
        .into()
}

/// `bytes` as a stream of `chunk`-sized pieces (odd sizes straddle part boundaries).
fn chunks(bytes: &Bytes, chunk: usize) -> Vec<Result<Bytes, io::Error>> {
    (0..bytes.len())
        .step_by(chunk)
        .map(|start| Ok(bytes.slice(start..(start + chunk).min(bytes.len()))))
        .collect()
}

fn body(bytes: &Bytes, chunk: usize) -> ByteStream {
    Box::pin(stream::iter(chunks(bytes, chunk)))
}

/// `prefix`, then the error a server sees when the uploading client goes away.
fn failing_body(prefix: &Bytes, chunk: usize) -> ByteStream {
    let mut items = chunks(prefix, chunk);
    items.push(Err(io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "client went away",
    )));
    Box::pin(stream::iter(items))
}

fn assert_is_callers_body_error(err: StorageError) {
    match err {
        StorageError::Body(e) => {
            assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);
            assert_eq!(e.to_string(), "client went away");
        }
        other => panic!("expected the body's own error as Body, got {other:?}"),
    }
}

async fn read_all(store: &dyn ObjectStore, k: &ObjectKey) -> Vec<u8> {
    let mut stream = store.get(k).await.expect("get");
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("read chunk"));
    }
    out
}

async fn assert_not_found(store: &dyn ObjectStore, k: &ObjectKey) {
    match store.get(k).await {
        Err(StorageError::NotFound { key }) => assert_eq!(key, k.as_str()),
        Err(other) => panic!("expected NotFound for {k}, got {other:?}"),
        Ok(_) => panic!("expected NotFound for {k}, got an object"),
    }
}

/// Open multipart uploads in the test bucket (empty for non-S3 backends).
async fn open_multipart_uploads(backend: &Backend) -> Vec<String> {
    let Some(server) = &backend.s3 else {
        return Vec::new();
    };
    let listed = server
        .client()
        .list_multipart_uploads()
        .bucket(server.config().bucket)
        .send()
        .await
        .expect("list multipart uploads");
    listed
        .uploads()
        .iter()
        .map(|u| format!("{:?} {:?}", u.key(), u.upload_id()))
        .collect()
}

// ---- properties ----

async fn put_get_roundtrip(b: Backend) {
    let store = &*b.store;
    let small = key("hello.txt");
    let written = store
        .put(&small, body(&Bytes::from_static(b"hello, class"), 5))
        .await
        .expect("put small");
    assert_eq!(written, 12);
    assert_eq!(read_all(store, &small).await, b"hello, class");

    let nested = key("courses/42/materials/notes.md");
    let content = data(300 * 1024 + 17, 1);
    let written = store
        .put(&nested, body(&content, 7 * 1024 + 3))
        .await
        .expect("put nested");
    assert_eq!(written, u64::try_from(content.len()).expect("fits"));
    assert_eq!(read_all(store, &nested).await, content);
    let whole = store
        .get_bytes(&nested, u64::try_from(content.len()).expect("fits"))
        .await
        .expect("get_bytes");
    assert_eq!(whole, content);
}

async fn empty_object_roundtrips(b: Backend) {
    let store = &*b.store;
    let k = key("empty");
    let written = store
        .put(&k, Box::pin(stream::empty()))
        .await
        .expect("put empty");
    assert_eq!(written, 0);
    assert!(read_all(store, &k).await.is_empty());
    assert!(
        store
            .get_bytes(&k, 0)
            .await
            .expect("get_bytes empty")
            .is_empty()
    );
}

async fn overwrite_replaces_the_whole_object(b: Backend) {
    let store = &*b.store;
    let k = key("syllabus.pdf");
    store
        .put(&k, body(&data(200 * 1024, 2), 64 * 1024))
        .await
        .expect("first put");
    // Shorter than the first: a store that overwrote in place would leave a tail behind.
    store
        .put(&k, body(&Bytes::from_static(b"v2"), 2))
        .await
        .expect("second put");
    assert_eq!(read_all(store, &k).await, b"v2");
}

async fn get_of_missing_key_is_not_found(b: Backend) {
    let store = &*b.store;
    let k = key("never/written");
    assert_not_found(store, &k).await;
    assert!(matches!(
        store.get_bytes(&k, 1024).await,
        Err(StorageError::NotFound { .. })
    ));
}

async fn delete_is_idempotent(b: Backend) {
    let store = &*b.store;
    let k = key("handout.docx");
    store.delete(&k).await.expect("delete of a missing key");
    store.put(&k, body(&data(1000, 3), 100)).await.expect("put");
    store.delete(&k).await.expect("delete");
    assert_not_found(store, &k).await;
    store.delete(&k).await.expect("second delete");
}

async fn key_validation_refuses_bad_keys(_b: Backend) {
    for bad in ["../x", "a//b", "", "/abs", "a/", "a/../b", "sp ace"] {
        assert!(
            matches!(ObjectKey::new(bad), Err(StorageError::InvalidKey { .. })),
            "{bad:?} should be refused"
        );
    }
}

async fn failing_body_leaves_nothing(b: Backend) {
    let store = &*b.store;
    let k = key("upload/failed.pdf");
    let err = store
        .put(&k, failing_body(&data(10 * 1024, 4), 1024))
        .await
        .expect_err("put must fail");
    assert_is_callers_body_error(err);
    assert_not_found(store, &k).await;
}

async fn failing_body_keeps_the_previous_object(b: Backend) {
    let store = &*b.store;
    let k = key("upload/replaced.pdf");
    let old = data(4096, 5);
    store.put(&k, body(&old, 1000)).await.expect("first put");
    let err = store
        .put(&k, failing_body(&data(10 * 1024, 6), 1024))
        .await
        .expect_err("put must fail");
    assert_is_callers_body_error(err);
    assert_eq!(read_all(store, &k).await, old);
}

async fn failing_multipart_body_leaves_nothing(b: Backend) {
    let store = &*b.store;
    let k = key("upload/failed-large.pdf");
    // Past two whole parts: on S3 a multipart upload is open with parts in it when the body fails.
    let err = store
        .put(&k, failing_body(&data(12 * MIB, 7), 256 * 1024))
        .await
        .expect_err("put must fail");
    assert_is_callers_body_error(err);
    assert_not_found(store, &k).await;
    assert_eq!(open_multipart_uploads(&b).await, Vec::<String>::new());
}

async fn cancelled_put_leaves_nothing(b: Backend) {
    let k = key("upload/cancelled.pdf");
    // 12 MiB, then a body that never ends. `starved` fires once the store has consumed every
    // byte and asks for more: on S3 two parts are uploaded by then.
    let (starved_tx, starved_rx) = tokio::sync::oneshot::channel::<()>();
    let content = data(12 * MIB, 8);
    let stalled = stream::once(async move {
        let _ = starved_tx.send(());
        std::future::pending::<Result<Bytes, io::Error>>().await
    });
    let body: ByteStream = Box::pin(stream::iter(chunks(&content, MIB)).chain(stalled));
    let put = tokio::spawn({
        let store = Arc::clone(&b.store);
        let k = k.clone();
        async move { store.put(&k, body).await }
    });
    tokio::time::timeout(Duration::from_secs(60), starved_rx)
        .await
        .expect("store consumed the body in time")
        .expect("body polled past its data");
    if b.s3.is_some() {
        assert_eq!(open_multipart_uploads(&b).await.len(), 1);
    }

    // The client disconnects: the server's handler, and with it the put, is dropped.
    put.abort();
    assert!(put.await.expect_err("put was aborted").is_cancelled());

    // On S3 the abort runs in a spawned task: wait for it, boundedly.
    let mut open = open_multipart_uploads(&b).await;
    for _ in 0..100 {
        if open.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        open = open_multipart_uploads(&b).await;
    }
    assert_eq!(open, Vec::<String>::new());
    assert_not_found(&*b.store, &k).await;
}

async fn large_object_goes_multipart_and_roundtrips(b: Backend) {
    let store = &*b.store;
    let k = key("lectures/recording-transcript.txt");
    let content = data(20 * MIB, 9);
    // Chunks of 64 KiB + 3 never line up with the 5 MiB part boundaries.
    let written = store
        .put(&k, body(&content, 64 * 1024 + 3))
        .await
        .expect("put 20 MiB");
    assert_eq!(written, u64::try_from(content.len()).expect("fits"));
    let read = read_all(store, &k).await;
    assert_eq!(read.len(), content.len());
    assert!(read == content, "20 MiB object differs after roundtrip");

    if let Some(server) = &b.s3 {
        // A multipart object's ETag is "<md5 of part md5s>-<part count>": 20 MiB / 5 MiB = 4.
        let head = server
            .client()
            .head_object()
            .bucket(server.config().bucket)
            .key(k.as_str())
            .send()
            .await
            .expect("head object");
        let etag = head.e_tag().expect("etag").trim_matches('"');
        assert!(etag.ends_with("-4"), "expected 4 parts, etag {etag}");
        assert_eq!(open_multipart_uploads(&b).await, Vec::<String>::new());
    }
}

async fn get_bytes_refuses_objects_over_the_limit(b: Backend) {
    let store = &*b.store;
    let k = key("big.pdf");
    let content = data(1000, 10);
    store.put(&k, body(&content, 100)).await.expect("put");
    match store.get_bytes(&k, 999).await {
        Err(StorageError::TooLarge { limit }) => assert_eq!(limit, 999),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(
        store.get_bytes(&k, 1000).await.expect("at the limit"),
        content
    );
}

async fn describe_names_the_location(b: Backend) {
    let described = b.store.describe();
    if b.s3.is_some() {
        assert!(described.starts_with("s3://lectern-test"), "{described}");
    } else {
        assert!(described.starts_with("local:/"), "{described}");
    }
}

// ---- local only ----

// Local-only because s3s-fs, unlike S3, writes an object's data and its stored checksum in two
// steps: two racing PutObjects can pair one's data with the other's checksum, and the SDK then
// (rightly) fails the read with ChecksumMismatch. Real S3 makes each PUT atomic.
#[tokio::test]
async fn local_concurrent_puts_never_mix() {
    let b = local().await;
    let store = &*b.store;
    let k = key("contended");
    let (one, two) = (data(MIB, 11), data(MIB, 12));
    let (r1, r2) = tokio::join!(
        store.put(&k, body(&one, 4096)),
        store.put(&k, body(&two, 4096))
    );
    r1.expect("first put");
    r2.expect("second put");
    let read = read_all(store, &k).await;
    assert!(read == one || read == two, "object is a mix of two uploads");
}

// ---- S3 only ----

#[tokio::test]
async fn s3_wrong_credentials_are_an_s3_error() {
    let server = S3TestServer::start().await;
    let mut config = server.config();
    config.secret_access_key = Some("wrong".to_owned());
    let store = S3Store::connect(config).await.expect("connect");
    match store.get(&key("anything")).await {
        Err(StorageError::S3 {
            operation,
            message,
            source,
        }) => {
            assert_eq!(operation, "GetObject");
            // The server checked the SigV4 signature and said why it refused.
            assert!(message.starts_with("SignatureDoesNotMatch"), "{message}");
            // The SDK's typed error is kept as the source.
            assert!(
                source
                    .downcast_ref::<aws_sdk_s3::error::SdkError<
                        aws_sdk_s3::operation::get_object::GetObjectError,
                        aws_sdk_s3::config::http::HttpResponse,
                    >>()
                    .is_some()
            );
        }
        Err(other) => panic!("expected an S3 error, got {other:?}"),
        Ok(_) => panic!("expected an S3 error, got an object"),
    }
}

#[tokio::test]
async fn s3_connect_refuses_a_part_size_below_the_minimum() {
    let server = S3TestServer::start().await;
    let mut config = server.config();
    config.part_size = MIN_PART_SIZE - 1;
    assert!(matches!(
        S3Store::connect(config).await,
        Err(StorageError::Config(_))
    ));
}
