// SPDX-License-Identifier: GPL-2.0

//! The device layout of the uAPI: regions and IRQ indexes, from the
//! userspace header.
//!
//! C header: [`include/uapi/linux/vhost_mdev.h`](../include/uapi/linux/vhost_mdev.h).

use crate::proto;
use crate::uapi_h as h;

/// Where a region's offset sits in a file offset (`offset >> REGION_SHIFT`
/// is the region index).
pub(crate) const REGION_SHIFT: u32 = h::VHOST_VFIO_REGION_SHIFT;
/// Region 0: vhost requests and their replies.
pub(crate) const REGION_MSG: u64 = h::VHOST_VFIO_REGION_MSG as u64;
/// Region 1: queue notifications (kicks).
pub(crate) const REGION_NOTIFY: u64 = h::VHOST_VFIO_REGION_NOTIFY as u64;
pub(crate) const NUM_REGIONS: u32 = h::VHOST_VFIO_NUM_REGIONS;

/// One IRQ per virtqueue.
pub(crate) const IRQ_VQ: u32 = h::VHOST_VFIO_IRQ_VQ;
/// The config space changed (or the device needs a reset).
pub(crate) const IRQ_CONFIG: u32 = h::VHOST_VFIO_IRQ_CONFIG;
/// The instance is going away.
pub(crate) const IRQ_REQ: u32 = h::VHOST_VFIO_IRQ_REQ;
pub(crate) const NUM_IRQS: u32 = h::VHOST_VFIO_NUM_IRQS;

/// The offset of `off` within its region.
pub(crate) fn region_offset(off: u64) -> u64 {
    off & ((1u64 << REGION_SHIFT) - 1)
}

// The protocol model's message layout is the header's.
const _: () = assert!(proto::MSG_REGION_SIZE == h::VHOST_VFIO_MSG_REGION_SIZE as usize);
const _: () = assert!(proto::HDR_SIZE == h::VHOST_VFIO_OP_HDR_SIZE as usize);
const _: () = assert!(proto::NEED_REPLY as u64 == h::VHOST_VFIO_NEED_REPLY as u64);
