// SPDX-License-Identifier: GPL-2.0

//! An instance's life: created in the mdev driver's `probe`, registered
//! with VFIO, opened and closed by its user, destroyed in `remove`, and
//! freed by VFIO after the last reference (`release`).
//!
//! C header: [`include/linux/vfio.h`](srctree/include/linux/vfio.h).

use crate::bindings;
use crate::dma::PinCache;
use crate::errno::EINVAL;
use crate::instance::{Instance, InstanceState};
use crate::irq::Irqs;
use crate::live;
use crate::parent::Parent;
use crate::proto;
use crate::rings::RingMap;
use crate::transport::Channel;
use crate::vfio;
use core::mem::size_of;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU8, Ordering};
use kernel::error::{from_err_ptr, to_result};
use kernel::ffi::c_char;
use kernel::init::PinInit;
use kernel::prelude::*;
use kernel::types::ScopeGuard;
use kernel::{c_str, new_mutex};

/// The VFIO device ops of every instance.
struct VfioOps(bindings::vfio_device_ops);

// SAFETY: the ops are immutable; the name pointer is to a static string.
unsafe impl Sync for VfioOps {}

static VFIO_OPS: VfioOps = VfioOps(bindings::vfio_device_ops {
    name: c_str!("vhost-mdev").as_char_ptr() as *mut c_char,
    init: None,
    release: Some(release),
    bind_iommufd: Some(bindings::vfio_iommufd_emulated_bind),
    unbind_iommufd: Some(bindings::vfio_iommufd_emulated_unbind),
    attach_ioas: Some(bindings::vfio_iommufd_emulated_attach_ioas),
    detach_ioas: Some(bindings::vfio_iommufd_emulated_detach_ioas),
    open_device: Some(open_device),
    close_device: Some(close_device),
    read: Some(vfio::read),
    write: Some(vfio::write),
    ioctl: Some(vfio::ioctl),
    mmap: Some(vfio::mmap),
    request: Some(vfio::request),
    match_: None,
    dma_unmap: Some(vfio::dma_unmap),
    device_feature: None,
});

/// Creates the instance for `mdev` and registers it with VFIO.
///
/// # Safety
///
/// `mdev` must be a live mdev device being probed for a type of `parent`
/// with index `type_index`.
pub(crate) unsafe fn create(
    parent: &Parent,
    mdev: *mut bindings::mdev_device,
    type_index: u32,
) -> Result {
    // SAFETY: `mdev` is live; its `dev` is the device VFIO hangs off.
    let dev = unsafe { ptr::addr_of_mut!((*mdev).dev) };
    // SAFETY: `VFIO_OPS` is static; the size covers the `vfio_device` at
    // offset 0 of `Instance`.
    let vdev = unsafe {
        bindings::vhost_mdev_helper_vfio_alloc_device(size_of::<Instance>(), dev, &VFIO_OPS.0)
    };
    let vdev = from_err_ptr(vdev)?;
    // VFIO calls our `release` when the last reference goes, however
    // late: module exit waits for it.
    live::get();
    let this = vdev.cast::<Instance>();
    // From here on, dropping `put` frees the allocation (and, once
    // `state_init` is set, drops the state in `release`).
    let put = ScopeGuard::new(|| {
        // SAFETY: our reference from `_vfio_alloc_device`, not
        // registered with VFIO (or unregistered again).
        unsafe { bindings::vhost_mdev_helper_vfio_put_device(vdev) }
    });

    let channel = Channel::new()?;
    let init = pin_init!(InstanceState {
        parent: parent as *const Parent,
        mdev,
        priv_: AtomicPtr::new(ptr::null_mut()),
        nvqs: AtomicU32::new(0),
        channel <- new_mutex!(channel, "vhost_mdev_state"),
        irqs <- Irqs::new(),
        kicks_on: AtomicBool::new(false),
        device_status: AtomicU8::new(0),
        mm: AtomicPtr::new(ptr::null_mut()),
        pins <- PinCache::new(),
        rings <- RingMap::new(),
    });
    // SAFETY: `this` is a zeroed allocation large enough for `Instance`
    // that nothing else references yet; the state is never moved (VFIO
    // owns the allocation until `release`, which drops it in place).
    let Ok(()) = unsafe { init.__pinned_init(ptr::addr_of_mut!((*this).state)) };
    // SAFETY: `this` is valid; nothing else accesses it yet.
    unsafe { (*this).state_init = true };
    // SAFETY: initialised just above; only shared references are made.
    let state = unsafe { &(*this).state };

    // The parent's instance. The handle is valid for upcalls from here.
    let raw = match parent.info.create {
        // SAFETY: `this` is an initialised instance, a valid
        // `vhost_mdev_device` handle until the parent's `destroy`.
        Some(f) => unsafe { f(parent.info.priv_, this.cast(), type_index) },
        None => ptr::null_mut(),
    };
    let priv_ = match from_err_ptr(raw) {
        Ok(p) if !p.is_null() => p,
        r => return Err(r.err().unwrap_or(EINVAL)),
    };
    state.priv_.store(priv_, Ordering::Release);
    let destroy = ScopeGuard::new(|| {
        if let Some(f) = parent.ops().destroy {
            // SAFETY: `priv_` came from the parent's `create`; this runs
            // once, before `put` frees the instance (guards drop in
            // reverse order).
            unsafe { f(priv_) };
        }
    });

    // SAFETY: `priv_` is the parent's live instance.
    let nvqs = unsafe { parent.ops().get_vq_count.map_or(0, |f| f(priv_)) };
    if nvqs == 0 || nvqs as usize > proto::MAX_VQS {
        return Err(EINVAL);
    }
    state.nvqs.store(nvqs, Ordering::Release);

    // SAFETY: `vdev` is initialised; from here VFIO may call our ops.
    to_result(unsafe { bindings::vfio_register_emulated_iommu_dev(vdev) })?;
    // SAFETY: `mdev` is live; the instance is found from it in `destroy`
    // and by `vhost_mdev_priv_from_dev()`.
    unsafe { bindings::vhost_mdev_helper_dev_set_drvdata(dev, this.cast()) };

    let groups = parent.info.dev_groups;
    if !groups.is_null() {
        // SAFETY: `dev` is registered; `groups` is a NULL-terminated
        // array of the parent driver that outlives the registration.
        let r = unsafe { bindings::sysfs_create_groups(&mut (*dev).kobj, groups) };
        if r != 0 {
            // SAFETY: registered above; unregistering waits for a user
            // that opened it meanwhile to close it.
            unsafe {
                bindings::vhost_mdev_helper_dev_set_drvdata(dev, ptr::null_mut());
                bindings::vfio_unregister_group_dev(vdev);
            }
            return Err(Error::from_errno(r));
        }
    }
    destroy.dismiss();
    put.dismiss();
    Ok(())
}

/// The instance of one of our mdev devices, or null while it has none.
///
/// # Safety
///
/// `dev` must be the device of an mdev of one of our parents.
pub(crate) unsafe fn of_dev(dev: *mut bindings::device) -> *mut Instance {
    // SAFETY: the caller guarantees `dev`; its drvdata is ours, set to a
    // live instance from `create` until `destroy`.
    unsafe { bindings::vhost_mdev_helper_dev_get_drvdata(dev) }.cast::<Instance>()
}

/// Removes the instance of `mdev`: waits until its user lets go (the
/// request IRQ tells it to), then destroys the parent's instance.
///
/// # Safety
///
/// `mdev` must be a device that `create` succeeded for, not destroyed.
pub(crate) unsafe fn destroy(mdev: *mut bindings::mdev_device) {
    // SAFETY: `mdev` is live.
    let dev = unsafe { ptr::addr_of_mut!((*mdev).dev) };
    // SAFETY: set in `create`.
    let this = unsafe { of_dev(dev) };
    // SAFETY: `this` is a live instance (created, not yet destroyed).
    let state = unsafe { &(*this).state };
    let parent = state.parent();
    if !parent.info.dev_groups.is_null() {
        // SAFETY: created in `create`.
        unsafe { bindings::sysfs_remove_groups(&mut (*dev).kobj, parent.info.dev_groups) };
    }
    let vdev = this.cast::<bindings::vfio_device>();
    // SAFETY: registered in `create`. This blocks, calling `request`,
    // until the device is closed; `close_device` has reset it by then.
    unsafe { bindings::vfio_unregister_group_dev(vdev) };
    if let Some(f) = parent.ops().destroy {
        // SAFETY: the device is closed and unregistered: no op or upcall
        // of this instance runs any more.
        unsafe { f(state.priv_()) };
    }
    // SAFETY: `dev` is live.
    unsafe { bindings::vhost_mdev_helper_dev_set_drvdata(dev, ptr::null_mut()) };
    // SAFETY: drops our reference; `release` runs and VFIO frees.
    unsafe { bindings::vhost_mdev_helper_vfio_put_device(vdev) };
}

/// `vfio_device_ops.release`: drops the Rust part of the instance.
///
/// # Safety
///
/// Called by VFIO once, when the last reference to our `vdev` goes, before
/// VFIO frees the allocation.
unsafe extern "C" fn release(vdev: *mut bindings::vfio_device) {
    let this = vdev.cast::<Instance>();
    // SAFETY: VFIO calls `release` once, when the last reference goes; the
    // state is initialised iff `state_init` (type invariant).
    unsafe {
        if (*this).state_init {
            (*this).state_init = false;
            ptr::drop_in_place(ptr::addr_of_mut!((*this).state));
        }
    }
    // Counted when the device was allocated; the last of this module's
    // code that runs for it.
    live::put();
}

/// `vfio_device_ops.open_device`: the first open.
///
/// # Safety
///
/// Called by VFIO with one of our registered, initialised devices.
unsafe extern "C" fn open_device(vdev: *mut bindings::vfio_device) -> i32 {
    // SAFETY: VFIO only opens registered devices, which are initialised.
    let this = unsafe { Instance::from_vdev(vdev) };
    let _guard = this.channel.lock();
    // SAFETY: reading `current->mm` of the opening task.
    let mm = unsafe { bindings::vhost_mdev_helper_current_mm() };
    if !mm.is_null() {
        // SAFETY: `mm` is the live mm of the current task; the reference
        // is dropped in `close_device`.
        unsafe { bindings::vhost_mdev_helper_mmgrab(mm) };
    }
    this.mm.store(mm, Ordering::Release);
    // SAFETY: `vdev` is being opened; `close_device` closes the cache.
    unsafe { this.pins.open(vdev) };
    this.device_status.store(0, Ordering::Release);
    this.kicks_on.store(true, Ordering::Release);
    0
}

/// `vfio_device_ops.close_device`: the last close; stops the device.
///
/// # Safety
///
/// Called by VFIO with one of our devices that is open.
unsafe extern "C" fn close_device(vdev: *mut bindings::vfio_device) {
    // SAFETY: VFIO only closes open devices.
    let this = unsafe { Instance::from_vdev(vdev) };
    let mut ch = this.channel.lock();
    // 1. Unbind the ioeventfds.
    this.irqs.unbind_all();
    // 2. Block new kicks from the notify region.
    this.kicks_on.store(false, Ordering::Release);
    // 3. Stop the device: the parent cancels and waits for its worker and
    // drops its translations; no DMA is in flight when it returns. This
    // also clears the staged reply (the status was cleared by the reset).
    ch.reset(&mut this.backend());
    // ... and the core's own translations: unpin every cached page, and
    // forget the rings' user addresses.
    this.pins.close();
    this.rings.clear();
    // 4. Release the IRQ eventfds.
    this.irqs.detach_all();
    // The worker is quiet: nothing uses the opener's mm any more.
    let mm = this.mm.swap(ptr::null_mut(), Ordering::AcqRel);
    if !mm.is_null() {
        // SAFETY: the reference taken in `open_device`.
        unsafe { bindings::vhost_mdev_helper_mmdrop(mm) };
    }
}
