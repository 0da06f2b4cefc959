//! Runs the Node end-to-end suite (tests/node) against the built `lectern` binary: stock
//! `yjs` + `y-websocket` clients from npm, real processes, SIGKILL/SIGTERM restarts.

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
        .args(["collab.test.mjs", "classroom.test.mjs"])
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
