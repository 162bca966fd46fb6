// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Helpers of the in-guest tests: instances that remove themselves, state
//! snapshots, errno checks.

use std::fmt::Display;
use std::path::Path;
use std::time::{Duration, Instant};

use uuid::Uuid;
use vhost_mdev::sysfs::{Instance, MdevType};
use vhost_mdev::uapi::VHOST_VFIO_REGION_SHIFT;
use vhost_mdev::{IommuKind, MdevDevice, Sysfs, VhostBackend};

/// Where region `index` lies in the device fd in the layout the uAPI
/// header documents (`index << VHOST_VFIO_REGION_SHIFT`). Only for the
/// tests of that layout (against region info) and of offsets in no
/// region: the library and every other test take the offsets from
/// `VFIO_DEVICE_GET_REGION_INFO` ([`MdevDevice::regions`]).
pub fn layout_offset(index: u32) -> u64 {
    u64::from(index) << VHOST_VFIO_REGION_SHIFT
}

/// The result of one test.
pub type TestResult = Result<(), String>;

/// Adds context to any displayable error.
pub trait Ctx<T> {
    /// Maps the error to `"{what}: {error}"`.
    fn ctx(self, what: &str) -> Result<T, String>;
}

impl<T, E: Display> Ctx<T> for Result<T, E> {
    fn ctx(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

/// Fails the test with a formatted message unless `cond` holds.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// Checks that `r` failed with `errno`.
pub fn expect_errno<T: std::fmt::Debug>(
    r: vhost_mdev::Result<T>,
    errno: i32,
    what: &str,
) -> TestResult {
    match r {
        Ok(v) => Err(format!(
            "{what}: succeeded ({v:?}), expected {}",
            vhost_mdev::Errno(errno)
        )),
        Err(e) if e.errno() == Some(errno) => Ok(()),
        Err(e) => Err(format!(
            "{what}: {e}, expected {}",
            vhost_mdev::Errno(errno)
        )),
    }
}

/// Checks that `r` failed with any errno.
pub fn expect_fail<T: std::fmt::Debug>(r: vhost_mdev::Result<T>, what: &str) -> TestResult {
    match r {
        Ok(v) => Err(format!("{what}: succeeded ({v:?}), expected failure")),
        Err(_) => Ok(()),
    }
}

/// Runtime context shared by the tests.
pub struct Env {
    /// sysfs of the guest.
    pub sysfs: Sysfs,
    /// The vhost-mdev type under test.
    pub ty: MdevType,
}

/// The parent of the virtio-blk sample, which the blk tests use and the
/// others do not (they drive a virtio-net loopback).
pub const BLK_PARENT: &str = "vhost_mdev_blk";

/// How the parents of the vDPA bridge begin (`vhost_mdev_vdpa-<device>`):
/// the tests of `--bridge` use them, the others never.
pub const BRIDGE_PARENT: &str = "vhost_mdev_vdpa-";

impl Env {
    /// Finds the first type whose device_api is `vfio-vhost`, other than
    /// the blk sample's.
    pub fn discover() -> Result<Self, String> {
        let sysfs = Sysfs::system();
        let types = sysfs.vhost_types().map_err(|e| e.to_string())?;
        let ty = types
            .into_iter()
            .find(|t| t.parent != BLK_PARENT && !t.parent.starts_with(BRIDGE_PARENT))
            .ok_or("no vfio-vhost type other than the blk sample's (load vhost_mdev_net)")?;
        Ok(Env { ty, sysfs })
    }

    /// Finds the type of a device bound to the vDPA bridge (`--bridge`).
    pub fn discover_bridge() -> Result<Self, String> {
        let sysfs = Sysfs::system();
        let types = sysfs.vhost_types().map_err(|e| e.to_string())?;
        let ty = types
            .into_iter()
            .find(|t| t.parent.starts_with(BRIDGE_PARENT))
            .ok_or(
                "no vfio-vhost type of the vDPA bridge (bind a vdpa device to vhost_mdev_vdpa)",
            )?;
        Ok(Env { ty, sysfs })
    }
}

/// An instance created for one test and removed when dropped.
pub struct Inst {
    /// sysfs.
    pub sysfs: Sysfs,
    /// The instance UUID.
    pub uuid: Uuid,
    removed: bool,
}

impl Inst {
    /// Creates an instance of the type under test and waits until the
    /// vfio-vhost driver has bound it.
    pub fn create(env: &Env) -> Result<Self, String> {
        Self::create_of(env, &env.ty)
    }

    /// Creates an instance of type `ty`, as [`Inst::create`].
    pub fn create_of(env: &Env, ty: &MdevType) -> Result<Self, String> {
        let uuid = env.sysfs.create(ty, None).ctx("create instance")?;
        let inst = Inst {
            sysfs: env.sysfs.clone(),
            uuid,
            removed: false,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(i) = inst.sysfs.instance(&uuid) {
                if i.driver.is_some() && i.iommu_group.is_some() {
                    return Ok(inst);
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "instance {uuid} did not get a driver and IOMMU group within 10 s"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The sysfs view of the instance.
    pub fn info(&self) -> Result<Instance, String> {
        self.sysfs.instance(&self.uuid).ctx("instance")
    }

    /// Opens the instance.
    pub fn open(&self, kind: IommuKind) -> Result<MdevDevice, String> {
        MdevDevice::open(&self.sysfs, &self.uuid, kind).ctx(&format!("open ({kind})"))
    }

    /// Removes the instance now (blocks while it is open).
    pub fn remove(&mut self) -> TestResult {
        self.removed = true;
        self.sysfs.remove(&self.uuid).ctx("remove")
    }

    /// Whether the instance still exists.
    pub fn exists(&self) -> bool {
        self.sysfs.instance_dir(&self.uuid).exists()
    }
}

impl Drop for Inst {
    fn drop(&mut self) {
        if !self.removed && self.exists() {
            let _ = self.sysfs.remove(&self.uuid);
        }
    }
}

/// Whether the iommufd back end is usable for `inst`.
pub fn iommufd_available(inst: &Inst) -> Result<(), String> {
    if !Path::new("/dev/iommu").exists() {
        return Err("/dev/iommu missing (CONFIG_IOMMUFD, module iommufd)".into());
    }
    if inst.info()?.vfio_cdev.is_none() {
        return Err("instance has no vfio-dev/ cdev (CONFIG_VFIO_DEVICE_CDEV)".into());
    }
    Ok(())
}

/// Device state that a failed request must leave unchanged. Each field
/// keeps the errno of a failed read, so a state in which a read is refused
/// compares equal as long as it stays refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    status: Result<u8, Option<i32>>,
    features: Result<u64, Option<i32>>,
    bases: Vec<Result<u32, Option<i32>>>,
    config: Result<Vec<u8>, Option<i32>>,
}

fn keep<T>(r: vhost_mdev::Result<T>) -> Result<T, Option<i32>> {
    r.map_err(|e| e.errno())
}

/// Reads the observable device state.
pub fn snapshot(dev: &MdevDevice) -> Result<Snapshot, String> {
    let n = dev.get_vqs_count().ctx("GET_VQS_COUNT")?;
    let size = dev.get_config_size().ctx("GET_CONFIG_SIZE")?;
    Ok(Snapshot {
        status: keep(dev.get_status()),
        features: keep(dev.get_features()),
        bases: (0..n).map(|i| keep(dev.get_vring_base(i))).collect(),
        config: keep(dev.get_config(0, size)),
    })
}

/// Runs a bad input: checks its errno and that the state is unchanged.
pub fn bad_input<T: std::fmt::Debug>(
    dev: &MdevDevice,
    what: &str,
    errno: i32,
    f: impl FnOnce() -> vhost_mdev::Result<T>,
) -> TestResult {
    let before = snapshot(dev).ctx(&format!("{what}: state before"))?;
    expect_errno(f(), errno, what)?;
    let after = snapshot(dev).ctx(&format!("{what}: state after"))?;
    check!(
        before == after,
        "{what}: device state changed: before {before:?}, after {after:?}"
    );
    Ok(())
}

/// Runs a bad input that must fail (with any errno) and leave the state
/// unchanged.
pub fn bad_input_any<T: std::fmt::Debug>(
    dev: &MdevDevice,
    what: &str,
    f: impl FnOnce() -> vhost_mdev::Result<T>,
) -> TestResult {
    let before = snapshot(dev).ctx(&format!("{what}: state before"))?;
    expect_fail(f(), what)?;
    let after = snapshot(dev).ctx(&format!("{what}: state after"))?;
    check!(
        before == after,
        "{what}: device state changed: before {before:?}, after {after:?}"
    );
    Ok(())
}

/// Waits up to `timeout` for an eventfd to fire.
pub fn fired(fd: &vmm_sys_util::eventfd::EventFd, timeout: Duration) -> Result<bool, String> {
    vhost_mdev::driver::wait_eventfd(fd, timeout).ctx("poll eventfd")
}

/// A non-blocking eventfd.
pub fn eventfd() -> Result<vmm_sys_util::eventfd::EventFd, String> {
    vmm_sys_util::eventfd::EventFd::new(vmm_sys_util::eventfd::EFD_NONBLOCK).ctx("eventfd")
}

impl Inst {
    /// Reads a per-instance attribute (`mac`, `mtu`, `link`, `stats/...`).
    pub fn attr(&self, name: &str) -> Result<String, String> {
        let p = self.sysfs.instance_dir(&self.uuid).join(name);
        std::fs::read_to_string(&p)
            .map(|s| s.trim().to_string())
            .map_err(|e| format!("read {}: {e}", p.display()))
    }

    /// Writes a per-instance attribute.
    pub fn set_attr(&self, name: &str, value: &str) -> std::io::Result<()> {
        let p = self.sysfs.instance_dir(&self.uuid).join(name);
        std::fs::write(p, value)
    }

    /// A counter under `stats/`.
    pub fn stat(&self, name: &str) -> Result<u64, String> {
        let s = self.attr(&format!("stats/{name}"))?;
        s.parse()
            .map_err(|_| format!("stats/{name}: not a number: {s:?}"))
    }

    /// All counters under `stats/`, by name.
    pub fn stats(&self) -> Result<std::collections::BTreeMap<String, u64>, String> {
        let mut m = std::collections::BTreeMap::new();
        for n in [
            "tx_packets",
            "tx_bytes",
            "rx_packets",
            "rx_bytes",
            "drop_oversize",
            "drop_malformed",
            "ring_errors",
            "kicks",
            "interrupts",
            "direct_frames",
            "runs",
            "max_run_descs",
            "max_run_bytes",
            "max_stop_runs",
        ] {
            m.insert(n.to_string(), self.stat(n)?);
        }
        Ok(m)
    }
}

/// Counter deltas `after - before` for the named counters.
pub fn stat_delta(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
    name: &str,
) -> u64 {
    after
        .get(name)
        .copied()
        .unwrap_or(0)
        .wrapping_sub(before.get(name).copied().unwrap_or(0))
}

/// Set by `--quick`: tests that scale (frame counts, rounds) run smaller.
pub static QUICK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `quick` under `--quick`, else `full`.
pub fn scale<T>(quick: T, full: T) -> T {
    if QUICK.load(std::sync::atomic::Ordering::Relaxed) {
        quick
    } else {
        full
    }
}

/// Makes ioctl `req` with `arg` on `fd` from a forked child (another
/// process, another address space, the same open file) and returns the
/// errno the child got (0 on success): how a request from a process that
/// is not the opener is tested.
pub fn ioctl_errno_in_child<T>(fd: i32, req: libc::c_ulong, arg: &T) -> Result<i32, String> {
    // SAFETY: the child only makes an ioctl on an inherited fd with a value
    // already in memory and exits, without touching the parent's locks or
    // allocator.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: as above; `arg` is a plain value of the request's layout.
        let r = unsafe { libc::ioctl(fd, req, arg as *const T) };
        let e = if r == 0 {
            0
        } else {
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(255)
        };
        // SAFETY: ends the child without running the parent's exit code.
        unsafe { libc::_exit(e) };
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid || !libc::WIFEXITED(status) {
        return Err(format!("child: status {status:#x}"));
    }
    Ok(libc::WEXITSTATUS(status))
}
