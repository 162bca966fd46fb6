// SPDX-License-Identifier: GPL-2.0

//! One vhost-mdev instance: a VFIO device (emulated IOMMU) that speaks
//! vhost, and its state.
//!
//! C header: [`include/linux/vfio.h`](srctree/include/linux/vfio.h).
//!
//! The `vfio_device` is the first field of [`Instance`]: VFIO allocates the
//! whole instance (`_vfio_alloc_device()`), calls our `release` callback
//! when the last reference goes, and then frees the memory. The Rust fields
//! are initialised in place after allocation and dropped in `release` (see
//! `lifecycle.rs`).

use crate::backend::ParentBackend;
use crate::bindings;
use crate::dma::PinCache;
use crate::irq::{Irqs, Kick};
use crate::parent::Parent;
use crate::rings::RingMap;
use crate::transport::Channel;
use core::mem::offset_of;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU8, Ordering};
use kernel::ffi::c_void;
use kernel::prelude::*;
use kernel::sync::Mutex;
use kernel::types::Opaque;

/// The state of an instance (the Rust part of [`Instance`]).
#[pin_data]
pub(crate) struct InstanceState {
    pub(crate) parent: *const Parent,
    pub(crate) mdev: *mut bindings::mdev_device,
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
}

/// A vhost-mdev instance; `struct vhost_mdev_device` of the C ABI.
///
/// # Invariants
///
/// `vdev` is the first field (VFIO's layout requirement). `state` is
/// initialised when `state_init` is true, which it is for every instance
/// that `create` returned successfully; `parent` outlives the instance (a
/// parent unregisters, removing its instances, before it goes); `priv_` is
/// the parent's instance until `destroy`.
#[repr(C)]
pub(crate) struct Instance {
    pub(crate) vdev: Opaque<bindings::vfio_device>,
    pub(crate) state_init: bool,
    pub(crate) state: InstanceState,
}

// SAFETY: all mutable state is behind the mutex, the spinlock or atomics;
// the raw pointers are to objects that outlive the instance.
unsafe impl Sync for InstanceState {}
// SAFETY: as above.
unsafe impl Send for InstanceState {}

const _: () = assert!(offset_of!(Instance, vdev) == 0);

impl Instance {
    /// The state of the instance whose `vfio_device` is `vdev`.
    ///
    /// # Safety
    ///
    /// `vdev` must be the `vdev` of a live `Instance` whose state is
    /// initialised.
    pub(crate) unsafe fn from_vdev<'a>(vdev: *mut bindings::vfio_device) -> &'a InstanceState {
        // SAFETY: the caller guarantees `vdev` is the `vdev` field of a live,
        // initialised `Instance`.
        unsafe { &(*kernel::container_of!(vdev, Instance, vdev)).state }
    }

    /// The state of the instance behind a C ABI handle.
    ///
    /// # Safety
    ///
    /// `handle` must be a handle passed to a parent's `create` whose
    /// instance is not yet destroyed.
    pub(crate) unsafe fn from_handle<'a>(
        handle: *mut bindings::vhost_mdev_device,
    ) -> &'a InstanceState {
        // SAFETY: the handle is the instance's `vdev` (see `create`);
        // parents may use it only while the instance exists, after `create`
        // returned.
        unsafe { Self::from_vdev(handle.cast()) }
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
