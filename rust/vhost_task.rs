// SPDX-License-Identifier: GPL-2.0

//! A device worker that is a thread of the process that starts it
//! (`vhost_task`), as vhost's workers are.
//!
//! C header: [`include/linux/sched/vhost_task.h`](srctree/include/linux/sched/vhost_task.h).
//!
//! A work item on a system workqueue runs in a kernel thread: its CPU time
//! is nobody's, it is placed wherever the workqueue runs, and a guest can
//! keep it busy for as long as its rings allow. A `vhost_task` is instead a
//! thread of the process that creates it (the VMM, when a device is started
//! from the VMM's ioctl or region write): it shares the process's address
//! space, is accounted to its cgroups and scheduled with it, and dies with
//! it (SIGKILL), after which [`TaskHandler::killed`] runs.
//!
//! A [`TaskSlot`] lives inside the device it works for. The device starts
//! the worker ([`TaskSlot::start`]), wakes it ([`TaskSlot::wake`], any
//! context), and stops it ([`TaskSlot::stop`]) before it is dropped; the
//! worker calls [`TaskHandler::run`] once per wake-up, and again while it
//! returns that more work is left, yielding the CPU in between.

use crate::bindings;
use crate::kcov;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use kernel::ffi::c_void;
use kernel::prelude::*;
use kernel::str::CStr;

/// What a [`TaskSlot`]'s worker does.
pub trait TaskHandler: Sync {
    /// The slot of the worker (a field of `self`).
    fn task_slot(&self) -> &TaskSlot;
    /// Does a bounded amount of work; returns whether work is left (the
    /// worker then yields the CPU if it is wanted and calls `run` again).
    /// Runs in the worker, in process context, and may sleep.
    fn run(&self) -> bool;
    /// The process the worker belongs to was killed: the worker is gone
    /// and [`TaskHandler::run`] will not be called again (until the slot
    /// is stopped and started anew). Runs in the dying worker; must not
    /// wait for anything that [`TaskSlot::stop`]'s caller may hold.
    fn killed(&self);
}

/// The worker of a device: empty, or a `vhost_task`.
///
/// # Invariants
///
/// `task` is null or a `vhost_task` created by [`TaskSlot::start`] with a
/// pointer to the [`TaskHandler`] that contains the slot, and started; it
/// is stopped (`vhost_task_stop()`, which frees it) only after it was
/// swapped out of `task` and an RCU grace period passed, so that
/// [`TaskSlot::wake`] never uses a freed task.
pub struct TaskSlot {
    task: AtomicPtr<bindings::vhost_task>,
    /// Woken since the worker last looked.
    pending: AtomicBool,
    /// How long the worker polls for a wake-up after a run (0: never).
    poll_ns: AtomicU64,
    /// When the worker's last run ended (`ktime_get_ns()`).
    ran_at: AtomicU64,
    /// The KCOV common handle of the task that started the worker: each
    /// run's coverage goes to its collector (the fuzzer's; see
    /// [`crate::kcov`]).
    kcov: AtomicU64,
}

// SAFETY: the slot is used through atomics, RCU and the `vhost_task`
// functions, which may be called from any thread.
unsafe impl Sync for TaskSlot {}
// SAFETY: as above.
unsafe impl Send for TaskSlot {}

impl Default for TaskSlot {
    fn default() -> Self {
        Self::new()
    }
}

impl TaskSlot {
    /// An empty slot.
    pub const fn new() -> Self {
        Self {
            task: AtomicPtr::new(ptr::null_mut()),
            pending: AtomicBool::new(false),
            poll_ns: AtomicU64::new(0),
            ran_at: AtomicU64::new(0),
            kcov: AtomicU64::new(0),
        }
    }

    /// Makes the worker poll for up to `ns` nanoseconds for the next
    /// wake-up after each run before it sleeps (0, the default: it sleeps
    /// at once). Takes effect at the next run; any context.
    pub fn set_poll_ns(&self, ns: u64) {
        self.poll_ns.store(ns, Ordering::Relaxed);
    }

    /// Whether a worker was started and not stopped (it may have been
    /// killed meanwhile).
    pub fn is_started(&self) -> bool {
        !self.task.load(Ordering::Acquire).is_null()
    }

    /// Starts a worker for `handler`, a thread of the calling process named
    /// `name`, unless one is already there; it runs once at once. Fails
    /// with `EINVAL` from a kernel thread (a worker needs a user process)
    /// and as `vhost_task_create()` fails (`ENOMEM`, `EAGAIN` at the
    /// process's thread limits). May sleep.
    ///
    /// # Safety
    ///
    /// `handler` must be the object whose [`TaskHandler::task_slot`] is
    /// `self`, pinned, and must call [`TaskSlot::stop`] before it is
    /// dropped; `start` and `stop` must not run concurrently on one slot
    /// (the caller serialises them, as a device's start/reset are).
    pub unsafe fn start<T: TaskHandler>(&self, handler: &T, name: &CStr) -> Result {
        if self.is_started() {
            return Ok(());
        }
        // SAFETY: inspecting the current task.
        if unsafe { bindings::vhost_mdev_helper_current_is_kthread() }
            || unsafe { bindings::vhost_mdev_helper_current_mm() }.is_null()
        {
            return Err(EINVAL);
        }
        let data = ptr::from_ref(handler).cast_mut().cast::<c_void>();
        // SAFETY: `data` stays valid until `stop` (the caller's contract),
        // which waits for the worker to be gone; `name` is copied by
        // `copy_process()`.
        let t = unsafe {
            bindings::vhost_task_create(
                Some(task_fn::<T>),
                Some(task_killed::<T>),
                data,
                name.as_char_ptr(),
            )
        };
        // SAFETY: `t` is a pointer or an `ERR_PTR`.
        if unsafe { bindings::vhost_mdev_helper_is_err(t.cast()) } {
            // SAFETY: as above.
            let e = unsafe { bindings::vhost_mdev_helper_ptr_err(t.cast()) };
            return Err(Error::from_errno(e as i32));
        }
        self.kcov
            .store(kcov::Handle::current().to_raw(), Ordering::Relaxed);
        self.pending.store(true, Ordering::Release);
        self.task.store(t, Ordering::Release);
        // SAFETY: `t` was just created and is started once.
        unsafe { bindings::vhost_task_start(t) };
        Ok(())
    }

    /// Makes the worker call [`TaskHandler::run`] (soon, once, however
    /// often it is woken before it looks). A no-op without a worker. Any
    /// context, atomic included.
    pub fn wake(&self) {
        self.pending.store(true, Ordering::Release);
        // SAFETY: an RCU read-side section, ended below.
        unsafe { bindings::vhost_mdev_helper_rcu_read_lock() };
        let t = self.task.load(Ordering::Acquire);
        if !t.is_null() {
            // The `pending` store above is ordered before the wake-up,
            // which the worker sees after it set its state.
            // SAFETY: `t` was in the slot within this read-side section: it
            // is not freed before the section ends (type invariant).
            unsafe { bindings::vhost_task_wake(t) };
        }
        // SAFETY: ends the section begun above.
        unsafe { bindings::vhost_mdev_helper_rcu_read_unlock() };
    }

    /// Stops the worker, waiting until a run in progress has returned and
    /// the thread is gone. A no-op without a worker. May sleep; not from
    /// the worker itself.
    pub fn stop(&self) {
        let t = self.task.swap(ptr::null_mut(), Ordering::AcqRel);
        if t.is_null() {
            return;
        }
        // Wakers that saw `t` are done with it after a grace period.
        // SAFETY: process context (the caller's contract: may sleep).
        unsafe { bindings::synchronize_rcu() };
        // SAFETY: `t` was started by `start` and is stopped once (it is
        // out of the slot); this waits for the worker to exit, or for its
        // SIGKILL handling to finish, and frees `t`.
        unsafe { bindings::vhost_task_stop(t) };
        self.pending.store(false, Ordering::Relaxed);
    }
}

/// The worker's function, called by `vhost_task_fn()` in a loop with the
/// task's state set to `TASK_INTERRUPTIBLE`: returns false to sleep until
/// woken, true to be called again.
///
/// # Safety
///
/// `data` is the handler passed to [`TaskSlot::start`], alive until
/// [`TaskSlot::stop`] returns, which waits for this function.
unsafe extern "C" fn task_fn<T: TaskHandler>(data: *mut c_void) -> bool {
    // SAFETY: see the function's contract.
    let h = unsafe { &*data.cast_const().cast::<T>() };
    let slot = h.task_slot();
    // The swap orders our reads after a waker's `pending` store; a wake-up
    // after it finds us runnable again (the state was set before we were
    // called), so none is lost.
    if !slot.pending.swap(false, Ordering::AcqRel) {
        let poll = slot.poll_ns.load(Ordering::Relaxed);
        if poll == 0 {
            return false;
        }
        // SAFETY: reads the clock, the CPU's run queue length and a flag
        // of the current task.
        let (now, may_poll) = unsafe {
            (
                bindings::vhost_mdev_helper_ktime_get_ns(),
                bindings::vhost_mdev_helper_may_poll(),
            )
        };
        if !may_poll || now.wrapping_sub(slot.ran_at.load(Ordering::Relaxed)) >= poll {
            return false;
        }
        // Polling: stay runnable (a waker then finds us running, and
        // `vhost_task_fn()` calls us again without sleeping).
        // SAFETY: the current task is this worker; `cpu_relax()` is a pause.
        unsafe {
            bindings::vhost_mdev_helper_set_current_running();
            bindings::vhost_mdev_helper_cpu_relax();
        }
        return true;
    }
    // SAFETY: the current task is this worker; it may sleep from now on.
    unsafe { bindings::vhost_mdev_helper_set_current_running() };
    // The run's coverage goes to the starter's KCOV collector, if any (the
    // worker never collects coverage of its own, and runs are not nested).
    let cov = kcov::Section::start(kcov::Handle::from_raw(slot.kcov.load(Ordering::Relaxed)));
    let more = h.run();
    drop(cov);
    if more {
        slot.pending.store(true, Ordering::Release);
    }
    if slot.poll_ns.load(Ordering::Relaxed) != 0 {
        // SAFETY: reads the clock.
        let now = unsafe { bindings::vhost_mdev_helper_ktime_get_ns() };
        slot.ran_at.store(now, Ordering::Relaxed);
    }
    // `vhost_task_fn()` does not yield between runs: on a kernel without
    // preemption we must.
    // SAFETY: process context, no lock held.
    unsafe { bindings::vhost_mdev_helper_cond_resched() };
    true
}

/// The worker's SIGKILL handler.
///
/// # Safety
///
/// As for [`task_fn`].
unsafe extern "C" fn task_killed<T: TaskHandler>(data: *mut c_void) {
    // SAFETY: see the function's contract.
    let h = unsafe { &*data.cast_const().cast::<T>() };
    h.killed();
}
