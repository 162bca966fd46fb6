// SPDX-License-Identifier: GPL-2.0 OR MIT

//! `vhost-mdev-fuzz`: a structure-aware fuzzer and a lifecycle stress for
//! vhost-mdev instances, run as root inside the test VM.
//!
//! `fuzz` throws operations at an open instance ([`prog`]): valid
//! requests mutated field by field, random request codes and sizes, ioctls
//! with random argsz/flags/indexes, notify writes at random offsets, random
//! `SET_IRQS`/`IOEVENTFD` arguments, mmap attempts, reads at random offsets
//! and lengths, interleaved with valid bring-ups that move traffic. After
//! every rejected operation the device's status and vring state must be
//! what they were. On a kernel with KCOV it is coverage-guided
//! ([`guided`]): operations come in programs, generated or mutated from a
//! corpus (a seed corpus in `tools/fuzz/corpus` first), and a program that
//! reaches PCs of the modules that none before reached (its own, and the
//! device worker's through remote KCOV: [`kcov`]) joins the corpus. A
//! failure is written as a program, shrunk to a reproducer, and printed
//! with the command that replays it (`replay`, `minimize`). `--plain`
//! (and a kernel without KCOV) runs the seeded stream of operations
//! instead; a failure prints the seed and the last operations.
//!
//! `kcov-check` shows that the modules' Rust code is instrumented: the
//! KCOV count moves when a request runs (in Rust functions of the core)
//! and when the sample's worker moves frames (remote coverage).
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

mod guided;
mod kcov;
mod prog;

use std::collections::VecDeque;
use std::fs;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use prog::{gen_op, Ctx, Rng};
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
    /// Structure-aware fuzzing of one instance, on both IOMMU back ends:
    /// coverage-guided when the kernel has KCOV (programs of operations,
    /// a corpus of those that reached new code), else (or with --plain)
    /// a seeded stream of operations.
    Fuzz {
        /// Operations per IOMMU back end (0: no limit).
        #[arg(long, default_value_t = 50_000)]
        ops: u64,
        /// Seed, decimal or 0x-hex (default: from the clock; printed
        /// either way).
        #[arg(long, value_parser = parse_seed)]
        seed: Option<u64>,
        /// Stop after this many seconds per back end, whatever the count.
        #[arg(long, default_value_t = 600)]
        max_seconds: u64,
        /// The seeded stream of operations, without coverage.
        #[arg(long)]
        plain: bool,
        /// Seed corpus: a directory of programs (*.txt), run first.
        #[arg(long)]
        corpus: Option<PathBuf>,
        /// Where to write the programs that reached new code (corpus/),
        /// failures (crashes/) and the PCs reached (cover.txt).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Seconds between progress lines.
        #[arg(long, default_value_t = 30)]
        progress: u64,
        /// Time to shrink a failing program before reporting it.
        #[arg(long, default_value_t = 120)]
        minimize_seconds: u64,
    },
    /// Runs a program (a corpus entry or a reproducer) on a fresh
    /// instance, then checks that the device carries traffic.
    Replay {
        file: PathBuf,
        /// Open through iommufd instead of a type1 container.
        #[arg(long)]
        iommufd: bool,
    },
    /// Shrinks a failing program to a reproducer that fails the same way,
    /// and prints the command that replays it.
    Minimize {
        file: PathBuf,
        /// Open through iommufd instead of a type1 container.
        #[arg(long)]
        iommufd: bool,
        /// The reproducer (default: FILE.min).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Give up shrinking after this many seconds.
        #[arg(long, default_value_t = 300)]
        max_seconds: u64,
    },
    /// Shows that the modules' Rust code is instrumented: KCOV PCs of
    /// requests and of the worker's runs, mapped to the modules' functions.
    KcovCheck,
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

/// The plain stream fuzzer: seeded operations one after the other on one
/// instance, traffic every 5000.
fn fuzz_one(kind: IommuKind, seed: u64, ops: u64, max: Duration) -> Result<(u64, u64), String> {
    let sysfs = Sysfs::system();
    let ty = first_type(&sysfs)?;
    let uuid = sysfs.create(&ty, None).map_err(|e| e.to_string())?;
    let res = (|| {
        let dev = MdevDevice::open(&sysfs, &uuid, kind).map_err(|e| format!("open: {e}"))?;
        let ctx = Ctx::of(&dev)?;
        let efd = EventFd::new(0).map_err(|e| e.to_string())?;
        let mut rng = Rng(seed | 1);
        let mut last: VecDeque<String> = VecDeque::new();
        let (mut rejected, mut n) = (0u64, 0u64);
        let t0 = Instant::now();
        let mut before = snapshot(&dev, ctx.nvqs)?;
        while n < ops && t0.elapsed() < max {
            if n % 5000 == 4999 {
                // Back to a known state, then traffic while running.
                dev.vfio_reset().map_err(|e| format!("reset: {e}"))?;
                traffic(&dev, 4).map_err(|e| {
                    format!(
                        "valid traffic after {n} ops (seed {seed:#x}) failed: {e}\nlast: {last:#?}"
                    )
                })?;
                before = snapshot(&dev, ctx.nvqs)?;
            }
            let o = gen_op(&mut rng, &ctx, false);
            let done = prog::exec(&o, &dev, &ctx, &efd)?;
            n += 1;
            if last.len() == 8 {
                last.pop_front();
            }
            last.push_back(done.what);
            let after = snapshot(&dev, ctx.nvqs)?;
            if done.rejected {
                rejected += 1;
                if after != before && !done.compound {
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

/// A named result: a PASS or FAIL line.
type Named = (String, Result<String, String>);

/// Words of each KCOV buffer (2 MiB): a program's PCs fit.
const KCOV_WORDS: usize = 1 << 18;

fn read_prog(path: &std::path::Path) -> Result<prog::Prog, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    prog::from_text(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Replays `p` to learn how it fails, shrinks it, and writes the
/// reproducer to `output`; returns what to print.
fn shrink(
    kind: IommuKind,
    p: &[prog::Op],
    output: &std::path::Path,
    max: Duration,
) -> Result<String, String> {
    let f = match guided::replay(kind, p)? {
        Ok(()) => {
            return Err(format!(
                "the program does not fail on a fresh instance ({kind})"
            ))
        }
        Err(f) => f,
    };
    let t0 = Instant::now();
    let (min, trials) = guided::minimize(kind, p, &f.sig, max)?;
    let cmd = guided::write_repro(output, &min, kind, &f)?;
    Ok(format!(
        "fails with \"{}\"; {} operations shrunk to {} in {trials} replays ({:.1} s); replay: {cmd}\n{}",
        f.sig,
        p.len(),
        min.len(),
        t0.elapsed().as_secs_f64(),
        prog::to_text(&min).trim_end()
    ))
}

/// The coverage-guided campaign on both back ends: the calling thread
/// collects the remote coverage (device workers), a thread of its own
/// runs the programs with its coverage on.
fn fuzz_guided(o: &guided::Opts) -> Vec<Named> {
    let setup = || -> Result<kcov::Kcov, String> {
        let remote = kcov::Kcov::open(KCOV_WORDS).map_err(|e| format!("kcov: {e}"))?;
        // A common handle per process: the instance id is the pid.
        remote
            .remote_enable(u64::from(std::process::id()))
            .map_err(|e| format!("KCOV_REMOTE_ENABLE: {e}"))?;
        Ok(remote)
    };
    let remote = match setup() {
        Ok(r) => r,
        Err(e) => return vec![("fuzz (coverage-guided)".into(), Err(e))],
    };
    let mut results = Vec::new();
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            let mut results = Vec::new();
            let own = match kcov::Kcov::open(KCOV_WORDS).and_then(|k| k.enable().map(|()| k)) {
                Ok(k) => k,
                Err(e) => {
                    return vec![("fuzz (coverage-guided)".into(), Err(format!("kcov: {e}")))]
                }
            };
            let cov = guided::Cov {
                own,
                remote: &remote,
            };
            let mut camp = match guided::Campaign::new(o) {
                Ok(c) => c,
                Err(e) => return vec![("fuzz (coverage-guided)".into(), Err(e))],
            };
            for kind in [IommuKind::Type1, IommuKind::Iommufd] {
                let name = format!("fuzz {kind} (coverage-guided)");
                let r = fuzz_guided_one(&mut camp, kind, &cov, o);
                let failed = r.is_err();
                results.push((name, r));
                if failed {
                    break;
                }
            }
            let _ = cov.own.disable();
            if let Some(out) = &o.out {
                if let Err(e) = camp.write_cover(&out.join("cover.txt")) {
                    results.push(("fuzz: cover.txt".into(), Err(e)));
                }
            }
            println!(
                "INFO: fuzz: {} operations in {} programs; cover {}; corpus {}",
                camp.ops,
                camp.execs,
                camp.per_module(),
                camp.corpus_len()
            );
            results
        });
        results = h.join().unwrap_or_else(|_| {
            vec![(
                "fuzz (coverage-guided)".into(),
                Err("the fuzzing thread panicked".into()),
            )]
        });
    });
    results
}

fn fuzz_guided_one(
    camp: &mut guided::Campaign,
    kind: IommuKind,
    cov: &guided::Cov<'_>,
    o: &guided::Opts,
) -> Result<String, String> {
    let sysfs = Sysfs::system();
    let ty = first_type(&sysfs)?;
    // The instance's lifecycle is covered too: create and open here, close
    // and remove below.
    cov.own.reset();
    let uuid = sysfs.create(&ty, None).map_err(|e| e.to_string())?;
    let res = guided::Target::open(&sysfs, &uuid, kind).map(|t| {
        camp.absorb(&cov.own);
        let r = camp.run(kind, &t, Some(cov), o);
        cov.own.reset();
        drop(t);
        r
    });
    let removed = sysfs.remove(&uuid).map_err(|e| format!("remove: {e}"));
    camp.absorb(&cov.own);
    let r = match res? {
        Ok(r) => Ok(format!(": {r}")),
        Err((f, p)) => {
            let dir = o
                .out
                .as_ref()
                .map(|d| d.join("crashes"))
                .unwrap_or_else(std::env::temp_dir);
            let n = fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
            let file = dir.join(format!("crash-{kind}-{n}.txt"));
            let cmd = guided::write_repro(&file, &p, kind, &f)?;
            let min = if o.minimize_seconds > 0 {
                let out = file.with_extension("min.txt");
                match shrink(kind, &p, &out, Duration::from_secs(o.minimize_seconds)) {
                    Ok(s) => format!("\nminimized: {s}"),
                    Err(e) => format!("\nnot minimized: {e}"),
                }
            } else {
                String::new()
            };
            Err(format!(
                "{}: {}\nthe program ({} operations): {cmd}{min}",
                f.sig,
                f.detail,
                p.len()
            ))
        }
    };
    removed?;
    r
}

/// Kernel symbols of the project's modules, by address.
fn module_symbols() -> Vec<(u64, String, String)> {
    let mut v: Vec<(u64, String, String)> = fs::read_to_string("/proc/kallsyms")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let a = u64::from_str_radix(w.next()?, 16).ok()?;
            let _ty = w.next()?;
            let name = w.next()?.to_string();
            let m = w.next()?.trim_matches(|c| c == '[' || c == ']').to_string();
            kcov::MODULES.contains(&m.as_str()).then_some((a, name, m))
        })
        .collect();
    v.sort();
    v
}

/// The function (and module) a PC is in.
fn symbol_of(syms: &[(u64, String, String)], pc: u64) -> Option<(&str, &str)> {
    let i = syms.partition_point(|(a, _, _)| *a <= pc);
    i.checked_sub(1)
        .map(|i| (syms[i].1.as_str(), syms[i].2.as_str()))
}

/// Rust symbols, v0 (`_R`) or legacy (`_ZN`) mangling.
fn is_rust(sym: &str) -> bool {
    sym.starts_with("_R") || sym.starts_with("_ZN")
}

/// PCs of one KCOV buffer: how many, how many distinct, in which module,
/// how many in Rust functions, and a few of those functions.
fn describe(
    k: &kcov::Kcov,
    syms: &[(u64, String, String)],
    module: &str,
) -> (usize, std::collections::BTreeSet<u64>, usize, Vec<String>) {
    let mut all = Vec::new();
    k.for_each(|pc| all.push(pc));
    let mut distinct = std::collections::BTreeSet::new();
    let (mut rust, mut names) = (0, std::collections::BTreeSet::new());
    for pc in &all {
        if let Some((f, m)) = symbol_of(syms, *pc) {
            if m == module {
                distinct.insert(*pc);
                if is_rust(f) {
                    rust += 1;
                    names.insert(f.to_string());
                }
            }
        }
    }
    (
        all.len(),
        distinct,
        rust,
        names.into_iter().take(3).collect(),
    )
}

/// `kcov-check`: the coverage count moves when Rust paths run, in the
/// fuzzer's thread (requests) and in the device's worker (remote).
fn kcov_check() -> Vec<Named> {
    if !kcov::Kcov::available() {
        return vec![(
            "kcov-check".into(),
            Err("no /sys/kernel/debug/kcov (a kernel without KCOV?)".into()),
        )];
    }
    let remote = match kcov::Kcov::open(KCOV_WORDS)
        .and_then(|r| r.remote_enable(u64::from(std::process::id())).map(|()| r))
    {
        Ok(r) => r,
        Err(e) => return vec![("kcov-check".into(), Err(format!("KCOV_REMOTE_ENABLE: {e}")))],
    };
    let mut out = Vec::new();
    std::thread::scope(|s| {
        let h = s.spawn(|| -> Result<Vec<Named>, String> {
            let own = kcov::Kcov::open(KCOV_WORDS).map_err(|e| format!("kcov: {e}"))?;
            let syms = module_symbols();
            if syms.is_empty() {
                return Err("no symbols of vhost_mdev or vhost_mdev_net in /proc/kallsyms".into());
            }
            let sysfs = Sysfs::system();
            let ty = first_type(&sysfs)?;
            let uuid = sysfs.create(&ty, None).map_err(|e| e.to_string())?;
            let r = (|| -> Result<Vec<Named>, String> {
                let dev = MdevDevice::open(&sysfs, &uuid, IommuKind::Type1).map_err(|e| format!("open: {e}"))?;
                let mut res = Vec::new();
                own.enable().map_err(|e| format!("KCOV_ENABLE: {e}"))?;
                // Nothing runs: nothing counted.
                own.reset();
                let idle = own.len();
                // A request only Rust code handles (the core's message
                // region and request dispatch).
                own.reset();
                let _ = dev.send(VHOST_VDPA_GET_VQS_COUNT, 1, &[]);
                let (n1, d1, r1, f1) = describe(&own, &syms, "vhost_mdev");
                own.reset();
                let _ = dev.send(VHOST_GET_VRING_BASE, 1, &[0; 8]);
                let (n2, d2, r2, _) = describe(&own, &syms, "vhost_mdev");
                // Not KCOV_DISABLE: it would also drop the thread's common
                // handle, which the worker started below must inherit.
                own.reset();
                let new2 = d2.difference(&d1).count();
                let line = format!(
                    ": KCOV count {idle} with nothing run; GET_VQS_COUNT {n1} PCs ({} distinct in vhost_mdev, {r1} in Rust functions such as {}); \
                     GET_VRING_BASE {n2} PCs ({r2} in Rust functions, {new2} not reached by GET_VQS_COUNT)",
                    d1.len(),
                    f1.first().map(String::as_str).unwrap_or("-"),
                );
                res.push((
                    "kcov-check: the core's Rust request path is instrumented".to_string(),
                    if idle == 0 && r1 > 0 && r2 > 0 && new2 > 0 { Ok(line) } else { Err(line) },
                ));
                // The worker: remote coverage of its runs.
                remote.reset();
                let before = remote.len();
                traffic(&dev, 8)?;
                std::thread::sleep(Duration::from_millis(100));
                let (n3, d3, r3, f3) = describe(&remote, &syms, "vhost_mdev_net");
                let (_, d4, r4, _) = describe(&remote, &syms, "vhost_mdev");
                let line = format!(
                    ": remote KCOV count {before} before traffic; after 8 frames {n3} PCs from the worker: {} distinct in vhost_mdev_net ({r3} in Rust functions such as {}), {} in vhost_mdev ({r4} in Rust: DMA upcalls)",
                    d3.len(),
                    f3.first().map(String::as_str).unwrap_or("-"),
                    d4.len()
                );
                res.push((
                    "kcov-check: the sample's worker has remote coverage".to_string(),
                    if before == 0 && r3 > 0 { Ok(line) } else { Err(line) },
                ));
                Ok(res)
            })();
            let removed = sysfs.remove(&uuid).map_err(|e| format!("remove: {e}"));
            let r = r?;
            removed?;
            Ok(r)
        });
        out = match h.join() {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => vec![("kcov-check".into(), Err(e))],
            Err(_) => vec![("kcov-check".into(), Err("the thread panicked".into()))],
        };
    });
    out
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
            plain,
            corpus,
            out,
            progress,
            minimize_seconds,
        } => {
            let seed = seed.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
            let guided = !plain && kcov::Kcov::available();
            if !plain && !guided {
                println!("INFO: fuzz: no KCOV (/sys/kernel/debug/kcov): the plain seeded stream");
            }
            if guided {
                println!(
                    "INFO: fuzz seed {seed:#x}, coverage-guided (rerun: vhost-mdev-fuzz fuzz --seed {seed:#x} --ops {ops}{}; \
                     coverage makes a rerun differ from the first run)",
                    corpus.as_ref().map(|c| format!(" --corpus {}", c.display())).unwrap_or_default()
                );
                let o = guided::Opts {
                    seed,
                    ops,
                    seconds: max_seconds,
                    corpus,
                    out,
                    progress,
                    minimize_seconds,
                };
                for (name, r) in fuzz_guided(&o) {
                    report(&name, r, &mut passed, &mut failed);
                }
            } else {
                println!("INFO: fuzz seed {seed:#x} (rerun: vhost-mdev-fuzz fuzz --plain --seed {seed:#x} --ops {ops})");
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
        }
        Cmd::Replay { file, iommufd } => {
            let kind = if iommufd {
                IommuKind::Iommufd
            } else {
                IommuKind::Type1
            };
            let r = read_prog(&file).and_then(|p| {
                let n = p.len();
                match guided::replay(kind, &p)? {
                    Ok(()) => Ok(format!(": {n} operations, then traffic")),
                    Err(f) => Err(format!("{}\n{}", f.sig, f.detail)),
                }
            });
            report(
                &format!("replay {} ({kind})", file.display()),
                r,
                &mut passed,
                &mut failed,
            );
        }
        Cmd::Minimize {
            file,
            iommufd,
            output,
            max_seconds,
        } => {
            let kind = if iommufd {
                IommuKind::Iommufd
            } else {
                IommuKind::Type1
            };
            let output = output.unwrap_or_else(|| file.with_extension("min"));
            let r = read_prog(&file).and_then(|p| {
                shrink(kind, &p, &output, Duration::from_secs(max_seconds))
                    .map(|s| format!(": {s}"))
            });
            report(
                &format!("minimize {}", file.display()),
                r,
                &mut passed,
                &mut failed,
            );
        }
        Cmd::KcovCheck => {
            for (name, r) in kcov_check() {
                report(&name, r, &mut passed, &mut failed);
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
