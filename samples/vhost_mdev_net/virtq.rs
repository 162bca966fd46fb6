// SPDX-License-Identifier: GPL-2.0

//! The virtio-net loopback of the sample: every frame taken from TX is
//! written into RX buffers.
//!
//! Pure logic with no kernel dependencies: the rings, split or packed, are
//! served through the [`Ring`] interface of the `vhost-mdev-proto` crate
//! ([`crate::ring`] over [`crate::vring`] and [`crate::packed`], included
//! by path; the loopback is compiled once per ring type), the packed
//! rings' id tables are the including crate's `Ids` (the module: a vector
//! on the heap), guest memory is reached through the [`GuestMemory`]
//! trait, and
//! `tools/proto-tests` compiles this file on the host, where property tests
//! fill a fake memory with hostile rings. Every index, length and flag the
//! driver wrote is checked; a violation is a [`RingError`], which the
//! device turns into DEVICE_NEEDS_RESET.

pub use crate::packed::{PackedQueue, PACKED_BASE_INIT};
pub use crate::ring::*;
pub use crate::vring::*;
use crate::Ids;

/// Size of `struct virtio_net_hdr_v1` (with `num_buffers`; checked against
/// the header by the module and by the host tests).
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

/// Counters of a loopback, as shown in sysfs (beside those of the device's
/// data path: kicks, interrupts, ring errors).
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

impl Stats {
    /// Adds `o`'s counts to these (the most of the `max_*` ones): the
    /// totals over several loopbacks.
    pub fn add(&mut self, o: &Stats) {
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.drop_oversize += o.drop_oversize;
        self.drop_malformed += o.drop_malformed;
        self.direct_frames += o.direct_frames;
        self.runs += o.runs;
        self.max_run_descs = self.max_run_descs.max(o.max_run_descs);
        self.max_run_bytes = self.max_run_bytes.max(o.max_run_bytes);
    }
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

/// A virtio-net queue pair whose TX queue loops back into its RX queue.
///
/// About 4.5 KiB (plus the id tables' storage): keep it on the heap and
/// reset it in place ([`Loopback::EMPTY`], [`Loopback::reset`]), not on a
/// kernel stack.
#[derive(Debug)]
pub struct Loopback {
    /// The RX queue (queue `2i` of pair `i`).
    pub rx: Queue<Ids>,
    /// The TX queue (queue `2i + 1`).
    pub tx: Queue<Ids>,
    /// `VIRTIO_NET_F_MRG_RXBUF` negotiated.
    pub mrg_rxbuf: bool,
    /// Counters.
    pub stats: Stats,
    scratch: RxScratch,
}

/// What became of a frame offered to RX.
enum Delivery {
    /// Delivered, in so many RX chains; by direct copies only, or not.
    Delivered(u16, bool),
    TooBig,
    NoBuffers,
}

/// Where frames go in RX: kept in the device, not on the stack.
///
/// The first `walked` chains the driver made available in RX (from the
/// next one to consume on) were walked in this run and their buffers recorded
/// here; a frame that does not fit leaves them for the next frame, which
/// uses them without walking them again.
#[derive(Clone, Copy, Debug)]
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
    const SEG: Segment = Segment {
        addr: 0,
        len: 0,
        write: false,
    };
    const EMPTY: Self = Self {
        heads: [0; MAX_RX_CHAINS],
        nsegs: [0; MAX_RX_CHAINS],
        segs: [Self::SEG; MAX_RX_SEGS],
        tx: [Self::SEG; MAX_TX_SEGS],
        walked: 0,
        recorded: 0,
        cut: false,
    };

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

impl Default for Loopback {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl Loopback {
    /// A loopback with unconfigured queues and zero counters.
    pub const EMPTY: Self = Self {
        rx: Queue::EMPTY,
        tx: Queue::EMPTY,
        mrg_rxbuf: false,
        stats: Stats {
            tx_packets: 0,
            tx_bytes: 0,
            rx_packets: 0,
            rx_bytes: 0,
            drop_oversize: 0,
            drop_malformed: 0,
            direct_frames: 0,
            runs: 0,
            max_run_descs: 0,
            max_run_bytes: 0,
        },
        scratch: RxScratch::EMPTY,
    };

    /// Forgets the queues and what the driver negotiated (a device reset),
    /// in place; the counters, which describe the instance, stay.
    pub fn reset(&mut self) {
        self.rx.reset();
        self.tx.reset();
        self.mrg_rxbuf = false;
        // Per-run state: every run starts by clearing it.
        self.scratch.walked = 0;
        self.scratch.recorded = 0;
        self.scratch.cut = false;
    }

    /// A loopback over two configured split queues (for the host tests: it
    /// builds the loopback by value; the module fills one in place).
    #[inline]
    pub fn new(rx: SplitQueue, tx: SplitQueue, mrg_rxbuf: bool) -> Self {
        Self {
            rx: Queue::new_split(rx, Ids::EMPTY),
            tx: Queue::new_split(tx, Ids::EMPTY),
            mrg_rxbuf,
            ..Self::EMPTY
        }
    }

    /// A loopback over two configured packed queues (for the host tests).
    #[inline]
    pub fn new_packed(rx: PackedQueue<Ids>, tx: PackedQueue<Ids>, mrg_rxbuf: bool) -> Self {
        Self {
            rx: Queue::new_packed(rx),
            tx: Queue::new_packed(tx),
            mrg_rxbuf,
            ..Self::EMPTY
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
        yield_now: impl FnMut() -> bool,
    ) -> Result<Outcome, RingError> {
        if !self.rx.usable() || !self.tx.usable() {
            return Ok(Outcome::default());
        }
        self.rx.check()?;
        self.tx.check()?;
        // The ring type is the device's (RING_PACKED): one per run.
        match (self.rx.is_packed(), self.tx.is_packed()) {
            (false, false) => Pair {
                rx: &mut self.rx.split,
                tx: &mut self.tx.split,
                mrg_rxbuf: self.mrg_rxbuf,
                stats: &mut self.stats,
                scratch: &mut self.scratch,
            }
            .process(mem, buf, budget, yield_now),
            (true, true) => Pair {
                rx: &mut self.rx.packed,
                tx: &mut self.tx.packed,
                mrg_rxbuf: self.mrg_rxbuf,
                stats: &mut self.stats,
                scratch: &mut self.scratch,
            }
            .process(mem, buf, budget, yield_now),
            _ => Err(RingError::BadIndex),
        }
    }
}

/// The loopback's work on rings of type `R`.
struct Pair<'a, R> {
    rx: &'a mut R,
    tx: &'a mut R,
    mrg_rxbuf: bool,
    stats: &'a mut Stats,
    scratch: &'a mut RxScratch,
}

impl<R: Ring> Pair<'_, R> {
    /// [`Loopback::process_yielding`] on usable rings of type `R`.
    fn process<M: GuestMemory>(
        &mut self,
        mem: &mut M,
        buf: &mut [u8],
        budget: Budget,
        mut yield_now: impl FnMut() -> bool,
    ) -> Result<Outcome, RingError> {
        let mut out = Outcome::default();
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
                // A packed ring counts a window of chains at a time: look
                // past it (a split ring counted them all).
                if !R::BOUNDED_PENDING {
                    break;
                }
                tx_pending = self.tx.pending(mem)?;
                if tx_pending == 0 {
                    break;
                }
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
                let seg = match w.next(self.tx, mem) {
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
                let ntx = if gathering { Some(ntx) } else { None };
                let d = self.deliver(mem, buf, len, rx_pending, ntx, &mut out.descs)?;
                match d {
                    Delivery::Delivered(n, direct) => {
                        rx_pending -= n;
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
            self.tx.consume(mem)?;
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
        if tx_used || self.tx.event_idx() {
            self.tx.publish(mem)?;
        }
        // The used index and avail_event stores above must be visible before
        // we read the driver's used_event/flags and avail index below.
        mem.fence();
        if rx_used {
            out.irq_rx = self.rx.needs_interrupt(mem)?;
        }
        if tx_used || self.tx.event_idx() {
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
            let sc = &mut *self.scratch;
            let (head, mut w) = self.rx.chain(mem, n as u16)?;
            sc.heads[n] = head;
            sc.nsegs[n] = 0;
            sc.walked = n + 1;
            let walked = loop {
                if sc.recorded == MAX_RX_SEGS {
                    sc.cut = true;
                    break Ok(());
                }
                let seg = match w.next(self.rx, mem) {
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
                && !self.rx.is_full(rx_pending)
            {
                return Ok(Delivery::NoBuffers);
            }
            return Ok(Delivery::TooBig);
        }
        // num_buffers, in the header (little-endian, bytes 10-11).
        let num_buffers = (n as u16).to_le_bytes();
        buf[10] = num_buffers[0];
        buf[11] = num_buffers[1];
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
            self.rx.consume(mem)?;
            let head = self.scratch.heads[i];
            self.rx.put_used(mem, head, written)?;
        }
        self.scratch.consume(n);
        Ok(Delivery::Delivered(n as u16, direct))
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

/// Parses a MAC address written as six two-digit hex bytes separated by
/// colons (`02:aa:bb:cc:dd:ee`); `None` unless it is a unicast address
/// other than all zeroes.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut n = 0;
    for part in s.split(':') {
        if n == 6 || part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        mac[n] = u8::from_str_radix(part, 16).ok()?;
        n += 1;
    }
    (n == 6 && mac[0] & 1 == 0 && mac != [0; 6]).then_some(mac)
}
