// SPDX-License-Identifier: GPL-2.0

//! Parents: what a parent driver registers, with its mdev types.
//!
//! C headers: [`include/linux/mdev.h`](srctree/include/linux/mdev.h),
//! [`include/linux/vhost_mdev.h`](../include/linux/vhost_mdev.h).

use crate::bindings;
use crate::errno::EINVAL;
use crate::live;
use crate::types::MdevType;
use core::ptr;
use kernel::c_str;
use kernel::error::{from_err_ptr, to_result};
use kernel::prelude::*;
use kernel::types::Opaque;

/// A registered parent: what `vhost_mdev_register_parent()` returns.
///
/// # Invariants
///
/// `mdev_parent` is registered with the mdev core from the end of
/// [`Parent::register`] until [`Parent::unregister`]; `types` and
/// `type_ptrs` are never reallocated after registration; `info` and
/// everything it points to outlive the registration (the parent driver's
/// contract), and are not used after it.
///
/// Once `dev` is initialised, the device's reference count owns the
/// parent: the mdev core holds a reference on `dev` for each mdev type
/// until `mdev_type_release()` (and each mdev device holds its type until
/// `mdev_device_release()`, which reads `mdev_parent`), and the device's
/// release ([`parent_dev_release`]) frees the parent. So the types and
/// `mdev_parent` live until the mdev core's last release of them, however
/// late that comes after unregistration.
#[repr(C)]
pub(crate) struct Parent {
    mdev_parent: Opaque<bindings::mdev_parent>,
    pub(crate) info: bindings::vhost_mdev_parent_info,
    class: *mut bindings::class,
    /// The parent device, on a class of the parent's name.
    dev: Opaque<bindings::device>,
    types: KVec<Pin<KBox<MdevType>>>,
    type_ptrs: KVec<*mut bindings::mdev_type>,
}

/// Whether the ops table has every op the core requires.
fn ops_complete(ops: &bindings::vhost_mdev_device_ops) -> bool {
    let required = [
        ops.get_device_id.is_some(),
        ops.get_vendor_id.is_some(),
        ops.get_device_features.is_some(),
        ops.set_driver_features.is_some(),
        ops.get_config_size.is_some(),
        ops.get_config.is_some(),
        ops.set_config.is_some(),
        ops.get_vq_count.is_some(),
        ops.get_vq_num_max.is_some(),
        ops.set_vq_num.is_some(),
        ops.set_vq_address.is_some(),
        ops.set_vq_ready.is_some(),
        ops.set_vq_base.is_some(),
        ops.get_vq_base.is_some(),
        ops.kick_vq.is_some(),
        ops.start.is_some(),
        ops.reset.is_some(),
        ops.destroy.is_some(),
    ];
    required.iter().all(|present| *present)
}

impl Parent {
    /// The parent's device ops.
    pub(crate) fn ops(&self) -> &bindings::vhost_mdev_device_ops {
        // SAFETY: checked non-null at registration; by the type invariant it
        // outlives the registration, and so every instance.
        unsafe { &*self.info.ops }
    }

    /// The parent that registered the mdev type `mtype`.
    ///
    /// # Safety
    ///
    /// `mtype` must be a type of one of our parents, registered (the mdev
    /// core sets its `parent` at registration).
    pub(crate) unsafe fn of_type<'a>(mtype: *mut bindings::mdev_type) -> &'a Parent {
        // SAFETY: the mdev core set `parent` to our `mdev_parent`, a field
        // of a `Parent` that lives while the type is registered.
        unsafe { &*kernel::container_of!((*mtype).parent, Parent, mdev_parent) }
    }

    /// Creates and registers a parent with the mdev driver `driver`; see
    /// `include/linux/vhost_mdev.h`.
    ///
    /// # Safety
    ///
    /// `driver` must be registered until the parent's last release (module
    /// exit waits for it, see [`crate::live`]); everything `info` points to
    /// must outlive the registration.
    pub(crate) unsafe fn register(
        info: &bindings::vhost_mdev_parent_info,
        driver: *mut bindings::mdev_driver,
    ) -> Result<*mut Parent> {
        if info.name.is_null() || info.ops.is_null() || info.create.is_none() {
            return Err(EINVAL);
        }
        if info.types.is_null() || info.ntypes == 0 || info.ntypes > 64 {
            return Err(EINVAL);
        }
        // SAFETY: checked non-null; the caller guarantees `ops` is valid.
        if !ops_complete(unsafe { &*info.ops }) {
            return Err(EINVAL);
        }

        let mut parent = KBox::new(
            Parent {
                mdev_parent: Opaque::uninit(),
                info: *info,
                class: ptr::null_mut(),
                dev: Opaque::uninit(),
                types: KVec::new(),
                type_ptrs: KVec::new(),
            },
            GFP_KERNEL,
        )?;
        for i in 0..info.ntypes {
            // SAFETY: `i < ntypes`; the caller guarantees `types` has
            // `ntypes` entries.
            let mt = MdevType::new(unsafe { &*info.types.add(i as usize) }, i)?;
            parent.type_ptrs.push(mt.as_raw(), GFP_KERNEL)?;
            parent.types.push(mt, GFP_KERNEL)?;
        }

        // The parent device, on a class of the parent's name, so that mdev
        // names the types "<name>-<sysfs_name>".
        // SAFETY: `name` is a NUL-terminated string (checked non-null).
        let class = from_err_ptr(unsafe { bindings::class_create(info.name) })?;
        parent.class = class;
        let dev = parent.dev.get();
        // From here the device's reference count owns the parent: every
        // error path puts the device, whose release frees it.
        let parent = KBox::into_raw(parent);
        live::get();
        // SAFETY: `dev` is the parent's own device, zeroed before
        // `device_initialize()` as the driver core requires; the release
        // frees the parent, which `into_raw` handed over.
        unsafe {
            ptr::write_bytes(dev, 0, 1);
            bindings::device_initialize(dev);
            (*dev).class = class;
            (*dev).release = Some(parent_dev_release);
        }
        let fail = |e: Error, added: bool| -> Result<*mut Parent> {
            // SAFETY: `dev` is initialised; deleting it if added and putting
            // our reference frees the parent (release); nothing else holds
            // one. The class has no device left.
            unsafe {
                if added {
                    bindings::device_unregister(dev);
                } else {
                    bindings::put_device(dev);
                }
                bindings::class_destroy(class);
            }
            Err(e)
        };
        // SAFETY: `dev` is initialised; "%s" consumes one string.
        let r = unsafe { bindings::dev_set_name(dev, c_str!("%s").as_char_ptr(), info.name) };
        if r != 0 {
            return fail(Error::from_errno(r), false);
        }
        // SAFETY: `dev` is initialised and named.
        let r = unsafe { bindings::device_add(dev) };
        if r != 0 {
            return fail(Error::from_errno(r), false);
        }
        // SAFETY: `mdev_parent` lives in the parent until the device's
        // release, after unregistration; `dev` and the types are valid;
        // `driver` is registered (the caller guarantees).
        let ret = unsafe {
            bindings::mdev_register_parent(
                (*parent).mdev_parent.get(),
                dev,
                driver,
                (*parent).type_ptrs.as_mut_ptr(),
                info.ntypes,
            )
        };
        if let Err(e) = to_result(ret) {
            return fail(e, true);
        }
        Ok(parent)
    }

    /// Removes every instance (waiting for their users to close them, after
    /// signalling the request IRQ) and the parent. The parent's memory goes
    /// later, with the mdev core's last reference to it; nothing of the
    /// parent driver is used after this returns.
    ///
    /// # Safety
    ///
    /// `parent` must have been returned by [`Parent::register`] and not
    /// unregistered yet.
    pub(crate) unsafe fn unregister(parent: *mut Parent) {
        // Our reference to the device goes last: the types' and mdev
        // devices' references keep the parent until their releases.
        // SAFETY: registered, by the type invariant; this removes every
        // instance (their `remove` runs before it returns).
        unsafe {
            let class = (*parent).class;
            bindings::mdev_unregister_parent((*parent).mdev_parent.get());
            bindings::device_unregister((*parent).dev.get());
            bindings::class_destroy(class);
        }
    }
}

/// The release of a parent's device: frees the parent, once the mdev core
/// released every type and mdev device of it (each holds a reference).
///
/// # Safety
///
/// Called by the driver core once, when the last reference to the `dev` of
/// a `Parent` that `register` handed to the device goes.
unsafe extern "C" fn parent_dev_release(dev: *mut bindings::device) {
    // SAFETY: `dev` is the `dev` field of a `Parent` from `KBox::into_raw`
    // (the only devices with this release); nothing uses the parent any
    // more (the last reference went).
    drop(unsafe { KBox::from_raw(kernel::container_of!(dev, Parent, dev).cast_mut()) });
    live::put();
}
