// SPDX-License-Identifier: GPL-2.0
/*
 * C shim of vhost_mdev.ko: what Rust cannot express. The parent driver API
 * is implemented in Rust (vhost_mdev_core.rs); it is exported here, since
 * EXPORT_SYMBOL needs the C preprocessor.
 */
#include <linux/export.h>
#include <linux/module.h>
#include <linux/vhost_mdev.h>

#include "../rust/helpers.c"

EXPORT_SYMBOL_GPL(vhost_mdev_register_parent);
EXPORT_SYMBOL_GPL(vhost_mdev_unregister_parent);
EXPORT_SYMBOL_GPL(vhost_mdev_vq_interrupt);
EXPORT_SYMBOL_GPL(vhost_mdev_config_changed);
EXPORT_SYMBOL_GPL(vhost_mdev_needs_reset);
EXPORT_SYMBOL_GPL(vhost_mdev_dma_rw);
EXPORT_SYMBOL_GPL(vhost_mdev_dma_copy);
EXPORT_SYMBOL_GPL(vhost_mdev_dma_can_copy);
EXPORT_SYMBOL_GPL(vhost_mdev_dma_begin);
EXPORT_SYMBOL_GPL(vhost_mdev_dma_end);
EXPORT_SYMBOL_GPL(vhost_mdev_priv_from_dev);
EXPORT_SYMBOL_GPL(vhost_mdev_uuid);
EXPORT_SYMBOL_GPL(vhost_mdev_is_open);

/* Instances are normally used through a type1 container. */
MODULE_SOFTDEP("pre: vfio_iommu_type1");
