// SPDX-License-Identifier: GPL-2.0

//! Guest memory accesses through the pinned-page cache: copies between a
//! kernel buffer and guest memory, and from guest memory to guest memory.

use super::{Access, PinCache, PAGE_SHIFT, PAGE_SIZE};
use crate::fault_inject::{self, Point};
use core::ptr;

/// Copies `n` bytes from `src` to `dst`: inline moves for 4 to 32 bytes (a
/// descriptor, a header, a used element), `memcpy()` otherwise.
///
/// Within the inline sizes, all loads come before the stores, which may
/// overlap one another (a byte in both halves is stored twice, with the
/// same value), as `memcpy()` itself does for such sizes.
///
/// # Safety
///
/// `src` must be valid for reads and `dst` for writes of `n` bytes, and
/// the two ranges must not overlap.
#[inline(always)]
unsafe fn copy(src: *const u8, dst: *mut u8, n: usize) {
    // SAFETY: every access below is within `src[..n]` or `dst[..n]` (the
    // caller guarantees both) and unaligned-tolerant.
    unsafe {
        macro_rules! pair {
            ($t:ty) => {{
                const W: usize = core::mem::size_of::<$t>();
                let a = ptr::read_unaligned(src.cast::<$t>());
                let b = ptr::read_unaligned(src.add(n - W).cast::<$t>());
                ptr::write_unaligned(dst.cast::<$t>(), a);
                ptr::write_unaligned(dst.add(n - W).cast::<$t>(), b);
            }};
        }
        match n {
            4..=7 => pair!(u32),
            8..=16 => pair!(u64),
            17..=32 => {
                let a = ptr::read_unaligned(src.cast::<[u64; 2]>());
                let b = ptr::read_unaligned(src.add(n - 16).cast::<[u64; 2]>());
                ptr::write_unaligned(dst.cast::<[u64; 2]>(), a);
                ptr::write_unaligned(dst.add(n - 16).cast::<[u64; 2]>(), b);
            }
            _ => ptr::copy_nonoverlapping(src, dst, n),
        }
    }
}

impl PinCache {
    /// Copies between `buf` and guest memory at `iova` through the cache.
    /// Returns false when the cache cannot serve it (nothing or part was
    /// copied: the caller redoes the whole access another way).
    ///
    /// A naturally aligned access of 2, 4 or 8 bytes (a ring index, a used
    /// element's half, an event index) is one load or store, as vhost does
    /// it: the driver updates those while the device reads them, and a
    /// byte-wise copy could see half of an update.
    ///
    /// # Safety
    ///
    /// `buf` must be valid for `len` bytes (for writes of guest memory, for
    /// reads; for reads of guest memory, for writes) and must not be guest
    /// memory itself.
    pub(crate) unsafe fn rw(&self, iova: u64, buf: *mut u8, len: usize, write: bool) -> bool {
        if !self.enabled() {
            return false;
        }
        let access = if write { Access::Write } else { Access::Read };
        if matches!(len, 2 | 4 | 8) && iova % len as u64 == 0 {
            if fault_inject::should_fail(Point::Copy) {
                return false;
            }
            let off = (iova & (PAGE_SIZE - 1)) as usize;
            let ok = self.with_pages([(iova >> PAGE_SHIFT, access)], |[page]| {
                // SAFETY: `page + off` is aligned for `len` (the IOVA is, and
                // the page is page-aligned) and the access stays in the page;
                // the caller guarantees `buf` for `len` bytes.
                unsafe {
                    let g = page.add(off);
                    macro_rules! once {
                        ($t:ty) => {
                            if write {
                                let v = ptr::read_unaligned(buf.cast::<$t>());
                                ptr::write_volatile(g.cast::<$t>(), v);
                            } else {
                                let v = ptr::read_volatile(g.cast::<$t>());
                                ptr::write_unaligned(buf.cast::<$t>(), v);
                            }
                        };
                    }
                    match len {
                        2 => once!(u16),
                        4 => once!(u32),
                        _ => once!(u64),
                    }
                }
            });
            return ok.is_some();
        }
        let mut done = 0usize;
        while done < len {
            let Some(at) = iova.checked_add(done as u64) else {
                return false;
            };
            if fault_inject::should_fail(Point::Copy) {
                return false;
            }
            let off = (at & (PAGE_SIZE - 1)) as usize;
            let n = (len - done).min(PAGE_SIZE as usize - off);
            let ok = self.with_pages([(at >> PAGE_SHIFT, access)], |[page]| {
                // SAFETY: `page` maps a whole page and `off + n` is within
                // it; the caller guarantees `buf[done..done + n]`. The two
                // never overlap: `buf` is the caller's kernel buffer.
                unsafe {
                    let b = buf.add(done);
                    if write {
                        copy(b, page.add(off), n);
                    } else {
                        copy(page.add(off), b, n);
                    }
                }
            });
            if ok.is_none() {
                return false;
            }
            done += n;
        }
        true
    }

    /// Copies `len` bytes of guest memory from `src` to `dst`, page to page.
    /// Returns false when the cache cannot serve it (the caller redoes the
    /// whole copy another way).
    pub(crate) fn copy(&self, dst: u64, src: u64, len: usize) -> bool {
        if !self.enabled() {
            return false;
        }
        let mut done = 0usize;
        while done < len {
            let (Some(d), Some(s)) = (dst.checked_add(done as u64), src.checked_add(done as u64))
            else {
                return false;
            };
            if fault_inject::should_fail(Point::Copy) {
                return false;
            }
            let doff = (d & (PAGE_SIZE - 1)) as usize;
            let soff = (s & (PAGE_SIZE - 1)) as usize;
            let n = (len - done)
                .min(PAGE_SIZE as usize - doff)
                .min(PAGE_SIZE as usize - soff);
            let pfns = [
                (s >> PAGE_SHIFT, Access::Read),
                (d >> PAGE_SHIFT, Access::Write),
            ];
            let ok = self.with_pages(pfns, |[sp, dp]| {
                // SAFETY: both map whole pages and the offsets plus `n` stay
                // within them.
                let (from, to) = unsafe { (sp.add(soff), dp.add(doff)) };
                let (f, t) = (from as usize, to as usize);
                if f + n <= t || t + n <= f {
                    // SAFETY: valid for `n` bytes (above), not overlapping.
                    // `memcpy()`, not `memmove()`: the latter is `rep movsb`
                    // on ERMS CPUs, the former a move loop without FSRM.
                    unsafe { copy(from, to, n) };
                } else {
                    // SAFETY: valid for `n` bytes (above). The driver made
                    // its TX and RX buffers overlap: `memmove()` is defined
                    // for that.
                    unsafe { ptr::copy(from, to, n) };
                }
            });
            if ok.is_none() {
                return false;
            }
            done += n;
        }
        true
    }
}
