// SPDX-License-Identifier: GPL-2.0 OR MIT
//! A bare virtio-net driver for the tests that the library's `NetDriver`
//! cannot express: TX buffers larger than 2 KiB (jumbo frames), RX buffers
//! smaller than a frame, and hostile rings written descriptor by
//! descriptor.

use std::time::{Duration, Instant};

use vhost_mdev::driver::{negotiate, wait_eventfd};
use vhost_mdev::net::{NetConfig, VirtioNetHdr, NET_CONFIG_LEN, NET_HDR_LEN};
use vhost_mdev::uapi::*;
use vhost_mdev::virtq::{Seg, Virtq, VirtqConfig};
use vhost_mdev::{DmaMapper, MdevDevice, VhostBackend};
use vmm_sys_util::eventfd::EventFd;

use crate::check;
use crate::util::*;

/// Queue indexes of the sample.
pub const RXQ: u16 = 0;
/// TX queue.
pub const TXQ: u16 = 1;

/// Options of [`RawNet::start`].
#[derive(Debug, Clone, Copy)]
pub struct RawOpts {
    /// Queue size of both queues.
    pub size: u16,
    /// Bytes of each RX buffer (one descriptor each).
    pub rx_buf: usize,
    /// Bytes of each TX buffer (header + frame).
    pub tx_buf: usize,
    /// Negotiate VIRTIO_NET_F_MRG_RXBUF.
    pub mrg: bool,
    /// Negotiate VIRTIO_RING_F_INDIRECT_DESC.
    pub indirect: bool,
    /// IOVA of the RX queue memory (TX follows after a 1 MiB hole).
    pub iova: u64,
    /// Post every RX buffer at start.
    pub post_rx: bool,
    /// Send the memory table of both queues before DRIVER_OK (as the
    /// library's drivers do); without it the start sends none.
    pub mem_table: bool,
    /// Feature bits not to ask for (of those asked by default: a device
    /// that does not offer one, as QEMU's virtio-net-pci without
    /// `host_mtu` does not offer MTU).
    pub drop_features: u64,
}

impl Default for RawOpts {
    fn default() -> Self {
        RawOpts {
            size: 64,
            rx_buf: 2048,
            tx_buf: 2048,
            mrg: false,
            indirect: false,
            iova: 0x2000_0000,
            post_rx: true,
            mem_table: false,
            drop_features: 0,
        }
    }
}

/// A started device with RX (queue 0) and TX (queue 1) under full control.
pub struct RawNet<'a> {
    /// The device.
    pub dev: &'a MdevDevice,
    /// RX queue.
    pub rx: Virtq,
    /// TX queue.
    pub tx: Virtq,
    /// Negotiated features.
    pub features: u64,
    /// Config space read after FEATURES_OK.
    pub config: NetConfig,
    /// Call eventfds of RX and TX.
    pub calls: [EventFd; 2],
    /// The config eventfd (attached at start).
    pub cfg_irq: EventFd,
    tx_free: Vec<usize>,
    mapped: Vec<(u64, u64)>,
}

impl<'a> RawNet<'a> {
    /// Resets the device and brings it up (DRIVER_OK) with `o`.
    pub fn start(dev: &'a MdevDevice, o: RawOpts) -> Result<Self, String> {
        dev.set_status(0).ctx("reset")?;
        let mut want = (1u64 << VIRTIO_F_VERSION_1)
            | (1 << VIRTIO_F_ACCESS_PLATFORM)
            | (1 << VIRTIO_NET_F_MAC)
            | (1 << VIRTIO_NET_F_MTU)
            | (1 << VIRTIO_NET_F_STATUS);
        if o.mrg {
            want |= 1 << VIRTIO_NET_F_MRG_RXBUF;
        }
        if o.indirect {
            want |= 1 << VIRTIO_RING_F_INDIRECT_DESC;
        }
        want &= !o.drop_features;
        let features = negotiate(dev, want).ctx("negotiate")?;
        check!(
            features == want,
            "negotiated {features:#x}, wanted {want:#x}"
        );
        let config = NetConfig::parse(&dev.get_config(0, NET_CONFIG_LEN as u32).ctx("GET_CONFIG")?)
            .ctx("config")?;
        let vq = |buf: usize| VirtqConfig {
            size: o.size,
            buffers: usize::from(o.size),
            buf_size: buf,
            max_indirect: if o.indirect { 4 } else { 0 },
            event_idx: false,
        };
        let rx = Virtq::new(vq(o.rx_buf), o.iova).ctx("RX queue")?;
        let tx_iova = o.iova + rx.memory().len() as u64 + 0x10_0000;
        let tx = Virtq::new(vq(o.tx_buf), tx_iova).ctx("TX queue")?;
        let mut net = RawNet {
            dev,
            rx,
            tx,
            features,
            config,
            calls: [eventfd()?, eventfd()?],
            cfg_irq: eventfd()?,
            tx_free: (0..usize::from(o.size)).rev().collect(),
            mapped: Vec::new(),
        };
        for q in [&net.rx, &net.tx] {
            // SAFETY: unmapped in Drop before the memory is freed (leaked if
            // that fails); accessed only through DmaMemory's accessors.
            unsafe { q.memory().map(dev, q.iova()) }.ctx("map queue memory")?;
            net.mapped.push((q.iova(), q.memory().len() as u64));
        }
        if o.mem_table {
            let table = [
                net.rx.memory().region(net.rx.iova()),
                net.tx.memory().region(net.tx.iova()),
            ];
            dev.set_mem_table(&table).ctx("SET_MEM_TABLE")?;
        }
        for (i, q) in [(RXQ, &net.rx), (TXQ, &net.tx)] {
            let i = u32::from(i);
            dev.set_vring_num(i, u32::from(q.size()))
                .ctx("SET_VRING_NUM")?;
            dev.set_vring_addr(&q.vring_addr(i)).ctx("SET_VRING_ADDR")?;
            dev.set_vring_hva(&q.vring_hva(i)).ctx("SET_VRING_HVA")?;
            dev.set_vring_base(i, 0).ctx("SET_VRING_BASE")?;
            dev.set_vring_call(i, Some(&net.calls[i as usize]))
                .ctx("vq eventfd")?;
            dev.set_vring_enable(i, true).ctx("SET_VRING_ENABLE")?;
        }
        dev.set_config_call(Some(&net.cfg_irq))
            .ctx("config eventfd")?;
        dev.set_status(
            VIRTIO_CONFIG_S_ACKNOWLEDGE
                | VIRTIO_CONFIG_S_DRIVER
                | VIRTIO_CONFIG_S_FEATURES_OK
                | VIRTIO_CONFIG_S_DRIVER_OK,
        )
        .ctx("DRIVER_OK")?;
        if o.post_rx {
            for slot in 0..net.rx.num_bufs() {
                net.post_rx(slot)?;
            }
            net.rx.publish().ctx("publish RX")?;
            dev.notify(RXQ).ctx("kick RX")?;
        }
        Ok(net)
    }

    /// Adds RX buffer `slot` as one writable descriptor (not published).
    pub fn post_rx(&mut self, slot: usize) -> Result<(), String> {
        let seg = Seg {
            addr: self.rx.buf_iova(slot).ctx("RX slot")?,
            len: self.rx.buf_size() as u32,
            write: true,
        };
        self.rx.add(&[seg], slot as u64).ctx("post RX")?;
        Ok(())
    }

    /// Queues `frame` (with a zero header) on TX, publishes and kicks.
    pub fn send(&mut self, frame: &[u8]) -> Result<(), String> {
        self.queue_tx(frame)?;
        self.tx.publish().ctx("TX publish")?;
        self.dev.notify(TXQ).ctx("kick TX")?;
        Ok(())
    }

    /// Adds `frame` (with a zero header) to TX without publishing it.
    pub fn queue_tx(&mut self, frame: &[u8]) -> Result<(), String> {
        self.reclaim_tx()?;
        let slot = self.tx_free.pop().ok_or("TX full")?;
        let hdr = VirtioNetHdr::default().to_bytes();
        self.tx.write_buf(slot, 0, &hdr).ctx("TX header")?;
        self.tx
            .write_buf(slot, NET_HDR_LEN, frame)
            .ctx("TX frame")?;
        let seg = Seg {
            addr: self.tx.buf_iova(slot).ctx("TX slot")?,
            len: (NET_HDR_LEN + frame.len()) as u32,
            write: false,
        };
        self.tx.add(&[seg], slot as u64).ctx("TX add")?;
        Ok(())
    }

    /// Queues one readable descriptor of `len` bytes starting at a TX
    /// buffer (whatever its size), publishes and kicks: for chains the
    /// device must drop as malformed.
    pub fn send_seg(&mut self, len: u32) -> Result<(), String> {
        self.reclaim_tx()?;
        let slot = self.tx_free.pop().ok_or("TX full")?;
        let seg = Seg {
            addr: self.tx.buf_iova(slot).ctx("TX slot")?,
            len,
            write: false,
        };
        self.tx.add(&[seg], slot as u64).ctx("TX add")?;
        self.tx.publish().ctx("TX publish")?;
        self.dev.notify(TXQ).ctx("kick TX")?;
        Ok(())
    }

    /// Returns completed TX buffers to the free list; returns how many.
    pub fn reclaim_tx(&mut self) -> Result<usize, String> {
        let mut n = 0;
        while let Some(u) = self.tx.pop_used().ctx("TX used")? {
            self.tx_free.push(u.token as usize);
            n += 1;
        }
        Ok(n)
    }

    /// TX buffers handed to the device and not yet returned.
    pub fn tx_in_flight(&self) -> usize {
        usize::from(self.tx.size()) - self.tx_free.len()
    }

    /// Waits until the device has returned every TX buffer sent so far.
    ///
    /// Counts what is still out, not what comes back during the wait: a
    /// `send` reclaims buffers too, so a count of returns since some point
    /// would miss those it took.
    pub fn wait_tx_done(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            self.reclaim_tx()?;
            let n = self.tx_in_flight();
            if n == 0 {
                return Ok(());
            }
            check!(
                Instant::now() < deadline,
                "TX: {n} buffers not returned within {timeout:?} (status {:?})",
                self.dev.get_status()
            );
            wait_eventfd(&self.calls[1], Duration::from_millis(20)).ctx("poll")?;
        }
    }

    /// Takes one received frame (following `num_buffers` with MRG_RXBUF),
    /// re-posts its buffers, and returns the header's `num_buffers` and
    /// the frame without the header.
    pub fn try_recv(&mut self) -> Result<Option<(u16, Vec<u8>)>, String> {
        let Some(u) = self.rx.pop_used().ctx("RX used")? else {
            return Ok(None);
        };
        let mut slots = vec![u.token as usize];
        let len = u.len as usize;
        check!(
            (NET_HDR_LEN..=self.rx.buf_size()).contains(&len),
            "RX used length {len} (buffer {})",
            self.rx.buf_size()
        );
        let hdr = VirtioNetHdr::from_bytes(
            &self
                .rx
                .read_buf(slots[0], 0, NET_HDR_LEN)
                .ctx("RX header")?,
        )
        .ctx("RX header")?;
        let mut frame = self
            .rx
            .read_buf(slots[0], NET_HDR_LEN, len - NET_HDR_LEN)
            .ctx("RX data")?;
        let mrg = self.features & (1 << VIRTIO_NET_F_MRG_RXBUF) != 0;
        let nbufs = if mrg { hdr.num_buffers } else { 1 };
        check!(!mrg || nbufs >= 1, "num_buffers 0 with MRG_RXBUF");
        for _ in 1..nbufs {
            let u = self
                .rx
                .pop_used()
                .ctx("RX used")?
                .ok_or("num_buffers exceeds the used entries")?;
            let l = u.len as usize;
            check!(l <= self.rx.buf_size(), "RX used length {l}");
            frame.extend(self.rx.read_buf(u.token as usize, 0, l).ctx("RX data")?);
            slots.push(u.token as usize);
        }
        for s in slots {
            self.post_rx(s)?;
        }
        self.rx.publish().ctx("RX publish")?;
        self.dev.notify(RXQ).ctx("kick RX")?;
        Ok(Some((nbufs, frame)))
    }

    /// Waits up to `timeout` for one received frame.
    pub fn recv(&mut self, timeout: Duration) -> Result<(u16, Vec<u8>), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(f) = self.try_recv()? {
                return Ok(f);
            }
            check!(
                Instant::now() < deadline,
                "no frame received within {timeout:?} (status {:?})",
                self.dev.get_status()
            );
            wait_eventfd(&self.calls[0], Duration::from_millis(20)).ctx("poll")?;
        }
    }

    /// Writes descriptor `i` of queue `q` directly.
    pub fn write_desc(
        &self,
        q: u16,
        i: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) -> Result<(), String> {
        let vq = if q == RXQ { &self.rx } else { &self.tx };
        let off = vq.layout().desc_entry(i);
        let m = vq.memory();
        m.store(off, addr.to_le()).ctx("desc")?;
        m.store(off + 8, len.to_le()).ctx("desc")?;
        m.store(off + 12, flags.to_le()).ctx("desc")?;
        m.store(off + 14, next.to_le()).ctx("desc")?;
        Ok(())
    }

    /// Writes available-ring entry `slot` and then `avail.idx` of queue
    /// `q` directly (bypassing the queue's own bookkeeping).
    pub fn write_avail(&self, q: u16, slot: u16, head: u16, idx: u16) -> Result<(), String> {
        let vq = if q == RXQ { &self.rx } else { &self.tx };
        let l = vq.layout();
        let m = vq.memory();
        m.store(l.avail_entry(slot % l.size), head.to_le())
            .ctx("avail entry")?;
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        m.store(l.avail_idx(), idx.to_le()).ctx("avail idx")?;
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

/// Polls the status of `dev` until DEVICE_NEEDS_RESET is set; returns it.
pub fn wait_needs_reset(dev: &MdevDevice, timeout: Duration) -> Result<u8, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let s = dev.get_status().ctx("GET_STATUS")?;
        if s & VIRTIO_CONFIG_S_NEEDS_RESET != 0 {
            return Ok(s);
        }
        check!(
            Instant::now() < deadline,
            "DEVICE_NEEDS_RESET not set within {timeout:?} (status {s:#x})"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Drop for RawNet<'_> {
    fn drop(&mut self) {
        let _ = self.dev.set_status(0);
        let _ = self.dev.detach_all_irqs();
        let mut ok = true;
        for (iova, len) in &self.mapped {
            ok &= self.dev.unmap_dma(*iova, *len).is_ok();
        }
        if !ok {
            // The device may still reach this memory: never give it back.
            let rx = std::mem::replace(&mut self.rx, Virtq::new(tiny(), 0).expect("tiny queue"));
            let tx = std::mem::replace(&mut self.tx, Virtq::new(tiny(), 0).expect("tiny queue"));
            std::mem::forget(rx);
            std::mem::forget(tx);
        }
    }
}

fn tiny() -> VirtqConfig {
    VirtqConfig {
        size: 1,
        buffers: 0,
        buf_size: 64,
        max_indirect: 0,
        event_idx: false,
    }
}
