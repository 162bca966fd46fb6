// SPDX-License-Identifier: GPL-2.0

//! PA mode of the bridge: the pieces that need no device.
//!
//! The driver's memory table names IOVA ranges (`guest_phys_addr`; the
//! user address is ignored) that the bridge pins through VFIO
//! (`vhost_mdev_dma_pin()`, iommufd only) and gives the device as IOVA ->
//! physical address translations. Pins are made in [`Chunk`]s of at most
//! [`PIN_MAX`] pages on a fixed IOVA grid of [`PIN_MAX`] pages, so that a
//! region that stays in a new table maps to the same chunks and is never
//! pinned again (iommufd gives a pin back only for exactly the range that
//! took it). Physically contiguous pages are merged into one translation
//! ([`runs`]).

use crate::vdpa::Perm;
use crate::vhost_mdev::{MemRegion, PIN_MAX};
use kernel::prelude::*;

/// Page size, as the IOVA grid.
pub(crate) const PAGE: u64 = kernel::page::PAGE_SIZE as u64;

/// Bytes of one chunk of the grid.
const CHUNK_BYTES: u64 = PIN_MAX as u64 * PAGE;

/// Pages pinned by one `vhost_mdev_dma_pin()`, given back as a whole.
pub(crate) struct Chunk {
    /// IOVA of the first page.
    pub(crate) iova: u64,
    /// Pinned for writing too (else read-only: the IOVA range is mapped
    /// read-only in VFIO).
    pub(crate) write: bool,
    /// Physical address of each page.
    pub(crate) phys: KVec<u64>,
}

impl Chunk {
    /// Pages pinned.
    pub(crate) fn npages(&self) -> usize {
        self.phys.len()
    }

    /// Last IOVA byte.
    pub(crate) fn last(&self) -> u64 {
        self.iova + (self.phys.len() as u64 * PAGE - 1)
    }

    /// Whether the chunk meets `[iova, last]`.
    pub(crate) fn meets(&self, iova: u64, last: u64) -> bool {
        self.iova <= last && iova <= self.last()
    }
}

/// Checks a PA-mode table: every region whole pages (`EINVAL`), none
/// empty or wrapping, no two overlapping (the core checks these too); and
/// cuts it into the chunks to pin, `(iova, npages)`, sorted by IOVA.
pub(crate) fn plan(regions: &[MemRegion], max_regions: usize) -> Result<KVec<(u64, usize)>> {
    if regions.len() > max_regions {
        return Err(E2BIG);
    }
    let mut ranges: KVec<(u64, u64)> = KVec::with_capacity(regions.len(), GFP_KERNEL)?;
    for r in regions {
        if r.size == 0 || r.guest_phys_addr % PAGE != 0 || r.size % PAGE != 0 {
            return Err(EINVAL);
        }
        let last = r.guest_phys_addr.checked_add(r.size - 1).ok_or(EINVAL)?;
        if ranges
            .iter()
            .any(|&(s, l)| r.guest_phys_addr <= l && s <= last)
        {
            return Err(EINVAL);
        }
        ranges.push((r.guest_phys_addr, last), GFP_KERNEL)?;
    }
    ranges.sort_unstable_by_key(|&(s, _)| s);
    let mut chunks = KVec::new();
    for &(start, last) in ranges.iter() {
        let mut at = start;
        loop {
            // The end of the grid cell of `at`, or of the range.
            let cell_last = (at | (CHUNK_BYTES - 1)).min(last);
            let npages = ((cell_last - at) / PAGE + 1) as usize;
            chunks.push((at, npages), GFP_KERNEL)?;
            if cell_last == last {
                break;
            }
            at = cell_last + 1;
        }
    }
    Ok(chunks)
}

/// One translation given to the device: `len` bytes from `iova` at `pa`.
#[derive(Clone, Copy)]
pub(crate) struct Run {
    pub(crate) iova: u64,
    pub(crate) pa: u64,
    pub(crate) len: u64,
    pub(crate) perm: Perm,
}

/// The translations of `chunks` (sorted by IOVA), physically contiguous
/// pages of the same permission merged.
pub(crate) fn runs(chunks: &[&Chunk]) -> Result<KVec<Run>> {
    let mut out: KVec<Run> = KVec::new();
    for c in chunks {
        let perm = if c.write {
            Perm::ReadWrite
        } else {
            Perm::ReadOnly
        };
        for (i, &pa) in c.phys.iter().enumerate() {
            let iova = c.iova + i as u64 * PAGE;
            if let Some(r) = out.last_mut() {
                if r.perm == perm && r.iova + r.len == iova && r.pa + r.len == pa {
                    r.len += PAGE;
                    continue;
                }
            }
            out.push(
                Run {
                    iova,
                    pa,
                    len: PAGE,
                    perm,
                },
                GFP_KERNEL,
            )?;
        }
    }
    Ok(out)
}

/// The IOVA extents of a queue's rings, to tell whether an unmapped range
/// hit one: `(start, last)` of the descriptor table, the driver area and
/// the device area of a ring of `num` entries.
pub(crate) fn ring_extents(addr: [u64; 3], num: u32, packed: bool) -> [(u64, u64); 3] {
    let n = u64::from(num.max(1));
    let sizes = if packed {
        // Descriptors of 16 bytes; two event suppression structures.
        [16 * n, 4, 4]
    } else {
        // Descriptors; avail (flags, idx, ring, used_event); used
        // (flags, idx, ring of 8-byte elements, avail_event).
        [16 * n, 6 + 2 * n, 6 + 8 * n]
    };
    let mut out = [(0, 0); 3];
    for i in 0..3 {
        out[i] = (addr[i], addr[i].saturating_add(sizes[i] - 1));
    }
    out
}
