// SPDX-License-Identifier: GPL-2.0

//! The VFIO device ops of an open instance: region reads and writes,
//! ioctls, and the removal request and unmap notifications.
//!
//! C header: [`include/linux/vfio.h`](srctree/include/linux/vfio.h).

use crate::bindings;
use crate::errno::EINVAL;
use crate::instance::Instance;
use crate::irq::Kick;
use crate::transport;
use crate::uapi::{region_offset, IRQ_REQ, REGION_MSG, REGION_NOTIFY, REGION_SHIFT};
use core::ptr;
use kernel::c_str;
use kernel::ffi::{c_char, c_long, c_uint, c_ulong};
use kernel::uaccess::UserSlice;

/// `vfio_device_ops.read`: the message region's replies.
///
/// # Safety
///
/// Called by VFIO for an open device; `buf` is a user pointer of `count`
/// bytes and `ppos` valid for the call.
pub(crate) unsafe extern "C" fn read(
    vdev: *mut bindings::vfio_device,
    buf: *mut c_char,
    count: usize,
    ppos: *mut bindings::loff_t,
) -> isize {
    // SAFETY: called on an open device; `ppos` is valid for the call.
    let (this, pos) = unsafe { (Instance::from_vdev(vdev), *ppos as u64) };
    let r = if pos >> REGION_SHIFT == REGION_MSG && pos == 0 {
        transport::msg_read(&this.channel, UserSlice::new(buf as usize, count), count)
    } else {
        Err(EINVAL)
    };
    r.unwrap_or_else(|e| e.to_errno() as isize)
}

/// `vfio_device_ops.write`: messages (region 0) and kicks (region 1).
///
/// # Safety
///
/// Called by VFIO for an open device; `buf` is a user pointer of `count`
/// bytes and `ppos` valid for the call.
pub(crate) unsafe extern "C" fn write(
    vdev: *mut bindings::vfio_device,
    buf: *const c_char,
    count: usize,
    ppos: *mut bindings::loff_t,
) -> isize {
    // SAFETY: called on an open device; `ppos` is valid for the call.
    let (this, pos) = unsafe { (Instance::from_vdev(vdev), *ppos as u64) };
    let user = UserSlice::new(buf as usize, count);
    let r = match pos >> REGION_SHIFT {
        REGION_MSG if pos == 0 => {
            transport::msg_write(&this.channel, &this.rings, &mut this.backend(), user, count)
        }
        REGION_NOTIFY => {
            transport::notify_index(user, count, region_offset(pos), this.nvqs()).map(|idx| {
                this.kick(idx);
                2
            })
        }
        _ => Err(EINVAL),
    };
    r.unwrap_or_else(|e| e.to_errno() as isize)
}

/// `vfio_device_ops.ioctl`: VFIO device ioctls and the vhost ioctl transport.
///
/// # Safety
///
/// Called by VFIO for an open device; `arg` is an untrusted user pointer.
pub(crate) unsafe extern "C" fn ioctl(
    vdev: *mut bindings::vfio_device,
    cmd: c_uint,
    arg: c_ulong,
) -> c_long {
    // SAFETY: called on an open device.
    let this = unsafe { Instance::from_vdev(vdev) };
    let arg = arg as usize;
    let r = match cmd {
        bindings::VFIO_DEVICE_GET_INFO => transport::get_info(arg),
        bindings::VFIO_DEVICE_GET_REGION_INFO => transport::get_region_info(arg, this.nvqs()),
        bindings::VFIO_DEVICE_GET_IRQ_INFO => this.irqs.get_irq_info(arg, this.nvqs()),
        bindings::VFIO_DEVICE_SET_IRQS => this.irqs.set_irqs(arg, this.nvqs()),
        bindings::VFIO_DEVICE_RESET => {
            let mut ch = this.channel.lock();
            ch.reset(&mut this.backend());
            this.rings.clear();
            Ok(0)
        }
        bindings::VFIO_DEVICE_IOEVENTFD => {
            let _guard = this.channel.lock();
            // SAFETY: under the state mutex; `this` lives until
            // `close_device`, which unbinds every ioeventfd.
            unsafe { this.irqs.ioeventfd(arg, this.nvqs(), this) }
        }
        _ => transport::vhost_ioctl(&this.channel, &this.rings, &mut this.backend(), cmd, arg),
    };
    r.unwrap_or_else(|e| e.to_errno() as c_long)
}

/// `vfio_device_ops.mmap`: no region is mappable.
///
/// # Safety
///
/// Called by VFIO for an open device.
pub(crate) unsafe extern "C" fn mmap(
    _vdev: *mut bindings::vfio_device,
    _vma: *mut bindings::vm_area_struct,
) -> i32 {
    // Neither region is mappable: the message region never, the notify
    // region only with a parent doorbell page, which no parent offers yet.
    EINVAL.to_errno()
}

/// `vfio_device_ops.request`: the device is being removed while open.
///
/// # Safety
///
/// Called by VFIO, repeatedly, while `vfio_unregister_group_dev()` waits
/// for the user of one of our devices to close it.
pub(crate) unsafe extern "C" fn request(vdev: *mut bindings::vfio_device, count: c_uint) {
    // SAFETY: VFIO calls `request` on a registered device.
    let this = unsafe { Instance::from_vdev(vdev) };
    if count == 0 {
        // SAFETY: `mdev` is live while its instance is registered.
        let dev = unsafe { ptr::addr_of_mut!((*this.mdev).dev) };
        // SAFETY: `dev` is a live device; "%s" consumes one string.
        unsafe {
            bindings::_dev_notice(
                dev,
                c_str!("%s").as_char_ptr(),
                c_str!("instance removed while in use: asking the user to release it\n")
                    .as_char_ptr(),
            )
        };
    }
    this.irqs.signal(IRQ_REQ, 0);
}

/// `vfio_device_ops.dma_unmap`: an IOVA range goes away.
///
/// # Safety
///
/// Called by VFIO (iommufd's access ops) for a registered device, with no
/// lock of ours held: while it is open, and once more after `close_device`
/// when iommufd destroys the access (`unmap(0, ~0)`; the cache is empty by
/// then).
pub(crate) unsafe extern "C" fn dma_unmap(
    vdev: *mut bindings::vfio_device,
    iova: u64,
    length: u64,
) {
    // SAFETY: VFIO calls `dma_unmap` only for a registered, initialised
    // device.
    let this = unsafe { Instance::from_vdev(vdev) };
    // The state mutex is not taken here (see the locking rules of the
    // crate); the pin cache's lock is, which the data path never holds
    // across a call into VFIO.
    this.pins.unmap(iova, length);
    if let Some(f) = this.parent().ops().dma_unmap {
        // SAFETY: `priv_` is live while the device is registered.
        unsafe { f(this.priv_(), iova, length) };
    }
}
