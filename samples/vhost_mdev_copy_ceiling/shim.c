// SPDX-License-Identifier: GPL-2.0
/*
 * C shim of the copy-ceiling module: the one `static inline` wrapper it
 * calls (rust/helpers.c holds the others, which would pull in VFIO).
 */
#include <linux/sched.h>

#include "../../rust/helpers.h"

void vhost_mdev_helper_cond_resched(void)
{
	cond_resched();
}
