# SPDX-License-Identifier: GPL-2.0
# Benchmark job (release kernel): the same driver-side workload through a
# vhost-mdev sample instance (type1 and iommufd) and through vdpa_sim_net
# behind vhost-vdpa. Prints one "BENCH {json}" line per run; the host's
# scripts/bench-report makes the table.
. "$VHOST_MDEV_TOP/tests/vm/lib.sh"
set -e
REPS=${BENCH_REPS:-3} SECS=${BENCH_SECONDS:-3}
load_kernel_modules
for m in vdpa vdpa_sim vdpa_sim_net vhost_vdpa; do modprobe -d "$MODROOT" $m; done
load_ours
vdpa dev add mgmtdev vdpasim_net name vdpa0 mac 02:00:00:00:00:01
uuid=$(vhost-mdev create --parent vhost_mdev_net --type "$TYPE")
cs=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)
echo "INFO: clocksource $cs, $(nproc) CPUs, kernel $(uname -r) ($FLAVOUR)"
run() { # label size mode target [opts]
	local label=$1 size=$2 mode=$3 target=$4; shift 4
	local extra=()
	[ "$mode" = pingpong ] && extra+=(--pingpong)
	local out
	if out=$(vhost-mdev bench "$target" --size "$size" --seconds "$SECS" --json "${extra[@]}" "$@" 2>/dev/null); then
		echo "BENCH {\"device\":\"$label\",\"size\":$size,\"mode\":\"$mode\",\"rep\":$rep,\"clocksource\":\"$cs\",\"result\":$out}"
	else
		echo "BENCH {\"device\":\"$label\",\"size\":$size,\"mode\":\"$mode\",\"rep\":$rep,\"error\":true}"
		echo "FAIL: bench $label $size $mode (rep $rep)"
	fi
}
n=0 total=$((REPS * 14))
for rep in $(seq "$REPS"); do
	for mode in batch pingpong; do
		for size in 64 1500 65536; do
			run vhost-mdev-type1 $size $mode "$uuid"; n=$((n + 1))
			run vhost-mdev-iommufd $size $mode "$uuid" --iommufd; n=$((n + 1))
			if [ $size != 65536 ]; then
				run vdpa_sim_net $size $mode /dev/vhost-vdpa-0; n=$((n + 1))
			fi
			echo "INFO: progress $n/$total runs"
		done
	done
done
echo "PASS: benchmark: $n runs"
vhost-mdev stats "$uuid" | sed 's/^/INFO: stats: /'
vhost-mdev remove "$uuid"
vdpa dev del vdpa0
