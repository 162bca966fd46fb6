# SPDX-License-Identifier: GPL-2.0
# Doorbell pages as host notifiers (issue 18, item 2; tools/qemu patch
# 0008): an L2 guest through the patched QEMU on a vp_vdpa device behind
# the vDPA bridge, in an L1 on `scripts/vm --machine q35-iommu` (the
# vp_vdpa suite's machine: two virtio-net-pci NICs with iommu_platform=on
# and page-per-vq=on on one QEMU hub). The first NIC goes to vp_vdpa and
# the bridge (PA mode: QEMU opens it with iommufd=on); the second stays
# with L1's virtio_net, where a reflector sends every frame for L2's MAC
# back through the hub, so L2's netloop gets its frames back through a
# real path of the outer QEMU. Checks: region 1 offers mmap, QEMU
# installed both queues' doorbell pages as host notifiers at each start
# (trace, and `info mtree` while L2 runs) and removed them at each stop,
# no queue fell back to the ioeventfd, and L2 passed all its checks.
#
# Needs the bridge's vp_vdpa support (doorbells, get_vq_notification) and
# scripts/vm --machine q35-iommu. Run:
#   scripts/vm --machine q35-iommu --timeout 900 tests/vm/nested-vp.sh
. "$VHOST_MDEV_TOP/tests/vm/lib.sh"
L2_TIMEOUT=${L2_TIMEOUT:-600}

if [ "${VM_MACHINE:-}" != q35-iommu ]; then
	echo "FAIL: nested-vp: needs scripts/vm --machine q35-iommu (the machine is '${VM_MACHINE:-pc}')"
	exit 1
fi
. "$VHOST_MDEV_TOP/tests/vm/nested-lib.sh"
VB=/sys/bus/vdpa VDEV=vdpa6 UV=77777777-0000-0000-0000-000000000008
MAC=52:54:00:00:18:01
nic() { grep -lix "$1" /sys/class/net/*/address | head -n 1 | xargs -r dirname | xargs -r basename; }
IF1=$(nic $MAC) IF2=$(nic 52:54:00:00:18:02)
PCI=$(basename "$(readlink -f "/sys/class/net/$IF1/device/..")")
info "QEMU $QEMU; L2 $L2_KERNEL; NICs $IF1 ($PCI, to vp_vdpa) and $IF2"
[ -n "$IF1" ] && [ -n "$IF2" ] || { echo "FAIL: nested-vp: the q35-iommu NICs are missing"; exit 1; }

cleanup() {
	[ -e /sys/bus/mdev/devices/$UV ] && echo 1 >/sys/bus/mdev/devices/$UV/remove
	vdpa dev del $VDEV 2>/dev/null
	rmmod vhost_mdev_vdpa 2>/dev/null
	echo 1 >$VB/drivers_autoprobe 2>/dev/null
	true
}
load_kernel_modules && modprobe -d "$MODROOT" vhost_iotlb && modprobe -d "$MODROOT" vdpa &&
	modprobe -d "$MODROOT" vp_vdpa && insmod "$MODDIR/vhost_mdev.ko" &&
	insmod "$MODDIR/vhost_mdev_vdpa.ko" || { echo "FAIL: nested-vp: loading modules"; exit 1; }
if ! { echo $PCI >/sys/bus/pci/drivers/virtio-pci/unbind &&
	echo vp-vdpa >/sys/bus/pci/devices/$PCI/driver_override &&
	echo $PCI >/sys/bus/pci/drivers_probe &&
	echo 0 >$VB/drivers_autoprobe && vdpa dev add mgmtdev pci/$PCI name $VDEV &&
	echo vhost_mdev_vdpa >$VB/devices/$VDEV/driver_override && echo $VDEV >$VB/drivers_probe &&
	echo $UV >/sys/class/mdev_bus/vhost_mdev_vdpa-$VDEV/mdev_supported_types/vhost_mdev_vdpa-$VDEV-bridge/create; }; then
	echo "FAIL: nested-vp: $PCI to vp_vdpa, $VDEV to the bridge, instance $UV"
	dmesg | tail -n 5 | sed 's/^/INFO:   | /'
	cleanup
	exit 1
fi
dmesg | grep -m1 "$VDEV: bridged as" | sed 's/^.*\] /INFO: /'

# The reflector on IF2: every frame that comes in for L2's MAC goes back
# out unchanged (the hub takes it to IF1, vp_vdpa, L2).
ip link set $IF2 up && ip link set $IF2 promisc on
python3 - $IF2 $MAC >/tmp/reflect.log 2>&1 <<'PY' &
import socket, sys
mac = bytes.fromhex(sys.argv[2].replace(':', ''))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 0))
n = 0
while True:
    data, addr = s.recvfrom(65536)
    if addr[2] == socket.PACKET_OUTGOING or data[:6] != mac:
        continue
    s.send(data)
    n += 1
    if n % 100 == 0:
        print("reflected", n, flush=True)
PY
rpid=$!

# `info mtree` (HMP through QMP) once the first notifier is in.
l2log=/tmp/l2-console.log l2trace=/tmp/l2-trace.log qmpsock=/tmp/l2-qmp.sock mtree=/tmp/l2-mtree.log
rm -f "$l2trace" "$mtree" "$qmpsock"
(
	for _ in $(seq 1 "$L2_TIMEOUT"); do
		grep -q '^vhost_vfio_host_notifier ' "$l2trace" 2>/dev/null && break
		sleep 1
	done
	python3 - "$qmpsock" >"$mtree" 2>&1 <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(30)
s.connect(sys.argv[1])
f = s.makefile("rw")
def cmd(c):
    f.write(json.dumps(c) + "\n")
    f.flush()
    while True:
        m = json.loads(f.readline())
        if "event" not in m:
            return m
json.loads(f.readline())
cmd({"execute": "qmp_capabilities"})
r = cmd({"execute": "human-monitor-command", "arguments": {"command-line": "info mtree"}})
print(r.get("return", r))
PY
) &
mpid=$!
t0=$(date +%s)
timeout -k 5 "$L2_TIMEOUT" "$QEMU" -accel tcg -m 512M -nographic -no-reboot -nodefaults \
	-serial stdio -kernel "$L2_KERNEL" -initrd "$L2_INITRD" -smp 1 \
	-device "virtio-net-pci,netdev=n0,romfile=,mac=$MAC,page-per-vq=on" \
	-netdev "vhost-vfio,id=n0,sysfsdev=/sys/bus/mdev/devices/$UV,iommufd=on" \
	-trace 'vhost_vfio_*' -D "$l2trace" -qmp "unix:$qmpsock,server=on,wait=off" \
	-append "console=ttyS0 panic=-1 tsc=reliable quiet l2.mac=$MAC l2.frames=200" \
	</dev/null >"$l2log" 2>&1
qrc=$?
dt=$(( $(date +%s) - t0 ))
kill $mpid 2>/dev/null; wait $mpid 2>/dev/null
kill $rpid 2>/dev/null; wait $rpid 2>/dev/null
tr -d '\r' <"$l2log" | grep -a '^L2: ' | sed 's/^/INFO: /'
info "reflected on $IF2: $(tail -n1 /tmp/reflect.log)"
if [ $qrc = 124 ] || [ $qrc = 137 ]; then
	fail "nested-vp: L2 guest: QEMU timed out after $L2_TIMEOUT s"
	excerpt "$l2log" 30
elif tr -d '\r' <"$l2log" | grep -aq '^L2: PASS: all checks passed'; then
	pass "nested-vp (vp_vdpa, PA mode): L2 guest: link up, 200 mixed-size frames returned byte for byte through the outer QEMU's hub, again after down/up and after a driver reset (QEMU exit $qrc, ${dt}s)"
else
	fail "nested-vp: L2 guest did not pass (QEMU exit $qrc, ${dt}s)"
	excerpt "$l2log" 30
fi
region=$(grep -m1 '^vhost_vfio_notify_region ' "$l2trace" | sed 's/.*: //')
on=$(grep -c '^vhost_vfio_host_notifier ' "$l2trace")
off=$(grep -c '^vhost_vfio_host_notifier_unmap ' "$l2trace")
fb=$(grep -c '^vhost_vfio_host_notifier_fallback ' "$l2trace")
# L2 starts the device twice (boot, and after its driver reset), 2 queues.
if [ "${region##* }" = 1 ] && [ "$on" -ge 4 ] && [ "$on" = "$off" ] && [ "$fb" = 0 ]; then
	pass "nested-vp: region 1 offers mmap ($region); $on doorbell pages installed as host notifiers, $off removed at stops, no ioeventfd fallback"
else
	fail "nested-vp: region 1 '${region:-no trace}', $on host notifiers installed, $off removed, $fb fallbacks (want mmap 1, >= 4, as many, 0)"
	grep '^vhost_vfio_host_notifier' "$l2trace" | head -n 5 | sed 's/^/INFO:   | /'
fi
# Every memory table QEMU sent was taken (the doorbell pages are RAM
# devices of the guest's address space: the table must leave them out).
tables=$(grep -c '^vhost_vfio_set_mem_table ' "$l2trace")
bad=$(grep '^vhost_vfio_set_mem_table ' "$l2trace" | grep -vc 'result 0$')
refused=$(dmesg | grep -c "$VDEV: memory table refused")
if [ "$tables" -ge 1 ] && [ "$bad" = 0 ] && [ "$refused" = 0 ]; then
	pass "nested-vp: all $tables memory tables taken by the bridge (the doorbell pages left out of them)"
else
	fail "nested-vp: $tables memory tables sent, $bad failed in QEMU, $refused refused by the bridge (want >= 1, 0, 0)"
	grep '^vhost_vfio_set_mem_table ' "$l2trace" | sort | uniq -c | head -n 5 | sed 's/^/INFO:   | /'
fi
n=$(grep -c 'prio 1, ramd): vhost-vfio/host-notifier@'"$UV"'\[[01]\]' "$mtree")
if [ "$n" -ge 2 ]; then
	pass "nested-vp: info mtree: both queues' doorbell pages over the NIC's notify region (RAM device, not trapped)"
	grep -m2 'host-notifier@' "$mtree" | sed 's/^ */INFO:   | /'
else
	fail "nested-vp: info mtree shows $n host notifier regions (want both queues'): $(head -c 200 "$mtree")"
fi
if grep -aq 'vhost-vfio:' "$l2log"; then
	info "QEMU said:"; grep -a 'vhost-vfio:' "$l2log" | sort | uniq -c | head -n5 | sed 's/^/INFO:   | /'
fi
cleanup
[ $fails = 0 ]
