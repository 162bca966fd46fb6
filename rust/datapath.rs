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
//! A parent embeds the datapath in its instance and forwards the queue and
//! lifecycle ops of [`crate::vhost_mdev::Device`] to it (the sample parent,
//! `samples/vhost_mdev_net`, is the complete example):
//!
//! ```ignore
//! struct MyState { vq: SplitQueue, /* config, counters */ }
//!
//! impl datapath::Work for MyState {
//!     const QUEUES: u16 = 1;
//!
//!     fn run(&mut self, mem: &mut datapath::Memory<'_>) -> Result<Outcome, RingError> {
//!         // Serve the queue within a budget, through `mem`.
//!         Ok(Outcome::new().interrupt_if(0, used_some).more(work_left))
//!     }
//!
//!     fn queue(&mut self, _idx: u16) -> &mut SplitQueue {
//!         &mut self.vq
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
//!     fn kick(&self, _idx: u16) {
//!         self.dp.kick()
//!     }
//!     fn start(&self) -> Result {
//!         self.dp.start(0)
//!     }
//!     fn reset(&self) {
//!         self.dp.reset(|s| s.vq = SplitQueue::default())
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
use crate::vhost_mdev::DeviceHandle;
use crate::vhost_task::{TaskHandler, TaskSlot};
use crate::virtio::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use crate::vring::{Fault, GuestMemory, RingError, SplitQueue};
use core::marker::PhantomData;
use core::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use kernel::new_mutex;
use kernel::prelude::*;
use kernel::str::CStr;
use kernel::sync::Mutex;

/// Longest poll of the worker for the next kick after a run, in
/// microseconds (see [`Datapath::start`]).
pub const MAX_POLL_US: u32 = 1000;

/// The device state of a parent and the work of one run of its worker.
///
/// The state lives behind the datapath's lock: [`Work::run`] is called
/// with it held, and the parent's ops reach it with [`Datapath::with`].
pub trait Work: Send + 'static {
    /// Number of virtqueues (the device's `vq_count()`).
    const QUEUES: u16;

    /// One run of the worker: serves the queues through `mem` within a
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
    fn run(&mut self, mem: &mut Memory<'_>) -> Result<Outcome, RingError>;

    /// Split queue `idx`, for the queue ops of [`Datapath`]
    /// ([`Datapath::set_vq_num`] and the others). `idx` is below
    /// [`Work::QUEUES`] (the core checks it against `vq_count()` first).
    fn queue(&mut self, idx: u16) -> &mut SplitQueue;
}

/// What one [`Work::run`] did: the queues to interrupt, and whether work
/// is left.
///
/// Queue indexes are those of the device (below its `vq_count()`, which
/// the core caps at 32).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Bit `i`: interrupt queue `i`.
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
        if yes && idx < u64::BITS as u16 {
            self.irqs |= 1 << idx;
        }
        self
    }

    /// Whether work is left: the worker runs again at once (after yielding
    /// the CPU if it is wanted), without waiting for a kick.
    pub const fn more(mut self, more: bool) -> Self {
        self.more = more;
        self
    }

    /// The queues to interrupt, lowest index first.
    fn queues(self) -> impl Iterator<Item = u16> {
        (0..u64::BITS as u16).filter(move |&i| self.irqs & (1 << i) != 0)
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
        pin_init!(Self {
            handle,
            name,
            task: TaskSlot::new(),
            running: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            stop_runs: AtomicU64::new(0),
            max_stop_runs: AtomicU64::new(0),
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
    /// accepted (`VIRTIO_RING_F_EVENT_IDX`, `VIRTIO_RING_F_INDIRECT_DESC`),
    /// for every queue. The parent applies its device features itself.
    pub fn set_ring_features(&self, features: u64) {
        self.with(|w| {
            for idx in 0..W::QUEUES {
                let q = w.queue(idx);
                q.event_idx = features & VIRTIO_RING_F_EVENT_IDX != 0;
                q.indirect = features & VIRTIO_RING_F_INDIRECT_DESC != 0;
            }
        });
    }

    /// `Device::set_vq_num`: the size of queue `idx` (which the core
    /// checked against the device's `vq_num_max()`).
    pub fn set_vq_num(&self, idx: u16, num: u32) {
        self.with(|w| {
            let q = w.queue(idx);
            q.num = num as u16;
            q.invalidate();
        });
    }

    /// `Device::set_vq_address`: the ring addresses (IOVAs) of queue `idx`.
    pub fn set_vq_address(&self, idx: u16, desc: u64, driver: u64, device: u64) {
        self.with(|w| {
            let q = w.queue(idx);
            q.desc = desc;
            q.avail = driver;
            q.used = device;
            q.invalidate();
        });
    }

    /// `Device::set_vq_ready`: enables or disables queue `idx`.
    pub fn set_vq_ready(&self, idx: u16, ready: bool) {
        self.with(|w| w.queue(idx).ready = ready);
    }

    /// `Device::set_vq_base`: where queue `idx` goes on (its next available
    /// index; the used index and the last signalled one follow it).
    pub fn set_vq_base(&self, idx: u16, base: u16) {
        self.with(|w| {
            let q = w.queue(idx);
            q.last_avail = base;
            q.used_idx = base;
            q.signalled_used = base;
            q.invalidate();
        });
    }

    /// `Device::get_vq_base`: the next available index of queue `idx`.
    pub fn get_vq_base(&self, idx: u16) -> u16 {
        self.with(|w| w.queue(idx).last_avail)
    }

    /// A kick: counts it and wakes the worker. Any context, atomic
    /// included (`Device::kick`).
    pub fn kick(&self) {
        self.kicks.fetch_add(1, Ordering::Relaxed);
        if self.running.load(Ordering::Acquire) {
            self.task.wake();
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
        self.task.wake();
        Ok(())
    }
}

impl<W: Work> TaskHandler for Datapath<W> {
    fn task_slot(&self) -> &TaskSlot {
        &self.task
    }

    /// One run of the worker: the parent's work with the state lock held;
    /// then the interrupts, with the lock dropped.
    fn run(&self) -> bool {
        let mut st = self.state.lock();
        if !self.running.load(Ordering::Acquire) || !st.started || st.suspended {
            return false;
        }
        let r = st.work.run(&mut Memory::new(&self.handle));
        if self.stopping.load(Ordering::Acquire) {
            self.stop_runs.fetch_add(1, Ordering::Relaxed);
        }
        match r {
            Ok(out) => {
                drop(st);
                for idx in out.queues() {
                    self.interrupts.fetch_add(1, Ordering::Relaxed);
                    self.handle.vq_interrupt(idx);
                }
                out.more
            }
            Err(_) => {
                self.ring_errors.fetch_add(1, Ordering::Relaxed);
                st.started = false;
                self.running.store(false, Ordering::Release);
                drop(st);
                // The driver broke a ring or unmapped its memory: stop and
                // tell it; only a reset brings the device back.
                self.handle.needs_reset();
                false
            }
        }
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
