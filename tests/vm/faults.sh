# SPDX-License-Identifier: GPL-2.0
# Fault injection (issue 21) on the debug kernel: every operation of the
# uAPI, sysfs write, open, close, remove and module load with each of its
# fallible calls failed in turn (fail-nth), and the data path under the
# core's own fault points (vhost-mdev-tests --faults; Documentation/
# testing.rst, "Fault injection"). Part of the vm-hardening section; alone:
#   scripts/vm --timeout 900 --log /tmp/faults.log tests/vm/faults.sh
. "$VHOST_MDEV_TOP/tests/vm/lib.sh"
t0=$(date +%s)
if [ ! -e /proc/self/fail-nth ] || [ ! -d /sys/kernel/debug/failslab ]; then
	echo "FAIL: faults: the kernel has no fault injection (CONFIG_FAULT_INJECTION_DEBUG_FS, FAILSLAB)"
	exit 1
fi
load_kernel_modules || { echo "FAIL: faults: kernel modules"; exit 1; }
[ -d /sys/module/vhost_mdev_net ] || load_ours || { echo "FAIL: faults: our modules"; exit 1; }
MODDIR=$MODDIR vhost-mdev-tests --faults
t "faults: the modules unload" unload_ours
echo "faults: suite time $(( $(date +%s) - t0 )) s"
