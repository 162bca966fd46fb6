// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The TX path: free list, templates, queueing and flushing frames.

use std::time::{Duration, Instant};

use crate::backend::VhostBackend;
use crate::error::{Error, Result};
use crate::net::{VirtioNetHdr, NET_HDR_LEN};
use crate::virtq::Seg;

use super::{wait_eventfd, NetDriver, TX};

impl<B: VhostBackend> NetDriver<B> {
    /// Returns completed TX buffers to the free list; returns how many.
    pub fn reclaim_tx(&mut self) -> Result<usize> {
        let p = &mut self.pairs[self.cur];
        let mut n = 0;
        while let Some(u) = p.tx.pop_used()? {
            p.tx_free.push(u.token as usize);
            n += 1;
        }
        Ok(n)
    }

    /// The largest frame the TX buffers hold (without the header).
    pub fn max_tx_frame(&self) -> usize {
        self.pairs[self.cur].tx.buf_size() - NET_HDR_LEN
    }

    fn check_tx_len(&self, len: usize) -> Result<()> {
        if len > self.max_tx_frame() {
            return Err(Error::InvalidArgument(format!(
                "frame of {len} bytes exceeds {}",
                self.max_tx_frame()
            )));
        }
        Ok(())
    }

    fn take_tx_slot(&mut self) -> Result<Option<usize>> {
        if self.pairs[self.cur].tx_free.is_empty() {
            self.reclaim_tx()?;
        }
        Ok(self.pairs[self.cur].tx_free.pop())
    }

    /// Adds TX buffer `slot`, holding the header and `len` frame bytes.
    fn add_tx(&mut self, slot: usize, len: usize) -> Result<()> {
        let indirect = self.indirect;
        let p = &mut self.pairs[self.cur];
        let addr = p.tx.buf_iova(slot)?;
        let r = if indirect {
            let segs = [
                Seg {
                    addr,
                    len: NET_HDR_LEN as u32,
                    write: false,
                },
                Seg {
                    addr: addr + NET_HDR_LEN as u64,
                    len: len as u32,
                    write: false,
                },
            ];
            p.tx.add_indirect(&segs, slot as u64)
        } else {
            p.tx.add(
                &[Seg {
                    addr,
                    len: (NET_HDR_LEN + len) as u32,
                    write: false,
                }],
                slot as u64,
            )
        };
        if let Err(e) = r {
            p.tx_free.push(slot);
            return Err(e);
        }
        Ok(())
    }

    /// Queues a frame on TX without publishing it; returns false when TX is
    /// full.
    pub fn queue_tx(&mut self, frame: &[u8]) -> Result<bool> {
        self.check_tx_len(frame.len())?;
        let Some(slot) = self.take_tx_slot()? else {
            return Ok(false);
        };
        let hdr = VirtioNetHdr::default().to_bytes();
        self.pairs[self.cur].tx.write_buf(slot, 0, &hdr)?;
        self.pairs[self.cur]
            .tx
            .write_buf(slot, NET_HDR_LEN, frame)?;
        self.pairs[self.cur].tx_has_template[slot] = false;
        self.add_tx(slot, frame.len())?;
        Ok(true)
    }

    /// Sets the frame [`NetDriver::queue_tx_template`] sends.
    pub fn set_tx_template(&mut self, frame: &[u8]) -> Result<()> {
        self.check_tx_len(frame.len())?;
        self.tx_template = frame.to_vec();
        for p in self.pairs.iter_mut() {
            p.tx_has_template.fill(false);
        }
        Ok(())
    }

    /// Queues the template frame with `patch` written at byte `at` of the
    /// frame (a sequence number), without publishing it; returns false when
    /// TX is full. A TX buffer gets the whole frame the first time only,
    /// then just the patch: the driver's copies stay out of the
    /// measurement (userspace memcpy of large buffers is very slow under
    /// TCG).
    pub fn queue_tx_template(&mut self, at: usize, patch: &[u8]) -> Result<bool> {
        self.queue_tx_patched(&[(at, patch)])
    }

    /// [`NetDriver::queue_tx_template`] with several patches, each at its
    /// byte of the frame.
    pub fn queue_tx_patched(&mut self, patches: &[(usize, &[u8])]) -> Result<bool> {
        let len = self.tx_template.len();
        for &(at, patch) in patches {
            if at + patch.len() > len {
                return Err(Error::InvalidArgument(format!(
                    "patch of {} bytes at {at} outside the {len}-byte template",
                    patch.len()
                )));
            }
        }
        let Some(slot) = self.take_tx_slot()? else {
            return Ok(false);
        };
        let p = &mut self.pairs[self.cur];
        if !p.tx_has_template[slot] {
            let hdr = VirtioNetHdr::default().to_bytes();
            p.tx.write_buf(slot, 0, &hdr)?;
            p.tx.write_buf(slot, NET_HDR_LEN, &self.tx_template)?;
            p.tx_has_template[slot] = true;
        }
        for &(at, patch) in patches {
            p.tx.write_buf(slot, NET_HDR_LEN + at, patch)?;
        }
        self.add_tx(slot, len)?;
        Ok(true)
    }

    /// Publishes queued TX frames and kicks TX if the device asks for it.
    pub fn flush_tx(&mut self) -> Result<()> {
        if self.pairs[self.cur].tx.publish()? {
            self.kick(self.vq(TX))?;
        }
        Ok(())
    }

    /// Sends one frame, waiting for TX space if needed.
    pub fn send(&mut self, frame: &[u8]) -> Result<()> {
        let deadline = Instant::now() + self.cfg.timeout;
        while !self.queue_tx(frame)? {
            if Instant::now() > deadline {
                return Err(self.timeout("TX buffers to complete"));
            }
            if !self.pairs[self.cur].tx.enable_interrupts()? {
                wait_eventfd(&self.pairs[self.cur].calls[1], Duration::from_millis(100))?;
            }
        }
        self.flush_tx()
    }
}
