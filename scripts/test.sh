#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs and starts what the tests need, checks
# formatting and lints, then runs every test (Rust, and the Node end-to-end tests with stock
# Yjs clients, which run inside the Rust suite) with cargo-nextest.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
(cd tests/node && npm ci --no-audit --no-fund --loglevel=error)

if ! command -v cargo-nextest >/dev/null; then
  cargo install --locked cargo-nextest
fi

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo nextest run --workspace --locked --profile ci
