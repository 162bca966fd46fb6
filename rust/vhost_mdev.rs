// SPDX-License-Identifier: GPL-2.0

//! Safe Rust API for vhost-mdev parent drivers.
//!
//! C header: [`include/linux/vhost_mdev.h`](../include/linux/vhost_mdev.h).
//!
//! A parent driver implements [`Device`] for its instances and [`Parent`]
//! for the factory, and keeps a [`Registration`] for as long as its types
//! should exist. This module is compiled into each Rust parent module (the
//! boundary to `vhost_mdev.ko` is the C ABI, so that C parents use the same
//! core).

use crate::bindings;
use crate::errno::*;
use crate::sysfs;
use core::marker::PhantomData;
use core::ptr::NonNull;
use kernel::error::{from_err_ptr, Result};
use kernel::ffi::c_void;
use kernel::prelude::*;
use kernel::str::CStr;

/// A handle on the core's side of an instance, for upcalls. The parent's
/// instance owns it (it is neither `Copy` nor `Clone`), so it cannot outlive
/// the instance.
///
/// # Invariants
///
/// `ptr` is the `struct vhost_mdev_device` the core passed to `create`; it
/// stays valid until the parent's instance is dropped (the core destroys the
/// parent's instance before its own).
pub struct DeviceHandle {
    ptr: NonNull<bindings::vhost_mdev_device>,
}

// SAFETY: the upcalls are safe to call from any thread (see the C header).
unsafe impl Send for DeviceHandle {}
// SAFETY: as above.
unsafe impl Sync for DeviceHandle {}

impl DeviceHandle {
    /// Signals the interrupt eventfd of queue `idx`, if the driver attached
    /// one. From process context only (not from hard or soft IRQs, nor from
    /// an eventfd wake-up).
    pub fn vq_interrupt(&self, idx: u16) {
        // SAFETY: `ptr` is valid (type invariant).
        unsafe { bindings::vhost_mdev_vq_interrupt(self.ptr.as_ptr(), idx) };
    }

    /// Signals the config-change eventfd. From process context only.
    pub fn config_changed(&self) {
        // SAFETY: `ptr` is valid (type invariant).
        unsafe { bindings::vhost_mdev_config_changed(self.ptr.as_ptr()) };
    }

    /// Sets DEVICE_NEEDS_RESET and signals the config eventfd. From process
    /// context only.
    pub fn needs_reset(&self) {
        // SAFETY: `ptr` is valid (type invariant).
        unsafe { bindings::vhost_mdev_needs_reset(self.ptr.as_ptr()) };
    }

    /// Reads guest memory at `iova` into `buf`.
    ///
    /// # Safety
    ///
    /// The device must be open and started, and the caller must be the
    /// worker that `Device::reset` stops (VFIO WARNs on DMA after close).
    pub unsafe fn dma_read(&self, iova: u64, buf: &mut [u8]) -> Result {
        // SAFETY: `ptr` is valid; `buf` is valid for its length; the caller
        // guarantees the device is open.
        let r = unsafe {
            bindings::vhost_mdev_dma_rw(
                self.ptr.as_ptr(),
                iova,
                buf.as_mut_ptr().cast(),
                buf.len(),
                false,
            )
        };
        kernel::error::to_result(r)
    }

    /// Writes `buf` to guest memory at `iova`.
    ///
    /// # Safety
    ///
    /// As for [`DeviceHandle::dma_read`].
    pub unsafe fn dma_write(&self, iova: u64, buf: &[u8]) -> Result {
        // SAFETY: as in `dma_read`; the core does not write to `buf` when
        // `write` is true.
        let r = unsafe {
            bindings::vhost_mdev_dma_rw(
                self.ptr.as_ptr(),
                iova,
                buf.as_ptr().cast_mut().cast(),
                buf.len(),
                true,
            )
        };
        kernel::error::to_result(r)
    }

    /// Copies `len` bytes of guest memory from `src` to `dst` without a
    /// bounce buffer (see `vhost_mdev_dma_copy()`). Fails with `EOPNOTSUPP`
    /// when the core cannot: then copy through a buffer with
    /// [`DeviceHandle::dma_read`] and [`DeviceHandle::dma_write`], which
    /// report the real error.
    ///
    /// # Safety
    ///
    /// As for [`DeviceHandle::dma_read`].
    pub unsafe fn dma_copy(&self, dst: u64, src: u64, len: usize) -> Result {
        // SAFETY: `ptr` is valid; the caller guarantees the device is open.
        let r = unsafe { bindings::vhost_mdev_dma_copy(self.ptr.as_ptr(), dst, src, len) };
        kernel::error::to_result(r)
    }

    /// Whether [`DeviceHandle::dma_copy`] can work on this opening of the
    /// device (it is bound to iommufd, whose pages the core may pin).
    pub fn dma_can_copy(&self) -> bool {
        // SAFETY: `ptr` is valid (type invariant); the call reads an atomic
        // of the instance, in any context.
        unsafe { bindings::vhost_mdev_dma_can_copy(self.ptr.as_ptr()) }
    }

    /// Adopts the address space of the process that opened the device for
    /// a batch of DMA (see `vhost_mdev_dma_begin()`), until the returned
    /// guard drops.
    ///
    /// # Safety
    ///
    /// As for [`DeviceHandle::dma_read`]; from a kthread (a workqueue
    /// worker) that holds no other session, and the guard must be dropped
    /// before the work function returns.
    pub unsafe fn dma_session(&self) -> Result<DmaSession<'_>> {
        // SAFETY: `ptr` is valid; the caller guarantees the context.
        kernel::error::to_result(unsafe { bindings::vhost_mdev_dma_begin(self.ptr.as_ptr()) })?;
        // INVARIANT: the session began successfully.
        Ok(DmaSession {
            handle: self,
            _not_send: PhantomData,
        })
    }

    /// The instance's UUID.
    pub fn uuid(&self) -> [u8; 16] {
        let mut u = [0u8; 16];
        // SAFETY: `ptr` is valid; the core returns a pointer to the 16 bytes
        // of the mdev's UUID, which outlives the instance.
        let p = unsafe { bindings::vhost_mdev_uuid(self.ptr.as_ptr()) };
        // SAFETY: `p` points to 16 readable bytes (see above).
        u.copy_from_slice(unsafe { core::slice::from_raw_parts(p, 16) });
        u
    }

    /// Whether a user has the device open.
    pub fn is_open(&self) -> bool {
        // SAFETY: `ptr` is valid (type invariant).
        unsafe { bindings::vhost_mdev_is_open(self.ptr.as_ptr()) }
    }
}

/// A batch of DMA in the opener's address space; ends on drop.
///
/// # Invariants
///
/// `vhost_mdev_dma_begin()` succeeded for `handle` on the current worker.
pub struct DmaSession<'a> {
    handle: &'a DeviceHandle,
    /// The session belongs to the worker that began it: not `Send`.
    _not_send: PhantomData<*mut ()>,
}

impl Drop for DmaSession<'_> {
    fn drop(&mut self) {
        // SAFETY: the session began (type invariant) on this worker.
        unsafe { bindings::vhost_mdev_dma_end(self.handle.ptr.as_ptr()) };
    }
}

/// The device ops of one instance: the vDPA-style operations that the core
/// maps vhost requests onto.
///
/// The core checks every argument first: queue indexes are below
/// [`Device::vq_count`], ring sizes powers of two no larger than
/// [`Device::vq_num_max`], config ranges inside [`Device::config_size`], and
/// status transitions are those of virtio 1.x. Every method but
/// [`Device::kick`] is called in process context, serialised by the core.
#[vtable]
pub trait Device: Sized + Send + Sync {
    /// Virtio device id (1 for net).
    fn device_id(&self) -> u32;
    /// Vendor id.
    fn vendor_id(&self) -> u32 {
        0
    }
    /// Features offered.
    fn device_features(&self) -> u64;
    /// The driver's features at FEATURES_OK. An error keeps FEATURES_OK
    /// clear.
    fn set_driver_features(&self, features: u64) -> Result;
    /// Size of the config space.
    fn config_size(&self) -> u32;
    /// Reads the config space.
    fn get_config(&self, offset: u32, buf: &mut [u8]);
    /// Writes the config space.
    fn set_config(&self, offset: u32, data: &[u8]);
    /// Number of virtqueues (fixed for the instance's life).
    fn vq_count(&self) -> u32;
    /// Largest ring size.
    fn vq_num_max(&self) -> u16;
    /// Sets ring size of queue `idx`.
    fn set_vq_num(&self, idx: u16, num: u32);
    /// Sets ring addresses (IOVAs) of queue `idx`.
    fn set_vq_address(&self, idx: u16, desc: u64, driver: u64, device: u64);
    /// Enables or disables queue `idx`.
    fn set_vq_ready(&self, idx: u16, ready: bool);
    /// Sets the next available index of queue `idx`.
    fn set_vq_base(&self, idx: u16, base: u16);
    /// Where queue `idx` is (next available index to process).
    fn get_vq_base(&self, idx: u16) -> u16;
    /// A kick of queue `idx`. May run in atomic context: queue work only.
    fn kick(&self, idx: u16);
    /// DRIVER_OK: start processing.
    fn start(&self) -> Result;
    /// Stop, wait until quiet, forget queue state.
    fn reset(&self);
    /// Stop processing; quiet on return.
    fn suspend(&self) -> Result {
        Err(eopnotsupp())
    }
    /// Continue after [`Device::suspend`].
    fn resume(&self) -> Result {
        Err(eopnotsupp())
    }
    /// Drop every translation of `[iova, iova + len)` before returning.
    fn dma_unmap(&self, _iova: u64, _len: u64) {}
}

/// `EOPNOTSUPP`, which the 6.12 `kernel` crate does not name.
pub use crate::errno::eopnotsupp;

/// A parent driver: creates instances of its types.
pub trait Parent {
    /// The instances.
    type Device: Device;
    /// Creates an instance of type `type_index`.
    fn create(handle: DeviceHandle, type_index: u32) -> Result<Pin<KBox<Self::Device>>>;
}

/// An mdev type of a parent.
pub struct TypeInfo {
    /// Directory name suffix: the type is "<parent name>-<sysfs_name>".
    pub sysfs_name: &'static CStr,
    /// The type's `name` attribute.
    pub pretty_name: &'static CStr,
    /// The type's `description` attribute.
    pub description: &'static CStr,
    /// Instances that may exist at once.
    pub max_instances: u32,
}

/// The `extern "C"` callbacks that the core calls, for a parent `P`.
struct Adapter<P: Parent>(PhantomData<P>);

/// Gets the instance from the parent's private pointer.
///
/// # Safety
///
/// `p` must be a pointer returned by `Adapter::<P>::create` and not yet
/// destroyed.
unsafe fn dev<'a, P: Parent>(p: *mut c_void) -> &'a P::Device {
    // SAFETY: `create` returned `KBox::into_raw` of a `P::Device`; the core
    // passes it back until `destroy`.
    unsafe { &*p.cast::<P::Device>() }
}

impl<P: Parent> Adapter<P> {
    /// `vhost_mdev_parent_info.create`.
    ///
    /// # Safety
    ///
    /// Called by the core with the `vhost_mdev_device` of a new instance.
    unsafe extern "C" fn create(
        _parent_priv: *mut c_void,
        vdev: *mut bindings::vhost_mdev_device,
        type_index: u32,
    ) -> *mut c_void {
        let Some(ptr) = NonNull::new(vdev) else {
            return EINVAL.to_ptr();
        };
        // INVARIANT: `vdev` is the core's instance, valid until destroy.
        match P::create(DeviceHandle { ptr }, type_index) {
            // SAFETY: the device is never moved out of the box: the core
            // only passes the pointer back, and `destroy` re-pins it.
            Ok(d) => KBox::into_raw(unsafe { Pin::into_inner_unchecked(d) }).cast(),
            Err(e) => e.to_ptr(),
        }
    }

    /// `vhost_mdev_device_ops.destroy`.
    ///
    /// # Safety
    ///
    /// `p` must come from `create` and not be used after this call.
    unsafe extern "C" fn destroy(p: *mut c_void) {
        // SAFETY: the caller passes the pointer `create` returned, once; it
        // was pinned and is dropped in place.
        drop(unsafe { Pin::new_unchecked(KBox::from_raw(p.cast::<P::Device>())) });
    }

    /// `vhost_mdev_device_ops.get_device_id`.
    ///
    /// # Safety
    ///
    /// `p` must be a live instance pointer from `create`; the core checked
    /// the arguments as `include/linux/vhost_mdev.h` documents.
    unsafe extern "C" fn get_device_id(p: *mut c_void) -> u32 {
        // SAFETY: see the contract above.
        unsafe { dev::<P>(p) }.device_id()
    }
    /// `vhost_mdev_device_ops.get_vendor_id`.
    ///
    /// # Safety
    ///
    /// `p` must be a live instance pointer from `create`; the core checked
    /// the arguments as `include/linux/vhost_mdev.h` documents.
    unsafe extern "C" fn get_vendor_id(p: *mut c_void) -> u32 {
        // SAFETY: see the contract above.
        unsafe { dev::<P>(p) }.vendor_id()
    }
    /// `vhost_mdev_device_ops.get_device_features`.
    ///
    /// # Safety
    ///
    /// `p` must be a live instance pointer from `create`; the core checked
    /// the arguments as `include/linux/vhost_mdev.h` documents.
    unsafe extern "C" fn get_device_features(p: *mut c_void) -> u64 {
        // SAFETY: see the contract above.
        unsafe { dev::<P>(p) }.device_features()
    }
    /// `vhost_mdev_device_ops.set_driver_features`.
    ///
    /// # Safety
    ///
    /// `p` must be a live instance pointer from `create`; the core checked
    /// the arguments as `include/linux/vhost_mdev.h` documents.
    unsafe extern "C" fn set_driver_features(p: *mut c_void, f: u64) -> i32 {
        // SAFETY: see the contract above.
        match unsafe { dev::<P>(p) }.set_driver_features(f) {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        }
    }
    /// `vhost_mdev_device_ops.get_config_size`.
    ///
    /// # Safety
    ///
    /// `p` must be a live instance pointer from `create`; the core checked
    /// the arguments as `include/linux/vhost_mdev.h` documents.
    unsafe extern "C" fn get_config_size(p: *mut c_void) -> u32 {
        // SAFETY: see the contract above.
        unsafe { dev::<P>(p) }.config_size()
    }
    /// `vhost_mdev_device_ops.get_config`.
    ///
    /// # Safety
    ///
    /// `p` must be a live instance pointer from `create`; the core checked
    /// the arguments as `include/linux/vhost_mdev.h` documents.
    unsafe extern "C" fn get_config(p: *mut c_void, off: u32, buf: *mut c_void, len: u32) {
        // SAFETY: the core passes a buffer of `len` writable bytes.
        let buf = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), len as usize) };
        // SAFETY: see the contract above.
        unsafe { dev::<P>(p) }.get_config(off, buf)
    }
    /// `vhost_mdev_device_ops.set_config`.
    ///
    /// # Safety
    ///
    /// `p` must be a live instance pointer from `create`; the core checked
    /// the arguments as `include/linux/vhost_mdev.h` documents.
    unsafe extern "C" fn set_config(p: *mut c_void, off: u32, buf: *const c_void, len: u32) {
        // SAFETY: the core passes a buffer of `len` readable bytes.
        let buf = unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), len as usize) };
        // SAFETY: see the contract above.
        unsafe { dev::<P>(p) }.set_config(off, buf)
    }
    /// `vhost_mdev_device_ops.get_vq_count`.
    ///
    /// # Safety
    ///
    /// `p` must be a live instance pointer from `create`; the core checked
    /// the arguments as `include/linux/vhost_mdev.h` documents.
    unsafe extern "C" fn get_vq_count(p: *mut c_void) -> u32 {
        // SAFETY: see the contract above.
        unsafe { dev::<P>(p) }.vq_count()
    }
    /// `vhost_mdev_device_ops.get_vq_num_max`.
    ///
    /// # Safety
    ///
    /// `p` must be a live instance pointer from `create`; the core checked
    /// the arguments as `include/linux/vhost_mdev.h` documents.
    unsafe extern "C" fn get_vq_num_max(p: *mut c_void) -> u16 {
        // SAFETY: see the contract above.
        unsafe { dev::<P>(p) }.vq_num_max()
    }
    /// `vhost_mdev_device_ops.set_vq_num`.
    ///
    /// # Safety
    ///
    /// `p` must be a live instance pointer from `create`; the core checked
    /// the arguments as `include/linux/vhost_mdev.h` documents.
    unsafe extern "C" fn set_vq_num(p: *mut c_void, idx: u16, num: u32) {
        // SAFETY: see the contract above.
        unsafe { dev::<P>(p) }.set_vq_num(idx, num)
    }
    /// `vhost_mdev_device_ops.set_vq_address`.
    ///
    /// # Safety
    ///
    /// `p` must be a live instance pointer from `create`; the core checked
    /// the arguments as `include/linux/vhost_mdev.h` documents.
    unsafe extern "C" fn set_vq_address(p: *mut c_void, idx: u16, d: u64, drv: u64, devc: u64) {
        // SAFETY: see the contract above.
        unsafe { dev::<P>(p) }.set_vq_address(idx, d, drv, devc)
    }
    /// `vhost_mdev_device_ops.set_vq_ready`.
    ///
    /// # Safety
    ///
    /// `p` must be a live instance pointer from `create`; the core checked
    /// the arguments as `include/linux/vhost_mdev.h` documents.
    unsafe extern "C" fn set_vq_ready(p: *mut c_void, idx: u16, ready: bool) {
        // SAFETY: see the contract above.
        unsafe { dev::<P>(p) }.set_vq_ready(idx, ready)
    }
    /// `vhost_mdev_device_ops.set_vq_base`.
    ///
    /// # Safety
    ///
    /// `p` must be a live instance pointer from `create`; the core checked
    /// the arguments as `include/linux/vhost_mdev.h` documents.
    unsafe extern "C" fn set_vq_base(p: *mut c_void, idx: u16, base: u16) {
        // SAFETY: see the contract above.
        unsafe { dev::<P>(p) }.set_vq_base(idx, base)
    }
    /// `vhost_mdev_device_ops.get_vq_base`.
    ///
    /// # Safety
    ///
    /// `p` must be a live instance pointer from `create`; the core checked
    /// the arguments as `include/linux/vhost_mdev.h` documents.
    unsafe extern "C" fn get_vq_base(p: *mut c_void, idx: u16) -> u16 {
        // SAFETY: see the contract above.
        unsafe { dev::<P>(p) }.get_vq_base(idx)
    }
    /// `vhost_mdev_device_ops.kick_vq`.
    ///
    /// # Safety
    ///
    /// `p` must be a live instance pointer from `create`; the core checked
    /// the arguments as `include/linux/vhost_mdev.h` documents.
    unsafe extern "C" fn kick_vq(p: *mut c_void, idx: u16) {
        // SAFETY: see the contract above.
        unsafe { dev::<P>(p) }.kick(idx)
    }
    /// `vhost_mdev_device_ops.start`.
    ///
    /// # Safety
    ///
    /// `p` must be a live instance pointer from `create`; the core checked
    /// the arguments as `include/linux/vhost_mdev.h` documents.
    unsafe extern "C" fn start(p: *mut c_void) -> i32 {
        // SAFETY: see the contract above.
        match unsafe { dev::<P>(p) }.start() {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        }
    }
    /// `vhost_mdev_device_ops.reset`.
    ///
    /// # Safety
    ///
    /// `p` must be a live instance pointer from `create`; the core checked
    /// the arguments as `include/linux/vhost_mdev.h` documents.
    unsafe extern "C" fn reset(p: *mut c_void) {
        // SAFETY: see the contract above.
        unsafe { dev::<P>(p) }.reset()
    }
    /// `vhost_mdev_device_ops.suspend`.
    ///
    /// # Safety
    ///
    /// `p` must be a live instance pointer from `create`; the core checked
    /// the arguments as `include/linux/vhost_mdev.h` documents.
    unsafe extern "C" fn suspend(p: *mut c_void) -> i32 {
        // SAFETY: see the contract above.
        match unsafe { dev::<P>(p) }.suspend() {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        }
    }
    /// `vhost_mdev_device_ops.resume`.
    ///
    /// # Safety
    ///
    /// `p` must be a live instance pointer from `create`; the core checked
    /// the arguments as `include/linux/vhost_mdev.h` documents.
    unsafe extern "C" fn resume(p: *mut c_void) -> i32 {
        // SAFETY: see the contract above.
        match unsafe { dev::<P>(p) }.resume() {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        }
    }
    /// `vhost_mdev_device_ops.dma_unmap`.
    ///
    /// # Safety
    ///
    /// `p` must be a live instance pointer from `create`; the core checked
    /// the arguments as `include/linux/vhost_mdev.h` documents.
    unsafe extern "C" fn dma_unmap(p: *mut c_void, iova: u64, len: u64) {
        // SAFETY: see the contract above.
        unsafe { dev::<P>(p) }.dma_unmap(iova, len)
    }

    const OPS: bindings::vhost_mdev_device_ops = bindings::vhost_mdev_device_ops {
        get_device_id: Some(Self::get_device_id),
        get_vendor_id: Some(Self::get_vendor_id),
        get_device_features: Some(Self::get_device_features),
        set_driver_features: Some(Self::set_driver_features),
        get_config_size: Some(Self::get_config_size),
        get_config: Some(Self::get_config),
        set_config: Some(Self::set_config),
        get_vq_count: Some(Self::get_vq_count),
        get_vq_num_max: Some(Self::get_vq_num_max),
        set_vq_num: Some(Self::set_vq_num),
        set_vq_address: Some(Self::set_vq_address),
        set_vq_ready: Some(Self::set_vq_ready),
        set_vq_base: Some(Self::set_vq_base),
        get_vq_base: Some(Self::get_vq_base),
        kick_vq: Some(Self::kick_vq),
        start: Some(Self::start),
        reset: Some(Self::reset),
        suspend: if <P::Device as Device>::HAS_SUSPEND {
            Some(Self::suspend)
        } else {
            None
        },
        resume: if <P::Device as Device>::HAS_RESUME {
            Some(Self::resume)
        } else {
            None
        },
        dma_unmap: if <P::Device as Device>::HAS_DMA_UNMAP {
            Some(Self::dma_unmap)
        } else {
            None
        },
        destroy: Some(Self::destroy),
    };
}

/// A registered parent. Unregistering (on drop) removes every instance,
/// waiting for their users to close them (the core signals the request IRQ).
///
/// # Invariants
///
/// `parent` was returned by `vhost_mdev_register_parent()`; `info`, `types`
/// and `ops`, which it points into, live as long as this object.
pub struct Registration<P: Parent> {
    parent: *mut bindings::vhost_mdev_parent,
    _info: KBox<bindings::vhost_mdev_parent_info>,
    _types: KVec<bindings::vhost_mdev_type_info>,
    _ops: KBox<bindings::vhost_mdev_device_ops>,
    _p: PhantomData<P>,
}

// SAFETY: the registration only holds pointers that the core uses from any
// thread; dropping it from another thread is fine.
unsafe impl<P: Parent> Send for Registration<P> {}
// SAFETY: no method takes `&self`.
unsafe impl<P: Parent> Sync for Registration<P> {}

impl<P: Parent> Registration<P> {
    /// Registers a parent named `name` with `types`, and `groups` of sysfs
    /// attributes on each instance (`None::<&sysfs::Groups<P, 1>>` for
    /// none).
    pub fn new<const G: usize>(
        name: &'static CStr,
        module: &'static ThisModule,
        types: &[TypeInfo],
        groups: Option<&'static sysfs::Groups<P, G>>,
    ) -> Result<Self>
    where
        P: 'static,
    {
        let mut tv = KVec::with_capacity(types.len(), GFP_KERNEL)?;
        for t in types {
            tv.push(
                bindings::vhost_mdev_type_info {
                    sysfs_name: t.sysfs_name.as_char_ptr(),
                    pretty_name: t.pretty_name.as_char_ptr(),
                    description: t.description.as_char_ptr(),
                    max_instances: t.max_instances,
                },
                GFP_KERNEL,
            )?;
        }
        let ops = KBox::new(Adapter::<P>::OPS, GFP_KERNEL)?;
        let info = KBox::new(
            bindings::vhost_mdev_parent_info {
                name: name.as_char_ptr(),
                owner: module.as_ptr().cast(),
                types: tv.as_ptr(),
                ntypes: u32::try_from(tv.len()).map_err(|_| EINVAL)?,
                dev_groups: groups.map_or(core::ptr::null_mut(), |g| g.as_raw().cast_mut()),
                create: Some(Adapter::<P>::create),
                ops: &*ops,
                priv_: core::ptr::null_mut(),
            },
            GFP_KERNEL,
        )?;
        // SAFETY: `info` and what it points to outlive the registration
        // (owned by it, or `'static` groups whose callbacks expect `P`).
        let parent = from_err_ptr(unsafe { bindings::vhost_mdev_register_parent(&*info) })?;
        Ok(Self {
            parent,
            _info: info,
            _types: tv,
            _ops: ops,
            _p: PhantomData,
        })
    }
}

impl<P: Parent> Drop for Registration<P> {
    fn drop(&mut self) {
        // SAFETY: registered (type invariant), unregistered only here.
        unsafe { bindings::vhost_mdev_unregister_parent(self.parent) };
    }
}

/// The instances of a parent own its per-instance attribute groups: sysfs
/// attributes of `P` find the instance behind the mdev device they are
/// shown on.
impl<P: Parent + 'static> sysfs::Owner for P {
    type Data = P::Device;

    /// # Safety
    ///
    /// `dev` must be the device of a live instance of parent `P` (as sysfs
    /// passes to the `show`/`store` of a group registered with `P`).
    unsafe fn from_device<'a>(device: *mut bindings::device) -> Option<&'a P::Device> {
        // SAFETY: the caller guarantees `device` is one of `P`'s instances.
        let p = unsafe { bindings::vhost_mdev_priv_from_dev(device) };
        if p.is_null() {
            return None;
        }
        // SAFETY: the core returns the pointer `create` returned.
        Some(unsafe { dev::<P>(p) })
    }
}
