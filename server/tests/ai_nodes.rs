//! AI jobs across nodes: two or three servers in this process share one database (the same
//! SQLite file, or one PostgreSQL database) and no other channel, so what one node learns
//! about another's job comes from the job records alone. A job is read and cancelled
//! through a node that does not run it, and a job whose node died (its runtime dropped
//! mid-job, recording nothing) is reported interrupted once its heartbeat is too old.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use lectern::config::AiBackendKind;
use lectern_db::ai_jobs::JobStatus;

use crate::ai_queue::{Class, HeldModel, ask_ok, class, job};
use crate::api::Api;
use crate::support::TestServer;

/// One database the nodes of a test share.
enum Shared {
    /// A SQLite file in a data directory every node uses.
    Sqlite(tempfile::TempDir),
    /// A fresh PostgreSQL database.
    Postgres(String),
}

impl Shared {
    /// SQLite, and PostgreSQL when it is reachable (required under `CI=true`).
    async fn all() -> Vec<Self> {
        let mut shared = vec![Self::Sqlite(tempfile::tempdir().expect("temp dir"))];
        if let Some(url) = lectern_db::testing::postgres_url().await {
            shared.push(Self::Postgres(url));
        }
        shared
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    fn url(&self) -> String {
        match self {
            Self::Sqlite(dir) => format!("sqlite://{}", dir.path().join("lectern.db").display()),
            Self::Postgres(url) => url.clone(),
        }
    }

    /// Where a node finds the shared database.
    fn place(&self) -> Place {
        match self {
            Self::Sqlite(dir) => Place {
                data_dir: Some(dir.path().to_path_buf()),
                database_url: None,
            },
            Self::Postgres(url) => Place {
                data_dir: None,
                database_url: Some(url.clone()),
            },
        }
    }
}

/// Where a node finds the shared database: in a shared data directory (SQLite) or at a URL.
#[derive(Debug, Clone)]
struct Place {
    data_dir: Option<std::path::PathBuf>,
    database_url: Option<String>,
}

/// A node on the shared database whose jobs go to `model_url`, with
/// `heartbeat_timeout_ms`.
async fn node(place: Place, model_url: String, heartbeat_timeout_ms: u64) -> Api {
    let server = TestServer::start(move |config| {
        if let Some(data_dir) = place.data_dir {
            config.data_dir = data_dir;
        }
        config.database_url = place.database_url;
        // Every node signs with the same secret, so a token from one works on another.
        config.jwt_secret = Some("ai-nodes-test-secret-of-at-least-32-bytes".into());
        config.ai_backend = AiBackendKind::Openai;
        config.ai_base_url = Some(model_url);
        config.ai_model = Some("held-model".into());
        config.ai_job_heartbeat_timeout_ms = heartbeat_timeout_ms;
        // The test polls job status; the REST limit is not what it checks.
        config.rate_limit_burst = 10_000;
    })
    .await;
    Api::on(server)
}

/// Polls job `job_id` through `api` until `done` holds, for at most `within`.
async fn until(
    api: &Api,
    class: &Class,
    job_id: &str,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let job = job(api, class, job_id).await;
        if done(&job) {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "job {job_id} never got there: {job}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

const DEFAULT_TIMEOUT_MS: u64 = 60_000;

#[tokio::test]
async fn a_job_running_on_one_node_is_read_and_cancelled_through_another() {
    for shared in Shared::all().await {
        let backend = shared.name();
        let mut model = HeldModel::start().await;
        let place = shared.place();
        let a = node(place.clone(), model.base_url.clone(), DEFAULT_TIMEOUT_MS).await;
        let b = node(place, model.base_url.clone(), DEFAULT_TIMEOUT_MS).await;
        let class = class(&a, "nodes").await;

        let job_id = ask_ok(&a, &class, "Where is it?").await;
        // Node A generates; the model holds its answer back.
        let _held = model.next().await;
        let seen = job(&b, &class, &job_id).await;
        assert_eq!(seen["status"], "queued", "{backend} {seen}");
        assert_eq!(seen["started_by"], class.teacher.user_id.as_str());
        assert_eq!(seen["queue_position"], Value::Null, "only A knows the line");

        let (status, body) = b
            .post(
                &format!("/ai/jobs/{job_id}/cancel"),
                Some(&class.teacher.access),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{backend} {body}");
        // A learns it from the records at its next heartbeat (every second) and stops.
        let ended = until(&a, &class, &job_id, Duration::from_secs(10), |job| {
            job["status"] != "queued" && job["status"] != "streaming"
        })
        .await;
        assert_eq!(ended["status"], "cancelled", "{backend} {ended}");
        assert_eq!(job(&b, &class, &job_id).await["status"], "cancelled");
        a.stop().await;
        b.stop().await;
    }
}

#[tokio::test]
async fn a_job_whose_node_died_is_reported_interrupted_after_the_heartbeat_timeout() {
    for shared in Shared::all().await {
        let backend = shared.name();
        let mut model = HeldModel::start().await;
        let place = shared.place();
        // Node A runs in a runtime of its own, so the test can kill it outright: dropping
        // the runtime drops every task mid-await, as a crash would; nothing is recorded.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let a = runtime
            .spawn(node(
                place.clone(),
                model.base_url.clone(),
                DEFAULT_TIMEOUT_MS,
            ))
            .await
            .expect("node A");
        let class = class(&a, "crash").await;
        let job_id = ask_ok(&a, &class, "Where is it?").await;
        let _held = model.next().await;
        runtime.shutdown_background();
        // Its server went with its runtime: nothing left to stop.
        drop(a);

        // A node with the default timeout still sees it running: A may just be slow.
        let b = node(place.clone(), model.base_url.clone(), DEFAULT_TIMEOUT_MS).await;
        let seen = job(&b, &class, &job_id).await;
        assert_eq!(seen["status"], "queued", "{backend} {seen}");

        // Past the timeout (short here), it is reported failed, with the reason...
        let c = node(place, model.base_url.clone(), 300).await;
        let lost = until(&c, &class, &job_id, Duration::from_secs(10), |job| {
            job["status"] != "queued"
        })
        .await;
        assert_eq!(lost["status"], "failed", "{backend} {lost}");
        assert_eq!(
            lost["error"], "interrupted: the server running it stopped",
            "{backend} {lost}"
        );
        assert!(lost["finished_at"].is_i64(), "{lost}");
        // ...and recorded so: every node now reads the same end.
        assert_eq!(job(&b, &class, &job_id).await["status"], "failed");
        let database = lectern_db::Database::connect(&shared.url())
            .await
            .expect("database");
        let record = lectern_db::AiJobs::new(database.clone())
            .get(&job_id)
            .await
            .expect("read")
            .expect("record");
        assert_eq!(record.status, JobStatus::Failed, "{backend}");
        database.close().await;
        b.stop().await;
        c.stop().await;
    }
}
