// SPDX-License-Identifier: GPL-2.0

//! Remote KCOV coverage of a device's worker, for the coverage-guided
//! fuzzer (`tools/fuzz`).
//!
//! C header: [`include/linux/kcov.h`](srctree/include/linux/kcov.h).
//!
//! KCOV collects the coverage of a task that enabled it on itself. A
//! device's worker is another task: a process that collects its coverage
//! calls `KCOV_REMOTE_ENABLE` with a common handle, which the kernel keeps
//! in the task (and which the task's threads inherit). The task that starts
//! a worker records it ([`Handle::current`]); the worker wraps each run in a
//! [`Section`] with it, and the run's coverage lands in that process's
//! buffer, as vhost's workers do (`drivers/vhost/vhost.c`).
//!
//! Without `CONFIG_KCOV` a handle is always [`Handle::NONE`] and a section
//! does nothing: the calls compile out.

#[cfg(CONFIG_KCOV)]
use crate::bindings;
use core::marker::PhantomData;

/// The common KCOV handle of a task that collects remote coverage (or
/// none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Handle(u64);

impl Handle {
    /// No collector: a [`Section`] with it does nothing.
    pub const NONE: Self = Self(0);

    /// The common handle of the current task: the one its process passed
    /// to `KCOV_REMOTE_ENABLE`, or [`Handle::NONE`] (no collector, not in
    /// a task, or a kernel without KCOV). Any context.
    pub fn current() -> Self {
        #[cfg(CONFIG_KCOV)]
        {
            // SAFETY: reads a field of the current task; returns 0 outside
            // a task.
            Self(unsafe { bindings::vhost_mdev_helper_kcov_common_handle() })
        }
        #[cfg(not(CONFIG_KCOV))]
        {
            Self::NONE
        }
    }

    /// The handle as a number, to keep it in an atomic.
    pub fn to_raw(self) -> u64 {
        self.0
    }

    /// A handle that [`Handle::to_raw`] returned. A number that is not a
    /// common handle (bits above the low 32 set) is [`Handle::NONE`].
    pub fn from_raw(raw: u64) -> Self {
        if raw >> 32 == 0 {
            Self(raw)
        } else {
            Self::NONE
        }
    }
}

/// A remote coverage section: the current task's coverage, from
/// [`Section::start`] until the section is dropped, goes to the collector
/// of a handle. Ends on the task that started it (not `Send`).
pub struct Section {
    #[cfg(CONFIG_KCOV)]
    active: bool,
    _not_send: PhantomData<*mut ()>,
}

impl Section {
    /// Starts a section for `handle` (nothing for [`Handle::NONE`]).
    ///
    /// The current task must be a worker (a task that never enables KCOV
    /// on itself: KCOV warns otherwise) in process context, and not be in
    /// another section.
    pub fn start(handle: Handle) -> Self {
        #[cfg(CONFIG_KCOV)]
        {
            let active = handle != Handle::NONE;
            if active {
                // `handle` is a common handle (subsystem 0, the instance in
                // the low 32 bits: `from_raw` makes sure), which KCOV
                // accepts (an unknown one starts nothing). The section ends
                // in `drop`, on this task (`Section` is not `Send`).
                // SAFETY: a valid handle (above); the current task is a
                // worker in process context, in no section (our contract).
                unsafe { bindings::vhost_mdev_helper_kcov_remote_start_common(handle.0) };
            }
            Self {
                active,
                _not_send: PhantomData,
            }
        }
        #[cfg(not(CONFIG_KCOV))]
        {
            let _ = handle;
            Self {
                _not_send: PhantomData,
            }
        }
    }
}

impl Drop for Section {
    fn drop(&mut self) {
        #[cfg(CONFIG_KCOV)]
        if self.active {
            // SAFETY: ends the section `start` began on this task; a no-op
            // if KCOV found no collector for the handle (it started none).
            unsafe { bindings::vhost_mdev_helper_kcov_remote_stop() };
        }
    }
}
