// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Who owns an instance's VFIO nodes: `vhost-mdev own`, `create --owner`,
//! the owners recorded for the udev rule, and `udev-import`, which the rule
//! runs.
//!
//! An instance has two device nodes: its VFIO group node `/dev/vfio/N`
//! (type1 containers, iommufd's VFIO compat) and its vfio cdev
//! `/dev/vfio/devices/vfioX` (iommufd). devtmpfs creates both root-owned
//! (0600) whenever the instance is created; the owner recorded for the
//! instance's UUID (one file per instance under [`records_dir`]) is what
//! the udev rule gives them again.

use std::ffi::{CStr, CString};
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use uuid::Uuid;

use vhost_mdev::sysfs::Instance;
use vhost_mdev::uapi::VHOST_VFIO_DEVICE_API;
use vhost_mdev::{Error, Result, Sysfs};

/// Where the owners are recorded unless `VHOST_MDEV_OWNERS` says
/// otherwise (below the test root, see [`records_dir`]).
pub const RECORDS: &str = "etc/vhost-mdev/owners";

/// An owner for the nodes: a user, and a group that gets access too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Owner {
    /// The owning user.
    pub uid: u32,
    /// The group that gets access as well (mode 0660), if any; without it
    /// the nodes stay in group root with mode 0600.
    pub gid: Option<u32>,
}

impl Owner {
    /// root:root, 0600: what devtmpfs gives the nodes.
    pub const ROOT: Owner = Owner {
        uid: 0,
        gid: Some(0),
    };

    /// The mode the nodes get.
    pub fn mode(&self) -> u32 {
        if self.gid.is_some_and(|g| g != 0) {
            0o660
        } else {
            0o600
        }
    }

    /// `UID` or `UID:GID`, as recorded.
    pub fn record(&self) -> String {
        match self.gid {
            Some(g) => format!("{}:{g}", self.uid),
            None => self.uid.to_string(),
        }
    }

    /// Parses a record (`UID` or `UID:GID`).
    pub fn from_record(s: &str) -> Option<Owner> {
        let s = s.trim();
        let (u, g) = match s.split_once(':') {
            Some((u, g)) => (u, Some(g.parse().ok()?)),
            None => (s, None),
        };
        Some(Owner {
            uid: u.parse().ok()?,
            gid: g,
        })
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", name_of(self.uid, false))?;
        if let Some(g) = self.gid {
            write!(f, ":{}", name_of(g, true))?;
        }
        Ok(())
    }
}

/// `name (id)`, or the id alone when it has no name.
fn name_of(id: u32, group: bool) -> String {
    match lookup_id(id, group) {
        Some(n) => format!("{n} ({id})"),
        None => id.to_string(),
    }
}

/// Runs a `get*_r` call with a buffer that grows on ERANGE; `call` returns
/// the function's result and whether it found an entry.
fn with_buffer(mut call: impl FnMut(&mut [u8]) -> (i32, bool)) -> std::result::Result<bool, i32> {
    let mut buf = vec![0u8; 1024];
    loop {
        match call(&mut buf) {
            (0, found) => return Ok(found),
            (libc::ERANGE, _) if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            (e, _) => return Err(e),
        }
    }
}

/// The id of user (or group) `name`, from the system's databases (NSS).
fn lookup_name(name: &str, group: bool) -> Result<Option<u32>> {
    let what = if group { "group" } else { "user" };
    let c = CString::new(name)
        .map_err(|_| Error::InvalidArgument(format!("{what} name {name:?} contains a NUL byte")))?;
    let mut id = 0u32;
    let r = with_buffer(|buf| {
        if group {
            // SAFETY: an all-zero `struct group` is valid (null pointers).
            let mut gr: libc::group = unsafe { std::mem::zeroed() };
            let mut out = std::ptr::null_mut();
            // SAFETY: every pointer is valid for the call; `buf` is its
            // length; the result points into `gr` and `buf` only.
            let r = unsafe {
                libc::getgrnam_r(
                    c.as_ptr(),
                    &mut gr,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    &mut out,
                )
            };
            id = gr.gr_gid;
            (r, !out.is_null())
        } else {
            // SAFETY: an all-zero `struct passwd` is valid (null pointers).
            let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
            let mut out = std::ptr::null_mut();
            // SAFETY: as above.
            let r = unsafe {
                libc::getpwnam_r(
                    c.as_ptr(),
                    &mut pw,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    &mut out,
                )
            };
            id = pw.pw_uid;
            (r, !out.is_null())
        }
    });
    match r {
        Ok(true) => Ok(Some(id)),
        // Not found is 0 with no entry, or one of these (getpwnam_r(3)).
        Ok(false) => Ok(None),
        Err(libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM) => Ok(None),
        Err(e) => Err(Error::Sys {
            op: format!("looking up {what} {name:?}"),
            errno: vhost_mdev::Errno(e),
        }),
    }
}

/// The name of user (or group) `id`, if it has one.
fn lookup_id(id: u32, group: bool) -> Option<String> {
    let mut name = None;
    let r = with_buffer(|buf| {
        if group {
            // SAFETY: an all-zero `struct group` is valid (null pointers).
            let mut gr: libc::group = unsafe { std::mem::zeroed() };
            let mut out = std::ptr::null_mut();
            // SAFETY: every pointer is valid for the call; `buf` is its
            // length.
            let r = unsafe {
                libc::getgrgid_r(id, &mut gr, buf.as_mut_ptr().cast(), buf.len(), &mut out)
            };
            if r == 0 && !out.is_null() && !gr.gr_name.is_null() {
                // SAFETY: getgrgid_r succeeded: gr_name is a C string in
                // `buf`.
                name = Some(
                    unsafe { CStr::from_ptr(gr.gr_name) }
                        .to_string_lossy()
                        .into_owned(),
                );
            }
            (r, !out.is_null())
        } else {
            // SAFETY: an all-zero `struct passwd` is valid (null pointers).
            let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
            let mut out = std::ptr::null_mut();
            // SAFETY: as above.
            let r = unsafe {
                libc::getpwuid_r(id, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut out)
            };
            if r == 0 && !out.is_null() && !pw.pw_name.is_null() {
                // SAFETY: getpwuid_r succeeded: pw_name is a C string in
                // `buf`.
                name = Some(
                    unsafe { CStr::from_ptr(pw.pw_name) }
                        .to_string_lossy()
                        .into_owned(),
                );
            }
            (r, !out.is_null())
        }
    });
    r.ok().and(name)
}

/// A user or group given by name or number.
fn resolve(s: &str, group: bool) -> Result<u32> {
    let what = if group { "group" } else { "user" };
    if s.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "--owner: no {what} given: USER or USER:GROUP (names or numbers)"
        )));
    }
    if let Ok(id) = s.parse::<u32>() {
        if id == u32::MAX {
            return Err(Error::InvalidArgument(format!(
                "{what} id {id} is not valid"
            )));
        }
        return Ok(id);
    }
    lookup_name(s, group)?.ok_or_else(|| {
        Error::InvalidArgument(format!(
            "no {what} {s:?} on this system (`getent {}` lists them; a number is taken as an id)",
            if group { "group" } else { "passwd" }
        ))
    })
}

/// Parses `USER[:GROUP]` (names or numbers).
pub fn parse_owner(s: &str) -> Result<Owner> {
    let (u, g) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    Ok(Owner {
        uid: resolve(u, false)?,
        gid: g.map(|g| resolve(g, true)).transpose()?,
    })
}

/// The directory of the recorded owners: `VHOST_MDEV_OWNERS`, or
/// /etc/vhost-mdev/owners below the root.
pub fn records_dir(sysfs: &Sysfs) -> PathBuf {
    match std::env::var_os("VHOST_MDEV_OWNERS") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => sysfs.root().join(RECORDS),
    }
}

/// The owner recorded for instance `uuid`.
pub fn recorded(sysfs: &Sysfs, uuid: &Uuid) -> Result<Option<Owner>> {
    let path = records_dir(sysfs).join(uuid.to_string());
    match fs::read_to_string(&path) {
        Ok(s) => Owner::from_record(&s).map(Some).ok_or_else(|| {
            Error::Protocol(format!(
                "{}: not UID or UID:GID: {s:?} (`vhost-mdev own {uuid} USER[:GROUP]` writes it \
                 again)",
                path.display()
            ))
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Sysfs { path, source }),
    }
}

/// Records `owner` for instance `uuid` (None: forgets it).
pub fn record(sysfs: &Sysfs, uuid: &Uuid, owner: Option<&Owner>) -> Result<()> {
    let dir = records_dir(sysfs);
    let path = dir.join(uuid.to_string());
    let Some(o) = owner else {
        return match fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(Error::Sysfs { path, source: e }),
            _ => Ok(()),
        };
    };
    fs::create_dir_all(&dir).map_err(|source| Error::Sysfs {
        path: dir.clone(),
        source,
    })?;
    // Whole or not at all: the udev rule may read it at any time.
    let tmp = dir.join(format!(".{uuid}.tmp"));
    fs::write(&tmp, format!("{}\n", o.record()))
        .and_then(|()| fs::rename(&tmp, &path))
        .map_err(|source| {
            let _ = fs::remove_file(&tmp);
            Error::Sysfs { path, source }
        })
}

/// Whether `inst` is a vhost-mdev instance bound to a driver: its type's
/// `device_api` is `vfio-vhost`.
fn is_vhost(inst: &Instance) -> bool {
    inst.driver.is_some()
        && fs::read_to_string(inst.path.join("mdev_type/device_api"))
            .is_ok_and(|a| a.trim_end() == VHOST_VFIO_DEVICE_API)
}

/// The VFIO nodes of a vhost-mdev instance: its group node, and its cdev
/// where the kernel has them (`CONFIG_VFIO_DEVICE_CDEV`).
pub fn nodes(sysfs: &Sysfs, inst: &Instance) -> Result<Vec<PathBuf>> {
    let u = inst.uuid;
    if !is_vhost(inst) {
        return Err(Error::InvalidArgument(format!(
            "{u} is not a vhost-mdev instance bound to the core (its type's device_api is not \
             {VHOST_VFIO_DEVICE_API}, or it has no driver): `vhost-mdev info {u}`"
        )));
    }
    let group = sysfs.group_node(inst).ok_or_else(|| {
        Error::NotFound(format!(
            "instance {u} has no IOMMU group: is vhost_mdev bound to it? (`vhost-mdev info {u}`)"
        ))
    })?;
    let mut v = vec![group];
    v.extend(sysfs.cdev_node(inst));
    // Device nodes only: a test root has plain files.
    let test = sysfs.root() != Path::new("/");
    for n in &v {
        match fs::metadata(n) {
            Ok(m) if m.file_type().is_char_device() || (test && m.is_file()) => {}
            Ok(_) => {
                return Err(Error::Protocol(format!(
                    "{} is not a character device: remove it, and re-create the instance",
                    n.display()
                )))
            }
            Err(e) => {
                return Err(Error::NotFound(format!(
                    "instance {u}: {}: {e} (is devtmpfs mounted on /dev?)",
                    n.display()
                )))
            }
        }
    }
    Ok(v)
}

/// Gives the instance's nodes to `owner`.
pub fn apply(sysfs: &Sysfs, inst: &Instance, owner: &Owner) -> Result<()> {
    for n in nodes(sysfs, inst)? {
        // The mode first: a node never becomes the new owner's with the
        // old, wider mode.
        fs::set_permissions(&n, fs::Permissions::from_mode(owner.mode()))
            .and_then(|()| {
                std::os::unix::fs::chown(&n, Some(owner.uid), Some(owner.gid.unwrap_or(0)))
            })
            .map_err(|e| Error::io(format!("chown/chmod {}", n.display()), &e))?;
    }
    Ok(())
}

/// A node as `own` shows it.
#[derive(Serialize)]
pub struct NodeView {
    path: String,
    uid: u32,
    user: Option<String>,
    gid: u32,
    group: Option<String>,
    mode: String,
}

/// What `own UUID` shows.
#[derive(Serialize)]
pub struct OwnView {
    uuid: Uuid,
    nodes: Vec<NodeView>,
    /// The recorded owner (`{"uid", "gid"}`), or null.
    recorded: Option<Owner>,
}

/// `own UUID`: the nodes' owners and the recorded one.
pub fn show(sysfs: &Sysfs, inst: &Instance, json: bool) -> Result<()> {
    let mut v = OwnView {
        uuid: inst.uuid,
        nodes: Vec::new(),
        recorded: recorded(sysfs, &inst.uuid)?,
    };
    for n in nodes(sysfs, inst)? {
        let m = fs::metadata(&n).map_err(|e| Error::io(format!("stat {}", n.display()), &e))?;
        v.nodes.push(NodeView {
            path: n.display().to_string(),
            uid: m.uid(),
            user: lookup_id(m.uid(), false),
            gid: m.gid(),
            group: lookup_id(m.gid(), true),
            mode: format!("{:04o}", m.mode() & 0o7777),
        });
    }
    if json {
        let s = serde_json::to_string_pretty(&v)
            .map_err(|e| Error::Protocol(format!("cannot encode the result as JSON: {e}")))?;
        println!("{s}");
        return Ok(());
    }
    for n in &v.nodes {
        println!(
            "{}: owner {}, group {}, mode {}",
            n.path,
            name_of(n.uid, false),
            name_of(n.gid, true),
            n.mode
        );
    }
    match &v.recorded {
        Some(o) => println!("recorded owner: {o} (the udev rule gives it the nodes again)"),
        None => println!("recorded owner: none"),
    }
    Ok(())
}

/// `udev-import DEVPATH`: for a vhost-mdev instance's group node or cdev,
/// prints `VHOST_MDEV_UUID=`, and the recorded owner as
/// `VHOST_MDEV_OWNER_UID=` and `VHOST_MDEV_OWNER_GID=`; nothing for any
/// other device.
pub fn udev_import(sysfs: &Sysfs, devpath: &Path) -> Result<()> {
    let rel = devpath.strip_prefix("/").unwrap_or(devpath);
    let dir = sysfs.root().join("sys").join(rel);
    let dir = fs::canonicalize(&dir).unwrap_or(dir);
    let subsystem = fs::read_link(dir.join("subsystem"))
        .ok()
        .and_then(|l| l.file_name().map(|n| n.to_string_lossy().into_owned()));
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let uuid = match subsystem.as_deref() {
        // <instance>/vfio-dev/vfioX: the parent is the instance.
        Some("vfio-dev") => dir
            .parent()
            .and_then(Path::parent)
            .and_then(Path::file_name)
            .and_then(|n| Uuid::parse_str(&n.to_string_lossy()).ok()),
        // The group node's device has no parent: the group's only device
        // must be an instance (an emulated IOMMU group has one).
        Some("vfio") if name.parse::<u32>().is_ok() => {
            let devs = sysfs
                .root()
                .join("sys/kernel/iommu_groups")
                .join(&name)
                .join("devices");
            let v: Vec<_> = fs::read_dir(&devs)
                .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
                .unwrap_or_default();
            match v.as_slice() {
                [one] => Uuid::parse_str(&one.to_string_lossy()).ok(),
                _ => None,
            }
        }
        _ => None,
    };
    let Some(uuid) = uuid else { return Ok(()) };
    let inst = match sysfs.instance(&uuid) {
        Ok(i) => i,
        Err(Error::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    if !is_vhost(&inst) {
        return Ok(());
    }
    println!("VHOST_MDEV_UUID={uuid}");
    if let Some(o) = recorded(sysfs, &uuid)? {
        println!("VHOST_MDEV_OWNER_UID={}", o.uid);
        if let Some(g) = o.gid {
            println!("VHOST_MDEV_OWNER_GID={g}");
        }
    }
    Ok(())
}
