// SPDX-License-Identifier: GPL-2.0

//! Placeholder while the sample is written.

use kernel::prelude::*;

module! {
    type: VhostMdevNet,
    name: "vhost_mdev_net",
    author: "The vhost-mdev developers",
    description: "vhost-mdev sample: virtio-net loopback parent",
    license: "GPL",
}

struct VhostMdevNet;

impl kernel::Module for VhostMdevNet {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        Ok(VhostMdevNet)
    }
}
