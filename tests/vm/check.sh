# SPDX-License-Identifier: GPL-2.0
# The debug-kernel VM suites of `make check` in one boot: a boot and the
# kmemleak scans after the job cost about a minute each under TCG. Each
# section runs in a shell of its own, between "vm: section NAME" and
# "vm: section NAME ended (N s)" lines, which scripts/run counts as the
# suites of those names. VM_SECTIONS picks sections (default: all, in this
# order; each leaves the modules unloaded or loads what it needs).
. "$VHOST_MDEV_TOP/tests/vm/lib.sh"
# What the harness's log scanner fails a run on (scripts/vm, the same file): checked here
# after each section as well, so that a report is charged to its section.
reports=$(cat "$TOP/scripts/kernel-reports.ere")
for s in ${VM_SECTIONS:-vm-full vm-hardening nested}; do
	echo "vm: section $s"
	t0=$(date +%s)
	dmesg -C
	case $s in
	vm-full)
		# The README's main job (make demo) first: CI guards it too.
		bash "$TOP/tests/vm/demo.sh" ||
			echo "FAIL: the main job (tests/vm/demo.sh) exited with status $?"
		SUITE=full bash "$TOP/tests/vm/suite.sh" ;;
	vm-hardening) bash "$TOP/tests/vm/hardening.sh" ;;
	nested) bash "$TOP/tests/vm/nested.sh" ;;
	*) echo "FAIL: VM_SECTIONS: no section '$s' (vm-full, vm-hardening, nested)" ;;
	esac
	r=$(dmesg | grep -E "$reports" | head -n 5)
	[ -z "$r" ] || echo "FAIL: $s: kernel reports during the section: $(echo "$r" | tr '\n' ' ')"
	echo "vm: section $s ended ($(( $(date +%s) - t0 )) s)"
done
