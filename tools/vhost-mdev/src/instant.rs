// SPDX-License-Identifier: GPL-2.0 OR MIT
//! An in-process virtio-net loopback that completes at once: the ceiling
//! of the driver itself.
//!
//! [`InstantNet`] is a [`VhostBackend`] and a [`DmaMapper`] with no kernel
//! behind it. It answers the vhost requests of [`crate::driver::NetDriver`]
//! (features, the status state machine, a config space with a MAC, ring
//! size, addresses, bases and enables) with the vhost-mdev core's own
//! device model (`vhost_mdev_proto::proto::Model`, the code the module
//! runs), for which it is the parent's device ops
//! ([`vhost_mdev_proto::proto::Backend`]); it reaches the driver's memory
//! through the DMA mappings it was given (IOVA -> the driver's own pages),
//! and serves the split rings with the small device-side walker below.
//!
//! A kick ([`VhostBackend::notify`], on either queue) loops every available
//! TX frame to RX in the caller's thread, before `notify` returns: the TX
//! chain is completed with used length 0, RX buffers are taken (several,
//! spanned, with `VIRTIO_NET_F_MRG_RXBUF`), a virtio-net header with
//! `num_buffers` is written, and the used length reports the whole frame.
//! Only the first [`InstantOptions::copy_limit`] bytes of each frame are
//! copied (64 by default: the benchmark driver reads the sequence number at
//! frame offset 18 and nothing past it), so the device costs next to nothing
//! whatever the frame size: userspace copies of large buffers collapse under
//! TCG, and what is measured here is the driver. `vhost-mdev ping instant`
//! copies whole frames, so that they come back byte-identical.
//!
//! Notifications follow the driver's suppression: the call eventfd of a
//! queue is written only when `VIRTIO_RING_F_EVENT_IDX`'s `used_event` is
//! crossed by the completions of a kick, or without EVENT_IDX when
//! `VRING_AVAIL_F_NO_INTERRUPT` is clear. TX kicks are always wanted (the
//! device runs only when kicked); RX kicks only after a frame found too few
//! RX buffers, until the driver reposts some (`avail_event` set to the
//! driver's current index, or `VRING_USED_F_NO_NOTIFY` cleared). As in
//! vhost, a stale `avail_event` is crossed again once per 65536 RX
//! buffers: one spurious, harmless kick.
//!
//! Kick eventfds are refused ([`Error::Unsupported`]): with no thread to
//! wait on them, the device runs only through `notify`.
//!
//! # Why not `virtio-queue`
//!
//! The first version served the rings with the rust-vmm `virtio-queue` 0.18
//! device-side `Queue` and `DescriptorChain` over a `vm-memory` 0.18
//! `GuestMemoryMmap` built from the mappings (`MmapRegion::build_raw`). It
//! worked (the same tests passed) but did not cost next to nothing: every
//! ring or buffer access (about 14 per frame) goes through vm-memory's
//! generic slice iterators (region lookup, a `VolatileSlice`, a peekable
//! error adapter), and `perf` on the host put 69% of the 64-byte batch
//! loop in the device (2.40 M frames/s), the driver getting the rest: the
//! "ceiling" would have measured vm-memory. This walker caches the host
//! addresses of the rings (checked against the mappings when they are set
//! up or the mappings change), reads descriptors with one 16-byte copy and
//! translates each buffer segment once. With it the same loop runs at
//! 6-7 M frames/s on the host and `perf` puts 18% of it in the device (the
//! largest single cost left is the driver's own clock reads, 30%).

use std::cell::{RefCell, RefMut};
use std::sync::atomic::{fence, AtomicU16, Ordering};

use vmm_sys_util::eventfd::EventFd;

use crate::backend::VhostBackend;
use crate::error::{Errno, Error, Result};
use crate::msg::{Reply, Request};
use crate::net::{Mac, VirtioNetHdr, NET_CONFIG_LEN, NET_HDR_LEN};
use crate::uapi::*;
use crate::vfio::DmaMapper;
use crate::virtq::{
    vring_need_event, DESC_SIZE, MAX_QUEUE_SIZE, VRING_AVAIL_F_NO_INTERRUPT, VRING_DESC_F_INDIRECT,
    VRING_DESC_F_NEXT, VRING_DESC_F_WRITE, VRING_USED_F_NO_NOTIFY,
};
use vhost_mdev_proto::packed::{PackedQueue, PACKED_BASE_INIT};
use vhost_mdev_proto::proto::{self, Backend, Model, VqConfig, MAX_PAYLOAD};
use vhost_mdev_proto::vring::{Fault, GuestMemory, RingError};

/// The features offered by default: those of the vhost-mdev sample parent
/// (`samples/vhost_mdev_net`).
pub const INSTANT_FEATURES: u64 = (1 << VIRTIO_F_VERSION_1)
    | (1 << VIRTIO_F_ACCESS_PLATFORM)
    | (1 << VIRTIO_NET_F_MAC)
    | (1 << VIRTIO_NET_F_MTU)
    | (1 << VIRTIO_NET_F_STATUS)
    | (1 << VIRTIO_RING_F_EVENT_IDX)
    | (1 << VIRTIO_RING_F_INDIRECT_DESC)
    | (1 << VIRTIO_NET_F_MRG_RXBUF)
    | (1 << VIRTIO_F_RING_PACKED)
    | (1 << VIRTIO_NET_F_MQ);

/// Bytes of each frame copied by default: the benchmark driver reads the
/// first 26.
pub const HEAD_COPY: usize = 64;

/// The default MAC (locally administered).
pub const INSTANT_MAC: Mac = Mac([0x02, 0x69, 0x6e, 0x73, 0x74, 0x00]);

/// Queue kinds: RX (queue 2i of pair i) and TX (2i + 1).
const RX: usize = 0;
const TX: usize = 1;
/// Most queue pairs of an instant device.
pub const INSTANT_MAX_PAIRS: u16 = 16;
/// Bytes copied through the stack per step of a whole-frame copy.
const CHUNK: usize = 4096;

/// Options of an [`InstantNet`].
#[derive(Debug, Clone, Copy)]
pub struct InstantOptions {
    /// Features offered (a subset of [`INSTANT_FEATURES`] makes sense;
    /// `VERSION_1` and `ACCESS_PLATFORM` are required by the driver).
    pub features: u64,
    /// Bytes of each frame copied from TX to RX ([`HEAD_COPY`];
    /// `usize::MAX` copies whole frames). The used length reports the
    /// whole frame either way.
    pub copy_limit: usize,
    /// Largest queue size (`VHOST_VDPA_GET_VRING_NUM`), a power of two.
    pub queue_max: u16,
    /// The MAC in the config space.
    pub mac: Mac,
    /// The MTU in the config space.
    pub mtu: u16,
    /// Queue pairs (1 to [`INSTANT_MAX_PAIRS`]): `2 * pairs` queues,
    /// TX of pair i looped to RX of pair i, as the sample does;
    /// `VIRTIO_NET_F_MQ` is offered (if in `features`) only above 1.
    pub pairs: u16,
}

impl Default for InstantOptions {
    fn default() -> Self {
        InstantOptions {
            features: INSTANT_FEATURES,
            copy_limit: HEAD_COPY,
            queue_max: 1024,
            mac: INSTANT_MAC,
            mtu: 1500,
            pairs: 1,
        }
    }
}

/// Counters of an [`InstantNet`] since it was created.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InstantStats {
    /// Frames looped from TX to RX.
    pub frames: u64,
    /// Frame bytes looped (without headers; as reported, not as copied).
    pub bytes: u64,
    /// RX buffers (chains) used.
    pub rx_buffers: u64,
    /// Kicks received per queue kind (RX, TX; all pairs), before
    /// DRIVER_OK included.
    pub kicks: [u64; 2],
    /// Call eventfd writes per queue kind (RX, TX; all pairs).
    pub irqs: [u64; 2],
    /// Times a TX frame found too few RX buffers and waited for an RX kick.
    pub stalls: u64,
    /// Frames dropped because the one RX buffer (no MRG_RXBUF) was too
    /// small.
    pub dropped: u64,
}

/// A device error: the ring or a buffer cannot be followed.
fn dev_err(what: impl std::fmt::Display) -> Error {
    Error::Protocol(format!("instant device: {what}"))
}

fn req_err(req: &Request, errno: i32) -> Error {
    Error::Request {
        request: req.name().into(),
        errno: Errno(errno),
    }
}

/// One DMA mapping: IOVA, size, user address.
#[derive(Debug, Clone, Copy)]
struct Mapping {
    iova: u64,
    size: u64,
    vaddr: u64,
}

/// The driver's DMA mappings: the device's view of its memory.
#[derive(Debug, Default)]
struct Iommu {
    maps: Vec<Mapping>,
}

impl Iommu {
    /// The host address of `iova..iova + len`, if one mapping holds it all.
    fn translate(&self, iova: u64, len: u64) -> Option<*mut u8> {
        self.maps.iter().find_map(|m| {
            let off = iova.checked_sub(m.iova)?;
            (len <= m.size && off <= m.size - len).then(|| (m.vaddr + off) as *mut u8)
        })
    }

    /// The largest piece at `iova`, up to `len` bytes, that one mapping
    /// holds: its host address and length.
    fn piece(&self, iova: u64, len: usize) -> Result<(*mut u8, usize)> {
        self.maps
            .iter()
            .find_map(|m| {
                let off = iova.checked_sub(m.iova).filter(|o| *o < m.size)?;
                let n = (m.size - off).min(len as u64) as usize;
                Some(((m.vaddr + off) as *mut u8, n))
            })
            .ok_or_else(|| dev_err(format_args!("access to unmapped IOVA {iova:#x}")))
    }

    /// Copies guest memory at `iova` into `out`.
    fn read(&self, mut iova: u64, out: &mut [u8]) -> Result<()> {
        let mut done = 0;
        while done < out.len() {
            let (p, n) = self.piece(iova, out.len() - done)?;
            // SAFETY: p..p + n lies in one mapping (piece()), which map_dma's
            // caller keeps mapped until unmap_dma removes it from `maps`;
            // `out` is a Rust buffer outside that memory.
            unsafe { std::ptr::copy_nonoverlapping(p, out[done..].as_mut_ptr(), n) };
            done += n;
            iova += n as u64;
        }
        Ok(())
    }

    /// Copies `data` to guest memory at `iova`.
    fn write(&self, mut iova: u64, data: &[u8]) -> Result<()> {
        let mut done = 0;
        while done < data.len() {
            let (p, n) = self.piece(iova, data.len() - done)?;
            // SAFETY: as in read(); `data` is outside the mapped memory.
            unsafe { std::ptr::copy_nonoverlapping(data[done..].as_ptr(), p, n) };
            done += n;
            iova += n as u64;
        }
        Ok(())
    }
}

/// A guest-memory segment of a descriptor chain.
#[derive(Debug, Clone, Copy)]
struct Seg {
    addr: u64,
    len: u32,
}

/// A split-ring descriptor.
#[derive(Debug, Clone, Copy)]
struct Desc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

/// Reads the descriptor at `p` (any alignment: indirect tables need not
/// be aligned).
///
/// # Safety
///
/// `p..p + 16` must be inside a live DMA mapping.
unsafe fn read_desc(p: *const u8) -> Desc {
    let mut b = [0u8; DESC_SIZE];
    // SAFETY: the caller guarantees the 16 bytes are mapped; `b` is a
    // local buffer.
    unsafe { std::ptr::copy_nonoverlapping(p, b.as_mut_ptr(), DESC_SIZE) };
    let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    Desc {
        addr: u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        len: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
        flags: u16_at(12),
        next: u16_at(14),
    }
}

/// Host addresses of the three parts of a ring, checked against the
/// mappings when they were computed (see [`Vq::refresh`]).
#[derive(Debug, Clone, Copy)]
struct Ring {
    size: u16,
    desc: *mut u8,
    avail: *mut u8,
    used: *mut u8,
}

// Offsets inside the rings (virtio 1.x, 2.7).
const AVAIL_RING: usize = 4;
const USED_RING: usize = 4;
const USED_ELEM: usize = 8;

impl Ring {
    fn mask(&self, i: u16) -> usize {
        usize::from(i & (self.size - 1))
    }

    /// `avail.idx`, with acquire ordering (entries and descriptors after).
    fn avail_idx(&self) -> u16 {
        // SAFETY: avail..avail + 6 + 2 * size is mapped (Vq::refresh) and
        // 2-byte aligned (set_vring_addr); AtomicU16 has u16's layout.
        let a = unsafe { AtomicU16::from_ptr(self.avail.add(2) as *mut u16) };
        u16::from_le(a.load(Ordering::Acquire))
    }

    fn avail_flags(&self) -> u16 {
        // SAFETY: as in avail_idx().
        u16::from_le(unsafe { std::ptr::read_volatile(self.avail as *const u16) })
    }

    /// `avail.ring[i % size]`.
    fn avail_entry(&self, i: u16) -> u16 {
        // SAFETY: as in avail_idx(); the masked index is below size.
        u16::from_le(unsafe {
            std::ptr::read_volatile(self.avail.add(AVAIL_RING + 2 * self.mask(i)) as *const u16)
        })
    }

    /// `used_event`, after the available ring.
    fn used_event(&self) -> u16 {
        // SAFETY: as in avail_idx(): the last field of the mapped range.
        u16::from_le(unsafe {
            std::ptr::read_volatile(
                self.avail.add(AVAIL_RING + 2 * usize::from(self.size)) as *const u16
            )
        })
    }

    /// Descriptor `i` of the table (`i` below size).
    fn desc(&self, i: u16) -> Desc {
        debug_assert!(i < self.size);
        // SAFETY: desc..desc + 16 * size is mapped (Vq::refresh) and
        // i < size (checked by the caller, masked here again).
        unsafe { read_desc(self.desc.add(DESC_SIZE * self.mask(i))) }
    }

    fn set_used_flags(&self, flags: u16) {
        // SAFETY: used..used + 6 + 8 * size is mapped (Vq::refresh) and
        // 4-byte aligned (set_vring_addr).
        unsafe { std::ptr::write_volatile(self.used as *mut u16, flags.to_le()) };
    }

    /// `avail_event`, after the used ring.
    fn set_avail_event(&self, v: u16) {
        // SAFETY: as in set_used_flags(): the last field of the range.
        unsafe {
            std::ptr::write_volatile(
                self.used
                    .add(USED_RING + USED_ELEM * usize::from(self.size))
                    as *mut u16,
                v.to_le(),
            )
        };
    }

    /// Writes used element `i % size` and then publishes `used.idx = idx`
    /// (release: the element and the buffers before the index).
    fn push_used(&self, i: u16, id: u16, len: u32, idx: u16) {
        let e = USED_RING + USED_ELEM * self.mask(i);
        // SAFETY: as in set_used_flags(); the masked element is inside
        // the ring, 4-byte aligned, and idx at used + 2 is 2-byte aligned.
        unsafe {
            std::ptr::write_volatile(self.used.add(e) as *mut u32, u32::from(id).to_le());
            std::ptr::write_volatile(self.used.add(e + 4) as *mut u32, len.to_le());
            AtomicU16::from_ptr(self.used.add(2) as *mut u16).store(idx.to_le(), Ordering::Release);
        }
    }
}

/// One queue as the device sees it.
#[derive(Debug, Default)]
struct Vq {
    /// Size, and whether the driver set it.
    size: u16,
    num_set: bool,
    /// Ring IOVAs, and whether the driver set them.
    desc: u64,
    avail: u64,
    used: u64,
    addr_set: bool,
    ready: bool,
    event_idx: bool,
    /// Host addresses of the rings while they are mapped.
    ring: Option<Ring>,
    /// Next available entry to take.
    last_avail: u16,
    /// `avail.idx` as last read.
    avail_shadow: u16,
    /// Next used index to write.
    used_idx: u16,
    /// Used entries since the last interrupt decision.
    added: u16,
    /// A packed ring (`VIRTIO_F_RING_PACKED` at FEATURES_OK).
    packed: bool,
    /// The vring base set by the driver (32-bit: packed), if any.
    base: Option<u32>,
    /// The packed ring's device side, from DRIVER_OK (the proto crate's
    /// walker, the sample's code).
    pq: Option<PackedQueue<Vec<u16>>>,
}

impl Vq {
    fn reset(&mut self, max: u16) {
        *self = Vq {
            size: max,
            ..Default::default()
        };
    }

    /// Recomputes the ring host addresses from the mappings.
    fn refresh(&mut self, iommu: &Iommu) {
        self.ring = None;
        if !self.num_set || !self.addr_set {
            return;
        }
        let n = u64::from(self.size);
        // A packed ring's event areas are 4 bytes each (then `ring` only
        // says that the rings are mapped: the walker translates itself).
        let (avail_len, used_len) = if self.packed {
            (4, 4)
        } else {
            (6 + 2 * n, 6 + USED_ELEM as u64 * n)
        };
        let parts = (
            iommu.translate(self.desc, DESC_SIZE as u64 * n),
            iommu.translate(self.avail, avail_len),
            iommu.translate(self.used, used_len),
        );
        if let (Some(desc), Some(avail), Some(used)) = parts {
            self.ring = Some(Ring {
                size: self.size,
                desc,
                avail,
                used,
            });
        }
    }

    fn ring(&self) -> Result<Ring> {
        self.ring
            .ok_or_else(|| dev_err("a ring is not (or no longer) in mapped memory"))
    }

    /// Takes the next available head, if any.
    #[inline]
    fn pop(&mut self) -> Result<Option<u16>> {
        let r = self.ring()?;
        if self.last_avail == self.avail_shadow {
            self.avail_shadow = r.avail_idx();
            if self.last_avail == self.avail_shadow {
                return Ok(None);
            }
            if self.avail_shadow.wrapping_sub(self.last_avail) > self.size {
                return Err(dev_err(format_args!(
                    "avail.idx {} is more than {} entries past {}",
                    self.avail_shadow, self.size, self.last_avail
                )));
            }
        }
        let head = r.avail_entry(self.last_avail);
        self.last_avail = self.last_avail.wrapping_add(1);
        Ok(Some(head))
    }

    /// Puts the last `n` heads taken back.
    fn unpop(&mut self, n: u16) {
        self.last_avail = self.last_avail.wrapping_sub(n);
    }

    /// Walks the chain at `head`: pushes its segments to `segs` (all
    /// device-writable if `write`, else all device-readable) and returns
    /// their total length.
    fn walk(&self, iommu: &Iommu, head: u16, write: bool, segs: &mut Vec<Seg>) -> Result<u64> {
        let r = self.ring()?;
        if head >= r.size {
            return Err(dev_err(format_args!(
                "head {head} of a {}-entry ring",
                r.size
            )));
        }
        let mut d = r.desc(head);
        // Direct descriptors come from the ring's table; an indirect chain
        // from the table it points to.
        let mut table: Option<(*mut u8, u16)> = None;
        let mut limit = u32::from(r.size);
        if d.flags & VRING_DESC_F_INDIRECT != 0 {
            let n = d.len / DESC_SIZE as u32;
            if d.flags & VRING_DESC_F_NEXT != 0
                || d.len % DESC_SIZE as u32 != 0
                || n == 0
                || n > u32::from(MAX_QUEUE_SIZE)
            {
                return Err(dev_err(format_args!(
                    "chain {head}: bad indirect descriptor (len {}, flags {:#x})",
                    d.len, d.flags
                )));
            }
            let p = iommu.translate(d.addr, u64::from(d.len)).ok_or_else(|| {
                dev_err(format_args!(
                    "chain {head}: indirect table at unmapped {:#x}",
                    d.addr
                ))
            })?;
            // SAFETY: the table's n * 16 bytes are mapped (translate).
            d = unsafe { read_desc(p) };
            table = Some((p, n as u16));
            limit = n;
        }
        let mut total = 0u64;
        let mut count = 1u32;
        loop {
            if d.flags & VRING_DESC_F_INDIRECT != 0 {
                return Err(dev_err(format_args!(
                    "chain {head}: nested or chained indirect"
                )));
            }
            if (d.flags & VRING_DESC_F_WRITE != 0) != write {
                return Err(dev_err(format_args!(
                    "chain {head}: a device-{} descriptor in a {} chain",
                    if write { "readable" } else { "writable" },
                    if write { "RX" } else { "TX" }
                )));
            }
            segs.push(Seg {
                addr: d.addr,
                len: d.len,
            });
            total += u64::from(d.len);
            if d.flags & VRING_DESC_F_NEXT == 0 {
                return Ok(total);
            }
            count += 1;
            if count > limit {
                return Err(dev_err(format_args!("chain {head} loops")));
            }
            d = match table {
                Some((p, n)) if d.next < n => {
                    // SAFETY: entry `next` of an n-entry mapped table.
                    unsafe { read_desc(p.add(DESC_SIZE * usize::from(d.next))) }
                }
                None if d.next < r.size => r.desc(d.next),
                _ => {
                    return Err(dev_err(format_args!(
                        "chain {head}: next {} out of range",
                        d.next
                    )))
                }
            };
        }
    }

    /// Completes chain `head` with `len` bytes written.
    fn push_used(&mut self, head: u16, len: u32) -> Result<()> {
        let r = self.ring()?;
        let idx = self.used_idx.wrapping_add(1);
        r.push_used(self.used_idx, head, len, idx);
        self.used_idx = idx;
        self.added = self.added.wrapping_add(1);
        Ok(())
    }

    /// Whether the driver wants an interrupt for the entries added since
    /// the last call.
    fn needs_interrupt(&mut self, iommu: &Iommu) -> Result<bool> {
        if let Some(pq) = &mut self.pq {
            self.added = 0;
            // The used descriptors before the driver's event area.
            fence(Ordering::SeqCst);
            return pq.needs_interrupt(&mut Mem(iommu)).map_err(ring_err);
        }
        let r = self.ring()?;
        // The used entries before the driver's event or flags (as the
        // driver orders its event before reading the index).
        fence(Ordering::SeqCst);
        let old = self.used_idx.wrapping_sub(self.added);
        self.added = 0;
        Ok(if self.event_idx {
            vring_need_event(r.used_event(), self.used_idx, old)
        } else {
            r.avail_flags() & VRING_AVAIL_F_NO_INTERRUPT == 0
        })
    }

    /// Asks for a kick at the driver's next publication (`from`: the
    /// index from which one is wanted) or, with `None`, stops asking.
    fn want_kicks(&mut self, iommu: &Iommu, from: Option<u16>) -> Result<()> {
        if let Some(pq) = &mut self.pq {
            // Packed: kicks for any chain beyond those counted (EVENT_IDX
            // DESC at the first slot not seen yet), or none.
            let m = &mut Mem(iommu);
            pq.set_kicks(m, from.is_some()).map_err(ring_err)?;
            fence(Ordering::SeqCst);
            return Ok(());
        }
        let r = self.ring()?;
        match (from, self.event_idx) {
            (Some(i), true) => r.set_avail_event(i),
            (Some(_), false) => r.set_used_flags(0),
            // A stale avail_event is not crossed again before the index
            // wraps.
            (None, true) => {}
            (None, false) => r.set_used_flags(VRING_USED_F_NO_NOTIFY),
        }
        // The event before the next read of avail.idx.
        fence(Ordering::SeqCst);
        Ok(())
    }
}

impl Vq {
    /// Writes the used descriptors of a packed ring (nothing to do for a
    /// split one: `push_used` publishes each entry).
    fn flush(&mut self, iommu: &Iommu) -> Result<()> {
        match &mut self.pq {
            Some(pq) => pq.flush(&mut Mem(iommu)).map_err(ring_err),
            None => Ok(()),
        }
    }

    /// Whether the driver made chains available that were not taken.
    fn tx_pending(&mut self, iommu: &Iommu) -> Result<bool> {
        match &mut self.pq {
            Some(pq) => Ok(pq.pending(&mut Mem(iommu)).map_err(ring_err)? > 0),
            None => Ok(self.ring()?.avail_idx() != self.last_avail),
        }
    }
}

/// The device's view of the driver's memory for the proto crate's packed
/// walker: through the DMA mappings, ring fields as single atomic
/// accesses.
struct Mem<'a>(&'a Iommu);

impl GuestMemory for Mem<'_> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> std::result::Result<(), Fault> {
        self.0.read(addr, buf).map_err(|_| Fault)
    }
    fn write(&mut self, addr: u64, buf: &[u8]) -> std::result::Result<(), Fault> {
        self.0.write(addr, buf).map_err(|_| Fault)
    }
    fn read_u16(&mut self, addr: u64) -> std::result::Result<u16, Fault> {
        let p = self
            .0
            .translate(addr, 2)
            .filter(|p| (*p as usize).is_multiple_of(2))
            .ok_or(Fault)?;
        // SAFETY: two mapped bytes (translate), 2-byte aligned (checked);
        // AtomicU16 has u16's layout.
        let a = unsafe { AtomicU16::from_ptr(p as *mut u16) };
        Ok(u16::from_le(a.load(Ordering::Acquire)))
    }
    fn write_u16(&mut self, addr: u64, v: u16) -> std::result::Result<(), Fault> {
        let p = self
            .0
            .translate(addr, 2)
            .filter(|p| (*p as usize).is_multiple_of(2))
            .ok_or(Fault)?;
        // SAFETY: as in read_u16().
        let a = unsafe { AtomicU16::from_ptr(p as *mut u16) };
        a.store(v.to_le(), Ordering::Release);
        Ok(())
    }
    fn fence(&mut self) {
        fence(Ordering::SeqCst)
    }
    fn read_fence(&mut self) {
        fence(Ordering::Acquire)
    }
    fn write_fence(&mut self) {
        fence(Ordering::Release)
    }
}

/// A packed ring error as a device error.
fn ring_err(e: RingError) -> Error {
    dev_err(format_args!("packed ring: {e:?}"))
}

/// Calls `f(addr, range)` for the pieces of bytes `off..off + len` of the
/// chain `segs`, in order (`range` is the piece's span within those `len`
/// bytes); returns how many bytes the chain had room for.
fn for_each_piece(
    segs: &[Seg],
    mut off: u64,
    len: usize,
    mut f: impl FnMut(u64, std::ops::Range<usize>) -> Result<()>,
) -> Result<usize> {
    let mut done = 0usize;
    for s in segs {
        if done == len {
            break;
        }
        let slen = u64::from(s.len);
        if off >= slen {
            off -= slen;
            continue;
        }
        let n = ((slen - off) as usize).min(len - done);
        f(s.addr.wrapping_add(off), done..done + n)?;
        done += n;
        off = 0;
    }
    Ok(done)
}

/// Reads `out.len()` bytes at byte `off` of the chain `segs`.
fn read_segs(iommu: &Iommu, segs: &[Seg], off: u64, out: &mut [u8]) -> Result<()> {
    let done = for_each_piece(segs, off, out.len(), |a, r| iommu.read(a, &mut out[r]))?;
    if done < out.len() {
        return Err(dev_err("TX chain shorter than its frame"));
    }
    Ok(())
}

/// Writes `data` at byte `off` of the chain `segs`.
fn write_segs(iommu: &Iommu, segs: &[Seg], off: u64, data: &[u8]) -> Result<()> {
    let done = for_each_piece(segs, off, data.len(), |a, r| iommu.write(a, &data[r]))?;
    if done < data.len() {
        return Err(dev_err("RX chains shorter than the frame"));
    }
    Ok(())
}

struct State {
    opts: InstantOptions,
    /// The virtio device model of the vhost-mdev core (the same code): it
    /// checks every request and calls this device as the [`Backend`] the
    /// module calls a parent through.
    model: Model<Vec<VqConfig>>,
    /// Features the driver set (at FEATURES_OK).
    features: u64,
    /// Started by DRIVER_OK.
    started: bool,
    /// Suspended by `VHOST_VDPA_SUSPEND`.
    suspended: bool,
    /// A device error was found: NEEDS_RESET is set, rings are left alone.
    broken: Option<String>,
    config: [u8; NET_CONFIG_LEN],
    iommu: Iommu,
    /// Queues: RX of pair i at 2i, TX at 2i + 1.
    q: Vec<Vq>,
    calls: Vec<Option<EventFd>>,
    /// Per pair: whether the device asked for RX kicks (a frame waits for
    /// buffers).
    rx_kick: Vec<bool>,
    stats: InstantStats,
    /// Scratch lists reused for every frame (no allocation per frame).
    tx_segs: Vec<Seg>,
    rx_segs: Vec<Seg>,
    rx_heads: Vec<(u16, u32)>,
}

/// The in-process instant loopback device (see the module documentation).
///
/// Neither `Send` nor `Sync`: the device runs in the thread that kicks it,
/// and holds the host addresses of the driver's rings.
pub struct InstantNet {
    st: RefCell<State>,
}

impl State {
    fn new(opts: InstantOptions) -> Self {
        let mut config = [0u8; NET_CONFIG_LEN];
        config[..6].copy_from_slice(&opts.mac.0);
        config[6..8].copy_from_slice(&VIRTIO_NET_S_LINK_UP.to_le_bytes());
        config[8..10].copy_from_slice(&opts.pairs.to_le_bytes());
        config[10..12].copy_from_slice(&opts.mtu.to_le_bytes());
        let mut st = State {
            opts,
            model: Model::new(vec![VqConfig::EMPTY; 2 * usize::from(opts.pairs)]),
            features: 0,
            started: false,
            suspended: false,
            broken: None,
            config,
            iommu: Iommu::default(),
            q: (0..2 * opts.pairs).map(|_| Vq::default()).collect(),
            calls: (0..2 * opts.pairs).map(|_| None).collect(),
            rx_kick: vec![false; usize::from(opts.pairs)],
            stats: InstantStats::default(),
            tx_segs: Vec::with_capacity(64),
            rx_segs: Vec::with_capacity(64),
            rx_heads: Vec::with_capacity(64),
        };
        st.reset();
        st
    }

    fn running(&self) -> bool {
        self.started && !self.suspended
    }

    fn has(&self, bit: u32) -> bool {
        self.features & (1 << bit) != 0
    }

    fn reset(&mut self) {
        for q in &mut self.q {
            q.reset(self.opts.queue_max);
        }
        self.features = 0;
        self.started = false;
        self.suspended = false;
        self.broken = None;
        self.rx_kick.fill(false);
    }

    fn refresh_rings(&mut self) {
        for q in &mut self.q {
            q.refresh(&self.iommu);
        }
    }

    /// Runs a request through the core's device model, which calls this
    /// device as its [`Backend`].
    fn request(&mut self, req: &Request) -> Result<Reply> {
        let mut buf = [0u8; MAX_PAYLOAD];
        let mut reply = proto::Reply::new(&mut buf);
        // The model is not part of the backend it drives: take it out for
        // the call.
        let mut model = std::mem::take(&mut self.model);
        let r = model.handle(self, &req.as_proto(), &mut reply);
        self.model = model;
        r.map_err(|e| req_err(req, e))?;
        let len = reply.len();
        Reply::decode(req, &buf[..len])
    }

    /// DRIVER_OK: checks the enabled queues and arms their notifications.
    fn start_queues(&mut self) -> Result<()> {
        let event_idx = self.has(VIRTIO_RING_F_EVENT_IDX);
        let packed = self.has(VIRTIO_F_RING_PACKED);
        let indirect = self.has(VIRTIO_RING_F_INDIRECT_DESC);
        for (i, q) in self.q.iter_mut().enumerate() {
            if q.ready && q.ring.is_none() {
                return Err(dev_err(format_args!(
                    "queue {i} is not set up in mapped memory"
                )));
            }
            q.event_idx = event_idx;
            q.pq = None;
            if packed && q.ring.is_some() {
                let mut pq = PackedQueue::new(
                    q.size,
                    q.desc,
                    q.avail,
                    q.used,
                    vec![0; usize::from(q.size)],
                );
                pq.event_idx = event_idx;
                pq.indirect = indirect;
                pq.set_base(q.base.unwrap_or(PACKED_BASE_INIT))
                    .map_err(|e| dev_err(format_args!("queue {i}: vring base: {e:?}")))?;
                q.pq = Some(pq);
            }
        }
        for p in 0..self.rx_kick.len() {
            let (rx, tx) = (2 * p + RX, 2 * p + TX);
            // Kicks wanted on TX from the start; on RX only once a frame
            // waits for buffers.
            if self.q[tx].ready {
                let from = self.q[tx].last_avail;
                self.q[tx].want_kicks(&self.iommu, Some(from))?;
            }
            if self.q[rx].ready {
                self.q[rx].want_kicks(&self.iommu, None)?;
            }
            self.rx_kick[p] = false;
        }
        Ok(())
    }

    /// A kick on either queue of a pair: loops every TX frame of the pair
    /// that has RX room.
    fn kick(&mut self, index: usize) -> Result<()> {
        self.stats.kicks[index & 1] += 1;
        if let Some(e) = &self.broken {
            return Err(dev_err(format_args!("needs a reset: {e}")));
        }
        let p = index / 2;
        if !self.running() || !self.q[2 * p + TX].ready || !self.q[2 * p + RX].ready {
            return Ok(());
        }
        let r = self.run(p);
        if let Err(e) = &r {
            // Stop as a device would: NEEDS_RESET, rings left alone.
            self.broken = Some(e.to_string());
        }
        r
    }

    fn run(&mut self, p: usize) -> Result<()> {
        let r = self.run_loop(p);
        // Write the used descriptors of a packed ring and signal what was
        // completed, even after an error (which is the one reported).
        let mut signalled = Ok(());
        for i in [2 * p + RX, 2 * p + TX] {
            let flushed = self.q[i].flush(&self.iommu);
            signalled = signalled.and(flushed);
            if self.q[i].added > 0 {
                let s = self.signal(i);
                signalled = signalled.and(s);
            }
        }
        r.and(signalled)
    }

    fn run_loop(&mut self, p: usize) -> Result<()> {
        let (rx, tx) = (2 * p + RX, 2 * p + TX);
        loop {
            let stalled = self.loop_frames(p)?;
            // Ask for the next TX kick (the waiting frame, if any, is
            // resumed by the RX kick).
            let from = self.q[tx].last_avail;
            self.q[tx].want_kicks(&self.iommu, Some(from))?;
            if stalled {
                // Kick at the driver's next RX publication (not from our
                // last_avail, which is behind it when some buffers are
                // there but too few).
                let from = match self.q[rx].pq {
                    Some(_) => 0,
                    None => self.q[rx].ring()?.avail_idx(),
                };
                self.q[rx].want_kicks(&self.iommu, Some(from))?;
                self.rx_kick[p] = true;
                return Ok(());
            }
            if self.rx_kick[p] {
                self.q[rx].want_kicks(&self.iommu, None)?;
                self.rx_kick[p] = false;
            }
            // Frames published meanwhile (the driver runs in this thread:
            // only if it kicked from a call-eventfd handler).
            if !self.q[tx].tx_pending(&self.iommu)? {
                return Ok(());
            }
        }
    }

    /// Writes the call eventfd of queue `i` if the driver asked for it.
    fn signal(&mut self, i: usize) -> Result<()> {
        if self.q[i].needs_interrupt(&self.iommu)? {
            if let Some(fd) = &self.calls[i] {
                fd.write(1)
                    .map_err(|e| Error::io("call eventfd write", &e))?;
                self.stats.irqs[i & 1] += 1;
            }
        }
        Ok(())
    }

    /// Loops TX frames to RX until TX is empty (false) or a frame finds too
    /// few RX buffers (true: it stays on TX).
    fn loop_frames(&mut self, p: usize) -> Result<bool> {
        if self.q[2 * p].pq.is_some() {
            return self.loop_frames_packed(p);
        }
        let mrg = self.has(VIRTIO_NET_F_MRG_RXBUF);
        let State {
            iommu,
            q,
            tx_segs,
            rx_segs,
            rx_heads,
            stats,
            opts,
            ..
        } = self;
        let [rxq, txq] = &mut q[2 * p..2 * p + 2] else {
            return Err(dev_err(format_args!("no queue pair {p}")));
        };
        while let Some(tx_head) = txq.pop()? {
            tx_segs.clear();
            let total = txq.walk(iommu, tx_head, false, tx_segs)?;
            if total < NET_HDR_LEN as u64 || total > u64::from(u32::MAX) {
                return Err(dev_err(format_args!(
                    "TX chain {tx_head} of {total} bytes (the header alone is {NET_HDR_LEN})"
                )));
            }
            // RX chains until header and frame fit (one without MRG_RXBUF).
            rx_heads.clear();
            rx_segs.clear();
            let mut cap = 0u64;
            while cap < total && (mrg || rx_heads.is_empty()) {
                let Some(head) = rxq.pop()? else {
                    break;
                };
                let c = rxq.walk(iommu, head, true, rx_segs)?;
                let c = u32::try_from(c).unwrap_or(u32::MAX);
                rx_heads.push((head, c));
                cap += u64::from(c);
            }
            if cap < total {
                // Give the RX chains back.
                rxq.unpop(rx_heads.len() as u16);
                if mrg || rx_heads.is_empty() {
                    // Out of RX buffers: the frame waits on TX.
                    txq.unpop(1);
                    stats.stalls += 1;
                    return Ok(true);
                }
                // The one RX buffer is too small: drop the frame.
                txq.push_used(tx_head, 0)?;
                stats.dropped += 1;
                continue;
            }
            let frame_len = total - NET_HDR_LEN as u64;
            let nbufs = rx_heads.len();
            let hdr = VirtioNetHdr {
                num_buffers: if mrg { nbufs as u16 } else { 1 },
                ..Default::default()
            }
            .to_bytes();
            // Header and the head of the frame in one write; the rest
            // (whole-frame copies only) in chunks through the stack.
            let copy = frame_len.min(opts.copy_limit as u64) as usize;
            let mut head = [0u8; NET_HDR_LEN + HEAD_COPY];
            head[..NET_HDR_LEN].copy_from_slice(&hdr);
            let mut done = copy.min(HEAD_COPY);
            read_segs(
                iommu,
                tx_segs,
                NET_HDR_LEN as u64,
                &mut head[NET_HDR_LEN..NET_HDR_LEN + done],
            )?;
            write_segs(iommu, rx_segs, 0, &head[..NET_HDR_LEN + done])?;
            if done < copy {
                let mut buf = [0u8; CHUNK];
                while done < copy {
                    let n = (copy - done).min(CHUNK);
                    let off = (NET_HDR_LEN + done) as u64;
                    read_segs(iommu, tx_segs, off, &mut buf[..n])?;
                    write_segs(iommu, rx_segs, off, &buf[..n])?;
                    done += n;
                }
            }
            let mut left = total;
            for &(head, c) in rx_heads.iter() {
                let len = left.min(u64::from(c));
                rxq.push_used(head, len as u32)?;
                left -= len;
            }
            txq.push_used(tx_head, 0)?;
            stats.frames += 1;
            stats.bytes += frame_len;
            stats.rx_buffers += nbufs as u64;
        }
        Ok(false)
    }
}

impl State {
    /// [`State::loop_frames`] on packed rings, with the proto crate's
    /// walker: RX chains are looked at ahead (`chain`) and consumed only
    /// once the frame fits them.
    fn loop_frames_packed(&mut self, p: usize) -> Result<bool> {
        let mrg = self.has(VIRTIO_NET_F_MRG_RXBUF);
        let State {
            iommu,
            q,
            tx_segs,
            rx_segs,
            rx_heads,
            stats,
            opts,
            ..
        } = self;
        let [rxq, txq] = &mut q[2 * p..2 * p + 2] else {
            return Err(dev_err(format_args!("no queue pair {p}")));
        };
        let (Some(rx), Some(tx)) = (&mut rxq.pq, &mut txq.pq) else {
            return Err(dev_err("a packed queue is not started"));
        };
        let m = &mut Mem(iommu);
        while tx.pending(m).map_err(ring_err)? > 0 {
            let (tx_id, mut w) = tx.chain(m, 0).map_err(ring_err)?;
            tx_segs.clear();
            let mut total = 0u64;
            while let Some(sg) = w.next(tx, m).map_err(ring_err)? {
                if sg.write {
                    return Err(dev_err(format_args!(
                        "TX chain {tx_id}: a device-writable descriptor"
                    )));
                }
                tx_segs.push(Seg {
                    addr: sg.addr,
                    len: sg.len,
                });
                total += u64::from(sg.len);
            }
            if total < NET_HDR_LEN as u64 {
                return Err(dev_err(format_args!(
                    "TX chain {tx_id} of {total} bytes (the header alone is {NET_HDR_LEN})"
                )));
            }
            // RX chains until header and frame fit (one without MRG_RXBUF),
            // looked at without consuming them.
            rx_heads.clear();
            rx_segs.clear();
            let mut cap = 0u64;
            while cap < total && (mrg || rx_heads.is_empty()) {
                let k = rx_heads.len() as u16;
                if rx.pending(m).map_err(ring_err)? <= k {
                    break;
                }
                let (id, mut w) = rx.chain(m, k).map_err(ring_err)?;
                let mut c = 0u64;
                while let Some(sg) = w.next(rx, m).map_err(ring_err)? {
                    if !sg.write {
                        return Err(dev_err(format_args!(
                            "RX chain {id}: a device-readable descriptor"
                        )));
                    }
                    rx_segs.push(Seg {
                        addr: sg.addr,
                        len: sg.len,
                    });
                    c += u64::from(sg.len);
                }
                let c = u32::try_from(c).unwrap_or(u32::MAX);
                rx_heads.push((id, c));
                cap += u64::from(c);
            }
            if cap < total && (mrg || rx_heads.is_empty()) {
                // Out of RX buffers: the frame waits on TX.
                stats.stalls += 1;
                return Ok(true);
            }
            tx.consume(m).map_err(ring_err)?;
            if cap < total {
                // The one RX buffer is too small: drop the frame.
                tx.put_used(m, tx_id, 0).map_err(ring_err)?;
                txq.added = txq.added.wrapping_add(1);
                stats.dropped += 1;
                continue;
            }
            for &(id, _) in rx_heads.iter() {
                let got = rx.consume(m).map_err(ring_err)?;
                if got != id {
                    return Err(dev_err(format_args!(
                        "RX chain {id} changed under the device (now {got})"
                    )));
                }
            }
            let frame_len = total - NET_HDR_LEN as u64;
            let nbufs = rx_heads.len();
            let hdr = VirtioNetHdr {
                num_buffers: if mrg { nbufs as u16 } else { 1 },
                ..Default::default()
            }
            .to_bytes();
            let copy = frame_len.min(opts.copy_limit as u64) as usize;
            let mut head = [0u8; NET_HDR_LEN + HEAD_COPY];
            head[..NET_HDR_LEN].copy_from_slice(&hdr);
            let mut done = copy.min(HEAD_COPY);
            read_segs(
                iommu,
                tx_segs,
                NET_HDR_LEN as u64,
                &mut head[NET_HDR_LEN..NET_HDR_LEN + done],
            )?;
            write_segs(iommu, rx_segs, 0, &head[..NET_HDR_LEN + done])?;
            let mut buf = [0u8; CHUNK];
            while done < copy {
                let n = (copy - done).min(CHUNK);
                let off = (NET_HDR_LEN + done) as u64;
                read_segs(iommu, tx_segs, off, &mut buf[..n])?;
                write_segs(iommu, rx_segs, off, &buf[..n])?;
                done += n;
            }
            let mut left = total;
            for &(id, c) in rx_heads.iter() {
                let len = left.min(u64::from(c));
                rx.put_used(m, id, len as u32).map_err(ring_err)?;
                rxq.added = rxq.added.wrapping_add(1);
                left -= len;
            }
            tx.put_used(m, tx_id, 0).map_err(ring_err)?;
            txq.added = txq.added.wrapping_add(1);
            stats.frames += 1;
            stats.bytes += frame_len;
            stats.rx_buffers += nbufs as u64;
        }
        Ok(false)
    }
}

/// The device as the model sees it: what a parent driver's ops do in the
/// module. Every call comes after the model checked its input.
impl Backend for State {
    fn device_id(&self) -> u32 {
        VIRTIO_ID_NET
    }
    fn device_features(&self) -> u64 {
        // MQ only with more than one pair, as the sample.
        if self.opts.pairs > 1 {
            self.opts.features
        } else {
            self.opts.features & !(1 << VIRTIO_NET_F_MQ)
        }
    }
    fn set_driver_features(&mut self, features: u64) -> bool {
        self.features = features;
        let packed = self.has(VIRTIO_F_RING_PACKED);
        for q in &mut self.q {
            q.packed = packed;
            q.refresh(&self.iommu);
        }
        true
    }
    fn config_size(&self) -> u32 {
        NET_CONFIG_LEN as u32
    }
    fn get_config(&self, off: u32, buf: &mut [u8]) {
        let off = off as usize;
        buf.copy_from_slice(&self.config[off..off + buf.len()]);
    }
    fn set_config(&mut self, off: u32, data: &[u8]) {
        let off = off as usize;
        self.config[off..off + data.len()].copy_from_slice(data);
    }
    fn vq_count(&self) -> u32 {
        self.q.len() as u32
    }
    fn vq_num_max(&self) -> u16 {
        self.opts.queue_max
    }
    fn set_vq_num(&mut self, idx: u16, num: u32) {
        let q = &mut self.q[usize::from(idx)];
        // At most `queue_max`, a u16: the model checked it.
        q.size = num as u16;
        q.num_set = true;
        q.refresh(&self.iommu);
    }
    fn set_vq_address(&mut self, idx: u16, desc: u64, driver: u64, device: u64) {
        let q = &mut self.q[usize::from(idx)];
        (q.desc, q.avail, q.used) = (desc, driver, device);
        q.addr_set = true;
        q.refresh(&self.iommu);
    }
    fn set_vq_ready(&mut self, idx: u16, ready: bool) {
        self.q[usize::from(idx)].ready = ready;
    }
    fn set_vq_base(&mut self, idx: u16, base: u32) {
        let q = &mut self.q[usize::from(idx)];
        q.base = Some(base);
        // Suspended with a started packed ring: it goes on from there.
        if let Some(pq) = &mut q.pq {
            if let Err(e) = pq.set_base(base) {
                self.broken = Some(format!("queue {idx}: vring base {base:#x}: {e:?}"));
            }
        }
        // A split ring's base is 16-bit (the model checked it).
        let b = base as u16;
        (q.last_avail, q.avail_shadow, q.used_idx) = (b, b, b);
    }
    fn get_vq_base(&self, idx: u16) -> u32 {
        let q = &self.q[usize::from(idx)];
        match &q.pq {
            // Used descriptors are flushed at the end of every run.
            Some(pq) => pq.base(),
            None => u32::from(q.last_avail),
        }
    }
    fn start(&mut self) -> std::result::Result<(), i32> {
        // This device reaches the rings through its own mapping of them,
        // by IOVA: an enabled ring outside the mappings is refused.
        self.start_queues().map_err(|_| libc::EINVAL)?;
        self.started = true;
        Ok(())
    }
    fn reset(&mut self) {
        State::reset(self);
    }
    fn suspend(&mut self) -> std::result::Result<(), i32> {
        self.suspended = true;
        Ok(())
    }
    fn resume(&mut self) -> std::result::Result<(), i32> {
        self.suspended = false;
        Ok(())
    }
    fn device_status(&self) -> u8 {
        if self.broken.is_some() {
            VIRTIO_CONFIG_S_NEEDS_RESET
        } else {
            0
        }
    }
}

impl InstantNet {
    /// A reset device with `opts`.
    pub fn new(opts: InstantOptions) -> Result<Self> {
        if opts.features & (1 << VIRTIO_NET_F_MAC) == 0 {
            return Err(Error::InvalidArgument(
                "the instant device needs VIRTIO_NET_F_MAC (the driver reads its MAC)".into(),
            ));
        }
        if opts.pairs == 0 || opts.pairs > INSTANT_MAX_PAIRS {
            return Err(Error::InvalidArgument(format!(
                "instant device with {} queue pairs (1..={INSTANT_MAX_PAIRS})",
                opts.pairs
            )));
        }
        if !opts.queue_max.is_power_of_two() || opts.queue_max > MAX_QUEUE_SIZE {
            return Err(Error::InvalidArgument(format!(
                "instant device queue size {} is not a power of two up to {MAX_QUEUE_SIZE}",
                opts.queue_max
            )));
        }
        Ok(InstantNet {
            st: RefCell::new(State::new(opts)),
        })
    }

    /// The counters.
    pub fn stats(&self) -> Result<InstantStats> {
        Ok(self.state()?.stats)
    }

    /// Number of DMA mappings held.
    pub fn num_mappings(&self) -> Result<usize> {
        Ok(self.state()?.iommu.maps.len())
    }

    /// Whether the device asks for RX kicks right now (a frame waits for
    /// RX buffers).
    pub fn wants_rx_kick(&self) -> Result<bool> {
        Ok(self.state()?.rx_kick.iter().any(|k| *k))
    }

    fn state(&self) -> Result<RefMut<'_, State>> {
        self.st
            .try_borrow_mut()
            .map_err(|_| dev_err("re-entered from its own callback"))
    }
}

impl DmaMapper for InstantNet {
    unsafe fn map_dma(&self, iova: u64, size: u64, vaddr: u64) -> Result<()> {
        let mut st = self.state()?;
        let bad = |why: &str| {
            Error::InvalidArgument(format!(
                "DMA map of {size:#x} bytes at IOVA {iova:#x}: {why}"
            ))
        };
        let end = iova.checked_add(size).ok_or_else(|| bad("overflows"))?;
        if size == 0 || vaddr.checked_add(size).is_none() {
            return Err(bad("bad size"));
        }
        if !vaddr.is_multiple_of(crate::device::page_size()) {
            return Err(bad("user address not page-aligned"));
        }
        if st
            .iommu
            .maps
            .iter()
            .any(|m| iova < m.iova + m.size && m.iova < end)
        {
            return Err(Error::Sys {
                op: format!("instant DMA map of IOVA {iova:#x}+{size:#x}"),
                errno: Errno(libc::EEXIST),
            });
        }
        // The caller keeps vaddr..vaddr + size mapped until unmap_dma (the
        // contract of map_dma), which removes it here first.
        st.iommu.maps.push(Mapping { iova, size, vaddr });
        st.refresh_rings();
        Ok(())
    }

    fn unmap_dma(&self, iova: u64, size: u64) -> Result<()> {
        let mut st = self.state()?;
        let Some(i) = st
            .iommu
            .maps
            .iter()
            .position(|m| m.iova == iova && m.size == size)
        else {
            return Err(Error::Sys {
                op: format!("instant DMA unmap of IOVA {iova:#x}+{size:#x}"),
                errno: Errno(libc::ENOENT),
            });
        };
        st.iommu.maps.remove(i);
        // Rings in the range are dropped: the device no longer reaches it.
        st.refresh_rings();
        Ok(())
    }
}

impl VhostBackend for InstantNet {
    fn describe(&self) -> String {
        "instant (in-process device)".into()
    }

    fn request(&self, req: &Request) -> Result<Reply> {
        self.state()?.request(req)
    }

    fn set_vring_call(&self, index: u32, fd: Option<&EventFd>) -> Result<()> {
        let mut st = self.state()?;
        let i = index as usize;
        if i >= st.q.len() {
            return Err(Error::Request {
                request: "VHOST_SET_VRING_CALL".into(),
                errno: Errno(libc::ENOBUFS),
            });
        }
        st.calls[i] = match fd {
            Some(f) => Some(
                f.try_clone()
                    .map_err(|e| Error::io("dup of a call eventfd", &e))?,
            ),
            None => None,
        };
        Ok(())
    }

    fn set_config_call(&self, _fd: Option<&EventFd>) -> Result<()> {
        // The config space never changes by itself.
        Ok(())
    }

    fn set_vring_kick(&self, _index: u32, _fd: Option<&EventFd>) -> Result<()> {
        Err(Error::Unsupported(
            "kick eventfds (the instant device runs on direct notification)",
        ))
    }

    fn notify(&self, index: u16) -> Result<()> {
        let mut st = self.state()?;
        let i = usize::from(index);
        if i >= st.q.len() {
            return Err(Error::InvalidArgument(format!(
                "notification of queue {index} (the instant device has {})",
                st.q.len()
            )));
        }
        st.kick(i)
    }

    fn supports_notify(&self) -> bool {
        true
    }
}
