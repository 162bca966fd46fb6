// SPDX-License-Identifier: GPL-2.0 OR MIT
//! A minimal virtio-blk driver over any [`VhostBackend`] (virtio 1.x,
//! 5.2): brings up the request queue and submits requests one at a time,
//! as chains of any shape ([`Piece`]), so that a test can build both the
//! requests a driver sends and the ones no driver should.
//!
//! A request is a device-readable header (`struct virtio_blk_outhdr`:
//! type, reserved, sector), the data (readable for a write, writable for a
//! read) and a device-writable status byte, the last byte of the chain.

use std::mem::ManuallyDrop;
use std::time::{Duration, Instant};

use virtio_bindings::virtio_blk as vb;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::backend::VhostBackend;
use crate::driver::{negotiate, send_mem_table, wait_eventfd};
use crate::error::{Error, Result};
use crate::uapi::*;
use crate::virtq::{Seg, Virtq, VirtqConfig};

/// virtio device ID of a block device.
pub const VIRTIO_ID_BLOCK: u32 = virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
/// Bytes of a sector.
pub const SECTOR_SIZE: usize = 512;
/// `VIRTIO_BLK_T_IN`
pub const T_IN: u32 = vb::VIRTIO_BLK_T_IN;
/// `VIRTIO_BLK_T_OUT`
pub const T_OUT: u32 = vb::VIRTIO_BLK_T_OUT;
/// `VIRTIO_BLK_T_FLUSH`
pub const T_FLUSH: u32 = vb::VIRTIO_BLK_T_FLUSH;
/// `VIRTIO_BLK_T_GET_ID`
pub const T_GET_ID: u32 = vb::VIRTIO_BLK_T_GET_ID;
/// `VIRTIO_BLK_S_OK`
pub const S_OK: u8 = vb::VIRTIO_BLK_S_OK as u8;
/// `VIRTIO_BLK_S_IOERR`
pub const S_IOERR: u8 = vb::VIRTIO_BLK_S_IOERR as u8;
/// `VIRTIO_BLK_S_UNSUPP`
pub const S_UNSUPP: u8 = vb::VIRTIO_BLK_S_UNSUPP as u8;
/// `VIRTIO_BLK_ID_BYTES`
pub const ID_BYTES: usize = vb::VIRTIO_BLK_ID_BYTES as usize;
/// `VIRTIO_BLK_F_SEG_MAX`
pub const F_SEG_MAX: u32 = vb::VIRTIO_BLK_F_SEG_MAX;
/// `VIRTIO_BLK_F_RO`
pub const F_RO: u32 = vb::VIRTIO_BLK_F_RO;
/// `VIRTIO_BLK_F_BLK_SIZE`
pub const F_BLK_SIZE: u32 = vb::VIRTIO_BLK_F_BLK_SIZE;
/// `VIRTIO_BLK_F_FLUSH`
pub const F_FLUSH: u32 = vb::VIRTIO_BLK_F_FLUSH;
/// Bytes of `struct virtio_blk_config` this driver reads (up to and
/// including `blk_size`).
pub const CONFIG_LEN: usize = std::mem::offset_of!(vb::virtio_blk_config, physical_block_exp);

/// The device's `struct virtio_blk_config` (the fields this driver reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlkConfig {
    /// Capacity in 512-byte sectors.
    pub capacity: u64,
    /// Most data buffers of a request (with `VIRTIO_BLK_F_SEG_MAX`).
    pub seg_max: u32,
    /// Block size (with `VIRTIO_BLK_F_BLK_SIZE`).
    pub blk_size: u32,
}

impl BlkConfig {
    /// Parses the first [`CONFIG_LEN`] bytes of the config space.
    pub fn parse(b: &[u8]) -> Result<Self> {
        if b.len() < CONFIG_LEN {
            return Err(Error::Protocol(format!(
                "virtio-blk config of {} bytes, expected {CONFIG_LEN}",
                b.len()
            )));
        }
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let mut cap = [0u8; 8];
        cap.copy_from_slice(&b[..8]);
        Ok(BlkConfig {
            capacity: u64::from_le_bytes(cap),
            seg_max: u32_at(12),
            blk_size: u32_at(20),
        })
    }
}

/// The header of a request.
pub fn header(kind: u32, sector: u64) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(&kind.to_le_bytes());
    h[8..].copy_from_slice(&sector.to_le_bytes());
    h
}

/// One buffer of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A device-readable buffer holding these bytes.
    Out(Vec<u8>),
    /// A device-writable buffer of this many bytes (filled with 0xa5
    /// before it is posted, so that bytes the device did not write show).
    In(usize),
}

/// A completed chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The used length the device reported.
    pub used_len: u32,
    /// The contents of the [`Piece::In`] buffers, in order.
    pub ins: Vec<Vec<u8>>,
}

impl Completion {
    /// The status byte: the last byte of the last writable buffer.
    pub fn status(&self) -> Option<u8> {
        self.ins.last().and_then(|b| b.last()).copied()
    }

    /// The writable bytes before the status byte, concatenated.
    pub fn data(&self) -> Vec<u8> {
        let mut v: Vec<u8> = self.ins.concat();
        v.pop();
        v
    }
}

/// Options of [`BlkDriver::start`].
#[derive(Debug, Clone, Copy)]
pub struct BlkDriverConfig {
    /// Requested queue size (clipped to the device maximum).
    pub queue_size: u16,
    /// IOVA of the queue's memory.
    pub iova_base: u64,
    /// Bytes of the area requests are built in.
    pub arena: usize,
    /// Post the requests of [`BlkDriver::read`], [`BlkDriver::write`] and
    /// [`BlkDriver::request`] as indirect chains (`VIRTIO_RING_F_INDIRECT_DESC`
    /// is negotiated whenever offered; [`BlkDriver::submit`] takes the
    /// choice per chain).
    pub indirect: bool,
    /// Negotiate `VIRTIO_RING_F_EVENT_IDX` if offered.
    pub event_idx: bool,
    /// Kick through an eventfd bound with
    /// [`VhostBackend::set_vring_kick`] (`VFIO_DEVICE_IOEVENTFD` on
    /// vhost-mdev) even where the back end can notify directly.
    pub eventfd_kick: bool,
    /// How long [`BlkDriver::submit`] waits for a completion.
    pub timeout: Duration,
}

impl Default for BlkDriverConfig {
    fn default() -> Self {
        BlkDriverConfig {
            queue_size: 128,
            iova_base: 0x2000_0000,
            arena: 1 << 20,
            indirect: false,
            event_idx: true,
            eventfd_kick: false,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Most buffers of an indirect chain this driver builds.
const MAX_INDIRECT: usize = 128;

/// A running virtio-blk device with one request queue.
pub struct BlkDriver<B: VhostBackend> {
    backend: B,
    q: ManuallyDrop<Virtq>,
    mapped: Option<(u64, u64)>,
    call: EventFd,
    kick: Option<EventFd>,
    features: u64,
    config: BlkConfig,
    cfg: BlkDriverConfig,
}

impl<B: VhostBackend> BlkDriver<B> {
    /// Resets the device, negotiates features (`VIRTIO_BLK_F_RO` is always
    /// accepted when offered), sets up queue 0 and sets DRIVER_OK.
    pub fn start(backend: B, cfg: BlkDriverConfig) -> Result<Self> {
        backend.reset()?;
        backend.set_owner()?;
        let id = backend.get_device_id()?;
        if id != VIRTIO_ID_BLOCK {
            return Err(Error::Protocol(format!(
                "virtio device id {id}, not a block device ({VIRTIO_ID_BLOCK})"
            )));
        }
        let mut want = (1u64 << VIRTIO_F_VERSION_1)
            | (1 << VIRTIO_F_ACCESS_PLATFORM)
            | (1 << F_SEG_MAX)
            | (1 << F_RO)
            | (1 << F_BLK_SIZE)
            | (1 << F_FLUSH)
            | (1 << VIRTIO_RING_F_INDIRECT_DESC);
        if cfg.event_idx {
            want |= 1 << VIRTIO_RING_F_EVENT_IDX;
        }
        let features = negotiate(&backend, want)?;
        let config = BlkConfig::parse(&backend.get_config(0, CONFIG_LEN as u32)?)?;
        let max = backend.get_vring_num()?;
        let want = cfg.queue_size.min(max).max(1);
        let size = 1u16 << (15 - want.leading_zeros().min(15));
        let indirect = features & (1 << VIRTIO_RING_F_INDIRECT_DESC) != 0;
        let q = Virtq::new(
            VirtqConfig {
                size,
                buffers: 1,
                buf_size: cfg.arena,
                max_indirect: if indirect { MAX_INDIRECT } else { 0 },
                event_idx: features & (1 << VIRTIO_RING_F_EVENT_IDX) != 0,
            },
            cfg.iova_base,
        )?;
        let eventfd = || EventFd::new(EFD_NONBLOCK).map_err(|e| Error::io("eventfd", &e));
        let mut drv = BlkDriver {
            call: eventfd()?,
            kick: None,
            backend,
            q: ManuallyDrop::new(q),
            mapped: None,
            features,
            config,
            cfg,
        };
        // SAFETY: the memory is unmapped in Drop before it is freed (or
        // leaked if unmapping fails), and only accessed through DmaMemory.
        unsafe { drv.q.memory().map(&drv.backend, drv.q.iova())? };
        drv.mapped = Some((drv.q.iova(), drv.q.memory().len() as u64));
        // Its memory table, before DRIVER_OK (see NetDriver::start).
        send_mem_table(&drv.backend, &[drv.q.memory().region(drv.q.iova())])?;
        drv.backend.set_vring_num(0, u32::from(size))?;
        drv.backend.set_vring_addr(&drv.q.vring_addr(0))?;
        drv.backend.set_vring_hva(&drv.q.vring_hva(0))?;
        drv.backend.set_vring_base(0, 0)?;
        drv.backend.set_vring_call(0, Some(&drv.call))?;
        if cfg.eventfd_kick || !drv.backend.supports_notify() {
            let k = eventfd()?;
            drv.backend.set_vring_kick(0, Some(&k))?;
            drv.kick = Some(k);
        }
        drv.backend.set_vring_enable(0, true)?;
        drv.backend.set_status(
            VIRTIO_CONFIG_S_ACKNOWLEDGE
                | VIRTIO_CONFIG_S_DRIVER
                | VIRTIO_CONFIG_S_FEATURES_OK
                | VIRTIO_CONFIG_S_DRIVER_OK,
        )?;
        Ok(drv)
    }

    /// The back end.
    pub fn backend(&self) -> &B {
        &self.backend
    }
    /// Negotiated features.
    pub fn features(&self) -> u64 {
        self.features
    }
    /// The config read at start.
    pub fn config(&self) -> BlkConfig {
        self.config
    }
    /// Whether indirect chains were negotiated.
    pub fn indirect(&self) -> bool {
        self.features & (1 << VIRTIO_RING_F_INDIRECT_DESC) != 0
    }
    /// Whether [`BlkDriver::read`], [`BlkDriver::write`] and
    /// [`BlkDriver::request`] post indirect chains.
    fn indirect_requests(&self) -> bool {
        self.cfg.indirect && self.indirect()
    }
    /// Whether the device offered (and so this driver took)
    /// `VIRTIO_BLK_F_RO`.
    pub fn read_only(&self) -> bool {
        self.features & (1 << F_RO) != 0
    }
    /// Queue size in use.
    pub fn queue_size(&self) -> u16 {
        self.q.size()
    }

    /// Posts a chain of `pieces` (one indirect descriptor when `indirect`)
    /// and kicks, without waiting.
    pub fn post(&mut self, pieces: &[Piece], indirect: bool) -> Result<()> {
        let mut segs = Vec::with_capacity(pieces.len());
        let mut off = 0usize;
        for p in pieces {
            let len = match p {
                Piece::Out(b) => b.len(),
                Piece::In(n) => *n,
            };
            if off + len > self.q.buf_size() {
                return Err(Error::InvalidArgument(format!(
                    "a chain of more than the {}-byte arena",
                    self.q.buf_size()
                )));
            }
            match p {
                Piece::Out(b) => self.q.write_buf(0, off, b)?,
                Piece::In(n) => self.q.write_buf(0, off, &vec![0xa5; *n])?,
            }
            segs.push(Seg {
                addr: self.q.buf_iova(0)? + off as u64,
                len: len as u32,
                write: matches!(p, Piece::In(_)),
            });
            off = (off + len).div_ceil(64) * 64;
        }
        if indirect {
            self.q.add_indirect(&segs, 0)?;
        } else {
            self.q.add(&segs, 0)?;
        }
        if self.q.publish()? {
            match &self.kick {
                Some(k) => k
                    .write(1)
                    .map_err(|e| Error::io("kick eventfd write", &e))?,
                None => self.backend.notify(0)?,
            }
        }
        Ok(())
    }

    /// Waits for the chain [`BlkDriver::post`] posted and returns it.
    pub fn complete(&mut self, pieces: &[Piece]) -> Result<Completion> {
        let deadline = Instant::now() + self.cfg.timeout;
        let used = loop {
            if let Some(u) = self.q.pop_used()? {
                break u;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let status = self.backend.get_status()?;
                return Err(Error::Timeout(format!(
                    "no completion within {:?} (device status {status:#x})",
                    self.cfg.timeout
                )));
            }
            wait_eventfd(&self.call, left.min(Duration::from_millis(100)))?;
        };
        let mut ins = Vec::new();
        let mut off = 0usize;
        for p in pieces {
            let len = match p {
                Piece::Out(b) => b.len(),
                Piece::In(n) => {
                    ins.push(self.q.read_buf(0, off, *n)?);
                    *n
                }
            };
            off = (off + len).div_ceil(64) * 64;
        }
        Ok(Completion {
            used_len: used.len,
            ins,
        })
    }

    /// Posts `pieces` and waits for their completion.
    pub fn submit(&mut self, pieces: &[Piece], indirect: bool) -> Result<Completion> {
        self.post(pieces, indirect)?;
        self.complete(pieces)
    }

    /// Reads `len` bytes at `sector` into `bufs` writable buffers (the
    /// last also holds the status byte). Returns the status and the data.
    pub fn read(&mut self, sector: u64, len: usize, bufs: usize) -> Result<(u8, Vec<u8>)> {
        let mut p = vec![Piece::Out(header(T_IN, sector).to_vec())];
        p.extend(split(len, bufs).into_iter().map(Piece::In));
        if let Some(Piece::In(n)) = p.last_mut() {
            *n += 1;
        }
        if len == 0 {
            p.push(Piece::In(1));
        }
        let c = self.submit(&p, self.indirect_requests())?;
        Ok((status_of(&c)?, c.data()))
    }

    /// Writes `data` at `sector` from `bufs` readable buffers (the header
    /// in a buffer of its own). Returns the status.
    pub fn write(&mut self, sector: u64, data: &[u8], bufs: usize) -> Result<u8> {
        let mut p = vec![Piece::Out(header(T_OUT, sector).to_vec())];
        let mut at = 0;
        for n in split(data.len(), bufs) {
            p.push(Piece::Out(data[at..at + n].to_vec()));
            at += n;
        }
        p.push(Piece::In(1));
        status_of(&self.submit(&p, self.indirect_requests())?)
    }

    /// A request of `kind` with a writable buffer of `room` bytes before
    /// the status byte: flush (`room` 0), get-id (20), or any other type.
    /// Returns the status and the bytes written before it.
    pub fn request(&mut self, kind: u32, sector: u64, room: usize) -> Result<(u8, Vec<u8>)> {
        let mut p = vec![Piece::Out(header(kind, sector).to_vec())];
        if room > 0 {
            p.push(Piece::In(room));
        }
        p.push(Piece::In(1));
        let c = self.submit(&p, self.indirect_requests())?;
        Ok((status_of(&c)?, c.data()))
    }

    /// Resets the device and releases the queue and its mapping.
    pub fn stop(self) -> Result<()> {
        self.backend.reset()
    }
}

/// `len` bytes in `n` nearly equal parts (at least one, possibly empty).
fn split(len: usize, n: usize) -> Vec<usize> {
    let n = n.clamp(1, len.max(1));
    let step = len.div_ceil(n);
    let mut v = Vec::with_capacity(n);
    let mut left = len;
    while left > step {
        v.push(step);
        left -= step;
    }
    v.push(left);
    v
}

fn status_of(c: &Completion) -> Result<u8> {
    c.status()
        .ok_or_else(|| Error::Protocol("a completion without a status byte".into()))
}

impl<B: VhostBackend> Drop for BlkDriver<B> {
    fn drop(&mut self) {
        // Stop the device before taking its memory away.
        let _ = self.backend.reset();
        let _ = self.backend.set_vring_call(0, None);
        if self.kick.is_some() {
            let _ = self.backend.set_vring_kick(0, None);
        }
        let unmapped = self
            .mapped
            .is_none_or(|(iova, len)| self.backend.unmap_dma(iova, len).is_ok());
        // SAFETY: self.q is taken exactly once, here, and never used again.
        let q = unsafe { ManuallyDrop::take(&mut self.q) };
        if !unmapped {
            // The device may still reach this memory: never give it back.
            std::mem::forget(q);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_the_length() {
        for len in [0, 1, 511, 512, 4096, 5000] {
            for n in 1..9 {
                let v = split(len, n);
                assert_eq!(v.iter().sum::<usize>(), len, "{len} {n}");
                assert!(!v.is_empty() && v.len() <= n.max(1), "{len} {n}: {v:?}");
            }
        }
    }

    #[test]
    fn config_and_header_layout() {
        let mut b = [0u8; CONFIG_LEN];
        b[..8].copy_from_slice(&2048u64.to_le_bytes());
        b[12..16].copy_from_slice(&62u32.to_le_bytes());
        b[20..24].copy_from_slice(&512u32.to_le_bytes());
        let c = BlkConfig::parse(&b).unwrap();
        assert_eq!((c.capacity, c.seg_max, c.blk_size), (2048, 62, 512));
        assert!(BlkConfig::parse(&b[..23]).is_err());
        assert_eq!(
            std::mem::offset_of!(vb::virtio_blk_config, blk_size) + 4,
            CONFIG_LEN
        );
        assert_eq!(std::mem::size_of::<vb::virtio_blk_outhdr>(), 16);
        let h = header(T_OUT, 0x0102_0304_0506_0708);
        assert_eq!(&h[..4], &1u32.to_le_bytes());
        assert_eq!(&h[8..], &0x0102_0304_0506_0708u64.to_le_bytes());
    }

    #[test]
    fn completion_status_is_the_last_writable_byte() {
        let c = Completion {
            used_len: 4,
            ins: vec![vec![1, 2], vec![3, 9]],
        };
        assert_eq!(c.status(), Some(9));
        assert_eq!(c.data(), vec![1, 2, 3]);
        let c = Completion {
            used_len: 0,
            ins: vec![],
        };
        assert_eq!(c.status(), None);
    }
}
