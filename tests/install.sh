#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The user's install path: the kernel check against trees that cannot build
# the modules, `make install` into a staging tree, then in the test VM:
# modules loaded by name from it, an instance defined and started with
# mdevctl, everything unloaded.
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
. "$top/scripts/lib.sh"
kdir=$(readlink -f "$CACHE/kbuild/debug")
rustc=/usr/bin/rustc
work=$(mktemp -d "$CACHE/install-test.XXXXXX")
trap 'rm -rf "$work"' EXIT

t() {
	local name=$1; shift
	local out
	if out=$("$@" 2>&1); then echo "PASS: $name"; else echo "FAIL: $name: $(echo "$out" | tail -n 3 | tr '\n' ' ')"; fi
}

# A tree whose kernel has Rust off.
mkdir -p "$work/norust"
cp "$kdir/Makefile" "$work/norust/"
grep -v '^CONFIG_RUST=' "$kdir/.config" >"$work/norust/.config"
t "check-kernel: a kernel without CONFIG_RUST is refused, saying so" sh -c "
	! out=\$('$top/scripts/check-kernel' '$work/norust' $rustc '$BINDGEN' 2>&1) &&
	echo \"\$out\" | grep -q 'built without Rust' && echo \"\$out\""
# A headers-only tree: config says Rust, but no Rust artifacts.
mkdir -p "$work/headers"
cp "$kdir/Makefile" "$kdir/.config" "$work/headers/"
t "check-kernel: a headers-only tree is refused (no rust/*.rmeta)" sh -c "
	! out=\$('$top/scripts/check-kernel' '$work/headers' $rustc '$BINDGEN' 2>&1) &&
	echo \"\$out\" | grep -q 'no Rust build artifacts'"
t "check-kernel: a different rustc is named" sh -c "
	! out=\$('$top/scripts/check-kernel' '$kdir' \$HOME/.cargo/bin/rustc '$BINDGEN' 2>&1) &&
	echo \"\$out\" | grep -q 'RUSTC='"
t "check-kernel (make's default BINDGEN, the system one): the test kernel's tree passes" \
	make -s -C "$top" KDIR="$kdir" check-kernel
# A kernel built with another bindgen: make looks for that version in the
# system location and says how to put it there.
mkdir -p "$work/bindgen-next/rust"
cp "$kdir/Makefile" "$work/bindgen-next/"
touch "$work/bindgen-next/rust/libkernel.rmeta"
sed 's/^CONFIG_BINDGEN_VERSION_TEXT=.*/CONFIG_BINDGEN_VERSION_TEXT="bindgen 0.70.1"/' "$kdir/.config" >"$work/bindgen-next/.config"
t "make: a kernel built with another bindgen gets that version's system path and how to install it" sh -c "
	! out=\$(make -s -C '$top' KDIR='$work/bindgen-next' check-kernel 2>&1) &&
	echo \"\$out\" | grep -q \"built with 'bindgen 0.70.1' but BINDGEN=$BINDGEN_ROOT/bindgen-0.70.1/bin/bindgen is 'missing'\" &&
	echo \"\$out\" | grep -q -- '--root $BINDGEN_ROOT/bindgen-0.70.1 bindgen-cli@0.70.1'"
# The set-up's copy of the pinned bindgen to the system location: from its
# cache, without cargo (a system PATH), then nothing to do.
t "setup installs the pinned bindgen from its cache without cargo, then only checks it" sh -c "
	r='$work/bindgen-root'
	run() { env -i HOME=\"\$HOME\" PATH=/usr/sbin:/usr/bin:/sbin:/bin VHOST_MDEV_CACHE='$CACHE' \
		VHOST_MDEV_BINDGEN_ROOT=\"\$r\" '$top/scripts/setup' 2>&1; }
	out=\$(run) && echo \"\$out\" | grep -q \"installing bindgen $BINDGEN_V to \$r/bindgen-$BINDGEN_V/bin/bindgen\" &&
	! echo \"\$out\" | grep -q 'building bindgen' &&
	test \"\$(\$r/bindgen-$BINDGEN_V/bin/bindgen --version)\" = 'bindgen $BINDGEN_V' &&
	out=\$(run) && ! echo \"\$out\" | grep -q bindgen"
t "make modules refuses a kernel without Rust" sh -c "
	! make -s -C '$top' KDIR='$work/norust' modules >/dev/null 2>&1"

# Stage: the test kernel's own modules plus ours, as on a user's host.
stage=$work/stage
cp -a "$kdir/modroot/." "$stage/"
t "make install into a staging tree (INSTALL_MOD_PATH, DESTDIR)" sh -c "
	make -s -C '$top' KDIR='$kdir' INSTALL_MOD_PATH='$stage' DESTDIR='$stage' install &&
	test -f '$stage/usr/local/include/linux/vhost_mdev.h' &&
	test -x '$stage/usr/local/bin/vhost-mdev' &&
	grep -q 'EXIT STATUS' '$stage/usr/local/share/man/man1/vhost-mdev.1' &&
	grep -q 'queue.*pairs' '$stage/usr/local/share/man/man1/vhost-mdev-create.1' &&
	{ ! command -v man >/dev/null || man -l '$stage/usr/local/share/man/man1/vhost-mdev-remove.1' 2>/dev/null | grep -q -- '--force'; } &&
	bash -c \". '$stage/usr/local/share/bash-completion/completions/vhost-mdev' && complete -p vhost-mdev\" &&
	test -s '$stage/usr/local/share/zsh/site-functions/_vhost-mdev' &&
	test -s '$stage/usr/local/share/fish/vendor_completions.d/vhost-mdev.fish' &&
	grep -q '^updates/vhost_mdev_net.ko: updates/vhost_mdev.ko' '$stage'/lib/modules/*/modules.dep &&
	grep -qx 'updates/vhost_mdev_copy_ceiling.ko:' '$stage'/lib/modules/*/modules.dep &&
	grep -q '^updates/vhost_mdev_blk.ko: updates/vhost_mdev.ko' '$stage'/lib/modules/*/modules.dep &&
	grep -q '^updates/vhost_mdev_vdpa.ko: .*updates/vhost_mdev.ko' '$stage'/lib/modules/*/modules.dep"

# DKMS as at a kernel upgrade: `dkms autoinstall` runs as root with
# another HOME and no cache. The real dkms, in trees of its own
# (--sourcetree, --dkmstree: /usr/src and /var/lib/dkms stay untouched),
# with an empty HOME, a system PATH (no ~/.cargo/bin) and no other
# variables, against a second kernel: the release kernel's tree (make
# install above built against the debug one). dkms appends CC=clang
# LD=ld.lld for clang-built kernels; the Makefile passes the suffixed LLVM
# tools explicitly.
rkdir=$(readlink -f "$CACHE/kbuild/release")
dkms_kdir=$rkdir dkms_tree=release
if [ ! -f "$rkdir/.built" ]; then
	# make check builds only the debug kernel; make bench builds this one.
	echo "note: no release kernel in the cache (make bench builds it): DKMS builds against the debug tree"
	dkms_kdir=$kdir dkms_tree=debug
fi
src=$work/src/vhost-mdev-0.1.0
mkdir -p "$src" "$work/dkms" "$work/home"
# What the modules' build needs, from the checkout (no build products): the
# module sources and those of the vhost-mdev-proto crate, which they
# include by #[path].
git -C "$top" ls-files -z --cached --others --exclude-standard -- \
	Makefile Kbuild dkms.conf include rust vhost_mdev samples vdpa_bridge scripts \
	tools/vhost-mdev-proto/src | tar -C "$top" --null -T - -cf - | tar -C "$src" -xf -
krel=$(cat "$dkms_kdir/include/config/kernel.release")
mods=$work/dkms/vhost-mdev/0.1.0/$krel/x86_64/module
t "dkms build against the $dkms_tree kernel's tree, HOME empty, no cache, system PATH" sh -c "
	env -i HOME='$work/home' PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
		nice -n 10 sh -c 'dkms add vhost-mdev/0.1.0 --sourcetree \"\$1\" --dkmstree \"\$2\" >/dev/null &&
			dkms build vhost-mdev/0.1.0 -k \"\$3\" --kernelsourcedir \"\$4\" --sourcetree \"\$1\" --dkmstree \"\$2\"' \
		sh '$work/src' '$work/dkms' '$krel' '$dkms_kdir' || { cat '$work'/dkms/vhost-mdev/0.1.0/build/make.log; exit 1; }
	ls '$mods/vhost_mdev.ko' '$mods/vhost_mdev_net.ko' '$mods/vhost_mdev_copy_ceiling.ko' \
		'$mods/vhost_mdev_blk.ko' '$mods/vhost_mdev_vdpa.ko' &&
	grep -q 'BINDGEN.*bindings_generated.rs' '$mods/../log/make.log' &&
	! grep -iE 'no such file|not found|rustfmt|jobserver unavailable' '$mods/../log/make.log' &&
	test -z \"\$(ls -A '$work/home')\""
if [ "$dkms_tree" = release ]; then
	# Built against that tree, not the debug one: no KASAN calls.
	t "the DKMS modules are the release kernel's (no KASAN)" sh -c "
		nm -u '$mods/vhost_mdev.ko' | grep -q ' U ' && ! nm -u '$mods/vhost_mdev.ko' | grep -q __asan_"
fi

cat >"$work/job.sh" <<JOB
. "\$VHOST_MDEV_TOP/tests/vm/lib.sh"
S=$stage
t "modprobe vhost_mdev_net by name from the staged tree (pulls in vhost_mdev)" sh -c "
	modprobe -d \$S vfio_iommu_type1 && modprobe -d \$S vhost_mdev_net &&
	lsmod | grep -q '^vhost_mdev ' && lsmod | grep -q '^vhost_mdev_net '"
U=5e1f0000-0000-4000-8000-000000000001
t "mdevctl define + start an instance; the staged CLI sees it" sh -c "
	mdevctl define -u \$U -p vhost_mdev_net --type \$TYPE &&
	mdevctl list --defined | grep -q \$U &&
	mdevctl start -u \$U && test -d /sys/bus/mdev/devices/\$U &&
	\$S/usr/local/bin/vhost-mdev list | grep -q \$U"
t "mdevctl stop + undefine" sh -c "
	mdevctl stop -u \$U && mdevctl undefine -u \$U && ! test -d /sys/bus/mdev/devices/\$U"
t "modprobe -r unloads everything" sh -c "
	modprobe -r -d \$S vhost_mdev_net && ! lsmod | grep -q vhost_mdev"
JOB
"$top/scripts/vm" --timeout 600 "$work/job.sh"

t "make uninstall removes what install put" sh -c "
	make -s -C '$top' KDIR='$kdir' INSTALL_MOD_PATH='$stage' DESTDIR='$stage' uninstall &&
	! test -e '$stage/usr/local/bin/vhost-mdev' && ! ls '$stage'/lib/modules/*/updates/vhost_mdev*.ko 2>/dev/null &&
	! ls '$stage'/usr/local/share/man/man1/vhost-mdev* 2>/dev/null &&
	! test -e '$stage/usr/local/share/bash-completion/completions/vhost-mdev' &&
	! test -e '$stage/usr/local/share/zsh/site-functions/_vhost-mdev' &&
	! test -e '$stage/usr/local/share/fish/vendor_completions.d/vhost-mdev.fish'"
