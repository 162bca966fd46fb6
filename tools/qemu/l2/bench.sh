#!/bin/busybox sh
# SPDX-License-Identifier: GPL-2.0
# The L2 guest's end-to-end benchmark (make bench, part "e2e";
# tests/vm/bench-e2e.sh boots L2 with l2.bench=SECONDS:REPS and init runs
# this instead of its checks, eth0 up): REPS times, netbench (netbench.c)
# streams and ping-pongs 64 and 1500-byte frames for SECONDS each.
# Prints "L2: BENCH rep R {json}" per run; exits 1 if a run failed.
secs=${1%%:*} reps=${1#*:}
case $secs$reps in *[!0-9]*|'') echo "L2: FAIL: l2.bench=$1 (SECONDS:REPS)"; exit 1 ;; esac
rc=0
for rep in $(seq "$reps"); do
	for size in 64 1500; do
		for mode in stream pingpong; do
			out=$(/bin/netbench eth0 $mode $size "$secs" 2>&1) || {
				echo "L2: FAIL: netbench $mode $size (rep $rep): $out"; rc=1; }
			echo "$out" | sed -n "s/^netbench /L2: BENCH rep $rep /p"
		done
	done
done
exit $rc
