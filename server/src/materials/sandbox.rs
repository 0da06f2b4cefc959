//! Untrusted files are parsed in a child process with hard limits.
//!
//! A hostile PDF can overflow a parser's stack (which aborts the whole process: no
//! `catch_unwind` catches it), make it allocate gigabytes, or loop inside one call where
//! no deadline is ever checked. None of that can be contained in a thread. So the server
//! runs each extraction in a child process of its own binary (`lectern extract-worker`,
//! hidden), which before it reads a byte of the file limits its own address space
//! (`RLIMIT_AS`), CPU time (`RLIMIT_CPU`), core dumps and file writes (both 0) and open
//! files, reads the file on stdin and writes the outcome on stdout in the
//! [`wire`](lectern_library::extract::wire) encoding. The parent:
//! - starts the child with an empty environment (no secrets) and pipes for stdio only:
//!   everything the server opens (Rust's std, tokio, sqlx, rustls) is close-on-exec, so
//!   the child inherits nothing else;
//! - reads at most `max_text_bytes` plus a little of its reply, waits at most the time
//!   budget plus a grace, and on any excess **kills** the child and reaps it (and
//!   `kill_on_drop` covers a cancelled request), so no process outlives its upload;
//! - maps every way the child can end to a typed [`ExtractError`], which the API answers
//!   with `422 unreadable_file`;
//! - lets at most `concurrency` children run at once (each may use up to the memory
//!   limit), with a short line of uploads waiting behind them; beyond it, or after waiting
//!   a whole time budget, an upload is refused with [`SandboxError::Busy`] (503) at once.

use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use lectern_library::extract::wire;
use lectern_library::{ExtractError, Extracted, Format, Limits};

use super::metrics::MaterialsMetrics;
use crate::config::{ExtractWorker, WorkerFormat};

/// The subcommand the child runs.
const SUBCOMMAND: &str = "extract-worker";

/// Time the child gets beyond the extraction budget to notice its own deadline and answer
/// before it is killed.
const GRACE: Duration = Duration::from_secs(2);

/// Bytes of the child's stderr kept for the log and for telling a crash's cause.
const STDERR_BYTES: u64 = 16 * 1024;

/// Bytes of reply allowed beyond `max_text_bytes` (the wire header).
const REPLY_SLACK: u64 = 64 * 1024;

/// Files the child may open beyond the ones it has (it needs none).
const CHILD_NOFILE: u64 = 16;

/// How the sandbox runs.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The `lectern` binary to run as the worker.
    pub worker: PathBuf,
    /// Bounds the library checks itself (pages, decompressed bytes, text, time).
    pub limits: Limits,
    /// The child's address-space limit, in bytes.
    pub memory_bytes: u64,
    /// Largest input, in bytes (the upload limit).
    pub max_input_bytes: u64,
    /// Children at once.
    pub concurrency: usize,
    /// Uploads that may wait for a child beyond `concurrency`.
    pub queue: usize,
}

/// Why an extraction did not even start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Every extraction slot is taken and the line behind them is full.
    #[error("the server is busy reading other files")]
    Busy,
    /// The worker process could not be started.
    #[error("starting the extraction process failed")]
    Spawn(#[source] std::io::Error),
}

/// The right to run one extraction process; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

/// Runs extractions in child processes, a bounded number at once.
#[derive(Debug)]
pub struct Sandbox {
    config: SandboxConfig,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    metrics: MaterialsMetrics,
}

impl Sandbox {
    /// A sandbox with `config.concurrency` slots (at least one).
    pub fn new(config: SandboxConfig, metrics: MaterialsMetrics) -> Self {
        let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
        Self {
            config,
            slots,
            waiting: AtomicUsize::new(0),
            metrics,
        }
    }

    /// A slot for an upload: now, or after waiting in a line of at most `queue` uploads
    /// for at most one time budget; otherwise [`SandboxError::Busy`].
    pub async fn admit(&self) -> Result<Slot, SandboxError> {
        if let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() {
            return Ok(Slot { _permit: slot });
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.config.queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(SandboxError::Busy);
        }
        let wait = self.config.limits.max_time + GRACE;
        let slot = tokio::time::timeout(wait, Arc::clone(&self.slots).acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        match slot {
            Ok(Ok(slot)) => Ok(Slot { _permit: slot }),
            Ok(Err(_)) | Err(_) => Err(SandboxError::Busy),
        }
    }

    /// A slot for background work, however long it takes.
    pub async fn wait_for_slot(&self) -> Result<Slot, SandboxError> {
        Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map(|permit| Slot { _permit: permit })
            .map_err(|_| SandboxError::Busy)
    }

    /// Extracts `bytes` in a child process (holding `slot`). The outer error is the
    /// sandbox's; the inner one the file's.
    pub async fn run(
        &self,
        _slot: &Slot,
        format: Format,
        bytes: &[u8],
    ) -> Result<Result<Extracted, ExtractError>, SandboxError> {
        let processes = &self.metrics.extraction_processes;
        processes.inc();
        let outcome = self.run_child(format, bytes).await;
        processes.dec();
        if let Ok(Err(error)) = &outcome {
            let killed = match error {
                ExtractError::Timeout(_) => Some("timeout"),
                ExtractError::OutOfMemory { .. } => Some("memory"),
                ExtractError::CpuTime(_) => Some("cpu"),
                ExtractError::Crashed(_) => Some("crash"),
                _ => None,
            };
            if let Some(reason) = killed {
                self.metrics
                    .extractions_killed
                    .get_or_create(&vec![("reason", reason)])
                    .inc();
            }
        }
        outcome
    }

    async fn run_child(
        &self,
        format: Format,
        bytes: &[u8],
    ) -> Result<Result<Extracted, ExtractError>, SandboxError> {
        let config = &self.config;
        let limits = &config.limits;
        let mut child = tokio::process::Command::new(&config.worker)
            .arg(SUBCOMMAND)
            .args(["--format", worker_format(format).as_str()])
            .args(["--memory-bytes", &config.memory_bytes.to_string()])
            .args(["--cpu-secs", &cpu_secs(limits.max_time).to_string()])
            .args(["--max-time-ms", &limits.max_time.as_millis().to_string()])
            .args(["--max-pages", &limits.max_pages.to_string()])
            .args([
                "--max-decompressed-bytes",
                &limits.max_decompressed_bytes.to_string(),
            ])
            .args(["--max-text-bytes", &limits.max_text_bytes.to_string()])
            .args(["--max-input-bytes", &config.max_input_bytes.to_string()])
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(SandboxError::Spawn)?;
        let (Some(mut stdin), Some(stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(SandboxError::Spawn(std::io::Error::other("missing pipes")));
        };
        let reply_cap = limits.max_text_bytes.saturating_add(REPLY_SLACK);

        let write = async {
            // The child may die before it read everything: its exit status says why.
            let _ = stdin.write_all(bytes).await;
            drop(stdin);
        };
        let read = async {
            let mut reply = Vec::new();
            let _ = stdout.take(reply_cap + 1).read_to_end(&mut reply).await;
            reply
        };
        let read_errors = async {
            let mut kept = Vec::new();
            let _ = (&mut stderr)
                .take(STDERR_BYTES)
                .read_to_end(&mut kept)
                .await;
            let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
            kept
        };
        let exchange = async { tokio::join!(write, read, read_errors) };
        let budget = limits.max_time + GRACE;
        let (reply, errors) = match tokio::time::timeout(budget, exchange).await {
            Ok(((), reply, errors)) => (reply, errors),
            Err(_) => {
                kill(&mut child).await;
                return Ok(Err(ExtractError::Timeout(limits.max_time)));
            }
        };
        if reply.len() as u64 > reply_cap {
            kill(&mut child).await;
            return Ok(Err(ExtractError::TooMuchText {
                limit_bytes: limits.max_text_bytes,
            }));
        }
        // Its output is closed, so it is exiting; bounded anyway.
        let status = match tokio::time::timeout(GRACE, child.wait()).await {
            Ok(Ok(status)) => status,
            Ok(Err(error)) => return Err(SandboxError::Spawn(error)),
            Err(_) => {
                kill(&mut child).await;
                return Ok(Err(ExtractError::Timeout(limits.max_time)));
            }
        };
        let errors = String::from_utf8_lossy(&errors);
        if status.success() {
            return Ok(wire::decode(&reply).unwrap_or_else(|error| {
                tracing::warn!(%error, stderr = %errors, "extraction process answered garbage");
                Err(ExtractError::Crashed("it answered garbage".to_owned()))
            }));
        }
        let error = failure(status, &errors, config, limits.max_time);
        tracing::info!(%status, stderr = %errors.trim(), %error, "extraction process failed");
        Ok(Err(error))
    }
}

/// Kills the child and reaps it, so nothing is left running or as a zombie.
async fn kill(child: &mut tokio::process::Child) {
    if let Err(error) = child.kill().await {
        tracing::warn!(%error, "could not kill the extraction process");
    }
}

/// What a child that did not exit successfully died of.
fn failure(
    status: std::process::ExitStatus,
    stderr: &str,
    config: &SandboxConfig,
    max_time: Duration,
) -> ExtractError {
    // Rust's runtime says why it aborts: an allocation refused by RLIMIT_AS, or a stack
    // overflow caught by the guard page.
    if [
        "memory allocation of",
        "Cannot allocate memory",
        "out of memory",
    ]
    .iter()
    .any(|sign| stderr.contains(sign))
    {
        return ExtractError::OutOfMemory {
            limit_bytes: config.memory_bytes,
        };
    }
    if stderr.contains("overflowed its stack") {
        return ExtractError::Crashed("stack overflow".to_owned());
    }
    match status.signal() {
        // SIGXCPU at the soft CPU limit, SIGKILL at the hard one (we only kill on time-out,
        // which returned earlier).
        Some(SIGXCPU | SIGKILL) => ExtractError::CpuTime(Duration::from_secs(cpu_secs(max_time))),
        Some(signal) => ExtractError::Crashed(signal_name(signal)),
        None => ExtractError::Crashed(format!(
            "it exited with status {}",
            status.code().unwrap_or(-1)
        )),
    }
}

const SIGKILL: i32 = 9;
const SIGXCPU: i32 = 24;

fn signal_name(signal: i32) -> String {
    let name = match signal {
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        11 => "SIGSEGV",
        _ => return format!("signal {signal}"),
    };
    format!("killed by {name}")
}

/// CPU seconds for a wall-time budget: the budget rounded up (a single-threaded child
/// cannot use more CPU than wall time, so this only stops a child the wall clock missed).
fn cpu_secs(max_time: Duration) -> u64 {
    max_time.as_secs() + 1
}

fn worker_format(format: Format) -> WorkerFormat {
    match format {
        Format::Pdf => WorkerFormat::Pdf,
        Format::Docx => WorkerFormat::Docx,
        Format::Markdown => WorkerFormat::Markdown,
        Format::Text => WorkerFormat::Text,
    }
}

/// `lectern extract-worker`: the child. Limits itself, reads the file on stdin, writes the
/// outcome on stdout; returns the exit code. Runs before any async runtime or extra thread
/// exists.
pub fn run_worker(options: &ExtractWorker) -> i32 {
    if let Err(error) = limit_self(options) {
        // Never parse without the limits.
        eprintln!("extract-worker: could not set resource limits: {error}");
        return 3;
    }
    let mut bytes = Vec::new();
    let read = std::io::Read::read_to_end(
        &mut std::io::Read::take(std::io::stdin().lock(), options.max_input_bytes + 1),
        &mut bytes,
    );
    let limits = Limits {
        max_decompressed_bytes: options.max_decompressed_bytes,
        max_pages: options.max_pages,
        max_time: Duration::from_millis(options.max_time_ms),
        max_text_bytes: options.max_text_bytes,
    };
    let outcome = if let Err(error) = read {
        if error.kind() != std::io::ErrorKind::OutOfMemory {
            eprintln!("extract-worker: reading the input failed: {error}");
            return 4;
        }
        Err(ExtractError::OutOfMemory {
            limit_bytes: options.memory_bytes,
        })
    } else if bytes.len() as u64 > options.max_input_bytes {
        Err(ExtractError::TooLarge(format!(
            "the file is larger than {} bytes",
            options.max_input_bytes
        )))
    } else {
        lectern_library::extract(library_format(options.format), &bytes, &limits)
    };
    drop(bytes);
    let reply = wire::encode(&outcome);
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = std::io::Write::write_all(&mut stdout, &reply)
        .and_then(|()| std::io::Write::flush(&mut stdout))
    {
        eprintln!("extract-worker: writing the outcome failed: {error}");
        return 5;
    }
    0
}

fn library_format(format: WorkerFormat) -> Format {
    match format {
        WorkerFormat::Pdf => Format::Pdf,
        WorkerFormat::Docx => Format::Docx,
        WorkerFormat::Markdown => Format::Markdown,
        WorkerFormat::Text => Format::Text,
    }
}

/// The child's own hard limits, set before it touches the input.
fn limit_self(options: &ExtractWorker) -> std::io::Result<()> {
    use rustix::process::{Resource, Rlimit, setrlimit};
    let limit = |resource, soft: u64, hard: u64| {
        setrlimit(
            resource,
            Rlimit {
                current: Some(soft),
                maximum: Some(hard),
            },
        )
        .map_err(std::io::Error::from)
    };
    limit(Resource::Core, 0, 0)?;
    limit(Resource::Fsize, 0, 0)?;
    limit(Resource::Nofile, CHILD_NOFILE, CHILD_NOFILE)?;
    // SIGXCPU at the soft limit; SIGKILL a second later if it is ignored.
    limit(Resource::Cpu, options.cpu_secs, options.cpu_secs + 1)?;
    limit(Resource::As, options.memory_bytes, options.memory_bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crashes_are_told_apart() {
        let config = SandboxConfig {
            worker: PathBuf::from("lectern"),
            limits: Limits::default(),
            memory_bytes: 1 << 30,
            max_input_bytes: 1 << 20,
            concurrency: 1,
            queue: 0,
        };
        let signalled = |signal: i32| std::process::ExitStatus::from_raw(signal);
        let budget = Duration::from_secs(5);
        let oom = failure(
            signalled(6),
            "memory allocation of 1048576 bytes failed\n",
            &config,
            budget,
        );
        assert!(matches!(oom, ExtractError::OutOfMemory { limit_bytes } if limit_bytes == 1 << 30));
        let overflow = failure(
            signalled(6),
            "\nthread 'main' has overflowed its stack\nfatal runtime error: stack overflow\n",
            &config,
            budget,
        );
        assert!(matches!(&overflow, ExtractError::Crashed(why) if why == "stack overflow"));
        assert!(matches!(
            failure(signalled(SIGXCPU), "", &config, budget),
            ExtractError::CpuTime(_)
        ));
        assert!(matches!(
            failure(signalled(11), "", &config, budget),
            ExtractError::Crashed(why) if why.contains("SIGSEGV")
        ));
        assert!(matches!(
            failure(std::process::ExitStatus::from_raw(3 << 8), "", &config, budget),
            ExtractError::Crashed(why) if why.contains("status 3")
        ));
    }
}
