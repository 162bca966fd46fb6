// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The command line of `vhost-mdev`: its clap definitions, shared by the
//! binary and by build.rs, which generates the man pages and the shell
//! completions from them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use uuid::Uuid;

/// Manage and exercise vhost-mdev instances (the vhost protocol over VFIO
/// mediated devices).
///
/// The read-only commands (list, info, stats) read sysfs only: they work
/// while a VMM holds the device, and unprivileged.
#[derive(Parser, Debug)]
#[command(
    name = "vhost-mdev",
    version,
    propagate_version = true,
    after_help = EXIT_STATUS_HELP,
    after_long_help = EXIT_STATUS_HELP
)]
pub struct Cli {
    /// Print the result as JSON (list, info, stats, create, own, bench): one
    /// document on stdout; the fields are in Documentation/cli.rst.
    #[arg(short = 'j', long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// The exit statuses, for `--help` and the man page.
pub const EXIT_STATUS_HELP: &str = "Exit status:
  0  success
  1  device error: the device, the kernel or the system failed the operation
  2  usage: a command line or argument the command does not accept
  3  not found: no such parent, type, instance or attribute
  4  busy: another process holds the device, or it is open
  5  permission denied: run as root, or get access to the device
  6  no available instances: the type has no room for another instance";

/// An instance, as a positional UUID or, as mdevctl takes it, `-u UUID`.
#[derive(Args, Debug, Clone, Copy)]
pub struct InstanceArg {
    /// The instance UUID.
    #[arg(value_name = "UUID", required_unless_present = "uuid_opt")]
    pub uuid: Option<Uuid>,
    /// The instance UUID (as mdevctl's -u).
    #[arg(
        short = 'u',
        long = "uuid",
        value_name = "UUID",
        id = "uuid_opt",
        conflicts_with = "uuid"
    )]
    pub uuid_opt: Option<Uuid>,
}

impl InstanceArg {
    /// The UUID given (clap requires one of the two).
    pub fn get(&self) -> Uuid {
        self.uuid.or(self.uuid_opt).unwrap_or_default()
    }
}

/// The parent's configuration attributes that `create` and `config set`
/// write (where the parent offers them).
#[derive(Args, Debug, Clone, Default)]
pub struct ConfigArgs {
    /// The MAC address (the parent's `mac` attribute), e.g.
    /// 52:54:00:12:34:56.
    #[arg(long, value_name = "MAC")]
    pub mac: Option<String>,
    /// The MTU (the parent's `mtu` attribute; the net sample: 68-65535).
    #[arg(long, value_name = "BYTES")]
    pub mtu: Option<u16>,
    /// The queue pairs (the parent's `queue_pairs` attribute; the net
    /// sample: 1-128).
    #[arg(long, value_name = "N")]
    pub queue_pairs: Option<u16>,
}

impl ConfigArgs {
    /// The attributes to write, in order.
    pub fn attrs(&self) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        if let Some(m) = &self.mac {
            v.push(("mac", m.clone()));
        }
        if let Some(m) = self.mtu {
            v.push(("mtu", m.to_string()));
        }
        if let Some(q) = self.queue_pairs {
            v.push(("queue_pairs", q.to_string()));
        }
        v
    }
}

/// What `list` shows.
#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListWhat {
    /// The mdev parents (with their types).
    Parents,
    /// The mdev types of every parent.
    Types,
    /// The instances: parent, type, state and holder.
    Instances,
    /// The vDPA devices and their drivers.
    Vdpa,
}

/// `config` subcommands.
#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Show the parent's configuration attributes of an instance.
    Show {
        #[command(flatten)]
        inst: InstanceArg,
    },
    /// Set configuration attributes of a closed instance (a VMM reads them
    /// when it opens the device; refused while it is open).
    Set {
        #[command(flatten)]
        inst: InstanceArg,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

/// A link state.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Link up.
    Up,
    /// Link down.
    Down,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// List mdev parents, their types and the instances, and the vDPA
    /// devices (a bridged one with its parent and DMA mode); or only one
    /// of these.
    List {
        #[command(subcommand)]
        what: Option<ListWhat>,
    },
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
    /// Create an instance of a type (whose device_api is vfio-vhost), and
    /// set its configuration attributes.
    Create {
        /// Parent device name (see `list parents`).
        #[arg(short = 'p', long)]
        parent: String,
        /// Type id (`<parent driver>-<name>`) or type name.
        #[arg(short = 't', long = "type")]
        type_: String,
        /// UUID of the new instance (default: a random v4 UUID).
        #[arg(short = 'u', long)]
        uuid: Option<Uuid>,
        #[command(flatten)]
        config: ConfigArgs,
        /// Give the instance's VFIO group node and cdev to this user (and
        /// group), as `vhost-mdev own` does: a user or uid, a group or gid.
        #[arg(long, value_name = "USER[:GROUP]")]
        owner: Option<String>,
    },
    /// Show or set who owns an instance's VFIO nodes (its group node
    /// /dev/vfio/N and its cdev /dev/vfio/devices/vfioX): with USER, give
    /// both to that user (mode 0600), with USER:GROUP also to that group
    /// (0660), and record it so that the udev rule gives them again when
    /// the nodes come back (re-creation, reboot).
    Own {
        /// The instance UUID (as mdevctl's -u; or the first argument).
        #[arg(short = 'u', long = "uuid", value_name = "UUID")]
        uuid: Option<Uuid>,
        /// The instance UUID (unless -u gives it), then the new owner: a
        /// user name or uid, optionally `:GROUP` (a group name or gid).
        #[arg(value_name = "UUID USER[:GROUP]", num_args = 0..=2)]
        args: Vec<String>,
        /// Give the nodes back to root (root:root, 0600) and forget the
        /// recorded owner.
        #[arg(long)]
        reset: bool,
    },
    /// Remove an instance (refused while a process holds it open, unless
    /// --wait or --force).
    Remove {
        #[command(flatten)]
        inst: InstanceArg,
        /// If a process holds the instance, ask it to release the device
        /// (the kernel signals its request IRQ, again every 10 s) and wait
        /// until it closes it.
        #[arg(long)]
        wait: bool,
        /// If a process holds the instance, say which one, end it (SIGTERM,
        /// then SIGKILL after --timeout seconds) and remove the instance.
        #[arg(long, conflicts_with = "wait")]
        force: bool,
        /// With --force: seconds between SIGTERM and SIGKILL.
        #[arg(long, default_value_t = 10, requires = "force", value_name = "SECONDS")]
        timeout: u64,
    },
    /// Show an instance from sysfs, without opening it: parent, type,
    /// state, holder, back end and the parent's configuration.
    Info {
        #[command(flatten)]
        inst: InstanceArg,
    },
    /// Open a device and show what it reports: the device id, features,
    /// queues and config (fails while another process holds it).
    Probe(DeviceArgs),
    /// Show or set an instance's configuration attributes (MAC, MTU, queue
    /// pairs).
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Set the link of an instance up or down (the guest sees a config
    /// change).
    Link {
        /// The instance UUID (as mdevctl's -u; or the first argument).
        #[arg(short = 'u', long = "uuid", value_name = "UUID")]
        uuid: Option<Uuid>,
        /// The instance UUID (unless -u gives it), then the new link
        /// state: up or down.
        #[arg(value_name = "UUID up|down", num_args = 1..=2, required = true)]
        args: Vec<String>,
    },
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
    /// Print the counters under /sys/bus/mdev/devices/UUID/stats/, the
    /// totals and those of each queue pair.
    Stats {
        #[command(flatten)]
        inst: InstanceArg,
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
pub enum BlkOp {
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
pub struct DeviceArgs {
    /// An instance UUID, the path of a vhost-vdpa device
    /// (/dev/vhost-vdpa-N) to drive the same way, or `instant`: in-process
    /// device that completes at once: the driver's own ceiling (bench
    /// copies the first 64 bytes of each frame, ping whole frames; it
    /// offers packed rings and has as many queue pairs as --pairs asks).
    pub device: String,
    /// Open through iommufd and the VFIO cdev instead of a type1 container.
    #[arg(long)]
    pub iommufd: bool,
    /// Send vhost requests as ioctls instead of region-0 messages.
    #[arg(long)]
    pub ioctl: bool,
    /// Kick through VFIO_DEVICE_IOEVENTFD eventfds instead of region 1.
    #[arg(long)]
    pub ioeventfd: bool,
    /// Use indirect descriptors.
    #[arg(long)]
    pub indirect: bool,
    /// Queue size to request.
    #[arg(long, default_value_t = 256)]
    pub queue_size: u16,
}

/// Ring type and queue pairs of `ping` and `bench`.
#[derive(Args, Debug, Clone, Copy)]
pub struct RingArgs {
    /// Use packed rings (VIRTIO_F_RING_PACKED, virtio 1.1) instead of
    /// split rings; an error if the device does not offer them.
    #[arg(long)]
    pub packed: bool,
    /// Queue pairs to drive (vq 2i = RX, 2i + 1 = TX of pair i), all from
    /// one thread in turn. More than 1 needs VIRTIO_NET_F_MQ and 2N queues
    /// on the device (the sample: write its queue_pairs attribute first).
    /// ping checks every pair in turn; bench keeps --depth frames in
    /// flight on each pair and reports the frames of each.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub pairs: u16,
}

/// Not a command of the CLI (so in neither the man pages nor the
/// completions): `vhost-mdev install-assets DIR`, which `make install`
/// runs, writes the man pages and shell completions that build.rs
/// generated.
#[derive(Parser, Debug)]
#[command(name = "vhost-mdev install-assets")]
pub struct InstallAssets {
    /// The share directory (e.g. /usr/local/share): man/man1/,
    /// bash-completion/completions/, zsh/site-functions/,
    /// fish/vendor_completions.d/ below it.
    pub dir: PathBuf,
    /// Print the paths (relative to DIR) instead of writing the files.
    #[arg(long)]
    pub list: bool,
}

/// Not a command of the CLI either: `vhost-mdev udev-import DEVPATH`,
/// which the udev rule (udev/70-vhost-mdev.rules) runs as
/// `IMPORT{program}` for VFIO group nodes and vfio cdevs: it prints
/// `VHOST_MDEV_UUID=` when the node is a vhost-mdev instance's, and the
/// owner recorded for it (`VHOST_MDEV_OWNER_UID=`, `VHOST_MDEV_OWNER_GID=`).
#[derive(Parser, Debug)]
#[command(name = "vhost-mdev udev-import")]
pub struct UdevImport {
    /// The device's path below /sys (udev's `%p`), e.g.
    /// /devices/virtual/vfio/7.
    pub devpath: PathBuf,
}
