# SPDX-License-Identifier: GPL-2.0
# The in-guest suite (SUITE=quick or full): module and sysfs behaviour here,
# the uAPI, traffic and bad input in the vhost-mdev-tests binary.
. "$VHOST_MDEV_TOP/tests/vm/lib.sh"
# Where the .ko files are (the harness may point MODDIR elsewhere).
KO=${MODDIR:-$TOP}

t "kernel modules: vfio, type1, iommufd, mdev load" load_kernel_modules
t "vhost_mdev rejects pin_cache_bytes=4097 (not a multiple of the page size)" \
	expect_fail insmod "$KO/vhost_mdev.ko" pin_cache_bytes=4097
t "vhost_mdev rejects pin_cache_bytes=2147483648 (above 1 GiB)" \
	expect_fail insmod "$KO/vhost_mdev.ko" pin_cache_bytes=2147483648
t "vhost_mdev rejects pin_cache_bytes=lots" expect_fail insmod "$KO/vhost_mdev.ko" pin_cache_bytes=lots
t "vhost_mdev loads and registers its mdev driver" \
	sh -c "insmod $KO/vhost_mdev.ko && test -d /sys/bus/mdev/drivers/vhost_mdev"
t "pin_cache_bytes defaults to 64 MiB and is read-only" sh -c "
	. $TOP/tests/vm/lib.sh
	P=/sys/module/vhost_mdev/parameters/pin_cache_bytes
	eq \"\$(cat \$P)\" 67108864 && eq \"\$(stat -c %a \$P)\" 444 &&
	! echo 0 >\$P 2>/dev/null && eq \"\$(cat \$P)\" 67108864"
t "vhost_mdev_net rejects max_instances=0" expect_fail insmod "$KO/vhost_mdev_net.ko" max_instances=0
t "vhost_mdev_net rejects max_instances=5000" expect_fail insmod "$KO/vhost_mdev_net.ko" max_instances=5000
t "vhost_mdev_net loads with max_instances=4" insmod "$KO/vhost_mdev_net.ko" max_instances=4
# The benchmark aid of `make bench`, a module of its own.
CC=/sys/kernel/debug/vhost_mdev_copy_ceiling/copy_ceiling
t "vhost_mdev_copy_ceiling loads" insmod "$KO/vhost_mdev_copy_ceiling.ko"
t "copy_ceiling (debugfs) rejects bad input and times both copy routines" sh -c "
	C=$CC
	test -e \$C &&
	! echo '0 1' >\$C && ! echo '65550 1' >\$C && ! echo '64 0' >\$C &&
	! echo '64 10000001' >\$C && ! echo '64 1 bogus' >\$C &&
	! echo '64 1 user extra' >\$C && ! echo 'x y' >\$C &&
	$TOP/scripts/copy-ceiling 64 1500 --iterations 200 --mode memcpy | grep -c '\"mode\": \"memcpy\"' | grep -qx 2 &&
	$TOP/scripts/copy-ceiling 64 --iterations 200 | grep -q '\"mode\": \"user\"'"

# 10^7 iterations of 64 KiB take hours (1.4 ms each under TCG): the bounds
# below only tell a stopped measurement from one that runs on.
t "copy_ceiling: a signal ends a measurement; rmmod never waits for one" sh -c "
	C=$CC
	echo '65536 10000000' >\$C || exit 1
	dd if=\$C of=/dev/null bs=131072 count=1 2>/dev/null &
	pid=\$!
	sleep 1
	kill -0 \$pid 2>/dev/null || { echo 'the measurement ended within 1 s'; exit 1; }
	t0=\$(date +%s%N)
	rmmod vhost_mdev_copy_ceiling 2>/dev/null && { echo 'rmmod succeeded during a measurement'; exit 1; }
	ms=\$(( (\$(date +%s%N) - t0) / 1000000 ))
	[ \$ms -lt 30000 ] || { echo \"rmmod took \$ms ms\"; exit 1; }
	kill -KILL \$pid
	for i in \$(seq 300); do kill -0 \$pid 2>/dev/null || break; sleep 0.1; done
	kill -0 \$pid 2>/dev/null && { echo 'the reader survived SIGKILL for 30 s'; exit 1; }
	wait \$pid
	grep -q '^vhost_mdev_copy_ceiling ' /proc/modules"
t "vhost_mdev_copy_ceiling unloads, and its file goes with it" sh -c "
	rmmod vhost_mdev_copy_ceiling && ! test -e $CC"

t "type attributes: device_api, name, available_instances" sh -c "
	. $TOP/tests/vm/lib.sh
	eq \"\$(cat $TYPEDIR/device_api)\" vfio-vhost &&
	eq \"\$(cat $TYPEDIR/name)\" 'virtio-net loopback' &&
	eq \"\$(cat $TYPEDIR/available_instances)\" 4 &&
	grep -q loop $TYPEDIR/description"

U1=11111111-2222-3333-4444-000000000001
t "create rejects a malformed UUID" expect_fail sh -c "echo not-a-uuid >$TYPEDIR/create"
t "create and count instances to the limit" sh -c "
	. $TOP/tests/vm/lib.sh
	for i in 1 2 3 4; do echo 11111111-2222-3333-4444-00000000000\$i >$TYPEDIR/create || exit 1; done
	eq \"\$(cat $TYPEDIR/available_instances)\" 0 &&
	! echo 11111111-2222-3333-4444-000000000009 >$TYPEDIR/create"
t "create rejects a duplicate UUID" expect_fail sh -c "echo $U1 >$TYPEDIR/create"
D=/sys/bus/mdev/devices/$U1
t "instance has a VFIO group and cdev" sh -c "test -e $D/iommu_group && ls $D/vfio-dev | grep -q vfio"
t "MAC derives from the UUID (locally administered)" sh -c "
	. $TOP/tests/vm/lib.sh; eq \"\$(cat $D/mac)\" 02:11:11:11:11:22"
t "mac rejects multicast, malformed and zero addresses" sh -c "
	! echo 01:00:00:00:00:01 >$D/mac && ! echo 02:00:00 >$D/mac &&
	! echo zz:00:00:00:00:01 >$D/mac && ! echo 00:00:00:00:00:00 >$D/mac"
t "mac accepts a unicast address" sh -c "
	. $TOP/tests/vm/lib.sh; echo 02:aa:bb:cc:dd:ee >$D/mac && eq \"\$(cat $D/mac)\" 02:aa:bb:cc:dd:ee"
t "mtu: rejects 67 and 65536, accepts 9000" sh -c "
	. $TOP/tests/vm/lib.sh
	! echo 67 >$D/mtu && ! echo 65536 >$D/mtu && ! echo abc >$D/mtu &&
	echo 9000 >$D/mtu && eq \"\$(cat $D/mtu)\" 9000"
t "link toggles and rejects other values" sh -c "
	. $TOP/tests/vm/lib.sh
	echo 0 >$D/link && eq \"\$(cat $D/link)\" 0 && echo up >$D/link &&
	eq \"\$(cat $D/link)\" 1 && ! echo maybe >$D/link"
t "stats start at zero" sh -c "
	. $TOP/tests/vm/lib.sh; for f in $D/stats/*; do eq \"\$(cat \$f)\" 0 || exit 1; done"
t "attribute names, modes, output bytes and write errors are the shipped ones" \
	sample_attrs $D
t "remove frees the instances" sh -c "
	. $TOP/tests/vm/lib.sh
	for i in 1 2 3 4; do echo 1 >/sys/bus/mdev/devices/11111111-2222-3333-4444-00000000000\$i/remove || exit 1; done
	eq \"\$(cat $TYPEDIR/available_instances)\" 4"

# A UUID of its own, not one of the instances above.
UM=11111111-2222-3333-4444-0000000000d1
t "mdevctl lists the type and starts/stops an instance" sh -c "
	mdevctl types | grep -q $TYPE &&
	mdevctl start -u $UM -p vhost_mdev_net --type $TYPE &&
	test -d /sys/bus/mdev/devices/$UM && mdevctl list | grep -q $UM &&
	mdevctl stop -u $UM && ! test -d /sys/bus/mdev/devices/$UM"

# From here on the sample runs with its default limit of 16 instances
# (the uAPI suite creates 16 at once).
t "vhost_mdev_net reloads with the default max_instances=16" sh -c "
	. $TOP/tests/vm/lib.sh
	rmmod vhost_mdev_net && insmod $KO/vhost_mdev_net.ko &&
	eq \"\$(cat $TYPEDIR/available_instances)\" 16"

# The CLI on an instance that mdevctl made (no udev: start it explicitly).
U2=33333333-4444-5555-6666-000000000002
D2=/sys/bus/mdev/devices/$U2
t "CLI: mdevctl start, vhost-mdev list shows the instance" sh -c "
	mdevctl start -u $U2 -p vhost_mdev_net --type $TYPE && test -d $D2 &&
	vhost-mdev list | grep -q '$U2.*free'"
t "CLI: vhost-mdev info -j from sysfs: closed, no holder, the sample's config" sh -c "
	vhost-mdev info $U2 -j | jq -e '(.state == \"closed\") and (.holder == null) and
		(.backend == null) and (.remove_requested == 0) and (.device_api == \"vfio-vhost\") and
		(.config.mac == \"02:33:33:33:33:44\") and (.config.mtu == \"1500\") and
		(.config.queue_pairs == \"1\") and (.config | has(\"state\") | not)' >/dev/null ||
		{ vhost-mdev info $U2 -j; exit 1; }
	vhost-mdev list -j | jq -e '.parents | map(.name) | index(\"vhost_mdev_net\") != null' >/dev/null &&
	vhost-mdev list types -j | jq -e 'map(select(.device_api == \"vfio-vhost\")) | length > 0' >/dev/null &&
	vhost-mdev list instances | grep -q '^$U2 .*: free\$'"
t "CLI: vhost-mdev probe (opens the device)" sh -c "
	. $TOP/tests/vm/lib.sh
	out=\$(vhost-mdev probe $U2) || exit 1
	echo \"\$out\" | grep -qx 'virtio device id: 1 (net)' &&
	echo \"\$out\" | grep -qx 'mac: 02:33:33:33:33:44' &&
	echo \"\$out\" | grep -qx 'mtu: 1500' &&
	echo \"\$out\" | grep -qx 'queues: 2' &&
	echo \"\$out\" | grep -qx 'max queue size: 1024' &&
	echo \"\$out\" | grep -q 'VERSION_1' || { echo \"\$out\"; exit 1; }"
t "CLI: vhost-mdev ping (container, region messages)" vhost-mdev ping $U2 -n 200
t "CLI: vhost-mdev ping (iommufd, ioctls, ioeventfds)" \
	vhost-mdev ping $U2 -n 50 --iommufd --ioctl --ioeventfd
t "CLI: vhost-mdev stats counts the pings" sh -c "
	out=\$(vhost-mdev stats $U2) || exit 1
	echo \"\$out\" | grep -qx 'tx_packets: 250' &&
	echo \"\$out\" | grep -qx 'rx_packets: 250' &&
	echo \"\$out\" | grep -qx 'ring_errors: 0' || { echo \"\$out\"; exit 1; }"
t "CLI: vhost-mdev remove refuses while another process holds the device" sh -c "
	vhost-mdev bench $U2 --seconds 60 >/dev/null 2>&1 &
	pid=\$!
	held=0
	for i in \$(seq 200); do
		vhost-mdev list | grep -q '$U2.*in use by pid '\$pid && { held=1; break; }
		sleep 0.05
	done
	out=\$(vhost-mdev remove $U2 2>&1); rc=\$?
	# While held: the views name the holder (unprivileged too), config
	# set is refused, the link changes.
	r=0
	vhost-mdev info $U2 --json | jq -e \".state == \\\"open\\\" and .holder.pid == \$pid and
		.backend == \\\"type1\\\" and .holder.comm == \\\"vhost-mdev\\\"\" >/dev/null ||
		{ vhost-mdev info $U2 -j; r=1; }
	setpriv --reuid=65534 --regid=65534 --clear-groups vhost-mdev list instances |
		grep -q \"^$U2 .*in use by pid \$pid\" || { echo 'unprivileged list misses the holder'; r=1; }
	vhost-mdev config set $U2 --mtu 1400 2>/tmp/cs.err; c=\$?
	[ \$c = 4 ] && grep -q 'stop that process' /tmp/cs.err || { echo \"config set on open: \$c\"; cat /tmp/cs.err; r=1; }
	vhost-mdev link $U2 down && [ \$(cat $D2/link) = 0 ] && vhost-mdev link $U2 up &&
		[ \$(cat $D2/link) = 1 ] || { echo 'link down/up while open'; r=1; }
	kill \$pid; wait \$pid
	[ \$r = 0 ] || exit 1
	[ \$held = 1 ] || { echo \"vhost-mdev list never showed pid \$pid holding $U2\"; exit 1; }
	[ \$rc = 4 ] || { echo \"remove exited \$rc while pid \$pid held the device\"; exit 1; }
	echo \"\$out\" | grep -q \"pid \$pid\" || { echo \"message does not name pid \$pid: \$out\"; exit 1; }
	test -d $D2 || { echo 'the instance is gone'; exit 1; }"
t "CLI: exit statuses: not found, usage, permission; stats -j per pair" sh -c "
	vhost-mdev info 00000000-0000-4000-8000-000000000000 2>/dev/null; c1=\$?
	vhost-mdev info not-a-uuid 2>/dev/null; c2=\$?
	setpriv --reuid=65534 --regid=65534 --clear-groups vhost-mdev config set $U2 --mtu 1400 2>/tmp/perm.err; c3=\$?
	vhost-mdev config set $U2 --mtu 10 2>/dev/null; c4=\$?
	[ \$c1.\$c2.\$c3.\$c4 = 3.2.5.2 ] || { echo \"exit statuses \$c1.\$c2.\$c3.\$c4\"; cat /tmp/perm.err; exit 1; }
	grep -q 'run as root' /tmp/perm.err || { cat /tmp/perm.err; exit 1; }
	vhost-mdev config set $U2 --mtu 1400 && [ \$(cat $D2/mtu) = 1400 ] &&
		vhost-mdev config set $U2 --mtu 1500 || exit 1
	vhost-mdev stats $U2 -j | jq -e '(.counters.tx_packets > 250) and (.pairs | length == 1) and
		(.pairs[0].tx_packets == .counters.tx_packets)' >/dev/null || { vhost-mdev stats $U2 -j; exit 1; }"
t "CLI: vhost-mdev bench --json prints packets/s" sh -c "
	out=\$(vhost-mdev bench $U2 --seconds 1 --json) || exit 1
	echo \"\$out\" | jq -e '(.pps > 0) and (.packets > 0) and (.seconds >= 1) and (.bytes > 0)' >/dev/null ||
		{ echo \"not the expected JSON: \$out\"; exit 1; }"
t "CLI: ping and bench on packed rings and 2 queue pairs; more pairs refused" sh -c "
	vhost-mdev ping $U2 -n 20 --packed && vhost-mdev ping $U2 -n 20 --packed --iommufd --indirect || exit 1
	! vhost-mdev ping $U2 -n 1 --pairs 2 2>/tmp/qp.err && grep -q 'at most 1 pairs' /tmp/qp.err ||
		{ echo \"--pairs 2 on one pair: \$(cat /tmp/qp.err)\"; exit 1; }
	echo 2 >$D2/queue_pairs || exit 1
	vhost-mdev ping $U2 -n 20 --pairs 2 --packed || exit 1
	out=\$(vhost-mdev bench $U2 --seconds 1 --json --packed --pairs 2) || exit 1
	echo 1 >$D2/queue_pairs || exit 1
	echo \"\$out\" | jq -e '.packed and (.pairs == 2) and (.pair_packets | all(. > 0))' >/dev/null ||
		{ echo \"not the expected JSON: \$out\"; exit 1; }"
t "poll_us: 0-1000 at run time, bad writes refused; traffic with polling off" sh -c "
	. $TOP/tests/vm/lib.sh
	P=/sys/module/vhost_mdev_net/parameters/poll_us
	eq \"\$(cat \$P)\" 50 || exit 1
	! echo 1001 >\$P && ! echo -1 >\$P && ! echo x >\$P && eq \"\$(cat \$P)\" 50 || exit 1
	echo 0 >\$P && vhost-mdev ping $U2 -n 20 --iommufd && vhost-mdev ping $U2 -n 20 || exit 1
	echo 1000 >\$P && vhost-mdev ping $U2 -n 20 && echo 50 >\$P"
# The benchmark's peer: the same driver through vhost-vdpa on vdpa_sim_net
# (make bench has no other check that this path works).
t "CLI: vhost-mdev ping and bench drive vdpa_sim_net through vhost-vdpa" sh -c "
	for m in vdpa vdpa_sim vdpa_sim_net vhost_vdpa; do modprobe -d $MODROOT \$m || exit 1; done
	vdpa dev add mgmtdev vdpasim_net name vdpa0 mac 02:00:00:00:00:01 || exit 1
	r=0
	vhost-mdev ping /dev/vhost-vdpa-0 -n 20 || r=1
	vhost-mdev bench /dev/vhost-vdpa-0 --seconds 1 --json --busy-poll --pingpong --no-yield >/dev/null || r=1
	vdpa dev del vdpa0
	for m in vhost_vdpa vdpa_sim_net vdpa_sim; do rmmod \$m; done
	exit \$r"
# The vDPA bridge on vdpa_sim_net (tests/vm/bridge.sh).
. "$TOP/tests/vm/bridge.sh"
U3=33333333-4444-5555-6666-000000000003
t "CLI: create -p -t -u with --mac --mtu --queue-pairs; remove --force ends the holder" sh -c "
	. $TOP/tests/vm/lib.sh
	eq \"\$(vhost-mdev create -p vhost_mdev_net -t $TYPE -u $U3 --mac 02:00:00:00:03:03 --mtu 9000 --queue-pairs 2)\" $U3 || exit 1
	vhost-mdev info $U3 -j | jq -e '.config.mac == \"02:00:00:00:03:03\" and .config.mtu == \"9000\" and
		.config.queue_pairs == \"2\"' >/dev/null || { vhost-mdev info $U3; exit 1; }
	vhost-mdev bench $U3 --seconds 60 --iommufd >/dev/null 2>&1 &
	pid=\$!
	for i in \$(seq 200); do [ \"\$(cat /sys/bus/mdev/devices/$U3/holder)\" = \$pid ] && break; sleep 0.05; done
	eq \"\$(cat /sys/bus/mdev/devices/$U3/backend)\" iommufd || { kill \$pid; exit 1; }
	out=\$(vhost-mdev remove $U3 --force --timeout 5 2>&1) || { echo \"\$out\"; kill \$pid; exit 1; }
	echo \"\$out\" | grep -q \"in use by pid \$pid (vhost-mdev)\" || { echo \"\$out\"; exit 1; }
	wait \$pid; ! kill -0 \$pid 2>/dev/null && ! test -d /sys/bus/mdev/devices/$U3"
t "CLI: remove --wait: the core says a removal waits, until the holder closes" sh -c "
	. $TOP/tests/vm/lib.sh
	# The device's own directory: the kernel takes the bus link away
	# while the removal waits.
	R=\$(readlink -f $D2)
	vhost-mdev bench $U2 --seconds 6 >/dev/null 2>&1 &
	pid=\$!
	for i in \$(seq 200); do [ \"\$(cat \$R/holder)\" = \$pid ] && break; sleep 0.05; done
	eq \"\$(cat \$R/remove_requested)\" 0 || exit 1
	vhost-mdev remove $U2 --wait 2>/tmp/rw.err & rp=\$!
	seen=0
	for i in \$(seq 60); do
		[ \"\$(cat \$R/state 2>/dev/null)\" = removing ] && [ \"\$(cat \$R/remove_requested)\" -ge 1 ] &&
			vhost-mdev info $U2 -j | jq -e \".state == \\\"removing\\\" and .holder.pid == \$pid\" >/dev/null &&
			{ seen=1; break; }
		sleep 0.05
	done
	wait \$rp; rc=\$?; wait \$pid
	[ \$seen = 1 ] || { echo 'state never said removing'; exit 1; }
	[ \$rc = 0 ] && grep -q \"in use by pid \$pid\" /tmp/rw.err || { echo \"rc \$rc\"; cat /tmp/rw.err; exit 1; }
	! test -d \$R && ! mdevctl list | grep -q $U2"
t "CLI: vhost-mdev remove of a removed instance: not found" sh -c "
	vhost-mdev remove $U2 2>/dev/null; [ \$? = 3 ] && ! mdevctl list | grep -q $U2"

# The second sample parent, a virtio-blk RAM disk: the blk_ tests of
# vhost-mdev-tests drive it (the others pick the loopback's type).
BLKTYPE=/sys/class/mdev_bus/vhost_mdev_blk/mdev_supported_types/vhost_mdev_blk-ramdisk
t "vhost_mdev_blk rejects max_instances=0" expect_fail insmod "$KO/vhost_mdev_blk.ko" max_instances=0
t "vhost_mdev_blk loads with max_instances=4" sh -c "
	. $TOP/tests/vm/lib.sh
	insmod $KO/vhost_mdev_blk.ko max_instances=4 &&
	eq \"\$(cat $BLKTYPE/device_api)\" vfio-vhost &&
	eq \"\$(cat $BLKTYPE/name)\" 'virtio-blk RAM disk' &&
	eq \"\$(cat $BLKTYPE/available_instances)\" 4"
UB=66666666-0000-0000-0000-000000000001
t "CLI: vhost-mdev probe, blk check and blk id on the blk sample" sh -c "
	. $TOP/tests/vm/lib.sh
	echo $UB >$BLKTYPE/create || exit 1
	out=\$(vhost-mdev probe $UB) || exit 1
	echo \"\$out\" | grep -qx 'virtio device id: 2 (block)' &&
	echo \"\$out\" | grep -qx 'capacity: 2048 sectors' &&
	echo \"\$out\" | grep -qx 'read-only: 0' || { echo \"\$out\"; exit 1; }
	vhost-mdev blk $UB check -n 8 --sectors 4 || exit 1
	vhost-mdev blk $UB --iommufd --ioctl --ioeventfd --indirect check -n 8 --sector 2040 || exit 1
	eq \"\$(vhost-mdev blk $UB id)\" vhost-mdev-66666666 || exit 1
	head -c 1024 /dev/urandom >/tmp/blk.in && vhost-mdev blk $UB write 5 </tmp/blk.in &&
	vhost-mdev blk $UB read 5 2 | cmp - /tmp/blk.in || exit 1
	! vhost-mdev blk $UB read 2048 2>/dev/null || { echo 'a read beyond the capacity succeeded'; exit 1; }
	echo 1 >/sys/bus/mdev/devices/$UB/remove"

if command -v vhost-mdev-tests >/dev/null; then
	if [ "$SUITE" = full ]; then
		vhost-mdev-tests
	else
		vhost-mdev-tests --quick
	fi
else
	echo "FAIL: vhost-mdev-tests: binary not found in $PATH"
fi
t "vhost_mdev_blk unloads" rmmod vhost_mdev_blk

# A parent written in C (tests/kmod/c_parent.c) on the C ABI: the version
# check, a parent on an existing device, per-instance attributes,
# vhost_mdev_vq_interrupt() from a hard IRQ handler (lockdep, on in the
# debug kernel, reports an IRQ lock that is not IRQ-safe: the vm-tests
# above took the same lock class with interrupts on), and the cparent_
# tests of vhost-mdev-tests.
CP=/sys/devices/vhost_mdev_c_parent_root
UC=66666666-0000-0000-0000-000000000001
t "C parent: a parent built for another ABI version is refused, with the reason" sh -c "
	dmesg -C
	insmod $TOP/tests/kmod/c_parent.ko abi=1 2>/tmp/cp.err && { rmmod c_parent; echo 'abi=1 was accepted'; exit 1; }
	grep -q 'Invalid parameters' /tmp/cp.err || { cat /tmp/cp.err; exit 1; }
	dmesg | grep -q 'vhost_mdev: a parent built against another ABI (version field 0x1) is refused: rebuild it' ||
		{ dmesg | tail -5; exit 1; }
	! test -e $CP"
t "C parent: registers on its own device; instances carry its attributes" sh -c "
	. $TOP/tests/vm/lib.sh
	insmod $TOP/tests/kmod/c_parent.ko || exit 1
	P=\$(readlink -f /sys/class/mdev_bus/vhost_mdev_c_parent) || exit 1
	case \$P in $CP/*) ;; *) echo \"parent device at \$P\"; exit 1 ;; esac
	T=\$P/mdev_supported_types/vhost_mdev_c_parent-test
	eq \"\$(cat \$T/device_api)\" vfio-vhost || exit 1
	echo $UC >\$T/create || exit 1
	D=/sys/bus/mdev/devices/$UC
	case \$(readlink -f \$D) in $CP/*) ;; *) echo \"instance at \$(readlink -f \$D)\"; exit 1 ;; esac
	vhost-mdev probe $UC >/tmp/cp.info 2>&1 || { cat /tmp/cp.info; exit 1; }
	vhost-mdev info $UC -j | jq -e '.config.nvqs == \"2\" and .state == \"closed\"' >/dev/null || { vhost-mdev info $UC; exit 1; }
	grep -qx 'virtio device id: 1 (net)' /tmp/cp.info && grep -qx 'queues: 2' /tmp/cp.info &&
	grep -qx 'max queue size: 256' /tmp/cp.info || { cat /tmp/cp.info; exit 1; }"
t "C parent: the queue count is read at every open, 1 to 1024" sh -c "
	. $TOP/tests/vm/lib.sh
	D=/sys/bus/mdev/devices/$UC
	for n in 1024 1 513; do
		echo \$n >\$D/nvqs || exit 1
		vhost-mdev probe $UC >/tmp/cp.info 2>&1 || { cat /tmp/cp.info; exit 1; }
		grep -qx \"queues: \$n\" /tmp/cp.info || { grep queues /tmp/cp.info; exit 1; }
	done
	for n in 0 1025; do
		dmesg -C
		echo \$n >\$D/nvqs || exit 1
		vhost-mdev probe $UC >/tmp/cp.info 2>&1; rc=\$?
		[ \$rc = 1 ] || { echo \"opened with \$n queues: exit \$rc (device error: 1)\"; exit 1; }
		dmesg | grep -q \"a parent instance with \$n virtqueues is refused: the core carries 1 to 1024\" ||
			{ dmesg | tail -3; exit 1; }
	done
	echo 2 >\$D/nvqs && vhost-mdev probe $UC | grep -qx 'queues: 2'"
t "C parent: vq_interrupt from a hard IRQ handler, no lockdep report" sh -c "
	. $TOP/tests/vm/lib.sh
	D=/sys/bus/mdev/devices/$UC
	eq \"\$(cat \$D/hardirq_interrupts)\" 0 || exit 1
	echo 0 >\$D/fire_irq || exit 1
	for i in \$(seq 50); do [ \"\$(cat \$D/hardirq_interrupts)\" = 1 ] && break; sleep 0.1; done
	eq \"\$(cat \$D/hardirq_interrupts)\" 1 && eq \"\$(cat \$D/other_interrupts)\" 0 || exit 1
	! echo x >\$D/fire_irq 2>/dev/null && ! echo 65536 >\$D/fire_irq 2>/dev/null || exit 1
	grep -q 'debug_locks: *1' /proc/lockdep_stats || { echo 'lockdep is off (an earlier report?)'; exit 1; }
	! dmesg | grep -E 'inconsistent lock state|possible irq lock inversion' || exit 1"
# What the core forwards to a parent (memory tables, statuses) and the
# interrupt upcall from hard IRQ context, seen from a driver.
if command -v vhost-mdev-tests >/dev/null; then
	vhost-mdev-tests --c-parent
fi
t "C parent: instances go, the module unloads" sh -c "
	echo 1 >/sys/bus/mdev/devices/$UC/remove && rmmod c_parent && ! test -e $CP"

# Lifecycle stress proper (1000 cycles, with traffic) is in the hardening
# suite; here a few rounds of create and remove at the instance limit.
cycles=16
[ "$SUITE" = full ] && cycles=32
t "create/remove 4 instances x $cycles rounds" sh -c "
	for r in \$(seq $cycles); do
		u=22222222-0000-0000-\$(printf %04x \$r)-00000000000
		for i in \$(seq 4); do echo \$u\$i >$TYPEDIR/create || exit 1; done
		for i in \$(seq 4); do echo 1 >/sys/bus/mdev/devices/\$u\$i/remove || exit 1; done
	done"

t "modules unload cleanly" sh -c "rmmod vhost_mdev_net && rmmod vhost_mdev && ! lsmod | grep -q vhost_mdev"

# The pin cache off, and at one page (every copy between two pages misses):
# iommufd traffic then goes through vfio_dma_rw() and stays exact.
U3=55555555-0000-0000-0000-000000000001
for bytes in 0 $(getconf PAGESIZE); do
	t "pin_cache_bytes=$bytes: iommufd traffic exact" sh -c "
		. $TOP/tests/vm/lib.sh
		insmod $KO/vhost_mdev.ko pin_cache_bytes=$bytes && insmod $KO/vhost_mdev_net.ko || exit 1
		eq \"\$(cat /sys/module/vhost_mdev/parameters/pin_cache_bytes)\" $bytes || exit 1
		echo $U3 >$TYPEDIR/create || exit 1
		vhost-mdev ping $U3 -n 100 --iommufd &&
		vhost-mdev ping $U3 -n 50 --size 1514 --iommufd --ioctl --ioeventfd &&
		echo 1 >/sys/bus/mdev/devices/$U3/remove && rmmod vhost_mdev_net && rmmod vhost_mdev"
done

# Late releases: something else in the kernel may hold a reference to an
# mdev type, an mdev device, its VFIO device or the parent's device past
# the removal and past both modules' unload; the releases then run code and
# read data of the core (mdev_device_release() reads its mdev driver, the
# VFIO device's release is the core's, the parent's device release frees
# the parent). tests/kmod/late_ref.ko holds such references until told to
# drop them: the core's exit must wait for them, and their releases must run
# cleanly once the modules are gone.
LR=/sys/kernel/debug/late_ref
U4=44444444-0000-0000-0000-000000000001
t "late releases: the core's unload waits for them, and they run cleanly" sh -c "
	. $TOP/tests/vm/lib.sh
	insmod $TOP/tests/kmod/late_ref.ko && load_ours max_instances=4 || exit 1
	echo $U4 >$TYPEDIR/create || exit 1
	vhost-mdev ping $U4 -n 5 || exit 1
	vhost-mdev ping $U4 -n 5 --iommufd || exit 1
	D=/sys/bus/mdev/devices/$U4
	for p in \$D \$D/vfio-dev/vfio* $TYPEDIR $PARENT; do echo \$p >$LR/hold || exit 1; done
	eq \"\$(cat $LR/held)\" 4 || exit 1
	echo 1 >\$D/remove && rmmod vhost_mdev_net || exit 1
	rmmod vhost_mdev & pid=\$!
	sleep 3
	kill -0 \$pid 2>/dev/null || { echo 'rmmod vhost_mdev returned with 4 releases to come'; exit 1; }
	echo 1 >$LR/put
	for i in \$(seq 100); do kill -0 \$pid 2>/dev/null || break; sleep 0.1; done
	kill -0 \$pid 2>/dev/null && { echo 'rmmod vhost_mdev still waits 10 s after the releases'; exit 1; }
	wait \$pid || { echo 'rmmod vhost_mdev failed'; exit 1; }
	! lsmod | grep -q vhost_mdev && rmmod late_ref"
