//! Runs the Node end-to-end suites against the built `lectern` binary: tests/node (stock
//! `yjs` + `y-websocket` clients from npm, real processes, SIGKILL/SIGTERM restarts, two
//! nodes joined through Redis) and the TypeScript SDK's tests in client-sdk (including its
//! OpenAPI contract test).

use std::path::Path;
use std::process::Command;

#[tokio::test]
async fn stock_yjs_clients_from_npm() {
    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/node");
    assert!(
        suite.join("node_modules/y-websocket").exists(),
        "tests/node has no node_modules: run scripts/test.sh (it runs `npm ci` there)"
    );
    let postgres = lectern_db::testing::postgres_url().await;
    let mut command = Command::new("node");
    command
        .args(["--test", "--test-concurrency=1", "--test-reporter=spec"])
        .args(["collab.test.mjs", "classroom.test.mjs", "history.test.mjs"])
        .current_dir(&suite)
        .env("LECTERN_BIN", env!("CARGO_BIN_EXE_lectern"));
    if let Some(url) = postgres {
        command.env("LECTERN_TEST_POSTGRES_URL_FOR_NODE", url);
    }
    let status = command.status().expect("node runs (is Node.js installed?)");
    assert!(
        status.success(),
        "the Node end-to-end suite failed: {status}"
    );
}

/// Stock clients on two nodes joined through Redis (tests/node/cluster.test.mjs). The
/// script itself skips, or fails under `CI=true`, when PostgreSQL or Redis is missing.
#[tokio::test]
async fn stock_yjs_clients_on_two_nodes_through_redis() {
    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/node");
    assert!(
        suite.join("node_modules/y-websocket").exists(),
        "tests/node has no node_modules: run scripts/test.sh (it runs `npm ci` there)"
    );
    let postgres = lectern_db::testing::postgres_url().await;
    let mut command = Command::new("node");
    command
        .args(["--test", "--test-reporter=spec", "cluster.test.mjs"])
        .current_dir(&suite)
        .env("LECTERN_BIN", env!("CARGO_BIN_EXE_lectern"))
        .env("LECTERN_TEST_REDIS_URL_FOR_NODE", "redis://127.0.0.1:6379");
    if let Some(url) = postgres {
        command.env("LECTERN_TEST_POSTGRES_URL_FOR_NODE", url);
    }
    let status = command.status().expect("node runs (is Node.js installed?)");
    assert!(status.success(), "the Node cluster test failed: {status}");
}

#[tokio::test]
async fn client_sdk_against_the_real_server() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let sdk = root.join("client-sdk");
    assert!(
        sdk.join("dist/index.js").exists() && sdk.join("node_modules/y-websocket").exists(),
        "client-sdk is not built: run scripts/test.sh (it runs `npm ci && npm run build` there)"
    );
    let models = std::env::var_os("LECTERN_TEST_MODELS_DIR")
        .map_or_else(|| root.join(".cache/models"), Into::into);
    // The drain test runs two nodes on one PostgreSQL database.
    let postgres = lectern_db::testing::postgres_url().await;
    let mut command = Command::new("node");
    command
        .args([
            "--test",
            "--test-concurrency=1",
            "--test-reporter=spec",
            "test/",
        ])
        .current_dir(&sdk)
        .env("LECTERN_BIN", env!("CARGO_BIN_EXE_lectern"))
        .env("LECTERN_TEST_MODELS_DIR", models);
    if let Some(url) = postgres {
        command.env("LECTERN_TEST_POSTGRES_URL_FOR_NODE", url);
    }
    let status = command.status().expect("node runs (is Node.js installed?)");
    assert!(status.success(), "the client SDK suite failed: {status}");
}
