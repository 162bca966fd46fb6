// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The `vhost-mdev` binary on the sysfs fixture: the read-only views and
//! their JSON, the configuration commands, and the exit statuses.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The fixture's instance of a core without the status attributes, held
/// by pid 4242 (found in /proc).
const OLD: &str = "7d6c2f6e-0f0a-4a4e-9d0e-3f1b2c3d4e5f";
/// The fixture's instance with the core's and the net sample's
/// attributes: held by pid 4243 over iommufd, removal requested.
const NEW: &str = "8e7d3f70-1b1b-4c5c-8d8d-9e0f1a2b3c4d";
const TYPE: &str = "vhost_mdev_net_sample-net";

mod common;
use common::fixture;

/// A writable copy of the fixture.
fn scratch(name: &str) -> PathBuf {
    common::scratch("vhost-mdev-cli", name)
}

fn run(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vhost-mdev"))
        .env("VHOST_MDEV_ROOT", root)
        .env_remove("VHOST_MDEV_OWNERS")
        .args(args)
        .output()
        .unwrap()
}

/// Runs and parses stdout as JSON (it must be valid).
fn json(root: &Path, args: &[&str]) -> Value {
    let o = run(root, args);
    assert!(o.status.success(), "{args:?}: {o:?}");
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: invalid JSON ({e}): {o:?}"))
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn inst_dir(root: &Path, uuid: &str) -> PathBuf {
    root.join("sys/devices/virtual/vhost_mdev_net_sample/mvnet")
        .join(uuid)
}

#[test]
fn list_views_and_their_json() {
    let f = fixture();
    let all = json(&f, &["list", "--json"]);
    assert_eq!(all["parents"].as_array().unwrap().len(), 2);
    assert_eq!(all["parents"][1]["types"][0]["id"], TYPE);
    assert_eq!(all["instances"].as_array().unwrap().len(), 2);
    let types = json(&f, &["list", "types", "-j"]);
    assert_eq!(types[1]["device_api"], "vfio-vhost");
    assert_eq!(types[1]["available_instances"], 3);
    let parents = json(&f, &["-j", "list", "parents"]);
    assert_eq!(parents[0]["name"], "mtty");
    let inst = json(&f, &["list", "instances", "-j"]);
    let new = inst
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["uuid"] == NEW)
        .unwrap();
    assert_eq!(new["state"], "removing");
    assert_eq!(new["holder"]["pid"], 4243);
    assert_eq!(new["holder"]["comm"], "bash");
    assert_eq!(new["backend"], "iommufd");
    assert_eq!(new["remove_requested"], 2);
    assert_eq!(new["type"], TYPE);
    let old = &inst[0];
    assert_eq!(old["uuid"], OLD);
    assert_eq!(old["holder"]["pid"], 4242);
    assert_eq!(old["holder"]["node"], "/dev/vfio/7");
    assert!(json(&f, &["list", "vdpa", "-j"])
        .as_array()
        .unwrap()
        .is_empty());

    // The text `list` as before, the holder from the attribute.
    let o = run(&f, &["list"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains(&format!("  {OLD} parent mvnet type {TYPE} group 7 cdev vfio0 driver vfio-vhost: in use by pid 4242 (qemu-system-x86)")), "{text}");
    assert!(text.contains(&format!("  {NEW} parent mvnet type {TYPE} group 8 cdev vfio1 driver vfio-vhost: in use by pid 4243 (bash), removal requested")), "{text}");
    let o = run(&f, &["list", "instances"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 2);
}

#[test]
fn info_and_stats_read_sysfs_only() {
    let f = fixture();
    let i = json(&f, &["info", NEW, "-j"]);
    assert_eq!(i["uuid"], NEW);
    assert_eq!(i["parent"], "mvnet");
    assert_eq!(i["device_api"], "vfio-vhost");
    assert_eq!(i["type_name"], "net");
    assert_eq!(i["state"], "removing");
    assert_eq!(i["holder"]["pid"], 4243);
    assert_eq!(i["backend"], "iommufd");
    assert_eq!(i["config"]["mac"], "52:54:00:12:34:56");
    assert_eq!(i["config"]["mtu"], "1500");
    assert_eq!(i["config"]["queue_pairs"], "2");
    // The core's own attributes are not the parent's configuration.
    for k in ["state", "holder", "backend", "remove_requested", "remove"] {
        assert!(i["config"].get(k).is_none(), "{k} in config");
    }
    let o = run(&f, &["info", "-u", NEW]);
    let text = String::from_utf8_lossy(&o.stdout);
    for l in [
        "state: removing",
        "holder: pid 4243 (bash)",
        "backend: iommufd",
        "remove requested: 2",
        "mtu: 1500",
    ] {
        assert!(text.lines().any(|x| x == l), "{l:?} not in {text}");
    }
    assert_eq!(json(&f, &["config", "show", NEW, "-j"])["link"], "1");

    let s = json(&f, &["stats", NEW, "--json"]);
    assert_eq!(s["counters"]["tx_packets"], 7);
    assert_eq!(s["pairs"][0]["tx_packets"], 5);
    assert_eq!(s["pairs"][1]["tx_packets"], 2);
    assert_eq!(s["pairs"][1]["rx_packets"], 4);
    let o = run(&f, &["stats", NEW]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("pair 1: rx_packets 4, tx_packets 2"),
        "{text}"
    );
}

#[test]
fn exit_statuses_are_distinct_and_errors_say_what_to_do() {
    let f = fixture();
    let missing = "00000000-0000-4000-8000-000000000000";
    let o = run(&f, &["info", missing]);
    assert_eq!(code(&o), 3, "{o:?}");
    assert!(stderr(&o).contains("vhost-mdev list"), "{o:?}");
    let o = run(&f, &["info", "not-a-uuid"]);
    assert_eq!(code(&o), 2, "{o:?}");
    let o = run(&f, &["create", "-p", "nope", "-t", TYPE]);
    assert_eq!(code(&o), 3, "{o:?}");
    // Not a vhost-mdev type.
    let o = run(&f, &["create", "-p", "mtty", "-t", "mtty-1"]);
    assert_eq!(code(&o), 2, "{o:?}");
    assert!(stderr(&o).contains("not vfio-vhost"), "{o:?}");
    // Held: remove refuses, naming the holder and the ways out.
    let o = run(&f, &["remove", NEW]);
    assert_eq!(code(&o), 4, "{o:?}");
    let e = stderr(&o);
    assert!(
        e.contains("pid 4243 (bash)") && e.contains("--wait") && e.contains("--force"),
        "{e}"
    );
    // --force ends only a process that has the device's nodes open: the
    // fixture's pid 4243 has not (and no other has), so nothing is
    // signalled (pids are the host's: a test must never reach kill()).
    let o = run(&f, &["remove", NEW, "--force", "--timeout", "1"]);
    assert_eq!(code(&o), 4, "{o:?}");
    assert!(
        stderr(&o).contains("no process has its VFIO nodes open"),
        "{o:?}"
    );
    // Open: config set refuses.
    let o = run(&f, &["config", "set", NEW, "--mtu", "1400"]);
    assert_eq!(code(&o), 4, "{o:?}");
    assert!(stderr(&o).contains("closed"), "{o:?}");
    let o = run(&f, &["config", "set", NEW]);
    assert_eq!(code(&o), 2, "{o:?}");

    let root = scratch("codes");
    let avail = root.join(format!(
        "sys/devices/virtual/vhost_mdev_net_sample/mvnet/mdev_supported_types/{TYPE}/available_instances"
    ));
    fs::write(&avail, "0\n").unwrap();
    let o = run(&root, &["create", "-p", "mvnet", "-t", TYPE]);
    assert_eq!(code(&o), 6, "{o:?}");
    assert!(stderr(&o).contains("no available instances"), "{o:?}");
    fs::remove_dir_all(root).unwrap();
}

#[test]
fn create_config_set_and_link_write_the_attributes() {
    let root = scratch("config");
    let d = inst_dir(&root, NEW);
    let read = |f: &str| fs::read_to_string(d.join(f)).unwrap();
    // `create` with a UUID the fixture already has (the kernel would make
    // the directory): it writes the type's `create`, then the attributes.
    let o = run(
        &root,
        &[
            "create",
            "-p",
            "mvnet",
            "-t",
            "net",
            "-u",
            NEW,
            "--mac",
            "52:54:00:00:00:09",
            "--mtu",
            "9000",
            "--queue-pairs",
            "4",
            "-j",
        ],
    );
    assert!(o.status.success(), "{o:?}");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["uuid"], NEW);
    assert_eq!(read("mac"), "52:54:00:00:00:09");
    assert_eq!(read("mtu"), "9000");
    assert_eq!(read("queue_pairs"), "4");
    // An attribute the parent does not offer: not found, nothing written.
    fs::remove_file(d.join("queue_pairs")).unwrap();
    let o = run(
        &root,
        &[
            "create",
            "-p",
            "mvnet",
            "-t",
            "net",
            "-u",
            NEW,
            "--mtu",
            "1280",
            "--queue-pairs",
            "2",
        ],
    );
    assert_eq!(code(&o), 3, "{o:?}");
    assert!(stderr(&o).contains("no queue_pairs attribute"), "{o:?}");
    assert_eq!(read("mtu"), "9000");
    // config set on a closed instance.
    fs::write(d.join("state"), "closed\n").unwrap();
    let o = run(&root, &["config", "set", "-u", NEW, "--mtu", "1400"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(read("mtu"), "1400");
    let o = run(&root, &["link", NEW, "down"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(read("link"), "down");
    // Not held any more: remove writes `remove`.
    fs::write(d.join("holder"), "\n").unwrap();
    fs::write(d.join("remove_requested"), "0\n").unwrap();
    let o = run(&root, &["remove", NEW]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(read("remove"), "1");
    fs::remove_dir_all(root).unwrap();
}

#[test]
fn install_assets_writes_man_pages_and_completions() {
    let dir = std::env::temp_dir().join(format!("vhost-mdev-assets-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let o = Command::new(env!("CARGO_BIN_EXE_vhost-mdev"))
        .arg("install-assets")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let page = fs::read_to_string(dir.join("man/man1/vhost-mdev.1")).unwrap();
    assert!(page.starts_with(".ie") || page.contains(".TH"), "{page}");
    assert!(dir.join("man/man1/vhost-mdev-info.1").is_file());
    assert!(dir.join("bash-completion/completions/vhost-mdev").is_file());
    assert!(dir.join("zsh/site-functions/_vhost-mdev").is_file());
    assert!(dir
        .join("fish/vendor_completions.d/vhost-mdev.fish")
        .is_file());
    fs::remove_dir_all(dir).unwrap();
}

/// A writable fixture with the instances' VFIO nodes (plain files, 0600)
/// and what `udev-import` looks at: the group devices (class vfio, no
/// parent) and the IOMMU groups' device links, the cdevs' subsystem links;
/// group 9 holds a PCI device, not an instance.
fn with_nodes(name: &str) -> PathBuf {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let root = scratch(name);
    for n in [
        "dev/vfio/7",
        "dev/vfio/8",
        "dev/vfio/9",
        "dev/vfio/devices/vfio0",
        "dev/vfio/devices/vfio1",
    ] {
        let p = root.join(n);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, "").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mvnet = "devices/virtual/vhost_mdev_net_sample/mvnet";
    for (g, dev) in [
        (7, format!("{mvnet}/{OLD}")),
        (8, format!("{mvnet}/{NEW}")),
        (9, "devices/pci0000:00/0000:00:01.0".into()),
    ] {
        let d = root.join(format!("sys/devices/virtual/vfio/{g}"));
        fs::create_dir_all(&d).unwrap();
        symlink("../../../../class/vfio", d.join("subsystem")).unwrap();
        let l = root.join(format!("sys/kernel/iommu_groups/{g}/devices"));
        fs::create_dir_all(&l).unwrap();
        let (_, last) = dev.rsplit_once('/').unwrap();
        symlink(format!("../../../../{dev}"), l.join(last)).unwrap();
    }
    for (u, c) in [(OLD, "vfio0"), (NEW, "vfio1")] {
        fs::create_dir_all(inst_dir(&root, u).join("vfio-dev").join(c)).unwrap();
        symlink(
            "../../../../../../../class/vfio-dev",
            inst_dir(&root, u)
                .join("vfio-dev")
                .join(c)
                .join("subsystem"),
        )
        .unwrap();
    }
    root
}

/// uid, gid and mode of a file.
fn owner_of(p: &Path) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(p).unwrap();
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

#[test]
fn own_gives_exactly_the_instances_nodes_and_records_it() {
    let root = with_nodes("own");
    // Root can give the nodes to anyone; another user only to itself.
    // SAFETY: getuid() and getgid() cannot fail.
    let (me, my_group) = unsafe { (libc::getuid(), libc::getgid()) };
    let (uid, gid) = if me == 0 {
        (4711, 4712)
    } else {
        (me, my_group)
    };
    let before = |n: &str| owner_of(&root.join(n));
    let (g7, c0) = (before("dev/vfio/7"), before("dev/vfio/devices/vfio0"));
    let spec = format!("{uid}:{gid}");
    let o = run(&root, &["own", NEW, &spec]);
    assert!(o.status.success(), "{o:?}");
    for n in ["dev/vfio/8", "dev/vfio/devices/vfio1"] {
        assert_eq!(owner_of(&root.join(n)), (uid, gid, 0o660), "{n}");
    }
    // The other instance's nodes, and the PCI device's group, unchanged.
    assert_eq!(before("dev/vfio/7"), g7);
    assert_eq!(before("dev/vfio/devices/vfio0"), c0);
    assert_eq!(before("dev/vfio/9").2, 0o600);
    let rec = root.join(format!("etc/vhost-mdev/owners/{NEW}"));
    assert_eq!(fs::read_to_string(&rec).unwrap(), format!("{spec}\n"));
    let v = json(&root, &["own", "-u", NEW, "-j"]);
    assert_eq!(
        v["nodes"][0]["path"],
        root.join("dev/vfio/8").display().to_string()
    );
    assert_eq!(v["nodes"][1]["uid"], uid);
    assert_eq!(v["nodes"][1]["mode"], "0660");
    assert_eq!(v["recorded"]["uid"], uid);
    assert_eq!(v["recorded"]["gid"], gid);
    let o = run(&root, &["own", OLD]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("recorded owner: none"),
        "{o:?}"
    );

    // Errors change nothing: unknown user or group (usage, 2), no such
    // instance (3), a non-vhost-mdev instance's nodes are not given.
    let missing = "00000000-0000-4000-8000-000000000000";
    for (args, want) in [
        (vec!["own", OLD, "no-such-user-vhost-mdev"], 2),
        (vec!["own", OLD, "root:no-such-group-vhost-mdev"], 2),
        (vec!["own", OLD, ":0"], 2),
        (vec!["own", OLD, "0:"], 2),
        (vec!["own", OLD, "4294967295"], 2),
        (vec!["own", OLD, "0", "--reset"], 2),
        (vec!["own", missing, "0"], 3),
    ] {
        let o = run(&root, &args);
        assert_eq!(code(&o), want, "{args:?}: {o:?}");
    }
    assert!(
        stderr(&run(&root, &["own", OLD, "no-such-user-vhost-mdev"])).contains("getent passwd")
    );
    assert_eq!(before("dev/vfio/7"), g7);
    assert!(!root.join(format!("etc/vhost-mdev/owners/{OLD}")).exists());

    // What the udev rule imports: the instance and its recorded owner,
    // for the group node and for the cdev; nothing for other devices.
    let import = |p: &str| {
        let o = run(&root, &["udev-import", p]);
        assert!(o.status.success(), "{p}: {o:?}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let want =
        format!("VHOST_MDEV_UUID={NEW}\nVHOST_MDEV_OWNER_UID={uid}\nVHOST_MDEV_OWNER_GID={gid}\n");
    assert_eq!(import("/devices/virtual/vfio/8"), want);
    assert_eq!(
        import(&format!(
            "/devices/virtual/vhost_mdev_net_sample/mvnet/{NEW}/vfio-dev/vfio1"
        )),
        want
    );
    assert_eq!(
        import("/devices/virtual/vfio/7"),
        format!("VHOST_MDEV_UUID={OLD}\n")
    );
    assert_eq!(import("/devices/virtual/vfio/9"), "");
    assert_eq!(import("/devices/virtual/vfio/10"), "");
    assert_eq!(import("/devices/virtual/mtty/mtty"), "");

    // --reset: root's again, and forgotten (root only: another user
    // cannot give a file to root).
    if me == 0 {
        let o = run(&root, &["own", NEW, "--reset"]);
        assert!(o.status.success(), "{o:?}");
        assert_eq!(before("dev/vfio/8"), (0, 0, 0o600));
        assert_eq!(before("dev/vfio/devices/vfio1"), (0, 0, 0o600));
        assert!(!rec.exists());
        assert_eq!(
            import("/devices/virtual/vfio/8"),
            format!("VHOST_MDEV_UUID={NEW}\n")
        );
    }
    fs::remove_dir_all(root).unwrap();
}

#[test]
fn create_owner_and_remove() {
    let root = with_nodes("create-owner");
    // SAFETY: getuid() cannot fail.
    let me = unsafe { libc::getuid() };
    let uid = if me == 0 { 4711 } else { me };
    let create = root.join(format!(
        "sys/devices/virtual/vhost_mdev_net_sample/mvnet/mdev_supported_types/{TYPE}/create"
    ));
    // An unknown user: usage error before anything is created.
    let o = run(
        &root,
        &[
            "create",
            "-p",
            "mvnet",
            "-t",
            TYPE,
            "-u",
            NEW,
            "--owner",
            "no-such-user-vhost-mdev",
        ],
    );
    assert_eq!(code(&o), 2, "{o:?}");
    assert_eq!(fs::read_to_string(&create).unwrap(), "");
    // A user alone: the nodes are its, mode 0600, group root.
    let u = uid.to_string();
    let o = run(
        &root,
        &[
            "create", "-p", "mvnet", "-t", TYPE, "-u", NEW, "--owner", &u,
        ],
    );
    assert!(o.status.success(), "{o:?}");
    assert_eq!(fs::read_to_string(&create).unwrap(), NEW);
    assert_eq!(owner_of(&root.join("dev/vfio/8")).0, uid);
    assert_eq!(owner_of(&root.join("dev/vfio/8")).2, 0o600);
    assert_eq!(owner_of(&root.join("dev/vfio/devices/vfio1")).0, uid);
    let rec = root.join(format!("etc/vhost-mdev/owners/{NEW}"));
    assert_eq!(fs::read_to_string(&rec).unwrap(), format!("{uid}\n"));
    // remove forgets the owner.
    let d = inst_dir(&root, NEW);
    fs::write(d.join("state"), "closed\n").unwrap();
    fs::write(d.join("holder"), "\n").unwrap();
    fs::write(d.join("remove_requested"), "0\n").unwrap();
    let o = run(&root, &["remove", NEW]);
    assert!(o.status.success(), "{o:?}");
    assert!(!rec.exists());
    fs::remove_dir_all(root).unwrap();
}

#[test]
fn link_takes_the_uuid_as_u_too() {
    let root = scratch("link");
    let d = inst_dir(&root, NEW);
    for (args, want) in [
        (vec!["link", "-u", NEW, "down"], "down"),
        (vec!["link", "--uuid", NEW, "up"], "up"),
        (vec!["link", NEW, "down"], "down"),
    ] {
        let o = run(&root, &args);
        assert!(o.status.success(), "{args:?}: {o:?}");
        assert_eq!(fs::read_to_string(d.join("link")).unwrap(), want);
    }
    let o = run(&root, &["link", "-u", NEW]);
    assert_eq!(code(&o), 2, "{o:?}");
    let o = run(&root, &["link", "-u", NEW, NEW, "up"]);
    assert_eq!(code(&o), 2, "{o:?}");
    fs::remove_dir_all(root).unwrap();
}
