// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The vhost dirty log (`VHOST_SET_LOG_BASE`, `VHOST_F_LOG_ALL`,
//! `VHOST_VRING_F_LOG`) on the sample, on type1 and iommufd: exactly the
//! pages the device wrote are logged, and nothing else; hostile logs are
//! refused and change nothing; the pinned log is given back.

use std::collections::BTreeSet;
use std::os::fd::AsRawFd;
use std::time::Duration;

use vhost_mdev::driver::TEST_SRC_MAC;
use vhost_mdev::mem::DmaMemory;
use vhost_mdev::net::build_frame;
use vhost_mdev::uapi::*;
use vhost_mdev::{IommuKind, MdevDevice, VhostBackend};

use crate::check;
use crate::raw::{RawNet, RawOpts, RXQ, TXQ};
use crate::util::*;

/// Bytes of guest address per bit of the log (vhost's `VHOST_PAGE_SIZE`).
const LOG_PAGE: u64 = 0x1000;
/// The feature bit.
const LOG_ALL: u64 = 1 << VHOST_F_LOG_ALL;
/// `struct vhost_vring_addr.flags`.
const F_LOG: u32 = 1 << VHOST_VRING_F_LOG;
/// Where the RX used ring is logged besides its own IOVA: below the
/// queues, inside the log (which covers IOVA 0 to the table's end), where
/// nothing else is written.
const RX_USED_LOG: u64 = 0x1000_0000;

/// `VmLck` of this process in KiB (`locked_vm`, which the pinned log is
/// charged to).
fn vm_lck_kib() -> Result<u64, String> {
    let s = std::fs::read_to_string("/proc/self/status").ctx("/proc/self/status")?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmLck in /proc/self/status".to_string())
}

/// A log for the IOVAs up to `last`, and its user address.
struct Log {
    mem: DmaMemory,
    words: usize,
}

impl Log {
    fn new(last: u64) -> Result<Self, String> {
        let words = (last / (64 * LOG_PAGE) + 1) as usize;
        Ok(Log {
            mem: DmaMemory::new(words * 8).ctx("log memory")?,
            words,
        })
    }

    fn base(&self) -> u64 {
        self.mem.addr()
    }

    /// The log pages set.
    fn pages(&self) -> Result<BTreeSet<u64>, String> {
        let mut set = BTreeSet::new();
        for w in 0..self.words {
            let v = u64::from_le(self.mem.load::<u64>(w * 8).ctx("log word")?);
            for b in 0..64 {
                if v & (1 << b) != 0 {
                    set.insert(w as u64 * 64 + b);
                }
            }
        }
        Ok(set)
    }

    fn clear(&self) -> TestResult {
        self.mem.fill(0, self.words * 8, 0).ctx("clear log")
    }
}

/// The log pages of `len` bytes at `iova`.
fn pages_of(set: &mut BTreeSet<u64>, iova: u64, len: u64) {
    if len > 0 {
        set.extend(iova / LOG_PAGE..=(iova + len - 1) / LOG_PAGE);
    }
}

fn fmt_pages(s: &BTreeSet<u64>) -> String {
    let v: Vec<String> = s.iter().map(|p| format!("{:#x}", p * LOG_PAGE)).collect();
    v.join(" ")
}

/// The highest IOVA of the queues' memory (the memory table's end).
fn table_last(net: &RawNet<'_>) -> u64 {
    net.tx.iova() + net.tx.memory().len() as u64 - 1
}

/// Loops `n` frames of `len` bytes and returns the pages the device must
/// have written: the RX buffers (header and frame), the used entries and
/// indexes of both queues, and the RX used ring's bytes again at
/// `rx_log` when given.
fn loop_frames(
    net: &mut RawNet<'_>,
    n: u64,
    len: usize,
    rx_log: Option<u64>,
) -> Result<BTreeSet<u64>, String> {
    let mut want = BTreeSet::new();
    let mac = net.config.mac;
    let rx_used = net.rx.iova() + net.rx.layout().used as u64;
    let tx_used = net.tx.iova() + net.tx.layout().used as u64;
    let size = u64::from(net.rx.size());
    for seq in 0..n {
        let rx_slot_used = u64::from(net.rx.last_used()) % size;
        let tx_slot_used = u64::from(net.tx.last_used()) % size;
        let f = build_frame(mac, TEST_SRC_MAC, seq, len).ctx("frame")?;
        net.send(&f)?;
        // The buffer is the next used entry's: its token is the slot.
        let u = loop {
            if let Some(u) = net.rx.pop_used().ctx("RX used")? {
                break u;
            }
            wait_eventfd_ms(net, 20)?;
        };
        let slot = u.token as usize;
        let buf = net.rx.buf_iova(slot).ctx("RX slot")?;
        pages_of(&mut want, buf, u64::from(u.len));
        net.post_rx(slot)?;
        net.rx.publish().ctx("RX publish")?;
        net.dev.notify(RXQ).ctx("kick RX")?;
        net.wait_tx_done(Duration::from_secs(5))?;
        // Used entry and used index of both queues.
        for (used, i) in [(rx_used, rx_slot_used), (tx_used, tx_slot_used)] {
            pages_of(&mut want, used + 4 + 8 * i, 8);
            pages_of(&mut want, used + 2, 2);
        }
        if let Some(l) = rx_log {
            pages_of(&mut want, l + 4 + 8 * rx_slot_used, 8);
            pages_of(&mut want, l + 2, 2);
        }
    }
    Ok(want)
}

fn wait_eventfd_ms(net: &RawNet<'_>, ms: u64) -> TestResult {
    vhost_mdev::driver::wait_eventfd(&net.calls[0], Duration::from_millis(ms)).ctx("poll")?;
    Ok(())
}

/// Checks that the log holds exactly `want`.
fn expect_log(log: &Log, want: &BTreeSet<u64>, what: &str) -> TestResult {
    let got = log.pages()?;
    let missing: BTreeSet<u64> = want.difference(&got).copied().collect();
    let extra: BTreeSet<u64> = got.difference(want).copied().collect();
    check!(
        missing.is_empty() && extra.is_empty(),
        "{what}: pages written but not logged: [{}]; logged but not written: [{}]",
        fmt_pages(&missing),
        fmt_pages(&extra)
    );
    Ok(())
}

/// SET_LOG_BASE from a child process (another address space): its errno.
fn log_base_from_child(dev: &MdevDevice, base: u64) -> Result<i32, String> {
    ioctl_errno_in_child(
        dev.vfio().file().as_raw_fd(),
        VHOST_SET_LOG_BASE as _,
        &base,
    )
}

/// A mapping of `len` bytes with protection `prot`, unmapped on drop.
struct Map(*mut libc::c_void, usize);

impl Map {
    fn new(len: usize, prot: i32) -> Result<Self, String> {
        // SAFETY: a new private anonymous mapping at an address of the
        // kernel's choice.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        check!(
            p != libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        Ok(Map(p, len))
    }
    fn addr(&self) -> u64 {
        self.0 as u64
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: our mapping; the device was never given it for DMA (only
        // as a log, which the test drops before).
        unsafe { libc::munmap(self.0, self.1) };
    }
}

/// The dirty log of the sample on back end `kind`.
pub fn dirty_log(env: &Env, kind: IommuKind) -> TestResult {
    let inst = Inst::create(env)?;
    if kind == IommuKind::Iommufd {
        iommufd_available(&inst)?;
    }
    let lck_before = vm_lck_kib()?;
    {
        let dev = inst.open(kind)?;
        check!(
            dev.get_features().ctx("GET_FEATURES")? & LOG_ALL != 0,
            "the sample does not offer VHOST_F_LOG_ALL"
        );
        // LOG_ALL before FEATURES_OK is the core's: the device runs as
        // without it (RawNet negotiates without it, then it is toggled).
        let mut net = RawNet::start(
            &dev,
            RawOpts {
                mem_table: true,
                ..Default::default()
            },
        )?;
        let last = table_last(&net);
        let log = Log::new(last)?;
        let log2 = Log::new(last)?;
        let f = net.features;

        // A log given while running, logging off: nothing is logged.
        let lck0 = vm_lck_kib()?;
        dev.set_log_base(log.base()).ctx("SET_LOG_BASE")?;
        let pinned_kib = (log.words as u64 * 8).div_ceil(4096) * 4;
        let lck1 = vm_lck_kib()?;
        check!(
            lck1 == lck0 + pinned_kib,
            "locked_vm {lck0} KiB before SET_LOG_BASE, {lck1} KiB after (log of {pinned_kib} KiB)"
        );
        loop_frames(&mut net, 2, 300, None)?;
        expect_log(&log, &BTreeSet::new(), "logging off")?;

        // LOG_ALL on while running, VRING_F_LOG on both queues: RX logged
        // elsewhere too, TX at its own IOVA (QEMU's way).
        dev.set_features(f | LOG_ALL)
            .ctx("SET_FEATURES(LOG_ALL) while running")?;
        let mut rx_a = net.rx.vring_addr(u32::from(RXQ));
        rx_a.flags = F_LOG;
        rx_a.log_guest_addr = RX_USED_LOG;
        dev.set_vring_addr(&rx_a)
            .ctx("SET_VRING_ADDR(F_LOG) RX while running")?;
        let mut tx_a = net.tx.vring_addr(u32::from(TXQ));
        tx_a.flags = F_LOG;
        tx_a.log_guest_addr = tx_a.used_user_addr;
        dev.set_vring_addr(&tx_a)
            .ctx("SET_VRING_ADDR(F_LOG) TX while running")?;
        check!(
            dev.get_status().ctx("GET_STATUS")? & VIRTIO_CONFIG_S_DRIVER_OK != 0,
            "DRIVER_OK lost"
        );
        log.clear()?;
        // Frames of a page and a half: buffers across page boundaries.
        let want = loop_frames(&mut net, 8, 1400, Some(RX_USED_LOG))?;
        expect_log(&log, &want, "LOG_ALL on")?;

        // The flag off again: the RX used ring is logged only at its IOVA.
        let mut rx_b = rx_a;
        rx_b.flags = 0;
        dev.set_vring_addr(&rx_b)
            .ctx("SET_VRING_ADDR without F_LOG while running")?;
        log.clear()?;
        let want = loop_frames(&mut net, 3, 200, None)?;
        expect_log(&log, &want, "VRING_F_LOG off")?;
        dev.set_vring_addr(&rx_a)
            .ctx("SET_VRING_ADDR(F_LOG) again")?;

        // Hostile requests: a clear errno, and nothing changes (the
        // device state, and the log in use keeps logging).
        let ro = Map::new(8192, libc::PROT_READ)?;
        let gone = Map::new(8192, libc::PROT_READ | libc::PROT_WRITE)?;
        let gone_addr = gone.addr();
        drop(gone);
        for (what, base, errno) in [
            ("unaligned", log.base() + 4, libc::EINVAL),
            ("unmapped", gone_addr, libc::EFAULT),
            ("read-only", ro.addr(), libc::EFAULT),
            ("past the address space", u64::MAX - 7, libc::EFAULT),
        ] {
            bad_input(&dev, &format!("SET_LOG_BASE {what}"), errno, || {
                dev.set_log_base(base)
            })?;
        }
        let e = log_base_from_child(&dev, log2.base())?;
        check!(
            e == libc::EPERM,
            "SET_LOG_BASE from another process: errno {e}, expected EPERM"
        );
        let e = log_base_from_child(&dev, 0)?;
        check!(
            e == libc::EPERM,
            "SET_LOG_BASE(0) from another process: errno {e}, expected EPERM"
        );
        // A memory table whose log would be too large (a region at 4 TiB):
        // refused while a log is set, and the old table stays.
        let mut huge = vec![
            net.rx.memory().region(net.rx.iova()),
            net.tx.memory().region(net.tx.iova()),
        ];
        huge.push(vhost_mdev::uapi::MemRegion::new(4 << 40, 4096, log2.base()));
        bad_input(&dev, "SET_MEM_TABLE too large to log", libc::E2BIG, || {
            dev.set_mem_table(&huge)
        })?;
        // Other features than LOG_ALL, a ring moved, an unknown flag:
        // still refused while running.
        bad_input(&dev, "SET_FEATURES another bit", libc::EBUSY, || {
            dev.set_features(f ^ LOG_ALL ^ (1 << VIRTIO_NET_F_STATUS))
        })?;
        bad_input(&dev, "SET_FEATURES unchanged", libc::EBUSY, || {
            dev.set_features(f | LOG_ALL)
        })?;
        let moved = VhostVringAddr {
            desc_user_addr: rx_a.desc_user_addr + 0x1000,
            ..rx_a
        };
        bad_input(&dev, "SET_VRING_ADDR ring moved", libc::EINVAL, || {
            dev.set_vring_addr(&moved)
        })?;
        let unknown = VhostVringAddr { flags: 2, ..rx_a };
        bad_input(&dev, "SET_VRING_ADDR flag 2", libc::EINVAL, || {
            dev.set_vring_addr(&unknown)
        })?;
        let wraps = VhostVringAddr {
            log_guest_addr: u64::MAX - 100,
            ..rx_a
        };
        bad_input(&dev, "SET_VRING_ADDR log wraps", libc::EINVAL, || {
            dev.set_vring_addr(&wraps)
        })?;
        check!(
            vm_lck_kib()? == lck1,
            "locked_vm changed by refused requests: {} KiB, was {lck1} KiB",
            vm_lck_kib()?
        );
        log.clear()?;
        let want = loop_frames(&mut net, 3, 600, Some(RX_USED_LOG))?;
        expect_log(&log, &want, "after the refused requests")?;

        // A new log while logging: the writes go to it, the old one stays
        // as it was.
        log.clear()?;
        dev.set_log_base(log2.base())
            .ctx("SET_LOG_BASE (a second log) while logging")?;
        check!(
            vm_lck_kib()? == lck1,
            "locked_vm {} KiB after the log was replaced, {lck1} KiB before",
            vm_lck_kib()?
        );
        let want = loop_frames(&mut net, 3, 900, Some(RX_USED_LOG))?;
        expect_log(&log2, &want, "second log")?;
        expect_log(&log, &BTreeSet::new(), "first log after the switch")?;

        // LOG_ALL off while running: nothing more is logged.
        dev.set_features(f).ctx("SET_FEATURES without LOG_ALL")?;
        log2.clear()?;
        loop_frames(&mut net, 2, 300, None)?;
        expect_log(&log2, &BTreeSet::new(), "LOG_ALL off")?;

        // Suspended: both toggles accepted; on again after RESUME.
        dev.suspend().ctx("SUSPEND")?;
        dev.set_features(f | LOG_ALL)
            .ctx("SET_FEATURES(LOG_ALL) while suspended")?;
        dev.set_vring_addr(&rx_a)
            .ctx("SET_VRING_ADDR(F_LOG) while suspended")?;
        dev.resume().ctx("RESUME")?;
        let want = loop_frames(&mut net, 2, 300, Some(RX_USED_LOG))?;
        expect_log(&log2, &want, "after RESUME")?;

        // Base 0: no log, nothing logged, the pages given back.
        dev.set_log_base(0).ctx("SET_LOG_BASE(0)")?;
        check!(
            vm_lck_kib()? == lck0,
            "locked_vm {} KiB after SET_LOG_BASE(0), {lck0} KiB before the log",
            vm_lck_kib()?
        );
        log2.clear()?;
        loop_frames(&mut net, 2, 300, None)?;
        expect_log(&log2, &BTreeSet::new(), "log base 0")?;

        // A reset drops the log: with LOG_ALL on again, nothing is logged
        // until a new base.
        dev.set_log_base(log.base()).ctx("SET_LOG_BASE again")?;
        drop(net);
        check!(
            vm_lck_kib()? == lck0,
            "locked_vm {} KiB after a reset, {lck0} KiB before the log",
            vm_lck_kib()?
        );
        // Toggles before FEATURES_OK and before DRIVER_OK.
        dev.set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER)
            .ctx("status 3")?;
        dev.set_features(f | LOG_ALL)
            .ctx("SET_FEATURES(LOG_ALL) before FEATURES_OK")?;
        dev.set_features(f)
            .ctx("SET_FEATURES without LOG_ALL before FEATURES_OK")?;
        dev.set_status(
            VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK,
        )
        .ctx("FEATURES_OK")?;
        dev.set_features(f | LOG_ALL)
            .ctx("SET_FEATURES(LOG_ALL) after FEATURES_OK")?;
        check!(
            dev.get_status().ctx("GET_STATUS")? & VIRTIO_CONFIG_S_FEATURES_OK != 0,
            "FEATURES_OK lost"
        );
        // Close with a log pinned.
        dev.set_log_base(log.base())
            .ctx("SET_LOG_BASE before close")?;
        check!(
            vm_lck_kib()? == lck1,
            "locked_vm {} KiB with the log pinned, {lck1} KiB expected",
            vm_lck_kib()?
        );
    }
    let lck_after = vm_lck_kib()?;
    check!(
        lck_after == lck_before,
        "locked_vm {lck_after} KiB after close, {lck_before} KiB before open"
    );
    Ok(())
}

/// The bridge's devices write guest memory themselves: no LOG_ALL, and
/// the log requests are refused as before.
pub fn bridge_no_log_all(env: &Env) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    let f = dev.get_features().ctx("GET_FEATURES")?;
    check!(f & LOG_ALL == 0, "VHOST_F_LOG_ALL offered ({f:#x})");
    bad_input(&dev, "SET_LOG_BASE", libc::ENOTTY, || dev.set_log_base(0))?;
    let mut a = VhostVringAddr {
        index: 0,
        flags: F_LOG,
        desc_user_addr: 0x10_0000,
        avail_user_addr: 0x10_1000,
        used_user_addr: 0x10_2000,
        log_guest_addr: 0x10_2000,
    };
    bad_input(&dev, "SET_VRING_ADDR(F_LOG)", libc::EINVAL, || {
        dev.set_vring_addr(&a)
    })?;
    a.flags = 0;
    dev.set_vring_addr(&a)
        .ctx("SET_VRING_ADDR without the flag")?;
    Ok(())
}
