// SPDX-License-Identifier: GPL-2.0 OR MIT
//! vDPA devices and the vDPA bridge (`vhost_mdev_vdpa.ko`): discovery, and
//! moving a device onto the bridge and off it (`vhost-mdev attach` and
//! `detach`).
//!
//! The vDPA bus matches every driver to every device, so a device is moved
//! with `driver_override`: set it, unbind the device from its driver, and
//! ask the bus to probe it (`drivers_probe`). Unbinding blocks while a user
//! holds the device (`vhost_vdpa` and the bridge wait for the close), so
//! both directions look for such users first and refuse unless asked to
//! wait. See `Documentation/vdpa-bridge.rst`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::sysfs::{Holder, Parent, Sysfs};

/// The bridge's vDPA bus driver (and module) name.
pub const BRIDGE_DRIVER: &str = "vhost_mdev_vdpa";

/// The name of the bridge parent of vDPA device `vdpa`.
pub fn bridge_parent_name(vdpa: &str) -> String {
    format!("{BRIDGE_DRIVER}-{vdpa}")
}

/// The id of the one type of the bridge parent of vDPA device `vdpa`.
pub fn bridge_type_id(vdpa: &str) -> String {
    format!("{BRIDGE_DRIVER}-{vdpa}-bridge")
}

/// A device of the vDPA bus (`/sys/bus/vdpa/devices/NAME`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VdpaDevice {
    /// The device name (`vdpa dev add ... name NAME`).
    pub name: String,
    /// The device directory (symlinks resolved).
    pub path: PathBuf,
    /// The bound driver, if any.
    pub driver: Option<String>,
    /// The `driver_override`, if set.
    pub driver_override: Option<String>,
    /// The bridge's `dma_mode` (`va` or `pa`),
    /// while the device is on the bridge.
    pub dma_mode: Option<String>,
    /// The vhost-vdpa character devices (`vhost-vdpa-N`) while the device
    /// is bound to `vhost_vdpa`.
    pub vhost_vdpa: Vec<String>,
}

impl VdpaDevice {
    /// Whether the device is bound to the bridge.
    pub fn on_bridge(&self) -> bool {
        self.driver.as_deref() == Some(BRIDGE_DRIVER)
    }

    /// The device nodes (`/dev/vhost-vdpa-N`) through which a user may
    /// hold the device while it is bound to `vhost_vdpa`.
    pub fn vhost_vdpa_nodes(&self) -> Vec<String> {
        self.vhost_vdpa
            .iter()
            .map(|n| format!("/dev/{n}"))
            .collect()
    }
}

/// The value of a `driver_override` file: the kernel shows an unset one as
/// `(null)` (older kernels: an empty line).
pub fn parse_driver_override(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty() && t != "(null)").then(|| t.to_string())
}

/// Checks that `name` can only name an entry of one sysfs directory
/// (`what` says which kind, for the message): not empty, no `/`, not `.`
/// or `..`, no control characters.
pub fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.chars().any(char::is_control)
    {
        return Err(Error::InvalidArgument(format!(
            "{name:?} is not a {what} name"
        )));
    }
    Ok(())
}

fn write_attr(path: &Path, value: &str) -> Result<()> {
    fs::write(path, value).map_err(|source| Error::Sysfs {
        path: path.to_path_buf(),
        source,
    })
}

fn link_basename(path: &Path) -> Option<String> {
    fs::read_link(path)
        .ok()?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

fn list_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn holders_text(h: &[Holder]) -> String {
    h.iter()
        .map(|h| h.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Sysfs {
    /// `/sys/bus/vdpa`.
    pub fn vdpa_bus(&self) -> PathBuf {
        self.root().join("sys/bus/vdpa")
    }

    fn vdpa_bus_checked(&self) -> Result<PathBuf> {
        let bus = self.vdpa_bus();
        if !bus.join("devices").is_dir() {
            return Err(Error::NotFound(
                "no vDPA bus (/sys/bus/vdpa): load vdpa and the driver of the device, e.g. \
                 `modprobe vdpa_sim_net`"
                    .into(),
            ));
        }
        Ok(bus)
    }

    /// The names of the vDPA bus drivers that are loaded.
    pub fn vdpa_drivers(&self) -> Vec<String> {
        list_names(&self.vdpa_bus().join("drivers"))
    }

    /// All vDPA devices (none if there is no vDPA bus).
    pub fn vdpa_devices(&self) -> Result<Vec<VdpaDevice>> {
        let mut v = Vec::new();
        for name in list_names(&self.vdpa_bus().join("devices")) {
            v.push(self.vdpa_device(&name)?);
        }
        Ok(v)
    }

    /// vDPA device `name`; an error naming `vdpa dev show` if there is no
    /// such device.
    pub fn vdpa_device(&self, name: &str) -> Result<VdpaDevice> {
        check_name("vDPA device", name)?;
        let bus = self.vdpa_bus_checked()?;
        let link = bus.join("devices").join(name);
        if !link.exists() {
            let names = list_names(&bus.join("devices"));
            return Err(Error::NotFound(format!(
                "no vDPA device {name:?} (devices: {}; see `vdpa dev show`, and `vdpa dev add` \
                 to create one)",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )));
        }
        let path = fs::canonicalize(&link).unwrap_or(link);
        let vhost_vdpa = list_names(&path)
            .into_iter()
            .filter(|n| {
                n.strip_prefix("vhost-vdpa-")
                    .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
            })
            .collect();
        Ok(VdpaDevice {
            name: name.to_string(),
            driver: link_basename(&path.join("driver")),
            driver_override: fs::read_to_string(path.join("driver_override"))
                .ok()
                .and_then(|s| parse_driver_override(&s)),
            dma_mode: fs::read_to_string(path.join("dma_mode"))
                .ok()
                .map(|s| s.trim().to_string()),
            vhost_vdpa,
            path,
        })
    }

    /// The vDPA device that mdev parent `p` bridges, if it is a bridge
    /// parent: a child of a vDPA device, named after it. (The parent's
    /// device has a class of its own name, so sysfs puts it in a directory
    /// of that name under the vDPA device:
    /// `vdpa1/vhost_mdev_vdpa-vdpa1/vhost_mdev_vdpa-vdpa1`.)
    pub fn bridged_vdpa(&self, p: &Parent) -> Option<VdpaDevice> {
        let is_vdpa = |d: &Path| link_basename(&d.join("subsystem")).as_deref() == Some("vdpa");
        let mut dev = p.path.parent()?;
        if !is_vdpa(dev) && dev.file_name().is_some_and(|n| *n == *p.name) {
            dev = dev.parent()?;
        }
        if !is_vdpa(dev) {
            return None;
        }
        let name = dev.file_name()?.to_string_lossy().into_owned();
        if p.name != bridge_parent_name(&name) {
            return None;
        }
        self.vdpa_device(&name).ok()
    }

    /// Processes that hold an instance of the bridge parent of `dev` open.
    pub fn bridge_holders(&self, dev: &VdpaDevice) -> Result<Vec<Holder>> {
        let parent = bridge_parent_name(&dev.name);
        let mut v = Vec::new();
        for i in self.instances()? {
            if i.parent.as_deref() == Some(parent.as_str()) {
                v.extend(self.holders(&i)?);
            }
        }
        Ok(v)
    }

    fn vdpa_set_override(&self, dev: &VdpaDevice, driver: Option<&str>) -> Result<()> {
        // An empty line clears it.
        write_attr(
            &dev.path.join("driver_override"),
            &format!("{}\n", driver.unwrap_or("")),
        )
    }

    fn vdpa_unbind(&self, dev: &VdpaDevice, driver: &str) -> Result<()> {
        write_attr(
            &self.vdpa_bus().join("drivers").join(driver).join("unbind"),
            &dev.name,
        )
    }

    fn vdpa_probe(&self, dev: &VdpaDevice) -> Result<()> {
        write_attr(&self.vdpa_bus().join("drivers_probe"), &dev.name)
    }
}

/// What [`attach`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// The device, as it is now.
    pub device: VdpaDevice,
    /// The mdev parent (`vhost_mdev_vdpa-NAME`).
    pub parent: String,
    /// The type id of its one type (`vhost_mdev_vdpa-NAME-bridge`).
    pub type_id: String,
    /// It was on the bridge already: nothing was changed.
    pub already: bool,
}

/// Moves vDPA device `name` onto the bridge: `driver_override`, unbinding
/// it from its driver, `drivers_probe`.
///
/// Refused while a process holds the device through its driver
/// (`/dev/vhost-vdpa-N`: `vhost_vdpa`'s remove waits for the close) unless
/// `wait`; `notify` is told what happens before anything that may block.
/// If the bridge does not take the device, the previous `driver_override`
/// is restored and the device probed again.
pub fn attach(
    sysfs: &Sysfs,
    name: &str,
    wait: bool,
    notify: &mut dyn FnMut(&str),
) -> Result<Attached> {
    let dev = sysfs.vdpa_device(name)?;
    let bus = sysfs.vdpa_bus();
    if !bus.join("drivers").join(BRIDGE_DRIVER).is_dir() {
        return Err(Error::NotFound(format!(
            "the vDPA bridge is not loaded: `modprobe {BRIDGE_DRIVER}` (or insmod \
             {BRIDGE_DRIVER}.ko)"
        )));
    }
    let parent = bridge_parent_name(name);
    let type_id = bridge_type_id(name);
    if dev.on_bridge() {
        // Keep it there across a later reprobe.
        if dev.driver_override.as_deref() != Some(BRIDGE_DRIVER) {
            sysfs.vdpa_set_override(&dev, Some(BRIDGE_DRIVER))?;
        }
        return Ok(Attached {
            device: sysfs.vdpa_device(name)?,
            parent,
            type_id,
            already: true,
        });
    }
    let holders = sysfs.node_holders(&dev.vhost_vdpa_nodes())?;
    if !holders.is_empty() && !wait {
        return Err(Error::InUse(format!(
            "{name} is bound to {} and in use by {}: unbinding it would wait until that \
             process closes the device; stop it first, or pass --wait",
            dev.driver.as_deref().unwrap_or("?"),
            holders_text(&holders)
        )));
    }
    // The override first: a probe that races with us (the bus's autoprobe
    // of a new device) can then only pick the bridge.
    sysfs.vdpa_set_override(&dev, Some(BRIDGE_DRIVER))?;
    let mut moved = sysfs.vdpa_device(name)?;
    // A probe in flight may bind another driver after we looked: a few
    // rounds.
    for _ in 0..3 {
        if let Some(other) = moved.driver.as_deref().filter(|d| *d != BRIDGE_DRIVER) {
            let holders = sysfs.node_holders(&moved.vhost_vdpa_nodes())?;
            notify(&if holders.is_empty() {
                format!("unbinding {name} from {other}")
            } else {
                format!(
                    "unbinding {name} from {other}: waiting until {} closes it",
                    holders_text(&holders)
                )
            });
            if let Err(e) = sysfs.vdpa_unbind(&moved, other) {
                // Someone else (a udev rule running attach too) may have
                // moved it meanwhile: only an unbind that left it there
                // is an error.
                if sysfs.vdpa_device(name)?.driver.as_deref() == Some(other) {
                    return Err(e);
                }
            }
        }
        if moved.driver.as_deref() != Some(BRIDGE_DRIVER) {
            sysfs.vdpa_probe(&moved)?;
        }
        moved = sysfs.vdpa_device(name)?;
        if moved.on_bridge() {
            return Ok(Attached {
                device: moved,
                parent,
                type_id,
                already: false,
            });
        }
        if moved.driver.is_none() {
            break;
        }
    }
    // Refused (the kernel log says why): back to what it was.
    let _ = sysfs.vdpa_set_override(&moved, dev.driver_override.as_deref());
    if dev.driver.is_some() && moved.driver.is_none() {
        let _ = sysfs.vdpa_probe(&moved);
    }
    Err(Error::NotFound(format!(
        "{BRIDGE_DRIVER} did not take {name} (now bound to {}): the kernel log says why \
         (`dmesg | grep {name}`); its driver_override is back to {}",
        sysfs
            .vdpa_device(name)
            .ok()
            .and_then(|d| d.driver)
            .unwrap_or_else(|| "no driver".into()),
        dev.driver_override.as_deref().unwrap_or("none")
    )))
}

/// What [`detach`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detached {
    /// The device, as it is now.
    pub device: VdpaDevice,
    /// It was not on the bridge: nothing was unbound.
    pub was_attached: bool,
    /// Why it is left without a driver, if it is.
    pub note: Option<String>,
}

/// Moves vDPA device `name` off the bridge: clears its `driver_override`
/// (the kernel's matching picks a driver again) or sets it to `to`,
/// unbinds it from the bridge and probes it.
///
/// Refused while a process holds an instance of its parent open unless
/// `wait` (the unbind then removes the instance, which waits until the
/// user closes it: the core asks the user to let go through the request
/// IRQ). A device that is not on the bridge is left where it is, unless
/// its `driver_override` names the bridge (a failed attach, an unloaded
/// bridge): that is cleared (or set to `to`) and the device probed.
pub fn detach(
    sysfs: &Sysfs,
    name: &str,
    to: Option<&str>,
    wait: bool,
    notify: &mut dyn FnMut(&str),
) -> Result<Detached> {
    let dev = sysfs.vdpa_device(name)?;
    let drivers = sysfs.vdpa_drivers();
    if let Some(to) = to {
        check_name("vDPA driver", to)?;
        if to == BRIDGE_DRIVER {
            return Err(Error::InvalidArgument(format!(
                "--to {BRIDGE_DRIVER}: that is `vhost-mdev attach {name}`"
            )));
        }
        if !drivers.iter().any(|d| d == to) {
            return Err(Error::NotFound(format!(
                "no vDPA driver {to:?} is loaded (`modprobe {to}`; loaded: {})",
                if drivers.is_empty() {
                    "none".to_string()
                } else {
                    drivers.join(", ")
                }
            )));
        }
    }
    if !dev.on_bridge() {
        let ours = dev.driver_override.as_deref() == Some(BRIDGE_DRIVER);
        if let Some(d) = &dev.driver {
            if let Some(to) = to.filter(|to| to != d) {
                return Err(Error::InvalidArgument(format!(
                    "{name} is not on the bridge (it is bound to {d}, not {to}): detach only \
                     moves devices off the bridge"
                )));
            }
            // Bound elsewhere: only a stale override naming the bridge goes.
            if ours {
                sysfs.vdpa_set_override(&dev, to)?;
            }
            return Ok(Detached {
                device: sysfs.vdpa_device(name)?,
                was_attached: false,
                note: None,
            });
        }
        if !ours && to.is_none() {
            return Ok(Detached {
                device: dev,
                was_attached: false,
                note: Some(format!("{name} is not bound to any driver")),
            });
        }
    } else {
        let holders = sysfs.bridge_holders(&dev)?;
        if !holders.is_empty() && !wait {
            return Err(Error::InUse(format!(
                "an instance of {} is in use by {}: unbinding {name} would wait until that \
                 process closes it; stop it first, or pass --wait",
                bridge_parent_name(name),
                holders_text(&holders)
            )));
        }
    }
    sysfs.vdpa_set_override(&dev, to)?;
    let was_attached = dev.on_bridge();
    if was_attached {
        let holders = sysfs.bridge_holders(&dev)?;
        notify(&if holders.is_empty() {
            format!("unbinding {name} from {BRIDGE_DRIVER}")
        } else {
            format!(
                "unbinding {name} from {BRIDGE_DRIVER}: waiting until {} closes the instance",
                holders_text(&holders)
            )
        });
        sysfs.vdpa_unbind(&dev, BRIDGE_DRIVER)?;
    }
    let now = sysfs.vdpa_device(name)?;
    if now.driver.is_some() {
        // Bound again by someone else meanwhile.
        return Ok(Detached {
            device: now,
            was_attached,
            note: None,
        });
    }
    let others: Vec<_> = drivers.iter().filter(|d| *d != BRIDGE_DRIVER).collect();
    if to.is_none() && others.is_empty() {
        return Ok(Detached {
            device: now,
            was_attached,
            note: Some(format!(
                "no other vDPA driver is loaded: {name} is left unbound (`modprobe vhost_vdpa`, \
                 then `vhost-mdev detach {name} --to vhost_vdpa`)"
            )),
        });
    }
    sysfs.vdpa_probe(&now)?;
    let now = sysfs.vdpa_device(name)?;
    match (to, now.driver.as_deref()) {
        (Some(to), Some(d)) if d == to => Ok(Detached {
            device: now,
            was_attached,
            note: None,
        }),
        (Some(to), _) => Err(Error::NotFound(format!(
            "{to} did not take {name}: the kernel log says why (`dmesg | grep {name}`); its \
             driver_override is {to}"
        ))),
        (None, Some(BRIDGE_DRIVER)) => {
            // Every vDPA driver matches every device: the first one loaded
            // wins, which may be the bridge.
            sysfs.vdpa_unbind(&now, BRIDGE_DRIVER)?;
            Ok(Detached {
                device: sysfs.vdpa_device(name)?,
                was_attached,
                note: Some(format!(
                    "the kernel's matching picked {BRIDGE_DRIVER} again (every vDPA driver \
                     matches every device; the first loaded wins): {name} is left unbound; \
                     name a driver with --to"
                )),
            })
        }
        (None, Some(_)) => Ok(Detached {
            device: now,
            was_attached,
            note: None,
        }),
        (None, None) => Ok(Detached {
            device: now,
            was_attached,
            note: Some(format!(
                "no driver took {name} (the kernel log may say why): it is left unbound"
            )),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_override_values() {
        assert_eq!(parse_driver_override("(null)\n"), None);
        assert_eq!(parse_driver_override("\n"), None);
        assert_eq!(parse_driver_override(""), None);
        assert_eq!(
            parse_driver_override("vhost_mdev_vdpa\n").as_deref(),
            Some("vhost_mdev_vdpa")
        );
    }

    #[test]
    fn names_stay_in_their_directory() {
        for bad in ["", ".", "..", "../vdpa1", "a/b", "vdpa1\n", "x\0"] {
            assert!(check_name("vDPA device", bad).is_err(), "{bad:?}");
        }
        for good in ["vdpa1", "vdpa-net.0", "mlx5_0:1", "..x"] {
            check_name("vDPA device", good).unwrap();
        }
        assert_eq!(bridge_parent_name("vdpa1"), "vhost_mdev_vdpa-vdpa1");
        assert_eq!(bridge_type_id("vdpa1"), "vhost_mdev_vdpa-vdpa1-bridge");
    }
}
