# SPDX-License-Identifier: GPL-2.0
# Path-length job of scripts/ab --insns (release kernel, under the
# tools/insn-count QEMU plugin): loads one side's modules (AB_DIR, as
# tests/vm/ab.sh's AB_A/AB_B), runs one case (AB_CASE, SIZE:MODE[:OPTS])
# for AB_SECONDS and prints "INSNS {json}". The plugin counts every
# instruction of the boot; scripts/ab runs each side twice, for two
# durations, and takes the difference per frame, so that the boot and
# the set-up cancel out.
#
# What would make the count depend on time rather than on frames is left
# out: the worker does not poll for kicks (poll_us=0) and the driver
# sleeps on its interrupt eventfd (no --busy-poll). Driver and worker on
# CPU 1.
. "$VHOST_MDEV_TOP/tests/vm/lib.sh"
dir=${AB_DIR:?} secs=${AB_SECONDS:-2}
IFS=: read -r size mode opts <<<"${AB_CASE:?}"
args=(${opts//,/ })
[ "$mode" = pingpong ] && args+=(--pingpong)
load_kernel_modules
echo 2 >/sys/devices/virtual/workqueue/cpumask
insmod "$dir/vhost_mdev.ko" && insmod "$dir/vhost_mdev_net.ko" poll_us=0 ||
	{ echo "FAIL: insns: loading $dir"; exit 1; }
type=$(basename "$(ls -d /sys/class/mdev_bus/*/mdev_supported_types/vhost_mdev_net-* | head -n1)")
uuid=$("$dir/vhost-mdev" create --parent vhost_mdev_net --type "$type") ||
	{ echo "FAIL: insns: create"; exit 1; }
out=$(taskset -c 1 "$dir/vhost-mdev" bench "$uuid" --size "$size" --seconds "$secs" \
	--json "${args[@]}") || { echo "FAIL: insns: bench $AB_CASE"; exit 1; }
echo "INSNS $out"
"$dir/vhost-mdev" remove "$uuid" && rmmod vhost_mdev_net && rmmod vhost_mdev ||
	{ echo "FAIL: insns: clean-up"; exit 1; }
echo "PASS: insns: $AB_CASE, $secs s"
