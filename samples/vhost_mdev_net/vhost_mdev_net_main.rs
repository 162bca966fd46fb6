// SPDX-License-Identifier: GPL-2.0

//! vhost-mdev sample parent: a virtio-net device that loops every frame its
//! driver transmits back into its own receive queue.
//!
//! The reference parent driver for vhost-mdev, written to be copied: one
//! parent (`vhost_mdev_net`) with one mdev type, `vhost_mdev_net-loopback`.
//! It has `queue_pairs` pairs (1 to [`MAX_PAIRS`], a sysfs attribute):
//! queue `2i` is the RX of pair `i`, queue `2i + 1` its TX, and TX `i`
//! loops into RX `i` only. Split or packed rings. The [`datapath`] owns the
//! worker (one work item per pair) and the lifecycle; each run of a pair
//! moves frames within a [`BUDGET`] through the loopback of [`virtq`],
//! which checks every descriptor. See `Documentation/sample-net.rst` and
//! `Documentation/parent-drivers.rst`.

use kernel::prelude::*;
use kernel::str::CString;
use kernel::{c_str, fmt};

include!("../../rust/parent_modules.rs");
mod attrs;
#[allow(dead_code)]
pub mod virtq;

use datapath::{Datapath, Ids, Memory, Outcome, VirtQueue, Work};
use vhost_mdev::{DeviceHandle, Registration, TypeInfo};
use virtio::*;
use virtq::{Budget, Loopback, RingError};

module! {
    type: VhostMdevNet,
    name: "vhost_mdev_net",
    author: "The vhost-mdev developers",
    description: "vhost-mdev sample: virtio-net loopback parent",
    license: "GPL",
}

params::c_uint! {
    /// The `max_instances` module parameter (defined in `shim.c`; 1-1024,
    /// read at load).
    fn max_instances = vhost_mdev_net_max_instances;
    /// The `poll_us` module parameter (defined in `shim.c`; 0-1000, may
    /// change at any time): read when a device starts or resumes.
    fn poll_us = vhost_mdev_net_poll_us;
}

const FEATURES: u64 = VIRTIO_F_VERSION_1
    | VIRTIO_F_ACCESS_PLATFORM
    | VIRTIO_NET_F_MAC
    | VIRTIO_NET_F_MTU
    | VIRTIO_NET_F_STATUS
    | VIRTIO_RING_F_EVENT_IDX
    | VIRTIO_RING_F_INDIRECT_DESC
    | VIRTIO_NET_F_MRG_RXBUF
    | VIRTIO_F_RING_PACKED
    // Every write to guest memory goes through the datapath's `Memory`,
    // which the core logs: live migration.
    | VHOST_F_LOG_ALL;
const _: () = assert!(virtq::NET_HDR_LEN == VIRTIO_NET_HDR_V1_LEN);
/// `struct virtio_net_config` up to and including `mtu`.
const CONFIG_SIZE: u32 = 12;
const QUEUE_MAX: u16 = 1024;
/// Most queue pairs: about 9 KiB of heap each (the loopback and its two
/// packed id tables); a `stats/*_per_pair` file of 128 counters fits a
/// sysfs page whatever their values.
pub const MAX_PAIRS: u16 = 128;
/// The work of one worker run (then it yields the CPU if the scheduler
/// wants it, and runs again while work is left).
const BUDGET: Budget = Budget::frames(64);
const MTU_MIN: u16 = 68;

/// What the driver configured, and the loopbacks' data path.
struct NetState {
    /// The loopback of each pair, on the heap (about 4.5 KiB each, and
    /// the id tables). Never shrinks: pairs beyond `pairs` keep their
    /// counters, and every queue index the core knows has its queue.
    lbs: KVec<KBox<Loopback>>,
    /// Queue pairs (`queue_pairs`): 1 to `lbs.len()`.
    pairs: u16,
    mac: [u8; 6],
    mtu: u16,
    link_up: bool,
    /// The frame being moved (header + data).
    frame: KVec<u8>,
}

impl NetState {
    /// Sets the number of queue pairs, allocating the loopbacks it lacks
    /// (with packed id tables of `QUEUE_MAX` entries).
    fn set_pairs(&mut self, pairs: u16) -> Result {
        if !(1..=MAX_PAIRS).contains(&pairs) {
            return Err(EINVAL);
        }
        while self.lbs.len() < usize::from(pairs) {
            // Filled from a constant, in place: never on the stack.
            let mut lb = KBox::new(Loopback::EMPTY, GFP_KERNEL)?;
            lb.rx.packed.ids = Ids::new(QUEUE_MAX)?;
            lb.tx.packed.ids = Ids::new(QUEUE_MAX)?;
            self.lbs.push(lb, GFP_KERNEL)?;
        }
        self.pairs = pairs;
        Ok(())
    }

    /// The counters of every pair's loopback, added up.
    fn totals(&self) -> virtq::Stats {
        let mut t = virtq::Stats::default();
        for lb in self.lbs.iter() {
            t.add(&lb.stats);
        }
        t
    }
}

impl Work for NetState {
    type Queue = VirtQueue;
    /// One work item per pair.
    const ITEM_QUEUES: u16 = 2;

    fn queue_count(&self) -> u16 {
        2 * self.pairs
    }

    /// One run of pair `item`: moves frames until the budget runs out,
    /// nothing is left, or another task wants the CPU.
    fn run(&mut self, item: u16, mem: &mut Memory<'_>) -> Result<Outcome, RingError> {
        let Some(lb) = self.lbs.get_mut(usize::from(item)) else {
            return Ok(Outcome::new());
        };
        let out = lb.process_yielding(mem, &mut self.frame, BUDGET, datapath::need_resched)?;
        Ok(Outcome::new()
            .interrupt_if(2 * item, out.irq_rx)
            .interrupt_if(2 * item + 1, out.irq_tx)
            .more(out.more))
    }

    /// Queue `idx`: the RX (even) or TX (odd) queue of pair `idx / 2`.
    fn queue(&mut self, idx: u16) -> Option<&mut VirtQueue> {
        let lb = self.lbs.get_mut(usize::from(idx / 2))?;
        Some(if idx % 2 == 0 { &mut lb.rx } else { &mut lb.tx })
    }
}

/// One loopback instance: its data path owns the worker and the state.
#[pin_data]
struct NetDev {
    #[pin]
    dp: Datapath<NetState>,
}

#[vtable]
impl vhost_mdev::Device for NetDev {
    fn device_id(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn device_features(&self) -> u64 {
        // MQ only with several pairs; never CTRL_VQ (the VMM owns the
        // control queue).
        let mq = self.dp.with(|st| st.pairs > 1);
        FEATURES | if mq { VIRTIO_NET_F_MQ } else { 0 }
    }

    fn set_driver_features(&self, features: u64) -> Result {
        let mrg_rxbuf = features & VIRTIO_NET_F_MRG_RXBUF != 0;
        self.dp.set_ring_features(features)?;
        self.dp.with(|st| {
            for lb in st.lbs.iter_mut() {
                lb.mrg_rxbuf = mrg_rxbuf;
            }
        });
        Ok(())
    }

    fn config_size(&self) -> u32 {
        CONFIG_SIZE
    }

    fn get_config(&self, offset: u32, buf: &mut [u8]) {
        let mut c = [0u8; CONFIG_SIZE as usize];
        self.dp.with(|st| {
            let status = VIRTIO_NET_S_LINK_UP * u16::from(st.link_up);
            c[..6].copy_from_slice(&st.mac);
            c[6..8].copy_from_slice(&status.to_le_bytes());
            c[8..10].copy_from_slice(&st.pairs.to_le_bytes());
            c[10..12].copy_from_slice(&st.mtu.to_le_bytes());
        });
        let off = offset as usize;
        if let Some(src) = c.get(off..off + buf.len()) {
            buf.copy_from_slice(src);
        }
    }

    fn set_config(&self, _offset: u32, _data: &[u8]) {
        // The net config space is read-only for the driver (virtio 1.x,
        // 5.1.4): writes are ignored.
    }

    fn vq_count(&self) -> u32 {
        self.dp.with(|st| st.queue_count()).into()
    }

    fn vq_num_max(&self) -> u16 {
        QUEUE_MAX
    }

    fn set_vq_num(&self, idx: u16, num: u32) {
        self.dp.set_vq_num(idx, num)
    }

    fn set_vq_address(&self, idx: u16, desc: u64, driver: u64, device: u64) {
        self.dp.set_vq_address(idx, desc, driver, device)
    }

    fn set_vq_ready(&self, idx: u16, ready: bool) {
        self.dp.set_vq_ready(idx, ready)
    }

    fn set_vq_base(&self, idx: u16, base: u32) {
        self.dp.set_vq_base(idx, base)
    }

    fn get_vq_base(&self, idx: u16) -> u32 {
        self.dp.get_vq_base(idx)
    }

    fn kick(&self, idx: u16) {
        self.dp.kick(idx);
    }

    fn start(&self) -> Result {
        self.dp.start(poll_us())
    }

    fn reset(&self) {
        self.dp.reset(|st| {
            for lb in st.lbs.iter_mut() {
                lb.reset();
            }
        });
    }

    fn suspend(&self) -> Result {
        self.dp.suspend()
    }

    fn resume(&self) -> Result {
        self.dp.resume(poll_us())
    }
}

/// The parent: creates loopback instances.
struct NetParent;

impl vhost_mdev::Parent for NetParent {
    type Device = NetDev;

    fn create(handle: DeviceHandle, _type_index: u32) -> Result<Pin<KBox<NetDev>>> {
        // A stable, locally administered unicast MAC from the UUID.
        let u = handle.uuid();
        let mac = [0x02, u[0], u[1], u[2], u[3], u[4]];
        let mut st = NetState {
            lbs: KVec::new(),
            pairs: 0,
            mac,
            mtu: 1500,
            link_up: true,
            frame: KVec::from_elem(0u8, virtq::FRAME_BUF, GFP_KERNEL)?,
        };
        st.set_pairs(1)?;
        let dp = Datapath::new(handle, c_str!("vhost-mdev-net"), st);
        KBox::pin_init(pin_init!(NetDev { dp <- dp }), GFP_KERNEL)
    }
}

struct VhostMdevNet {
    _reg: Registration<NetParent>,
}

impl kernel::Module for VhostMdevNet {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let max = max_instances();
        if !(1..=1024).contains(&max) {
            pr_err!("max_instances={} is out of range 1-1024\n", max);
            return Err(EINVAL);
        }
        let types = [TypeInfo {
            sysfs_name: c_str!("loopback"),
            pretty_name: c_str!("virtio-net loopback"),
            description: c_str!("virtio-net device that loops TX back to RX (vhost-mdev sample)"),
            max_instances: max,
        }];
        let reg = Registration::new(
            c_str!("vhost_mdev_net"),
            module,
            &types,
            Some(&attrs::GROUPS),
        )?;
        pr_info!("type vhost_mdev_net-loopback, {} instances\n", max);
        Ok(VhostMdevNet { _reg: reg })
    }
}
