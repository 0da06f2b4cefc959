//! Accounts under attack: password-hashing floods, lockout of a victim by a stranger,
//! per-address limits, the registration policy, short API keys and document-token floods.
//!
//! Distinct client addresses are real TCP peers: the client binds 127.0.0.2 (or .3, ...)
//! instead of 127.0.0.1; every 127/8 address is loopback on Linux.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use lectern::config::RegistrationPolicy;

use crate::support::TestServer;

const PASSWORD: &str = "correct horse battery";

/// An HTTP client whose connections come from `127.0.0.<last>`.
fn client_from(last: u8) -> reqwest::Client {
    // Installs the TLS provider reqwest insists on (see support.rs).
    let _ = crate::support::http_client();
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        .build()
        .expect("client")
}

async fn post(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    let mut request = client.post(format!("{base}/api/v1{path}")).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

fn login(email: &str, password: &str) -> Value {
    json!({"email": email, "password": password})
}

fn registration(email: &str, role: &str) -> Value {
    json!({"email": email, "display_name": email, "password": PASSWORD, "role": role})
}

#[tokio::test]
async fn a_stranger_failing_a_victims_email_does_not_lock_the_victim_out() {
    let server = TestServer::start(|config| {
        config.login_rate_limit_per_minute = 3;
        config.login_email_rate_limit_per_minute = 8;
    })
    .await;
    let base = server.http("");
    let (attacker, victim) = (client_from(1), client_from(2));
    let (status, _) = post(
        &victim,
        &base,
        "/auth/register",
        None,
        registration("victim@example.edu", "student"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    let guess = login("victim@example.edu", "not the password");
    for _ in 0..3 {
        let (status, body) = post(&attacker, &base, "/auth/login", None, guess.clone()).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNAUTHORIZED, "invalid_credentials")
        );
    }
    let (status, body) = post(&attacker, &base, "/auth/login", None, guess.clone()).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        "the guessing address is locked out"
    );
    // The owner, from their own address, still gets in (and a success costs nothing).
    for _ in 0..4 {
        let (status, body) = post(
            &victim,
            &base,
            "/auth/login",
            None,
            login("victim@example.edu", PASSWORD),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    // Guessing spread over many addresses meets the per-email ceiling (8 failures): the
    // attacker spent 3 above, two more addresses spend 3 and 2.
    for (last, tries) in [(3, 3), (4, 2)] {
        let client = client_from(last);
        for _ in 0..tries {
            let (status, _) = post(&client, &base, "/auth/login", None, guess.clone()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
    }
    let (status, body) = post(&client_from(5), &base, "/auth/login", None, guess).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        "the per-email ceiling holds across addresses"
    );
    server.stop().await;
}

#[tokio::test]
async fn login_registration_and_refresh_are_limited_per_client_address() {
    let server = TestServer::start(|config| {
        config.login_address_rate_limit_burst = 3;
        config.login_address_rate_limit_per_minute = 1;
    })
    .await;
    let base = server.http("");
    let (noisy, neighbour) = (client_from(1), client_from(2));
    let (status, session) = post(
        &noisy,
        &base,
        "/auth/register",
        None,
        registration("noisy@example.edu", "student"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let refresh = json!({"refresh_token": session["refresh_token"]});
    let (status, _) = post(&noisy, &base, "/auth/refresh", None, refresh).await;
    assert_eq!(status, StatusCode::OK);
    // Different emails each time: only the address ties them together.
    let (status, _) = post(
        &noisy,
        &base,
        "/auth/login",
        None,
        login("first@example.edu", PASSWORD),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = post(
        &noisy,
        &base,
        "/auth/login",
        None,
        login("second@example.edu", PASSWORD),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    let (status, _) = post(
        &neighbour,
        &base,
        "/auth/login",
        None,
        login("second@example.edu", PASSWORD),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "another address is unaffected"
    );
    server.stop().await;
}

#[tokio::test]
async fn doc_token_floods_get_429() {
    let key = "embedder-secret-key-of-at-least-32-bytes";
    let server = TestServer::start(|config| {
        config.api_key = Some(key.into());
        config.doc_token_rate_limit_burst = 5;
        config.doc_token_rate_limit_per_minute = 1;
    })
    .await;
    let base = server.http("");
    let client = client_from(1);
    let request = json!({"doc": "course/notes", "access": "read"});
    for _ in 0..5 {
        let (status, body) = post(&client, &base, "/doc-tokens", Some(key), request.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = post(&client, &base, "/doc-tokens", Some(key), request.clone()).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    // Wrong keys are limited too: guessing is no cheaper than asking.
    let (status, _) = post(&client, &base, "/doc-tokens", Some("wrong"), request).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    server.stop().await;
}

/// Runs `lectern create-user` against `data_dir`'s SQLite database.
async fn create_user(data_dir: &std::path::Path, email: &str, role: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lectern"))
        .args(["create-user", "--email", email, "--display-name", email])
        .args(["--role", role, "--data-dir"])
        .arg(data_dir)
        .env("LECTERN_NEW_USER_PASSWORD", PASSWORD)
        .env_remove("LECTERN_DATABASE_URL")
        .output()
        .await
        .expect("lectern create-user runs")
}

#[tokio::test]
async fn only_students_self_register_and_admins_create_the_rest() {
    let server = TestServer::start(|config| {
        config.registration = RegistrationPolicy::StudentsOnly;
    })
    .await;
    let base = server.http("");
    let client = client_from(1);
    let (status, body) = post(
        &client,
        &base,
        "/auth/register",
        None,
        registration("mallory@example.edu", "faculty"),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "registration_refused")
    );
    let (status, student) = post(
        &client,
        &base,
        "/auth/register",
        None,
        registration("student@example.edu", "student"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let student = student["access_token"].as_str().expect("token").to_owned();

    // The first admin comes from the command line, into the database the server uses.
    let output = create_user(server.data_dir(), "root@example.edu", "admin").await;
    assert!(output.status.success(), "{output:?}");
    let again = create_user(server.data_dir(), "root@example.edu", "admin").await;
    assert!(!again.status.success(), "a taken email is refused");
    let (status, admin) = post(
        &client,
        &base,
        "/auth/login",
        None,
        login("root@example.edu", PASSWORD),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{admin}");
    assert_eq!(admin["user"]["role"], "admin");
    let admin = admin["access_token"].as_str().expect("token").to_owned();

    let new_faculty = json!({"email": "prof@example.edu", "display_name": "Prof",
                             "password": PASSWORD, "role": "faculty"});
    let (status, body) = post(
        &client,
        &base,
        "/admin/users",
        Some(&student),
        new_faculty.clone(),
    )
    .await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    let (status, body) = post(&client, &base, "/admin/users", Some(&admin), new_faculty).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["role"], "faculty");
    let (status, body) = post(
        &client,
        &base,
        "/admin/users",
        Some(&admin),
        json!({"email": "x@example.edu", "display_name": "X", "password": "short", "role": "admin"}),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );

    // The faculty account an admin made works: it signs in and creates a classroom.
    let (status, prof) = post(
        &client,
        &base,
        "/auth/login",
        None,
        login("prof@example.edu", PASSWORD),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let prof = prof["access_token"].as_str().expect("token");
    let (status, body) = post(
        &client,
        &base,
        "/classrooms",
        Some(prof),
        json!({"name": "Biology"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn closed_registration_refuses_everyone() {
    let server = TestServer::start(|config| {
        config.registration = RegistrationPolicy::Closed;
    })
    .await;
    let (status, body) = post(
        &client_from(1),
        &server.http(""),
        "/auth/register",
        None,
        registration("student@example.edu", "student"),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "registration_refused")
    );
    server.stop().await;
}

/// A `lectern serve` child process on 127.0.0.1:0, killed when dropped.
struct Spawned {
    child: Child,
    address: SocketAddr,
    _data_dir: tempfile::TempDir,
}

impl Spawned {
    /// Starts the binary with `env` (configuration by environment, so the same call
    /// works against an older binary that lacks newer flags) and waits until it listens.
    async fn start(env: &[(&str, &str)]) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut command = Command::new(env!("CARGO_BIN_EXE_lectern"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir.path())
            .args(["--ai-backend", "off", "--prepare-models", "false"])
            .env("LECTERN_LOG_FORMAT", "json")
            .env("LECTERN_LOG", "info")
            .env_remove("LECTERN_DATABASE_URL")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("lectern starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let listening = async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if entry["fields"]["message"] == "lectern listening" {
                    let address = entry["fields"]["address"].as_str().expect("address");
                    return address.parse::<SocketAddr>().expect("socket address");
                }
            }
            panic!("lectern exited before listening");
        };
        let address = tokio::time::timeout(Duration::from_secs(60), listening)
            .await
            .expect("lectern listens within a minute");
        // Keep draining its logs so the pipe never fills and blocks the server.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            child,
            address,
            _data_dir: data_dir,
        }
    }

    fn base(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The peak resident set size so far, in KiB (`VmHWM`).
    fn peak_rss_kib(&self) -> u64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }
}

/// Before: 150 concurrent logins with unknown emails ran 150 argon2 hashes at once
/// (19 MiB each, 3.3 GiB in all) and starved every other request.
#[tokio::test]
async fn a_login_flood_is_shed_with_bounded_memory_and_a_real_login_gets_through() {
    let server = Spawned::start(&[
        ("LECTERN_REGISTRATION", "open"),
        // Let the whole flood reach the hasher: this test is about its bound, not the
        // per-address limit in front of it.
        ("LECTERN_LOGIN_ADDRESS_RATE_LIMIT_BURST", "10000"),
        ("LECTERN_LOGIN_ADDRESS_RATE_LIMIT_PER_MINUTE", "10000"),
    ])
    .await;
    let base = server.base();
    let (flooder, owner) = (client_from(1), client_from(2));
    let (status, _) = post(
        &owner,
        &base,
        "/auth/register",
        None,
        registration("owner@example.edu", "student"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    let flood: Vec<_> = (0..150)
        .map(|i| {
            let (client, base) = (flooder.clone(), base.clone());
            tokio::spawn(async move {
                let body = login(&format!("nobody-{i}@example.edu"), "some password");
                post(&client, &base, "/auth/login", None, body).await
            })
        })
        .collect();

    // The owner logs in during the flood, honouring Retry-After a few times at most.
    let mut owner_status = None;
    for _ in 0..10 {
        let response = owner
            .post(format!("{base}/api/v1/auth/login"))
            .json(&login("owner@example.edu", PASSWORD))
            .send()
            .await
            .expect("request");
        let status = response.status();
        if status != StatusCode::SERVICE_UNAVAILABLE {
            owner_status = Some(status);
            break;
        }
        let wait: u64 = response.headers()["retry-after"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("seconds");
        tokio::time::sleep(Duration::from_secs(wait)).await;
    }
    assert_eq!(owner_status, Some(StatusCode::OK));

    let mut shed = 0;
    for task in flood {
        let (status, body) = task.await.expect("flood request");
        match status {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                assert!(
                    matches!(code(&body), "server_busy" | "rate_limited"),
                    "{body}"
                );
                shed += 1;
            }
            other => panic!("a flooded login answered {other}: {body}"),
        }
    }
    assert!(shed > 0, "the flood was shed, not queued without bound");
    let peak_mib = server.peak_rss_kib() / 1024;
    assert!(
        peak_mib < 512,
        "peak RSS {peak_mib} MiB under a 150-login flood"
    );
}

#[tokio::test]
async fn short_api_keys_are_refused_at_start() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lectern"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir.path())
        .args(["--ai-backend", "off", "--prepare-models", "false"])
        .env("LECTERN_API_KEY", "too-short-a-key")
        .env_remove("LECTERN_DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("lectern starts");
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("lectern exits instead of serving with a short API key")
        .expect("wait");
    assert!(!status.success());
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .await
        .expect("stderr");
    assert!(
        stderr.contains("--api-key must be at least 32 bytes"),
        "{stderr}"
    );
}
