#!/usr/bin/env bash
# Benchmarks the `initiator` example (`initiator bench`) against libiscsi's iscsi-perf, READs
# only, on loopback, both against the SAME target: tgtd (started here, LUN on a sparse file in
# /dev/shm) and/or our `target` example (a RAM LUN). Each workload runs A B A B (A = our
# initiator, B = iscsi-perf) and the table shows the mean of the two runs of each, the ratio,
# and each initiator's CPU time per IO (user+system, from bash's `time`).
#
# Usage: bash scripts/bench-initiator.sh         (TARGET=tgtd or both needs root and tgt;
#                                                  Debian: apt-get install tgt libiscsi-bin)
# Environment:
#   TARGET=both      ours, tgtd or both: which targets to measure against
#   DURATION=8       seconds per run (initiator bench --duration, iscsi-perf -t)
#   LUN_SIZE=1GiB    LUN size: N, NKiB, NMiB, NGiB (ours gets ram:LUN_SIZE)
#   INITIATOR_BIN=path, TARGET_BIN=path  use these binaries instead of building them
#                    (cargo build --release)
#   WORKLOADS="NAME:RW:BYTES:DEPTH;..." replaces the default workloads (RW: randread or
#                    seqread; BYTES per command; DEPTH commands in flight)
#   PIN=split        CPU placement, the same for both initiators: split = the target on the last
#                    CPU, the initiator on CPU 0 (default; needs 2+ CPUs); same = all on CPU 0;
#                    none = the scheduler decides (see scripts/bench-target.sh).
# Only loopback addresses are used. Everything started here is stopped on exit, by PID.
# The code it shares with scripts/bench-target.sh is in scripts/bench-lib.sh.
set -euo pipefail
BENCH_NAME=bench-initiator
# shellcheck source=SCRIPTDIR/bench-lib.sh
source "$(dirname "$0")/bench-lib.sh"
cd "$(dirname "$0")/.."

TARGET=${TARGET:-both}
DURATION=${DURATION:-8}
PIN=${PIN:-split}
LUN_SIZE=${LUN_SIZE:-1GiB}
WORKLOADS=${WORKLOADS:-"4K rand read QD32:randread:4096:32;4K rand read QD1:randread:4096:1;128K seq read QD8:seqread:131072:8"}
IQN_OURS=iqn.2026-11.rs.iscsi:bench
IQN_TGT=iqn.2026-11.rs.iscsi:bench-tgt

[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a whole number of seconds: $DURATION"
case $TARGET in
  ours) want_ours=1 want_tgt=0 ;;
  tgtd) want_ours=0 want_tgt=1 ;;
  both) want_ours=1 want_tgt=1 ;;
  *) die "TARGET must be ours, tgtd or both: $TARGET" ;;
esac
bench_pin

command -v iscsi-perf >/dev/null || die "iscsi-perf not found (Debian/Ubuntu: apt-get install libiscsi-bin)"
if [ "$want_tgt" = 1 ]; then
  for tool in tgtd tgtadm; do
    command -v "$tool" >/dev/null || die "$tool not found (Debian/Ubuntu: apt-get install tgt; or TARGET=ours)"
  done
  [ "$(id -u)" = 0 ] || die "tgtd needs root (TARGET=ours runs without it)"
fi

lun_bytes=$(size_bytes "$LUN_SIZE")

# Check the workloads before starting anything.
IFS=';' read -ra wl_list <<<"$WORKLOADS"
for wl in "${wl_list[@]}"; do
  IFS=':' read -r _ rw bytes depth extra <<<"$wl"
  [ -z "${extra:-}" ] || die "bad workload (NAME:RW:BYTES:DEPTH): $wl"
  [[ $rw == randread || $rw == seqread ]] || die "workload RW must be randread or seqread: $wl"
  [[ $bytes =~ ^[1-9][0-9]*$ && $depth =~ ^[1-9][0-9]*$ ]] || die "bad BYTES or DEPTH: $wl"
done

bench_begin

# --- binaries
build=()
[ -n "${INITIATOR_BIN:-}" ] || build+=(--bin initiator)
[ "$want_ours" = 0 ] || [ -n "${TARGET_BIN:-}" ] || build+=(--bin target)
if [ "${#build[@]}" -gt 0 ]; then
  echo "== cargo build --release -p iscsi-examples ${build[*]}"
  cargo build --release -p iscsi-examples "${build[@]}"
fi
initiator_bin=${INITIATOR_BIN:-${CARGO_TARGET_DIR:-target}/release/initiator}
[ -x "$initiator_bin" ] || die "no initiator binary at $initiator_bin"

targets=()
# --- our target
if [ "$want_ours" = 1 ]; then
  ours_bin=${TARGET_BIN:-${CARGO_TARGET_DIR:-target}/release/target}
  start_ours "$ours_bin" "$IQN_OURS"
  echo "ours: $ours_url (pid $ours_pid, ram:$LUN_SIZE)"
  targets+=("ours|$ours_url")
fi

# --- tgtd
if [ "$want_tgt" = 1 ]; then
  start_tgtd "$lun_bytes"
  echo "tgt:  $tgt_url (pid $tgtd_pid, $tgt_version, $lun_bytes-byte sparse file in /dev/shm)"
  targets+=("tgtd|$tgt_url")
fi

echo "$DURATION s per run, order A B A B (A = initiator bench, B = iscsi-perf); $(nproc) CPUs, PIN=$PIN"
echo

# block_size URL: from `initiator readcap` (iscsi-perf's -b counts blocks).
block_size() {
  local out
  out=$("$initiator_bin" readcap "$1" 2>&1) || die "initiator readcap $1: $out"
  sed -n 's/^block size: *\([0-9]*\)$/\1/p' <<<"$out"
}

# run_one KIND URL RW BYTES DEPTH BS -> "IOPS client_cpu_s" or "FAIL"
# KIND: ours (initiator bench) or perf (iscsi-perf). Both print a final "iops average N (...)".
run_one() {
  local kind=$1 url=$2 rw=$3 bytes=$4 depth=$5 bs=$6 out=$work/run.out iops times
  local cmd
  if [ "$kind" = ours ]; then
    cmd=("$initiator_bin" bench "$url" --rw "$rw" --bs "$bytes" --depth "$depth" --duration "$DURATION")
  else
    cmd=(iscsi-perf -m "$depth" -b $((bytes / bs)) -t "$DURATION")
    [ "$rw" = randread ] && cmd+=(-r)
    cmd+=("$url")
  fi
  client_run "${cmd[*]}" "$out" "${cmd[@]}" || return 0
  iops=$(iops_average "$out")
  if [ -z "$iops" ]; then
    echo "FAIL: cannot find 'iops average' in the output of ${cmd[*]}" >&2
    echo "FAIL"
    return
  fi
  times=$(tail -1 "$work/time")
  awk -v i="$iops" -v t="$times" 'BEGIN { split(t, u, " "); printf "%.0f %.2f\n", i, u[1] + u[2] }'
}

fmt_run() { # "IOPS cpu" BYTES -> readable
  if [ "$1" = FAIL ]; then echo "FAIL"; return; fi
  awk -v r="$1" -v b="$2" -v d="$DURATION" 'BEGIN { split(r, v, " ");
    printf "%7d IOPS %8.1f MB/s, client %5.2f us/IO", v[1], v[1] * b / 1e6, (v[1] > 0 ? v[2] * 1e6 / (v[1] * d) : 0) }'
}

status=0
rows=()
for t in "${targets[@]}"; do
  tname=${t%%|*} url=${t#*|}
  bs=$(block_size "$url")
  [[ $bs =~ ^[1-9][0-9]*$ ]] || die "no block size from initiator readcap $url"
  for wl in "${wl_list[@]}"; do
    IFS=':' read -r name rw bytes depth <<<"$wl"
    if (( bytes % bs != 0 )); then
      echo "bench-initiator: $name: $bytes bytes is not a whole number of $bs-byte blocks on $tname" >&2
      status=1
      continue
    fi
    declare -a res_a=() res_b=()
    for round in 1 2; do
      a=$(run_one ours "$url" "$rw" "$bytes" "$depth" "$bs")
      b=$(run_one perf "$url" "$rw" "$bytes" "$depth" "$bs")
      printf '%-5s %-18s run %d  ours %-50s  iscsi-perf %s\n' "$tname" "$name" "$round" \
        "$(fmt_run "$a" "$bytes")" "$(fmt_run "$b" "$bytes")"
      res_a+=("$a") res_b+=("$b")
    done
    if [[ " ${res_a[*]} ${res_b[*]} " == *FAIL* ]]; then
      status=1
      rows+=("$(printf '%-5s %-18s %s' "$tname" "$name" "FAILED (see above)")")
      continue
    fi
    rows+=("$(awk -v t="$tname" -v name="$name" -v d="$DURATION" -v b="$bytes" \
      -v a1="${res_a[0]}" -v a2="${res_a[1]}" -v b1="${res_b[0]}" -v b2="${res_b[1]}" 'BEGIN {
        split(a1, x, " "); split(a2, y, " "); split(b1, p, " "); split(b2, q, " ")
        ai = (x[1] + y[1]) / 2; ac = x[2] + y[2]
        bi = (p[1] + q[1]) / 2; bc = p[2] + q[2]
        ios_a = ai * 2 * d; ios_b = bi * 2 * d
        printf "%-5s %-18s %9.0f %9.0f %7.2fx %9.1f %9.1f %7.2f %7.2f",
          t, name, ai, bi, (bi > 0 ? ai / bi : 0), ai * b / 1e6, bi * b / 1e6,
          (ios_a > 0 ? ac * 1e6 / ios_a : 0), (ios_b > 0 ? bc * 1e6 / ios_b : 0)
      }')")
  done
done

echo
printf '%-5s %-18s %9s %9s %8s %9s %9s %7s %7s\n' target workload ours-IOPS perf-IOPS ours/perf \
  ours-MB/s perf-MB/s ours-us perf-us
for r in "${rows[@]}"; do echo "$r"; done
echo
echo "ours: initiator bench; perf: libiscsi's iscsi-perf; both against the same target. IOPS,"
echo "MB/s (10^6 bytes/s): mean of the 2 runs of each; -us: the initiator's CPU microseconds"
echo "(user+system) per IO over its 2 runs."
exit "$status"
