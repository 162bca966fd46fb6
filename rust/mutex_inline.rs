// SPDX-License-Identifier: GPL-2.0

//! A mutex whose lock and unlock are inline calls of `mutex_lock()` and
//! `mutex_unlock()`, for a lock the data path takes per access.
//!
//! C header: [`include/linux/mutex.h`](srctree/include/linux/mutex.h).
//!
//! 6.12's `kernel::sync::Mutex` is the same [`Lock`] with the kernel
//! crate's `MutexBackend`, whose `lock` and `unlock` are out-of-line
//! functions of that crate around the C calls: two calls more per
//! lock/unlock pair. The C side (lockdep included) is the same.

use kernel::ffi::c_char;
use kernel::sync::lock::{Backend, Lock};

/// A sleeping mutex, as `kernel::sync::Mutex`, with inline lock and unlock.
pub type InlineMutex<T> = Lock<T, InlineMutexBackend>;

/// Creates an [`InlineMutex`] initialiser with the given name and a new
/// lock class.
macro_rules! new_inline_mutex {
    ($inner:expr $(, $name:literal)? $(,)?) => {
        $crate::mutex_inline::InlineMutex::new(
            $inner,
            kernel::optional_name!($($name)?),
            kernel::static_lock_class!(),
        )
    };
}
pub(crate) use new_inline_mutex;

/// The [`Backend`] of [`InlineMutex`].
pub struct InlineMutexBackend;

// SAFETY: `mutex_lock()` gives mutual exclusion until `mutex_unlock()`;
// `relock` uses the default, which locks the same way.
unsafe impl Backend for InlineMutexBackend {
    type State = kernel::bindings::mutex;
    type GuardState = ();

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
        unsafe { kernel::bindings::__mutex_init(ptr, name, key) }
    }

    /// # Safety
    ///
    /// As [`Backend::lock`]: the lock was initialised.
    #[inline(always)]
    unsafe fn lock(ptr: *mut Self::State) -> Self::GuardState {
        // SAFETY: the caller guarantees an initialised mutex.
        unsafe { kernel::bindings::mutex_lock(ptr) };
    }

    /// # Safety
    ///
    /// As [`Backend::unlock`]: the caller owns the lock.
    #[inline(always)]
    unsafe fn unlock(ptr: *mut Self::State, _guard_state: &Self::GuardState) {
        // SAFETY: the caller owns the mutex.
        unsafe { kernel::bindings::mutex_unlock(ptr) };
    }
}
