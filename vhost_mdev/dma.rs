// SPDX-License-Identifier: GPL-2.0

//! Guest memory translated once and cached: a pinned-page cache for
//! instances bound to iommufd.
//!
//! With iommufd, VFIO lets an emulated device pin the pages behind an IOVA
//! (`vfio_pin_pages()`, which is `iommufd_access_pin_pages()`) as long as
//! it unpins exactly what it pinned, at the latest when iommufd calls the
//! device's `dma_unmap` for the range. The cache keeps up to
//! `pin_cache_bytes` of pinned pages, direct-mapped by IOVA page number
//! (see "Size and accounting" below), so that the data path
//! translates an IOVA page once and then copies with `memcpy()` through
//! the page's address in the kernel's direct map (taken when it is pinned,
//! kept in the slot with the pin and dropped with it) instead of calling
//! `vfio_dma_rw()` (a lookup of the IOVA and a user copy) for every access.
//!
//! With a type1 container the cache stays off: holding pins there is not
//! possible (see `Documentation/parent-drivers.rst`), and every access goes
//! through `vfio_dma_rw()`. Any access the cache cannot serve (pinning
//! failed, an unmap raced with it, two pages of one copy in the same slot)
//! falls back to `vfio_dma_rw()`, which also reports the real error.
//! The fault points `fail_pin` (a pin refused) and `fail_copy` (a page the
//! cache does not serve, after part of the access was done) send accesses
//! down those paths on the debug kernel (`crate::fault_inject`).
//!
//! # Size and accounting
//!
//! The `pin_cache_bytes` module parameter bounds the guest memory one
//! instance keeps pinned, in bytes whatever the page size (the table has
//! `pin_cache_bytes / PAGE_SIZE` slots); 0 turns the cache off. Pinned pages
//! are charged by iommufd, once per page however many pins it has, to the
//! process that mapped the IOVA range (`IOMMU_IOAS_MAP`): to its user's
//! `RLIMIT_MEMLOCK` (`locked_vm`) with the vfio cdev, to its mm's
//! `locked_vm` with iommufd's `/dev/vfio/vfio` compat container, and not at
//! all when it had `CAP_IPC_LOCK`. A pin refused at the limit only sends the
//! access to `vfio_dma_rw()`. See `Documentation/admin-guide.rst`.
//!
//! A page is pinned for the access asked for: read-only for reads, so that
//! memory mapped read-only is pinned once, never tried for writing first;
//! a write to a page cached read-only pins it again for writing.
//!
//! # Locking
//!
//! `PinCache::table` (a mutex whose lock and unlock are inline, as the
//! data path takes it for every access) is taken by the data path for each
//! page it touches (held across the `memcpy()`, so that `dma_unmap` cannot
//! unpin a page under a copy) and by `dma_unmap`, which unpins under it. It is never held
//! across `vfio_pin_pages()`: iommufd calls `dma_unmap` while a pin may be
//! waiting for its `ioas_lock`. A pin in flight is counted in
//! `Table::busy`; `dma_unmap` bumps `Table::gen` and waits for `busy` to
//! drop to zero, and a pin that finds `gen` changed is undone instead of
//! cached. So when `dma_unmap` returns, no page of the range is pinned.

use crate::fault_inject::{self, Point};
use crate::mutex_inline::{new_inline_mutex, InlineMutex};
use crate::vfio::{Dma, PinnedPage};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use kernel::prelude::*;
use kernel::sync::{new_condvar, CondVar};

mod access;

/// The largest `pin_cache_bytes`: 1 GiB.
pub(crate) const MAX_BYTES: u64 = 1 << 30;

/// Slots of every instance's table, set once at module load. The default
/// `pin_cache_bytes` (`shim.c`), 64 MiB of guest memory, is enough for the
/// rings and buffers of a queue pair of 256 entries with 64 KiB buffers (a
/// smaller cache thrashes there: the buffers are used round-robin); with
/// 4 KiB pages its table is 16384 slots (512 KiB), allocated on the first
/// access of an iommufd-bound instance.
static SLOTS: AtomicUsize = AtomicUsize::new(0);

/// Sets the cache size of every instance from `pin_cache_bytes`, at module
/// load: 0 (no cache) or a multiple of `PAGE_SIZE` up to [`MAX_BYTES`];
/// anything else is `EINVAL`.
pub(crate) fn set_limit(bytes: u64) -> Result {
    if bytes % PAGE_SIZE != 0 || bytes > MAX_BYTES {
        return Err(EINVAL);
    }
    SLOTS.store((bytes / PAGE_SIZE) as usize, Ordering::Relaxed);
    Ok(())
}

const PAGE_SHIFT: u32 = kernel::page::PAGE_SIZE.trailing_zeros();
const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

/// One cached page.
#[derive(Clone, Copy)]
struct Slot {
    /// IOVA page number, or `None` for a free slot.
    pfn: Option<u64>,
    /// The pinned page of `pfn` and its kernel address (`Some` when `pfn`
    /// is); goes with the pin.
    page: Option<PinnedPage>,
    /// Whether the page was pinned for writing.
    write: bool,
}

const FREE: Slot = Slot {
    pfn: None,
    page: None,
    write: false,
};

impl Slot {
    /// Whether this slot holds `pfn`, pinned for at least `access`.
    #[inline]
    fn serves(&self, pfn: u64, access: Access) -> bool {
        self.pfn == Some(pfn) && (self.write || access == Access::Read)
    }
}

/// The cache proper, under [`PinCache::table`].
///
/// # Invariants
///
/// Every slot with a `pfn` holds one pin of that IOVA page, taken with
/// [`Dma::pin_page`] on `dev` and not yet undone. `slots` is empty or
/// `SLOTS` long. [`PinCache::on`] implies `dev` is an open device bound to
/// iommufd and `SLOTS > 0`.
struct Table {
    dev: Option<Dma>,
    slots: KVVec<Slot>,
    /// Bumped by every `dma_unmap`.
    gen: u64,
    /// Pins (and unpins of evicted pages) in flight outside the lock.
    busy: u32,
    /// Unmaps waiting for `busy` to drop: no new pin starts meanwhile, so
    /// a guest that keeps missing cannot hold an unmap off.
    unmapping: u32,
}

/// A pinned-page cache; see the module documentation.
#[pin_data]
pub(crate) struct PinCache {
    /// Whether the cache serves accesses (an open, iommufd-bound device).
    /// Changed only under `table`, so it is stable while the lock is held;
    /// read without it too, so that a type1 instance's data path does not
    /// pay for the mutex.
    on: AtomicBool,
    #[pin]
    table: InlineMutex<Table>,
    /// Signalled when `Table::busy` drops to zero.
    #[pin]
    idle: CondVar,
}

/// The slot of IOVA page `pfn` in a table of `n > 0` slots: any `n`
/// consecutive IOVA pages (a guest's memory is mapped IOVA-contiguous) get
/// distinct slots.
#[inline]
fn slot_of(pfn: u64, n: usize) -> usize {
    (pfn % n as u64) as usize
}

/// The values of `a` when it has no `None`.
#[inline]
fn all_some<T: Copy, const N: usize>(a: &[Option<T>; N]) -> Option<[T; N]> {
    let first = (*a.first()?)?;
    let mut out = [first; N];
    for (o, v) in out.iter_mut().zip(a) {
        *o = (*v)?;
    }
    Some(out)
}

/// Which access a page is wanted for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

impl PinCache {
    /// A disabled, empty cache.
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            on: AtomicBool::new(false),
            table <- new_inline_mutex!(Table {
                dev: None,
                slots: KVVec::new(),
                gen: 0,
                busy: 0,
                unmapping: 0,
            }, "vhost_mdev_pins"),
            idle <- new_condvar!("vhost_mdev_pins_idle"),
        })
    }

    /// Turns the cache on for `dev`, the instance's device being opened,
    /// when it is bound to iommufd; [`PinCache::close`] turns it off before
    /// the device is closed.
    pub(crate) fn open(&self, dev: Dma, iommufd: bool) {
        let sized = SLOTS.load(Ordering::Relaxed) > 0;
        let mut t = self.table.lock();
        t.dev = Some(dev);
        t.gen = t.gen.wrapping_add(1);
        self.on.store(iommufd && sized, Ordering::Release);
    }

    /// Unpins everything and turns the cache off.
    ///
    /// Called from `close_device`, after the parent's worker is quiesced.
    pub(crate) fn close(&self) {
        let mut t = self.table.lock();
        self.on.store(false, Ordering::Release);
        while t.busy > 0 {
            self.idle.wait(&mut t);
        }
        Self::unpin_range(&mut t, 0, u64::MAX);
        t.slots = KVVec::new();
    }

    /// Whether accesses may be served from the cache (iommufd).
    #[inline]
    pub(crate) fn enabled(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    /// `vfio_device_ops.dma_unmap`: unpins every cached page of
    /// `[iova, iova + len)`, after waiting for pins in flight.
    pub(crate) fn unmap(&self, iova: u64, len: u64) {
        if len == 0 {
            return;
        }
        let last = iova.saturating_add(len - 1);
        let mut t = self.table.lock();
        t.gen = t.gen.wrapping_add(1);
        t.unmapping += 1;
        while t.busy > 0 {
            self.idle.wait(&mut t);
        }
        Self::unpin_range(&mut t, iova, last);
        t.unmapping -= 1;
    }

    /// Unpins the cached pages of IOVAs `first..=last`.
    fn unpin_range(t: &mut Table, first: u64, last: u64) {
        let Some(dev) = t.dev else { return };
        for s in t.slots.iter_mut() {
            let Some(pfn) = s.pfn else { continue };
            let start = pfn << PAGE_SHIFT;
            if start > last || start + (PAGE_SIZE - 1) < first {
                continue;
            }
            // Unpinning takes iommufd's `ioas_lock`, which iommufd never
            // holds while it calls `dma_unmap`.
            // SAFETY: the slot holds one pin of this page on `dev`, taken
            // while it was open (type invariant); `close` runs before the
            // access goes, and an `unmap` after that finds no slot.
            unsafe { dev.unpin_page(start) };
            *s = FREE;
        }
    }

    fn end_busy(&self, t: &mut Table) {
        t.busy -= 1;
        if t.busy == 0 {
            self.idle.notify_all();
        }
    }

    /// Makes sure `pfn` is cached with at least `access`; returns false
    /// when it cannot be (pinning failed, an unmap is under way or raced
    /// with the pin).
    ///
    /// Called without the lock held.
    fn fill(&self, pfn: u64, access: Access) -> bool {
        let mut t = self.table.lock();
        if !self.enabled() || t.unmapping > 0 {
            return false;
        }
        if t.slots.is_empty() {
            // Non-zero while enabled (`open`).
            let n = SLOTS.load(Ordering::Relaxed);
            t.slots = match KVVec::from_elem(FREE, n, GFP_KERNEL) {
                Ok(v) => v,
                Err(_) => return false,
            };
        }
        let i = slot_of(pfn, t.slots.len());
        let s = t.slots[i];
        if s.serves(pfn, access) {
            return true;
        }
        // Enabled: `open` set the device.
        let Some(dev) = t.dev else { return false };
        if fault_inject::should_fail(Point::Pin) {
            // As a pin refused at the limit: the access goes elsewhere.
            return false;
        }
        t.busy += 1;
        let gen = t.gen;
        // Evict first, so that a user at its `RLIMIT_MEMLOCK` can still pin
        // the new page. Still counted busy: an unmap waits for the unpin.
        let old = core::mem::replace(&mut t.slots[i], FREE);
        drop(t);
        if let Some(old_pfn) = old.pfn {
            // SAFETY: the slot held one pin of `old_pfn` on the open `dev`
            // (type invariant), now out of the table.
            unsafe { dev.unpin_page(old_pfn << PAGE_SHIFT) };
        }

        let iova = pfn << PAGE_SHIFT;
        // One pin, for the access asked for: read-only memory is never
        // tried for writing first (iommufd refuses IOMMU_WRITE on it).
        let write = access == Access::Write;
        // SAFETY: `dev` is open (the cache is enabled only between `open`
        // and `close`, and the data path runs only then). No lock of ours
        // is held.
        let r = unsafe { dev.pin_page(iova, write) };

        let mut t = self.table.lock();
        let Ok(page) = r else {
            self.end_busy(&mut t);
            return false;
        };
        let stale = t.gen != gen || !self.enabled() || t.unmapping > 0;
        if stale || t.slots[i].pfn.is_some() {
            // An unmap ran meanwhile (this pin may be of a range that is
            // going away), or another access filled the slot: undo the pin
            // before an unmap may finish.
            drop(t);
            // SAFETY: the pin taken just above.
            unsafe { dev.unpin_page(iova) };
            let mut t = self.table.lock();
            self.end_busy(&mut t);
            return false;
        }
        t.slots[i] = Slot {
            pfn: Some(pfn),
            page: Some(page),
            write,
        };
        self.end_busy(&mut t);
        true
    }

    /// Calls `f` with the kernel addresses of the cached pages of the
    /// page numbers in `pfns` (each with its access), under the lock;
    /// `None` when they cannot all be cached at once.
    #[inline]
    fn with_pages<R, const N: usize>(
        &self,
        pfns: [(u64, Access); N],
        f: impl FnOnce([*mut u8; N]) -> R,
    ) -> Option<R> {
        // Look up first (one lock on a hit); fill what is missing and look
        // again, twice at most: a page evicted by its partner, or unmapped
        // meanwhile, sends the access back to `vfio_dma_rw()`.
        for attempt in 0..3 {
            if attempt > 0 {
                for &(pfn, access) in &pfns {
                    if !self.fill(pfn, access) {
                        return None;
                    }
                }
            }
            let t = self.table.lock();
            if !self.enabled() {
                return None;
            }
            let mut pages = [None; N];
            let n = t.slots.len();
            for (p, &(pfn, access)) in pages.iter_mut().zip(&pfns) {
                *p = t
                    .slots
                    .get(slot_of(pfn, n.max(1)))
                    .filter(|s| s.serves(pfn, access))
                    .and_then(|s| s.page);
            }
            let Some(pages) = all_some(&pages) else {
                continue;
            };
            // The pages are pinned while they are in the table, and the
            // table stays locked (no `dma_unmap` can unpin them) until `f`
            // returns: their direct-map addresses stay valid for the call.
            // Nothing keeps an address past it.
            let r = f(pages.map(|p| p.addr()));
            drop(t);
            return Some(r);
        }
        None
    }
}
