#!/usr/bin/env bash
# The interop lab: our target and initiator against the Linux kernel's iSCSI initiator and
# LIO, over TCP and over iSER on soft-RoCE, in a VM (Debian's kernel under virtme-ng, no host
# network). See lab/README.md.
#
# Usage: bash lab/run.sh                 (as root; installs what it needs on Debian)
# Environment:
#   LAB_SCENARIOS="a b c d"  which scenarios to run (see lab/guest.sh)
#   LAB_TIMEOUT=1200         seconds before the VM is stopped
#   LAB_NO_INSTALL=1         do not install packages (they must be there)
#   LAB_KERNEL=/boot/vmlinuz-...   the kernel to boot (default: the newest in /boot)
# Exit status: 0 every assertion passed; 1 an assertion failed (the report says which);
# 77 the lab cannot run on this machine (no root, a package will not install, the VM does
# not boot): it prints why, loudly, and nothing was tested.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
LAB=$ROOT/target/lab
RESULTS=$LAB/results
SKIP=77

say() { echo "lab: $*" >&2; }
skip() {
  echo "" >&2
  echo "==================================================================" >&2
  echo "lab: SKIPPED, NOTHING WAS TESTED: $*" >&2
  echo "==================================================================" >&2
  exit $SKIP
}

[ "$(id -u)" = 0 ] || skip "needs root (packages, kernel modules in the VM)"
command -v apt-get >/dev/null || [ "${LAB_NO_INSTALL:-0}" = 1 ] || skip "not a Debian machine (apt-get missing)"

# --- packages
PACKAGES=(qemu-system-x86 linux-image-amd64 busybox-static rdma-core ibverbs-utils
  rdmacm-utils libibverbs1 librdmacm1 ibverbs-providers open-iscsi fio e2fsprogs kmod
  cmake libclang-dev)
if [ "${LAB_NO_INSTALL:-0}" != 1 ]; then
  say "installing ${PACKAGES[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq "${PACKAGES[@]}" >"$ROOT/target/lab-apt.log" 2>&1; then
    apt-get update -qq >/dev/null 2>&1
    apt-get install -y -qq "${PACKAGES[@]}" >"$ROOT/target/lab-apt.log" 2>&1 \
      || skip "apt-get install failed (target/lab-apt.log)"
  fi
fi
mkdir -p "$LAB"
VENV=$LAB/venv
if [ ! -x "$VENV/bin/vng" ]; then
  [ "${LAB_NO_INSTALL:-0}" = 1 ] && skip "virtme-ng is not in $VENV"
  say "installing virtme-ng into $VENV"
  python3 -m venv "$VENV" >/dev/null 2>&1 || skip "python3 -m venv failed"
  "$VENV/bin/pip" install -q virtme-ng==1.42 >"$LAB/pip.log" 2>&1 \
    || skip "pip install virtme-ng failed ($LAB/pip.log)"
fi
KERNEL=${LAB_KERNEL:-$(ls -1v /boot/vmlinuz-* 2>/dev/null | tail -n1)}
[ -r "$KERNEL" ] || skip "no kernel image in /boot (package linux-image-amd64)"
KVER=${KERNEL#/boot/vmlinuz-}
[ -d "/lib/modules/$KVER/kernel/drivers/infiniband" ] \
  || skip "the kernel $KVER has no RDMA modules in /lib/modules/$KVER"
for tool in qemu-system-x86_64 iscsiadm iscsid fio mkfs.ext4 rdma; do
  command -v "$tool" >/dev/null || skip "$tool is missing"
done

# --- our binaries (with iSER on real RDMA)
say "cargo build --release -p iscsi-examples --features rdma"
if ! cargo build --release -p iscsi-examples --features rdma --bin target --bin initiator \
  >"$LAB/build.log" 2>&1; then
  tail -30 "$LAB/build.log" >&2
  say "FAIL: the build failed"
  exit 1
fi

# --- the VM
rm -rf "$RESULTS"
mkdir -p "$RESULTS"
TIMEOUT=${LAB_TIMEOUT:-1200}
say "booting $KERNEL (no network; soft-RoCE inside), scenarios: ${LAB_SCENARIOS:-a b c d}"
START=$(date +%s)
# vng runs virtme-run from its own directory.
export PATH="$VENV/bin:$PATH"
# qemu reopens its stdout/stderr with O_TRUNC: give it pipes, not files.
{ timeout -k 10 "$TIMEOUT" "$VENV/bin/vng" --disable-kvm --run "$KERNEL" --user root \
    --memory 2G --cpus 2 --rwdir "$ROOT" \
    --overlay-rwdir /etc --overlay-rwdir /var --overlay-rwdir /run \
    --exec "LAB_SCENARIOS='${LAB_SCENARIOS:-a b c d}' bash $ROOT/lab/guest.sh $ROOT" </dev/null
  echo $? >"$LAB/vng.rc"
} 2>&1 | cat
VRC=$(cat "$LAB/vng.rc" 2>/dev/null || echo '?')
say "VM exited (status $VRC) after $(($(date +%s) - START)) s"

if [ ! -e "$RESULTS/booted" ]; then
  skip "the VM did not boot (vng status $VRC); see the output above"
fi
if [ -s "$RESULTS/summary.txt" ]; then
  echo
  cat "$RESULTS/summary.txt"
fi
if [ ! -s "$RESULTS/status" ]; then
  say "FAIL: the lab did not finish (vng status $VRC, timeout ${TIMEOUT}s)"
  exit 1
fi
STATUS=$(cat "$RESULTS/status")
if [ "$STATUS" != 0 ]; then
  say "FAIL: see the summary above and $RESULTS"
  exit 1
fi
say "all scenarios passed ($RESULTS)"
exit 0
