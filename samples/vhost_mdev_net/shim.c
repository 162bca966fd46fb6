// SPDX-License-Identifier: GPL-2.0
/*
 * C shim of the sample parent: the module parameters (6.12's Rust `module!`
 * has none; Rust reads them through rust/params.rs) and the `static inline`
 * wrappers.
 */
#include <linux/moduleparam.h>

#include "../../rust/helpers.c"

unsigned int vhost_mdev_net_max_instances = 16;
module_param_named(max_instances, vhost_mdev_net_max_instances, uint, 0444);
MODULE_PARM_DESC(max_instances, "Instances of the loopback type that may exist at once (1-1024, default 16)");

/*
 * Read with READ_ONCE() semantics (a volatile load) by each device start.
 * 50 us: a kick that comes within that time of a run's end finds the worker
 * running (no cross-CPU wake-up); the poll only uses a CPU that nothing else
 * wants (see rust/vhost_task.rs), as KVM's halt polling (200 us by default).
 */
unsigned int vhost_mdev_net_poll_us = 50;

static int vhost_mdev_net_poll_us_set(const char *val, const struct kernel_param *kp)
{
	return param_set_uint_minmax(val, kp, 0, 1000);
}

static const struct kernel_param_ops vhost_mdev_net_poll_us_ops = {
	.set = vhost_mdev_net_poll_us_set,
	.get = param_get_uint,
};
module_param_cb(poll_us, &vhost_mdev_net_poll_us_ops, &vhost_mdev_net_poll_us, 0644);
MODULE_PARM_DESC(poll_us, "Microseconds a device's worker polls for the next kick after a run before it sleeps (0-1000, default 50; read when the device starts)");
