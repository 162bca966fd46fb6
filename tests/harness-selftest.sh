#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# The VM harness's log scanner must fail a run whose guest kernel WARNs,
# and --expect-dirty must accept that same log (checked without a second
# boot: scripts/vm --check-log).
here=$(cd "$(dirname "$0")" && pwd)
log=$(mktemp "${TMPDIR:-/tmp}/harness-selftest.XXXXXX.log")
trap 'rm -f "$log"' EXIT
out=$("$here/../scripts/vm" --timeout 300 --log "$log" "$here/vm/warn.sh" 2>&1)
if [ $? = 0 ]; then
	echo "FAIL: harness-selftest: a guest that WARNed passed the log check"
	echo "$out" | tail -n 5
	exit 1
fi
if ! echo "$out" | grep -q 'WARNING:'; then
	echo "FAIL: harness-selftest: the run failed, but not on the WARNING"
	echo "$out" | tail -n 5
	exit 1
fi
echo "PASS: harness-selftest: a guest WARN fails the run"
out=$("$here/../scripts/vm" --expect-dirty --check-log "$log" 2>&1) &&
	echo "PASS: harness-selftest: --expect-dirty accepts the WARN" ||
	{ echo "FAIL: harness-selftest: --expect-dirty rejected a dirty log"; echo "$out" | tail -n 5; }
out=$("$here/../scripts/vm" --check-log "$log" 2>&1) &&
	{ echo "FAIL: harness-selftest: --check-log passed the dirty log"; echo "$out" | tail -n 5; } ||
	echo "PASS: harness-selftest: --check-log fails the same log"
