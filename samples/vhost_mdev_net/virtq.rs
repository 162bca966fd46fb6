// SPDX-License-Identifier: GPL-2.0

//! Device side of virtio split virtqueues, and the virtio-net loopback.
//!
//! Pure logic with no kernel dependencies: guest memory is reached through
//! the [`GuestMemory`] trait, implemented in the module by
//! `vhost_mdev_dma_rw()` and on the host (`tools/proto-tests`) by a fake
//! memory that property tests fill with hostile rings. Every index, length
//! and flag the driver wrote is checked here; a violation is a
//! [`RingError`], which the device turns into DEVICE_NEEDS_RESET.

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
    /// The driver made more buffers available than the ring holds.
    BadAvailIdx,
    /// A chain whose first [`MAX_EMPTY_DESCS`] buffers hold no byte.
    EmptyChain,
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
#[derive(Clone, Copy, Debug, Default)]
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
#[derive(Clone, Copy, Debug, Default)]
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
    /// Forgets what was read ahead (the ring was reconfigured).
    pub fn invalidate(&mut self) {
        self.batch = Batch::default();
    }

    /// An enabled queue of `num` entries at the given ring addresses.
    pub fn new(num: u16, desc: u64, avail: u64, used: u64) -> Self {
        Self {
            num,
            desc,
            avail,
            used,
            ready: true,
            ..Default::default()
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
            let mut raw = [0u8; 8 * BATCH];
            for (j, e) in raw.chunks_exact_mut(8).take(run).enumerate() {
                let (head, len) = self.batch.used[k + j];
                e[..4].copy_from_slice(&u32::from(head).to_le_bytes());
                e[4..].copy_from_slice(&len.to_le_bytes());
            }
            mem.write(
                self.used.wrapping_add(4 + 8 * self.wrap(idx)),
                &raw[..8 * run],
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

/// Size of `struct virtio_net_hdr_v1` (with `num_buffers`).
pub const NET_HDR_LEN: usize = 12;
/// Largest frame: a 65535-byte MTU plus the Ethernet header.
pub const MAX_FRAME: usize = 65535 + 14;
/// Size of the frame buffer a loopback needs.
pub const FRAME_BUF: usize = NET_HDR_LEN + MAX_FRAME;
/// RX buffers one frame may span with MRG_RXBUF.
pub const MAX_RX_CHAINS: usize = 32;
/// Segments of RX chains recorded for one frame: a walk stops there (what
/// follows would add no room).
pub const MAX_RX_SEGS: usize = 32;
/// Segments of a TX chain recorded for a direct copy; a frame in more
/// segments goes through the device's buffer.
const MAX_TX_SEGS: usize = 32;

/// The work one run of [`Loopback::process`] may do, checked between
/// frames (as vhost-net's `vhost_exceeds_weight()`): a run ends when any
/// of the three is used up. The frame in progress then completes, so a run
/// does at most one frame's work more ([`Budget::max_descs`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Frames taken from TX.
    pub frames: u32,
    /// Descriptors walked, TX and RX, direct and indirect (the ones that
    /// point to indirect tables included).
    pub descs: u32,
    /// Bytes of frames taken from TX (each frame's bytes are copied once,
    /// TX to RX, and charged once).
    pub bytes: u64,
}

/// Default descriptor budget of a run: a frame of well-formed traffic
/// walks 2 to 6 descriptors, so 64 frames stay well inside it.
pub const DESC_BUDGET: u32 = 1024;
/// Default byte budget of a run (vhost-net's `VHOST_NET_WEIGHT`).
pub const BYTE_BUDGET: u64 = 0x80000;

impl Budget {
    /// `frames` frames, with the default descriptor and byte budgets.
    pub const fn frames(frames: u32) -> Self {
        Self {
            frames,
            descs: DESC_BUDGET,
            bytes: BYTE_BUDGET,
        }
    }

    /// The most descriptors one frame walks with rings of `tx_num` and
    /// `rx_num` entries: a whole TX chain, and the RX walk, which stops
    /// at [`MAX_RX_SEGS`] buffers (plus the descriptors of its chains that
    /// point to indirect tables). Never again for chains walked before.
    pub const fn frame_descs(tx_num: u16) -> u32 {
        tx_num as u32 + MAX_INDIRECT + (MAX_RX_SEGS + MAX_RX_CHAINS) as u32
    }

    /// The most descriptors one run walks: the budget, and one frame more.
    pub const fn max_descs(&self, tx_num: u16) -> u32 {
        self.descs.saturating_add(Self::frame_descs(tx_num))
    }

    /// The most bytes one run charges: the budget, and one frame more.
    pub const fn max_bytes(&self) -> u64 {
        self.bytes.saturating_add(FRAME_BUF as u64)
    }
}

impl From<u32> for Budget {
    fn from(frames: u32) -> Self {
        Self::frames(frames)
    }
}

/// Counters of a loopback, as shown in sysfs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames taken from TX.
    pub tx_packets: u64,
    /// Bytes of frames taken from TX (without the virtio-net header).
    pub tx_bytes: u64,
    /// Frames delivered to RX.
    pub rx_packets: u64,
    /// Bytes delivered to RX (without the virtio-net header).
    pub rx_bytes: u64,
    /// Frames dropped: larger than the RX buffers can hold.
    pub drop_oversize: u64,
    /// Frames dropped: malformed (shorter than the header, or larger than
    /// the largest frame).
    pub drop_malformed: u64,
    /// Kicks received.
    pub kicks: u64,
    /// Interrupts sent.
    pub interrupts: u64,
    /// Ring errors (each put the device into NEEDS_RESET).
    pub ring_errors: u64,
    /// Frames delivered whose data went from TX to RX buffers by direct
    /// copies only ([`GuestMemory::copy`]), without the device's buffer.
    pub direct_frames: u64,
    /// Runs of [`Loopback::process`] that did work.
    pub runs: u64,
    /// Most descriptors one run walked.
    pub max_run_descs: u64,
    /// Most bytes one run charged ([`Budget::bytes`]).
    pub max_run_bytes: u64,
}

/// What one run of [`Loopback::process`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Interrupt the RX queue.
    pub irq_rx: bool,
    /// Interrupt the TX queue.
    pub irq_tx: bool,
    /// The budget ran out, or the run yielded, with work left.
    pub more: bool,
    /// Frames taken from TX.
    pub frames: u32,
    /// Descriptors walked.
    pub descs: u32,
    /// Bytes charged.
    pub bytes: u64,
}

/// A virtio-net device whose TX queue loops back into its RX queue.
#[derive(Clone, Copy, Debug, Default)]
pub struct Loopback {
    /// Queue 0.
    pub rx: SplitQueue,
    /// Queue 1.
    pub tx: SplitQueue,
    /// `VIRTIO_NET_F_MRG_RXBUF` negotiated.
    pub mrg_rxbuf: bool,
    /// Counters.
    pub stats: Stats,
    scratch: RxScratch,
}

/// What became of a frame offered to RX.
enum Delivery {
    /// Delivered; by direct copies only, or not.
    Delivered(bool),
    TooBig,
    NoBuffers,
}

/// Where frames go in RX: kept in the device, not on the stack.
///
/// The first `walked` chains the driver made available in RX (from
/// `rx.last_avail` on) were walked in this run and their buffers recorded
/// here; a frame that does not fit leaves them for the next frame, which
/// uses them without walking them again.
#[derive(Clone, Copy, Debug, Default)]
struct RxScratch {
    /// Head of each chain.
    heads: [u16; MAX_RX_CHAINS],
    /// Recorded segments of each chain, in `segs`.
    nsegs: [u8; MAX_RX_CHAINS],
    /// Recorded segments of all chains, in order.
    segs: [Segment; MAX_RX_SEGS],
    /// Segments of the TX frame being copied directly.
    tx: [Segment; MAX_TX_SEGS],
    /// Chains walked and recorded.
    walked: usize,
    /// Segments recorded (of the `walked` chains).
    recorded: usize,
    /// The last walked chain was not recorded to its end: the segments
    /// ran out, so no further chain can add room.
    cut: bool,
}

impl RxScratch {
    /// Forgets the first `n` walked chains (consumed), keeping the others
    /// in order; a chain recorded only in part is dropped (walked again
    /// when needed: with fewer segments recorded, more of it may fit).
    fn consume(&mut self, n: usize) {
        let n = n.min(self.walked);
        let segs: usize = self.nsegs[..n].iter().map(|&k| usize::from(k)).sum();
        self.heads.copy_within(n..self.walked, 0);
        self.nsegs.copy_within(n..self.walked, 0);
        self.segs.copy_within(segs..self.recorded, 0);
        self.walked -= n;
        self.recorded -= segs;
        if self.cut && self.walked > 0 {
            self.walked -= 1;
            self.recorded -= usize::from(self.nsegs[self.walked]);
        }
        self.cut = false;
    }

    /// Bytes the recorded segments of chain `i` hold, which start at
    /// segment `at`.
    fn room(&self, i: usize, at: usize) -> u64 {
        let k = usize::from(self.nsegs[i]);
        self.segs[at..at + k].iter().map(|s| u64::from(s.len)).sum()
    }
}

impl Loopback {
    /// A loopback over two configured queues.
    pub fn new(rx: SplitQueue, tx: SplitQueue, mrg_rxbuf: bool) -> Self {
        Self {
            rx,
            tx,
            mrg_rxbuf,
            ..Default::default()
        }
    }

    /// Moves frames from TX to RX within `budget` ([`Budget`], or a number
    /// of frames with the default descriptor and byte budgets). `buf`
    /// holds at least [`FRAME_BUF`] bytes. On error the queues are left as
    /// they were at the last completed frame; the device must then be
    /// reset.
    pub fn process<M: GuestMemory>(
        &mut self,
        mem: &mut M,
        buf: &mut [u8],
        budget: impl Into<Budget>,
    ) -> Result<Outcome, RingError> {
        self.process_yielding(mem, buf, budget.into(), || false)
    }

    /// As [`Loopback::process`], and ends the run early, between two
    /// frames, when `yield_now()` says the CPU is wanted elsewhere (it is
    /// asked after every frame; the run always moves at least one).
    pub fn process_yielding<M: GuestMemory>(
        &mut self,
        mem: &mut M,
        buf: &mut [u8],
        budget: Budget,
        mut yield_now: impl FnMut() -> bool,
    ) -> Result<Outcome, RingError> {
        let mut out = Outcome::default();
        if !self.rx.ready || !self.tx.ready || self.rx.num == 0 || self.tx.num == 0 {
            return Ok(out);
        }
        let buf = buf.get_mut(..FRAME_BUF).ok_or(RingError::Fault)?;
        // Chains recorded in an earlier run may have been reconfigured.
        self.scratch.walked = 0;
        self.scratch.recorded = 0;
        self.scratch.cut = false;
        let mut tx_used = false;
        let mut rx_used = false;
        // Stopped with work left: out of budget, or yielding.
        let mut stopped = false;
        // RX buffers pending when a frame found too few (MRG_RXBUF).
        let mut rx_starved = None;
        let mut tx_pending = self.tx.pending(mem)?;
        let mut rx_pending = self.rx.pending(mem)?;
        let direct = mem.can_copy();
        loop {
            if tx_pending == 0 {
                break;
            }
            if out.frames > 0
                && (out.frames >= budget.frames
                    || out.descs >= budget.descs
                    || out.bytes >= budget.bytes
                    || yield_now())
            {
                stopped = true;
                break;
            }
            if rx_pending == 0 {
                rx_pending = self.rx.pending(mem)?;
                if rx_pending == 0 {
                    break; // Back-pressure: wait for RX buffers (the RX kick).
                }
            }
            // Take the TX frame (header + data): with a direct copy, record
            // its segments and read only the header; otherwise read it all.
            let (head, mut w) = self.tx.chain(mem, 0)?;
            let mut len = 0usize;
            let mut malformed = false;
            let mut ntx = 0usize;
            let mut gathering = direct;
            let walked = loop {
                let seg = match w.next(&mut self.tx, mem) {
                    Ok(Some(seg)) => seg,
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                };
                if seg.write {
                    break Err(RingError::BadDirection);
                }
                let l = seg.len as usize;
                if len + l > FRAME_BUF {
                    // Dropped whatever follows: walk no further.
                    malformed = true;
                    break Ok(());
                }
                if gathering && ntx == MAX_TX_SEGS {
                    // Too many pieces: read what was recorded, go on reading.
                    let mut off = 0usize;
                    let mut read = Ok(());
                    for t in &self.scratch.tx[..ntx] {
                        let tl = t.len as usize;
                        read = mem.read(t.addr, &mut buf[off..off + tl]);
                        if read.is_err() {
                            break;
                        }
                        off += tl;
                    }
                    if let Err(e) = read {
                        break Err(e.into());
                    }
                    gathering = false;
                }
                if gathering {
                    // The header too is copied directly (the device does not
                    // look into it): only `num_buffers` is written over it.
                    self.scratch.tx[ntx] = seg;
                    ntx += 1;
                } else if let Err(e) = mem.read(seg.addr, &mut buf[len..len + l]) {
                    break Err(e.into());
                }
                len += l;
            };
            out.descs = out.descs.saturating_add(w.descs());
            walked?;
            out.bytes += len as u64;
            if len < NET_HDR_LEN {
                malformed = true;
            }
            if malformed {
                self.stats.drop_malformed += 1;
            } else {
                let rx_before = self.rx.last_avail;
                let ntx = if gathering { Some(ntx) } else { None };
                let d = self.deliver(mem, buf, len, rx_pending, ntx, &mut out.descs)?;
                rx_pending -= self.rx.last_avail.wrapping_sub(rx_before);
                match d {
                    Delivery::Delivered(direct) => {
                        rx_used = true;
                        self.stats.direct_frames += u64::from(direct);
                        self.stats.rx_packets += 1;
                        self.stats.rx_bytes += (len - NET_HDR_LEN) as u64;
                    }
                    Delivery::TooBig => self.stats.drop_oversize += 1,
                    // Leave the TX buffer for when RX buffers arrive.
                    Delivery::NoBuffers => {
                        rx_starved = Some(rx_pending);
                        break;
                    }
                }
            }
            if !malformed {
                self.stats.tx_packets += 1;
                self.stats.tx_bytes += (len - NET_HDR_LEN) as u64;
            }
            self.tx.last_avail = self.tx.last_avail.wrapping_add(1);
            self.tx.put_used(mem, head, 0)?;
            tx_pending -= 1;
            tx_used = true;
            out.frames += 1;
        }
        if out.frames > 0 || out.descs > 0 {
            self.stats.runs += 1;
            self.stats.max_run_descs = self.stats.max_run_descs.max(u64::from(out.descs));
            self.stats.max_run_bytes = self.stats.max_run_bytes.max(out.bytes);
        }
        if rx_used {
            self.rx.publish(mem)?;
        }
        if rx_starved.is_some() {
            // Only more RX buffers let the waiting frame go: ask for a kick
            // when the driver adds any.
            self.rx.arm_kick(mem)?;
        }
        if tx_used || self.tx.event_idx {
            self.tx.publish(mem)?;
        }
        // The used index and avail_event stores above must be visible before
        // we read the driver's used_event/flags and avail index below.
        mem.fence();
        if rx_used {
            out.irq_rx = self.rx.needs_interrupt(mem)?;
        }
        if tx_used || self.tx.event_idx {
            out.irq_tx = self.tx.needs_interrupt(mem)?;
        }
        out.more = stopped;
        if let (false, Some(had)) = (out.more, rx_starved) {
            // Waiting for RX buffers: run again only if more came while we
            // armed the kick (the driver may have missed it), not while
            // the buffers there are too few (that would spin until the
            // driver, perhaps on this CPU, posts more).
            out.more = self.rx.pending(mem)? > had;
        } else if !out.more {
            // Buffers made available while we published (the driver may
            // have seen the old avail_event and not kicked): look again.
            out.more = self.tx.pending(mem)? > 0 && self.rx.pending(mem)? > 0;
        }
        Ok(out)
    }

    /// Writes the frame of `len` bytes (header first) into RX buffers: from
    /// `buf[..len]`, or with `ntx` copied from the first `ntx` recorded TX
    /// segments, header included, with `num_buffers` written over it.
    /// Consumes nothing unless it returns [`Delivery::Delivered`]. Chains
    /// walked for an earlier frame of this run are not walked again; the
    /// descriptors walked are added to `descs`.
    fn deliver<M: GuestMemory>(
        &mut self,
        mem: &mut M,
        buf: &mut [u8],
        len: usize,
        rx_pending: u16,
        ntx: Option<usize>,
        descs: &mut u32,
    ) -> Result<Delivery, RingError> {
        let max_chains = if self.mrg_rxbuf {
            MAX_RX_CHAINS.min(rx_pending as usize)
        } else {
            1
        };
        let need = len as u64;
        // The chains walked before, as many as the frame needs.
        let mut n = 0usize;
        let mut at = 0usize;
        let mut cap = 0u64;
        while cap < need && n < self.scratch.walked {
            cap += self.scratch.room(n, at);
            at += usize::from(self.scratch.nsegs[n]);
            n += 1;
        }
        // Then new ones, until the frame fits or no chain can add room.
        while cap < need && n < max_chains && !self.scratch.cut {
            let sc = &mut self.scratch;
            let (head, mut w) = self.rx.chain(mem, n as u16)?;
            sc.heads[n] = head;
            sc.nsegs[n] = 0;
            sc.walked = n + 1;
            let walked = loop {
                if sc.recorded == MAX_RX_SEGS {
                    sc.cut = true;
                    break Ok(());
                }
                let seg = match w.next(&mut self.rx, mem) {
                    Ok(Some(seg)) => seg,
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                };
                if !seg.write {
                    break Err(RingError::BadDirection);
                }
                sc.segs[sc.recorded] = seg;
                sc.nsegs[n] += 1;
                sc.recorded += 1;
                cap += u64::from(seg.len);
                if cap >= need {
                    // The rest of the chain is not needed for this frame,
                    // which consumes the chain.
                    break Ok(());
                }
            };
            *descs = descs.saturating_add(w.descs());
            walked?;
            n += 1;
        }
        if cap < need {
            // With MRG_RXBUF, too few buffers posted yet is back-pressure
            // unless the ring is full (more will never come) or the chains
            // walked hold as many buffers as a frame may use.
            if self.mrg_rxbuf
                && !self.scratch.cut
                && n == rx_pending as usize
                && n < MAX_RX_CHAINS
                && rx_pending < self.rx.num
            {
                return Ok(Delivery::NoBuffers);
            }
            return Ok(Delivery::TooBig);
        }
        // num_buffers, in the header (little-endian, bytes 10-11).
        let num_buffers = (n as u16).to_le_bytes();
        buf[10..12].copy_from_slice(&num_buffers);
        let mut off = 0usize;
        let mut at = 0usize;
        let mut direct = ntx.is_some();
        let tx = ntx.map(|k| &self.scratch.tx[..k]);
        for i in 0..n {
            let mut written = 0u32;
            let segs = usize::from(self.scratch.nsegs[i]);
            for s in &self.scratch.segs[at..at + segs] {
                if off == len {
                    break;
                }
                let l = (s.len as usize).min(len - off);
                direct &= emit(mem, s.addr, off, l, buf, tx, num_buffers)?;
                off += l;
                written += l as u32;
            }
            at += segs;
            self.rx.last_avail = self.rx.last_avail.wrapping_add(1);
            let head = self.scratch.heads[i];
            self.rx.put_used(mem, head, written)?;
        }
        self.scratch.consume(n);
        Ok(Delivery::Delivered(direct))
    }
}

/// Writes bytes `off..off + len` of a frame to `dst`: from `buf`, or, with
/// `tx`, copied from the TX segments `tx` (falling back to `buf` as a bounce
/// buffer where a direct copy fails: `buf` holds nothing of the frame then)
/// with `num_buffers` written over header bytes 10-11. Returns whether every
/// byte was copied directly.
fn emit<M: GuestMemory>(
    mem: &mut M,
    dst: u64,
    off: usize,
    len: usize,
    buf: &mut [u8],
    tx: Option<&[Segment]>,
    num_buffers: [u8; 2],
) -> Result<bool, Fault> {
    let Some(tx) = tx else {
        mem.write(dst, &buf[off..off + len])?;
        return Ok(false);
    };
    let mut direct = true;
    let (mut d, mut o, mut l) = (dst, off, len);
    let mut start = 0usize;
    for t in tx {
        if l == 0 {
            break;
        }
        let end = start + t.len as usize;
        if o < end {
            let n = l.min(end - o);
            let src = t.addr.wrapping_add((o - start) as u64);
            if !mem.copy(d, src, n) {
                direct = false;
                mem.read(src, &mut buf[o..o + n])?;
                mem.write(d, &buf[o..o + n])?;
            }
            d = d.wrapping_add(n as u64);
            o += n;
            l -= n;
        }
        start = end;
    }
    // `num_buffers` (bytes 10-11 of the header) where this piece has them.
    let (a, b) = (off.max(10), (off + len).min(12));
    if a < b {
        mem.write(
            dst.wrapping_add((a - off) as u64),
            &num_buffers[a - 10..b - 10],
        )?;
    }
    Ok(direct)
}
