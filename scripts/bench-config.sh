#!/usr/bin/env bash
# Load and validate a generated Compose file of N services (default 300) with
# `drover check`, and the same file with `docker compose config` (Docker Compose v2 at
# the version scripts/compose-v2.sh pins, installed when missing). Prints the best of R
# runs of each (default 5).
# Usage: scripts/bench-config.sh [SERVICES] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-300}
RUNS=${2:-5}
COMPOSE=$(./scripts/compose-v2.sh)
VERSION=$("$COMPOSE" version --short)
cargo build --release --quiet
DROVER=$(realpath "${CARGO_TARGET_DIR:-target}")/release/drover

DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
{
  echo "x-common: &common"
  echo "  image: \${REGISTRY:-docker.io}/library/busybox:\${TAG:-1.36}"
  echo "  stop_grace_period: 5s"
  echo "  healthcheck: {test: [\"CMD\", \"true\"], interval: 30s, timeout: 5s, retries: 3}"
  echo "  logging: {driver: json-file, options: {max-size: 1m}}"
  echo "services:"
  for i in $(seq 1 "$N"); do
    cat <<SVC
  svc$i:
    <<: *common
    command: ["sh", "-c", "sleep 1d"]
    environment: {INDEX: "$i", MODE: "\${MODE:-prod}", PEER: svc$(( i % N + 1 ))}
    labels: ["bench.index=$i", "bench.group=g$(( i % 10 ))"]
    ports: ["$(( 20000 + i )):80", "127.0.0.1::9000/udp"]
    volumes: ["./data/$i:/data:ro", "cache$(( i % 10 )):/cache"]
    networks: [front, back]
    ulimits: {nofile: {soft: 1024, hard: 2048}}
    cap_add: [NET_ADMIN]
    deploy: {replicas: $(( i % 3 + 1 )), resources: {limits: {cpus: "0.25", memory: 64m}}}
SVC
    if [ "$i" -gt 1 ]; then echo "    depends_on: [svc$(( i - 1 ))]"; fi
  done
  echo "networks: {front: {}, back: {}}"
  echo "volumes:"
  for g in $(seq 0 9); do echo "  cache$g: {}"; done
} >"$DIR/compose.yml"

best() { # command...: best wall time of $RUNS runs, in ms
  local best=999999999 start end
  for _ in $(seq 1 "$RUNS"); do
    start=$(date +%s%N)
    "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; "$@" >&2; exit 1; }
    end=$(date +%s%N)
    (( (end - start) / 1000000 < best )) && best=$(( (end - start) / 1000000 ))
  done
  echo "$best"
}

cd "$DIR"
d=$(best env -i PATH="$PATH" "$DROVER" check --format json -f compose.yml)
c=$(best env -i PATH="$PATH" HOME="$HOME" "$COMPOSE" -f compose.yml config --format json)
echo "services: $N ($(wc -l <compose.yml) lines), best of $RUNS runs"
echo "drover check --format json:  ${d} ms"
echo "docker compose $VERSION config --format json:  ${c} ms"
