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

# QMP: qmp SOCKET COMMAND-JSON... prints each reply (and events) as JSON.
qmp() {
	python3 - "$@" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(30)
s.connect(sys.argv[1])
f = s.makefile("rw")
def reply():
    while True:
        m = json.loads(f.readline())
        if "event" not in m:
            return m
reply()
def cmd(c):
    f.write(c + "\n")
    f.flush()
    return reply()
cmd('{"execute": "qmp_capabilities"}')
for c in sys.argv[2:]:
    print(json.dumps(cmd(c)))
PY
}

# wait_sock SOCKET PID: until QEMU's QMP socket exists (0) or QEMU is gone.
wait_sock() {
	local _
	for _ in $(seq 1 120); do
		[ -S "$1" ] && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.5
	done
	return 1
}
