// SPDX-License-Identifier: GPL-2.0

//! Rate-limited log lines, for messages that userspace can cause.
//!
//! What `printk_ratelimited()` does for C: at most [`BURST`] lines per
//! [`INTERVAL_MS`] from one call site; the next line allowed after a
//! pause says how many were suppressed. 6.12's `kernel` crate has no
//! rate-limited `pr_*!`. The defaults are C's `DEFAULT_RATELIMIT_INTERVAL`
//! (5 s) and `DEFAULT_RATELIMIT_BURST` (10).
//!
//! C header: [`include/linux/ratelimit_types.h`](srctree/include/linux/ratelimit_types.h).
//!
//! The module must be declared as `ratelimit` at the root of the crate
//! that uses the macros.

use core::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use kernel::time::Ktime;

/// The length of a window, in milliseconds (`DEFAULT_RATELIMIT_INTERVAL`).
pub const INTERVAL_MS: i64 = 5000;
/// Lines allowed per window (`DEFAULT_RATELIMIT_BURST`).
pub const BURST: u32 = 10;

/// The state of one call site.
///
/// Lock-free: callers that race at a window's start may let a line or
/// two more through than [`BURST`], never block, and never drop one that
/// the first [`BURST`] of a window would have printed.
pub struct RateLimit {
    /// Start of the current window (`ktime_get()` in ms); 0 before the
    /// first line.
    begin_ms: AtomicI64,
    /// Lines allowed in the current window.
    printed: AtomicU32,
    /// Lines suppressed since the last one allowed.
    missed: AtomicU32,
}

impl RateLimit {
    /// A call site that has printed nothing yet.
    pub const fn new() -> Self {
        Self {
            begin_ms: AtomicI64::new(0),
            printed: AtomicU32::new(0),
            missed: AtomicU32::new(0),
        }
    }

    /// Whether a line may be printed now: `Some(n)` with the number of
    /// lines suppressed since the last one allowed, or `None`.
    pub fn check(&self) -> Option<u32> {
        let now = Ktime::ktime_get().to_ms();
        let begin = self.begin_ms.load(Ordering::Relaxed);
        if (begin == 0 || now - begin >= INTERVAL_MS)
            && self
                .begin_ms
                .compare_exchange(begin, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.printed.store(0, Ordering::Relaxed);
        }
        if self.printed.load(Ordering::Relaxed) >= BURST {
            self.missed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.printed.fetch_add(1, Ordering::Relaxed);
        Some(self.missed.swap(0, Ordering::Relaxed))
    }
}

/// `pr_warn!` at most [`BURST`] times per [`INTERVAL_MS`] from this call
/// site (C: `pr_warn_ratelimited()`).
#[macro_export]
macro_rules! pr_warn_ratelimited {
    ($($arg:tt)*) => {{
        static RL: $crate::ratelimit::RateLimit = $crate::ratelimit::RateLimit::new();
        if let Some(missed) = RL.check() {
            if missed > 0 {
                kernel::pr_warn!("{} similar lines suppressed\n", missed);
            }
            kernel::pr_warn!($($arg)*);
        }
    }};
}

/// `pr_err!` at most [`BURST`] times per [`INTERVAL_MS`] from this call
/// site (C: `pr_err_ratelimited()`).
#[macro_export]
macro_rules! pr_err_ratelimited {
    ($($arg:tt)*) => {{
        static RL: $crate::ratelimit::RateLimit = $crate::ratelimit::RateLimit::new();
        if let Some(missed) = RL.check() {
            if missed > 0 {
                kernel::pr_err!("{} similar lines suppressed\n", missed);
            }
            kernel::pr_err!($($arg)*);
        }
    }};
}
