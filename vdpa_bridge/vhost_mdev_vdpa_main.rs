// SPDX-License-Identifier: GPL-2.0

//! vhost-mdev vDPA bridge: a vDPA bus driver that makes the device it binds
//! a vhost-mdev parent with one instance.
//!
//! Any device of the vDPA bus (`vdpa_sim_net`, VDUSE, hardware) bound to
//! `vhost_mdev_vdpa` (`driver_override`, see `Documentation/vdpa-bridge.rst`)
//! gets a parent `vhost_mdev_vdpa-<name>` with one type, `bridge`, of one
//! instance; the instance's device ops go straight to the device's
//! `vdpa_config_ops`, as `drivers/vhost/vdpa.c` does for its ioctls.
//!
//! DMA, first cut: VA mode only. The driver's memory table
//! (`VHOST_SET_MEM_TABLE`) gives IOVA -> user address ranges of the
//! process that opened the instance; the bridge binds that address space to
//! the device (`bind_mm`) and hands it the table (`set_map`, every address
//! space of the device). Nothing is pinned. Until a table arrives, and
//! after close, every address space of the device holds an empty table, so
//! the device reaches no memory (`vdpa_sim` starts with an identity map,
//! and `reset_map` would bring it back: the bridge never calls it).

use kernel::prelude::*;
use kernel::str::CString;
use kernel::sync::Mutex;
use kernel::{c_str, fmt, new_mutex};

include!("../rust/parent_modules.rs");

#[path = "../rust/vdpa.rs"]
pub mod vdpa;

use errno::eopnotsupp;
use mm::MmGrab;
use vdpa::status::{DRIVER_OK, FEATURES_OK};
use vhost_mdev::{DeviceHandle, MemRegion, ParentOn, Registration, TypeInfo};
use virtio::VIRTIO_F_RING_PACKED;

module! {
    type: VhostMdevVdpa,
    name: "vhost_mdev_vdpa",
    author: "The vhost-mdev developers",
    description: "vhost-mdev vDPA bridge: a vDPA device as a vhost-mdev instance",
    license: "GPL",
}

/// Most queues the core carries.
const MAX_VQS: u32 = 1024;
/// Most regions of a memory table (vhost's `max_mem_regions` default is
/// 64; QEMU needs a few).
const MAX_REGIONS: usize = 509;

/// The interrupt callback of one queue: reaches the core's upcall, which
/// may be called from any context (hard IRQ handlers included).
///
/// # Invariants
///
/// `handle` points to the [`DeviceHandle`] of the instance that owns this
/// callback, which outlives every call (the instance resets the device and
/// removes its callbacks before it frees the handle).
struct VqCb {
    handle: *const DeviceHandle,
    idx: u16,
}

// SAFETY: `DeviceHandle` is `Sync` and the pointer is only read.
unsafe impl Send for VqCb {}
// SAFETY: as above.
unsafe impl Sync for VqCb {}

impl vdpa::Callback for VqCb {
    fn call(&self) {
        // SAFETY: the handle outlives every call (type invariant).
        unsafe { &*self.handle }.vq_interrupt(self.idx);
    }
}

/// What the instance changes as the driver goes, under its lock.
struct State {
    /// The driver's features (for the ring layout of the queue state).
    features: u64,
    /// DRIVER_OK was written to the device since the last reset.
    started: bool,
    /// Queues the driver enabled: made ready on the device at DRIVER_OK,
    /// once the memory table is in place (`vdpa_sim` chooses between
    /// virtual and physical addresses when a queue becomes ready).
    ready: KVec<bool>,
    /// The opener's address space, bound to the device (VA mode) from the
    /// first memory table to close.
    mm: Option<MmGrab>,
    /// The table the device holds (in every address space), kept to go
    /// back to when a new one fails.
    table: Option<vdpa::Iotlb>,
}

/// The instance: the bound vDPA device as a vhost-mdev device.
#[pin_data(PinnedDrop)]
struct VdpaDev {
    vdpa: vdpa::DeviceRef,
    /// Boxed: the queue callbacks point to it.
    handle: KBox<DeviceHandle>,
    cbs: KVec<VqCb>,
    nvqs: u16,
    #[pin]
    state: Mutex<State>,
}

impl VdpaDev {
    /// Removes every callback of the device. After a reset (the device is
    /// quiet), so that none runs afterwards.
    fn clear_cbs(&self) {
        for idx in 0..self.nvqs {
            // SAFETY: removing a callback.
            unsafe { self.vdpa.set_vq_cb::<VqCb>(idx, None) };
        }
    }

    /// Empty tables in every address space, and the address space unbound:
    /// the device reaches no memory any more.
    fn unmap_all(&self, s: &mut State) {
        for asid in 0..self.vdpa.nas() {
            if let Err(e) = self.vdpa.clear_map(asid) {
                pr_err!(
                    "{}: could not clear address space {}: {:?}\n",
                    self.vdpa.name(),
                    asid,
                    e
                );
            }
        }
        s.table = None;
        if s.mm.take().is_some() {
            self.vdpa.unbind_mm();
        }
    }

    /// Stops the device and forgets the queue state; with `close`, also
    /// every translation.
    fn stop(&self, s: &mut State, close: bool) {
        if let Err(e) = self.vdpa.reset() {
            pr_err!("{}: reset failed: {:?}\n", self.vdpa.name(), e);
        }
        self.clear_cbs();
        s.started = false;
        s.features = 0;
        for r in s.ready.iter_mut() {
            *r = false;
        }
        if close {
            self.unmap_all(s);
        }
    }

    /// Gives `iotlb` to every address space of the device.
    fn map_all(&self, iotlb: &vdpa::Iotlb) -> Result {
        for asid in 0..self.vdpa.nas() {
            // SAFETY: a table of user addresses of the bound address space
            // (VA mode, `set_mem_table`); the device reaches them only in
            // that address space.
            unsafe { self.vdpa.set_map(asid, iotlb)? };
        }
        Ok(())
    }

    fn packed(s: &State) -> bool {
        s.features & VIRTIO_F_RING_PACKED != 0
    }
}

#[pinned_drop]
impl PinnedDrop for VdpaDev {
    fn drop(self: Pin<&mut Self>) {
        // The core resets before it destroys; this makes sure nothing of
        // the instance stays with the device (callbacks, tables, the mm).
        let mut s = self.state.lock();
        self.stop(&mut s, true);
    }
}

/// Checks a memory table and builds its IOVA -> user address IOTLB.
fn va_iotlb(regions: &[MemRegion]) -> Result<vdpa::Iotlb> {
    if regions.len() > MAX_REGIONS {
        return Err(E2BIG);
    }
    let mut ranges = KVec::with_capacity(regions.len(), GFP_KERNEL)?;
    for r in regions {
        if r.size == 0 {
            return Err(EINVAL);
        }
        let last = r.guest_phys_addr.checked_add(r.size - 1).ok_or(EINVAL)?;
        r.userspace_addr.checked_add(r.size - 1).ok_or(EINVAL)?;
        for &(s, l) in ranges.iter() {
            if r.guest_phys_addr <= l && s <= last {
                return Err(EINVAL);
            }
        }
        ranges.push((r.guest_phys_addr, last), GFP_KERNEL)?;
    }
    // At most MAX_REGIONS ranges (checked above); 1 for an empty table.
    let mut iotlb = vdpa::Iotlb::new(regions.len().max(1) as u32)?;
    for r in regions {
        iotlb.add_range(
            r.guest_phys_addr,
            r.guest_phys_addr + (r.size - 1),
            r.userspace_addr,
            vdpa::Perm::ReadWrite,
        )?;
    }
    Ok(iotlb)
}

#[vtable]
impl vhost_mdev::Device for VdpaDev {
    fn device_id(&self) -> u32 {
        self.vdpa.device_id()
    }

    fn vendor_id(&self) -> u32 {
        self.vdpa.vendor_id()
    }

    fn device_features(&self) -> u64 {
        self.vdpa.device_features()
    }

    fn set_driver_features(&self, features: u64) -> Result {
        let mut s = self.state.lock();
        self.vdpa.set_features(features)?;
        s.features = features;
        Ok(())
    }

    fn config_size(&self) -> u32 {
        u32::try_from(self.vdpa.config_size()).unwrap_or(0)
    }

    fn get_config(&self, offset: u32, buf: &mut [u8]) {
        self.vdpa.get_config(offset, buf)
    }

    fn set_config(&self, offset: u32, data: &[u8]) {
        self.vdpa.set_config(offset, data)
    }

    fn vq_count(&self) -> u32 {
        u32::from(self.nvqs)
    }

    fn vq_num_max(&self) -> u16 {
        self.vdpa.vq_num_max()
    }

    fn set_vq_num(&self, idx: u16, num: u32) {
        self.vdpa.set_vq_num(idx, num)
    }

    fn set_vq_address(&self, idx: u16, desc: u64, driver: u64, device: u64) {
        if let Err(e) = self.vdpa.set_vq_address(idx, desc, driver, device) {
            pr_warn!(
                "{}: queue {}: the device refused the ring addresses: {:?}\n",
                self.vdpa.name(),
                idx,
                e
            );
        }
    }

    fn set_vq_ready(&self, idx: u16, ready: bool) {
        let mut s = self.state.lock();
        if let Some(r) = s.ready.get_mut(usize::from(idx)) {
            *r = ready;
        }
        // Before DRIVER_OK, enabling waits for it (see `State::ready`).
        if !ready || s.started {
            self.vdpa.set_vq_ready(idx, ready);
        }
    }

    fn set_vq_base(&self, idx: u16, base: u32) {
        let packed = Self::packed(&self.state.lock());
        if let Err(e) = self.vdpa.set_vq_base(idx, base, packed) {
            pr_warn!(
                "{}: queue {}: the device refused the base: {:?}\n",
                self.vdpa.name(),
                idx,
                e
            );
        }
    }

    fn get_vq_base(&self, idx: u16) -> u32 {
        let packed = Self::packed(&self.state.lock());
        self.vdpa.get_vq_base(idx, packed).unwrap_or(0)
    }

    fn kick(&self, idx: u16) {
        self.vdpa.kick_vq(idx)
    }

    fn set_status(&self, status: u8) -> Result {
        let mut s = self.state.lock();
        let starting = status & DRIVER_OK != 0 && !s.started;
        if starting {
            for (i, cb) in self.cbs.iter().enumerate() {
                // SAFETY: `cb` lives as long as the instance, which resets
                // the device and removes the callbacks before it goes.
                unsafe { self.vdpa.set_vq_cb(i as u16, Some(cb)) };
            }
            for i in 0..self.nvqs {
                if s.ready.get(usize::from(i)).copied().unwrap_or(false) {
                    self.vdpa.set_vq_ready(i, true);
                }
            }
        }
        self.vdpa.set_status(status);
        let got = self.vdpa.status();
        // A device that refuses the features leaves FEATURES_OK clear.
        if status & FEATURES_OK != 0 && got & FEATURES_OK == 0 {
            return Err(EINVAL);
        }
        if starting {
            if got & DRIVER_OK == 0 {
                return Err(EIO);
            }
            s.started = true;
        }
        Ok(())
    }

    fn start(&self) -> Result {
        // DRIVER_OK went to the device with `set_status`.
        Ok(())
    }

    fn reset(&self) {
        let mut s = self.state.lock();
        // Closed (or closing): the translations go too.
        let close = !self.handle.is_open();
        self.stop(&mut s, close);
    }

    fn suspend(&self) -> Result {
        self.vdpa.suspend()
    }

    fn resume(&self) -> Result {
        self.vdpa.resume()
    }

    fn set_mem_table(&self, regions: &[MemRegion]) -> Result {
        let r = self.mem_table(regions);
        if let Err(e) = r {
            pr_warn!("{}: memory table refused: {:?}\n", self.vdpa.name(), e);
        }
        r
    }
}

impl VdpaDev {
    /// [`vhost_mdev::Device::set_mem_table`], VA mode.
    fn mem_table(&self, regions: &[MemRegion]) -> Result {
        // VA mode only in this version (PA mode, for devices that
        // translate to physical addresses, is to come).
        if DmaMode::of(&self.vdpa) != DmaMode::Va {
            return Err(eopnotsupp());
        }
        let iotlb = va_iotlb(regions)?;
        let mut s = self.state.lock();
        // Started with no address space bound, the device reads its
        // tables as physical addresses: a table now would be misread.
        if s.started && s.mm.is_none() {
            return Err(EBUSY);
        }
        if s.mm.is_none() {
            let mm = self.handle.opener_mm().ok_or(ESRCH)?;
            // SAFETY: `mm` is kept in the state until `unmap_all` unbinds
            // it (close, destroy).
            unsafe { self.vdpa.bind_mm(&mm)? };
            s.mm = Some(mm);
        }
        if let Err(e) = self.map_all(&iotlb) {
            // Back to the previous table (an error keeps it), else none.
            let restored = match &s.table {
                Some(old) => self.map_all(old),
                None => Err(e),
            };
            if restored.is_err() {
                for a in 0..self.vdpa.nas() {
                    let _ = self.vdpa.clear_map(a);
                }
                s.table = None;
            }
            return Err(e);
        }
        s.table = Some(iotlb);
        Ok(())
    }
}

/// The parent's context: the device it serves.
struct Ctx {
    vdpa: vdpa::DeviceRef,
}

/// The parent of one vDPA device.
struct BridgeParent;

impl ParentOn for BridgeParent {
    type Device = VdpaDev;
    type Context = Ctx;

    fn create(ctx: &Ctx, handle: DeviceHandle, _type_index: u32) -> Result<Pin<KBox<VdpaDev>>> {
        // SAFETY: the instance is destroyed before the registration that
        // holds `ctx` is dropped, which the device's `remove` does.
        let vdpa = unsafe { vdpa::DeviceRef::new(&ctx.vdpa) };
        let nvqs = u16::try_from(vdpa.nvqs()).map_err(|_| EINVAL)?;
        // Whatever a previous user left: empty tables.
        for asid in 0..vdpa.nas() {
            vdpa.clear_map(asid)?;
        }
        let handle = KBox::new(handle, GFP_KERNEL)?;
        let mut cbs = KVec::with_capacity(usize::from(nvqs), GFP_KERNEL)?;
        for idx in 0..nvqs {
            // INVARIANT: the handle is boxed and outlives the callbacks
            // (`PinnedDrop` resets and clears them first).
            cbs.push(
                VqCb {
                    handle: &*handle,
                    idx,
                },
                GFP_KERNEL,
            )?;
        }
        let ready = KVec::from_elem(false, usize::from(nvqs), GFP_KERNEL)?;
        KBox::pin_init(
            pin_init!(VdpaDev {
                vdpa,
                handle,
                cbs,
                nvqs,
                state <- new_mutex!(State {
                    features: 0,
                    started: false,
                    ready,
                    mm: None,
                    table: None,
                }, "vhost_mdev_vdpa_state"),
            }),
            GFP_KERNEL,
        )
    }
}

/// How the bridge gives a device the memory of the instance's opener.
#[derive(Clone, Copy, PartialEq, Eq)]
enum DmaMode {
    /// Tables of user addresses in the opener's address space (`use_va`
    /// and `bind_mm`).
    Va,
    /// None in this version: the device works on physical addresses (PA
    /// mode is to come); its memory tables are refused.
    None,
}

impl DmaMode {
    fn of(dev: &vdpa::Device) -> Self {
        if dev.use_va() && dev.has_bind_mm() {
            DmaMode::Va
        } else {
            DmaMode::None
        }
    }
}

/// What the driver keeps for a bound device: its parent registration.
struct Bound {
    _reg: Registration<BridgeParent>,
    mode: DmaMode,
}

/// `dma_mode` of a bound vDPA device: `va`, or `none` (PA mode is to
/// come). Read-only; shown while the device is bound to the bridge.
struct DmaModeAttr;

#[vtable]
impl sysfs::Attribute<vdpa::Bound<Bridge>> for DmaModeAttr {
    const NAME: &'static CStr = c_str!("dma_mode");

    fn show(b: &Bound) -> Result<CString> {
        let mode = match b.mode {
            DmaMode::Va => "va",
            DmaMode::None => "none",
        };
        CString::try_from_fmt(fmt!("{}\n", mode))
    }
}

sysfs::attribute_groups! {
    static GROUPS: vdpa::Bound<Bridge> = [(None, [DmaModeAttr])];
}

/// The vDPA bus driver.
struct Bridge;

#[vtable]
impl vdpa::Driver for Bridge {
    type Data = Bound;

    fn probe(dev: &vdpa::Device) -> Result<KBox<Bound>> {
        if !dev.has_set_map() {
            pr_warn!(
                "{}: not bridged: the device takes no whole IOTLB (set_map)\n",
                dev.name()
            );
            return Err(ENODEV);
        }
        let nvqs = dev.nvqs();
        if nvqs == 0 || nvqs > MAX_VQS {
            pr_warn!(
                "{}: not bridged: {} queues (the core carries 1 to {})\n",
                dev.name(),
                nvqs,
                MAX_VQS
            );
            return Err(EINVAL);
        }
        // The device reaches no memory until an opener's table arrives.
        for asid in 0..dev.nas() {
            dev.clear_map(asid)?;
        }
        let name = CString::try_from_fmt(fmt!("vhost_mdev_vdpa-{}", dev.name()))?;
        // SAFETY: the registration, which owns the context, is dropped in
        // `remove` (dropping `Bound`).
        let ctx = Ctx {
            vdpa: unsafe { vdpa::DeviceRef::new(dev) },
        };
        let types = [TypeInfo {
            sysfs_name: c_str!("bridge"),
            pretty_name: c_str!("vDPA bridge"),
            description: c_str!("the vDPA device as a vhost-mdev instance (VA mode)"),
            max_instances: 1,
        }];
        let reg = Registration::<BridgeParent>::new_on_with(
            dev.as_device(),
            name,
            ctx,
            &THIS_MODULE,
            &types,
        )?;
        let mode = DmaMode::of(dev);
        pr_info!(
            "{}: bridged as vhost_mdev_vdpa-{}-bridge ({} queues, {} address spaces, DMA {})\n",
            dev.name(),
            dev.name(),
            nvqs,
            dev.nas(),
            if mode == DmaMode::Va {
                "VA mode"
            } else {
                "none: PA mode is to come"
            }
        );
        Ok(KBox::new(Bound { _reg: reg, mode }, GFP_KERNEL)?)
    }
}

struct VhostMdevVdpa {
    _drv: vdpa::Registration<Bridge>,
}

impl kernel::Module for VhostMdevVdpa {
    fn init(module: &'static ThisModule) -> Result<Self> {
        Ok(VhostMdevVdpa {
            _drv: vdpa::Registration::new(c_str!("vhost_mdev_vdpa"), module, Some(&GROUPS))?,
        })
    }
}
