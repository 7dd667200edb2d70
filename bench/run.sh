#!/usr/bin/env bash
# Benchmarks: drover beside the raw engine floor, Docker Compose v2, Swarm mode and the
# engine's restart policy, on the local engine, in one run. Prints a table and rewrites
# docs/benchmarks.md.
#
#   ./bench/run.sh [--quick] [--only cold,recovery,swarm,burst,footprint] [--json FILE]
#   ./bench/run.sh --only scale [--quick]   drover at scale on the engine simulator (bench/scale.sh)
#
# Needs root (like scripts/engine.sh). Ensures its prerequisites: a running engine with the
# offline test image, Docker Compose v2 (scripts/compose-v2.sh), a release build of drover.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

say() { echo "bench: $*" >&2; }

# The scale run needs no engine: drover against the engine simulator (bench/scale.py).
for a in "$@"; do
  if [[ "$a" == "scale" ]]; then
    exec "$ROOT/bench/scale.sh" "$@"
  fi
done

"$ROOT/scripts/engine.sh"

# The compose peer: Docker Compose v2 at the pinned version, as the docker CLI plugin.
say "compose peer: $("$ROOT/scripts/compose-v2.sh")"
docker compose version >&2
command -v python3 >/dev/null 2>&1 || {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 >/dev/null
}

say "building drover (release)"
cargo build --release --locked --quiet

exec python3 "$ROOT/bench/bench.py" --target-dir "${CARGO_TARGET_DIR:-$ROOT/target}" "$@"
