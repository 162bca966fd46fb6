// SPDX-License-Identifier: GPL-2.0

//! Eventfd contexts.
//!
//! C header: [`include/linux/eventfd.h`](srctree/include/linux/eventfd.h)

use crate::bindings;
use crate::errno::EBADF;
use core::ptr::NonNull;
use kernel::error::{from_err_ptr, Result};

/// A reference to an eventfd context, taken from a file descriptor.
///
/// # Invariants
///
/// `ctx` is a valid `struct eventfd_ctx` on which this object holds one
/// reference (from `eventfd_ctx_fdget`), dropped in `drop`.
pub struct EventFd {
    ctx: NonNull<bindings::eventfd_ctx>,
}

// SAFETY: an eventfd context is reference counted and its operations
// (`eventfd_signal`, `eventfd_ctx_put`) may be called from any thread.
unsafe impl Send for EventFd {}
// SAFETY: `signal` takes `&self` and is safe to call concurrently.
unsafe impl Sync for EventFd {}

impl EventFd {
    /// Takes a reference to the eventfd behind `fd` of the current task.
    ///
    /// Fails with `EBADF` if `fd` is not open and `EINVAL` if it is not an
    /// eventfd.
    pub fn from_fd(fd: i32) -> Result<Self> {
        // SAFETY: `eventfd_ctx_fdget` accepts any fd value and returns a
        // context with a new reference or an `ERR_PTR`.
        let ptr = from_err_ptr(unsafe { bindings::eventfd_ctx_fdget(fd) })?;
        let ctx = NonNull::new(ptr).ok_or(EBADF)?;
        // INVARIANT: `eventfd_ctx_fdget` returned a referenced context.
        Ok(Self { ctx })
    }

    /// Adds one to the eventfd's counter and wakes its waiters.
    ///
    /// Must not be called from inside another eventfd's wake-up (the kernel
    /// WARNs on such nesting): callers in that context queue work instead.
    pub fn signal(&self) {
        // SAFETY: by the type invariant `ctx` is a valid, referenced context.
        unsafe { bindings::vhost_mdev_helper_eventfd_signal(self.ctx.as_ptr()) };
    }
}

impl Drop for EventFd {
    fn drop(&mut self) {
        // SAFETY: by the type invariant this object owns one reference.
        unsafe { bindings::eventfd_ctx_put(self.ctx.as_ptr()) };
    }
}
