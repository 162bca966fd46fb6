// SPDX-License-Identifier: GPL-2.0 OR MIT
//! A driver-side packed virtqueue (virtio 1.1, 2.8) on page-aligned DMA
//! memory, beside the split one of [`crate::virtq`]: direct and indirect
//! descriptors, the driver's and device's wrap counters, and both event
//! suppression areas (with `VIRTIO_RING_F_EVENT_IDX`: `DESC` events).
//!
//! Memory layout of one queue, all at IOVAs `iova + offset`: the
//! descriptor ring (`size` 16-byte descriptors: `addr`, `len`, `id`,
//! `flags`), the driver event suppression area (`off_wrap`, `flags`; the
//! driver writes it), the device event suppression area (the device writes
//! it), then one indirect table per buffer id, then fixed-size data
//! buffers ([`PackedLayout`]).
//!
//! Ordering, as the spec and Linux's `virtio_ring.c` have it:
//!
//! - a chain's descriptors are written in full, the first one's `flags`
//!   last, after a write barrier (release): the device takes nothing of a
//!   chain before that store. [`PackedVirtq::add`] writes everything but
//!   that `flags`; [`PackedVirtq::publish`] stores the pending first
//!   `flags` (the same batching as the split ring's `avail.idx`);
//! - a used descriptor is recognised by its `flags` alone (one 2-byte
//!   acquire load: `AVAIL` and `USED` both equal to the driver's used wrap
//!   counter), and only then, after the read barrier the acquire gives,
//!   are its `id` and `len` read.
//!
//! Buffer ids are `0..size`; each id owns the indirect table at its index.
//! The device may complete buffers in any order: a used id frees the ring
//! slots its chain took, and the driver's used position advances by that
//! many (virtio 1.1, 2.8.6).

use std::sync::atomic::{fence, Ordering};

use vhost_mdev_proto::packed as proto_packed;
use virtio_bindings::virtio_ring::vring_packed_desc;

use crate::error::{Error, Result};
use crate::mem::DmaMemory;
use crate::uapi::VhostVringAddr;
use crate::virtq::{Seg, Used, VirtqConfig, DESC_SIZE, VRING_DESC_F_INDIRECT};
use crate::virtq::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};

// The packed ring's flags and event suppression values, and the encoding
// of its vring base: `vhost-mdev-proto`'s (checked against virtio-bindings
// there, and against the C headers in this crate's tests).

/// `1 << VRING_PACKED_DESC_F_AVAIL` (bit 7).
pub const VRING_PACKED_DESC_F_AVAIL: u16 = proto_packed::PACKED_DESC_F_AVAIL;
/// `1 << VRING_PACKED_DESC_F_USED` (bit 15).
pub const VRING_PACKED_DESC_F_USED: u16 = proto_packed::PACKED_DESC_F_USED;
/// Event suppression `flags`: events enabled.
pub const VRING_PACKED_EVENT_FLAG_ENABLE: u16 = proto_packed::PACKED_EVENT_FLAG_ENABLE;
/// Event suppression `flags`: events disabled.
pub const VRING_PACKED_EVENT_FLAG_DISABLE: u16 = proto_packed::PACKED_EVENT_FLAG_DISABLE;
/// Event suppression `flags`: an event for the descriptor at `off_wrap`
/// only (with `VIRTIO_RING_F_EVENT_IDX`).
pub const VRING_PACKED_EVENT_FLAG_DESC: u16 = proto_packed::PACKED_EVENT_FLAG_DESC;
/// The wrap counter's bit in `off_wrap` and in each half of the vhost
/// vring base.
pub const VRING_PACKED_EVENT_F_WRAP_CTR: u16 = proto_packed::PACKED_EVENT_F_WRAP_CTR;
/// Largest packed ring this driver sets up (the spec allows 2^15).
pub const MAX_PACKED_SIZE: u16 = proto_packed::MAX_PACKED_NUM;
/// The vhost vring base of a fresh packed ring: both indexes 0, both wrap
/// counters 1 (`VHOST_SET_VRING_BASE` encoding: available position in bits
/// 0-15, used position in bits 16-31, each `idx | wrap << 15`).
pub const PACKED_BASE_INIT: u32 = proto_packed::PACKED_BASE_INIT;

/// Offset of `len` in a packed descriptor (`struct vring_packed_desc`).
const D_LEN: usize = std::mem::offset_of!(vring_packed_desc, len);
/// Offset of `id`.
const D_ID: usize = std::mem::offset_of!(vring_packed_desc, id);
/// Offset of `flags`.
const D_FLAGS: usize = std::mem::offset_of!(vring_packed_desc, flags);

fn align_up(x: usize, a: usize) -> usize {
    x.div_ceil(a) * a
}

/// Offsets of the three parts of a packed ring of `size` descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackedLayout {
    /// Ring size.
    pub size: u16,
    /// Descriptor ring (16-byte aligned).
    pub desc: usize,
    /// Driver event suppression area (4-byte aligned): `off_wrap` then
    /// `flags`.
    pub driver: usize,
    /// Device event suppression area (4-byte aligned).
    pub device: usize,
    /// Bytes up to the end of the device area.
    pub len: usize,
}

impl PackedLayout {
    /// The layout for `size` descriptors (a power of two up to 32768: the
    /// vhost rule for `VHOST_SET_VRING_NUM`, for both ring types).
    pub fn new(size: u16) -> Result<Self> {
        if size == 0 || !size.is_power_of_two() || size > MAX_PACKED_SIZE {
            return Err(Error::InvalidArgument(format!(
                "packed queue size {size} is not a power of two in 1..=32768"
            )));
        }
        let desc = 0;
        let driver = desc + DESC_SIZE * usize::from(size);
        let device = driver + 4;
        Ok(PackedLayout {
            size,
            desc,
            driver,
            device,
            len: device + 4,
        })
    }

    /// Offset of descriptor `i`.
    pub fn desc_entry(&self, i: u16) -> usize {
        self.desc + DESC_SIZE * usize::from(i)
    }
}

/// A position in the ring: slot and wrap counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackedPos {
    /// Slot index (below the ring size).
    pub idx: u16,
    /// Wrap counter.
    pub wrap: bool,
}

impl PackedPos {
    /// Index 0, wrap counter 1: where both sides of a fresh ring start.
    pub const START: PackedPos = PackedPos { idx: 0, wrap: true };

    /// `n` slots further in a ring of `size` (`n <= size`).
    pub fn advance(self, n: u16, size: u16) -> PackedPos {
        let i = u32::from(self.idx) + u32::from(n);
        if i >= u32::from(size) {
            PackedPos {
                idx: (i - u32::from(size)) as u16,
                wrap: !self.wrap,
            }
        } else {
            PackedPos {
                idx: i as u16,
                wrap: self.wrap,
            }
        }
    }

    /// `idx | wrap << 15`: `off_wrap` and each half of the vring base.
    pub fn encode(self) -> u16 {
        self.idx | u16::from(self.wrap) << VRING_PACKED_EVENT_F_WRAP_CTR
    }

    /// The inverse of [`PackedPos::encode`]; `None` if the index is not
    /// below `size`.
    pub fn decode(v: u16, size: u16) -> Option<PackedPos> {
        let idx = v & !(1 << VRING_PACKED_EVENT_F_WRAP_CTR);
        (idx < size).then_some(PackedPos {
            idx,
            wrap: v >> VRING_PACKED_EVENT_F_WRAP_CTR != 0,
        })
    }

    /// Place in the two-lap sequence `0..2 * size`.
    fn lap(self, size: u16) -> u32 {
        u32::from(self.idx) + if self.wrap { 0 } else { u32::from(size) }
    }

    /// Slots from `self` forward to `to` (`0..2 * size`).
    pub fn distance(self, to: PackedPos, size: u16) -> u32 {
        let laps = 2 * u32::from(size);
        (to.lap(size) + laps - self.lap(size)) % laps
    }
}

/// Splits a vhost packed vring base into its available and used
/// positions; `None` if an index is not below `size`.
pub fn decode_base(base: u32, size: u16) -> Option<(PackedPos, PackedPos)> {
    Some((
        PackedPos::decode(base as u16, size)?,
        PackedPos::decode((base >> 16) as u16, size)?,
    ))
}

/// The vhost packed vring base of an available and a used position.
pub fn encode_base(avail: PackedPos, used: PackedPos) -> u32 {
    u32::from(avail.encode()) | u32::from(used.encode()) << 16
}

#[derive(Debug, Clone, Copy, Default)]
struct Id {
    token: u64,
    /// Ring slots the chain takes (1 for an indirect table).
    slots: u16,
    busy: bool,
}

/// A packed virtqueue, driver side.
#[derive(Debug)]
pub struct PackedVirtq {
    mem: DmaMemory,
    iova: u64,
    layout: PackedLayout,
    indirect_off: usize,
    max_indirect: usize,
    buf_off: usize,
    buf_size: usize,
    nbufs: usize,
    event_idx: bool,
    irq_enabled: bool,
    /// Free buffer ids, popped from the end.
    free_ids: Vec<u16>,
    ids: Vec<Id>,
    /// Ring slots neither in flight nor added.
    free_slots: u16,
    /// Next slot to add a descriptor at, and the driver's wrap counter.
    avail: PackedPos,
    /// Next slot the device writes a used descriptor at, and the used wrap
    /// counter.
    used: PackedPos,
    /// `avail` at the last publication.
    published: PackedPos,
    /// First descriptors added and not published: slot and `flags`.
    pending: Vec<(u16, u16)>,
}

impl PackedVirtq {
    /// Allocates the memory of a queue to be mapped at `iova` (the same
    /// parameters as a split [`crate::virtq::Virtq`]).
    pub fn new(cfg: VirtqConfig, iova: u64) -> Result<Self> {
        let layout = PackedLayout::new(cfg.size)?;
        let n = usize::from(cfg.size);
        let indirect_off = align_up(layout.len, DESC_SIZE);
        let buf_off = align_up(indirect_off + n * cfg.max_indirect * DESC_SIZE, 64);
        let buf_size = align_up(cfg.buf_size.max(1), 64);
        let mem = DmaMemory::new(buf_off + cfg.buffers * buf_size)?;
        let mut q = PackedVirtq {
            mem,
            iova,
            layout,
            indirect_off,
            max_indirect: cfg.max_indirect,
            buf_off,
            buf_size,
            nbufs: cfg.buffers,
            event_idx: cfg.event_idx,
            irq_enabled: true,
            free_ids: (0..cfg.size).rev().collect(),
            ids: vec![Id::default(); n],
            free_slots: cfg.size,
            avail: PackedPos::START,
            used: PackedPos::START,
            published: PackedPos::START,
            pending: Vec::with_capacity(n),
        };
        // Interrupts wanted from the start (the area is zero: ENABLE, and
        // with EVENT_IDX the driver moves to DESC at the first pop).
        q.enable_interrupts()?;
        Ok(q)
    }

    /// The queue memory (ring, event areas, indirect tables, buffers).
    pub fn memory(&self) -> &DmaMemory {
        &self.mem
    }
    /// The IOVA the memory is meant to be mapped at.
    pub fn iova(&self) -> u64 {
        self.iova
    }
    /// The ring layout.
    pub fn layout(&self) -> &PackedLayout {
        &self.layout
    }
    /// Queue size.
    pub fn size(&self) -> u16 {
        self.layout.size
    }
    /// Free ring slots.
    pub fn num_free(&self) -> usize {
        usize::from(self.free_slots)
    }
    /// Chains added and not yet returned by the device.
    pub fn in_flight(&self) -> usize {
        self.ids.iter().filter(|i| i.busy).count()
    }
    /// Next slot to add at, with the driver's wrap counter.
    pub fn avail_pos(&self) -> PackedPos {
        self.avail
    }
    /// Next slot the driver expects a used descriptor at, with the used
    /// wrap counter.
    pub fn used_pos(&self) -> PackedPos {
        self.used
    }
    /// The driver's state as a vhost vring base (`VHOST_SET_VRING_BASE`
    /// of a packed ring): what a device must start from to continue with
    /// this driver. [`PACKED_BASE_INIT`] for a fresh queue.
    pub fn vhost_base(&self) -> u32 {
        encode_base(self.avail, self.used)
    }

    /// The `vhost_vring_addr` of this queue as queue `index` (vhost's
    /// names: `avail` is the driver area, `used` the device area).
    pub fn vring_addr(&self, index: u32) -> VhostVringAddr {
        self.addr_at(index, self.iova)
    }

    /// The same rings at the addresses where this process sees them
    /// (`VHOST_VFIO_SET_VRING_HVA`).
    pub fn vring_hva(&self, index: u32) -> VhostVringAddr {
        self.addr_at(index, self.mem.addr())
    }

    fn addr_at(&self, index: u32, base: u64) -> VhostVringAddr {
        VhostVringAddr {
            index,
            flags: 0,
            desc_user_addr: base + self.layout.desc as u64,
            used_user_addr: base + self.layout.device as u64,
            avail_user_addr: base + self.layout.driver as u64,
            log_guest_addr: 0,
        }
    }

    /// Number of data buffers.
    pub fn num_bufs(&self) -> usize {
        self.nbufs
    }
    /// Size of each data buffer.
    pub fn buf_size(&self) -> usize {
        self.buf_size
    }
    fn buf_offset(&self, slot: usize) -> Result<usize> {
        if slot >= self.nbufs {
            return Err(Error::InvalidArgument(format!(
                "buffer {slot} of {}",
                self.nbufs
            )));
        }
        Ok(self.buf_off + slot * self.buf_size)
    }
    /// IOVA of data buffer `slot`.
    pub fn buf_iova(&self, slot: usize) -> Result<u64> {
        Ok(self.iova + self.buf_offset(slot)? as u64)
    }
    /// Copies `data` into buffer `slot` at `off`.
    pub fn write_buf(&self, slot: usize, off: usize, data: &[u8]) -> Result<()> {
        if off + data.len() > self.buf_size {
            return Err(Error::InvalidArgument(format!(
                "{} bytes at {off} exceed the {}-byte buffer",
                data.len(),
                self.buf_size
            )));
        }
        self.mem.write(self.buf_offset(slot)? + off, data)
    }
    /// Copies `len` bytes of buffer `slot` at `off`.
    pub fn read_buf(&self, slot: usize, off: usize, len: usize) -> Result<Vec<u8>> {
        let mut v = vec![0u8; len];
        self.read_buf_into(slot, off, &mut v)?;
        Ok(v)
    }
    /// Copies `out.len()` bytes of buffer `slot` at `off` into `out`.
    pub fn read_buf_into(&self, slot: usize, off: usize, out: &mut [u8]) -> Result<()> {
        if off + out.len() > self.buf_size {
            return Err(Error::InvalidArgument(format!(
                "{} bytes at {off} exceed the {}-byte buffer",
                out.len(),
                self.buf_size
            )));
        }
        self.mem.read(self.buf_offset(slot)? + off, out)
    }

    /// The `flags` that make a descriptor available in the current lap.
    fn avail_bits(&self) -> u16 {
        if self.avail.wrap {
            VRING_PACKED_DESC_F_AVAIL
        } else {
            VRING_PACKED_DESC_F_USED
        }
    }

    /// Writes `addr`, `len` and `id` of the descriptor at `off`.
    fn write_body(&self, off: usize, addr: u64, len: u32, id: u16) -> Result<()> {
        self.mem.store(off, addr.to_le())?;
        self.mem.store(off + D_LEN, len.to_le())?;
        self.mem.store(off + D_ID, id.to_le())
    }

    fn seg_flags(s: &Seg) -> u16 {
        if s.write {
            VRING_DESC_F_WRITE
        } else {
            0
        }
    }

    fn take_id(&mut self, slots: usize, what: &str) -> Result<u16> {
        if slots > usize::from(self.free_slots) {
            return Err(Error::InvalidArgument(format!(
                "{what} of {slots} descriptors with {} free",
                self.free_slots
            )));
        }
        self.free_ids
            .pop()
            .ok_or_else(|| Error::InvalidArgument("no free buffer id".into()))
    }

    /// Adds a chain of direct descriptors (readable segments first), one
    /// ring slot per segment, all carrying the buffer id; `token` comes
    /// back in [`Used`]. The first descriptor's `flags` are stored by
    /// [`PackedVirtq::publish`]: the device sees nothing before.
    pub fn add(&mut self, segs: &[Seg], token: u64) -> Result<u16> {
        if segs.is_empty() {
            return Err(Error::InvalidArgument("empty chain".into()));
        }
        let id = self.take_id(segs.len(), "chain")?;
        let n = segs.len() as u16;
        let first = self.avail;
        let bits = self.avail_bits();
        let mut at = first;
        let mut head_flags = 0;
        for (i, s) in segs.iter().enumerate() {
            let last = i + 1 == segs.len();
            let off = self.layout.desc_entry(at.idx);
            self.write_body(off, s.addr, s.len, id)?;
            let flags = Self::seg_flags(s) | if last { 0 } else { VRING_DESC_F_NEXT };
            // The available bits of the slot's lap (a chain may wrap).
            let bits = if at.wrap == first.wrap {
                bits
            } else {
                bits ^ (VRING_PACKED_DESC_F_AVAIL | VRING_PACKED_DESC_F_USED)
            };
            if i == 0 {
                head_flags = flags | bits;
            } else {
                // Behind a first descriptor that is not available yet.
                self.mem.store(off + D_FLAGS, (flags | bits).to_le())?;
            }
            at = at.advance(1, self.layout.size);
        }
        self.pending.push((first.idx, head_flags));
        self.ids[usize::from(id)] = Id {
            token,
            slots: n,
            busy: true,
        };
        self.free_slots -= n;
        self.avail = at;
        Ok(id)
    }

    /// Adds a chain as one descriptor pointing to the indirect table of its
    /// buffer id (at most `max_indirect` segments).
    pub fn add_indirect(&mut self, segs: &[Seg], token: u64) -> Result<u16> {
        if segs.is_empty() || segs.len() > self.max_indirect {
            return Err(Error::InvalidArgument(format!(
                "indirect chain of {} descriptors (max {})",
                segs.len(),
                self.max_indirect
            )));
        }
        let id = self.take_id(1, "indirect chain")?;
        let table = self.indirect_off + usize::from(id) * self.max_indirect * DESC_SIZE;
        for (i, s) in segs.iter().enumerate() {
            let off = table + i * DESC_SIZE;
            // In a packed indirect table the entries follow each other:
            // WRITE is their only flag, `id` is unused.
            self.write_body(off, s.addr, s.len, 0)?;
            self.mem.store(off + D_FLAGS, Self::seg_flags(s).to_le())?;
        }
        let first = self.avail;
        self.write_body(
            self.layout.desc_entry(first.idx),
            self.iova + table as u64,
            (segs.len() * DESC_SIZE) as u32,
            id,
        )?;
        self.pending
            .push((first.idx, VRING_DESC_F_INDIRECT | self.avail_bits()));
        self.ids[usize::from(id)] = Id {
            token,
            slots: 1,
            busy: true,
        };
        self.free_slots -= 1;
        self.avail = first.advance(1, self.layout.size);
        Ok(id)
    }

    /// Whether used-buffer notifications are asked for.
    pub fn interrupts_enabled(&self) -> bool {
        self.irq_enabled
    }

    /// Makes added chains available: a write barrier, then the pending
    /// first descriptors' `flags` (the earliest one last, so that the
    /// device finds them all at once). Returns whether the device asked to
    /// be kicked: its event area's `flags` are `ENABLE`, or `DESC` with an
    /// `off_wrap` among the slots made available since the last call.
    pub fn publish(&mut self) -> Result<bool> {
        let old = self.published;
        let new = self.avail;
        // Everything of the chains before their first flags (release).
        fence(Ordering::Release);
        for &(slot, flags) in self.pending.iter().rev() {
            self.mem
                .atomic_u16(self.layout.desc_entry(slot) + D_FLAGS)?
                .store(flags.to_le(), Ordering::Release);
        }
        self.pending.clear();
        // The flags before the read of the device's event area.
        fence(Ordering::SeqCst);
        self.published = new;
        if old == new {
            return Ok(false);
        }
        let flags = u16::from_le(
            self.mem
                .atomic_u16(self.layout.device + 2)?
                .load(Ordering::Acquire),
        );
        Ok(match flags {
            VRING_PACKED_EVENT_FLAG_DISABLE => false,
            VRING_PACKED_EVENT_FLAG_DESC if self.event_idx => {
                let off_wrap = u16::from_le(self.mem.load(self.layout.device)?);
                match PackedPos::decode(off_wrap, self.layout.size) {
                    // The event slot is among those published now.
                    Some(ev) => old.distance(ev, self.size()) < old.distance(new, self.size()),
                    // A device's bad offset: kicking is harmless.
                    None => true,
                }
            }
            // ENABLE, and anything else a device may write: kick.
            _ => true,
        })
    }

    /// The `flags` of the slot at the driver's used position.
    fn used_flags(&self) -> Result<u16> {
        Ok(u16::from_le(
            self.mem
                .atomic_u16(self.layout.desc_entry(self.used.idx) + D_FLAGS)?
                .load(Ordering::Acquire),
        ))
    }

    /// Whether the device has returned chains not yet popped: the
    /// descriptor at the used position has `AVAIL` and `USED` both equal
    /// to the used wrap counter.
    pub fn has_used(&self) -> Result<bool> {
        let f = self.used_flags()?;
        let avail = f & VRING_PACKED_DESC_F_AVAIL != 0;
        let used = f & VRING_PACKED_DESC_F_USED != 0;
        Ok(avail == used && used == self.used.wrap)
    }

    /// Takes the next used descriptor (its `flags` first, then, after the
    /// acquire, `id` and `len`), freeing the ring slots of its chain.
    pub fn pop_used(&mut self) -> Result<Option<Used>> {
        if !self.has_used()? {
            return Ok(None);
        }
        let off = self.layout.desc_entry(self.used.idx);
        let id = u16::from_le(self.mem.load(off + D_ID)?);
        let len = u32::from_le(self.mem.load(off + D_LEN)?);
        let e = self
            .ids
            .get(usize::from(id))
            .copied()
            .filter(|e| e.busy)
            .ok_or_else(|| {
                Error::Protocol(format!(
                    "device used buffer id {id} at slot {}, which is not in flight",
                    self.used.idx
                ))
            })?;
        self.ids[usize::from(id)] = Id::default();
        self.free_ids.push(id);
        self.free_slots += e.slots;
        self.used = self.used.advance(e.slots, self.layout.size);
        if self.event_idx && self.irq_enabled {
            // Ask for an interrupt at the next used descriptor.
            self.mem
                .store(self.layout.driver, self.used.encode().to_le())?;
        }
        Ok(Some(Used {
            token: e.token,
            len,
            head: id,
        }))
    }

    /// Asks the device for interrupts (with EVENT_IDX: `DESC` at the next
    /// used position, moved on by each [`PackedVirtq::pop_used`]); returns
    /// whether used descriptors are already pending.
    pub fn enable_interrupts(&mut self) -> Result<bool> {
        self.irq_enabled = true;
        let flags = if self.event_idx {
            self.mem
                .store(self.layout.driver, self.used.encode().to_le())?;
            // off_wrap before the flags that make the device read it.
            fence(Ordering::Release);
            VRING_PACKED_EVENT_FLAG_DESC
        } else {
            VRING_PACKED_EVENT_FLAG_ENABLE
        };
        self.mem
            .atomic_u16(self.layout.driver + 2)?
            .store(flags.to_le(), Ordering::Release);
        fence(Ordering::SeqCst);
        self.has_used()
    }

    /// Asks the device not to interrupt (`DISABLE`, a hint) until
    /// [`PackedVirtq::enable_interrupts`].
    pub fn disable_interrupts(&mut self) -> Result<()> {
        self.irq_enabled = false;
        self.mem
            .atomic_u16(self.layout.driver + 2)?
            .store(VRING_PACKED_EVENT_FLAG_DISABLE.to_le(), Ordering::Release);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(size: u16, event_idx: bool) -> VirtqConfig {
        VirtqConfig {
            size,
            buffers: usize::from(size),
            buf_size: 256,
            max_indirect: 4,
            event_idx,
        }
    }

    #[test]
    fn layout_and_positions() {
        let l = PackedLayout::new(256).unwrap();
        assert_eq!((l.desc, l.driver, l.device, l.len), (0, 4096, 4100, 4104));
        for bad in [0, 3, 100, 65535] {
            assert!(PackedLayout::new(bad).is_err(), "{bad}");
        }
        let p = PackedPos::START.advance(3, 4);
        assert_eq!(p, PackedPos { idx: 3, wrap: true });
        let p = p.advance(1, 4);
        assert_eq!(
            p,
            PackedPos {
                idx: 0,
                wrap: false
            }
        );
        assert_eq!(p.encode(), 0);
        assert_eq!(PackedPos::START.encode(), 0x8000);
        assert_eq!(
            PackedPos::decode(0x8003, 4),
            Some(PackedPos { idx: 3, wrap: true })
        );
        assert_eq!(PackedPos::decode(0x8004, 4), None);
        assert_eq!(PackedPos::START.distance(p, 4), 4);
        assert_eq!(p.distance(PackedPos::START, 4), 4);
        assert_eq!(
            encode_base(PackedPos::START, PackedPos::START),
            PACKED_BASE_INIT
        );
        assert_eq!(
            decode_base(PACKED_BASE_INIT, 8),
            Some((PackedPos::START, PackedPos::START))
        );
        assert_eq!(decode_base(0x0008_8000, 8), None);
    }

    #[test]
    fn publish_stores_the_first_flags_last() {
        let mut q = PackedVirtq::new(cfg(4, false), 0).unwrap();
        let seg = |write| Seg {
            addr: 0x1000,
            len: 8,
            write,
        };
        q.add(&[seg(false), seg(true)], 7).unwrap();
        let l = *q.layout();
        let flags =
            |q: &PackedVirtq, i| u16::from_le(q.memory().load(l.desc_entry(i) + D_FLAGS).unwrap());
        // Added: the second descriptor is written, the first not yet.
        assert_eq!(flags(&q, 0), 0);
        assert_eq!(flags(&q, 1), VRING_DESC_F_WRITE | VRING_PACKED_DESC_F_AVAIL);
        assert!(q.publish().unwrap());
        assert_eq!(flags(&q, 0), VRING_DESC_F_NEXT | VRING_PACKED_DESC_F_AVAIL);
        assert_eq!(q.num_free(), 2);
        assert!(!q.has_used().unwrap());
        assert_eq!(
            q.vhost_base(),
            encode_base(PackedPos { idx: 2, wrap: true }, PackedPos::START)
        );
    }
}
