// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The throughput and latency loop ([`bench()`]).

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::backend::VhostBackend;
use crate::error::{Error, Result};
use crate::net::build_frame;

use super::stats::{percentile_us, BenchResult, Reservoir, LATENCY_SAMPLES};
use super::{wait_eventfd, NetDriver, TEST_SRC_MAC};

/// Options of [`bench`].
#[derive(Debug, Clone, Copy)]
pub struct BenchOptions {
    /// Frame size in bytes.
    pub size: usize,
    /// Frames in flight.
    pub depth: usize,
    /// Run time.
    pub duration: Duration,
    /// One frame at a time (latency), regardless of `depth`.
    pub pingpong: bool,
    /// Spin on the used rings with interrupts disabled instead of blocking
    /// in poll() on the RX call eventfd.
    pub busy_poll: bool,
    /// With `busy_poll`, never yield the CPU while spinning (as a driver
    /// that owns its CPU does): a device worker that waits for this CPU
    /// then waits for the scheduler's tick.
    pub no_yield: bool,
}

/// Progress reported by [`bench`] about twice a second.
#[derive(Debug, Clone, Copy)]
pub struct BenchProgress {
    /// Time since the start.
    pub elapsed: Duration,
    /// Frames received so far.
    pub packets: u64,
}

/// Offset of the sequence number in test frames.
const SEQ_AT: usize = 18;

/// Loops frames through the device for `opts.duration` with `opts.depth`
/// frames in flight on each queue pair the driver drives. Frames carry a sequence number checked for order and
/// length (not the full checksum, to keep the driver out of the way): TX
/// buffers get the whole frame once and then only the sequence number,
/// and only the first bytes of a received frame are read.
///
/// The driver reclaims TX buffers by polling, so TX interrupts stay off.
/// Without `busy_poll` it blocks in poll() on the RX call eventfd when
/// nothing came back (RX interrupts on); with `busy_poll` it spins on the
/// RX used index with RX interrupts off. Kicks follow the device's
/// suppression in both modes.
pub fn bench<B: VhostBackend>(
    drv: &mut NetDriver<B>,
    opts: BenchOptions,
    progress: &mut dyn FnMut(BenchProgress),
) -> Result<BenchResult> {
    let depth = if opts.pingpong {
        1
    } else {
        opts.depth.clamp(1, usize::from(drv.queue_size()))
    };
    let template = build_frame(drv.mac(), TEST_SRC_MAC, 0, opts.size)?;
    drv.set_tx_template(&template)?;
    for p in drv.pairs.iter_mut() {
        p.tx.disable_interrupts()?;
        if opts.busy_poll {
            p.rx.disable_interrupts()?;
        } else {
            p.rx.enable_interrupts()?;
        }
    }
    let r = bench_loop(drv, opts, depth, template.len(), progress);
    // Leave the queues as ping/recv expect them.
    for p in drv.pairs.iter_mut() {
        p.tx.enable_interrupts()?;
        p.rx.enable_interrupts()?;
    }
    r
}

fn bench_loop<B: VhostBackend>(
    drv: &mut NetDriver<B>,
    opts: BenchOptions,
    depth: usize,
    frame_len: usize,
    progress: &mut dyn FnMut(BenchProgress),
) -> Result<BenchResult> {
    let npairs = drv.num_pairs();
    // Frames in flight per pair: sequence numbers are per pair (each pair
    // is its own loopback, in order).
    let mut inflight: Vec<VecDeque<(u64, Instant)>> = (0..npairs)
        .map(|_| VecDeque::with_capacity(depth))
        .collect();
    let mut next_seq = vec![0u64; npairs];
    let mut pair_packets = vec![0u64; npairs];
    // Enough for a few seconds without reallocating in the loop.
    let mut lat = Reservoir::new(LATENCY_SAMPLES);
    let (mut packets, mut bytes) = (0u64, 0u64);
    let (mut waits, mut wait_timeouts, mut late_irqs) = (0u64, 0u64, 0u64);
    let mut peek = [0u8; SEQ_AT + 8];
    let start = Instant::now();
    let end = start + opts.duration;
    let mut last_report = start;
    loop {
        let now = Instant::now();
        let sending = now < end;
        if !sending && inflight.iter().all(VecDeque::is_empty) {
            break;
        }
        for (p, infl) in inflight.iter_mut().enumerate() {
            drv.select_pair(p)?;
            let mut queued = false;
            let first_new = infl.len();
            while sending && infl.len() < depth {
                if !drv.queue_tx_template(SEQ_AT, &next_seq[p].to_be_bytes())? {
                    break;
                }
                infl.push_back((next_seq[p], now));
                next_seq[p] += 1;
                queued = true;
            }
            if queued {
                // The frames queued above become visible to the device
                // together, when they are published: one timestamp for all
                // of them (a clock read per frame costs the driver much
                // under TCG).
                let t = Instant::now();
                for e in infl.range_mut(first_new..) {
                    e.1 = t;
                }
                drv.flush_tx()?;
            }
        }
        let mut got_any = false;
        // Frames found in one pass were completed by then: one timestamp.
        let mut t_rx = None;
        for (p, infl) in inflight.iter_mut().enumerate() {
            drv.select_pair(p)?;
            while let Some(len) = drv.try_recv_peek(&mut peek)? {
                let t = *t_rx.get_or_insert_with(Instant::now);
                got_any = true;
                let (seq, t0) = infl.pop_front().ok_or_else(|| {
                    Error::Protocol(format!("pair {p}: received a frame that was not sent"))
                })?;
                let got = u64::from_be_bytes(peek[SEQ_AT..].try_into().unwrap_or_default());
                if len != frame_len || got != seq {
                    return Err(Error::Protocol(format!(
                        "pair {p}: expected frame {seq} of {frame_len} bytes, received frame \
                         {got} of {len} bytes",
                    )));
                }
                lat.add(t.duration_since(t0).as_nanos() as u64);
                packets += 1;
                pair_packets[p] += 1;
                bytes += len as u64;
            }
            drv.reclaim_tx()?;
        }
        if !got_any && inflight.iter().any(|q| !q.is_empty()) {
            if opts.busy_poll {
                spin_for_used(drv, !opts.no_yield)?;
            } else if !any_rx_used(drv)? {
                // Wait for the device: bounded, so a lost interrupt only
                // slows us (and is counted).
                let t0 = Instant::now();
                loop {
                    let mut pending = false;
                    for (p, infl) in inflight.iter().enumerate() {
                        if !infl.is_empty() {
                            drv.select_pair(p)?;
                            pending |= drv.pairs[p].rx.enable_interrupts()?;
                        }
                    }
                    if pending {
                        break;
                    }
                    waits += 1;
                    if wait_any_rx(drv, Duration::from_millis(20))? {
                        break;
                    }
                    wait_timeouts += 1;
                    if any_rx_used(drv)? {
                        late_irqs += 1;
                        break;
                    }
                    if t0.elapsed() > drv.cfg.timeout {
                        return Err(drv.timeout("a looped-back frame"));
                    }
                }
            }
        }
        if last_report.elapsed() >= Duration::from_millis(500) {
            last_report = Instant::now();
            progress(BenchProgress {
                elapsed: start.elapsed(),
                packets,
            });
        }
    }
    drv.select_pair(0)?;
    let seconds = start.elapsed().as_secs_f64();
    let max_ns = lat.max;
    let mut lat_ns = lat.samples;
    lat_ns.sort_unstable();
    Ok(BenchResult {
        packets,
        bytes,
        seconds,
        pps: packets as f64 / seconds,
        gbps: bytes as f64 * 8.0 / seconds / 1e9,
        p50_us: percentile_us(&lat_ns, 0.50),
        p90_us: percentile_us(&lat_ns, 0.90),
        p99_us: percentile_us(&lat_ns, 0.99),
        p999_us: percentile_us(&lat_ns, 0.999),
        max_us: max_ns as f64 / 1000.0,
        waits,
        wait_timeouts,
        late_irqs,
        busy_poll: opts.busy_poll,
        no_yield: opts.busy_poll && opts.no_yield,
        packed: drv.packed(),
        pair_packets,
    })
}

/// Whether the RX queue of any pair has used buffers.
fn any_rx_used<B: VhostBackend>(drv: &NetDriver<B>) -> Result<bool> {
    for p in drv.pairs.iter() {
        if p.rx.has_used()? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Waits up to `timeout` for the RX call eventfd of any pair; drains those
/// that fired and returns whether one did.
fn wait_any_rx<B: VhostBackend>(drv: &NetDriver<B>, timeout: Duration) -> Result<bool> {
    if drv.pairs.len() == 1 {
        return wait_eventfd(&drv.pairs[0].calls[0], timeout);
    }
    let mut pfds: Vec<libc::pollfd> = drv
        .pairs
        .iter()
        .map(|p| libc::pollfd {
            fd: p.calls[0].as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: pfds is a valid array of pfds.len() pollfds for the call.
    let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(Error::io("poll", &e));
    }
    for (p, f) in drv.pairs.iter().zip(&pfds) {
        if f.revents & libc::POLLIN != 0 {
            // Non-blocking: clears the counter.
            let _ = p.calls[0].read();
        }
    }
    Ok(r > 0)
}

/// Empty polls of the used ring before the busy-polling driver starts
/// yielding its CPU between polls.
const SPINS_BEFORE_YIELD: u32 = 32;

/// Spins until the RX used index moves (or the driver's timeout passes),
/// with `yielding`, yielding the CPU (`sched_yield()`) between polls once a
/// few found nothing: a device worker that shares the driver's CPU then
/// runs at once instead of at the next scheduler tick.
fn spin_for_used<B: VhostBackend>(drv: &NetDriver<B>, yielding: bool) -> Result<()> {
    let t0 = Instant::now();
    let mut n = 0u32;
    while !any_rx_used(drv)? {
        if n < SPINS_BEFORE_YIELD || !yielding {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
        n = n.wrapping_add(1);
        if n.is_multiple_of(4096) && t0.elapsed() > drv.cfg.timeout {
            return Err(drv.timeout("a looped-back frame (busy polling)"));
        }
    }
    Ok(())
}
