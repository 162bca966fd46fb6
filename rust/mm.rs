// SPDX-License-Identifier: GPL-2.0

//! Address spaces: references on a `struct mm_struct`, entering one from a
//! kernel thread, and single 2-byte user accesses.
//!
//! C headers: [`include/linux/sched/mm.h`](srctree/include/linux/sched/mm.h),
//! [`include/linux/uaccess.h`](srctree/include/linux/uaccess.h).

use crate::bindings;
use crate::errno::{errno_result, EFAULT};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, Ordering};
use kernel::prelude::*;

/// Whether the current task has an address space (a user task, or a
/// kernel thread that entered one).
#[inline]
pub fn current_has_mm() -> bool {
    // SAFETY: reading `current->mm` of the calling task.
    !unsafe { bindings::vhost_mdev_helper_current_mm() }.is_null()
}

/// An `mmgrab()` reference on an address space: it keeps the `mm_struct`,
/// not the mappings (a use takes those with `mmget_not_zero()`).
///
/// # Invariants
///
/// `mm` holds one `mmgrab()` reference, owned by this object.
pub struct MmGrab {
    mm: NonNull<bindings::mm_struct>,
}

// SAFETY: `mmdrop()` and the uses below may run on any thread.
unsafe impl Send for MmGrab {}
// SAFETY: `&MmGrab` only compares and enters the address space, which any
// thread may do.
unsafe impl Sync for MmGrab {}

impl MmGrab {
    /// A reference on the current task's address space, if it has one.
    pub fn current() -> Option<Self> {
        // SAFETY: reading `current->mm` of the calling task.
        let mm = NonNull::new(unsafe { bindings::vhost_mdev_helper_current_mm() })?;
        // SAFETY: `mm` is the live address space of the current task.
        unsafe { bindings::vhost_mdev_helper_mmgrab(mm.as_ptr()) };
        // INVARIANT: the reference taken just above.
        Some(Self { mm })
    }

    /// Whether this is the current task's address space.
    #[inline]
    pub fn is_current(&self) -> bool {
        // SAFETY: reading `current->mm` of the calling task.
        unsafe { bindings::vhost_mdev_helper_current_mm() == self.mm.as_ptr() }
    }

    /// The address space, for a C call that borrows it (the reference
    /// stays with this object).
    pub fn as_raw(&self) -> *mut bindings::mm_struct {
        self.mm.as_ptr()
    }

    /// Hands the reference over as a raw pointer.
    pub fn into_raw(self) -> *mut bindings::mm_struct {
        let mm = self.mm.as_ptr();
        core::mem::forget(self);
        mm
    }

    /// Takes back a reference from [`MmGrab::into_raw`]; `None` for null.
    ///
    /// # Safety
    ///
    /// `mm` must be null or come from [`MmGrab::into_raw`], not taken back
    /// before.
    #[inline]
    pub unsafe fn from_raw(mm: *mut bindings::mm_struct) -> Option<Self> {
        // INVARIANT: the reference `into_raw` handed over.
        NonNull::new(mm).map(|mm| Self { mm })
    }

    /// Runs `f` in this address space: directly when it is the current
    /// task's (a thread of its process, or a kernel thread that entered
    /// it), else by entering it from the current kernel thread for the call
    /// (leaving the address space the thread had, if any, meanwhile).
    ///
    /// Fails with `EFAULT` when the current task is another process, or the
    /// address space is gone.
    #[inline]
    pub fn with_current<R>(&self, f: impl FnOnce() -> R) -> Result<R> {
        if self.is_current() {
            return Ok(f());
        }
        let mm = self.mm.as_ptr();
        // SAFETY: reading `current->mm` of the calling task.
        let cur = unsafe { bindings::vhost_mdev_helper_current_mm() };
        // SAFETY: inspecting the current task; `mm` has an `mmgrab()`
        // reference (type invariant), so it may be `mmget_not_zero`ed.
        let ok = unsafe {
            bindings::vhost_mdev_helper_current_is_kthread()
                && bindings::vhost_mdev_helper_mmget_not_zero(mm)
        };
        if !ok {
            return Err(EFAULT);
        }
        // SAFETY: a kthread; `cur` (if any) is the mm it adopted, given
        // back below; `mm` has a user reference from `mmget_not_zero`.
        unsafe {
            if !cur.is_null() {
                bindings::kthread_unuse_mm(cur);
            }
            bindings::kthread_use_mm(mm);
        }
        let r = f();
        // SAFETY: undoes the switch above, in reverse order.
        unsafe {
            bindings::kthread_unuse_mm(mm);
            if !cur.is_null() {
                bindings::kthread_use_mm(cur);
            }
            bindings::mmput(mm);
        }
        Ok(r)
    }
}

impl Drop for MmGrab {
    fn drop(&mut self) {
        // SAFETY: our reference (type invariant).
        unsafe { bindings::vhost_mdev_helper_mmdrop(self.mm.as_ptr()) };
    }
}

/// A slot for an [`MmGrab`], set and taken atomically and read without a
/// lock.
///
/// # Invariants
///
/// `mm` is null or holds one `mmgrab()` reference, owned by the slot.
pub struct MmSlot {
    mm: AtomicPtr<bindings::mm_struct>,
}

impl MmSlot {
    /// An empty slot.
    pub const fn new() -> Self {
        Self {
            mm: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Whether the slot is empty.
    pub fn is_empty(&self) -> bool {
        self.mm.load(Ordering::Acquire).is_null()
    }

    /// Whether the slot holds the current task's address space.
    #[inline]
    pub fn is_current(&self) -> bool {
        // SAFETY: reading `current->mm` of the calling task.
        let cur = unsafe { bindings::vhost_mdev_helper_current_mm() };
        !cur.is_null() && self.mm.load(Ordering::Acquire) == cur
    }

    /// Puts `mm` in the slot if it is empty (else drops it).
    pub fn set_if_empty(&self, mm: MmGrab) {
        let p = mm.into_raw();
        if self
            .mm
            .compare_exchange(ptr::null_mut(), p, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // SAFETY: not stored: still the reference `into_raw` gave.
            drop(unsafe { MmGrab::from_raw(p) });
        }
    }

    /// Takes the reference out of the slot.
    pub fn take(&self) -> Option<MmGrab> {
        let p = self.mm.swap(ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: the slot's reference (type invariant), now ours.
        unsafe { MmGrab::from_raw(p) }
    }

    /// Runs `f` in the slot's address space (as [`MmGrab::with_current`]);
    /// `EFAULT` when the slot is empty.
    ///
    /// # Safety
    ///
    /// The slot must not be taken from, nor dropped, until this returns.
    #[inline]
    pub unsafe fn with_current<R>(&self, f: impl FnOnce() -> R) -> Result<R> {
        let p = self.mm.load(Ordering::Acquire);
        // SAFETY: the slot's reference, which the caller guarantees stays
        // until we return; `ManuallyDrop` leaves it to the slot.
        let mm = core::mem::ManuallyDrop::new(unsafe { MmGrab::from_raw(p) }.ok_or(EFAULT)?);
        mm.with_current(f)
    }
}

impl Default for MmSlot {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for MmSlot {
    fn drop(&mut self) {
        drop(self.take());
    }
}

/// Reads the `u16` at user address `uaddr` of the current address space
/// as one access (`get_user()`), unlike `copy_from_user()`, which may copy
/// a byte at a time.
#[inline]
pub fn get_user_u16(uaddr: u64) -> Result<u16> {
    let mut v = 0u16;
    // SAFETY: `get_user()` checks the user address and faults safely.
    errno_result(unsafe { bindings::vhost_mdev_helper_get_user_u16(&mut v, uaddr) })?;
    Ok(v)
}

/// Writes `v` to user address `uaddr` of the current address space as one
/// access (`put_user()`).
#[inline]
pub fn put_user_u16(uaddr: u64, v: u16) -> Result {
    // SAFETY: `put_user()` checks the user address and faults safely.
    errno_result(unsafe { bindings::vhost_mdev_helper_put_user_u16(v, uaddr) })
}
