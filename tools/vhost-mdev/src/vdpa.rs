// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The same driver API over upstream vhost-vdpa (`/dev/vhost-vdpa-N`), so
//! one code path drives both a vhost-mdev instance and peers such as
//! `vdpa_sim_net`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use vmm_sys_util::eventfd::EventFd;

use crate::backend::{decode_reply, ioctl_request, VhostBackend};
use crate::error::{Errno, Error, Result};
use crate::msg::{Reply, Request};
use crate::uapi::*;
use crate::vfio::DmaMapper;

/// A vhost-vdpa character device.
#[derive(Debug)]
pub struct VhostVdpa {
    fd: File,
    path: PathBuf,
    owner: AtomicBool,
    backend_features: u64,
}

fn ioctl_ref<T>(fd: &File, request: u64, arg: &T, what: &str) -> Result<()> {
    // SAFETY: arg is a valid T, the argument type of `request`, and outlives
    // the call.
    let r = unsafe { vmm_sys_util::ioctl::ioctl_with_ref(fd, request as _, arg) };
    if r < 0 {
        return Err(Error::Request {
            request: what.to_string(),
            errno: Errno::last(),
        });
    }
    Ok(())
}

impl VhostVdpa {
    /// Opens `/dev/vhost-vdpa-N`, becomes its owner and acks the backend
    /// features this crate uses (IOTLB v2 messages, suspend, resume).
    pub fn open(path: &Path) -> Result<Self> {
        let fd = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::io(format!("open {}", path.display()), &e))?;
        ioctl_request(&fd, VHOST_SET_OWNER, &[])?;
        let mut avail = 0u64;
        // SAFETY: VHOST_GET_BACKEND_FEATURES writes one u64 to the argument,
        // which outlives the call.
        let r = unsafe {
            vmm_sys_util::ioctl::ioctl_with_mut_ref(&fd, VHOST_GET_BACKEND_FEATURES(), &mut avail)
        };
        if r < 0 {
            return Err(Error::Request {
                request: "VHOST_GET_BACKEND_FEATURES".into(),
                errno: Errno::last(),
            });
        }
        let wanted = (1 << VHOST_BACKEND_F_IOTLB_MSG_V2)
            | (1 << VHOST_BACKEND_F_SUSPEND)
            | (1 << VHOST_BACKEND_F_RESUME);
        let backend_features = avail & wanted;
        if backend_features & (1 << VHOST_BACKEND_F_IOTLB_MSG_V2) == 0 {
            return Err(Error::Unsupported("VHOST_BACKEND_F_IOTLB_MSG_V2"));
        }
        ioctl_ref(
            &fd,
            VHOST_SET_BACKEND_FEATURES(),
            &backend_features,
            "VHOST_SET_BACKEND_FEATURES",
        )?;
        Ok(VhostVdpa {
            fd,
            path: path.to_path_buf(),
            owner: AtomicBool::new(true),
            backend_features,
        })
    }

    /// The acked backend features.
    pub fn backend_features(&self) -> u64 {
        self.backend_features
    }

    /// The character device, for requests the typed API does not carry
    /// (tests compare raw requests with a vhost-mdev instance's).
    pub fn file(&self) -> &File {
        &self.fd
    }

    fn iotlb(&self, type_: u8, iova: u64, size: u64, uaddr: u64) -> Result<()> {
        // struct vhost_msg_v2, serialised field by field (72 bytes).
        let mut m = [0u8; std::mem::size_of::<VhostMsgV2>()];
        m[0..4].copy_from_slice(&VHOST_IOTLB_MSG_V2.to_ne_bytes());
        m[8..16].copy_from_slice(&iova.to_ne_bytes());
        m[16..24].copy_from_slice(&size.to_ne_bytes());
        m[24..32].copy_from_slice(&uaddr.to_ne_bytes());
        m[32] = VHOST_ACCESS_RW;
        m[33] = type_;
        let what = if type_ == VHOST_IOTLB_UPDATE {
            "VHOST_IOTLB_UPDATE"
        } else {
            "VHOST_IOTLB_INVALIDATE"
        };
        let n = (&self.fd).write(&m).map_err(|e| Error::Request {
            request: format!("{what}(iova {iova:#x}, size {size:#x})"),
            errno: Errno::from(&e),
        })?;
        if n != m.len() {
            return Err(Error::Protocol(format!("{what}: short write {n}")));
        }
        Ok(())
    }
}

impl DmaMapper for VhostVdpa {
    unsafe fn map_dma(&self, iova: u64, size: u64, vaddr: u64) -> Result<()> {
        self.iotlb(VHOST_IOTLB_UPDATE, iova, size, vaddr)
    }

    fn unmap_dma(&self, iova: u64, size: u64) -> Result<()> {
        self.iotlb(VHOST_IOTLB_INVALIDATE, iova, size, 0)
    }
}

impl VhostBackend for VhostVdpa {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn request(&self, req: &Request) -> Result<Reply> {
        // The fd became the owner at open: a later SET_OWNER from the
        // common bring-up path is accepted, as vhost-mdev does.
        if *req == Request::SetOwner && self.owner.load(Ordering::Relaxed) {
            return Ok(Reply::None);
        }
        // vhost-vdpa has no SET_VRING_HVA: its device reaches the rings by
        // IOVA only (vdpa_sim through its IOTLB, hardware by DMA). Handled
        // here, not by overriding `set_vring_hva`, so that every caller
        // (through `&VhostVdpa` too) gets the same answer.
        if matches!(req, Request::SetVringHva(_)) {
            return Ok(Reply::None);
        }
        let reply = ioctl_request(&self.fd, req.code(), &req.payload())?;
        decode_reply(req, &reply)
    }

    fn set_vring_call(&self, index: u32, fd: Option<&EventFd>) -> Result<()> {
        let f = VhostVringFile {
            index,
            fd: fd.map_or(-1, |f| f.as_raw_fd()),
        };
        ioctl_ref(&self.fd, VHOST_SET_VRING_CALL(), &f, "VHOST_SET_VRING_CALL")
    }

    fn set_config_call(&self, fd: Option<&EventFd>) -> Result<()> {
        let f: i32 = fd.map_or(-1, |f| f.as_raw_fd());
        ioctl_ref(
            &self.fd,
            VHOST_VDPA_SET_CONFIG_CALL(),
            &f,
            "VHOST_VDPA_SET_CONFIG_CALL",
        )
    }

    fn set_vring_kick(&self, index: u32, fd: Option<&EventFd>) -> Result<()> {
        let f = VhostVringFile {
            index,
            fd: fd.map_or(-1, |f| f.as_raw_fd()),
        };
        ioctl_ref(&self.fd, VHOST_SET_VRING_KICK(), &f, "VHOST_SET_VRING_KICK")
    }

    fn notify(&self, _index: u16) -> Result<()> {
        Err(Error::Unsupported("direct notification"))
    }

    fn supports_notify(&self) -> bool {
        false
    }
}
