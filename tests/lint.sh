#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Style and hygiene: rustfmt (the kernel's settings for the module code),
# clippy on the userspace crates, a SAFETY comment on every unsafe block and
# no panicking calls in the kernel modules.
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
export PATH="$HOME/.cargo/bin:$PATH"

t() {
	local name=$1; shift
	local out
	if out=$("$@" 2>&1); then echo "PASS: $name"; else echo "FAIL: $name: $(echo "$out" | head -n 8 | tr '\n' ' ')"; fi
}

# The vhost-mdev-proto crate's sources are compiled into the modules too.
kernel_rs=$(git ls-files 'vhost_mdev/*.rs' 'rust/*.rs' 'samples/*.rs' 'vdpa_bridge/*.rs' 'tools/vhost-mdev-proto/src/*.rs')
t "rustfmt (kernel settings) on the module code" rustfmt --edition 2021 --config-path .rustfmt.toml --check $kernel_rs
t "cargo fmt on the userspace crates" cargo fmt --all --check
t "cargo clippy -D warnings on the userspace crates" cargo clippy -q --release --workspace --all-targets -- -D warnings
t "every unsafe block in the module code has a SAFETY comment" sh -c '
	out=$(for f in '"$(echo $kernel_rs)"'; do
		awk -v f="$f" "BEGIN {seen=-100} /SAFETY:/ {seen=NR} /unsafe[[:space:]]*\\{/ && !/unsafe fn/ { if (NR-seen>3) print f\":\"NR }" "$f"
	done); [ -z "$out" ] || { echo "$out"; exit 1; }'
t "no unwrap/expect/panic in the module code" sh -c '
	! grep -nE "\.unwrap\(\)|\.expect\(|panic!\(|unreachable!\(" '"$(echo $kernel_rs)"
t "every unsafe fn in the module code has a # Safety section" sh -c '
	out=$(for f in '"$(echo $kernel_rs)"'; do
		awk -v f="$f" "BEGIN {s=-100} /# Safety/ {s=NR} /unsafe (extern \"C\" )?fn / { if (NR-s>12) print f\":\"NR }" "$f"
	done); [ -z "$out" ] || { echo "$out"; exit 1; }'

# rust/ is the only place that names the C bindings (bindgen's `bindings`
# module, or the kernel crate's): the rest of the module code goes through
# its abstractions. An exception is a file, the extended regex its uses
# must match, and why (" :: " between them); its `use crate::bindings;`
# line comes with it.
bindings_exceptions='
vhost_mdev/abi.rs :: bindings:: :: the core side of the C ABI of include/linux/vhost_mdev.h: the exported functions, whose signatures are the C types of the header
vhost_mdev/backend.rs :: bindings::(vhost_mdev_(device_ops|mem_region|vq_notify_area)|VHOST_MDEV_MAX_MEM_REGIONS)\b :: the calls of a parent ops table of the C ABI, the memory table set_mem_table passes (and its limit), the doorbell get_vq_notification fills
vhost_mdev/parent.rs :: bindings::(vhost_mdev_(parent_info|device_ops|type_info)|VHOST_MDEV_ABI_VERSION)\b :: the parent info, ops table, type table and ABI version of the C ABI, checked at registration
vhost_mdev/driver.rs :: bindings::(vhost_mdev_parent_info|device)\b :: the C ABI parent info, and the device a parent registers on, that abi.rs hands to the registration
vhost_mdev/types.rs :: bindings::vhost_mdev_type_info\b :: the C ABI type table entry that parent.rs builds a type from
vhost_mdev/instance.rs :: bindings::(vhost_mdev_device|mm_struct)\b :: the C ABI handle of an instance, and the opener mm that abi.rs adopts (vhost_mdev_dma_begin)
vhost_mdev/lifecycle.rs :: bindings::device\b :: of_dev(): the struct device that abi.rs passes (vhost_mdev_priv_from_dev), and the one sysfs passes to the attributes of the core (sysfs::Owner::from_device)
samples/vhost_mdev_copy_ceiling/vhost_mdev_copy_ceiling_main.rs :: bindings :: a benchmark aid, not a parent: it times the C copy routines of the data paths (copy_from_user, copy_to_user, memcpy) behind a debugfs file, and is built on no rust/ abstraction
'
bindings_outside_rust() {
	local f pat bad=0 line
	for f in $(git ls-files 'vhost_mdev/*.rs' 'samples/*.rs' 'vdpa_bridge/*.rs' 'tools/vhost-mdev-proto/src/*.rs'); do
		pat=$(printf '%s\n' "$bindings_exceptions" | awk -F' :: ' -v f="$f" '$1 == f { print $2 }')
		while IFS= read -r line; do
			# The crate roots mount rust/bindings.rs.
			case $line in *'#[path = "'*'rust/bindings.rs"]'|*'pub mod bindings;') continue ;; esac
			# Comments may name the word (virtio-bindings).
			printf '%s\n' "${line#*:}" | grep -qE '^[[:space:]]*//' && continue
			if [ -n "$pat" ]; then
				case $line in *'use crate::bindings;') continue ;; esac
				printf '%s\n' "$line" | grep -qE -- "$pat" && continue
			fi
			echo "$f: $line"; bad=1
		done < <(grep -nwE 'bindings' "$f")
	done
	return $bad
}
t "only rust/ names the C bindings (exceptions listed in tests/lint.sh)" bindings_outside_rust

# No function of the modules has a stack frame larger than the kernel's
# CONFIG_FRAME_WARN for 64-bit builds (2048 bytes): rustc has no
# -Wframe-larger-than, and a few multi-KiB frames in one call chain
# overflow a 16 KiB stack (the debug kernel's KASAN doubles the stack,
# which hid an overflow that only the release kernel hit). Read from the
# built modules: the test runs after `scripts/build-modules`.
FRAME_MAX=2048
large_frames() {
	local kos ko
	kos=$(ls ./*.ko tests/kmod/*.ko 2>/dev/null)
	[ -n "$kos" ] || { echo "no built modules: run scripts/build-modules first"; return 1; }
	for ko in $kos; do
		objdump -d --no-show-raw-insn "$ko" | perl -ne '
			if (/^[0-9a-f]+ <(.*)>:$/) { $f = $1 }
			if (/sub\s+\$0x([0-9a-f]+),%rsp/ && hex($1) > '"$FRAME_MAX"') {
				printf "%s: %d-byte frame in %s\n", "'"$ko"'", hex($1), $f; $bad = 1 }
			END { exit $bad }' || return 1
	done
}
t "no stack frame over $FRAME_MAX bytes in the built modules" large_frames
