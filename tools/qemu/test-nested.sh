#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The nested QEMU test, run from the host: usage() says what it does
# and how to run it (--help prints it).
set -euo pipefail
usage() {
	cat <<'EOT'
The nested QEMU test from the host: builds (or finds cached) the patched
QEMU and the L2 guest, then runs tests/vm/nested.sh in the test VM.

  tools/qemu/test-nested.sh [scripts/vm options, e.g. --flavour release]
EOT
}
case ${1:-} in -h|--help) usage; exit 0 ;; esac
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
t0=$(date +%s)
qemu=$("$here/build-qemu.sh" | tail -n1)
l2=$("$here/build-l2.sh" | tail -n1)
echo "==> patched QEMU: $qemu"
echo "==> L2 guest: $l2"
echo "==> builds ready in $(( $(date +%s) - t0 )) s"
exec "$top/scripts/vm" --timeout 900 "$@" "$top/tests/vm/nested.sh"
