// SPDX-License-Identifier: GPL-2.0 OR MIT

//! The crate's virtio constants are virtio's (`virtio-bindings`, generated
//! from the Linux uAPI headers). The kernel modules check the same values
//! against their own bindgen output at compile time.

use vhost_mdev_proto::{packed, uapi, vring};
use virtio_bindings::{virtio_config as cfg, virtio_ring as ring};

#[test]
fn ring_constants_are_virtio_s() {
    assert_eq!(u32::from(vring::VRING_DESC_F_NEXT), ring::VRING_DESC_F_NEXT);
    assert_eq!(
        u32::from(vring::VRING_DESC_F_WRITE),
        ring::VRING_DESC_F_WRITE
    );
    assert_eq!(
        u32::from(vring::VRING_DESC_F_INDIRECT),
        ring::VRING_DESC_F_INDIRECT
    );
    assert_eq!(
        u32::from(vring::VRING_AVAIL_F_NO_INTERRUPT),
        ring::VRING_AVAIL_F_NO_INTERRUPT
    );
    assert_eq!(std::mem::size_of::<ring::vring_desc>(), 16);
}

#[test]
fn packed_ring_constants_are_virtio_s() {
    use packed::*;
    for (ours, theirs) in [
        (PACKED_DESC_F_NEXT, ring::VRING_DESC_F_NEXT),
        (PACKED_DESC_F_WRITE, ring::VRING_DESC_F_WRITE),
        (PACKED_DESC_F_INDIRECT, ring::VRING_DESC_F_INDIRECT),
        (PACKED_DESC_F_AVAIL, 1 << ring::VRING_PACKED_DESC_F_AVAIL),
        (PACKED_DESC_F_USED, 1 << ring::VRING_PACKED_DESC_F_USED),
        (
            PACKED_EVENT_FLAG_ENABLE,
            ring::VRING_PACKED_EVENT_FLAG_ENABLE,
        ),
        (
            PACKED_EVENT_FLAG_DISABLE,
            ring::VRING_PACKED_EVENT_FLAG_DISABLE,
        ),
        (PACKED_EVENT_FLAG_DESC, ring::VRING_PACKED_EVENT_FLAG_DESC),
        (PACKED_EVENT_F_WRAP_CTR, ring::VRING_PACKED_EVENT_F_WRAP_CTR),
    ] {
        assert_eq!(u32::from(ours), theirs);
    }
    assert_eq!(std::mem::size_of::<ring::vring_packed_desc>(), 16);
    assert_eq!(std::mem::offset_of!(ring::vring_packed_desc, len), 8);
    assert_eq!(std::mem::offset_of!(ring::vring_packed_desc, id), 12);
    assert_eq!(std::mem::offset_of!(ring::vring_packed_desc, flags), 14);
    assert_eq!(std::mem::size_of::<ring::vring_packed_desc_event>(), 4);
}

#[test]
fn status_and_feature_bits_are_virtio_s() {
    use uapi::status::*;
    for (ours, theirs) in [
        (ACKNOWLEDGE, cfg::VIRTIO_CONFIG_S_ACKNOWLEDGE),
        (DRIVER, cfg::VIRTIO_CONFIG_S_DRIVER),
        (DRIVER_OK, cfg::VIRTIO_CONFIG_S_DRIVER_OK),
        (FEATURES_OK, cfg::VIRTIO_CONFIG_S_FEATURES_OK),
        (NEEDS_RESET, cfg::VIRTIO_CONFIG_S_NEEDS_RESET),
        (FAILED, cfg::VIRTIO_CONFIG_S_FAILED),
    ] {
        assert_eq!(u32::from(ours), theirs);
    }
    assert_eq!(uapi::VIRTIO_F_VERSION_1_BIT, cfg::VIRTIO_F_VERSION_1);
    assert_eq!(
        uapi::VIRTIO_F_ACCESS_PLATFORM_BIT,
        cfg::VIRTIO_F_ACCESS_PLATFORM
    );
    assert_eq!(uapi::VIRTIO_F_RING_PACKED_BIT, cfg::VIRTIO_F_RING_PACKED);
}
