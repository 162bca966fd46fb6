// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The end-to-end tests, written against the normative uAPI of
//! Documentation (design brief, "uAPI (normative)").

use std::fs::File;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::time::Duration;

use libc::{EBUSY, EINVAL, ENOBUFS, ENODATA, ENOTTY};
use vfio_bindings::bindings::vfio as vb;
use vhost_mdev::device::page_size;
use vhost_mdev::driver::{self, KickMode, NetDriver, NetDriverConfig, RX, TX};
use vhost_mdev::msg::{encode_raw, HDR_SIZE};
use vhost_mdev::net::{NetConfig, NET_CONFIG_LEN};
use vhost_mdev::uapi::*;
use vhost_mdev::{IommuKind, MdevDevice, Transport, VhostBackend};

use crate::check;
use crate::hostile::{self, Hostile, Unmap};
use crate::stress;
use crate::util::*;
use crate::{lifecycle, sample};

/// Feature bits the sample parent must offer.
const SAMPLE_FEATURES: &[u32] = &[
    VIRTIO_F_VERSION_1,
    VIRTIO_F_ACCESS_PLATFORM,
    VIRTIO_NET_F_MAC,
    VIRTIO_NET_F_MTU,
    VIRTIO_NET_F_STATUS,
    VIRTIO_RING_F_EVENT_IDX,
    VIRTIO_RING_F_INDIRECT_DESC,
    VIRTIO_NET_F_MRG_RXBUF,
];

const ACK_DRIVER: u8 = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
const FEATURES_OK: u8 = ACK_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK;
const DRIVER_OK: u8 = FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK;

/// A test of the suite.
pub struct Test {
    /// Name printed in PASS/FAIL lines and matched by filters.
    pub name: &'static str,
    /// Part of `--quick`.
    pub quick: bool,
    /// The test.
    pub run: fn(&Env) -> TestResult,
}

macro_rules! t {
    ($name:literal, $quick:expr, $f:expr) => {
        Test {
            name: $name,
            quick: $quick,
            run: $f,
        }
    };
}

/// The ring-index stress runs (`--stress`), one per configuration.
pub const STRESS: &[Test] = &[
    t!("ring_stress_type1_q256_64", false, |e| stress::run(
        e,
        IommuKind::Type1,
        256,
        64
    )),
    t!("ring_stress_type1_q256_1500", false, |e| stress::run(
        e,
        IommuKind::Type1,
        256,
        1500
    )),
    t!("ring_stress_type1_q256_9000", false, |e| stress::run(
        e,
        IommuKind::Type1,
        256,
        9000
    )),
    t!("ring_stress_type1_q1024_64", false, |e| stress::run(
        e,
        IommuKind::Type1,
        1024,
        64
    )),
    t!("ring_stress_type1_q1024_1500", false, |e| stress::run(
        e,
        IommuKind::Type1,
        1024,
        1500
    )),
    t!("ring_stress_type1_q1024_9000", false, |e| stress::run(
        e,
        IommuKind::Type1,
        1024,
        9000
    )),
    t!("ring_stress_iommufd_q256_64", false, |e| stress::run(
        e,
        IommuKind::Iommufd,
        256,
        64
    )),
    t!("ring_stress_iommufd_q256_1500", false, |e| stress::run(
        e,
        IommuKind::Iommufd,
        256,
        1500
    )),
    t!("ring_stress_iommufd_q256_9000", false, |e| stress::run(
        e,
        IommuKind::Iommufd,
        256,
        9000
    )),
    t!("ring_stress_iommufd_q1024_64", false, |e| stress::run(
        e,
        IommuKind::Iommufd,
        1024,
        64
    )),
    t!("ring_stress_iommufd_q1024_1500", false, |e| stress::run(
        e,
        IommuKind::Iommufd,
        1024,
        1500
    )),
    t!("ring_stress_iommufd_q1024_9000", false, |e| stress::run(
        e,
        IommuKind::Iommufd,
        1024,
        9000
    )),
];

/// Every test, in run order.
pub const TESTS: &[Test] = &[
    t!("device_api", true, device_api),
    t!("vfio_info_type1", true, |e| vfio_info(e, IommuKind::Type1)),
    t!("vfio_info_iommufd", true, |e| vfio_info(
        e,
        IommuKind::Iommufd
    )),
    t!("region_info", true, region_info),
    t!("irq_info", true, irq_info),
    t!("requests_region_type1", true, |e| requests(
        e,
        Transport::Region,
        IommuKind::Type1
    )),
    t!("requests_ioctl_type1", true, |e| requests(
        e,
        Transport::Ioctl,
        IommuKind::Type1
    )),
    t!("requests_region_iommufd", false, |e| requests(
        e,
        Transport::Region,
        IommuKind::Iommufd
    )),
    t!("requests_ioctl_iommufd", true, |e| requests(
        e,
        Transport::Ioctl,
        IommuKind::Iommufd
    )),
    // Bad input: errno and unchanged state, over both transports.
    t!("bad_messages", true, bad_messages),
    t!("bad_requests_region", true, |e| bad_requests(
        e,
        Transport::Region
    )),
    t!("bad_requests_ioctl", true, |e| bad_requests(
        e,
        Transport::Ioctl
    )),
    t!("bad_status_transitions_region", true, |e| bad_status(
        e,
        Transport::Region
    )),
    t!("bad_status_transitions_ioctl", true, |e| bad_status(
        e,
        Transport::Ioctl
    )),
    t!("bad_vring_change_while_running_region", true, |e| {
        bad_vring_while_running(e, Transport::Region)
    }),
    t!("bad_vring_change_while_running_ioctl", false, |e| {
        bad_vring_while_running(e, Transport::Ioctl)
    }),
    t!("reply_slot", true, reply_slot),
    t!("set_irqs_loopback", true, set_irqs_loopback),
    t!("set_irqs_bad", true, set_irqs_bad),
    t!("notify_bad", true, notify_bad),
    t!("ioeventfd_bad", true, ioeventfd_bad),
    t!("mmap_refused", true, mmap_refused),
    // Traffic.
    t!("traffic_type1_region_kick", true, |e| {
        traffic(
            e,
            IommuKind::Type1,
            Transport::Region,
            KickMode::Direct,
            false,
            64,
        )
    }),
    t!("traffic_type1_ioeventfd", false, |e| {
        traffic(
            e,
            IommuKind::Type1,
            Transport::Region,
            KickMode::EventFd,
            false,
            500,
        )
    }),
    t!("traffic_iommufd_ioctl", false, |e| {
        traffic(
            e,
            IommuKind::Iommufd,
            Transport::Ioctl,
            KickMode::Direct,
            false,
            500,
        )
    }),
    t!("traffic_indirect", false, |e| {
        traffic(
            e,
            IommuKind::Type1,
            Transport::Region,
            KickMode::Direct,
            true,
            500,
        )
    }),
    t!("traffic_iommufd_indirect_ioeventfd", false, |e| {
        traffic(
            e,
            IommuKind::Iommufd,
            Transport::Region,
            KickMode::EventFd,
            true,
            500,
        )
    }),
    t!(
        "mixed_10000_in_order_exact_stats",
        true,
        sample::mixed_10000
    ),
    t!(
        "mixed_10000_iommufd_direct_copies",
        true,
        sample::mixed_10000_iommufd
    ),
    t!("jumbo_9000_mrg_rxbuf", true, sample::jumbo_mrg),
    t!(
        "jumbo_9000_mrg_rxbuf_iommufd",
        true,
        sample::jumbo_mrg_iommufd
    ),
    t!(
        "eight_instances_concurrent_distinct_macs",
        true,
        sample::eight_concurrent
    ),
    t!("stats_exact_with_drops", true, sample::stats_exact),
    t!("link_toggle_fires_config_irq", true, sample::link_toggle),
    t!("reset_renegotiate", true, reset_renegotiate),
    t!("suspend_resume", false, suspend_resume),
    t!(
        "suspend_relocate_rx_ring_resume",
        true,
        hostile::suspend_relocate_ring
    ),
    // Hostile drivers: NEEDS_RESET, config IRQ, ring_errors, recovery.
    t!("hostile_loop_chain", true, |e| hostile::hostile(
        e,
        Hostile::LoopChain
    )),
    t!("hostile_head_out_of_range", false, |e| hostile::hostile(
        e,
        Hostile::HeadOutOfRange
    )),
    t!("hostile_next_out_of_range", true, |e| hostile::hostile(
        e,
        Hostile::NextOutOfRange
    )),
    t!("hostile_avail_idx_ahead", true, |e| hostile::hostile(
        e,
        Hostile::AvailIdxAhead
    )),
    t!("hostile_indirect_outside_memory", true, |e| {
        hostile::hostile(e, Hostile::IndirectOutside)
    }),
    t!("hostile_indirect_too_long", false, |e| hostile::hostile(
        e,
        Hostile::IndirectTooLong
    )),
    t!("hostile_len_past_mapping", false, |e| hostile::hostile(
        e,
        Hostile::LenPastMapping
    )),
    t!("hostile_writable_on_tx", true, |e| hostile::hostile(
        e,
        Hostile::WritableOnTx
    )),
    t!("hostile_worst_case_walk", true, |e| {
        hostile::worst_case_walk(e, false)
    }),
    t!("hostile_worst_case_empty_chains", true, |e| {
        hostile::worst_case_walk(e, true)
    }),
    t!("hostile_readable_on_rx", false, |e| hostile::hostile(
        e,
        Hostile::ReadableOnRx
    )),
    t!("unmapped_rings_type1", true, |e| hostile::unmapped_rings(
        e,
        IommuKind::Type1
    )),
    t!(
        "unmapped_rings_iommufd",
        false,
        |e| hostile::unmapped_rings(e, IommuKind::Iommufd)
    ),
    t!("ring_hva_required_and_used_type1", true, hostile::ring_hva),
    t!(
        "ring_hva_one_address_space",
        true,
        hostile::ring_hva_other_process
    ),
    t!("unmap_while_running_needs_reset", false, |e| {
        hostile::unmap_while_running(e, IommuKind::Type1, Unmap::Tx)
    }),
    t!("unmap_rx_while_running_type1", true, |e| {
        hostile::unmap_while_running(e, IommuKind::Type1, Unmap::Rx)
    }),
    t!("unmap_tx_while_running_iommufd", false, |e| {
        hostile::unmap_while_running(e, IommuKind::Iommufd, Unmap::Tx)
    }),
    t!("unmap_rx_while_running_iommufd", true, |e| {
        hostile::unmap_while_running(e, IommuKind::Iommufd, Unmap::Rx)
    }),
    t!("iommufd_detach_ioas_while_traffic", true, |e| {
        hostile::iommufd_ioas_change(e, false)
    }),
    t!("iommufd_replace_ioas_while_traffic", false, |e| {
        hostile::iommufd_ioas_change(e, true)
    }),
    // Lifecycle.
    t!("second_opener_ebusy", true, second_opener),
    t!("remove_while_open_type1", true, |e| {
        lifecycle::remove_while_open(e, IommuKind::Type1)
    }),
    t!("remove_while_open_iommufd", true, |e| {
        lifecycle::remove_while_open(e, IommuKind::Iommufd)
    }),
    t!("close_while_traffic", true, lifecycle::close_while_traffic),
    t!("kill_while_traffic", false, lifecycle::kill_while_traffic),
    t!(
        "sixteen_instances_lifecycle",
        true,
        lifecycle::sixteen_instances
    ),
    t!("fds_from_live_opener_type1", false, |e| {
        lifecycle::fds_from_opener(e, IommuKind::Type1, false)
    }),
    t!("fds_from_exited_opener_type1", false, |e| {
        lifecycle::fds_from_opener(e, IommuKind::Type1, true)
    }),
    t!("fds_from_live_opener_iommufd", false, |e| {
        lifecycle::fds_from_opener(e, IommuKind::Iommufd, false)
    }),
    t!("fds_from_exited_opener_iommufd", false, |e| {
        lifecycle::fds_from_opener(e, IommuKind::Iommufd, true)
    }),
];

fn open_kind(inst: &Inst, kind: IommuKind) -> Result<MdevDevice, String> {
    if kind == IommuKind::Iommufd {
        iommufd_available(inst).map_err(|e| format!("iommufd prerequisite missing: {e}"))?;
    }
    inst.open(kind)
}

fn device_api(env: &Env) -> TestResult {
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

fn vfio_info(env: &Env, kind: IommuKind) -> TestResult {
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

fn region_info(env: &Env) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    let nvqs = dev.get_vqs_count().ctx("GET_VQS_COUNT")?;
    let r0 = dev.region_info(VHOST_VFIO_REGION_MSG).ctx("region 0")?;
    check!(r0.offset == 0, "region 0 offset {:#x}", r0.offset);
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
    check!(
        r1.offset == region_offset(1),
        "region 1 offset {:#x}",
        r1.offset
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

fn irq_info(env: &Env) -> TestResult {
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
fn requests(env: &Env, t: Transport, kind: IommuKind) -> TestResult {
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

fn msg_errno(dev: &MdevDevice, bytes: &[u8], errno: i32, what: &str) -> TestResult {
    bad_input(dev, what, errno, || dev.msg_write(0, bytes))
}

/// Malformed writes and reads of region 0.
fn bad_messages(env: &Env) -> TestResult {
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
fn bad_requests(env: &Env, t: Transport) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    dev.set_transport(t);
    let nvqs = dev.get_vqs_count().ctx("GET_VQS_COUNT")?;
    let max = u32::from(dev.get_vring_num().ctx("GET_VRING_NUM")?);
    let offered = dev.get_features().ctx("GET_FEATURES")?;
    let size = dev.get_config_size().ctx("GET_CONFIG_SIZE")?;

    if t == Transport::Ioctl {
        bad_input(&dev, "unknown ioctl", ENOTTY, || {
            dev.send(vhost_mdev::uapi::iow(VHOST_VIRTIO, 0x5f, 8), 0, &[0; 8])
        })?;
        // The dispatcher matches full codes: a known nr with another size
        // is another (unknown) ioctl.
        bad_input(
            &dev,
            "SET_FEATURES ioctl with a 4-byte size",
            ENOTTY,
            || dev.send(vhost_mdev::uapi::iow(VHOST_VIRTIO, 0x00, 4), 0, &[0; 4]),
        )?;
        bad_input(
            &dev,
            "SET_VRING_NUM ioctl with a 4-byte size",
            ENOTTY,
            || dev.send(vhost_mdev::uapi::iow(VHOST_VIRTIO, 0x10, 4), 0, &[0; 4]),
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
        dev.send(VHOST_SET_VRING_KICK, 0, &[0; 8])
    })?;
    bad_input(&dev, "VHOST_SET_BACKEND_FEATURES", ENOTTY, || {
        dev.send(VHOST_SET_BACKEND_FEATURES, 0, &[0; 8])
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
        (VhostVringAddr { flags: 1, ..good }, "logging flag"),
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

/// Status transitions a driver may not make, and FEATURES_OK refusal.
fn bad_status(env: &Env, t: Transport) -> TestResult {
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

fn bad_vring_while_running(env: &Env, t: Transport) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    dev.set_transport(t);
    let mut drv = NetDriver::start(&dev, NetDriverConfig::default()).ctx("start driver")?;
    driver::ping(&mut drv, 3, 0).ctx("traffic")?;
    let addr = drv.queue(RX).vring_addr(0);
    bad_input(&dev, "SET_VRING_NUM while DRIVER_OK", EINVAL, || {
        dev.set_vring_num(0, 64)
    })?;
    bad_input(&dev, "SET_VRING_ADDR while DRIVER_OK", EINVAL, || {
        dev.set_vring_addr(&addr)
    })?;
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

fn reply_slot(env: &Env) -> TestResult {
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

fn set_irqs_loopback(env: &Env) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    let nvqs = dev.get_vqs_count().ctx("GET_VQS_COUNT")?;
    let vq: Vec<_> = (0..nvqs).map(|_| eventfd()).collect::<Result<_, _>>()?;
    let fds: Vec<i32> = vq.iter().map(|e| e.as_raw_fd()).collect();
    dev.set_vq_irqs(0, &fds).ctx("attach vq eventfds")?;
    let cfg = eventfd()?;
    dev.set_config_call(Some(&cfg))
        .ctx("attach config eventfd")?;
    let req = eventfd()?;
    dev.set_req_irq(Some(&req)).ctx("attach request eventfd")?;
    let short = Duration::from_millis(200);
    for (i, e) in vq.iter().enumerate() {
        dev.trigger_irq(VHOST_VFIO_IRQ_VQ, i as u32, 1)
            .ctx("DATA_NONE trigger")?;
        check!(fired(e, short)?, "vq {i} eventfd did not fire");
        for (j, o) in vq.iter().enumerate() {
            check!(
                j == i || !fired(o, Duration::ZERO)?,
                "vq {j} fired for vq {i}"
            );
        }
    }
    dev.trigger_irq(VHOST_VFIO_IRQ_CONFIG, 0, 1)
        .ctx("config trigger")?;
    check!(fired(&cfg, short)?, "config eventfd did not fire");
    dev.trigger_irq(VHOST_VFIO_IRQ_REQ, 0, 1)
        .ctx("request trigger")?;
    check!(fired(&req, short)?, "request eventfd did not fire");
    // DATA_BOOL: fire only where the bool is set.
    let bools: Vec<u8> = (0..nvqs).map(|i| u8::from(i == 1)).collect();
    dev.vfio()
        .set_irqs_raw(
            vb::VFIO_IRQ_SET_DATA_BOOL | vb::VFIO_IRQ_SET_ACTION_TRIGGER,
            VHOST_VFIO_IRQ_VQ,
            0,
            nvqs,
            &bools,
        )
        .ctx("DATA_BOOL trigger")?;
    check!(fired(&vq[1], short)?, "DATA_BOOL did not fire vq 1");
    check!(!fired(&vq[0], Duration::ZERO)?, "DATA_BOOL fired vq 0");
    // -1 detaches one vector.
    dev.set_vq_irqs(0, &[-1]).ctx("detach vq 0")?;
    dev.trigger_irq(VHOST_VFIO_IRQ_VQ, 0, nvqs)
        .ctx("trigger all")?;
    check!(!fired(&vq[0], short)?, "detached vq 0 still fires");
    check!(fired(&vq[1], short)?, "vq 1 lost its eventfd");
    // Count 0 + DATA_NONE detaches all of an index.
    dev.detach_all_irqs().ctx("detach all")?;
    dev.trigger_irq(VHOST_VFIO_IRQ_VQ, 0, nvqs)
        .ctx("trigger after detach")?;
    dev.trigger_irq(VHOST_VFIO_IRQ_CONFIG, 0, 1)
        .ctx("trigger after detach")?;
    for e in vq.iter().chain([&cfg, &req]) {
        check!(!fired(e, short)?, "an eventfd fires after detach all");
    }
    Ok(())
}

fn set_irqs_bad(env: &Env) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    let nvqs = dev.get_vqs_count().ctx("GET_VQS_COUNT")?;
    // Wire every vector first: a refused SET_IRQS must leave them wired.
    let vq: Vec<_> = (0..nvqs).map(|_| eventfd()).collect::<Result<_, _>>()?;
    let fds: Vec<i32> = vq.iter().map(|e| e.as_raw_fd()).collect();
    dev.set_vq_irqs(0, &fds).ctx("attach vq eventfds")?;
    let cfg = eventfd()?;
    dev.set_config_call(Some(&cfg))
        .ctx("attach config eventfd")?;
    let e = eventfd()?;
    let fd = e.as_raw_fd();
    let v = dev.vfio();
    bad_input(&dev, "SET_IRQS bad index", EINVAL, || {
        v.set_irq_eventfds(VHOST_VFIO_NUM_IRQS, 0, &[fd])
    })?;
    bad_input(&dev, "SET_IRQS start + count overflow", EINVAL, || {
        v.trigger_irq(VHOST_VFIO_IRQ_VQ, u32::MAX, 2)
    })?;
    bad_input(
        &dev,
        "SET_IRQS eventfds with start + count overflow",
        EINVAL,
        || v.set_irq_eventfds(VHOST_VFIO_IRQ_VQ, u32::MAX, &[fd, fd]),
    )?;
    bad_input(&dev, "SET_IRQS start = nvqs", EINVAL, || {
        v.trigger_irq(VHOST_VFIO_IRQ_VQ, nvqs, 1)
    })?;
    bad_input(&dev, "SET_IRQS count past nvqs", EINVAL, || {
        v.trigger_irq(VHOST_VFIO_IRQ_VQ, 0, nvqs + 1)
    })?;
    bad_input(
        &dev,
        "SET_IRQS two vectors on the config IRQ",
        EINVAL,
        || v.set_irq_eventfds(VHOST_VFIO_IRQ_CONFIG, 0, &[fd, fd]),
    )?;
    let null = File::open("/dev/null").ctx("open /dev/null")?;
    bad_input(&dev, "SET_IRQS with a non-eventfd fd", EINVAL, || {
        v.set_irq_eventfds(VHOST_VFIO_IRQ_VQ, 0, &[null.as_raw_fd()])
    })?;
    bad_input(
        &dev,
        "SET_IRQS with a good and a non-eventfd fd",
        EINVAL,
        || v.set_irq_eventfds(VHOST_VFIO_IRQ_VQ, 0, &[fd, null.as_raw_fd()]),
    )?;
    // A closed fd number.
    let closed = File::open("/dev/null").ctx("open /dev/null")?.into_raw_fd();
    // SAFETY: closed was just obtained from into_raw_fd and is owned here.
    unsafe { libc::close(closed) };
    bad_input(&dev, "SET_IRQS with a closed fd", libc::EBADF, || {
        v.set_irq_eventfds(VHOST_VFIO_IRQ_VQ, 0, &[closed])
    })?;
    bad_input(&dev, "SET_IRQS with two data types", EINVAL, || {
        v.set_irqs_raw(
            vb::VFIO_IRQ_SET_DATA_EVENTFD
                | vb::VFIO_IRQ_SET_DATA_BOOL
                | vb::VFIO_IRQ_SET_ACTION_TRIGGER,
            VHOST_VFIO_IRQ_VQ,
            0,
            1,
            &fd.to_ne_bytes(),
        )
    })?;
    bad_input(&dev, "SET_IRQS MASK", EINVAL, || {
        v.set_irqs_raw(
            vb::VFIO_IRQ_SET_DATA_NONE | vb::VFIO_IRQ_SET_ACTION_MASK,
            VHOST_VFIO_IRQ_VQ,
            0,
            1,
            &[],
        )
    })?;
    bad_input(
        &dev,
        "SET_IRQS eventfd data shorter than count",
        EINVAL,
        || {
            v.set_irqs_raw(
                vb::VFIO_IRQ_SET_DATA_EVENTFD | vb::VFIO_IRQ_SET_ACTION_TRIGGER,
                VHOST_VFIO_IRQ_VQ,
                0,
                2,
                &fd.to_ne_bytes(),
            )
        },
    )?;
    // The original wiring survived every refusal.
    let short = Duration::from_millis(200);
    dev.trigger_irq(VHOST_VFIO_IRQ_VQ, 0, nvqs)
        .ctx("trigger all")?;
    for (i, q) in vq.iter().enumerate() {
        check!(
            fired(q, short)?,
            "vq {i} eventfd lost by a refused SET_IRQS"
        );
    }
    check!(
        !fired(&e, Duration::ZERO)?,
        "a refused SET_IRQS attached an eventfd"
    );
    dev.trigger_irq(VHOST_VFIO_IRQ_CONFIG, 0, 1)
        .ctx("trigger config")?;
    check!(
        fired(&cfg, short)?,
        "config eventfd lost by a refused SET_IRQS"
    );
    Ok(())
}

fn notify_bad(env: &Env) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    let nvqs = dev.get_vqs_count().ctx("GET_VQS_COUNT")?;
    let p = page_size();
    let cases: Vec<(u64, Vec<u8>, &str)> = vec![
        (1, 0u16.to_ne_bytes().to_vec(), "offset 1"),
        (p / 2, 0u16.to_ne_bytes().to_vec(), "offset PAGE_SIZE/2"),
        (0, 1u16.to_ne_bytes().to_vec(), "value 1 at queue 0"),
        (p, 0u16.to_ne_bytes().to_vec(), "value 0 at queue 1"),
        (0, vec![0; 4], "4-byte write"),
        (0, vec![0; 1], "1-byte write"),
        (
            u64::from(nvqs) * p,
            (nvqs as u16).to_ne_bytes().to_vec(),
            "queue nvqs",
        ),
    ];
    for (off, val, what) in cases {
        bad_input(&dev, &format!("notify {what}"), EINVAL, || {
            dev.notify_raw(off, &val)
        })?;
    }
    let mut b = [0u8; 2];
    expect_fail(
        dev.vfio()
            .read_at(region_offset(VHOST_VFIO_REGION_NOTIFY), &mut b),
        "read of the notify region",
    )?;
    // A good kick of a queue that is not started is accepted.
    dev.notify_raw(0, &0u16.to_ne_bytes()).ctx("kick queue 0")?;
    Ok(())
}

fn ioeventfd_bad(env: &Env) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    let nvqs = dev.get_vqs_count().ctx("GET_VQS_COUNT")?;
    let e = eventfd()?;
    let fd = e.as_raw_fd();
    let n1 = region_offset(VHOST_VFIO_REGION_NOTIFY);
    let p = page_size();
    let v = dev.vfio();
    let w16 = vb::VFIO_DEVICE_IOEVENTFD_16;
    let null = File::open("/dev/null").ctx("open /dev/null")?;
    let cases: Vec<(u64, u32, u64, i32, &str)> = vec![
        (0, w16, 0, fd, "in region 0"),
        (region_offset(2), w16, 0, fd, "in region 2"),
        (n1, vb::VFIO_DEVICE_IOEVENTFD_32, 0, fd, "of size 4"),
        (n1, vb::VFIO_DEVICE_IOEVENTFD_8, 0, fd, "of size 1"),
        (n1, vb::VFIO_DEVICE_IOEVENTFD_64, 0, fd, "of size 8"),
        (n1, 0, 0, fd, "without a size"),
        (
            n1,
            w16 | vb::VFIO_DEVICE_IOEVENTFD_32,
            0,
            fd,
            "of two sizes",
        ),
        (n1 + 2, w16, 0, fd, "at offset 2"),
        (n1 + p, w16, 0, fd, "with data != queue index"),
        (
            n1 + u64::from(nvqs) * p,
            w16,
            u64::from(nvqs),
            fd,
            "past the last queue",
        ),
        (n1, w16, 0, null.as_raw_fd(), "with a non-eventfd fd"),
    ];
    for (off, flags, data, f, what) in cases {
        bad_input(&dev, &format!("IOEVENTFD {what}"), EINVAL, || {
            v.ioeventfd_raw(off, flags, data, f)
        })?;
    }
    // Unbinding an unbound queue is a no-op (VFIO's virqfd owns the slot).
    dev.set_ioeventfd(0, None)
        .ctx("unbind of an unbound queue")?;
    // Bind, refuse a second bind, unbind.
    dev.set_ioeventfd(0, Some(&e)).ctx("bind ioeventfd")?;
    let e2 = eventfd()?;
    bad_input(&dev, "IOEVENTFD bind of a bound queue", libc::EBUSY, || {
        dev.set_ioeventfd(0, Some(&e2))
    })?;
    dev.set_ioeventfd(0, None).ctx("unbind ioeventfd")?;
    dev.set_ioeventfd(0, Some(&e2)).ctx("bind after unbind")?;
    dev.set_ioeventfd(0, None).ctx("unbind ioeventfd")?;
    Ok(())
}

fn mmap_refused(env: &Env) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    bad_input_any(&dev, "mmap of region 0", || {
        dev.vfio().try_mmap(0, page_size() as usize)
    })?;
    // The sample has no doorbell page: region 1 does not offer mmap.
    let r1 = dev.region_info(VHOST_VFIO_REGION_NOTIFY).ctx("region 1")?;
    check!(
        r1.flags & vb::VFIO_REGION_INFO_FLAG_MMAP == 0,
        "region 1 claims mmap without a doorbell page"
    );
    bad_input_any(&dev, "mmap of region 1", || {
        dev.vfio().try_mmap(
            region_offset(VHOST_VFIO_REGION_NOTIFY),
            page_size() as usize,
        )
    })?;
    Ok(())
}

fn traffic(
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

fn reset_renegotiate(env: &Env) -> TestResult {
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

fn suspend_resume(env: &Env) -> TestResult {
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

fn second_opener(env: &Env) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    let i = inst.info()?;
    let group = inst.sysfs.group_node(&i).ok_or("no group")?;
    let r = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&group);
    match r {
        Err(e) if e.raw_os_error() == Some(EBUSY) => {}
        Err(e) => {
            return Err(format!(
                "second open of {}: {e}, expected EBUSY",
                group.display()
            ))
        }
        Ok(_) => return Err(format!("second open of {} succeeded", group.display())),
    }
    if iommufd_available(&inst).is_ok() {
        let cdev = inst.sysfs.cdev_node(&i).ok_or("no cdev")?;
        let r = vhost_mdev::VfioDevice::open_iommufd("/dev/iommu".as_ref(), &cdev);
        expect_errno(r.map(|_| ()), EBUSY, "cdev bind while the group is open")?;
        drop(dev);
        let first = inst.open(IommuKind::Iommufd)?;
        let r = vhost_mdev::VfioDevice::open_iommufd("/dev/iommu".as_ref(), &cdev);
        expect_fail(r.map(|_| ()), "second cdev bind")?;
        drop(first);
    } else {
        drop(dev);
    }
    // After close, the instance opens again.
    inst.open(IommuKind::Type1)?;
    Ok(())
}
