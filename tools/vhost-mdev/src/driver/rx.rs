// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The RX path: posting buffers, taking received frames, timeouts.

use std::time::{Duration, Instant};

use crate::backend::VhostBackend;
use crate::error::{Error, Result};
use crate::net::{VirtioNetHdr, NET_HDR_LEN};
use crate::queue::Queue;
use crate::uapi::*;
use crate::virtq::Seg;

use super::{wait_eventfd, NetDriver, RX};

impl<B: VhostBackend> NetDriver<B> {
    pub(super) fn post_rx(&mut self, slot: usize) -> Result<()> {
        let indirect = self.indirect;
        let rx = &mut self.pairs[self.cur].rx;
        let addr = rx.buf_iova(slot)?;
        let len = rx.buf_size() as u32;
        if indirect {
            let segs = [
                Seg {
                    addr,
                    len: NET_HDR_LEN as u32,
                    write: true,
                },
                Seg {
                    addr: addr + NET_HDR_LEN as u64,
                    len: len - NET_HDR_LEN as u32,
                    write: true,
                },
            ];
            rx.add_indirect(&segs, slot as u64)?;
        } else {
            rx.add(
                &[Seg {
                    addr,
                    len,
                    write: true,
                }],
                slot as u64,
            )?;
        }
        Ok(())
    }

    pub(super) fn timeout(&self, what: &str) -> Error {
        let status = self
            .backend
            .get_status()
            .map(|s| format!("status {s:#x} [{}]", status_names(s).join("|")))
            .unwrap_or_else(|e| format!("status unreadable: {e}"));
        Error::Timeout(format!(
            "waiting for {what} on {} ({status})",
            self.backend.describe()
        ))
    }

    /// Takes one received frame if there is one: calls `sink(queue, slot,
    /// offset, len)` for each piece of frame data in order (the header is
    /// left out), re-posts the buffers and returns the frame length.
    fn take_rx(
        &mut self,
        mut sink: impl FnMut(&Queue, usize, usize, usize) -> Result<()>,
    ) -> Result<Option<usize>> {
        let Some(u) = self.pairs[self.cur].rx.pop_used()? else {
            return Ok(None);
        };
        let mut slots = std::mem::take(&mut self.rx_slots);
        slots.clear();
        slots.push(u.token as usize);
        let r = self.take_rx_rest(u.token as usize, u.len, &mut slots, &mut sink);
        // Re-post whatever was taken, even after an error.
        let mut posted = Ok(());
        for s in &slots {
            if posted.is_ok() {
                posted = self.post_rx(*s);
            }
        }
        self.rx_slots = slots;
        let len = r?;
        posted?;
        if self.pairs[self.cur].rx.publish()? {
            self.kick(self.vq(RX))?;
        }
        Ok(Some(len))
    }

    fn take_rx_rest(
        &mut self,
        first: usize,
        first_len: u32,
        slots: &mut Vec<usize>,
        sink: &mut impl FnMut(&Queue, usize, usize, usize) -> Result<()>,
    ) -> Result<usize> {
        let mrg_rxbuf = self.mrg_rxbuf;
        let rx = &mut self.pairs[self.cur].rx;
        let bufsz = rx.buf_size();
        let len = (first_len as usize).min(bufsz);
        if len < NET_HDR_LEN {
            return Err(Error::Protocol(format!("RX used length {len} < header")));
        }
        let mut hdr = [0u8; NET_HDR_LEN];
        rx.read_buf_into(first, 0, &mut hdr)?;
        let hdr = VirtioNetHdr::from_bytes(&hdr)?;
        sink(rx, first, NET_HDR_LEN, len - NET_HDR_LEN)?;
        let mut total = len - NET_HDR_LEN;
        if mrg_rxbuf && hdr.num_buffers > 1 {
            for _ in 1..hdr.num_buffers {
                let u = rx.pop_used()?.ok_or_else(|| {
                    Error::Protocol("num_buffers exceeds the used entries".into())
                })?;
                slots.push(u.token as usize);
                let l = (u.len as usize).min(bufsz);
                sink(rx, u.token as usize, 0, l)?;
                total += l;
            }
        }
        Ok(total)
    }

    /// Takes one received frame if there is one (without the virtio-net
    /// header), re-posting its buffers.
    pub fn try_recv(&mut self) -> Result<Option<Vec<u8>>> {
        let mut frame = Vec::new();
        let got = self.take_rx(|q, slot, off, len| {
            frame.extend(q.read_buf(slot, off, len)?);
            Ok(())
        })?;
        Ok(got.map(|_| frame))
    }

    /// Takes one received frame if there is one, copying only its first
    /// `peek.len()` bytes (or fewer, for a shorter frame) into `peek`;
    /// returns the frame length.
    pub fn try_recv_peek(&mut self, peek: &mut [u8]) -> Result<Option<usize>> {
        let mut at = 0usize;
        self.take_rx(|q, slot, off, len| {
            let n = len.min(peek.len() - at);
            if n > 0 {
                q.read_buf_into(slot, off, &mut peek[at..at + n])?;
                at += n;
            }
            Ok(())
        })
    }

    /// Waits for one received frame.
    pub fn recv(&mut self) -> Result<Vec<u8>> {
        self.recv_timeout(self.cfg.timeout)
    }

    /// Waits up to `timeout` for one received frame.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(f) = self.try_recv()? {
                return Ok(f);
            }
            if self.pairs[self.cur].rx.enable_interrupts()? {
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(self.timeout("a received frame"));
            }
            // Bounded waits also cover a device that completes without an
            // interrupt.
            wait_eventfd(
                &self.pairs[self.cur].calls[0],
                (deadline - now).min(Duration::from_millis(50)),
            )?;
        }
    }
}
