//! Course material: uploads into object storage, ingestion (extract → chunk → embed) in
//! the background, and semantic search. This module wires `lectern-storage`,
//! `lectern-library`, `lectern-ai` and `lectern-db` together; each owns its domain logic.
//!
//! # Layout
//! - this file: [`Library`], the handle the REST handlers use (upload, delete, search).
//! - `ingest.rs`: the background worker that turns a stored file into searchable chunks.
//! - `feed.rs`: progress pushed live into the classroom's materials feed document.
//! - `search.rs`: one in-memory vector index per classroom, loaded on demand.
//! - `model.rs`: the embedding model, prepared and loaded in the background.
//! - `metrics.rs`: upload and ingestion metrics.
//! - `sandbox.rs`: text extraction in child processes with hard limits.
//!
//! An upload is answered after the file is stored *and its text extracted* (in a child
//! process, see `sandbox.rs`): a file that cannot be read (encrypted, damaged, a zip bomb,
//! not a supported type, one that crashes or exhausts the reader) is refused with a 4xx at
//! once and nothing is kept. Chunking and embedding, the slow part, run in the
//! background with progress.
//!
//! Ingestion that did not finish (the node stopped or died) is resumed: at start and every
//! few minutes, each node queues the unfinished materials again. With several nodes, the
//! worker takes the lease `ingest:{material_id}` before it ingests a material and renews it
//! while it works, so exactly one node ingests each material at a time, and a dead node's
//! material is taken over once its lease expires.

pub mod feed;
mod ingest;
pub mod metrics;
pub mod model;
pub mod sandbox;
pub mod search;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt, stream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use lectern_collab::Rooms;
use lectern_db::materials::{Material, MaterialChunk, MaterialFormat, MaterialStatus};
use lectern_db::{Database, DbError, Leases, Materials};
use lectern_library::{ExtractError, Extracted, Format, Limits};
use lectern_storage::{ByteStream, ObjectKey, ObjectStore, StorageError};

pub use feed::MaterialsFeed;
pub use model::EmbeddingModel;

use crate::cluster::{Cluster, ClusterEvent};
use crate::events::Events;
use sandbox::{Sandbox, SandboxConfig, SandboxError};
use search::SearchIndexes;

/// Bytes read before deciding the format (the sniffer wants at least this much).
const SNIFF_BYTES: usize = 8 * 1024;

/// How long a search waits for the embedding model to load.
const MODEL_WAIT: Duration = Duration::from_secs(20);

/// Dimensions of the embedding model's vectors (all-MiniLM-L6-v2).
pub const EMBEDDING_DIMS: usize = 384;

/// How often a node looks for unfinished materials nobody is ingesting (a node died).
const RESCAN_INTERVAL: Duration = Duration::from_secs(180);

/// Why an upload was refused.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The body exceeded the upload limit; nothing was kept.
    #[error("the file is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit in effect.
        limit: u64,
    },
    /// The bytes are not a supported type (detected from the content, not the name).
    #[error(transparent)]
    Unsupported(ExtractError),
    /// The file is of a supported type but cannot be read (empty, encrypted, damaged, too
    /// large once decompressed, too slow to read).
    #[error(transparent)]
    Unreadable(ExtractError),
    /// The client's body broke off before the end.
    #[error("the upload was interrupted: {0}")]
    Interrupted(String),
    /// Every extraction process is busy and the line behind them is full; nothing was kept.
    #[error("the server is busy reading other files; try again shortly")]
    Busy,
    /// The extraction process could not be started.
    #[error("reading the file failed")]
    Sandbox(#[source] SandboxError),
    /// The object store failed.
    #[error("storing the file failed")]
    Storage(#[from] StorageError),
    /// The database failed.
    #[error("recording the file failed")]
    Database(#[from] DbError),
}

/// Why a search could not run.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The embedding model is not ready; the text says why.
    #[error("{0}")]
    ModelUnavailable(Arc<str>),
    /// Embedding the query failed.
    #[error("embedding the query failed")]
    Embedding(#[from] lectern_ai::embed::EmbedError),
    /// The database failed.
    #[error("reading the index failed")]
    Database(#[from] DbError),
}

/// One search result, with what a citation needs.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    /// The chunk and where it came from.
    pub chunk: MaterialChunk,
    /// The material's file name.
    pub file_name: String,
    /// Cosine similarity to the query, -1..=1.
    pub score: f32,
}

/// Limits on uploads and ingestion.
#[derive(Debug, Clone)]
pub struct LibraryLimits {
    /// Largest upload, in bytes.
    pub max_upload_bytes: u64,
    /// How extraction runs: its child processes and their bounds.
    pub sandbox: SandboxConfig,
}

impl LibraryLimits {
    /// The limits `config` asks for. Fails only if this program cannot find its own binary
    /// (the default extraction worker).
    pub fn from_config(config: &crate::Config) -> std::io::Result<Self> {
        let worker = match &config.extract_worker {
            Some(worker) => worker.clone(),
            None => std::env::current_exe()?,
        };
        let concurrency = match config.extract_concurrency {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        Ok(Self {
            max_upload_bytes: config.max_upload_bytes,
            sandbox: SandboxConfig {
                worker,
                limits: Limits {
                    max_time: Duration::from_secs(config.extract_timeout_secs),
                    max_text_bytes: config.extract_max_text_bytes,
                    ..Limits::default()
                },
                memory_bytes: config.extract_memory_mib.saturating_mul(1024 * 1024),
                max_input_bytes: config.max_upload_bytes,
                concurrency,
                queue: config.extract_queue,
            },
        })
    }
}

/// A unit of work for the ingestion worker.
#[derive(Debug)]
struct IngestJob {
    material_id: String,
    /// The text, when the upload just extracted it; `None` after a restart (the worker
    /// reads the file again).
    extracted: Option<Extracted>,
}

/// Course material of every classroom: storage, ingestion and search. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Library(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    store: Arc<dyn ObjectStore>,
    materials: Materials,
    model: EmbeddingModel,
    indexes: SearchIndexes,
    feed: MaterialsFeed,
    jobs: mpsc::UnboundedSender<IngestJob>,
    limits: LibraryLimits,
    sandbox: Sandbox,
    metrics: metrics::MaterialsMetrics,
    /// Who ingests which material, across nodes.
    leases: Leases,
    /// This node, as the holder of its ingestion leases.
    node: String,
    /// Materials queued here and not yet taken by the worker, so a re-scan does not queue
    /// them twice. A std mutex: set operations only, never held across an await.
    pending: Mutex<HashSet<String>>,
    /// Other nodes, told when a classroom's searchable materials change.
    cluster: Cluster,
    /// Where `material.ready` and `material.failed` are told.
    events: Events,
}

impl Library {
    /// Starts the library: the ingestion worker (stopped by `shutdown`), with every
    /// material whose ingestion was left unfinished queued again, now and every few
    /// minutes (the worker skips those another node is ingesting).
    // Each argument is a separate handle the library keeps; grouping them belongs with the
    // configuration's sections (issue #16).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn start(
        store: Arc<dyn ObjectStore>,
        database: Database,
        rooms: Rooms,
        model: EmbeddingModel,
        limits: LibraryLimits,
        metrics: metrics::MaterialsMetrics,
        cluster: Cluster,
        events: Events,
        shutdown: CancellationToken,
    ) -> Result<Self, DbError> {
        let materials = Materials::new(database.clone());
        let (jobs, queue) = mpsc::unbounded_channel();
        let library = Self(Arc::new(Inner {
            indexes: SearchIndexes::new(materials.clone(), EMBEDDING_DIMS),
            feed: MaterialsFeed::new(rooms),
            store,
            materials,
            model,
            jobs,
            sandbox: Sandbox::new(limits.sandbox.clone(), metrics.clone()),
            limits,
            metrics,
            cluster,
            events,
            leases: Leases::new(database),
            node: uuid::Uuid::new_v4().to_string(),
            pending: Mutex::new(HashSet::new()),
        }));
        library.resume_unfinished().await?;
        tokio::spawn(ingest::run(library.clone(), queue, shutdown.clone()));
        tokio::spawn(library.clone().rescan(shutdown));
        Ok(library)
    }

    /// Queues every material whose ingestion is unfinished and not already queued here.
    async fn resume_unfinished(&self) -> Result<(), DbError> {
        for material in self.0.materials.unfinished().await? {
            if self.enqueue(material.id.clone(), None) {
                tracing::info!(material_id = %material.id, "resuming unfinished ingestion");
            }
        }
        Ok(())
    }

    /// Every [`RESCAN_INTERVAL`] until `shutdown`: takes over what a dead node left
    /// unfinished (its lease has expired by then, or will have at the next pass).
    async fn rescan(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(RESCAN_INTERVAL) => {}
            }
            if let Err(error) = self.resume_unfinished().await {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "could not look for unfinished materials"
                );
            }
            // Housekeeping: leases left behind by nodes that died holding them.
            if let Err(error) = self.0.leases.prune_expired().await {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "could not delete expired leases"
                );
            }
        }
    }

    /// Tells the other nodes that `classroom_id`'s searchable materials changed, so a
    /// material ingested here is found by a search there at once.
    pub(crate) fn searchable_changed(&self, classroom_id: &str) {
        self.0.cluster.publish(ClusterEvent::MaterialsChanged {
            classroom_id: classroom_id.to_owned(),
        });
    }

    /// Another node changed `classroom_id`'s searchable materials: this node's index of it
    /// is read afresh from the database on its next search.
    pub(crate) fn forget_index(&self, classroom_id: &str) {
        self.0.indexes.forget(classroom_id);
    }

    /// The stored materials.
    pub fn materials(&self) -> &Materials {
        &self.0.materials
    }

    /// The embedding model.
    pub fn model(&self) -> &EmbeddingModel {
        &self.0.model
    }

    /// The limits in effect.
    pub fn limits(&self) -> &LibraryLimits {
        &self.0.limits
    }

    /// Queues `material_id` for the worker unless it is queued here already; returns
    /// whether it was queued.
    fn enqueue(&self, material_id: String, extracted: Option<Extracted>) -> bool {
        if !self
            .0
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(material_id.clone())
        {
            return false;
        }
        // The worker lives as long as the server; if it is gone we are shutting down and
        // the material stays queued in the database for the next start.
        let _ = self.0.jobs.send(IngestJob {
            material_id,
            extracted,
        });
        true
    }

    /// The worker took `material_id` from the queue.
    fn taken(&self, material_id: &str) {
        self.0
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(material_id);
    }

    /// Stores `body` as a new material of `classroom_id`, checks that its text can be
    /// extracted, records it and queues its ingestion. Nothing is kept if it fails.
    pub async fn upload(
        &self,
        classroom_id: &str,
        uploaded_by: &str,
        file_name: &str,
        body: impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
        now: i64,
    ) -> Result<Material, UploadError> {
        let result = self
            .store_upload(classroom_id, uploaded_by, file_name, body, now)
            .await;
        let metrics = &self.0.metrics;
        match &result {
            Ok(_) => {
                metrics.uploads_accepted.inc();
            }
            Err(error) => {
                let reason = match error {
                    UploadError::TooLarge { .. } => "too_large",
                    UploadError::Unsupported(_) => "unsupported",
                    UploadError::Unreadable(_) => "unreadable",
                    UploadError::Interrupted(_) => "interrupted",
                    UploadError::Busy => "busy",
                    UploadError::Storage(_)
                    | UploadError::Database(_)
                    | UploadError::Sandbox(_) => "internal",
                };
                metrics
                    .uploads_refused
                    .get_or_create(&vec![("reason", reason)])
                    .inc();
            }
        }
        result
    }

    /// [`Library::upload`] without the metrics.
    async fn store_upload(
        &self,
        classroom_id: &str,
        uploaded_by: &str,
        file_name: &str,
        body: impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
        now: i64,
    ) -> Result<Material, UploadError> {
        let limit = self.0.limits.max_upload_bytes;
        let mut body = Box::pin(body);
        let head = read_head(&mut body).await?;
        let format = lectern_library::sniff(&head, file_name).map_err(|error| match error {
            ExtractError::Unsupported { .. } => UploadError::Unsupported(error),
            other => UploadError::Unreadable(other),
        })?;

        let id = uuid::Uuid::new_v4().to_string();
        let key = object_key(classroom_id, &id)?;
        let limited = limit_size(stream::iter([Ok(head)]).chain(body), limit);
        let size = match self.0.store.put(&key, Box::pin(limited)).await {
            Ok(size) => size,
            Err(StorageError::Body(error)) if error.kind() == std::io::ErrorKind::FileTooLarge => {
                return Err(UploadError::TooLarge { limit });
            }
            Err(StorageError::Body(error)) => {
                return Err(UploadError::Interrupted(error.to_string()));
            }
            Err(other) => return Err(other.into()),
        };

        let material = Material {
            id,
            classroom_id: classroom_id.to_owned(),
            uploaded_by: uploaded_by.to_owned(),
            file_name: file_name.to_owned(),
            format: material_format(format),
            size_bytes: i64::try_from(size).unwrap_or(i64::MAX),
            object_key: key.as_str().to_owned(),
            status: MaterialStatus::Queued,
            progress: 0,
            error: None,
            sections: None,
            chunk_count: 0,
            created_at: now,
            updated_at: now,
        };
        match self.extract_and_record(&key, format, material).await {
            Ok((material, extracted)) => {
                self.0.feed.publish(&material).await;
                self.enqueue(material.id.clone(), Some(extracted));
                Ok(material)
            }
            Err(error) => {
                if let Err(cleanup) = self.0.store.delete(&key).await {
                    tracing::warn!(
                        error = &cleanup as &dyn std::error::Error,
                        key = key.as_str(),
                        "could not remove a refused upload"
                    );
                }
                Err(error)
            }
        }
    }

    /// Extracts the stored file's text (refusing unreadable files) and records `material`.
    async fn extract_and_record(
        &self,
        key: &ObjectKey,
        format: Format,
        mut material: Material,
    ) -> Result<(Material, Extracted), UploadError> {
        let extracted = match self.extract(key, format, Admission::Upload).await? {
            Ok(Ok(extracted)) => extracted,
            Ok(Err(unreadable)) => return Err(UploadError::Unreadable(unreadable)),
            Err(SandboxError::Busy) => return Err(UploadError::Busy),
            Err(error @ SandboxError::Spawn(_)) => return Err(UploadError::Sandbox(error)),
        };
        material.sections = i32::try_from(extracted.sections.len()).ok();
        self.0.materials.create(&material).await?;
        Ok((material, extracted))
    }

    /// Reads a stored file and extracts its text in a child process, within the
    /// extraction limits. The outer error is the store's; the middle one the sandbox's
    /// (busy, or it could not start); the inner one the file's.
    async fn extract(
        &self,
        key: &ObjectKey,
        format: Format,
        admission: Admission,
    ) -> Result<Result<Result<Extracted, ExtractError>, SandboxError>, StorageError> {
        let sandbox = &self.0.sandbox;
        // Wait for a slot before reading the bytes, so a line of uploads holds no memory.
        let slot = match admission {
            Admission::Upload => sandbox.admit().await,
            Admission::Background => sandbox.wait_for_slot().await,
        };
        let slot = match slot {
            Ok(slot) => slot,
            Err(busy) => return Ok(Err(busy)),
        };
        let bytes = self
            .0
            .store
            .get_bytes(key, self.0.limits.max_upload_bytes)
            .await?;
        Ok(sandbox.run(&slot, format, &bytes).await)
    }

    /// Streams a material's bytes.
    pub async fn open(&self, material: &Material) -> Result<ByteStream, StorageError> {
        self.0
            .store
            .get(&ObjectKey::new(&material.object_key)?)
            .await
    }

    /// Deletes a material: its row and chunks, its bytes, its vectors and its feed entry.
    pub async fn delete(&self, material_id: &str) -> Result<Option<Material>, UploadError> {
        let Some(material) = self.0.materials.delete(material_id).await? else {
            return Ok(None);
        };
        self.0
            .indexes
            .remove_material(&material.classroom_id, &material.id)
            .await;
        self.searchable_changed(&material.classroom_id);
        self.0
            .store
            .delete(&ObjectKey::new(&material.object_key)?)
            .await?;
        self.0
            .feed
            .remove(&material.classroom_id, &material.id)
            .await;
        Ok(Some(material))
    }

    /// The `k` passages of `classroom_id`'s ready materials (or of `material_ids` only)
    /// most similar in meaning to `query`.
    pub async fn search(
        &self,
        classroom_id: &str,
        query: &str,
        material_ids: Option<HashSet<String>>,
        k: usize,
    ) -> Result<Vec<SearchHit>, SearchError> {
        // Loading a prepared model takes about a second; a first-time download takes
        // minutes, and the caller is better told so than kept waiting.
        let embeddings = tokio::time::timeout(MODEL_WAIT, self.0.model.wait())
            .await
            .map_err(|_| {
                SearchError::ModelUnavailable(
                    "the embedding model is still being prepared; try again in a minute".into(),
                )
            })?
            .map_err(SearchError::ModelUnavailable)?;
        let query = embeddings
            .embed(vec![query.to_owned()])
            .await?
            .pop()
            .unwrap_or_default();
        let hits = self
            .0
            .indexes
            .search(classroom_id, query, material_ids, k)
            .await?;
        let mut results = Vec::with_capacity(hits.len());
        let mut names = std::collections::HashMap::new();
        for hit in hits {
            let ordinal = i32::try_from(hit.chunk_id).unwrap_or(i32::MAX);
            let Some(chunk) = self.0.materials.chunk(&hit.document_id, ordinal).await? else {
                continue; // deleted since the index was read
            };
            if !names.contains_key(&hit.document_id) {
                let name = self
                    .0
                    .materials
                    .get(&hit.document_id)
                    .await?
                    .map(|material| material.file_name);
                names.insert(hit.document_id.clone(), name);
            }
            let Some(Some(file_name)) = names.get(&hit.document_id) else {
                continue;
            };
            results.push(SearchHit {
                chunk,
                file_name: file_name.clone(),
                score: hit.score,
            });
        }
        Ok(results)
    }
}

/// Where a material's bytes live in the object store.
fn object_key(classroom_id: &str, material_id: &str) -> Result<ObjectKey, StorageError> {
    ObjectKey::new(&format!(
        "classrooms/{classroom_id}/materials/{material_id}"
    ))
}

fn material_format(format: Format) -> MaterialFormat {
    match format {
        Format::Pdf => MaterialFormat::Pdf,
        Format::Docx => MaterialFormat::Docx,
        Format::Markdown => MaterialFormat::Markdown,
        Format::Text => MaterialFormat::Text,
    }
}

/// The library format of a stored material.
pub fn library_format(format: MaterialFormat) -> Format {
    match format {
        MaterialFormat::Pdf => Format::Pdf,
        MaterialFormat::Docx => Format::Docx,
        MaterialFormat::Markdown => Format::Markdown,
        MaterialFormat::Text => Format::Text,
    }
}

/// Reads at least [`SNIFF_BYTES`] (or everything, if shorter) from the front of `body`.
async fn read_head<S>(body: &mut S) -> Result<Bytes, UploadError>
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Unpin,
{
    let mut head = BytesMut::new();
    while head.len() < SNIFF_BYTES {
        match body.next().await {
            Some(Ok(chunk)) => head.extend_from_slice(&chunk),
            Some(Err(error)) => return Err(UploadError::Interrupted(error.to_string())),
            None => break,
        }
    }
    Ok(head.freeze())
}

/// Passes `body` through, failing with [`std::io::ErrorKind::FileTooLarge`] as soon as it
/// exceeds `limit` bytes (so the store aborts the write and keeps nothing).
fn limit_size(
    body: impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    limit: u64,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let mut seen: u64 = 0;
    body.map(move |chunk| {
        let chunk = chunk?;
        seen = seen.saturating_add(chunk.len() as u64);
        if seen > limit {
            return Err(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                format!("upload exceeds {limit} bytes"),
            ));
        }
        Ok(chunk)
    })
}

/// Whether an extraction may be refused when the sandbox is busy.
#[derive(Debug, Clone, Copy)]
enum Admission {
    /// An upload: answered 503 when the line is full.
    Upload,
    /// Background re-ingestion: waits its turn.
    Background,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_size_limit_fails_the_stream_as_soon_as_it_is_crossed() {
        let chunks = (0..10).map(|_| Ok(Bytes::from_static(&[0; 100])));
        let limited: Vec<_> = limit_size(stream::iter(chunks), 350).collect().await;
        assert_eq!(limited.iter().filter(|chunk| chunk.is_ok()).count(), 3);
        let error = limited[3].as_ref().expect_err("fourth chunk crosses");
        assert_eq!(error.kind(), std::io::ErrorKind::FileTooLarge);
    }

    #[tokio::test]
    async fn the_head_holds_enough_bytes_to_sniff_or_the_whole_short_file() {
        let mut short = Box::pin(stream::iter([Ok(Bytes::from_static(b"hello"))]));
        assert_eq!(read_head(&mut short).await.expect("head"), "hello");
        let chunks = (0..5).map(|_| Ok(Bytes::from(vec![b'a'; 3000])));
        let mut long = Box::pin(stream::iter(chunks));
        let head = read_head(&mut long).await.expect("head");
        assert_eq!(head.len(), 9000, "whole chunks until at least 8 KiB");
        assert_eq!(long.count().await, 2, "the rest is left for the store");
    }
}
