// SPDX-License-Identifier: GPL-2.0 OR MIT
//! A vhost-mdev instance opened as a VFIO device: vhost requests over
//! region 0 or as ioctls, kicks on region 1 or ioeventfds, interrupts on
//! VFIO IRQ eventfds.
//!
//! Where the regions lie in the device fd is what
//! `VFIO_DEVICE_GET_REGION_INFO` says at open ([`Regions`]), as VFIO asks of
//! its users: nothing here assumes the layout the kernel happens to use.

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

/// The two regions of a vhost-mdev instance, as
/// `VFIO_DEVICE_GET_REGION_INFO` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Regions {
    /// Region 0 (`VHOST_VFIO_REGION_MSG`): the messages.
    pub msg: RegionInfo,
    /// Region 1 (`VHOST_VFIO_REGION_NOTIFY`): the kicks, one page per queue.
    pub notify: RegionInfo,
}

impl Regions {
    /// Asks the device where its regions are.
    pub fn read(vfio: &VfioDevice) -> Result<Self> {
        Self::new(
            vfio.region_info(VHOST_VFIO_REGION_MSG)?,
            vfio.region_info(VHOST_VFIO_REGION_NOTIFY)?,
        )
    }

    /// Checks that `msg` and `notify` are the regions of a vhost-mdev
    /// device: region 0 readable and writable and large enough for a
    /// message header, region 1 writable.
    pub fn new(msg: RegionInfo, notify: RegionInfo) -> Result<Self> {
        let rw = vb::VFIO_REGION_INFO_FLAG_READ | vb::VFIO_REGION_INFO_FLAG_WRITE;
        if msg.flags & rw != rw || msg.size < HDR_SIZE as u64 {
            return Err(Error::Protocol(format!(
                "region {} (flags {:#x}, {} bytes) is not a vhost-mdev message region: \
                 is this a vfio-vhost device?",
                msg.index, msg.flags, msg.size
            )));
        }
        if notify.flags & vb::VFIO_REGION_INFO_FLAG_WRITE == 0 {
            return Err(Error::Protocol(format!(
                "region {} (flags {:#x}) is not a vhost-mdev notify region: \
                 is this a vfio-vhost device?",
                notify.index, notify.flags
            )));
        }
        Ok(Regions { msg, notify })
    }
}

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
    regions: Regions,
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
        Self::from_vfio(vfio, format!("vhost-mdev {}", inst.uuid))
    }

    /// Wraps an already opened VFIO device; asks it where its regions are.
    pub fn from_vfio(vfio: VfioDevice, label: String) -> Result<Self> {
        let regions = Regions::read(&vfio)?;
        Ok(Self::with_regions(vfio, label, regions))
    }

    fn with_regions(vfio: VfioDevice, label: String, regions: Regions) -> Self {
        MdevDevice {
            vfio,
            transport: AtomicU8::new(0),
            msg_lock: Mutex::new(()),
            page_size: page_size(),
            regions,
            label,
        }
    }

    /// Where the regions are in the device fd (`VFIO_DEVICE_GET_REGION_INFO`
    /// at open).
    pub fn regions(&self) -> &Regions {
        &self.regions
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
            .write_at(self.regions.msg.offset.wrapping_add(offset), bytes)
    }

    /// Reads `len` raw bytes at `offset` of region 0 (for bad-input tests).
    pub fn msg_read(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let _g = self.lock();
        let mut buf = vec![0u8; len];
        let n = self
            .vfio
            .read_at(self.regions.msg.offset.wrapping_add(offset), &mut buf)?;
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
        let off = self.regions.msg.offset;
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
        self.vfio
            .write_at(self.regions.notify.offset.wrapping_add(offset), value)
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
            self.regions.notify.offset + self.notify_offset(index),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::os::unix::fs::FileExt;

    /// A scratch file, already unlinked.
    fn scratch(what: &str) -> File {
        let path = std::env::temp_dir().join(format!(
            "vhost-mdev-regions-{}-{what}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let f = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .expect("scratch file");
        std::fs::remove_file(&path).expect("unlink scratch file");
        f
    }

    fn region(index: u32, flags: u32, size: u64, offset: u64) -> RegionInfo {
        RegionInfo {
            index,
            flags,
            size,
            offset,
        }
    }

    const RW: u32 = vb::VFIO_REGION_INFO_FLAG_READ | vb::VFIO_REGION_INFO_FLAG_WRITE;

    /// Region info that is not the kernel's layout (region 0 not at 0,
    /// region 1 not at `1 << 40`): messages and kicks go where it says.
    #[test]
    fn requests_and_kicks_go_where_region_info_says() {
        let page = page_size();
        let (msg_off, notify_off) = (0x3000, 0x20_0000);
        let regions = Regions::new(
            region(0, RW, 4096, msg_off),
            region(1, vb::VFIO_REGION_INFO_FLAG_WRITE, 2 * page, notify_off),
        )
        .expect("regions");
        // A "device fd" that is a plain file: pwrite lands where it aims.
        let fd = scratch("device");
        let view = fd.try_clone().expect("dup");
        let vfio = VfioDevice::from_type1_fds(scratch("container"), scratch("group"), fd, "fake");
        let dev = MdevDevice::with_regions(vfio, "fake".into(), regions);
        assert_eq!(dev.regions(), &regions);

        dev.send(VHOST_SET_OWNER, 0, &[]).expect("SET_OWNER");
        let msg = encode_raw(VHOST_SET_OWNER, 0, &[]);
        let mut got = vec![0u8; msg.len()];
        view.read_exact_at(&mut got, msg_off).expect("read back");
        assert_eq!(got, msg, "the request at region 0's offset");

        dev.notify(1).expect("kick");
        let mut kick = [0u8; 2];
        view.read_exact_at(&mut kick, notify_off + page)
            .expect("read back");
        assert_eq!(kick, 1u16.to_ne_bytes(), "the kick at region 1's offset");

        dev.msg_write(8, &[0xaa]).expect("raw write");
        let mut b = [0u8; 1];
        view.read_exact_at(&mut b, msg_off + 8).expect("read back");
        assert_eq!(b, [0xaa]);
        // Nothing else was written: the file ends with the kick, and the
        // kernel layout's offsets (0 for region 0) hold nothing.
        let len = view.metadata().expect("stat").len();
        assert_eq!(len, notify_off + page + 2);
        let mut head = [0xffu8; 16];
        view.read_exact_at(&mut head, 0).expect("read");
        assert_eq!(head, [0u8; 16]);
    }

    #[test]
    fn regions_that_are_not_vhost_mdev_s_are_refused() {
        let w = vb::VFIO_REGION_INFO_FLAG_WRITE;
        let notify = region(1, w, 4096, 1 << 20);
        for msg in [
            region(0, w, 4096, 0),
            region(0, vb::VFIO_REGION_INFO_FLAG_READ, 4096, 0),
            region(0, RW, HDR_SIZE as u64 - 1, 0),
        ] {
            let e = Regions::new(msg, notify).unwrap_err();
            assert!(matches!(e, Error::Protocol(_)), "{msg:?}: {e}");
        }
        let e = Regions::new(region(0, RW, 4096, 0), region(1, 0, 4096, 1 << 20)).unwrap_err();
        assert!(e.to_string().contains("notify region"), "{e}");
        assert!(Regions::new(region(0, RW, 4096, 0), notify).is_ok());
    }
}
