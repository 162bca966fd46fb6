// SPDX-License-Identifier: GPL-2.0 OR MIT

//! Device side of virtio split virtqueues (virtio 1.x, 2.7).
//!
//! Pure logic with no kernel dependencies and no allocation: guest memory
//! is reached through the [`GuestMemory`] trait, implemented in the sample
//! parent by `vhost_mdev_dma_rw()`, in the userspace in-process device by
//! its DMA mappings, and in the host tests by a fake memory that property
//! tests fill with hostile rings. Every index, length and flag the driver
//! wrote is checked here; a violation is a [`RingError`], which the device
//! turns into DEVICE_NEEDS_RESET.

/// A guest memory access failed (IOVA not mapped, or unmapped meanwhile).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault;

/// Why a queue cannot be processed any further.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// Guest memory could not be accessed.
    Fault,
    /// An index beyond the ring or table.
    BadIndex,
    /// A descriptor chain loops or is longer than its table.
    Loop,
    /// An indirect descriptor that is not allowed (nested, with NEXT,
    /// without the feature, or with a bad table size).
    BadIndirect,
    /// A readable descriptor after a writable one, or the wrong direction
    /// for the queue.
    BadDirection,
    /// The driver made more buffers available than the ring holds (packed
    /// rings: made available a slot the device owns, with both wrap bits
    /// of the current lap, or changed a chain the device had found).
    BadAvailIdx,
    /// A chain whose first [`MAX_EMPTY_DESCS`] buffers hold no byte.
    EmptyChain,
    /// Packed rings: a buffer id beyond the ring, or made available again
    /// while in flight.
    BadId,
    /// Packed rings: reserved event suppression flags, `DESC` without
    /// EVENT_IDX, or an event offset beyond the ring.
    BadEvent,
    /// Packed rings: a buffer or table that ends beyond 2^64, or a chain
    /// of 2^32 bytes or more (the used length is 32-bit).
    Overflow,
}

impl From<Fault> for RingError {
    fn from(_: Fault) -> Self {
        RingError::Fault
    }
}

/// Guest memory by IOVA.
pub trait GuestMemory {
    /// Reads `buf.len()` bytes at `addr`. Bytes may be read one at a time,
    /// in any order: not for values the driver changes meanwhile.
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Fault>;
    /// Writes `buf` at `addr`, bytes possibly one at a time, in any order:
    /// not for values the driver reads meanwhile.
    fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), Fault>;
    /// Reads the little-endian ring index or event field at `addr`
    /// (naturally aligned) with one single-copy-atomic load: the driver
    /// updates it while the device reads it, and a torn value would make
    /// the device take entries of the previous lap.
    fn read_u16(&mut self, addr: u64) -> Result<u16, Fault>;
    /// Stores the little-endian ring index or event field `v` at `addr`
    /// (naturally aligned) with one single-copy-atomic store: a driver that
    /// saw it torn would take used entries the device has not written.
    fn write_u16(&mut self, addr: u64, v: u16) -> Result<(), Fault>;
    /// A full memory barrier between the ring stores before it and the
    /// loads after it (`smp_mb()`, as vhost has when it publishes and then
    /// reads the driver's event index or flags).
    fn fence(&mut self) {}
    /// A read barrier (`smp_rmb()`, acquire) between a load that found a
    /// packed descriptor or event area published and the loads of what it
    /// publishes. Defaults to [`GuestMemory::fence`].
    fn read_fence(&mut self) {
        self.fence()
    }
    /// A write barrier (`smp_wmb()`, release) between the stores of a
    /// packed used descriptor or event offset and the `flags` store that
    /// publishes them. Defaults to [`GuestMemory::fence`].
    fn write_fence(&mut self) {
        self.fence()
    }
    /// Whether [`GuestMemory::copy`] may work: then the loopback copies a
    /// frame's data from its TX buffers straight into RX buffers, once,
    /// instead of reading it into the device's buffer and writing it out.
    fn can_copy(&self) -> bool {
        false
    }
    /// Copies `len` bytes from `src` to `dst`; false when it could not
    /// (the caller then copies through its buffer with `read` and `write`,
    /// which report the fault). Part of the copy may have been done.
    fn copy(&mut self, _dst: u64, _src: u64, _len: usize) -> bool {
        false
    }
}

/// Descriptor flags (virtio 1.x, 2.7.5).
pub const VRING_DESC_F_NEXT: u16 = 1;
/// The buffer is device-writable.
pub const VRING_DESC_F_WRITE: u16 = 2;
/// The buffer holds an indirect descriptor table.
pub const VRING_DESC_F_INDIRECT: u16 = 4;
/// `VRING_AVAIL_F_NO_INTERRUPT`
pub const VRING_AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Largest indirect table accepted (as vhost's `UIO_MAXIOV`).
pub const MAX_INDIRECT: u32 = 1024;
/// Buffers of a chain that may all be empty: a chain whose first this many
/// buffers hold no byte is an error ([`RingError::EmptyChain`]), not work
/// for the device (no driver needs one; a hostile one would make every
/// frame walk `num + MAX_INDIRECT` descriptors for nothing).
pub const MAX_EMPTY_DESCS: u32 = 16;

/// One descriptor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Desc {
    /// Buffer IOVA.
    pub addr: u64,
    /// Buffer length.
    pub len: u32,
    /// `VRING_DESC_F_*`.
    pub flags: u16,
    /// Next descriptor when `NEXT` is set.
    pub next: u16,
}

fn read_desc<M: GuestMemory>(mem: &mut M, table: u64, idx: u32) -> Result<Desc, RingError> {
    let addr = table
        .checked_add(u64::from(idx) * 16)
        .ok_or(RingError::Fault)?;
    let mut b = [0u8; 16];
    mem.read(addr, &mut b)?;
    Ok(Desc {
        addr: u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        len: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
        flags: u16::from_le_bytes([b[12], b[13]]),
        next: u16::from_le_bytes([b[14], b[15]]),
    })
}

/// One buffer of a chain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// IOVA.
    pub addr: u64,
    /// Length.
    pub len: u32,
    /// Device-writable.
    pub write: bool,
}

/// A split virtqueue as the device sees it.
///
/// About 850 bytes (the batch caches): keep it out of stack frames, e.g.
/// reset one in place with `*q = SplitQueue::EMPTY` rather than building
/// a new one on the stack (a kernel stack is 16 KiB).
#[derive(Clone, Copy, Debug)]
pub struct SplitQueue {
    /// Ring size (a power of two, at most 32768).
    pub num: u16,
    /// Descriptor table IOVA.
    pub desc: u64,
    /// Available ring IOVA.
    pub avail: u64,
    /// Used ring IOVA.
    pub used: u64,
    /// Enabled by the driver.
    pub ready: bool,
    /// Next available ring index to consume.
    pub last_avail: u16,
    /// Next used ring index to fill.
    pub used_idx: u16,
    /// `VIRTIO_RING_F_EVENT_IDX` negotiated.
    pub event_idx: bool,
    /// `VIRTIO_RING_F_INDIRECT_DESC` negotiated.
    pub indirect: bool,
    /// `used_idx` when the driver was last signalled.
    pub signalled_used: u16,
    /// Batching state: cached available entries and unwritten used ones.
    batch: Batch,
}

/// Entries of the available ring read ahead, and used elements not yet
/// written: a batch touches guest memory a few times, not per frame.
#[derive(Clone, Copy, Debug)]
struct Batch {
    /// The available index last read from the ring.
    avail_idx: u16,
    /// `avail[avail_start..avail_start + avail_len]`, read ahead.
    avail: [u16; BATCH],
    avail_start: u16,
    avail_len: u16,
    /// Used elements from `used_start` on, not yet in guest memory.
    used: [(u16, u32); BATCH],
    used_len: u16,
    used_start: u16,
    /// `desc[desc_start..desc_start + desc_len]` of the descriptor table,
    /// read since the available index was last read: the descriptors of
    /// every chain counted then were written before it (virtio's ordering),
    /// so they are current; reading the index again drops them.
    desc: [Desc; BATCH],
    desc_start: u16,
    desc_len: u16,
}

impl Batch {
    const EMPTY: Self = Self {
        avail_idx: 0,
        avail: [0; BATCH],
        avail_start: 0,
        avail_len: 0,
        used: [(0, 0); BATCH],
        used_len: 0,
        used_start: 0,
        desc: [Desc {
            addr: 0,
            len: 0,
            flags: 0,
            next: 0,
        }; BATCH],
        desc_start: 0,
        desc_len: 0,
    };
}

impl Default for SplitQueue {
    fn default() -> Self {
        Self::EMPTY
    }
}

/// Entries read ahead or written at once.
const BATCH: usize = 32;
const _: () = assert!(BATCH.is_power_of_two());

/// Walks one descriptor chain, checking every step.
pub struct Walker {
    table: u64,
    size: u32,
    next: Option<u32>,
    steps: u32,
    in_indirect: bool,
    seen_write: bool,
    /// Descriptors read, the one that points to an indirect table included.
    descs: u32,
    /// Bytes in the buffers returned so far.
    bytes: u64,
}

impl Walker {
    /// Next buffer of the chain, or `None` at its end.
    pub fn next<M: GuestMemory>(
        &mut self,
        q: &mut SplitQueue,
        mem: &mut M,
    ) -> Result<Option<Segment>, RingError> {
        let Some(idx) = self.next else {
            return Ok(None);
        };
        if idx >= self.size {
            return Err(RingError::BadIndex);
        }
        self.steps += 1;
        if self.steps > self.size {
            return Err(RingError::Loop);
        }
        self.descs += 1;
        let d = if self.in_indirect {
            read_desc(mem, self.table, idx)?
        } else {
            // `idx < size == num`, checked above.
            q.desc_entry(mem, idx as u16)?
        };
        if d.flags & VRING_DESC_F_INDIRECT != 0 {
            if self.in_indirect || !q.indirect || d.flags & VRING_DESC_F_NEXT != 0 {
                return Err(RingError::BadIndirect);
            }
            if d.len == 0 || d.len % 16 != 0 || d.len / 16 > MAX_INDIRECT {
                return Err(RingError::BadIndirect);
            }
            self.table = d.addr;
            self.size = d.len / 16;
            self.next = Some(0);
            self.steps = 0;
            self.in_indirect = true;
            return self.next(q, mem);
        }
        let write = d.flags & VRING_DESC_F_WRITE != 0;
        if self.seen_write && !write {
            return Err(RingError::BadDirection);
        }
        self.seen_write |= write;
        self.bytes += u64::from(d.len);
        if self.bytes == 0 && self.buffers() >= MAX_EMPTY_DESCS {
            return Err(RingError::EmptyChain);
        }
        self.next = if d.flags & VRING_DESC_F_NEXT != 0 {
            Some(u32::from(d.next))
        } else {
            None
        };
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

impl SplitQueue {
    /// An unconfigured, disabled queue (what `default()` gives, as a
    /// constant that can be assigned in place).
    pub const EMPTY: Self = Self {
        num: 0,
        desc: 0,
        avail: 0,
        used: 0,
        ready: false,
        last_avail: 0,
        used_idx: 0,
        event_idx: false,
        indirect: false,
        signalled_used: 0,
        batch: Batch::EMPTY,
    };

    /// Forgets what was read ahead (the ring was reconfigured).
    pub fn invalidate(&mut self) {
        self.batch = Batch::EMPTY;
    }

    /// An enabled queue of `num` entries at the given ring addresses.
    pub fn new(num: u16, desc: u64, avail: u64, used: u64) -> Self {
        Self {
            num,
            desc,
            avail,
            used,
            ready: true,
            ..Self::EMPTY
        }
    }

    /// `i` modulo the ring size (a power of two: the core checks it).
    fn wrap(&self, i: u16) -> u64 {
        u64::from(i & self.num.wrapping_sub(1))
    }

    /// Number of buffers the driver made available and we did not take
    /// (reads the available index, as one load).
    pub fn pending<M: GuestMemory>(&mut self, mem: &mut M) -> Result<u16, RingError> {
        let avail_idx = mem.read_u16(self.avail.wrapping_add(2))?;
        let n = avail_idx.wrapping_sub(self.last_avail);
        if n > self.num {
            return Err(RingError::BadAvailIdx);
        }
        self.batch.avail_idx = avail_idx;
        self.batch.desc_len = 0;
        Ok(n)
    }

    /// Descriptor `idx` (below `num`) of the table, read a window at a
    /// time: the aligned block of [`BATCH`] entries that holds it, so that
    /// a driver that hands out descriptors in descending order (a LIFO free
    /// list, as Linux's virtio_ring has) is served as well as one that
    /// goes up.
    fn desc_entry<M: GuestMemory>(&mut self, mem: &mut M, idx: u16) -> Result<Desc, RingError> {
        let b = &mut self.batch;
        let off = idx.wrapping_sub(b.desc_start);
        if off < b.desc_len {
            return Ok(b.desc[usize::from(off)]);
        }
        let start = idx & !(BATCH as u16 - 1);
        let n = self.num.saturating_sub(start).clamp(1, BATCH as u16);
        let mut raw = [0u8; 16 * BATCH];
        let raw = &mut raw[..16 * usize::from(n)];
        let at = self
            .desc
            .checked_add(16 * u64::from(start))
            .ok_or(RingError::Fault)?;
        mem.read(at, raw)?;
        for (k, e) in raw.chunks_exact(16).enumerate() {
            b.desc[k] = Desc {
                addr: u64::from_le_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]]),
                len: u32::from_le_bytes([e[8], e[9], e[10], e[11]]),
                flags: u16::from_le_bytes([e[12], e[13]]),
                next: u16::from_le_bytes([e[14], e[15]]),
            };
        }
        b.desc_start = start;
        b.desc_len = n;
        // `idx - start < BATCH`, and `< n` since `idx < num`.
        b.desc
            .get(usize::from(idx - start))
            .copied()
            .ok_or(RingError::BadIndex)
    }

    /// The available ring entry at index `i` (which `pending` counted).
    fn avail_entry<M: GuestMemory>(&mut self, mem: &mut M, i: u16) -> Result<u16, RingError> {
        let at = self.avail.wrapping_add(4 + 2 * self.wrap(i));
        let b = &mut self.batch;
        let off = i.wrapping_sub(b.avail_start);
        if off < b.avail_len {
            return Ok(b.avail[usize::from(off)]);
        }
        // Read ahead up to the published index, the ring's end and BATCH.
        let to_end = self.num.wrapping_sub(i & self.num.wrapping_sub(1));
        let n = b
            .avail_idx
            .wrapping_sub(i)
            .min(to_end)
            .clamp(1, BATCH as u16);
        let mut raw = [0u8; 2 * BATCH];
        let raw = &mut raw[..2 * usize::from(n)];
        mem.read(at, raw)?;
        for (k, e) in raw.chunks_exact(2).enumerate() {
            b.avail[k] = u16::from_le_bytes([e[0], e[1]]);
        }
        b.avail_start = i;
        b.avail_len = n;
        Ok(b.avail[0])
    }

    /// Starts walking the chain at available slot `last_avail + ahead`.
    /// Returns the head index and the walker.
    pub fn chain<M: GuestMemory>(
        &mut self,
        mem: &mut M,
        ahead: u16,
    ) -> Result<(u16, Walker), RingError> {
        let head = self.avail_entry(mem, self.last_avail.wrapping_add(ahead))?;
        if head >= self.num {
            return Err(RingError::BadIndex);
        }
        Ok((
            head,
            Walker {
                table: self.desc,
                size: u32::from(self.num),
                next: Some(u32::from(head)),
                steps: 0,
                in_indirect: false,
                seen_write: false,
                descs: 0,
                bytes: 0,
            },
        ))
    }

    /// Puts a used element; it reaches guest memory at the next `flush`
    /// (or when the batch is full).
    pub fn put_used<M: GuestMemory>(
        &mut self,
        mem: &mut M,
        head: u16,
        len: u32,
    ) -> Result<(), RingError> {
        if usize::from(self.batch.used_len) == BATCH {
            self.flush(mem)?;
        }
        let b = &mut self.batch;
        if b.used_len == 0 {
            b.used_start = self.used_idx;
        }
        b.used[usize::from(b.used_len)] = (head, len);
        b.used_len += 1;
        self.used_idx = self.used_idx.wrapping_add(1);
        Ok(())
    }

    /// Writes the used elements put since the last flush (at most two
    /// writes: the ring may wrap).
    pub fn flush<M: GuestMemory>(&mut self, mem: &mut M) -> Result<(), RingError> {
        let n = usize::from(self.batch.used_len);
        let mut k = 0;
        while k < n {
            let idx = self.batch.used_start.wrapping_add(k as u16);
            let to_end = usize::from(self.num.wrapping_sub(idx & self.num.wrapping_sub(1)));
            let run = (n - k).min(to_end.max(1));
            // Each element built as one little-endian u64 (`id`, then
            // `len`): no out-of-line `copy_from_slice()` per field.
            let mut raw = [[0u8; 8]; BATCH];
            for (j, e) in raw.iter_mut().take(run).enumerate() {
                let (head, len) = self.batch.used[k + j];
                *e = (u64::from(head) | (u64::from(len) << 32)).to_le_bytes();
            }
            mem.write(
                self.used.wrapping_add(4 + 8 * self.wrap(idx)),
                &raw.as_flattened()[..8 * run],
            )?;
            k += run;
        }
        self.batch.used_len = 0;
        Ok(())
    }

    /// Publishes the used index (after flushing the elements: the memory
    /// accessor orders writes) and, with EVENT_IDX, where the driver should
    /// kick; each as one store.
    pub fn publish<M: GuestMemory>(&mut self, mem: &mut M) -> Result<(), RingError> {
        self.flush(mem)?;
        mem.write_u16(self.used.wrapping_add(2), self.used_idx)?;
        if self.event_idx {
            mem.write_u16(self.avail_event_addr(), self.last_avail)?;
        }
        Ok(())
    }

    /// With EVENT_IDX, asks the driver to kick as soon as it makes any
    /// buffer available beyond those it had when [`SplitQueue::pending`]
    /// last looked (`avail_event` = that available index).
    pub fn arm_kick<M: GuestMemory>(&mut self, mem: &mut M) -> Result<(), RingError> {
        if self.event_idx {
            mem.write_u16(self.avail_event_addr(), self.batch.avail_idx)?;
        }
        Ok(())
    }

    /// Where `avail_event` is: after the used ring's elements.
    fn avail_event_addr(&self) -> u64 {
        self.used.wrapping_add(4 + 8 * u64::from(self.num))
    }

    /// Whether the driver wants an interrupt for what was published since
    /// the last one (virtio 1.x, 2.7.7 and 2.7.10).
    pub fn needs_interrupt<M: GuestMemory>(&mut self, mem: &mut M) -> Result<bool, RingError> {
        let old = self.signalled_used;
        let new = self.used_idx;
        if old == new {
            return Ok(false);
        }
        let want = if self.event_idx {
            let used_event = mem.read_u16(self.avail.wrapping_add(4 + 2 * u64::from(self.num)))?;
            // vring_need_event()
            new.wrapping_sub(used_event).wrapping_sub(1) < new.wrapping_sub(old)
        } else {
            mem.read_u16(self.avail)? & VRING_AVAIL_F_NO_INTERRUPT == 0
        };
        if want {
            self.signalled_used = new;
        }
        Ok(want)
    }
}
