// SPDX-License-Identifier: GPL-2.0 OR MIT

//! Coverage-guided fuzzing: programs ([`Prog`]: operations run in order
//! after a reset) are generated or mutated from a corpus, executed with
//! KCOV on (the fuzzer's thread, and the device's worker through remote
//! coverage), and kept in the corpus when they reach PCs no earlier program
//! reached. Every program is checked as the stream fuzzer checks each
//! operation (a rejected operation leaves the device's state as it was),
//! the kernel log is read after each for reports, and every
//! [`CHECK_EVERY`] programs the device must carry traffic after a reset.
//!
//! A failure is written as a program that reproduces it (on a fresh
//! instance: [`replay`]) and shrunk ([`minimize`]): the operations that do
//! not matter removed, chunk by chunk (delta debugging), then payloads
//! shortened.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use vhost_mdev::{IommuKind, MdevDevice, Sysfs};
use vmm_sys_util::eventfd::EventFd;

use crate::kcov::{Kcov, Modules};
use crate::prog::{self, exec, gen_op, mutate_op, Ctx, Op, Prog, Rng};
use crate::{first_type, snapshot};

/// Programs between two checks that the device still carries traffic.
pub const CHECK_EVERY: u64 = 500;
/// Longest program.
const MAX_LEN: usize = 24;

/// A fast hash for PCs (Fibonacci hashing; SipHash costs more than the
/// operations under TCG).
#[derive(Default, Clone, Copy)]
pub struct PcHasher(u64);

impl std::hash::Hasher for PcHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A set of PCs.
pub type PcSet = HashSet<u64, std::hash::BuildHasherDefault<PcHasher>>;

/// Why a program failed; `sig` is what a reproducer must fail with too.
#[derive(Debug, Clone)]
pub struct Failure {
    pub sig: String,
    pub detail: String,
}

fn fail(sig: impl Into<String>, detail: impl Into<String>) -> Failure {
    Failure {
        sig: sig.into(),
        detail: detail.into(),
    }
}

/// New kernel log records, read after each program: a report in them is a
/// failure (the patterns of scripts/kernel-reports.ere).
pub struct Kmsg(Option<fs::File>);

const REPORTS: &[&str] = &[
    "WARNING:",
    "BUG:",
    "Oops",
    "general protection fault",
    "KASAN:",
    "UBSAN:",
    "kernel BUG",
    "possible circular locking",
    "possible recursive locking",
    "inconsistent lock state",
    "suspicious RCU usage",
    "DEBUG_LOCKS_WARN_ON",
    "bad unlock balance",
    "held when returning",
    "Call Trace:",
];

impl Kmsg {
    /// Opens /dev/kmsg at its end (nothing if it cannot: not root).
    pub fn open() -> Self {
        let f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .ok();
        if let Some(f) = &f {
            use std::os::fd::AsRawFd;
            // SAFETY: an lseek on our descriptor.
            unsafe { libc::lseek(f.as_raw_fd(), 0, libc::SEEK_END) };
        }
        Self(f)
    }

    /// The first report line logged since the last call, if any.
    pub fn report(&mut self) -> Option<String> {
        let f = self.0.as_mut()?;
        let mut found = None;
        let mut buf = [0u8; 8192];
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let rec = String::from_utf8_lossy(&buf[..n]);
                    let msg = rec.split_once(';').map_or(&*rec, |(_, m)| m);
                    let msg = msg.lines().next().unwrap_or("").to_string();
                    if found.is_none() && REPORTS.iter().any(|p| msg.contains(p)) {
                        found = Some(msg);
                    }
                }
                // EPIPE: records were overwritten; go on from the next.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(_) => break,
            }
        }
        found
    }
}

/// A report line without what differs from run to run (CPU, PID,
/// offsets): the signature of a kernel report.
fn report_sig(line: &str) -> String {
    let s = match line.split_once(" at ") {
        Some((head, at)) if head.starts_with("WARNING:") => format!("WARNING at {at}"),
        _ => line.to_string(),
    };
    let s = s.split('+').next().unwrap_or(&s).trim().to_string();
    format!("kernel report: {s}")
}

/// The coverage sources of the fuzzer's thread.
pub struct Cov<'a> {
    pub own: Kcov,
    pub remote: &'a Kcov,
}

/// One open instance under test.
pub struct Target {
    pub dev: MdevDevice,
    pub ctx: Ctx,
    pub efd: EventFd,
}

impl Target {
    pub fn open(sysfs: &Sysfs, uuid: &uuid::Uuid, kind: IommuKind) -> Result<Self, String> {
        let dev = MdevDevice::open(sysfs, uuid, kind).map_err(|e| format!("open: {e}"))?;
        let ctx = Ctx::of(&dev)?;
        let efd = EventFd::new(0).map_err(|e| e.to_string())?;
        Ok(Self { dev, ctx, efd })
    }
}

/// Runs `p` after a reset; `ops` counts the operations run, `new` gets
/// the PCs reached (with `cov`). Checks that a rejected operation changed
/// nothing, and the kernel log.
pub fn run_prog(
    t: &Target,
    p: &[Op],
    cov: Option<&Cov<'_>>,
    kmsg: &mut Kmsg,
    ops: &mut u64,
    mut pcs: impl FnMut(u64, bool),
) -> Result<(), Failure> {
    let dev = &t.dev;
    let mut tm = Instant::now();
    let mut lap = |i: usize| {
        let now = Instant::now();
        TIMES[i].fetch_add((now - tm).as_micros() as u64, Relaxed);
        tm = now;
    };
    if let Some(c) = cov {
        c.own.reset();
        c.remote.reset();
    }
    dev.set_transport(vhost_mdev::Transport::Region);
    dev.vfio_reset()
        .map_err(|e| fail("reset", format!("VFIO_DEVICE_RESET before a program: {e}")))?;
    lap(0);
    // The snapshots' own coverage is not the program's.
    let snap = |cov: Option<&Cov<'_>>| {
        let n = cov.map(|c| c.own.len());
        let r = snapshot(dev, t.ctx.nvqs);
        if let (Some(c), Some(n)) = (cov, n) {
            c.own.truncate(n);
        }
        r
    };
    let mut before = snap(cov).map_err(|e| fail("snapshot", e))?;
    let mut last: Vec<String> = Vec::new();
    for (i, op) in p.iter().enumerate() {
        lap(2);
        let t1 = Instant::now();
        let done = exec(op, dev, &t.ctx, &t.efd).map_err(|e| fail("check", e))?;
        if matches!(op, Op::Traffic { .. } | Op::Check) {
            BRINGUPS.fetch_add(t1.elapsed().as_micros() as u64, Relaxed);
        }
        *ops += 1;
        last.push(done.what);
        lap(1);
        let after = snap(cov).map_err(|e| {
            fail(
                "snapshot",
                format!("after op {i} ({op}): {e}\nlast: {}", last.join("\n  ")),
            )
        })?;
        if done.rejected && !done.compound && after != before {
            let kind = op.to_string();
            let kind = kind.split_whitespace().next().unwrap_or("");
            return Err(fail(
                format!("a rejected {kind} changed the device"),
                format!(
                    "op {i} ({op}) was rejected and changed the device:\n  before {before:?}\n  after  {after:?}\nlast operations:\n  {}",
                    last.iter().rev().take(8).rev().cloned().collect::<Vec<_>>().join("\n  ")
                ),
            ));
        }
        before = after;
    }
    lap(2);
    if let Some(c) = cov {
        c.own.for_each(|pc| pcs(pc, false));
        c.remote.for_each(|pc| pcs(pc, true));
    }
    lap(3);
    let rep = kmsg.report();
    lap(4);
    if let Some(r) = rep {
        return Err(fail(report_sig(&r), format!("the kernel logged: {r}")));
    }
    Ok(())
}

/// Microseconds spent in resets, operations, snapshots, coverage and the
/// kernel log.
pub static TIMES: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

/// Settings of a coverage-guided campaign.
pub struct Opts {
    pub seed: u64,
    /// Operations per IOMMU back end (0: no limit).
    pub ops: u64,
    /// Seconds per IOMMU back end.
    pub seconds: u64,
    pub corpus: Option<PathBuf>,
    pub out: Option<PathBuf>,
    pub progress: u64,
    pub minimize_seconds: u64,
}

/// A corpus and the coverage it reached, over both back ends.
pub struct Campaign {
    rng: Rng,
    corpus: Vec<Prog>,
    cover: PcSet,
    /// PCs the device's worker reached (remote coverage).
    remote: PcSet,
    pub ops: u64,
    pub execs: u64,
    seeds: Vec<(String, Prog)>,
    modules: Option<Modules>,
}

impl Campaign {
    pub fn new(o: &Opts) -> Result<Self, String> {
        let mut seeds = Vec::new();
        if let Some(d) = &o.corpus {
            let mut names: Vec<PathBuf> = fs::read_dir(d)
                .map_err(|e| format!("{}: {e}", d.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "txt"))
                .collect();
            names.sort();
            for n in names {
                let text = fs::read_to_string(&n).map_err(|e| format!("{}: {e}", n.display()))?;
                let p = prog::from_text(&text).map_err(|e| format!("{}: {e}", n.display()))?;
                seeds.push((n.display().to_string(), p));
            }
        }
        if let Some(out) = &o.out {
            for d in ["corpus", "crashes"] {
                fs::create_dir_all(out.join(d)).map_err(|e| format!("{}: {e}", out.display()))?;
            }
        }
        Ok(Self {
            rng: Rng(o.seed | 1),
            corpus: Vec::new(),
            cover: PcSet::default(),
            remote: PcSet::default(),
            ops: 0,
            execs: 0,
            seeds,
            modules: Modules::load().ok(),
        })
    }

    /// Adds the PCs in `k` (what the fuzzer's thread ran outside the
    /// programs: creating, opening, closing and removing the instance).
    pub fn absorb(&mut self, k: &Kcov) {
        let cover = &mut self.cover;
        k.for_each(|pc| {
            cover.insert(pc);
        });
        k.reset();
    }

    /// PCs reached, per module.
    pub fn per_module(&self) -> String {
        let Some(m) = &self.modules else {
            return format!("{} PCs", self.cover.len());
        };
        let mut n: HashMap<&str, usize> = HashMap::new();
        for pc in &self.cover {
            if let Some((module, _, _)) = m.locate(*pc) {
                *n.entry(module).or_default() += 1;
            }
        }
        let mut v: Vec<String> = n.iter().map(|(k, v)| format!("{k} {v}")).collect();
        v.sort();
        format!(
            "{} PCs ({}; {} from the worker)",
            self.cover.len(),
            v.join(", "),
            self.remote.len()
        )
    }

    pub fn corpus_len(&self) -> usize {
        self.corpus.len()
    }

    /// Writes the PCs reached as `module section offset` lines (for
    /// tools/fuzz/cover-report).
    pub fn write_cover(&self, path: &Path) -> Result<(), String> {
        let m = self.modules.as_ref().ok_or("no /sys/module sections")?;
        let mut lines: Vec<String> = self
            .cover
            .iter()
            .filter_map(|pc| m.locate(*pc))
            .map(|(module, sec, off)| format!("{module} {sec} {off:#x}"))
            .collect();
        lines.sort();
        fs::write(path, lines.join("\n") + "\n").map_err(|e| format!("{}: {e}", path.display()))
    }

    fn next_prog(&mut self, c: &Ctx) -> Prog {
        let rng = &mut self.rng;
        if self.corpus.is_empty() || rng.chance(10) {
            let n = 1 + rng.below(12) as usize;
            return (0..n).map(|_| gen_op(rng, c, true)).collect();
        }
        let i = rng.below(self.corpus.len() as u64) as usize;
        let mut p = self.corpus[i].clone();
        // A few mutations at once now and then.
        let rounds = if rng.chance(70) { 1 } else { 1 + rng.below(4) };
        for _ in 0..rounds {
            match rng.below(10) {
                0..=3 if !p.is_empty() => {
                    let i = rng.below(p.len() as u64) as usize;
                    mutate_op(rng, c, &mut p[i]);
                }
                4..=5 => {
                    let i = rng.below(p.len() as u64 + 1) as usize;
                    p.insert(i, gen_op(rng, c, true));
                }
                6 if p.len() > 1 => {
                    p.remove(rng.below(p.len() as u64) as usize);
                }
                7 if !p.is_empty() => {
                    let i = rng.below(p.len() as u64) as usize;
                    let o = p[i].clone();
                    p.insert(i, o);
                }
                8 => {
                    // Splice: a prefix of this one, a suffix of another.
                    let other = &self.corpus[rng.below(self.corpus.len() as u64) as usize];
                    let a = rng.below(p.len() as u64 + 1) as usize;
                    let b = rng.below(other.len() as u64 + 1) as usize;
                    p.truncate(a);
                    p.extend_from_slice(&other[b..]);
                }
                _ if p.len() > 1 => {
                    let i = rng.below(p.len() as u64) as usize;
                    let j = rng.below(p.len() as u64) as usize;
                    p.swap(i, j);
                }
                _ => p.push(gen_op(rng, c, true)),
            }
        }
        // A bring-up costs as much as a hundred other operations: most
        // mutants of a program with one go without it.
        if rng.chance(95) {
            p.retain(|o| !matches!(o, Op::Traffic { .. }));
        }
        p.truncate(MAX_LEN);
        if p.is_empty() {
            p.push(gen_op(rng, c, true));
        }
        p
    }

    /// Fuzzes one back end for `o.ops` operations or `o.seconds` seconds.
    /// Returns a report line, or the failure and the program that
    /// reproduces it.
    pub fn run(
        &mut self,
        kind: IommuKind,
        t: &Target,
        cov: Option<&Cov<'_>>,
        o: &Opts,
    ) -> Result<String, (Failure, Prog)> {
        let mut kmsg = Kmsg::open();
        let t0 = Instant::now();
        let (ops0, execs0, corpus0) = (self.ops, self.execs, self.corpus.len());
        let deadline = t0 + Duration::from_secs(o.seconds);
        let mut next_progress = t0 + Duration::from_secs(o.progress.max(1));
        // Programs since the last check: a failing check replays them all.
        let mut since_check: Prog = Vec::new();
        // The seed corpus first (once per campaign: its programs are in
        // the corpus for the other back end).
        let seeds = std::mem::take(&mut self.seeds);
        let mut queue: Vec<Prog> = seeds.into_iter().map(|(_, p)| p).collect();
        queue.reverse();
        let budget = |ops: u64| o.ops == 0 || ops - ops0 < o.ops;
        while budget(self.ops) && Instant::now() < deadline {
            let p = match queue.pop() {
                Some(p) => p,
                None => self.next_prog(&t.ctx),
            };
            let mut new = 0usize;
            let (cover, remote) = (&mut self.cover, &mut self.remote);
            let r = run_prog(t, &p, cov, &mut kmsg, &mut self.ops, |pc, from_worker| {
                if cover.insert(pc) {
                    new += 1;
                }
                if from_worker {
                    remote.insert(pc);
                }
            });
            self.execs += 1;
            since_check.push(Op::Reset);
            since_check.extend(p.iter().cloned());
            if let Err(f) = r {
                let mut p = p;
                if f.sig == "check" {
                    p = since_check;
                }
                return Err((f, p));
            }
            if new > 0 {
                if let Some(out) = &o.out {
                    let name = out
                        .join("corpus")
                        .join(format!("{:05}.txt", self.corpus.len()));
                    let _ = fs::write(name, format!("# {new} new PCs\n{}", prog::to_text(&p)));
                }
                self.corpus.push(p);
            }
            if self.execs.is_multiple_of(CHECK_EVERY) {
                let mut c = vec![Op::Check];
                if let Err(f) = run_prog(t, &c, None, &mut kmsg, &mut self.ops, |_, _| {}) {
                    since_check.append(&mut c);
                    return Err((f, since_check));
                }
                since_check.clear();
            }
            if Instant::now() >= next_progress {
                next_progress += Duration::from_secs(o.progress.max(1));
                let s = t0.elapsed().as_secs_f64();
                println!(
                    "INFO: fuzz {kind}: {:.0} s, {} ops, {:.0} execs/s, cover {}, corpus {}",
                    s,
                    self.ops - ops0,
                    (self.execs - execs0) as f64 / s,
                    self.per_module(),
                    self.corpus.len()
                );
            }
        }
        let mut c = vec![Op::Check];
        if let Err(f) = run_prog(t, &c, None, &mut kmsg, &mut self.ops, |_, _| {}) {
            since_check.append(&mut c);
            return Err((f, since_check));
        }
        let s = t0.elapsed().as_secs_f64();
        Ok(format!(
            "{} operations in {} programs ({:.0} execs/s; {}), state unchanged after each rejected one, \
             traffic every {CHECK_EVERY} programs; cover {}; corpus {} (+{}) ({s:.1} s)",
            self.ops - ops0,
            self.execs - execs0,
            (self.execs - execs0) as f64 / s,
            times(),
            self.per_module(),
            self.corpus.len(),
            self.corpus.len() - corpus0,
        ))
    }
}

/// Microseconds spent in bring-ups (traffic, checks), within the
/// operations' time.
pub static BRINGUPS: AtomicU64 = AtomicU64::new(0);

/// Where the time went.
pub fn times() -> String {
    let t: Vec<f64> = TIMES.iter().map(|x| x.load(Relaxed) as f64 / 1e6).collect();
    format!(
        "time so far: resets {:.1} s, operations {:.1} s (bring-ups {:.1} s), snapshots {:.1} s, coverage {:.1} s, kernel log {:.1} s",
        t[0],
        t[1],
        BRINGUPS.load(Relaxed) as f64 / 1e6,
        t[2],
        t[3],
        t[4]
    )
}

/// Runs `p` on a fresh instance of `kind`, then checks that the device
/// carries traffic after a reset. `Ok` when nothing failed.
pub fn replay(kind: IommuKind, p: &[Op]) -> Result<Result<(), Failure>, String> {
    let sysfs = Sysfs::system();
    let ty = first_type(&sysfs)?;
    let uuid = sysfs.create(&ty, None).map_err(|e| e.to_string())?;
    let r = (|| {
        let t = Target::open(&sysfs, &uuid, kind)?;
        let mut kmsg = Kmsg::open();
        let mut ops = 0;
        let mut full = p.to_vec();
        if full.last() != Some(&Op::Check) {
            full.push(Op::Check);
        }
        // A reproducer may hold several programs, each after a reset:
        // run it as one (its resets are in it).
        Ok(run_prog(&t, &full, None, &mut kmsg, &mut ops, |_, _| {}))
    })();
    let removed = sysfs.remove(&uuid).map_err(|e| format!("remove: {e}"));
    // A device that cannot be removed is a failure of its own.
    match (r, removed) {
        (Ok(Ok(())), Err(e)) => Ok(Err(fail("remove", e))),
        (r, _) => r,
    }
}

/// Shrinks `p`, which fails with `sig` on `kind`, to a shorter program
/// that fails with the same signature; stops after `max`.
pub fn minimize(
    kind: IommuKind,
    p: &[Op],
    sig: &str,
    max: Duration,
) -> Result<(Prog, u32), String> {
    let t0 = Instant::now();
    let mut cur: Prog = p.iter().filter(|o| **o != Op::Check).cloned().collect();
    let mut trials = 0u32;
    let fails = |cand: &[Op], trials: &mut u32| -> Result<bool, String> {
        *trials += 1;
        Ok(matches!(replay(kind, cand)?, Err(f) if f.sig == sig))
    };
    // Delta debugging: remove chunks, halving their size.
    let mut n = 2usize;
    while cur.len() >= 2 && t0.elapsed() < max {
        let chunk = cur.len().div_ceil(n);
        let mut removed = false;
        let mut i = 0;
        while i < cur.len() && t0.elapsed() < max {
            let mut cand = cur.clone();
            cand.drain(i..(i + chunk).min(cand.len()));
            if !cand.is_empty() && fails(&cand, &mut trials)? {
                cur = cand;
                removed = true;
            } else {
                i += chunk;
            }
        }
        if removed {
            n = n.saturating_sub(1).max(2);
        } else if chunk == 1 {
            break;
        } else {
            n = (n * 2).min(cur.len());
        }
    }
    // Then simpler operations: shorter payloads.
    for i in 0..cur.len() {
        if t0.elapsed() >= max {
            break;
        }
        let mut cand = cur.clone();
        let shorter = match &mut cand[i] {
            Op::Send { payload: b, .. } | Op::MsgWrite { msg: b, .. } if b.len() > 1 => {
                b.truncate(b.len() / 2);
                true
            }
            _ => false,
        };
        if shorter && fails(&cand, &mut trials)? {
            cur = cand;
        }
    }
    Ok((cur, trials))
}

/// Writes a reproducer: the program, with how to replay it.
pub fn write_repro(path: &Path, p: &[Op], kind: IommuKind, f: &Failure) -> Result<String, String> {
    let flag = if kind == IommuKind::Iommufd {
        " --iommufd"
    } else {
        ""
    };
    let cmd = format!("vhost-mdev-fuzz replay {}{flag}", path.display());
    let text = format!(
        "# vhost-mdev-fuzz reproducer: {}\n# replay (root, in the test VM): {cmd}\n{}",
        f.sig,
        prog::to_text(p)
    );
    fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(cmd)
}
