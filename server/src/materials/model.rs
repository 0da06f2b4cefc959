//! The embedding model's life cycle: prepared and loaded in the background, so the server
//! is up (and realtime collaboration works) at once, and ingestion and search wait for it
//! or answer 503 with the reason.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

use lectern_ai::embed::{Embedder, EmbedderConfig, Embeddings};
use lectern_ai::models::{ModelsDir, prepare_embeddings};

/// Where the embedding model is.
#[derive(Debug, Clone)]
pub enum ModelState {
    /// Nobody needed it yet.
    Idle,
    /// Being prepared or loaded.
    Preparing,
    /// Loaded and usable.
    Ready(Embeddings),
    /// Cannot be used; the text says why and how to fix it.
    Unavailable(Arc<str>),
}

/// A handle on the embedding model, loaded on first use (or at start, see
/// [`EmbeddingModel::start_loading`]). Cheap to clone.
#[derive(Debug, Clone)]
pub struct EmbeddingModel(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    models_dir: PathBuf,
    prepare: bool,
    started: AtomicBool,
    state: watch::Sender<ModelState>,
}

impl EmbeddingModel {
    /// The model in `models_dir`; when `prepare`, what is missing is downloaded first.
    pub fn new(models_dir: PathBuf, prepare: bool) -> Self {
        Self(Arc::new(Inner {
            models_dir,
            prepare,
            started: AtomicBool::new(false),
            state: watch::Sender::new(ModelState::Idle),
        }))
    }

    /// Starts preparing and loading the model on a blocking thread, unless already
    /// started. `lectern serve` calls this at start so a first-time download begins (and
    /// shows its progress) at once; otherwise the first upload or search does.
    pub fn start_loading(&self) {
        if self.0.started.swap(true, Ordering::SeqCst) {
            return;
        }
        self.0.state.send_replace(ModelState::Preparing);
        let inner = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || {
            let next = match load(&ModelsDir::new(inner.models_dir.clone()), inner.prepare) {
                Ok(embeddings) => {
                    tracing::info!("embedding model ready");
                    ModelState::Ready(embeddings)
                }
                Err(reason) => {
                    tracing::warn!(
                        %reason,
                        "embedding model unavailable: uploads are kept but not searchable"
                    );
                    ModelState::Unavailable(reason.into())
                }
            };
            inner.state.send_replace(next);
        });
    }

    /// The state right now.
    pub fn current(&self) -> ModelState {
        self.0.state.borrow().clone()
    }

    /// Waits until the model is ready or known to be unavailable, loading it if needed.
    pub async fn wait(&self) -> Result<Embeddings, Arc<str>> {
        self.start_loading();
        let mut state = self.0.state.subscribe();
        let settled = state
            .wait_for(|state| matches!(state, ModelState::Ready(_) | ModelState::Unavailable(_)))
            .await;
        match settled.map(|state| state.clone()) {
            Ok(ModelState::Ready(embeddings)) => Ok(embeddings),
            Ok(ModelState::Unavailable(reason)) => Err(reason),
            Ok(ModelState::Idle | ModelState::Preparing) | Err(_) => {
                Err("the embedding model's loader stopped before it finished".into())
            }
        }
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
