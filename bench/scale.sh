#!/usr/bin/env bash
# drover at scale on the engine simulator (drover-sim): thousands of containers over dozens
# of simulated engines. Builds the release binaries, runs bench/scale.py, prints the table
# and rewrites the scale section of docs/benchmarks.md.
#
#   ./bench/scale.sh [--quick] [--sizes 1000,10000] [--engines 1,10,50] [--json FILE]
#   ./bench/scale.sh --sizes 100,10000 --engines 50 --rounds 4 --no-doc   # two sizes against
#                                                   # the noise between runs of one size
#
# Needs no engine, no root and no network.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
echo "bench: building drover and drover-sim (release)" >&2
cargo build --release --locked --quiet --bin drover --bin drover-sim
exec python3 "$ROOT/bench/scale.py" --target-dir "${CARGO_TARGET_DIR:-$ROOT/target}" "$@"
