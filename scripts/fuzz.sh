#!/usr/bin/env bash
# Bounded fuzzing: builds every cargo-fuzz target in fuzz/ once (stable toolchain, no
# sanitizer, its own target dir) and runs each from the seed corpus in fuzz/corpus/<target>/
# for a fixed number of inputs from a fixed seed (about 10 s each here), so a clean clone
# fuzzes exactly the same inputs every time: the suite fails for a change in the code, never
# for a lucky draw. Fails if any target crashes, hangs, or exceeds its memory limit; the
# input that did it is saved in fuzz/artifacts/<target>/. Longer runs: fuzz/README.md.
#
#   LECTERN_FUZZ_SECONDS     run each target this long with a random seed instead
#   LECTERN_FUZZ_TARGETS     space-separated targets to run (default: all)
#   LECTERN_FUZZ_TARGET_DIR  build directory (default fuzz/target)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${LECTERN_FUZZ_SECONDS:-}"
target_dir="${LECTERN_FUZZ_TARGET_DIR:-$PWD/fuzz/target}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi

# cargo-fuzz has no --locked: check that fuzz/Cargo.lock needs no change before building.
if ! cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null; then
  echo "fuzz: fuzz/Cargo.lock is out of date (a workspace crate's dependencies changed):" >&2
  echo "fuzz: run 'cargo metadata --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null' and commit fuzz/Cargo.lock" >&2
  exit 1
fi
# `-s none`: the sanitizers need nightly; coverage instrumentation works on stable.
(cd fuzz && cargo fuzz build --sanitizer none --target-dir "$target_dir")
bin_dir="$target_dir/x86_64-unknown-linux-gnu/release"

# Input size bounds per target: big enough for the seeds and real structure, small enough
# that one input stays cheap (the PDF parser recurses on hostile input).
max_len() {
  case "$1" in
    extract_pdf | extract_docx) echo 16384 ;;
    *) echo 4096 ;;
  esac
}

# Inputs per target for the deterministic run: about 10 s each on this 2-core machine.
runs() {
  case "$1" in
    sync_frame | multiplexed | awareness) echo 1000000 ;;
    sync_apply) echo 100000 ;;
    structured_json) echo 150000 ;;
    *) echo 200000 ;;
  esac
}

targets="${LECTERN_FUZZ_TARGETS:-$(cd fuzz && cargo fuzz list)}"
failed=()
for target in $targets; do
  # New inputs the fuzzer finds go to a scratch corpus (first directory), never into the
  # committed seeds; it is kept between local runs so they build on each other.
  work="$target_dir/corpus/$target"
  artifacts="fuzz/artifacts/$target"
  log="$target_dir/logs/$target.log"
  mkdir -p "$work" "$artifacts" "$(dirname "$log")"
  # Inputs that once crashed a target are replayed first, every run (fuzz/regressions/).
  corpora=("$work" "fuzz/corpus/$target")
  if [[ -d "fuzz/regressions/$target" ]]; then
    corpora+=("fuzz/regressions/$target")
  fi
  if [[ -n "$seconds" ]]; then
    budget=(-max_total_time="$seconds")
    echo "fuzz: $target for ${seconds}s"
  else
    # Deterministic: start from the committed inputs only (a fresh scratch corpus).
    rm -rf "$work" && mkdir -p "$work"
    budget=(-runs="$(runs "$target")" -seed=1 -max_total_time=120)
    echo "fuzz: $target, $(runs "$target") inputs"
  fi
  if ! "$bin_dir/$target" \
    "${budget[@]}" -max_len="$(max_len "$target")" \
    -rss_limit_mb=1024 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "${corpora[@]}" >"$log" 2>&1; then
    echo "fuzz: $target FAILED; input saved in $artifacts/, last lines of $log:" >&2
    tail -n 40 "$log" >&2
    failed+=("$target")
  else
    grep -E '^stat::number_of_executed_units' "$log" | sed "s/^/fuzz: $target /" || true
  fi
done

if ((${#failed[@]})); then
  echo "fuzz: crashes in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: all targets ran clean"
