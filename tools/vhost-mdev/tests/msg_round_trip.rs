// SPDX-License-Identifier: GPL-2.0 OR MIT

//! Property tests of the userspace message layer: what it encodes, the
//! protocol crate (the module's own code) decodes back to the same
//! request, and replies survive their encoding.

use proptest::prelude::*;
use vhost_mdev::msg::{check_reply, Reply, Request, HDR_SIZE, MAX_MSG};
use vhost_mdev::uapi::{
    MemRegion, VhostVringAddr, VhostVringState, MAX_MEM_REGIONS, VHOST_VFIO_NEED_REPLY,
};

fn any_state() -> impl Strategy<Value = VhostVringState> {
    (any::<u32>(), any::<u32>()).prop_map(|(index, num)| VhostVringState { index, num })
}

fn any_addr() -> impl Strategy<Value = VhostVringAddr> {
    (any::<[u32; 2]>(), any::<[u64; 4]>()).prop_map(|(i, v)| VhostVringAddr {
        index: i[0],
        flags: i[1],
        desc_user_addr: v[0],
        used_user_addr: v[1],
        avail_user_addr: v[2],
        log_guest_addr: v[3],
    })
}

fn any_request() -> impl Strategy<Value = Request> {
    prop_oneof![
        Just(Request::GetFeatures),
        any::<u64>().prop_map(Request::SetFeatures),
        Just(Request::SetOwner),
        // Valid tables (the decoder checks them): up to 64 disjoint
        // regions, one per GiB of IOVA.
        (0..=MAX_MEM_REGIONS as u64, any::<u64>()).prop_map(|(n, u)| {
            Request::SetMemTable(
                (0..n)
                    .map(|i| MemRegion {
                        guest_phys_addr: i << 30,
                        memory_size: 1 + u.rotate_left(i as u32) % (1 << 30),
                        userspace_addr: u.wrapping_mul(i + 1) & 0x7fff_ffff_f000,
                        flags_padding: 0,
                    })
                    .collect(),
            )
        }),
        Just(Request::GetDeviceId),
        Just(Request::GetStatus),
        any::<u8>().prop_map(Request::SetStatus),
        Just(Request::GetConfigSize),
        (any::<u32>(), any::<u32>()).prop_map(|(off, len)| Request::GetConfig { off, len }),
        (
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 0..MAX_MSG)
        )
            .prop_map(|(off, data)| Request::SetConfig { off, data }),
        Just(Request::GetVringNum),
        Just(Request::GetVqsCount),
        any_state().prop_map(Request::SetVringNum),
        any_addr().prop_map(Request::SetVringAddr),
        any_addr().prop_map(Request::SetVringHva),
        any_state().prop_map(Request::SetVringBase),
        any::<u32>().prop_map(Request::GetVringBase),
        any_state().prop_map(Request::SetVringEnable),
        Just(Request::Suspend),
        Just(Request::Resume),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn requests_round_trip(r in any_request()) {
        let m = r.encode();
        prop_assert_eq!(m.len(), HDR_SIZE + r.payload().len());
        prop_assert_eq!(&m[HDR_SIZE..], &r.payload()[..]);
        let flags = u32::from_ne_bytes([m[8], m[9], m[10], m[11]]);
        prop_assert_eq!(flags == VHOST_VFIO_NEED_REPLY, r.reply_size().is_some());
        if m.len() <= MAX_MSG {
            prop_assert_eq!(Request::decode(&m).unwrap(), r);
        } else {
            // Too large for the region: the device refuses it.
            prop_assert!(Request::decode(&m).is_err());
        }
    }

    #[test]
    fn replies_round_trip(
        v in any::<u64>(),
        off in any::<u32>(),
        data in proptest::collection::vec(any::<u8>(), 0..64),
        index in any::<u32>(),
    ) {
        let cases = [
            (Request::GetFeatures, Reply::U64(v)),
            (Request::GetDeviceId, Reply::U32(v as u32)),
            (Request::GetConfigSize, Reply::U32(v as u32)),
            (Request::GetVqsCount, Reply::U32(v as u32)),
            (Request::GetStatus, Reply::U8(v as u8)),
            (Request::GetVringNum, Reply::U16(v as u16)),
            (
                Request::GetVringBase(index),
                Reply::VringState(VhostVringState { index, num: v as u32 }),
            ),
            (
                Request::GetConfig { off, len: data.len() as u32 },
                Reply::Config { off, data: data.clone() },
            ),
        ];
        for (req, rep) in cases {
            let m = rep.encode(req.code());
            let p = check_reply(req.code(), req.reply_size().unwrap(), &m).unwrap();
            prop_assert_eq!(Reply::decode(&req, &p).unwrap(), rep);
        }
    }
}
