// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The end-to-end tests, written against the normative uAPI of
//! Documentation (design brief, "uAPI (normative)").

mod irq;
mod messages;
mod opener;
mod status;
mod traffic;
mod uapi;

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
use crate::mq::{self, HostilePacked};
use crate::stress;
use crate::util::*;
use crate::{blk, bridge, cparent, diff, dirty, faults, lifecycle, migrate, sample, vp_vdpa};
use irq::{ioeventfd_bad, mmap_refused, notify_bad, set_irqs_bad, set_irqs_loopback};
use messages::{bad_messages, bad_requests, reply_slot};
use opener::second_opener;
use status::{bad_status, bad_vring_while_running};
use traffic::{reset_renegotiate, suspend_resume, traffic};
use uapi::{device_api, irq_info, open_kind, region_info, requests, vfio_info};

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

/// What the core forwards to a parent, on the C test parent
/// (`--c-parent`, with `tests/kmod/c_parent.ko` loaded).
pub const C_PARENT: &[Test] = &[
    t!(
        "cparent_mem_table_forwarded",
        true,
        cparent::cparent_mem_table
    ),
    t!(
        "cparent_vq_interrupt_from_hard_irq",
        true,
        cparent::cparent_vq_interrupt_hardirq
    ),
    t!(
        "cparent_features_ok_refused",
        true,
        cparent::cparent_features_ok_refused
    ),
    t!(
        "cparent_doorbell_mmap",
        true,
        cparent::cparent_doorbell_mmap
    ),
];

/// Fault injection (`--faults`, tests/vm/faults.sh): every operation with
/// each of its fallible calls failed in turn, and the data path under
/// failed DMA, pins and copies. `faults_module_load` unloads and reloads
/// the modules.
pub const FAULTS: &[Test] = &[
    t!("faults_requests_region", true, |e| faults::requests(
        e,
        Transport::Region
    )),
    t!("faults_requests_ioctl", true, |e| faults::requests(
        e,
        Transport::Ioctl
    )),
    t!("faults_vfio_ioctls", true, faults::vfio_ioctls),
    t!("faults_open_close", true, faults::open_close),
    t!("faults_sysfs", true, faults::sysfs),
    t!("faults_datapath_dma", true, faults::datapath_dma),
    t!("faults_datapath_pin_copy", true, faults::datapath_pin_copy),
    t!("faults_module_load", true, faults::module_load),
];

/// The tests of the vDPA bridge (`--bridge`).
pub const BRIDGE: &[Test] = &[
    t!("bridge_no_table_no_dma", true, bridge::no_table_no_dma),
    t!("bridge_no_log_all", true, dirty::bridge_no_log_all),
];

/// `vp_vdpa` on a virtio-net-pci NIC behind the VM's intel-iommu, bound
/// to the bridge (`--vp-vdpa`, tests/vm/vp-vdpa.sh on `scripts/vm
/// --machine q35-iommu`).
pub const VP_VDPA: &[Test] = &[
    t!("vp_vdpa_device", true, vp_vdpa::device),
    t!("vp_vdpa_traffic_iommufd", true, vp_vdpa::traffic),
    t!("vp_vdpa_unmap_running", true, vp_vdpa::unmap_running),
];

/// The tests of the vDPA bridge's PA mode (`--bridge-pa`: a vdpa_sim_net
/// device of `vdpa_sim use_va=0`).
pub const BRIDGE_PA: &[Test] = &[
    t!("bridge_pa_iommufd", true, bridge::pa_iommufd),
    t!("bridge_pa_type1", true, bridge::pa_type1),
    t!("bridge_pa_unmap_race", true, bridge::pa_unmap_race),
    t!("bridge_pa_memlock", true, bridge::pa_memlock),
    t!(
        "bridge_pa_close_with_mappings",
        true,
        bridge::pa_close_with_mappings
    ),
    t!(
        "bridge_pa_remove_while_open",
        true,
        bridge::pa_remove_while_open
    ),
];

/// The tests of the vDPA bridge on a vdpa_sim_blk device (`--bridge-blk`).
pub const BRIDGE_BLK: &[Test] = &[
    t!("bridge_blk_type1", true, bridge::sim_blk_type1),
    t!("bridge_blk_iommufd", true, bridge::sim_blk_iommufd),
];

/// vhost-vdpa and the vDPA bridge compared on one device model
/// (`--differential`: vdpa_sim_net devices bound to both, see
/// tests/vm/bridge.sh).
pub const DIFFERENTIAL: &[Test] = &[t!("differential_vhost_vdpa", true, diff::differential)];

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
    t!(
        "mem_table_checked_and_ignored",
        true,
        cparent::mem_table_ignored
    ),
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
    // The second sample: a virtio-blk RAM disk on the same transport.
    t!("blk_attributes", true, blk::attributes),
    t!("blk_requests_type1", true, blk::requests_type1),
    t!("blk_requests_iommufd", false, blk::requests_iommufd),
    t!("blk_read_only", true, blk::read_only),
    t!(
        "blk_malformed_chains_need_reset",
        true,
        blk::malformed_chains
    ),
    t!("reset_renegotiate", true, reset_renegotiate),
    t!("suspend_resume", false, suspend_resume),
    // Live migration: the dirty log on both back ends.
    t!("dirty_log_type1", true, |e| dirty::dirty_log(
        e,
        IommuKind::Type1
    )),
    t!("dirty_log_iommufd", true, |e| dirty::dirty_log(
        e,
        IommuKind::Iommufd
    )),
    // ... and the device state: SUSPEND mid-traffic, a second instance
    // from the bases.
    t!("migrate_state_type1", true, |e| migrate::device_state(
        e,
        IommuKind::Type1
    )),
    t!("migrate_state_iommufd", true, |e| migrate::device_state(
        e,
        IommuKind::Iommufd
    )),
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
    // Packed rings (VIRTIO_F_RING_PACKED) and queue pairs (queue_pairs).
    t!("packed_traffic_type1", true, |e| mq::packed_traffic(
        e,
        IommuKind::Type1
    )),
    t!("packed_traffic_iommufd", true, |e| mq::packed_traffic(
        e,
        IommuKind::Iommufd
    )),
    t!("hostile_packed_bad_wrap", true, |e| mq::hostile_packed(
        e,
        HostilePacked::BadWrap
    )),
    t!("hostile_packed_avail_twice", true, |e| mq::hostile_packed(
        e,
        HostilePacked::AvailTwice
    )),
    t!("hostile_packed_id_twice", true, |e| mq::hostile_packed(
        e,
        HostilePacked::IdTwice
    )),
    t!("hostile_packed_no_end", true, |e| mq::hostile_packed(
        e,
        HostilePacked::NoEnd
    )),
    t!("hostile_packed_nested_indirect", true, |e| {
        mq::hostile_packed(e, HostilePacked::NestedIndirect)
    }),
    t!("hostile_packed_len_overflow", true, |e| mq::hostile_packed(
        e,
        HostilePacked::LenOverflow
    )),
    t!(
        "packed_suspend_base_round_trip",
        true,
        mq::packed_base_round_trip
    ),
    t!("mq_every_pair_counted", true, mq::mq_every_pair),
    t!("mq_queue_pairs_attr", true, mq::mq_queue_pairs_attr),
    t!("mq_disable_pair_stops_it", true, mq::mq_disable_pair),
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
