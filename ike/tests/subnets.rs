//! Several subnets per tunnel between two in-memory endpoints: all of them in one CHILD
//! SA (combined) or one CHILD SA per subnet pair, traffic selector narrowing in both
//! roles, TS_UNACCEPTABLE, and one CHILD SA of several rekeyed or replaced on its own.

use ike::testing::{peer_config, Pair, Side};
use ike::{ChildSaStatus, PeerConfig};
use ipsec_types::{DatapathCommand, DatapathEvent, Direction, ExpiryReason, Spi, TrafficSelector};
use std::collections::BTreeSet;
use std::time::Duration;

fn init_logs() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("ike=debug").try_init();
}

fn tss(l: &[&str]) -> Vec<TrafficSelector> {
    l.iter().map(|s| TrafficSelector::parse_cidr(s).unwrap()).collect()
}

const A_NETS: [&str; 2] = ["10.1.0.0/24", "10.3.0.0/24"];
const B_NETS: [&str; 2] = ["10.2.0.0/24", "10.4.0.0/24"];

/// A (initiator) protects `a_nets`, B (responder) protects `b_nets`; each side's
/// remote subnets are the other's local ones unless given.
fn configs(a_nets: &[&str], b_nets: &[&str], a_per_pair: bool, b_per_pair: bool) -> (PeerConfig, PeerConfig) {
    let mut a = peer_config("site-b", "192.0.2.1", "192.0.2.2", true, true);
    let mut b = peer_config("site-a", "192.0.2.2", "192.0.2.1", false, false);
    (a.local_ts, a.remote_ts, a.child_sa_per_subnet_pair) = (tss(a_nets), tss(b_nets), a_per_pair);
    (b.local_ts, b.remote_ts, b.child_sa_per_subnet_pair) = (tss(b_nets), tss(a_nets), b_per_pair);
    (a, b)
}

/// Both endpoints with these tunnels, after running until the wire is quiet.
fn up((a, b): (PeerConfig, PeerConfig)) -> Pair {
    let mut p = Pair::new(a, b);
    p.run();
    p
}

/// The same pairs seen from the other side.
fn flipped(s: &BTreeSet<(String, String)>) -> BTreeSet<(String, String)> {
    s.iter().map(|(l, r)| (r.clone(), l.clone())).collect()
}

fn children(p: &mut Pair, side: Side) -> Vec<ChildSaStatus> {
    let st = p.ep(side).status();
    assert_eq!(st.len(), 1, "one IKE SA on {side:?}");
    st.into_iter().next().map(|s| s.children).unwrap_or_default()
}

/// (local, remote) selectors of each CHILD SA, as text.
fn selectors(c: &[ChildSaStatus]) -> BTreeSet<(String, String)> {
    let j = |t: &[TrafficSelector]| t.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    c.iter().map(|c| (j(&c.local_ts), j(&c.remote_ts))).collect()
}

fn set(l: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    l.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

fn creates_sent(p: &Pair, side: Side) -> usize {
    // CREATE_CHILD_SA requests: exchange type 36 at byte 18, the response flag (0x20)
    // clear in byte 19.
    p.transmits(side)
        .iter()
        .filter(|t| t.data.get(18) == Some(&36) && t.data.get(19).is_some_and(|f| f & 0x20 == 0))
        .count()
}

/// Each CHILD SA a side reports was installed in the datapath, both directions, with
/// its selectors.
fn installs_match_status(p: &mut Pair, side: Side) {
    let cmds = p.datapath(side);
    for k in children(p, side) {
        for (dir, spi) in [(Direction::Inbound, k.spi_in), (Direction::Outbound, k.spi_out)] {
            let s = cmds
                .iter()
                .rev()
                .find_map(|c| match c {
                    DatapathCommand::InstallInbound(s) | DatapathCommand::InstallOutbound(s)
                        if s.direction == dir && s.spi == spi =>
                    {
                        Some(s)
                    }
                    _ => None,
                })
                .expect("both halves installed");
            assert_eq!((&s.local_ts, &s.remote_ts), (&k.local_ts, &k.remote_ts), "{side:?}: datapath selectors");
        }
    }
}

#[test]
fn combined_mode_carries_every_subnet_in_one_child_sa() {
    init_logs();
    let mut p = up(configs(&A_NETS, &B_NETS, false, false));
    let both = set(&[("10.1.0.0/24,10.3.0.0/24", "10.2.0.0/24,10.4.0.0/24")]);
    assert_eq!(selectors(&children(&mut p, Side::A)), both);
    assert_eq!(selectors(&children(&mut p, Side::B)), flipped(&both));
    assert_eq!(creates_sent(&p, Side::A), 0, "everything in IKE_AUTH");
    assert_eq!(p.datapath(Side::A).len(), 2);
    installs_match_status(&mut p, Side::A);
    installs_match_status(&mut p, Side::B);
}

#[test]
fn per_pair_mode_creates_one_child_sa_per_pair_first_in_ike_auth() {
    init_logs();
    // The responder's own mode does not matter: it accepts either style.
    for b_per_pair in [false, true] {
        let mut p = up(configs(&A_NETS, &B_NETS, true, b_per_pair));
        let kids = children(&mut p, Side::A);
        let pairs = set(&[
            ("10.1.0.0/24", "10.2.0.0/24"),
            ("10.1.0.0/24", "10.4.0.0/24"),
            ("10.3.0.0/24", "10.2.0.0/24"),
            ("10.3.0.0/24", "10.4.0.0/24"),
        ]);
        assert_eq!(selectors(&kids), pairs);
        assert_eq!(kids.iter().filter(|k| k.state == "INSTALLED").count(), 4);
        // The first pair came with IKE_AUTH, the three others by CREATE_CHILD_SA.
        assert_eq!(selectors(&kids[..1]), set(&[("10.1.0.0/24", "10.2.0.0/24")]));
        assert_eq!(creates_sent(&p, Side::A), 3);
        assert_eq!(selectors(&children(&mut p, Side::B)), flipped(&pairs));
        assert_eq!(p.datapath(Side::A).len(), 8, "an inbound and an outbound SA per pair");
        installs_match_status(&mut p, Side::A);
        installs_match_status(&mut p, Side::B);
        // Nothing more happens while all pairs are carried.
        p.advance(Duration::from_secs(120));
        assert_eq!(creates_sent(&p, Side::A), 3);
    }
}

#[test]
fn the_responder_narrows_and_the_initiator_installs_the_narrowed_selectors() {
    init_logs();
    for per_pair in [false, true] {
        // A asks for two /16s on its side and the /16 behind B; B has /24s inside them
        // (and one network A never asked for).
        let (mut a, mut b) = configs(&["10.1.0.0/16"], &["10.2.0.0/16"], per_pair, false);
        a.local_ts = tss(&["10.1.0.0/16", "10.3.0.0/16"]);
        b.local_ts = tss(&["10.2.5.0/24", "10.2.6.0/24", "10.9.0.0/24"]);
        b.remote_ts = tss(&["10.1.7.0/24", "10.3.1.0/24"]);
        let mut p = up((a, b));
        let want = if per_pair {
            set(&[("10.1.7.0/24", "10.2.5.0/24,10.2.6.0/24"), ("10.3.1.0/24", "10.2.5.0/24,10.2.6.0/24")])
        } else {
            set(&[("10.1.7.0/24,10.3.1.0/24", "10.2.5.0/24,10.2.6.0/24")])
        };
        assert_eq!(selectors(&children(&mut p, Side::A)), want, "per_pair {per_pair}");
        assert_eq!(selectors(&children(&mut p, Side::B)), flipped(&want));
        installs_match_status(&mut p, Side::A);
        installs_match_status(&mut p, Side::B);
    }
}

#[test]
fn unacceptable_selectors_are_refused_cleanly_pair_by_pair() {
    init_logs();
    // Combined: nothing in common on B's side: TS_UNACCEPTABLE, IKE SA without tunnel.
    let (a, mut b) = configs(&A_NETS, &B_NETS, false, false);
    b.local_ts = tss(&["172.16.0.0/24"]);
    let mut p = up((a, b));
    assert!(children(&mut p, Side::A).is_empty());
    assert!(children(&mut p, Side::B).is_empty());
    assert!(p.datapath(Side::A).is_empty() && p.datapath(Side::B).is_empty());
    assert_eq!(p.ep(Side::A).status()[0].state, "ESTABLISHED");

    // Per pair: B does not know 10.4.0.0/24, so the two pairs with it are refused (the
    // first in IKE_AUTH is fine) and the others come up; no retry storm.
    let (a, mut b) = configs(&A_NETS, &B_NETS, true, false);
    b.local_ts = tss(&["10.2.0.0/24"]);
    let mut p = up((a, b));
    let want = set(&[("10.1.0.0/24", "10.2.0.0/24"), ("10.3.0.0/24", "10.2.0.0/24")]);
    assert_eq!(selectors(&children(&mut p, Side::A)), want);
    assert_eq!(creates_sent(&p, Side::A), 3);
    p.advance(Duration::from_secs(300));
    assert_eq!(creates_sent(&p, Side::A), 3, "a refused pair is not retried in a loop");
    assert_eq!(children(&mut p, Side::A).len(), 2);
}

/// Rekeys one CHILD SA of the per-pair set (from `by`, through a soft volume event on
/// its outbound SA) and checks that only it changed, make-before-break.
fn rekey_one(p: &mut Pair, by: Side) {
    let before = children(p, by);
    let victim = before
        .iter()
        .find(|c| c.local_ts == tss(&[if by == Side::A { "10.3.0.0/24" } else { "10.4.0.0/24" }]))
        .cloned()
        .unwrap();
    let mark = p.datapath(by).len();
    let tunnel = p.ep(by).status()[0].tunnel.clone();
    let now = p.now;
    let ev = DatapathEvent::Expired {
        tunnel,
        spi: victim.spi_out,
        direction: Direction::Outbound,
        hard: false,
        reason: ExpiryReason::Bytes,
    };
    p.ep(by).handle_datapath_event(now, ev);
    p.run();
    p.advance(Duration::from_secs(1));
    p.advance(Duration::from_secs(3));
    let after = children(p, by);
    assert_eq!(after.len(), 4);
    assert_eq!(selectors(&after), selectors(&before), "same pairs");
    let unchanged: Vec<_> =
        before.iter().filter(|c| c.spi_in != victim.spi_in).map(|c| (c.spi_in, c.spi_out)).collect();
    for s in &unchanged {
        assert!(after.iter().any(|c| (c.spi_in, c.spi_out) == *s), "other CHILD SAs untouched");
    }
    let new = after.iter().find(|c| !unchanged.contains(&(c.spi_in, c.spi_out))).unwrap();
    assert_eq!((&new.local_ts, &new.remote_ts), (&victim.local_ts, &victim.remote_ts));
    // The datapath saw: new inbound, new outbound, then the old SA removed; nothing else.
    let cmds: Vec<(char, Spi)> = p.datapath(by)[mark..]
        .iter()
        .filter_map(|c| match c {
            DatapathCommand::InstallInbound(s) => Some(('I', s.spi)),
            DatapathCommand::InstallOutbound(s) => Some(('O', s.spi)),
            DatapathCommand::Remove { spi, direction: Direction::Inbound, .. } => Some(('i', *spi)),
            DatapathCommand::Remove { spi, direction: Direction::Outbound, .. } => Some(('o', *spi)),
            DatapathCommand::UpdateEndpoints { .. } => None,
        })
        .collect();
    assert_eq!(cmds, vec![('I', new.spi_in), ('O', new.spi_out), ('o', victim.spi_out), ('i', victim.spi_in)]);
    let other = if by == Side::A { Side::B } else { Side::A };
    assert_eq!(children(p, other).len(), 4);
    installs_match_status(p, other);
}

#[test]
fn one_child_sa_of_several_rekeys_on_its_own_in_both_roles() {
    init_logs();
    let mut p = up(configs(&A_NETS, &B_NETS, true, true));
    rekey_one(&mut p, Side::A);
    rekey_one(&mut p, Side::B);
}

#[test]
fn a_pair_whose_child_sa_the_peer_deleted_is_created_again() {
    init_logs();
    let mut p = up(configs(&A_NETS, &B_NETS, true, false));
    let victim = children(&mut p, Side::B).into_iter().find(|c| c.remote_ts == tss(&["10.3.0.0/24"])).unwrap();
    // B's outbound SA for that pair hits its hard limit: B deletes the CHILD SA.
    let now = p.now;
    p.b.handle_datapath_event(
        now,
        DatapathEvent::Expired {
            tunnel: "site-a".into(),
            spi: victim.spi_out,
            direction: Direction::Outbound,
            hard: true,
            reason: ExpiryReason::Packets,
        },
    );
    p.run();
    p.advance(Duration::from_secs(3));
    let kids = children(&mut p, Side::A);
    assert_eq!(kids.len(), 4, "{kids:?}");
    assert!(kids.iter().all(|k| k.spi_out != victim.spi_in), "the deleted one is gone");
    assert_eq!(creates_sent(&p, Side::A), 4, "three at start, one to replace the deleted pair");
    assert_eq!(selectors(&kids).len(), 4);
}
