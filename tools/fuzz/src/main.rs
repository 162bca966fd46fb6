// SPDX-License-Identifier: GPL-2.0 OR MIT

//! `vhost-mdev-fuzz`: a structure-aware fuzzer and a lifecycle stress for
//! vhost-mdev instances, run as root inside the test VM.
//!
//! `fuzz` throws seeded, reproducible operations at an open instance:
//! valid requests mutated field by field, random request codes and sizes,
//! ioctls with random argsz/flags/indexes, notify writes at random offsets,
//! random `SET_IRQS`/`IOEVENTFD` arguments, mmap attempts, reads at random
//! offsets and lengths, interleaved with valid bring-ups that move traffic.
//! After every rejected operation the device's status and vring state must
//! be what they were. A failure prints the seed and the last operations.
//!
//! Valid bring-ups alternate split and packed rings when the device offers
//! `VIRTIO_F_RING_PACKED`, and the mutated `SET_VRING_BASE` values include
//! the packed 32-bit encoding (`idx | wrap << 15` in each half).
//!
//! `rings` writes hostile packed rings behind a running driver's back:
//! chains of random descriptors with wrong wrap counters, buffer ids out
//! of range or made available twice, chains without an end, indirect
//! tables inside indirect tables, lengths that overflow, addresses nothing
//! maps; each round must either be served or end in DEVICE_NEEDS_RESET
//! with `ring_errors` counting it, and the instance must carry traffic
//! after a reset.
//!
//! `stress` runs create → open → bring-up → traffic → close → remove cycles
//! and reports the leak figures (locked memory, instance counts, module
//! reference counts, slab totals).

use std::collections::VecDeque;
use std::fs;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use vhost_mdev::driver::{self, NetDriver, NetDriverConfig};
use vhost_mdev::packed::{VRING_PACKED_DESC_F_AVAIL, VRING_PACKED_DESC_F_USED};
use vhost_mdev::sysfs::MdevType;
use vhost_mdev::uapi::*;
use vhost_mdev::{DmaMapper, IommuKind, MdevDevice, Sysfs, VhostBackend};
use vmm_sys_util::eventfd::EventFd;

#[derive(Parser)]
#[command(
    version,
    about = "Fuzz and stress vhost-mdev instances (run as root in a test VM)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Structure-aware fuzzing of one instance, on both IOMMU back ends.
    Fuzz {
        /// Operations per IOMMU back end.
        #[arg(long, default_value_t = 50_000)]
        ops: u64,
        /// Seed, decimal or 0x-hex (default: from the clock; printed
        /// either way).
        #[arg(long, value_parser = parse_seed)]
        seed: Option<u64>,
        /// Stop after this many seconds per back end, whatever the count.
        #[arg(long, default_value_t = 600)]
        max_seconds: u64,
    },
    /// Hostile packed rings on a running device, on both IOMMU back ends.
    Rings {
        /// Rounds (one bring-up and one hostile ring write each) per IOMMU
        /// back end.
        #[arg(long, default_value_t = 300)]
        rounds: u64,
        /// Seed, decimal or 0x-hex (default: from the clock; printed
        /// either way).
        #[arg(long, value_parser = parse_seed)]
        seed: Option<u64>,
    },
    /// Several threads on one open device while traffic runs: requests,
    /// kicks, resets, IRQ eventfd swaps, DMA map/unmap; then it must still
    /// work.
    Races {
        /// Seconds per IOMMU back end.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
    /// Opens an instance, attaches the request IRQ, and closes the device
    /// when the kernel asks for it (for remove/rmmod-while-open tests).
    Hold {
        /// The instance.
        uuid: uuid::Uuid,
        /// Open through iommufd instead of a type1 container.
        #[arg(long)]
        iommufd: bool,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// create → open → bring-up → traffic → close → remove, N times.
    Stress {
        /// Cycles.
        #[arg(long, default_value_t = 1000)]
        cycles: u64,
        /// Frames per cycle.
        #[arg(long, default_value_t = 4)]
        frames: u64,
    },
}

/// A seed as printed (`0x...`) or in decimal.
fn parse_seed(s: &str) -> Result<u64, String> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("{s:?}: {e}"))
}

/// xorshift64*: small, fast and reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// "Interesting" integers: boundaries more often than uniform ones.
    fn interesting(&mut self) -> u64 {
        match self.below(10) {
            0 => 0,
            1 => 1,
            2 => u64::MAX,
            3 => u32::MAX as u64,
            4 => self.pick(&[2, 3, 255, 256, 1023, 1024, 1025, 4096, 32768, 65535, 65536]),
            5 => 1 << self.below(64),
            6 => (1 << self.below(64)) - 1,
            _ => self.next(),
        }
    }
}

/// What must not change when an operation is rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
struct State {
    /// The driver-visible status, without the device's NEEDS_RESET bit
    /// (which a worker may set at any time after a bad DRIVER_OK).
    status: u8,
    /// Every queue's base.
    bases: Vec<u32>,
}

fn snapshot(dev: &MdevDevice, nvqs: u32) -> Result<State, String> {
    let raw = |req: u64, payload: &[u8]| {
        // The ioctl transport: it leaves the message slot alone.
        vhost_mdev::backend::ioctl_request(dev.vfio().file(), req, payload)
            .map_err(|e| format!("snapshot: {e}"))
    };
    let st = raw(VHOST_VDPA_GET_STATUS, &[])?;
    let mut bases = Vec::new();
    for q in 0..nvqs {
        let mut p = [0u8; 8];
        p[..4].copy_from_slice(&q.to_ne_bytes());
        let r = raw(VHOST_GET_VRING_BASE, &p)?;
        bases.push(u32::from_ne_bytes([r[4], r[5], r[6], r[7]]));
    }
    Ok(State {
        status: st.first().copied().unwrap_or(0) & !0x40,
        bases,
    })
}

/// Valid requests with their payloads, to be mutated.
fn valid_request(rng: &mut Rng, nvqs: u32, features: u64) -> (u64, u32, Vec<u8>) {
    let q = rng.below(u64::from(nvqs)) as u32;
    let state = |idx: u32, num: u32| {
        let mut p = idx.to_ne_bytes().to_vec();
        p.extend_from_slice(&num.to_ne_bytes());
        p
    };
    match rng.below(15) {
        0 => (VHOST_GET_FEATURES, 1, vec![]),
        1 => (VHOST_SET_FEATURES, 0, features.to_ne_bytes().to_vec()),
        2 => (VHOST_VDPA_GET_STATUS, 1, vec![]),
        3 => (
            VHOST_VDPA_SET_STATUS,
            0,
            vec![rng.pick(&[0u8, 1, 3, 11, 15, 0x80])],
        ),
        4 => (VHOST_VDPA_GET_CONFIG, 1, state(0, 12)),
        5 => (VHOST_VDPA_SET_CONFIG, 0, {
            let mut p = state(0, 6);
            p.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
            p
        }),
        6 => (VHOST_SET_VRING_NUM, 0, state(q, 256)),
        7 => (VHOST_SET_VRING_BASE, 0, state(q, packed_base(rng))),
        8 => (VHOST_GET_VRING_BASE, 1, state(q, 0)),
        9 => (VHOST_VDPA_SET_VRING_ENABLE, 0, state(q, 1)),
        10 => (VHOST_SET_VRING_ADDR, 0, {
            let mut p = q.to_ne_bytes().to_vec();
            p.extend_from_slice(&0u32.to_ne_bytes());
            for a in [0x1000_0000u64, 0x1000_2000, 0x1000_1000, 0] {
                p.extend_from_slice(&a.to_ne_bytes());
            }
            p
        }),
        11 => (VHOST_VDPA_SUSPEND, 0, vec![]),
        12 => (VHOST_VDPA_RESUME, 0, vec![]),
        // Ring user addresses: usually nowhere mapped in this process, and
        // kernel addresses too; the device must fault cleanly on them.
        13 => (VHOST_VFIO_SET_VRING_HVA, 0, {
            let mut p = q.to_ne_bytes().to_vec();
            p.extend_from_slice(&0u32.to_ne_bytes());
            let base = rng.pick(&[0x3000_0000_0000u64, 0xffff_8880_0000_0000, 0x1000, 0]);
            for a in [base, base + 0x2000, base + 0x1000, 0] {
                p.extend_from_slice(&a.to_ne_bytes());
            }
            p
        }),
        _ => (VHOST_VDPA_GET_VQS_COUNT, 1, vec![]),
    }
}

/// A vring base: 0 (split), the packed initial one, or a packed encoding
/// of random indexes and wrap counters (in range for 256 entries or not).
fn packed_base(rng: &mut Rng) -> u32 {
    let half = |rng: &mut Rng| -> u32 {
        let idx = rng.pick(&[0u32, 1, 255, 256, 0x7fff]) & 0x7fff;
        idx | (rng.below(2) as u32) << 15
    };
    match rng.below(4) {
        0 => 0,
        1 => 1 << 15 | 1 << 31,
        _ => half(rng) | half(rng) << 16,
    }
}

/// Mutates one field of a request.
fn mutate(rng: &mut Rng, req: &mut (u64, u32, Vec<u8>)) {
    let (code, flags, payload) = req;
    match rng.below(6) {
        0 => *flags = rng.below(4) as u32,
        1 if !payload.is_empty() => {
            // One 32- or 64-bit field (or a byte) replaced.
            let at = rng.below(payload.len() as u64) as usize;
            let v = rng.interesting().to_ne_bytes();
            let w = rng.pick(&[1usize, 4, 8]).min(payload.len() - at);
            payload[at..at + w].copy_from_slice(&v[..w]);
        }
        2 => payload.truncate(rng.below(payload.len() as u64 + 1) as usize),
        3 => {
            let extra = rng.below(16) as usize;
            payload.extend(rng.bytes(extra));
        }
        4 => *code ^= 1 << rng.below(32),
        _ => *code = rng.interesting(),
    }
}

/// One fuzzing operation; returns its description and whether it was
/// rejected (an error), or `Err` for a harness failure.
fn op(rng: &mut Rng, dev: &MdevDevice, nvqs: u32, features: u64, efd: &EventFd) -> (String, bool) {
    let page = vhost_mdev::device::page_size();
    // Offsets from region info; `beyond` is where a third region would
    // start at the same stride: no region is there.
    let r1 = dev.regions().notify.offset;
    let stride = r1.abs_diff(dev.regions().msg.offset).max(1);
    let beyond = r1.saturating_add(stride);
    match rng.below(100) {
        // A valid request over the message region, mutated or not.
        0..=34 => {
            let mut req = valid_request(rng, nvqs, features);
            if rng.chance(70) {
                mutate(rng, &mut req);
            }
            let (code, flags, payload) = req;
            let r = dev.send(code, flags, &payload);
            (
                format!("send({code:#x}, {flags}, {payload:02x?}) -> {r:?}"),
                r.is_err(),
            )
        }
        // A raw message: header size disagreeing with the write, oversize.
        35..=44 => {
            let size = rng.pick(&[0u32, 1, 7, 8, 9, 40, 4080, 4081, u32::MAX]);
            let len = rng.pick(&[0usize, 15, 16, 17, 24, 56, 4096, 4097]);
            let mut m = vec![0u8; len.max(16)];
            m[..8].copy_from_slice(&rng.interesting().to_ne_bytes());
            m[8..12].copy_from_slice(&(rng.below(4) as u32).to_ne_bytes());
            m[12..16].copy_from_slice(&size.to_ne_bytes());
            m.truncate(len);
            let r = dev.msg_write(rng.pick(&[0, 0, 0, 1, 8, 4096, u64::MAX >> 24]), &m);
            (
                format!("msg_write(len {len}, size {size}) -> {r:?}"),
                r.is_err(),
            )
        }
        // Reads at random offsets and lengths.
        45..=52 => {
            let off = rng.pick(&[0, 0, 1, 16, 4096, r1, r1 + page, beyond, u64::MAX >> 1]);
            let len = rng.pick(&[0usize, 1, 16, 17, 24, 36, 4096, 8192]);
            let mut buf = vec![0u8; len];
            let r = dev.vfio().read_at(off, &mut buf);
            (format!("read_at({off:#x}, {len}) -> {r:?}"), r.is_err())
        }
        // Notify writes at random offsets with random values.
        53..=62 => {
            let q = rng.below(u64::from(nvqs) + 2);
            let off = match rng.below(4) {
                0 => r1 + q * page,
                1 => r1 + q * page + rng.below(page),
                2 => r1 + rng.interesting() % stride,
                _ => rng.interesting(),
            };
            let len = rng.pick(&[0usize, 1, 2, 2, 2, 4, 8]);
            let mut v = rng.bytes(len);
            if len == 2 && rng.chance(50) {
                v.copy_from_slice(&(q as u16).to_ne_bytes());
            }
            let r = dev.notify_raw(off.wrapping_sub(r1), &v);
            (format!("notify(+{off:#x}, {v:02x?}) -> {r:?}"), r.is_err())
        }
        // SET_IRQS with random arguments.
        63..=72 => {
            let index = rng.pick(&[0u32, 0, 1, 2, 3, 9, u32::MAX]);
            let any = rng.next() as u32;
            let flags = rng.pick(&[
                0x24u32, 0x21, 0x22, 0x04, 0x01, 0x02, 0x08, 0x10, 0x20, 0x44, any,
            ]);
            let start = rng.pick(&[0u32, 0, 1, nvqs, u32::MAX]);
            let count = rng.pick(&[0u32, 1, 2, nvqs, nvqs + 1, u32::MAX]);
            let fds: Vec<u8> = (0..count.min(8))
                .flat_map(|_| {
                    let fd = rng.pick(&[efd.as_raw_fd(), -1, -2, 0, 1, 9999]);
                    fd.to_ne_bytes()
                })
                .collect();
            let r = dev.vfio().set_irqs_raw(index, flags, start, count, &fds);
            (
                format!("set_irqs({index}, {flags:#x}, {start}, {count}) -> {r:?}"),
                r.is_err(),
            )
        }
        // IOEVENTFD with random arguments.
        73..=80 => {
            let q = rng.below(u64::from(nvqs) + 1);
            let any_off = rng.interesting();
            let off = rng.pick(&[r1 + q * page, r1 + q * page + 2, 0, beyond, any_off]);
            let any = rng.next() as u32;
            let flags = rng.pick(&[2u32, 2, 1, 4, 8, 0, 3, any]);
            let data = if rng.chance(70) { q } else { rng.interesting() };
            let fd = rng.pick(&[efd.as_raw_fd(), -1, 0, 9999]);
            let r = dev.vfio().ioeventfd_raw(off, flags, data, fd);
            (
                format!("ioeventfd({off:#x}, {flags:#x}, {data}, {fd}) -> {r:?}"),
                r.is_err(),
            )
        }
        // mmap attempts.
        81..=83 => {
            let off = rng.pick(&[0, r1, r1 + page, beyond]);
            let len = rng.pick(&[page as usize, 4096, 8192, 1]);
            let r = dev.vfio().try_mmap(off, len);
            (format!("mmap({off:#x}, {len}) -> {r:?}"), r.is_err())
        }
        // Ioctls with random argsz/flags/indexes, VFIO's and vhost's.
        84..=96 => {
            let code = match rng.below(4) {
                0 => rng.pick(&[
                    VFIO_DEVICE_GET_INFO(),
                    VFIO_DEVICE_GET_REGION_INFO(),
                    VFIO_DEVICE_GET_IRQ_INFO(),
                    VFIO_DEVICE_SET_IRQS(),
                    VFIO_DEVICE_IOEVENTFD(),
                ]),
                1 => valid_request(rng, nvqs, features).0,
                // Random vhost codes: vmm-sys-util's _IOC.
                2 => vmm_sys_util::ioctl::ioctl_expr(
                    rng.below(4) as u32,
                    VHOST_VIRTIO,
                    rng.below(0x90) as u32,
                    rng.below(64) as u32,
                ),
                _ => rng.interesting() & 0xffff_ffff,
            };
            // A large buffer, so that no argsz makes the kernel read or
            // write outside it: argsz is capped by what VFIO accepts.
            let mut buf = rng.bytes(65536);
            let argsz = rng.pick(&[0u32, 4, 8, 15, 16, 20, 24, 32, 36, 4096, u32::MAX]);
            buf[..4].copy_from_slice(&argsz.to_ne_bytes());
            if rng.chance(50) {
                // Plausible flags/index fields.
                buf[4..8].copy_from_slice(&(rng.below(8) as u32).to_ne_bytes());
                buf[8..12].copy_from_slice(&(rng.below(4) as u32).to_ne_bytes());
            }
            // SAFETY: `buf` is 64 KiB, more than any request here reads or
            // writes for these argsz values, and outlives the call.
            let r = unsafe { dev.vfio().ioctl_ptr(code, buf.as_mut_ptr()) };
            (
                format!("ioctl({code:#x}, argsz {argsz}) -> {r:?}"),
                r.is_err(),
            )
        }
        // VFIO_DEVICE_RESET now and then.
        _ => {
            let r = dev.vfio_reset();
            (format!("VFIO_DEVICE_RESET -> {r:?}"), r.is_err())
        }
    }
}

fn first_type(sysfs: &Sysfs) -> Result<MdevType, String> {
    sysfs
        .vhost_types()
        .map_err(|e| e.to_string())?
        .into_iter()
        .next()
        .ok_or_else(|| "no vfio-vhost type".to_string())
}

/// Whether the device offers packed rings.
fn offers_packed(dev: &MdevDevice) -> bool {
    dev.get_features()
        .is_ok_and(|f| f & (1 << VIRTIO_F_RING_PACKED) != 0)
}

/// A valid bring-up that moves a few frames; the driver resets on drop.
/// Packed rings every other time when the device offers them.
fn traffic(dev: &MdevDevice, frames: u64) -> Result<(), String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let packed = N.fetch_add(1, Ordering::Relaxed) % 2 == 1 && offers_packed(dev);
    let cfg = NetDriverConfig {
        timeout: Duration::from_secs(10),
        packed,
        ..Default::default()
    };
    let mut drv = NetDriver::start(dev, cfg).map_err(|e| format!("bring-up: {e}"))?;
    driver::ping(&mut drv, frames, 0).map_err(|e| format!("ping: {e}"))?;
    drv.stop().map_err(|e| format!("stop: {e}"))
}

fn fuzz_one(kind: IommuKind, seed: u64, ops: u64, max: Duration) -> Result<(u64, u64), String> {
    let sysfs = Sysfs::system();
    let ty = first_type(&sysfs)?;
    let uuid = sysfs.create(&ty, None).map_err(|e| e.to_string())?;
    let res = (|| {
        let dev = MdevDevice::open(&sysfs, &uuid, kind).map_err(|e| format!("open: {e}"))?;
        let nvqs = dev.get_vqs_count().map_err(|e| e.to_string())?;
        let features = dev.get_features().map_err(|e| e.to_string())?;
        let efd = EventFd::new(0).map_err(|e| e.to_string())?;
        let mut rng = Rng(seed | 1);
        let mut last: VecDeque<String> = VecDeque::new();
        let (mut rejected, mut n) = (0u64, 0u64);
        let t0 = Instant::now();
        let mut before = snapshot(&dev, nvqs)?;
        while n < ops && t0.elapsed() < max {
            if n % 5000 == 4999 {
                // Back to a known state, then traffic while running.
                dev.vfio_reset().map_err(|e| format!("reset: {e}"))?;
                traffic(&dev, 4).map_err(|e| {
                    format!(
                        "valid traffic after {n} ops (seed {seed:#x}) failed: {e}\nlast: {last:#?}"
                    )
                })?;
                before = snapshot(&dev, nvqs)?;
            }
            let (what, was_rejected) = op(&mut rng, &dev, nvqs, features, &efd);
            n += 1;
            if last.len() == 8 {
                last.pop_front();
            }
            last.push_back(what);
            let after = snapshot(&dev, nvqs)?;
            if was_rejected {
                rejected += 1;
                if after != before {
                    return Err(format!(
                        "{kind}: a rejected operation changed the device (seed {seed:#x}, op {n}):\n  before {before:?}\n  after  {after:?}\nlast operations:\n  {}",
                        last.iter().cloned().collect::<Vec<_>>().join("\n  ")
                    ));
                }
            }
            before = after;
        }
        // Still usable after all that.
        dev.vfio_reset().map_err(|e| format!("final reset: {e}"))?;
        traffic(&dev, 8).map_err(|e| format!("traffic after fuzzing (seed {seed:#x}): {e}"))?;
        Ok((n, rejected))
    })();
    let removed = sysfs.remove(&uuid).map_err(|e| format!("remove: {e}"));
    let r = res?;
    removed?;
    Ok(r)
}

/// The ring flags that make a packed descriptor available in the lap of
/// wrap counter `wrap`.
fn avail_bits(wrap: bool) -> u16 {
    if wrap {
        VRING_PACKED_DESC_F_AVAIL
    } else {
        VRING_PACKED_DESC_F_USED
    }
}

/// Bits of packed descriptor flags (virtio-bindings', through the library).
const F_NEXT: u16 = vhost_mdev::virtq::VRING_DESC_F_NEXT;
const F_WRITE: u16 = vhost_mdev::virtq::VRING_DESC_F_WRITE;
const F_INDIRECT: u16 = vhost_mdev::virtq::VRING_DESC_F_INDIRECT;
const F_BOTH: u16 = VRING_PACKED_DESC_F_AVAIL | VRING_PACKED_DESC_F_USED;

/// An address for a hostile descriptor: a buffer of the queue, nothing
/// mapped, or the top of the address space.
fn hostile_addr(rng: &mut Rng, buf: u64) -> u64 {
    match rng.below(6) {
        0 => 0x7_0000_0000,
        1 => u64::MAX - rng.below(64),
        2 => rng.interesting(),
        _ => buf + rng.below(256),
    }
}

/// A length for a hostile descriptor.
fn hostile_len(rng: &mut Rng) -> u32 {
    match rng.below(6) {
        0 => 0,
        1 => 0x8000_0000,
        2 => u32::MAX,
        3 => rng.interesting() as u32,
        _ => 12 + rng.below(1500) as u32,
    }
}

/// One round of `rings`: a packed bring-up, some good frames (to move the
/// wrap counters), then a hostile chain written at the next available
/// slot of TX (or RX), the first descriptor's flags last, and a kick.
/// Returns a description and whether the device asked for a reset.
fn ring_round(dev: &MdevDevice, rng: &mut Rng) -> Result<(String, bool), String> {
    let size = rng.pick(&[2u16, 4, 8, 16]);
    let indirect = rng.chance(50);
    let cfg = NetDriverConfig {
        queue_size: size,
        indirect,
        packed: true,
        max_frame: 9000,
        timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let mut drv = NetDriver::start(dev, cfg).map_err(|e| format!("packed bring-up: {e}"))?;
    let good = rng.below(3 * u64::from(size));
    driver::ping(&mut drv, good, 0).map_err(|e| format!("{good} good frames: {e}"))?;
    let on_rx = rng.chance(20);
    let qi: u16 = if on_rx { 0 } else { 1 };
    let q = drv.queue(qi).as_packed().ok_or("the queue is not packed")?;
    let l = *q.layout();
    let m = q.memory();
    let buf = q.buf_iova(0).map_err(|e| e.to_string())?;
    let table = q.buf_iova(1).map_err(|e| e.to_string())?;
    // An indirect table in buffer 1: a few entries, maybe one indirect.
    let entries = 1 + rng.below(4) as usize;
    for i in 0..entries {
        let mut e = [0u8; 16];
        e[..8].copy_from_slice(&hostile_addr(rng, buf).to_le_bytes());
        e[8..12].copy_from_slice(&hostile_len(rng).to_le_bytes());
        let mut f = if on_rx { F_WRITE } else { 0 };
        if rng.chance(25) {
            f |= F_INDIRECT;
        }
        if rng.chance(10) {
            f ^= F_WRITE;
        }
        e[14..].copy_from_slice(&f.to_le_bytes());
        q.write_buf(1, i * 16, &e).map_err(|e| e.to_string())?;
    }
    // On RX the driver's posted buffers fill the ring: the chain replaces
    // the next ones (the device has not consumed them).
    let first = if on_rx { q.used_pos() } else { q.avail_pos() };
    let n = match rng.below(4) {
        0 => usize::from(size) + 1, // more than the ring: no end
        _ => 1 + rng.below(3) as usize,
    };
    let n = n.min(usize::from(size));
    let no_end = rng.chance(15);
    let id = match rng.below(5) {
        0 => size + rng.below(100) as u16,
        _ => rng.below(u64::from(size)) as u16,
    };
    let wrap_fault = rng.below(8);
    let mut what = format!(
        "size {size}, {} slot {:?}, {n} descriptors, id {id}, indirect {indirect}",
        if on_rx { "RX" } else { "TX" },
        first
    );
    let mut pos = first;
    let mut head = 0u16;
    for i in 0..n {
        let last = i + 1 == n;
        let mut f = if on_rx { F_WRITE } else { 0 };
        if !last || no_end {
            f |= F_NEXT;
        }
        let use_table = rng.chance(20);
        let (addr, len) = if use_table {
            f |= F_INDIRECT;
            let len = rng.pick(&[16u32, 32, 48, 64, 17, 0, 16 * 2048]);
            (table, len)
        } else {
            (hostile_addr(rng, buf), hostile_len(rng))
        };
        if rng.chance(5) {
            f ^= F_WRITE;
        }
        // The availability bits: right, or a bad wrap counter.
        let bits = match wrap_fault {
            0 => F_BOTH,
            1 => 0,
            2 => avail_bits(!pos.wrap),
            _ => avail_bits(pos.wrap),
        };
        // A buffer id per descriptor (the last one's counts); now and
        // then one that differs.
        let did = if rng.chance(10) {
            rng.below(u64::from(size)) as u16
        } else {
            id
        };
        let off = l.desc_entry(pos.idx);
        let w = |o: usize, v: &[u8]| m.write(off + o, v).map_err(|e| e.to_string());
        w(0, &addr.to_le_bytes())?;
        w(8, &len.to_le_bytes())?;
        w(12, &did.to_le_bytes())?;
        if i == 0 {
            head = f | bits;
        } else {
            w(14, &(f | bits).to_le_bytes())?;
        }
        what += &format!("; [{addr:#x} {len:#x} id {did} flags {:#x}]", f | bits);
        pos = pos.advance(1, l.size);
    }
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    m.store(l.desc_entry(first.idx) + 14, head.to_le())
        .map_err(|e| e.to_string())?;
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    // A second chain with the same id right after (a buffer made
    // available twice), now and then.
    if !on_rx && n < usize::from(size) && rng.chance(20) {
        let off = l.desc_entry(pos.idx);
        m.store(off, buf.to_le()).map_err(|e| e.to_string())?;
        m.store(off + 8, 100u32.to_le())
            .map_err(|e| e.to_string())?;
        m.store(off + 12, id.to_le()).map_err(|e| e.to_string())?;
        m.store(off + 14, avail_bits(pos.wrap).to_le())
            .map_err(|e| e.to_string())?;
        what += "; then the same id again";
    }
    let _ = drv.kick(qi);
    if on_rx {
        // RX buffers are consumed by a frame.
        let _ = drv.send(&vec![0x5a; 1514]);
        let _ = drv.kick(1);
    }
    // The device works in its own time: give it a moment, then SUSPEND
    // (which waits for the worker): what the status says then is final
    // until the reset.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(30) {
        let s = dev.get_status().map_err(|e| format!("GET_STATUS: {e}"))?;
        if s & VIRTIO_CONFIG_S_NEEDS_RESET != 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = dev.suspend();
    let status = dev.get_status().map_err(|e| format!("GET_STATUS: {e}"))?;
    drop(drv);
    Ok((what, status & VIRTIO_CONFIG_S_NEEDS_RESET != 0))
}

fn ring_errors(sysfs: &Sysfs, uuid: &uuid::Uuid) -> Result<u64, String> {
    let inst = sysfs.instance(uuid).map_err(|e| e.to_string())?;
    let st = sysfs.stats(&inst).map_err(|e| e.to_string())?;
    st.iter()
        .find(|(k, _)| k == "ring_errors")
        .and_then(|(_, v)| v.trim().parse().ok())
        .ok_or_else(|| "no stats/ring_errors".into())
}

fn rings_one(kind: IommuKind, seed: u64, rounds: u64) -> Result<String, String> {
    let sysfs = Sysfs::system();
    let ty = first_type(&sysfs)?;
    let uuid = sysfs.create(&ty, None).map_err(|e| e.to_string())?;
    let res = (|| -> Result<String, String> {
        let dev = MdevDevice::open(&sysfs, &uuid, kind).map_err(|e| format!("open: {e}"))?;
        if !offers_packed(&dev) {
            return Err("the device does not offer VIRTIO_F_RING_PACKED".into());
        }
        let mut rng = Rng(seed | 1);
        let (mut resets, mut served) = (0u64, 0u64);
        let t0 = Instant::now();
        for r in 0..rounds {
            let before = ring_errors(&sysfs, &uuid)?;
            let (what, reset) = ring_round(&dev, &mut rng)
                .map_err(|e| format!("round {r} (seed {seed:#x}): {e}"))?;
            let after = ring_errors(&sysfs, &uuid)?;
            // A device error is counted once; an accepted chain is not.
            let want = before + u64::from(reset);
            if after != want {
                return Err(format!(
                    "round {r} (seed {seed:#x}): NEEDS_RESET {reset}, ring_errors {before} -> {after}: {what}"
                ));
            }
            if reset {
                resets += 1;
            } else {
                served += 1;
            }
            if r % 16 == 15 {
                traffic(&dev, 2).map_err(|e| {
                    format!("traffic after round {r} (seed {seed:#x}): {e}; last: {what}")
                })?;
            }
        }
        dev.vfio_reset().map_err(|e| format!("final reset: {e}"))?;
        traffic(&dev, 4).map_err(|e| format!("traffic after the rounds: {e}"))?;
        traffic(&dev, 4).map_err(|e| format!("traffic after the rounds: {e}"))?;
        Ok(format!(
            "{rounds} rounds in {:.1} s: {resets} ended in NEEDS_RESET (each counted in ring_errors), \
             {served} served; then traffic on split and packed rings",
            t0.elapsed().as_secs_f64()
        ))
    })();
    let removed = sysfs.remove(&uuid).map_err(|e| format!("remove: {e}"));
    let r = res?;
    removed?;
    Ok(r)
}

fn races_one(kind: IommuKind, secs: u64) -> Result<String, String> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let sysfs = Sysfs::system();
    let ty = first_type(&sysfs)?;
    let uuid = sysfs.create(&ty, None).map_err(|e| e.to_string())?;
    let res = (|| -> Result<String, String> {
        let dev = MdevDevice::open(&sysfs, &uuid, kind).map_err(|e| format!("open: {e}"))?;
        let stop = AtomicBool::new(false);
        let counts: [AtomicU64; 6] = Default::default();
        let end = Instant::now() + Duration::from_secs(secs);
        std::thread::scope(|s| {
            let (dev, stop, counts) = (&dev, &stop, &counts);
            // Traffic: bring-ups and pings, failing as the others interfere.
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let cfg = NetDriverConfig {
                        timeout: Duration::from_millis(300),
                        ..Default::default()
                    };
                    if let Ok(mut drv) = NetDriver::start(dev, cfg) {
                        let _ = driver::ping(&mut drv, 16, 0);
                    }
                    counts[0].fetch_add(1, Ordering::Relaxed);
                }
            });
            // Requests on the ioctl transport.
            s.spawn(move || {
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let _ = dev.get_status();
                    let _ = dev.get_vring_base(i % 2);
                    let _ = dev.set_vring_enable(i % 2, !i.is_multiple_of(3));
                    let _ = dev.get_config(0, 12);
                    i = i.wrapping_add(1);
                    counts[1].fetch_add(1, Ordering::Relaxed);
                }
            });
            // Kicks through region 1.
            s.spawn(move || {
                let mut i = 0u16;
                while !stop.load(Ordering::Relaxed) {
                    let _ = dev.notify(i % 2);
                    i = i.wrapping_add(1);
                    counts[2].fetch_add(1, Ordering::Relaxed);
                }
            });
            // IRQ eventfd swaps while the worker signals them.
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let (Ok(a), Ok(b)) = (EventFd::new(0), EventFd::new(0)) {
                        let _ = dev.set_vq_irqs(0, &[a.as_raw_fd(), b.as_raw_fd()]);
                        let _ = dev.vfio().set_irq_eventfds(1, 0, &[a.as_raw_fd()]);
                        let _ = dev.detach_irq(0);
                    }
                    counts[3].fetch_add(1, Ordering::Relaxed);
                }
            });
            // Resets and status changes.
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(7));
                    let _ = dev.vfio_reset();
                    let _ = dev.set_status(0);
                    counts[4].fetch_add(1, Ordering::Relaxed);
                }
            });
            // DMA map/unmap, of scratch memory and of the rings' IOVAs.
            s.spawn(move || {
                let len = 1usize << 20;
                let mut scratch = vec![0u8; len];
                let base = 0x1000_0000u64; // the driver's default iova_base
                while !stop.load(Ordering::Relaxed) {
                    // SAFETY: `scratch` outlives the mapping (unmapped in the
                    // same iteration, before it is freed).
                    unsafe {
                        let _ = dev.map_dma(0x8000_0000, len as u64, scratch.as_mut_ptr() as u64);
                    }
                    let _ = dev.unmap_dma(0x8000_0000, len as u64);
                    if counts[5].load(Ordering::Relaxed) % 50 == 49 {
                        // Pull the rings out from under the device.
                        let _ = dev.unmap_dma(base, 1 << 24);
                    }
                    counts[5].fetch_add(1, Ordering::Relaxed);
                }
            });
            while Instant::now() < end {
                std::thread::sleep(Duration::from_millis(100));
            }
            stop.store(true, Ordering::Relaxed);
        });
        // The device still works after a reset.
        dev.vfio_reset().map_err(|e| format!("final reset: {e}"))?;
        traffic(&dev, 8).map_err(|e| format!("traffic after the races: {e}"))?;
        let c: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        Ok(format!(
            "{secs} s: {} bring-ups, {} request rounds, {} kicks, {} IRQ swaps, {} resets, {} map/unmaps",
            c[0], c[1], c[2], c[3], c[4], c[5]
        ))
    })();
    let removed = sysfs.remove(&uuid).map_err(|e| format!("remove: {e}"));
    let r = res?;
    removed?;
    Ok(r)
}

fn hold(uuid: uuid::Uuid, kind: IommuKind, timeout: u64) -> Result<String, String> {
    let sysfs = Sysfs::system();
    let dev = MdevDevice::open(&sysfs, &uuid, kind).map_err(|e| format!("open: {e}"))?;
    let req = EventFd::new(0).map_err(|e| e.to_string())?;
    dev.set_req_irq(Some(&req))
        .map_err(|e| format!("request IRQ: {e}"))?;
    // Traffic runs until the kernel asks for the device back.
    let cfg = NetDriverConfig {
        timeout: Duration::from_secs(10),
        ..Default::default()
    };
    let mut drv = NetDriver::start(&dev, cfg).map_err(|e| format!("bring-up: {e}"))?;
    println!("INFO: hold: {uuid} open ({kind}), traffic until the request IRQ");
    let t0 = Instant::now();
    let mut frames = 0u64;
    loop {
        if driver::wait_eventfd(&req, Duration::ZERO).map_err(|e| e.to_string())? {
            break;
        }
        if t0.elapsed() > Duration::from_secs(timeout) {
            return Err(format!(
                "no request IRQ within {timeout} s ({frames} frames moved)"
            ));
        }
        driver::ping(&mut drv, 8, 0).map_err(|e| format!("traffic while held: {e}"))?;
        frames += 8;
    }
    drop(drv);
    drop(dev);
    Ok(format!(
        "{frames} frames moved while held; request IRQ after {:.2} s; device closed",
        t0.elapsed().as_secs_f64()
    ))
}

/// The kB figure of `field` in a /proc file such as /proc/meminfo.
fn proc_kb(path: &str, field: &str) -> u64 {
    fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn refcnt(module: &str) -> String {
    fs::read_to_string(format!("/sys/module/{module}/refcnt"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

fn stress(cycles: u64, frames: u64) -> Result<String, String> {
    let sysfs = Sysfs::system();
    let ty = first_type(&sysfs)?;
    let avail0 = ty.available_instances;
    let (lck0, slab0) = (
        proc_kb("/proc/self/status", "VmLck:"),
        proc_kb("/proc/meminfo", "Slab:"),
    );
    let (ref_core0, ref_net0) = (refcnt("vhost_mdev"), refcnt("vhost_mdev_net"));
    let t0 = Instant::now();
    for c in 0..cycles {
        let kind = if c % 2 == 0 {
            IommuKind::Type1
        } else {
            IommuKind::Iommufd
        };
        let uuid = sysfs
            .create(&ty, None)
            .map_err(|e| format!("cycle {c}: create: {e}"))?;
        let r = MdevDevice::open(&sysfs, &uuid, kind)
            .map_err(|e| format!("cycle {c}: open ({kind}): {e}"))
            .and_then(|dev| traffic(&dev, frames).map_err(|e| format!("cycle {c} ({kind}): {e}")));
        sysfs
            .remove(&uuid)
            .map_err(|e| format!("cycle {c}: remove: {e}"))?;
        r?;
        if c % 100 == 99 {
            println!(
                "INFO: stress: {} cycles, {:.1} s",
                c + 1,
                t0.elapsed().as_secs_f64()
            );
        }
    }
    let ty1 = first_type(&sysfs)?;
    let (lck1, slab1) = (
        proc_kb("/proc/self/status", "VmLck:"),
        proc_kb("/proc/meminfo", "Slab:"),
    );
    let (ref_core1, ref_net1) = (refcnt("vhost_mdev"), refcnt("vhost_mdev_net"));
    let report = format!(
        "{cycles} cycles in {:.1} s; locked_vm {lck0} -> {lck1} kB; available_instances {avail0} -> {}; \
         refcnt vhost_mdev {ref_core0} -> {ref_core1}, vhost_mdev_net {ref_net0} -> {ref_net1}; \
         Slab {slab0} -> {slab1} kB (not asserted: KASAN's quarantine moves it)",
        t0.elapsed().as_secs_f64(),
        ty1.available_instances
    );
    if lck1 != lck0
        || ty1.available_instances != avail0
        || ref_core0 != ref_core1
        || ref_net0 != ref_net1
    {
        return Err(format!("leak figures moved: {report}"));
    }
    Ok(report)
}

/// Prints a PASS or FAIL line for one result; counts it.
fn report(name: &str, r: Result<String, String>, passed: &mut u32, failed: &mut u32) {
    match r {
        Ok(what) => {
            println!("PASS: {name}{what}");
            *passed += 1;
        }
        Err(e) => {
            println!("FAIL: {name}: {e}");
            *failed += 1;
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (mut passed, mut failed) = (0, 0);
    match cli.cmd {
        Cmd::Fuzz {
            ops,
            seed,
            max_seconds,
        } => {
            let seed = seed.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
            println!("INFO: fuzz seed {seed:#x} (rerun: vhost-mdev-fuzz fuzz --seed {seed:#x} --ops {ops})");
            for kind in [IommuKind::Type1, IommuKind::Iommufd] {
                let t0 = Instant::now();
                let r = fuzz_one(kind, seed, ops, Duration::from_secs(max_seconds)).map(|(n, rejected)| {
                    format!(
                        ": {n} operations ({rejected} rejected, state unchanged after each), then traffic ({:.1} s)",
                        t0.elapsed().as_secs_f64()
                    )
                });
                report(&format!("fuzz {kind}"), r, &mut passed, &mut failed);
            }
        }
        Cmd::Rings { rounds, seed } => {
            let seed = seed.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
            println!("INFO: rings seed {seed:#x} (rerun: vhost-mdev-fuzz rings --seed {seed:#x} --rounds {rounds})");
            for kind in [IommuKind::Type1, IommuKind::Iommufd] {
                let r = rings_one(kind, seed, rounds).map(|r| format!(": {r}"));
                report(&format!("rings {kind}"), r, &mut passed, &mut failed);
            }
        }
        Cmd::Races { seconds } => {
            for kind in [IommuKind::Type1, IommuKind::Iommufd] {
                let r = races_one(kind, seconds).map(|r| format!(": {r}; then traffic"));
                report(&format!("races {kind}"), r, &mut passed, &mut failed);
            }
        }
        Cmd::Hold {
            uuid,
            iommufd,
            timeout,
        } => {
            let kind = if iommufd {
                IommuKind::Iommufd
            } else {
                IommuKind::Type1
            };
            let r = hold(uuid, kind, timeout).map(|r| format!(": {r}"));
            report(&format!("hold {kind}"), r, &mut passed, &mut failed);
        }
        Cmd::Stress { cycles, frames } => {
            let r = stress(cycles, frames).map(|r| format!(": {r}"));
            report("stress", r, &mut passed, &mut failed);
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
