// SPDX-License-Identifier: GPL-2.0 OR MIT

//! The blk sample's request logic against a fake guest memory: data goes
//! to the disk and back byte for byte, bad requests get the status a
//! driver expects, chains that cannot be answered are ring errors, and
//! hostile rings end in a result, never a panic or an access outside the
//! mapped memory.

use proptest::prelude::*;
use vhost_mdev_proto_tests::blk::*;

const BASE: u64 = 0x10_0000;
const SECTORS: usize = 64;
const ID: &[u8; VIRTIO_BLK_ID_BYTES] = b"vhost-mdev-blk-test\0";

/// Guest memory mapped at `BASE`; everything else faults.
struct Mem {
    bytes: Vec<u8>,
    accesses: u64,
}

impl Mem {
    fn new(size: usize) -> Self {
        Self {
            bytes: vec![0; size],
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
}

/// A driver's view of the split ring, with a bump allocator for buffers.
struct Drv {
    m: Mem,
    num: u16,
    desc: u64,
    avail: u64,
    used: u64,
    next_desc: u16,
    avail_idx: u16,
    used_seen: u16,
    heap: u64,
}

const HEAP: u64 = BASE + 0x4000;
const MEM: usize = 0x40000;

impl Drv {
    fn new(num: u16) -> Self {
        let desc = BASE;
        let avail = desc + 16 * num as u64;
        let used = (avail + 6 + 2 * num as u64 + 3) & !3;
        Self {
            m: Mem::new(MEM),
            num,
            desc,
            avail,
            used,
            next_desc: 0,
            avail_idx: 0,
            used_seen: 0,
            heap: HEAP,
        }
    }
    fn queue(&self) -> BlkQueue {
        let mut q = SplitQueue::new(self.num, self.desc, self.avail, self.used);
        q.event_idx = true;
        q.indirect = true;
        BlkQueue::new(q)
    }
    /// A buffer of `len` bytes holding `data` (zero-padded).
    fn buf(&mut self, len: usize, data: &[u8]) -> u64 {
        let a = self.heap;
        self.heap += (len as u64).div_ceil(64) * 64 + 64;
        if self.heap > BASE + MEM as u64 {
            self.heap = HEAP;
            return self.buf(len, data);
        }
        let mut v = data.to_vec();
        v.resize(len, 0);
        self.m.put(a, &v);
        a
    }
    /// Adds a chain of (addr, len, writable) buffers.
    fn add(&mut self, bufs: &[(u64, u32, bool)]) -> u16 {
        let head = self.next_desc;
        for (k, &(addr, len, w)) in bufs.iter().enumerate() {
            let i = (head + k as u16) % self.num;
            let last = k + 1 == bufs.len();
            let flags =
                if w { VRING_DESC_F_WRITE } else { 0 } | if last { 0 } else { VRING_DESC_F_NEXT };
            let mut b = Vec::new();
            b.extend_from_slice(&addr.to_le_bytes());
            b.extend_from_slice(&len.to_le_bytes());
            b.extend_from_slice(&flags.to_le_bytes());
            b.extend_from_slice(&((i + 1) % self.num).to_le_bytes());
            self.m.put(self.desc + 16 * i as u64, &b);
        }
        self.next_desc = (head + bufs.len() as u16) % self.num;
        self.m.put(
            self.avail + 4 + 2 * (self.avail_idx % self.num) as u64,
            &head.to_le_bytes(),
        );
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.m.put(self.avail + 2, &self.avail_idx.to_le_bytes());
        head
    }
    /// Used elements since the last call.
    fn used(&mut self) -> Vec<(u32, u32)> {
        let idx = u16::from_le_bytes(self.m.get(self.used + 2, 2).try_into().unwrap());
        let mut v = Vec::new();
        while self.used_seen != idx {
            let e = self
                .m
                .get(self.used + 4 + 8 * (self.used_seen % self.num) as u64, 8);
            v.push((
                u32::from_le_bytes(e[..4].try_into().unwrap()),
                u32::from_le_bytes(e[4..].try_into().unwrap()),
            ));
            self.used_seen = self.used_seen.wrapping_add(1);
        }
        v
    }
}

fn hdr(kind: u32, sector: u64) -> Vec<u8> {
    let mut h = kind.to_le_bytes().to_vec();
    h.extend_from_slice(&[0; 4]);
    h.extend_from_slice(&sector.to_le_bytes());
    h
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

struct Dev {
    d: Drv,
    q: BlkQueue,
    disk: Vec<u8>,
    read_only: bool,
}

impl Dev {
    fn new() -> Self {
        let d = Drv::new(64);
        let q = d.queue();
        Self {
            d,
            q,
            disk: vec![0; SECTORS * 512],
            read_only: false,
        }
    }
    fn run(&mut self) -> Result<Outcome, RingError> {
        let mut disk = Disk {
            data: &mut self.disk,
            read_only: self.read_only,
            id: ID,
        };
        self.q.process(&mut self.d.m, &mut disk, BUDGET)
    }
    /// Runs one request and returns its status byte and used length.
    fn one(&mut self, bufs: &[(u64, u32, bool)], status_at: u64) -> (u8, u32) {
        self.d.m.put(status_at, &[0xff]);
        let head = self.d.add(bufs);
        let out = self.run().expect("process");
        assert_eq!(out.requests, 1);
        let used = self.d.used();
        assert_eq!(used.len(), 1);
        assert_eq!(used[0].0, u32::from(head));
        (self.d.m.get(status_at, 1)[0], used[0].1)
    }
    /// A write of `data` at `sector`: header and data split in pieces.
    fn write(&mut self, sector: u64, data: &[u8], pieces: usize) -> (u8, u32) {
        let h = self.d.buf(16, &hdr(VIRTIO_BLK_T_OUT, sector));
        let mut bufs = vec![(h, 8, false), (h + 8, 8, false)];
        let step = data.len().div_ceil(pieces.max(1)).max(1);
        for c in data.chunks(step) {
            let a = self.d.buf(c.len(), c);
            bufs.push((a, c.len() as u32, false));
        }
        let st = self.d.buf(1, &[]);
        bufs.push((st, 1, true));
        self.one(&bufs, st)
    }
    /// A read of `len` bytes at `sector` into `pieces` buffers, the last
    /// of which also holds the status byte. Returns the data read.
    fn read(&mut self, sector: u64, len: usize, pieces: usize) -> (u8, u32, Vec<u8>) {
        let h = self.d.buf(16, &hdr(VIRTIO_BLK_T_IN, sector));
        let mut bufs = vec![(h, 16, false)];
        let step = len.div_ceil(pieces.max(1)).max(1);
        let mut left = len;
        let mut at = Vec::new();
        while left > step {
            let a = self.d.buf(step, &[]);
            bufs.push((a, step as u32, true));
            at.push((a, step));
            left -= step;
        }
        // The last data piece and the status in one buffer.
        let a = self.d.buf(left + 1, &[]);
        bufs.push((a, left as u32 + 1, true));
        at.push((a, left));
        let (s, u) = self.one(&bufs, a + left as u64);
        let data = at.iter().flat_map(|&(a, l)| self.d.m.get(a, l)).collect();
        (s, u, data)
    }
    /// A request of `kind` at `sector` with a writable buffer of `room`
    /// bytes and a status byte of its own.
    fn simple(&mut self, kind: u32, sector: u64, room: usize) -> (u8, u32, Vec<u8>) {
        let h = self.d.buf(16, &hdr(kind, sector));
        let mut bufs = vec![(h, 16, false)];
        let r = self.d.buf(room.max(1), &[0xee; 64]);
        if room > 0 {
            bufs.push((r, room as u32, true));
        }
        let st = self.d.buf(1, &[]);
        bufs.push((st, 1, true));
        let (s, u) = self.one(&bufs, st);
        (s, u, self.d.m.get(r, room))
    }
}

#[test]
fn writes_read_back_byte_for_byte() {
    let mut d = Dev::new();
    let data = pattern(8 * 512, 7);
    assert_eq!(d.write(3, &data, 3), (VIRTIO_BLK_S_OK, 1));
    assert_eq!(&d.disk[3 * 512..11 * 512], &data[..]);
    // Everything else untouched.
    assert!(d.disk[..3 * 512].iter().all(|&b| b == 0));
    assert!(d.disk[11 * 512..].iter().all(|&b| b == 0));
    for pieces in [1, 2, 5, 8] {
        let (s, u, got) = d.read(3, 8 * 512, pieces);
        assert_eq!((s, u), (VIRTIO_BLK_S_OK, 8 * 512 + 1), "{pieces} pieces");
        assert_eq!(got, data, "{pieces} pieces");
    }
    // A part of it, at an offset.
    let (s, _, got) = d.read(5, 2 * 512, 2);
    assert_eq!(s, VIRTIO_BLK_S_OK);
    assert_eq!(got, &data[2 * 512..4 * 512]);
    // The last sector, and an overwrite.
    let last = pattern(512, 99);
    assert_eq!(d.write(SECTORS as u64 - 1, &last, 1).0, VIRTIO_BLK_S_OK);
    assert_eq!(d.read(SECTORS as u64 - 1, 512, 1).2, last);
    assert_eq!(d.q.stats.ok, 8);
}

#[test]
fn indirect_chains_are_served() {
    let mut d = Dev::new();
    let data = pattern(1024, 3);
    d.disk[512..1536].copy_from_slice(&data);
    let h = d.d.buf(16, &hdr(VIRTIO_BLK_T_IN, 1));
    let a = d.d.buf(1025, &[]);
    let mut table = Vec::new();
    for (k, (addr, len, flags)) in [(h, 16u32, VRING_DESC_F_NEXT), (a, 1025, VRING_DESC_F_WRITE)]
        .into_iter()
        .enumerate()
    {
        table.extend_from_slice(&addr.to_le_bytes());
        table.extend_from_slice(&len.to_le_bytes());
        table.extend_from_slice(&flags.to_le_bytes());
        table.extend_from_slice(&(k as u16 + 1).to_le_bytes());
    }
    let t = d.d.buf(32, &table);
    // One descriptor pointing to the table.
    let i = d.d.next_desc;
    let mut desc = t.to_le_bytes().to_vec();
    desc.extend_from_slice(&32u32.to_le_bytes());
    desc.extend_from_slice(&VRING_DESC_F_INDIRECT.to_le_bytes());
    desc.extend_from_slice(&0u16.to_le_bytes());
    d.d.m.put(d.d.desc + 16 * u64::from(i), &desc);
    d.d.m.put(d.d.avail + 4, &i.to_le_bytes());
    d.d.avail_idx = 1;
    d.d.m.put(d.d.avail + 2, &1u16.to_le_bytes());
    d.run().unwrap();
    assert_eq!(d.d.used(), vec![(u32::from(i), 1025)]);
    assert_eq!(d.d.m.get(a, 1024), data);
    assert_eq!(d.d.m.get(a + 1024, 1)[0], VIRTIO_BLK_S_OK);
}

#[test]
fn flush_and_get_id() {
    let mut d = Dev::new();
    assert_eq!(d.simple(VIRTIO_BLK_T_FLUSH, 0, 0).0, VIRTIO_BLK_S_OK);
    let (s, u, id) = d.simple(VIRTIO_BLK_T_GET_ID, 0, VIRTIO_BLK_ID_BYTES);
    assert_eq!((s, u), (VIRTIO_BLK_S_OK, VIRTIO_BLK_ID_BYTES as u32 + 1));
    assert_eq!(&id[..], &ID[..]);
    // A shorter buffer gets what fits.
    let (s, u, id) = d.simple(VIRTIO_BLK_T_GET_ID, 0, 8);
    assert_eq!((s, u), (VIRTIO_BLK_S_OK, 9));
    assert_eq!(&id[..], &ID[..8]);
}

#[test]
fn out_of_range_and_misaligned_requests_get_ioerr() {
    let mut d = Dev::new();
    let n = SECTORS as u64;
    for (sector, len) in [
        (n, 512),
        (n - 1, 1024),
        (u64::MAX, 512),
        (u64::MAX / 512 + 1, 512),
        (0, 100),
        (0, 513),
    ] {
        let (s, u, _) = d.read(sector, len, 2);
        assert_eq!((s, u), (VIRTIO_BLK_S_IOERR, 1), "read {sector} {len}");
        let (s, u) = d.write(sector, &pattern(len, 1), 2);
        assert_eq!((s, u), (VIRTIO_BLK_S_IOERR, 1), "write {sector} {len}");
    }
    assert!(
        d.disk.iter().all(|&b| b == 0),
        "a refused write changed the disk"
    );
    assert_eq!(d.q.stats.ioerr, 12);
}

#[test]
fn unknown_types_get_unsupp() {
    let mut d = Dev::new();
    for kind in [2, 3, 5, 11, 13, 0x8000_0001, u32::MAX] {
        let (s, u, _) = d.simple(kind, 0, 512);
        assert_eq!((s, u), (VIRTIO_BLK_S_UNSUPP, 1), "type {kind:#x}");
    }
    assert_eq!(d.q.stats.unsupp, 7);
}

#[test]
fn read_only_disk_refuses_writes_and_serves_reads() {
    let mut d = Dev::new();
    d.disk[..512].copy_from_slice(&pattern(512, 5));
    d.read_only = true;
    let before = d.disk.clone();
    assert_eq!(d.write(0, &pattern(512, 6), 1), (VIRTIO_BLK_S_IOERR, 1));
    assert_eq!(d.disk, before);
    let (s, _, got) = d.read(0, 512, 1);
    assert_eq!(s, VIRTIO_BLK_S_OK);
    assert_eq!(got, pattern(512, 5));
    assert_eq!(d.simple(VIRTIO_BLK_T_FLUSH, 0, 0).0, VIRTIO_BLK_S_OK);
}

#[test]
fn short_header_and_too_many_buffers_get_ioerr() {
    let mut d = Dev::new();
    let h = d.d.buf(16, &hdr(VIRTIO_BLK_T_IN, 0));
    let st = d.d.buf(1, &[]);
    assert_eq!(
        d.one(&[(h, 15, false), (st, 1, true)], st),
        (VIRTIO_BLK_S_IOERR, 1)
    );
    // No header at all: only the status.
    assert_eq!(d.one(&[(st, 1, true)], st), (VIRTIO_BLK_S_IOERR, 1));
    // An unmapped header.
    assert_eq!(
        d.one(&[(8, 16, false), (st, 1, true)], st),
        (VIRTIO_BLK_S_IOERR, 1)
    );
    // More buffers than recorded: 1 + 63 + status.
    let mut bufs = vec![(h, 16, false)];
    let a = d.d.buf(512, &[]);
    bufs.extend((0..63).map(|_| (a, 8u32, true)));
    bufs.push((st, 1, true));
    assert_eq!(d.one(&bufs, st), (VIRTIO_BLK_S_IOERR, 1));
    // At the limit it works: header, 62 data buffers (one sector), status.
    let mut bufs = vec![(h, 16, false)];
    bufs.extend((0..61).map(|k| (a + 8 * k, 8u32, true)));
    bufs.push((a + 488, 24, true));
    bufs.push((st, 1, true));
    assert_eq!(bufs.len(), MAX_SEGS);
    assert_eq!(d.one(&bufs, st), (VIRTIO_BLK_S_OK, 513));
}

#[test]
fn unmapped_data_gets_ioerr_and_the_queue_goes_on() {
    let mut d = Dev::new();
    let h = d.d.buf(16, &hdr(VIRTIO_BLK_T_IN, 0));
    let st = d.d.buf(1, &[]);
    assert_eq!(
        d.one(&[(h, 16, false), (8, 512, true), (st, 1, true)], st),
        (VIRTIO_BLK_S_IOERR, 1)
    );
    let h = d.d.buf(16, &hdr(VIRTIO_BLK_T_OUT, 0));
    assert_eq!(
        d.one(
            &[(h, 16, false), (u64::MAX - 100, 512, false), (st, 1, true)],
            st
        ),
        (VIRTIO_BLK_S_IOERR, 1)
    );
    assert_eq!(d.write(0, &pattern(512, 2), 1).0, VIRTIO_BLK_S_OK);
}

/// Chains whose status cannot be written: ring errors (NEEDS_RESET).
#[test]
fn chains_without_a_status_byte_are_ring_errors() {
    let cases: [&[(u64, u32, bool)]; 4] = [
        // The status buffer device-readable.
        &[(HEAP, 16, false), (HEAP + 64, 1, false)],
        // Only readable buffers: a write without a status.
        &[(HEAP, 16, false), (HEAP + 64, 512, false)],
        // A writable last buffer of no byte.
        &[(HEAP, 16, false), (HEAP + 64, 0, true)],
        // The status byte outside guest memory.
        &[(HEAP, 16, false), (8, 1, true)],
    ];
    for (k, bufs) in cases.iter().enumerate() {
        let mut d = Dev::new();
        d.d.m.put(HEAP, &hdr(VIRTIO_BLK_T_IN, 0));
        d.d.add(bufs);
        let r = d.run();
        assert!(r.is_err(), "case {k}: {r:?}");
        assert!(d.d.used().is_empty(), "case {k}: completed");
    }
    // A readable buffer after a writable one.
    let mut d = Dev::new();
    d.d.add(&[
        (HEAP, 16, false),
        (HEAP + 64, 1, true),
        (HEAP + 128, 1, false),
    ]);
    assert_eq!(d.run(), Err(RingError::BadDirection));
}

#[test]
fn a_run_stops_at_its_budget() {
    let mut d = Dev::new();
    let st = d.d.buf(1, &[]);
    let h = d.d.buf(16, &hdr(VIRTIO_BLK_T_FLUSH, 0));
    for _ in 0..40 {
        d.d.add(&[(h, 16, false), (st, 1, true)]);
    }
    let mut disk = Disk {
        data: &mut d.disk,
        read_only: false,
        id: ID,
    };
    let b = Budget {
        requests: 16,
        bytes: 1 << 20,
    };
    let out = d.q.process(&mut d.d.m, &mut disk, b).unwrap();
    assert_eq!((out.requests, out.more), (16, true));
    let out = d.q.process(&mut d.d.m, &mut disk, BUDGET).unwrap();
    assert_eq!((out.requests, out.more), (24, false));
    assert_eq!(d.d.used().len(), 40);
}

/// The config space and ID string the module serves.
#[test]
fn config_and_serial() {
    use virtio_bindings::virtio_blk as vb;
    assert_eq!(
        OUTHDR_LEN as usize,
        std::mem::size_of::<vb::virtio_blk_outhdr>()
    );
    assert_eq!(
        CONFIG_SIZE,
        std::mem::offset_of!(vb::virtio_blk_config, blk_size) + 4
    );
    let c = config(0x0102_0304_0506_0708);
    assert_eq!(&c[..8], &0x0102_0304_0506_0708u64.to_le_bytes());
    let at = std::mem::offset_of!(vb::virtio_blk_config, seg_max);
    assert_eq!(&c[at..at + 4], &SEG_MAX.to_le_bytes());
    let at = std::mem::offset_of!(vb::virtio_blk_config, blk_size);
    assert_eq!(&c[at..at + 4], &512u32.to_le_bytes());
    // size_max and the geometry: not offered, 0.
    assert!(c[8..12].iter().chain(&c[16..20]).all(|&b| b == 0));
    // The guid_t of 0abc00ff-1234-...: the first field little-endian.
    let mut u = [0u8; 16];
    u[..6].copy_from_slice(&[0xff, 0x00, 0xbc, 0x0a, 0x34, 0x12]);
    assert_eq!(&serial(&u), b"vhost-mdev-0abc00ff\0");
}

/// A request of the property test.
#[derive(Clone, Debug)]
enum Req {
    Read {
        sector: u64,
        sectors: usize,
        pieces: usize,
    },
    Write {
        sector: u64,
        sectors: usize,
        pieces: usize,
        seed: u8,
    },
}

fn req() -> impl Strategy<Value = Req> {
    prop_oneof![
        (0u64..70, 0usize..6, 1usize..5).prop_map(|(sector, sectors, pieces)| Req::Read {
            sector,
            sectors,
            pieces
        }),
        (0u64..70, 0usize..6, 1usize..5, any::<u8>()).prop_map(
            |(sector, sectors, pieces, seed)| Req::Write {
                sector,
                sectors,
                pieces,
                seed
            }
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Any sequence of reads and writes behaves as a plain array of
    /// sectors: in range, the bytes; out of range, IOERR and no change.
    #[test]
    fn requests_match_a_model(reqs in proptest::collection::vec(req(), 1..40), ro in any::<bool>()) {
        let mut d = Dev::new();
        d.read_only = ro;
        let mut model = vec![0u8; SECTORS * 512];
        for r in reqs {
            match r {
                Req::Read { sector, sectors, pieces } => {
                    let ok = sector < SECTORS as u64 && sector as usize + sectors <= SECTORS;
                    let (s, _, got) = d.read(sector, sectors * 512, pieces);
                    if ok {
                        prop_assert_eq!(s, VIRTIO_BLK_S_OK);
                        let at = sector as usize * 512;
                        prop_assert!(got == model[at..at + sectors * 512]);
                    } else {
                        prop_assert_eq!(s, VIRTIO_BLK_S_IOERR);
                    }
                }
                Req::Write { sector, sectors, pieces, seed } => {
                    let ok = !ro && sector < SECTORS as u64 && sector as usize + sectors <= SECTORS;
                    let data = pattern(sectors * 512, seed);
                    let (s, _) = d.write(sector, &data, pieces);
                    if ok {
                        prop_assert_eq!(s, VIRTIO_BLK_S_OK);
                        let at = sector as usize * 512;
                        model[at..at + data.len()].copy_from_slice(&data);
                    } else {
                        prop_assert_eq!(s, VIRTIO_BLK_S_IOERR);
                    }
                }
            }
            prop_assert!(d.disk == model);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Garbage rings: the device terminates with a result, touching only
    /// mapped memory (the fake faults on anything else), in a bounded
    /// number of accesses.
    #[test]
    fn hostile_rings_terminate(
        garbage in proptest::collection::vec(any::<u8>(), 0x3000),
        num_log in 0u32..8,
        indirect in any::<bool>(),
        event_idx in any::<bool>(),
        ro in any::<bool>(),
    ) {
        let num = 1u16 << num_log;
        let mut m = Mem::new(0x3000 + 0x10000);
        m.bytes[..0x3000].copy_from_slice(&garbage);
        let mut sq = SplitQueue::new(num, BASE, BASE + 0x1000, BASE + 0x1800);
        sq.event_idx = event_idx;
        sq.indirect = indirect;
        let mut q = BlkQueue::new(sq);
        let mut data = vec![0u8; SECTORS * 512];
        let mut disk = Disk { data: &mut data, read_only: ro, id: ID };
        let _ = q.process(&mut m, &mut disk, BUDGET);
        // Each request walks at most num + MAX_INDIRECT descriptors, and
        // moves data through at most MAX_SEGS buffers.
        let bound = 64 * (8 + 2 * (u64::from(num) + u64::from(MAX_INDIRECT) + 2 + MAX_SEGS as u64));
        prop_assert!(m.accesses <= bound, "{} accesses", m.accesses);
    }

    /// Ring addresses anywhere in the 64-bit space: no arithmetic overflow
    /// (a panic in the kernel), only faults.
    #[test]
    fn ring_addresses_anywhere(
        addrs in proptest::array::uniform3(prop_oneof![any::<u64>(), (u64::MAX - 64)..=u64::MAX, Just(BASE)]),
        num_log in 0u32..16,
    ) {
        let mut m = Mem::new(0x4000);
        let mut q = BlkQueue::new(SplitQueue::new(1 << num_log, addrs[0], addrs[1], addrs[2]));
        let mut data = vec![0u8; 512];
        let mut disk = Disk { data: &mut data, read_only: false, id: ID };
        let _ = q.process(&mut m, &mut disk, BUDGET);
    }
}
