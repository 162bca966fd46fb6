// SPDX-License-Identifier: GPL-2.0 OR MIT

//! The sample's virtqueue walker and loopback against a fake guest memory:
//! a correct driver's frames come back intact; hostile rings end in an
//! error, never a panic, a hang or an access outside the mapped memory.

use proptest::prelude::*;
use vhost_mdev_proto_tests::virtq::*;

const BASE: u64 = 0x10_0000;

/// Guest memory mapped at `BASE`; everything else faults.
struct Mem {
    bytes: Vec<u8>,
    accesses: u64,
    /// Bytes read, written and copied.
    moved: u64,
    /// Offers direct copies (as the module does with iommufd).
    direct: bool,
    /// Direct copies offered but failing (a pin that did not work).
    copy_fails: bool,
    copies: u64,
}

impl Mem {
    fn new(size: usize) -> Self {
        Self {
            bytes: vec![0; size],
            accesses: 0,
            moved: 0,
            direct: false,
            copy_fails: false,
            copies: 0,
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
}

impl GuestMemory for Mem {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
        self.accesses += 1;
        self.moved += buf.len() as u64;
        let r = self.range(addr, buf.len())?;
        buf.copy_from_slice(&self.bytes[r]);
        Ok(())
    }
    fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), Fault> {
        self.accesses += 1;
        self.moved += buf.len() as u64;
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
        self.moved += len as u64;
        let (Ok(d), Ok(s)) = (self.range(dst, len), self.range(src, len)) else {
            return false;
        };
        if !self.direct || self.copy_fails {
            return false;
        }
        self.bytes.copy_within(s, d.start);
        self.copies += 1;
        true
    }
}

/// A driver's view of one split ring in `Mem`.
struct Ring {
    num: u16,
    desc: u64,
    avail: u64,
    used: u64,
    next_desc: u16,
    avail_idx: u16,
    used_seen: u16,
}

impl Ring {
    fn new(num: u16, at: u64) -> Self {
        let desc = at;
        let avail = desc + 16 * num as u64;
        let used = (avail + 6 + 2 * num as u64 + 3) & !3;
        Self {
            num,
            desc,
            avail,
            used,
            next_desc: 0,
            avail_idx: 0,
            used_seen: 0,
        }
    }
    fn queue(&self, event_idx: bool, indirect: bool) -> SplitQueue {
        let mut q = SplitQueue::new(self.num, self.desc, self.avail, self.used);
        q.event_idx = event_idx;
        q.indirect = indirect;
        q
    }
    fn write_desc(m: &mut Mem, table: u64, i: u16, d: Desc) {
        let mut b = Vec::new();
        b.extend_from_slice(&d.addr.to_le_bytes());
        b.extend_from_slice(&d.len.to_le_bytes());
        b.extend_from_slice(&d.flags.to_le_bytes());
        b.extend_from_slice(&d.next.to_le_bytes());
        m.put(table + 16 * i as u64, &b);
    }
    /// Adds a chain of (addr, len, writable) buffers.
    fn add(&mut self, m: &mut Mem, bufs: &[(u64, u32, bool)]) -> u16 {
        let head = self.next_desc;
        for (k, &(addr, len, w)) in bufs.iter().enumerate() {
            let i = (head + k as u16) % self.num;
            let last = k + 1 == bufs.len();
            let flags =
                if w { VRING_DESC_F_WRITE } else { 0 } | if last { 0 } else { VRING_DESC_F_NEXT };
            Self::write_desc(
                m,
                self.desc,
                i,
                Desc {
                    addr,
                    len,
                    flags,
                    next: (i + 1) % self.num,
                },
            );
        }
        self.next_desc = (head + bufs.len() as u16) % self.num;
        m.put(
            self.avail + 4 + 2 * (self.avail_idx % self.num) as u64,
            &head.to_le_bytes(),
        );
        self.avail_idx = self.avail_idx.wrapping_add(1);
        m.put(self.avail + 2, &self.avail_idx.to_le_bytes());
        head
    }
    /// Used elements since the last call.
    fn used(&mut self, m: &Mem) -> Vec<(u32, u32)> {
        let idx = u16::from_le_bytes(m.get(self.used + 2, 2).try_into().unwrap());
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

fn sq(num: u16, desc: u64, avail: u64, used: u64, event_idx: bool, indirect: bool) -> SplitQueue {
    let mut q = SplitQueue::new(num, desc, avail, used);
    q.event_idx = event_idx;
    q.indirect = indirect;
    q
}

fn frame(n: usize, seq: u8) -> Vec<u8> {
    let mut f = vec![0u8; NET_HDR_LEN];
    f.extend((0..n).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seq)));
    f
}

struct Setup {
    m: Mem,
    rx: Ring,
    tx: Ring,
    lb: Loopback,
    buf: Vec<u8>,
}

fn setup(mrg: bool) -> Setup {
    setup_with(mrg, false)
}

fn setup_with(mrg: bool, direct: bool) -> Setup {
    let mut m = Mem::new(4 << 20);
    m.direct = direct;
    let rx = Ring::new(64, BASE);
    let tx = Ring::new(64, BASE + 0x2000);
    let lb = Loopback::new(rx.queue(true, true), tx.queue(true, true), mrg);
    Setup {
        m,
        rx,
        tx,
        lb,
        buf: vec![0; FRAME_BUF],
    }
}

#[test]
fn frames_loop_back_intact() {
    frames_loop_back_intact_with(false, false);
}

/// The direct copy (TX buffer to RX buffer, as with iommufd).
#[test]
fn frames_loop_back_intact_copied_directly() {
    let copies = frames_loop_back_intact_with(true, false);
    assert!(copies >= 5, "{copies} direct copies");
}

/// Direct copies offered but failing: the frames go through the buffer.
#[test]
fn frames_loop_back_intact_when_direct_copies_fail() {
    assert_eq!(frames_loop_back_intact_with(true, true), 0);
}

fn frames_loop_back_intact_with(direct: bool, copy_fails: bool) -> u64 {
    let mut s = setup_with(false, direct);
    s.m.copy_fails = copy_fails;
    let data = BASE + 0x10000;
    for i in 0..8 {
        s.rx.add(&mut s.m, &[(data + i * 0x1000, 2048, true)]);
    }
    let tx_data = BASE + 0x100000;
    let frames: Vec<Vec<u8>> = (0..5).map(|i| frame(60 + 300 * i, i as u8)).collect();
    for (i, f) in frames.iter().enumerate() {
        let a = tx_data + i as u64 * 0x1000;
        s.m.put(a, f);
        // Header and data in two descriptors.
        s.tx.add(
            &mut s.m,
            &[
                (a, NET_HDR_LEN as u32, false),
                (
                    a + NET_HDR_LEN as u64,
                    (f.len() - NET_HDR_LEN) as u32,
                    false,
                ),
            ],
        );
    }
    let out = s.lb.process(&mut s.m, &mut s.buf, 64).unwrap();
    assert!(out.irq_rx && out.irq_tx && !out.more);
    assert_eq!(s.tx.used(&s.m).len(), 5);
    let used = s.rx.used(&s.m);
    assert_eq!(used.len(), 5);
    for (i, (id, len)) in used.iter().enumerate() {
        let f = &frames[i];
        assert_eq!(*len as usize, f.len());
        let got = s.m.get(data + *id as u64 * 0x1000, f.len());
        assert_eq!(&got[..10], &f[..10]);
        assert_eq!(u16::from_le_bytes([got[10], got[11]]), 1, "num_buffers");
        assert_eq!(&got[12..], &f[12..]);
    }
    assert_eq!(s.lb.stats.rx_packets, 5);
    assert_eq!(s.lb.stats.tx_packets, 5);
    let direct_frames = if direct && !copy_fails { 5 } else { 0 };
    assert_eq!(s.lb.stats.direct_frames, direct_frames);
    s.m.copies
}

/// A TX frame in more pieces than the direct copy records: read through
/// the buffer, intact.
#[test]
fn many_tx_segments_with_direct_copy() {
    let mut s = setup_with(false, true);
    let data = BASE + 0x10000;
    s.rx.add(&mut s.m, &[(data, 4096, true)]);
    let f = frame(40 * 20 - NET_HDR_LEN, 3);
    let a = BASE + 0x100000;
    s.m.put(a, &f);
    // 40 pieces of 20 bytes, through an indirect table.
    let table = BASE + 0x80000;
    let n = f.len() / 20;
    for i in 0..n {
        Ring::write_desc(
            &mut s.m,
            table,
            i as u16,
            Desc {
                addr: a + 20 * i as u64,
                len: 20,
                flags: if i + 1 < n { VRING_DESC_F_NEXT } else { 0 },
                next: i as u16 + 1,
            },
        );
    }
    s.tx.add(&mut s.m, &[(table, 16 * n as u32, false)]);
    // Mark the head descriptor indirect.
    let head = s.tx.desc;
    let mut b = s.m.get(head + 12, 2);
    b[0] |= VRING_DESC_F_INDIRECT as u8;
    s.m.put(head + 12, &b);
    s.lb.process(&mut s.m, &mut s.buf, 64).unwrap();
    let used = s.rx.used(&s.m);
    assert_eq!(used, vec![(0, f.len() as u32)]);
    let got = s.m.get(data, f.len());
    assert_eq!(&got[12..], &f[12..]);
    assert_eq!(s.m.copies, 0, "no direct copy past the recorded segments");
}

/// Small rings, many rounds: the avail read-ahead and the batched used
/// writes wrap around the ring many times, frames stay intact and in order.
#[test]
fn small_rings_wrap_around() {
    let mut m = Mem::new(4 << 20);
    let mut rx = Ring::new(8, BASE);
    let mut tx = Ring::new(8, BASE + 0x2000);
    let mut lb = Loopback::new(rx.queue(true, false), tx.queue(true, false), false);
    let mut buf = vec![0; FRAME_BUF];
    let data = BASE + 0x10000;
    for round in 0..200u32 {
        let n = 1 + (round % 5) as u64;
        for i in 0..n {
            rx.add(&mut m, &[(data + i * 0x1000, 2048, true)]);
        }
        let mut sent = Vec::new();
        for i in 0..n {
            let f = frame(
                60 + (round as usize * 7 + i as usize * 13) % 1400,
                (round + i as u32) as u8,
            );
            let a = BASE + 0x100000 + i * 0x1000;
            m.put(a, &f);
            tx.add(&mut m, &[(a, f.len() as u32, false)]);
            sent.push(f);
        }
        lb.process(&mut m, &mut buf, 64).unwrap();
        assert_eq!(tx.used(&m).len() as u64, n, "round {round}");
        let used = rx.used(&m);
        assert_eq!(used.len() as u64, n, "round {round}");
        // Frame k lands in the k-th RX buffer posted this round.
        for (k, (_id, len)) in used.iter().enumerate() {
            let got = m.get(data + k as u64 * 0x1000, *len as usize);
            assert_eq!(&got[12..], &sent[k][12..], "round {round} frame {k}");
        }
    }
    assert_eq!(lb.stats.rx_packets, lb.stats.tx_packets);
}

#[test]
fn mergeable_rx_spans_buffers() {
    mergeable_rx_spans_buffers_with(false);
    mergeable_rx_spans_buffers_with(true);
}

fn mergeable_rx_spans_buffers_with(direct: bool) {
    let mut s = setup_with(true, direct);
    let data = BASE + 0x10000;
    for i in 0..8 {
        s.rx.add(&mut s.m, &[(data + i * 0x1000, 1024, true)]);
    }
    let f = frame(3000, 9);
    let a = BASE + 0x100000;
    s.m.put(a, &f);
    s.tx.add(&mut s.m, &[(a, f.len() as u32, false)]);
    s.lb.process(&mut s.m, &mut s.buf, 64).unwrap();
    let used = s.rx.used(&s.m);
    assert_eq!(used.len(), 3);
    let mut got = Vec::new();
    for (id, len) in &used {
        got.extend(s.m.get(data + *id as u64 * 0x1000, *len as usize));
    }
    assert_eq!(u16::from_le_bytes([got[10], got[11]]), 3);
    assert_eq!(&got[12..], &f[12..]);
}

#[test]
fn oversize_is_dropped_and_rx_kept() {
    let mut s = setup(false);
    s.rx.add(&mut s.m, &[(BASE + 0x10000, 1024, true)]);
    let f = frame(2000, 1);
    s.m.put(BASE + 0x100000, &f);
    s.tx.add(&mut s.m, &[(BASE + 0x100000, f.len() as u32, false)]);
    s.lb.process(&mut s.m, &mut s.buf, 64).unwrap();
    assert_eq!(s.lb.stats.drop_oversize, 1);
    assert_eq!(s.rx.used(&s.m).len(), 0);
    assert_eq!(s.tx.used(&s.m).len(), 1);
}

#[test]
fn no_rx_buffers_is_back_pressure() {
    let mut s = setup(false);
    let f = frame(100, 1);
    s.m.put(BASE + 0x100000, &f);
    s.tx.add(&mut s.m, &[(BASE + 0x100000, f.len() as u32, false)]);
    s.lb.process(&mut s.m, &mut s.buf, 64).unwrap();
    assert_eq!(s.tx.used(&s.m).len(), 0, "TX must wait for RX buffers");
    s.rx.add(&mut s.m, &[(BASE + 0x10000, 2048, true)]);
    s.lb.process(&mut s.m, &mut s.buf, 64).unwrap();
    assert_eq!(s.tx.used(&s.m).len(), 1);
    assert_eq!(s.rx.used(&s.m).len(), 1);
}

/// MRG_RXBUF with too few RX buffers for a frame: the device does not ask
/// to run again (it would spin while the driver, perhaps on its CPU, has
/// yet to post more), it asks for an RX kick at the available index it saw,
/// and runs again on its own only when buffers came in meanwhile.
#[test]
fn too_few_mergeable_buffers_arm_the_rx_kick() {
    let mut s = setup(true);
    let data = BASE + 0x10000;
    s.rx.add(&mut s.m, &[(data, 1024, true)]);
    let f = frame(3000, 4);
    s.m.put(BASE + 0x100000, &f);
    s.tx.add(&mut s.m, &[(BASE + 0x100000, f.len() as u32, false)]);
    let out = s.lb.process(&mut s.m, &mut s.buf, 64).unwrap();
    assert!(!out.more, "must not spin waiting for RX buffers");
    assert_eq!(s.tx.used(&s.m).len(), 0);
    let avail_event = u16::from_le_bytes(
        s.m.get(s.rx.used + 4 + 8 * u64::from(s.rx.num), 2)
            .try_into()
            .unwrap(),
    );
    assert_eq!(avail_event, 1, "RX kick armed at the index seen");
    for i in 1..3 {
        s.rx.add(&mut s.m, &[(data + i * 0x1000, 1024, true)]);
    }
    s.lb.process(&mut s.m, &mut s.buf, 64).unwrap();
    assert_eq!(s.tx.used(&s.m).len(), 1);
    assert_eq!(s.rx.used(&s.m).len(), 3);
}

/// An available index out of range is a broken driver (ring indexes are
/// read with one load: a value out of range is not half of an update).
#[test]
fn avail_index_out_of_range_is_an_error() {
    let mut s = setup(false);
    // 64 entries: 0x00ff + 64 is the most the driver may have published.
    s.lb.tx.split.last_avail = 0x00ff;
    s.m.put(s.tx.avail + 2, &0x0140u16.to_le_bytes());
    assert_eq!(s.lb.tx.split.pending(&mut s.m), Err(RingError::BadAvailIdx));
    s.m.put(s.tx.avail + 2, &0x013fu16.to_le_bytes());
    assert_eq!(s.lb.tx.split.pending(&mut s.m), Ok(64));
}

/// The driver side of the tearing model: a correct virtio-net driver that
/// keeps TX full of numbered frames and RX full of buffers, and checks
/// every frame that comes back.
struct Driver {
    rx: Ring,
    tx: Ring,
    /// Sequence number of the next frame to send / expected back.
    next_tx: u64,
    next_rx: u64,
    /// Frames to send in all.
    total: u64,
    /// TX entries the device returned, RX buffers posted.
    tx_done: u64,
    rx_posted: u64,
    /// Frame payload length.
    len: usize,
}

/// 1024 slots of 9 KiB each: TX at 1 MiB, RX at 11 MiB.
const TX_DATA: u64 = BASE + 0x10_0000;
const RX_DATA: u64 = BASE + 0xb0_0000;
const SLOT: u64 = 0x2400;

impl Driver {
    fn frame(seq: u64, len: usize) -> Vec<u8> {
        let mut f = vec![0u8; NET_HDR_LEN];
        f.extend_from_slice(&seq.to_le_bytes());
        f.extend((8..len).map(|i| (i as u64).wrapping_mul(31).wrapping_add(seq) as u8));
        f
    }

    /// One step of the driver, as if it ran on another CPU at this point of
    /// a device access: reclaims TX, checks RX, posts what it can. Each
    /// index it publishes is one store.
    fn step(&mut self, m: &mut Mem) {
        // Used indexes as the driver sees them (one load each): never more
        // entries than were made available, never backwards.
        let tx_used = u16::from_le_bytes(m.get(self.tx.used + 2, 2).try_into().unwrap());
        let tx_out = self.tx.avail_idx.wrapping_sub(self.tx.used_seen);
        assert!(
            tx_used.wrapping_sub(self.tx.used_seen) <= tx_out,
            "TX used index {tx_used:#x} seen torn or beyond the {tx_out} entries out (seen {:#x})",
            self.tx.used_seen
        );
        let rx_used = u16::from_le_bytes(m.get(self.rx.used + 2, 2).try_into().unwrap());
        let rx_out = self.rx.avail_idx.wrapping_sub(self.rx.used_seen);
        assert!(
            rx_used.wrapping_sub(self.rx.used_seen) <= rx_out,
            "RX used index {rx_used:#x} seen torn or beyond the {rx_out} buffers out (seen {:#x})",
            self.rx.used_seen
        );
        for (id, _) in self.tx.used(m) {
            assert!(u64::from(id) < u64::from(self.tx.num), "TX id {id}");
            self.tx_done += 1;
        }
        for (id, len) in self.rx.used(m) {
            let want = Self::frame(self.next_rx, self.len);
            let got = m.get(RX_DATA + u64::from(id) * SLOT, len as usize);
            assert_eq!(len as usize, want.len(), "RX frame {} length", self.next_rx);
            assert_eq!(
                &got[12..],
                &want[12..],
                "RX frame {} (out of sequence or corrupt)",
                self.next_rx
            );
            self.next_rx += 1;
        }
        // Post TX frames while the ring has room.
        while self.next_tx < self.total
            && self.tx.avail_idx.wrapping_sub(self.tx.used_seen) < self.tx.num
        {
            let slot = u64::from(self.tx.next_desc);
            let f = Self::frame(self.next_tx, self.len);
            m.put(TX_DATA + slot * SLOT, &f);
            self.tx
                .add(m, &[(TX_DATA + slot * SLOT, f.len() as u32, false)]);
            self.next_tx += 1;
        }
        // Keep RX full.
        while self.rx.avail_idx.wrapping_sub(self.rx.used_seen) < self.rx.num {
            let slot = u64::from(self.rx.next_desc);
            self.rx
                .add(m, &[(RX_DATA + slot * SLOT, SLOT as u32, true)]);
            self.rx_posted += 1;
        }
    }
}

/// Which plain accesses of ring indexes the model tears.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tear {
    Reads,
    Writes,
    Both,
}

/// Guest memory whose plain 2-byte-field accesses tear: every `read` or
/// `write` that covers a ring index or event field is done a byte at a
/// time, in the given order, and the driver runs between the bytes (at
/// `point` 1), before them (0) or after them (2). `read_u16`/`write_u16`
/// are single accesses, with the driver running before or after them.
struct Tearing<'a> {
    m: &'a mut Mem,
    d: &'a mut Driver,
    /// The 2-byte fields both sides touch at once.
    hot: Vec<u64>,
    high_first: bool,
    point: usize,
    /// Which plain accesses tear (the others are done at once).
    tear: Tear,
    /// Plain (tearable) accesses that covered a hot field, reads and writes.
    plain_hot: [u64; 2],
    /// Single loads and stores of hot fields.
    single_hot: u64,
}

impl Tearing<'_> {
    fn covers_hot(&self, addr: u64, len: usize) -> bool {
        self.hot
            .iter()
            .any(|&h| addr < h + 2 && h < addr.wrapping_add(len as u64))
    }

    fn bytewise(&mut self, addr: u64, len: usize, mut one: impl FnMut(&mut Mem, u64, usize)) {
        let order: Vec<usize> = if self.high_first {
            (0..len).rev().collect()
        } else {
            (0..len).collect()
        };
        for (k, &i) in order.iter().enumerate() {
            if k == self.point.min(len) {
                self.d.step(self.m);
            }
            one(self.m, addr + i as u64, i);
        }
        if self.point >= len {
            self.d.step(self.m);
        }
    }
}

impl GuestMemory for Tearing<'_> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
        self.m.range(addr, buf.len())?;
        if !self.covers_hot(addr, buf.len()) {
            return self.m.read(addr, buf);
        }
        self.plain_hot[0] += 1;
        if self.tear == Tear::Writes {
            return self.m.read(addr, buf);
        }
        let mut out = vec![0u8; buf.len()];
        self.bytewise(addr, buf.len(), |m, a, i| out[i] = m.get(a, 1)[0]);
        buf.copy_from_slice(&out);
        Ok(())
    }
    fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), Fault> {
        self.m.range(addr, buf.len())?;
        if !self.covers_hot(addr, buf.len()) {
            return self.m.write(addr, buf);
        }
        self.plain_hot[1] += 1;
        if self.tear == Tear::Reads {
            return self.m.write(addr, buf);
        }
        self.bytewise(addr, buf.len(), |m, a, i| m.put(a, &buf[i..i + 1]));
        Ok(())
    }
    fn read_u16(&mut self, addr: u64) -> Result<u16, Fault> {
        self.single_hot += u64::from(self.covers_hot(addr, 2));
        if self.point == 0 {
            self.d.step(self.m);
        }
        let v = self.m.read_u16(addr);
        if self.point > 0 {
            self.d.step(self.m);
        }
        v
    }
    fn write_u16(&mut self, addr: u64, v: u16) -> Result<(), Fault> {
        self.single_hot += u64::from(self.covers_hot(addr, 2));
        if self.point == 0 {
            self.d.step(self.m);
        }
        self.m.write_u16(addr, v)?;
        if self.point > 0 {
            self.d.step(self.m);
        }
        Ok(())
    }
}

/// Frames through a loopback whose ring-index reads race with the driver
/// at every point: with 256- and 1024-entry rings the available index
/// crosses many 0x..ff -> 0x..00 carries while the device has caught up,
/// the case where a torn value looks in range. Every frame comes back once,
/// in sequence and intact (no phantom entry of the previous lap, none
/// lost), and no ring index or event field is read with a plain (possibly
/// byte-wise) read.
#[test]
fn torn_index_reads_no_phantom_or_lost_entries() {
    for_each_race(Tear::Reads, |[reads, _], single| {
        assert_eq!(reads, 0, "plain reads of ring indexes");
        assert!(single > 0);
    });
}

/// The same race for the device's stores: the driver, reading the used
/// index between the bytes of any plain store, never sees a torn one, and
/// every store of a used index or `avail_event` is one store.
#[test]
fn used_index_stores_are_single_stores() {
    for_each_race(Tear::Writes, |[_, writes], single| {
        assert_eq!(writes, 0, "plain stores of ring indexes");
        assert!(single > 0);
    });
}

/// Both at once, with 1500- and 9000-byte frames too.
#[test]
fn torn_ring_indexes_any_frame_size() {
    for len in [1500usize, 9000] {
        for point in 0..3 {
            run_tearing(256, point == 1, point, Tear::Both, len, 4 * 256);
        }
    }
}

fn for_each_race(tear: Tear, check: impl Fn([u64; 2], u64)) {
    for num in [256u16, 1024] {
        for high_first in [false, true] {
            for point in 0..3 {
                let total = 3 * 65536 / u64::from(num) * u64::from(num);
                let (plain, single) = run_tearing(num, high_first, point, tear, 64, total);
                check(plain, single);
            }
        }
    }
}

/// Runs `total` frames of `len` bytes through rings of `num` entries with
/// the driver racing at `point`; returns the plain (reads, writes) and the
/// single accesses of ring indexes.
fn run_tearing(
    num: u16,
    high_first: bool,
    point: usize,
    tear: Tear,
    len: usize,
    total: u64,
) -> ([u64; 2], u64) {
    let mut m = Mem::new(22 << 20);
    let rx = Ring::new(num, BASE);
    let tx = Ring::new(num, BASE + 0x8000);
    let mut lb = Loopback::new(rx.queue(true, false), tx.queue(true, false), false);
    let hot = vec![
        rx.avail + 2,
        rx.used + 2,
        rx.avail + 4 + 2 * u64::from(num),
        rx.used + 4 + 8 * u64::from(num),
        tx.avail + 2,
        tx.used + 2,
        tx.avail + 4 + 2 * u64::from(num),
        tx.used + 4 + 8 * u64::from(num),
    ];
    let mut d = Driver {
        rx,
        tx,
        next_tx: 0,
        next_rx: 0,
        total,
        tx_done: 0,
        rx_posted: 0,
        len,
    };
    d.step(&mut m);
    let mut buf = vec![0; FRAME_BUF];
    let mut t = Tearing {
        m: &mut m,
        d: &mut d,
        hot,
        high_first,
        point,
        tear,
        plain_hot: [0; 2],
        single_hot: 0,
    };
    let mut idle = 0;
    while idle < 3 {
        let before = t.d.next_rx;
        lb.process(&mut t, &mut buf, 64)
            .unwrap_or_else(|e| panic!("ring error {e:?} after {} frames", t.d.next_rx));
        t.d.step(t.m);
        idle = if t.d.next_rx == before { idle + 1 } else { 0 };
    }
    assert_eq!(t.d.next_rx, total, "frames lost");
    assert_eq!(t.d.tx_done, total, "TX entries returned");
    assert_eq!(lb.stats.tx_packets, total);
    assert_eq!(lb.stats.rx_packets, total);
    (t.plain_hot, t.single_hot)
}

#[test]
fn looping_chain_is_an_error() {
    let mut s = setup(false);
    s.rx.add(&mut s.m, &[(BASE + 0x10000, 2048, true)]);
    let head = s.tx.add(&mut s.m, &[(BASE + 0x100000, 100, false)]);
    Ring::write_desc(
        &mut s.m,
        s.tx.desc,
        head,
        Desc {
            addr: BASE,
            len: 100,
            flags: VRING_DESC_F_NEXT,
            next: head,
        },
    );
    assert_eq!(s.lb.process(&mut s.m, &mut s.buf, 64), Err(RingError::Loop));
}

#[test]
fn indirect_outside_memory_faults() {
    let mut s = setup(false);
    s.rx.add(&mut s.m, &[(BASE + 0x10000, 2048, true)]);
    let head = s.tx.add(&mut s.m, &[(0, 0, false)]);
    Ring::write_desc(
        &mut s.m,
        s.tx.desc,
        head,
        Desc {
            addr: 0xdead_0000,
            len: 64,
            flags: VRING_DESC_F_INDIRECT,
            next: 0,
        },
    );
    assert_eq!(
        s.lb.process(&mut s.m, &mut s.buf, 64),
        Err(RingError::Fault)
    );
}

#[test]
fn writable_tx_buffer_is_an_error() {
    let mut s = setup(false);
    s.rx.add(&mut s.m, &[(BASE + 0x10000, 2048, true)]);
    s.tx.add(&mut s.m, &[(BASE + 0x100000, 100, true)]);
    assert_eq!(
        s.lb.process(&mut s.m, &mut s.buf, 64),
        Err(RingError::BadDirection)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Garbage rings: the loopback terminates with a result, touching only
    /// mapped memory (the fake faults on anything else), in a bounded number
    /// of accesses.
    #[test]
    fn hostile_rings_terminate(
        garbage in proptest::collection::vec(any::<u8>(), 0x3000),
        num_log in 0u32..8,
        indirect in any::<bool>(),
        mrg in any::<bool>(),
        direct in any::<bool>(),
    ) {
        let num = 1u16 << num_log;
        let mut m = Mem::new(0x3000 + 0x10000);
        m.direct = direct;
        m.bytes[..0x3000].copy_from_slice(&garbage);
        let mut lb = Loopback::new(
            sq(num, BASE, BASE + 0x1000, BASE + 0x1800, true, indirect),
            sq(num, BASE + 0x800, BASE + 0x2000, BASE + 0x2800, false, indirect),
            mrg,
        );
        let mut buf = vec![0; FRAME_BUF];
        let _ = lb.process(&mut m, &mut buf, 64);
        // Each frame walks at most num + MAX_INDIRECT descriptors per chain.
        let bound = 64 * (4 + 33 * (u64::from(num) + u64::from(MAX_INDIRECT) + 4) * 2);
        prop_assert!(m.accesses <= bound, "{} accesses", m.accesses);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Ring addresses anywhere in the 64-bit space, near the end included:
    /// no arithmetic overflows (a panic in the kernel), only faults.
    #[test]
    fn ring_addresses_anywhere(
        addrs in proptest::array::uniform6(prop_oneof![any::<u64>(), (u64::MAX - 64)..=u64::MAX, Just(BASE)]),
        num_log in 0u32..16,
    ) {
        let num = 1u16 << num_log;
        let mut m = Mem::new(0x4000);
        let q = |d, a, u| sq(num, d, a, u, true, true);
        let mut lb = Loopback::new(q(addrs[0], addrs[1], addrs[2]), q(addrs[3], addrs[4], addrs[5]), true);
        let mut buf = vec![0; FRAME_BUF];
        let _ = lb.process(&mut m, &mut buf, 8);
    }
}

// ---------------------------------------------------------------------------
// The work of one run is bounded by descriptors walked and bytes copied,
// not by frames (issue 14, item 2). The worst cases use rings of 1024
// entries, where a run of the frame-counted worker walked millions of
// descriptors.

impl Ring {
    /// Makes head `head` available again (a hostile driver may post one
    /// chain many times).
    fn post(&mut self, m: &mut Mem, head: u16) {
        m.put(
            self.avail + 4 + 2 * (self.avail_idx % self.num) as u64,
            &head.to_le_bytes(),
        );
        self.avail_idx = self.avail_idx.wrapping_add(1);
        m.put(self.avail + 2, &self.avail_idx.to_le_bytes());
    }

    /// The longest chain there is, at head 0: `num - 1` direct descriptors,
    /// then one pointing to a table of `MAX_INDIRECT` at `table`; every
    /// buffer `len` bytes at `data`.
    fn longest_chain(&mut self, m: &mut Mem, table: u64, data: u64, len: u32, write: bool) {
        let w = if write { VRING_DESC_F_WRITE } else { 0 };
        for i in 0..self.num - 1 {
            let d = Desc {
                addr: data,
                len,
                flags: w | VRING_DESC_F_NEXT,
                next: i + 1,
            };
            Ring::write_desc(m, self.desc, i, d);
        }
        let ind = Desc {
            addr: table,
            len: 16 * MAX_INDIRECT,
            flags: VRING_DESC_F_INDIRECT,
            next: 0,
        };
        Ring::write_desc(m, self.desc, self.num - 1, ind);
        for i in 0..MAX_INDIRECT as u16 {
            let last = u32::from(i) + 1 == MAX_INDIRECT;
            let d = Desc {
                addr: data,
                len,
                flags: w | if last { 0 } else { VRING_DESC_F_NEXT },
                next: i + 1,
            };
            Ring::write_desc(m, table, i, d);
        }
        self.next_desc = 0;
    }
}

/// DMA accesses one run may make for the descriptors it walked and the
/// frames it moved: a descriptor read and a data access per descriptor,
/// a few ring accesses per frame and per run.
fn access_bound(b: &Budget, tx_num: u16, frames: u32) -> u64 {
    3 * u64::from(b.max_descs(tx_num)) + 8 * u64::from(frames) + 64
}

/// Bytes one run may move: descriptor tables (read a window of 32 at a
/// time, 512 bytes per descriptor at worst), the frames' data read and
/// written, and the rings.
fn moved_bound(b: &Budget, tx_num: u16) -> u64 {
    512 * u64::from(b.max_descs(tx_num)) + 3 * b.max_bytes() + 0x10000
}

/// Runs `process` until it has nothing left, checking every run's bounds;
/// returns the runs.
fn run_bounded(s: &mut Setup, budget: Budget) -> u32 {
    let mut runs = 0;
    loop {
        let (acc, moved) = (s.m.accesses, s.m.moved);
        let out = s.lb.process(&mut s.m, &mut s.buf, budget).unwrap();
        runs += 1;
        let acc = s.m.accesses - acc;
        let moved = s.m.moved - moved;
        assert!(out.descs <= budget.max_descs(s.lb.tx.split.num), "{out:?}");
        assert!(out.bytes <= budget.max_bytes(), "{out:?}");
        assert!(
            acc <= access_bound(&budget, s.lb.tx.split.num, out.frames),
            "{acc} accesses, {out:?}"
        );
        assert!(
            moved <= moved_bound(&budget, s.lb.tx.split.num),
            "{moved} bytes moved, {out:?}"
        );
        if !out.more {
            return runs;
        }
        assert!(out.frames > 0, "a run that asks for more moved nothing");
        assert!(runs < 10_000, "no progress");
    }
}

fn setup_big(mrg: bool, rx_num: u16, tx_num: u16) -> Setup {
    let m = Mem::new(8 << 20);
    let rx = Ring::new(rx_num, BASE);
    let tx = Ring::new(tx_num, BASE + 0x8000);
    let lb = Loopback::new(rx.queue(true, true), tx.queue(true, true), mrg);
    Setup {
        m,
        rx,
        tx,
        lb,
        buf: vec![0; FRAME_BUF],
    }
}

/// The worst case of the frame-counted worker: 32 RX chains of 1024 + 1024
/// one-byte buffers (more than a frame's segments) and 64 frames too big
/// for what a frame may record of them. Each frame walked every chain
/// again (64 * 32 * 2048 descriptors, about 4 million DMA accesses); now
/// the chains are walked once, up to the segments a frame may use, and a
/// run stays within its counted bounds.
#[test]
fn oversize_frames_walk_rx_chains_once() {
    let mut s = setup_big(true, 1024, 1024);
    s.rx.longest_chain(&mut s.m, BASE + 0x10000, BASE + 0x100000, 1, true);
    for _ in 0..32 {
        s.rx.post(&mut s.m, 0);
    }
    let f = frame(1500, 1);
    let a = BASE + 0x200000;
    s.m.put(a, &f);
    for _ in 0..64 {
        s.tx.add(&mut s.m, &[(a, f.len() as u32, false)]);
    }
    let (acc, moved) = (s.m.accesses, s.m.moved);
    let out = s.lb.process(&mut s.m, &mut s.buf, 64).unwrap();
    let acc = s.m.accesses - acc;
    let moved = s.m.moved - moved;
    let b = Budget::frames(64);
    assert!(acc <= access_bound(&b, 1024, 64), "{acc} accesses");
    assert!(moved <= moved_bound(&b, 1024), "{moved} bytes moved");
    // The RX chains cost their first MAX_RX_SEGS buffers, once.
    assert!(
        out.descs <= 64 + MAX_RX_SEGS as u32,
        "{} descriptors for 64 one-descriptor frames",
        out.descs
    );
    assert_eq!(out.frames, 64);
    assert_eq!(s.lb.stats.drop_oversize, 64);
    assert_eq!(s.rx.used(&s.m).len(), 0, "RX buffers kept");
    assert_eq!(s.tx.used(&s.m).len(), 64);
    // A frame that fits afterwards still goes to the chains recorded.
    let small = frame(8, 2);
    s.m.put(a, &small);
    s.tx.add(&mut s.m, &[(a, small.len() as u32, false)]);
    let out = s.lb.process(&mut s.m, &mut s.buf, 64).unwrap();
    assert_eq!(s.lb.stats.rx_packets, 1);
    // In the first chain's first 20 one-byte buffers.
    assert_eq!(s.rx.used(&s.m), vec![(0, 20)]);
    assert!(out.descs <= 1 + MAX_RX_SEGS as u32);
}

/// The same with one RX buffer a frame (no MRG_RXBUF): the chain is
/// walked once for all the frames too big for it.
#[test]
fn oversize_frames_walk_the_rx_chain_once() {
    let mut s = setup_big(false, 1024, 1024);
    s.rx.longest_chain(&mut s.m, BASE + 0x10000, BASE + 0x100000, 1, true);
    s.rx.post(&mut s.m, 0);
    let f = frame(1500, 1);
    let a = BASE + 0x200000;
    s.m.put(a, &f);
    for _ in 0..64 {
        s.tx.add(&mut s.m, &[(a, f.len() as u32, false)]);
    }
    let acc = s.m.accesses;
    let out = s.lb.process(&mut s.m, &mut s.buf, 64).unwrap();
    let acc = s.m.accesses - acc;
    assert!(
        acc <= access_bound(&Budget::frames(64), 1024, 64),
        "{acc} accesses"
    );
    assert!(out.descs <= 64 + MAX_RX_SEGS as u32, "{out:?}");
    assert_eq!(s.lb.stats.drop_oversize, 64);
}

/// TX chains as long as a chain can be (1024 + 1024 one-byte buffers, a
/// 2047-byte frame each): a run ends when its descriptor budget is used
/// up, not after 64 frames; every frame still arrives intact.
#[test]
fn long_tx_chains_are_charged_per_descriptor() {
    let mut s = setup_big(false, 1024, 1024);
    let data = BASE + 0x200000;
    // All buffers of the chain point at one byte: the frame is that byte
    // 2047 times (the header included).
    s.m.put(data, &[0x5a]);
    s.tx.longest_chain(&mut s.m, BASE + 0x10000, data, 1, false);
    for i in 0..64u64 {
        s.rx.add(&mut s.m, &[(BASE + 0x300000 + i * 0x1000, 4096, true)]);
        s.tx.post(&mut s.m, 0);
    }
    let runs = run_bounded(&mut s, Budget::frames(64));
    assert!(runs >= 32, "{runs} runs for 64 frames of 2048 descriptors");
    let used = s.rx.used(&s.m);
    assert_eq!(used.len(), 64);
    for (id, len) in used {
        assert_eq!(len, 2047);
        let got = s.m.get(BASE + 0x300000 + u64::from(id) * 0x1000, 2047);
        assert!(got[12..].iter().all(|&b| b == 0x5a));
    }
    assert_eq!(s.lb.stats.rx_packets, 64);
}

/// Large frames: a run ends when its byte budget is used up (vhost-net's
/// weight), not after 64 frames of 60000 bytes.
#[test]
fn large_frames_are_charged_per_byte() {
    for direct in [false, true] {
        let mut s = setup_big(false, 256, 256);
        s.m.direct = direct;
        let f = frame(60000, 3);
        let a = BASE + 0x200000;
        s.m.put(a, &f);
        for i in 0..64u64 {
            s.rx.add(
                &mut s.m,
                &[(BASE + 0x300000 + (i % 4) * 0x10000, 0x10000, true)],
            );
            s.tx.add(&mut s.m, &[(a, f.len() as u32, false)]);
        }
        let runs = run_bounded(&mut s, Budget::frames(64));
        assert!(runs >= 7, "{runs} runs for 64 frames of 60000 bytes");
        let used = s.rx.used(&s.m);
        assert_eq!(used.len(), 64);
        for (id, len) in used {
            assert_eq!(len as usize, f.len());
            let got =
                s.m.get(BASE + 0x300000 + (u64::from(id) % 4) * 0x10000, f.len());
            assert_eq!(&got[12..], &f[12..]);
        }
    }
}

/// Chains whose buffers hold nothing (the worst case: `num`
/// direct and 1024 indirect empty descriptors) are errors after
/// `MAX_EMPTY_DESCS` buffers, in RX and TX, not walked for nothing.
#[test]
fn empty_chains_are_errors() {
    for rx_side in [false, true] {
        let mut s = setup_big(true, 1024, 1024);
        if rx_side {
            s.rx.longest_chain(&mut s.m, BASE + 0x10000, BASE + 0x100000, 0, true);
            for _ in 0..32 {
                s.rx.post(&mut s.m, 0);
            }
            let f = frame(1500, 1);
            s.m.put(BASE + 0x200000, &f);
            s.tx.add(&mut s.m, &[(BASE + 0x200000, f.len() as u32, false)]);
        } else {
            s.rx.add(&mut s.m, &[(BASE + 0x300000, 4096, true)]);
            s.tx.longest_chain(&mut s.m, BASE + 0x10000, BASE + 0x200000, 0, false);
            s.tx.post(&mut s.m, 0);
        }
        let acc = s.m.accesses;
        let r = s.lb.process(&mut s.m, &mut s.buf, 64);
        assert_eq!(r, Err(RingError::EmptyChain), "rx_side {rx_side}");
        assert!(s.m.accesses - acc <= 64, "{} accesses", s.m.accesses - acc);
    }
}

/// An empty buffer among others is no error (only chains that stay empty).
#[test]
fn an_empty_buffer_among_others_is_fine() {
    let mut s = setup(false);
    s.rx.add(
        &mut s.m,
        &[(BASE + 0x10000, 0, true), (BASE + 0x11000, 2048, true)],
    );
    let f = frame(100, 5);
    s.m.put(BASE + 0x100000, &f);
    s.tx.add(
        &mut s.m,
        &[
            (BASE + 0x100000, 0, false),
            (BASE + 0x100000, f.len() as u32, false),
            (BASE + 0x100000, 0, false),
        ],
    );
    s.lb.process(&mut s.m, &mut s.buf, 64).unwrap();
    assert_eq!(s.lb.stats.rx_packets, 1);
    let got = s.m.get(BASE + 0x11000, f.len());
    assert_eq!(&got[12..], &f[12..]);
}

/// The worker can yield between any two frames: a run asked to yield after
/// every frame moves one, asks to run again, and the frames all arrive in
/// order.
#[test]
fn a_run_yields_between_frames() {
    let mut s = setup(false);
    let mut sent = Vec::new();
    for i in 0..10u64 {
        s.rx.add(&mut s.m, &[(BASE + 0x10000 + i * 0x1000, 2048, true)]);
        let f = frame(100 + i as usize, i as u8);
        s.m.put(BASE + 0x100000 + i * 0x1000, &f);
        s.tx.add(
            &mut s.m,
            &[(BASE + 0x100000 + i * 0x1000, f.len() as u32, false)],
        );
        sent.push(f);
    }
    let mut runs = 0;
    loop {
        let out =
            s.lb.process_yielding(&mut s.m, &mut s.buf, Budget::frames(64), || true)
                .unwrap();
        runs += 1;
        assert_eq!(out.frames, u32::from(runs <= 10));
        if !out.more {
            break;
        }
    }
    assert_eq!(runs, 10);
    let used = s.rx.used(&s.m);
    for (k, (id, len)) in used.iter().enumerate() {
        assert_eq!(*id as usize, k);
        let got = s.m.get(BASE + 0x10000 + k as u64 * 0x1000, *len as usize);
        assert_eq!(&got[12..], &sent[k][12..]);
    }
    assert_eq!(s.lb.stats.runs, 10);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Garbage rings, counted: every run stays within its descriptor and
    /// byte budgets plus one frame, and its DMA accesses within what those
    /// descriptors and frames cost.
    #[test]
    fn hostile_rings_are_bounded_per_run(
        garbage in proptest::collection::vec(any::<u8>(), 0x3000),
        num_log in 0u32..8,
        indirect in any::<bool>(),
        mrg in any::<bool>(),
        direct in any::<bool>(),
        descs in 1u32..2048,
    ) {
        let num = 1u16 << num_log;
        let mut m = Mem::new(0x3000 + 0x10000);
        m.direct = direct;
        m.bytes[..0x3000].copy_from_slice(&garbage);
        let mut lb = Loopback::new(
            sq(num, BASE, BASE + 0x1000, BASE + 0x1800, true, indirect),
            sq(num, BASE + 0x800, BASE + 0x2000, BASE + 0x2800, false, indirect),
            mrg,
        );
        let mut buf = vec![0; FRAME_BUF];
        let b = Budget { frames: 64, descs, bytes: BYTE_BUDGET };
        if let Ok(out) = lb.process(&mut m, &mut buf, b) {
            prop_assert!(out.descs <= b.max_descs(num), "{:?}", out);
            prop_assert!(out.bytes <= b.max_bytes(), "{:?}", out);
            prop_assert!(m.accesses <= access_bound(&b, num, out.frames), "{} accesses {:?}", m.accesses, out);
        }
        prop_assert!(m.accesses <= access_bound(&b, num, 64), "{} accesses", m.accesses);
    }
}
