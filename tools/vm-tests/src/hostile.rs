// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Hostile drivers and vanishing memory: broken rings, ring addresses the
//! IOMMU does not map, memory unmapped or an IOAS detached or replaced
//! under a running device. Each must put the device into
//! DEVICE_NEEDS_RESET (config IRQ fired, `ring_errors` counted) without an
//! oops, and a reset must bring it back.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use vfio_bindings::bindings::vfio as vb;
use vhost_mdev::driver::{self, NetDriver, NetDriverConfig, TEST_SRC_MAC};
use vhost_mdev::net::{build_frame, verify_frame, VirtioNetHdr, NET_HDR_LEN};
use vhost_mdev::uapi::*;
use vhost_mdev::virtq::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use vhost_mdev::{DmaMapper, IommuKind, MdevDevice, VhostBackend};

use crate::check;
use crate::raw::{wait_needs_reset, RawNet, RawOpts, RXQ, TXQ};
use crate::util::*;

/// What a hostile driver does to its rings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostile {
    /// TX descriptors 10 -> 11 -> 10 -> ...
    LoopChain,
    /// An available-ring head >= the queue size.
    HeadOutOfRange,
    /// A `next` >= the queue size.
    NextOutOfRange,
    /// `avail.idx` more than the queue size ahead of the device.
    AvailIdxAhead,
    /// An indirect table at an IOVA nothing maps.
    IndirectOutside,
    /// An indirect table longer than 1024 entries.
    IndirectTooLong,
    /// A TX buffer whose length runs past the end of the mapped memory.
    LenPastMapping,
    /// A device-writable descriptor on TX.
    WritableOnTx,
    /// A device-readable descriptor on RX.
    ReadableOnRx,
}

const UNMAPPED_IOVA: u64 = 0x7_0000_0000;

fn drain(fd: &vmm_sys_util::eventfd::EventFd) {
    let _ = fd.read();
}

/// Checks the aftermath of a fatal device error: NEEDS_RESET read back,
/// the config eventfd fired, `ring_errors` up by exactly one.
fn expect_needs_reset(
    inst: &Inst,
    dev: &MdevDevice,
    cfg_irq: &vmm_sys_util::eventfd::EventFd,
    errors_before: u64,
    what: &str,
) -> TestResult {
    let s = wait_needs_reset(dev, Duration::from_secs(10)).ctx(what)?;
    check!(
        s & VIRTIO_CONFIG_S_NEEDS_RESET != 0,
        "{what}: status {s:#x}"
    );
    check!(
        fired(cfg_irq, Duration::from_secs(2))?,
        "{what}: NEEDS_RESET set (status {s:#x}) but the config eventfd did not fire"
    );
    let errs = inst.stat("ring_errors")?;
    check!(
        errs == errors_before + 1,
        "{what}: ring_errors {errors_before} -> {errs}, expected +1"
    );
    // QEMU and Linux read the status, OR in a bit and write it back: as on
    // vhost_vdpa, that is accepted and NEEDS_RESET stays; dropping it
    // without a reset is EINVAL.
    dev.set_status(s)
        .ctx(&format!("{what}: status {s:#x} written back"))?;
    dev.set_status(s | VIRTIO_CONFIG_S_FAILED)
        .ctx(&format!("{what}: status {s:#x}|FAILED written back"))?;
    let s2 = dev.get_status().ctx("GET_STATUS")?;
    check!(
        s2 == s | VIRTIO_CONFIG_S_FAILED,
        "{what}: status {s2:#x} after writing back {s:#x}|FAILED"
    );
    bad_input(
        dev,
        &format!("{what}: NEEDS_RESET dropped"),
        libc::EINVAL,
        || dev.set_status(s2 & !VIRTIO_CONFIG_S_NEEDS_RESET),
    )?;
    Ok(())
}

/// Resets with status 0 and proves the instance works again.
fn recover(dev: &MdevDevice, iova_base: u64, what: &str) -> TestResult {
    dev.set_status(0).ctx(&format!("{what}: status 0"))?;
    let s = dev.get_status().ctx("GET_STATUS")?;
    check!(s == 0, "{what}: status {s:#x} after reset");
    let mut drv = NetDriver::start(
        dev,
        NetDriverConfig {
            iova_base,
            ..Default::default()
        },
    )
    .ctx(&format!("{what}: restart after reset"))?;
    driver::ping(&mut drv, 10, 0).ctx(&format!("{what}: traffic after reset"))?;
    Ok(())
}

/// A hostile driver breaks its rings after a good frame went through.
pub fn hostile(env: &Env, case: Hostile) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    let errors = inst.stat("ring_errors")?;
    {
        let mut net = RawNet::start(
            &dev,
            RawOpts {
                indirect: true,
                post_rx: case != Hostile::ReadableOnRx,
                ..Default::default()
            },
        )?;
        let frame = build_frame(net.config.mac, TEST_SRC_MAC, 0, 100).ctx("frame")?;
        if case != Hostile::ReadableOnRx {
            net.send(&frame)?;
            let (_, got) = net.recv(Duration::from_secs(5)).ctx("good frame")?;
            verify_frame(&frame, &got).ctx("good frame")?;
            net.wait_tx_done(Duration::from_secs(5))?;
        }
        drain(&net.cfg_irq);
        let size = net.tx.size();
        // A well-formed frame in TX buffer 0 for the hostile chains to use.
        net.tx
            .write_buf(0, 0, &VirtioNetHdr::default().to_bytes())
            .ctx("buf")?;
        net.tx.write_buf(0, NET_HDR_LEN, &frame).ctx("buf")?;
        let buf = net.tx.buf_iova(0).ctx("buf")?;
        let blen = (NET_HDR_LEN + frame.len()) as u32;
        let ai = net.tx.avail_idx();
        let next = ai.wrapping_add(1);
        match case {
            Hostile::LoopChain => {
                net.write_desc(TXQ, 10, buf, blen, VRING_DESC_F_NEXT, 11)?;
                net.write_desc(TXQ, 11, buf, blen, VRING_DESC_F_NEXT, 10)?;
                net.write_avail(TXQ, ai, 10, next)?;
            }
            Hostile::HeadOutOfRange => net.write_avail(TXQ, ai, size + 3, next)?,
            Hostile::NextOutOfRange => {
                net.write_desc(TXQ, 10, buf, blen, VRING_DESC_F_NEXT, size + 1)?;
                net.write_avail(TXQ, ai, 10, next)?;
            }
            Hostile::AvailIdxAhead => {
                net.write_desc(TXQ, 10, buf, blen, 0, 0)?;
                net.write_avail(TXQ, ai, 10, ai.wrapping_add(size + 1))?;
            }
            Hostile::IndirectOutside => {
                net.write_desc(TXQ, 10, UNMAPPED_IOVA, 32, VRING_DESC_F_INDIRECT, 0)?;
                net.write_avail(TXQ, ai, 10, next)?;
            }
            Hostile::IndirectTooLong => {
                net.write_desc(TXQ, 10, buf, 16 * 2048, VRING_DESC_F_INDIRECT, 0)?;
                net.write_avail(TXQ, ai, 10, next)?;
            }
            Hostile::LenPastMapping => {
                let end = net.tx.iova() + net.tx.memory().len() as u64;
                net.write_desc(TXQ, 10, end - 64, 16384, 0, 0)?;
                net.write_avail(TXQ, ai, 10, next)?;
            }
            Hostile::WritableOnTx => {
                net.write_desc(TXQ, 10, buf, blen, VRING_DESC_F_WRITE, 0)?;
                net.write_avail(TXQ, ai, 10, next)?;
            }
            Hostile::ReadableOnRx => {
                let rbuf = net.rx.buf_iova(0).ctx("RX buf")?;
                net.write_desc(RXQ, 0, rbuf, 2048, 0, 0)?;
                net.write_avail(RXQ, 0, 0, 1)?;
                dev.notify(RXQ).ctx("kick RX")?;
                net.write_desc(TXQ, 10, buf, blen, 0, 0)?;
                net.write_avail(TXQ, ai, 10, next)?;
            }
        }
        dev.notify(TXQ).ctx("kick TX")?;
        expect_needs_reset(&inst, &dev, &net.cfg_irq, errors, &format!("{case:?}"))?;
        // Broken stays broken until the reset: another kick changes nothing.
        dev.notify(TXQ).ctx("kick TX again")?;
        std::thread::sleep(Duration::from_millis(100));
        let s = dev.get_status().ctx("GET_STATUS")?;
        check!(
            s & VIRTIO_CONFIG_S_NEEDS_RESET != 0,
            "NEEDS_RESET cleared without a reset (status {s:#x})"
        );
        check!(
            inst.stat("ring_errors")? == errors + 1,
            "ring_errors counted again for a kick of a stopped device"
        );
    }
    recover(&dev, 0x4000_0000, &format!("{case:?}"))?;
    Ok(())
}

/// DRIVER_OK with ring addresses that no IOMMU mapping covers, then a
/// kick: NEEDS_RESET and the config IRQ, never an access elsewhere.
pub fn unmapped_rings(env: &Env, kind: IommuKind) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = open_kind(&inst, kind)?;
    let errors = inst.stat("ring_errors")?;
    let cfg = eventfd()?;
    dev.set_config_call(Some(&cfg)).ctx("config eventfd")?;
    driver::negotiate(
        &dev,
        (1u64 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_F_ACCESS_PLATFORM),
    )
    .ctx("negotiate")?;
    for q in 0..2u32 {
        let base = UNMAPPED_IOVA + u64::from(q) * 0x10000;
        dev.set_vring_num(q, 64).ctx("SET_VRING_NUM")?;
        let rings = VhostVringAddr {
            index: q,
            flags: 0,
            desc_user_addr: base,
            avail_user_addr: base + 0x1000,
            used_user_addr: base + 0x2000,
            log_guest_addr: 0,
        };
        dev.set_vring_addr(&rings).ctx("SET_VRING_ADDR")?;
        // Nothing is mapped there in this process either: the ring indexes
        // are out of reach too.
        dev.set_vring_hva(&rings).ctx("SET_VRING_HVA")?;
        dev.set_vring_base(q, 0).ctx("SET_VRING_BASE")?;
        dev.set_vring_enable(q, true).ctx("SET_VRING_ENABLE")?;
    }
    dev.set_status(
        VIRTIO_CONFIG_S_ACKNOWLEDGE
            | VIRTIO_CONFIG_S_DRIVER
            | VIRTIO_CONFIG_S_FEATURES_OK
            | VIRTIO_CONFIG_S_DRIVER_OK,
    )
    .ctx("DRIVER_OK (addresses are not checked against the IOMMU here)")?;
    dev.notify(1).ctx("kick TX")?;
    expect_needs_reset(&inst, &dev, &cfg, errors, "unmapped rings")?;
    dev.set_config_call(None).ctx("detach config eventfd")?;
    recover(&dev, 0x1000_0000, "unmapped rings")
}

/// Which part of a running device's memory is unmapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmap {
    /// The TX queue (rings and buffers).
    Tx,
    /// The RX queue (rings and buffers the device writes).
    Rx,
}

/// Unmaps queue memory under a running device, then kicks: the device
/// goes NEEDS_RESET and never touches the old pages (they stay
/// allocated in this process, so a stale translation would show).
pub fn unmap_while_running(env: &Env, kind: IommuKind, which: Unmap) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = open_kind(&inst, kind)?;
    let errors = inst.stat("ring_errors")?;
    {
        let mut net = RawNet::start(&dev, RawOpts::default())?;
        let mac = net.config.mac;
        for seq in 0..5 {
            let f = build_frame(mac, TEST_SRC_MAC, seq, 200).ctx("frame")?;
            net.send(&f)?;
            let (_, got) = net.recv(Duration::from_secs(5)).ctx("traffic")?;
            verify_frame(&f, &got).ctx("traffic")?;
            net.wait_tx_done(Duration::from_secs(5))?;
        }
        drain(&net.cfg_irq);
        let (iova, len) = match which {
            Unmap::Tx => (net.tx.iova(), net.tx.memory().len()),
            Unmap::Rx => (net.rx.iova(), net.rx.memory().len()),
        };
        dev.unmap_dma(iova, len as u64)
            .ctx("unmap under the running device")?;
        let frame = build_frame(mac, TEST_SRC_MAC, 5, 300).ctx("frame")?;
        // What the device may write: the whole RX queue, or TX's used ring.
        let snap = |net: &RawNet| -> Result<Vec<u8>, String> {
            let (m, off, n) = match which {
                Unmap::Rx => (net.rx.memory(), 0, net.rx.memory().len()),
                Unmap::Tx => {
                    let l = net.tx.layout();
                    (net.tx.memory(), l.used, l.len - l.used)
                }
            };
            let mut v = vec![0u8; n];
            m.read(off, &mut v).ctx("snapshot")?;
            Ok(v)
        };
        let before = snap(&net)?;
        // Queue and kick (the driver's own writes go to TX's descriptor
        // and available rings and its buffer).
        net.send(&frame)?;
        expect_needs_reset(&inst, &dev, &net.cfg_irq, errors, "unmap while running")?;
        // Give a misbehaving device time to write, then compare.
        dev.notify(TXQ).ctx("kick")?;
        std::thread::sleep(Duration::from_millis(200));
        let after = snap(&net)?;
        if before != after {
            let at = before
                .iter()
                .zip(&after)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Err(format!(
                "the device wrote to unmapped {which:?} memory (first change at byte {at} of \
                 the checked range)"
            ));
        }
    }
    recover(&dev, 0x4000_0000, "unmap while running")
}

fn open_kind(inst: &Inst, kind: IommuKind) -> Result<MdevDevice, String> {
    if kind == IommuKind::Iommufd {
        iommufd_available(inst).map_err(|e| format!("iommufd prerequisite missing: {e}"))?;
    }
    inst.open(kind)
}

/// Loops 1000-byte frames with up to 64 in flight for `dur`; returns how
/// many came back, or the first error (a timeout once the device stops).
fn pump(drv: &mut NetDriver<&MdevDevice>, dur: Duration) -> Result<u64, String> {
    let f = build_frame(drv.mac(), TEST_SRC_MAC, 7, 1000).ctx("frame")?;
    let end = Instant::now() + dur;
    let (mut n, mut inflight) = (0u64, 0usize);
    while Instant::now() < end {
        while inflight < 64 && drv.queue_tx(&f).ctx("queue")? {
            inflight += 1;
        }
        drv.flush_tx().ctx("kick")?;
        let got = drv.recv().ctx("receive")?;
        verify_frame(&f, &got).ctx("frame")?;
        inflight -= 1;
        n += 1;
        while let Some(got) = drv.try_recv().ctx("receive")? {
            verify_frame(&f, &got).ctx("frame")?;
            inflight -= 1;
            n += 1;
        }
    }
    Ok(n)
}

fn ioas_alloc(ifd: &File) -> Result<u32, String> {
    let mut a = iommufd_bindings::iommu_ioas_alloc {
        size: std::mem::size_of::<iommufd_bindings::iommu_ioas_alloc>() as u32,
        flags: 0,
        out_ioas_id: 0,
    };
    // SAFETY: a valid iommu_ioas_alloc the kernel fills.
    let r = unsafe { libc::ioctl(ifd.as_raw_fd(), IOMMU_IOAS_ALLOC(), &mut a) };
    if r < 0 {
        return Err(format!(
            "IOMMU_IOAS_ALLOC: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(a.out_ioas_id)
}

fn attach_pt(dev: &MdevDevice, pt_id: u32) -> Result<(), String> {
    let mut a = vb::vfio_device_attach_iommufd_pt {
        argsz: std::mem::offset_of!(vb::vfio_device_attach_iommufd_pt, pasid) as u32,
        flags: 0,
        pt_id,
        pasid: 0,
    };
    // SAFETY: a valid vfio_device_attach_iommufd_pt of argsz bytes.
    let r = unsafe {
        libc::ioctl(
            dev.vfio().file().as_raw_fd(),
            VFIO_DEVICE_ATTACH_IOMMUFD_PT(),
            &mut a,
        )
    };
    if r < 0 {
        return Err(format!(
            "VFIO_DEVICE_ATTACH_IOMMUFD_PT({pt_id}): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn detach_pt(dev: &MdevDevice) -> Result<(), String> {
    let a = vb::vfio_device_detach_iommufd_pt {
        argsz: std::mem::offset_of!(vb::vfio_device_detach_iommufd_pt, pasid) as u32,
        flags: 0,
        pasid: 0,
    };
    // SAFETY: a valid vfio_device_detach_iommufd_pt of argsz bytes.
    let r = unsafe {
        libc::ioctl(
            dev.vfio().file().as_raw_fd(),
            VFIO_DEVICE_DETACH_IOMMUFD_PT(),
            &a,
        )
    };
    if r < 0 {
        return Err(format!(
            "VFIO_DEVICE_DETACH_IOMMUFD_PT: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Detaches the device from its IOAS (or replaces the IOAS with an empty
/// one) while another thread moves frames: no oops, the device goes
/// NEEDS_RESET or stops moving frames, and after re-attaching and a reset
/// it works again.
pub fn iommufd_ioas_change(env: &Env, replace: bool) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = open_kind(&inst, IommuKind::Iommufd)?;
    let (ifd, ioas1) = dev
        .vfio()
        .iommufd()
        .ok_or("device opened through iommufd has no iommufd")?;
    let ioas2 = if replace {
        Some(ioas_alloc(ifd)?)
    } else {
        None
    };
    let what = if replace {
        "IOAS replace"
    } else {
        "IOAS detach"
    };
    let cfg = eventfd()?;
    for round in 0..scale(1, 3) {
        let mut drv = NetDriver::start(
            &dev,
            NetDriverConfig {
                queue_size: 128,
                iova_base: 0x1000_0000 + round as u64 * 0x1000_0000,
                timeout: Duration::from_secs(2),
                ..Default::default()
            },
        )
        .ctx("start")?;
        dev.set_config_call(Some(&cfg)).ctx("config eventfd")?;
        driver::ping(&mut drv, 5, 0).ctx("traffic before")?;
        let (bench, changed) = std::thread::scope(|s| {
            let h = s.spawn(|| pump(&mut drv, Duration::from_secs(2)));
            std::thread::sleep(Duration::from_millis(400 + 150 * round as u64));
            let changed = match ioas2 {
                Some(id) => attach_pt(&dev, id),
                None => detach_pt(&dev),
            };
            (h.join(), changed)
        });
        changed?;
        let bench = bench.map_err(|_| "traffic thread panicked".to_string())?;
        let status = dev.get_status().ctx("GET_STATUS")?;
        eprintln!(
            "{what} round {round}: status {status:#x} after the change, traffic {}",
            match &bench {
                Ok(n) => format!("ran on ({n} packets)"),
                Err(e) => format!("stopped: {e}"),
            }
        );
        if status & VIRTIO_CONFIG_S_NEEDS_RESET != 0 {
            check!(
                fired(&cfg, Duration::from_secs(2))?,
                "{what}: NEEDS_RESET without the config IRQ"
            );
        } else {
            // No NEEDS_RESET: then the device must have stopped moving
            // frames through the address space it lost.
            check!(
                bench.is_err(),
                "{what}: traffic ran on for the whole run and no NEEDS_RESET (status {status:#x})"
            );
            let f = build_frame(drv.mac(), TEST_SRC_MAC, 1 << 40, 100).ctx("frame")?;
            let _ = drv.send(&f);
            let t = Instant::now();
            let r = drv.recv_timeout(Duration::from_millis(500));
            let s2 = dev.get_status().ctx("GET_STATUS")?;
            check!(
                r.is_err() || s2 & VIRTIO_CONFIG_S_NEEDS_RESET != 0,
                "{what}: a frame looped back {:?} after the change, through an address \
                 space the device no longer has",
                t.elapsed()
            );
        }
        drop(drv);
        // Back to the original IOAS; the driver's mappings were removed
        // from it by its drop.
        attach_pt(&dev, ioas1).ctx(&format!("{what}: re-attach"))?;
        dev.set_status(0).ctx("reset")?;
        dev.set_config_call(None).ctx("detach config eventfd")?;
        let mut drv = NetDriver::start(
            &dev,
            NetDriverConfig {
                iova_base: 0x8000_0000,
                ..Default::default()
            },
        )
        .ctx(&format!("{what}: restart after re-attach and reset"))?;
        driver::ping(&mut drv, 10, 0).ctx(&format!("{what}: traffic after re-attach"))?;
    }
    Ok(())
}

/// SUSPEND, move the RX ring to new memory whose available ring lists
/// other buffers, RESUME: the device must take the next buffer from the
/// new ring ("vring state may change" while suspended), not from
/// entries it read ahead of the old one.
pub fn suspend_relocate_ring(env: &Env) -> TestResult {
    use vhost_mdev::virtq::{Virtq, VirtqConfig};
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    let mut net = RawNet::start(&dev, RawOpts::default())?;
    let mac = net.config.mac;
    let f0 = build_frame(mac, TEST_SRC_MAC, 0, 200).ctx("frame")?;
    net.send(&f0)?;
    let (_, got) = net
        .recv(Duration::from_secs(5))
        .ctx("frame before suspend")?;
    verify_frame(&f0, &got).ctx("frame before suspend")?;
    net.wait_tx_done(Duration::from_secs(5))?;
    dev.suspend().ctx("SUSPEND")?;
    let base = dev
        .get_vring_base(u32::from(RXQ))
        .ctx("GET_VRING_BASE RX")?;
    check!(base == 1, "RX stopped at {base}, expected 1");
    // The new RX ring: every buffer posted, in reverse descriptor order.
    let size = net.rx.size();
    let q = Virtq::new(
        VirtqConfig {
            size,
            buffers: usize::from(size),
            buf_size: 2048,
            max_indirect: 0,
            event_idx: false,
        },
        0x6000_0000,
    )
    .ctx("new RX ring")?;
    let m = q.memory();
    let l = *q.layout();
    for d in 0..size {
        let off = l.desc_entry(d);
        m.store(off, q.buf_iova(usize::from(d)).ctx("buf")?.to_le())
            .ctx("desc")?;
        m.store(off + 8, 2048u32.to_le()).ctx("desc")?;
        m.store(off + 12, VRING_DESC_F_WRITE.to_le()).ctx("desc")?;
        m.store(off + 14, 0u16.to_le()).ctx("desc")?;
    }
    let head_at = |i: u16| size - 1 - (i % size);
    for i in base as u16..base as u16 + size {
        m.store(l.avail_entry(i % size), head_at(i).to_le())
            .ctx("avail")?;
    }
    m.store(l.avail_idx(), (base as u16 + size).to_le())
        .ctx("avail idx")?;
    m.store(l.used_idx(), (base as u16).to_le())
        .ctx("used idx")?;
    // SAFETY: unmapped below after the device is reset; accessed only
    // through DmaMemory's accessors.
    unsafe { m.map(&dev, q.iova()) }.ctx("map new RX ring")?;
    let r = (|| -> TestResult {
        dev.set_vring_addr(&q.vring_addr(u32::from(RXQ)))
            .ctx("SET_VRING_ADDR while suspended")?;
        dev.set_vring_hva(&q.vring_hva(u32::from(RXQ)))
            .ctx("SET_VRING_HVA while suspended")?;
        dev.set_vring_base(u32::from(RXQ), base)
            .ctx("SET_VRING_BASE while suspended")?;
        dev.resume().ctx("RESUME")?;
        let f1 = build_frame(mac, TEST_SRC_MAC, 1, 300).ctx("frame")?;
        net.send(&f1)?;
        net.wait_tx_done(Duration::from_secs(5))
            .ctx("frame after relocation")?;
        let want_head = head_at(base as u16);
        let deadline = Instant::now() + Duration::from_secs(5);
        while u16::from_le(m.load(l.used_idx()).ctx("used idx")?) == base as u16 {
            check!(
                Instant::now() < deadline,
                "no RX used entry in the relocated ring (status {:?}, old ring used idx {})",
                dev.get_status(),
                net.rx.used_idx().unwrap_or(0)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let e = l.used_entry(base as u16 % size);
        let id = u32::from_le(m.load(e).ctx("used")?);
        let len = u32::from_le(m.load(e + 4).ctx("used")?);
        check!(
            id == u32::from(want_head),
            "after RESUME the device used buffer {id} at RX index {base}; the relocated ring \
             lists buffer {want_head} there (a stale read-ahead of the old ring)"
        );
        check!(len as usize == NET_HDR_LEN + f1.len(), "used length {len}");
        let got = q
            .read_buf(usize::from(want_head), NET_HDR_LEN, f1.len())
            .ctx("read")?;
        verify_frame(&f1, &got).ctx("frame in the relocated ring")?;
        Ok(())
    })();
    dev.set_status(0).ctx("reset")?;
    let _ = dev.unmap_dma(q.iova(), m.len() as u64);
    drop(net);
    r
}

/// The rings' user addresses (`VHOST_VFIO_SET_VRING_HVA`): required
/// before DRIVER_OK; with a type1 container the device loads and stores
/// the ring indexes there (one access each) and nowhere else, so a user
/// address that is not mapped in this process puts it into NEEDS_RESET
/// at the next kick even though the rings' IOVAs are mapped and intact.
pub fn ring_hva(env: &Env) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    let errors = inst.stat("ring_errors")?;
    let mut net = RawNet::start(&dev, RawOpts::default())?;
    let mac = net.config.mac;
    let f = build_frame(mac, TEST_SRC_MAC, 0, 200).ctx("frame")?;
    net.send(&f)?;
    let (_, got) = net.recv(Duration::from_secs(5)).ctx("traffic")?;
    verify_frame(&f, &got).ctx("traffic")?;
    net.wait_tx_done(Duration::from_secs(5))?;
    drain(&net.cfg_irq);

    // While running, the rings' user addresses cannot change.
    let mut bogus = net.tx.vring_hva(u32::from(TXQ));
    bad_input(&dev, "SET_VRING_HVA while running", libc::EINVAL, || {
        dev.set_vring_hva(&bogus)
    })?;
    bogus.desc_user_addr = UNMAPPED_IOVA;
    bogus.avail_user_addr = UNMAPPED_IOVA + 0x1000;
    bogus.used_user_addr = UNMAPPED_IOVA + 0x2000;
    // Misaligned: refused, nothing changes.
    dev.suspend().ctx("SUSPEND")?;
    for (why, a) in [
        (
            "descriptors not 16-aligned",
            VhostVringAddr {
                desc_user_addr: UNMAPPED_IOVA + 8,
                ..bogus
            },
        ),
        (
            "driver area not 2-aligned",
            VhostVringAddr {
                avail_user_addr: UNMAPPED_IOVA + 1,
                ..bogus
            },
        ),
        (
            "device area not 4-aligned",
            VhostVringAddr {
                used_user_addr: UNMAPPED_IOVA + 2,
                ..bogus
            },
        ),
        ("flags", VhostVringAddr { flags: 1, ..bogus }),
    ] {
        bad_input(&dev, &format!("SET_VRING_HVA {why}"), libc::EINVAL, || {
            dev.set_vring_hva(&a)
        })?;
    }
    bad_input(&dev, "SET_VRING_HVA index = nvqs", libc::ENOBUFS, || {
        dev.set_vring_hva(&VhostVringAddr { index: 2, ..bogus })
    })?;
    // Nothing mapped there in this process: the TX indexes are out of reach.
    dev.set_vring_hva(&bogus)
        .ctx("SET_VRING_HVA while suspended")?;
    dev.resume().ctx("RESUME")?;
    let f = build_frame(mac, TEST_SRC_MAC, 1, 200).ctx("frame")?;
    net.send(&f)?;
    expect_needs_reset(
        &inst,
        &dev,
        &net.cfg_irq,
        errors,
        "ring user addresses unmapped",
    )?;
    drop(net);

    // DRIVER_OK with an enabled queue whose user addresses are missing.
    dev.set_status(0).ctx("reset")?;
    driver::negotiate(
        &dev,
        (1u64 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_F_ACCESS_PLATFORM),
    )
    .ctx("negotiate")?;
    dev.set_vring_num(0, 64).ctx("SET_VRING_NUM")?;
    dev.set_vring_addr(&VhostVringAddr {
        index: 0,
        flags: 0,
        desc_user_addr: 0x1000_0000,
        avail_user_addr: 0x1000_1000,
        used_user_addr: 0x1000_2000,
        log_guest_addr: 0,
    })
    .ctx("SET_VRING_ADDR")?;
    dev.set_vring_enable(0, true).ctx("SET_VRING_ENABLE")?;
    let ok = VIRTIO_CONFIG_S_ACKNOWLEDGE
        | VIRTIO_CONFIG_S_DRIVER
        | VIRTIO_CONFIG_S_FEATURES_OK
        | VIRTIO_CONFIG_S_DRIVER_OK;
    bad_input(
        &dev,
        "DRIVER_OK without the rings' user addresses",
        libc::EINVAL,
        || dev.set_status(ok),
    )?;
    dev.set_status(0).ctx("reset")?;
    recover(&dev, 0x2000_0000, "ring user addresses")
}

/// Every `VHOST_VFIO_SET_VRING_HVA` until a reset comes from one address
/// space (vhost's owner rule): another process holding the same device fd
/// is refused with EPERM, and accepted after a reset.
pub fn ring_hva_other_process(env: &Env) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    dev.set_status(0).ctx("reset")?;
    let a = VhostVringAddr {
        index: 0,
        flags: 0,
        desc_user_addr: 0x10_0000,
        avail_user_addr: 0x10_1000,
        used_user_addr: 0x10_2000,
        log_guest_addr: 0,
    };
    // Sends the request from a child process (another address space) and
    // returns the errno it got (0 on success).
    let from_child = || {
        ioctl_errno_in_child(
            dev.vfio().file().as_raw_fd(),
            VHOST_VFIO_SET_VRING_HVA as _,
            &a,
        )
    };
    dev.set_vring_hva(&a)
        .ctx("SET_VRING_HVA from this process")?;
    let e = from_child()?;
    check!(
        e == libc::EPERM,
        "SET_VRING_HVA from another process: errno {e}, expected EPERM"
    );
    dev.set_status(0).ctx("reset")?;
    let e = from_child()?;
    check!(
        e == 0,
        "SET_VRING_HVA from another process after a reset: errno {e}"
    );
    bad_input(
        &dev,
        "SET_VRING_HVA from the first process after the child's",
        libc::EPERM,
        || dev.set_vring_hva(&a),
    )?;
    dev.set_status(0).ctx("reset")?;
    Ok(())
}

// The sample's work budget per worker run (samples/vhost_mdev_net/virtq.rs:
// Budget::frames(64), DESC_BUDGET, BYTE_BUDGET, MAX_INDIRECT, MAX_RX_SEGS,
// MAX_RX_CHAINS, FRAME_BUF).
const DESC_BUDGET: u64 = 1024;
const BYTE_BUDGET: u64 = 0x80000;
const MAX_INDIRECT: u64 = 1024;
const RX_WALK_MAX: u64 = 32 + 32;
const FRAME_BUF: u64 = 12 + 65535 + 14;

/// The most descriptors one run may walk with a TX ring of `num`: the
/// budget and one frame more (a whole TX chain and an RX walk).
fn max_run_descs(num: u16) -> u64 {
    DESC_BUDGET + u64::from(num) + MAX_INDIRECT + RX_WALK_MAX
}

/// The worst case of a worker bounded by frames (issue 14): rings of 1024,
/// 32 RX chains that each run through 1023 direct and 1024 indirect
/// descriptors (all posted with head 0), and TX frames of 1500 bytes, too
/// big for the 32 buffers a frame may take of them. The counters show what
/// each worker run did: the descriptors it walked and the bytes it charged
/// stay within the budget plus one frame, and a reset that arrives while
/// the worker is busy waits for at most the run in progress. With `empty`
/// buffers (length 0: the chains hold nothing) the device must go to
/// NEEDS_RESET instead. Timeouts only catch hangs; nothing here is timed.
pub fn worst_case_walk(env: &Env, empty: bool) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    let errors = inst.stat("ring_errors")?;
    let before = inst.stats()?;
    let what = if empty {
        "empty chains"
    } else {
        "one-byte chains"
    };
    {
        let mut net = RawNet::start(
            &dev,
            RawOpts {
                size: 1024,
                rx_buf: 16384,
                mrg: true,
                indirect: true,
                post_rx: false,
                ..Default::default()
            },
        )?;
        let n = net.rx.size();
        check!(n == 1024, "RX queue of {n}");
        let data = net.rx.buf_iova(0).ctx("RX buf")?;
        let table = net.rx.buf_iova(1).ctx("RX buf")?;
        let len = u32::from(!empty);
        let w = VRING_DESC_F_WRITE;
        for i in 0..n - 1 {
            net.write_desc(RXQ, i, data, len, w | VRING_DESC_F_NEXT, i + 1)?;
        }
        net.write_desc(RXQ, n - 1, table, 16 * 1024, VRING_DESC_F_INDIRECT, 0)?;
        let mut t = Vec::with_capacity(16 * 1024);
        for i in 0..1024u16 {
            let flags = if i == 1023 { w } else { w | VRING_DESC_F_NEXT };
            t.extend_from_slice(&data.to_le_bytes());
            t.extend_from_slice(&len.to_le_bytes());
            t.extend_from_slice(&flags.to_le_bytes());
            t.extend_from_slice(&(i + 1).to_le_bytes());
        }
        net.rx.write_buf(1, 0, &t).ctx("indirect table")?;
        for k in 0..32u16 {
            net.write_avail(RXQ, k, 0, k + 1)?;
        }
        dev.notify(RXQ).ctx("kick RX")?;
        drain(&net.cfg_irq);
        let frame = build_frame(net.config.mac, TEST_SRC_MAC, 0, 1500).ctx("frame")?;
        if empty {
            net.send(&frame)?;
            expect_needs_reset(&inst, &dev, &net.cfg_irq, errors, what)?;
        } else {
            // All at once: one kick for 512 frames.
            let frames = 512u64;
            for _ in 0..frames {
                net.queue_tx(&frame)?;
            }
            net.tx.publish().ctx("TX publish")?;
            dev.notify(TXQ).ctx("kick TX")?;
            net.wait_tx_done(Duration::from_secs(300)).ctx(what)?;
            let after = inst.stats()?;
            let d = |k: &str| stat_delta(&before, &after, k);
            check!(
                d("drop_oversize") == frames && d("rx_packets") == 0 && d("ring_errors") == 0,
                "{what}: {frames} frames: {} dropped as oversize, {} received, {} ring errors",
                d("drop_oversize"),
                d("rx_packets"),
                d("ring_errors")
            );
            check!(
                d("runs") >= frames / 64,
                "{what}: {frames} frames in {} runs (64 a run at most)",
                d("runs")
            );
            println!(
                "INFO: {what}: {frames} frames in {} worker runs, at most {} descriptors and {} bytes a run",
                d("runs"),
                after["max_run_descs"],
                after["max_run_bytes"]
            );
            // A reset while the worker is busy: 1000 more frames with one
            // kick, status 0 as soon as the first run's frames are back.
            for _ in 0..1000 {
                net.queue_tx(&frame)?;
            }
            let base = net.tx.used_idx().ctx("TX used")?;
            net.tx.publish().ctx("TX publish")?;
            dev.notify(TXQ).ctx("kick TX")?;
            let t0 = std::time::Instant::now();
            while net.tx.used_idx().ctx("TX used")? == base {
                check!(
                    t0.elapsed() < Duration::from_secs(300),
                    "{what}: no frame of 1000 done"
                );
                std::hint::spin_loop();
            }
            dev.set_status(0).ctx("reset while busy")?;
            let done = net.tx.used_idx().ctx("TX used")?.wrapping_sub(base);
            let stop_runs = inst.stat("max_stop_runs")?;
            println!(
                "INFO: {what}: reset after {done} of 1000 frames, served after {stop_runs} worker runs"
            );
            check!(
                stop_runs <= 1,
                "{what}: a reset waited for {stop_runs} worker runs (at most the one in progress)"
            );
            check!(
                done < 1000,
                "{what}: the reset came after all 1000 frames: no busy worker to stop"
            );
        }
    }
    let descs = inst.stat("max_run_descs")?;
    let bytes = inst.stat("max_run_bytes")?;
    check!(
        descs <= max_run_descs(1024),
        "{what}: a worker run walked {descs} descriptors (bound {})",
        max_run_descs(1024)
    );
    check!(
        bytes <= BYTE_BUDGET + FRAME_BUF,
        "{what}: a worker run charged {bytes} bytes (bound {})",
        BYTE_BUDGET + FRAME_BUF
    );
    // Well-formed traffic after a reset.
    recover(&dev, 0x4000_0000, what)?;
    Ok(())
}
