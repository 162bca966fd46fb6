// SPDX-License-Identifier: GPL-2.0

//! The C ABI for parent drivers: registration and the upcalls of an
//! instance (exported by `shim.c`).
//!
//! C header: [`include/linux/vhost_mdev.h`](../include/linux/vhost_mdev.h).

use crate::bindings;
use crate::driver;
use crate::errno::{eopnotsupp, E2BIG, EFAULT, EINVAL, ENOMEM, ESRCH};
use crate::fault_inject::{self, Point};
use crate::instance::{Instance, InstanceState, Vdev};
use crate::lifecycle;
use crate::mdev;
use crate::proto;
use crate::uapi::{IRQ_CONFIG, IRQ_VQ};
use core::ptr;
use core::sync::atomic::Ordering;
use kernel::ffi::c_void;

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
    // SAFETY: the caller guarantees `info` and the lifetimes.
    match unsafe { driver::register_parent(&*info, ptr::null_mut()) } {
        Ok(p) => p.into_raw().cast(),
        Err(e) => e.to_ptr(),
    }
}

/// `vhost_mdev_register_parent_on()`: as `vhost_mdev_register_parent()`,
/// with the parent's device a child of `dev`.
///
/// # Safety
///
/// As for `vhost_mdev_register_parent()`; `dev` must be a registered
/// device that stays registered until the parent is unregistered.
#[no_mangle]
pub(crate) unsafe extern "C" fn vhost_mdev_register_parent_on(
    dev: *mut bindings::device,
    info: *const bindings::vhost_mdev_parent_info,
) -> *mut bindings::vhost_mdev_parent {
    if info.is_null() || dev.is_null() {
        return EINVAL.to_ptr();
    }
    // SAFETY: the caller guarantees `info`, `dev` and the lifetimes.
    match unsafe { driver::register_parent(&*info, dev) } {
        Ok(p) => p.into_raw().cast(),
        Err(e) => e.to_ptr(),
    }
}

/// `vhost_mdev_unregister_parent()`: removes every instance (waiting for
/// their users to close them, after signalling the request IRQ) and the
/// parent. Nothing of the parent driver is used after this returns.
///
/// # Safety
///
/// `parent` must have been returned by `vhost_mdev_register_parent()` and
/// not unregistered yet.
#[no_mangle]
pub(crate) unsafe extern "C" fn vhost_mdev_unregister_parent(
    parent: *mut bindings::vhost_mdev_parent,
) {
    // SAFETY: the caller guarantees `parent` came from
    // `vhost_mdev_register_parent()`, not unregistered yet.
    drop(unsafe { mdev::Parent::<driver::Core>::from_raw(parent.cast()) });
}

/// `vhost_mdev_vq_interrupt()`: signals the eventfd of queue `idx`.
///
/// # Safety
///
/// `vdev` must be a live instance handle. Any context: the IRQ lock
/// disables interrupts, and `eventfd_signal()` may be called from hard IRQ
/// handlers.
#[no_mangle]
pub(crate) unsafe extern "C" fn vhost_mdev_vq_interrupt(
    vdev: *mut bindings::vhost_mdev_device,
    idx: u16,
) {
    // SAFETY: the caller guarantees the handle is live.
    let this = unsafe { Instance::from_handle(vdev) };
    if u32::from(idx) < this.nvqs() {
        this.irqs.signal(IRQ_VQ, idx as usize);
    }
}

/// `vhost_mdev_config_changed()`: signals the config eventfd.
///
/// # Safety
///
/// `vdev` must be a live instance handle; process context only (as for
/// `vhost_mdev_vq_interrupt()`).
#[no_mangle]
pub(crate) unsafe extern "C" fn vhost_mdev_config_changed(vdev: *mut bindings::vhost_mdev_device) {
    // SAFETY: the caller guarantees the handle is live.
    unsafe { Instance::from_handle(vdev) }
        .irqs
        .signal(IRQ_CONFIG, 0);
}

/// `vhost_mdev_needs_reset()`: sets DEVICE_NEEDS_RESET and signals the
/// config eventfd. The device stays stopped until the driver resets it.
///
/// # Safety
///
/// `vdev` must be a live instance handle; process context only (as for
/// `vhost_mdev_vq_interrupt()`).
#[no_mangle]
pub(crate) unsafe extern "C" fn vhost_mdev_needs_reset(vdev: *mut bindings::vhost_mdev_device) {
    // SAFETY: the caller guarantees the handle is live.
    let this = unsafe { Instance::from_handle(vdev) };
    this.device_status
        .fetch_or(proto::status::NEEDS_RESET, Ordering::AcqRel);
    this.irqs.signal(IRQ_CONFIG, 0);
}

/// `vhost_mdev_dma_rw()`: reads or writes guest memory by IOVA.
///
/// An aligned 2-byte access is one load or store where it is a ring index
/// or event field (inside a ring of a configured queue): through the pin
/// cache with iommufd, else through the VMM's address space (see
/// [`crate::rings`]); never a byte-wise copy.
///
/// # Safety
///
/// `vdev` must be a live, open instance handle; `buf` valid for `len`
/// bytes; called in process context (a worker), never after `reset()`
/// returned for the current session.
#[no_mangle]
pub(crate) unsafe extern "C" fn vhost_mdev_dma_rw(
    vdev: *mut bindings::vhost_mdev_device,
    iova: u64,
    buf: *mut c_void,
    len: usize,
    write: bool,
) -> i32 {
    if len == 0 {
        return 0;
    }
    if fault_inject::should_fail(Point::Dma) {
        // As for an IOVA that is not mapped.
        return EFAULT.to_errno();
    }
    // SAFETY: the caller guarantees the handle is live.
    let this = unsafe { Instance::from_handle(vdev) };
    // SAFETY: the caller guarantees all of `dma_rw`'s conditions.
    let r = unsafe { dma_rw(this, vdev, iova, buf, len, write) };
    // Logged after the write (whatever its result: part of it may have
    // been done), so that a VMM that clears the bit and then reads the
    // page sees the new data or the bit again.
    if write && this.log.on() {
        this.log.write(iova, len as u64);
    }
    r
}

/// The access of [`vhost_mdev_dma_rw`], without the dirty log.
///
/// # Safety
///
/// As for `vhost_mdev_dma_rw()`; `this` is the state of `vdev`.
#[inline(always)]
unsafe fn dma_rw(
    this: &InstanceState,
    vdev: *mut bindings::vhost_mdev_device,
    iova: u64,
    buf: *mut c_void,
    len: usize,
    write: bool,
) -> i32 {
    // SAFETY: the caller guarantees `buf` for `len` bytes.
    if unsafe { this.pins.rw(iova, buf.cast(), len, write) } {
        return 0;
    }
    if let Some(hva) = (len == 2).then(|| this.rings.lookup(iova)).flatten() {
        // A ring index or event field: one access through the VMM's
        // address space, never `vfio_dma_rw()`'s byte-wise copy. Only while
        // the IOVA is mapped: the device touches nothing that the IOMMU
        // does not map (the probe's bytes, possibly torn, are dropped).
        let mut probe = [0u8; 2];
        // SAFETY: the caller guarantees an open device; `probe` is ours.
        let r = unsafe {
            bindings::vfio_dma_rw(vdev.cast(), iova, probe.as_mut_ptr().cast(), 2, false)
        };
        if r != 0 {
            return r;
        }
        // SAFETY: the caller guarantees `buf` for 2 bytes, process context
        // and an open device whose worker `reset()` quiesces.
        return unsafe { this.rings.rw_u16(hva, buf.cast(), write) };
    }
    // SAFETY: the handle is the instance, whose first field is the
    // `vfio_device`; the caller guarantees the device is open and `buf`.
    unsafe { bindings::vfio_dma_rw(vdev.cast(), iova, buf, len, write) }
}

/// `vhost_mdev_dma_copy()`: copies guest memory to guest memory by IOVA,
/// page to page through the pinned-page cache.
///
/// Returns 0, or `-EOPNOTSUPP` when the cache cannot serve the copy (a type1
/// container, a failed pin, an unmapped IOVA): the parent then copies
/// through a buffer of its own with `vhost_mdev_dma_rw()`, which reports
/// the real error. Part of the copy may have been done by then.
///
/// # Safety
///
/// As for `vhost_mdev_dma_rw()`.
#[no_mangle]
pub(crate) unsafe extern "C" fn vhost_mdev_dma_copy(
    vdev: *mut bindings::vhost_mdev_device,
    dst: u64,
    src: u64,
    len: usize,
) -> i32 {
    // SAFETY: the caller guarantees the handle is live.
    let this = unsafe { Instance::from_handle(vdev) };
    let ok = this.pins.copy(dst, src, len);
    // The destination, done or partly done (see `vhost_mdev_dma_rw`).
    if this.log.on() {
        this.log.write(dst, len as u64);
    }
    if ok {
        0
    } else {
        eopnotsupp().to_errno()
    }
}

/// `vhost_mdev_dma_can_copy()`: whether `vhost_mdev_dma_copy()` can work
/// (the device is bound to iommufd), so that a parent picks its data path
/// once per worker run.
///
/// # Safety
///
/// `vdev` must be a live instance handle. Any context.
#[no_mangle]
pub(crate) unsafe extern "C" fn vhost_mdev_dma_can_copy(
    vdev: *mut bindings::vhost_mdev_device,
) -> bool {
    // SAFETY: the caller guarantees the handle is live.
    unsafe { Instance::from_handle(vdev) }.pins.enabled()
}

/// `vhost_mdev_dma_begin()`: the calling worker adopts the opener's mm.
///
/// Returns 0, `-EINVAL` outside a kthread or with an mm already adopted,
/// `-ESRCH` when the opener's address space is gone.
///
/// # Safety
///
/// `vdev` must be a live, open instance handle, called from the parent's
/// worker, which `reset()` stops before the device is closed; every
/// successful call must be paired with `vhost_mdev_dma_end()` before the
/// worker returns.
#[no_mangle]
pub(crate) unsafe extern "C" fn vhost_mdev_dma_begin(
    vdev: *mut bindings::vhost_mdev_device,
) -> i32 {
    // SAFETY: the caller guarantees the handle is live.
    let this = unsafe { Instance::from_handle(vdev) };
    // SAFETY: inspecting the current task.
    if !unsafe { bindings::vhost_mdev_helper_current_is_kthread() }
        || !unsafe { bindings::vhost_mdev_helper_current_mm() }.is_null()
    {
        return EINVAL.to_errno();
    }
    let mm = this.mm.load(Ordering::Acquire);
    // SAFETY: `mm` holds an `mmgrab` reference while the device is open,
    // and the worker only runs while it is open.
    if mm.is_null() || !unsafe { bindings::vhost_mdev_helper_mmget_not_zero(mm) } {
        return ESRCH.to_errno();
    }
    // SAFETY: a kthread with no mm of its own; `mm` has a user reference
    // (from `mmget_not_zero`), put in `vhost_mdev_dma_end`.
    unsafe { bindings::kthread_use_mm(mm) };
    0
}

/// `vhost_mdev_dma_end()`: ends what `vhost_mdev_dma_begin()` started.
///
/// # Safety
///
/// Must follow a successful `vhost_mdev_dma_begin()` on the same worker.
#[no_mangle]
pub(crate) unsafe extern "C" fn vhost_mdev_dma_end(_vdev: *mut bindings::vhost_mdev_device) {
    // SAFETY: the caller adopted an mm with `vhost_mdev_dma_begin`, which
    // holds a user reference on it.
    unsafe {
        let mm = bindings::vhost_mdev_helper_current_mm();
        bindings::kthread_unuse_mm(mm);
        bindings::mmput(mm);
    }
}

/// Pages one `vhost_mdev_dma_pin()` may pin (VFIO's
/// `VFIO_PIN_PAGES_MAX_ENTRIES`).
const PIN_MAX: i32 = 512;

/// `vhost_mdev_dma_pin()`: pins `npages` pages of guest memory from the
/// page-aligned `iova` for a device that does its own DMA.
///
/// Returns the number pinned, or `-EINVAL` (device not open, `iova` not
/// page-aligned, `npages` not positive, `pages` null), `-E2BIG` (more than
/// [`PIN_MAX`]), `-EOPNOTSUPP` (the device is open through a type1
/// container, see below), or VFIO's error.
///
/// Only an opening bound to iommufd (the vfio cdev, or iommufd's compat
/// container) may pin. With 6.12's type1, a device that unpins from its
/// `dma_unmap` (as it must) takes `iommu->lock` under the
/// `device_list_lock` that `vfio_notify_dma_unmap()` holds, the reverse of
/// `vfio_iommu_type1_register_device()`'s order: a lockdep cycle and a
/// real deadlock against a concurrent unmap; and one that does not unpin
/// hits `BUG_ON` in `vfio_dma_do_unmap()`.
///
/// # Safety
///
/// `vdev` must be a live instance handle, `pages` valid for `npages`
/// writes; process context.
#[no_mangle]
pub(crate) unsafe extern "C" fn vhost_mdev_dma_pin(
    vdev: *mut bindings::vhost_mdev_device,
    iova: u64,
    npages: i32,
    write: bool,
    pages: *mut *mut bindings::page,
) -> i32 {
    // SAFETY: the caller guarantees the handle is live.
    let this = unsafe { Instance::from_handle(vdev) };
    if pages.is_null() || npages <= 0 || iova % bindings::PAGE_SIZE as u64 != 0 {
        return EINVAL.to_errno();
    }
    if npages > PIN_MAX {
        return E2BIG.to_errno();
    }
    // VFIO WARNs on a pin of a closed device: refuse it here.
    if !this.kicks_on.load(Ordering::Acquire) {
        return EINVAL.to_errno();
    }
    // SAFETY: the handle is the instance's `vfio_device` (see
    // `Instance::from_handle`), live (the caller guarantees).
    if !unsafe { Vdev::from_raw(vdev.cast()) }.iommufd_bound() {
        return eopnotsupp().to_errno();
    }
    if fault_inject::should_fail(Point::Pin) {
        // As at the opener's `RLIMIT_MEMLOCK`.
        return ENOMEM.to_errno();
    }
    let prot = bindings::IOMMU_READ | if write { bindings::IOMMU_WRITE } else { 0 };
    // SAFETY: the handle is the instance, whose first field is the
    // `vfio_device` (which has `dma_unmap`); it is open; `pages` holds
    // `npages` entries (the caller guarantees).
    unsafe { bindings::vfio_pin_pages(vdev.cast(), iova, npages, prot, pages.cast()) }
}

/// `vhost_mdev_dma_unpin()`: unpins what `vhost_mdev_dma_pin()` pinned.
///
/// # Safety
///
/// `vdev` must be a live instance handle; `[iova, iova + npages pages)`
/// must have been pinned by `vhost_mdev_dma_pin()` and not unpinned yet;
/// process context.
#[no_mangle]
pub(crate) unsafe extern "C" fn vhost_mdev_dma_unpin(
    vdev: *mut bindings::vhost_mdev_device,
    iova: u64,
    npages: i32,
) {
    if npages <= 0 || npages > PIN_MAX {
        return;
    }
    // SAFETY: the caller guarantees a pinned range of this open device.
    unsafe { bindings::vfio_unpin_pages(vdev.cast(), iova, npages) }
}

/// `vhost_mdev_log_write()`: marks `[iova, iova + len)` dirty in the vhost
/// dirty log while the driver logs (`VHOST_F_LOG_ALL` and a log given);
/// does nothing otherwise.
///
/// # Safety
///
/// `vdev` must be a live instance handle. Any context.
#[no_mangle]
pub(crate) unsafe extern "C" fn vhost_mdev_log_write(
    vdev: *mut bindings::vhost_mdev_device,
    iova: u64,
    len: u64,
) {
    // SAFETY: the caller guarantees the handle is live.
    let this = unsafe { Instance::from_handle(vdev) };
    if this.log.on() {
        this.log.write(iova, len);
    }
}

/// `vhost_mdev_opener_mm()`: the opener's address space, with an
/// `mmgrab()` reference for the caller, or null when the device is not open.
///
/// # Safety
///
/// `vdev` must be a live instance handle; called from a parent op other
/// than `kick_vq` (under the state lock, which `close` holds while it drops
/// the core's reference).
#[no_mangle]
pub(crate) unsafe extern "C" fn vhost_mdev_opener_mm(
    vdev: *mut bindings::vhost_mdev_device,
) -> *mut bindings::mm_struct {
    // SAFETY: the caller guarantees the handle is live.
    let this = unsafe { Instance::from_handle(vdev) };
    let mm = this.mm.load(Ordering::Acquire);
    if !mm.is_null() {
        // SAFETY: `mm` holds the core's `mmgrab` reference while the device
        // is open; `close` drops it under the state lock, which the caller
        // holds, so it is live here.
        unsafe { bindings::vhost_mdev_helper_mmgrab(mm) };
    }
    mm
}

/// `vhost_mdev_priv_from_dev()`: the parent's instance of an mdev device
/// (for per-instance sysfs attributes).
///
/// # Safety
///
/// `dev` must be the device of a live instance of a vhost-mdev parent.
#[no_mangle]
pub(crate) unsafe extern "C" fn vhost_mdev_priv_from_dev(
    dev: *mut bindings::device,
) -> *mut c_void {
    // SAFETY: the caller guarantees `dev` is one of our mdev devices.
    let this = unsafe { lifecycle::of_dev(dev) };
    if this.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: drvdata is set to a live instance while it exists.
    unsafe { (*this).state.priv_() }
}

/// `vhost_mdev_uuid()`: the instance's 16-byte UUID.
///
/// # Safety
///
/// `vdev` must be a live instance handle.
#[no_mangle]
pub(crate) unsafe extern "C" fn vhost_mdev_uuid(
    vdev: *mut bindings::vhost_mdev_device,
) -> *const u8 {
    // SAFETY: the handle is the instance, whose first field is the
    // `vfio_device`; its `dev` is the mdev's device, set at allocation (so
    // this works from the parent's `create` too).
    unsafe {
        let dev = (*vdev.cast::<bindings::vfio_device>()).dev;
        ptr::addr_of!((*bindings::vhost_mdev_helper_to_mdev_device(dev)).uuid).cast()
    }
}

/// `vhost_mdev_is_open()`: whether a user has the device open.
///
/// # Safety
///
/// `vdev` must be a live instance handle. Any context.
#[no_mangle]
pub(crate) unsafe extern "C" fn vhost_mdev_is_open(vdev: *mut bindings::vhost_mdev_device) -> bool {
    // SAFETY: the caller guarantees the handle is live.
    unsafe { Instance::from_handle(vdev) }
        .kicks_on
        .load(Ordering::Acquire)
}
