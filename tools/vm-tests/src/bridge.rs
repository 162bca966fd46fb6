// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The vDPA bridge (see tests/vm/bridge.sh). `--bridge`, a vdpa_sim_net
//! device bound to vhost_mdev_vdpa: what the library's drivers, which
//! always send their memory table, cannot show. `--bridge-blk`, a
//! vdpa_sim_blk device: the bridge and the library are not net-specific.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use libc::EBUSY;
use vhost_mdev::blk::{self, header, BlkDriver, BlkDriverConfig, Piece, SECTOR_SIZE};
use vhost_mdev::device::page_size;
use vhost_mdev::driver::TEST_SRC_MAC;
use vhost_mdev::mem::DmaMemory;
use vhost_mdev::net::build_frame;
use vhost_mdev::uapi::VIRTIO_CONFIG_S_NEEDS_RESET;
use vhost_mdev::{DmaMapper, IommuKind, MdevDevice, VfioDevice, VhostBackend};

use crate::blk::{expect_status, pattern, write_read_back};
use crate::check;
use crate::raw::{wait_needs_reset, RawNet, RawOpts};
use crate::util::*;

/// DRIVER_OK with no memory table: the device reaches no memory (it takes
/// no TX buffer and writes no RX buffer; vdpa_sim starts with an identity
/// map, which the bridge must have replaced), and a table then is refused
/// with EBUSY (the device started on physical addresses). After a reset,
/// a table before DRIVER_OK makes the same opening work: frames come back
/// byte for byte.
pub fn no_table_no_dma(env: &Env) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    {
        let mut net = RawNet::start(&dev, RawOpts::default())?;
        let frame = build_frame(net.config.mac, TEST_SRC_MAC, 1, 100).ctx("frame")?;
        net.send(&frame)?;
        std::thread::sleep(Duration::from_secs(2));
        check!(
            net.try_recv()?.is_none(),
            "a frame came back from a device with no memory table"
        );
        net.reclaim_tx()?;
        check!(
            net.tx_in_flight() == 1,
            "the device returned a TX buffer with no memory table"
        );
        let table = [
            net.rx.memory().region(net.rx.iova()),
            net.tx.memory().region(net.tx.iova()),
        ];
        expect_errno(
            dev.set_mem_table(&table),
            EBUSY,
            "a memory table after a start without one",
        )?;
    }
    let mut net = RawNet::start(
        &dev,
        RawOpts {
            mem_table: true,
            ..Default::default()
        },
    )?;
    for seq in 0..8u64 {
        let frame =
            build_frame(net.config.mac, TEST_SRC_MAC, seq, 60 + 200 * seq as usize).ctx("frame")?;
        net.send(&frame)?;
        let (_, got) = net.recv(Duration::from_secs(10)).ctx("looped frame")?;
        check!(got == frame, "frame {seq} came back different");
        net.wait_tx_done(Duration::from_secs(10))?;
    }
    Ok(())
}

/// Capacity of a `vdpa_sim_blk` disk in sectors (`VDPASIM_BLK_CAPACITY`,
/// 128 MiB).
const SIM_BLK_CAPACITY: u64 = 0x40000;
/// Bytes of `struct virtio_blk_config` in Linux 6.12 (with the zoned
/// characteristics): `vdpa_sim_blk`'s config size.
const SIM_BLK_CONFIG_SIZE: u32 = 96;

fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// A `vdpa_sim_blk` device bound to the bridge (`--bridge-blk`, see
/// tests/vm/bridge.sh), opened over `kind`: the whole config space and the
/// queue count pass through; data comes back byte for byte across sectors
/// and chain shapes, at both ends of the disk; flush and get-id; bad
/// requests get exactly what `vdpa_sim_blk` answers (IOERR for a range
/// past the capacity, for an unknown type and for a flush or get-id with
/// a sector; a chain it cannot parse is completed with nothing written)
/// and change nothing; the disk keeps its data across close and open.
fn sim_blk(env: &Env, kind: IommuKind) -> TestResult {
    let inst = Inst::create(env)?;
    if kind == IommuKind::Iommufd {
        iommufd_available(&inst)?;
    }
    let dev = inst.open(kind)?;
    check!(
        dev.get_device_id().ctx("device id")? == blk::VIRTIO_ID_BLOCK,
        "not a block device (bind a vdpasim_blk device)"
    );
    let nvqs = dev.get_vqs_count().ctx("queue count")?;
    check!(nvqs == 1, "{nvqs} queues, expected 1");
    let size = dev.get_config_size().ctx("config size")?;
    check!(
        size == SIM_BLK_CONFIG_SIZE,
        "config size {size}, expected {SIM_BLK_CONFIG_SIZE}"
    );
    // The whole config, and a part of it read at an offset.
    let cfg = dev.get_config(0, size).ctx("config")?;
    let part = dev.get_config(34, 20).ctx("config at 34")?;
    check!(part == cfg[34..54], "config at offset 34 differs");
    for (what, off, want) in [
        ("size_max", 8, 4096),
        ("seg_max", 12, 32),
        ("blk_size", 20, 512),
        ("max_discard_sectors", 36, u32::MAX),
        ("max_discard_seg", 40, 1),
        ("discard_sector_alignment", 44, 512),
        ("max_write_zeroes_sectors", 48, u32::MAX),
        ("max_write_zeroes_seg", 52, 1),
    ] {
        let got = le32(&cfg, off);
        check!(got == want, "config {what}: {got}, expected {want}");
    }
    check!(
        u16::from_le_bytes([cfg[34], cfg[35]]) == 1,
        "config num_queues: {:?}, expected 1",
        &cfg[34..36]
    );
    check!(
        cfg[60..].iter().all(|&b| b == 0),
        "config past max_write_zeroes: not zero"
    );

    let mut drv = BlkDriver::start(&dev, BlkDriverConfig::default()).ctx("start the blk driver")?;
    let f = drv.features();
    for bit in [blk::F_SEG_MAX, blk::F_BLK_SIZE, blk::F_FLUSH] {
        check!(
            f & (1 << bit) != 0,
            "feature bit {bit} not negotiated ({f:#x})"
        );
    }
    check!(!drv.read_only(), "F_RO negotiated on a writable disk");
    let c = drv.config();
    check!(
        c.capacity == SIM_BLK_CAPACITY && c.blk_size == 512 && c.seg_max == 32,
        "config {c:?}"
    );
    let cap = c.capacity;

    // Writes of 1-4 buffers, each read back whole in 1-5 buffers, over
    // the start, the middle and the end of the disk; 128 KiB at once.
    let written = write_read_back(
        &mut drv,
        &[
            (0, 1),
            (7, 8),
            (1000, 3),
            (70_000, 256),
            (cap - 17, 16),
            (cap - 1, 1),
        ],
        10 * u64::from(kind == IommuKind::Iommufd),
    )?;
    // A header in two buffers, the data in odd pieces; used lengths.
    let data = pattern(3 * SECTOR_SIZE, 50);
    let h = header(blk::T_OUT, 200).to_vec();
    let mut w = vec![Piece::Out(h[..5].to_vec()), Piece::Out(h[5..].to_vec())];
    w.extend(data.chunks(700).map(|c| Piece::Out(c.to_vec())));
    w.push(Piece::In(1));
    let c = drv.submit(&w, false).ctx("write chain")?;
    expect_status("split-header write", c.status().unwrap_or(0xff), blk::S_OK)?;
    check!(c.used_len == 1, "write: used length {}", c.used_len);
    let r = [
        Piece::Out(header(blk::T_IN, 200).to_vec()),
        Piece::In(1000),
        Piece::In(3 * SECTOR_SIZE - 1000 + 1),
    ];
    let c = drv.submit(&r, false).ctx("read chain")?;
    expect_status("read chain", c.status().unwrap_or(0xff), blk::S_OK)?;
    check!(c.data() == data, "the split-header write did not read back");
    check!(
        c.used_len as usize == data.len() + 1,
        "read: used length {}, expected {}",
        c.used_len,
        data.len() + 1
    );

    let (s, _) = drv.request(blk::T_FLUSH, 0, 0).ctx("flush")?;
    expect_status("flush", s, blk::S_OK)?;
    let (s, id) = drv.request(blk::T_GET_ID, 0, blk::ID_BYTES).ctx("get-id")?;
    expect_status("get-id", s, blk::S_OK)?;
    let mut want = [0u8; blk::ID_BYTES];
    want[..12].copy_from_slice(b"vdpa_blk_sim");
    check!(
        id == want,
        "get-id: {:?}, expected vdpa_blk_sim",
        String::from_utf8_lossy(&id)
    );

    // Past the capacity, whole or in part: IOERR (vdpasim_blk_check_range).
    for (sector, len) in [
        (cap, SECTOR_SIZE),
        (cap - 1, 2 * SECTOR_SIZE),
        (cap - 16, 17 * SECTOR_SIZE),
        (u64::MAX, SECTOR_SIZE),
        (u64::MAX / 512 + 1, SECTOR_SIZE),
    ] {
        let (s, _) = drv.read(sector, len, 1).ctx("read out of range")?;
        expect_status(&format!("read of {len} at {sector}"), s, blk::S_IOERR)?;
        let s = drv
            .write(sector, &pattern(len, 9), 2)
            .ctx("write out of range")?;
        expect_status(&format!("write of {len} at {sector}"), s, blk::S_IOERR)?;
    }
    // vdpa_sim_blk answers IOERR, not UNSUPP, to a type it does not know,
    // and to a flush or get-id that names a sector.
    for kind in [2u32, 5, 14, 0x8000_0001, u32::MAX] {
        let (s, _) = drv.request(kind, 0, SECTOR_SIZE).ctx("unknown type")?;
        expect_status(&format!("type {kind:#x}"), s, blk::S_IOERR)?;
    }
    let (s, _) = drv.request(blk::T_FLUSH, 1, 0).ctx("flush")?;
    expect_status("flush at sector 1", s, blk::S_IOERR)?;
    let (s, _) = drv.request(blk::T_GET_ID, 1, blk::ID_BYTES).ctx("get-id")?;
    expect_status("get-id at sector 1", s, blk::S_IOERR)?;
    // Chains it cannot answer (a 15-byte header; no writable buffer):
    // completed with nothing written, and the device goes on.
    for (what, chain) in [
        (
            "a 15-byte header",
            vec![Piece::Out(vec![0; 15]), Piece::In(1)],
        ),
        (
            "no writable buffer",
            vec![
                Piece::Out(header(blk::T_OUT, 0).to_vec()),
                Piece::Out(vec![1; SECTOR_SIZE]),
            ],
        ),
    ] {
        let c = drv.submit(&chain, false).ctx(what)?;
        check!(
            c.used_len == 0,
            "{what}: used length {}, expected 0",
            c.used_len
        );
        check!(
            c.ins.iter().flatten().all(|&b| b == 0xa5),
            "{what}: the device wrote a status ({:?})",
            c.status()
        );
        let (s, _) = drv.request(blk::T_FLUSH, 0, 0).ctx("flush")?;
        expect_status(&format!("flush after {what}"), s, blk::S_OK)?;
    }
    // Nothing refused changed the disk.
    for (sector, data) in &written {
        let (s, got) = drv.read(*sector, data.len(), 1).ctx("read")?;
        expect_status("read after bad requests", s, blk::S_OK)?;
        check!(&got == data, "sector {sector} changed by a refused request");
    }
    let st = dev.get_status().ctx("status")?;
    check!(
        st & VIRTIO_CONFIG_S_NEEDS_RESET == 0,
        "bad requests set NEEDS_RESET (status {st:#x})"
    );
    drv.stop().ctx("stop")?;
    // The disk belongs to the vDPA device: a new opening reads the same.
    drop(dev);
    let dev = inst.open(kind)?;
    let mut drv = BlkDriver::start(&dev, BlkDriverConfig::default()).ctx("restart")?;
    let (sector, data) = &written[3];
    let (s, got) = drv.read(*sector, data.len(), 3).ctx("read after reopen")?;
    expect_status("read after reopen", s, blk::S_OK)?;
    check!(&got == data, "the disk lost its data across close and open");
    Ok(())
}

/// [`sim_blk`] through a type1 container.
pub fn sim_blk_type1(env: &Env) -> TestResult {
    sim_blk(env, IommuKind::Type1)
}

/// [`sim_blk`] through iommufd.
pub fn sim_blk_iommufd(env: &Env) -> TestResult {
    sim_blk(env, IommuKind::Iommufd)
}

/// The vDPA device behind the bridge's type under test (`vdpa1` of
/// parent `vhost_mdev_vdpa-vdpa1`).
pub(crate) fn vdpa_name(env: &Env) -> Result<String, String> {
    env.ty
        .parent
        .strip_prefix(BRIDGE_PARENT)
        .map(str::to_string)
        .ok_or_else(|| format!("{} is not a parent of the bridge", env.ty.parent))
}

/// The bridge's count of pages it holds pinned for the device
/// (`/sys/bus/vdpa/devices/<dev>/pinned_pages`).
pub(crate) fn pinned_pages(dev: &str) -> Result<u64, String> {
    let p = format!("/sys/bus/vdpa/devices/{dev}/pinned_pages");
    std::fs::read_to_string(&p)
        .ctx(&p)?
        .trim()
        .parse()
        .map_err(|e| format!("{p}: {e}"))
}

/// `VmPin` of this process in KiB: the pages pinned in its address space
/// (iommufd adds every page it pins for an access to the `pinned_vm` of
/// the process that mapped it, whatever it charges to RLIMIT_MEMLOCK).
fn vm_pin_kib() -> Result<u64, String> {
    let s = std::fs::read_to_string("/proc/self/status").ctx("/proc/self/status")?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmPin:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmPin in /proc/self/status".to_string())
}

fn pages(len: usize) -> u64 {
    (len as u64).div_ceil(page_size())
}

/// Frames of several sizes loop through the device byte for byte.
fn loop_frames(net: &mut RawNet, n: u64, what: &str) -> TestResult {
    for seq in 0..n {
        let frame =
            build_frame(net.config.mac, TEST_SRC_MAC, seq, 60 + 180 * seq as usize).ctx("frame")?;
        net.send(&frame)?;
        let (_, got) = net
            .recv(Duration::from_secs(10))
            .ctx(&format!("looped frame {seq} ({what})"))?;
        check!(got == frame, "frame {seq} came back different ({what})");
        net.wait_tx_done(Duration::from_secs(10))?;
    }
    Ok(())
}

/// Checks the bridge's pin count and this process's `VmPin` against the
/// pages `want` pinned over `base_kib`.
fn expect_pins(dev: &str, base_kib: u64, want: u64, what: &str) -> TestResult {
    let p = pinned_pages(dev)?;
    check!(p == want, "{what}: {p} pages pinned, expected {want}");
    let v = vm_pin_kib()?;
    let kib = base_kib + want * page_size() / 1024;
    check!(v == kib, "{what}: VmPin {v} kB, expected {kib} kB");
    Ok(())
}

/// PA mode (`vdpa_sim` loaded with `use_va=0`) over iommufd: the table's
/// IOVA ranges are pinned once each and accounted to this process while
/// open, frames come back byte for byte, a new table that keeps a region
/// pins nothing again, an unmap of a region the rings are not in keeps the
/// device running, hostile tables change nothing, the unmap of a ring
/// gives NEEDS_RESET, and close gives every pin back.
pub fn pa_iommufd(env: &Env) -> TestResult {
    let name = vdpa_name(env)?;
    let mode = std::fs::read_to_string(format!("/sys/bus/vdpa/devices/{name}/dma_mode"))
        .ctx("dma_mode")?;
    check!(mode.trim() == "pa", "dma_mode {mode:?}, expected pa");
    let inst = Inst::create(env)?;
    iommufd_available(&inst)?;
    let base = vm_pin_kib()?;
    expect_pins(&name, base, 0, "before open")?;
    let dev = inst.open(IommuKind::Iommufd)?;
    {
        let mut net = RawNet::start(
            &dev,
            RawOpts {
                mem_table: true,
                ..Default::default()
            },
        )?;
        let rx = net.rx.memory().region(net.rx.iova());
        let tx = net.tx.memory().region(net.tx.iova());
        let table = pages(net.rx.memory().len()) + pages(net.tx.memory().len());
        expect_pins(&name, base, table, "table of both queues")?;
        loop_frames(&mut net, 8, "PA mode")?;

        // The same table again, while running: nothing pinned twice.
        dev.set_mem_table(&[rx, tx]).ctx("the same table")?;
        expect_pins(&name, base, table, "the same table again")?;

        // A third region, 3 MiB across a 2 MiB boundary of the IOVA grid.
        let extra = DmaMemory::new(3 << 20).ctx("extra memory")?;
        let extra_iova = 0x4010_0000;
        // SAFETY: unmapped below (or by the close) before `extra` drops;
        // nothing reads it.
        unsafe { extra.map(&dev, extra_iova) }.ctx("map extra")?;
        let xr = extra.region(extra_iova);
        let xpages = pages(extra.len());
        dev.set_mem_table(&[rx, tx, xr])
            .ctx("table with a third region")?;
        expect_pins(&name, base, table + xpages, "a third region")?;
        loop_frames(&mut net, 2, "a third region")?;

        // Hostile tables: refused, nothing changes.
        let mut unaligned = xr;
        unaligned.guest_phys_addr += 8;
        let mut overlap = xr;
        overlap.guest_phys_addr = rx.guest_phys_addr + 4096;
        let mut wrap = xr;
        wrap.guest_phys_addr = u64::MAX - 4095;
        wrap.memory_size = 8192;
        let mut unmapped = xr;
        unmapped.guest_phys_addr = 0x7000_0000;
        for (what, t, errno) in [
            ("an unaligned region", [rx, tx, unaligned], libc::EINVAL),
            ("overlapping regions", [rx, tx, overlap], libc::EINVAL),
            ("a wrapping region", [rx, tx, wrap], libc::EINVAL),
            ("an IOVA range not mapped", [rx, tx, unmapped], libc::ENOENT),
        ] {
            expect_errno(dev.set_mem_table(&t), errno, what)?;
            expect_pins(&name, base, table + xpages, what)?;
        }
        // More translations than the device's IOTLB holds (vdpa_sim: 2048
        // by default): 2100 pages mapped in reverse, so that no two
        // neighbours in IOVA are neighbours in memory.
        let many = DmaMemory::new(2100 * page_size() as usize).ctx("many pages")?;
        let many_iova = 0x5000_0000u64;
        let np = pages(many.len());
        for i in 0..np {
            // SAFETY: unmapped below before `many` drops; nothing reads it.
            unsafe {
                dev.map_dma(
                    many_iova + (np - 1 - i) * page_size(),
                    page_size(),
                    many.addr() + i * page_size(),
                )
            }
            .ctx("map a page")?;
        }
        let mut mr = many.region(many_iova);
        mr.memory_size = np * page_size();
        expect_errno(
            dev.set_mem_table(&[rx, tx, xr, mr]),
            libc::ENOSPC,
            "more translations than the device's IOTLB",
        )?;
        expect_pins(&name, base, table + xpages, "after the IOTLB overflow")?;
        for i in 0..np {
            dev.unmap_dma(many_iova + i * page_size(), page_size())
                .ctx("unmap a page")?;
        }
        drop(many);
        loop_frames(&mut net, 2, "after the refused tables")?;

        // VFIO unmaps the third region while the device runs: its pins go,
        // the device goes on.
        dev.unmap_dma(extra_iova, extra.len() as u64)
            .ctx("unmap extra")?;
        expect_pins(&name, base, table, "after the unmap of the third region")?;
        let st = dev.get_status().ctx("status")?;
        check!(
            st & VIRTIO_CONFIG_S_NEEDS_RESET == 0,
            "the unmap of a region without rings set NEEDS_RESET ({st:#x})"
        );
        loop_frames(&mut net, 4, "after the unmap of the third region")?;
        drop(extra);

        // The TX queue's memory (its rings) goes: NEEDS_RESET.
        dev.unmap_dma(net.tx.iova(), net.tx.memory().len() as u64)
            .ctx("unmap TX")?;
        wait_needs_reset(&dev, Duration::from_secs(5))?;
        expect_pins(
            &name,
            base,
            pages(net.rx.memory().len()),
            "after the unmap of the TX ring",
        )?;
    }
    drop(dev);
    expect_pins(&name, base, 0, "after close")?;
    Ok(())
}

/// PA mode needs pins, which a type1 container cannot take: a table is
/// refused with EOPNOTSUPP over type1, and nothing is pinned.
pub fn pa_type1(env: &Env) -> TestResult {
    let name = vdpa_name(env)?;
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    let mem = DmaMemory::new(64 << 10).ctx("memory")?;
    // SAFETY: unmapped below before `mem` drops; nothing reads it.
    unsafe { mem.map(&dev, 0x1000_0000) }.ctx("map")?;
    expect_errno(
        dev.set_mem_table(&[mem.region(0x1000_0000)]),
        libc::EOPNOTSUPP,
        "a PA-mode table over type1",
    )?;
    check!(
        pinned_pages(&name)? == 0,
        "pages pinned after a refused table"
    );
    dev.set_mem_table(&[]).ctx("an empty table over type1")?;
    dev.unmap_dma(0x1000_0000, mem.len() as u64).ctx("unmap")?;
    Ok(())
}

/// Tables set while another thread maps and unmaps one of their regions
/// over and over: each table is set or refused (ENOENT, EINVAL or EAGAIN:
/// the range went away under it), a pin that races with an unmap is given
/// back, and once the region is gone none of its pages stays pinned.
pub fn pa_unmap_race(env: &Env) -> TestResult {
    let name = vdpa_name(env)?;
    let inst = Inst::create(env)?;
    iommufd_available(&inst)?;
    let base = vm_pin_kib()?;
    let dev = inst.open(IommuKind::Iommufd)?;
    {
        let mut net = RawNet::start(
            &dev,
            RawOpts {
                mem_table: true,
                ..Default::default()
            },
        )?;
        let rx = net.rx.memory().region(net.rx.iova());
        let tx = net.tx.memory().region(net.tx.iova());
        let table = pages(net.rx.memory().len()) + pages(net.tx.memory().len());
        let extra = DmaMemory::new(1 << 20).ctx("extra memory")?;
        let xiova = 0x4000_0000;
        let xr = extra.region(xiova);
        let stop = AtomicBool::new(false);
        let (mut set, mut refused) = (0u32, 0u32);
        let cycles = std::thread::scope(|sc| -> Result<u32, String> {
            let mapper = sc.spawn(|| -> Result<u32, String> {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    // SAFETY: unmapped below before `extra` drops; nothing
                    // reads it.
                    unsafe { dev.map_dma(xiova, extra.len() as u64, extra.addr()) }
                        .ctx("map extra")?;
                    std::thread::yield_now();
                    dev.unmap_dma(xiova, extra.len() as u64)
                        .ctx("unmap extra")?;
                    n += 1;
                }
                Ok(n)
            });
            let mut r = Ok(());
            for _ in 0..100 {
                match dev.set_mem_table(&[rx, tx, xr]) {
                    Ok(()) => set += 1,
                    Err(e)
                        if matches!(
                            e.errno(),
                            Some(libc::ENOENT | libc::EINVAL | libc::EAGAIN)
                        ) =>
                    {
                        refused += 1
                    }
                    Err(e) => {
                        r = Err(format!("a table during the unmaps: {e}"));
                        break;
                    }
                }
            }
            stop.store(true, Ordering::Relaxed);
            let n = mapper
                .join()
                .map_err(|_| "the mapping thread panicked".to_string())??;
            r.map(|()| n)
        })?;
        println!("INFO: bridge_pa_unmap_race: {set} tables set, {refused} refused, {cycles} map/unmap cycles");
        check!(cycles > 0, "no map/unmap cycle ran");
        expect_pins(&name, base, table, "after the unmaps")?;
        dev.set_mem_table(&[rx, tx]).ctx("the queues' table")?;
        expect_pins(&name, base, table, "the queues' table again")?;
        let st = dev.get_status().ctx("status")?;
        check!(
            st & VIRTIO_CONFIG_S_NEEDS_RESET == 0,
            "unmaps of a region without rings set NEEDS_RESET ({st:#x})"
        );
        loop_frames(&mut net, 4, "after the unmaps")?;
    }
    drop(dev);
    expect_pins(&name, base, 0, "after close")?;
    Ok(())
}

/// Clears or sets CAP_IPC_LOCK in this thread's effective set.
fn ipc_lock_effective(on: bool) -> TestResult {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    const CAP_IPC_LOCK: u32 = 14;
    let mut h = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut d = [Data::default(); 2];
    // SAFETY: capget with a version-3 header and room for two data words.
    if unsafe { libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()) } != 0 {
        return Err(format!("capget: {}", std::io::Error::last_os_error()));
    }
    if on {
        d[0].effective |= 1 << CAP_IPC_LOCK;
    } else {
        d[0].effective &= !(1 << CAP_IPC_LOCK);
    }
    // SAFETY: as above; only the effective set changes, within the
    // permitted one.
    if unsafe { libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()) } != 0 {
        return Err(format!("capset: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

fn set_memlock(cur: u64, max: u64) -> TestResult {
    let r = libc::rlimit {
        rlim_cur: cur,
        rlim_max: max,
    };
    // SAFETY: a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &r) } != 0 {
        return Err(format!(
            "setrlimit(MEMLOCK): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// The pins are charged as iommufd charges any: memory mapped by a process
/// without CAP_IPC_LOCK counts against its RLIMIT_MEMLOCK, so a table
/// above it is refused with ENOMEM and pins nothing, and the same table
/// under a larger limit is pinned.
pub fn pa_memlock(env: &Env) -> TestResult {
    let name = vdpa_name(env)?;
    let inst = Inst::create(env)?;
    iommufd_available(&inst)?;
    let dev = inst.open(IommuKind::Iommufd)?;
    let mem = DmaMemory::new(64 * page_size() as usize).ctx("memory")?;
    let iova = 0x1000_0000;
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: room for one rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut old) } != 0 {
        return Err("getrlimit(MEMLOCK) failed".into());
    }
    ipc_lock_effective(false)?;
    let r = (|| -> TestResult {
        // SAFETY: unmapped below before `mem` drops; nothing reads it.
        unsafe { mem.map(&dev, iova) }.ctx("map")?;
        let region = mem.region(iova);
        set_memlock(32 * page_size(), old.rlim_max)?;
        expect_errno(
            dev.set_mem_table(&[region]),
            libc::ENOMEM,
            "64 pages with RLIMIT_MEMLOCK at 32",
        )?;
        check!(
            pinned_pages(&name)? == 0,
            "pages pinned after a table refused at the limit"
        );
        set_memlock(128 * page_size(), old.rlim_max)?;
        dev.set_mem_table(&[region])
            .ctx("64 pages with RLIMIT_MEMLOCK at 128")?;
        let p = pinned_pages(&name)?;
        check!(p == 64, "{p} pages pinned, expected 64");
        dev.set_mem_table(&[]).ctx("an empty table")?;
        check!(
            pinned_pages(&name)? == 0,
            "pages pinned after an empty table"
        );
        dev.unmap_dma(iova, mem.len() as u64).ctx("unmap")
    })();
    let restored = set_memlock(old.rlim_cur, old.rlim_max).and(ipc_lock_effective(true));
    r.and(restored)
}

/// Removing the device while an instance is open waits for the close,
/// which gives back every pin (the mapping process's VmPin is back to
/// where it was); the device then binds again with nothing pinned.
pub fn pa_remove_while_open(env: &Env) -> TestResult {
    let name = vdpa_name(env)?;
    let inst = Inst::create(env)?;
    iommufd_available(&inst)?;
    let base = vm_pin_kib()?;
    let dev = inst.open(IommuKind::Iommufd)?;
    let net = RawNet::start(
        &dev,
        RawOpts {
            mem_table: true,
            ..Default::default()
        },
    )?;
    let table = pages(net.rx.memory().len()) + pages(net.tx.memory().len());
    expect_pins(&name, base, table, "open")?;
    let n = name.clone();
    let unbind = std::thread::spawn(move || {
        std::fs::write("/sys/bus/vdpa/drivers/vhost_mdev_vdpa/unbind", &n)
    });
    std::thread::sleep(Duration::from_secs(1));
    check!(
        !unbind.is_finished(),
        "unbind returned while the instance was open"
    );
    let v = vm_pin_kib()?;
    let open_kib = base + table * page_size() / 1024;
    check!(
        v == open_kib,
        "VmPin {v} kB during the unbind, expected {open_kib} kB"
    );
    drop(net);
    drop(dev);
    unbind
        .join()
        .map_err(|_| "the unbind thread panicked".to_string())?
        .ctx("unbind")?;
    let v = vm_pin_kib()?;
    check!(
        v == base,
        "VmPin {v} kB after the removal, expected {base} kB"
    );
    std::fs::write("/sys/bus/vdpa/drivers_probe", &name).ctx("drivers_probe")?;
    check!(
        pinned_pages(&name)? == 0,
        "pages pinned after the device bound again"
    );
    Ok(())
}

/// Close gives back every pin by itself: with the memory still mapped in
/// the IOAS (a second iommufd fd keeps it), VmPin is back where it was
/// once the device is closed, before the IOAS goes.
pub fn pa_close_with_mappings(env: &Env) -> TestResult {
    let name = vdpa_name(env)?;
    let inst = Inst::create(env)?;
    iommufd_available(&inst)?;
    let base = vm_pin_kib()?;
    let v = VfioDevice::open(&env.sysfs, &inst.info()?, IommuKind::Iommufd).ctx("open")?;
    let (device, mut fds, ioas) = v.into_parts();
    let iommufd = fds.pop().ok_or("no iommufd fd")?;
    let keep = iommufd.try_clone().ctx("dup the iommufd fd")?;
    let dev = MdevDevice::from_vfio(
        VfioDevice::from_iommufd_fds(iommufd, ioas.ok_or("no IOAS")?, device, "pa"),
        "bridge PA".to_string(),
    )
    .ctx("region info")?;
    let mem = DmaMemory::new(256 * page_size() as usize).ctx("memory")?;
    // SAFETY: the mapping goes with the IOAS (`keep`), before `mem`.
    unsafe { mem.map(&dev, 0x1000_0000) }.ctx("map")?;
    dev.set_mem_table(&[mem.region(0x1000_0000)]).ctx("table")?;
    expect_pins(&name, base, 256, "open")?;
    drop(dev);
    let v = vm_pin_kib()?;
    let r = if v == base {
        Ok(())
    } else {
        Err(format!(
            "VmPin {v} kB after close with the memory still mapped, expected {base} kB"
        ))
    };
    drop(keep);
    drop(mem);
    r
}
