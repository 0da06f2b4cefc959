#!/usr/bin/env bash
# Cluster benchmark (issue #11): one Lectern node against two nodes joined through Redis, on
# this machine, in one run.
#
#   bench/cluster.sh [-n REPS] [-d SECS] [-o DIR] [PART...]
#
#   PART      steady (a + b) and/or outage (c + d); default: both
#   -n REPS   repetitions of every configuration (default 2); medians are reported
#   -d SECS   measured window of the steady loads (default 15)
#   -o DIR    where JSON lines and logs go (default: a new directory under /tmp)
#
# (a) one node, no Redis; (b) two nodes through the Redis at 127.0.0.1:6379 (a random
#     --redis-prefix per start). Both configurations store in PostgreSQL, a fresh database
#     per start that the two nodes of (b) share, so the only difference is the Redis hop.
#     Loads: steady R=1,C=50,E=5 and R=200,C=2,E=1. Server CPU counts every Lectern process
#     and, in (b), redis-server: lectern-bench reads utime+stime of each /proc/PID/stat over
#     the measured window (--server-pid for each) and sums them.
# (c) Two nodes through a redis-server this script owns, on a free port: 200 rooms x 2
#     clients (one per node) edit at 1/s; the bench's stop command SIGKILLs Redis, editing
#     goes on for 5 s, its start command restarts Redis; every client then makes one last
#     edit; reported is the time from the restart's launch until every room's clients have
#     every edit of the room (`lectern-bench reconverge`, see bench/src/reconverge.rs).
# (d) Redis memory per live room: INFO memory used_memory of that Redis with both nodes
#     connected and no room, and with the 200 rooms live (read by the stop command, just
#     before the kill); (live - idle) / 200.
# Configurations are interleaved within each repetition, so drift hits them alike.
#
# Environment: LECTERN_BIN / BENCH_BIN use prebuilt binaries; CARGO_TARGET_DIR is honoured;
# LECTERN_TEST_POSTGRES_URL is the PostgreSQL admin URL (default
# postgres://postgres@127.0.0.1:5432/postgres). Only 127.0.0.1 is ever contacted.
set -euo pipefail

# --- the outage commands lectern-bench runs (internal) -----------------------------------
# _redis_start PORT DIR: starts the test-owned Redis and returns once it answers PING.
# _redis_stop PORT DIR MEMFILE: records INFO memory and channel counts, SIGKILLs Redis and
# returns once the process is gone.
redis_start() {
  local port=$1 dir=$2
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --pidfile "$dir/redis-$port.pid" --logfile "$dir/redis-$port.log" --dir "$dir"
  for _ in $(seq 1 2000); do
    [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && [ -s "$dir/redis-$port.pid" ] && return 0
    sleep 0.005
  done
  echo "redis on port $port did not answer" >&2
  return 1
}
redis_stop() {
  local port=$1 dir=$2 memfile=${3:-} pid
  pid=$(cat "$dir/redis-$port.pid")
  if [ -n "$memfile" ]; then
    {
      redis-cli -p "$port" INFO memory | tr -d '\r' | grep -E '^used_memory:'
      echo "shard_channels:$(redis-cli -p "$port" PUBSUB SHARDCHANNELS | grep -c . || true)"
      echo "channels:$(redis-cli -p "$port" PUBSUB CHANNELS | grep -c . || true)"
      echo "keys:$(redis-cli -p "$port" DBSIZE)"
    } >"$memfile"
  fi
  kill -KILL "$pid"
  for _ in $(seq 1 1000); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$dir/redis-$port.pid"; return 0; }
    sleep 0.005
  done
  echo "redis $pid did not die" >&2
  return 1
}
case ${1:-} in
  _redis_start) redis_start "$2" "$3"; exit ;;
  _redis_stop) redis_stop "$2" "$3" "${4:-}"; exit ;;
esac

SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$0")/.."
ROOT=$PWD

REPS=2
DURATION=15
OUT=
while getopts "n:d:o:h" opt; do
  case $opt in
    n) REPS=$OPTARG ;;
    d) DURATION=$OPTARG ;;
    o) OUT=$OPTARG ;;
    *) sed -n '2,31p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
PARTS=("$@")
[ ${#PARTS[@]} -gt 0 ] || PARTS=(steady outage)
OUT=${OUT:-$(mktemp -d /tmp/lectern-cluster.XXXXXX)}
mkdir -p "$OUT"
# One token secret for every node of the run, as a deployment has (the bench sends no
# token, but a node without one warns and makes up its own).
LECTERN_JWT_SECRET=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
export LECTERN_JWT_SECRET
ADMIN_URL=${LECTERN_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
PG_BASE=${ADMIN_URL%/*}

log() { echo "cluster: $(date +%T) $*" >&2; }

# --- binaries ------------------------------------------------------------------------------
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [ -z "${LECTERN_BIN:-}" ] || [ -z "${BENCH_BIN:-}" ]; then
  log "building lectern and lectern-bench (release)"
  cargo build --release -p lectern -p lectern-bench >&2
fi
LECTERN_BIN=${LECTERN_BIN:-$TARGET_DIR/release/lectern}
BENCH_BIN=${BENCH_BIN:-$TARGET_DIR/release/lectern-bench}
[ -x "$LECTERN_BIN" ] || { log "no Lectern binary at $LECTERN_BIN"; exit 1; }
[ -x "$BENCH_BIN" ] || { log "no lectern-bench binary at $BENCH_BIN"; exit 1; }
"$ROOT/scripts/services.sh" >&2

# --- what this script started, stopped on exit --------------------------------------------
NODE_PIDS=()
DATA_DIRS=()
DATABASES=()
TEST_REDIS_PORT=
stop_nodes() {
  local pid
  for pid in "${NODE_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${NODE_PIDS[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  NODE_PIDS=()
  local d
  for d in "${DATA_DIRS[@]}"; do rm -rf "$d"; done
  DATA_DIRS=()
  for d in "${DATABASES[@]}"; do
    psql "$ADMIN_URL" -qAtc "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null ||
      log "could not drop database $d"
  done
  DATABASES=()
}
stop_test_redis() {
  if [ -n "$TEST_REDIS_PORT" ] && [ -s "$OUT/redis-$TEST_REDIS_PORT.pid" ]; then
    redis_stop "$TEST_REDIS_PORT" "$OUT" || true
  fi
  TEST_REDIS_PORT=
}
cleanup() { stop_nodes; stop_test_redis; }
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# new_database: sets DB_URL to a fresh, empty PostgreSQL database (dropped by stop_nodes and
# on exit). Not called in a $(...) subshell, so DATABASES keeps the name.
new_database() {
  local name
  name=lectern_bench_$(date +%s%N)_$RANDOM
  psql "$ADMIN_URL" -qAtc "CREATE DATABASE $name" >/dev/null
  DATABASES+=("$name")
  DB_URL=$PG_BASE/$name
}

# start_node TAG DATABASE_URL [REDIS_URL PREFIX]: starts a node and appends to NODE_PIDS and
# URLS; returns once /readyz says "ready" (with Redis: connected to it).
start_node() {
  local tag=$1 db=$2 redis=${3:-} prefix=${4:-} port dir pid
  port=$(free_port)
  dir=$(mktemp -d /tmp/lectern-cluster-data.XXXXXX)
  DATA_DIRS+=("$dir")
  local args=(serve --listen "127.0.0.1:$port" --data-dir "$dir" --database-url "$db"
    --anonymous-access write --prepare-models false)
  [ -z "$redis" ] || args+=(--redis-url "$redis" --redis-prefix "$prefix")
  "$LECTERN_BIN" "${args[@]}" >>"$OUT/node-$tag.log" 2>&1 &
  pid=$!
  NODE_PIDS+=("$pid")
  for _ in $(seq 1 300); do
    if [ "$(curl -s "http://127.0.0.1:$port/readyz" 2>/dev/null)" = ready ]; then
      URLS+=("ws://127.0.0.1:$port/ws")
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  log "node $tag did not become ready; see $OUT/node-$tag.log"
  exit 1
}

redis_pid_of() {
  redis-cli -p "$1" INFO server | tr -d '\r' | sed -n 's/^process_id://p'
}

used_memory() {
  redis-cli -p "$1" INFO memory | tr -d '\r' | sed -n 's/^used_memory://p'
}

scenario_args() {
  case $1 in
    steady-1x50) echo "steady -R 1 -C 50 -E 5 -D $DURATION" ;;
    steady-200x2) echo "steady -R 200 -C 2 -E 1 -D $DURATION" ;;
  esac
}

# run_steady SCENARIO CONFIG REP
run_steady() {
  local scenario=$1 config=$2 rep=$3 db status=0 pids
  local -a args
  read -r -a args <<<"$(scenario_args "$scenario")"
  URLS=()
  new_database
  db=$DB_URL
  case $config in
    one-node)
      start_node "$config" "$db"
      pids=${NODE_PIDS[0]} ;;
    two-nodes)
      local prefix=bench$RANDOM$RANDOM
      start_node "$config-a" "$db" redis://127.0.0.1:6379 "$prefix"
      start_node "$config-b" "$db" redis://127.0.0.1:6379 "$prefix"
      pids=${NODE_PIDS[0]},${NODE_PIDS[1]},$(redis_pid_of 6379) ;;
  esac
  sleep 0.5
  log "$scenario / $config / run $rep of $REPS (pids $pids)"
  "$BENCH_BIN" --url "$(IFS=,; echo "${URLS[*]}")" --server-pid "$pids" --json "${args[@]}" \
    >>"$OUT/$scenario.$config.jsonl" 2>>"$OUT/$scenario.$config.log" || status=$?
  [ $status -eq 0 ] || log "$scenario / $config / run $rep exited $status (see $OUT/$scenario.$config.log)"
  stop_nodes
}

# run_outage REP: (c) and (d) on a test-owned Redis.
run_outage() {
  local rep=$1 db status=0 idle prefix
  TEST_REDIS_PORT=$(free_port)
  redis_start "$TEST_REDIS_PORT" "$OUT"
  URLS=()
  new_database
  db=$DB_URL
  prefix=bench$RANDOM$RANDOM
  start_node outage-a "$db" "redis://127.0.0.1:$TEST_REDIS_PORT" "$prefix"
  start_node outage-b "$db" "redis://127.0.0.1:$TEST_REDIS_PORT" "$prefix"
  sleep 1
  idle=$(used_memory "$TEST_REDIS_PORT")
  log "outage / run $rep of $REPS (test Redis on port $TEST_REDIS_PORT, idle used_memory $idle)"
  "$BENCH_BIN" --url "$(IFS=,; echo "${URLS[*]}")" --json reconverge -R 200 -C 2 -E 1 \
    --warmup 3 --outage 5 --verify-docs \
    --stop-cmd "bash '$SELF' _redis_stop $TEST_REDIS_PORT '$OUT' '$OUT/memory-live.$rep'" \
    --start-cmd "bash '$SELF' _redis_start $TEST_REDIS_PORT '$OUT'" \
    >>"$OUT/reconverge.two-nodes.jsonl" 2>>"$OUT/reconverge.two-nodes.log" || status=$?
  [ $status -eq 0 ] || log "outage / run $rep exited $status (see $OUT/reconverge.two-nodes.log)"
  echo "idle_used_memory:$idle" >>"$OUT/memory-live.$rep"
  stop_nodes
  stop_test_redis
}

for rep in $(seq 1 "$REPS"); do
  for part in "${PARTS[@]}"; do
    case $part in
      steady)
        for scenario in steady-1x50 steady-200x2; do
          for config in one-node two-nodes; do run_steady "$scenario" "$config" "$rep"; done
        done ;;
      outage) run_outage "$rep" ;;
      *) log "unknown part $part"; exit 2 ;;
    esac
  done
done

log "raw results in $OUT"
node "$ROOT/bench/cluster-summary.mjs" "$OUT"
