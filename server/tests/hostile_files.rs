//! Hostile uploads against extraction in child processes (issue 10, items 2 and 3).
//!
//! The first test runs the real `lectern` binary as its own process, so its peak memory
//! (`VmHWM`) and its children can be read from `/proc`. Set `LECTERN_HOSTILE_FILES_BIN` to
//! run it against another build (e.g. the server before the sandbox: it dies on the first
//! file). The others run the server in-process with a stand-in worker script, to drive each
//! way a child can end (hanging, crashing, out of memory) and the concurrency bound.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt as _;

use lectern_library::testing as fixtures;

use crate::api::{Api, code, sqlite};
use crate::materials::{class, upload};

/// The hostile PDFs, each of which once crashed the server, spun a thread forever or took
/// gigabytes.
fn hostile_pdfs() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("self-drawing.pdf", fixtures::pdf_self_drawing_xobject()),
        (
            "drawing-each-other.pdf",
            fixtures::pdf_xobjects_drawing_each_other(),
        ),
        ("parent-cycle.pdf", fixtures::pdf_parent_cycle()),
        ("flate-bomb.pdf", fixtures::pdf_flate_bomb()),
        ("many-streams.pdf", fixtures::pdf_many_flate_streams()),
    ]
}

/// Peak RSS the spawned server may reach while refusing every hostile file (it was 2.6 GiB
/// for one flate bomb, 6.3 GiB for three at once, before extraction moved out of process).
const SERVER_PEAK_RSS: u64 = 512 << 20;

/// A `lectern serve` process on an ephemeral port, killed when dropped.
struct Spawned {
    child: tokio::process::Child,
    address: String,
    data_dir: tempfile::TempDir,
    client: reqwest::Client,
}

impl Spawned {
    async fn start() -> Self {
        let binary = std::env::var_os("LECTERN_HOSTILE_FILES_BIN").map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_lectern")),
            PathBuf::from,
        );
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut child = tokio::process::Command::new(binary)
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(["--prepare-models", "false", "--ai-backend", "off"])
            .arg("--data-dir")
            .arg(data_dir.path())
            .env("LECTERN_REGISTRATION", "open")
            .env("LECTERN_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn lectern");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let address = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.expect("read log") {
                let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if entry["fields"]["message"] == "lectern listening" {
                    return entry["fields"]["address"]
                        .as_str()
                        .expect("address")
                        .to_owned();
                }
            }
            panic!("the server exited before listening");
        })
        .await
        .expect("the server listens within a minute");
        // Keep draining its log so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            child,
            address,
            data_dir,
            client: crate::support::http_client(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("server running")
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        let mut request = self.client.post(self.url(path)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request (did the server die?)");
        (
            response.status(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    async fn upload(
        &self,
        classroom: &str,
        token: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> (StatusCode, Value) {
        let form = Form::new().part("file", Part::bytes(bytes).file_name(name.to_owned()));
        let response = self
            .client
            .post(self.url(&format!("/api/v1/classrooms/{classroom}/materials")))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
            .unwrap_or_else(|error| panic!("{name}: no answer (did the server die?): {error}"));
        (
            response.status(),
            response.json().await.unwrap_or(Value::Null),
        )
    }
}

/// `VmHWM` (peak resident memory) of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .expect("VmHWM");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|kib| kib.parse().ok())
        .expect("kB");
    kib * 1024
}

/// Processes whose parent is `pid` (zombies included: they are left behind too).
fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // After the `(comm)` field: state, then the parent's pid.
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<u32>().ok());
        if parent == Some(pid) {
            found.push(child);
        }
    }
    found
}

/// Polls until `pid` has no children (they are reaped as each upload is answered, so this
/// returns at once unless something leaked).
async fn no_children_left(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = children(pid);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "children left behind: {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn stored_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                stored_files(&path)
            } else {
                1
            }
        })
        .sum()
}

#[tokio::test]
async fn hostile_pdfs_are_refused_and_the_server_stays_up_small_and_childless() {
    let server = Spawned::start().await;
    let (status, body) = server
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": "t@example.edu", "display_name": "T", "password": "correct horse", "role": "faculty"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["access_token"].as_str().expect("token").to_owned();
    let (status, body) = server
        .post(
            "/api/v1/classrooms",
            Some(&token),
            json!({"name": "Physics"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let classroom = body["id"].as_str().expect("id").to_owned();

    for (name, bytes) in hostile_pdfs() {
        let (status, body) = server.upload(&classroom, &token, name, bytes).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNPROCESSABLE_ENTITY, "unreadable_file"),
            "{name}: {body}"
        );
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{name}: a reason for the teacher");
    }

    // Three bombs at once.
    let bombs = (0..3).map(|i| {
        server.upload(
            &classroom,
            &token,
            ["a.pdf", "b.pdf", "c.pdf"][i],
            fixtures::pdf_flate_bomb(),
        )
    });
    for (status, body) in futures_util::future::join_all(bombs).await {
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }

    // Still serving, and still accepting honest files.
    let health = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);
    let (status, body) = server
        .upload(
            &classroom,
            &token,
            "fine.pdf",
            fixtures::pdf(&["Still here."]),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let objects = server.data_dir.path().join("objects");
    assert_eq!(stored_files(&objects), 1, "refused uploads leave no bytes");

    let peak = peak_rss(server.pid());
    assert!(peak < SERVER_PEAK_RSS, "server peak RSS {} MiB", peak >> 20);
    no_children_left(server.pid()).await;
}

/// A stand-in worker: a shell script in a temporary directory.
struct Script {
    dir: tempfile::TempDir,
}

impl Script {
    fn new(body: &str) -> Self {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("worker");
        let pid_file = dir.path().join("pid");
        let text = format!("#!/bin/sh\necho $$ > '{}'\n{body}\n", pid_file.display());
        std::fs::write(&path, text).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        Self { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("worker")
    }

    /// The pid of the last run, once it started.
    async fn started(&self) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("pid"))
                && let Ok(pid) = pid.trim().parse()
            {
                return pid;
            }
            assert!(Instant::now() < deadline, "the worker never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn server_with_worker(script: &Script, adjust: impl FnOnce(&mut lectern::Config)) -> Api {
    let worker = script.path();
    sqlite(move |config| {
        config.extract_worker = Some(worker);
        adjust(config);
    })
    .await
}

async fn metrics(api: &Api) -> String {
    api.client()
        .get(api.server().http("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

fn gone(pid: u32) -> bool {
    // A zombie still has a /proc entry: gone means reaped.
    !Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn a_worker_that_hangs_is_killed_at_the_time_limit_and_reaped() {
    let script = Script::new("exec sleep 600");
    let api = server_with_worker(&script, |config| config.extract_timeout_secs = 1).await;
    let class = class(&api).await;
    let (status, body) = upload(
        &api,
        &class.id,
        &class.teacher.access,
        "notes.txt",
        b"Some notes.".to_vec(),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "unreadable_file"),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("too long"),
        "{body}"
    );
    let pid = script.started().await;
    assert!(gone(pid), "the worker {pid} was killed and reaped");
    let metrics = metrics(&api).await;
    for line in [
        "lectern_materials_extractions_killed_total{reason=\"timeout\"} 1",
        "lectern_materials_extraction_processes 0",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    api.stop().await;
}

#[tokio::test]
async fn workers_killed_by_a_signal_are_a_clear_422() {
    let cases = [
        (
            "echo \"thread 'main' has overflowed its stack\" >&2\nkill -ABRT $$",
            "stack overflow",
        ),
        ("kill -SEGV $$", "SIGSEGV"),
        ("exit 7", "status 7"),
        ("printf 'garbage'", "garbage"),
    ];
    for (body, expected) in cases {
        let script = Script::new(body);
        let api = server_with_worker(&script, |_| {}).await;
        let class = class(&api).await;
        let (status, reply) = upload(
            &api,
            &class.id,
            &class.teacher.access,
            "notes.md",
            b"# Notes".to_vec(),
        )
        .await;
        assert_eq!(
            (status, code(&reply)),
            (StatusCode::UNPROCESSABLE_ENTITY, "unreadable_file"),
            "{expected}: {reply}"
        );
        let message = reply["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{expected}: {message}");
        let (_, listed) = api
            .get(
                &format!("/classrooms/{}/materials", class.id),
                Some(&class.teacher.access),
            )
            .await;
        assert_eq!(listed, json!([]), "no record of a refused file");
        api.stop().await;
    }
}

#[tokio::test]
async fn a_file_that_needs_more_memory_than_the_limit_is_refused() {
    let api = sqlite(|config| config.extract_memory_mib = 1).await;
    let class = class(&api).await;
    let (status, body) = upload(
        &api,
        &class.id,
        &class.teacher.access,
        "big.txt",
        "All work and no play. ".repeat(200_000).into_bytes(),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "unreadable_file"),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("memory"),
        "{body}"
    );
    api.stop().await;
}

#[tokio::test]
async fn uploads_beyond_the_extraction_line_get_503_server_busy() {
    let script = Script::new("exec sleep 600");
    let api = server_with_worker(&script, |config| {
        config.extract_timeout_secs = 2;
        config.extract_concurrency = 1;
        config.extract_queue = 0;
    })
    .await;
    let class = class(&api).await;
    let first = {
        let form = Form::new().part("file", Part::bytes(b"First.".to_vec()).file_name("a.txt"));
        let request = api
            .client()
            .post(
                api.server()
                    .http(&format!("/api/v1/classrooms/{}/materials", class.id)),
            )
            .bearer_auth(&class.teacher.access)
            .multipart(form);
        tokio::spawn(request.send())
    };
    // The first upload holds the only slot while its worker runs.
    script.started().await;
    let url = api
        .server()
        .http(&format!("/api/v1/classrooms/{}/materials", class.id));
    let form = Form::new().part("file", Part::bytes(b"Second.".to_vec()).file_name("b.txt"));
    let response = api
        .client()
        .post(url)
        .bearer_auth(&class.teacher.access)
        .multipart(form)
        .send()
        .await
        .expect("second upload");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.expect("json");
    assert_eq!(code(&body), "server_busy", "{body}");

    let first = first.await.expect("task").expect("first upload");
    assert_eq!(first.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let metrics = metrics(&api).await;
    let line = "lectern_materials_uploads_refused_total{reason=\"busy\"} 1";
    assert!(metrics.contains(line), "{line} in\n{metrics}");
    api.stop().await;
}
