// SPDX-License-Identifier: GPL-2.0

//! One vhost-mdev instance: a VFIO device (emulated IOMMU) that speaks
//! vhost, and its state.
//!
//! C header: [`include/linux/vfio.h`](srctree/include/linux/vfio.h).
//!
//! VFIO allocates the instance ([`crate::vfio::Device`]), whose data is
//! the [`InstanceState`], initialised in place after allocation and dropped
//! when VFIO releases the device after the last reference (see
//! `lifecycle.rs`).

use crate::backend::ParentBackend;
use crate::bindings;
use crate::dirty::DirtyLog;
use crate::dma::PinCache;
use crate::irq::{Irqs, Kick};
use crate::live;
use crate::parent::Parent;
use crate::rings::RingMap;
use crate::status::Status;
use crate::transport::Channel;
use crate::vfio;
use crate::vfio_ops::VhostVfio;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU8, Ordering};
use kernel::ffi::c_void;
use kernel::prelude::*;
use kernel::sync::Mutex;

/// The VFIO device of an instance; its handle in the C ABI.
pub(crate) type Vdev = vfio::Device<VhostVfio>;

/// The state of an instance: the data of its VFIO device.
#[pin_data]
pub(crate) struct InstanceState {
    pub(crate) parent: *const Parent,
    /// The parent's instance pointer: set once, right after the parent's
    /// `create` returns, and valid until its `destroy`.
    pub(crate) priv_: AtomicPtr<c_void>,
    /// Number of virtqueues; set once, before the device is registered.
    pub(crate) nvqs: AtomicU32,
    /// The device model and the transports: every request, VFIO ioctl,
    /// open and close.
    #[pin]
    pub(crate) channel: Mutex<Channel>,
    /// The IRQ eventfds and ioeventfds.
    #[pin]
    pub(crate) irqs: Irqs,
    /// Kicks reach the parent only while this is set (open, not closing).
    pub(crate) kicks_on: AtomicBool,
    /// Status bits set by the device (NEEDS_RESET).
    pub(crate) device_status: AtomicU8,
    /// The address space of the process that opened the device (one
    /// `mmgrab` reference while open), adopted by parent workers for DMA.
    /// Set in `open_device`, dropped in `close_device` after the parent's
    /// worker is quiesced.
    pub(crate) mm: AtomicPtr<bindings::mm_struct>,
    /// Pinned pages of the data path (iommufd only; see [`crate::dma`]).
    #[pin]
    pub(crate) pins: PinCache,
    /// Where the VMM sees the rings, for single-access ring indexes (see
    /// [`crate::rings`]).
    #[pin]
    pub(crate) rings: RingMap,
    /// The vhost dirty log (see [`crate::dirty`]).
    #[pin]
    pub(crate) log: DirtyLog,
    /// Who holds the device and whether a removal waits: the core's
    /// sysfs attributes (`status.rs`).
    pub(crate) status: Status,
    /// Counts the instance until it is dropped (last: after the rest).
    pub(crate) live: live::Token,
}

/// An instance's state as `lifecycle::of_dev()` gives it to the C ABI.
///
/// # Invariants
///
/// Only ever a view of the [`InstanceState`] of a live [`Vdev`]: its
/// `parent` outlives the instance (a parent unregisters, removing its
/// instances, before it goes); `priv_` is the parent's instance until
/// `destroy`.
#[repr(transparent)]
pub(crate) struct Instance {
    pub(crate) state: InstanceState,
}

// SAFETY: all mutable state is behind the mutex, the spinlock or atomics;
// the raw pointers are to objects that outlive the instance.
unsafe impl Sync for InstanceState {}
// SAFETY: as above.
unsafe impl Send for InstanceState {}

impl Instance {
    /// The state of the instance behind a C ABI handle.
    ///
    /// # Safety
    ///
    /// `handle` must be a handle passed to a parent's `create` whose
    /// instance is not yet destroyed.
    #[inline]
    pub(crate) unsafe fn from_handle<'a>(
        handle: *mut bindings::vhost_mdev_device,
    ) -> &'a InstanceState {
        // SAFETY: the handle is the instance's `vfio_device` (see
        // `create`); parents may use it only while the instance exists,
        // after `create` initialised it.
        unsafe { Vdev::from_raw(handle.cast()) }.data()
    }

    /// The view of the state of `dev`.
    pub(crate) fn of(dev: &Vdev) -> *mut Instance {
        // `Instance` is a transparent wrapper of the state.
        ptr::from_ref(dev.data()).cast::<Instance>().cast_mut()
    }
}

impl InstanceState {
    pub(crate) fn nvqs(&self) -> u32 {
        self.nvqs.load(Ordering::Acquire)
    }

    /// The parent that created the instance.
    pub(crate) fn parent(&self) -> &Parent {
        // SAFETY: `parent` outlives the instance (type invariant of
        // `Instance`).
        unsafe { &*self.parent }
    }

    /// The parent's instance.
    pub(crate) fn priv_(&self) -> *mut c_void {
        self.priv_.load(Ordering::Acquire)
    }

    /// The parent's instance behind its ops, for the device model.
    pub(crate) fn backend(&self) -> ParentBackend<'_> {
        // SAFETY: `priv_` is the parent's live instance while the instance
        // exists (type invariant of `Instance`), and `ops` is its parent's
        // checked ops table.
        unsafe {
            ParentBackend::new(
                self.parent().ops(),
                self.priv_(),
                self.nvqs(),
                &self.device_status,
            )
        }
    }
}

impl vfio::VirqfdHandler for InstanceState {
    /// A bound ioeventfd was signalled: kicks queue `data` (checked
    /// `< nvqs` when it was bound), in atomic context.
    fn handle(&self, data: usize) {
        self.kick(data as u16);
    }
}

impl Kick for InstanceState {
    /// Kicks queue `idx` (checked `< nvqs`), in any context.
    fn kick(&self, idx: u16) {
        if self.kicks_on.load(Ordering::Acquire) {
            if let Some(f) = self.parent().ops().kick_vq {
                // SAFETY: `priv_` is live while kicks are on (off, and
                // ioeventfds unbound, before close resets the device);
                // `kick_vq` may run in atomic context (C ABI).
                unsafe { f(self.priv_(), idx) };
            }
        }
    }
}
