// SPDX-License-Identifier: GPL-2.0

//! One vhost-mdev instance: a VFIO device (emulated IOMMU) that speaks vhost.
//!
//! C header: [`include/linux/vfio.h`](srctree/include/linux/vfio.h).
//!
//! The `vfio_device` is the first field of [`Instance`]: VFIO allocates the
//! whole instance (`_vfio_alloc_device()`), calls our `release` callback
//! when the last reference goes, and then frees the memory. The Rust fields
//! are initialised in place after allocation and dropped in `release`.

use crate::bindings;
use crate::dma::PinCache;
use crate::eventfd::EventFd;
use crate::parent::Parent;
use crate::proto::{self, Backend, Model, Reply};
use crate::rings::RingMap;
use core::mem::{offset_of, size_of};
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU8, Ordering};
use kernel::error::{code::*, to_result, Error};
use kernel::ffi::{c_char, c_long, c_uint, c_ulong, c_void};
use kernel::init::PinInit;
use kernel::prelude::*;
use kernel::sync::{Mutex, SpinLock};
use kernel::types::{Opaque, ScopeGuard};
use kernel::uaccess::UserSlice;
use kernel::{c_str, new_mutex, new_spinlock};

use kernel::page::PAGE_SIZE;
// The uAPI layout, checked against the header in `proto.rs`.
const REGION_SHIFT: u32 = proto::uapi::REGION_SHIFT;
const REGION_MSG: u64 = proto::uapi::REGION_MSG as u64;
const REGION_NOTIFY: u64 = proto::uapi::REGION_NOTIFY as u64;
const NUM_REGIONS: u32 = proto::uapi::NUM_REGIONS;
const IRQ_VQ: u32 = proto::uapi::IRQ_VQ;
const IRQ_CONFIG: u32 = proto::uapi::IRQ_CONFIG;
const IRQ_REQ: u32 = proto::uapi::IRQ_REQ;
const NUM_IRQS: u32 = proto::uapi::NUM_IRQS;

/// Converts a protocol errno into a kernel error.
fn err(e: proto::Errno) -> Error {
    Error::from_errno(-e)
}

/// A staged reply of the message transport.
struct Staged {
    request: u64,
    len: usize,
}

/// State serialised by `Instance::state`.
struct Inner {
    model: Model,
    /// The reply slot (region 0 reads).
    staged: Option<Staged>,
    /// Bytes of the staged reply (`MAX_PAYLOAD` bytes).
    reply: KVec<u8>,
    /// The reply of an ioctl, copied out before the ioctl returns
    /// (`MAX_PAYLOAD` bytes). Apart from `reply`, so that an ioctl between
    /// a region-0 request and its `pread` leaves the staged reply alone.
    ioctl_reply: KVec<u8>,
    /// The message being written, copied from userspace (`MSG_REGION_SIZE`
    /// bytes).
    msg: KVec<u8>,
}

/// The IRQ eventfds, swapped by `SET_IRQS` and signalled by the device.
struct Irqs {
    vq: [Option<EventFd>; proto::MAX_VQS],
    config: Option<EventFd>,
    req: Option<EventFd>,
}

impl Irqs {
    const NONE: Option<EventFd> = None;

    fn slot(&mut self, index: u32, i: usize) -> &mut Option<EventFd> {
        match index {
            IRQ_VQ => &mut self.vq[i],
            IRQ_CONFIG => &mut self.config,
            _ => &mut self.req,
        }
    }
}

/// The Rust part of an instance.
#[pin_data]
struct Data {
    parent: *const Parent,
    mdev: *mut bindings::mdev_device,
    /// The parent's instance pointer: set once, right after the parent's
    /// `create` returns, and valid until its `destroy`.
    priv_: AtomicPtr<c_void>,
    /// Number of virtqueues; set once, before the device is registered.
    nvqs: AtomicU32,
    #[pin]
    state: Mutex<Inner>,
    #[pin]
    irqs: SpinLock<Irqs>,
    /// Ioeventfds bound to the notify region, per queue. VFIO's virqfd code
    /// owns these slots (it writes them under its own lock, also from its
    /// wake-up handler): Rust never reads them, it only passes their
    /// addresses to `vfio_virqfd_enable()`/`vfio_virqfd_disable()`, under
    /// the state mutex.
    ioeventfds: [Opaque<*mut bindings::virqfd>; proto::MAX_VQS],
    /// Kicks reach the parent only while this is set (open, not closing).
    kicks_on: AtomicBool,
    /// Status bits set by the device (NEEDS_RESET).
    device_status: AtomicU8,
    /// The address space of the process that opened the device (one
    /// `mmgrab` reference while open), adopted by parent workers for DMA.
    /// Set in `open_device`, dropped in `close_device` after the parent's
    /// worker is quiesced.
    mm: AtomicPtr<bindings::mm_struct>,
    /// Pinned pages of the data path (iommufd only; see [`crate::dma`]).
    #[pin]
    pins: PinCache,
    /// Where the VMM sees the rings, for single-access ring indexes (see
    /// [`crate::rings`]).
    #[pin]
    rings: RingMap,
}

/// A vhost-mdev instance; `struct vhost_mdev_device` of the C ABI.
///
/// # Invariants
///
/// `vdev` is the first field (VFIO's layout requirement). `data` is
/// initialised when `data_init` is true, which it is for every instance that
/// `create` returned successfully; `parent` outlives the instance (a parent
/// unregisters, removing its instances, before it goes); `priv_` is the
/// parent's instance until `destroy`.
#[repr(C)]
pub(crate) struct Instance {
    vdev: Opaque<bindings::vfio_device>,
    data_init: bool,
    data: Data,
}

// SAFETY: all mutable state is behind the mutex, the spinlock or atomics;
// the raw pointers are to objects that outlive the instance.
unsafe impl Sync for Instance {}
// SAFETY: as above.
unsafe impl Send for Instance {}

const _: () = assert!(offset_of!(Instance, vdev) == 0);

/// The VFIO device ops of every instance.
struct VfioOps(bindings::vfio_device_ops);

// SAFETY: the ops are immutable; the name pointer is to a static string.
unsafe impl Sync for VfioOps {}

static VFIO_OPS: VfioOps = VfioOps(bindings::vfio_device_ops {
    name: c_str!("vhost-mdev").as_char_ptr() as *mut c_char,
    init: None,
    release: Some(release),
    bind_iommufd: Some(bindings::vfio_iommufd_emulated_bind),
    unbind_iommufd: Some(bindings::vfio_iommufd_emulated_unbind),
    attach_ioas: Some(bindings::vfio_iommufd_emulated_attach_ioas),
    detach_ioas: Some(bindings::vfio_iommufd_emulated_detach_ioas),
    open_device: Some(open_device),
    close_device: Some(close_device),
    read: Some(read),
    write: Some(write),
    ioctl: Some(ioctl),
    mmap: Some(mmap),
    request: Some(request),
    match_: None,
    dma_unmap: Some(dma_unmap),
    device_feature: None,
});

/// The parent's ops and instance, as the protocol model's [`Backend`].
struct Ops<'a> {
    inst: &'a Data,
}

impl Ops<'_> {
    fn ops(&self) -> &bindings::vhost_mdev_device_ops {
        // SAFETY: `parent` outlives the instance (type invariant).
        unsafe { (*self.inst.parent).ops() }
    }

    fn priv_(&self) -> *mut c_void {
        self.inst.priv_.load(Ordering::Acquire)
    }
}

/// Calls a parent op that registration checked to be present.
macro_rules! call {
    ($self:expr, $op:ident $(, $arg:expr)*) => {{
        let f = $self.ops().$op;
        match f {
            // SAFETY: `priv_` is the parent's live instance (type invariant
            // of `Instance`); the model checked every argument against the
            // parent's limits, as the C ABI promises.
            Some(f) => unsafe { f($self.priv_() $(, $arg)*) },
            None => Default::default(),
        }
    }};
}

impl Backend for Ops<'_> {
    fn device_id(&self) -> u32 {
        call!(self, get_device_id)
    }
    fn device_features(&self) -> u64 {
        call!(self, get_device_features)
    }
    fn set_driver_features(&mut self, features: u64) -> bool {
        let r: i32 = call!(self, set_driver_features, features);
        r == 0
    }
    fn config_size(&self) -> u32 {
        call!(self, get_config_size)
    }
    fn get_config(&self, off: u32, buf: &mut [u8]) {
        let len = buf.len() as u32;
        call!(self, get_config, off, buf.as_mut_ptr().cast(), len)
    }
    fn set_config(&mut self, off: u32, data: &[u8]) {
        let len = data.len() as u32;
        call!(self, set_config, off, data.as_ptr().cast(), len)
    }
    fn vq_count(&self) -> u32 {
        self.inst.nvqs()
    }
    fn vq_num_max(&self) -> u16 {
        call!(self, get_vq_num_max)
    }
    fn set_vq_num(&mut self, idx: u16, num: u32) {
        call!(self, set_vq_num, idx, num)
    }
    fn set_vq_address(&mut self, idx: u16, desc: u64, driver: u64, device: u64) {
        call!(self, set_vq_address, idx, desc, driver, device)
    }
    fn set_vq_ready(&mut self, idx: u16, ready: bool) {
        call!(self, set_vq_ready, idx, ready)
    }
    fn set_vq_base(&mut self, idx: u16, base: u16) {
        call!(self, set_vq_base, idx, base)
    }
    fn get_vq_base(&self, idx: u16) -> u16 {
        call!(self, get_vq_base, idx)
    }
    fn start(&mut self) -> Result<(), proto::Errno> {
        let r: i32 = call!(self, start);
        if r < 0 {
            Err(-r)
        } else {
            Ok(())
        }
    }
    fn reset(&mut self) {
        call!(self, reset);
        self.inst.device_status.store(0, Ordering::Release);
    }
    fn suspend(&mut self) -> Result<(), proto::Errno> {
        if self.ops().suspend.is_none() {
            return Err(proto::errno::EOPNOTSUPP);
        }
        let r: i32 = call!(self, suspend);
        if r < 0 {
            Err(-r)
        } else {
            Ok(())
        }
    }
    fn resume(&mut self) -> Result<(), proto::Errno> {
        if self.ops().resume.is_none() {
            return Err(proto::errno::EOPNOTSUPP);
        }
        let r: i32 = call!(self, resume);
        if r < 0 {
            Err(-r)
        } else {
            Ok(())
        }
    }
    fn device_status(&self) -> u8 {
        self.inst.device_status.load(Ordering::Acquire)
    }
}

/// Which transport a request came on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    Message { need_reply: bool },
    Ioctl,
}

/// Converts our `vfio_device` pointer back to the instance.
///
/// # Safety
///
/// `vdev` must be the `vdev` of a live `Instance` whose data is initialised.
unsafe fn inst<'a>(vdev: *mut bindings::vfio_device) -> &'a Data {
    // SAFETY: `vdev` is the first field of the `#[repr(C)]` `Instance`; the
    // caller guarantees it is live and initialised.
    unsafe { &(*vdev.cast::<Instance>()).data }
}

impl Instance {
    /// Creates the instance for `mdev` and registers it with VFIO.
    ///
    /// # Safety
    ///
    /// `mdev` must be a live mdev device being probed for a type of `parent`
    /// with index `type_index`.
    pub(crate) unsafe fn create(
        parent: &Parent,
        mdev: *mut bindings::mdev_device,
        type_index: u32,
    ) -> Result {
        // SAFETY: `mdev` is live; its `dev` is the device VFIO hangs off.
        let dev = unsafe { ptr::addr_of_mut!((*mdev).dev) };
        // SAFETY: `VFIO_OPS` is static; the size covers the `vfio_device` at
        // offset 0 of `Instance`.
        let vdev = unsafe {
            bindings::vm_helper_vfio_alloc_device(size_of::<Instance>(), dev, &VFIO_OPS.0)
        };
        let vdev = kernel::error::from_err_ptr(vdev)?;
        // VFIO calls our `release` when the last reference goes, however
        // late: module exit waits for it.
        crate::parent::live_get();
        let this = vdev.cast::<Instance>();
        // From here on, dropping `put` frees the allocation (and, once
        // `data_init` is set, drops the data in `release`).
        let put = ScopeGuard::new(|| {
            // SAFETY: our reference from `_vfio_alloc_device`, not
            // registered with VFIO (or unregistered again).
            unsafe { bindings::vm_helper_vfio_put_device(vdev) }
        });

        let reply = KVec::from_elem(0u8, proto::MAX_PAYLOAD, GFP_KERNEL)?;
        let ioctl_reply = KVec::from_elem(0u8, proto::MAX_PAYLOAD, GFP_KERNEL)?;
        let msg = KVec::from_elem(0u8, proto::MSG_REGION_SIZE, GFP_KERNEL)?;
        let init = pin_init!(Data {
            parent: parent as *const Parent,
            mdev,
            priv_: AtomicPtr::new(ptr::null_mut()),
            nvqs: AtomicU32::new(0),
            state <- new_mutex!(Inner {
                model: Model::new(),
                staged: None,
                reply,
                ioctl_reply,
                msg,
            }, "vhost_mdev_state"),
            irqs <- new_spinlock!(Irqs {
                vq: [Irqs::NONE; proto::MAX_VQS],
                config: None,
                req: None,
            }, "vhost_mdev_irqs"),
            ioeventfds: [const { Opaque::new(ptr::null_mut()) }; proto::MAX_VQS],
            kicks_on: AtomicBool::new(false),
            device_status: AtomicU8::new(0),
            mm: AtomicPtr::new(ptr::null_mut()),
            pins <- PinCache::new(),
            rings <- RingMap::new(),
        });
        // SAFETY: `this` is a zeroed allocation large enough for `Instance`
        // that nothing else references yet; the data is never moved (VFIO
        // owns the allocation until `release`, which drops it in place).
        let Ok(()) = unsafe { init.__pinned_init(ptr::addr_of_mut!((*this).data)) };
        // SAFETY: `this` is valid; nothing else accesses it yet.
        unsafe { (*this).data_init = true };
        // SAFETY: initialised just above; only shared references are made.
        let data = unsafe { &(*this).data };

        // The parent's instance. The handle is valid for upcalls from here.
        let raw = match parent.info.create {
            // SAFETY: `this` is an initialised instance, a valid
            // `vhost_mdev_device` handle until the parent's `destroy`.
            Some(f) => unsafe { f(parent.info.priv_, this.cast(), type_index) },
            None => ptr::null_mut(),
        };
        let priv_ = match kernel::error::from_err_ptr(raw) {
            Ok(p) if !p.is_null() => p,
            r => return Err(r.err().unwrap_or(EINVAL)),
        };
        data.priv_.store(priv_, Ordering::Release);
        let destroy = ScopeGuard::new(|| {
            if let Some(f) = parent.ops().destroy {
                // SAFETY: `priv_` came from the parent's `create`; this runs
                // once, before `put` frees the instance (guards drop in
                // reverse order).
                unsafe { f(priv_) };
            }
        });

        // SAFETY: `priv_` is the parent's live instance.
        let nvqs = unsafe { parent.ops().get_vq_count.map_or(0, |f| f(priv_)) };
        if nvqs == 0 || nvqs as usize > proto::MAX_VQS {
            return Err(EINVAL);
        }
        data.nvqs.store(nvqs, Ordering::Release);

        // SAFETY: `vdev` is initialised; from here VFIO may call our ops.
        to_result(unsafe { bindings::vfio_register_emulated_iommu_dev(vdev) })?;
        // SAFETY: `mdev` is live; the instance is found from it in `destroy`
        // and by `vhost_mdev_priv_from_dev()`.
        unsafe { bindings::vm_helper_dev_set_drvdata(dev, this.cast()) };

        let groups = parent.info.dev_groups;
        if !groups.is_null() {
            // SAFETY: `dev` is registered; `groups` is a NULL-terminated
            // array of the parent driver that outlives the registration.
            let r = unsafe { bindings::sysfs_create_groups(&mut (*dev).kobj, groups) };
            if r != 0 {
                // SAFETY: registered above; unregistering waits for a user
                // that opened it meanwhile to close it.
                unsafe {
                    bindings::vm_helper_dev_set_drvdata(dev, ptr::null_mut());
                    bindings::vfio_unregister_group_dev(vdev);
                }
                return Err(Error::from_errno(r));
            }
        }
        destroy.dismiss();
        put.dismiss();
        Ok(())
    }

    /// Removes the instance of `mdev`: waits until its user lets go (the
    /// request IRQ tells it to), then destroys the parent's instance.
    ///
    /// # Safety
    ///
    /// `mdev` must be a device that `create` succeeded for, not destroyed.
    pub(crate) unsafe fn destroy(mdev: *mut bindings::mdev_device) {
        // SAFETY: `mdev` is live.
        let dev = unsafe { ptr::addr_of_mut!((*mdev).dev) };
        // SAFETY: set in `create`.
        let this = unsafe { bindings::vm_helper_dev_get_drvdata(dev) }.cast::<Instance>();
        // SAFETY: `this` is a live instance (created, not yet destroyed).
        let data = unsafe { &(*this).data };
        // SAFETY: `parent` outlives the instance.
        let parent = unsafe { &*data.parent };
        if !parent.info.dev_groups.is_null() {
            // SAFETY: created in `create`.
            unsafe { bindings::sysfs_remove_groups(&mut (*dev).kobj, parent.info.dev_groups) };
        }
        let vdev = this.cast::<bindings::vfio_device>();
        // SAFETY: registered in `create`. This blocks, calling `request`,
        // until the device is closed; `close_device` has reset it by then.
        unsafe { bindings::vfio_unregister_group_dev(vdev) };
        if let Some(f) = parent.ops().destroy {
            // SAFETY: the device is closed and unregistered: no op or upcall
            // of this instance runs any more.
            unsafe { f(data.priv_.load(Ordering::Acquire)) };
        }
        // SAFETY: `dev` is live.
        unsafe { bindings::vm_helper_dev_set_drvdata(dev, ptr::null_mut()) };
        // SAFETY: drops our reference; `release` runs and VFIO frees.
        unsafe { bindings::vm_helper_vfio_put_device(vdev) };
    }
}

impl Data {
    fn nvqs(&self) -> u32 {
        self.nvqs.load(Ordering::Acquire)
    }

    fn ops(&self) -> Ops<'_> {
        Ops { inst: self }
    }

    /// Kicks queue `idx` (checked `< nvqs`), in any context.
    fn kick(&self, idx: u16) {
        if self.kicks_on.load(Ordering::Acquire) {
            // SAFETY: `priv_` is live while kicks are on (they are turned
            // off, and ioeventfds unbound, before close resets the device).
            if let Some(f) = unsafe { (*self.parent).ops() }.kick_vq {
                // SAFETY: as above; `kick_vq` is documented to run in atomic
                // context.
                unsafe { f(self.priv_.load(Ordering::Acquire), idx) };
            }
        }
    }

    fn signal(&self, index: u32, i: usize) {
        let mut irqs = self.irqs.lock();
        if let Some(e) = irqs.slot(index, i) {
            e.signal();
        }
    }

    /// Runs one decoded request; returns the reply length (in `inner.reply`
    /// for the message transport, `inner.ioctl_reply` for ioctls).
    fn dispatch(
        &self,
        inner: &mut Inner,
        request: u64,
        payload_len: usize,
        transport: Transport,
    ) -> Result<usize> {
        // The payload is in `inner.msg` after the header.
        let reply_buf = match transport {
            Transport::Message { .. } => &mut inner.reply,
            Transport::Ioctl => &mut inner.ioctl_reply,
        };
        let (model, msg) = (&mut inner.model, &inner.msg);
        let payload = &msg[proto::HDR_SIZE..proto::HDR_SIZE + payload_len];
        let req = proto::decode(request, payload).map_err(err)?;
        if let Transport::Message { need_reply } = transport {
            if need_reply != req.has_reply() {
                return Err(EINVAL);
            }
        }
        let hva = matches!(req, proto::Request::SetVringHva(_));
        if hva {
            self.rings.check_sender()?;
        }
        let mut reply = Reply::new(&mut reply_buf[..]);
        let mut ops = self.ops();
        model.handle(&mut ops, &req, &mut reply).map_err(err)?;
        let len = reply.len();
        if hva {
            self.rings.adopt_sender();
        }
        if req == proto::Request::SetStatus(0) {
            // A reset discards an unread reply, on either transport, and
            // the rings (the worker is quiet).
            inner.staged = None;
            self.rings.clear();
        } else if !req.has_reply() {
            self.rings.update(&inner.model, self.nvqs());
        }
        Ok(len)
    }

    fn discard_reply(inner: &mut Inner) {
        inner.staged = None;
    }

    /// `pwrite` of a message on region 0.
    fn msg_write(&self, buf: UserSlice, count: usize) -> Result<isize> {
        if !(proto::HDR_SIZE..=proto::MSG_REGION_SIZE).contains(&count) {
            return Err(EINVAL);
        }
        let mut inner = self.state.lock();
        // Any new write discards an unread reply.
        Self::discard_reply(&mut inner);
        buf.reader().read_slice(&mut inner.msg[..count])?;
        let (hdr, _) = proto::parse_message(&inner.msg[..count]).map_err(err)?;
        let need_reply = hdr.flags & proto::NEED_REPLY != 0;
        let len = self.dispatch(
            &mut inner,
            hdr.request,
            hdr.size as usize,
            Transport::Message { need_reply },
        )?;
        if need_reply {
            inner.staged = Some(Staged {
                request: hdr.request,
                len,
            });
        }
        Ok(count as isize)
    }

    /// `pread` of the staged reply on region 0.
    fn msg_read(&self, buf: UserSlice, count: usize) -> Result<isize> {
        let mut inner = self.state.lock();
        let staged = inner
            .staged
            .as_ref()
            .ok_or(Error::from_errno(-(bindings::ENODATA as i32)))?;
        let (request, len) = (staged.request, staged.len);
        if count != proto::HDR_SIZE + len {
            return Err(EINVAL);
        }
        let hdr = proto::Header {
            request,
            flags: 0,
            size: len as u32,
        };
        let mut w = buf.writer();
        w.write_slice(&hdr.encode())?;
        w.write_slice(&inner.reply[..len])?;
        inner.staged = None;
        Ok(count as isize)
    }

    /// A 2-byte write of the queue index at `index * PAGE_SIZE` of region 1.
    fn notify_write(&self, buf: UserSlice, count: usize, off: u64) -> Result<isize> {
        if count != 2 || off % PAGE_SIZE as u64 != 0 {
            return Err(EINVAL);
        }
        let idx = off / PAGE_SIZE as u64;
        if idx >= u64::from(self.nvqs()) {
            return Err(EINVAL);
        }
        let mut v = [0u8; 2];
        buf.reader().read_slice(&mut v)?;
        if u64::from(u16::from_ne_bytes(v)) != idx {
            return Err(EINVAL);
        }
        self.kick(idx as u16);
        Ok(2)
    }

    /// A vhost request issued as an ioctl on the device fd.
    fn vhost_ioctl(&self, cmd: u32, arg: usize) -> Result<c_long> {
        let fixed = proto::fixed_payload_size(cmd).ok_or(ENOTTY)?;
        let mut inner = self.state.lock();
        let mut reader = UserSlice::new(arg, proto::MAX_PAYLOAD).reader();
        let mut len = fixed;
        reader.read_slice(&mut inner.msg[proto::HDR_SIZE..proto::HDR_SIZE + fixed])?;
        if cmd == proto::req::SET_CONFIG {
            // struct vhost_vdpa_config: the data follows the header.
            let h = proto::HDR_SIZE;
            let clen = u32::from_ne_bytes([
                inner.msg[h + 4],
                inner.msg[h + 5],
                inner.msg[h + 6],
                inner.msg[h + 7],
            ]) as usize;
            if clen > proto::MAX_PAYLOAD - proto::CONFIG_HDR_SIZE {
                return Err(EINVAL);
            }
            let start = h + proto::CONFIG_HDR_SIZE;
            reader.read_slice(&mut inner.msg[start..start + clen])?;
            len += clen;
        }
        let rlen = self.dispatch(&mut inner, u64::from(cmd), len, Transport::Ioctl)?;
        if rlen > 0 {
            UserSlice::new(arg, rlen)
                .writer()
                .write_slice(&inner.ioctl_reply[..rlen])?;
        }
        Ok(0)
    }

    fn get_info(&self, arg: usize) -> Result<c_long> {
        let minsz = offset_of!(bindings::vfio_device_info, num_irqs) + 4;
        let mut info = bindings::vfio_device_info::default();
        read_struct(arg, &mut info, minsz)?;
        if (info.argsz as usize) < minsz {
            return Err(EINVAL);
        }
        info.flags = bindings::VFIO_DEVICE_FLAGS_RESET;
        info.num_regions = NUM_REGIONS;
        info.num_irqs = NUM_IRQS;
        write_struct(arg, &info, minsz)
    }

    fn get_region_info(&self, arg: usize) -> Result<c_long> {
        let minsz = offset_of!(bindings::vfio_region_info, offset) + 8;
        let mut info = bindings::vfio_region_info::default();
        read_struct(arg, &mut info, minsz)?;
        if (info.argsz as usize) < minsz {
            return Err(EINVAL);
        }
        match u64::from(info.index) {
            REGION_MSG => {
                info.flags =
                    bindings::VFIO_REGION_INFO_FLAG_READ | bindings::VFIO_REGION_INFO_FLAG_WRITE;
                info.size = proto::MSG_REGION_SIZE as u64;
            }
            REGION_NOTIFY => {
                info.flags = bindings::VFIO_REGION_INFO_FLAG_WRITE;
                info.size = u64::from(self.nvqs()) * PAGE_SIZE as u64;
            }
            _ => return Err(EINVAL),
        }
        info.offset = u64::from(info.index) << REGION_SHIFT;
        info.cap_offset = 0;
        write_struct(arg, &info, minsz)
    }

    fn irq_count(&self, index: u32) -> u32 {
        match index {
            IRQ_VQ => self.nvqs(),
            IRQ_CONFIG | IRQ_REQ => 1,
            _ => 0,
        }
    }

    fn get_irq_info(&self, arg: usize) -> Result<c_long> {
        let minsz = offset_of!(bindings::vfio_irq_info, count) + 4;
        let mut info = bindings::vfio_irq_info::default();
        read_struct(arg, &mut info, minsz)?;
        if (info.argsz as usize) < minsz || info.index >= NUM_IRQS {
            return Err(EINVAL);
        }
        info.flags = bindings::VFIO_IRQ_INFO_EVENTFD;
        info.count = self.irq_count(info.index);
        write_struct(arg, &info, minsz)
    }

    fn set_irqs(&self, arg: usize) -> Result<c_long> {
        let minsz = offset_of!(bindings::vfio_irq_set, count) + 4;
        let mut hdr = bindings::vfio_irq_set::default();
        read_struct(arg, &mut hdr, minsz)?;
        let mut data_size: usize = 0;
        // SAFETY: `hdr` is a valid, initialised header on our stack.
        let r = unsafe {
            bindings::vfio_set_irqs_validate_and_prepare(
                &mut hdr,
                self.irq_count(hdr.index) as i32,
                NUM_IRQS as i32,
                &mut data_size,
            )
        };
        if r != 0 {
            return Err(Error::from_errno(r));
        }
        let action = hdr.flags & bindings::VFIO_IRQ_SET_ACTION_TYPE_MASK;
        if action != bindings::VFIO_IRQ_SET_ACTION_TRIGGER {
            return Err(EINVAL);
        }
        let (index, start, count) = (hdr.index, hdr.start as usize, hdr.count as usize);
        let dtype = hdr.flags & bindings::VFIO_IRQ_SET_DATA_TYPE_MASK;
        // `validate_and_prepare` checked start + count <= the IRQ count
        // (at most MAX_VQS), so `data_size <= 4 * MAX_VQS`.
        let mut data = [0u8; 4 * proto::MAX_VQS];
        if data_size > data.len() {
            return Err(EINVAL);
        }
        UserSlice::new(arg.wrapping_add(minsz), data_size)
            .reader()
            .read_slice(&mut data[..data_size])?;

        if dtype == bindings::VFIO_IRQ_SET_DATA_NONE && count == 0 {
            // Detach every eventfd of the index.
            let mut old = [Irqs::NONE; proto::MAX_VQS + 1];
            let n = self.irq_count(index) as usize;
            let mut irqs = self.irqs.lock();
            for (i, o) in old.iter_mut().enumerate().take(n) {
                *o = irqs.slot(index, i).take();
            }
            drop(irqs);
            drop(old);
            return Ok(0);
        }
        if dtype == bindings::VFIO_IRQ_SET_DATA_NONE || dtype == bindings::VFIO_IRQ_SET_DATA_BOOL {
            for i in 0..count {
                if dtype == bindings::VFIO_IRQ_SET_DATA_NONE || data[i] != 0 {
                    self.signal(index, start + i);
                }
            }
            return Ok(0);
        }
        // DATA_EVENTFD: take every new eventfd first, so that a bad fd
        // changes nothing.
        let mut new = [Irqs::NONE; proto::MAX_VQS];
        let mut detach = [false; proto::MAX_VQS];
        for i in 0..count {
            let fd = i32::from_ne_bytes([
                data[4 * i],
                data[4 * i + 1],
                data[4 * i + 2],
                data[4 * i + 3],
            ]);
            if fd == -1 {
                detach[i] = true;
            } else if fd < 0 {
                return Err(EBADF);
            } else {
                new[i] = Some(EventFd::from_fd(fd)?);
            }
        }
        let mut old = [Irqs::NONE; proto::MAX_VQS];
        let mut irqs = self.irqs.lock();
        for i in 0..count {
            if detach[i] || new[i].is_some() {
                let slot = irqs.slot(index, start + i);
                old[i] = core::mem::replace(slot, new[i].take());
            }
        }
        drop(irqs);
        // The old contexts are put outside the spinlock; the signaller holds
        // the lock while it signals, so none is in use any more.
        drop(old);
        Ok(0)
    }

    fn ioeventfd(&self, arg: usize) -> Result<c_long> {
        let minsz = offset_of!(bindings::vfio_device_ioeventfd, fd) + 4;
        let mut ie = bindings::vfio_device_ioeventfd::default();
        read_struct(arg, &mut ie, minsz)?;
        if (ie.argsz as usize) < minsz || ie.flags != bindings::VFIO_DEVICE_IOEVENTFD_16 {
            return Err(EINVAL);
        }
        let region = ie.offset >> REGION_SHIFT;
        let off = ie.offset & ((1u64 << REGION_SHIFT) - 1);
        if region != REGION_NOTIFY || off % PAGE_SIZE as u64 != 0 {
            return Err(EINVAL);
        }
        let idx = off / PAGE_SIZE as u64;
        if idx >= u64::from(self.nvqs()) || ie.data != idx {
            return Err(EINVAL);
        }
        let _guard = self.state.lock();
        let slot = self.ioeventfds[idx as usize].get();
        if ie.fd == -1 {
            // SAFETY: `slot` is ours, handed only to the virqfd functions;
            // disabling an unbound slot is a no-op.
            unsafe { bindings::vfio_virqfd_disable(slot) };
            return Ok(0);
        }
        // A bound slot is refused with EBUSY by VFIO itself, under its lock.
        // SAFETY: `opaque` (`self`) lives until close, which disables every
        // slot and flushes VFIO's cleanup work; the handler only kicks.
        let r = unsafe {
            bindings::vfio_virqfd_enable(
                ptr::from_ref(self).cast_mut().cast(),
                Some(ioeventfd_handler),
                None,
                idx as usize as *mut c_void,
                slot,
                ie.fd,
            )
        };
        to_result(r)?;
        Ok(0)
    }

    fn reset(&self) -> Result<c_long> {
        let mut inner = self.state.lock();
        Self::discard_reply(&mut inner);
        let mut ops = self.ops();
        inner.model.reset(&mut ops);
        self.rings.clear();
        Ok(0)
    }
}

/// Copies the first `minsz` bytes of a VFIO argument struct in.
fn read_struct<T>(arg: usize, out: &mut T, minsz: usize) -> Result {
    if minsz > size_of::<T>() {
        return Err(EINVAL);
    }
    // SAFETY: `out` is a plain-old-data bindgen struct of at least `minsz`
    // bytes; any byte pattern is valid for it.
    let bytes = unsafe { core::slice::from_raw_parts_mut(ptr::from_mut(out).cast::<u8>(), minsz) };
    UserSlice::new(arg, minsz).reader().read_slice(bytes)
}

/// Copies the first `minsz` bytes of a VFIO argument struct out.
fn write_struct<T>(arg: usize, v: &T, minsz: usize) -> Result<c_long> {
    if minsz > size_of::<T>() {
        return Err(EINVAL);
    }
    // SAFETY: `v` is a bindgen struct of at least `minsz` bytes, fully
    // initialised (built from `Default` and field writes).
    let bytes = unsafe { core::slice::from_raw_parts(ptr::from_ref(v).cast::<u8>(), minsz) };
    UserSlice::new(arg, minsz).writer().write_slice(bytes)?;
    Ok(0)
}

/// The virqfd wake-up handler of a bound ioeventfd: kicks the queue.
///
/// # Safety
///
/// Called by VFIO's virqfd code in atomic context with the `opaque` and
/// `data` given to `vfio_virqfd_enable()`: a live `Data` and a queue index.
unsafe extern "C" fn ioeventfd_handler(opaque: *mut c_void, data: *mut c_void) -> i32 {
    // SAFETY: `opaque` is the `Data` given to `vfio_virqfd_enable`, live
    // until the virqfd is disabled.
    let this = unsafe { &*opaque.cast::<Data>() };
    this.kick(data as usize as u16);
    0
}

/// `vfio_device_ops.release`: drops the Rust part of the instance.
///
/// # Safety
///
/// Called by VFIO once, when the last reference to our `vdev` goes, before
/// VFIO frees the allocation.
unsafe extern "C" fn release(vdev: *mut bindings::vfio_device) {
    let this = vdev.cast::<Instance>();
    // SAFETY: VFIO calls `release` once, when the last reference goes; the
    // data is initialised iff `data_init` (type invariant).
    unsafe {
        if (*this).data_init {
            (*this).data_init = false;
            ptr::drop_in_place(ptr::addr_of_mut!((*this).data));
        }
    }
    // Counted when the device was allocated; the last of this module's
    // code that runs for it.
    crate::parent::live_put();
}

/// `vfio_device_ops.open_device`: the first open.
///
/// # Safety
///
/// Called by VFIO with one of our registered, initialised devices.
unsafe extern "C" fn open_device(vdev: *mut bindings::vfio_device) -> i32 {
    // SAFETY: VFIO only opens registered devices, which are initialised.
    let this = unsafe { inst(vdev) };
    let _guard = this.state.lock();
    // SAFETY: reading `current->mm` of the opening task.
    let mm = unsafe { bindings::vm_helper_current_mm() };
    if !mm.is_null() {
        // SAFETY: `mm` is the live mm of the current task; the reference
        // is dropped in `close_device`.
        unsafe { bindings::vm_helper_mmgrab(mm) };
    }
    this.mm.store(mm, Ordering::Release);
    // SAFETY: `vdev` is being opened; `close_device` closes the cache.
    unsafe { this.pins.open(vdev) };
    this.device_status.store(0, Ordering::Release);
    this.kicks_on.store(true, Ordering::Release);
    0
}

/// `vfio_device_ops.close_device`: the last close; stops the device.
///
/// # Safety
///
/// Called by VFIO with one of our devices that is open.
unsafe extern "C" fn close_device(vdev: *mut bindings::vfio_device) {
    // SAFETY: VFIO only closes open devices.
    let this = unsafe { inst(vdev) };
    let mut inner = this.state.lock();
    // 1. Unbind the ioeventfds. Every slot, bound or not: a virqfd whose
    // eventfd was closed clears its slot itself and only queues its
    // shutdown, which `vfio_virqfd_disable()` waits for in any case.
    for slot in this.ioeventfds.iter() {
        // SAFETY: the slot is only ever handed to the virqfd functions.
        unsafe { bindings::vfio_virqfd_disable(slot.get()) };
    }
    // 2. Block new kicks from the notify region.
    this.kicks_on.store(false, Ordering::Release);
    // 3. Stop the device: the parent cancels and waits for its worker and
    // drops its translations; no DMA is in flight when it returns.
    let mut ops = this.ops();
    inner.model.reset(&mut ops);
    // ... and the core's own translations: unpin every cached page, and
    // forget the rings' user addresses.
    this.pins.close();
    this.rings.clear();
    // 4. Release the IRQ eventfds.
    let mut old_vq = [Irqs::NONE; proto::MAX_VQS];
    let mut irqs = this.irqs.lock();
    for (o, s) in old_vq.iter_mut().zip(irqs.vq.iter_mut()) {
        *o = s.take();
    }
    let old_cfg = irqs.config.take();
    let old_req = irqs.req.take();
    drop(irqs);
    drop((old_vq, old_cfg, old_req));
    // 5. Clear the staged reply (the status was cleared by the reset).
    Data::discard_reply(&mut inner);
    // The worker is quiet: nothing uses the opener's mm any more.
    let mm = this.mm.swap(ptr::null_mut(), Ordering::AcqRel);
    if !mm.is_null() {
        // SAFETY: the reference taken in `open_device`.
        unsafe { bindings::vm_helper_mmdrop(mm) };
    }
}

/// `vfio_device_ops.read`: the message region's replies.
///
/// # Safety
///
/// Called by VFIO for an open device; `buf` is a user pointer of `count`
/// bytes and `ppos` valid for the call.
unsafe extern "C" fn read(
    vdev: *mut bindings::vfio_device,
    buf: *mut c_char,
    count: usize,
    ppos: *mut bindings::loff_t,
) -> isize {
    // SAFETY: called on an open device; `ppos` is valid for the call.
    let (this, pos) = unsafe { (inst(vdev), *ppos as u64) };
    let r = if pos >> REGION_SHIFT == REGION_MSG && pos == 0 {
        this.msg_read(UserSlice::new(buf as usize, count), count)
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
unsafe extern "C" fn write(
    vdev: *mut bindings::vfio_device,
    buf: *const c_char,
    count: usize,
    ppos: *mut bindings::loff_t,
) -> isize {
    // SAFETY: called on an open device; `ppos` is valid for the call.
    let (this, pos) = unsafe { (inst(vdev), *ppos as u64) };
    let user = UserSlice::new(buf as usize, count);
    let r = match pos >> REGION_SHIFT {
        REGION_MSG if pos == 0 => this.msg_write(user, count),
        REGION_NOTIFY => this.notify_write(user, count, pos & ((1u64 << REGION_SHIFT) - 1)),
        _ => Err(EINVAL),
    };
    r.unwrap_or_else(|e| e.to_errno() as isize)
}

/// `vfio_device_ops.ioctl`: VFIO device ioctls and the vhost ioctl transport.
///
/// # Safety
///
/// Called by VFIO for an open device; `arg` is an untrusted user pointer.
unsafe extern "C" fn ioctl(vdev: *mut bindings::vfio_device, cmd: c_uint, arg: c_ulong) -> c_long {
    // SAFETY: called on an open device.
    let this = unsafe { inst(vdev) };
    let arg = arg as usize;
    let r = match cmd {
        bindings::VM_VFIO_DEVICE_GET_INFO => this.get_info(arg),
        bindings::VM_VFIO_DEVICE_GET_REGION_INFO => this.get_region_info(arg),
        bindings::VM_VFIO_DEVICE_GET_IRQ_INFO => this.get_irq_info(arg),
        bindings::VM_VFIO_DEVICE_SET_IRQS => this.set_irqs(arg),
        bindings::VM_VFIO_DEVICE_RESET => this.reset(),
        bindings::VM_VFIO_DEVICE_IOEVENTFD => this.ioeventfd(arg),
        _ => this.vhost_ioctl(cmd, arg),
    };
    r.unwrap_or_else(|e| e.to_errno() as c_long)
}

/// `vfio_device_ops.mmap`: no region is mappable.
///
/// # Safety
///
/// Called by VFIO for an open device.
unsafe extern "C" fn mmap(
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
unsafe extern "C" fn request(vdev: *mut bindings::vfio_device, count: c_uint) {
    // SAFETY: VFIO calls `request` on a registered device.
    let this = unsafe { inst(vdev) };
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
    this.signal(IRQ_REQ, 0);
}

/// `vfio_device_ops.dma_unmap`: an IOVA range goes away.
///
/// # Safety
///
/// Called by VFIO (iommufd's access ops) for a registered device, with no
/// lock of ours held: while it is open, and once more after `close_device`
/// when iommufd destroys the access (`unmap(0, ~0)`; the cache is empty by
/// then).
unsafe extern "C" fn dma_unmap(vdev: *mut bindings::vfio_device, iova: u64, length: u64) {
    // SAFETY: VFIO calls `dma_unmap` only for a registered, initialised
    // device.
    let this = unsafe { inst(vdev) };
    // The state mutex is not taken here (see the locking rules of the
    // crate); the pin cache's lock is, which the data path never holds
    // across a call into VFIO.
    this.pins.unmap(iova, length);
    // SAFETY: `parent` outlives the instance.
    if let Some(f) = unsafe { (*this.parent).ops() }.dma_unmap {
        // SAFETY: `priv_` is live while the device is open.
        unsafe { f(this.priv_.load(Ordering::Acquire), iova, length) };
    }
}

/// Converts a C ABI handle to the instance data.
///
/// # Safety
///
/// `vdev` must be a handle passed to a parent's `create` whose instance is
/// not yet destroyed.
unsafe fn handle<'a>(vdev: *mut bindings::vhost_mdev_device) -> &'a Data {
    // SAFETY: the handle is the instance pointer (see `create`); parents may
    // use it only while the instance exists, after `create` returned.
    unsafe { &(*vdev.cast::<Instance>()).data }
}

/// `vhost_mdev_vq_interrupt()`: signals the eventfd of queue `idx`.
///
/// # Safety
///
/// `vdev` must be a live instance handle; process context only (the IRQ
/// lock is a plain spinlock, also taken by `SET_IRQS`: a softirq or hard
/// IRQ caller could interrupt its holder).
#[no_mangle]
pub(crate) unsafe extern "C" fn vhost_mdev_vq_interrupt(
    vdev: *mut bindings::vhost_mdev_device,
    idx: u16,
) {
    // SAFETY: the caller guarantees the handle is live.
    let this = unsafe { handle(vdev) };
    if u32::from(idx) < this.nvqs() {
        this.signal(IRQ_VQ, idx as usize);
    }
}

/// `vhost_mdev_config_changed()`: signals the config eventfd.
///
/// # Safety
///
/// `vdev` must be a live instance handle; process context only (as for
/// `vhost_mdev_vq_interrupt()`).
#[no_mangle]
pub(crate) unsafe extern "C" fn vhost_mdev_config_changed(vdev: *mut bindings::vhost_mdev_device) {
    // SAFETY: the caller guarantees the handle is live.
    unsafe { handle(vdev) }.signal(IRQ_CONFIG, 0);
}

/// `vhost_mdev_needs_reset()`: sets DEVICE_NEEDS_RESET and signals the
/// config eventfd. The device stays stopped until the driver resets it.
///
/// # Safety
///
/// `vdev` must be a live instance handle; process context only (as for
/// `vhost_mdev_vq_interrupt()`).
#[no_mangle]
pub(crate) unsafe extern "C" fn vhost_mdev_needs_reset(vdev: *mut bindings::vhost_mdev_device) {
    // SAFETY: the caller guarantees the handle is live.
    let this = unsafe { handle(vdev) };
    this.device_status
        .fetch_or(proto::status::NEEDS_RESET, Ordering::AcqRel);
    this.signal(IRQ_CONFIG, 0);
}

/// `vhost_mdev_dma_rw()`: reads or writes guest memory by IOVA.
///
/// An aligned 2-byte access is one load or store where it is a ring index
/// or event field (inside a ring of a configured queue): through the pin
/// cache with iommufd, else through the VMM's address space (see
/// [`crate::rings`]); never a byte-wise copy.
///
/// # Safety
///
/// `vdev` must be a live, open instance handle; `buf` valid for `len`
/// bytes; called in process context (a worker), never after `reset()`
/// returned for the current session.
#[no_mangle]
pub(crate) unsafe extern "C" fn vhost_mdev_dma_rw(
    vdev: *mut bindings::vhost_mdev_device,
    iova: u64,
    buf: *mut c_void,
    len: usize,
    write: bool,
) -> i32 {
    if len == 0 {
        return 0;
    }
    // SAFETY: the caller guarantees the handle is live.
    let this = unsafe { handle(vdev) };
    // SAFETY: the caller guarantees `buf` for `len` bytes.
    if unsafe { this.pins.rw(iova, buf.cast(), len, write) } {
        return 0;
    }
    if let Some(hva) = (len == 2).then(|| this.rings.lookup(iova)).flatten() {
        // A ring index or event field: one access through the VMM's
        // address space, never `vfio_dma_rw()`'s byte-wise copy. Only while
        // the IOVA is mapped: the device touches nothing that the IOMMU
        // does not map (the probe's bytes, possibly torn, are dropped).
        let mut probe = [0u8; 2];
        // SAFETY: the caller guarantees an open device; `probe` is ours.
        let r = unsafe {
            bindings::vfio_dma_rw(vdev.cast(), iova, probe.as_mut_ptr().cast(), 2, false)
        };
        if r != 0 {
            return r;
        }
        // SAFETY: the caller guarantees `buf` for 2 bytes, process context
        // and an open device whose worker `reset()` quiesces.
        return unsafe { this.rings.rw_u16(hva, buf.cast(), write) };
    }
    // SAFETY: the handle is the instance, whose first field is the
    // `vfio_device`; the caller guarantees the device is open and `buf`.
    unsafe { bindings::vfio_dma_rw(vdev.cast(), iova, buf, len, write) }
}

/// `vhost_mdev_dma_copy()`: copies guest memory to guest memory by IOVA,
/// page to page through the pinned-page cache.
///
/// Returns 0, or `-EOPNOTSUPP` when the cache cannot serve the copy (a type1
/// container, a failed pin, an unmapped IOVA): the parent then copies
/// through a buffer of its own with `vhost_mdev_dma_rw()`, which reports
/// the real error. Part of the copy may have been done by then.
///
/// # Safety
///
/// As for `vhost_mdev_dma_rw()`.
#[no_mangle]
pub(crate) unsafe extern "C" fn vhost_mdev_dma_copy(
    vdev: *mut bindings::vhost_mdev_device,
    dst: u64,
    src: u64,
    len: usize,
) -> i32 {
    // SAFETY: the caller guarantees the handle is live.
    let this = unsafe { handle(vdev) };
    if this.pins.copy(dst, src, len) {
        0
    } else {
        -(bindings::EOPNOTSUPP as i32)
    }
}

/// `vhost_mdev_dma_can_copy()`: whether `vhost_mdev_dma_copy()` can work
/// (the device is bound to iommufd), so that a parent picks its data path
/// once per worker run.
///
/// # Safety
///
/// `vdev` must be a live instance handle. Any context.
#[no_mangle]
pub(crate) unsafe extern "C" fn vhost_mdev_dma_can_copy(
    vdev: *mut bindings::vhost_mdev_device,
) -> bool {
    // SAFETY: the caller guarantees the handle is live.
    unsafe { handle(vdev) }.pins.enabled()
}

/// `vhost_mdev_dma_begin()`: the calling worker adopts the opener's mm.
///
/// Returns 0, `-EINVAL` outside a kthread or with an mm already adopted,
/// `-ESRCH` when the opener's address space is gone.
///
/// # Safety
///
/// `vdev` must be a live, open instance handle, called from the parent's
/// worker, which `reset()` stops before the device is closed; every
/// successful call must be paired with `vhost_mdev_dma_end()` before the
/// worker returns.
#[no_mangle]
pub(crate) unsafe extern "C" fn vhost_mdev_dma_begin(
    vdev: *mut bindings::vhost_mdev_device,
) -> i32 {
    // SAFETY: the caller guarantees the handle is live.
    let this = unsafe { handle(vdev) };
    // SAFETY: inspecting the current task.
    if !unsafe { bindings::vm_helper_current_is_kthread() }
        || !unsafe { bindings::vm_helper_current_mm() }.is_null()
    {
        return EINVAL.to_errno();
    }
    let mm = this.mm.load(Ordering::Acquire);
    // SAFETY: `mm` holds an `mmgrab` reference while the device is open,
    // and the worker only runs while it is open.
    if mm.is_null() || !unsafe { bindings::vm_helper_mmget_not_zero(mm) } {
        return ESRCH.to_errno();
    }
    // SAFETY: a kthread with no mm of its own; `mm` has a user reference
    // (from `mmget_not_zero`), put in `vhost_mdev_dma_end`.
    unsafe { bindings::kthread_use_mm(mm) };
    0
}

/// `vhost_mdev_dma_end()`: ends what `vhost_mdev_dma_begin()` started.
///
/// # Safety
///
/// Must follow a successful `vhost_mdev_dma_begin()` on the same worker.
#[no_mangle]
pub(crate) unsafe extern "C" fn vhost_mdev_dma_end(_vdev: *mut bindings::vhost_mdev_device) {
    // SAFETY: the caller adopted an mm with `vhost_mdev_dma_begin`, which
    // holds a user reference on it.
    unsafe {
        let mm = bindings::vm_helper_current_mm();
        bindings::kthread_unuse_mm(mm);
        bindings::mmput(mm);
    }
}

/// `vhost_mdev_priv_from_dev()`: the parent's instance of an mdev device
/// (for per-instance sysfs attributes).
///
/// # Safety
///
/// `dev` must be the device of a live instance of a vhost-mdev parent.
#[no_mangle]
pub(crate) unsafe extern "C" fn vhost_mdev_priv_from_dev(
    dev: *mut bindings::device,
) -> *mut c_void {
    // SAFETY: the caller guarantees `dev` is one of our mdev devices.
    let this = unsafe { bindings::vm_helper_dev_get_drvdata(dev) }.cast::<Instance>();
    if this.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: drvdata is set to a live instance while it exists.
    unsafe { (*this).data.priv_.load(Ordering::Acquire) }
}

/// `vhost_mdev_uuid()`: the instance's 16-byte UUID.
///
/// # Safety
///
/// `vdev` must be a live instance handle.
#[no_mangle]
pub(crate) unsafe extern "C" fn vhost_mdev_uuid(
    vdev: *mut bindings::vhost_mdev_device,
) -> *const u8 {
    // SAFETY: the handle is the instance, whose first field is the
    // `vfio_device`; its `dev` is the mdev's device, set at allocation (so
    // this works from the parent's `create` too).
    unsafe {
        let dev = (*vdev.cast::<bindings::vfio_device>()).dev;
        ptr::addr_of!((*bindings::vm_helper_to_mdev_device(dev)).uuid).cast()
    }
}

/// `vhost_mdev_is_open()`: whether a user has the device open.
///
/// # Safety
///
/// `vdev` must be a live instance handle. Any context.
#[no_mangle]
pub(crate) unsafe extern "C" fn vhost_mdev_is_open(vdev: *mut bindings::vhost_mdev_device) -> bool {
    // SAFETY: the caller guarantees the handle is live.
    unsafe { handle(vdev) }.kicks_on.load(Ordering::Acquire)
}
