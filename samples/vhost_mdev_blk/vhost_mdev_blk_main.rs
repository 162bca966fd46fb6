// SPDX-License-Identifier: GPL-2.0

//! vhost-mdev sample parent: a virtio-blk device on a RAM disk.
//!
//! Written only on the parent layer of `rust/`, as `vdpa_sim_blk.c` is on
//! `vdpa_sim.c`: it keeps its features, config, queue state, per-run work
//! ([`blk`], kernel-independent and host-tested) and attribute table;
//! [`datapath::Datapath`] owns the worker, its lifecycle and guest memory.
//! See `Documentation/sample-blk.rst`.

use kernel::prelude::*;
use kernel::str::CString;
use kernel::{c_str, fmt};

include!("../../rust/parent_modules.rs");

pub mod blk;

use blk::{BlkQueue, Disk, RingError, SplitQueue, SECTOR_SIZE};
use datapath::{Datapath, Memory, Outcome, Work};
use vhost_mdev::{DeviceHandle, Registration, TypeInfo};
use virtio::*;

module! {
    type: VhostMdevBlk,
    name: "vhost_mdev_blk",
    author: "The vhost-mdev developers",
    description: "vhost-mdev sample: virtio-blk RAM disk parent",
    license: "GPL",
}

params::c_uint! {
    /// The `max_instances` module parameter (defined in `shim.c`).
    fn max_instances = vhost_mdev_blk_max_instances;
}

const FEATURES: u64 = VIRTIO_F_VERSION_1
    | VIRTIO_F_ACCESS_PLATFORM
    | VIRTIO_RING_F_EVENT_IDX
    | VIRTIO_RING_F_INDIRECT_DESC
    | VIRTIO_BLK_F_SEG_MAX
    | VIRTIO_BLK_F_BLK_SIZE
    | VIRTIO_BLK_F_FLUSH
    // Every write to guest memory goes through the datapath's `Memory`,
    // which the core logs: live migration.
    | VHOST_F_LOG_ALL;
const QUEUE_MAX: u16 = 256;
/// Sectors of a new disk (1 MiB).
const CAPACITY_DEFAULT: u64 = 2048;
/// Most sectors of a disk (128 MiB, as `vdpa_sim_blk`).
const CAPACITY_MAX: u64 = 0x40000;

/// The device state the worker runs on.
struct BlkState {
    /// On the heap: the queue is about 1.4 KiB.
    queue: KBox<BlkQueue>,
    disk: KVVec<u8>,
    read_only: bool,
    id: [u8; VIRTIO_BLK_ID_BYTES],
}

impl BlkState {
    fn capacity(&self) -> u64 {
        self.disk.len() as u64 / SECTOR_SIZE
    }
}

impl Work for BlkState {
    type Queue = SplitQueue;
    const ITEM_QUEUES: u16 = 1;

    fn queue_count(&self) -> u16 {
        1
    }

    fn queue(&mut self, idx: u16) -> Option<&mut SplitQueue> {
        (idx == 0).then_some(&mut self.queue.q)
    }

    fn run(&mut self, _item: u16, mem: &mut Memory<'_>) -> Result<Outcome, RingError> {
        let mut disk = Disk {
            data: &mut self.disk,
            read_only: self.read_only,
            id: &self.id,
        };
        let out =
            self.queue
                .process_yielding(mem, &mut disk, blk::BUDGET, datapath::need_resched)?;
        Ok(Outcome::new().interrupt_if(0, out.irq).more(out.more))
    }
}

/// One RAM disk instance.
#[pin_data]
struct BlkDev {
    #[pin]
    dp: Datapath<BlkState>,
}

impl BlkDev {
    /// Applies `f` to the state, unless the device is open (`EBUSY`).
    fn while_closed(&self, f: impl FnOnce(&mut BlkState) -> Result) -> Result {
        if self.dp.handle().is_open() {
            return Err(EBUSY);
        }
        self.dp.with(f)
    }
}

#[vtable]
impl vhost_mdev::Device for BlkDev {
    fn device_id(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn device_features(&self) -> u64 {
        let ro = self.dp.with(|s| s.read_only);
        FEATURES | if ro { VIRTIO_BLK_F_RO } else { 0 }
    }

    fn set_driver_features(&self, features: u64) -> Result {
        self.dp.set_ring_features(features)
    }

    fn config_size(&self) -> u32 {
        blk::CONFIG_SIZE as u32
    }

    fn get_config(&self, offset: u32, buf: &mut [u8]) {
        let c = blk::config(self.dp.with(|s| s.capacity()));
        let off = offset as usize;
        if let Some(src) = c.get(off..off + buf.len()) {
            buf.copy_from_slice(src);
        }
    }

    fn set_config(&self, _offset: u32, _data: &[u8]) {
        // Nothing in the config is writable without CONFIG_WCE: ignored.
    }

    fn vq_count(&self) -> u32 {
        1
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
        self.dp.start(0)
    }

    fn reset(&self) {
        // The disk keeps its contents: only the queue starts over.
        self.dp.reset(|s| *s.queue = BlkQueue::EMPTY);
    }

    fn suspend(&self) -> Result {
        self.dp.suspend()
    }

    fn resume(&self) -> Result {
        self.dp.resume(0)
    }
}

/// The parent: creates RAM disks.
struct BlkParent;

impl vhost_mdev::Parent for BlkParent {
    type Device = BlkDev;

    fn create(handle: DeviceHandle, _type_index: u32) -> Result<Pin<KBox<BlkDev>>> {
        let state = BlkState {
            queue: KBox::new(BlkQueue::EMPTY, GFP_KERNEL)?,
            disk: KVVec::from_elem(0, (CAPACITY_DEFAULT * SECTOR_SIZE) as usize, GFP_KERNEL)?,
            read_only: false,
            id: blk::serial(&handle.uuid()),
        };
        let name = c_str!("vhost-mdev-blk");
        KBox::pin_init(
            pin_init!(BlkDev { dp <- Datapath::new(handle, name, state) }),
            GFP_KERNEL,
        )
    }
}

/// `capacity`: the disk's size in 512-byte sectors, 1 to [`CAPACITY_MAX`];
/// settable while the device is not open (the new disk is zeroed).
struct Capacity;

#[vtable]
impl sysfs::Attribute<BlkParent> for Capacity {
    const NAME: &'static CStr = c_str!("capacity");

    fn show(d: &BlkDev) -> Result<CString> {
        CString::try_from_fmt(fmt!("{}\n", d.dp.with(|s| s.capacity())))
    }

    fn store(d: &BlkDev, text: &str) -> Result {
        let sectors: u64 = text.parse().map_err(|_| EINVAL)?;
        if !(1..=CAPACITY_MAX).contains(&sectors) {
            return Err(EINVAL);
        }
        d.while_closed(|s| {
            s.disk = KVVec::from_elem(0, (sectors * SECTOR_SIZE) as usize, GFP_KERNEL)?;
            Ok(())
        })
    }
}

/// `read_only`: `1` or `0`; offers `VIRTIO_BLK_F_RO`. Settable while the
/// device is not open.
struct ReadOnly;

#[vtable]
impl sysfs::Attribute<BlkParent> for ReadOnly {
    const NAME: &'static CStr = c_str!("read_only");

    fn show(d: &BlkDev) -> Result<CString> {
        CString::try_from_fmt(fmt!("{}\n", u8::from(d.dp.with(|s| s.read_only))))
    }

    fn store(d: &BlkDev, text: &str) -> Result {
        let ro = match text {
            "1" => true,
            "0" => false,
            _ => return Err(EINVAL),
        };
        d.while_closed(|s| {
            s.read_only = ro;
            Ok(())
        })
    }
}

sysfs::attribute_groups! {
    static GROUPS: BlkParent = [(None, [Capacity, ReadOnly])];
}

struct VhostMdevBlk {
    _reg: Registration<BlkParent>,
}

impl kernel::Module for VhostMdevBlk {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let max = max_instances();
        if !(1..=1024).contains(&max) {
            pr_err!("max_instances={} is out of range 1-1024\n", max);
            return Err(EINVAL);
        }
        let types = [TypeInfo {
            sysfs_name: c_str!("ramdisk"),
            pretty_name: c_str!("virtio-blk RAM disk"),
            description: c_str!("virtio-blk device on a RAM disk (vhost-mdev sample)"),
            max_instances: max,
        }];
        let reg = Registration::new(c_str!("vhost_mdev_blk"), module, &types, Some(&GROUPS))?;
        pr_info!("type vhost_mdev_blk-ramdisk, {} instances\n", max);
        Ok(VhostMdevBlk { _reg: reg })
    }
}
