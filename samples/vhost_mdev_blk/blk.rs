// SPDX-License-Identifier: GPL-2.0

//! The request logic of the virtio-blk sample: a RAM disk served from one
//! split virtqueue (virtio 1.x, 5.2).
//!
//! Pure logic with no kernel dependencies, like the net sample's
//! `virtq.rs`: the ring is served by the walker of the `vhost-mdev-proto`
//! crate ([`crate::vring`], included by path), guest memory is reached
//! through its [`GuestMemory`] trait, and `tools/proto-tests` compiles this
//! file on the host, where tests drive it with good and hostile chains.
//!
//! A request is a chain: a device-readable `struct virtio_blk_outhdr`
//! (type, reserved, sector; 16 bytes, in any number of buffers), the data
//! (readable for `T_OUT`, writable for `T_IN` and `T_GET_ID`), and the
//! status byte, the last byte of the last, device-writable, buffer. A
//! request the device can answer gets a status: `S_IOERR` for a short
//! header, a length that is not a multiple of the sector, a range beyond
//! the capacity, a write to a read-only disk or guest memory that faults
//! in the data; `S_UNSUPP` for another type. A chain without a writable
//! last byte cannot be answered: it is a [`RingError`], which the device
//! turns into DEVICE_NEEDS_RESET, as for any corrupt ring.

pub use crate::vring::*;

/// Bytes of a sector (capacity and `sector` count in these).
pub const SECTOR_SIZE: u64 = 512;
// The request types, status values and ID length are bindgen's reading
// of <linux/virtio_blk.h> in the module (`rust/virtio.rs`), and
// `virtio-bindings`' on the host (`tools/proto-tests`).
pub use crate::virtio::{
    VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP,
    VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
/// Size of `struct virtio_blk_outhdr`.
pub const OUTHDR_LEN: u64 = 16;
/// Buffers of a chain the device records; a chain with more is answered
/// `S_IOERR` (the config's `seg_max` tells the driver: [`SEG_MAX`]).
pub const MAX_SEGS: usize = 64;
/// Data buffers of a request (`seg_max`): [`MAX_SEGS`] less the header
/// and status buffers.
pub const SEG_MAX: u32 = MAX_SEGS as u32 - 2;

/// Bytes of the config space: `struct virtio_blk_config` up to and
/// including `blk_size`.
pub const CONFIG_SIZE: usize = 24;

/// The config space of a disk of `capacity` sectors: `capacity`, `seg_max`
/// ([`SEG_MAX`]) and `blk_size` (512); `size_max` and the geometry are not
/// offered.
pub fn config(capacity: u64) -> [u8; CONFIG_SIZE] {
    let mut c = [0u8; CONFIG_SIZE];
    c[..8].copy_from_slice(&capacity.to_le_bytes());
    c[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
    c[20..24].copy_from_slice(&(SECTOR_SIZE as u32).to_le_bytes());
    c
}

/// The `VIRTIO_BLK_T_GET_ID` answer of the device with this UUID (the
/// mdev's `guid_t`): `vhost-mdev-` and the UUID's first eight hex digits
/// as written (`guid_t` keeps that field little-endian), NUL-padded.
pub fn serial(uuid: &[u8; 16]) -> [u8; VIRTIO_BLK_ID_BYTES] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = [0u8; VIRTIO_BLK_ID_BYTES];
    id[..11].copy_from_slice(b"vhost-mdev-");
    for (k, b) in uuid[..4].iter().rev().enumerate() {
        id[11 + 2 * k] = HEX[usize::from(b >> 4)];
        id[12 + 2 * k] = HEX[usize::from(b & 15)];
    }
    id
}

/// The work of one run of [`BlkQueue::process`], checked between requests:
/// the request in progress completes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Requests answered.
    pub requests: u32,
    /// Data bytes moved.
    pub bytes: u64,
}

/// The default budget of a run.
pub const BUDGET: Budget = Budget {
    requests: 64,
    bytes: 0x80000,
};

/// What one run of [`BlkQueue::process`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Interrupt the queue.
    pub irq: bool,
    /// The budget ran out, or the run yielded, with work left.
    pub more: bool,
    /// Requests answered.
    pub requests: u32,
    /// Data bytes moved.
    pub bytes: u64,
}

/// Counters of a disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests answered `S_OK`.
    pub ok: u64,
    /// Requests answered `S_IOERR`.
    pub ioerr: u64,
    /// Requests answered `S_UNSUPP`.
    pub unsupp: u64,
}

/// The disk a queue serves: its bytes (a whole number of sectors), whether
/// it takes writes, and its ID string.
pub struct Disk<'a> {
    /// The contents.
    pub data: &'a mut [u8],
    /// `VIRTIO_BLK_F_RO`: writes are answered `S_IOERR`.
    pub read_only: bool,
    /// The `T_GET_ID` answer (NUL-padded).
    pub id: &'a [u8; VIRTIO_BLK_ID_BYTES],
}

/// The request queue of a virtio-blk device.
#[derive(Clone, Copy, Debug)]
pub struct BlkQueue {
    /// Queue 0.
    pub q: SplitQueue,
    /// Counters.
    pub stats: Stats,
    /// The buffers of the chain in progress.
    segs: [Segment; MAX_SEGS],
}

/// Moves `buf.len()` bytes between `buf` and the buffers of `segs` with the
/// given direction, from byte `skip` of them on.
fn xfer<M: GuestMemory>(
    mem: &mut M,
    segs: &[Segment],
    write: bool,
    mut skip: u64,
    buf: &mut [u8],
    to_guest: bool,
) -> Result<(), Fault> {
    let mut done = 0usize;
    for s in segs.iter().filter(|s| s.write == write) {
        if done == buf.len() {
            break;
        }
        let len = u64::from(s.len);
        if skip >= len {
            skip -= len;
            continue;
        }
        // `len - skip` fits the u32 of `len`.
        let n = ((len - skip) as usize).min(buf.len() - done);
        let addr = s.addr.checked_add(skip).ok_or(Fault)?;
        let part = &mut buf[done..done + n];
        if to_guest {
            mem.write(addr, part)?;
        } else {
            mem.read(addr, part)?;
        }
        done += n;
        skip = 0;
    }
    if done == buf.len() {
        Ok(())
    } else {
        Err(Fault)
    }
}

/// The byte range of `data_len` bytes at `sector` of a disk of `len`
/// bytes, if the request is a whole number of sectors inside it.
fn range(sector: u64, data_len: u64, len: usize) -> Option<core::ops::Range<usize>> {
    let cap = len as u64 / SECTOR_SIZE;
    if data_len & (SECTOR_SIZE - 1) != 0 || sector >= cap || data_len / SECTOR_SIZE > cap - sector {
        return None;
    }
    // Both within `len` (checked above).
    let start = (sector * SECTOR_SIZE) as usize;
    Some(start..start + data_len as usize)
}

impl Default for BlkQueue {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl BlkQueue {
    /// An unconfigured queue with zero counters, as a constant that can be
    /// assigned in place (the queue is about 1.4 KiB: keep it off kernel
    /// stacks).
    pub const EMPTY: Self = Self {
        q: SplitQueue::EMPTY,
        stats: Stats {
            ok: 0,
            ioerr: 0,
            unsupp: 0,
        },
        segs: [Segment {
            addr: 0,
            len: 0,
            write: false,
        }; MAX_SEGS],
    };

    /// A queue over `q`.
    pub fn new(q: SplitQueue) -> Self {
        Self {
            q,
            stats: Stats::default(),
            segs: [Segment::default(); MAX_SEGS],
        }
    }

    /// Answers the requests the driver made available, within `budget`.
    pub fn process<M: GuestMemory>(
        &mut self,
        mem: &mut M,
        disk: &mut Disk<'_>,
        budget: Budget,
    ) -> Result<Outcome, RingError> {
        self.process_yielding(mem, disk, budget, || false)
    }

    /// As [`BlkQueue::process`], and ends the run early, between two
    /// requests, when `yield_now()` says the CPU is wanted elsewhere.
    pub fn process_yielding<M: GuestMemory>(
        &mut self,
        mem: &mut M,
        disk: &mut Disk<'_>,
        budget: Budget,
        mut yield_now: impl FnMut() -> bool,
    ) -> Result<Outcome, RingError> {
        let mut out = Outcome::default();
        if !self.q.ready || self.q.num == 0 {
            return Ok(out);
        }
        let mut pending = self.q.pending(mem)?;
        let mut stopped = false;
        while pending > 0 {
            if out.requests > 0
                && (out.requests >= budget.requests || out.bytes >= budget.bytes || yield_now())
            {
                stopped = true;
                break;
            }
            let (head, used, bytes) = self.request(mem, disk)?;
            self.q.last_avail = self.q.last_avail.wrapping_add(1);
            self.q.put_used(mem, head, used)?;
            pending -= 1;
            out.requests += 1;
            out.bytes += bytes;
        }
        // Publish also with nothing answered: with EVENT_IDX this asks for
        // the next kick.
        if out.requests > 0 || self.q.event_idx {
            self.q.publish(mem)?;
        }
        // The used index and avail_event stores above must be visible before
        // we read the driver's used_event/flags and avail index below.
        mem.fence();
        if out.requests > 0 {
            out.irq = self.q.needs_interrupt(mem)?;
        }
        // Requests made available while we published (the driver may have
        // seen the old avail_event and not kicked): look again.
        out.more = stopped || self.q.pending(mem)? > 0;
        Ok(out)
    }

    /// Walks, answers and completes the request at the head of the ring.
    /// Returns its head, the used length and the data bytes moved.
    fn request<M: GuestMemory>(
        &mut self,
        mem: &mut M,
        disk: &mut Disk<'_>,
    ) -> Result<(u16, u32, u64), RingError> {
        let (head, mut w) = self.q.chain(mem, 0)?;
        let (mut n, mut too_many) = (0usize, false);
        let (mut readable, mut writable) = (0u64, 0u64);
        let mut last = None;
        while let Some(seg) = w.next(&mut self.q, mem)? {
            match self.segs.get_mut(n) {
                Some(s) => *s = seg,
                None => too_many = true,
            }
            n += 1;
            last = Some(seg);
            if seg.write {
                writable += u64::from(seg.len);
            } else {
                readable += u64::from(seg.len);
            }
        }
        // The status byte: the last byte of the last buffer, which must be
        // device-writable; without it the request cannot be answered.
        let st = last
            .filter(|s| s.write && s.len > 0)
            .ok_or(RingError::BadDirection)?;
        let status_at = st
            .addr
            .checked_add(u64::from(st.len) - 1)
            .ok_or(RingError::Fault)?;
        let segs = &self.segs[..n.min(MAX_SEGS)];
        // Writable bytes before the status byte.
        let room = writable.saturating_sub(1);
        let mut hdr = [0u8; OUTHDR_LEN as usize];
        let (status, data, written) = if too_many
            || readable < OUTHDR_LEN
            || xfer(mem, segs, false, 0, &mut hdr, false).is_err()
        {
            (VIRTIO_BLK_S_IOERR, 0, 0)
        } else {
            let kind = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
            let mut sector = [0u8; 8];
            sector.copy_from_slice(&hdr[8..16]);
            let sector = u64::from_le_bytes(sector);
            Self::serve(mem, segs, disk, kind, sector, readable - OUTHDR_LEN, room)
        };
        match status {
            VIRTIO_BLK_S_OK => self.stats.ok += 1,
            VIRTIO_BLK_S_UNSUPP => self.stats.unsupp += 1,
            _ => self.stats.ioerr += 1,
        }
        mem.write(status_at, &[status])?;
        // Bytes written into the chain: the data and the status.
        let used = u32::try_from(written + 1).unwrap_or(u32::MAX);
        Ok((head, used, data))
    }

    /// The status of request `kind` at `sector`, with `out` readable data
    /// bytes and `room` writable ones; the data bytes moved, and those
    /// written into the chain.
    fn serve<M: GuestMemory>(
        mem: &mut M,
        segs: &[Segment],
        disk: &mut Disk<'_>,
        kind: u32,
        sector: u64,
        out: u64,
        room: u64,
    ) -> (u8, u64, u64) {
        let len = disk.data.len();
        let r = match kind {
            VIRTIO_BLK_T_IN => match range(sector, room, len) {
                Some(r) => xfer(mem, segs, true, 0, &mut disk.data[r], true).map(|_| (room, room)),
                None => Err(Fault),
            },
            VIRTIO_BLK_T_OUT => match range(sector, out, len) {
                Some(r) if !disk.read_only => {
                    xfer(mem, segs, false, OUTHDR_LEN, &mut disk.data[r], false).map(|_| (out, 0))
                }
                _ => Err(Fault),
            },
            VIRTIO_BLK_T_FLUSH => Ok((0, 0)),
            VIRTIO_BLK_T_GET_ID => {
                let n = room.min(VIRTIO_BLK_ID_BYTES as u64) as usize;
                let mut id = *disk.id;
                xfer(mem, segs, true, 0, &mut id[..n], true).map(|_| (n as u64, n as u64))
            }
            _ => return (VIRTIO_BLK_S_UNSUPP, 0, 0),
        };
        match r {
            Ok((moved, written)) => (VIRTIO_BLK_S_OK, moved, written),
            // A data buffer the driver unmapped: the request fails, the
            // device goes on.
            Err(Fault) => (VIRTIO_BLK_S_IOERR, 0, 0),
        }
    }
}
