// SPDX-License-Identifier: GPL-2.0

//! VFIO ioctl argument structs, copied from and to userspace up to their
//! minimum size (the part every `argsz` a user may give covers).

use crate::bindings;
use crate::errno::EINVAL;
use core::mem::size_of;
use core::ptr;
use kernel::ffi::c_long;
use kernel::prelude::*;
use kernel::types::{AsBytes, FromBytes};
use kernel::uaccess::UserSlice;

// SAFETY: `vfio_irq_info` is four `u32`s: every bit pattern is valid.
unsafe impl FromBytes for bindings::vfio_irq_info {}
// SAFETY: four `u32`s, no padding (checked below), no interior mutability.
unsafe impl AsBytes for bindings::vfio_irq_info {}
// SAFETY: `vfio_irq_set` is five `u32`s and a zero-sized trailing array.
unsafe impl FromBytes for bindings::vfio_irq_set {}
// SAFETY: `vfio_device_ioeventfd` is integers only (`u32`, `u64`, `i32`).
unsafe impl FromBytes for bindings::vfio_device_ioeventfd {}
// SAFETY: `vfio_device_info` is six `u32`s: every bit pattern is valid.
unsafe impl FromBytes for bindings::vfio_device_info {}
// SAFETY: six `u32`s, no padding (checked below), no interior mutability.
unsafe impl AsBytes for bindings::vfio_device_info {}
// SAFETY: `vfio_region_info` is four `u32`s and two `u64`s.
unsafe impl FromBytes for bindings::vfio_region_info {}
// SAFETY: four `u32`s then two `u64`s, no padding (checked below), no
// interior mutability.
unsafe impl AsBytes for bindings::vfio_region_info {}

// No padding in the structs copied out: their sizes are their fields'.
const _: () = assert!(size_of::<bindings::vfio_irq_info>() == 16);
const _: () = assert!(size_of::<bindings::vfio_device_info>() == 24);
const _: () = assert!(size_of::<bindings::vfio_region_info>() == 32);

/// Copies the first `minsz` bytes of a VFIO argument struct in.
pub(crate) fn read_struct<T: FromBytes>(arg: usize, out: &mut T, minsz: usize) -> Result {
    if minsz > size_of::<T>() {
        return Err(EINVAL);
    }
    // SAFETY: `out` is valid for writes of `size_of::<T>() >= minsz` bytes,
    // and any byte pattern written through the slice is a valid `T`
    // (`T: FromBytes`).
    let bytes = unsafe { core::slice::from_raw_parts_mut(ptr::from_mut(out).cast::<u8>(), minsz) };
    UserSlice::new(arg, minsz).reader().read_slice(bytes)
}

/// Copies the first `minsz` bytes of a VFIO argument struct out.
pub(crate) fn write_struct<T: AsBytes>(arg: usize, v: &T, minsz: usize) -> Result<c_long> {
    if minsz > size_of::<T>() {
        return Err(EINVAL);
    }
    // SAFETY: `v` is valid for reads of `size_of::<T>() >= minsz` bytes, all
    // of them initialised (`T: AsBytes`: no padding).
    let bytes = unsafe { core::slice::from_raw_parts(ptr::from_ref(v).cast::<u8>(), minsz) };
    UserSlice::new(arg, minsz).writer().write_slice(bytes)?;
    Ok(0)
}
