// SPDX-License-Identifier: GPL-2.0 OR MIT

//! The packed-ring walker against a fake guest memory and a reference
//! driver (as Linux's virtio_ring fills a packed ring): well-formed traffic
//! of any shape round-trips exactly, whatever the ring size, completion
//! order or vring base round trips; hostile rings end in a ring error,
//! never a panic, a hang or an access outside the mapped memory.

use proptest::prelude::*;
use std::collections::{HashMap, VecDeque};
use vhost_mdev_proto::packed::*;
use vhost_mdev_proto::vring::{
    Fault, GuestMemory, RingError, Segment, MAX_EMPTY_DESCS, MAX_INDIRECT,
};

const BASE: u64 = 0x10_0000;
const MEM: usize = 4 << 20;
/// Descriptor ring (up to 32768 entries: 512 KiB).
const RING: u64 = BASE;
/// Driver and device event suppression areas.
const DRV_EV: u64 = BASE + 0x8_0000;
const DEV_EV: u64 = BASE + 0x8_0004;
/// Indirect tables: one slot of `TABLE_SLOT` bytes per buffer id.
const TABLES: u64 = BASE + 0x10_0000;
const TABLE_SLOT: u64 = 16 * 64;

/// One access of the device, for ordering checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Read16(u64),
    Read(u64, usize),
    Write16(u64, u16),
    Write(u64, usize),
    ReadFence,
    WriteFence,
    Fence,
}

/// Guest memory mapped at `BASE`; everything else faults.
struct Mem {
    bytes: Vec<u8>,
    log: Option<Vec<Access>>,
    accesses: u64,
}

impl Mem {
    fn new() -> Self {
        Self {
            bytes: vec![0; MEM],
            log: None,
            accesses: 0,
        }
    }
    fn range(&self, addr: u64, len: usize) -> Result<std::ops::Range<usize>, Fault> {
        let start = addr.checked_sub(BASE).ok_or(Fault)? as usize;
        let end = start.checked_add(len).ok_or(Fault)?;
        if end > self.bytes.len() {
            return Err(Fault);
        }
        Ok(start..end)
    }
    fn put(&mut self, addr: u64, b: &[u8]) {
        let r = self.range(addr, b.len()).unwrap();
        self.bytes[r].copy_from_slice(b);
    }
    fn get(&self, addr: u64, len: usize) -> Vec<u8> {
        self.bytes[self.range(addr, len).unwrap()].to_vec()
    }
    fn get16(&self, addr: u64) -> u16 {
        u16::from_le_bytes(self.get(addr, 2).try_into().unwrap())
    }
    fn put16(&mut self, addr: u64, v: u16) {
        self.put(addr, &v.to_le_bytes());
    }
    fn note(&mut self, a: Access) {
        self.accesses += 1;
        if let Some(l) = &mut self.log {
            l.push(a);
        }
    }
}

impl GuestMemory for Mem {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
        self.note(Access::Read(addr, buf.len()));
        let r = self.range(addr, buf.len())?;
        buf.copy_from_slice(&self.bytes[r]);
        Ok(())
    }
    fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), Fault> {
        self.note(Access::Write(addr, buf.len()));
        let r = self.range(addr, buf.len())?;
        self.bytes[r].copy_from_slice(buf);
        Ok(())
    }
    fn read_u16(&mut self, addr: u64) -> Result<u16, Fault> {
        self.note(Access::Read16(addr));
        let r = self.range(addr, 2)?;
        Ok(u16::from_le_bytes([
            self.bytes[r.start],
            self.bytes[r.start + 1],
        ]))
    }
    fn write_u16(&mut self, addr: u64, v: u16) -> Result<(), Fault> {
        self.note(Access::Write16(addr, v));
        let r = self.range(addr, 2)?;
        self.bytes[r].copy_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn fence(&mut self) {
        self.note(Access::Fence);
    }
    fn read_fence(&mut self) {
        self.note(Access::ReadFence);
    }
    fn write_fence(&mut self) {
        self.note(Access::WriteFence);
    }
}

/// A buffer the driver posted: its segments and ring slots.
#[derive(Clone, Debug)]
struct Posted {
    segs: Vec<Segment>,
    descs: u16,
    head: u16,
}

/// The driver's side of a packed ring in `Mem`, as Linux 6.12
/// `virtio_ring.c` fills it: descriptors of a chain in consecutive slots,
/// the buffer id in the last one (garbage in the others: reserved), the
/// head's `flags` written last; ids below `num`.
struct Driver {
    num: u16,
    next: u16,
    wrap: bool,
    used_at: u16,
    used_wrap: bool,
    free_slots: u16,
    free_ids: Vec<u16>,
    inflight: HashMap<u16, Posted>,
}

fn avail_bits(wrap: bool) -> u16 {
    if wrap {
        PACKED_DESC_F_AVAIL
    } else {
        PACKED_DESC_F_USED
    }
}

fn write_desc(m: &mut Mem, at: u64, addr: u64, len: u32, id: u16, flags: u16) {
    let mut b = Vec::new();
    b.extend_from_slice(&addr.to_le_bytes());
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(&id.to_le_bytes());
    m.put(at, &b);
    m.put16(at + 14, flags);
}

impl Driver {
    fn new(num: u16) -> Self {
        Self {
            num,
            next: 0,
            wrap: true,
            used_at: 0,
            used_wrap: true,
            free_slots: num,
            free_ids: (0..num).rev().collect(),
            inflight: HashMap::new(),
        }
    }
    fn slot(&self, i: u16) -> u64 {
        RING + 16 * i as u64
    }
    /// Posts `segs` (readable ones first), through an indirect table or
    /// in ring slots; `None` when the ring or the ids are full.
    fn add(&mut self, m: &mut Mem, segs: &[Segment], indirect: bool) -> Option<u16> {
        let descs = if indirect { 1 } else { segs.len() as u16 };
        if descs > self.free_slots {
            return None;
        }
        let id = self.free_ids.pop()?;
        let head = self.next;
        let head_wrap = self.wrap;
        let mut head_desc = None;
        if indirect {
            let table = TABLES + id as u64 * TABLE_SLOT;
            for (k, s) in segs.iter().enumerate() {
                let f = if s.write { PACKED_DESC_F_WRITE } else { 0 };
                write_desc(m, table + 16 * k as u64, s.addr, s.len, 0xeeee, f);
            }
            head_desc = Some((
                table,
                16 * segs.len() as u32,
                PACKED_DESC_F_INDIRECT | avail_bits(head_wrap),
            ));
        } else {
            for (k, s) in segs.iter().enumerate() {
                let last = k + 1 == segs.len();
                let mut f = avail_bits(self.wrap);
                if s.write {
                    f |= PACKED_DESC_F_WRITE;
                }
                if !last {
                    f |= PACKED_DESC_F_NEXT;
                }
                let did = if last { id } else { 0xdddd };
                if k == 0 {
                    head_desc = Some((s.addr, s.len, f));
                    // Everything but flags now, flags last.
                    let at = self.slot(self.next);
                    let mut b = Vec::new();
                    b.extend_from_slice(&s.addr.to_le_bytes());
                    b.extend_from_slice(&s.len.to_le_bytes());
                    b.extend_from_slice(&did.to_le_bytes());
                    m.put(at, &b);
                } else {
                    write_desc(m, self.slot(self.next), s.addr, s.len, did, f);
                }
                if !last {
                    self.step();
                }
            }
        }
        let (addr, len, flags) = head_desc.unwrap();
        if indirect {
            let at = self.slot(head);
            let mut b = Vec::new();
            b.extend_from_slice(&addr.to_le_bytes());
            b.extend_from_slice(&len.to_le_bytes());
            b.extend_from_slice(&id.to_le_bytes());
            m.put(at, &b);
        }
        self.step();
        m.put16(self.slot(head) + 14, flags);
        self.free_slots -= descs;
        self.inflight.insert(
            id,
            Posted {
                segs: segs.to_vec(),
                descs,
                head,
            },
        );
        Some(id)
    }
    fn step(&mut self) {
        self.next += 1;
        if self.next == self.num {
            self.next = 0;
            self.wrap = !self.wrap;
        }
    }
    /// Used buffers since the last call: (id, len), in ring order.
    fn used(&mut self, m: &Mem) -> Vec<(u16, u32)> {
        let mut v = Vec::new();
        loop {
            let at = self.slot(self.used_at);
            let f = m.get16(at + 14);
            let avail = f & PACKED_DESC_F_AVAIL != 0;
            let used = f & PACKED_DESC_F_USED != 0;
            if !(avail == used && used == self.used_wrap) {
                break;
            }
            let len = u32::from_le_bytes(m.get(at + 8, 4).try_into().unwrap());
            let id = m.get16(at + 12);
            let p = self
                .inflight
                .remove(&id)
                .unwrap_or_else(|| panic!("used id {id} not in flight"));
            let written = p.segs.iter().any(|s| s.write) && len != 0;
            assert_eq!(f & PACKED_DESC_F_WRITE != 0, written, "WRITE of used {id}");
            self.free_slots += p.descs;
            self.free_ids.push(id);
            let n = self.used_at as u32 + p.descs as u32;
            if n >= self.num as u32 {
                self.used_at = (n - self.num as u32) as u16;
                self.used_wrap = !self.used_wrap;
            } else {
                self.used_at = n as u16;
            }
            v.push((id, len));
        }
        v
    }
    /// The driver event area: `flags` and `off_wrap`.
    fn set_event(&self, m: &mut Mem, flags: u16, off_wrap: u16) {
        m.put16(DRV_EV, off_wrap);
        m.put16(DRV_EV + 2, flags);
    }
}

type Q = PackedQueue<Vec<u16>>;

fn queue(num: u16, event_idx: bool, indirect: bool) -> Q {
    let mut q = PackedQueue::new(num, RING, DRV_EV, DEV_EV, vec![0u16; num as usize]);
    q.event_idx = event_idx;
    q.indirect = indirect;
    q
}

/// Walks chain `ahead` to its end.
fn walk(q: &mut Q, m: &mut Mem, ahead: u16) -> Result<(u16, Vec<Segment>), RingError> {
    let (id, mut w) = q.chain(m, ahead)?;
    let mut segs = Vec::new();
    let mut steps = 0;
    while let Some(s) = w.next(q, m)? {
        segs.push(s);
        steps += 1;
        assert!(
            steps <= q.num as u32 + MAX_INDIRECT,
            "chain walk does not end"
        );
    }
    Ok((id, segs))
}

/// A small deterministic PRNG (the test's choices come from a proptest
/// seed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Random well-formed segments: readable ones, then writable ones.
fn random_segs(r: &mut Rng, max: usize) -> Vec<Segment> {
    let n = 1 + r.below(max as u64) as usize;
    let nout = r.below(n as u64 + 1) as usize;
    (0..n)
        .map(|k| Segment {
            addr: 0x4000_0000 + r.below(1 << 30),
            len: 1 + r.below(4096) as u32,
            write: k >= nout,
        })
        .collect()
}

/// What the round trip checks, across a run of random traffic.
struct RoundTrip {
    m: Mem,
    d: Driver,
    q: Q,
    r: Rng,
    /// Ids the driver posted, in order, not consumed by the device yet.
    posted: VecDeque<u16>,
    /// Consumed by the device, not marked used: id and written length.
    held: Vec<(u16, u32)>,
    /// Marked used, not seen by the driver yet, in order.
    completed: VecDeque<(u16, u32)>,
    /// Ring positions (two laps) marked used since the last interrupt
    /// check.
    covered: Vec<u32>,
    event_idx: bool,
    indirect: bool,
    /// Lifetime counters.
    buffers: u64,
    rebases: u64,
    laps: u64,
    interrupts: u64,
}

impl RoundTrip {
    fn new(num: u16, seed: u64, event_idx: bool, indirect: bool) -> Self {
        Self {
            m: Mem::new(),
            d: Driver::new(num),
            q: queue(num, event_idx, indirect),
            r: Rng(seed | 1),
            posted: VecDeque::new(),
            held: Vec::new(),
            completed: VecDeque::new(),
            covered: Vec::new(),
            event_idx,
            indirect,
            buffers: 0,
            rebases: 0,
            laps: 0,
            interrupts: 0,
        }
    }

    fn num(&self) -> u16 {
        self.d.num
    }

    /// The driver posts a buffer if it can.
    fn post(&mut self) {
        let max = (self.num() as usize).min(6);
        let ind = self.indirect && self.r.chance(40);
        let segs = random_segs(&mut self.r, if ind { 40 } else { max });
        if let Some(id) = self.d.add(&mut self.m, &segs, ind) {
            self.posted.push_back(id);
        }
    }

    /// The device counts what is pending and peeks at a chain ahead.
    fn peek(&mut self) {
        let p = self.q.pending(&mut self.m).unwrap();
        let expect = self.posted.len().min(MAX_AHEAD);
        assert_eq!(p as usize, expect, "pending");
        if p == 0 {
            return;
        }
        let ahead = self.r.below(p as u64) as u16;
        let (id, segs) = walk(&mut self.q, &mut self.m, ahead).unwrap();
        assert_eq!(id, self.posted[ahead as usize], "id of chain {ahead} ahead");
        assert_eq!(segs, self.d.inflight[&id].segs, "segments of {id}");
    }

    /// The device consumes the next chain.
    fn take(&mut self) {
        if self.posted.is_empty() {
            assert_eq!(self.q.pending(&mut self.m).unwrap(), 0);
            return;
        }
        let (id, segs) = walk(&mut self.q, &mut self.m, 0).unwrap();
        assert_eq!(Some(&id), self.posted.front());
        assert_eq!(segs, self.d.inflight[&id].segs, "segments of {id}");
        assert_eq!(self.q.consume(&mut self.m).unwrap(), id);
        self.posted.pop_front();
        let room: u64 = segs.iter().filter(|s| s.write).map(|s| s.len as u64).sum();
        let written = if room == 0 {
            0
        } else {
            self.r.below(room + 1) as u32
        };
        self.held.push((id, written));
    }

    /// The device marks a random held buffer used (any order).
    fn complete(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let k = self.r.below(self.held.len() as u64) as usize;
        let (id, len) = self.held.swap_remove(k);
        let before = self.q.base() >> 16;
        self.q.put_used(&mut self.m, id, len).unwrap();
        let after = self.q.base() >> 16;
        let num = self.num() as u32;
        let lap = |v: u32| (v & 0x7fff) + if v & 0x8000 != 0 { 0 } else { num };
        let descs = self.d.inflight[&id].descs as u32;
        assert_eq!((lap(after) + 2 * num - lap(before)) % (2 * num), descs);
        for k in 0..descs {
            self.covered.push((lap(before) + k) % (2 * num));
        }
        if after & 0x8000 != before & 0x8000 {
            self.laps += 1;
        }
        self.completed.push_back((id, len));
        self.buffers += 1;
    }

    /// The device publishes and asks whether to interrupt; the driver
    /// reaps and sometimes changes its event suppression.
    fn publish(&mut self) {
        self.q.publish(&mut self.m).unwrap();
        self.m.fence();
        if self.event_idx {
            assert_eq!(self.m.get16(DEV_EV + 2), PACKED_EVENT_FLAG_DESC);
            assert_eq!(self.m.get16(DEV_EV), self.q.base() as u16, "kick event");
        }
        let flags = self.m.get16(DRV_EV + 2);
        let off_wrap = self.m.get16(DRV_EV);
        let num = self.num() as u32;
        let want = match flags {
            PACKED_EVENT_FLAG_ENABLE => !self.covered.is_empty(),
            PACKED_EVENT_FLAG_DISABLE => false,
            _ => {
                let e = (off_wrap & 0x7fff) as u32 + if off_wrap & 0x8000 != 0 { 0 } else { num };
                self.covered.contains(&e)
            }
        };
        let got = self.q.needs_interrupt(&mut self.m).unwrap();
        assert_eq!(
            got, want,
            "interrupt (flags {flags}, off_wrap {off_wrap:#x})"
        );
        self.interrupts += got as u64;
        self.covered.clear();
        if self.r.chance(70) {
            self.reap();
        }
        // Event suppression as Linux sets it: enabled, disabled, or (with
        // EVENT_IDX) at the next used slot or a few further.
        match self.r.below(4) {
            0 => self.d.set_event(&mut self.m, PACKED_EVENT_FLAG_ENABLE, 0),
            1 => self.d.set_event(&mut self.m, PACKED_EVENT_FLAG_DISABLE, 0),
            _ if self.event_idx => {
                let mut at = self.d.used_at as u32 + self.r.below(self.num() as u64) as u32;
                let mut wrap = self.d.used_wrap;
                if at >= num {
                    at -= num;
                    wrap = !wrap;
                }
                let ow = at as u16 | (wrap as u16) << 15;
                self.d.set_event(&mut self.m, PACKED_EVENT_FLAG_DESC, ow);
            }
            _ => {}
        }
    }

    fn reap(&mut self) {
        for (id, len) in self.d.used(&self.m) {
            assert_eq!(self.completed.pop_front(), Some((id, len)), "used order");
        }
    }

    /// Suspend and resume: GET_VRING_BASE, a new queue, SET_VRING_BASE.
    fn rebase(&mut self) {
        if !self.held.is_empty() {
            return;
        }
        // What a run ends with: publish, and the interrupt check.
        self.publish();
        let base = self.q.base();
        assert_eq!(base & 0x7fff, self.d_consumed_pos() as u32);
        let mut q = queue(self.num(), self.event_idx, self.indirect);
        q.set_base(base).unwrap();
        assert_eq!(q.base(), base);
        assert_eq!(q.in_flight(), 0);
        self.q = q;
        self.rebases += 1;
    }

    /// Slot after the chains the device consumed (from the driver's view).
    fn d_consumed_pos(&self) -> u16 {
        let pending: u16 = self.posted.iter().map(|id| self.d.inflight[id].descs).sum();
        let n = self.d.next as u32 + self.num() as u32 - pending as u32;
        (n % self.num() as u32) as u16
    }

    fn run(&mut self, steps: usize) {
        for _ in 0..steps {
            match self.r.below(12) {
                0..=3 => self.post(),
                4 => self.peek(),
                5..=6 => self.take(),
                7..=8 => self.complete(),
                9..=10 => self.publish(),
                _ => self.rebase(),
            }
        }
        // Drain: everything posted comes back exactly once.
        while !self.posted.is_empty() {
            self.take();
        }
        while !self.held.is_empty() {
            self.complete();
        }
        self.q.publish(&mut self.m).unwrap();
        self.reap();
        assert!(self.completed.is_empty(), "lost: {:?}", self.completed);
        assert!(
            self.d.inflight.is_empty(),
            "not returned: {:?}",
            self.d.inflight
        );
        assert_eq!(self.d.free_slots, self.num());
        assert_eq!(self.q.in_flight(), 0);
        assert_eq!(self.q.base() & 0xffff, self.q.base() >> 16);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Random well-formed traffic (chains of 1 to 6 descriptors, indirect
    /// tables of up to 40, buffers completed in any order, event
    /// suppression changing, suspend/resume through the vring base) on
    /// small and large rings: every buffer comes back exactly once, with
    /// its segments walked as posted and its length as written.
    #[test]
    fn random_traffic_round_trips(
        num in prop_oneof![Just(1u16), Just(2), Just(3), Just(4), Just(8), Just(17), Just(256)],
        seed in any::<u64>(),
        event_idx in any::<bool>(),
        indirect in any::<bool>(),
    ) {
        let mut t = RoundTrip::new(num, seed, event_idx, indirect);
        t.run(1500);
        prop_assert!(t.buffers > 0);
    }
}

/// Small rings wrap around many times, with rebases among them.
#[test]
fn small_rings_wrap_many_times() {
    for num in [4u16, 8] {
        for seed in 1..20u64 {
            let mut t = RoundTrip::new(num, seed * 7919, seed % 2 == 0, seed % 3 != 0);
            t.run(3000);
            assert!(t.laps >= 20, "num {num}: {} laps", t.laps);
            assert!(t.rebases >= 10, "num {num}: {} rebases", t.rebases);
            assert!(t.interrupts > 0);
        }
    }
}

/// The largest ring (32768: indexes use all 15 bits).
#[test]
fn largest_ring_round_trips() {
    let mut t = RoundTrip::new(MAX_PACKED_NUM, 12345, true, true);
    t.run(4000);
    assert!(t.buffers > 500);
}

/// A fresh queue, a driver, and its memory.
fn fresh(num: u16, event_idx: bool, indirect: bool) -> (Mem, Driver, Q) {
    (
        Mem::new(),
        Driver::new(num),
        queue(num, event_idx, indirect),
    )
}

fn seg(addr: u64, len: u32, write: bool) -> Segment {
    Segment { addr, len, write }
}

/// Takes and walks every available chain; the first error.
fn drain(q: &mut Q, m: &mut Mem) -> Result<usize, RingError> {
    let mut n = 0;
    while q.pending(m)? > 0 {
        let (id, _) = walk(q, m, 0)?;
        assert_eq!(q.consume(m)?, id);
        q.put_used(m, id, 0)?;
        n += 1;
        assert!(n <= 100_000, "does not end");
    }
    q.publish(m)?;
    Ok(n)
}

#[test]
fn vring_base_encoding() {
    let (mut m, mut d, mut q) = fresh(8, false, false);
    assert_eq!(q.base(), PACKED_BASE_INIT);
    assert_eq!(PACKED_BASE_INIT, 0x8000_8000);
    // 11 one-descriptor buffers: avail and used at slot 3 of lap 2.
    for i in 0..11 {
        d.add(&mut m, &[seg(0x1000, 10, false)], false).unwrap();
        assert_eq!(drain(&mut q, &mut m), Ok(1), "buffer {i}");
        d.used(&m);
    }
    assert_eq!(q.base(), 3 | 3 << 16);
    // Three in flight: avail ahead of used by 3.
    for _ in 0..3 {
        d.add(&mut m, &[seg(0x1000, 10, false)], false).unwrap();
        walk(&mut q, &mut m, 0).unwrap();
        q.consume(&mut m).unwrap();
    }
    assert_eq!(q.base(), 6 | 3 << 16);
    assert_eq!(q.in_flight(), 3);
    // Set: the distance is what stays in flight.
    let mut q2 = queue(8, false, false);
    q2.set_base(q.base()).unwrap();
    assert_eq!(q2.in_flight(), 3);
    // Avail at slot 1 of lap 2, used at slot 7 of lap 1: 2 apart.
    q2.set_base(1 | (7 | 0x8000) << 16).unwrap();
    assert_eq!(q2.in_flight(), 2);
}

#[test]
fn bad_vring_bases_are_refused_and_change_nothing() {
    let mut q = queue(8, false, false);
    q.set_base(5 | 2 << 16).unwrap();
    assert_eq!(q.in_flight(), 3);
    for bad in [
        8u32,                     // avail index beyond the ring
        0x7fff,                   // likewise
        5 | 8 << 16,              // used index beyond the ring
        2 | 0x8000 | 1 << 16,     // used 9 behind avail (2 laps apart)
        0x8000 | 0x8000_0000 | 9, // beyond, with wrap bits
    ] {
        assert!(q.set_base(bad).is_err(), "{bad:#x}");
        assert_eq!(q.base(), 5 | 2 << 16);
    }
    let mut q0: Q = PackedQueue::default();
    assert!(!q0.ready);
    assert_eq!(q0.set_base(PACKED_BASE_INIT), Err(RingError::BadIndex));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Any 32-bit base (indexes near the ring size, with any wrap bits,
    /// or anything): accepted only when valid (and then read back as
    /// set), refused without a change otherwise.
    #[test]
    fn any_vring_base(
        near in (0u32..80, any::<bool>(), 0u32..80, any::<bool>()),
        raw in any::<u32>(),
        use_raw in any::<bool>(),
        num in 1u16..=64,
    ) {
        let (a, aw, u, uw) = near;
        let base = if use_raw {
            raw
        } else {
            a | (aw as u32) << 15 | (u | (uw as u32) << 15) << 16
        };
        let mut q = queue(num, false, false);
        let r = q.set_base(base);
        let n = num as u32;
        let idx_ok = base & 0x7fff < n && (base >> 16) & 0x7fff < n;
        let lap = |v: u32| (v & 0x7fff) + if v & 0x8000 != 0 { 0 } else { n };
        let valid = idx_ok && (lap(base) + 2 * n - lap(base >> 16)) % (2 * n) <= n;
        prop_assert_eq!(r.is_ok(), valid);
        if valid {
            prop_assert_eq!(q.base(), base);
        } else {
            prop_assert_eq!(q.base(), PACKED_BASE_INIT);
        }
    }
}

/// Mid-traffic suspend with buffers posted and not consumed: nothing is
/// lost, nothing is taken twice.
#[test]
fn rebase_with_buffers_pending() {
    let (mut m, mut d, mut q) = fresh(8, true, true);
    let mut ids = Vec::new();
    for i in 0..5u64 {
        ids.push(
            d.add(
                &mut m,
                &[seg(0x1000 * i, 100, false), seg(0x9000, 50, true)],
                i % 2 == 1,
            )
            .unwrap(),
        );
    }
    // Two taken and used, three counted (located) but not taken.
    for _ in 0..2 {
        let (id, _) = walk(&mut q, &mut m, 0).unwrap();
        q.consume(&mut m).unwrap();
        q.put_used(&mut m, id, 7).unwrap();
    }
    assert_eq!(q.pending(&mut m).unwrap(), 3);
    q.publish(&mut m).unwrap();
    let base = q.base();
    let mut q = queue(8, true, true);
    q.set_base(base).unwrap();
    assert_eq!(d.used(&m), vec![(ids[0], 7), (ids[1], 7)]);
    for &want in &ids[2..] {
        let (id, segs) = walk(&mut q, &mut m, 0).unwrap();
        assert_eq!(id, want);
        assert_eq!(segs, d.inflight[&id].segs);
        q.consume(&mut m).unwrap();
        q.put_used(&mut m, id, 1).unwrap();
    }
    q.publish(&mut m).unwrap();
    assert_eq!(d.used(&m).len(), 3);
    assert!(d.inflight.is_empty());
}

/// A descriptor's flags are read first (one 2-byte load), then a read
/// barrier, then the rest; used descriptors are written id/len first, then
/// a write barrier, then flags; the device event offset before its flags.
#[test]
fn flags_first_then_barrier() {
    let (mut m, mut d, mut q) = fresh(16, true, true);
    let mut heads = Vec::new();
    for i in 0..6u64 {
        let segs = [
            seg(0x1000, 10, false),
            seg(0x2000, 20, true),
            seg(0x3000, 30, true),
        ];
        let n = 1 + (i as usize % 3);
        let id = d.add(&mut m, &segs[..n], i == 4).unwrap();
        heads.push(RING + 16 * d.inflight[&id].head as u64);
    }
    m.log = Some(Vec::new());
    assert_eq!(drain(&mut q, &mut m), Ok(6));
    let log = m.log.take().unwrap();
    for &h in &heads {
        let touches = |a: &Access, lo: u64, hi: u64| match *a {
            Access::Read16(x) => x < hi && x + 2 > lo,
            Access::Read(x, n) => x < hi && x + n as u64 > lo,
            _ => false,
        };
        let first = log.iter().position(|a| touches(a, h, h + 16)).unwrap();
        assert_eq!(
            log[first],
            Access::Read16(h + 14),
            "head {h:#x}: flags first"
        );
        let rest = log.iter().position(|a| touches(a, h, h + 14)).unwrap();
        assert!(
            log[first..rest]
                .iter()
                .any(|a| matches!(a, Access::ReadFence | Access::Fence)),
            "head {h:#x}: no read barrier between flags and the rest"
        );
    }
    // Used side: each flags store follows a write barrier that follows the
    // id/len store of that descriptor.
    for (k, a) in log.iter().enumerate() {
        if let Access::Write16(at, _) = *a {
            if at == DEV_EV + 2 {
                let off = log[..k]
                    .iter()
                    .rposition(|x| *x == Access::Write16(DEV_EV, m.get16(DEV_EV)));
                let off = off.expect("device event offset before its flags");
                assert!(log[off..k].contains(&Access::WriteFence));
                continue;
            }
            if at == DEV_EV {
                continue;
            }
            let desc = at - 14;
            let data = log[..k]
                .iter()
                .rposition(|x| *x == Access::Write(desc + 8, 6))
                .expect("id/len before flags");
            assert!(
                log[data..k].contains(&Access::WriteFence),
                "write barrier at {desc:#x}"
            );
        }
    }
}

/// Used descriptors go where the completed chains began, each advancing
/// the used side by its chain's ring slots, whatever the completion order.
#[test]
fn out_of_order_completion_skips_by_chain_length() {
    let (mut m, mut d, mut q) = fresh(8, false, false);
    let a = d
        .add(
            &mut m,
            &[seg(1, 1, false), seg(2, 2, false), seg(3, 3, false)],
            false,
        )
        .unwrap();
    let b = d.add(&mut m, &[seg(4, 4, false)], false).unwrap();
    let c = d
        .add(&mut m, &[seg(5, 5, true), seg(6, 6, true)], false)
        .unwrap();
    for _ in 0..3 {
        walk(&mut q, &mut m, 0).unwrap();
        q.consume(&mut m).unwrap();
    }
    assert_eq!(q.in_flight(), 6);
    q.put_used(&mut m, c, 11).unwrap();
    q.put_used(&mut m, b, 0).unwrap();
    q.put_used(&mut m, a, 0).unwrap();
    q.publish(&mut m).unwrap();
    // c at slot 0 (2 slots), b at slot 2 (1), a at slot 3 (3).
    assert_eq!(m.get16(RING + 12), c);
    assert_eq!(m.get16(RING + 2 * 16 + 12), b);
    assert_eq!(m.get16(RING + 3 * 16 + 12), a);
    assert_eq!(q.base() >> 16, 6 | 0x8000);
    assert_eq!(d.used(&m), vec![(c, 11), (b, 0), (a, 0)]);
    // Completing one twice, or one never taken, is an error.
    assert_eq!(q.put_used(&mut m, a, 0), Err(RingError::BadId));
    assert_eq!(q.put_used(&mut m, 7, 0), Err(RingError::BadId));
    assert_eq!(q.put_used(&mut m, 9999, 0), Err(RingError::BadId));
}

/// Kicks: `arm_kick` asks for one past what `pending` counted;
/// `set_kicks` disables and enables them.
#[test]
fn device_event_area() {
    let (mut m, mut d, mut q) = fresh(8, true, false);
    d.add(&mut m, &[seg(1, 1, false)], false).unwrap();
    d.add(&mut m, &[seg(1, 1, false), seg(2, 2, false)], false)
        .unwrap();
    assert_eq!(q.pending(&mut m).unwrap(), 2);
    q.arm_kick(&mut m).unwrap();
    assert_eq!(m.get16(DEV_EV), 3 | 0x8000);
    assert_eq!(m.get16(DEV_EV + 2), PACKED_EVENT_FLAG_DESC);
    q.set_kicks(&mut m, false).unwrap();
    assert_eq!(m.get16(DEV_EV + 2), PACKED_EVENT_FLAG_DISABLE);
    q.set_kicks(&mut m, true).unwrap();
    assert_eq!(m.get16(DEV_EV + 2), PACKED_EVENT_FLAG_DESC);
    let mut q = queue(8, false, false);
    q.set_kicks(&mut m, false).unwrap();
    assert_eq!(m.get16(DEV_EV + 2), PACKED_EVENT_FLAG_DISABLE);
    q.set_kicks(&mut m, true).unwrap();
    assert_eq!(m.get16(DEV_EV + 2), PACKED_EVENT_FLAG_ENABLE);
    // Without EVENT_IDX, publish and arm_kick leave the area alone.
    m.put16(DEV_EV + 2, 0x5555);
    q.arm_kick(&mut m).unwrap();
    q.publish(&mut m).unwrap();
    assert_eq!(m.get16(DEV_EV + 2), 0x5555);
}

// Hostile rings: each ends in a ring error.

#[test]
fn head_with_both_bits_of_this_lap_is_an_error() {
    let (mut m, _d, mut q) = fresh(8, false, false);
    write_desc(
        &mut m,
        RING,
        0x1000,
        10,
        0,
        PACKED_DESC_F_AVAIL | PACKED_DESC_F_USED,
    );
    assert_eq!(q.pending(&mut m), Err(RingError::BadAvailIdx));
    // Both bits of the last lap (0): not available, not an error.
    let (mut m, _d, mut q) = fresh(8, false, false);
    write_desc(&mut m, RING, 0x1000, 10, 0, 0);
    assert_eq!(q.pending(&mut m), Ok(0));
    // Available for the last lap: not available.
    write_desc(&mut m, RING, 0x1000, 10, 0, PACKED_DESC_F_USED);
    assert_eq!(q.pending(&mut m), Ok(0));
}

#[test]
fn bad_wrap_counter_after_a_lap() {
    let (mut m, mut d, mut q) = fresh(4, false, false);
    for _ in 0..4 {
        d.add(&mut m, &[seg(1, 1, false)], false).unwrap();
    }
    assert_eq!(drain(&mut q, &mut m), Ok(4));
    d.used(&m);
    // The driver posts with its old wrap counter (lap 1's bits again).
    write_desc(&mut m, RING, 1, 1, 0, PACKED_DESC_F_AVAIL);
    assert_eq!(q.pending(&mut m), Ok(0), "old lap: not available");
    // Both bits set to the device's current lap value (0): error.
    let (mut m, mut d, mut q) = fresh(4, false, false);
    for _ in 0..4 {
        d.add(&mut m, &[seg(1, 1, false)], false).unwrap();
    }
    assert_eq!(drain(&mut q, &mut m), Ok(4));
    // Slot 0 now holds a used descriptor of lap 1 (both bits 1); for
    // lap 0, "both bits 0" would claim a used descriptor of this lap.
    write_desc(&mut m, RING, 1, 1, 0, 0);
    assert_eq!(q.pending(&mut m), Err(RingError::BadAvailIdx));
}

#[test]
fn buffer_id_available_twice_is_an_error() {
    let (mut m, mut d, mut q) = fresh(8, false, false);
    let id = d.add(&mut m, &[seg(1, 1, false)], false).unwrap();
    walk(&mut q, &mut m, 0).unwrap();
    q.consume(&mut m).unwrap();
    // The driver posts another chain with the same id, still in flight.
    let at = RING + 16;
    write_desc(&mut m, at, 2, 2, id, PACKED_DESC_F_AVAIL);
    assert_eq!(q.pending(&mut m), Ok(1));
    assert_eq!(q.consume(&mut m), Err(RingError::BadId));
}

#[test]
fn slot_in_flight_made_available_again_is_an_error() {
    let (mut m, mut d, mut q) = fresh(4, false, false);
    for _ in 0..4 {
        d.add(&mut m, &[seg(1, 1, false)], false).unwrap();
    }
    for _ in 0..4 {
        walk(&mut q, &mut m, 0).unwrap();
        q.consume(&mut m).unwrap();
    }
    assert_eq!(q.in_flight(), 4);
    assert_eq!(q.pending(&mut m), Ok(0), "full ring, nothing new");
    // The driver reposts slot 0 (in flight) for lap 2.
    write_desc(&mut m, RING, 1, 1, 0, PACKED_DESC_F_USED);
    assert_eq!(q.pending(&mut m), Err(RingError::BadAvailIdx));
}

#[test]
fn chain_into_slots_in_flight_is_an_error() {
    let (mut m, mut d, mut q) = fresh(4, false, false);
    for _ in 0..2 {
        d.add(&mut m, &[seg(1, 1, false)], false).unwrap();
        walk(&mut q, &mut m, 0).unwrap();
        q.consume(&mut m).unwrap();
    }
    // Slots 2 and 3 free; a chain of 3 from slot 2 would reach slot 0.
    write_desc(
        &mut m,
        RING + 3 * 16,
        1,
        1,
        0,
        PACKED_DESC_F_AVAIL | PACKED_DESC_F_NEXT,
    );
    write_desc(&mut m, RING, 1, 1, 3, PACKED_DESC_F_USED);
    write_desc(
        &mut m,
        RING + 2 * 16,
        1,
        1,
        0,
        PACKED_DESC_F_AVAIL | PACKED_DESC_F_NEXT,
    );
    assert_eq!(q.pending(&mut m), Err(RingError::Loop));
}

#[test]
fn chain_without_an_end_is_an_error() {
    for num in [1u16, 4, 256, MAX_PACKED_NUM] {
        let (mut m, _d, mut q) = fresh(num, false, false);
        for i in 0..num as u64 {
            write_desc(
                &mut m,
                RING + 16 * i,
                1,
                1,
                0,
                PACKED_DESC_F_AVAIL | PACKED_DESC_F_NEXT,
            );
        }
        assert_eq!(q.pending(&mut m), Err(RingError::Loop), "num {num}");
        assert!(m.accesses <= num as u64 + 2, "{} accesses", m.accesses);
    }
}

#[test]
fn id_out_of_range_is_an_error() {
    for (num, id) in [(8u16, 8u16), (8, 0xffff), (256, 256), (1, 1)] {
        let (mut m, _d, mut q) = fresh(num, false, false);
        write_desc(&mut m, RING, 1, 1, id, PACKED_DESC_F_AVAIL);
        assert_eq!(
            q.pending(&mut m),
            Err(RingError::BadId),
            "num {num} id {id}"
        );
    }
    // An id table shorter than the ring: ids beyond it are errors too.
    let mut m = Mem::new();
    let mut q = PackedQueue::new(8, RING, DRV_EV, DEV_EV, [0u16; 4]);
    write_desc(&mut m, RING, 1, 1, 5, PACKED_DESC_F_AVAIL);
    assert_eq!(q.consume(&mut m), Err(RingError::BadId));
}

/// The ring's only descriptor: an indirect table of `len` bytes at
/// `table`, holding `entries`.
fn indirect_ring(table: u64, len: u32, entries: &[(u64, u32, u16)]) -> (Mem, Q) {
    let (mut m, _d, q) = fresh(8, false, true);
    for (k, &(a, l, f)) in entries.iter().enumerate() {
        write_desc(&mut m, TABLES + 16 * k as u64, a, l, 0, f);
    }
    write_desc(
        &mut m,
        RING,
        table,
        len,
        0,
        PACKED_DESC_F_AVAIL | PACKED_DESC_F_INDIRECT,
    );
    (m, q)
}

#[test]
fn indirect_errors() {
    let ok = [(0x1000u64, 10u32, 0u16), (0x2000, 20, PACKED_DESC_F_WRITE)];
    // Well-formed, for reference.
    let (mut m, mut q) = indirect_ring(TABLES, 32, &ok);
    let (_, segs) = walk(&mut q, &mut m, 0).unwrap();
    assert_eq!(segs, vec![seg(0x1000, 10, false), seg(0x2000, 20, true)]);
    // An indirect descriptor inside the table.
    let nested = [
        (0x1000u64, 10u32, 0u16),
        (TABLES, 16, PACKED_DESC_F_INDIRECT),
    ];
    let (mut m, mut q) = indirect_ring(TABLES, 32, &nested);
    assert_eq!(walk(&mut q, &mut m, 0), Err(RingError::BadIndirect));
    // Zero, not a multiple of 16, too large.
    for len in [0u32, 8, 17, 31, 16 * (MAX_INDIRECT + 1), 0xffff_fff0] {
        let (mut m, mut q) = indirect_ring(TABLES, len, &ok);
        assert_eq!(
            walk(&mut q, &mut m, 0),
            Err(RingError::BadIndirect),
            "len {len}"
        );
    }
    // Without the feature.
    let (mut m, mut q) = indirect_ring(TABLES, 32, &ok);
    q.indirect = false;
    assert_eq!(walk(&mut q, &mut m, 0), Err(RingError::BadIndirect));
    // With NEXT (indirect and chained).
    let (mut m, mut q) = indirect_ring(TABLES, 32, &ok);
    m.put16(
        RING + 14,
        PACKED_DESC_F_AVAIL | PACKED_DESC_F_INDIRECT | PACKED_DESC_F_NEXT,
    );
    write_desc(&mut m, RING + 16, 1, 1, 0, PACKED_DESC_F_AVAIL);
    assert_eq!(walk(&mut q, &mut m, 0), Err(RingError::BadIndirect));
    // A table that ends beyond 2^64, or outside memory.
    let (mut m, mut q) = indirect_ring(u64::MAX - 15, 32, &ok);
    assert_eq!(walk(&mut q, &mut m, 0), Err(RingError::Overflow));
    let (mut m, mut q) = indirect_ring(0x10, 32, &ok);
    assert_eq!(walk(&mut q, &mut m, 0), Err(RingError::Fault));
    // The largest table is fine, and its walk is bounded.
    let big: Vec<_> = (0..MAX_INDIRECT).map(|k| (k as u64, 1u32, 0u16)).collect();
    let (mut m, mut q) = indirect_ring(TABLES, 16 * MAX_INDIRECT, &big);
    let (_, segs) = walk(&mut q, &mut m, 0).unwrap();
    assert_eq!(segs.len(), MAX_INDIRECT as usize);
}

#[test]
fn length_overflows_are_errors() {
    // A buffer that ends beyond 2^64.
    let (mut m, _d, mut q) = fresh(8, false, false);
    write_desc(&mut m, RING, u64::MAX - 4, 10, 0, PACKED_DESC_F_AVAIL);
    assert_eq!(walk(&mut q, &mut m, 0), Err(RingError::Overflow));
    // Ending exactly at 2^64 - 1 is fine (the walker reads no data).
    let (mut m, _d, mut q) = fresh(8, false, false);
    write_desc(&mut m, RING, u64::MAX - 10, 10, 0, PACKED_DESC_F_AVAIL);
    assert!(walk(&mut q, &mut m, 0).is_ok());
    // A chain of 2^32 bytes or more (the used length is 32-bit).
    let (mut m, mut d, mut q) = fresh(8, false, false);
    d.add(&mut m, &[seg(0, u32::MAX, true), seg(0, 1, true)], false)
        .unwrap();
    assert_eq!(walk(&mut q, &mut m, 0), Err(RingError::Overflow));
    let (mut m, mut d, mut q) = fresh(8, false, true);
    d.add(&mut m, &[seg(0, u32::MAX - 1, true), seg(0, 1, true)], true)
        .unwrap();
    assert!(walk(&mut q, &mut m, 0).is_ok());
}

#[test]
fn readable_after_writable_is_an_error() {
    for indirect in [false, true] {
        let (mut m, mut d, mut q) = fresh(8, false, true);
        d.add(&mut m, &[seg(1, 1, true), seg(2, 2, false)], indirect)
            .unwrap();
        assert_eq!(walk(&mut q, &mut m, 0), Err(RingError::BadDirection));
    }
}

#[test]
fn empty_chains_are_errors() {
    let n = MAX_EMPTY_DESCS as usize;
    for indirect in [false, true] {
        let (mut m, mut d, mut q) = fresh(64, false, true);
        d.add(&mut m, &vec![seg(1, 0, false); n], indirect).unwrap();
        assert_eq!(walk(&mut q, &mut m, 0), Err(RingError::EmptyChain));
        let (mut m, mut d, mut q) = fresh(64, false, true);
        let mut segs = vec![seg(1, 0, false); n - 1];
        segs.push(seg(1, 1, false));
        d.add(&mut m, &segs, indirect).unwrap();
        assert!(walk(&mut q, &mut m, 0).is_ok());
    }
}

#[test]
fn chain_changed_after_it_was_found_is_an_error() {
    let (mut m, mut d, mut q) = fresh(8, false, false);
    d.add(&mut m, &[seg(1, 1, false), seg(2, 2, false)], false)
        .unwrap();
    assert_eq!(q.pending(&mut m), Ok(1));
    // The driver drops NEXT from the head after the device counted it.
    m.put16(RING + 14, PACKED_DESC_F_AVAIL);
    assert_eq!(walk(&mut q, &mut m, 0), Err(RingError::BadAvailIdx));
}

#[test]
fn event_suppression_garbage_is_an_error() {
    for (event_idx, flags, off_wrap, want) in [
        (true, 3u16, 0u16, Err(RingError::BadEvent)),
        (true, 0xffff, 0, Err(RingError::BadEvent)),
        (
            false,
            PACKED_EVENT_FLAG_DESC,
            0x8000,
            Err(RingError::BadEvent),
        ),
        (true, PACKED_EVENT_FLAG_DESC, 8, Err(RingError::BadEvent)),
        (
            true,
            PACKED_EVENT_FLAG_DESC,
            0x8000 | 0x7fff,
            Err(RingError::BadEvent),
        ),
        (true, PACKED_EVENT_FLAG_DESC, 0x8000, Ok(true)),
        (true, PACKED_EVENT_FLAG_DESC, 0x8001, Ok(false)),
        (true, PACKED_EVENT_FLAG_DESC, 0x0000, Ok(false)),
        (false, PACKED_EVENT_FLAG_DISABLE, 0xffff, Ok(false)),
        (false, PACKED_EVENT_FLAG_ENABLE, 0xffff, Ok(true)),
    ] {
        let (mut m, mut d, mut q) = fresh(8, event_idx, false);
        d.set_event(&mut m, flags, off_wrap);
        d.add(&mut m, &[seg(1, 1, false)], false).unwrap();
        assert_eq!(drain(&mut q, &mut m), Ok(1));
        assert_eq!(
            q.needs_interrupt(&mut m),
            want,
            "flags {flags:#x} off_wrap {off_wrap:#x}"
        );
        if want.is_err() {
            continue;
        }
        // Nothing new since: no interrupt, and the area is not read.
        let before = m.accesses;
        assert_eq!(q.needs_interrupt(&mut m), Ok(false));
        assert_eq!(m.accesses, before);
    }
}

#[test]
fn chain_beyond_the_window_or_not_available_is_an_error() {
    let (mut m, mut d, mut q) = fresh(64, false, false);
    for _ in 0..40 {
        d.add(&mut m, &[seg(1, 1, false)], false).unwrap();
    }
    assert_eq!(q.pending(&mut m), Ok(MAX_AHEAD as u16));
    assert!(q.chain(&mut m, MAX_AHEAD as u16 - 1).is_ok());
    assert_eq!(
        q.chain(&mut m, MAX_AHEAD as u16).err(),
        Some(RingError::BadIndex)
    );
    let (mut m, _d, mut q) = fresh(8, false, false);
    assert_eq!(q.chain(&mut m, 0).err(), Some(RingError::BadAvailIdx));
    assert_eq!(q.consume(&mut m), Err(RingError::BadAvailIdx));
}

#[test]
fn rings_outside_memory_fault() {
    let mut m = Mem::new();
    for desc in [0u64, u64::MAX - 8, BASE + MEM as u64 - 8] {
        let mut q = PackedQueue::new(8, desc, u64::MAX, u64::MAX - 1, vec![0u16; 8]);
        q.event_idx = true;
        assert_eq!(q.pending(&mut m), Err(RingError::Fault));
        assert!(q.arm_kick(&mut m).is_err());
    }
}

/// Runs a device on whatever the ring holds, as the loopback would: counts,
/// peeks, walks, consumes, completes in a scrambled order, publishes,
/// checks for interrupts and kicks. Ends at the first error; asserts that
/// every step is bounded.
fn hostile_device(m: &mut Mem, q: &mut Q, r: &mut Rng) -> Result<(), RingError> {
    let mut held = Vec::new();
    for _ in 0..64 {
        let p = q.pending(m)?;
        assert!(p as usize <= MAX_AHEAD);
        if p > 0 {
            let ahead = r.below(p as u64 + 1) as u16;
            let before = m.accesses;
            let (id, mut w) = q.chain(m, ahead)?;
            assert!(id < q.num);
            let mut steps = 0u32;
            while w.next(q, m)?.is_some() {
                steps += 1;
                assert!(steps <= q.num as u32 + MAX_INDIRECT);
            }
            assert!(m.accesses - before <= 2 * (q.num as u64 + MAX_INDIRECT as u64) + 8);
            let id = q.consume(m)?;
            held.push(id);
        }
        if !held.is_empty() && r.chance(60) {
            let k = r.below(held.len() as u64) as usize;
            q.put_used(m, held.swap_remove(k), r.next() as u32)?;
        }
        if r.chance(30) {
            q.publish(m)?;
            q.needs_interrupt(m)?;
            if r.chance(50) {
                q.arm_kick(m)?;
            }
        }
        if p == 0 && held.is_empty() {
            break;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Garbage rings, event areas and indirect tables, with any vring
    /// base: errors or work, never a panic, a hang or unbounded work.
    #[test]
    fn hostile_rings_terminate(
        ring in proptest::collection::vec(any::<u8>(), 16 * 16),
        table in proptest::collection::vec(any::<u8>(), 16 * 8),
        events in any::<[u8; 8]>(),
        num in 1u16..=16,
        base in any::<u32>(),
        seed in any::<u64>(),
        event_idx in any::<bool>(),
        indirect in any::<bool>(),
    ) {
        let mut m = Mem::new();
        m.put(RING, &ring);
        m.put(TABLES, &table);
        m.put(DRV_EV, &events);
        let mut q = queue(num, event_idx, indirect);
        let _ = q.set_base(base);
        let mut r = Rng(seed | 1);
        let _ = hostile_device(&mut m, &mut q, &mut r);
    }

    /// A well-formed ring with a few bytes flipped (in the descriptors,
    /// the tables or the event area): errors or work, never a panic, a
    /// hang or unbounded work.
    #[test]
    fn mutated_rings_terminate(
        num in prop_oneof![Just(2u16), Just(4), Just(8), Just(16)],
        seed in any::<u64>(),
        flips in proptest::collection::vec((0usize..(16 * 16 + 8), any::<u8>()), 1..6),
        table_flips in proptest::collection::vec((0usize..(TABLE_SLOT as usize * 16), any::<u8>()), 0..4),
    ) {
        let mut t = RoundTrip::new(num, seed, true, true);
        t.run(100);
        for _ in 0..num {
            t.post();
        }
        let m = &mut t.m;
        for (at, x) in flips {
            let a = if at < 16 * 16 { RING + at as u64 } else { DRV_EV + (at - 16 * 16) as u64 };
            let mut b = m.get(a, 1);
            b[0] ^= x;
            m.put(a, &b);
        }
        for (at, x) in table_flips {
            let a = TABLES + at as u64;
            let mut b = m.get(a, 1);
            b[0] ^= x;
            m.put(a, &b);
        }
        let mut r = Rng((seed ^ 0x5555) | 1);
        let _ = hostile_device(&mut t.m, &mut t.q, &mut r);
    }
}
