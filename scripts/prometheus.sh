#!/usr/bin/env bash
# Make sure Prometheus and promtool (Debian's `prometheus` package) are installed, for the
# tests that load drover's alert rules into a real Prometheus scraping a running drover.
# The package's own service is stopped: tests start their own servers on loopback.
# Prints the prometheus binary's path. Idempotent.
set -euo pipefail

say() { echo "prometheus.sh: $*" >&2; }

LOCK=${DROVER_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/drover-tools}
mkdir -p "$LOCK"
exec 9>"$LOCK/.prometheus.lock"
flock 9

if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  say "installing prometheus"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 || {
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  }
fi
if command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
pkill -f '^/usr/bin/prometheus$' 2>/dev/null || true
command -v prometheus
