// SPDX-License-Identifier: GPL-2.0

//! The vhost-mdev protocol and virtio device model, from the
//! `vhost-mdev-proto` crate (`tools/vhost-mdev-proto`), whose source files
//! are compiled here as they are: userspace and the host tests run the
//! same code.
//!
//! The uAPI constants of that crate are checked here, at compile time,
//! against bindgen's reading of `include/uapi/linux/vhost_mdev.h` and of
//! the kernel's vhost and virtio headers.

use crate::uapi_h as b;
use core::mem::size_of;

#[path = "../tools/vhost-mdev-proto/src/uapi.rs"]
pub mod uapi;

#[path = "../tools/vhost-mdev-proto/src/proto.rs"]
mod model;
pub use model::*;

#[path = "../tools/vhost-mdev-proto/src/log.rs"]
pub mod log;

// The header of a message and the region and IRQ layout.
const _: () = assert!(uapi::HDR_SIZE == b::VHOST_VFIO_OP_HDR_SIZE as usize);
const _: () = assert!(uapi::HDR_SIZE == size_of::<b::vhost_vfio_op>());
const _: () = assert!(uapi::MSG_REGION_SIZE == b::VHOST_VFIO_MSG_REGION_SIZE as usize);
const _: () = assert!(uapi::MAX_PAYLOAD == b::VHOST_VFIO_MAX_PAYLOAD as usize);
const _: () = assert!(uapi::NEED_REPLY == b::VHOST_VFIO_NEED_REPLY);
const _: () = assert!(uapi::REGION_SHIFT == b::VHOST_VFIO_REGION_SHIFT);
const _: () = assert!(uapi::REGION_MSG == b::VHOST_VFIO_REGION_MSG);
const _: () = assert!(uapi::REGION_NOTIFY == b::VHOST_VFIO_REGION_NOTIFY);
const _: () = assert!(uapi::NUM_REGIONS == b::VHOST_VFIO_NUM_REGIONS);
const _: () = assert!(uapi::IRQ_VQ == b::VHOST_VFIO_IRQ_VQ);
const _: () = assert!(uapi::IRQ_CONFIG == b::VHOST_VFIO_IRQ_CONFIG);
const _: () = assert!(uapi::IRQ_REQ == b::VHOST_VFIO_IRQ_REQ);
const _: () = assert!(uapi::NUM_IRQS == b::VHOST_VFIO_NUM_IRQS);

// Argument layouts of the vhost requests.
const _: () = assert!(uapi::VRING_STATE_SIZE == size_of::<b::vhost_vring_state>());
const _: () = assert!(uapi::VRING_ADDR_SIZE == size_of::<b::vhost_vring_addr>());
const _: () = assert!(uapi::CONFIG_HDR_SIZE == size_of::<b::vhost_vdpa_config>());
const _: () = assert!(uapi::MEM_TABLE_HDR_SIZE == size_of::<b::vhost_memory>());
const _: () = assert!(uapi::MEM_REGION_SIZE == size_of::<b::vhost_memory_region>());
// A table of the most regions fits one message.
const _: () = assert!(
    uapi::MEM_TABLE_HDR_SIZE + uapi::MAX_MEM_REGIONS * uapi::MEM_REGION_SIZE <= uapi::MAX_PAYLOAD
);

// Virtio status bits and the features the model requires.
const _: () = assert!(status::ACKNOWLEDGE as u32 == b::VIRTIO_CONFIG_S_ACKNOWLEDGE);
const _: () = assert!(status::DRIVER as u32 == b::VIRTIO_CONFIG_S_DRIVER);
const _: () = assert!(status::DRIVER_OK as u32 == b::VIRTIO_CONFIG_S_DRIVER_OK);
const _: () = assert!(status::FEATURES_OK as u32 == b::VIRTIO_CONFIG_S_FEATURES_OK);
const _: () = assert!(status::NEEDS_RESET as u32 == b::VIRTIO_CONFIG_S_NEEDS_RESET);
const _: () = assert!(status::FAILED as u32 == b::VIRTIO_CONFIG_S_FAILED);
const _: () = assert!(uapi::VIRTIO_F_VERSION_1_BIT == b::VIRTIO_F_VERSION_1);
const _: () = assert!(uapi::VIRTIO_F_ACCESS_PLATFORM_BIT == b::VIRTIO_F_ACCESS_PLATFORM);
const _: () = assert!(uapi::VIRTIO_F_RING_PACKED_BIT == b::VIRTIO_F_RING_PACKED);
// Dirty logging (`<linux/vhost_types.h>`).
const _: () = assert!(uapi::VHOST_F_LOG_ALL_BIT == b::VHOST_F_LOG_ALL);
const _: () = assert!(uapi::VHOST_VRING_F_LOG == 1 << b::VHOST_VRING_F_LOG);

// The request codes, which bindgen sees through `VHOST_MDEV_CONST_*`
// constants (Kbuild strips the prefix).
const _: () = assert!(req::GET_FEATURES == b::VHOST_GET_FEATURES);
const _: () = assert!(req::SET_FEATURES == b::VHOST_SET_FEATURES);
const _: () = assert!(req::SET_OWNER == b::VHOST_SET_OWNER);
const _: () = assert!(req::SET_MEM_TABLE == b::VHOST_SET_MEM_TABLE);
const _: () = assert!(req::SET_LOG_BASE == b::VHOST_SET_LOG_BASE);
const _: () = assert!(req::SET_VRING_NUM == b::VHOST_SET_VRING_NUM);
const _: () = assert!(req::SET_VRING_ADDR == b::VHOST_SET_VRING_ADDR);
const _: () = assert!(req::SET_VRING_BASE == b::VHOST_SET_VRING_BASE);
const _: () = assert!(req::GET_VRING_BASE == b::VHOST_GET_VRING_BASE);
const _: () = assert!(req::GET_DEVICE_ID == b::VHOST_VDPA_GET_DEVICE_ID);
const _: () = assert!(req::GET_STATUS == b::VHOST_VDPA_GET_STATUS);
const _: () = assert!(req::SET_STATUS == b::VHOST_VDPA_SET_STATUS);
const _: () = assert!(req::GET_CONFIG == b::VHOST_VDPA_GET_CONFIG);
const _: () = assert!(req::SET_CONFIG == b::VHOST_VDPA_SET_CONFIG);
const _: () = assert!(req::SET_VRING_ENABLE == b::VHOST_VDPA_SET_VRING_ENABLE);
const _: () = assert!(req::GET_VRING_NUM == b::VHOST_VDPA_GET_VRING_NUM);
const _: () = assert!(req::GET_CONFIG_SIZE == b::VHOST_VDPA_GET_CONFIG_SIZE);
const _: () = assert!(req::GET_VQS_COUNT == b::VHOST_VDPA_GET_VQS_COUNT);
const _: () = assert!(req::SUSPEND == b::VHOST_VDPA_SUSPEND);
const _: () = assert!(req::RESUME == b::VHOST_VDPA_RESUME);
const _: () = assert!(req::SET_VRING_HVA == b::VHOST_VFIO_SET_VRING_HVA);
