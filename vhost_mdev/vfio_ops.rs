// SPDX-License-Identifier: GPL-2.0

//! The VFIO device ops of an instance: open and close, region reads and
//! writes, ioctls, and the removal request and unmap notifications.
//!
//! C header: [`include/linux/vfio.h`](srctree/include/linux/vfio.h).

use crate::errno::EINVAL;
use crate::instance::{InstanceState, Vdev};
use crate::irq::Kick;
use crate::lifecycle;
use crate::transport;
use crate::uapi::{region_offset, IRQ_REQ, REGION_MSG, REGION_NOTIFY, REGION_SHIFT};
use crate::vfio;
use kernel::c_str;
use kernel::ffi::c_long;
use kernel::page::PAGE_SIZE;
use kernel::prelude::*;
use kernel::uaccess::{UserSliceReader, UserSliceWriter};

/// The VFIO driver of every instance.
pub(crate) struct VhostVfio;

#[vtable]
impl vfio::Driver for VhostVfio {
    type Data = InstanceState;

    const NAME: &'static CStr = c_str!("vhost-mdev");

    /// The first open.
    fn open(dev: &Vdev) -> Result {
        lifecycle::open(dev)
    }

    /// The last close: stops the device.
    fn close(dev: &Vdev) {
        lifecycle::close(dev);
    }

    /// The message region's replies.
    fn read(dev: &Vdev, buf: UserSliceWriter, pos: u64) -> Result<usize> {
        let this = dev.data();
        if pos >> REGION_SHIFT == REGION_MSG && pos == 0 {
            transport::msg_read(&this.channel, buf)
        } else {
            Err(EINVAL)
        }
    }

    /// Messages (region 0) and kicks (region 1).
    fn write(dev: &Vdev, buf: UserSliceReader, pos: u64) -> Result<usize> {
        let this = dev.data();
        match pos >> REGION_SHIFT {
            REGION_MSG if pos == 0 => transport::msg_write(
                &this.channel,
                &this.rings,
                &this.log,
                &mut this.backend(),
                buf,
            ),
            REGION_NOTIFY => {
                transport::notify_index(buf, region_offset(pos), this.nvqs()).map(|idx| {
                    this.kick(idx);
                    2
                })
            }
            _ => Err(EINVAL),
        }
    }

    /// VFIO device ioctls and the vhost ioctl transport.
    fn ioctl(dev: &Vdev, cmd: u32, arg: usize) -> Result<c_long> {
        let this = dev.data();
        match cmd {
            vfio::VFIO_DEVICE_GET_INFO => transport::get_info(arg),
            vfio::VFIO_DEVICE_GET_REGION_INFO => {
                let nvqs = this.nvqs();
                let backend = this.backend();
                // Region 1 offers mmap when every queue has a doorbell page.
                let mmap = (0..nvqs).all(|i| backend.doorbell(i as u16).is_some());
                transport::get_region_info(arg, nvqs, mmap)
            }
            vfio::VFIO_DEVICE_GET_IRQ_INFO => this.irqs.get_irq_info(arg, this.nvqs()),
            vfio::VFIO_DEVICE_SET_IRQS => this.irqs.set_irqs(arg, this.nvqs()),
            vfio::VFIO_DEVICE_RESET => {
                let mut ch = this.channel.lock();
                ch.reset(&mut this.backend(), &this.log);
                this.rings.clear();
                Ok(0)
            }
            vfio::VFIO_DEVICE_IOEVENTFD => {
                let _guard = this.channel.lock();
                // SAFETY: under the state mutex; `this` lives until
                // `close`, which unbinds every ioeventfd.
                unsafe { this.irqs.ioeventfd(arg, this.nvqs(), this) }
            }
            _ => transport::vhost_ioctl(
                &this.channel,
                &this.rings,
                &this.log,
                &mut this.backend(),
                cmd,
                arg,
            ),
        }
    }

    /// A queue's doorbell page, mapped at its page of region 1 when the
    /// parent offers one (`get_vq_notification`): one page per mapping,
    /// shared, write-only.
    fn mmap(dev: &Vdev, vma: &vfio::Vma) -> Result {
        let this = dev.data();
        let page = PAGE_SIZE as u64;
        let off = vma.pgoff().checked_mul(page).ok_or(EINVAL)?;
        if off >> REGION_SHIFT != REGION_NOTIFY || vma.len() != page {
            return Err(EINVAL);
        }
        let idx = region_offset(off) / page;
        if idx >= u64::from(this.nvqs()) {
            return Err(EINVAL);
        }
        // Not under the state mutex: the caller holds the opener's mmap
        // lock, which requests take under that mutex (user copies).
        let addr = this.backend().doorbell(idx as u16).ok_or(EINVAL)?;
        // SAFETY: the parent keeps its doorbells while the instance exists
        // (the C ABI's rule), and the instance outlives every mapping: a
        // mapping holds the file open, and the instance goes after close.
        unsafe { vma.map_doorbell(addr) }
    }

    /// The device is being removed while open (called repeatedly while
    /// unregistering waits for its user to close it).
    fn request(dev: &Vdev, count: u32) {
        if count == 0 {
            dev.notice(c_str!(
                "instance removed while in use: asking the user to release it\n"
            ));
        }
        dev.data().status.requested(count);
        dev.data().irqs.signal(IRQ_REQ, 0);
    }

    /// An IOVA range goes away: while the device is open, and once more
    /// after `close` when iommufd destroys the access (`unmap(0, ~0)`; the
    /// cache is empty by then).
    fn dma_unmap(dev: &Vdev, iova: u64, length: u64) {
        let this = dev.data();
        // The state mutex is not taken here (see the locking rules of the
        // crate); the pin cache's lock is, which the data path never holds
        // across a call into VFIO.
        this.pins.unmap(iova, length);
        if let Some(f) = this.parent().ops().dma_unmap {
            // SAFETY: `priv_` is live while the device is registered.
            unsafe { f(this.priv_(), iova, length) };
        }
    }
}
