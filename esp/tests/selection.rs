//! Outbound SA selection with several CHILD SAs per tunnel (one per subnet pair): each
//! packet goes out on the SA whose selectors it matches, a rekey of one pair leaves the
//! others alone, each inbound SA accepts only its own pair's packets, and the selection
//! index agrees with the rule "newest active SA whose selectors match" for any mix of
//! installs and removals (IPv4 and IPv6, overlapping selectors, ports).

mod common;

use common::{ipv4, ipv6, key, open, params, seal, ts, NOW};
use esp::{DropReason, SaTable, Sealed};
use ipsec_types::{DatapathCommand, Direction, EncrAlg, SaParams, Spi, TrafficSelector};
use proptest::prelude::*;
use std::net::IpAddr;

const PAIRS: [(&str, &str); 4] = [
    ("10.1.0.0/24", "10.2.0.0/24"),
    ("10.1.0.0/24", "10.4.0.0/24"),
    ("10.3.0.0/24", "10.2.0.0/24"),
    ("10.3.0.0/24", "10.4.0.0/24"),
];

fn pair_sa(i: usize, spi: u32, direction: Direction, fill: u8) -> SaParams {
    let mut p = params(spi, direction, i as u64 + 1, fill);
    let (l, r) = PAIRS[i];
    (p.local_ts, p.remote_ts) = (vec![ts(l)], vec![ts(r)]);
    p
}

fn spi_of(t: &SaTable, src: &str, dst: &str) -> Option<u32> {
    let mut out = vec![0u8; 200];
    match t.seal(NOW, &ipv4(src, dst, 60), &mut out) {
        Sealed::Send { packet, .. } => Some(u32::from_be_bytes(packet[..4].try_into().unwrap())),
        Sealed::Drop(_) => None,
    }
}

#[test]
fn each_pair_has_its_own_outbound_sa_and_a_rekey_moves_only_its_pair() {
    let mut t = SaTable::new();
    for i in 0..4 {
        t = t
            .apply(&DatapathCommand::InstallOutbound(pair_sa(i, 0x100 + i as u32, Direction::Outbound, i as u8)))
            .unwrap();
    }
    let probes =
        [("10.1.0.5", "10.2.0.9"), ("10.1.0.5", "10.4.0.9"), ("10.3.0.5", "10.2.0.9"), ("10.3.0.5", "10.4.0.9")];
    for (i, (s, d)) in probes.iter().enumerate() {
        assert_eq!(spi_of(&t, s, d), Some(0x100 + i as u32), "pair {i}");
    }
    assert_eq!(spi_of(&t, "10.2.0.5", "10.4.0.9"), None, "not a pair");
    assert_eq!(spi_of(&t, "10.1.0.5", "10.5.0.9"), None, "not a pair");

    // Rekey of pair 2: a new CHILD SA with the same selectors takes over that pair only.
    let mut new = pair_sa(2, 0x202, Direction::Outbound, 50);
    new.child.child_id = 20;
    new.key = key(EncrAlg::AesGcm16_256, 50);
    let t2 = t.apply(&DatapathCommand::InstallOutbound(new)).unwrap();
    let want = [0x100, 0x101, 0x202, 0x103];
    for (i, (s, d)) in probes.iter().enumerate() {
        assert_eq!(spi_of(&t2, s, d), Some(want[i]), "pair {i} after the rekey");
    }
    let t3 = t2
        .apply(&DatapathCommand::Remove { tunnel: "t".into(), spi: Spi(0x102), direction: Direction::Outbound })
        .unwrap();
    for (i, (s, d)) in probes.iter().enumerate() {
        assert_eq!(spi_of(&t3, s, d), Some(want[i]), "pair {i} after the old SA went");
    }
    // Removing one pair's SA leaves that pair without SA, the others as they were.
    let t4 = t3
        .apply(&DatapathCommand::Remove { tunnel: "t".into(), spi: Spi(0x101), direction: Direction::Outbound })
        .unwrap();
    let mut out = vec![0u8; 200];
    assert!(matches!(t4.seal(NOW, &ipv4("10.1.0.5", "10.4.0.9", 60), &mut out), Sealed::Drop(DropReason::NoSa)));
    assert_eq!(spi_of(&t4, "10.3.0.5", "10.4.0.9"), Some(0x103));
}

#[test]
fn each_inbound_sa_accepts_only_its_pairs_packets() {
    // The sender has one outbound SA per pair; the receiver checks each packet against
    // the selectors of the inbound SA it arrived on.
    let (mut tx, mut rx) = (SaTable::new(), SaTable::new());
    for i in 0..4 {
        let spi = 0x300 + i as u32;
        tx = tx.apply(&DatapathCommand::InstallOutbound(pair_sa(i, spi, Direction::Outbound, i as u8))).unwrap();
        let mut inb = pair_sa(i, spi, Direction::Inbound, i as u8);
        // Inbound on the receiver: its local is the sender's remote.
        std::mem::swap(&mut inb.local_ts, &mut inb.remote_ts);
        rx = rx.apply(&DatapathCommand::InstallInbound(inb)).unwrap();
    }
    for (s, d) in [("10.1.0.5", "10.2.0.9"), ("10.3.0.7", "10.4.0.1")] {
        assert!(open(&rx, &seal(&tx, &ipv4(s, d, 80))).is_ok(), "{s} -> {d}");
    }
    // A packet of pair 3 sealed with pair 0's SA (a peer ignoring the selectors) is
    // refused by pair 0's inbound SA.
    let only0 = SaTable::new().apply(&DatapathCommand::InstallOutbound({
        let mut p = pair_sa(0, 0x300, Direction::Outbound, 0);
        p.local_ts = vec![ts("10.0.0.0/8")];
        p.remote_ts = vec![ts("10.0.0.0/8")];
        p
    }));
    let only0 = only0.unwrap();
    // Sequence numbers past the one pair 0's inbound SA has seen.
    let _ = (seal(&only0, &ipv4("10.1.0.5", "10.2.0.9", 80)), seal(&only0, &ipv4("10.1.0.5", "10.2.0.9", 80)));
    let wrong = seal(&only0, &ipv4("10.3.0.7", "10.4.0.1", 80));
    assert_eq!(open(&rx, &wrong), Err(DropReason::SelectorMismatch));
}

/// The rule the index must implement, written the slow way.
fn reference(sas: &[(SaParams, bool)], src: IpAddr, dst: IpAddr) -> Option<&SaParams> {
    // The probes are UDP from port 4000 to port 5000.
    let m = |l: &[TrafficSelector], ip, port| l.iter().any(|t| t.matches(ip, 17, Some(port)));
    sas.iter().find(|(p, active)| *active && m(&p.local_ts, src, 4000) && m(&p.remote_ts, dst, 5000)).map(|(p, _)| p)
}

/// Selectors drawn from a small space so that they overlap often: 10.0.x.0/y (IPv4,
/// down to single hosts) or 2001:db8:0:x00::/y (IPv6), sometimes for one port only.
fn selector() -> impl Strategy<Value = TrafficSelector> {
    (any::<bool>(), 0u8..8, 21u8..=32, prop::option::weighted(0.2, prop::sample::select(vec![4000u16, 5000, 6000])))
        .prop_map(|(v6, x, plen, port)| {
            let mut t = if v6 {
                let a: std::net::Ipv6Addr = format!("2001:db8:0:{:x}00::", x * 4).parse().unwrap();
                TrafficSelector::from_prefix(a.into(), plen + 32).unwrap()
            } else {
                TrafficSelector::from_prefix(std::net::Ipv4Addr::new(10, 0, x * 4, 0).into(), plen).unwrap()
            };
            if let Some(p) = port {
                (t.protocol, t.start_port, t.end_port) = (17, p, p);
            }
            t
        })
}

#[derive(Clone, Debug)]
enum Op {
    Install { spi: u32, child: u64, local: Vec<TrafficSelector>, remote: Vec<TrafficSelector> },
    Remove { spi: u32 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u32..24, 1u64..6, prop::collection::vec(selector(), 1..3), prop::collection::vec(selector(), 1..3))
            .prop_map(|(spi, child, local, remote)| Op::Install { spi, child, local, remote }),
        1 => (1u32..24).prop_map(|spi| Op::Remove { spi }),
    ]
}

/// `ip` moved by `delta` addresses (`None` past either end of its family).
fn shift(ip: IpAddr, delta: i128) -> Option<IpAddr> {
    match ip {
        IpAddr::V4(a) => {
            u32::try_from(i128::from(u32::from(a)) + delta).ok().map(|v| IpAddr::V4(std::net::Ipv4Addr::from(v)))
        }
        IpAddr::V6(a) => u128::from(a).checked_add_signed(delta).map(|v| IpAddr::V6(std::net::Ipv6Addr::from(v))),
    }
}

/// Probes at the edges of every installed SA's selectors: the first and last address
/// of each local selector against the first and last address of each remote selector
/// and the addresses just outside it.
fn edge_probes(model: &[(SaParams, bool)]) -> Vec<(IpAddr, IpAddr)> {
    let mut v = Vec::new();
    for (p, _) in model {
        for l in &p.local_ts {
            for r in p.remote_ts.iter().filter(|r| r.is_ipv4() == l.is_ipv4()) {
                let dsts = [Some(r.start), Some(r.end), shift(r.start, -1), shift(r.end, 1)];
                for src in [l.start, l.end] {
                    v.extend(dsts.iter().flatten().map(|d| (src, *d)));
                }
            }
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn selection_agrees_with_newest_active_match(ops in prop::collection::vec(op(), 1..24)) {
        let mut t = SaTable::new();
        // The model: newest first, with the active flag `apply` documents.
        let mut model: Vec<(SaParams, bool)> = Vec::new();
        for o in &ops {
            match o {
                Op::Install { spi, child, local, remote } => {
                    let mut p = params(*spi, Direction::Outbound, *child, *spi as u8);
                    (p.local_ts, p.remote_ts) = (local.clone(), remote.clone());
                    t = t.apply(&DatapathCommand::InstallOutbound(p.clone())).unwrap();
                    model.retain(|(m, _)| m.spi != p.spi);
                    for (m, active) in &mut model {
                        if m.child == p.child || (m.local_ts == p.local_ts && m.remote_ts == p.remote_ts) {
                            *active = false;
                        }
                    }
                    model.insert(0, (p, true));
                }
                Op::Remove { spi } => {
                    t = t.apply(&DatapathCommand::Remove { tunnel: "t".into(), spi: Spi(*spi), direction: Direction::Outbound }).unwrap();
                    model.retain(|(m, _)| m.spi.0 != *spi);
                }
            }
        }
        for (src, dst) in edge_probes(&model) {
            let pkt = match (src, dst) {
                (IpAddr::V4(_), IpAddr::V4(_)) => ipv4(&src.to_string(), &dst.to_string(), 80),
                _ => ipv6(&src.to_string(), &dst.to_string(), 80),
            };
            let want = reference(&model, src, dst).map(|p| p.spi.0);
            let mut out = vec![0u8; 200];
            let got = match t.seal(NOW, &pkt, &mut out) {
                Sealed::Send { packet, .. } => Some(u32::from_be_bytes(packet[..4].try_into().unwrap())),
                Sealed::Drop(r) => { prop_assert_eq!(r, DropReason::NoSa); None }
            };
            prop_assert_eq!(got, want, "{} -> {}", src, dst);
        }
    }
}
