// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Packed rings and several queue pairs on the sample parent: packed
//! traffic byte-for-byte on both IOMMU back ends, hostile packed rings
//! (each ends in DEVICE_NEEDS_RESET, the instance reusable after a reset),
//! the 32-bit packed vring base round-tripped mid-traffic without loss,
//! and `queue_pairs`: traffic on every pair counted per pair, the
//! attribute's refusals, and pairs stopped and restarted with
//! SET_VRING_ENABLE.

use std::time::{Duration, Instant};

use libc::{EBUSY, EINVAL};
use vhost_mdev::driver::{self, mixed_size, NetDriver, NetDriverConfig, RX, TEST_SRC_MAC, TX};
use vhost_mdev::net::{build_frame, check_frame};
use vhost_mdev::packed::{decode_base, encode_base, PackedVirtq};
use vhost_mdev::uapi::*;
use vhost_mdev::virtq::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use vhost_mdev::{IommuKind, MdevDevice, VhostBackend};

use crate::check;
use crate::raw::wait_needs_reset;
use crate::sample::pipelined;
use crate::util::*;

fn packed_cfg() -> NetDriverConfig {
    NetDriverConfig {
        packed: true,
        queue_size: 64,
        ..Default::default()
    }
}

/// Starts the driver on packed rings and checks RING_PACKED was
/// negotiated.
fn start_packed(dev: &MdevDevice, cfg: NetDriverConfig) -> Result<NetDriver<&MdevDevice>, String> {
    let drv = NetDriver::start(dev, cfg).ctx("start on packed rings")?;
    check!(
        drv.features() & (1 << VIRTIO_F_RING_PACKED) != 0 && drv.queue(TX).is_packed(),
        "RING_PACKED not negotiated (features {:#x})",
        drv.features()
    );
    Ok(drv)
}

/// Mixed-size frames through packed rings, byte-for-byte and in order,
/// over several laps of the 64-entry rings (both wrap counters flip), the
/// counters exact; `kind` picks the IOMMU back end.
pub fn packed_traffic(env: &Env, kind: IommuKind) -> TestResult {
    let count = scale(300, 2000);
    let inst = Inst::create(env)?;
    let dev = inst.open(kind)?;
    let before = inst.stats()?;
    for indirect in [false, true] {
        let mut drv = start_packed(
            &dev,
            NetDriverConfig {
                indirect,
                ..packed_cfg()
            },
        )?;
        let bytes = pipelined(&mut drv, TEST_SRC_MAC, count, 16, mixed_size)
            .map_err(|e| format!("indirect {indirect}: {e}"))?;
        let want: u64 = (0..count).map(|i| mixed_size(i) as u64).sum();
        check!(bytes == want, "sent {bytes} bytes, sizes add up to {want}");
    }
    let after = inst.stats()?;
    for name in ["tx_packets", "rx_packets"] {
        let d = stat_delta(&before, &after, name);
        check!(
            d == 2 * count,
            "stats/{name} up by {d}, expected {}",
            2 * count
        );
    }
    for name in ["ring_errors", "drop_malformed", "drop_oversize"] {
        let d = stat_delta(&before, &after, name);
        check!(d == 0, "stats/{name} up by {d}");
    }
    Ok(())
}

/// A hostile packed ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostilePacked {
    /// A TX descriptor whose AVAIL and USED bits both equal the driver's
    /// wrap counter (only a used descriptor of this lap looks so).
    BadWrap,
    /// A descriptor made available again (for the next lap) while the
    /// device still holds it: the driver's RX ring is full, and the slot
    /// after its last buffer (the first one's, a lap later) is marked
    /// available.
    AvailTwice,
    /// Two TX chains with one buffer id, made available together.
    IdTwice,
    /// A TX chain whose every ring descriptor says NEXT.
    NoEnd,
    /// An indirect table holding an indirect descriptor.
    NestedIndirect,
    /// A TX buffer whose length runs past 2^64 (`addr + len` overflows).
    LenOverflow,
}

/// One raw descriptor: addr, len, id, flags (without the AVAIL/USED bits).
type Desc = (u64, u32, u16, u16);

/// Writes `descs` as a chain at the driver's next slot of `q`
/// (not through its add(): its bookkeeping does not know them), the first
/// descriptor's flags last, with the AVAIL/USED bits of the slot's lap
/// (or `bits` for every descriptor, when given).
fn write_chain(q: &PackedVirtq, descs: &[Desc], bits: Option<u16>) -> TestResult {
    write_chain_at(q, q.avail_pos(), descs, bits)
}

/// [`write_chain`] at slot `first`.
fn write_chain_at(
    q: &PackedVirtq,
    first: vhost_mdev::packed::PackedPos,
    descs: &[Desc],
    bits: Option<u16>,
) -> TestResult {
    let l = *q.layout();
    let m = q.memory();
    let lap_bits = |wrap: bool| if wrap { 1u16 << 7 } else { 1 << 15 };
    let mut pos = first;
    for (i, &(addr, len, id, flags)) in descs.iter().enumerate() {
        let off = l.desc_entry(pos.idx);
        m.store(off, addr.to_le()).ctx("desc addr")?;
        m.store(off + 8, len.to_le()).ctx("desc len")?;
        m.store(off + 12, id.to_le()).ctx("desc id")?;
        if i > 0 {
            let f = flags | bits.unwrap_or(lap_bits(pos.wrap));
            m.store(off + 14, f.to_le()).ctx("desc flags")?;
        }
        pos = pos.advance(1, l.size);
    }
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    let f = descs[0].3 | bits.unwrap_or(lap_bits(first.wrap));
    m.store(l.desc_entry(first.idx) + 14, f.to_le())
        .ctx("first flags")?;
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    Ok(())
}

/// A hostile packed ring after good traffic: DEVICE_NEEDS_RESET,
/// `ring_errors` up by one, and after a reset the same instance carries
/// packed traffic again.
pub fn hostile_packed(env: &Env, case: HostilePacked) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    let errors = inst.stat("ring_errors")?;
    {
        let cfg = NetDriverConfig {
            queue_size: 8,
            indirect: case == HostilePacked::NestedIndirect,
            max_frame: 9000,
            ..packed_cfg()
        };
        let mut drv = start_packed(&dev, cfg)?;
        // Good traffic first: 11 frames, the 8-entry rings in lap 2.
        driver::ping(&mut drv, 11, 0).ctx("traffic before")?;
        let tx = drv.queue(TX).as_packed().ok_or("TX not packed")?;
        let buf = tx.buf_iova(0).ctx("TX buffer")?;
        let kick = match case {
            HostilePacked::BadWrap => {
                let both = if tx.avail_pos().wrap {
                    (1u16 << 7) | (1 << 15)
                } else {
                    0
                };
                write_chain(tx, &[(buf, 100, 0, 0)], Some(both))?;
                TX
            }
            HostilePacked::NoEnd => {
                let d: Vec<Desc> = (0..tx.size())
                    .map(|_| (buf, 100, 0, VRING_DESC_F_NEXT))
                    .collect();
                write_chain(tx, &d, None)?;
                TX
            }
            HostilePacked::NestedIndirect => {
                // The table in TX buffer 1: one entry, itself indirect.
                let table = tx.buf_iova(1).ctx("TX buffer")?;
                let mut e = [0u8; 16];
                e[..8].copy_from_slice(&buf.to_le_bytes());
                e[8..12].copy_from_slice(&16u32.to_le_bytes());
                e[14..].copy_from_slice(&VRING_DESC_F_INDIRECT.to_le_bytes());
                tx.write_buf(1, 0, &e).ctx("table")?;
                write_chain(tx, &[(table, 16, 0, VRING_DESC_F_INDIRECT)], None)?;
                TX
            }
            HostilePacked::LenOverflow => {
                write_chain(tx, &[(u64::MAX - 8, 64, 0, 0)], None)?;
                TX
            }
            HostilePacked::IdTwice => {
                // The second chain first, then the first one (whose flags,
                // stored last, make both available at once).
                let second = tx.avail_pos().advance(1, tx.size());
                write_chain_at(tx, second, &[(buf, 100, 3, 0)], None)?;
                write_chain(tx, &[(buf, 100, 3, 0)], None)?;
                TX
            }
            HostilePacked::AvailTwice => {
                // The driver keeps all 8 RX buffers posted: its next slot
                // is its oldest buffer's, a lap later. Marking it
                // available makes 9 available in an 8-entry ring.
                let rx = drv.queue(RX).as_packed().ok_or("RX not packed")?;
                check!(
                    rx.num_free() == 0,
                    "RX ring not full ({} free)",
                    rx.num_free()
                );
                let rbuf = rx.buf_iova(0).ctx("RX buffer")?;
                write_chain(rx, &[(rbuf, 4096, 0, VRING_DESC_F_WRITE)], None)?;
                let f = build_frame(drv.mac(), TEST_SRC_MAC, 99, 200).ctx("frame")?;
                check!(drv.queue_tx(&f).ctx("queue")?, "TX full");
                drv.flush_tx().ctx("flush")?;
                drv.kick(RX).ctx("kick RX")?;
                TX
            }
        };
        drv.kick(kick).ctx("kick")?;
        let s = wait_needs_reset(&dev, Duration::from_secs(10)).ctx(&format!("{case:?}"))?;
        check!(s & VIRTIO_CONFIG_S_NEEDS_RESET != 0, "status {s:#x}");
        let errs = inst.stat("ring_errors")?;
        check!(
            errs == errors + 1,
            "{case:?}: ring_errors {errors} -> {errs}, expected +1"
        );
        // Dropping the driver resets the device.
    }
    let s = dev.get_status().ctx("GET_STATUS")?;
    check!(s == 0, "{case:?}: status {s:#x} after the driver's reset");
    let mut drv = start_packed(&dev, packed_cfg()).ctx("restart after reset")?;
    driver::ping(&mut drv, 20, 0).ctx(&format!("{case:?}: traffic after reset"))?;
    Ok(())
}

/// SUSPEND, GET_VRING_BASE, SET_VRING_BASE (the 32-bit packed encoding)
/// and RESUME in the middle of packed traffic, several times: every frame
/// sent comes back once, in order, and the bases read back are what was
/// set.
pub fn packed_base_round_trip(env: &Env) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    let cfg = NetDriverConfig {
        queue_size: 16,
        timeout: Duration::from_secs(5),
        ..packed_cfg()
    };
    let mut drv = start_packed(&dev, cfg)?;
    let rounds = scale(4, 10);
    let (mut sent, mut got) = (0u64, 0u64);
    let take = |drv: &mut NetDriver<&MdevDevice>, got: &mut u64, wait: bool| -> TestResult {
        loop {
            let f = if wait {
                Some(drv.recv().ctx(&format!("frame {got}"))?)
            } else {
                drv.try_recv().ctx("receive")?
            };
            let Some(f) = f else { return Ok(()) };
            let seq = check_frame(&f).map_err(|e| format!("frame {got}: {e}"))?;
            check!(seq == *got, "expected frame {got}, received {seq}");
            *got += 1;
            if wait {
                return Ok(());
            }
        }
    };
    for round in 0..rounds {
        // 7 frames (the ring is 16): queued, kicked, and the device
        // suspended while it works on them.
        for _ in 0..7 {
            let f = build_frame(drv.mac(), TEST_SRC_MAC, sent, mixed_size(sent)).ctx("frame")?;
            check!(drv.queue_tx(&f).ctx("queue")?, "round {round}: TX full");
            sent += 1;
        }
        drv.flush_tx().ctx("kick")?;
        dev.suspend().ctx("SUSPEND")?;
        for q in [RX, TX] {
            let i = u32::from(q);
            let base = dev.get_vring_base(i).ctx("GET_VRING_BASE")?;
            let (avail, used) = decode_base(base, 16)
                .ok_or_else(|| format!("queue {q}: base {base:#x}: an index beyond the ring"))?;
            // The loopback completes what it consumed (TX at once, RX
            // buffers when filled): nothing in flight when suspended.
            check!(
                avail == used,
                "round {round}, queue {q}: base {base:#x}: {avail:?} consumed, {used:?} used"
            );
            dev.set_vring_base(i, base).ctx("SET_VRING_BASE")?;
            let again = dev.get_vring_base(i).ctx("GET_VRING_BASE")?;
            check!(
                again == base,
                "queue {q}: SET_VRING_BASE {base:#x}, read back {again:#x}"
            );
            if round == 0 && q == TX {
                check!(
                    base >> 16 != 0,
                    "TX base {base:#x}: the used half (wrap counter 1 in the first lap) is lost"
                );
            }
        }
        dev.resume().ctx("RESUME")?;
        drv.kick(TX).ctx("kick after RESUME")?;
        while got < sent {
            take(&mut drv, &mut got, true)?;
        }
        take(&mut drv, &mut got, false)?;
    }
    check!(got == sent, "sent {sent} frames, received {got}");
    // The driver's own positions agree with the device's at the end.
    dev.suspend().ctx("SUSPEND")?;
    drv.reclaim_tx().ctx("reclaim")?;
    let txq = drv.queue(TX).as_packed().ok_or("TX not packed")?;
    let used = txq.used_pos();
    let base = dev.get_vring_base(u32::from(TX)).ctx("GET_VRING_BASE")?;
    check!(
        base == encode_base(used, used),
        "TX base {base:#x}, the driver is at {used:?}"
    );
    dev.resume().ctx("RESUME")?;
    Ok(())
}

/// Parses a `stats/*_per_pair` file: `pairs` space-separated counters.
fn per_pair(inst: &Inst, name: &str, pairs: usize) -> Result<Vec<u64>, String> {
    let s = inst.attr(&format!("stats/{name}"))?;
    let v: Vec<u64> = s
        .split_whitespace()
        .map(|x| x.parse().map_err(|_| format!("stats/{name}: {s:?}")))
        .collect::<Result<_, _>>()?;
    check!(
        v.len() == pairs,
        "stats/{name}: {} counters for {pairs} pairs: {s:?}",
        v.len()
    );
    Ok(v)
}

fn set_pairs(inst: &Inst, n: u16) -> TestResult {
    inst.set_attr("queue_pairs", &n.to_string())
        .ctx(&format!("queue_pairs {n}"))?;
    let got = inst.attr("queue_pairs")?;
    check!(
        got == n.to_string(),
        "queue_pairs reads {got:?} after writing {n}"
    );
    Ok(())
}

/// `queue_pairs` = 4: the device has 8 queues and MQ, and frames sent on
/// each pair come back on that pair, counted exactly in
/// `stats/tx_packets_per_pair` and `stats/rx_packets_per_pair` (pair p gets
/// 10 (p + 1) frames), on split and packed rings.
pub fn mq_every_pair(env: &Env) -> TestResult {
    let inst = Inst::create(env)?;
    set_pairs(&inst, 4)?;
    let dev = inst.open(IommuKind::Type1)?;
    let vqs = dev.get_vqs_count().ctx("GET_VQS_COUNT")?;
    check!(vqs == 8, "{vqs} queues with queue_pairs 4");
    for packed in [false, true] {
        let tx0 = per_pair(&inst, "tx_packets_per_pair", 4)?;
        let rx0 = per_pair(&inst, "rx_packets_per_pair", 4)?;
        let flat0 = (inst.stat("tx_packets")?, inst.stat("rx_packets")?);
        let mut drv = NetDriver::start(
            &dev,
            NetDriverConfig {
                pairs: 4,
                packed,
                ..Default::default()
            },
        )
        .ctx(&format!("start 4 pairs (packed {packed})"))?;
        check!(
            drv.features() & (1 << VIRTIO_NET_F_MQ) != 0,
            "MQ not negotiated"
        );
        check!(
            drv.config().max_virtqueue_pairs == 4,
            "max_virtqueue_pairs {}",
            drv.config().max_virtqueue_pairs
        );
        for p in 0..4usize {
            drv.select_pair(p).ctx("pair")?;
            let n = 10 * (p as u64 + 1);
            pipelined(&mut drv, TEST_SRC_MAC, n, 8, mixed_size)
                .map_err(|e| format!("packed {packed}, pair {p}: {e}"))?;
        }
        drop(drv);
        let tx1 = per_pair(&inst, "tx_packets_per_pair", 4)?;
        let rx1 = per_pair(&inst, "rx_packets_per_pair", 4)?;
        for p in 0..4 {
            let n = 10 * (p as u64 + 1);
            let (dt, dr) = (tx1[p] - tx0[p], rx1[p] - rx0[p]);
            check!(
                dt == n && dr == n,
                "packed {packed}, pair {p}: tx +{dt}, rx +{dr}, expected +{n} each \
                 (tx {tx0:?} -> {tx1:?}, rx {rx0:?} -> {rx1:?})"
            );
        }
        let flat1 = (inst.stat("tx_packets")?, inst.stat("rx_packets")?);
        check!(
            flat1.0 - flat0.0 == 100 && flat1.1 - flat0.1 == 100,
            "flat totals {flat0:?} -> {flat1:?}, expected +100 each"
        );
    }
    // More pairs than the device has: the driver refuses clearly.
    let e = match NetDriver::start(
        &dev,
        NetDriverConfig {
            pairs: 5,
            ..Default::default()
        },
    ) {
        Ok(_) => return Err("5 pairs started on a 4-pair device".into()),
        Err(e) => e.to_string(),
    };
    check!(e.contains("at most 4 pairs"), "5 pairs: {e}");
    Ok(())
}

/// `queue_pairs` is refused with EBUSY while the device is open, and with
/// EINVAL out of range or not a number; a refused write changes nothing.
pub fn mq_queue_pairs_attr(env: &Env) -> TestResult {
    let inst = Inst::create(env)?;
    check!(
        inst.attr("queue_pairs")? == "1",
        "default queue_pairs {:?}",
        inst.attr("queue_pairs")?
    );
    let refused = |v: &str, errno: i32| -> TestResult {
        let before = inst.attr("queue_pairs")?;
        match inst.set_attr("queue_pairs", v) {
            Ok(()) => return Err(format!("queue_pairs {v:?} accepted")),
            Err(e) => check!(
                e.raw_os_error() == Some(errno),
                "queue_pairs {v:?}: {e}, expected errno {errno}"
            ),
        }
        let after = inst.attr("queue_pairs")?;
        check!(
            after == before,
            "queue_pairs {before} -> {after} after a refused {v:?}"
        );
        Ok(())
    };
    // (An empty write never reaches the attribute: sysfs drops it.)
    for v in ["0", "-1", "65536", "100000", "two", "2x"] {
        refused(v, EINVAL)?;
    }
    set_pairs(&inst, 2)?;
    {
        let dev = inst.open(IommuKind::Type1)?;
        check!(
            dev.get_vqs_count().ctx("GET_VQS_COUNT")? == 4,
            "GET_VQS_COUNT with 2 pairs"
        );
        refused("3", EBUSY)?;
        refused("1", EBUSY)?;
    }
    // Closed again: writable, and the next open sees the new count.
    set_pairs(&inst, 3)?;
    let dev = inst.open(IommuKind::Type1)?;
    let vqs = dev.get_vqs_count().ctx("GET_VQS_COUNT")?;
    check!(vqs == 6, "{vqs} queues after queue_pairs 3");
    Ok(())
}

/// Waits up to `t` for a frame on the current pair.
fn frame_within(drv: &mut NetDriver<&MdevDevice>, t: Duration) -> Result<Option<Vec<u8>>, String> {
    let end = Instant::now() + t;
    loop {
        if let Some(f) = drv.try_recv().ctx("receive")? {
            return Ok(Some(f));
        }
        if Instant::now() >= end {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// SET_VRING_ENABLE 0 on both queues of pair 1 (while running) stops its
/// traffic and leaves pair 0 alone; enabling them again restarts it with
/// the frames queued meanwhile.
pub fn mq_disable_pair(env: &Env) -> TestResult {
    let inst = Inst::create(env)?;
    set_pairs(&inst, 2)?;
    let dev = inst.open(IommuKind::Type1)?;
    for packed in [false, true] {
        let mut drv = NetDriver::start(
            &dev,
            NetDriverConfig {
                pairs: 2,
                packed,
                ..Default::default()
            },
        )
        .ctx("start 2 pairs")?;
        for p in 0..2 {
            drv.select_pair(p).ctx("pair")?;
            driver::ping(&mut drv, 5, 0).ctx(&format!("pair {p} before"))?;
        }
        let tx_before = per_pair(&inst, "tx_packets_per_pair", 2)?;
        for q in [2, 3] {
            dev.set_vring_enable(q, false)
                .ctx(&format!("SET_VRING_ENABLE {q} 0"))?;
        }
        drv.select_pair(1).ctx("pair")?;
        let f = build_frame(drv.mac(), TEST_SRC_MAC, 5, 200).ctx("frame")?;
        check!(drv.queue_tx(&f).ctx("queue")?, "TX full");
        drv.flush_tx().ctx("flush")?;
        drv.kick(drv.vq(TX)).ctx("kick")?;
        check!(
            frame_within(&mut drv, Duration::from_millis(300))?.is_none(),
            "packed {packed}: pair 1 carried a frame while disabled"
        );
        let tx_mid = per_pair(&inst, "tx_packets_per_pair", 2)?;
        check!(
            tx_mid[1] == tx_before[1],
            "pair 1 counted TX while disabled: {tx_before:?} -> {tx_mid:?}"
        );
        // Pair 0 goes on.
        drv.select_pair(0).ctx("pair")?;
        driver::ping(&mut drv, 5, 0).ctx("pair 0 while pair 1 is disabled")?;
        for q in [2, 3] {
            dev.set_vring_enable(q, true)
                .ctx(&format!("SET_VRING_ENABLE {q} 1"))?;
        }
        drv.select_pair(1).ctx("pair")?;
        drv.kick(drv.vq(TX)).ctx("kick")?;
        let got = frame_within(&mut drv, Duration::from_secs(5))?
            .ok_or("pair 1: the frame queued while disabled did not come after re-enabling")?;
        let seq = check_frame(&got).map_err(|e| format!("pair 1: {e}"))?;
        check!(seq == 5, "pair 1: received frame {seq}, expected 5");
        driver::ping(&mut drv, 5, 0).ctx("pair 1 after re-enabling")?;
        let tx_after = per_pair(&inst, "tx_packets_per_pair", 2)?;
        check!(
            tx_after[1] - tx_before[1] == 6 && tx_after[0] - tx_before[0] == 5,
            "per-pair TX {tx_before:?} -> {tx_after:?}, expected +5 and +6"
        );
    }
    Ok(())
}
