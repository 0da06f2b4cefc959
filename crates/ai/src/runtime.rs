//! Loading the ONNX Runtime shared library (once per process).
//!
//! `ort` is built with `load-dynamic`: nothing links against ONNX Runtime at build time (its
//! default download of prebuilt binaries cannot work offline), so the library is opened with
//! `dlopen` at start-up from a file the caller names, normally the one
//! [`prepare_embeddings`](crate::models::prepare_embeddings) installed.
//!
//! ONNX Runtime allows one library and one environment per process, so [`init`] records the
//! path it loaded and the environment it built. A second call with the same file is a no-op;
//! a call naming a *different* file is refused with [`RuntimeError::AlreadyLoaded`] rather
//! than ignored, because `ort` would otherwise keep the first library silently and a caller
//! that meant to switch versions would never find out.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use ort::environment::Environment;

/// The ONNX Runtime version the `ort` binding is built against (its `api-31` feature);
/// older libraries are refused at load time.
pub const ONNXRUNTIME_VERSION: &str = "1.31.1";

/// Why the runtime could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The library file does not exist.
    #[error(
        "ONNX Runtime library not found at {}: prepare the models first (it comes from the \
         `onnxruntime=={ONNXRUNTIME_VERSION}` wheel on PyPI)",
        .0.display()
    )]
    Missing(PathBuf),
    /// The file exists but is an ONNX Runtime older than the binding needs.
    #[error(
        "{} is ONNX Runtime {found}, but Lectern needs {ONNXRUNTIME_VERSION} or newer",
        path.display()
    )]
    Version {
        /// The library that was refused.
        path: PathBuf,
        /// The version it reported.
        found: String,
    },
    /// The file could not be opened as an ONNX Runtime library.
    #[error("could not load ONNX Runtime")]
    Load(#[source] ort::LoadDynamicError),
    /// A different library was loaded earlier in this process; ONNX Runtime cannot be
    /// unloaded or loaded twice.
    #[error(
        "ONNX Runtime is already loaded from {}; cannot also load {}",
        loaded.display(),
        requested.display()
    )]
    AlreadyLoaded {
        /// The library in use.
        loaded: PathBuf,
        /// The library this call asked for.
        requested: PathBuf,
    },
    /// [`init`] has not succeeded yet in this process.
    #[error("ONNX Runtime is not initialised: call lectern_ai::runtime::init first")]
    NotInitialized,
    /// Creating the process-wide ONNX Runtime environment failed.
    #[error("could not create the ONNX Runtime environment")]
    Environment(#[source] ort::Error),
}

/// What [`init`] loaded.
struct Loaded {
    /// The canonical path of the library, to recognise repeated calls.
    path: PathBuf,
    /// The one environment of the process; sessions are built from it. Kept here for the
    /// life of the process because `ort` refuses to build a second one even after the first
    /// is dropped.
    environment: Environment,
}

/// A std `Mutex` (not a `OnceLock`) so that a failed load can be retried with another path
/// and the check-then-load sequence is serialised across threads.
static LOADED: Mutex<Option<Loaded>> = Mutex::new(None);

/// Loads ONNX Runtime from `library` (e.g. `…/libonnxruntime.so.1.31.1`) and creates the
/// process-wide environment.
///
/// Idempotent: calling it again with the same file (after symlinks are resolved) returns
/// `Ok` without doing anything. Calling it with a different file fails with
/// [`RuntimeError::AlreadyLoaded`]. Blocking (it opens a ~30 MB library); call it at start-up
/// or from a blocking thread.
pub fn init(library: &Path) -> Result<(), RuntimeError> {
    if !library.is_file() {
        return Err(RuntimeError::Missing(library.to_path_buf()));
    }
    // `is_file` succeeded, so canonicalisation can only fail on a race; keep the given path
    // then.
    let path = library
        .canonicalize()
        .unwrap_or_else(|_| library.to_path_buf());
    let mut loaded = LOADED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(current) = loaded.as_ref() {
        return if current.path == path {
            Ok(())
        } else {
            Err(RuntimeError::AlreadyLoaded {
                loaded: current.path.clone(),
                requested: path,
            })
        };
    }
    let builder = ort::init_from(&path).map_err(|error| match error {
        ort::LoadDynamicError::BadVersion { version_str, path } => RuntimeError::Version {
            path,
            found: version_str,
        },
        other => RuntimeError::Load(other),
    })?;
    let environment = builder
        .with_name("lectern")
        .build()
        .map_err(RuntimeError::Environment)?;
    tracing::info!(library = %path.display(), "loaded ONNX Runtime");
    *loaded = Some(Loaded { path, environment });
    Ok(())
}

/// The library [`init`] loaded, if any.
pub fn loaded_library() -> Option<PathBuf> {
    LOADED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .map(|loaded| loaded.path.clone())
}

/// The process-wide environment sessions are built from (a cheap clone of a shared handle).
pub fn environment() -> Result<Environment, RuntimeError> {
    LOADED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .map(|loaded| loaded.environment.clone())
        .ok_or(RuntimeError::NotInitialized)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_is_reported_with_its_path() {
        let error = init(Path::new("/nonexistent/libonnxruntime.so.1.31.1"))
            .expect_err("a missing file cannot load");
        assert!(matches!(error, RuntimeError::Missing(_)), "{error:?}");
        assert!(
            error
                .to_string()
                .contains("/nonexistent/libonnxruntime.so.1.31.1")
        );
    }

    #[test]
    fn a_file_that_is_not_a_library_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let fake = dir.path().join("libonnxruntime.so");
        std::fs::write(&fake, b"not a shared object").expect("write");
        let error = init(&fake).expect_err("garbage cannot load");
        assert!(matches!(error, RuntimeError::Load(_)), "{error:?}");
    }
}
