#!/usr/bin/env bash
# Runs inside the lab VM (see lab/run.sh): builds the test network (a veth pair, soft-RoCE on
# it), starts our targets and LIO, drives them with the Linux kernel initiator (open-iscsi)
# and with our initiator, and writes the results to target/lab/results/ in the repository.
#
# Scenarios (LAB_SCENARIOS, default "a b c d"):
#   a  our target over TCP <- the kernel initiator: discovery; login without CHAP, with CHAP,
#      with mutual CHAP (and wrong secrets refused); fio random writes verified with CRC32C;
#      mkfs.ext4, files copied, fsck clean; logout, log in again, files read back.
#   b  the same over iSER (iscsiadm -I iser) against our target's iSER datamover.
#   c  our initiator -> LIO (fileio on a RAM file): INQUIRY, data written and read back,
#      bench; over TCP and over iSER.
#   d  relative performance: fio through the kernel initiator against our target and LIO,
#      TCP and iSER, printed as a table of ratios.
# Only addresses of the VM's own veth link (192.0.2.0/24) are used; the VM has no network.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
ROOT=$1
R=$ROOT/target/lab/results
mkdir -p "$R"
: >"$R/booted"
exec > >(tee "$R/guest.log") 2>&1
SCEN=" ${LAB_SCENARIOS:-a b c d} "
BIN=$ROOT/target/release
ADDR=192.0.2.1
SUMMARY=$R/summary.txt
: >"$SUMMARY"
FAILS=0
cd /tmp || exit 1

note() { echo "$*" | tee -a "$SUMMARY"; }
# step WANT DESCRIPTION COMMAND...: runs the command (output to steps.log) and records PASS
# when it succeeded (WANT ok) or failed (WANT fail), FAIL otherwise.
step() {
  local want=$1 what=$2 ok=fail
  shift 2
  echo "--- ($want) $what: $*" >>"$R/steps.log"
  "$@" >>"$R/steps.log" 2>&1 && ok=ok
  if [ "$ok" = "$want" ]; then
    note "PASS  $what"
    return 0
  fi
  note "FAIL  $what$([ "$want" = fail ] && echo " (it succeeded)")"
  FAILS=$((FAILS + 1))
  return 1
}
# check DESCRIPTION COMMAND...: the command must succeed.
check() { step ok "$@"; }
# refuse DESCRIPTION COMMAND...: the command must fail.
refuse() { step fail "$@"; }
finish() {
  echo
  note "lab: $FAILS failed"
  echo "$FAILS" >"$R/status"
  sync
  exit 0
}

# --- the network: one veth link with soft-RoCE on it, nothing else
ulimit -l unlimited
ip link set lo up
ip link add vA type veth peer name vB
ip addr add $ADDR/24 dev vA
ip link set vA up
ip link set vB up
for m in rdma_rxe rdma_ucm ib_uverbs iscsi_tcp ib_iser target_core_mod iscsi_target_mod \
  ib_isert target_core_file; do
  modprobe "$m" || note "WARN  modprobe $m failed"
done
rdma link add rxeA type rxe netdev vA
for _ in $(seq 50); do
  rdma link show rxeA/1 2>/dev/null | grep -q 'state ACTIVE' && break
  sleep 0.2
done
if ! check "soft-RoCE device rxeA is ACTIVE on $ADDR" sh -c 'rdma link show rxeA/1 | grep -q "state ACTIVE"'; then
  finish
fi
mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config
mkdir -p /tmp/lab/ram && mount -t tmpfs -o size=400m tmpfs /tmp/lab/ram

# --- open-iscsi
mkdir -p /etc/iscsi
echo "InitiatorName=iqn.2026-12.rs.iscsi:lab-kernel" >/etc/iscsi/initiatorname.iscsi
iscsid -f >"$R/iscsid.log" 2>&1 &
sleep 1

# --- our targets: open, CHAP, mutual CHAP; each over TCP and iSER on one address
OPEN=iqn.2026-12.rs.iscsi:lab-open
CHAP=iqn.2026-12.rs.iscsi:lab-chap
MUTUAL=iqn.2026-12.rs.iscsi:lab-mutual
ALICE_SECRET=alice-secret-0123
BOB_SECRET=bob-secret-4567
start_target() { # NAME PORT ARGS...
  local name=$1 port=$2
  shift 2
  "$BIN/target" --transport both --listen $ADDR:$port "$@" \
    >"$R/target-$name.out" 2>"$R/target-$name.err" &
  for _ in $(seq 50); do
    grep -q '^iser://' "$R/target-$name.out" 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}
check "our target (open) listens on TCP and iSER $ADDR:3260" \
  start_target open 3260 --iqn $OPEN --lun ram:256MiB
check "our target (CHAP) listens on $ADDR:3262" \
  start_target chap 3262 --iqn $CHAP --lun ram:64MiB --chap alice:$ALICE_SECRET
check "our target (mutual CHAP) listens on $ADDR:3264" \
  start_target mutual 3264 --iqn $MUTUAL --lun ram:64MiB --chap alice:$ALICE_SECRET \
  --mutual-chap bob:$BOB_SECRET

# --- kernel initiator helpers
# node IQN PORTAL IFACE [CHAP-USER CHAP-SECRET [IN-USER IN-SECRET]]: a node record.
node() {
  local iqn=$1 portal=$2 iface=$3
  iscsiadm -m node -o new -T "$iqn" -p "$portal" -I "$iface" >/dev/null || return 1
  if [ $# -ge 5 ]; then
    iscsiadm -m node -T "$iqn" -p "$portal" -I "$iface" -o update \
      -n node.session.auth.authmethod -v CHAP \
      -n node.session.auth.username -v "$4" -n node.session.auth.password -v "$5" || return 1
  fi
  if [ $# -ge 7 ]; then
    iscsiadm -m node -T "$iqn" -p "$portal" -I "$iface" -o update \
      -n node.session.auth.username_in -v "$6" -n node.session.auth.password_in -v "$7" ||
      return 1
  fi
}
login() { iscsiadm -m node -T "$1" -p "$2" -I "$3" --login; }
logout() { iscsiadm -m node -T "$1" -p "$2" -I "$3" --logout; }
forget() { iscsiadm -m node -o delete -T "$1" -p "$2" -I "$3" >/dev/null 2>&1; true; }
# disk IQN: the block device of the session to IQN (waits up to 15 s for it).
disk() {
  local d
  for _ in $(seq 75); do
    d=$(iscsiadm -m session -P 3 2>/dev/null | awk -v t="$1" '
      $1 == "Target:" { cur = $2 }
      /Attached scsi disk/ && cur == t { print "/dev/" $4; exit }')
    if [ -n "$d" ] && [ -b "$d" ]; then
      echo "$d"
      return 0
    fi
    sleep 0.2
  done
  return 1
}
same_files() { (cd "$1" && sha256sum -c "$R/files.sha256" --quiet); }

# kernel_scenario TAG IFACE: scenario a (IFACE default) or b (IFACE iser).
kernel_scenario() {
  local tag=$1 iface=$2 p=$ADDR:3260 dev
  note ""
  note "== scenario $tag: the Linux kernel initiator -> our target over $([ "$iface" = iser ] && echo iSER || echo TCP)"
  if [ "$iface" = default ]; then
    check "$tag: SendTargets discovery lists $OPEN" \
      sh -c "iscsiadm -m discovery -t st -p $p | grep -q ' $OPEN\$'"
    forget $OPEN $p default
  fi
  check "$tag: node record" node $OPEN $p "$iface" || return
  check "$tag: login without CHAP" login $OPEN $p "$iface" || return
  dev=$(disk $OPEN)
  check "$tag: the disk appears ($dev, transport $(lsblk -ndo TRAN "$dev" 2>/dev/null))" test -b "$dev" || return
  check "$tag: fio 64 MiB of 4K random writes, verified with CRC32C" \
    fio --name=verify --filename="$dev" --rw=randwrite --bs=4k --size=64M --direct=1 \
    --ioengine=libaio --iodepth=16 --verify=crc32c --do_verify=1 --verify_fatal=1 \
    --output="$R/fio-verify-$tag.txt"
  check "$tag: 32 MiB written in 1 MiB writes, read back and compared" sh -c "
    dd if=/tmp/lab/ram/big.bin of=$dev bs=1M oflag=direct status=none &&
    dd if=$dev of=/tmp/lab/ram/big-back.bin bs=1M count=32 iflag=direct status=none &&
    cmp /tmp/lab/ram/big.bin /tmp/lab/ram/big-back.bin"
  check "$tag: mkfs.ext4" mkfs.ext4 -q -F "$dev"
  mkdir -p /tmp/lab/mnt-$tag
  check "$tag: mount" mount "$dev" /tmp/lab/mnt-$tag
  check "$tag: copy files" sh -c "cp /tmp/lab/ram/files/* /tmp/lab/mnt-$tag/ && sync"
  check "$tag: files read back while mounted" same_files /tmp/lab/mnt-$tag
  check "$tag: umount" umount /tmp/lab/mnt-$tag
  check "$tag: fsck.ext4 clean" fsck.ext4 -fn "$dev"
  check "$tag: logout" logout $OPEN $p "$iface"
  check "$tag: login again" login $OPEN $p "$iface" || return
  dev=$(disk $OPEN)
  check "$tag: mount after the new login" mount "$dev" /tmp/lab/mnt-$tag &&
    check "$tag: the files read back after logout and login" same_files /tmp/lab/mnt-$tag
  umount /tmp/lab/mnt-$tag 2>/dev/null
  check "$tag: logout" logout $OPEN $p "$iface"
  forget $OPEN $p "$iface"

  # CHAP and mutual CHAP; wrong secrets refused.
  local c=$ADDR:3262 m=$ADDR:3264
  if check "$tag: node record (CHAP)" node $CHAP $c "$iface" alice $ALICE_SECRET &&
    check "$tag: login with CHAP" login $CHAP $c "$iface"; then
    dev=$(disk $CHAP)
    check "$tag: the CHAP target's disk reads" dd if="$dev" of=/dev/null bs=1M count=4 iflag=direct
    check "$tag: logout (CHAP)" logout $CHAP $c "$iface"
  fi
  forget $CHAP $c "$iface"
  node $CHAP $c "$iface" alice wrong-secret-0000
  refuse "$tag: CHAP with a wrong secret is refused" login $CHAP $c "$iface"
  forget $CHAP $c "$iface"
  check "$tag: node record (mutual CHAP)" node $MUTUAL $m "$iface" alice $ALICE_SECRET bob $BOB_SECRET &&
    check "$tag: login with mutual CHAP" login $MUTUAL $m "$iface" &&
    check "$tag: logout (mutual CHAP)" logout $MUTUAL $m "$iface"
  forget $MUTUAL $m "$iface"
  node $MUTUAL $m "$iface" alice $ALICE_SECRET bob wrong-secret-1111
  refuse "$tag: mutual CHAP with a wrong target secret is refused" login $MUTUAL $m "$iface"
  forget $MUTUAL $m "$iface"
}

# Data for the block and file-system checks.
mkdir -p /tmp/lab/ram
head -c 33554432 /dev/urandom >/tmp/lab/ram/big.bin
# Files for the file-system checks.
mkdir -p /tmp/lab/ram/files
head -c 4194304 /dev/urandom >/tmp/lab/ram/files/random-4m.bin
head -c 1048577 /dev/urandom >/tmp/lab/ram/files/random-1m-plus-1.bin
cp "$ROOT/README.md" /tmp/lab/ram/files/README.md
(cd /tmp/lab/ram/files && sha256sum -- * >"$R/files.sha256")

case $SCEN in *" a "*) kernel_scenario a default ;; esac
case $SCEN in *" b "*) kernel_scenario b iser ;; esac

# --- LIO: a fileio LUN on a RAM file, TCP and iSER on $ADDR:3270, no authentication
LIO=iqn.2026-12.rs.iscsi:lab-lio
lio_setup() {
  local C=/sys/kernel/config/target T
  truncate -s 256M /tmp/lab/ram/lio.img
  mkdir -p $C/core/fileio_0/disk0 || return 1
  echo "fd_dev_name=/tmp/lab/ram/lio.img,fd_dev_size=268435456" >$C/core/fileio_0/disk0/control
  echo 1 >$C/core/fileio_0/disk0/enable || return 1
  T=$C/iscsi/$LIO/tpgt_1
  mkdir -p $T/lun/lun_0 || return 1
  ln -s $C/core/fileio_0/disk0 $T/lun/lun_0/lab_disk0 || return 1
  mkdir -p "$T/np/$ADDR:3270" || return 1
  echo 1 >"$T/np/$ADDR:3270/iser" || return 1
  echo 0 >$T/attrib/authentication
  echo 1 >$T/attrib/generate_node_acls
  echo 0 >$T/attrib/demo_mode_write_protect
  echo 1 >$T/attrib/cache_dynamic_acls
  echo 1 >$T/enable
}
LIO_OK=0
case $SCEN in *" c "* | *" d "*)
  note ""
  note "== LIO (configfs, fileio on tmpfs) on $ADDR:3270, TCP and iSER"
  check "LIO target configured" lio_setup && LIO_OK=1
  ;;
esac

# --- scenario c: our initiator -> LIO
declare -A BENCH
our_bench() { # URL ARGS... -> IOPS
  "$BIN/initiator" bench "$@" --duration 3 2>/dev/null |
    sed -n 's/^iops average \([0-9]*\) .*/\1/p'
}
case $SCEN in *" c "*)
  if [ $LIO_OK = 1 ]; then
    head -c 16777216 /dev/urandom >/tmp/lab/ram/pattern.bin
    for scheme in iscsi iser; do
      u=$scheme://$ADDR:3270/$LIO/0
      note ""
      note "== scenario c: our initiator -> LIO over $([ $scheme = iser ] && echo iSER || echo TCP) ($u)"
      check "c/$scheme: INQUIRY names LIO" sh -c "'$BIN/initiator' inquiry $u | grep -q 'LIO-ORG'"
      check "c/$scheme: READ CAPACITY 256 MiB" sh -c "'$BIN/initiator' readcap $u | grep -q 'bytes: *268435456'"
      check "c/$scheme: 16 MiB written" "$BIN/initiator" copy /tmp/lab/ram/pattern.bin "$u"
      rm -f /tmp/lab/ram/back.bin
      check "c/$scheme: 16 MiB read back" "$BIN/initiator" copy "$u" /tmp/lab/ram/back.bin --bytes 16MiB
      check "c/$scheme: the data read back is the data written" cmp /tmp/lab/ram/pattern.bin /tmp/lab/ram/back.bin
      iops=$(our_bench "$u" --rw randread --bs 4K --depth 16)
      check "c/$scheme: bench (4K random read, 16 in flight): ${iops:-none} IOPS" test -n "$iops"
      BENCH[$scheme]=$iops
    done
  fi
  ;;
esac

# --- scenario d: relative performance through the kernel initiator
# fio_run DEV RW BS DEPTH -> "IOPS LAT_US" (5 s)
fio_run() {
  fio --name=perf --filename="$1" --rw="$2" --bs="$3" --iodepth="$4" --direct=1 \
    --ioengine=libaio --runtime=5 --time_based --size=64M --output-format=json 2>/dev/null |
    /usr/bin/python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]["read"]; print("%.0f %.1f" % (j["iops"], j["lat_ns"]["mean"]/1000))'
}
# measure NAME IQN PORTAL IFACE: fills PERF[NAME/workload]
declare -A PERF
measure() {
  local name=$1 iqn=$2 p=$3 iface=$4 dev
  node "$iqn" "$p" "$iface" && login "$iqn" "$p" "$iface" >>"$R/steps.log" 2>&1 || {
    note "FAIL  d: login to $name"
    FAILS=$((FAILS + 1))
    forget "$iqn" "$p" "$iface"
    return
  }
  dev=$(disk "$iqn")
  PERF[$name/4k]=$(fio_run "$dev" randread 4k 16)
  PERF[$name/128k]=$(fio_run "$dev" read 128k 8)
  logout "$iqn" "$p" "$iface" >>"$R/steps.log" 2>&1
  forget "$iqn" "$p" "$iface"
  check "d: fio against $name: 4K ${PERF[$name/4k]:-?}, 128K ${PERF[$name/128k]:-?} (IOPS latency-us)" \
    test -n "${PERF[$name/4k]}" -a -n "${PERF[$name/128k]}"
}
case $SCEN in *" d "*)
  if [ $LIO_OK = 1 ]; then
    note ""
    note "== scenario d: relative performance (fio, 5 s per run; software RDMA under emulation)"
    measure ours-tcp $OPEN $ADDR:3260 default
    measure lio-tcp $LIO $ADDR:3270 default
    measure ours-iser $OPEN $ADDR:3260 iser
    measure lio-iser $LIO $ADDR:3270 iser
    # One table row for workload $w: field 0 (IOPS) or 1 (latency) of each run.
    perf_row() {
      local n v
      printf '%-22s' "$1"
      for n in ours-tcp lio-tcp ours-iser lio-iser; do
        v=(${PERF[$n/$w]:-0 0})
        printf ' %12s' "${v[$2]}"
      done
      echo
    }
    ratio() { /usr/bin/python3 -c "import sys; a=float(sys.argv[1] or 0); b=float(sys.argv[2] or 0); print('%.2fx' % (a/b) if b else 'n/a')" "$1" "$2"; }
    {
      echo
      echo "relative performance, through the Linux kernel initiator (fio, direct I/O):"
      printf '%-22s %12s %12s %12s %12s\n' workload "ours TCP" "LIO TCP" "ours iSER" "LIO iSER"
      for w in 4k 128k; do
        label=$([ $w = 4k ] && echo "4K rand read QD16" || echo "128K seq read QD8")
        perf_row "$label IOPS" 0
        perf_row "$label lat us" 1
        set -- ${PERF[ours-tcp/$w]:-0 0}; ot=$1 otl=$2
        set -- ${PERF[lio-tcp/$w]:-0 0}; lt=$1 ltl=$2
        set -- ${PERF[ours-iser/$w]:-0 0}; oi=$1 oil=$2
        set -- ${PERF[lio-iser/$w]:-0 0}; li=$1 lil=$2
        echo "    IOPS ratios: ours/LIO over TCP $(ratio $ot $lt), over iSER $(ratio $oi $li); iSER/TCP ours $(ratio $oi $ot), LIO $(ratio $li $lt)"
        echo "    latency ratios: ours/LIO over TCP $(ratio $otl $ltl), over iSER $(ratio $oil $lil); iSER/TCP ours $(ratio $oil $otl), LIO $(ratio $lil $ltl)"
      done
      if [ -n "${BENCH[iscsi]:-}" ]; then
        echo "our initiator -> LIO, 4K random read QD16: TCP ${BENCH[iscsi]} IOPS, iSER ${BENCH[iser]:-?} IOPS"
      fi
      echo "(the VM runs without KVM and soft-RoCE copies every byte with the CPU: compare ratios"
      echo " on this box only, not with hardware RDMA)"
    } | tee -a "$SUMMARY"
  fi
  ;;
esac

finish
