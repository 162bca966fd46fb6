# SPDX-License-Identifier: GPL-2.0
# Benchmark job (release kernel): the same driver-side workload through a
# vhost-mdev sample instance (type1 and iommufd), through vdpa_sim_net
# behind vhost-vdpa, and through the in-process "instant" device of the
# driver itself (vhost-mdev bench instant: completes each frame before the
# kick returns, copies only its first 64 bytes), the driver's own ceiling
# under this CPU. Prints one "BENCH {json}" line per run; the host's
# scripts/bench-report makes the table.
#
# The driver busy-polls the RX used ring (vhost-mdev bench --busy-poll) for
# every device. BENCH_PLACEMENT says where the driver and the device's
# worker run:
#   same  (default) both on CPU 1: the driver's kick preempts it for the
#         worker, and the worker's completion hands the CPU back;
#   split the driver on CPU 1, the worker on CPU 0;
#   free  no pinning.
# Under TCG on a shared 2-core host a hand-over between the two vCPUs waits
# for the host to run the other vCPU thread (milliseconds when the host is
# busy), so "split" and "free" measure the host's load more than the
# devices; "same" is the stable one. The vhost-mdev sample's worker runs on
# system_unbound_wq (placed with the unbound cpumask), vdpa_sim_net's on
# its own kthread worker (placed with taskset).
. "$VHOST_MDEV_TOP/tests/vm/lib.sh"
set -e
REPS=${BENCH_REPS:-3} SECS=${BENCH_SECONDS:-3} PLACEMENT=${BENCH_PLACEMENT:-same}
load_kernel_modules
for m in vdpa vdpa_sim vdpa_sim_net vhost_vdpa; do modprobe -d "$MODROOT" $m; done
load_ours
vdpa dev add mgmtdev vdpasim_net name vdpa0 mac 02:00:00:00:00:01
uuid=$(vhost-mdev create --parent vhost_mdev_net --type "$TYPE")
cs=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)
simpid=$(pgrep -f "vDPA sim worker" | head -n1)
pin=()
case $PLACEMENT in
same)
	echo 2 >/sys/devices/virtual/workqueue/cpumask
	taskset -p -c 1 "$simpid" >/dev/null
	pin=(taskset -c 1) ;;
split)
	echo 1 >/sys/devices/virtual/workqueue/cpumask
	taskset -p -c 0 "$simpid" >/dev/null
	pin=(taskset -c 1) ;;
free) ;;
*) echo "FAIL: BENCH_PLACEMENT=$PLACEMENT (same, split or free)"; exit 1 ;;
esac
echo "INFO: clocksource $cs, $(nproc) CPUs, kernel $(uname -r) ($FLAVOUR), placement $PLACEMENT, busy-polling driver"
run() { # label size mode target [opts]
	local label=$1 size=$2 mode=$3 target=$4; shift 4
	local extra=(--busy-poll)
	[ "$mode" = pingpong ] && extra+=(--pingpong)
	local out tags="\"device\":\"$label\",\"size\":$size,\"mode\":\"$mode\",\"rep\":$rep,\"placement\":\"$PLACEMENT\""
	if out=$("${pin[@]}" vhost-mdev bench "$target" --size "$size" --seconds "$SECS" --json "${extra[@]}" "$@" 2>/tmp/bench.err); then
		echo "BENCH {$tags,\"clocksource\":\"$cs\",\"result\":$out}"
	else
		echo "BENCH {$tags,\"error\":true}"
		echo "FAIL: bench $label $size $mode (rep $rep): $(tail -n1 /tmp/bench.err)"
	fi
}
# 65535 bytes: the largest frame of the test format (its length is a u16),
# received in 4 KiB RX buffers spanned with MRG_RXBUF (17 per frame).
# vdpa_sim_net copies each frame through a one-page buffer and offers no
# MRG_RXBUF: it has no row there. The driver ceiling runs in every
# repetition, size and mode, pinned like the others.
n=0 total=$((REPS * 22))
for rep in $(seq "$REPS"); do
	for mode in batch pingpong; do
		for size in 64 1500 65535; do
			run "driver ceiling" $size $mode instant; n=$((n + 1))
			run vhost-mdev-type1 $size $mode "$uuid"; n=$((n + 1))
			run vhost-mdev-iommufd $size $mode "$uuid" --iommufd; n=$((n + 1))
			if [ $size != 65535 ]; then
				run vdpa_sim_net $size $mode /dev/vhost-vdpa-0; n=$((n + 1))
			fi
			echo "INFO: progress $n/$total runs"
		done
	done
done
# (c) The copy ceilings: each data path's copy routine, timed in this
# kernel (scripts/copy-ceiling): copy_from_user + copy_to_user of each frame
# (type1: vfio_dma_rw() in and out) and one memcpy() of each frame a page at
# a time (iommufd: pinned pages, vhost_mdev_dma_copy()).
for rep in $(seq "$REPS"); do
	for cmode in user memcpy; do
		label=copy_ceiling
		[ $cmode = memcpy ] && label=copy_ceiling_memcpy
		for size in 64 1500 65535; do
			if out=$("${pin[@]}" "$VHOST_MDEV_TOP/scripts/copy-ceiling" "$size" --mode $cmode 2>/tmp/bench.err); then
				echo "$out" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
print(json.dumps({"pps": r["frames_per_s"], "gbps": r["gbps"], "p50_us": 0, "p99_us": 0}))' >/tmp/cc.json
				echo "BENCH {\"device\":\"$label\",\"size\":$size,\"mode\":\"batch\",\"rep\":$rep,\"placement\":\"$PLACEMENT\",\"clocksource\":\"$cs\",\"result\":$(cat /tmp/cc.json)}"
			else
				echo "FAIL: copy ceiling $cmode $size (rep $rep): $(tail -n1 /tmp/bench.err)"
			fi
		done
	done
done
echo "PASS: benchmark: $n runs"
vhost-mdev stats "$uuid" | sed 's/^/INFO: stats: /'
vhost-mdev remove "$uuid"
vdpa dev del vdpa0
