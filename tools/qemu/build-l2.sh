#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Builds the nested test's L2 guest: usage() says what it does
# and how to run it (--help prints it).
set -euo pipefail
usage() {
	cat <<'EOT'
Build the L2 guest of the nested test: a small gcc-built kernel
(tinyconfig + kvm_guest.config + l2/l2.config; no Rust, no modules) from
the project's Linux source, and a busybox initramfs with l2/init, the
static l2/netloop.c and, for make bench's end-to-end part, l2/netbench.c
and l2/bench.sh.

  tools/qemu/build-l2.sh [--print]   prints "KERNEL INITRD" as its last line

--print only prints the paths of an already built pair (fails otherwise).

Cached under $CACHE/kbuild/l2-<hash> (hash of the fragment and KRECIPE);
the initramfs is rebuilt when init, netloop.c, netbench.c or bench.sh change.
EOT
}
case ${1:-} in -h|--help) usage; exit 0 ;; esac
here=$(cd "$(dirname "$0")" && pwd)
CACHE=${VHOST_MDEV_CACHE:-$HOME/.cache/vhost-mdev}
KSRC=${KSRC:-$CACHE/linux-6.12}
JOBS=${JOBS:-2}
mode=${1:-}
log() { echo "==> $*" >&2; }
die() { echo "error: $*" >&2; exit 1; }

# Bump KRECIPE when the kernel build steps below change.
KRECIPE=1
khash=$( (cat "$here/l2/l2.config"; echo "recipe $KRECIPE") | sha256sum | cut -c1-12)
kout=$CACHE/kbuild/l2-$khash
kimg=$kout/arch/x86/boot/bzImage
ihash=$(cat "$here/l2/init" "$here/l2/netloop.c" "$here/l2/netbench.c" "$here/l2/bench.sh" |
	sha256sum | cut -c1-12)
initrd=$CACHE/l2-initrd-$ihash.cpio.gz
if [ "$mode" = --print ]; then
	[ -f "$kout/.built" ] && [ -f "$initrd" ] || die "the L2 guest is not built: run tools/qemu/build-l2.sh"
	echo "$kimg $initrd"; exit 0
fi
[ -f "$KSRC/Makefile" ] || die "no Linux source at $KSRC (scripts/build-kernel fetches it)"
command -v busybox >/dev/null || die "busybox (busybox-static) is needed"
file -L "$(command -v busybox)" 2>/dev/null | grep -q 'statically linked' ||
	[ -x /bin/busybox ] || die "a static busybox is needed (apt-get install busybox-static)"

if [ ! -f "$kout/.built" ]; then
	t0=$(date +%s)
	log "building the L2 kernel in $kout"
	mkdir -p "$kout"
	mk() { make -C "$KSRC" O="$kout" CC=gcc LLVM= -j"$JOBS" "$@" >&2; }
	mk tinyconfig
	KCONFIG_CONFIG=$kout/.config "$KSRC/scripts/kconfig/merge_config.sh" -m -O "$kout" \
		"$kout/.config" "$KSRC/kernel/configs/kvm_guest.config" "$here/l2/l2.config" >&2
	mk olddefconfig
	for o in VIRTIO_NET VIRTIO_BALLOON VIRTIO_PCI PACKET DEVTMPFS BLK_DEV_INITRD RD_GZIP SERIAL_8250_CONSOLE BINFMT_SCRIPT SMP XPS; do
		grep -q "^CONFIG_$o=y" "$kout/.config" || die "CONFIG_$o did not survive olddefconfig"
	done
	mk bzImage
	touch "$kout/.built"
	log "L2 kernel built in $(( $(date +%s) - t0 )) s"
fi

if [ ! -f "$initrd" ]; then
	log "building the L2 initramfs $initrd"
	root=$(mktemp -d "$CACHE/l2-root.XXXXXX")
	trap 'rm -rf "$root"' EXIT
	mkdir -p "$root"/{bin,dev,proc,sys,tmp}
	cp "$(command -v busybox)" "$root/bin/busybox"
	gcc -static -O2 -Wall -o "$root/bin/netloop" "$here/l2/netloop.c"
	strip "$root/bin/netloop"
	gcc -static -O2 -Wall -o "$root/bin/netbench" "$here/l2/netbench.c"
	strip "$root/bin/netbench"
	cp "$here/l2/bench.sh" "$root/bench.sh"
	cp "$here/l2/init" "$root/init"
	chmod 755 "$root/init"
	(cd "$root" && find . | cpio -o -H newc --quiet -R 0:0 | gzip -9) >"$initrd.tmp"
	mv "$initrd.tmp" "$initrd"
fi
echo "$kimg $initrd"
