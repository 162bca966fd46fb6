// SPDX-License-Identifier: GPL-2.0 OR MIT
//! A minimal virtio-net driver over any [`VhostBackend`]: brings the device
//! up with queue 0 = RX and queue 1 = TX, sends and receives frames on a
//! loopback device, and measures it ([`ping`], [`bench`]).

use std::collections::VecDeque;
use std::mem::ManuallyDrop;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::backend::VhostBackend;
use crate::error::{Error, Result};
use crate::net::{
    build_frame, check_frame, verify_frame, Mac, NetConfig, VirtioNetHdr, FRAME_MAX, FRAME_MIN,
    NET_CONFIG_LEN, NET_HDR_LEN,
};
use crate::uapi::*;
use crate::virtq::{Seg, Virtq, VirtqConfig};

/// RX queue index.
pub const RX: u16 = 0;
/// TX queue index.
pub const TX: u16 = 1;

/// How the driver kicks queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KickMode {
    /// [`VhostBackend::notify`] (region 1 on vhost-mdev).
    Direct,
    /// An eventfd bound with [`VhostBackend::set_vring_kick`]
    /// (`VFIO_DEVICE_IOEVENTFD` on vhost-mdev).
    EventFd,
}

/// Options of [`NetDriver::start`].
#[derive(Debug, Clone, Copy)]
pub struct NetDriverConfig {
    /// Requested queue size (clipped to the device maximum).
    pub queue_size: u16,
    /// IOVA of the first queue's memory.
    pub iova_base: u64,
    /// Kick path ([`KickMode::EventFd`] is used when the back end has no
    /// direct notification).
    pub kick: KickMode,
    /// Negotiate and use indirect descriptors if offered.
    pub indirect: bool,
    /// Negotiate `VIRTIO_RING_F_EVENT_IDX` if offered.
    pub event_idx: bool,
    /// Negotiate `VIRTIO_NET_F_MRG_RXBUF` if offered.
    pub mrg_rxbuf: bool,
    /// How long [`NetDriver::recv`] waits for a frame.
    pub timeout: Duration,
    /// Largest frame (without the virtio-net header) to send and receive:
    /// sizes the TX buffers, and the RX buffers without MRG_RXBUF. With
    /// MRG_RXBUF, frames above [`SLOT_SIZE`] are received in page-sized
    /// RX buffers that the device spans.
    pub max_frame: usize,
}

impl Default for NetDriverConfig {
    fn default() -> Self {
        NetDriverConfig {
            queue_size: 256,
            iova_base: 0x1000_0000,
            kick: KickMode::Direct,
            indirect: false,
            event_idx: true,
            mrg_rxbuf: true,
            timeout: Duration::from_secs(5),
            max_frame: FRAME_MAX,
        }
    }
}

/// Smallest buffer size of each RX/TX slot: header and a full frame of
/// [`FRAME_MAX`] bytes.
pub const SLOT_SIZE: usize = 2048;
/// RX buffer size with MRG_RXBUF when frames do not fit [`SLOT_SIZE`].
pub const MRG_RX_BUF_SIZE: usize = 4096;

/// Buffer sizes (TX, RX) for frames of up to `max_frame` bytes.
pub fn slot_sizes(max_frame: usize, mrg_rxbuf: bool) -> (usize, usize) {
    let tx = (NET_HDR_LEN + max_frame).div_ceil(64) * 64;
    let tx = tx.max(SLOT_SIZE);
    let rx = if mrg_rxbuf && tx > SLOT_SIZE {
        MRG_RX_BUF_SIZE
    } else {
        tx
    };
    (tx, rx)
}

struct Queues {
    rx: Virtq,
    tx: Virtq,
}

/// A running virtio-net device.
pub struct NetDriver<B: VhostBackend> {
    backend: B,
    q: ManuallyDrop<Queues>,
    mapped: Vec<(u64, u64)>,
    calls: [EventFd; 2],
    kicks: [Option<EventFd>; 2],
    features: u64,
    config: NetConfig,
    tx_free: Vec<usize>,
    /// The frame [`NetDriver::queue_tx_template`] sends, and which TX
    /// buffers already hold it (header and all).
    tx_template: Vec<u8>,
    tx_has_template: Vec<bool>,
    /// Scratch list of the RX buffers of one frame (no allocation per
    /// frame).
    rx_slots: Vec<usize>,
    indirect: bool,
    mrg_rxbuf: bool,
    cfg: NetDriverConfig,
}

fn eventfd() -> Result<EventFd> {
    EventFd::new(EFD_NONBLOCK).map_err(|e| Error::io("eventfd", &e))
}

/// Waits up to `timeout` for `fd` to become readable and drains it;
/// returns whether it fired.
pub fn wait_eventfd(fd: &EventFd, timeout: Duration) -> Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: pfd is one valid pollfd for the duration of the call.
    let r = unsafe { libc::poll(&mut pfd, 1, ms) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(Error::io("poll", &e));
    }
    if r == 0 {
        return Ok(false);
    }
    // Non-blocking read clears the counter; EAGAIN means a racing reader.
    let _ = fd.read();
    Ok(true)
}

/// The features a virtio-net driver of this crate asks for.
pub fn wanted_features(cfg: &NetDriverConfig) -> u64 {
    let mut f = (1u64 << VIRTIO_F_VERSION_1)
        | (1 << VIRTIO_F_ACCESS_PLATFORM)
        | (1 << VIRTIO_NET_F_MAC)
        | (1 << VIRTIO_NET_F_MTU)
        | (1 << VIRTIO_NET_F_STATUS);
    if cfg.event_idx {
        f |= 1 << VIRTIO_RING_F_EVENT_IDX;
    }
    if cfg.indirect {
        f |= 1 << VIRTIO_RING_F_INDIRECT_DESC;
    }
    if cfg.mrg_rxbuf {
        f |= 1 << VIRTIO_NET_F_MRG_RXBUF;
    }
    f
}

/// Runs the status/feature handshake up to FEATURES_OK and returns the
/// negotiated features.
pub fn negotiate<B: VhostBackend + ?Sized>(backend: &B, wanted: u64) -> Result<u64> {
    let s = VIRTIO_CONFIG_S_ACKNOWLEDGE;
    backend.set_status(s)?;
    let s = s | VIRTIO_CONFIG_S_DRIVER;
    backend.set_status(s)?;
    let offered = backend.get_features()?;
    let features = offered & wanted;
    for bit in [VIRTIO_F_VERSION_1, VIRTIO_F_ACCESS_PLATFORM] {
        if features & (1 << bit) == 0 {
            return Err(Error::Protocol(format!(
                "device does not offer feature bit {bit} (offered {offered:#x})"
            )));
        }
    }
    backend.set_features(features)?;
    backend.set_status(s | VIRTIO_CONFIG_S_FEATURES_OK)?;
    let got = backend.get_status()?;
    if got & VIRTIO_CONFIG_S_FEATURES_OK == 0 {
        return Err(Error::Protocol(format!(
            "device did not accept features {features:#x} (status {got:#x})"
        )));
    }
    Ok(features)
}

impl<B: VhostBackend> NetDriver<B> {
    /// Resets the device, negotiates features, sets up RX and TX and sets
    /// DRIVER_OK, with the RX queue filled.
    pub fn start(backend: B, cfg: NetDriverConfig) -> Result<Self> {
        backend.reset()?;
        backend.set_owner()?;
        let features = negotiate(&backend, wanted_features(&cfg))?;
        let config_len = backend.get_config_size()?.min(NET_CONFIG_LEN as u32);
        let config = NetConfig::parse(&backend.get_config(0, config_len)?)?;
        let max = backend.get_vring_num()?;
        let want = cfg.queue_size.min(max).max(1);
        // Largest power of two not above `want`.
        let size = 1u16 << (15 - want.leading_zeros().min(15));
        let event_idx = features & (1 << VIRTIO_RING_F_EVENT_IDX) != 0;
        let indirect = features & (1 << VIRTIO_RING_F_INDIRECT_DESC) != 0;
        let mrg_rxbuf = features & (1 << VIRTIO_NET_F_MRG_RXBUF) != 0;
        let (tx_buf, rx_buf) = slot_sizes(cfg.max_frame, mrg_rxbuf);
        let vqc = VirtqConfig {
            size,
            buffers: usize::from(size),
            buf_size: rx_buf,
            max_indirect: if indirect { 2 } else { 0 },
            event_idx,
        };
        let rx = Virtq::new(vqc, cfg.iova_base)?;
        let tx_iova = cfg.iova_base + rx.memory().len() as u64 + 0x10_0000;
        let tx = Virtq::new(
            VirtqConfig {
                buf_size: tx_buf,
                ..vqc
            },
            tx_iova,
        )?;
        let mut kick = cfg.kick;
        if !backend.supports_notify() {
            kick = KickMode::EventFd;
        }
        let mut drv = NetDriver {
            backend,
            q: ManuallyDrop::new(Queues { rx, tx }),
            mapped: Vec::new(),
            calls: [eventfd()?, eventfd()?],
            kicks: [None, None],
            features,
            config,
            tx_free: (0..usize::from(size)).rev().collect(),
            tx_template: Vec::new(),
            tx_has_template: vec![false; usize::from(size)],
            rx_slots: Vec::with_capacity(usize::from(size)),
            indirect,
            mrg_rxbuf,
            cfg: NetDriverConfig { kick, ..cfg },
        };
        drv.setup()?;
        Ok(drv)
    }

    fn setup(&mut self) -> Result<()> {
        for q in [&self.q.rx, &self.q.tx] {
            // SAFETY: the memory is unmapped in Drop before it is freed
            // (or leaked if unmapping fails), and it is only accessed
            // through DmaMemory's copy/volatile/atomic accessors.
            unsafe { q.memory().map(&self.backend, q.iova())? };
            self.mapped.push((q.iova(), q.memory().len() as u64));
        }
        for (index, q) in [(RX, &self.q.rx), (TX, &self.q.tx)] {
            let i = u32::from(index);
            self.backend.set_vring_num(i, u32::from(q.size()))?;
            self.backend.set_vring_addr(&q.vring_addr(i))?;
            self.backend.set_vring_hva(&q.vring_hva(i))?;
            self.backend.set_vring_base(i, 0)?;
            self.backend
                .set_vring_call(i, Some(&self.calls[usize::from(index)]))?;
            if self.cfg.kick == KickMode::EventFd {
                let k = eventfd()?;
                self.backend.set_vring_kick(i, Some(&k))?;
                self.kicks[usize::from(index)] = Some(k);
            }
            self.backend.set_vring_enable(i, true)?;
        }
        self.backend.set_status(
            VIRTIO_CONFIG_S_ACKNOWLEDGE
                | VIRTIO_CONFIG_S_DRIVER
                | VIRTIO_CONFIG_S_FEATURES_OK
                | VIRTIO_CONFIG_S_DRIVER_OK,
        )?;
        for slot in 0..self.q.rx.num_bufs() {
            self.post_rx(slot)?;
        }
        if self.q.rx.publish()? {
            self.kick(RX)?;
        }
        Ok(())
    }

    /// The back end.
    pub fn backend(&self) -> &B {
        &self.backend
    }
    /// Negotiated features.
    pub fn features(&self) -> u64 {
        self.features
    }
    /// The config space read at start.
    pub fn config(&self) -> &NetConfig {
        &self.config
    }
    /// The device MAC (destination of frames the loopback accepts).
    pub fn mac(&self) -> Mac {
        self.config.mac
    }
    /// Queue size in use.
    pub fn queue_size(&self) -> u16 {
        self.q.rx.size()
    }
    /// The RX and TX call eventfds.
    pub fn call_fds(&self) -> &[EventFd; 2] {
        &self.calls
    }
    /// The RX (0) or TX (1) queue.
    pub fn queue(&self, index: u16) -> &Virtq {
        if index == RX {
            &self.q.rx
        } else {
            &self.q.tx
        }
    }

    /// Kicks a queue by the configured path.
    pub fn kick(&self, index: u16) -> Result<()> {
        match &self.kicks[usize::from(index & 1)] {
            Some(k) => k.write(1).map_err(|e| Error::io("kick eventfd write", &e)),
            None => self.backend.notify(index),
        }
    }

    fn post_rx(&mut self, slot: usize) -> Result<()> {
        let addr = self.q.rx.buf_iova(slot)?;
        let len = self.q.rx.buf_size() as u32;
        if self.indirect {
            let segs = [
                Seg {
                    addr,
                    len: NET_HDR_LEN as u32,
                    write: true,
                },
                Seg {
                    addr: addr + NET_HDR_LEN as u64,
                    len: len - NET_HDR_LEN as u32,
                    write: true,
                },
            ];
            self.q.rx.add_indirect(&segs, slot as u64)?;
        } else {
            self.q.rx.add(
                &[Seg {
                    addr,
                    len,
                    write: true,
                }],
                slot as u64,
            )?;
        }
        Ok(())
    }

    /// Returns completed TX buffers to the free list; returns how many.
    pub fn reclaim_tx(&mut self) -> Result<usize> {
        let mut n = 0;
        while let Some(u) = self.q.tx.pop_used()? {
            self.tx_free.push(u.token as usize);
            n += 1;
        }
        Ok(n)
    }

    /// The largest frame the TX buffers hold (without the header).
    pub fn max_tx_frame(&self) -> usize {
        self.q.tx.buf_size() - NET_HDR_LEN
    }

    fn check_tx_len(&self, len: usize) -> Result<()> {
        if len > self.max_tx_frame() {
            return Err(Error::InvalidArgument(format!(
                "frame of {len} bytes exceeds {}",
                self.max_tx_frame()
            )));
        }
        Ok(())
    }

    fn take_tx_slot(&mut self) -> Result<Option<usize>> {
        if self.tx_free.is_empty() {
            self.reclaim_tx()?;
        }
        Ok(self.tx_free.pop())
    }

    /// Adds TX buffer `slot`, holding the header and `len` frame bytes.
    fn add_tx(&mut self, slot: usize, len: usize) -> Result<()> {
        let addr = self.q.tx.buf_iova(slot)?;
        let r = if self.indirect {
            let segs = [
                Seg {
                    addr,
                    len: NET_HDR_LEN as u32,
                    write: false,
                },
                Seg {
                    addr: addr + NET_HDR_LEN as u64,
                    len: len as u32,
                    write: false,
                },
            ];
            self.q.tx.add_indirect(&segs, slot as u64)
        } else {
            self.q.tx.add(
                &[Seg {
                    addr,
                    len: (NET_HDR_LEN + len) as u32,
                    write: false,
                }],
                slot as u64,
            )
        };
        if let Err(e) = r {
            self.tx_free.push(slot);
            return Err(e);
        }
        Ok(())
    }

    /// Queues a frame on TX without publishing it; returns false when TX is
    /// full.
    pub fn queue_tx(&mut self, frame: &[u8]) -> Result<bool> {
        self.check_tx_len(frame.len())?;
        let Some(slot) = self.take_tx_slot()? else {
            return Ok(false);
        };
        let hdr = VirtioNetHdr::default().to_bytes();
        self.q.tx.write_buf(slot, 0, &hdr)?;
        self.q.tx.write_buf(slot, NET_HDR_LEN, frame)?;
        self.tx_has_template[slot] = false;
        self.add_tx(slot, frame.len())?;
        Ok(true)
    }

    /// Sets the frame [`NetDriver::queue_tx_template`] sends.
    pub fn set_tx_template(&mut self, frame: &[u8]) -> Result<()> {
        self.check_tx_len(frame.len())?;
        self.tx_template = frame.to_vec();
        self.tx_has_template.fill(false);
        Ok(())
    }

    /// Queues the template frame with `patch` written at byte `at` of the
    /// frame (a sequence number), without publishing it; returns false when
    /// TX is full. A TX buffer gets the whole frame the first time only,
    /// then just the patch: the driver's copies stay out of the
    /// measurement (userspace memcpy of large buffers is very slow under
    /// TCG).
    pub fn queue_tx_template(&mut self, at: usize, patch: &[u8]) -> Result<bool> {
        self.queue_tx_patched(&[(at, patch)])
    }

    /// [`NetDriver::queue_tx_template`] with several patches, each at its
    /// byte of the frame.
    pub fn queue_tx_patched(&mut self, patches: &[(usize, &[u8])]) -> Result<bool> {
        let len = self.tx_template.len();
        for &(at, patch) in patches {
            if at + patch.len() > len {
                return Err(Error::InvalidArgument(format!(
                    "patch of {} bytes at {at} outside the {len}-byte template",
                    patch.len()
                )));
            }
        }
        let Some(slot) = self.take_tx_slot()? else {
            return Ok(false);
        };
        if !self.tx_has_template[slot] {
            let hdr = VirtioNetHdr::default().to_bytes();
            self.q.tx.write_buf(slot, 0, &hdr)?;
            self.q.tx.write_buf(slot, NET_HDR_LEN, &self.tx_template)?;
            self.tx_has_template[slot] = true;
        }
        for &(at, patch) in patches {
            self.q.tx.write_buf(slot, NET_HDR_LEN + at, patch)?;
        }
        self.add_tx(slot, len)?;
        Ok(true)
    }

    /// Publishes queued TX frames and kicks TX if the device asks for it.
    pub fn flush_tx(&mut self) -> Result<()> {
        if self.q.tx.publish()? {
            self.kick(TX)?;
        }
        Ok(())
    }

    /// Sends one frame, waiting for TX space if needed.
    pub fn send(&mut self, frame: &[u8]) -> Result<()> {
        let deadline = Instant::now() + self.cfg.timeout;
        while !self.queue_tx(frame)? {
            if Instant::now() > deadline {
                return Err(self.timeout("TX buffers to complete"));
            }
            if !self.q.tx.enable_interrupts()? {
                wait_eventfd(&self.calls[1], Duration::from_millis(100))?;
            }
        }
        self.flush_tx()
    }

    fn timeout(&self, what: &str) -> Error {
        let status = self
            .backend
            .get_status()
            .map(|s| format!("status {s:#x} [{}]", status_names(s).join("|")))
            .unwrap_or_else(|e| format!("status unreadable: {e}"));
        Error::Timeout(format!(
            "waiting for {what} on {} ({status})",
            self.backend.describe()
        ))
    }

    /// Takes one received frame if there is one: calls `sink(queue, slot,
    /// offset, len)` for each piece of frame data in order (the header is
    /// left out), re-posts the buffers and returns the frame length.
    fn take_rx(
        &mut self,
        mut sink: impl FnMut(&Virtq, usize, usize, usize) -> Result<()>,
    ) -> Result<Option<usize>> {
        let Some(u) = self.q.rx.pop_used()? else {
            return Ok(None);
        };
        let mut slots = std::mem::take(&mut self.rx_slots);
        slots.clear();
        slots.push(u.token as usize);
        let r = self.take_rx_rest(u.token as usize, u.len, &mut slots, &mut sink);
        // Re-post whatever was taken, even after an error.
        let mut posted = Ok(());
        for s in &slots {
            if posted.is_ok() {
                posted = self.post_rx(*s);
            }
        }
        self.rx_slots = slots;
        let len = r?;
        posted?;
        if self.q.rx.publish()? {
            self.kick(RX)?;
        }
        Ok(Some(len))
    }

    fn take_rx_rest(
        &mut self,
        first: usize,
        first_len: u32,
        slots: &mut Vec<usize>,
        sink: &mut impl FnMut(&Virtq, usize, usize, usize) -> Result<()>,
    ) -> Result<usize> {
        let bufsz = self.q.rx.buf_size();
        let len = (first_len as usize).min(bufsz);
        if len < NET_HDR_LEN {
            return Err(Error::Protocol(format!("RX used length {len} < header")));
        }
        let mut hdr = [0u8; NET_HDR_LEN];
        self.q.rx.read_buf_into(first, 0, &mut hdr)?;
        let hdr = VirtioNetHdr::from_bytes(&hdr)?;
        sink(&self.q.rx, first, NET_HDR_LEN, len - NET_HDR_LEN)?;
        let mut total = len - NET_HDR_LEN;
        if self.mrg_rxbuf && hdr.num_buffers > 1 {
            for _ in 1..hdr.num_buffers {
                let u = self.q.rx.pop_used()?.ok_or_else(|| {
                    Error::Protocol("num_buffers exceeds the used entries".into())
                })?;
                slots.push(u.token as usize);
                let l = (u.len as usize).min(bufsz);
                sink(&self.q.rx, u.token as usize, 0, l)?;
                total += l;
            }
        }
        Ok(total)
    }

    /// Takes one received frame if there is one (without the virtio-net
    /// header), re-posting its buffers.
    pub fn try_recv(&mut self) -> Result<Option<Vec<u8>>> {
        let mut frame = Vec::new();
        let got = self.take_rx(|q, slot, off, len| {
            frame.extend(q.read_buf(slot, off, len)?);
            Ok(())
        })?;
        Ok(got.map(|_| frame))
    }

    /// Takes one received frame if there is one, copying only its first
    /// `peek.len()` bytes (or fewer, for a shorter frame) into `peek`;
    /// returns the frame length.
    pub fn try_recv_peek(&mut self, peek: &mut [u8]) -> Result<Option<usize>> {
        let mut at = 0usize;
        self.take_rx(|q, slot, off, len| {
            let n = len.min(peek.len() - at);
            if n > 0 {
                q.read_buf_into(slot, off, &mut peek[at..at + n])?;
                at += n;
            }
            Ok(())
        })
    }

    /// Waits for one received frame.
    pub fn recv(&mut self) -> Result<Vec<u8>> {
        self.recv_timeout(self.cfg.timeout)
    }

    /// Waits up to `timeout` for one received frame.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(f) = self.try_recv()? {
                return Ok(f);
            }
            if self.q.rx.enable_interrupts()? {
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(self.timeout("a received frame"));
            }
            // Bounded waits also cover a device that completes without an
            // interrupt.
            wait_eventfd(
                &self.calls[0],
                (deadline - now).min(Duration::from_millis(50)),
            )?;
        }
    }

    /// Resets the device and releases queues and mappings.
    pub fn stop(self) -> Result<()> {
        // Drop does the work; errors there are ignored, so report the reset.
        self.backend.reset()
    }
}

impl<B: VhostBackend> Drop for NetDriver<B> {
    fn drop(&mut self) {
        // Stop the device before taking its memory away.
        let _ = self.backend.reset();
        for i in [RX, TX] {
            let _ = self.backend.set_vring_call(u32::from(i), None);
            if self.kicks[usize::from(i)].is_some() {
                let _ = self.backend.set_vring_kick(u32::from(i), None);
            }
        }
        let mut unmapped = true;
        for (iova, len) in &self.mapped {
            unmapped &= self.backend.unmap_dma(*iova, *len).is_ok();
        }
        // SAFETY: self.q is taken exactly once, here, and never used again.
        let q = unsafe { ManuallyDrop::take(&mut self.q) };
        if !unmapped {
            // The device may still reach this memory: never give it back.
            std::mem::forget(q);
        }
    }
}

/// Frame sizes of a mixed-size run: 60, 1514 and sizes in between.
pub fn mixed_size(i: u64) -> usize {
    const SIZES: [usize; 8] = [FRAME_MIN, FRAME_MAX, 64, 128, 256, 512, 1024, 1500];
    if i < SIZES.len() as u64 {
        SIZES[i as usize]
    } else {
        FRAME_MIN + (i.wrapping_mul(7919) % (FRAME_MAX - FRAME_MIN + 1) as u64) as usize
    }
}

/// The source MAC of test frames (locally administered).
pub const TEST_SRC_MAC: Mac = Mac([0x02, 0x76, 0x6d, 0x64, 0x65, 0x76]);

/// Result of [`ping`].
#[derive(Debug, Clone, Default)]
pub struct PingReport {
    /// Frames sent and received back intact.
    pub frames: u64,
    /// Round-trip times.
    pub rtts: Vec<Duration>,
}

/// Sends `count` frames of `size` bytes (0: mixed sizes 60..=1514) one at
/// a time and checks each comes back byte-identical and in order.
pub fn ping<B: VhostBackend>(
    drv: &mut NetDriver<B>,
    count: u64,
    size: usize,
) -> Result<PingReport> {
    let mut rep = PingReport::default();
    for seq in 0..count {
        let len = if size == 0 { mixed_size(seq) } else { size };
        let frame = build_frame(drv.mac(), TEST_SRC_MAC, seq, len)?;
        let t = Instant::now();
        drv.send(&frame)?;
        let got = drv.recv()?;
        rep.rtts.push(t.elapsed());
        let got_seq =
            check_frame(&got).map_err(|e| Error::Protocol(format!("frame {seq}: {e}")))?;
        if got_seq != seq {
            return Err(Error::Protocol(format!(
                "frame {seq}: received frame {got_seq} (out of order)"
            )));
        }
        verify_frame(&frame, &got)?;
        rep.frames += 1;
    }
    drv.reclaim_tx()?;
    Ok(rep)
}

/// Options of [`bench`].
#[derive(Debug, Clone, Copy)]
pub struct BenchOptions {
    /// Frame size in bytes.
    pub size: usize,
    /// Frames in flight.
    pub depth: usize,
    /// Run time.
    pub duration: Duration,
    /// One frame at a time (latency), regardless of `depth`.
    pub pingpong: bool,
    /// Spin on the used rings with interrupts disabled instead of blocking
    /// in poll() on the RX call eventfd.
    pub busy_poll: bool,
    /// With `busy_poll`, never yield the CPU while spinning (as a driver
    /// that owns its CPU does): a device worker that waits for this CPU
    /// then waits for the scheduler's tick.
    pub no_yield: bool,
}

/// Progress reported by [`bench`] about twice a second.
#[derive(Debug, Clone, Copy)]
pub struct BenchProgress {
    /// Time since the start.
    pub elapsed: Duration,
    /// Frames received so far.
    pub packets: u64,
}

/// Result of [`bench`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BenchResult {
    /// Frames looped back.
    pub packets: u64,
    /// Frame bytes looped back (without virtio-net headers).
    pub bytes: u64,
    /// Measured time in seconds.
    pub seconds: f64,
    /// Frames per second.
    pub pps: f64,
    /// Gbit/s of frame bytes.
    pub gbps: f64,
    /// Median send-to-receive latency in microseconds.
    pub p50_us: f64,
    /// 90th percentile latency in microseconds.
    pub p90_us: f64,
    /// 99th percentile latency in microseconds.
    pub p99_us: f64,
    /// 99.9th percentile latency in microseconds.
    pub p999_us: f64,
    /// Largest latency in microseconds.
    pub max_us: f64,
    /// Times the driver blocked in poll() on the RX call eventfd.
    pub waits: u64,
    /// Waits that ended without the eventfd firing (timeout).
    pub wait_timeouts: u64,
    /// Timed-out waits after which a frame was already in the used ring:
    /// the device completed it without a (timely) interrupt.
    pub late_irqs: u64,
    /// Whether the driver busy-polled.
    pub busy_poll: bool,
    /// Whether it busy-polled without ever yielding the CPU.
    pub no_yield: bool,
}

impl BenchResult {
    /// One-line JSON.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"packets\":{},\"bytes\":{},\"seconds\":{:.3},\"pps\":{:.1},\"gbps\":{:.4},\
             \"p50_us\":{:.2},\"p90_us\":{:.2},\"p99_us\":{:.2},\"p999_us\":{:.2},\
             \"max_us\":{:.2},\"waits\":{},\"wait_timeouts\":{},\"late_irqs\":{},\
             \"busy_poll\":{},\"no_yield\":{}}}",
            self.packets,
            self.bytes,
            self.seconds,
            self.pps,
            self.gbps,
            self.p50_us,
            self.p90_us,
            self.p99_us,
            self.p999_us,
            self.max_us,
            self.waits,
            self.wait_timeouts,
            self.late_irqs,
            self.busy_poll,
            self.no_yield
        )
    }
}

/// The `q` quantile (0..=1) of sorted nanosecond samples, in microseconds.
pub fn percentile_us(sorted_ns: &[u64], q: f64) -> f64 {
    if sorted_ns.is_empty() {
        return 0.0;
    }
    let i = ((sorted_ns.len() - 1) as f64 * q).round() as usize;
    sorted_ns[i.min(sorted_ns.len() - 1)] as f64 / 1000.0
}

/// Offset of the sequence number in test frames.
const SEQ_AT: usize = 18;

/// Loops frames through the device for `opts.duration` with `opts.depth`
/// frames in flight. Frames carry a sequence number checked for order and
/// length (not the full checksum, to keep the driver out of the way): TX
/// buffers get the whole frame once and then only the sequence number,
/// and only the first bytes of a received frame are read.
///
/// The driver reclaims TX buffers by polling, so TX interrupts stay off.
/// Without `busy_poll` it blocks in poll() on the RX call eventfd when
/// nothing came back (RX interrupts on); with `busy_poll` it spins on the
/// RX used index with RX interrupts off. Kicks follow the device's
/// suppression in both modes.
pub fn bench<B: VhostBackend>(
    drv: &mut NetDriver<B>,
    opts: BenchOptions,
    progress: &mut dyn FnMut(BenchProgress),
) -> Result<BenchResult> {
    let depth = if opts.pingpong {
        1
    } else {
        opts.depth.clamp(1, usize::from(drv.queue_size()))
    };
    let template = build_frame(drv.mac(), TEST_SRC_MAC, 0, opts.size)?;
    drv.set_tx_template(&template)?;
    drv.q.tx.disable_interrupts()?;
    if opts.busy_poll {
        drv.q.rx.disable_interrupts()?;
    } else {
        drv.q.rx.enable_interrupts()?;
    }
    let r = bench_loop(drv, opts, depth, template.len(), progress);
    // Leave the queues as ping/recv expect them.
    drv.q.tx.enable_interrupts()?;
    drv.q.rx.enable_interrupts()?;
    r
}

fn bench_loop<B: VhostBackend>(
    drv: &mut NetDriver<B>,
    opts: BenchOptions,
    depth: usize,
    frame_len: usize,
    progress: &mut dyn FnMut(BenchProgress),
) -> Result<BenchResult> {
    let mut inflight: VecDeque<(u64, Instant)> = VecDeque::with_capacity(depth);
    // Enough for a few seconds without reallocating in the loop.
    let mut lat = Reservoir::new(LATENCY_SAMPLES);
    let (mut next_seq, mut packets, mut bytes) = (0u64, 0u64, 0u64);
    let (mut waits, mut wait_timeouts, mut late_irqs) = (0u64, 0u64, 0u64);
    let mut peek = [0u8; SEQ_AT + 8];
    let start = Instant::now();
    let end = start + opts.duration;
    let mut last_report = start;
    loop {
        let now = Instant::now();
        let sending = now < end;
        if !sending && inflight.is_empty() {
            break;
        }
        let mut queued = false;
        let first_new = inflight.len();
        while sending && inflight.len() < depth {
            if !drv.queue_tx_template(SEQ_AT, &next_seq.to_be_bytes())? {
                break;
            }
            inflight.push_back((next_seq, now));
            next_seq += 1;
            queued = true;
        }
        if queued {
            // The frames queued above become visible to the device together,
            // when they are published: one timestamp for all of them (a clock
            // read per frame costs the driver much under TCG).
            let t = Instant::now();
            for e in inflight.range_mut(first_new..) {
                e.1 = t;
            }
            drv.flush_tx()?;
        }
        let mut got_any = false;
        // Frames found in one pass were completed by then: one timestamp.
        let mut t_rx = None;
        while let Some(len) = drv.try_recv_peek(&mut peek)? {
            let t = *t_rx.get_or_insert_with(Instant::now);
            got_any = true;
            let (seq, t0) = inflight
                .pop_front()
                .ok_or_else(|| Error::Protocol("received a frame that was not sent".into()))?;
            let got = u64::from_be_bytes(peek[SEQ_AT..].try_into().unwrap_or_default());
            if len != frame_len || got != seq {
                return Err(Error::Protocol(format!(
                    "expected frame {seq} of {frame_len} bytes, received frame {got} of {len} bytes",
                )));
            }
            lat.add(t.duration_since(t0).as_nanos() as u64);
            packets += 1;
            bytes += len as u64;
        }
        drv.reclaim_tx()?;
        if !got_any && !inflight.is_empty() {
            if opts.busy_poll {
                spin_for_used(drv, !opts.no_yield)?;
            } else if !drv.q.rx.has_used()? {
                // Wait for the device: bounded, so a lost interrupt only
                // slows us (and is counted).
                let t0 = Instant::now();
                loop {
                    if drv.q.rx.enable_interrupts()? {
                        break;
                    }
                    waits += 1;
                    if wait_eventfd(&drv.calls[0], Duration::from_millis(20))? {
                        break;
                    }
                    wait_timeouts += 1;
                    if drv.q.rx.has_used()? {
                        late_irqs += 1;
                        break;
                    }
                    if t0.elapsed() > drv.cfg.timeout {
                        return Err(drv.timeout("a looped-back frame"));
                    }
                }
            }
        }
        if last_report.elapsed() >= Duration::from_millis(500) {
            last_report = Instant::now();
            progress(BenchProgress {
                elapsed: start.elapsed(),
                packets,
            });
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let max_ns = lat.max;
    let mut lat_ns = lat.samples;
    lat_ns.sort_unstable();
    Ok(BenchResult {
        packets,
        bytes,
        seconds,
        pps: packets as f64 / seconds,
        gbps: bytes as f64 * 8.0 / seconds / 1e9,
        p50_us: percentile_us(&lat_ns, 0.50),
        p90_us: percentile_us(&lat_ns, 0.90),
        p99_us: percentile_us(&lat_ns, 0.99),
        p999_us: percentile_us(&lat_ns, 0.999),
        max_us: max_ns as f64 / 1000.0,
        waits,
        wait_timeouts,
        late_irqs,
        busy_poll: opts.busy_poll,
        no_yield: opts.busy_poll && opts.no_yield,
    })
}

/// Latency samples kept per run: the percentiles come from a uniform
/// sample of at most this many round trips (32 MiB), however long the run.
const LATENCY_SAMPLES: usize = 1 << 22;

/// A uniform random sample of a stream of values (reservoir sampling,
/// Algorithm R) and the stream's maximum.
struct Reservoir {
    samples: Vec<u64>,
    cap: usize,
    seen: u64,
    max: u64,
    rng: u64,
}

impl Reservoir {
    fn new(cap: usize) -> Self {
        Self {
            samples: Vec::with_capacity(cap.min(1 << 20)),
            cap,
            seen: 0,
            max: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }

    fn add(&mut self, v: u64) {
        self.seen += 1;
        self.max = self.max.max(v);
        if self.samples.len() < self.cap {
            self.samples.push(v);
            return;
        }
        // xorshift64: cheap, and good enough to pick a slot.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let j = self.rng % self.seen;
        if let Some(s) = self.samples.get_mut(j as usize) {
            *s = v;
        }
    }
}

/// Empty polls of the used ring before the busy-polling driver starts
/// yielding its CPU between polls.
const SPINS_BEFORE_YIELD: u32 = 32;

/// Spins until the RX used index moves (or the driver's timeout passes),
/// with `yielding`, yielding the CPU (`sched_yield()`) between polls once a
/// few found nothing: a device worker that shares the driver's CPU then
/// runs at once instead of at the next scheduler tick.
fn spin_for_used<B: VhostBackend>(drv: &NetDriver<B>, yielding: bool) -> Result<()> {
    let t0 = Instant::now();
    let mut n = 0u32;
    while !drv.q.rx.has_used()? {
        if n < SPINS_BEFORE_YIELD || !yielding {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
        n = n.wrapping_add(1);
        if n.is_multiple_of(4096) && t0.elapsed() > drv.cfg.timeout {
            return Err(drv.timeout("a looped-back frame (busy polling)"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_sizes_stay_in_range() {
        assert_eq!(mixed_size(0), FRAME_MIN);
        assert_eq!(mixed_size(1), FRAME_MAX);
        for i in 0..10_000 {
            let s = mixed_size(i);
            assert!((FRAME_MIN..=FRAME_MAX).contains(&s), "{i}: {s}");
        }
    }

    #[test]
    fn reservoir_keeps_a_bounded_uniform_sample() {
        let mut r = Reservoir::new(1000);
        for v in 0..100_000u64 {
            r.add(v);
        }
        assert_eq!(r.samples.len(), 1000);
        assert_eq!(r.max, 99_999);
        let mut s = r.samples.clone();
        s.sort_unstable();
        // The median of a uniform sample of 0..100000 is near 50000.
        let m = s[500];
        assert!((40_000..60_000).contains(&m), "median {m}");
    }

    #[test]
    fn percentiles() {
        let v: Vec<u64> = (1..=100).map(|x| x * 1000).collect();
        assert_eq!(percentile_us(&v, 0.5), 51.0);
        assert_eq!(percentile_us(&v, 0.99), 99.0);
        assert_eq!(percentile_us(&[], 0.5), 0.0);
    }

    #[test]
    fn slot_sizes_fit_the_largest_frame() {
        assert_eq!(slot_sizes(FRAME_MAX, true), (SLOT_SIZE, SLOT_SIZE));
        assert_eq!(slot_sizes(60, false), (SLOT_SIZE, SLOT_SIZE));
        let (tx, rx) = slot_sizes(65535, true);
        assert!(tx >= 65535 + NET_HDR_LEN && tx % 64 == 0);
        assert_eq!(rx, MRG_RX_BUF_SIZE);
        // 17 page-sized buffers hold a 65535-byte frame and its header:
        // within the 32 the sample spans.
        assert_eq!((65535 + NET_HDR_LEN).div_ceil(rx), 17);
        let (tx, rx) = slot_sizes(9000, false);
        assert_eq!(tx, rx);
        assert!(rx >= 9000 + NET_HDR_LEN);
    }

    #[test]
    fn wanted_features_include_the_mandatory_bits() {
        let f = wanted_features(&NetDriverConfig::default());
        assert_ne!(f & (1 << VIRTIO_F_VERSION_1), 0);
        assert_ne!(f & (1 << VIRTIO_F_ACCESS_PLATFORM), 0);
        assert_eq!(f & (1 << VIRTIO_RING_F_INDIRECT_DESC), 0);
    }
}
