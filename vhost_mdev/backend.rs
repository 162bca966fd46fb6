// SPDX-License-Identifier: GPL-2.0

//! The parent's device ops, as the protocol model's [`Backend`].
//!
//! C header: [`include/linux/vhost_mdev.h`](../include/linux/vhost_mdev.h).

use crate::bindings;
use crate::proto::{self, Backend, MemTable};
use core::sync::atomic::{AtomicU8, Ordering};
use kernel::ffi::c_void;
use kernel::prelude::*;

// The core checks memory tables against the limit the C header promises.
const _: () = assert!(proto::MAX_MEM_REGIONS == bindings::VHOST_MDEV_MAX_MEM_REGIONS as usize);

/// A parent's instance behind its ops table.
///
/// # Invariants
///
/// `priv_` is a live instance of the parent whose ops table is `ops`, for
/// `'a`; registration checked that every op the core requires is present.
pub(crate) struct ParentBackend<'a> {
    ops: &'a bindings::vhost_mdev_device_ops,
    priv_: *mut c_void,
    nvqs: u32,
    /// Status bits set by the device (NEEDS_RESET), cleared by a reset.
    status: &'a AtomicU8,
}

impl<'a> ParentBackend<'a> {
    /// The backend of the parent's instance `priv_`, with `nvqs` queues.
    ///
    /// # Safety
    ///
    /// `priv_` must be a live instance of the parent whose ops table is
    /// `ops`, for `'a`, and `ops` must have passed the registration check.
    pub(crate) unsafe fn new(
        ops: &'a bindings::vhost_mdev_device_ops,
        priv_: *mut c_void,
        nvqs: u32,
        status: &'a AtomicU8,
    ) -> Self {
        // INVARIANT: guaranteed by the caller.
        Self {
            ops,
            priv_,
            nvqs,
            status,
        }
    }
}

impl ParentBackend<'_> {
    /// The doorbell page of queue `idx` (below the queue count), if the
    /// parent offers one that can be mapped: a page-aligned area of whole
    /// pages, the doorbell at its start. May be called without the state
    /// mutex (from `mmap`, under the opener's mmap lock).
    pub(crate) fn doorbell(&self, idx: u16) -> Option<u64> {
        let f = self.ops.get_vq_notification?;
        let mut area = bindings::vhost_mdev_vq_notify_area::default();
        // SAFETY: `priv_` is the parent's live instance (type invariant);
        // `area` is writable for the call; `idx` is checked by the caller.
        let r = unsafe { f(self.priv_, idx, &mut area) };
        let page = kernel::page::PAGE_SIZE as u64;
        let addr = area.addr as u64;
        (r == 0 && addr % page == 0 && area.size >= page && area.size % page == 0).then_some(addr)
    }
}

/// Calls a parent op that registration checked to be present.
macro_rules! call {
    ($self:expr, $op:ident $(, $arg:expr)*) => {{
        match $self.ops.$op {
            // SAFETY: `priv_` is the parent's live instance (type invariant);
            // the model checked every argument against the parent's limits,
            // as the C ABI promises.
            Some(f) => unsafe { f($self.priv_ $(, $arg)*) },
            None => Default::default(),
        }
    }};
}

/// Converts a parent op's return value (0 or a negative errno).
fn status(r: i32) -> Result<(), proto::Errno> {
    if r < 0 {
        Err(-r)
    } else {
        Ok(())
    }
}

impl Backend for ParentBackend<'_> {
    fn device_id(&self) -> u32 {
        call!(self, get_device_id)
    }
    fn device_features(&self) -> u64 {
        call!(self, get_device_features)
    }
    fn set_driver_features(&mut self, features: u64) -> bool {
        let r: i32 = call!(self, set_driver_features, features);
        r == 0
    }
    fn config_size(&self) -> u32 {
        call!(self, get_config_size)
    }
    fn get_config(&self, off: u32, buf: &mut [u8]) {
        let len = buf.len() as u32;
        call!(self, get_config, off, buf.as_mut_ptr().cast(), len)
    }
    fn set_config(&mut self, off: u32, data: &[u8]) {
        let len = data.len() as u32;
        call!(self, set_config, off, data.as_ptr().cast(), len)
    }
    fn vq_count(&self) -> u32 {
        self.nvqs
    }
    fn vq_num_max(&self) -> u16 {
        call!(self, get_vq_num_max)
    }
    fn set_vq_num(&mut self, idx: u16, num: u32) {
        call!(self, set_vq_num, idx, num)
    }
    fn set_vq_address(&mut self, idx: u16, desc: u64, driver: u64, device: u64) {
        call!(self, set_vq_address, idx, desc, driver, device)
    }
    fn set_vq_ready(&mut self, idx: u16, ready: bool) {
        call!(self, set_vq_ready, idx, ready)
    }
    fn set_vq_base(&mut self, idx: u16, base: u32) {
        call!(self, set_vq_base, idx, base)
    }
    fn get_vq_base(&self, idx: u16) -> u32 {
        // With split rings the model drops bits 16-31 (the header's
        // promise to parents).
        call!(self, get_vq_base, idx)
    }
    fn set_mem_table(&mut self, table: &MemTable<'_>) -> Result<(), proto::Errno> {
        // A parent without the op reaches guest memory through the core:
        // the table is accepted and ignored (QEMU sends it to every device).
        if self.ops.set_mem_table.is_none() {
            return Ok(());
        }
        // At most MAX_MEM_REGIONS (checked by the model).
        let mut regions =
            KVec::with_capacity(table.len(), GFP_KERNEL).map_err(|_| proto::errno::ENOMEM)?;
        for r in table.regions() {
            regions
                .push(
                    bindings::vhost_mdev_mem_region {
                        guest_phys_addr: r.guest_phys_addr,
                        size: r.memory_size,
                        userspace_addr: r.userspace_addr,
                    },
                    GFP_KERNEL,
                )
                .map_err(|_| proto::errno::ENOMEM)?;
        }
        let n = regions.len() as u32;
        status(call!(self, set_mem_table, regions.as_ptr(), n))
    }
    fn set_status(&mut self, new: u8) -> Result<(), proto::Errno> {
        if self.ops.set_status.is_none() {
            return Ok(());
        }
        status(call!(self, set_status, new))
    }
    fn start(&mut self) -> Result<(), proto::Errno> {
        status(call!(self, start))
    }
    fn reset(&mut self) {
        call!(self, reset);
        self.status.store(0, Ordering::Release);
    }
    fn suspend(&mut self) -> Result<(), proto::Errno> {
        if self.ops.suspend.is_none() {
            return Err(proto::errno::EOPNOTSUPP);
        }
        status(call!(self, suspend))
    }
    fn resume(&mut self) -> Result<(), proto::Errno> {
        if self.ops.resume.is_none() {
            return Err(proto::errno::EOPNOTSUPP);
        }
        status(call!(self, resume))
    }
    fn device_status(&self) -> u8 {
        self.status.load(Ordering::Acquire)
    }
}
