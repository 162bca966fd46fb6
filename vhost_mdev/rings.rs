// SPDX-License-Identifier: GPL-2.0

//! Ring indexes as single accesses, on every DMA back end.
//!
//! A driver and the device share the split ring's indexes (`avail->idx`,
//! `used->idx`) and event fields (`used_event`, `avail_event`): each side
//! stores one 2-byte value that the other side loads while it changes. Both
//! must be single accesses. With a type1 container (and with iommufd where
//! the pin cache cannot serve an access) guest memory is reached through
//! `vfio_dma_rw()`, a `copy_{from,to}_user()` with a run-time length, which
//! copies two bytes one at a time on x86 CPUs without FSRM and under TCG
//! (`arch/x86/lib/copy_user_64.S`) and makes no atomicity promise with
//! `rep movsb` either. A torn `avail->idx` makes the device process entries
//! of the previous lap; a torn `used->idx` makes the driver take entries the
//! device has not written.
//!
//! So the VMM also says where it sees each ring in its own address space
//! (`VHOST_VFIO_SET_VRING_HVA`, required before DRIVER_OK), as vhost-net's
//! rings are user addresses: an aligned 2-byte access that falls inside a
//! configured ring is then one `get_user()`/`put_user()` of a `u16` in that
//! address space. This trusts the VMM with nothing new: the device touches
//! only the VMM's own memory, at addresses the VMM gave, and a bad address
//! is an `EFAULT` (the parent then sets DEVICE_NEEDS_RESET).
//!
//! The address space is the one of the process that sent the first
//! `VHOST_VFIO_SET_VRING_HVA` since the last reset (one `mmgrab()`
//! reference, dropped at the next reset or close); a request from another
//! address space is refused with `EPERM`, as vhost refuses a non-owner.

use crate::errno::EPERM;
use crate::mm::{self, MmGrab, MmSlot};
use crate::proto::Model;
use crate::transport::Vqs;
use core::ptr;
use kernel::new_spinlock;
use kernel::prelude::*;
use kernel::sync::SpinLock;

/// One ring of one queue: `len` bytes at IOVA `iova`, seen by the VMM at
/// `hva`.
#[derive(Clone, Copy, Default)]
struct Range {
    iova: u64,
    hva: u64,
    len: u64,
}

impl Range {
    /// The user address of the 2 bytes at `iova`, when they are inside.
    fn hva_of(&self, iova: u64) -> Option<u64> {
        let off = iova.checked_sub(self.iova)?;
        (off.checked_add(2)? <= self.len).then(|| self.hva.wrapping_add(off))
    }
}

/// Every ring of every configured queue (descriptor table, driver area,
/// device area), as set by the VMM: one entry per queue of the parent,
/// allocated at open.
type Ranges = KVec<[Range; 3]>;

/// The rings' user addresses of one instance.
///
/// # Invariants
///
/// `mm` is set in [`RingMap::adopt_sender`] and emptied in
/// [`RingMap::clear`]. Non-empty `ranges` are user addresses of `mm`.
#[pin_data]
pub(crate) struct RingMap {
    #[pin]
    ranges: SpinLock<Ranges>,
    mm: MmSlot,
}

impl RingMap {
    /// An empty map.
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            ranges <- new_spinlock!(KVec::new(), "vhost_mdev_rings"),
            mm: MmSlot::new(),
        })
    }

    /// Checks that the current process may give ring addresses: the first
    /// since a reset, or one with the address space of the earlier ones.
    ///
    /// Called under the instance's state mutex.
    pub(crate) fn check_sender(&self) -> Result {
        if !mm::current_has_mm() || (!self.mm.is_empty() && !self.mm.is_current()) {
            return Err(EPERM);
        }
        Ok(())
    }

    /// Records the current process's address space as the one the ring
    /// addresses are in, after [`RingMap::check_sender`] passed and the
    /// request was accepted.
    ///
    /// Called under the instance's state mutex.
    pub(crate) fn adopt_sender(&self) {
        if !self.mm.is_empty() {
            return;
        }
        if let Some(cur) = MmGrab::current() {
            self.mm.set_if_empty(cur);
        }
    }

    /// Sizes the map for `nvqs` queues, all unconfigured: at open, before
    /// any request.
    ///
    /// Called under the instance's state mutex.
    pub(crate) fn open(&self, nvqs: usize) -> Result {
        let new = KVec::from_elem([Range::default(); 3], nvqs, GFP_KERNEL)?;
        let old = core::mem::replace(&mut *self.ranges.lock(), new);
        drop(old);
        Ok(())
    }

    /// Takes the rings of the configured queues from the model (after any
    /// accepted request that may have changed them).
    ///
    /// Called under the instance's state mutex.
    pub(crate) fn update(&self, model: &Model<Vqs>) {
        let packed = model.packed();
        let mut ranges = self.ranges.lock();
        for (r, vq) in ranges.iter_mut().zip(model.vqs.as_ref()) {
            *r = [Range::default(); 3];
            if let Some(rings) = vq.ring_ranges(packed) {
                for (r, (iova, hva, len)) in r.iter_mut().zip(rings) {
                    *r = Range { iova, hva, len };
                }
            }
        }
    }

    /// Forgets every ring and the address space: after a reset or at close,
    /// once the parent's worker is quiet.
    ///
    /// Called under the instance's state mutex.
    pub(crate) fn clear(&self) {
        self.ranges.lock().fill([Range::default(); 3]);
        // The worker, the only other user of the address space, is quiet.
        drop(self.mm.take());
    }

    /// The user address of the aligned 2 bytes at `iova`, when they are in
    /// a ring.
    pub(crate) fn lookup(&self, iova: u64) -> Option<u64> {
        if iova % 2 != 0 {
            return None;
        }
        let ranges = self.ranges.lock();
        ranges.iter().flatten().find_map(|r| r.hva_of(iova))
    }

    /// Reads or writes the 2 bytes at user address `hva` (from
    /// [`RingMap::lookup`]) as one access in the VMM's address space.
    /// Returns 0 or a negative errno (`-EFAULT`: no such user address, or
    /// the address space is gone or cannot be entered here).
    ///
    /// # Safety
    ///
    /// `buf` must be valid for reads and writes of 2 bytes. Called in
    /// process context by a parent's worker of an open device, which the
    /// parent's `reset` quiesces before [`RingMap::clear`] runs.
    #[inline]
    pub(crate) unsafe fn rw_u16(&self, hva: u64, buf: *mut u8, write: bool) -> i32 {
        // A worker that runs in the VMM's address space (a DMA session, a
        // thread of the VMM) accesses it directly; a kthread enters it for
        // the access.
        let access = || {
            if write {
                // SAFETY: the caller guarantees `buf` for 2 bytes.
                let v = unsafe { ptr::read_unaligned(buf.cast::<u16>()) };
                mm::put_user_u16(hva, v)
            } else {
                // `get_user()` gives 0 on a fault.
                let (v, r) = match mm::get_user_u16(hva) {
                    Ok(v) => (v, Ok(())),
                    Err(e) => (0, Err(e)),
                };
                // SAFETY: the caller guarantees `buf` for 2 bytes.
                unsafe { ptr::write_unaligned(buf.cast::<u16>(), v) };
                r
            }
        };
        // SAFETY: the parent's `reset` quiesces the worker before `clear`
        // empties the slot (the caller guarantees).
        let r = unsafe { self.mm.with_current(access) };
        match r {
            Ok(Ok(())) => 0,
            Ok(Err(e)) | Err(e) => e.to_errno(),
        }
    }
}
