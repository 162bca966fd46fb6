// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Userspace side of vhost-mdev: the vhost protocol over VFIO mediated
//! devices.
//!
//! - [`uapi`]: constants of `include/uapi/linux/vhost_mdev.h` and the vhost,
//!   VFIO and iommufd request codes.
//! - [`msg`]: `struct vhost_vfio_op` encoding and decoding.
//! - [`sysfs`]: mdev parents, types and instances; create and remove.
//! - [`bridge`]: vDPA devices, and moving them onto the vDPA bridge and off.
//! - [`vfio`]: opening an instance through a type1 container or iommufd.
//! - [`device`]: a vhost-mdev instance; requests over region 0 or ioctls.
//! - [`vdpa`]: the same driver API over vhost-vdpa.
//! - [`backend`]: the [`backend::VhostBackend`] trait over both.
//! - [`instant`]: an in-process loopback that completes at once (the
//!   driver's own ceiling).
//! - [`mem`], [`virtq`], [`packed`], [`queue`], [`net`], [`driver`]: DMA
//!   memory, a split and a packed virtqueue and the one type over both,
//!   virtio-net helpers and a loopback test driver (several queue pairs).
//! - [`blk`]: a virtio-blk request driver (for the RAM disk sample).

#![warn(missing_docs)]

pub mod backend;
pub mod blk;
pub mod bridge;
pub mod device;
pub mod driver;
pub mod error;
pub mod instant;
pub mod mem;
pub mod msg;
pub mod net;
pub mod packed;
pub mod queue;
pub mod sysfs;
pub mod uapi;
pub mod vdpa;
pub mod vfio;
pub mod virtq;

pub use backend::VhostBackend;
pub use device::{MdevDevice, Transport};
pub use error::{Class, Errno, Error, Result};
pub use instant::InstantNet;
pub use sysfs::Sysfs;
pub use vdpa::VhostVdpa;
pub use vfio::{DmaMapper, IommuKind, VfioDevice};
