// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The throughput and latency loop ([`bench()`]).

use std::collections::VecDeque;
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
/// frames in flight. Frames carry a sequence number checked for order and
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
    drv.q.tx.disable_interrupts()?;
    if opts.busy_poll {
        drv.q.rx.disable_interrupts()?;
    } else {
        drv.q.rx.enable_interrupts()?;
    }
    let r = bench_loop(drv, opts, depth, template.len(), progress);
    // Leave the queues as ping/recv expect them.
    drv.q.tx.enable_interrupts()?;
    drv.q.rx.enable_interrupts()?;
    r
}

fn bench_loop<B: VhostBackend>(
    drv: &mut NetDriver<B>,
    opts: BenchOptions,
    depth: usize,
    frame_len: usize,
    progress: &mut dyn FnMut(BenchProgress),
) -> Result<BenchResult> {
    let mut inflight: VecDeque<(u64, Instant)> = VecDeque::with_capacity(depth);
    // Enough for a few seconds without reallocating in the loop.
    let mut lat = Reservoir::new(LATENCY_SAMPLES);
    let (mut next_seq, mut packets, mut bytes) = (0u64, 0u64, 0u64);
    let (mut waits, mut wait_timeouts, mut late_irqs) = (0u64, 0u64, 0u64);
    let mut peek = [0u8; SEQ_AT + 8];
    let start = Instant::now();
    let end = start + opts.duration;
    let mut last_report = start;
    loop {
        let now = Instant::now();
        let sending = now < end;
        if !sending && inflight.is_empty() {
            break;
        }
        let mut queued = false;
        let first_new = inflight.len();
        while sending && inflight.len() < depth {
            if !drv.queue_tx_template(SEQ_AT, &next_seq.to_be_bytes())? {
                break;
            }
            inflight.push_back((next_seq, now));
            next_seq += 1;
            queued = true;
        }
        if queued {
            // The frames queued above become visible to the device together,
            // when they are published: one timestamp for all of them (a clock
            // read per frame costs the driver much under TCG).
            let t = Instant::now();
            for e in inflight.range_mut(first_new..) {
                e.1 = t;
            }
            drv.flush_tx()?;
        }
        let mut got_any = false;
        // Frames found in one pass were completed by then: one timestamp.
        let mut t_rx = None;
        while let Some(len) = drv.try_recv_peek(&mut peek)? {
            let t = *t_rx.get_or_insert_with(Instant::now);
            got_any = true;
            let (seq, t0) = inflight
                .pop_front()
                .ok_or_else(|| Error::Protocol("received a frame that was not sent".into()))?;
            let got = u64::from_be_bytes(peek[SEQ_AT..].try_into().unwrap_or_default());
            if len != frame_len || got != seq {
                return Err(Error::Protocol(format!(
                    "expected frame {seq} of {frame_len} bytes, received frame {got} of {len} bytes",
                )));
            }
            lat.add(t.duration_since(t0).as_nanos() as u64);
            packets += 1;
            bytes += len as u64;
        }
        drv.reclaim_tx()?;
        if !got_any && !inflight.is_empty() {
            if opts.busy_poll {
                spin_for_used(drv, !opts.no_yield)?;
            } else if !drv.q.rx.has_used()? {
                // Wait for the device: bounded, so a lost interrupt only
                // slows us (and is counted).
                let t0 = Instant::now();
                loop {
                    if drv.q.rx.enable_interrupts()? {
                        break;
                    }
                    waits += 1;
                    if wait_eventfd(&drv.calls[0], Duration::from_millis(20))? {
                        break;
                    }
                    wait_timeouts += 1;
                    if drv.q.rx.has_used()? {
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
    })
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
    while !drv.q.rx.has_used()? {
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
