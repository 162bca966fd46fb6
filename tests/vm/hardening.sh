# SPDX-License-Identifier: GPL-2.0
# Hardening (issue 8): the in-guest fuzzer and the lifecycle stress on the
# debug kernel. FUZZ_OPS, FUZZ_SEED and STRESS_CYCLES size the run.
. "$VHOST_MDEV_TOP/tests/vm/lib.sh"
load_kernel_modules || { echo "FAIL: hardening: kernel modules"; exit 1; }
load_ours || { echo "FAIL: hardening: our modules"; exit 1; }
ops=${FUZZ_OPS:-50000} cycles=${STRESS_CYCLES:-1000}

# Runs a tool that prints its own PASS/FAIL lines; a crash becomes a FAIL.
run() {
	local out rc
	out=$("$@" 2>&1); rc=$?
	echo "$out"
	if [ $rc != 0 ] && ! echo "$out" | grep -q '^FAIL: '; then
		echo "FAIL: $*: exited with status $rc"
	fi
}
run vhost-mdev-fuzz fuzz --ops "$ops" ${FUZZ_SEED:+--seed $FUZZ_SEED}
run vhost-mdev-fuzz stress --cycles "$cycles"
t "no instance left behind" sh -c "! ls /sys/bus/mdev/devices/ | grep -q ."
t "modules unload after fuzzing and stress" sh -c "rmmod vhost_mdev_net && rmmod vhost_mdev"
