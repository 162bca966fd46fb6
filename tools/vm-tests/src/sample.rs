// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The sample parent's promises: long mixed-size runs byte-identical and
//! in order, jumbo frames with MRG_RXBUF, many instances at once without
//! cross-talk, exact counters, and the link attribute.

use std::collections::VecDeque;
use std::time::Duration;

use libc::EBUSY;
use vhost_mdev::driver::{mixed_size, NetDriver, NetDriverConfig, TEST_SRC_MAC};
use vhost_mdev::net::{build_frame, check_frame, verify_frame, Mac, NetConfig, NET_HDR_LEN};
use vhost_mdev::uapi::*;
use vhost_mdev::{IommuKind, MdevDevice, VhostBackend};

use crate::check;
use crate::raw::{RawNet, RawOpts};
use crate::util::*;

/// Sends `count` frames with up to `depth` in flight; checks each comes
/// back byte-identical and in order. Returns the frame bytes sent.
pub fn pipelined(
    drv: &mut NetDriver<&MdevDevice>,
    src: Mac,
    count: u64,
    depth: usize,
    size: impl Fn(u64) -> usize,
) -> Result<u64, String> {
    let mut inflight: VecDeque<Vec<u8>> = VecDeque::with_capacity(depth);
    let (mut next, mut got, mut bytes) = (0u64, 0u64, 0u64);
    let take = |f: Vec<u8>, inflight: &mut VecDeque<Vec<u8>>, got: &mut u64| {
        let want = inflight
            .pop_front()
            .ok_or_else(|| format!("received a frame that was not sent ({} bytes)", f.len()))?;
        let seq = check_frame(&f).map_err(|e| format!("frame {got}: {e}"))?;
        check!(
            seq == *got,
            "expected frame {got}, received frame {seq} (out of order or foreign)"
        );
        verify_frame(&want, &f).ctx(&format!("frame {seq}"))?;
        *got += 1;
        Ok::<(), String>(())
    };
    while got < count {
        let mut queued = false;
        while next < count && inflight.len() < depth {
            let f = build_frame(drv.mac(), src, next, size(next)).ctx("frame")?;
            if !drv.queue_tx(&f).ctx("queue")? {
                break;
            }
            bytes += f.len() as u64;
            inflight.push_back(f);
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
        take(f, &mut inflight, &mut got)?;
        while let Some(f) = drv.try_recv().ctx("receive")? {
            take(f, &mut inflight, &mut got)?;
        }
    }
    drv.reclaim_tx().ctx("reclaim")?;
    Ok(bytes)
}

fn check_counters(
    inst: &Inst,
    before: &std::collections::BTreeMap<String, u64>,
    want: &[(&str, u64)],
) -> TestResult {
    let after = inst.stats()?;
    for (name, v) in want {
        let d = stat_delta(before, &after, name);
        check!(
            d == *v,
            "stats/{name} went up by {d}, expected exactly {v} (before {before:?}, after {after:?})"
        );
    }
    Ok(())
}

/// 10 000 frames of mixed sizes 60-1514 (1 000 in the quick suite) come
/// back byte-identical and in order, and the counters match exactly.
pub fn mixed_10000(env: &Env) -> TestResult {
    mixed(env, IommuKind::Type1)
}

/// The same over iommufd, where the core pins and caches guest pages and
/// the sample copies each frame's data TX buffer to RX buffer directly
/// (`vhost_mdev_dma_copy()`): every frame must be counted in
/// `stats/direct_frames` (with type1, none is).
pub fn mixed_10000_iommufd(env: &Env) -> TestResult {
    mixed(env, IommuKind::Iommufd)
}

fn mixed(env: &Env, kind: IommuKind) -> TestResult {
    let count = scale(1000, 10_000);
    let inst = Inst::create(env)?;
    let dev = inst.open(kind)?;
    let before = inst.stats()?;
    let mut drv = NetDriver::start(
        &dev,
        NetDriverConfig {
            queue_size: 256,
            ..Default::default()
        },
    )
    .ctx("start")?;
    let bytes = pipelined(&mut drv, TEST_SRC_MAC, count, 32, mixed_size)?;
    let expect: u64 = (0..count).map(|i| mixed_size(i) as u64).sum();
    check!(
        bytes == expect,
        "sent {bytes} bytes, sizes add up to {expect}"
    );
    drop(drv);
    check_counters(
        &inst,
        &before,
        &[
            ("tx_packets", count),
            ("rx_packets", count),
            ("tx_bytes", bytes),
            ("rx_bytes", bytes),
            ("drop_oversize", 0),
            ("drop_malformed", 0),
            ("ring_errors", 0),
            (
                "direct_frames",
                if kind == IommuKind::Iommufd { count } else { 0 },
            ),
        ],
    )?;
    let after = inst.stats()?;
    check!(
        stat_delta(&before, &after, "kicks") > 0 && stat_delta(&before, &after, "interrupts") > 0,
        "kicks/interrupts not counted: {after:?}"
    );
    Ok(())
}

/// 9000-byte MTU set through the `mtu` attribute before open: the config
/// space says 9000 and full-size frames cross multiple RX buffers with
/// MRG_RXBUF, byte-identical.
pub fn jumbo_mrg(env: &Env) -> TestResult {
    jumbo(env, IommuKind::Type1)
}

/// The same over iommufd: 9000-byte frames copied directly from one TX
/// buffer across pages into several RX buffers.
pub fn jumbo_mrg_iommufd(env: &Env) -> TestResult {
    jumbo(env, IommuKind::Iommufd)
}

fn jumbo(env: &Env, kind: IommuKind) -> TestResult {
    let inst = Inst::create(env)?;
    inst.set_attr("mtu", "9000")
        .ctx("write mtu 9000 before open")?;
    check!(
        inst.attr("mtu")? == "9000",
        "mtu reads {}",
        inst.attr("mtu")?
    );
    let dev = inst.open(kind)?;
    match inst.set_attr("mtu", "1500") {
        Err(e) if e.raw_os_error() == Some(EBUSY) => {}
        r => return Err(format!("mtu write while open: {r:?}, expected EBUSY")),
    }
    let before = inst.stats()?;
    let mut net = RawNet::start(
        &dev,
        RawOpts {
            mrg: true,
            rx_buf: 2048,
            tx_buf: 9216,
            ..Default::default()
        },
    )?;
    check!(
        net.config.mtu == 9000,
        "config space MTU {} (attribute set to 9000)",
        net.config.mtu
    );
    let sizes = [9014usize, 9000, 8999, 4096, 60, 1514, 2036, 2037];
    let count = scale(24, 200);
    let mut bytes = 0u64;
    for i in 0..count {
        let len = sizes[i % sizes.len()];
        let f = build_frame(net.config.mac, TEST_SRC_MAC, i as u64, len).ctx("frame")?;
        net.send(&f)?;
        let (nbufs, got) = net
            .recv(Duration::from_secs(5))
            .ctx(&format!("frame {i} of {len} bytes"))?;
        verify_frame(&f, &got).ctx(&format!("frame {i} of {len} bytes"))?;
        let want = (len + NET_HDR_LEN).div_ceil(2048) as u16;
        check!(
            nbufs == want,
            "frame {i} of {len} bytes: num_buffers {nbufs}, expected {want}"
        );
        net.wait_tx_done(Duration::from_secs(5))?;
        bytes += len as u64;
    }
    let s = dev.get_status().ctx("GET_STATUS")?;
    check!(s & VIRTIO_CONFIG_S_NEEDS_RESET == 0, "status {s:#x}");
    drop(net);
    check_counters(
        &inst,
        &before,
        &[
            ("tx_packets", count as u64),
            ("rx_packets", count as u64),
            ("tx_bytes", bytes),
            ("rx_bytes", bytes),
            ("drop_oversize", 0),
            (
                "direct_frames",
                if kind == IommuKind::Iommufd {
                    count as u64
                } else {
                    0
                },
            ),
        ],
    )
}

/// Eight instances with distinct MACs (set through the attribute, read
/// back from the config space) move frames at once from eight threads;
/// every frame comes back only to its own instance.
pub fn eight_concurrent(env: &Env) -> TestResult {
    const N: usize = 8;
    let frames = scale(150, 1000);
    let insts: Vec<Inst> = (0..N)
        .map(|_| Inst::create(env))
        .collect::<Result<_, _>>()?;
    let mut macs = Vec::new();
    for (i, inst) in insts.iter().enumerate() {
        let mac = Mac([0x02, 0x5a, 0x00, 0x00, 0x00, 0x10 + i as u8]);
        inst.set_attr("mac", &mac.to_string())
            .ctx(&format!("set mac of instance {i}"))?;
        check!(
            inst.attr("mac")? == mac.to_string(),
            "mac attribute of instance {i} reads {}",
            inst.attr("mac")?
        );
        macs.push(mac);
    }
    let befores: Vec<_> = insts.iter().map(|i| i.stats()).collect::<Result<_, _>>()?;
    let devs: Vec<MdevDevice> = insts
        .iter()
        .enumerate()
        .map(|(i, inst)| {
            inst.open(if i % 2 == 0 {
                IommuKind::Type1
            } else {
                IommuKind::Iommufd
            })
        })
        .collect::<Result<_, _>>()?;
    let results: Vec<Result<u64, String>> = std::thread::scope(|s| {
        let hs: Vec<_> = devs
            .iter()
            .enumerate()
            .map(|(i, dev)| {
                let mac = macs[i];
                s.spawn(move || {
                    let cfg = NetConfig::parse(&dev.get_config(0, 12).ctx("GET_CONFIG")?)
                        .ctx("config")?;
                    check!(
                        cfg.mac == mac,
                        "instance {i}: config MAC {}, attribute set to {mac}",
                        cfg.mac
                    );
                    let mut drv = NetDriver::start(
                        dev,
                        NetDriverConfig {
                            queue_size: 128,
                            timeout: Duration::from_secs(20),
                            ..Default::default()
                        },
                    )
                    .ctx("start")?;
                    check!(drv.mac() == mac, "instance {i}: driver MAC {}", drv.mac());
                    // A per-instance source MAC too: a frame from another
                    // instance would differ in both addresses.
                    let src = Mac([0x02, 0x77, 0, 0, 0, i as u8]);
                    let size = move |seq: u64| mixed_size(seq.wrapping_add(i as u64 * 97));
                    pipelined(&mut drv, src, frames, 16, size)
                        .map_err(|e| format!("instance {i}: {e}"))
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
            .collect()
    });
    for (i, r) in results.into_iter().enumerate() {
        let bytes = r?;
        check_counters(
            &insts[i],
            &befores[i],
            &[
                ("tx_packets", frames),
                ("rx_packets", frames),
                ("tx_bytes", bytes),
                ("rx_bytes", bytes),
            ],
        )
        .map_err(|e| format!("instance {i}: {e}"))?;
    }
    drop(devs);
    Ok(())
}

/// Counters match exactly what was sent, drops included: without
/// MRG_RXBUF a frame larger than the posted RX buffer is `drop_oversize`;
/// a chain shorter than the header or longer than the largest frame is
/// `drop_malformed`; neither is a ring error.
pub fn stats_exact(env: &Env) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    let before = inst.stats()?;
    let mut net = RawNet::start(
        &dev,
        RawOpts {
            rx_buf: 1024,
            ..Default::default()
        },
    )?;
    let mac = net.config.mac;
    let cap = 1024 - NET_HDR_LEN;
    let (mut tx, mut rx) = (0u64, 0u64);
    let (mut ok, mut big) = (0u64, 0u64);
    for (seq, len) in [(0u64, 500usize), (1, 1500), (2, cap), (3, cap + 1), (4, 60)] {
        let f = build_frame(mac, TEST_SRC_MAC, seq, len).ctx("frame")?;
        net.send(&f)?;
        net.wait_tx_done(Duration::from_secs(5))
            .ctx(&format!("frame of {len} bytes"))?;
        tx += len as u64;
        if len <= cap {
            let (_, got) = net
                .recv(Duration::from_secs(5))
                .ctx(&format!("frame of {len} bytes"))?;
            verify_frame(&f, &got).ctx(&format!("frame of {len} bytes"))?;
            rx += len as u64;
            ok += 1;
        } else {
            std::thread::sleep(Duration::from_millis(50));
            check!(
                net.try_recv()?.is_none(),
                "a {len}-byte frame was delivered into a 1024-byte RX buffer without MRG_RXBUF"
            );
            big += 1;
        }
    }
    // Malformed chains: shorter than the header, longer than any frame.
    net.send_seg(8)?;
    net.send_seg(0x2_0000)?;
    net.wait_tx_done(Duration::from_secs(5))
        .ctx("malformed chains must be returned")?;
    let s = dev.get_status().ctx("GET_STATUS")?;
    check!(
        s & VIRTIO_CONFIG_S_NEEDS_RESET == 0,
        "malformed chains set NEEDS_RESET (status {s:#x}); they are drops"
    );
    // The device still works after the drops.
    let f = build_frame(mac, TEST_SRC_MAC, 9, 300).ctx("frame")?;
    net.send(&f)?;
    let (_, got) = net.recv(Duration::from_secs(5)).ctx("frame after drops")?;
    verify_frame(&f, &got).ctx("frame after drops")?;
    drop(net);
    check_counters(
        &inst,
        &before,
        &[
            ("tx_packets", ok + big + 1),
            ("tx_bytes", tx + 300),
            ("rx_packets", ok + 1),
            ("rx_bytes", rx + 300),
            ("drop_oversize", big),
            ("drop_malformed", 2),
            ("ring_errors", 0),
        ],
    )
}

fn link_status(dev: &MdevDevice) -> Result<bool, String> {
    let c = NetConfig::parse(&dev.get_config(0, 12).ctx("GET_CONFIG")?).ctx("config")?;
    Ok(c.link_up())
}

/// Toggling the `link` attribute while open fires the config eventfd and
/// shows in the config status; writing the same value does not fire.
/// `mac` and `mtu` refuse writes while open.
pub fn link_toggle(env: &Env) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    let cfg = eventfd()?;
    dev.set_config_call(Some(&cfg)).ctx("config eventfd")?;
    check!(link_status(&dev)?, "link down at start");
    let short = Duration::from_millis(300);
    for (value, up) in [("0", false), ("up", true), ("down", false), ("1", true)] {
        inst.set_attr("link", value)
            .ctx(&format!("write link {value}"))?;
        check!(
            fired(&cfg, Duration::from_secs(2))?,
            "link {value}: config eventfd did not fire"
        );
        check!(
            link_status(&dev)? == up,
            "link {value}: config status says {}",
            if up { "down" } else { "up" }
        );
        inst.set_attr("link", value)
            .ctx(&format!("write link {value} again"))?;
        check!(
            !fired(&cfg, short)?,
            "link {value} written twice: the unchanged value fired the config eventfd"
        );
    }
    let mac = inst.attr("mac")?;
    match inst.set_attr("mac", "02:01:02:03:04:05") {
        Err(e) if e.raw_os_error() == Some(EBUSY) => {}
        r => return Err(format!("mac write while open: {r:?}, expected EBUSY")),
    }
    check!(inst.attr("mac")? == mac, "mac changed by a refused write");
    match inst.set_attr("mtu", "9000") {
        Err(e) if e.raw_os_error() == Some(EBUSY) => {}
        r => return Err(format!("mtu write while open: {r:?}, expected EBUSY")),
    }
    drop(dev);
    inst.set_attr("mac", "02:01:02:03:04:05")
        .ctx("mac write after close")?;
    Ok(())
}
