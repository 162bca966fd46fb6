// SPDX-License-Identifier: GPL-2.0 OR MIT

//! The sample's loopback over packed rings (and what it shares with split
//! rings through the proto crate's `ring` interface): frames come back
//! intact whatever the ring size, chain shape and MRG_RXBUF; hostile packed
//! rings (bad wrap counters, a buffer id available twice, chains without
//! an end, indirect tables inside indirect tables, lengths that overflow)
//! end in a ring error, never a panic or a hang (the module then sets
//! DEVICE_NEEDS_RESET); several pairs are independent; and a queue's vring
//! base read after a run round-trips into a new queue that goes on
//! without losing or repeating a frame (what SUSPEND, GET_VRING_BASE and
//! SET_VRING_BASE do).

use proptest::prelude::*;
use std::collections::HashMap;
use vhost_mdev_proto_tests::packed::*;
use vhost_mdev_proto_tests::virtq::{
    Budget, Fault, GuestMemory, Loopback, QueueConfig, RingError, FRAME_BUF, NET_HDR_LEN,
};
use vhost_mdev_proto_tests::Ids;

const BASE: u64 = 0x10_0000;
const MEM: usize = 16 << 20;
/// Where pair `p`'s queue `q` (0 RX, 1 TX) has its rings: 256 KiB each.
const fn area(p: u64, q: u64) -> u64 {
    BASE + (2 * p + q) * 0x4_0000
}
/// Data buffers, above the ring areas.
const DATA: u64 = BASE + 0x40_0000;

struct Mem {
    bytes: Vec<u8>,
    accesses: u64,
    direct: bool,
}

impl Mem {
    fn new() -> Self {
        Self {
            bytes: vec![0; MEM],
            accesses: 0,
            direct: false,
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
}

impl GuestMemory for Mem {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
        self.accesses += 1;
        let r = self.range(addr, buf.len())?;
        buf.copy_from_slice(&self.bytes[r]);
        Ok(())
    }
    fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), Fault> {
        self.accesses += 1;
        let r = self.range(addr, buf.len())?;
        self.bytes[r].copy_from_slice(buf);
        Ok(())
    }
    fn read_u16(&mut self, addr: u64) -> Result<u16, Fault> {
        let mut b = [0u8; 2];
        self.read(addr, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }
    fn write_u16(&mut self, addr: u64, v: u16) -> Result<(), Fault> {
        self.write(addr, &v.to_le_bytes())
    }
    fn can_copy(&self) -> bool {
        self.direct
    }
    fn copy(&mut self, dst: u64, src: u64, len: usize) -> bool {
        self.accesses += 1;
        let (Ok(d), Ok(s)) = (self.range(dst, len), self.range(src, len)) else {
            return false;
        };
        if !self.direct {
            return false;
        }
        self.bytes.copy_within(s, d.start);
        true
    }
}

/// The driver's side of one packed ring at `at` (descriptors, then the
/// driver and device event areas, then one indirect table slot per id),
/// filled as Linux's virtio_ring does: a chain's descriptors in
/// consecutive slots, its id in the last one, the head's flags last.
struct Driver {
    num: u16,
    at: u64,
    next: u16,
    wrap: bool,
    used_at: u16,
    used_wrap: bool,
    free_slots: u16,
    free_ids: Vec<u16>,
    /// id -> ring slots of the chain.
    inflight: HashMap<u16, u16>,
}

fn avail_bits(wrap: bool) -> u16 {
    if wrap {
        PACKED_DESC_F_AVAIL
    } else {
        PACKED_DESC_F_USED
    }
}

impl Driver {
    fn new(num: u16, at: u64) -> Self {
        Self {
            num,
            at,
            next: 0,
            wrap: true,
            used_at: 0,
            used_wrap: true,
            free_slots: num,
            free_ids: (0..num).rev().collect(),
            inflight: HashMap::new(),
        }
    }
    fn desc(&self) -> u64 {
        self.at
    }
    fn driver_ev(&self) -> u64 {
        self.at + 16 * 0x1000
    }
    fn device_ev(&self) -> u64 {
        self.driver_ev() + 4
    }
    fn table(&self, id: u16) -> u64 {
        self.at + 0x2_0000 + 0x400 * id as u64
    }
    /// The device's queue over this ring (a fresh one: PACKED_BASE_INIT).
    fn queue(&self, event_idx: bool, indirect: bool) -> PackedQueue<Ids> {
        let mut q = PackedQueue::new(
            self.num,
            self.desc(),
            self.driver_ev(),
            self.device_ev(),
            Ids::new(self.num as usize),
        );
        q.event_idx = event_idx;
        q.indirect = indirect;
        q
    }
    fn slot(&self, i: u16) -> u64 {
        self.desc() + 16 * i as u64
    }
    fn write(m: &mut Mem, at: u64, addr: u64, len: u32, id: u16, flags: u16) {
        let mut b = Vec::new();
        b.extend_from_slice(&addr.to_le_bytes());
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(&id.to_le_bytes());
        b.extend_from_slice(&flags.to_le_bytes());
        m.put(at, &b);
    }
    fn step(&mut self) {
        self.next += 1;
        if self.next == self.num {
            self.next = 0;
            self.wrap = !self.wrap;
        }
    }
    /// Posts a chain of (addr, len, writable) buffers, through an indirect
    /// table or in ring slots; `None` when the ring or the ids are full.
    fn add(&mut self, m: &mut Mem, bufs: &[(u64, u32, bool)], indirect: bool) -> Option<u16> {
        let descs = if indirect { 1 } else { bufs.len() as u16 };
        if descs > self.free_slots {
            return None;
        }
        let id = self.free_ids.pop()?;
        let head = self.next;
        let head_flags;
        if indirect {
            let t = self.table(id);
            for (k, &(a, l, w)) in bufs.iter().enumerate() {
                let f = if w { PACKED_DESC_F_WRITE } else { 0 };
                Self::write(m, t + 16 * k as u64, a, l, 0, f);
            }
            head_flags = PACKED_DESC_F_INDIRECT | avail_bits(self.wrap);
            Self::write(m, self.slot(head), t, 16 * bufs.len() as u32, id, 0);
            self.step();
        } else {
            let mut hf = 0;
            for (k, &(a, l, w)) in bufs.iter().enumerate() {
                let last = k + 1 == bufs.len();
                let mut f = avail_bits(self.wrap);
                if w {
                    f |= PACKED_DESC_F_WRITE;
                }
                if !last {
                    f |= PACKED_DESC_F_NEXT;
                }
                let did = if last { id } else { 0xdddd };
                if k == 0 {
                    hf = f;
                    Self::write(m, self.slot(self.next), a, l, did, 0);
                } else {
                    Self::write(m, self.slot(self.next), a, l, did, f);
                }
                self.step();
            }
            head_flags = hf;
        }
        m.put16(self.slot(head) + 14, head_flags);
        self.free_slots -= descs;
        self.inflight.insert(id, descs);
        Some(id)
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
            let descs = self
                .inflight
                .remove(&id)
                .unwrap_or_else(|| panic!("used id {id} not in flight"));
            self.free_slots += descs;
            self.free_ids.push(id);
            let n = self.used_at as u32 + descs as u32;
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
}

fn frame(n: usize, seq: u8) -> Vec<u8> {
    let mut f = vec![0u8; NET_HDR_LEN];
    f.extend((0..n).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seq)));
    f
}

/// One pair: the driver's RX and TX rings and the device's loopback.
struct Pair {
    rx: Driver,
    tx: Driver,
    lb: Loopback,
    /// RX buffer of each RX id: its address.
    rx_buf: HashMap<u16, u64>,
    /// Frames sent and not yet seen in RX, in order.
    sent: std::collections::VecDeque<Vec<u8>>,
    tx_seq: u64,
}

const RX_BUF: u32 = 2048;

impl Pair {
    fn new(p: u64, num: u16, mrg: bool, event_idx: bool) -> Self {
        let rx = Driver::new(num, area(p, 0));
        let tx = Driver::new(num, area(p, 1));
        let lb = Loopback::new_packed(rx.queue(event_idx, true), tx.queue(event_idx, true), mrg);
        Self {
            rx,
            tx,
            lb,
            rx_buf: HashMap::new(),
            sent: Default::default(),
            tx_seq: 0,
        }
    }
    /// RX buffers of this pair: 2 KiB each, at an address per pair and id.
    fn post_rx(&mut self, m: &mut Mem, p: u64, n: usize) -> usize {
        let mut k = 0;
        while k < n {
            let id_guess = *self.rx.free_ids.last().unwrap_or(&0);
            let a = DATA + p * 0x20_0000 + id_guess as u64 * 0x1000;
            let Some(id) = self.rx.add(m, &[(a, RX_BUF, true)], false) else {
                break;
            };
            assert_eq!(id, id_guess);
            self.rx_buf.insert(id, a);
            k += 1;
        }
        k
    }
    /// Sends a frame of `len` data bytes in up to three pieces (or through
    /// an indirect table); false when the TX ring is full.
    fn send(&mut self, m: &mut Mem, p: u64, len: usize, pieces: usize, indirect: bool) -> bool {
        let f = frame(len, (self.tx_seq as u8) ^ (p as u8 * 31));
        let id_guess = *self.tx.free_ids.last().unwrap_or(&0);
        let a = DATA + 0x10_0000 + p * 0x20_0000 + id_guess as u64 * 0x1000;
        m.put(a, &f);
        let pieces = pieces.clamp(1, 3).min(f.len());
        let cut = f.len() / pieces;
        let mut bufs = Vec::new();
        for k in 0..pieces {
            let s = k * cut;
            let e = if k + 1 == pieces { f.len() } else { s + cut };
            bufs.push((a + s as u64, (e - s) as u32, false));
        }
        if self.tx.add(m, &bufs, indirect).is_none() {
            return false;
        }
        self.tx_seq += 1;
        self.sent.push_back(f);
        true
    }
    /// Checks what came back in RX: every frame intact and in order.
    fn check_rx(&mut self, m: &Mem) -> usize {
        let used = self.rx.used(m);
        let mut got = Vec::new();
        let mut frames = 0;
        for (id, len) in used {
            let a = self.rx_buf[&id];
            got.extend(m.get(a, len as usize));
            let nb = u16::from_le_bytes([got[10], got[11]]) as usize;
            // Without MRG_RXBUF every frame is one buffer (num_buffers 1).
            let _ = nb;
            let want = self.sent.pop_front().expect("a frame nobody sent");
            if got.len() < want.len() {
                self.sent.push_front(want);
                continue;
            }
            assert_eq!(got.len(), want.len(), "frame length");
            assert_eq!(&got[12..], &want[12..], "frame data");
            got.clear();
            frames += 1;
        }
        frames
    }
}

fn run(lb: &mut Loopback, m: &mut Mem) -> Result<u32, RingError> {
    let mut buf = vec![0u8; FRAME_BUF];
    let mut frames = 0;
    for _ in 0..1000 {
        let out = lb.process(m, &mut buf, 64)?;
        frames += out.frames;
        if !out.more {
            return Ok(frames);
        }
    }
    panic!("the loopback does not stop");
}

#[test]
fn packed_frames_loop_back_intact() {
    for direct in [false, true] {
        for indirect in [false, true] {
            let mut m = Mem::new();
            m.direct = direct;
            let mut p = Pair::new(0, 64, false, true);
            p.post_rx(&mut m, 0, 16);
            for i in 0..10 {
                assert!(p.send(&mut m, 0, 60 + 150 * i, 1 + i % 3, indirect));
            }
            assert_eq!(run(&mut p.lb, &mut m).unwrap(), 10);
            assert_eq!(p.check_rx(&m), 10);
            assert_eq!(p.tx.used(&m).len(), 10);
            assert_eq!(p.lb.stats.rx_packets, 10);
            assert_eq!(p.lb.stats.tx_packets, 10);
        }
    }
}

#[test]
fn packed_mergeable_rx_spans_buffers() {
    let mut m = Mem::new();
    let mut p = Pair::new(0, 64, true, false);
    p.post_rx(&mut m, 0, 8);
    assert!(p.send(&mut m, 0, 5000, 2, false));
    run(&mut p.lb, &mut m).unwrap();
    let used = p.rx.used(&m);
    assert_eq!(used.len(), 3, "{used:?}");
    let mut got = Vec::new();
    for (id, len) in &used {
        got.extend(m.get(p.rx_buf[id], *len as usize));
    }
    assert_eq!(u16::from_le_bytes([got[10], got[11]]), 3, "num_buffers");
    assert_eq!(&got[12..], &p.sent[0][12..]);
}

/// More TX chains than a packed queue counts at once (its window of 32):
/// one run takes them all up to its budget.
#[test]
fn packed_tx_beyond_the_window() {
    let mut m = Mem::new();
    let mut p = Pair::new(0, 256, false, true);
    p.post_rx(&mut m, 0, 200);
    for i in 0..100 {
        assert!(p.send(&mut m, 0, 64 + i, 1, false));
    }
    let mut buf = vec![0u8; FRAME_BUF];
    let out = p.lb.process(&mut m, &mut buf, Budget::frames(80)).unwrap();
    assert_eq!(out.frames, 80);
    assert!(out.more);
    let out = p.lb.process(&mut m, &mut buf, Budget::frames(80)).unwrap();
    assert_eq!(out.frames, 20);
    assert!(!out.more);
    assert_eq!(p.check_rx(&m), 100);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Any ring size, frame sizes and chain shapes, many laps: every frame
    /// comes back intact and in order.
    #[test]
    fn packed_rings_wrap_and_round_trip(
        num in prop_oneof![Just(2u16), Just(4), Just(8), Just(16), Just(64)],
        mrg in any::<bool>(),
        event_idx in any::<bool>(),
        frames in proptest::collection::vec((0usize..3000, 1usize..4, any::<bool>()), 1..120),
    ) {
        let mut m = Mem::new();
        let mut p = Pair::new(0, num, mrg, event_idx);
        let mut back = 0;
        let mut sent = 0;
        let mut dropped = 0u64;
        for (len, pieces, indirect) in frames {
            // Without MRG_RXBUF a frame over one RX buffer is dropped.
            let len = if mrg { len } else { len % (RX_BUF as usize - NET_HDR_LEN) };
            let pieces = pieces.min(num as usize);
            p.post_rx(&mut m, 0, num as usize);
            if !p.send(&mut m, 0, len, pieces, indirect) {
                run(&mut p.lb, &mut m).unwrap();
                back += p.check_rx(&m);
                p.tx.used(&m);
                p.post_rx(&mut m, 0, num as usize);
                prop_assert!(p.send(&mut m, 0, len, pieces, indirect));
            }
            sent += 1;
            run(&mut p.lb, &mut m).unwrap();
            back += p.check_rx(&m);
            p.tx.used(&m);
            // Frames too big for what a small ring holds are dropped.
            let d = p.lb.stats.drop_oversize;
            for _ in dropped..d {
                // The oldest frame not delivered was the one dropped.
                p.sent.pop_front();
            }
            dropped = d;
        }
        prop_assert_eq!(back as u64 + dropped, sent);
        prop_assert_eq!(p.lb.stats.tx_packets, sent);
        prop_assert!(p.sent.is_empty());
    }
}

// Hostile packed rings: each ends in an error (NEEDS_RESET in the module),
// and the instance is reusable after a reset.

/// A pair with RX buffers posted, ready for a hostile TX ring.
fn hostile_pair() -> (Mem, Pair) {
    let mut m = Mem::new();
    let mut p = Pair::new(0, 8, false, true);
    p.post_rx(&mut m, 0, 8);
    (m, p)
}

/// The loopback fails with `want`; after a reset and a new configuration
/// the same instance moves frames again.
fn fails_then_recovers(m: &mut Mem, p: &mut Pair, want: RingError) {
    let mut buf = vec![0u8; FRAME_BUF];
    assert_eq!(p.lb.process(m, &mut buf, 64), Err(want));
    let stats = p.lb.stats;
    p.lb.reset();
    assert_eq!(p.lb.stats, stats, "counters survive a reset");
    // The driver starts over, on fresh rings (a new configuration).
    let mut fresh = Mem::new();
    let rx = Driver::new(8, area(0, 0));
    let tx = Driver::new(8, area(0, 1));
    for (q, d) in [(&mut p.lb.rx, &rx), (&mut p.lb.tx, &tx)] {
        q.packed.ids = Ids::new(8);
        q.set_num(8);
        q.set_addr(d.desc(), d.driver_ev(), d.device_ev());
        assert!(q.set_features(true, true, true));
        q.set_ready(true);
    }
    p.rx = rx;
    p.tx = tx;
    p.sent.clear();
    p.post_rx(&mut fresh, 0, 4);
    assert!(p.send(&mut fresh, 0, 100, 2, false));
    assert_eq!(run(&mut p.lb, &mut fresh).unwrap(), 1);
    assert_eq!(p.check_rx(&fresh), 1);
}

#[test]
fn packed_bad_wrap_counter_is_an_error() {
    let (mut m, mut p) = hostile_pair();
    // A TX head with both bits of this lap: only the device writes that.
    Driver::write(
        &mut m,
        p.tx.slot(0),
        DATA,
        100,
        0,
        PACKED_DESC_F_AVAIL | PACKED_DESC_F_USED,
    );
    fails_then_recovers(&mut m, &mut p, RingError::BadAvailIdx);
}

#[test]
fn packed_id_available_twice_is_an_error() {
    let (mut m, mut p) = hostile_pair();
    assert!(p.send(&mut m, 0, 100, 1, false));
    // A second TX chain under the id of the first, both available.
    let first = *p.tx.inflight.keys().next().unwrap();
    p.tx.free_ids.push(first);
    let a = DATA + 0x30_0000;
    m.put(a, &frame(100, 1));
    p.tx.add(&mut m, &[(a, 112, false)], false).unwrap();
    fails_then_recovers(&mut m, &mut p, RingError::BadId);
}

#[test]
fn packed_chain_without_an_end_is_an_error() {
    let (mut m, mut p) = hostile_pair();
    // Every TX slot says NEXT, all available: no end before the slots the
    // device owns.
    for i in 0..8 {
        Driver::write(
            &mut m,
            p.tx.slot(i),
            DATA,
            16,
            0,
            PACKED_DESC_F_AVAIL | PACKED_DESC_F_NEXT,
        );
    }
    fails_then_recovers(&mut m, &mut p, RingError::Loop);
}

#[test]
fn packed_nested_indirect_is_an_error() {
    let (mut m, mut p) = hostile_pair();
    let t = p.tx.table(0);
    // The table's first entry points to another table.
    Driver::write(&mut m, t, t + 0x100, 32, 0, PACKED_DESC_F_INDIRECT);
    Driver::write(&mut m, t + 16, DATA, 100, 0, 0);
    Driver::write(
        &mut m,
        p.tx.slot(0),
        t,
        32,
        0,
        PACKED_DESC_F_INDIRECT | PACKED_DESC_F_AVAIL,
    );
    fails_then_recovers(&mut m, &mut p, RingError::BadIndirect);
}

#[test]
fn packed_overflowing_lengths_are_an_error() {
    // A buffer that ends beyond 2^64.
    let (mut m, mut p) = hostile_pair();
    Driver::write(
        &mut m,
        p.tx.slot(0),
        u64::MAX - 8,
        100,
        0,
        PACKED_DESC_F_AVAIL,
    );
    fails_then_recovers(&mut m, &mut p, RingError::Overflow);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Well-formed packed rings with traffic in flight, then bytes flipped
    /// in either ring, its event areas or the indirect tables: each run
    /// ends (in work or an error), within its descriptor budget, and never
    /// panics.
    #[test]
    fn mutated_packed_rings_terminate(
        num in prop_oneof![Just(4u16), Just(8), Just(16)],
        mrg in any::<bool>(),
        direct in any::<bool>(),
        flips in proptest::collection::vec((0usize..2, 0usize..(16 * 16 + 8 + 0x800), any::<u8>()), 1..8),
        sizes in proptest::collection::vec((0usize..3000, 1usize..4, any::<bool>()), 1..12),
    ) {
        let mut m = Mem::new();
        m.direct = direct;
        let mut p = Pair::new(0, num, mrg, true);
        // Some laps of traffic, then chains left available.
        for &(len, pieces, ind) in &sizes {
            p.post_rx(&mut m, 0, num as usize);
            if p.send(&mut m, 0, len, pieces.min(num as usize), ind) {
                run(&mut p.lb, &mut m).unwrap();
                p.check_rx(&m);
                p.tx.used(&m);
            }
        }
        p.post_rx(&mut m, 0, num as usize / 2);
        for &(len, pieces, ind) in &sizes {
            p.send(&mut m, 0, len, pieces.min(num as usize), ind);
        }
        for (q, at, x) in flips {
            let d = if q == 0 { &p.rx } else { &p.tx };
            let a = if at < 16 * 16 {
                d.desc() + at as u64
            } else if at < 16 * 16 + 8 {
                d.driver_ev() + (at - 16 * 16) as u64
            } else {
                d.table(0) + (at - 16 * 16 - 8) as u64
            };
            let mut b = m.get(a, 1);
            b[0] ^= x;
            m.put(a, &b);
        }
        let mut buf = vec![0u8; FRAME_BUF];
        let budget = Budget::frames(16);
        for _ in 0..64 {
            match p.lb.process(&mut m, &mut buf, budget) {
                Ok(out) => {
                    prop_assert!(out.descs <= budget.max_descs(num), "{out:?}");
                    if !out.more {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    }
}

/// Pairs are independent: a pair's run touches only its own rings and
/// buffers, TX i loops into RX i only, and a pair whose driver broke its
/// ring fails alone.
#[test]
fn pairs_are_independent() {
    for packed in [false, true] {
        let mut m = Mem::new();
        let mut pairs: Vec<Pair> = (0..3).map(|i| Pair::new(i, 16, false, true)).collect();
        if !packed {
            // The same pairs over split rings (the rings' areas as well).
            for (i, p) in pairs.iter_mut().enumerate() {
                p.lb = split_loopback(i as u64);
            }
        }
        let n = if packed {
            for (i, p) in pairs.iter_mut().enumerate() {
                p.post_rx(&mut m, i as u64, 8);
                for k in 0..(i + 2) {
                    assert!(p.send(&mut m, i as u64, 100 + 10 * k, 1, false));
                }
            }
            // Run pair 1 only: the other pairs' memory does not change.
            let snap: Vec<Vec<u8>> = [0u64, 2]
                .iter()
                .flat_map(|&i| [area(i, 0), area(i, 1)])
                .map(|a| m.get(a, 0x4_0000))
                .collect();
            assert_eq!(run(&mut pairs[1].lb, &mut m).unwrap(), 3);
            let now: Vec<Vec<u8>> = [0u64, 2]
                .iter()
                .flat_map(|&i| [area(i, 0), area(i, 1)])
                .map(|a| m.get(a, 0x4_0000))
                .collect();
            assert!(snap == now, "pair 1's run touched another pair's rings");
            assert_eq!(pairs[1].check_rx(&m), 3);
            assert_eq!(pairs[0].rx.used(&m).len(), 0);
            assert_eq!(pairs[2].rx.used(&m).len(), 0);
            // Pair 2's driver breaks its TX ring: pair 2 fails, the others
            // go on.
            let s = pairs[2].tx.slot(4);
            Driver::write(
                &mut m,
                s,
                DATA,
                1,
                0,
                PACKED_DESC_F_AVAIL | PACKED_DESC_F_USED,
            );
            assert_eq!(run(&mut pairs[2].lb, &mut m), Err(RingError::BadAvailIdx));
            assert_eq!(run(&mut pairs[0].lb, &mut m).unwrap(), 2);
            assert_eq!(pairs[0].check_rx(&m), 2);
            assert!(pairs[1].send(&mut m, 1, 77, 2, true));
            assert_eq!(run(&mut pairs[1].lb, &mut m).unwrap(), 1);
            assert_eq!(pairs[1].check_rx(&m), 1);
            pairs
                .iter()
                .map(|p| p.lb.stats.rx_packets)
                .collect::<Vec<_>>()
        } else {
            split_pairs_independent(&mut m, &mut pairs)
        };
        assert_eq!(n, vec![2, 4, 0], "rx_packets per pair (packed {packed})");
    }
}

/// A split-ring loopback of pair `p` (for the split half of the tests
/// shared with packed rings); the driver side is `SplitDriver`.
fn split_loopback(p: u64) -> Loopback {
    let rx = SplitDriver::new(16, area(p, 0));
    let tx = SplitDriver::new(16, area(p, 1));
    Loopback::new(rx.queue(), tx.queue(), false)
}

fn split_pairs_independent(m: &mut Mem, pairs: &mut [Pair]) -> Vec<u64> {
    let mut rx: Vec<SplitDriver> = (0..3).map(|i| SplitDriver::new(16, area(i, 0))).collect();
    let mut tx: Vec<SplitDriver> = (0..3).map(|i| SplitDriver::new(16, area(i, 1))).collect();
    for i in 0..3u64 {
        for k in 0..8u64 {
            rx[i as usize].add(m, &[(DATA + i * 0x20_0000 + k * 0x1000, RX_BUF, true)]);
        }
        for k in 0..(i + 2) {
            let f = frame(100 + 10 * k as usize, i as u8);
            let a = DATA + 0x10_0000 + i * 0x20_0000 + k * 0x1000;
            m.put(a, &f);
            tx[i as usize].add(m, &[(a, f.len() as u32, false)]);
        }
    }
    let snap: Vec<Vec<u8>> = [0u64, 2]
        .iter()
        .flat_map(|&i| [area(i, 0), area(i, 1)])
        .map(|a| m.get(a, 0x4_0000))
        .collect();
    assert_eq!(run(&mut pairs[1].lb, m).unwrap(), 3);
    let now: Vec<Vec<u8>> = [0u64, 2]
        .iter()
        .flat_map(|&i| [area(i, 0), area(i, 1)])
        .map(|a| m.get(a, 0x4_0000))
        .collect();
    assert!(snap == now, "pair 1's run touched another pair's rings");
    // Pair 2 publishes an available index beyond its ring: it fails alone.
    m.put16(tx[2].avail + 2, 0x1000);
    assert_eq!(run(&mut pairs[2].lb, m), Err(RingError::BadAvailIdx));
    assert_eq!(run(&mut pairs[0].lb, m).unwrap(), 2);
    let f = frame(77, 9);
    let a = DATA + 0x18_0000;
    m.put(a, &f);
    tx[1].add(m, &[(a, f.len() as u32, false)]);
    assert_eq!(run(&mut pairs[1].lb, m).unwrap(), 1);
    pairs.iter().map(|p| p.lb.stats.rx_packets).collect()
}

/// The driver's side of a split ring (as tests/virtq.rs has it).
struct SplitDriver {
    num: u16,
    desc: u64,
    avail: u64,
    used: u64,
    next_desc: u16,
    avail_idx: u16,
    used_seen: u16,
}

impl SplitDriver {
    fn new(num: u16, at: u64) -> Self {
        let avail = at + 16 * num as u64;
        Self {
            num,
            desc: at,
            avail,
            used: (avail + 6 + 2 * num as u64 + 3) & !3,
            next_desc: 0,
            avail_idx: 0,
            used_seen: 0,
        }
    }
    fn queue(&self) -> vhost_mdev_proto_tests::virtq::SplitQueue {
        let mut q = vhost_mdev_proto_tests::virtq::SplitQueue::new(
            self.num, self.desc, self.avail, self.used,
        );
        q.event_idx = true;
        q.indirect = true;
        q
    }
    fn add(&mut self, m: &mut Mem, bufs: &[(u64, u32, bool)]) -> u16 {
        let head = self.next_desc;
        for (k, &(addr, len, w)) in bufs.iter().enumerate() {
            let i = (head + k as u16) % self.num;
            let last = k + 1 == bufs.len();
            let flags = if w { 2u16 } else { 0 } | if last { 0 } else { 1 };
            let mut b = Vec::new();
            b.extend_from_slice(&addr.to_le_bytes());
            b.extend_from_slice(&len.to_le_bytes());
            b.extend_from_slice(&flags.to_le_bytes());
            b.extend_from_slice(&((i + 1) % self.num).to_le_bytes());
            m.put(self.desc + 16 * i as u64, &b);
        }
        self.next_desc = (head + bufs.len() as u16) % self.num;
        m.put16(
            self.avail + 4 + 2 * (self.avail_idx % self.num) as u64,
            head,
        );
        self.avail_idx = self.avail_idx.wrapping_add(1);
        m.put16(self.avail + 2, self.avail_idx);
        head
    }
    fn used(&mut self, m: &Mem) -> Vec<(u32, u32)> {
        let idx = m.get16(self.used + 2);
        let mut v = Vec::new();
        while self.used_seen != idx {
            let e = m.get(self.used + 4 + 8 * (self.used_seen % self.num) as u64, 8);
            v.push((
                u32::from_le_bytes(e[..4].try_into().unwrap()),
                u32::from_le_bytes(e[4..].try_into().unwrap()),
            ));
            self.used_seen = self.used_seen.wrapping_add(1);
        }
        v
    }
}

/// A new queue configured as a VMM configures one after SUSPEND and
/// GET_VRING_BASE on the old device: size, addresses, features (the ring
/// type), the base read, enable.
fn requeue(
    q: &mut vhost_mdev_proto_tests::ring::Queue<Ids>,
    num: u16,
    addrs: (u64, u64, u64),
    packed: bool,
    base: u32,
) {
    q.packed.ids = Ids::new(num as usize);
    q.set_num(num);
    q.set_addr(addrs.0, addrs.1, addrs.2);
    assert!(q.set_features(true, true, packed));
    q.set_base(base);
    q.set_ready(true);
}

/// SUSPEND / GET_VRING_BASE / SET_VRING_BASE on a new device, mid-traffic
/// (TX frames waiting for RX buffers), many times over a small ring that
/// wraps: no frame is lost or repeated. Packed rings.
#[test]
fn packed_base_round_trip_loses_nothing() {
    let num = 8u16;
    let mut m = Mem::new();
    let mut p = Pair::new(0, num, false, true);
    let mut sent = 0u64;
    let mut back = 0usize;
    let mut bases = Vec::new();
    for round in 0..40 {
        // TX frames beyond the RX buffers: some wait in the TX ring.
        p.post_rx(&mut m, 0, 1 + round % 3);
        for k in 0..(1 + round % 4) {
            if p.send(&mut m, 0, 60 + 37 * k + round, 1 + k % 2, round % 5 == 0) {
                sent += 1;
            }
        }
        run(&mut p.lb, &mut m).unwrap();
        back += p.check_rx(&m);
        p.tx.used(&m);
        // Suspend: the bases; then a new device goes on from them.
        let (rb, tb) = (p.lb.rx.base(), p.lb.tx.base());
        assert_eq!(p.lb.rx.packed.in_flight() + p.lb.tx.packed.in_flight(), 0);
        bases.push((rb, tb));
        let mut lb = Loopback::EMPTY;
        let (r, t) = (&p.rx, &p.tx);
        requeue(
            &mut lb.rx,
            num,
            (r.desc(), r.driver_ev(), r.device_ev()),
            true,
            rb,
        );
        requeue(
            &mut lb.tx,
            num,
            (t.desc(), t.driver_ev(), t.device_ev()),
            true,
            tb,
        );
        assert_eq!((lb.rx.base(), lb.tx.base()), (rb, tb), "base read back");
        lb.stats = p.lb.stats;
        p.lb = lb;
    }
    // Everything waiting goes through.
    p.post_rx(&mut m, 0, num as usize);
    run(&mut p.lb, &mut m).unwrap();
    back += p.check_rx(&m);
    assert_eq!(back as u64, sent, "frames lost or repeated");
    assert!(p.sent.is_empty());
    assert_eq!(p.lb.stats.tx_packets, sent);
    // The base wrapped: both wrap counters were seen at 0.
    assert!(bases.iter().any(|&(r, _)| r & 1 << 15 == 0), "{bases:x?}");
    assert_eq!(bases[0].0 >> 16, bases[0].0 & 0xffff, "RX used = avail");
}

/// The same round trip over split rings (the base is the next available
/// index in the low half).
#[test]
fn split_base_round_trip_loses_nothing() {
    let num = 8u16;
    let mut m = Mem::new();
    let mut rx = SplitDriver::new(num, area(0, 0));
    let mut tx = SplitDriver::new(num, area(0, 1));
    let mut lb = Loopback::new(rx.queue(), tx.queue(), false);
    let (mut sent, mut back, mut posted) = (0u64, 0u64, 0u64);
    let mut outstanding_tx = 0u64;
    for round in 0..40u64 {
        for _ in 0..(1 + round % 3) {
            rx.add(
                &mut m,
                &[(DATA + (posted % num as u64) * 0x1000, RX_BUF, true)],
            );
            posted += 1;
            if posted - back > num as u64 - 1 {
                break;
            }
        }
        for k in 0..(1 + round % 4) {
            if outstanding_tx >= num as u64 - 1 {
                break;
            }
            let f = frame(60 + 37 * k as usize, (sent % 251) as u8);
            let a = DATA + 0x10_0000 + (sent % num as u64) * 0x1000;
            m.put(a, &f);
            tx.add(&mut m, &[(a, f.len() as u32, false)]);
            sent += 1;
            outstanding_tx += 1;
        }
        run(&mut lb, &mut m).unwrap();
        back += rx.used(&m).len() as u64;
        outstanding_tx -= tx.used(&m).len() as u64;
        let (rb, tb) = (lb.rx.base(), lb.tx.base());
        assert!(rb <= 0xffff && tb <= 0xffff);
        let mut nlb = Loopback::EMPTY;
        requeue(&mut nlb.rx, num, (rx.desc, rx.avail, rx.used), false, rb);
        requeue(&mut nlb.tx, num, (tx.desc, tx.avail, tx.used), false, tb);
        nlb.stats = lb.stats;
        lb = nlb;
    }
    for _ in 0..num {
        rx.add(&mut m, &[(DATA, RX_BUF, true)]);
    }
    run(&mut lb, &mut m).unwrap();
    back += rx.used(&m).len() as u64;
    assert_eq!(back, sent, "frames lost or repeated");
    assert_eq!(lb.stats.tx_packets, sent);
}

/// A vring base that does not fit the packed ring (the used position more
/// than a ring behind the available one): the queue fails when served, and
/// a reset makes the instance usable again.
#[test]
fn packed_base_that_does_not_fit_is_an_error() {
    let (mut m, mut p) = hostile_pair();
    // Available: slot 0, wrap 0; used: slot 4, wrap 0: 12 slots in flight
    // in a ring of 8.
    p.lb.tx.set_base(4 << 16);
    fails_then_recovers(&mut m, &mut p, RingError::BadIndex);
}
