// SPDX-License-Identifier: GPL-2.0

//! Parents, mdev types and the core's mdev driver.
//!
//! C headers: [`include/linux/mdev.h`](srctree/include/linux/mdev.h),
//! [`include/linux/vhost_mdev.h`](../include/linux/vhost_mdev.h).

use crate::bindings;
use crate::device::Instance;
use core::ptr;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use kernel::c_str;
use kernel::error::{code::*, from_err_ptr, to_result};
use kernel::ffi::{c_char, c_uint};
use kernel::prelude::*;
use kernel::types::Opaque;

/// The core's mdev driver, registered for the module's lifetime.
struct DriverCell(Opaque<bindings::mdev_driver>);

// SAFETY: the driver is written once in `register_driver`, before it is
// registered, and afterwards only read (by the mdev core and by
// `mdev_register_parent`).
unsafe impl Sync for DriverCell {}

static DRIVER: DriverCell = DriverCell(Opaque::uninit());

const DRIVER_NAME: &CStr = c_str!("vhost_mdev");
const DEVICE_API: &CStr = c_str!("vfio-vhost");

/// Registers the core's mdev driver.
pub(crate) fn register_driver(module: &'static ThisModule) -> Result {
    let drv = DRIVER.0.get();
    // SAFETY: the driver is not registered yet, so nothing else accesses
    // it; `drv` points to static storage of the right type.
    unsafe {
        drv.write(bindings::mdev_driver {
            device_api: DEVICE_API.as_char_ptr(),
            max_instances: 0,
            probe: Some(probe),
            remove: Some(remove),
            get_available: Some(get_available),
            show_description: Some(show_description),
            ..Default::default()
        });
        (*drv).driver.name = DRIVER_NAME.as_char_ptr();
        (*drv).driver.owner = module.as_ptr().cast();
        (*drv).driver.mod_name = DRIVER_NAME.as_char_ptr();
    }
    // SAFETY: `drv` is fully initialised and lives as long as the module;
    // it is unregistered in `unregister_driver` before the module goes.
    to_result(unsafe { bindings::mdev_register_driver(drv) })
}

/// Objects whose release callback is code of this module (or reads its
/// data: the mdev core's `mdev_device_release()` reads `DRIVER`) and that
/// may outlive their unregistration: parents (freed by their device's
/// release, after the last mdev type and mdev device of the parent is
/// released) and instances (the VFIO device's `release`). Their releases
/// can come late: any holder of a reference delays them (the VM suite's
/// late-release test holds them with `tests/kmod/late_ref.ko`). Module exit
/// waits until the count is zero.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Counts an object whose release runs code of this module.
pub(crate) fn live_get() {
    LIVE.fetch_add(1, Ordering::AcqRel);
}

/// Ends what `live_get` counted: the last thing such a release does.
///
/// Module exit may free the module once the count is zero; what the caller
/// still runs is its own return. `free_module()` calls `synchronize_rcu()`
/// before it frees the module's memory, which waits for that return on a
/// kernel without preemption, and leaves only a preemption between these
/// instructions and the caller's `ret` on the others, as for every module
/// whose release callbacks drop the last reference to it.
pub(crate) fn live_put() {
    LIVE.fetch_sub(1, Ordering::AcqRel);
}

/// Unregisters the core's mdev driver, after every parent and instance was
/// released. No parent may be registered (each parent module holds a
/// reference on the core, so none is).
pub(crate) fn unregister_driver() {
    let mut waited = 0u32;
    while LIVE.load(Ordering::Acquire) != 0 {
        if waited == 100 {
            pr_info!("vhost-mdev: waiting for released instances and parents to be freed\n");
        }
        // SAFETY: module exit runs in process context.
        unsafe { bindings::msleep(10) };
        waited = waited.saturating_add(1);
    }
    // SAFETY: registered by `register_driver`, as module init succeeded.
    unsafe { bindings::mdev_unregister_driver(DRIVER.0.get()) };
}

/// One mdev type of a parent.
///
/// `mtype` is the first field so that a `struct mdev_type *` of ours can be
/// converted back (`#[repr(C)]`).
#[repr(C)]
struct MdevType {
    mtype: Opaque<bindings::mdev_type>,
    parent: *const Parent,
    index: u32,
    max: u32,
    /// Instances of this type that exist (reserved in probe).
    used: AtomicU32,
}

/// A registered parent: what `vhost_mdev_register_parent()` returns.
///
/// # Invariants
///
/// `mdev_parent` is registered with the mdev core from the end of
/// `vhost_mdev_register_parent()` until `vhost_mdev_unregister_parent()`;
/// `types` and `type_ptrs` are never reallocated after registration;
/// `info` and everything it points to outlive the registration (the parent
/// driver's contract), and are not used after it.
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

impl Parent {
    /// The parent's device ops.
    pub(crate) fn ops(&self) -> &bindings::vhost_mdev_device_ops {
        // SAFETY: checked non-null at registration; by the type invariant it
        // outlives the registration, and so every instance.
        unsafe { &*self.info.ops }
    }
}

/// Converts an mdev type of ours back to its `MdevType`.
///
/// # Safety
///
/// `mtype` must be the `mtype` field of a live `MdevType`.
unsafe fn mdev_type_of<'a>(mtype: *mut bindings::mdev_type) -> &'a MdevType {
    // SAFETY: `mtype` is the first field of the `#[repr(C)]` `MdevType`, so
    // the pointers are equal; the caller guarantees it is live.
    unsafe { &*mtype.cast::<MdevType>() }
}

/// `mdev_driver.get_available`: instances of the type that may still be created.
///
/// # Safety
///
/// Called by the mdev core with a type of one of our parents.
unsafe extern "C" fn get_available(mtype: *mut bindings::mdev_type) -> c_uint {
    // SAFETY: the mdev core calls this only for types registered by our
    // parents, which live until `mdev_unregister_parent()` returns.
    let t = unsafe { mdev_type_of(mtype) };
    t.max.saturating_sub(t.used.load(Ordering::Relaxed))
}

/// `mdev_driver.show_description`: the type's description.
///
/// # Safety
///
/// Called by the mdev core with a type of one of our parents and a sysfs
/// page.
unsafe extern "C" fn show_description(mtype: *mut bindings::mdev_type, buf: *mut c_char) -> isize {
    // SAFETY: as in `get_available`.
    let t = unsafe { mdev_type_of(mtype) };
    // SAFETY: `t.parent` is valid while its types are registered.
    let parent = unsafe { &*t.parent };
    // SAFETY: `index < ntypes` was set at registration; `types` is valid by
    // the type invariant of `Parent`.
    let desc = unsafe { (*parent.info.types.add(t.index as usize)).description };
    if desc.is_null() {
        return 0;
    }
    // SAFETY: `buf` is a sysfs page; `desc` is a NUL-terminated string of
    // the parent driver; "%s\n" consumes one string argument.
    unsafe { bindings::sysfs_emit(buf, c_str!("%s\n").as_char_ptr(), desc) as isize }
}

/// `mdev_driver.probe`: creates the instance of a new mdev.
///
/// # Safety
///
/// Called by the mdev core with a live mdev of one of our parents' types.
unsafe extern "C" fn probe(mdev: *mut bindings::mdev_device) -> i32 {
    // SAFETY: the mdev core passes a live mdev device whose type belongs to
    // one of our parents (the type's parent was registered with our driver).
    let t = unsafe { mdev_type_of((*mdev).type_) };
    // Reserve an instance of the type: mdev enforces no limit itself when
    // `get_available` is set.
    if t.used
        .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |u| {
            (u < t.max).then_some(u + 1)
        })
        .is_err()
    {
        return -(bindings::EUSERS as i32);
    }
    // SAFETY: `t.parent` is live while the type is registered; the mdev
    // core holds `unreg_sem` for read during probe.
    let parent = unsafe { &*t.parent };
    // SAFETY: `mdev` is live for the call; see `Instance::create`.
    match unsafe { Instance::create(parent, mdev, t.index) } {
        Ok(()) => 0,
        Err(e) => {
            t.used.fetch_sub(1, Ordering::AcqRel);
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
    let t = unsafe { mdev_type_of((*mdev).type_) };
    // SAFETY: `probe` succeeded, so the instance exists.
    unsafe { Instance::destroy(mdev) };
    t.used.fetch_sub(1, Ordering::AcqRel);
}

/// Creates and registers a parent; see `include/linux/vhost_mdev.h`.
fn register_parent(info: &bindings::vhost_mdev_parent_info) -> Result<*mut Parent> {
    if info.name.is_null() || info.ops.is_null() || info.create.is_none() {
        return Err(EINVAL);
    }
    if info.types.is_null() || info.ntypes == 0 || info.ntypes > 64 {
        return Err(EINVAL);
    }
    // SAFETY: checked non-null; the caller guarantees `ops` is valid.
    let ops = unsafe { &*info.ops };
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
    if required.iter().any(|present| !present) {
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
    let pp: *const Parent = &*parent;
    for i in 0..info.ntypes {
        // SAFETY: `i < ntypes`; the caller guarantees `types` has `ntypes`
        // entries.
        let ti = unsafe { &*info.types.add(i as usize) };
        if ti.sysfs_name.is_null() || ti.max_instances == 0 {
            return Err(EINVAL);
        }
        let mut mt = KBox::pin(
            MdevType {
                mtype: Opaque::uninit(),
                parent: pp,
                index: i,
                max: ti.max_instances,
                used: AtomicU32::new(0),
            },
            GFP_KERNEL,
        )?;
        // SAFETY: `mtype` is ours and not yet registered; mdev expects the
        // driver to set the names and zero the rest.
        unsafe {
            mt.as_mut()
                .get_unchecked_mut()
                .mtype
                .get()
                .write(bindings::mdev_type {
                    sysfs_name: ti.sysfs_name,
                    pretty_name: ti.pretty_name,
                    ..Default::default()
                })
        };
        parent.type_ptrs.push(mt.mtype.get(), GFP_KERNEL)?;
        parent.types.push(mt, GFP_KERNEL)?;
    }

    // The parent device, on a class of the parent's name, so that mdev
    // names the types "<name>-<sysfs_name>".
    // SAFETY: `name` is a NUL-terminated string (checked non-null).
    let class = from_err_ptr(unsafe { bindings::class_create(info.name) })?;
    parent.class = class;
    let dev = parent.dev.get();
    // From here the device's reference count owns the parent: every error
    // path puts the device, whose release frees it.
    let parent = KBox::into_raw(parent);
    live_get();
    // SAFETY: `dev` is the parent's own device, zeroed before
    // `device_initialize()` as the driver core requires; the release frees
    // the parent, which `into_raw` handed over.
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
    // SAFETY: `mdev_parent` lives in the parent until the device's release,
    // after unregistration; `dev` and the types are valid; our driver is
    // registered.
    let ret = unsafe {
        bindings::mdev_register_parent(
            (*parent).mdev_parent.get(),
            dev,
            DRIVER.0.get(),
            (*parent).type_ptrs.as_mut_ptr(),
            info.ntypes,
        )
    };
    if let Err(e) = to_result(ret) {
        return fail(e, true);
    }
    Ok(parent)
}

/// The release of a parent's device: frees the parent, once the mdev core
/// released every type and mdev device of it (each holds a reference).
///
/// # Safety
///
/// Called by the driver core once, when the last reference to the `dev` of
/// a `Parent` that `register_parent` handed to the device goes.
unsafe extern "C" fn parent_dev_release(dev: *mut bindings::device) {
    let off = core::mem::offset_of!(Parent, dev);
    // SAFETY: `dev` is the `dev` field of a `Parent` from `KBox::into_raw`
    // (the only devices with this release); nothing uses the parent any
    // more (the last reference went).
    drop(unsafe { KBox::from_raw(dev.cast::<u8>().sub(off).cast::<Parent>()) });
    live_put();
}

/// `vhost_mdev_register_parent()`: registers a parent driver's parent.
///
/// # Safety
///
/// `info` must point to a valid `struct vhost_mdev_parent_info` whose
/// strings, types, ops and groups outlive the registration.
#[no_mangle]
pub(crate) unsafe extern "C" fn vhost_mdev_register_parent(
    info: *const bindings::vhost_mdev_parent_info,
) -> *mut bindings::vhost_mdev_parent {
    if info.is_null() {
        return EINVAL.to_ptr();
    }
    // SAFETY: the caller guarantees `info` is valid.
    match register_parent(unsafe { &*info }) {
        Ok(p) => p.cast(),
        Err(e) => e.to_ptr(),
    }
}

/// `vhost_mdev_unregister_parent()`: removes every instance (waiting for
/// their users to close them, after signalling the request IRQ) and the
/// parent. The parent's memory goes later, with the mdev core's last
/// reference to it (see [`Parent`]); nothing of the parent driver is used
/// after this returns.
///
/// # Safety
///
/// `parent` must have been returned by `vhost_mdev_register_parent()` and
/// not unregistered yet.
#[no_mangle]
pub(crate) unsafe extern "C" fn vhost_mdev_unregister_parent(
    parent: *mut bindings::vhost_mdev_parent,
) {
    let parent = parent.cast::<Parent>();
    // Our reference to the device goes last: the types' and mdev devices'
    // references keep the parent until their releases.
    // SAFETY: registered, by the type invariant; this removes every
    // instance (their `remove` runs before it returns).
    unsafe {
        let class = (*parent).class;
        bindings::mdev_unregister_parent((*parent).mdev_parent.get());
        bindings::device_unregister((*parent).dev.get());
        bindings::class_destroy(class);
    }
}
