#!/usr/bin/env bash
# Benchmarks the `target` example against tgtd with libiscsi's iscsi-perf (READs only), on
# loopback. Both serve a LUN of LUN_SIZE: ours from RAM, tgtd from a sparse file in /dev/shm.
# Each workload runs A B A B (ours, tgtd, ours, tgtd) and the table shows the mean of the two
# runs of each, the ratio, and each target's CPU time (utime+stime from /proc/PID/stat) during
# its own runs. If iperf3 is installed, the loopback TCP ceiling is measured too.
#
# Usage: bash scripts/bench-target.sh            (needs root for tgtd; Debian: apt-get install
#                                                 tgt libiscsi-bin, optionally iperf3)
# Environment:
#   DURATION=8       seconds per iscsi-perf run (iscsi-perf -t)
#   LUN_SIZE=1GiB    LUN size: N, NKiB, NMiB, NGiB (ours gets ram:LUN_SIZE)
#   TARGET_BIN=path  use this target binary instead of building it (cargo build --release)
#   WORKLOADS="NAME:FLAGS;..." replaces the default workloads (FLAGS for iscsi-perf)
#   PIN=split        CPU placement, the same for both targets: split = targets on the last CPU,
#                    iscsi-perf on CPU 0 (default; needs 2+ CPUs); same = all on CPU 0; none =
#                    the scheduler decides. On this VM a cross-CPU wake-up costs ~70 us, so an
#                    unpinned QD1 run measures where the scheduler put the processes.
# Only loopback addresses are used. Everything started here is stopped on exit, by PID.
# The code it shares with scripts/bench-initiator.sh is in scripts/bench-lib.sh.
set -euo pipefail
BENCH_NAME=bench-target
# shellcheck source=SCRIPTDIR/bench-lib.sh
source "$(dirname "$0")/bench-lib.sh"
cd "$(dirname "$0")/.."

DURATION=${DURATION:-8}
PIN=${PIN:-split}
bench_pin
LUN_SIZE=${LUN_SIZE:-1GiB}
WORKLOADS=${WORKLOADS:-"4K rand read QD32:-m 32 -b 8 -r;4K rand read QD1:-m 1 -b 8 -r;128K seq read QD8:-m 8 -b 256"}
IQN_OURS=iqn.2026-11.rs.iscsi:bench
IQN_TGT=iqn.2026-11.rs.iscsi:bench-tgt

[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a whole number of seconds: $DURATION"

for tool in iscsi-perf tgtd tgtadm; do
  command -v "$tool" >/dev/null || die "$tool not found (Debian/Ubuntu: apt-get install tgt libiscsi-bin)"
done
[ "$(id -u)" = 0 ] || die "tgtd needs root"

lun_bytes=$(size_bytes "$LUN_SIZE")

bench_begin

# CPU seconds (user+system, all threads) used so far by PID.
clk_tck=$(getconf CLK_TCK)
cpu_seconds() {
  local stat
  stat=$(cat "/proc/$1/stat") || die "process $1 is gone"
  # Fields after the ")" that ends the command name: 12 is utime, 13 stime (stat(5) 14, 15).
  awk -v tck="$clk_tck" '{ print ($12 + $13) / tck }' <<<"${stat##*) }"
}

# --- our target
if [ -n "${TARGET_BIN:-}" ]; then
  ours_bin=$TARGET_BIN
else
  echo "== cargo build --release -p iscsi-examples --bin target"
  cargo build --release -p iscsi-examples --bin target
  ours_bin=${CARGO_TARGET_DIR:-target}/release/target
fi
start_ours "$ours_bin" "$IQN_OURS"

# --- tgtd
start_tgtd "$lun_bytes"

# --- optional TCP ceiling
iperf_line="iperf3 not installed: loopback TCP ceiling not measured"
iperf_mbps=""
if command -v iperf3 >/dev/null; then
  iperf_port=$(free_port)
  # Placed like the targets; -R: the server (where the targets run) sends, as a target's
  # read data does.
  "${pin_target[@]}" iperf3 -s -1 -B 127.0.0.1 -p "$iperf_port" >/dev/null 2>&1 &
  iperf_pid=$!
  sleep 0.5
  if "${pin_client[@]}" iperf3 -c 127.0.0.1 -p "$iperf_port" -R -t 5 -f M >"$work/iperf.out" 2>&1; then
    # "[  5]   0.00-5.00   sec  10.1 GBytes  2069 MBytes/sec   receiver"
    iperf_mbps=$(awk '/receiver/ { for (i = 1; i <= NF; i++) if ($i == "MBytes/sec") v = $(i-1) } END { print v }' "$work/iperf.out")
    # MBytes here are MiB: to 10^6 bytes per second.
    iperf_mbps=$(awk -v m="$iperf_mbps" 'BEGIN { printf "%.0f", m * 1048576 / 1e6 }')
    iperf_line="iperf3 loopback, 1 stream, server sending (-R), 5 s: $iperf_mbps MB/s"
  else
    iperf_line="iperf3 failed: $(tail -1 "$work/iperf.out")"
  fi
  wait "$iperf_pid" 2>/dev/null || true
  iperf_pid=""
fi

echo "ours: $ours_url (pid $ours_pid, ram:$LUN_SIZE)"
echo "tgt:  $tgt_url (pid $tgtd_pid, $tgt_version, $lun_bytes-byte sparse file in /dev/shm)"
echo "iscsi-perf -t $DURATION per run, order A B A B (A = ours, B = tgtd); $(nproc) CPUs, PIN=$PIN"
echo "$iperf_line"
echo

# run_perf NAME URL PID FLAGS -> "IOPS MBps target_cpu_s client_cpu_s" (or "FAIL ...")
run_perf() {
  local name=$1 url=$2 pid=$3 flags=$4 out=$work/perf.out cpu0 cpu1 iops bs blocks times
  cpu0=$(cpu_seconds "$pid")
  # shellcheck disable=SC2086 # FLAGS are words
  client_run "iscsi-perf against $name" "$out" iscsi-perf $flags -t "$DURATION" "$url" || return 0
  cpu1=$(cpu_seconds "$pid")
  iops=$(iops_average "$out")
  # "capacity is N blocks or B byte": block size = B / N
  bs=$(sed -n 's/^capacity is \([0-9]*\) blocks or \([0-9]*\) byte.*/\2 \1/p' "$out" | awk '{ print $1 / $2 }')
  blocks=$(sed -n 's/^FIXED transfer size of \([0-9]*\) blocks.*/\1/p' "$out")
  if [ -z "$iops" ] || [ -z "$bs" ] || [ -z "$blocks" ]; then
    echo "FAIL: cannot parse the iscsi-perf output against $name" >&2
    echo "FAIL"
    return
  fi
  times=$(tail -1 "$work/time")
  awk -v i="$iops" -v bs="$bs" -v b="$blocks" -v c0="$cpu0" -v c1="$cpu1" -v t="$times" \
    'BEGIN { split(t, u, " "); printf "%d %.1f %.2f %.2f\n", i, i * bs * b / 1e6, c1 - c0, u[1] + u[2] }'
}

fmt_run() { # "IOPS MBps cpu client" -> readable
  if [ "$1" = FAIL ]; then echo "FAIL"; return; fi
  awk -v r="$1" 'BEGIN { split(r, v, " "); printf "%7d IOPS %7.1f MB/s, target CPU %5.2f s", v[1], v[2], v[3] }'
}

status=0
rows=()
IFS=';' read -ra wl_list <<<"$WORKLOADS"
for wl in "${wl_list[@]}"; do
  name=${wl%%:*} flags=${wl#*:}
  declare -a res_a=() res_b=()
  for round in 1 2; do
    a=$(run_perf ours "$ours_url" "$ours_pid" "$flags")
    b=$(run_perf tgtd "$tgt_url" "$tgtd_pid" "$flags")
    printf '%-18s run %d  ours %-45s  tgt %s\n' "$name" "$round" "$(fmt_run "$a")" "$(fmt_run "$b")"
    res_a+=("$a") res_b+=("$b")
  done
  if [[ " ${res_a[*]} ${res_b[*]} " == *FAIL* ]]; then
    status=1
    rows+=("$(printf '%-18s %s' "$name" "FAILED (see above)")")
    continue
  fi
  rows+=("$(awk -v name="$name" -v d="$DURATION" -v ceil="$iperf_mbps" \
    -v a1="${res_a[0]}" -v a2="${res_a[1]}" -v b1="${res_b[0]}" -v b2="${res_b[1]}" 'BEGIN {
      split(a1, x, " "); split(a2, y, " "); split(b1, p, " "); split(b2, q, " ")
      ai = (x[1] + y[1]) / 2; am = (x[2] + y[2]) / 2; ac = x[3] + y[3]; acl = x[4] + y[4]
      bi = (p[1] + q[1]) / 2; bm = (p[2] + q[2]) / 2; bc = p[3] + q[3]; bcl = p[4] + q[4]
      ios_a = ai * 2 * d; ios_b = bi * 2 * d
      pct = (ceil > 0) ? sprintf("%3.0f/%-3.0f", 100 * am / ceil, 100 * bm / ceil) : "-"
      printf "%-18s %9.0f %9.0f %7.2fx %9.1f %9.1f %7.2f %7.2f %7.1f %7.1f %5.2f/%-5.2f %9s",
        name, ai, bi, (bi > 0 ? ai / bi : 0), am, bm, ac, bc,
        (ios_a > 0 ? ac * 1e6 / ios_a : 0), (ios_b > 0 ? bc * 1e6 / ios_b : 0), acl / (2 * d), bcl / (2 * d), pct
    }')")
done

echo
printf '%-18s %9s %9s %8s %9s %9s %7s %7s %7s %7s %11s %9s\n' workload ours-IOPS tgt-IOPS ours/tgt \
  ours-MB/s tgt-MB/s ours-CPU tgt-CPU ours-us tgt-us client-CPU %TCP
for r in "${rows[@]}"; do echo "$r"; done
echo
echo "IOPS, MB/s (10^6 bytes/s): mean of the 2 runs of each target; -CPU: the target's CPU seconds"
echo "(user+system) over its 2 runs; -us: its CPU microseconds per IO; client-CPU: cores iscsi-perf"
echo "used against ours/tgt; %TCP: MB/s as a share of the iperf3 loopback ceiling, ours/tgt."
[ -n "$iperf_mbps" ] || echo "$iperf_line"
exit "$status"
