// SPDX-License-Identifier: GPL-2.0 OR MIT

//! The kernel-independent parts of vhost-mdev, shared by the kernel modules
//! and userspace.
//!
//! - [`uapi`]: the constants of `include/uapi/linux/vhost_mdev.h` and the
//!   vhost request codes that travel on region 0;
//! - [`proto`]: `struct vhost_vfio_op` messages (encoding, parsing, request
//!   decoding) and the virtio device model that the core enforces for every
//!   parent;
//! - [`vring`]: the device side of a split virtqueue, over a guest-memory
//!   accessor trait;
//! - [`log`]: the arithmetic of the vhost dirty log (`VHOST_SET_LOG_BASE`);
//! - [`packed`]: the device side of a packed virtqueue (virtio 1.1), over
//!   the same trait;
//! - [`ring`]: one interface over both, so that a device serves either
//!   ring type with the same code.
//!
//! The crate is `no_std` and allocates nothing. The kernel modules build
//! its source files as modules of their own crates (`#[path]` includes in
//! `vhost_mdev/proto.rs` and `samples/vhost_mdev_net`), so these files use
//! only `core` and name each other through `super::`.

#![no_std]
#![warn(missing_docs)]

pub mod log;
pub mod packed;
pub mod proto;
pub mod ring;
pub mod uapi;
pub mod vring;
