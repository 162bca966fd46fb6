#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Builds QEMU 7.2 with the vhost-vfio patch series: usage() says what it does
# and how to run it (--help prints it).
set -euo pipefail
usage() {
	cat <<'EOT'
Build Debian 12's QEMU 7.2 with the vhost-vfio patch series applied.

  tools/qemu/build-qemu.sh [--deps-only|--fetch-only|--print]

--print only prints the path of an already built binary (fails when it
is not built); it needs no network and no root (used inside the test VM).

- adds a deb-src entry for bookworm (idempotent) and installs build deps;
- fetches the source once into $CACHE/qemu-src (kept; pinned version
  QEMU_VERSION, falling back loudly to the current one when it is gone);
- copies it to $CACHE/qemu-<hash>/src, commits it there as a git tree's
  first commit and applies tools/qemu/patches/series with `git am`,
  configures and builds x86_64-softmmu into $CACHE/qemu-<hash>/build (and
  m68k-softmmu, virtio without VFIO: the series' build guard), where
  <hash> covers the series and every patch: rebuilt only when they change;
- prints the path of qemu-system-x86_64 as its last line.
EOT
}
case ${1:-} in -h|--help) usage; exit 0 ;; esac
here=$(cd "$(dirname "$0")" && pwd)
CACHE=${VHOST_MDEV_CACHE:-$HOME/.cache/vhost-mdev}
QEMU_VERSION=${QEMU_VERSION:-1:7.2+dfsg-7+deb12u18}
JOBS=${JOBS:-2}
mode=${1:-}
log() { echo "==> $*" >&2; }
die() { echo "error: $*" >&2; exit 1; }
mkdir -p "$CACHE"

hash=$(cd "$here/patches" && cat series $(grep -v '^#' series) | sha256sum | cut -c1-12)
out=$CACHE/qemu-$hash
bin=$out/build/qemu-system-x86_64
# QEMU 7.2 run from its build tree looks for data and firmware in
# build/qemu-bundle/<configured paths>: point those at Debian's firmware
# (seabios, ipxe, qemu-system-data), which the dfsg source does not ship.
link_firmware() {
	local b=$1/build/qemu-bundle d
	for d in /usr/share/qemu /usr/share/seabios /usr/lib/ipxe/qemu; do
		[ -d "$d" ] || { echo "warning: no $d: install Debian's qemu-system-x86 (or seabios, ipxe-qemu, qemu-system-data)" >&2; continue; }
		mkdir -p "$b$d"
		cp -rsn "$d/." "$b$d/" 2>/dev/null || true
	done
}
if [ "$mode" = --print ]; then
	[ -x "$bin" ] && [ -f "$out/.built" ] || die "no patched QEMU built for this series ($out): run tools/qemu/build-qemu.sh"
	echo "$bin"; exit 0
fi

SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo

# 1. deb-src entry (idempotent).
src_list=/etc/apt/sources.list.d/vhost-mdev-src.sources
want='Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg'
need_update=0
if [ ! -f "$src_list" ] || [ "$(cat "$src_list")" != "$want" ]; then
	log "adding $src_list"
	printf '%s\n' "$want" | $SUDO tee "$src_list" >/dev/null
	need_update=1
fi

# 2. Build dependencies.
deps=(build-essential git pkg-config dpkg-dev libfdt-dev libglib2.0-dev
      libpixman-1-dev zlib1g-dev ninja-build meson python3-venv python3-setuptools
      flex bison)
missing=()
for p in "${deps[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ] || [ $need_update = 1 ]; then
	log "apt-get update"
	$SUDO apt-get update -q >&2
fi
if [ ${#missing[@]} -gt 0 ]; then
	log "installing build deps: ${missing[*]}"
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends "${missing[@]}" >&2
fi
[ "$mode" = --deps-only ] && exit 0

# 3. Source, fetched once and kept.
srcroot=$CACHE/qemu-src
mkdir -p "$srcroot"
pristine=$(find "$srcroot" -maxdepth 1 -type d -name 'qemu-7.2*' | sort | tail -n1)
if [ -z "$pristine" ] || [ ! -f "$pristine/configure" ]; then
	log "fetching qemu=$QEMU_VERSION source into $srcroot"
	if ! (cd "$srcroot" && apt-get source -q "qemu=$QEMU_VERSION" >&2); then
		echo "######################################################################" >&2
		echo "WARNING: qemu=$QEMU_VERSION is no longer in the archive;" >&2
		echo "WARNING: falling back to the CURRENT bookworm qemu source." >&2
		echo "WARNING: the patch series was made against $QEMU_VERSION." >&2
		echo "######################################################################" >&2
		(cd "$srcroot" && apt-get source -q qemu >&2) || die "apt-get source qemu failed"
	fi
	pristine=$(find "$srcroot" -maxdepth 1 -type d -name 'qemu-7.2*' | sort | tail -n1)
	[ -f "$pristine/configure" ] || die "no QEMU source tree under $srcroot"
fi
[ "$mode" = --fetch-only ] && { echo "$pristine"; exit 0; }

# 4. Patched copy and build, keyed by the series' hash.
if [ -x "$bin" ] && [ -f "$out/.built" ]; then
	link_firmware "$out"
	log "up to date: $out"
	echo "$bin"; exit 0
fi
t0=$(date +%s)
rm -rf "$out"; mkdir -p "$out"
log "copying $(basename "$pristine") to $out/src"
cp -a "$pristine" "$out/src"
# The series is mbox patches (tools/qemu/mkpatches.sh): the copy becomes a
# git tree whose first commit is the pristine source, and `git am` applies
# them in order on that clean tree (one commit per patch, as they were made).
G=(git -C "$out/src" -c user.name="vhost-mdev build" -c user.email=build@vhost-mdev.invalid
   -c commit.gpgsign=false -c core.autocrlf=false -c core.hooksPath=/dev/null)
"${G[@]}" init -q
"${G[@]}" add -A
"${G[@]}" commit -q --no-verify -m "pristine $(basename "$pristine")"
while read -r p; do
	case $p in ''|'#'*) continue ;; esac
	log "git am $p"
	if ! "${G[@]}" am -q --whitespace=nowarn "$here/patches/$p" >&2; then
		"${G[@]}" am --abort >/dev/null 2>&1 || true
		die "patch $p does not apply (git am)"
	fi
done <"$here/patches/series"
[ -z "$("${G[@]}" status --porcelain --untracked-files=no)" ] || die "the tree is not clean after git am"
mkdir -p "$out/build"
log "configuring"
(cd "$out/build" && ../src/configure --prefix=/usr \
	--firmwarepath=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu --target-list=x86_64-softmmu,m68k-softmmu \
	--disable-docs --disable-gtk --disable-sdl --disable-vnc --disable-tools \
	--disable-guest-agent --disable-werror --disable-user --disable-debug-info \
	--disable-slirp --disable-curses --disable-opengl --disable-spice \
	--disable-virglrenderer --disable-xen --disable-capstone --disable-libusb \
	--disable-usb-redir --disable-alsa --disable-pa --disable-oss --disable-jack \
	--disable-auth-pam --disable-libssh --disable-bpf --disable-fuse \
	--disable-plugins >&2) || die "configure failed"
log "building with ninja -j$JOBS"
# m68k-softmmu: virtio (virtio-mmio) without VFIO, where vhost-vfio must
# build as a stub (the nested test runs it); ~150 more ninja steps.
ninja -C "$out/build" -j"$JOBS" qemu-system-x86_64 qemu-system-m68k >&2 || die "build failed"
link_firmware "$out"
touch "$out/.built"
log "built in $(( $(date +%s) - t0 )) s: $bin"
echo "$bin"
