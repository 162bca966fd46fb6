// SPDX-License-Identifier: GPL-2.0
/*
 * C shim of the sample parent: the module parameter (6.12's Rust `module!`
 * has no parameters) and the `static inline` wrappers.
 */
#include <linux/moduleparam.h>

#include "../../rust/helpers.c"

unsigned int vhost_mdev_net_max_instances = 16;
module_param_named(max_instances, vhost_mdev_net_max_instances, uint, 0444);
MODULE_PARM_DESC(max_instances, "Instances of the loopback type that may exist at once (1-1024, default 16)");
