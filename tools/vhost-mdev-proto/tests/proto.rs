// SPDX-License-Identifier: GPL-2.0 OR MIT

//! Property tests of the message parser and the virtio device model.

use proptest::prelude::*;
use vhost_mdev_proto::proto::{
    self, errno::*, req, status, Backend, Model, Reply, Request, VqConfig, VringAddr,
    VIRTIO_F_RING_PACKED,
};

/// The model of a two-queue device, as the tests use it.
type M = Model<[VqConfig; 2]>;

fn model() -> M {
    Model::new([VqConfig::EMPTY; 2])
}

/// A device that records what the model asked of it.
#[derive(Clone, Debug, Default)]
struct Fake {
    features: u64,
    driver_features: Option<u64>,
    started: bool,
    resets: u32,
    config: [u8; 12],
    nums: [u32; 2],
    bases: [u32; 2],
    ready: [bool; 2],
    /// Device-set status bits (NEEDS_RESET).
    dev_status: u8,
    /// `get_config` writes nothing (a parent with a sparse config space).
    sparse_config: bool,
    suspends: u32,
    resumes: u32,
    /// Every status the model passed to `set_status`.
    statuses: Vec<u8>,
    /// `set_status` refuses a status with any of these bits.
    refuse_status: u8,
}

impl Backend for Fake {
    fn device_id(&self) -> u32 {
        1
    }
    fn device_features(&self) -> u64 {
        self.features
    }
    fn set_driver_features(&mut self, f: u64) -> bool {
        self.driver_features = Some(f);
        true
    }
    fn config_size(&self) -> u32 {
        12
    }
    fn get_config(&self, off: u32, buf: &mut [u8]) {
        if self.sparse_config {
            return;
        }
        let o = off as usize;
        buf.copy_from_slice(&self.config[o..o + buf.len()]);
    }
    fn set_config(&mut self, off: u32, data: &[u8]) {
        let o = off as usize;
        self.config[o..o + data.len()].copy_from_slice(data);
    }
    fn vq_count(&self) -> u32 {
        2
    }
    fn vq_num_max(&self) -> u16 {
        256
    }
    fn set_vq_num(&mut self, idx: u16, num: u32) {
        self.nums[idx as usize] = num;
    }
    fn set_vq_address(&mut self, idx: u16, _: u64, _: u64, _: u64) {
        assert!(idx < 2);
    }
    fn set_vq_ready(&mut self, idx: u16, r: bool) {
        self.ready[idx as usize] = r;
    }
    fn set_vq_base(&mut self, idx: u16, b: u32) {
        self.bases[idx as usize] = b;
    }
    fn get_vq_base(&self, idx: u16) -> u32 {
        self.bases[idx as usize]
    }
    fn set_status(&mut self, status: u8) -> Result<(), i32> {
        self.statuses.push(status);
        if status & self.refuse_status != 0 {
            return Err(EBUSY);
        }
        Ok(())
    }
    fn start(&mut self) -> Result<(), i32> {
        self.started = true;
        Ok(())
    }
    fn reset(&mut self) {
        self.started = false;
        self.resets += 1;
        self.dev_status = 0;
    }
    fn suspend(&mut self) -> Result<(), i32> {
        self.suspends += 1;
        Ok(())
    }
    fn resume(&mut self) -> Result<(), i32> {
        self.resumes += 1;
        Ok(())
    }
    fn device_status(&self) -> u8 {
        self.dev_status
    }
}

const NET_FEATURES: u64 = proto::VIRTIO_F_VERSION_1 | proto::VIRTIO_F_ACCESS_PLATFORM | (1 << 5);

fn fake() -> Fake {
    Fake {
        features: NET_FEATURES,
        ..Default::default()
    }
}

fn run(m: &mut M, d: &mut Fake, r: Request<'_>) -> Result<Vec<u8>, i32> {
    run_in(m, d, r, &mut vec![0u8; proto::MAX_PAYLOAD])
}

/// `run` with a reply buffer that earlier requests may have left bytes in.
fn run_in(m: &mut M, d: &mut Fake, r: Request<'_>, buf: &mut [u8]) -> Result<Vec<u8>, i32> {
    let mut reply = Reply::new(buf);
    m.handle(d, &r, &mut reply)?;
    let n = reply.len();
    Ok(buf[..n].to_vec())
}

fn msg(request: u32, flags: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = proto::Header {
        request: request.into(),
        flags,
        size: payload.len() as u32,
    }
    .encode()
    .to_vec();
    v.extend_from_slice(payload);
    v
}

#[test]
fn parse_checks_size_and_flags() {
    assert!(proto::parse_message(&msg(req::GET_FEATURES, 1, &[])).is_ok());
    let mut m = msg(req::SET_FEATURES, 0, &[0; 8]);
    m.pop();
    assert_eq!(proto::parse_message(&m), Err(EINVAL));
    assert_eq!(
        proto::parse_message(&msg(req::GET_FEATURES, 2, &[])),
        Err(EINVAL)
    );
    assert_eq!(proto::parse_message(&[0; 15]), Err(EINVAL));
    assert_eq!(proto::parse_message(&vec![0; 4097]), Err(EINVAL));
}

#[test]
fn decode_sizes() {
    assert_eq!(
        proto::decode(req::SET_FEATURES.into(), &[0; 7]),
        Err(EINVAL)
    );
    assert_eq!(proto::decode(0xdead, &[]), Err(ENOTTY));
    assert_eq!(proto::decode(1 << 40, &[]), Err(ENOTTY));
    assert_eq!(
        proto::decode(req::SET_STATUS.into(), &[8]),
        Ok(Request::SetStatus(8))
    );
}

#[test]
fn bring_up_and_reset() {
    let (mut m, mut d) = (model(), fake());
    run(&mut m, &mut d, Request::SetFeatures(NET_FEATURES)).unwrap();
    run(&mut m, &mut d, Request::SetStatus(1 | 2 | 8)).unwrap();
    assert_eq!(run(&mut m, &mut d, Request::GetStatus).unwrap(), vec![11]);
    assert_eq!(d.driver_features, Some(NET_FEATURES));
    run(&mut m, &mut d, Request::SetVringNum { index: 0, num: 256 }).unwrap();
    run(&mut m, &mut d, Request::SetVringEnable { index: 0, num: 1 }).unwrap();
    // Queue 0 is enabled without addresses: DRIVER_OK is refused.
    assert_eq!(run(&mut m, &mut d, Request::SetStatus(15)), Err(EINVAL));
    let a = proto::VringAddr {
        index: 0,
        desc: 0x1000,
        avail: 0x2000,
        used: 0x3000,
        ..Default::default()
    };
    run(&mut m, &mut d, Request::SetVringAddr(a)).unwrap();
    // Addresses without the VMM's view of them (VHOST_VFIO_SET_VRING_HVA):
    // the core could not update the ring indexes as single stores.
    assert_eq!(run(&mut m, &mut d, Request::SetStatus(15)), Err(EINVAL));
    assert!(!d.started);
    let h = proto::VringAddr {
        desc: 0x7f00_0000_1000,
        avail: 0x7f00_0000_2000,
        used: 0x7f00_0000_3000,
        ..a
    };
    for bad in [
        proto::VringAddr { flags: 1, ..h },
        proto::VringAddr {
            desc: h.desc + 8,
            ..h
        },
        proto::VringAddr {
            avail: h.avail + 1,
            ..h
        },
        proto::VringAddr {
            used: h.used + 2,
            ..h
        },
    ] {
        assert_eq!(run(&mut m, &mut d, Request::SetVringHva(bad)), Err(EINVAL));
    }
    assert_eq!(
        run(
            &mut m,
            &mut d,
            Request::SetVringHva(proto::VringAddr { index: 2, ..h })
        ),
        Err(ENOBUFS)
    );
    assert!(!m.vqs[0].hva_set);
    run(&mut m, &mut d, Request::SetVringHva(h)).unwrap();
    assert_eq!(
        m.vqs[0].ring_ranges(false),
        Some([
            (0x1000, 0x7f00_0000_1000, 16 * 256),
            (0x2000, 0x7f00_0000_2000, 6 + 2 * 256),
            (0x3000, 0x7f00_0000_3000, 6 + 8 * 256),
        ])
    );
    run(&mut m, &mut d, Request::SetStatus(15)).unwrap();
    assert!(d.started);
    assert_eq!(
        run(&mut m, &mut d, Request::SetVringHva(h)),
        Err(EINVAL),
        "ring HVAs change while running"
    );
    // Running and not suspended: ring changes are refused.
    assert_eq!(
        run(&mut m, &mut d, Request::SetVringNum { index: 0, num: 128 }),
        Err(EINVAL)
    );
    assert_eq!(
        run(&mut m, &mut d, Request::SetFeatures(NET_FEATURES)),
        Err(EBUSY)
    );
    run(&mut m, &mut d, Request::Suspend).unwrap();
    run(&mut m, &mut d, Request::SetVringNum { index: 0, num: 128 }).unwrap();
    run(&mut m, &mut d, Request::SetStatus(0)).unwrap();
    assert!(!d.started);
    assert_eq!(m, model());
}

#[test]
fn features_ok_needs_version_1_and_access_platform() {
    let (mut m, mut d) = (model(), fake());
    run(
        &mut m,
        &mut d,
        Request::SetFeatures(proto::VIRTIO_F_VERSION_1),
    )
    .unwrap();
    run(&mut m, &mut d, Request::SetStatus(1 | 2 | 8)).unwrap();
    assert_eq!(run(&mut m, &mut d, Request::GetStatus).unwrap(), vec![3]);
    assert_eq!(
        run(&mut m, &mut d, Request::SetFeatures(1 << 40)),
        Err(EINVAL)
    );
}

/// A device with a status of its own (vDPA) hears every accepted status,
/// after the features for FEATURES_OK and before `start` for DRIVER_OK; a
/// refused FEATURES_OK stays clear, a refused DRIVER_OK fails and changes
/// nothing.
#[test]
fn set_status_reaches_the_device() {
    use status::*;
    let (mut m, mut d) = (model(), fake());
    run(&mut m, &mut d, Request::SetFeatures(NET_FEATURES)).unwrap();
    run(&mut m, &mut d, Request::SetStatus(ACKNOWLEDGE)).unwrap();
    run(&mut m, &mut d, Request::SetStatus(ACKNOWLEDGE | DRIVER)).unwrap();
    d.refuse_status = FEATURES_OK;
    run(
        &mut m,
        &mut d,
        Request::SetStatus(ACKNOWLEDGE | DRIVER | FEATURES_OK),
    )
    .unwrap();
    assert_eq!(d.driver_features, Some(NET_FEATURES));
    let st = run(&mut m, &mut d, Request::GetStatus).unwrap();
    assert_eq!(
        st,
        vec![ACKNOWLEDGE | DRIVER],
        "a refused FEATURES_OK stays clear"
    );
    d.refuse_status = 0;
    let fok = ACKNOWLEDGE | DRIVER | FEATURES_OK;
    run(&mut m, &mut d, Request::SetStatus(fok)).unwrap();
    d.refuse_status = DRIVER_OK;
    assert_eq!(
        run(&mut m, &mut d, Request::SetStatus(fok | DRIVER_OK)),
        Err(EBUSY)
    );
    assert!(!d.started, "start after a refused DRIVER_OK");
    assert_eq!(run(&mut m, &mut d, Request::GetStatus).unwrap(), vec![fok]);
    d.refuse_status = 0;
    run(&mut m, &mut d, Request::SetStatus(fok | DRIVER_OK)).unwrap();
    assert!(d.started);
    assert_eq!(
        d.statuses,
        vec![
            ACKNOWLEDGE,
            ACKNOWLEDGE | DRIVER,
            fok,
            fok,
            fok | DRIVER_OK,
            fok | DRIVER_OK
        ]
    );
    // Writing the same status again tells the device nothing new.
    run(&mut m, &mut d, Request::SetStatus(fok | DRIVER_OK)).unwrap();
    assert_eq!(d.statuses.len(), 6);
}

/// Brings the fake up to DRIVER_OK with queue 0 enabled and configured.
fn running() -> (M, Fake) {
    let (mut m, mut d) = (model(), fake());
    run(&mut m, &mut d, Request::SetFeatures(NET_FEATURES)).unwrap();
    run(&mut m, &mut d, Request::SetStatus(1 | 2 | 8)).unwrap();
    run(&mut m, &mut d, Request::SetVringNum { index: 0, num: 256 }).unwrap();
    let a = proto::VringAddr {
        index: 0,
        desc: 0x1000,
        avail: 0x2000,
        used: 0x3000,
        ..Default::default()
    };
    run(&mut m, &mut d, Request::SetVringAddr(a)).unwrap();
    let h = proto::VringAddr {
        desc: 0x7f00_0000_1000,
        avail: 0x7f00_0000_2000,
        used: 0x7f00_0000_3000,
        ..a
    };
    run(&mut m, &mut d, Request::SetVringHva(h)).unwrap();
    run(&mut m, &mut d, Request::SetVringEnable { index: 0, num: 1 }).unwrap();
    run(&mut m, &mut d, Request::SetStatus(15)).unwrap();
    assert!(d.started);
    (m, d)
}

/// QEMU and Linux read the status, OR in a bit and write it back: with
/// the device's NEEDS_RESET set, that write is accepted (vhost-vdpa passes
/// it to the device), NEEDS_RESET stays until a reset, and a write that
/// clears it is refused (vhost-vdpa: "shouldn't remove status bits").
#[test]
fn needs_reset_write_back() {
    let (mut m, mut d) = running();
    d.dev_status = status::NEEDS_RESET;
    let s = run(&mut m, &mut d, Request::GetStatus).unwrap()[0];
    assert_eq!(s, 0x4f);
    run(&mut m, &mut d, Request::SetStatus(s)).unwrap();
    run(&mut m, &mut d, Request::SetStatus(s | status::FAILED)).unwrap();
    assert_eq!(run(&mut m, &mut d, Request::GetStatus).unwrap(), vec![0xcf]);
    assert_eq!(m.status & status::NEEDS_RESET, 0);
    let before = m.clone();
    assert_eq!(run(&mut m, &mut d, Request::SetStatus(0x8f)), Err(EINVAL));
    assert_eq!(m, before);
    assert_eq!(d.resets, 0);
    run(&mut m, &mut d, Request::SetStatus(0)).unwrap();
    assert_eq!(run(&mut m, &mut d, Request::GetStatus).unwrap(), vec![0]);
    // Without the device's bit, a driver that writes it is not refused
    // either, and the bit does not become the driver's.
    run(&mut m, &mut d, Request::SetStatus(1 | status::NEEDS_RESET)).unwrap();
    assert_eq!(run(&mut m, &mut d, Request::GetStatus).unwrap(), vec![1]);
}

/// SUSPEND and RESUME before DRIVER_OK succeed and do nothing (6.12
/// `vhost_vdpa_suspend()`/`vhost_vdpa_resume()` return 0 there).
#[test]
fn suspend_resume_before_driver_ok() {
    let (mut m, mut d) = (model(), fake());
    run(&mut m, &mut d, Request::SetStatus(1 | 2)).unwrap();
    let before = m.clone();
    run(&mut m, &mut d, Request::Suspend).unwrap();
    run(&mut m, &mut d, Request::Resume).unwrap();
    run(&mut m, &mut d, Request::Resume).unwrap();
    assert_eq!(m, before);
    assert_eq!((d.suspends, d.resumes), (0, 0));
    // After DRIVER_OK they reach the device.
    let (mut m, mut d) = running();
    run(&mut m, &mut d, Request::Suspend).unwrap();
    run(&mut m, &mut d, Request::Resume).unwrap();
    assert_eq!((d.suspends, d.resumes), (1, 1));
}

/// A queue enabled after DRIVER_OK gets the check DRIVER_OK made of every
/// queue enabled before: a size and addresses.
#[test]
fn enable_after_driver_ok_checks_the_queue() {
    let (mut m, mut d) = running();
    let before = m.clone();
    assert_eq!(
        run(&mut m, &mut d, Request::SetVringEnable { index: 1, num: 1 }),
        Err(EINVAL)
    );
    assert_eq!(m, before);
    assert!(!d.ready[1]);
    run(&mut m, &mut d, Request::Suspend).unwrap();
    run(&mut m, &mut d, Request::SetVringNum { index: 1, num: 64 }).unwrap();
    assert_eq!(
        run(&mut m, &mut d, Request::SetVringEnable { index: 1, num: 1 }),
        Err(EINVAL)
    );
    let a = proto::VringAddr {
        index: 1,
        desc: 0x4000,
        avail: 0x5000,
        used: 0x6000,
        ..Default::default()
    };
    run(&mut m, &mut d, Request::SetVringAddr(a)).unwrap();
    // Without the VMM's addresses of the rings, still refused.
    assert_eq!(
        run(&mut m, &mut d, Request::SetVringEnable { index: 1, num: 1 }),
        Err(EINVAL)
    );
    let h = proto::VringAddr {
        desc: 0x7f00_0000_4000,
        avail: 0x7f00_0000_5000,
        used: 0x7f00_0000_6000,
        ..a
    };
    run(&mut m, &mut d, Request::SetVringHva(h)).unwrap();
    run(&mut m, &mut d, Request::Resume).unwrap();
    run(&mut m, &mut d, Request::SetVringEnable { index: 1, num: 1 }).unwrap();
    assert!(d.ready[1]);
    // Disabling needs nothing.
    run(&mut m, &mut d, Request::SetVringEnable { index: 1, num: 0 }).unwrap();
}

/// A GET_CONFIG reply never carries bytes an earlier reply left in the
/// (shared) reply buffer, whatever the parent fills in.
#[test]
fn get_config_reply_is_zeroed() {
    let (mut m, mut d) = (model(), fake());
    d.sparse_config = true;
    let mut buf = vec![0xa5u8; proto::MAX_PAYLOAD];
    let r = run_in(
        &mut m,
        &mut d,
        Request::GetConfig { off: 2, len: 10 },
        &mut buf,
    )
    .unwrap();
    assert_eq!(&r[..8], &[2, 0, 0, 0, 10, 0, 0, 0]);
    assert_eq!(&r[8..], &[0u8; 10]);
}

fn any_request() -> impl Strategy<Value = (u32, Vec<u8>)> {
    let codes = prop_oneof![
        Just(req::GET_FEATURES),
        Just(req::SET_FEATURES),
        Just(req::SET_OWNER),
        Just(req::SET_VRING_NUM),
        Just(req::SET_VRING_ADDR),
        Just(req::SET_VRING_HVA),
        Just(req::SET_VRING_BASE),
        Just(req::GET_VRING_BASE),
        Just(req::GET_DEVICE_ID),
        Just(req::GET_STATUS),
        Just(req::SET_STATUS),
        Just(req::GET_CONFIG),
        Just(req::SET_CONFIG),
        Just(req::SET_VRING_ENABLE),
        Just(req::GET_VRING_NUM),
        Just(req::GET_CONFIG_SIZE),
        Just(req::GET_VQS_COUNT),
        Just(req::SUSPEND),
        Just(req::RESUME),
        any::<u32>(),
    ];
    (codes, proptest::collection::vec(any::<u8>(), 0..48))
}

/// The transitions a driver may make (virtio 1.x, 3.1.1), as an oracle:
/// `old` is the status GET_STATUS reports, the device's bits included (a
/// driver writes back what it read with a bit added, as on vhost-vdpa).
fn allowed(old: u8, new: u8) -> bool {
    new == 0 || old & !new == 0
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
        if let Ok((h, p)) = proto::parse_message(&bytes) {
            prop_assert_eq!(h.size as usize, p.len());
            let _ = proto::decode(h.request, p);
        }
    }

    /// Any sequence of requests: an error changes nothing, and the status
    /// only moves as virtio allows.
    #[test]
    fn model_errors_change_nothing(
        reqs in proptest::collection::vec((any_request(), any::<u8>()), 1..40),
    ) {
        let (mut m, mut d) = (model(), fake());
        for ((code, payload), fault) in reqs {
            // Now and then the device fails (NEEDS_RESET), as a parent's
            // worker does, while running.
            if fault < 16 && m.status & status::DRIVER_OK != 0 {
                d.dev_status = status::NEEDS_RESET;
            }
            let Ok(r) = proto::decode(code.into(), &payload) else { continue };
            let before = m.clone();
            let old = m.status | d.dev_status;
            match run(&mut m, &mut d, r) {
                Err(_) => prop_assert_eq!(&m, &before),
                Ok(_) => {
                    if let Request::SetStatus(s) = r {
                        prop_assert!(allowed(old, s), "{old:#x} -> {s:#x} accepted");
                    }
                    prop_assert!(m.status & status::DRIVER_OK == 0 || m.status & status::FEATURES_OK != 0);
                    prop_assert_eq!(m.status & status::NEEDS_RESET, 0);
                }
            }
        }
    }

    #[test]
    fn config_range_is_exact(off in any::<u32>(), len in any::<u32>()) {
        let ok = len != 0 && (off as u64 + len as u64) <= 12;
        prop_assert_eq!(proto::check_config_range(off, len, 12).is_ok(), ok);
    }
}

#[test]
fn request_codes_match_linux() {
    // Values from <linux/vhost.h> as computed by the C preprocessor.
    assert_eq!(req::GET_FEATURES, 0x8008_af00);
    assert_eq!(req::SET_FEATURES, 0x4008_af00);
    assert_eq!(req::SET_OWNER, 0x0000_af01);
    assert_eq!(req::SET_VRING_NUM, 0x4008_af10);
    assert_eq!(req::SET_VRING_ADDR, 0x4028_af11);
    assert_eq!(req::SET_VRING_HVA, 0x4028_afe0);
    assert_eq!(req::GET_VRING_BASE, 0xc008_af12);
    assert_eq!(req::SET_STATUS, 0x4001_af72);
    assert_eq!(req::GET_VQS_COUNT, 0x8004_af80);
}

#[test]
fn config_range_wraps() {
    assert_eq!(proto::check_config_range(u32::MAX, 2, 10), Err(EINVAL));
    assert_eq!(proto::check_config_range(4, 6, 10), Ok(()));
    assert_eq!(proto::check_config_range(4, 7, 10), Err(EINVAL));
    // No bytes: refused, as vhost-vdpa refuses it.
    assert_eq!(proto::check_config_range(0, 0, 10), Err(EINVAL));
    assert_eq!(proto::check_config_range(10, 0, 10), Err(EINVAL));
}

/// An owned request, from which a [`Request`] borrows.
#[derive(Clone, Debug)]
struct Owned {
    kind: u8,
    a: u32,
    b: u32,
    wide: u64,
    addr: proto::VringAddr,
    data: Vec<u8>,
}

impl Owned {
    fn request(&self) -> Request<'_> {
        let (a, b) = (self.a, self.b);
        match self.kind % 20 {
            0 => Request::GetFeatures,
            1 => Request::SetFeatures(self.wide),
            2 => Request::SetOwner,
            3 => Request::GetDeviceId,
            4 => Request::GetStatus,
            5 => Request::SetStatus(a as u8),
            6 => Request::GetConfigSize,
            7 => Request::GetConfig { off: a, len: b },
            8 => Request::SetConfig {
                off: a,
                data: &self.data,
            },
            9 => Request::GetVringNum,
            10 => Request::GetVqsCount,
            11 => Request::SetVringNum { index: a, num: b },
            12 => Request::SetVringBase { index: a, num: b },
            13 => Request::SetVringAddr(self.addr),
            14 => Request::SetVringHva(self.addr),
            15 => Request::GetVringBase { index: a },
            16 => Request::SetVringEnable { index: a, num: b },
            17 => Request::Suspend,
            18 => Request::SetLogBase(self.wide),
            _ => Request::Resume,
        }
    }
}

fn any_owned() -> impl Strategy<Value = Owned> {
    let addr = (any::<[u32; 2]>(), any::<[u64; 4]>()).prop_map(|(i, v)| proto::VringAddr {
        index: i[0],
        flags: i[1],
        desc: v[0],
        used: v[1],
        avail: v[2],
        log: v[3],
    });
    (
        any::<u8>(),
        any::<u32>(),
        any::<u32>(),
        any::<u64>(),
        addr,
        proptest::collection::vec(any::<u8>(), 0..proto::MAX_PAYLOAD + 16),
    )
        .prop_map(|(kind, a, b, wide, addr, data)| Owned {
            kind,
            a,
            b,
            wide,
            addr,
            data,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Every request encodes into a message that parses and decodes back
    /// to it, with the header the uAPI asks for; one too large for the
    /// region is refused, and so is a buffer too small for it.
    #[test]
    fn requests_round_trip(o in any_owned()) {
        let r = o.request();
        let mut buf = vec![0xa5u8; proto::MSG_REGION_SIZE + 64];
        let len = proto::HDR_SIZE + r.payload_len();
        if len > proto::MSG_REGION_SIZE {
            prop_assert_eq!(r.encode(&mut buf), Err(EINVAL));
            return Ok(());
        }
        prop_assert_eq!(r.encode(&mut buf[..len - 1]), Err(EINVAL));
        prop_assert_eq!(r.encode(&mut buf), Ok(len));
        let (h, payload) = proto::parse_message(&buf[..len]).unwrap();
        prop_assert_eq!(h.request, u64::from(r.code()));
        prop_assert_eq!(h.size as usize, r.payload_len());
        prop_assert_eq!(h.flags == proto::NEED_REPLY, r.has_reply());
        prop_assert_eq!(proto::Header::decode(&buf).unwrap(), h);
        let d = proto::decode(h.request, payload).unwrap();
        prop_assert_eq!(d, r);
        prop_assert_eq!(d.name(), proto::request_name(r.code()).unwrap());
        prop_assert_eq!(r.reply_len() > 0, r.has_reply());
    }

    /// Whatever message decodes encodes back to the same bytes, up to what
    /// the decoder ignores (the reply flag, and the `num` of
    /// GET_VRING_BASE).
    #[test]
    fn decoded_messages_encode_back(
        code in (0..proto::req::ALL.len()).prop_map(|i| proto::req::ALL[i].0),
        flags in 0..2u32,
        payload in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut m = proto::Header {
            request: code.into(),
            flags,
            size: payload.len() as u32,
        }
        .encode()
        .to_vec();
        m.extend_from_slice(&payload);
        let Ok((h, p)) = proto::parse_message(&m) else {
            return Err(TestCaseError::fail("a valid header did not parse"));
        };
        let Ok(r) = proto::decode(h.request, p) else {
            return Ok(());
        };
        let mut out = vec![0u8; m.len()];
        prop_assert_eq!(r.encode(&mut out), Ok(m.len()));
        let mut want = m.clone();
        want[8..12].copy_from_slice(&(if r.has_reply() { 1u32 } else { 0 }).to_ne_bytes());
        if code == req::GET_VRING_BASE {
            want[20..24].fill(0);
        }
        prop_assert_eq!(out, want);
    }
}

const PACKED_FEATURES: u64 = NET_FEATURES | VIRTIO_F_RING_PACKED;

/// Brings a packed-ring fake up to FEATURES_OK with queue 0 of 256
/// entries.
fn packed_features_ok() -> (M, Fake) {
    let (mut m, mut d) = (model(), fake());
    d.features = PACKED_FEATURES;
    run(&mut m, &mut d, Request::SetFeatures(PACKED_FEATURES)).unwrap();
    run(&mut m, &mut d, Request::SetStatus(1 | 2 | 8)).unwrap();
    run(&mut m, &mut d, Request::SetVringNum { index: 0, num: 256 }).unwrap();
    (m, d)
}

fn addr(desc: u64, avail: u64, used: u64) -> VringAddr {
    VringAddr {
        index: 0,
        desc,
        avail,
        used,
        ..Default::default()
    }
}

/// RING_PACKED is refused unless the device offers it.
#[test]
fn packed_needs_the_device() {
    let (mut m, mut d) = (model(), fake());
    assert_eq!(
        run(&mut m, &mut d, Request::SetFeatures(PACKED_FEATURES)),
        Err(EINVAL)
    );
    assert_eq!(m, model());
}

/// With packed rings the vring base is vhost's 32-bit encoding, both
/// halves checked against the ring size; split bases stay 16-bit.
#[test]
fn packed_vring_base_is_32_bit() {
    let (mut m, mut d) = packed_features_ok();
    // avail index 5 wrap 0, used index 3 wrap 1.
    let base = 5 | (3 | 1 << 15) << 16;
    run(
        &mut m,
        &mut d,
        Request::SetVringBase {
            index: 0,
            num: base,
        },
    )
    .unwrap();
    assert_eq!(d.bases[0], base);
    let r = run(&mut m, &mut d, Request::GetVringBase { index: 0 }).unwrap();
    assert_eq!(&r[4..8], &base.to_ne_bytes());
    for bad in [256, 256 << 16, 0x7fff, 0x7fff_0000] {
        let before = m.clone();
        assert_eq!(
            run(&mut m, &mut d, Request::SetVringBase { index: 0, num: bad }),
            Err(EINVAL),
            "base {bad:#x} of a 256-entry ring"
        );
        assert_eq!(m, before);
        assert_eq!(d.bases[0], base);
    }
    let (mut m, mut d) = (model(), fake());
    run(&mut m, &mut d, Request::SetFeatures(NET_FEATURES)).unwrap();
    assert_eq!(
        run(
            &mut m,
            &mut d,
            Request::SetVringBase {
                index: 0,
                num: 1 << 16
            }
        ),
        Err(EINVAL)
    );
    run(
        &mut m,
        &mut d,
        Request::SetVringBase {
            index: 0,
            num: 0xffff,
        },
    )
    .unwrap();
}

/// Packed event suppression structures are 4-byte aligned; the split
/// driver area only 2-byte.
#[test]
fn packed_ring_alignment() {
    let (mut m, mut d) = packed_features_ok();
    for bad in [
        addr(0x1008, 0x2000, 0x3000),
        addr(0x1000, 0x2002, 0x3000),
        addr(0x1000, 0x2000, 0x3002),
    ] {
        assert_eq!(run(&mut m, &mut d, Request::SetVringAddr(bad)), Err(EINVAL));
        assert_eq!(run(&mut m, &mut d, Request::SetVringHva(bad)), Err(EINVAL));
    }
    let good = addr(0x1000, 0x2004, 0x3004);
    run(&mut m, &mut d, Request::SetVringAddr(good)).unwrap();
    let packed = m.vqs[0].ring_ranges(true);
    assert_eq!(packed, None, "not configured before SET_VRING_HVA");
    run(&mut m, &mut d, Request::SetVringHva(good)).unwrap();
    assert_eq!(
        m.vqs[0].ring_ranges(true),
        Some([
            (0x1000, 0x1000, 16 * 256),
            (0x2004, 0x2004, 4),
            (0x3004, 0x3004, 4)
        ])
    );
    // Split: the driver area may be 2-byte aligned.
    let (mut m, mut d) = (model(), fake());
    run(&mut m, &mut d, Request::SetFeatures(NET_FEATURES)).unwrap();
    run(
        &mut m,
        &mut d,
        Request::SetVringAddr(addr(0x1000, 0x2002, 0x3000)),
    )
    .unwrap();
}

/// A queue set up for split rings (2-byte aligned driver area, a base the
/// packed ring cannot have) does not run once the features say packed.
#[test]
fn packed_driver_ok_rechecks_the_queues() {
    let (mut m, mut d) = (model(), fake());
    d.features = PACKED_FEATURES;
    run(&mut m, &mut d, Request::SetVringNum { index: 0, num: 256 }).unwrap();
    run(&mut m, &mut d, Request::SetVringBase { index: 0, num: 300 }).unwrap();
    let a = addr(0x1000, 0x2000, 0x3000);
    run(&mut m, &mut d, Request::SetVringAddr(a)).unwrap();
    run(&mut m, &mut d, Request::SetVringHva(a)).unwrap();
    run(&mut m, &mut d, Request::SetVringEnable { index: 0, num: 1 }).unwrap();
    run(&mut m, &mut d, Request::SetFeatures(PACKED_FEATURES)).unwrap();
    run(&mut m, &mut d, Request::SetStatus(1 | 2 | 8)).unwrap();
    assert_eq!(run(&mut m, &mut d, Request::SetStatus(15)), Err(EINVAL));
    assert!(!d.started);
    run(
        &mut m,
        &mut d,
        Request::SetVringBase {
            index: 0,
            num: 0x8000_8000,
        },
    )
    .unwrap();
    run(&mut m, &mut d, Request::SetStatus(15)).unwrap();
    assert!(d.started);
}

/// Queue indexes beyond the model's storage are refused as beyond the
/// device's count, whatever `vq_count()` says.
#[test]
fn vq_index_bounded_by_storage() {
    let mut m: Model<[VqConfig; 1]> = Model::new([VqConfig::EMPTY; 1]);
    let mut d = fake();
    let mut buf = vec![0u8; proto::MAX_PAYLOAD];
    let mut reply = Reply::new(&mut buf);
    let r = m.handle(
        &mut d,
        &Request::SetVringNum { index: 1, num: 64 },
        &mut reply,
    );
    assert_eq!(r, Err(ENOBUFS));
    assert_eq!(d.nums, [0, 0]);
}

const LOG_ALL: u64 = proto::VHOST_F_LOG_ALL;

/// A running fake that offers `VHOST_F_LOG_ALL`.
fn running_logger() -> (M, Fake) {
    let (mut m, mut d) = (model(), fake());
    d.features = NET_FEATURES | LOG_ALL;
    run(&mut m, &mut d, Request::SetFeatures(NET_FEATURES)).unwrap();
    run(&mut m, &mut d, Request::SetStatus(1 | 2 | 8)).unwrap();
    run(&mut m, &mut d, Request::SetVringNum { index: 0, num: 256 }).unwrap();
    let a = addr(0x1000, 0x2000, 0x3000);
    run(&mut m, &mut d, Request::SetVringAddr(a)).unwrap();
    let h = addr(0x7f00_0000_1000, 0x7f00_0000_2000, 0x7f00_0000_3000);
    run(&mut m, &mut d, Request::SetVringHva(h)).unwrap();
    run(&mut m, &mut d, Request::SetVringEnable { index: 0, num: 1 }).unwrap();
    run(&mut m, &mut d, Request::SetStatus(15)).unwrap();
    (m, d)
}

#[test]
fn log_all_toggles_while_running() {
    let (mut m, mut d) = running_logger();
    // The parent never sees LOG_ALL.
    assert_eq!(d.driver_features, Some(NET_FEATURES));
    let before = d.clone();
    run(&mut m, &mut d, Request::SetFeatures(NET_FEATURES | LOG_ALL)).unwrap();
    assert_eq!(m.features, NET_FEATURES | LOG_ALL);
    run(&mut m, &mut d, Request::SetFeatures(NET_FEATURES)).unwrap();
    assert_eq!(m.features, NET_FEATURES);
    // Suspended too.
    run(&mut m, &mut d, Request::Suspend).unwrap();
    run(&mut m, &mut d, Request::SetFeatures(NET_FEATURES | LOG_ALL)).unwrap();
    run(&mut m, &mut d, Request::Resume).unwrap();
    // The device was not touched: no reset, no new features, still started.
    assert_eq!(d.resets, before.resets);
    assert_eq!(d.driver_features, Some(NET_FEATURES));
    assert!(d.started);
    // Any other change after FEATURES_OK is still EBUSY, identical
    // features too, and a toggle with another bit.
    let f = m.features;
    for bad in [
        f,
        f ^ (1 << 5),
        f ^ LOG_ALL ^ (1 << 5),
        f ^ proto::VIRTIO_F_VERSION_1,
    ] {
        assert_eq!(run(&mut m, &mut d, Request::SetFeatures(bad)), Err(EBUSY));
        assert_eq!(m.features, f);
    }
}

#[test]
fn log_all_needs_the_device() {
    // A device that does not offer it (the vDPA bridge): refused before
    // FEATURES_OK (EINVAL) and after (EBUSY), and SET_LOG_BASE is unknown.
    let (mut m, mut d) = running();
    assert_eq!(
        run(&mut m, &mut d, Request::SetFeatures(NET_FEATURES | LOG_ALL)),
        Err(EBUSY)
    );
    let (mut m2, mut d2) = (model(), fake());
    assert_eq!(
        run(
            &mut m2,
            &mut d2,
            Request::SetFeatures(NET_FEATURES | LOG_ALL)
        ),
        Err(EINVAL)
    );
    assert_eq!(
        run(&mut m, &mut d, Request::SetLogBase(0x1000)),
        Err(ENOTTY)
    );
    assert_eq!(run(&mut m, &mut d, Request::SetLogBase(0)), Err(ENOTTY));
    let mut a = addr(0x1000, 0x2000, 0x3000);
    a.flags = proto::VHOST_VRING_F_LOG;
    run(&mut m, &mut d, Request::Suspend).unwrap();
    assert_eq!(run(&mut m, &mut d, Request::SetVringAddr(a)), Err(EINVAL));
}

#[test]
fn log_base_is_checked() {
    let (mut m, mut d) = running_logger();
    run(&mut m, &mut d, Request::SetLogBase(0)).unwrap();
    run(&mut m, &mut d, Request::SetLogBase(0x7f00_0000_0008)).unwrap();
    for bad in [1, 4, 0x7f00_0000_0004, u64::MAX] {
        assert_eq!(run(&mut m, &mut d, Request::SetLogBase(bad)), Err(EINVAL));
    }
    // Before anything else too.
    let (mut m, mut d) = (model(), fake());
    d.features = NET_FEATURES | LOG_ALL;
    run(&mut m, &mut d, Request::SetLogBase(0x1000)).unwrap();
}

#[test]
fn vring_log_flag_while_running() {
    let (mut m, mut d) = running_logger();
    let mut a = addr(0x1000, 0x2000, 0x3000);
    a.flags = proto::VHOST_VRING_F_LOG;
    a.log = 0x3000;
    run(&mut m, &mut d, Request::SetVringAddr(a)).unwrap();
    assert_eq!(m.vqs[0].addr, a);
    a.log = 0x9000;
    run(&mut m, &mut d, Request::SetVringAddr(a)).unwrap();
    a.flags = 0;
    run(&mut m, &mut d, Request::SetVringAddr(a)).unwrap();
    assert_eq!(m.vqs[0].addr.flags, 0);
    // Moving a ring while running is still EINVAL, with or without the
    // flag; so are other flags, a log that wraps, and a queue without
    // addresses.
    for (desc, avail, used, flags, log) in [
        (0x11000, 0x2000, 0x3000, 1, 0),
        (0x1000, 0x2002, 0x3000, 0, 0),
        (0x1000, 0x2000, 0x3004, 1, 0),
        (0x1000, 0x2000, 0x3000, 2, 0),
        (0x1000, 0x2000, 0x3000, 3, 0),
        (0x1000, 0x2000, 0x3000, 1, u64::MAX - 100),
    ] {
        let b = VringAddr {
            index: 0,
            flags,
            desc,
            avail,
            used,
            log,
        };
        assert_eq!(
            run(&mut m, &mut d, Request::SetVringAddr(b)),
            Err(EINVAL),
            "{b:?}"
        );
        assert_eq!(m.vqs[0].addr.flags, 0);
    }
    let mut b = addr(0x1000, 0x2000, 0x3000);
    b.index = 1;
    b.flags = 1;
    assert_eq!(run(&mut m, &mut d, Request::SetVringAddr(b)), Err(EINVAL));
    // The flag is not for SET_VRING_HVA.
    run(&mut m, &mut d, Request::Suspend).unwrap();
    let mut h = addr(0x7f00_0000_1000, 0x7f00_0000_2000, 0x7f00_0000_3000);
    h.flags = 1;
    assert_eq!(run(&mut m, &mut d, Request::SetVringHva(h)), Err(EINVAL));
    // Suspended: any address change, with the flag.
    let mut c = addr(0x11000, 0x12000, 0x13000);
    c.flags = 1;
    run(&mut m, &mut d, Request::SetVringAddr(c)).unwrap();
    run(&mut m, &mut d, Request::Resume).unwrap();
    assert!(d.started);
}

#[test]
fn log_all_before_features_ok_is_the_core_s() {
    let (mut m, mut d) = (model(), fake());
    d.features = NET_FEATURES | LOG_ALL;
    run(&mut m, &mut d, Request::SetFeatures(NET_FEATURES | LOG_ALL)).unwrap();
    run(&mut m, &mut d, Request::SetStatus(1 | 2 | 8)).unwrap();
    assert_eq!(run(&mut m, &mut d, Request::GetStatus).unwrap(), vec![11]);
    assert_eq!(d.driver_features, Some(NET_FEATURES));
    assert_eq!(m.features, NET_FEATURES | LOG_ALL);
    // A reset forgets it.
    run(&mut m, &mut d, Request::SetStatus(0)).unwrap();
    assert_eq!(m.features, 0);
}
