// SPDX-License-Identifier: GPL-2.0 OR MIT

//! Property tests of the dirty log's arithmetic against vhost's own
//! algorithm (`log_write()` of Linux 6.12's `drivers/vhost/vhost.c`, one
//! bit at a time).

use proptest::prelude::*;
use std::collections::BTreeSet;
use vhost_mdev_proto::log::{
    bit_of, host_span, log_words, page_range, word_location, word_masks, LOG_PAGE_SIZE, WORD_SPAN,
};

/// The log pages vhost's `log_write()` sets for `len` bytes at `addr`.
fn vhost_pages(addr: u64, len: u64) -> BTreeSet<u64> {
    let mut set = BTreeSet::new();
    if len == 0 {
        return set;
    }
    let mut page = addr / LOG_PAGE_SIZE;
    let mut left = len + addr % LOG_PAGE_SIZE;
    loop {
        set.insert(page);
        if left <= LOG_PAGE_SIZE {
            break;
        }
        left -= LOG_PAGE_SIZE;
        page += 1;
    }
    set
}

/// The log pages the word masks of [`page_range`] set.
fn our_pages(addr: u64, len: u64) -> BTreeSet<u64> {
    let mut set = BTreeSet::new();
    let Some((first, last)) = page_range(addr, len) else {
        return set;
    };
    let mut prev = None;
    for (word, mask) in word_masks(first, last) {
        assert_ne!(mask, 0, "an empty word");
        if let Some(p) = prev {
            assert_eq!(word, p + 1, "words in order, none skipped");
        }
        prev = Some(word);
        for bit in 0..64 {
            if mask & (1 << bit) != 0 {
                set.insert(word * 64 + bit);
            }
        }
    }
    set
}

#[test]
fn zero_length_sets_nothing() {
    assert_eq!(page_range(0x1234, 0), None);
    assert!(our_pages(u64::MAX, 0).is_empty());
}

#[test]
fn page_boundaries() {
    // Ending exactly at a page end: one page.
    assert_eq!(page_range(0x1000, 0x1000), Some((1, 1)));
    // One byte more: the next page too.
    assert_eq!(page_range(0x1000, 0x1001), Some((1, 2)));
    // One byte on each side of a boundary.
    assert_eq!(page_range(0x1fff, 2), Some((1, 2)));
    assert_eq!(page_range(0x1fff, 1), Some((1, 1)));
    // Word boundaries: page 63 and 64 are in words 0 and 1.
    assert_eq!(bit_of(63), (0, 63));
    assert_eq!(bit_of(64), (1, 0));
    let masks: Vec<_> = word_masks(63, 64).collect();
    assert_eq!(masks, [(0, 1 << 63), (1, 1)]);
    // A whole word.
    let masks: Vec<_> = word_masks(64, 127).collect();
    assert_eq!(masks, [(1, u64::MAX)]);
}

#[test]
fn last_page_of_the_address_space() {
    let last_page = u64::MAX / LOG_PAGE_SIZE;
    assert_eq!(page_range(u64::MAX, 1), Some((last_page, last_page)));
    assert_eq!(
        page_range(u64::MAX - LOG_PAGE_SIZE + 1, LOG_PAGE_SIZE),
        Some((last_page, last_page))
    );
    // Running past the end stops at the last page.
    assert_eq!(page_range(u64::MAX - 1, 100), Some((last_page, last_page)));
    let masks: Vec<_> = word_masks(last_page, last_page).collect();
    assert_eq!(masks, [(last_page / 64, 1 << 63)]);
    // The log of the whole address space: 2^46 words.
    assert_eq!(log_words(u64::MAX), 1 << 46);
    assert_eq!(log_words(u64::MAX) - 1, bit_of(last_page).0);
}

#[test]
fn log_sizes_are_qemu_s() {
    // QEMU: `last / VHOST_LOG_CHUNK + 1` words.
    assert_eq!(WORD_SPAN, 0x40000);
    assert_eq!(log_words(0), 1);
    assert_eq!(log_words(WORD_SPAN - 1), 1);
    assert_eq!(log_words(WORD_SPAN), 2);
    // A 4 GiB guest: 128 KiB of log.
    assert_eq!(log_words((4 << 30) - 1) * 8, 128 << 10);
}

#[test]
fn host_spans() {
    // 8 bytes at a page's end: one page; one word more: two.
    assert_eq!(host_span(0x1ff8, 1, 4096), Some((0x1000, 1)));
    assert_eq!(host_span(0x1ff8, 2, 4096), Some((0x1000, 2)));
    assert_eq!(host_span(0x1000, 512, 4096), Some((0x1000, 1)));
    assert_eq!(host_span(0x1000, 513, 4096), Some((0x1000, 2)));
    assert_eq!(host_span(0x1008, 0, 4096), Some((0x1000, 0)));
    // Past the end of the address space.
    assert_eq!(host_span(u64::MAX - 7, 2, 4096), None);
    assert_eq!(host_span(0, u64::MAX, 4096), None);
    assert_eq!(word_location(0x1ff8, 1, 4096), (1, 0));
    assert_eq!(word_location(0x1ff8, 0, 4096), (0, 0xff8));
}

proptest! {
    /// Any range of up to 70 pages sets exactly vhost's bits.
    #[test]
    fn ranges_match_vhost(addr in 0u64..(1 << 40), len in 0u64..(70 * 4096)) {
        prop_assert_eq!(our_pages(addr, len), vhost_pages(addr, len));
    }

    /// The same near the end of the address space (where vhost's sum
    /// still fits).
    #[test]
    fn ranges_at_the_end_match_vhost(back in 1u64..(70 * 4096), len in 0u64..(70 * 4096)) {
        let addr = u64::MAX - back + 1;
        let len = len.min(back);
        prop_assert_eq!(our_pages(addr, len), vhost_pages(addr, len));
    }

    /// Ranges near page and word boundaries.
    #[test]
    fn ranges_at_boundaries(word in 0u64..(1 << 30), off in -3i64..3, pages in 0u64..130, tail in -2i64..2) {
        let addr = (word * WORD_SPAN).wrapping_add_signed(off);
        let len = (pages * LOG_PAGE_SIZE).saturating_add_signed(tail);
        prop_assert_eq!(our_pages(addr, len), vhost_pages(addr, len));
    }

    /// A log that covers `last` has the word of every page up to it, and
    /// no more than one word past it.
    #[test]
    fn log_covers_its_last_address(last: u64) {
        let words = log_words(last);
        let (w, _) = bit_of(last / LOG_PAGE_SIZE);
        prop_assert_eq!(w, words - 1);
    }

    /// Every word of a log lies in the host pages of its span.
    #[test]
    fn words_are_in_the_span(base in (0u64..(1 << 47)).prop_map(|b| b & !7), words in 1u64..100_000, shift in 12u32..17) {
        let ps = 1u64 << shift;
        let (first, n) = host_span(base, words, ps).unwrap();
        prop_assert_eq!(first % ps, 0);
        for w in [0, words / 2, words - 1] {
            let (page, off) = word_location(base, w, ps);
            prop_assert!(page < n);
            prop_assert!(off + 8 <= ps);
            prop_assert_eq!(first + page * ps + off, base + w * 8);
        }
        // The last page holds the last word: no page too many.
        prop_assert_eq!(word_location(base, words - 1, ps).0, n - 1);
    }
}
