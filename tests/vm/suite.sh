# SPDX-License-Identifier: GPL-2.0
# The in-guest suite (SUITE=quick or full): module and sysfs behaviour here,
# the uAPI, traffic and bad input in the vhost-mdev-tests binary.
. "$VHOST_MDEV_TOP/tests/vm/lib.sh"

t "kernel modules: vfio, type1, iommufd, mdev load" load_kernel_modules
t "vhost_mdev loads and registers its mdev driver" \
	sh -c "insmod $TOP/vhost_mdev.ko && test -d /sys/bus/mdev/drivers/vhost_mdev"
t "vhost_mdev_net rejects max_instances=0" expect_fail insmod "$TOP/vhost_mdev_net.ko" max_instances=0
t "vhost_mdev_net rejects max_instances=5000" expect_fail insmod "$TOP/vhost_mdev_net.ko" max_instances=5000
t "vhost_mdev_net loads with max_instances=4" insmod "$TOP/vhost_mdev_net.ko" max_instances=4

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
t "remove frees the instances" sh -c "
	. $TOP/tests/vm/lib.sh
	for i in 1 2 3 4; do echo 1 >/sys/bus/mdev/devices/11111111-2222-3333-4444-00000000000\$i/remove || exit 1; done
	eq \"\$(cat $TYPEDIR/available_instances)\" 4"

t "mdevctl lists the type and starts/stops an instance" sh -c "
	mdevctl types | grep -q $TYPE &&
	mdevctl start -u $U1 -p vhost_mdev_net --type $TYPE &&
	test -d $D && mdevctl list | grep -q $U1 &&
	mdevctl stop -u $U1 && ! test -d $D"

if command -v vhost-mdev-tests >/dev/null; then
	if [ "$SUITE" = full ]; then
		vhost-mdev-tests
	else
		vhost-mdev-tests --quick
	fi
else
	echo "FAIL: vhost-mdev-tests: binary not found in $PATH"
fi

cycles=16
[ "$SUITE" = full ] && cycles=200
t "create/remove 4 instances x $cycles rounds" sh -c "
	for r in \$(seq $cycles); do
		for i in \$(seq 4); do echo 22222222-0000-0000-0000-00000000000\$i >$TYPEDIR/create || exit 1; done
		for i in \$(seq 4); do echo 1 >/sys/bus/mdev/devices/22222222-0000-0000-0000-00000000000\$i/remove || exit 1; done
	done"

t "modules unload cleanly" sh -c "rmmod vhost_mdev_net && rmmod vhost_mdev && ! lsmod | grep -q vhost_mdev"
