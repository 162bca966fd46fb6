// SPDX-License-Identifier: GPL-2.0 OR MIT

//! `VHOST_SET_MEM_TABLE`: encoding, decoding and the model's checks, on
//! valid tables and hostile ones, against a reference written here from
//! the uAPI document (not from the code under test).

use proptest::prelude::*;
use vhost_mdev_proto::proto::{
    self, errno::*, req, Backend, MemRegion, MemTable, Model, Reply, Request, VqConfig,
    MAX_MEM_REGIONS,
};

/// A device that records the memory tables it was given.
#[derive(Default)]
struct Dev {
    tables: Vec<Vec<MemRegion>>,
    /// `set_mem_table` fails with this errno.
    refuse: Option<i32>,
    started: bool,
}

impl Backend for Dev {
    fn device_id(&self) -> u32 {
        1
    }
    fn device_features(&self) -> u64 {
        proto::VIRTIO_F_VERSION_1 | proto::VIRTIO_F_ACCESS_PLATFORM
    }
    fn set_driver_features(&mut self, _: u64) -> bool {
        true
    }
    fn config_size(&self) -> u32 {
        0
    }
    fn get_config(&self, _: u32, _: &mut [u8]) {}
    fn set_config(&mut self, _: u32, _: &[u8]) {}
    fn vq_count(&self) -> u32 {
        2
    }
    fn vq_num_max(&self) -> u16 {
        256
    }
    fn set_vq_num(&mut self, _: u16, _: u32) {}
    fn set_vq_address(&mut self, _: u16, _: u64, _: u64, _: u64) {}
    fn set_vq_ready(&mut self, _: u16, _: bool) {}
    fn set_vq_base(&mut self, _: u16, _: u32) {}
    fn get_vq_base(&self, _: u16) -> u32 {
        0
    }
    fn set_mem_table(&mut self, t: &MemTable<'_>) -> Result<(), i32> {
        if let Some(e) = self.refuse {
            return Err(e);
        }
        self.tables.push(t.regions().collect());
        Ok(())
    }
    fn start(&mut self) -> Result<(), i32> {
        self.started = true;
        Ok(())
    }
    fn reset(&mut self) {
        self.started = false;
    }
    fn suspend(&mut self) -> Result<(), i32> {
        Ok(())
    }
    fn resume(&mut self) -> Result<(), i32> {
        Ok(())
    }
    fn device_status(&self) -> u8 {
        0
    }
}

type M = Model<[VqConfig; 2]>;

fn handle(m: &mut M, d: &mut Dev, r: &Request<'_>) -> Result<(), i32> {
    let mut buf = vec![0u8; proto::MAX_PAYLOAD];
    m.handle(d, r, &mut Reply::new(&mut buf))
}

/// `struct vhost_memory` bytes: the header as given, then the regions.
fn wire(nregions: u32, padding: u32, regions: &[MemRegion]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&nregions.to_ne_bytes());
    v.extend_from_slice(&padding.to_ne_bytes());
    for r in regions {
        for f in [
            r.guest_phys_addr,
            r.memory_size,
            r.userspace_addr,
            r.flags_padding,
        ] {
            v.extend_from_slice(&f.to_ne_bytes());
        }
    }
    v
}

/// The reference: what the uAPI says of a payload.
fn reference(p: &[u8]) -> Result<Vec<MemRegion>, i32> {
    if p.len() < 8 {
        return Err(EINVAL);
    }
    let n = u32::from_ne_bytes(p[0..4].try_into().unwrap()) as u128;
    let padding = u32::from_ne_bytes(p[4..8].try_into().unwrap());
    if n > 64 {
        return Err(E2BIG);
    }
    if p.len() as u128 != 8 + 32 * n || padding != 0 {
        return Err(EINVAL);
    }
    let f = |b: &[u8], i: usize| u64::from_ne_bytes(b[8 * i..8 * i + 8].try_into().unwrap());
    let regions: Vec<MemRegion> = p[8..]
        .chunks(32)
        .map(|b| MemRegion {
            guest_phys_addr: f(b, 0),
            memory_size: f(b, 1),
            userspace_addr: f(b, 2),
            flags_padding: f(b, 3),
        })
        .collect();
    // In u128, so that the reference cannot wrap.
    let end = |a: u64, s: u64| a as u128 + s as u128;
    for r in &regions {
        let top = 1u128 << 64;
        if r.memory_size == 0
            || r.flags_padding != 0
            || end(r.guest_phys_addr, r.memory_size) > top
            || end(r.userspace_addr, r.memory_size) > top
        {
            return Err(EINVAL);
        }
    }
    for (i, a) in regions.iter().enumerate() {
        for b in &regions[i + 1..] {
            let (a0, a1) = (
                a.guest_phys_addr as u128,
                end(a.guest_phys_addr, a.memory_size),
            );
            let (b0, b1) = (
                b.guest_phys_addr as u128,
                end(b.guest_phys_addr, b.memory_size),
            );
            if a0 < b1 && b0 < a1 {
                return Err(EINVAL);
            }
        }
    }
    Ok(regions)
}

/// Valid tables: up to 64 disjoint regions in any order, some ending at
/// the top of the address space, user ranges anywhere (aliasing allowed).
fn valid_table() -> impl Strategy<Value = Vec<MemRegion>> {
    (0..=MAX_MEM_REGIONS, any::<u64>(), any::<bool>())
        .prop_flat_map(|(n, seed, top)| {
            (
                Just((n, seed, top)),
                proptest::collection::vec((1u64..1 << 40, 1u64..1 << 20, any::<u64>()), n),
            )
        })
        .prop_map(|((n, seed, top), raw)| {
            // Lay the regions out one after the other with gaps, then
            // shuffle them by the seed.
            let mut at = 0u64;
            let mut v: Vec<MemRegion> = raw
                .iter()
                .map(|&(size, gap, uaddr)| {
                    at += gap;
                    let r = MemRegion::new(at, size, uaddr.min(u64::MAX - (size - 1)));
                    at += size;
                    r
                })
                .collect();
            if top && n > 0 {
                // The last region ends at the last IOVA.
                let last = v.last_mut().unwrap();
                last.guest_phys_addr = 0u64.wrapping_sub(last.memory_size);
            }
            let len = v.len();
            for i in 0..len {
                let j = (seed.rotate_left(i as u32) as usize) % len;
                v.swap(i, j);
            }
            v
        })
}

/// Hostile payloads: a mostly-valid table with one thing broken, or
/// noise.
fn hostile_payload() -> impl Strategy<Value = Vec<u8>> {
    let broken =
        (valid_table(), 0..9u8, any::<u64>(), any::<u32>()).prop_map(|(mut t, how, x, n)| {
            let len = t.len();
            let pick = (x as usize) % len.max(1);
            match how {
                0 if len > 0 => t[pick].memory_size = 0,
                1 if len > 0 => t[pick].flags_padding = x | 1,
                2 if len > 0 => {
                    t[pick].guest_phys_addr = u64::MAX - (x % 4096);
                    t[pick].memory_size = 4097 + x % 4096;
                }
                3 if len > 0 => {
                    t[pick].userspace_addr = u64::MAX - (x % 4096);
                    t[pick].memory_size = 4097 + x % 4096;
                }
                4 if len > 0 => {
                    // A copy of a region, moved to overlap it.
                    let mut r = t[pick];
                    r.guest_phys_addr = r.guest_phys_addr.wrapping_add(x % r.memory_size);
                    r.memory_size = 1 + x % (1 << 20);
                    t.push(r);
                }
                5 => return wire(n.max(65), 0, &t),
                6 => return wire(t.len() as u32, n | 1, &t),
                7 => return wire(t.len() as u32 + 1 + n % 3, 0, &t),
                _ => {
                    let mut w = wire(t.len() as u32, 0, &t);
                    w.truncate(w.len().saturating_sub(1 + (x as usize) % 40));
                    return w;
                }
            }
            wire(t.len() as u32, 0, &t)
        });
    prop_oneof![
        broken,
        proptest::collection::vec(any::<u8>(), 0..300),
        // A count that matches the bytes, regions of noise.
        (0..4u32, proptest::collection::vec(any::<u64>(), 0..16)).prop_map(|(n, f)| {
            let regions: Vec<MemRegion> = f
                .chunks_exact(4)
                .take(n as usize)
                .map(|c| MemRegion {
                    guest_phys_addr: c[0],
                    memory_size: c[1] >> (c[3] % 64),
                    userspace_addr: c[2],
                    flags_padding: c[3] & 1,
                })
                .collect();
            wire(regions.len() as u32, 0, &regions)
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// A valid table encodes into one message that parses and decodes
    /// back to it; the model forwards exactly it, in any status.
    #[test]
    fn valid_tables_round_trip(t in valid_table(), running in any::<bool>()) {
        prop_assert_eq!(reference(&wire(t.len() as u32, 0, &t)), Ok(t.clone()));
        let r = Request::SetMemTable(MemTable::Regions(&t));
        prop_assert!(!r.has_reply());
        let mut buf = vec![0u8; proto::MSG_REGION_SIZE];
        let len = r.encode(&mut buf).unwrap();
        prop_assert_eq!(len, proto::HDR_SIZE + 8 + 32 * t.len());
        let (h, p) = proto::parse_message(&buf[..len]).unwrap();
        prop_assert_eq!(h.request, u64::from(req::SET_MEM_TABLE));
        prop_assert_eq!(h.flags, 0);
        prop_assert_eq!(p, &wire(t.len() as u32, 0, &t)[..]);
        let d = proto::decode(h.request, p).unwrap();
        prop_assert_eq!(d, r);
        let Request::SetMemTable(dt) = d else {
            return Err(TestCaseError::fail("not a memory table"));
        };
        prop_assert_eq!(dt.regions().collect::<Vec<_>>(), t.clone());

        let (mut m, mut dev) = (M::default(), Dev::default());
        if running {
            let f = dev.device_features();
            handle(&mut m, &mut dev, &Request::SetFeatures(f)).unwrap();
            handle(&mut m, &mut dev, &Request::SetStatus(1 | 2 | 8 | 4)).unwrap();
            prop_assert!(dev.started);
        }
        let before = m.clone();
        handle(&mut m, &mut dev, &d).unwrap();
        prop_assert_eq!(&dev.tables, &vec![t]);
        prop_assert_eq!(m, before);
    }

    /// Whatever the payload, decoding agrees with the reference; a refused
    /// table never reaches the device and changes nothing; an accepted one
    /// reaches it exactly.
    #[test]
    fn hostile_tables(p in hostile_payload()) {
        let want = reference(&p);
        let got = proto::decode(req::SET_MEM_TABLE.into(), &p);
        match (&want, &got) {
            (Ok(regions), Ok(Request::SetMemTable(t))) => {
                prop_assert_eq!(&t.regions().collect::<Vec<_>>(), regions);
            }
            (Err(e), Err(g)) => prop_assert_eq!(e, g),
            _ => return Err(TestCaseError::fail(format!("reference {want:?}, decode {got:?}"))),
        }
        // The same regions given to the model directly (a request that did
        // not come through decode) get the same answer.
        if p.len() >= 8 && (p.len() - 8) % 32 == 0 && p[4..8] == [0; 4] {
            let regions: Vec<MemRegion> =
                MemTable::Wire(&p[8..]).regions().collect();
            let (mut m, mut dev) = (M::default(), Dev::default());
            let before = m.clone();
            let r = handle(&mut m, &mut dev, &Request::SetMemTable(MemTable::Regions(&regions)));
            let direct = reference(&wire(regions.len() as u32, 0, &regions));
            match direct {
                Ok(ref t) => {
                    prop_assert_eq!(r, Ok(()));
                    prop_assert_eq!(&dev.tables, &vec![t.clone()]);
                }
                Err(e) => {
                    prop_assert_eq!(r, Err(e));
                    prop_assert!(dev.tables.is_empty());
                }
            }
            prop_assert_eq!(m, before);
        }
    }
}

#[test]
fn limits_and_edges() {
    let ok = MemRegion::new(0x1000, 0x1000, 0x10_0000);
    let dec = |p: &[u8]| proto::decode(req::SET_MEM_TABLE.into(), p).map(|_| ());
    assert_eq!(dec(&wire(0, 0, &[])), Ok(()));
    assert_eq!(dec(&[]), Err(EINVAL));
    assert_eq!(dec(&[0; 4]), Err(EINVAL));
    // The count is checked first, whatever follows.
    assert_eq!(dec(&wire(65, 0, &[])), Err(E2BIG));
    assert_eq!(dec(&wire(u32::MAX, 7, &[ok])), Err(E2BIG));
    let many: Vec<MemRegion> = (0..65u64)
        .map(|i| MemRegion::new(i << 20, 0x1000, 0))
        .collect();
    assert_eq!(dec(&wire(64, 0, &many[..64])), Ok(()));
    assert_eq!(dec(&wire(65, 0, &many)), Err(E2BIG));
    // A table of 64 regions fits one message.
    let r = Request::SetMemTable(MemTable::Regions(&many[..64]));
    assert!(r.encode(&mut [0u8; proto::MSG_REGION_SIZE]).is_ok());
    assert_eq!(dec(&wire(1, 1, &[ok])), Err(EINVAL));
    // The last byte of the address space is reachable; one more wraps.
    let top = MemRegion::new(u64::MAX - 0xfff, 0x1000, u64::MAX - 0xfff);
    assert_eq!(dec(&wire(1, 0, &[top])), Ok(()));
    assert_eq!(
        dec(&wire(1, 0, &[MemRegion::new(u64::MAX - 0xfff, 0x1001, 0)])),
        Err(EINVAL)
    );
    assert_eq!(
        dec(&wire(1, 0, &[MemRegion::new(0, 0x1001, u64::MAX - 0xfff)])),
        Err(EINVAL)
    );
    assert_eq!(dec(&wire(1, 0, &[MemRegion::new(0, u64::MAX, 0)])), Ok(()));
    assert_eq!(dec(&wire(1, 0, &[MemRegion::new(1, u64::MAX, 0)])), Ok(()));
    assert_eq!(
        dec(&wire(1, 0, &[MemRegion::new(2, u64::MAX, 0)])),
        Err(EINVAL)
    );
    // Touching is not overlapping; one byte of overlap is.
    let next = MemRegion::new(0x2000, 0x1000, 0);
    assert_eq!(dec(&wire(2, 0, &[ok, next])), Ok(()));
    assert_eq!(dec(&wire(2, 0, &[next, ok])), Ok(()));
    let over = MemRegion::new(0x1fff, 0x1000, 0);
    assert_eq!(dec(&wire(2, 0, &[ok, over])), Err(EINVAL));
    assert_eq!(dec(&wire(2, 0, &[over, ok])), Err(EINVAL));
    // Aliased user memory is fine.
    assert_eq!(
        dec(&wire(
            2,
            0,
            &[ok, MemRegion::new(0x8000, 0x1000, 0x10_0000)]
        )),
        Ok(())
    );
}

/// A device's refusal fails the request; the model is unchanged.
#[test]
fn device_refusal_fails_the_request() {
    let (mut m, mut dev) = (M::default(), Dev::default());
    dev.refuse = Some(ENOMEM);
    let t = [MemRegion::new(0, 0x1000, 0)];
    let before = m.clone();
    assert_eq!(
        handle(
            &mut m,
            &mut dev,
            &Request::SetMemTable(MemTable::Regions(&t))
        ),
        Err(ENOMEM)
    );
    assert_eq!(m, before);
    assert!(dev.tables.is_empty());
}

/// A device without the op accepts a valid table (the default) and still
/// refuses a bad one.
#[test]
fn default_backend_accepts_valid_tables_only() {
    struct Plain(Dev);
    impl Backend for Plain {
        fn device_id(&self) -> u32 {
            1
        }
        fn device_features(&self) -> u64 {
            self.0.device_features()
        }
        fn set_driver_features(&mut self, _: u64) -> bool {
            true
        }
        fn config_size(&self) -> u32 {
            0
        }
        fn get_config(&self, _: u32, _: &mut [u8]) {}
        fn set_config(&mut self, _: u32, _: &[u8]) {}
        fn vq_count(&self) -> u32 {
            2
        }
        fn vq_num_max(&self) -> u16 {
            256
        }
        fn set_vq_num(&mut self, _: u16, _: u32) {}
        fn set_vq_address(&mut self, _: u16, _: u64, _: u64, _: u64) {}
        fn set_vq_ready(&mut self, _: u16, _: bool) {}
        fn set_vq_base(&mut self, _: u16, _: u32) {}
        fn get_vq_base(&self, _: u16) -> u32 {
            0
        }
        fn start(&mut self) -> Result<(), i32> {
            Ok(())
        }
        fn reset(&mut self) {}
        fn suspend(&mut self) -> Result<(), i32> {
            Ok(())
        }
        fn resume(&mut self) -> Result<(), i32> {
            Ok(())
        }
        fn device_status(&self) -> u8 {
            0
        }
    }
    let mut m = M::default();
    let mut dev = Plain(Dev::default());
    let mut buf = vec![0u8; proto::MAX_PAYLOAD];
    let good = [MemRegion::new(0, 0x1000, 0)];
    let bad = [MemRegion::new(0, 0, 0)];
    assert_eq!(
        m.handle(
            &mut dev,
            &Request::SetMemTable(MemTable::Regions(&good)),
            &mut Reply::new(&mut buf)
        ),
        Ok(())
    );
    assert_eq!(
        m.handle(
            &mut dev,
            &Request::SetMemTable(MemTable::Regions(&bad)),
            &mut Reply::new(&mut buf)
        ),
        Err(EINVAL)
    );
}
