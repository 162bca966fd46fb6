// SPDX-License-Identifier: GPL-2.0

//! The vhost dirty log: `VHOST_SET_LOG_BASE`, `VHOST_F_LOG_ALL` and
//! `VHOST_VRING_F_LOG`, for live migration.
//!
//! The VMM gives a bitmap in its own memory (one bit per 4 KiB of IOVA,
//! which is the guest-physical address with no vIOMMU; vhost's layout, see
//! [`proto::log`]); while the driver's features have `VHOST_F_LOG_ALL`,
//! every write of the device to guest memory sets the bits of the pages it
//! wrote, and a used ring whose queue has `VHOST_VRING_F_LOG` is also
//! logged at its `log_guest_addr`. The core logs the writes that go through
//! it (`vhost_mdev_dma_rw()`, `vhost_mdev_dma_copy()`), on every DMA back
//! end, and a parent logs the others (`vhost_mdev_log_write()`); only a
//! parent that offers `VHOST_F_LOG_ALL` is logged for.
//!
//! The log's pages are pinned once per `VHOST_SET_LOG_BASE` (and again
//! when a memory table changes the size), charged to the VMM's
//! `locked_vm`, and written through the kernel's direct map with atomic
//! ORs (the VMM clears words with atomic exchanges meanwhile). The log
//! covers every IOVA of the current memory table (QEMU sizes its log the
//! same way, `vhost_get_log_size()`), at most [`MAX_LOG_WORDS`] words;
//! a write beyond it marks nothing (no page of the table is there).
//!
//! # Locking
//!
//! The log's state is under an IRQ-safe spinlock, taken by the data path
//! for each logged write (only while logging is on: the data path tests
//! [`DirtyLog::on`] first, one predictable branch) and by the requests that
//! change it, which pin and unpin outside it: a new log replaces the old
//! one under the lock, and the old one is unpinned after, so that no write
//! lands in a page that is going away.

use crate::errno::{E2BIG, EFAULT, EPERM};
use crate::mm::{self, MmGrab, MmSlot, PinnedUserPages};
use crate::proto::{self, log, Model, VHOST_F_LOG_ALL, VHOST_VRING_F_LOG};
use crate::spinlock_irq::{new_spinlock_irq, SpinLockIrq};
use crate::transport::Vqs;
use core::sync::atomic::{AtomicBool, Ordering};
use kernel::alloc::flags::GFP_ATOMIC;
use kernel::page::PAGE_SIZE;
use kernel::prelude::*;

/// The largest log, in `u64` words: 64 MiB, which covers 2 TiB of IOVA. A
/// memory table that reaches beyond cannot be logged (`E2BIG`).
pub(crate) const MAX_LOG_WORDS: u64 = (64 << 20) / 8;

/// A used ring logged at another address (`VHOST_VRING_F_LOG`).
#[derive(Clone, Copy)]
struct UsedLog {
    /// The ring's IOVA and length.
    iova: u64,
    len: u64,
    /// Where its writes are logged (`log_guest_addr`).
    log: u64,
}

/// A pinned log: its user address, its size and its pages.
struct Pinned {
    base: u64,
    words: u64,
    pages: PinnedUserPages,
}

impl Pinned {
    const NONE: Self = Self {
        base: 0,
        words: 0,
        pages: PinnedUserPages::empty(),
    };

    /// Sets the bits of the `len` bytes at `iova` (those the log covers).
    #[inline]
    fn mark(&self, iova: u64, len: u64) {
        let Some((first, last)) = log::page_range(iova, len) else {
            return;
        };
        // Pages beyond the log are of no region of the table.
        let Some(log_last) = (self.words * log::PAGES_PER_WORD).checked_sub(1) else {
            return;
        };
        if first > log_last {
            return;
        }
        for (word, mask) in log::word_masks(first, last.min(log_last)) {
            let (page, off) = log::word_location(self.base, word, PAGE_SIZE as u64);
            self.pages.or_u64(page as usize, off as usize, mask);
        }
    }
}

/// What the data path reads under the lock.
struct State {
    log: Pinned,
    used: KVec<UsedLog>,
}

/// The dirty log of one instance; see the module documentation.
#[pin_data]
pub(crate) struct DirtyLog {
    /// Logging is on: `VHOST_F_LOG_ALL` is set and a log is pinned.
    on: AtomicBool,
    #[pin]
    state: SpinLockIrq<State>,
    /// The opener's address space: only it may give a log (its own
    /// memory).
    owner: MmSlot,
}

/// The log a request wants pinned, staged before the request runs so that
/// a refusal changes nothing.
pub(crate) struct Staged(Pinned);

impl DirtyLog {
    /// No log.
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            on: AtomicBool::new(false),
            state <- new_spinlock_irq!(State {
                log: Pinned::NONE,
                used: KVec::new(),
            }, "vhost_mdev_dirty_log"),
            owner: MmSlot::new(),
        })
    }

    /// Whether device writes are logged: the one test of the data path.
    #[inline(always)]
    pub(crate) fn on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Logs a write of `len` bytes at `iova` (while [`DirtyLog::on`]):
    /// its pages, and for a used ring logged elsewhere, the same bytes at
    /// its log address. Any context.
    #[cold]
    #[inline(never)]
    pub(crate) fn write(&self, iova: u64, len: u64) {
        if len == 0 {
            return;
        }
        let st = self.state.lock();
        st.log.mark(iova, len);
        let end = iova.saturating_add(len);
        for u in st.used.iter() {
            let start = iova.max(u.iova);
            let stop = end.min(u.iova.saturating_add(u.len));
            if start < stop {
                st.log
                    .mark(u.log.saturating_add(start - u.iova), stop - start);
            }
        }
    }

    /// Checks that the current process may give a log: the one that
    /// opened the device (`EPERM` otherwise), as vhost takes a log only
    /// from its owner.
    pub(crate) fn check_owner(&self) -> Result {
        if !mm::current_has_mm() || !self.owner.is_current() {
            return Err(EPERM);
        }
        Ok(())
    }

    /// Pins a log at `base` that covers IOVAs up to `last` (`None`: an
    /// empty table, nothing to cover) for a request of the current process.
    /// `EPERM` from another process than the opener, `E2BIG` for a log of
    /// more than [`MAX_LOG_WORDS`], `EFAULT` for a log that runs past the
    /// end of the address space or is not mapped writable, `ENOMEM` above
    /// the `RLIMIT_MEMLOCK` of the VMM.
    ///
    /// Process context, under the state mutex.
    pub(crate) fn stage(&self, base: u64, last: Option<u64>) -> Result<Staged> {
        self.check_owner()?;
        let words = last.map_or(0, log::log_words);
        if words > MAX_LOG_WORDS {
            return Err(E2BIG);
        }
        let (first, n) = log::host_span(base, words, PAGE_SIZE as u64).ok_or(EFAULT)?;
        // At most 2^16 pages: `MAX_LOG_WORDS` words.
        let pages = PinnedUserPages::pin_current(first, n as usize)?;
        Ok(Staged(Pinned { base, words, pages }))
    }

    /// Replaces the log by `new` (`None`: no log); the old one is unpinned
    /// after no write can reach it. Process context.
    pub(crate) fn install(&self, new: Option<Staged>) {
        let new = new.map_or(Pinned::NONE, |s| s.0);
        if new.words == 0 && new.base == 0 {
            self.on.store(false, Ordering::Relaxed);
        }
        let old = core::mem::replace(&mut self.state.lock().log, new);
        // Unpinned here, outside the lock.
        drop(old);
    }

    /// Sizes the table of logged used rings for `nvqs` queues: at open,
    /// before any request (so that [`DirtyLog::update`] never allocates).
    /// Process context.
    pub(crate) fn open(&self, nvqs: usize) -> Result {
        let new = KVec::with_capacity(nvqs, GFP_KERNEL)?;
        let old = core::mem::replace(&mut self.state.lock().used, new);
        drop(old);
        drop(self.owner.take());
        if let Some(mm) = MmGrab::current() {
            self.owner.set_if_empty(mm);
        }
        Ok(())
    }

    /// Takes the logging state from the model, after every request that
    /// may have changed it: on when the driver set `VHOST_F_LOG_ALL` and a
    /// log was given (`has_log`), and the used rings of the queues with
    /// `VHOST_VRING_F_LOG`. Process context, under the state mutex.
    pub(crate) fn update(&self, model: &Model<Vqs>, has_log: bool) {
        let packed = model.packed();
        let on = has_log && model.features & VHOST_F_LOG_ALL != 0;
        let mut st = self.state.lock();
        // Off first, on last: a write that sees it on finds the log.
        if !on {
            self.on.store(false, Ordering::Relaxed);
        }
        // SAFETY: `UsedLog` is `Copy`: nothing to drop.
        unsafe { st.used.set_len(0) };
        for vq in model.vqs.as_ref() {
            if !vq.addr_set || vq.num == 0 || vq.addr.flags & VHOST_VRING_F_LOG == 0 {
                continue;
            }
            let u = UsedLog {
                iova: vq.addr.used,
                len: proto::device_area_len(vq.num, packed),
                log: vq.addr.log,
            };
            // Within the capacity reserved at open (one per queue): no
            // allocation.
            if st.used.len() == st.used.capacity() || st.used.push(u, GFP_ATOMIC).is_err() {
                break;
            }
        }
        if on {
            self.on.store(true, Ordering::Relaxed);
        }
    }

    /// Drops the log and turns logging off: a reset (after the parent's
    /// worker is quiet) and close. Process context.
    pub(crate) fn clear(&self) {
        self.on.store(false, Ordering::Relaxed);
        let log = {
            let mut st = self.state.lock();
            // SAFETY: `UsedLog` is `Copy`: nothing to drop.
            unsafe { st.used.set_len(0) };
            core::mem::replace(&mut st.log, Pinned::NONE)
        };
        // Unpinned outside the lock.
        drop(log);
    }

    /// At close: drops the log and forgets the owner. Process context.
    pub(crate) fn close(&self) {
        self.clear();
        drop(self.owner.take());
    }
}

/// The highest IOVA of a memory table, `None` when it has no region.
pub(crate) fn table_last(t: &proto::MemTable<'_>) -> Option<u64> {
    t.regions().filter_map(|r| r.last_iova()).max()
}
