// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Bring-up: feature negotiation, queue setup, accessors and teardown.

use std::mem::ManuallyDrop;

use vmm_sys_util::eventfd::EventFd;

use crate::backend::VhostBackend;
use crate::error::{Error, Result};
use crate::net::{Mac, NetConfig, NET_CONFIG_LEN};
use crate::queue::Queue;
use crate::uapi::*;
use crate::virtq::VirtqConfig;

use super::{eventfd, slot_sizes, KickMode, NetDriver, NetDriverConfig, Pair, RX, TX};

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
    if cfg.packed {
        f |= 1 << VIRTIO_F_RING_PACKED;
    }
    if cfg.pairs > 1 {
        f |= 1 << VIRTIO_NET_F_MQ;
    }
    f
}

/// Runs the status/feature handshake up to FEATURES_OK and returns the
/// negotiated features.
pub fn negotiate<B: VhostBackend + ?Sized>(backend: &B, wanted: u64) -> Result<u64> {
    negotiate_required(backend, wanted, 0)
}

/// [`negotiate`], failing before FEATURES_OK unless the device offers
/// every bit of `required` (which are negotiated with `wanted`).
pub fn negotiate_required<B: VhostBackend + ?Sized>(
    backend: &B,
    wanted: u64,
    required: u64,
) -> Result<u64> {
    let s = VIRTIO_CONFIG_S_ACKNOWLEDGE;
    backend.set_status(s)?;
    let s = s | VIRTIO_CONFIG_S_DRIVER;
    backend.set_status(s)?;
    let offered = backend.get_features()?;
    let missing = required & !offered;
    if missing != 0 {
        let names: Vec<String> = feature_names(missing)
            .iter()
            .map(|n| format!("VIRTIO_{n}"))
            .collect();
        return Err(Error::InvalidArgument(format!(
            "{} does not offer {} (offered {offered:#x})",
            backend.describe(),
            names.join(", ")
        )));
    }
    let features = offered & (wanted | required);
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
    /// Resets the device, negotiates features, sets up `cfg.pairs` queue
    /// pairs (split or packed rings, `cfg.packed`) and sets DRIVER_OK, with
    /// every RX queue filled.
    ///
    /// Errors before anything is set up when the device does not offer
    /// what `cfg` asks for: `VIRTIO_F_RING_PACKED` for packed rings;
    /// `VIRTIO_NET_F_MQ` and `2 * pairs` queues for more than one pair.
    pub fn start(backend: B, cfg: NetDriverConfig) -> Result<Self> {
        if cfg.pairs == 0 {
            return Err(Error::InvalidArgument("0 queue pairs".into()));
        }
        backend.reset()?;
        backend.set_owner()?;
        let mut required = 0u64;
        if cfg.packed {
            required |= 1 << VIRTIO_F_RING_PACKED;
        }
        if cfg.pairs > 1 {
            let vqs = backend.get_vqs_count()?;
            if u32::from(cfg.pairs) * 2 > vqs {
                return Err(Error::InvalidArgument(format!(
                    "{} queue pairs asked for: {} has {vqs} queues, at most {} pairs",
                    cfg.pairs,
                    backend.describe(),
                    vqs / 2
                )));
            }
            required |= 1 << VIRTIO_NET_F_MQ;
        }
        let features = negotiate_required(&backend, wanted_features(&cfg), required)?;
        let config_len = backend.get_config_size()?.min(NET_CONFIG_LEN as u32);
        let config = NetConfig::parse(&backend.get_config(0, config_len)?)?;
        if cfg.pairs > 1 && config.max_virtqueue_pairs < cfg.pairs {
            return Err(Error::InvalidArgument(format!(
                "{} queue pairs asked for: {} has max_virtqueue_pairs {}",
                cfg.pairs,
                backend.describe(),
                config.max_virtqueue_pairs
            )));
        }
        let max = backend.get_vring_num()?;
        let want = cfg.queue_size.min(max).max(1);
        // Largest power of two not above `want`.
        let size = 1u16 << (15 - want.leading_zeros().min(15));
        let event_idx = features & (1 << VIRTIO_RING_F_EVENT_IDX) != 0;
        let indirect = features & (1 << VIRTIO_RING_F_INDIRECT_DESC) != 0;
        let mrg_rxbuf = features & (1 << VIRTIO_NET_F_MRG_RXBUF) != 0;
        let packed = features & (1 << VIRTIO_F_RING_PACKED) != 0;
        let (tx_buf, rx_buf) = slot_sizes(cfg.max_frame, mrg_rxbuf);
        let vqc = VirtqConfig {
            size,
            buffers: usize::from(size),
            buf_size: rx_buf,
            max_indirect: if indirect { 2 } else { 0 },
            event_idx,
        };
        let mut pairs = Vec::with_capacity(usize::from(cfg.pairs));
        let mut iova = cfg.iova_base;
        for _ in 0..cfg.pairs {
            let rx = Queue::new(vqc, iova, packed)?;
            iova += rx.memory().len() as u64 + 0x10_0000;
            let tx = Queue::new(
                VirtqConfig {
                    buf_size: tx_buf,
                    ..vqc
                },
                iova,
                packed,
            )?;
            iova += tx.memory().len() as u64 + 0x10_0000;
            pairs.push(Pair {
                rx,
                tx,
                calls: [eventfd()?, eventfd()?],
                kicks: [None, None],
                tx_free: (0..usize::from(size)).rev().collect(),
                tx_has_template: vec![false; usize::from(size)],
            });
        }
        let mut kick = cfg.kick;
        if !backend.supports_notify() {
            kick = KickMode::EventFd;
        }
        let mut drv = NetDriver {
            backend,
            pairs: ManuallyDrop::new(pairs),
            cur: 0,
            mapped: Vec::new(),
            features,
            config,
            tx_template: Vec::new(),
            rx_slots: Vec::with_capacity(usize::from(size)),
            indirect,
            mrg_rxbuf,
            cfg: NetDriverConfig { kick, ..cfg },
        };
        drv.setup()?;
        Ok(drv)
    }

    fn setup(&mut self) -> Result<()> {
        for p in self.pairs.iter() {
            for q in [&p.rx, &p.tx] {
                // SAFETY: the memory is unmapped in Drop before it is freed
                // (or leaked if unmapping fails), and it is only accessed
                // through DmaMemory's copy/volatile/atomic accessors.
                unsafe { q.memory().map(&self.backend, q.iova())? };
                self.mapped.push((q.iova(), q.memory().len() as u64));
            }
        }
        // The table of those mappings: a parent that makes guest memory
        // resident itself needs it.
        let table: Vec<MemRegion> = self
            .pairs
            .iter()
            .flat_map(|p| [&p.rx, &p.tx])
            .map(|q| q.memory().region(q.iova()))
            .collect();
        super::send_mem_table(&self.backend, &table)?;
        for pi in 0..self.pairs.len() {
            for j in [RX, TX] {
                let index = 2 * pi as u16 + j;
                let i = u32::from(index);
                let p = &mut self.pairs[pi];
                let q = if j == RX { &p.rx } else { &p.tx };
                self.backend.set_vring_num(i, u32::from(q.size()))?;
                self.backend.set_vring_addr(&q.vring_addr(i))?;
                self.backend.set_vring_hva(&q.vring_hva(i))?;
                self.backend.set_vring_base(i, q.initial_base())?;
                self.backend
                    .set_vring_call(i, Some(&p.calls[usize::from(j)]))?;
                if self.cfg.kick == KickMode::EventFd {
                    let k = eventfd()?;
                    self.backend.set_vring_kick(i, Some(&k))?;
                    p.kicks[usize::from(j)] = Some(k);
                }
                self.backend.set_vring_enable(i, true)?;
            }
        }
        self.backend.set_status(
            VIRTIO_CONFIG_S_ACKNOWLEDGE
                | VIRTIO_CONFIG_S_DRIVER
                | VIRTIO_CONFIG_S_FEATURES_OK
                | VIRTIO_CONFIG_S_DRIVER_OK,
        )?;
        for pi in 0..self.pairs.len() {
            self.cur = pi;
            for slot in 0..self.pairs[pi].rx.num_bufs() {
                self.post_rx(slot)?;
            }
            if self.pairs[pi].rx.publish()? {
                self.kick(self.vq(RX))?;
            }
        }
        self.cur = 0;
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
        self.pairs[self.cur].rx.size()
    }
    /// Whether the queues are packed rings.
    pub fn packed(&self) -> bool {
        self.features & (1 << VIRTIO_F_RING_PACKED) != 0
    }
    /// Number of queue pairs driven.
    pub fn num_pairs(&self) -> usize {
        self.pairs.len()
    }
    /// The pair the frame calls work on.
    pub fn current_pair(&self) -> usize {
        self.cur
    }
    /// Makes pair `pair` the one the frame calls ([`NetDriver::send`],
    /// [`NetDriver::recv`], [`NetDriver::queue_tx_template`], ...) work on.
    pub fn select_pair(&mut self, pair: usize) -> Result<()> {
        if pair >= self.pairs.len() {
            return Err(Error::InvalidArgument(format!(
                "queue pair {pair} of {}",
                self.pairs.len()
            )));
        }
        self.cur = pair;
        Ok(())
    }
    /// The device queue index of queue `j` ([`RX`] or [`TX`]) of the
    /// current pair.
    pub fn vq(&self, j: u16) -> u16 {
        2 * self.cur as u16 + (j & 1)
    }
    /// The RX and TX call eventfds of the current pair.
    pub fn call_fds(&self) -> &[EventFd; 2] {
        &self.pairs[self.cur].calls
    }
    /// Device queue `index` (`2i` = RX, `2i + 1` = TX of pair `i`).
    ///
    /// # Panics
    ///
    /// If the driver has no such queue.
    pub fn queue(&self, index: u16) -> &Queue {
        let p = &self.pairs[usize::from(index / 2)];
        if index & 1 == RX {
            &p.rx
        } else {
            &p.tx
        }
    }

    /// Kicks device queue `index` by the configured path.
    pub fn kick(&self, index: u16) -> Result<()> {
        let p = self.pairs.get(usize::from(index / 2)).ok_or_else(|| {
            Error::InvalidArgument(format!("kick of queue {index}: no such queue"))
        })?;
        match &p.kicks[usize::from(index & 1)] {
            Some(k) => k.write(1).map_err(|e| Error::io("kick eventfd write", &e)),
            None => self.backend.notify(index),
        }
    }
}

impl<B: VhostBackend> NetDriver<B> {
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
        for (pi, p) in self.pairs.iter().enumerate() {
            for j in [RX, TX] {
                let i = 2 * pi as u32 + u32::from(j);
                let _ = self.backend.set_vring_call(i, None);
                if p.kicks[usize::from(j)].is_some() {
                    let _ = self.backend.set_vring_kick(i, None);
                }
            }
        }
        let mut unmapped = true;
        for (iova, len) in &self.mapped {
            unmapped &= self.backend.unmap_dma(*iova, *len).is_ok();
        }
        // SAFETY: self.q is taken exactly once, here, and never used again.
        let q = unsafe { ManuallyDrop::take(&mut self.pairs) };
        if !unmapped {
            // The device may still reach this memory: never give it back.
            std::mem::forget(q);
        }
    }
}
