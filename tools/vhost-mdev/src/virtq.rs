// SPDX-License-Identifier: GPL-2.0 OR MIT
//! A driver-side split virtqueue (virtio 1.x, little-endian rings) on
//! page-aligned DMA memory, with direct and indirect descriptors and
//! `VIRTIO_RING_F_EVENT_IDX` support.
//!
//! Memory layout of one queue, all at IOVAs `iova + offset`:
//! descriptor table, available ring, used ring (the ring layout of the
//! virtio spec, [`RingLayout`]), then one indirect table per descriptor,
//! then fixed-size data buffers.

use std::sync::atomic::{fence, Ordering};

use crate::error::{Error, Result};
use crate::mem::DmaMemory;
use crate::uapi::VhostVringAddr;

use virtio_bindings::virtio_ring as vring;

/// Descriptor continues in `next`.
pub const VRING_DESC_F_NEXT: u16 = vring::VRING_DESC_F_NEXT as u16;
/// Buffer is device-writable.
pub const VRING_DESC_F_WRITE: u16 = vring::VRING_DESC_F_WRITE as u16;
/// Buffer holds an indirect descriptor table.
pub const VRING_DESC_F_INDIRECT: u16 = vring::VRING_DESC_F_INDIRECT as u16;
/// `avail.flags`: do not interrupt (without EVENT_IDX).
pub const VRING_AVAIL_F_NO_INTERRUPT: u16 = vring::VRING_AVAIL_F_NO_INTERRUPT as u16;
/// `used.flags`: do not kick (without EVENT_IDX).
pub const VRING_USED_F_NO_NOTIFY: u16 = vring::VRING_USED_F_NO_NOTIFY as u16;
/// Size of a descriptor.
pub const DESC_SIZE: usize = std::mem::size_of::<vring::vring_desc>();
/// Largest split queue size.
pub const MAX_QUEUE_SIZE: u16 = 32768;

/// `vring_need_event()`: whether moving an index from `old` to `new`
/// crosses `event` (all wrapping u16 arithmetic).
pub fn vring_need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

fn align_up(x: usize, a: usize) -> usize {
    x.div_ceil(a) * a
}

/// Offsets of the three parts of a split ring of `size` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingLayout {
    /// Queue size.
    pub size: u16,
    /// Descriptor table (16-byte aligned).
    pub desc: usize,
    /// Available ring: flags, idx, ring[size], used_event (2-byte aligned).
    pub avail: usize,
    /// Used ring: flags, idx, ring[size] of {id, len}, avail_event
    /// (4-byte aligned).
    pub used: usize,
    /// Bytes up to the end of the used ring.
    pub len: usize,
}

impl RingLayout {
    /// The layout for `size` entries (a power of two up to 32768).
    pub fn new(size: u16) -> Result<Self> {
        if size == 0 || !size.is_power_of_two() || size > MAX_QUEUE_SIZE {
            return Err(Error::InvalidArgument(format!(
                "queue size {size} is not a power of two in 1..=32768"
            )));
        }
        let n = usize::from(size);
        let desc = 0;
        let avail = desc + DESC_SIZE * n;
        let used = align_up(avail + 6 + 2 * n, 4);
        let len = used + 6 + 8 * n;
        Ok(RingLayout {
            size,
            desc,
            avail,
            used,
            len,
        })
    }

    /// Offset of descriptor `i`.
    pub fn desc_entry(&self, i: u16) -> usize {
        self.desc + DESC_SIZE * usize::from(i)
    }
    /// Offset of `avail.idx`.
    pub fn avail_idx(&self) -> usize {
        self.avail + 2
    }
    /// Offset of `avail.ring[i]`.
    pub fn avail_entry(&self, i: u16) -> usize {
        self.avail + 4 + 2 * usize::from(i)
    }
    /// Offset of `used_event` (after the available ring).
    pub fn used_event(&self) -> usize {
        self.avail + 4 + 2 * usize::from(self.size)
    }
    /// Offset of `used.idx`.
    pub fn used_idx(&self) -> usize {
        self.used + 2
    }
    /// Offset of `used.ring[i]`.
    pub fn used_entry(&self, i: u16) -> usize {
        self.used + 4 + 8 * usize::from(i)
    }
    /// Offset of `avail_event` (after the used ring).
    pub fn avail_event(&self) -> usize {
        self.used + 4 + 8 * usize::from(self.size)
    }
}

/// One buffer segment of a chain: an IOVA range, device-readable or
/// device-writable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seg {
    /// IOVA of the segment.
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
    /// Device-writable (`VRING_DESC_F_WRITE`).
    pub write: bool,
}

/// A used element returned by the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Used {
    /// The token given to [`Virtq::add`].
    pub token: u64,
    /// Bytes the device wrote.
    pub len: u32,
    /// Head descriptor id.
    pub head: u16,
}

/// Parameters of a [`Virtq`].
#[derive(Debug, Clone, Copy)]
pub struct VirtqConfig {
    /// Queue size (power of two).
    pub size: u16,
    /// Number of data buffers to allocate after the rings.
    pub buffers: usize,
    /// Size of each data buffer (rounded up to 64).
    pub buf_size: usize,
    /// Entries of each indirect table (0: no indirect support).
    pub max_indirect: usize,
    /// Whether `VIRTIO_RING_F_EVENT_IDX` was negotiated.
    pub event_idx: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Head {
    token: u64,
    ndesc: u16,
    busy: bool,
}

/// A split virtqueue, driver side.
#[derive(Debug)]
pub struct Virtq {
    mem: DmaMemory,
    iova: u64,
    layout: RingLayout,
    indirect_off: usize,
    max_indirect: usize,
    buf_off: usize,
    buf_size: usize,
    nbufs: usize,
    event_idx: bool,
    /// Whether the driver wants used-buffer notifications (see
    /// [`Virtq::enable_interrupts`] and [`Virtq::disable_interrupts`]).
    irq_enabled: bool,
    free: Vec<u16>,
    next: Vec<u16>,
    heads: Vec<Head>,
    avail_idx: u16,
    published: u16,
    last_used: u16,
}

impl Virtq {
    /// Allocates the memory of a queue to be mapped at `iova`.
    pub fn new(cfg: VirtqConfig, iova: u64) -> Result<Self> {
        let layout = RingLayout::new(cfg.size)?;
        let n = usize::from(cfg.size);
        let indirect_off = align_up(layout.len, DESC_SIZE);
        let buf_off = align_up(indirect_off + n * cfg.max_indirect * DESC_SIZE, 64);
        let buf_size = align_up(cfg.buf_size.max(1), 64);
        let total = buf_off + cfg.buffers * buf_size;
        let mem = DmaMemory::new(total)?;
        Ok(Virtq {
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
            // Pop order 0, 1, 2, ...
            free: (0..cfg.size).rev().collect(),
            next: vec![0; n],
            heads: vec![Head::default(); n],
            avail_idx: 0,
            published: 0,
            last_used: 0,
        })
    }

    /// The queue memory (rings, indirect tables, buffers).
    pub fn memory(&self) -> &DmaMemory {
        &self.mem
    }
    /// The IOVA the memory is meant to be mapped at.
    pub fn iova(&self) -> u64 {
        self.iova
    }
    /// The ring layout.
    pub fn layout(&self) -> &RingLayout {
        &self.layout
    }
    /// Queue size.
    pub fn size(&self) -> u16 {
        self.layout.size
    }
    /// Free descriptors.
    pub fn num_free(&self) -> usize {
        self.free.len()
    }
    /// Chains added and not yet returned by the device.
    pub fn in_flight(&self) -> usize {
        self.heads.iter().filter(|h| h.busy).count()
    }
    /// The next `avail.idx` to publish.
    pub fn avail_idx(&self) -> u16 {
        self.avail_idx
    }
    /// The used index the driver has consumed up to.
    pub fn last_used(&self) -> u16 {
        self.last_used
    }

    /// The `vhost_vring_addr` of this queue as queue `index`.
    pub fn vring_addr(&self, index: u32) -> VhostVringAddr {
        VhostVringAddr {
            index,
            flags: 0,
            desc_user_addr: self.iova + self.layout.desc as u64,
            used_user_addr: self.iova + self.layout.used as u64,
            avail_user_addr: self.iova + self.layout.avail as u64,
            log_guest_addr: 0,
        }
    }

    /// The same rings at the addresses where this process sees them
    /// (`VHOST_VFIO_SET_VRING_HVA`).
    pub fn vring_hva(&self, index: u32) -> VhostVringAddr {
        let base = self.mem.addr();
        VhostVringAddr {
            index,
            flags: 0,
            desc_user_addr: base + self.layout.desc as u64,
            used_user_addr: base + self.layout.used as u64,
            avail_user_addr: base + self.layout.avail as u64,
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

    fn write_desc(&self, off: usize, addr: u64, len: u32, flags: u16, next: u16) -> Result<()> {
        self.mem.store(off, addr.to_le())?;
        self.mem.store(off + 8, len.to_le())?;
        self.mem.store(off + 12, flags.to_le())?;
        self.mem.store(off + 14, next.to_le())
    }

    fn seg_flags(s: &Seg) -> u16 {
        if s.write {
            VRING_DESC_F_WRITE
        } else {
            0
        }
    }

    fn push_avail(&mut self, head: u16, token: u64, ndesc: u16) -> Result<u16> {
        self.heads[usize::from(head)] = Head {
            token,
            ndesc,
            busy: true,
        };
        let slot = self.avail_idx & (self.layout.size - 1);
        self.mem
            .store(self.layout.avail_entry(slot), head.to_le())?;
        self.avail_idx = self.avail_idx.wrapping_add(1);
        Ok(head)
    }

    /// Adds a chain of direct descriptors (readable segments first, as the
    /// spec requires); `token` comes back in [`Used`]. Not visible to the
    /// device until [`Virtq::publish`].
    pub fn add(&mut self, segs: &[Seg], token: u64) -> Result<u16> {
        if segs.is_empty() || segs.len() > self.free.len() {
            return Err(Error::InvalidArgument(format!(
                "chain of {} descriptors with {} free",
                segs.len(),
                self.free.len()
            )));
        }
        // The chain takes the last segs.len() entries of the free list, in
        // pop order: ids[i] = free[base + n - 1 - i] (no allocation per
        // chain).
        let n = segs.len();
        let base = self.free.len() - n;
        let id = |free: &[u16], i: usize| free[base + n - 1 - i];
        for (i, s) in segs.iter().enumerate() {
            let cur = id(&self.free, i);
            let (flags, next) = if i + 1 < n {
                (
                    Self::seg_flags(s) | VRING_DESC_F_NEXT,
                    id(&self.free, i + 1),
                )
            } else {
                (Self::seg_flags(s), 0)
            };
            self.next[usize::from(cur)] = next;
            self.write_desc(self.layout.desc_entry(cur), s.addr, s.len, flags, next)?;
        }
        let head = id(&self.free, 0);
        self.free.truncate(base);
        self.push_avail(head, token, n as u16)
    }

    /// Adds a chain as one descriptor pointing to an indirect table.
    pub fn add_indirect(&mut self, segs: &[Seg], token: u64) -> Result<u16> {
        if segs.is_empty() || segs.len() > self.max_indirect {
            return Err(Error::InvalidArgument(format!(
                "indirect chain of {} descriptors (max {})",
                segs.len(),
                self.max_indirect
            )));
        }
        let head = self
            .free
            .pop()
            .ok_or_else(|| Error::InvalidArgument("no free descriptor".into()))?;
        let table = self.indirect_off + usize::from(head) * self.max_indirect * DESC_SIZE;
        for (i, s) in segs.iter().enumerate() {
            let last = i + 1 == segs.len();
            let flags = Self::seg_flags(s) | if last { 0 } else { VRING_DESC_F_NEXT };
            let next = if last { 0 } else { i as u16 + 1 };
            self.write_desc(table + i * DESC_SIZE, s.addr, s.len, flags, next)?;
        }
        self.write_desc(
            self.layout.desc_entry(head),
            self.iova + table as u64,
            (segs.len() * DESC_SIZE) as u32,
            VRING_DESC_F_INDIRECT,
            0,
        )?;
        self.push_avail(head, token, 1)
    }

    /// Whether used-buffer notifications are asked for.
    pub fn interrupts_enabled(&self) -> bool {
        self.irq_enabled
    }

    /// Makes added chains visible to the device; returns whether the device
    /// asked to be kicked (EVENT_IDX `avail_event`, or the absence of
    /// `VRING_USED_F_NO_NOTIFY`).
    pub fn publish(&mut self) -> Result<bool> {
        let old = self.published;
        let new = self.avail_idx;
        // Descriptors and ring entries before the index (release), and the
        // index before reading the device's event (full fence).
        fence(Ordering::Release);
        self.mem
            .atomic_u16(self.layout.avail_idx())?
            .store(new.to_le(), Ordering::Release);
        fence(Ordering::SeqCst);
        self.published = new;
        if old == new {
            return Ok(false);
        }
        if self.event_idx {
            let event = u16::from_le(self.mem.load(self.layout.avail_event())?);
            Ok(vring_need_event(event, new, old))
        } else {
            let flags = u16::from_le(self.mem.load(self.layout.used)?);
            Ok(flags & VRING_USED_F_NO_NOTIFY == 0)
        }
    }

    /// The device's `used.idx`.
    pub fn used_idx(&self) -> Result<u16> {
        Ok(u16::from_le(
            self.mem
                .atomic_u16(self.layout.used_idx())?
                .load(Ordering::Acquire),
        ))
    }

    /// Whether the device has returned chains not yet popped.
    pub fn has_used(&self) -> Result<bool> {
        Ok(self.used_idx()? != self.last_used)
    }

    /// Takes the next used element, recycling its descriptors.
    pub fn pop_used(&mut self) -> Result<Option<Used>> {
        if self.used_idx()? == self.last_used {
            return Ok(None);
        }
        let e = self
            .layout
            .used_entry(self.last_used & (self.layout.size - 1));
        let id = u32::from_le(self.mem.load(e)?);
        let len = u32::from_le(self.mem.load(e + 4)?);
        let head = u16::try_from(id)
            .ok()
            .filter(|h| *h < self.layout.size && self.heads[usize::from(*h)].busy)
            .ok_or_else(|| {
                Error::Protocol(format!("device returned id {id}, which is not in flight"))
            })?;
        let h = std::mem::take(&mut self.heads[usize::from(head)]);
        let mut d = head;
        for _ in 0..h.ndesc {
            self.free.push(d);
            d = self.next[usize::from(d)];
        }
        self.last_used = self.last_used.wrapping_add(1);
        if self.event_idx && self.irq_enabled {
            // Ask for an interrupt at the next used entry.
            self.mem
                .store(self.layout.used_event(), self.last_used.to_le())?;
        }
        Ok(Some(Used {
            token: h.token,
            len,
            head,
        }))
    }

    /// Asks the device for interrupts (from now on, until
    /// [`Virtq::disable_interrupts`]: each [`Virtq::pop_used`] moves
    /// `used_event` to the next entry); returns whether used entries are
    /// already pending (check them before waiting).
    pub fn enable_interrupts(&mut self) -> Result<bool> {
        self.irq_enabled = true;
        if self.event_idx {
            self.mem
                .store(self.layout.used_event(), self.last_used.to_le())?;
        } else {
            self.mem.store(self.layout.avail, 0u16)?;
        }
        fence(Ordering::SeqCst);
        self.has_used()
    }

    /// Asks the device not to interrupt (a hint), until
    /// [`Virtq::enable_interrupts`]: [`Virtq::pop_used`] no longer moves
    /// `used_event` forward, so with EVENT_IDX the device is asked again
    /// only after the used index wraps around the whole u16 space.
    pub fn disable_interrupts(&mut self) -> Result<()> {
        self.irq_enabled = false;
        if self.event_idx {
            self.mem.store(
                self.layout.used_event(),
                self.last_used.wrapping_sub(1).to_le(),
            )
        } else {
            self.mem
                .store(self.layout.avail, VRING_AVAIL_F_NO_INTERRUPT.to_le())
        }
    }
}

/// An in-process device for unit tests: consumes chains from the same
/// memory, the way a device behind an identity IOMMU would.
#[cfg(test)]
pub(crate) mod fake {
    use super::*;

    /// A chain as the device sees it.
    #[derive(Debug, Default)]
    pub struct Chain {
        pub head: u16,
        pub readable: Vec<u8>,
        pub writable: Vec<(u64, u32)>,
    }

    /// Device side of one queue.
    pub struct FakeQueue {
        pub last_avail: u16,
        pub used_idx: u16,
        pub event_idx: bool,
    }

    fn desc(mem: &DmaMemory, off: usize) -> (u64, u32, u16, u16) {
        (
            u64::from_le(mem.load(off).unwrap()),
            u32::from_le(mem.load(off + 8).unwrap()),
            u16::from_le(mem.load(off + 12).unwrap()),
            u16::from_le(mem.load(off + 14).unwrap()),
        )
    }

    impl FakeQueue {
        pub fn new(event_idx: bool) -> Self {
            FakeQueue {
                last_avail: 0,
                used_idx: 0,
                event_idx,
            }
        }

        /// Pops the next available chain of `vq`.
        pub fn pop(&mut self, vq: &Virtq) -> Option<Chain> {
            let l = vq.layout();
            let mem = vq.memory();
            let avail = u16::from_le(
                mem.atomic_u16(l.avail_idx())
                    .unwrap()
                    .load(Ordering::Acquire),
            );
            if avail == self.last_avail {
                return None;
            }
            let head = u16::from_le(
                mem.load(l.avail_entry(self.last_avail & (l.size - 1)))
                    .unwrap(),
            );
            self.last_avail = self.last_avail.wrapping_add(1);
            if self.event_idx {
                mem.store(l.avail_event(), self.last_avail.to_le()).unwrap();
            }
            let mut chain = Chain {
                head,
                ..Default::default()
            };
            let (mut addr, mut len, mut flags, mut next) = desc(mem, l.desc_entry(head));
            let mut table = None;
            if flags & VRING_DESC_F_INDIRECT != 0 {
                let t = (addr - vq.iova()) as usize;
                table = Some(t);
                (addr, len, flags, next) = desc(mem, t);
            }
            loop {
                let off = (addr - vq.iova()) as usize;
                if flags & VRING_DESC_F_WRITE != 0 {
                    chain.writable.push((addr, len));
                } else {
                    let mut b = vec![0u8; len as usize];
                    mem.read(off, &mut b).unwrap();
                    chain.readable.extend_from_slice(&b);
                }
                if flags & VRING_DESC_F_NEXT == 0 {
                    break;
                }
                (addr, len, flags, next) = match table {
                    Some(t) => desc(mem, t + DESC_SIZE * usize::from(next)),
                    None => desc(mem, l.desc_entry(next)),
                };
            }
            Some(chain)
        }

        /// Writes `data` into the writable part of `chain` and returns it
        /// as used; returns whether the driver asked for an interrupt.
        pub fn push(&mut self, vq: &Virtq, chain: &Chain, data: &[u8]) -> bool {
            let mem = vq.memory();
            let mut rest = data;
            for (addr, len) in &chain.writable {
                let n = rest.len().min(*len as usize);
                mem.write((*addr - vq.iova()) as usize, &rest[..n]).unwrap();
                rest = &rest[n..];
            }
            assert!(rest.is_empty(), "writable part too small");
            let l = vq.layout();
            let e = l.used_entry(self.used_idx & (l.size - 1));
            mem.store(e, u32::from(chain.head).to_le()).unwrap();
            mem.store(e + 4, (data.len() as u32).to_le()).unwrap();
            let old = self.used_idx;
            self.used_idx = self.used_idx.wrapping_add(1);
            fence(Ordering::Release);
            mem.atomic_u16(l.used_idx())
                .unwrap()
                .store(self.used_idx.to_le(), Ordering::Release);
            fence(Ordering::SeqCst);
            if self.event_idx {
                let ev = u16::from_le(mem.load(l.used_event()).unwrap());
                vring_need_event(ev, self.used_idx, old)
            } else {
                u16::from_le(mem.load(l.avail).unwrap()) & VRING_AVAIL_F_NO_INTERRUPT == 0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeQueue;
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
    fn ring_layout_arithmetic() {
        let l = RingLayout::new(256).unwrap();
        assert_eq!(l.desc, 0);
        assert_eq!(l.avail, 4096);
        assert_eq!(l.avail_entry(0), 4100);
        assert_eq!(l.used_event(), 4100 + 512);
        assert_eq!(l.used, 4616); // 4096 + 6 + 512 = 4614, aligned to 4
        assert_eq!(l.used_entry(1), 4616 + 4 + 8);
        assert_eq!(l.avail_event(), 4616 + 4 + 2048);
        assert_eq!(l.len, 4616 + 6 + 2048);
        let l = RingLayout::new(1).unwrap();
        assert_eq!((l.avail, l.used, l.len), (16, 24, 38));
        for bad in [0, 3, 100, 65535] {
            assert!(RingLayout::new(bad).is_err(), "{bad}");
        }
        for s in [2u16, 64, 1024, 32768] {
            let l = RingLayout::new(s).unwrap();
            assert_eq!(l.used % 4, 0);
            assert_eq!(l.avail % 2, 0);
            assert!(l.avail >= l.desc + 16 * usize::from(s));
            assert!(l.used >= l.used_event() + 2);
        }
    }

    #[test]
    fn need_event() {
        assert!(vring_need_event(0, 1, 0));
        assert!(!vring_need_event(1, 1, 0));
        assert!(vring_need_event(5, 10, 3));
        assert!(!vring_need_event(10, 10, 3));
        // Wrapping.
        assert!(vring_need_event(65535, 2, 65534));
        assert!(!vring_need_event(3, 2, 65534));
    }

    #[test]
    fn direct_chains_round_trip() {
        for event_idx in [false, true] {
            let mut vq = Virtq::new(cfg(8, event_idx), 0x10_0000).unwrap();
            let mut dev = FakeQueue::new(event_idx);
            // 20 rounds wrap the 8-entry ring and the free list.
            for round in 0..20u64 {
                vq.write_buf(0, 0, &round.to_le_bytes()).unwrap();
                let segs = [
                    Seg {
                        addr: vq.buf_iova(0).unwrap(),
                        len: 8,
                        write: false,
                    },
                    Seg {
                        addr: vq.buf_iova(1).unwrap(),
                        len: 16,
                        write: true,
                    },
                ];
                vq.add(&segs, round).unwrap();
                assert_eq!(vq.num_free(), 6);
                vq.enable_interrupts().unwrap();
                let kick = vq.publish().unwrap();
                assert!(kick, "round {round}");
                let chain = dev.pop(&vq).unwrap();
                assert_eq!(chain.readable, round.to_le_bytes());
                assert!(dev.pop(&vq).is_none());
                let irq = dev.push(&vq, &chain, b"reply");
                assert!(irq);
                let u = vq.pop_used().unwrap().unwrap();
                assert_eq!((u.token, u.len), (round, 5));
                assert_eq!(vq.read_buf(1, 0, 5).unwrap(), b"reply");
                assert!(vq.pop_used().unwrap().is_none());
                assert_eq!(vq.num_free(), 8);
            }
        }
    }

    #[test]
    fn indirect_chains() {
        let mut vq = Virtq::new(cfg(4, true), 0x4000_0000).unwrap();
        let mut dev = FakeQueue::new(true);
        vq.write_buf(2, 0, b"abc").unwrap();
        vq.write_buf(3, 0, b"def").unwrap();
        let segs = [
            Seg {
                addr: vq.buf_iova(2).unwrap(),
                len: 3,
                write: false,
            },
            Seg {
                addr: vq.buf_iova(3).unwrap(),
                len: 3,
                write: false,
            },
            Seg {
                addr: vq.buf_iova(0).unwrap(),
                len: 64,
                write: true,
            },
        ];
        vq.add_indirect(&segs, 42).unwrap();
        assert_eq!(vq.num_free(), 3);
        assert!(vq.add_indirect(&[segs[0]; 5], 0).is_err());
        vq.publish().unwrap();
        let chain = dev.pop(&vq).unwrap();
        assert_eq!(chain.readable, b"abcdef");
        assert_eq!(chain.writable.len(), 1);
        dev.push(&vq, &chain, b"xyz");
        let u = vq.pop_used().unwrap().unwrap();
        assert_eq!((u.token, u.len), (42, 3));
        assert_eq!(vq.num_free(), 4);
    }

    #[test]
    fn event_idx_suppression() {
        let mut vq = Virtq::new(cfg(8, true), 0).unwrap();
        let mut dev = FakeQueue::new(true);
        let seg = [Seg {
            addr: vq.buf_iova(0).unwrap(),
            len: 1,
            write: true,
        }];
        vq.add(&seg, 0).unwrap();
        assert!(vq.publish().unwrap());
        // The device has not consumed anything: avail_event is still 0, so
        // publishing idx 2 (old 1) does not cross it.
        vq.add(&seg, 1).unwrap();
        assert!(!vq.publish().unwrap());
        let a = dev.pop(&vq).unwrap();
        let b = dev.pop(&vq).unwrap();
        // The device now waits for idx 2 -> kick wanted for the next one.
        vq.add(&seg, 2).unwrap();
        assert!(vq.publish().unwrap());
        // Interrupts off: the device is not asked to interrupt.
        vq.disable_interrupts().unwrap();
        assert!(!dev.push(&vq, &a, b"x"));
        // On: pending entries are reported, then the next push interrupts.
        assert!(vq.enable_interrupts().unwrap());
        vq.pop_used().unwrap().unwrap();
        assert!(dev.push(&vq, &b, b"y"));
    }

    #[test]
    fn disabled_interrupts_stay_disabled_across_pops() {
        let mut vq = Virtq::new(cfg(8, true), 0).unwrap();
        let mut dev = FakeQueue::new(true);
        let seg = [Seg {
            addr: vq.buf_iova(0).unwrap(),
            len: 1,
            write: true,
        }];
        vq.disable_interrupts().unwrap();
        assert!(!vq.interrupts_enabled());
        for round in 0..20u64 {
            vq.add(&seg, round).unwrap();
            vq.publish().unwrap();
            let c = dev.pop(&vq).unwrap();
            // pop_used does not ask for the next interrupt again.
            assert!(!dev.push(&vq, &c, b"x"), "round {round}");
            vq.pop_used().unwrap().unwrap();
        }
        // Enabled: the next completion interrupts, and so do later ones.
        assert!(!vq.enable_interrupts().unwrap());
        for round in 0..3u64 {
            vq.add(&seg, round).unwrap();
            vq.publish().unwrap();
            let c = dev.pop(&vq).unwrap();
            assert!(dev.push(&vq, &c, b"y"), "round {round}");
            vq.pop_used().unwrap().unwrap();
        }
    }

    #[test]
    fn bogus_used_id_is_an_error() {
        let mut vq = Virtq::new(cfg(4, false), 0).unwrap();
        let mut dev = FakeQueue::new(false);
        let seg = [Seg {
            addr: vq.buf_iova(0).unwrap(),
            len: 1,
            write: true,
        }];
        vq.add(&seg, 0).unwrap();
        vq.publish().unwrap();
        let mut c = dev.pop(&vq).unwrap();
        c.head = 3; // never added
        dev.push(&vq, &c, b"");
        assert!(vq.pop_used().is_err());
    }

    #[test]
    fn buffer_bounds() {
        let vq = Virtq::new(cfg(4, false), 0).unwrap();
        assert_eq!(vq.buf_size(), 256);
        assert!(vq.write_buf(4, 0, b"x").is_err());
        assert!(vq.write_buf(0, 255, b"xy").is_err());
        assert!(vq.read_buf(0, 0, 257).is_err());
        let a = vq.vring_addr(1);
        assert_eq!(a.index, 1);
        assert_eq!(a.avail_user_addr, vq.layout().avail as u64);
    }
}
