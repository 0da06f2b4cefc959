//! The embedding model's life cycle: prepared and loaded in the background, so the server
//! is up (and realtime collaboration works) at once, and ingestion and search wait for it
//! or answer 503 with the reason.

use std::path::PathBuf;
use std::sync::Arc;

use lectern_ai::embed::{Embedder, EmbedderConfig, Embeddings};
use lectern_ai::models::{ModelsDir, prepare_embeddings};

use crate::lazy_model::LazyModel;

/// The embedding model, loaded on first use (or at start, see
/// [`EmbeddingModel::start_loading`]). Cheap to clone.
#[derive(Debug, Clone)]
pub struct EmbeddingModel(LazyModel<Embeddings>);

impl EmbeddingModel {
    /// The model in `models_dir`; when `prepare`, what is missing is downloaded first.
    pub fn new(models_dir: PathBuf, prepare: bool) -> Self {
        Self(LazyModel::new("embedding model", move || {
            load(&ModelsDir::new(models_dir.clone()), prepare)
        }))
    }

    /// Starts preparing and loading the model on a blocking thread, unless already
    /// started; otherwise the first upload or search does.
    pub fn start_loading(&self) {
        self.0.start_loading();
    }

    /// Waits until the model is ready or known to be unavailable, loading it if needed.
    pub async fn wait(&self) -> Result<Embeddings, Arc<str>> {
        self.0.wait().await
    }
}

/// Prepares (if asked) and loads the model; the error is a sentence for the operator.
fn load(dir: &ModelsDir, prepare: bool) -> Result<Embeddings, String> {
    let files = if prepare {
        let progress = |line: &str| tracing::info!(target: "lectern::models", "{line}");
        let prepared = prepare_embeddings(dir, &progress).map_err(|error| error.to_string())?;
        lectern_ai::runtime::init(&prepared.onnxruntime_library)
            .map_err(|error| error.to_string())?;
        prepared.files
    } else {
        lectern_ai::runtime::init(&dir.onnxruntime_library()).map_err(|error| {
            format!(
                "{error}; run `lectern prepare-models --models-dir {}` or start with \
                 --prepare-models true",
                dir.path().display()
            )
        })?;
        dir.embedding_files()
    };
    let embedder = Embedder::load(&files, EmbedderConfig::default()).map_err(|error| {
        format!(
            "loading the embedding model from {} failed: {error}",
            dir.path().display()
        )
    })?;
    Ok(Embeddings::new(embedder))
}
