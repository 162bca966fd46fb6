// SPDX-License-Identifier: GPL-2.0

//! An instance's life: created in the mdev driver's `probe`, registered
//! with VFIO, opened and closed by its user, destroyed in `remove`, and
//! freed by VFIO after the last reference (which drops its state).
//!
//! C header: [`include/linux/vfio.h`](srctree/include/linux/vfio.h).

use crate::bindings;
use crate::dirty::DirtyLog;
use crate::dma::PinCache;
use crate::errno::EINVAL;
use crate::instance::{Instance, InstanceState, Vdev};
use crate::irq::Irqs;
use crate::live;
use crate::mdev;
use crate::mm::MmGrab;
use crate::parent::Parent;
use crate::proto;
use crate::rings::RingMap;
use crate::status::{self, Backend, Status};
use crate::sysfs;
use crate::transport::Channel;
use crate::vfio;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU8, Ordering};
use kernel::error::from_err_ptr;
use kernel::new_mutex;
use kernel::prelude::*;
use kernel::types::ScopeGuard;

/// Creates the instance for `mdev` and registers it with VFIO.
///
/// `mdev` is being probed for the type of `parent` with index `type_index`.
pub(crate) fn create(parent: &Parent, mdev: &mdev::Device, type_index: u32) -> Result {
    let channel = Channel::new()?;
    let init = try_pin_init!(InstanceState {
        parent: parent as *const Parent,
        priv_: AtomicPtr::new(ptr::null_mut()),
        nvqs: AtomicU32::new(0),
        channel <- new_mutex!(channel, "vhost_mdev_state"),
        irqs <- Irqs::new(),
        kicks_on: AtomicBool::new(false),
        device_status: AtomicU8::new(0),
        mm: AtomicPtr::new(ptr::null_mut()),
        pins <- PinCache::new(),
        rings <- RingMap::new(),
        log <- DirtyLog::new(),
        status: Status::new(),
        // VFIO drops the state when the last reference goes, however
        // late: module exit waits for it.
        live: live::Token::new(),
    });
    // From here on, dropping `dev` (on an error) frees the instance.
    let dev = Vdev::new(mdev, init)?;
    let state = dev.data();

    // The parent's instance. The handle is valid for upcalls from here.
    let raw = match parent.info.create {
        // SAFETY: the handle is the instance's `vfio_device`, a valid
        // `vhost_mdev_device` handle until the parent's `destroy`.
        Some(f) => unsafe { f(parent.info.priv_, dev.as_raw().cast(), type_index) },
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
            // once, before `dev` is put (guards and locals drop in reverse
            // order).
            unsafe { f(priv_) };
        }
    });

    // The count the instance starts with (read again at every open).
    state.nvqs.store(vq_count(state)?, Ordering::Release);

    // From here VFIO may call the ops; an error below unregisters again
    // (waiting for a user that opened the device meanwhile to close it).
    dev.register()?;
    // The instance is found from `mdev` in `destroy` and by
    // `vhost_mdev_priv_from_dev()`.
    mdev.set_drvdata(ptr::from_ref::<Vdev>(&dev).cast_mut().cast());

    let groups = parent.info.dev_groups;
    let core_groups = status::GROUPS.as_raw().cast_mut();
    // SAFETY: the core's groups are `'static` and their callbacks expect a
    // device of ours (`status::Core`), whose drvdata is set above; removed
    // in `destroy`.
    let added = unsafe { mdev.add_groups(core_groups) }.and_then(|()| {
        if groups.is_null() {
            return Ok(());
        }
        // SAFETY: `groups` is a NULL-terminated array of the parent driver
        // that outlives the registration, removed in `destroy`.
        let r = unsafe { mdev.add_groups(groups) };
        if r.is_err() {
            // SAFETY: added just above.
            unsafe { mdev.remove_groups(core_groups) };
        }
        r
    });
    if let Err(e) = added {
        mdev.set_drvdata(ptr::null_mut());
        // Before the parent's instance goes: this waits for a user that
        // opened the device meanwhile to close it.
        dev.unregister();
        return Err(e);
    }
    destroy.dismiss();
    // Our reference goes back in `destroy`.
    let _ = dev.into_raw();
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
    let vdev = unsafe { mdev::drvdata_of(dev) }.cast::<Vdev>();
    if vdev.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: a live instance (above).
    Instance::of(unsafe { &*vdev })
}

/// Removes the instance of `mdev`: waits until its user lets go (the
/// request IRQ tells it to), then destroys the parent's instance.
///
/// # Safety
///
/// `mdev` must be a device that `create` succeeded for, not destroyed.
pub(crate) unsafe fn destroy(mdev: &mdev::Device) {
    // SAFETY: set in `create` to the reference it handed over, which is
    // taken back once, here.
    let dev = unsafe { vfio::Ref::from_raw(mdev::drvdata_of(mdev.as_dev()).cast::<Vdev>()) };
    let state = dev.data();
    let parent = state.parent();
    if !parent.info.dev_groups.is_null() {
        // SAFETY: added in `create`.
        unsafe { mdev.remove_groups(parent.info.dev_groups) };
    }
    // This blocks, calling `request`, until the device is closed; `close`
    // has reset it by then. The core's attributes stay meanwhile: they say
    // who holds the device and that its removal waits.
    dev.unregister();
    // SAFETY: added in `create`; no show callback runs after this.
    unsafe { mdev.remove_groups(status::GROUPS.as_raw().cast_mut()) };
    if let Some(f) = parent.ops().destroy {
        // SAFETY: the device is closed and unregistered: no op or upcall
        // of this instance runs any more.
        unsafe { f(state.priv_()) };
    }
    mdev.set_drvdata(ptr::null_mut());
    // Dropping our reference: VFIO releases the instance (dropping its
    // state) after the last one.
    drop(dev);
}

/// The parent's queue count, checked against the core's limit.
fn vq_count(this: &InstanceState) -> Result<u32> {
    let parent = this.parent();
    // SAFETY: `priv_` is the parent's live instance.
    let nvqs = unsafe { parent.ops().get_vq_count.map_or(0, |f| f(this.priv_())) };
    if nvqs == 0 || nvqs as usize > proto::MAX_VQS {
        pr_err!(
            "a parent instance with {} virtqueues is refused: the core carries 1 to {}\n",
            nvqs,
            proto::MAX_VQS
        );
        return Err(EINVAL);
    }
    Ok(nvqs)
}

/// The first open.
///
/// The parent's queue count is read again here: a parent may change it
/// while the device is closed (the net sample's `queue_pairs`). The device
/// counts as open (`vhost_mdev_is_open()`) before the count is read, so a
/// parent that checks it under the lock its `get_vq_count` takes never
/// changes the count of an open device.
pub(crate) fn open(dev: &Vdev) -> Result {
    let this = dev.data();
    let mut ch = this.channel.lock();
    this.kicks_on.store(true, Ordering::Release);
    let sized = vq_count(this).and_then(|nvqs| {
        let n = nvqs as usize;
        ch.open(n)?;
        this.rings.open(n)?;
        this.log.open(n)?;
        this.irqs.open(n)?;
        Ok(nvqs)
    });
    let nvqs = match sized {
        Ok(n) => n,
        Err(e) => {
            this.kicks_on.store(false, Ordering::Release);
            return Err(e);
        }
    };
    this.nvqs.store(nvqs, Ordering::Release);
    // The opener's address space; the reference is dropped in `close`.
    let mm = MmGrab::current().map_or(ptr::null_mut(), MmGrab::into_raw);
    this.mm.store(mm, Ordering::Release);
    this.pins.open(dev.dma(), dev.iommufd_bound());
    this.device_status.store(0, Ordering::Release);
    this.status.opened(if dev.iommufd_bound() {
        Backend::Iommufd
    } else {
        Backend::Type1
    });
    Ok(())
}

/// The last close: stops the device.
pub(crate) fn close(dev: &Vdev) {
    let this = dev.data();
    let mut ch = this.channel.lock();
    // 1. Unbind the ioeventfds.
    this.irqs.unbind_all();
    // 2. Block new kicks from the notify region.
    this.kicks_on.store(false, Ordering::Release);
    // 3. Stop the device: the parent cancels and waits for its worker and
    // drops its translations; no DMA is in flight when it returns. This
    // also clears the staged reply (the status was cleared by the reset).
    ch.reset(&mut this.backend(), &this.log);
    // ... and the core's own translations: unpin every cached page, and
    // forget the rings' user addresses and the dirty log.
    this.pins.close();
    this.rings.clear();
    this.log.close();
    // 4. Release the IRQ eventfds.
    this.irqs.detach_all();
    // The worker is quiet: nothing uses the opener's mm any more.
    let mm = this.mm.swap(ptr::null_mut(), Ordering::AcqRel);
    // SAFETY: null or the reference `open` handed over.
    drop(unsafe { MmGrab::from_raw(mm) });
    this.status.closed();
}

/// The core's attributes find the device of the instance they are shown
/// on.
impl sysfs::Owner for status::Core {
    type Data = Vdev;

    /// # Safety
    ///
    /// `dev` must be the device of one of our mdevs with the core's groups
    /// (added in `create` after its drvdata, removed in `destroy` before).
    unsafe fn from_device<'a>(dev: *mut bindings::device) -> Option<&'a Vdev> {
        // SAFETY: the caller guarantees `dev`; its drvdata is a live
        // instance while the groups exist.
        let vdev = unsafe { mdev::drvdata_of(dev) }.cast::<Vdev>();
        // SAFETY: null or live (above).
        unsafe { vdev.as_ref() }
    }
}
