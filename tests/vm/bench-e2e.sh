# SPDX-License-Identifier: GPL-2.0
# The end-to-end part of the benchmark (make bench, BENCH_ONLY=e2e): run by
# tests/vm/bench.sh in the release-kernel VM (L1), after its own parts,
# with nothing pinned. The same L2 guest as the nested test (tools/qemu/:
# the patched QEMU 7.2 and the L2 kernel and initramfs), booted once per
# back end with l2.bench=SECONDS:REPS: its /init runs tools/qemu/l2/bench.sh,
# which streams raw 64 and 1500-byte frames to its own MAC (32 in flight)
# and ping-pongs them (one in flight) for SECONDS each, REPS times
# (tools/qemu/l2/netbench.c); the back end returns every frame. The back
# ends, each behind the guest's own virtio_net driver on a virtio-net-pci
# NIC, guest RAM on memory-backend-memfd,share=on for all of them:
#   vhost-vfio-type1     -netdev vhost-vfio on the net sample (loopback)
#   vhost-vfio-iommufd   the same with iommufd=on
#   vdpa_sim_net         -netdev vhost-vdpa on vdpa_sim_net (/dev/vhost-vdpa-0;
#                        frames to its MAC, which it filters on): the peer
#                        that bench-report's "x peer" divides by
#   vhost-vfio-bridge    -netdev vhost-vfio on a second vdpa_sim_net behind
#                        the vDPA bridge: the same device model as the peer
#   userspace-dgram      QEMU's own virtio-net in userspace, with a dgram
#                        netdev (UDP on 127.0.0.1) whose remote address is
#                        its own local one: every frame comes back
# Prints a "BENCH {json}" line per run (modes e2e-stream, e2e-pingpong),
# which scripts/bench-report puts in its table.
#
# Environment (from bench.sh): UUID (the sample's instance), BUUID (the
# bridged vdpa_sim_net's), VDPA_MAC and BRIDGE_MAC (the two simulators'
# MACs), CS (the clocksource); BENCH_REPS, BENCH_E2E_SECONDS, and
# BENCH_E2E_ONLY (labels of the back ends to run; default all).
. "$VHOST_MDEV_TOP/tests/vm/lib.sh"
. "$VHOST_MDEV_TOP/tests/vm/nested-lib.sh"
SECS=${BENCH_E2E_SECONDS:-3} REPS=${BENCH_REPS:-3}
L2_TIMEOUT=${L2_TIMEOUT:-900}
info "e2e: QEMU $QEMU"
info "e2e: L2 $L2_KERNEL $L2_INITRD, $REPS x ${SECS} s per size and mode"
mac=$(vhost-mdev probe "$UUID" | sed -n 's/^mac: *//p' | tr 'A-F' 'a-f')
[ -n "$mac" ] || { fail "e2e: no MAC from vhost-mdev probe $UUID"; exit 1; }

# e2e LABEL MAC NETDEV: boots L2 on NETDEV, prints its runs as BENCH lines.
e2e() {
	local label=$1 nmac=$2 netdev=$3 log=/tmp/e2e-console.log t0 rc n
	case " ${BENCH_E2E_ONLY:-$label} " in *" $label "*) ;; *) return ;; esac
	t0=$(date +%s)
	timeout -k 5 "$L2_TIMEOUT" "$QEMU" -accel tcg -m 512M -smp 1 -nographic -no-reboot \
		-nodefaults -serial stdio -kernel "$L2_KERNEL" -initrd "$L2_INITRD" \
		-object memory-backend-memfd,id=mem0,size=512M,share=on -machine memory-backend=mem0 \
		-append "console=ttyS0 panic=-1 tsc=reliable quiet l2.bench=$SECS:$REPS" \
		-device "virtio-net-pci,netdev=n0,romfile=,mac=$nmac" -netdev "$netdev" \
		</dev/null >"$log" 2>&1
	rc=$?
	n=0
	while read -r rep json; do
		[ -n "$json" ] || continue
		python3 -c '
import json, sys
label, rep, cs, j = sys.argv[1:]
r = json.loads(j)
print("BENCH " + json.dumps({"device": label, "size": r["size"], "mode": "e2e-" + r["mode"],
      "rep": int(rep), "placement": "free", "clocksource": cs, "result": r}))' "$label" "$rep" "$CS" "$json"
		n=$((n + 1))
	done <<EOF
$(tr -d '\r' <"$log" | sed -n 's/^L2: BENCH rep \([0-9]*\) \({.*}\)$/\1 \2/p')
EOF
	if [ "$n" = $((REPS * 4)) ] && tr -d '\r' <"$log" | grep -aq '^L2: PASS: all checks passed'; then
		pass "e2e $label: $n runs in L2 ($(( $(date +%s) - t0 )) s, QEMU exit $rc)"
	else
		fail "e2e $label: $n of $((REPS * 4)) runs in L2 (QEMU exit $rc, $(( $(date +%s) - t0 )) s)"
		excerpt "$log" 15
	fi
}
e2e vhost-vfio-type1 "$mac" "vhost-vfio,id=n0,sysfsdev=/sys/bus/mdev/devices/$UUID"
e2e vhost-vfio-iommufd "$mac" "vhost-vfio,id=n0,sysfsdev=/sys/bus/mdev/devices/$UUID,iommufd=on"
e2e vdpa_sim_net "$VDPA_MAC" "vhost-vdpa,id=n0,vhostdev=/dev/vhost-vdpa-0"
e2e vhost-vfio-bridge "$BRIDGE_MAC" "vhost-vfio,id=n0,sysfsdev=/sys/bus/mdev/devices/$BUUID"
# The dgram netdev binds 127.0.0.1: the test VM's loopback is down.
ip link set lo up
port=$((20000 + RANDOM % 20000))
e2e userspace-dgram 52:54:00:12:34:56 \
	"dgram,id=n0,local.type=inet,local.host=127.0.0.1,local.port=$port,remote.type=inet,remote.host=127.0.0.1,remote.port=$port"
[ "$fails" = 0 ]
