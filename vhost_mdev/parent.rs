// SPDX-License-Identifier: GPL-2.0

//! The core's data of a parent: what the parent driver registered.
//!
//! C header: [`include/linux/vhost_mdev.h`](../include/linux/vhost_mdev.h).

use crate::bindings;
use crate::errno::EINVAL;
use crate::mdev::TypeInfo;
use crate::types::MdevType;
use crate::vhost_mdev_ops::for_each_parent_op;
use kernel::prelude::*;

/// A parent driver's registration, as the core keeps it.
///
/// # Invariants
///
/// `info` passed [`Parent::new`]'s checks; everything it points to
/// outlives the parent's registration (the parent driver's contract), and
/// is not used after it.
pub(crate) struct Parent {
    pub(crate) info: bindings::vhost_mdev_parent_info,
}

// SAFETY: `info` is immutable after registration; the parent driver's
// strings, tables and ops may be used from any thread (its contract).
unsafe impl Sync for Parent {}

/// Expands the op list of [`for_each_parent_op!`] into the check that a
/// table has every required op.
macro_rules! required_ops {
    ($(
        $kind:ident $(($has:ident))? $op:ident =>
            $method:ident($($arg:ident: $ty:ty),*) -> $ret:ty [$how:ident];
    )*) => {
        /// Whether the ops table has every op the core requires.
        fn ops_complete(ops: &bindings::vhost_mdev_device_ops) -> bool {
            true $(&& required_ops!(@present $kind ops.$op))*
        }
    };
    (@present required $f:expr) => { $f.is_some() };
    (@present optional $f:expr) => { true };
}

for_each_parent_op!(required_ops);

impl Parent {
    /// Checks what a parent driver registers; see
    /// `include/linux/vhost_mdev.h`.
    ///
    /// # Safety
    ///
    /// `info` must be valid and everything it points to must outlive the
    /// registration.
    pub(crate) unsafe fn new(info: &bindings::vhost_mdev_parent_info) -> Result<Self> {
        if info.abi_version != bindings::VHOST_MDEV_ABI_VERSION {
            // The first member in every version (a pointer before version
            // 2): nothing else of `info` may be read.
            pr_err!(
                "a parent built against another ABI (version field {:#x}) is refused: rebuild it against this core's include/linux/vhost_mdev.h (ABI {})\n",
                info.abi_version,
                bindings::VHOST_MDEV_ABI_VERSION
            );
            return Err(EINVAL);
        }
        if info.name.is_null() || info.ops.is_null() || info.create.is_none() {
            return Err(EINVAL);
        }
        if info.types.is_null() || info.ntypes == 0 || info.ntypes > 64 {
            return Err(EINVAL);
        }
        // SAFETY: checked non-null; the caller guarantees `ops` is valid.
        if !ops_complete(unsafe { &*info.ops }) {
            return Err(EINVAL);
        }
        // INVARIANT: checked above; the caller guarantees the lifetimes.
        Ok(Self { info: *info })
    }

    /// The parent's device ops.
    pub(crate) fn ops(&self) -> &bindings::vhost_mdev_device_ops {
        // SAFETY: checked non-null in `new`; by the type invariant it
        // outlives the registration, and so every instance.
        unsafe { &*self.info.ops }
    }
}

/// The mdev types of a parent driver's registration.
///
/// # Safety
///
/// `info` must have passed [`Parent::new`]; its type table and names must
/// live for `'a`.
pub(crate) unsafe fn types<'a>(
    info: &bindings::vhost_mdev_parent_info,
) -> Result<KVec<TypeInfo<'a, MdevType>>> {
    let n = info.ntypes as usize;
    let mut types = KVec::with_capacity(n, GFP_KERNEL)?;
    for i in 0..info.ntypes {
        // SAFETY: `i < ntypes`; `types` has `ntypes` entries (the caller
        // guarantees).
        let ti = unsafe { &*info.types.add(i as usize) };
        let data = MdevType::new(ti, i)?;
        // SAFETY: `MdevType::new` checked `sysfs_name` non-null; both names
        // are NUL-terminated strings that live for `'a` (the caller
        // guarantees).
        let (sysfs_name, pretty_name) = unsafe {
            (
                CStr::from_char_ptr(ti.sysfs_name),
                (!ti.pretty_name.is_null()).then(|| CStr::from_char_ptr(ti.pretty_name)),
            )
        };
        types.push(
            TypeInfo {
                sysfs_name,
                pretty_name,
                data,
            },
            GFP_KERNEL,
        )?;
    }
    Ok(types)
}
