// SPDX-License-Identifier: GPL-2.0 OR MIT
//! virtio-net helpers: the 12-byte `virtio_net_hdr_v1`, the config space,
//! and self-checking test frames.

use std::fmt;

use virtio_bindings::virtio_net;

use crate::error::{Error, Result};
use crate::uapi::VIRTIO_NET_S_LINK_UP;

/// Size of `struct virtio_net_hdr_v1` (with `num_buffers`).
pub const NET_HDR_LEN: usize = std::mem::size_of::<virtio_net::virtio_net_hdr_v1>();
/// Smallest Ethernet frame without FCS.
pub const FRAME_MIN: usize = 60;
/// Largest Ethernet frame without FCS at MTU 1500.
pub const FRAME_MAX: usize = 1514;
/// EtherType of test frames (IEEE 802 local experimental 1).
pub const ETHERTYPE_TEST: u16 = 0x88b5;
/// Magic after the Ethernet header of test frames.
pub const FRAME_MAGIC: &[u8; 4] = b"VMDV";
/// Bytes of a test frame before the pattern: Ethernet header (14), magic
/// (4), sequence number (8), length (2).
const FRAME_FIXED: usize = 14 + 4 + 8 + 2;
/// Size of the trailing checksum.
const FRAME_CSUM: usize = 4;

/// `struct virtio_net_hdr_v1` (all fields little-endian on the wire).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VirtioNetHdr {
    /// `VIRTIO_NET_HDR_F_*`.
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*`.
    pub gso_type: u8,
    /// Header length.
    pub hdr_len: u16,
    /// GSO segment size.
    pub gso_size: u16,
    /// Checksum start.
    pub csum_start: u16,
    /// Checksum offset.
    pub csum_offset: u16,
    /// Buffers used for this packet (mergeable RX buffers).
    pub num_buffers: u16,
}

impl VirtioNetHdr {
    /// The 12 wire bytes.
    pub fn to_bytes(&self) -> [u8; NET_HDR_LEN] {
        let mut b = [0u8; NET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b[10..12].copy_from_slice(&self.num_buffers.to_le_bytes());
        b
    }

    /// Parses the first 12 bytes of `b`.
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        if b.len() < NET_HDR_LEN {
            return Err(Error::Protocol(format!(
                "virtio-net header of {} bytes",
                b.len()
            )));
        }
        let u = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Ok(VirtioNetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
            num_buffers: u(10),
        })
    }
}

/// A MAC address.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// `struct virtio_net_config` (the fields up to `mtu`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetConfig {
    /// `mac`.
    pub mac: Mac,
    /// `status` (`VIRTIO_NET_S_LINK_UP`, ...).
    pub status: u16,
    /// `max_virtqueue_pairs`.
    pub max_virtqueue_pairs: u16,
    /// `mtu`.
    pub mtu: u16,
}

/// Bytes of `virtio_net_config` up to and including `mtu`.
pub const NET_CONFIG_LEN: usize = std::mem::offset_of!(virtio_net::virtio_net_config, speed);

impl NetConfig {
    /// Parses a config space read from offset 0 (fields beyond `b` are 0).
    pub fn parse(b: &[u8]) -> Result<Self> {
        if b.len() < 6 {
            return Err(Error::Protocol(format!(
                "virtio-net config of {} bytes has no MAC",
                b.len()
            )));
        }
        let u = |i: usize| {
            b.get(i..i + 2)
                .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
        };
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&b[..6]);
        Ok(NetConfig {
            mac: Mac(mac),
            status: u(6),
            max_virtqueue_pairs: u(8),
            mtu: u(10),
        })
    }

    /// Whether `VIRTIO_NET_S_LINK_UP` is set.
    pub fn link_up(&self) -> bool {
        self.status & VIRTIO_NET_S_LINK_UP != 0
    }
}

/// FNV-1a, 32 bits: the checksum of test frames.
pub fn fnv1a(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// Builds a test frame of `len` bytes (60..=1514 is valid Ethernet):
/// destination `dst` (the device MAC, so loopbacks accept it), source
/// `src`, [`ETHERTYPE_TEST`], magic, `seq`, the length, a pattern derived
/// from `seq`, and an FNV-1a checksum of everything after the Ethernet
/// header.
pub fn build_frame(dst: Mac, src: Mac, seq: u64, len: usize) -> Result<Vec<u8>> {
    if len < FRAME_FIXED + FRAME_CSUM || len > u16::MAX as usize {
        return Err(Error::InvalidArgument(format!(
            "frame length {len} outside {}..=65535",
            FRAME_FIXED + FRAME_CSUM
        )));
    }
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&ETHERTYPE_TEST.to_be_bytes());
    f.extend_from_slice(FRAME_MAGIC);
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&(len as u16).to_be_bytes());
    let mut x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while f.len() < len - FRAME_CSUM {
        // xorshift64: cheap, seq-dependent pattern.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        f.push(x as u8);
    }
    let csum = fnv1a(&f[14..]);
    f.extend_from_slice(&csum.to_be_bytes());
    Ok(f)
}

/// Checks a received test frame on its own (magic, length, checksum) and
/// returns its sequence number.
pub fn check_frame(f: &[u8]) -> Result<u64> {
    if f.len() < FRAME_FIXED + FRAME_CSUM {
        return Err(Error::Protocol(format!(
            "frame of {} bytes is too short",
            f.len()
        )));
    }
    if u16::from_be_bytes([f[12], f[13]]) != ETHERTYPE_TEST || &f[14..18] != FRAME_MAGIC {
        return Err(Error::Protocol(
            "not a test frame (ethertype or magic)".into(),
        ));
    }
    let seq = u64::from_be_bytes(f[18..26].try_into().unwrap_or_default());
    let len = usize::from(u16::from_be_bytes([f[26], f[27]]));
    if len != f.len() {
        return Err(Error::Protocol(format!(
            "frame {seq}: {} bytes, header says {len}",
            f.len()
        )));
    }
    let (body, tail) = f.split_at(f.len() - FRAME_CSUM);
    let want = u32::from_be_bytes(tail.try_into().unwrap_or_default());
    if fnv1a(&body[14..]) != want {
        return Err(Error::Protocol(format!("frame {seq}: checksum mismatch")));
    }
    Ok(seq)
}

/// Compares a received frame with the one sent, byte for byte.
pub fn verify_frame(sent: &[u8], got: &[u8]) -> Result<()> {
    if sent == got {
        return Ok(());
    }
    let at = sent
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(sent.len().min(got.len()));
    Err(Error::Protocol(format!(
        "frame differs: sent {} bytes, received {}, first difference at byte {at}",
        sent.len(),
        got.len()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: Mac = Mac([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    const SRC: Mac = Mac([0x02, 0, 0, 0, 0, 1]);

    #[test]
    fn header_round_trip() {
        let h = VirtioNetHdr {
            num_buffers: 1,
            csum_start: 0x0102,
            ..Default::default()
        };
        let b = h.to_bytes();
        assert_eq!(b[10..12], [1, 0]);
        assert_eq!(b[6..8], [2, 1]);
        assert_eq!(VirtioNetHdr::from_bytes(&b).unwrap(), h);
        assert!(VirtioNetHdr::from_bytes(&b[..10]).is_err());
    }

    #[test]
    fn config_parse() {
        let raw = [0x52, 0x54, 0, 0x12, 0x34, 0x56, 1, 0, 1, 0, 0xdc, 0x05];
        let c = NetConfig::parse(&raw).unwrap();
        assert_eq!(c.mac, DEV);
        assert_eq!(c.mac.to_string(), "52:54:00:12:34:56");
        assert!(c.link_up());
        assert_eq!(c.max_virtqueue_pairs, 1);
        assert_eq!(c.mtu, 1500);
        assert_eq!(NetConfig::parse(&raw[..8]).unwrap().mtu, 0);
        assert!(NetConfig::parse(&raw[..4]).is_err());
    }

    #[test]
    fn frames_check_and_verify() {
        for (seq, len) in [(0u64, 60usize), (1, 61), (7, 1000), (u64::MAX, 1514)] {
            let f = build_frame(DEV, SRC, seq, len).unwrap();
            assert_eq!(f.len(), len);
            assert_eq!(&f[..6], &DEV.0);
            assert_eq!(check_frame(&f).unwrap(), seq);
            verify_frame(&f, &f.clone()).unwrap();
            let mut bad = f.clone();
            bad[40] ^= 1;
            assert!(check_frame(&bad).is_err());
            let e = verify_frame(&f, &bad).unwrap_err().to_string();
            assert!(e.contains("byte 40"), "{e}");
            assert!(verify_frame(&f, &f[..len - 1]).is_err());
        }
        // Different sequence numbers give different payloads.
        assert_ne!(
            build_frame(DEV, SRC, 1, 100).unwrap()[28..],
            build_frame(DEV, SRC, 2, 100).unwrap()[28..]
        );
        assert!(build_frame(DEV, SRC, 0, 20).is_err());
    }
}
