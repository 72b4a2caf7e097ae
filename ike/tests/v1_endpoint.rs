//! IKEv1 tunnels between two in-memory endpoints: Main Mode and Quick Mode in both
//! roles through the `Endpoint` API, the datapath commands in make-before-break order,
//! Quick Mode rekeys from each side, re-authentication, dead peer detection, wrong
//! pre-shared key and no common proposal, retransmission, and a flood of Main Mode
//! first messages from spoofed sources.

use ike::testing::{peer_config, Pair, Side};
use ike::{Command, DownReason, Event, IkeVersion, Output, PeerConfig};
use ipsec_types::{DatapathCommand, Direction, Dpd, EspProposal, IkeProposal, Spi, Timestamp};
use std::time::Duration;
use zeroize::Zeroizing;

fn init_logs() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("ike=debug").try_init();
}

/// The founding walkthrough's profile: aes128-sha1-modp1024, ESP with PFS modp1024.
fn v1(mut p: PeerConfig, ike: &str, esp: &str) -> PeerConfig {
    p.ike_version = IkeVersion::V1;
    p.ike_proposals = vec![IkeProposal::parse(ike).expect("proposal")];
    p.esp_proposals = vec![EspProposal::parse(esp).expect("proposal")];
    p
}

fn configs(ike: &str, esp: &str) -> (PeerConfig, PeerConfig) {
    (
        v1(peer_config("site-b", "192.0.2.1", "192.0.2.2", true, true), ike, esp),
        v1(peer_config("site-a", "192.0.2.2", "192.0.2.1", false, false), ike, esp),
    )
}

fn walkthrough() -> Pair {
    let (a, b) = configs("aes128-sha1-modp1024", "aes128-sha1-modp1024");
    let mut p = Pair::new(a, b);
    p.run();
    // The initiator switches outbound to a new pair a moment after message 3.
    p.advance(Duration::from_secs(1));
    p
}

/// (spi_in, spi_out) of the installed pairs of a side.
fn installed(p: &mut Pair, side: Side) -> Vec<(Spi, Spi)> {
    let st = p.ep(side).status();
    st.iter()
        .filter(|s| s.state == "ESTABLISHED")
        .flat_map(|s| s.children.iter().filter(|c| c.state == "INSTALLED").map(|c| (c.spi_in, c.spi_out)))
        .collect()
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

#[test]
fn walkthrough_profile_establishes_both_directions_in_order() {
    init_logs();
    let mut p = walkthrough();
    for side in [Side::A, Side::B] {
        let st = p.ep(side).status();
        assert_eq!(st.len(), 1, "{side:?}: {st:?}");
        let s = &st[0];
        assert_eq!((s.version, s.state), (IkeVersion::V1, "ESTABLISHED"));
        assert_eq!(s.encr.map(|e| e.keyword()), Some("aes128"));
        assert_eq!(s.dh.map(|g| g.keyword()), Some("modp1024"));
        assert_eq!(s.children.len(), 1);
        let c = &s.children[0];
        assert_eq!(c.state, "INSTALLED");
        assert_eq!(c.dh.map(|g| g.keyword()), Some("modp1024"));
        assert_eq!(c.integ.map(|i| i.keyword()), Some("sha1"));
    }
    let a = installed(&mut p, Side::A);
    let b = installed(&mut p, Side::B);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0], (b[0].1, b[0].0), "each side's inbound SPI is the other's outbound");
    // Inbound before outbound on both sides.
    for side in [Side::A, Side::B] {
        let dp = p.datapath(side);
        let inb = dp.iter().position(|c| matches!(c, DatapathCommand::InstallInbound(_))).expect("inbound");
        let outb = dp.iter().position(|c| matches!(c, DatapathCommand::InstallOutbound(_))).expect("outbound");
        assert!(inb < outb, "{side:?}: {dp:?}");
    }
    assert!(p.events(Side::A).iter().any(|e| matches!(e, Event::IkeUp { .. })));
}

/// Quick Mode rekey from `side`: a new pair, the old one rekeyed then deleted; the new
/// inbound SA is installed before the new outbound anywhere, and the old inbound SA
/// outlives the switch.
fn rekey_from(side: Side) {
    init_logs();
    let mut p = walkthrough();
    let old = installed(&mut p, Side::A);
    let mark_a = p.datapath(Side::A).len();
    let mark_b = p.datapath(Side::B).len();
    let peer = if side == Side::A { "site-b" } else { "site-a" };
    p.command(side, Command::Rekey { peer: peer.into(), ike: false });
    p.run();
    for _ in 0..8 {
        p.advance(Duration::from_secs(1));
    }
    let new = installed(&mut p, Side::A);
    assert_eq!(new.len(), 1, "{:?}", p.ep(Side::A).status());
    assert_ne!(new, old);
    assert_eq!(installed(&mut p, Side::B), vec![(new[0].1, new[0].0)]);
    for (s, mark) in [(Side::A, mark_a), (Side::B, mark_b)] {
        let dp: Vec<_> = p.datapath(s).into_iter().skip(mark).collect();
        let pos = |f: &dyn Fn(&DatapathCommand) -> bool| dp.iter().position(f);
        let (new_in, new_out) = if s == Side::A { new[0] } else { (new[0].1, new[0].0) };
        let (old_in, _) = if s == Side::A { old[0] } else { (old[0].1, old[0].0) };
        let i_new = pos(&|c| matches!(c, DatapathCommand::InstallInbound(x) if x.spi == new_in)).expect("new in");
        let o_new = pos(&|c| matches!(c, DatapathCommand::InstallOutbound(x) if x.spi == new_out)).expect("new out");
        let r_old =
            pos(&|c| matches!(c, DatapathCommand::Remove { spi, direction: Direction::Inbound, .. } if *spi == old_in))
                .expect("old inbound removed in the end");
        assert!(i_new < o_new && o_new < r_old, "{s:?}: {dp:?}");
    }
    assert!(downs(&p, Side::A).is_empty() && downs(&p, Side::B).is_empty());
}

#[test]
fn quick_mode_rekey_from_the_initiator() {
    rekey_from(Side::A);
}

#[test]
fn quick_mode_rekey_from_the_responder() {
    rekey_from(Side::B);
}

#[test]
fn lifetime_rekeys_before_expiry_without_operator() {
    init_logs();
    let (mut a, mut b) = configs("aes256-sha256-modp2048", "aes256-sha256-modp2048");
    for c in [&mut a, &mut b] {
        c.timers.child_rekey_time = Duration::from_secs(60);
        c.timers.child_life_time = Duration::from_secs(66);
    }
    // Both sides rekey before the agreed lifetime; with the jitter one of them first
    // (equal times without jitter make both rekey at once, which leaves two pairs until
    // the next rekey: `simultaneous_quick_mode_rekeys_keep_a_pair_installed`).
    b.timers.rekey_jitter_percent = 30;
    let mut p = Pair::new(a, b);
    p.run();
    p.advance(Duration::from_secs(1));
    let first = installed(&mut p, Side::A);
    for _ in 0..70 {
        p.advance(Duration::from_secs(1));
    }
    let now = installed(&mut p, Side::A);
    assert_eq!(now.len(), 1);
    assert_ne!(now, first, "rekeyed before the 66 s lifetime");
    assert!(downs(&p, Side::A).is_empty());
}

#[test]
fn reauthentication_moves_the_pairs_to_the_new_isakmp_sa() {
    init_logs();
    let mut p = walkthrough();
    let before = installed(&mut p, Side::A);
    let cookies = p.ep(Side::A).status()[0].spi_i;
    p.command(Side::A, Command::Rekey { peer: "site-b".into(), ike: true });
    p.run();
    p.advance(Duration::from_secs(1));
    for side in [Side::A, Side::B] {
        let st = p.ep(side).status();
        let up: Vec<_> = st.iter().filter(|s| s.state == "ESTABLISHED").collect();
        assert_eq!(up.len(), 1, "{side:?}: {st:?}");
        assert_ne!(up[0].spi_i, cookies);
    }
    assert_eq!(installed(&mut p, Side::A), before, "the IPsec SAs outlive the ISAKMP SA");
    assert!(downs(&p, Side::A).is_empty(), "{:?}", downs(&p, Side::A));
    // The old ISAKMP SA is gone on both sides once the peer saw our DELETE.
    p.advance(Duration::from_secs(31));
    assert_eq!(p.ep(Side::B).ike_sa_count(), 1);
    assert_eq!(p.ep(Side::A).ike_sa_count(), 1);
}

#[test]
fn wrong_psk_fails_clearly_on_both_sides() {
    init_logs();
    let (a, mut b) = configs("aes128-sha1-modp1024", "aes128-sha1-modp1024");
    b.psk = Zeroizing::new(b"another key".to_vec());
    let mut p = Pair::new(a, b);
    p.run();
    for _ in 0..40 {
        p.advance(Duration::from_secs(2));
    }
    assert!(downs(&p, Side::A).contains(&DownReason::PskMismatch), "{:?}", p.events(Side::A));
    assert_eq!(DownReason::PskMismatch.to_string(), "authentication failed (pre-shared key mismatch?)");
    assert!(installed(&mut p, Side::A).is_empty() && installed(&mut p, Side::B).is_empty());
    assert_eq!(p.ep(Side::B).half_open(), 0, "the responder dropped its half-open SA");
}

#[test]
fn no_common_proposal_fails_at_once() {
    init_logs();
    let (a, _) = configs("aes128-sha1-modp1024", "aes128-sha1-modp1024");
    let (_, b) = configs("aes256-sha256-modp2048", "aes128-sha1-modp1024");
    let mut p = Pair::new(a, b);
    p.run();
    assert!(downs(&p, Side::A).contains(&DownReason::ProposalsRejected), "{:?}", p.events(Side::A));
    assert_eq!(p.ep(Side::B).ike_sa_count(), 0);
    assert!(p.ep(Side::B).drops().refused_proposal >= 1);
}

#[test]
fn lost_messages_are_retransmitted() {
    init_logs();
    let (a, b) = configs("aes128-sha1-modp1024", "aes128-sha1-modp1024");
    let mut p = Pair::new(a, b);
    p.tick(Timestamp::ZERO);
    // Message 1 is lost, then its retransmission's answer (message 2).
    assert!(p.drop_next().is_some(), "message 1 lost");
    p.tick(Timestamp::from_secs(1));
    assert!(p.deliver_to(Side::B), "message 1 again");
    assert!(p.take_to(Side::A).is_some(), "message 2 lost");
    // The next retransmission of message 1 is a duplicate for B: it repeats message 2.
    p.tick(Timestamp::from_secs(3));
    p.run();
    p.advance(Duration::from_secs(1));
    assert_eq!(installed(&mut p, Side::A).len(), 1, "{:?}", p.ep(Side::A).status());
    assert_eq!(installed(&mut p, Side::B).len(), 1);
}

#[test]
fn lost_quick_mode_message_3_is_recovered() {
    init_logs();
    let (a, b) = configs("aes128-sha1-modp1024", "aes128-sha1-modp1024");
    let mut p = Pair::new(a, b);
    p.tick(Timestamp::ZERO);
    // Main Mode (6 messages) and Quick Mode messages 1 and 2.
    for _ in 0..8 {
        assert!(p.deliver_next());
    }
    // Quick Mode message 3 is lost: B retransmits message 2 and A answers it again.
    assert!(p.take_to(Side::B).is_some());
    p.advance(Duration::from_secs(1));
    p.advance(Duration::from_secs(2));
    assert_eq!(installed(&mut p, Side::B).len(), 1, "{:?}", p.ep(Side::B).status());
    assert_eq!(installed(&mut p, Side::A).len(), 1);
}

#[test]
fn dead_peer_is_detected_and_the_tunnel_comes_back() {
    init_logs();
    let (mut a, b) = configs("aes128-sha1-modp1024", "aes128-sha1-modp1024");
    a.dpd = Dpd { delay: Some(Duration::from_secs(10)), timeout: Duration::from_secs(30), ..Dpd::default() };
    let b_again = b.clone();
    let mut p = Pair::new(a, b);
    p.run();
    p.advance(Duration::from_secs(1));
    // R-U-THERE is answered while B lives.
    p.advance(Duration::from_secs(11));
    assert!(downs(&p, Side::A).is_empty());
    // B dies: nothing reaches it for a while.
    let t0 = p.now;
    while p.now.saturating_since(t0) < Duration::from_secs(50) {
        p.now = p.now + Duration::from_secs(1);
        p.tick(p.now);
        while p.take_to(Side::B).is_some() {}
    }
    assert!(downs(&p, Side::A).contains(&DownReason::DeadPeer), "{:?}", p.events(Side::A));
    // B restarts; A initiates again and the tunnel is up.
    p.restart(Side::B, b_again, 7);
    for _ in 0..40 {
        p.advance(Duration::from_secs(1));
    }
    assert_eq!(installed(&mut p, Side::A).len(), 1, "{:?}", p.ep(Side::A).status());
    assert_eq!(installed(&mut p, Side::B).len(), 1);
}

#[test]
fn responder_restart_with_initial_contact_replaces_the_old_sas() {
    init_logs();
    let (a, b) = configs("aes128-sha1-modp1024", "aes128-sha1-modp1024");
    let a_again = a.clone();
    let mut p = walkthrough_with(a, b);
    // A restarts and initiates again: its message 5 carries INITIAL-CONTACT.
    p.restart(Side::A, a_again, 9);
    p.run();
    p.advance(Duration::from_secs(1));
    let st = p.ep(Side::B).status();
    assert_eq!(st.len(), 1, "B dropped the SAs of A's previous life: {st:?}");
    assert_eq!(installed(&mut p, Side::B).len(), 1);
}

fn walkthrough_with(a: PeerConfig, b: PeerConfig) -> Pair {
    let mut p = Pair::new(a, b);
    p.run();
    p.advance(Duration::from_secs(1));
    p
}

#[test]
fn two_subnets_take_two_quick_modes() {
    init_logs();
    let (mut a, mut b) = configs("aes128-sha1-modp1024", "aes128gcm16");
    let ts = |s: &str| ipsec_types::TrafficSelector::parse_cidr(s).unwrap();
    a.local_ts = vec![ts("10.1.0.0/24"), ts("10.3.0.0/24")];
    b.remote_ts = a.local_ts.clone();
    let mut p = walkthrough_with(a, b);
    assert_eq!(installed(&mut p, Side::A).len(), 2);
    assert_eq!(installed(&mut p, Side::B).len(), 2);
}

#[test]
fn terminate_deletes_everything_on_both_sides() {
    init_logs();
    let mut p = walkthrough();
    p.command(Side::A, Command::Terminate { peer: "site-b".into() });
    p.run();
    assert_eq!(p.ep(Side::A).ike_sa_count(), 0);
    assert_eq!(p.ep(Side::B).ike_sa_count(), 0, "{:?}", p.ep(Side::B).status());
    assert!(downs(&p, Side::B).contains(&DownReason::DeletedByPeer));
}

#[test]
fn main_mode_flood_from_spoofed_sources_is_bounded() {
    init_logs();
    let (a, b) = configs("aes128-sha1-modp1024", "aes128-sha1-modp1024");
    let mut p = Pair::new(a, b);
    p.tick(Timestamp::ZERO);
    let m1 = p.take_to(Side::B).expect("message 1");
    // 10,000 copies with fresh initiator cookies from the peer's (spoofed) address.
    let mut answers = 0;
    for i in 0..10_000u64 {
        let mut d = m1.data.clone();
        d[..8].copy_from_slice(&(i + 1).to_be_bytes());
        p.b.handle_datagram(p.now, m1.remote, m1.local, &d);
        while let Some(o) = p.b.poll_output() {
            if matches!(o, Output::Transmit(_)) {
                answers += 1;
            }
        }
    }
    let limits = ike::Limits::default();
    assert!(p.b.half_open() <= limits.half_open_per_source, "{}", p.b.half_open());
    assert!(answers <= limits.half_open_per_source, "{answers} answers");
    assert!(p.b.drops().half_open_cap >= 9_000);
    // After the half-open timeout the slots are free again and the real peer gets in.
    p.tick(p.now + Duration::from_secs(31));
    assert_eq!(p.b.half_open(), 0);
    p.in_flight.clear();
    p.command(Side::A, Command::Terminate { peer: "site-b".into() });
    p.command(Side::A, Command::Initiate { peer: "site-b".into() });
    p.run();
    p.advance(Duration::from_secs(1));
    assert_eq!(installed(&mut p, Side::A).len(), 1, "{:?}", p.ep(Side::A).status());
}

#[test]
fn aggressive_mode_only_when_both_opt_in() {
    init_logs();
    let (mut a, mut b) = configs("aes128-sha1-modp1024", "aes128-sha1-modp1024");
    a.aggressive = true;
    // B has not opted in: A's Aggressive Mode is refused.
    let mut p = Pair::new(a.clone(), b.clone());
    p.run();
    for _ in 0..40 {
        p.advance(Duration::from_secs(1));
    }
    assert!(installed(&mut p, Side::A).is_empty());
    assert!(p.ep(Side::B).drops().refused_proposal >= 1);
    // Both opted in: three messages and the tunnel is up.
    b.aggressive = true;
    let mut p = Pair::new(a, b);
    p.tick(Timestamp::ZERO);
    for _ in 0..3 {
        assert!(p.deliver_next());
    }
    let st = p.ep(Side::B).status();
    assert_eq!(st[0].state, "ESTABLISHED", "after message 3: {st:?}");
    p.run();
    p.advance(Duration::from_secs(1));
    assert_eq!(installed(&mut p, Side::A).len(), 1);
    assert_eq!(installed(&mut p, Side::B).len(), 1);
}

#[test]
fn quick_modes_beyond_child_sa_max_are_ignored() {
    init_logs();
    let (mut a, mut b) = configs("aes128-sha1-modp1024", "aes128gcm16");
    let ts = |s: &str| ipsec_types::TrafficSelector::parse_cidr(s).unwrap();
    a.local_ts = vec![ts("10.1.0.0/24"), ts("10.3.0.0/24"), ts("10.5.0.0/24")];
    b.remote_ts = a.local_ts.clone();
    let mut p = Pair::new(a, b);
    p.b.set_limits(ike::Limits { child_sa_max: 2, ..ike::Limits::default() });
    p.run();
    p.advance(Duration::from_secs(1));
    // Three subnet pairs, three Quick Modes: B takes two.
    let st = p.ep(Side::B).status();
    assert_eq!(st[0].children.len(), 2, "{st:?}");
    assert!(p.ep(Side::B).drops().child_sa_cap >= 1);
    // Rekeys replace pairs: still possible at the cap.
    p.command(Side::A, Command::Rekey { peer: "site-b".into(), ike: false });
    p.run();
    for _ in 0..5 {
        p.advance(Duration::from_secs(1));
    }
    assert_eq!(installed(&mut p, Side::B).len(), 2, "{:?}", p.ep(Side::B).status());
}

#[test]
fn simultaneous_quick_mode_rekeys_keep_a_pair_installed() {
    init_logs();
    let mut p = walkthrough();
    p.command(Side::A, Command::Rekey { peer: "site-b".into(), ike: false });
    p.command(Side::B, Command::Rekey { peer: "site-a".into(), ike: false });
    p.run();
    for _ in 0..6 {
        p.advance(Duration::from_secs(1));
        assert!(!installed(&mut p, Side::A).is_empty(), "{:?}", p.ep(Side::A).status());
        assert!(!installed(&mut p, Side::B).is_empty(), "{:?}", p.ep(Side::B).status());
    }
    assert!(downs(&p, Side::A).is_empty() && downs(&p, Side::B).is_empty());
}

#[test]
fn our_quick_modes_go_one_at_a_time() {
    init_logs();
    let (mut a, mut b) = configs("aes128-sha1-modp1024", "aes128gcm16");
    let ts = |s: &str| ipsec_types::TrafficSelector::parse_cidr(s).unwrap();
    a.local_ts = vec![ts("10.1.0.0/24"), ts("10.3.0.0/24"), ts("10.5.0.0/24"), ts("10.7.0.0/24")];
    b.remote_ts = a.local_ts.clone();
    let mut p = Pair::new(a, b);
    p.tick(Timestamp::ZERO);
    // Main Mode: six messages; then A has exactly one Quick Mode message 1 on the wire
    // (peers keep the IV state of only a few Quick Modes at once).
    for _ in 0..6 {
        assert!(p.deliver_next());
    }
    assert_eq!(p.pending_to(Side::B), 1);
    p.run();
    p.advance(Duration::from_secs(1));
    assert_eq!(installed(&mut p, Side::A).len(), 4);
    assert_eq!(installed(&mut p, Side::B).len(), 4);
    // An operator rekey of all four goes one at a time too, and renews them all.
    let before = installed(&mut p, Side::A);
    p.command(Side::A, Command::Rekey { peer: "site-b".into(), ike: false });
    assert_eq!(p.pending_to(Side::B), 1);
    p.run();
    for _ in 0..5 {
        p.advance(Duration::from_secs(1));
    }
    let after = installed(&mut p, Side::A);
    assert_eq!(after.len(), 4);
    assert!(after.iter().all(|x| !before.contains(x)), "{before:?} -> {after:?}");
}

#[test]
fn forced_encapsulation_floats_and_follows_a_new_nat_mapping() {
    init_logs();
    let (mut a, b) = configs("aes128-sha1-modp1024", "aes128-sha1-modp1024");
    a.force_encap = true;
    let mut p = walkthrough_with(a, b);
    for side in [Side::A, Side::B] {
        let st = p.ep(side).status();
        assert!(st[0].nat_detected, "{side:?}: {st:?}");
        assert_eq!(st[0].local.port(), 4500);
        let enc = st[0].children[0].encap.expect("UDP-encapsulated");
        assert_eq!((enc.local_port, enc.remote_port), (4500, 4500));
    }
    // A's NAT mapping changes: its next authenticated message comes from another port.
    let mark = p.datapath(Side::B).len();
    p.command(Side::A, Command::Rekey { peer: "site-b".into(), ike: false });
    let mut t = p.take_to(Side::B).expect("Quick Mode message 1");
    t.local.set_port(40_000);
    p.inject(Side::B, &t);
    let moved = p.datapath(Side::B).into_iter().skip(mark).any(|c| {
        matches!(c, DatapathCommand::UpdateEndpoints { endpoints, .. }
            if endpoints.encap.is_some_and(|e| e.remote_port == 40_000))
    });
    assert!(moved, "{:?}", p.datapath(Side::B));
    assert_eq!(p.ep(Side::B).status()[0].remote.port(), 40_000);
}
