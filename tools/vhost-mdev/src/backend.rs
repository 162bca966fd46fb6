// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The driver-facing abstraction over vhost back ends: a vhost-mdev
//! instance ([`crate::device::MdevDevice`]) or a vhost-vdpa device
//! ([`crate::vdpa::VhostVdpa`]).

use std::fs::File;

use vmm_sys_util::eventfd::EventFd;

use crate::error::{Errno, Error, Result};
use crate::msg::{reply_size, Reply, Request};
use crate::uapi::{request_name, MemRegion, VhostVringAddr, VhostVringState};
use crate::vfio::DmaMapper;

fn unexpected(req: &Request, r: Reply) -> Error {
    Error::Protocol(format!("{}: unexpected reply {r:?}", req.name()))
}

/// A vhost back end driven through typed requests.
///
/// Implementors provide [`VhostBackend::request`], the eventfd wiring and
/// DMA mapping; the typed helpers are provided on top of `request`.
pub trait VhostBackend: DmaMapper {
    /// A short description for messages (`vhost-mdev UUID`, `/dev/vhost-vdpa-0`).
    fn describe(&self) -> String;

    /// Sends one request and returns its decoded reply.
    fn request(&self, req: &Request) -> Result<Reply>;

    /// Attaches (or with `None` detaches) the call eventfd of queue `index`.
    fn set_vring_call(&self, index: u32, fd: Option<&EventFd>) -> Result<()>;

    /// Attaches (or detaches) the config-change eventfd.
    fn set_config_call(&self, fd: Option<&EventFd>) -> Result<()>;

    /// Binds (or unbinds) an eventfd that kicks queue `index` when written.
    fn set_vring_kick(&self, index: u32, fd: Option<&EventFd>) -> Result<()>;

    /// Kicks queue `index` directly, without an eventfd. Back ends without
    /// a direct notification path return [`Error::Unsupported`].
    fn notify(&self, index: u16) -> Result<()>;

    /// Whether [`VhostBackend::notify`] is available.
    fn supports_notify(&self) -> bool {
        true
    }

    /// Resets the device (status 0, or the transport's own reset).
    fn reset(&self) -> Result<()> {
        self.set_status(0)
    }

    /// `VHOST_GET_FEATURES`.
    fn get_features(&self) -> Result<u64> {
        let req = Request::GetFeatures;
        match self.request(&req)? {
            Reply::U64(v) => Ok(v),
            r => Err(unexpected(&req, r)),
        }
    }

    /// `VHOST_SET_FEATURES`.
    fn set_features(&self, features: u64) -> Result<()> {
        self.request(&Request::SetFeatures(features)).map(drop)
    }

    /// `VHOST_SET_OWNER`.
    fn set_owner(&self) -> Result<()> {
        self.request(&Request::SetOwner).map(drop)
    }

    /// `VHOST_SET_MEM_TABLE`: the regions the driver's DMA may reach, each
    /// an IOVA range (`guest_phys_addr`) and where this process sees it
    /// (`userspace_addr`); replaces the last table. At most
    /// [`crate::uapi::MAX_MEM_REGIONS`] regions, none empty or wrapping,
    /// no two IOVA ranges overlapping. A vhost-mdev parent that makes
    /// guest memory resident itself (the vDPA bridge) needs it before
    /// DRIVER_OK; the others accept and ignore it.
    fn set_mem_table(&self, regions: &[MemRegion]) -> Result<()> {
        self.request(&Request::SetMemTable(regions.to_vec()))
            .map(drop)
    }

    /// `VHOST_SET_LOG_BASE`: the dirty log (one bit per 4 KiB of IOVA, 64
    /// pages per little-endian `u64`) at user address `base` of this
    /// process, 0 for none; only a device that offers `VHOST_F_LOG_ALL`
    /// takes it. It covers the IOVAs of the last memory table.
    fn set_log_base(&self, base: u64) -> Result<()> {
        self.request(&Request::SetLogBase(base)).map(drop)
    }

    /// `VHOST_VDPA_GET_DEVICE_ID`.
    fn get_device_id(&self) -> Result<u32> {
        let req = Request::GetDeviceId;
        match self.request(&req)? {
            Reply::U32(v) => Ok(v),
            r => Err(unexpected(&req, r)),
        }
    }

    /// `VHOST_VDPA_GET_STATUS`.
    fn get_status(&self) -> Result<u8> {
        let req = Request::GetStatus;
        match self.request(&req)? {
            Reply::U8(v) => Ok(v),
            r => Err(unexpected(&req, r)),
        }
    }

    /// `VHOST_VDPA_SET_STATUS`.
    fn set_status(&self, status: u8) -> Result<()> {
        self.request(&Request::SetStatus(status)).map(drop)
    }

    /// `VHOST_VDPA_GET_CONFIG_SIZE`.
    fn get_config_size(&self) -> Result<u32> {
        let req = Request::GetConfigSize;
        match self.request(&req)? {
            Reply::U32(v) => Ok(v),
            r => Err(unexpected(&req, r)),
        }
    }

    /// `VHOST_VDPA_GET_CONFIG` of `len` bytes at `off`.
    fn get_config(&self, off: u32, len: u32) -> Result<Vec<u8>> {
        let req = Request::GetConfig { off, len };
        match self.request(&req)? {
            Reply::Config { data, .. } => Ok(data),
            r => Err(unexpected(&req, r)),
        }
    }

    /// `VHOST_VDPA_SET_CONFIG` of `data` at `off`.
    fn set_config(&self, off: u32, data: &[u8]) -> Result<()> {
        self.request(&Request::SetConfig {
            off,
            data: data.to_vec(),
        })
        .map(drop)
    }

    /// `VHOST_VDPA_GET_VRING_NUM`: the maximum queue size.
    fn get_vring_num(&self) -> Result<u16> {
        let req = Request::GetVringNum;
        match self.request(&req)? {
            Reply::U16(v) => Ok(v),
            r => Err(unexpected(&req, r)),
        }
    }

    /// `VHOST_VDPA_GET_VQS_COUNT`.
    fn get_vqs_count(&self) -> Result<u32> {
        let req = Request::GetVqsCount;
        match self.request(&req)? {
            Reply::U32(v) => Ok(v),
            r => Err(unexpected(&req, r)),
        }
    }

    /// `VHOST_SET_VRING_NUM`.
    fn set_vring_num(&self, index: u32, num: u32) -> Result<()> {
        self.request(&Request::SetVringNum(VhostVringState { index, num }))
            .map(drop)
    }

    /// `VHOST_SET_VRING_ADDR` (IOVAs).
    fn set_vring_addr(&self, addr: &VhostVringAddr) -> Result<()> {
        self.request(&Request::SetVringAddr(*addr)).map(drop)
    }

    /// `VHOST_VFIO_SET_VRING_HVA`: where this process sees the rings (a
    /// vhost-mdev instance requires it before DRIVER_OK: it updates the
    /// ring indexes there, as single stores).
    fn set_vring_hva(&self, addr: &VhostVringAddr) -> Result<()> {
        self.request(&Request::SetVringHva(*addr)).map(drop)
    }

    /// `VHOST_SET_VRING_BASE`.
    fn set_vring_base(&self, index: u32, base: u32) -> Result<()> {
        self.request(&Request::SetVringBase(VhostVringState { index, num: base }))
            .map(drop)
    }

    /// `VHOST_GET_VRING_BASE`.
    fn get_vring_base(&self, index: u32) -> Result<u32> {
        let req = Request::GetVringBase(index);
        match self.request(&req)? {
            Reply::VringState(s) => Ok(s.num),
            r => Err(unexpected(&req, r)),
        }
    }

    /// `VHOST_VDPA_SET_VRING_ENABLE`.
    fn set_vring_enable(&self, index: u32, enable: bool) -> Result<()> {
        self.request(&Request::SetVringEnable(VhostVringState {
            index,
            num: enable.into(),
        }))
        .map(drop)
    }

    /// `VHOST_VDPA_SUSPEND`.
    fn suspend(&self) -> Result<()> {
        self.request(&Request::Suspend).map(drop)
    }

    /// `VHOST_VDPA_RESUME`.
    fn resume(&self) -> Result<()> {
        self.request(&Request::Resume).map(drop)
    }
}

/// Issues a vhost request as an ioctl with the vhost-vdpa argument layout
/// and returns the reply payload (empty for requests without reply).
///
/// The argument buffer is the payload, extended to the reply size when the
/// reply is larger (`VHOST_VDPA_GET_CONFIG` returns header and data in
/// place).
pub fn ioctl_request(fd: &File, request: u64, payload: &[u8]) -> Result<Vec<u8>> {
    let reply_len = reply_size(request, payload);
    // The buffer covers the payload, the reply and the argument size encoded
    // in the request code, whichever is largest, so the kernel never reads
    // or writes past it whatever the request.
    let ioc_size = ((request >> 16) & 0x3fff) as usize;
    let mut buf = payload.to_vec();
    let len = buf.len().max(reply_len.unwrap_or(0)).max(ioc_size);
    buf.resize(len, 0);
    let arg = if buf.is_empty() {
        std::ptr::null_mut()
    } else {
        buf.as_mut_ptr()
    };
    // SAFETY: arg is null (requests without argument) or points to buf,
    // which is at least as large as the argument size encoded in the request
    // and the reply; buf outlives the call.
    let r = unsafe { vmm_sys_util::ioctl::ioctl_with_mut_ptr(fd, request as _, arg) };
    if r < 0 {
        return Err(Error::Request {
            request: request_label(request),
            errno: Errno::last(),
        });
    }
    buf.truncate(reply_len.unwrap_or(0));
    Ok(buf)
}

/// The name of a request for error messages.
pub fn request_label(request: u64) -> String {
    request_name(request).map_or_else(|| format!("request {request:#x}"), str::to_string)
}

/// Decodes a reply payload for a typed request.
pub(crate) fn decode_reply(req: &Request, payload: &[u8]) -> Result<Reply> {
    Reply::decode(req, payload)
}

impl<T: DmaMapper + ?Sized> DmaMapper for &T {
    unsafe fn map_dma(&self, iova: u64, size: u64, vaddr: u64) -> Result<()> {
        // SAFETY: forwarded; the caller upholds the contract.
        unsafe { (**self).map_dma(iova, size, vaddr) }
    }
    fn unmap_dma(&self, iova: u64, size: u64) -> Result<()> {
        (**self).unmap_dma(iova, size)
    }
}

impl<T: VhostBackend + ?Sized> VhostBackend for &T {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn request(&self, req: &Request) -> Result<Reply> {
        (**self).request(req)
    }
    fn set_vring_call(&self, index: u32, fd: Option<&EventFd>) -> Result<()> {
        (**self).set_vring_call(index, fd)
    }
    fn set_config_call(&self, fd: Option<&EventFd>) -> Result<()> {
        (**self).set_config_call(fd)
    }
    fn set_vring_kick(&self, index: u32, fd: Option<&EventFd>) -> Result<()> {
        (**self).set_vring_kick(index, fd)
    }
    fn notify(&self, index: u16) -> Result<()> {
        (**self).notify(index)
    }
    fn supports_notify(&self) -> bool {
        (**self).supports_notify()
    }
    fn reset(&self) -> Result<()> {
        (**self).reset()
    }
}
