// SPDX-License-Identifier: GPL-2.0

//! Virtio constants for parents, from the kernel's own headers.
//!
//! C headers: [`include/uapi/linux/virtio_config.h`](srctree/include/uapi/linux/virtio_config.h),
//! [`include/uapi/linux/virtio_ring.h`](srctree/include/uapi/linux/virtio_ring.h),
//! [`include/uapi/linux/virtio_ids.h`](srctree/include/uapi/linux/virtio_ids.h),
//! [`include/uapi/linux/virtio_net.h`](srctree/include/uapi/linux/virtio_net.h),
//! [`include/uapi/linux/virtio_blk.h`](srctree/include/uapi/linux/virtio_blk.h).
//!
//! Every value is bindgen's reading of the header (see `Kbuild`): nothing
//! is typed by hand, so a parent cannot offer a wrong feature bit. Feature
//! bits are given as masks (`1 << bit`), ready to be or-ed into
//! `Device::device_features` and tested against the driver's features.
//! The split-ring walker's own constants (`crate::vring`) are checked
//! against the headers here at compile time.

use crate::bindings;
use core::mem::size_of;

/// The mask of feature bit `bit`.
const fn bit(bit: u32) -> u64 {
    1 << bit
}

// Device ids.

/// Network card.
pub const VIRTIO_ID_NET: u32 = bindings::VIRTIO_ID_NET;
/// Block device.
pub const VIRTIO_ID_BLOCK: u32 = bindings::VIRTIO_ID_BLOCK;

// Transport and ring features (masks).

/// vhost's `VHOST_F_LOG_ALL` (`<linux/vhost_types.h>`), not a virtio
/// feature: offered by a parent whose every write to guest memory goes
/// through the core's DMA upcalls or is reported with
/// `vhost_mdev_log_write()`, so that the core can keep the VMM's dirty log
/// for a live migration (see `Documentation/parent-drivers.rst`). The core
/// owns the bit: the parent's `set_driver_features` never sees it.
pub const VHOST_F_LOG_ALL: u64 = bit(bindings::VHOST_F_LOG_ALL);

/// Virtio 1.x (no legacy interface).
pub const VIRTIO_F_VERSION_1: u64 = bit(bindings::VIRTIO_F_VERSION_1);
/// The device reaches memory through an IOMMU (IOVAs, not guest physical
/// addresses): every vhost-mdev device does.
pub const VIRTIO_F_ACCESS_PLATFORM: u64 = bit(bindings::VIRTIO_F_ACCESS_PLATFORM);
/// Indirect descriptor tables.
pub const VIRTIO_RING_F_INDIRECT_DESC: u64 = bit(bindings::VIRTIO_RING_F_INDIRECT_DESC);
/// `used_event` and `avail_event`.
pub const VIRTIO_RING_F_EVENT_IDX: u64 = bit(bindings::VIRTIO_RING_F_EVENT_IDX);
/// Packed virtqueues (virtio 1.1).
pub const VIRTIO_F_RING_PACKED: u64 = bit(bindings::VIRTIO_F_RING_PACKED);

// virtio-net (masks, and the config's status bits).

/// The config space has the MTU.
pub const VIRTIO_NET_F_MTU: u64 = bit(bindings::VIRTIO_NET_F_MTU);
/// The config space has the MAC address.
pub const VIRTIO_NET_F_MAC: u64 = bit(bindings::VIRTIO_NET_F_MAC);
/// A received frame may span several buffers (`num_buffers`).
pub const VIRTIO_NET_F_MRG_RXBUF: u64 = bit(bindings::VIRTIO_NET_F_MRG_RXBUF);
/// The config space has the link status.
pub const VIRTIO_NET_F_STATUS: u64 = bit(bindings::VIRTIO_NET_F_STATUS);
/// Several RX/TX queue pairs (`max_virtqueue_pairs` in the config).
pub const VIRTIO_NET_F_MQ: u64 = bit(bindings::VIRTIO_NET_F_MQ);
/// A control virtqueue (never offered by the sample: the VMM owns it).
pub const VIRTIO_NET_F_CTRL_VQ: u64 = bit(bindings::VIRTIO_NET_F_CTRL_VQ);
/// Config `status`: the link is up.
pub const VIRTIO_NET_S_LINK_UP: u16 = bindings::VIRTIO_NET_S_LINK_UP as u16;
/// Size of `struct virtio_net_hdr_v1` (the header of every frame with
/// `VERSION_1`).
pub const VIRTIO_NET_HDR_V1_LEN: usize = size_of::<bindings::virtio_net_hdr_v1>();

// virtio-blk (masks, request types, status values).

/// The config space has `seg_max`.
pub const VIRTIO_BLK_F_SEG_MAX: u64 = bit(bindings::VIRTIO_BLK_F_SEG_MAX);
/// The disk is read-only.
pub const VIRTIO_BLK_F_RO: u64 = bit(bindings::VIRTIO_BLK_F_RO);
/// The config space has `blk_size`.
pub const VIRTIO_BLK_F_BLK_SIZE: u64 = bit(bindings::VIRTIO_BLK_F_BLK_SIZE);
/// The device takes flush requests.
pub const VIRTIO_BLK_F_FLUSH: u64 = bit(bindings::VIRTIO_BLK_F_FLUSH);
/// Request type: read.
pub const VIRTIO_BLK_T_IN: u32 = bindings::VIRTIO_BLK_T_IN;
/// Request type: write.
pub const VIRTIO_BLK_T_OUT: u32 = bindings::VIRTIO_BLK_T_OUT;
/// Request type: flush.
pub const VIRTIO_BLK_T_FLUSH: u32 = bindings::VIRTIO_BLK_T_FLUSH;
/// Request type: get the device id string.
pub const VIRTIO_BLK_T_GET_ID: u32 = bindings::VIRTIO_BLK_T_GET_ID;
/// Length of the device id string.
pub const VIRTIO_BLK_ID_BYTES: usize = bindings::VIRTIO_BLK_ID_BYTES as usize;
/// Request status: done.
pub const VIRTIO_BLK_S_OK: u8 = bindings::VIRTIO_BLK_S_OK as u8;
/// Request status: I/O error.
pub const VIRTIO_BLK_S_IOERR: u8 = bindings::VIRTIO_BLK_S_IOERR as u8;
/// Request status: unsupported request.
pub const VIRTIO_BLK_S_UNSUPP: u8 = bindings::VIRTIO_BLK_S_UNSUPP as u8;

// The walker's ring constants are virtio's.
const _: () = assert!(crate::vring::VRING_DESC_F_NEXT as u32 == bindings::VRING_DESC_F_NEXT);
const _: () = assert!(crate::vring::VRING_DESC_F_WRITE as u32 == bindings::VRING_DESC_F_WRITE);
const _: () =
    assert!(crate::vring::VRING_DESC_F_INDIRECT as u32 == bindings::VRING_DESC_F_INDIRECT);
const _: () = assert!(
    crate::vring::VRING_AVAIL_F_NO_INTERRUPT as u32 == bindings::VRING_AVAIL_F_NO_INTERRUPT
);
const _: () = assert!(size_of::<bindings::vring_desc>() == 16);

// The packed walker's too.
const _: () =
    assert!(crate::packed::PACKED_DESC_F_AVAIL == 1 << bindings::VRING_PACKED_DESC_F_AVAIL);
const _: () = assert!(crate::packed::PACKED_DESC_F_USED == 1 << bindings::VRING_PACKED_DESC_F_USED);
const _: () = assert!(
    crate::packed::PACKED_EVENT_FLAG_ENABLE as u32 == bindings::VRING_PACKED_EVENT_FLAG_ENABLE
);
const _: () = assert!(
    crate::packed::PACKED_EVENT_FLAG_DISABLE as u32 == bindings::VRING_PACKED_EVENT_FLAG_DISABLE
);
const _: () =
    assert!(crate::packed::PACKED_EVENT_FLAG_DESC as u32 == bindings::VRING_PACKED_EVENT_FLAG_DESC);
const _: () = assert!(
    crate::packed::PACKED_EVENT_F_WRAP_CTR as u32 == bindings::VRING_PACKED_EVENT_F_WRAP_CTR
);
