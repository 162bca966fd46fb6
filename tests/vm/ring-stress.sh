# SPDX-License-Identifier: GPL-2.0
# Ring-index stress (issue 14): a correct driver with 128 frames in flight,
# queue sizes 256 and 1024, frames of 64, 1500 and 9000 bytes, every
# frame's sequence number and payload checked, STRESS_FRAMES frames per
# configuration (default 100000; `make stress`: 1000000). Over a type1
# container, and over iommufd with the pin cache disabled, so that every
# access goes through vfio_dma_rw() and the rings' user addresses there too.
# (An exhausted cache, which pins and unpins on nearly every access, moves
# about 70 frames/s of 9000 bytes here: suite.sh runs exact traffic with a
# one-page cache instead.)
#
# A job script of its own (`make stress`), and sourced by hardening.sh
# (make check), which has loaded the modules; leaves ours loaded with their
# default parameters.
. "$VHOST_MDEV_TOP/tests/vm/lib.sh"
if [ ! -d /sys/module/vfio ]; then
	load_kernel_modules || { echo "FAIL: ring stress: kernel modules"; exit 1; }
fi
[ -d /sys/module/vhost_mdev_net ] || load_ours ||
	{ echo "FAIL: ring stress: our modules"; exit 1; }

# Runs the stress tests matching $1 with vhost_mdev's parameters $2.
ring_stress() {
	local filter=$1 params=$2 out rc
	if ! { unload_ours && insmod "$MODDIR/vhost_mdev.ko" $params &&
		insmod "$MODDIR/vhost_mdev_net.ko"; }; then
		echo "FAIL: ring stress ($filter): reloading vhost_mdev with '$params'"
		return
	fi
	out=$(vhost-mdev-tests --stress "$filter" 2>&1); rc=$?
	echo "$out"
	if [ $rc != 0 ] && ! echo "$out" | grep -q '^FAIL: '; then
		echo "FAIL: ring stress ($filter): exited with status $rc"
	fi
}

t0=$(date +%s)
ring_stress type1 ""
ring_stress iommufd "pin_cache_bytes=0"
unload_ours && load_ours || echo "FAIL: ring stress: reloading our modules"
echo "INFO: ring stress: ${STRESS_FRAMES:-100000} frames per configuration in $(( $(date +%s) - t0 )) s"
