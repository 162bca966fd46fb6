// SPDX-License-Identifier: GPL-2.0

//! VFIO ioctl argument structs, copied from and to userspace up to their
//! minimum size (the part every `argsz` a user may give covers).

use crate::errno::EINVAL;
use core::mem::size_of;
use core::ptr;
use kernel::ffi::c_long;
use kernel::prelude::*;
use kernel::uaccess::UserSlice;

/// Copies the first `minsz` bytes of a VFIO argument struct in.
pub(crate) fn read_struct<T>(arg: usize, out: &mut T, minsz: usize) -> Result {
    if minsz > size_of::<T>() {
        return Err(EINVAL);
    }
    // SAFETY: `out` is a plain-old-data bindgen struct of at least `minsz`
    // bytes; any byte pattern is valid for it.
    let bytes = unsafe { core::slice::from_raw_parts_mut(ptr::from_mut(out).cast::<u8>(), minsz) };
    UserSlice::new(arg, minsz).reader().read_slice(bytes)
}

/// Copies the first `minsz` bytes of a VFIO argument struct out.
pub(crate) fn write_struct<T>(arg: usize, v: &T, minsz: usize) -> Result<c_long> {
    if minsz > size_of::<T>() {
        return Err(EINVAL);
    }
    // SAFETY: `v` is a bindgen struct of at least `minsz` bytes, fully
    // initialised (built from `Default` and field writes).
    let bytes = unsafe { core::slice::from_raw_parts(ptr::from_ref(v).cast::<u8>(), minsz) };
    UserSlice::new(arg, minsz).writer().write_slice(bytes)?;
    Ok(0)
}
