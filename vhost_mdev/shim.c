// SPDX-License-Identifier: GPL-2.0
/*
 * C shim of vhost_mdev.ko: what Rust cannot express. The parent driver API
 * is implemented in Rust (vhost_mdev_core.rs); it is exported here, since
 * EXPORT_SYMBOL needs the C preprocessor.
 */
#include <linux/export.h>
#include <linux/fault-inject.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/vhost_mdev.h>

#include "../rust/helpers.c"

EXPORT_SYMBOL_GPL(vhost_mdev_register_parent);
EXPORT_SYMBOL_GPL(vhost_mdev_register_parent_on);
EXPORT_SYMBOL_GPL(vhost_mdev_unregister_parent);
EXPORT_SYMBOL_GPL(vhost_mdev_vq_interrupt);
EXPORT_SYMBOL_GPL(vhost_mdev_config_changed);
EXPORT_SYMBOL_GPL(vhost_mdev_needs_reset);
EXPORT_SYMBOL_GPL(vhost_mdev_dma_rw);
EXPORT_SYMBOL_GPL(vhost_mdev_dma_copy);
EXPORT_SYMBOL_GPL(vhost_mdev_dma_can_copy);
EXPORT_SYMBOL_GPL(vhost_mdev_dma_begin);
EXPORT_SYMBOL_GPL(vhost_mdev_dma_end);
EXPORT_SYMBOL_GPL(vhost_mdev_dma_pin);
EXPORT_SYMBOL_GPL(vhost_mdev_dma_unpin);
EXPORT_SYMBOL_GPL(vhost_mdev_log_write);
EXPORT_SYMBOL_GPL(vhost_mdev_opener_mm);
EXPORT_SYMBOL_GPL(vhost_mdev_priv_from_dev);
EXPORT_SYMBOL_GPL(vhost_mdev_uuid);
EXPORT_SYMBOL_GPL(vhost_mdev_is_open);

/*
 * 6.12's Rust `module!` has no parameters. Read once, and checked, at load
 * (dma.rs); 0444, so never changed afterwards.
 */
unsigned long vhost_mdev_pin_cache_bytes = 64UL << 20;
module_param_named(pin_cache_bytes, vhost_mdev_pin_cache_bytes, ulong, 0444);
MODULE_PARM_DESC(pin_cache_bytes,
		 "Guest memory each iommufd-bound instance may keep pinned, in bytes: 0 (no pin cache) or a multiple of PAGE_SIZE up to 1 GiB (default 64 MiB)");

/* Instances are normally used through a type1 container. */
MODULE_SOFTDEP("pre: vfio_iommu_type1");

/*
 * The core's own fault points (rust/fault_inject.rs): DMA, pin and copy
 * failures of the data path, which runs in a parent's worker, a task that
 * a test's /proc/thread-self/fail-nth never reaches. Configured under
 * /sys/kernel/debug/vhost_mdev/ (Documentation/testing.rst). Defined in C:
 * DECLARE_FAULT_ATTR's initializer is a C macro.
 */
#ifdef CONFIG_FAULT_INJECTION
static DECLARE_FAULT_ATTR(vhost_mdev_fail_dma);
static DECLARE_FAULT_ATTR(vhost_mdev_fail_pin);
static DECLARE_FAULT_ATTR(vhost_mdev_fail_copy);

struct fault_attr *vhost_mdev_fault_attr(unsigned int point)
{
	static struct fault_attr *const attrs[] = {
		&vhost_mdev_fail_dma, &vhost_mdev_fail_pin, &vhost_mdev_fail_copy,
	};

	return point < ARRAY_SIZE(attrs) ? attrs[point] : NULL;
}
#endif
