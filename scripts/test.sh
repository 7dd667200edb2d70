#!/usr/bin/env bash
# Run every test: formatting, lints, unit and property tests, and the integration
# tests against real Docker Engines (a local one is installed and started when none
# answers; TLS "node" engines are started by the tests themselves).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/engine.sh
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
# Integration tests wait on real containers: run a few at once.
RUST_TEST_THREADS=${RUST_TEST_THREADS:-4} cargo test --all-targets --locked "$@"
