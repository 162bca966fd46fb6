// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The vDPA bridge (`--bridge`: a vdpa_sim_net device bound to
//! vhost_mdev_vdpa, see tests/vm/bridge.sh): what the library's drivers,
//! which always send their memory table, cannot show.

use std::time::Duration;

use libc::EBUSY;
use vhost_mdev::driver::TEST_SRC_MAC;
use vhost_mdev::net::build_frame;
use vhost_mdev::{IommuKind, VhostBackend};

use crate::check;
use crate::raw::{RawNet, RawOpts};
use crate::util::*;

/// DRIVER_OK with no memory table: the device reaches no memory (it takes
/// no TX buffer and writes no RX buffer; vdpa_sim starts with an identity
/// map, which the bridge must have replaced), and a table then is refused
/// with EBUSY (the device started on physical addresses). After a reset,
/// a table before DRIVER_OK makes the same opening work: frames come back
/// byte for byte.
pub fn no_table_no_dma(env: &Env) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    {
        let mut net = RawNet::start(&dev, RawOpts::default())?;
        let frame = build_frame(net.config.mac, TEST_SRC_MAC, 1, 100).ctx("frame")?;
        net.send(&frame)?;
        std::thread::sleep(Duration::from_secs(2));
        check!(
            net.try_recv()?.is_none(),
            "a frame came back from a device with no memory table"
        );
        net.reclaim_tx()?;
        check!(
            net.tx_in_flight() == 1,
            "the device returned a TX buffer with no memory table"
        );
        let table = [
            net.rx.memory().region(net.rx.iova()),
            net.tx.memory().region(net.tx.iova()),
        ];
        expect_errno(
            dev.set_mem_table(&table),
            EBUSY,
            "a memory table after a start without one",
        )?;
    }
    let mut net = RawNet::start(
        &dev,
        RawOpts {
            mem_table: true,
            ..Default::default()
        },
    )?;
    for seq in 0..8u64 {
        let frame =
            build_frame(net.config.mac, TEST_SRC_MAC, seq, 60 + 200 * seq as usize).ctx("frame")?;
        net.send(&frame)?;
        let (_, got) = net.recv(Duration::from_secs(10)).ctx("looped frame")?;
        check!(got == frame, "frame {seq} came back different");
        net.wait_tx_done(Duration::from_secs(10))?;
    }
    Ok(())
}
