# SPDX-License-Identifier: GPL-2.0
# Live migration of an L2 guest between two QEMUs in the test VM (L1), each
# on its own vhost-mdev instance, on type1 and on iommufd, while the guest
# sends checked traffic (netloop --stream: sequence numbers and a payload
# checksum; the checker counts corrupt, duplicated and missing frames).
#
# One L2 (256 MiB) moves back and forth between instances A and B, first
# on type1, then on iommufd (one L2 boot for both):
#   type1 (after a hold without migration, which proves that the hold
#   stops the guest's receive side):
#   1. A -> B over a unix socket, QEMU's defaults: the figures (total time
#      and downtime from query-migrate);
#   2. B -> A with a "hold" (tests/vm/migctl.py, netloop's hold): the
#      guest stops its receive side (NAPI's own deferral: interrupts off,
#      one poll when a 20 s timer fires); RAM's first pass copies its
#      receive ring and buffers; then it sends 32 frames: the device writes
#      them into guest memory that was already copied and that only the
#      destination reads: all 32 must arrive intact (the dirty tracking
#      carried them);
#   3. A -> B cancelled (migrate_cancel): the source goes on, traffic too;
#   4. A -> a file (exec:cat >FILE), then B -incoming from it;
#   5. the negative control: B -> A with the hold, from a QEMU whose dirty
#      tracking of the device's writes is off (its test-only environment
#      knob, QEMU_VHOST_VFIO_TEST_NO_DIRTY_LOG): the checker MUST see the
#      held frames stale (missing, corrupt or duplicated);
#   then A (type1) -> B (iommufd), and on iommufd: 1. B -> A (the
#   figures), 2. A -> B with the hold, 5. B -> A, the negative control.
# After each step (but the negative controls): no frame corrupt or
# duplicated, at most WINDOW (16, netloop's in-flight depth) missing, and
# traffic goes on on the destination; the instance left behind is the
# next step's.
#
# Sourced by tests/vm/nested.sh (modules loaded, QEMU and L2 known), or run
# alone: scripts/vm --timeout 1500 tests/vm/nested-mig.sh (about 7 minutes
# on an idle host)
if [ -z "${NESTED_MIG_SOURCED:-}" ]; then
	. "$VHOST_MDEV_TOP/tests/vm/lib.sh"
	L2_TIMEOUT=${L2_TIMEOUT:-480}
	. "$VHOST_MDEV_TOP/tests/vm/nested-lib.sh"
	load_kernel_modules || { echo "FAIL: loading VFIO/mdev modules"; exit 1; }
	load_ours || { echo "FAIL: loading vhost_mdev modules"; exit 1; }
fi

MIG_WINDOW=16           # netloop's in-flight depth
MIG_HOLD=32             # frames of a hold
MIG_SECS=20             # seconds the guest's receive side stays stopped
MIG_STATE=/tmp/mig-l2.state
MIGCTL=$VHOST_MDEV_TOP/tests/vm/migctl.py
tmig=$(date +%s)

# mqmp SOCK COMMAND-JSON...: each reply on a line (JSON).
mqmp() { qmp "$@" 2>&1; }
# mig_info SOCK: "STATUS TOTAL-MS DOWNTIME-MS SYNCS" of query-migrate now.
mig_info() { python3 "$MIGCTL" wait "$1" '.*' 0; }
# mig_wait SOCK STATUS-RE SECONDS: until query-migrate's status matches
# (one QMP connection, polled every 100 ms); prints mig_info's line.
mig_wait() { python3 "$MIGCTL" wait "$@"; }

# mq_start TAG DEV [ENV=VAL...] -- [QEMU-ARGS...]: a QEMU on instance DEV in
# the background: console input /tmp/mig-TAG.in (fd given in mfd[TAG]),
# output /tmp/mig-TAG.log, QMP /tmp/mig-TAG.sock; sets mpid[TAG].
declare -A mpid mfd
mq_start() {
	local tag=$1 d=$2 envs=() fd
	shift 2
	while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
	[ "${1:-}" = -- ] && shift
	rm -f "/tmp/mig-$tag.sock" "/tmp/mig-$tag.in" "/tmp/mig-$tag.log"
	mkfifo "/tmp/mig-$tag.in"
	exec {fd}<>"/tmp/mig-$tag.in"
	mfd[$tag]=$fd
	env "${envs[@]}" timeout -k 5 "$L2_TIMEOUT" "$QEMU" "${MIGL2[@]}" \
		-netdev "vhost-vfio,id=n0,sysfsdev=$d$MIG_NETOPTS" \
		-qmp "unix:/tmp/mig-$tag.sock,server=on,wait=off" "$@" \
		<&"$fd" >"/tmp/mig-$tag.log" 2>&1 &
	mpid[$tag]=$!
	wait_sock "/tmp/mig-$tag.sock" "${mpid[$tag]}"
}
# mq_quit TAG: quits that QEMU (QMP, then a signal) and reaps it.
mq_quit() {
	local _
	# VM_OUT: each QEMU's console and messages come back to the host.
	if [ -n "${VM_OUT:-}" ] && mkdir -p /run/job/out; then
		cp "/tmp/mig-$1.log" "/run/job/out/mig-${beof[$1]:-x}-$1.log" 2>/dev/null
	fi
	if kill -0 "${mpid[$1]}" 2>/dev/null; then
		qmp "/tmp/mig-$1.sock" '{"execute": "quit"}' >/dev/null 2>&1
		for _ in $(seq 1 40); do kill -0 "${mpid[$1]}" 2>/dev/null || break; sleep 0.25; done
		kill "${mpid[$1]}" 2>/dev/null
	fi
	wait "${mpid[$1]}" 2>/dev/null
	[ -n "${mfd[$1]:-}" ] && eval "exec ${mfd[$1]}>&-"
	mfd[$1]=
}
# say TAG LINE: a line on that L2's console (netloop reads it).
say() { echo "$2" >&"${mfd[$1]}"; }
# counters TAG: "SENT INTACT CORRUPT DUP MISSING" of the last netloop stream
# report in that QEMU's console.
counters() {
	tr -d '\r' <"/tmp/mig-$1.log" | grep -a 'netloop: stream ' | tail -n1 |
		sed -n 's/.* sent \([0-9]*\) intact \([0-9]*\) corrupt \([0-9]*\) dup \([0-9]*\) missing \([0-9]*\).*/\1 \2 \3 \4 \5/p'
}
# fresh TAG SECONDS: asks for a report until one shows more intact frames
# than the last (traffic goes on there); prints the counters.
fresh() {
	local c0 c _
	c0=$(counters "$1")
	for _ in $(seq 1 "$2"); do
		say "$1" report
		sleep 1
		c=$(counters "$1")
		if [ -n "$c" ] && [ "$(echo "$c" | cut -d' ' -f2)" -gt "$(echo "${c0:-0 0} " | cut -d' ' -f2)" ]; then
			echo "$c"
			return 0
		fi
		kill -0 "${mpid[$1]}" 2>/dev/null || break
	done
	echo "$c"
	return 1
}
# check_step WHAT BEFORE AFTER [negative]: corrupt and dup unchanged, at
# most MIG_WINDOW more missing, more intact.
check_step() {
	local what=$1 s0 i0 c0 d0 m0 s1 i1 c1 d1 m1
	read -r s0 i0 c0 d0 m0 <<<"$2"
	read -r s1 i1 c1 d1 m1 <<<"$3"
	if [ -z "$i1" ] || [ -z "$i0" ]; then
		fail "$mig_be: $what: no traffic counters (before '$2', after '$3')"
	elif [ "$i1" -gt "$i0" ] && [ "$c1" = "$c0" ] && [ "$d1" = "$d0" ] &&
		[ $((m1 - m0)) -le $MIG_WINDOW ]; then
		pass "$mig_be: $what: the guest goes on (intact $i0 -> $i1), no frame corrupt or duplicated, $((m1 - m0)) missing (at most $MIG_WINDOW in flight)"
	else
		fail "$mig_be: $what: intact $i0 -> $i1, corrupt $c0 -> $c1, dup $d0 -> $d1, missing $m0 -> $m1 (at most $MIG_WINDOW more)"
		[ -n "${4:-}" ] && excerpt "/tmp/mig-$4.log" 15
	fi
}
# migrate FROM TO [hold]: migrates QEMU FROM to QEMU TO (started with
# -incoming unix:/tmp/mig-TO.mig); with hold, while the guest's receive
# side holds (see tests/vm/migctl.py). Sets minfo (the source's
# query-migrate at the end), hold_ok (for hold: the hold ended on the
# destination, not on the source).
migrate() {
	local from=$1 to=$2 hold=${3:-} st r off
	hold_ok=0
	if [ -n "$hold" ]; then
		# Only what the source's console says from now on counts (it may
		# have been the destination of an earlier hold).
		off=$(stat -c %s "/tmp/mig-$from.log")
		minfo=$(python3 "$MIGCTL" hold "/tmp/mig-$from.sock" "unix:/tmp/mig-$to.mig" \
			"/tmp/mig-$from.in" "/tmp/mig-$from.log" "${mdevof[$from]}/stats/rx_packets" \
			$MIG_HOLD $MIG_SECS 2>/tmp/mig-hold.err)
		r=$?
		info "$mig_be: hold: $(tr '\n' ' ' </tmp/mig-hold.err)"
		if [ $r = 0 ] && ! tail -c +$((off + 1)) "/tmp/mig-$from.log" | tr -d '\r' | grep -aq 'netloop: hold [0-9]*:'; then
			hold_ok=1
		fi
		return $r
	fi
	st=$(mqmp "/tmp/mig-$from.sock" "{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"unix:/tmp/mig-$to.mig\"}}")
	if echo "$st" | grep -q '"error"'; then
		minfo="refused: $(echo "$st" | cut -c1-200)"
		return 1
	fi
	minfo=$(mig_wait "/tmp/mig-$from.sock" completed 180)
}
# hold_result TAG: "N BAD SECS" of the hold's result line in that QEMU's
# console (waits for it: the hold's timer first).
hold_result() {
	local l _
	for _ in $(seq 1 $((MIG_SECS + 20))); do
		l=$(tr -d '\r' <"/tmp/mig-$1.log" | grep -a 'netloop: hold [0-9]*:' | tail -n1)
		[ -n "$l" ] && break
		sleep 1
	done
	echo "$l" | sed -n 's/.*hold \([0-9]*\): intact [0-9]* bad \([0-9]*\) after \([0-9.]*\) s.*/\1 \2 \3/p'
}

# The netdev options of a back end.
netopts() { [ "$1" = iommufd ] && echo ",iommufd=on" || echo ""; }
# qstart TAG DEV BACKEND [ENV=VAL...] -- [QEMU-ARGS...]: mq_start on that
# back end; remembers the tag's instance (mdevof) and back end (beof).
declare -A mdevof beof
qstart() {
	local tag=$1 d=$2 be=$3
	shift 3
	mdevof[$tag]=$d beof[$tag]=$be
	MIG_NETOPTS=$(netopts "$be") mq_start "$tag" "$d" "$@" && return 0
	fail "$be: QEMU $tag on instance ${d##*/} did not start"
	excerpt "/tmp/mig-$tag.log" 10
	mq_quit "$tag"
	return 1
}
# mig_abort: quits every QEMU still running (the guest is lost or its
# whereabouts unknown: later steps would only fail for that).
mig_abort() {
	local t
	for t in "${!mpid[@]}"; do
		[ -n "${mfd[$t]:-}" ] && mq_quit "$t"
	done
	return 0
}
# step FROM TO WHAT: a plain migration FROM -> TO (TO started with
# -incoming unix:/tmp/mig-TO.mig), then check_step on the destination.
# Fails when the migration did not complete.
step() {
	local from=$1 to=$2 what=$3 c0 c1
	mig_be=${beof[$to]}
	c0=$(fresh "$from" 10)
	migrate "$from" "$to" || { not_migrated "$from" "$to" "$what"; return 1; }
	c1=$(fresh "$to" 30)
	check_step "$what" "$c0" "$c1" "$to"
	return 0
}
# not_migrated FROM TO WHAT: reports a migration that did not complete.
not_migrated() {
	fail "$mig_be: $3: $minfo"
	excerpt "/tmp/mig-$1.log" 10; excerpt "/tmp/mig-$2.log" 10
}
# figures BE WHAT: the figures of the migration just completed (minfo).
figures() {
	local total down _
	read -r _ total down _ <<<"$minfo"
	info "$1: $2: total-time $total ms, downtime $down ms (query-migrate)"
	echo "MIGFIG: $1 total-time $total ms downtime $down ms"
}
# hold_step FROM TO WHAT [negative]: a migration with the hold (see the top);
# positive: the held frames arrive intact, traffic goes on; negative (a
# source with tracking off): some held frames must arrive stale. Fails
# when the migration did not complete.
hold_step() {
	local from=$1 to=$2 what=$3 neg=${4:-} c0 c1 n bad secs
	mig_be=${beof[$to]}
	c0=$(fresh "$from" 10)
	migrate "$from" "$to" hold || { not_migrated "$from" "$to" "$what"; return 1; }
	read -r n bad secs <<<"$(hold_result "$to")"
	if [ "$hold_ok" != 1 ]; then
		fail "$mig_be: $what: the hold ended before the switchover (the test's timing)"
	elif [ -n "$neg" ]; then
		if [ -n "$bad" ] && [ "$bad" -gt 0 ]; then
			pass "$mig_be: NEGATIVE CONTROL ($what): with the dirty tracking of the device's writes off, $bad of the $n frames the device wrote into already copied guest memory did not arrive intact (stale guest memory on the destination): the positive runs prove the tracking"
		else
			fail "$mig_be: NEGATIVE CONTROL did not fail ($what): with tracking off, ${bad:-?} of ${n:-?} held frames were bad (want > 0)"
			excerpt "/tmp/mig-$to.log" 15
		fi
		info "$mig_be: negative control, the checker on the destination: $(counters "$to")"
	elif [ -n "$n" ] && [ "$n" = $MIG_HOLD ] && [ "$bad" = 0 ]; then
		pass "$mig_be: $what while the guest's receive side held: the $n frames the device wrote into already copied guest memory arrived intact on the destination after $secs s (the device's writes were tracked)"
		c1=$(fresh "$to" 30)
		check_step "$what, after the hold" "$c0" "$c1" "$to"
	else
		fail "$mig_be: $what with a hold: '${n:-?}' held frames, '${bad:-?}' not intact: the device's writes were not all carried"
		excerpt "/tmp/mig-$to.log" 15
	fi
	return 0
}
# negative_step FROM TO: the negative control, hold_step FROM TO negative,
# from a source that must run with the test knob (its TEST ONLY warning);
# without it, a plain migration, so that the guest goes on.
negative_step() {
	if grep -aq 'TEST ONLY' "/tmp/mig-$1.log"; then
		hold_step "$1" "$2" "migration B -> A" negative
	else
		fail "${beof[$1]}: the knob QEMU_VHOST_VFIO_TEST_NO_DIRTY_LOG was not taken (no TEST ONLY warning)"
		step "$1" "$2" "migration B -> A"
	fi
}

# mig_run: the steps above, one L2 guest for both back ends.
mig_run() {
	local c0 c1 r st st2 run n bad secs tb d _
	local knob=QEMU_VHOST_VFIO_TEST_NO_DIRTY_LOG=1
	tb=$(date +%s)
	rm -f /tmp/mig-*.mig "$MIG_STATE"
	mig_be=type1
	qstart a1 "$mdA" type1 -- || return
	# Until the stream runs (the L2 boot).
	for _ in $(seq 1 "$L2_TIMEOUT"); do
		tr -d '\r' <"/tmp/mig-a1.log" | grep -aq 'netloop: stream running' && break
		kill -0 "${mpid[a1]}" 2>/dev/null || break
		sleep 1
	done
	if ! c0=$(fresh a1 20); then
		fail "the L2 guest's stream did not start ($(( $(date +%s) - tb )) s)"
		excerpt /tmp/mig-a1.log 20
		mq_quit a1
		return
	fi
	info "L2 up on type1, stream running after $(( $(date +%s) - tb )) s: $c0"
	# The hold alone (no migration, 5 s): the frames come back intact, and
	# only when the hold's timer fires (the receive side really stopped).
	say a1 "hold $MIG_HOLD 5"
	say a1 go
	read -r n bad secs <<<"$(hold_result a1)"
	if [ "${n:-}" = $MIG_HOLD ] && [ "$bad" = 0 ] && [ "${secs%.*}" -ge 3 ]; then
		pass "type1: a hold without migration: the guest's receive side stopped, the $n frames came back intact after $secs s (the 5 s timer)"
	else
		fail "type1: a hold without migration: '${n:-?}' frames, '${bad:-?}' not intact, back after '${secs:-?}' s (want $MIG_HOLD, 0, 3 to 5)"
		excerpt /tmp/mig-a1.log 20
	fi

	# type1 1. A -> B, QEMU's defaults: the figures.
	qstart b2 "$mdB" type1 -- -incoming unix:/tmp/mig-b2.mig || { mig_abort; return; }
	step a1 b2 "migration A -> B (unix socket)" || { mig_abort; return; }
	figures type1 "migration A -> B"
	# QEMU asks the guest to announce itself after the switchover
	# (VIRTIO_NET_S_ANNOUNCE); the guest acknowledges on the control
	# queue, QEMU's: the bit must reach the guest through a config that
	# otherwise comes from the device.
	n=$(grep -ac '^virtio_net_handle_announce' /tmp/mig-b2.log)
	if [ "$n" -gt 0 ]; then
		pass "type1: the guest announced itself on the destination ($n announcements acknowledged on the control queue)"
	else
		fail "type1: the guest did not acknowledge QEMU's announcement on the destination (no virtio_net_handle_announce trace)"
	fi
	mq_quit a1
	# type1 2. B -> A with the hold: the tracked device writes.
	qstart a3 "$mdA" type1 -- -incoming unix:/tmp/mig-a3.mig || { mig_abort; return; }
	hold_step b2 a3 "migration B -> A (instance A reused)" || { mig_abort; return; }
	mq_quit b2
	# type1 3. A -> B cancelled: the source goes on.
	qstart b4 "$mdB" type1 -- -incoming unix:/tmp/mig-b4.mig || { mig_abort; return; }
	mig_be=type1
	c0=$(fresh a3 10)
	mqmp /tmp/mig-a3.sock '{"execute": "migrate-set-parameters", "arguments": {"max-bandwidth": 4194304}}' >/dev/null
	r=$(mqmp /tmp/mig-a3.sock '{"execute": "migrate", "arguments": {"uri": "unix:/tmp/mig-b4.mig"}}')
	sleep 2
	st=$(mig_info /tmp/mig-a3.sock)
	mqmp /tmp/mig-a3.sock '{"execute": "migrate_cancel"}' >/dev/null
	st2=$(mig_wait /tmp/mig-a3.sock cancelled 30)
	run=$(mqmp /tmp/mig-a3.sock '{"execute": "query-status"}')
	mqmp /tmp/mig-a3.sock '{"execute": "migrate-set-parameters", "arguments": {"max-bandwidth": 134217728}}' >/dev/null
	for _ in $(seq 1 40); do kill -0 "${mpid[b4]}" 2>/dev/null || break; sleep 0.25; done
	c1=$(fresh a3 30)
	if echo "$st" | grep -q '^active' && echo "$st2" | grep -q '^cancelled' &&
		echo "$run" | grep -q '"status": "running"' && ! kill -0 "${mpid[b4]}" 2>/dev/null; then
		pass "type1: migrate_cancel while active: the source runs on, the destination QEMU quit"
		check_step "after the cancelled migration (on the source)" "$c0" "$c1" a3
	else
		fail "type1: cancelled migration: status '$st' then '$st2', source $(echo "$run" | cut -c1-100), destination $(kill -0 "${mpid[b4]}" 2>/dev/null && echo running || echo gone) ($r)"
	fi
	mq_quit b4
	# type1 4. A -> a file, then B from it, with the test knob (the
	# source of the negative control).
	c0=$(fresh a3 10)
	r=$(mqmp /tmp/mig-a3.sock "{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"exec:cat >$MIG_STATE\"}}")
	minfo=$(mig_wait /tmp/mig-a3.sock completed 120)
	mq_quit a3
	if [ ! -s "$MIG_STATE" ] || ! echo "$minfo" | grep -q '^completed'; then
		fail "type1: migration to a file: $minfo $(echo "$r" | cut -c1-100)"
	fi
	qstart b5 "$mdB" type1 "$knob" -- -incoming "exec:cat $MIG_STATE" || { mig_abort; return; }
	mig_wait /tmp/mig-b5.sock completed 120 >/dev/null
	c1=$(fresh b5 40)
	if [ -n "$c1" ]; then
		check_step "migration to a file ($(stat -c %s "$MIG_STATE") bytes) and -incoming from it" "$c0" "$c1" b5
	else
		fail "type1: -incoming from the file: no traffic"
		excerpt /tmp/mig-b5.log 10
	fi
	rm -f "$MIG_STATE"
	# type1 5. The negative control: B (tracking off) -> A with the hold.
	qstart a6 "$mdA" type1 -- -incoming unix:/tmp/mig-a6.mig || { mig_abort; return; }
	negative_step b5 a6 || { mig_abort; return; }
	mq_quit b5
	info "type1: migration steps: $(( $(date +%s) - tb )) s"

	# To iommufd: the same guest moves on (a type1 QEMU to an iommufd
	# one: the back end is the host's business, not the guest's).
	tb=$(date +%s)
	if [ ! -c /dev/iommu ]; then
		fail "migration: no /dev/iommu: the iommufd back end cannot be tested"
		mq_quit a6
		return
	fi
	qstart b7 "$mdB" iommufd -- -incoming unix:/tmp/mig-b7.mig || { mig_abort; return; }
	step a6 b7 "migration A (type1) -> B (iommufd)" || { mig_abort; return; }
	mq_quit a6
	# iommufd 1. B -> A: the figures.
	qstart a8 "$mdA" iommufd -- -incoming unix:/tmp/mig-a8.mig || { mig_abort; return; }
	step b7 a8 "migration B -> A (unix socket)" || { mig_abort; return; }
	figures iommufd "migration B -> A"
	mq_quit b7
	# iommufd 2. A -> B with the hold, to a QEMU with the test knob (the
	# knob acts only on a source: the next step's).
	qstart b9 "$mdB" iommufd "$knob" -- -incoming unix:/tmp/mig-b9.mig || { mig_abort; return; }
	hold_step a8 b9 "migration A -> B" || { mig_abort; return; }
	mq_quit a8
	# iommufd 5. The negative control: B (tracking off) -> A with the hold.
	qstart a10 "$mdA" iommufd -- -incoming unix:/tmp/mig-a10.mig || { mig_abort; return; }
	negative_step b9 a10 || { mig_abort; return; }
	mq_quit b9
	say a10 quit
	sleep 3
	mq_quit a10
	# iommufd's type1 compatibility container refuses VFIO's dirty
	# tracking, which QEMU 7.2 starts and syncs for every container during
	# a migration: patch 0013 skips such a container (the core's vhost
	# log serves it), so none of the iommufd QEMUs may have complained.
	r=$(cat /tmp/mig-b7.log /tmp/mig-a8.log /tmp/mig-b9.log /tmp/mig-a10.log |
		tr -d '\r' | grep -a 'Failed to set dirty tracking\|Failed to get dirty bitmap')
	if [ -z "$r" ]; then
		pass "iommufd: no VFIO dirty-tracking errors in the migrations' QEMUs (the compatibility container is left alone)"
	else
		fail "iommufd: QEMU tried VFIO dirty tracking on the iommufd container: $(echo "$r" | sort | uniq -c | head -n 3 | tr '\n' ' ')"
	fi
	for d in "$mdA" "$mdB"; do
		if ! vhost-mdev ping "${d##*/}" -n 20 >/dev/null 2>&1; then
			fail "instance ${d##*/} not reusable after the migrations"
		fi
	done
	info "iommufd: migration steps: $(( $(date +%s) - tb )) s"
}

# Instances A and B; B gets A's MAC (set while closed) for the guest.
uA=$(vhost-mdev create --parent vhost_mdev_net --type "$TYPE") || fail "create instance A"
uB=$(vhost-mdev create --parent vhost_mdev_net --type "$TYPE") || fail "create instance B"
mdA=/sys/bus/mdev/devices/$uA mdB=/sys/bus/mdev/devices/$uB
macA=$(tr 'A-F' 'a-f' <"$mdA/mac")
echo "$macA" >"$mdB/mac" || fail "setting instance B's MAC to $macA"
ffA=$(vhost-mdev probe "$uA" | sed -n 's/^features: *//p')
info "migration: instances A $uA, B $uB, MAC $macA, features $ffA"
MIGL2=(-accel tcg -m 256M -smp 1 -nographic -no-reboot -nodefaults -serial stdio
	-kernel "$L2_KERNEL" -initrd "$L2_INITRD" -trace virtio_net_handle_announce
	-device "virtio-net-pci,netdev=n0,romfile=,mac=$macA"
	-append "console=ttyS0 panic=-1 tsc=reliable loglevel=4 l2.mac=$macA l2.frames=100 l2.stream=1")
if [ -n "${DEVHACK_ASSUME_LOG:-}" ] || { [ -n "$ffA" ] && (( (ffA >> 26) & 1 )); }; then
	mig_run
else
	# The kernel's device does not say that it logs its writes: QEMU
	# keeps the blocker and says why.
	mq_start a1 "$mdA" -- -S
	r=$(mqmp /tmp/mig-a1.sock '{"execute": "migrate", "arguments": {"uri": "exec:cat >/dev/null"}}')
	mq_quit a1
	fail "migration: instance A offers no VHOST_F_LOG_ALL (features $ffA): migrate says $(echo "$r" | cut -c1-200)"
fi
vhost-mdev remove "$uA" >/dev/null || fail "remove instance A"
vhost-mdev remove "$uB" >/dev/null || fail "remove instance B"
info "live migration tests: $(( $(date +%s) - tmig )) s"
if [ -z "${NESTED_MIG_SOURCED:-}" ]; then
	unload_ours || fail "unloading the modules"
	if [ $fails = 0 ]; then
		pass "nested-mig: all checks passed"
	else
		fail "nested-mig: $fails check(s) failed"
		exit 1
	fi
fi
