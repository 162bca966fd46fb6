// SPDX-License-Identifier: GPL-2.0

//! The transports of vhost requests: messages on region 0 (one `pwrite`
//! per request, `pread` for the reply) and ioctls on the device fd; kicks on
//! region 1; the VFIO ioctls that describe the regions.
//!
//! Every request is checked by the device model of [`proto`] and then
//! mapped onto the parent's device ops ([`ParentBackend`]).

use crate::backend::ParentBackend;
use crate::dirty::{self, DirtyLog};
use crate::errno::{enodata, E2BIG, EINVAL, ENOTTY};
use crate::proto::{self, Model, Reply, VqConfig};
use crate::rings::RingMap;
use crate::uapi::{NUM_IRQS, NUM_REGIONS, REGION_MSG, REGION_NOTIFY, REGION_SHIFT};
use crate::vfio::{self, UserArg};
use kernel::ffi::c_long;
use kernel::page::PAGE_SIZE;
use kernel::prelude::*;
use kernel::sync::Mutex;
use kernel::uaccess::{UserSlice, UserSliceReader, UserSliceWriter};

/// Converts a protocol errno into a kernel error.
fn err(e: proto::Errno) -> Error {
    Error::from_errno(-e)
}

/// The per-queue configuration of the model, one per queue of the parent.
pub(crate) struct Vqs(KVec<VqConfig>);

impl AsRef<[VqConfig]> for Vqs {
    fn as_ref(&self) -> &[VqConfig] {
        &self.0
    }
}

impl AsMut<[VqConfig]> for Vqs {
    fn as_mut(&mut self) -> &mut [VqConfig] {
        &mut self.0
    }
}

/// A staged reply of the message transport.
struct Staged {
    request: u64,
    len: usize,
}

/// Which transport a request came on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    Message { need_reply: bool },
    Ioctl,
}

/// The device model and the transports' buffers, serialised by the
/// instance's state mutex.
pub(crate) struct Channel {
    /// The device model, with one queue configuration per queue of the
    /// parent (allocated at open, see [`Channel::open`]).
    model: Model<Vqs>,
    /// The reply slot (region 0 reads).
    staged: Option<Staged>,
    /// Bytes of the staged reply (`MAX_PAYLOAD` bytes).
    reply: KVec<u8>,
    /// The reply of an ioctl, copied out before the ioctl returns
    /// (`MAX_PAYLOAD` bytes). Apart from `reply`, so that an ioctl between
    /// a region-0 request and its `pread` leaves the staged reply alone.
    ioctl_reply: KVec<u8>,
    /// The message being written, copied from userspace (`MSG_REGION_SIZE`
    /// bytes).
    msg: KVec<u8>,
    /// The dirty log's user address (`VHOST_SET_LOG_BASE`), 0 for none.
    log_base: u64,
    /// The highest IOVA of the last memory table (the log covers up to
    /// it), `None` for none or an empty one.
    table_last: Option<u64>,
}

impl Channel {
    pub(crate) fn new() -> Result<Self> {
        Ok(Channel {
            model: Model::new(Vqs(KVec::new())),
            staged: None,
            reply: KVec::from_elem(0u8, proto::MAX_PAYLOAD, GFP_KERNEL)?,
            ioctl_reply: KVec::from_elem(0u8, proto::MAX_PAYLOAD, GFP_KERNEL)?,
            msg: KVec::from_elem(0u8, proto::MSG_REGION_SIZE, GFP_KERNEL)?,
            log_base: 0,
            table_last: None,
        })
    }

    /// Sizes the model for the `nvqs` queues the parent has at this open
    /// (a parent may change its count while the device is closed); the
    /// model is reset (the last close reset the device).
    pub(crate) fn open(&mut self, nvqs: usize) -> Result {
        self.model.vqs = Vqs(KVec::from_elem(VqConfig::EMPTY, nvqs, GFP_KERNEL)?);
        self.log_base = 0;
        self.table_last = None;
        Ok(())
    }

    /// Drops an unread reply.
    pub(crate) fn discard_reply(&mut self) {
        self.staged = None;
    }

    /// Resets the device (the parent's worker is quiet on return), drops
    /// an unread reply and the dirty log.
    pub(crate) fn reset(&mut self, ops: &mut ParentBackend<'_>, log: &DirtyLog) {
        self.discard_reply();
        self.model.reset(ops);
        self.log_base = 0;
        log.clear();
    }

    /// Runs one decoded request; returns the reply length (in `reply` for
    /// the message transport, `ioctl_reply` for ioctls).
    fn dispatch(
        &mut self,
        rings: &RingMap,
        log: &DirtyLog,
        ops: &mut ParentBackend<'_>,
        request: u64,
        payload_len: usize,
        via: Via,
    ) -> Result<usize> {
        // The payload is in `msg` after the header.
        let reply_buf = match via {
            Via::Message { .. } => &mut self.reply,
            Via::Ioctl => &mut self.ioctl_reply,
        };
        let (model, msg) = (&mut self.model, &self.msg);
        let payload = &msg[proto::HDR_SIZE..proto::HDR_SIZE + payload_len];
        let req = proto::decode(request, payload).map_err(err)?;
        if let Via::Message { need_reply } = via {
            if need_reply != req.has_reply() {
                return Err(EINVAL);
            }
        }
        let hva = matches!(req, proto::Request::SetVringHva(_));
        if hva {
            rings.check_sender()?;
        }
        // A new memory table while a log is given: the log is pinned
        // again for the table's size first (QEMU resizes its log before it
        // sends a larger table); a refusal changes nothing.
        let table_log = match req {
            proto::Request::SetMemTable(t) if self.log_base != 0 => {
                Some(log.stage(self.log_base, dirty::table_last(&t))?)
            }
            _ => None,
        };
        let mut reply = Reply::new(&mut reply_buf[..]);
        model.handle(ops, &req, &mut reply).map_err(err)?;
        let len = reply.len();
        if hva {
            rings.adopt_sender();
        }
        match req {
            proto::Request::SetLogBase(base) => {
                // The model checked it; the log is pinned now, and a
                // refusal changes nothing.
                log.check_owner()?;
                let staged = match base {
                    0 => None,
                    b => Some(log.stage(b, self.table_last)?),
                };
                log.install(staged);
                self.log_base = base;
            }
            proto::Request::SetMemTable(t) => {
                self.table_last = dirty::table_last(&t);
                if table_log.is_some() {
                    log.install(table_log);
                }
            }
            _ => {}
        }
        if req == proto::Request::SetStatus(0) {
            // A reset discards an unread reply, on either transport, the
            // rings and the dirty log (the worker is quiet).
            self.staged = None;
            self.log_base = 0;
            rings.clear();
            log.clear();
        } else if !req.has_reply() {
            rings.update(&self.model);
            log.update(&self.model, self.log_base != 0);
        }
        Ok(len)
    }
}

/// `pwrite` of a message on region 0.
pub(crate) fn msg_write(
    channel: &Mutex<Channel>,
    rings: &RingMap,
    log: &DirtyLog,
    ops: &mut ParentBackend<'_>,
    mut buf: UserSliceReader,
) -> Result<usize> {
    let count = buf.len();
    if !(proto::HDR_SIZE..=proto::MSG_REGION_SIZE).contains(&count) {
        return Err(EINVAL);
    }
    let mut ch = channel.lock();
    // Any new write discards an unread reply.
    ch.discard_reply();
    buf.read_slice(&mut ch.msg[..count])?;
    let (hdr, _) = proto::parse_message(&ch.msg[..count]).map_err(err)?;
    let need_reply = hdr.flags & proto::NEED_REPLY != 0;
    let len = ch.dispatch(
        rings,
        log,
        ops,
        hdr.request,
        hdr.size as usize,
        Via::Message { need_reply },
    )?;
    if need_reply {
        ch.staged = Some(Staged {
            request: hdr.request,
            len,
        });
    }
    Ok(count)
}

/// `pread` of the staged reply on region 0.
pub(crate) fn msg_read(channel: &Mutex<Channel>, mut buf: UserSliceWriter) -> Result<usize> {
    let count = buf.len();
    let mut ch = channel.lock();
    let staged = ch.staged.as_ref().ok_or_else(enodata)?;
    let (request, len) = (staged.request, staged.len);
    if count != proto::HDR_SIZE + len {
        return Err(EINVAL);
    }
    let hdr = proto::Header {
        request,
        flags: 0,
        size: len as u32,
    };
    buf.write_slice(&hdr.encode())?;
    buf.write_slice(&ch.reply[..len])?;
    ch.staged = None;
    Ok(count)
}

/// A 2-byte write of the queue index at `index * PAGE_SIZE` of region 1:
/// returns the queue to kick.
pub(crate) fn notify_index(mut buf: UserSliceReader, off: u64, nvqs: u32) -> Result<u16> {
    if buf.len() != 2 || off % PAGE_SIZE as u64 != 0 {
        return Err(EINVAL);
    }
    let idx = off / PAGE_SIZE as u64;
    if idx >= u64::from(nvqs) {
        return Err(EINVAL);
    }
    let mut v = [0u8; 2];
    buf.read_slice(&mut v)?;
    if u64::from(u16::from_ne_bytes(v)) != idx {
        return Err(EINVAL);
    }
    Ok(idx as u16)
}

/// A vhost request issued as an ioctl on the device fd.
pub(crate) fn vhost_ioctl(
    channel: &Mutex<Channel>,
    rings: &RingMap,
    log: &DirtyLog,
    ops: &mut ParentBackend<'_>,
    cmd: u32,
    arg: usize,
) -> Result<c_long> {
    let fixed = proto::fixed_payload_size(cmd).ok_or(ENOTTY)?;
    let mut ch = channel.lock();
    let mut reader = UserSlice::new(arg, proto::MAX_PAYLOAD).reader();
    let mut len = fixed;
    reader.read_slice(&mut ch.msg[proto::HDR_SIZE..proto::HDR_SIZE + fixed])?;
    if cmd == proto::req::SET_CONFIG {
        // struct vhost_vdpa_config: the data follows the header.
        let h = proto::HDR_SIZE;
        let clen = u32::from_ne_bytes([ch.msg[h + 4], ch.msg[h + 5], ch.msg[h + 6], ch.msg[h + 7]])
            as usize;
        if clen > proto::MAX_PAYLOAD - proto::CONFIG_HDR_SIZE {
            return Err(EINVAL);
        }
        let start = h + proto::CONFIG_HDR_SIZE;
        reader.read_slice(&mut ch.msg[start..start + clen])?;
        len += clen;
    } else if cmd == proto::req::SET_MEM_TABLE {
        // struct vhost_memory: the regions follow the header. A count
        // above the limit is refused before anything more is read.
        let h = proto::HDR_SIZE;
        let n =
            u32::from_ne_bytes([ch.msg[h], ch.msg[h + 1], ch.msg[h + 2], ch.msg[h + 3]]) as usize;
        if n > proto::MAX_MEM_REGIONS {
            return Err(E2BIG);
        }
        let rlen = n * proto::MEM_REGION_SIZE;
        let start = h + proto::MEM_TABLE_HDR_SIZE;
        reader.read_slice(&mut ch.msg[start..start + rlen])?;
        len += rlen;
    }
    let rlen = ch.dispatch(rings, log, ops, u64::from(cmd), len, Via::Ioctl)?;
    if rlen > 0 {
        UserSlice::new(arg, rlen)
            .writer()
            .write_slice(&ch.ioctl_reply[..rlen])?;
    }
    Ok(0)
}

/// `VFIO_DEVICE_GET_INFO`.
pub(crate) fn get_info(arg: usize) -> Result<c_long> {
    let mut info = vfio::DeviceInfo::read_from(arg)?;
    info.flags = vfio::VFIO_DEVICE_FLAGS_RESET;
    info.num_regions = NUM_REGIONS;
    info.num_irqs = NUM_IRQS;
    info.write_to(arg)?;
    Ok(0)
}

/// `VFIO_DEVICE_GET_REGION_INFO`; `mmap`: region 1 can be mapped (every
/// queue has a doorbell page).
pub(crate) fn get_region_info(arg: usize, nvqs: u32, mmap: bool) -> Result<c_long> {
    let mut info = vfio::RegionInfo::read_from(arg)?;
    match u64::from(info.index) {
        REGION_MSG => {
            info.flags = vfio::VFIO_REGION_INFO_FLAG_READ | vfio::VFIO_REGION_INFO_FLAG_WRITE;
            info.size = proto::MSG_REGION_SIZE as u64;
        }
        REGION_NOTIFY => {
            info.flags = vfio::VFIO_REGION_INFO_FLAG_WRITE;
            if mmap {
                info.flags |= vfio::VFIO_REGION_INFO_FLAG_MMAP;
            }
            info.size = u64::from(nvqs) * PAGE_SIZE as u64;
        }
        _ => return Err(EINVAL),
    }
    info.offset = u64::from(info.index) << REGION_SHIFT;
    info.cap_offset = 0;
    info.write_to(arg)?;
    Ok(0)
}
