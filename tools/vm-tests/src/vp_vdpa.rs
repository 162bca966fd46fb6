// SPDX-License-Identifier: GPL-2.0 OR MIT
//! `vp_vdpa` behind the vDPA bridge (`--vp-vdpa`, tests/vm/vp-vdpa.sh, on
//! `scripts/vm --machine q35-iommu`): the first virtio-net-pci NIC of the
//! VM (52:54:00:00:18:01) bound to `vp_vdpa`, its vDPA device to the
//! bridge; the second NIC (52:54:00:00:18:02) stays with the guest's
//! `virtio_net`, on the same QEMU hub. What the device says without DMA;
//! then frames both ways through the bridge's IOMMU domain, checked byte
//! for byte on the other NIC, kicked through the mapped doorbell page and
//! signalled from `vp_vdpa`'s hard IRQ handler; and an unmap while
//! running.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use libc::{EINVAL, EOPNOTSUPP};
use vfio_bindings::bindings::vfio as vb;
use vhost_mdev::device::page_size;
use vhost_mdev::driver::wait_eventfd;
use vhost_mdev::mem::DmaMemory;
use vhost_mdev::net::{build_frame, Mac, ETHERTYPE_TEST};
use vhost_mdev::uapi::*;
use vhost_mdev::{DmaMapper, IommuKind, MdevDevice, VhostBackend};

use crate::bridge::{pinned_pages, vdpa_name};
use crate::check;
use crate::raw::{wait_needs_reset, RawNet, RawOpts, TXQ};
use crate::util::*;

/// The NIC on `vp_vdpa` and the one the guest's `virtio_net` keeps.
pub const VP_MAC: Mac = Mac([0x52, 0x54, 0x00, 0x00, 0x18, 0x01]);
/// See [`VP_MAC`].
pub const PEER_MAC: Mac = Mac([0x52, 0x54, 0x00, 0x00, 0x18, 0x02]);

/// The network interface with MAC `mac`.
fn ifname(mac: Mac) -> Result<String, String> {
    let want = mac.to_string();
    for e in std::fs::read_dir("/sys/class/net").ctx("/sys/class/net")? {
        let e = e.ctx("/sys/class/net")?;
        let a = std::fs::read_to_string(e.path().join("address")).unwrap_or_default();
        if a.trim().eq_ignore_ascii_case(&want) {
            return Ok(e.file_name().to_string_lossy().into_owned());
        }
    }
    Err(format!("no network interface with MAC {want}"))
}

/// An `AF_PACKET` socket on one interface, for frames of
/// [`ETHERTYPE_TEST`].
pub struct Packet {
    fd: OwnedFd,
}

impl Packet {
    /// Opens it on the interface with MAC `mac` (which must be up).
    pub fn on(mac: Mac) -> Result<Self, String> {
        let name = ifname(mac)?;
        let proto = ETHERTYPE_TEST.to_be();
        // SAFETY: plain socket call.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
        if fd < 0 {
            return Err(format!(
                "AF_PACKET socket: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: a new fd of ours.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let cname = std::ffi::CString::new(name.clone()).ctx("ifname")?;
        // SAFETY: a NUL-terminated name.
        let idx = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        check!(idx != 0, "no index for {name}");
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_protocol = proto;
        sa.sll_ifindex = idx as i32;
        // SAFETY: `sa` is a sockaddr_ll of the size given.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                std::ptr::addr_of!(sa).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        check!(
            r == 0,
            "bind to {name}: {}",
            std::io::Error::last_os_error()
        );
        Ok(Packet { fd })
    }

    /// Sends `frame` as is.
    pub fn send(&self, frame: &[u8]) -> TestResult {
        // SAFETY: `frame` is valid for its length.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        check!(
            n == frame.len() as isize,
            "AF_PACKET send: {n} ({})",
            std::io::Error::last_os_error()
        );
        Ok(())
    }

    /// The next frame within `timeout`, or `None`.
    pub fn recv(&self, timeout: Duration) -> Result<Option<Vec<u8>>, String> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
        check!(r >= 0, "poll: {}", std::io::Error::last_os_error());
        if r == 0 {
            return Ok(None);
        }
        let mut buf = vec![0u8; 65536];
        // SAFETY: `buf` is valid for its length.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        check!(
            n >= 0,
            "AF_PACKET recv: {}",
            std::io::Error::last_os_error()
        );
        buf.truncate(n as usize);
        Ok(Some(buf))
    }
}

/// `vhost-mdev-tests --hub-check`: before `vp_vdpa` takes the first NIC,
/// frames go both ways between the two NICs (the guest's `virtio_net` on
/// both, through the IOMMU), byte for byte: the path the later tests use.
pub fn hub_check() -> TestResult {
    let a = Packet::on(VP_MAC)?;
    let b = Packet::on(PEER_MAC)?;
    for (seq, (from, to, src, dst)) in [(&a, &b, VP_MAC, PEER_MAC), (&b, &a, PEER_MAC, VP_MAC)]
        .into_iter()
        .enumerate()
    {
        for (k, len) in [60usize, 1514].into_iter().enumerate() {
            let f = build_frame(dst, src, (2 * seq + k) as u64, len).ctx("frame")?;
            from.send(&f)?;
            let got = to.recv(Duration::from_secs(5))?.ok_or(format!(
                "frame {src} -> {dst} of {len} bytes did not arrive"
            ))?;
            check!(
                got == f,
                "frame {src} -> {dst} of {len} bytes arrived changed"
            );
        }
    }
    Ok(())
}

fn attr(vdpa: &str, name: &str) -> Result<String, String> {
    let p = format!("/sys/bus/vdpa/devices/{vdpa}/{name}");
    Ok(std::fs::read_to_string(&p).ctx(&p)?.trim().to_string())
}

/// The bridge's `vq_irqs`: queue callbacks, and those in hard IRQ context.
fn vq_irqs(vdpa: &str) -> Result<(u64, u64), String> {
    let s = attr(vdpa, "vq_irqs")?;
    let mut it = s.split_whitespace().map(str::parse::<u64>);
    match (it.next(), it.next()) {
        (Some(Ok(a)), Some(Ok(b))) => Ok((a, b)),
        _ => Err(format!("vq_irqs: {s:?}")),
    }
}

/// `mmap` of one page of the device fd at `offset` with `prot`.
fn map_page(dev: &MdevDevice, offset: u64, prot: i32) -> Result<*mut u8, i32> {
    // SAFETY: a new mapping at an address of the kernel's choice.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            page_size() as usize,
            prot,
            libc::MAP_SHARED,
            dev.vfio().file().as_raw_fd(),
            offset as libc::off_t,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    Ok(p.cast())
}

/// A queue's doorbell page, mapped from region 1; unmapped on drop.
struct Doorbell(*mut u8);

impl Doorbell {
    fn map(dev: &MdevDevice, q: u16) -> Result<Self, String> {
        let off = dev.regions().notify.offset + u64::from(q) * page_size();
        map_page(dev, off, libc::PROT_WRITE)
            .map(Doorbell)
            .map_err(|e| format!("mmap of queue {q}'s doorbell page: errno {e}"))
    }

    /// The 2-byte write of the queue index that kicks it.
    fn ring(&self, q: u16) {
        // SAFETY: a writable mapping of a page, aligned.
        unsafe { std::ptr::write_volatile(self.0.cast::<u16>(), q) };
    }
}

impl Drop for Doorbell {
    fn drop(&mut self) {
        // SAFETY: the page mapped in `map`.
        unsafe { libc::munmap(self.0.cast(), page_size() as usize) };
    }
}

/// Without DMA, over type1: the device's id, queues, features and MAC
/// pass through; FEATURES_OK without VIRTIO_F_ACCESS_PLATFORM stays clear
/// (the status reads back without it, DRIVER_OK is then EINVAL), and
/// with it the device accepts it (QEMU 7.2's virtio-net refuses
/// FEATURES_OK only for a missing ACCESS_PLATFORM, which the core checks
/// first: a refusal by this device cannot be provoked through the core); the queue size
/// limit is vp_vdpa's; region 1 offers mmap, each queue's doorbell page
/// can be mapped write-only and nothing else; a memory table over type1
/// is refused with EOPNOTSUPP (PA mode pins through iommufd), nothing
/// pinned.
pub fn device(env: &Env) -> TestResult {
    let name = vdpa_name(env)?;
    check!(
        attr(&name, "dma_mode")? == "pa",
        "dma_mode {:?}, expected pa",
        attr(&name, "dma_mode")?
    );
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    check!(
        dev.get_device_id().ctx("device id")? == 1,
        "not a net device"
    );
    let nvqs = dev.get_vqs_count().ctx("queue count")?;
    check!(nvqs == 3, "{nvqs} queues, expected 3 (RX, TX, control)");
    let offered = dev.get_features().ctx("features")?;
    for bit in [
        VIRTIO_F_VERSION_1,
        VIRTIO_F_ACCESS_PLATFORM,
        VIRTIO_NET_F_MAC,
    ] {
        check!(
            offered & (1 << bit) != 0,
            "feature {bit} not offered ({offered:#x})"
        );
    }
    check!(
        dev.get_vring_num().ctx("GET_VRING_NUM")? == 256,
        "queue size limit is not vp_vdpa's 256"
    );
    let mac = dev.get_config(0, 6).ctx("config")?;
    check!(mac == VP_MAC.0, "config MAC {mac:x?}, expected {VP_MAC}");

    // FEATURES_OK refused by the device, then accepted.
    let ack = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
    dev.set_status(0).ctx("reset")?;
    dev.set_status(ack).ctx("ACK|DRIVER")?;
    dev.set_features((1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_NET_F_MAC))
        .ctx("features without ACCESS_PLATFORM")?;
    dev.set_status(ack | VIRTIO_CONFIG_S_FEATURES_OK)
        .ctx("FEATURES_OK without ACCESS_PLATFORM")?;
    let st = dev.get_status().ctx("status")?;
    check!(
        st == ack,
        "status {st:#x} after FEATURES_OK without ACCESS_PLATFORM, expected {ack:#x}"
    );
    expect_errno(
        dev.set_status(ack | VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK),
        EINVAL,
        "DRIVER_OK after a refused FEATURES_OK",
    )?;
    dev.set_status(0).ctx("reset")?;
    dev.set_status(ack).ctx("ACK|DRIVER")?;
    let f = (1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_F_ACCESS_PLATFORM) | (1 << VIRTIO_NET_F_MAC);
    dev.set_features(f).ctx("features")?;
    dev.set_status(ack | VIRTIO_CONFIG_S_FEATURES_OK)
        .ctx("FEATURES_OK with ACCESS_PLATFORM")?;
    let st = dev.get_status().ctx("status")?;
    check!(
        st == ack | VIRTIO_CONFIG_S_FEATURES_OK,
        "status {st:#x} after FEATURES_OK"
    );
    dev.set_status(0).ctx("reset")?;

    // Doorbell pages.
    let r1 = dev
        .region_info(VHOST_VFIO_REGION_NOTIFY)
        .ctx("region 1 info")?;
    check!(
        r1.flags & vb::VFIO_REGION_INFO_FLAG_MMAP != 0,
        "region 1 does not offer mmap (flags {:#x})",
        r1.flags
    );
    for q in 0..3u16 {
        drop(Doorbell::map(&dev, q)?);
    }
    let base = r1.offset;
    for (what, off, prot) in [
        (
            "a readable doorbell page",
            base,
            libc::PROT_READ | libc::PROT_WRITE,
        ),
        ("queue 3 of 3", base + 3 * page_size(), libc::PROT_WRITE),
    ] {
        match map_page(&dev, off, prot) {
            Ok(p) => {
                // SAFETY: the page just mapped.
                unsafe { libc::munmap(p.cast(), page_size() as usize) };
                return Err(format!("mmap of {what} succeeded"));
            }
            Err(e) => check!(e == EINVAL, "mmap of {what}: errno {e}, expected EINVAL"),
        }
    }

    // PA mode over type1: refused.
    let mem = DmaMemory::new(64 << 10).ctx("memory")?;
    // SAFETY: unmapped below before `mem` drops; nothing reads it.
    unsafe { mem.map(&dev, 0x1000_0000) }.ctx("map")?;
    expect_errno(
        dev.set_mem_table(&[mem.region(0x1000_0000)]),
        EOPNOTSUPP,
        "a memory table over type1",
    )?;
    check!(pinned_pages(&name)? == 0, "pages pinned over type1");
    dev.unmap_dma(0x1000_0000, mem.len() as u64).ctx("unmap")?;
    Ok(())
}

fn raw_opts() -> RawOpts {
    RawOpts {
        mem_table: true,
        // QEMU's virtio-net-pci offers MTU only with `host_mtu`.
        drop_features: 1 << VIRTIO_NET_F_MTU,
        ..Default::default()
    }
}

/// Over iommufd: the table's pages are pinned and mapped in the bridge's
/// IOMMU domain; frames the library queues on TX leave only when the
/// mapped doorbell page is written (none before), and arrive on the other
/// NIC byte for byte; frames the other NIC sends arrive in the library's
/// RX buffers byte for byte, signalled through the call eventfd from
/// vp_vdpa's hard IRQ handler (the bridge's `vq_irqs` counts them, all
/// in hard IRQ context); close gives every pin back.
pub fn traffic(env: &Env) -> TestResult {
    let name = vdpa_name(env)?;
    let peer = Packet::on(PEER_MAC)?;
    let inst = Inst::create(env)?;
    iommufd_available(&inst)?;
    let dev = inst.open(IommuKind::Iommufd)?;
    let (calls0, hard0) = vq_irqs(&name)?;
    {
        let mut net = RawNet::start(&dev, raw_opts())?;
        check!(net.config.mac == VP_MAC, "MAC {}", net.config.mac);
        let pinned = pinned_pages(&name)?;
        let want = (net.rx.memory().len() + net.tx.memory().len()) as u64 / page_size();
        check!(
            pinned == want,
            "{pinned} pages pinned, expected {want} (RX and TX memory)"
        );
        let bell = Doorbell::map(&dev, TXQ)?;
        for (seq, len) in [60usize, 1514, 300, 1000].into_iter().enumerate() {
            let f = build_frame(PEER_MAC, VP_MAC, seq as u64, len).ctx("frame")?;
            net.queue_tx(&f)?;
            net.tx.publish().ctx("TX publish")?;
            if seq == 0 {
                // Published, not kicked: the device does not look.
                check!(
                    peer.recv(Duration::from_millis(1500))?.is_none(),
                    "a frame left before the doorbell was written"
                );
            }
            bell.ring(TXQ);
            let got = peer
                .recv(Duration::from_secs(10))?
                .ok_or(format!("TX frame {seq} ({len} bytes) did not arrive"))?;
            check!(got == f, "TX frame {seq} ({len} bytes) arrived changed");
            net.wait_tx_done(Duration::from_secs(10))?;
        }
        let (c1, h1) = vq_irqs(&name)?;
        for (seq, len) in [60usize, 1514, 777].into_iter().enumerate() {
            let f = build_frame(VP_MAC, PEER_MAC, 100 + seq as u64, len).ctx("frame")?;
            // The RX call eventfd, cleared, fires for the frame.
            while wait_eventfd(&net.calls[0], Duration::ZERO).ctx("drain")? {}
            peer.send(&f)?;
            check!(
                wait_eventfd(&net.calls[0], Duration::from_secs(10)).ctx("RX call")?,
                "no RX interrupt for frame {seq}"
            );
            let (_, got) = net
                .recv(Duration::from_secs(10))
                .ctx(&format!("RX frame {seq}"))?;
            check!(got == f, "RX frame {seq} ({len} bytes) arrived changed");
        }
        // The bridge's callback ran for them, in hard IRQ context (one
        // interrupt may carry two frames: at least one callback).
        let (c2, h2) = vq_irqs(&name)?;
        check!(c2 > c1, "no queue callback for 3 received frames");
        check!(
            c2 - calls0 == h2 - hard0 && h1 > hard0,
            "queue callbacks outside hard IRQ context: {} of {} in hard IRQ",
            h2 - hard0,
            c2 - calls0
        );
        eprintln!(
            "INFO: vp_vdpa: {} queue callbacks, {} in hard IRQ context",
            c2 - calls0,
            h2 - hard0
        );
    }
    drop(dev);
    check!(
        pinned_pages(&name)? == 0,
        "{} pages pinned after close",
        pinned_pages(&name)?
    );
    Ok(())
}

/// An unmap while running: vp_vdpa cannot suspend, so an unmap of a
/// range the device has mapped resets it with NEEDS_RESET (as the issue
/// says of a device that cannot suspend) and gives that range's pins back
/// at once; the rest stays pinned until close.
pub fn unmap_running(env: &Env) -> TestResult {
    let name = vdpa_name(env)?;
    let inst = Inst::create(env)?;
    iommufd_available(&inst)?;
    let dev = inst.open(IommuKind::Iommufd)?;
    {
        let mut net = RawNet::start(&dev, raw_opts())?;
        let f = build_frame(PEER_MAC, VP_MAC, 7, 200).ctx("frame")?;
        net.send(&f)?;
        net.wait_tx_done(Duration::from_secs(10))?;
        let tx_pages = net.tx.memory().len() as u64 / page_size();
        let before = pinned_pages(&name)?;
        dev.unmap_dma(net.tx.iova(), net.tx.memory().len() as u64)
            .ctx("unmap TX")?;
        wait_needs_reset(&dev, Duration::from_secs(5))?;
        let after = pinned_pages(&name)?;
        check!(
            after == before - tx_pages,
            "{after} pages pinned after the unmap of TX, expected {}",
            before - tx_pages
        );
    }
    drop(dev);
    check!(pinned_pages(&name)? == 0, "pages pinned after close");
    Ok(())
}
