# SPDX-License-Identifier: GPL-2.0
#
# vhost-mdev: build the kernel modules against a Rust-enabled kernel, and the
# project's own set-up, test and benchmark entry points.
#
#   make                 build the modules against $(KDIR)
#   make demo            set up, build the test kernel, boot it, create an
#                        instance and move packets (the README's first command)
#   make check           every test suite (host + VM; the README's second)
#   make check-quick     the quick VM suite, for a developer after an edit
#   make clean           remove build products

KDIR ?= /lib/modules/$(shell uname -r)/build
VHOST_MDEV_CACHE ?= $(HOME)/.cache/vhost-mdev
LLVM ?= -19
RUSTC ?= /usr/bin/rustc
BINDGEN ?= $(VHOST_MDEV_CACHE)/bindgen/bin/bindgen
export LIBCLANG_PATH ?= /usr/lib/llvm-19/lib

KMAKE = $(MAKE) -C $(KDIR) M=$(CURDIR) LLVM=$(LLVM) RUSTC=$(RUSTC) BINDGEN=$(BINDGEN)

all: modules

modules:
	$(KMAKE) modules

modules_install:
	$(KMAKE) modules_install

clean:
	$(KMAKE) clean 2>/dev/null || true
	rm -f rust/bindings_generated.rs rust/.bindings_generated.rs.cmd
	cargo clean 2>/dev/null || true

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

.PHONY: all modules modules_install clean setup kernel demo check check-quick
