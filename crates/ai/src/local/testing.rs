//! The local generator over the shared test models directory (feature `testing`).
//!
//! Builds on [`crate::testing`]: the same directory (`LECTERN_TEST_MODELS_DIR` or
//! `<workspace>/.cache/models`) and the same ONNX Runtime. Preparing the generator the first
//! time takes about a minute (PyPI downloads and the conversion); later runs find it ready.

use std::sync::OnceLock;

use super::{LocalBackend, LocalConfig, prepare_generator};
use crate::testing::{MODELS_DIR_ENV, models_dir, prepared};

/// The seed of the shared test backend, so sampled generations are reproducible.
pub const TEST_SEED: u64 = 0x1ec7e2;

/// A shared local backend (loaded once per process) with the seed [`TEST_SEED`].
///
/// # Panics
/// If the generator cannot be prepared or loaded, with the reason: tests that need the
/// model fail rather than skip.
pub fn local_backend() -> LocalBackend {
    static BACKEND: OnceLock<LocalBackend> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            // Loads ONNX Runtime from the shared directory (preparing it if needed).
            prepared();
            let dir = models_dir();
            let generator = prepare_generator(&dir, &|line| {
                eprintln!(
                    "lectern-ai test generator ({}): {line}",
                    dir.path().display()
                );
            })
            .unwrap_or_else(|error| {
                panic!(
                    "cannot prepare the local generator in {} (set {MODELS_DIR_ENV} to use \
                     another directory): {error}",
                    dir.path().display()
                )
            });
            LocalBackend::load(
                &generator.dir,
                LocalConfig {
                    seed: Some(TEST_SEED),
                },
            )
            .unwrap_or_else(|error| panic!("cannot load the local generator: {error}"))
        })
        .clone()
}
