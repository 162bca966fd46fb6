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
	rmmod vhost_mdev_blk 2>/dev/null || true
	rmmod vhost_mdev_net 2>/dev/null || true
	rmmod vhost_mdev
}

# expect_fail CMD...: succeeds when CMD fails.
expect_fail() { ! "$@"; }

# eq A B: succeeds when A = B, else says what differs.
eq() { [ "$1" = "$2" ] || { echo "expected '$2', got '$1'"; return 1; }; }

# one_line FILE ERE: FILE holds one line matching ERE, ended by its newline.
one_line() {
	local v
	v=$(cat "$1") || return 1
	echo "$v" | grep -Eqx "$2" &&
		[ "$(wc -c <"$1")" -eq $((${#v} + 1)) ] &&
		[ "$(tail -c 1 "$1" | od -An -c | tr -d ' ')" = '\n' ] ||
		{ echo "$1: '$v' is not one line of $2"; return 1; }
}

# sample_attrs DIR: the sample's per-instance attributes under instance DIR
# are the shipped ones: names, directories, modes, exact bytes of the
# output, and the errors of bad writes (a guard for rust/sysfs.rs).
sample_attrs() {
	local d=$1 err
	eq "$(cd "$d" && stat -c '%a %n' mac mtu link queue_pairs | tr '\n' ' ')" \
		"644 mac 644 mtu 644 link 644 queue_pairs " || return 1
	eq "$(ls "$d/stats" | tr '\n' ' ')" "direct_frames drop_malformed drop_oversize interrupts kicks max_run_bytes max_run_descs max_stop_runs ring_errors runs rx_bytes rx_packets rx_packets_per_pair tx_bytes tx_packets tx_packets_per_pair " || return 1
	eq "$(stat -c %a "$d"/stats/* | sort -u)" 444 || return 1
	# One value and one newline, nothing else.
	one_line "$d/mac" '([0-9a-f]{2}:){5}[0-9a-f]{2}' &&
		one_line "$d/mtu" '[0-9]+' && one_line "$d/link" '[01]' &&
		one_line "$d/queue_pairs" '[0-9]+' &&
		one_line "$d/stats/runs" '[0-9]+' &&
		one_line "$d/stats/tx_packets_per_pair" '[0-9]+( [0-9]+)*' &&
		one_line "$d/stats/rx_packets_per_pair" '[0-9]+( [0-9]+)*' || return 1
	# Not UTF-8, or not a value: EINVAL; a counter takes no writes.
	err=$(printf '\377\n' 2>&1 >"$d/mac") && return 1
	echo "$err" | grep -q 'Invalid argument' || { echo "mac: $err"; return 1; }
	err=$(echo abc 2>&1 >"$d/mtu") && return 1
	echo "$err" | grep -q 'Invalid argument' || { echo "mtu: $err"; return 1; }
	err=$(echo abc 2>&1 >"$d/queue_pairs") && return 1
	echo "$err" | grep -q 'Invalid argument' || { echo "queue_pairs: $err"; return 1; }
	! echo 1 2>/dev/null >"$d/stats/runs"
}
