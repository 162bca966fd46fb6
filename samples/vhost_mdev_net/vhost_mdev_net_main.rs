// SPDX-License-Identifier: GPL-2.0

//! vhost-mdev sample parent: a virtio-net device that loops every frame its
//! driver transmits back into its own receive queue.
//!
//! The reference parent driver for vhost-mdev: one parent
//! (`vhost_mdev_net`) with one mdev type, `vhost_mdev_net-loopback`. Queue 0
//! is RX, queue 1 is TX. Kicks only wake the instance's worker, a thread of
//! the VMM that started the device ([`vhost_task`]), which moves frames
//! through guest memory within a [`BUDGET`] of frames, descriptors and bytes
//! per run (`vhost_mdev_dma_rw()`; with iommufd, frame data is copied once,
//! TX buffer to RX buffer, with `vhost_mdev_dma_copy()`), checking every
//! descriptor ([`virtq`]); a ring the driver corrupted puts the device into
//! DEVICE_NEEDS_RESET. See `Documentation/sample-net.rst`.

use kernel::prelude::*;
use kernel::str::CString;
use kernel::{c_str, fmt};

#[path = "../../rust/bindings.rs"]
pub mod bindings;
#[path = "../../rust/datapath.rs"]
pub mod datapath;
#[path = "../../rust/errno.rs"]
pub mod errno;
#[path = "../../rust/params.rs"]
pub mod params;
#[path = "../../rust/sysfs.rs"]
pub mod sysfs;
#[path = "../../rust/vhost_mdev.rs"]
pub mod vhost_mdev;
#[path = "../../rust/vhost_task.rs"]
pub mod vhost_task;
#[path = "../../rust/virtio.rs"]
pub mod virtio;
#[allow(dead_code)]
pub mod virtq;
// The split-ring walker of the `vhost-mdev-proto` crate.
#[allow(dead_code)]
#[path = "../../tools/vhost-mdev-proto/src/vring.rs"]
pub mod vring;

use datapath::{Datapath, Memory, Outcome, Work};
use vhost_mdev::{DeviceHandle, Registration, TypeInfo};
use virtio::{
    VIRTIO_F_ACCESS_PLATFORM, VIRTIO_F_VERSION_1, VIRTIO_ID_NET, VIRTIO_NET_F_MAC,
    VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_MTU, VIRTIO_NET_F_STATUS, VIRTIO_NET_HDR_V1_LEN,
    VIRTIO_NET_S_LINK_UP, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};
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
}

params::c_uint! {
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
const NUM_QUEUES: u32 = 2;
const QUEUE_MAX: u16 = 1024;
const RX: u16 = 0;
const TX: u16 = 1;
/// The work of one worker run (then it yields the CPU if the scheduler
/// wants it, and runs again while work is left).
const BUDGET: Budget = Budget::frames(64);
const MTU_MIN: u16 = 68;

/// What the driver configured, and the loopback's data path.
struct NetState {
    lb: Loopback,
    mac: [u8; 6],
    mtu: u16,
    link_up: bool,
    /// The frame being moved (header + data).
    frame: KVec<u8>,
}

impl NetState {
    fn config(&self) -> [u8; CONFIG_SIZE as usize] {
        let mut c = [0u8; CONFIG_SIZE as usize];
        c[..6].copy_from_slice(&self.mac);
        let status = if self.link_up {
            VIRTIO_NET_S_LINK_UP
        } else {
            0
        };
        c[6..8].copy_from_slice(&status.to_le_bytes());
        c[8..10].copy_from_slice(&1u16.to_le_bytes());
        c[10..12].copy_from_slice(&self.mtu.to_le_bytes());
        c
    }

    fn queue(&mut self, idx: u16) -> &mut virtq::SplitQueue {
        if idx == RX {
            &mut self.lb.rx
        } else {
            &mut self.lb.tx
        }
    }
}

impl Work for NetState {
    /// One run of the worker: moves frames until the budget runs out,
    /// nothing is left, or another task wants the CPU.
    fn run(&mut self, mem: &mut Memory<'_>) -> Result<Outcome, RingError> {
        let Self { lb, frame, .. } = self;
        match lb.process_yielding(mem, frame, BUDGET, datapath::need_resched) {
            Ok(out) => Ok(Outcome::new()
                .interrupt_if(RX, out.irq_rx)
                .interrupt_if(TX, out.irq_tx)
                .more(out.more)),
            Err(e) => {
                lb.stats.ring_errors += 1;
                Err(e)
            }
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
        self.dp.with(|st| {
            st.lb.mrg_rxbuf = features & VIRTIO_NET_F_MRG_RXBUF != 0;
            for q in [&mut st.lb.rx, &mut st.lb.tx] {
                q.event_idx = features & VIRTIO_RING_F_EVENT_IDX != 0;
                q.indirect = features & VIRTIO_RING_F_INDIRECT_DESC != 0;
            }
        });
        Ok(())
    }

    fn config_size(&self) -> u32 {
        CONFIG_SIZE
    }

    fn get_config(&self, offset: u32, buf: &mut [u8]) {
        let c = self.dp.with(|st| st.config());
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
        NUM_QUEUES
    }

    fn vq_num_max(&self) -> u16 {
        QUEUE_MAX
    }

    fn set_vq_num(&self, idx: u16, num: u32) {
        self.dp.with(|st| {
            let q = st.queue(idx);
            q.num = num as u16;
            q.invalidate();
        });
    }

    fn set_vq_address(&self, idx: u16, desc: u64, driver: u64, device: u64) {
        self.dp.with(|st| {
            let q = st.queue(idx);
            q.desc = desc;
            q.avail = driver;
            q.used = device;
            q.invalidate();
        });
    }

    fn set_vq_ready(&self, idx: u16, ready: bool) {
        self.dp.with(|st| st.queue(idx).ready = ready);
    }

    fn set_vq_base(&self, idx: u16, base: u16) {
        self.dp.with(|st| {
            let q = st.queue(idx);
            q.last_avail = base;
            q.used_idx = base;
            q.signalled_used = base;
            q.invalidate();
        });
    }

    fn get_vq_base(&self, idx: u16) -> u16 {
        self.dp.with(|st| st.queue(idx).last_avail)
    }

    fn kick(&self, _idx: u16) {
        self.dp.kick();
    }

    fn start(&self) -> Result {
        self.dp.start(poll_us())
    }

    fn reset(&self) {
        self.dp.reset(|st| {
            // Counters survive resets: they describe the instance.
            let stats = st.lb.stats;
            st.lb = Loopback::default();
            st.lb.stats = stats;
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
        let st = NetState {
            lb: Loopback::default(),
            mac,
            mtu: 1500,
            link_up: true,
            frame: KVec::from_elem(0u8, virtq::FRAME_BUF, GFP_KERNEL)?,
        };
        let name = c_str!("vhost-mdev-net");
        KBox::pin_init(
            pin_init!(NetDev {
                dp <- Datapath::new(handle, name, st),
            }),
            GFP_KERNEL,
        )
    }
}

// ---------------------------------------------------------------------------
// Per-instance sysfs attributes: mac, mtu, link, and stats/*.

fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut n = 0;
    for part in s.split(':') {
        if n == 6 || part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(EINVAL);
        }
        mac[n] = u8::from_str_radix(part, 16).map_err(|_| EINVAL)?;
        n += 1;
    }
    // A unicast address, not all zeroes.
    if n != 6 || mac[0] & 1 != 0 || mac == [0; 6] {
        return Err(EINVAL);
    }
    Ok(mac)
}

/// `mac`: settable while the device is not open.
struct Mac;

#[vtable]
impl sysfs::Attribute<NetParent> for Mac {
    const NAME: &'static CStr = c_str!("mac");

    fn show(d: &NetDev) -> Result<CString> {
        let m = d.dp.with(|st| st.mac);
        CString::try_from_fmt(fmt!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}\n",
            m[0],
            m[1],
            m[2],
            m[3],
            m[4],
            m[5]
        ))
    }

    fn store(d: &NetDev, text: &str) -> Result {
        let mac = parse_mac(text)?;
        if d.dp.handle().is_open() {
            return Err(EBUSY);
        }
        d.dp.with(|st| st.mac = mac);
        Ok(())
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
        let mtu: u16 = text.parse().map_err(|_| EINVAL)?;
        if mtu < MTU_MIN {
            return Err(EINVAL);
        }
        if d.dp.handle().is_open() {
            return Err(EBUSY);
        }
        d.dp.with(|st| st.mtu = mtu);
        Ok(())
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
        let changed =
            d.dp.with(|st| core::mem::replace(&mut st.link_up, up) != up);
        if changed {
            d.dp.handle().config_changed();
        }
        Ok(())
    }
}

/// The counters under `stats/`: their names, in the order of [`stat`].
const STAT_NAMES: [&CStr; 14] = [
    c_str!("tx_packets"),
    c_str!("tx_bytes"),
    c_str!("rx_packets"),
    c_str!("rx_bytes"),
    c_str!("drop_oversize"),
    c_str!("drop_malformed"),
    c_str!("ring_errors"),
    c_str!("kicks"),
    c_str!("interrupts"),
    c_str!("direct_frames"),
    c_str!("runs"),
    c_str!("max_run_descs"),
    c_str!("max_run_bytes"),
    c_str!("max_stop_runs"),
];

/// Counter `i` of [`STAT_NAMES`].
fn stat(d: &NetDev, i: usize) -> u64 {
    let s = d.dp.with(|st| st.lb.stats);
    match i {
        0 => s.tx_packets,
        1 => s.tx_bytes,
        2 => s.rx_packets,
        3 => s.rx_bytes,
        4 => s.drop_oversize,
        5 => s.drop_malformed,
        6 => s.ring_errors,
        7 => d.dp.kicks(),
        8 => d.dp.interrupts(),
        9 => s.direct_frames,
        10 => s.runs,
        11 => s.max_run_descs,
        12 => s.max_run_bytes,
        _ => d.dp.max_stop_runs(),
    }
}

/// Counter `I` of [`stat`] (read-only).
struct Stat<const I: usize>;

#[vtable]
impl<const I: usize> sysfs::Attribute<NetParent> for Stat<I> {
    const NAME: &'static CStr = STAT_NAMES[I];

    fn show(d: &NetDev) -> Result<CString> {
        CString::try_from_fmt(fmt!("{}\n", stat(d, I)))
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

// ---------------------------------------------------------------------------

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
