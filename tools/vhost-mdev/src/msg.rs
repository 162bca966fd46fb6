// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Encoding and decoding of `struct vhost_vfio_op` messages (region 0).
//!
//! A request is a 16-byte header (`u64 request`, `u32 flags`, `u32 size`)
//! followed by `size` payload bytes laid out as the vhost-vdpa ioctl
//! argument; a reply has the same header with the request echoed. All
//! values are host-endian.
//!
//! The wire format is that of the `vhost-mdev-proto` crate, whose source
//! files the kernel module compiles: requests are encoded, and messages
//! parsed and decoded, by the same code on both sides.

use vhost_mdev_proto::proto::{self, MemTable, VringAddr};

use crate::error::{Error, Result};
use crate::uapi::*;

/// Size of the message header.
pub const HDR_SIZE: usize = proto::HDR_SIZE;
/// Largest message (header and payload).
pub const MAX_MSG: usize = proto::MSG_REGION_SIZE;

/// The header of a request or reply (`struct vhost_vfio_op` without its
/// payload): `encode` gives its 16 bytes, `decode` parses the first 16
/// bytes of a message.
pub type OpHeader = proto::Header;

fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[..N]);
    a
}

/// Encodes a raw message: header with `payload.len()` as size, then payload.
pub fn encode_raw(request: u64, flags: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HDR_SIZE + payload.len());
    v.extend_from_slice(
        &OpHeader {
            request,
            flags,
            size: payload.len() as u32,
        }
        .encode(),
    );
    v.extend_from_slice(payload);
    v
}

/// Serialises a `vhost_vring_state`.
pub fn vring_state_bytes(s: &VhostVringState) -> Vec<u8> {
    Request::SetVringNum(*s).payload()
}

/// Parses a `vhost_vring_state`.
pub fn vring_state_from(b: &[u8]) -> Result<VhostVringState> {
    expect_len("vhost_vring_state", b, 8)?;
    Ok(VhostVringState {
        index: u32::from_ne_bytes(arr(&b[0..4])),
        num: u32::from_ne_bytes(arr(&b[4..8])),
    })
}

/// Serialises a `vhost_vring_addr`.
pub fn vring_addr_bytes(a: &VhostVringAddr) -> Vec<u8> {
    Request::SetVringAddr(*a).payload()
}

fn expect_len(what: &str, b: &[u8], len: usize) -> Result<()> {
    if b.len() != len {
        return Err(Error::Protocol(format!(
            "{what}: {} bytes, expected {len}",
            b.len()
        )));
    }
    Ok(())
}

fn to_proto_addr(a: &VhostVringAddr) -> VringAddr {
    VringAddr {
        index: a.index,
        flags: a.flags,
        desc: a.desc_user_addr,
        used: a.used_user_addr,
        avail: a.avail_user_addr,
        log: a.log_guest_addr,
    }
}

fn from_proto_addr(a: &VringAddr) -> VhostVringAddr {
    VhostVringAddr {
        index: a.index,
        flags: a.flags,
        desc_user_addr: a.desc,
        used_user_addr: a.used,
        avail_user_addr: a.avail,
        log_guest_addr: a.log,
    }
}

/// A typed vhost request of the message table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `VHOST_GET_FEATURES`.
    GetFeatures,
    /// `VHOST_SET_FEATURES`.
    SetFeatures(u64),
    /// `VHOST_SET_OWNER`.
    SetOwner,
    /// `VHOST_SET_MEM_TABLE`: the regions the driver's DMA may reach
    /// (`guest_phys_addr` is the IOVA). Encoded as it is, valid or not.
    SetMemTable(Vec<MemRegion>),
    /// `VHOST_SET_LOG_BASE`: the user address of the dirty log in the
    /// sender's address space (0: none).
    SetLogBase(u64),
    /// `VHOST_VDPA_GET_DEVICE_ID`.
    GetDeviceId,
    /// `VHOST_VDPA_GET_STATUS`.
    GetStatus,
    /// `VHOST_VDPA_SET_STATUS`.
    SetStatus(u8),
    /// `VHOST_VDPA_GET_CONFIG_SIZE`.
    GetConfigSize,
    /// `VHOST_VDPA_GET_CONFIG` of `len` bytes at `off`.
    GetConfig {
        /// Offset into the config space.
        off: u32,
        /// Bytes to read.
        len: u32,
    },
    /// `VHOST_VDPA_SET_CONFIG` of `data` at `off`.
    SetConfig {
        /// Offset into the config space.
        off: u32,
        /// Bytes to write.
        data: Vec<u8>,
    },
    /// `VHOST_VDPA_GET_VRING_NUM`.
    GetVringNum,
    /// `VHOST_VDPA_GET_VQS_COUNT`.
    GetVqsCount,
    /// `VHOST_SET_VRING_NUM`.
    SetVringNum(VhostVringState),
    /// `VHOST_SET_VRING_ADDR`.
    SetVringAddr(VhostVringAddr),
    /// `VHOST_VFIO_SET_VRING_HVA`: the same rings, at the addresses where
    /// the sending process sees them.
    SetVringHva(VhostVringAddr),
    /// `VHOST_SET_VRING_BASE`.
    SetVringBase(VhostVringState),
    /// `VHOST_GET_VRING_BASE` of a queue.
    GetVringBase(u32),
    /// `VHOST_VDPA_SET_VRING_ENABLE`.
    SetVringEnable(VhostVringState),
    /// `VHOST_VDPA_SUSPEND`.
    Suspend,
    /// `VHOST_VDPA_RESUME`.
    Resume,
}

impl Request {
    /// The request as `vhost-mdev-proto` sees it (borrowing its data).
    pub fn as_proto(&self) -> proto::Request<'_> {
        use proto::Request as P;
        match self {
            Request::GetFeatures => P::GetFeatures,
            Request::SetFeatures(f) => P::SetFeatures(*f),
            Request::SetOwner => P::SetOwner,
            Request::SetMemTable(r) => P::SetMemTable(MemTable::Regions(r)),
            Request::SetLogBase(b) => P::SetLogBase(*b),
            Request::GetDeviceId => P::GetDeviceId,
            Request::GetStatus => P::GetStatus,
            Request::SetStatus(s) => P::SetStatus(*s),
            Request::GetConfigSize => P::GetConfigSize,
            Request::GetConfig { off, len } => P::GetConfig {
                off: *off,
                len: *len,
            },
            Request::SetConfig { off, data } => P::SetConfig { off: *off, data },
            Request::GetVringNum => P::GetVringNum,
            Request::GetVqsCount => P::GetVqsCount,
            Request::SetVringNum(s) => P::SetVringNum {
                index: s.index,
                num: s.num,
            },
            Request::SetVringAddr(a) => P::SetVringAddr(to_proto_addr(a)),
            Request::SetVringHva(a) => P::SetVringHva(to_proto_addr(a)),
            Request::SetVringBase(s) => P::SetVringBase {
                index: s.index,
                num: s.num,
            },
            Request::GetVringBase(index) => P::GetVringBase { index: *index },
            Request::SetVringEnable(s) => P::SetVringEnable {
                index: s.index,
                num: s.num,
            },
            Request::Suspend => P::Suspend,
            Request::Resume => P::Resume,
        }
    }

    /// The owned request of a decoded one.
    pub fn from_proto(r: &proto::Request<'_>) -> Self {
        use proto::Request as P;
        let st = |index, num| VhostVringState { index, num };
        match *r {
            P::GetFeatures => Request::GetFeatures,
            P::SetFeatures(f) => Request::SetFeatures(f),
            P::SetOwner => Request::SetOwner,
            P::SetMemTable(t) => Request::SetMemTable(t.regions().collect()),
            P::SetLogBase(b) => Request::SetLogBase(b),
            P::GetDeviceId => Request::GetDeviceId,
            P::GetStatus => Request::GetStatus,
            P::SetStatus(s) => Request::SetStatus(s),
            P::GetConfigSize => Request::GetConfigSize,
            P::GetConfig { off, len } => Request::GetConfig { off, len },
            P::SetConfig { off, data } => Request::SetConfig {
                off,
                data: data.to_vec(),
            },
            P::GetVringNum => Request::GetVringNum,
            P::GetVqsCount => Request::GetVqsCount,
            P::SetVringNum { index, num } => Request::SetVringNum(st(index, num)),
            P::SetVringBase { index, num } => Request::SetVringBase(st(index, num)),
            P::SetVringAddr(a) => Request::SetVringAddr(from_proto_addr(&a)),
            P::SetVringHva(a) => Request::SetVringHva(from_proto_addr(&a)),
            P::GetVringBase { index } => Request::GetVringBase(index),
            P::SetVringEnable { index, num } => Request::SetVringEnable(st(index, num)),
            P::Suspend => Request::Suspend,
            P::Resume => Request::Resume,
        }
    }

    /// The request code (the full ioctl number of `<linux/vhost.h>`).
    pub fn code(&self) -> u64 {
        self.as_proto().code().into()
    }

    /// The request's name, e.g. `VHOST_SET_VRING_NUM`.
    pub fn name(&self) -> &'static str {
        self.as_proto().name()
    }

    /// The payload bytes.
    pub fn payload(&self) -> Vec<u8> {
        let r = self.as_proto();
        let mut v = vec![0u8; r.payload_len()];
        // SET_CONFIG data longer than a u32 counts: its length is cut, as
        // the device would see it.
        if r.encode_payload(&mut v).is_err() {
            if let Request::SetConfig { off, data } = self {
                v[0..4].copy_from_slice(&off.to_ne_bytes());
                v[4..8].copy_from_slice(&(data.len() as u32).to_ne_bytes());
                v[8..].copy_from_slice(data);
            }
        }
        v
    }

    /// Payload size of the reply, or `None` for a request without reply.
    pub fn reply_size(&self) -> Option<usize> {
        let r = self.as_proto();
        r.has_reply().then(|| r.reply_len())
    }

    /// The header flags: `VHOST_VFIO_NEED_REPLY` for requests with a reply.
    pub fn flags(&self) -> u32 {
        if self.reply_size().is_some() {
            VHOST_VFIO_NEED_REPLY
        } else {
            0
        }
    }

    /// The whole message (header and payload). A message larger than the
    /// region is encoded all the same (the device refuses it).
    pub fn encode(&self) -> Vec<u8> {
        let r = self.as_proto();
        let mut v = vec![0u8; HDR_SIZE + r.payload_len()];
        match r.encode(&mut v) {
            Ok(_) => v,
            Err(_) => encode_raw(self.code(), self.flags(), &self.payload()),
        }
    }

    /// Parses and decodes a message as the device does.
    pub fn decode(msg: &[u8]) -> Result<Self> {
        let bad = |what: &str, e: i32| {
            Error::Protocol(format!(
                "{what} (errno {e}): {}",
                std::io::Error::from_raw_os_error(e)
            ))
        };
        let (h, p) =
            proto::parse_message(msg).map_err(|e| bad("not a vhost_vfio_op message", e))?;
        let r = proto::decode(h.request, p).map_err(|e| {
            let name = request_name(h.request).unwrap_or("unknown request");
            bad(&format!("{name} {:#x}", h.request), e)
        })?;
        Ok(Request::from_proto(&r))
    }
}

/// Payload size of the reply to `request` with `payload`, or `None` if the
/// request has no reply (or is unknown).
pub fn reply_size(request: u64, payload: &[u8]) -> Option<usize> {
    proto::reply_size(u32::try_from(request).ok()?, payload)
}

/// The 8-byte header of `struct vhost_vdpa_config`.
fn config_header(off: u32, len: u32) -> Vec<u8> {
    Request::GetConfig { off, len }.payload()
}

/// A decoded reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Requests without reply.
    None,
    /// `VHOST_GET_FEATURES`.
    U64(u64),
    /// `GET_DEVICE_ID`, `GET_CONFIG_SIZE`, `GET_VQS_COUNT`.
    U32(u32),
    /// `GET_VRING_NUM`.
    U16(u16),
    /// `GET_STATUS`.
    U8(u8),
    /// `GET_CONFIG`: the echoed header and the data.
    Config {
        /// Offset echoed by the device.
        off: u32,
        /// The config bytes.
        data: Vec<u8>,
    },
    /// `GET_VRING_BASE`.
    VringState(VhostVringState),
}

impl Reply {
    /// Decodes the reply payload to `req` (without the header).
    pub fn decode(req: &Request, p: &[u8]) -> Result<Self> {
        let want = req.reply_size();
        if want.unwrap_or(0) != p.len() {
            return Err(Error::Protocol(format!(
                "{}: reply of {} bytes, expected {}",
                req.name(),
                p.len(),
                want.unwrap_or(0)
            )));
        }
        Ok(match req {
            Request::GetFeatures => Reply::U64(u64::from_ne_bytes(arr(p))),
            Request::GetDeviceId | Request::GetConfigSize | Request::GetVqsCount => {
                Reply::U32(u32::from_ne_bytes(arr(p)))
            }
            Request::GetStatus => Reply::U8(p[0]),
            Request::GetVringNum => Reply::U16(u16::from_ne_bytes(arr(p))),
            Request::GetVringBase(_) => Reply::VringState(vring_state_from(p)?),
            Request::GetConfig { off, len } => {
                let hoff = u32::from_ne_bytes(arr(&p[0..4]));
                let hlen = u32::from_ne_bytes(arr(&p[4..8]));
                if hoff != *off || hlen != *len {
                    return Err(Error::Protocol(format!(
                        "GET_CONFIG reply header {{off {hoff}, len {hlen}}} \
                         does not echo {{off {off}, len {len}}}"
                    )));
                }
                Reply::Config {
                    off: hoff,
                    data: p[8..].to_vec(),
                }
            }
            _ => Reply::None,
        })
    }

    /// The reply payload bytes.
    pub fn payload(&self) -> Vec<u8> {
        match self {
            Reply::None => Vec::new(),
            Reply::U64(v) => v.to_ne_bytes().to_vec(),
            Reply::U32(v) => v.to_ne_bytes().to_vec(),
            Reply::U16(v) => v.to_ne_bytes().to_vec(),
            Reply::U8(v) => vec![*v],
            Reply::Config { off, data } => {
                let mut v = config_header(*off, data.len() as u32);
                v.extend_from_slice(data);
                v
            }
            Reply::VringState(s) => vring_state_bytes(s),
        }
    }

    /// The whole reply message to `request` (header with the request echoed).
    pub fn encode(&self, request: u64) -> Vec<u8> {
        encode_raw(request, 0, &self.payload())
    }
}

/// Checks a reply message against the request it answers and returns its
/// payload.
pub fn check_reply(request: u64, want_size: usize, msg: &[u8]) -> Result<Vec<u8>> {
    let h = OpHeader::decode(msg).map_err(|_| {
        Error::Protocol(format!(
            "message of {} bytes is shorter than the header",
            msg.len()
        ))
    })?;
    let name = request_name(request).unwrap_or("request");
    if h.request != request {
        return Err(Error::Protocol(format!(
            "{name}: reply echoes request {:#x}",
            h.request
        )));
    }
    if h.size as usize != want_size || msg.len() != HDR_SIZE + want_size {
        return Err(Error::Protocol(format!(
            "{name}: reply size {} (read {} bytes), expected {want_size}",
            h.size,
            msg.len()
        )));
    }
    Ok(msg[HDR_SIZE..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_requests() -> Vec<Request> {
        let st = VhostVringState { index: 1, num: 256 };
        vec![
            Request::GetFeatures,
            Request::SetFeatures(0x3_0000_0020),
            Request::SetOwner,
            Request::SetMemTable(vec![]),
            Request::SetMemTable(vec![
                MemRegion::new(0, 0x8000_0000, 0x7f00_0000_0000),
                MemRegion::new(0x1_0000_0000, 0x4000_0000, 0x7f00_8000_0000),
            ]),
            Request::GetDeviceId,
            Request::GetStatus,
            Request::SetStatus(0xf),
            Request::GetConfigSize,
            Request::GetConfig { off: 6, len: 2 },
            Request::SetConfig {
                off: 0,
                data: vec![1, 2, 3, 4, 5, 6],
            },
            Request::GetVringNum,
            Request::GetVqsCount,
            Request::SetVringNum(st),
            Request::SetVringAddr(VhostVringAddr {
                index: 1,
                flags: 0,
                desc_user_addr: 0x1000,
                used_user_addr: 0x3000,
                avail_user_addr: 0x2000,
                log_guest_addr: 0,
            }),
            Request::SetVringHva(VhostVringAddr {
                index: 1,
                flags: 0,
                desc_user_addr: 0x7f00_0000_1000,
                used_user_addr: 0x7f00_0000_3000,
                avail_user_addr: 0x7f00_0000_2000,
                log_guest_addr: 0,
            }),
            Request::SetVringBase(st),
            Request::GetVringBase(1),
            Request::SetVringEnable(st),
            Request::Suspend,
            Request::Resume,
        ]
    }

    #[test]
    fn header_layout() {
        let h = OpHeader {
            request: VHOST_SET_VRING_NUM,
            flags: 0,
            size: 8,
        };
        let b = h.encode();
        assert_eq!(&b[0..8], &VHOST_SET_VRING_NUM.to_ne_bytes());
        assert_eq!(&b[12..16], &8u32.to_ne_bytes());
        assert_eq!(OpHeader::decode(&b).unwrap(), h);
        assert!(OpHeader::decode(&b[..15]).is_err());
    }

    #[test]
    fn requests_round_trip() {
        for r in all_requests() {
            let m = r.encode();
            assert!(m.len() <= MAX_MSG);
            let h = OpHeader::decode(&m).unwrap();
            assert_eq!(h.request, r.code());
            assert_eq!(h.size as usize, m.len() - HDR_SIZE);
            assert_eq!(h.flags != 0, r.reply_size().is_some(), "{}", r.name());
            assert_eq!(Request::decode(&m).unwrap(), r);
        }
    }

    #[test]
    fn payload_sizes_follow_the_table() {
        let sizes: Vec<(u64, usize, Option<usize>)> = all_requests()
            .iter()
            .map(|r| (r.code(), r.payload().len(), r.reply_size()))
            .collect();
        let get = |code| sizes.iter().find(|s| s.0 == code).copied().unwrap();
        assert_eq!(get(VHOST_GET_FEATURES), (VHOST_GET_FEATURES, 0, Some(8)));
        assert_eq!(get(VHOST_SET_FEATURES), (VHOST_SET_FEATURES, 8, None));
        assert_eq!(get(VHOST_VDPA_GET_STATUS).2, Some(1));
        assert_eq!(get(VHOST_VDPA_SET_STATUS).1, 1);
        assert_eq!(
            get(VHOST_VDPA_GET_CONFIG),
            (VHOST_VDPA_GET_CONFIG, 8, Some(10))
        );
        assert_eq!(get(VHOST_VDPA_SET_CONFIG).1, 14);
        assert_eq!(get(VHOST_VDPA_GET_VRING_NUM).2, Some(2));
        assert_eq!(get(VHOST_SET_VRING_ADDR).1, 40);
        assert_eq!(
            get(VHOST_GET_VRING_BASE),
            (VHOST_GET_VRING_BASE, 8, Some(8))
        );
        assert_eq!(get(VHOST_VDPA_SUSPEND), (VHOST_VDPA_SUSPEND, 0, None));
        // struct vhost_memory: 8 bytes of header, 32 per region (the
        // first table of the list is empty).
        assert_eq!(get(VHOST_SET_MEM_TABLE), (VHOST_SET_MEM_TABLE, 8, None));
        let two = Request::SetMemTable(vec![MemRegion::default(); 2]);
        assert_eq!(two.payload().len(), 8 + 2 * 32);
        assert_eq!(&two.payload()[0..8], &[2, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn replies_round_trip() {
        let cases = [
            (Request::GetFeatures, Reply::U64(1 << 32)),
            (Request::GetDeviceId, Reply::U32(1)),
            (Request::GetStatus, Reply::U8(0xf)),
            (Request::GetVringNum, Reply::U16(256)),
            (
                Request::GetVringBase(1),
                Reply::VringState(VhostVringState { index: 1, num: 7 }),
            ),
            (
                Request::GetConfig { off: 0, len: 6 },
                Reply::Config {
                    off: 0,
                    data: vec![0x52, 0x54, 0, 0x12, 0x34, 0x56],
                },
            ),
        ];
        for (req, rep) in cases {
            let m = rep.encode(req.code());
            let p = check_reply(req.code(), req.reply_size().unwrap(), &m).unwrap();
            assert_eq!(Reply::decode(&req, &p).unwrap(), rep);
        }
    }

    #[test]
    fn bad_replies_are_rejected() {
        let m = Reply::U64(1).encode(VHOST_GET_FEATURES);
        assert!(check_reply(VHOST_VDPA_GET_STATUS, 8, &m).is_err());
        assert!(check_reply(VHOST_GET_FEATURES, 4, &m).is_err());
        assert!(check_reply(VHOST_GET_FEATURES, 8, &m[..20]).is_err());
        let req = Request::GetConfig { off: 0, len: 2 };
        let wrong = Reply::Config {
            off: 2,
            data: vec![0, 0],
        };
        assert!(Reply::decode(&req, &wrong.payload()).is_err());
        assert!(Reply::decode(&Request::GetStatus, &[]).is_err());
    }

    #[test]
    fn malformed_requests_are_rejected() {
        assert!(Request::decode(&encode_raw(VHOST_SET_FEATURES, 0, &[0; 4])).is_err());
        assert!(Request::decode(&encode_raw(0xdead, 0, &[])).is_err());
        let mut m = Request::GetFeatures.encode();
        m.push(0);
        assert!(Request::decode(&m).is_err());
        let mut m = encode_raw(VHOST_VDPA_SET_CONFIG, 0, &config_header(0, 4));
        m.extend_from_slice(&[1, 2]);
        assert!(Request::decode(&m).is_err());
    }

    #[test]
    fn raw_reply_size() {
        assert_eq!(reply_size(0x1234, &[]), None);
        assert_eq!(
            reply_size(VHOST_VDPA_GET_CONFIG, &config_header(0, 100)),
            Some(108)
        );
        assert_eq!(reply_size(VHOST_VDPA_GET_CONFIG, &[]), Some(8));
    }
}
