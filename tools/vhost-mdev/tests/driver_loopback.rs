// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The virtio-net driver against an in-process loopback device that reads
//! and writes the driver's rings through the DMA mappings it was given: the
//! instant device of `vhost-mdev bench instant`, copying whole frames.

use vhost_mdev::driver::{self, BenchOptions, KickMode, NetDriver, NetDriverConfig};
use vhost_mdev::instant::{InstantNet, InstantOptions, INSTANT_FEATURES, INSTANT_MAC};
use vhost_mdev::uapi::*;
use vhost_mdev::VhostBackend;

/// An instant device with `features` that loops whole frames back.
fn device(features: u64) -> InstantNet {
    InstantNet::new(InstantOptions {
        features,
        copy_limit: usize::MAX,
        ..Default::default()
    })
    .unwrap()
}

fn cfg(indirect: bool) -> NetDriverConfig {
    NetDriverConfig {
        queue_size: 64,
        kick: KickMode::Direct,
        indirect,
        ..Default::default()
    }
}

#[test]
fn ping_mixed_sizes_direct_and_indirect() {
    for indirect in [false, true] {
        let dev = device(INSTANT_FEATURES);
        let mut drv = NetDriver::start(&dev, cfg(indirect)).unwrap();
        assert_eq!(drv.mac(), INSTANT_MAC);
        assert_eq!(drv.config().mtu, 1500);
        assert_eq!(drv.queue_size(), 64);
        assert_eq!(
            drv.features() & (1 << VIRTIO_RING_F_INDIRECT_DESC) != 0,
            indirect
        );
        // 200 frames wrap the 64-entry rings several times.
        let rep = driver::ping(&mut drv, 200, 0).unwrap();
        assert_eq!(rep.frames, 200);
        drop(drv);
        assert_eq!(dev.num_mappings().unwrap(), 0, "driver unmapped everything");
        assert_eq!(dev.get_status().unwrap(), 0, "driver reset the device");
    }
}

#[test]
fn bench_keeps_order_with_depth() {
    // Blocking and busy polling; 65535-byte frames spanning page-sized RX
    // buffers with MRG_RXBUF (17 per frame: the 64 RX buffers hold 3).
    for (busy_poll, pingpong, size) in [
        (false, false, 256),
        (true, false, 256),
        (true, true, 256),
        (true, false, 65535),
        (true, true, 65535),
        (false, false, 65535),
    ] {
        let dev = device(INSTANT_FEATURES);
        let c = NetDriverConfig {
            max_frame: size,
            ..cfg(false)
        };
        let mut drv = NetDriver::start(&dev, c).unwrap();
        let mut reports = 0;
        let r = driver::bench(
            &mut drv,
            BenchOptions {
                size,
                depth: 32,
                duration: std::time::Duration::from_millis(300),
                pingpong,
                busy_poll,
                no_yield: busy_poll && pingpong,
            },
            &mut |_| reports += 1,
        )
        .unwrap();
        assert!(r.packets > 0);
        assert_eq!(r.bytes, r.packets * size as u64);
        assert!(r.p99_us >= r.p50_us);
        assert!(r.to_json().starts_with("{\"packets\":"));
        assert_eq!(r.busy_poll, busy_poll);
        assert_eq!(r.no_yield, busy_poll && pingpong);
        if busy_poll {
            assert_eq!(r.waits, 0);
        }
        // The driver still pings byte-exact after a bench.
        assert_eq!(driver::ping(&mut drv, 5, 0).unwrap().frames, 5);
    }
}

#[test]
fn start_fails_cleanly_without_mandatory_features() {
    let dev = device(INSTANT_FEATURES & !(1 << VIRTIO_F_ACCESS_PLATFORM));
    let e = NetDriver::start(&dev, cfg(false)).err().unwrap();
    assert!(e.to_string().contains("bit 33"), "{e}");
}
