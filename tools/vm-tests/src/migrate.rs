// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The device state a live migration moves: the sample suspended in the
//! middle of traffic leaves every descriptor it took completed and
//! published, and a second instance started from the vring bases on the
//! same memory goes on without losing or repeating a frame.

use std::time::{Duration, Instant};

use vhost_mdev::driver::{negotiate, wait_eventfd, TEST_SRC_MAC};
use vhost_mdev::net::{build_frame, Mac, NetConfig, NET_CONFIG_LEN};
use vhost_mdev::uapi::*;
use vhost_mdev::{DmaMapper, IommuKind, VhostBackend};

use crate::check;
use crate::raw::{RawNet, RawOpts, RXQ, TXQ};
use crate::util::*;

/// Frames sent in one burst before SUSPEND.
const FRAMES: u64 = 48;
/// RX buffers posted before SUSPEND: the frames beyond wait for buffers,
/// still available in the TX ring.
const POSTED: u64 = 20;

fn frame_len(seq: u64) -> usize {
    64 + (seq as usize * 97) % 1300
}

/// The used index the device published on queue `q` (from guest memory).
fn used_idx(net: &RawNet<'_>, q: u16) -> Result<u16, String> {
    let vq = if q == RXQ { &net.rx } else { &net.tx };
    let v: u16 = vq.memory().load(vq.layout().used_idx()).ctx("used idx")?;
    Ok(u16::from_le(v))
}

/// Takes every received frame and checks it against the frames sent:
/// `next` is the sequence number the next one must have.
fn take_frames(net: &mut RawNet<'_>, next: &mut u64, mac: Mac) -> TestResult {
    while let Some((_, f)) = net.try_recv()? {
        let want = build_frame(mac, TEST_SRC_MAC, *next, frame_len(*next)).ctx("frame")?;
        check!(
            f == want,
            "frame {next}: {} bytes, not the {} sent (or corrupted)",
            f.len(),
            want.len()
        );
        *next += 1;
    }
    Ok(())
}

/// Suspends the sample on back end `kind` in the middle of a burst, checks
/// its state, and moves the queues to a second instance.
pub fn device_state(env: &Env, kind: IommuKind) -> TestResult {
    let src = Inst::create(env)?;
    let dst = Inst::create(env)?;
    if kind == IommuKind::Iommufd {
        iommufd_available(&src)?;
    }
    // The destination takes the source's MAC and MTU before it is opened.
    src.set_attr("mtu", "1400").ctx("source mtu")?;
    let mac = src.attr("mac")?;
    dst.set_attr("mac", &mac).ctx("destination mac")?;
    dst.set_attr("mtu", "1400").ctx("destination mtu")?;
    let dev_b = dst.open(kind)?;
    let dev_a = src.open(kind)?;
    let mut net = RawNet::start(
        &dev_a,
        RawOpts {
            post_rx: false,
            ..Default::default()
        },
    )?;
    let cfg_mac = net.config.mac;
    let f = net.features;

    // A burst with too few RX buffers, and SUSPEND once they are used: the
    // device is in the middle of the traffic, with TX frames it must leave
    // available (it cannot deliver them).
    for slot in 0..POSTED as usize {
        net.post_rx(slot)?;
    }
    net.rx.publish().ctx("RX publish")?;
    for seq in 0..FRAMES {
        let fr = build_frame(cfg_mac, TEST_SRC_MAC, seq, frame_len(seq)).ctx("frame")?;
        net.queue_tx(&fr)?;
    }
    net.tx.publish().ctx("TX publish")?;
    dev_a.notify(TXQ).ctx("kick TX")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while u64::from(used_idx(&net, RXQ)?) < POSTED {
        check!(
            Instant::now() < deadline,
            "{} of {POSTED} RX buffers used within 10 s",
            used_idx(&net, RXQ)?
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    dev_a.suspend().ctx("SUSPEND")?;

    // Every descriptor taken is completed and published: the bases equal
    // the used indexes in guest memory, RX took one buffer per TX frame.
    let rx_base = dev_a.get_vring_base(u32::from(RXQ)).ctx("RX base")?;
    let tx_base = dev_a.get_vring_base(u32::from(TXQ)).ctx("TX base")?;
    let (rx_used, tx_used) = (used_idx(&net, RXQ)?, used_idx(&net, TXQ)?);
    check!(
        rx_base == u32::from(rx_used) && tx_base == u32::from(tx_used),
        "suspended with descriptors taken and not completed: bases RX {rx_base} TX {tx_base}, used RX {rx_used} TX {tx_used}"
    );
    check!(
        u64::from(rx_base) == POSTED && tx_base == rx_base,
        "bases RX {rx_base}, TX {tx_base} after {FRAMES} frames sent, {POSTED} RX buffers"
    );
    // Nothing moves while suspended.
    std::thread::sleep(Duration::from_millis(200));
    check!(
        used_idx(&net, TXQ)? == tx_used && used_idx(&net, RXQ)? == rx_used,
        "the device moved while suspended"
    );
    // What was published is whole: the frames received so far, byte for
    // byte, in order. (This re-posts their RX buffers; the destination
    // sees them.)
    let mut next = 0u64;
    take_frames(&mut net, &mut next, cfg_mac)?;
    check!(
        next == u64::from(rx_base),
        "{next} frames before the switch, RX base {rx_base}"
    );
    let moved = FRAMES - next;
    println!(
        "INFO: migrate_state_{kind}: suspended after {next} of {FRAMES} frames; {moved} move to the destination"
    );

    // The destination: same features, MAC and MTU, the same rings (the
    // guest's memory, mapped in its own container) from the bases.
    check!(
        dev_b.get_config(0, NET_CONFIG_LEN as u32).ctx("config")?
            == dev_a.get_config(0, NET_CONFIG_LEN as u32).ctx("config")?,
        "destination config differs from the source's"
    );
    let cfg = NetConfig::parse(&dev_b.get_config(0, NET_CONFIG_LEN as u32).ctx("config")?)
        .ctx("config")?;
    check!(cfg.mtu == 1400, "destination MTU {}", cfg.mtu);
    let got = negotiate(&dev_b, f).ctx("negotiate on the destination")?;
    check!(got == f, "destination features {got:#x}, source {f:#x}");
    for q in [&net.rx, &net.tx] {
        // SAFETY: unmapped below before the memory goes (RawNet's drop
        // unmaps it from the device it drives last, the destination).
        unsafe { q.memory().map(&dev_b, q.iova()) }.ctx("map on the destination")?;
    }
    for (i, q, base) in [(RXQ, &net.rx, rx_base), (TXQ, &net.tx, tx_base)] {
        let i = u32::from(i);
        dev_b
            .set_vring_num(i, u32::from(q.size()))
            .ctx("SET_VRING_NUM")?;
        dev_b
            .set_vring_addr(&q.vring_addr(i))
            .ctx("SET_VRING_ADDR")?;
        dev_b.set_vring_hva(&q.vring_hva(i)).ctx("SET_VRING_HVA")?;
        dev_b.set_vring_base(i, base).ctx("SET_VRING_BASE")?;
        dev_b
            .set_vring_call(i, Some(&net.calls[i as usize]))
            .ctx("vq eventfd")?;
        dev_b.set_vring_enable(i, true).ctx("SET_VRING_ENABLE")?;
    }
    // The source goes away (as QEMU's source stops its device).
    dev_a.set_status(0).ctx("source reset")?;
    dev_a.detach_all_irqs().ctx("source IRQs")?;
    for q in [&net.rx, &net.tx] {
        dev_a
            .unmap_dma(q.iova(), q.memory().len() as u64)
            .ctx("source unmap")?;
    }
    dev_b
        .set_status(
            VIRTIO_CONFIG_S_ACKNOWLEDGE
                | VIRTIO_CONFIG_S_DRIVER
                | VIRTIO_CONFIG_S_FEATURES_OK
                | VIRTIO_CONFIG_S_DRIVER_OK,
        )
        .ctx("DRIVER_OK on the destination")?;
    net.dev = &dev_b;
    // The destination takes the frames the source left (they are still
    // available) without a kick of its own: a VMM kicks after a migration.
    dev_b.notify(TXQ).ctx("kick TX")?;
    dev_b.notify(RXQ).ctx("kick RX")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while next < FRAMES {
        take_frames(&mut net, &mut next, cfg_mac)?;
        if next == FRAMES {
            break;
        }
        check!(
            Instant::now() < deadline,
            "{next} of {FRAMES} frames after the switch ({moved} moved; status {:?})",
            dev_b.get_status()
        );
        wait_eventfd(&net.calls[0], Duration::from_millis(20)).ctx("poll")?;
    }
    net.wait_tx_done(Duration::from_secs(5))?;
    // No frame twice: nothing more comes.
    std::thread::sleep(Duration::from_millis(200));
    check!(
        net.try_recv()?.is_none(),
        "a frame came back twice after the switch"
    );
    check!(
        used_idx(&net, TXQ)? == FRAMES as u16 && used_idx(&net, RXQ)? == FRAMES as u16,
        "used indexes after the switch: RX {} TX {}",
        used_idx(&net, RXQ)?,
        used_idx(&net, TXQ)?
    );
    // The source instance can be used again.
    drop(net);
    let mut again = RawNet::start(&dev_a, RawOpts::default())?;
    let fr = build_frame(cfg_mac, TEST_SRC_MAC, 7, 300).ctx("frame")?;
    again.send(&fr)?;
    let (_, back) = again.recv(Duration::from_secs(5))?;
    check!(
        back == fr,
        "the source instance after the switch: frame differs"
    );
    Ok(())
}
