// SPDX-License-Identifier: GPL-2.0 OR MIT

//! The kernel modules' pure logic, compiled for the host so that `cargo
//! test` can feed it arbitrary input. The sources are the modules' own
//! files, not copies.

#[path = "../../../vhost_mdev/proto.rs"]
pub mod proto;

#[path = "../../../samples/vhost_mdev_net/virtq.rs"]
pub mod virtq;
