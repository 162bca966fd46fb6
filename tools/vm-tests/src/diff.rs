// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The differential test (`--differential`, run by tests/vm/bridge.sh): one
//! device model, `vdpa_sim_net`, behind upstream `vhost_vdpa`
//! (`/dev/vhost-vdpa-N`) and behind the vDPA bridge (a vhost-mdev instance
//! opened through VFIO), driven by the same request sequences, valid and
//! invalid.
//!
//! Each case runs on both from a reset device and records every step's
//! outcome (the value read, `ok`, or the errno) and then the device state
//! (status, every queue's vring base, the config space). The bridge runs
//! each case over both transports (ioctls and region 0), which must agree
//! exactly. A step where vhost-vdpa and the bridge differ must be listed in
//! [`KNOWN`], with both outcomes and the reason; Documentation/uapi.rst
//! lists the same differences ("vhost-vdpa and vhost-mdev compared"). An
//! unlisted difference fails, and so does a listed one that no longer
//! shows (the list must stay true).

use std::fmt::LowerHex;
use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use vhost_mdev::driver::{ping, KickMode, NetDriver, NetDriverConfig};
use vhost_mdev::mem::DmaMemory;
use vhost_mdev::uapi::*;
use vhost_mdev::{Errno, Error, IommuKind, MdevDevice, Transport, VhostBackend, VhostVdpa};
use vmm_sys_util::eventfd::EventFd;

use crate::check;
use crate::util::*;

const ACK: u8 = VIRTIO_CONFIG_S_ACKNOWLEDGE;
const DRIVER: u8 = ACK | VIRTIO_CONFIG_S_DRIVER;
const FEATURES_OK: u8 = DRIVER | VIRTIO_CONFIG_S_FEATURES_OK;
const DRIVER_OK: u8 = FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK;

/// The features of the bring-up (those of the library's drivers, without
/// the optional ring features).
const WANT: u64 = (1 << VIRTIO_F_VERSION_1)
    | (1 << VIRTIO_F_ACCESS_PLATFORM)
    | (1 << VIRTIO_NET_F_MAC)
    | (1 << VIRTIO_NET_F_MTU)
    | (1 << VIRTIO_NET_F_STATUS);

/// Where the rings of queue `q` are, as IOVAs (the memory table maps
/// them to [`Rings::mem`]).
const RING_IOVA: u64 = 0x4000_0000;
/// Bytes of ring memory per queue.
const RING_STRIDE: u64 = 0x4000;

// vhost-vdpa requests that vhost-mdev does not carry (<linux/vhost.h>;
// `struct vhost_vdpa_iova_range` is two u64s).
vmm_sys_util::ioctl_iow_nr!(VHOST_SET_LOG_BASE, VHOST_VIRTIO, 0x04, u64);
vmm_sys_util::ioctl_ior_nr!(VHOST_VDPA_GET_IOVA_RANGE, VHOST_VIRTIO, 0x78, [u64; 2]);
vmm_sys_util::ioctl_ior_nr!(VHOST_VDPA_GET_GROUP_NUM, VHOST_VIRTIO, 0x81, u32);
vmm_sys_util::ioctl_ior_nr!(VHOST_VDPA_GET_AS_NUM, VHOST_VIRTIO, 0x7A, u32);
vmm_sys_util::ioctl_iowr_nr!(
    VHOST_VDPA_GET_VRING_SIZE,
    VHOST_VIRTIO,
    0x82,
    VhostVringState
);
// A code of the vhost ioctl space that nothing defines.
vmm_sys_util::ioctl_iow_nr!(VHOST_UNDEFINED, VHOST_VIRTIO, 0x7F, u64);

/// Why vhost-vdpa and the bridge differ on a step (the rows of the table
/// of differences in Documentation/uapi.rst).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Why {
    Owner,
    VdpaOnly,
    VringHva,
    IrqApi,
    Features,
    FeaturesOk,
    DriverOk,
    NeedsReset,
    Running,
    EnableValue,
    RingLayout,
    MemTable,
    LateTable,
}

impl Why {
    fn text(self) -> &'static str {
        match self {
            Why::Owner => {
                "the VFIO opener owns the instance: SET_OWNER is accepted, any number of \
                 times, and nothing waits for it (vhost-vdpa: EPERM before it, EBUSY twice)"
            }
            Why::VdpaOnly => {
                "vhost-vdpa's own requests: VFIO replaces them (SET_IRQS, IOEVENTFD, \
                 the IOMMU's info; SUSPEND/RESUME are always requestable): ENOTTY"
            }
            Why::VringHva => "VHOST_VFIO_SET_VRING_HVA is vhost-mdev's own request",
            Why::IrqApi => "eventfds go through VFIO_DEVICE_SET_IRQS/IOEVENTFD: VFIO's errnos",
            Why::Features => {
                "SET_FEATURES is checked against the device's features (EINVAL) and \
                 reaches the parent at FEATURES_OK (vdpa_sim masks unknown bits, refuses \
                 a set without ACCESS_PLATFORM at once)"
            }
            Why::FeaturesOk => {
                "FEATURES_OK needs VERSION_1 and ACCESS_PLATFORM and the parent's \
                 acceptance, else stays clear (vhost-vdpa leaves it to the parent)"
            }
            Why::DriverOk => {
                "DRIVER_OK needs FEATURES_OK and every enabled queue configured \
                 (vhost-vdpa leaves it to the parent)"
            }
            Why::NeedsReset => "DEVICE_NEEDS_RESET is the device's bit: written, not stored",
            Why::Running => {
                "no ring change while running: SET_VRING_NUM, and enabling a queue that \
                 has no size or addresses (vhost-vdpa leaves it to the parent)"
            }
            Why::EnableValue => "SET_VRING_ENABLE takes 0 or 1 (vhost-vdpa: non-zero enables)",
            Why::RingLayout => {
                "ring addresses: descriptor table aligned to 16, flags 0 (no dirty log); \
                 vhost checks the other two areas only and takes the log flag"
            }
            Why::MemTable => {
                "memory table checks of uapi.rst (EINVAL); vhost_set_memory() gives \
                 EFAULT/EOPNOTSUPP, accepts overlaps, ignores flags_padding and the user range"
            }
            Why::LateTable => {
                "the bridge's table is its DMA translation: refused after a start \
                 without one (vhost-vdpa ignores the table: IOTLB messages map)"
            }
        }
    }
}

/// A listed difference: on `step` of `case`, vhost-vdpa gives `vdpa` and
/// the bridge `bridge`.
struct Known {
    case: &'static str,
    step: &'static str,
    vdpa: &'static str,
    bridge: &'static str,
    why: Why,
}

macro_rules! k {
    ($case:literal, $step:literal, $vdpa:literal, $bridge:literal, $why:ident) => {
        Known {
            case: $case,
            step: $step,
            vdpa: $vdpa,
            bridge: $bridge,
            why: Why::$why,
        }
    };
}

/// Every difference between vhost-vdpa and the bridge that the cases show,
/// with its reason (Documentation/uapi.rst, "vhost-vdpa and vhost-mdev
/// compared").
#[rustfmt::skip]
const KNOWN: &[Known] = &[
    k!("pre_owner", "SET_VRING_NUM(0, 64)", "EPERM", "ok", Owner),
    k!("pre_owner", "GET_VRING_BASE(0)", "EPERM", "ok 0x0", Owner),
    k!("pre_owner", "SET_MEM_TABLE([])", "EPERM", "ok", Owner),
    k!("pre_owner", "SET_OWNER again", "EBUSY", "ok", Owner),
    k!("owner_again", "SET_OWNER", "EBUSY", "ok", Owner),
    k!("vdpa_only", "GET_BACKEND_FEATURES", "ok 0x17e", "ENOTTY", VdpaOnly),
    k!("vdpa_only", "SET_BACKEND_FEATURES(acked)", "ok", "ENOTTY", VdpaOnly),
    k!("vdpa_only", "GET_IOVA_RANGE", "ok 0x0..0xffffffffffffffff", "ENOTTY", VdpaOnly),
    k!("vdpa_only", "GET_VRING_SIZE(0)", "EOPNOTSUPP", "ENOTTY", VdpaOnly),
    k!("vdpa_only", "GET_GROUP_NUM", "ok 0x2", "ENOTTY", VdpaOnly),
    k!("vdpa_only", "GET_AS_NUM", "ok 0x2", "ENOTTY", VdpaOnly),
    k!("vdpa_only", "SET_VRING_CALL(0, -1)", "ok", "ENOTTY", VdpaOnly),
    k!("vdpa_only", "SET_VRING_KICK(0, -1)", "ok", "ENOTTY", VdpaOnly),
    k!("vdpa_only", "SET_CONFIG_CALL(-1)", "ok", "ENOTTY", VdpaOnly),
    k!("vdpa_only", "SET_VRING_HVA(0) raw", "ENOTTY", "ok", VringHva),
    k!("vring_index", "vring call eventfd(nvqs)", "ENOBUFS", "EINVAL", IrqApi),
    k!("vring_index", "vring kick eventfd(nvqs)", "ENOBUFS", "EINVAL", IrqApi),
    k!("features_unknown_bit", "SET_FEATURES(WANT|unknown)", "ok", "EINVAL", Features),
    k!("features_no_access_platform", "SET_FEATURES(VERSION_1|MAC)", "EINVAL", "ok", Features),
    k!("features_no_access_platform", "GET_STATUS", "ok 0xb", "ok 0x3", FeaturesOk),
    k!("features_no_access_platform", "state: GET_STATUS", "ok 0xb", "ok 0x3", FeaturesOk),
    k!("features_no_version_1", "GET_STATUS", "ok 0xb", "ok 0x3", FeaturesOk),
    k!("features_no_version_1", "state: GET_STATUS", "ok 0xb", "ok 0x3", FeaturesOk),
    k!("status_driver_ok_early", "SET_STATUS(ACK|DRIVER|DRIVER_OK)", "ok", "EINVAL", DriverOk),
    k!("status_driver_ok_early", "state: GET_STATUS", "ok 0x7", "ok 0x3", DriverOk),
    k!("status_unconfigured_queue", "SET_STATUS(DRIVER_OK)", "ok", "EINVAL", DriverOk),
    k!("status_unconfigured_queue", "state: GET_STATUS", "ok 0xf", "ok 0xb", DriverOk),
    k!("status_needs_reset", "GET_STATUS", "ok 0x41", "ok 0x1", NeedsReset),
    k!("status_needs_reset", "SET_STATUS(ACK)", "EINVAL", "ok", NeedsReset),
    k!("status_needs_reset", "state: GET_STATUS", "ok 0x41", "ok 0x1", NeedsReset),
    k!("running", "SET_VRING_NUM(0, 64)", "ok", "EINVAL", Running),
    k!("vring_enable", "SET_VRING_ENABLE(1, 1) unconfigured", "ok", "EINVAL", Running),
    k!("vring_enable", "SET_VRING_ENABLE(0, 2)", "ok", "EINVAL", EnableValue),
    k!("vring_addr", "SET_VRING_ADDR(0) desc+8", "ok", "EINVAL", RingLayout),
    k!("vring_addr", "SET_VRING_ADDR(0) flags LOG", "ok", "EINVAL", RingLayout),
    k!("vring_addr", "SET_VRING_ADDR(0) flags 2", "EOPNOTSUPP", "EINVAL", RingLayout),
    k!("mem_table", "SET_MEM_TABLE(size 0)", "EFAULT", "EINVAL", MemTable),
    k!("mem_table", "SET_MEM_TABLE(overlap)", "ok", "EINVAL", MemTable),
    k!("mem_table", "SET_MEM_TABLE(iova wraps)", "EFAULT", "EINVAL", MemTable),
    k!("mem_table", "SET_MEM_TABLE(user range wraps)", "ok", "EINVAL", MemTable),
    k!("mem_table", "SET_MEM_TABLE(flags_padding 1)", "ok", "EINVAL", MemTable),
    k!("mem_table", "SET_MEM_TABLE(padding 1) raw", "EOPNOTSUPP", "EINVAL", MemTable),
    k!("late_mem_table", "SET_MEM_TABLE([]) after DRIVER_OK", "ok", "EBUSY", LateTable),
];

/// One side under test.
#[derive(Clone, Copy)]
enum Side<'a> {
    Vdpa(&'a VhostVdpa),
    Mdev(&'a MdevDevice),
}

impl Side<'_> {
    fn dev(&self) -> &dyn VhostBackend {
        match *self {
            Side::Vdpa(v) => v,
            Side::Mdev(m) => m,
        }
    }

    /// A request by code and payload (the vhost-vdpa ioctl layout),
    /// whatever the typed API allows; returns `reply` bytes of reply.
    fn raw(&self, code: u64, payload: &[u8], reply: usize) -> vhost_mdev::Result<Vec<u8>> {
        match *self {
            Side::Vdpa(v) => raw_ioctl(v.file(), code, payload, reply),
            Side::Mdev(m) => raw_mdev(m, code, payload, reply),
        }
    }
}

/// One request as an ioctl of `code` on `fd`: the argument holds
/// `payload` and is large enough for the size the code encodes and for
/// `reply`, whose first bytes are returned.
fn raw_ioctl(fd: &File, code: u64, payload: &[u8], reply: usize) -> vhost_mdev::Result<Vec<u8>> {
    let size = ((code >> 16) & 0x3fff) as usize;
    let mut buf = payload.to_vec();
    buf.resize(buf.len().max(size).max(reply), 0);
    let arg = if buf.is_empty() {
        std::ptr::null_mut()
    } else {
        buf.as_mut_ptr()
    };
    // SAFETY: arg is null or points to buf, which covers the argument size
    // the code encodes and outlives the call.
    let r = unsafe { vmm_sys_util::ioctl::ioctl_with_mut_ptr(fd, code as _, arg) };
    if r < 0 {
        return Err(Error::Request {
            request: format!("ioctl {code:#x}"),
            errno: Errno::last(),
        });
    }
    buf.truncate(reply);
    Ok(buf)
}

/// [`raw_ioctl`] over the instance's current transport.
fn raw_mdev(
    m: &MdevDevice,
    code: u64,
    payload: &[u8],
    reply: usize,
) -> vhost_mdev::Result<Vec<u8>> {
    match m.transport() {
        Transport::Ioctl => raw_ioctl(m.vfio().file(), code, payload, reply),
        Transport::Region => {
            let flags = if reply > 0 { VHOST_VFIO_NEED_REPLY } else { 0 };
            let mut r = m.send(code, flags, payload)?;
            r.truncate(reply);
            Ok(r)
        }
    }
}

/// What one case did on one side: each step and its outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Rec(Vec<(String, String)>);

fn failed(e: &Error) -> String {
    match e.errno() {
        Some(n) => Errno(n)
            .name()
            .map_or_else(|| format!("errno {n}"), str::to_string),
        None => format!("error: {e}"),
    }
}

impl Rec {
    fn push(&mut self, what: impl Into<String>, outcome: String) {
        self.0.push((what.into(), outcome));
    }

    /// A step without a value.
    fn ok<T>(&mut self, what: impl Into<String>, r: vhost_mdev::Result<T>) {
        let o = match r {
            Ok(_) => "ok".to_string(),
            Err(e) => failed(&e),
        };
        self.push(what, o);
    }

    /// A step that reads a number.
    fn hex<T: LowerHex>(&mut self, what: impl Into<String>, r: vhost_mdev::Result<T>) {
        let o = match r {
            Ok(v) => format!("ok {v:#x}"),
            Err(e) => failed(&e),
        };
        self.push(what, o);
    }

    /// A step that reads bytes.
    fn bytes(&mut self, what: impl Into<String>, r: vhost_mdev::Result<Vec<u8>>) {
        let o = match r {
            Ok(v) => format!("ok {}", hex_bytes(&v)),
            Err(e) => failed(&e),
        };
        self.push(what, o);
    }
}

fn hex_bytes(b: &[u8]) -> String {
    let s: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("[{}]", s.join(""))
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        v.copy_from_slice(s);
    }
    u64::from_ne_bytes(v)
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        v.copy_from_slice(s);
    }
    u32::from_ne_bytes(v)
}

fn state_bytes(index: u32, num: u32) -> Vec<u8> {
    let mut v = index.to_ne_bytes().to_vec();
    v.extend_from_slice(&num.to_ne_bytes());
    v
}

fn addr_bytes(a: &VhostVringAddr) -> Vec<u8> {
    let mut v = Vec::with_capacity(40);
    v.extend_from_slice(&a.index.to_ne_bytes());
    v.extend_from_slice(&a.flags.to_ne_bytes());
    v.extend_from_slice(&a.desc_user_addr.to_ne_bytes());
    v.extend_from_slice(&a.used_user_addr.to_ne_bytes());
    v.extend_from_slice(&a.avail_user_addr.to_ne_bytes());
    v.extend_from_slice(&a.log_guest_addr.to_ne_bytes());
    v
}

/// What the cases share: memory where the rings would be.
struct Rings {
    /// Backs the rings' IOVAs (by the memory table) and their HVAs.
    mem: DmaMemory,
}

impl Rings {
    /// Ring addresses of queue `q` as IOVAs.
    fn iova(&self, q: u32) -> VhostVringAddr {
        ring_addr(q, RING_IOVA + u64::from(q) * RING_STRIDE)
    }

    /// Ring addresses of queue `q` where this process sees them.
    fn hva(&self, q: u32) -> VhostVringAddr {
        ring_addr(q, self.mem.addr() + u64::from(q) * RING_STRIDE)
    }

    /// The table mapping the rings' IOVAs to [`Rings::mem`].
    fn table(&self) -> Vec<MemRegion> {
        vec![self.mem.region(RING_IOVA)]
    }
}

fn ring_addr(index: u32, base: u64) -> VhostVringAddr {
    VhostVringAddr {
        index,
        flags: 0,
        desc_user_addr: base,
        avail_user_addr: base + 0x1000,
        used_user_addr: base + 0x2000,
        log_guest_addr: 0,
    }
}

fn reset(s: Side, r: &mut Rec) {
    r.ok("SET_STATUS(0)", s.dev().set_status(0));
}

/// Reset, ACKNOWLEDGE, DRIVER, `features`, FEATURES_OK.
fn to_features_ok(s: Side, r: &mut Rec, features: u64) {
    let d = s.dev();
    reset(s, r);
    r.ok("SET_STATUS(ACK)", d.set_status(ACK));
    r.ok("SET_STATUS(ACK|DRIVER)", d.set_status(DRIVER));
    r.ok(
        format!("SET_FEATURES({features:#x})"),
        d.set_features(features),
    );
    r.ok("SET_STATUS(FEATURES_OK)", d.set_status(FEATURES_OK));
    r.hex("GET_STATUS", d.get_status());
}

/// Size, addresses (both ways), base 0 and enable of queue `q`.
fn ring(s: Side, r: &mut Rec, c: &Rings, q: u32, num: u32) {
    let d = s.dev();
    r.ok(
        format!("SET_VRING_NUM({q}, {num})"),
        d.set_vring_num(q, num),
    );
    r.ok(format!("SET_VRING_ADDR({q})"), d.set_vring_addr(&c.iova(q)));
    r.ok(format!("SET_VRING_HVA({q})"), d.set_vring_hva(&c.hva(q)));
    r.ok(format!("SET_VRING_BASE({q}, 0)"), d.set_vring_base(q, 0));
    r.ok(
        format!("SET_VRING_ENABLE({q}, 1)"),
        d.set_vring_enable(q, true),
    );
}

/// The state a case leaves: status, every queue's base, the config space.
fn state(s: Side, r: &mut Rec) {
    let d = s.dev();
    r.hex("state: GET_STATUS", d.get_status());
    let n = d.get_vqs_count().unwrap_or(0);
    for q in 0..n {
        r.hex(format!("state: GET_VRING_BASE({q})"), d.get_vring_base(q));
    }
    let size = d.get_config_size().unwrap_or(0);
    r.bytes("state: GET_CONFIG", d.get_config(0, size));
}

fn nvqs(s: Side) -> u32 {
    s.dev().get_vqs_count().unwrap_or(0)
}

// The cases. Each starts by resetting the device and ends with `state`.

fn query(s: Side, _c: &Rings) -> Rec {
    let d = s.dev();
    let mut r = Rec::default();
    reset(s, &mut r);
    r.hex("GET_DEVICE_ID", d.get_device_id());
    r.hex("GET_FEATURES", d.get_features());
    r.hex("GET_VQS_COUNT", d.get_vqs_count());
    r.hex("GET_VRING_NUM", d.get_vring_num());
    r.hex("GET_CONFIG_SIZE", d.get_config_size());
    r.hex("GET_STATUS", d.get_status());
    state(s, &mut r);
    r
}

fn late_mem_table(s: Side, _c: &Rings) -> Rec {
    let d = s.dev();
    let mut r = Rec::default();
    to_features_ok(s, &mut r, WANT);
    r.ok("SET_STATUS(DRIVER_OK)", d.set_status(DRIVER_OK));
    r.ok("SET_MEM_TABLE([]) after DRIVER_OK", d.set_mem_table(&[]));
    reset(s, &mut r);
    r.ok("SET_MEM_TABLE([]) after the reset", d.set_mem_table(&[]));
    state(s, &mut r);
    r
}

fn bring_up(s: Side, c: &Rings) -> Rec {
    let d = s.dev();
    let mut r = Rec::default();
    to_features_ok(s, &mut r, WANT);
    r.bytes("GET_CONFIG(0, 6)", d.get_config(0, 6));
    r.ok("SET_MEM_TABLE(rings)", d.set_mem_table(&c.table()));
    for q in 0..2 {
        ring(s, &mut r, c, q, 64);
    }
    r.ok("SET_STATUS(DRIVER_OK)", d.set_status(DRIVER_OK));
    r.hex("GET_STATUS", d.get_status());
    for q in 0..2 {
        r.hex(format!("GET_VRING_BASE({q})"), d.get_vring_base(q));
    }
    r.ok("SUSPEND", d.suspend());
    r.ok("SET_VRING_BASE(0, 7) suspended", d.set_vring_base(0, 7));
    r.hex("GET_VRING_BASE(0) suspended", d.get_vring_base(0));
    r.ok("RESUME", d.resume());
    r.hex("GET_VRING_BASE(0) resumed", d.get_vring_base(0));
    state(s, &mut r);
    reset(s, &mut r);
    r.hex("GET_STATUS after the reset", d.get_status());
    state(s, &mut r);
    r
}

fn running(s: Side, c: &Rings) -> Rec {
    let d = s.dev();
    let mut r = Rec::default();
    to_features_ok(s, &mut r, WANT);
    r.ok("SET_MEM_TABLE(rings)", d.set_mem_table(&c.table()));
    for q in 0..2 {
        ring(s, &mut r, c, q, 64);
    }
    r.ok("SET_STATUS(DRIVER_OK)", d.set_status(DRIVER_OK));
    r.ok("SET_VRING_BASE(0, 1)", d.set_vring_base(0, 1));
    r.ok("SET_VRING_ADDR(0)", d.set_vring_addr(&c.iova(0)));
    r.ok("SET_VRING_NUM(0, 64)", d.set_vring_num(0, 64));
    r.ok("SET_VRING_NUM(0, 3)", d.set_vring_num(0, 3));
    r.ok("SET_VRING_ENABLE(1, 0)", d.set_vring_enable(1, false));
    r.ok("SET_VRING_ENABLE(1, 1)", d.set_vring_enable(1, true));
    r.ok("SET_FEATURES(WANT)", d.set_features(WANT));
    r.ok("SET_MEM_TABLE(rings) again", d.set_mem_table(&c.table()));
    r.ok(
        "SET_STATUS(FEATURES_OK) clears DRIVER_OK",
        d.set_status(FEATURES_OK),
    );
    r.hex("GET_STATUS", d.get_status());
    r.ok("SUSPEND", d.suspend());
    r.ok("SET_VRING_ADDR(0) suspended", d.set_vring_addr(&c.iova(0)));
    r.ok("SET_VRING_NUM(0, 64) suspended", d.set_vring_num(0, 64));
    r.ok("SET_VRING_BASE(0, 3) suspended", d.set_vring_base(0, 3));
    r.ok("RESUME", d.resume());
    state(s, &mut r);
    reset(s, &mut r);
    r
}

fn status(s: Side, _c: &Rings) -> Rec {
    let d = s.dev();
    let mut r = Rec::default();
    reset(s, &mut r);
    r.ok("SET_STATUS(ACK)", d.set_status(ACK));
    r.ok("SET_STATUS(ACK|DRIVER)", d.set_status(DRIVER));
    r.ok("SET_STATUS(ACK) clears DRIVER", d.set_status(ACK));
    r.ok("SET_FEATURES(WANT)", d.set_features(WANT));
    r.ok("SET_STATUS(FEATURES_OK)", d.set_status(FEATURES_OK));
    r.ok(
        "SET_STATUS(ACK|DRIVER) clears FEATURES_OK",
        d.set_status(DRIVER),
    );
    r.ok(
        "SET_STATUS(FEATURES_OK|FAILED)",
        d.set_status(FEATURES_OK | VIRTIO_CONFIG_S_FAILED),
    );
    r.hex("GET_STATUS", d.get_status());
    r.ok(
        "SET_STATUS(FEATURES_OK) clears FAILED",
        d.set_status(FEATURES_OK),
    );
    state(s, &mut r);
    reset(s, &mut r);
    r.hex("GET_STATUS after the reset", d.get_status());
    r
}

fn status_driver_ok_early(s: Side, _c: &Rings) -> Rec {
    let d = s.dev();
    let mut r = Rec::default();
    reset(s, &mut r);
    r.ok("SET_STATUS(ACK|DRIVER)", d.set_status(DRIVER));
    r.ok(
        "SET_STATUS(ACK|DRIVER|DRIVER_OK)",
        d.set_status(DRIVER | VIRTIO_CONFIG_S_DRIVER_OK),
    );
    state(s, &mut r);
    reset(s, &mut r);
    r
}

fn status_unconfigured_queue(s: Side, _c: &Rings) -> Rec {
    let d = s.dev();
    let mut r = Rec::default();
    to_features_ok(s, &mut r, WANT);
    r.ok("SET_VRING_ENABLE(0, 1)", d.set_vring_enable(0, true));
    r.ok("SET_STATUS(DRIVER_OK)", d.set_status(DRIVER_OK));
    state(s, &mut r);
    reset(s, &mut r);
    r
}

fn status_needs_reset(s: Side, _c: &Rings) -> Rec {
    let d = s.dev();
    let mut r = Rec::default();
    reset(s, &mut r);
    r.ok(
        "SET_STATUS(ACK|NEEDS_RESET)",
        d.set_status(ACK | VIRTIO_CONFIG_S_NEEDS_RESET),
    );
    r.hex("GET_STATUS", d.get_status());
    r.ok("SET_STATUS(ACK)", d.set_status(ACK));
    state(s, &mut r);
    reset(s, &mut r);
    r.hex("GET_STATUS after the reset", d.get_status());
    r
}

/// A feature bit the device does not offer.
fn unknown_bit(s: Side) -> u64 {
    let offered = s.dev().get_features().unwrap_or(0);
    (0..64)
        .rev()
        .map(|b| 1u64 << b)
        .find(|b| offered & b == 0)
        .unwrap_or(0)
}

fn features_unknown_bit(s: Side, _c: &Rings) -> Rec {
    let d = s.dev();
    let mut r = Rec::default();
    reset(s, &mut r);
    r.ok("SET_STATUS(ACK|DRIVER)", d.set_status(DRIVER));
    r.ok(
        "SET_FEATURES(WANT|unknown)",
        d.set_features(WANT | unknown_bit(s)),
    );
    r.ok("SET_FEATURES(WANT)", d.set_features(WANT));
    r.ok("SET_STATUS(FEATURES_OK)", d.set_status(FEATURES_OK));
    state(s, &mut r);
    reset(s, &mut r);
    r
}

fn features_no_access_platform(s: Side, _c: &Rings) -> Rec {
    let d = s.dev();
    let mut r = Rec::default();
    reset(s, &mut r);
    r.ok("SET_STATUS(ACK|DRIVER)", d.set_status(DRIVER));
    r.ok(
        "SET_FEATURES(VERSION_1|MAC)",
        d.set_features((1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_NET_F_MAC)),
    );
    r.ok("SET_STATUS(FEATURES_OK)", d.set_status(FEATURES_OK));
    r.hex("GET_STATUS", d.get_status());
    state(s, &mut r);
    reset(s, &mut r);
    r
}

fn features_no_version_1(s: Side, _c: &Rings) -> Rec {
    let d = s.dev();
    let mut r = Rec::default();
    reset(s, &mut r);
    r.ok("SET_STATUS(ACK|DRIVER)", d.set_status(DRIVER));
    r.ok(
        "SET_FEATURES(ACCESS_PLATFORM|MAC)",
        d.set_features((1 << VIRTIO_F_ACCESS_PLATFORM) | (1 << VIRTIO_NET_F_MAC)),
    );
    r.ok("SET_STATUS(FEATURES_OK)", d.set_status(FEATURES_OK));
    r.hex("GET_STATUS", d.get_status());
    state(s, &mut r);
    reset(s, &mut r);
    r
}

fn features_late_and_all(s: Side, _c: &Rings) -> Rec {
    let d = s.dev();
    let mut r = Rec::default();
    to_features_ok(s, &mut r, WANT);
    r.ok("SET_FEATURES(WANT) after FEATURES_OK", d.set_features(WANT));
    let all = d.get_features().unwrap_or(0);
    to_features_ok(s, &mut r, all);
    state(s, &mut r);
    reset(s, &mut r);
    r
}

fn vring_num(s: Side, _c: &Rings) -> Rec {
    let d = s.dev();
    let mut r = Rec::default();
    to_features_ok(s, &mut r, WANT);
    let max = u32::from(d.get_vring_num().unwrap_or(0));
    for num in [0, 3, 48, max * 2, 0x1_0000, 0x8000_0000] {
        r.ok(format!("SET_VRING_NUM(0, {num})"), d.set_vring_num(0, num));
    }
    r.ok("SET_VRING_NUM(0, max)", d.set_vring_num(0, max));
    r.ok("SET_VRING_NUM(1, 1)", d.set_vring_num(1, 1));
    state(s, &mut r);
    reset(s, &mut r);
    r
}

fn vring_index(s: Side, c: &Rings) -> Rec {
    let d = s.dev();
    let mut r = Rec::default();
    to_features_ok(s, &mut r, WANT);
    let n = nvqs(s);
    for q in [n, n + 1, u32::MAX] {
        r.ok(
            format!("SET_VRING_NUM({q}), nvqs {n}"),
            d.set_vring_num(q, 64),
        );
        let mut a = c.iova(0);
        a.index = q;
        r.ok(format!("SET_VRING_ADDR({q})"), d.set_vring_addr(&a));
        r.ok(format!("SET_VRING_BASE({q})"), d.set_vring_base(q, 0));
        r.hex(format!("GET_VRING_BASE({q})"), d.get_vring_base(q));
        r.ok(
            format!("SET_VRING_ENABLE({q}, 1)"),
            d.set_vring_enable(q, true),
        );
    }
    match EventFd::new(0) {
        Ok(efd) => {
            r.ok("vring call eventfd(nvqs)", d.set_vring_call(n, Some(&efd)));
            r.ok("vring kick eventfd(nvqs)", d.set_vring_kick(n, Some(&efd)));
        }
        Err(e) => r.push("eventfd", format!("error: {e}")),
    }
    state(s, &mut r);
    reset(s, &mut r);
    r
}

fn vring_addr(s: Side, c: &Rings) -> Rec {
    let d = s.dev();
    let mut r = Rec::default();
    to_features_ok(s, &mut r, WANT);
    let good = c.iova(0);
    r.ok("SET_VRING_ADDR(0)", d.set_vring_addr(&good));
    let bad: [(&str, VhostVringAddr); 5] = [
        (
            "desc+8",
            VhostVringAddr {
                desc_user_addr: good.desc_user_addr + 8,
                ..good
            },
        ),
        (
            "avail+1",
            VhostVringAddr {
                avail_user_addr: good.avail_user_addr + 1,
                ..good
            },
        ),
        (
            "used+2",
            VhostVringAddr {
                used_user_addr: good.used_user_addr + 2,
                ..good
            },
        ),
        ("flags LOG", VhostVringAddr { flags: 1, ..good }),
        ("flags 2", VhostVringAddr { flags: 2, ..good }),
    ];
    for (what, a) in bad {
        r.ok(format!("SET_VRING_ADDR(0) {what}"), d.set_vring_addr(&a));
    }
    state(s, &mut r);
    reset(s, &mut r);
    r
}

fn vring_base(s: Side, _c: &Rings) -> Rec {
    let d = s.dev();
    let mut r = Rec::default();
    to_features_ok(s, &mut r, WANT);
    r.ok("SET_VRING_BASE(0, 0x10000)", d.set_vring_base(0, 0x1_0000));
    r.ok("SET_VRING_BASE(0, 0xffff)", d.set_vring_base(0, 0xffff));
    r.hex("GET_VRING_BASE(0)", d.get_vring_base(0));
    r.ok("SET_VRING_BASE(1, 0x1234)", d.set_vring_base(1, 0x1234));
    state(s, &mut r);
    reset(s, &mut r);
    r.hex("GET_VRING_BASE(1) after the reset", d.get_vring_base(1));
    r
}

fn vring_enable(s: Side, c: &Rings) -> Rec {
    let d = s.dev();
    let mut r = Rec::default();
    to_features_ok(s, &mut r, WANT);
    r.ok("SET_MEM_TABLE(rings)", d.set_mem_table(&c.table()));
    ring(s, &mut r, c, 0, 64);
    r.ok("SET_VRING_ENABLE(0, 0)", d.set_vring_enable(0, false));
    r.ok(
        "SET_VRING_ENABLE(0, 2)",
        d.request(&vhost_mdev::msg::Request::SetVringEnable(VhostVringState {
            index: 0,
            num: 2,
        })),
    );
    r.ok("SET_VRING_ENABLE(0, 1) again", d.set_vring_enable(0, true));
    r.ok(
        "SET_VRING_ENABLE(2, 1) before DRIVER_OK",
        d.set_vring_enable(2, true),
    );
    r.ok("SET_VRING_ENABLE(2, 0)", d.set_vring_enable(2, false));
    r.ok("SET_STATUS(DRIVER_OK)", d.set_status(DRIVER_OK));
    r.ok(
        "SET_VRING_ENABLE(1, 1) unconfigured",
        d.set_vring_enable(1, true),
    );
    r.ok(
        "SET_VRING_ENABLE(0, 0) running",
        d.set_vring_enable(0, false),
    );
    r.ok(
        "SET_VRING_ENABLE(0, 1) running",
        d.set_vring_enable(0, true),
    );
    state(s, &mut r);
    reset(s, &mut r);
    r
}

fn config(s: Side, _c: &Rings) -> Rec {
    let d = s.dev();
    let mut r = Rec::default();
    reset(s, &mut r);
    let size = d.get_config_size().unwrap_or(0);
    r.hex("GET_CONFIG_SIZE", d.get_config_size());
    for (what, off, len) in [
        ("GET_CONFIG(0, size)", 0, size),
        ("GET_CONFIG(size - 2, 2)", size.saturating_sub(2), 2),
        ("GET_CONFIG(size, 1)", size, 1),
        ("GET_CONFIG(size + 1, 1)", size + 1, 1),
        ("GET_CONFIG(0, size + 1)", 0, size + 1),
        ("GET_CONFIG(size - 1, 2)", size.saturating_sub(1), 2),
        ("GET_CONFIG(u32::MAX, 2)", u32::MAX, 2),
        ("GET_CONFIG(0, 4096)", 0, 4096),
        ("GET_CONFIG(0, 0)", 0, 0),
        ("GET_CONFIG(size, 0)", size, 0),
    ] {
        r.bytes(what, d.get_config(off, len));
    }
    r.ok("SET_CONFIG(size, 1 byte)", d.set_config(size, &[0]));
    r.ok(
        "SET_CONFIG(size - 1, 2 bytes)",
        d.set_config(size.saturating_sub(1), &[0, 0]),
    );
    r.ok(
        "SET_CONFIG(u32::MAX, 2 bytes)",
        d.set_config(u32::MAX, &[0, 0]),
    );
    r.ok("SET_CONFIG(0, 0 bytes)", d.set_config(0, &[]));
    // The MAC, changed and read back on both, then restored.
    let mac = d.get_config(0, 6).unwrap_or_default();
    let mut other = mac.clone();
    if let Some(b) = other.get_mut(5) {
        *b ^= 0x80;
    }
    r.ok("SET_CONFIG(0, other MAC)", d.set_config(0, &other));
    r.bytes("GET_CONFIG(0, 6) after SET_CONFIG", d.get_config(0, 6));
    r.ok("SET_CONFIG(0, MAC)", d.set_config(0, &mac));
    state(s, &mut r);
    r
}

fn suspend_resume(s: Side, c: &Rings) -> Rec {
    let d = s.dev();
    let mut r = Rec::default();
    reset(s, &mut r);
    r.ok("SUSPEND before DRIVER_OK", d.suspend());
    r.ok("RESUME before DRIVER_OK", d.resume());
    to_features_ok(s, &mut r, WANT);
    r.ok("SET_MEM_TABLE(rings)", d.set_mem_table(&c.table()));
    for q in 0..2 {
        ring(s, &mut r, c, q, 64);
    }
    r.ok("SET_STATUS(DRIVER_OK)", d.set_status(DRIVER_OK));
    r.ok("RESUME, not suspended", d.resume());
    r.ok("SUSPEND", d.suspend());
    r.ok("SUSPEND again", d.suspend());
    r.hex("GET_STATUS suspended", d.get_status());
    r.hex("GET_VRING_BASE(1) suspended", d.get_vring_base(1));
    r.ok("RESUME", d.resume());
    r.ok("RESUME again", d.resume());
    state(s, &mut r);
    r.ok("SUSPEND before the reset", d.suspend());
    reset(s, &mut r);
    r.ok("RESUME after the reset", d.resume());
    state(s, &mut r);
    r
}

fn mem_table(s: Side, c: &Rings) -> Rec {
    let d = s.dev();
    let mut r = Rec::default();
    reset(s, &mut r);
    let u = c.mem.addr();
    let len = c.mem.len() as u64;
    let last = u64::MAX - 0xfff;
    let tables: Vec<(&str, Vec<MemRegion>)> = vec![
        ("[]", vec![]),
        ("rings", c.table()),
        (
            "two touching",
            vec![
                MemRegion::new(0x1000, 0x1000, u),
                MemRegion::new(0x2000, 0x1000, u),
            ],
        ),
        (
            "ending at the last IOVA",
            vec![MemRegion::new(last, 0x1000, u)],
        ),
        (
            "64 regions",
            (0..64)
                .map(|i| MemRegion::new(i * 0x1000, 0x1000, u))
                .collect(),
        ),
        (
            "65 regions",
            (0..65)
                .map(|i| MemRegion::new(i * 0x1000, 0x1000, u))
                .collect(),
        ),
        ("size 0", vec![MemRegion::new(0x1000, 0, u)]),
        (
            "overlap",
            vec![
                MemRegion::new(0x1000, 0x2000, u),
                MemRegion::new(0x2000, 0x1000, u),
            ],
        ),
        ("iova wraps", vec![MemRegion::new(last, 0x2000, u)]),
        (
            "user range wraps",
            vec![MemRegion::new(0x1000, 0x2000, last)],
        ),
        (
            "flags_padding 1",
            vec![MemRegion {
                flags_padding: 1,
                ..MemRegion::new(RING_IOVA, len, u)
            }],
        ),
    ];
    for (what, t) in tables {
        r.ok(format!("SET_MEM_TABLE({what})"), d.set_mem_table(&t));
    }
    // The header's padding, which the typed request always writes as 0.
    let mut p = 0u32.to_ne_bytes().to_vec();
    p.extend_from_slice(&1u32.to_ne_bytes());
    r.ok(
        "SET_MEM_TABLE(padding 1) raw",
        s.raw(VHOST_SET_MEM_TABLE, &p, 0),
    );
    r.ok("SET_MEM_TABLE(rings) last", d.set_mem_table(&c.table()));
    state(s, &mut r);
    r
}

fn owner_again(s: Side, _c: &Rings) -> Rec {
    let mut r = Rec::default();
    reset(s, &mut r);
    // Raw: the vhost-vdpa client answers SET_OWNER itself (it became the
    // owner at open).
    r.ok("SET_OWNER", s.raw(VHOST_SET_OWNER, &[], 0));
    state(s, &mut r);
    r
}

fn vdpa_only(s: Side, c: &Rings) -> Rec {
    let mut r = Rec::default();
    reset(s, &mut r);
    let bf = s.raw(VHOST_GET_BACKEND_FEATURES(), &[], 8);
    let acked = match s {
        Side::Vdpa(v) => v.backend_features(),
        Side::Mdev(_) => 0,
    };
    r.hex("GET_BACKEND_FEATURES", bf.map(|b| le_u64(&b, 0)));
    r.ok(
        "SET_BACKEND_FEATURES(acked)",
        s.raw(VHOST_SET_BACKEND_FEATURES(), &acked.to_ne_bytes(), 0),
    );
    let range = s.raw(VHOST_VDPA_GET_IOVA_RANGE(), &[], 16);
    r.push(
        "GET_IOVA_RANGE",
        match range {
            Ok(b) => format!("ok {:#x}..{:#x}", le_u64(&b, 0), le_u64(&b, 8)),
            Err(e) => failed(&e),
        },
    );
    r.hex(
        "GET_VRING_SIZE(0)",
        s.raw(VHOST_VDPA_GET_VRING_SIZE(), &state_bytes(0, 0), 8)
            .map(|b| le_u32(&b, 4)),
    );
    r.hex(
        "GET_GROUP_NUM",
        s.raw(VHOST_VDPA_GET_GROUP_NUM(), &[], 4)
            .map(|b| le_u32(&b, 0)),
    );
    r.hex(
        "GET_AS_NUM",
        s.raw(VHOST_VDPA_GET_AS_NUM(), &[], 4)
            .map(|b| le_u32(&b, 0)),
    );
    let unbind = state_bytes(0, u32::MAX);
    r.ok(
        "SET_VRING_CALL(0, -1)",
        s.raw(VHOST_SET_VRING_CALL(), &unbind, 0),
    );
    r.ok(
        "SET_VRING_KICK(0, -1)",
        s.raw(VHOST_SET_VRING_KICK(), &unbind, 0),
    );
    r.ok(
        "SET_CONFIG_CALL(-1)",
        s.raw(VHOST_VDPA_SET_CONFIG_CALL(), &(-1i32).to_ne_bytes(), 0),
    );
    r.ok(
        "SET_VRING_HVA(0) raw",
        s.raw(VHOST_VFIO_SET_VRING_HVA, &addr_bytes(&c.hva(0)), 0),
    );
    r.ok("SET_LOG_BASE(0)", s.raw(VHOST_SET_LOG_BASE(), &[0; 8], 0));
    r.ok(
        "undefined vhost ioctl 0x7f",
        s.raw(VHOST_UNDEFINED(), &[0; 8], 0),
    );
    state(s, &mut r);
    r
}

/// The same bring-up by the library's driver, frames looped on both, and
/// where the queues stopped.
fn traffic(s: Side, _c: &Rings) -> Rec {
    let mut r = Rec::default();
    match s {
        Side::Vdpa(v) => traffic_on(v, &mut r),
        Side::Mdev(m) => traffic_on(m, &mut r),
    }
    state(s, &mut r);
    r
}

/// Frames each way in [`traffic`].
const FRAMES: u64 = 24;

fn traffic_on<B: VhostBackend>(b: B, r: &mut Rec) {
    let cfg = NetDriverConfig {
        queue_size: 64,
        kick: KickMode::EventFd,
        timeout: Duration::from_secs(10),
        ..Default::default()
    };
    let mut drv = match NetDriver::start(b, cfg) {
        Ok(d) => d,
        Err(e) => {
            r.push("NetDriver::start", failed(&e));
            return;
        }
    };
    r.push("NetDriver::start", "ok".into());
    r.hex("features", Ok::<_, Error>(drv.features()));
    r.hex("GET_STATUS", drv.backend().get_status());
    r.hex(
        format!("ping {FRAMES} frames"),
        ping(&mut drv, FRAMES, 0).map(|p| p.frames),
    );
    let d = drv.backend();
    r.ok("SUSPEND", d.suspend());
    for q in 0..2 {
        r.hex(
            format!("GET_VRING_BASE({q}) suspended"),
            d.get_vring_base(q),
        );
    }
    r.ok("RESUME", d.resume());
    r.hex(
        "ping 4 more frames",
        ping(&mut drv, 4, 1514).map(|p| p.frames),
    );
    r.ok("stop", drv.stop());
}

type CaseFn = fn(Side, &Rings) -> Rec;

/// The cases, in order (a bridge instance binds the opener's address
/// space at its first memory table: `late_mem_table` comes first).
const CASES: &[(&str, CaseFn)] = &[
    ("query", query),
    ("late_mem_table", late_mem_table),
    ("bring_up", bring_up),
    ("running", running),
    ("status", status),
    ("status_driver_ok_early", status_driver_ok_early),
    ("status_unconfigured_queue", status_unconfigured_queue),
    ("status_needs_reset", status_needs_reset),
    ("features_unknown_bit", features_unknown_bit),
    ("features_no_access_platform", features_no_access_platform),
    ("features_no_version_1", features_no_version_1),
    ("features_late_and_all", features_late_and_all),
    ("vring_num", vring_num),
    ("vring_index", vring_index),
    ("vring_addr", vring_addr),
    ("vring_base", vring_base),
    ("vring_enable", vring_enable),
    ("config", config),
    ("suspend_resume", suspend_resume),
    ("mem_table", mem_table),
    ("owner_again", owner_again),
    ("vdpa_only", vdpa_only),
    ("traffic", traffic),
];

/// Requests on a fresh opening, before SET_OWNER (raw, on any opening).
/// A raw request: code, payload, reply size.
type RawFn<'a> = dyn Fn(u64, &[u8], usize) -> vhost_mdev::Result<Vec<u8>> + 'a;

fn pre_owner(raw: &RawFn<'_>) -> Rec {
    let mut r = Rec::default();
    r.hex(
        "GET_FEATURES",
        raw(VHOST_GET_FEATURES, &[], 8).map(|b| le_u64(&b, 0)),
    );
    r.hex(
        "GET_STATUS",
        raw(VHOST_VDPA_GET_STATUS, &[], 1).map(|b| b.first().copied().unwrap_or(0xff)),
    );
    r.hex(
        "GET_VQS_COUNT",
        raw(VHOST_VDPA_GET_VQS_COUNT, &[], 4).map(|b| le_u32(&b, 0)),
    );
    r.ok("SET_STATUS(0)", raw(VHOST_VDPA_SET_STATUS, &[0], 0));
    r.ok(
        "SET_VRING_NUM(0, 64)",
        raw(VHOST_SET_VRING_NUM, &state_bytes(0, 64), 0),
    );
    r.hex(
        "GET_VRING_BASE(0)",
        raw(VHOST_GET_VRING_BASE, &state_bytes(0, 0), 8).map(|b| le_u32(&b, 4)),
    );
    r.ok("SET_MEM_TABLE([])", raw(VHOST_SET_MEM_TABLE, &[0; 8], 0));
    r.ok("SET_OWNER", raw(VHOST_SET_OWNER, &[], 0));
    r.ok("SET_OWNER again", raw(VHOST_SET_OWNER, &[], 0));
    r.ok(
        "SET_VRING_NUM(0, 64) owned",
        raw(VHOST_SET_VRING_NUM, &state_bytes(0, 64), 0),
    );
    r.ok("SET_STATUS(0) owned", raw(VHOST_VDPA_SET_STATUS, &[0], 0));
    r
}

/// The vhost-vdpa character device of the vDPA device bound to
/// `vhost_vdpa`.
fn find_vhost_vdpa() -> Result<PathBuf, String> {
    let bus = "/sys/bus/vdpa/devices";
    let dir = std::fs::read_dir(bus).ctx(bus)?;
    for e in dir.flatten() {
        let p = e.path();
        let bound = std::fs::read_link(p.join("driver"))
            .ok()
            .and_then(|d| d.file_name().map(|n| n == "vhost_vdpa"))
            .unwrap_or(false);
        if !bound {
            continue;
        }
        for c in std::fs::read_dir(&p).ctx("vdpa device")?.flatten() {
            let name = c.file_name().to_string_lossy().into_owned();
            if name.starts_with("vhost-vdpa-") {
                return Ok(PathBuf::from("/dev").join(name));
            }
        }
    }
    Err("no vdpa device bound to vhost_vdpa (see tests/vm/bridge.sh)".into())
}

/// The records of every case on both sides, with the bridge on transport
/// `t`; then [`pre_owner`] on fresh openings.
fn pass(inst: &Inst, path: &std::path::Path, t: Transport) -> Result<Vec<(Rec, Rec)>, String> {
    let ctx = Rings {
        mem: DmaMemory::new(RING_STRIDE as usize * 4).ctx("ring memory")?,
    };
    let mut out = Vec::new();
    {
        let vdpa = VhostVdpa::open(path).ctx("open vhost-vdpa")?;
        let mdev = inst.open(IommuKind::Type1)?;
        mdev.set_transport(t);
        for (_, f) in CASES {
            out.push((f(Side::Vdpa(&vdpa), &ctx), f(Side::Mdev(&mdev), &ctx)));
        }
        let _ = vdpa.set_status(0);
        let _ = mdev.set_status(0);
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .ctx("open vhost-vdpa")?;
    let v = pre_owner(&|code, p, n| raw_ioctl(&file, code, p, n));
    drop(file);
    let mdev = inst.open(IommuKind::Type1)?;
    mdev.set_transport(t);
    let m = pre_owner(&|code, p, n| raw_mdev(&mdev, code, p, n));
    out.push((v, m));
    Ok(out)
}

/// How the outcomes of one case compare.
enum Verdict {
    Agree,
    Listed(Vec<String>),
    Unlisted(Vec<String>),
}

fn compare(case: &str, v: &Rec, m: &Rec, used: &mut [bool]) -> Verdict {
    if v.0.len() != m.0.len() {
        return Verdict::Unlisted(vec![format!(
            "{} steps on vhost-vdpa, {} on the bridge: {v:?} / {m:?}",
            v.0.len(),
            m.0.len()
        )]);
    }
    let (mut listed, mut unlisted) = (Vec::new(), Vec::new());
    for ((sv, ov), (sm, om)) in v.0.iter().zip(&m.0) {
        if sv != sm {
            unlisted.push(format!("step {sv:?} against {sm:?}"));
            continue;
        }
        if ov == om {
            continue;
        }
        let line = format!("{sv}: vhost-vdpa {ov}, bridge {om}");
        let k = KNOWN
            .iter()
            .position(|k| k.case == case && k.step == sv && k.vdpa == ov && k.bridge == om);
        match k {
            Some(i) => {
                used[i] = true;
                listed.push(format!("{line} [{:?}]", KNOWN[i].why));
            }
            None => unlisted.push(line),
        }
    }
    if !unlisted.is_empty() {
        Verdict::Unlisted(unlisted)
    } else if !listed.is_empty() {
        Verdict::Listed(listed)
    } else {
        Verdict::Agree
    }
}

/// The differential test.
pub fn differential(env: &Env) -> TestResult {
    let path = find_vhost_vdpa()?;
    let inst = Inst::create(env)?;
    let t0 = Instant::now();
    let ioctl = pass(&inst, &path, Transport::Ioctl)?;
    let region = pass(&inst, &path, Transport::Region)?;
    let names: Vec<&str> = CASES.iter().map(|(n, _)| *n).chain(["pre_owner"]).collect();
    // The reasons first: the last lines are the verdict.
    let mut reasons: Vec<Why> = Vec::new();
    for k in KNOWN {
        if !reasons.contains(&k.why) {
            reasons.push(k.why);
            println!("DIFF reason {:?}: {}", k.why, k.why.text());
        }
    }
    // Every step of every case, not only the differing ones.
    let verbose = std::env::var_os("VHOST_MDEV_DIFF_VERBOSE").is_some();
    let mut used = vec![false; KNOWN.len()];
    let mut bad = Vec::new();
    let (mut agree, mut listed) = (0, 0);
    for (i, name) in names.iter().enumerate() {
        let (v, m) = &ioctl[i];
        let (v2, m2) = &region[i];
        if m != m2 {
            let first = m.0.iter().zip(&m2.0).find(|(a, b)| a != b);
            println!("DIFF FAIL {name}: the bridge's transports differ: ioctl/region {first:?}");
            bad.push(format!("{name}: transports differ"));
            continue;
        }
        if v != v2 {
            let first = v.0.iter().zip(&v2.0).find(|(a, b)| a != b);
            println!("DIFF FAIL {name}: vhost-vdpa differs between the passes: {first:?}");
            bad.push(format!("{name}: vhost-vdpa not repeatable"));
            continue;
        }
        if verbose {
            for ((sv, ov), (_, om)) in v.0.iter().zip(&m.0) {
                println!("DIFF   {name}: {sv}: vhost-vdpa {ov}, bridge {om}");
            }
        }
        match compare(name, v, m, &mut used) {
            Verdict::Agree => {
                agree += 1;
                println!("DIFF AGREE {name}: {} steps alike", v.0.len());
            }
            Verdict::Listed(l) => {
                listed += 1;
                println!(
                    "DIFF DIFFER(listed) {name}: {} steps, {} listed: {}",
                    v.0.len(),
                    l.len(),
                    l.join("; ")
                );
            }
            Verdict::Unlisted(u) => {
                println!("DIFF DIFFER(unlisted) {name}: {}", u.join("; "));
                for ((sv, ov), (_, om)) in v.0.iter().zip(&m.0) {
                    eprintln!("  {name}: {sv}: vhost-vdpa {ov}, bridge {om}");
                }
                bad.push(format!("{name}: unlisted difference"));
            }
        }
    }
    for (k, u) in KNOWN.iter().zip(&used) {
        if !u {
            println!(
                "DIFF FAIL stale listing: {} / {}: vhost-vdpa {}, bridge {} no longer seen",
                k.case, k.step, k.vdpa, k.bridge
            );
            bad.push(format!("{}: stale listing {}", k.case, k.step));
        }
    }
    println!(
        "DIFF {} cases: {agree} agree, {listed} differ as listed ({} listed steps, {} reasons), \
         {} failures; {:.2}s",
        names.len(),
        KNOWN.len(),
        reasons.len(),
        bad.len(),
        t0.elapsed().as_secs_f64()
    );
    check!(bad.is_empty(), "{}", bad.join("; "));
    Ok(())
}
