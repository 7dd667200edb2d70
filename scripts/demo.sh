#!/usr/bin/env bash
# Quick start: run drover on examples/demo against the local engine (started first
# when none answers). Ctrl-C stops drover; the demo containers keep running until
# `docker rm -f $(docker ps -aq --filter label=drover.project=demo)`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/engine.sh
cargo build --release --locked
cd examples/demo
exec ../../target/release/drover run -f compose.yml --scale-file scale.yml "$@"
