// SPDX-License-Identifier: GPL-2.0 OR MIT
//! A vhost-mdev instance opened as a VFIO device: vhost requests over
//! region 0 or as ioctls, kicks on region 1 or ioeventfds, interrupts on
//! VFIO IRQ eventfds.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard};

use uuid::Uuid;
use vfio_bindings::bindings::vfio as vb;
use vmm_sys_util::eventfd::EventFd;

use crate::backend::{decode_reply, ioctl_request, request_label, VhostBackend};
use crate::error::{Errno, Error, Result};
use crate::msg::{check_reply, encode_raw, reply_size, Reply, Request, HDR_SIZE};
use crate::sysfs::{Instance, Sysfs};
use crate::uapi::*;
use crate::vfio::{DeviceInfo, DmaMapper, IommuKind, IrqInfo, RegionInfo, VfioDevice};

/// How vhost requests reach the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `pwrite`/`pread` of `struct vhost_vfio_op` on region 0.
    Region,
    /// The vhost ioctls issued on the VFIO device fd.
    Ioctl,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Region => "region",
            Transport::Ioctl => "ioctl",
        })
    }
}

/// The system page size (the notify region's stride).
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

/// An open vhost-mdev instance.
#[derive(Debug)]
pub struct MdevDevice {
    vfio: VfioDevice,
    transport: AtomicU8,
    /// Serialises each region-0 write with the read of its reply.
    msg_lock: Mutex<()>,
    page_size: u64,
    label: String,
}

impl MdevDevice {
    /// Opens instance `uuid` with the given IOMMU back end; requests go over
    /// region 0 until [`MdevDevice::set_transport`] says otherwise.
    pub fn open(sysfs: &Sysfs, uuid: &Uuid, kind: IommuKind) -> Result<Self> {
        let inst = sysfs.instance(uuid)?;
        Self::open_instance(sysfs, &inst, kind)
    }

    /// Opens an instance found by [`Sysfs::instance`].
    pub fn open_instance(sysfs: &Sysfs, inst: &Instance, kind: IommuKind) -> Result<Self> {
        let vfio = VfioDevice::open(sysfs, inst, kind).map_err(|e| {
            if e.errno() != Some(libc::EBUSY) {
                return e;
            }
            match sysfs.holders(inst).unwrap_or_default().first() {
                Some(h) => Error::InUse(format!(
                    "instance {} is in use by {h}: stop that process first",
                    inst.uuid
                )),
                None => e,
            }
        })?;
        Ok(Self::from_vfio(vfio, format!("vhost-mdev {}", inst.uuid)))
    }

    /// Wraps an already opened VFIO device.
    pub fn from_vfio(vfio: VfioDevice, label: String) -> Self {
        MdevDevice {
            vfio,
            transport: AtomicU8::new(0),
            msg_lock: Mutex::new(()),
            page_size: page_size(),
            label,
        }
    }

    /// The underlying VFIO device.
    pub fn vfio(&self) -> &VfioDevice {
        &self.vfio
    }

    /// The transport requests currently use.
    pub fn transport(&self) -> Transport {
        if self.transport.load(Ordering::Relaxed) == 0 {
            Transport::Region
        } else {
            Transport::Ioctl
        }
    }

    /// Selects the transport for later requests.
    pub fn set_transport(&self, t: Transport) {
        self.transport
            .store(matches!(t, Transport::Ioctl).into(), Ordering::Relaxed);
    }

    /// `VFIO_DEVICE_GET_INFO`.
    pub fn info(&self) -> Result<DeviceInfo> {
        self.vfio.info()
    }

    /// `VFIO_DEVICE_GET_REGION_INFO`.
    pub fn region_info(&self, index: u32) -> Result<RegionInfo> {
        self.vfio.region_info(index)
    }

    /// `VFIO_DEVICE_GET_IRQ_INFO`.
    pub fn irq_info(&self, index: u32) -> Result<IrqInfo> {
        self.vfio.irq_info(index)
    }

    /// `VFIO_DEVICE_RESET`.
    pub fn vfio_reset(&self) -> Result<()> {
        self.vfio.reset()
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        // The guarded data is (); a panic while holding it leaves nothing
        // inconsistent.
        self.msg_lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes raw bytes at `offset` of region 0 (for bad-input tests);
    /// returns the byte count.
    pub fn msg_write(&self, offset: u64, bytes: &[u8]) -> Result<usize> {
        let _g = self.lock();
        self.vfio
            .write_at(region_offset(VHOST_VFIO_REGION_MSG) + offset, bytes)
    }

    /// Reads `len` raw bytes at `offset` of region 0 (for bad-input tests).
    pub fn msg_read(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let _g = self.lock();
        let mut buf = vec![0u8; len];
        let n = self
            .vfio
            .read_at(region_offset(VHOST_VFIO_REGION_MSG) + offset, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Sends a raw request over the current transport and returns the reply
    /// payload (empty when the request has no reply). The reply size is
    /// derived from the request code and payload; a region-0 reply is only
    /// read when `flags` has `VHOST_VFIO_NEED_REPLY`.
    ///
    /// On the ioctl transport `flags` is ignored, and the kernel reads the
    /// argument size the request code encodes (and for `SET_CONFIG` the
    /// length its header names) from `payload`.
    pub fn send(&self, request: u64, flags: u32, payload: &[u8]) -> Result<Vec<u8>> {
        match self.transport() {
            Transport::Ioctl => ioctl_request(self.vfio.file(), request, payload),
            Transport::Region => {
                let want = if flags & VHOST_VFIO_NEED_REPLY != 0 {
                    Some(reply_size(request, payload).unwrap_or(0))
                } else {
                    None
                };
                self.send_region(request, flags, payload, want)
            }
        }
    }

    fn send_region(
        &self,
        request: u64,
        flags: u32,
        payload: &[u8],
        reply: Option<usize>,
    ) -> Result<Vec<u8>> {
        let msg = encode_raw(request, flags, payload);
        let off = region_offset(VHOST_VFIO_REGION_MSG);
        let fail = |e: Error| match e.errno() {
            Some(errno) => Error::Request {
                request: request_label(request),
                errno: Errno(errno),
            },
            None => e,
        };
        let _g = self.lock();
        let n = self.vfio.write_at(off, &msg).map_err(fail)?;
        if n != msg.len() {
            return Err(Error::Protocol(format!(
                "{}: wrote {n} of {} bytes",
                request_label(request),
                msg.len()
            )));
        }
        let Some(size) = reply else {
            return Ok(Vec::new());
        };
        let mut buf = vec![0u8; HDR_SIZE + size];
        let n = self
            .vfio
            .read_at(off, &mut buf)
            .map_err(|e| match e.errno() {
                Some(errno) => Error::Request {
                    request: format!("{} (reply)", request_label(request)),
                    errno: Errno(errno),
                },
                None => e,
            })?;
        buf.truncate(n);
        check_reply(request, size, &buf)
    }

    /// Kicks queue `index` with a 2-byte write of `value` at `offset` of
    /// region 1 (for bad-input tests; [`VhostBackend::notify`] is the
    /// normal path).
    pub fn notify_raw(&self, offset: u64, value: &[u8]) -> Result<usize> {
        // Wrapping: bad-input tests pass offsets anywhere in the file.
        self.vfio.write_at(
            region_offset(VHOST_VFIO_REGION_NOTIFY).wrapping_add(offset),
            value,
        )
    }

    /// The offset of queue `index` in region 1.
    pub fn notify_offset(&self, index: u16) -> u64 {
        u64::from(index) * self.page_size
    }

    /// Attaches eventfds to the interrupts of queues `start..` (`-1`
    /// entries detach).
    pub fn set_vq_irqs(&self, start: u32, fds: &[i32]) -> Result<()> {
        self.vfio.set_irq_eventfds(VHOST_VFIO_IRQ_VQ, start, fds)
    }

    /// Attaches (or detaches) the request-IRQ eventfd, signalled when the
    /// instance is being removed.
    pub fn set_req_irq(&self, fd: Option<&EventFd>) -> Result<()> {
        self.vfio
            .set_irq_eventfds(VHOST_VFIO_IRQ_REQ, 0, &[fd.map_or(-1, |f| f.as_raw_fd())])
    }

    /// Fires IRQ vectors with a `DATA_NONE` trigger.
    pub fn trigger_irq(&self, index: u32, start: u32, count: u32) -> Result<()> {
        self.vfio.trigger_irq(index, start, count)
    }

    /// Detaches all eventfds of IRQ `index`.
    pub fn detach_irq(&self, index: u32) -> Result<()> {
        self.vfio.detach_irq(index)
    }

    /// Detaches the eventfds of every IRQ index.
    pub fn detach_all_irqs(&self) -> Result<()> {
        for index in [VHOST_VFIO_IRQ_VQ, VHOST_VFIO_IRQ_CONFIG, VHOST_VFIO_IRQ_REQ] {
            self.detach_irq(index)?;
        }
        Ok(())
    }

    /// Binds (or with `None` unbinds) an ioeventfd kicking queue `index`.
    pub fn set_ioeventfd(&self, index: u16, fd: Option<&EventFd>) -> Result<()> {
        self.vfio.ioeventfd_raw(
            region_offset(VHOST_VFIO_REGION_NOTIFY) + self.notify_offset(index),
            vb::VFIO_DEVICE_IOEVENTFD_16,
            index.into(),
            fd.map_or(-1, |f| f.as_raw_fd()),
        )
    }
}

impl DmaMapper for MdevDevice {
    unsafe fn map_dma(&self, iova: u64, size: u64, vaddr: u64) -> Result<()> {
        // SAFETY: the caller upholds the contract of DmaMapper::map_dma.
        unsafe { self.vfio.map_dma(iova, size, vaddr) }
    }

    fn unmap_dma(&self, iova: u64, size: u64) -> Result<()> {
        self.vfio.unmap_dma(iova, size)
    }
}

impl VhostBackend for MdevDevice {
    fn describe(&self) -> String {
        format!(
            "{} ({}, {} transport)",
            self.label,
            self.vfio.iommu_kind(),
            self.transport()
        )
    }

    fn request(&self, req: &Request) -> Result<Reply> {
        let payload = req.payload();
        let reply = match self.transport() {
            Transport::Ioctl => ioctl_request(self.vfio.file(), req.code(), &payload)?,
            Transport::Region => {
                self.send_region(req.code(), req.flags(), &payload, req.reply_size())?
            }
        };
        decode_reply(req, &reply)
    }

    fn reset(&self) -> Result<()> {
        self.vfio.reset()
    }

    fn set_vring_call(&self, index: u32, fd: Option<&EventFd>) -> Result<()> {
        self.set_vq_irqs(index, &[fd.map_or(-1, |f| f.as_raw_fd())])
    }

    fn set_config_call(&self, fd: Option<&EventFd>) -> Result<()> {
        self.vfio.set_irq_eventfds(
            VHOST_VFIO_IRQ_CONFIG,
            0,
            &[fd.map_or(-1, |f| f.as_raw_fd())],
        )
    }

    fn set_vring_kick(&self, index: u32, fd: Option<&EventFd>) -> Result<()> {
        let index = u16::try_from(index)
            .map_err(|_| Error::InvalidArgument(format!("queue index {index}")))?;
        self.set_ioeventfd(index, fd)
    }

    fn notify(&self, index: u16) -> Result<()> {
        let n = self
            .notify_raw(self.notify_offset(index), &index.to_ne_bytes())
            .map_err(|e| match e.errno() {
                Some(errno) => Error::Sys {
                    op: format!("kick of queue {index}"),
                    errno: Errno(errno),
                },
                None => e,
            })?;
        if n != 2 {
            return Err(Error::Protocol(format!("kick wrote {n} of 2 bytes")));
        }
        Ok(())
    }
}
