// SPDX-License-Identifier: GPL-2.0

//! vhost-mdev vDPA bridge: a vDPA bus driver that makes the device it binds
//! a vhost-mdev parent with one instance.
//!
//! Any device of the vDPA bus (`vdpa_sim_net`, VDUSE, hardware) bound to
//! `vhost_mdev_vdpa` (`driver_override`, see `Documentation/vdpa-bridge.rst`)
//! gets a parent `vhost_mdev_vdpa-<name>` with one type, `bridge`, of one
//! instance; the instance's device ops go straight to the device's
//! `vdpa_config_ops`, as `drivers/vhost/vdpa.c` does for its ioctls.
//!
//! DMA comes in one of two modes, chosen by the device (`dma_mode` in
//! sysfs, see `Documentation/vdpa-bridge.rst`):
//!
//! - VA mode, for a `use_va` device (`vdpa_sim` with `use_va=1`, VDUSE):
//!   the driver's memory table (`VHOST_SET_MEM_TABLE`) gives IOVA -> user
//!   address ranges of the process that opened the instance; the bridge
//!   binds that address space to the device (`bind_mm`) and hands it the
//!   table (`set_map`, every address space of the device). Nothing is
//!   pinned.
//! - PA mode, for a device that translates to physical addresses (no
//!   `use_va`, with `set_map` or `dma_map`): the table's regions are IOVA
//!   ranges (the user addresses are ignored), which the bridge pins through
//!   VFIO (iommufd openings only: see `vhost_mdev_dma_pin()`) in chunks of
//!   512 pages, never holding its lock across a pin, and hands the device
//!   IOVA -> physical address translations, contiguous pages merged
//!   (`pa.rs`). VFIO's `dma_unmap` suspends the device, drops the range
//!   from its map, unpins and resumes it (NEEDS_RESET where a ring of an
//!   enabled queue was in the range, or the device cannot suspend).
//!
//! Until a table arrives, and after close, every address space of the
//! device holds an empty table, so the device reaches no memory
//! (`vdpa_sim` starts with an identity map, and `reset_map` would bring it
//! back: the bridge never calls it). A device that has neither `set_map`
//! nor `dma_map` (vp_vdpa, ifcvf: the platform IOMMU translates) works in
//! PA mode through an IOMMU domain of the bridge (`domain.rs`), which its
//! DMA device is on while an instance exists and which maps the same
//! translations.

use core::sync::atomic::{AtomicUsize, Ordering};
use kernel::prelude::*;
use kernel::str::CString;
use kernel::sync::{new_condvar, Arc, CondVar, Mutex};
use kernel::{c_str, fmt, new_mutex};

include!("../rust/parent_modules.rs");

#[path = "../rust/vdpa.rs"]
pub mod vdpa;

#[path = "../rust/iommu.rs"]
pub mod iommu;
#[path = "../rust/ratelimit.rs"]
pub mod ratelimit;

mod pa;

// The platform-IOMMU path (vp_vdpa and other PCI devices): the bridge's own
// IOMMU domain, and interrupt counters.
mod domain;
mod irqs;

use errno::eopnotsupp;
use mm::MmGrab;
use pa::{Chunk, Run};
use vdpa::status::{DRIVER_OK, FEATURES_OK};
use vhost_mdev::{DeviceHandle, MemRegion, ParentOn, Registration, TypeInfo};
use virtio::VHOST_F_LOG_ALL;
use virtio::VIRTIO_F_RING_PACKED;

module! {
    type: VhostMdevVdpa,
    name: "vhost_mdev_vdpa",
    author: "The vhost-mdev developers",
    description: "vhost-mdev vDPA bridge: a vDPA device as a vhost-mdev instance",
    license: "GPL",
}

/// Most queues the core carries.
const MAX_VQS: u32 = 1024;
/// Most regions of a memory table (vhost's `max_mem_regions` default is
/// 64; QEMU needs a few).
const MAX_REGIONS: usize = 509;

/// The interrupt callback of one queue: reaches the core's upcall, which
/// may be called from any context (hard IRQ handlers included).
///
/// # Invariants
///
/// `handle` points to the [`DeviceHandle`] of the instance that owns this
/// callback, which outlives every call (the instance resets the device and
/// removes its callbacks before it frees the handle).
struct VqCb {
    handle: *const DeviceHandle,
    idx: u16,
    irqs: Arc<irqs::IrqStats>,
}

// SAFETY: `DeviceHandle` is `Sync` and the pointer is only read.
unsafe impl Send for VqCb {}
// SAFETY: as above.
unsafe impl Sync for VqCb {}

impl vdpa::Callback for VqCb {
    fn call(&self) {
        self.irqs.note();
        // SAFETY: the handle outlives every call (type invariant).
        unsafe { &*self.handle }.vq_interrupt(self.idx);
    }
}

/// What the instance changes as the driver goes, under its lock.
struct State {
    /// The driver's features (for the ring layout of the queue state).
    features: u64,
    /// DRIVER_OK was written to the device since the last reset.
    started: bool,
    /// Queues the driver enabled: made ready on the device at DRIVER_OK,
    /// once the memory table is in place (`vdpa_sim` chooses between
    /// virtual and physical addresses when a queue becomes ready).
    ready: KVec<bool>,
    /// Ring addresses (descriptors, driver, device) and size of each
    /// queue, to tell whether an unmapped range hit a ring (PA mode).
    rings: KVec<([u64; 3], u32)>,
    /// The opener's address space, bound to the device (VA mode) from the
    /// first memory table to close.
    mm: Option<MmGrab>,
    /// The table the device holds (in every address space), kept to go
    /// back to when a new one fails (VA mode).
    table: Option<vdpa::Iotlb>,
    /// PA mode: the pins behind the device's map, sorted by IOVA.
    chunks: KVec<Chunk>,
    /// PA mode: the translations given to a device without `set_map`
    /// (`dma_map`), to take back range by range.
    programmed: KVec<Run>,
    /// PA mode: pins of a table being set, not in the device's map yet
    /// (`dma_unmap` gives back those it hits too).
    pending: KVec<Chunk>,
    /// A `dma_unmap` gave back pages of the table being set or of the map
    /// it keeps: the table names IOVAs that are gone.
    pending_hit: bool,
    /// Bumped by every `dma_unmap`: a pin that sees it change undoes
    /// itself (it may have raced with the unmap of its range).
    gen: u64,
    /// Pins in flight (made without the lock); `dma_unmap` waits for none.
    busy: u32,
    /// An unmap took a ring of an enabled queue: the device stays
    /// suspended until the driver resets it.
    halted: bool,
}

/// The instance: the bound vDPA device as a vhost-mdev device.
#[pin_data(PinnedDrop)]
struct VdpaDev {
    vdpa: vdpa::DeviceRef,
    mode: DmaMode,
    /// Boxed: the queue callbacks point to it.
    handle: KBox<DeviceHandle>,
    cbs: KVec<VqCb>,
    nvqs: u16,
    /// Pages pinned for the device now (PA mode), shown in sysfs.
    pinned: Arc<AtomicUsize>,
    #[pin]
    state: Mutex<State>,
    /// Signalled when `State::busy` drops to zero.
    #[pin]
    idle: CondVar,
    /// A platform-IOMMU device's domain (`domain.rs`), which maps what
    /// `State::programmed` says; dropped (the device back on its default
    /// domain) after `PinnedDrop` reset the device and unmapped it all.
    iommu: Option<domain::BridgeDomain>,
}

/// How many times a pin that raced with an unmap is tried again.
const PIN_TRIES: u32 = 4;

impl VdpaDev {
    /// Removes every callback of the device. After a reset (the device is
    /// quiet), so that none runs afterwards.
    fn clear_cbs(&self) {
        for idx in 0..self.nvqs {
            // SAFETY: removing a callback.
            unsafe { self.vdpa.set_vq_cb::<VqCb>(idx, None) };
        }
    }

    /// Empty tables in every address space, the address space unbound and
    /// every pin given back: the device reaches no memory any more. The
    /// device must be quiet (reset).
    fn unmap_all(&self, s: &mut State) {
        self.clear_maps(&mut s.programmed);
        s.table = None;
        if s.mm.take().is_some() {
            self.vdpa.unbind_mm();
        }
        let chunks = core::mem::replace(&mut s.chunks, KVec::new());
        let pending = core::mem::replace(&mut s.pending, KVec::new());
        for c in Iterator::chain(chunks.into_iter(), pending) {
            self.unpin(c);
        }
    }

    /// Stops the device and forgets the queue state; with `close`, also
    /// every translation.
    fn stop(&self, s: &mut State, close: bool) {
        if let Err(e) = self.vdpa.reset() {
            pr_err!("{}: reset failed: {:?}\n", self.vdpa.name(), e);
        }
        self.clear_cbs();
        s.started = false;
        s.halted = false;
        s.features = 0;
        for r in s.ready.iter_mut() {
            *r = false;
        }
        if close {
            for r in s.rings.iter_mut() {
                *r = ([0; 3], 0);
            }
            self.unmap_all(s);
        }
    }

    /// Takes every translation away from the device: empty tables in
    /// every address space, or an empty domain of the bridge (whose
    /// translations `programmed` lists).
    fn clear_maps(&self, programmed: &mut KVec<Run>) {
        if let Some(d) = &self.iommu {
            d.clear(programmed);
            return;
        }
        for asid in 0..self.vdpa.nas() {
            if let Err(e) = self.vdpa.clear_map(asid) {
                pr_err!(
                    "{}: could not clear address space {}: {:?}\n",
                    self.vdpa.name(),
                    asid,
                    e
                );
            }
        }
        *programmed = KVec::new();
    }

    /// Gives `iotlb` to every address space of the device.
    fn map_all(&self, iotlb: &vdpa::Iotlb) -> Result {
        for asid in 0..self.vdpa.nas() {
            // The table holds user addresses of the bound address space (VA
            // mode, `set_mem_table`), or physical addresses of pages pinned
            // in `State::chunks` or `State::pending` until it is replaced
            // (PA mode).
            // SAFETY: the device reaches them only as said above.
            unsafe { self.vdpa.set_map(asid, iotlb)? };
        }
        Ok(())
    }

    fn packed(s: &State) -> bool {
        s.features & VIRTIO_F_RING_PACKED != 0
    }
}

#[pinned_drop]
impl PinnedDrop for VdpaDev {
    fn drop(self: Pin<&mut Self>) {
        // The core resets before it destroys; this makes sure nothing of
        // the instance stays with the device (callbacks, tables, the mm).
        let mut s = self.state.lock();
        if !s.chunks.is_empty() || !s.pending.is_empty() {
            // Close gave them back; the device is closed now, and VFIO
            // takes no unpin of a closed device.
            pr_err!(
                "{}: pins left at destroy (a bug): not given back\n",
                self.vdpa.name()
            );
            s.chunks = KVec::new();
            s.pending = KVec::new();
        }
        self.stop(&mut s, true);
    }
}

/// Checks a memory table and builds its IOVA -> user address IOTLB.
fn va_iotlb(regions: &[MemRegion]) -> Result<vdpa::Iotlb> {
    if regions.len() > MAX_REGIONS {
        return Err(E2BIG);
    }
    let mut ranges = KVec::with_capacity(regions.len(), GFP_KERNEL)?;
    for r in regions {
        if r.size == 0 {
            return Err(EINVAL);
        }
        let last = r.guest_phys_addr.checked_add(r.size - 1).ok_or(EINVAL)?;
        r.userspace_addr.checked_add(r.size - 1).ok_or(EINVAL)?;
        for &(s, l) in ranges.iter() {
            if r.guest_phys_addr <= l && s <= last {
                return Err(EINVAL);
            }
        }
        ranges.push((r.guest_phys_addr, last), GFP_KERNEL)?;
    }
    // At most MAX_REGIONS ranges (checked above); 1 for an empty table.
    let mut iotlb = vdpa::Iotlb::new(regions.len().max(1) as u32)?;
    for r in regions {
        iotlb.add_range(
            r.guest_phys_addr,
            r.guest_phys_addr + (r.size - 1),
            r.userspace_addr,
            vdpa::Perm::ReadWrite,
        )?;
    }
    Ok(iotlb)
}

#[vtable]
impl vhost_mdev::Device for VdpaDev {
    fn device_id(&self) -> u32 {
        self.vdpa.device_id()
    }

    fn vendor_id(&self) -> u32 {
        self.vdpa.vendor_id()
    }

    fn device_features(&self) -> u64 {
        // Never `VHOST_F_LOG_ALL` (a vDPA device has no such bit anyway):
        // the vDPA device writes guest memory itself (`vdpa_sim` through
        // vringh, hardware by DMA), unseen by the core, so the core cannot
        // keep a dirty log for it and QEMU must keep its migration blocker.
        self.vdpa.device_features() & !VHOST_F_LOG_ALL
    }

    fn set_driver_features(&self, features: u64) -> Result {
        let mut s = self.state.lock();
        self.vdpa.set_features(features)?;
        s.features = features;
        Ok(())
    }

    fn config_size(&self) -> u32 {
        u32::try_from(self.vdpa.config_size()).unwrap_or(0)
    }

    fn get_config(&self, offset: u32, buf: &mut [u8]) {
        self.vdpa.get_config(offset, buf)
    }

    fn set_config(&self, offset: u32, data: &[u8]) {
        self.vdpa.set_config(offset, data)
    }

    fn vq_count(&self) -> u32 {
        u32::from(self.nvqs)
    }

    fn vq_num_max(&self) -> u16 {
        self.vdpa.vq_num_max()
    }

    fn set_vq_num(&self, idx: u16, num: u32) {
        if let Some(r) = self.state.lock().rings.get_mut(usize::from(idx)) {
            r.1 = num;
        }
        self.vdpa.set_vq_num(idx, num)
    }

    fn set_vq_address(&self, idx: u16, desc: u64, driver: u64, device: u64) {
        if let Some(r) = self.state.lock().rings.get_mut(usize::from(idx)) {
            r.0 = [desc, driver, device];
        }
        if let Err(e) = self.vdpa.set_vq_address(idx, desc, driver, device) {
            pr_warn_ratelimited!(
                "{}: queue {}: the device refused the ring addresses: {:?}\n",
                self.vdpa.name(),
                idx,
                e
            );
        }
    }

    fn set_vq_ready(&self, idx: u16, ready: bool) {
        let mut s = self.state.lock();
        if let Some(r) = s.ready.get_mut(usize::from(idx)) {
            *r = ready;
        }
        // Before DRIVER_OK, enabling waits for it (see `State::ready`).
        if !ready || s.started {
            self.vdpa.set_vq_ready(idx, ready);
        }
    }

    fn set_vq_base(&self, idx: u16, base: u32) {
        let packed = Self::packed(&self.state.lock());
        if let Err(e) = self.vdpa.set_vq_base(idx, base, packed) {
            pr_warn_ratelimited!(
                "{}: queue {}: the device refused the base: {:?}\n",
                self.vdpa.name(),
                idx,
                e
            );
        }
    }

    fn get_vq_base(&self, idx: u16) -> u32 {
        let packed = Self::packed(&self.state.lock());
        self.vdpa.get_vq_base(idx, packed).unwrap_or(0)
    }

    fn kick(&self, idx: u16) {
        self.vdpa.kick_vq(idx)
    }

    fn set_status(&self, status: u8) -> Result {
        let mut s = self.state.lock();
        let starting = status & DRIVER_OK != 0 && !s.started;
        if starting {
            for (i, cb) in self.cbs.iter().enumerate() {
                // SAFETY: `cb` lives as long as the instance, which resets
                // the device and removes the callbacks before it goes.
                unsafe { self.vdpa.set_vq_cb(i as u16, Some(cb)) };
            }
            for i in 0..self.nvqs {
                if s.ready.get(usize::from(i)).copied().unwrap_or(false) {
                    self.vdpa.set_vq_ready(i, true);
                }
            }
        }
        self.vdpa.set_status(status);
        let got = self.vdpa.status();
        // A device that refuses the features leaves FEATURES_OK clear.
        if status & FEATURES_OK != 0 && got & FEATURES_OK == 0 {
            return Err(EINVAL);
        }
        if starting {
            if got & DRIVER_OK == 0 {
                return Err(EIO);
            }
            s.started = true;
        }
        Ok(())
    }

    fn start(&self) -> Result {
        // DRIVER_OK went to the device with `set_status`.
        Ok(())
    }

    fn reset(&self) {
        let mut s = self.state.lock();
        // Closed (or closing): the translations go too.
        let close = !self.handle.is_open();
        self.stop(&mut s, close);
    }

    fn suspend(&self) -> Result {
        self.vdpa.suspend()
    }

    fn resume(&self) -> Result {
        self.vdpa.resume()
    }

    fn set_mem_table(&self, regions: &[MemRegion]) -> Result {
        let r = match self.mode {
            DmaMode::Va => self.mem_table(regions),
            DmaMode::Pa => self.pa_table(regions),
        };
        if let Err(e) = r {
            pr_warn_ratelimited!("{}: memory table refused: {:?}\n", self.vdpa.name(), e);
        }
        r
    }

    fn dma_unmap(&self, iova: u64, len: u64) {
        if self.mode == DmaMode::Pa && len != 0 {
            self.pa_unmap(iova, iova.saturating_add(len - 1));
        }
    }

    fn get_vq_notification(&self, idx: u16) -> Result<vhost_mdev::NotifyArea> {
        let (addr, size) = self.vdpa.vq_notification(idx)?;
        Ok(vhost_mdev::NotifyArea { addr, size })
    }
}

impl VdpaDev {
    /// [`vhost_mdev::Device::set_mem_table`], VA mode.
    fn mem_table(&self, regions: &[MemRegion]) -> Result {
        let iotlb = va_iotlb(regions)?;
        let mut s = self.state.lock();
        // Started with no address space bound, the device reads its
        // tables as physical addresses: a table now would be misread.
        if s.started && s.mm.is_none() {
            return Err(EBUSY);
        }
        if s.mm.is_none() {
            let mm = self.handle.opener_mm().ok_or(ESRCH)?;
            // SAFETY: `mm` is kept in the state until `unmap_all` unbinds
            // it (close, destroy).
            unsafe { self.vdpa.bind_mm(&mm)? };
            s.mm = Some(mm);
        }
        if let Err(e) = self.map_all(&iotlb) {
            // Back to the previous table (an error keeps it), else none.
            let restored = match &s.table {
                Some(old) => self.map_all(old),
                None => Err(e),
            };
            if restored.is_err() {
                for a in 0..self.vdpa.nas() {
                    let _ = self.vdpa.clear_map(a);
                }
                s.table = None;
            }
            return Err(e);
        }
        s.table = Some(iotlb);
        Ok(())
    }
}

/// How the device was stopped for a change of its PA map.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quiet {
    /// Not started: no DMA.
    Idle,
    /// Suspended: resume it afterwards (unless a ring went).
    Suspended,
    /// Reset (it cannot suspend): NEEDS_RESET was signalled.
    Reset,
}

impl VdpaDev {
    /// Gives back one chunk's pins.
    ///
    /// The device must not reach the chunk's pages any more: never in its
    /// map (`State::pending`), or taken out of the map with the device
    /// quiet (or reset) meanwhile.
    fn unpin(&self, c: Chunk) {
        // The chunk holds one pin of this opening (made by `pin_pending`,
        // exactly this IOVA and page count), given back once (the chunk is
        // consumed).
        // SAFETY: as above; the device does not use the pages (contract).
        unsafe { self.handle.dma_unpin(c.iova, c.npages()) };
        self.pinned.fetch_sub(c.npages(), Ordering::Relaxed);
    }

    /// Gives back the pins of a table that was not set.
    fn drop_pending(&self, s: &mut State) {
        let p = core::mem::replace(&mut s.pending, KVec::new());
        for c in p {
            self.unpin(c);
        }
        s.pending_hit = false;
    }

    /// Pins `npages` pages from `iova` into `State::pending`: for reads
    /// and writes, or for reads where VFIO maps the range read-only. Never
    /// under the state lock: iommufd may call `dma_unmap` meanwhile (see
    /// `State::gen`).
    fn pin_pending(&self, iova: u64, npages: usize) -> Result {
        let mut phys = KVec::from_elem(0u64, npages, GFP_KERNEL)?;
        for _ in 0..PIN_TRIES {
            let gen = {
                let mut s = self.state.lock();
                s.busy += 1;
                s.gen
            };
            let mut write = true;
            let mut r = self.handle.dma_pin(iova, &mut phys, true);
            if r == Err(EPERM) {
                write = false;
                r = self.handle.dma_pin(iova, &mut phys, false);
            }
            let mut s = self.state.lock();
            s.busy -= 1;
            if s.busy == 0 {
                self.idle.notify_all();
            }
            r?;
            self.pinned.fetch_add(npages, Ordering::Relaxed);
            if s.gen == gen {
                let c = Chunk { iova, write, phys };
                if s.pending.push(c, GFP_KERNEL).is_err() {
                    // SAFETY: the pin just made, never in the device's map.
                    unsafe { self.handle.dma_unpin(iova, npages) };
                    self.pinned.fetch_sub(npages, Ordering::Relaxed);
                    return Err(ENOMEM);
                }
                return Ok(());
            }
            // An unmap came in while the pin was made: it may have been of
            // these pages, which it could not give back (they were not
            // recorded yet). Undo before it returns (it waits for `busy`),
            // and try again.
            // SAFETY: as above.
            unsafe { self.handle.dma_unpin(iova, npages) };
            self.pinned.fetch_sub(npages, Ordering::Relaxed);
        }
        Err(EAGAIN)
    }

    /// Gives the device the translations of `chunks` (sorted by IOVA), in
    /// every address space; `programmed` keeps what a device without
    /// `set_map` holds. On an error the device's map is empty or the old
    /// one: the caller programs what it should hold.
    fn program(&self, programmed: &mut KVec<Run>, chunks: &[&Chunk]) -> Result {
        let runs = pa::runs(chunks)?;
        if let Some(d) = &self.iommu {
            return d.program(programmed, runs);
        }
        if self.vdpa.has_set_map() {
            let limit = u32::try_from(runs.len().max(1)).map_err(|_| E2BIG)?;
            let mut iotlb = vdpa::Iotlb::new(limit)?;
            for r in runs.iter() {
                iotlb.add_range(r.iova, r.iova + (r.len - 1), r.pa, r.perm)?;
            }
            return self.map_all(&iotlb);
        }
        for asid in 0..self.vdpa.nas() {
            for r in programmed.iter() {
                let _ = self.vdpa.dma_unmap(asid, r.iova, r.len);
            }
        }
        *programmed = KVec::new();
        for asid in 0..self.vdpa.nas() {
            for r in runs.iter() {
                // SAFETY: physical pages pinned in `State::chunks` or
                // `State::pending` until taken out of the map again.
                if let Err(e) = unsafe { self.vdpa.dma_map(asid, r.iova, r.len, r.pa, r.perm) } {
                    for a in 0..self.vdpa.nas() {
                        let _ = self.vdpa.clear_map(a);
                    }
                    return Err(e);
                }
            }
        }
        *programmed = runs;
        Ok(())
    }

    /// Stops a started device's DMA for a change of its map that may take
    /// pages away (`dropping`), or that it cannot take while running
    /// (`dma_map`, range by range): suspends it, or else resets it and
    /// signals NEEDS_RESET.
    fn quiesce(&self, s: &mut State, dropping: bool) -> Quiet {
        if !s.started {
            return Quiet::Idle;
        }
        if self.vdpa.has_suspend() {
            match self.vdpa.suspend() {
                Ok(()) => return Quiet::Suspended,
                Err(e) => pr_warn_ratelimited!("{}: suspend failed: {:?}\n", self.vdpa.name(), e),
            }
        } else if !dropping && self.vdpa.has_set_map() {
            // A whole new table that only adds: the device goes on.
            return Quiet::Idle;
        }
        pr_warn_ratelimited!(
            "{}: the device cannot suspend: reset for a change of its map (NEEDS_RESET)\n",
            self.vdpa.name()
        );
        self.stop(s, false);
        self.handle.needs_reset();
        Quiet::Reset
    }

    /// Lets the device go on after [`VdpaDev::quiesce`], unless an unmap
    /// took one of its rings.
    fn go_on(&self, s: &State, q: Quiet) {
        if q == Quiet::Suspended && !s.halted {
            if let Err(e) = self.vdpa.resume() {
                pr_warn_ratelimited!("{}: resume failed: {:?}\n", self.vdpa.name(), e);
                self.handle.needs_reset();
            }
        }
    }

    /// Whether a ring of an enabled queue meets `[iova, last]`.
    fn ring_hit(s: &State, iova: u64, last: u64) -> bool {
        let packed = Self::packed(s);
        s.ready
            .iter()
            .zip(s.rings.iter())
            .filter(|(ready, _)| **ready)
            .any(|(_, &(addr, num))| {
                pa::ring_extents(addr, num, packed)
                    .iter()
                    .any(|&(a, l)| a <= last && iova <= l)
            })
    }

    /// [`vhost_mdev::Device::set_mem_table`], PA mode.
    fn pa_table(&self, regions: &[MemRegion]) -> Result {
        let want = pa::plan(regions, MAX_REGIONS)?;
        // What the device's map does not hold yet.
        let mut need = KVec::new();
        {
            let s = self.state.lock();
            for &(iova, n) in want.iter() {
                if !s.chunks.iter().any(|c| c.iova == iova && c.npages() == n) {
                    need.push((iova, n), GFP_KERNEL)?;
                }
            }
        }
        for &(iova, n) in need.iter() {
            if let Err(e) = self.pin_pending(iova, n) {
                self.drop_pending(&mut self.state.lock());
                if e == eopnotsupp() {
                    pr_warn_ratelimited!(
                        "{}: PA mode pins through iommufd: open the instance through the vfio cdev \
                         (a type1 container cannot take a device's pins)\n",
                        self.vdpa.name()
                    );
                }
                return Err(e);
            }
        }
        let mut s = self.state.lock();
        let r = self.pa_commit(&mut s, &want);
        if r.is_err() {
            self.drop_pending(&mut s);
        }
        r
    }

    /// Makes the chunks of `want`, pinned in `State::chunks` or
    /// `State::pending`, the device's map, and gives back the pins of the
    /// old map that it no longer names.
    fn pa_commit(&self, s: &mut State, want: &[(u64, usize)]) -> Result {
        // Where each chunk of the table is: `(true, i)` kept in the map,
        // `(false, i)` just pinned; missing if an unmap took it meanwhile.
        let mut src = KVec::with_capacity(want.len(), GFP_KERNEL)?;
        for &(iova, n) in want {
            let same = |c: &Chunk| c.iova == iova && c.npages() == n;
            if let Some(i) = s.chunks.iter().position(same) {
                src.push((true, i), GFP_KERNEL)?;
            } else if let Some(i) = s.pending.iter().position(same) {
                src.push((false, i), GFP_KERNEL)?;
            } else {
                return Err(ENOENT);
            }
        }
        if s.pending_hit {
            return Err(ENOENT);
        }
        let mut keep = KVec::from_elem(false, s.chunks.len(), GFP_KERNEL)?;
        for &(old, i) in src.iter() {
            if old {
                keep[i] = true;
            }
        }
        let dropping = keep.iter().any(|k| !k);
        // Room for the moves below, so that none fails after the switch.
        let mut next = KVec::with_capacity(want.len(), GFP_KERNEL)?;
        let mut gone = KVec::with_capacity(s.chunks.len(), GFP_KERNEL)?;
        let mut refs = KVec::with_capacity(src.len(), GFP_KERNEL)?;
        let mut old_refs = KVec::with_capacity(s.chunks.len(), GFP_KERNEL)?;
        let quiet = self.quiesce(s, dropping);
        let r = {
            let State {
                chunks,
                pending,
                programmed,
                ..
            } = &mut *s;
            // Capacity reserved above: these pushes do not allocate.
            for &(old, i) in src.iter() {
                let _ = refs.push(if old { &chunks[i] } else { &pending[i] }, GFP_KERNEL);
            }
            for c in chunks.iter() {
                let _ = old_refs.push(c, GFP_KERNEL);
            }
            self.program(programmed, &refs).or_else(|e| {
                // Back to the old map, which an error may have emptied.
                if self.program(programmed, &old_refs).is_err() {
                    pr_err!(
                        "{}: could not restore the map: the device reaches no memory\n",
                        self.vdpa.name()
                    );
                    for a in 0..self.vdpa.nas() {
                        let _ = self.vdpa.clear_map(a);
                    }
                }
                Err(e)
            })
        };
        drop(refs);
        drop(old_refs);
        if let Err(e) = r {
            self.go_on(s, quiet);
            return Err(e);
        }
        let old = core::mem::replace(&mut s.chunks, KVec::new());
        for (i, c) in old.into_iter().enumerate() {
            // Capacity reserved above: these pushes do not allocate.
            let _ = if keep[i] {
                next.push(c, GFP_KERNEL)
            } else {
                gone.push(c, GFP_KERNEL)
            };
        }
        for c in core::mem::replace(&mut s.pending, KVec::new()) {
            let _ = next.push(c, GFP_KERNEL);
        }
        next.sort_unstable_by_key(|c| c.iova);
        s.chunks = next;
        for c in gone {
            self.unpin(c);
        }
        self.go_on(s, quiet);
        Ok(())
    }

    /// [`vhost_mdev::Device::dma_unmap`], PA mode: `[iova, last]` goes
    /// away in VFIO. Gives back every pin in it before returning; a device
    /// that uses it is suspended meanwhile, and NEEDS_RESET is signalled
    /// if a ring of an enabled queue was in it (the device stays
    /// suspended) or the device cannot suspend (it is reset).
    fn pa_unmap(&self, iova: u64, last: u64) {
        let mut s = self.state.lock();
        s.gen = s.gen.wrapping_add(1);
        while s.busy > 0 {
            self.idle.wait(&mut s);
        }
        if s.pending.iter().any(|c| c.meets(iova, last)) {
            // Not in the device's map: given back at once; the table being
            // set fails.
            let p = core::mem::replace(&mut s.pending, KVec::new());
            let mut left = KVec::with_capacity(p.len(), GFP_KERNEL).ok();
            for c in p {
                match &mut left {
                    Some(l) if !c.meets(iova, last) => {
                        let _ = l.push(c, GFP_KERNEL);
                    }
                    _ => self.unpin(c),
                }
            }
            s.pending = left.unwrap_or_else(KVec::new);
            s.pending_hit = true;
        }
        if !s.chunks.iter().any(|c| c.meets(iova, last)) {
            return;
        }
        let ring = Self::ring_hit(&s, iova, last);
        let quiet = self.quiesce(&mut s, true);
        let old = core::mem::replace(&mut s.chunks, KVec::new());
        // Without room to keep the others, everything goes.
        let mut kept = KVec::with_capacity(old.len(), GFP_KERNEL).ok();
        let mut gone = KVec::new();
        for c in old {
            match &mut kept {
                Some(k) if !c.meets(iova, last) => {
                    let _ = k.push(c, GFP_KERNEL);
                }
                _ => {
                    if let Err(c) = push_or_give_back(&mut gone, c) {
                        // No room to hold it until the switch: the device
                        // must not reach it either.
                        self.clear_maps(&mut s.programmed);
                        self.unpin(c);
                    }
                }
            }
        }
        let kept = kept.unwrap_or_else(KVec::new);
        let programmed = {
            let mut refs = KVec::with_capacity(kept.len(), GFP_KERNEL);
            if let Ok(r) = &mut refs {
                for c in kept.iter() {
                    let _ = r.push(c, GFP_KERNEL);
                }
            }
            match refs {
                Ok(r) if r.len() == kept.len() => self.program(&mut s.programmed, &r),
                _ => Err(ENOMEM),
            }
        };
        if let Err(e) = programmed {
            pr_err_ratelimited!(
                "{}: unmap: could not give the device its new map ({:?}): it reaches no memory\n",
                self.vdpa.name(),
                e
            );
            self.clear_maps(&mut s.programmed);
        }
        s.chunks = kept;
        for c in gone {
            self.unpin(c);
        }
        if ring || programmed.is_err() {
            pr_warn_ratelimited!(
                "{}: unmap of [{:#x}, {:#x}] took {}: NEEDS_RESET\n",
                self.vdpa.name(),
                iova,
                last,
                if ring {
                    "a ring of an enabled queue"
                } else {
                    "the device's map"
                }
            );
            s.halted = true;
            self.handle.needs_reset();
        } else {
            self.go_on(&s, quiet);
        }
    }
}

/// Pushes `c`, or hands it back when there is no room.
fn push_or_give_back(v: &mut KVec<Chunk>, c: Chunk) -> core::result::Result<(), Chunk> {
    if v.reserve(1, GFP_KERNEL).is_err() {
        return Err(c);
    }
    // Room reserved: this does not allocate.
    let _ = v.push(c, GFP_KERNEL);
    Ok(())
}

/// The parent's context: the device it serves.
struct Ctx {
    vdpa: vdpa::DeviceRef,
    mode: DmaMode,
    /// Pages pinned for the device (PA mode), shared with `Bound`.
    pinned: Arc<AtomicUsize>,
    /// Queue interrupt counters, shared with `Bound`.
    irqs: Arc<irqs::IrqStats>,
}

/// The parent of one vDPA device.
struct BridgeParent;

impl ParentOn for BridgeParent {
    type Device = VdpaDev;
    type Context = Ctx;

    fn create(ctx: &Ctx, handle: DeviceHandle, _type_index: u32) -> Result<Pin<KBox<VdpaDev>>> {
        // SAFETY: the instance is destroyed before the registration that
        // holds `ctx` is dropped, which the device's `remove` does.
        let vdpa = unsafe { vdpa::DeviceRef::new(&ctx.vdpa) };
        let nvqs = u16::try_from(vdpa.nvqs()).map_err(|_| EINVAL)?;
        // Whatever a previous user left: empty tables; or, for a
        // platform-IOMMU device, a new domain of the bridge, empty.
        let iommu = if vdpa.uses_platform_iommu() {
            Some(domain::BridgeDomain::attach(&vdpa)?)
        } else {
            for asid in 0..vdpa.nas() {
                vdpa.clear_map(asid)?;
            }
            None
        };
        let handle = KBox::new(handle, GFP_KERNEL)?;
        let mut cbs = KVec::with_capacity(usize::from(nvqs), GFP_KERNEL)?;
        for idx in 0..nvqs {
            // INVARIANT: the handle is boxed and outlives the callbacks
            // (`PinnedDrop` resets and clears them first).
            cbs.push(
                VqCb {
                    handle: &*handle,
                    idx,
                    irqs: ctx.irqs.clone(),
                },
                GFP_KERNEL,
            )?;
        }
        let ready = KVec::from_elem(false, usize::from(nvqs), GFP_KERNEL)?;
        let rings = KVec::from_elem(([0u64; 3], 0u32), usize::from(nvqs), GFP_KERNEL)?;
        KBox::pin_init(
            pin_init!(VdpaDev {
                vdpa,
                mode: ctx.mode,
                handle,
                cbs,
                nvqs,
                pinned: ctx.pinned.clone(),
                state <- new_mutex!(State {
                    features: 0,
                    started: false,
                    ready,
                    rings,
                    mm: None,
                    table: None,
                    chunks: KVec::new(),
                    programmed: KVec::new(),
                    pending: KVec::new(),
                    pending_hit: false,
                    gen: 0,
                    busy: 0,
                    halted: false,
                }, "vhost_mdev_vdpa_state"),
                idle <- new_condvar!("vhost_mdev_vdpa_idle"),
                iommu,
            }),
            GFP_KERNEL,
        )
    }
}

/// How the bridge gives a device the memory of the instance's opener.
#[derive(Clone, Copy, PartialEq, Eq)]
enum DmaMode {
    /// Tables of user addresses in the opener's address space (`use_va`
    /// and `bind_mm`).
    Va,
    /// Tables of physical addresses of pages pinned through VFIO (a device
    /// without `use_va`, with `set_map` or `dma_map`, or with neither: on
    /// an IOMMU domain of the bridge, `domain.rs`).
    Pa,
}

impl DmaMode {
    /// The mode of `dev`, or why it cannot be bridged (`EOPNOTSUPP`).
    fn of(dev: &vdpa::Device) -> Result<Self> {
        if dev.use_va() {
            if dev.has_bind_mm() && dev.has_set_map() {
                return Ok(DmaMode::Va);
            }
            pr_warn!(
                "{}: not bridged: a device on virtual addresses needs bind_mm and set_map\n",
                dev.name()
            );
        } else if dev.has_set_map() || dev.has_dma_map() {
            return Ok(DmaMode::Pa);
        } else {
            // The platform IOMMU translates for it: a domain of the bridge.
            domain::check(dev)?;
            return Ok(DmaMode::Pa);
        }
        Err(eopnotsupp())
    }
}

/// What the driver keeps for a bound device: its parent registration.
struct Bound {
    _reg: Registration<BridgeParent>,
    mode: DmaMode,
    pinned: Arc<AtomicUsize>,
    irqs: Arc<irqs::IrqStats>,
}

/// `dma_mode` of a bound vDPA device: `va` or `pa`. Read-only; shown
/// while the device is bound to the bridge.
struct DmaModeAttr;

#[vtable]
impl sysfs::Attribute<vdpa::Bound<Bridge>> for DmaModeAttr {
    const NAME: &'static CStr = c_str!("dma_mode");

    fn show(b: &Bound) -> Result<CString> {
        let mode = match b.mode {
            DmaMode::Va => "va",
            DmaMode::Pa => "pa",
        };
        CString::try_from_fmt(fmt!("{}\n", mode))
    }
}

/// `pinned_pages` of a bound vDPA device: the pages the bridge holds
/// pinned for it now (PA mode; 0 in VA mode and while no instance is
/// open). Read-only, for tests and debugging.
struct PinnedAttr;

#[vtable]
impl sysfs::Attribute<vdpa::Bound<Bridge>> for PinnedAttr {
    const NAME: &'static CStr = c_str!("pinned_pages");

    fn show(b: &Bound) -> Result<CString> {
        CString::try_from_fmt(fmt!("{}\n", b.pinned.load(Ordering::Relaxed)))
    }
}

/// `vq_irqs` of a bound vDPA device: the queue callbacks it made since it
/// was bound, and how many of them ran in a hard IRQ handler (`irqs.rs`).
/// Read-only, for tests and debugging.
struct VqIrqsAttr;

#[vtable]
impl sysfs::Attribute<vdpa::Bound<Bridge>> for VqIrqsAttr {
    const NAME: &'static CStr = c_str!("vq_irqs");

    fn show(b: &Bound) -> Result<CString> {
        let (calls, hard) = b.irqs.get();
        CString::try_from_fmt(fmt!("{} {}\n", calls, hard))
    }
}

sysfs::attribute_groups! {
    static GROUPS: vdpa::Bound<Bridge> = [(None, [DmaModeAttr, PinnedAttr, VqIrqsAttr])];
}

/// The vDPA bus driver.
struct Bridge;

#[vtable]
impl vdpa::Driver for Bridge {
    type Data = Bound;

    fn probe(dev: &vdpa::Device) -> Result<KBox<Bound>> {
        let mode = DmaMode::of(dev)?;
        let nvqs = dev.nvqs();
        if nvqs == 0 || nvqs > MAX_VQS {
            pr_warn!(
                "{}: not bridged: {} queues (the core carries 1 to {})\n",
                dev.name(),
                nvqs,
                MAX_VQS
            );
            return Err(EINVAL);
        }
        // The device reaches no memory until an opener's table arrives (a
        // platform-IOMMU device: until an instance's domain maps it).
        if !dev.uses_platform_iommu() {
            for asid in 0..dev.nas() {
                dev.clear_map(asid)?;
            }
        }
        let name = CString::try_from_fmt(fmt!("vhost_mdev_vdpa-{}", dev.name()))?;
        let pinned = Arc::new(AtomicUsize::new(0), GFP_KERNEL)?;
        let irqs = Arc::new(irqs::IrqStats::default(), GFP_KERNEL)?;
        // SAFETY: the registration, which owns the context, is dropped in
        // `remove` (dropping `Bound`).
        let ctx = Ctx {
            vdpa: unsafe { vdpa::DeviceRef::new(dev) },
            mode,
            pinned: pinned.clone(),
            irqs: irqs.clone(),
        };
        let types = [TypeInfo {
            sysfs_name: c_str!("bridge"),
            pretty_name: c_str!("vDPA bridge"),
            description: if mode == DmaMode::Va {
                c_str!("the vDPA device as a vhost-mdev instance (VA mode)")
            } else {
                c_str!("the vDPA device as a vhost-mdev instance (PA mode)")
            },
            max_instances: 1,
        }];
        let reg = Registration::<BridgeParent>::new_on_with(
            dev.as_device(),
            name,
            ctx,
            &THIS_MODULE,
            &types,
        )?;
        pr_info!(
            "{}: bridged as vhost_mdev_vdpa-{}-bridge ({} queues, {} address spaces, DMA {})\n",
            dev.name(),
            dev.name(),
            nvqs,
            dev.nas(),
            match mode {
                DmaMode::Va => "VA mode",
                DmaMode::Pa if dev.uses_platform_iommu() => "PA mode, IOMMU domain of the bridge",
                DmaMode::Pa => "PA mode",
            }
        );
        Ok(KBox::new(
            Bound {
                _reg: reg,
                mode,
                pinned,
                irqs,
            },
            GFP_KERNEL,
        )?)
    }
}

struct VhostMdevVdpa {
    _drv: vdpa::Registration<Bridge>,
}

impl kernel::Module for VhostMdevVdpa {
    fn init(module: &'static ThisModule) -> Result<Self> {
        Ok(VhostMdevVdpa {
            _drv: vdpa::Registration::new(c_str!("vhost_mdev_vdpa"), module, Some(&GROUPS))?,
        })
    }
}
