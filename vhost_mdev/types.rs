// SPDX-License-Identifier: GPL-2.0

//! mdev types and their instance accounting.
//!
//! C header: [`include/linux/mdev.h`](srctree/include/linux/mdev.h).
//!
//! mdev enforces no limit of its own when the driver has `get_available`:
//! a type counts its instances here, reserved in the driver's `probe` and
//! given back in its `remove`.

use crate::bindings;
use crate::errno::{eusers, EINVAL};
use core::sync::atomic::{AtomicU32, Ordering};
use kernel::c_str;
use kernel::ffi::{c_char, c_uint};
use kernel::prelude::*;
use kernel::types::Opaque;

/// One mdev type of a parent.
///
/// # Invariants
///
/// `description` is null or a NUL-terminated string of the parent driver
/// that outlives the parent's registration.
#[repr(C)]
pub(crate) struct MdevType {
    mtype: Opaque<bindings::mdev_type>,
    /// The type's index in the parent's type table.
    index: u32,
    /// Instances of this type that may exist at once.
    max: u32,
    description: *const c_char,
    /// Instances of this type that exist (reserved in probe).
    used: AtomicU32,
}

impl MdevType {
    /// A type for entry `index` of a parent's type table.
    ///
    /// Fails with `EINVAL` if the entry has no name or no instances.
    pub(crate) fn new(ti: &bindings::vhost_mdev_type_info, index: u32) -> Result<Pin<KBox<Self>>> {
        if ti.sysfs_name.is_null() || ti.max_instances == 0 {
            return Err(EINVAL);
        }
        // INVARIANT: the parent driver's strings outlive its registration
        // (the contract of `vhost_mdev_register_parent()`).
        Ok(KBox::pin(
            MdevType {
                // mdev expects the driver to set the names and zero the rest.
                mtype: Opaque::new(bindings::mdev_type {
                    sysfs_name: ti.sysfs_name,
                    pretty_name: ti.pretty_name,
                    ..Default::default()
                }),
                index,
                max: ti.max_instances,
                description: ti.description,
                used: AtomicU32::new(0),
            },
            GFP_KERNEL,
        )?)
    }

    /// The `struct mdev_type` to register.
    pub(crate) fn as_raw(&self) -> *mut bindings::mdev_type {
        self.mtype.get()
    }

    /// Converts an mdev type of ours back to its `MdevType`.
    ///
    /// # Safety
    ///
    /// `mtype` must be the `mtype` of a live `MdevType`.
    pub(crate) unsafe fn from_raw<'a>(mtype: *mut bindings::mdev_type) -> &'a Self {
        // SAFETY: the caller guarantees `mtype` is the `mtype` field of a
        // live `MdevType`.
        unsafe { &*kernel::container_of!(mtype, MdevType, mtype) }
    }

    /// The type's index in its parent's type table.
    pub(crate) fn index(&self) -> u32 {
        self.index
    }

    /// Reserves an instance of the type; `EUSERS` when none is left.
    pub(crate) fn reserve(&self) -> Result {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |u| {
                (u < self.max).then_some(u + 1)
            })
            .map(|_| ())
            .map_err(|_| eusers())
    }

    /// Gives back what [`Self::reserve`] reserved.
    pub(crate) fn unreserve(&self) {
        self.used.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `mdev_driver.get_available`: instances of the type that may still be created.
///
/// # Safety
///
/// Called by the mdev core with a type of one of our parents.
pub(crate) unsafe extern "C" fn get_available(mtype: *mut bindings::mdev_type) -> c_uint {
    // SAFETY: the mdev core calls this only for types registered by our
    // parents, which live until the mdev core's last release of them.
    let t = unsafe { MdevType::from_raw(mtype) };
    t.max.saturating_sub(t.used.load(Ordering::Relaxed))
}

/// `mdev_driver.show_description`: the type's description.
///
/// # Safety
///
/// Called by the mdev core with a type of one of our parents and a sysfs
/// page.
pub(crate) unsafe extern "C" fn show_description(
    mtype: *mut bindings::mdev_type,
    buf: *mut c_char,
) -> isize {
    // SAFETY: as in `get_available`.
    let t = unsafe { MdevType::from_raw(mtype) };
    if t.description.is_null() {
        return 0;
    }
    // SAFETY: `buf` is a sysfs page; `description` is a NUL-terminated
    // string (type invariant); "%s\n" consumes one string argument.
    unsafe { bindings::sysfs_emit(buf, c_str!("%s\n").as_char_ptr(), t.description) as isize }
}
