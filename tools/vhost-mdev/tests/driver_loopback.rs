// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The virtio-net driver against an in-process loopback device that reads
//! and writes the driver's rings through the DMA mappings it was given.

use std::sync::atomic::{fence, AtomicU16, Ordering};
use std::sync::Mutex;

use vhost_mdev::driver::{self, BenchOptions, KickMode, NetDriver, NetDriverConfig};
use vhost_mdev::error::{Errno, Error, Result};
use vhost_mdev::msg::{Reply, Request};
use vhost_mdev::uapi::*;
use vhost_mdev::virtq::{RingLayout, VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use vhost_mdev::{DmaMapper, VhostBackend};
use vmm_sys_util::eventfd::EventFd;

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc];
const FEATURES: u64 = (1 << VIRTIO_F_VERSION_1)
    | (1 << VIRTIO_F_ACCESS_PLATFORM)
    | (1 << VIRTIO_NET_F_MAC)
    | (1 << VIRTIO_NET_F_MTU)
    | (1 << VIRTIO_NET_F_STATUS)
    | (1 << VIRTIO_RING_F_EVENT_IDX)
    | (1 << VIRTIO_RING_F_INDIRECT_DESC)
    | (1 << VIRTIO_NET_F_MRG_RXBUF);

/// A popped chain: head, readable bytes, writable (IOVA, length) segments.
type Chain = (u16, Vec<u8>, Vec<(u64, u32)>);

#[derive(Default, Clone, Copy)]
struct Vq {
    num: u32,
    desc: u64,
    avail: u64,
    used: u64,
    enabled: bool,
    last_avail: u16,
    used_idx: u16,
}

#[derive(Default)]
struct State {
    status: u8,
    features: u64,
    maps: Vec<(u64, u64, u64)>,
    vqs: [Vq; 2],
    calls: [Option<EventFd>; 2],
    kicks_seen: u64,
}

/// A virtio-net loopback device model: TX frames are copied to RX buffers.
#[derive(Default)]
struct FakeNet {
    st: Mutex<State>,
}

impl State {
    fn ptr(&self, iova: u64, len: usize) -> *mut u8 {
        for (base, size, vaddr) in &self.maps {
            if iova >= *base && iova + len as u64 <= base + size {
                return (vaddr + (iova - base)) as *mut u8;
            }
        }
        panic!("device access to unmapped IOVA {iova:#x}+{len}");
    }
    fn load<T: Copy>(&self, iova: u64) -> T {
        // SAFETY: ptr() only returns addresses inside live mappings the
        // driver registered with map_dma, aligned by the ring layout.
        unsafe { std::ptr::read_volatile(self.ptr(iova, size_of::<T>()) as *const T) }
    }
    fn store<T: Copy>(&self, iova: u64, v: T) {
        // SAFETY: as in load().
        unsafe { std::ptr::write_volatile(self.ptr(iova, size_of::<T>()) as *mut T, v) }
    }
    fn read(&self, iova: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        // SAFETY: as in load(); v does not overlap the mapping.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr(iova, len), v.as_mut_ptr(), len) };
        v
    }
    fn write(&self, iova: u64, data: &[u8]) {
        // SAFETY: as in load().
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr(iova, data.len()), data.len())
        };
    }
    fn layout(&self, q: usize) -> RingLayout {
        RingLayout::new(self.vqs[q].num as u16).unwrap()
    }

    /// Pops a chain: (head, readable bytes, writable segments).
    fn pop(&mut self, q: usize) -> Option<Chain> {
        let vq = self.vqs[q];
        let l = self.layout(q);
        // SAFETY: as in load(); avail.idx is 2-byte aligned.
        let idx = unsafe { AtomicU16::from_ptr(self.ptr(vq.avail + 2, 2) as *mut u16) }
            .load(Ordering::Acquire);
        if u16::from_le(idx) == vq.last_avail {
            return None;
        }
        let slot = u64::from(vq.last_avail & (l.size - 1));
        let head = u16::from_le(self.load(vq.avail + 4 + 2 * slot));
        self.vqs[q].last_avail = vq.last_avail.wrapping_add(1);
        // avail_event.
        self.store(
            vq.used + 4 + 8 * u64::from(l.size),
            self.vqs[q].last_avail.to_le(),
        );
        let desc = |base: u64, i: u16| {
            let d = base + 16 * u64::from(i);
            (
                u64::from_le(self.load(d)),
                u32::from_le(self.load(d + 8)),
                u16::from_le(self.load(d + 12)),
                u16::from_le(self.load(d + 14)),
            )
        };
        let (mut addr, mut len, mut flags, mut next) = desc(vq.desc, head);
        let mut table = vq.desc;
        if flags & VRING_DESC_F_INDIRECT != 0 {
            table = addr;
            (addr, len, flags, next) = desc(table, 0);
        }
        let (mut r, mut w) = (Vec::new(), Vec::new());
        loop {
            if flags & VRING_DESC_F_WRITE != 0 {
                w.push((addr, len));
            } else {
                r.extend(self.read(addr, len as usize));
            }
            if flags & VRING_DESC_F_NEXT == 0 {
                break;
            }
            (addr, len, flags, next) = desc(table, next);
        }
        Some((head, r, w))
    }

    fn push(&mut self, q: usize, head: u16, len: u32) {
        let vq = self.vqs[q];
        let l = self.layout(q);
        let e = vq.used + 4 + 8 * u64::from(vq.used_idx & (l.size - 1));
        self.store(e, u32::from(head).to_le());
        self.store(e + 4, len.to_le());
        let old = vq.used_idx;
        self.vqs[q].used_idx = old.wrapping_add(1);
        fence(Ordering::Release);
        self.store(vq.used + 2, self.vqs[q].used_idx.to_le());
        fence(Ordering::SeqCst);
        let event = u16::from_le(self.load(vq.avail + 4 + 2 * u64::from(l.size)));
        if vhost_mdev::virtq::vring_need_event(event, self.vqs[q].used_idx, old) {
            if let Some(c) = &self.calls[q] {
                c.write(1).unwrap();
            }
        }
    }

    fn process_tx(&mut self) {
        let mrg = self.features & (1 << VIRTIO_NET_F_MRG_RXBUF) != 0;
        while let Some((head, frame, _)) = self.pop(1) {
            let mut data = frame;
            // RX chains until the frame fits (several only with MRG_RXBUF).
            let mut chains = Vec::new();
            let mut cap = 0usize;
            while cap < data.len() && (mrg || chains.is_empty()) {
                let Some((rhead, _, w)) = self.pop(0) else {
                    break;
                };
                cap += w.iter().map(|s| s.1 as usize).sum::<usize>();
                chains.push((rhead, w));
            }
            if cap < data.len() {
                assert!(mrg || chains.is_empty(), "RX buffer too small");
                // Back-pressure: give everything back until the RX kick.
                self.vqs[0].last_avail = self.vqs[0].last_avail.wrapping_sub(chains.len() as u16);
                self.vqs[1].last_avail = self.vqs[1].last_avail.wrapping_sub(1);
                return;
            }
            self.push(1, head, 0);
            // Header with num_buffers, then the frame.
            data[10..12].copy_from_slice(&(chains.len() as u16).to_le_bytes());
            let mut rest = &data[..];
            for (rhead, w) in chains {
                let mut written = 0usize;
                for (addr, len) in w {
                    let n = rest.len().min(len as usize);
                    self.write(addr, &rest[..n]);
                    rest = &rest[n..];
                    written += n;
                }
                self.push(0, rhead, written as u32);
            }
        }
    }
}

impl DmaMapper for FakeNet {
    unsafe fn map_dma(&self, iova: u64, size: u64, vaddr: u64) -> Result<()> {
        self.st.lock().unwrap().maps.push((iova, size, vaddr));
        Ok(())
    }
    fn unmap_dma(&self, iova: u64, size: u64) -> Result<()> {
        let mut st = self.st.lock().unwrap();
        let before = st.maps.len();
        st.maps.retain(|m| (m.0, m.1) != (iova, size));
        if st.maps.len() == before {
            return Err(Error::Sys {
                op: "unmap".into(),
                errno: Errno(libc::ENOENT),
            });
        }
        Ok(())
    }
}

impl VhostBackend for FakeNet {
    fn describe(&self) -> String {
        "fake loopback".into()
    }

    fn request(&self, req: &Request) -> Result<Reply> {
        let mut st = self.st.lock().unwrap();
        let einval = || Error::Request {
            request: req.name().into(),
            errno: Errno(libc::EINVAL),
        };
        Ok(match req {
            Request::GetFeatures => Reply::U64(FEATURES),
            Request::SetFeatures(f) if f & !FEATURES == 0 => {
                st.features = *f;
                Reply::None
            }
            Request::SetFeatures(_) => return Err(einval()),
            Request::SetOwner => Reply::None,
            Request::GetDeviceId => Reply::U32(VIRTIO_ID_NET),
            Request::GetStatus => Reply::U8(st.status),
            Request::SetStatus(0) => {
                *st = State {
                    maps: std::mem::take(&mut st.maps),
                    ..Default::default()
                };
                Reply::None
            }
            Request::SetStatus(s) => {
                st.status = *s;
                Reply::None
            }
            Request::GetConfigSize => Reply::U32(12),
            Request::GetConfig { off: 0, len } => {
                let mut c = MAC.to_vec();
                c.extend_from_slice(&[1, 0, 1, 0, 0xdc, 0x05]);
                c.truncate(*len as usize);
                Reply::Config { off: 0, data: c }
            }
            Request::GetVringNum => Reply::U16(256),
            Request::GetVqsCount => Reply::U32(2),
            Request::SetVringNum(s) => {
                st.vqs[s.index as usize].num = s.num;
                Reply::None
            }
            Request::SetVringAddr(a) => {
                let q = &mut st.vqs[a.index as usize];
                (q.desc, q.avail, q.used) = (a.desc_user_addr, a.avail_user_addr, a.used_user_addr);
                Reply::None
            }
            Request::SetVringBase(s) => {
                st.vqs[s.index as usize].last_avail = s.num as u16;
                st.vqs[s.index as usize].used_idx = s.num as u16;
                Reply::None
            }
            Request::GetVringBase(i) => Reply::VringState(VhostVringState {
                index: *i,
                num: st.vqs[*i as usize].last_avail.into(),
            }),
            Request::SetVringEnable(s) => {
                st.vqs[s.index as usize].enabled = s.num != 0;
                Reply::None
            }
            _ => return Err(einval()),
        })
    }

    fn set_vring_call(&self, index: u32, fd: Option<&EventFd>) -> Result<()> {
        self.st.lock().unwrap().calls[index as usize] = fd.map(|f| f.try_clone().unwrap());
        Ok(())
    }
    fn set_config_call(&self, _fd: Option<&EventFd>) -> Result<()> {
        Ok(())
    }
    fn set_vring_kick(&self, _index: u32, _fd: Option<&EventFd>) -> Result<()> {
        Err(Error::Unsupported("kick eventfds"))
    }
    fn notify(&self, index: u16) -> Result<()> {
        let mut st = self.st.lock().unwrap();
        st.kicks_seen += 1;
        assert_ne!(
            st.status & VIRTIO_CONFIG_S_DRIVER_OK,
            0,
            "kick before DRIVER_OK"
        );
        // TX frames, or RX buffers a frame waited for.
        let _ = index;
        st.process_tx();
        Ok(())
    }
}

fn cfg(indirect: bool) -> NetDriverConfig {
    NetDriverConfig {
        queue_size: 64,
        kick: KickMode::Direct,
        indirect,
        ..Default::default()
    }
}

#[test]
fn ping_mixed_sizes_direct_and_indirect() {
    for indirect in [false, true] {
        let dev = FakeNet::default();
        let mut drv = NetDriver::start(&dev, cfg(indirect)).unwrap();
        assert_eq!(drv.mac().0, MAC);
        assert_eq!(drv.config().mtu, 1500);
        assert_eq!(drv.queue_size(), 64);
        assert_eq!(
            drv.features() & (1 << VIRTIO_RING_F_INDIRECT_DESC) != 0,
            indirect
        );
        // 200 frames wrap the 64-entry rings several times.
        let rep = driver::ping(&mut drv, 200, 0).unwrap();
        assert_eq!(rep.frames, 200);
        drop(drv);
        let st = dev.st.lock().unwrap();
        assert!(st.maps.is_empty(), "driver unmapped everything");
        assert_eq!(st.status, 0, "driver reset the device");
    }
}

#[test]
fn bench_keeps_order_with_depth() {
    // Blocking and busy polling; 65535-byte frames spanning page-sized RX
    // buffers with MRG_RXBUF (17 per frame: the 64 RX buffers hold 3).
    for (busy_poll, pingpong, size) in [
        (false, false, 256),
        (true, false, 256),
        (true, true, 256),
        (true, false, 65535),
        (true, true, 65535),
        (false, false, 65535),
    ] {
        let dev = FakeNet::default();
        let c = NetDriverConfig {
            max_frame: size,
            ..cfg(false)
        };
        let mut drv = NetDriver::start(&dev, c).unwrap();
        let mut reports = 0;
        let r = driver::bench(
            &mut drv,
            BenchOptions {
                size,
                depth: 32,
                duration: std::time::Duration::from_millis(300),
                pingpong,
                busy_poll,
            },
            &mut |_| reports += 1,
        )
        .unwrap();
        assert!(r.packets > 0);
        assert_eq!(r.bytes, r.packets * size as u64);
        assert!(r.p99_us >= r.p50_us);
        assert!(r.to_json().starts_with("{\"packets\":"));
        assert_eq!(r.busy_poll, busy_poll);
        if busy_poll {
            assert_eq!(r.waits, 0);
        }
        // The driver still pings byte-exact after a bench.
        assert_eq!(driver::ping(&mut drv, 5, 0).unwrap().frames, 5);
    }
}

#[test]
fn start_fails_cleanly_without_mandatory_features() {
    struct NoPlatform(FakeNet);
    impl DmaMapper for NoPlatform {
        unsafe fn map_dma(&self, iova: u64, size: u64, vaddr: u64) -> Result<()> {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { self.0.map_dma(iova, size, vaddr) }
        }
        fn unmap_dma(&self, iova: u64, size: u64) -> Result<()> {
            self.0.unmap_dma(iova, size)
        }
    }
    impl VhostBackend for NoPlatform {
        fn describe(&self) -> String {
            self.0.describe()
        }
        fn request(&self, req: &Request) -> Result<Reply> {
            match req {
                Request::GetFeatures => Ok(Reply::U64(FEATURES & !(1 << VIRTIO_F_ACCESS_PLATFORM))),
                r => self.0.request(r),
            }
        }
        fn set_vring_call(&self, i: u32, fd: Option<&EventFd>) -> Result<()> {
            self.0.set_vring_call(i, fd)
        }
        fn set_config_call(&self, fd: Option<&EventFd>) -> Result<()> {
            self.0.set_config_call(fd)
        }
        fn set_vring_kick(&self, i: u32, fd: Option<&EventFd>) -> Result<()> {
            self.0.set_vring_kick(i, fd)
        }
        fn notify(&self, i: u16) -> Result<()> {
            self.0.notify(i)
        }
    }
    let e = NetDriver::start(NoPlatform(FakeNet::default()), cfg(false))
        .err()
        .unwrap();
    assert!(e.to_string().contains("bit 33"), "{e}");
}
