# SPDX-License-Identifier: GPL-2.0
# Hardening (issues 8 and 14) on the debug kernel: the ring-index stress,
# the in-guest fuzzer, races on one open device, remove and rmmod while a
# process holds a device, the lifecycle stress and fault injection
# (faults.sh). STRESS_FRAMES, FUZZ_OPS, FUZZ_SECONDS, FUZZ_SEED,
# FUZZ_RING_ROUNDS, RACE_SECONDS and STRESS_CYCLES size the run.
. "$VHOST_MDEV_TOP/tests/vm/lib.sh"
load_kernel_modules || { echo "FAIL: hardening: kernel modules"; exit 1; }
load_ours || { echo "FAIL: hardening: our modules"; exit 1; }
ops=${FUZZ_OPS:-30000} cycles=${STRESS_CYCLES:-1000} race=${RACE_SECONDS:-15}

# Runs a tool that prints its own PASS/FAIL lines (as they come: the
# fuzzer's progress lines); a crash becomes a FAIL.
run() {
	local rc out
	out=$(mktemp)
	"$@" 2>&1 | tee "$out"; rc=${PIPESTATUS[0]}
	if [ $rc != 0 ] && ! grep -q '^FAIL: ' "$out"; then
		echo "FAIL: $*: exited with status $rc"
	fi
	rm -f "$out"
}

# Ring indexes under load on every back end and fallback path (not with
# FUZZ_ONLY: make fuzz FUZZ_ONLY=1 runs the fuzzer alone).
[ -n "${FUZZ_ONLY:-}" ] || . "$VHOST_MDEV_TOP/tests/vm/ring-stress.sh"

# KCOV (the debug kernel): the modules' Rust and C are instrumented, and the
# sample's worker has remote coverage.
[ -e /sys/kernel/debug/kcov ] && run vhost-mdev-fuzz kcov-check
# The coverage-guided fuzzer (the plain seeded stream on a kernel without
# KCOV): the seed corpus first, then programs generated and mutated from the
# corpus. FUZZ_SECONDS bounds its time, half per IOMMU back end (make fuzz:
# with no operation limit). Its output (corpus, crashes with their reproducers,
# the PCs reached) goes to /run/job/out/fuzz when VM_OUT brings it back to
# the host, else to /tmp/fuzz; the coverage figures follow.
fz=/tmp/fuzz
[ -n "${VM_OUT:-}" ] && fz=/run/job/out/fuzz
t0=$(date +%s)
run vhost-mdev-fuzz fuzz --ops "$ops" ${FUZZ_SECONDS:+--max-seconds $((FUZZ_SECONDS / 2))} \
	${FUZZ_SEED:+--seed $FUZZ_SEED} ${FUZZ_PROGRESS:+--progress $FUZZ_PROGRESS} \
	--corpus "$TOP/tools/fuzz/corpus" --out "$fz"
# The list of what was not reached only for make fuzz: demangling it loads
# libLLVM over 9p, half a minute under TCG.
if [ -s "$fz/cover.txt" ]; then
	"$TOP/tools/fuzz/cover-report" ${VM_OUT:+--uncovered "$fz/uncovered.txt"} "$fz/cover.txt" "$MODDIR" |
		sed 's/^/INFO: coverage: /'
fi
echo "INFO: fuzz: the fuzzer and its coverage figures took $(( $(date +%s) - t0 )) s"
[ -z "${FUZZ_ONLY:-}" ] || exit 0
# Hostile packed rings written behind a running driver: 25 rounds per back
# end in make check (about 8 s each), 1000 in make fuzz.
run vhost-mdev-fuzz rings --rounds "${FUZZ_RING_ROUNDS:-25}" ${FUZZ_SEED:+--seed $FUZZ_SEED}
run vhost-mdev-fuzz races --seconds "$race"

# Waits (up to 60 s) until the holder has the device open with traffic
# (its INFO line; a fixed sleep lost the race on a loaded machine).
wait_held() {
	local i
	for i in $(seq 300); do
		grep -q '^INFO: hold: ' /tmp/hold.out 2>/dev/null && return 0
		sleep 0.2
	done
}

# Removal while a process holds the device: the request IRQ fires, the
# holder closes, the removal completes (within the timeout).
for how in "" --iommufd; do
	u=$(vhost-mdev create --parent vhost_mdev_net --type "$TYPE")
	rm -f /tmp/hold.out
	run vhost-mdev-fuzz hold "$u" $how --timeout 60 >/tmp/hold.out &
	wait_held
	t "remove while open with traffic ${how:-(type1)}: completes once the holder closes" \
		timeout 90 sh -c "echo 1 >/sys/bus/mdev/devices/$u/remove"
	wait; cat /tmp/hold.out
done

# A process without access to the device nodes cannot reach the device.
u=$(vhost-mdev create --parent vhost_mdev_net --type "$TYPE")
t "an unprivileged process cannot open the device (group node, cdev)" sh -c "
	! setpriv --reuid=65534 --regid=65534 --clear-groups vhost-mdev probe $u >/tmp/np.out 2>&1 &&
	grep -qi 'permission' /tmp/np.out &&
	! setpriv --reuid=65534 --regid=65534 --clear-groups vhost-mdev probe $u --iommufd >/dev/null 2>&1"
echo 1 >/sys/bus/mdev/devices/$u/remove

run vhost-mdev-fuzz stress --cycles "$cycles"
t "no instance left behind" sh -c "! ls /sys/bus/mdev/devices/ | grep -q ."

# Unloading the parent while a process holds one of its devices.
u=$(vhost-mdev create --parent vhost_mdev_net --type "$TYPE")
rm -f /tmp/hold.out
run vhost-mdev-fuzz hold "$u" --timeout 60 >/tmp/hold.out &
wait_held
t "rmmod vhost_mdev_net while a device is open with traffic: completes once the holder closes" \
	timeout 90 rmmod vhost_mdev_net
wait; cat /tmp/hold.out
t "vhost_mdev unloads" rmmod vhost_mdev
bash "$TOP/tests/vm/faults.sh"
