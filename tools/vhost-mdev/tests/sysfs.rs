// SPDX-License-Identifier: GPL-2.0 OR MIT
//! sysfs discovery on the fixture tree under tests/fixtures/sysfs.

use std::fs;
use std::path::PathBuf;

use uuid::Uuid;
use vhost_mdev::Sysfs;

const UUID: &str = "7d6c2f6e-0f0a-4a4e-9d0e-3f1b2c3d4e5f";
const TYPE: &str = "vhost_mdev_net_sample-net";
/// The instance with the core's status attributes.
const NEW: &str = "8e7d3f70-1b1b-4c5c-8d8d-9e0f1a2b3c4d";

mod common;
use common::fixture;

/// A writable copy of the fixture.
fn scratch(name: &str) -> PathBuf {
    common::scratch("vhost-mdev-sysfs", name)
}

#[test]
fn parents_and_types() {
    let s = Sysfs::with_root(fixture());
    let parents = s.parents().unwrap();
    let names: Vec<_> = parents.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["mtty", "mvnet"]);
    let mvnet = &parents[1];
    assert_eq!(mvnet.driver.as_deref(), Some("vhost_mdev_net_sample"));
    assert_eq!(mvnet.types.len(), 1);
    let t = &mvnet.types[0];
    assert_eq!(t.id, TYPE);
    assert_eq!(t.name.as_deref(), Some("net"));
    assert_eq!(t.device_api, "vfio-vhost");
    assert_eq!(t.available_instances, 3);
    assert!(t.is_vhost());
    assert!(!parents[0].types[0].is_vhost());
    assert_eq!(parents[0].types[0].description, None);

    let v = s.vhost_types().unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].parent, "mvnet");
    assert_eq!(s.find_type("mvnet", TYPE).unwrap(), v[0]);
    assert_eq!(s.find_type("mvnet", "net").unwrap().id, TYPE);
    let e = s.find_type("mvnet", "nope").unwrap_err().to_string();
    assert!(e.contains(TYPE), "{e}");
    assert!(s.find_type("nope", TYPE).is_err());
}

#[test]
fn no_vhost_parent_says_what_to_load() {
    let empty = std::env::temp_dir().join(format!("vhost-mdev-empty-{}", std::process::id()));
    fs::create_dir_all(&empty).unwrap();
    let e = Sysfs::with_root(&empty)
        .vhost_types()
        .unwrap_err()
        .to_string();
    assert!(e.contains("modprobe vhost_mdev_net"), "{e}");
    assert!(Sysfs::with_root(&empty).parents().unwrap().is_empty());
}

#[test]
fn parents_without_mdev_bus_class() {
    let root = scratch("noclass");
    fs::remove_dir_all(root.join("sys/class/mdev_bus")).unwrap();
    let names: Vec<_> = Sysfs::with_root(&root)
        .parents()
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["mtty", "mvnet"]);
    fs::remove_dir_all(root).unwrap();
}

#[test]
fn instances() {
    let s = Sysfs::with_root(fixture());
    let v = s.instances().unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(v[1].uuid.to_string(), NEW);
    assert_eq!(v[1].iommu_group, Some(8));
    assert_eq!(v[1].vfio_cdev.as_deref(), Some("vfio1"));
    let i = &v[0];
    assert_eq!(i.uuid.to_string(), UUID);
    assert_eq!(i.parent.as_deref(), Some("mvnet"));
    assert_eq!(i.type_id.as_deref(), Some(TYPE));
    assert_eq!(i.iommu_group, Some(7));
    assert_eq!(i.vfio_cdev.as_deref(), Some("vfio0"));
    assert_eq!(i.driver.as_deref(), Some("vfio-vhost"));
    assert_eq!(s.group_node(i).unwrap(), fixture().join("dev/vfio/7"));
    assert_eq!(
        s.cdev_node(i).unwrap(),
        fixture().join("dev/vfio/devices/vfio0")
    );
    let stats = s.stats(i).unwrap();
    assert_eq!(
        stats,
        [
            ("rx_packets".to_string(), "10".to_string()),
            ("tx_packets".to_string(), "12".to_string())
        ]
    );
    let missing = Uuid::new_v4();
    let e = s.instance(&missing).unwrap_err().to_string();
    assert!(e.contains(&missing.to_string()), "{e}");
}

#[test]
fn holders_are_found_in_proc() {
    let s = Sysfs::with_root(fixture());
    let i = s.instance(&Uuid::parse_str(UUID).unwrap()).unwrap();
    let h = s.holders(&i).unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].pid, 4242);
    assert_eq!(h[0].comm, "qemu-system-x86");
    assert_eq!(h[0].node.as_deref(), Some("/dev/vfio/7"));
    assert_eq!(i.status, None);
}

#[test]
fn the_core_attributes_name_the_holder() {
    let s = Sysfs::with_root(fixture());
    let i = s.instance(&Uuid::parse_str(NEW).unwrap()).unwrap();
    let st = i.status.clone().unwrap();
    assert_eq!(st.state, "removing");
    assert!(st.is_open());
    assert_eq!(st.holder, Some(4243));
    assert_eq!(st.backend.as_deref(), Some("iommufd"));
    assert_eq!(st.remove_requested, 2);
    // Not by scanning /proc: pid 4243 holds no VFIO node there.
    let h = s.holders(&i).unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(
        (h[0].pid, h[0].comm.as_str(), h[0].node.as_deref()),
        (4243, "bash", None)
    );
    assert_eq!(h[0].to_string(), "pid 4243 (bash)");
    let c = s.config(&i).unwrap();
    let keys: Vec<_> = c.keys().map(String::as_str).collect();
    assert_eq!(keys, ["link", "mac", "mtu", "queue_pairs"]);
    assert!(s.has_attr(&i, "mtu") && !s.has_attr(&i, "capacity"));
    let e = s.set_attr(&i, "capacity", "8").unwrap_err();
    assert_eq!(e.class(), vhost_mdev::Class::NotFound, "{e}");

    // Closed: no holder, whatever a stale pid says.
    let root = scratch("closed");
    let d = root
        .join("sys/devices/virtual/vhost_mdev_net_sample/mvnet")
        .join(NEW);
    fs::write(d.join("state"), "closed\n").unwrap();
    fs::write(d.join("holder"), "\n").unwrap();
    fs::write(d.join("backend"), "\n").unwrap();
    let s = Sysfs::with_root(&root);
    let i = s.instance(&Uuid::parse_str(NEW).unwrap()).unwrap();
    let st = i.status.clone().unwrap();
    assert!(!st.is_open() && st.holder.is_none() && st.backend.is_none());
    assert!(s.holders(&i).unwrap().is_empty());

    // While a removal waits, the kernel has taken the bus link away: the
    // instance is found under its parent.
    fs::remove_file(root.join("sys/bus/mdev/devices").join(NEW)).unwrap();
    let i = s.instance(&Uuid::parse_str(NEW).unwrap()).unwrap();
    assert_eq!(i.parent.as_deref(), Some("mvnet"));
    assert!(s.instances().unwrap().iter().any(|x| x.uuid == i.uuid));
    fs::remove_dir_all(root).unwrap();
}

#[test]
fn create_and_remove_write_the_attributes() {
    let root = scratch("create");
    let s = Sysfs::with_root(&root);
    let t = s.find_type("mvnet", TYPE).unwrap();
    let u = s.create(&t, None).unwrap();
    assert_eq!(u.get_version_num(), 4);
    assert_eq!(
        fs::read_to_string(t.path.join("create")).unwrap(),
        u.to_string()
    );
    let fixed = Uuid::parse_str("11111111-2222-4333-8444-555555555555").unwrap();
    assert_eq!(s.create(&t, Some(fixed)).unwrap(), fixed);

    let existing = Uuid::parse_str(UUID).unwrap();
    s.remove(&existing).unwrap();
    let removed = s.instance_dir(&existing).join("remove");
    assert_eq!(fs::read_to_string(removed).unwrap(), "1");
    assert!(s.remove(&Uuid::new_v4()).is_err());
    fs::remove_dir_all(root).unwrap();
}
