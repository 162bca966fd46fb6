// SPDX-License-Identifier: GPL-2.0 OR MIT
//! A minimal virtio-net driver over any [`VhostBackend`]: brings the device
//! up with one or more queue pairs (queue `2i` = RX and `2i + 1` = TX of
//! pair `i`) on split or packed rings, sends and receives frames on a
//! loopback device, and measures it ([`ping`], [`bench`]).
//!
//! The frame calls ([`NetDriver::send`], [`NetDriver::recv`],
//! [`NetDriver::queue_tx_template`], ...) work on the *current* pair,
//! pair 0 unless [`NetDriver::select_pair`] chose another: one thread
//! drives all pairs in turn (see [`bench`]).

mod bench;
mod ping;
mod rx;
mod setup;
mod stats;
mod tx;

pub use bench::{bench, BenchOptions, BenchProgress};
pub use ping::{mixed_size, ping, PingReport, TEST_SRC_MAC};
pub use setup::{negotiate, wanted_features};
pub use stats::{percentile_us, BenchResult};

use std::mem::ManuallyDrop;
use std::os::fd::AsRawFd;
use std::time::Duration;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::backend::VhostBackend;
use crate::error::{Error, Result};
use crate::net::{NetConfig, FRAME_MAX, NET_HDR_LEN};
use crate::queue::Queue;
use crate::uapi::{MemRegion, MAX_MEM_REGIONS};

/// RX queue index (of pair 0; pair `i` has `2i`).
pub const RX: u16 = 0;
/// TX queue index (of pair 0; pair `i` has `2i + 1`).
pub const TX: u16 = 1;

/// How the driver kicks queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KickMode {
    /// [`VhostBackend::notify`] (region 1 on vhost-mdev).
    Direct,
    /// An eventfd bound with [`VhostBackend::set_vring_kick`]
    /// (`VFIO_DEVICE_IOEVENTFD` on vhost-mdev).
    EventFd,
}

/// Options of [`NetDriver::start`].
#[derive(Debug, Clone, Copy)]
pub struct NetDriverConfig {
    /// Requested queue size (clipped to the device maximum).
    pub queue_size: u16,
    /// IOVA of the first queue's memory.
    pub iova_base: u64,
    /// Kick path ([`KickMode::EventFd`] is used when the back end has no
    /// direct notification).
    pub kick: KickMode,
    /// Negotiate and use indirect descriptors if offered.
    pub indirect: bool,
    /// Negotiate `VIRTIO_RING_F_EVENT_IDX` if offered.
    pub event_idx: bool,
    /// Negotiate `VIRTIO_NET_F_MRG_RXBUF` if offered.
    pub mrg_rxbuf: bool,
    /// How long [`NetDriver::recv`] waits for a frame.
    pub timeout: Duration,
    /// Largest frame (without the virtio-net header) to send and receive:
    /// sizes the TX buffers, and the RX buffers without MRG_RXBUF. With
    /// MRG_RXBUF, frames above [`SLOT_SIZE`] are received in page-sized
    /// RX buffers that the device spans.
    pub max_frame: usize,
    /// Use packed rings (`VIRTIO_F_RING_PACKED`, which the device must
    /// offer) instead of split rings.
    pub packed: bool,
    /// Queue pairs to drive (at least 1; more than 1 needs
    /// `VIRTIO_NET_F_MQ` and `2 * pairs` queues on the device).
    pub pairs: u16,
}

impl Default for NetDriverConfig {
    fn default() -> Self {
        NetDriverConfig {
            queue_size: 256,
            iova_base: 0x1000_0000,
            kick: KickMode::Direct,
            indirect: false,
            event_idx: true,
            mrg_rxbuf: true,
            timeout: Duration::from_secs(5),
            max_frame: FRAME_MAX,
            packed: false,
            pairs: 1,
        }
    }
}

/// Smallest buffer size of each RX/TX slot: header and a full frame of
/// [`FRAME_MAX`] bytes.
pub const SLOT_SIZE: usize = 2048;
/// RX buffer size with MRG_RXBUF when frames do not fit [`SLOT_SIZE`].
pub const MRG_RX_BUF_SIZE: usize = 4096;

/// Buffer sizes (TX, RX) for frames of up to `max_frame` bytes.
pub fn slot_sizes(max_frame: usize, mrg_rxbuf: bool) -> (usize, usize) {
    let tx = (NET_HDR_LEN + max_frame).div_ceil(64) * 64;
    let tx = tx.max(SLOT_SIZE);
    let rx = if mrg_rxbuf && tx > SLOT_SIZE {
        MRG_RX_BUF_SIZE
    } else {
        tx
    };
    (tx, rx)
}

/// One queue pair: its queues, eventfds and TX buffer state.
struct Pair {
    rx: Queue,
    tx: Queue,
    calls: [EventFd; 2],
    kicks: [Option<EventFd>; 2],
    tx_free: Vec<usize>,
    /// Which TX buffers already hold the template frame (header and all).
    tx_has_template: Vec<bool>,
}

/// A running virtio-net device.
pub struct NetDriver<B: VhostBackend> {
    backend: B,
    pairs: ManuallyDrop<Vec<Pair>>,
    /// The pair the frame calls work on.
    cur: usize,
    mapped: Vec<(u64, u64)>,
    features: u64,
    config: NetConfig,
    /// The frame [`NetDriver::queue_tx_template`] sends.
    tx_template: Vec<u8>,
    /// Scratch list of the RX buffers of one frame (no allocation per
    /// frame).
    rx_slots: Vec<usize>,
    indirect: bool,
    mrg_rxbuf: bool,
    cfg: NetDriverConfig,
}

/// Sends the driver's memory table (see [`VhostBackend::set_mem_table`]),
/// before DRIVER_OK as a VMM sends it. More regions than a table holds is
/// an error; a core that predates the request (`ENOTTY`) is told nothing:
/// its parents reach guest memory through it, and a parent that needs the
/// table needs a core that takes it.
pub fn send_mem_table<B: VhostBackend>(backend: &B, table: &[MemRegion]) -> Result<()> {
    if table.len() > MAX_MEM_REGIONS {
        return Err(Error::InvalidArgument(format!(
            "{} DMA mappings: a memory table holds at most {MAX_MEM_REGIONS}",
            table.len()
        )));
    }
    match backend.set_mem_table(table) {
        Err(e) if e.errno() == Some(libc::ENOTTY) => Ok(()),
        r => r,
    }
}

fn eventfd() -> Result<EventFd> {
    EventFd::new(EFD_NONBLOCK).map_err(|e| Error::io("eventfd", &e))
}

/// Waits up to `timeout` for `fd` to become readable and drains it;
/// returns whether it fired.
pub fn wait_eventfd(fd: &EventFd, timeout: Duration) -> Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: pfd is one valid pollfd for the duration of the call.
    let r = unsafe { libc::poll(&mut pfd, 1, ms) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(Error::io("poll", &e));
    }
    if r == 0 {
        return Ok(false);
    }
    // Non-blocking read clears the counter; EAGAIN means a racing reader.
    let _ = fd.read();
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::stats::Reservoir;
    use super::*;
    use crate::net::FRAME_MIN;
    use crate::uapi::*;

    #[test]
    fn mixed_sizes_stay_in_range() {
        assert_eq!(mixed_size(0), FRAME_MIN);
        assert_eq!(mixed_size(1), FRAME_MAX);
        for i in 0..10_000 {
            let s = mixed_size(i);
            assert!((FRAME_MIN..=FRAME_MAX).contains(&s), "{i}: {s}");
        }
    }

    #[test]
    fn reservoir_keeps_a_bounded_uniform_sample() {
        let mut r = Reservoir::new(1000);
        for v in 0..100_000u64 {
            r.add(v);
        }
        assert_eq!(r.samples.len(), 1000);
        assert_eq!(r.max, 99_999);
        let mut s = r.samples.clone();
        s.sort_unstable();
        // The median of a uniform sample of 0..100000 is near 50000.
        let m = s[500];
        assert!((40_000..60_000).contains(&m), "median {m}");
    }

    #[test]
    fn percentiles() {
        let v: Vec<u64> = (1..=100).map(|x| x * 1000).collect();
        assert_eq!(percentile_us(&v, 0.5), 51.0);
        assert_eq!(percentile_us(&v, 0.99), 99.0);
        assert_eq!(percentile_us(&[], 0.5), 0.0);
    }

    #[test]
    fn slot_sizes_fit_the_largest_frame() {
        assert_eq!(slot_sizes(FRAME_MAX, true), (SLOT_SIZE, SLOT_SIZE));
        assert_eq!(slot_sizes(60, false), (SLOT_SIZE, SLOT_SIZE));
        let (tx, rx) = slot_sizes(65535, true);
        assert!(tx >= 65535 + NET_HDR_LEN && tx % 64 == 0);
        assert_eq!(rx, MRG_RX_BUF_SIZE);
        // 17 page-sized buffers hold a 65535-byte frame and its header:
        // within the 32 the sample spans.
        assert_eq!((65535 + NET_HDR_LEN).div_ceil(rx), 17);
        let (tx, rx) = slot_sizes(9000, false);
        assert_eq!(tx, rx);
        assert!(rx >= 9000 + NET_HDR_LEN);
    }

    #[test]
    fn wanted_features_include_the_mandatory_bits() {
        let f = wanted_features(&NetDriverConfig::default());
        assert_ne!(f & (1 << VIRTIO_F_VERSION_1), 0);
        assert_ne!(f & (1 << VIRTIO_F_ACCESS_PLATFORM), 0);
        assert_eq!(f & (1 << VIRTIO_RING_F_INDIRECT_DESC), 0);
    }
}
