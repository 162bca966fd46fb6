// SPDX-License-Identifier: GPL-2.0 OR MIT
//! vDPA devices and the bridge on a sysfs tree built here: discovery, the
//! bridged parent in `list`, and what `attach` and `detach` refuse (a fake
//! tree does not bind anything: the binding itself is tested in the VM,
//! tests/vm/bridge.sh).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use vhost_mdev::bridge::{self, BRIDGE_DRIVER};
use vhost_mdev::{Error, Sysfs};

fn write(p: &Path, s: &str) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, s).unwrap();
}

/// A root with a vDPA bus: vdpa1 on the bridge (an instance open by pid
/// 50), vdpa2 on vhost_vdpa (/dev/vhost-vdpa-0 open by pid 60), vdpa3
/// unbound with a stale override naming the bridge.
fn tree(name: &str, bridge_loaded: bool) -> PathBuf {
    let root =
        std::env::temp_dir().join(format!("vhost-mdev-bridge-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    let bus = root.join("sys/bus/vdpa");
    let devs = root.join("sys/devices/virtual/vdpa_sim");
    let mut drivers = vec!["vhost_vdpa"];
    if bridge_loaded {
        drivers.push(BRIDGE_DRIVER);
    }
    for d in &drivers {
        fs::create_dir_all(bus.join("drivers").join(d)).unwrap();
        write(&bus.join("drivers").join(d).join("unbind"), "");
    }
    write(&bus.join("drivers_probe"), "");
    fs::create_dir_all(bus.join("devices")).unwrap();
    for (n, drv, ovr) in [
        ("vdpa1", Some(BRIDGE_DRIVER), "vhost_mdev_vdpa\n"),
        ("vdpa2", Some("vhost_vdpa"), "(null)\n"),
        ("vdpa3", None, "vhost_mdev_vdpa\n"),
    ] {
        let d = devs.join(n);
        fs::create_dir_all(&d).unwrap();
        write(&d.join("driver_override"), ovr);
        symlink("../../../../bus/vdpa", d.join("subsystem")).unwrap();
        if let Some(drv) = drv {
            symlink(
                format!("../../../../bus/vdpa/drivers/{drv}"),
                d.join("driver"),
            )
            .unwrap();
        }
        symlink(
            format!("../../../devices/virtual/vdpa_sim/{n}"),
            bus.join("devices").join(n),
        )
        .unwrap();
    }
    // vdpa1's parent, type, instance.
    // In a directory of the parent's class, as the kernel puts it.
    let p = devs.join("vdpa1/vhost_mdev_vdpa-vdpa1/vhost_mdev_vdpa-vdpa1");
    write(&devs.join("vdpa1/dma_mode"), "va\n");
    let t = p.join("mdev_supported_types/vhost_mdev_vdpa-vdpa1-bridge");
    write(&t.join("device_api"), "vfio-vhost\n");
    write(&t.join("available_instances"), "0\n");
    write(&t.join("name"), "vDPA bridge\n");
    fs::create_dir_all(root.join("sys/class/mdev_bus")).unwrap();
    symlink(
        "../../devices/virtual/vdpa_sim/vdpa1/vhost_mdev_vdpa-vdpa1/vhost_mdev_vdpa-vdpa1",
        root.join("sys/class/mdev_bus/vhost_mdev_vdpa-vdpa1"),
    )
    .unwrap();
    let uuid = "77777777-0000-0000-0000-000000000001";
    let i = p.join(uuid);
    fs::create_dir_all(&i).unwrap();
    symlink(
        "../../../../../kernel/iommu_groups/3",
        i.join("iommu_group"),
    )
    .unwrap();
    fs::create_dir_all(root.join("sys/bus/mdev/devices")).unwrap();
    symlink(
        format!("../../../devices/virtual/vdpa_sim/vdpa1/vhost_mdev_vdpa-vdpa1/vhost_mdev_vdpa-vdpa1/{uuid}"),
        root.join("sys/bus/mdev/devices").join(uuid),
    )
    .unwrap();
    // vdpa2's char device.
    fs::create_dir_all(devs.join("vdpa2/vhost-vdpa-0")).unwrap();
    for (pid, comm, node) in [
        (50, "qemu", "/dev/vfio/3"),
        (60, "dpdk", "/dev/vhost-vdpa-0"),
    ] {
        let pd = root.join(format!("proc/{pid}"));
        fs::create_dir_all(pd.join("fd")).unwrap();
        write(&pd.join("comm"), &format!("{comm}\n"));
        symlink(node, pd.join("fd/7")).unwrap();
    }
    root
}

fn quiet() -> impl FnMut(&str) {
    |_: &str| {}
}

#[test]
fn devices_and_the_bridged_parent() {
    let root = tree("list", true);
    let s = Sysfs::with_root(&root);
    let v = s.vdpa_devices().unwrap();
    let names: Vec<_> = v.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["vdpa1", "vdpa2", "vdpa3"]);
    assert!(v[0].on_bridge());
    assert_eq!(v[0].dma_mode.as_deref(), Some("va"));
    assert_eq!(v[0].driver_override.as_deref(), Some(BRIDGE_DRIVER));
    assert_eq!(v[1].driver.as_deref(), Some("vhost_vdpa"));
    assert_eq!(v[1].driver_override, None);
    assert_eq!(v[1].vhost_vdpa_nodes(), ["/dev/vhost-vdpa-0"]);
    assert_eq!(v[2].driver, None);
    assert_eq!(
        s.vdpa_drivers(),
        ["vhost_mdev_vdpa".to_string(), "vhost_vdpa".to_string()]
    );

    let parents = s.parents().unwrap();
    assert_eq!(parents.len(), 1);
    let b = s.bridged_vdpa(&parents[0]).unwrap();
    assert_eq!(b.name, "vdpa1");
    assert_eq!(b.dma_mode.as_deref(), Some("va"));
    let h = s.bridge_holders(&b).unwrap();
    assert_eq!((h.len(), h[0].pid), (1, 50));
    fs::remove_dir_all(root).unwrap();
}

#[test]
fn attach_refuses_clearly_and_changes_nothing() {
    let root = tree("attach", true);
    let s = Sysfs::with_root(&root);
    let ovr = root.join("sys/devices/virtual/vdpa_sim/vdpa2/driver_override");

    let e = bridge::attach(&s, "vdpa9", false, &mut quiet()).unwrap_err();
    let m = e.to_string();
    assert!(matches!(e, Error::NotFound(_)), "{m}");
    assert!(
        m.contains("vdpa dev show") && m.contains("vdpa1, vdpa2, vdpa3"),
        "{m}"
    );
    for bad in ["../vdpa1", "", ".."] {
        let e = bridge::attach(&s, bad, false, &mut quiet()).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    }

    // /dev/vhost-vdpa-0 is open: unbinding would block.
    let e = bridge::attach(&s, "vdpa2", false, &mut quiet()).unwrap_err();
    let m = e.to_string();
    assert!(matches!(e, Error::InUse(_)), "{m}");
    assert!(m.contains("pid 60 (dpdk)") && m.contains("--wait"), "{m}");
    assert_eq!(fs::read_to_string(&ovr).unwrap(), "(null)\n");
    let unbind = root.join("sys/bus/vdpa/drivers/vhost_vdpa/unbind");
    assert_eq!(fs::read_to_string(&unbind).unwrap(), "");

    // Already there: nothing to do.
    let a = bridge::attach(&s, "vdpa1", false, &mut quiet()).unwrap();
    assert!(a.already);
    assert_eq!(a.parent, "vhost_mdev_vdpa-vdpa1");
    assert_eq!(a.type_id, "vhost_mdev_vdpa-vdpa1-bridge");

    // With --wait it unbinds (a fake tree binds nothing afterwards: the
    // override goes back to what it was).
    let mut said = Vec::new();
    let e = bridge::attach(&s, "vdpa2", true, &mut |m: &str| said.push(m.to_string()));
    assert!(e.is_err());
    assert!(said[0].contains("waiting until pid 60"), "{said:?}");
    assert_eq!(fs::read_to_string(&unbind).unwrap(), "vdpa2");
    assert_eq!(fs::read_to_string(&ovr).unwrap(), "\n");
    fs::remove_dir_all(root).unwrap();
}

#[test]
fn attach_says_what_to_load() {
    let root = tree("nomod", false);
    let s = Sysfs::with_root(&root);
    let e = bridge::attach(&s, "vdpa2", false, &mut quiet())
        .unwrap_err()
        .to_string();
    assert!(e.contains("modprobe vhost_mdev_vdpa"), "{e}");
    let ovr = root.join("sys/devices/virtual/vdpa_sim/vdpa2/driver_override");
    assert_eq!(fs::read_to_string(ovr).unwrap(), "(null)\n");
    let empty = root.join("empty");
    fs::create_dir_all(&empty).unwrap();
    let e = bridge::attach(&Sysfs::with_root(&empty), "vdpa1", false, &mut quiet())
        .unwrap_err()
        .to_string();
    assert!(e.contains("no vDPA bus"), "{e}");
    fs::remove_dir_all(root).unwrap();
}

#[test]
fn detach_refuses_clearly() {
    let root = tree("detach", true);
    let s = Sysfs::with_root(&root);
    let ovr1 = root.join("sys/devices/virtual/vdpa_sim/vdpa1/driver_override");

    // The instance is open by pid 50.
    let e = bridge::detach(&s, "vdpa1", None, false, &mut quiet()).unwrap_err();
    let m = e.to_string();
    assert!(matches!(e, Error::InUse(_)), "{m}");
    assert!(m.contains("pid 50 (qemu)") && m.contains("--wait"), "{m}");
    assert_eq!(fs::read_to_string(&ovr1).unwrap(), "vhost_mdev_vdpa\n");

    let e = bridge::detach(&s, "vdpa1", Some("virtio_vdpa"), true, &mut quiet())
        .unwrap_err()
        .to_string();
    assert!(e.contains("modprobe virtio_vdpa"), "{e}");
    let e = bridge::detach(&s, "vdpa1", Some("../x"), true, &mut quiet()).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    let e = bridge::detach(&s, "vdpa1", Some(BRIDGE_DRIVER), true, &mut quiet())
        .unwrap_err()
        .to_string();
    assert!(e.contains("attach"), "{e}");
    assert_eq!(fs::read_to_string(&ovr1).unwrap(), "vhost_mdev_vdpa\n");

    // Not on the bridge: left alone.
    let d = bridge::detach(&s, "vdpa2", None, false, &mut quiet()).unwrap();
    assert!(!d.was_attached);
    assert_eq!(d.device.driver.as_deref(), Some("vhost_vdpa"));

    // Unbound with a stale override naming the bridge: cleared, probed.
    let d = bridge::detach(&s, "vdpa3", Some("vhost_vdpa"), false, &mut quiet());
    // (The fake tree binds nothing: vhost_vdpa "did not take it".)
    assert!(d.unwrap_err().to_string().contains("did not take vdpa3"));
    let ovr3 = root.join("sys/devices/virtual/vdpa_sim/vdpa3/driver_override");
    assert_eq!(fs::read_to_string(ovr3).unwrap(), "vhost_vdpa\n");
    assert_eq!(
        fs::read_to_string(root.join("sys/bus/vdpa/drivers_probe")).unwrap(),
        "vdpa3"
    );
    fs::remove_dir_all(root).unwrap();
}
