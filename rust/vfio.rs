// SPDX-License-Identifier: GPL-2.0

//! VFIO devices with an emulated IOMMU, as `samples/vfio-mdev/mtty.c`.
//!
//! C headers: [`include/linux/vfio.h`](srctree/include/linux/vfio.h),
//! [`include/uapi/linux/vfio.h`](srctree/include/uapi/linux/vfio.h).
//!
//! A driver implements [`Driver`] (a `#[vtable]` trait: the device ops it
//! has) and allocates each device with [`Device::new`] on an mdev, which
//! initialises the driver's [`Driver::Data`] in place. VFIO calls the
//! driver back through a private vtable of `unsafe extern "C"` callbacks
//! (`&'static`, const, one per driver type) that hand it `&Device<T>`. The
//! data is dropped when VFIO releases the device, after the last reference
//! ([`Ref`]) went. The iommufd ops are VFIO's emulated-IOMMU ones.
//!
//! Also here: the ioctl argument structs a device implements, copied in and
//! out up to their `argsz`-checked minimum size ([`UserArg`]); the virqfd
//! slots of ioeventfds ([`Virqfd`]); and guest memory by IOVA ([`Dma`]):
//! `vfio_dma_rw()` and pinned pages.

use crate::bindings;
use crate::errno::{eopnotsupp, EBUSY, EINVAL};
use crate::mdev;
use core::marker::PhantomData;
use core::mem::{align_of, offset_of, size_of, MaybeUninit};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, Ordering};
use kernel::c_str;
use kernel::error::{from_err_ptr, from_result, to_result, VTABLE_DEFAULT_ERROR};
use kernel::ffi::{c_char, c_int, c_long, c_uint, c_ulong, c_void};
use kernel::prelude::*;
use kernel::types::{AsBytes, FromBytes, Opaque};
use kernel::uaccess::{UserSlice, UserSliceReader, UserSliceWriter};

pub use bindings::{
    vfio_device_info as DeviceInfo, vfio_device_ioeventfd as IoeventfdArg,
    vfio_irq_info as IrqInfo, vfio_irq_set as IrqSet, vfio_region_info as RegionInfo,
};
pub use bindings::{
    VFIO_DEVICE_FLAGS_RESET, VFIO_DEVICE_GET_INFO, VFIO_DEVICE_GET_IRQ_INFO,
    VFIO_DEVICE_GET_REGION_INFO, VFIO_DEVICE_IOEVENTFD, VFIO_DEVICE_IOEVENTFD_16,
    VFIO_DEVICE_RESET, VFIO_DEVICE_SET_IRQS, VFIO_IRQ_INFO_EVENTFD, VFIO_IRQ_SET_ACTION_TRIGGER,
    VFIO_IRQ_SET_ACTION_TYPE_MASK, VFIO_IRQ_SET_DATA_BOOL, VFIO_IRQ_SET_DATA_NONE,
    VFIO_IRQ_SET_DATA_TYPE_MASK, VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ,
    VFIO_REGION_INFO_FLAG_WRITE,
};

/// A mapping of the device fd being set up (`struct vm_area_struct`), as
/// [`Driver::mmap`] gets it.
///
/// # Invariants
///
/// `ptr` is the VMA that VFIO's `mmap` passes, valid for the call.
pub struct Vma {
    ptr: NonNull<bindings::vm_area_struct>,
}

impl Vma {
    /// The file offset of the mapping, in pages.
    pub fn pgoff(&self) -> u64 {
        // SAFETY: `ptr` is valid (type invariant).
        unsafe { bindings::vhost_mdev_helper_vma_pgoff(self.ptr.as_ptr()) as u64 }
    }

    /// The length of the mapping in bytes.
    pub fn len(&self) -> u64 {
        // SAFETY: `ptr` is valid (type invariant).
        unsafe { bindings::vhost_mdev_helper_vma_len(self.ptr.as_ptr()) as u64 }
    }

    /// Maps the doorbell page at physical address `addr` over the whole
    /// mapping, which must be one page, shared, and neither readable nor
    /// executable (else `EINVAL`).
    ///
    /// # Safety
    ///
    /// `addr` must be a page that the caller's device keeps (a doorbell of
    /// its own, or a page it allocated) for as long as the file is open:
    /// the mapping holds the file open, not the page.
    pub unsafe fn map_doorbell(&self, addr: u64) -> Result {
        // SAFETY: `ptr` is valid (type invariant); the caller guarantees
        // the page.
        to_result(unsafe {
            bindings::vhost_mdev_helper_mmap_doorbell(
                self.ptr.as_ptr(),
                addr as bindings::phys_addr_t,
            )
        })
    }
}

/// An ioctl argument struct of `include/uapi/linux/vfio.h`: it starts with
/// `argsz`, and a user gives at least its first [`UserArg::MINSZ`] bytes
/// (the part every `argsz` a user may give covers).
///
/// # Safety
///
/// `MINSZ` must not exceed `size_of::<Self>()`, and `argsz` must return the
/// struct's `argsz` field.
pub unsafe trait UserArg: FromBytes + Default {
    /// The bytes every caller gives (`offsetofend()` of the last field the
    /// device uses).
    const MINSZ: usize;

    /// The size the user says the struct has.
    fn argsz(&self) -> u32;

    /// Copies the first [`UserArg::MINSZ`] bytes in from user address
    /// `arg`; `EINVAL` when `argsz` is smaller than that.
    fn read_from(arg: usize) -> Result<Self> {
        let mut v = Self::default();
        let p = ptr::from_mut(&mut v).cast::<u8>();
        // SAFETY: `v` is valid for `size_of::<Self>() >= MINSZ` bytes (the
        // trait's contract); any bytes written are a valid `Self` (`FromBytes`).
        let bytes = unsafe { core::slice::from_raw_parts_mut(p, Self::MINSZ) };
        UserSlice::new(arg, Self::MINSZ)
            .reader()
            .read_slice(bytes)?;
        if (v.argsz() as usize) < Self::MINSZ {
            return Err(EINVAL);
        }
        Ok(v)
    }

    /// Copies the first [`UserArg::MINSZ`] bytes out to user address `arg`.
    fn write_to(&self, arg: usize) -> Result
    where
        Self: AsBytes,
    {
        let p = ptr::from_ref(self).cast::<u8>();
        // SAFETY: `self` is valid for `size_of::<Self>() >= MINSZ` bytes (the
        // trait's contract), all initialised (`AsBytes`: no padding).
        let bytes = unsafe { core::slice::from_raw_parts(p, Self::MINSZ) };
        UserSlice::new(arg, Self::MINSZ).writer().write_slice(bytes)
    }
}

/// Implements [`UserArg`] for a struct whose minimum size ends with field
/// `$last` of type `$ty`.
macro_rules! user_arg {
    ($t:ty, $last:ident: $ty:ty) => {
        // SAFETY: `MINSZ` ends with a field of the struct, so it is within
        // its size; `argsz` returns the `argsz` field.
        unsafe impl UserArg for $t {
            const MINSZ: usize = offset_of!($t, $last) + size_of::<$ty>();
            fn argsz(&self) -> u32 {
                self.argsz
            }
        }
    };
}

// SAFETY: four `u32`s: every bit pattern is valid.
unsafe impl FromBytes for IrqInfo {}
// SAFETY: four `u32`s, no padding (checked below), no interior mutability.
unsafe impl AsBytes for IrqInfo {}
// SAFETY: five `u32`s and a zero-sized trailing array.
unsafe impl FromBytes for IrqSet {}
// SAFETY: integers only (`u32`, `u64`, `i32`).
unsafe impl FromBytes for IoeventfdArg {}
// SAFETY: six `u32`s: every bit pattern is valid.
unsafe impl FromBytes for DeviceInfo {}
// SAFETY: six `u32`s, no padding (checked below), no interior mutability.
unsafe impl AsBytes for DeviceInfo {}
// SAFETY: four `u32`s and two `u64`s.
unsafe impl FromBytes for RegionInfo {}
// SAFETY: four `u32`s then two `u64`s, no padding (checked below), no
// interior mutability.
unsafe impl AsBytes for RegionInfo {}

// No padding in the structs copied out: their sizes are their fields'.
const _: () = assert!(size_of::<IrqInfo>() == 16);
const _: () = assert!(size_of::<DeviceInfo>() == 24);
const _: () = assert!(size_of::<RegionInfo>() == 32);

user_arg!(IrqInfo, count: u32);
user_arg!(IrqSet, count: u32);
user_arg!(IoeventfdArg, fd: i32);
user_arg!(DeviceInfo, num_irqs: u32);
user_arg!(RegionInfo, offset: u64);

/// Checks a `VFIO_DEVICE_SET_IRQS` header against the device's IRQs
/// (`num_irqs` of its index, `max_irq_type` indexes), as
/// `vfio_set_irqs_validate_and_prepare()`; returns the size of the data
/// that follows the header.
pub fn prepare_irq_set(hdr: &mut IrqSet, num_irqs: u32, max_irq_type: u32) -> Result<usize> {
    let num_irqs = i32::try_from(num_irqs).map_err(|_| EINVAL)?;
    let max_irq_type = i32::try_from(max_irq_type).map_err(|_| EINVAL)?;
    let mut data_size: usize = 0;
    // SAFETY: `hdr` and `data_size` are valid for the call.
    to_result(unsafe {
        bindings::vfio_set_irqs_validate_and_prepare(hdr, num_irqs, max_irq_type, &mut data_size)
    })?;
    Ok(data_size)
}

/// The device ops of a VFIO driver; the ops it does not implement are
/// absent from its vtable (VFIO then refuses them with `EINVAL`, or does
/// nothing).
#[vtable]
pub trait Driver: Sized + 'static {
    /// Each device's data, initialised by [`Device::new`] and dropped when
    /// VFIO releases the device.
    type Data: Send + Sync;

    /// The ops' name.
    const NAME: &'static CStr;

    /// The first open of the device.
    fn open(_dev: &Device<Self>) -> Result {
        kernel::build_error(VTABLE_DEFAULT_ERROR)
    }

    /// The last close of the device.
    fn close(_dev: &Device<Self>) {
        kernel::build_error(VTABLE_DEFAULT_ERROR)
    }

    /// `pread` of `buf.len()` bytes at file offset `pos`.
    fn read(_dev: &Device<Self>, _buf: UserSliceWriter, _pos: u64) -> Result<usize> {
        kernel::build_error(VTABLE_DEFAULT_ERROR)
    }

    /// `pwrite` of `buf.len()` bytes at file offset `pos`.
    fn write(_dev: &Device<Self>, _buf: UserSliceReader, _pos: u64) -> Result<usize> {
        kernel::build_error(VTABLE_DEFAULT_ERROR)
    }

    /// An ioctl on the device fd; `arg` is an untrusted user address.
    fn ioctl(_dev: &Device<Self>, _cmd: u32, _arg: usize) -> Result<c_long> {
        kernel::build_error(VTABLE_DEFAULT_ERROR)
    }

    /// `mmap` of the device fd.
    fn mmap(_dev: &Device<Self>, _vma: &Vma) -> Result {
        kernel::build_error(VTABLE_DEFAULT_ERROR)
    }

    /// The device is being unregistered while open: the `count`th request
    /// to its user to release it.
    fn request(_dev: &Device<Self>, _count: u32) {
        kernel::build_error(VTABLE_DEFAULT_ERROR)
    }

    /// The IOVA range `[iova, iova + length)` goes away: the driver unpins
    /// every page of it it pinned before returning. Called with no lock of
    /// the driver's held, also after [`Driver::close`].
    fn dma_unmap(_dev: &Device<Self>, _iova: u64, _length: u64) {
        kernel::build_error(VTABLE_DEFAULT_ERROR)
    }
}

/// A VFIO device of driver `T`; `vdev` first, as VFIO allocates it.
///
/// # Invariants
///
/// Allocated by `_vfio_alloc_device()` with the size of `Self` and `T`'s
/// vtable. `data` is initialised when `init` is true, which it is for every
/// device a `&Device<T>` exists for; `registered` is true while the device
/// is registered with VFIO.
#[repr(C)]
pub struct Device<T: Driver> {
    vdev: Opaque<bindings::vfio_device>,
    registered: AtomicBool,
    init: bool,
    data: MaybeUninit<T::Data>,
}

// SAFETY: `T::Data` is `Send + Sync`; the rest is VFIO's, which is
// synchronised by VFIO, and an atomic.
unsafe impl<T: Driver> Sync for Device<T> {}
// SAFETY: as above.
unsafe impl<T: Driver> Send for Device<T> {}

impl<T: Driver> Device<T> {
    /// Allocates a device on `parent` and initialises its data with `init`.
    pub fn new(parent: &mdev::Device, init: impl PinInit<T::Data, Error>) -> Result<Ref<T>> {
        // `_vfio_alloc_device()` allocates with `kvzalloc()`: 8-byte
        // alignment at least.
        if align_of::<Self>() > 8 {
            return Err(EINVAL);
        }
        // SAFETY: the vtable is static; the size covers the `vfio_device`
        // at offset 0 of `Self`; `parent.as_dev()` is a live device.
        let vdev = from_err_ptr(unsafe {
            bindings::vhost_mdev_helper_vfio_alloc_device(
                size_of::<Self>(),
                parent.as_dev(),
                DeviceVTable::<T>::build(),
            )
        })?;
        let this = vdev.cast::<Self>();
        // INVARIANT: allocated above; `init` is false (zeroed memory).
        // Dropping the reference puts the device (and VFIO's release drops
        // the data once it is initialised).
        // SAFETY: `vdev` is non-null (`from_err_ptr`).
        let dev = Ref(unsafe { NonNull::new_unchecked(this) });
        // SAFETY: `data` is allocated and nothing else references it yet;
        // it is never moved (VFIO owns the allocation until its release,
        // which drops it in place).
        unsafe { init.__pinned_init(ptr::addr_of_mut!((*this).data).cast())? };
        // SAFETY: `this` is valid; nothing else accesses it yet.
        unsafe { (*this).init = true };
        Ok(dev)
    }

    /// The device of a raw `struct vfio_device` (for a C ABI handle).
    ///
    /// # Safety
    ///
    /// `vdev` must be the `vdev` of a live `Device<T>` returned by
    /// [`Device::new`], for `'a`.
    #[inline]
    pub unsafe fn from_raw<'a>(vdev: *mut bindings::vfio_device) -> &'a Self {
        // SAFETY: `vdev` is the first field of a live `Device<T>` whose
        // data is initialised (the caller guarantees).
        unsafe { &*vdev.cast::<Self>() }
    }

    /// The `struct vfio_device`.
    pub fn as_raw(&self) -> *mut bindings::vfio_device {
        self.vdev.get()
    }

    /// The driver's data of the device.
    #[inline]
    pub fn data(&self) -> &T::Data {
        // SAFETY: initialised for every `&Device<T>` (type invariant).
        unsafe { self.data.assume_init_ref() }
    }

    /// Logs `msg` as a notice of the device's parent device.
    pub fn notice(&self, msg: &CStr) {
        // SAFETY: `dev` of a live `vfio_device` is its parent device, set at
        // allocation; "%s" consumes one string.
        unsafe {
            bindings::_dev_notice(
                (*self.as_raw()).dev,
                c_str!("%s").as_char_ptr(),
                msg.as_char_ptr(),
            )
        };
    }

    /// The device's guest memory access.
    pub fn dma(&self) -> Dma {
        // INVARIANT: `self` is a device of an emulated-IOMMU driver.
        Dma {
            vdev: NonNull::from(&self.vdev).cast(),
        }
    }

    /// Whether the device is bound to iommufd: set at bind, before
    /// [`Driver::open`], and cleared after [`Driver::close`].
    pub fn iommufd_bound(&self) -> bool {
        // SAFETY: `self` is live; VFIO sets `iommufd_access` under the
        // device set's lock, which holds around `open` and `close`.
        !unsafe { (*self.as_raw()).iommufd_access }.is_null()
    }
}

/// A reference to a device of driver `T`.
///
/// Dropping it unregisters the device if it is registered, and puts the
/// reference; VFIO releases the device after the last one.
///
/// # Invariants
///
/// Owns one reference on a device of driver `T` whose data is initialised.
pub struct Ref<T: Driver>(NonNull<Device<T>>);

// SAFETY: a reference may be dropped on any thread.
unsafe impl<T: Driver> Send for Ref<T> {}
// SAFETY: `&Ref` only gives `&Device`, which is `Sync`.
unsafe impl<T: Driver> Sync for Ref<T> {}

impl<T: Driver> core::ops::Deref for Ref<T> {
    type Target = Device<T>;

    fn deref(&self) -> &Device<T> {
        // SAFETY: the reference keeps the device alive (type invariant).
        unsafe { self.0.as_ref() }
    }
}

impl<T: Driver> Ref<T> {
    /// Registers the device with VFIO, as an emulated-IOMMU device; VFIO
    /// may call its ops from here on. `EBUSY` if it is registered.
    pub fn register(&self) -> Result {
        if self.registered.swap(true, Ordering::AcqRel) {
            return Err(EBUSY);
        }
        // A device set of its own, assigned here and not by VFIO: 6.12's
        // `__vfio_register_dev()` ignores the error of the allocation it
        // makes for it and registers a device without one, which the
        // first open dereferences (`dev_set->lock`: a NULL pointer).
        // SAFETY: the device is initialised and not registered; only
        // `register` assigns its set, once (VFIO drops it with the device).
        let r = if unsafe { (*self.as_raw()).dev_set }.is_null() {
            // SAFETY: as above; the device's own address is its set's id,
            // unique while the device lives.
            to_result(unsafe {
                bindings::vfio_assign_device_set(self.as_raw(), self.as_raw().cast())
            })
        } else {
            Ok(())
        };
        // SAFETY: the device is initialised, not registered and has a set.
        let r = r.and_then(|()| {
            to_result(unsafe { bindings::vfio_register_emulated_iommu_dev(self.as_raw()) })
        });
        if r.is_err() {
            self.registered.store(false, Ordering::Release);
        }
        r
    }

    /// Unregisters the device, if it is registered. Blocks, calling
    /// [`Driver::request`], until its user closed it.
    pub fn unregister(&self) {
        if self.registered.swap(false, Ordering::AcqRel) {
            // SAFETY: registered by `register`.
            unsafe { bindings::vfio_unregister_group_dev(self.as_raw()) };
        }
    }

    /// Hands the reference over as a raw pointer.
    pub fn into_raw(self) -> *const Device<T> {
        let p = self.0.as_ptr();
        core::mem::forget(self);
        p
    }

    /// Takes back a reference from [`Ref::into_raw`].
    ///
    /// # Safety
    ///
    /// `p` must come from [`Ref::into_raw`] and not be taken back before.
    pub unsafe fn from_raw(p: *const Device<T>) -> Self {
        // INVARIANT: the reference `into_raw` handed over.
        // SAFETY: `into_raw` returned a non-null pointer.
        Self(unsafe { NonNull::new_unchecked(p.cast_mut()) })
    }
}

impl<T: Driver> Drop for Ref<T> {
    fn drop(&mut self) {
        self.unregister();
        // SAFETY: our reference (type invariant), not registered any more.
        unsafe { bindings::vhost_mdev_helper_vfio_put_device(self.as_raw()) };
    }
}

/// The `vfio_device_ops` of driver `T`.
struct DeviceVTable<T: Driver>(PhantomData<T>);

impl<T: Driver> DeviceVTable<T> {
    /// `release`: drops the data.
    ///
    /// # Safety
    ///
    /// Called by VFIO once, when the last reference to a device allocated
    /// by [`Device::new`] goes, before VFIO frees it.
    unsafe extern "C" fn release_callback(vdev: *mut bindings::vfio_device) {
        let this = vdev.cast::<Device<T>>();
        // SAFETY: the last reference went: nothing else accesses the device;
        // the data is initialised iff `init` (type invariant).
        unsafe {
            if (*this).init {
                (*this).init = false;
                ptr::drop_in_place((*this).data.as_mut_ptr());
            }
        }
    }

    /// `open_device`, `close_device`, `request` and `dma_unmap`.
    ///
    /// # Safety
    ///
    /// Called by VFIO with a registered device of driver `T` (for
    /// `dma_unmap`, also after its close, while it is registered).
    unsafe fn device<'a>(vdev: *mut bindings::vfio_device) -> &'a Device<T> {
        // SAFETY: a registered device of ours is a live, initialised
        // `Device<T>` (the caller guarantees).
        unsafe { Device::from_raw(vdev) }
    }

    /// `open_device`.
    ///
    /// # Safety
    ///
    /// As for [`Self::device`].
    unsafe extern "C" fn open_callback(vdev: *mut bindings::vfio_device) -> i32 {
        // SAFETY: the caller guarantees `vdev`.
        let dev = unsafe { Self::device(vdev) };
        from_result(|| T::open(dev).map(|()| 0))
    }

    /// `close_device`.
    ///
    /// # Safety
    ///
    /// As for [`Self::device`].
    unsafe extern "C" fn close_callback(vdev: *mut bindings::vfio_device) {
        // SAFETY: the caller guarantees `vdev`.
        T::close(unsafe { Self::device(vdev) });
    }

    /// `read`.
    ///
    /// # Safety
    ///
    /// Called by VFIO for an open device of driver `T`; `buf` is a user
    /// pointer of `count` bytes and `ppos` is valid for the call.
    unsafe extern "C" fn read_callback(
        vdev: *mut bindings::vfio_device,
        buf: *mut c_char,
        count: usize,
        ppos: *mut bindings::loff_t,
    ) -> isize {
        // SAFETY: the caller guarantees `vdev` and `ppos`.
        let (dev, pos) = unsafe { (Self::device(vdev), *ppos as u64) };
        from_result(|| {
            let n = T::read(dev, UserSlice::new(buf as usize, count).writer(), pos)?;
            Ok(n as isize)
        })
    }

    /// `write`.
    ///
    /// # Safety
    ///
    /// As for [`Self::read_callback`].
    unsafe extern "C" fn write_callback(
        vdev: *mut bindings::vfio_device,
        buf: *const c_char,
        count: usize,
        ppos: *mut bindings::loff_t,
    ) -> isize {
        // SAFETY: the caller guarantees `vdev` and `ppos`.
        let (dev, pos) = unsafe { (Self::device(vdev), *ppos as u64) };
        from_result(|| {
            let n = T::write(dev, UserSlice::new(buf as usize, count).reader(), pos)?;
            Ok(n as isize)
        })
    }

    /// `ioctl`.
    ///
    /// # Safety
    ///
    /// Called by VFIO for an open device of driver `T`; `arg` is an
    /// untrusted user value.
    unsafe extern "C" fn ioctl_callback(
        vdev: *mut bindings::vfio_device,
        cmd: c_uint,
        arg: c_ulong,
    ) -> c_long {
        // SAFETY: the caller guarantees `vdev`.
        let dev = unsafe { Self::device(vdev) };
        from_result(|| T::ioctl(dev, cmd, arg as usize))
    }

    /// `request`.
    ///
    /// # Safety
    ///
    /// As for [`Self::device`].
    unsafe extern "C" fn request_callback(vdev: *mut bindings::vfio_device, count: c_uint) {
        // SAFETY: the caller guarantees `vdev`.
        T::request(unsafe { Self::device(vdev) }, count);
    }

    /// `mmap`.
    ///
    /// # Safety
    ///
    /// As for [`Self::device`]; `vma` is the VMA being set up.
    unsafe extern "C" fn mmap_callback(
        vdev: *mut bindings::vfio_device,
        vma: *mut bindings::vm_area_struct,
    ) -> c_int {
        let Some(ptr) = NonNull::new(vma) else {
            return EINVAL.to_errno();
        };
        // INVARIANT: VFIO passes the VMA, valid for the call.
        let vma = Vma { ptr };
        // SAFETY: the caller guarantees `vdev`.
        match T::mmap(unsafe { Self::device(vdev) }, &vma) {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        }
    }

    /// `dma_unmap`.
    ///
    /// # Safety
    ///
    /// As for [`Self::device`].
    unsafe extern "C" fn dma_unmap_callback(vdev: *mut bindings::vfio_device, iova: u64, len: u64) {
        // SAFETY: the caller guarantees `vdev`.
        T::dma_unmap(unsafe { Self::device(vdev) }, iova, len);
    }

    const VTABLE: bindings::vfio_device_ops = bindings::vfio_device_ops {
        name: T::NAME.as_char_ptr().cast_mut(),
        init: None,
        release: Some(Self::release_callback),
        bind_iommufd: Some(bindings::vfio_iommufd_emulated_bind),
        unbind_iommufd: Some(bindings::vfio_iommufd_emulated_unbind),
        attach_ioas: Some(bindings::vfio_iommufd_emulated_attach_ioas),
        detach_ioas: Some(bindings::vfio_iommufd_emulated_detach_ioas),
        open_device: if T::HAS_OPEN {
            Some(Self::open_callback)
        } else {
            None
        },
        close_device: if T::HAS_CLOSE {
            Some(Self::close_callback)
        } else {
            None
        },
        read: if T::HAS_READ {
            Some(Self::read_callback)
        } else {
            None
        },
        write: if T::HAS_WRITE {
            Some(Self::write_callback)
        } else {
            None
        },
        ioctl: if T::HAS_IOCTL {
            Some(Self::ioctl_callback)
        } else {
            None
        },
        mmap: if T::HAS_MMAP {
            Some(Self::mmap_callback)
        } else {
            None
        },
        request: if T::HAS_REQUEST {
            Some(Self::request_callback)
        } else {
            None
        },
        match_: None,
        dma_unmap: if T::HAS_DMA_UNMAP {
            Some(Self::dma_unmap_callback)
        } else {
            None
        },
        device_feature: None,
    };

    const fn build() -> &'static bindings::vfio_device_ops {
        &Self::VTABLE
    }
}

/// The guest memory of a device, by IOVA: what a driver's data keeps to
/// reach it from its own worker.
///
/// # Invariants
///
/// `vdev` is a device allocated by [`Device::new`], of a driver with
/// [`Driver::dma_unmap`]; the methods say when it must be open.
#[derive(Clone, Copy)]
pub struct Dma {
    vdev: NonNull<bindings::vfio_device>,
}

// SAFETY: the VFIO functions called through `Dma` may be called from any
// thread.
unsafe impl Send for Dma {}
// SAFETY: as above.
unsafe impl Sync for Dma {}

/// A guest page pinned by [`Dma::pin_page`]; the pin is given back with
/// [`Dma::unpin_page`].
///
/// # Invariants
///
/// The page was pinned by [`Dma::pin_page`], and `addr` is its address in
/// the kernel's direct map (a lowmem page: mapped for as long as it is
/// allocated, which a pin guarantees). A copy is only a name of the page:
/// whoever holds the pin says, to [`PinnedPage::addr`]'s callers, that it
/// is still held.
#[derive(Clone, Copy)]
pub struct PinnedPage {
    addr: NonNull<u8>,
}

// SAFETY: a pinned page may be accessed and unpinned on any thread.
unsafe impl Send for PinnedPage {}

impl PinnedPage {
    /// The kernel address of the whole page: valid for reads and writes of
    /// `PAGE_SIZE` bytes for as long as the pin is held (the caller of any
    /// access through it must make sure it is).
    #[inline]
    pub fn addr(&self) -> *mut u8 {
        self.addr.as_ptr()
    }
}

impl Dma {
    /// Copies between `buf` and guest memory at `iova` (`vfio_dma_rw()`).
    ///
    /// # Safety
    ///
    /// The device must be open, and `buf` valid for `len` bytes (for reads
    /// when `write`, else for writes).
    pub unsafe fn rw(&self, iova: u64, buf: *mut u8, len: usize, write: bool) -> Result {
        // SAFETY: the caller guarantees an open device and `buf`.
        to_result(unsafe {
            bindings::vfio_dma_rw(self.vdev.as_ptr(), iova, buf.cast(), len, write)
        })
    }

    /// Pins the guest page of `iova`, for reads, or for reads and writes.
    ///
    /// # Safety
    ///
    /// The device must be open, bound to iommufd or a type1 container; no
    /// lock that the driver's [`Driver::dma_unmap`] takes may be held.
    pub unsafe fn pin_page(&self, iova: u64, write: bool) -> Result<PinnedPage> {
        let prot = if write {
            bindings::IOMMU_READ | bindings::IOMMU_WRITE
        } else {
            bindings::IOMMU_READ
        };
        let mut page: *mut bindings::page = ptr::null_mut();
        // SAFETY: the caller guarantees an open device and the locking;
        // `page` has room for one page pointer.
        let r = unsafe {
            bindings::vfio_pin_pages(self.vdev.as_ptr(), iova, 1, prot as i32, &mut page)
        };
        if r < 0 {
            return Err(Error::from_errno(r));
        }
        let page = match NonNull::new(page) {
            Some(p) if r == 1 => p,
            _ => return Err(EINVAL),
        };
        // SAFETY: `page` is pinned (just above), so it stays allocated.
        let addr = unsafe { bindings::vhost_mdev_helper_page_address_lowmem(page.as_ptr()) };
        match NonNull::new(addr.cast::<u8>()) {
            // INVARIANT: pinned above; `addr` is its direct-map address.
            Some(addr) => Ok(PinnedPage { addr }),
            None => {
                // A highmem page (32-bit kernels only): not kept, so that
                // callers never need a temporary mapping.
                // SAFETY: the pin of `iova` taken just above on the open
                // device.
                unsafe { self.unpin_page(iova) };
                Err(eopnotsupp())
            }
        }
    }

    /// Gives back the pin of the page of `iova`.
    ///
    /// # Safety
    ///
    /// The device must be open, and the page of `iova` pinned by
    /// [`Dma::pin_page`] on it, a pin that was not given back yet.
    pub unsafe fn unpin_page(&self, iova: u64) {
        // SAFETY: the caller guarantees an open device and the pin.
        unsafe { bindings::vfio_unpin_pages(self.vdev.as_ptr(), iova, 1) };
    }
}

/// What a bound [`Virqfd`] calls when its eventfd is signalled.
pub trait VirqfdHandler: Sync {
    /// Handles a signal, in atomic context; `data` is what was bound.
    fn handle(&self, data: usize);
}

/// A virqfd slot: an eventfd bound to a handler by VFIO's virqfd code
/// (`vfio_virqfd_enable()`), which owns the slot's content and writes it
/// under its own lock, also from its wake-up handler. Rust never reads it.
#[repr(transparent)]
pub struct Virqfd(Opaque<*mut bindings::virqfd>);

// SAFETY: the slot is only accessed by VFIO's virqfd code, under its lock.
unsafe impl Sync for Virqfd {}
// SAFETY: as above.
unsafe impl Send for Virqfd {}

impl Virqfd {
    /// An unbound slot.
    pub const fn new() -> Self {
        Self(Opaque::new(ptr::null_mut()))
    }

    /// Binds the eventfd `fd` to the slot: each signal calls
    /// `target.handle(data)`. VFIO refuses a bound slot with `EBUSY`.
    ///
    /// # Safety
    ///
    /// `target` must live, and the slot stay in place, until
    /// [`Virqfd::disable`] returned for the slot (VFIO keeps the slot's
    /// address and clears it from its wake-up handler).
    pub unsafe fn enable<H: VirqfdHandler>(&self, target: &H, data: usize, fd: i32) -> Result {
        // SAFETY: `target` lives and the slot stays until `disable`, which
        // waits for VFIO's cleanup work (the caller guarantees).
        to_result(unsafe {
            bindings::vfio_virqfd_enable(
                ptr::from_ref(target).cast_mut().cast(),
                Some(virqfd_handler::<H>),
                None,
                data as *mut c_void,
                self.0.get(),
                fd,
            )
        })
    }

    /// Unbinds the slot (bound or not) and waits for the virqfd's shutdown.
    pub fn disable(&self) {
        // SAFETY: the slot is only ever handed to the virqfd functions;
        // disabling an unbound slot flushes VFIO's cleanup work only.
        unsafe { bindings::vfio_virqfd_disable(self.0.get()) };
    }
}

/// The virqfd wake-up handler of a slot bound to an `H`.
///
/// # Safety
///
/// Called by VFIO's virqfd code in atomic context with the `opaque` and
/// `data` given to `vfio_virqfd_enable()`: a live `H` and a value.
unsafe extern "C" fn virqfd_handler<H: VirqfdHandler>(
    opaque: *mut c_void,
    data: *mut c_void,
) -> i32 {
    // SAFETY: `opaque` is the `H` given to `enable`, live until `disable`.
    let target = unsafe { &*opaque.cast::<H>() };
    target.handle(data as usize);
    0
}
