# shellcheck shell=bash
# Shared by scripts/bench-target.sh and scripts/bench-initiator.sh, which source it; it does
# nothing when run on its own. Before sourcing, a script sets BENCH_NAME: its name, the prefix
# of its messages and of its temporary files. Sourcing only defines functions; they read the
# script's DURATION, PIN, LUN_SIZE and IQN_TGT.

# die MESSAGE: on stderr, prefixed with the script's name; exit 1.
die() { echo "$BENCH_NAME: $*" >&2; exit 1; }

# Checks PIN (split falls back to same on one CPU) and sets pin_target and pin_client, the
# command prefixes that place the targets and the clients.
bench_pin() {
  local last_cpu
  last_cpu=$(( $(nproc) - 1 ))
  case $PIN in
    split) [ "$last_cpu" -ge 1 ] || PIN=same ;;
    same|none) ;;
    *) die "PIN must be split, same or none" ;;
  esac
  case $PIN in
    split) pin_target=(taskset -c "$last_cpu"); pin_client=(taskset -c 0) ;;
    same) pin_target=(taskset -c 0); pin_client=(taskset -c 0) ;;
    none) pin_target=(); pin_client=() ;;
  esac
}

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

# Makes the work directory ($work) and names tgtd's LUN file ($shm_file), both removed on exit
# with everything started here (ours_pid, tgtd_pid, iperf_pid, stopped by PID).
bench_begin() {
  work=$(mktemp -d "/tmp/$BENCH_NAME.XXXXXX")
  shm_file=/dev/shm/$BENCH_NAME-$$.img
  ours_pid="" tgtd_pid="" tgt_ctl="" iperf_pid=""
  trap cleanup EXIT
  trap 'exit 130' INT TERM
}

# shellcheck disable=SC2317 # called from the EXIT trap
stop_pid() { # PID: SIGTERM, then SIGKILL after 5 s
  local pid=$1
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "$BENCH_NAME: pid $pid ignored SIGTERM; SIGKILL" >&2
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

# A TCP port on 127.0.0.1 that nothing listens on.
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
}

# start_ours BIN IQN: our target on a free loopback port with a LUN ram:LUN_SIZE, placed by
# pin_target; sets ours_pid and ours_url (the URL it prints).
start_ours() {
  local bin=$1 iqn=$2
  [ -x "$bin" ] || die "no target binary at $bin"
  "${pin_target[@]}" "$bin" --listen 127.0.0.1:0 --iqn "$iqn" --lun "ram:$LUN_SIZE" \
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
}

tgt() { tgtadm -C "$tgt_ctl" --lld iscsi "$@"; }

# start_tgtd BYTES: tgtd with its own control port (socket /var/run/tgtd/socket.N) and one
# portal on loopback, placed by pin_target, serving target IQN_TGT with LUN 1 on $shm_file (a
# sparse file of BYTES); sets tgtd_pid, tgt_ctl, tgt_url and tgt_version.
start_tgtd() {
  local bytes=$1 port
  port=$(free_port)
  while :; do
    tgt_ctl=$((1000 + RANDOM % 9000))
    [ -e "/var/run/tgtd/socket.$tgt_ctl" ] || break
  done
  truncate -s "$bytes" "$shm_file"
  "${pin_target[@]}" tgtd -f -C "$tgt_ctl" --iscsi "portal=127.0.0.1:$port" >"$work/tgtd.log" 2>&1 &
  tgtd_pid=$!
  for _ in $(seq 100); do
    tgt --mode target --op show >/dev/null 2>&1 && break
    kill -0 "$tgtd_pid" 2>/dev/null || { cat "$work/tgtd.log" >&2; die "tgtd exited"; }
    sleep 0.1
  done
  tgt --mode target --op new --tid 1 --targetname "$IQN_TGT"
  tgt --mode logicalunit --op new --tid 1 --lun 1 --backing-store "$shm_file"
  tgt --mode target --op bind --tid 1 --initiator-address ALL
  # shellcheck disable=SC2034 # tgt_url and tgt_version are for the sourcing script
  tgt_url="iscsi://127.0.0.1:$port/$IQN_TGT/1" tgt_version=$(tgtd -V 2>&1 | head -1 || true)
}

# client_run WHAT OUT CMD...: CMD placed by pin_client, with a timeout of DURATION + 30 s, its
# output in OUT and its user and system CPU seconds in $work/time. If it fails: a line
# "FAIL: WHAT: <its last output>" on stderr, FAIL on stdout, and status 1.
client_run() {
  local what=$1 out=$2
  shift 2
  if ! { TIMEFORMAT='%U %S'; time "${pin_client[@]}" timeout $((DURATION + 30)) "$@" \
        >"$out" 2>&1; } 2>"$work/time"; then
    echo "FAIL: $what: $(tr '\r' '\n' <"$out" | grep -v '^ *$' | tail -2 | tr '\n' ' ')" >&2
    echo "FAIL"
    return 1
  fi
}

# iops_average OUT: N of the last "iops average N (...)" in the output of iscsi-perf or
# `initiator bench` (empty if none).
iops_average() {
  tr '\r' '\n' <"$1" | sed -n 's/^iops average \([0-9.]*\) .*/\1/p' | tail -1
}
