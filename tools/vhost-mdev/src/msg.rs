// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Encoding and decoding of `struct vhost_vfio_op` messages (region 0).
//!
//! A request is a 16-byte header (`u64 request`, `u32 flags`, `u32 size`)
//! followed by `size` payload bytes laid out as the vhost-vdpa ioctl
//! argument; a reply has the same header with the request echoed. All
//! values are host-endian.

use crate::error::{Error, Result};
use crate::uapi::*;

/// Size of the message header.
pub const HDR_SIZE: usize = VHOST_VFIO_OP_HDR_SIZE as usize;
/// Largest message (header and payload).
pub const MAX_MSG: usize = VHOST_VFIO_MSG_REGION_SIZE as usize;

/// The header of a request or reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpHeader {
    /// The vhost request code.
    pub request: u64,
    /// `VHOST_VFIO_NEED_REPLY` or 0.
    pub flags: u32,
    /// Payload bytes that follow.
    pub size: u32,
}

impl OpHeader {
    /// The 16 header bytes.
    pub fn encode(&self) -> [u8; HDR_SIZE] {
        let mut b = [0u8; HDR_SIZE];
        b[0..8].copy_from_slice(&self.request.to_ne_bytes());
        b[8..12].copy_from_slice(&self.flags.to_ne_bytes());
        b[12..16].copy_from_slice(&self.size.to_ne_bytes());
        b
    }

    /// Parses the first 16 bytes of `b`.
    pub fn decode(b: &[u8]) -> Result<Self> {
        if b.len() < HDR_SIZE {
            return Err(Error::Protocol(format!(
                "message of {} bytes is shorter than the header",
                b.len()
            )));
        }
        Ok(OpHeader {
            request: u64::from_ne_bytes(arr(&b[0..8])),
            flags: u32::from_ne_bytes(arr(&b[8..12])),
            size: u32::from_ne_bytes(arr(&b[12..16])),
        })
    }
}

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
    let mut v = s.index.to_ne_bytes().to_vec();
    v.extend_from_slice(&s.num.to_ne_bytes());
    v
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
    let mut v = Vec::with_capacity(40);
    v.extend_from_slice(&a.index.to_ne_bytes());
    v.extend_from_slice(&a.flags.to_ne_bytes());
    v.extend_from_slice(&a.desc_user_addr.to_ne_bytes());
    v.extend_from_slice(&a.used_user_addr.to_ne_bytes());
    v.extend_from_slice(&a.avail_user_addr.to_ne_bytes());
    v.extend_from_slice(&a.log_guest_addr.to_ne_bytes());
    v
}

/// Parses a `vhost_vring_addr`.
pub fn vring_addr_from(b: &[u8]) -> Result<VhostVringAddr> {
    expect_len("vhost_vring_addr", b, 40)?;
    Ok(VhostVringAddr {
        index: u32::from_ne_bytes(arr(&b[0..4])),
        flags: u32::from_ne_bytes(arr(&b[4..8])),
        desc_user_addr: u64::from_ne_bytes(arr(&b[8..16])),
        used_user_addr: u64::from_ne_bytes(arr(&b[16..24])),
        avail_user_addr: u64::from_ne_bytes(arr(&b[24..32])),
        log_guest_addr: u64::from_ne_bytes(arr(&b[32..40])),
    })
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

/// A typed vhost request of the message table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `VHOST_GET_FEATURES`.
    GetFeatures,
    /// `VHOST_SET_FEATURES`.
    SetFeatures(u64),
    /// `VHOST_SET_OWNER`.
    SetOwner,
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
    /// The request code (the full ioctl number of `<linux/vhost.h>`).
    pub fn code(&self) -> u64 {
        match self {
            Request::GetFeatures => VHOST_GET_FEATURES,
            Request::SetFeatures(_) => VHOST_SET_FEATURES,
            Request::SetOwner => VHOST_SET_OWNER,
            Request::GetDeviceId => VHOST_VDPA_GET_DEVICE_ID,
            Request::GetStatus => VHOST_VDPA_GET_STATUS,
            Request::SetStatus(_) => VHOST_VDPA_SET_STATUS,
            Request::GetConfigSize => VHOST_VDPA_GET_CONFIG_SIZE,
            Request::GetConfig { .. } => VHOST_VDPA_GET_CONFIG,
            Request::SetConfig { .. } => VHOST_VDPA_SET_CONFIG,
            Request::GetVringNum => VHOST_VDPA_GET_VRING_NUM,
            Request::GetVqsCount => VHOST_VDPA_GET_VQS_COUNT,
            Request::SetVringNum(_) => VHOST_SET_VRING_NUM,
            Request::SetVringAddr(_) => VHOST_SET_VRING_ADDR,
            Request::SetVringHva(_) => VHOST_VFIO_SET_VRING_HVA,
            Request::SetVringBase(_) => VHOST_SET_VRING_BASE,
            Request::GetVringBase(_) => VHOST_GET_VRING_BASE,
            Request::SetVringEnable(_) => VHOST_VDPA_SET_VRING_ENABLE,
            Request::Suspend => VHOST_VDPA_SUSPEND,
            Request::Resume => VHOST_VDPA_RESUME,
        }
    }

    /// The request's name, e.g. `VHOST_SET_VRING_NUM`.
    pub fn name(&self) -> &'static str {
        request_name(self.code()).unwrap_or("unknown request")
    }

    /// The payload bytes.
    pub fn payload(&self) -> Vec<u8> {
        match self {
            Request::SetFeatures(f) => f.to_ne_bytes().to_vec(),
            Request::SetStatus(s) => vec![*s],
            Request::GetConfig { off, len } => config_header(*off, *len),
            Request::SetConfig { off, data } => {
                let mut v = config_header(*off, data.len() as u32);
                v.extend_from_slice(data);
                v
            }
            Request::SetVringNum(s) | Request::SetVringBase(s) | Request::SetVringEnable(s) => {
                vring_state_bytes(s)
            }
            Request::SetVringAddr(a) | Request::SetVringHva(a) => vring_addr_bytes(a),
            Request::GetVringBase(index) => vring_state_bytes(&VhostVringState {
                index: *index,
                num: 0,
            }),
            Request::GetFeatures
            | Request::SetOwner
            | Request::GetDeviceId
            | Request::GetStatus
            | Request::GetConfigSize
            | Request::GetVringNum
            | Request::GetVqsCount
            | Request::Suspend
            | Request::Resume => Vec::new(),
        }
    }

    /// Payload size of the reply, or `None` for a request without reply.
    pub fn reply_size(&self) -> Option<usize> {
        reply_size(self.code(), &self.payload())
    }

    /// The header flags: `VHOST_VFIO_NEED_REPLY` for requests with a reply.
    pub fn flags(&self) -> u32 {
        if self.reply_size().is_some() {
            VHOST_VFIO_NEED_REPLY
        } else {
            0
        }
    }

    /// The whole message (header and payload).
    pub fn encode(&self) -> Vec<u8> {
        encode_raw(self.code(), self.flags(), &self.payload())
    }

    /// Parses a message as a device would.
    pub fn decode(msg: &[u8]) -> Result<Self> {
        let h = OpHeader::decode(msg)?;
        let p = &msg[HDR_SIZE..];
        if p.len() != h.size as usize {
            return Err(Error::Protocol(format!(
                "size {} but {} payload bytes",
                h.size,
                p.len()
            )));
        }
        let none = |r: Request| -> Result<Request> {
            expect_len(r.name(), p, 0)?;
            Ok(r)
        };
        Ok(match h.request {
            VHOST_GET_FEATURES => none(Request::GetFeatures)?,
            VHOST_SET_FEATURES => {
                expect_len("VHOST_SET_FEATURES", p, 8)?;
                Request::SetFeatures(u64::from_ne_bytes(arr(p)))
            }
            VHOST_SET_OWNER => none(Request::SetOwner)?,
            VHOST_VDPA_GET_DEVICE_ID => none(Request::GetDeviceId)?,
            VHOST_VDPA_GET_STATUS => none(Request::GetStatus)?,
            VHOST_VDPA_SET_STATUS => {
                expect_len("VHOST_VDPA_SET_STATUS", p, 1)?;
                Request::SetStatus(p[0])
            }
            VHOST_VDPA_GET_CONFIG_SIZE => none(Request::GetConfigSize)?,
            VHOST_VDPA_GET_CONFIG => {
                expect_len("VHOST_VDPA_GET_CONFIG", p, 8)?;
                Request::GetConfig {
                    off: u32::from_ne_bytes(arr(&p[0..4])),
                    len: u32::from_ne_bytes(arr(&p[4..8])),
                }
            }
            VHOST_VDPA_SET_CONFIG => {
                if p.len() < 8 {
                    return Err(Error::Protocol("VHOST_VDPA_SET_CONFIG: short".into()));
                }
                let off = u32::from_ne_bytes(arr(&p[0..4]));
                let len = u32::from_ne_bytes(arr(&p[4..8]));
                expect_len("VHOST_VDPA_SET_CONFIG", &p[8..], len as usize)?;
                Request::SetConfig {
                    off,
                    data: p[8..].to_vec(),
                }
            }
            VHOST_VDPA_GET_VRING_NUM => none(Request::GetVringNum)?,
            VHOST_VDPA_GET_VQS_COUNT => none(Request::GetVqsCount)?,
            VHOST_SET_VRING_NUM => Request::SetVringNum(vring_state_from(p)?),
            VHOST_SET_VRING_ADDR => Request::SetVringAddr(vring_addr_from(p)?),
            VHOST_VFIO_SET_VRING_HVA => Request::SetVringHva(vring_addr_from(p)?),
            VHOST_SET_VRING_BASE => Request::SetVringBase(vring_state_from(p)?),
            VHOST_GET_VRING_BASE => Request::GetVringBase(vring_state_from(p)?.index),
            VHOST_VDPA_SET_VRING_ENABLE => Request::SetVringEnable(vring_state_from(p)?),
            VHOST_VDPA_SUSPEND => none(Request::Suspend)?,
            VHOST_VDPA_RESUME => none(Request::Resume)?,
            other => {
                return Err(Error::Protocol(format!("unknown request {other:#x}")));
            }
        })
    }
}

fn config_header(off: u32, len: u32) -> Vec<u8> {
    let mut v = off.to_ne_bytes().to_vec();
    v.extend_from_slice(&len.to_ne_bytes());
    v
}

/// Payload size of the reply to `request` with `payload`, or `None` if the
/// request has no reply (or is unknown).
pub fn reply_size(request: u64, payload: &[u8]) -> Option<usize> {
    match request {
        VHOST_GET_FEATURES => Some(8),
        VHOST_VDPA_GET_DEVICE_ID | VHOST_VDPA_GET_CONFIG_SIZE | VHOST_VDPA_GET_VQS_COUNT => Some(4),
        VHOST_VDPA_GET_STATUS => Some(1),
        VHOST_VDPA_GET_VRING_NUM => Some(2),
        VHOST_GET_VRING_BASE => Some(8),
        VHOST_VDPA_GET_CONFIG => {
            let len = payload
                .get(4..8)
                .map_or(0, |b| u32::from_ne_bytes(arr(b)) as usize);
            Some(8 + len)
        }
        _ => None,
    }
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
    let h = OpHeader::decode(msg)?;
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
