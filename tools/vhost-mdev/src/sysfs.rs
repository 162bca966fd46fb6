// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Discovery of mdev parents, types and instances in sysfs, and instance
//! creation and removal.
//!
//! All paths are taken relative to a configurable root (normally `/`), so
//! the unit tests run on a fixture tree.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::uapi::VHOST_VFIO_DEVICE_API;

/// An mdev parent device: a device with `mdev_supported_types/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Parent {
    /// The device name (`dev_name()`), e.g. `mvnet`.
    pub name: String,
    /// The device directory in sysfs (symlinks resolved).
    pub path: PathBuf,
    /// The name of the driver bound to the parent, if any.
    pub driver: Option<String>,
    /// The supported types.
    pub types: Vec<MdevType>,
}

/// An mdev type of a parent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MdevType {
    /// The type id (directory name), `<parent driver>-<sysfs name>`.
    pub id: String,
    /// The parent device name.
    pub parent: String,
    /// The type directory.
    pub path: PathBuf,
    /// Contents of `name`, if present.
    pub name: Option<String>,
    /// Contents of `description`, if present.
    pub description: Option<String>,
    /// Contents of `device_api`.
    pub device_api: String,
    /// Contents of `available_instances`.
    pub available_instances: u32,
}

impl MdevType {
    /// Whether this is a vhost-mdev type (`device_api` is `vfio-vhost`).
    pub fn is_vhost(&self) -> bool {
        self.device_api == VHOST_VFIO_DEVICE_API
    }
}

/// An mdev instance under `/sys/bus/mdev/devices/UUID`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    /// The instance UUID.
    pub uuid: Uuid,
    /// The instance directory (symlinks resolved).
    pub path: PathBuf,
    /// The parent device name.
    pub parent: Option<String>,
    /// The type id (the target of the `mdev_type` link).
    pub type_id: Option<String>,
    /// The IOMMU group number (the target of the `iommu_group` link).
    pub iommu_group: Option<u32>,
    /// The VFIO cdev name under `/dev/vfio/devices/` (e.g. `vfio0`).
    pub vfio_cdev: Option<String>,
    /// The bound driver (`vfio-vhost` once the core claimed it).
    pub driver: Option<String>,
    /// What the core says of the instance (its attributes `state`,
    /// `holder`, `backend`, `remove_requested`); `None` without them (no
    /// driver, or a core older than these attributes).
    pub status: Option<CoreStatus>,
}

/// The core's attributes of an instance (see `vhost_mdev/status.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoreStatus {
    /// `closed`, `open`, or `removing` (open, and a removal waits for its
    /// user to close it).
    pub state: String,
    /// The process that opened the device, while open.
    pub holder: Option<u32>,
    /// `type1` or `iommufd` while open.
    pub backend: Option<String>,
    /// How many times a pending removal signalled the request IRQ (0: no
    /// removal waits).
    pub remove_requested: u32,
}

impl CoreStatus {
    /// Whether the device is open.
    pub fn is_open(&self) -> bool {
        self.state != "closed"
    }
}

/// The files of an instance directory that are not its parent's
/// configuration: the driver core's, mdev's and the vhost-mdev core's.
pub const STANDARD_ATTRS: [&str; 6] = [
    "uevent",
    "remove",
    "state",
    "holder",
    "backend",
    "remove_requested",
];

/// A process that holds a device open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holder {
    /// The process id.
    pub pid: u32,
    /// The process name (`/proc/PID/comm`; empty if it cannot be read).
    pub comm: String,
    /// The device node it holds, when found by scanning `/proc/*/fd`
    /// (`None` when the core's `holder` attribute named the process).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} ({})", self.pid, self.comm)?;
        if let Some(n) = &self.node {
            write!(f, " through {n}")?;
        }
        Ok(())
    }
}

/// sysfs, /proc and /dev below a root directory.
#[derive(Debug, Clone)]
pub struct Sysfs {
    root: PathBuf,
}

impl Default for Sysfs {
    fn default() -> Self {
        Self::system()
    }
}

fn read_attr(path: &Path) -> Result<String> {
    fs::read_to_string(path)
        .map(|s| s.trim_end().to_string())
        .map_err(|source| Error::Sysfs {
            path: path.to_path_buf(),
            source,
        })
}

fn read_opt(path: &Path) -> Option<String> {
    fs::read_to_string(path)
        .ok()
        .map(|s| s.trim_end().to_string())
}

fn link_basename(path: &Path) -> Option<String> {
    fs::read_link(path)
        .ok()?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

fn read_dir_sorted(path: &Path) -> Result<Vec<fs::DirEntry>> {
    let rd = match fs::read_dir(path) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Sysfs {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut v: Vec<_> = rd.filter_map(|e| e.ok()).collect();
    v.sort_by_key(|e| e.file_name());
    Ok(v)
}

impl Sysfs {
    /// sysfs of the running system.
    pub fn system() -> Self {
        Sysfs { root: "/".into() }
    }

    /// sysfs, /proc and /dev under `root` (for tests).
    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        Sysfs { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// The directory of instance `uuid` (`/sys/bus/mdev/devices/UUID`).
    pub fn instance_dir(&self, uuid: &Uuid) -> PathBuf {
        self.path("sys/bus/mdev/devices").join(uuid.to_string())
    }

    /// All mdev parents, found through `/sys/class/mdev_bus` or, if that is
    /// absent, by looking for `mdev_supported_types/` under `/sys/devices`.
    pub fn parents(&self) -> Result<Vec<Parent>> {
        let mut dirs = Vec::new();
        let class = self.path("sys/class/mdev_bus");
        if class.is_dir() {
            for e in read_dir_sorted(&class)? {
                dirs.push(e.path());
            }
        } else {
            find_parent_dirs(&self.path("sys/devices"), 0, &mut dirs);
        }
        let mut parents = Vec::new();
        for dir in dirs {
            let path = fs::canonicalize(&dir).unwrap_or(dir);
            if !path.join("mdev_supported_types").is_dir() {
                continue;
            }
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let types = self.parent_types(&name, &path)?;
            parents.push(Parent {
                driver: link_basename(&path.join("driver")),
                name,
                path,
                types,
            });
        }
        parents.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(parents)
    }

    fn parent_types(&self, parent: &str, path: &Path) -> Result<Vec<MdevType>> {
        let mut types = Vec::new();
        for e in read_dir_sorted(&path.join("mdev_supported_types"))? {
            let tpath = e.path();
            let avail = read_attr(&tpath.join("available_instances"))?;
            types.push(MdevType {
                id: e.file_name().to_string_lossy().into_owned(),
                parent: parent.to_string(),
                name: read_opt(&tpath.join("name")),
                description: read_opt(&tpath.join("description")),
                device_api: read_attr(&tpath.join("device_api"))?,
                available_instances: avail.trim().parse().map_err(|_| {
                    Error::Protocol(format!(
                        "{}: not a number: {avail:?}",
                        tpath.join("available_instances").display()
                    ))
                })?,
                path: tpath,
            });
        }
        Ok(types)
    }

    /// All types of all parents.
    pub fn types(&self) -> Result<Vec<MdevType>> {
        Ok(self.parents()?.into_iter().flat_map(|p| p.types).collect())
    }

    /// The types whose `device_api` is `vfio-vhost`; an error that says
    /// what to load if there is none.
    pub fn vhost_types(&self) -> Result<Vec<MdevType>> {
        let v: Vec<_> = self.types()?.into_iter().filter(|t| t.is_vhost()).collect();
        if v.is_empty() {
            return Err(Error::NotFound(format!(
                "no mdev parent of type {VHOST_VFIO_DEVICE_API} found: load vhost_mdev and a \
                 parent driver, e.g. `modprobe vhost_mdev_net`"
            )));
        }
        Ok(v)
    }

    /// The type `type_id` of parent `parent`.
    pub fn find_type(&self, parent: &str, type_id: &str) -> Result<MdevType> {
        let parents = self.parents()?;
        let p = parents.iter().find(|p| p.name == parent).ok_or_else(|| {
            Error::NotFound(format!(
                "no mdev parent {parent:?} (parents: {})",
                names(parents.iter().map(|p| p.name.as_str()))
            ))
        })?;
        p.types
            .iter()
            .find(|t| t.id == type_id || t.name.as_deref() == Some(type_id))
            .cloned()
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "parent {parent} has no type {type_id:?} (types: {})",
                    names(p.types.iter().map(|t| t.id.as_str()))
                ))
            })
    }

    /// All instances: those under `/sys/bus/mdev/devices`, and those being
    /// removed (see [`Sysfs::instance`]).
    pub fn instances(&self) -> Result<Vec<Instance>> {
        let mut uuids = Vec::new();
        for e in read_dir_sorted(&self.path("sys/bus/mdev/devices"))? {
            if let Ok(uuid) = Uuid::parse_str(&e.file_name().to_string_lossy()) {
                uuids.push(uuid);
            }
        }
        for p in self.parents()? {
            for e in read_dir_sorted(&p.path)? {
                if let Ok(uuid) = Uuid::parse_str(&e.file_name().to_string_lossy()) {
                    if !uuids.contains(&uuid) {
                        uuids.push(uuid);
                    }
                }
            }
        }
        uuids.sort();
        let mut v = Vec::new();
        for uuid in uuids {
            match self.instance(&uuid) {
                Ok(i) => v.push(i),
                // Gone while we looked.
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(v)
    }

    /// The directory of instance `uuid`: its link under
    /// `/sys/bus/mdev/devices`, or, while a removal waits for the device
    /// to be closed (the kernel has taken that link and `mdev_type` away
    /// by then), the device directory under its parent.
    fn find_instance_dir(&self, uuid: &Uuid) -> Option<PathBuf> {
        let link = self.instance_dir(uuid);
        if link.exists() {
            return Some(link);
        }
        let name = uuid.to_string();
        self.parents()
            .ok()?
            .into_iter()
            .map(|p| p.path.join(&name))
            .find(|d| d.is_dir())
    }

    /// Instance `uuid`.
    pub fn instance(&self, uuid: &Uuid) -> Result<Instance> {
        let Some(link) = self.find_instance_dir(uuid) else {
            return Err(Error::NotFound(format!(
                "no mdev instance {uuid} (see `vhost-mdev list`)"
            )));
        };
        let path = fs::canonicalize(&link).unwrap_or(link);
        let parent = path
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned());
        let vfio_cdev = read_dir_sorted(&path.join("vfio-dev"))?
            .into_iter()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with("vfio"));
        let status = read_opt(&path.join("state")).map(|state| CoreStatus {
            state,
            holder: read_opt(&path.join("holder")).and_then(|h| h.parse().ok()),
            backend: read_opt(&path.join("backend")).filter(|b| !b.is_empty()),
            remove_requested: read_opt(&path.join("remove_requested"))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
        });
        Ok(Instance {
            uuid: *uuid,
            status,
            parent,
            type_id: link_basename(&path.join("mdev_type")),
            iommu_group: link_basename(&path.join("iommu_group")).and_then(|g| g.parse().ok()),
            driver: link_basename(&path.join("driver")),
            vfio_cdev,
            path,
        })
    }

    /// Creates an instance of `ty` (a v4 UUID unless `uuid` is given).
    pub fn create(&self, ty: &MdevType, uuid: Option<Uuid>) -> Result<Uuid> {
        let uuid = uuid.unwrap_or_else(Uuid::new_v4);
        let path = ty.path.join("create");
        fs::write(&path, uuid.to_string()).map_err(|source| Error::Sysfs { path, source })?;
        Ok(uuid)
    }

    /// Removes instance `uuid` (blocks until the kernel completes it: check
    /// [`Sysfs::holders`] first to avoid waiting on an open device).
    pub fn remove(&self, uuid: &Uuid) -> Result<()> {
        let path = self.instance_dir(uuid).join("remove");
        if !self.instance_dir(uuid).exists() {
            return Err(Error::NotFound(format!("no mdev instance {uuid}")));
        }
        fs::write(&path, "1").map_err(|source| Error::Sysfs { path, source })
    }

    /// The VFIO group node of an instance, `/dev/vfio/N`.
    pub fn group_node(&self, inst: &Instance) -> Option<PathBuf> {
        inst.iommu_group
            .map(|g| self.path("dev/vfio").join(g.to_string()))
    }

    /// The VFIO cdev node of an instance, `/dev/vfio/devices/vfioX`.
    pub fn cdev_node(&self, inst: &Instance) -> Option<PathBuf> {
        inst.vfio_cdev
            .as_ref()
            .map(|c| self.path("dev/vfio/devices").join(c))
    }

    /// The process that holds the instance open: the one the core's
    /// `holder` attribute names, or, with a core without it, those found by
    /// scanning `/proc/*/fd` for the group node and cdev (which misses the
    /// processes of other users when run unprivileged).
    pub fn holders(&self, inst: &Instance) -> Result<Vec<Holder>> {
        if let Some(st) = &inst.status {
            return Ok(st
                .holder
                .filter(|_| st.is_open())
                .map(|pid| Holder {
                    pid,
                    comm: read_opt(&self.path("proc").join(pid.to_string()).join("comm"))
                        .unwrap_or_default(),
                    node: None,
                })
                .into_iter()
                .collect());
        }
        self.scan_holders(inst)
    }

    /// The device nodes of an instance, as `/proc/PID/fd` links show them:
    /// its group node and its cdev.
    fn nodes(inst: &Instance) -> Vec<String> {
        let mut nodes = Vec::new();
        if let Some(g) = inst.iommu_group {
            nodes.push(format!("/dev/vfio/{g}"));
        }
        if let Some(c) = &inst.vfio_cdev {
            nodes.push(format!("/dev/vfio/devices/{c}"));
        }
        nodes
    }

    /// The processes that have the instance's group node or cdev open,
    /// found by scanning `/proc/*/fd` (slow with many processes; misses
    /// the processes of other users when run unprivileged).
    pub fn scan_holders(&self, inst: &Instance) -> Result<Vec<Holder>> {
        self.node_holders(&Self::nodes(inst))
    }

    /// Whether process `pid` has the instance's group node or cdev open
    /// (what the core's `holder` names is the opener, which may have
    /// passed the device on, or be in another PID namespace).
    pub fn holds(&self, inst: &Instance, pid: u32) -> bool {
        let nodes = Self::nodes(inst);
        let Ok(fds) = fs::read_dir(self.path("proc").join(pid.to_string()).join("fd")) else {
            return false;
        };
        fds.filter_map(|f| f.ok()).any(|fd| {
            fs::read_link(fd.path())
                .map(|t| nodes.iter().any(|n| *n == t.to_string_lossy()))
                .unwrap_or(false)
        })
    }

    /// Instance `uuid` again, with its status as of now.
    pub fn refresh(&self, inst: &Instance) -> Result<Instance> {
        self.instance(&inst.uuid)
    }

    /// The parent's configuration attributes of an instance: the readable
    /// files of its directory but the [`STANDARD_ATTRS`] (e.g. the net
    /// sample's `mac`, `mtu`, `link`, `queue_pairs`), as (name, text).
    pub fn config(&self, inst: &Instance) -> Result<BTreeMap<String, String>> {
        let mut m = BTreeMap::new();
        for e in read_dir_sorted(&inst.path)? {
            let name = e.file_name().to_string_lossy().into_owned();
            if STANDARD_ATTRS.contains(&name.as_str()) {
                continue;
            }
            // Not following links (driver, mdev_type, ...); write-only
            // files do not read.
            if !e.file_type().map(|t| t.is_file()).unwrap_or(false) {
                continue;
            }
            if let Some(v) = read_opt(&e.path()) {
                m.insert(name, v);
            }
        }
        Ok(m)
    }

    /// Whether the parent offers attribute `name` on the instance.
    pub fn has_attr(&self, inst: &Instance, name: &str) -> bool {
        inst.path.join(name).is_file()
    }

    /// Writes the parent's attribute `name` of an instance; the errno
    /// becomes an error that says what to do.
    pub fn set_attr(&self, inst: &Instance, name: &str, value: &str) -> Result<()> {
        let path = inst.path.join(name);
        if !path.is_file() {
            return Err(Error::NotOffered(format!(
                "cannot set {name}: the parent {} of instance {} has no {name} attribute; \
                 `vhost-mdev info {}` lists what it offers)",
                inst.parent.as_deref().unwrap_or("?"),
                inst.uuid,
                inst.uuid
            )));
        }
        fs::write(&path, value).map_err(|source| match source.raw_os_error() {
            Some(libc::EBUSY) => Error::InUse(format!(
                "{name} of instance {} cannot change while the device is open: stop its \
                 user first (`vhost-mdev info {}` names it)",
                inst.uuid, inst.uuid
            )),
            Some(libc::EINVAL) => Error::InvalidArgument(format!(
                "{name} {value:?}: the parent refused the value (out of range or malformed)"
            )),
            _ => Error::Sysfs { path, source },
        })
    }

    /// Processes that hold one of `nodes` (paths as `/proc/PID/fd` links
    /// show them, e.g. `/dev/vhost-vdpa-0`) open: one entry per process.
    pub fn node_holders(&self, nodes: &[String]) -> Result<Vec<Holder>> {
        let mut holders = Vec::new();
        for e in read_dir_sorted(&self.path("proc"))? {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            // Processes may exit or deny access while we look: skip them.
            let Ok(fds) = fs::read_dir(e.path().join("fd")) else {
                continue;
            };
            for fd in fds.filter_map(|f| f.ok()) {
                let Ok(target) = fs::read_link(fd.path()) else {
                    continue;
                };
                let target = target.to_string_lossy();
                if let Some(node) = nodes.iter().find(|n| **n == target) {
                    holders.push(Holder {
                        pid,
                        comm: read_opt(&e.path().join("comm")).unwrap_or_default(),
                        node: Some(node.clone()),
                    });
                    break;
                }
            }
        }
        Ok(holders)
    }

    /// The counters under `<instance>/stats/`, as (file name, contents).
    pub fn stats(&self, inst: &Instance) -> Result<Vec<(String, String)>> {
        let mut v = Vec::new();
        for e in read_dir_sorted(&inst.path.join("stats"))? {
            if e.path().is_file() {
                v.push((
                    e.file_name().to_string_lossy().into_owned(),
                    read_attr(&e.path())?,
                ));
            }
        }
        Ok(v)
    }
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<_> = it.collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn find_parent_dirs(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if depth > 8 {
        return;
    }
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.filter_map(|e| e.ok()) {
        // Do not follow symlinks: sysfs is full of cycles.
        let Ok(ft) = e.file_type() else { continue };
        if !ft.is_dir() {
            continue;
        }
        if e.file_name() == "mdev_supported_types" {
            out.push(dir.to_path_buf());
        } else {
            find_parent_dirs(&e.path(), depth + 1, out);
        }
    }
}
