// SPDX-License-Identifier: GPL-2.0

//! vDPA bus drivers, and calls into a bound vDPA device.
//!
//! C headers: [`include/linux/vdpa.h`](srctree/include/linux/vdpa.h),
//! [`include/linux/vhost_iotlb.h`](srctree/include/linux/vhost_iotlb.h).
//!
//! A driver implements [`Driver`] and keeps a [`Registration`] for as long
//! as it should be offered to vDPA devices; the bus then calls
//! [`Driver::probe`] with a [`Device`] for each device it binds, and
//! [`Driver::remove`] when it unbinds it. A bound device's
//! `vdpa_config_ops` are reached through the methods of [`Device`]; DMA
//! translations are handed over as an [`Iotlb`].
//!
//! The shape follows `rust/kernel/block/mq/operations.rs` of 6.12: a
//! `#[vtable]` trait, and a private vtable type whose `unsafe extern "C"`
//! functions are what the C side calls.

use crate::bindings;
use crate::errno::*;
use crate::mm::MmGrab;
use crate::sysfs;
use core::marker::PhantomData;
use core::ptr::NonNull;
use kernel::error::{from_result, to_result, Result};
use kernel::ffi::c_void;
use kernel::prelude::*;
use kernel::str::CStr;
use kernel::types::Opaque;

/// Virtio device status bits (`include/uapi/linux/virtio_config.h`).
pub mod status {
    use crate::bindings;

    /// The driver found the device.
    pub const ACKNOWLEDGE: u8 = bindings::VIRTIO_CONFIG_S_ACKNOWLEDGE as u8;
    /// The driver knows how to drive it.
    pub const DRIVER: u8 = bindings::VIRTIO_CONFIG_S_DRIVER as u8;
    /// Feature negotiation is complete.
    pub const FEATURES_OK: u8 = bindings::VIRTIO_CONFIG_S_FEATURES_OK as u8;
    /// The driver is ready: the device may process its queues.
    pub const DRIVER_OK: u8 = bindings::VIRTIO_CONFIG_S_DRIVER_OK as u8;
    /// The device needs a reset.
    pub const NEEDS_RESET: u8 = bindings::VIRTIO_CONFIG_S_NEEDS_RESET as u8;
}

/// Permissions of an IOTLB range (`VHOST_MAP_*`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    /// The device may read.
    ReadOnly,
    /// The device may write.
    WriteOnly,
    /// The device may read and write.
    ReadWrite,
}

impl Perm {
    fn raw(self) -> u32 {
        match self {
            Perm::ReadOnly => bindings::VHOST_MAP_RO,
            Perm::WriteOnly => bindings::VHOST_MAP_WO,
            Perm::ReadWrite => bindings::VHOST_MAP_RW,
        }
    }
}

/// A `struct vhost_iotlb`: a table of translations, IOVA to a physical or
/// (for a `use_va` device bound to an address space) a user virtual
/// address, that [`Device::set_map`] hands to a device.
///
/// # Invariants
///
/// `ptr` came from `vhost_iotlb_alloc()` and is owned by this object.
pub struct Iotlb {
    ptr: NonNull<bindings::vhost_iotlb>,
}

// SAFETY: a `vhost_iotlb` is plain memory with no tie to a thread; `&mut`
// methods serialise changes.
unsafe impl Send for Iotlb {}
// SAFETY: `&Iotlb` only lets a device copy the table (`set_map`).
unsafe impl Sync for Iotlb {}

impl Iotlb {
    /// An empty table of at most `limit` ranges, 1 or more (the C IOTLB
    /// refuses every range of a table without a limit).
    pub fn new(limit: u32) -> Result<Self> {
        if limit == 0 {
            return Err(EINVAL);
        }
        // SAFETY: plain allocation; flags 0 (no retiring of old entries).
        let p = unsafe { bindings::vhost_iotlb_alloc(limit, 0) };
        // INVARIANT: freshly allocated, ours.
        Ok(Self {
            ptr: NonNull::new(p).ok_or(ENOMEM)?,
        })
    }

    /// Adds `[start, last]` (inclusive, as the C API) translated to `addr`.
    /// Fails with `EINVAL` for `last < start` and `ENOSPC` above the limit.
    pub fn add_range(&mut self, start: u64, last: u64, addr: u64, perm: Perm) -> Result {
        if last < start {
            return Err(EINVAL);
        }
        // SAFETY: `ptr` is ours (type invariant); `&mut self` serialises.
        to_result(unsafe {
            bindings::vhost_iotlb_add_range(self.ptr.as_ptr(), start, last, addr, perm.raw())
        })
    }

    fn as_raw(&self) -> *mut bindings::vhost_iotlb {
        self.ptr.as_ptr()
    }
}

impl Drop for Iotlb {
    fn drop(&mut self) {
        // SAFETY: ours (type invariant); freed once, here.
        unsafe { bindings::vhost_iotlb_free(self.ptr.as_ptr()) };
    }
}

/// Something a device's callback reaches: [`Device::set_vq_cb`] hands the
/// device a pointer to it, and the device calls [`Callback::call`], from
/// any context (a hard IRQ handler for PCI devices, a kernel thread with
/// bottom halves off for `vdpa_sim`).
pub trait Callback: Sync {
    /// The device signals.
    fn call(&self);
}

/// Whether the caller runs in a hard IRQ handler (`in_hardirq()`): where
/// a [`Callback`] of a PCI device's driver is called from.
pub fn in_hardirq() -> bool {
    // SAFETY: reads the preemption count of the current context.
    unsafe { bindings::vhost_mdev_helper_in_hardirq() }
}

/// The `struct vdpa_callback` that calls `cb`, or the empty one that
/// removes a callback.
fn raw_callback<C: Callback>(cb: Option<&C>) -> bindings::vdpa_callback {
    match cb {
        Some(c) => bindings::vdpa_callback {
            callback: Some(callback_thunk::<C>),
            private: core::ptr::from_ref(c).cast_mut().cast(),
            trigger: core::ptr::null_mut(),
        },
        None => bindings::vdpa_callback::default(),
    }
}

/// The `vdpa_callback.callback` of a [`Callback`] `C`.
///
/// # Safety
///
/// `private` must be the `&C` that [`Device::set_vq_cb`] or
/// [`Device::set_config_cb`] installed, still valid (their contract).
unsafe extern "C" fn callback_thunk<C: Callback>(private: *mut c_void) -> bindings::irqreturn_t {
    // SAFETY: see the contract above.
    unsafe { &*private.cast::<C>() }.call();
    bindings::irqreturn_IRQ_HANDLED
}

/// A vDPA device (`struct vdpa_device`) bound to a driver of ours.
///
/// # Invariants
///
/// A `&Device` is only made for a device bound to a [`Driver`] (from its
/// probe to the end of its remove), whose `config` ops table is valid.
#[repr(transparent)]
pub struct Device(Opaque<bindings::vdpa_device>);

impl Device {
    /// The device behind a C pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must be a vDPA device bound to one of our drivers for `'a`.
    unsafe fn from_raw<'a>(ptr: *mut bindings::vdpa_device) -> &'a Self {
        // SAFETY: `Device` is a transparent wrapper; the caller guarantees
        // the lifetime.
        unsafe { &*ptr.cast::<Self>() }
    }

    fn raw(&self) -> *mut bindings::vdpa_device {
        self.0.get()
    }

    fn ops(&self) -> &bindings::vdpa_config_ops {
        // SAFETY: a bound device has a valid, `'static`-like ops table
        // (type invariant), which the bus never changes.
        unsafe { &*(*self.raw()).config }
    }

    /// The embedded `struct device` (to register children on).
    pub fn as_device(&self) -> &kernel::device::Device {
        // SAFETY: the embedded device of a bound device is registered and
        // referenced for as long as `&self` lives (type invariant); the two
        // `struct device` bindings describe the same C type.
        unsafe { kernel::device::Device::as_ref(core::ptr::addr_of_mut!((*self.raw()).dev).cast()) }
    }

    /// The device's name (`vdpa dev add ... name NAME`).
    pub fn name(&self) -> &CStr {
        // SAFETY: a registered device has a name, which lives as long as
        // the device (type invariant).
        unsafe {
            CStr::from_char_ptr(bindings::vhost_mdev_helper_dev_name(core::ptr::addr_of!(
                (*self.raw()).dev
            )))
        }
    }

    /// Number of virtqueues.
    pub fn nvqs(&self) -> u32 {
        // SAFETY: set before the device is registered, never changed.
        unsafe { (*self.raw()).nvqs }
    }

    /// Number of address spaces (ASIDs `0..nas`).
    pub fn nas(&self) -> u32 {
        // SAFETY: as for `nvqs`.
        unsafe { (*self.raw()).nas }
    }

    /// Whether the device translates to user virtual addresses of a bound
    /// address space ([`Device::bind_mm`]) rather than physical addresses.
    pub fn use_va(&self) -> bool {
        // SAFETY: as for `nvqs`.
        unsafe { (*self.raw()).use_va }
    }

    /// Whether the device takes whole tables ([`Device::set_map`]).
    pub fn has_set_map(&self) -> bool {
        self.ops().set_map.is_some()
    }

    /// Whether the device takes translations range by range
    /// ([`Device::dma_map`], [`Device::dma_unmap`]).
    pub fn has_dma_map(&self) -> bool {
        self.ops().dma_map.is_some() && self.ops().dma_unmap.is_some()
    }

    /// Whether the device can work on an address space ([`Device::bind_mm`]).
    pub fn has_bind_mm(&self) -> bool {
        self.ops().bind_mm.is_some() && self.ops().unbind_mm.is_some()
    }

    /// Whether the device can stop and go on ([`Device::suspend`]).
    pub fn has_suspend(&self) -> bool {
        self.ops().suspend.is_some() && self.ops().resume.is_some()
    }

    /// Virtio device id.
    pub fn device_id(&self) -> u32 {
        // SAFETY: a bound device (type invariant), process context.
        self.ops()
            .get_device_id
            .map_or(0, |f| unsafe { f(self.raw()) })
    }

    /// Vendor id.
    pub fn vendor_id(&self) -> u32 {
        // SAFETY: as above.
        self.ops()
            .get_vendor_id
            .map_or(0, |f| unsafe { f(self.raw()) })
    }

    /// Features the device offers.
    pub fn device_features(&self) -> u64 {
        // SAFETY: as above.
        self.ops()
            .get_device_features
            .map_or(0, |f| unsafe { f(self.raw()) })
    }

    /// The driver's features (`vdpa_set_features()`).
    pub fn set_features(&self, features: u64) -> Result {
        // SAFETY: a bound device; the helper takes `cf_lock`.
        to_result(unsafe { bindings::vhost_mdev_helper_vdpa_set_features(self.raw(), features) })
    }

    /// The device status.
    pub fn status(&self) -> u8 {
        // SAFETY: as above.
        self.ops()
            .get_status
            .map_or(0, |f| unsafe { f(self.raw()) })
    }

    /// Writes a non-zero device status (`vdpa_set_status()`); read it back
    /// with [`Device::status`] to see what the device accepted.
    pub fn set_status(&self, status: u8) {
        // SAFETY: a bound device; the function takes `cf_lock`.
        unsafe { bindings::vdpa_set_status(self.raw(), status) }
    }

    /// Resets the device (`vdpa_reset(vdev, 0)`): status 0, queues and
    /// callbacks forgotten, DMA quiet on return; translations are kept.
    pub fn reset(&self) -> Result {
        // SAFETY: a bound device; the helper takes `cf_lock`. Flags 0: no
        // `VDPA_RESET_F_CLEAN_MAP`, which would bring `vdpa_sim`'s identity
        // map back.
        to_result(unsafe { bindings::vhost_mdev_helper_vdpa_reset(self.raw(), 0) })
    }

    /// Size of the config space.
    pub fn config_size(&self) -> usize {
        // SAFETY: as above.
        self.ops()
            .get_config_size
            .map_or(0, |f| unsafe { f(self.raw()) })
    }

    /// Reads the config space (`vdpa_get_config()`, which sets the
    /// features to 0 first if none were set).
    pub fn get_config(&self, offset: u32, buf: &mut [u8]) {
        let Ok(len) = u32::try_from(buf.len()) else {
            return;
        };
        // SAFETY: a bound device; `buf` is valid for `len` writes; the
        // function checks the range against the config size.
        unsafe { bindings::vdpa_get_config(self.raw(), offset, buf.as_mut_ptr().cast(), len) }
    }

    /// Writes the config space (`vdpa_set_config()`).
    pub fn set_config(&self, offset: u32, data: &[u8]) {
        let Ok(len) = u32::try_from(data.len()) else {
            return;
        };
        // SAFETY: a bound device; `data` is valid for `len` reads.
        unsafe { bindings::vdpa_set_config(self.raw(), offset, data.as_ptr().cast(), len) }
    }

    /// Largest ring size.
    pub fn vq_num_max(&self) -> u16 {
        // SAFETY: as above.
        self.ops()
            .get_vq_num_max
            .map_or(0, |f| unsafe { f(self.raw()) })
    }

    /// Whether `idx` names a queue.
    fn vq_ok(&self, idx: u16) -> bool {
        u32::from(idx) < self.nvqs()
    }

    /// Sets the ring size of queue `idx`.
    pub fn set_vq_num(&self, idx: u16, num: u32) {
        if let (true, Some(f)) = (self.vq_ok(idx), self.ops().set_vq_num) {
            // SAFETY: a bound device, a valid queue.
            unsafe { f(self.raw(), idx, num) }
        }
    }

    /// Sets the ring addresses of queue `idx`.
    pub fn set_vq_address(&self, idx: u16, desc: u64, driver: u64, device: u64) -> Result {
        let f = self.ops().set_vq_address.ok_or(eopnotsupp())?;
        if !self.vq_ok(idx) {
            return Err(EINVAL);
        }
        // SAFETY: a bound device, a valid queue.
        to_result(unsafe { f(self.raw(), idx, desc, driver, device) })
    }

    /// Enables or disables queue `idx`.
    pub fn set_vq_ready(&self, idx: u16, ready: bool) {
        if let (true, Some(f)) = (self.vq_ok(idx), self.ops().set_vq_ready) {
            // SAFETY: a bound device, a valid queue.
            unsafe { f(self.raw(), idx, ready) }
        }
    }

    /// Sets where queue `idx` goes on: for a split ring the next available
    /// index in bits 0-15; for a packed ring (`packed`) vhost's encoding,
    /// `last_avail_idx | wrap << 15` in bits 0-15 and `last_used_idx |
    /// wrap << 15` in bits 16-31.
    pub fn set_vq_base(&self, idx: u16, base: u32, packed: bool) -> Result {
        let f = self.ops().set_vq_state.ok_or(eopnotsupp())?;
        if !self.vq_ok(idx) {
            return Err(EINVAL);
        }
        let mut state = bindings::vdpa_vq_state::default();
        if packed {
            let avail = base as u16;
            let used = (base >> 16) as u16;
            // SAFETY: writing the packed member of a zeroed union.
            let p = unsafe { &mut state.__bindgen_anon_1.packed };
            p.set_last_avail_idx(avail & 0x7fff);
            p.set_last_avail_counter(avail >> 15);
            p.set_last_used_idx(used & 0x7fff);
            p.set_last_used_counter(used >> 15);
        } else {
            state.__bindgen_anon_1.split.avail_index = base as u16;
        }
        // SAFETY: a bound device, a valid queue, a state for the call.
        to_result(unsafe { f(self.raw(), idx, &state) })
    }

    /// Where queue `idx` is, in the encoding of [`Device::set_vq_base`].
    pub fn get_vq_base(&self, idx: u16, packed: bool) -> Result<u32> {
        let f = self.ops().get_vq_state.ok_or(eopnotsupp())?;
        if !self.vq_ok(idx) {
            return Err(EINVAL);
        }
        let mut state = bindings::vdpa_vq_state::default();
        // SAFETY: a bound device, a valid queue, a state for the call.
        to_result(unsafe { f(self.raw(), idx, &mut state) })?;
        Ok(if packed {
            // SAFETY: the device wrote the packed member (a plain bit
            // field: any bits are a valid value).
            let p = unsafe { &state.__bindgen_anon_1.packed };
            let avail = p.last_avail_idx() | p.last_avail_counter() << 15;
            let used = p.last_used_idx() | p.last_used_counter() << 15;
            u32::from(avail) | u32::from(used) << 16
        } else {
            // SAFETY: the device wrote the split member (a plain `u16`).
            u32::from(unsafe { state.__bindgen_anon_1.split.avail_index })
        })
    }

    /// Kicks queue `idx`. The drivers of 6.12 allow atomic context (a
    /// queued work item, a deferred eventfd or an MMIO doorbell).
    pub fn kick_vq(&self, idx: u16) {
        if let (true, Some(f)) = (self.vq_ok(idx), self.ops().kick_vq) {
            // SAFETY: a bound device, a valid queue.
            unsafe { f(self.raw(), idx) }
        }
    }

    /// Installs `cb` as the interrupt callback of queue `idx`, or removes
    /// the callback (`None`).
    ///
    /// # Safety
    ///
    /// `cb` must stay valid until the device was reset ([`Device::reset`],
    /// which quiesces it) or the callback replaced, and the device unbound
    /// never later than that.
    pub unsafe fn set_vq_cb<C: Callback>(&self, idx: u16, cb: Option<&C>) {
        let Some(f) = self.ops().set_vq_cb else {
            return;
        };
        if !self.vq_ok(idx) {
            return;
        }
        let mut raw = raw_callback(cb);
        // SAFETY: a bound device, a valid queue; the device copies the
        // callback, and the caller keeps `cb` valid while it may be used.
        unsafe { f(self.raw(), idx, &mut raw) }
    }

    /// Installs `cb` as the config-change callback, or removes it.
    ///
    /// # Safety
    ///
    /// As for [`Device::set_vq_cb`].
    pub unsafe fn set_config_cb<C: Callback>(&self, cb: Option<&C>) {
        let Some(f) = self.ops().set_config_cb else {
            return;
        };
        let mut raw = raw_callback(cb);
        // SAFETY: as in `set_vq_cb`.
        unsafe { f(self.raw(), &mut raw) }
    }

    /// Stops the device's processing; quiet on return (`EOPNOTSUPP` when
    /// it cannot).
    pub fn suspend(&self) -> Result {
        let f = self.ops().suspend.ok_or(eopnotsupp())?;
        // SAFETY: a bound device.
        to_result(unsafe { f(self.raw()) })
    }

    /// Goes on after [`Device::suspend`].
    pub fn resume(&self) -> Result {
        let f = self.ops().resume.ok_or(eopnotsupp())?;
        // SAFETY: a bound device.
        to_result(unsafe { f(self.raw()) })
    }

    /// Replaces every translation of address space `asid` with `iotlb`.
    ///
    /// # Safety
    ///
    /// Every translation in `iotlb` must be one the device may use until
    /// it is replaced: user virtual addresses of the address space bound
    /// with [`Device::bind_mm`] for a `use_va` device, else physical
    /// addresses of pages that stay pinned for the device.
    pub unsafe fn set_map(&self, asid: u32, iotlb: &Iotlb) -> Result {
        let f = self.ops().set_map.ok_or(eopnotsupp())?;
        if asid >= self.nas() {
            return Err(EINVAL);
        }
        // SAFETY: a bound device, a valid ASID; the device copies the table
        // (the caller vouches for its contents).
        to_result(unsafe { f(self.raw(), asid, iotlb.as_raw()) })
    }

    /// Adds the translation of `[iova, iova + size)` to `pa` in address
    /// space `asid` of a device that takes ranges one by one
    /// ([`Device::has_dma_map`]; `EOPNOTSUPP` for others).
    ///
    /// # Safety
    ///
    /// As for [`Device::set_map`]: `pa` must be the start of physical
    /// memory of `size` bytes that stays pinned for the device until the
    /// range is removed ([`Device::dma_unmap`]).
    pub unsafe fn dma_map(&self, asid: u32, iova: u64, size: u64, pa: u64, perm: Perm) -> Result {
        let f = self.ops().dma_map.ok_or(eopnotsupp())?;
        if asid >= self.nas() || size == 0 {
            return Err(EINVAL);
        }
        // SAFETY: a bound device, a valid ASID; the caller vouches for the
        // range; no opaque data (a device with `dma_map` and no `use_va`
        // reads none).
        to_result(unsafe {
            f(
                self.raw(),
                asid,
                iova,
                size,
                pa,
                perm.raw(),
                core::ptr::null_mut(),
            )
        })
    }

    /// Removes the translations of `[iova, iova + size)` from address
    /// space `asid` of a device that takes ranges one by one.
    pub fn dma_unmap(&self, asid: u32, iova: u64, size: u64) -> Result {
        let f = self.ops().dma_unmap.ok_or(eopnotsupp())?;
        if asid >= self.nas() || size == 0 {
            return Err(EINVAL);
        }
        // SAFETY: a bound device, a valid ASID; removing translations.
        to_result(unsafe { f(self.raw(), asid, iova, size) })
    }

    /// Removes every translation of address space `asid` (an empty
    /// [`Device::set_map`], or a [`Device::dma_unmap`] of every IOVA for a
    /// device without `set_map`): the device can reach no memory through
    /// it. Never `reset_map`, which gives `vdpa_sim` its identity map back.
    pub fn clear_map(&self, asid: u32) -> Result {
        if !self.has_set_map() {
            // `[0, u64::MAX)`, then the last byte (a size cannot say 2^64).
            self.dma_unmap(asid, 0, u64::MAX)?;
            return self.dma_unmap(asid, u64::MAX, 1);
        }
        let empty = Iotlb::new(1)?;
        // SAFETY: an empty table translates nothing.
        unsafe { self.set_map(asid, &empty) }
    }

    /// Lets the device work on the user virtual addresses of `mm`.
    ///
    /// # Safety
    ///
    /// `mm` must stay grabbed (the [`MmGrab`] alive) until
    /// [`Device::unbind_mm`] returned: devices keep the bare pointer.
    pub unsafe fn bind_mm(&self, mm: &MmGrab) -> Result {
        let f = self.ops().bind_mm.ok_or(eopnotsupp())?;
        if self.ops().unbind_mm.is_none() {
            return Err(eopnotsupp());
        }
        // SAFETY: a bound device; the caller keeps `mm` alive while bound.
        to_result(unsafe { f(self.raw(), mm.as_raw().cast()) })
    }

    /// Undoes [`Device::bind_mm`]; the device uses the address space no
    /// more on return.
    pub fn unbind_mm(&self) {
        if let Some(f) = self.ops().unbind_mm {
            // SAFETY: a bound device.
            unsafe { f(self.raw()) }
        }
    }

    /// Whether the device has no translation of its own (neither
    /// `set_map` nor `dma_map`): its DMA goes through the platform IOMMU
    /// of its DMA device ([`Device::dma_device`]), which its user
    /// programs (`vp_vdpa`, `ifcvf` and the other PCI drivers).
    pub fn uses_platform_iommu(&self) -> bool {
        self.ops().set_map.is_none() && self.ops().dma_map.is_none()
    }

    /// Number of virtqueue groups.
    pub fn ngroups(&self) -> u32 {
        // SAFETY: as for `nvqs`.
        unsafe { (*self.raw()).ngroups }
    }

    /// The device that does the DMA (`vdpa_get_dma_dev()`): the PCI
    /// function of a hardware device, the vDPA device itself for a
    /// software one.
    pub fn dma_device(&self) -> &kernel::device::Device {
        // SAFETY: a bound device; its DMA device is set before it is
        // registered and lives at least as long (its parent, or itself).
        unsafe {
            kernel::device::Device::as_ref(
                bindings::vhost_mdev_helper_vdpa_get_dma_dev(self.raw()).cast(),
            )
        }
    }

    /// The doorbell area of queue `idx` (`get_vq_notification`): its
    /// physical address and length. `EOPNOTSUPP` for a device without
    /// doorbells, `EINVAL` for a bad queue.
    pub fn vq_notification(&self, idx: u16) -> Result<(u64, u64)> {
        let f = self.ops().get_vq_notification.ok_or(eopnotsupp())?;
        if !self.vq_ok(idx) {
            return Err(EINVAL);
        }
        // SAFETY: a bound device, a valid queue; the op only reads.
        let a = unsafe { f(self.raw(), idx) };
        Ok((a.addr, a.size))
    }
}

/// A reference on a bound [`Device`] that can be kept in another object
/// (the instance of a parent registered on the device).
///
/// # Invariants
///
/// The device stays bound to our driver while this object exists.
pub struct DeviceRef {
    ptr: NonNull<Device>,
}

// SAFETY: the ops of a vDPA device may be called from any thread (the
// drivers lock what they share); `Device` is only reached through `&`.
unsafe impl Send for DeviceRef {}
// SAFETY: as above.
unsafe impl Sync for DeviceRef {}

impl DeviceRef {
    /// A reference on `dev`.
    ///
    /// # Safety
    ///
    /// The caller must drop it before `dev`'s [`Driver::remove`] returns.
    pub unsafe fn new(dev: &Device) -> Self {
        // INVARIANT: the caller guarantees the lifetime.
        Self {
            ptr: NonNull::from(dev),
        }
    }
}

impl core::ops::Deref for DeviceRef {
    type Target = Device;

    fn deref(&self) -> &Device {
        // SAFETY: bound while we exist (type invariant).
        unsafe { self.ptr.as_ref() }
    }
}

/// A vDPA bus driver.
#[vtable]
pub trait Driver: Sized + 'static {
    /// What the driver keeps for a bound device.
    type Data: Send + Sync;

    /// Binds `dev`. Process context; for a device added with `vdpa dev
    /// add`, under the bus's `vdpa_dev_lock`.
    fn probe(dev: &Device) -> Result<KBox<Self::Data>>;

    /// Unbinds `dev`: `data` is what [`Driver::probe`] returned. The device
    /// may not be used after this returns (drop what refers to it here).
    fn remove(_dev: &Device, data: KBox<Self::Data>) {
        drop(data);
    }
}

/// The `struct vdpa_driver` callbacks of a [`Driver`] `T`.
struct DriverVTable<T: Driver>(PhantomData<T>);

impl<T: Driver> DriverVTable<T> {
    /// `vdpa_driver.probe`.
    ///
    /// # Safety
    ///
    /// Called by the vDPA bus with a device it is binding to our driver,
    /// which stays bound until `remove_callback` returns.
    unsafe extern "C" fn probe_callback(vdev: *mut bindings::vdpa_device) -> i32 {
        from_result(|| {
            // SAFETY: bound from now until `remove_callback` (the contract).
            let dev = unsafe { Device::from_raw(vdev) };
            let data = T::probe(dev)?;
            // SAFETY: the device's drvdata is ours while bound; the box is
            // taken back in `remove_callback`.
            unsafe {
                bindings::vhost_mdev_helper_dev_set_drvdata(
                    core::ptr::addr_of_mut!((*vdev).dev),
                    KBox::into_raw(data).cast(),
                )
            };
            Ok(0)
        })
    }

    /// `vdpa_driver.remove`.
    ///
    /// # Safety
    ///
    /// Called by the vDPA bus for a device that `probe_callback` bound,
    /// once.
    unsafe extern "C" fn remove_callback(vdev: *mut bindings::vdpa_device) {
        // SAFETY: bound until we return (the contract).
        let dev = unsafe { Device::from_raw(vdev) };
        // SAFETY: the drvdata that `probe_callback` set: a `KBox` of our
        // data, taken back once (remove runs once per successful probe).
        let data = unsafe {
            let dev_ptr = core::ptr::addr_of_mut!((*vdev).dev);
            let p = bindings::vhost_mdev_helper_dev_get_drvdata(dev_ptr);
            bindings::vhost_mdev_helper_dev_set_drvdata(dev_ptr, core::ptr::null_mut());
            KBox::from_raw(p.cast::<T::Data>())
        };
        T::remove(dev, data);
    }
}

/// The devices bound to driver `T`, as the [`sysfs::Owner`] of the
/// attribute groups the driver shows on them ([`Registration::new`]): an
/// attribute of the group finds the driver's data of the device.
pub struct Bound<T: Driver>(PhantomData<T>);

impl<T: Driver> sysfs::Owner for Bound<T> {
    type Data = T::Data;

    /// # Safety
    ///
    /// `dev` must be the embedded device of a vDPA device bound to `T` on
    /// which the driver core shows `T`'s groups: the core adds them after
    /// `probe_callback` set the drvdata and removes them (waiting for the
    /// callbacks in progress) before `remove_callback` takes it back.
    unsafe fn from_device<'a>(dev: *mut bindings::device) -> Option<&'a T::Data> {
        // SAFETY: a live device (the contract).
        let p = unsafe { bindings::vhost_mdev_helper_dev_get_drvdata(dev) };
        if p.is_null() {
            return None;
        }
        // SAFETY: the drvdata of a device bound to `T` is the `KBox` of
        // `T::Data` that `probe_callback` set, live until
        // `remove_callback`, which runs after the groups are gone.
        Some(unsafe { &*p.cast::<T::Data>() })
    }
}

/// A registered vDPA bus driver; unregistered (unbinding its devices) on
/// drop.
///
/// # Invariants
///
/// `drv` was registered with `__vdpa_register_driver()` and stays in place
/// (boxed) until unregistered in `drop`.
pub struct Registration<T: Driver> {
    drv: KBox<Opaque<bindings::vdpa_driver>>,
    _p: PhantomData<T>,
}

// SAFETY: the registration is only unregistered (from any thread) on drop.
unsafe impl<T: Driver> Send for Registration<T> {}
// SAFETY: no method takes `&self`.
unsafe impl<T: Driver> Sync for Registration<T> {}

impl<T: Driver> Registration<T> {
    /// Registers driver `name` of `module` on the vDPA bus. With the bus's
    /// `drivers_autoprobe` on, it binds every unbound device at once (the
    /// bus matches every driver to every device without a
    /// `driver_override`). `groups` (`None::<&sysfs::Groups<Bound<T>, 1>>`
    /// for none) are shown on each device while it is bound to the driver.
    pub fn new<const G: usize>(
        name: &'static CStr,
        module: &'static ThisModule,
        groups: Option<&'static sysfs::Groups<Bound<T>, G>>,
    ) -> Result<Self> {
        let mut raw = bindings::vdpa_driver {
            probe: Some(DriverVTable::<T>::probe_callback),
            remove: Some(DriverVTable::<T>::remove_callback),
            ..Default::default()
        };
        raw.driver.name = name.as_char_ptr();
        // The driver core shows them from the end of a successful probe to
        // the start of the remove, when the drvdata is set (see `Bound`).
        raw.driver.dev_groups = groups.map_or(core::ptr::null(), |g| g.as_raw()).cast_mut();
        let drv = KBox::new(Opaque::new(raw), GFP_KERNEL)?;
        // SAFETY: `drv` is a filled-in driver that stays in place until
        // unregistered (boxed, owned by the registration); `name` is
        // `'static`.
        to_result(unsafe { bindings::__vdpa_register_driver(drv.get(), module.as_ptr().cast()) })?;
        // INVARIANT: registered just above.
        Ok(Self {
            drv,
            _p: PhantomData,
        })
    }
}

impl<T: Driver> Drop for Registration<T> {
    fn drop(&mut self) {
        // SAFETY: registered (type invariant), unregistered once, here; the
        // bus calls `remove` for every bound device before returning.
        unsafe { bindings::vdpa_unregister_driver(self.drv.get()) };
    }
}
