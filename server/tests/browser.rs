//! The web app in a real headless Chromium (tests/browser, playwright-core driving Debian's
//! `chromium`; never a downloaded browser) against the built `lectern` binary, which serves
//! web/dist at `/`. Every `*.test.mjs` there runs, one file at a time, in one node process
//! (co-editing, offline convergence, accessibility); see tests/browser/README.md. Under
//! `CI=true` a missing Chromium fails; elsewhere the test is skipped with a note.
//! Screenshots land in target/browser-artifacts/.

use std::path::Path;
use std::process::Command;

const CHROMIUM: &str = "/usr/bin/chromium";

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|ci| ci == "true")
}

#[tokio::test]
async fn web_app_browser_suite_passes_in_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let suite = root.join("tests/browser");
    assert!(
        suite.join("node_modules/playwright-core").exists(),
        "tests/browser has no node_modules: run scripts/test.sh (it runs `npm ci` there)"
    );
    assert!(
        root.join("web/dist/index.html").exists(),
        "web/dist is not built: run `npm ci && npm run build` in web/"
    );
    if !Path::new(CHROMIUM).exists() {
        let message =
            format!("{CHROMIUM} is missing: `apt-get install chromium` (scripts/test.sh does)");
        assert!(!under_ci(), "{message}");
        eprintln!("skipping the browser test: {message}");
        return;
    }
    let models = std::env::var_os("LECTERN_TEST_MODELS_DIR")
        .map_or_else(|| root.join(".cache/models"), Into::into);
    // Listed here, sorted, rather than left to node's glob handling (which differs across
    // Node versions), so the files run are explicit and the same everywhere.
    let mut files: Vec<String> = std::fs::read_dir(&suite)
        .expect("tests/browser is readable")
        .map(|entry| entry.expect("a tests/browser entry").file_name())
        .filter_map(|name| name.into_string().ok())
        .filter(|name| name.ends_with(".test.mjs"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "tests/browser has no *.test.mjs");
    // One file at a time: each starts its own server and Chromium on 2 shared cores.
    let status = Command::new("node")
        .args(["--test", "--test-concurrency=1", "--test-reporter=spec"])
        .args(&files)
        .current_dir(&suite)
        .env("LECTERN_BIN", env!("CARGO_BIN_EXE_lectern"))
        .env("LECTERN_CHROMIUM", CHROMIUM)
        .env("LECTERN_TEST_MODELS_DIR", models)
        .env(
            "LECTERN_BROWSER_ARTIFACTS",
            root.join("target/browser-artifacts"),
        )
        .status()
        .expect("node runs (is Node.js installed?)");
    assert!(status.success(), "the browser test failed: {status}");
}
