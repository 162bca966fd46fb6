// SPDX-License-Identifier: GPL-2.0 OR MIT

//! The sample parent's virtio-net loopback, compiled for the host so that
//! `cargo test` can feed it arbitrary input. The source is the module's own
//! file, not a copy; the walker it runs on is the `vhost-mdev-proto` crate
//! (whose own tests cover the protocol model).

pub use vhost_mdev_proto::{proto, vring};

/// What the module gets from bindgen, here from `virtio-bindings`.
pub mod bindings {
    pub use virtio_bindings::virtio_net::virtio_net_hdr_v1;
    pub use virtio_bindings::virtio_ring::{
        vring_desc, VRING_AVAIL_F_NO_INTERRUPT, VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT,
        VRING_DESC_F_WRITE,
    };
}

#[path = "../../../samples/vhost_mdev_net/virtq.rs"]
pub mod virtq;

/// The blk sample's request logic, from the module's own file.
#[path = "../../../samples/vhost_mdev_blk/blk.rs"]
pub mod blk;
