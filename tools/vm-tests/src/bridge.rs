// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The vDPA bridge (see tests/vm/bridge.sh). `--bridge`, a vdpa_sim_net
//! device bound to vhost_mdev_vdpa: what the library's drivers, which
//! always send their memory table, cannot show. `--bridge-blk`, a
//! vdpa_sim_blk device: the bridge and the library are not net-specific.

use std::time::Duration;

use libc::EBUSY;
use vhost_mdev::blk::{self, header, BlkDriver, BlkDriverConfig, Piece, SECTOR_SIZE};
use vhost_mdev::driver::TEST_SRC_MAC;
use vhost_mdev::net::build_frame;
use vhost_mdev::uapi::VIRTIO_CONFIG_S_NEEDS_RESET;
use vhost_mdev::{IommuKind, VhostBackend};

use crate::check;
use crate::raw::{RawNet, RawOpts};
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

/// A pattern that differs in every byte and from request to request.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64 ^ (i as u64 >> 9).wrapping_mul(37) ^ seed.wrapping_mul(101)) as u8)
        .collect()
}

fn expect_status(what: &str, got: u8, want: u8) -> TestResult {
    check!(got == want, "{what}: status {got}, expected {want}");
    Ok(())
}

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
    let mut written = Vec::new();
    for (k, &(sector, sectors)) in [
        (0u64, 1usize),
        (7, 8),
        (1000, 3),
        (70_000, 256),
        (cap - 17, 16),
        (cap - 1, 1),
    ]
    .iter()
    .enumerate()
    {
        let data = pattern(
            sectors * SECTOR_SIZE,
            k as u64 + 10 * u64::from(kind == IommuKind::Iommufd),
        );
        let s = drv.write(sector, &data, 1 + k % 4).ctx("write")?;
        expect_status(&format!("write of {sectors} at {sector}"), s, blk::S_OK)?;
        written.push((sector, data));
    }
    for (sector, data) in &written {
        for bufs in 1..=5 {
            let (s, got) = drv.read(*sector, data.len(), bufs).ctx("read")?;
            expect_status(&format!("read at {sector}"), s, blk::S_OK)?;
            check!(
                &got == data,
                "read at sector {sector} in {bufs} buffers: not the bytes written (first \
                 difference at byte {:?})",
                got.iter().zip(data).position(|(a, b)| a != b)
            );
        }
    }
    // The second of the 8 sectors at 7, alone.
    let (s, got) = drv.read(8, SECTOR_SIZE, 2).ctx("read")?;
    expect_status("read at 8", s, blk::S_OK)?;
    check!(
        got == written[1].1[SECTOR_SIZE..2 * SECTOR_SIZE],
        "sector 8 differs"
    );
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
