#!/usr/bin/env bash
# Runs every test of the workspace: unit, integration, doc and property tests (with the fuzz
# target bodies compiled and fed their seeds and regressions), then each cargo-fuzz target for a
# short time. Installs cargo-fuzz if it is missing. Usage: bash scripts/test-all.sh
# FUZZ_SECONDS=N sets the time per fuzz target (default 20; 0 skips fuzzing, and says so).
set -uo pipefail
cd "$(dirname "$0")/.."

fuzz_seconds=${FUZZ_SECONDS:-20}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0

echo "== cargo test --workspace --features iscsi-proto/fuzzing,scsi-core/fuzzing,iscsi-iser/fuzzing,iscsi/fuzzing"
cargo test --workspace --features iscsi-proto/fuzzing,scsi-core/fuzzing,iscsi-iser/fuzzing,iscsi/fuzzing 2>&1 | tee "$log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

passed=$(grep -Eo 'test result: [a-z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '; [0-9]+ failed' "$log" | awk '{s+=$2} END {print s+0}')
ignored=$(grep -Eo '; [0-9]+ ignored' "$log" | awk '{s+=$2} END {print s+0}')

fuzz_pass=0 fuzz_fail=0 fuzz_skip=0
targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^iscsi-fuzz$')
if [ "$fuzz_seconds" = 0 ]; then
  echo "== fuzz: SKIPPED (FUZZ_SECONDS=0)"
  fuzz_skip=$(echo "$targets" | wc -w)
else
  if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked || { echo "cargo-fuzz install failed"; status=1; }
  fi
  for t in $targets; do
    echo "== cargo fuzz run -s none $t (${fuzz_seconds}s)"
    # A scratch corpus: the committed seeds are read, new inputs are not written into the repo.
    scratch=$(mktemp -d)
    if (cd fuzz && cargo fuzz run -s none "$t" "$scratch" "corpus/$t" -- \
          -max_total_time="$fuzz_seconds" -rss_limit_mb=2048 -print_final_stats=1) \
          >"$scratch.log" 2>&1; then
      fuzz_pass=$((fuzz_pass + 1))
      grep -E 'stat::number_of_executed_units|Done [0-9]+ runs' "$scratch.log" | tail -2
    else
      fuzz_fail=$((fuzz_fail + 1)); status=1
      tail -40 "$scratch.log"
      echo "fuzz target $t FAILED (artifacts under fuzz/artifacts/$t)"
    fi
    rm -rf "$scratch" "$scratch.log"
  done
fi

echo
echo "cargo test: $passed passed, $failed failed, $ignored ignored; fuzz targets: $fuzz_pass passed, $fuzz_fail failed, $fuzz_skip skipped"
echo "all: $((passed + fuzz_pass)) passed, $((failed + fuzz_fail)) failed, $fuzz_skip skipped"
exit $status
