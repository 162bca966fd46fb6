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
kernel_rs=$(git ls-files 'vhost_mdev/*.rs' 'rust/*.rs' 'samples/*.rs' 'tools/vhost-mdev-proto/src/*.rs')
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
