//! Helpers for integration tests (this crate's and the server's), behind the `testing`
//! feature: one prepared models directory shared by every test process.
//!
//! The directory is `LECTERN_TEST_MODELS_DIR` if set, else `<workspace>/.cache/models`. The
//! test script prepares it before the tests run; if it is missing, the first test prepares
//! it (others wait on the preparation lock). Failure panics with the reason: a test that
//! needs the model never skips silently.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::embed::{Embedder, EmbedderConfig, Embeddings};
use crate::models::{self, ModelsDir, PreparedEmbeddings};
use crate::runtime;

/// The environment variable naming a models directory to use instead of the default.
pub const MODELS_DIR_ENV: &str = "LECTERN_TEST_MODELS_DIR";

/// The shared test models directory (not necessarily prepared yet).
pub fn models_dir() -> ModelsDir {
    match std::env::var_os(MODELS_DIR_ENV) {
        Some(dir) if !dir.is_empty() => ModelsDir::new(PathBuf::from(dir)),
        _ => ModelsDir::new(workspace_root().join(".cache").join("models")),
    }
}

/// The workspace root, two levels above this crate's manifest.
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .map_or_else(|| manifest.to_path_buf(), Path::to_path_buf)
}

/// Prepares the shared models directory (once per process) and loads ONNX Runtime from it.
///
/// # Panics
/// If preparation or loading fails, with the reason and what to do about it.
pub fn prepared() -> &'static PreparedEmbeddings {
    static PREPARED: OnceLock<PreparedEmbeddings> = OnceLock::new();
    PREPARED.get_or_init(|| {
        let dir = models_dir();
        let prepared = models::prepare_embeddings(&dir, &|line| {
            eprintln!("lectern-ai test models ({}): {line}", dir.path().display());
        })
        .unwrap_or_else(|error| {
            panic!(
                "cannot prepare the test models in {} (set {MODELS_DIR_ENV} to use another \
                 directory): {error}",
                dir.path().display()
            )
        });
        runtime::init(&prepared.onnxruntime_library)
            .unwrap_or_else(|error| panic!("cannot load ONNX Runtime for the tests: {error}"));
        prepared
    })
}

/// A shared embedder over the prepared test models, with the default configuration.
///
/// # Panics
/// If the models cannot be prepared or loaded.
pub fn embedder() -> Embeddings {
    static EMBEDDINGS: OnceLock<Embeddings> = OnceLock::new();
    EMBEDDINGS
        .get_or_init(|| {
            let prepared = prepared();
            let embedder = Embedder::load(&prepared.files, EmbedderConfig::default())
                .unwrap_or_else(|error| panic!("cannot load the test embedding model: {error}"));
            Embeddings::new(embedder)
        })
        .clone()
}
