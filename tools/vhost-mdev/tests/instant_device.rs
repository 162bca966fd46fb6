// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The driver against the in-process instant device (`vhost-mdev bench
//! instant`): frames loop through the same ring code, notifications follow
//! the driver's suppression, and bad requests are refused.

use std::time::Duration;

use vhost_mdev::driver::{
    self, negotiate, wanted_features, BenchOptions, KickMode, NetDriver, NetDriverConfig,
    TEST_SRC_MAC,
};
use vhost_mdev::error::Error;
use vhost_mdev::instant::{InstantNet, InstantOptions, HEAD_COPY, INSTANT_FEATURES, INSTANT_MAC};
use vhost_mdev::net::{build_frame, NET_HDR_LEN};
use vhost_mdev::packed::{encode_base, PackedPos};
use vhost_mdev::uapi::*;
use vhost_mdev::virtq::{Seg, Virtq, VirtqConfig, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use vhost_mdev::{DmaMapper, VhostBackend};

const RX: usize = 0;
const TX: usize = 1;

fn device(copy_limit: usize, features: u64) -> InstantNet {
    InstantNet::new(InstantOptions {
        copy_limit,
        features,
        ..Default::default()
    })
    .unwrap()
}

fn cfg(max_frame: usize) -> NetDriverConfig {
    NetDriverConfig {
        queue_size: 256,
        kick: KickMode::Direct,
        max_frame,
        timeout: Duration::from_secs(2),
        ..Default::default()
    }
}

fn errno(e: &Error) -> Option<i32> {
    match e {
        Error::Request { errno, .. } | Error::Sys { errno, .. } => Some(errno.0),
        _ => None,
    }
}

#[test]
fn ping_is_byte_exact_with_every_feature_combination() {
    for indirect in [false, true] {
        for event_idx in [false, true] {
            for mrg_rxbuf in [false, true] {
                let dev = device(usize::MAX, INSTANT_FEATURES);
                let c = NetDriverConfig {
                    indirect,
                    event_idx,
                    mrg_rxbuf,
                    queue_size: 64,
                    ..cfg(1514)
                };
                let mut drv = NetDriver::start(&dev, c).unwrap();
                let f = drv.features();
                assert_eq!(f & (1 << VIRTIO_RING_F_INDIRECT_DESC) != 0, indirect);
                assert_eq!(f & (1 << VIRTIO_RING_F_EVENT_IDX) != 0, event_idx);
                assert_eq!(f & (1 << VIRTIO_NET_F_MRG_RXBUF) != 0, mrg_rxbuf);
                assert_eq!(drv.mac(), INSTANT_MAC);
                assert_eq!(drv.config().mtu, 1500);
                assert!(drv.config().link_up());
                // 300 frames of mixed sizes wrap the 64-entry rings.
                let rep = driver::ping(&mut drv, 300, 0).unwrap();
                assert_eq!(rep.frames, 300);
                let st = dev.stats().unwrap();
                assert_eq!(st.frames, 300, "{indirect} {event_idx} {mrg_rxbuf}");
                let want: u64 = (0..300).map(|i| driver::mixed_size(i) as u64).sum();
                assert_eq!(st.bytes, want);
                assert_eq!(st.rx_buffers, 300);
                assert_eq!((st.stalls, st.dropped), (0, 0));
                drv.stop().unwrap();
                assert_eq!(dev.get_status().unwrap(), 0, "reset by the driver");
                assert_eq!(dev.num_mappings().unwrap(), 0, "all unmapped");
            }
        }
    }
}

#[test]
fn head_copy_keeps_sequence_numbers_and_lengths() {
    let dev = device(HEAD_COPY, INSTANT_FEATURES);
    let mut drv = NetDriver::start(&dev, cfg(1514)).unwrap();
    let template = build_frame(drv.mac(), TEST_SRC_MAC, 0, 1500).unwrap();
    drv.set_tx_template(&template).unwrap();
    let (mut sent, mut got) = (0u64, 0u64);
    let mut peek = [0u8; 26];
    // Bursts of up to 48 frames (RX never runs out), 2000 frames in all.
    while got < 2000 {
        while sent < 2000 && sent - got < 48 {
            assert!(drv.queue_tx_template(18, &sent.to_be_bytes()).unwrap());
            sent += 1;
        }
        drv.flush_tx().unwrap();
        // Completed before notify() returned: nothing to wait for.
        let mut n = 0;
        while let Some(len) = drv.try_recv_peek(&mut peek).unwrap() {
            assert_eq!(len, 1500);
            let seq = u64::from_be_bytes(peek[18..26].try_into().unwrap());
            assert_eq!(seq, got, "in order");
            got += 1;
            n += 1;
        }
        assert!(n > 0, "the device completes at once");
        drv.reclaim_tx().unwrap();
    }
    // Only the head of a frame is copied; the rest of the RX buffer is
    // left as it was (zero: only heads were ever written there).
    drv.queue_tx_template(18, &7u64.to_be_bytes()).unwrap();
    drv.flush_tx().unwrap();
    let f = drv.try_recv().unwrap().unwrap();
    assert_eq!(f.len(), 1500);
    assert_eq!(f[..18], template[..18]);
    assert_eq!(f[18..26], 7u64.to_be_bytes());
    assert_eq!(f[26..HEAD_COPY], template[26..HEAD_COPY]);
    assert!(f[HEAD_COPY..].iter().all(|b| *b == 0));
    assert_eq!(dev.stats().unwrap().frames, 2001);
}

#[test]
fn bench_batch_and_pingpong() {
    for size in [64usize, 1500, 65535] {
        for pingpong in [false, true] {
            for busy_poll in [true, false] {
                let dev = device(HEAD_COPY, INSTANT_FEATURES);
                let mut drv = NetDriver::start(&dev, cfg(size)).unwrap();
                let r = driver::bench(
                    &mut drv,
                    BenchOptions {
                        size,
                        depth: 64,
                        duration: Duration::from_millis(200),
                        pingpong,
                        busy_poll,
                        no_yield: false,
                    },
                    &mut |_| {},
                )
                .unwrap();
                let what = format!("size {size} pingpong {pingpong} busy_poll {busy_poll}");
                assert!(r.packets > 0, "{what}");
                assert_eq!(r.bytes, r.packets * size as u64, "{what}");
                assert_eq!(r.late_irqs, 0, "{what}");
                let st = dev.stats().unwrap();
                assert_eq!(st.frames, r.packets, "{what}");
                assert_eq!(st.dropped, 0, "{what}");
                // The bench turns TX interrupts off, and RX ones too when
                // busy polling: the device must not signal them.
                // (With EVENT_IDX the driver's stale used_event is crossed
                // again once per 65536 completions.)
                assert!(st.irqs[TX] <= st.frames.div_ceil(65536), "{what}: {st:?}");
                if busy_poll {
                    assert_eq!(r.waits, 0, "{what}");
                    assert!(
                        st.irqs[RX] <= st.rx_buffers.div_ceil(65536),
                        "{what}: {st:?}"
                    );
                }
                // RX kicks only when asked for: at start, once after each
                // frame that waited for RX buffers (and when the stale
                // avail_event is crossed again, once per 65536 buffers the
                // driver published: those used plus the ring it keeps
                // posted ahead).
                let published = st.rx_buffers + u64::from(cfg(size).queue_size);
                assert!(
                    st.kicks[RX] <= 1 + st.stalls + published.div_ceil(65536),
                    "{what}: {st:?}"
                );
                assert!(st.kicks[TX] > 0);
                if size == 65535 {
                    // 4 KiB RX buffers spanned with MRG_RXBUF.
                    assert_eq!(st.rx_buffers, 17 * st.frames, "{what}");
                    if !pingpong {
                        // 64 frames in flight need 1088 RX buffers of 256.
                        assert!(st.stalls > 0, "{what}: {st:?}");
                    }
                } else {
                    assert_eq!(st.rx_buffers, st.frames, "{what}");
                }
                // The driver still pings byte-exact afterwards (the device
                // copies only heads: 60-byte frames fit).
                assert_eq!(driver::ping(&mut drv, 5, 60).unwrap().frames, 5);
            }
        }
    }
}

#[test]
fn without_event_idx_the_avail_flags_decide() {
    for busy_poll in [true, false] {
        let dev = device(HEAD_COPY, INSTANT_FEATURES);
        let c = NetDriverConfig {
            event_idx: false,
            ..cfg(1514)
        };
        let mut drv = NetDriver::start(&dev, c).unwrap();
        assert_eq!(drv.features() & (1 << VIRTIO_RING_F_EVENT_IDX), 0);
        let r = driver::bench(
            &mut drv,
            BenchOptions {
                size: 64,
                depth: 64,
                duration: Duration::from_millis(200),
                pingpong: false,
                busy_poll,
                no_yield: false,
            },
            &mut |_| {},
        )
        .unwrap();
        assert!(r.packets > 0);
        assert_eq!(r.late_irqs, 0);
        let st = dev.stats().unwrap();
        // VRING_AVAIL_F_NO_INTERRUPT: never on TX during a bench, never on
        // RX while busy polling.
        assert_eq!(st.irqs[TX], 0, "busy_poll {busy_poll}: {st:?}");
        if busy_poll {
            assert_eq!(st.irqs[RX], 0, "{st:?}");
        }
        // VRING_USED_F_NO_NOTIFY on RX from DRIVER_OK: no RX kick at all
        // (RX never runs out here).
        assert_eq!(st.kicks[RX], 0, "busy_poll {busy_poll}: {st:?}");
        // Interrupts on again: ping is signalled on both queues (60-byte
        // frames: the device copies only heads).
        assert_eq!(driver::ping(&mut drv, 3, 60).unwrap().frames, 3);
        let st2 = dev.stats().unwrap();
        assert!(st2.irqs[RX] > st.irqs[RX] && st2.irqs[TX] > 0, "{st2:?}");
    }
}

#[test]
fn large_frames_span_rx_buffers_with_mrg_rxbuf_only() {
    // With MRG_RXBUF: 65535-byte frames in 17 page-sized RX buffers.
    let dev = device(usize::MAX, INSTANT_FEATURES);
    let mut drv = NetDriver::start(&dev, cfg(65535)).unwrap();
    assert_eq!(driver::ping(&mut drv, 40, 65535).unwrap().frames, 40);
    let st = dev.stats().unwrap();
    assert_eq!((st.frames, st.rx_buffers), (40, 40 * 17));
    drop(drv);
    // Without: the driver posts RX buffers of the whole frame.
    let dev = device(
        usize::MAX,
        INSTANT_FEATURES & !(1 << VIRTIO_NET_F_MRG_RXBUF),
    );
    let mut drv = NetDriver::start(&dev, cfg(65535)).unwrap();
    assert_eq!(drv.features() & (1 << VIRTIO_NET_F_MRG_RXBUF), 0);
    assert_eq!(driver::ping(&mut drv, 40, 65535).unwrap().frames, 40);
    let st = dev.stats().unwrap();
    assert_eq!((st.frames, st.rx_buffers), (40, 40));
}

#[test]
fn bad_requests_are_refused() {
    let dev = device(HEAD_COPY, INSTANT_FEATURES);
    let einval = Some(libc::EINVAL);
    for (index, num) in [(0, 0), (0, 3), (1, 100), (0, 2048), (0, 65536)] {
        let e = dev.set_vring_num(index, num).unwrap_err();
        assert_eq!(errno(&e), einval, "num {num}: {e}");
    }
    dev.set_vring_num(0, 1024).unwrap();
    dev.set_vring_num(1, 1).unwrap();
    for index in [2, 3, u32::MAX] {
        assert_eq!(
            errno(&dev.set_vring_num(index, 256).unwrap_err()),
            Some(libc::ENOBUFS)
        );
        assert_eq!(
            errno(&dev.get_vring_base(index).unwrap_err()),
            Some(libc::ENOBUFS)
        );
        assert!(dev.set_vring_call(index, None).is_err());
        assert!(dev.set_vring_enable(index, true).is_err());
    }
    assert!(dev.notify(2).is_err());
    assert!(dev.set_vring_enable(0, false).is_ok());
    assert_eq!(errno(&dev.set_vring_base(0, 65536).unwrap_err()), einval);
    dev.set_vring_base(0, 7).unwrap();
    assert_eq!(dev.get_vring_base(0).unwrap(), 7);
    // Ring alignment: desc 16, avail 2, used 4; no logging.
    let good = VhostVringAddr {
        index: 0,
        flags: 0,
        desc_user_addr: 0x1000,
        used_user_addr: 0x3000,
        avail_user_addr: 0x2000,
        log_guest_addr: 0,
    };
    dev.set_vring_addr(&good).unwrap();
    for bad in [
        VhostVringAddr {
            desc_user_addr: 0x1008,
            ..good
        },
        VhostVringAddr {
            avail_user_addr: 0x2001,
            ..good
        },
        VhostVringAddr {
            used_user_addr: 0x3002,
            ..good
        },
        VhostVringAddr { flags: 1, ..good },
    ] {
        assert_eq!(errno(&dev.set_vring_addr(&bad).unwrap_err()), einval);
    }
    // Config space: 12 bytes.
    assert_eq!(dev.get_config(0, 6).unwrap(), INSTANT_MAC.0);
    assert_eq!(errno(&dev.get_config(8, 8).unwrap_err()), einval);
    assert_eq!(errno(&dev.get_config(u32::MAX, 2).unwrap_err()), einval);
    // Features and status.
    // One pair: no MQ.
    assert_eq!(
        dev.get_features().unwrap(),
        INSTANT_FEATURES & !(1 << VIRTIO_NET_F_MQ)
    );
    assert_eq!(errno(&dev.set_features(1 << 63).unwrap_err()), einval);
    assert_eq!(
        errno(&dev.set_status(VIRTIO_CONFIG_S_DRIVER_OK).unwrap_err()),
        einval,
        "DRIVER_OK without FEATURES_OK"
    );
    dev.set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER)
        .unwrap();
    assert_eq!(
        errno(&dev.set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE).unwrap_err()),
        einval,
        "clearing a bit"
    );
    // FEATURES_OK without ACCESS_PLATFORM is left clear.
    dev.set_features(1 << VIRTIO_F_VERSION_1).unwrap();
    let s = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK;
    dev.set_status(s).unwrap();
    assert_eq!(dev.get_status().unwrap() & VIRTIO_CONFIG_S_FEATURES_OK, 0);
    // Kick eventfds are not supported: the driver must use notify().
    assert!(matches!(
        dev.set_vring_kick(0, None),
        Err(Error::Unsupported(_))
    ));
    dev.reset().unwrap();
    assert_eq!(dev.get_status().unwrap(), 0);
    let e = NetDriver::start(
        &dev,
        NetDriverConfig {
            kick: KickMode::EventFd,
            ..cfg(1514)
        },
    )
    .err()
    .unwrap();
    assert!(matches!(e, Error::Unsupported(_)), "{e}");
    // Vring changes while running are refused.
    let drv = NetDriver::start(&dev, cfg(1514)).unwrap();
    let e = drv.backend().set_vring_num(0, 128).unwrap_err();
    assert_eq!(errno(&e), einval);
    assert!(drv.backend().set_features(INSTANT_FEATURES).is_err());
}

#[test]
fn dma_mappings_are_checked() {
    let dev = device(HEAD_COPY, INSTANT_FEATURES);
    let vq = Virtq::new(
        VirtqConfig {
            size: 8,
            buffers: 64,
            buf_size: 256,
            max_indirect: 0,
            event_idx: false,
        },
        0x10_0000,
    )
    .unwrap();
    let len = vq.memory().len() as u64;
    assert!(len > 0x1000);
    let addr = vq.memory().addr();
    // SAFETY: every mapping of this memory is undone below, before `vq`
    // is dropped; the device never touches it (no queue is set up).
    unsafe {
        dev.map_dma(0x10_0000, len, addr).unwrap();
        let e = dev
            .map_dma(0x10_0000 + len - 0x1000, len, addr)
            .unwrap_err();
        assert_eq!(errno(&e), Some(libc::EEXIST), "{e}");
        assert!(dev.map_dma(0x100_0000, len, addr + 1).is_err(), "unaligned");
        assert!(dev.map_dma(0x100_0000, 0, addr).is_err(), "empty");
        assert!(dev.map_dma(u64::MAX - 0xfff, len, addr).is_err(), "wraps");
        dev.map_dma(0x100_0000, len, addr).unwrap();
    }
    assert_eq!(dev.num_mappings().unwrap(), 2);
    assert_eq!(
        errno(&dev.unmap_dma(0x10_0000, 0x1000).unwrap_err()),
        Some(libc::ENOENT)
    );
    dev.unmap_dma(0x10_0000, len).unwrap();
    dev.unmap_dma(0x100_0000, len).unwrap();
    assert_eq!(dev.num_mappings().unwrap(), 0);
}

/// Sets the device up by hand over two 8-entry queues at IOVAs 1 MiB (RX)
/// and 16 MiB (TX), with EVENT_IDX off.
fn manual_setup(dev: &InstantNet) -> (Virtq, Virtq) {
    let c = NetDriverConfig {
        event_idx: false,
        ..cfg(1514)
    };
    negotiate(dev, wanted_features(&c)).unwrap();
    let vqc = VirtqConfig {
        size: 8,
        buffers: 8,
        buf_size: 2048,
        max_indirect: 0,
        event_idx: false,
    };
    let rx = Virtq::new(vqc, 0x10_0000).unwrap();
    let tx = Virtq::new(vqc, 0x100_0000).unwrap();
    for (i, q) in [(0u32, &rx), (1, &tx)] {
        // SAFETY: unmapped by manual_teardown() before the queues drop.
        unsafe { q.memory().map(dev, q.iova()).unwrap() };
        dev.set_vring_num(i, 8).unwrap();
        dev.set_vring_addr(&q.vring_addr(i)).unwrap();
        // Required before DRIVER_OK, by the core's model as by the module.
        dev.set_vring_hva(&q.vring_hva(i)).unwrap();
        dev.set_vring_enable(i, true).unwrap();
    }
    dev.set_status(
        VIRTIO_CONFIG_S_ACKNOWLEDGE
            | VIRTIO_CONFIG_S_DRIVER
            | VIRTIO_CONFIG_S_FEATURES_OK
            | VIRTIO_CONFIG_S_DRIVER_OK,
    )
    .unwrap();
    (rx, tx)
}

fn manual_teardown(dev: &InstantNet, qs: (Virtq, Virtq)) {
    dev.reset().unwrap();
    for q in [&qs.0, &qs.1] {
        dev.unmap_dma(q.iova(), q.memory().len() as u64).unwrap();
    }
}

#[test]
fn rx_kicks_are_asked_for_only_while_a_frame_waits() {
    let dev = device(HEAD_COPY, INSTANT_FEATURES);
    let (mut rx, mut tx) = manual_setup(&dev);
    // Without EVENT_IDX: VRING_USED_F_NO_NOTIFY on RX, clear on TX.
    let used_flags = |q: &Virtq| q.memory().load::<u16>(q.layout().used).unwrap();
    assert_eq!(used_flags(&rx), 1);
    assert_eq!(used_flags(&tx), 0);
    // A frame with no RX buffer waits on TX and asks for an RX kick.
    let frame = build_frame(INSTANT_MAC, TEST_SRC_MAC, 3, 100).unwrap();
    tx.write_buf(0, NET_HDR_LEN, &frame).unwrap();
    let seg = |q: &Virtq, write, len| Seg {
        addr: q.buf_iova(0).unwrap(),
        len,
        write,
    };
    tx.add(&[seg(&tx, false, (NET_HDR_LEN + 100) as u32)], 0)
        .unwrap();
    assert!(tx.publish().unwrap(), "TX kick wanted");
    dev.notify(1).unwrap();
    assert!(dev.wants_rx_kick().unwrap());
    assert_eq!(used_flags(&rx), 0);
    assert!(!tx.has_used().unwrap());
    // The RX buffer comes with a kick; the frame goes through.
    rx.add(&[seg(&rx, true, 2048)], 0).unwrap();
    assert!(rx.publish().unwrap(), "RX kick wanted");
    dev.notify(0).unwrap();
    assert!(!dev.wants_rx_kick().unwrap());
    assert_eq!(used_flags(&rx), 1);
    let u = rx.pop_used().unwrap().unwrap();
    assert_eq!(u.len as usize, NET_HDR_LEN + 100);
    let got = rx.read_buf(0, NET_HDR_LEN, 100).unwrap();
    assert_eq!(got[..HEAD_COPY], frame[..HEAD_COPY]);
    assert_eq!(tx.pop_used().unwrap().unwrap().len, 0);
    let st = dev.stats().unwrap();
    assert_eq!((st.frames, st.stalls, st.kicks), (1, 1, [1, 1]));
    manual_teardown(&dev, (rx, tx));
}

#[test]
fn a_bad_chain_stops_the_device() {
    let dev = device(HEAD_COPY, INSTANT_FEATURES);
    let (rx, mut tx) = manual_setup(&dev);
    // A TX chain shorter than the virtio-net header.
    let seg = Seg {
        addr: tx.buf_iova(0).unwrap(),
        len: 4,
        write: false,
    };
    tx.add(&[seg], 0).unwrap();
    tx.publish().unwrap();
    let e = dev.notify(1).unwrap_err();
    assert!(e.to_string().contains("TX chain 0 of 4 bytes"), "{e}");
    assert_ne!(dev.get_status().unwrap() & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
    assert!(dev.notify(1).is_err(), "stays stopped until reset");
    dev.reset().unwrap();
    assert_eq!(dev.get_status().unwrap(), 0);
    manual_teardown(&dev, (rx, tx));
    // Memory the driver never mapped: DRIVER_OK is refused.
    let dev = device(HEAD_COPY, INSTANT_FEATURES);
    negotiate(&dev, wanted_features(&cfg(1514))).unwrap();
    let addr = VhostVringAddr {
        index: 0,
        flags: 0,
        desc_user_addr: 0x1000,
        used_user_addr: 0x3000,
        avail_user_addr: 0x2000,
        log_guest_addr: 0,
    };
    dev.set_vring_num(0, 8).unwrap();
    dev.set_vring_addr(&addr).unwrap();
    dev.set_vring_enable(0, true).unwrap();
    let all = VIRTIO_CONFIG_S_ACKNOWLEDGE
        | VIRTIO_CONFIG_S_DRIVER
        | VIRTIO_CONFIG_S_FEATURES_OK
        | VIRTIO_CONFIG_S_DRIVER_OK;
    let e = dev.set_status(all).unwrap_err();
    assert_eq!(errno(&e), Some(libc::EINVAL), "{e}");
}

#[test]
fn malformed_rings_are_device_errors() {
    // Each case corrupts a published one-descriptor TX chain.
    type Corrupt = fn(&Virtq, u16);
    let cases: [(&str, Corrupt); 5] = [
        ("loops", |q, head| {
            let d = q.layout().desc_entry(head);
            q.memory().store(d + 12, VRING_DESC_F_NEXT.to_le()).unwrap();
            q.memory().store(d + 14, head.to_le()).unwrap();
        }),
        ("device-writable descriptor in a TX chain", |q, head| {
            let d = q.layout().desc_entry(head);
            q.memory()
                .store(d + 12, VRING_DESC_F_WRITE.to_le())
                .unwrap();
        }),
        ("head 999", |q, _| {
            q.memory()
                .store(q.layout().avail_entry(0), 999u16.to_le())
                .unwrap();
        }),
        ("more than 8 entries past", |q, _| {
            q.memory()
                .store(q.layout().avail_idx(), 9u16.to_le())
                .unwrap();
        }),
        ("unmapped", |q, head| {
            let d = q.layout().desc_entry(head);
            q.memory().store(d, 0xdead_0000u64.to_le()).unwrap();
        }),
    ];
    for (what, corrupt) in cases {
        let dev = device(HEAD_COPY, INSTANT_FEATURES);
        let (mut rx, mut tx) = manual_setup(&dev);
        rx.add(
            &[Seg {
                addr: rx.buf_iova(0).unwrap(),
                len: 2048,
                write: true,
            }],
            0,
        )
        .unwrap();
        rx.publish().unwrap();
        let head = tx
            .add(
                &[Seg {
                    addr: tx.buf_iova(0).unwrap(),
                    len: 100,
                    write: false,
                }],
                0,
            )
            .unwrap();
        tx.publish().unwrap();
        corrupt(&tx, head);
        let e = dev.notify(1).unwrap_err();
        assert!(e.to_string().contains(what), "{what}: {e}");
        assert_ne!(
            dev.get_status().unwrap() & VIRTIO_CONFIG_S_NEEDS_RESET,
            0,
            "{what}"
        );
        assert!(!rx.has_used().unwrap(), "{what}: nothing completed");
        manual_teardown(&dev, (rx, tx));
    }
}

/// The in-process device answers as the module does (it runs the core's
/// model): SUSPEND and RESUME before DRIVER_OK do nothing and succeed, a
/// queue enabled after DRIVER_OK needs everything the module needs
/// (`SET_VRING_HVA` included), and a driver may write NEEDS_RESET back.
#[test]
fn requests_are_answered_as_the_module_answers_them() {
    let dev = device(HEAD_COPY, INSTANT_FEATURES);
    dev.suspend().unwrap();
    dev.resume().unwrap();
    let (rx, mut tx) = manual_setup(&dev);
    // Suspended and resumed while running; a configured queue disabled
    // and enabled again.
    dev.suspend().unwrap();
    dev.resume().unwrap();
    dev.set_vring_enable(0, false).unwrap();
    dev.set_vring_enable(0, true).unwrap();
    // A queue without SET_VRING_HVA cannot be enabled once the device
    // runs (nor its HVA set then).
    let fresh = InstantNet::new(InstantOptions {
        copy_limit: HEAD_COPY,
        ..Default::default()
    })
    .unwrap();
    negotiate(&fresh, wanted_features(&cfg(1514))).unwrap();
    // SAFETY: unmapped below, before the queues drop.
    unsafe { rx.memory().map(&fresh, rx.iova()).unwrap() };
    fresh.set_vring_num(0, 8).unwrap();
    fresh.set_vring_addr(&rx.vring_addr(0)).unwrap();
    let all = VIRTIO_CONFIG_S_ACKNOWLEDGE
        | VIRTIO_CONFIG_S_DRIVER
        | VIRTIO_CONFIG_S_FEATURES_OK
        | VIRTIO_CONFIG_S_DRIVER_OK;
    fresh.set_status(all).unwrap();
    let e = fresh.set_vring_enable(0, true).unwrap_err();
    assert_eq!(errno(&e), Some(libc::EINVAL), "{e}");
    fresh.set_vring_hva(&rx.vring_hva(0)).unwrap_err();
    fresh.reset().unwrap();
    fresh
        .unmap_dma(rx.iova(), rx.memory().len() as u64)
        .unwrap();
    // A broken device: the driver reads NEEDS_RESET and may write it back.
    let seg = Seg {
        addr: tx.buf_iova(0).unwrap(),
        len: 4,
        write: false,
    };
    tx.add(&[seg], 0).unwrap();
    tx.publish().unwrap();
    dev.notify(1).unwrap_err();
    let st = dev.get_status().unwrap();
    assert_eq!(st, all | VIRTIO_CONFIG_S_NEEDS_RESET);
    dev.set_status(st).unwrap();
    assert_eq!(dev.get_status().unwrap(), st);
    manual_teardown(&dev, (rx, tx));
}

#[test]
fn packed_ping_is_byte_exact_with_every_feature_combination() {
    for indirect in [false, true] {
        for event_idx in [false, true] {
            for mrg_rxbuf in [false, true] {
                let dev = device(usize::MAX, INSTANT_FEATURES);
                let c = NetDriverConfig {
                    indirect,
                    event_idx,
                    mrg_rxbuf,
                    packed: true,
                    queue_size: 64,
                    ..cfg(1514)
                };
                let mut drv = NetDriver::start(&dev, c).unwrap();
                assert!(drv.packed());
                assert!(drv.queue(0).is_packed() && drv.queue(1).is_packed());
                // 300 frames of mixed sizes wrap the 64-entry rings: both
                // wrap counters flip several times.
                assert_eq!(driver::ping(&mut drv, 300, 0).unwrap().frames, 300);
                let st = dev.stats().unwrap();
                assert_eq!(st.frames, 300, "{indirect} {event_idx} {mrg_rxbuf}");
                assert_eq!((st.stalls, st.dropped), (0, 0));
                drv.stop().unwrap();
                assert_eq!(dev.num_mappings().unwrap(), 0, "all unmapped");
            }
        }
    }
    // 65535-byte frames over 17 RX buffers each.
    let dev = device(usize::MAX, INSTANT_FEATURES);
    let c = NetDriverConfig {
        packed: true,
        ..cfg(65535)
    };
    let mut drv = NetDriver::start(&dev, c).unwrap();
    assert_eq!(driver::ping(&mut drv, 40, 65535).unwrap().frames, 40);
    assert_eq!(dev.stats().unwrap().rx_buffers, 40 * 17);
}

#[test]
fn what_the_device_lacks_is_refused_clearly() {
    // Packed rings on a device without RING_PACKED.
    let dev = device(HEAD_COPY, INSTANT_FEATURES & !(1 << VIRTIO_F_RING_PACKED));
    let c = NetDriverConfig {
        packed: true,
        ..cfg(1514)
    };
    let e = NetDriver::start(&dev, c).err().unwrap();
    assert!(
        e.to_string()
            .contains("does not offer VIRTIO_F_RING_PACKED"),
        "{e}"
    );
    // More pairs than queues.
    let dev = device(HEAD_COPY, INSTANT_FEATURES);
    let c = NetDriverConfig {
        pairs: 2,
        ..cfg(1514)
    };
    let e = NetDriver::start(&dev, c).err().unwrap();
    assert!(
        e.to_string().contains("has 2 queues, at most 1 pairs"),
        "{e}"
    );
    // Both work where offered.
    let dev = InstantNet::new(InstantOptions {
        pairs: 2,
        copy_limit: usize::MAX,
        ..Default::default()
    })
    .unwrap();
    let c = NetDriverConfig {
        pairs: 2,
        packed: true,
        ..cfg(1514)
    };
    let mut drv = NetDriver::start(&dev, c).unwrap();
    assert_ne!(drv.features() & (1 << VIRTIO_NET_F_MQ), 0);
    assert_eq!(drv.config().max_virtqueue_pairs, 2);
    for p in 0..2 {
        drv.select_pair(p).unwrap();
        assert_eq!(driver::ping(&mut drv, 50, 0).unwrap().frames, 50);
    }
    assert!(drv.select_pair(2).is_err());
    assert_eq!(dev.stats().unwrap().frames, 100);
}

#[test]
fn bench_drives_every_pair() {
    for packed in [false, true] {
        let dev = InstantNet::new(InstantOptions {
            pairs: 4,
            ..Default::default()
        })
        .unwrap();
        let c = NetDriverConfig {
            pairs: 4,
            packed,
            ..cfg(1514)
        };
        let mut drv = NetDriver::start(&dev, c).unwrap();
        for busy_poll in [false, true] {
            let opts = BenchOptions {
                size: 64,
                depth: 8,
                duration: Duration::from_millis(100),
                pingpong: false,
                busy_poll,
                no_yield: false,
            };
            let r = driver::bench(&mut drv, opts, &mut |_| {}).unwrap();
            assert_eq!(r.packed, packed);
            assert_eq!(r.pair_packets.len(), 4);
            assert!(
                r.pair_packets.iter().all(|n| *n > 0),
                "{:?}",
                r.pair_packets
            );
            assert_eq!(r.pair_packets.iter().sum::<u64>(), r.packets);
            assert!(r.to_json().contains("\"pairs\":4"));
        }
    }
}

#[test]
fn packed_base_round_trips_mid_traffic() {
    let dev = device(usize::MAX, INSTANT_FEATURES);
    let c = NetDriverConfig {
        packed: true,
        queue_size: 16,
        ..cfg(1514)
    };
    let mut drv = NetDriver::start(&dev, c).unwrap();
    // 37 frames: the 16-entry rings are in their third lap.
    assert_eq!(driver::ping(&mut drv, 37, 100).unwrap().frames, 37);
    dev.suspend().unwrap();
    for q in [0u16, 1] {
        let base = dev.get_vring_base(u32::from(q)).unwrap();
        // Everything the device consumed it completed: both halves are
        // the driver's used position (RX buffers the driver posted ahead
        // are not the device's yet).
        let used = drv.queue(q).as_packed().unwrap().used_pos();
        let want = encode_base(used, used);
        assert_eq!(base, want, "queue {q}: {base:#x} vs the driver's {want:#x}");
        assert_eq!(
            used,
            PackedPos { idx: 5, wrap: true },
            "37 frames in a 16-entry ring"
        );
        dev.set_vring_base(u32::from(q), base).unwrap();
    }
    dev.resume().unwrap();
    assert_eq!(driver::ping(&mut drv, 20, 100).unwrap().frames, 20);
    // An index beyond the ring is refused (the core's model), and the
    // base stays.
    dev.suspend().unwrap();
    let before = dev.get_vring_base(1).unwrap();
    let e = dev
        .set_vring_base(1, 16 | 1 << 15 | (16 | 1 << 15) << 16)
        .unwrap_err();
    assert_eq!(errno(&e), Some(libc::EINVAL), "{e}");
    assert_eq!(dev.get_vring_base(1).unwrap(), before);
    assert_eq!(dev.get_status().unwrap() & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
}

#[test]
fn hostile_packed_rings_stop_the_device_until_reset() {
    // Each case writes a TX descriptor at the driver's next slot by hand
    // and makes it available.
    type Case = (&'static str, fn(u16) -> Vec<(u64, u32, u16, u16)>);
    let cases: &[Case] = &[
        // Buffer id beyond the ring.
        ("bad id", |_| vec![(0x1000_0000, 64, 999, 0)]),
        // A chain whose every descriptor says NEXT.
        ("no end", |n| {
            (0..n)
                .map(|_| (0x1000_0000, 64, 0, VRING_DESC_F_NEXT))
                .collect()
        }),
        // Length that overflows the address space.
        ("overflow", |_| vec![(u64::MAX - 8, 64, 0, 0)]),
    ];
    for (name, make) in cases {
        let dev = device(usize::MAX, INSTANT_FEATURES);
        let c = NetDriverConfig {
            packed: true,
            queue_size: 8,
            ..cfg(1514)
        };
        let drv = NetDriver::start(&dev, c).unwrap();
        let q = drv.queue(1).as_packed().unwrap();
        let at = q.avail_pos();
        let l = *q.layout();
        let descs = make(l.size);
        let mut pos = at;
        for (i, (addr, len, id, flags)) in descs.iter().enumerate() {
            let off = l.desc_entry(pos.idx);
            let bits = if pos.wrap { 1u16 << 7 } else { 1 << 15 };
            let m = q.memory();
            m.store(off, addr.to_le()).unwrap();
            m.store(off + 8, len.to_le()).unwrap();
            m.store(off + 12, id.to_le()).unwrap();
            if i > 0 {
                m.store(off + 14, (flags | bits).to_le()).unwrap();
            }
            pos = pos.advance(1, l.size);
        }
        let (_, _, _, f0) = descs[0];
        let bits = if at.wrap { 1u16 << 7 } else { 1 << 15 };
        q.memory()
            .store(l.desc_entry(at.idx) + 14, (f0 | bits).to_le())
            .unwrap();
        assert!(dev.notify(1).is_err(), "{name}: accepted");
        assert_ne!(
            dev.get_status().unwrap() & VIRTIO_CONFIG_S_NEEDS_RESET,
            0,
            "{name}"
        );
        drop(drv);
        // Reusable after the reset.
        let mut drv = NetDriver::start(
            &dev,
            NetDriverConfig {
                packed: true,
                ..cfg(1514)
            },
        )
        .unwrap();
        assert_eq!(driver::ping(&mut drv, 5, 0).unwrap().frames, 5, "{name}");
    }
}
