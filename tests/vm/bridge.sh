# SPDX-License-Identifier: GPL-2.0
# The vDPA bridge (vhost_mdev_vdpa.ko) on vdpa_sim_net: binding a device
# chosen with driver_override, its parent and type, traffic through the
# userspace library (type1: VA mode) checked byte for byte, removal while
# open, and unloading; then vdpa_sim_blk on the same bridge, driven by the
# library's BlkDriver over type1 and iommufd; the differential test and
# vhost-mdev attach/detach; last PA mode (vdpa_sim use_va=0: pins through
# iommufd, unmaps while running, hostile tables). Sourced by suite.sh (vm-full)
# after the sample's tests; runs alone too: it loads what it needs.
. "$VHOST_MDEV_TOP/tests/vm/lib.sh"
KO=${MODDIR:-$TOP}

VB=/sys/bus/vdpa
BPARENT=/sys/class/mdev_bus/vhost_mdev_vdpa-vdpa1
BTYPE=$BPARENT/mdev_supported_types/vhost_mdev_vdpa-vdpa1-bridge
UV=77777777-0000-0000-0000-000000000001
BMAC=02:00:00:00:00:11

t "vdpa bridge: vfio, mdev, vdpa_sim_net and the core load" sh -c "
	for m in vfio vfio_iommu_type1 iommufd mdev vdpa vdpa_sim vdpa_sim_net; do
		modprobe -d $MODROOT \$m || exit 1
	done
	lsmod | grep -q '^vhost_mdev ' || insmod $KO/vhost_mdev.ko"
t "vdpa bridge: loads and registers vhost_mdev_vdpa on the vDPA bus" sh -c "
	insmod $KO/vhost_mdev_vdpa.ko && test -d $VB/drivers/vhost_mdev_vdpa"
# The bus matches every driver to every device: with autoprobe on, the
# first registered driver would take a new device.
t "vdpa bridge: binds only the device whose driver_override names it" sh -c "
	. $TOP/tests/vm/lib.sh
	echo 0 >$VB/drivers_autoprobe || exit 1
	vdpa dev add mgmtdev vdpasim_net name vdpa1 mac $BMAC || exit 1
	test -e $VB/devices/vdpa1/driver && { echo 'vdpa1 bound with autoprobe off'; exit 1; }
	echo vhost_mdev_vdpa >$VB/devices/vdpa1/driver_override &&
	echo vdpa1 >$VB/drivers_probe || exit 1
	eq \"\$(basename \$(readlink $VB/devices/vdpa1/driver))\" vhost_mdev_vdpa &&
	eq \"\$(cat $BTYPE/device_api)\" vfio-vhost &&
	eq \"\$(cat $BTYPE/name)\" 'vDPA bridge' &&
	eq \"\$(cat $BTYPE/available_instances)\" 1 &&
	test -d $VB/devices/vdpa1/vhost_mdev_vdpa-vdpa1/vhost_mdev_vdpa-vdpa1/mdev_supported_types"
# vdpa_sim starts with an identity map of physical memory: with no table
# the device must reach nothing (vhost-mdev-tests --bridge, RawNet).
t "vdpa bridge: no memory table, no DMA; a late table is refused (EBUSY); no VHOST_F_LOG_ALL" \
	vhost-mdev-tests --bridge
t "vdpa bridge: one instance; a second is refused (vhost-mdev create: exit 6)" sh -c "
	. $TOP/tests/vm/lib.sh
	echo $UV >$BTYPE/create || exit 1
	eq \"\$(cat $BTYPE/available_instances)\" 0 || exit 1
	! echo 77777777-0000-0000-0000-000000000002 >$BTYPE/create 2>/dev/null || exit 1
	vhost-mdev create -p vhost_mdev_vdpa-vdpa1 -t vhost_mdev_vdpa-vdpa1-bridge 2>/tmp/na.err; rc=\$?
	[ \$rc = 6 ] && grep -q 'no available instances' /tmp/na.err || { echo \"rc \$rc\"; cat /tmp/na.err; exit 1; }"
t "vdpa bridge: vhost-mdev probe shows vdpa_sim_net's id and MAC" sh -c "
	out=\$(vhost-mdev probe $UV) || exit 1
	echo \"\$out\" | grep -qx 'virtio device id: 1 (net)' &&
	echo \"\$out\" | grep -qi 'mac.*$BMAC' || { echo \"\$out\"; exit 1; }"
# ping checks that every frame comes back byte-identical and in order.
t "vdpa bridge: frames loop through vdpa_sim_net over type1 (VA mode)" sh -c "
	vhost-mdev ping $UV -n 50 && vhost-mdev ping $UV -n 20 --size 1514 &&
	vhost-mdev ping $UV -n 20"
# vhost_vdpa_remove blocks until the device is closed; so does the bridge.
t "vdpa bridge: unbind while open waits for the close" sh -c "
	vhost-mdev bench $UV --seconds 6 >/dev/null & b=\$!
	sleep 2
	kill -0 \$b 2>/dev/null || { echo 'bench ended early'; exit 1; }
	echo vdpa1 >$VB/drivers/vhost_mdev_vdpa/unbind & u=\$!
	sleep 2
	kill -0 \$b 2>/dev/null || { echo 'bench ended before the check'; exit 1; }
	kill -0 \$u 2>/dev/null || { echo 'unbind returned while the instance was open'; exit 1; }
	wait \$b || { echo 'bench failed'; exit 1; }
	for i in \$(seq 100); do kill -0 \$u 2>/dev/null || break; sleep 0.1; done
	kill -0 \$u 2>/dev/null && { echo 'unbind still blocked 10 s after the close'; exit 1; }
	wait \$u || exit 1
	! test -e $VB/devices/vdpa1/driver && ! test -d /sys/bus/mdev/devices/$UV &&
	! test -d $BPARENT"
t "vdpa bridge: rebinds, and vdpa dev del of a bound device removes it" sh -c "
	echo vdpa1 >$VB/drivers_probe && test -d $BTYPE || exit 1
	echo $UV >$BTYPE/create && vhost-mdev ping $UV -n 10 || exit 1
	vdpa dev del vdpa1 && ! test -d /sys/bus/mdev/devices/$UV && ! test -d $BPARENT"
t "vdpa bridge: rmmod with an instance (closed) removes it; clean unload" sh -c "
	vdpa dev add mgmtdev vdpasim_net name vdpa1 mac $BMAC &&
	echo vhost_mdev_vdpa >$VB/devices/vdpa1/driver_override &&
	echo vdpa1 >$VB/drivers_probe && echo $UV >$BTYPE/create || exit 1
	rmmod vhost_mdev_vdpa || exit 1
	! test -d /sys/bus/mdev/devices/$UV && ! test -e $VB/devices/vdpa1/driver &&
	vdpa dev del vdpa1 && echo 1 >$VB/drivers_autoprobe &&
	rmmod vdpa_sim_net vdpa_sim"
# vdpa_sim_blk through the same bridge: not net-specific. A block device
# of one queue and a 96-byte config, a RAM disk of 128 MiB of its own
# (262144 sectors; one per device unless the module's shared_backend is
# set), driven by the library's BlkDriver over type1 and iommufd.
B2PARENT=/sys/class/mdev_bus/vhost_mdev_vdpa-vdpa2
B2TYPE=$B2PARENT/mdev_supported_types/vhost_mdev_vdpa-vdpa2-bridge
UVB=77777777-0000-0000-0000-000000000003
BCAP=262144
t "vdpa bridge blk: vdpa_sim_blk loads; vdpa2 bound to the bridge" sh -c "
	. $TOP/tests/vm/lib.sh
	modprobe -d $MODROOT vdpa_sim_blk || exit 1
	lsmod | grep -q '^vhost_mdev_vdpa ' || insmod $KO/vhost_mdev_vdpa.ko || exit 1
	echo 0 >$VB/drivers_autoprobe &&
	vdpa dev add mgmtdev vdpasim_blk name vdpa2 || exit 1
	test -e $VB/devices/vdpa2/driver && { echo 'vdpa2 bound with autoprobe off'; exit 1; }
	echo vhost_mdev_vdpa >$VB/devices/vdpa2/driver_override &&
	echo vdpa2 >$VB/drivers_probe || exit 1
	eq \"\$(basename \$(readlink $VB/devices/vdpa2/driver))\" vhost_mdev_vdpa &&
	eq \"\$(cat $B2TYPE/device_api)\" vfio-vhost &&
	eq \"\$(cat $B2TYPE/available_instances)\" 1"
# Config, data at both ends of the disk, and vdpa_sim_blk's own answers to
# bad requests (IOERR past the capacity and for unknown types).
t "vdpa bridge blk: requests and errors over type1 and iommufd (vhost-mdev-tests)" \
	vhost-mdev-tests --bridge-blk
t "vdpa bridge blk: vhost-mdev probe shows vdpa_sim_blk's id, queue and capacity" sh -c "
	echo $UVB >$B2TYPE/create || exit 1
	out=\$(vhost-mdev probe $UVB) || exit 1
	echo \"\$out\" | grep -qx 'virtio device id: 2 (block)' &&
	echo \"\$out\" | grep -qx 'queues: 1' &&
	echo \"\$out\" | grep -qx 'config size: 96' &&
	echo \"\$out\" | grep -qx 'capacity: $BCAP sectors' || { echo \"\$out\"; exit 1; }"
# blk check writes a pattern, reads it back and compares every byte.
t "vdpa bridge blk: vhost-mdev blk check over type1 (VA mode)" sh -c "
	. $TOP/tests/vm/lib.sh
	vhost-mdev blk $UVB check -n 16 --sectors 8 &&
	vhost-mdev blk $UVB check -n 4 --sectors 64 --sector $((BCAP - 128)) &&
	vhost-mdev blk $UVB flush || exit 1
	eq \"\$(vhost-mdev blk $UVB id)\" vdpa_blk_sim"
t "vdpa bridge blk: vhost-mdev blk check over iommufd; each reads the other's data" sh -c "
	vhost-mdev blk $UVB --iommufd check -n 16 --sectors 8 --sector 4096 &&
	vhost-mdev blk $UVB --iommufd --ioctl --ioeventfd check -n 4 --sectors 32 --sector 8192 || exit 1
	head -c 4096 /dev/urandom >/tmp/vb.end &&
	vhost-mdev blk $UVB write $((BCAP - 8)) </tmp/vb.end &&
	vhost-mdev blk $UVB --iommufd read $((BCAP - 8)) 8 | cmp - /tmp/vb.end || exit 1
	head -c 2048 /dev/urandom >/tmp/vb.mid &&
	vhost-mdev blk $UVB --iommufd write 12 </tmp/vb.mid &&
	vhost-mdev blk $UVB read 12 4 | cmp - /tmp/vb.mid"
t "vdpa bridge blk: past the capacity: VIRTIO_BLK_S_IOERR, nothing written" sh -c "
	for a in '$BCAP 1' '$((BCAP - 1)) 2' '$((BCAP + 1000)) 1'; do
		err=\$(vhost-mdev blk $UVB read \$a 2>&1 >/dev/null) && { echo \"read \$a succeeded\"; exit 1; }
		echo \"\$err\" | grep -q 'VIRTIO_BLK_S_IOERR (1)' || { echo \"read \$a: \$err\"; exit 1; }
	done
	head -c 1024 /dev/urandom >/tmp/vb.bad || exit 1
	err=\$(vhost-mdev blk $UVB --iommufd write $((BCAP - 1)) </tmp/vb.bad 2>&1) &&
		{ echo 'a write across the end succeeded'; exit 1; }
	echo \"\$err\" | grep -q 'VIRTIO_BLK_S_IOERR (1)' || { echo \"\$err\"; exit 1; }
	vhost-mdev blk $UVB read $((BCAP - 8)) 8 | cmp - /tmp/vb.end"
t "vdpa bridge blk: vdpa dev del removes the instance; clean unload" sh -c "
	vdpa dev del vdpa2 || exit 1
	! test -d /sys/bus/mdev/devices/$UVB && ! test -d $B2PARENT && ! test -e $VB/devices/vdpa2 &&
	rmmod vhost_mdev_vdpa && rmmod vdpa_sim_blk && rmmod vdpa_sim &&
	echo 1 >$VB/drivers_autoprobe && ! lsmod | grep -q '^vdpa_sim'"
rm -f /tmp/vb.end /tmp/vb.mid /tmp/vb.bad
# vhost-vdpa and the bridge compared (vhost-mdev-tests --differential):
# one vdpa_sim_net model, vdpa1 behind the bridge and vdpa2 behind
# vhost_vdpa (same MAC), the same requests on both; every difference must
# be one that Documentation/uapi.rst lists. Its DIFF lines go to the
# console log. Loads and removes what it uses.
t "vdpa bridge: requests, errnos and state agree with vhost_vdpa (differential)" sh -c "
	for m in vdpa vdpa_sim vdpa_sim_net vhost_vdpa; do modprobe -d $MODROOT \$m || exit 1; done
	lsmod | grep -q '^vhost_mdev_vdpa ' || insmod $KO/vhost_mdev_vdpa.ko || exit 1
	echo 0 >$VB/drivers_autoprobe
	r=0
	for d in 'vdpa1 vhost_mdev_vdpa' 'vdpa2 vhost_vdpa'; do
		set -- \$d
		vdpa dev add mgmtdev vdpasim_net name \$1 mac $BMAC &&
			echo \$2 >$VB/devices/\$1/driver_override &&
			echo \$1 >$VB/drivers_probe || r=1
	done
	if [ \$r = 0 ]; then
		vhost-mdev-tests --differential >/tmp/differential.out 2>&1 || r=1
		grep '^DIFF' /tmp/differential.out >/dev/console
		tail -n 4 /tmp/differential.out
	fi
	vdpa dev del vdpa1; vdpa dev del vdpa2
	rmmod vhost_mdev_vdpa; rmmod vhost_vdpa
	echo 1 >$VB/drivers_autoprobe
	rmmod vdpa_sim_net vdpa_sim
	exit \$r"
# The same moves with vhost-mdev attach/detach, from and to vhost_vdpa
# (loaded before the bridge: with autoprobe on, it takes a new device, and
# the kernel's own matching picks it over the bridge).
t "vdpa bridge (cli): attach without the bridge says what to load" sh -c "
	. $TOP/tests/vm/lib.sh
	for m in vdpa_sim vdpa_sim_net vhost_vdpa; do modprobe -d $MODROOT \$m || exit 1; done
	vdpa dev add mgmtdev vdpasim_net name vdpa1 mac $BMAC || exit 1
	eq \"\$(basename \$(readlink $VB/devices/vdpa1/driver))\" vhost_vdpa || exit 1
	out=\$(vhost-mdev attach vdpa1 2>&1) && { echo \"attach succeeded: \$out\"; exit 1; }
	echo \"\$out\" | grep -q 'modprobe vhost_mdev_vdpa' || { echo \"\$out\"; exit 1; }
	eq \"\$(cat $VB/devices/vdpa1/driver_override)\" '(null)' &&
	eq \"\$(basename \$(readlink $VB/devices/vdpa1/driver))\" vhost_vdpa"
t "vdpa bridge (cli): attach of a missing device fails, naming vdpa dev show" sh -c "
	insmod $KO/vhost_mdev_vdpa.ko || exit 1
	out=\$(vhost-mdev attach nosuch 2>&1) && { echo \"attach succeeded: \$out\"; exit 1; }
	echo \"\$out\" | grep -q 'no vDPA device .nosuch. (devices: vdpa1; see .vdpa dev show.' ||
		{ echo \"\$out\"; exit 1; }
	out=\$(vhost-mdev attach ../devices/vdpa1 2>&1) && { echo \"attach succeeded: \$out\"; exit 1; }
	echo \"\$out\" | grep -q 'is not a vDPA device name' || { echo \"\$out\"; exit 1; }"
t "vdpa bridge (cli): attach refuses while /dev/vhost-vdpa-N is open" sh -c "
	. $TOP/tests/vm/lib.sh
	n=\$(ls $VB/devices/vdpa1 | grep '^vhost-vdpa-') && test -c /dev/\$n ||
		{ echo 'no /dev/vhost-vdpa-N'; exit 1; }
	sleep 30 3<>/dev/\$n & h=\$!
	sleep 1
	out=\$(vhost-mdev attach vdpa1 2>&1); rc=\$?
	kill \$h; wait \$h
	test \$rc != 0 || { echo \"attach succeeded: \$out\"; exit 1; }
	echo \"\$out\" | grep -q \"in use by pid \$h (sleep) through /dev/\$n.*--wait\" ||
		{ echo \"\$out\"; exit 1; }
	eq \"\$(basename \$(readlink $VB/devices/vdpa1/driver))\" vhost_vdpa &&
	eq \"\$(cat $VB/devices/vdpa1/driver_override)\" '(null)'"
t "vdpa bridge (cli): attach --create moves it from vhost_vdpa; list shows it and its mode" sh -c "
	. $TOP/tests/vm/lib.sh
	out=\$(vhost-mdev attach vdpa1 --create $UV) || { echo \"\$out\"; exit 1; }
	echo \"\$out\" | grep -qx 'vdpa1: on the bridge: parent vhost_mdev_vdpa-vdpa1, type vhost_mdev_vdpa-vdpa1-bridge, dma mode va' &&
	echo \"\$out\" | grep -qx $UV || { echo \"\$out\"; exit 1; }
	eq \"\$(basename \$(readlink $VB/devices/vdpa1/driver))\" vhost_mdev_vdpa &&
	eq \"\$(cat $VB/devices/vdpa1/driver_override)\" vhost_mdev_vdpa &&
	one_line $VB/devices/vdpa1/dma_mode va &&
	eq \"\$(stat -c %a $VB/devices/vdpa1/dma_mode)\" 444 || exit 1
	echo pa 2>/dev/null >$VB/devices/vdpa1/dma_mode && { echo 'dma_mode took a write'; exit 1; }
	ls $VB/devices/vdpa1 | grep '^vhost-vdpa-' && { echo 'vhost-vdpa node left'; exit 1; }
	l=\$(vhost-mdev list) || exit 1
	echo \"\$l\" | grep -qx 'parent vhost_mdev_vdpa-vdpa1 (driver [^)]*): vDPA bridge of vdpa1, dma mode va' &&
	echo \"\$l\" | grep -qx '  vdpa1 driver vhost_mdev_vdpa (driver_override vhost_mdev_vdpa): parent vhost_mdev_vdpa-vdpa1, type vhost_mdev_vdpa-vdpa1-bridge, dma mode va' &&
	echo \"\$l\" | grep -q '^  $UV parent vhost_mdev_vdpa-vdpa1 type vhost_mdev_vdpa-vdpa1-bridge ' ||
		{ echo \"\$l\"; exit 1; }
	vhost-mdev ping $UV -n 20"
t "vdpa bridge (cli): attach of an attached device changes nothing" sh -c "
	out=\$(vhost-mdev attach vdpa1) || exit 1
	echo \"\$out\" | grep -q '^vdpa1: already on the bridge' || { echo \"\$out\"; exit 1; }
	test -d /sys/bus/mdev/devices/$UV && vhost-mdev ping $UV -n 5"
t "vdpa bridge (cli): detach refuses while the instance is open" sh -c "
	. $TOP/tests/vm/lib.sh
	vhost-mdev bench $UV --seconds 5 >/dev/null & b=\$!
	sleep 2
	kill -0 \$b 2>/dev/null || { echo 'bench ended early'; exit 1; }
	out=\$(vhost-mdev detach vdpa1 2>&1); rc=\$?
	wait \$b || { echo 'bench failed'; exit 1; }
	test \$rc != 0 || { echo \"detach succeeded: \$out\"; exit 1; }
	echo \"\$out\" | grep -q \"in use by pid \$b (vhost-mdev).*--wait\" || { echo \"\$out\"; exit 1; }
	eq \"\$(basename \$(readlink $VB/devices/vdpa1/driver))\" vhost_mdev_vdpa &&
	test -d /sys/bus/mdev/devices/$UV"
t "vdpa bridge (cli): detach --to vhost_vdpa gives /dev/vhost-vdpa-N back" sh -c "
	. $TOP/tests/vm/lib.sh
	out=\$(vhost-mdev detach vdpa1 --to vhost_vdpa) || { echo \"\$out\"; exit 1; }
	eq \"\$(basename \$(readlink $VB/devices/vdpa1/driver))\" vhost_vdpa &&
	eq \"\$(cat $VB/devices/vdpa1/driver_override)\" vhost_vdpa || exit 1
	n=\$(ls $VB/devices/vdpa1 | grep '^vhost-vdpa-') && test -c /dev/\$n ||
		{ echo 'no /dev/vhost-vdpa-N'; exit 1; }
	echo \"\$out\" | grep -qx \"vdpa1 driver vhost_vdpa (driver_override vhost_vdpa): /dev/\$n\" ||
		{ echo \"\$out\"; exit 1; }
	! test -e $VB/devices/vdpa1/dma_mode && ! test -d $BPARENT &&
	! test -d /sys/bus/mdev/devices/$UV && vhost-mdev ping /dev/\$n -n 10"
t "vdpa bridge (cli): re-attach; detach --wait waits for the close, then vhost_vdpa" sh -c "
	. $TOP/tests/vm/lib.sh
	vhost-mdev attach vdpa1 --create $UV >/dev/null && vhost-mdev ping $UV -n 10 || exit 1
	vhost-mdev bench $UV --seconds 6 >/dev/null & b=\$!
	sleep 2
	vhost-mdev detach vdpa1 --wait >/tmp/detach.out 2>&1 & d=\$!
	sleep 2
	kill -0 \$d 2>/dev/null || { echo 'detach returned while the instance was open'; exit 1; }
	wait \$b || { echo 'bench failed'; exit 1; }
	for i in \$(seq 100); do kill -0 \$d 2>/dev/null || break; sleep 0.1; done
	kill -0 \$d 2>/dev/null && { echo 'detach still blocked 10 s after the close'; exit 1; }
	wait \$d || { cat /tmp/detach.out; exit 1; }
	grep -q \"waiting until pid \$b (vhost-mdev)\" /tmp/detach.out || { cat /tmp/detach.out; exit 1; }
	eq \"\$(cat $VB/devices/vdpa1/driver_override)\" '(null)' &&
	eq \"\$(basename \$(readlink $VB/devices/vdpa1/driver))\" vhost_vdpa &&
	! test -d /sys/bus/mdev/devices/$UV"
t "vdpa bridge (cli): detach of a device not on the bridge changes nothing" sh -c "
	out=\$(vhost-mdev detach vdpa1) && echo \"\$out\" | grep -q '^vdpa1: not on the bridge' &&
	test \"\$(basename \$(readlink $VB/devices/vdpa1/driver))\" = vhost_vdpa"
# Persistence: the udev rule of Documentation/vdpa-bridge.rst matches a
# new device, which vhost_vdpa took first, and its command moves it. The
# test kernel has no inotify, which systemd-udevd needs: `udevadm test`
# applies the rule (the host's rules hidden) and the test runs what it
# would.
t "vdpa bridge (cli): the documented udev rule attaches a new device" sh -c "
	. $TOP/tests/vm/lib.sh
	vdpa dev del vdpa1 && vdpa dev add mgmtdev vdpasim_net name vdpa1 mac $BMAC || exit 1
	eq \"\$(basename \$(readlink $VB/devices/vdpa1/driver))\" vhost_vdpa || exit 1
	for d in /etc/udev/rules.d /usr/lib/udev/rules.d; do mount -t tmpfs tmpfs \$d || exit 1; done
	sed -n 's|^   \(ACTION==.*\)/usr/local/bin/vhost-mdev|\1$TOP/target/release/vhost-mdev|p' \
		$TOP/Documentation/vdpa-bridge.rst >/etc/udev/rules.d/90-vhost-mdev-vdpa.rules
	run=\$(udevadm test --action=add $VB/devices/vdpa1 2>&1 | sed -n \"s/^run: '\(.*\)'\$/\1/p\")
	umount /etc/udev/rules.d /usr/lib/udev/rules.d
	eq \"\$run\" '$TOP/target/release/vhost-mdev attach vdpa1' || exit 1
	\$run || exit 1
	eq \"\$(basename \$(readlink $VB/devices/vdpa1/driver))\" vhost_mdev_vdpa &&
	echo $UV >$BTYPE/create && vhost-mdev ping $UV -n 10"
# vdpa_sim with use_va=0 works on physical addresses: PA mode. The
# bridge pins the table's IOVA ranges through iommufd (never type1).
t "vdpa bridge PA: a device without VA shows dma mode pa; traffic over iommufd" sh -c "
	. $TOP/tests/vm/lib.sh
	vhost-mdev detach vdpa1 >/dev/null && vdpa dev del vdpa1 && rmmod vdpa_sim_net vdpa_sim &&
	modprobe -d $MODROOT vdpa_sim use_va=0 && modprobe -d $MODROOT vdpa_sim_net &&
	vdpa dev add mgmtdev vdpasim_net name vdpa1 mac $BMAC || exit 1
	out=\$(vhost-mdev attach vdpa1 --create $UV) || { echo \"\$out\"; exit 1; }
	echo \"\$out\" | grep -q '^vdpa1: on the bridge: .*, dma mode pa\$' || { echo \"\$out\"; exit 1; }
	one_line $VB/devices/vdpa1/dma_mode pa && one_line $VB/devices/vdpa1/pinned_pages 0 || exit 1
	vhost-mdev list | grep -qx 'parent vhost_mdev_vdpa-vdpa1 (driver [^)]*): vDPA bridge of vdpa1, dma mode pa' ||
		{ vhost-mdev list; exit 1; }
	vhost-mdev ping $UV --iommufd -n 30 && vhost-mdev ping $UV --iommufd -n 10 --size 1514 || exit 1
	one_line $VB/devices/vdpa1/pinned_pages 0"
t "vdpa bridge PA: over type1 a table is refused (EOPNOTSUPP), saying why" sh -c "
	. $TOP/tests/vm/lib.sh
	out=\$(vhost-mdev ping $UV -n 1 2>&1) && { echo \"ping worked: \$out\"; exit 1; }
	echo \"\$out\" | grep -q EOPNOTSUPP || { echo \"\$out\"; exit 1; }
	dmesg | tail -n 20 | grep -q 'vdpa1: PA mode pins through iommufd' || { dmesg | tail; exit 1; }
	one_line $VB/devices/vdpa1/pinned_pages 0 && echo 1 >/sys/bus/mdev/devices/$UV/remove"
# Replaced tables, unmaps while running (of a ring: NEEDS_RESET), hostile
# tables, unmaps racing with pins, RLIMIT_MEMLOCK, removal while open.
mark=$(dmesg | wc -l)
t "vdpa bridge PA: tables, unmaps and hostile tables (vhost-mdev-tests --bridge-pa)" \
	vhost-mdev-tests --bridge-pa
# The hostile and racing tables above are refused by the dozen, each with a
# warning a VMM can cause: rate-limited (10 per 5 s; about 90 lines
# before), the count of those dropped said with the next line allowed.
t "vdpa bridge PA: refused tables log rate-limited (the VMM cannot flood the log)" sh -c "
	lines=\$(dmesg | tail -n +$((mark + 1)))
	n=\$(echo \"\$lines\" | grep -c 'vdpa1: memory table refused')
	s=\$(echo \"\$lines\" | grep -c 'similar lines suppressed')
	echo \"\$n refusal lines, \$s suppression notes\"
	[ \$n -ge 1 ] && [ \$n -le 40 ]"
# vdpa_sim with batch_mapping=0 takes ranges one by one (dma_map).
t "vdpa bridge PA: a device with dma_map only (batch_mapping=0); traffic over iommufd" sh -c "
	. $TOP/tests/vm/lib.sh
	vhost-mdev detach vdpa1 >/dev/null && vdpa dev del vdpa1 && rmmod vdpa_sim_net vdpa_sim &&
	modprobe -d $MODROOT vdpa_sim use_va=0 batch_mapping=0 && modprobe -d $MODROOT vdpa_sim_net &&
	vdpa dev add mgmtdev vdpasim_net name vdpa1 mac $BMAC || exit 1
	vhost-mdev attach vdpa1 --create $UV >/dev/null && one_line $VB/devices/vdpa1/dma_mode pa &&
	vhost-mdev ping $UV --iommufd -n 20 && vhost-mdev ping $UV --iommufd -n 5 --size 1514 &&
	one_line $VB/devices/vdpa1/pinned_pages 0"
t "vdpa bridge (cli): detach, vdpa dev del, clean unload" sh -c "
	vhost-mdev detach vdpa1 >/dev/null && vdpa dev del vdpa1 && rmmod vhost_mdev_vdpa &&
	rmmod vhost_vdpa vdpa_sim_net vdpa_sim"
# Whatever a failed test left: the suite's next tests pick the first
# vfio-vhost type they find, which must not be the bridge's.
rmmod vhost_mdev_vdpa 2>/dev/null
vdpa dev del vdpa1 2>/dev/null
vdpa dev del vdpa2 2>/dev/null
echo 1 >$VB/drivers_autoprobe
rmmod vdpa_sim_blk 2>/dev/null
rmmod vhost_vdpa 2>/dev/null
rmmod vdpa_sim_net vdpa_sim 2>/dev/null
true
