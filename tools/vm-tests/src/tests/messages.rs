// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Malformed messages, out-of-range requests and the reply slot.

use super::*;

// Codes of the vhost ioctl space that no request has: an unused nr, and
// two known nrs with a 4-byte size.
vmm_sys_util::ioctl_iow_nr!(VHOST_UNKNOWN_5F, VHOST_VIRTIO, 0x5f, u64);
vmm_sys_util::ioctl_iow_nr!(VHOST_SET_FEATURES_4, VHOST_VIRTIO, 0x00, u32);
vmm_sys_util::ioctl_iow_nr!(VHOST_SET_VRING_NUM_4, VHOST_VIRTIO, 0x10, u32);

fn msg_errno(dev: &MdevDevice, bytes: &[u8], errno: i32, what: &str) -> TestResult {
    bad_input(dev, what, errno, || dev.msg_write(0, bytes))
}

/// Malformed writes and reads of region 0.
pub(super) fn bad_messages(env: &Env) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    let feat = 1u64 << VIRTIO_F_VERSION_1;
    let mut short = encode_raw(VHOST_SET_FEATURES, 0, &feat.to_ne_bytes());
    short.truncate(HDR_SIZE + 4);
    msg_errno(&dev, &short, EINVAL, "write shorter than 16 + size")?;
    let mut long = encode_raw(VHOST_SET_FEATURES, 0, &feat.to_ne_bytes());
    long.extend_from_slice(&[0; 4]);
    msg_errno(&dev, &long, EINVAL, "write longer than 16 + size")?;
    msg_errno(&dev, &[0u8; 8], EINVAL, "write shorter than the header")?;
    let mut huge = encode_raw(VHOST_VDPA_SET_CONFIG, 0, &[]);
    huge[12..16].copy_from_slice(&8192u32.to_ne_bytes());
    huge.resize(VHOST_VFIO_MSG_REGION_SIZE as usize, 0);
    msg_errno(&dev, &huge, EINVAL, "size above the region")?;
    let mut over = encode_raw(VHOST_VDPA_SET_CONFIG, 0, &[0; 8]);
    over.resize(VHOST_VFIO_MSG_REGION_SIZE as usize + 1, 0);
    let n = (over.len() - HDR_SIZE) as u32;
    over[12..16].copy_from_slice(&n.to_ne_bytes());
    bad_input_any(&dev, "write past the region end", || {
        dev.msg_write(0, &over)
    })?;
    bad_input(&dev, "write at offset 8", EINVAL, || {
        dev.msg_write(
            8,
            &encode_raw(VHOST_GET_FEATURES, VHOST_VFIO_NEED_REPLY, &[]),
        )
    })?;
    msg_errno(
        &dev,
        &encode_raw(0xdead_beef, 0, &[]),
        ENOTTY,
        "unknown request",
    )?;
    msg_errno(
        &dev,
        &encode_raw(VHOST_VDPA_SET_STATUS, 0, &[0; 4]),
        EINVAL,
        "SET_STATUS with 4-byte payload",
    )?;
    msg_errno(
        &dev,
        &encode_raw(VHOST_SET_VRING_NUM, 0, &[0; 4]),
        EINVAL,
        "SET_VRING_NUM with 4-byte payload",
    )?;
    msg_errno(
        &dev,
        &encode_raw(VHOST_GET_FEATURES, VHOST_VFIO_NEED_REPLY, &[0; 8]),
        EINVAL,
        "GET_FEATURES with a payload",
    )?;
    // Every request with a reply needs NEED_REPLY.
    let state0 = vhost_mdev::msg::vring_state_bytes(&VhostVringState { index: 0, num: 0 });
    let cfg_hdr: Vec<u8> = [0u32.to_ne_bytes(), 6u32.to_ne_bytes()].concat();
    for (req, payload, name) in [
        (VHOST_GET_FEATURES, &[][..], "GET_FEATURES"),
        (VHOST_VDPA_GET_DEVICE_ID, &[][..], "GET_DEVICE_ID"),
        (VHOST_VDPA_GET_STATUS, &[][..], "GET_STATUS"),
        (VHOST_VDPA_GET_CONFIG_SIZE, &[][..], "GET_CONFIG_SIZE"),
        (VHOST_VDPA_GET_CONFIG, &cfg_hdr[..], "GET_CONFIG"),
        (VHOST_VDPA_GET_VRING_NUM, &[][..], "GET_VRING_NUM"),
        (VHOST_VDPA_GET_VQS_COUNT, &[][..], "GET_VQS_COUNT"),
        (VHOST_GET_VRING_BASE, &state0[..], "GET_VRING_BASE"),
    ] {
        msg_errno(
            &dev,
            &encode_raw(req, 0, payload),
            EINVAL,
            &format!("{name} without NEED_REPLY"),
        )?;
        // Nothing was staged by the refused request.
        expect_errno(
            dev.msg_read(0, HDR_SIZE + 8),
            ENODATA,
            &format!("reply after a refused {name}"),
        )?;
    }
    let feat = (1u64 << VIRTIO_F_VERSION_1).to_ne_bytes();
    for (req, payload, name) in [
        (VHOST_SET_FEATURES, &feat[..], "SET_FEATURES"),
        (VHOST_SET_OWNER, &[][..], "SET_OWNER"),
        (VHOST_SET_VRING_NUM, &state0[..], "SET_VRING_NUM"),
        (VHOST_SET_VRING_BASE, &state0[..], "SET_VRING_BASE"),
        (VHOST_VDPA_SET_VRING_ENABLE, &state0[..], "SET_VRING_ENABLE"),
        (VHOST_VDPA_SUSPEND, &[][..], "SUSPEND"),
    ] {
        msg_errno(
            &dev,
            &encode_raw(req, VHOST_VFIO_NEED_REPLY, payload),
            EINVAL,
            &format!("NEED_REPLY on {name}"),
        )?;
    }
    // Payloads of the wrong size for each fixed layout.
    for (req, n, name) in [
        (VHOST_SET_FEATURES, 4usize, "SET_FEATURES with 4 bytes"),
        (VHOST_SET_FEATURES, 16, "SET_FEATURES with 16 bytes"),
        (VHOST_SET_VRING_ADDR, 32, "SET_VRING_ADDR with 32 bytes"),
        (VHOST_SET_VRING_BASE, 12, "SET_VRING_BASE with 12 bytes"),
        (VHOST_SET_OWNER, 4, "SET_OWNER with a payload"),
    ] {
        msg_errno(&dev, &encode_raw(req, 0, &vec![0; n]), EINVAL, name)?;
    }
    // SET_CONFIG whose header names more or fewer bytes than follow.
    let mut sc = [0u32.to_ne_bytes(), 6u32.to_ne_bytes()].concat();
    sc.extend_from_slice(&[0; 4]);
    msg_errno(
        &dev,
        &encode_raw(VHOST_VDPA_SET_CONFIG, 0, &sc),
        EINVAL,
        "SET_CONFIG header len 6 with 4 bytes",
    )?;
    msg_errno(
        &dev,
        &encode_raw(VHOST_VDPA_SET_CONFIG, 0, &[0; 4]),
        EINVAL,
        "SET_CONFIG shorter than its header",
    )?;
    msg_errno(
        &dev,
        &encode_raw(
            VHOST_VDPA_SET_STATUS,
            VHOST_VFIO_NEED_REPLY,
            &[VIRTIO_CONFIG_S_ACKNOWLEDGE],
        ),
        EINVAL,
        "NEED_REPLY on a SET",
    )?;
    Ok(())
}

/// Requests with out-of-range arguments, over one transport.
pub(super) fn bad_requests(env: &Env, t: Transport) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    dev.set_transport(t);
    let nvqs = dev.get_vqs_count().ctx("GET_VQS_COUNT")?;
    let max = u32::from(dev.get_vring_num().ctx("GET_VRING_NUM")?);
    let offered = dev.get_features().ctx("GET_FEATURES")?;
    let size = dev.get_config_size().ctx("GET_CONFIG_SIZE")?;

    if t == Transport::Ioctl {
        bad_input(&dev, "unknown ioctl", ENOTTY, || {
            dev.send(VHOST_UNKNOWN_5F(), 0, &[0; 8])
        })?;
        // The dispatcher matches full codes: a known nr with another size
        // is another (unknown) ioctl.
        bad_input(
            &dev,
            "SET_FEATURES ioctl with a 4-byte size",
            ENOTTY,
            || dev.send(VHOST_SET_FEATURES_4(), 0, &[0; 4]),
        )?;
        bad_input(
            &dev,
            "SET_VRING_NUM ioctl with a 4-byte size",
            ENOTTY,
            || dev.send(VHOST_SET_VRING_NUM_4(), 0, &[0; 4]),
        )?;
    } else {
        bad_input(&dev, "unknown request code", ENOTTY, || {
            dev.send(0xdead_beef, 0, &[])
        })?;
        bad_input(&dev, "request code above 32 bits", ENOTTY, || {
            dev.send(VHOST_GET_FEATURES | (1 << 40), VHOST_VFIO_NEED_REPLY, &[])
        })?;
    }
    // vhost requests outside the message table are unknown on both.
    bad_input(&dev, "VHOST_SET_VRING_KICK", ENOTTY, || {
        dev.send(VHOST_SET_VRING_KICK(), 0, &[0; 8])
    })?;
    bad_input(&dev, "VHOST_SET_BACKEND_FEATURES", ENOTTY, || {
        dev.send(VHOST_SET_BACKEND_FEATURES(), 0, &[0; 8])
    })?;
    // SUSPEND and RESUME before DRIVER_OK succeed and change nothing, as
    // on vhost_vdpa.
    let before = snapshot(&dev).ctx("state before SUSPEND")?;
    dev.suspend().ctx("SUSPEND before DRIVER_OK")?;
    dev.resume().ctx("RESUME before DRIVER_OK")?;
    dev.resume().ctx("RESUME again before DRIVER_OK")?;
    let after = snapshot(&dev).ctx("state after RESUME")?;
    check!(
        before == after,
        "SUSPEND/RESUME before DRIVER_OK changed the state: {before:?} -> {after:?}"
    );
    bad_input(&dev, "SET_VRING_ENABLE num 2", EINVAL, || {
        dev.send(
            VHOST_VDPA_SET_VRING_ENABLE,
            0,
            &vhost_mdev::msg::vring_state_bytes(&VhostVringState { index: 0, num: 2 }),
        )
    })?;
    let good = VhostVringAddr {
        index: 0,
        flags: 0,
        desc_user_addr: 0x10_0000,
        avail_user_addr: 0x11_0000,
        used_user_addr: 0x12_0000,
        log_guest_addr: 0,
    };
    for (a, why) in [
        (
            VhostVringAddr {
                desc_user_addr: 0x10_0008,
                ..good
            },
            "descriptor table not 16-byte aligned",
        ),
        (
            VhostVringAddr {
                avail_user_addr: 0x11_0001,
                ..good
            },
            "available ring not 2-byte aligned",
        ),
        (
            VhostVringAddr {
                used_user_addr: 0x12_0002,
                ..good
            },
            "used ring not 4-byte aligned",
        ),
        (VhostVringAddr { flags: 2, ..good }, "unknown flag"),
    ] {
        bad_input(&dev, &format!("SET_VRING_ADDR {why}"), EINVAL, || {
            dev.set_vring_addr(&a)
        })?;
    }
    bad_input(&dev, "SET_VRING_BASE above 16 bits", EINVAL, || {
        dev.set_vring_base(0, 0x1_0000)
    })?;
    bad_input(&dev, "SET_VRING_NUM index = nvqs", ENOBUFS, || {
        dev.set_vring_num(nvqs, 64)
    })?;
    bad_input(&dev, "SET_VRING_ADDR index = nvqs", ENOBUFS, || {
        dev.set_vring_addr(&VhostVringAddr {
            index: nvqs,
            ..Default::default()
        })
    })?;
    bad_input(&dev, "SET_VRING_BASE index 1000", ENOBUFS, || {
        dev.set_vring_base(1000, 0)
    })?;
    bad_input(&dev, "GET_VRING_BASE index = nvqs", ENOBUFS, || {
        dev.get_vring_base(nvqs)
    })?;
    bad_input(&dev, "SET_VRING_ENABLE index u32::MAX", ENOBUFS, || {
        dev.set_vring_enable(u32::MAX, true)
    })?;
    for (num, why) in [(0, "0"), (3, "not a power of two"), (max * 2, "above max")] {
        bad_input(&dev, &format!("ring size {num} ({why})"), EINVAL, || {
            dev.set_vring_num(0, num)
        })?;
    }
    let unknown = (0..64).rev().find(|b| offered & (1u64 << b) == 0);
    if let Some(bit) = unknown {
        bad_input(&dev, "features not a subset", EINVAL, || {
            dev.set_features(offered | (1u64 << bit))
        })?;
    }
    bad_input(&dev, "config off = size", EINVAL, || {
        dev.get_config(size, 1)
    })?;
    bad_input(&dev, "config len = size + 1", EINVAL, || {
        dev.get_config(0, size + 1)
    })?;
    bad_input(&dev, "config off + len wraps", EINVAL, || {
        dev.get_config(u32::MAX - 1, 4)
    })?;
    bad_input(&dev, "SET_CONFIG outside", EINVAL, || {
        dev.set_config(size - 1, &[0, 0])
    })?;

    // SET_FEATURES after FEATURES_OK.
    dev.set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE).ctx("ACK")?;
    dev.set_status(ACK_DRIVER).ctx("DRIVER")?;
    let f = (1u64 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_F_ACCESS_PLATFORM);
    dev.set_features(f).ctx("SET_FEATURES")?;
    dev.set_status(FEATURES_OK).ctx("FEATURES_OK")?;
    bad_input(&dev, "SET_FEATURES after FEATURES_OK", EBUSY, || {
        dev.set_features(f)
    })?;
    Ok(())
}

pub(super) fn reply_slot(env: &Env) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    let get = encode_raw(VHOST_GET_FEATURES, VHOST_VFIO_NEED_REPLY, &[]);
    expect_errno(
        dev.msg_read(0, HDR_SIZE + 8),
        ENODATA,
        "read with nothing staged",
    )?;
    dev.msg_write(0, &get).ctx("GET_FEATURES write")?;
    expect_errno(
        dev.msg_read(0, HDR_SIZE + 4),
        EINVAL,
        "read of the wrong size",
    )?;
    let r = dev
        .msg_read(0, HDR_SIZE + 8)
        .ctx("read after wrong size (reply kept)")?;
    check!(r.len() == HDR_SIZE + 8, "reply of {} bytes", r.len());
    check!(
        r[0..8] == VHOST_GET_FEATURES.to_ne_bytes(),
        "request not echoed"
    );
    check!(r[12..16] == 8u32.to_ne_bytes(), "size not 8");
    let f = dev.get_features().ctx("GET_FEATURES")?;
    check!(
        r[16..24] == f.to_ne_bytes(),
        "reply payload differs from GET_FEATURES"
    );
    expect_errno(
        dev.msg_read(0, HDR_SIZE + 8),
        ENODATA,
        "second read (slot emptied)",
    )?;
    // A new write discards an unread reply.
    dev.msg_write(0, &get).ctx("GET_FEATURES write")?;
    dev.msg_write(0, &encode_raw(VHOST_SET_OWNER, 0, &[]))
        .ctx("SET_OWNER write")?;
    expect_errno(
        dev.msg_read(0, HDR_SIZE + 8),
        ENODATA,
        "reply after a new write",
    )?;
    // An ioctl between a region-0 request and its read leaves the staged
    // reply alone: every GET ioctl, the largest config read included.
    let size = dev.get_config_size().ctx("GET_CONFIG_SIZE")?;
    let mut cfg_hdr = 0u32.to_ne_bytes().to_vec();
    cfg_hdr.extend_from_slice(&size.to_ne_bytes());
    let gets: [(u64, &[u8], &str); 8] = [
        (VHOST_VDPA_GET_STATUS, &[], "GET_STATUS"),
        (VHOST_VDPA_GET_DEVICE_ID, &[], "GET_DEVICE_ID"),
        (VHOST_VDPA_GET_CONFIG_SIZE, &[], "GET_CONFIG_SIZE"),
        (VHOST_VDPA_GET_CONFIG, &cfg_hdr, "GET_CONFIG"),
        (VHOST_VDPA_GET_VRING_NUM, &[], "GET_VRING_NUM"),
        (VHOST_VDPA_GET_VQS_COUNT, &[], "GET_VQS_COUNT"),
        (VHOST_GET_VRING_BASE, &[0; 8], "GET_VRING_BASE"),
        (VHOST_GET_FEATURES, &[], "GET_FEATURES"),
    ];
    for (code, payload, name) in gets {
        dev.msg_write(0, &get).ctx("GET_FEATURES write")?;
        vhost_mdev::backend::ioctl_request(dev.vfio().file(), code, payload)
            .ctx(&format!("{name} ioctl"))?;
        let r = dev
            .msg_read(0, HDR_SIZE + 8)
            .ctx(&format!("read after a {name} ioctl"))?;
        check!(
            r[0..8] == VHOST_GET_FEATURES.to_ne_bytes() && r[16..24] == f.to_ne_bytes(),
            "a {name} ioctl overwrote the staged GET_FEATURES reply: {:x?}",
            &r
        );
    }
    // Reset and status 0 discard it.
    dev.msg_write(0, &get).ctx("GET_FEATURES write")?;
    dev.vfio_reset().ctx("VFIO_DEVICE_RESET")?;
    expect_errno(dev.msg_read(0, HDR_SIZE + 8), ENODATA, "reply after reset")?;
    dev.msg_write(0, &get).ctx("GET_FEATURES write")?;
    dev.msg_write(0, &encode_raw(VHOST_VDPA_SET_STATUS, 0, &[0]))
        .ctx("SET_STATUS 0")?;
    expect_errno(
        dev.msg_read(0, HDR_SIZE + 8),
        ENODATA,
        "reply after status 0",
    )?;
    Ok(())
}
