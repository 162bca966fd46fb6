// SPDX-License-Identifier: GPL-2.0 OR MIT

//! The sample parents' virtio-net loopback and virtio-blk request logic,
//! compiled for the host so that `cargo test` can feed them arbitrary
//! input. The sources are the modules' own files, not copies; the walker it runs on is the `vhost-mdev-proto` crate
//! (whose own tests cover the protocol model).

pub use vhost_mdev_proto::{packed, proto, ring, vring};

/// The id table of a packed ring of the loopback: its storage is the
/// including crate's choice (the module's is a `KVec` on the heap).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ids(pub Vec<u16>);

impl Ids {
    /// A table for rings of up to `n` entries.
    pub fn new(n: usize) -> Self {
        Ids(vec![0; n])
    }
}

impl AsMut<[u16]> for Ids {
    fn as_mut(&mut self) -> &mut [u16] {
        &mut self.0
    }
}

impl ring::IdTable for Ids {
    const EMPTY: Self = Ids(Vec::new());
}

#[path = "../../../samples/vhost_mdev_net/virtq.rs"]
pub mod virtq;

// The constants the loopback and the walker share with virtio, checked
// against the kernel's headers (as `virtio-bindings` reads them), as the
// module checks them against its bindgen output (rust/virtio.rs and the
// sample).
use core::mem::size_of;
use virtio_bindings::virtio_net::virtio_net_hdr_v1;
use virtio_bindings::virtio_ring as vr;

const _: () = assert!(virtq::NET_HDR_LEN == size_of::<virtio_net_hdr_v1>());
const _: () = assert!(vring::VRING_DESC_F_NEXT as u32 == vr::VRING_DESC_F_NEXT);
const _: () = assert!(vring::VRING_DESC_F_WRITE as u32 == vr::VRING_DESC_F_WRITE);
const _: () = assert!(vring::VRING_DESC_F_INDIRECT as u32 == vr::VRING_DESC_F_INDIRECT);
const _: () = assert!(vring::VRING_AVAIL_F_NO_INTERRUPT as u32 == vr::VRING_AVAIL_F_NO_INTERRUPT);
const _: () = assert!(size_of::<vr::vring_desc>() == 16);

/// The blk sample's request logic, from the module's own file.
#[path = "../../../samples/vhost_mdev_blk/blk.rs"]
pub mod blk;

/// The virtio constants the blk sample takes from `rust/virtio.rs`
/// (bindgen's reading of the kernel's headers), here from
/// `virtio-bindings` (its reading of the same headers).
pub mod virtio {
    use virtio_bindings::virtio_blk as vb;

    pub const VIRTIO_BLK_T_IN: u32 = vb::VIRTIO_BLK_T_IN;
    pub const VIRTIO_BLK_T_OUT: u32 = vb::VIRTIO_BLK_T_OUT;
    pub const VIRTIO_BLK_T_FLUSH: u32 = vb::VIRTIO_BLK_T_FLUSH;
    pub const VIRTIO_BLK_T_GET_ID: u32 = vb::VIRTIO_BLK_T_GET_ID;
    pub const VIRTIO_BLK_S_OK: u8 = vb::VIRTIO_BLK_S_OK as u8;
    pub const VIRTIO_BLK_S_IOERR: u8 = vb::VIRTIO_BLK_S_IOERR as u8;
    pub const VIRTIO_BLK_S_UNSUPP: u8 = vb::VIRTIO_BLK_S_UNSUPP as u8;
    pub const VIRTIO_BLK_ID_BYTES: usize = vb::VIRTIO_BLK_ID_BYTES as usize;
}
