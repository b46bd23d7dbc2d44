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
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-8}
PIN=${PIN:-split}
last_cpu=$(( $(nproc) - 1 ))
case $PIN in
  split) [ "$last_cpu" -ge 1 ] || PIN=same ;;
  same|none) ;;
  *) echo "bench-target: PIN must be split, same or none" >&2; exit 1 ;;
esac
case $PIN in
  split) pin_target=(taskset -c "$last_cpu"); pin_client=(taskset -c 0) ;;
  same) pin_target=(taskset -c 0); pin_client=(taskset -c 0) ;;
  none) pin_target=(); pin_client=() ;;
esac
LUN_SIZE=${LUN_SIZE:-1GiB}
WORKLOADS=${WORKLOADS:-"4K rand read QD32:-m 32 -b 8 -r;4K rand read QD1:-m 1 -b 8 -r;128K seq read QD8:-m 8 -b 256"}
IQN_OURS=iqn.2026-11.rs.iscsi:bench
IQN_TGT=iqn.2026-11.rs.iscsi:bench-tgt

die() { echo "bench-target: $*" >&2; exit 1; }
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a whole number of seconds: $DURATION"

for tool in iscsi-perf tgtd tgtadm; do
  command -v "$tool" >/dev/null || die "$tool not found (Debian/Ubuntu: apt-get install tgt libiscsi-bin)"
done
[ "$(id -u)" = 0 ] || die "tgtd needs root"

# LUN_SIZE in bytes.
size_bytes() {
  local s=$1 n unit
  [[ $s =~ ^([0-9]+)([KMGT]i?B?)?$ ]] || die "LUN_SIZE must look like 1GiB, 64MiB or a byte count: $s"
  n=${BASH_REMATCH[1]} unit=${BASH_REMATCH[2]:0:1}
  case $unit in
    K) n=$((n << 10)) ;; M) n=$((n << 20)) ;; G) n=$((n << 30)) ;; T) n=$((n << 40)) ;;
  esac
  echo "$n"
}
lun_bytes=$(size_bytes "$LUN_SIZE")

work=$(mktemp -d /tmp/bench-target.XXXXXX)
shm_file=/dev/shm/bench-target-$$.img
ours_pid="" tgtd_pid="" tgt_ctl="" iperf_pid=""

# shellcheck disable=SC2317 # called from the EXIT trap
stop_pid() { # PID: SIGTERM, then SIGKILL after 5 s
  local pid=$1
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "bench-target: pid $pid ignored SIGTERM; SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317 # the EXIT trap
cleanup() {
  set +e
  [ -n "$iperf_pid" ] && stop_pid "$iperf_pid"
  [ -n "$ours_pid" ] && stop_pid "$ours_pid"
  if [ -n "$tgtd_pid" ]; then
    # tgtd ignores SIGTERM while it has targets: delete them, then the daemon.
    if kill -0 "$tgtd_pid" 2>/dev/null; then
      tgtadm -C "$tgt_ctl" --lld iscsi --mode target --op delete --force --tid 1 >/dev/null 2>&1
      tgtadm -C "$tgt_ctl" --op delete --mode system >/dev/null 2>&1
    fi
    stop_pid "$tgtd_pid"
    rm -f "/var/run/tgtd/socket.$tgt_ctl" "/var/run/tgtd/socket.$tgt_ctl.lock"
  fi
  rm -f "$shm_file"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A TCP port on 127.0.0.1 that nothing listens on.
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
}

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
[ -x "$ours_bin" ] || die "no target binary at $ours_bin"
"${pin_target[@]}" "$ours_bin" --listen 127.0.0.1:0 --iqn "$IQN_OURS" --lun "ram:$LUN_SIZE" \
  >"$work/ours.out" 2>"$work/ours.err" &
ours_pid=$!
ours_url=""
for _ in $(seq 300); do
  ours_url=$(grep -m1 '^iscsi://' "$work/ours.out" || true)
  [ -n "$ours_url" ] && break
  kill -0 "$ours_pid" 2>/dev/null || { cat "$work/ours.err" >&2; die "our target exited"; }
  sleep 0.1
done
[ -n "$ours_url" ] || { tail "$work/ours.err" >&2; die "our target printed no URL in 30 s"; }

# --- tgtd: its own control port (socket /var/run/tgtd/socket.N), one portal on loopback.
tgt_port=$(free_port)
while :; do
  tgt_ctl=$((1000 + RANDOM % 9000))
  [ -e "/var/run/tgtd/socket.$tgt_ctl" ] || break
done
truncate -s "$lun_bytes" "$shm_file"
"${pin_target[@]}" tgtd -f -C "$tgt_ctl" --iscsi "portal=127.0.0.1:$tgt_port" >"$work/tgtd.log" 2>&1 &
tgtd_pid=$!
tgt() { tgtadm -C "$tgt_ctl" --lld iscsi "$@"; }
for _ in $(seq 100); do
  tgt --mode target --op show >/dev/null 2>&1 && break
  kill -0 "$tgtd_pid" 2>/dev/null || { cat "$work/tgtd.log" >&2; die "tgtd exited"; }
  sleep 0.1
done
tgt --mode target --op new --tid 1 --targetname "$IQN_TGT"
tgt --mode logicalunit --op new --tid 1 --lun 1 --backing-store "$shm_file"
tgt --mode target --op bind --tid 1 --initiator-address ALL
tgt_url="iscsi://127.0.0.1:$tgt_port/$IQN_TGT/1"
tgt_version=$(tgtd -V 2>&1 | head -1 || true)

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
  if ! { TIMEFORMAT='%U %S'; time "${pin_client[@]}" timeout $((DURATION + 30)) iscsi-perf $flags -t "$DURATION" "$url" \
        >"$out" 2>&1; } 2>"$work/time"; then
    echo "FAIL: iscsi-perf against $name: $(tr '\r' '\n' <"$out" | grep -v '^ *$' | tail -2 | tr '\n' ' ')" >&2
    echo "FAIL"
    return
  fi
  cpu1=$(cpu_seconds "$pid")
  iops=$(tr '\r' '\n' <"$out" | sed -n 's/^iops average \([0-9]*\) .*/\1/p' | tail -1)
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
