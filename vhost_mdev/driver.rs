// SPDX-License-Identifier: GPL-2.0

//! The core's mdev driver (`device_api` "vfio-vhost"): every mdev of a
//! parent's type is probed here and becomes an instance.
//!
//! C header: [`include/linux/mdev.h`](srctree/include/linux/mdev.h).

use crate::bindings;
use crate::lifecycle;
use crate::live;
use crate::parent::Parent;
use crate::types::{self, MdevType};
use kernel::c_str;
use kernel::error::to_result;
use kernel::prelude::*;
use kernel::types::Opaque;

/// The core's mdev driver, registered for the module's lifetime.
struct DriverCell(Opaque<bindings::mdev_driver>);

// SAFETY: the driver is written once in `register`, before it is
// registered, and afterwards only read (by the mdev core and by
// `mdev_register_parent`).
unsafe impl Sync for DriverCell {}

static DRIVER: DriverCell = DriverCell(Opaque::uninit());

const DRIVER_NAME: &CStr = c_str!("vhost_mdev");
const DEVICE_API: &CStr = c_str!("vfio-vhost");

/// Registers the core's mdev driver.
pub(crate) fn register(module: &'static ThisModule) -> Result {
    let drv = DRIVER.0.get();
    // SAFETY: the driver is not registered yet, so nothing else accesses
    // it; `drv` points to static storage of the right type.
    unsafe {
        drv.write(bindings::mdev_driver {
            device_api: DEVICE_API.as_char_ptr(),
            max_instances: 0,
            probe: Some(probe),
            remove: Some(remove),
            get_available: Some(types::get_available),
            show_description: Some(types::show_description),
            ..Default::default()
        });
        (*drv).driver.name = DRIVER_NAME.as_char_ptr();
        (*drv).driver.owner = module.as_ptr().cast();
        (*drv).driver.mod_name = DRIVER_NAME.as_char_ptr();
    }
    // SAFETY: `drv` is fully initialised and lives as long as the module;
    // it is unregistered in `unregister` before the module goes.
    to_result(unsafe { bindings::mdev_register_driver(drv) })
}

/// The registered driver, for parents to register with.
pub(crate) fn as_raw() -> *mut bindings::mdev_driver {
    DRIVER.0.get()
}

/// Unregisters the core's mdev driver, after every parent and instance was
/// released. No parent may be registered (each parent module holds a
/// reference on the core, so none is).
pub(crate) fn unregister() {
    live::wait_idle();
    // SAFETY: registered by `register`, as module init succeeded.
    unsafe { bindings::mdev_unregister_driver(DRIVER.0.get()) };
}

/// `mdev_driver.probe`: creates the instance of a new mdev.
///
/// # Safety
///
/// Called by the mdev core with a live mdev of one of our parents' types.
unsafe extern "C" fn probe(mdev: *mut bindings::mdev_device) -> i32 {
    // SAFETY: the mdev core passes a live mdev device whose type belongs to
    // one of our parents (the type's parent was registered with our driver).
    let (t, parent) = unsafe {
        (
            MdevType::from_raw((*mdev).type_),
            Parent::of_type((*mdev).type_),
        )
    };
    // Reserve an instance of the type: mdev enforces no limit itself when
    // `get_available` is set.
    if let Err(e) = t.reserve() {
        return e.to_errno();
    }
    // SAFETY: `mdev` is live for the call, of a type of `parent` (the mdev
    // core holds `unreg_sem` for read during probe).
    match unsafe { lifecycle::create(parent, mdev, t.index()) } {
        Ok(()) => 0,
        Err(e) => {
            t.unreserve();
            e.to_errno()
        }
    }
}

/// `mdev_driver.remove`: removes the instance of an mdev.
///
/// # Safety
///
/// Called by the mdev core for an mdev whose `probe` succeeded.
unsafe extern "C" fn remove(mdev: *mut bindings::mdev_device) {
    // SAFETY: as in `probe`; `remove` is only called after a successful
    // `probe`.
    let t = unsafe { MdevType::from_raw((*mdev).type_) };
    // SAFETY: `probe` succeeded, so the instance exists.
    unsafe { lifecycle::destroy(mdev) };
    t.unreserve();
}
