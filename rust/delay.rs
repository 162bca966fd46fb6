// SPDX-License-Identifier: GPL-2.0

//! Sleeping delays (6.12's `kernel` crate has none).
//!
//! C header: [`include/linux/delay.h`](srctree/include/linux/delay.h).

use crate::bindings;

/// Sleeps for at least `ms` milliseconds. Process context only: the
/// caller may sleep.
pub fn msleep(ms: u32) {
    // SAFETY: `msleep()` may be called with any value from a context that
    // may sleep, which is this function's contract.
    unsafe { bindings::msleep(ms) };
}
