// SPDX-License-Identifier: GPL-2.0

//! Address spaces: references on a `struct mm_struct`, entering one from a
//! kernel thread, single 2-byte user accesses, and user pages pinned
//! long-term.
//!
//! C headers: [`include/linux/sched/mm.h`](srctree/include/linux/sched/mm.h),
//! [`include/linux/uaccess.h`](srctree/include/linux/uaccess.h),
//! [`include/linux/mm.h`](srctree/include/linux/mm.h).

use crate::bindings;
use crate::errno::{errno_result, EFAULT, EINVAL, ENOMEM};
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

/// Pages of the current process's memory pinned for writing, long-term
/// (`pin_user_pages_fast()` with `FOLL_WRITE | FOLL_LONGTERM`), and charged
/// to its address space's `locked_vm` (`account_locked_vm()`: refused
/// above `RLIMIT_MEMLOCK` without `CAP_IPC_LOCK`) until they are dropped.
/// The kernel writes to them through the direct map ([`Self::or_u64`]);
/// they are unpinned dirty.
///
/// # Invariants
///
/// `pages[..pinned]` are pinned (one pin each, taken here) and
/// `addrs[..pinned]` their direct-map addresses; `charged` pages are
/// charged to `mm` (`Some` when `charged > 0`).
pub struct PinnedUserPages {
    pages: KVVec<*mut bindings::page>,
    addrs: KVVec<*mut u8>,
    pinned: usize,
    charged: usize,
    mm: Option<MmGrab>,
}

// SAFETY: the pins and the charge may be given back from any thread, and
// the pages are written only with atomic operations.
unsafe impl Send for PinnedUserPages {}
// SAFETY: as above: `&PinnedUserPages` only ORs into the pages atomically.
unsafe impl Sync for PinnedUserPages {}

impl PinnedUserPages {
    /// No pages.
    pub const fn empty() -> Self {
        Self {
            pages: KVVec::new(),
            addrs: KVVec::new(),
            pinned: 0,
            charged: 0,
            mm: None,
        }
    }

    /// Pins the `n` pages from the page-aligned user address `start` of
    /// the current process for writing. Fails with `EFAULT` (an address
    /// not mapped, or mapped read-only), `ENOMEM` (above
    /// `RLIMIT_MEMLOCK`, or no memory), `EINVAL` (`start` not aligned) or
    /// `pin_user_pages_fast()`'s error; nothing stays pinned or charged
    /// then. Process context.
    pub fn pin_current(start: u64, n: usize) -> Result<Self> {
        let mut this = Self::empty();
        if n == 0 {
            return Ok(this);
        }
        if start % bindings::PAGE_SIZE as u64 != 0 {
            return Err(EINVAL);
        }
        let mm = MmGrab::current().ok_or(EFAULT)?;
        this.pages = KVVec::from_elem(ptr::null_mut(), n, GFP_KERNEL)?;
        this.addrs = KVVec::from_elem(ptr::null_mut(), n, GFP_KERNEL)?;
        // SAFETY: `mm` is the current task's live address space (we hold a
        // reference), in process context.
        errno_result(unsafe { bindings::account_locked_vm(mm.as_raw(), n as _, true) })?;
        // INVARIANT: `n` pages charged to `mm`, given back on drop.
        this.charged = n;
        this.mm = Some(mm);
        let flags = bindings::FOLL_WRITE | bindings::FOLL_LONGTERM;
        while this.pinned < n {
            let at = start + (this.pinned as u64) * bindings::PAGE_SIZE as u64;
            let want = (n - this.pinned).min(i32::MAX as usize) as i32;
            // SAFETY: `pages[pinned..]` has room for `want` entries; the
            // call checks the user range of the current address space.
            let r = unsafe {
                bindings::pin_user_pages_fast(
                    at as _,
                    want,
                    flags,
                    this.pages.as_mut_ptr().add(this.pinned),
                )
            };
            if r <= 0 {
                // Drop unpins what was pinned and gives the charge back.
                return Err(if r < 0 { Error::from_errno(r) } else { EFAULT });
            }
            // INVARIANT: `r` more pages pinned (at most `want`).
            this.pinned += r as usize;
        }
        for (a, p) in this.addrs.iter_mut().zip(this.pages.iter()) {
            // SAFETY: a page pinned above.
            *a = unsafe { bindings::vhost_mdev_helper_page_address_lowmem(*p) }.cast();
            if a.is_null() {
                // A high-memory page (32-bit only) has no permanent address.
                return Err(ENOMEM);
            }
        }
        Ok(this)
    }

    /// Number of pages.
    pub fn len(&self) -> usize {
        self.pinned
    }

    /// Whether there are no pages.
    pub fn is_empty(&self) -> bool {
        self.pinned == 0
    }

    /// ORs `mask` into the `u64` at byte `off` (8-byte aligned, within the
    /// page) of page `page`, atomically (another thread may clear bits
    /// meanwhile); does nothing out of range. Any context.
    #[inline]
    pub fn or_u64(&self, page: usize, off: usize, mask: u64) {
        let Some(&base) = self.addrs.get(page) else {
            return;
        };
        if off % 8 != 0 || off + 8 > bindings::PAGE_SIZE || base.is_null() {
            return;
        }
        // The process may access the same memory only atomically or racily
        // by its own choice; an atomic OR is what vhost does (`set_bit()`).
        // SAFETY: `base` maps a page pinned while `self` lives (type
        // invariant); `off` is an aligned `u64` inside it.
        let w = unsafe { core::sync::atomic::AtomicU64::from_ptr(base.add(off).cast()) };
        w.fetch_or(mask.to_le(), core::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for PinnedUserPages {
    fn drop(&mut self) {
        if self.pinned > 0 {
            // SAFETY: `pages[..pinned]` hold one pin each (type invariant),
            // given back once, marked dirty: the kernel wrote to them.
            unsafe {
                bindings::unpin_user_pages_dirty_lock(
                    self.pages.as_mut_ptr(),
                    self.pinned as _,
                    true,
                )
            };
        }
        if let Some(mm) = &self.mm {
            if self.charged > 0 {
                // SAFETY: `mm` has our reference; the charge taken in
                // `pin_current`. `account_locked_vm()` takes the mmap lock,
                // which needs process context (the callers drop these there).
                unsafe { bindings::account_locked_vm(mm.as_raw(), self.charged as _, false) };
            }
        }
    }
}
