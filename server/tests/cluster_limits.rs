//! Counters and caches shared by the nodes of a cluster: two servers in this process share
//! one SQLite file and one Redis, under a key prefix of the test's own (so parallel tests
//! never meet). A login limit tripped on one node refuses on the other, a per-user REST
//! limit spans both, an AI budget spent through one is spent for the other, and an answer
//! cached by one is found by the other.
//!
//! Each node first proves it counts through Redis (a limited request that no longer falls
//! back), and at the end neither has fallen back: what the test saw went through Redis.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use lectern::config::AiBackendKind;

use crate::ai_queue::{Class, HeldModel, ask_ok, class, job};
use crate::api::{Api, code};
use crate::support::TestServer;

/// The Redis the tests use (`LECTERN_TEST_REDIS_URL`, default the local one); `None` when
/// it is unreachable, except under `CI=true`, where that fails the test.
async fn redis_url() -> Option<String> {
    let url = std::env::var("LECTERN_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let address = url
        .trim_start_matches("redis://")
        .rsplit('@')
        .next()
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
        .to_owned();
    let reachable = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(&address),
    )
    .await;
    match reachable {
        Ok(Ok(_)) => Some(url),
        Ok(Err(error)) => skip_redis(&url, &error.to_string()),
        Err(_) => skip_redis(&url, "no answer in 2 s"),
    }
}

fn skip_redis(url: &str, why: &str) -> Option<String> {
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("Redis at {url} is required under CI=true: {why}");
    }
    eprintln!("skipping: Redis at {url} unreachable ({why})");
    None
}

/// Two nodes on one SQLite file and one Redis prefix.
struct Pair {
    a: Api,
    b: Api,
    _data_dir: tempfile::TempDir,
}

impl Pair {
    /// Two nodes with `adjust` applied to both; `None` without Redis (outside CI).
    async fn start(adjust: impl Fn(&mut lectern::Config)) -> Option<Self> {
        let url = redis_url().await?;
        let data_dir = tempfile::tempdir().expect("temp dir");
        let prefix = format!("lectern-test-{}", uuid::Uuid::new_v4());
        let node = || {
            TestServer::start(|config| {
                config.data_dir = data_dir.path().to_path_buf();
                config.redis_url = Some(url.as_str().into());
                config.redis_prefix = prefix.clone();
                // Tokens from one node work on the other.
                config.jwt_secret = Some("cluster-limits-test-secret-of-32-bytes!".into());
                // `until_shared` spends address tokens; the address limit is not under test.
                config.login_address_rate_limit_burst = 10_000;
                adjust(config);
            })
        };
        let a = Api::on(node().await);
        let b = Api::on(node().await);
        until_shared(&a).await;
        until_shared(&b).await;
        Some(Self {
            a,
            b,
            _data_dir: data_dir,
        })
    }

    /// Checks that neither node fell back to counting alone since `until_shared`, then
    /// stops both.
    async fn stop(self, since: (u64, u64)) {
        assert_eq!(
            (fallbacks(&self.a).await, fallbacks(&self.b).await),
            since,
            "a node counted alone: the test proved nothing about sharing"
        );
        self.a.stop().await;
        self.b.stop().await;
    }

    async fn fallbacks(&self) -> (u64, u64) {
        (fallbacks(&self.a).await, fallbacks(&self.b).await)
    }
}

/// `lectern_redis_fallbacks_total` of `api`'s node.
async fn fallbacks(api: &Api) -> u64 {
    let text = api
        .client()
        .get(api.server().http("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|line| line.strip_prefix("lectern_redis_fallbacks_total "))
        .unwrap_or_else(|| panic!("no lectern_redis_fallbacks_total in:\n{text}"))
        .trim()
        .parse()
        .expect("a count")
}

/// Waits until `api`'s node counts through Redis: a rate-limited request (a refresh with
/// a made-up token, limited per address) no longer falls back to the node's own count.
async fn until_shared(api: &Api) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = fallbacks(api).await;
        let (status, body) = api
            .post("/auth/refresh", None, json!({"refresh_token": "made-up"}))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        if fallbacks(api).await == before {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the node never reached Redis within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// `POST /api/v1{path}` on `api`: the status, the `Retry-After` header and the body.
async fn post_raw(
    api: &Api,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (StatusCode, Option<u64>, Value) {
    let mut request = api
        .client()
        .post(api.server().http(&format!("/api/v1{path}")))
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().expect("ascii").parse().expect("seconds"));
    (status, retry_after, response.json().await.expect("json"))
}

#[tokio::test]
async fn a_login_limit_tripped_on_one_node_refuses_on_the_other() {
    let Some(pair) = Pair::start(|config| {
        config.login_rate_limit_per_minute = 3;
        config.rate_limit_per_minute = 1;
        config.rate_limit_burst = 3;
    })
    .await
    else {
        return;
    };
    let since = pair.fallbacks().await;
    let user = pair.a.register("guessed@example.edu", "student").await;
    // Registration spent one login attempt for the email on A; two wrong guesses on A...
    let guess = json!({"email": "guessed@example.edu", "password": "guess-guess"});
    for _ in 0..2 {
        let (status, body) = pair.a.post("/auth/login", None, guess.clone()).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNAUTHORIZED, "invalid_credentials")
        );
    }
    // ...and B refuses the next one, saying when to come back, as a single node does.
    let (status, retry_after, body) = post_raw(&pair.b, "/auth/login", None, guess).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        "{body}"
    );
    let retry_after = retry_after.expect("Retry-After");
    assert!((1..=60).contains(&retry_after), "{retry_after}");

    // The per-user REST limit spans the nodes too: a burst of 3, spent across A and B.
    assert_eq!(
        pair.a.get("/me", Some(&user.access)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        pair.b.get("/me", Some(&user.access)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        pair.a.get("/me", Some(&user.access)).await.0,
        StatusCode::OK
    );
    let (status, body) = pair.b.get("/me", Some(&user.access)).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    pair.stop(since).await;
}

/// Two nodes whose AI jobs go to `model`.
async fn ai_pair(model: &HeldModel, daily_tokens: u64) -> Option<Pair> {
    let base_url = model.base_url.clone();
    Pair::start(move |config| {
        config.ai_backend = AiBackendKind::Openai;
        config.ai_base_url = Some(base_url.clone());
        config.ai_model = Some("held-model".into());
        config.ai_classroom_daily_tokens = daily_tokens;
        // The test polls job status; the REST limit is not what it checks.
        config.rate_limit_burst = 10_000;
    })
    .await
}

/// Polls job `job_id` through `api` until it is over.
async fn until_over(api: &Api, class: &Class, job_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let job = job(api, class, job_id).await;
        if matches!(
            job["status"].as_str(),
            Some("done" | "failed" | "cancelled")
        ) {
            return job;
        }
        assert!(Instant::now() < deadline, "job {job_id} never ended: {job}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn an_ai_budget_spent_on_one_node_is_spent_on_the_other() {
    let mut model = HeldModel::start().await;
    // The held answer uses 20 prompt + 5 completion tokens: one job spends the budget.
    let Some(pair) = ai_pair(&model, 20).await else {
        return;
    };
    let since = pair.fallbacks().await;
    let class = class(&pair.a, "budget").await;
    let job_id = ask_ok(&pair.a, &class, "Where is it?").await;
    let _ = model.next().await.release.send(());
    let ended = until_over(&pair.a, &class, &job_id).await;
    assert_eq!(ended["status"], "done", "{ended}");

    let (status, retry_after, body) = post_raw(
        &pair.b,
        &format!("/sessions/{}/ai/jobs", class.session),
        Some(&class.teacher.access),
        json!({"kind": "qa", "prompt": "Anything else?"}),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, "ai_budget_exhausted"),
        "{body}"
    );
    assert!(retry_after.is_some_and(|seconds| seconds <= 24 * 3600));
    pair.stop(since).await;
}

#[tokio::test]
async fn an_answer_cached_on_one_node_is_found_on_the_other() {
    let mut model = HeldModel::start().await;
    let Some(pair) = ai_pair(&model, 0).await else {
        return;
    };
    let since = pair.fallbacks().await;
    let class = class(&pair.a, "cache").await;
    let first = ask_ok(&pair.a, &class, "Where is it?").await;
    let _ = model.next().await.release.send(());
    let ended = until_over(&pair.a, &class, &first).await;
    assert_eq!(
        (&ended["status"], &ended["cached"]),
        (&json!("done"), &json!(false))
    );

    // The same question over the same notes, on B: answered without the model (which
    // would hold it forever, since nobody releases it).
    let second = ask_ok(&pair.b, &class, "Where is it?").await;
    let ended = until_over(&pair.b, &class, &second).await;
    assert_eq!(
        (&ended["status"], &ended["cached"]),
        (&json!("done"), &json!(true)),
        "{ended}"
    );
    pair.stop(since).await;
}
