// SPDX-License-Identifier: GPL-2.0 OR MIT

//! The sample's `mac` attribute parser: what it accepts is exactly a
//! unicast address other than all zeroes, written as six two-digit hex
//! bytes; everything else is refused.

use proptest::prelude::*;
use vhost_mdev_proto_tests::virtq::parse_mac;

fn show(m: [u8; 6]) -> String {
    m.map(|b| format!("{b:02x}")).join(":")
}

#[test]
fn accepts_unicast_addresses() {
    assert_eq!(
        parse_mac("02:aa:bb:cc:dd:ee"),
        Some([2, 0xaa, 0xbb, 0xcc, 0xdd, 0xee])
    );
    assert_eq!(parse_mac("00:00:00:00:00:01"), Some([0, 0, 0, 0, 0, 1]));
    assert_eq!(
        parse_mac("FE:FF:FF:FF:FF:FF"),
        Some([0xfe, 0xff, 0xff, 0xff, 0xff, 0xff])
    );
}

#[test]
fn refuses_what_the_vm_suite_writes() {
    for s in [
        "01:00:00:00:00:01",
        "02:00:00",
        "zz:00:00:00:00:01",
        "00:00:00:00:00:00",
        "",
        "02:aa:bb:cc:dd:ee:ff",
        "02:aa:bb:cc:dd:",
        "2:aa:bb:cc:dd:ee",
        "+2:aa:bb:cc:dd:ee",
        "002:aa:bb:cc:dd:ee",
        "02-aa-bb-cc-dd-ee",
        " 02:aa:bb:cc:dd:ee",
    ] {
        assert_eq!(parse_mac(s), None, "{s:?}");
    }
}

proptest! {
    #[test]
    fn round_trips_every_unicast_address(m in any::<[u8; 6]>()) {
        let ok = m[0] & 1 == 0 && m != [0; 6];
        prop_assert_eq!(parse_mac(&show(m)), ok.then_some(m));
    }

    #[test]
    fn never_panics(s in "\\PC{0,24}") {
        let _ = parse_mac(&s);
    }
}
