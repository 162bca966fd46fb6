// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Page-aligned memory shared with a device through DMA.
//!
//! The memory is a shared mapping of a memfd, not anonymous memory:
//! vhost-vdpa parents that work on user virtual addresses (`use_va`, such
//! as `vdpa_sim_net`) map only file-backed `MAP_SHARED` ranges and skip
//! any other VMA of an IOTLB update silently, so with anonymous memory the
//! update succeeds, maps nothing, and the device then fails every ring
//! access. VFIO (type1 and iommufd) pins memfd pages like anonymous ones.
//!
//! A device may read and write this memory at any time while it is
//! mapped, so no Rust reference to its contents is ever handed out: all
//! access is by copies ([`DmaMemory::write`], [`DmaMemory::read`]),
//! volatile loads and stores, or atomics.

use std::os::fd::{AsRawFd, FromRawFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU16;

use crate::device::page_size;
use crate::error::{Error, Result};
use crate::uapi::MemRegion;
use crate::vfio::DmaMapper;

/// A page-aligned shared mapping of a memfd.
#[derive(Debug)]
pub struct DmaMemory {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: DmaMemory owns its mapping; all accessors take &self and are
// copies, volatile or atomic accesses, valid from any thread.
unsafe impl Send for DmaMemory {}
// SAFETY: see Send; concurrent accessors never create references to the
// contents.
unsafe impl Sync for DmaMemory {}

impl DmaMemory {
    /// Allocates at least `len` zeroed bytes, rounded up to whole pages.
    pub fn new(len: usize) -> Result<Self> {
        let page = page_size() as usize;
        let len = len.max(1).div_ceil(page) * page;
        // SAFETY: the name is a NUL-terminated string; the new fd is owned
        // by `fd` below.
        let raw = unsafe { libc::memfd_create(c"vhost-mdev-dma".as_ptr(), libc::MFD_CLOEXEC) };
        if raw < 0 {
            return Err(Error::last_os("memfd_create".to_string()));
        }
        // SAFETY: raw is a new fd owned by nothing else.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        // SAFETY: ftruncate on an fd this function owns.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } < 0 {
            return Err(Error::last_os(format!(
                "ftruncate of a memfd to {len} bytes"
            )));
        }
        // SAFETY: a new shared mapping of a new memfd, at an address of the
        // kernel's choice, aliases nothing in this process (the fd is
        // closed below; the mapping keeps the file alive).
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::last_os(format!("mmap of {len} bytes")));
        }
        drop(fd);
        let ptr = NonNull::new(p as *mut u8)
            .ok_or_else(|| Error::Protocol("mmap returned NULL".into()))?;
        Ok(DmaMemory { ptr, len })
    }

    /// Length in bytes (a multiple of the page size).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: mappings are at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The user address of the first byte.
    pub fn addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    /// The memory-table region of this memory mapped at `iova`.
    pub fn region(&self, iova: u64) -> MemRegion {
        MemRegion::new(iova, self.len as u64, self.addr())
    }

    fn check(&self, off: usize, len: usize, align: usize) -> Result<()> {
        let end = off.checked_add(len);
        if end.is_none_or(|e| e > self.len) || !off.is_multiple_of(align) {
            return Err(Error::InvalidArgument(format!(
                "access of {len} bytes at {off:#x} (align {align}) outside {} bytes",
                self.len
            )));
        }
        Ok(())
    }

    /// Copies `data` to offset `off`.
    pub fn write(&self, off: usize, data: &[u8]) -> Result<()> {
        self.check(off, data.len(), 1)?;
        // SAFETY: the range is inside the mapping (checked above) and does
        // not overlap `data`, which is a Rust slice outside it.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(off), data.len())
        };
        Ok(())
    }

    /// Copies `buf.len()` bytes at offset `off` into `buf`.
    pub fn read(&self, off: usize, buf: &mut [u8]) -> Result<()> {
        self.check(off, buf.len(), 1)?;
        // SAFETY: the range is inside the mapping (checked above) and does
        // not overlap `buf`.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(off), buf.as_mut_ptr(), buf.len())
        };
        Ok(())
    }

    /// Fills `len` bytes at `off` with `byte`.
    pub fn fill(&self, off: usize, len: usize, byte: u8) -> Result<()> {
        self.check(off, len, 1)?;
        // SAFETY: the range is inside the mapping (checked above).
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr().add(off), byte, len) };
        Ok(())
    }

    /// Volatile load of a `T` at `off` (which must be aligned for `T`).
    pub fn load<T: Copy>(&self, off: usize) -> Result<T> {
        self.check(off, size_of::<T>(), align_of::<T>())?;
        // SAFETY: in bounds and aligned (checked above); T: Copy is plain
        // data here (integers), valid for any bit pattern the device writes.
        Ok(unsafe { std::ptr::read_volatile(self.ptr.as_ptr().add(off) as *const T) })
    }

    /// Volatile store of a `T` at `off` (which must be aligned for `T`).
    pub fn store<T: Copy>(&self, off: usize, v: T) -> Result<()> {
        self.check(off, size_of::<T>(), align_of::<T>())?;
        // SAFETY: in bounds and aligned (checked above).
        unsafe { std::ptr::write_volatile(self.ptr.as_ptr().add(off) as *mut T, v) };
        Ok(())
    }

    /// The `u16` at `off` as an atomic (for ring indexes).
    pub fn atomic_u16(&self, off: usize) -> Result<&AtomicU16> {
        self.check(off, 2, 2)?;
        // SAFETY: in bounds and 2-byte aligned (checked above); the mapping
        // lives as long as &self and AtomicU16 has the layout of u16.
        Ok(unsafe { AtomicU16::from_ptr(self.ptr.as_ptr().add(off) as *mut u16) })
    }

    /// Maps the whole memory at `iova` through `mapper`.
    ///
    /// # Safety
    ///
    /// The memory must be unmapped from `mapper` (or the device closed)
    /// before it is dropped: see [`DmaMapper::map_dma`].
    pub unsafe fn map(&self, mapper: &(impl DmaMapper + ?Sized), iova: u64) -> Result<()> {
        // SAFETY: this mapping stays valid as long as self, and the caller
        // unmaps it first; all access goes through copies/volatile/atomics.
        unsafe { mapper.map_dma(iova, self.len as u64, self.addr()) }
    }
}

impl Drop for DmaMemory {
    fn drop(&mut self) {
        // SAFETY: ptr/len describe the mapping created in new().
        unsafe { libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_access_bounds() {
        let m = DmaMemory::new(100).unwrap();
        assert_eq!(m.len() as u64 % page_size(), 0);
        assert_eq!(m.addr() % page_size(), 0);
        m.write(10, b"hello").unwrap();
        let mut b = [0u8; 5];
        m.read(10, &mut b).unwrap();
        assert_eq!(&b, b"hello");
        m.store::<u32>(16, 0xdead_beef).unwrap();
        assert_eq!(m.load::<u32>(16).unwrap(), 0xdead_beef);
        assert!(m.load::<u32>(17).is_err());
        assert!(m.write(m.len() - 2, b"abc").is_err());
        assert!(m.write(usize::MAX, b"a").is_err());
        assert_eq!(
            m.atomic_u16(16)
                .unwrap()
                .load(std::sync::atomic::Ordering::Relaxed),
            u16::from_ne_bytes([
                0xdead_beef_u32.to_ne_bytes()[0],
                0xdead_beef_u32.to_ne_bytes()[1]
            ])
        );
    }
}
