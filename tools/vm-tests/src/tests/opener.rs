// SPDX-License-Identifier: GPL-2.0 OR MIT
//! A second opener of a device.

use super::*;

pub(super) fn second_opener(env: &Env) -> TestResult {
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
