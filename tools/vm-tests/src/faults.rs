// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Fault injection (`--faults`, tests/vm/faults.sh; issue 21).
//!
//! Every operation of the uAPI, every sysfs write, open, close, remove and
//! module load runs with its 1st, 2nd, ... fallible call failed in turn
//! (`/proc/thread-self/fail-nth`, over `failslab`, `fail_usercopy` and the
//! core's own points), until it runs with none failed. The stack filter of
//! each fault attribute (`require-start`, `require-end`) is set to the text
//! of the module whose code the operation enters, so that only calls made
//! from (or through) project code fail, never those of the upstream paths
//! around it. After each injected failure: the errno is `ENOMEM` or
//! `EFAULT`, the device state is the state before (or, when the failure was
//! absorbed, the state of a clean run); after each operation family: no
//! kmemleak report, no instance, locked memory or pinned page left, and the
//! instance still moves frames.
//!
//! The data path runs in the device's worker, which `fail-nth` never
//! reaches: the core's own fault points (`/sys/kernel/debug/vhost_mdev/`)
//! fail its DMA, pins and cached copies; a failed DMA must end in
//! DEVICE_NEEDS_RESET with a config interrupt, never in a hang or in a
//! frame reported sent and not received.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use libc::{EFAULT, ENOMEM};
use vhost_mdev::driver::{self, wait_eventfd, NetDriver, NetDriverConfig};
use vhost_mdev::net::{build_frame, check_frame};
use vhost_mdev::uapi::*;
use vhost_mdev::{IommuKind, MdevDevice, Transport, VhostBackend};

use crate::check;
use crate::raw::{RawNet, RawOpts};
use crate::util::*;

/// Operations run under `fail-nth` (each to its first clean run), and
/// failures injected, over the whole run.
pub static OPERATIONS: AtomicUsize = AtomicUsize::new(0);
/// Calls failed through `fail-nth` (one per failed run).
pub static INJECTED: AtomicUsize = AtomicUsize::new(0);
/// Failures of the core's own points in the data path.
pub static OWN: AtomicUsize = AtomicUsize::new(0);

/// Most fallible calls an operation may make before the suite calls it a
/// loop.
const MAX_NTH: u32 = 300;

/// Stack frames the filter looks at, from the fault point up: a call
/// fails only when one of the project's functions is among its first
/// `DEPTH` callers. Deep enough for a call of ours through a kernel
/// wrapper (`krealloc()` under a `KBox`, `_copy_from_user()`, VFIO's
/// `vfio_assign_device_set()`), not for the calls of the upstream code
/// that ours calls (VFIO's group creation, `device_add()`'s devtmpfs
/// node), which are upstream's paths: failed there, they show upstream
/// bugs (Documentation/testing.rst). `FUZZ_FAULTS_DEPTH` sets another
/// depth (up to 32, every caller the kernel's filter looks at).
const DEPTH: u32 = 7;

fn depth() -> u32 {
    std::env::var("FUZZ_FAULTS_DEPTH")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(DEPTH)
        .clamp(1, 32)
}

const DEBUGFS: &str = "/sys/kernel/debug";
/// The kernel's fault attributes that `fail-nth` drives here. Not
/// `fail_page_alloc`: a failed page allocation without `__GFP_NOWARN`
/// prints its stack (`warn_alloc()`), a report by design that the harness
/// would count; the modules' allocations go through the slab (`failslab`).
const KERNEL_ATTRS: [&str; 2] = ["failslab", "fail_usercopy"];
/// The core's own fault points.
const OWN_ATTRS: [&str; 3] = ["fail_dma", "fail_pin", "fail_copy"];

fn write_knob(path: &str, value: &str) -> Result<(), String> {
    fs::write(path, value).map_err(|e| format!("write {value:?} to {path}: {e}"))
}

fn attr_dirs() -> Vec<String> {
    KERNEL_ATTRS
        .iter()
        .map(|a| format!("{DEBUGFS}/{a}"))
        .chain(
            OWN_ATTRS
                .iter()
                .map(|a| format!("{DEBUGFS}/vhost_mdev/{a}")),
        )
        .collect()
}

/// Quiet attributes (an injected failure prints nothing: `verbose` 0),
/// no random failures, `failslab` failing sleeping allocations too, and
/// the stack filter on `range` (`[start, end)`).
fn set_filter(range: (u64, u64)) -> Result<(), String> {
    for d in attr_dirs() {
        if !Path::new(&d).exists() {
            // The core's points exist while vhost_mdev is loaded.
            continue;
        }
        write_knob(&format!("{d}/verbose"), "0")?;
        write_knob(&format!("{d}/probability"), "0")?;
        write_knob(&format!("{d}/stacktrace-depth"), &depth().to_string())?;
        // Widen first: start must stay below end at every step.
        write_knob(&format!("{d}/require-end"), &u64::MAX.to_string())?;
        write_knob(&format!("{d}/require-start"), &range.0.to_string())?;
        write_knob(&format!("{d}/require-end"), &range.1.to_string())?;
    }
    write_knob(&format!("{DEBUGFS}/failslab/ignore-gfp-wait"), "N")?;
    Ok(())
}

/// `[first, last page end)` of the text of module `name`, from the
/// addresses of its functions in `/proc/kallsyms`.
fn module_text(name: &str) -> Result<(u64, u64), String> {
    let all = fs::read_to_string("/proc/kallsyms").ctx("/proc/kallsyms")?;
    let tag = format!("\t[{name}]");
    let (mut lo, mut hi) = (u64::MAX, 0u64);
    for l in all.lines().filter(|l| l.ends_with(&tag)) {
        let mut f = l.split_whitespace();
        let (Some(a), Some(t)) = (f.next(), f.next()) else {
            continue;
        };
        if !matches!(t, "t" | "T") {
            continue;
        }
        let a = u64::from_str_radix(a, 16).ctx("kallsyms address")?;
        lo = lo.min(a);
        hi = hi.max(a);
    }
    check!(
        lo != u64::MAX && lo != 0,
        "no text of {name} in /proc/kallsyms (not loaded, or kptr_restrict)"
    );
    Ok((lo, (hi | 0xfff) + 1))
}

/// Everything above the kernel image, where modules are (x86-64:
/// `MODULES_VADDR` to `MODULES_END`): the filter of a module load, whose
/// text is not known before it, and whose init text is elsewhere. Calls
/// of `load_module()` itself (no module on the stack) never fail.
fn module_space() -> Result<(u64, u64), String> {
    let all = fs::read_to_string("/proc/kallsyms").ctx("/proc/kallsyms")?;
    let end = all
        .lines()
        .find(|l| l.ends_with(" _end"))
        .and_then(|l| u64::from_str_radix(l.split_whitespace().next()?, 16).ok())
        .ok_or("no _end in /proc/kallsyms")?;
    check!(end != 0, "_end reads 0 (kptr_restrict)");
    Ok((end, 0xffff_ffff_ff00_0000))
}

/// The calling thread's `/proc/thread-self/fail-nth`.
struct Nth(File);

impl Nth {
    fn open() -> Result<Self, String> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open("/proc/thread-self/fail-nth")
            .map(Nth)
            .ctx("/proc/thread-self/fail-nth (CONFIG_FAULT_INJECTION)")
    }

    /// Fails the `n`-th fallible call of this thread from now.
    fn arm(&self, n: u32) -> Result<(), String> {
        self.0
            .write_at(n.to_string().as_bytes(), 0)
            .ctx("arm fail-nth")?;
        Ok(())
    }

    /// Whether the armed call failed (the count reached 0); disarms.
    fn disarm(&self) -> Result<bool, String> {
        let mut b = [0u8; 16];
        let n = self.0.read_at(&mut b, 0).ctx("read fail-nth")?;
        let left: u32 = std::str::from_utf8(&b[..n])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or("fail-nth: not a number")?;
        if left != 0 {
            self.0.write_at(b"0", 0).ctx("disarm fail-nth")?;
        }
        Ok(left == 0)
    }
}

/// The errno of a library error (-1 when it has none).
fn errno_of(e: &vhost_mdev::Error) -> i32 {
    e.errno().unwrap_or(-1)
}

fn errno_name(e: i32) -> String {
    vhost_mdev::Errno(e).to_string()
}

/// Runs `op` with its 1st, 2nd, ... fallible call failed until a run in
/// which none failed; returns the number of failed runs. Before each run,
/// `prep` sets the state up; after it, `check` is given that state, the
/// result and whether a call failed. A failed run must fail with `ENOMEM`
/// or `EFAULT`, or succeed (a failure the code absorbed); a clean run must
/// succeed.
fn each_nth<P>(
    name: &str,
    mut prep: impl FnMut() -> Result<P, String>,
    mut op: impl FnMut(&P) -> Result<(), i32>,
    mut check: impl FnMut(P, Result<(), i32>, bool) -> TestResult,
) -> Result<u32, String> {
    let nth = Nth::open()?;
    OPERATIONS.fetch_add(1, Ordering::Relaxed);
    for n in 1..=MAX_NTH {
        let p = prep().map_err(|e| format!("{name}: set-up before call {n}: {e}"))?;
        nth.arm(n)?;
        let r = op(&p);
        let fired = nth.disarm()?;
        if fired {
            INJECTED.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = r {
                check!(
                    e == ENOMEM || e == EFAULT,
                    "{name}: call {n} failed: {}, expected ENOMEM or EFAULT",
                    errno_name(e)
                );
            }
        } else if let Err(e) = r {
            return Err(format!(
                "{name}: failed with no call failed ({} calls): {}",
                n - 1,
                errno_name(e)
            ));
        }
        let what = if fired {
            format!("{name} with call {n} failed ({r:?})")
        } else {
            format!("{name} (clean)")
        };
        check(p, r, fired).map_err(|e| format!("{what}: {e}"))?;
        if !fired {
            eprintln!("faults: {name}: {} calls failed in turn", n - 1);
            return Ok(n - 1);
        }
    }
    Err(format!("{name}: more than {MAX_NTH} fallible calls"))
}

/// What leaks would show: kmemleak, instances, locked memory, pinned
/// pages. Taken before an operation family and compared after it.
struct Leaks {
    instances: usize,
    locked_kb: u64,
    pins: i64,
}

fn instances() -> usize {
    fs::read_dir("/sys/bus/mdev/devices")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn vm_locked_kb() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmLck:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// FOLL_PIN pins held system-wide (acquired minus released), after
/// folding the per-CPU deltas of the counters (`stat_refresh`), which
/// `/proc/vmstat` alone leaves out.
fn pins_held() -> i64 {
    let _ = fs::write("/proc/sys/vm/stat_refresh", "1");
    let s = fs::read_to_string("/proc/vmstat").unwrap_or_default();
    let get = |k: &str| -> i64 {
        s.lines()
            .find_map(|l| l.strip_prefix(k)?.trim().parse().ok())
            .unwrap_or(0)
    };
    get("nr_foll_pin_acquired ") - get("nr_foll_pin_released ")
}

const KMEMLEAK: &str = "/sys/kernel/debug/kmemleak";

impl Leaks {
    fn before() -> Self {
        // Only what this family leaks: forget earlier reports.
        let _ = fs::write(KMEMLEAK, "clear");
        Leaks {
            instances: instances(),
            locked_kb: vm_locked_kb(),
            pins: pins_held(),
        }
    }

    /// Checks that nothing leaked since `before` (kmemleak: objects
    /// unreferenced for its minimum age, 5 s; a younger leak is reported
    /// by the next family's scan or the harness's final one).
    fn after(&self, family: &str) -> TestResult {
        check!(
            instances() == self.instances,
            "{family}: {} instances, {} before",
            instances(),
            self.instances
        );
        check!(
            vm_locked_kb() == self.locked_kb,
            "{family}: VmLck {} kB, {} kB before",
            vm_locked_kb(),
            self.locked_kb
        );
        check!(
            pins_held() == self.pins,
            "{family}: {} pinned pages held, {} before",
            pins_held(),
            self.pins
        );
        if Path::new(KMEMLEAK).exists() {
            write_knob(KMEMLEAK, "scan")?;
            let r = fs::read_to_string(KMEMLEAK).ctx("kmemleak")?;
            let n = r.matches("unreferenced object").count();
            check!(
                n == 0,
                "{family}: kmemleak: {n} unreferenced objects: {}",
                r.lines().take(20).collect::<Vec<_>>().join(" | ")
            );
        }
        Ok(())
    }
}

/// The instance moves frames.
fn usable(dev: &MdevDevice) -> TestResult {
    let mut drv = NetDriver::start(dev, NetDriverConfig::default()).ctx("start driver")?;
    let rep = driver::ping(&mut drv, 8, 0).ctx("traffic")?;
    check!(rep.frames == 8, "{} of 8 frames", rep.frames);
    drv.stop().ctx("reset")?;
    Ok(())
}

fn filter_core() -> Result<(), String> {
    set_filter(module_text("vhost_mdev")?)
}

fn lib<T>(r: vhost_mdev::Result<T>) -> Result<(), i32> {
    r.map(|_| ()).map_err(|e| errno_of(&e))
}

const ACK_DRIVER: u8 = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
const FEATURES_OK: u8 = ACK_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK;
const DRIVER_OK: u8 = FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK;
const WANT: u64 =
    (1u64 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_F_ACCESS_PLATFORM) | (1 << VIRTIO_NET_F_MAC);

/// Where a request starts from.
#[derive(Clone, Copy, Debug)]
enum Pre {
    Reset,
    Driver,
    FeaturesOk,
    Rings,
    DriverOk,
    Suspended,
}

fn ring_base(q: u32) -> u64 {
    0x1000_0000 + u64::from(q) * 0x10000
}

fn ring_addr(q: u32) -> VhostVringAddr {
    VhostVringAddr {
        index: q,
        flags: 0,
        desc_user_addr: ring_base(q),
        avail_user_addr: ring_base(q) + 0x1000,
        used_user_addr: ring_base(q) + 0x2000,
        log_guest_addr: 0,
    }
}

fn prepare(dev: &MdevDevice, pre: Pre) -> vhost_mdev::Result<()> {
    dev.set_status(0)?;
    if matches!(pre, Pre::Reset) {
        return Ok(());
    }
    dev.set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE)?;
    dev.set_status(ACK_DRIVER)?;
    if matches!(pre, Pre::Driver) {
        return Ok(());
    }
    dev.set_features(WANT)?;
    dev.set_status(FEATURES_OK)?;
    if matches!(pre, Pre::FeaturesOk) {
        return Ok(());
    }
    for q in 0..dev.get_vqs_count()? {
        dev.set_vring_num(q, 64)?;
        dev.set_vring_addr(&ring_addr(q))?;
        dev.set_vring_base(q, 7 + q)?;
        dev.set_vring_enable(q, false)?;
    }
    if matches!(pre, Pre::Rings) {
        return Ok(());
    }
    dev.set_status(DRIVER_OK)?;
    if matches!(pre, Pre::Suspended) {
        dev.suspend()?;
    }
    Ok(())
}

type ReqOp = fn(&MdevDevice) -> vhost_mdev::Result<()>;

/// Every vhost request of region 0 (and of the ioctls), from the state
/// it is valid in.
const REQUESTS: &[(&str, Pre, ReqOp)] = &[
    ("SET_OWNER", Pre::Reset, |d| d.set_owner()),
    ("GET_FEATURES", Pre::Reset, |d| d.get_features().map(drop)),
    ("GET_DEVICE_ID", Pre::Reset, |d| d.get_device_id().map(drop)),
    ("GET_STATUS", Pre::Reset, |d| d.get_status().map(drop)),
    ("GET_VQS_COUNT", Pre::Reset, |d| d.get_vqs_count().map(drop)),
    ("GET_VRING_NUM", Pre::Reset, |d| d.get_vring_num().map(drop)),
    ("GET_CONFIG_SIZE", Pre::Reset, |d| {
        d.get_config_size().map(drop)
    }),
    ("GET_CONFIG", Pre::Reset, |d| d.get_config(0, 12).map(drop)),
    ("SET_CONFIG", Pre::Reset, |d| {
        let mac = d.get_config(0, 6)?;
        d.set_config(0, &mac)
    }),
    ("SET_STATUS ACKNOWLEDGE", Pre::Reset, |d| {
        d.set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE)
    }),
    ("SET_FEATURES", Pre::Driver, |d| d.set_features(WANT)),
    ("SET_STATUS FEATURES_OK", Pre::Driver, |d| {
        d.set_features(WANT)?;
        d.set_status(FEATURES_OK)
    }),
    ("SET_VRING_NUM", Pre::FeaturesOk, |d| d.set_vring_num(0, 64)),
    ("SET_VRING_ADDR", Pre::FeaturesOk, |d| {
        d.set_vring_addr(&ring_addr(0))
    }),
    ("SET_VRING_HVA", Pre::FeaturesOk, |d| {
        d.set_vring_hva(&ring_addr(0))
    }),
    ("SET_VRING_BASE", Pre::FeaturesOk, |d| {
        d.set_vring_base(0, 3)
    }),
    ("GET_VRING_BASE", Pre::Rings, |d| {
        d.get_vring_base(1).map(drop)
    }),
    ("SET_VRING_ENABLE", Pre::Rings, |d| {
        d.set_vring_enable(0, false)
    }),
    ("SET_MEM_TABLE", Pre::FeaturesOk, |d| d.set_mem_table(&[])),
    ("SET_STATUS DRIVER_OK", Pre::Rings, |d| {
        d.set_status(DRIVER_OK)
    }),
    ("SUSPEND", Pre::DriverOk, |d| d.suspend()),
    ("RESUME", Pre::Suspended, |d| d.resume()),
    ("SET_STATUS 0", Pre::DriverOk, |d| d.set_status(0)),
];

/// Every vhost request over `t`, on a type1 opening.
pub fn requests(env: &Env, t: Transport) -> TestResult {
    filter_core()?;
    let leaks = Leaks::before();
    {
        let inst = Inst::create(env)?;
        let dev = inst.open(IommuKind::Type1)?;
        dev.set_transport(t);
        for (name, pre, op) in REQUESTS {
            let name = format!("{name} ({t:?})");
            // The state a clean run leaves.
            prepare(&dev, *pre).ctx(&format!("{name}: set-up {pre:?}"))?;
            op(&dev).ctx(&format!("{name}: clean run"))?;
            let clean = snapshot(&dev)?;
            each_nth(
                &name,
                || {
                    prepare(&dev, *pre).ctx(&format!("set-up {pre:?}"))?;
                    snapshot(&dev)
                },
                |_| lib(op(&dev)),
                |before, r, _| {
                    let now = snapshot(&dev)?;
                    let want = if r.is_ok() { &clean } else { &before };
                    check!(
                        &now == want,
                        "state {now:?}, expected {want:?} (before {before:?})"
                    );
                    Ok(())
                },
            )?;
        }
        dev.set_status(0).ctx("reset")?;
        usable(&dev)?;
    }
    leaks.after("requests")
}

/// The VFIO ioctls the core handles, kicks and mmap.
pub fn vfio_ioctls(env: &Env) -> TestResult {
    filter_core()?;
    let leaks = Leaks::before();
    {
        let inst = Inst::create(env)?;
        let dev = inst.open(IommuKind::Type1)?;
        let nvqs = dev.get_vqs_count().ctx("GET_VQS_COUNT")?;
        let vq: Vec<_> = (0..nvqs).map(|_| eventfd()).collect::<Result<_, _>>()?;
        let fds: Vec<i32> = vq.iter().map(|e| e.as_raw_fd()).collect();
        let cfg = eventfd()?;
        let req = eventfd()?;
        let kick = eventfd()?;
        let short = Duration::from_millis(100);
        let none = || Ok(());
        let ok = |_: (), _: Result<(), i32>, _: bool| Ok(());
        each_nth("VFIO_DEVICE_GET_INFO", none, |_| lib(dev.info()), ok)?;
        for i in [VHOST_VFIO_REGION_MSG, VHOST_VFIO_REGION_NOTIFY] {
            each_nth(
                &format!("VFIO_DEVICE_GET_REGION_INFO {i}"),
                none,
                |_| lib(dev.region_info(i)),
                ok,
            )?;
        }
        for i in [VHOST_VFIO_IRQ_VQ, VHOST_VFIO_IRQ_CONFIG, VHOST_VFIO_IRQ_REQ] {
            each_nth(
                &format!("VFIO_DEVICE_GET_IRQ_INFO {i}"),
                none,
                |_| lib(dev.irq_info(i)),
                ok,
            )?;
        }
        // SET_IRQS: attach (a failure leaves nothing attached), trigger.
        each_nth(
            "VFIO_DEVICE_SET_IRQS vq eventfds",
            || dev.detach_all_irqs().ctx("detach"),
            |_| lib(dev.set_vq_irqs(0, &fds)),
            |_, r, _| {
                dev.trigger_irq(VHOST_VFIO_IRQ_VQ, 0, nvqs).ctx("trigger")?;
                for (i, e) in vq.iter().enumerate() {
                    check!(
                        fired(e, if r.is_ok() { short } else { Duration::ZERO })? == r.is_ok(),
                        "vq {i} eventfd {} after {r:?}",
                        if r.is_ok() { "did not fire" } else { "fired" }
                    );
                }
                Ok(())
            },
        )?;
        each_nth(
            "VFIO_DEVICE_SET_IRQS config eventfd",
            || dev.detach_all_irqs().ctx("detach"),
            |_| lib(dev.set_config_call(Some(&cfg))),
            |_, r, _| {
                dev.trigger_irq(VHOST_VFIO_IRQ_CONFIG, 0, 1)
                    .ctx("trigger")?;
                let f = fired(&cfg, if r.is_ok() { short } else { Duration::ZERO })?;
                check!(f == r.is_ok(), "config eventfd fired {f} after {r:?}");
                Ok(())
            },
        )?;
        each_nth(
            "VFIO_DEVICE_SET_IRQS request eventfd",
            || dev.detach_all_irqs().ctx("detach"),
            |_| lib(dev.set_req_irq(Some(&req))),
            |_, r, _| {
                dev.trigger_irq(VHOST_VFIO_IRQ_REQ, 0, 1).ctx("trigger")?;
                let f = fired(&req, if r.is_ok() { short } else { Duration::ZERO })?;
                check!(f == r.is_ok(), "request eventfd fired {f} after {r:?}");
                Ok(())
            },
        )?;
        dev.set_vq_irqs(0, &fds).ctx("attach")?;
        each_nth(
            "VFIO_DEVICE_SET_IRQS trigger",
            none,
            |_| lib(dev.trigger_irq(VHOST_VFIO_IRQ_VQ, 0, nvqs)),
            ok,
        )?;
        each_nth(
            "VFIO_DEVICE_SET_IRQS detach",
            none,
            |_| lib(dev.detach_all_irqs()),
            ok,
        )?;
        // IOEVENTFD: bound or not, never half.
        each_nth(
            "VFIO_DEVICE_IOEVENTFD bind",
            || {
                let _ = dev.set_ioeventfd(0, None);
                Ok(())
            },
            |_| lib(dev.set_ioeventfd(0, Some(&kick))),
            |_, r, _| {
                // Bound: binding again is EBUSY (VFIO's virqfd slot);
                // unbound: it binds.
                let again = dev.set_ioeventfd(0, Some(&kick));
                match (r, again) {
                    (Ok(()), Err(e)) if e.errno() == Some(libc::EBUSY) => Ok(()),
                    (Err(_), Ok(())) => Ok(()),
                    (r, a) => Err(format!("bind after {r:?}: {a:?}")),
                }
            },
        )?;
        each_nth(
            "VFIO_DEVICE_IOEVENTFD unbind",
            || {
                let _ = dev.set_ioeventfd(0, None);
                dev.set_ioeventfd(0, Some(&kick)).ctx("bind")
            },
            |_| lib(dev.set_ioeventfd(0, None)),
            ok,
        )?;
        let _ = dev.set_ioeventfd(0, None);
        each_nth("VFIO_DEVICE_RESET", none, |_| lib(dev.vfio_reset()), ok)?;
        each_nth("notify (region 1 write)", none, |_| lib(dev.notify(0)), ok)?;
        // The sample has no doorbell: every mmap is refused, with EINVAL,
        // whatever fails.
        each_nth(
            "mmap of region 1",
            none,
            |_| match dev.vfio().try_mmap(dev.regions().notify.offset, 4096) {
                Ok(_) => Err(-2),
                Err(e) if e.errno() == Some(libc::EINVAL) => Ok(()),
                Err(e) => Err(errno_of(&e)),
            },
            ok,
        )?;
        dev.detach_all_irqs().ctx("detach")?;
        usable(&dev)?;
    }
    leaks.after("VFIO ioctls")
}

/// Opens and closes, through a type1 container and through iommufd.
pub fn open_close(env: &Env) -> TestResult {
    filter_core()?;
    let leaks = Leaks::before();
    {
        let inst = Inst::create(env)?;
        let iommufd = iommufd_available(&inst).is_ok();
        for kind in [IommuKind::Type1, IommuKind::Iommufd] {
            if kind == IommuKind::Iommufd && !iommufd {
                continue;
            }
            each_nth(
                &format!("open ({kind})"),
                || Ok(()),
                |_| lib(MdevDevice::open(&inst.sysfs, &inst.uuid, kind).map(drop)),
                |_, _, _| {
                    // Whatever happened, the device is closed again, and
                    // opens.
                    let d = inst.open(kind).ctx("open after")?;
                    let s = d.get_status().ctx("GET_STATUS after")?;
                    check!(s == 0, "status {s:#x} on a new opening");
                    Ok(())
                },
            )?;
            // Close: a release cannot fail; what fails in it must not
            // leak or leave the device held.
            each_nth(
                &format!("close ({kind})"),
                || inst.open(kind),
                |_| Ok(()),
                |d, _, _| {
                    drop(d);
                    let d = inst.open(kind).ctx("open after close")?;
                    d.get_status().ctx("GET_STATUS after")?;
                    Ok(())
                },
            )?;
        }
        let dev = inst.open(IommuKind::Type1)?;
        usable(&dev)?;
    }
    leaks.after("open and close")
}

/// The sysfs writes: create, remove, and the sample's attributes.
pub fn sysfs(env: &Env) -> TestResult {
    filter_core()?;
    let leaks = Leaks::before();
    let avail = || -> Result<u32, String> {
        let t = env.sysfs.vhost_types().ctx("types")?;
        t.into_iter()
            .find(|t| t.id == env.ty.id)
            .map(|t| t.available_instances)
            .ok_or_else(|| "type gone".to_string())
    };
    let before = avail()?;
    each_nth(
        "create",
        || Ok(uuid::Uuid::new_v4()),
        |u| lib(env.sysfs.create(&env.ty, Some(*u)).map(drop)),
        |u, r, _| {
            let exists = env.sysfs.instance_dir(&u).exists();
            check!(exists == r.is_ok(), "instance exists: {exists} after {r:?}");
            if exists {
                let d = MdevDevice::open(&env.sysfs, &u, IommuKind::Type1).ctx("open")?;
                d.get_status().ctx("GET_STATUS")?;
                drop(d);
                env.sysfs.remove(&u).ctx("remove")?;
            }
            let a = avail()?;
            check!(a == before, "available_instances {a}, {before} before");
            Ok(())
        },
    )?;
    each_nth(
        "remove",
        || Inst::create(env),
        |i| lib(env.sysfs.remove(&i.uuid)),
        |i, r, _| {
            check!(
                i.exists() != r.is_ok(),
                "instance exists: {} after {r:?}",
                i.exists()
            );
            if i.exists() {
                let d = i.open(IommuKind::Type1)?;
                d.get_status().ctx("GET_STATUS")?;
            }
            Ok(())
        },
    )?;
    // The sample's attributes go through its own text.
    set_filter(module_text("vhost_mdev_net")?)?;
    {
        let inst = Inst::create(env)?;
        for (attr, value) in [
            ("mac", "02:00:00:00:00:42"),
            ("mtu", "1400"),
            ("link", "0"),
            ("link", "1"),
            ("queue_pairs", "2"),
            ("queue_pairs", "1"),
        ] {
            each_nth(
                &format!("write {attr} {value}"),
                || inst.attr(attr),
                |_| {
                    inst.set_attr(attr, value)
                        .map_err(|e| e.raw_os_error().unwrap_or(-1))
                },
                |old, r, _| {
                    let now = inst.attr(attr)?;
                    let want = if r.is_ok() { value } else { old.as_str() };
                    check!(now == want, "{attr} reads {now:?}, expected {want:?}");
                    Ok(())
                },
            )?;
        }
        let dev = inst.open(IommuKind::Type1)?;
        usable(&dev)?;
    }
    filter_core()?;
    leaks.after("sysfs")
}

fn finit_module(path: &str) -> Result<(), i32> {
    let f = File::open(path).map_err(|e| e.raw_os_error().unwrap_or(-1))?;
    // SAFETY: a valid fd and an empty parameter string.
    let r = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), c"".as_ptr(), 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(-1))
    }
}

fn delete_module(name: &std::ffi::CStr) -> Result<(), String> {
    // SAFETY: a valid name.
    let r = unsafe { libc::syscall(libc::SYS_delete_module, name.as_ptr(), 0) };
    check!(
        r == 0,
        "rmmod {name:?}: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

fn loaded(name: &str) -> bool {
    Path::new(&format!("/sys/module/{name}")).exists()
}

/// Module loads: the sample (the core loaded), then the core (nothing
/// loaded). Leaves both loaded.
pub fn module_load(env: &Env) -> TestResult {
    let _ = env;
    let dir = std::env::var("MODDIR").unwrap_or_else(|_| ".".into());
    let core = format!("{dir}/vhost_mdev.ko");
    let net = format!("{dir}/vhost_mdev_net.ko");
    check!(
        Path::new(&core).exists() && Path::new(&net).exists(),
        "no {core} or {net} (MODDIR)"
    );
    check!(instances() == 0, "instances exist: cannot unload");
    set_filter(module_space()?)?;
    let leaks = Leaks::before();
    delete_module(c"vhost_mdev_net")?;
    each_nth(
        "insmod vhost_mdev_net",
        || Ok(()),
        |_| finit_module(&net),
        |_, r, _| {
            check!(loaded("vhost_mdev_net") == r.is_ok(), "loaded after {r:?}");
            let parent = Path::new("/sys/class/mdev_bus/vhost_mdev_net").exists();
            check!(
                parent == r.is_ok(),
                "parent registered: {parent} after {r:?}"
            );
            if r.is_ok() {
                delete_module(c"vhost_mdev_net")?;
            }
            Ok(())
        },
    )?;
    delete_module(c"vhost_mdev")?;
    each_nth(
        "insmod vhost_mdev",
        || Ok(()),
        |_| finit_module(&core),
        |_, r, _| {
            check!(loaded("vhost_mdev") == r.is_ok(), "loaded after {r:?}");
            if r.is_ok() {
                delete_module(c"vhost_mdev")?;
            }
            Ok(())
        },
    )?;
    finit_module(&core).map_err(|e| format!("insmod vhost_mdev: {}", errno_name(e)))?;
    finit_module(&net).map_err(|e| format!("insmod vhost_mdev_net: {}", errno_name(e)))?;
    filter_core()?;
    {
        let env = Env::discover()?;
        let inst = Inst::create(&env)?;
        let dev = inst.open(IommuKind::Type1)?;
        usable(&dev)?;
    }
    leaks.after("module load")
}

/// Sets one of the core's fault points: fail with `probability` percent
/// after `space` calls, `times` times (-1: no limit).
fn own_point(name: &str, probability: u32, space: u32, times: i32) -> Result<(), String> {
    let d = format!("{DEBUGFS}/vhost_mdev/{name}");
    check!(
        Path::new(&d).exists(),
        "{d} missing (a debug kernel with CONFIG_FAULT_INJECTION_DEBUG_FS)"
    );
    write_knob(&format!("{d}/verbose"), "0")?;
    write_knob(&format!("{d}/require-start"), "0")?;
    write_knob(&format!("{d}/require-end"), &u64::MAX.to_string())?;
    write_knob(&format!("{d}/interval"), "1")?;
    write_knob(&format!("{d}/space"), &space.to_string())?;
    write_knob(&format!("{d}/times"), &times.to_string())?;
    write_knob(&format!("{d}/probability"), &probability.to_string())?;
    Ok(())
}

fn own_points_off() {
    for a in OWN_ATTRS {
        let _ = fs::write(format!("{DEBUGFS}/vhost_mdev/{a}/probability"), "0");
    }
}

/// Frames sent, TX buffers the device returned, frames received.
#[derive(Debug, Default)]
struct Count {
    sent: u64,
    tx_done: u64,
    received: BTreeSet<u64>,
}

/// Sends `frames` frames (up to 16 in flight) and takes what comes back,
/// until every TX buffer is back or the device stops (DEVICE_NEEDS_RESET).
/// Every frame received must be one sent, intact, once.
fn pump(net: &mut RawNet, frames: u64, count: &mut Count) -> Result<bool, String> {
    let mac = net.config.mac;
    let deadline = Instant::now() + Duration::from_secs(60);
    let take = |net: &mut RawNet, count: &mut Count| -> TestResult {
        // TX buffers come back in order (a `send` reclaims too): those
        // not in flight are done.
        net.reclaim_tx()?;
        count.tx_done = count.sent - net.tx_in_flight() as u64;
        while let Some((_, f)) = net.try_recv()? {
            let seq = check_frame(&f).ctx("received frame")?;
            check!(
                seq < count.sent,
                "frame {seq} received, {} sent",
                count.sent
            );
            check!(count.received.insert(seq), "frame {seq} received twice");
        }
        Ok(())
    };
    loop {
        take(net, count)?;
        let status = net.dev.get_status().ctx("GET_STATUS")?;
        if status & VIRTIO_CONFIG_S_NEEDS_RESET != 0 {
            // Stopped: take what it completed before it stopped.
            take(net, count)?;
            return Ok(true);
        }
        if count.sent < frames && net.tx_in_flight() < 16 {
            let len = 64 + (count.sent as usize * 97) % 1400;
            let f = build_frame(mac, driver::TEST_SRC_MAC, count.sent, len).ctx("frame")?;
            net.send(&f)?;
            count.sent += 1;
            continue;
        }
        if count.sent == frames && net.tx_in_flight() == 0 && count.received.len() as u64 == frames
        {
            return Ok(false);
        }
        check!(
            Instant::now() < deadline,
            "stuck: {count:?} (status {status:#x}), neither done nor NEEDS_RESET"
        );
        wait_eventfd(&net.calls[0], Duration::from_millis(5)).ctx("poll")?;
    }
}

/// A failed DMA of the worker, at a different point each round (after
/// `space` accesses), on `kind`: DEVICE_NEEDS_RESET and a config
/// interrupt, no TX buffer reported done whose frame was lost, and the
/// device usable after a reset.
fn dma_failure(env: &Env, kind: IommuKind) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(kind)?;
    let frames = 200;
    for space in [0u32, 40, 400] {
        let what = format!("fail_dma after {space} accesses ({kind})");
        own_point("fail_dma", 0, 0, 0)?;
        let mut net = RawNet::start(&dev, RawOpts::default()).ctx(&what)?;
        // Drain the config eventfd of the start.
        let _ = fired(&net.cfg_irq, Duration::ZERO)?;
        own_point("fail_dma", 100, space, 1)?;
        let mut c = Count::default();
        let stopped = pump(&mut net, frames, &mut c).map_err(|e| format!("{what}: {e}"))?;
        let left =
            fs::read_to_string(format!("{DEBUGFS}/vhost_mdev/fail_dma/times")).unwrap_or_default();
        own_points_off();
        check!(
            stopped || left.trim() == "1",
            "{what}: a DMA failed ({c:?}) and the device did not stop"
        );
        eprintln!(
            "faults: {what}: {}; {} frames sent, {} TX buffers returned, {} received",
            if stopped {
                "DEVICE_NEEDS_RESET"
            } else {
                "no failure"
            },
            c.sent,
            c.tx_done,
            c.received.len()
        );
        if stopped {
            check!(
                fired(&net.cfg_irq, Duration::from_secs(1))?,
                "{what}: DEVICE_NEEDS_RESET without a config interrupt"
            );
            // Whatever the device said it sent, it delivered: TX buffers
            // are returned in order, after their frame was received.
            let lost: Vec<u64> = (0..c.tx_done.min(c.sent))
                .filter(|s| !c.received.contains(s))
                .collect();
            check!(
                lost.is_empty(),
                "{what}: frames {lost:?} reported sent and never received ({c:?})"
            );
            let s = dev.get_status().ctx("GET_STATUS")?;
            check!(
                s & VIRTIO_CONFIG_S_DRIVER_OK != 0,
                "{what}: status {s:#x}: DRIVER_OK dropped with NEEDS_RESET"
            );
        }
        drop(net);
        // A reset brings it back: every frame goes through.
        let mut net = RawNet::start(&dev, RawOpts::default()).ctx("start after reset")?;
        let mut c = Count::default();
        let stopped =
            pump(&mut net, 50, &mut c).map_err(|e| format!("{what}: after reset: {e}"))?;
        check!(
            !stopped,
            "{what}: NEEDS_RESET after the reset, no fault armed"
        );
        if left.trim() != "1" {
            OWN.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

pub fn datapath_dma(env: &Env) -> TestResult {
    let leaks = Leaks::before();
    let r = (|| -> TestResult {
        dma_failure(env, IommuKind::Type1)?;
        let probe = Inst::create(env)?;
        if iommufd_available(&probe).is_ok() {
            drop(probe);
            dma_failure(env, IommuKind::Iommufd)?;
        }
        Ok(())
    })();
    own_points_off();
    r?;
    OPERATIONS.fetch_add(1, Ordering::Relaxed);
    leaks.after("data path DMA")
}

/// The `times` of a point that fails without a practical limit, so that
/// what is left says how many failed.
const TIMES: u64 = 1_000_000;

/// Pins and cached copies failing (iommufd): the accesses fall back to
/// `vfio_dma_rw()` and bounce buffers, and every frame still arrives
/// intact.
pub fn datapath_pin_copy(env: &Env) -> TestResult {
    let leaks = Leaks::before();
    let r = (|| -> TestResult {
        let inst = Inst::create(env)?;
        iommufd_available(&inst)?;
        let dev = inst.open(IommuKind::Iommufd)?;
        for (point, probability) in [("fail_pin", 100), ("fail_pin", 30), ("fail_copy", 30)] {
            let what = format!("{point} at {probability}%");
            let mut net = RawNet::start(&dev, RawOpts::default()).ctx(&what)?;
            own_point(point, probability, 0, TIMES as i32)?;
            let mut c = Count::default();
            let stopped = pump(&mut net, 200, &mut c).map_err(|e| format!("{what}: {e}"))?;
            own_points_off();
            check!(
                !stopped,
                "{what}: DEVICE_NEEDS_RESET ({c:?}): a fallback failed"
            );
            // `times` counts down from TIMES with each failure.
            let left: u64 = fs::read_to_string(format!("{DEBUGFS}/vhost_mdev/{point}/times"))
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(TIMES);
            let n = TIMES.saturating_sub(left);
            check!(n > 0, "{what}: no failure injected");
            eprintln!(
                "faults: {what}: {} frames intact, {n} failures injected",
                c.received.len()
            );
            OWN.fetch_add(n as usize, Ordering::Relaxed);
        }
        Ok(())
    })();
    own_points_off();
    r?;
    OPERATIONS.fetch_add(1, Ordering::Relaxed);
    leaks.after("data path pin and copy")
}

/// Prints the figures of the run.
pub fn summary(secs: f64) {
    println!(
        "faults: {} operations, {} calls failed in turn (fail-nth), {} data-path \
         failures (fail_dma, fail_pin, fail_copy), {secs:.0} s",
        OPERATIONS.load(Ordering::Relaxed),
        INJECTED.load(Ordering::Relaxed),
        OWN.load(Ordering::Relaxed)
    );
}
