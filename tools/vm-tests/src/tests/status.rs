// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Status transitions a driver may not make, and vring changes while running.

use super::*;

/// Status transitions a driver may not make, and FEATURES_OK refusal.
pub(super) fn bad_status(env: &Env, t: Transport) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    dev.set_transport(t);
    // NEEDS_RESET is the device's bit: written, it is accepted (as
    // vhost_vdpa passes it on) and not stored.
    dev.set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_NEEDS_RESET)
        .ctx("ACK|NEEDS_RESET")?;
    let s = dev.get_status().ctx("GET_STATUS")?;
    check!(
        s == VIRTIO_CONFIG_S_ACKNOWLEDGE,
        "status {s:#x} after writing ACK|NEEDS_RESET"
    );
    dev.set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE).ctx("ACK")?;
    dev.set_status(ACK_DRIVER).ctx("DRIVER")?;
    bad_input(&dev, "DRIVER_OK before FEATURES_OK", EINVAL, || {
        dev.set_status(ACK_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK)
    })?;
    bad_input(&dev, "clearing DRIVER without reset", EINVAL, || {
        dev.set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE)
    })?;
    for (missing, name) in [
        (VIRTIO_F_VERSION_1, "VERSION_1"),
        (VIRTIO_F_ACCESS_PLATFORM, "ACCESS_PLATFORM"),
    ] {
        dev.set_status(0).ctx("reset")?;
        dev.set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE).ctx("ACK")?;
        dev.set_status(ACK_DRIVER).ctx("DRIVER")?;
        let f = ((1u64 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_F_ACCESS_PLATFORM)) & !(1 << missing);
        dev.set_features(f).ctx("SET_FEATURES")?;
        dev.set_status(FEATURES_OK)
            .ctx(&format!("FEATURES_OK without {name} (the write succeeds)"))?;
        let s = dev.get_status().ctx("GET_STATUS")?;
        check!(
            s & VIRTIO_CONFIG_S_FEATURES_OK == 0,
            "FEATURES_OK without {name} stayed set (status {s:#x})"
        );
        check!(s == ACK_DRIVER, "status {s:#x} after refused FEATURES_OK");
        // DRIVER_OK together with a FEATURES_OK that cannot be accepted.
        bad_input(
            &dev,
            &format!("FEATURES_OK|DRIVER_OK without {name}"),
            EINVAL,
            || dev.set_status(DRIVER_OK),
        )?;
    }
    // DRIVER_OK with an enabled queue that has no addresses.
    dev.set_status(0).ctx("reset")?;
    dev.set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE).ctx("ACK")?;
    dev.set_status(ACK_DRIVER).ctx("DRIVER")?;
    dev.set_features((1u64 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_F_ACCESS_PLATFORM))
        .ctx("SET_FEATURES")?;
    dev.set_status(FEATURES_OK).ctx("FEATURES_OK")?;
    dev.set_vring_num(0, 64).ctx("SET_VRING_NUM")?;
    dev.set_vring_enable(0, true).ctx("SET_VRING_ENABLE")?;
    bad_input(
        &dev,
        "DRIVER_OK with an enabled queue missing addresses",
        EINVAL,
        || dev.set_status(DRIVER_OK),
    )?;
    // A queue enabled after DRIVER_OK gets the same check.
    let last = dev.get_vqs_count().ctx("GET_VQS_COUNT")? - 1;
    check!(last > 0, "the sample has one queue");
    dev.set_vring_enable(0, false).ctx("disable queue 0")?;
    dev.set_status(DRIVER_OK)
        .ctx("DRIVER_OK, no queue enabled")?;
    bad_input(
        &dev,
        "enabling a queue without a size after DRIVER_OK",
        EINVAL,
        || dev.set_vring_enable(last, true),
    )?;
    dev.suspend().ctx("SUSPEND")?;
    dev.set_vring_num(last, 64)
        .ctx("SET_VRING_NUM while suspended")?;
    dev.resume().ctx("RESUME")?;
    bad_input(
        &dev,
        "enabling a queue without addresses after DRIVER_OK",
        EINVAL,
        || dev.set_vring_enable(last, true),
    )?;
    let a = VhostVringAddr {
        index: last,
        flags: 0,
        desc_user_addr: 0x10_0000,
        used_user_addr: 0x10_2000,
        avail_user_addr: 0x10_1000,
        log_guest_addr: 0,
    };
    dev.suspend().ctx("SUSPEND")?;
    dev.set_vring_addr(&a)
        .ctx("SET_VRING_ADDR while suspended")?;
    dev.resume().ctx("RESUME")?;
    bad_input(
        &dev,
        "enabling a queue without the rings' user addresses after DRIVER_OK",
        EINVAL,
        || dev.set_vring_enable(last, true),
    )?;
    dev.suspend().ctx("SUSPEND")?;
    dev.set_vring_hva(&a).ctx("SET_VRING_HVA while suspended")?;
    dev.resume().ctx("RESUME")?;
    dev.set_vring_enable(last, true)
        .ctx("enabling a configured queue after DRIVER_OK")?;
    dev.set_status(0).ctx("reset")?;
    Ok(())
}

pub(super) fn bad_vring_while_running(env: &Env, t: Transport) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    dev.set_transport(t);
    let mut drv = NetDriver::start(&dev, NetDriverConfig::default()).ctx("start driver")?;
    driver::ping(&mut drv, 3, 0).ctx("traffic")?;
    let addr = drv.queue(RX).vring_addr(0);
    bad_input(&dev, "SET_VRING_NUM while DRIVER_OK", EINVAL, || {
        dev.set_vring_num(0, 64)
    })?;
    // A ring moved: refused. The same addresses (only the log flag and
    // address may change while running, on a device that offers
    // VHOST_F_LOG_ALL, as the sample does): accepted.
    let moved = VhostVringAddr {
        desc_user_addr: addr.desc_user_addr + 0x1000,
        ..addr
    };
    bad_input(
        &dev,
        "SET_VRING_ADDR (ring moved) while DRIVER_OK",
        EINVAL,
        || dev.set_vring_addr(&moved),
    )?;
    let moved = VhostVringAddr {
        used_user_addr: addr.used_user_addr + 0x1000,
        flags: 1 << VHOST_VRING_F_LOG,
        ..addr
    };
    bad_input(
        &dev,
        "SET_VRING_ADDR (used ring moved, log flag) while DRIVER_OK",
        EINVAL,
        || dev.set_vring_addr(&moved),
    )?;
    dev.set_vring_addr(&addr)
        .ctx("SET_VRING_ADDR (unchanged) while DRIVER_OK")?;
    bad_input(&dev, "SET_VRING_BASE while DRIVER_OK", EINVAL, || {
        dev.set_vring_base(0, 0)
    })?;
    // Still running after the refusals, and allowed once suspended.
    driver::ping(&mut drv, 3, 0).ctx("traffic after the refusals")?;
    dev.suspend().ctx("SUSPEND")?;
    let b = dev
        .get_vring_base(0)
        .ctx("GET_VRING_BASE while suspended")?;
    dev.set_vring_base(0, b)
        .ctx("SET_VRING_BASE while suspended")?;
    dev.resume().ctx("RESUME")?;
    drop(drv);
    Ok(())
}
