// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Results of a [`super::bench`] run: JSON, percentiles, latency sampling.

#[cfg(doc)]
use super::bench;

/// Result of [`bench`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BenchResult {
    /// Frames looped back.
    pub packets: u64,
    /// Frame bytes looped back (without virtio-net headers).
    pub bytes: u64,
    /// Measured time in seconds.
    pub seconds: f64,
    /// Frames per second.
    pub pps: f64,
    /// Gbit/s of frame bytes.
    pub gbps: f64,
    /// Median send-to-receive latency in microseconds.
    pub p50_us: f64,
    /// 90th percentile latency in microseconds.
    pub p90_us: f64,
    /// 99th percentile latency in microseconds.
    pub p99_us: f64,
    /// 99.9th percentile latency in microseconds.
    pub p999_us: f64,
    /// Largest latency in microseconds.
    pub max_us: f64,
    /// Times the driver blocked in poll() on the RX call eventfd.
    pub waits: u64,
    /// Waits that ended without the eventfd firing (timeout).
    pub wait_timeouts: u64,
    /// Timed-out waits after which a frame was already in the used ring:
    /// the device completed it without a (timely) interrupt.
    pub late_irqs: u64,
    /// Whether the driver busy-polled.
    pub busy_poll: bool,
    /// Whether it busy-polled without ever yielding the CPU.
    pub no_yield: bool,
    /// Whether the rings were packed.
    pub packed: bool,
    /// Frames looped back on each queue pair (pair 0 first).
    pub pair_packets: Vec<u64>,
}

impl BenchResult {
    /// One-line JSON: the fields of the result, and `pairs`, the number of
    /// queue pairs. A value that is not a finite number (no measurement)
    /// is `null`.
    pub fn to_json(&self) -> String {
        #[derive(serde::Serialize)]
        struct Json<'a> {
            #[serde(flatten)]
            r: &'a BenchResult,
            pairs: usize,
        }
        serde_json::to_string(&Json {
            r: self,
            pairs: self.pair_packets.len(),
        })
        .unwrap_or_default()
    }
}

/// The `q` quantile (0..=1) of sorted nanosecond samples, in microseconds.
pub fn percentile_us(sorted_ns: &[u64], q: f64) -> f64 {
    if sorted_ns.is_empty() {
        return 0.0;
    }
    let i = ((sorted_ns.len() - 1) as f64 * q).round() as usize;
    sorted_ns[i.min(sorted_ns.len() - 1)] as f64 / 1000.0
}

/// Latency samples kept per run: the percentiles come from a uniform
/// sample of at most this many round trips (32 MiB), however long the run.
pub(super) const LATENCY_SAMPLES: usize = 1 << 22;

/// A uniform random sample of a stream of values (reservoir sampling,
/// Algorithm R) and the stream's maximum.
pub(super) struct Reservoir {
    pub(super) samples: Vec<u64>,
    cap: usize,
    seen: u64,
    pub(super) max: u64,
    rng: u64,
}

impl Reservoir {
    pub(super) fn new(cap: usize) -> Self {
        Self {
            samples: Vec::with_capacity(cap.min(1 << 20)),
            cap,
            seen: 0,
            max: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }

    pub(super) fn add(&mut self, v: u64) {
        self.seen += 1;
        self.max = self.max.max(v);
        if self.samples.len() < self.cap {
            self.samples.push(v);
            return;
        }
        // xorshift64: cheap, and good enough to pick a slot.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let j = self.rng % self.seen;
        if let Some(s) = self.samples.get_mut(j as usize) {
            *s = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_valid_for_every_value() {
        let mut r = BenchResult {
            packets: u64::MAX,
            bytes: 0,
            seconds: 1.5,
            pps: f64::NAN,
            gbps: f64::INFINITY,
            p50_us: f64::NEG_INFINITY,
            p90_us: 0.0,
            p99_us: 1e300,
            p999_us: -0.0,
            max_us: 2.25,
            waits: 1,
            wait_timeouts: 2,
            late_irqs: 3,
            busy_poll: true,
            no_yield: false,
            packed: true,
            pair_packets: vec![7, 8],
        };
        let j = r.to_json();
        assert!(!j.contains('\n'), "{j}");
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["packets"], u64::MAX);
        assert!(v["pps"].is_null() && v["gbps"].is_null() && v["p50_us"].is_null());
        assert_eq!(v["max_us"], 2.25);
        assert_eq!(v["pairs"], 2);
        assert_eq!(v["pair_packets"], serde_json::json!([7, 8]));
        r.pair_packets.clear();
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["pairs"], 0);
    }
}
