// SPDX-License-Identifier: GPL-2.0 OR MIT

//! The arithmetic of the vhost dirty log (`VHOST_SET_LOG_BASE`).
//!
//! The log is vhost's (`drivers/vhost/vhost.c`, `log_write()`; QEMU's
//! `vhost_log_sync()`): one bit per [`LOG_PAGE_SIZE`] (4 KiB) of guest
//! address, whatever the host's page size; bit `n` is bit `n % 64` of the
//! little-endian `u64` word `n / 64` from the log's start. Here the guest
//! address is the IOVA (no vIOMMU: IOVA and guest-physical address are the
//! same). The kernel module compiles this file as it is (`vhost_mdev/log.rs`)
//! and the host tests check it with arbitrary ranges.

pub use super::uapi::LOG_PAGE_SIZE;

/// Log pages (bits) per `u64` word of the log.
pub const PAGES_PER_WORD: u64 = 64;
/// Bytes of guest address one `u64` word of the log covers (256 KiB,
/// QEMU's `VHOST_LOG_CHUNK`).
pub const WORD_SPAN: u64 = LOG_PAGE_SIZE * PAGES_PER_WORD;

/// The first and last log page (inclusive) of the `len` bytes at `iova`;
/// `None` for no bytes. A range that runs past the end of the address
/// space ends at its last page.
#[inline]
pub fn page_range(iova: u64, len: u64) -> Option<(u64, u64)> {
    let last = iova.saturating_add(len.checked_sub(1)?);
    Some((iova / LOG_PAGE_SIZE, last / LOG_PAGE_SIZE))
}

/// Words of a log that covers every guest address up to `last` inclusive
/// (QEMU's `vhost_get_log_size()` for a memory table whose highest address
/// is `last`). At most 2^46, for `last == u64::MAX`.
#[inline]
pub fn log_words(last: u64) -> u64 {
    last / WORD_SPAN + 1
}

/// The word and the bit in it of log page `page`.
#[inline]
pub fn bit_of(page: u64) -> (u64, u32) {
    (page / PAGES_PER_WORD, (page % PAGES_PER_WORD) as u32)
}

/// The words of the log pages `first..=last` (`first <= last`), each with
/// the mask of its bits in the range, lowest word first: the `u64`s to OR
/// into the log. A range of `n` pages touches at most `n / 64 + 2` words.
#[inline]
pub fn word_masks(first: u64, last: u64) -> WordMasks {
    WordMasks {
        next: first,
        last,
        done: first > last,
    }
}

/// The iterator of [`word_masks`].
#[derive(Clone, Debug)]
pub struct WordMasks {
    next: u64,
    last: u64,
    done: bool,
}

impl Iterator for WordMasks {
    /// A word index and the mask of the range's bits in it.
    type Item = (u64, u64);

    #[inline]
    fn next(&mut self) -> Option<(u64, u64)> {
        if self.done {
            return None;
        }
        let (word, lo) = bit_of(self.next);
        let word_last = word * PAGES_PER_WORD + (PAGES_PER_WORD - 1);
        let end = self.last.min(word_last);
        let hi = (end % PAGES_PER_WORD) as u32;
        // Bits lo..=hi.
        let mask = (u64::MAX >> (63 - hi)) & (u64::MAX << lo);
        if end == self.last {
            self.done = true;
        } else {
            self.next = end + 1;
        }
        Some((word, mask))
    }
}

/// Where a log of `words` words at user address `base` lies in the host
/// pages of `page_size` bytes (a power of two, at least 8) that hold it:
/// the first page's address and the number of pages; `None` when the log
/// runs past the end of the address space. `words == 0` spans no page.
#[inline]
pub fn host_span(base: u64, words: u64, page_size: u64) -> Option<(u64, u64)> {
    let first = base & !(page_size - 1);
    if words == 0 {
        return Some((first, 0));
    }
    let bytes = words.checked_mul(8)?;
    let last = base.checked_add(bytes - 1)?;
    Some((first, (last - first) / page_size + 1))
}

/// Where word `word` of a log at user address `base` (8-byte aligned) is
/// in the host pages of [`host_span`]: the page index from the first and
/// the byte offset in that page (8-byte aligned, so the word never
/// straddles two pages).
#[inline]
pub fn word_location(base: u64, word: u64, page_size: u64) -> (u64, u64) {
    let at = (base & (page_size - 1)) + word * 8;
    (at / page_size, at % page_size)
}
