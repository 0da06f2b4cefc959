#!/usr/bin/env bash
# Makes sure the services the test suite talks to are running on this machine:
# PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379. Installs them from Debian's
# packages when missing. Idempotent: does nothing when both already answer.
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

wait_for_port() {
  for _ in $(seq 1 100); do port_open "$1" && return 0; sleep 0.1; done
  echo "services: nothing listens on 127.0.0.1:$1 after starting $2" >&2
  return 1
}

if ! port_open 5432; then
  echo "services: starting PostgreSQL"
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for_port 5432 PostgreSQL
fi

if ! port_open 6379; then
  echo "services: starting Redis"
  command -v redis-server >/dev/null || apt_install redis-server
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no
  wait_for_port 6379 Redis
fi
echo "services: PostgreSQL and Redis are up"
