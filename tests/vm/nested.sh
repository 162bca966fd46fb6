# SPDX-License-Identifier: GPL-2.0
# The nested QEMU test (L1 job): the patched QEMU (tools/qemu/) boots an L2
# guest whose own virtio_net driver passes traffic through a vhost-mdev
# instance of this (L1) kernel via -netdev vhost-vfio.
#
# Needs, built on the host first (tools/qemu/test-nested.sh does all):
#   tools/qemu/build-qemu.sh   the patched qemu-system-x86_64
#   tools/qemu/build-l2.sh     the L2 kernel and initramfs
# Run: scripts/vm --timeout 900 tests/vm/nested.sh
. "$VHOST_MDEV_TOP/tests/vm/lib.sh"

L2_TIMEOUT=${L2_TIMEOUT:-480}
. "$VHOST_MDEV_TOP/tests/vm/nested-lib.sh"
info "QEMU $QEMU"
info "L2 $L2_KERNEL $L2_INITRD"

load_kernel_modules || { echo "FAIL: loading VFIO/mdev modules"; exit 1; }
load_ours || { echo "FAIL: loading vhost_mdev modules"; exit 1; }
# The instance belongs to an unprivileged user (no account needed: ids),
# whose QEMU runs the iommufd phase (4b). The owners are recorded under
# /run: the guest's /etc is the host's, read-only.
OWN_UID=4711 OWN_GID=4712
export VHOST_MDEV_OWNERS=/run/vhost-mdev/owners
uuid=$(vhost-mdev create --parent vhost_mdev_net --type "$TYPE" --owner "$OWN_UID:$OWN_GID") ||
	{ echo "FAIL: create instance"; exit 1; }
dev=/sys/bus/mdev/devices/$uuid
devinfo=$(vhost-mdev probe "$uuid")
mac=$(echo "$devinfo" | sed -n 's/^mac: *//p' | tr 'A-F' 'a-f')
dev_mtu=$(echo "$devinfo" | sed -n 's/^mtu: *//p')
dev_features=$(echo "$devinfo" | sed -n 's/^features: *//p')
info "instance $uuid, MAC $mac, MTU $dev_mtu, features $dev_features"
[ -n "$mac" ] || fail "no MAC in 'vhost-mdev probe $uuid'"
[ -n "$dev_mtu" ] && [ -n "$dev_features" ] || fail "no MTU or features in 'vhost-mdev probe $uuid'"
# The feature bits the vhost-vfio client implements on the device
# (VHOST_VFIO_NET_FEATURES in net/vhost-vfio.c): a guest may only see those
# the device also offers, and only those reach the device...
CLIENT_FEATURE_BITS="0 1 3 5 7 8 9 10 11 12 13 14 15 16 28 29 32 33 34 63"
# ...besides the control queue's, which QEMU's virtio-net implements
# itself (CTRL_VQ, CTRL_RX, CTRL_VLAN, CTRL_RX_EXTRA, GUEST_ANNOUNCE, MQ,
# CTRL_MAC_ADDR): the guest may negotiate them, the device never sees them.
QEMU_FEATURE_BITS="17 18 19 20 21 22 23"

# qmp_watch SOCKET EVENT TIMEOUT COMMAND-JSON...: prints READY once
# connected, then "EVENT <json>" (or "EVENT none" after TIMEOUT seconds),
# then "REPLY <json>" for each command, run after the event.
qmp_watch() {
	python3 - "$@" <<'PY'
import json, socket, sys
sock, event, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
s = socket.socket(socket.AF_UNIX)
s.settimeout(30)
s.connect(sock)
f = s.makefile("rw")
seen = None
def reply():
    global seen
    while True:
        m = json.loads(f.readline())
        if "event" not in m:
            return m
        if m["event"] == event:
            seen = m
json.loads(f.readline())
f.write('{"execute": "qmp_capabilities"}\n')
f.flush()
reply()
print("READY", flush=True)
s.settimeout(timeout)
try:
    while seen is None:
        m = json.loads(f.readline())
        if m.get("event") == event:
            seen = m
except (OSError, ValueError):
    pass
print("EVENT " + (json.dumps(seen) if seen else "none"), flush=True)
s.settimeout(30)
for c in sys.argv[4:]:
    f.write(c + "\n")
    f.flush()
    print("REPLY " + json.dumps(reply()), flush=True)
PY
}

# vfio_query SOCKET: x-query-vhost-vfio's reply and HMP's info network,
# one line each ("QUERY <json>", "HMP <lines joined by |>").
vfio_query() {
	qmp "$1" '{"execute": "x-query-vhost-vfio"}' \
		'{"execute": "human-monitor-command", "arguments": {"command-line": "info network"}}' |
		python3 -c '
import json, sys
q = json.loads(sys.stdin.readline())
h = json.loads(sys.stdin.readline())
print("QUERY " + json.dumps(q.get("return", q)))
# the netdev of a NIC is printed under it, after a backslash
print("HMP " + "|".join(l.strip().lstrip("\\").strip() for l in h.get("return", "").splitlines() if l.strip()))'
}
# check_query WHAT SOCKET NETDEV BACKEND STATE PAIRS: the QMP query lists
# NETDEV on this instance ($uuid, $dev, its group) with BACKEND, STATE and
# PAIRS queue pairs, and info network shows each pair's line with them.
check_query() {
	local what=$1 sock=$2 nd=$3 be=$4 st=$5 np=$6 out q h grp bad
	grp=$(basename "$(readlink "$dev/iommu_group")")
	out=$(vfio_query "$sock" 2>&1)
	q=$(echo "$out" | sed -n 's/^QUERY //p') h=$(echo "$out" | sed -n 's/^HMP //p')
	bad=$(echo "$q" | python3 -c '
import json, sys
want = dict(zip(("netdev-id", "instance", "sysfsdev", "group", "backend", "state", "queue-pairs"), sys.argv[1:]))
try:
    l = json.loads(sys.stdin.read())
    r = [x for x in l if x["netdev-id"] == want["netdev-id"]][0]
    print(" ".join(f"{k}={r[k]} (want {v})" for k, v in want.items() if str(r[k]) != v))
except Exception as e:
    print(f"no entry: {e!r}")' "$nd" "$uuid" "$dev" "$grp" "$be" "$st" "$np")
	local i hb=
	for i in $(seq 0 $((np - 1))); do
		echo "$h" | tr '|' '\n' | grep -q "^$nd: index=$i,type=vhost-vfio,instance=$uuid,sysfsdev=$dev,group=$grp,backend=$be,queue-pair=$i/$np,state=$st\$" ||
			hb+=" (no line for queue pair $i)"
	done
	if [ -z "$bad" ] && [ -z "$hb" ]; then
		pass "$what: x-query-vhost-vfio: $nd on $uuid (group $grp), backend $be, state $st, $np pair(s); info network: $(echo "$h" | tr '|' '\n' | grep -m1 "^$nd:" | cut -c1-200)"
	else
		fail "$what: x-query-vhost-vfio: ${bad:-ok}; info network:${hb:- ok}: $(echo "$q $h" | cut -c1-400)"
	fi
}

# holds PID WHAT: how many of PID's fds are WHAT ("group": /dev/vfio/N,
# "vfio": /dev/vfio/vfio, "iommu": /dev/iommu); PID may be that of the
# timeout(1) that runs QEMU.
holds() {
	local re p
	p=$(pgrep -P "$1" -f qemu-system 2>/dev/null | head -n1)
	set -- "${p:-$1}" "$2"
	case $2 in
	group) re='-> /dev/vfio/[0-9]+$' ;;
	vfio) re='-> /dev/vfio/vfio$' ;;
	iommu) re='-> /dev/iommu$' ;;
	esac
	ls -l "/proc/$1/fd" 2>/dev/null | grep -cE -- "$re"
}
# balloon_inflate SOCKET: asks L2's balloon for 64 MiB of its 512 MiB and
# waits (60 s at most) until L2's driver has given them; prints the
# balloon's actual size in MiB (nothing when QEMU did not say).
balloon_inflate() {
	local target=$((448 << 20)) actual= _
	qmp "$1" "{\"execute\": \"balloon\", \"arguments\": {\"value\": $target}}" >/dev/null
	for _ in $(seq 1 60); do
		actual=$(qmp "$1" '{"execute": "query-balloon"}' | sed -n 's/.*"actual": \([0-9]*\).*/\1/p')
		[ -n "$actual" ] && [ "$actual" -le $target ] && break
		sleep 1
	done
	[ -n "$actual" ] && echo $(( actual >> 20 ))
}

# discards TRACE LOG: how many balloon pages QEMU discarded, or tried to:
# "N M", N done (ram_block_discard_range in the trace file), M refused by
# the kernel with ENOSYS: the test kernel has no madvise()
# (CONFIG_ADVISE_SYSCALLS is off), so in L1 every discard QEMU attempts
# fails, which still shows that QEMU did not inhibit the balloon.
discards() {
	local ok no
	ok=$(grep -c '^ram_block_discard_range' "$1" 2>/dev/null)
	no=$(tr -d '\r' <"$2" | grep -ac 'ram_block_discard_range: Failed to discard range.*(-38)')
	echo "${ok:-0} ${no:-0}"
}

# QEMU arguments for L2 (the netdev comes last), its kernel command line.
L2APPEND="console=ttyS0 panic=-1 tsc=reliable quiet l2.mac=$mac l2.frames=1000"
L2COMMON=(-accel tcg -m 512M -nographic -no-reboot -nodefaults
	-serial stdio -kernel "$L2_KERNEL" -initrd "$L2_INITRD")
L2BASE=("${L2COMMON[@]}" -smp 1
	-device "virtio-net-pci,netdev=n0,romfile=,mac=$mac,speed=1000,duplex=full")
L2ARGS=("${L2BASE[@]}" -netdev "vhost-vfio,id=n0,sysfsdev=$dev")
# The balloon steps: QEMU traces every RAM discard into a file; and what
# vhost-vfio sends the device: the features, queue enables and disables.
BALLOON=(-device virtio-balloon-pci -trace ram_block_discard_range
	-trace vhost_vfio_set_features -trace vhost_vfio_set_vring_enable
	-trace vhost_vfio_set_mem_table -trace vhost_vfio_notify_region
	-trace 'vhost_vfio_host_notifier*'
	-trace vhost_vfio_open -trace vhost_vfio_state -trace vhost_vfio_config_irq
	-trace vhost_vfio_set_irq -trace vhost_vfio_set_status -trace vhost_vfio_net_state)

# --- 1. Errors QEMU must report clearly (quick: no guest runs) ---
expect_qemu_error() {  # NAME PATTERN QEMU-ARGS...
	local name=$1 pat=$2; shift 2
	local out rc
	out=$(timeout 60 "$QEMU" -M none -nodefaults -display none "$@" </dev/null 2>&1); rc=$?
	if [ $rc != 0 ] && echo "$out" | grep -qiE "$pat"; then
		pass "$name: $(echo "$out" | grep -iE "$pat" | head -n1 | cut -c1-160)"
	else
		fail "$name: rc $rc, output: $(echo "$out" | head -n3 | tr '\n' ' ' | cut -c1-200)"
	fi
}
# QEMU must refuse a configuration at realize (with -S and no monitor, a
# QEMU that accepts it waits until the timeout: rc 124).
expect_realize_error() {  # NAME PATTERN QEMU-ARGS...
	local name=$1 pat=$2; shift 2
	local out rc
	out=$(timeout 60 "$QEMU" -accel tcg -nodefaults -display none -S "$@" \
		-netdev "vhost-vfio,id=n0,sysfsdev=$dev" </dev/null 2>&1); rc=$?
	if [ $rc != 0 ] && [ $rc != 124 ] && echo "$out" | grep -qiE "$pat"; then
		pass "$name: $(echo "$out" | grep -iE "$pat" | head -n1 | cut -c1-200)"
	else
		fail "$name: rc $rc$([ $rc = 124 ] && echo ' (QEMU started: not refused)'), output: $(echo "$out" | head -n3 | tr '\n' ' ' | cut -c1-200)"
	fi
}
expect_realize_error "vIOMMU (intel-iommu, iommu_platform=on) refused" "vIOMMU" \
	-M q35 -device intel-iommu \
	-device virtio-net-pci,netdev=n0,romfile=,disable-legacy=on,iommu_platform=on
expect_realize_error "legacy-only device (disable-modern=on) refused" "virtio 1.x only" \
	-M pc -device virtio-net-pci,netdev=n0,romfile=,disable-modern=on
bad_mtu=9000; [ "$dev_mtu" = 9000 ] && bad_mtu=1400
expect_realize_error "host_mtu=$bad_mtu (device MTU $dev_mtu) refused" "host_mtu=$bad_mtu differs" \
	-M pc -device virtio-net-pci,netdev=n0,romfile=,host_mtu=$bad_mtu
bad_mac=52:54:00:12:34:56; [ "$mac" = $bad_mac ] && bad_mac=52:54:00:12:34:57
expect_realize_error "mac=$bad_mac (device MAC $mac) refused" "differs from the device's MAC" \
	-M pc -device virtio-net-pci,netdev=n0,romfile=,mac=$bad_mac
# The build guard: a target with virtio but without VFIO (m68k-softmmu,
# built next to x86_64) has -netdev vhost-vfio as a stub that says so.
M68K=$(dirname "$QEMU")/qemu-system-m68k
if [ -x "$M68K" ]; then
	out=$(timeout 60 "$M68K" -M none -nodefaults -display none \
		-netdev "vhost-vfio,id=n0,sysfsdev=$dev" </dev/null 2>&1); rc=$?
	if [ $rc != 0 ] && echo "$out" | grep -q "not available in this QEMU binary"; then
		pass "m68k (virtio, no VFIO) builds and refuses vhost-vfio: $(echo "$out" | head -n1 | cut -c1-160)"
	else
		fail "qemu-system-m68k: rc $rc, output: $(echo "$out" | head -n3 | tr '\n' ' ' | cut -c1-200)"
	fi
else
	fail "no $M68K: build-qemu.sh builds m68k-softmmu (virtio without VFIO) for the build guard"
fi
expect_qemu_error "queues=0 refused" "queues=0 is out of range: 1 to 511" \
	-netdev "vhost-vfio,id=n0,sysfsdev=$dev,queues=0"
expect_qemu_error "queues=512 (QEMU's limit 511) refused" "queues=512 is out of range: 1 to 511" \
	-netdev "vhost-vfio,id=n0,sysfsdev=$dev,queues=512"
pairs=$(cat "$dev/queue_pairs" 2>/dev/null || echo 1)
expect_qemu_error "queues=$((pairs + 1)) on an instance of $pairs pair(s) refused" \
	"queues=$((pairs + 1)) is more than instance $uuid has: $pairs queue pair" \
	-netdev "vhost-vfio,id=n0,sysfsdev=$dev,queues=$((pairs + 1))"
expect_qemu_error "wrong sysfsdev path" "not an mdev instance" \
	-netdev vhost-vfio,id=n0,sysfsdev=/sys/bus/mdev/devices/00000000-0000-0000-0000-00000000dead
expect_qemu_error "sysfsdev that is not an mdev" "not an mdev instance" \
	-netdev vhost-vfio,id=n0,sysfsdev=/sys/class/net/lo
# Naming: the project is vhost-mdev, the netdev vhost-vfio, the device_api
# vfio-vhost; the two other spellings as a netdev name the right one.
for nd in vhost-mdev vfio-vhost; do
	expect_qemu_error "-netdev $nd refused, naming vhost-vfio" \
		"no netdev type '$nd'.*'vhost-vfio'" -netdev "$nd,id=n0,sysfsdev=$dev"
done
expect_qemu_error "-netdev '{\"type\": \"vhost-mdev\", ...}' (JSON) refused, naming vhost-vfio" \
	"no netdev type 'vhost-mdev'.*'vhost-vfio'" \
	-netdev "{\"type\": \"vhost-mdev\", \"id\": \"n0\", \"sysfsdev\": \"$dev\"}"
if modprobe -d "$MODROOT" mtty 2>/dev/null; then
	mt=5e1f0000-0000-4000-8000-00000000a77e
	mtype=$(ls /sys/class/mdev_bus/mtty/mdev_supported_types | head -n1)
	if echo "$mt" >"/sys/class/mdev_bus/mtty/mdev_supported_types/$mtype/create"; then
		expect_qemu_error "a non-vfio-vhost mdev (mtty)" "not a vhost-mdev instance" \
			-netdev "vhost-vfio,id=n0,sysfsdev=/sys/bus/mdev/devices/$mt"
		echo 1 >"/sys/bus/mdev/devices/$mt/remove"
	else
		fail "could not create an mtty instance"
	fi
	# mtty stays loaded: under timer debug objects (the debug kernel) its
	# exit is not clean upstream.
else
	fail "no mtty module: the non-vfio-vhost check needs CONFIG_SAMPLE_VFIO_MDEV_MTTY=m (in scripts/kconfig/base.config)"
fi

# --- 1b. netdev_del and device_del in either order free everything ---
# No guest runs (-S): the NIC is hot-plugged into an empty PCIe root port
# with native hotplug (q35's ACPI PCI hotplug off), whose slot stays
# powered off without a guest, so device_del completes at once. Once both
# are gone QEMU must have let go of the instance and of vhost's migration
# blocker (the device lacks VHOST_F_LOG_ALL): a migration is not refused.
cleanup_order() {  # ORDER: netdev-first | device-first [QUEUES]
	local order=$1 queues=${2:-1} sock=/tmp/qemu-order.sock log=/tmp/qemu-order.log qpid out first second
	rm -f "$sock"
	[ "$queues" = 1 ] || order+=", queues=$queues"
	"$QEMU" -accel tcg -M q35 -m 64M -nodefaults -display none -S \
		-global ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off \
		-device pcie-root-port,id=rp0,chassis=1 \
		-netdev "vhost-vfio,id=n0,sysfsdev=$dev,queues=$queues" \
		-qmp "unix:$sock,server=on,wait=off" </dev/null >"$log" 2>&1 &
	qpid=$!
	if ! wait_sock "$sock" $qpid; then
		fail "cleanup order $order: QEMU did not start"; excerpt "$log" 10
		kill $qpid 2>/dev/null; wait $qpid 2>/dev/null; return
	fi
	first='{"execute": "netdev_del", "arguments": {"id": "n0"}}'
	second='{"execute": "device_del", "arguments": {"id": "nic0"}}'
	[ "${order%%,*}" = device-first ] && { out=$first; first=$second; second=$out; }
	out=$(qmp "$sock" \
		'{"execute": "device_add", "arguments": {"driver": "virtio-net-pci", "id": "nic0", "netdev": "n0", "bus": "rp0", "romfile": ""}}' \
		"$first" "$second" \
		'{"execute": "qom-list", "arguments": {"path": "/machine/peripheral"}}' 2>&1)
	# Each of the 4 commands must have been answered (QEMU creates the
	# QMP socket before the netdevs: one that failed at -netdev left it).
	if [ "$(echo "$out" | grep -c '^{"return"')" != 4 ]; then
		fail "cleanup order $order: $(echo "$out" | grep -v '^{"return"' | head -n1 | cut -c1-200)"
		excerpt "$log" 3
	elif echo "$out" | tail -n1 | grep -q '"nic0"'; then
		fail "cleanup order $order: device_del did not remove the NIC"
	else
		local g=0 _
		for _ in $(seq 1 20); do
			g=$(holds $qpid group)
			[ "$g" = 0 ] && break
			sleep 0.5
		done
		out=$(qmp "$sock" '{"execute": "migrate", "arguments": {"uri": "exec:cat >/dev/null"}}' 2>&1)
		if [ "$g" != 0 ]; then
			fail "cleanup order $order: QEMU still holds the instance's VFIO group"
		elif echo "$out" | grep -q '"error"'; then
			fail "cleanup order $order: vhost state left behind: migration refused: $(echo "$out" | cut -c1-200)"
		elif ! vhost-mdev ping "$uuid" -n 10 >/dev/null 2>&1; then
			fail "cleanup order $order: the instance is not usable by another opener"
		else
			pass "cleanup order $order: after netdev_del and device_del QEMU has released the instance (another opener pings through it) and its migration blocker (migrate accepted)"
		fi
	fi
	qmp "$sock" '{"execute": "quit"}' >/dev/null 2>&1
	for _ in $(seq 1 20); do kill -0 $qpid 2>/dev/null || break; sleep 0.5; done
	kill $qpid 2>/dev/null; wait $qpid 2>/dev/null
	grep -aE 'vhost-vfio|Assertion|core dumped' "$log" | head -n3 | sed 's/^/INFO:   | /'
}
cleanup_order netdev-first
cleanup_order device-first
# With 2 queue pairs: 2 net clients share the instance; the last to go
# closes it (netdev_del first: both wait for the NIC).
if echo 2 >"$dev/queue_pairs" 2>/dev/null; then
	cleanup_order netdev-first 2
	echo 1 >"$dev/queue_pairs"
else
	fail "cannot give the instance 2 queue pairs (queue_pairs attribute: $(cat "$dev/queue_pairs" 2>&1))"
fi

# --- 2. The L2 guest: link, MAC, 1000+ frames, reset and renegotiation ---
rx0=$(cat "$dev/stats/rx_packets" 2>/dev/null || echo 0)
tx0=$(cat "$dev/stats/tx_packets" 2>/dev/null || echo 0)
l2log=/tmp/l2-console.log
l2trace=/tmp/l2-trace.log
qmpsock=/tmp/l2-qmp.sock
l2in=/tmp/l2-console.in
# l2_start QEMU-ARGS...: boots L2 in the background with the balloon,
# QEMU's trace log in $l2trace, QMP at $qmpsock and its console input on
# fd 7 (a line lets L2 go on at each l2.wait step); sets qpid and t0.
# L2_AS: a command that runs QEMU (as another user); L2_QEMU: the QEMU.
L2_AS=()
l2_start() {
	rm -f "$qmpsock" "$l2in" "$l2trace"
	mkfifo "$l2in"
	exec 7<>"$l2in"
	t0=$(date +%s)
	timeout -k 5 "$L2_TIMEOUT" "${L2_AS[@]}" "${L2_QEMU:-$QEMU}" "$@" "${BALLOON[@]}" -D "$l2trace" \
		-qmp "unix:$qmpsock,server=on,wait=off" <&7 >"$l2log" 2>&1 &
	qpid=$!
}
# l2_wait: until L2's QEMU exits; sets qrc and dt.
l2_wait() {
	wait $qpid
	qrc=$?
	exec 7>&-
	rm -f "$l2in" "$qmpsock"
	dt=$(( $(date +%s) - t0 ))
}
# check_features WHAT CONSOLE TRACE [BIT...]: the guest may only see
# features the device offers and the client implements, besides the
# control queue's (QEMU's), whatever the virtio-net model offers
# (speed=/duplex= make it offer SPEED_DUPLEX, which this device lacks); the
# device may only get the former (the vhost_vfio_set_features trace of each
# start); each BIT must have been negotiated.
check_features() {
	local what=$1 log=$2 trace=$3 gf dev_ok guest_ok extra= sent bad= n=0 b i
	shift 3
	gf=$(tr -d '\r' <"$log" | sed -n 's/^L2: eth0 is .*features \([01]*\).*/\1/p' | head -n1)
	dev_ok=0
	for b in $CLIENT_FEATURE_BITS; do dev_ok=$(( dev_ok | (1 << b) )); done
	dev_ok=$(( dev_ok & dev_features ))
	guest_ok=$dev_ok
	for b in $QEMU_FEATURE_BITS; do guest_ok=$(( guest_ok | (1 << b) )); done
	for ((i = 0; i < ${#gf}; i++)); do
		[ "${gf:i:1}" = 1 ] && ! (( (guest_ok >> i) & 1 )) && extra+=" $i"
	done
	for b in "$@"; do
		[ "${gf:b:1}" = 1 ] || extra+=" (bit $b not negotiated)"
	done
	if [ -z "$gf" ]; then
		fail "$what: no feature line from L2"
	elif [ -z "$extra" ]; then
		pass "$what: the negotiated features are the device's and the client's, or the control queue's ($gf)"
	else
		fail "$what: feature bits negotiated against the rules:$extra ($gf; device $dev_features)"
	fi
	# (no process substitution: the test VM has no /dev/fd)
	for sent in $(sed -n 's/^vhost_vfio_set_features .*: features \(0x[0-9a-f]*\)$/\1/p' "$trace"); do
		n=$((n + 1))
		(( (sent & ~dev_ok) == 0 )) || bad+=" $(printf '0x%x' $((sent & ~dev_ok)))"
	done
	if [ $n = 0 ]; then
		fail "$what: no vhost_vfio_set_features trace: what reached the device is unknown"
	elif [ -z "$bad" ]; then
		pass "$what: the $n SET_FEATURES QEMU sent carry only bits the device offers and the client implements (no control-queue or MQ bit)"
	else
		fail "$what: SET_FEATURES sent bits outside the device's and the client's:$bad"
	fi
}
# check_mem_tables WHAT HOW: QEMU sent its memory table at every start
# (L2 starts the device twice: at boot and after its driver reset), and
# the instance accepted each (the vhost_vfio_set_mem_table trace has the
# result).
check_mem_tables() {
	local n bad
	n=$(grep -c '^vhost_vfio_set_mem_table ' "$l2trace" 2>/dev/null)
	bad=$(grep '^vhost_vfio_set_mem_table ' "$l2trace" 2>/dev/null | grep -vc ', result 0$')
	if [ "${n:-0}" -ge 2 ] && [ "$bad" = 0 ]; then
		pass "$1: QEMU sent its memory table (VHOST_SET_MEM_TABLE) $n times, $2 ($(grep -m1 '^vhost_vfio_set_mem_table ' "$l2trace" | sed 's/.*: //'))"
	else
		fail "$1: ${n:-0} memory tables sent (want >= 2), $bad refused: $(grep '^vhost_vfio_set_mem_table ' "$l2trace" 2>/dev/null | head -n3 | tr '\n' ' ' | cut -c1-200)"
	fi
}
# check_no_notifier WHAT: a device without doorbell pages (the sample,
# vdpa_sim_net) does not offer region 1 for mmap, and QEMU kept every
# queue's kicks on the ioeventfd (the vhost_vfio_host_notifier_fallback
# trace at each start), with no host notifier installed.
check_no_notifier() {
	local region fb hn
	region=$(grep -m1 '^vhost_vfio_notify_region ' "$l2trace" 2>/dev/null | sed 's/.*: //')
	fb=$(grep -c '^vhost_vfio_host_notifier_fallback .*region 1 is not mappable' "$l2trace" 2>/dev/null)
	hn=$(grep -c '^vhost_vfio_host_notifier ' "$l2trace" 2>/dev/null)
	if [ "${region##* }" = 0 ] && [ "${fb:-0}" -ge 2 ] && [ "${hn:-0}" = 0 ]; then
		pass "$1: no doorbell pages ($region): kicks stayed on the ioeventfd for $fb queue starts, no host notifier"
	else
		fail "$1: region 1 '${region:-no trace}', $fb ioeventfd fallbacks, $hn host notifiers (want mmap 0, >= 2, 0)"
	fi
}
# l2_reports WHAT: fails when L2's kernel log has reports.
l2_reports() {
	if tr -d '\r' <"$l2log" | grep -aqE '(WARNING:|BUG:|Oops|Call Trace:|Kernel panic)'; then
		fail "$1: the L2 guest's kernel log has reports"
		excerpt "$l2log" 40
	fi
}
l2_start "${L2ARGS[@]}" -append "$L2APPEND l2.wait=dirty-logging,balloon,link-down-paused,link-up"
# L2 waits at each step of l2.wait while L1 acts on the running VM.
l2_step() {  # STEP: wait until L2 is at STEP (0) or QEMU is gone (1)
	while kill -0 $qpid 2>/dev/null; do
		tr -d '\r' <"$l2log" | grep -aq "^L2: WAIT $1\$" && return 0
		sleep 1
	done
	fail "L2 never reached its $1 step"
	return 1
}
# Dirty logging switched on and off on the running device (QEMU calls
# set_features and set_vring_addr again, as migration would): the device
# must keep running (L2 exchanges frames after it).
if l2_step dirty-logging; then
	check_query "type1, running" "$qmpsock" n0 type1 running 1
	out=$(qmp "$qmpsock" '{"execute": "calc-dirty-rate", "arguments": {"calc-time": 1, "mode": "dirty-bitmap"}}' 2>&1)
	measured=0
	for _ in $(seq 1 30); do
		st=$(qmp "$qmpsock" '{"execute": "query-dirty-rate"}' 2>&1)
		echo "$st" | grep -q '"status": "measured"' && { measured=1; break; }
		kill -0 $qpid 2>/dev/null || break
		sleep 1
	done
	if [ $measured = 1 ]; then
		info "dirty logging on and off on the running device (calc-dirty-rate, dirty-bitmap): $(echo "$st" | cut -c1-160)"
	else
		fail "calc-dirty-rate (dirty logging on the running device) did not complete: $(echo "$out $st" | tr '\n' ' ' | cut -c1-200)"
	fi
	echo go >&7
fi
# type1: the device pins nothing, so the balloon's pages are discarded
# (QEMU traces each discard); L2 exchanges frames after it.
if l2_step balloon; then
	mib=$(balloon_inflate "$qmpsock")
	read -r ok no <<<"$(discards "$l2trace" "$l2log")"
	if [ -n "$mib" ] && [ "$mib" -le 448 ] && [ $((ok + no)) -ge 16384 ]; then
		pass "type1: the balloon took L2 to $mib MiB and QEMU discarded, or tried to, all its 16384 pages: RAM discard allowed ($ok discarded, $no refused with ENOSYS by L1's kernel, which has no madvise)"
	else
		fail "type1: balloon at ${mib:-?} MiB (asked 448), $ok pages discarded and $no attempts (want 16384): RAM discard should be allowed"
	fi
	echo go >&7
fi
# The link goes down while the VM is paused (vhost stopped): the guest
# must see it after cont. Then up again, while running.
if l2_step link-down-paused; then
	qmp "$qmpsock" '{"execute": "stop"}' >/dev/null
	check_query "type1, VM paused" "$qmpsock" n0 type1 stopped 1
	echo 0 >"$dev/link"
	sleep 1
	qmp "$qmpsock" '{"execute": "cont"}' >/dev/null
	echo go >&7
fi
if l2_step link-up; then
	echo 1 >"$dev/link"
	echo go >&7
fi
l2_wait
echo 1 >"$dev/link"     # whatever happened above
tr -d '\r' <"$l2log" | grep -a '^L2: ' | sed 's/^/INFO: /'
if [ $qrc = 124 ] || [ $qrc = 137 ]; then
	fail "L2 guest: QEMU timed out after $L2_TIMEOUT s"
	excerpt "$l2log" 30
elif tr -d '\r' <"$l2log" | grep -aq '^L2: PASS: all checks passed'; then
	pass "L2 guest: link up, MAC $mac (mac= the device's), 1000 mixed-size frames intact, frames after dirty logging on the running device and after the balloon, link down while paused seen after cont, down/up and driver reset with renegotiation (QEMU exit $qrc, ${dt}s)"
else
	fail "L2 guest did not pass (QEMU exit $qrc, ${dt}s)"
	excerpt "$l2log" 30
fi
l2_reports "L2 guest"
check_features "L2" "$l2log" "$l2trace"
check_mem_tables "L2" "the core accepted each (the sample has no use for it)"
check_no_notifier "L2"
# The trace events of requests, interrupts and state changes: the open
# (group, backend), each start and stop (DRIVER_OK, SUSPEND), the queue
# interrupts' eventfds, and the config interrupt of the link change made
# while the VM was paused.
check_state_traces() {  # WHAT BACKEND
	local o r s c i n
	o=$(grep -c "^vhost_vfio_open .*: group [0-9]*, backend $2, " "$l2trace")
	r=$(grep -c '^vhost_vfio_state .*: running (DRIVER_OK)$' "$l2trace")
	s=$(grep -c '^vhost_vfio_state .*: stopped (suspended)$' "$l2trace")
	i=$(grep -c '^vhost_vfio_set_irq .*: IRQ index 0 vector [0-9]*: eventfd [0-9]*, result 0$' "$l2trace")
	n=$(grep -c '^vhost_vfio_net_state netdev n0: .*: running$' "$l2trace")
	c=$(grep -c '^vhost_vfio_config_irq .*device running 0$' "$l2trace")
	if [ "$o" = 1 ] && [ "$r" -ge 2 ] && [ "$s" -ge 1 ] && [ "$i" -ge 2 ] && [ "$n" = "$r" ] && [ "$c" -ge "$3" ]; then
		pass "$1: trace events: open ($2), $r starts and $s stops (SUSPEND) of the device, $i queue interrupts attached, $c config interrupt(s) while stopped"
	else
		fail "$1: trace events: $o opens with backend $2 (want 1), $r starts (want >= 2), $s stops (want >= 1), $i queue IRQs attached (want >= 2), $n net state changes (want $r), $c config IRQs while stopped (want >= $3)"
	fi
}
check_state_traces "L2" type1 1
if grep -aq 'vhost-vfio:' "$l2log"; then
	info "QEMU said:"; grep -a 'vhost-vfio:' "$l2log" | head -n5 | sed 's/^/INFO:   | /'
fi

# --- 3. The instance's counters, seen from L1 ---
rx=$(( $(cat "$dev/stats/rx_packets") - rx0 ))
tx=$(( $(cat "$dev/stats/tx_packets") - tx0 ))
info "instance stats: $(for f in "$dev"/stats/*; do printf '%s=%s ' "${f##*/}" "$(cat "$f")"; done)"
if [ "$rx" -ge 1000 ] && [ "$tx" -ge 1000 ]; then
	pass "instance counters: $rx rx, $tx tx packets during the L2 run"
else
	fail "instance counters: $rx rx, $tx tx packets during the L2 run (want >= 1000 each)"
fi

# --- 4. Reusable after QEMU quit ---
t "instance reusable after QEMU quit: ping 100 frames" vhost-mdev ping "$uuid" -n 100

# --- 4a. Ownership: the instance's VFIO nodes are its owner's, only its ---
# `create --owner` gave the instance's group node and cdev to
# OWN_UID:OWN_GID; a second instance stays root's, and the owner's
# processes cannot open it (EACCES through either node). The udev rule
# (udev/70-vhost-mdev.rules) gives a re-created instance's nodes their
# recorded owner again, and matches no other VFIO group.
town=$(date +%s)
# The owner's processes: no supplementary groups, a memlock limit for
# iommufd's pins (the pin cache: 64 MiB per instance; admin-guide.rst).
AS_OWNER=(prlimit --memlock=$((128 << 20)) setpriv --reuid=$OWN_UID --regid=$OWN_GID --clear-groups)
nodes_of() {  # UUID: its group node and its cdev
	local d=/sys/bus/mdev/devices/$1
	echo "/dev/vfio/$(basename "$(readlink "$d/iommu_group")") /dev/vfio/devices/$(ls "$d/vfio-dev" 2>/dev/null)"
}
perms() { stat -c '%u:%g %a' "$@" | sort -u | tr '\n' ' ' | sed 's/ $//'; }
uuid2=$(vhost-mdev create --parent vhost_mdev_net --type "$TYPE") || fail "create a second instance"
read -r g1 c1 <<<"$(nodes_of "$uuid")"
read -r g2 c2 <<<"$(nodes_of "$uuid2")"
o1=$(perms "$g1" "$c1") o2=$(perms "$g2" "$c2")
if [ "$o1" = "$OWN_UID:$OWN_GID 660" ] && [ "$o2" = "0:0 600" ] &&
	[ "$(cat "$VHOST_MDEV_OWNERS/$uuid" 2>&1)" = "$OWN_UID:$OWN_GID" ]; then
	pass "create --owner $OWN_UID:$OWN_GID: $g1 and $c1 are the owner's (0660), recorded; the other instance's $g2 and $c2 stay root's (0600)"
else
	fail "create --owner: $g1 $c1: $o1 (want $OWN_UID:$OWN_GID 660); $g2 $c2: $o2 (want 0:0 600); record: $(cat "$VHOST_MDEV_OWNERS/$uuid" 2>&1)"
fi
# iommufd needs /dev/iommu too: the test gives it to the owner's group.
iommu_was=$(stat -c '%u:%g %a' /dev/iommu 2>/dev/null)
chgrp "$OWN_GID" /dev/iommu && chmod 0660 /dev/iommu
# The three opens at once (each a process start of a few seconds in TCG).
as_owner_probe() {  # NAME ARGS...: the owner's `vhost-mdev probe ARGS`, output and status in /tmp/own-NAME
	local name=$1; shift
	"${AS_OWNER[@]}" vhost-mdev probe "$@" >"/tmp/own-$name" 2>&1
	echo "exit $?" >>"/tmp/own-$name"
}
as_owner_probe own --iommufd "$uuid" & p1=$!
as_owner_probe type1 "$uuid2" & p2=$!
as_owner_probe iommufd --iommufd "$uuid2" & p3=$!
wait $p1 $p2 $p3
out=$(cat /tmp/own-own) rc=$(sed -n 's/^exit //p' /tmp/own-own)
if [ "$rc" = 0 ] && echo "$out" | grep -q '^virtio device id: 1 (net)'; then
	pass "the owner (uid $OWN_UID, no groups but $OWN_GID) opens its instance through iommufd (cdev $c1, /dev/iommu)"
else
	fail "the owner cannot open its instance through iommufd: exit $rc: $(echo "$out" | tail -n2 | tr '\n' ' ' | cut -c1-200)"
fi
for how in type1 iommufd; do
	out=$(cat "/tmp/own-$how") rc=$(sed -n 's/^exit //p' "/tmp/own-$how")
	if [ "$rc" = 5 ] && echo "$out" | grep -q 'Permission denied (EACCES)'; then
		pass "the owner cannot open the other instance ($how): exit 5, $(echo "$out" | grep -m1 EACCES | cut -c1-160)"
	else
		fail "the owner and the other instance ($how): exit $rc (want 5, EACCES): $(echo "$out" | tail -n2 | tr '\n' ' ' | cut -c1-200)"
	fi
done
# The udev rule, with the CLI of this tree and the test's owner records.
# The test kernel has no inotify, which systemd-udevd needs: `udevadm
# test` plays the kernel's "add" event of a node through the rules (and
# applies the OWNER, GROUP and MODE they assign, as udevd would).
RULE=/run/udev/rules.d/70-vhost-mdev.rules
mkdir -p /run/udev/rules.d
sed "s|/usr/local/bin/vhost-mdev|/usr/bin/env VHOST_MDEV_OWNERS=$VHOST_MDEV_OWNERS $(command -v vhost-mdev)|" \
	"$TOP/udev/70-vhost-mdev.rules" >"$RULE"
# udev_says SYSPATH: what the rule did in `udevadm test`: the instance it
# imported, and OWNER, GROUP, MODE as the rule assigned them (sorted).
udev_says() {
	udevadm test --action=add "$1" 2>&1 | tr -d '\r' | sed -n \
		-e 's/^[[:space:]]*\(VHOST_MDEV_UUID=[^ ]*\)$/\1/p' \
		-e 's/.*70-vhost-mdev\.rules:[0-9]* \(OWNER\|GROUP\|MODE\) \([0-9]*\).*/\1 \2/p' | sort | tr '\n' ' ' | sed 's/ $//'
}
if command -v udevadm >/dev/null; then
	# The other instance, given to the owner too, then removed and
	# created again through sysfs (as mdevctl start, or a reboot, creates
	# it): its nodes are root's again until the rule gives them back.
	vhost-mdev own "$uuid2" "$OWN_UID:$OWN_GID" >/dev/null || fail "vhost-mdev own $uuid2 $OWN_UID:$OWN_GID"
	echo 1 >"/sys/bus/mdev/devices/$uuid2/remove" &&
		echo "$uuid2" >"/sys/class/mdev_bus/vhost_mdev_net/mdev_supported_types/$TYPE/create"
	read -r g2 c2 <<<"$(nodes_of "$uuid2")"
	o2=$(perms "$g2" "$c2")
	want="GROUP $OWN_GID MODE 0600 MODE 0660 OWNER $OWN_UID VHOST_MDEV_UUID=$uuid2"
	# A VFIO group that is not a vhost-mdev instance's: mtty's (loaded above).
	mt=5e1f0000-0000-4000-8000-00000000a77f mg=
	mtype=$(ls /sys/class/mdev_bus/mtty/mdev_supported_types 2>/dev/null | head -n1)
	if [ -n "$mtype" ] && echo "$mt" >"/sys/class/mdev_bus/mtty/mdev_supported_types/$mtype/create"; then
		mg=$(basename "$(readlink "/sys/bus/mdev/devices/$mt/iommu_group")")
	else
		fail "no mtty instance for the udev rule's negative case"
	fi
	# The three at once (each reads all the rules: seconds in TCG).
	udev_says "/sys/class/vfio/${g2##*/}" >/tmp/udev-group & p1=$!
	udev_says "/sys/class/vfio-dev/${c2##*/}" >/tmp/udev-cdev & p2=$!
	[ -n "$mg" ] && { udev_says "/sys/class/vfio/$mg" >/tmp/udev-mtty & p3=$!; }
	wait $p1 $p2 ${mg:+$p3}
	for k in group cdev; do
		n=/sys/class/vfio/${g2##*/}
		[ $k = cdev ] && n=/sys/class/vfio-dev/${c2##*/}
		got=$(cat "/tmp/udev-$k")
		if [ "$got" = "$want" ]; then
			pass "udev rule (udevadm test $n): $got"
		else
			fail "udev rule on $n: '$got' (want '$want')"
		fi
	done
	o2b=$(perms "$g2" "$c2")
	if [ "$o2" = "0:0 600" ] && [ "$o2b" = "$OWN_UID:$OWN_GID 660" ]; then
		pass "instance re-created through sysfs: $g2 and $c2 root's ($o2) until the rule gave them the recorded owner ($o2b)"
	else
		fail "instance re-created through sysfs: $g2 $c2 were $o2 (want 0:0 600), after the rule $o2b (want $OWN_UID:$OWN_GID 660)"
	fi
	if [ -n "$mg" ]; then
		got=$(cat /tmp/udev-mtty)
		if [ -z "$got" ] && [ "$(perms "/dev/vfio/$mg")" = "0:0 600" ]; then
			pass "udev rule on an mtty instance's VFIO group $mg: not matched, root's (0600)"
		else
			fail "udev rule on an mtty instance's VFIO group $mg: '$got' (want nothing), $(perms "/dev/vfio/$mg")"
		fi
		echo 1 >"/sys/bus/mdev/devices/$mt/remove"
	fi
	rm -f "$RULE"
else
	fail "no udevadm: the udev rule cannot be checked"
fi
vhost-mdev remove "$uuid2" >/dev/null || fail "remove $uuid2"
[ -e "$VHOST_MDEV_OWNERS/$uuid2" ] && fail "remove left the owner of $uuid2 recorded"
info "ownership checks: $(( $(date +%s) - town )) s"

# --- 4b. iommufd=on, 2 queue pairs and the packed ring ---
# The same L2 guest, with 2 vCPUs, on an instance of 2 queue pairs that
# QEMU opens through iommufd's VFIO type1 compatibility, with queues=2,
# mq=on and packed=on: frames pass; QEMU holds /dev/iommu and no type1
# container, and the balloon discards nothing (the pin cache pins guest
# pages: RAM discard stays disabled). The guest's own kernel changes its
# pair count (ETHTOOL_SCHANNELS: the multiqueue command on QEMU's control
# queue) and sends from each CPU: the device's per-pair counters (L1
# sysfs) must show traffic on both pairs with 2, none on pair 1 with 1,
# and QEMU must have disabled and enabled pair 1's queues on the device.
# This QEMU runs unprivileged, as the instance's owner (4a): the instance's
# group node is its, /dev/iommu its group's, and iommufd's pins are
# charged to it within its memlock limit.
# pair_counts: "tx0 tx1 rx0 rx1" from the instance's per-pair counters.
pair_counts() {
	local tx rx
	read -r -a tx <"$dev/stats/tx_packets_per_pair" || return 1
	read -r -a rx <"$dev/stats/rx_packets_per_pair" || return 1
	[ ${#tx[@]} = 2 ] && [ ${#rx[@]} = 2 ] || return 1
	echo "${tx[0]} ${tx[1]} ${rx[0]} ${rx[1]}"
}
# enables QUEUE ENABLE FROM-LINE: vhost_vfio_set_vring_enable trace lines
# (after line FROM-LINE of the trace) for QUEUE with ENABLE.
enables() {
	tail -n +"$(( $3 + 1 ))" "$l2trace" 2>/dev/null |
		grep -c "^vhost_vfio_set_vring_enable .*: queue $1 enable $2\$"
}
if [ -c /dev/iommu ]; then
	if echo 2 >"$dev/queue_pairs" 2>/dev/null && [ "$(cat "$dev/queue_pairs")" = 2 ]; then
		info "instance $uuid: queue_pairs 2 ($(cat "$dev/queue_pairs"))"
	else
		fail "cannot give the instance 2 queue pairs (queue_pairs attribute: $(cat "$dev/queue_pairs" 2>&1))"
	fi
	rx0=$(cat "$dev/stats/rx_packets") tx0=$(cat "$dev/stats/tx_packets")
	# QEMU runs as the instance's owner (4a), not root: the cache (QEMU,
	# L2) is under root's home, which only root may enter, so the owner
	# reaches it through a bind mount.
	OWN_CACHE=/run/own-cache
	mkdir -p $OWN_CACHE && mount --bind "$CACHE" $OWN_CACHE || fail "bind-mounting $CACHE on $OWN_CACHE"
	L2_AS=("${AS_OWNER[@]}") L2_QEMU=${QEMU/#"$CACHE"/$OWN_CACHE}
	# sockets=2: SeaBIOS's MP table (the L2 kernel has no ACPI) lists one
	# CPU per socket, and QEMU 7.2's -smp 2 alone makes one socket of two.
	l2_start "${L2COMMON[@]/#"$CACHE"/$OWN_CACHE}" -smp 2,sockets=2 \
		-device "virtio-net-pci,netdev=n0,romfile=,mac=$mac,mq=on,vectors=6,packed=on" \
		-netdev "vhost-vfio,id=n0,sysfsdev=$dev,iommufd=on,queues=2" \
		-append "console=ttyS0 panic=-1 tsc=reliable quiet l2.mac=$mac l2.frames=200 l2.wait=balloon,mq-one,mq-two,mq-end"
	if l2_step balloon; then
		check_query "iommufd=on, queues=2" "$qmpsock" n0 iommufd running 2
		fds="$(holds $qpid iommu) $(holds $qpid vfio) $(holds $qpid group)"
		qp=$(pgrep -P $qpid -f qemu-system | head -n1)
		quid=$(awk '/^Uid:/ { print $2 " " $3 " " $4 " " $5 }' "/proc/$qp/status" 2>/dev/null)
		info "the owner's QEMU (pid $qp): $(grep -E '^(Groups|VmLck):' "/proc/$qp/status" 2>/dev/null | tr -s '\t\n' '  ')"
		if [ "$fds" = "1 0 1" ] && [ "$quid" = "$OWN_UID $OWN_UID $OWN_UID $OWN_UID" ]; then
			pass "iommufd=on: QEMU runs unprivileged (uid $OWN_UID) and holds /dev/iommu and the group, no type1 container (/dev/vfio/vfio)"
		else
			fail "iommufd=on: QEMU's uids '$quid' (want $OWN_UID x4); it holds /dev/iommu, /dev/vfio/vfio, groups: $fds (want 1 0 1)"
		fi
		mib=$(balloon_inflate "$qmpsock")
		read -r ok no <<<"$(discards "$l2trace" "$l2log")"
		if [ -n "$mib" ] && [ "$mib" -le 448 ] && [ $((ok + no)) = 0 ]; then
			pass "iommufd=on: the balloon took L2 to $mib MiB and QEMU discarded nothing, nor tried: RAM discard disabled"
		else
			fail "iommufd=on: balloon at ${mib:-?} MiB (asked 448), $ok pages discarded and $no attempts: RAM discard must stay disabled"
		fi
		echo go >&7
	fi
	if l2_step mq-one; then
		if echo 1 >"$dev/queue_pairs" 2>/dev/null; then
			fail "queue_pairs was writable while QEMU held the instance"
		else
			pass "queue_pairs refused while QEMU holds the instance"
		fi
		c1=$(pair_counts) || fail "no per-pair counters (stats/tx_packets_per_pair, rx_packets_per_pair with 2 values)"
		m1=$(wc -l <"$l2trace")
		echo go >&7
	fi
	if l2_step mq-two; then
		c2=$(pair_counts)
		m2=$(wc -l <"$l2trace")
		read -r a0 a1 ar0 ar1 <<<"${c1:-0 0 0 0}"
		read -r b0 b1 br0 br1 <<<"${c2:-0 0 0 0}"
		d="tx $((b0 - a0)) $((b1 - a1)), rx $((br0 - ar0)) $((br1 - ar1))"
		off="$(enables 2 0 "$m1") $(enables 3 0 "$m1")"
		if [ -n "$c2" ] && [ $((b0 - a0)) -ge 200 ] && [ $((br0 - ar0)) -ge 200 ] &&
			[ $((b1 - a1)) = 0 ] && [ $((br1 - ar1)) = 0 ] && [ "$off" = "1 1" ]; then
			pass "1 queue pair (set by the guest): 200 frames from CPUs 0 and 1 all on pair 0, pair 1 idle ($d); QEMU disabled queues 2 and 3 on the device"
		else
			fail "1 queue pair: per-pair deltas $d (want pair 0 >= 200 each way, pair 1 0); queue 2, 3 disables sent: $off (want 1 1)"
		fi
		echo go >&7
	fi
	if l2_step mq-end; then
		c3=$(pair_counts)
		read -r b0 b1 br0 br1 <<<"${c2:-0 0 0 0}"
		read -r e0 e1 er0 er1 <<<"${c3:-0 0 0 0}"
		d="tx $((e0 - b0)) $((e1 - b1)), rx $((er0 - br0)) $((er1 - br1))"
		on="$(enables 2 1 "$m2") $(enables 3 1 "$m2")"
		if [ -n "$c3" ] && [ $((e0 - b0)) -ge 100 ] && [ $((er0 - br0)) -ge 100 ] &&
			[ $((e1 - b1)) -ge 100 ] && [ $((er1 - br1)) -ge 100 ] && [ "$on" = "1 1" ]; then
			pass "2 queue pairs (set by the guest): frames sent from CPU 0 and from CPU 1 went through both pairs ($d); QEMU enabled queues 2 and 3 again"
		else
			fail "2 queue pairs: per-pair deltas $d (want >= 100 on each pair each way); queue 2, 3 enables sent: $on (want 1 1)"
		fi
		echo go >&7
	fi
	l2_wait
	L2_AS=() L2_QEMU=
	umount $OWN_CACHE || fail "umount $OWN_CACHE"
	tr -d '\r' <"$l2log" | grep -a '^L2: ' | sed 's/^/INFO: mq+packed /'
	rx=$(( $(cat "$dev/stats/rx_packets") - rx0 ))
	tx=$(( $(cat "$dev/stats/tx_packets") - tx0 ))
	info "instance stats: $(for f in "$dev"/stats/*; do printf '%s=%s ' "${f##*/}" "$(cat "$f")"; done)"
	if tr -d '\r' <"$l2log" | grep -aq '^L2: PASS: all checks passed' && [ "$rx" -ge 600 ] && [ "$tx" -ge 600 ]; then
		pass "iommufd=on, queues=2, packed=on: L2 guest (2 vCPUs): link up, 200 mixed-size frames intact, frames after the balloon, on 1 then 2 queue pairs, after down/up and a driver reset; instance counters $rx rx, $tx tx (QEMU exit $qrc, ${dt}s)"
	else
		fail "iommufd=on, queues=2, packed=on: L2 guest did not pass (QEMU exit $qrc, ${dt}s; counters $rx rx, $tx tx)"
		excerpt "$l2log" 30
	fi
	l2_reports "iommufd=on, queues=2, packed=on"
	check_state_traces "iommufd=on, queues=2" iommufd 0
	# MQ, the control queue and the packed ring negotiated by the guest,
	# only the packed ring of them sent to the device.
	check_features "queues=2, packed=on" "$l2log" "$l2trace" 17 22 34
	sent=$(sed -n 's/^vhost_vfio_set_features .*: features \(0x[0-9a-f]*\)$/\1/p' "$l2trace" | tail -n1)
	if [ -n "$sent" ] && (( (sent >> 34) & 1 )); then
		pass "packed=on: the device was given VIRTIO_F_RING_PACKED (features $sent)"
	else
		fail "packed=on: the last SET_FEATURES (${sent:-none}) lacks VIRTIO_F_RING_PACKED: the ring was not packed"
	fi
	echo 1 >"$dev/queue_pairs" 2>/dev/null || fail "queue_pairs back to 1 after QEMU quit"
	chown "${iommu_was% *}" /dev/iommu && chmod "${iommu_was#* }" /dev/iommu
else
	fail "no /dev/iommu in L1 (iommufd module): iommufd=on cannot be tested"
fi

# --- 4c. The vDPA bridge: L2 on a vdpa_sim_net device (VA mode) ---
# The same L2 guest on a vdpa_sim_net device bound to the vDPA bridge
# (vhost_mdev_vdpa.ko), as tests/vm/bridge.sh binds it. The device reaches
# guest memory only through QEMU's memory table (VHOST_SET_MEM_TABLE, sent
# at every start before DRIVER_OK and on every change of the memory map):
# without it no frame would come back. The device's control queue is left
# unused: the client never offers the guest the device's CTRL_VQ (QEMU's
# virtio-net has its own) and check_features fails if a SET_FEATURES
# carries it. vdpa_sim_net returns a TX frame on RX only when its
# destination is the device's MAC (or broadcast/multicast): L2's MAC is
# the device's (config space, through the client) and netloop sends to
# its own MAC.
VB=/sys/bus/vdpa
BNAME=vdpa18
BMAC=02:00:00:00:18:01
BUUID=77777777-0000-0000-0000-000000000018
BPARENT=/sys/class/mdev_bus/vhost_mdev_vdpa-$BNAME
bridge_cleanup() {
	[ -e "/sys/bus/mdev/devices/$BUUID" ] && echo 1 >"/sys/bus/mdev/devices/$BUUID/remove"
	vdpa dev del $BNAME 2>/dev/null
	rmmod vhost_mdev_vdpa 2>/dev/null
	echo 1 >$VB/drivers_autoprobe 2>/dev/null
	rmmod vdpa_sim_net vdpa_sim 2>/dev/null
	[ "$vdpa_loaded" = 1 ] || rmmod vdpa 2>/dev/null
	true
}
bridge_phase() {
	local m bdev out bfeatures dev_features
	for m in vdpa vdpa_sim vdpa_sim_net; do
		modprobe -d "$MODROOT" $m || { fail "vDPA bridge: modprobe $m"; return; }
	done
	insmod "$MODDIR/vhost_mdev_vdpa.ko" || { fail "vDPA bridge: insmod $MODDIR/vhost_mdev_vdpa.ko"; return; }
	if ! { echo 0 >$VB/drivers_autoprobe &&
		vdpa dev add mgmtdev vdpasim_net name $BNAME mac $BMAC &&
		echo vhost_mdev_vdpa >$VB/devices/$BNAME/driver_override &&
		echo $BNAME >$VB/drivers_probe &&
		echo $BUUID >"$BPARENT/mdev_supported_types/vhost_mdev_vdpa-$BNAME-bridge/create"; }; then
		fail "vDPA bridge: binding $BNAME (vdpa_sim_net) to vhost_mdev_vdpa and creating its instance"
		return
	fi
	bdev=/sys/bus/mdev/devices/$BUUID
	out=$(vhost-mdev probe $BUUID)
	bfeatures=$(echo "$out" | sed -n 's/^features: *//p')
	info "vDPA bridge: $BNAME (vdpa_sim_net, MAC $BMAC) behind instance $BUUID, features $bfeatures"
	l2_start "${L2COMMON[@]}" -smp 1 \
		-device "virtio-net-pci,netdev=n0,romfile=,mac=$BMAC" \
		-netdev "vhost-vfio,id=n0,sysfsdev=$bdev" \
		-append "console=ttyS0 panic=-1 tsc=reliable quiet l2.mac=$BMAC l2.frames=200"
	# No live migration: the device writes guest memory through its own
	# DMA, which neither VFIO nor the core logs (it offers no
	# VHOST_F_LOG_ALL): QEMU keeps its blocker and says why.
	if wait_sock "$qmpsock" $qpid; then
		out=$(qmp "$qmpsock" '{"execute": "migrate", "arguments": {"uri": "exec:cat >/dev/null"}}' 2>&1)
		if echo "$out" | grep -q '"error"' && echo "$out" | grep -q "vhost-vfio: instance $BUUID: migration disabled: the device does not log"; then
			pass "vDPA bridge: migration refused by vhost-vfio's blocker: $(echo "$out" | sed 's/.*"desc": "//' | cut -c1-200)"
		else
			fail "vDPA bridge: migrate was not refused with vhost-vfio's blocker: $(echo "$out" | cut -c1-200)"
		fi
	else
		fail "vDPA bridge: no QMP socket"
	fi
	l2_wait
	tr -d '\r' <"$l2log" | grep -a '^L2: ' | sed 's/^/INFO: vdpa /'
	if [ $qrc = 124 ] || [ $qrc = 137 ]; then
		fail "vDPA bridge: L2 guest: QEMU timed out after $L2_TIMEOUT s"
		excerpt "$l2log" 30
	elif tr -d '\r' <"$l2log" | grep -aq '^L2: PASS: all checks passed'; then
		pass "vDPA bridge (vdpa_sim_net, VA mode): L2 guest: link up, MAC $BMAC (the device's), 200 mixed-size frames returned byte for byte, again after down/up and after a driver reset with renegotiation (QEMU exit $qrc, ${dt}s)"
	else
		fail "vDPA bridge: L2 guest did not pass (QEMU exit $qrc, ${dt}s)"
		excerpt "$l2log" 30
	fi
	l2_reports "vDPA bridge"
	# The device's features, for check_features: CTRL_VQ (bit 17) is
	# the device's, and must never reach it.
	dev_features=$bfeatures
	check_features "vDPA bridge" "$l2log" "$l2trace"
	check_mem_tables "vDPA bridge" "the bridge took each"
	check_no_notifier "vDPA bridge"
	if dmesg | grep -q "$BNAME: memory table refused"; then
		fail "vDPA bridge: the bridge refused a memory table: $(dmesg | grep -m1 "$BNAME: memory table refused")"
	fi
}
# --- 4d. libvirt: the recipe of Documentation/qemu.rst (in the background) ---
# libvirt's session daemon (QEMU driver only: the test kernel has no
# inotify, which its node-device driver needs), run as an instance's
# owner with a memlock limit, as an operator would run libvirt's QEMU:
# virsh domxml-to-native shows the recipe's <qemu:commandline> arguments
# reach QEMU unchanged; virsh define and start --paused start QEMU as the
# owner with the instance open through iommufd; virsh
# qemu-monitor-command sees the netdev in x-query-vhost-vfio and info
# network. The owner is nobody (libvirt needs a user record; the test
# VM's /etc/passwd is the host's). It runs beside the bridge phase's L2
# guest (its own instance; the daemon's start and QEMU's capability probe
# take most of a minute under TCG).
libvirt_job() {
	local lv=/tmp/lv luuid ldev lmac q out p as t0 lcache=/run/lv-cache fds lim q1 q2
	t0=$(date +%s)
	if ! command -v virsh >/dev/null || ! command -v libvirtd >/dev/null; then
		fail "libvirt: no virsh or libvirtd (scripts/setup installs libvirt-daemon, libvirt-daemon-driver-qemu, libvirt-clients)"
		return
	fi
	luuid=$(vhost-mdev create --parent vhost_mdev_net --type "$TYPE" --owner 65534:65534) ||
		{ fail "libvirt: create an instance for nobody"; return; }
	ldev=/sys/bus/mdev/devices/$luuid
	lmac=$(vhost-mdev probe "$luuid" | sed -n 's/^mac: *//p' | tr 'A-F' 'a-f')
	# the daemon runs as nobody, who cannot enter root's cache
	mkdir -p $lcache && mount --bind "$CACHE" $lcache
	q=${QEMU/#"$CACHE"/$lcache}
	rm -rf $lv; mkdir -p $lv/run $lv/drivers
	ln -s /usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so $lv/drivers/
	chmod 700 $lv/run; chown -R 65534:65534 $lv
	cat >$lv/dom.xml <<EOF
<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>vhost-vfio-recipe</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <emulator>$q</emulator>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-netdev'/>
    <qemu:arg value='vhost-vfio,id=vhv0,sysfsdev=$ldev,iommufd=on'/>
    <qemu:arg value='-device'/>
    <qemu:arg value='virtio-net-pci,netdev=vhv0,id=vhvnic0,mac=$lmac,bus=pci.0,addr=0x10,romfile='/>
  </qemu:commandline>
</domain>
EOF
	as=(env LIBVIRT_DRIVER_DIR=$lv/drivers HOME=$lv XDG_RUNTIME_DIR=$lv/run
		XDG_CONFIG_HOME=$lv/config XDG_CACHE_HOME=$lv/cache
		prlimit --memlock=$((128 << 20)) setpriv --reuid=65534 --regid=65534 --clear-groups)
	vsh() { "${as[@]}" virsh -q -c qemu:///session "$@" 2>&1; }
	"${as[@]}" libvirtd --timeout=600 >$lv/libvirtd.log 2>&1 &
	for _ in $(seq 1 120); do [ -S $lv/run/libvirt/libvirt-sock ] && break; sleep 0.5; done
	out=$(vsh domxml-to-native qemu-argv $lv/dom.xml)
	if echo "$out" | grep -qF -- "-netdev vhost-vfio,id=vhv0,sysfsdev=$ldev,iommufd=on -device virtio-net-pci,netdev=vhv0,id=vhvnic0,mac=$lmac,bus=pci.0,addr=0x10,romfile=" &&
		echo "$out" | grep -qF " $q -name guest=vhost-vfio-recipe"; then
		pass "libvirt: virsh domxml-to-native: the recipe's <qemu:commandline> reaches the patched QEMU's arguments unchanged"
	else
		fail "libvirt: virsh domxml-to-native: $(echo "$out" | tail -n2 | cut -c1-300)"
	fi
	out="$(vsh define $lv/dom.xml) $(vsh start --paused vhost-vfio-recipe)"
	p=$(pgrep -u 65534 -f "qemu-system.*vhost-vfio-recipe" | head -n1)
	if [ -n "$p" ]; then
		fds="$(ls -l /proc/$p/fd | grep -cE -- '-> /dev/iommu$') $(ls -l /proc/$p/fd | grep -cE -- "-> /dev/vfio/$(basename "$(readlink $ldev/iommu_group)")\$")"
		lim=$(awk '/^Max locked memory/ { print $4 }' /proc/$p/limits)
		q1=$(vsh qemu-monitor-command vhost-vfio-recipe '{"execute": "x-query-vhost-vfio"}')
		q2=$(vsh qemu-monitor-command --hmp vhost-vfio-recipe 'info network')
		if [ "$fds" = "1 1" ] && [ "$lim" = $((128 << 20)) ] &&
			echo "$q1" | grep -q "\"instance\": *\"$luuid\"" &&
			echo "$q1" | grep -q "\"backend\": *\"iommufd\"" &&
			echo "$q1" | grep -q "\"state\": *\"open\"" &&
			echo "$q2" | grep -q "vhv0: index=0,type=vhost-vfio,instance=$luuid,.*backend=iommufd"; then
			pass "libvirt: virsh define and start --paused: QEMU (pid $p, uid $(awk '/^Uid:/ { print $2 }' /proc/$p/status)) holds /dev/iommu and the instance's group, memlock $lim; qemu-monitor-command: $(echo "$q1" | cut -c1-160)"
		else
			fail "libvirt: QEMU started, but /dev/iommu and group fds: $fds (want 1 1), memlock '$lim'; query: $(echo "$q1 $q2" | tr '\n' ' ' | cut -c1-300)"
		fi
	else
		fail "libvirt: virsh start did not start QEMU: $(echo "$out" | tr '\n' ' ' | cut -c1-200); $(tail -n3 $lv/cache/libvirt/qemu/log/vhost-vfio-recipe.log 2>/dev/null | tr '\n' ' ' | cut -c1-300)"
	fi
	vsh destroy vhost-vfio-recipe >/dev/null; vsh undefine vhost-vfio-recipe >/dev/null
	p=$(pgrep -u 65534 -x libvirtd)
	[ -n "$p" ] && kill $p
	for _ in $(seq 1 20); do [ -n "$p" ] && kill -0 $p 2>/dev/null || break; sleep 0.5; done
	umount $lcache || fail "libvirt: umount $lcache"
	vhost-mdev remove "$luuid" >/dev/null || fail "libvirt: remove $luuid"
	info "libvirt: $(( $(date +%s) - t0 )) s (beside the bridge phase)"
}
lv_iommu_was=$(stat -c '%u:%g %a' /dev/iommu)
chgrp 65534 /dev/iommu && chmod 0660 /dev/iommu
libvirt_job >/tmp/libvirt-job.out 2>&1 &
lvpid=$!

tb=$(date +%s)
vdpa_loaded=$(lsmod | grep -c '^vdpa ')
bridge_phase
bridge_cleanup
if [ -e "$BPARENT" ] || lsmod | grep -qE '^(vhost_mdev_vdpa|vdpa_sim_net|vdpa_sim) '; then
	fail "vDPA bridge: clean-up left $(ls -d "$BPARENT" 2>/dev/null) $(lsmod | grep -oE '^(vhost_mdev_vdpa|vdpa_sim_net|vdpa_sim) ' | tr '\n' ' ')"
fi
info "vDPA bridge phase: $(( $(date +%s) - tb )) s"
wait $lvpid
cat /tmp/libvirt-job.out
# (the job's FAIL lines were counted in its subshell only)
fails=$((fails + $(grep -c '^FAIL: ' /tmp/libvirt-job.out)))
chown "${lv_iommu_was% *}" /dev/iommu && chmod "${lv_iommu_was#* }" /dev/iommu

# --- 4d. Live migration between two QEMUs (tests/vm/nested-mig.sh) ---
# Both back ends, the holds and their negative controls: about 6 to 7
# minutes. VM_MIGRATION=0 leaves them out (while working on something
# else; make check runs them).
if [ "${VM_MIGRATION:-1}" = 1 ]; then
	NESTED_MIG_SOURCED=1 . "$VHOST_MDEV_TOP/tests/vm/nested-mig.sh"
fi

# --- 5. A second opener is refused; removal releases QEMU (request IRQ) ---
qlog=/tmp/qemu-held.log
hsock=/tmp/qemu-held.sock
wlog=/tmp/qemu-held.qmp
rm -f "$hsock"
"$QEMU" "${L2ARGS[@]}" -append "$L2APPEND" -S -trace vhost_vfio_req_irq \
	-trace vhost_vfio_net_request -qmp "unix:$hsock,server=on,wait=off" </dev/null >"$qlog" 2>&1 &
qpid=$!
held=0
for _ in $(seq 1 120); do
	if ls -l /proc/$qpid/fd 2>/dev/null | grep -q '/dev/vfio/[0-9]'; then held=1; break; fi
	kill -0 $qpid 2>/dev/null || break
	sleep 0.5
done
if [ $held = 1 ]; then
	expect_qemu_error "instance already open" "already open" \
		-netdev "vhost-vfio,id=n0,sysfsdev=$dev"
	# After the release: a QMP event, and set_link up refused.
	qmp_watch "$hsock" VHOST_VFIO_RELEASED 60 \
		'{"execute": "set_link", "arguments": {"name": "n0", "up": true}}' \
		'{"execute": "x-query-vhost-vfio"}' >"$wlog" 2>&1 &
	wpid=$!
	for _ in $(seq 1 60); do grep -q READY "$wlog" && break; sleep 0.5; done
	t0=$(date +%s)
	( echo 1 >"$dev/remove" ) &
	rpid=$!
	ok=0
	for _ in $(seq 1 120); do
		kill -0 $rpid 2>/dev/null || { ok=1; break; }
		sleep 0.5
	done
	if [ $ok = 1 ] && wait $rpid && [ ! -e "$dev" ]; then
		pass "removing the instance while QEMU holds it: QEMU released it (request IRQ) in $(( $(date +%s) - t0 ))s"
		grep -a 'vhost-vfio' "$qlog" | head -n2 | sed 's/^/INFO:   | /'
	else
		fail "removing the instance while QEMU holds it did not complete"
		excerpt "$qlog" 10
	fi
	wait $wpid
	ev=$(sed -n 's/^EVENT //p' "$wlog")
	if echo "$ev" | grep -q '"VHOST_VFIO_RELEASED"' && echo "$ev" | grep -q '"netdev-id": "n0"'; then
		pass "QMP event after the release: $(echo "$ev" | cut -c1-160)"
	else
		fail "no VHOST_VFIO_RELEASED event after the release: $(head -c 300 "$wlog" | tr '\n' ' ')"
	fi
	rep=$(sed -n 's/^REPLY //p' "$wlog" | head -n1)
	q=$(sed -n 's/^REPLY //p' "$wlog" | sed -n 2p)
	if echo "$q" | grep -q '"state": "released"' && echo "$q" | grep -q "\"instance\": \"$uuid\"" &&
		grep -aq "^vhost_vfio_req_irq .*$uuid: request interrupt" "$qlog" &&
		grep -aq "^vhost_vfio_net_request netdev n0: instance $uuid is being removed" "$qlog"; then
		pass "after the release: x-query-vhost-vfio says state released; the request interrupt traced (vhost_vfio_req_irq, vhost_vfio_net_request)"
	else
		fail "after the release: x-query-vhost-vfio: $(echo "$q" | cut -c1-300); traces: $(grep -a '^vhost_vfio_' "$qlog" | head -n2 | tr '\n' ' ')"
	fi
	if echo "$rep" | grep -q '"error"' && echo "$rep" | grep -q "cannot come up"; then
		pass "set_link n0 up after the release refused: $(echo "$rep" | cut -c1-200)"
	else
		fail "set_link n0 up after the release was not refused: $(echo "$rep" | cut -c1-200)"
	fi
	# QEMU keeps running with the link down; quit it.
	kill "$qpid" 2>/dev/null; wait "$qpid" 2>/dev/null
else
	fail "QEMU -S did not open the instance"
	excerpt "$qlog" 10
	kill "$qpid" 2>/dev/null; wait "$qpid" 2>/dev/null
fi
[ -e "$dev" ] && vhost-mdev remove "$uuid"
unload_ours || fail "unloading the modules"
if [ $fails = 0 ]; then
	pass "nested: all checks passed"
else
	fail "nested: $fails check(s) failed"
	exit 1
fi
