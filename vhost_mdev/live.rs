// SPDX-License-Identifier: GPL-2.0

//! Instances outlive their removal: the VFIO device's `release`, code of
//! this module, runs when the last reference goes, and any holder of a
//! reference delays it (the VM suite's late-release test holds them with
//! `tests/kmod/late_ref.ko`). Module exit waits until the count is zero
//! ([`wait_idle`]). (Parents are counted by their driver's registration,
//! see `rust/mdev.rs`.)

use crate::delay;
use core::sync::atomic::{AtomicUsize, Ordering};
use kernel::prelude::*;

static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Counts an object whose release runs code of this module.
pub(crate) fn get() {
    LIVE.fetch_add(1, Ordering::AcqRel);
}

/// Ends what [`get`] counted: the last thing such a release does.
///
/// Module exit may free the module once the count is zero; what the caller
/// still runs is its own return. `free_module()` calls `synchronize_rcu()`
/// before it frees the module's memory, which waits for that return on a
/// kernel without preemption, and leaves only a preemption between these
/// instructions and the caller's `ret` on the others, as for every module
/// whose release callbacks drop the last reference to it.
pub(crate) fn put() {
    LIVE.fetch_sub(1, Ordering::AcqRel);
}

/// One count of [`get`], ended by [`put`] when it is dropped: the last
/// field of an object whose release drops it.
pub(crate) struct Token(());

impl Token {
    /// Counts an object.
    pub(crate) fn new() -> Self {
        get();
        Token(())
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        put();
    }
}

/// Waits until every counted object was released (module exit).
pub(crate) fn wait_idle() {
    let mut waited = 0u32;
    while LIVE.load(Ordering::Acquire) != 0 {
        if waited == 100 {
            pr_info!("waiting for released instances to be freed\n");
        }
        // Module exit runs in process context.
        delay::msleep(10);
        waited = waited.saturating_add(1);
    }
}
