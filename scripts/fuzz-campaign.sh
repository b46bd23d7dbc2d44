#!/bin/bash
# A long fuzz campaign (not part of CI): every cargo-fuzz target in turn for MINUTES each,
# ROUNDS times, keeping the grown corpus in target/fuzz-corpus/TARGET between rounds. Prints one
# line per run (executions, and the crash file if there was one) and the totals at the end.
# Exits 1 if any run found a crash (the input is in fuzz/artifacts/TARGET/; copy it to
# fuzz/regressions/TARGET/ once fixed).
#
#   MINUTES=8 ROUNDS=1 CPU=1 bash scripts/fuzz-campaign.sh
#
# CPU pins the fuzzer to one core (taskset) so the machine stays usable.
set -u
cd "$(dirname "$0")/.."
minutes=${MINUTES:-8}
rounds=${ROUNDS:-1}
pin=()
if [ -n "${CPU:-}" ]; then pin=(taskset -c "$CPU"); fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^iscsi-fuzz$')
(cd fuzz && cargo fuzz build -s none) || exit 1
declare -A execs
total=0 crashes=0
for round in $(seq "$rounds"); do
    for t in $targets; do
        corpus=target/fuzz-corpus/$t
        mkdir -p "$corpus" "fuzz/artifacts/$t"
        before=$(ls "fuzz/artifacts/$t" | wc -l)
        out=$(cd fuzz && "${pin[@]}" cargo fuzz run -s none "$t" "../$corpus" "corpus/$t" -- \
            -max_total_time=$((minutes * 60)) -rss_limit_mb=2048 -print_final_stats=1 2>&1)
        rc=$?
        n=$(echo "$out" | sed -n 's/^stat::number_of_executed_units: *//p' | tail -1)
        n=${n:-0}
        execs[$t]=$(( ${execs[$t]:-0} + n ))
        total=$((total + n))
        after=$(ls "fuzz/artifacts/$t" | wc -l)
        if [ "$rc" -ne 0 ] || [ "$after" -gt "$before" ]; then
            crashes=$((crashes + 1))
            echo "$(date +%T) round $round $t: $n executions, CRASH (exit $rc): $(ls -t "fuzz/artifacts/$t" | head -1)"
            echo "$out" | grep -E 'panicked|ERROR|SUMMARY' | head -5
        else
            echo "$(date +%T) round $round $t: $n executions"
        fi
    done
done
echo "== totals"
for t in $targets; do printf '%-20s %15d\n' "$t" "${execs[$t]:-0}"; done
printf '%-20s %15d\n' all "$total"
echo "crashes: $crashes"
[ "$crashes" -eq 0 ]
