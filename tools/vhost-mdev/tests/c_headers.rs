// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The crate's uAPI constants, request and ioctl codes and argument layouts
//! are what a C compiler reads in the headers: a small C program, compiled
//! here against `include/uapi/linux/vhost_mdev.h` and the kernel's uAPI
//! headers, prints every value, and each must equal the crate's.
//!
//! The kernel headers are those of the kernel tree the modules are built
//! against (`$VHOST_MDEV_KSRC`, else `linux-6.12` in the project's cache,
//! as scripts/lib.sh has it): its `vhost.h`, `vhost_types.h`, `vfio.h` and
//! `iommufd.h` come first, the build host's headers give the rest. Without
//! that tree only the host's headers are read: names they lack (a 6.1
//! `vfio.h` has no iommufd ioctls) are listed and not checked; the
//! project's own header is always checked in full.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

use vhost_mdev::msg::HDR_SIZE;
use vhost_mdev::uapi::*;
use vhost_mdev::{blk, net, packed, virtq};

/// What the C program prints for a name: `#name` and its value, if the
/// headers define it (`#ifdef`), or an expression that is always valid.
enum Item {
    /// A macro: printed only if the headers define it.
    Macro(&'static str),
    /// A C expression (`sizeof`, `offsetof`, an enum constant) under a
    /// label.
    Expr(&'static str, &'static str),
}

/// The crate's value of every name the C program prints.
fn table() -> Vec<(Item, u64)> {
    use Item::*;
    macro_rules! m {
        ($($name:ident),* $(,)?) => {
            vec![$((Macro(stringify!($name)), $name as u64)),*]
        };
    }
    macro_rules! f {
        ($($name:ident),* $(,)?) => {
            vec![$((Macro(stringify!($name)), $name() as u64)),*]
        };
    }
    let mut t = Vec::new();
    // include/uapi/linux/vhost_mdev.h
    t.extend(m![
        VHOST_VFIO_REGION_MSG,
        VHOST_VFIO_REGION_NOTIFY,
        VHOST_VFIO_NUM_REGIONS,
        VHOST_VFIO_MSG_REGION_SIZE,
        VHOST_VFIO_REGION_SHIFT,
        VHOST_VFIO_IRQ_VQ,
        VHOST_VFIO_IRQ_CONFIG,
        VHOST_VFIO_IRQ_REQ,
        VHOST_VFIO_NUM_IRQS,
        VHOST_VFIO_NEED_REPLY,
        VHOST_VFIO_OP_HDR_SIZE,
        VHOST_VFIO_MAX_PAYLOAD,
        VHOST_VFIO_SET_VRING_HVA,
    ]);
    // <linux/vhost.h>: the protocol's requests...
    t.extend(m![
        VHOST_VIRTIO,
        VHOST_GET_FEATURES,
        VHOST_SET_FEATURES,
        VHOST_SET_OWNER,
        VHOST_SET_MEM_TABLE,
        VHOST_SET_LOG_BASE,
        VHOST_SET_VRING_NUM,
        VHOST_SET_VRING_ADDR,
        VHOST_SET_VRING_BASE,
        VHOST_GET_VRING_BASE,
        VHOST_VDPA_GET_DEVICE_ID,
        VHOST_VDPA_GET_STATUS,
        VHOST_VDPA_SET_STATUS,
        VHOST_VDPA_GET_CONFIG,
        VHOST_VDPA_SET_CONFIG,
        VHOST_VDPA_SET_VRING_ENABLE,
        VHOST_VDPA_GET_VRING_NUM,
        VHOST_VDPA_GET_CONFIG_SIZE,
        VHOST_VDPA_SUSPEND,
        VHOST_VDPA_RESUME,
        VHOST_VDPA_GET_VQS_COUNT,
    ]);
    // ... and the vhost-vdpa ioctls (vmm-sys-util's macros).
    t.extend(f![
        VHOST_SET_VRING_KICK,
        VHOST_SET_VRING_CALL,
        VHOST_SET_BACKEND_FEATURES,
        VHOST_GET_BACKEND_FEATURES,
        VHOST_VDPA_SET_CONFIG_CALL,
    ]);
    // <linux/vhost_types.h>
    t.extend(m![
        VHOST_F_LOG_ALL,
        VHOST_VRING_F_LOG,
        VHOST_ACCESS_RO,
        VHOST_ACCESS_WO,
        VHOST_ACCESS_RW,
        VHOST_IOTLB_UPDATE,
        VHOST_IOTLB_INVALIDATE,
        VHOST_IOTLB_MSG_V2,
        VHOST_BACKEND_F_IOTLB_MSG_V2,
        VHOST_BACKEND_F_IOTLB_BATCH,
        VHOST_BACKEND_F_SUSPEND,
        VHOST_BACKEND_F_RESUME,
    ]);
    // <linux/vfio.h>, <linux/iommufd.h> (vmm-sys-util's macros).
    t.extend(f![
        VFIO_GET_API_VERSION,
        VFIO_CHECK_EXTENSION,
        VFIO_SET_IOMMU,
        VFIO_GROUP_GET_STATUS,
        VFIO_GROUP_SET_CONTAINER,
        VFIO_GROUP_UNSET_CONTAINER,
        VFIO_GROUP_GET_DEVICE_FD,
        VFIO_DEVICE_GET_INFO,
        VFIO_DEVICE_GET_REGION_INFO,
        VFIO_DEVICE_GET_IRQ_INFO,
        VFIO_DEVICE_SET_IRQS,
        VFIO_DEVICE_RESET,
        VFIO_IOMMU_MAP_DMA,
        VFIO_IOMMU_UNMAP_DMA,
        VFIO_DEVICE_IOEVENTFD,
        VFIO_DEVICE_BIND_IOMMUFD,
        VFIO_DEVICE_ATTACH_IOMMUFD_PT,
        VFIO_DEVICE_DETACH_IOMMUFD_PT,
        IOMMU_DESTROY,
        IOMMU_IOAS_ALLOC,
        IOMMU_IOAS_MAP,
        IOMMU_IOAS_UNMAP,
    ]);
    // virtio (virtio-bindings): <linux/virtio_*.h>
    t.extend(m![
        VIRTIO_ID_NET,
        VIRTIO_CONFIG_S_ACKNOWLEDGE,
        VIRTIO_CONFIG_S_DRIVER,
        VIRTIO_CONFIG_S_DRIVER_OK,
        VIRTIO_CONFIG_S_FEATURES_OK,
        VIRTIO_CONFIG_S_NEEDS_RESET,
        VIRTIO_CONFIG_S_FAILED,
        VIRTIO_NET_F_CSUM,
        VIRTIO_NET_F_GUEST_CSUM,
        VIRTIO_NET_F_MTU,
        VIRTIO_NET_F_MAC,
        VIRTIO_NET_F_MRG_RXBUF,
        VIRTIO_NET_F_STATUS,
        VIRTIO_NET_F_CTRL_VQ,
        VIRTIO_NET_F_MQ,
        VIRTIO_RING_F_INDIRECT_DESC,
        VIRTIO_RING_F_EVENT_IDX,
        VIRTIO_F_VERSION_1,
        VIRTIO_F_ACCESS_PLATFORM,
        VIRTIO_F_RING_PACKED,
        VIRTIO_F_IN_ORDER,
        VIRTIO_NET_S_LINK_UP,
    ]);
    t.extend([
        (Macro("VRING_DESC_F_NEXT"), virtq::VRING_DESC_F_NEXT.into()),
        (
            Macro("VRING_DESC_F_WRITE"),
            virtq::VRING_DESC_F_WRITE.into(),
        ),
        (
            Macro("VRING_DESC_F_INDIRECT"),
            virtq::VRING_DESC_F_INDIRECT.into(),
        ),
        (
            Macro("VRING_AVAIL_F_NO_INTERRUPT"),
            virtq::VRING_AVAIL_F_NO_INTERRUPT.into(),
        ),
        (
            Macro("VRING_USED_F_NO_NOTIFY"),
            virtq::VRING_USED_F_NO_NOTIFY.into(),
        ),
        // Bit numbers in C, masks here.
        (
            Expr(
                "1 << VRING_PACKED_DESC_F_AVAIL",
                "VRING_PACKED_DESC_F_AVAIL",
            ),
            packed::VRING_PACKED_DESC_F_AVAIL.into(),
        ),
        (
            Expr("1 << VRING_PACKED_DESC_F_USED", "VRING_PACKED_DESC_F_USED"),
            packed::VRING_PACKED_DESC_F_USED.into(),
        ),
        (
            Macro("VRING_PACKED_EVENT_FLAG_ENABLE"),
            packed::VRING_PACKED_EVENT_FLAG_ENABLE.into(),
        ),
        (
            Macro("VRING_PACKED_EVENT_FLAG_DISABLE"),
            packed::VRING_PACKED_EVENT_FLAG_DISABLE.into(),
        ),
        (
            Macro("VRING_PACKED_EVENT_FLAG_DESC"),
            packed::VRING_PACKED_EVENT_FLAG_DESC.into(),
        ),
        (
            Macro("VRING_PACKED_EVENT_F_WRAP_CTR"),
            packed::VRING_PACKED_EVENT_F_WRAP_CTR.into(),
        ),
        (Macro("VIRTIO_ID_BLOCK"), blk::VIRTIO_ID_BLOCK.into()),
        (Macro("VIRTIO_BLK_T_IN"), blk::T_IN.into()),
        (Macro("VIRTIO_BLK_T_OUT"), blk::T_OUT.into()),
        (Macro("VIRTIO_BLK_T_FLUSH"), blk::T_FLUSH.into()),
        (Macro("VIRTIO_BLK_T_GET_ID"), blk::T_GET_ID.into()),
        (Macro("VIRTIO_BLK_S_OK"), blk::S_OK.into()),
        (Macro("VIRTIO_BLK_S_IOERR"), blk::S_IOERR.into()),
        (Macro("VIRTIO_BLK_S_UNSUPP"), blk::S_UNSUPP.into()),
        (Macro("VIRTIO_BLK_ID_BYTES"), blk::ID_BYTES as u64),
        (Macro("VIRTIO_BLK_F_SEG_MAX"), blk::F_SEG_MAX.into()),
        (Macro("VIRTIO_BLK_F_RO"), blk::F_RO.into()),
        (Macro("VIRTIO_BLK_F_BLK_SIZE"), blk::F_BLK_SIZE.into()),
        (Macro("VIRTIO_BLK_F_FLUSH"), blk::F_FLUSH.into()),
    ]);
    // Argument and header layouts.
    macro_rules! e {
        ($c:literal, $v:expr) => {
            (Expr($c, $c), $v as u64)
        };
    }
    t.extend([
        e!("sizeof(struct vhost_vfio_op)", HDR_SIZE),
        e!(
            "sizeof(struct vhost_vring_state)",
            size_of::<VhostVringState>()
        ),
        e!(
            "sizeof(struct vhost_vring_file)",
            size_of::<VhostVringFile>()
        ),
        e!(
            "sizeof(struct vhost_vring_addr)",
            size_of::<VhostVringAddr>()
        ),
        e!(
            "offsetof(struct vhost_vring_addr, log_guest_addr)",
            offset_of!(VhostVringAddr, log_guest_addr)
        ),
        e!("sizeof(struct vhost_memory)", size_of::<VhostMemory>()),
        // `MemRegion` is encoded field by field, in this many bytes.
        e!(
            "sizeof(struct vhost_memory_region)",
            vhost_mdev_proto::uapi::MEM_REGION_SIZE
        ),
        e!(
            "sizeof(struct vhost_vdpa_config)",
            size_of::<VhostVdpaConfig>()
        ),
        e!("sizeof(struct vhost_iotlb_msg)", size_of::<VhostIotlbMsg>()),
        e!(
            "offsetof(struct vhost_iotlb_msg, perm)",
            offset_of!(VhostIotlbMsg, perm)
        ),
        e!(
            "offsetof(struct vhost_iotlb_msg, type)",
            offset_of!(VhostIotlbMsg, type_)
        ),
        e!("sizeof(struct vhost_msg_v2)", size_of::<VhostMsgV2>()),
        e!(
            "offsetof(struct vhost_msg_v2, iotlb)",
            offset_of!(VhostMsgV2, iotlb)
        ),
        e!("sizeof(struct virtio_net_hdr_v1)", net::NET_HDR_LEN),
        e!(
            "offsetof(struct virtio_net_config, speed)",
            net::NET_CONFIG_LEN
        ),
        e!(
            "offsetof(struct virtio_blk_config, physical_block_exp)",
            blk::CONFIG_LEN
        ),
        e!("sizeof(struct vring_desc)", virtq::DESC_SIZE),
    ]);
    t
}

/// The kernel tree whose uAPI headers are read first, if there is one.
fn kernel_tree() -> Option<PathBuf> {
    let ksrc = match std::env::var_os("VHOST_MDEV_KSRC") {
        Some(k) => PathBuf::from(k),
        None => {
            let cache = std::env::var_os("VHOST_MDEV_CACHE")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/vhost-mdev"))
                })?;
            cache.join("linux-6.12")
        }
    };
    ksrc.join("include/uapi/linux/vfio.h")
        .is_file()
        .then_some(ksrc)
}

/// Compiles and runs the C program; returns what it printed, by label.
fn c_values(items: &[&Item], ksrc: Option<&Path>, dir: &Path) -> HashMap<String, u64> {
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let overlay = dir.join("include");
    std::fs::create_dir_all(overlay.join("linux")).unwrap();
    if let Some(ksrc) = ksrc {
        for h in ["vhost.h", "vhost_types.h", "vfio.h", "iommufd.h"] {
            std::fs::copy(
                ksrc.join("include/uapi/linux").join(h),
                overlay.join("linux").join(h),
            )
            .unwrap_or_else(|e| panic!("copy {h} of {}: {e}", ksrc.display()));
        }
        // `make headers_install` drops the in-tree headers' includes of
        // <linux/compiler.h> and their `__user` (see -D below).
        std::fs::write(overlay.join("linux/compiler.h"), "").unwrap();
    }
    let mut c = String::from(
        "#include <stdio.h>\n\
         #include <stddef.h>\n\
         #include <linux/vhost.h>\n\
         #include <linux/vfio.h>\n\
         #if __has_include(<linux/iommufd.h>)\n\
         #include <linux/iommufd.h>\n\
         #endif\n\
         #include <linux/virtio_ids.h>\n\
         #include <linux/virtio_config.h>\n\
         #include <linux/virtio_ring.h>\n\
         #include <linux/virtio_net.h>\n\
         #include <linux/virtio_blk.h>\n\
         #include <linux/vhost_mdev.h>\n\
         #define P(label, v) printf(\"%s %llu\\n\", label, (unsigned long long)(v))\n\
         int main(void)\n{\n",
    );
    for item in items {
        match item {
            Item::Macro(name) => {
                writeln!(c, "#ifdef {name}\n\tP(\"{name}\", {name});\n#endif").unwrap()
            }
            // Enum constants and expressions: always compiled.
            Item::Expr(expr, label) => writeln!(c, "\tP(\"{label}\", {expr});").unwrap(),
        }
    }
    c.push_str(
        "\tprintf(\"VHOST_VFIO_DEVICE_API %s\\n\", VHOST_VFIO_DEVICE_API);\n\treturn 0;\n}\n",
    );
    let src = dir.join("uapi.c");
    let exe = dir.join("uapi");
    std::fs::write(&src, c).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .arg("-I")
        .arg(&overlay)
        .arg("-I")
        .arg(top.join("include/uapi"))
        .arg("-D__user=")
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("run {cc}: {e}"));
    assert!(
        out.status.success(),
        "{cc} failed on {}:\n{}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&exe).output().expect("run the C program");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let mut values = HashMap::new();
    for line in text.lines() {
        let (label, v) = line.rsplit_once(' ').expect("label value");
        if label == "VHOST_VFIO_DEVICE_API" {
            assert_eq!(v, VHOST_VFIO_DEVICE_API, "VHOST_VFIO_DEVICE_API");
            values.insert(label.to_string(), 0);
            continue;
        }
        values.insert(label.to_string(), v.parse().expect("number"));
    }
    values
}

#[test]
fn every_value_is_the_c_headers() {
    let table = table();
    let ksrc = kernel_tree();
    let dir = std::env::temp_dir().join(format!("vhost-mdev-c-headers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let items: Vec<&Item> = table.iter().map(|(i, _)| i).collect();
    let c = c_values(&items, ksrc.as_deref(), &dir);
    std::fs::remove_dir_all(&dir).ok();
    assert!(c.contains_key("VHOST_VFIO_DEVICE_API"));

    let mut missing = Vec::new();
    let mut checked = 0;
    for (item, ours) in &table {
        let label = match item {
            Item::Macro(n) => *n,
            Item::Expr(_, l) => *l,
        };
        match c.get(label) {
            Some(v) => {
                assert_eq!(*ours, *v, "{label}: the crate has {ours:#x}, C {v:#x}");
                checked += 1;
            }
            None => missing.push(label),
        }
    }
    println!("{checked} values equal the C headers'");
    // The project's header is always there, and so are the vhost and VFIO
    // basics of any uAPI header set.
    for always in [
        "VHOST_VFIO_",
        "VHOST_SET_",
        "VHOST_GET_",
        "VFIO_GROUP_",
        "VIRTIO_NET_F_",
    ] {
        let gone: Vec<_> = missing.iter().filter(|m| m.starts_with(always)).collect();
        assert!(gone.is_empty(), "not in the C headers: {gone:?}");
    }
    match ksrc {
        Some(k) => assert!(
            missing.is_empty(),
            "not in the headers of {}: {missing:?}",
            k.display()
        ),
        None => {
            if !missing.is_empty() {
                println!(
                    "note: no kernel tree (VHOST_MDEV_KSRC); not in this host's headers, \
                     not checked: {missing:?}"
                );
            }
        }
    }
}
