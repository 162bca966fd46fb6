// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The one-at-a-time round-trip check ([`ping`]).

use std::time::{Duration, Instant};

use crate::backend::VhostBackend;
use crate::error::{Error, Result};
use crate::net::{build_frame, check_frame, verify_frame, Mac, FRAME_MAX, FRAME_MIN};

use super::NetDriver;

/// Frame sizes of a mixed-size run: 60, 1514 and sizes in between.
pub fn mixed_size(i: u64) -> usize {
    const SIZES: [usize; 8] = [FRAME_MIN, FRAME_MAX, 64, 128, 256, 512, 1024, 1500];
    if i < SIZES.len() as u64 {
        SIZES[i as usize]
    } else {
        FRAME_MIN + (i.wrapping_mul(7919) % (FRAME_MAX - FRAME_MIN + 1) as u64) as usize
    }
}

/// The source MAC of test frames (locally administered).
pub const TEST_SRC_MAC: Mac = Mac([0x02, 0x76, 0x6d, 0x64, 0x65, 0x76]);

/// Result of [`ping`].
#[derive(Debug, Clone, Default)]
pub struct PingReport {
    /// Frames sent and received back intact.
    pub frames: u64,
    /// Round-trip times.
    pub rtts: Vec<Duration>,
}

/// Sends `count` frames of `size` bytes (0: mixed sizes 60..=1514) one at
/// a time and checks each comes back byte-identical and in order.
pub fn ping<B: VhostBackend>(
    drv: &mut NetDriver<B>,
    count: u64,
    size: usize,
) -> Result<PingReport> {
    let mut rep = PingReport::default();
    for seq in 0..count {
        let len = if size == 0 { mixed_size(seq) } else { size };
        let frame = build_frame(drv.mac(), TEST_SRC_MAC, seq, len)?;
        let t = Instant::now();
        drv.send(&frame)?;
        let got = drv.recv()?;
        rep.rtts.push(t.elapsed());
        let got_seq =
            check_frame(&got).map_err(|e| Error::Protocol(format!("frame {seq}: {e}")))?;
        if got_seq != seq {
            return Err(Error::Protocol(format!(
                "frame {seq}: received frame {got_seq} (out of order)"
            )));
        }
        verify_frame(&frame, &got)?;
        rep.frames += 1;
    }
    drv.reclaim_tx()?;
    Ok(rep)
}
