// SPDX-License-Identifier: GPL-2.0

//! A spinlock that keeps local interrupts off while it is held
//! (`spin_lock_irqsave()`), for data that hard IRQ handlers use too.
//!
//! C header: [`include/linux/spinlock.h`](srctree/include/linux/spinlock.h).
//!
//! 6.12's `kernel::sync` has only the plain spinlock; this is the same
//! [`Lock`] with another [`Backend`]. Its guards must be dropped in the
//! reverse order of their creation (each restores the interrupt state its
//! lock saved), which scoped guards do.

use crate::bindings;
use kernel::ffi::{c_char, c_ulong};
use kernel::sync::lock::{Backend, Lock};

/// A spinlock taken with `spin_lock_irqsave()`.
pub type SpinLockIrq<T> = Lock<T, SpinLockIrqBackend>;

/// Creates a [`SpinLockIrq`] initialiser with the given name and a new lock
/// class.
macro_rules! new_spinlock_irq {
    ($inner:expr $(, $name:literal)? $(,)?) => {
        $crate::spinlock_irq::SpinLockIrq::new(
            $inner,
            kernel::optional_name!($($name)?),
            kernel::static_lock_class!(),
        )
    };
}
pub(crate) use new_spinlock_irq;

/// The [`Backend`] of [`SpinLockIrq`].
pub struct SpinLockIrqBackend;

// SAFETY: `spin_lock_irqsave()` gives mutual exclusion (with interrupts off
// on the owner's CPU); `unlock` restores what `lock` saved; `relock` uses
// the default, which locks the same way.
unsafe impl Backend for SpinLockIrqBackend {
    type State = kernel::bindings::spinlock_t;
    type GuardState = c_ulong;

    /// # Safety
    ///
    /// As [`Backend::init`]: `ptr` valid for writes, `name` and `key`
    /// valid for reads indefinitely.
    unsafe fn init(
        ptr: *mut Self::State,
        name: *const c_char,
        key: *mut kernel::bindings::lock_class_key,
    ) {
        // SAFETY: the caller guarantees `ptr` valid for writes, `name` and
        // `key` valid for reads indefinitely.
        unsafe { kernel::bindings::__spin_lock_init(ptr, name, key) }
    }

    /// # Safety
    ///
    /// As [`Backend::lock`]: the lock was initialised.
    unsafe fn lock(ptr: *mut Self::State) -> Self::GuardState {
        // SAFETY: the caller guarantees an initialised lock; the two
        // bindings name the same C type.
        unsafe { bindings::vhost_mdev_helper_spin_lock_irqsave(ptr.cast()) }
    }

    /// # Safety
    ///
    /// As [`Backend::unlock`]: the caller owns the lock.
    unsafe fn unlock(ptr: *mut Self::State, flags: &Self::GuardState) {
        // SAFETY: the caller owns the lock; `flags` is what its `lock`
        // saved.
        unsafe { bindings::vhost_mdev_helper_spin_unlock_irqrestore(ptr.cast(), *flags) }
    }
}
