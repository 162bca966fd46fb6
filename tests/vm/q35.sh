# SPDX-License-Identifier: GPL-2.0
# The q35-iommu boot of make check (scripts/vm --machine q35-iommu): the
# vp_vdpa suite (tests/vm/vp-vdpa.sh), then an L2 guest through the
# patched QEMU on a bridged vp_vdpa device whose doorbell pages QEMU maps
# as host notifiers (tests/vm/nested-vp.sh). One boot for both: the
# machine's boot and the debug modules' loading cost about a minute under
# TCG. Each prints its own time.
rc=0
bash "$VHOST_MDEV_TOP/tests/vm/vp-vdpa.sh" || rc=1
t0=$(date +%s)
bash "$VHOST_MDEV_TOP/tests/vm/nested-vp.sh" || rc=1
echo "INFO: nested-vp: $(( $(date +%s) - t0 )) s"
exit $rc
