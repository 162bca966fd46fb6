// SPDX-License-Identifier: GPL-2.0 OR MIT
//! `VHOST_SET_MEM_TABLE` on any parent, and what the core forwards to a
//! parent that takes it: the C test parent (`tests/kmod/c_parent.ko`),
//! which shows in sysfs the tables, statuses and hard-IRQ interrupts it
//! saw. The `cparent_` tests run with `--c-parent`, once that module is
//! loaded (tests/vm/suite.sh).

use std::time::{Duration, Instant};

use libc::{E2BIG, EINVAL};
use vhost_mdev::driver::{self, NetDriver, NetDriverConfig};
use vhost_mdev::sysfs::MdevType;
use vhost_mdev::uapi::*;
use vhost_mdev::{IommuKind, MdevDevice, Transport, VhostBackend};

use crate::check;
use crate::util::*;

/// The C test parent's device name.
const C_PARENT: &str = "vhost_mdev_c_parent";

/// The type of the C test parent, which must be loaded.
fn c_parent_type(env: &Env) -> Result<MdevType, String> {
    env.sysfs
        .vhost_types()
        .ctx("vfio-vhost types")?
        .into_iter()
        .find(|t| t.parent == C_PARENT)
        .ok_or_else(|| format!("no type of parent {C_PARENT} (load tests/kmod/c_parent.ko)"))
}

/// `struct vhost_memory` as raw bytes: `nregions`, `padding`, then the
/// regions as given (whatever their number).
fn raw_table(nregions: u32, padding: u32, regions: &[MemRegion]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + 32 * regions.len());
    v.extend_from_slice(&nregions.to_ne_bytes());
    v.extend_from_slice(&padding.to_ne_bytes());
    for r in regions {
        for f in [
            r.guest_phys_addr,
            r.memory_size,
            r.userspace_addr,
            r.flags_padding,
        ] {
            v.extend_from_slice(&f.to_ne_bytes());
        }
    }
    v
}

/// `n` valid, disjoint regions of 2 MiB, 4 MiB apart.
fn disjoint(n: usize) -> Vec<MemRegion> {
    (0..n as u64)
        .map(|i| {
            MemRegion::new(
                0x1_0000_0000 + i * 0x40_0000,
                0x20_0000,
                0x7f00_0000_0000 + i * 0x20_0000,
            )
        })
        .collect()
}

/// Tables the device must accept: empty; one region ending at the last
/// IOVA; touching (not overlapping) IOVA ranges; two IOVA ranges on the
/// same user memory; the most regions.
fn good_tables() -> Vec<(&'static str, Vec<MemRegion>)> {
    vec![
        ("an empty table", vec![]),
        (
            "a region ending at the last IOVA and user address",
            vec![MemRegion::new(
                0u64.wrapping_sub(0x1000),
                0x1000,
                0u64.wrapping_sub(0x1000),
            )],
        ),
        (
            "touching IOVA ranges",
            vec![
                MemRegion::new(0x1000, 0x1000, 0x10_0000),
                MemRegion::new(0x2000, 0x1000, 0x20_0000),
            ],
        ),
        (
            "two IOVA ranges on the same user memory",
            vec![
                MemRegion::new(0, 0x10_0000, 0x7f00_0000_0000),
                MemRegion::new(0x100_0000, 0x10_0000, 0x7f00_0000_0000),
            ],
        ),
        ("64 regions", disjoint(MAX_MEM_REGIONS)),
    ]
}

/// Payloads the device must refuse, with their errno, and whether the
/// case is one of the payload's length (the region transport only: an
/// ioctl's argument has no length; the kernel reads what `nregions`
/// says).
fn bad_tables() -> Vec<(&'static str, Vec<u8>, i32, bool)> {
    let ok = MemRegion::new(0x1000, 0x1000, 0x10_0000);
    let max = u64::MAX;
    let mut v = vec![
        ("65 regions", raw_table(65, 0, &disjoint(65)), E2BIG, false),
        (
            "nregions 65 with no region",
            raw_table(65, 0, &[]),
            E2BIG,
            false,
        ),
        (
            "nregions 2^32 - 1 with no region",
            raw_table(u32::MAX, 0, &[]),
            E2BIG,
            false,
        ),
        ("padding 1", raw_table(1, 1, &[ok]), EINVAL, false),
        (
            "a region of size 0",
            raw_table(1, 0, &[MemRegion::new(0x1000, 0, 0x10_0000)]),
            EINVAL,
            false,
        ),
        (
            "an IOVA range that wraps",
            raw_table(1, 0, &[MemRegion::new(max - 0xfff, 0x2000, 0x10_0000)]),
            EINVAL,
            false,
        ),
        (
            "a user address range that wraps",
            raw_table(1, 0, &[MemRegion::new(0x1000, 0x2000, max - 0xfff)]),
            EINVAL,
            false,
        ),
        (
            "the largest size from IOVA 2",
            raw_table(1, 0, &[MemRegion::new(2, max, 0)]),
            EINVAL,
            false,
        ),
        (
            "overlapping IOVA ranges",
            raw_table(
                2,
                0,
                &[
                    MemRegion::new(0x1000, 0x2000, 0x10_0000),
                    MemRegion::new(0x2000, 0x1000, 0x20_0000),
                ],
            ),
            EINVAL,
            false,
        ),
        (
            "one IOVA range inside another, last of 64",
            {
                let mut r = disjoint(63);
                r.push(MemRegion::new(0x1_0000_1000, 0x1000, 0x10_0000));
                raw_table(64, 0, &r)
            },
            EINVAL,
            false,
        ),
        (
            "the same region twice",
            raw_table(2, 0, &[ok, ok]),
            EINVAL,
            false,
        ),
        (
            "flags_padding 1",
            raw_table(
                1,
                0,
                &[MemRegion {
                    flags_padding: 1,
                    ..ok
                }],
            ),
            EINVAL,
            false,
        ),
        (
            "nregions 2 with one region",
            raw_table(2, 0, &[ok]),
            EINVAL,
            true,
        ),
        (
            "nregions 1 with two regions",
            raw_table(1, 0, &[ok, MemRegion::new(0x10_0000, 0x1000, 0)]),
            EINVAL,
            true,
        ),
        (
            "a 4-byte payload",
            0u32.to_ne_bytes().to_vec(),
            EINVAL,
            true,
        ),
        ("no payload", vec![], EINVAL, true),
    ];
    // A region cut short (the payload is not a whole number of regions).
    let mut cut = raw_table(1, 0, &[ok]);
    cut.truncate(cut.len() - 8);
    v.push(("a region cut short", cut, EINVAL, true));
    v
}

/// What a parent that keeps the table shows; `None` for one without the
/// op (the sample).
type Seen<'a> = Option<&'a Inst>;

fn seen_table(seen: Seen<'_>) -> Result<Option<String>, String> {
    seen.map(|i| i.attr("mem_table")).transpose()
}

/// The C parent's `mem_table` after `count` tables, the last `regions`.
fn expected_seen(count: u32, regions: &[MemRegion]) -> String {
    let mut s = count.to_string();
    for r in regions {
        s.push_str(&format!(
            "\n{:x} {:x} {:x}",
            r.guest_phys_addr, r.memory_size, r.userspace_addr
        ));
    }
    s
}

/// Sends every good and bad table on both transports; bad ones fail with
/// their errno and change neither the device state nor what the parent
/// saw. Returns the number of tables the parent was given.
fn tables_on(dev: &MdevDevice, seen: Seen<'_>, mut count: u32) -> Result<u32, String> {
    for t in [Transport::Region, Transport::Ioctl] {
        dev.set_transport(t);
        for (what, regions) in good_tables() {
            dev.set_mem_table(&regions)
                .ctx(&format!("{t}: {what}: VHOST_SET_MEM_TABLE"))?;
            count += 1;
            if let Some(s) = seen_table(seen)? {
                let want = expected_seen(count, &regions);
                check!(
                    s == want,
                    "{t}: {what}: the parent saw {s:?}, expected {want:?}"
                );
            }
        }
        for (what, payload, errno, length_case) in bad_tables() {
            if length_case && matches!(t, Transport::Ioctl) {
                continue;
            }
            let before = seen_table(seen)?;
            bad_input(dev, &format!("{t}: {what}"), errno, || {
                dev.send(VHOST_SET_MEM_TABLE, 0, &payload)
            })?;
            let after = seen_table(seen)?;
            check!(
                before == after,
                "{t}: {what}: the parent was given it: before {before:?}, after {after:?}"
            );
        }
    }
    dev.set_transport(Transport::Region);
    Ok(count)
}

/// A parent without `set_mem_table` (the sample): good tables succeed
/// and are ignored, bad ones are refused all the same.
pub fn mem_table_ignored(env: &Env) -> TestResult {
    let inst = Inst::create(env)?;
    for kind in [IommuKind::Type1, IommuKind::Iommufd] {
        if matches!(kind, IommuKind::Iommufd) {
            iommufd_available(&inst)?;
        }
        let dev = inst.open(kind)?;
        tables_on(&dev, None, 0).map_err(|e| format!("{kind}: {e}"))?;
    }
    // The driver sends the table of its mappings at bring-up; the sample
    // runs traffic all the same.
    let dev = inst.open(IommuKind::Type1)?;
    dev.set_mem_table(&[MemRegion::new(0, 0x1000, 0x1000)])
        .ctx("VHOST_SET_MEM_TABLE")?;
    let mut drv = NetDriver::start(&dev, NetDriverConfig::default()).ctx("start driver")?;
    driver::ping(&mut drv, 5, 0).ctx("traffic after the tables")?;
    Ok(())
}

const FEATURES: u64 = (1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_F_ACCESS_PLATFORM);
const ACK_DRIVER: u8 = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
const FEATURES_OK: u8 = ACK_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK;
const DRIVER_OK: u8 = FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK;

/// The C parent gets every valid table, in any status, exactly as sent,
/// and none of the bad ones.
pub fn cparent_mem_table(env: &Env) -> TestResult {
    let ty = c_parent_type(env)?;
    let inst = Inst::create_of(env, &ty)?;
    check!(
        inst.attr("mem_table")? == "0",
        "a new instance shows a table: {:?}",
        inst.attr("mem_table")?
    );
    let dev = inst.open(IommuKind::Type1)?;
    let mut count = tables_on(&dev, Some(&inst), 0)?;
    // While the device runs (a VMM resends its table on every memory map
    // change), on both transports.
    dev.set_features(FEATURES).ctx("SET_FEATURES")?;
    dev.set_status(FEATURES_OK).ctx("SET_STATUS FEATURES_OK")?;
    dev.set_status(DRIVER_OK).ctx("SET_STATUS DRIVER_OK")?;
    check!(
        dev.get_status().ctx("GET_STATUS")? == DRIVER_OK,
        "not running"
    );
    for t in [Transport::Region, Transport::Ioctl] {
        dev.set_transport(t);
        let table = [
            MemRegion::new(0x4000_0000, 0x8000_0000, 0x7f12_3400_0000),
            MemRegion::new(0, 0xa_0000, 0x7f00_0000_0000),
        ];
        dev.set_mem_table(&table)
            .ctx(&format!("{t}: VHOST_SET_MEM_TABLE while running"))?;
        count += 1;
        let s = inst.attr("mem_table")?;
        let want = expected_seen(count, &table);
        check!(
            s == want,
            "{t}: while running the parent saw {s:?}, expected {want:?}"
        );
    }
    dev.set_transport(Transport::Region);
    tables_on(&dev, Some(&inst), count).map_err(|e| format!("while running: {e}"))?;
    Ok(())
}

/// Reads a counter attribute of the C parent.
fn counter(inst: &Inst, name: &str) -> Result<u64, String> {
    let s = inst.attr(name)?;
    s.parse()
        .map_err(|_| format!("{name}: not a number: {s:?}"))
}

/// Waits until counter `name` reaches `want` (the hrtimer fires 1 ms
/// after the write; TCG may take longer).
fn wait_counter(inst: &Inst, name: &str, want: u64) -> TestResult {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = counter(inst, name)?;
        if v == want {
            return Ok(());
        }
        check!(v < want, "{name} is {v}, beyond {want}");
        check!(
            Instant::now() < deadline,
            "{name} is {v} after 5 s, expected {want}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits up to `timeout` for a non-blocking eventfd to count, and returns
/// its count (0 when it never did), which the read resets.
fn signals(fd: &vmm_sys_util::eventfd::EventFd, timeout: Duration) -> Result<u64, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match fd.read() {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("read eventfd: {e}")),
        }
        if Instant::now() >= deadline {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `vhost_mdev_vq_interrupt()` from a hard IRQ handler (the C parent's
/// hrtimer in HRTIMER_MODE_REL_HARD) signals the driver's call eventfd of
/// that queue, and no other; an index beyond the queues signals nothing.
/// Lockdep (debug kernel) reports an IRQ lock that is not IRQ-safe, and
/// the harness fails on kernel reports.
pub fn cparent_vq_interrupt_hardirq(env: &Env) -> TestResult {
    let ty = c_parent_type(env)?;
    let inst = Inst::create_of(env, &ty)?;
    let dev = inst.open(IommuKind::Type1)?;
    let calls = [eventfd()?, eventfd()?];
    for (i, c) in calls.iter().enumerate() {
        dev.set_vring_call(i as u32, Some(c))
            .ctx(&format!("attach call eventfd {i}"))?;
    }
    let mut fired_count = counter(&inst, "hardirq_interrupts")?;
    for round in 0..3 {
        for q in 0..2usize {
            inst.set_attr("fire_irq", &q.to_string())
                .ctx(&format!("write {q} to fire_irq"))?;
            fired_count += 1;
            wait_counter(&inst, "hardirq_interrupts", fired_count)?;
            let n = signals(&calls[q], Duration::from_secs(5))?;
            check!(
                n == 1,
                "round {round}: the call eventfd of queue {q} was signalled {n} times, expected once"
            );
            check!(
                !fired(&calls[1 - q], Duration::from_millis(50))?,
                "round {round}: the interrupt of queue {q} signalled queue {}",
                1 - q
            );
        }
    }
    // Beyond the two queues: the core drops it, in the IRQ handler.
    inst.set_attr("fire_irq", "7").ctx("write 7 to fire_irq")?;
    fired_count += 1;
    wait_counter(&inst, "hardirq_interrupts", fired_count)?;
    for (i, c) in calls.iter().enumerate() {
        check!(
            !fired(c, Duration::from_millis(50))?,
            "an interrupt of queue 7 signalled queue {i}"
        );
    }
    check!(
        counter(&inst, "other_interrupts")? == 0,
        "the C parent's timer ran outside hard IRQ context"
    );
    // A detached eventfd is not signalled, and nothing breaks.
    dev.set_vring_call(0, None).ctx("detach call eventfd 0")?;
    inst.set_attr("fire_irq", "0").ctx("write 0 to fire_irq")?;
    fired_count += 1;
    wait_counter(&inst, "hardirq_interrupts", fired_count)?;
    check!(
        !fired(&calls[0], Duration::from_millis(50))?,
        "a detached call eventfd fired"
    );
    if let Ok(s) = std::fs::read_to_string("/proc/lockdep_stats") {
        check!(
            s.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["debug_locks:", "1"]),
            "lockdep turned itself off (a report): {}",
            s.lines().find(|l| l.contains("debug_locks")).unwrap_or("")
        );
    }
    Ok(())
}

/// A device that refuses FEATURES_OK through `set_status`: the request
/// succeeds (virtio: the driver reads the status back), GET_STATUS shows
/// FEATURES_OK clear, DRIVER_OK is refused; after a reset, with the
/// refusal lifted, the same driver gets through.
pub fn cparent_features_ok_refused(env: &Env) -> TestResult {
    let ty = c_parent_type(env)?;
    let inst = Inst::create_of(env, &ty)?;
    inst.set_attr("refuse_features_ok", "1")
        .ctx("write refuse_features_ok")?;
    let dev = inst.open(IommuKind::Type1)?;
    let status = |want: u8, what: &str| -> TestResult {
        let got = dev.get_status().ctx("GET_STATUS")?;
        check!(
            got == want,
            "{what}: GET_STATUS {got:#x}, expected {want:#x}"
        );
        let seen = inst.attr("status")?;
        check!(
            seen == want.to_string(),
            "{what}: the parent's status is {seen}, expected {want}"
        );
        Ok(())
    };
    for round in 0..2 {
        dev.set_features(FEATURES).ctx("SET_FEATURES")?;
        dev.set_status(ACK_DRIVER).ctx("SET_STATUS ACK|DRIVER")?;
        status(ACK_DRIVER, "ACK|DRIVER")?;
        dev.set_status(FEATURES_OK)
            .ctx("SET_STATUS FEATURES_OK (refused by the device)")?;
        status(ACK_DRIVER, &format!("round {round}: FEATURES_OK refused"))?;
        expect_errno(
            dev.set_status(DRIVER_OK),
            EINVAL,
            "DRIVER_OK without FEATURES_OK",
        )?;
        status(ACK_DRIVER, "DRIVER_OK refused")?;
        dev.set_status(0).ctx("reset")?;
        status(0, "after the reset")?;
    }
    inst.set_attr("refuse_features_ok", "0")
        .ctx("write refuse_features_ok")?;
    dev.set_features(FEATURES).ctx("SET_FEATURES")?;
    dev.set_status(ACK_DRIVER).ctx("SET_STATUS ACK|DRIVER")?;
    dev.set_status(FEATURES_OK).ctx("SET_STATUS FEATURES_OK")?;
    status(FEATURES_OK, "FEATURES_OK accepted")?;
    dev.set_status(DRIVER_OK).ctx("SET_STATUS DRIVER_OK")?;
    status(DRIVER_OK, "DRIVER_OK")?;
    // Refusing FEATURES_OK now changes nothing of a running device.
    inst.set_attr("refuse_features_ok", "1")
        .ctx("write refuse_features_ok")?;
    status(DRIVER_OK, "running, refusal set again")?;
    dev.set_status(0).ctx("reset")?;
    status(0, "after the last reset")?;
    Ok(())
}

/// `mmap` of the device fd with `prot` and `flags` at `offset`, `len`
/// bytes; the mapping or the errno.
fn map(dev: &MdevDevice, offset: u64, len: usize, prot: i32, flags: i32) -> Result<*mut u8, i32> {
    use std::os::fd::AsRawFd;
    // SAFETY: a new mapping of the device fd at an address of the
    // kernel's choice; nothing aliases it.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            flags,
            dev.vfio().file().as_raw_fd(),
            offset as libc::off_t,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    Ok(p.cast())
}

/// A parent that offers doorbell pages (`get_vq_notification`): region 1
/// says it can be mapped, and a 2-byte write through the mapping of a
/// queue's page reaches the device's doorbell without a trap (the C
/// parent shows the value); mappings that are not one shared, write-only
/// page of a queue are refused, and so is making one readable.
pub fn cparent_doorbell_mmap(env: &Env) -> TestResult {
    let ty = c_parent_type(env)?;
    let inst = Inst::create_of(env, &ty)?;
    let dev = inst.open(IommuKind::Type1)?;
    let r1 = dev
        .region_info(VHOST_VFIO_REGION_NOTIFY)
        .ctx("region 1 info")?;
    let mmap_flag = vfio_bindings::bindings::vfio::VFIO_REGION_INFO_FLAG_MMAP;
    check!(
        r1.flags & mmap_flag != 0,
        "region 1 does not offer mmap (flags {:#x})",
        r1.flags
    );
    let page = vhost_mdev::device::page_size();
    let base = r1.offset;
    let (w, shared) = (libc::PROT_WRITE, libc::MAP_SHARED);
    for round in 0..2u16 {
        for q in 0..2u16 {
            let p = map(&dev, base + u64::from(q) * page, page as usize, w, shared)
                .map_err(|e| format!("mmap of queue {q}'s doorbell: errno {e}"))?;
            let v = 0x100 * (round + 1) + q;
            // SAFETY: `p` is a writable mapping of at least 2 bytes,
            // aligned to a page.
            unsafe { std::ptr::write_volatile(p.cast::<u16>(), v) };
            let seen = inst.attr("doorbell")?;
            // SAFETY: `p` is the mapping of one page made above.
            unsafe { libc::munmap(p.cast(), page as usize) };
            check!(
                seen == v.to_string(),
                "queue {q}: wrote {v} through the mapping, the device saw {seen}"
            );
        }
    }
    // A readable mapping, a private one, two pages, a queue beyond the
    // two, and region 0 are refused.
    let bad: [(&str, u64, u64, i32, i32); 5] = [
        (
            "PROT_READ | PROT_WRITE",
            base,
            page,
            libc::PROT_READ | w,
            shared,
        ),
        ("MAP_PRIVATE", base, page, w, libc::MAP_PRIVATE),
        ("two pages", base, 2 * page, w, shared),
        ("queue 2 of 2", base + 2 * page, page, w, shared),
        ("region 0", 0, page, w, shared),
    ];
    for (what, off, len, prot, flags) in bad {
        match map(&dev, off, len as usize, prot, flags) {
            Ok(p) => {
                // SAFETY: the mapping of `len` bytes made by `map`.
                unsafe { libc::munmap(p.cast(), len as usize) };
                return Err(format!("mmap with {what} succeeded"));
            }
            Err(e) => check!(e == EINVAL, "mmap with {what}: errno {e}, expected EINVAL"),
        }
    }
    // A write-only mapping may not become readable.
    let p = map(&dev, base, page as usize, w, shared).map_err(|e| format!("mmap: errno {e}"))?;
    // SAFETY: `p` is the mapping of one page made above.
    let r = unsafe { libc::mprotect(p.cast(), page as usize, libc::PROT_READ | w) };
    // SAFETY: as above.
    unsafe { libc::munmap(p.cast(), page as usize) };
    check!(r != 0, "mprotect made the doorbell mapping readable");
    Ok(())
}
