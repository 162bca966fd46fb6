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

use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use kernel::ffi::c_uint;
use kernel::prelude::*;
use kernel::str::CString;
use kernel::sync::Mutex;
use kernel::{c_str, fmt, new_mutex};

#[path = "../../rust/bindings.rs"]
pub mod bindings;
mod copy_ceiling;
#[path = "../../rust/errno.rs"]
pub mod errno;
mod features;
#[path = "../../rust/sysfs.rs"]
pub mod sysfs;
#[path = "../../rust/vhost_mdev.rs"]
pub mod vhost_mdev;
#[path = "../../rust/vhost_mdev_ops.rs"]
mod vhost_mdev_ops;
// Shared with the host-side tests, which use all of it.
#[path = "../../rust/vhost_task.rs"]
pub mod vhost_task;
#[allow(dead_code)]
pub mod virtq;
// The split-ring walker of the `vhost-mdev-proto` crate.
#[allow(dead_code)]
#[path = "../../tools/vhost-mdev-proto/src/vring.rs"]
pub mod vring;

use vhost_mdev::{DeviceHandle, Registration, TypeInfo};
use vhost_task::{TaskHandler, TaskSlot};
use virtq::{Budget, GuestMemory, Loopback};

module! {
    type: VhostMdevNet,
    name: "vhost_mdev_net",
    author: "The vhost-mdev developers",
    description: "vhost-mdev sample: virtio-net loopback parent",
    license: "GPL",
}

extern "C" {
    /// The `max_instances` module parameter (defined in `shim.c`).
    static vhost_mdev_net_max_instances: c_uint;
    /// The `poll_us` module parameter (defined in `shim.c`; 0-1000, may
    /// change at any time).
    static vhost_mdev_net_poll_us: c_uint;
}

const VIRTIO_ID_NET: u32 = 1;
const VIRTIO_NET_F_MTU: u64 = 1 << 3;
const VIRTIO_NET_F_MAC: u64 = 1 << 5;
const VIRTIO_NET_F_MRG_RXBUF: u64 = 1 << 15;
const VIRTIO_NET_F_STATUS: u64 = 1 << 16;
const VIRTIO_RING_F_INDIRECT_DESC: u64 = 1 << 28;
const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << 29;
const VIRTIO_F_VERSION_1: u64 = 1 << 32;
const VIRTIO_F_ACCESS_PLATFORM: u64 = 1 << 33;
const FEATURES: u64 = VIRTIO_F_VERSION_1
    | VIRTIO_F_ACCESS_PLATFORM
    | VIRTIO_NET_F_MAC
    | VIRTIO_NET_F_MTU
    | VIRTIO_NET_F_STATUS
    | VIRTIO_RING_F_EVENT_IDX
    | VIRTIO_RING_F_INDIRECT_DESC
    | VIRTIO_NET_F_MRG_RXBUF;
const VIRTIO_NET_S_LINK_UP: u16 = 1;
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

/// Guest memory through the core's DMA upcall.
///
/// The worker is a thread of the process that started the device (the
/// VMM): with a type1 container, `vfio_dma_rw()` reaches the memory that
/// process mapped through its own address space; with iommufd, any mapping
/// (the pinned-page cache first).
struct Dma<'a> {
    handle: &'a DeviceHandle,
    /// The core copies guest memory to guest memory for us (iommufd).
    direct: bool,
}

impl<'a> Dma<'a> {
    fn new(handle: &'a DeviceHandle) -> Self {
        let direct = handle.dma_can_copy();
        Self { handle, direct }
    }
}

impl GuestMemory for Dma<'_> {
    fn fence(&mut self) {
        // smp_mb(): order our ring stores before the loads that follow.
        core::sync::atomic::fence(Ordering::SeqCst);
    }
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), virtq::Fault> {
        // SAFETY: only the worker uses `Dma`, and `reset` (run before close)
        // stops the worker and waits for it.
        unsafe { self.handle.dma_read(addr, buf) }.map_err(|_| virtq::Fault)
    }
    fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), virtq::Fault> {
        // SAFETY: as in `read`.
        unsafe { self.handle.dma_write(addr, buf) }.map_err(|_| virtq::Fault)
    }
    fn read_u16(&mut self, addr: u64) -> Result<u16, virtq::Fault> {
        // An aligned 2-byte access inside a ring is one load in the core
        // (`vhost_mdev_dma_rw()`), on every back end.
        let mut b = [0u8; 2];
        self.read(addr, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }
    fn write_u16(&mut self, addr: u64, v: u16) -> Result<(), virtq::Fault> {
        // One store in the core, as for `read_u16`.
        self.write(addr, &v.to_le_bytes())
    }
    fn can_copy(&self) -> bool {
        self.direct
    }
    fn copy(&mut self, dst: u64, src: u64, len: usize) -> bool {
        // SAFETY: as in `read`.
        self.direct && unsafe { self.handle.dma_copy(dst, src, len) }.is_ok()
    }
}

/// What the driver configured, and the data path.
struct NetState {
    lb: Loopback,
    features: u64,
    started: bool,
    suspended: bool,
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

/// One loopback instance.
///
/// # Invariants
///
/// The worker (`task`) is stopped in `reset`, `suspend` and on drop; it
/// moves frames only while `running` is set, which it checks under the
/// state lock.
#[pin_data(PinnedDrop)]
struct NetDev {
    handle: DeviceHandle,
    task: TaskSlot,
    /// The worker may move frames (started, not suspended, not broken).
    running: AtomicBool,
    /// A stop (reset, suspend, drop) waits for the worker.
    stopping: AtomicBool,
    /// Worker runs that ended while the current stop waited.
    stop_runs: AtomicU64,
    /// Most worker runs a stop waited for.
    max_stop_runs: AtomicU64,
    kicks: AtomicU64,
    interrupts: AtomicU64,
    #[pin]
    state: Mutex<NetState>,
}

impl NetDev {
    fn interrupt(&self, idx: u16) {
        self.interrupts.fetch_add(1, Ordering::Relaxed);
        self.handle.vq_interrupt(idx);
    }

    /// Stops the worker and waits until it is gone.
    fn quiesce(&self) {
        self.running.store(false, Ordering::Release);
        self.stop_runs.store(0, Ordering::Relaxed);
        self.stopping.store(true, Ordering::Release);
        self.task.stop();
        self.stopping.store(false, Ordering::Relaxed);
        self.max_stop_runs
            .fetch_max(self.stop_runs.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Starts the worker, a thread of the calling process.
    fn start_worker(&self) -> Result {
        self.running.store(true, Ordering::Release);
        // SAFETY: a module parameter that root may write at any time: one
        // volatile load of an aligned `c_uint` (READ_ONCE()); its setter
        // keeps it within 0-1000.
        let poll_us = unsafe { ptr::read_volatile(ptr::addr_of!(vhost_mdev_net_poll_us)) };
        self.task.set_poll_ns(u64::from(poll_us.min(1000)) * 1000);
        // SAFETY: `self` is pinned in its box for its whole life and stops
        // the worker (`quiesce`) in `reset`, `suspend` and on drop; the core
        // serialises start, resume, suspend and reset.
        let r = unsafe { self.task.start(self, c_str!("vhost-mdev-net")) };
        if r.is_err() {
            self.running.store(false, Ordering::Release);
        }
        r?;
        // Buffers may already be waiting.
        self.task.wake();
        Ok(())
    }
}

impl TaskHandler for NetDev {
    fn task_slot(&self) -> &TaskSlot {
        &self.task
    }

    /// One run of the worker: moves frames until the budget runs out,
    /// nothing is left, or another task wants the CPU; then drops the state
    /// lock. Returns whether to run again.
    fn run(&self) -> bool {
        let mut st = self.state.lock();
        if !self.running.load(Ordering::Acquire) || !st.started || st.suspended {
            return false;
        }
        let mut dma = Dma::new(&self.handle);
        let NetState { lb, frame, .. } = &mut *st;
        let r = lb.process_yielding(&mut dma, frame, BUDGET, || {
            // SAFETY: reads a flag of the current task.
            unsafe { bindings::vhost_mdev_helper_need_resched() }
        });
        if self.stopping.load(Ordering::Acquire) {
            self.stop_runs.fetch_add(1, Ordering::Relaxed);
        }
        match r {
            Ok(out) => {
                drop(st);
                if out.irq_rx {
                    self.interrupt(RX);
                }
                if out.irq_tx {
                    self.interrupt(TX);
                }
                out.more
            }
            Err(_) => {
                st.lb.stats.ring_errors += 1;
                st.started = false;
                self.running.store(false, Ordering::Release);
                drop(st);
                // The driver broke a ring or unmapped its memory: stop and
                // tell it; only a reset brings the device back.
                self.handle.needs_reset();
                false
            }
        }
    }

    fn killed(&self) {
        // The VMM is going (SIGKILL), or lost its worker (exec): nothing
        // moves frames until a reset and a new DRIVER_OK; an opener that
        // survives learns it from the status.
        self.running.store(false, Ordering::Release);
        self.handle.needs_reset();
    }
}

#[pinned_drop]
impl PinnedDrop for NetDev {
    fn drop(self: Pin<&mut Self>) {
        self.quiesce();
    }
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
        let mut st = self.state.lock();
        st.features = features;
        st.lb.mrg_rxbuf = features & VIRTIO_NET_F_MRG_RXBUF != 0;
        let (event_idx, indirect) = (
            features & VIRTIO_RING_F_EVENT_IDX != 0,
            features & VIRTIO_RING_F_INDIRECT_DESC != 0,
        );
        let lb = &mut st.lb;
        for q in [&mut lb.rx, &mut lb.tx] {
            q.event_idx = event_idx;
            q.indirect = indirect;
        }
        Ok(())
    }

    fn config_size(&self) -> u32 {
        CONFIG_SIZE
    }

    fn get_config(&self, offset: u32, buf: &mut [u8]) {
        let c = self.state.lock().config();
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
        let mut st = self.state.lock();
        let q = st.queue(idx);
        q.num = num as u16;
        q.invalidate();
    }

    fn set_vq_address(&self, idx: u16, desc: u64, driver: u64, device: u64) {
        let mut st = self.state.lock();
        let q = st.queue(idx);
        q.desc = desc;
        q.avail = driver;
        q.used = device;
        q.invalidate();
    }

    fn set_vq_ready(&self, idx: u16, ready: bool) {
        self.state.lock().queue(idx).ready = ready;
    }

    fn set_vq_base(&self, idx: u16, base: u32) {
        // A split ring: the next available index (bits 0-15).
        let base = base as u16;
        let mut st = self.state.lock();
        let q = st.queue(idx);
        q.last_avail = base;
        q.used_idx = base;
        q.signalled_used = base;
        q.invalidate();
    }

    fn get_vq_base(&self, idx: u16) -> u32 {
        u32::from(self.state.lock().queue(idx).last_avail)
    }

    fn kick(&self, _idx: u16) {
        self.kicks.fetch_add(1, Ordering::Relaxed);
        if self.running.load(Ordering::Acquire) {
            self.task.wake();
        }
    }

    /// DRIVER_OK, from the VMM's ioctl or region write: the worker becomes
    /// a thread of the VMM, accounted and scheduled with it.
    fn start(&self) -> Result {
        {
            let mut st = self.state.lock();
            st.started = true;
            st.suspended = false;
        }
        let r = self.start_worker();
        if r.is_err() {
            self.state.lock().started = false;
        }
        r
    }

    fn reset(&self) {
        self.quiesce();
        let mut st = self.state.lock();
        let stats = st.lb.stats;
        st.lb = Loopback::default();
        // Counters survive resets: they describe the instance.
        st.lb.stats = stats;
        st.features = 0;
        st.started = false;
        st.suspended = false;
    }

    fn suspend(&self) -> Result {
        self.quiesce();
        self.state.lock().suspended = true;
        Ok(())
    }

    fn resume(&self) -> Result {
        let started = {
            let mut st = self.state.lock();
            st.suspended = false;
            st.started
        };
        if started {
            self.start_worker()?;
        }
        Ok(())
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
        let frame = KVec::from_elem(0u8, virtq::FRAME_BUF, GFP_KERNEL)?;
        let dev = KBox::pin_init(
            pin_init!(NetDev {
                handle,
                task: TaskSlot::new(),
                running: AtomicBool::new(false),
                stopping: AtomicBool::new(false),
                stop_runs: AtomicU64::new(0),
                max_stop_runs: AtomicU64::new(0),
                kicks: AtomicU64::new(0),
                interrupts: AtomicU64::new(0),
                state <- new_mutex!(NetState {
                    lb: Loopback::default(),
                    features: 0,
                    started: false,
                    suspended: false,
                    mac,
                    mtu: 1500,
                    link_up: true,
                    frame,
                }, "vhost_mdev_net_state"),
            }),
            GFP_KERNEL,
        )?;
        Ok(dev)
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
        let m = d.state.lock().mac;
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
        if d.handle.is_open() {
            return Err(EBUSY);
        }
        d.state.lock().mac = mac;
        Ok(())
    }
}

/// `mtu`: 68-65535, settable while the device is not open.
struct Mtu;

#[vtable]
impl sysfs::Attribute<NetParent> for Mtu {
    const NAME: &'static CStr = c_str!("mtu");

    fn show(d: &NetDev) -> Result<CString> {
        CString::try_from_fmt(fmt!("{}\n", d.state.lock().mtu))
    }

    fn store(d: &NetDev, text: &str) -> Result {
        let mtu: u16 = text.parse().map_err(|_| EINVAL)?;
        if mtu < MTU_MIN {
            return Err(EINVAL);
        }
        if d.handle.is_open() {
            return Err(EBUSY);
        }
        d.state.lock().mtu = mtu;
        Ok(())
    }
}

/// `link`: `1`/`up` or `0`/`down`; a change fires the config interrupt.
struct Link;

#[vtable]
impl sysfs::Attribute<NetParent> for Link {
    const NAME: &'static CStr = c_str!("link");

    fn show(d: &NetDev) -> Result<CString> {
        let up = d.state.lock().link_up;
        CString::try_from_fmt(fmt!("{}\n", u8::from(up)))
    }

    fn store(d: &NetDev, text: &str) -> Result {
        let up = match text {
            "1" | "up" => true,
            "0" | "down" => false,
            _ => return Err(EINVAL),
        };
        let changed = {
            let mut st = d.state.lock();
            let changed = st.link_up != up;
            st.link_up = up;
            changed
        };
        if changed {
            d.handle.config_changed();
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
    let s = d.state.lock().lb.stats;
    match i {
        0 => s.tx_packets,
        1 => s.tx_bytes,
        2 => s.rx_packets,
        3 => s.rx_bytes,
        4 => s.drop_oversize,
        5 => s.drop_malformed,
        6 => s.ring_errors,
        7 => d.kicks.load(Ordering::Relaxed),
        8 => d.interrupts.load(Ordering::Relaxed),
        9 => s.direct_frames,
        10 => s.runs,
        11 => s.max_run_descs,
        12 => s.max_run_bytes,
        _ => d.max_stop_runs.load(Ordering::Relaxed),
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
    _copy_ceiling: copy_ceiling::CopyCeiling,
}

impl kernel::Module for VhostMdevNet {
    fn init(module: &'static ThisModule) -> Result<Self> {
        // SAFETY: a module parameter, written only while loading.
        let max = unsafe { vhost_mdev_net_max_instances };
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
        Ok(VhostMdevNet {
            _reg: reg,
            _copy_ceiling: copy_ceiling::CopyCeiling::new(module)?,
        })
    }
}
