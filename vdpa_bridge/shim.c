// SPDX-License-Identifier: GPL-2.0
/*
 * C shim of the vDPA bridge: the `static inline` wrappers that the rust/
 * layer calls (vdpa_reset(), vdpa_set_features(), dev_name(), ...).
 */
#include "../rust/helpers.c"
