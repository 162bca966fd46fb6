// SPDX-License-Identifier: GPL-2.0 OR MIT

//! The sample parent's pure logic, compiled for the host so that `cargo
//! test` can feed it arbitrary input. The sources are the module's own
//! files, not copies. (The protocol model is the `vhost-mdev-proto` crate,
//! with its own tests.)

#[path = "../../../samples/vhost_mdev_net/virtq.rs"]
pub mod virtq;
