// SPDX-License-Identifier: GPL-2.0

//! The bridge's own IOMMU domain, for a vDPA device whose DMA goes through
//! the platform IOMMU (no `set_map` or `dma_map`: `vp_vdpa`, `ifcvf`, the
//! other PCI drivers), as `drivers/vhost/vdpa.c` does it
//! (`vhost_vdpa_alloc_domain`): while an instance exists, the device's DMA
//! device (its PCI function) is on a paging domain of the bridge, which
//! maps nothing but what the bridge maps for the instance's opener; the
//! device goes back to its default domain when the instance goes.

use crate::errno::eopnotsupp;
use crate::iommu;
use crate::pa::Run;
use crate::vdpa::{self, Perm};
use kernel::prelude::*;

/// Whether `dev`, which needs a domain of the bridge, can have one: its DMA
/// device must be behind an IOMMU that offers cache-coherent DMA (and be
/// alone in its IOMMU group: checked when the domain is attached), the
/// device must have one queue
/// group and one address space (one domain serves all its queues), as
/// `vhost_vdpa` requires of such devices.
pub(crate) fn check(dev: &vdpa::Device) -> Result {
    if !iommu::cache_coherent(dev.dma_device()) {
        pr_warn!(
            "{}: not bridged: its DMA device is behind no IOMMU that enforces cache-coherent \
             DMA (the bridge maps its memory in an IOMMU domain)\n",
            dev.name()
        );
        return Err(eopnotsupp());
    }
    if dev.ngroups() > 1 || dev.nas() > 1 {
        pr_warn!(
            "{}: not bridged: {} queue groups and {} address spaces behind the platform IOMMU \
             (one of each is supported)\n",
            dev.name(),
            dev.ngroups(),
            dev.nas()
        );
        return Err(EINVAL);
    }
    Ok(())
}

/// The domain of one instance.
pub(crate) struct BridgeDomain {
    dom: iommu::Domain,
}

impl BridgeDomain {
    /// Allocates the domain and moves the DMA device of `dev` onto it.
    pub(crate) fn attach(dev: &vdpa::Device) -> Result<Self> {
        let dom = iommu::Domain::attach_new(dev.dma_device()).inspect_err(|e| {
            pr_warn!(
                "{}: cannot give the device an IOMMU domain of the bridge: {:?}\n",
                dev.name(),
                e
            )
        })?;
        let (start, end) = dom.aperture();
        pr_info!(
            "{}: on an IOMMU domain of the bridge (IOVA {:#x}-{:#x})\n",
            dev.name(),
            start,
            end
        );
        Ok(Self { dom })
    }

    /// Replaces the translations `programmed` (what the domain maps
    /// now) with `runs` (IOVA -> physical address of pinned pages, from
    /// `pa::runs`): the old ones are unmapped first (the caller has made
    /// the device quiet if it was running and some of them go), the new
    /// ones mapped; `programmed` then holds them. On an error nothing is
    /// mapped any more and `programmed` is empty.
    pub(crate) fn program(&self, programmed: &mut KVec<Run>, runs: KVec<Run>) -> Result {
        self.clear(programmed);
        for (i, r) in runs.iter().enumerate() {
            let prot = iommu::Prot {
                read: r.perm != Perm::WriteOnly,
                write: r.perm != Perm::ReadOnly,
            };
            // SAFETY: `runs` translate to pages the bridge holds pinned
            // until the run is unmapped again (`clear`), which happens
            // before they are given back (the callers in the main file).
            if let Err(e) = unsafe { self.dom.map(r.iova, r.pa, r.len, prot) } {
                for done in &runs[..i] {
                    self.dom.unmap(done.iova, done.len);
                }
                return Err(e);
            }
        }
        *programmed = runs;
        Ok(())
    }

    /// Unmaps every translation in `programmed` and forgets them: the
    /// device reaches no memory when this returns.
    pub(crate) fn clear(&self, programmed: &mut KVec<Run>) {
        for r in programmed.iter() {
            let n = self.dom.unmap(r.iova, r.len);
            if n as u64 != r.len {
                pr_err!(
                    "IOMMU domain: unmapped {:#x} of {:#x} bytes at {:#x}\n",
                    n,
                    r.len,
                    r.iova
                );
            }
        }
        *programmed = KVec::new();
    }
}
