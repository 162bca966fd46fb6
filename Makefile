# SPDX-License-Identifier: GPL-2.0
#
# vhost-mdev: build the kernel modules against a Rust-enabled kernel, and the
# project's own set-up, test and benchmark entry points.
#
#   make                 build the modules against $(KDIR) (default: the
#                        running kernel's build tree), after checking it
#   make install         modules_install + depmod, the uAPI header, the
#                        vhost-mdev CLI with its man pages and bash, zsh
#                        and fish completions (INSTALL_MOD_PATH, DESTDIR,
#                        PREFIX)
#   make uninstall       undo make install
#   make demo            set up, build the test kernel, boot it, create an
#                        instance and move packets (the README's first command)
#   make check           every test suite (host + VM; the README's second)
#   make check-quick     the quick VM suite, for a developer after an edit
#   make bench           benchmark against vdpa_sim_net on the release kernel
#   make stress          the ring-index stress, 10^6 frames per configuration
#   make fuzz            the coverage-guided fuzzer for FUZZ_SECONDS (half
#                        per IOMMU back end), then the hardening suite (races,
#                        lifecycle) at 8 to 40 times its CI size, outside
#                        CI (FUZZ_ONLY=1: the fuzzer alone)
#   make clean           remove build products (modules_clean: the
#                        modules' only, as DKMS does)

KDIR ?= /lib/modules/$(shell uname -r)/build
LLVM ?= -19
RUSTC ?= /usr/bin/rustc
# bindgen: the version the kernel was built with (scripts/check-kernel
# insists), from the system location scripts/setup installs it to, one
# directory per version; nothing under a HOME, so that a DKMS rebuild (root,
# another HOME, no cache) finds it.
VHOST_MDEV_BINDGEN_ROOT ?= /usr/local/lib/vhost-mdev
KBINDGEN_V := $(shell sed -n 's/^CONFIG_BINDGEN_VERSION_TEXT="bindgen \(.*\)"$$/\1/p' $(KDIR)/.config 2>/dev/null)
BINDGEN ?= $(VHOST_MDEV_BINDGEN_ROOT)/bindgen-$(or $(KBINDGEN_V),unknown)/bin/bindgen
export LIBCLANG_PATH ?= /usr/lib/llvm-19/lib

PREFIX ?= /usr/local
DESTDIR ?=
INSTALL_MOD_PATH ?=
KRELEASE = $(shell cat $(KDIR)/include/config/kernel.release 2>/dev/null)
CARGO ?= $(shell command -v cargo 2>/dev/null || echo $(HOME)/.cargo/bin/cargo)

# The kernel names its LLVM tools with the LLVM suffix (clang-19); say so
# explicitly, since DKMS appends CC=clang LD=ld.lld for clang-built kernels.
LLVM_SUFFIX = $(filter -%,$(LLVM))
KMAKE = $(MAKE) -C $(KDIR) M=$(CURDIR) LLVM=$(LLVM) RUSTC=$(RUSTC) BINDGEN=$(BINDGEN) \
	$(if $(LLVM_SUFFIX),CC=clang$(LLVM_SUFFIX) LD=ld.lld$(LLVM_SUFFIX))

all: modules

check-kernel:
	@scripts/check-kernel $(KDIR) $(RUSTC) $(BINDGEN)

# '+': KMAKE names $(MAKE) only indirectly, and make -jN (DKMS) would run
# Kbuild without its jobserver, serially.
modules: check-kernel
	+$(KMAKE) modules

modules_install: modules
	$(KMAKE) INSTALL_MOD_PATH=$(INSTALL_MOD_PATH) modules_install
	depmod $(if $(INSTALL_MOD_PATH),-b $(INSTALL_MOD_PATH)) $(KRELEASE)

tools:
	$(CARGO) build --release --bin vhost-mdev

install: modules_install tools
	install -D -m 0644 include/uapi/linux/vhost_mdev.h $(DESTDIR)$(PREFIX)/include/linux/vhost_mdev.h
	install -D -m 0755 target/release/vhost-mdev $(DESTDIR)$(PREFIX)/bin/vhost-mdev
	# The man pages and completions build.rs generated from the clap
	# definitions (the binary carries them).
	target/release/vhost-mdev install-assets $(DESTDIR)$(PREFIX)/share
	# The udev rule that gives instances' VFIO nodes their recorded owner
	# (udev reads /usr/local/lib/udev/rules.d too).
	mkdir -p $(DESTDIR)$(PREFIX)/lib/udev/rules.d
	sed 's|/usr/local/bin/vhost-mdev|$(PREFIX)/bin/vhost-mdev|' udev/70-vhost-mdev.rules \
		>$(DESTDIR)$(PREFIX)/lib/udev/rules.d/70-vhost-mdev.rules

uninstall:
	rm -f $(INSTALL_MOD_PATH)/lib/modules/$(KRELEASE)/updates/vhost_mdev.ko \
	      $(INSTALL_MOD_PATH)/lib/modules/$(KRELEASE)/updates/vhost_mdev_net.ko \
	      $(INSTALL_MOD_PATH)/lib/modules/$(KRELEASE)/updates/vhost_mdev_copy_ceiling.ko \
	      $(INSTALL_MOD_PATH)/lib/modules/$(KRELEASE)/updates/vhost_mdev_blk.ko \
	      $(INSTALL_MOD_PATH)/lib/modules/$(KRELEASE)/updates/vhost_mdev_vdpa.ko
	depmod $(if $(INSTALL_MOD_PATH),-b $(INSTALL_MOD_PATH)) $(KRELEASE)
	rm -f $(DESTDIR)$(PREFIX)/include/linux/vhost_mdev.h $(DESTDIR)$(PREFIX)/bin/vhost-mdev \
	      $(DESTDIR)$(PREFIX)/share/man/man1/vhost-mdev.1 \
	      $(DESTDIR)$(PREFIX)/share/man/man1/vhost-mdev-*.1 \
	      $(DESTDIR)$(PREFIX)/share/bash-completion/completions/vhost-mdev \
	      $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_vhost-mdev \
	      $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/vhost-mdev.fish \
	      $(DESTDIR)$(PREFIX)/lib/udev/rules.d/70-vhost-mdev.rules

# The modules' build products only: DKMS's CLEAN (no cargo, no HOME).
modules_clean:
	-$(KMAKE) clean 2>/dev/null
	rm -f rust/bindings_generated.rs rust/.bindings_generated.rs.cmd

clean: modules_clean
	-$(MAKE) -C $(KDIR) M=$(CURDIR)/tests/kmod clean 2>/dev/null
	-$(CARGO) clean 2>/dev/null

setup:
	scripts/setup

kernel: setup
	scripts/build-kernel >/dev/null

demo:
	scripts/run demo

check:
	scripts/run check

check-quick:
	scripts/run check-quick

bench:
	scripts/run bench

stress:
	scripts/run stress

fuzz:
	scripts/run fuzz

.PHONY: bench stress fuzz all check-kernel modules modules_clean modules_install tools install uninstall clean setup kernel demo check check-quick
