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
use kernel::types::Opaque;

/// A `work_struct` that lives inside a pinned object.
///
/// # Invariants
///
/// `work` is initialised (by [`RawWork::init`]) before it is queued, and the
/// object that contains it cancels it before it is dropped.
#[repr(transparent)]
pub struct RawWork {
    work: Opaque<bindings::work_struct>,
}

// SAFETY: `queue_work()` and `cancel_work_sync()` may be called from any
// thread.
unsafe impl Sync for RawWork {}
// SAFETY: as above.
unsafe impl Send for RawWork {}

impl RawWork {
    /// An uninitialised work item; [`RawWork::init`] it in place.
    pub const fn uninit() -> Self {
        Self {
            work: Opaque::uninit(),
        }
    }

    /// Initialises the work item to run `func`.
    ///
    /// # Safety
    ///
    /// `self` must not move afterwards, must not be queued yet, and its owner
    /// must call [`RawWork::cancel_sync`] before it is dropped.
    pub unsafe fn init(&self, func: unsafe extern "C" fn(*mut bindings::work_struct)) {
        // SAFETY: `work` is valid memory that nothing else uses yet.
        unsafe { bindings::vm_helper_init_work(self.work.get(), Some(func)) };
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

    /// The raw `work_struct`, to find the containing object in the work
    /// function.
    pub fn as_ptr(&self) -> *mut bindings::work_struct {
        self.work.get()
    }
}
