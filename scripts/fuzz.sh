#!/bin/sh
# Fuzz the config loader and Compose interpolation for a bounded time (not part of CI's
# default run). Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
# Needs a nightly toolchain; installs cargo-fuzz when missing. Crashes are written to
# fuzz/artifacts/<target>/: turn each into a file in tests/fixtures/broken/ (with its
# expected error in tests/bad_input.rs) once fixed.
set -eu
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-"config_load interpolation"}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
status=0
for t in $targets; do
    echo "== $t for ${secs}s"
    mkdir -p "corpus/$t"
    # New inputs go to a scratch directory: the corpus in the repository stays small and
    # reviewed. -timeout and -rss_limit_mb turn slow or greedy inputs into findings.
    scratch=$(mktemp -d)
    cargo +nightly fuzz run "$t" "$scratch" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=2 -rss_limit_mb=1024 -max_len=65536 || status=1
    rm -rf "$scratch"
done
exit $status
