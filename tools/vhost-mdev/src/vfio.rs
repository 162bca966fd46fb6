// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Opening an mdev instance as a VFIO device, through a type1 container or
//! through iommufd, and the generic VFIO device ioctls.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::Path;

use vfio_bindings::bindings::vfio as vb;
use vmm_sys_util::ioctl::{
    ioctl, ioctl_with_mut_ref, ioctl_with_ptr, ioctl_with_ref, ioctl_with_val,
};

use crate::error::{Errno, Error, Result};
use crate::sysfs::{Instance, Sysfs};
use crate::uapi::*;

/// Which VFIO IOMMU back end to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IommuKind {
    /// A type1 container (`/dev/vfio/vfio`) and the group node.
    Type1,
    /// iommufd (`/dev/iommu`) and the VFIO cdev.
    Iommufd,
}

impl std::fmt::Display for IommuKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IommuKind::Type1 => "type1",
            IommuKind::Iommufd => "iommufd",
        })
    }
}

/// Maps user memory at IOVAs of a device's DMA address space.
pub trait DmaMapper {
    /// Maps `size` bytes at user address `vaddr` to `iova`, readable and
    /// writable by the device.
    ///
    /// # Safety
    ///
    /// `vaddr..vaddr + size` must stay mapped in this process until it is
    /// unmapped with [`DmaMapper::unmap_dma`] or the device is closed, and
    /// the caller must only access it in ways that tolerate concurrent
    /// device writes (volatile or atomic accesses, no references to it).
    unsafe fn map_dma(&self, iova: u64, size: u64, vaddr: u64) -> Result<()>;

    /// Unmaps the range mapped at `iova`.
    fn unmap_dma(&self, iova: u64, size: u64) -> Result<()>;
}

fn cvt(ret: libc::c_int, op: impl FnOnce() -> String) -> Result<libc::c_int> {
    if ret < 0 {
        Err(Error::Sys {
            op: op(),
            errno: Errno::last(),
        })
    } else {
        Ok(ret)
    }
}

fn open_rw(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| {
            let hint = match e.raw_os_error() {
                Some(libc::EACCES) | Some(libc::EPERM) => {
                    " (no permission: run as root or give your user access to the node)"
                }
                Some(libc::ENOENT) => {
                    " (missing: load vfio_iommu_type1 for /dev/vfio/vfio, iommufd for \
                     /dev/iommu, and check that the instance is bound to vfio-vhost)"
                }
                Some(libc::EBUSY) => " (in use: VFIO allows one opener)",
                _ => "",
            };
            Error::io(format!("open {}{hint}", path.display()), &e)
        })
}

/// A type1 container with one group attached.
#[derive(Debug)]
struct Type1 {
    // Held open for the device's lifetime. Field order is drop order: the
    // group leaves the container first.
    _group: File,
    container: File,
}

/// An iommufd context with one IOAS.
#[derive(Debug)]
struct Iommufd {
    fd: File,
    ioas: u32,
}

#[derive(Debug)]
enum Iommu {
    Type1(Type1),
    Iommufd(Iommufd),
}

/// `VFIO_DEVICE_GET_INFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceInfo {
    /// `VFIO_DEVICE_FLAGS_*`.
    pub flags: u32,
    /// Number of regions.
    pub num_regions: u32,
    /// Number of IRQ indexes.
    pub num_irqs: u32,
}

/// `VFIO_DEVICE_GET_REGION_INFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionInfo {
    /// Region index.
    pub index: u32,
    /// `VFIO_REGION_INFO_FLAG_*`.
    pub flags: u32,
    /// Size in bytes.
    pub size: u64,
    /// Offset of the region in the device fd.
    pub offset: u64,
}

/// `VFIO_DEVICE_GET_IRQ_INFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IrqInfo {
    /// IRQ index.
    pub index: u32,
    /// `VFIO_IRQ_INFO_*`.
    pub flags: u32,
    /// Number of vectors.
    pub count: u32,
}

/// An open VFIO device (an mdev instance) and its IOMMU context.
#[derive(Debug)]
pub struct VfioDevice {
    // Field order is drop order: close the device before its IOMMU context.
    device: File,
    iommu: Iommu,
    name: String,
}

impl VfioDevice {
    /// Opens instance `inst` with the given IOMMU back end.
    pub fn open(sysfs: &Sysfs, inst: &Instance, kind: IommuKind) -> Result<Self> {
        match kind {
            IommuKind::Type1 => {
                let group = sysfs.group_node(inst).ok_or_else(|| {
                    Error::NotFound(format!(
                        "instance {} has no IOMMU group: is it bound to the vfio-vhost driver?",
                        inst.uuid
                    ))
                })?;
                Self::open_type1(
                    &sysfs.root().join("dev/vfio/vfio"),
                    &group,
                    &inst.uuid.to_string(),
                )
            }
            IommuKind::Iommufd => {
                let cdev = sysfs.cdev_node(inst).ok_or_else(|| {
                    Error::NotFound(format!(
                        "instance {} has no VFIO cdev (vfio-dev/): the kernel needs \
                         CONFIG_VFIO_DEVICE_CDEV",
                        inst.uuid
                    ))
                })?;
                Self::open_iommufd(&sysfs.root().join("dev/iommu"), &cdev)
            }
        }
    }

    /// Opens device `name` of the group at `group_path` through a new type1
    /// container at `container_path` (normally `/dev/vfio/vfio`).
    pub fn open_type1(container_path: &Path, group_path: &Path, name: &str) -> Result<Self> {
        let container = open_rw(container_path)?;
        // SAFETY: VFIO_GET_API_VERSION takes no argument.
        let ver = cvt(unsafe { ioctl(&container, VFIO_GET_API_VERSION()) }, || {
            "VFIO_GET_API_VERSION".into()
        })?;
        if ver != vb::VFIO_API_VERSION as i32 {
            return Err(Error::Protocol(format!("VFIO API version {ver}")));
        }
        // SAFETY: VFIO_CHECK_EXTENSION takes an integer argument.
        let ext = unsafe {
            ioctl_with_val(
                &container,
                VFIO_CHECK_EXTENSION(),
                vb::VFIO_TYPE1v2_IOMMU as _,
            )
        };
        if ext != 1 {
            return Err(Error::Unsupported("VFIO_TYPE1v2_IOMMU"));
        }
        let group = open_rw(group_path)?;
        let mut status = vb::vfio_group_status {
            argsz: size_of::<vb::vfio_group_status>() as u32,
            flags: 0,
        };
        // SAFETY: the argument is a valid vfio_group_status the kernel fills.
        cvt(
            unsafe { ioctl_with_mut_ref(&group, VFIO_GROUP_GET_STATUS(), &mut status) },
            || "VFIO_GROUP_GET_STATUS".into(),
        )?;
        if status.flags & vb::VFIO_GROUP_FLAGS_VIABLE == 0 {
            return Err(Error::Protocol(format!(
                "VFIO group {} is not viable (some device of it is bound to a host driver)",
                group_path.display()
            )));
        }
        let cfd: RawFd = container.as_raw_fd();
        // SAFETY: the argument points to a valid fd number.
        cvt(
            unsafe { ioctl_with_ref(&group, VFIO_GROUP_SET_CONTAINER(), &cfd) },
            || "VFIO_GROUP_SET_CONTAINER".into(),
        )?;
        // SAFETY: VFIO_SET_IOMMU takes an integer argument.
        cvt(
            unsafe { ioctl_with_val(&container, VFIO_SET_IOMMU(), vb::VFIO_TYPE1v2_IOMMU as _) },
            || "VFIO_SET_IOMMU(VFIO_TYPE1v2_IOMMU)".into(),
        )?;
        let cname = CString::new(name)
            .map_err(|_| Error::InvalidArgument(format!("device name {name:?}")))?;
        // SAFETY: the argument is a NUL-terminated string that outlives the call.
        let fd = cvt(
            unsafe { ioctl_with_ptr(&group, VFIO_GROUP_GET_DEVICE_FD(), cname.as_ptr()) },
            || format!("VFIO_GROUP_GET_DEVICE_FD({name})"),
        )?;
        // SAFETY: the kernel returned a new fd that we own.
        let device = unsafe { File::from_raw_fd(fd) };
        Ok(VfioDevice {
            device,
            iommu: Iommu::Type1(Type1 {
                _group: group,
                container,
            }),
            name: name.to_string(),
        })
    }

    /// Opens the VFIO cdev at `cdev_path` and attaches it to a new IOAS of
    /// the iommufd at `iommufd_path` (normally `/dev/iommu`).
    pub fn open_iommufd(iommufd_path: &Path, cdev_path: &Path) -> Result<Self> {
        let fd = open_rw(iommufd_path)?;
        let mut alloc = iommufd_bindings::iommu_ioas_alloc {
            size: size_of::<iommufd_bindings::iommu_ioas_alloc>() as u32,
            flags: 0,
            out_ioas_id: 0,
        };
        // SAFETY: the argument is a valid iommu_ioas_alloc the kernel fills.
        cvt(
            unsafe { ioctl_with_mut_ref(&fd, IOMMU_IOAS_ALLOC(), &mut alloc) },
            || "IOMMU_IOAS_ALLOC".into(),
        )?;
        let iommufd = Iommufd {
            fd,
            ioas: alloc.out_ioas_id,
        };
        let device = open_rw(cdev_path)?;
        let mut bind = vb::vfio_device_bind_iommufd {
            // The 6.12 layout ends at out_devid; newer kernels accept it.
            argsz: std::mem::offset_of!(vb::vfio_device_bind_iommufd, token_uuid_ptr) as u32,
            flags: 0,
            iommufd: iommufd.fd.as_raw_fd(),
            out_devid: 0,
            token_uuid_ptr: 0,
        };
        // SAFETY: the argument is a valid vfio_device_bind_iommufd of at
        // least argsz bytes.
        cvt(
            unsafe { ioctl_with_mut_ref(&device, VFIO_DEVICE_BIND_IOMMUFD(), &mut bind) },
            || "VFIO_DEVICE_BIND_IOMMUFD".into(),
        )?;
        let mut attach = vb::vfio_device_attach_iommufd_pt {
            argsz: std::mem::offset_of!(vb::vfio_device_attach_iommufd_pt, pasid) as u32,
            flags: 0,
            pt_id: iommufd.ioas,
            pasid: 0,
        };
        // SAFETY: the argument is a valid vfio_device_attach_iommufd_pt.
        cvt(
            unsafe { ioctl_with_mut_ref(&device, VFIO_DEVICE_ATTACH_IOMMUFD_PT(), &mut attach) },
            || "VFIO_DEVICE_ATTACH_IOMMUFD_PT".into(),
        )?;
        Ok(VfioDevice {
            device,
            iommu: Iommu::Iommufd(iommufd),
            name: cdev_path.display().to_string(),
        })
    }

    /// Which IOMMU back end the device was opened with.
    pub fn iommu_kind(&self) -> IommuKind {
        match self.iommu {
            Iommu::Type1(_) => IommuKind::Type1,
            Iommu::Iommufd(_) => IommuKind::Iommufd,
        }
    }

    /// The iommufd and the id of the IOAS the device was attached to at
    /// open (`None` on a type1 container). For tests that allocate, attach
    /// or detach address spaces themselves.
    pub fn iommufd(&self) -> Option<(&File, u32)> {
        match &self.iommu {
            Iommu::Iommufd(i) => Some((&i.fd, i.ioas)),
            Iommu::Type1(_) => None,
        }
    }

    /// Wraps a device another process opened through a type1 container
    /// (its container, group and device fds, received by fd passing).
    pub fn from_type1_fds(container: File, group: File, device: File, name: &str) -> Self {
        VfioDevice {
            device,
            iommu: Iommu::Type1(Type1 {
                _group: group,
                container,
            }),
            name: name.to_string(),
        }
    }

    /// Wraps a device another process bound to `iommufd` and attached to
    /// IOAS `ioas` (fds received by fd passing).
    pub fn from_iommufd_fds(iommufd: File, ioas: u32, device: File, name: &str) -> Self {
        VfioDevice {
            device,
            iommu: Iommu::Iommufd(Iommufd { fd: iommufd, ioas }),
            name: name.to_string(),
        }
    }

    /// Splits the device into its fds (device first, then the container
    /// and group, or the iommufd) and the IOAS id, for passing them to
    /// another process.
    pub fn into_parts(self) -> (File, Vec<File>, Option<u32>) {
        match self.iommu {
            Iommu::Type1(t) => (self.device, vec![t.container, t._group], None),
            Iommu::Iommufd(i) => (self.device, vec![i.fd], Some(i.ioas)),
        }
    }

    /// The device name (UUID) or cdev path.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device fd.
    pub fn file(&self) -> &File {
        &self.device
    }

    /// `VFIO_DEVICE_GET_INFO`.
    pub fn info(&self) -> Result<DeviceInfo> {
        let mut info = vb::vfio_device_info {
            argsz: size_of::<vb::vfio_device_info>() as u32,
            ..Default::default()
        };
        // SAFETY: the argument is a valid vfio_device_info of argsz bytes.
        cvt(
            unsafe { ioctl_with_mut_ref(&self.device, VFIO_DEVICE_GET_INFO(), &mut info) },
            || "VFIO_DEVICE_GET_INFO".into(),
        )?;
        Ok(DeviceInfo {
            flags: info.flags,
            num_regions: info.num_regions,
            num_irqs: info.num_irqs,
        })
    }

    /// `VFIO_DEVICE_GET_REGION_INFO` of region `index`.
    pub fn region_info(&self, index: u32) -> Result<RegionInfo> {
        let mut ri = vb::vfio_region_info {
            argsz: size_of::<vb::vfio_region_info>() as u32,
            index,
            ..Default::default()
        };
        // SAFETY: the argument is a valid vfio_region_info of argsz bytes.
        cvt(
            unsafe { ioctl_with_mut_ref(&self.device, VFIO_DEVICE_GET_REGION_INFO(), &mut ri) },
            || format!("VFIO_DEVICE_GET_REGION_INFO({index})"),
        )?;
        Ok(RegionInfo {
            index: ri.index,
            flags: ri.flags,
            size: ri.size,
            offset: ri.offset,
        })
    }

    /// `VFIO_DEVICE_GET_IRQ_INFO` of IRQ index `index`.
    pub fn irq_info(&self, index: u32) -> Result<IrqInfo> {
        let mut ii = vb::vfio_irq_info {
            argsz: size_of::<vb::vfio_irq_info>() as u32,
            index,
            ..Default::default()
        };
        // SAFETY: the argument is a valid vfio_irq_info of argsz bytes.
        cvt(
            unsafe { ioctl_with_mut_ref(&self.device, VFIO_DEVICE_GET_IRQ_INFO(), &mut ii) },
            || format!("VFIO_DEVICE_GET_IRQ_INFO({index})"),
        )?;
        Ok(IrqInfo {
            index: ii.index,
            flags: ii.flags,
            count: ii.count,
        })
    }

    /// `VFIO_DEVICE_RESET`.
    pub fn reset(&self) -> Result<()> {
        // SAFETY: VFIO_DEVICE_RESET takes no argument.
        cvt(unsafe { ioctl(&self.device, VFIO_DEVICE_RESET()) }, || {
            "VFIO_DEVICE_RESET".into()
        })?;
        Ok(())
    }

    /// `pread` at a device-fd offset; returns the byte count.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.device
            .read_at(buf, offset)
            .map_err(|e| Error::io(format!("pread of {} bytes at {offset:#x}", buf.len()), &e))
    }

    /// `pwrite` at a device-fd offset; returns the byte count.
    pub fn write_at(&self, offset: u64, buf: &[u8]) -> Result<usize> {
        self.device
            .write_at(buf, offset)
            .map_err(|e| Error::io(format!("pwrite of {} bytes at {offset:#x}", buf.len()), &e))
    }

    /// `VFIO_DEVICE_SET_IRQS` with arbitrary flags and data (for tests).
    pub fn set_irqs_raw(
        &self,
        flags: u32,
        index: u32,
        start: u32,
        count: u32,
        data: &[u8],
    ) -> Result<()> {
        let hdr = size_of::<vb::vfio_irq_set>();
        let argsz = hdr + data.len();
        // A u32 buffer keeps the header aligned.
        let mut buf = vec![0u32; argsz.div_ceil(4)];
        let set = vb::vfio_irq_set {
            argsz: argsz as u32,
            flags,
            index,
            start,
            count,
            data: Default::default(),
        };
        // SAFETY: buf holds at least argsz bytes, is 4-byte aligned (the
        // alignment of vfio_irq_set), and the header and data do not
        // overlap.
        unsafe {
            let p = buf.as_mut_ptr() as *mut u8;
            std::ptr::write(p as *mut vb::vfio_irq_set, set);
            std::ptr::copy_nonoverlapping(data.as_ptr(), p.add(hdr), data.len());
        }
        // SAFETY: the argument is a vfio_irq_set followed by its data,
        // argsz bytes in all.
        cvt(
            unsafe { ioctl_with_ptr(&self.device, VFIO_DEVICE_SET_IRQS(), buf.as_ptr()) },
            || format!("VFIO_DEVICE_SET_IRQS(index {index}, start {start}, count {count})"),
        )?;
        Ok(())
    }

    /// Attaches eventfds to vectors `start..start + fds.len()` of IRQ
    /// `index` (`-1` detaches one vector).
    pub fn set_irq_eventfds(&self, index: u32, start: u32, fds: &[RawFd]) -> Result<()> {
        let data: Vec<u8> = fds.iter().flat_map(|fd| fd.to_ne_bytes()).collect();
        self.set_irqs_raw(
            vb::VFIO_IRQ_SET_DATA_EVENTFD | vb::VFIO_IRQ_SET_ACTION_TRIGGER,
            index,
            start,
            fds.len() as u32,
            &data,
        )
    }

    /// Fires vectors `start..start + count` of IRQ `index` (`DATA_NONE`
    /// trigger; a loopback test of the eventfd wiring).
    pub fn trigger_irq(&self, index: u32, start: u32, count: u32) -> Result<()> {
        self.set_irqs_raw(
            vb::VFIO_IRQ_SET_DATA_NONE | vb::VFIO_IRQ_SET_ACTION_TRIGGER,
            index,
            start,
            count,
            &[],
        )
    }

    /// Detaches every eventfd of IRQ `index` (count 0, `DATA_NONE`).
    pub fn detach_irq(&self, index: u32) -> Result<()> {
        self.set_irqs_raw(
            vb::VFIO_IRQ_SET_DATA_NONE | vb::VFIO_IRQ_SET_ACTION_TRIGGER,
            index,
            0,
            0,
            &[],
        )
    }

    /// `VFIO_DEVICE_IOEVENTFD` with arbitrary arguments (`fd` -1 unbinds).
    pub fn ioeventfd_raw(&self, offset: u64, flags: u32, data: u64, fd: RawFd) -> Result<()> {
        let arg = vb::vfio_device_ioeventfd {
            argsz: size_of::<vb::vfio_device_ioeventfd>() as u32,
            flags,
            offset,
            data,
            fd,
            reserved: 0,
        };
        // SAFETY: the argument is a valid vfio_device_ioeventfd.
        cvt(
            unsafe { ioctl_with_ref(&self.device, VFIO_DEVICE_IOEVENTFD(), &arg) },
            || format!("VFIO_DEVICE_IOEVENTFD(offset {offset:#x}, data {data})"),
        )?;
        Ok(())
    }

    /// Tries to `mmap` `len` bytes at a device-fd offset; unmaps at once on
    /// success. Used to check which regions allow mmap.
    pub fn try_mmap(&self, offset: u64, len: usize) -> Result<()> {
        // SAFETY: a fresh shared mapping of the device fd is requested at an
        // address of the kernel's choice; nothing aliases it and it is
        // unmapped below without being accessed.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.device.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::last_os(format!("mmap at {offset:#x}")));
        }
        // SAFETY: p is the mapping of len bytes created above.
        unsafe { libc::munmap(p, len) };
        Ok(())
    }

    /// Issues an ioctl on the device fd with a pointer argument and returns
    /// its result (for the ioctl transport and bad-input tests).
    ///
    /// # Safety
    ///
    /// `arg` must be valid for whatever the kernel reads or writes for
    /// `request` (at least the size encoded in `request`).
    pub unsafe fn ioctl_ptr(&self, request: u64, arg: *mut u8) -> std::io::Result<libc::c_int> {
        // SAFETY: the caller guarantees arg is valid for request.
        let r = unsafe { vmm_sys_util::ioctl::ioctl_with_mut_ptr(&self.device, request as _, arg) };
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(r)
        }
    }
}

impl DmaMapper for VfioDevice {
    unsafe fn map_dma(&self, iova: u64, size: u64, vaddr: u64) -> Result<()> {
        match &self.iommu {
            Iommu::Type1(t) => {
                let map = vb::vfio_iommu_type1_dma_map {
                    argsz: size_of::<vb::vfio_iommu_type1_dma_map>() as u32,
                    flags: vb::VFIO_DMA_MAP_FLAG_READ | vb::VFIO_DMA_MAP_FLAG_WRITE,
                    vaddr,
                    iova,
                    size,
                };
                // SAFETY: the argument is a valid vfio_iommu_type1_dma_map;
                // the caller guarantees the range stays valid.
                cvt(
                    unsafe { ioctl_with_ref(&t.container, VFIO_IOMMU_MAP_DMA(), &map) },
                    || format!("VFIO_IOMMU_MAP_DMA(iova {iova:#x}, size {size:#x})"),
                )?;
            }
            Iommu::Iommufd(i) => {
                let map = iommufd_bindings::iommu_ioas_map {
                    size: size_of::<iommufd_bindings::iommu_ioas_map>() as u32,
                    flags: iommufd_bindings::iommufd_ioas_map_flags_IOMMU_IOAS_MAP_FIXED_IOVA
                        | iommufd_bindings::iommufd_ioas_map_flags_IOMMU_IOAS_MAP_READABLE
                        | iommufd_bindings::iommufd_ioas_map_flags_IOMMU_IOAS_MAP_WRITEABLE,
                    ioas_id: i.ioas,
                    __reserved: 0,
                    user_va: vaddr,
                    length: size,
                    iova,
                };
                // SAFETY: the argument is a valid iommu_ioas_map; the caller
                // guarantees the range stays valid.
                cvt(
                    unsafe { ioctl_with_ref(&i.fd, IOMMU_IOAS_MAP(), &map) },
                    || format!("IOMMU_IOAS_MAP(iova {iova:#x}, size {size:#x})"),
                )?;
            }
        }
        Ok(())
    }

    fn unmap_dma(&self, iova: u64, size: u64) -> Result<()> {
        match &self.iommu {
            Iommu::Type1(t) => {
                let mut unmap = vb::vfio_iommu_type1_dma_unmap {
                    argsz: size_of::<vb::vfio_iommu_type1_dma_unmap>() as u32,
                    flags: 0,
                    iova,
                    size,
                    data: Default::default(),
                };
                // SAFETY: the argument is a valid vfio_iommu_type1_dma_unmap.
                cvt(
                    unsafe { ioctl_with_mut_ref(&t.container, VFIO_IOMMU_UNMAP_DMA(), &mut unmap) },
                    || format!("VFIO_IOMMU_UNMAP_DMA(iova {iova:#x}, size {size:#x})"),
                )?;
            }
            Iommu::Iommufd(i) => {
                let mut unmap = iommufd_bindings::iommu_ioas_unmap {
                    size: size_of::<iommufd_bindings::iommu_ioas_unmap>() as u32,
                    ioas_id: i.ioas,
                    iova,
                    length: size,
                };
                // SAFETY: the argument is a valid iommu_ioas_unmap.
                cvt(
                    unsafe { ioctl_with_mut_ref(&i.fd, IOMMU_IOAS_UNMAP(), &mut unmap) },
                    || format!("IOMMU_IOAS_UNMAP(iova {iova:#x}, size {size:#x})"),
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iommufd_layouts() {
        // <linux/iommufd.h> of 6.12.
        assert_eq!(size_of::<iommufd_bindings::iommu_ioas_alloc>(), 12);
        assert_eq!(size_of::<iommufd_bindings::iommu_ioas_map>(), 40);
        assert_eq!(size_of::<iommufd_bindings::iommu_ioas_unmap>(), 24);
        assert_eq!(
            std::mem::offset_of!(vb::vfio_device_bind_iommufd, out_devid),
            12
        );
        assert_eq!(
            std::mem::offset_of!(vb::vfio_device_attach_iommufd_pt, pt_id),
            8
        );
        assert_eq!(size_of::<vb::vfio_device_ioeventfd>(), 32);
        assert_eq!(size_of::<vb::vfio_irq_set>(), 20);
    }

    #[test]
    fn open_missing_nodes_fails_cleanly() {
        let e = VfioDevice::open_type1(
            Path::new("/nonexistent/vfio"),
            Path::new("/nonexistent/3"),
            "x",
        )
        .unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENOENT));
        assert!(e.to_string().contains("/nonexistent/vfio"));
    }
}
