//! IKEv1 against a hostile network: what an attacker who can record, replay and forge
//! datagrams (but does not hold the pre-shared key) can and cannot make an established
//! ISAKMP SA do.

use ike::testing::{peer_config, Pair, Side};
use ike::{Command, DownReason, Event, IkeVersion, PeerConfig, Transmit};
use ipsec_types::{DatapathCommand, Dpd, EspProposal, IkeProposal};
use std::time::Duration;

fn init_logs() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("ike=debug").try_init();
}

fn v1(mut p: PeerConfig) -> PeerConfig {
    p.ike_version = IkeVersion::V1;
    p.ike_proposals = vec![IkeProposal::parse("aes128-sha1-modp1024").expect("proposal")];
    p.esp_proposals = vec![EspProposal::parse("aes128-sha1-modp1024").expect("proposal")];
    p
}

fn configs() -> (PeerConfig, PeerConfig) {
    (
        v1(peer_config("site-b", "192.0.2.1", "192.0.2.2", true, true)),
        v1(peer_config("site-a", "192.0.2.2", "192.0.2.1", false, false)),
    )
}

/// The ISAKMP exchange type of a datagram (octet 18 of the header).
fn exchange(t: &Transmit) -> Option<u8> {
    t.data.get(18).copied()
}

const QUICK: u8 = 32;
const INFORMATIONAL: u8 = 5;

/// Delivers until the wire is empty, keeping a copy of every datagram towards `to`
/// whose exchange is `ex`.
fn run_recording(p: &mut Pair, to: Side, ex: u8) -> Vec<Transmit> {
    let mut seen = vec![];
    p.a.handle_timeout(p.now);
    p.b.handle_timeout(p.now);
    for _ in 0..1000 {
        p.drain();
        let Some((dest, t)) = p.in_flight.front().cloned() else { break };
        if dest == to && exchange(&t) == Some(ex) {
            seen.push(t);
        }
        p.deliver_next();
    }
    seen
}

fn downs(p: &Pair, side: Side) -> Vec<DownReason> {
    p.events(side)
        .into_iter()
        .filter_map(|e| match e {
            Event::IkeDown { reason, .. } => Some(reason),
            _ => None,
        })
        .collect()
}

/// An old R-U-THERE-ACK of the peer, replayed, is no sign of life: the peer is
/// detected dead while the replays go on.
#[test]
fn replayed_informational_does_not_keep_a_dead_peer_alive() {
    init_logs();
    let (mut a, b) = configs();
    a.dpd = Dpd { delay: Some(Duration::from_secs(10)), timeout: Duration::from_secs(30), ..Dpd::default() };
    let mut p = Pair::new(a, b);
    p.run();
    p.advance(Duration::from_secs(1));
    // A probes after 10 s of silence; B acknowledges; the attacker records the ACK.
    p.now = p.now + Duration::from_secs(11);
    let acks = run_recording(&mut p, Side::A, INFORMATIONAL);
    let ack = acks.first().expect("B's R-U-THERE-ACK").clone();
    assert!(downs(&p, Side::A).is_empty());
    // B dies; the attacker replays the ACK to A every 5 s.
    let t0 = p.now;
    while p.now.saturating_since(t0) < Duration::from_secs(80) {
        p.now = p.now + Duration::from_secs(1);
        p.tick(p.now);
        while p.take_to(Side::B).is_some() {}
        if p.now.saturating_since(t0).as_secs().is_multiple_of(5) {
            p.inject(Side::A, &ack);
            while p.take_to(Side::B).is_some() {}
        }
    }
    assert!(downs(&p, Side::A).contains(&DownReason::DeadPeer), "{:?}", p.events(Side::A));
}

/// An old Quick Mode message 1 of the peer, replayed once its answer left the cache of
/// answers, does not make a new pair (inbound SA, slot under child_sa_max, key exchange).
#[test]
fn replayed_quick_mode_message_1_makes_no_pair() {
    init_logs();
    let (a, b) = configs();
    let mut p = Pair::new(a, b);
    let qm1s = run_recording(&mut p, Side::B, QUICK);
    let qm1 = qm1s.first().expect("A's Quick Mode message 1").clone();
    p.advance(Duration::from_secs(1));
    // Rekeys push the first Quick Mode's answer out of B's cache of answers.
    for _ in 0..10 {
        p.command(Side::A, Command::Rekey { peer: "site-b".into(), ike: false });
        p.run();
        for _ in 0..3 {
            p.advance(Duration::from_secs(1));
        }
    }
    let before = p.ep(Side::B).status()[0].children.len();
    let mark = p.datapath(Side::B).len();
    p.inject(Side::B, &qm1);
    let new: Vec<_> = p.datapath(Side::B).into_iter().skip(mark).collect();
    assert!(!new.iter().any(|c| matches!(c, DatapathCommand::InstallInbound(_))), "{new:?}");
    assert_eq!(p.ep(Side::B).status()[0].children.len(), before);
    assert!(downs(&p, Side::A).is_empty() && downs(&p, Side::B).is_empty());
}

/// Aggressive Mode message 3 is the initiator's last: when it is lost, the responder
/// repeats message 2 until it comes (the initiator answers from its cache), as the
/// initiator of Main Mode repeats message 5.
#[test]
fn lost_aggressive_mode_message_3_is_recovered() {
    init_logs();
    let (mut a, mut b) = configs();
    a.aggressive = true;
    b.aggressive = true;
    let mut p = Pair::new(a, b);
    p.tick(p.now);
    assert!(p.deliver_to(Side::B), "message 1");
    assert!(p.deliver_to(Side::A), "message 2");
    assert!(p.take_to(Side::B).is_some(), "message 3, lost");
    p.in_flight.clear();
    for _ in 0..10 {
        p.advance(Duration::from_secs(1));
    }
    let st = p.ep(Side::B).status();
    assert_eq!(st.first().map(|s| s.state), Some("ESTABLISHED"), "{st:?}");
    let children = |p: &mut Pair, side| {
        p.ep(side).status().iter().flat_map(|s| s.children.clone()).filter(|c| c.state == "INSTALLED").count()
    };
    assert_eq!(children(&mut p, Side::A), 1);
    assert_eq!(children(&mut p, Side::B), 1);
}

/// Aggressive Mode message 2 with its KE value altered (HASH_R then fails): what an
/// attacker who saw message 1 can forge.
fn forged_message_2(m2: &Transmit, i: u8) -> Transmit {
    let mut t = m2.clone();
    let sa_len = usize::from(u16::from_be_bytes([t.data[30], t.data[31]]));
    let at = 28 + sa_len + 4 + 5;
    t.data[at] ^= i.max(1);
    t
}

/// Each Aggressive Mode message 2 costs the initiator a key exchange before HASH_R can
/// be checked: a few forged ones before the real one do not stop it, a flood of them
/// costs at most a few key exchanges per attempt.
#[test]
fn forged_aggressive_mode_answers_cost_few_key_exchanges() {
    init_logs();
    let (mut a, mut b) = configs();
    a.aggressive = true;
    b.aggressive = true;
    // Two forgeries, then the real message 2: the tunnel comes up.
    let mut p = Pair::new(a.clone(), b.clone());
    p.tick(p.now);
    assert!(p.deliver_to(Side::B), "message 1");
    let m2 = p.take_to(Side::A).expect("message 2");
    for i in 1..=2 {
        p.inject(Side::A, &forged_message_2(&m2, i));
    }
    p.inject(Side::A, &m2);
    p.run();
    p.advance(Duration::from_secs(1));
    let st = p.ep(Side::A).status();
    assert_eq!(st.first().map(|s| s.state), Some("ESTABLISHED"), "{st:?}");
    // A flood: all but a few are dropped before the key exchange.
    let mut p = Pair::new(a, b);
    p.tick(p.now);
    assert!(p.deliver_to(Side::B), "message 1");
    let m2 = p.take_to(Side::A).expect("message 2");
    let before = p.a.drops().malformed;
    for i in 1..=50u8 {
        p.inject(Side::A, &forged_message_2(&m2, i));
    }
    let dropped = p.a.drops().malformed - before;
    assert!(dropped >= 46, "{dropped} of 50 forged answers dropped before the key exchange");
}

/// A tunnel with more selector pairs than Quick Modes may be in flight (8): an operator
/// rekey of all of them rekeys every pair; none is left to run into its hard lifetime.
#[test]
fn rekey_of_nine_pairs_at_once_rekeys_them_all() {
    init_logs();
    let (mut a, mut b) = configs();
    let ts = |s: &str| ipsec_types::TrafficSelector::parse_cidr(s).expect("cidr");
    a.local_ts = vec![ts("10.1.0.0/24"), ts("10.3.0.0/24"), ts("10.5.0.0/24")];
    a.remote_ts = vec![ts("10.2.0.0/24"), ts("10.4.0.0/24"), ts("10.6.0.0/24")];
    b.local_ts = a.remote_ts.clone();
    b.remote_ts = a.local_ts.clone();
    let mut p = Pair::new(a, b);
    for _ in 0..20 {
        p.advance(Duration::from_secs(1));
    }
    let installed = |p: &mut Pair| -> Vec<_> {
        p.ep(Side::A).status().iter().flat_map(|s| s.children.clone()).filter(|c| c.state == "INSTALLED").collect()
    };
    let first = installed(&mut p);
    assert_eq!(first.len(), 9, "{first:?}");
    p.command(Side::A, Command::Rekey { peer: "site-b".into(), ike: false });
    for _ in 0..5 {
        p.advance(Duration::from_secs(1));
    }
    let now = installed(&mut p);
    let old: Vec<_> = now.iter().filter(|c| first.iter().any(|f| f.spi_in == c.spi_in)).collect();
    assert!(old.is_empty(), "pairs not rekeyed: {old:?}");
    assert_eq!(now.len(), 9);
}
