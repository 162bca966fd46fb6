// SPDX-License-Identifier: GPL-2.0 OR MIT
//! One driver-side virtqueue of either ring type: the split ring of
//! [`crate::virtq`] or the packed ring of [`crate::packed`], chosen by
//! `VIRTIO_F_RING_PACKED` at feature negotiation. [`Queue`] forwards the
//! calls both have in common, so the net driver is written once.

use crate::error::Result;
use crate::mem::DmaMemory;
use crate::packed::{PackedVirtq, PACKED_BASE_INIT};
use crate::uapi::VhostVringAddr;
use crate::virtq::{Seg, Used, Virtq, VirtqConfig};

/// A split or packed virtqueue.
#[derive(Debug)]
pub enum Queue {
    /// A split ring.
    Split(Virtq),
    /// A packed ring.
    Packed(PackedVirtq),
}

macro_rules! both {
    ($self:expr, $q:ident => $e:expr) => {
        match $self {
            Queue::Split($q) => $e,
            Queue::Packed($q) => $e,
        }
    };
}

impl Queue {
    /// A queue of the given type; see [`Virtq::new`].
    pub fn new(cfg: VirtqConfig, iova: u64, packed: bool) -> Result<Self> {
        Ok(if packed {
            Queue::Packed(PackedVirtq::new(cfg, iova)?)
        } else {
            Queue::Split(Virtq::new(cfg, iova)?)
        })
    }
    /// Whether this is a packed ring.
    #[inline]
    pub fn is_packed(&self) -> bool {
        matches!(self, Queue::Packed(_))
    }
    /// The split ring, if it is one.
    pub fn as_split(&self) -> Option<&Virtq> {
        match self {
            Queue::Split(q) => Some(q),
            Queue::Packed(_) => None,
        }
    }
    /// The packed ring, if it is one.
    pub fn as_packed(&self) -> Option<&PackedVirtq> {
        match self {
            Queue::Packed(q) => Some(q),
            Queue::Split(_) => None,
        }
    }
    /// The vring base a device starts a fresh queue of this type from
    /// (`VHOST_SET_VRING_BASE`): 0 for split, [`PACKED_BASE_INIT`] for
    /// packed.
    pub fn initial_base(&self) -> u32 {
        if self.is_packed() {
            PACKED_BASE_INIT
        } else {
            0
        }
    }
    /// The queue memory.
    #[inline]
    pub fn memory(&self) -> &DmaMemory {
        both!(self, q => q.memory())
    }
    /// The IOVA the memory is meant to be mapped at.
    #[inline]
    pub fn iova(&self) -> u64 {
        both!(self, q => q.iova())
    }
    /// Queue size.
    #[inline]
    pub fn size(&self) -> u16 {
        both!(self, q => q.size())
    }
    /// Free descriptors (ring slots).
    #[inline]
    pub fn num_free(&self) -> usize {
        both!(self, q => q.num_free())
    }
    /// Chains added and not yet returned by the device.
    #[inline]
    pub fn in_flight(&self) -> usize {
        both!(self, q => q.in_flight())
    }
    /// The `vhost_vring_addr` of this queue as queue `index`.
    pub fn vring_addr(&self, index: u32) -> VhostVringAddr {
        both!(self, q => q.vring_addr(index))
    }
    /// The same at this process's addresses.
    pub fn vring_hva(&self, index: u32) -> VhostVringAddr {
        both!(self, q => q.vring_hva(index))
    }
    /// Number of data buffers.
    #[inline]
    pub fn num_bufs(&self) -> usize {
        both!(self, q => q.num_bufs())
    }
    /// Size of each data buffer.
    #[inline]
    pub fn buf_size(&self) -> usize {
        both!(self, q => q.buf_size())
    }
    /// IOVA of data buffer `slot`.
    #[inline]
    pub fn buf_iova(&self, slot: usize) -> Result<u64> {
        both!(self, q => q.buf_iova(slot))
    }
    /// Copies `data` into buffer `slot` at `off`.
    #[inline]
    pub fn write_buf(&self, slot: usize, off: usize, data: &[u8]) -> Result<()> {
        both!(self, q => q.write_buf(slot, off, data))
    }
    /// Copies `len` bytes of buffer `slot` at `off`.
    #[inline]
    pub fn read_buf(&self, slot: usize, off: usize, len: usize) -> Result<Vec<u8>> {
        both!(self, q => q.read_buf(slot, off, len))
    }
    /// Copies `out.len()` bytes of buffer `slot` at `off` into `out`.
    #[inline]
    pub fn read_buf_into(&self, slot: usize, off: usize, out: &mut [u8]) -> Result<()> {
        both!(self, q => q.read_buf_into(slot, off, out))
    }
    /// Adds a chain of direct descriptors; see [`Virtq::add`].
    #[inline]
    pub fn add(&mut self, segs: &[Seg], token: u64) -> Result<u16> {
        both!(self, q => q.add(segs, token))
    }
    /// Adds a chain through an indirect table.
    #[inline]
    pub fn add_indirect(&mut self, segs: &[Seg], token: u64) -> Result<u16> {
        both!(self, q => q.add_indirect(segs, token))
    }
    /// Makes added chains visible; returns whether to kick.
    #[inline]
    pub fn publish(&mut self) -> Result<bool> {
        both!(self, q => q.publish())
    }
    /// Whether used chains wait to be popped.
    #[inline]
    pub fn has_used(&self) -> Result<bool> {
        both!(self, q => q.has_used())
    }
    /// Takes the next used chain.
    #[inline]
    pub fn pop_used(&mut self) -> Result<Option<Used>> {
        both!(self, q => q.pop_used())
    }
    /// Whether used-buffer notifications are asked for.
    #[inline]
    pub fn interrupts_enabled(&self) -> bool {
        both!(self, q => q.interrupts_enabled())
    }
    /// Asks for interrupts; returns whether used chains are pending.
    #[inline]
    pub fn enable_interrupts(&mut self) -> Result<bool> {
        both!(self, q => q.enable_interrupts())
    }
    /// Asks the device not to interrupt.
    #[inline]
    pub fn disable_interrupts(&mut self) -> Result<()> {
        both!(self, q => q.disable_interrupts())
    }
}
