# SPDX-License-Identifier: GPL-2.0
# Shared settings for the vhost-mdev scripts. Sourced, not run.

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${VHOST_MDEV_CACHE:-$HOME/.cache/vhost-mdev}
KSRC=$CACHE/linux-6.12
# bindgen-cli, pinned: scripts/setup builds it into the cache and installs it
# in a system location, where the Makefile (and so a DKMS rebuild, run as
# root with another HOME and no cache) finds it: one directory per version,
# so that a kernel built with another bindgen can have its own beside it.
BINDGEN_V=0.69.5
BINDGEN_ROOT=${VHOST_MDEV_BINDGEN_ROOT:-/usr/local/lib/vhost-mdev}
BINDGEN=$BINDGEN_ROOT/bindgen-$BINDGEN_V/bin/bindgen
export LIBCLANG_PATH=/usr/lib/llvm-19/lib
mkdir -p "$CACHE"

if [ -t 1 ]; then
	_b=$'\e[1m' _r=$'\e[31m' _y=$'\e[33m' _g=$'\e[32m' _n=$'\e[0m'
else
	_b= _r= _y= _g= _n=
fi
step() { printf '%s==> %s%s\n' "$_b" "$*" "$_n"; }
ok()   { printf '%s==> %s%s\n' "$_g" "$*" "$_n"; }
warn() { printf '%swarning: %s%s\n' "$_y" "$*" "$_n" >&2; }
die()  { printf '%serror: %s%s\n' "$_r" "$*" "$_n" >&2; exit 1; }
