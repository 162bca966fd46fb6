// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The virtio-blk RAM disk sample (`vhost_mdev_blk`): the transport is not
//! net-specific. Its attributes take only good values, and only while the
//! device is closed; requests come back byte for byte, over both IOMMU
//! back ends, in direct and indirect chains of several buffers; bad
//! requests get the status a driver expects; a chain that cannot be
//! answered puts the device into DEVICE_NEEDS_RESET, and a reset brings
//! it back.

use std::time::{Duration, Instant};

use libc::{EBUSY, EINVAL};
use vhost_mdev::blk::{self, header, BlkDriver, BlkDriverConfig, Piece, SECTOR_SIZE};
use vhost_mdev::sysfs::MdevType;
use vhost_mdev::uapi::*;
use vhost_mdev::{IommuKind, MdevDevice, VhostBackend};

use crate::check;
use crate::util::*;

/// The sample's type.
const BLK_TYPE: &str = "vhost_mdev_blk-ramdisk";
/// Sectors of a new disk.
const CAPACITY_DEFAULT: u64 = 2048;
/// Most sectors of a disk.
const CAPACITY_MAX: u64 = 0x40000;

fn blk_type(env: &Env) -> Result<MdevType, String> {
    env.sysfs
        .find_type(BLK_PARENT, BLK_TYPE)
        .ctx("the blk sample (insmod vhost_mdev_blk.ko)")
}

/// A pattern that differs in every byte and from request to request.
pub(crate) fn pattern(len: usize, seed: u64) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64 ^ (i as u64 >> 9).wrapping_mul(37) ^ seed.wrapping_mul(101)) as u8)
        .collect()
}

/// Writes `value` to attribute `name`: it must fail with `errno` and leave
/// the value as it was.
fn bad_attr(inst: &Inst, name: &str, value: &str, errno: i32) -> TestResult {
    let before = inst.attr(name)?;
    match inst.set_attr(name, value) {
        Ok(()) => return Err(format!("{name}: writing {value:?} succeeded")),
        Err(e) => check!(
            e.raw_os_error() == Some(errno),
            "{name}: writing {value:?}: {e}, expected {}",
            vhost_mdev::Errno(errno)
        ),
    }
    let after = inst.attr(name)?;
    check!(
        before == after,
        "{name}: a refused write of {value:?} changed it from {before:?} to {after:?}"
    );
    Ok(())
}

/// The attributes: modes, exact bytes, bad values refused with EINVAL,
/// any write refused with EBUSY while the device is open; good values
/// taken while it is closed.
pub fn attributes(env: &Env) -> TestResult {
    let inst = Inst::create_of(env, &blk_type(env)?)?;
    let dir = inst.sysfs.instance_dir(&inst.uuid);
    for name in ["capacity", "read_only"] {
        let p = dir.join(name);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&p).ctx(name)?.permissions(),
        ) & 0o777;
        check!(mode == 0o644, "{name}: mode {mode:o}, expected 644");
    }
    let raw = std::fs::read_to_string(dir.join("capacity")).ctx("capacity")?;
    check!(
        raw == format!("{CAPACITY_DEFAULT}\n"),
        "capacity reads {raw:?}"
    );
    let raw = std::fs::read_to_string(dir.join("read_only")).ctx("read_only")?;
    check!(raw == "0\n", "read_only reads {raw:?}");
    let too_big = (CAPACITY_MAX + 1).to_string();
    for v in [
        "0",
        "-1",
        "abc",
        "\n",
        "1.5",
        "0x10",
        too_big.as_str(),
        "18446744073709551616",
    ] {
        bad_attr(&inst, "capacity", v, EINVAL)?;
    }
    for v in ["2", "yes", "true", "\n", "01"] {
        bad_attr(&inst, "read_only", v, EINVAL)?;
    }
    inst.set_attr("capacity", "4096\n").ctx("capacity 4096")?;
    check!(
        inst.attr("capacity")? == "4096",
        "capacity did not take 4096"
    );
    inst.set_attr("read_only", "1").ctx("read_only 1")?;
    check!(inst.attr("read_only")? == "1", "read_only did not take 1");
    {
        let _dev = inst.open(IommuKind::Type1)?;
        bad_attr(&inst, "capacity", "8", EBUSY)?;
        bad_attr(&inst, "read_only", "0", EBUSY)?;
        // A bad value is still a bad value.
        bad_attr(&inst, "capacity", "x", EINVAL)?;
    }
    inst.set_attr("read_only", "0")
        .ctx("read_only 0 after close")?;
    inst.set_attr("capacity", &CAPACITY_MAX.to_string())
        .ctx("the largest capacity")?;
    inst.set_attr("capacity", "1").ctx("capacity 1")?;
    check!(inst.attr("capacity")? == "1", "capacity did not take 1");
    Ok(())
}

fn start(dev: &MdevDevice, indirect: bool) -> Result<BlkDriver<&MdevDevice>, String> {
    BlkDriver::start(
        dev,
        BlkDriverConfig {
            indirect,
            ..Default::default()
        },
    )
    .ctx("start the blk driver")
}

pub(crate) fn expect_status(what: &str, got: u8, want: u8) -> TestResult {
    check!(got == want, "{what}: status {got}, expected {want}");
    Ok(())
}

/// Writes a pattern to each `(sector, sectors)` span of `spans` (in 1-4
/// buffers, seeds from `seed`), reads every span back whole in 1 to 5
/// buffers, and checks the bytes. The second span must be `(7, 8)`: its
/// second sector is then read back alone. Returns what was written where.
pub(crate) fn write_read_back<B: VhostBackend>(
    drv: &mut BlkDriver<B>,
    spans: &[(u64, usize)],
    seed: u64,
) -> Result<Vec<(u64, Vec<u8>)>, String> {
    check!(
        spans.get(1) == Some(&(7, 8)),
        "write_read_back: the second span must be (7, 8)"
    );
    let mut written = Vec::new();
    for (k, &(sector, sectors)) in spans.iter().enumerate() {
        let data = pattern(sectors * SECTOR_SIZE, k as u64 + seed);
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
    Ok(written)
}

/// Requests over `kind`: the device and config, data byte for byte across
/// sectors and chain shapes, flush and get-id, then the bad requests.
fn requests(env: &Env, kind: IommuKind) -> TestResult {
    let inst = Inst::create_of(env, &blk_type(env)?)?;
    if kind == IommuKind::Iommufd {
        iommufd_available(&inst)?;
    }
    let dev = inst.open(kind)?;
    let mut drv = start(&dev, false)?;
    let f = drv.features();
    for bit in [
        blk::F_SEG_MAX,
        blk::F_BLK_SIZE,
        blk::F_FLUSH,
        VIRTIO_RING_F_INDIRECT_DESC,
        VIRTIO_RING_F_EVENT_IDX,
    ] {
        check!(
            f & (1 << bit) != 0,
            "feature bit {bit} not negotiated ({f:#x})"
        );
    }
    check!(!drv.read_only(), "F_RO offered on a writable disk");
    let c = drv.config();
    check!(
        c.capacity == CAPACITY_DEFAULT && c.blk_size == 512 && c.seg_max >= 4,
        "config {c:?}"
    );
    let cap = c.capacity;

    // Writes of 1-4 buffers, each read back whole in 1-5 buffers and in
    // part; over the start, the middle and the end of the disk.
    let written = write_read_back(
        &mut drv,
        &[(0, 1), (7, 8), (100, 3), (cap - 17, 16), (cap - 1, 1)],
        0,
    )?;

    // Chain shapes: a header in two buffers, data and status in one
    // buffer; the same as indirect chains.
    for indirect in [false, true] {
        let data = pattern(3 * SECTOR_SIZE, 50 + u64::from(indirect));
        let h = header(blk::T_OUT, 200).to_vec();
        let mut w = vec![Piece::Out(h[..5].to_vec()), Piece::Out(h[5..].to_vec())];
        w.extend(data.chunks(700).map(|c| Piece::Out(c.to_vec())));
        w.push(Piece::In(1));
        let c = drv.submit(&w, indirect).ctx("write chain")?;
        expect_status("split-header write", c.status().unwrap_or(0xff), blk::S_OK)?;
        check!(c.used_len == 1, "write: used length {}", c.used_len);
        let r = vec![
            Piece::Out(header(blk::T_IN, 200).to_vec()),
            Piece::In(1000),
            Piece::In(3 * SECTOR_SIZE - 1000 + 1),
        ];
        let c = drv.submit(&r, indirect).ctx("read chain")?;
        expect_status("read chain", c.status().unwrap_or(0xff), blk::S_OK)?;
        check!(
            c.data() == data,
            "indirect={indirect}: the split-header write did not read back"
        );
        check!(
            c.used_len as usize == data.len() + 1,
            "read: used length {}, expected {}",
            c.used_len,
            data.len() + 1
        );
    }

    let (s, _) = drv.request(blk::T_FLUSH, 0, 0).ctx("flush")?;
    expect_status("flush", s, blk::S_OK)?;
    let (s, id) = drv.request(blk::T_GET_ID, 0, blk::ID_BYTES).ctx("get-id")?;
    expect_status("get-id", s, blk::S_OK)?;
    // The first eight hex digits of the UUID as written.
    let want = format!("vhost-mdev-{}\0", &inst.uuid.to_string()[..8]);
    check!(
        id == want.as_bytes(),
        "get-id: {:?}, expected {want:?}",
        String::from_utf8_lossy(&id)
    );

    // Bad requests: the status a driver expects, and nothing changes.
    for (sector, len) in [
        (cap, SECTOR_SIZE),
        (cap - 1, 2 * SECTOR_SIZE),
        (u64::MAX, SECTOR_SIZE),
        (u64::MAX / 512 + 1, SECTOR_SIZE),
    ] {
        let (s, _) = drv.read(sector, len, 1).ctx("read out of range")?;
        expect_status(&format!("read of {len} at {sector}"), s, blk::S_IOERR)?;
        let s = drv
            .write(sector, &pattern(len, 9), 1)
            .ctx("write out of range")?;
        expect_status(&format!("write of {len} at {sector}"), s, blk::S_IOERR)?;
    }
    for len in [100, 513] {
        let (s, _) = drv.read(0, len, 1).ctx("read")?;
        expect_status(&format!("read of {len} bytes"), s, blk::S_IOERR)?;
        let s = drv.write(0, &pattern(len, 9), 1).ctx("write")?;
        expect_status(&format!("write of {len} bytes"), s, blk::S_IOERR)?;
    }
    for kind in [2u32, 11, 13, 0x8000_0001, u32::MAX] {
        let (s, _) = drv.request(kind, 0, SECTOR_SIZE).ctx("unknown type")?;
        expect_status(&format!("type {kind:#x}"), s, blk::S_UNSUPP)?;
    }
    let c = drv
        .submit(&[Piece::Out(vec![0; 15]), Piece::In(1)], false)
        .ctx("short header")?;
    expect_status("a 15-byte header", c.status().unwrap_or(0xff), blk::S_IOERR)?;
    // The refused writes changed nothing.
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
    // The disk outlives the driver: a new one reads the same bytes.
    drop(dev);
    let dev = inst.open(kind)?;
    let mut drv = start(&dev, true)?;
    let (sector, data) = &written[3];
    let (s, got) = drv.read(*sector, data.len(), 3).ctx("read after reopen")?;
    expect_status("read after reopen", s, blk::S_OK)?;
    check!(&got == data, "the disk lost its data across close and open");
    Ok(())
}

/// Requests through a type1 container.
pub fn requests_type1(env: &Env) -> TestResult {
    requests(env, IommuKind::Type1)
}

/// Requests through iommufd (the core's pinned-page cache).
pub fn requests_iommufd(env: &Env) -> TestResult {
    requests(env, IommuKind::Iommufd)
}

/// A read-only disk: F_RO offered, writes IOERR and changing nothing,
/// reads served; a new capacity gives a zeroed disk.
pub fn read_only(env: &Env) -> TestResult {
    let inst = Inst::create_of(env, &blk_type(env)?)?;
    let data = pattern(4 * SECTOR_SIZE, 77);
    {
        let dev = inst.open(IommuKind::Type1)?;
        let mut drv = start(&dev, false)?;
        expect_status("write", drv.write(10, &data, 2).ctx("write")?, blk::S_OK)?;
    }
    inst.set_attr("read_only", "1").ctx("read_only 1")?;
    {
        let dev = inst.open(IommuKind::Type1)?;
        let offered = dev.get_features().ctx("features")?;
        check!(
            offered & (1 << blk::F_RO) != 0,
            "F_RO not offered ({offered:#x})"
        );
        let mut drv = start(&dev, true)?;
        check!(drv.read_only(), "F_RO not negotiated");
        let s = drv
            .write(10, &pattern(4 * SECTOR_SIZE, 1), 2)
            .ctx("write")?;
        expect_status("write to a read-only disk", s, blk::S_IOERR)?;
        let (s, got) = drv.read(10, data.len(), 2).ctx("read")?;
        expect_status("read of a read-only disk", s, blk::S_OK)?;
        check!(got == data, "a refused write changed the read-only disk");
        expect_status(
            "flush",
            drv.request(blk::T_FLUSH, 0, 0).ctx("flush")?.0,
            blk::S_OK,
        )?;
    }
    inst.set_attr("read_only", "0").ctx("read_only 0")?;
    inst.set_attr("capacity", "64").ctx("capacity 64")?;
    let dev = inst.open(IommuKind::Type1)?;
    check!(
        dev.get_features().ctx("features")? & (1 << blk::F_RO) == 0,
        "F_RO still offered"
    );
    let mut drv = start(&dev, false)?;
    check!(
        drv.config().capacity == 64,
        "config capacity {}",
        drv.config().capacity
    );
    let (s, got) = drv.read(10, data.len(), 1).ctx("read")?;
    expect_status("read after resize", s, blk::S_OK)?;
    check!(got.iter().all(|&b| b == 0), "a resized disk is not zeroed");
    let (s, _) = drv.read(64, SECTOR_SIZE, 1).ctx("read")?;
    expect_status("read beyond the new capacity", s, blk::S_IOERR)?;
    Ok(())
}

/// Chains that cannot be answered: DEVICE_NEEDS_RESET, nothing completed;
/// a reset and a new start bring the device back.
pub fn malformed_chains(env: &Env) -> TestResult {
    let inst = Inst::create_of(env, &blk_type(env)?)?;
    let dev = inst.open(IommuKind::Type1)?;
    let hdr = header(blk::T_IN, 0).to_vec();
    let cases: [(&str, Vec<Piece>); 3] = [
        (
            "a device-readable status buffer",
            vec![Piece::Out(hdr.clone()), Piece::Out(vec![0])],
        ),
        (
            "no status byte (a write of readable buffers only)",
            vec![
                Piece::Out(header(blk::T_OUT, 0).to_vec()),
                Piece::Out(vec![1; SECTOR_SIZE]),
            ],
        ),
        (
            "a readable buffer after the writable ones",
            vec![
                Piece::Out(hdr.clone()),
                Piece::In(SECTOR_SIZE + 1),
                Piece::Out(vec![0]),
            ],
        ),
    ];
    for (what, chain) in &cases {
        let mut drv = BlkDriver::start(
            &dev,
            BlkDriverConfig {
                timeout: Duration::from_secs(1),
                ..Default::default()
            },
        )
        .ctx("start the blk driver")?;
        // A good request first: the device works.
        expect_status(
            "flush",
            drv.request(blk::T_FLUSH, 0, 0).ctx("flush")?.0,
            blk::S_OK,
        )?;
        if let Err(e) = drv.post(chain, false) {
            return Err(format!("{what}: post: {e}"));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let st = dev.get_status().ctx("status")?;
            if st & VIRTIO_CONFIG_S_NEEDS_RESET != 0 {
                break;
            }
            check!(
                Instant::now() < deadline,
                "{what}: no DEVICE_NEEDS_RESET within 5 s (status {st:#x})"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        check!(
            drv.complete(chain).is_err(),
            "{what}: the device completed the chain"
        );
        drv.stop().ctx("reset")?;
    }
    // After the reset the device serves requests again.
    let mut drv = start(&dev, false)?;
    let data = pattern(SECTOR_SIZE, 5);
    expect_status(
        "write after reset",
        drv.write(1, &data, 1).ctx("write")?,
        blk::S_OK,
    )?;
    let (s, got) = drv.read(1, SECTOR_SIZE, 1).ctx("read")?;
    expect_status("read after reset", s, blk::S_OK)?;
    check!(got == data, "read after reset differs");
    Ok(())
}
