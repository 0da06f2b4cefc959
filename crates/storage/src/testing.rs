//! An in-process S3-protocol server for tests (feature `testing`).
//!
//! [`S3TestServer`] runs `s3s-fs` (a real S3 HTTP front end over a directory) on
//! `127.0.0.1:<random port>` with SigV4 signature checking, so tests exercise the same SDK,
//! signing and HTTP path as production, with no external service to install.
//!
//! `s3s-fs` does not implement ListMultipartUploads, which tests need to prove that failed
//! uploads are aborted. A thin wrapper (`TrackingFs`) adds it: it remembers the bucket and key
//! of each upload it saw created, and reports those whose upload record `s3s-fs` still keeps on
//! disk, so the answer reflects `s3s-fs`'s own state, not the wrapper's bookkeeping.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;

use hyper_util::rt::TokioIo;
use s3s::dto;
use s3s::{S3, S3Request, S3Response, S3Result};
use tokio::task::{JoinHandle, JoinSet};

use crate::{MIN_PART_SIZE, S3Config};

/// The access key id the server accepts.
pub const TEST_ACCESS_KEY_ID: &str = "lectern-test-access-key";
/// The secret key the server accepts.
pub const TEST_SECRET_ACCESS_KEY: &str = "lectern-test-secret-key";
/// The region in the handed-out config (s3s-fs accepts any).
pub const TEST_REGION: &str = "us-east-1";
/// The bucket created at start.
pub const TEST_BUCKET: &str = "lectern-test";

/// A running S3-protocol server over a temporary directory, with bucket [`TEST_BUCKET`].
/// Stopped, and its directory removed, when dropped.
pub struct S3TestServer {
    /// Where it listens.
    addr: SocketAddr,
    /// A raw SDK client with the test credentials, for assertions a store cannot make.
    client: aws_sdk_s3::Client,
    /// The accept loop; aborting it drops, and so aborts, every connection task.
    task: JoinHandle<()>,
    /// The data directory; removed on drop (after `task` is aborted).
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for S3TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3TestServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl S3TestServer {
    /// Starts a server and creates [`TEST_BUCKET`]. Panics if it cannot (a test helper: there
    /// is nothing sensible for a test to do instead).
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("S3TestServer: create temp dir");
        let root = dir
            .path()
            .canonicalize()
            .expect("S3TestServer: canonicalize temp dir");
        let fs = s3s_fs::FileSystem::new(&root).expect("S3TestServer: open s3s-fs");
        let service = {
            let mut builder = s3s::service::S3ServiceBuilder::new(TrackingFs {
                fs,
                root,
                uploads: Mutex::new(HashMap::new()),
            });
            builder.set_auth(s3s::auth::SimpleAuth::from_single(
                TEST_ACCESS_KEY_ID,
                TEST_SECRET_ACCESS_KEY,
            ));
            builder.build()
        };

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("S3TestServer: bind 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("S3TestServer: listener address");
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((socket, _)) => {
                            let service = service.clone();
                            connections.spawn(async move {
                                let served = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(TokioIo::new(socket), service)
                                    .await;
                                if let Err(e) = served {
                                    tracing::debug!(error = %e, "S3TestServer connection ended");
                                }
                            });
                        }
                        Err(e) => {
                            // Out of file descriptors or similar: back off instead of spinning.
                            tracing::warn!(error = %e, "S3TestServer accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        }
                    },
                    // Reap finished connections so the set does not grow for the server's life.
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });

        let client = config_for(addr)
            .client()
            .await
            .expect("S3TestServer: build client");
        // Built before the bucket is made so that a failure below still stops the server.
        let server = Self {
            addr,
            client,
            task,
            _dir: dir,
        };
        server
            .client
            .create_bucket()
            .bucket(TEST_BUCKET)
            .send()
            .await
            .expect("S3TestServer: create bucket");
        server
    }

    /// A config for this server: static test credentials, path-style addressing, and the
    /// smallest part size S3 allows so that multipart uploads are cheap to provoke.
    pub fn config(&self) -> S3Config {
        config_for(self.addr)
    }

    /// A raw SDK client for this server, to inspect what a store left behind (e.g.
    /// `list_multipart_uploads`, `head_object`).
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }
}

impl Drop for S3TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn config_for(addr: SocketAddr) -> S3Config {
    S3Config {
        bucket: TEST_BUCKET.to_owned(),
        region: TEST_REGION.to_owned(),
        endpoint: Some(format!("http://{addr}")),
        force_path_style: true,
        access_key_id: Some(TEST_ACCESS_KEY_ID.to_owned()),
        secret_access_key: Some(TEST_SECRET_ACCESS_KEY.to_owned()),
        part_size: MIN_PART_SIZE,
    }
}

/// `s3s-fs` plus ListMultipartUploads; every other operation the stores use is passed through.
struct TrackingFs {
    /// The real implementation.
    fs: s3s_fs::FileSystem,
    /// `s3s-fs`'s root (canonical), where it keeps `.upload-<id>.json` for each open upload.
    root: PathBuf,
    /// Upload id → (bucket, key), for every upload created. Entries whose record `s3s-fs` has
    /// deleted (completed or aborted) are pruned when listing.
    uploads: Mutex<HashMap<String, (String, String)>>,
}

impl TrackingFs {
    fn is_open(&self, upload_id: &str) -> bool {
        self.root.join(format!(".upload-{upload_id}.json")).exists()
    }
}

#[async_trait::async_trait]
impl S3 for TrackingFs {
    async fn create_bucket(
        &self,
        req: S3Request<dto::CreateBucketInput>,
    ) -> S3Result<S3Response<dto::CreateBucketOutput>> {
        self.fs.create_bucket(req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<dto::HeadBucketInput>,
    ) -> S3Result<S3Response<dto::HeadBucketOutput>> {
        self.fs.head_bucket(req).await
    }

    async fn put_object(
        &self,
        req: S3Request<dto::PutObjectInput>,
    ) -> S3Result<S3Response<dto::PutObjectOutput>> {
        self.fs.put_object(req).await
    }

    async fn get_object(
        &self,
        req: S3Request<dto::GetObjectInput>,
    ) -> S3Result<S3Response<dto::GetObjectOutput>> {
        self.fs.get_object(req).await
    }

    async fn head_object(
        &self,
        req: S3Request<dto::HeadObjectInput>,
    ) -> S3Result<S3Response<dto::HeadObjectOutput>> {
        self.fs.head_object(req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<dto::DeleteObjectInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectOutput>> {
        self.fs.delete_object(req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<dto::ListObjectsV2Input>,
    ) -> S3Result<S3Response<dto::ListObjectsV2Output>> {
        self.fs.list_objects_v2(req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<dto::CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CreateMultipartUploadOutput>> {
        let target = (req.input.bucket.clone(), req.input.key.clone());
        let response = self.fs.create_multipart_upload(req).await?;
        if let Some(upload_id) = &response.output.upload_id {
            self.uploads
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(upload_id.clone(), target);
        }
        Ok(response)
    }

    async fn upload_part(
        &self,
        req: S3Request<dto::UploadPartInput>,
    ) -> S3Result<S3Response<dto::UploadPartOutput>> {
        self.fs.upload_part(req).await
    }

    async fn list_parts(
        &self,
        req: S3Request<dto::ListPartsInput>,
    ) -> S3Result<S3Response<dto::ListPartsOutput>> {
        self.fs.list_parts(req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<dto::CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CompleteMultipartUploadOutput>> {
        self.fs.complete_multipart_upload(req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<dto::AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::AbortMultipartUploadOutput>> {
        self.fs.abort_multipart_upload(req).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<dto::ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<dto::ListMultipartUploadsOutput>> {
        let bucket = req.input.bucket;
        // A std mutex: held only for map operations and stat calls, never across an await.
        let mut uploads = self
            .uploads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        uploads.retain(|upload_id, _| self.is_open(upload_id));
        let mut listed: Vec<dto::MultipartUpload> = uploads
            .iter()
            .filter(|(_, (b, _))| *b == bucket)
            .map(|(upload_id, (_, key))| dto::MultipartUpload {
                key: Some(key.clone()),
                upload_id: Some(upload_id.clone()),
                ..Default::default()
            })
            .collect();
        drop(uploads);
        listed.sort_by(|a, b| (&a.key, &a.upload_id).cmp(&(&b.key, &b.upload_id)));
        Ok(S3Response::new(dto::ListMultipartUploadsOutput {
            bucket: Some(bucket),
            is_truncated: Some(false),
            uploads: Some(listed),
            ..Default::default()
        }))
    }
}
