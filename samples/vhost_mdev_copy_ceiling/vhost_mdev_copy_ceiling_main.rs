// SPDX-License-Identifier: GPL-2.0

//! A benchmark aid: the copy ceiling of the sample parent's data path
//! (`vhost_mdev_copy_ceiling.ko`, standalone: it needs neither the core nor
//! a parent).
//!
//! With a type1 container the data path moves every frame with
//! `vfio_dma_rw()`, which copies with `copy_from_user()` (TX) and
//! `copy_to_user()` (RX) in the VMM's address space. With iommufd it copies
//! each frame once, TX buffer to RX buffer, with `memcpy()` between pinned
//! pages (`vhost_mdev_dma_copy()`), a page at a time. This debugfs file
//! times the same routines in the kernel, so that a benchmark can read the
//! data path against what copying alone allows (`make bench` prints the
//! ratio):
//!
//! ```text
//! /sys/kernel/debug/vhost_mdev_copy_ceiling/copy_ceiling   (root only)
//!   write "SIZE ITERATIONS [user|memcpy]"
//!                              (1 <= SIZE <= 65549, 1 <= ITERATIONS <= 10^7;
//!                              user, the default, is the type1 path)
//!   read(fd, buf, 2 * SIZE)    user: copies buf[..SIZE] in and back out to
//!                              buf[SIZE..], ITERATIONS times; memcpy:
//!                              copies SIZE bytes between two kernel
//!                              buffers a page at a time, ITERATIONS times;
//!                              then returns "SIZE ITERATIONS NANOSECONDS\n"
//!                              in buf; EINTR when a signal (a fatal one:
//!                              kill, Ctrl-C) arrives meanwhile
//! ```
//!
//! A measurement can take long (10^7 iterations of 64 KiB): it stops at the
//! next iteration once a signal is pending. The open file holds a
//! reference on the module (`fops.owner`), so `rmmod` during a measurement
//! fails at once with EAGAIN ("in use") and never waits for it.

use core::ptr;
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::ffi::c_char;
use kernel::prelude::*;
use kernel::str::CString;
use kernel::time::Ktime;
use kernel::uaccess::UserSlice;
use kernel::{c_str, fmt};

#[path = "../../rust/bindings.rs"]
mod bindings;

module! {
    type: VhostMdevCopyCeiling,
    name: "vhost_mdev_copy_ceiling",
    author: "The vhost-mdev developers",
    description: "vhost-mdev benchmark aid: times the sample's copy routines",
    license: "GPL",
}

struct VhostMdevCopyCeiling {
    _copy_ceiling: CopyCeiling,
}

impl kernel::Module for VhostMdevCopyCeiling {
    fn init(module: &'static ThisModule) -> Result<Self> {
        Ok(Self {
            _copy_ceiling: CopyCeiling::new(module)?,
        })
    }
}

const MAX_SIZE: u64 = 65549;
const MAX_ITERATIONS: u64 = 10_000_000;
const PAGE: usize = bindings::PAGE_SIZE;

/// `MEMCPY << 63 | SIZE << 32 | ITERATIONS` of the last write (0: none
/// yet).
static PARAMS: AtomicU64 = AtomicU64::new(0);
const MEMCPY: u64 = 1 << 63;

/// The debugfs directory, removed on drop.
///
/// # Invariants
///
/// `dir` is null or a directory from `debugfs_create_dir()` that holds a
/// file whose `file_operations` is `*fops`.
struct CopyCeiling {
    dir: *mut bindings::dentry,
    /// Kept alive for the file (the VFS holds a pointer to it).
    _fops: KBox<bindings::file_operations>,
}

// SAFETY: the dentry pointer is only passed back to `debugfs_remove()`.
unsafe impl Send for CopyCeiling {}
// SAFETY: no method takes `&self`.
unsafe impl Sync for CopyCeiling {}

impl CopyCeiling {
    /// Creates `/sys/kernel/debug/vhost_mdev_copy_ceiling/copy_ceiling`.
    /// Without debugfs, nothing is created and this still succeeds.
    fn new(module: &'static ThisModule) -> Result<Self> {
        // SAFETY: all-zeroes is a valid `file_operations` (no callbacks).
        let mut fops: bindings::file_operations = unsafe { core::mem::zeroed() };
        fops.owner = module.as_ptr().cast();
        fops.read = Some(read);
        fops.write = Some(write);
        let fops = KBox::new(fops, GFP_KERNEL)?;
        // SAFETY: a valid name; a null parent is the debugfs root.
        let dir = unsafe {
            bindings::debugfs_create_dir(
                c_str!("vhost_mdev_copy_ceiling").as_char_ptr(),
                ptr::null_mut(),
            )
        };
        let dir = match kernel::error::from_err_ptr(dir) {
            Ok(d) => d,
            Err(_) => ptr::null_mut(),
        };
        if !dir.is_null() {
            // SAFETY: `dir` is our directory; `fops` lives as long as it (it
            // is removed in `drop` first), and the callbacks take no data.
            unsafe {
                bindings::debugfs_create_file(
                    c_str!("copy_ceiling").as_char_ptr(),
                    0o600,
                    dir,
                    ptr::null_mut(),
                    &*fops,
                )
            };
        }
        // INVARIANT: `dir` is null or holds the file created with `fops`.
        Ok(Self { dir, _fops: fops })
    }
}

impl Drop for CopyCeiling {
    fn drop(&mut self) {
        if !self.dir.is_null() {
            // SAFETY: created in `new`; this removes the file too, and waits
            // for its callbacks, before `fops` is freed.
            unsafe { bindings::debugfs_remove(self.dir) };
        }
    }
}

fn parse(text: &str) -> Result<u64> {
    let mut it = text.split_ascii_whitespace();
    let size: u64 = it.next().ok_or(EINVAL)?.parse().map_err(|_| EINVAL)?;
    let iters: u64 = it.next().ok_or(EINVAL)?.parse().map_err(|_| EINVAL)?;
    let mode = match it.next() {
        None | Some("user") => 0,
        Some("memcpy") => MEMCPY,
        Some(_) => return Err(EINVAL),
    };
    if it.next().is_some()
        || !(1..=MAX_SIZE).contains(&size)
        || !(1..=MAX_ITERATIONS).contains(&iters)
    {
        return Err(EINVAL);
    }
    Ok(mode | size << 32 | iters)
}

/// `file_operations.write`: sets the size and the iteration count.
///
/// # Safety
///
/// Called by the VFS with a user buffer of `count` bytes.
unsafe extern "C" fn write(
    _file: *mut bindings::file,
    buf: *const c_char,
    count: usize,
    _ppos: *mut bindings::loff_t,
) -> isize {
    let r = (|| -> Result<isize> {
        let mut text = [0u8; 64];
        let n = count.min(text.len());
        UserSlice::new(buf as usize, n)
            .reader()
            .read_slice(&mut text[..n])?;
        let text = core::str::from_utf8(&text[..n]).map_err(|_| EINVAL)?;
        PARAMS.store(parse(text)?, Ordering::Relaxed);
        Ok(count as isize)
    })();
    r.unwrap_or_else(|e| e.to_errno() as isize)
}

/// Between two iterations of a measurement: lets others run, and ends the
/// measurement with EINTR when the reader has a signal pending.
fn stop_if_signalled() -> Result {
    // SAFETY: process context (a `read`), no lock held.
    unsafe { bindings::vhost_mdev_helper_cond_resched() };
    if kernel::current!().signal_pending() {
        return Err(EINTR);
    }
    Ok(())
}

/// `file_operations.read`: runs the copies on the caller's buffer.
///
/// # Safety
///
/// Called by the VFS with a user buffer of `count` bytes.
unsafe extern "C" fn read(
    _file: *mut bindings::file,
    buf: *mut c_char,
    count: usize,
    _ppos: *mut bindings::loff_t,
) -> isize {
    let r = (|| -> Result<isize> {
        let p = PARAMS.load(Ordering::Relaxed);
        let (size, iters) = (((p & !MEMCPY) >> 32) as usize, p & 0xffff_ffff);
        if size == 0 || count != 2 * size {
            return Err(EINVAL);
        }
        let mut k = KVec::from_elem(0u8, size, GFP_KERNEL)?;
        let user = buf as usize;
        let ns = if p & MEMCPY != 0 {
            let src = KVec::from_elem(1u8, size, GFP_KERNEL)?;
            let t0 = Ktime::ktime_get();
            for _ in 0..iters {
                // The direct path: `memcpy()` a page at a time.
                for (d, s) in k.chunks_mut(PAGE).zip(src.chunks(PAGE)) {
                    d.copy_from_slice(s);
                }
                core::hint::black_box(&mut k);
                stop_if_signalled()?;
            }
            (Ktime::ktime_get() - t0).to_ns()
        } else {
            let t0 = Ktime::ktime_get();
            for _ in 0..iters {
                // The routines of `vfio_dma_rw()`: copy_from_user,
                // copy_to_user.
                UserSlice::new(user, size).reader().read_slice(&mut k)?;
                UserSlice::new(user.wrapping_add(size), size)
                    .writer()
                    .write_slice(&k)?;
                stop_if_signalled()?;
            }
            (Ktime::ktime_get() - t0).to_ns()
        };
        let s = CString::try_from_fmt(fmt!("{} {} {}\n", size, iters, ns))?;
        let out = s.as_bytes();
        let n = out.len().min(count);
        UserSlice::new(user, n).writer().write_slice(&out[..n])?;
        Ok(n as isize)
    })();
    r.unwrap_or_else(|e| e.to_errno() as isize)
}
