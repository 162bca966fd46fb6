# SPDX-License-Identifier: GPL-2.0
# vp_vdpa behind the vDPA bridge: the hardware path (platform IOMMU,
# hard-IRQ callbacks, doorbell pages). Runs on `scripts/vm --machine
# q35-iommu` (make check boots it for this suite alone): the first of its
# two virtio-net-pci NICs (iommu_platform, page-per-vq) goes to vp_vdpa and
# its vDPA device to the bridge; the second stays with the guest's
# virtio_net, on the same QEMU hub, and sees the frames the library sends
# (vhost-mdev-tests --vp-vdpa). Last, with the bridge gone, virtio_net
# takes the first NIC back: its DMA works, so the bridge's IOMMU domain
# is gone from it.
. "$VHOST_MDEV_TOP/tests/vm/lib.sh"
KO=${MODDIR:-$TOP}
t_suite=$(date +%s)
VB=/sys/bus/vdpa
VDEV=vdpa5
UV=77777777-0000-0000-0000-000000000018

if [ "${VM_MACHINE:-}" != q35-iommu ]; then
	echo "FAIL: vp_vdpa: this suite needs scripts/vm --machine q35-iommu (the machine is '${VM_MACHINE:-pc}')"
	exit 1
fi
# The NICs by MAC (scripts/vm), and the PCI function of the first.
nic() { grep -lix "$1" /sys/class/net/*/address | head -n 1 | xargs -r dirname | xargs -r basename; }
IF1=$(nic 52:54:00:00:18:01) IF2=$(nic 52:54:00:00:18:02)
PCI=$(basename "$(readlink -f "/sys/class/net/$IF1/device/..")")

t "vp_vdpa: the two NICs reach each other through the QEMU hub (virtio_net on both)" sh -c "
	test -n '$IF1' && test -n '$IF2' || { echo 'NICs not found'; exit 1; }
	ip link set $IF1 up && ip link set $IF2 up && vhost-mdev-tests --hub-check"
t "vp_vdpa: vp_vdpa takes the first NIC; vdpa dev add; the bridge binds it (PA mode)" sh -c "
	. $TOP/tests/vm/lib.sh
	load_kernel_modules && modprobe -d $MODROOT vhost_iotlb && modprobe -d $MODROOT vdpa &&
		modprobe -d $MODROOT vp_vdpa || exit 1
	insmod $KO/vhost_mdev.ko && insmod $KO/vhost_mdev_vdpa.ko || exit 1
	echo $PCI >/sys/bus/pci/drivers/virtio-pci/unbind &&
	echo vp-vdpa >/sys/bus/pci/devices/$PCI/driver_override &&
	echo $PCI >/sys/bus/pci/drivers_probe || exit 1
	eq \"\$(basename \$(readlink /sys/bus/pci/devices/$PCI/driver))\" vp-vdpa || exit 1
	echo 0 >$VB/drivers_autoprobe && vdpa dev add mgmtdev pci/$PCI name $VDEV || exit 1
	vhost-mdev attach $VDEV >/dev/null || exit 1
	one_line $VB/devices/$VDEV/dma_mode pa && one_line $VB/devices/$VDEV/vq_irqs '0 0' &&
	dmesg | grep -q '$VDEV: bridged as .*PA mode, IOMMU domain of the bridge'"
# Probe, features, config, FEATURES_OK refusal, doorbell pages (type1);
# frames both ways through the bridge's IOMMU domain, doorbell kicks and
# hard-IRQ callbacks (iommufd); an unmap while running (NEEDS_RESET).
# One PASS/FAIL line per test (vp_vdpa_device, vp_vdpa_traffic_iommufd,
# vp_vdpa_unmap_running) and the callback count on stderr.
vhost-mdev-tests --vp-vdpa 2>&1 | grep -E '^(PASS|FAIL|INFO)'
t "vp_vdpa: vdpa dev del with an instance, rmmod; virtio_net takes the NIC back and reaches the other" sh -c "
	. $TOP/tests/vm/lib.sh
	echo $UV >/sys/class/mdev_bus/vhost_mdev_vdpa-$VDEV/mdev_supported_types/vhost_mdev_vdpa-$VDEV-bridge/create &&
	vdpa dev del $VDEV && ! test -d /sys/bus/mdev/devices/$UV || exit 1
	rmmod vhost_mdev_vdpa && echo 1 >$VB/drivers_autoprobe || exit 1
	echo $PCI >/sys/bus/pci/drivers/vp-vdpa/unbind && echo >/sys/bus/pci/devices/$PCI/driver_override &&
	echo $PCI >/sys/bus/pci/drivers/virtio-pci/bind || exit 1
	rmmod vp_vdpa && rmmod vhost_mdev && rmmod vhost_iotlb || exit 1
	for i in \$(seq 50); do test -e /sys/class/net/$IF1 && break; sleep 0.1; done
	ip link set $IF1 up && vhost-mdev-tests --hub-check"
echo "INFO: vp_vdpa suite: $(( $(date +%s) - t_suite )) s"
