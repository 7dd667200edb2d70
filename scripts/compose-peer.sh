#!/usr/bin/env bash
# Make sure docker-compose 1.29 (Debian's `docker-compose` package) is installed: the
# peer the Compose-fidelity tests and scripts/bench-config.sh compare drover against.
# Prints the path of the docker-compose binary. Idempotent; installs only when missing.
set -euo pipefail

say() { echo "compose-peer.sh: $*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Several test processes may call this at once: one installs, the others wait.
LOCK=${TMPDIR:-/tmp}/drover-compose-peer.lock
exec 9>"$LOCK"
flock 9

if ! command -v docker-compose >/dev/null 2>&1; then
  say "installing docker-compose (Debian package)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
fi
command -v docker-compose
