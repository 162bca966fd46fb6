// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The device API, VFIO info and the message table over both transports.

use super::*;

pub(super) fn open_kind(inst: &Inst, kind: IommuKind) -> Result<MdevDevice, String> {
    if kind == IommuKind::Iommufd {
        iommufd_available(inst).map_err(|e| format!("iommufd prerequisite missing: {e}"))?;
    }
    inst.open(kind)
}

pub(super) fn device_api(env: &Env) -> TestResult {
    check!(
        env.ty.device_api == VHOST_VFIO_DEVICE_API,
        "device_api {:?}",
        env.ty.device_api
    );
    let before = env
        .sysfs
        .find_type(&env.ty.parent, &env.ty.id)
        .ctx("type")?;
    let inst = Inst::create(env)?;
    let i = inst.info()?;
    check!(
        i.driver.as_deref() == Some("vhost_mdev"),
        "instance driver {:?}, expected vhost_mdev (the core's mdev driver)",
        i.driver
    );
    check!(
        i.type_id.as_deref() == Some(env.ty.id.as_str()),
        "mdev_type {:?}",
        i.type_id
    );
    let during = env
        .sysfs
        .find_type(&env.ty.parent, &env.ty.id)
        .ctx("type")?;
    check!(
        during.available_instances + 1 == before.available_instances,
        "available_instances {} -> {} after create",
        before.available_instances,
        during.available_instances
    );
    drop(inst);
    let after = env
        .sysfs
        .find_type(&env.ty.parent, &env.ty.id)
        .ctx("type")?;
    check!(
        after.available_instances == before.available_instances,
        "available_instances not released: {} -> {}",
        before.available_instances,
        after.available_instances
    );
    Ok(())
}

pub(super) fn vfio_info(env: &Env, kind: IommuKind) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = open_kind(&inst, kind)?;
    let info = dev.info().ctx("VFIO_DEVICE_GET_INFO")?;
    check!(
        info.flags & vb::VFIO_DEVICE_FLAGS_RESET != 0,
        "flags {:#x} lack RESET",
        info.flags
    );
    let bus = vb::VFIO_DEVICE_FLAGS_PCI
        | vb::VFIO_DEVICE_FLAGS_PLATFORM
        | vb::VFIO_DEVICE_FLAGS_AMBA
        | vb::VFIO_DEVICE_FLAGS_CCW
        | vb::VFIO_DEVICE_FLAGS_AP
        | vb::VFIO_DEVICE_FLAGS_FSL_MC;
    check!(info.flags & bus == 0, "flags {:#x} name a bus", info.flags);
    check!(
        info.num_regions == VHOST_VFIO_NUM_REGIONS,
        "num_regions {}",
        info.num_regions
    );
    check!(
        info.num_irqs == VHOST_VFIO_NUM_IRQS,
        "num_irqs {}",
        info.num_irqs
    );
    dev.vfio_reset().ctx("VFIO_DEVICE_RESET")?;
    Ok(())
}

pub(super) fn region_info(env: &Env) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    let nvqs = dev.get_vqs_count().ctx("GET_VQS_COUNT")?;
    let r0 = dev.region_info(VHOST_VFIO_REGION_MSG).ctx("region 0")?;
    check!(
        r0.offset == layout_offset(VHOST_VFIO_REGION_MSG),
        "region 0 offset {:#x}",
        r0.offset
    );
    check!(
        r0.size == u64::from(VHOST_VFIO_MSG_REGION_SIZE),
        "region 0 size {}",
        r0.size
    );
    let rw = vb::VFIO_REGION_INFO_FLAG_READ | vb::VFIO_REGION_INFO_FLAG_WRITE;
    check!(r0.flags & rw == rw, "region 0 flags {:#x}", r0.flags);
    check!(
        r0.flags & vb::VFIO_REGION_INFO_FLAG_MMAP == 0,
        "region 0 claims mmap"
    );
    let r1 = dev.region_info(VHOST_VFIO_REGION_NOTIFY).ctx("region 1")?;
    // The layout the header documents (VFIO's own for PCI devices); the
    // library does not rely on it, it takes the offsets read here.
    check!(
        r1.offset == layout_offset(VHOST_VFIO_REGION_NOTIFY),
        "region 1 offset {:#x}",
        r1.offset
    );
    check!(
        dev.regions().msg == r0 && dev.regions().notify == r1,
        "the library's regions {:?} are not region info's {r0:?} {r1:?}",
        dev.regions()
    );
    check!(
        r1.size == u64::from(nvqs) * page_size(),
        "region 1 size {} for {nvqs} queues",
        r1.size
    );
    check!(
        r1.flags & vb::VFIO_REGION_INFO_FLAG_WRITE != 0,
        "region 1 flags {:#x}",
        r1.flags
    );
    expect_errno(dev.region_info(2), EINVAL, "region 2")?;
    Ok(())
}

pub(super) fn irq_info(env: &Env) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    let nvqs = dev.get_vqs_count().ctx("GET_VQS_COUNT")?;
    for (index, count) in [
        (VHOST_VFIO_IRQ_VQ, nvqs),
        (VHOST_VFIO_IRQ_CONFIG, 1),
        (VHOST_VFIO_IRQ_REQ, 1),
    ] {
        let i = dev.irq_info(index).ctx(&format!("irq {index}"))?;
        check!(
            i.count == count,
            "irq {index}: count {}, expected {count}",
            i.count
        );
        check!(
            i.flags & vb::VFIO_IRQ_INFO_EVENTFD != 0,
            "irq {index}: flags {:#x}",
            i.flags
        );
    }
    expect_errno(dev.irq_info(VHOST_VFIO_NUM_IRQS), EINVAL, "irq 3")?;
    Ok(())
}

/// Every request of the message table, with the expected values of the
/// sample parent.
pub(super) fn requests(env: &Env, t: Transport, kind: IommuKind) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = open_kind(&inst, kind)?;
    dev.set_transport(t);
    dev.set_owner().ctx("SET_OWNER")?;
    check!(
        dev.get_device_id().ctx("GET_DEVICE_ID")? == VIRTIO_ID_NET,
        "device id"
    );
    check!(
        dev.get_status().ctx("GET_STATUS")? == 0,
        "status after open not 0"
    );
    let f = dev.get_features().ctx("GET_FEATURES")?;
    for bit in SAMPLE_FEATURES {
        check!(f & (1 << bit) != 0, "feature bit {bit} missing from {f:#x}");
    }
    let nvqs = dev.get_vqs_count().ctx("GET_VQS_COUNT")?;
    check!(nvqs >= 2, "{nvqs} queues");
    let max = dev.get_vring_num().ctx("GET_VRING_NUM")?;
    check!(max >= 2 && max.is_power_of_two(), "max queue size {max}");
    let size = dev.get_config_size().ctx("GET_CONFIG_SIZE")?;
    check!(size as usize >= NET_CONFIG_LEN, "config size {size}");
    let cfg = NetConfig::parse(&dev.get_config(0, NET_CONFIG_LEN as u32).ctx("GET_CONFIG")?)
        .ctx("config")?;
    check!(cfg.mac.0 != [0; 6], "zero MAC");
    check!(cfg.mtu >= 68, "mtu {}", cfg.mtu);
    // Partial reads agree with the full read.
    let mac = dev.get_config(0, 6).ctx("GET_CONFIG mac")?;
    check!(mac == cfg.mac.0, "partial config read differs");
    let mtu = dev.get_config(10, 2).ctx("GET_CONFIG mtu")?;
    check!(
        u16::from_le_bytes([mtu[0], mtu[1]]) == cfg.mtu,
        "mtu read at 10 differs"
    );
    // Writing the same MAC is accepted and changes nothing.
    dev.set_config(0, &cfg.mac.0).ctx("SET_CONFIG")?;
    check!(
        dev.get_config(0, 6).ctx("GET_CONFIG")? == mac,
        "SET_CONFIG changed the MAC"
    );

    dev.set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE)
        .ctx("SET_STATUS ACK")?;
    dev.set_status(ACK_DRIVER).ctx("SET_STATUS DRIVER")?;
    let want =
        (1u64 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_F_ACCESS_PLATFORM) | (1 << VIRTIO_NET_F_MAC);
    dev.set_features(want).ctx("SET_FEATURES")?;
    dev.set_status(FEATURES_OK).ctx("SET_STATUS FEATURES_OK")?;
    check!(
        dev.get_status().ctx("GET_STATUS")? == FEATURES_OK,
        "FEATURES_OK not set"
    );

    for q in 0..nvqs {
        dev.set_vring_num(q, 64).ctx("SET_VRING_NUM")?;
        let base = 0x1000_0000 + u64::from(q) * 0x10000;
        dev.set_vring_addr(&VhostVringAddr {
            index: q,
            flags: 0,
            desc_user_addr: base,
            avail_user_addr: base + 0x1000,
            used_user_addr: base + 0x2000,
            log_guest_addr: 0,
        })
        .ctx("SET_VRING_ADDR")?;
        dev.set_vring_base(q, 7 + q).ctx("SET_VRING_BASE")?;
        let b = dev.get_vring_base(q).ctx("GET_VRING_BASE")?;
        check!(b == 7 + q, "queue {q}: base {b}, expected {}", 7 + q);
        dev.set_vring_enable(q, false).ctx("SET_VRING_ENABLE")?;
    }
    // No queue enabled: DRIVER_OK has nothing to check (and the rings are
    // not mapped, so none may be enabled).
    dev.set_status(DRIVER_OK).ctx("SET_STATUS DRIVER_OK")?;
    check!(
        dev.get_status().ctx("GET_STATUS")? == DRIVER_OK,
        "DRIVER_OK not set"
    );
    dev.suspend().ctx("SUSPEND")?;
    for q in 0..nvqs {
        let b = dev.get_vring_base(q).ctx("GET_VRING_BASE (suspended)")?;
        check!(b == 7 + q, "queue {q}: base {b} after suspend");
        dev.set_vring_base(q, 0).ctx("SET_VRING_BASE (suspended)")?;
    }
    dev.resume().ctx("RESUME")?;
    dev.set_status(0).ctx("SET_STATUS 0")?;
    check!(
        dev.get_status().ctx("GET_STATUS")? == 0,
        "status 0 did not reset"
    );
    Ok(())
}
