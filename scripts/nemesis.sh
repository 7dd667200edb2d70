#!/usr/bin/env bash
# The long form of the random fault run (tests/nemesis.rs): three drovers on five nodes,
# a seeded schedule of kills, restarts, partitions and freezes, the invariants checked
# after every settle. Not part of CI's default run (CI runs 4 rounds). Run as root, like
# the other multi-node tests.
#
#   scripts/nemesis.sh [--rounds N] [--seed S] [--minutes M]
#
# Defaults: 50 rounds, seed 15, at most 60 minutes (the run is killed then and the script
# fails). Prints one line per round (faults, how long they were held, time to settle after
# healing, leader and term) and a summary; a failure names the seed and the round to rerun.
# The whole output (with the drovers' logs on a failure) goes to target/nemesis-seedS.log.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=50
seed=15
minutes=60
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        --minutes) minutes=$2; shift 2 ;;
        -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "nemesis.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
for v in "$rounds" "$seed" "$minutes"; do
    [[ $v =~ ^[0-9]+$ ]] || { echo "nemesis.sh: not a number: $v" >&2; exit 2; }
done

./scripts/engine.sh >/dev/null
cargo test --locked --no-run --test nemesis
echo "nemesis: seed $seed, $rounds rounds, at most $minutes minutes"
start=$(date +%s)
log=target/nemesis-seed$seed.log
status=0
DROVER_NEMESIS_SEED=$seed DROVER_NEMESIS_ROUNDS=$rounds \
    timeout --signal=INT --kill-after=30 "$((minutes * 60))" \
    cargo test --locked --test nemesis random_faults -- --nocapture 2>&1 |
    tee "$log" | grep --line-buffered -E '^nemesis|^test |panicked|^test result' || status=$?
echo "nemesis: finished in $(( $(date +%s) - start ))s, status $status; full output in $log"
exit $status
