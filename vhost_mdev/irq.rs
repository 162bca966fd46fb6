// SPDX-License-Identifier: GPL-2.0

//! IRQs (virtqueue, config and request eventfds) and the ioeventfds bound
//! to the notify region.
//!
//! C header: [`include/linux/vfio.h`](srctree/include/linux/vfio.h).

use crate::errno::{EBADF, EINVAL};
use crate::eventfd::EventFd;
use crate::spinlock_irq::{new_spinlock_irq, SpinLockIrq};
use crate::uapi::{
    region_offset, IRQ_CONFIG, IRQ_REQ, IRQ_VQ, NUM_IRQS, REGION_NOTIFY, REGION_SHIFT,
};
use crate::vfio::{self, UserArg, Virqfd, VirqfdHandler};
use kernel::ffi::c_long;
use kernel::new_mutex;
use kernel::page::PAGE_SIZE;
use kernel::prelude::*;
use kernel::sync::Mutex;
use kernel::uaccess::UserSlice;

/// The IRQ eventfds, swapped by `SET_IRQS` and signalled by the device.
struct Slots {
    /// One per queue of the parent (allocated at open).
    vq: KVec<Option<EventFd>>,
    config: Option<EventFd>,
    req: Option<EventFd>,
}

impl Slots {
    /// IRQ `i` of `index`; `None` beyond the queues allocated at open.
    fn slot(&mut self, index: u32, i: usize) -> Option<&mut Option<EventFd>> {
        match index {
            IRQ_VQ => self.vq.get_mut(i),
            IRQ_CONFIG => Some(&mut self.config),
            _ => Some(&mut self.req),
        }
    }
}

/// `n` empty slots.
fn nones<T>(n: usize) -> Result<KVec<Option<T>>> {
    let mut v = KVec::with_capacity(n, GFP_KERNEL)?;
    for _ in 0..n {
        v.push(None, GFP_KERNEL)?;
    }
    Ok(v)
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
    /// Ioeventfds bound to the notify region, one slot per queue
    /// (allocated at open, when none is bound: a bound slot never moves);
    /// bound and unbound under the instance's state mutex, then this one.
    #[pin]
    ioeventfds: Mutex<KVec<Virqfd>>,
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
                vq: KVec::new(),
                config: None,
                req: None,
            }, "vhost_mdev_irqs"),
            ioeventfds <- new_mutex!(KVec::new(), "vhost_mdev_ioeventfds"),
        })
    }

    /// Sizes the IRQs for `nvqs` queues, all detached and unbound: at open
    /// (the last close detached and unbound everything).
    ///
    /// Called under the instance's state mutex.
    pub(crate) fn open(&self, nvqs: usize) -> Result {
        let vq = nones(nvqs)?;
        let mut slots = KVec::with_capacity(nvqs, GFP_KERNEL)?;
        for _ in 0..nvqs {
            slots.push(Virqfd::new(), GFP_KERNEL)?;
        }
        // Nothing is bound: the old slots may go.
        *self.ioeventfds.lock() = slots;
        let old = core::mem::replace(&mut self.fds.lock().vq, vq);
        drop(old);
        Ok(())
    }

    /// Signals IRQ `i` of `index`, if an eventfd is attached.
    pub(crate) fn signal(&self, index: u32, i: usize) {
        let mut fds = self.fds.lock();
        if let Some(Some(e)) = fds.slot(index, i) {
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
        // `prepare_irq_set` checked start + count <= the IRQ count (at
        // most MAX_VQS), so `data_size <= 4 * MAX_VQS`.
        let mut data = KVec::from_elem(0u8, data_size, GFP_KERNEL)?;
        UserSlice::new(arg.wrapping_add(vfio::IrqSet::MINSZ), data_size)
            .reader()
            .read_slice(&mut data)?;

        if dtype == vfio::VFIO_IRQ_SET_DATA_NONE && count == 0 {
            // Detach every eventfd of the index.
            let n = irq_count(index, nvqs) as usize;
            let mut old = nones(n)?;
            let mut fds = self.fds.lock();
            for (i, o) in old.iter_mut().enumerate() {
                *o = fds.slot(index, i).and_then(Option::take);
            }
            drop(fds);
            drop(old);
            return Ok(0);
        }
        if dtype == vfio::VFIO_IRQ_SET_DATA_NONE || dtype == vfio::VFIO_IRQ_SET_DATA_BOOL {
            for i in 0..count {
                if dtype == vfio::VFIO_IRQ_SET_DATA_NONE || data.get(i).is_some_and(|&b| b != 0) {
                    self.signal(index, start + i);
                }
            }
            return Ok(0);
        }
        // DATA_EVENTFD: take every new eventfd first, so that a bad fd
        // changes nothing (`data` holds `count` of them).
        let mut new = nones(count)?;
        let mut detach = KVec::from_elem(false, count, GFP_KERNEL)?;
        let mut old = nones(count)?;
        let fds_in = data.chunks_exact(4);
        for ((n, d), bytes) in new.iter_mut().zip(detach.iter_mut()).zip(fds_in) {
            let fd = i32::from_ne_bytes(bytes.try_into().map_err(|_| EINVAL)?);
            if fd == -1 {
                *d = true;
            } else if fd < 0 {
                return Err(EBADF);
            } else {
                *n = Some(EventFd::from_fd(fd)?);
            }
        }
        let mut fds = self.fds.lock();
        let changes = new.iter_mut().zip(detach.iter()).zip(old.iter_mut());
        for (i, ((n, &d), o)) in changes.enumerate() {
            if d || n.is_some() {
                if let Some(slot) = fds.slot(index, start + i) {
                    *o = core::mem::replace(slot, n.take());
                }
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
        let slots = self.ioeventfds.lock();
        // Sized for `nvqs` at open.
        let slot = slots.get(idx as usize).ok_or(EINVAL)?;
        if ie.fd == -1 {
            slot.disable();
            return Ok(0);
        }
        // A bound slot is refused with EBUSY by VFIO itself, under its lock.
        // SAFETY: `target` lives until `unbind_all`, which disables every
        // slot (the caller guarantees); the slots stay in place until the
        // next open replaces them, after the last close unbound them all.
        unsafe { slot.enable(target, idx as usize, ie.fd) }?;
        Ok(0)
    }

    /// Unbinds every ioeventfd. Every slot, bound or not: a virqfd whose
    /// eventfd was closed clears its slot itself and only queues its
    /// shutdown, which `vfio_virqfd_disable()` waits for in any case.
    pub(crate) fn unbind_all(&self) {
        for slot in self.ioeventfds.lock().iter() {
            slot.disable();
        }
    }

    /// Releases every IRQ eventfd (the queues' slots go with them: the
    /// next open allocates new ones).
    pub(crate) fn detach_all(&self) {
        let mut fds = self.fds.lock();
        let old_vq = core::mem::replace(&mut fds.vq, KVec::new());
        let old_cfg = fds.config.take();
        let old_req = fds.req.take();
        drop(fds);
        drop((old_vq, old_cfg, old_req));
    }
}
