// SPDX-License-Identifier: GPL-2.0 OR MIT

//! The vhost-mdev protocol: message encoding and parsing, request decoding
//! and the virtio 1.x device model that the core enforces for every parent.
//!
//! This file has no kernel dependencies and no allocation: `vhost_mdev.ko`
//! includes it (`vhost_mdev/proto.rs`), and the `vhost-mdev-proto` crate is
//! what userspace (the `vhost-mdev` library and its in-process device) and
//! the host tests use, where property tests feed it arbitrary input. Everything a user sends passes through here
//! before a parent driver sees it; a parent only ever gets requests that this
//! model has checked (queue index in range, ring size valid, config range
//! inside the config space, a status transition virtio allows).
//!
//! Errors are positive errno values (`Errno`), converted by the caller.

/// A positive errno value.
pub type Errno = i32;

/// Errno values used by the protocol (asm-generic numbers, as on x86).
pub mod errno {
    /// Argument list too long (a memory table with too many regions).
    pub const E2BIG: i32 = 7;
    /// Out of memory.
    pub const ENOMEM: i32 = 12;
    /// Bad address.
    pub const EFAULT: i32 = 14;
    /// Device or resource busy.
    pub const EBUSY: i32 = 16;
    /// Invalid argument.
    pub const EINVAL: i32 = 22;
    /// Inappropriate ioctl for device.
    pub const ENOTTY: i32 = 25;
    /// No data available.
    pub const ENODATA: i32 = 61;
    /// Operation not supported.
    pub const EOPNOTSUPP: i32 = 95;
    /// No buffer space available.
    pub const ENOBUFS: i32 = 105;
}
use errno::*;

pub use super::uapi::{
    req, status, CONFIG_HDR_SIZE, HDR_SIZE, MAX_MEM_REGIONS, MAX_PAYLOAD, MEM_REGION_SIZE,
    MEM_TABLE_HDR_SIZE, MSG_REGION_SIZE, NEED_REPLY, VHOST_F_LOG_ALL, VHOST_VRING_F_LOG,
    VIRTIO_F_ACCESS_PLATFORM, VIRTIO_F_RING_PACKED, VIRTIO_F_VERSION_1, VRING_ADDR_SIZE,
    VRING_STATE_SIZE,
};

/// Most virtqueues a parent may have: QEMU's `VIRTIO_QUEUE_MAX` (1024),
/// so 511 queue pairs and a control queue. The per-queue state of the
/// model and the core is allocated for the parent's count at open.
pub const MAX_VQS: usize = 1024;

/// The header of a message (`struct vhost_vfio_op`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The request code.
    pub request: u64,
    /// `VHOST_VFIO_NEED_REPLY` or 0.
    pub flags: u32,
    /// Payload bytes after the header.
    pub size: u32,
}

impl Header {
    /// Encodes the header into its 16 bytes.
    pub fn encode(&self) -> [u8; HDR_SIZE] {
        let mut b = [0u8; HDR_SIZE];
        b[0..8].copy_from_slice(&self.request.to_ne_bytes());
        b[8..12].copy_from_slice(&self.flags.to_ne_bytes());
        b[12..16].copy_from_slice(&self.size.to_ne_bytes());
        b
    }

    /// Decodes the first 16 bytes of `buf` (`EINVAL` if shorter); the
    /// fields are not checked (see [`parse_message`]).
    pub fn decode(buf: &[u8]) -> Result<Self, Errno> {
        if buf.len() < HDR_SIZE {
            return Err(EINVAL);
        }
        Ok(Header {
            request: rd_u64(buf, 0),
            flags: rd_u32(buf, 8),
            size: rd_u32(buf, 12),
        })
    }
}

fn rd_u32(b: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_ne_bytes(v)
}

fn rd_u64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_ne_bytes(v)
}

/// Parses a message written to region 0: exactly `16 + size` bytes.
///
/// Returns the header and the payload. Unknown flags, a size that does not
/// match the byte count, or a message larger than the region are `EINVAL`.
pub fn parse_message(buf: &[u8]) -> Result<(Header, &[u8]), Errno> {
    if buf.len() > MSG_REGION_SIZE {
        return Err(EINVAL);
    }
    let hdr = Header::decode(buf)?;
    if hdr.flags & !NEED_REPLY != 0 || hdr.size as usize != buf.len() - HDR_SIZE {
        return Err(EINVAL);
    }
    Ok((hdr, &buf[HDR_SIZE..]))
}

/// `struct vhost_vring_addr`, with the addresses as IOVAs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VringAddr {
    /// Queue index.
    pub index: u32,
    /// 0, or `VHOST_VRING_F_LOG` on a device that offers
    /// `VHOST_F_LOG_ALL` (log the used ring's writes at `log`).
    pub flags: u32,
    /// Descriptor table.
    pub desc: u64,
    /// Used ring (device area).
    pub used: u64,
    /// Available ring (driver area).
    pub avail: u64,
    /// Where the used ring is logged with `VHOST_VRING_F_LOG`
    /// (`log_guest_addr`: an IOVA, i.e. a guest-physical address).
    pub log: u64,
}

/// One region of a memory table (`struct vhost_memory_region`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemRegion {
    /// The region's first IOVA (the guest-physical address with no
    /// vIOMMU; vhost's name).
    pub guest_phys_addr: u64,
    /// Its length in bytes.
    pub memory_size: u64,
    /// Where the process that sends the table sees the region.
    pub userspace_addr: u64,
    /// Must be 0.
    pub flags_padding: u64,
}

impl MemRegion {
    /// A region of `size` bytes at IOVA `iova`, seen at `uaddr` by the
    /// process that sends the table.
    pub const fn new(iova: u64, size: u64, uaddr: u64) -> Self {
        MemRegion {
            guest_phys_addr: iova,
            memory_size: size,
            userspace_addr: uaddr,
            flags_padding: 0,
        }
    }

    /// The region from its 32 bytes (`b` holds at least that many).
    fn read(b: &[u8]) -> Self {
        MemRegion {
            guest_phys_addr: rd_u64(b, 0),
            memory_size: rd_u64(b, 8),
            userspace_addr: rd_u64(b, 16),
            flags_padding: rd_u64(b, 24),
        }
    }

    /// Writes the region's 32 bytes into `out` (at least that many).
    fn write(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.guest_phys_addr.to_ne_bytes());
        out[8..16].copy_from_slice(&self.memory_size.to_ne_bytes());
        out[16..24].copy_from_slice(&self.userspace_addr.to_ne_bytes());
        out[24..32].copy_from_slice(&self.flags_padding.to_ne_bytes());
    }

    /// The region's last IOVA; `None` when it is empty or runs past the
    /// end of the address space.
    pub fn last_iova(&self) -> Option<u64> {
        self.guest_phys_addr
            .checked_add(self.memory_size.checked_sub(1)?)
    }

    /// Checks one region: not empty, `flags_padding` 0, and neither its
    /// IOVA range nor its user address range wraps (`EINVAL`). A region
    /// may end at the last address (`addr + size - 1 == u64::MAX`).
    pub fn check(&self) -> Result<(), Errno> {
        let last = self.memory_size.checked_sub(1).ok_or(EINVAL)?;
        if self.flags_padding != 0
            || self.guest_phys_addr.checked_add(last).is_none()
            || self.userspace_addr.checked_add(last).is_none()
        {
            return Err(EINVAL);
        }
        Ok(())
    }
}

/// The regions of a `VHOST_SET_MEM_TABLE` (`struct vhost_memory` without
/// its header): as they travel, or as values (to encode them). Two tables
/// are equal when their regions are.
#[derive(Clone, Copy, Debug)]
pub enum MemTable<'a> {
    /// The regions' bytes as they travel: a multiple of
    /// [`MEM_REGION_SIZE`] (a shorter tail is ignored).
    Wire(&'a [u8]),
    /// The regions as values.
    Regions(&'a [MemRegion]),
}

impl MemTable<'_> {
    /// Number of regions.
    pub fn len(&self) -> usize {
        match self {
            MemTable::Wire(b) => b.len() / MEM_REGION_SIZE,
            MemTable::Regions(r) => r.len(),
        }
    }

    /// Whether the table has no region (valid: nothing is mapped).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Region `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<MemRegion> {
        match self {
            MemTable::Wire(b) => {
                let at = i.checked_mul(MEM_REGION_SIZE)?;
                b.get(at..at.checked_add(MEM_REGION_SIZE)?)
                    .map(MemRegion::read)
            }
            MemTable::Regions(r) => r.get(i).copied(),
        }
    }

    /// The regions, in order.
    pub fn regions(&self) -> impl Iterator<Item = MemRegion> + '_ {
        (0..self.len()).filter_map(move |i| self.get(i))
    }

    /// Checks the table as the device takes it: at most
    /// [`MAX_MEM_REGIONS`] regions (else `E2BIG`), each valid (see
    /// [`MemRegion::check`]), and no two IOVA ranges overlapping
    /// (`EINVAL`). User address ranges may overlap (a VMM may alias its
    /// memory). Quadratic, on at most 64 regions.
    pub fn check(&self) -> Result<(), Errno> {
        if self.len() > MAX_MEM_REGIONS {
            return Err(E2BIG);
        }
        for (i, a) in self.regions().enumerate() {
            a.check()?;
            let al = a.last_iova().ok_or(EINVAL)?;
            for b in self.regions().skip(i + 1) {
                // A region without an end fails its own check later.
                let Some(bl) = b.last_iova() else {
                    continue;
                };
                if a.guest_phys_addr <= bl && b.guest_phys_addr <= al {
                    return Err(EINVAL);
                }
            }
        }
        Ok(())
    }

    /// Bytes of the table on the wire (header and regions).
    pub fn wire_len(&self) -> usize {
        MEM_TABLE_HDR_SIZE.saturating_add(self.len().saturating_mul(MEM_REGION_SIZE))
    }
}

impl PartialEq for MemTable<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.regions().eq(other.regions())
    }
}

impl Eq for MemTable<'_> {}

/// A decoded request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// `VHOST_GET_FEATURES`
    GetFeatures,
    /// `VHOST_SET_FEATURES`
    SetFeatures(u64),
    /// `VHOST_SET_OWNER`
    SetOwner,
    /// `VHOST_SET_MEM_TABLE`: the regions the driver's DMA may reach, with
    /// `guest_phys_addr` read as an IOVA. A decoded table passed
    /// [`MemTable::check`].
    SetMemTable(MemTable<'a>),
    /// `VHOST_SET_LOG_BASE`: the user address of the dirty log in the
    /// sender's address space, 0 for none. The model checks it (a device
    /// that offers `VHOST_F_LOG_ALL`, 8-byte aligned); the core pins it.
    SetLogBase(u64),
    /// `VHOST_VDPA_GET_DEVICE_ID`
    GetDeviceId,
    /// `VHOST_VDPA_GET_STATUS`
    GetStatus,
    /// `VHOST_VDPA_SET_STATUS`
    SetStatus(u8),
    /// `VHOST_VDPA_GET_CONFIG_SIZE`
    GetConfigSize,
    /// `VHOST_VDPA_GET_CONFIG`
    GetConfig {
        /// Offset in the config space.
        off: u32,
        /// Bytes to read.
        len: u32,
    },
    /// `VHOST_VDPA_SET_CONFIG`
    SetConfig {
        /// Offset in the config space.
        off: u32,
        /// Bytes to write.
        data: &'a [u8],
    },
    /// `VHOST_VDPA_GET_VRING_NUM`
    GetVringNum,
    /// `VHOST_VDPA_GET_VQS_COUNT`
    GetVqsCount,
    /// `VHOST_SET_VRING_NUM`
    SetVringNum {
        /// Queue index.
        index: u32,
        /// Ring size.
        num: u32,
    },
    /// `VHOST_SET_VRING_BASE`
    SetVringBase {
        /// Queue index.
        index: u32,
        /// Next available index.
        num: u32,
    },
    /// `VHOST_SET_VRING_ADDR`
    SetVringAddr(VringAddr),
    /// `VHOST_VFIO_SET_VRING_HVA`: the same layout, with the addresses at
    /// which the sending process sees the rings.
    SetVringHva(VringAddr),
    /// `VHOST_GET_VRING_BASE`
    GetVringBase {
        /// Queue index.
        index: u32,
    },
    /// `VHOST_VDPA_SET_VRING_ENABLE`
    SetVringEnable {
        /// Queue index.
        index: u32,
        /// 1 to enable, 0 to disable.
        num: u32,
    },
    /// `VHOST_VDPA_SUSPEND`
    Suspend,
    /// `VHOST_VDPA_RESUME`
    Resume,
}

impl Request<'_> {
    /// Whether the request returns data (and so needs `NEED_REPLY`).
    pub fn has_reply(&self) -> bool {
        matches!(
            self,
            Request::GetFeatures
                | Request::GetDeviceId
                | Request::GetStatus
                | Request::GetConfigSize
                | Request::GetConfig { .. }
                | Request::GetVringNum
                | Request::GetVqsCount
                | Request::GetVringBase { .. }
        )
    }
}

impl Request<'_> {
    /// The request code.
    pub fn code(&self) -> u32 {
        match self {
            Request::GetFeatures => req::GET_FEATURES,
            Request::SetFeatures(_) => req::SET_FEATURES,
            Request::SetOwner => req::SET_OWNER,
            Request::SetMemTable(_) => req::SET_MEM_TABLE,
            Request::SetLogBase(_) => req::SET_LOG_BASE,
            Request::GetDeviceId => req::GET_DEVICE_ID,
            Request::GetStatus => req::GET_STATUS,
            Request::SetStatus(_) => req::SET_STATUS,
            Request::GetConfigSize => req::GET_CONFIG_SIZE,
            Request::GetConfig { .. } => req::GET_CONFIG,
            Request::SetConfig { .. } => req::SET_CONFIG,
            Request::GetVringNum => req::GET_VRING_NUM,
            Request::GetVqsCount => req::GET_VQS_COUNT,
            Request::SetVringNum { .. } => req::SET_VRING_NUM,
            Request::SetVringBase { .. } => req::SET_VRING_BASE,
            Request::SetVringAddr(_) => req::SET_VRING_ADDR,
            Request::SetVringHva(_) => req::SET_VRING_HVA,
            Request::GetVringBase { .. } => req::GET_VRING_BASE,
            Request::SetVringEnable { .. } => req::SET_VRING_ENABLE,
            Request::Suspend => req::SUSPEND,
            Request::Resume => req::RESUME,
        }
    }

    /// The C name of the request, e.g. `VHOST_SET_VRING_NUM`.
    pub fn name(&self) -> &'static str {
        request_name(self.code()).unwrap_or("unknown request")
    }

    /// Bytes of payload the request takes on the wire.
    pub fn payload_len(&self) -> usize {
        match self {
            Request::SetConfig { data, .. } => CONFIG_HDR_SIZE + data.len(),
            Request::SetMemTable(t) => t.wire_len(),
            // Every other code has a fixed payload.
            r => fixed_payload_size(r.code()).unwrap_or(0),
        }
    }

    /// Writes the payload (the ioctl argument layout) into the first
    /// [`Request::payload_len`] bytes of `out` and returns that length
    /// (`EINVAL` if `out` is shorter, or SET_CONFIG data longer than a
    /// `u32` counts). Unlike [`Request::encode`], this does not limit the
    /// payload to the message region: the ioctl transport has no region.
    pub fn encode_payload(&self, out: &mut [u8]) -> Result<usize, Errno> {
        if let Request::SetConfig { data, .. } = self {
            u32::try_from(data.len()).map_err(|_| EINVAL)?;
        }
        if let Request::SetMemTable(t) = self {
            u32::try_from(t.len()).map_err(|_| EINVAL)?;
        }
        let len = self.payload_len();
        self.put_payload(out.get_mut(..len).ok_or(EINVAL)?);
        Ok(len)
    }

    /// Writes the payload into `out`, which holds exactly
    /// [`Request::payload_len`] bytes (and SET_CONFIG data and a memory
    /// table's region count fit a `u32`). A memory table is written as it
    /// is, valid or not (tests send bad ones).
    fn put_payload(&self, out: &mut [u8]) {
        let state = |out: &mut [u8], index: u32, num: u32| {
            out[0..4].copy_from_slice(&index.to_ne_bytes());
            out[4..8].copy_from_slice(&num.to_ne_bytes());
        };
        match *self {
            Request::SetFeatures(f) | Request::SetLogBase(f) => {
                out.copy_from_slice(&f.to_ne_bytes())
            }
            Request::SetStatus(s) => out[0] = s,
            Request::GetConfig { off, len } => state(out, off, len),
            Request::SetConfig { off, data } => {
                // The length fits: the callers checked it.
                state(out, off, data.len() as u32);
                out[CONFIG_HDR_SIZE..].copy_from_slice(data);
            }
            Request::SetVringNum { index, num }
            | Request::SetVringBase { index, num }
            | Request::SetVringEnable { index, num } => state(out, index, num),
            Request::GetVringBase { index } => state(out, index, 0),
            Request::SetMemTable(t) => {
                // The count fits: the callers checked it. Padding 0.
                state(out, t.len() as u32, 0);
                let regions = out[MEM_TABLE_HDR_SIZE..].chunks_exact_mut(MEM_REGION_SIZE);
                for (r, o) in t.regions().zip(regions) {
                    r.write(o);
                }
            }
            Request::SetVringAddr(a) | Request::SetVringHva(a) => {
                out[0..4].copy_from_slice(&a.index.to_ne_bytes());
                out[4..8].copy_from_slice(&a.flags.to_ne_bytes());
                out[8..16].copy_from_slice(&a.desc.to_ne_bytes());
                out[16..24].copy_from_slice(&a.used.to_ne_bytes());
                out[24..32].copy_from_slice(&a.avail.to_ne_bytes());
                out[32..40].copy_from_slice(&a.log.to_ne_bytes());
            }
            Request::GetFeatures
            | Request::SetOwner
            | Request::GetDeviceId
            | Request::GetStatus
            | Request::GetConfigSize
            | Request::GetVringNum
            | Request::GetVqsCount
            | Request::Suspend
            | Request::Resume => {}
        }
    }

    /// Encodes the request as a region-0 message (header, with
    /// `NEED_REPLY` for requests that return data, then the payload) into
    /// `buf`; returns the message length. A message larger than the
    /// region, or than `buf`, is `EINVAL`.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        let plen = self.payload_len();
        let len = HDR_SIZE + plen;
        if len > MSG_REGION_SIZE {
            return Err(EINVAL);
        }
        let out = buf.get_mut(..len).ok_or(EINVAL)?;
        let hdr = Header {
            request: u64::from(self.code()),
            flags: if self.has_reply() { NEED_REPLY } else { 0 },
            // At most `MAX_PAYLOAD`, checked above.
            size: plen as u32,
        };
        out[..HDR_SIZE].copy_from_slice(&hdr.encode());
        self.encode_payload(&mut out[HDR_SIZE..])?;
        Ok(len)
    }

    /// Payload bytes of the reply to this request (0 for requests without
    /// reply).
    pub fn reply_len(&self) -> usize {
        match *self {
            Request::GetConfig { len, .. } => CONFIG_HDR_SIZE.saturating_add(len as usize),
            r => reply_size(r.code(), &[]).unwrap_or(0),
        }
    }
}

/// Payload bytes of the reply to request `code` with `payload`, or `None`
/// if it has no reply (or is unknown). A GET_CONFIG payload too short to
/// hold its length counts as asking for none.
pub fn reply_size(code: u32, payload: &[u8]) -> Option<usize> {
    Some(match code {
        req::GET_FEATURES => 8,
        req::GET_DEVICE_ID | req::GET_CONFIG_SIZE | req::GET_VQS_COUNT => 4,
        req::GET_STATUS => 1,
        req::GET_VRING_NUM => 2,
        req::GET_VRING_BASE => VRING_STATE_SIZE,
        req::GET_CONFIG => {
            let len = payload.get(4..8).map_or(0, |_| rd_u32(payload, 4));
            CONFIG_HDR_SIZE.saturating_add(len as usize)
        }
        _ => return None,
    })
}

/// The C name of a request code of the message table.
pub fn request_name(code: u32) -> Option<&'static str> {
    req::ALL.iter().find(|(c, _)| *c == code).map(|(_, n)| *n)
}

/// The payload size a request code takes, if it is a fixed one.
///
/// `None` for unknown codes. Config requests have a variable payload (the
/// 8-byte header, plus data for SET_CONFIG), and so has SET_MEM_TABLE (the
/// 8-byte header of `struct vhost_memory`, then its regions).
pub fn fixed_payload_size(code: u32) -> Option<usize> {
    Some(match code {
        req::GET_FEATURES | req::SET_OWNER | req::GET_DEVICE_ID | req::GET_STATUS => 0,
        req::GET_CONFIG_SIZE | req::GET_VRING_NUM | req::GET_VQS_COUNT => 0,
        req::SUSPEND | req::RESUME => 0,
        req::SET_FEATURES | req::SET_LOG_BASE => 8,
        req::SET_STATUS => 1,
        req::SET_VRING_NUM | req::SET_VRING_BASE | req::GET_VRING_BASE => VRING_STATE_SIZE,
        req::SET_VRING_ENABLE => VRING_STATE_SIZE,
        req::SET_VRING_ADDR | req::SET_VRING_HVA => VRING_ADDR_SIZE,
        req::GET_CONFIG => CONFIG_HDR_SIZE,
        req::SET_CONFIG => CONFIG_HDR_SIZE,
        req::SET_MEM_TABLE => MEM_TABLE_HDR_SIZE,
        _ => return None,
    })
}

/// Decodes a request from its code and payload (message transport layout,
/// which is also the ioctl argument layout).
///
/// Unknown codes are `ENOTTY`; a payload of the wrong size is `EINVAL`. A
/// memory table with more than [`MAX_MEM_REGIONS`] regions is `E2BIG`
/// (whatever its size), one that [`MemTable::check`] refuses its errno.
pub fn decode(request: u64, payload: &[u8]) -> Result<Request<'_>, Errno> {
    let code = u32::try_from(request).map_err(|_| ENOTTY)?;
    let fixed = fixed_payload_size(code).ok_or(ENOTTY)?;
    let p = payload;
    let exact = |n: usize| if p.len() == n { Ok(()) } else { Err(EINVAL) };
    Ok(match code {
        req::SET_CONFIG => {
            if p.len() < CONFIG_HDR_SIZE {
                return Err(EINVAL);
            }
            let off = rd_u32(p, 0);
            let len = rd_u32(p, 4);
            if len as usize != p.len() - CONFIG_HDR_SIZE {
                return Err(EINVAL);
            }
            Request::SetConfig {
                off,
                data: &p[CONFIG_HDR_SIZE..],
            }
        }
        req::SET_MEM_TABLE => Request::SetMemTable(decode_mem_table(p)?),
        _ => {
            exact(fixed)?;
            match code {
                req::GET_FEATURES => Request::GetFeatures,
                req::SET_FEATURES => Request::SetFeatures(rd_u64(p, 0)),
                req::SET_LOG_BASE => Request::SetLogBase(rd_u64(p, 0)),
                req::SET_OWNER => Request::SetOwner,
                req::GET_DEVICE_ID => Request::GetDeviceId,
                req::GET_STATUS => Request::GetStatus,
                req::SET_STATUS => Request::SetStatus(p[0]),
                req::GET_CONFIG_SIZE => Request::GetConfigSize,
                req::GET_CONFIG => Request::GetConfig {
                    off: rd_u32(p, 0),
                    len: rd_u32(p, 4),
                },
                req::GET_VRING_NUM => Request::GetVringNum,
                req::GET_VQS_COUNT => Request::GetVqsCount,
                req::SET_VRING_NUM => Request::SetVringNum {
                    index: rd_u32(p, 0),
                    num: rd_u32(p, 4),
                },
                req::SET_VRING_BASE => Request::SetVringBase {
                    index: rd_u32(p, 0),
                    num: rd_u32(p, 4),
                },
                req::GET_VRING_BASE => Request::GetVringBase {
                    index: rd_u32(p, 0),
                },
                req::SET_VRING_ENABLE => Request::SetVringEnable {
                    index: rd_u32(p, 0),
                    num: rd_u32(p, 4),
                },
                req::SET_VRING_ADDR => Request::SetVringAddr(vring_addr(p)),
                req::SET_VRING_HVA => Request::SetVringHva(vring_addr(p)),
                req::SUSPEND => Request::Suspend,
                req::RESUME => Request::Resume,
                _ => return Err(ENOTTY),
            }
        }
    })
}

/// The payload of `VHOST_SET_MEM_TABLE`: `struct vhost_memory` (`u32
/// nregions`, `u32 padding`, then the regions), checked.
fn decode_mem_table(p: &[u8]) -> Result<MemTable<'_>, Errno> {
    if p.len() < MEM_TABLE_HDR_SIZE {
        return Err(EINVAL);
    }
    let n = rd_u32(p, 0) as usize;
    if n > MAX_MEM_REGIONS {
        return Err(E2BIG);
    }
    if p.len() != MEM_TABLE_HDR_SIZE + n * MEM_REGION_SIZE || rd_u32(p, 4) != 0 {
        return Err(EINVAL);
    }
    let t = MemTable::Wire(&p[MEM_TABLE_HDR_SIZE..]);
    t.check()?;
    Ok(t)
}

/// `struct vhost_vring_addr` from its 40 bytes.
fn vring_addr(p: &[u8]) -> VringAddr {
    VringAddr {
        index: rd_u32(p, 0),
        flags: rd_u32(p, 4),
        desc: rd_u64(p, 8),
        used: rd_u64(p, 16),
        avail: rd_u64(p, 24),
        log: rd_u64(p, 32),
    }
}

/// Checks a config access of `len` bytes at `off` against a config space
/// of `size` bytes (`off + len` overflow included). An access of no bytes
/// is refused too, as `vhost_vdpa_config_validate()` (Linux 6.12) refuses
/// it.
pub fn check_config_range(off: u32, len: u32, size: u32) -> Result<(), Errno> {
    match off.checked_add(len) {
        Some(end) if len != 0 && end <= size => Ok(()),
        _ => Err(EINVAL),
    }
}

/// What the device behind the model does: the parent's ops, as the core
/// calls them. Every call is made only after the model checked its input.
pub trait Backend {
    /// Virtio device id.
    fn device_id(&self) -> u32;
    /// Features the device offers.
    fn device_features(&self) -> u64;
    /// The driver's features, when it sets FEATURES_OK. `false` rejects them.
    fn set_driver_features(&mut self, features: u64) -> bool;
    /// Size of the config space.
    fn config_size(&self) -> u32;
    /// Reads the config space (range checked).
    fn get_config(&self, off: u32, buf: &mut [u8]);
    /// Writes the config space (range checked).
    fn set_config(&mut self, off: u32, data: &[u8]);
    /// Number of virtqueues (at most `MAX_VQS`).
    fn vq_count(&self) -> u32;
    /// Largest ring size.
    fn vq_num_max(&self) -> u16;
    /// Sets a ring size.
    fn set_vq_num(&mut self, idx: u16, num: u32);
    /// Sets ring addresses.
    fn set_vq_address(&mut self, idx: u16, desc: u64, driver: u64, device: u64);
    /// Enables or disables a queue.
    fn set_vq_ready(&mut self, idx: u16, ready: bool);
    /// Sets where a queue starts: the next available index (split rings,
    /// below 2^16), or vhost's packed encoding (`last_avail_idx | wrap <<
    /// 15` in the low half, the used index and wrap counter in the high
    /// half; each index below the ring size).
    fn set_vq_base(&mut self, idx: u16, base: u32);
    /// Reads where a queue is (the encoding of [`Backend::set_vq_base`]).
    fn get_vq_base(&self, idx: u16) -> u32;
    /// The driver's memory table (`VHOST_SET_MEM_TABLE`), checked
    /// ([`MemTable::check`]), in any status. An error fails the request.
    /// The default ignores it (a device that reaches guest memory through
    /// the core needs no table).
    fn set_mem_table(&mut self, _table: &MemTable<'_>) -> Result<(), Errno> {
        Ok(())
    }
    /// Every non-zero status the model accepted: after
    /// [`Backend::set_driver_features`] for FEATURES_OK (an error keeps
    /// FEATURES_OK clear), before [`Backend::start`] for DRIVER_OK (an
    /// error fails the request and changes nothing). For devices with a
    /// status of their own; the default accepts every status.
    fn set_status(&mut self, _status: u8) -> Result<(), Errno> {
        Ok(())
    }
    /// DRIVER_OK: starts the device.
    fn start(&mut self) -> Result<(), Errno>;
    /// Stops and resets the device; it is quiet on return.
    fn reset(&mut self);
    /// Stops queue processing; quiet on return.
    fn suspend(&mut self) -> Result<(), Errno>;
    /// Continues after `suspend`.
    fn resume(&mut self) -> Result<(), Errno>;
    /// Device-set status bits (NEEDS_RESET) since the last reset.
    fn device_status(&self) -> u8;
}

/// The state of one virtqueue as the driver configured it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VqConfig {
    /// Ring size (0: not set).
    pub num: u32,
    /// Whether `SET_VRING_ADDR` was done.
    pub addr_set: bool,
    /// Ring addresses.
    pub addr: VringAddr,
    /// Whether `SET_VRING_HVA` was done.
    pub hva_set: bool,
    /// Where the VMM sees the rings (see [`Request::SetVringHva`]).
    pub hva: VringAddr,
    /// Enabled.
    pub ready: bool,
    /// Base set by the driver (see [`Backend::set_vq_base`]).
    pub base: u32,
}

impl VqConfig {
    /// A queue the driver did not configure.
    pub const EMPTY: Self = Self {
        num: 0,
        addr_set: false,
        addr: NO_ADDR,
        hva_set: false,
        hva: NO_ADDR,
        ready: false,
        base: 0,
    };

    /// Whether the queue has everything it needs to run: a size, its ring
    /// addresses and where the VMM sees them.
    pub fn configured(&self) -> bool {
        self.num != 0 && self.addr_set && self.hva_set
    }

    /// The rings of this queue as `(iova, hva, len)` ranges, once it is
    /// configured: descriptor table (packed: the descriptor ring), driver
    /// area (split: the available ring with `used_event`; packed: the
    /// driver's event suppression structure) and device area (split: the
    /// used ring with `avail_event`; packed: the device's structure).
    pub fn ring_ranges(&self, packed: bool) -> Option<[(u64, u64, u64); 3]> {
        if !self.configured() {
            return None;
        }
        let n = u64::from(self.num);
        let driver = if packed { 4 } else { 6 + 2 * n };
        let device = device_area_len(self.num, packed);
        Some([
            (self.addr.desc, self.hva.desc, 16 * n),
            (self.addr.avail, self.hva.avail, driver),
            (self.addr.used, self.hva.used, device),
        ])
    }

    /// Whether the queue may run with the ring type the features chose:
    /// configured, and (the features may have changed since the queue was
    /// set up) its layout and base valid for that type. A packed base
    /// indexes the ring in both halves; a split base is any 16-bit index.
    fn runnable(&self, packed: bool) -> bool {
        self.configured()
            && check_ring_layout(&self.addr, packed, VHOST_VRING_F_LOG).is_ok()
            && check_ring_layout(&self.hva, packed, 0).is_ok()
            && if packed {
                packed_base_fits(self.base, self.num)
            } else {
                self.base <= u32::from(u16::MAX)
            }
    }
}

/// Whether both halves of a packed vring base (vhost's encoding: index in
/// bits 0-14, wrap counter in bit 15) index a ring of `num` entries.
fn packed_base_fits(base: u32, num: u32) -> bool {
    let avail = base & 0x7fff;
    let used = (base >> 16) & 0x7fff;
    avail < num && used < num
}

/// Checks a ring layout: for split rings (virtio 1.x, 2.7) descriptor
/// table aligned to 16, driver area to 2, device area to 4; for packed
/// rings (2.8.10) the descriptor ring to 16 and both event suppression
/// structures to 4. `flags` may have only the bits of `allowed` (0, or
/// `VHOST_VRING_F_LOG` for the ring addresses of a device that offers
/// `VHOST_F_LOG_ALL`); a used ring logged at `log` must not run past the
/// end of the address space.
fn check_ring_layout(a: &VringAddr, packed: bool, allowed: u32) -> Result<(), Errno> {
    let driver_align = if packed { 3 } else { 1 };
    if a.flags & !allowed != 0 || a.desc & 15 != 0 || a.avail & driver_align != 0 || a.used & 3 != 0
    {
        return Err(EINVAL);
    }
    if a.flags & VHOST_VRING_F_LOG != 0 && a.log.checked_add(USED_LOG_MAX).is_none() {
        return Err(EINVAL);
    }
    Ok(())
}

/// The largest device area a queue has (a split used ring of 2^15
/// entries): a used ring logged at `log` ends before `log + USED_LOG_MAX`.
const USED_LOG_MAX: u64 = 6 + 8 * (1 << 15);

/// Bytes of the device area of a ring of `num` entries (split: the used
/// ring with `avail_event`; packed: the device event suppression
/// structure): what `VHOST_VRING_F_LOG` logs at `log_guest_addr`.
pub fn device_area_len(num: u32, packed: bool) -> u64 {
    if packed {
        4
    } else {
        6 + 8 * u64::from(num)
    }
}

/// The virtio device model of one instance: status, features and queues.
///
/// `V` holds the per-queue configuration, one [`VqConfig`] per queue of
/// the device (a slice, array or vector: the kernel allocates it for the
/// parent's queue count at open). A queue index beyond it, or beyond the
/// device's `vq_count()`, is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model<V> {
    /// The driver-visible status (without device-set bits).
    pub status: u8,
    /// Features the driver set.
    pub features: u64,
    /// Suspended by `VHOST_VDPA_SUSPEND`.
    pub suspended: bool,
    /// Per-queue configuration.
    pub vqs: V,
}

/// Ring addresses not set.
const NO_ADDR: VringAddr = VringAddr {
    index: 0,
    flags: 0,
    desc: 0,
    used: 0,
    avail: 0,
    log: 0,
};

/// The reply to a request, written into a caller buffer.
pub struct Reply<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> Reply<'a> {
    /// A reply into `buf` (at least `MAX_PAYLOAD` bytes).
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, len: 0 }
    }

    /// Bytes of reply written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), Errno> {
        let end = self.len.checked_add(bytes.len()).ok_or(EINVAL)?;
        self.buf
            .get_mut(self.len..end)
            .ok_or(EINVAL)?
            .copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }
}

impl<V: Default + AsRef<[VqConfig]> + AsMut<[VqConfig]>> Default for Model<V> {
    fn default() -> Self {
        Self::new(V::default())
    }
}

impl<V: AsRef<[VqConfig]> + AsMut<[VqConfig]>> Model<V> {
    /// A reset device over the per-queue storage `vqs` (cleared).
    pub fn new(vqs: V) -> Self {
        let mut m = Self {
            status: 0,
            features: 0,
            suspended: false,
            vqs,
        };
        m.clear();
        m
    }

    /// Forgets everything the driver set, in place.
    fn clear(&mut self) {
        self.status = 0;
        self.features = 0;
        self.suspended = false;
        self.vqs.as_mut().fill(VqConfig::EMPTY);
    }

    fn running(&self) -> bool {
        self.status & status::DRIVER_OK != 0 && !self.suspended
    }

    /// Whether the driver set `VIRTIO_F_RING_PACKED`: the queues are packed
    /// rings (the features cannot change once FEATURES_OK is set, and
    /// queues are configured after the features).
    pub fn packed(&self) -> bool {
        self.features & VIRTIO_F_RING_PACKED != 0
    }

    fn vq_index(&self, dev: &dyn Backend, index: u32) -> Result<u16, Errno> {
        let n = self.vqs.as_ref().len().min(MAX_VQS);
        if index >= dev.vq_count() || index as usize >= n {
            return Err(ENOBUFS);
        }
        Ok(index as u16)
    }

    /// The configuration of queue `idx` (checked by [`Self::vq_index`]).
    fn vq(&mut self, idx: u16) -> &mut VqConfig {
        &mut self.vqs.as_mut()[usize::from(idx)]
    }

    /// Resets the model and the device (status 0, close, removal).
    pub fn reset(&mut self, dev: &mut dyn Backend) {
        dev.reset();
        self.clear();
    }

    /// Runs one request against the device. On error nothing changed.
    ///
    /// `reply` receives the reply payload of GET requests (vhost-vdpa
    /// layouts; GET_CONFIG replies with its 8-byte header then the data).
    pub fn handle(
        &mut self,
        dev: &mut dyn Backend,
        request: &Request<'_>,
        reply: &mut Reply<'_>,
    ) -> Result<(), Errno> {
        match *request {
            Request::GetFeatures => reply.put(&dev.device_features().to_ne_bytes()),
            Request::SetFeatures(f) => {
                // After FEATURES_OK only `VHOST_F_LOG_ALL` may change (the
                // VMM turns dirty logging on and off, while the device runs
                // too): the core's, never the parent's.
                let log_toggle = f ^ self.features == VHOST_F_LOG_ALL
                    && dev.device_features() & VHOST_F_LOG_ALL != 0;
                if self.status & status::FEATURES_OK != 0 && !log_toggle {
                    return Err(EBUSY);
                }
                if f & !dev.device_features() != 0 {
                    return Err(EINVAL);
                }
                self.features = f;
                Ok(())
            }
            Request::SetOwner => Ok(()),
            // In any status; the core pins the log (or, for 0, drops it)
            // once the model accepted it. A device that cannot log (its
            // writes do not all go through the core) does not know the
            // request, as on vhost-vdpa.
            Request::SetLogBase(base) => {
                if dev.device_features() & VHOST_F_LOG_ALL == 0 {
                    return Err(ENOTTY);
                }
                if base % 8 != 0 {
                    return Err(EINVAL);
                }
                Ok(())
            }
            // In any status: a VMM sends a new table whenever its memory
            // map changes, the device running or not. The model keeps no
            // copy; it checks the table again (a request need not come
            // from `decode`).
            Request::SetMemTable(t) => {
                t.check()?;
                dev.set_mem_table(&t)
            }
            Request::GetDeviceId => reply.put(&dev.device_id().to_ne_bytes()),
            Request::GetStatus => reply.put(&[self.status | dev.device_status()]),
            Request::SetStatus(s) => self.set_status(dev, s),
            Request::GetConfigSize => reply.put(&dev.config_size().to_ne_bytes()),
            Request::GetConfig { off, len } => {
                check_config_range(off, len, dev.config_size())?;
                if len as usize > MAX_PAYLOAD - CONFIG_HDR_SIZE {
                    return Err(EINVAL);
                }
                reply.put(&off.to_ne_bytes())?;
                reply.put(&len.to_ne_bytes())?;
                let start = reply.len;
                let end = start + len as usize;
                let out = reply.buf.get_mut(start..end).ok_or(EINVAL)?;
                // The buffer is shared by every request (and every opener):
                // a parent that fills less than `len` bytes must not return
                // what an earlier reply left there.
                out.fill(0);
                dev.get_config(off, out);
                reply.len = end;
                Ok(())
            }
            Request::SetConfig { off, data } => {
                let len = u32::try_from(data.len()).map_err(|_| EINVAL)?;
                check_config_range(off, len, dev.config_size())?;
                dev.set_config(off, data);
                Ok(())
            }
            Request::GetVringNum => reply.put(&dev.vq_num_max().to_ne_bytes()),
            Request::GetVqsCount => reply.put(&dev.vq_count().to_ne_bytes()),
            Request::SetVringNum { index, num } => {
                let idx = self.vq_index(dev, index)?;
                if self.running() {
                    return Err(EINVAL);
                }
                if num == 0 || !num.is_power_of_two() || num > u32::from(dev.vq_num_max()) {
                    return Err(EINVAL);
                }
                dev.set_vq_num(idx, num);
                self.vq(idx).num = num;
                Ok(())
            }
            Request::SetVringBase { index, num } => {
                let idx = self.vq_index(dev, index)?;
                if self.running() {
                    return Err(EINVAL);
                }
                // vhost's encodings (6.12 `drivers/vhost/vhost.c`,
                // `vhost_vring_ioctl()`): a 16-bit index for split rings;
                // for packed rings `last_avail_idx | wrap << 15` in the low
                // half and the same for the used index in the high half.
                // A packed base must index the ring, when its size is known
                // (DRIVER_OK checks it again).
                let packed = self.packed();
                let vq_num = self.vq(idx).num;
                if !packed && num > u32::from(u16::MAX)
                    || packed && vq_num != 0 && !packed_base_fits(num, vq_num)
                {
                    return Err(EINVAL);
                }
                dev.set_vq_base(idx, num);
                self.vq(idx).base = num;
                Ok(())
            }
            Request::SetVringAddr(a) => {
                let idx = self.vq_index(dev, a.index)?;
                let can_log = dev.device_features() & VHOST_F_LOG_ALL != 0;
                let allowed = if can_log { VHOST_VRING_F_LOG } else { 0 };
                check_ring_layout(&a, self.packed(), allowed)?;
                if self.running() {
                    // Only the logging of the used ring may change while
                    // the device runs (the VMM turns it on and off for a
                    // migration): the rings stay where they are.
                    let vq = self.vq(idx);
                    let same =
                        |b: &VringAddr| (b.desc, b.avail, b.used) == (a.desc, a.avail, a.used);
                    if !can_log || !vq.addr_set || !same(&vq.addr) {
                        return Err(EINVAL);
                    }
                    vq.addr = a;
                    return Ok(());
                }
                dev.set_vq_address(idx, a.desc, a.avail, a.used);
                let vq = self.vq(idx);
                vq.addr = a;
                vq.addr_set = true;
                Ok(())
            }
            Request::SetVringHva(a) => {
                let idx = self.vq_index(dev, a.index)?;
                if self.running() {
                    return Err(EINVAL);
                }
                // The same layout in the VMM's address space: the core reads
                // and writes the ring indexes there as single accesses.
                check_ring_layout(&a, self.packed(), 0)?;
                let vq = self.vq(idx);
                vq.hva = a;
                vq.hva_set = true;
                Ok(())
            }
            Request::GetVringBase { index } => {
                let idx = self.vq_index(dev, index)?;
                let base = if self.status & status::DRIVER_OK != 0 {
                    // Split rings: bits 16-31 are not the device's to set.
                    let mask = if self.packed() { u32::MAX } else { 0xffff };
                    dev.get_vq_base(idx) & mask
                } else {
                    self.vq(idx).base
                };
                reply.put(&index.to_ne_bytes())?;
                reply.put(&base.to_ne_bytes())
            }
            Request::SetVringEnable { index, num } => {
                let idx = self.vq_index(dev, index)?;
                if num > 1 {
                    return Err(EINVAL);
                }
                // DRIVER_OK checked every enabled queue; a queue enabled
                // later gets the same check.
                let packed = self.packed();
                let driver_ok = self.status & status::DRIVER_OK != 0;
                let vq = self.vq(idx);
                if num == 1 && driver_ok && !vq.runnable(packed) {
                    return Err(EINVAL);
                }
                dev.set_vq_ready(idx, num == 1);
                self.vq(idx).ready = num == 1;
                Ok(())
            }
            // Before DRIVER_OK there is nothing to stop or continue:
            // SUSPEND and RESUME succeed and do nothing, as on vhost-vdpa
            // (`vhost_vdpa_suspend()`/`vhost_vdpa_resume()` of 6.12).
            Request::Suspend => {
                if self.status & status::DRIVER_OK == 0 {
                    return Ok(());
                }
                if !self.suspended {
                    dev.suspend()?;
                    self.suspended = true;
                }
                Ok(())
            }
            Request::Resume => {
                if self.status & status::DRIVER_OK == 0 {
                    return Ok(());
                }
                if self.suspended {
                    dev.resume()?;
                    self.suspended = false;
                }
                Ok(())
            }
        }
    }

    fn set_status(&mut self, dev: &mut dyn Backend, new: u8) -> Result<(), Errno> {
        use status::*;
        if new == 0 {
            self.reset(dev);
            return Ok(());
        }
        // As on vhost-vdpa (`vhost_vdpa_set_status()` of 6.12), the status
        // written is compared with the one GET_STATUS reports, the device's
        // NEEDS_RESET included: drivers read it, OR in a bit and write it
        // back. Clearing a bit other than by writing 0 (NEEDS_RESET too) is
        // not a transition a driver may make. NEEDS_RESET is the device's
        // bit: written, it is accepted and not stored; only a reset clears
        // it.
        if (self.status | dev.device_status()) & !new != 0 {
            return Err(EINVAL);
        }
        let new = new & !NEEDS_RESET;
        let old = self.status;
        let added = new & !old;
        if added & DRIVER_OK != 0 {
            if new & FEATURES_OK == 0 {
                return Err(EINVAL);
            }
            let n = dev.vq_count() as usize;
            let packed = self.packed();
            let bad = |vq: &VqConfig| vq.ready && !vq.runnable(packed);
            if self.vqs.as_ref().iter().take(n).any(bad) {
                return Err(EINVAL);
            }
        }
        let mut accepted = new;
        if added & FEATURES_OK != 0 {
            let need = VIRTIO_F_VERSION_1 | VIRTIO_F_ACCESS_PLATFORM;
            // A FEATURES_OK the device cannot accept leaves the bit clear
            // (virtio 1.x, 3.1.1): the driver reads the status back.
            // `VHOST_F_LOG_ALL` is the core's: the parent never sees it.
            let device_features = self.features & !VHOST_F_LOG_ALL;
            if self.features & need != need || !dev.set_driver_features(device_features) {
                accepted &= !FEATURES_OK;
                if added & DRIVER_OK != 0 {
                    return Err(EINVAL);
                }
            }
        }
        if accepted != old {
            if let Err(e) = dev.set_status(accepted) {
                // A device that refuses FEATURES_OK keeps it clear, as one
                // that refuses the features; any other refusal fails.
                if added & FEATURES_OK == 0 || added & DRIVER_OK != 0 {
                    return Err(e);
                }
                accepted &= !FEATURES_OK;
            }
        }
        if accepted & !old & DRIVER_OK != 0 {
            dev.start()?;
        }
        self.status = accepted;
        Ok(())
    }
}
