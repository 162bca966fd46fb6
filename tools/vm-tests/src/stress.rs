// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Ring-index stress (issue 14): long runs of a correct driver with many
//! frames in flight, every frame's sequence number and payload checked, on
//! queue sizes whose indexes cross a 0x..ff -> 0x..00 carry every 256
//! frames while the device has caught up (where a torn available index
//! looks in range and a torn used index makes the driver take entries the
//! device has not written).
//!
//! Run with `--stress`; `STRESS_FRAMES` frames per configuration (default
//! 100 000; `make stress` runs 1 000 000). The pin cache's setting of the
//! loaded `vhost_mdev` (disabled, so that iommufd goes through
//! `vfio_dma_rw()` too) is the caller's: see `tests/vm/hardening.sh`.

use std::collections::VecDeque;
use std::time::Instant;

use vhost_mdev::driver::{NetDriver, NetDriverConfig, TEST_SRC_MAC};
use vhost_mdev::net::build_frame;
use vhost_mdev::{IommuKind, MdevDevice};

use crate::check;
use crate::util::*;

/// Frames in flight: half of a 256-entry ring, as a busy guest has.
const DEPTH: usize = 128;

/// Frames per configuration.
pub fn frames() -> u64 {
    std::env::var("STRESS_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(100_000)
}

/// `frames()` frames of `size` bytes through rings of `queue_size`
/// entries, in order and byte-identical, with the device's counters exact.
pub fn run(env: &Env, kind: IommuKind, queue_size: u16, size: usize) -> TestResult {
    let count = frames();
    let inst = Inst::create(env)?;
    if size > 1514 {
        // Frames above the default MTU: the driver sizes its buffers from
        // the config space's MTU, set before open.
        inst.set_attr("mtu", "9000")
            .ctx("write mtu 9000 before open")?;
    }
    let dev = inst.open(kind)?;
    let before = inst.stats()?;
    let mut drv = NetDriver::start(
        &dev,
        NetDriverConfig {
            queue_size,
            mrg_rxbuf: true,
            max_frame: size.max(1514),
            ..Default::default()
        },
    )
    .ctx("start")?;
    check!(
        drv.queue_size() == queue_size,
        "queue size {} instead of {queue_size}",
        drv.queue_size()
    );
    let t0 = Instant::now();
    let bytes = pump(&mut drv, count, size)?;
    let secs = t0.elapsed().as_secs_f64();
    drop(drv);
    let after = inst.stats()?;
    for (name, want) in [
        ("tx_packets", count),
        ("rx_packets", count),
        ("rx_bytes", bytes),
        ("ring_errors", 0),
        ("drop_oversize", 0),
        ("drop_malformed", 0),
    ] {
        let d = stat_delta(&before, &after, name);
        check!(d == want, "stats/{name} went up by {d}, expected {want}");
    }
    println!(
        "INFO: stress {kind} queue {queue_size} {size} B: {count} frames in {secs:.1} s ({:.0} frames/s)",
        count as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// Where the sequence number is stamped: after the Ethernet header and at
/// the end of the frame, so that a frame whose end is stale (of an earlier
/// lap) or mixed with another's shows.
const SEQ_AT: usize = 14;

/// Sends `count` frames of `size` bytes, `DEPTH` in flight, and checks
/// every frame that comes back: the whole frame must be the template with
/// its own sequence number at both stamps, in order. Cheap per frame (a
/// compare, no checksum) so that the device, not the driver, sets the pace.
fn pump(drv: &mut NetDriver<&MdevDevice>, count: u64, size: usize) -> Result<u64, String> {
    let template = build_frame(drv.mac(), TEST_SRC_MAC, u64::MAX, size).ctx("frame")?;
    let tail = size - 8;
    drv.set_tx_template(&template).ctx("template")?;
    let mut inflight: VecDeque<u64> = VecDeque::with_capacity(DEPTH);
    let (mut next, mut got, mut bytes) = (0u64, 0u64, 0u64);
    let check = |f: Vec<u8>, inflight: &mut VecDeque<u64>| -> TestResult {
        let seq = inflight
            .pop_front()
            .ok_or_else(|| format!("received a frame that was not sent ({} bytes)", f.len()))?;
        let stamp = seq.to_be_bytes();
        let ok = f.len() == size
            && f[..SEQ_AT] == template[..SEQ_AT]
            && f[SEQ_AT..SEQ_AT + 8] == stamp
            && f[SEQ_AT + 8..tail] == template[SEQ_AT + 8..tail]
            && f[tail..] == stamp;
        if !ok {
            let at = |r: std::ops::Range<usize>| {
                f.get(r)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
            };
            return Err(format!(
                "frame {seq}: received {} bytes stamped {:?} / {:?} (a stale, mixed or \
                 corrupt frame), expected {size} bytes stamped {seq}",
                f.len(),
                at(SEQ_AT..SEQ_AT + 8),
                f.len().checked_sub(8).and_then(|t| at(t..f.len())),
            ));
        }
        Ok(())
    };
    while got < count {
        let mut queued = false;
        while next < count && inflight.len() < DEPTH {
            let stamp = next.to_be_bytes();
            if !drv
                .queue_tx_patched(&[(SEQ_AT, &stamp), (tail, &stamp)])
                .ctx("queue")?
            {
                break;
            }
            inflight.push_back(next);
            next += 1;
            queued = true;
        }
        if queued {
            drv.flush_tx().ctx("kick")?;
        }
        let f = drv.recv().ctx(&format!(
            "frame {got} of {count} ({} in flight)",
            inflight.len()
        ))?;
        check(f, &mut inflight)?;
        got += 1;
        bytes += size as u64;
        while let Some(f) = drv.try_recv().ctx("receive")? {
            check(f, &mut inflight)?;
            got += 1;
            bytes += size as u64;
        }
        drv.reclaim_tx().ctx("reclaim")?;
    }
    Ok(bytes)
}
