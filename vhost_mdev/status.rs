// SPDX-License-Identifier: GPL-2.0

//! The core's read-only sysfs attributes of every instance, beside the
//! parent's: what a management tool needs without opening the device.
//!
//! - `state`: `closed`, `open`, or `removing` (open, and a removal waits
//!   for its user to close it);
//! - `holder`: the process id (in the initial PID namespace) of the
//!   process that opened the device, or an empty line while it is closed;
//! - `backend`: how the open device reaches guest memory, `type1` (a VFIO
//!   container) or `iommufd`, or an empty line while it is closed;
//! - `remove_requested`: how many times a pending removal has signalled
//!   the request IRQ (`0`: no removal is waiting; VFIO signals it again
//!   every 10 seconds).

use crate::instance::{InstanceState, Vdev};
use crate::sysfs;
use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use kernel::c_str;
use kernel::fmt;
use kernel::prelude::*;
use kernel::str::CString;

/// The back end of an open device, as [`Status::backend`] holds it.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Backend {
    /// Closed.
    None = 0,
    /// A VFIO type1 container (or the legacy group path).
    Type1 = 1,
    /// iommufd.
    Iommufd = 2,
}

/// What the attributes show: set at open, close and removal requests.
pub(crate) struct Status {
    /// The opener's process id while open, else 0.
    holder: AtomicU32,
    /// A [`Backend`].
    backend: AtomicU8,
    /// The request IRQs a pending removal has signalled.
    requests: AtomicU32,
}

impl Status {
    pub(crate) const fn new() -> Self {
        Self {
            holder: AtomicU32::new(0),
            backend: AtomicU8::new(Backend::None as u8),
            requests: AtomicU32::new(0),
        }
    }

    /// The device was opened by the current process, on `backend`.
    pub(crate) fn opened(&self, backend: Backend) {
        let pid = kernel::current!().group_leader().pid();
        self.holder
            .store(u32::try_from(pid).unwrap_or(0), Ordering::Relaxed);
        self.backend.store(backend as u8, Ordering::Release);
    }

    /// The device was closed.
    pub(crate) fn closed(&self) {
        self.backend.store(Backend::None as u8, Ordering::Release);
        self.holder.store(0, Ordering::Relaxed);
    }

    /// A removal signalled the request IRQ for the `count`th time (from 0).
    pub(crate) fn requested(&self, count: u32) {
        self.requests
            .store(count.saturating_add(1), Ordering::Relaxed);
    }

    fn is_open(&self) -> bool {
        self.backend.load(Ordering::Acquire) != Backend::None as u8
    }
}

/// The instances' devices, as the owner of the core's attributes.
pub(crate) struct Core;

/// The state of the instance an attribute is shown on.
fn status(dev: &Vdev) -> &Status {
    let s: &InstanceState = dev.data();
    &s.status
}

/// `state`.
struct State;

#[vtable]
impl sysfs::Attribute<Core> for State {
    const NAME: &'static CStr = c_str!("state");

    fn show(dev: &Vdev) -> Result<CString> {
        let st = status(dev);
        let s = match (st.is_open(), st.requests.load(Ordering::Relaxed)) {
            (false, _) => "closed",
            (true, 0) => "open",
            (true, _) => "removing",
        };
        CString::try_from_fmt(fmt!("{s}\n"))
    }
}

/// `holder`.
struct Holder;

#[vtable]
impl sysfs::Attribute<Core> for Holder {
    const NAME: &'static CStr = c_str!("holder");

    fn show(dev: &Vdev) -> Result<CString> {
        let st = status(dev);
        match st.holder.load(Ordering::Relaxed) {
            pid if pid != 0 && st.is_open() => CString::try_from_fmt(fmt!("{pid}\n")),
            _ => CString::try_from_fmt(fmt!("\n")),
        }
    }
}

/// `backend`.
struct BackendAttr;

#[vtable]
impl sysfs::Attribute<Core> for BackendAttr {
    const NAME: &'static CStr = c_str!("backend");

    fn show(dev: &Vdev) -> Result<CString> {
        let b = status(dev).backend.load(Ordering::Acquire);
        let s = if b == Backend::Type1 as u8 {
            "type1"
        } else if b == Backend::Iommufd as u8 {
            "iommufd"
        } else {
            ""
        };
        CString::try_from_fmt(fmt!("{s}\n"))
    }
}

/// `remove_requested`.
struct RemoveRequested;

#[vtable]
impl sysfs::Attribute<Core> for RemoveRequested {
    const NAME: &'static CStr = c_str!("remove_requested");

    fn show(dev: &Vdev) -> Result<CString> {
        let n = status(dev).requests.load(Ordering::Relaxed);
        CString::try_from_fmt(fmt!("{n}\n"))
    }
}

sysfs::attribute_groups! {
    pub(crate) static GROUPS: Core = [
        (None, [State, Holder, BackendAttr, RemoveRequested]),
    ];
}
