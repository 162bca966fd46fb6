# SPDX-License-Identifier: GPL-2.0
# Benchmark job (release kernel): the same driver-side workload through a
# vhost-mdev sample instance (type1 and iommufd), through vdpa_sim_net
# behind vhost-vdpa, through a second vdpa_sim_net behind the vDPA bridge
# (vhost_mdev_vdpa.ko; device "vdpa_sim_net-bridge": the transport's cost
# on the same device model, both in VA mode), and through the in-process
# "instant" device of the
# driver itself (vhost-mdev bench instant: completes each frame before the
# kick returns, copies only its first 64 bytes), the driver's own ceiling
# under this CPU. Prints one "BENCH {json}" line per run; the host's
# scripts/bench-report makes the table.
#
# The driver busy-polls the RX used ring (vhost-mdev bench --busy-poll) for
# every device, yielding its CPU after 32 empty polls. BENCH_PLACEMENT says
# where the driver and the device's worker run:
#   same  (default) both on CPU 1: the driver's kick preempts it for the
#         worker, and the worker's completion hands the CPU back;
#   split the driver on CPU 1, the worker on CPU 0;
#   free  no pinning.
# Under TCG on a shared 2-core host a hand-over between the two vCPUs waits
# for the host to run the other vCPU thread (milliseconds when the host is
# busy), so "split" and "free" measure the host's load more than the
# devices; "same" is the stable one. The vhost-mdev sample's worker is a
# thread of the driver's process (a vhost_task: it inherits the driver's
# CPU; "split" moves it with taskset once it exists), vdpa_sim_net's is its
# own kthread (placed with taskset).
#
# Then the "pp-noyield" rows: 64-byte ping-pong with a driver that
# busy-polls without ever yielding (--no-yield), nothing pinned (as a new
# user runs it): the device's worker must run on the other CPU, not wait
# behind the spinning driver. The sample runs with its default poll_us
# (its worker polls 50 us for the next kick) and, in the "-nopoll" rows,
# with poll_us=0.
#
# The "packed" part: the sample (type1, iommufd) and the driver ceiling on
# packed rings (vhost-mdev bench --packed), batch and ping-pong, 64 and
# 1500 bytes, beside the split rows of the same mode and size (device
# names ending in "-packed").
#
# The "pairs" part (mode "mq-batch", 64 bytes, batch): the sample with its
# queue_pairs attribute at 1, 2 and 4 (written while the instance is
# closed) driven on every pair (vhost-mdev bench --pairs N: one driver
# thread, round-robin over the pairs, 64 frames in flight on each), and
# the driver ceiling with as many pairs; pinned like the batch rows.
#
# The "e2e" part (tests/vm/bench-e2e.sh), last, nothing pinned: an L2
# guest on the patched QEMU (tools/qemu/) streams and ping-pongs raw
# frames through its own virtio_net driver over -netdev vhost-vfio (the
# sample, type1 and iommufd; vdpa_sim_net behind the bridge), -netdev
# vhost-vdpa on vdpa_sim_net, and QEMU's userspace virtio-net (modes
# e2e-stream and e2e-pingpong).
. "$VHOST_MDEV_TOP/tests/vm/lib.sh"
set -e
REPS=${BENCH_REPS:-3} SECS=${BENCH_SECONDS:-3} PLACEMENT=${BENCH_PLACEMENT:-same}
# BENCH_ONLY: the parts to run, any of batch, pingpong, pp-noyield, copy,
# packed, pairs and e2e (default: all of them; packed runs the modes of
# batch and pingpong that are wanted, both when neither is).
ONLY=" ${BENCH_ONLY:-batch pingpong pp-noyield copy packed pairs e2e} "
wanted() { case $ONLY in *" $1 "*) return 0 ;; esac; return 1; }
for part in $ONLY; do
	case $part in batch|pingpong|pp-noyield|copy|packed|pairs|e2e) ;; *)
		echo "FAIL: BENCH_ONLY: unknown part '$part' (batch, pingpong, pp-noyield, copy, packed, pairs, e2e)"; exit 1 ;;
	esac
done
load_kernel_modules
for m in vdpa vdpa_sim vdpa_sim_net vhost_vdpa; do modprobe -d "$MODROOT" $m; done
load_ours
# The copy ceilings' timer (scripts/copy-ceiling), a module of its own.
if wanted copy; then
	insmod "$MODDIR/vhost_mdev_copy_ceiling.ko" ||
		{ echo "FAIL: insmod $MODDIR/vhost_mdev_copy_ceiling.ko"; exit 1; }
fi
vdpa dev add mgmtdev vdpasim_net name vdpa0 mac 02:00:00:00:00:01
uuid=$(vhost-mdev create --parent vhost_mdev_net --type "$TYPE")
# The same device model behind vhost-mdev's transport: a second
# vdpa_sim_net device, bound to the vDPA bridge (loaded after vdpa0 was
# bound to vhost_vdpa), both in VA mode (vdpa_sim's use_va, the default).
insmod "$MODDIR/vhost_mdev_vdpa.ko"
echo 0 >/sys/bus/vdpa/drivers_autoprobe
vdpa dev add mgmtdev vdpasim_net name vdpa1 mac 02:00:00:00:00:02
echo vhost_mdev_vdpa >/sys/bus/vdpa/devices/vdpa1/driver_override
echo vdpa1 >/sys/bus/vdpa/drivers_probe
buuid=$(vhost-mdev create --parent vhost_mdev_vdpa-vdpa1 --type vhost_mdev_vdpa-vdpa1-bridge)
cs=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)
simpid=$(pgrep -f "vDPA sim worker: vdpa0")
bsimpid=$(pgrep -f "vDPA sim worker: vdpa1")
wq_mask=$(cat /sys/devices/virtual/workqueue/cpumask)
all_cpus=0-$(($(nproc) - 1))
pin=()
case $PLACEMENT in
same)
	echo 2 >/sys/devices/virtual/workqueue/cpumask
	taskset -p -c 1 "$simpid" >/dev/null
	taskset -p -c 1 "$bsimpid" >/dev/null
	pin=(taskset -c 1) ;;
split)
	echo 1 >/sys/devices/virtual/workqueue/cpumask
	taskset -p -c 0 "$simpid" >/dev/null
	taskset -p -c 0 "$bsimpid" >/dev/null
	pin=(taskset -c 1) ;;
free) ;;
*) echo "FAIL: BENCH_PLACEMENT=$PLACEMENT (same, split or free)"; exit 1 ;;
esac
echo "INFO: clocksource $cs, $(nproc) CPUs, kernel $(uname -r) ($FLAVOUR), placement $PLACEMENT, busy-polling driver"
# With "split", moves the vhost-mdev workers (threads named vhost-mdev-net
# of the process $1) to CPU 0 as they appear, until the process ends.
move_workers() {
	local pid=$1 t
	while kill -0 "$pid" 2>/dev/null; do
		for t in /proc/"$pid"/task/*; do
			[ "$(cat "$t/comm" 2>/dev/null)" = vhost-mdev-net ] || continue
			grep -q '^Cpus_allowed_list:[[:space:]]*0$' "$t/status" 2>/dev/null ||
				taskset -p -c 0 "${t##*/}" >/dev/null 2>&1 || true
		done
		sleep 0.05
	done
}
run() { # label size mode target [opts]
	local label=$1 size=$2 mode=$3 target=$4; shift 4
	local extra=(--busy-poll)
	# mq-batch: batch mode on several queue pairs (--pairs in the options).
	[ "$mode" = pingpong ] && extra+=(--pingpong)
	[ "$mode" = pp-noyield ] && extra+=(--pingpong --no-yield)
	local out tags="\"device\":\"$label\",\"size\":$size,\"mode\":\"$mode\",\"rep\":$rep,\"placement\":\"$PLACEMENT\""
	"${pin[@]}" vhost-mdev bench "$target" --size "$size" --seconds "$SECS" --json "${extra[@]}" "$@" >/tmp/bench.out 2>/tmp/bench.err &
	local pid=$!
	[ "$PLACEMENT" = split ] && move_workers $pid &
	if wait $pid; then
		out=$(cat /tmp/bench.out)
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
modes=() total=0
for mode in batch pingpong; do
	wanted $mode && modes+=($mode) && total=$((total + REPS * 13))
done
# The packed rows: in the modes run above, or both when only "packed" is.
pmodes=()
if wanted packed; then
	pmodes=("${modes[@]}")
	[ ${#pmodes[@]} = 0 ] && pmodes=(batch pingpong)
	total=$((total + REPS * ${#pmodes[@]} * 6))
fi
n=0
for rep in $(seq "$REPS"); do
	for mode in "${modes[@]}"; do
		for size in 64 1500 65535; do
			run "driver ceiling" $size $mode instant; n=$((n + 1))
			run vhost-mdev-type1 $size $mode "$uuid"; n=$((n + 1))
			run vhost-mdev-iommufd $size $mode "$uuid" --iommufd; n=$((n + 1))
			if [ $size != 65535 ]; then
				run vdpa_sim_net $size $mode /dev/vhost-vdpa-0; n=$((n + 1))
				run vdpa_sim_net-bridge $size $mode "$buuid"; n=$((n + 1))
			fi
			echo "INFO: progress $n/$total runs"
		done
	done
	for mode in "${pmodes[@]}"; do
		for size in 64 1500; do
			run "driver ceiling-packed" $size $mode instant --packed; n=$((n + 1))
			run vhost-mdev-type1-packed $size $mode "$uuid" --packed; n=$((n + 1))
			run vhost-mdev-iommufd-packed $size $mode "$uuid" --iommufd --packed; n=$((n + 1))
			echo "INFO: progress $n/$total runs"
		done
	done
done
# Queue pairs: the instance's queue_pairs set while it is closed (between
# runs), then every pair driven; the driver ceiling with as many pairs.
qp=/sys/bus/mdev/devices/$uuid/queue_pairs
if wanted pairs; then
	if [ -e $qp ]; then
		total=$((total + REPS * 9))
		for rep in $(seq "$REPS"); do
			for np in 1 2 4; do
				echo $np >$qp || echo "FAIL: queue_pairs $np refused"
				label="$np pair"; [ $np = 1 ] || label="${label}s"
				run "driver ceiling $label" 64 mq-batch instant --pairs $np; n=$((n + 1))
				run "vhost-mdev-type1 $label" 64 mq-batch "$uuid" --pairs $np; n=$((n + 1))
				run "vhost-mdev-iommufd $label" 64 mq-batch "$uuid" --iommufd --pairs $np; n=$((n + 1))
			done
			echo "INFO: progress $n/$total runs"
		done
		echo 1 >$qp
	else
		echo "FAIL: pairs: the sample has no queue_pairs attribute ($qp)"
	fi
fi
# The non-yielding ping-pong, nothing pinned: the workqueue mask and the
# simulator's kthread back to all CPUs, the driver where the scheduler puts
# it.
echo "$wq_mask" >/sys/devices/virtual/workqueue/cpumask
taskset -p -c "$all_cpus" "$simpid" >/dev/null
taskset -p -c "$all_cpus" "$bsimpid" >/dev/null
pin=() saved_placement=$PLACEMENT PLACEMENT=free
# The "-nopoll" rows: the sample's worker sleeps right after each run
# (poll_us=0) instead of polling for the next kick for 50 us (the default).
poll=/sys/module/vhost_mdev_net/parameters/poll_us
poll_default=$(cat $poll)
wanted pp-noyield && total=$((total + REPS * 6))
for rep in $(seq "$REPS"); do
	wanted pp-noyield || break
	run vhost-mdev-type1 64 pp-noyield "$uuid"; n=$((n + 1))
	run vhost-mdev-iommufd 64 pp-noyield "$uuid" --iommufd; n=$((n + 1))
	run vdpa_sim_net 64 pp-noyield /dev/vhost-vdpa-0; n=$((n + 1))
	run vdpa_sim_net-bridge 64 pp-noyield "$buuid"; n=$((n + 1))
	echo 0 >$poll
	run vhost-mdev-type1-nopoll 64 pp-noyield "$uuid"; n=$((n + 1))
	run vhost-mdev-iommufd-nopoll 64 pp-noyield "$uuid" --iommufd; n=$((n + 1))
	echo "$poll_default" >$poll
	echo "INFO: progress $n/$total runs"
done
PLACEMENT=$saved_placement
# (c) The copy ceilings: each data path's copy routine, timed in this
# kernel (scripts/copy-ceiling, vhost_mdev_copy_ceiling.ko):
# copy_from_user + copy_to_user of each frame (type1: vfio_dma_rw() in and
# out) and one memcpy() of each frame a page at a time (iommufd: pinned
# pages, vhost_mdev_dma_copy()).
for rep in $(seq "$REPS"); do
	wanted copy || break
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
# The end-to-end part: an L2 guest through QEMU (its own BENCH lines).
if wanted e2e; then
	UUID=$uuid BUUID=$buuid VDPA_MAC=02:00:00:00:00:01 BRIDGE_MAC=02:00:00:00:00:02 CS=$cs \
		bash "$VHOST_MDEV_TOP/tests/vm/bench-e2e.sh" || true
fi
echo "PASS: benchmark: $n runs"
vhost-mdev stats "$uuid" | sed 's/^/INFO: stats: /'
vhost-mdev remove "$uuid"
vhost-mdev remove "$buuid"
vdpa dev del vdpa0
vdpa dev del vdpa1
