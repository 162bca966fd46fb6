// SPDX-License-Identifier: GPL-2.0

//! The sample's virtio constants are the kernel's: each is checked at
//! compile time against bindgen's reading of `<linux/virtio_net.h>`,
//! `<linux/virtio_ring.h>`, `<linux/virtio_config.h>` and
//! `<linux/virtio_ids.h>`, so that a feature bit typed wrong fails the
//! build.

use crate::bindings as b;

const _: () = assert!(crate::VIRTIO_ID_NET == b::VIRTIO_ID_NET);
const _: () = assert!(crate::VIRTIO_NET_F_MTU == 1 << b::VIRTIO_NET_F_MTU);
const _: () = assert!(crate::VIRTIO_NET_F_MAC == 1 << b::VIRTIO_NET_F_MAC);
const _: () = assert!(crate::VIRTIO_NET_F_MRG_RXBUF == 1 << b::VIRTIO_NET_F_MRG_RXBUF);
const _: () = assert!(crate::VIRTIO_NET_F_STATUS == 1 << b::VIRTIO_NET_F_STATUS);
const _: () = assert!(crate::VIRTIO_RING_F_INDIRECT_DESC == 1 << b::VIRTIO_RING_F_INDIRECT_DESC);
const _: () = assert!(crate::VIRTIO_RING_F_EVENT_IDX == 1 << b::VIRTIO_RING_F_EVENT_IDX);
const _: () = assert!(crate::VIRTIO_F_VERSION_1 == 1 << b::VIRTIO_F_VERSION_1);
const _: () = assert!(crate::VIRTIO_F_ACCESS_PLATFORM == 1 << b::VIRTIO_F_ACCESS_PLATFORM);
const _: () = assert!(crate::VIRTIO_NET_S_LINK_UP as u32 == b::VIRTIO_NET_S_LINK_UP);
