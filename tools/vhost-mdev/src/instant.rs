// SPDX-License-Identifier: GPL-2.0 OR MIT
//! An in-process virtio-net loopback that completes at once: the ceiling
//! of the driver itself.
//!
//! [`InstantNet`] is a [`VhostBackend`] and a [`DmaMapper`] with no kernel
//! behind it. It answers the vhost requests of [`crate::driver::NetDriver`]
//! (features, the status state machine, a config space with a MAC, ring
//! size, addresses, bases and enables) with the rules of the vhost-mdev core
//! (`vhost_mdev/proto.rs`), takes the driver's DMA mappings as guest memory
//! (a `vm_memory::GuestMemoryMmap` over the driver's own pages, IOVA =
//! guest address), and serves the rings with the rust-vmm `virtio-queue`
//! device-side split queue.
//!
//! A kick ([`VhostBackend::notify`], on either queue) loops every available
//! TX frame to RX in the caller's thread, before `notify` returns: the TX
//! chain is completed with used length 0, RX buffers are taken (several,
//! spanned, with `VIRTIO_NET_F_MRG_RXBUF`), a virtio-net header with
//! `num_buffers` is written, and the used length reports the whole frame.
//! Only the first [`InstantOptions::copy_limit`] bytes of each frame are
//! copied (64 by default: the benchmark driver reads the sequence number at
//! frame offset 18 and nothing past it), so the device costs next to nothing
//! whatever the frame size: userspace copies of large buffers collapse under
//! TCG, and what is measured here is the driver. `vhost-mdev ping instant`
//! copies whole frames, so that they come back byte-identical.
//!
//! Notifications follow the driver's suppression: the call eventfd of a
//! queue is written only when `VIRTIO_RING_F_EVENT_IDX`'s `used_event` is
//! crossed (`Queue::needs_notification`), or without EVENT_IDX when
//! `VRING_AVAIL_F_NO_INTERRUPT` is clear (read here: `virtio-queue` 0.18
//! ignores that flag). TX kicks are always wanted (the device runs only when
//! kicked); RX kicks only after a frame found too few RX buffers, until the
//! driver reposts some (`avail_event` set to the driver's current index,
//! or `VRING_USED_F_NO_NOTIFY` cleared). As in vhost, a stale
//! `avail_event` is crossed again once per 65536 RX buffers: one spurious,
//! harmless kick.
//!
//! Kick eventfds are refused ([`Error::Unsupported`]): with no thread to
//! wait on them, the device runs only through `notify`.

use std::cell::RefCell;
use std::sync::atomic::{fence, Ordering};

use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};
use vmm_sys_util::eventfd::EventFd;

use crate::backend::VhostBackend;
use crate::error::{Errno, Error, Result};
use crate::msg::{Reply, Request};
use crate::net::{Mac, VirtioNetHdr, NET_CONFIG_LEN, NET_HDR_LEN};
use crate::uapi::*;
use crate::vfio::DmaMapper;
use crate::virtq::VRING_AVAIL_F_NO_INTERRUPT;

/// The features offered by default: those of the vhost-mdev sample parent
/// (`samples/vhost_mdev_net`).
pub const INSTANT_FEATURES: u64 = (1 << VIRTIO_F_VERSION_1)
    | (1 << VIRTIO_F_ACCESS_PLATFORM)
    | (1 << VIRTIO_NET_F_MAC)
    | (1 << VIRTIO_NET_F_MTU)
    | (1 << VIRTIO_NET_F_STATUS)
    | (1 << VIRTIO_RING_F_EVENT_IDX)
    | (1 << VIRTIO_RING_F_INDIRECT_DESC)
    | (1 << VIRTIO_NET_F_MRG_RXBUF);

/// Bytes of each frame copied by default: the benchmark driver reads the
/// first 26.
pub const HEAD_COPY: usize = 64;

/// The default MAC (locally administered).
pub const INSTANT_MAC: Mac = Mac([0x02, 0x69, 0x6e, 0x73, 0x74, 0x00]);

/// Number of queues: RX (0) and TX (1).
const NUM_QUEUES: usize = 2;
const RX: usize = 0;
const TX: usize = 1;
/// Bytes copied through the stack per step of a frame copy.
const CHUNK: usize = 4096;
/// Offset of `avail_event` in the used ring, after `size` elements.
const fn avail_event_offset(size: u16) -> u64 {
    4 + 8 * size as u64
}

/// Options of an [`InstantNet`].
#[derive(Debug, Clone, Copy)]
pub struct InstantOptions {
    /// Features offered (a subset of [`INSTANT_FEATURES`] makes sense;
    /// `VERSION_1` and `ACCESS_PLATFORM` are required by the driver).
    pub features: u64,
    /// Bytes of each frame copied from TX to RX ([`HEAD_COPY`];
    /// `usize::MAX` copies whole frames). The used length reports the
    /// whole frame either way.
    pub copy_limit: usize,
    /// Largest queue size (`VHOST_VDPA_GET_VRING_NUM`), a power of two.
    pub queue_max: u16,
    /// The MAC in the config space.
    pub mac: Mac,
    /// The MTU in the config space.
    pub mtu: u16,
}

impl Default for InstantOptions {
    fn default() -> Self {
        InstantOptions {
            features: INSTANT_FEATURES,
            copy_limit: HEAD_COPY,
            queue_max: 1024,
            mac: INSTANT_MAC,
            mtu: 1500,
        }
    }
}

/// Counters of an [`InstantNet`] since it was created.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InstantStats {
    /// Frames looped from TX to RX.
    pub frames: u64,
    /// Frame bytes looped (without headers; as reported, not as copied).
    pub bytes: u64,
    /// RX buffers (chains) used.
    pub rx_buffers: u64,
    /// Kicks received per queue (RX, TX), before DRIVER_OK included.
    pub kicks: [u64; 2],
    /// Call eventfd writes per queue (RX, TX).
    pub irqs: [u64; 2],
    /// Times a TX frame found too few RX buffers and waited for an RX kick.
    pub stalls: u64,
    /// Frames dropped because the one RX buffer (no MRG_RXBUF) was too
    /// small.
    pub dropped: u64,
}

/// One DMA mapping: IOVA, size, user address.
#[derive(Debug, Clone, Copy)]
struct Mapping {
    iova: u64,
    size: u64,
    vaddr: u64,
}

/// A guest-memory segment of a descriptor chain.
#[derive(Debug, Clone, Copy)]
struct Seg {
    addr: u64,
    len: u32,
}

/// What the driver set of a queue (the rest is in its `Queue`).
#[derive(Debug, Default, Clone, Copy)]
struct VqConf {
    num_set: bool,
    addr_set: bool,
}

struct State {
    opts: InstantOptions,
    status: u8,
    features: u64,
    suspended: bool,
    /// A device error was found: NEEDS_RESET is set, rings are left alone.
    broken: Option<String>,
    config: [u8; NET_CONFIG_LEN],
    maps: Vec<Mapping>,
    mem: GuestMemoryMmap,
    q: [Queue; NUM_QUEUES],
    conf: [VqConf; NUM_QUEUES],
    calls: [Option<EventFd>; NUM_QUEUES],
    /// Whether the device asked for RX kicks (a frame waits for buffers).
    rx_kick: bool,
    stats: InstantStats,
    /// Scratch lists reused for every frame (no allocation per frame).
    tx_segs: Vec<Seg>,
    rx_segs: Vec<Seg>,
    rx_heads: Vec<(u16, u32)>,
}

/// The in-process instant loopback device (see the module documentation).
///
/// Not `Sync`: the device runs in the thread that kicks it.
pub struct InstantNet {
    st: RefCell<State>,
}

fn req_err(req: &Request, errno: i32) -> Error {
    Error::Request {
        request: req.name().into(),
        errno: Errno(errno),
    }
}

/// Reads `out.len()` bytes at byte `off` of the chain `segs`.
fn read_segs(mem: &GuestMemoryMmap, segs: &[Seg], mut off: u64, out: &mut [u8]) -> Result<()> {
    let mut done = 0usize;
    for s in segs {
        if done == out.len() {
            break;
        }
        let len = u64::from(s.len);
        if off >= len {
            off -= len;
            continue;
        }
        let n = ((len - off) as usize).min(out.len() - done);
        mem.read_slice(&mut out[done..done + n], GuestAddress(s.addr + off))
            .map_err(|e| Error::Protocol(format!("instant device: TX buffer read: {e}")))?;
        done += n;
        off = 0;
    }
    if done < out.len() {
        return Err(Error::Protocol("instant device: TX chain too short".into()));
    }
    Ok(())
}

/// Writes `data` at byte `off` of the chain `segs`.
fn write_segs(mem: &GuestMemoryMmap, segs: &[Seg], mut off: u64, data: &[u8]) -> Result<()> {
    let mut done = 0usize;
    for s in segs {
        if done == data.len() {
            break;
        }
        let len = u64::from(s.len);
        if off >= len {
            off -= len;
            continue;
        }
        let n = ((len - off) as usize).min(data.len() - done);
        mem.write_slice(&data[done..done + n], GuestAddress(s.addr + off))
            .map_err(|e| Error::Protocol(format!("instant device: RX buffer write: {e}")))?;
        done += n;
        off = 0;
    }
    if done < data.len() {
        return Err(Error::Protocol(
            "instant device: RX chains too short".into(),
        ));
    }
    Ok(())
}

impl State {
    fn new(opts: InstantOptions) -> Result<Self> {
        let queue = || {
            Queue::new(opts.queue_max).map_err(|e| {
                Error::InvalidArgument(format!("instant device queue size {}: {e}", opts.queue_max))
            })
        };
        let mut config = [0u8; NET_CONFIG_LEN];
        config[..6].copy_from_slice(&opts.mac.0);
        config[6..8].copy_from_slice(&VIRTIO_NET_S_LINK_UP.to_le_bytes());
        config[8..10].copy_from_slice(&1u16.to_le_bytes());
        config[10..12].copy_from_slice(&opts.mtu.to_le_bytes());
        Ok(State {
            opts,
            status: 0,
            features: 0,
            suspended: false,
            broken: None,
            config,
            maps: Vec::new(),
            mem: GuestMemoryMmap::new(),
            q: [queue()?, queue()?],
            conf: [VqConf::default(); NUM_QUEUES],
            calls: [None, None],
            rx_kick: false,
            stats: InstantStats::default(),
            tx_segs: Vec::with_capacity(64),
            rx_segs: Vec::with_capacity(64),
            rx_heads: Vec::with_capacity(64),
        })
    }

    fn running(&self) -> bool {
        self.status & VIRTIO_CONFIG_S_DRIVER_OK != 0 && !self.suspended
    }

    /// Whether queue `i` has a size and addresses, with its rings in
    /// mapped memory.
    fn queue_usable(&mut self, i: usize) -> bool {
        if !self.conf[i].num_set || !self.conf[i].addr_set {
            return false;
        }
        // is_valid() also wants the queue ready.
        let q = &mut self.q[i];
        let ready = q.ready();
        q.set_ready(true);
        let ok = q.is_valid(&self.mem);
        q.set_ready(ready);
        ok
    }

    fn has(&self, bit: u32) -> bool {
        self.features & (1 << bit) != 0
    }

    fn reset(&mut self) {
        for q in &mut self.q {
            q.reset();
        }
        self.conf = [VqConf::default(); NUM_QUEUES];
        self.status = 0;
        self.features = 0;
        self.suspended = false;
        self.broken = None;
        self.rx_kick = false;
    }

    /// Rebuilds the guest memory from the mappings.
    fn rebuild_memory(&mut self) -> Result<()> {
        let mut maps = self.maps.clone();
        maps.sort_by_key(|m| m.iova);
        let mut regions = Vec::with_capacity(maps.len());
        for m in &maps {
            // SAFETY: map_dma's caller guarantees that vaddr..vaddr + size
            // stays mapped in this process until unmap_dma of this range
            // (which drops the region built here, see unmap_dma) or until
            // the device is dropped (which drops it too), and that it only
            // accesses the range in ways that tolerate device writes.
            // vm-memory accesses it only through volatile copies and
            // atomics, never references, and does not unmap a raw region.
            let region = unsafe {
                MmapRegion::<()>::build_raw(
                    m.vaddr as *mut u8,
                    m.size as usize,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                )
            }
            .map_err(|e| {
                Error::InvalidArgument(format!(
                    "DMA map of {:#x} bytes at {:#x}: {e}",
                    m.size, m.vaddr
                ))
            })?;
            let r = GuestRegionMmap::new(region, GuestAddress(m.iova)).ok_or_else(|| {
                Error::InvalidArgument(format!("IOVA {:#x}+{:#x} overflows", m.iova, m.size))
            })?;
            regions.push(r);
        }
        self.mem = if regions.is_empty() {
            GuestMemoryMmap::new()
        } else {
            GuestMemoryMmap::from_regions(regions)
                .map_err(|e| Error::InvalidArgument(format!("DMA mappings: {e}")))?
        };
        Ok(())
    }

    fn vq(&self, req: &Request, index: u32) -> Result<usize> {
        if index as usize >= NUM_QUEUES {
            return Err(req_err(req, libc::ENOBUFS));
        }
        Ok(index as usize)
    }

    fn request(&mut self, req: &Request) -> Result<Reply> {
        let einval = || req_err(req, libc::EINVAL);
        Ok(match req {
            Request::GetFeatures => Reply::U64(self.opts.features),
            Request::SetFeatures(f) => {
                if self.status & VIRTIO_CONFIG_S_FEATURES_OK != 0 {
                    return Err(req_err(req, libc::EBUSY));
                }
                if f & !self.opts.features != 0 {
                    return Err(einval());
                }
                self.features = *f;
                Reply::None
            }
            Request::SetOwner => Reply::None,
            Request::GetDeviceId => Reply::U32(VIRTIO_ID_NET),
            Request::GetStatus => Reply::U8(self.status),
            Request::SetStatus(s) => {
                self.set_status(req, *s)?;
                Reply::None
            }
            Request::GetConfigSize => Reply::U32(NET_CONFIG_LEN as u32),
            Request::GetConfig { off, len } => {
                let range = config_range(*off, *len).ok_or_else(einval)?;
                Reply::Config {
                    off: *off,
                    data: self.config[range].to_vec(),
                }
            }
            Request::SetConfig { off, data } => {
                let len = u32::try_from(data.len()).map_err(|_| einval())?;
                let range = config_range(*off, len).ok_or_else(einval)?;
                self.config[range].copy_from_slice(data);
                Reply::None
            }
            Request::GetVringNum => Reply::U16(self.opts.queue_max),
            Request::GetVqsCount => Reply::U32(NUM_QUEUES as u32),
            Request::SetVringNum(s) => {
                let i = self.vq(req, s.index)?;
                if self.running() {
                    return Err(einval());
                }
                let num = u16::try_from(s.num).map_err(|_| einval())?;
                self.q[i].try_set_size(num).map_err(|_| einval())?;
                self.conf[i].num_set = true;
                Reply::None
            }
            Request::SetVringAddr(a) => {
                let i = self.vq(req, a.index)?;
                if self.running() || a.flags != 0 {
                    return Err(einval());
                }
                // Check all three before changing any.
                if a.desc_user_addr % 16 != 0
                    || a.avail_user_addr % 2 != 0
                    || a.used_user_addr % 4 != 0
                {
                    return Err(einval());
                }
                let q = &mut self.q[i];
                q.try_set_desc_table_address(GuestAddress(a.desc_user_addr))
                    .and_then(|()| q.try_set_avail_ring_address(GuestAddress(a.avail_user_addr)))
                    .and_then(|()| q.try_set_used_ring_address(GuestAddress(a.used_user_addr)))
                    .map_err(|_| einval())?;
                self.conf[i].addr_set = true;
                Reply::None
            }
            Request::SetVringBase(s) => {
                let i = self.vq(req, s.index)?;
                if self.running() {
                    return Err(einval());
                }
                let base = u16::try_from(s.num).map_err(|_| einval())?;
                self.q[i].set_next_avail(base);
                self.q[i].set_next_used(base);
                Reply::None
            }
            Request::GetVringBase(index) => {
                let i = self.vq(req, *index)?;
                Reply::VringState(VhostVringState {
                    index: *index,
                    num: self.q[i].next_avail().into(),
                })
            }
            Request::SetVringEnable(s) => {
                let i = self.vq(req, s.index)?;
                if s.num > 1 {
                    return Err(einval());
                }
                if s.num == 1 && self.running() && !self.queue_usable(i) {
                    return Err(einval());
                }
                self.q[i].set_ready(s.num == 1);
                Reply::None
            }
            Request::Suspend | Request::Resume => {
                if self.status & VIRTIO_CONFIG_S_DRIVER_OK == 0 {
                    return Err(einval());
                }
                self.suspended = *req == Request::Suspend;
                Reply::None
            }
        })
    }

    fn set_status(&mut self, req: &Request, new: u8) -> Result<()> {
        let einval = || req_err(req, libc::EINVAL);
        if new == 0 {
            self.reset();
            return Ok(());
        }
        let old = self.status;
        // Clearing a bit other than by writing 0, or setting NEEDS_RESET,
        // is not a transition a driver may make.
        if old & !new != 0 || new & VIRTIO_CONFIG_S_NEEDS_RESET != 0 {
            return Err(einval());
        }
        let added = new & !old;
        let mut accepted = new;
        if added & VIRTIO_CONFIG_S_FEATURES_OK != 0 {
            let need = (1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_F_ACCESS_PLATFORM);
            if self.features & need != need {
                // Left clear: the driver reads the status back.
                accepted &= !VIRTIO_CONFIG_S_FEATURES_OK;
            }
        }
        if added & VIRTIO_CONFIG_S_DRIVER_OK != 0 {
            if accepted & VIRTIO_CONFIG_S_FEATURES_OK == 0 {
                return Err(einval());
            }
            self.start().map_err(|_| einval())?;
        }
        self.status = accepted;
        Ok(())
    }

    /// DRIVER_OK: checks the enabled queues and arms their notifications.
    fn start(&mut self) -> Result<()> {
        let event_idx = self.has(VIRTIO_RING_F_EVENT_IDX);
        for i in 0..NUM_QUEUES {
            if self.q[i].ready() && !self.queue_usable(i) {
                return Err(Error::Protocol(format!(
                    "instant device: queue {i} is not set up in mapped memory"
                )));
            }
            self.q[i].set_event_idx(event_idx);
        }
        // Kicks wanted on TX; on RX only once a frame waits for buffers.
        if self.q[TX].ready() {
            self.q[TX]
                .enable_notification(&self.mem)
                .map_err(|e| Error::Protocol(format!("instant device: TX ring: {e}")))?;
        }
        if self.q[RX].ready() {
            self.q[RX]
                .disable_notification(&self.mem)
                .map_err(|e| Error::Protocol(format!("instant device: RX ring: {e}")))?;
        }
        self.rx_kick = false;
        Ok(())
    }

    /// A kick on either queue: loops every TX frame that has RX room.
    fn kick(&mut self, index: usize) -> Result<()> {
        self.stats.kicks[index] += 1;
        if let Some(e) = &self.broken {
            return Err(Error::Protocol(format!(
                "instant device needs a reset: {e}"
            )));
        }
        if !self.running() || !self.q[TX].ready() || !self.q[RX].ready() {
            return Ok(());
        }
        match self.run() {
            Ok(()) => Ok(()),
            Err(e) => {
                // Stop as a device would: NEEDS_RESET, rings left alone.
                self.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
                self.broken = Some(e.to_string());
                Err(e)
            }
        }
    }

    fn run(&mut self) -> Result<()> {
        let mut added = [0u64; NUM_QUEUES];
        let r = self.run_loop(&mut added);
        // Signal what was completed, even after an error (which is the
        // one reported).
        let mut signalled = Ok(());
        for (i, n) in added.iter().enumerate() {
            if *n > 0 {
                let s = self.signal(i);
                signalled = signalled.and(s);
            }
        }
        r.and(signalled)
    }

    fn run_loop(&mut self, added: &mut [u64; NUM_QUEUES]) -> Result<()> {
        let ring = |e: virtio_queue::Error| Error::Protocol(format!("instant device: {e}"));
        loop {
            let stalled = self.loop_frames(added)?;
            if stalled {
                self.want_rx_kick(true)?;
                // Later TX frames wait with this one: the RX kick resumes.
                self.q[TX].enable_notification(&self.mem).map_err(ring)?;
                return Ok(());
            }
            if self.rx_kick {
                self.want_rx_kick(false)?;
            }
            // Ask for the next TX kick; loop if frames came meanwhile.
            if !self.q[TX].enable_notification(&self.mem).map_err(ring)? {
                return Ok(());
            }
        }
    }

    /// Asks for RX kicks (a frame waits for buffers) or stops asking.
    fn want_rx_kick(&mut self, on: bool) -> Result<()> {
        let ring =
            |e: virtio_queue::Error| Error::Protocol(format!("instant device: RX ring: {e}"));
        let q = &mut self.q[RX];
        if on && q.event_idx_enabled() {
            // Kick at the next publication: avail_event = the index the
            // driver has published (not our next_avail, which is behind it
            // when some buffers are there but too few).
            let idx = q.avail_idx(&self.mem, Ordering::Acquire).map_err(ring)?;
            let at = GuestAddress(q.used_ring())
                .checked_add(avail_event_offset(q.size()))
                .ok_or_else(|| Error::Protocol("instant device: RX used ring overflows".into()))?;
            self.mem
                .store(idx.0.to_le(), at, Ordering::Relaxed)
                .map_err(|e| Error::Protocol(format!("instant device: RX avail_event: {e}")))?;
            fence(Ordering::SeqCst);
        } else if on {
            q.enable_notification(&self.mem).map_err(ring)?;
        } else {
            // With EVENT_IDX the stale avail_event is not crossed again
            // until the index wraps; without, VRING_USED_F_NO_NOTIFY.
            q.disable_notification(&self.mem).map_err(ring)?;
        }
        self.rx_kick = on;
        Ok(())
    }

    /// Writes the call eventfd of queue `i` if the driver asked for it.
    fn signal(&mut self, i: usize) -> Result<()> {
        let q = &mut self.q[i];
        let wanted = if q.event_idx_enabled() {
            q.needs_notification(&self.mem)
                .map_err(|e| Error::Protocol(format!("instant device: used_event: {e}")))?
        } else {
            fence(Ordering::SeqCst);
            let flags: u16 = self
                .mem
                .load(GuestAddress(q.avail_ring()), Ordering::Relaxed)
                .map_err(|e| Error::Protocol(format!("instant device: avail flags: {e}")))?;
            u16::from_le(flags) & VRING_AVAIL_F_NO_INTERRUPT == 0
        };
        if wanted {
            if let Some(fd) = &self.calls[i] {
                fd.write(1)
                    .map_err(|e| Error::io("call eventfd write", &e))?;
                self.stats.irqs[i] += 1;
            }
        }
        Ok(())
    }

    /// Loops TX frames to RX until TX is empty (false) or a frame finds too
    /// few RX buffers (true: it stays on TX).
    fn loop_frames(&mut self, added: &mut [u64; NUM_QUEUES]) -> Result<bool> {
        let mrg = self.has(VIRTIO_NET_F_MRG_RXBUF);
        let ring = |e: virtio_queue::Error| Error::Protocol(format!("instant device: {e}"));
        loop {
            let tx_mark = self.q[TX].next_avail();
            let Some(chain) = self.q[TX].pop_descriptor_chain(&self.mem) else {
                return Ok(false);
            };
            let tx_head = chain.head_index();
            self.tx_segs.clear();
            let mut total = 0u64;
            for d in chain {
                if d.is_write_only() {
                    return Err(Error::Protocol(format!(
                        "instant device: TX chain {tx_head} has a device-writable descriptor"
                    )));
                }
                self.tx_segs.push(Seg {
                    addr: d.addr().raw_value(),
                    len: d.len(),
                });
                total += u64::from(d.len());
            }
            if total < NET_HDR_LEN as u64 {
                return Err(Error::Protocol(format!(
                    "instant device: TX chain {tx_head} of {total} bytes is shorter than the \
                     virtio-net header"
                )));
            }
            // RX chains until header and frame fit (one without MRG_RXBUF).
            let rx_mark = self.q[RX].next_avail();
            self.rx_heads.clear();
            self.rx_segs.clear();
            let mut cap = 0u64;
            while cap < total && (mrg || self.rx_heads.is_empty()) {
                let Some(c) = self.q[RX].pop_descriptor_chain(&self.mem) else {
                    break;
                };
                let head = c.head_index();
                let mut ccap = 0u32;
                for d in c {
                    if !d.is_write_only() {
                        return Err(Error::Protocol(format!(
                            "instant device: RX chain {head} has a device-readable descriptor"
                        )));
                    }
                    self.rx_segs.push(Seg {
                        addr: d.addr().raw_value(),
                        len: d.len(),
                    });
                    ccap = ccap.saturating_add(d.len());
                }
                self.rx_heads.push((head, ccap));
                cap += u64::from(ccap);
            }
            if cap < total {
                // Give the RX chains back.
                self.q[RX].set_next_avail(rx_mark);
                if mrg || self.rx_heads.is_empty() {
                    // Out of RX buffers: the frame waits on TX.
                    self.q[TX].set_next_avail(tx_mark);
                    self.stats.stalls += 1;
                    return Ok(true);
                }
                // The one RX buffer is too small: drop the frame.
                self.q[TX].add_used(&self.mem, tx_head, 0).map_err(ring)?;
                added[TX] += 1;
                self.stats.dropped += 1;
                continue;
            }
            let frame_len = total - NET_HDR_LEN as u64;
            let nbufs = self.rx_heads.len();
            let hdr = VirtioNetHdr {
                num_buffers: if mrg { nbufs as u16 } else { 1 },
                ..Default::default()
            }
            .to_bytes();
            // Header and the head of the frame in one write; the rest
            // (whole-frame copies only) in chunks through the stack.
            let copy = frame_len.min(self.opts.copy_limit as u64) as usize;
            let mut head = [0u8; NET_HDR_LEN + HEAD_COPY];
            head[..NET_HDR_LEN].copy_from_slice(&hdr);
            let mut done = copy.min(HEAD_COPY);
            read_segs(
                &self.mem,
                &self.tx_segs,
                NET_HDR_LEN as u64,
                &mut head[NET_HDR_LEN..NET_HDR_LEN + done],
            )?;
            write_segs(&self.mem, &self.rx_segs, 0, &head[..NET_HDR_LEN + done])?;
            if done < copy {
                let mut buf = [0u8; CHUNK];
                while done < copy {
                    let n = (copy - done).min(CHUNK);
                    let off = (NET_HDR_LEN + done) as u64;
                    read_segs(&self.mem, &self.tx_segs, off, &mut buf[..n])?;
                    write_segs(&self.mem, &self.rx_segs, off, &buf[..n])?;
                    done += n;
                }
            }
            let mut left = total;
            for &(head, ccap) in &self.rx_heads {
                let len = left.min(u64::from(ccap));
                self.q[RX]
                    .add_used(&self.mem, head, len as u32)
                    .map_err(ring)?;
                left -= len;
            }
            added[RX] += nbufs as u64;
            self.q[TX].add_used(&self.mem, tx_head, 0).map_err(ring)?;
            added[TX] += 1;
            self.stats.frames += 1;
            self.stats.bytes += frame_len;
            self.stats.rx_buffers += nbufs as u64;
        }
    }
}

/// The config bytes `off..off + len`, if inside the config space.
fn config_range(off: u32, len: u32) -> Option<std::ops::Range<usize>> {
    let end = off.checked_add(len)?;
    (end as usize <= NET_CONFIG_LEN).then_some(off as usize..end as usize)
}

impl InstantNet {
    /// A reset device with `opts`.
    pub fn new(opts: InstantOptions) -> Result<Self> {
        if opts.features & (1 << VIRTIO_NET_F_MAC) == 0 {
            return Err(Error::InvalidArgument(
                "the instant device needs VIRTIO_NET_F_MAC (the driver reads its MAC)".into(),
            ));
        }
        Ok(InstantNet {
            st: RefCell::new(State::new(opts)?),
        })
    }

    /// The counters.
    pub fn stats(&self) -> Result<InstantStats> {
        Ok(self.state()?.stats)
    }

    /// Number of DMA mappings held.
    pub fn num_mappings(&self) -> Result<usize> {
        Ok(self.state()?.maps.len())
    }

    /// Whether the device asks for RX kicks right now (a frame waits for
    /// RX buffers).
    pub fn wants_rx_kick(&self) -> Result<bool> {
        Ok(self.state()?.rx_kick)
    }

    fn state(&self) -> Result<std::cell::RefMut<'_, State>> {
        self.st
            .try_borrow_mut()
            .map_err(|_| Error::Protocol("instant device re-entered from its own callback".into()))
    }
}

impl DmaMapper for InstantNet {
    unsafe fn map_dma(&self, iova: u64, size: u64, vaddr: u64) -> Result<()> {
        let mut st = self.state()?;
        let bad = |why: &str| {
            Error::InvalidArgument(format!(
                "DMA map of {size:#x} bytes at IOVA {iova:#x}: {why}"
            ))
        };
        let end = iova.checked_add(size).ok_or_else(|| bad("overflows"))?;
        if size == 0 || usize::try_from(size).is_err() {
            return Err(bad("bad size"));
        }
        if st
            .maps
            .iter()
            .any(|m| iova < m.iova + m.size && m.iova < end)
        {
            return Err(Error::Sys {
                op: format!("instant DMA map of IOVA {iova:#x}+{size:#x}"),
                errno: Errno(libc::EEXIST),
            });
        }
        st.maps.push(Mapping { iova, size, vaddr });
        if let Err(e) = st.rebuild_memory() {
            st.maps.pop();
            return Err(e);
        }
        Ok(())
    }

    fn unmap_dma(&self, iova: u64, size: u64) -> Result<()> {
        let mut st = self.state()?;
        let Some(i) = st
            .maps
            .iter()
            .position(|m| m.iova == iova && m.size == size)
        else {
            return Err(Error::Sys {
                op: format!("instant DMA unmap of IOVA {iova:#x}+{size:#x}"),
                errno: Errno(libc::ENOENT),
            });
        };
        st.maps.remove(i);
        // The old memory object, and with it the region of this range, is
        // dropped here: the device no longer reaches the range.
        st.rebuild_memory()
    }
}

impl VhostBackend for InstantNet {
    fn describe(&self) -> String {
        "instant (in-process device)".into()
    }

    fn request(&self, req: &Request) -> Result<Reply> {
        self.state()?.request(req)
    }

    fn set_vring_call(&self, index: u32, fd: Option<&EventFd>) -> Result<()> {
        let mut st = self.state()?;
        let i = index as usize;
        if i >= NUM_QUEUES {
            return Err(Error::Request {
                request: "VHOST_SET_VRING_CALL".into(),
                errno: Errno(libc::ENOBUFS),
            });
        }
        st.calls[i] = match fd {
            Some(f) => Some(
                f.try_clone()
                    .map_err(|e| Error::io("dup of a call eventfd", &e))?,
            ),
            None => None,
        };
        Ok(())
    }

    fn set_config_call(&self, _fd: Option<&EventFd>) -> Result<()> {
        // The config space never changes by itself.
        Ok(())
    }

    fn set_vring_kick(&self, _index: u32, _fd: Option<&EventFd>) -> Result<()> {
        Err(Error::Unsupported(
            "kick eventfds (the instant device runs on direct notification)",
        ))
    }

    fn notify(&self, index: u16) -> Result<()> {
        let i = usize::from(index);
        if i >= NUM_QUEUES {
            return Err(Error::InvalidArgument(format!(
                "notification of queue {index} (the instant device has {NUM_QUEUES})"
            )));
        }
        self.state()?.kick(i)
    }

    fn supports_notify(&self) -> bool {
        true
    }
}
