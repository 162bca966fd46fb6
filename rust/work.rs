// SPDX-License-Identifier: GPL-2.0

//! A work item embedded in a pinned object, for devices that cancel their
//! work synchronously on reset.
//!
//! C header: [`include/linux/workqueue.h`](srctree/include/linux/workqueue.h).
//!
//! The 6.12 `kernel::workqueue` queues reference-counted owners and has no
//! cancellation. A device's worker is instead bounded by the device's own
//! lifetime: `reset` and `drop` cancel it with `cancel_work_sync()`, so the
//! work function may borrow the device.

use crate::bindings;
use kernel::init::PinInit;
use kernel::prelude::*;
use kernel::types::Opaque;

/// A `work_struct` that lives inside a pinned object.
///
/// # Invariants
///
/// `work` is initialised (by [`RawWork::new`]) and never moves; the object
/// that contains it cancels it before it is dropped.
#[repr(transparent)]
#[pin_data]
pub struct RawWork {
    #[pin]
    work: Opaque<bindings::work_struct>,
}

// SAFETY: `queue_work()` and `cancel_work_sync()` may be called from any
// thread.
unsafe impl Sync for RawWork {}
// SAFETY: as above.
unsafe impl Send for RawWork {}

impl RawWork {
    /// Initialises the work item in place to run `func`.
    ///
    /// The object that contains it must cancel it ([`RawWork::cancel_sync`])
    /// before it is dropped, and `func` must only use the work item's
    /// container while that holds.
    pub fn new(func: unsafe extern "C" fn(*mut bindings::work_struct)) -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: `INIT_WORK` initialises the `work_struct` in place.
            work <- Opaque::ffi_init(move |slot| unsafe {
                bindings::vm_helper_init_work(slot, Some(func))
            }),
        })
    }

    /// Queues the work item (a no-op when it is already queued). Safe in
    /// atomic context.
    pub fn queue(&self) {
        // SAFETY: `work` is initialised (type invariant).
        unsafe { bindings::vm_helper_queue_work(self.work.get()) };
    }

    /// Cancels the work item and waits for a running instance to finish.
    /// May sleep.
    pub fn cancel_sync(&self) {
        // SAFETY: `work` is initialised (type invariant).
        unsafe { bindings::cancel_work_sync(self.work.get()) };
    }
}
