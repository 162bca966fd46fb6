// SPDX-License-Identifier: GPL-2.0 OR MIT

//! Device side of virtio packed virtqueues (virtio 1.1+, 2.8).
//!
//! The companion of [`super::vring`] (split rings), on the same
//! [`GuestMemory`] trait and [`RingError`] type: pure logic with no kernel
//! dependencies and no allocation. A packed queue is one ring of `num`
//! 16-byte descriptors (`addr`, `len`, `id`, `flags`) that the driver makes
//! available and the device marks used in place, plus two 4-byte event
//! suppression areas (`off_wrap`, `flags`): the driver's, which the device
//! reads to decide whether to interrupt, and the device's, which the device
//! writes to ask for kicks.
//!
//! Every index, length, flag and buffer id the driver wrote is checked
//! here; a violation is a [`RingError`], which the device turns into
//! DEVICE_NEEDS_RESET. Buffers may complete in any order: the queue keeps
//! the number of ring descriptors of every buffer id in flight (in a table
//! the caller provides, one entry per id) and advances the used side by
//! that many for each used descriptor it writes (virtio 1.1, 2.8.6).
//!
//! A chain's descriptors are read `flags` first (one 2-byte load), then a
//! read barrier ([`GuestMemory::read_fence`]), then the rest: the driver
//! writes `flags` of a chain's first descriptor last, so reading it last
//! could pair a fresh `flags` with a stale address or length.

use super::vring::{GuestMemory, RingError, Segment, MAX_EMPTY_DESCS, MAX_INDIRECT};

/// `VRING_DESC_F_NEXT`: the chain continues in the next ring slot.
pub const PACKED_DESC_F_NEXT: u16 = 1;
/// `VRING_DESC_F_WRITE`: the buffer is device-writable (in a used
/// descriptor: the device wrote to the buffer).
pub const PACKED_DESC_F_WRITE: u16 = 2;
/// `VRING_DESC_F_INDIRECT`: the buffer holds an indirect descriptor table.
pub const PACKED_DESC_F_INDIRECT: u16 = 4;
/// `VRING_PACKED_DESC_F_AVAIL` (bit 7).
pub const PACKED_DESC_F_AVAIL: u16 = 1 << 7;
/// `VRING_PACKED_DESC_F_USED` (bit 15).
pub const PACKED_DESC_F_USED: u16 = 1 << 15;
/// `VRING_PACKED_EVENT_FLAG_ENABLE`: events enabled.
pub const PACKED_EVENT_FLAG_ENABLE: u16 = 0;
/// `VRING_PACKED_EVENT_FLAG_DISABLE`: events disabled.
pub const PACKED_EVENT_FLAG_DISABLE: u16 = 1;
/// `VRING_PACKED_EVENT_FLAG_DESC`: an event only for the descriptor at
/// `off_wrap` (with `VIRTIO_RING_F_EVENT_IDX` only).
pub const PACKED_EVENT_FLAG_DESC: u16 = 2;
/// `VRING_PACKED_EVENT_F_WRAP_CTR`: the wrap counter's bit in `off_wrap`
/// and in each half of the vring base.
pub const PACKED_EVENT_F_WRAP_CTR: u16 = 15;
/// Largest packed ring (virtio 1.1: `num` at most 2^15).
pub const MAX_PACKED_NUM: u16 = 1 << 15;
/// Chains located ahead of the next one to consume: the most
/// [`PackedQueue::pending`] counts and the largest `ahead` of
/// [`PackedQueue::chain`] plus one.
pub const MAX_AHEAD: usize = 32;
/// The vring base of a fresh queue: both indexes 0, both wrap counters 1.
pub const PACKED_BASE_INIT: u32 = 1 << 15 | 1 << 31;

/// Offset of `len` in a packed descriptor (then `id` at 12, `flags` at 14).
const DESC_LEN: u64 = 8;
/// Offset of `id` in a packed descriptor.
const DESC_ID: u64 = 12;
/// Offset of `flags` in a packed descriptor.
const DESC_FLAGS: u64 = 14;
/// Used elements written at once.
const BATCH: usize = 32;

/// A position in the ring: slot index and wrap counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pos {
    idx: u16,
    wrap: bool,
}

impl Pos {
    const START: Pos = Pos { idx: 0, wrap: true };

    /// `n` slots further in a ring of `num` (`n <= num`).
    fn advance(self, n: u16, num: u16) -> Pos {
        let i = u32::from(self.idx) + u32::from(n);
        if i >= u32::from(num) {
            Pos {
                // `i - num < num <= 2^15`.
                idx: (i - u32::from(num)) as u16,
                wrap: !self.wrap,
            }
        } else {
            Pos {
                idx: i as u16,
                wrap: self.wrap,
            }
        }
    }

    /// Place in the two-lap sequence `0..2 * num` (wrap counter 1 first).
    fn lap(self, num: u16) -> u32 {
        u32::from(self.idx) + if self.wrap { 0 } else { u32::from(num) }
    }

    /// The `off_wrap` / vring base encoding.
    fn encode(self) -> u16 {
        self.idx | u16::from(self.wrap) << PACKED_EVENT_F_WRAP_CTR
    }

    /// Decodes `off_wrap` or a half of the vring base; `None` when the
    /// index is not below `num`.
    fn decode(v: u16, num: u16) -> Option<Pos> {
        let idx = v & !(1 << PACKED_EVENT_F_WRAP_CTR);
        if idx >= num {
            return None;
        }
        Some(Pos {
            idx,
            wrap: v >> PACKED_EVENT_F_WRAP_CTR != 0,
        })
    }
}

/// Distance from `a` to `b` going forward, in a ring of `num` slots
/// (`0..2 * num`).
fn distance(a: Pos, b: Pos, num: u16) -> u32 {
    let laps = 2 * u32::from(num);
    (b.lap(num) + laps - a.lap(num)) % laps
}

/// A chain found available and not consumed yet.
#[derive(Clone, Copy, Debug, Default)]
struct Located {
    /// Its buffer id (from its last ring descriptor).
    id: u16,
    /// Ring slots it takes (1 for an indirect table).
    descs: u16,
}

/// A used element waiting to be written.
#[derive(Clone, Copy, Debug)]
struct Used {
    id: u16,
    len: u32,
    at: Pos,
}

/// A packed virtqueue as the device sees it.
///
/// `ids` holds, for every buffer id the device consumed and did not mark
/// used yet, the number of ring descriptors of its chain (0: not in
/// flight); it needs at least `num` entries (ids beyond it are errors).
/// A slice, array or vector of `u16` will do.
#[derive(Clone, Copy, Debug)]
pub struct PackedQueue<S> {
    /// Ring size (1 to [`MAX_PACKED_NUM`]; not necessarily a power of two).
    pub num: u16,
    /// Descriptor ring IOVA.
    pub desc: u64,
    /// Driver event suppression area IOVA (the driver writes it).
    pub driver: u64,
    /// Device event suppression area IOVA (the device writes it).
    pub device: u64,
    /// Enabled by the driver.
    pub ready: bool,
    /// `VIRTIO_RING_F_EVENT_IDX` negotiated.
    pub event_idx: bool,
    /// `VIRTIO_RING_F_INDIRECT_DESC` negotiated.
    pub indirect: bool,
    /// Descriptors per buffer id in flight (see above).
    pub ids: S,
    /// Next slot to look at for an available chain.
    avail: Pos,
    /// Next slot to write a used descriptor at.
    used: Pos,
    /// Slots consumed and not marked used: `avail - used`.
    in_flight: u16,
    /// Chains found available from `avail` on.
    ahead: [Located; MAX_AHEAD],
    ahead_len: u8,
    /// Slots the chains in `ahead` take.
    ahead_descs: u16,
    /// Used elements not written yet.
    batch: [Used; BATCH],
    batch_len: u8,
    /// `used` when the driver's event suppression was last consulted.
    signalled: Pos,
    /// Descriptors marked used since then (saturating).
    used_since: u32,
    /// The device's event `flags` last written, if known.
    kick_flags: Option<u16>,
}

impl<S: Default + AsMut<[u16]>> Default for PackedQueue<S> {
    /// An unconfigured, disabled queue.
    fn default() -> Self {
        let mut q = Self::new(0, 0, 0, 0, S::default());
        q.ready = false;
        q
    }
}

impl<S> PackedQueue<S> {
    /// An unconfigured, disabled queue over the id table `ids` (which is
    /// not cleared): a constant that can be assigned in place, as the
    /// split ring's `SplitQueue::EMPTY`.
    pub const fn with_ids(ids: S) -> Self {
        Self {
            num: 0,
            desc: 0,
            driver: 0,
            device: 0,
            ready: false,
            event_idx: false,
            indirect: false,
            ids,
            avail: Pos::START,
            used: Pos::START,
            in_flight: 0,
            ahead: [Located { id: 0, descs: 0 }; MAX_AHEAD],
            ahead_len: 0,
            ahead_descs: 0,
            batch: [Used {
                id: 0,
                len: 0,
                at: Pos::START,
            }; BATCH],
            batch_len: 0,
            signalled: Pos::START,
            used_since: 0,
            kick_flags: None,
        }
    }
}

impl<S: AsMut<[u16]>> PackedQueue<S> {
    /// Makes the queue unconfigured and disabled again, in place (a device
    /// reset): the id table keeps its storage and is cleared.
    pub fn reset(&mut self) {
        self.num = 0;
        self.desc = 0;
        self.driver = 0;
        self.device = 0;
        self.ready = false;
        self.event_idx = false;
        self.indirect = false;
        self.ids.as_mut().fill(0);
        self.avail = Pos::START;
        self.used = Pos::START;
        self.in_flight = 0;
        self.signalled = Pos::START;
        self.used_since = 0;
        self.invalidate();
    }

    /// Whether every ring slot is in flight or taken by a chain that
    /// [`PackedQueue::pending`] counted: the driver cannot make more
    /// available before the device marks some used.
    pub fn is_full(&self) -> bool {
        self.free() == 0
    }

    /// A queue of `num` descriptors at the given addresses, enabled, in
    /// the state of a fresh ring ([`PACKED_BASE_INIT`]). `ids` is cleared.
    pub fn new(num: u16, desc: u64, driver: u64, device: u64, mut ids: S) -> Self {
        ids.as_mut().fill(0);
        Self {
            num,
            desc,
            driver,
            device,
            ready: true,
            ..Self::with_ids(ids)
        }
    }

    /// Forgets what was read ahead and not written (the ring was
    /// reconfigured): chains located, used elements not flushed and the
    /// device event flags last written.
    pub fn invalidate(&mut self) {
        self.ahead_len = 0;
        self.ahead_descs = 0;
        self.batch_len = 0;
        self.kick_flags = None;
    }

    /// The vring base in vhost's encoding (`VHOST_GET_VRING_BASE` of a
    /// packed ring): next available slot and its wrap counter in bits 0-15
    /// (`idx | wrap << 15`), next used slot and its wrap counter in bits
    /// 16-31. Used elements not flushed yet count as written: publish
    /// before reading it.
    pub fn base(&self) -> u32 {
        u32::from(self.avail.encode()) | u32::from(self.used.encode()) << 16
    }

    /// Sets the vring base (`VHOST_SET_VRING_BASE`, encoded as by
    /// [`PackedQueue::base`]). Both indexes must be below `num` and the
    /// used position at most `num` slots behind the available one; the
    /// slots in between stay in flight under ids the device no longer
    /// knows (nothing is in flight when the base was read from a suspended
    /// device). Clears `ids` and everything read ahead. On error nothing
    /// changes.
    pub fn set_base(&mut self, base: u32) -> Result<(), RingError> {
        let num = self.num;
        if num == 0 || num > MAX_PACKED_NUM {
            return Err(RingError::BadIndex);
        }
        let avail = Pos::decode(base as u16, num).ok_or(RingError::BadIndex)?;
        let used = Pos::decode((base >> 16) as u16, num).ok_or(RingError::BadIndex)?;
        let in_flight = distance(used, avail, num);
        if in_flight > u32::from(num) {
            return Err(RingError::BadAvailIdx);
        }
        self.avail = avail;
        self.used = used;
        // At most `num`, checked above.
        self.in_flight = in_flight as u16;
        self.signalled = used;
        self.used_since = 0;
        self.ids.as_mut().fill(0);
        self.invalidate();
        Ok(())
    }

    /// Ring descriptors consumed and not marked used yet.
    pub fn in_flight(&self) -> u16 {
        self.in_flight
    }

    /// The address of field `off` of ring descriptor `idx` (below `num`).
    fn slot(&self, idx: u16, off: u64) -> Result<u64, RingError> {
        self.desc
            .checked_add(16 * u64::from(idx) + off)
            .ok_or(RingError::Fault)
    }

    /// Position after the chains located ahead.
    fn ahead_end(&self) -> Pos {
        self.avail.advance(self.ahead_descs, self.num)
    }

    /// Ring slots neither in flight nor taken by chains located ahead.
    fn free(&self) -> u16 {
        self.num
            .saturating_sub(self.in_flight)
            .saturating_sub(self.ahead_descs)
    }

    /// Looks for one more available chain after those located ahead;
    /// false when there is none (yet).
    fn locate<M: GuestMemory>(&mut self, mem: &mut M) -> Result<bool, RingError> {
        let n = usize::from(self.ahead_len);
        if self.num > MAX_PACKED_NUM {
            return Err(RingError::BadIndex);
        }
        if n >= MAX_AHEAD || self.num == 0 {
            return Ok(false);
        }
        let start = self.ahead_end();
        let free = self.free();
        let flags = mem.read_u16(self.slot(start.idx, DESC_FLAGS)?)?;
        let avail = flags & PACKED_DESC_F_AVAIL != 0;
        let used = flags & PACKED_DESC_F_USED != 0;
        if avail == used {
            // Not available: the device's used descriptor of the last lap
            // (both bits !wrap), unless both match this lap's counter,
            // which only the device writes, behind its used position.
            if avail == start.wrap {
                return Err(RingError::BadAvailIdx);
            }
            return Ok(false);
        }
        if avail != start.wrap {
            // Made available for the last lap: consumed already.
            return Ok(false);
        }
        if free == 0 {
            // The slot is in flight: the driver made it available again.
            return Err(RingError::BadAvailIdx);
        }
        // The rest of the chain was written before this `flags`.
        mem.read_fence();
        let mut at = start;
        let mut f = flags;
        let mut descs = 1u16;
        while f & PACKED_DESC_F_NEXT != 0 {
            if descs >= free {
                // No end before the slots the device still owns.
                return Err(RingError::Loop);
            }
            at = at.advance(1, self.num);
            f = mem.read_u16(self.slot(at.idx, DESC_FLAGS)?)?;
            descs += 1;
        }
        // The buffer id is in the chain's last descriptor.
        let id = mem.read_u16(self.slot(at.idx, DESC_ID)?)?;
        if id >= self.num {
            return Err(RingError::BadId);
        }
        if self.ahead.iter().take(n).any(|c| c.id == id) {
            // The driver made a buffer id available twice (a device that
            // completes chains at once would never see both in flight).
            return Err(RingError::BadId);
        }
        if let Some(e) = self.ahead.get_mut(n) {
            *e = Located { id, descs };
        }
        self.ahead_len += 1;
        self.ahead_descs += descs;
        Ok(true)
    }

    /// Number of chains the driver made available and the device did not
    /// consume, counted up to [`MAX_AHEAD`] (reads the ring only past the
    /// chains counted before).
    pub fn pending<M: GuestMemory>(&mut self, mem: &mut M) -> Result<u16, RingError> {
        while self.locate(mem)? {}
        Ok(u16::from(self.ahead_len))
    }

    /// Starts walking the chain `ahead` chains after the next one to
    /// consume (below [`MAX_AHEAD`]; it must be available). Returns its
    /// buffer id and the walker. Consumes nothing.
    pub fn chain<M: GuestMemory>(
        &mut self,
        mem: &mut M,
        ahead: u16,
    ) -> Result<(u16, PackedWalker), RingError> {
        let k = usize::from(ahead);
        if k >= MAX_AHEAD {
            return Err(RingError::BadIndex);
        }
        while usize::from(self.ahead_len) <= k {
            if !self.locate(mem)? {
                return Err(RingError::BadAvailIdx);
            }
        }
        let mut skip = 0u16;
        for c in self.ahead.iter().take(k) {
            skip += c.descs;
        }
        let c = self.ahead.get(k).copied().ok_or(RingError::BadIndex)?;
        let at = self.avail.advance(skip, self.num);
        Ok((
            c.id,
            PackedWalker {
                desc: self.desc,
                num: self.num,
                at: at.idx,
                left: c.descs,
                table: 0,
                size: 0,
                next: 0,
                in_indirect: false,
                seen_write: false,
                descs: 0,
                bytes: 0,
            },
        ))
    }

    /// Consumes the next available chain (the one [`PackedQueue::chain`]
    /// with `ahead` 0 walks): its buffer id goes in flight until
    /// [`PackedQueue::put_used`]. Returns the id. The split ring's
    /// equivalent is `last_avail += 1`.
    pub fn consume<M: GuestMemory>(&mut self, mem: &mut M) -> Result<u16, RingError> {
        if self.ahead_len == 0 && !self.locate(mem)? {
            return Err(RingError::BadAvailIdx);
        }
        let c = self.ahead[0];
        let slot = self
            .ids
            .as_mut()
            .get_mut(usize::from(c.id))
            .ok_or(RingError::BadId)?;
        if *slot != 0 {
            // The driver made a buffer id available twice.
            return Err(RingError::BadId);
        }
        *slot = c.descs;
        self.ahead.copy_within(1.., 0);
        self.ahead_len -= 1;
        self.ahead_descs -= c.descs;
        self.in_flight += c.descs;
        self.avail = self.avail.advance(c.descs, self.num);
        Ok(c.id)
    }

    /// Marks buffer `id` used with `len` bytes written; the used
    /// descriptor reaches guest memory at the next `flush` (or when the
    /// batch is full). Buffers may be marked used in any order.
    pub fn put_used<M: GuestMemory>(
        &mut self,
        mem: &mut M,
        id: u16,
        len: u32,
    ) -> Result<(), RingError> {
        let descs = self.ids.as_mut().get(usize::from(id)).copied().unwrap_or(0);
        if descs == 0 || descs > self.in_flight {
            return Err(RingError::BadId);
        }
        if usize::from(self.batch_len) == BATCH {
            self.flush(mem)?;
        }
        if let Some(s) = self.ids.as_mut().get_mut(usize::from(id)) {
            *s = 0;
        }
        if let Some(e) = self.batch.get_mut(usize::from(self.batch_len)) {
            *e = Used {
                id,
                len,
                at: self.used,
            };
        }
        self.batch_len += 1;
        self.used = self.used.advance(descs, self.num);
        self.in_flight -= descs;
        self.used_since = self.used_since.saturating_add(u32::from(descs));
        Ok(())
    }

    /// Writes the used descriptors put since the last flush: `len` and
    /// `id` of all, a write barrier, then their `flags`, the first one's
    /// last (the driver takes none before it).
    pub fn flush<M: GuestMemory>(&mut self, mem: &mut M) -> Result<(), RingError> {
        let n = usize::from(self.batch_len);
        if n == 0 {
            return Ok(());
        }
        for u in self.batch.iter().take(n) {
            // `len` then `id`, little-endian, built in one u64 (no
            // out-of-line `copy_from_slice()` per field).
            let e = (u64::from(u.len) | (u64::from(u.id) << 32)).to_le_bytes();
            mem.write(self.slot(u.at.idx, DESC_LEN)?, &e[..6])?;
        }
        mem.write_fence();
        for k in (1..n).chain(0..1) {
            let Some(u) = self.batch.get(k).copied() else {
                continue;
            };
            let mut flags = if u.at.wrap {
                PACKED_DESC_F_AVAIL | PACKED_DESC_F_USED
            } else {
                0
            };
            if u.len != 0 {
                flags |= PACKED_DESC_F_WRITE;
            }
            mem.write_u16(self.slot(u.at.idx, DESC_FLAGS)?, flags)?;
        }
        self.batch_len = 0;
        Ok(())
    }

    /// Writes the device event area: `off_wrap` (with `DESC`), a write
    /// barrier, then `flags` unless they are what was last written.
    fn write_event<M: GuestMemory>(
        &mut self,
        mem: &mut M,
        flags: u16,
        at: Pos,
    ) -> Result<(), RingError> {
        if flags == PACKED_EVENT_FLAG_DESC {
            mem.write_u16(self.device, at.encode())?;
            mem.write_fence();
        }
        if self.kick_flags != Some(flags) {
            mem.write_u16(self.device.wrapping_add(2), flags)?;
            self.kick_flags = Some(flags);
        }
        Ok(())
    }

    /// Writes the used descriptors (`flush`) and, with EVENT_IDX, asks the
    /// driver to kick when it makes available the slot after those the
    /// device consumed. The split ring's `publish`.
    pub fn publish<M: GuestMemory>(&mut self, mem: &mut M) -> Result<(), RingError> {
        self.flush(mem)?;
        if self.event_idx {
            self.write_event(mem, PACKED_EVENT_FLAG_DESC, self.avail)?;
        }
        Ok(())
    }

    /// With EVENT_IDX, asks the driver to kick as soon as it makes any
    /// chain available beyond those [`PackedQueue::pending`] last counted.
    pub fn arm_kick<M: GuestMemory>(&mut self, mem: &mut M) -> Result<(), RingError> {
        if self.event_idx {
            let at = self.ahead_end();
            self.write_event(mem, PACKED_EVENT_FLAG_DESC, at)?;
        }
        Ok(())
    }

    /// Enables kicks (as [`PackedQueue::arm_kick`] with EVENT_IDX, every
    /// kick without) or disables them (`DISABLE`), in the device event
    /// area. A device that enables them must then look at the ring again
    /// (after a full barrier): the driver may have missed the change. With
    /// EVENT_IDX, [`PackedQueue::publish`] and [`PackedQueue::arm_kick`]
    /// enable them again.
    pub fn set_kicks<M: GuestMemory>(&mut self, mem: &mut M, on: bool) -> Result<(), RingError> {
        if !on {
            self.write_event(mem, PACKED_EVENT_FLAG_DISABLE, self.avail)
        } else if self.event_idx {
            self.arm_kick(mem)
        } else {
            self.write_event(mem, PACKED_EVENT_FLAG_ENABLE, self.avail)
        }
    }

    /// Whether the driver wants an interrupt for the used descriptors
    /// written since it was last asked (virtio 1.1, 2.8.10 and 2.8.14):
    /// reads the driver event area, `flags` then `off_wrap`. Reserved
    /// flags, `DESC` without EVENT_IDX, or an offset beyond the ring are
    /// errors.
    pub fn needs_interrupt<M: GuestMemory>(&mut self, mem: &mut M) -> Result<bool, RingError> {
        if self.used_since == 0 {
            return Ok(false);
        }
        let flags = mem.read_u16(self.driver.wrapping_add(2))?;
        let want = match flags {
            PACKED_EVENT_FLAG_ENABLE => true,
            PACKED_EVENT_FLAG_DISABLE => false,
            PACKED_EVENT_FLAG_DESC if self.event_idx => {
                mem.read_fence();
                let off_wrap = mem.read_u16(self.driver)?;
                let event = Pos::decode(off_wrap, self.num).ok_or(RingError::BadEvent)?;
                // vring_need_event(): the event slot is among those
                // written since the last time (a whole two laps written:
                // whatever it is).
                self.used_since >= 2 * u32::from(self.num)
                    || distance(self.signalled, event, self.num) < self.used_since
            }
            _ => return Err(RingError::BadEvent),
        };
        self.signalled = self.used;
        self.used_since = 0;
        Ok(want)
    }
}

/// Walks one chain of a packed ring, checking every step.
#[derive(Clone, Copy, Debug)]
pub struct PackedWalker {
    desc: u64,
    num: u16,
    /// Next ring slot of the chain.
    at: u16,
    /// Ring descriptors of the chain not read yet.
    left: u16,
    /// Indirect table, its entries, and the next one to read.
    table: u64,
    size: u32,
    next: u32,
    in_indirect: bool,
    seen_write: bool,
    /// Descriptors read, the one that points to an indirect table included.
    descs: u32,
    /// Bytes in the buffers returned so far.
    bytes: u64,
}

/// A descriptor's fields (its `id` is not needed past the chain's end).
struct Raw {
    addr: u64,
    len: u32,
    flags: u16,
}

fn read_raw<M: GuestMemory>(mem: &mut M, at: u64) -> Result<Raw, RingError> {
    let mut b = [0u8; 16];
    mem.read(at, &mut b)?;
    Ok(Raw {
        addr: u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        len: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
        flags: u16::from_le_bytes([b[14], b[15]]),
    })
}

impl PackedWalker {
    /// Next buffer of the chain, or `None` at its end.
    ///
    /// Errors: an indirect descriptor that is nested, chained (NEXT),
    /// without the feature or with a table size that is zero, not a
    /// multiple of 16 or above [`MAX_INDIRECT`] entries
    /// ([`RingError::BadIndirect`]); a readable buffer after a writable
    /// one ([`RingError::BadDirection`]); a buffer or table that ends
    /// beyond 2^64, or a chain of 2^32 bytes or more
    /// ([`RingError::Overflow`]); [`MAX_EMPTY_DESCS`] empty buffers first
    /// ([`RingError::EmptyChain`]); ring descriptors changed since the
    /// chain was found ([`RingError::BadAvailIdx`]).
    pub fn next<S: AsMut<[u16]>, M: GuestMemory>(
        &mut self,
        q: &mut PackedQueue<S>,
        mem: &mut M,
    ) -> Result<Option<Segment>, RingError> {
        let d = if self.in_indirect {
            if self.next >= self.size {
                return Ok(None);
            }
            let at = self
                .table
                .checked_add(16 * u64::from(self.next))
                .ok_or(RingError::Overflow)?;
            self.next += 1;
            self.descs += 1;
            let d = read_raw(mem, at)?;
            // WRITE is the only flag of an indirect table entry (NEXT is
            // ignored); a table inside a table is an error.
            if d.flags & PACKED_DESC_F_INDIRECT != 0 {
                return Err(RingError::BadIndirect);
            }
            d
        } else {
            if self.left == 0 || self.at >= self.num {
                return Ok(None);
            }
            let at = self
                .desc
                .checked_add(16 * u64::from(self.at))
                .ok_or(RingError::Fault)?;
            self.left -= 1;
            self.at = if self.at + 1 == self.num {
                0
            } else {
                self.at + 1
            };
            self.descs += 1;
            let d = read_raw(mem, at)?;
            if (d.flags & PACKED_DESC_F_NEXT != 0) != (self.left > 0) {
                return Err(RingError::BadAvailIdx);
            }
            if d.flags & PACKED_DESC_F_INDIRECT != 0 {
                if !q.indirect || self.left > 0 {
                    return Err(RingError::BadIndirect);
                }
                if d.len == 0 || d.len % 16 != 0 || d.len / 16 > MAX_INDIRECT {
                    return Err(RingError::BadIndirect);
                }
                d.addr
                    .checked_add(u64::from(d.len))
                    .ok_or(RingError::Overflow)?;
                self.table = d.addr;
                self.size = d.len / 16;
                self.next = 0;
                self.in_indirect = true;
                return self.next(q, mem);
            }
            d
        };
        let write = d.flags & PACKED_DESC_F_WRITE != 0;
        if self.seen_write && !write {
            return Err(RingError::BadDirection);
        }
        self.seen_write |= write;
        d.addr
            .checked_add(u64::from(d.len))
            .ok_or(RingError::Overflow)?;
        self.bytes += u64::from(d.len);
        if self.bytes > u64::from(u32::MAX) {
            return Err(RingError::Overflow);
        }
        if self.bytes == 0 && self.buffers() >= MAX_EMPTY_DESCS {
            return Err(RingError::EmptyChain);
        }
        Ok(Some(Segment {
            addr: d.addr,
            len: d.len,
            write,
        }))
    }

    /// Descriptors read so far, the one that points to an indirect table
    /// included: the work the chain cost.
    pub fn descs(&self) -> u32 {
        self.descs
    }

    /// Buffers returned so far.
    fn buffers(&self) -> u32 {
        // At most one descriptor pointed to an indirect table.
        self.descs - u32::from(self.in_indirect)
    }
}
