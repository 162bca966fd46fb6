// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Loopback traffic, reset and suspend/resume.

use super::*;

pub(super) fn traffic(
    env: &Env,
    kind: IommuKind,
    t: Transport,
    kick: KickMode,
    indirect: bool,
    frames: u64,
) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = open_kind(&inst, kind)?;
    dev.set_transport(t);
    let cfg = NetDriverConfig {
        kick,
        indirect,
        queue_size: 64,
        ..Default::default()
    };
    let mut drv = NetDriver::start(&dev, cfg).ctx("start driver")?;
    check!(
        !indirect || drv.features() & (1 << VIRTIO_RING_F_INDIRECT_DESC) != 0,
        "INDIRECT_DESC not negotiated"
    );
    let rep = driver::ping(&mut drv, frames, 0).ctx("mixed-size loopback")?;
    check!(rep.frames == frames, "{} of {frames} frames", rep.frames);
    drv.stop().ctx("reset")?;
    Ok(())
}

pub(super) fn reset_renegotiate(env: &Env) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    for round in 0..3 {
        let mut drv = NetDriver::start(&dev, NetDriverConfig::default())
            .ctx(&format!("start driver (round {round})"))?;
        driver::ping(&mut drv, 10, 0).ctx(&format!("traffic (round {round})"))?;
        drop(drv);
        check!(
            dev.get_status().ctx("GET_STATUS")? == 0,
            "status after reset"
        );
    }
    // Status 0 as a reset, then again through VFIO_DEVICE_RESET.
    let drv = NetDriver::start(&dev, NetDriverConfig::default()).ctx("start")?;
    dev.set_status(0).ctx("SET_STATUS 0")?;
    check!(
        dev.get_status().ctx("GET_STATUS")? == 0,
        "status 0 not applied"
    );
    for q in [RX, TX] {
        let b = dev.get_vring_base(u32::from(q)).ctx("GET_VRING_BASE")?;
        check!(b == 0, "queue {q} base {b} after reset");
    }
    drop(drv);
    let mut drv = NetDriver::start(&dev, NetDriverConfig::default()).ctx("start after reset")?;
    driver::ping(&mut drv, 10, 0).ctx("traffic after reset")?;
    Ok(())
}

pub(super) fn suspend_resume(env: &Env) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    let mut drv = NetDriver::start(&dev, NetDriverConfig::default()).ctx("start")?;
    driver::ping(&mut drv, 20, 0).ctx("traffic")?;
    dev.suspend().ctx("SUSPEND")?;
    let tx = dev.get_vring_base(u32::from(TX)).ctx("GET_VRING_BASE TX")?;
    check!(tx == 20, "TX stopped at {tx}, expected 20");
    let rx = dev.get_vring_base(u32::from(RX)).ctx("GET_VRING_BASE RX")?;
    check!(rx == 20, "RX stopped at {rx}, expected 20");
    // While suspended, a kick is not processed.
    let frame =
        vhost_mdev::net::build_frame(drv.mac(), driver::TEST_SRC_MAC, 20, 100).ctx("frame")?;
    drv.send(&frame).ctx("send while suspended")?;
    check!(
        drv.recv_timeout(Duration::from_millis(300)).is_err(),
        "frame looped back while suspended"
    );
    dev.resume().ctx("RESUME")?;
    // The device catches up on the pending kick after RESUME, or at the
    // next kick.
    drv.kick(TX).ctx("kick")?;
    let got = drv.recv().ctx("frame after resume")?;
    vhost_mdev::net::verify_frame(&frame, &got).ctx("frame after resume")?;
    Ok(())
}
