// SPDX-License-Identifier: GPL-2.0

//! The core's own fault points, on the kernel's fault injection
//! (`Documentation/fault-injection/fault-injection.rst`).
//!
//! A parent's data path runs in its worker, a task that a test's
//! `/proc/thread-self/fail-nth` never reaches, and its DMA never allocates:
//! the kernel's `failslab` and `fail_usercopy` cannot make it fail. These
//! points can: each is a `struct fault_attr` (defined in C by
//! `vhost_mdev/shim.c`, as `DECLARE_FAULT_ATTR`'s initializer is a C
//! macro) that [`should_fail`] asks, configured under
//! `/sys/kernel/debug/vhost_mdev/` ([`Registration`]) like the kernel's
//! own (`probability`, `interval`, `times`, `verbose`, `task-filter`, the
//! stack filter). A task's `fail-nth` counts them as well, in process
//! context.
//!
//! Without `CONFIG_FAULT_INJECTION` (the release kernel) every point is a
//! constant `false` and [`Registration`] holds nothing: no code is left in
//! the data path.

use kernel::str::CStr;

#[cfg(CONFIG_FAULT_INJECTION)]
use crate::bindings;

/// One fault point of the core. The discriminant is the index that
/// `vhost_mdev_fault_attr()` (`vhost_mdev/shim.c`) takes.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Point {
    /// `vhost_mdev_dma_rw()` fails with `EFAULT`, as for an IOVA that is
    /// not mapped (`fail_dma`).
    Dma = 0,
    /// A pin fails with `ENOMEM`, as at the `RLIMIT_MEMLOCK` limit: the pin
    /// cache's, and `vhost_mdev_dma_pin()`'s (`fail_pin`).
    Pin = 1,
    /// The pin cache cannot serve a copy (a page at a time): the access
    /// falls back to `vfio_dma_rw()`, a copy to the parent's bounce buffer
    /// (`fail_copy`).
    Copy = 2,
}

impl Point {
    /// Every point, in index order.
    pub const ALL: [Point; 3] = [Point::Dma, Point::Pin, Point::Copy];

    /// The point's directory under the debugfs directory of the module.
    pub fn name(self) -> &'static CStr {
        match self {
            Point::Dma => kernel::c_str!("fail_dma"),
            Point::Pin => kernel::c_str!("fail_pin"),
            Point::Copy => kernel::c_str!("fail_copy"),
        }
    }
}

/// Whether the caller is to fail at `point` now: `should_fail()` on the
/// point's attribute. Always `false` without `CONFIG_FAULT_INJECTION`.
#[inline]
pub fn should_fail(point: Point) -> bool {
    #[cfg(CONFIG_FAULT_INJECTION)]
    {
        // SAFETY: returns the address of a static attribute, or null.
        let attr = unsafe { bindings::vhost_mdev_fault_attr(point as u32) };
        // `should_fail()` may be called in any context and does its own
        // synchronisation.
        // SAFETY: `attr` is a static `fault_attr` from `DECLARE_FAULT_ATTR`,
        // which lives as long as the module, so as long as any caller.
        !attr.is_null() && unsafe { bindings::should_fail(attr, 1) }
    }
    #[cfg(not(CONFIG_FAULT_INJECTION))]
    {
        let _ = point;
        false
    }
}

/// The debugfs directory of the fault points, `/sys/kernel/debug/NAME/`
/// with one directory per [`Point`]; removed on drop.
///
/// # Invariants
///
/// `dir` is null or a directory returned by `debugfs_create_dir()` and not
/// removed yet, whose files describe static attributes only.
pub struct Registration {
    #[cfg(CONFIG_FAULT_INJECTION_DEBUG_FS)]
    dir: *mut bindings::dentry,
}

// SAFETY: the dentry pointer is only passed back to `debugfs_remove()`,
// which may be called from any thread.
unsafe impl Send for Registration {}
// SAFETY: no method takes `&self`.
unsafe impl Sync for Registration {}

impl Registration {
    /// Creates the directory `name` and the points' attributes in it.
    /// Debugfs failures are not errors (as everywhere in the kernel): the
    /// points then stay at their defaults, which never fail.
    pub fn new(name: &'static CStr) -> Self {
        #[cfg(CONFIG_FAULT_INJECTION_DEBUG_FS)]
        {
            // SAFETY: a valid name; a null parent is the debugfs root.
            let dir =
                unsafe { bindings::debugfs_create_dir(name.as_char_ptr(), core::ptr::null_mut()) };
            let dir = kernel::error::from_err_ptr(dir).unwrap_or(core::ptr::null_mut());
            if !dir.is_null() {
                for p in Point::ALL {
                    // SAFETY: returns the address of a static attribute, or
                    // null.
                    let attr = unsafe { bindings::vhost_mdev_fault_attr(p as u32) };
                    if attr.is_null() {
                        continue;
                    }
                    // SAFETY: `dir` is ours; `attr` is static, so it
                    // outlives the files, removed with `dir` on drop. A
                    // failure leaves the point at its default.
                    unsafe {
                        bindings::fault_create_debugfs_attr(p.name().as_char_ptr(), dir, attr)
                    };
                }
            }
            // INVARIANT: null, or the directory created above.
            Self { dir }
        }
        #[cfg(not(CONFIG_FAULT_INJECTION_DEBUG_FS))]
        {
            let _ = name;
            Self {}
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        #[cfg(CONFIG_FAULT_INJECTION_DEBUG_FS)]
        if !self.dir.is_null() {
            // SAFETY: created in `new` and not removed since (type
            // invariant); removes the points' files too.
            unsafe { bindings::debugfs_remove(self.dir) };
        }
    }
}
