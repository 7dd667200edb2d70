#!/usr/bin/env bash
# Make sure redis-server and redis-cli (Debian's `redis-server` and `redis-tools`) are
# installed, for the autoscaling tests that start their own Redis on loopback. The
# package's own service is stopped and disabled: tests start their own servers.
# Prints the redis-server binary's path. Idempotent.
set -euo pipefail

say() { echo "redis.sh: $*" >&2; }

LOCK=${DROVER_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/drover-tools}
mkdir -p "$LOCK"
exec 9>"$LOCK/.redis.lock"
flock 9

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  say "installing redis-server"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends redis-server redis-tools >/dev/null 2>&1 || {
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends redis-server redis-tools >/dev/null
  }
  if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now redis-server >/dev/null 2>&1 || true
  fi
  # The package starts its server on 6379 where there is no systemd: stop that one only.
  if [ -f /run/redis/redis-server.pid ]; then
    kill "$(cat /run/redis/redis-server.pid)" 2>/dev/null || true
  fi
fi
command -v redis-server
