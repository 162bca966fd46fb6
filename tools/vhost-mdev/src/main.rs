// SPDX-License-Identifier: GPL-2.0 OR MIT
//! `vhost-mdev`: manage and exercise vhost-mdev instances.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use uuid::Uuid;

use vhost_mdev::blk::{self, BlkConfig, BlkDriver, BlkDriverConfig, VIRTIO_ID_BLOCK};
use vhost_mdev::bridge::{self, bridge_parent_name, bridge_type_id, VdpaDevice};
use vhost_mdev::driver::{self, BenchOptions, KickMode, NetDriver, NetDriverConfig};
use vhost_mdev::instant::{InstantOptions, HEAD_COPY};
use vhost_mdev::net::{NetConfig, FRAME_MAX, NET_CONFIG_LEN};
use vhost_mdev::uapi::{feature_names, status_names, VIRTIO_ID_NET};
use vhost_mdev::{
    Error, InstantNet, IommuKind, MdevDevice, Result, Sysfs, Transport, VhostBackend, VhostVdpa,
};

/// Manage and exercise vhost-mdev instances (the vhost protocol over VFIO
/// mediated devices).
#[derive(Parser, Debug)]
#[command(name = "vhost-mdev", version, propagate_version = true)]
struct Cli {
    /// Root under which /sys, /proc and /dev are looked up (for tests).
    #[arg(long, global = true, default_value = "/", hide = true)]
    root: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// List mdev parents, their types and the instances, and the vDPA
    /// devices (a bridged one with its parent and DMA mode).
    List,
    /// Move a vDPA device onto the vDPA bridge (vhost_mdev_vdpa): it
    /// becomes an mdev parent vhost_mdev_vdpa-NAME with one instance.
    Attach {
        /// The vDPA device (`vdpa dev show`).
        name: String,
        /// Also create the instance, with this UUID (default: a random v4
        /// UUID).
        #[arg(long, value_name = "UUID", num_args = 0..=1)]
        create: Option<Option<Uuid>>,
        /// If a process holds the device open through its driver
        /// (/dev/vhost-vdpa-N), unbind it anyway and wait until that
        /// process closes it (default: refuse).
        #[arg(long)]
        wait: bool,
    },
    /// Move a vDPA device off the vDPA bridge: clear its driver_override
    /// and let the kernel pick a driver, or bind it to --to.
    Detach {
        /// The vDPA device.
        name: String,
        /// The driver to bind it to (e.g. vhost_vdpa, virtio_vdpa) instead
        /// of the kernel's choice.
        #[arg(long, value_name = "DRIVER")]
        to: Option<String>,
        /// If a process holds the bridge instance open, unbind anyway: the
        /// instance's user is asked to release it (request IRQ) and detach
        /// waits until it closes it (default: refuse).
        #[arg(long)]
        wait: bool,
    },
    /// Create an instance of a type.
    Create {
        /// Parent device name (see `list`).
        #[arg(long)]
        parent: String,
        /// Type id (`<parent driver>-<name>`) or type name.
        #[arg(long = "type")]
        type_: String,
        /// UUID of the new instance (default: a random v4 UUID).
        #[arg(long)]
        uuid: Option<Uuid>,
    },
    /// Remove an instance (refused while a process holds it open).
    Remove {
        /// The instance UUID.
        uuid: Uuid,
    },
    /// Show the device id, features and network config of a device.
    Info(DeviceArgs),
    /// Loop frames through a loopback device and check each comes back
    /// byte-identical and in order.
    Ping {
        #[command(flatten)]
        dev: DeviceArgs,
        #[command(flatten)]
        ring: RingArgs,
        /// Number of frames.
        #[arg(short = 'n', long, default_value_t = 10)]
        count: u64,
        /// Frame size in bytes (60..=65535; above 1514 the device needs
        /// MRG_RXBUF or large RX buffers); 0 mixes sizes of 60..=1514.
        #[arg(long, default_value_t = 0)]
        size: usize,
    },
    /// Print the counters under /sys/bus/mdev/devices/UUID/stats/.
    Stats {
        /// The instance UUID.
        uuid: Uuid,
    },
    /// Measure packets/s, Gbit/s and latency through a loopback device.
    Bench {
        #[command(flatten)]
        dev: DeviceArgs,
        #[command(flatten)]
        ring: RingArgs,
        /// Frame size in bytes.
        #[arg(long, default_value_t = 1514)]
        size: usize,
        /// Frames in flight.
        #[arg(long, default_value_t = 64)]
        depth: usize,
        /// Run time in seconds.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// One frame at a time (latency).
        #[arg(long)]
        pingpong: bool,
        /// Spin on the used ring with interrupts off instead of blocking
        /// in poll() on the call eventfd.
        #[arg(long)]
        busy_poll: bool,
        /// With --busy-poll, never yield the CPU while spinning (by
        /// default the driver yields after 32 empty polls).
        #[arg(long, requires = "busy_poll")]
        no_yield: bool,
        /// Print the result as one line of JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send requests to a virtio-blk device (the vhost_mdev_blk RAM disk
    /// sample): check, read, write, flush, id.
    Blk {
        #[command(flatten)]
        dev: DeviceArgs,
        #[command(subcommand)]
        op: BlkOp,
    },
}

/// A virtio-blk operation.
#[derive(Subcommand, Debug)]
enum BlkOp {
    /// Write a pattern over sectors and read it back, checking every byte;
    /// the data in several buffers, as a driver splits it.
    Check {
        /// First sector.
        #[arg(long, default_value_t = 0)]
        sector: u64,
        /// Sectors per request.
        #[arg(long, default_value_t = 8)]
        sectors: u64,
        /// Requests (each at the next sectors, wrapping at the capacity).
        #[arg(short = 'n', long, default_value_t = 16)]
        count: u64,
    },
    /// Read sectors and write their bytes to stdout.
    Read {
        /// First sector.
        sector: u64,
        /// Number of sectors.
        #[arg(default_value_t = 1)]
        count: u64,
    },
    /// Write stdin (a whole number of 512-byte sectors) at a sector.
    Write {
        /// First sector.
        sector: u64,
    },
    /// Send a flush.
    Flush,
    /// Print the device ID string (VIRTIO_BLK_T_GET_ID).
    Id,
}

/// Which device to open and how.
#[derive(Args, Debug)]
struct DeviceArgs {
    /// An instance UUID, the path of a vhost-vdpa device
    /// (/dev/vhost-vdpa-N) to drive the same way, or `instant`: in-process
    /// device that completes at once: the driver's own ceiling (bench
    /// copies the first 64 bytes of each frame, ping whole frames; it
    /// offers packed rings and has as many queue pairs as --pairs asks).
    device: String,
    /// Open through iommufd and the VFIO cdev instead of a type1 container.
    #[arg(long)]
    iommufd: bool,
    /// Send vhost requests as ioctls instead of region-0 messages.
    #[arg(long)]
    ioctl: bool,
    /// Kick through VFIO_DEVICE_IOEVENTFD eventfds instead of region 1.
    #[arg(long)]
    ioeventfd: bool,
    /// Use indirect descriptors.
    #[arg(long)]
    indirect: bool,
    /// Queue size to request.
    #[arg(long, default_value_t = 256)]
    queue_size: u16,
}

/// Ring type and queue pairs of `ping` and `bench`.
#[derive(Args, Debug, Clone, Copy)]
struct RingArgs {
    /// Use packed rings (VIRTIO_F_RING_PACKED, virtio 1.1) instead of
    /// split rings; an error if the device does not offer them.
    #[arg(long)]
    packed: bool,
    /// Queue pairs to drive (vq 2i = RX, 2i + 1 = TX of pair i), all from
    /// one thread in turn. More than 1 needs VIRTIO_NET_F_MQ and 2N queues
    /// on the device (the sample: write its queue_pairs attribute first).
    /// ping checks every pair in turn; bench keeps --depth frames in
    /// flight on each pair and reports the frames of each.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pairs: u16,
}

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

fn list(sysfs: &Sysfs) -> Result<()> {
    let parents = sysfs.parents()?;
    if parents.is_empty() {
        println!(
            "no mdev parents (load vhost_mdev and a parent driver, e.g. `modprobe vhost_mdev_net`)"
        );
    }
    for p in &parents {
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
        println!(
            "parent {} (driver {}){bridged}",
            p.name,
            p.driver.as_deref().unwrap_or("none")
        );
        for t in &p.types {
            println!(
                "  type {:<32} api {:<10} available {:<3} {}",
                t.id,
                t.device_api,
                t.available_instances,
                t.description.as_deref().or(t.name.as_deref()).unwrap_or("")
            );
        }
    }
    let instances = sysfs.instances()?;
    if !instances.is_empty() {
        println!("instances:");
    }
    for i in &instances {
        let holders = sysfs.holders(i).unwrap_or_default();
        let state = match holders.first() {
            Some(h) => format!("in use by pid {} ({})", h.pid, h.comm),
            None if i.driver.is_none() => "no driver".to_string(),
            None => "free".to_string(),
        };
        println!(
            "  {} parent {} type {} group {} cdev {} driver {}: {state}",
            i.uuid,
            i.parent.as_deref().unwrap_or("?"),
            i.type_id.as_deref().unwrap_or("?"),
            i.iommu_group.map_or("-".into(), |g| g.to_string()),
            i.vfio_cdev.as_deref().unwrap_or("-"),
            i.driver.as_deref().unwrap_or("-"),
        );
    }
    let vdpa = sysfs.vdpa_devices()?;
    if !vdpa.is_empty() {
        println!("vdpa devices:");
    }
    for d in &vdpa {
        println!("  {}", vdpa_line(d));
    }
    Ok(())
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
            return Err(Error::NotFound(format!(
                "{} has its instance already (see `vhost-mdev list`)",
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

fn remove(sysfs: &Sysfs, uuid: &Uuid) -> Result<()> {
    let inst = sysfs.instance(uuid)?;
    let holders = sysfs.holders(&inst)?;
    if let Some(h) = holders.first() {
        return Err(Error::InUse(format!(
            "instance {uuid} is in use by {h}: stop that process first (removal would wait \
             until it closes the device)"
        )));
    }
    sysfs.remove(uuid)?;
    println!("removed {uuid}");
    Ok(())
}

fn info(sysfs: &Sysfs, a: &DeviceArgs) -> Result<()> {
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

fn stats(sysfs: &Sysfs, uuid: &Uuid) -> Result<()> {
    let inst = sysfs.instance(uuid)?;
    let s = sysfs.stats(&inst)?;
    if s.is_empty() {
        println!("{uuid}: no counters (the parent exposes no stats/ directory)");
    }
    for (k, v) in s {
        println!("{k}: {v}");
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

fn run(cli: Cli) -> Result<()> {
    let sysfs = Sysfs::with_root(&cli.root);
    match cli.cmd {
        Cmd::List => list(&sysfs),
        Cmd::Attach { name, create, wait } => attach(&sysfs, &name, create, wait),
        Cmd::Detach { name, to, wait } => detach(&sysfs, &name, to.as_deref(), wait),
        Cmd::Create {
            parent,
            type_,
            uuid,
        } => {
            let t = sysfs.find_type(&parent, &type_)?;
            if t.available_instances == 0 {
                return Err(Error::NotFound(format!(
                    "type {} of {parent} has no available instances (remove one first)",
                    t.id
                )));
            }
            let u = sysfs.create(&t, uuid)?;
            println!("{u}");
            Ok(())
        }
        Cmd::Remove { uuid } => remove(&sysfs, &uuid),
        Cmd::Info(a) => info(&sysfs, &a),
        Cmd::Ping {
            dev,
            ring,
            count,
            size,
        } => ping(&sysfs, &dev, ring, count, size),
        Cmd::Stats { uuid } => stats(&sysfs, &uuid),
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
            json,
        } => {
            if !(seconds > 0.0 && seconds.is_finite()) {
                return Err(Error::InvalidArgument(format!("--seconds {seconds}")));
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

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vhost-mdev: error: {e}");
            ExitCode::FAILURE
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
        match c.cmd {
            Cmd::Bench {
                dev,
                size,
                pingpong,
                busy_poll,
                no_yield,
                json,
                ..
            } => {
                assert!(dev.iommufd && pingpong && busy_poll && no_yield && json);
                assert_eq!(size, 60);
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
        info(&sysfs, &dev).unwrap();
        let bad = DeviceArgs {
            device: "instantly".into(),
            ..dev
        };
        let e = open(&sysfs, &bad, HEAD_COPY).err().unwrap();
        assert!(e.to_string().contains("`instant`"), "{e}");
    }
}
