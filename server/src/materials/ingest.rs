//! The ingestion worker: takes queued materials one at a time and turns them into
//! searchable chunks, recording each step in the database and the classroom's feed.
//!
//! One worker per node, one material at a time: embedding keeps a core busy, and a
//! second material in parallel would only slow the first (and realtime rooms) down.
//! A failure fails that material, with a reason its uploader can act on, never the worker.
//!
//! Across nodes, a material is ingested under its lease (`ingest:{material_id}`), renewed
//! while the work goes on: a node that does not get the lease skips the material (another
//! node is on it), and a node that gets it for a material already finished (another node
//! just did it) skips it too. So each material is ingested once, and a dead node's
//! material is taken over once its lease expires.

use std::time::Duration;

use lectern_db::materials::{Material, MaterialChunk, MaterialStatus};
use lectern_library::{ChunkConfig, ExtractError, Extracted};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::{Admission, IngestJob, Library, library_format};
use crate::auth::now_secs;
use crate::events::Event;

/// Passages embedded per model call; also how often progress is reported.
const EMBED_BATCH: usize = 32;

/// How long an ingestion lease lasts unless renewed: how long a dead node's material
/// waits before another node may take it over.
const INGEST_LEASE: Duration = Duration::from_secs(60);

/// How often the worker renews its lease while it ingests (well within the lease).
const INGEST_LEASE_RENEWAL: Duration = Duration::from_secs(20);

/// Why one material's ingestion stopped.
#[derive(Debug, thiserror::Error)]
enum IngestError {
    /// The material was deleted while it was being ingested; nothing to report.
    #[error("the material was deleted")]
    Gone,
    /// The file's text could not be read (only after a restart; uploads check it first).
    #[error(transparent)]
    Unreadable(#[from] ExtractError),
    /// The embedding model is unavailable.
    #[error("the embedding model is unavailable: {0}")]
    ModelUnavailable(String),
    /// Something on the server failed; logged, and the uploader told to try again.
    #[error("{0}")]
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl IngestError {
    fn internal(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(error))
    }

    /// What the uploader is told.
    fn reason(&self) -> String {
        match self {
            Self::Internal(_) => {
                "the server could not process the file; delete it and upload it again".to_owned()
            }
            other => other.to_string(),
        }
    }
}

fn now() -> i64 {
    i64::try_from(now_secs()).unwrap_or(i64::MAX)
}

/// Runs until `shutdown`: ingests each queued material in turn.
pub(super) async fn run(
    library: Library,
    mut queue: mpsc::UnboundedReceiver<IngestJob>,
    shutdown: CancellationToken,
) {
    loop {
        let job = tokio::select! {
            () = shutdown.cancelled() => return,
            job = queue.recv() => match job {
                Some(job) => job,
                None => return,
            },
        };
        library.taken(&job.material_id);
        let span = tracing::info_span!("ingest", material_id = %job.material_id);
        let lease = format!("ingest:{}", job.material_id);
        if !take_lease(&library, &lease, &job.material_id)
            .instrument(span.clone())
            .await
        {
            library
                .0
                .metrics
                .ingestions
                .get_or_create(&vec![("outcome", "skipped")])
                .inc();
            continue;
        }
        // A material interrupted by shutdown stays in its unfinished state in the
        // database and is picked up again at the next start (here or on another node).
        let stopping = tokio::select! {
            () = shutdown.cancelled() => true,
            () = ingest(&library, job).instrument(span.clone()) => false,
            () = keep_lease(&library, &lease) => {
                span.in_scope(|| {
                    tracing::warn!("lost the ingestion lease; another node took over");
                });
                false
            }
        };
        if let Err(error) = library.0.leases.release(&lease, &library.0.node).await {
            // It expires by itself; until then no other node takes the material over.
            span.in_scope(|| {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "could not release the ingestion lease"
                );
            });
        }
        if stopping {
            return;
        }
    }
}

/// Takes `material_id`'s ingestion lease; false (lease left alone or given back) when
/// another node is ingesting it, it is finished or gone, or the database failed (the
/// periodic re-scan tries again).
async fn take_lease(library: &Library, lease: &str, material_id: &str) -> bool {
    let leases = &library.0.leases;
    match leases
        .try_acquire(lease, &library.0.node, INGEST_LEASE)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::debug!("another node is ingesting it");
            return false;
        }
        Err(error) => {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "could not take the ingestion lease"
            );
            return false;
        }
    }
    // The lease may be free because another node has just finished the material.
    let unfinished = match library.0.materials.get(material_id).await {
        Ok(material) => material.is_some_and(|material| !material.status.is_final()),
        Err(error) => {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "could not read the material"
            );
            false
        }
    };
    if !unfinished {
        tracing::debug!("already finished or deleted");
        if let Err(error) = leases.release(lease, &library.0.node).await {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "could not release the ingestion lease"
            );
        }
    }
    unfinished
}

/// Renews `lease` every [`INGEST_LEASE_RENEWAL`]; returns only once another node holds
/// it (this node's renewals failed for longer than the lease lasts).
async fn keep_lease(library: &Library, lease: &str) {
    loop {
        tokio::time::sleep(INGEST_LEASE_RENEWAL).await;
        match library
            .0
            .leases
            .renew(lease, &library.0.node, INGEST_LEASE)
            .await
        {
            Ok(true) => {}
            Ok(false) => return,
            Err(error) => tracing::warn!(
                error = &error as &dyn std::error::Error,
                "could not renew the ingestion lease"
            ),
        }
    }
}

async fn ingest(library: &Library, job: IngestJob) {
    let material_id = job.material_id.clone();
    let started = std::time::Instant::now();
    let metrics = &library.0.metrics;
    match steps(library, job).await {
        Ok(()) => {
            metrics
                .ingest_seconds
                .observe(started.elapsed().as_secs_f64());
            metrics
                .ingestions
                .get_or_create(&vec![("outcome", "ready")])
                .inc();
        }
        Err(IngestError::Gone) => {}
        Err(error) => {
            metrics
                .ingestions
                .get_or_create(&vec![("outcome", "failed")])
                .inc();
            if let IngestError::Internal(source) = &error {
                tracing::error!(
                    error = &**source as &dyn std::error::Error,
                    "ingestion failed"
                );
            } else {
                tracing::info!(reason = %error, "material refused");
            }
            let reason = error.reason();
            let updated = library
                .0
                .materials
                .set_status(
                    &material_id,
                    MaterialStatus::Failed,
                    0,
                    Some(&reason),
                    None,
                    now(),
                )
                .await;
            match updated {
                Ok(true) => {
                    publish(library, &material_id).await;
                    announce_failure(library, &material_id, reason).await;
                }
                Ok(false) => {}
                Err(error) => tracing::error!(
                    error = &error as &dyn std::error::Error,
                    "could not record the failure"
                ),
            }
        }
    }
}

/// Records a new state and shows it in the feed; `Gone` if the material was deleted.
async fn set_status(
    library: &Library,
    material_id: &str,
    status: MaterialStatus,
    progress: i32,
    sections: Option<i32>,
) -> Result<(), IngestError> {
    let exists = library
        .0
        .materials
        .set_status(material_id, status, progress, None, sections, now())
        .await
        .map_err(IngestError::internal)?;
    if !exists {
        return Err(IngestError::Gone);
    }
    publish(library, material_id).await;
    Ok(())
}

async fn publish(library: &Library, material_id: &str) {
    match library.0.materials.get(material_id).await {
        Ok(Some(material)) => library.0.feed.publish(&material).await,
        Ok(None) => {}
        Err(error) => tracing::warn!(
            error = &error as &dyn std::error::Error,
            "could not read the material for the feed"
        ),
    }
}

async fn material(library: &Library, material_id: &str) -> Result<Material, IngestError> {
    library
        .0
        .materials
        .get(material_id)
        .await
        .map_err(IngestError::internal)?
        .ok_or(IngestError::Gone)
}

async fn steps(library: &Library, job: IngestJob) -> Result<(), IngestError> {
    let material = material(library, &job.material_id).await?;
    set_status(library, &material.id, MaterialStatus::Extracting, 0, None).await?;
    let extracted = match job.extracted {
        Some(extracted) => extracted,
        None => extract_again(library, &material).await?,
    };

    let chunks = tokio::task::spawn_blocking(move || {
        lectern_library::chunk(&extracted, &ChunkConfig::default())
    })
    .await
    .map_err(IngestError::internal)?;
    if chunks.is_empty() {
        return Err(ExtractError::NoText.into());
    }
    set_status(library, &material.id, MaterialStatus::Embedding, 0, None).await?;

    let embeddings = library
        .0
        .model
        .wait()
        .await
        .map_err(|reason| IngestError::ModelUnavailable(reason.to_string()))?;
    let total = chunks.len();
    let mut embedded = Vec::with_capacity(total);
    for batch in chunks.chunks(EMBED_BATCH) {
        let texts = batch.iter().map(|chunk| chunk.text.clone()).collect();
        let vectors = embeddings
            .embed(texts)
            .await
            .map_err(IngestError::internal)?;
        for (chunk, vector) in batch.iter().zip(vectors) {
            let stored = MaterialChunk {
                material_id: material.id.clone(),
                ordinal: i32::try_from(chunk.ordinal).unwrap_or(i32::MAX),
                page: chunk.page.and_then(|page| i32::try_from(page).ok()),
                heading: chunk.heading.clone(),
                text: chunk.text.clone(),
                line_start: chunk.lines.and_then(|(first, _)| i32::try_from(first).ok()),
                line_end: chunk.lines.and_then(|(_, last)| i32::try_from(last).ok()),
                overlap_chars: i32::try_from(chunk.overlap_chars).ok(),
            };
            embedded.push((stored, vector));
        }
        if embedded.len() < total {
            let progress = i32::try_from(embedded.len() * 100 / total).unwrap_or(99);
            set_status(
                library,
                &material.id,
                MaterialStatus::Embedding,
                progress,
                None,
            )
            .await?;
        }
    }

    let finished = library
        .0
        .materials
        .finish(&material.id, &embedded, now())
        .await
        .map_err(IngestError::internal)?;
    if !finished {
        return Err(IngestError::Gone);
    }
    let vectors: Vec<_> = embedded
        .into_iter()
        .map(|(chunk, vector)| (chunk.ordinal, vector))
        .collect();
    library
        .0
        .indexes
        .add_material(&material.classroom_id, &material.id, &vectors)
        .await;
    library.searchable_changed(&material.classroom_id);
    publish(library, &material.id).await;
    tracing::info!(chunks = total, "material ready");
    library
        .0
        .events
        .emit(Event::MaterialReady {
            classroom_id: material.classroom_id,
            material_id: material.id,
            file_name: material.file_name,
            uploaded_by: material.uploaded_by,
        })
        .await;
    Ok(())
}

/// Emits `material.failed` for a material whose failure was just recorded.
async fn announce_failure(library: &Library, material_id: &str, reason: String) {
    match library.0.materials.get(material_id).await {
        Ok(Some(material)) => {
            library
                .0
                .events
                .emit(Event::MaterialFailed {
                    classroom_id: material.classroom_id,
                    material_id: material.id,
                    file_name: material.file_name,
                    uploaded_by: material.uploaded_by,
                    reason,
                })
                .await;
        }
        Ok(None) => {}
        Err(error) => tracing::warn!(
            error = &error as &dyn std::error::Error,
            "could not read the failed material for its event"
        ),
    }
}

/// After a restart the extracted text is gone: read the stored file again.
async fn extract_again(library: &Library, material: &Material) -> Result<Extracted, IngestError> {
    let key =
        lectern_storage::ObjectKey::new(&material.object_key).map_err(IngestError::internal)?;
    // The same sandbox as uploads; waits for a slot rather than failing when busy.
    let extracted = library
        .extract(&key, library_format(material.format), Admission::Background)
        .await
        .map_err(IngestError::internal)?
        .map_err(IngestError::internal)??;
    Ok(extracted)
}
