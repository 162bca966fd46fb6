// SPDX-License-Identifier: GPL-2.0

//! The constants and argument types of the uAPI headers the modules speak,
//! from bindgen's view of them, so that they have one source: the
//! vhost-over-VFIO header, and the vhost and virtio ones it builds on.
//!
//! C headers: [`include/uapi/linux/vhost_mdev.h`](../include/uapi/linux/vhost_mdev.h),
//! [`include/uapi/linux/vhost.h`](srctree/include/uapi/linux/vhost.h),
//! [`include/uapi/linux/virtio_config.h`](srctree/include/uapi/linux/virtio_config.h).

/// `include/uapi/linux/vhost_mdev.h`.
pub use crate::bindings::{
    vhost_vfio_op, VHOST_VFIO_IRQ_CONFIG, VHOST_VFIO_IRQ_REQ, VHOST_VFIO_IRQ_VQ,
    VHOST_VFIO_MAX_PAYLOAD, VHOST_VFIO_MSG_REGION_SIZE, VHOST_VFIO_NEED_REPLY, VHOST_VFIO_NUM_IRQS,
    VHOST_VFIO_NUM_REGIONS, VHOST_VFIO_OP_HDR_SIZE, VHOST_VFIO_REGION_MSG,
    VHOST_VFIO_REGION_NOTIFY, VHOST_VFIO_REGION_SHIFT, VHOST_VFIO_SET_VRING_HVA,
};

/// `include/uapi/linux/vhost.h` and `vhost_types.h`: the request codes
/// (seen through `VHOST_MDEV_CONST_*` in `rust/bindings_helper.h`) and
/// argument structs.
pub use crate::bindings::{
    vhost_memory, vhost_memory_region, vhost_vdpa_config, vhost_vring_addr, vhost_vring_state,
    VHOST_F_LOG_ALL, VHOST_GET_FEATURES, VHOST_GET_VRING_BASE, VHOST_SET_FEATURES,
    VHOST_SET_LOG_BASE, VHOST_SET_MEM_TABLE, VHOST_SET_OWNER, VHOST_SET_VRING_ADDR,
    VHOST_SET_VRING_BASE, VHOST_SET_VRING_NUM, VHOST_VDPA_GET_CONFIG, VHOST_VDPA_GET_CONFIG_SIZE,
    VHOST_VDPA_GET_DEVICE_ID, VHOST_VDPA_GET_STATUS, VHOST_VDPA_GET_VQS_COUNT,
    VHOST_VDPA_GET_VRING_NUM, VHOST_VDPA_RESUME, VHOST_VDPA_SET_CONFIG, VHOST_VDPA_SET_STATUS,
    VHOST_VDPA_SET_VRING_ENABLE, VHOST_VDPA_SUSPEND, VHOST_VRING_F_LOG,
};

/// `include/uapi/linux/virtio_config.h`: status bits and transport
/// feature bits.
pub use crate::bindings::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FAILED, VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET,
    VIRTIO_F_ACCESS_PLATFORM, VIRTIO_F_RING_PACKED, VIRTIO_F_VERSION_1,
};
