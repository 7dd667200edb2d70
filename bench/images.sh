#!/usr/bin/env bash
# Following image tags against a real private registry: push -> every replica on the new
# digest, and the registry requests of an idle check, beside watchtower's behaviour.
#
#   ./bench/images.sh [--quick] [--every 5s] [--json FILE]
#
# Needs root (like scripts/engine.sh). Ensures the engine with the offline test image, the
# registry (scripts/registry.sh, called by the program) and a release build of drover.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
"$ROOT/scripts/engine.sh"
echo "images: building drover (release)" >&2
cargo build --release --locked --quiet
exec python3 "$ROOT/bench/images.py" --target-dir "${CARGO_TARGET_DIR:-$ROOT/target}" "$@"
