// SPDX-License-Identifier: GPL-2.0

// The `rust/` layer that a parent module compiles in (out-of-tree Rust
// modules cannot share a crate): `include!()` this file at the root of the
// parent's crate, which then has `crate::bindings`, `crate::datapath` and
// the others, as each of them expects:
//
//     include!("../../rust/parent_modules.rs");
//
// Paths are relative to this file. It holds only module declarations (an
// included file may have no inner attributes or documentation).

#[path = "bindings.rs"]
pub mod bindings;
#[path = "datapath.rs"]
pub mod datapath;
#[path = "errno.rs"]
pub mod errno;
#[path = "kcov.rs"]
pub mod kcov;
#[path = "mm.rs"]
pub mod mm;
/// The packed-ring walker of the `vhost-mdev-proto` crate.
#[allow(dead_code)]
#[path = "../tools/vhost-mdev-proto/src/packed.rs"]
pub mod packed;
#[path = "params.rs"]
pub mod params;
/// One interface over both ring types (`vhost-mdev-proto`).
#[allow(dead_code)]
#[path = "../tools/vhost-mdev-proto/src/ring.rs"]
pub mod ring;
#[path = "sysfs.rs"]
pub mod sysfs;
#[path = "vhost_mdev.rs"]
pub mod vhost_mdev;
#[path = "vhost_mdev_ops.rs"]
mod vhost_mdev_ops;
#[path = "vhost_task.rs"]
pub mod vhost_task;
#[path = "virtio.rs"]
pub mod virtio;
/// The split-ring walker of the `vhost-mdev-proto` crate.
#[allow(dead_code)]
#[path = "../tools/vhost-mdev-proto/src/vring.rs"]
pub mod vring;
