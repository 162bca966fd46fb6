// SPDX-License-Identifier: GPL-2.0

//! The core's data of an mdev type: its instance accounting.
//!
//! mdev enforces no limit of its own when the driver has `get_available`:
//! a type counts its instances here, reserved in the driver's `probe` and
//! given back in its `remove`.

use crate::bindings;
use crate::errno::{eusers, EINVAL};
use core::sync::atomic::{AtomicU32, Ordering};
use kernel::ffi::c_char;
use kernel::prelude::*;

/// One mdev type of a parent.
///
/// # Invariants
///
/// `description` is null or a NUL-terminated string of the parent driver
/// that outlives the parent's registration.
pub(crate) struct MdevType {
    /// The type's index in the parent's type table.
    index: u32,
    /// Instances of this type that may exist at once.
    max: u32,
    description: *const c_char,
    /// Instances of this type that exist (reserved in probe).
    used: AtomicU32,
}

// SAFETY: `description` points to an immutable string of the parent driver,
// readable from any thread; the rest is immutable or atomic.
unsafe impl Sync for MdevType {}

impl MdevType {
    /// The type of entry `index` of a parent's type table.
    ///
    /// Fails with `EINVAL` if the entry has no name or no instances.
    pub(crate) fn new(ti: &bindings::vhost_mdev_type_info, index: u32) -> Result<Self> {
        if ti.sysfs_name.is_null() || ti.max_instances == 0 {
            return Err(EINVAL);
        }
        // INVARIANT: the parent driver's strings outlive its registration
        // (the contract of `vhost_mdev_register_parent()`).
        Ok(MdevType {
            index,
            max: ti.max_instances,
            description: ti.description,
            used: AtomicU32::new(0),
        })
    }

    /// The type's index in its parent's type table.
    pub(crate) fn index(&self) -> u32 {
        self.index
    }

    /// Instances of the type that may still be created.
    pub(crate) fn available(&self) -> u32 {
        self.max.saturating_sub(self.used.load(Ordering::Relaxed))
    }

    /// The type's description, if the parent driver gave one.
    pub(crate) fn description(&self) -> Option<&CStr> {
        if self.description.is_null() {
            return None;
        }
        // SAFETY: a NUL-terminated string that outlives the registration,
        // and so every use of the type (type invariant).
        Some(unsafe { CStr::from_char_ptr(self.description) })
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
