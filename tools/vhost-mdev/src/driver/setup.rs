// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Bring-up: feature negotiation, queue setup, accessors and teardown.

use std::mem::ManuallyDrop;

use vmm_sys_util::eventfd::EventFd;

use crate::backend::VhostBackend;
use crate::error::{Error, Result};
use crate::net::{Mac, NetConfig, NET_CONFIG_LEN};
use crate::uapi::*;
use crate::virtq::{Virtq, VirtqConfig};

use super::{eventfd, slot_sizes, KickMode, NetDriver, NetDriverConfig, Queues, RX, TX};

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
