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
        }
    }
}

/// Buffer size of each RX/TX slot: header and a full frame.
const SLOT_SIZE: usize = 2048;

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
    indirect: bool,
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
        let vqc = VirtqConfig {
            size,
            buffers: usize::from(size),
            buf_size: SLOT_SIZE,
            max_indirect: if indirect { 2 } else { 0 },
            event_idx,
        };
        let rx = Virtq::new(vqc, cfg.iova_base)?;
        let tx_iova = cfg.iova_base + rx.memory().len() as u64 + 0x10_0000;
        let tx = Virtq::new(vqc, tx_iova)?;
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
            indirect,
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

    /// Queues a frame on TX without publishing it; returns false when TX is
    /// full.
    pub fn queue_tx(&mut self, frame: &[u8]) -> Result<bool> {
        if frame.len() + NET_HDR_LEN > SLOT_SIZE {
            return Err(Error::InvalidArgument(format!(
                "frame of {} bytes exceeds {}",
                frame.len(),
                SLOT_SIZE - NET_HDR_LEN
            )));
        }
        if self.tx_free.is_empty() {
            self.reclaim_tx()?;
        }
        let Some(slot) = self.tx_free.pop() else {
            return Ok(false);
        };
        let hdr = VirtioNetHdr::default().to_bytes();
        self.q.tx.write_buf(slot, 0, &hdr)?;
        self.q.tx.write_buf(slot, NET_HDR_LEN, frame)?;
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
                    len: frame.len() as u32,
                    write: false,
                },
            ];
            self.q.tx.add_indirect(&segs, slot as u64)
        } else {
            self.q.tx.add(
                &[Seg {
                    addr,
                    len: (NET_HDR_LEN + frame.len()) as u32,
                    write: false,
                }],
                slot as u64,
            )
        };
        if let Err(e) = r {
            self.tx_free.push(slot);
            return Err(e);
        }
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

    /// Takes one received frame if there is one (without the virtio-net
    /// header), re-posting its buffers.
    pub fn try_recv(&mut self) -> Result<Option<Vec<u8>>> {
        let Some(u) = self.q.rx.pop_used()? else {
            return Ok(None);
        };
        let mut slots = vec![u.token as usize];
        let len = (u.len as usize).min(self.q.rx.buf_size());
        if len < NET_HDR_LEN {
            return Err(Error::Protocol(format!("RX used length {len} < header")));
        }
        let hdr = VirtioNetHdr::from_bytes(&self.q.rx.read_buf(slots[0], 0, NET_HDR_LEN)?)?;
        let mut frame = self
            .q
            .rx
            .read_buf(slots[0], NET_HDR_LEN, len - NET_HDR_LEN)?;
        let mrg = self.features & (1 << VIRTIO_NET_F_MRG_RXBUF) != 0;
        if mrg && hdr.num_buffers > 1 {
            for _ in 1..hdr.num_buffers {
                let u = self.q.rx.pop_used()?.ok_or_else(|| {
                    Error::Protocol("num_buffers exceeds the used entries".into())
                })?;
                let l = (u.len as usize).min(self.q.rx.buf_size());
                frame.extend(self.q.rx.read_buf(u.token as usize, 0, l)?);
                slots.push(u.token as usize);
            }
        }
        for s in slots {
            self.post_rx(s)?;
        }
        if self.q.rx.publish()? {
            self.kick(RX)?;
        }
        Ok(Some(frame))
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
    /// 99th percentile latency in microseconds.
    pub p99_us: f64,
}

impl BenchResult {
    /// One-line JSON.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"packets\":{},\"bytes\":{},\"seconds\":{:.3},\"pps\":{:.1},\"gbps\":{:.4},\
             \"p50_us\":{:.2},\"p99_us\":{:.2}}}",
            self.packets, self.bytes, self.seconds, self.pps, self.gbps, self.p50_us, self.p99_us
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

/// Loops frames through the device for `opts.duration` with `opts.depth`
/// frames in flight. Frames carry a sequence number checked for order and
/// length (not the full checksum, to keep the driver out of the way).
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
    let mut frame = template.clone();
    let mut inflight: VecDeque<(u64, Instant)> = VecDeque::with_capacity(depth);
    let mut lat_ns: Vec<u64> = Vec::new();
    let (mut next_seq, mut packets, mut bytes) = (0u64, 0u64, 0u64);
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
        while sending && inflight.len() < depth {
            frame[18..26].copy_from_slice(&next_seq.to_be_bytes());
            if !drv.queue_tx(&frame)? {
                break;
            }
            inflight.push_back((next_seq, Instant::now()));
            next_seq += 1;
            queued = true;
        }
        if queued {
            drv.flush_tx()?;
        }
        let mut got_any = false;
        while let Some(f) = drv.try_recv()? {
            got_any = true;
            let (seq, t) = inflight
                .pop_front()
                .ok_or_else(|| Error::Protocol("received a frame that was not sent".into()))?;
            let got = u64::from_be_bytes(
                f.get(18..26)
                    .and_then(|s| s.try_into().ok())
                    .unwrap_or_default(),
            );
            if f.len() != template.len() || got != seq {
                return Err(Error::Protocol(format!(
                    "expected frame {seq} of {} bytes, received frame {got} of {} bytes",
                    template.len(),
                    f.len()
                )));
            }
            lat_ns.push(t.elapsed().as_nanos() as u64);
            packets += 1;
            bytes += f.len() as u64;
        }
        drv.reclaim_tx()?;
        if !got_any && !inflight.is_empty() && !drv.queue(RX).has_used()? {
            // Wait for the device: bounded, so a lost interrupt only slows us.
            let t0 = Instant::now();
            loop {
                if drv.q.rx.enable_interrupts()? {
                    break;
                }
                if wait_eventfd(&drv.calls[0], Duration::from_millis(20))? {
                    break;
                }
                if t0.elapsed() > drv.cfg.timeout {
                    return Err(drv.timeout("a looped-back frame"));
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
    lat_ns.sort_unstable();
    Ok(BenchResult {
        packets,
        bytes,
        seconds,
        pps: packets as f64 / seconds,
        gbps: bytes as f64 * 8.0 / seconds / 1e9,
        p50_us: percentile_us(&lat_ns, 0.50),
        p99_us: percentile_us(&lat_ns, 0.99),
    })
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
    fn percentiles() {
        let v: Vec<u64> = (1..=100).map(|x| x * 1000).collect();
        assert_eq!(percentile_us(&v, 0.5), 51.0);
        assert_eq!(percentile_us(&v, 0.99), 99.0);
        assert_eq!(percentile_us(&[], 0.5), 0.0);
    }

    #[test]
    fn wanted_features_include_the_mandatory_bits() {
        let f = wanted_features(&NetDriverConfig::default());
        assert_ne!(f & (1 << VIRTIO_F_VERSION_1), 0);
        assert_ne!(f & (1 << VIRTIO_F_ACCESS_PLATFORM), 0);
        assert_eq!(f & (1 << VIRTIO_RING_F_INDIRECT_DESC), 0);
    }
}
