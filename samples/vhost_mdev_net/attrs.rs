// SPDX-License-Identifier: GPL-2.0

//! The sample's per-instance sysfs attributes: `mac`, `mtu`, `link`,
//! `queue_pairs`, and the counters under `stats/` (totals over the pairs,
//! and `tx_packets_per_pair`, `rx_packets_per_pair`).

use super::*;
use core::fmt::{Display, Formatter};

/// Changes the config while the device is not open (a driver reads it at
/// start).
fn set_while_closed(d: &NetDev, f: impl FnOnce(&mut NetState)) -> Result {
    if d.dp.handle().is_open() {
        return Err(EBUSY);
    }
    d.dp.with(f);
    Ok(())
}

/// `mac`: settable while the device is not open.
struct Mac;

#[vtable]
impl sysfs::Attribute<NetParent> for Mac {
    const NAME: &'static CStr = c_str!("mac");

    fn show(d: &NetDev) -> Result<CString> {
        let [a, b, c, e, f, g] = d.dp.with(|st| st.mac);
        CString::try_from_fmt(fmt!("{a:02x}:{b:02x}:{c:02x}:{e:02x}:{f:02x}:{g:02x}\n"))
    }

    fn store(d: &NetDev, text: &str) -> Result {
        let mac = virtq::parse_mac(text).ok_or(EINVAL)?;
        set_while_closed(d, |st| st.mac = mac)
    }
}

/// `mtu`: 68-65535, settable while the device is not open.
struct Mtu;

#[vtable]
impl sysfs::Attribute<NetParent> for Mtu {
    const NAME: &'static CStr = c_str!("mtu");

    fn show(d: &NetDev) -> Result<CString> {
        CString::try_from_fmt(fmt!("{}\n", d.dp.with(|st| st.mtu)))
    }

    fn store(d: &NetDev, text: &str) -> Result {
        let mtu = text.parse::<u16>().ok().filter(|&m| m >= MTU_MIN);
        let mtu = mtu.ok_or(EINVAL)?;
        set_while_closed(d, |st| st.mtu = mtu)
    }
}

/// `queue_pairs`: 1 to [`MAX_PAIRS`], settable while the device is not
/// open (the core reads the queue count at every open).
struct QueuePairs;

#[vtable]
impl sysfs::Attribute<NetParent> for QueuePairs {
    const NAME: &'static CStr = c_str!("queue_pairs");

    fn show(d: &NetDev) -> Result<CString> {
        CString::try_from_fmt(fmt!("{}\n", d.dp.with(|st| st.pairs)))
    }

    fn store(d: &NetDev, text: &str) -> Result {
        let pairs = text
            .parse::<u16>()
            .ok()
            .filter(|p| (1..=MAX_PAIRS).contains(p));
        let pairs = pairs.ok_or(EINVAL)?;
        if d.dp.handle().is_open() {
            return Err(EBUSY);
        }
        d.dp.with(|st| st.set_pairs(pairs))
    }
}

/// `link`: `1`/`up` or `0`/`down`; a change fires the config interrupt.
struct Link;

#[vtable]
impl sysfs::Attribute<NetParent> for Link {
    const NAME: &'static CStr = c_str!("link");

    fn show(d: &NetDev) -> Result<CString> {
        let up = d.dp.with(|st| st.link_up);
        CString::try_from_fmt(fmt!("{}\n", u8::from(up)))
    }

    fn store(d: &NetDev, text: &str) -> Result {
        let up = match text {
            "1" | "up" => true,
            "0" | "down" => false,
            _ => return Err(EINVAL),
        };
        let was = d.dp.with(|st| core::mem::replace(&mut st.link_up, up));
        if was != up {
            d.dp.handle().config_changed();
        }
        Ok(())
    }
}

/// The loopbacks' counters, added up over the pairs (those beyond
/// `queue_pairs` too: a total never goes back).
fn stats(d: &NetDev) -> virtq::Stats {
    d.dp.with(|st| st.totals())
}

/// The files under `stats/`: name and value, in the order of [`GROUPS`].
const STATS: [(&CStr, fn(&NetDev) -> u64); 14] = [
    (c_str!("tx_packets"), |d| stats(d).tx_packets),
    (c_str!("tx_bytes"), |d| stats(d).tx_bytes),
    (c_str!("rx_packets"), |d| stats(d).rx_packets),
    (c_str!("rx_bytes"), |d| stats(d).rx_bytes),
    (c_str!("drop_oversize"), |d| stats(d).drop_oversize),
    (c_str!("drop_malformed"), |d| stats(d).drop_malformed),
    (c_str!("ring_errors"), |d| d.dp.ring_errors()),
    (c_str!("kicks"), |d| d.dp.kicks()),
    (c_str!("interrupts"), |d| d.dp.interrupts()),
    (c_str!("direct_frames"), |d| stats(d).direct_frames),
    (c_str!("runs"), |d| stats(d).runs),
    (c_str!("max_run_descs"), |d| stats(d).max_run_descs),
    (c_str!("max_run_bytes"), |d| stats(d).max_run_bytes),
    (c_str!("max_stop_runs"), |d| d.dp.max_stop_runs()),
];

/// Counter `I` of [`STATS`] (read-only).
struct Stat<const I: usize>;

#[vtable]
impl<const I: usize> sysfs::Attribute<NetParent> for Stat<I> {
    const NAME: &'static CStr = STATS[I].0;

    fn show(d: &NetDev) -> Result<CString> {
        CString::try_from_fmt(fmt!("{}\n", (STATS[I].1)(d)))
    }
}

/// A counter of each pair, `queue_pairs` of them, space separated.
struct PerPair<'a>(&'a [KBox<Loopback>], fn(&virtq::Stats) -> u64);

impl Display for PerPair<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> core::fmt::Result {
        for (i, lb) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{}", (self.1)(&lb.stats))?;
        }
        writeln!(f)
    }
}

/// `stats/tx_packets_per_pair`, `stats/rx_packets_per_pair`.
struct PairStat<const RX: bool>;

#[vtable]
impl<const RX: bool> sysfs::Attribute<NetParent> for PairStat<RX> {
    const NAME: &'static CStr = if RX {
        c_str!("rx_packets_per_pair")
    } else {
        c_str!("tx_packets_per_pair")
    };

    fn show(d: &NetDev) -> Result<CString> {
        let get: fn(&virtq::Stats) -> u64 = if RX {
            |s| s.rx_packets
        } else {
            |s| s.tx_packets
        };
        d.dp.with(|st| {
            let lbs = st.lbs.get(..usize::from(st.pairs)).unwrap_or_default();
            CString::try_from_fmt(fmt!("{}", PerPair(lbs, get)))
        })
    }
}

sysfs::attribute_groups! {
    pub(crate) static GROUPS: NetParent = [
        (None, [Mac, Mtu, Link, QueuePairs]),
        (
            Some(c_str!("stats")),
            [
                Stat<0>, Stat<1>, Stat<2>, Stat<3>, Stat<4>, Stat<5>, Stat<6>,
                Stat<7>, Stat<8>, Stat<9>, Stat<10>, Stat<11>, Stat<12>, Stat<13>,
                PairStat<false>, PairStat<true>,
            ]
        ),
    ];
}
