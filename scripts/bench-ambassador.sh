#!/usr/bin/env bash
# What an ambassador adds to a connection: N sequential HTTP requests (default 500, each a
# new TCP connection) and one 100 MB response, straight to a busybox httpd and through
# `drover ambassador` forwarding to it, in a network namespace of their own (loopback
# only, so this is the proxy's cost, not the network's). Run as root.
# Usage: scripts/bench-ambassador.sh [DROVER_BINARY] [N]
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${1:-target/debug/drover}
N=${2:-500}
[ -x "$BIN" ] || cargo build --bin drover
BIN=$(realpath "$BIN")
if [ -z "${AMBASSADOR_BENCH_INNER:-}" ]; then
  exec env AMBASSADOR_BENCH_INNER=1 unshare -n "$0" "$BIN" "$N"
fi

www=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$www"' EXIT
ip link set lo up
head -c 100000000 /dev/zero >"$www/big"
echo hi >"$www/index.html"
busybox httpd -f -p 127.0.0.1:9000 -h "$www" &
"$BIN" ambassador --log-format json >/dev/null 2>&1 &
for _ in $(seq 50); do
  "$BIN" ambassador --push '{"routes":[{"service":"bench","proto":"tcp","port":9001,"local":["127.0.0.1:9000"],"remote":[]}]}' 2>/dev/null && break
  sleep 0.1
done

get() { printf 'GET /%s HTTP/1.0\r\n\r\n' "$2" | busybox nc 127.0.0.1 "$1" >/dev/null; }
for port in 9000 9001; do
  what=direct; [ "$port" = 9001 ] && what="through the ambassador"
  start=$(date +%s%N)
  for _ in $(seq "$N"); do get "$port" index.html; done
  per=$((($(date +%s%N) - start) / N / 1000))
  start=$(date +%s%N)
  get "$port" big
  big=$((($(date +%s%N) - start) / 1000000))
  echo "$what: $N requests ${per} us each (with nc's start), 100 MB in ${big} ms"
done
