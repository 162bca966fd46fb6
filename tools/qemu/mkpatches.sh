#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Maintainer tool: regenerates tools/qemu/patches/ from a QEMU work tree
# (a git repository whose first commit is the pristine Debian source, with
# the vhost-vfio changes on top, committed or not).
#
#   tools/qemu/mkpatches.sh [WORKTREE]   (default $CACHE/qemu-work)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
CACHE=${VHOST_MDEV_CACHE:-$HOME/.cache/vhost-mdev}
wt=${1:-$CACHE/qemu-work}
base=$(git -C "$wt" rev-list --max-parents=0 HEAD)
out=$here/patches
mkdir -p "$out"
rm -f "$out"/*.patch
mk() {  # NAME SUBJECT FILES...
	local name=$1 subject=$2; shift 2
	{
		echo "Subject: $subject"
		echo
		cat "$here/patches/descriptions/$name.txt" 2>/dev/null || true
		echo "---"
		git -C "$wt" diff --stat "$base" -- "$@" | sed 's/^/ /'
		echo
		git -C "$wt" diff --no-color --src-prefix=a/ --dst-prefix=b/ "$base" -- "$@"
	} >"$out/$name.patch"
	echo "$name.patch" >>"$out/series.new"
}
: >"$out/series.new"
mk 0001-net-add-the-vhost-vfio-netdev-type \
	"qapi, net: add the vhost-vfio netdev type and vhost backend type" \
	qapi/net.json net/clients.h net/net.c include/hw/virtio/vhost-backend.h \
	include/hw/virtio/vhost.h hw/virtio/vhost.c
mk 0002-vhost-vfio-vhost-backend-over-vfio-mdev \
	"vhost-vfio: a vhost backend on a VFIO mediated device (vhost-mdev)" \
	include/hw/virtio/vhost-vfio.h hw/virtio/vhost-vfio.c hw/virtio/meson.build
mk 0003-net-vhost-vfio-net-client \
	"net/vhost-vfio: the -netdev vhost-vfio net client" \
	include/net/vhost-vfio.h net/vhost-vfio.c net/vhost-vfio-stub.c net/meson.build \
	hw/net/vhost_net.c
mk 0004-virtio-net-mac-mtu-from-vhost-vfio \
	"virtio-net: take config, MAC and MTU from a vhost-vfio backend" \
	hw/net/virtio-net.c
mv "$out/series.new" "$out/series"
# Everything changed must be in some patch.
all=$(git -C "$wt" diff --name-only "$base" | sort)
inc=$(cat "$out"/*.patch | sed -n 's|^+++ b/||p' | sort -u)
[ "$all" = "$inc" ] || { echo "error: changed files missing from the series:"; comm -23 <(echo "$all") <(echo "$inc"); exit 1; }
echo "wrote $(wc -l <"$out/series") patches to $out"
