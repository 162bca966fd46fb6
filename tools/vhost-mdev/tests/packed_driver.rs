// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The driver-side packed ring ([`vhost_mdev::packed::PackedVirtq`])
//! against the device-side walker of the proto crate
//! (`vhost_mdev_proto::packed::PackedQueue`, the code the sample runs):
//! any mix of direct and indirect chains, consumed and completed in any
//! order, published in any batches, comes back to the driver exactly once
//! with the device's length; the two sides agree on the vhost vring base;
//! event suppression in both directions loses no kick and no interrupt.

use std::sync::atomic::{fence, Ordering};

use proptest::prelude::*;
use vhost_mdev::mem::DmaMemory;
use vhost_mdev::packed::{PackedVirtq, PACKED_BASE_INIT};
use vhost_mdev::virtq::{Seg, VirtqConfig};
use vhost_mdev_proto::packed::PackedQueue;
use vhost_mdev_proto::vring::{Fault, GuestMemory, Segment};

/// The device's view of the queue memory, by IOVA.
struct Mem<'a> {
    mem: &'a DmaMemory,
    iova: u64,
}

impl Mem<'_> {
    fn off(&self, addr: u64, len: usize) -> Result<usize, Fault> {
        let off = addr.checked_sub(self.iova).ok_or(Fault)? as usize;
        if off.checked_add(len).ok_or(Fault)? > self.mem.len() {
            return Err(Fault);
        }
        Ok(off)
    }
}

impl GuestMemory for Mem<'_> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
        let o = self.off(addr, buf.len())?;
        self.mem.read(o, buf).map_err(|_| Fault)
    }
    fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), Fault> {
        let o = self.off(addr, buf.len())?;
        self.mem.write(o, buf).map_err(|_| Fault)
    }
    fn read_u16(&mut self, addr: u64) -> Result<u16, Fault> {
        let o = self.off(addr, 2)?;
        let a = self.mem.atomic_u16(o).map_err(|_| Fault)?;
        Ok(u16::from_le(a.load(Ordering::Acquire)))
    }
    fn write_u16(&mut self, addr: u64, v: u16) -> Result<(), Fault> {
        let o = self.off(addr, 2)?;
        let a = self.mem.atomic_u16(o).map_err(|_| Fault)?;
        a.store(v.to_le(), Ordering::Release);
        Ok(())
    }
    fn fence(&mut self) {
        fence(Ordering::SeqCst)
    }
    fn read_fence(&mut self) {
        fence(Ordering::Acquire)
    }
    fn write_fence(&mut self) {
        fence(Ordering::Release)
    }
}

const IOVA: u64 = 0x40_0000;

fn cfg(size: u16, event_idx: bool) -> VirtqConfig {
    VirtqConfig {
        size,
        buffers: 4,
        buf_size: 64,
        max_indirect: 4,
        event_idx,
    }
}

fn device(drv: &PackedVirtq, event_idx: bool, indirect: bool) -> PackedQueue<Vec<u16>> {
    let a = drv.vring_addr(0);
    let mut q = PackedQueue::new(
        drv.size(),
        a.desc_user_addr,
        a.avail_user_addr,
        a.used_user_addr,
        vec![0u16; usize::from(drv.size())],
    );
    q.event_idx = event_idx;
    q.indirect = indirect;
    q
}

/// Walks the next available chain on the device side and consumes it.
fn take(q: &mut PackedQueue<Vec<u16>>, m: &mut Mem) -> Option<(u16, Vec<Segment>)> {
    if q.pending(m).unwrap() == 0 {
        return None;
    }
    let (id, mut w) = q.chain(m, 0).unwrap();
    let mut segs = Vec::new();
    while let Some(s) = w.next(q, m).unwrap() {
        segs.push(s);
    }
    assert_eq!(q.consume(m).unwrap(), id);
    Some((id, segs))
}

/// One step of a run.
#[derive(Debug, Clone)]
enum Op {
    /// The driver adds a chain of `readable` + `writable` segments,
    /// indirect or not.
    Add {
        readable: u8,
        writable: u8,
        indirect: bool,
    },
    /// The driver publishes.
    Publish,
    /// The device consumes what is available.
    Consume,
    /// The device completes the `k`-th buffer in flight (modulo).
    Complete(usize),
    /// The device writes its used descriptors.
    Flush,
    /// The driver pops what is used.
    Pop,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..3, 0u8..3, any::<bool>()).prop_map(|(r, w, indirect)| Op::Add {
            readable: r,
            writable: w,
            indirect
        }),
        2 => Just(Op::Publish),
        2 => Just(Op::Consume),
        3 => any::<usize>().prop_map(Op::Complete),
        1 => Just(Op::Flush),
        2 => Just(Op::Pop),
    ]
}

fn run(size: u16, event_idx: bool, ops: &[Op]) {
    let mut drv = PackedVirtq::new(cfg(size, event_idx), IOVA).unwrap();
    let mut dev = device(&drv, event_idx, true);
    let mem = drv.memory() as *const DmaMemory;
    // SAFETY: `drv` outlives every use of `m`, and its memory never moves
    // (a separate mapping); the driver's &mut methods do not touch `mem`'s
    // allocation, only the ring bytes in it, as a real device would
    // concurrently.
    let mut m = Mem {
        mem: unsafe { &*mem },
        iova: IOVA,
    };
    // token -> (segments, published)
    let mut added: std::collections::HashMap<u64, Vec<Seg>> = Default::default();
    let mut by_id: std::collections::HashMap<u16, u64> = Default::default();
    let mut in_flight: Vec<(u16, u32)> = Vec::new();
    let mut used_lens: std::collections::HashMap<u16, u32> = Default::default();
    let mut token = 0u64;
    let mut popped = 0u64;
    for o in ops {
        match *o {
            Op::Add {
                readable,
                writable,
                indirect,
            } => {
                let n = usize::from(readable + writable).max(1);
                let segs: Vec<Seg> = (0..n)
                    .map(|i| Seg {
                        addr: 0x1000_0000 + token * 0x1000 + i as u64 * 0x100,
                        len: 1 + (token as u32 % 200) + i as u32,
                        write: i >= usize::from(readable) && writable > 0,
                    })
                    .collect();
                let r = if indirect {
                    drv.add_indirect(&segs, token)
                } else {
                    drv.add(&segs, token)
                };
                let need = if indirect { 1 } else { n };
                match r {
                    Ok(id) => {
                        added.insert(token, segs);
                        assert!(by_id.insert(id, token).is_none(), "id {id} reused");
                        token += 1;
                    }
                    Err(_) => assert!(need > drv.num_free() || n > 4 && indirect),
                }
            }
            Op::Publish => {
                drv.publish().unwrap();
            }
            Op::Consume => {
                while let Some((id, segs)) = take(&mut dev, &mut m) {
                    let t = by_id[&id];
                    let want: Vec<Segment> = added[&t]
                        .iter()
                        .map(|s| Segment {
                            addr: s.addr,
                            len: s.len,
                            write: s.write,
                        })
                        .collect();
                    assert_eq!(segs, want, "chain of token {t}");
                    let len = segs.iter().filter(|s| s.write).map(|s| s.len).sum();
                    in_flight.push((id, len));
                }
            }
            Op::Complete(k) => {
                if !in_flight.is_empty() {
                    let (id, len) = in_flight.remove(k % in_flight.len());
                    dev.put_used(&mut m, id, len).unwrap();
                    used_lens.insert(id, len);
                }
            }
            Op::Flush => dev.flush(&mut m).unwrap(),
            Op::Pop => {
                while let Some(u) = drv.pop_used().unwrap() {
                    let t = by_id.remove(&u.head).expect("popped an id not added");
                    assert_eq!(u.token, t);
                    assert_eq!(Some(u.len), used_lens.remove(&u.head));
                    added.remove(&t);
                    popped += 1;
                }
            }
        }
    }
    // Drain: publish, consume, complete, flush and pop everything.
    drv.publish().unwrap();
    while let Some((id, segs)) = take(&mut dev, &mut m) {
        in_flight.push((id, segs.iter().filter(|s| s.write).map(|s| s.len).sum()));
    }
    for (id, len) in in_flight.drain(..) {
        dev.put_used(&mut m, id, len).unwrap();
        used_lens.insert(id, len);
    }
    dev.flush(&mut m).unwrap();
    while let Some(u) = drv.pop_used().unwrap() {
        let t = by_id.remove(&u.head).expect("popped an id not added");
        assert_eq!(u.token, t);
        assert_eq!(Some(u.len), used_lens.remove(&u.head));
        popped += 1;
    }
    assert!(by_id.is_empty(), "never returned: {by_id:?}");
    assert_eq!(popped, token);
    assert_eq!(drv.num_free(), usize::from(size));
    assert_eq!(drv.in_flight(), 0);
    assert_eq!(dev.in_flight(), 0);
    // Both sides at the same place: the base a suspended device reports
    // is the driver's.
    assert_eq!(dev.base(), drv.vhost_base());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any traffic round-trips exactly, in any completion order, over
    /// several laps of small rings.
    #[test]
    fn driver_and_device_agree(
        size in prop_oneof![Just(1u16), Just(2), Just(4), Just(8), Just(16)],
        event_idx in any::<bool>(),
        ops in prop::collection::vec(op(), 0..300),
    ) {
        run(size, event_idx, &ops);
    }

    /// A device started from the driver's vhost base (a ring moved to a
    /// new device mid-life, as after SUSPEND and GET/SET_VRING_BASE)
    /// continues it.
    #[test]
    fn base_hand_over(size in prop_oneof![Just(2u16), Just(4), Just(8)], rounds in 0usize..40) {
        let mut drv = PackedVirtq::new(cfg(size, true), IOVA).unwrap();
        let mem = drv.memory() as *const DmaMemory;
        // SAFETY: as in run().
        let mut m = Mem { mem: unsafe { &*mem }, iova: IOVA };
        let mut dev = device(&drv, true, true);
        let seg = [Seg { addr: 0x9000, len: 4, write: true }];
        for r in 0..rounds {
            drv.add(&seg, r as u64).unwrap();
            drv.publish().unwrap();
            let (id, _) = take(&mut dev, &mut m).unwrap();
            dev.put_used(&mut m, id, 4).unwrap();
            dev.publish(&mut m).unwrap();
            assert_eq!(drv.pop_used().unwrap().unwrap().token, r as u64);
            if r % 3 == 0 {
                // Hand the ring over to a new device.
                let base = dev.base();
                assert_eq!(base, drv.vhost_base());
                dev = device(&drv, true, true);
                dev.set_base(base).unwrap();
            }
        }
    }
}

#[test]
fn fresh_ring_base_is_the_vhost_initial_one() {
    let drv = PackedVirtq::new(cfg(8, false), IOVA).unwrap();
    assert_eq!(drv.vhost_base(), PACKED_BASE_INIT);
    assert_eq!(
        device(&drv, false, false).base(),
        vhost_mdev_proto::packed::PACKED_BASE_INIT
    );
}

/// Kicks: a device that armed them (EVENT_IDX `DESC` at its next slot, or
/// `ENABLE`) is kicked by the next publication; one that disabled them is
/// not.
#[test]
fn kick_suppression() {
    for event_idx in [false, true] {
        let mut drv = PackedVirtq::new(cfg(8, event_idx), IOVA).unwrap();
        let mem = drv.memory() as *const DmaMemory;
        // SAFETY: as in run().
        let mut m = Mem {
            mem: unsafe { &*mem },
            iova: IOVA,
        };
        let mut dev = device(&drv, event_idx, false);
        let seg = [Seg {
            addr: 0x9000,
            len: 4,
            write: false,
        }];
        for round in 0..20u64 {
            dev.set_kicks(&mut m, true).unwrap();
            drv.add(&seg, round).unwrap();
            assert!(drv.publish().unwrap(), "round {round}: armed, no kick");
            dev.set_kicks(&mut m, false).unwrap();
            drv.add(&seg, round).unwrap();
            assert!(!drv.publish().unwrap(), "round {round}: disabled, kicked");
            while let Some((id, _)) = take(&mut dev, &mut m) {
                dev.put_used(&mut m, id, 0).unwrap();
            }
            dev.flush(&mut m).unwrap();
            while drv.pop_used().unwrap().is_some() {}
        }
        if event_idx {
            // Armed for the slot after two available chains: publishing
            // one more does not reach it... unless it does.
            drv.add(&seg, 0).unwrap();
            drv.publish().unwrap();
            assert_eq!(dev.pending(&mut m).unwrap(), 1);
            dev.arm_kick(&mut m).unwrap();
            drv.add(&seg, 1).unwrap();
            assert!(drv.publish().unwrap(), "the armed slot was published");
            drv.add(&seg, 2).unwrap();
            assert!(!drv.publish().unwrap(), "past the armed slot: kicked");
        }
    }
}

/// Interrupts: the device finds them wanted after the driver enabled
/// them, and not after it disabled them.
#[test]
fn interrupt_suppression() {
    for event_idx in [false, true] {
        let mut drv = PackedVirtq::new(cfg(8, event_idx), IOVA).unwrap();
        let mem = drv.memory() as *const DmaMemory;
        // SAFETY: as in run().
        let mut m = Mem {
            mem: unsafe { &*mem },
            iova: IOVA,
        };
        let mut dev = device(&drv, event_idx, false);
        let seg = [Seg {
            addr: 0x9000,
            len: 4,
            write: true,
        }];
        for round in 0..20u64 {
            let on = round % 2 == 0;
            if on {
                assert!(!drv.enable_interrupts().unwrap());
            } else {
                drv.disable_interrupts().unwrap();
            }
            drv.add(&seg, round).unwrap();
            drv.publish().unwrap();
            let (id, _) = take(&mut dev, &mut m).unwrap();
            dev.put_used(&mut m, id, 4).unwrap();
            dev.publish(&mut m).unwrap();
            assert_eq!(
                dev.needs_interrupt(&mut m).unwrap(),
                on,
                "round {round} (event_idx {event_idx})"
            );
            assert!(drv.has_used().unwrap());
            assert_eq!(drv.pop_used().unwrap().unwrap().len, 4);
        }
    }
}
