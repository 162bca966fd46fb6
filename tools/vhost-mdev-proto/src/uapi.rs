// SPDX-License-Identifier: GPL-2.0 OR MIT

//! The vhost-mdev uAPI (`include/uapi/linux/vhost_mdev.h`) and the vhost
//! request codes of `<linux/vhost.h>` that travel on region 0.
//!
//! The kernel modules check these values against their bindgen output of
//! the header at compile time; the userspace crate checks them, and the
//! layouts of the argument structs, against what a C compiler reads in the
//! headers, and against `vmm-sys-util`'s ioctl encoding, in its tests.
//!
//! The request codes are encoded here (`_IOC` of asm-generic) rather than
//! with `vmm-sys-util`'s macros: this file is also compiled into the
//! kernel modules, which have no `std`.

/// The mdev type's `device_api` attribute (`VHOST_VFIO_DEVICE_API`).
pub const DEVICE_API: &str = "vfio-vhost";

/// Region carrying vhost messages (`VHOST_VFIO_REGION_MSG`).
pub const REGION_MSG: u32 = 0;
/// Region carrying queue notifications (`VHOST_VFIO_REGION_NOTIFY`).
pub const REGION_NOTIFY: u32 = 1;
/// Number of regions (`VHOST_VFIO_NUM_REGIONS`).
pub const NUM_REGIONS: u32 = 2;
/// Size of the message region (`VHOST_VFIO_MSG_REGION_SIZE`).
pub const MSG_REGION_SIZE: usize = 4096;
/// Region offsets are `index << REGION_SHIFT` (`VHOST_VFIO_REGION_SHIFT`).
pub const REGION_SHIFT: u32 = 40;

/// IRQ index of the virtqueue interrupts, one per queue (`VHOST_VFIO_IRQ_VQ`).
pub const IRQ_VQ: u32 = 0;
/// IRQ index of the config-change interrupt (`VHOST_VFIO_IRQ_CONFIG`).
pub const IRQ_CONFIG: u32 = 1;
/// IRQ index of the request interrupt (`VHOST_VFIO_IRQ_REQ`).
pub const IRQ_REQ: u32 = 2;
/// Number of IRQ indexes (`VHOST_VFIO_NUM_IRQS`).
pub const NUM_IRQS: u32 = 3;

/// `struct vhost_vfio_op.flags`: the request returns data
/// (`VHOST_VFIO_NEED_REPLY`).
pub const NEED_REPLY: u32 = 1;
/// Size of `struct vhost_vfio_op`, the message header
/// (`VHOST_VFIO_OP_HDR_SIZE`).
pub const HDR_SIZE: usize = 16;
/// Largest payload of a message (`VHOST_VFIO_MAX_PAYLOAD`).
pub const MAX_PAYLOAD: usize = MSG_REGION_SIZE - HDR_SIZE;

/// The VFIO offset of region `index`: where the kernel module places it.
/// Userspace takes the offsets from `VFIO_DEVICE_GET_REGION_INFO`, as for
/// any VFIO device.
pub const fn region_offset(index: u32) -> u64 {
    (index as u64) << REGION_SHIFT
}

/// Size of `struct vhost_vring_state`.
pub const VRING_STATE_SIZE: usize = 8;
/// Size of `struct vhost_vring_addr`.
pub const VRING_ADDR_SIZE: usize = 40;
/// Size of the header of `struct vhost_vdpa_config`.
pub const CONFIG_HDR_SIZE: usize = 8;
/// Size of the header of `struct vhost_memory` (`nregions`, `padding`).
pub const MEM_TABLE_HDR_SIZE: usize = 8;
/// Size of `struct vhost_memory_region`.
pub const MEM_REGION_SIZE: usize = 32;

/// `struct vhost_vring_state`: the argument of `VHOST_SET_VRING_NUM`,
/// `VHOST_SET_VRING_BASE`, `VHOST_GET_VRING_BASE` and
/// `VHOST_VDPA_SET_VRING_ENABLE`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VhostVringState {
    /// Queue index.
    pub index: u32,
    /// The value (size, base, enable).
    pub num: u32,
}

/// `struct vhost_vring_file`: the argument of `VHOST_SET_VRING_KICK` and
/// `VHOST_SET_VRING_CALL` (ioctls of vhost-vdpa; vhost-mdev takes
/// eventfds through VFIO).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VhostVringFile {
    /// Queue index.
    pub index: u32,
    /// An eventfd, or -1.
    pub fd: i32,
}

/// `struct vhost_vring_addr`: the argument of `VHOST_SET_VRING_ADDR` and
/// `VHOST_VFIO_SET_VRING_HVA`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VhostVringAddr {
    /// Queue index.
    pub index: u32,
    /// `VHOST_VRING_F_LOG` or 0.
    pub flags: u32,
    /// Descriptor table (split) or descriptor ring (packed).
    pub desc_user_addr: u64,
    /// Used ring (split) or device event suppression area (packed).
    pub used_user_addr: u64,
    /// Available ring (split) or driver event suppression area (packed).
    pub avail_user_addr: u64,
    /// Where the used ring is logged (dirty logging).
    pub log_guest_addr: u64,
}

/// The header of `struct vhost_memory` (the argument of
/// `VHOST_SET_MEM_TABLE`); `nregions` `struct vhost_memory_region`s follow.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VhostMemory {
    /// Number of regions that follow.
    pub nregions: u32,
    /// Zero.
    pub padding: u32,
}

/// The header of `struct vhost_vdpa_config` (the argument of
/// `VHOST_VDPA_GET_CONFIG` and `VHOST_VDPA_SET_CONFIG`); `len` bytes of
/// config space follow.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VhostVdpaConfig {
    /// Offset in the config space.
    pub off: u32,
    /// Bytes that follow.
    pub len: u32,
}

const _: () = assert!(core::mem::size_of::<VhostVringState>() == VRING_STATE_SIZE);
const _: () = assert!(core::mem::size_of::<VhostVringFile>() == 8);
const _: () = assert!(core::mem::size_of::<VhostVringAddr>() == VRING_ADDR_SIZE);
const _: () = assert!(core::mem::size_of::<VhostMemory>() == MEM_TABLE_HDR_SIZE);
const _: () = assert!(core::mem::size_of::<VhostVdpaConfig>() == CONFIG_HDR_SIZE);

/// Most regions a `VHOST_SET_MEM_TABLE` may carry (more: `E2BIG`). The
/// default `max_mem_regions` of vhost (`drivers/vhost/vhost.c`), so that a
/// VMM that fits vhost-net and vhost-vdpa fits here; such a table (2056
/// bytes) fits one region-0 message.
pub const MAX_MEM_REGIONS: usize = 64;

/// `_IOC_NONE`
const IOC_NONE: u32 = 0;
/// `_IOC_WRITE`
const IOC_WRITE: u32 = 1;
/// `_IOC_READ`
const IOC_READ: u32 = 2;
/// `VHOST_VIRTIO`, the ioctl type of vhost.
pub const VHOST_VIRTIO: u32 = 0xaf;

/// `_IOC(dir, VHOST_VIRTIO, nr, size)` (asm-generic encoding).
const fn ioc(dir: u32, nr: u32, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | (VHOST_VIRTIO << 8) | nr
}

/// Request codes: the ioctl numbers of `<linux/vhost.h>` (and
/// `VHOST_VFIO_SET_VRING_HVA` of `<linux/vhost_mdev.h>`).
pub mod req {
    use super::*;
    /// `VHOST_GET_FEATURES`
    pub const GET_FEATURES: u32 = ioc(IOC_READ, 0x00, 8);
    /// `VHOST_SET_FEATURES`
    pub const SET_FEATURES: u32 = ioc(IOC_WRITE, 0x00, 8);
    /// `VHOST_SET_OWNER`
    pub const SET_OWNER: u32 = ioc(IOC_NONE, 0x01, 0);
    /// `VHOST_SET_MEM_TABLE`: the size encoded is that of `struct
    /// vhost_memory` without its regions.
    pub const SET_MEM_TABLE: u32 = ioc(IOC_WRITE, 0x03, MEM_TABLE_HDR_SIZE);
    /// `VHOST_SET_LOG_BASE`: a `u64`, the user address of the dirty log
    /// in the sender's address space (0: no log).
    pub const SET_LOG_BASE: u32 = ioc(IOC_WRITE, 0x04, 8);
    /// `VHOST_SET_VRING_NUM`
    pub const SET_VRING_NUM: u32 = ioc(IOC_WRITE, 0x10, VRING_STATE_SIZE);
    /// `VHOST_SET_VRING_ADDR`
    pub const SET_VRING_ADDR: u32 = ioc(IOC_WRITE, 0x11, VRING_ADDR_SIZE);
    /// `VHOST_SET_VRING_BASE`
    pub const SET_VRING_BASE: u32 = ioc(IOC_WRITE, 0x12, VRING_STATE_SIZE);
    /// `VHOST_GET_VRING_BASE`
    pub const GET_VRING_BASE: u32 = ioc(IOC_READ | IOC_WRITE, 0x12, VRING_STATE_SIZE);
    /// `VHOST_VDPA_GET_DEVICE_ID`
    pub const GET_DEVICE_ID: u32 = ioc(IOC_READ, 0x70, 4);
    /// `VHOST_VDPA_GET_STATUS`
    pub const GET_STATUS: u32 = ioc(IOC_READ, 0x71, 1);
    /// `VHOST_VDPA_SET_STATUS`
    pub const SET_STATUS: u32 = ioc(IOC_WRITE, 0x72, 1);
    /// `VHOST_VDPA_GET_CONFIG`
    pub const GET_CONFIG: u32 = ioc(IOC_READ, 0x73, CONFIG_HDR_SIZE);
    /// `VHOST_VDPA_SET_CONFIG`
    pub const SET_CONFIG: u32 = ioc(IOC_WRITE, 0x74, CONFIG_HDR_SIZE);
    /// `VHOST_VDPA_SET_VRING_ENABLE`
    pub const SET_VRING_ENABLE: u32 = ioc(IOC_WRITE, 0x75, VRING_STATE_SIZE);
    /// `VHOST_VDPA_GET_VRING_NUM`
    pub const GET_VRING_NUM: u32 = ioc(IOC_READ, 0x76, 2);
    /// `VHOST_VDPA_GET_CONFIG_SIZE`
    pub const GET_CONFIG_SIZE: u32 = ioc(IOC_READ, 0x79, 4);
    /// `VHOST_VDPA_GET_VQS_COUNT`
    pub const GET_VQS_COUNT: u32 = ioc(IOC_READ, 0x80, 4);
    /// `VHOST_VDPA_SUSPEND`
    pub const SUSPEND: u32 = ioc(IOC_NONE, 0x7d, 0);
    /// `VHOST_VFIO_SET_VRING_HVA` (vhost-mdev's own): where the process
    /// that sends it sees the rings of `VHOST_SET_VRING_ADDR`.
    pub const SET_VRING_HVA: u32 = ioc(IOC_WRITE, 0xe0, VRING_ADDR_SIZE);
    /// `VHOST_VDPA_RESUME`
    pub const RESUME: u32 = ioc(IOC_NONE, 0x7e, 0);

    /// Every request code of the message table, with its C name.
    pub const ALL: [(u32, &str); 21] = [
        (GET_FEATURES, "VHOST_GET_FEATURES"),
        (SET_FEATURES, "VHOST_SET_FEATURES"),
        (SET_OWNER, "VHOST_SET_OWNER"),
        (SET_MEM_TABLE, "VHOST_SET_MEM_TABLE"),
        (SET_LOG_BASE, "VHOST_SET_LOG_BASE"),
        (SET_VRING_NUM, "VHOST_SET_VRING_NUM"),
        (SET_VRING_ADDR, "VHOST_SET_VRING_ADDR"),
        (SET_VRING_HVA, "VHOST_VFIO_SET_VRING_HVA"),
        (SET_VRING_BASE, "VHOST_SET_VRING_BASE"),
        (GET_VRING_BASE, "VHOST_GET_VRING_BASE"),
        (GET_DEVICE_ID, "VHOST_VDPA_GET_DEVICE_ID"),
        (GET_STATUS, "VHOST_VDPA_GET_STATUS"),
        (SET_STATUS, "VHOST_VDPA_SET_STATUS"),
        (GET_CONFIG, "VHOST_VDPA_GET_CONFIG"),
        (SET_CONFIG, "VHOST_VDPA_SET_CONFIG"),
        (SET_VRING_ENABLE, "VHOST_VDPA_SET_VRING_ENABLE"),
        (GET_VRING_NUM, "VHOST_VDPA_GET_VRING_NUM"),
        (GET_CONFIG_SIZE, "VHOST_VDPA_GET_CONFIG_SIZE"),
        (GET_VQS_COUNT, "VHOST_VDPA_GET_VQS_COUNT"),
        (SUSPEND, "VHOST_VDPA_SUSPEND"),
        (RESUME, "VHOST_VDPA_RESUME"),
    ];
}

/// Virtio status bits (virtio 1.x, 2.1; `VIRTIO_CONFIG_S_*`).
pub mod status {
    /// ACKNOWLEDGE
    pub const ACKNOWLEDGE: u8 = 1;
    /// DRIVER
    pub const DRIVER: u8 = 2;
    /// DRIVER_OK
    pub const DRIVER_OK: u8 = 4;
    /// FEATURES_OK
    pub const FEATURES_OK: u8 = 8;
    /// DEVICE_NEEDS_RESET
    pub const NEEDS_RESET: u8 = 0x40;
    /// FAILED
    pub const FAILED: u8 = 0x80;
}

/// Bit number of `VHOST_F_LOG_ALL` (`<linux/vhost.h>`): the driver logs
/// every write of the device into the dirty log of `VHOST_SET_LOG_BASE`.
/// Not a virtio feature: the core owns it, parents never see it set.
pub const VHOST_F_LOG_ALL_BIT: u32 = 26;
/// `VHOST_F_LOG_ALL` as a feature mask.
pub const VHOST_F_LOG_ALL: u64 = 1 << VHOST_F_LOG_ALL_BIT;
/// `struct vhost_vring_addr.flags`: log the used ring's writes at
/// `log_guest_addr` (`1 << VHOST_VRING_F_LOG`; the bit number is 0).
pub const VHOST_VRING_F_LOG: u32 = 1 << 0;
/// Bytes of guest memory one bit of the dirty log stands for
/// (`VHOST_PAGE_SIZE`), whatever the host's page size.
pub const LOG_PAGE_SIZE: u64 = 0x1000;

/// Bit number of `VIRTIO_F_VERSION_1`.
pub const VIRTIO_F_VERSION_1_BIT: u32 = 32;
/// Bit number of `VIRTIO_F_ACCESS_PLATFORM`.
pub const VIRTIO_F_ACCESS_PLATFORM_BIT: u32 = 33;
/// `VIRTIO_F_VERSION_1` as a feature mask.
pub const VIRTIO_F_VERSION_1: u64 = 1 << VIRTIO_F_VERSION_1_BIT;
/// `VIRTIO_F_ACCESS_PLATFORM` as a feature mask.
pub const VIRTIO_F_ACCESS_PLATFORM: u64 = 1 << VIRTIO_F_ACCESS_PLATFORM_BIT;
/// Bit number of `VIRTIO_F_RING_PACKED`.
pub const VIRTIO_F_RING_PACKED_BIT: u32 = 34;
/// `VIRTIO_F_RING_PACKED` as a feature mask: the queues are packed rings
/// (virtio 1.1, 2.8), with a 32-bit vring base.
pub const VIRTIO_F_RING_PACKED: u64 = 1 << VIRTIO_F_RING_PACKED_BIT;
