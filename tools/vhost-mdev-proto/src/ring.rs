// SPDX-License-Identifier: GPL-2.0 OR MIT

//! One device-side interface over split ([`super::vring`]) and packed
//! ([`super::packed`]) virtqueues, so that a device serves either ring
//! type with the same code.
//!
//! - [`Ring`] (with [`ChainWalker`]) is what a device's data path calls:
//!   count what is pending, take a chain, walk its segments, consume it,
//!   mark it used (in any order), publish, ask for kicks, decide on
//!   interrupts, and the vring base in vhost's encoding. Both queue types
//!   implement it; a device writes its work once, generic over `R: Ring`,
//!   and picks the type once per run (one `match`, no cost per
//!   descriptor: each instance is compiled for its ring type).
//! - [`Queue`] holds one queue of either type as the driver configured it
//!   (size, addresses, enable, negotiated ring features, vring base) and
//!   implements [`QueueConfig`], the configuration interface a parent's
//!   queue ops use, which [`SplitQueue`] implements too (for devices that
//!   offer split rings only).
//!
//! A packed queue needs an id table ([`IdTable`]: one `u16` per ring
//! entry, at least as many as the largest ring the device accepts): the
//! caller provides its storage (the kernel: a vector on the heap).

use super::packed::{PackedQueue, PackedWalker, PACKED_BASE_INIT};
use super::vring::{GuestMemory, RingError, Segment, SplitQueue, Walker};

/// The device side of a virtqueue of either type.
pub trait Ring {
    /// Walks one chain ([`Ring::chain`]).
    type Walker: ChainWalker<Self>;
    /// [`Ring::pending`] counts at most a window of chains (packed rings):
    /// a device that consumed all it counted asks again before it stops.
    const BOUNDED_PENDING: bool;

    /// Enabled, with a ring of at least one entry.
    fn usable(&self) -> bool;
    /// Ring size.
    fn num(&self) -> u16;
    /// `VIRTIO_RING_F_EVENT_IDX` negotiated.
    fn event_idx(&self) -> bool;
    /// Chains the driver made available and the device did not consume
    /// (packed rings: up to a window of them).
    fn pending<M: GuestMemory>(&mut self, mem: &mut M) -> Result<u16, RingError>;
    /// Starts walking the chain `ahead` chains after the next one to
    /// consume (which [`Ring::pending`] counted). Returns its id (split:
    /// the head index; packed: the buffer id), for [`Ring::put_used`].
    /// Consumes nothing.
    fn chain<M: GuestMemory>(
        &mut self,
        mem: &mut M,
        ahead: u16,
    ) -> Result<(u16, Self::Walker), RingError>;
    /// Consumes the next available chain: it is in flight until marked
    /// used.
    fn consume<M: GuestMemory>(&mut self, mem: &mut M) -> Result<(), RingError>;
    /// Marks the chain `id` (consumed) used, with `len` bytes written.
    fn put_used<M: GuestMemory>(&mut self, mem: &mut M, id: u16, len: u32)
        -> Result<(), RingError>;
    /// Writes what was marked used, and with EVENT_IDX where the driver
    /// should kick next.
    fn publish<M: GuestMemory>(&mut self, mem: &mut M) -> Result<(), RingError>;
    /// With EVENT_IDX, asks for a kick as soon as the driver makes any
    /// chain available beyond those [`Ring::pending`] last counted.
    fn arm_kick<M: GuestMemory>(&mut self, mem: &mut M) -> Result<(), RingError>;
    /// Whether the driver wants an interrupt for what was published since
    /// the last one.
    fn needs_interrupt<M: GuestMemory>(&mut self, mem: &mut M) -> Result<bool, RingError>;
    /// Whether the driver cannot make more chains available before the
    /// device marks some used, `pending` being what [`Ring::pending`]
    /// returned last.
    fn is_full(&self, pending: u16) -> bool;
}

/// Walks the segments of one chain of a [`Ring`] `R`.
pub trait ChainWalker<R: ?Sized> {
    /// Next buffer of the chain, or `None` at its end.
    fn next<M: GuestMemory>(
        &mut self,
        q: &mut R,
        mem: &mut M,
    ) -> Result<Option<Segment>, RingError>;
    /// Descriptors read so far (the work the chain cost).
    fn descs(&self) -> u32;
}

impl Ring for SplitQueue {
    type Walker = Walker;
    const BOUNDED_PENDING: bool = false;

    #[inline]
    fn usable(&self) -> bool {
        self.ready && self.num != 0
    }
    #[inline]
    fn num(&self) -> u16 {
        self.num
    }
    #[inline]
    fn event_idx(&self) -> bool {
        self.event_idx
    }
    #[inline]
    fn pending<M: GuestMemory>(&mut self, mem: &mut M) -> Result<u16, RingError> {
        SplitQueue::pending(self, mem)
    }
    #[inline]
    fn chain<M: GuestMemory>(
        &mut self,
        mem: &mut M,
        ahead: u16,
    ) -> Result<(u16, Walker), RingError> {
        SplitQueue::chain(self, mem, ahead)
    }
    #[inline]
    fn consume<M: GuestMemory>(&mut self, _mem: &mut M) -> Result<(), RingError> {
        self.last_avail = self.last_avail.wrapping_add(1);
        Ok(())
    }
    #[inline]
    fn put_used<M: GuestMemory>(
        &mut self,
        mem: &mut M,
        id: u16,
        len: u32,
    ) -> Result<(), RingError> {
        SplitQueue::put_used(self, mem, id, len)
    }
    #[inline]
    fn publish<M: GuestMemory>(&mut self, mem: &mut M) -> Result<(), RingError> {
        SplitQueue::publish(self, mem)
    }
    #[inline]
    fn arm_kick<M: GuestMemory>(&mut self, mem: &mut M) -> Result<(), RingError> {
        SplitQueue::arm_kick(self, mem)
    }
    #[inline]
    fn needs_interrupt<M: GuestMemory>(&mut self, mem: &mut M) -> Result<bool, RingError> {
        SplitQueue::needs_interrupt(self, mem)
    }
    #[inline]
    fn is_full(&self, pending: u16) -> bool {
        pending >= self.num
    }
}

impl ChainWalker<SplitQueue> for Walker {
    #[inline]
    fn next<M: GuestMemory>(
        &mut self,
        q: &mut SplitQueue,
        mem: &mut M,
    ) -> Result<Option<Segment>, RingError> {
        Walker::next(self, q, mem)
    }
    #[inline]
    fn descs(&self) -> u32 {
        Walker::descs(self)
    }
}

impl<S: AsMut<[u16]>> Ring for PackedQueue<S> {
    type Walker = PackedWalker;
    const BOUNDED_PENDING: bool = true;

    fn usable(&self) -> bool {
        self.ready && self.num != 0
    }
    fn num(&self) -> u16 {
        self.num
    }
    fn event_idx(&self) -> bool {
        self.event_idx
    }
    fn pending<M: GuestMemory>(&mut self, mem: &mut M) -> Result<u16, RingError> {
        PackedQueue::pending(self, mem)
    }
    fn chain<M: GuestMemory>(
        &mut self,
        mem: &mut M,
        ahead: u16,
    ) -> Result<(u16, PackedWalker), RingError> {
        PackedQueue::chain(self, mem, ahead)
    }
    fn consume<M: GuestMemory>(&mut self, mem: &mut M) -> Result<(), RingError> {
        PackedQueue::consume(self, mem).map(|_| ())
    }
    fn put_used<M: GuestMemory>(
        &mut self,
        mem: &mut M,
        id: u16,
        len: u32,
    ) -> Result<(), RingError> {
        PackedQueue::put_used(self, mem, id, len)
    }
    fn publish<M: GuestMemory>(&mut self, mem: &mut M) -> Result<(), RingError> {
        PackedQueue::publish(self, mem)
    }
    fn arm_kick<M: GuestMemory>(&mut self, mem: &mut M) -> Result<(), RingError> {
        PackedQueue::arm_kick(self, mem)
    }
    fn needs_interrupt<M: GuestMemory>(&mut self, mem: &mut M) -> Result<bool, RingError> {
        PackedQueue::needs_interrupt(self, mem)
    }
    fn is_full(&self, _pending: u16) -> bool {
        PackedQueue::is_full(self)
    }
}

impl<S: AsMut<[u16]>> ChainWalker<PackedQueue<S>> for PackedWalker {
    fn next<M: GuestMemory>(
        &mut self,
        q: &mut PackedQueue<S>,
        mem: &mut M,
    ) -> Result<Option<Segment>, RingError> {
        PackedWalker::next(self, q, mem)
    }
    fn descs(&self) -> u32 {
        PackedWalker::descs(self)
    }
}

/// Storage of a packed queue's id table: one `u16` per ring entry, with an
/// empty value that can be a constant (so that a queue can be assigned in
/// place, off the stack).
pub trait IdTable: AsMut<[u16]> {
    /// No storage (a packed ring then fails at its first chain:
    /// [`RingError::BadId`]).
    const EMPTY: Self;
}

impl<const N: usize> IdTable for [u16; N] {
    const EMPTY: Self = [0; N];
}

/// The configuration interface of a device's queue: what the queue ops of
/// a parent (`set_vq_num`, `set_vq_address`, `set_vq_ready`,
/// `set_vq_base`, `get_vq_base`, the negotiated features) set and read.
pub trait QueueConfig {
    /// The ring size (a power of two; the core checked it).
    fn set_num(&mut self, num: u16);
    /// The ring addresses: descriptors, driver area, device area.
    fn set_addr(&mut self, desc: u64, driver: u64, device: u64);
    /// Enables or disables the queue; where the ring is stays (a queue
    /// enabled again goes on from there).
    fn set_ready(&mut self, ready: bool);
    /// Enabled.
    fn ready(&self) -> bool;
    /// The negotiated ring features: EVENT_IDX, INDIRECT_DESC and the ring
    /// type (RING_PACKED). Returns false when the queue cannot be of the
    /// type asked for (a split-only queue asked for packed).
    fn set_features(&mut self, event_idx: bool, indirect: bool, packed: bool) -> bool;
    /// The vring base, in vhost's encoding: split, the next available
    /// index in bits 0-15; packed, `avail | wrap << 15` in bits 0-15 and
    /// `used | wrap << 15` in bits 16-31.
    fn set_base(&mut self, base: u32);
    /// Where the queue is, in the encoding of [`QueueConfig::set_base`].
    fn base(&self) -> u32;
}

impl QueueConfig for SplitQueue {
    fn set_num(&mut self, num: u16) {
        self.num = num;
        self.invalidate();
    }
    fn set_addr(&mut self, desc: u64, driver: u64, device: u64) {
        self.desc = desc;
        self.avail = driver;
        self.used = device;
        self.invalidate();
    }
    fn set_ready(&mut self, ready: bool) {
        self.ready = ready;
        // Read again what was read ahead: the driver may have changed the
        // ring while the queue was disabled.
        self.invalidate();
    }
    fn ready(&self) -> bool {
        self.ready
    }
    fn set_features(&mut self, event_idx: bool, indirect: bool, packed: bool) -> bool {
        self.event_idx = event_idx;
        self.indirect = indirect;
        !packed
    }
    fn set_base(&mut self, base: u32) {
        let base = base as u16;
        self.last_avail = base;
        self.used_idx = base;
        self.signalled_used = base;
        self.invalidate();
    }
    fn base(&self) -> u32 {
        u32::from(self.last_avail)
    }
}

/// A queue of either ring type, as its driver configured it.
///
/// Both rings' state is kept (the type is known only once the features
/// are negotiated); [`Queue::split`] or [`Queue::packed`] is served,
/// whichever [`Queue::is_packed`] says. About 1.5 KiB plus the id
/// table's storage: keep it on the heap, reset it in place
/// ([`Queue::reset`]).
#[derive(Debug)]
pub struct Queue<S> {
    /// The split ring (served unless [`Queue::is_packed`]).
    pub split: SplitQueue,
    /// The packed ring (served when [`Queue::is_packed`]).
    pub packed: PackedQueue<S>,
    /// `VIRTIO_F_RING_PACKED` negotiated.
    is_packed: bool,
    /// The vring base set (`None`: a fresh ring).
    base: Option<u32>,
    /// The base does not fit the packed ring as configured: the queue
    /// fails when served.
    bad_base: bool,
}

impl<S: IdTable> Queue<S> {
    /// An unconfigured, disabled split queue without id storage.
    pub const EMPTY: Self = Self::with_ids(S::EMPTY);
}

impl<S> Queue<S> {
    /// An unconfigured, disabled split queue whose packed ring uses `ids`.
    pub const fn with_ids(ids: S) -> Self {
        Self {
            split: SplitQueue::EMPTY,
            packed: PackedQueue::with_ids(ids),
            is_packed: false,
            base: None,
            bad_base: false,
        }
    }

    /// `VIRTIO_F_RING_PACKED` was negotiated: [`Queue::packed`] is served.
    pub fn is_packed(&self) -> bool {
        self.is_packed
    }
}

impl<S: AsMut<[u16]>> Queue<S> {
    /// An enabled split queue of `num` entries at the given addresses.
    pub fn new_split(q: SplitQueue, ids: S) -> Self {
        let mut s = Self::with_ids(ids);
        s.split = q;
        s
    }

    /// A packed queue (`q`, with its id table, where it is).
    pub fn new_packed(q: PackedQueue<S>) -> Self {
        let mut split = SplitQueue::EMPTY;
        split.num = q.num;
        split.ready = q.ready;
        Self {
            split,
            base: Some(q.base()),
            packed: q,
            is_packed: true,
            bad_base: false,
        }
    }

    /// Forgets the configuration (a device reset), in place; the id table
    /// keeps its storage.
    pub fn reset(&mut self) {
        self.split = SplitQueue::EMPTY;
        self.packed.reset();
        self.is_packed = false;
        self.base = None;
        self.bad_base = false;
    }

    /// Whether the queue may be served: a packed ring whose vring base
    /// does not fit it is an error ([`RingError::BadIndex`]).
    pub fn check(&self) -> Result<(), RingError> {
        if self.is_packed && self.bad_base {
            return Err(RingError::BadIndex);
        }
        Ok(())
    }

    /// Whether the ring of the negotiated type is enabled and configured.
    pub fn usable(&self) -> bool {
        if self.is_packed {
            self.packed.usable()
        } else {
            self.split.usable()
        }
    }

    /// Places the packed ring where the base says (a fresh ring without
    /// one).
    fn sync_packed(&mut self) {
        if !self.is_packed {
            return;
        }
        let base = self.base.unwrap_or(PACKED_BASE_INIT);
        self.bad_base = self.packed.set_base(base).is_err();
    }
}

impl<S: AsMut<[u16]>> QueueConfig for Queue<S> {
    fn set_num(&mut self, num: u16) {
        QueueConfig::set_num(&mut self.split, num);
        self.packed.num = num;
        self.sync_packed();
    }
    fn set_addr(&mut self, desc: u64, driver: u64, device: u64) {
        QueueConfig::set_addr(&mut self.split, desc, driver, device);
        self.packed.desc = desc;
        self.packed.driver = driver;
        self.packed.device = device;
        self.packed.invalidate();
    }
    fn set_ready(&mut self, ready: bool) {
        QueueConfig::set_ready(&mut self.split, ready);
        self.packed.ready = ready;
        self.packed.invalidate();
    }
    fn ready(&self) -> bool {
        self.split.ready
    }
    fn set_features(&mut self, event_idx: bool, indirect: bool, packed: bool) -> bool {
        QueueConfig::set_features(&mut self.split, event_idx, indirect, false);
        self.packed.event_idx = event_idx;
        self.packed.indirect = indirect;
        self.is_packed = packed;
        self.sync_packed();
        true
    }
    fn set_base(&mut self, base: u32) {
        QueueConfig::set_base(&mut self.split, base);
        self.base = Some(base);
        self.sync_packed();
    }
    fn base(&self) -> u32 {
        if self.is_packed {
            self.packed.base()
        } else {
            self.split.base()
        }
    }
}
