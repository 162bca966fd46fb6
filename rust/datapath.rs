// SPDX-License-Identifier: GPL-2.0

//! The data path of a parent: its worker, its lifecycle and its guest
//! memory.
//!
//! What `drivers/vdpa/vdpa_sim/vdpa_sim.c` does for `vdpa_sim_net.c`: a
//! parent gives its device state (per-queue state included) and the work
//! of one run ([`Work::run`]); a [`Datapath`] owns everything else:
//!
//! - the worker, a thread of the VMM ([`crate::vhost_task`]), started at
//!   DRIVER_OK and RESUME, woken by kicks ([`Datapath::kick`]);
//! - the sequencing of start, suspend, resume and reset, and the quiescing
//!   they need (stop the worker and wait for it: when [`Datapath::reset`]
//!   or [`Datapath::suspend`] returns, no run is in progress and no DMA is
//!   in flight);
//! - the lock around the parent's state ([`Datapath::with`]): a run holds
//!   it, so an op that takes it never sees a run half done;
//! - guest memory: a run is given a [`Memory`], the split-ring walker's
//!   [`GuestMemory`] over the core's DMA upcalls (`vhost_mdev_dma_rw()`,
//!   and `vhost_mdev_dma_copy()` with iommufd), so the parent writes no
//!   `unsafe` code for DMA;
//! - the interrupts a run asks for ([`Outcome`]), signalled after the lock
//!   is dropped;
//! - failure: a run that fails ([`RingError`]: the driver broke a ring or
//!   unmapped its memory) stops the data path and sets
//!   DEVICE_NEEDS_RESET; so does the death of the VMM, which kills the
//!   worker. Only a reset and a new DRIVER_OK bring the device back;
//! - the counters every parent has: kicks, interrupts sent, failed runs
//!   (ring errors), and the most worker runs a stop waited for.
//!
//! - work items: the parent's queues are served in groups of
//!   [`Work::ITEM_QUEUES`] (the net sample: one RX/TX pair each), each a
//!   work item of the one worker. A kick of a queue marks its item
//!   pending; the worker runs the pending items, each with its own budget,
//!   so that items are independent; an item runs only while all of its
//!   queues are enabled (`SET_VRING_ENABLE` may come at any time after
//!   DRIVER_OK: it takes the state lock, so it takes effect between two
//!   runs, and an item enabled again goes on from where its rings are).
//!
//! A parent embeds the datapath in its instance and forwards the queue and
//! lifecycle ops of [`crate::vhost_mdev::Device`] to it (the sample parent,
//! `samples/vhost_mdev_net`, is the complete example):
//!
//! ```ignore
//! struct MyState { vq: KBox<SplitQueue>, /* config, counters */ }
//!
//! impl datapath::Work for MyState {
//!     type Queue = SplitQueue; // or `VirtQueue`: split or packed
//!     const ITEM_QUEUES: u16 = 1;
//!
//!     fn queue_count(&self) -> u16 {
//!         1
//!     }
//!
//!     fn run(&mut self, _item: u16, mem: &mut datapath::Memory<'_>) -> Result<Outcome, RingError> {
//!         // Serve the item's queues within a budget, through `mem`.
//!         Ok(Outcome::new().interrupt_if(0, used_some).more(work_left))
//!     }
//!
//!     fn queue(&mut self, idx: u16) -> Option<&mut SplitQueue> {
//!         (idx == 0).then_some(&mut *self.vq)
//!     }
//! }
//!
//! #[pin_data]
//! struct MyDev {
//!     #[pin]
//!     dp: Datapath<MyState>,
//! }
//!
//! #[vtable]
//! impl vhost_mdev::Device for MyDev {
//!     fn set_vq_ready(&self, idx: u16, ready: bool) {
//!         self.dp.set_vq_ready(idx, ready)
//!     }
//!     fn kick(&self, idx: u16) {
//!         self.dp.kick(idx)
//!     }
//!     fn start(&self) -> Result {
//!         self.dp.start(0)
//!     }
//!     fn reset(&self) {
//!         self.dp.reset(|s| *s.vq = SplitQueue::EMPTY)
//!     }
//!     // ...
//! }
//!
//! // In `Parent::create`:
//! let dp = Datapath::new(handle, c_str!("my-dev"), state);
//! KBox::pin_init(pin_init!(MyDev { dp <- dp }), GFP_KERNEL)
//! ```
//!
//! The one duty the parent keeps: its [`crate::vhost_mdev::Device::reset`]
//! calls [`Datapath::reset`] (the core calls `reset` before the device is
//! closed, and no DMA may follow a close).

use crate::bindings;
use crate::ring::{IdTable, Queue, QueueConfig};
use crate::vhost_mdev::DeviceHandle;
use crate::vhost_task::{TaskHandler, TaskSlot};
use crate::virtio::{VIRTIO_F_RING_PACKED, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use crate::vring::{Fault, GuestMemory, RingError};
use core::marker::PhantomData;
use core::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use kernel::new_mutex;
use kernel::prelude::*;
use kernel::str::CStr;
use kernel::sync::Mutex;

/// Most queues a datapath serves (the core's limit on `vq_count()`).
pub const MAX_QUEUES: u16 = 1024;
/// Words of the pending-item bitmap (one bit per item).
const PENDING_WORDS: usize = MAX_QUEUES as usize / 64;

/// The id table of a packed ring ([`crate::packed::PackedQueue`]): one
/// entry per ring entry, on the heap.
#[derive(Debug)]
pub struct Ids(KVec<u16>);

impl Ids {
    /// A table for rings of up to `entries` entries (`vq_num_max()`),
    /// allocated with `GFP_KERNEL`.
    pub fn new(entries: u16) -> Result<Self> {
        Ok(Ids(KVec::from_elem(0u16, entries.into(), GFP_KERNEL)?))
    }
}

impl AsMut<[u16]> for Ids {
    fn as_mut(&mut self) -> &mut [u16] {
        &mut self.0
    }
}

impl IdTable for Ids {
    const EMPTY: Self = Ids(KVec::new());
}

/// A queue of either ring type, split or packed (as the driver negotiated
/// `VIRTIO_F_RING_PACKED`), for [`Work::Queue`]. Give its packed ring an
/// id table of `vq_num_max()` entries ([`Ids::new`]) before the device
/// offers the feature; keep it on the heap (about 1.5 KiB).
pub type VirtQueue = Queue<Ids>;

/// Longest poll of the worker for the next kick after a run, in
/// microseconds (see [`Datapath::start`]).
pub const MAX_POLL_US: u32 = 1000;

/// The device state of a parent and the work of one run of its worker.
///
/// The state lives behind the datapath's lock: [`Work::run`] is called
/// with it held, and the parent's ops reach it with [`Datapath::with`].
pub trait Work: Send + 'static {
    /// The parent's queues: [`crate::vring::SplitQueue`] (split rings
    /// only) or [`VirtQueue`] (split or packed).
    type Queue: QueueConfig;

    /// Queues per work item: item `i` serves queues `i * ITEM_QUEUES` to
    /// `(i + 1) * ITEM_QUEUES - 1`. A power of two, at most 64.
    const ITEM_QUEUES: u16;

    /// Number of virtqueues now (the device's `vq_count()`, at most
    /// [`MAX_QUEUES`]; it may change only while the device is not open).
    fn queue_count(&self) -> u16;

    /// One run of work item `item` (below `queue_count()` /
    /// `ITEM_QUEUES`, rounded up), whose queues are all enabled: serves
    /// them through `mem` within a
    /// budget of its own (descriptors walked, bytes copied: a guest chooses
    /// how long its chains are), ending early when [`need_resched`] says
    /// the CPU is wanted; returns which queues to interrupt and whether
    /// work is left (then the worker yields the CPU if it is wanted and
    /// runs again).
    ///
    /// An error means the driver broke a ring or its memory cannot be
    /// reached: the datapath stops and sets DEVICE_NEEDS_RESET, and `run`
    /// is not called again until a reset and a new start (the datapath
    /// counts it: [`Datapath::ring_errors`]). Leave the state as it was at
    /// the last completed request.
    ///
    /// Runs in the worker, in process context, and may sleep; only while
    /// the device is started and not suspended.
    fn run(&mut self, item: u16, mem: &mut Memory<'_>) -> Result<Outcome, RingError>;

    /// Queue `idx`, for the queue ops of [`Datapath`]
    /// ([`Datapath::set_vq_num`] and the others); `None` if the parent has
    /// no such queue. The datapath asks only below [`Work::queue_count`].
    fn queue(&mut self, idx: u16) -> Option<&mut Self::Queue>;
}

/// What one [`Work::run`] did: the queues to interrupt, and whether work
/// is left.
///
/// Queue indexes are those of the device, and of the item that ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Bit `i % 64`: interrupt queue `i` (an item's queues are in one
    /// aligned block of 64: `ITEM_QUEUES` is a power of two up to 64).
    irqs: u64,
    /// Work is left: run again.
    more: bool,
}

impl Outcome {
    /// Nothing to interrupt, nothing left.
    pub const fn new() -> Self {
        Self {
            irqs: 0,
            more: false,
        }
    }

    /// Interrupt queue `idx` (after the run, with the lock dropped).
    pub const fn interrupt(self, idx: u16) -> Self {
        self.interrupt_if(idx, true)
    }

    /// Interrupt queue `idx` if `yes`.
    pub const fn interrupt_if(mut self, idx: u16, yes: bool) -> Self {
        if yes {
            self.irqs |= 1 << (idx % 64);
        }
        self
    }

    /// Whether work is left: the worker runs again at once (after yielding
    /// the CPU if it is wanted), without waiting for a kick.
    pub const fn more(mut self, more: bool) -> Self {
        self.more = more;
        self
    }

    /// The queues to interrupt, lowest index first, of the item whose
    /// first queue is `first`.
    ///
    /// Visits the set bits only: this runs after every run of the worker.
    fn queues(self, first: u16) -> impl Iterator<Item = u16> {
        let block = first & !63;
        let mut bits = self.irqs;
        core::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            // Below 64: `bits` is not zero.
            let i = bits.trailing_zeros() as u16;
            bits &= bits - 1;
            Some(block + i)
        })
    }
}

/// Whether the scheduler wants the worker's CPU: a run ends early, between
/// two requests, when it does (the worker yields before the next run).
pub fn need_resched() -> bool {
    // SAFETY: reads a flag of the current task; any context.
    unsafe { bindings::vhost_mdev_helper_need_resched() }
}

/// Guest memory by IOVA, for one run of the worker.
///
/// With a type1 container every access is a `vfio_dma_rw()` through the
/// VMM's address space (the worker is a thread of the VMM); with iommufd
/// the core reaches the pages it pinned, and [`GuestMemory::copy`] copies
/// guest memory to guest memory without a bounce buffer. A naturally
/// aligned 2-byte access ([`GuestMemory::read_u16`], `write_u16`) is one
/// load or store on every back end.
///
/// # Invariants
///
/// Only [`Datapath`]'s worker creates a `Memory`, for one run, while the
/// device is open and started; [`Datapath::reset`], [`Datapath::suspend`]
/// and dropping the datapath wait for the run to end. It is not `Send`.
pub struct Memory<'a> {
    handle: &'a DeviceHandle,
    /// The core copies guest memory to guest memory for us (iommufd).
    direct: bool,
    _not_send: PhantomData<*mut ()>,
}

impl<'a> Memory<'a> {
    /// The guest memory of `handle`'s device for one run.
    fn new(handle: &'a DeviceHandle) -> Self {
        // INVARIANT: called only by `Datapath::run`, in the worker.
        Self {
            handle,
            direct: handle.dma_can_copy(),
            _not_send: PhantomData,
        }
    }
}

impl GuestMemory for Memory<'_> {
    fn fence(&mut self) {
        // smp_mb(): order our ring stores before the loads that follow.
        fence(Ordering::SeqCst);
    }

    fn read_fence(&mut self) {
        // smp_rmb(): loads after loads. A compiler barrier on x86, where
        // the SeqCst fence above would cost an MFENCE per packed chain.
        fence(Ordering::Acquire);
    }

    fn write_fence(&mut self) {
        // smp_wmb(): stores after stores (and loads), as above.
        fence(Ordering::Release);
    }

    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
        // SAFETY: the worker of a started device is the caller, and the
        // datapath stops it before the device is closed (type invariant).
        unsafe { self.handle.dma_read(addr, buf) }.map_err(|_| Fault)
    }

    fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), Fault> {
        // SAFETY: as in `read`.
        unsafe { self.handle.dma_write(addr, buf) }.map_err(|_| Fault)
    }

    fn read_u16(&mut self, addr: u64) -> Result<u16, Fault> {
        // An aligned 2-byte access inside a ring is one load in the core
        // (`vhost_mdev_dma_rw()`), on every back end.
        let mut b = [0u8; 2];
        self.read(addr, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    fn write_u16(&mut self, addr: u64, v: u16) -> Result<(), Fault> {
        // One store in the core, as for `read_u16`.
        self.write(addr, &v.to_le_bytes())
    }

    fn can_copy(&self) -> bool {
        self.direct
    }

    fn copy(&mut self, dst: u64, src: u64, len: usize) -> bool {
        // SAFETY: as in `read`.
        self.direct && unsafe { self.handle.dma_copy(dst, src, len) }.is_ok()
    }
}

/// The parent's state and where the device is in its lifecycle.
struct State<W> {
    work: W,
    /// DRIVER_OK was set, and no reset or ring error came since.
    started: bool,
    /// Suspended (`VHOST_VDPA_SUSPEND`) and not resumed.
    suspended: bool,
}

/// The data path of one instance: the worker, the lifecycle and the
/// parent's state `W` behind a lock.
///
/// A `Datapath` is created in place ([`Datapath::new`] returns a
/// [`PinInit`]): it never moves, and it stops its worker before it is
/// dropped.
///
/// # Invariants
///
/// The worker runs only between [`Datapath::start`] (or
/// [`Datapath::resume`]) and the next stop: [`Datapath::reset`],
/// [`Datapath::suspend`] or the drop, each of which waits until it is
/// gone. It calls [`Work::run`] only while `running` is set, which it
/// checks with the state lock held, and only while the state says started
/// and not suspended.
#[pin_data(PinnedDrop)]
pub struct Datapath<W: Work> {
    handle: DeviceHandle,
    /// The worker's thread name.
    name: &'static CStr,
    task: TaskSlot,
    /// The worker may run (started, not suspended, not broken).
    running: AtomicBool,
    /// A stop (reset, suspend, drop) waits for the worker.
    stopping: AtomicBool,
    /// Worker runs that ended while the current stop waited.
    stop_runs: AtomicU64,
    /// Most worker runs a stop waited for.
    max_stop_runs: AtomicU64,
    /// Bit `i`: work item `i` was kicked (or enabled, or started) and has
    /// not run since.
    pending: [AtomicU64; PENDING_WORDS],
    /// Words of `pending` that the device's work items use (set at each
    /// start, from the queue count): the worker scans only these.
    words: AtomicUsize,
    kicks: AtomicU64,
    interrupts: AtomicU64,
    /// Runs that failed (each set DEVICE_NEEDS_RESET).
    ring_errors: AtomicU64,
    /// Held across every start and stop of the worker: a start never
    /// races a stop, whoever calls them.
    #[pin]
    ops: Mutex<()>,
    #[pin]
    state: Mutex<State<W>>,
}

impl<W: Work> Datapath<W> {
    /// A stopped data path for the device of `handle`, around the parent's
    /// state `work`; its worker will be named `name`.
    pub fn new(handle: DeviceHandle, name: &'static CStr, work: W) -> impl PinInit<Self> {
        const {
            assert!(W::ITEM_QUEUES.is_power_of_two() && W::ITEM_QUEUES <= 64);
        }
        pin_init!(Self {
            handle,
            name,
            task: TaskSlot::new(),
            running: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            stop_runs: AtomicU64::new(0),
            max_stop_runs: AtomicU64::new(0),
            pending: [const { AtomicU64::new(0) }; PENDING_WORDS],
            words: AtomicUsize::new(0),
            kicks: AtomicU64::new(0),
            interrupts: AtomicU64::new(0),
            ring_errors: AtomicU64::new(0),
            ops <- new_mutex!((), "vhost_mdev_datapath_ops"),
            state <- new_mutex!(State {
                work,
                started: false,
                suspended: false,
            }, "vhost_mdev_datapath"),
        })
    }

    /// The core's handle on the device (for upcalls such as
    /// [`DeviceHandle::config_changed`], and [`DeviceHandle::is_open`]).
    pub fn handle(&self) -> &DeviceHandle {
        &self.handle
    }

    /// Runs `f` on the parent's state, with the lock held (no run is in
    /// progress meanwhile). May sleep: process context only. `f` must not
    /// call the datapath (its lock is held: that would deadlock).
    pub fn with<R>(&self, f: impl FnOnce(&mut W) -> R) -> R {
        f(&mut self.state.lock().work)
    }

    /// `Device::set_driver_features`: the ring features the driver
    /// accepted (`VIRTIO_RING_F_EVENT_IDX`, `VIRTIO_RING_F_INDIRECT_DESC`,
    /// and the ring type: `VIRTIO_F_RING_PACKED`), for every queue. The
    /// parent applies its device features itself. Fails with `EINVAL` if
    /// a queue cannot be of the type negotiated (the parent did not offer
    /// it).
    pub fn set_ring_features(&self, features: u64) -> Result {
        let event_idx = features & VIRTIO_RING_F_EVENT_IDX != 0;
        let indirect = features & VIRTIO_RING_F_INDIRECT_DESC != 0;
        let packed = features & VIRTIO_F_RING_PACKED != 0;
        self.with(|w| {
            let mut ok = true;
            for idx in 0..w.queue_count().min(MAX_QUEUES) {
                if let Some(q) = w.queue(idx) {
                    ok &= q.set_features(event_idx, indirect, packed);
                }
            }
            if ok {
                Ok(())
            } else {
                Err(EINVAL)
            }
        })
    }

    /// Runs `f` on queue `idx` with the lock held, if the parent has it.
    fn with_queue<R>(&self, idx: u16, f: impl FnOnce(&mut W::Queue) -> R) -> Option<R> {
        self.with(|w| {
            if idx < w.queue_count().min(MAX_QUEUES) {
                w.queue(idx).map(f)
            } else {
                None
            }
        })
    }

    /// `Device::set_vq_num`: the size of queue `idx` (which the core
    /// checked against the device's `vq_num_max()`).
    pub fn set_vq_num(&self, idx: u16, num: u32) {
        self.with_queue(idx, |q| q.set_num(num as u16));
    }

    /// `Device::set_vq_address`: the ring addresses (IOVAs) of queue `idx`.
    pub fn set_vq_address(&self, idx: u16, desc: u64, driver: u64, device: u64) {
        self.with_queue(idx, |q| q.set_addr(desc, driver, device));
    }

    /// `Device::set_vq_ready`: enables or disables queue `idx`, at any
    /// time: a run in progress ends first (the lock), and the item of a
    /// queue enabled while the device runs is run (its rings are where
    /// they were: buffers may be waiting).
    pub fn set_vq_ready(&self, idx: u16, ready: bool) {
        self.with_queue(idx, |q| q.set_ready(ready));
        if ready {
            self.kick_item(idx / W::ITEM_QUEUES);
        }
    }

    /// `Device::set_vq_base`: where queue `idx` goes on, in vhost's
    /// encoding (split: the next available index; packed: both positions
    /// and wrap counters).
    pub fn set_vq_base(&self, idx: u16, base: u32) {
        self.with_queue(idx, |q| q.set_base(base));
    }

    /// `Device::get_vq_base`: where queue `idx` is, in vhost's encoding.
    pub fn get_vq_base(&self, idx: u16) -> u32 {
        self.with_queue(idx, |q| q.base()).unwrap_or(0)
    }

    /// A kick of queue `idx`: counts it, marks its work item pending and
    /// wakes the worker. Any context, atomic included (`Device::kick`).
    pub fn kick(&self, idx: u16) {
        self.kicks.fetch_add(1, Ordering::Relaxed);
        self.kick_item(idx / W::ITEM_QUEUES);
    }

    /// Marks work item `item` pending and wakes the worker if it runs.
    fn kick_item(&self, item: u16) {
        let item = usize::from(item);
        if let Some(word) = self.pending.get(item / 64) {
            word.fetch_or(1 << (item % 64), Ordering::AcqRel);
        }
        if self.running.load(Ordering::Acquire) {
            self.task.wake();
        }
    }

    /// Marks every work item pending (at a start: buffers may be waiting).
    fn kick_all(&self) {
        let count = self.with(|w| w.queue_count().min(MAX_QUEUES));
        let items = usize::from(count.div_ceil(W::ITEM_QUEUES));
        self.words
            .store(items.div_ceil(64).min(PENDING_WORDS), Ordering::Release);
        for (i, word) in self.pending.iter().enumerate() {
            let n = items.saturating_sub(i * 64).min(64);
            let bits = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
            word.fetch_or(bits, Ordering::AcqRel);
        }
    }

    /// DRIVER_OK (`Device::start`): starts the worker, a thread of the
    /// calling process (the VMM), which runs at once (buffers may be
    /// waiting). After each run it polls for the next kick for `poll_us`
    /// microseconds (at most [`MAX_POLL_US`]; 0: it sleeps at once) before
    /// it sleeps, using only a CPU that nothing else wants.
    ///
    /// Fails with `EINVAL` from a kernel thread and as the thread cannot
    /// be created (`EAGAIN` at the process's limits, `ENOMEM`); the device
    /// stays stopped then.
    pub fn start(&self, poll_us: u32) -> Result {
        let _ops = self.ops.lock();
        {
            let mut st = self.state.lock();
            st.started = true;
            st.suspended = false;
        }
        let r = self.start_worker(poll_us);
        if r.is_err() {
            self.state.lock().started = false;
        }
        r
    }

    /// Reset (`Device::reset`): stops the worker and waits until it is
    /// gone, then lets `f` forget the parent's queue state (and whatever
    /// else a reset clears), with the lock held (`f` must not call the
    /// datapath). The counters of the datapath survive.
    pub fn reset(&self, f: impl FnOnce(&mut W)) {
        let _ops = self.ops.lock();
        self.quiesce();
        let mut st = self.state.lock();
        st.started = false;
        st.suspended = false;
        f(&mut st.work);
    }

    /// Suspend (`Device::suspend`): stops the worker and waits until it is
    /// gone; the state stays as the last run left it.
    pub fn suspend(&self) -> Result {
        let _ops = self.ops.lock();
        self.quiesce();
        self.state.lock().suspended = true;
        Ok(())
    }

    /// Resume (`Device::resume`): restarts the worker if the device was
    /// started (`poll_us` as for [`Datapath::start`]).
    pub fn resume(&self, poll_us: u32) -> Result {
        let _ops = self.ops.lock();
        let started = {
            let mut st = self.state.lock();
            st.suspended = false;
            st.started
        };
        if started {
            self.start_worker(poll_us)?;
        }
        Ok(())
    }

    /// Kicks received.
    pub fn kicks(&self) -> u64 {
        self.kicks.load(Ordering::Relaxed)
    }

    /// Virtqueue interrupts sent.
    pub fn interrupts(&self) -> u64 {
        self.interrupts.load(Ordering::Relaxed)
    }

    /// Runs that failed ([`Work::run`] returned an error, and the device
    /// went into DEVICE_NEEDS_RESET).
    pub fn ring_errors(&self) -> u64 {
        self.ring_errors.load(Ordering::Relaxed)
    }

    /// Most worker runs that a reset, suspend or removal waited for (at
    /// most the run in progress).
    pub fn max_stop_runs(&self) -> u64 {
        self.max_stop_runs.load(Ordering::Relaxed)
    }

    /// Stops the worker and waits until it is gone. The caller holds `ops`
    /// (or `&mut self`).
    fn quiesce(&self) {
        self.running.store(false, Ordering::Release);
        self.stop_runs.store(0, Ordering::Relaxed);
        self.stopping.store(true, Ordering::Release);
        self.task.stop();
        self.stopping.store(false, Ordering::Relaxed);
        self.max_stop_runs
            .fetch_max(self.stop_runs.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Starts the worker, a thread of the calling process. The caller
    /// holds `ops`.
    fn start_worker(&self, poll_us: u32) -> Result {
        self.running.store(true, Ordering::Release);
        self.task
            .set_poll_ns(u64::from(poll_us.min(MAX_POLL_US)) * 1000);
        // SAFETY: `self` is pinned (`new` initialises it in place) and owns
        // `task`; it stops the worker in `reset`, `suspend` and on drop; the
        // caller holds `ops`, which serialises starts and stops.
        let r = unsafe { self.task.start(self, self.name) };
        if r.is_err() {
            self.running.store(false, Ordering::Release);
        }
        r?;
        // Buffers may already be waiting.
        self.kick_all();
        self.task.wake();
        Ok(())
    }
}

impl<W: Work> Datapath<W> {
    /// One run of work item `item`: `None` when the datapath stopped (or
    /// must stop: the run failed), else whether work is left.
    fn run_item(&self, item: u16) -> Option<bool> {
        let mut st = self.state.lock();
        if !self.running.load(Ordering::Acquire) || !st.started || st.suspended {
            return None;
        }
        let count = st.work.queue_count().min(MAX_QUEUES);
        let first = u32::from(item) * u32::from(W::ITEM_QUEUES);
        if first >= u32::from(count) {
            return Some(false);
        }
        // Below `count`, a `u16`.
        let first = first as u16;
        let end = first.saturating_add(W::ITEM_QUEUES).min(count);
        // An item is served only while all of its queues are enabled.
        if !(first..end).all(|q| st.work.queue(q).is_some_and(|q| q.ready())) {
            return Some(false);
        }
        let r = st.work.run(item, &mut Memory::new(&self.handle));
        if self.stopping.load(Ordering::Acquire) {
            self.stop_runs.fetch_add(1, Ordering::Relaxed);
        }
        match r {
            Ok(out) => {
                drop(st);
                for idx in out.queues(first) {
                    self.interrupts.fetch_add(1, Ordering::Relaxed);
                    self.handle.vq_interrupt(idx);
                }
                Some(out.more)
            }
            Err(_) => {
                self.ring_errors.fetch_add(1, Ordering::Relaxed);
                st.started = false;
                self.running.store(false, Ordering::Release);
                drop(st);
                // The driver broke a ring or unmapped its memory: stop and
                // tell it; only a reset brings the device back.
                self.handle.needs_reset();
                None
            }
        }
    }
}

impl<W: Work> TaskHandler for Datapath<W> {
    fn task_slot(&self) -> &TaskSlot {
        &self.task
    }

    /// One run of the worker: each pending work item once (its own
    /// budget), the parent's work with the state lock held, then the
    /// interrupts it asked for, with the lock dropped. Work is left when
    /// an item was kicked meanwhile or has work left.
    fn run(&self) -> bool {
        // Only the words of the device's items: a kick of a queue beyond
        // them has no item to run (`run_item` would refuse it).
        let words = self.words.load(Ordering::Acquire);
        for (w, word) in self.pending.iter().take(words).enumerate() {
            let mut bits = word.swap(0, Ordering::AcqRel);
            while bits != 0 {
                let b = bits.trailing_zeros();
                bits &= bits - 1;
                // Below `MAX_QUEUES`: `PENDING_WORDS` words of 64 bits.
                let item = (w * 64) as u16 + b as u16;
                match self.run_item(item) {
                    None => return false,
                    Some(true) => {
                        word.fetch_or(1 << b, Ordering::AcqRel);
                    }
                    Some(false) => {}
                }
            }
        }
        self.pending
            .iter()
            .take(words)
            .any(|word| word.load(Ordering::Acquire) != 0)
    }

    fn killed(&self) {
        // The VMM is going (SIGKILL), or lost its worker (exec): nothing
        // runs until a reset and a new DRIVER_OK; an opener that survives
        // learns it from the status.
        self.running.store(false, Ordering::Release);
        self.handle.needs_reset();
    }
}

#[pinned_drop]
impl<W: Work> PinnedDrop for Datapath<W> {
    fn drop(self: Pin<&mut Self>) {
        self.quiesce();
    }
}
