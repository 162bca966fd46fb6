# SPDX-License-Identifier: GPL-2.0
# A/B job of scripts/ab (release kernel): two builds of the modules and of
# the CLI, measured alternately in one boot, so that the drift of a shared
# host (which moved the same figure by 2.6x over one day here) cancels
# instead of deciding the comparison.
#
# AB_A and AB_B are directories, each with vhost_mdev.ko, vhost_mdev_net.ko
# and a vhost-mdev binary. Every round loads one side, runs every case
# with that side's CLI, and unloads it; the order of the sides alternates
# (A B, B A, A B, ...). AB_CASES is a space-separated list of
# SIZE:MODE[:OPTION,...] (MODE batch or pingpong; the options are passed to
# `vhost-mdev bench`, e.g. 64:batch:--iommufd). "instant" as the first
# option runs the CLI's in-process device (the driver's ceiling) instead of
# the instance. Placement as make bench's "same": driver and worker on
# CPU 1. Prints one "AB {json}" line per run; scripts/ab-report makes the
# table.
. "$VHOST_MDEV_TOP/tests/vm/lib.sh"
ROUNDS=${AB_ROUNDS:-6} SECS=${AB_SECONDS:-3}
CASES=${AB_CASES:-64:batch:--iommufd 64:batch 64:pingpong:--iommufd 1500:batch:--iommufd}
for side in A B; do
	eval "dir=\${AB_$side:-}"
	for f in vhost_mdev.ko vhost_mdev_net.ko vhost-mdev; do
		[ -e "$dir/$f" ] || { echo "FAIL: ab: AB_$side=$dir has no $f"; exit 1; }
	done
done
load_kernel_modules
echo 2 >/sys/devices/virtual/workqueue/cpumask
echo "INFO: ab: $(nproc) CPUs, kernel $(uname -r) ($FLAVOUR), $ROUNDS rounds of $SECS s per case"
fails=0 n=0
for round in $(seq "$ROUNDS"); do
	order="A B"
	[ $((round % 2)) = 0 ] && order="B A"
	for side in $order; do
		eval "dir=\$AB_$side"
		insmod "$dir/vhost_mdev.ko" && insmod "$dir/vhost_mdev_net.ko" ||
			{ echo "FAIL: ab: loading side $side"; exit 1; }
		type=$(basename "$(ls -d /sys/class/mdev_bus/*/mdev_supported_types/vhost_mdev_net-* | head -n1)")
		uuid=$("$dir/vhost-mdev" create --parent vhost_mdev_net --type "$type") ||
			{ echo "FAIL: ab: create on side $side"; exit 1; }
		for c in $CASES; do
			IFS=: read -r size mode opts <<<"$c"
			args=(${opts//,/ })
			target=$uuid
			if [ "${args[0]:-}" = instant ]; then
				target=instant args=("${args[@]:1}")
			fi
			[ "$mode" = pingpong ] && args+=(--pingpong)
			if out=$(taskset -c 1 "$dir/vhost-mdev" bench "$target" --size "$size" \
				--seconds "$SECS" --json --busy-poll "${args[@]}" 2>/tmp/ab.err); then
				echo "AB {\"side\":\"$side\",\"round\":$round,\"case\":\"$c\",\"result\":$out}"
			else
				echo "FAIL: ab: side $side case $c round $round: $(tail -n1 /tmp/ab.err)"
				fails=$((fails + 1))
			fi
			n=$((n + 1))
		done
		"$dir/vhost-mdev" remove "$uuid" || { echo "FAIL: ab: remove on side $side"; exit 1; }
		rmmod vhost_mdev_net && rmmod vhost_mdev || { echo "FAIL: ab: unloading side $side"; exit 1; }
	done
	echo "INFO: ab: round $round/$ROUNDS done"
done
[ $fails = 0 ] && echo "PASS: ab: $n runs"
