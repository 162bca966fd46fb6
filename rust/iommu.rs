// SPDX-License-Identifier: GPL-2.0

//! An IOMMU domain that a driver owns for a device it serves.
//!
//! C header: [`include/linux/iommu.h`](srctree/include/linux/iommu.h).
//!
//! A device whose DMA goes through the platform IOMMU (a vDPA device
//! without an on-chip translation, such as `vp_vdpa`: its DMA device is the
//! PCI function) can be given a paging domain of its own, as
//! `drivers/vhost/vdpa.c` does (`vhost_vdpa_alloc_domain`): the domain
//! replaces the device's default domain while [`Domain`] lives, and maps
//! exactly what its owner maps ([`Domain::map`]); nothing else is
//! reachable by the device meanwhile. Dropping the domain puts the default
//! domain back.

use crate::bindings;
use crate::errno::eopnotsupp;
use core::ptr::NonNull;
use kernel::device::Device;
use kernel::error::{from_err_ptr, to_result, Result};
use kernel::prelude::*;
use kernel::types::ARef;

/// What the device may do with a mapping (`IOMMU_READ`, `IOMMU_WRITE`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Prot {
    /// The device may read.
    pub read: bool,
    /// The device may write.
    pub write: bool,
}

impl Prot {
    fn raw(self) -> i32 {
        let mut p = bindings::IOMMU_CACHE;
        if self.read {
            p |= bindings::IOMMU_READ;
        }
        if self.write {
            p |= bindings::IOMMU_WRITE;
        }
        p
    }
}

/// The C `struct device` of `dev` (`Device` is a transparent wrapper).
fn raw_dev(dev: &Device) -> *mut bindings::device {
    core::ptr::from_ref(dev).cast_mut().cast()
}

/// A paging domain attached to one device, owned by us.
///
/// # Invariants
///
/// `ptr` came from `iommu_paging_domain_alloc()` for `dev`, is attached to
/// `dev` (`iommu_attach_device()`) and is detached and freed in `drop`,
/// once.
pub struct Domain {
    ptr: NonNull<bindings::iommu_domain>,
    dev: ARef<Device>,
}

// SAFETY: the IOMMU API may be called from any thread; the domain's map and
// unmap calls lock what they share (the page-table code of the driver).
unsafe impl Send for Domain {}
// SAFETY: as above; `&Domain` only maps and unmaps.
unsafe impl Sync for Domain {}

/// Whether the IOMMU of `dev` can enforce cache-coherent DMA
/// (`IOMMU_CAP_CACHE_COHERENCY`), which [`Domain::attach_new`] requires;
/// false for a device behind no IOMMU.
pub fn cache_coherent(dev: &Device) -> bool {
    // SAFETY: `dev` is a live device (we hold `&dev`).
    unsafe {
        bindings::device_iommu_capable(raw_dev(dev), bindings::iommu_cap_IOMMU_CAP_CACHE_COHERENCY)
    }
}

impl Domain {
    /// Allocates a paging domain for `dev` and attaches it, taking the
    /// device off its default domain. Fails with `EOPNOTSUPP` when the
    /// device's IOMMU cannot enforce cache-coherent DMA (as `vhost_vdpa`
    /// requires), and with `EBUSY` when the device shares its IOMMU group
    /// or its group is not on its default domain (another owner).
    /// Process context.
    pub fn attach_new(dev: &Device) -> Result<Self> {
        if !cache_coherent(dev) {
            return Err(eopnotsupp());
        }
        let raw = raw_dev(dev);
        // SAFETY: `raw` is a live device (we hold `&dev`); the result is a
        // domain or an error pointer.
        let p = from_err_ptr(unsafe { bindings::iommu_paging_domain_alloc(raw) })?;
        let ptr = NonNull::new(p).ok_or(ENOMEM)?;
        // SAFETY: a domain allocated for `raw` just above, attached once.
        if let Err(e) = to_result(unsafe { bindings::iommu_attach_device(ptr.as_ptr(), raw) }) {
            // SAFETY: ours, not attached, freed once.
            unsafe { bindings::iommu_domain_free(ptr.as_ptr()) };
            return Err(e);
        }
        // INVARIANT: allocated and attached above.
        Ok(Self {
            ptr,
            dev: ARef::from(dev),
        })
    }

    /// The first and last IOVA the domain can map (its aperture).
    pub fn aperture(&self) -> (u64, u64) {
        // SAFETY: a live domain (type invariant); the geometry is set at
        // allocation and not changed.
        let g = unsafe { &(*self.ptr.as_ptr()).geometry };
        (g.aperture_start, g.aperture_end)
    }

    /// Maps `[iova, iova + size)` to the physical range from `pa`; all
    /// three page-aligned, `size` non-zero. `EINVAL` for a range outside the
    /// aperture or not aligned; `EEXIST` over an existing mapping (the
    /// driver's answer).
    ///
    /// # Safety
    ///
    /// The physical range must stay valid memory the device may use with
    /// `prot` (pinned pages) until it is unmapped ([`Domain::unmap`]) or
    /// the domain dropped.
    pub unsafe fn map(&self, iova: u64, pa: u64, size: u64, prot: Prot) -> Result {
        let page = bindings::PAGE_SIZE as u64 - 1;
        let (start, end) = self.aperture();
        let last = iova.checked_add(size.wrapping_sub(1)).ok_or(EINVAL)?;
        if size == 0 || (iova | pa | size) & page != 0 || iova < start || last > end {
            return Err(EINVAL);
        }
        let (Ok(i), Ok(s)) = (usize::try_from(iova), usize::try_from(size)) else {
            return Err(EINVAL);
        };
        // SAFETY: a live, attached domain (type invariant); the caller
        // vouches for the physical range.
        to_result(unsafe {
            bindings::iommu_map(
                self.ptr.as_ptr(),
                i,
                pa,
                s,
                prot.raw(),
                bindings::GFP_KERNEL,
            )
        })
    }

    /// Unmaps `[iova, iova + size)`; the device can no longer reach it when
    /// this returns (the IOTLB is flushed). Returns the bytes unmapped.
    pub fn unmap(&self, iova: u64, size: u64) -> usize {
        let (Ok(i), Ok(s)) = (usize::try_from(iova), usize::try_from(size)) else {
            return 0;
        };
        if s == 0 {
            return 0;
        }
        // SAFETY: a live domain (type invariant); removing translations.
        unsafe { bindings::iommu_unmap(self.ptr.as_ptr(), i, s) }
    }
}

impl Drop for Domain {
    fn drop(&mut self) {
        let raw = raw_dev(&self.dev);
        // SAFETY: attached to `dev` (type invariant); detached and freed
        // once, here; the device goes back to its default domain.
        unsafe {
            bindings::iommu_detach_device(self.ptr.as_ptr(), raw);
            bindings::iommu_domain_free(self.ptr.as_ptr());
        }
    }
}
