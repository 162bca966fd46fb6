// SPDX-License-Identifier: GPL-2.0

//! Counters of the queue interrupts a bridged device signalled, for tests
//! and debugging (`vq_irqs` of the bound vDPA device): how many callbacks
//! ran, and how many of them in a hard IRQ handler (`vp_vdpa`, `ifcvf`
//! signal from theirs; `vdpa_sim` from a kernel thread).

use crate::vdpa;
use core::sync::atomic::{AtomicU64, Ordering};

/// The counters of one bound device.
#[derive(Default)]
pub(crate) struct IrqStats {
    calls: AtomicU64,
    hardirq: AtomicU64,
}

impl IrqStats {
    /// Counts a callback; any context.
    pub(crate) fn note(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if vdpa::in_hardirq() {
            self.hardirq.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Callbacks so far, and how many ran in a hard IRQ handler.
    pub(crate) fn get(&self) -> (u64, u64) {
        (
            self.calls.load(Ordering::Relaxed),
            self.hardirq.load(Ordering::Relaxed),
        )
    }
}
