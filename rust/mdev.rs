// SPDX-License-Identifier: GPL-2.0

//! Mediated device drivers and their parents.
//!
//! C header: [`include/linux/mdev.h`](srctree/include/linux/mdev.h).
//!
//! A driver implements [`Driver`] and registers one static [`Registration`]
//! for the module's lifetime. Each [`Parent`] it registers owns a parent
//! device (on a class of the parent's name, so that mdev names its types
//! "<name>-<sysfs_name>") and its mdev types, each with the driver's
//! per-type data. The mdev core calls the driver back through a private
//! vtable of `unsafe extern "C"` callbacks, which hand the driver the
//! parent's and the type's data.
//!
//! # Lifetime of a parent
//!
//! Unregistering a parent removes its mdev devices, but its memory must
//! outlive the mdev core's last use: each mdev type holds a reference on
//! the parent device until `mdev_type_release()`, and each mdev device holds
//! its type until `mdev_device_release()`, which also reads the driver.
//! Any holder of such a reference delays these releases. So the parent
//! device's reference count owns the parent, whose memory goes with the
//! device's release, and the driver's registration counts the parents not
//! yet released: [`Registration::unregister`] waits for them.

use crate::bindings;
use crate::errno::{EBUSY, EINVAL};
use core::marker::PhantomData;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use kernel::c_str;
use kernel::error::{from_err_ptr, from_result, to_result};
use kernel::ffi::{c_char, c_uint, c_void};
use kernel::prelude::*;
use kernel::types::Opaque;

/// An mdev device, as the driver's `probe` and `remove` see it.
#[repr(transparent)]
pub struct Device(Opaque<bindings::mdev_device>);

impl Device {
    /// The `struct mdev_device`.
    pub fn as_raw(&self) -> *mut bindings::mdev_device {
        self.0.get()
    }

    /// The mdev's `struct device`.
    pub fn as_dev(&self) -> *mut bindings::device {
        // SAFETY: `self` is a live mdev; only the field's address is taken.
        unsafe { ptr::addr_of_mut!((*self.as_raw()).dev) }
    }

    /// Sets the driver data of the mdev's device.
    pub fn set_drvdata(&self, data: *mut c_void) {
        // SAFETY: the device is live; its driver data is the driver's.
        unsafe { bindings::vhost_mdev_helper_dev_set_drvdata(self.as_dev(), data) };
    }

    /// Adds the sysfs attribute groups `groups` to the mdev's device.
    ///
    /// # Safety
    ///
    /// `groups` must be a NULL-terminated array of groups that outlives
    /// their removal with [`Device::remove_groups`].
    pub unsafe fn add_groups(&self, groups: *mut *const bindings::attribute_group) -> Result {
        // SAFETY: the device is live; the caller guarantees `groups`.
        to_result(unsafe { bindings::sysfs_create_groups(&mut (*self.as_dev()).kobj, groups) })
    }

    /// Removes the groups that [`Device::add_groups`] added.
    ///
    /// # Safety
    ///
    /// `groups` must have been added with [`Device::add_groups`].
    pub unsafe fn remove_groups(&self, groups: *mut *const bindings::attribute_group) {
        // SAFETY: the device is live; the caller guarantees `groups`.
        unsafe { bindings::sysfs_remove_groups(&mut (*self.as_dev()).kobj, groups) };
    }
}

/// The driver data of the device of an mdev of this module's driver.
///
/// # Safety
///
/// `dev` must be the live device of an mdev.
pub unsafe fn drvdata_of(dev: *mut bindings::device) -> *mut c_void {
    // SAFETY: the caller guarantees `dev`.
    unsafe { bindings::vhost_mdev_helper_dev_get_drvdata(dev) }
}

/// An mdev driver.
pub trait Driver: Sized + 'static {
    /// What each parent keeps.
    type ParentData: Sync;
    /// What each mdev type keeps.
    type TypeData: Sync;

    /// Creates the device of a new mdev of type `ty` of `parent`.
    fn probe(parent: &Self::ParentData, ty: &Self::TypeData, mdev: &Device) -> Result;
    /// Removes the device of an mdev that `probe` succeeded for.
    fn remove(parent: &Self::ParentData, ty: &Self::TypeData, mdev: &Device);
    /// Instances of the type that may still be created.
    fn available(ty: &Self::TypeData) -> u32;
    /// The type's description, if it has one.
    fn description(ty: &Self::TypeData) -> Option<&CStr>;
}

/// The callbacks of driver `T` for the mdev core.
struct DriverVTable<T>(PhantomData<T>);

impl<T: Driver> DriverVTable<T> {
    /// The parent and type data of an mdev type of ours.
    ///
    /// # Safety
    ///
    /// `mtype` must be a registered type of a parent of driver `T`.
    unsafe fn of_type<'a>(mtype: *mut bindings::mdev_type) -> (&'a T::ParentData, &'a T::TypeData) {
        // SAFETY: `mtype` is the `raw` of a `TypeInner<T>` (the caller
        // guarantees), whose `parent` the mdev core set to our
        // `mdev_parent`; both live until their releases.
        unsafe {
            let ty = &*kernel::container_of!(mtype, TypeInner<T>, raw);
            let parent = &*kernel::container_of!((*mtype).parent, ParentInner<T>, mdev_parent);
            (&parent.data, &ty.data)
        }
    }

    /// `mdev_driver.probe`.
    ///
    /// # Safety
    ///
    /// Called by the mdev core with a live mdev of a type of one of our
    /// parents.
    unsafe extern "C" fn probe_callback(mdev: *mut bindings::mdev_device) -> i32 {
        from_result(|| {
            // SAFETY: the mdev core passes a live mdev whose type belongs to
            // one of our parents (registered with this driver).
            let (parent, ty) = unsafe { Self::of_type((*mdev).type_) };
            // SAFETY: `mdev` is live for the call; `Device` is transparent.
            T::probe(parent, ty, unsafe { &*mdev.cast::<Device>() })?;
            Ok(0)
        })
    }

    /// `mdev_driver.remove`.
    ///
    /// # Safety
    ///
    /// Called by the mdev core for an mdev whose `probe` succeeded.
    unsafe extern "C" fn remove_callback(mdev: *mut bindings::mdev_device) {
        // SAFETY: as in `probe_callback`.
        let (parent, ty) = unsafe { Self::of_type((*mdev).type_) };
        // SAFETY: as in `probe_callback`.
        T::remove(parent, ty, unsafe { &*mdev.cast::<Device>() });
    }

    /// `mdev_driver.get_available`.
    ///
    /// # Safety
    ///
    /// Called by the mdev core with a type of one of our parents.
    unsafe extern "C" fn get_available_callback(mtype: *mut bindings::mdev_type) -> c_uint {
        // SAFETY: the mdev core calls this only for types of our parents.
        T::available(unsafe { Self::of_type(mtype) }.1)
    }

    /// `mdev_driver.show_description`.
    ///
    /// # Safety
    ///
    /// Called by the mdev core with a type of one of our parents and a
    /// sysfs page.
    unsafe extern "C" fn show_description_callback(
        mtype: *mut bindings::mdev_type,
        buf: *mut c_char,
    ) -> isize {
        // SAFETY: as in `get_available_callback`.
        let Some(desc) = T::description(unsafe { Self::of_type(mtype) }.1) else {
            return 0;
        };
        // SAFETY: `buf` is a sysfs page; "%s\n" consumes one string.
        let n =
            unsafe { bindings::sysfs_emit(buf, c_str!("%s\n").as_char_ptr(), desc.as_char_ptr()) };
        n as isize
    }
}

/// The registration of mdev driver `T`, in a `static` of the module.
///
/// # Invariants
///
/// `drv` is written only by the caller of `register` that set `claimed`,
/// and is initialised and registered with the mdev core while `registered`
/// is set; `parents` counts the parents of `T` whose memory is not yet
/// released.
pub struct Registration<T: Driver> {
    drv: Opaque<bindings::mdev_driver>,
    claimed: AtomicBool,
    registered: AtomicBool,
    parents: AtomicUsize,
    _p: PhantomData<T>,
}

// SAFETY: `drv` is written only by `register` before the mdev core sees it
// (guarded by `registered`) and afterwards only read; the counters are
// atomic.
unsafe impl<T: Driver> Sync for Registration<T> {}

impl<T: Driver> Registration<T> {
    /// An unregistered driver, for a `static`.
    pub const fn new() -> Self {
        Self {
            drv: Opaque::uninit(),
            claimed: AtomicBool::new(false),
            registered: AtomicBool::new(false),
            parents: AtomicUsize::new(0),
            _p: PhantomData,
        }
    }

    /// Registers the driver `name` for mdev types of `device_api`.
    pub fn register(
        &'static self,
        name: &'static CStr,
        device_api: &'static CStr,
        module: &'static ThisModule,
    ) -> Result {
        if self
            .claimed
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(EBUSY);
        }
        let drv = self.drv.get();
        // SAFETY: we set `claimed`, and the driver is not registered: nothing
        // else accesses `drv`.
        unsafe {
            drv.write(bindings::mdev_driver {
                device_api: device_api.as_char_ptr(),
                max_instances: 0,
                probe: Some(DriverVTable::<T>::probe_callback),
                remove: Some(DriverVTable::<T>::remove_callback),
                get_available: Some(DriverVTable::<T>::get_available_callback),
                show_description: Some(DriverVTable::<T>::show_description_callback),
                ..Default::default()
            });
            (*drv).driver.name = name.as_char_ptr();
            (*drv).driver.owner = module.as_ptr().cast();
            (*drv).driver.mod_name = name.as_char_ptr();
        }
        // SAFETY: `drv` is initialised and static; `unregister` removes it.
        if let Err(e) = to_result(unsafe { bindings::mdev_register_driver(drv) }) {
            self.claimed.store(false, Ordering::Release);
            return Err(e);
        }
        // INVARIANT: registered just above.
        self.registered.store(true, Ordering::Release);
        Ok(())
    }

    /// Unregisters the driver, once every parent registered with it is
    /// unregistered and released (waiting for the releases, which module
    /// exit must not outrun). No parent may still be registered.
    pub fn unregister(&'static self) {
        let mut waited = 0u32;
        while self.parents.load(Ordering::Acquire) != 0 {
            if waited == 100 {
                pr_info!("waiting for released parents to be freed\n");
            }
            // SAFETY: called in process context (module exit).
            unsafe { bindings::msleep(10) };
            waited = waited.saturating_add(1);
        }
        if self.registered.swap(false, Ordering::AcqRel) {
            // SAFETY: registered by `register` (type invariant).
            unsafe { bindings::mdev_unregister_driver(self.drv.get()) };
            self.claimed.store(false, Ordering::Release);
        }
    }
}

/// One mdev type of a parent being registered.
pub struct TypeInfo<'a, D> {
    /// The type is "<parent name>-<sysfs_name>".
    pub sysfs_name: &'a CStr,
    /// The type's `name` attribute (mdev shows `sysfs_name` without one).
    pub pretty_name: Option<&'a CStr>,
    /// The driver's data of the type.
    pub data: D,
}

/// An mdev type; `raw` first, as the mdev core sees it.
#[repr(C)]
struct TypeInner<T: Driver> {
    raw: Opaque<bindings::mdev_type>,
    data: T::TypeData,
}

/// A parent's memory, owned by its device's reference count once the
/// device is initialised (see the module documentation).
#[repr(C)]
struct ParentInner<T: Driver> {
    mdev_parent: Opaque<bindings::mdev_parent>,
    dev: Opaque<bindings::device>,
    class: *mut bindings::class,
    types: KVec<Pin<KBox<TypeInner<T>>>>,
    type_ptrs: KVec<*mut bindings::mdev_type>,
    driver: &'static Registration<T>,
    data: T::ParentData,
}

/// A registered parent of driver `T`.
///
/// # Invariants
///
/// `inner` is registered with the mdev core; its memory lives at least
/// until it is dropped (which unregisters it).
pub struct Parent<T: Driver> {
    inner: NonNull<ParentInner<T>>,
}

impl<T: Driver> Parent<T> {
    /// Registers a parent named `name` with `types` and `data`; its device
    /// is a child of `on` unless that is null.
    ///
    /// # Safety
    ///
    /// `name` and the names in `types` must outlive the registration; `on`
    /// is null or a registered device that stays registered until the
    /// parent is dropped (the parent's device holds a reference on it).
    pub unsafe fn register(
        driver: &'static Registration<T>,
        name: &CStr,
        types: KVec<TypeInfo<'_, T::TypeData>>,
        data: T::ParentData,
        on: *mut bindings::device,
    ) -> Result<Self> {
        if !driver.registered.load(Ordering::Acquire) || types.is_empty() {
            return Err(EINVAL);
        }
        let ntypes = u32::try_from(types.len()).map_err(|_| EINVAL)?;
        let mut parent = KBox::new(
            ParentInner {
                mdev_parent: Opaque::uninit(),
                dev: Opaque::uninit(),
                class: ptr::null_mut(),
                types: KVec::with_capacity(types.len(), GFP_KERNEL)?,
                type_ptrs: KVec::with_capacity(types.len(), GFP_KERNEL)?,
                driver,
                data,
            },
            GFP_KERNEL,
        )?;
        for t in types {
            // mdev expects the driver to set the names and zero the rest.
            let ty = KBox::pin(
                TypeInner::<T> {
                    raw: Opaque::new(bindings::mdev_type {
                        sysfs_name: t.sysfs_name.as_char_ptr(),
                        pretty_name: t.pretty_name.map_or(ptr::null(), |n| n.as_char_ptr()),
                        ..Default::default()
                    }),
                    data: t.data,
                },
                GFP_KERNEL,
            )?;
            parent.type_ptrs.push(ty.raw.get(), GFP_KERNEL)?;
            parent.types.push(ty, GFP_KERNEL)?;
        }

        // SAFETY: `name` is a NUL-terminated string.
        let class = from_err_ptr(unsafe { bindings::class_create(name.as_char_ptr()) })?;
        parent.class = class;
        let dev = parent.dev.get();
        // From here the device's reference count owns the parent: every
        // error path puts the device, whose release frees it.
        let parent = KBox::into_raw(parent);
        driver.parents.fetch_add(1, Ordering::AcqRel);
        // SAFETY: `dev` is the parent's own device, zeroed before
        // `device_initialize()` as the driver core requires; the release
        // frees the parent, which `into_raw` handed over.
        unsafe {
            ptr::write_bytes(dev, 0, 1);
            bindings::device_initialize(dev);
            (*dev).class = class;
            // The driver core takes a reference on the parent in
            // `device_add()` and puts it in the child's release.
            (*dev).parent = on;
            (*dev).release = Some(Self::release_callback);
        }
        let fail = |e: Error, added: bool| -> Result<Self> {
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
        let r =
            unsafe { bindings::dev_set_name(dev, c_str!("%s").as_char_ptr(), name.as_char_ptr()) };
        if r != 0 {
            return fail(Error::from_errno(r), false);
        }
        // SAFETY: `dev` is initialised and named.
        let r = unsafe { bindings::device_add(dev) };
        if r != 0 {
            return fail(Error::from_errno(r), false);
        }
        // SAFETY: `mdev_parent` lives in the parent until the device's
        // release, after unregistration; `dev` and the types are valid; the
        // driver is registered, and stays until the parent's release.
        let ret = unsafe {
            bindings::mdev_register_parent(
                (*parent).mdev_parent.get(),
                dev,
                driver.drv.get(),
                (*parent).type_ptrs.as_mut_ptr(),
                ntypes,
            )
        };
        if let Err(e) = to_result(ret) {
            return fail(e, true);
        }
        // INVARIANT: registered just above; `parent` is non-null.
        Ok(Self {
            // SAFETY: from `KBox::into_raw`.
            inner: unsafe { NonNull::new_unchecked(parent) },
        })
    }

    /// The parent's data.
    pub fn data(&self) -> &T::ParentData {
        // SAFETY: live while registered (type invariant).
        unsafe { &(*self.inner.as_ptr()).data }
    }

    /// Hands the registration over to C as an opaque pointer.
    pub fn into_raw(self) -> *mut c_void {
        let p = self.inner.as_ptr();
        core::mem::forget(self);
        p.cast()
    }

    /// Takes back a registration from [`Parent::into_raw`].
    ///
    /// # Safety
    ///
    /// `ptr` must come from [`Parent::into_raw`] of this driver, and not be
    /// taken back before.
    pub unsafe fn from_raw(ptr: *mut c_void) -> Self {
        // INVARIANT: the caller guarantees a registered parent.
        Self {
            // SAFETY: `into_raw` returned a non-null pointer.
            inner: unsafe { NonNull::new_unchecked(ptr.cast()) },
        }
    }

    /// The release of a parent's device: frees the parent, once the mdev
    /// core released every type and mdev device of it.
    ///
    /// # Safety
    ///
    /// Called by the driver core once, when the last reference to the
    /// `dev` of a `ParentInner<T>` that `register` handed to the device goes.
    unsafe extern "C" fn release_callback(dev: *mut bindings::device) {
        // SAFETY: `dev` is the `dev` of a `ParentInner<T>` from `into_raw`
        // (the only devices with this release), unused from now on.
        let parent =
            unsafe { KBox::from_raw(kernel::container_of!(dev, ParentInner<T>, dev).cast_mut()) };
        let driver = parent.driver;
        drop(parent);
        // The last thing the release does: `unregister` of the driver may
        // return (and the module go) once the count is zero.
        driver.parents.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<T: Driver> Drop for Parent<T> {
    /// Unregisters: removes every mdev device of the parent (their `remove`
    /// runs before this returns) and the parent. Its memory goes later,
    /// with the mdev core's last reference to it.
    fn drop(&mut self) {
        let p = self.inner.as_ptr();
        // Our reference to the device goes last: the types' and mdev
        // devices' references keep the parent until their releases.
        // SAFETY: registered (type invariant); dropped once.
        unsafe {
            let class = (*p).class;
            bindings::mdev_unregister_parent((*p).mdev_parent.get());
            bindings::device_unregister((*p).dev.get());
            bindings::class_destroy(class);
        }
    }
}
