// SPDX-License-Identifier: GPL-2.0

//! The core's data of a parent: what the parent driver registered.
//!
//! C header: [`include/linux/vhost_mdev.h`](../include/linux/vhost_mdev.h).

use crate::bindings;
use crate::errno::EINVAL;
use crate::mdev::TypeInfo;
use crate::types::MdevType;
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

/// Whether the ops table has every op the core requires.
fn ops_complete(ops: &bindings::vhost_mdev_device_ops) -> bool {
    let required = [
        ops.get_device_id.is_some(),
        ops.get_vendor_id.is_some(),
        ops.get_device_features.is_some(),
        ops.set_driver_features.is_some(),
        ops.get_config_size.is_some(),
        ops.get_config.is_some(),
        ops.set_config.is_some(),
        ops.get_vq_count.is_some(),
        ops.get_vq_num_max.is_some(),
        ops.set_vq_num.is_some(),
        ops.set_vq_address.is_some(),
        ops.set_vq_ready.is_some(),
        ops.set_vq_base.is_some(),
        ops.get_vq_base.is_some(),
        ops.kick_vq.is_some(),
        ops.start.is_some(),
        ops.reset.is_some(),
        ops.destroy.is_some(),
    ];
    required.iter().all(|present| *present)
}

impl Parent {
    /// Checks what a parent driver registers; see
    /// `include/linux/vhost_mdev.h`.
    ///
    /// # Safety
    ///
    /// `info` must be valid and everything it points to must outlive the
    /// registration.
    pub(crate) unsafe fn new(info: &bindings::vhost_mdev_parent_info) -> Result<Self> {
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
