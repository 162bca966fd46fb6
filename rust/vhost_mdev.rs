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
use crate::mm::MmGrab;
use crate::sysfs;
use crate::vhost_mdev_ops::for_each_parent_op;
use core::marker::PhantomData;
use core::ptr::NonNull;
use kernel::error::{from_err_ptr, from_result, Result};
use kernel::ffi::c_void;
use kernel::prelude::*;
use kernel::str::{CStr, CString};

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
    /// one. From any context, hard IRQ handlers included.
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
        errno_result(r)
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
        errno_result(r)
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
        errno_result(r)
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

    /// Pins `phys.len()` pages (1 to [`PIN_MAX`]) of guest memory from the
    /// page-aligned `iova`, for reads and writes when `write`, else for
    /// reads, and fills `phys` with the physical address of each page (see
    /// `vhost_mdev_dma_pin()`). Process context, while the device is open
    /// through iommufd (`EOPNOTSUPP` for a type1 container); hold no lock
    /// that [`Device::dma_unmap`] takes: iommufd may call it meanwhile.
    ///
    /// The pins must be given back with [`DeviceHandle::dma_unpin`], for
    /// exactly this `iova` and page count, at the latest when
    /// [`Device::dma_unmap`] is told of a range that meets them (before it
    /// returns) or when the device is reset for its close.
    pub fn dma_pin(&self, iova: u64, phys: &mut [u64], write: bool) -> Result {
        let n = phys.len();
        if n == 0 || n > PIN_MAX {
            return Err(EINVAL);
        }
        let mut pages = KVec::with_capacity(n, GFP_KERNEL)?;
        for _ in 0..n {
            pages.push(core::ptr::null_mut::<bindings::page>(), GFP_KERNEL)?;
        }
        // SAFETY: `ptr` is valid (type invariant); `pages` has room for `n`
        // (at most `PIN_MAX`) entries; process context (the contract).
        let r = unsafe {
            bindings::vhost_mdev_dma_pin(
                self.ptr.as_ptr(),
                iova,
                n as i32,
                write,
                pages.as_mut_ptr(),
            )
        };
        if r < 0 {
            return Err(Error::from_errno(r));
        }
        if r as usize != n || pages.iter().any(|p| p.is_null()) {
            if r > 0 {
                // SAFETY: the `r` pages just pinned, given back once.
                unsafe { self.dma_unpin(iova, r as usize) };
            }
            return Err(EIO);
        }
        for (pa, page) in phys.iter_mut().zip(pages.iter()) {
            // SAFETY: a page pinned just above (not null).
            *pa = unsafe { bindings::vhost_mdev_helper_page_to_phys(*page) };
        }
        Ok(())
    }

    /// Gives back the pins of `npages` pages from `iova`.
    ///
    /// # Safety
    ///
    /// `iova` and `npages` must be those of one [`DeviceHandle::dma_pin`]
    /// that succeeded on this opening of the device and was not given back
    /// yet; the device must not use the pages any more; process context.
    pub unsafe fn dma_unpin(&self, iova: u64, npages: usize) {
        if npages == 0 || npages > PIN_MAX {
            return;
        }
        // SAFETY: `ptr` is valid; the caller guarantees the pin.
        unsafe { bindings::vhost_mdev_dma_unpin(self.ptr.as_ptr(), iova, npages as i32) };
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

    /// Marks `[iova, iova + len)` dirty in the vhost dirty log while the
    /// driver logs, for memory the device wrote by other means than the
    /// DMA methods of this handle (which log by themselves); call it after
    /// the write. Any context. A parent that offers
    /// [`crate::virtio::VHOST_F_LOG_ALL`] must log every write so.
    pub fn log_write(&self, iova: u64, len: u64) {
        // SAFETY: `ptr` is valid (type invariant).
        unsafe { bindings::vhost_mdev_log_write(self.ptr.as_ptr(), iova, len) };
    }

    /// The address space of the process that opened the device (a
    /// reference of its own), or `None` when the device is not open. Call
    /// it from a [`Device`] method other than [`Device::kick`]: the core
    /// then holds the lock that close takes.
    pub fn opener_mm(&self) -> Option<MmGrab> {
        // SAFETY: `ptr` is valid (type invariant); the core returns null or
        // an `mmgrab()` reference that it hands over to us.
        unsafe { MmGrab::from_raw(bindings::vhost_mdev_opener_mm(self.ptr.as_ptr())) }
    }

    /// Whether a user has the device open: true from the start of the
    /// first open (before the core reads [`Device::vq_count`]) to the end
    /// of the last close.
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
    /// Number of virtqueues, 1 to 1024: read at create and again at every
    /// first open, so it may change while the device is closed (check
    /// [`DeviceHandle::is_open`] under the lock this method takes).
    fn vq_count(&self) -> u32;
    /// Largest ring size.
    fn vq_num_max(&self) -> u16;
    /// Sets ring size of queue `idx`.
    fn set_vq_num(&self, idx: u16, num: u32);
    /// Sets ring addresses (IOVAs) of queue `idx`.
    fn set_vq_address(&self, idx: u16, desc: u64, driver: u64, device: u64);
    /// Enables or disables queue `idx`.
    fn set_vq_ready(&self, idx: u16, ready: bool);
    /// Sets the vring base of queue `idx`, in vhost's encoding: for a
    /// split ring the next available index in bits 0-15 (bits 16-31 are 0);
    /// for a packed ring `last_avail_idx | wrap << 15` in bits 0-15 and
    /// `last_used_idx | wrap << 15` in bits 16-31.
    fn set_vq_base(&self, idx: u16, base: u32);
    /// Where queue `idx` is, in the encoding of [`Device::set_vq_base`].
    fn get_vq_base(&self, idx: u16) -> u32;
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
    /// Every non-zero status the driver writes that passed the core's
    /// checks: after [`Device::set_driver_features`] for FEATURES_OK (an
    /// error keeps FEATURES_OK clear), before [`Device::start`] for
    /// DRIVER_OK (an error fails the request). For devices with a status
    /// of their own (vDPA).
    fn set_status(&self, _status: u8) -> Result {
        Err(eopnotsupp())
    }
    /// The driver's memory table (`VHOST_SET_MEM_TABLE`), for devices
    /// that make its pages resident themselves (ABI 2): the whole new
    /// table, in any status, checked by the core (at most 64 regions, none
    /// empty or wrapping, no two IOVA ranges overlapping). An error fails
    /// the request; keep the previous table then.
    fn set_mem_table(&self, _regions: &[MemRegion]) -> Result {
        Err(eopnotsupp())
    }
    /// The doorbell of queue `idx`, which the core maps into the opener's
    /// notify region (ABI 2): a page-aligned area of whole pages, kept
    /// while the instance exists. Called without the core's serialisation
    /// (from `mmap`): return a fixed answer, taking no lock another method
    /// holds.
    fn get_vq_notification(&self, _idx: u16) -> Result<NotifyArea> {
        Err(eopnotsupp())
    }
}

/// Most pages one [`DeviceHandle::dma_pin`] pins (VFIO's
/// `VFIO_PIN_PAGES_MAX_ENTRIES`).
pub const PIN_MAX: usize = 512;

/// One region of the driver's memory table (`struct
/// vhost_mdev_mem_region`).
pub type MemRegion = bindings::vhost_mdev_mem_region;

/// A queue's doorbell: the physical address and length of its
/// page-aligned area (`struct vhost_mdev_vq_notify_area`).
pub struct NotifyArea {
    /// Physical address of the area.
    pub addr: bindings::phys_addr_t,
    /// Length, a multiple of the page size.
    pub size: u64,
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

/// A parent driver whose instances are made from data of the registration
/// (a parent on an existing device, such as the vDPA bridge: the context
/// says which device). Every [`Parent`] is one, with no context.
pub trait ParentOn: 'static {
    /// The instances.
    type Device: Device;
    /// What the registration keeps for [`ParentOn::create`].
    type Context: Send + Sync;
    /// Creates an instance of type `type_index`.
    fn create(
        ctx: &Self::Context,
        handle: DeviceHandle,
        type_index: u32,
    ) -> Result<Pin<KBox<Self::Device>>>;
}

impl<P: Parent + 'static> ParentOn for P {
    type Device = P::Device;
    type Context = ();

    fn create(_ctx: &(), handle: DeviceHandle, type_index: u32) -> Result<Pin<KBox<P::Device>>> {
        <P as Parent>::create(handle, type_index)
    }
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
struct Adapter<P: ParentOn>(PhantomData<P>);

/// Gets the instance from the parent's private pointer.
///
/// # Safety
///
/// `p` must be a pointer returned by `Adapter::<P>::create` and not yet
/// destroyed.
unsafe fn dev<'a, P: ParentOn>(p: *mut c_void) -> &'a P::Device {
    // SAFETY: `create` returned `KBox::into_raw` of a `P::Device`; the core
    // passes it back until `destroy`.
    unsafe { &*p.cast::<P::Device>() }
}

/// Expands the op list of [`for_each_parent_op!`] into the thunks of
/// [`Adapter`] that call a [`Device`] method, and into its `OPS` table.
macro_rules! adapter_ops {
    ($(
        $kind:ident $(($has:ident))? $op:ident =>
            $method:ident($($arg:ident: $ty:ty),*) -> $ret:ty [$how:ident];
    )*) => {
        impl<P: ParentOn> Adapter<P> {
            $(adapter_ops!(@thunk $how $op $method ($($arg: $ty),*) -> $ret);)*

            /// The ops table of `P`'s instances (`&'static`: a constant).
            const OPS: bindings::vhost_mdev_device_ops = bindings::vhost_mdev_device_ops {
                $($op: adapter_ops!(@slot $kind $(($has))? Self::$op),)*
            };
        }
    };
    (@thunk custom $($rest:tt)*) => {};
    (@thunk $how:ident $op:ident $method:ident ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        #[doc = concat!("`vhost_mdev_device_ops.", stringify!($op), "`.")]
        ///
        /// # Safety
        ///
        /// `p` must be a live instance pointer from `create`; the core checked
        /// the arguments as `include/linux/vhost_mdev.h` documents.
        unsafe extern "C" fn $op(p: *mut c_void $(, $arg: $ty)*) -> $ret {
            // SAFETY: see the contract above.
            let d = unsafe { dev::<P>(p) };
            adapter_ops!(@ret $how d.$method($($arg),*))
        }
    };
    (@ret value $e:expr) => { $e };
    (@ret errno $e:expr) => { from_result(|| $e.map(|()| 0)) };
    (@slot required $f:expr) => { Some($f) };
    (@slot optional($has:ident) $f:expr) => {
        if <P::Device as Device>::$has { Some($f) } else { None }
    };
}

for_each_parent_op!(adapter_ops);

/// The callbacks that convert pointers, written by hand.
impl<P: ParentOn> Adapter<P> {
    /// `vhost_mdev_parent_info.create`.
    ///
    /// # Safety
    ///
    /// Called by the core with the `vhost_mdev_device` of a new instance
    /// and the `priv` of the parent info, which [`Registration`] sets to
    /// its `P::Context` (live while registered).
    unsafe extern "C" fn create(
        parent_priv: *mut c_void,
        vdev: *mut bindings::vhost_mdev_device,
        type_index: u32,
    ) -> *mut c_void {
        let Some(ptr) = NonNull::new(vdev) else {
            return EINVAL.to_ptr();
        };
        if parent_priv.is_null() {
            return EINVAL.to_ptr();
        }
        // SAFETY: the registration's context (see above), which outlives
        // every instance.
        let ctx = unsafe { &*parent_priv.cast::<P::Context>() };
        // INVARIANT: `vdev` is the core's instance, valid until destroy.
        match P::create(ctx, DeviceHandle { ptr }, type_index) {
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

    /// `vhost_mdev_device_ops.get_config`.
    ///
    /// # Safety
    ///
    /// `p` must be a live instance pointer from `create`; `buf` must be
    /// valid for writes of `len` bytes (the core checked the range).
    unsafe extern "C" fn get_config(p: *mut c_void, off: u32, buf: *mut c_void, len: u32) {
        // SAFETY: the core passes a buffer of `len` writable bytes.
        let buf = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), len as usize) };
        // SAFETY: `p` is live (see the contract above).
        unsafe { dev::<P>(p) }.get_config(off, buf)
    }

    /// `vhost_mdev_device_ops.set_config`.
    ///
    /// # Safety
    ///
    /// `p` must be a live instance pointer from `create`; `buf` must be
    /// valid for reads of `len` bytes (the core checked the range).
    unsafe extern "C" fn set_config(p: *mut c_void, off: u32, buf: *const c_void, len: u32) {
        // SAFETY: the core passes a buffer of `len` readable bytes.
        let buf = unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), len as usize) };
        // SAFETY: `p` is live (see the contract above).
        unsafe { dev::<P>(p) }.set_config(off, buf)
    }

    /// `vhost_mdev_device_ops.set_mem_table`.
    ///
    /// # Safety
    ///
    /// `p` must be a live instance pointer from `create`; `regions` must
    /// point to `n` regions, valid for the call.
    unsafe extern "C" fn set_mem_table(
        p: *mut c_void,
        regions: *const bindings::vhost_mdev_mem_region,
        n: u32,
    ) -> i32 {
        let regions = if n == 0 {
            &[]
        } else {
            // SAFETY: the core passes `n` regions.
            unsafe { core::slice::from_raw_parts(regions.cast::<MemRegion>(), n as usize) }
        };
        // SAFETY: `p` is live (see the contract above).
        from_result(|| unsafe { dev::<P>(p) }.set_mem_table(regions).map(|()| 0))
    }

    /// `vhost_mdev_device_ops.get_vq_notification`.
    ///
    /// # Safety
    ///
    /// `p` must be a live instance pointer from `create`; `area` must be
    /// valid for writes.
    unsafe extern "C" fn get_vq_notification(
        p: *mut c_void,
        idx: u16,
        area: *mut bindings::vhost_mdev_vq_notify_area,
    ) -> i32 {
        from_result(|| {
            // SAFETY: `p` is live (see the contract above).
            let a = unsafe { dev::<P>(p) }.get_vq_notification(idx)?;
            // SAFETY: the core passes a writable area.
            unsafe {
                (*area).addr = a.addr;
                (*area).size = a.size;
            }
            Ok(0)
        })
    }
}

/// A registered parent. Unregistering (on drop) removes every instance,
/// waiting for their users to close them (the core signals the request IRQ).
///
/// # Invariants
///
/// `parent` was returned by `vhost_mdev_register_parent()` (or `_on()`);
/// `info`, `types`, `name` and `ctx`, which it points into, live as long as
/// this object; the ops table it points to is a `'static` constant.
pub struct Registration<P: ParentOn> {
    parent: *mut bindings::vhost_mdev_parent,
    _info: KBox<bindings::vhost_mdev_parent_info>,
    _types: KVec<bindings::vhost_mdev_type_info>,
    _name: Option<CString>,
    _ctx: KBox<P::Context>,
    _p: PhantomData<P>,
}

// SAFETY: the registration only holds pointers that the core uses from any
// thread, and a context that is `Send + Sync`; dropping it from another
// thread is fine.
unsafe impl<P: ParentOn> Send for Registration<P> {}
// SAFETY: no method takes `&self`.
unsafe impl<P: ParentOn> Sync for Registration<P> {}

impl<P: Parent + 'static> Registration<P> {
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
        let groups = groups.map_or(core::ptr::null(), |g| g.as_raw());
        Self::register(None, Name::Static(name), (), module, types, groups)
    }

    /// As [`Registration::new`], for a parent that serves the existing
    /// device `dev` (a vDPA device): the parent's device becomes its child.
    /// `dev` must stay registered until the registration is dropped.
    pub fn new_on<const G: usize>(
        dev: &kernel::device::Device,
        name: &'static CStr,
        module: &'static ThisModule,
        types: &[TypeInfo],
        groups: Option<&'static sysfs::Groups<P, G>>,
    ) -> Result<Self>
    where
        P: 'static,
    {
        let groups = groups.map_or(core::ptr::null(), |g| g.as_raw());
        Self::register(Some(dev), Name::Static(name), (), module, types, groups)
    }
}

/// The name of a parent: a constant, or one made at run time (one parent
/// per device of a bus, each needing a name of its own).
enum Name {
    Static(&'static CStr),
    Owned(CString),
}

impl<P: ParentOn> Registration<P> {
    /// As [`Registration::new_on`], for a [`ParentOn`]: `ctx` is kept by
    /// the registration and passed to [`ParentOn::create`]; `name` may be
    /// made at run time (it must be unique: it names a device class). No
    /// per-instance attributes.
    pub fn new_on_with(
        dev: &kernel::device::Device,
        name: CString,
        ctx: P::Context,
        module: &'static ThisModule,
        types: &[TypeInfo],
    ) -> Result<Self> {
        Self::register(
            Some(dev),
            Name::Owned(name),
            ctx,
            module,
            types,
            core::ptr::null(),
        )
    }

    fn register(
        on: Option<&kernel::device::Device>,
        name: Name,
        ctx: P::Context,
        module: &'static ThisModule,
        types: &[TypeInfo],
        groups: *const *const bindings::attribute_group,
    ) -> Result<Self> {
        let ctx = KBox::new(ctx, GFP_KERNEL)?;
        let (name_ptr, owned) = match name {
            Name::Static(n) => (n.as_char_ptr(), None),
            Name::Owned(n) => (n.as_char_ptr(), Some(n)),
        };
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
        let info = KBox::new(
            bindings::vhost_mdev_parent_info {
                abi_version: bindings::VHOST_MDEV_ABI_VERSION,
                name: name_ptr,
                owner: module.as_ptr().cast(),
                types: tv.as_ptr(),
                ntypes: u32::try_from(tv.len()).map_err(|_| EINVAL)?,
                dev_groups: groups.cast_mut(),
                create: Some(Adapter::<P>::create),
                ops: &Adapter::<P>::OPS,
                priv_: core::ptr::from_ref::<P::Context>(&*ctx).cast_mut().cast(),
            },
            GFP_KERNEL,
        )?;
        // SAFETY: `info` and what it points to outlive the registration
        // (owned by it: the name, the types and the context, which a box
        // keeps in place; or `'static` groups whose callbacks expect `P`).
        // `kernel::device::Device` is `#[repr(transparent)]` over `struct
        // device`; the caller keeps it registered.
        let on = on.map(|d| core::ptr::from_ref(d).cast_mut().cast::<bindings::device>());
        // SAFETY: as above; `on` is a live device when given.
        let parent = from_err_ptr(unsafe {
            match on {
                Some(dev) => bindings::vhost_mdev_register_parent_on(dev, &*info),
                None => bindings::vhost_mdev_register_parent(&*info),
            }
        })?;
        // INVARIANT: registered; `info`, `tv`, the name and the context are
        // owned, `OPS` is static.
        Ok(Self {
            parent,
            _info: info,
            _types: tv,
            _name: owned,
            _ctx: ctx,
            _p: PhantomData,
        })
    }
}

impl<P: ParentOn> Drop for Registration<P> {
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
