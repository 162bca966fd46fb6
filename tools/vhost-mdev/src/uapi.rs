// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Constants and argument layouts of the vhost-mdev uAPI.
//!
//! The `VHOST_VFIO_*` constants of `include/uapi/linux/vhost_mdev.h`, the
//! vhost request codes of the protocol and their argument structs
//! (`<linux/vhost.h>`, `<linux/vhost_types.h>`) come from the
//! `vhost-mdev-proto` crate, which the kernel module compiles too. The
//! other vhost, VFIO and iommufd ioctls (`<linux/vfio.h>`,
//! `<linux/iommufd.h>`) are declared with `vmm-sys-util`'s `ioctl_*_nr!`
//! macros, virtio constants come from `virtio-bindings`.
//!
//! `tests/c_headers.rs` compiles a C program against those headers and
//! compares every value and layout here with what C sees; the unit tests
//! below parse the header's `#define`s and compare the request codes with
//! the ioctl macros'.

#![allow(missing_docs)]

use std::mem::size_of;

use vhost_mdev_proto::uapi as proto_uapi;
use vhost_mdev_proto::uapi::req;
use vmm_sys_util::{ioctl_io_nr, ioctl_ior_nr, ioctl_iow_nr};

/// The mdev type's `device_api` attribute.
pub const VHOST_VFIO_DEVICE_API: &str = proto_uapi::DEVICE_API;

/// Region carrying vhost messages.
pub const VHOST_VFIO_REGION_MSG: u32 = proto_uapi::REGION_MSG;
/// Region carrying queue notifications.
pub const VHOST_VFIO_REGION_NOTIFY: u32 = proto_uapi::REGION_NOTIFY;
/// Number of regions of a vhost-mdev device.
pub const VHOST_VFIO_NUM_REGIONS: u32 = proto_uapi::NUM_REGIONS;
/// Size of the message region.
pub const VHOST_VFIO_MSG_REGION_SIZE: u32 = proto_uapi::MSG_REGION_SIZE as u32;
/// The kernel's region offsets are `index << VHOST_VFIO_REGION_SHIFT`; this
/// crate reads them from `VFIO_DEVICE_GET_REGION_INFO` instead
/// ([`crate::device::Regions`]), as VFIO asks of its users.
pub const VHOST_VFIO_REGION_SHIFT: u32 = proto_uapi::REGION_SHIFT;

/// IRQ index of the virtqueue interrupts (one per queue).
pub const VHOST_VFIO_IRQ_VQ: u32 = proto_uapi::IRQ_VQ;
/// IRQ index of the config-change interrupt.
pub const VHOST_VFIO_IRQ_CONFIG: u32 = proto_uapi::IRQ_CONFIG;
/// IRQ index of the request interrupt (the instance is going away).
pub const VHOST_VFIO_IRQ_REQ: u32 = proto_uapi::IRQ_REQ;
/// Number of IRQ indexes.
pub const VHOST_VFIO_NUM_IRQS: u32 = proto_uapi::NUM_IRQS;

/// `vhost_vfio_op.flags`: the request returns data.
pub const VHOST_VFIO_NEED_REPLY: u32 = proto_uapi::NEED_REPLY;

/// Size of `struct vhost_vfio_op` (the header).
pub const VHOST_VFIO_OP_HDR_SIZE: u32 = proto_uapi::HDR_SIZE as u32;
/// Largest payload of a message.
pub const VHOST_VFIO_MAX_PAYLOAD: u32 = proto_uapi::MAX_PAYLOAD as u32;

// ---------------------------------------------------------------------------
// <linux/vhost_types.h>

/// Header of `struct vhost_memory` (the regions follow;
/// `vhost-mdev-proto`'s).
pub use vhost_mdev_proto::uapi::VhostMemory;
/// `struct vhost_vring_addr` (`vhost-mdev-proto`'s).
pub use vhost_mdev_proto::uapi::VhostVringAddr;
/// `struct vhost_vring_file` (`vhost-mdev-proto`'s).
pub use vhost_mdev_proto::uapi::VhostVringFile;
/// `struct vhost_vring_state` (`vhost-mdev-proto`'s).
pub use vhost_mdev_proto::uapi::VhostVringState;

/// One region of a memory table (`struct vhost_memory_region`).
pub use vhost_mdev_proto::proto::MemRegion;

/// Most regions of one `VHOST_SET_MEM_TABLE` (vhost's default
/// `max_mem_regions`).
pub use vhost_mdev_proto::uapi::MAX_MEM_REGIONS;

/// Header of `struct vhost_vdpa_config` (the data follows;
/// `vhost-mdev-proto`'s).
pub use vhost_mdev_proto::uapi::VhostVdpaConfig;

/// `struct vhost_iotlb_msg`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VhostIotlbMsg {
    pub iova: u64,
    pub size: u64,
    pub uaddr: u64,
    pub perm: u8,
    pub type_: u8,
}

/// `struct vhost_msg_v2` (the union padded to 64 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VhostMsgV2 {
    pub type_: u32,
    pub asid: u32,
    pub iotlb: VhostIotlbMsg,
    pub padding: [u8; 64 - size_of::<VhostIotlbMsg>()],
}

/// Bit number of `VHOST_F_LOG_ALL` (a feature bit of `VHOST_GET_FEATURES`:
/// the device logs its writes into the log of `VHOST_SET_LOG_BASE`).
pub const VHOST_F_LOG_ALL: u64 = proto_uapi::VHOST_F_LOG_ALL_BIT as u64;
/// Bit number of `VHOST_VRING_F_LOG` in `struct vhost_vring_addr.flags`.
pub const VHOST_VRING_F_LOG: u32 = proto_uapi::VHOST_VRING_F_LOG.trailing_zeros();
pub const VHOST_ACCESS_RO: u8 = 0x1;
pub const VHOST_ACCESS_WO: u8 = 0x2;
pub const VHOST_ACCESS_RW: u8 = 0x3;
pub const VHOST_IOTLB_UPDATE: u8 = 2;
pub const VHOST_IOTLB_INVALIDATE: u8 = 3;
pub const VHOST_IOTLB_MSG_V2: u32 = 0x2;
/// Bit number of `VHOST_BACKEND_F_IOTLB_MSG_V2`.
pub const VHOST_BACKEND_F_IOTLB_MSG_V2: u64 = 0x1;
/// Bit number of `VHOST_BACKEND_F_IOTLB_BATCH`.
pub const VHOST_BACKEND_F_IOTLB_BATCH: u64 = 0x2;
/// Bit number of `VHOST_BACKEND_F_SUSPEND`.
pub const VHOST_BACKEND_F_SUSPEND: u64 = 0x4;
/// Bit number of `VHOST_BACKEND_F_RESUME`.
pub const VHOST_BACKEND_F_RESUME: u64 = 0x5;

// ---------------------------------------------------------------------------
// Request and ioctl codes.
//
// The vhost requests of the protocol (on region 0, or as ioctls on the
// device fd) are `vhost-mdev-proto`'s codes: the ones the kernel module
// compiles and checks against its headers at build time. Every other ioctl
// this crate issues is declared with `vmm-sys-util`'s `ioctl_*_nr!`
// macros (each declares a function that returns the code). The tests
// compare all of them with what a C program compiled against the uAPI
// headers prints.

/// `VHOST_VIRTIO`, the ioctl type of vhost.
pub const VHOST_VIRTIO: u32 = proto_uapi::VHOST_VIRTIO;

pub const VHOST_GET_FEATURES: u64 = req::GET_FEATURES as u64;
pub const VHOST_SET_FEATURES: u64 = req::SET_FEATURES as u64;
pub const VHOST_SET_OWNER: u64 = req::SET_OWNER as u64;
pub const VHOST_SET_MEM_TABLE: u64 = req::SET_MEM_TABLE as u64;
pub const VHOST_SET_LOG_BASE: u64 = req::SET_LOG_BASE as u64;
pub const VHOST_SET_VRING_NUM: u64 = req::SET_VRING_NUM as u64;
pub const VHOST_SET_VRING_ADDR: u64 = req::SET_VRING_ADDR as u64;
pub const VHOST_SET_VRING_BASE: u64 = req::SET_VRING_BASE as u64;
pub const VHOST_GET_VRING_BASE: u64 = req::GET_VRING_BASE as u64;
pub const VHOST_VDPA_GET_DEVICE_ID: u64 = req::GET_DEVICE_ID as u64;
pub const VHOST_VDPA_GET_STATUS: u64 = req::GET_STATUS as u64;
pub const VHOST_VDPA_SET_STATUS: u64 = req::SET_STATUS as u64;
pub const VHOST_VDPA_GET_CONFIG: u64 = req::GET_CONFIG as u64;
pub const VHOST_VDPA_SET_CONFIG: u64 = req::SET_CONFIG as u64;
pub const VHOST_VDPA_SET_VRING_ENABLE: u64 = req::SET_VRING_ENABLE as u64;
pub const VHOST_VDPA_GET_VRING_NUM: u64 = req::GET_VRING_NUM as u64;
pub const VHOST_VDPA_GET_CONFIG_SIZE: u64 = req::GET_CONFIG_SIZE as u64;
pub const VHOST_VDPA_SUSPEND: u64 = req::SUSPEND as u64;
pub const VHOST_VDPA_RESUME: u64 = req::RESUME as u64;
pub const VHOST_VDPA_GET_VQS_COUNT: u64 = req::GET_VQS_COUNT as u64;
/// `VHOST_VFIO_SET_VRING_HVA` (vhost-mdev's own, `<linux/vhost_mdev.h>`):
/// where the sender sees the rings of `VHOST_SET_VRING_ADDR`.
pub const VHOST_VFIO_SET_VRING_HVA: u64 = req::SET_VRING_HVA as u64;

/// The vhost requests of the vhost-mdev message table, with their names.
pub const VHOST_REQUESTS: &[(u64, &str)] = &[
    (VHOST_GET_FEATURES, "VHOST_GET_FEATURES"),
    (VHOST_SET_FEATURES, "VHOST_SET_FEATURES"),
    (VHOST_SET_OWNER, "VHOST_SET_OWNER"),
    (VHOST_SET_MEM_TABLE, "VHOST_SET_MEM_TABLE"),
    (VHOST_SET_LOG_BASE, "VHOST_SET_LOG_BASE"),
    (VHOST_SET_VRING_NUM, "VHOST_SET_VRING_NUM"),
    (VHOST_SET_VRING_ADDR, "VHOST_SET_VRING_ADDR"),
    (VHOST_VFIO_SET_VRING_HVA, "VHOST_VFIO_SET_VRING_HVA"),
    (VHOST_SET_VRING_BASE, "VHOST_SET_VRING_BASE"),
    (VHOST_GET_VRING_BASE, "VHOST_GET_VRING_BASE"),
    (VHOST_VDPA_GET_DEVICE_ID, "VHOST_VDPA_GET_DEVICE_ID"),
    (VHOST_VDPA_GET_STATUS, "VHOST_VDPA_GET_STATUS"),
    (VHOST_VDPA_SET_STATUS, "VHOST_VDPA_SET_STATUS"),
    (VHOST_VDPA_GET_CONFIG, "VHOST_VDPA_GET_CONFIG"),
    (VHOST_VDPA_SET_CONFIG, "VHOST_VDPA_SET_CONFIG"),
    (VHOST_VDPA_SET_VRING_ENABLE, "VHOST_VDPA_SET_VRING_ENABLE"),
    (VHOST_VDPA_GET_VRING_NUM, "VHOST_VDPA_GET_VRING_NUM"),
    (VHOST_VDPA_GET_CONFIG_SIZE, "VHOST_VDPA_GET_CONFIG_SIZE"),
    (VHOST_VDPA_GET_VQS_COUNT, "VHOST_VDPA_GET_VQS_COUNT"),
    (VHOST_VDPA_SUSPEND, "VHOST_VDPA_SUSPEND"),
    (VHOST_VDPA_RESUME, "VHOST_VDPA_RESUME"),
];

// The vhost ioctls of `/dev/vhost-vdpa-N` that are no vhost-mdev request
// (`<linux/vhost.h>`).
ioctl_iow_nr!(VHOST_SET_VRING_KICK, VHOST_VIRTIO, 0x20, VhostVringFile);
ioctl_iow_nr!(VHOST_SET_VRING_CALL, VHOST_VIRTIO, 0x21, VhostVringFile);
ioctl_iow_nr!(VHOST_SET_BACKEND_FEATURES, VHOST_VIRTIO, 0x25, u64);
ioctl_ior_nr!(VHOST_GET_BACKEND_FEATURES, VHOST_VIRTIO, 0x26, u64);
ioctl_iow_nr!(VHOST_VDPA_SET_CONFIG_CALL, VHOST_VIRTIO, 0x77, i32);

/// The name of a vhost request code, if it is one of [`VHOST_REQUESTS`] or
/// one of the other vhost ioctls this crate issues.
pub fn request_name(request: u64) -> Option<&'static str> {
    let others = [
        (VHOST_SET_VRING_KICK(), "VHOST_SET_VRING_KICK"),
        (VHOST_SET_VRING_CALL(), "VHOST_SET_VRING_CALL"),
        (VHOST_SET_BACKEND_FEATURES(), "VHOST_SET_BACKEND_FEATURES"),
        (VHOST_GET_BACKEND_FEATURES(), "VHOST_GET_BACKEND_FEATURES"),
        (VHOST_VDPA_SET_CONFIG_CALL(), "VHOST_VDPA_SET_CONFIG_CALL"),
    ];
    VHOST_REQUESTS
        .iter()
        .copied()
        .chain(others)
        .find(|(code, _)| *code == request)
        .map(|(_, name)| name)
}

// <linux/vfio.h> and <linux/iommufd.h>.

const VFIO_TYPE: u32 = vfio_bindings::bindings::vfio::VFIO_TYPE as u32;
const VFIO_BASE: u32 = vfio_bindings::bindings::vfio::VFIO_BASE;

ioctl_io_nr!(VFIO_GET_API_VERSION, VFIO_TYPE, VFIO_BASE);
ioctl_io_nr!(VFIO_CHECK_EXTENSION, VFIO_TYPE, VFIO_BASE + 1);
ioctl_io_nr!(VFIO_SET_IOMMU, VFIO_TYPE, VFIO_BASE + 2);
ioctl_io_nr!(VFIO_GROUP_GET_STATUS, VFIO_TYPE, VFIO_BASE + 3);
ioctl_io_nr!(VFIO_GROUP_SET_CONTAINER, VFIO_TYPE, VFIO_BASE + 4);
ioctl_io_nr!(VFIO_GROUP_UNSET_CONTAINER, VFIO_TYPE, VFIO_BASE + 5);
ioctl_io_nr!(VFIO_GROUP_GET_DEVICE_FD, VFIO_TYPE, VFIO_BASE + 6);
ioctl_io_nr!(VFIO_DEVICE_GET_INFO, VFIO_TYPE, VFIO_BASE + 7);
ioctl_io_nr!(VFIO_DEVICE_GET_REGION_INFO, VFIO_TYPE, VFIO_BASE + 8);
ioctl_io_nr!(VFIO_DEVICE_GET_IRQ_INFO, VFIO_TYPE, VFIO_BASE + 9);
ioctl_io_nr!(VFIO_DEVICE_SET_IRQS, VFIO_TYPE, VFIO_BASE + 10);
ioctl_io_nr!(VFIO_DEVICE_RESET, VFIO_TYPE, VFIO_BASE + 11);
ioctl_io_nr!(VFIO_IOMMU_MAP_DMA, VFIO_TYPE, VFIO_BASE + 13);
ioctl_io_nr!(VFIO_IOMMU_UNMAP_DMA, VFIO_TYPE, VFIO_BASE + 14);
ioctl_io_nr!(VFIO_DEVICE_IOEVENTFD, VFIO_TYPE, VFIO_BASE + 16);
ioctl_io_nr!(VFIO_DEVICE_BIND_IOMMUFD, VFIO_TYPE, VFIO_BASE + 18);
ioctl_io_nr!(VFIO_DEVICE_ATTACH_IOMMUFD_PT, VFIO_TYPE, VFIO_BASE + 19);
ioctl_io_nr!(VFIO_DEVICE_DETACH_IOMMUFD_PT, VFIO_TYPE, VFIO_BASE + 20);

const IOMMUFD_TYPE: u32 = iommufd_bindings::IOMMUFD_TYPE as u32;
ioctl_io_nr!(
    IOMMU_DESTROY,
    IOMMUFD_TYPE,
    iommufd_bindings::IOMMUFD_CMD_DESTROY
);
ioctl_io_nr!(
    IOMMU_IOAS_ALLOC,
    IOMMUFD_TYPE,
    iommufd_bindings::IOMMUFD_CMD_IOAS_ALLOC
);
ioctl_io_nr!(
    IOMMU_IOAS_MAP,
    IOMMUFD_TYPE,
    iommufd_bindings::IOMMUFD_CMD_IOAS_MAP
);
ioctl_io_nr!(
    IOMMU_IOAS_UNMAP,
    IOMMUFD_TYPE,
    iommufd_bindings::IOMMUFD_CMD_IOAS_UNMAP
);

// ---------------------------------------------------------------------------
// virtio

use virtio_bindings::{
    virtio_config as vcfg, virtio_ids, virtio_net as vnet, virtio_ring as vring,
};

/// virtio device ID of a network device.
pub const VIRTIO_ID_NET: u32 = virtio_ids::VIRTIO_ID_NET;

pub const VIRTIO_CONFIG_S_ACKNOWLEDGE: u8 = vcfg::VIRTIO_CONFIG_S_ACKNOWLEDGE as u8;
pub const VIRTIO_CONFIG_S_DRIVER: u8 = vcfg::VIRTIO_CONFIG_S_DRIVER as u8;
pub const VIRTIO_CONFIG_S_DRIVER_OK: u8 = vcfg::VIRTIO_CONFIG_S_DRIVER_OK as u8;
pub const VIRTIO_CONFIG_S_FEATURES_OK: u8 = vcfg::VIRTIO_CONFIG_S_FEATURES_OK as u8;
pub const VIRTIO_CONFIG_S_NEEDS_RESET: u8 = vcfg::VIRTIO_CONFIG_S_NEEDS_RESET as u8;
pub const VIRTIO_CONFIG_S_FAILED: u8 = vcfg::VIRTIO_CONFIG_S_FAILED as u8;

pub const VIRTIO_NET_F_CSUM: u32 = vnet::VIRTIO_NET_F_CSUM;
pub const VIRTIO_NET_F_GUEST_CSUM: u32 = vnet::VIRTIO_NET_F_GUEST_CSUM;
pub const VIRTIO_NET_F_MTU: u32 = vnet::VIRTIO_NET_F_MTU;
pub const VIRTIO_NET_F_MAC: u32 = vnet::VIRTIO_NET_F_MAC;
pub const VIRTIO_NET_F_MRG_RXBUF: u32 = vnet::VIRTIO_NET_F_MRG_RXBUF;
pub const VIRTIO_NET_F_STATUS: u32 = vnet::VIRTIO_NET_F_STATUS;
pub const VIRTIO_NET_F_CTRL_VQ: u32 = vnet::VIRTIO_NET_F_CTRL_VQ;
pub const VIRTIO_NET_F_MQ: u32 = vnet::VIRTIO_NET_F_MQ;
pub const VIRTIO_RING_F_INDIRECT_DESC: u32 = vring::VIRTIO_RING_F_INDIRECT_DESC;
pub const VIRTIO_RING_F_EVENT_IDX: u32 = vring::VIRTIO_RING_F_EVENT_IDX;
pub const VIRTIO_F_VERSION_1: u32 = vcfg::VIRTIO_F_VERSION_1;
pub const VIRTIO_F_ACCESS_PLATFORM: u32 = vcfg::VIRTIO_F_ACCESS_PLATFORM;
pub const VIRTIO_F_RING_PACKED: u32 = vcfg::VIRTIO_F_RING_PACKED;
pub const VIRTIO_F_IN_ORDER: u32 = vcfg::VIRTIO_F_IN_ORDER;

/// `VIRTIO_NET_S_LINK_UP` in `virtio_net_config.status`.
pub const VIRTIO_NET_S_LINK_UP: u16 = vnet::VIRTIO_NET_S_LINK_UP as u16;

/// Names of the feature bits [`feature_names`] knows.
const FEATURE_NAMES: &[(u32, &str)] = &[
    (VIRTIO_NET_F_CSUM, "NET_F_CSUM"),
    (VIRTIO_NET_F_GUEST_CSUM, "NET_F_GUEST_CSUM"),
    (VIRTIO_NET_F_MTU, "NET_F_MTU"),
    (VIRTIO_NET_F_MAC, "NET_F_MAC"),
    (VIRTIO_NET_F_MRG_RXBUF, "NET_F_MRG_RXBUF"),
    (VIRTIO_NET_F_STATUS, "NET_F_STATUS"),
    (VIRTIO_NET_F_CTRL_VQ, "NET_F_CTRL_VQ"),
    (VIRTIO_NET_F_MQ, "NET_F_MQ"),
    (VIRTIO_RING_F_INDIRECT_DESC, "RING_F_INDIRECT_DESC"),
    (VIRTIO_RING_F_EVENT_IDX, "RING_F_EVENT_IDX"),
    (VIRTIO_F_VERSION_1, "F_VERSION_1"),
    (VIRTIO_F_ACCESS_PLATFORM, "F_ACCESS_PLATFORM"),
    (VIRTIO_F_RING_PACKED, "F_RING_PACKED"),
    (VIRTIO_F_IN_ORDER, "F_IN_ORDER"),
];

/// Names of the set bits of a virtio-net feature word (`bit N` for bits
/// without a name here).
pub fn feature_names(features: u64) -> Vec<String> {
    (0..64)
        .filter(|bit| features & (1u64 << bit) != 0)
        .map(|bit| {
            FEATURE_NAMES
                .iter()
                .find(|(b, _)| *b == bit)
                .map_or_else(|| format!("bit {bit}"), |(_, n)| (*n).to_string())
        })
        .collect()
}

/// Names of the set bits of a virtio status byte.
pub fn status_names(status: u8) -> Vec<&'static str> {
    const NAMES: &[(u8, &str)] = &[
        (VIRTIO_CONFIG_S_ACKNOWLEDGE, "ACKNOWLEDGE"),
        (VIRTIO_CONFIG_S_DRIVER, "DRIVER"),
        (VIRTIO_CONFIG_S_DRIVER_OK, "DRIVER_OK"),
        (VIRTIO_CONFIG_S_FEATURES_OK, "FEATURES_OK"),
        (0x10, "bit 4"),
        (0x20, "bit 5"),
        (VIRTIO_CONFIG_S_NEEDS_RESET, "DEVICE_NEEDS_RESET"),
        (VIRTIO_CONFIG_S_FAILED, "FAILED"),
    ];
    NAMES
        .iter()
        .filter(|(bit, _)| status & bit != 0)
        .map(|(_, n)| *n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Every `#define NAME VALUE` of include/uapi/linux/vhost_mdev.h, with
    /// `VALUE` evaluated (numbers, `(1U << n)`, strings and references to
    /// earlier names, with `+`/`-`).
    fn header_defines() -> Vec<(String, String)> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../include/uapi/linux/vhost_mdev.h"
        );
        let text = std::fs::read_to_string(path).expect("read vhost_mdev.h");
        // Join continuation lines.
        let text = text.replace("\\\n", " ");
        text.lines()
            .filter_map(|l| {
                let l = l.trim();
                let rest = l.strip_prefix("#define")?;
                let mut parts = rest.trim().splitn(2, char::is_whitespace);
                let name = parts.next()?.to_string();
                let value = parts.next().unwrap_or("").trim();
                // Strip trailing /* comments */.
                let value = value.split("/*").next().unwrap_or("").trim().to_string();
                if value.is_empty() {
                    return None; // include guard
                }
                Some((name, value))
            })
            .collect()
    }

    fn eval(expr: &str, env: &HashMap<String, u64>) -> u64 {
        let e = expr.trim();
        if let Some(inner) = e.strip_prefix('(').and_then(|s| s.strip_suffix(')')) {
            return eval(inner, env);
        }
        for op in ['+', '-'] {
            if let Some((a, b)) = e.rsplit_once(op) {
                let (a, b) = (eval(a, env), eval(b, env));
                return if op == '+' { a + b } else { a - b };
            }
        }
        if let Some((a, b)) = e.split_once("<<") {
            return eval(a, env) << eval(b, env);
        }
        let lit = e.trim_end_matches(['U', 'u', 'L', 'l']);
        if let Some(hex) = lit.strip_prefix("0x") {
            return u64::from_str_radix(hex, 16).expect("hex literal");
        }
        if let Ok(v) = lit.parse() {
            return v;
        }
        *env.get(e).unwrap_or_else(|| panic!("unknown name {e}"))
    }

    #[test]
    fn header_matches_rust_constants() {
        let rust: HashMap<&str, u64> = [
            ("VHOST_VFIO_REGION_MSG", VHOST_VFIO_REGION_MSG as u64),
            ("VHOST_VFIO_REGION_NOTIFY", VHOST_VFIO_REGION_NOTIFY as u64),
            ("VHOST_VFIO_NUM_REGIONS", VHOST_VFIO_NUM_REGIONS as u64),
            (
                "VHOST_VFIO_MSG_REGION_SIZE",
                VHOST_VFIO_MSG_REGION_SIZE as u64,
            ),
            ("VHOST_VFIO_REGION_SHIFT", VHOST_VFIO_REGION_SHIFT as u64),
            ("VHOST_VFIO_IRQ_VQ", VHOST_VFIO_IRQ_VQ as u64),
            ("VHOST_VFIO_IRQ_CONFIG", VHOST_VFIO_IRQ_CONFIG as u64),
            ("VHOST_VFIO_IRQ_REQ", VHOST_VFIO_IRQ_REQ as u64),
            ("VHOST_VFIO_NUM_IRQS", VHOST_VFIO_NUM_IRQS as u64),
            ("VHOST_VFIO_NEED_REPLY", VHOST_VFIO_NEED_REPLY as u64),
            ("VHOST_VFIO_OP_HDR_SIZE", VHOST_VFIO_OP_HDR_SIZE as u64),
            ("VHOST_VFIO_MAX_PAYLOAD", VHOST_VFIO_MAX_PAYLOAD as u64),
            ("VHOST_VFIO_SET_VRING_HVA", VHOST_VFIO_SET_VRING_HVA),
        ]
        .into_iter()
        .collect();

        let mut env = HashMap::new();
        let mut seen = 0;
        for (name, value) in header_defines() {
            if name == "VHOST_VFIO_DEVICE_API" {
                assert_eq!(value, format!("\"{VHOST_VFIO_DEVICE_API}\""));
                seen += 1;
                continue;
            }
            let v = match value.strip_prefix("_IOW(") {
                // An ioctl number: _IOW(VHOST_VIRTIO, nr, struct ...).
                Some(args) => {
                    let args: Vec<&str> = args
                        .trim_end_matches(')')
                        .split(',')
                        .map(str::trim)
                        .collect();
                    assert_eq!(args[0], "VHOST_VIRTIO", "{name}");
                    assert_eq!(args[2], "struct vhost_vring_addr", "{name}");
                    let nr = u32::from_str_radix(args[1].trim_start_matches("0x"), 16).expect("nr");
                    let size = size_of::<VhostVringAddr>() as u32;
                    vmm_sys_util::ioctl::ioctl_expr(
                        vmm_sys_util::ioctl::_IOC_WRITE,
                        VHOST_VIRTIO,
                        nr,
                        size,
                    )
                }
                None => eval(&value, &env),
            };
            let r = rust
                .get(name.as_str())
                .unwrap_or_else(|| panic!("{name} has no Rust constant"));
            assert_eq!(*r, v, "{name}");
            env.insert(name, v);
            seen += 1;
        }
        assert_eq!(seen, rust.len() + 1, "every Rust constant is in the header");
    }

    /// The protocol's request codes (`vhost-mdev-proto`'s) are those
    /// vmm-sys-util's ioctl macros declare.
    #[allow(non_snake_case)]
    mod by_macro {
        use super::super::VHOST_VIRTIO;
        use super::super::{VhostMemory, VhostVdpaConfig, VhostVringAddr, VhostVringState};
        use vmm_sys_util::{ioctl_io_nr, ioctl_ior_nr, ioctl_iow_nr, ioctl_iowr_nr};

        ioctl_ior_nr!(VHOST_GET_FEATURES, VHOST_VIRTIO, 0x00, u64);
        ioctl_iow_nr!(VHOST_SET_FEATURES, VHOST_VIRTIO, 0x00, u64);
        ioctl_io_nr!(VHOST_SET_OWNER, VHOST_VIRTIO, 0x01);
        ioctl_iow_nr!(VHOST_SET_MEM_TABLE, VHOST_VIRTIO, 0x03, VhostMemory);
        ioctl_iow_nr!(VHOST_SET_LOG_BASE, VHOST_VIRTIO, 0x04, u64);
        ioctl_iow_nr!(VHOST_SET_VRING_NUM, VHOST_VIRTIO, 0x10, VhostVringState);
        ioctl_iow_nr!(VHOST_SET_VRING_ADDR, VHOST_VIRTIO, 0x11, VhostVringAddr);
        ioctl_iow_nr!(VHOST_SET_VRING_BASE, VHOST_VIRTIO, 0x12, VhostVringState);
        ioctl_iowr_nr!(VHOST_GET_VRING_BASE, VHOST_VIRTIO, 0x12, VhostVringState);
        ioctl_ior_nr!(VHOST_VDPA_GET_DEVICE_ID, VHOST_VIRTIO, 0x70, u32);
        ioctl_ior_nr!(VHOST_VDPA_GET_STATUS, VHOST_VIRTIO, 0x71, u8);
        ioctl_iow_nr!(VHOST_VDPA_SET_STATUS, VHOST_VIRTIO, 0x72, u8);
        ioctl_ior_nr!(VHOST_VDPA_GET_CONFIG, VHOST_VIRTIO, 0x73, VhostVdpaConfig);
        ioctl_iow_nr!(VHOST_VDPA_SET_CONFIG, VHOST_VIRTIO, 0x74, VhostVdpaConfig);
        ioctl_iow_nr!(
            VHOST_VDPA_SET_VRING_ENABLE,
            VHOST_VIRTIO,
            0x75,
            VhostVringState
        );
        ioctl_ior_nr!(VHOST_VDPA_GET_VRING_NUM, VHOST_VIRTIO, 0x76, u16);
        ioctl_ior_nr!(VHOST_VDPA_GET_CONFIG_SIZE, VHOST_VIRTIO, 0x79, u32);
        ioctl_io_nr!(VHOST_VDPA_SUSPEND, VHOST_VIRTIO, 0x7D);
        ioctl_io_nr!(VHOST_VDPA_RESUME, VHOST_VIRTIO, 0x7E);
        ioctl_ior_nr!(VHOST_VDPA_GET_VQS_COUNT, VHOST_VIRTIO, 0x80, u32);
        ioctl_iow_nr!(VHOST_VFIO_SET_VRING_HVA, VHOST_VIRTIO, 0xE0, VhostVringAddr);
    }

    #[test]
    fn codes_are_what_the_ioctl_macros_declare() {
        use by_macro as m;
        let pairs: [(u64, u64); 21] = [
            (VHOST_GET_FEATURES, m::VHOST_GET_FEATURES()),
            (VHOST_SET_FEATURES, m::VHOST_SET_FEATURES()),
            (VHOST_SET_OWNER, m::VHOST_SET_OWNER()),
            (VHOST_SET_MEM_TABLE, m::VHOST_SET_MEM_TABLE()),
            (VHOST_SET_LOG_BASE, m::VHOST_SET_LOG_BASE()),
            (VHOST_SET_VRING_NUM, m::VHOST_SET_VRING_NUM()),
            (VHOST_SET_VRING_ADDR, m::VHOST_SET_VRING_ADDR()),
            (VHOST_SET_VRING_BASE, m::VHOST_SET_VRING_BASE()),
            (VHOST_GET_VRING_BASE, m::VHOST_GET_VRING_BASE()),
            (VHOST_VDPA_GET_DEVICE_ID, m::VHOST_VDPA_GET_DEVICE_ID()),
            (VHOST_VDPA_GET_STATUS, m::VHOST_VDPA_GET_STATUS()),
            (VHOST_VDPA_SET_STATUS, m::VHOST_VDPA_SET_STATUS()),
            (VHOST_VDPA_GET_CONFIG, m::VHOST_VDPA_GET_CONFIG()),
            (VHOST_VDPA_SET_CONFIG, m::VHOST_VDPA_SET_CONFIG()),
            (
                VHOST_VDPA_SET_VRING_ENABLE,
                m::VHOST_VDPA_SET_VRING_ENABLE(),
            ),
            (VHOST_VDPA_GET_VRING_NUM, m::VHOST_VDPA_GET_VRING_NUM()),
            (VHOST_VDPA_GET_CONFIG_SIZE, m::VHOST_VDPA_GET_CONFIG_SIZE()),
            (VHOST_VDPA_SUSPEND, m::VHOST_VDPA_SUSPEND()),
            (VHOST_VDPA_RESUME, m::VHOST_VDPA_RESUME()),
            (VHOST_VDPA_GET_VQS_COUNT, m::VHOST_VDPA_GET_VQS_COUNT()),
            (VHOST_VFIO_SET_VRING_HVA, m::VHOST_VFIO_SET_VRING_HVA()),
        ];
        for (i, (ours, macro_)) in pairs.into_iter().enumerate() {
            assert_eq!(ours, macro_, "code {i}");
        }
    }

    /// The request codes of this crate and those of `vhost-mdev-proto`,
    /// which the kernel module checks against its headers, are the same,
    /// name for name.
    #[test]
    fn codes_are_the_protocol_crate_s() {
        assert_eq!(VHOST_REQUESTS.len(), vhost_mdev_proto::uapi::req::ALL.len());
        for (code, name) in vhost_mdev_proto::uapi::req::ALL {
            let ours = VHOST_REQUESTS.iter().find(|(_, n)| *n == name);
            assert_eq!(ours.map(|(c, _)| *c), Some(u64::from(code)), "{name}");
        }
    }

    #[test]
    fn virtio_constants_keep_their_values() {
        // virtio-bindings gives them; their values are virtio's.
        assert_eq!(VIRTIO_ID_NET, 1);
        assert_eq!(
            [
                VIRTIO_CONFIG_S_ACKNOWLEDGE,
                VIRTIO_CONFIG_S_DRIVER,
                VIRTIO_CONFIG_S_DRIVER_OK,
                VIRTIO_CONFIG_S_FEATURES_OK,
                VIRTIO_CONFIG_S_NEEDS_RESET,
                VIRTIO_CONFIG_S_FAILED
            ],
            [1, 2, 4, 8, 0x40, 0x80]
        );
        assert_eq!(
            [
                VIRTIO_NET_F_CSUM,
                VIRTIO_NET_F_GUEST_CSUM,
                VIRTIO_NET_F_MTU,
                VIRTIO_NET_F_MAC,
                VIRTIO_NET_F_MRG_RXBUF,
                VIRTIO_NET_F_STATUS,
                VIRTIO_NET_F_CTRL_VQ,
                VIRTIO_NET_F_MQ,
                VIRTIO_RING_F_INDIRECT_DESC,
                VIRTIO_RING_F_EVENT_IDX,
                VIRTIO_F_VERSION_1,
                VIRTIO_F_ACCESS_PLATFORM,
                VIRTIO_F_RING_PACKED,
                VIRTIO_F_IN_ORDER
            ],
            [0, 1, 3, 5, 15, 16, 17, 22, 28, 29, 32, 33, 34, 35]
        );
        assert_eq!(VIRTIO_NET_S_LINK_UP, 1);
    }

    #[test]
    fn op_header_size() {
        assert_eq!(
            VHOST_VFIO_OP_HDR_SIZE as usize,
            size_of::<u64>() + 2 * size_of::<u32>()
        );
    }

    #[test]
    fn vhost_codes_match_linux() {
        // Values of <linux/vhost.h> on asm-generic ioctl encodings.
        assert_eq!(VHOST_GET_FEATURES, 0x8008_af00);
        assert_eq!(VHOST_SET_FEATURES, 0x4008_af00);
        assert_eq!(VHOST_SET_OWNER, 0xaf01);
        assert_eq!(VHOST_SET_LOG_BASE, 0x4008_af04);
        assert_eq!(VHOST_SET_VRING_NUM, 0x4008_af10);
        assert_eq!(VHOST_SET_VRING_ADDR, 0x4028_af11);
        assert_eq!(VHOST_VFIO_SET_VRING_HVA, 0x4028_afe0);
        assert_eq!(VHOST_SET_VRING_BASE, 0x4008_af12);
        assert_eq!(VHOST_GET_VRING_BASE, 0xc008_af12);
        assert_eq!(VHOST_SET_VRING_KICK(), 0x4008_af20);
        assert_eq!(VHOST_SET_VRING_CALL(), 0x4008_af21);
        assert_eq!(VHOST_VDPA_GET_DEVICE_ID, 0x8004_af70);
        assert_eq!(VHOST_VDPA_GET_STATUS, 0x8001_af71);
        assert_eq!(VHOST_VDPA_SET_STATUS, 0x4001_af72);
        assert_eq!(VHOST_VDPA_GET_CONFIG, 0x8008_af73);
        assert_eq!(VHOST_VDPA_SET_CONFIG, 0x4008_af74);
        assert_eq!(VHOST_VDPA_SET_VRING_ENABLE, 0x4008_af75);
        assert_eq!(VHOST_VDPA_GET_VRING_NUM, 0x8002_af76);
        assert_eq!(VHOST_VDPA_GET_CONFIG_SIZE, 0x8004_af79);
        assert_eq!(VHOST_VDPA_GET_VQS_COUNT, 0x8004_af80);
        assert_eq!(VHOST_VDPA_SUSPEND, 0xaf7d);
        assert_eq!(VHOST_VDPA_RESUME, 0xaf7e);
        assert_eq!(VFIO_GROUP_GET_DEVICE_FD(), 0x3b6a);
        assert_eq!(VFIO_DEVICE_BIND_IOMMUFD(), 0x3b76);
        assert_eq!(IOMMU_IOAS_ALLOC(), 0x3b81);
    }

    #[test]
    fn struct_layouts() {
        assert_eq!(size_of::<VhostVringState>(), 8);
        assert_eq!(size_of::<VhostVringFile>(), 8);
        assert_eq!(size_of::<VhostVringAddr>(), 40);
        assert_eq!(size_of::<VhostVdpaConfig>(), 8);
        assert_eq!(size_of::<VhostIotlbMsg>(), 32);
        assert_eq!(size_of::<VhostMsgV2>(), 72);
        assert_eq!(std::mem::offset_of!(VhostMsgV2, iotlb), 8);
        assert_eq!(std::mem::offset_of!(VhostIotlbMsg, perm), 24);
        assert_eq!(std::mem::offset_of!(VhostIotlbMsg, type_), 25);
    }

    #[test]
    fn names() {
        assert_eq!(
            request_name(VHOST_SET_VRING_NUM),
            Some("VHOST_SET_VRING_NUM")
        );
        assert_eq!(request_name(0x1234), None);
        assert_eq!(
            feature_names((1 << 5) | (1 << 32) | (1 << 60)),
            ["NET_F_MAC", "F_VERSION_1", "bit 60"]
        );
        assert_eq!(status_names(0x0f).len(), 4);
    }
}
