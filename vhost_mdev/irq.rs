// SPDX-License-Identifier: GPL-2.0

//! IRQs (virtqueue, config and request eventfds) and the ioeventfds bound
//! to the notify region.
//!
//! C header: [`include/linux/vfio.h`](srctree/include/linux/vfio.h).

use crate::errno::{EBADF, EINVAL};
use crate::eventfd::EventFd;
use crate::proto;
use crate::spinlock_irq::{new_spinlock_irq, SpinLockIrq};
use crate::uapi::{
    region_offset, IRQ_CONFIG, IRQ_REQ, IRQ_VQ, NUM_IRQS, REGION_NOTIFY, REGION_SHIFT,
};
use crate::vfio::{self, UserArg, Virqfd, VirqfdHandler};
use kernel::ffi::c_long;
use kernel::page::PAGE_SIZE;
use kernel::prelude::*;
use kernel::uaccess::UserSlice;

const NONE: Option<EventFd> = None;

/// The IRQ eventfds, swapped by `SET_IRQS` and signalled by the device.
struct Slots {
    vq: [Option<EventFd>; proto::MAX_VQS],
    config: Option<EventFd>,
    req: Option<EventFd>,
}

impl Slots {
    fn slot(&mut self, index: u32, i: usize) -> &mut Option<EventFd> {
        match index {
            IRQ_VQ => &mut self.vq[i],
            IRQ_CONFIG => &mut self.config,
            _ => &mut self.req,
        }
    }
}

/// What a bound ioeventfd kicks.
pub(crate) trait Kick: Sync {
    /// Kicks queue `idx` (checked `< nvqs`), in atomic context.
    fn kick(&self, idx: u16);
}

/// An instance's IRQs and ioeventfds.
#[pin_data]
pub(crate) struct Irqs {
    #[pin]
    fds: SpinLockIrq<Slots>,
    /// Ioeventfds bound to the notify region, per queue; bound and unbound
    /// under the instance's state mutex.
    ioeventfds: [Virqfd; proto::MAX_VQS],
}

/// Number of IRQs of `index` for `nvqs` queues.
fn irq_count(index: u32, nvqs: u32) -> u32 {
    match index {
        IRQ_VQ => nvqs,
        IRQ_CONFIG | IRQ_REQ => 1,
        _ => 0,
    }
}

impl Irqs {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Irqs {
            fds <- new_spinlock_irq!(Slots {
                vq: [NONE; proto::MAX_VQS],
                config: None,
                req: None,
            }, "vhost_mdev_irqs"),
            ioeventfds: [const { Virqfd::new() }; proto::MAX_VQS],
        })
    }

    /// Signals IRQ `i` of `index`, if an eventfd is attached.
    pub(crate) fn signal(&self, index: u32, i: usize) {
        let mut fds = self.fds.lock();
        if let Some(e) = fds.slot(index, i) {
            e.signal();
        }
    }

    /// `VFIO_DEVICE_GET_IRQ_INFO`.
    pub(crate) fn get_irq_info(&self, arg: usize, nvqs: u32) -> Result<c_long> {
        let mut info = vfio::IrqInfo::read_from(arg)?;
        if info.index >= NUM_IRQS {
            return Err(EINVAL);
        }
        info.flags = vfio::VFIO_IRQ_INFO_EVENTFD;
        info.count = irq_count(info.index, nvqs);
        info.write_to(arg)?;
        Ok(0)
    }

    /// `VFIO_DEVICE_SET_IRQS`: attach, detach or fire eventfds.
    pub(crate) fn set_irqs(&self, arg: usize, nvqs: u32) -> Result<c_long> {
        let mut hdr = vfio::IrqSet::read_from(arg)?;
        let num = irq_count(hdr.index, nvqs);
        let data_size = vfio::prepare_irq_set(&mut hdr, num, NUM_IRQS)?;
        let action = hdr.flags & vfio::VFIO_IRQ_SET_ACTION_TYPE_MASK;
        if action != vfio::VFIO_IRQ_SET_ACTION_TRIGGER {
            return Err(EINVAL);
        }
        let (index, start, count) = (hdr.index, hdr.start as usize, hdr.count as usize);
        let dtype = hdr.flags & vfio::VFIO_IRQ_SET_DATA_TYPE_MASK;
        // `validate_and_prepare` checked start + count <= the IRQ count
        // (at most MAX_VQS), so `data_size <= 4 * MAX_VQS`.
        let mut data = [0u8; 4 * proto::MAX_VQS];
        if data_size > data.len() {
            return Err(EINVAL);
        }
        UserSlice::new(arg.wrapping_add(vfio::IrqSet::MINSZ), data_size)
            .reader()
            .read_slice(&mut data[..data_size])?;

        if dtype == vfio::VFIO_IRQ_SET_DATA_NONE && count == 0 {
            // Detach every eventfd of the index.
            let mut old = [NONE; proto::MAX_VQS + 1];
            let n = irq_count(index, nvqs) as usize;
            let mut fds = self.fds.lock();
            for (i, o) in old.iter_mut().enumerate().take(n) {
                *o = fds.slot(index, i).take();
            }
            drop(fds);
            drop(old);
            return Ok(0);
        }
        if dtype == vfio::VFIO_IRQ_SET_DATA_NONE || dtype == vfio::VFIO_IRQ_SET_DATA_BOOL {
            for i in 0..count {
                if dtype == vfio::VFIO_IRQ_SET_DATA_NONE || data[i] != 0 {
                    self.signal(index, start + i);
                }
            }
            return Ok(0);
        }
        // DATA_EVENTFD: take every new eventfd first, so that a bad fd
        // changes nothing.
        let mut new = [NONE; proto::MAX_VQS];
        let mut detach = [false; proto::MAX_VQS];
        for i in 0..count {
            let fd = i32::from_ne_bytes([
                data[4 * i],
                data[4 * i + 1],
                data[4 * i + 2],
                data[4 * i + 3],
            ]);
            if fd == -1 {
                detach[i] = true;
            } else if fd < 0 {
                return Err(EBADF);
            } else {
                new[i] = Some(EventFd::from_fd(fd)?);
            }
        }
        let mut old = [NONE; proto::MAX_VQS];
        let mut fds = self.fds.lock();
        for i in 0..count {
            if detach[i] || new[i].is_some() {
                let slot = fds.slot(index, start + i);
                old[i] = core::mem::replace(slot, new[i].take());
            }
        }
        drop(fds);
        // The old contexts are put outside the spinlock; the signaller holds
        // the lock while it signals, so none is in use any more.
        drop(old);
        Ok(0)
    }

    /// `VFIO_DEVICE_IOEVENTFD`: binds (or with fd -1 unbinds) an eventfd to
    /// a queue's notify offset; its signals kick `target`.
    ///
    /// # Safety
    ///
    /// The caller holds the instance's state mutex; `target` lives until
    /// [`Self::unbind_all`] returned.
    pub(crate) unsafe fn ioeventfd<H: VirqfdHandler>(
        &self,
        arg: usize,
        nvqs: u32,
        target: &H,
    ) -> Result<c_long> {
        let ie = vfio::IoeventfdArg::read_from(arg)?;
        if ie.flags != vfio::VFIO_DEVICE_IOEVENTFD_16 {
            return Err(EINVAL);
        }
        let region = ie.offset >> REGION_SHIFT;
        let off = region_offset(ie.offset);
        if region != REGION_NOTIFY || off % PAGE_SIZE as u64 != 0 {
            return Err(EINVAL);
        }
        let idx = off / PAGE_SIZE as u64;
        if idx >= u64::from(nvqs) || ie.data != idx {
            return Err(EINVAL);
        }
        let slot = &self.ioeventfds[idx as usize];
        if ie.fd == -1 {
            slot.disable();
            return Ok(0);
        }
        // A bound slot is refused with EBUSY by VFIO itself, under its lock.
        // SAFETY: `target` lives until `unbind_all`, which disables every
        // slot (the caller guarantees); the slots are in the instance's
        // state, which never moves (VFIO's allocation).
        unsafe { slot.enable(target, idx as usize, ie.fd) }?;
        Ok(0)
    }

    /// Unbinds every ioeventfd. Every slot, bound or not: a virqfd whose
    /// eventfd was closed clears its slot itself and only queues its
    /// shutdown, which `vfio_virqfd_disable()` waits for in any case.
    pub(crate) fn unbind_all(&self) {
        for slot in self.ioeventfds.iter() {
            slot.disable();
        }
    }

    /// Releases every IRQ eventfd.
    pub(crate) fn detach_all(&self) {
        let mut old_vq = [NONE; proto::MAX_VQS];
        let mut fds = self.fds.lock();
        for (o, s) in old_vq.iter_mut().zip(fds.vq.iter_mut()) {
            *o = s.take();
        }
        let old_cfg = fds.config.take();
        let old_req = fds.req.take();
        drop(fds);
        drop((old_vq, old_cfg, old_req));
    }
}
