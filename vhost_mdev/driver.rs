// SPDX-License-Identifier: GPL-2.0

//! The core's mdev driver (`device_api` "vfio-vhost"): every mdev of a
//! parent's type is probed here and becomes an instance.

use crate::bindings;
use crate::lifecycle;
use crate::mdev::{self, Registration};
use crate::parent::{self, Parent};
use crate::types::MdevType;
use kernel::c_str;
use kernel::prelude::*;

/// The core's mdev driver.
pub(crate) struct Core;

/// The core's mdev driver, registered for the module's lifetime.
static DRIVER: Registration<Core> = Registration::new();

impl mdev::Driver for Core {
    type ParentData = Parent;
    type TypeData = MdevType;

    /// Creates the instance of a new mdev.
    fn probe(parent: &Parent, ty: &MdevType, mdev: &mdev::Device) -> Result {
        // Reserve an instance of the type: mdev enforces no limit itself
        // when `get_available` is set.
        ty.reserve()?;
        let r = lifecycle::create(parent, mdev, ty.index());
        if r.is_err() {
            ty.unreserve();
        }
        r
    }

    /// Removes the instance of an mdev.
    fn remove(_parent: &Parent, ty: &MdevType, mdev: &mdev::Device) {
        // SAFETY: `probe` succeeded for `mdev`, so the instance exists.
        unsafe { lifecycle::destroy(mdev) };
        ty.unreserve();
    }

    fn available(ty: &MdevType) -> u32 {
        ty.available()
    }

    fn description(ty: &MdevType) -> Option<&CStr> {
        ty.description()
    }
}

/// Registers the core's mdev driver.
pub(crate) fn register(module: &'static ThisModule) -> Result {
    DRIVER.register(c_str!("vhost_mdev"), c_str!("vfio-vhost"), module)
}

/// Unregisters the core's mdev driver, after every parent was released.
/// No parent may be registered (each parent module holds a reference on
/// the core, so none is).
pub(crate) fn unregister() {
    DRIVER.unregister();
}

/// Registers a parent driver's parent; see `include/linux/vhost_mdev.h`.
/// Its device is a child of `on` unless that is null.
///
/// # Safety
///
/// `info` must be valid and everything it points to must outlive the
/// registration; `on` is null or a registered device that stays registered
/// until the parent is unregistered.
pub(crate) unsafe fn register_parent(
    info: &bindings::vhost_mdev_parent_info,
    on: *mut bindings::device,
) -> Result<mdev::Parent<Core>> {
    // SAFETY: guaranteed by the caller.
    let data = unsafe { Parent::new(info) }?;
    // SAFETY: checked by `Parent::new`; the names and the type table
    // outlive the registration (the caller guarantees).
    let (types, name) = unsafe { (parent::types(info)?, CStr::from_char_ptr(info.name)) };
    // SAFETY: as above.
    unsafe { mdev::Parent::register(&DRIVER, name, types, data, on) }
}
