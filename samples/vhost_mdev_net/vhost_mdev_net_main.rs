// SPDX-License-Identifier: GPL-2.0

//! vhost-mdev sample parent: a virtio-net device that loops every frame its
//! driver transmits back into its own receive queue.
//!
//! The reference parent driver for vhost-mdev, written to be copied: one
//! parent (`vhost_mdev_net`) with one mdev type, `vhost_mdev_net-loopback`.
//! Queue 0 is RX, queue 1 is TX. The [`datapath`] owns the worker and the
//! lifecycle; each run moves frames within a [`BUDGET`] through the
//! loopback of [`virtq`], which checks every descriptor. See
//! `Documentation/sample-net.rst` and `Documentation/parent-drivers.rst`.

use kernel::prelude::*;
use kernel::str::CString;
use kernel::{c_str, fmt};

include!("../../rust/parent_modules.rs");
#[allow(dead_code)]
pub mod virtq;

use datapath::{Datapath, Memory, Outcome, Work};
use vhost_mdev::{DeviceHandle, Registration, TypeInfo};
use virtio::*;
use virtq::{Budget, Loopback, RingError, SplitQueue};

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
    | VIRTIO_NET_F_MRG_RXBUF;
const _: () = assert!(virtq::NET_HDR_LEN == VIRTIO_NET_HDR_V1_LEN);
/// `struct virtio_net_config` up to and including `mtu`.
const CONFIG_SIZE: u32 = 12;
const QUEUE_MAX: u16 = 1024;
const RX: u16 = 0;
const TX: u16 = 1;
/// The work of one worker run (then it yields the CPU if the scheduler
/// wants it, and runs again while work is left).
const BUDGET: Budget = Budget::frames(64);
const MTU_MIN: u16 = 68;

/// What the driver configured, and the loopback's data path.
struct NetState {
    /// On the heap: the loopback is about 3 KiB.
    lb: KBox<Loopback>,
    mac: [u8; 6],
    mtu: u16,
    link_up: bool,
    /// The frame being moved (header + data).
    frame: KVec<u8>,
}

impl Work for NetState {
    const QUEUES: u16 = 2;

    /// One run of the worker: moves frames until the budget runs out,
    /// nothing is left, or another task wants the CPU.
    fn run(&mut self, mem: &mut Memory<'_>) -> Result<Outcome, RingError> {
        let out = self
            .lb
            .process_yielding(mem, &mut self.frame, BUDGET, datapath::need_resched)?;
        Ok(Outcome::new()
            .interrupt_if(RX, out.irq_rx)
            .interrupt_if(TX, out.irq_tx)
            .more(out.more))
    }

    fn queue(&mut self, idx: u16) -> &mut SplitQueue {
        if idx == RX {
            &mut self.lb.rx
        } else {
            &mut self.lb.tx
        }
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
        FEATURES
    }

    fn set_driver_features(&self, features: u64) -> Result {
        let mrg_rxbuf = features & VIRTIO_NET_F_MRG_RXBUF != 0;
        self.dp.set_ring_features(features);
        self.dp.with(|st| st.lb.mrg_rxbuf = mrg_rxbuf);
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
            c[10..12].copy_from_slice(&st.mtu.to_le_bytes());
        });
        // max_virtqueue_pairs
        c[8..10].copy_from_slice(&1u16.to_le_bytes());
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
        NetState::QUEUES.into()
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

    fn kick(&self, _idx: u16) {
        self.dp.kick();
    }

    fn start(&self) -> Result {
        self.dp.start(poll_us())
    }

    fn reset(&self) {
        self.dp.reset(|st| st.lb.reset());
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
        let st = NetState {
            lb: KBox::new(Loopback::EMPTY, GFP_KERNEL)?,
            mac,
            mtu: 1500,
            link_up: true,
            frame: KVec::from_elem(0u8, virtq::FRAME_BUF, GFP_KERNEL)?,
        };
        let dp = Datapath::new(handle, c_str!("vhost-mdev-net"), st);
        KBox::pin_init(pin_init!(NetDev { dp <- dp }), GFP_KERNEL)
    }
}

// Per-instance sysfs attributes: mac, mtu, link, and stats/*.

/// Changes the config while the device is not open (a driver reads it at
/// start).
fn set_while_closed(d: &NetDev, f: impl FnOnce(&mut NetState)) -> Result {
    if d.dp.handle().is_open() {
        return Err(EBUSY);
    }
    d.dp.with(f);
    Ok(())
}

/// `mac`: settable while the device is not open.
struct Mac;

#[vtable]
impl sysfs::Attribute<NetParent> for Mac {
    const NAME: &'static CStr = c_str!("mac");

    fn show(d: &NetDev) -> Result<CString> {
        let [a, b, c, e, f, g] = d.dp.with(|st| st.mac);
        CString::try_from_fmt(fmt!("{a:02x}:{b:02x}:{c:02x}:{e:02x}:{f:02x}:{g:02x}\n"))
    }

    fn store(d: &NetDev, text: &str) -> Result {
        let mac = virtq::parse_mac(text).ok_or(EINVAL)?;
        set_while_closed(d, |st| st.mac = mac)
    }
}

/// `mtu`: 68-65535, settable while the device is not open.
struct Mtu;

#[vtable]
impl sysfs::Attribute<NetParent> for Mtu {
    const NAME: &'static CStr = c_str!("mtu");

    fn show(d: &NetDev) -> Result<CString> {
        CString::try_from_fmt(fmt!("{}\n", d.dp.with(|st| st.mtu)))
    }

    fn store(d: &NetDev, text: &str) -> Result {
        let mtu = text.parse::<u16>().ok().filter(|&m| m >= MTU_MIN);
        let mtu = mtu.ok_or(EINVAL)?;
        set_while_closed(d, |st| st.mtu = mtu)
    }
}

/// `link`: `1`/`up` or `0`/`down`; a change fires the config interrupt.
struct Link;

#[vtable]
impl sysfs::Attribute<NetParent> for Link {
    const NAME: &'static CStr = c_str!("link");

    fn show(d: &NetDev) -> Result<CString> {
        let up = d.dp.with(|st| st.link_up);
        CString::try_from_fmt(fmt!("{}\n", u8::from(up)))
    }

    fn store(d: &NetDev, text: &str) -> Result {
        let up = match text {
            "1" | "up" => true,
            "0" | "down" => false,
            _ => return Err(EINVAL),
        };
        let was = d.dp.with(|st| core::mem::replace(&mut st.link_up, up));
        if was != up {
            d.dp.handle().config_changed();
        }
        Ok(())
    }
}

/// The loopback's counters.
fn stats(d: &NetDev) -> virtq::Stats {
    d.dp.with(|st| st.lb.stats)
}

/// The files under `stats/`: name and value, in the order of [`GROUPS`].
const STATS: [(&CStr, fn(&NetDev) -> u64); 14] = [
    (c_str!("tx_packets"), |d| stats(d).tx_packets),
    (c_str!("tx_bytes"), |d| stats(d).tx_bytes),
    (c_str!("rx_packets"), |d| stats(d).rx_packets),
    (c_str!("rx_bytes"), |d| stats(d).rx_bytes),
    (c_str!("drop_oversize"), |d| stats(d).drop_oversize),
    (c_str!("drop_malformed"), |d| stats(d).drop_malformed),
    (c_str!("ring_errors"), |d| d.dp.ring_errors()),
    (c_str!("kicks"), |d| d.dp.kicks()),
    (c_str!("interrupts"), |d| d.dp.interrupts()),
    (c_str!("direct_frames"), |d| stats(d).direct_frames),
    (c_str!("runs"), |d| stats(d).runs),
    (c_str!("max_run_descs"), |d| stats(d).max_run_descs),
    (c_str!("max_run_bytes"), |d| stats(d).max_run_bytes),
    (c_str!("max_stop_runs"), |d| d.dp.max_stop_runs()),
];

/// Counter `I` of [`STATS`] (read-only).
struct Stat<const I: usize>;

#[vtable]
impl<const I: usize> sysfs::Attribute<NetParent> for Stat<I> {
    const NAME: &'static CStr = STATS[I].0;

    fn show(d: &NetDev) -> Result<CString> {
        CString::try_from_fmt(fmt!("{}\n", (STATS[I].1)(d)))
    }
}

sysfs::attribute_groups! {
    static GROUPS: NetParent = [
        (None, [Mac, Mtu, Link]),
        (
            Some(c_str!("stats")),
            [
                Stat<0>, Stat<1>, Stat<2>, Stat<3>, Stat<4>, Stat<5>, Stat<6>,
                Stat<7>, Stat<8>, Stat<9>, Stat<10>, Stat<11>, Stat<12>, Stat<13>,
            ]
        ),
    ];
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
        let reg = Registration::new(c_str!("vhost_mdev_net"), module, &types, Some(&GROUPS))?;
        pr_info!("type vhost_mdev_net-loopback, {} instances\n", max);
        Ok(VhostMdevNet { _reg: reg })
    }
}
