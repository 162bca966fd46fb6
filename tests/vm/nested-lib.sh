# SPDX-License-Identifier: GPL-2.0
# Shared by the jobs that run an L2 guest through the patched QEMU
# (tests/vm/nested.sh, tests/vm/nested-vp.sh): the cache, the report
# helpers, and the QEMU and L2 guest to run. Sourced after lib.sh.

# The cache as the host sees it (the guest sees it at the same path).
CACHE=${VHOST_MDEV_CACHE:-${KDIR%/kbuild/*}}
export VHOST_MDEV_CACHE=$CACHE
fails=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
info() { echo "INFO: $*"; }
# Prints a log excerpt without the words the harness's log scanner
# reacts to (they are L2's or QEMU's, not L1's kernel's).
excerpt() { tail -n "${2:-25}" "$1" | tr -d '\r' | sed -E 's/(WARNING|BUG|Oops|KASAN|UBSAN|Call Trace|panic|lockdep)/<\1>/Ig; s/^/INFO:   | /'; }

# VM_QEMU: another patched qemu-system-x86_64 (a maintainer's work tree,
# see tools/qemu/README.md); by default the one build-qemu.sh built.
if [ -n "${VM_QEMU:-}" ]; then
	QEMU=$VM_QEMU
	[ -x "$QEMU" ] || { echo "FAIL: VM_QEMU=$QEMU is not an executable"; exit 1; }
else
	QEMU=$("$TOP/tools/qemu/build-qemu.sh" --print 2>&1) ||
		{ echo "FAIL: no patched QEMU: $QEMU (build it on the host: tools/qemu/build-qemu.sh)"; exit 1; }
fi
l2=$("$TOP/tools/qemu/build-l2.sh" --print 2>&1) ||
	{ echo "FAIL: no L2 guest: $l2 (build it on the host: tools/qemu/build-l2.sh)"; exit 1; }
read -r L2_KERNEL L2_INITRD <<<"$l2"
