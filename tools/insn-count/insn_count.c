// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * A QEMU TCG plugin that counts the guest instructions executed, in three
 * buckets by address: user space, the kernel image, and the module area
 * (from 0xffffffffa0000000: x86-64 without KASLR, as the test kernels
 * are built; `modules=ADDR` moves it). It prints one line at exit:
 *
 *   INSN_COUNT user N kernel N modules N
 *
 * scripts/ab --insns uses it to compare the path length of two revisions'
 * data paths, a figure that the load of a shared host does not move.
 *
 * The counters are plain inline additions (QEMU 7.2 has no atomic or
 * per-vCPU inline counter): two vCPUs executing at the same moment may
 * lose a count now and then. The A/B job keeps its work on one vCPU.
 *
 * Built against the QEMU source that tools/qemu/build-qemu.sh fetches
 * (include/qemu/qemu-plugin.h); loaded with -plugin by scripts/vm when
 * VM_PLUGIN names it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <glib.h>
#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

static uint64_t user, kernel, modules;
static uint64_t kernel_start = 0xffff800000000000ULL;
static uint64_t modules_start = 0xffffffffa0000000ULL;

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	uint64_t pc = qemu_plugin_tb_vaddr(tb);
	uint64_t *c = pc >= modules_start ? &modules : pc >= kernel_start ? &kernel : &user;

	qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, c,
						 qemu_plugin_tb_n_insns(tb));
}

static void at_exit(qemu_plugin_id_t id, void *p)
{
	char line[128];

	snprintf(line, sizeof(line), "INSN_COUNT user %" PRIu64 " kernel %" PRIu64
		 " modules %" PRIu64 "\n", user, kernel, modules);
	/* stderr: the console log of scripts/vm takes QEMU's stderr too. */
	fputs(line, stderr);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
					   int argc, char **argv)
{
	for (int i = 0; i < argc; i++) {
		if (strncmp(argv[i], "modules=", 8) == 0) {
			modules_start = strtoull(argv[i] + 8, NULL, 0);
		} else {
			fprintf(stderr, "insn_count: unknown argument %s (modules=ADDR)\n", argv[i]);
			return -1;
		}
	}
	qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
	qemu_plugin_register_atexit_cb(id, at_exit, NULL);
	return 0;
}
