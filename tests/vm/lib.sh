# SPDX-License-Identifier: GPL-2.0
# Helpers for the in-guest test scripts (sourced by the job scripts that
# scripts/vm runs inside the test VM).

TOP=$VHOST_MDEV_TOP
TYPE=vhost_mdev_net-loopback
PARENT=/sys/class/mdev_bus/vhost_mdev_net
TYPEDIR=$PARENT/mdev_supported_types/$TYPE

# t NAME COMMAND...: runs one test, prints PASS/FAIL with its time.
t() {
	local name=$1; shift
	local t0 out rc
	t0=$(date +%s.%N)
	out=$("$@" 2>&1); rc=$?
	local dt
	dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
	if [ $rc = 0 ]; then
		echo "PASS: $name (${dt}s)"
	else
		echo "FAIL: $name: $(echo "$out" | tail -n 5 | tr '\n' ' ')"
	fi
	return 0
}

# Loads VFIO, mdev and the peer from the test kernel's module tree.
load_kernel_modules() {
	local m
	for m in vfio vfio_iommu_type1 iommufd mdev; do
		modprobe -d "$MODROOT" "$m" || return 1
	done
}

# MODDIR: where the .ko files of the booted kernel's flavour are.
MODDIR=${MODDIR:-$TOP}

load_ours() {
	insmod "$MODDIR/vhost_mdev.ko" && insmod "$MODDIR/vhost_mdev_net.ko" "$@"
}

unload_ours() {
	rmmod vhost_mdev_net 2>/dev/null
	rmmod vhost_mdev
}

# expect_fail CMD...: succeeds when CMD fails.
expect_fail() { ! "$@"; }

# eq A B: succeeds when A = B, else says what differs.
eq() { [ "$1" = "$2" ] || { echo "expected '$2', got '$1'"; return 1; }; }
