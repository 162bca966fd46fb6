// SPDX-License-Identifier: GPL-2.0 OR MIT
//! `vhost-mdev`: manage and exercise vhost-mdev instances.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use serde::Serialize;
use uuid::Uuid;

mod cli;
mod own;
use cli::*;

/// The man pages and completions build.rs generated (`ASSETS`).
mod assets {
    include!(concat!(env!("OUT_DIR"), "/assets.rs"));
}

use vhost_mdev::blk::{self, BlkConfig, BlkDriver, BlkDriverConfig, VIRTIO_ID_BLOCK};
use vhost_mdev::bridge::{self, bridge_parent_name, bridge_type_id, VdpaDevice};
use vhost_mdev::driver::{self, BenchOptions, KickMode, NetDriver, NetDriverConfig};
use vhost_mdev::instant::{InstantOptions, HEAD_COPY};
use vhost_mdev::net::{NetConfig, FRAME_MAX, NET_CONFIG_LEN};
use vhost_mdev::sysfs::{Holder, Instance, MdevType, Parent};
use vhost_mdev::uapi::{feature_names, status_names, VIRTIO_ID_NET};
use vhost_mdev::{
    Class, Error, InstantNet, IommuKind, MdevDevice, Result, Sysfs, Transport, VhostBackend,
    VhostVdpa,
};

/// The `device` argument naming the in-process instant device.
const INSTANT: &str = "instant";

enum Target {
    Mdev(MdevDevice),
    Vdpa(VhostVdpa),
    Instant(Box<InstantNet>),
}

impl Target {
    fn backend(&self) -> &dyn VhostBackend {
        match self {
            Target::Mdev(d) => d,
            Target::Vdpa(v) => v,
            Target::Instant(i) => &**i,
        }
    }
}

/// Opens the device; the instant device copies the first `instant_copy`
/// bytes of each frame and has `pairs` queue pairs.
fn open_pairs(sysfs: &Sysfs, a: &DeviceArgs, instant_copy: usize, pairs: u16) -> Result<Target> {
    if a.device == INSTANT {
        return Ok(Target::Instant(Box::new(InstantNet::new(
            InstantOptions {
                copy_limit: instant_copy,
                pairs,
                ..Default::default()
            },
        )?)));
    }
    if a.device.starts_with('/') {
        return Ok(Target::Vdpa(VhostVdpa::open(a.device.as_ref())?));
    }
    let uuid = Uuid::parse_str(&a.device).map_err(|_| {
        Error::InvalidArgument(format!(
            "{:?} is neither an instance UUID, a /dev/vhost-vdpa-N path nor `{INSTANT}`",
            a.device
        ))
    })?;
    let kind = if a.iommufd {
        IommuKind::Iommufd
    } else {
        IommuKind::Type1
    };
    let dev = MdevDevice::open(sysfs, &uuid, kind)?;
    if a.ioctl {
        dev.set_transport(Transport::Ioctl);
    }
    Ok(Target::Mdev(dev))
}

/// [`open_pairs`] with one pair.
fn open(sysfs: &Sysfs, a: &DeviceArgs, instant_copy: usize) -> Result<Target> {
    open_pairs(sysfs, a, instant_copy, 1)
}

fn driver_config(a: &DeviceArgs, r: RingArgs, max_frame: usize) -> NetDriverConfig {
    NetDriverConfig {
        packed: r.packed,
        pairs: r.pairs,
        max_frame: max_frame.max(FRAME_MAX),
        queue_size: a.queue_size,
        kick: if a.ioeventfd {
            KickMode::EventFd
        } else {
            KickMode::Direct
        },
        indirect: a.indirect,
        ..Default::default()
    }
}

/// Prints `v` as pretty-printed JSON on stdout.
fn print_json<T: Serialize + ?Sized>(v: &T) -> Result<()> {
    let s = serde_json::to_string_pretty(v)
        .map_err(|e| Error::Protocol(format!("cannot encode the result as JSON: {e}")))?;
    println!("{s}");
    Ok(())
}

/// An instance as `list` and `info` show it (the JSON fields of
/// Documentation/cli.rst).
#[derive(Serialize)]
struct InstanceView {
    uuid: Uuid,
    parent: Option<String>,
    #[serde(rename = "type")]
    type_id: Option<String>,
    path: String,
    iommu_group: Option<u32>,
    vfio_cdev: Option<String>,
    driver: Option<String>,
    /// `closed`, `open`, `removing`; `unbound` without a driver;
    /// `unknown` with a core that does not say.
    state: String,
    holder: Option<Holder>,
    backend: Option<String>,
    remove_requested: Option<u32>,
}

impl InstanceView {
    fn new(sysfs: &Sysfs, i: &Instance) -> Self {
        let holder = sysfs.holders(i).unwrap_or_default().into_iter().next();
        let state = match (&i.status, &i.driver) {
            (Some(st), _) => st.state.clone(),
            (None, None) => "unbound".into(),
            (None, Some(_)) if holder.is_some() => "open".into(),
            (None, Some(_)) => "unknown".into(),
        };
        InstanceView {
            uuid: i.uuid,
            parent: i.parent.clone(),
            type_id: i.type_id.clone(),
            path: i.path.display().to_string(),
            iommu_group: i.iommu_group,
            vfio_cdev: i.vfio_cdev.clone(),
            driver: i.driver.clone(),
            state,
            holder,
            backend: i.status.as_ref().and_then(|s| s.backend.clone()),
            remove_requested: i.status.as_ref().map(|s| s.remove_requested),
        }
    }

    /// The state in words: `free`, `in use by pid N (comm)`, ...
    fn state_text(&self, driver: bool) -> String {
        let removing = if self.state == "removing" {
            ", removal requested"
        } else {
            ""
        };
        match &self.holder {
            Some(h) => format!("in use by pid {} ({}){removing}", h.pid, h.comm),
            None if !driver => "no driver".to_string(),
            None if self.state == "open" || self.state == "removing" => {
                format!("in use{removing}")
            }
            None => "free".to_string(),
        }
    }
}

/// The line of a parent in `list`.
fn parent_line(sysfs: &Sysfs, p: &Parent) -> String {
    let bridged = sysfs
        .bridged_vdpa(p)
        .map(|v| {
            format!(
                ": vDPA bridge of {}, dma mode {}",
                v.name,
                v.dma_mode.as_deref().unwrap_or("unknown")
            )
        })
        .unwrap_or_default();
    format!(
        "parent {} (driver {}){bridged}",
        p.name,
        p.driver.as_deref().unwrap_or("none")
    )
}

/// The line of a type in `list`.
fn type_line(t: &MdevType) -> String {
    format!(
        "type {:<32} api {:<10} available {:<3} {}",
        t.id,
        t.device_api,
        t.available_instances,
        t.description.as_deref().or(t.name.as_deref()).unwrap_or("")
    )
}

/// The line of an instance in `list`.
fn instance_line(i: &Instance, v: &InstanceView) -> String {
    format!(
        "{} parent {} type {} group {} cdev {} driver {}: {}",
        i.uuid,
        i.parent.as_deref().unwrap_or("?"),
        i.type_id.as_deref().unwrap_or("?"),
        i.iommu_group.map_or("-".into(), |g| g.to_string()),
        i.vfio_cdev.as_deref().unwrap_or("-"),
        i.driver.as_deref().unwrap_or("-"),
        v.state_text(i.driver.is_some()),
    )
}

/// A parent in `list --json`: its driver, its types, and the vDPA device
/// it bridges.
#[derive(Serialize)]
struct ParentView<'a> {
    #[serde(flatten)]
    parent: &'a Parent,
    vdpa: Option<BridgedView>,
}

#[derive(Serialize)]
struct BridgedView {
    name: String,
    dma_mode: Option<String>,
}

fn parent_views<'a>(sysfs: &Sysfs, parents: &'a [Parent]) -> Vec<ParentView<'a>> {
    parents
        .iter()
        .map(|p| ParentView {
            parent: p,
            vdpa: sysfs.bridged_vdpa(p).map(|v| BridgedView {
                name: v.name,
                dma_mode: v.dma_mode,
            }),
        })
        .collect()
}

fn list(sysfs: &Sysfs, what: Option<ListWhat>, json: bool) -> Result<()> {
    let parents = match what {
        None | Some(ListWhat::Parents) | Some(ListWhat::Types) => sysfs.parents()?,
        _ => Vec::new(),
    };
    let instances = match what {
        None | Some(ListWhat::Instances) => sysfs.instances()?,
        _ => Vec::new(),
    };
    let views: Vec<InstanceView> = instances
        .iter()
        .map(|i| InstanceView::new(sysfs, i))
        .collect();
    let vdpa = match what {
        None | Some(ListWhat::Vdpa) => sysfs.vdpa_devices()?,
        _ => Vec::new(),
    };
    let types: Vec<&MdevType> = parents.iter().flat_map(|p| &p.types).collect();
    match (what, json) {
        (None, true) => {
            #[derive(Serialize)]
            struct All<'a> {
                parents: Vec<ParentView<'a>>,
                instances: &'a [InstanceView],
                vdpa: &'a [VdpaDevice],
            }
            print_json(&All {
                parents: parent_views(sysfs, &parents),
                instances: &views,
                vdpa: &vdpa,
            })
        }
        (Some(ListWhat::Parents), true) => print_json(&parent_views(sysfs, &parents)),
        (Some(ListWhat::Types), true) => print_json(&types),
        (Some(ListWhat::Instances), true) => print_json(&views),
        (Some(ListWhat::Vdpa), true) => print_json(&vdpa),
        (None, false) => {
            if parents.is_empty() {
                println!(
                    "no mdev parents (load vhost_mdev and a parent driver, e.g. `modprobe \
                     vhost_mdev_net`)"
                );
            }
            for p in &parents {
                println!("{}", parent_line(sysfs, p));
                for t in &p.types {
                    println!("  {}", type_line(t));
                }
            }
            if !instances.is_empty() {
                println!("instances:");
            }
            for (i, v) in instances.iter().zip(&views) {
                println!("  {}", instance_line(i, v));
            }
            if !vdpa.is_empty() {
                println!("vdpa devices:");
            }
            for d in &vdpa {
                println!("  {}", vdpa_line(d));
            }
            Ok(())
        }
        (Some(ListWhat::Parents), false) => {
            for p in &parents {
                println!("{}", parent_line(sysfs, p));
            }
            Ok(())
        }
        (Some(ListWhat::Types), false) => {
            for t in &types {
                println!("{} {}", t.parent, type_line(t));
            }
            Ok(())
        }
        (Some(ListWhat::Instances), false) => {
            for (i, v) in instances.iter().zip(&views) {
                println!("{}", instance_line(i, v));
            }
            Ok(())
        }
        (Some(ListWhat::Vdpa), false) => {
            for d in &vdpa {
                println!("{}", vdpa_line(d));
            }
            Ok(())
        }
    }
}

/// A vDPA device in one line: its driver and what the driver made of it.
fn vdpa_line(d: &VdpaDevice) -> String {
    let mut s = format!(
        "{} driver {}",
        d.name,
        d.driver.as_deref().unwrap_or("none")
    );
    if let Some(o) = &d.driver_override {
        s += &format!(" (driver_override {o})");
    }
    if d.on_bridge() {
        s += &format!(
            ": parent {}, type {}, dma mode {}",
            bridge_parent_name(&d.name),
            bridge_type_id(&d.name),
            d.dma_mode.as_deref().unwrap_or("unknown")
        );
    } else if !d.vhost_vdpa.is_empty() {
        s += &format!(": {}", d.vhost_vdpa_nodes().join(", "));
    }
    s
}

fn notify(msg: &str) {
    eprintln!("vhost-mdev: {msg}");
}

fn attach(sysfs: &Sysfs, name: &str, create: Option<Option<Uuid>>, wait: bool) -> Result<()> {
    let a = bridge::attach(sysfs, name, wait, &mut notify)?;
    println!(
        "{}: {} bridge: parent {}, type {}, dma mode {}",
        name,
        if a.already {
            "already on the"
        } else {
            "on the"
        },
        a.parent,
        a.type_id,
        a.device.dma_mode.as_deref().unwrap_or("unknown")
    );
    if let Some(uuid) = create {
        let t = sysfs.find_type(&a.parent, &a.type_id)?;
        if t.available_instances == 0 {
            return Err(Error::NoAvailableInstances(format!(
                "{} has its instance already (see `vhost-mdev list instances`)",
                a.parent
            )));
        }
        println!("{}", sysfs.create(&t, uuid)?);
    }
    Ok(())
}

fn detach(sysfs: &Sysfs, name: &str, to: Option<&str>, wait: bool) -> Result<()> {
    let d = bridge::detach(sysfs, name, to, wait, &mut notify)?;
    if !d.was_attached {
        println!("{name}: not on the bridge");
    }
    if let Some(n) = &d.note {
        notify(n);
    }
    println!("{}", vdpa_line(&d.device));
    Ok(())
}

/// Waits until instance `inst` has no holder, up to `limit`.
fn wait_released(sysfs: &Sysfs, inst: &Instance, limit: Duration) -> Result<bool> {
    let start = Instant::now();
    loop {
        let now = match sysfs.refresh(inst) {
            Ok(i) => i,
            // Gone: released (and removed by someone else).
            Err(Error::NotFound(_)) => return Ok(true),
            Err(e) => return Err(e),
        };
        if sysfs.holders(&now)?.is_empty() {
            return Ok(true);
        }
        if start.elapsed() >= limit {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends `sig` to the holder `h`.
fn signal(h: &Holder, sig: libc::c_int, name: &str) -> Result<()> {
    let pid = libc::pid_t::try_from(h.pid)
        .map_err(|_| Error::Protocol(format!("pid {} out of range", h.pid)))?;
    // SAFETY: kill() has no memory effects; a stale pid is caught by the
    // kernel (ESRCH), which counts as gone.
    if unsafe { libc::kill(pid, sig) } != 0 {
        let e = Error::last_os(format!("kill -{name} {}", h.pid));
        if e.errno() != Some(libc::ESRCH) {
            return Err(e);
        }
    }
    Ok(())
}

fn remove(sysfs: &Sysfs, uuid: &Uuid, wait: bool, force: bool, timeout: u64) -> Result<()> {
    let inst = sysfs.instance(uuid)?;
    let holders = sysfs.holders(&inst)?;
    if let Some(h) = holders.first() {
        if force {
            // Only a process that has the device's nodes open: the opener
            // the core names may have passed the device on (and be
            // something else entirely now), or live in another PID
            // namespace.
            let victims = if h.node.is_some() || sysfs.holds(&inst, h.pid) {
                vec![h.clone()]
            } else {
                sysfs.scan_holders(&inst)?
            };
            if victims.is_empty() {
                return Err(Error::InUse(format!(
                    "instance {uuid} was opened by {h}, but no process has its VFIO nodes \
                     open (the device fd was passed on, or that pid is of another PID \
                     namespace): stop its VMM yourself, then `vhost-mdev remove {uuid}`"
                )));
            }
            for v in &victims {
                notify(&format!(
                    "instance {uuid} is in use by {v}: ending it (SIGTERM, SIGKILL after \
                     {timeout} s)"
                ));
                signal(v, libc::SIGTERM, "TERM")?;
            }
            if !wait_released(sysfs, &inst, Duration::from_secs(timeout))? {
                for v in &victims {
                    notify(&format!("pid {} still holds {uuid}: SIGKILL", v.pid));
                    signal(v, libc::SIGKILL, "KILL")?;
                }
                if !wait_released(sysfs, &inst, Duration::from_secs(10))? {
                    return Err(Error::InUse(format!(
                        "instance {uuid} is still in use by {h} after SIGKILL: it may be \
                         stuck in the kernel (see dmesg); retry `vhost-mdev remove --wait`"
                    )));
                }
            }
        } else if wait {
            notify(&format!(
                "instance {uuid} is in use by {h}: asking it to release the device (the \
                 kernel signals its request IRQ, again every 10 s) and waiting until it \
                 closes it; after a signal to this command the wait cannot be interrupted"
            ));
        } else {
            return Err(Error::InUse(format!(
                "instance {uuid} is in use by {h}: stop that process first, or use \
                 `vhost-mdev remove --wait` (asks it to release the device and waits) or \
                 `--force` (ends it)"
            )));
        }
    }
    if inst.status.as_ref().is_some_and(|s| s.remove_requested > 0) {
        // Another removal waits already: wait for it to complete.
        notify(&format!("a removal of {uuid} is pending: waiting for it"));
        while sysfs.instance(uuid).is_ok() {
            std::thread::sleep(Duration::from_millis(100));
        }
    } else {
        match sysfs.remove(uuid) {
            // Removed meanwhile (the holder's manager may remove it on
            // release).
            Err(Error::NotFound(_)) if force || wait => {}
            r => r?,
        }
    }
    // Gone for good: its nodes do not come back to that owner. (mdevctl
    // stop does not get here: its definitions keep theirs.)
    own::record(sysfs, uuid, None)?;
    println!("removed {uuid}");
    Ok(())
}

/// `info`: an instance from sysfs only.
#[derive(Serialize)]
struct InfoView {
    #[serde(flatten)]
    inst: InstanceView,
    type_name: Option<String>,
    description: Option<String>,
    device_api: Option<String>,
    /// The parent's attributes (name to text).
    config: BTreeMap<String, String>,
}

fn info(sysfs: &Sysfs, uuid: &Uuid, json: bool) -> Result<()> {
    let inst = sysfs.instance(uuid)?;
    let ty = |f: &str| {
        std::fs::read_to_string(inst.path.join("mdev_type").join(f))
            .ok()
            .map(|s| s.trim_end().to_string())
    };
    let v = InfoView {
        inst: InstanceView::new(sysfs, &inst),
        type_name: ty("name"),
        description: ty("description"),
        device_api: ty("device_api"),
        config: sysfs.config(&inst)?,
    };
    if json {
        return print_json(&v);
    }
    let dash = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    println!("uuid: {}", inst.uuid);
    println!("parent: {}", dash(&inst.parent));
    println!(
        "type: {}{}",
        dash(&inst.type_id),
        v.description
            .as_ref()
            .or(v.type_name.as_ref())
            .map(|d| format!(" ({d})"))
            .unwrap_or_default()
    );
    println!("device_api: {}", dash(&v.device_api));
    println!("driver: {}", dash(&inst.driver));
    if let Some(g) = inst.iommu_group {
        println!("iommu group: {g} (/dev/vfio/{g})");
    }
    if let Some(c) = &inst.vfio_cdev {
        println!("vfio cdev: /dev/vfio/devices/{c}");
    }
    println!("state: {}", v.inst.state);
    match &v.inst.holder {
        Some(h) => println!("holder: pid {} ({})", h.pid, h.comm),
        None => println!("holder: -"),
    }
    println!("backend: {}", dash(&v.inst.backend));
    if let Some(n) = v.inst.remove_requested {
        println!("remove requested: {n}");
    }
    for (k, val) in &v.config {
        println!("{k}: {val}");
    }
    Ok(())
}

fn probe(sysfs: &Sysfs, a: &DeviceArgs) -> Result<()> {
    let t = open(sysfs, a, HEAD_COPY)?;
    let b = t.backend();
    println!("device: {}", b.describe());
    if let Target::Mdev(d) = &t {
        let vi = d.info()?;
        println!(
            "vfio: flags {:#x}, {} regions, {} irqs",
            vi.flags, vi.num_regions, vi.num_irqs
        );
    }
    let id = b.get_device_id()?;
    let idname = match id {
        VIRTIO_ID_NET => " (net)",
        VIRTIO_ID_BLOCK => " (block)",
        _ => "",
    };
    println!("virtio device id: {id}{idname}");
    let st = b.get_status()?;
    println!("status: {st:#x} [{}]", status_names(st).join("|"));
    let f = b.get_features()?;
    println!("features: {f:#x}");
    if id != VIRTIO_ID_BLOCK {
        // The names of the device-specific bits are virtio-net's.
        for n in feature_names(f) {
            println!("  {n}");
        }
    }
    println!("queues: {}", b.get_vqs_count()?);
    println!("max queue size: {}", b.get_vring_num()?);
    let size = b.get_config_size()?;
    println!("config size: {size}");
    if id == VIRTIO_ID_NET && size >= 6 {
        let c = NetConfig::parse(&b.get_config(0, size.min(NET_CONFIG_LEN as u32))?)?;
        println!("mac: {}", c.mac);
        println!("mtu: {}", c.mtu);
        println!(
            "link: {} (status {:#x})",
            if c.link_up() { "up" } else { "down" },
            c.status
        );
        println!("max virtqueue pairs: {}", c.max_virtqueue_pairs);
    }
    if id == VIRTIO_ID_BLOCK && size as usize >= blk::CONFIG_LEN {
        let c = BlkConfig::parse(&b.get_config(0, blk::CONFIG_LEN as u32)?)?;
        println!("capacity: {} sectors", c.capacity);
        println!("read-only: {}", u8::from(f & (1 << blk::F_RO) != 0));
        println!("seg_max: {}", c.seg_max);
        println!("blk_size: {}", c.blk_size);
    }
    Ok(())
}

/// A pattern that differs in every byte of a sector and from sector to
/// sector.
fn blk_pattern(sector: u64, len: usize, seed: u64) -> Vec<u8> {
    (0..len)
        .map(|i| {
            let s = sector + (i / blk::SECTOR_SIZE) as u64;
            (i as u64 ^ s.wrapping_mul(131) ^ seed.wrapping_mul(7)) as u8
        })
        .collect()
}

fn blk_status(what: &str, s: u8) -> Result<()> {
    if s == blk::S_OK {
        return Ok(());
    }
    let name = match s {
        blk::S_IOERR => "VIRTIO_BLK_S_IOERR",
        blk::S_UNSUPP => "VIRTIO_BLK_S_UNSUPP",
        _ => "an unknown status",
    };
    Err(Error::Protocol(format!(
        "{what}: the device answered {name} ({s})"
    )))
}

fn blk_cmd(sysfs: &Sysfs, a: &DeviceArgs, op: &BlkOp) -> Result<()> {
    let t = open(sysfs, a, usize::MAX)?;
    let mut drv = BlkDriver::start(
        t.backend(),
        BlkDriverConfig {
            queue_size: a.queue_size,
            eventfd_kick: a.ioeventfd,
            indirect: a.indirect,
            ..Default::default()
        },
    )?;
    let cap = drv.config().capacity;
    match *op {
        BlkOp::Check {
            sector,
            sectors,
            count,
        } => {
            if sectors == 0 || sectors > cap || sectors * blk::SECTOR_SIZE as u64 > 1 << 19 {
                return Err(Error::InvalidArgument(format!(
                    "--sectors {sectors}: 1 to {} (the capacity, and 512 KiB)",
                    cap.min(1024)
                )));
            }
            let len = (sectors as usize) * blk::SECTOR_SIZE;
            let mut at = sector;
            for i in 0..count {
                if at + sectors > cap {
                    at = 0;
                }
                let data = blk_pattern(at, len, i);
                // 1 to 4 data buffers.
                let bufs = 1 + (i % 4) as usize;
                if drv.read_only() {
                    let s = drv.write(at, &data, bufs)?;
                    if s != blk::S_IOERR {
                        return Err(Error::Protocol(format!(
                            "a write to the read-only disk got status {s}, not IOERR"
                        )));
                    }
                } else {
                    blk_status(
                        &format!("write at sector {at}"),
                        drv.write(at, &data, bufs)?,
                    )?;
                    let (s, got) = drv.read(at, len, 5 - bufs)?;
                    blk_status(&format!("read at sector {at}"), s)?;
                    if let Some(k) = (0..len).find(|&k| got[k] != data[k]) {
                        return Err(Error::Protocol(format!(
                            "request {i}: byte {k} of sector {} read back {:#04x}, written {:#04x}",
                            at + (k / blk::SECTOR_SIZE) as u64,
                            got[k],
                            data[k]
                        )));
                    }
                }
                at += sectors;
            }
            let (s, _) = drv.request(blk::T_FLUSH, 0, 0)?;
            blk_status("flush", s)?;
            println!(
                "{}: {count} requests of {sectors} sectors {}; capacity {cap} sectors",
                t.backend().describe(),
                if drv.read_only() {
                    "refused (read-only disk)"
                } else {
                    "written and read back byte-identical"
                }
            );
        }
        BlkOp::Read { sector, count } => {
            let len = usize::try_from(count)
                .ok()
                .and_then(|c| c.checked_mul(blk::SECTOR_SIZE))
                .filter(|&l| l <= 1 << 19)
                .ok_or_else(|| Error::InvalidArgument(format!("{count} sectors (max 1024)")))?;
            let (s, data) = drv.read(sector, len, 1)?;
            blk_status(&format!("read at sector {sector}"), s)?;
            std::io::stdout()
                .write_all(&data)
                .map_err(|e| Error::io("stdout", &e))?;
        }
        BlkOp::Write { sector } => {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut data)
                .map_err(|e| Error::io("stdin", &e))?;
            if data.is_empty() || data.len() % blk::SECTOR_SIZE != 0 || data.len() > 1 << 19 {
                return Err(Error::InvalidArgument(format!(
                    "{} bytes on stdin: a whole number of 512-byte sectors, 1 to 1024",
                    data.len()
                )));
            }
            blk_status(
                &format!("write at sector {sector}"),
                drv.write(sector, &data, 1)?,
            )?;
        }
        BlkOp::Flush => blk_status("flush", drv.request(blk::T_FLUSH, 0, 0)?.0)?,
        BlkOp::Id => {
            let (s, id) = drv.request(blk::T_GET_ID, 0, blk::ID_BYTES)?;
            blk_status("get-id", s)?;
            let end = id.iter().position(|&b| b == 0).unwrap_or(id.len());
            println!("{}", String::from_utf8_lossy(&id[..end]));
        }
    }
    drv.stop()
}

fn ring_desc<B: VhostBackend>(drv: &NetDriver<B>) -> String {
    format!(
        "{} rings, {} queue pair{}",
        if drv.packed() { "packed" } else { "split" },
        drv.num_pairs(),
        if drv.num_pairs() == 1 { "" } else { "s" }
    )
}

fn ping(sysfs: &Sysfs, a: &DeviceArgs, r: RingArgs, count: u64, size: usize) -> Result<()> {
    // Whole frames: ping checks every byte.
    let t = open_pairs(sysfs, a, usize::MAX, r.pairs)?;
    let mut drv = NetDriver::start(t.backend(), driver_config(a, r, size))?;
    println!(
        "{}: mac {}, queue size {}, {}, features {:#x}",
        t.backend().describe(),
        drv.mac(),
        drv.queue_size(),
        ring_desc(&drv),
        drv.features()
    );
    for p in 0..drv.num_pairs() {
        drv.select_pair(p)?;
        let rep = driver::ping(&mut drv, count, size)
            .map_err(|e| Error::Protocol(format!("pair {p}: {e}")))?;
        let mut rtts: Vec<u64> = rep.rtts.iter().map(|d| d.as_nanos() as u64).collect();
        rtts.sort_unstable();
        println!(
            "{}{} frames looped back byte-identical and in order; rtt p50 {:.1} us, p99 {:.1} us",
            if drv.num_pairs() > 1 {
                format!("pair {p}: ")
            } else {
                String::new()
            },
            rep.frames,
            driver::percentile_us(&rtts, 0.5),
            driver::percentile_us(&rtts, 0.99)
        );
    }
    drv.stop()
}

/// A counter's value: a number, or the text when it is not one.
fn counter(v: &str) -> serde_json::Value {
    v.parse::<u64>()
        .map(serde_json::Value::from)
        .unwrap_or_else(|_| serde_json::Value::from(v))
}

fn stats(sysfs: &Sysfs, uuid: &Uuid, json: bool) -> Result<()> {
    let inst = sysfs.instance(uuid)?;
    let s = sysfs.stats(&inst)?;
    // `NAME_per_pair`: one value per queue pair, space separated.
    let mut pairs: Vec<BTreeMap<String, serde_json::Value>> = Vec::new();
    let mut counters = BTreeMap::new();
    for (k, v) in &s {
        match k.strip_suffix("_per_pair") {
            Some(name) => {
                for (p, x) in v.split_whitespace().enumerate() {
                    if pairs.len() <= p {
                        pairs.resize_with(p + 1, BTreeMap::new);
                    }
                    pairs[p].insert(name.to_string(), counter(x));
                }
            }
            None => {
                counters.insert(k.clone(), counter(v));
            }
        }
    }
    if json {
        #[derive(Serialize)]
        struct Stats {
            uuid: Uuid,
            counters: BTreeMap<String, serde_json::Value>,
            pairs: Vec<BTreeMap<String, serde_json::Value>>,
        }
        return print_json(&Stats {
            uuid: *uuid,
            counters,
            pairs,
        });
    }
    if s.is_empty() {
        println!("{uuid}: no counters (the parent exposes no stats/ directory)");
    }
    for (k, v) in &s {
        println!("{k}: {v}");
    }
    for (p, m) in pairs.iter().enumerate() {
        let fields: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("pair {p}: {}", fields.join(", "));
    }
    Ok(())
}

fn create(
    sysfs: &Sysfs,
    parent: &str,
    type_: &str,
    uuid: Option<Uuid>,
    config: &ConfigArgs,
    owner: Option<&str>,
    json: bool,
) -> Result<()> {
    // Before anything is created: an unknown user is a usage error.
    let owner = owner.map(own::parse_owner).transpose()?;
    let t = sysfs.find_type(parent, type_)?;
    if !t.is_vhost() {
        return Err(Error::InvalidArgument(format!(
            "type {} of {parent} has device_api {:?}, not vfio-vhost: vhost-mdev creates \
             vhost-mdev instances only (`vhost-mdev list types`); use mdevctl for others",
            t.id, t.device_api
        )));
    }
    if t.available_instances == 0 {
        return Err(Error::NoAvailableInstances(format!(
            "type {} of {parent} has no available instances: remove one first \
             (`vhost-mdev list instances`)",
            t.id
        )));
    }
    let u = sysfs.create(&t, uuid)?;
    let configured = (|| {
        let inst = sysfs.instance(&u)?;
        let attrs = config.attrs();
        // All or nothing: check that the parent offers each first.
        for (k, _) in &attrs {
            if !sysfs.has_attr(&inst, k) {
                return Err(Error::NotOffered(format!(
                    "--{}: the parent {parent} offers no {k} attribute (`vhost-mdev info {u}` \
                     lists what it offers)",
                    k.replace('_', "-")
                )));
            }
        }
        for (k, v) in &attrs {
            sysfs.set_attr(&inst, k, v)?;
        }
        if let Some(o) = &owner {
            own::record(sysfs, &u, Some(o))?;
            if let Err(e) = own::apply(sysfs, &inst, o) {
                let _ = own::record(sysfs, &u, None);
                return Err(e);
            }
        }
        Ok(())
    })();
    if let Err(e) = configured {
        // Not left half-configured.
        let _ = sysfs.remove(&u);
        notify(&format!("instance {u} removed again"));
        return Err(e);
    }
    if json {
        #[derive(Serialize)]
        struct Created {
            uuid: Uuid,
        }
        print_json(&Created { uuid: u })
    } else {
        println!("{u}");
        Ok(())
    }
}

fn config(sysfs: &Sysfs, cmd: &ConfigCmd, json: bool) -> Result<()> {
    match cmd {
        ConfigCmd::Show { inst } => {
            let i = sysfs.instance(&inst.get())?;
            let c = sysfs.config(&i)?;
            if json {
                return print_json(&c);
            }
            for (k, v) in &c {
                println!("{k}: {v}");
            }
            Ok(())
        }
        ConfigCmd::Set { inst, config } => {
            let u = inst.get();
            let i = sysfs.instance(&u)?;
            let attrs = config.attrs();
            if attrs.is_empty() {
                return Err(Error::InvalidArgument(
                    "nothing to set: give --mac, --mtu or --queue-pairs".into(),
                ));
            }
            if let Some(st) = &i.status {
                if st.is_open() {
                    let who = sysfs
                        .holders(&i)?
                        .first()
                        .map_or("a process".to_string(), |h| h.to_string());
                    return Err(Error::InUse(format!(
                        "instance {u} is open (held by {who}): its configuration changes \
                         only while it is closed; stop that process first (`vhost-mdev link` \
                         works while open)"
                    )));
                }
            }
            for (k, _) in &attrs {
                if !sysfs.has_attr(&i, k) {
                    return Err(Error::NotOffered(format!(
                        "--{}: the parent of {u} offers no {k} attribute (`vhost-mdev info \
                         {u}` lists what it offers)",
                        k.replace('_', "-")
                    )));
                }
            }
            for (k, v) in &attrs {
                sysfs.set_attr(&i, k, v)?;
            }
            Ok(())
        }
    }
}

/// The instance of a command whose UUID comes first among its positional
/// arguments unless `-u` gives it (`link`, `own`), and the other
/// arguments, of which there may be `min..=max`; `usage` says how.
fn uuid_first(
    uuid: Option<Uuid>,
    args: &[String],
    min: usize,
    max: usize,
    usage: &str,
) -> Result<(Uuid, Vec<String>)> {
    let (u, rest) = match (uuid, args) {
        (Some(u), rest) => (u, rest),
        (None, [u, rest @ ..]) => (
            Uuid::parse_str(u).map_err(|_| {
                Error::InvalidArgument(format!("{u:?} is not an instance UUID: {usage}"))
            })?,
            rest,
        ),
        (None, []) => return Err(Error::InvalidArgument(format!("no instance: {usage}"))),
    };
    if rest.len() < min || rest.len() > max {
        return Err(Error::InvalidArgument(format!(
            "{}: {usage}",
            if uuid.is_some() && !args.is_empty() && Uuid::parse_str(&args[0]).is_ok() {
                "the UUID given twice (-u and an argument)"
            } else {
                "wrong number of arguments"
            }
        )));
    }
    Ok((u, rest.to_vec()))
}

/// `link [UUID] up|down` (or `-u UUID up|down`): the UUID and the state.
fn link_args(uuid: Option<Uuid>, args: &[String]) -> Result<(Uuid, LinkState)> {
    use clap::ValueEnum;
    let usage = "`vhost-mdev link UUID up|down` or `vhost-mdev link -u UUID up|down`";
    let (u, rest) = uuid_first(uuid, args, 1, 1, usage)?;
    let st = &rest[0];
    let state = LinkState::from_str(st, false)
        .map_err(|_| Error::InvalidArgument(format!("link state {st:?}: up or down")))?;
    Ok((u, state))
}

/// `own [UUID] [USER[:GROUP]]` (or `-u UUID`): the UUID and the owner.
fn own_args(uuid: Option<Uuid>, args: &[String], reset: bool) -> Result<(Uuid, Option<String>)> {
    let usage = "`vhost-mdev own UUID [USER[:GROUP] | --reset]` (or -u UUID)";
    let (u, rest) = uuid_first(uuid, args, 0, 1, usage)?;
    let owner = rest.into_iter().next();
    if reset && owner.is_some() {
        return Err(Error::InvalidArgument(format!(
            "--reset gives the nodes to root: no owner with it: {usage}"
        )));
    }
    Ok((u, owner))
}

/// `own`: shows, sets or resets who owns an instance's VFIO nodes.
fn own_cmd(sysfs: &Sysfs, uuid: &Uuid, owner: Option<&str>, reset: bool, json: bool) -> Result<()> {
    let owner = owner.map(own::parse_owner).transpose()?;
    let inst = sysfs.instance(uuid)?;
    if reset {
        own::apply(sysfs, &inst, &own::Owner::ROOT)?;
        own::record(sysfs, uuid, None)?;
    } else if let Some(o) = &owner {
        // Checked first: the record must not name nodes that cannot be
        // given.
        own::nodes(sysfs, &inst)?;
        own::record(sysfs, uuid, Some(o))?;
        own::apply(sysfs, &inst, o)?;
    }
    own::show(sysfs, &inst, json)
}

fn link(sysfs: &Sysfs, uuid: &Uuid, state: LinkState) -> Result<()> {
    let i = sysfs.instance(uuid)?;
    let v = match state {
        LinkState::Up => "up",
        LinkState::Down => "down",
    };
    sysfs.set_attr(&i, "link", v)?;
    println!("{uuid}: link {v}");
    Ok(())
}

fn install_assets(a: &InstallAssets) -> Result<()> {
    for (rel, data) in assets::ASSETS {
        let path = a.dir.join(rel);
        if a.list {
            println!("{}", path.display());
            continue;
        }
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)
                .map_err(|e| Error::io(format!("mkdir {}", d.display()), &e))?;
        }
        std::fs::write(&path, data)
            .map_err(|e| Error::io(format!("write {}", path.display()), &e))?;
    }
    Ok(())
}

fn bench(
    sysfs: &Sysfs,
    a: &DeviceArgs,
    ring: RingArgs,
    opts: BenchOptions,
    json: bool,
) -> Result<()> {
    let t = open_pairs(sysfs, a, HEAD_COPY, ring.pairs)?;
    let mut drv = NetDriver::start(t.backend(), driver_config(a, ring, opts.size))?;
    let tty = std::io::stderr().is_terminal();
    let total = opts.duration.as_secs_f64();
    let mut progress = |p: driver::BenchProgress| {
        if tty {
            let secs = p.elapsed.as_secs_f64();
            eprint!(
                "\r[{secs:5.1}/{total:.1} s] {} packets, {:.0} pps   ",
                p.packets,
                p.packets as f64 / secs.max(1e-9)
            );
            let _ = std::io::stderr().flush();
        }
    };
    let r = driver::bench(&mut drv, opts, &mut progress)?;
    if tty {
        eprintln!();
    }
    if json {
        println!("{}", r.to_json());
    } else {
        println!(
            "{} ({}): {} packets of {} bytes in {:.2} s: {:.0} pps, {:.3} Gbit/s, latency p50 \
             {:.1} us, p90 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us{}{}",
            t.backend().describe(),
            ring_desc(&drv),
            r.packets,
            opts.size,
            r.seconds,
            r.pps,
            r.gbps,
            r.p50_us,
            r.p90_us,
            r.p99_us,
            r.p999_us,
            r.max_us,
            if opts.busy_poll {
                format!(
                    " (busy polling{})",
                    if opts.no_yield {
                        ", never yielding"
                    } else {
                        ""
                    }
                )
            } else {
                format!(
                    "; {} waits, {} timed out, {} with a frame already used",
                    r.waits, r.wait_timeouts, r.late_irqs
                )
            },
            if r.pair_packets.len() > 1 {
                format!("; packets per pair {:?}", r.pair_packets)
            } else {
                String::new()
            }
        );
    }
    drv.stop()
}

/// The root under which /sys, /proc, /dev and /etc are looked up:
/// `VHOST_MDEV_ROOT` (the host tests' fixtures), else /.
fn sysfs() -> Sysfs {
    match std::env::var_os("VHOST_MDEV_ROOT") {
        Some(r) if !r.is_empty() => Sysfs::with_root(r),
        _ => Sysfs::system(),
    }
}

fn run(cli: Cli) -> Result<()> {
    let sysfs = sysfs();
    let json = cli.json;
    match cli.cmd {
        Cmd::List { what } => list(&sysfs, what, json),
        Cmd::Attach { name, create, wait } => attach(&sysfs, &name, create, wait),
        Cmd::Detach { name, to, wait } => detach(&sysfs, &name, to.as_deref(), wait),
        Cmd::Create {
            parent,
            type_,
            uuid,
            config,
            owner,
        } => create(
            &sysfs,
            &parent,
            &type_,
            uuid,
            &config,
            owner.as_deref(),
            json,
        ),
        Cmd::Own { uuid, args, reset } => {
            let (u, owner) = own_args(uuid, &args, reset)?;
            own_cmd(&sysfs, &u, owner.as_deref(), reset, json)
        }
        Cmd::Remove {
            inst,
            wait,
            force,
            timeout,
        } => remove(&sysfs, &inst.get(), wait, force, timeout),
        Cmd::Info { inst } => info(&sysfs, &inst.get(), json),
        Cmd::Probe(a) => probe(&sysfs, &a),
        Cmd::Config { cmd } => config(&sysfs, &cmd, json),
        Cmd::Link { uuid, args } => {
            let (u, state) = link_args(uuid, &args)?;
            link(&sysfs, &u, state)
        }
        Cmd::Ping {
            dev,
            ring,
            count,
            size,
        } => ping(&sysfs, &dev, ring, count, size),
        Cmd::Stats { inst } => stats(&sysfs, &inst.get(), json),
        Cmd::Blk { dev, op } => blk_cmd(&sysfs, &dev, &op),
        Cmd::Bench {
            dev,
            ring,
            size,
            depth,
            seconds,
            pingpong,
            busy_poll,
            no_yield,
        } => {
            if !(seconds > 0.0 && seconds.is_finite()) {
                return Err(Error::InvalidArgument(format!(
                    "--seconds {seconds}: a positive number of seconds"
                )));
            }
            let opts = BenchOptions {
                size,
                depth,
                duration: Duration::from_secs_f64(seconds),
                pingpong,
                busy_poll,
                no_yield,
            };
            bench(&sysfs, &dev, ring, opts, json)
        }
    }
}

/// What to do about an error whose message may not say it.
fn hint(e: &Error) -> Option<&'static str> {
    match (e.class(), e) {
        (Class::Permission, _) => Some(
            "run as root, or give the user the instance's VFIO nodes: `vhost-mdev own UUID \
             USER[:GROUP]` (\"Unprivileged VMMs\" in Documentation/admin-guide.rst)",
        ),
        (Class::Busy, Error::InUse(_)) => None,
        (Class::Busy, _) => {
            Some("another process holds the device: `vhost-mdev list instances` names it")
        }
        (Class::NotFound, Error::Sysfs { .. } | Error::Sys { .. }) => {
            Some("`vhost-mdev list` shows the parents, types and instances there are")
        }
        (Class::Device, Error::Sysfs { .. } | Error::Sys { .. } | Error::Request { .. }) => {
            Some("the kernel log (dmesg) may say why; `vhost-mdev info UUID` shows the instance")
        }
        (Class::Usage, _) => Some("`vhost-mdev help COMMAND` lists what a command takes"),
        _ => None,
    }
}

fn main() -> ExitCode {
    // Usage errors exit with 2 (clap's), --help and --version with 0.
    let first = std::env::args_os().nth(1);
    let r = if first.as_ref().is_some_and(|a| a == "install-assets") {
        install_assets(&InstallAssets::parse_from(std::env::args_os().skip(1)))
    } else if first.as_ref().is_some_and(|a| a == "udev-import") {
        let a = UdevImport::parse_from(std::env::args_os().skip(1));
        own::udev_import(&sysfs(), &a.devpath)
    } else {
        run(Cli::parse())
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vhost-mdev: error: {e}");
            if let Some(h) = hint(&e) {
                eprintln!("vhost-mdev: {h}");
            }
            ExitCode::from(e.class().exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_subcommands() {
        let c = Cli::try_parse_from([
            "vhost-mdev",
            "bench",
            "7d6c2f6e-0f0a-4a4e-9d0e-3f1b2c3d4e5f",
            "--size",
            "60",
            "--pingpong",
            "--busy-poll",
            "--no-yield",
            "--json",
            "--iommufd",
        ])
        .unwrap();
        match &c.cmd {
            Cmd::Bench {
                dev,
                size,
                pingpong,
                busy_poll,
                no_yield,
                ..
            } => {
                assert!(c.json && dev.iommufd && *pingpong && *busy_poll && *no_yield);
                assert_eq!(*size, 60);
            }
            _ => panic!("not bench"),
        }
        assert!(Cli::try_parse_from(["vhost-mdev", "remove", "not-a-uuid"]).is_err());
        let c =
            Cli::try_parse_from(["vhost-mdev", "ping", "/dev/vhost-vdpa-0", "-n", "3"]).unwrap();
        assert!(matches!(c.cmd, Cmd::Ping { count: 3, .. }));
        let c = Cli::try_parse_from([
            "vhost-mdev",
            "blk",
            "7d6c2f6e-0f0a-4a4e-9d0e-3f1b2c3d4e5f",
            "--iommufd",
            "check",
            "--sectors",
            "4",
            "-n",
            "2",
        ])
        .unwrap();
        match c.cmd {
            Cmd::Blk {
                dev,
                op: BlkOp::Check { sectors, count, .. },
            } => assert!(dev.iommufd && sectors == 4 && count == 2),
            _ => panic!("not blk check"),
        }
        assert!(Cli::try_parse_from(["vhost-mdev", "blk", "x", "read"]).is_err());
    }

    #[test]
    fn parses_mdevctl_short_options_and_new_commands() {
        let u = "77777777-0000-4000-8000-000000000001";
        let c = Cli::try_parse_from([
            "vhost-mdev",
            "create",
            "-p",
            "mvnet",
            "-t",
            "net",
            "-u",
            u,
            "--mac",
            "52:54:00:00:00:01",
            "--mtu",
            "9000",
            "--queue-pairs",
            "4",
            "--owner",
            "qemu:kvm",
        ])
        .unwrap();
        match c.cmd {
            Cmd::Create {
                parent,
                type_,
                uuid,
                config,
                owner,
            } => {
                assert_eq!((parent.as_str(), type_.as_str()), ("mvnet", "net"));
                assert_eq!(owner.as_deref(), Some("qemu:kvm"));
                assert_eq!(uuid.unwrap().to_string(), u);
                assert_eq!(
                    config.attrs(),
                    [
                        ("mac", "52:54:00:00:00:01".to_string()),
                        ("mtu", "9000".to_string()),
                        ("queue_pairs", "4".to_string())
                    ]
                );
            }
            c => panic!("not create: {c:?}"),
        }
        // A UUID positional or as -u, not both, and one of them.
        for args in [
            vec!["info", u],
            vec!["info", "-u", u],
            vec!["stats", "--uuid", u],
        ] {
            let mut v = vec!["vhost-mdev"];
            v.extend(args);
            let c = Cli::try_parse_from(v).unwrap();
            let (Cmd::Info { inst } | Cmd::Stats { inst }) = c.cmd else {
                panic!("not info/stats")
            };
            assert_eq!(inst.get().to_string(), u);
        }
        assert!(Cli::try_parse_from(["vhost-mdev", "info", u, "-u", u]).is_err());
        assert!(Cli::try_parse_from(["vhost-mdev", "info"]).is_err());
        // -j anywhere; list's views.
        let c = Cli::try_parse_from(["vhost-mdev", "list", "instances", "-j"]).unwrap();
        assert!(
            c.json
                && matches!(
                    c.cmd,
                    Cmd::List {
                        what: Some(ListWhat::Instances)
                    }
                )
        );
        let c = Cli::try_parse_from(["vhost-mdev", "-j", "list"]).unwrap();
        assert!(c.json && matches!(c.cmd, Cmd::List { what: None }));
        // link: the UUID positional or as -u/--uuid, as the others.
        let link = |args: &[&str]| {
            let mut v = vec!["vhost-mdev", "link"];
            v.extend(args);
            match Cli::try_parse_from(v).map(|c| c.cmd) {
                Ok(Cmd::Link { uuid, args }) => link_args(uuid, &args).map_err(|e| e.to_string()),
                Ok(c) => panic!("not link: {c:?}"),
                Err(e) => Err(e.to_string()),
            }
        };
        let want = (Uuid::parse_str(u).unwrap(), LinkState::Down);
        assert_eq!(link(&[u, "down"]).unwrap(), want);
        assert_eq!(link(&["-u", u, "down"]).unwrap(), want);
        assert_eq!(link(&["--uuid", u, "up"]).unwrap(), (want.0, LinkState::Up));
        for bad in [
            &[u, "sideways"][..],
            &["-u", u, "up", "down"],
            &["-u", u, u, "up"],
            &["-u", u],
            &[u],
            &["up"],
            &["not-a-uuid", "up"],
        ] {
            assert!(link(bad).is_err(), "{bad:?}");
        }
        // own: show, set, reset; the UUID as for link.
        let own = |args: &[&str]| {
            let mut v = vec!["vhost-mdev", "own"];
            v.extend(args);
            match Cli::try_parse_from(v).map(|c| c.cmd) {
                Ok(Cmd::Own { uuid, args, reset }) => own_args(uuid, &args, reset)
                    .map(|(u, o)| (u, o, reset))
                    .map_err(|e| e.to_string()),
                Ok(c) => panic!("not own: {c:?}"),
                Err(e) => Err(e.to_string()),
            }
        };
        let id = Uuid::parse_str(u).unwrap();
        let kvm = Some("4711:kvm".to_string());
        assert_eq!(
            own(&["-u", u, "4711:kvm"]).unwrap(),
            (id, kvm.clone(), false)
        );
        assert_eq!(own(&[u, "4711:kvm"]).unwrap(), (id, kvm, false));
        assert_eq!(own(&[u]).unwrap(), (id, None, false));
        assert_eq!(own(&["--uuid", u]).unwrap(), (id, None, false));
        assert_eq!(own(&[u, "--reset"]).unwrap(), (id, None, true));
        for bad in [
            &[u, "qemu", "--reset"][..],
            &["-u", u, u, "qemu"],
            &["-u", u, "qemu", "kvm"],
            &[u, "qemu", "kvm"],
            &[],
            &["qemu"],
        ] {
            assert!(own(bad).is_err(), "{bad:?}");
        }
        let c =
            Cli::try_parse_from(["vhost-mdev", "remove", u, "--force", "--timeout", "3"]).unwrap();
        assert!(matches!(
            c.cmd,
            Cmd::Remove {
                force: true,
                wait: false,
                timeout: 3,
                ..
            }
        ));
        assert!(Cli::try_parse_from(["vhost-mdev", "remove", u, "--force", "--wait"]).is_err());
        assert!(Cli::try_parse_from(["vhost-mdev", "remove", u, "--timeout", "3"]).is_err());
        let c = Cli::try_parse_from(["vhost-mdev", "config", "set", u, "--mtu", "1400"]).unwrap();
        assert!(matches!(
            c.cmd,
            Cmd::Config {
                cmd: ConfigCmd::Set { .. }
            }
        ));
        assert!(Cli::try_parse_from(["vhost-mdev", "config", "set", u, "--mtu", "x"]).is_err());
    }

    #[test]
    fn generated_assets_cover_every_command_and_shell() {
        let names: Vec<&str> = assets::ASSETS.iter().map(|(n, _)| *n).collect();
        for want in [
            "man/man1/vhost-mdev.1",
            "man/man1/vhost-mdev-list.1",
            "man/man1/vhost-mdev-list-instances.1",
            "man/man1/vhost-mdev-config-set.1",
            "man/man1/vhost-mdev-remove.1",
            "bash-completion/completions/vhost-mdev",
            "zsh/site-functions/_vhost-mdev",
            "fish/vendor_completions.d/vhost-mdev.fish",
        ] {
            assert!(names.contains(&want), "{want} not in {names:?}");
        }
        // The hidden command is in neither.
        assert!(!names.iter().any(|n| n.contains("install-assets")));
        let top = assets::ASSETS
            .iter()
            .find(|(n, _)| *n == "man/man1/vhost-mdev.1")
            .map(|(_, d)| String::from_utf8_lossy(d))
            .unwrap();
        assert!(top.contains("EXIT STATUS") && top.contains("no available instances"));
        let bash = assets::ASSETS
            .iter()
            .find(|(n, _)| n.starts_with("bash"))
            .map(|(_, d)| String::from_utf8_lossy(d))
            .unwrap();
        assert!(bash.contains("--queue-pairs") && !bash.contains("install-assets"));
        // Nor the test hooks.
        for (n, d) in assets::ASSETS {
            let d = String::from_utf8_lossy(d);
            assert!(
                !d.contains("--root") && !d.contains("udev-import"),
                "{n} offers a hidden option or command"
            );
        }
        assert!(Cli::try_parse_from(["vhost-mdev", "install-assets", "/tmp"]).is_err());
    }

    #[test]
    fn parses_attach_and_detach() {
        let attach = |args: &[&str]| {
            let mut v = vec!["vhost-mdev", "attach"];
            v.extend(args);
            match Cli::try_parse_from(v).map(|c| c.cmd) {
                Ok(Cmd::Attach { name, create, wait }) => Ok((name, create, wait)),
                Ok(c) => panic!("not attach: {c:?}"),
                Err(e) => Err(e),
            }
        };
        assert_eq!(attach(&["vdpa1"]).unwrap(), ("vdpa1".into(), None, false));
        assert_eq!(
            attach(&["vdpa1", "--create", "--wait"]).unwrap(),
            ("vdpa1".into(), Some(None), true)
        );
        let u = "77777777-0000-0000-0000-000000000001";
        assert_eq!(
            attach(&["vdpa1", "--create", u]).unwrap().1,
            Some(Some(Uuid::parse_str(u).unwrap()))
        );
        assert!(attach(&["vdpa1", "--create", "nope"]).is_err());
        assert!(attach(&[]).is_err());
        let c =
            Cli::try_parse_from(["vhost-mdev", "detach", "vdpa1", "--to", "vhost_vdpa"]).unwrap();
        match c.cmd {
            Cmd::Detach { name, to, wait } => {
                assert_eq!(
                    (name.as_str(), to.as_deref(), wait),
                    ("vdpa1", Some("vhost_vdpa"), false)
                )
            }
            _ => panic!("not detach"),
        }
        assert!(Cli::try_parse_from(["vhost-mdev", "detach", "vdpa1", "--to"]).is_err());
    }

    #[test]
    fn vdpa_line_names_parent_mode_and_node() {
        let mut d = VdpaDevice {
            name: "vdpa1".into(),
            path: "/sys/devices/x/vdpa1".into(),
            driver: Some("vhost_mdev_vdpa".into()),
            driver_override: Some("vhost_mdev_vdpa".into()),
            dma_mode: Some("va".into()),
            vhost_vdpa: vec![],
        };
        assert_eq!(
            vdpa_line(&d),
            "vdpa1 driver vhost_mdev_vdpa (driver_override vhost_mdev_vdpa): parent \
             vhost_mdev_vdpa-vdpa1, type vhost_mdev_vdpa-vdpa1-bridge, dma mode va"
        );
        d.driver = Some("vhost_vdpa".into());
        d.driver_override = None;
        d.dma_mode = None;
        d.vhost_vdpa = vec!["vhost-vdpa-0".into()];
        assert_eq!(vdpa_line(&d), "vdpa1 driver vhost_vdpa: /dev/vhost-vdpa-0");
    }

    #[test]
    fn instant_target_runs_without_a_kernel() {
        let sysfs = Sysfs::with_root(std::path::Path::new("/nonexistent"));
        let c = Cli::try_parse_from(["vhost-mdev", "ping", "instant", "-n", "50"]).unwrap();
        let Cmd::Ping {
            dev,
            ring,
            count,
            size,
        } = c.cmd
        else {
            panic!("not ping");
        };
        assert!(!ring.packed && ring.pairs == 1);
        ping(&sysfs, &dev, ring, count, size).unwrap();
        for packed in [false, true] {
            let ring = RingArgs { packed, pairs: 1 };
            ping(&sysfs, &dev, ring, count, size).unwrap();
            for pingpong in [false, true] {
                let opts = BenchOptions {
                    size: 1500,
                    depth: 64,
                    duration: Duration::from_millis(100),
                    pingpong,
                    busy_poll: true,
                    no_yield: pingpong,
                };
                bench(&sysfs, &dev, ring, opts, true).unwrap();
            }
        }
        // The instant device gets the pairs asked for.
        for packed in [false, true] {
            let ring = RingArgs { packed, pairs: 3 };
            ping(&sysfs, &dev, ring, 20, 0).unwrap();
            let opts = BenchOptions {
                size: 64,
                depth: 16,
                duration: Duration::from_millis(100),
                pingpong: false,
                busy_poll: false,
                no_yield: false,
            };
            bench(&sysfs, &dev, ring, opts, false).unwrap();
        }
        probe(&sysfs, &dev).unwrap();
        let bad = DeviceArgs {
            device: "instantly".into(),
            ..dev
        };
        let e = open(&sysfs, &bad, HEAD_COPY).err().unwrap();
        assert!(e.to_string().contains("`instant`"), "{e}");
    }
}
