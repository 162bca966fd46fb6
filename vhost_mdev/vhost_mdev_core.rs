// SPDX-License-Identifier: GPL-2.0

//! vhost-mdev: the vhost protocol over VFIO mediated devices.
//!
//! The core registers one mdev driver (`device_api` "vfio-vhost"). Parent
//! drivers register parents with mdev types through the C ABI of
//! `include/linux/vhost_mdev.h`; every instance of such a type becomes a VFIO
//! device (emulated IOMMU) whose region 0 carries vhost messages, region 1
//! queue notifications, and whose IRQs are virtqueue, config and request
//! eventfds. Requests are checked by the device model of [`proto`] and then
//! mapped onto the parent's device ops.
//!
//! # Files
//!
//! - [`driver`]: the core's mdev driver (probe and remove, parent
//!   registration) on [`mdev`]; [`parent`]: what a parent driver
//!   registered; [`types`]: the instance accounting of its mdev types;
//!   [`live`]: instances released after their removal, which module exit
//!   waits for;
//! - [`instance`]: an instance's state; [`lifecycle`]: its creation,
//!   open, close, destruction and release;
//! - [`vfio_ops`]: the VFIO device ops (on [`vfio`]); [`transport`]: vhost
//!   requests on region 0 and as ioctls, kicks on region 1; [`irq`]: IRQ
//!   eventfds and ioeventfds; [`uapi`]: the region and IRQ layout (from
//!   [`uapi_h`]);
//! - [`status`]: the core's sysfs attributes of every instance (`state`,
//!   `holder`, `backend`, `remove_requested`);
//! - [`backend`]: the parent's device ops as the model's backend;
//! - [`abi`]: the exported C ABI for parent drivers;
//! - [`dma`]: the pinned-page cache; [`rings`]: the rings' user addresses;
//!   [`fault_inject`]: the fault points of the DMA layer (`fail_dma`,
//!   `fail_pin`, `fail_copy` under `/sys/kernel/debug/vhost_mdev/`).
//!
//! # Locking
//!
//! Per instance, outermost first:
//!
//! 1. `InstanceState::channel` (a mutex): every request, VFIO ioctl, open
//!    and close. Parent ops other than `kick_vq` run under it. It is never
//!    taken by the `dma_unmap` path, by interrupt upcalls or by kicks, so a
//!    parent's worker may call `vhost_mdev_dma_rw()` (which takes VFIO's
//!    and iommufd's locks) while `reset()` waits for it under this mutex.
//! 2. `PinCache::table` (a mutex, `dma.rs`): the pinned-page cache of an
//!    iommufd-bound instance; taken by the data path per page access and by
//!    `dma_unmap` and close, which unpin under it (so it comes before
//!    iommufd's `ioas_lock` and `iova_rwsem`); never held across a pin.
//! 3. `Irqs::fds` (an IRQ-safe spinlock, `irq.rs`): the IRQ eventfds;
//!    held only to swap or signal them; `vhost_mdev_vq_interrupt()` takes
//!    it in any context, hard IRQ handlers included. Innermost: nothing is
//!    called under it but `eventfd_signal()`.
//! 4. `RingMap::ranges` (a spinlock, `rings.rs`): the rings' user
//!    addresses; held only to copy them (never across a user access).
//!
//! Kicks (notify region writes and ioeventfds) read
//! `InstanceState::kicks_on` and call the parent's `kick_vq`, in atomic
//! context for ioeventfds.

use kernel::prelude::*;

mod abi;
mod backend;
#[path = "../rust/bindings.rs"]
pub mod bindings;
#[path = "../rust/delay.rs"]
pub mod delay;
mod dirty;
mod dma;
mod driver;
#[path = "../rust/errno.rs"]
pub mod errno;
#[path = "../rust/eventfd.rs"]
pub mod eventfd;
#[path = "../rust/fault_inject.rs"]
pub mod fault_inject;
mod instance;
mod irq;
mod lifecycle;
mod live;
#[path = "../rust/mdev.rs"]
pub mod mdev;
#[path = "../rust/mm.rs"]
pub mod mm;
#[path = "../rust/mutex_inline.rs"]
pub mod mutex_inline;
mod parent;
// Shared with the host-side tests and tools, which use all of it.
#[allow(dead_code)]
pub mod proto;
mod rings;
#[path = "../rust/spinlock_irq.rs"]
pub mod spinlock_irq;
mod status;
#[path = "../rust/sysfs.rs"]
pub mod sysfs;
mod transport;
mod types;
mod uapi;
#[path = "../rust/uapi.rs"]
pub mod uapi_h;
#[path = "../rust/vfio.rs"]
pub mod vfio;
mod vfio_ops;
#[path = "../rust/vhost_mdev_ops.rs"]
mod vhost_mdev_ops;

module! {
    type: VhostMdev,
    name: "vhost_mdev",
    author: "The vhost-mdev developers",
    description: "vhost protocol over VFIO mediated devices",
    license: "GPL",
}

extern "C" {
    /// The `pin_cache_bytes` module parameter (defined in `shim.c`).
    static vhost_mdev_pin_cache_bytes: kernel::ffi::c_ulong;
}

struct VhostMdev {
    /// `/sys/kernel/debug/vhost_mdev/`: the fault points of the DMA layer
    /// (dropped after `drop` unregistered the driver).
    _faults: fault_inject::Registration,
}

impl kernel::Module for VhostMdev {
    fn init(module: &'static ThisModule) -> Result<Self> {
        // SAFETY: a read-only module parameter, written only while loading.
        let pin_bytes = unsafe { vhost_mdev_pin_cache_bytes } as u64;
        if dma::set_limit(pin_bytes).is_err() {
            pr_err!(
                "pin_cache_bytes={} is not 0 or a multiple of {} up to {}\n",
                pin_bytes,
                kernel::page::PAGE_SIZE,
                dma::MAX_BYTES
            );
            return Err(errno::EINVAL);
        }
        let faults = fault_inject::Registration::new(kernel::c_str!("vhost_mdev"));
        driver::register(module)?;
        pr_info!("mdev driver registered (device_api vfio-vhost)\n");
        Ok(VhostMdev { _faults: faults })
    }
}

impl Drop for VhostMdev {
    fn drop(&mut self) {
        live::wait_idle();
        driver::unregister();
    }
}
