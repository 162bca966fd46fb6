// SPDX-License-Identifier: GPL-2.0
/*
 * C shim of the blk sample parent: the module parameter (6.12's Rust
 * `module!` has none; Rust reads it through rust/params.rs) and the
 * `static inline` wrappers that the parent layer of rust/ calls.
 */
#include <linux/moduleparam.h>

#include "../../rust/helpers.c"

unsigned int vhost_mdev_blk_max_instances = 16;
module_param_named(max_instances, vhost_mdev_blk_max_instances, uint, 0444);
MODULE_PARM_DESC(max_instances, "Instances of the ramdisk type that may exist at once (1-1024, default 16)");
