//! Rekeying CHILD and IKE SAs between two in-memory endpoints: make-before-break order
//! of the datapath commands, PFS and its INVALID_KE_PAYLOAD retry, lifetimes with
//! jitter, volume limits, and the operator's rekey command.

use ike::testing::{peer_config, Pair, Side};
use ike::{Command, Output, PeerConfig};
use ipsec_types::{
    DatapathCommand, DatapathEvent, DhGroup, Direction, EspProposal, ExpiryReason, SaParams, Spi, Timestamp,
};
use std::time::Duration;

fn init_logs() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("ike=debug").try_init();
}

fn configs() -> (PeerConfig, PeerConfig) {
    (
        peer_config("site-b", "192.0.2.1", "192.0.2.2", true, true),
        peer_config("site-a", "192.0.2.2", "192.0.2.1", false, false),
    )
}

/// Lets the rekey initiator delete the old CHILD SA (200 ms after the rekey) and the
/// old inbound SAs' grace period (2 s) pass.
fn settle(p: &mut Pair) {
    p.advance(Duration::from_secs(1));
    p.advance(Duration::from_secs(2));
}

fn up(a: PeerConfig, b: PeerConfig) -> Pair {
    let mut p = Pair::new(a, b);
    p.run();
    assert_eq!(p.datapath(Side::A).len(), 2);
    assert_eq!(p.datapath(Side::B).len(), 2);
    p
}

/// A compact, comparable form of a datapath command.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Dp {
    In(Spi),
    Out(Spi),
    RmIn(Spi),
    RmOut(Spi),
}

fn dp(cmds: &[DatapathCommand]) -> Vec<Dp> {
    cmds.iter()
        .filter_map(|c| match c {
            DatapathCommand::InstallInbound(s) => Some(Dp::In(s.spi)),
            DatapathCommand::InstallOutbound(s) => Some(Dp::Out(s.spi)),
            DatapathCommand::Remove { spi, direction: Direction::Inbound, .. } => Some(Dp::RmIn(*spi)),
            DatapathCommand::Remove { spi, direction: Direction::Outbound, .. } => Some(Dp::RmOut(*spi)),
            DatapathCommand::UpdateEndpoints { .. } => None,
        })
        .collect()
}

fn installed(cmds: &[DatapathCommand], dir: Direction) -> Vec<SaParams> {
    cmds.iter()
        .filter_map(|c| match c {
            DatapathCommand::InstallInbound(s) if dir == Direction::Inbound => Some(s.clone()),
            DatapathCommand::InstallOutbound(s) if dir == Direction::Outbound => Some(s.clone()),
            _ => None,
        })
        .collect()
}

/// The SAs a side has installed and not removed: (inbound SPIs, the outbound SPI the
/// seal path uses = the last one installed).
fn live(cmds: &[DatapathCommand]) -> (Vec<Spi>, Vec<Spi>) {
    let (mut ins, mut outs) = (Vec::new(), Vec::new());
    for c in dp(cmds) {
        match c {
            Dp::In(s) => ins.push(s),
            Dp::Out(s) => outs.push(s),
            Dp::RmIn(s) => ins.retain(|x| *x != s),
            Dp::RmOut(s) => outs.retain(|x| *x != s),
        }
    }
    (ins, outs)
}

/// Both sides have exactly one pair of SAs and their keys match.
fn assert_one_pair(p: &Pair) -> (Spi, Spi) {
    let (a_in, a_out) = live(&p.datapath(Side::A));
    let (b_in, b_out) = live(&p.datapath(Side::B));
    assert_eq!(
        (a_in.len(), a_out.len(), b_in.len(), b_out.len()),
        (1, 1, 1, 1),
        "A {a_in:?}/{a_out:?} B {b_in:?}/{b_out:?}"
    );
    assert_eq!((a_out[0], b_out[0]), (b_in[0], a_in[0]));
    let key = |side, spi: Spi, dir| {
        installed(&p.datapath(side), dir).into_iter().rev().find(|s| s.spi == spi).map(|s| s.key.key().to_vec())
    };
    assert_eq!(key(Side::A, a_out[0], Direction::Outbound), key(Side::B, b_in[0], Direction::Inbound));
    assert_eq!(key(Side::B, b_out[0], Direction::Outbound), key(Side::A, a_in[0], Direction::Inbound));
    assert_eq!(p.a.status()[0].children.len(), 1);
    assert_eq!(p.b.status()[0].children.len(), 1);
    (a_in[0], a_out[0])
}

/// Runs a CHILD SA rekey started by `by` message by message and checks make-before-break.
fn child_rekey_by(by: Side) {
    let (a, b) = configs();
    let mut p = up(a, b);
    let other = if by == Side::A { Side::B } else { Side::A };
    let (old_in, old_out) = live(&p.datapath(by));
    let (o_in, o_out) = (old_in[0], old_out[0]);
    let n_by = p.datapath(by).len();
    let n_other = p.datapath(other).len();
    let peer = p.ep(by).status()[0].tunnel.clone();
    p.command(by, Command::Rekey { peer, ike: false });
    // The request goes out; nothing installed yet.
    assert_eq!(p.pending_to(other), 1);
    assert_eq!(p.datapath(by).len(), n_by);
    assert!(p.deliver_to(other));
    // The responder installed only the new inbound SA, before its response left.
    let r = dp(&p.datapath(other)[n_other..]);
    let [Dp::In(new_r_in)] = r[..] else { panic!("{r:?}") };
    let log = p.log(other);
    let inst = log.iter().rposition(|o| matches!(o, Output::Datapath(DatapathCommand::InstallInbound(_)))).unwrap();
    let tx = log.iter().rposition(|o| matches!(o, Output::Transmit(_))).unwrap();
    assert!(inst < tx, "inbound SA installed before the response is sent");
    assert!(p.deliver_to(by));
    // The initiator installed both halves, then sent DELETE for the old SA; the old SAs stay.
    let i = dp(&p.datapath(by)[n_by..]);
    let [Dp::In(new_in), Dp::Out(new_out)] = i[..] else { panic!("{i:?}") };
    assert_eq!(new_out, new_r_in);
    assert_eq!(p.pending_to(other), 0, "the old CHILD SA is deleted 200 ms later");
    let t = p.now + Duration::from_millis(199);
    p.tick(t);
    assert_eq!(p.pending_to(other), 0);
    let t = p.now + Duration::from_millis(1);
    p.tick(t);
    assert_eq!(p.pending_to(other), 1, "DELETE of the old CHILD SA");
    assert!(p.deliver_to(other));
    // The responder moved outbound to the new SA, removed the old outbound SA; the old
    // inbound SA stays for the grace period.
    let r = dp(&p.datapath(other)[n_other..]);
    assert_eq!(r, vec![Dp::In(new_r_in), Dp::Out(new_in), Dp::RmOut(o_in)]);
    assert!(p.deliver_to(by));
    let i = dp(&p.datapath(by)[n_by..]);
    assert_eq!(i, vec![Dp::In(new_in), Dp::Out(new_out), Dp::RmOut(o_out)]);
    // After the grace period the old inbound SAs go.
    p.advance(Duration::from_millis(1999));
    assert_eq!(dp(&p.datapath(by)[n_by..]).len(), 3);
    p.advance(Duration::from_millis(1));
    assert_eq!(dp(&p.datapath(by)[n_by..]).last(), Some(&Dp::RmIn(o_in)));
    assert_eq!(dp(&p.datapath(other)[n_other..]).last(), Some(&Dp::RmIn(o_out)));
    assert_one_pair(&p);
    for side in [Side::A, Side::B] {
        let st = p.ep(side).status();
        assert_eq!(st[0].children[0].state, "INSTALLED");
        assert_eq!(st[0].children[0].dh, None);
        let created = p.now - Duration::from_millis(2200);
        assert_eq!(st[0].children[0].next_rekey, Some(created + Duration::from_secs(3600)));
    }
    // A rekeyed SA gets a new child id (the datapath keys its counters by it).
    let ids: Vec<u64> = installed(&p.datapath(by), Direction::Inbound).iter().map(|s| s.child.child_id).collect();
    assert_ne!(ids[0], ids[1]);
}

#[test]
fn child_rekey_by_the_ike_initiator_is_make_before_break() {
    init_logs();
    child_rekey_by(Side::A);
}

#[test]
fn child_rekey_by_the_ike_responder_is_make_before_break() {
    init_logs();
    child_rekey_by(Side::B);
}

fn pfs(a: &str, b: &str) -> (PeerConfig, PeerConfig) {
    let (mut ca, mut cb) = configs();
    ca.esp_proposals = vec![EspProposal::parse(a).unwrap()];
    cb.esp_proposals = vec![EspProposal::parse(b).unwrap()];
    (ca, cb)
}

fn creates_sent(p: &Pair, side: Side) -> usize {
    // CREATE_CHILD_SA requests: exchange type 36, not a response.
    p.transmits(side)
        .iter()
        .filter(|t| t.data.get(18) == Some(&36) && t.data.get(19).is_some_and(|f| f & 0x20 == 0))
        .count()
}

#[test]
fn child_rekey_with_pfs_uses_the_group_of_the_proposal() {
    init_logs();
    let (a, b) = pfs("aes256gcm16-x25519", "aes256gcm16-x25519");
    let mut p = up(a, b);
    assert_eq!(p.a.status()[0].children[0].dh, None, "IKE_AUTH children have no key exchange");
    p.command(Side::B, Command::Rekey { peer: "site-a".into(), ike: false });
    p.run();
    settle(&mut p);
    assert_one_pair(&p);
    assert_eq!(p.a.status()[0].children[0].dh, Some(DhGroup::Curve25519));
    assert_eq!(p.b.status()[0].children[0].dh, Some(DhGroup::Curve25519));
    assert_eq!(creates_sent(&p, Side::B), 1);
}

#[test]
fn invalid_ke_payload_makes_the_child_rekey_retry_with_the_wanted_group() {
    init_logs();
    let (a, b) = pfs("aes256gcm16-ecp256-x25519", "aes256gcm16-x25519");
    let mut p = up(a, b);
    p.command(Side::A, Command::Rekey { peer: "site-b".into(), ike: false });
    p.run();
    settle(&mut p);
    assert_eq!(creates_sent(&p, Side::A), 2, "ecp256 refused, x25519 accepted");
    assert_one_pair(&p);
    assert_eq!(p.a.status()[0].children[0].dh, Some(DhGroup::Curve25519));
}

#[test]
fn pfs_mismatch_is_refused_and_the_old_sa_kept_until_its_hard_lifetime() {
    init_logs();
    // A wants PFS, B does not: B answers NO_PROPOSAL_CHOSEN (RFC 7296 3.3.6).
    let (a, b) = pfs("aes256gcm16-x25519", "aes256gcm16");
    let mut p = up(a, b);
    let before = assert_one_pair(&p);
    p.tick(Timestamp::from_secs(3600));
    p.run();
    assert_eq!(creates_sent(&p, Side::A), 1);
    assert_eq!(assert_one_pair(&p), before, "nothing changed");
    assert_eq!(p.a.status()[0].children[0].next_rekey, Some(Timestamp::from_secs(3660)), "retried in 60 s");
    for t in [3660, 3720, 3780, 3840, 3900] {
        p.tick(Timestamp::from_secs(t));
        p.run();
    }
    assert_eq!(creates_sent(&p, Side::A), 6);
    assert_eq!(p.a.status()[0].children.len(), 1);
    // B rekeys at 3600 too (it has no PFS: A refuses its proposal); at 3960 both delete it.
    p.tick(Timestamp::from_secs(3960));
    p.run();
    assert!(p.a.status()[0].children.is_empty() && p.b.status()[0].children.is_empty());
    assert_eq!(live(&p.datapath(Side::A)), (vec![], vec![]));
    assert_eq!(live(&p.datapath(Side::B)), (vec![], vec![]));
    assert_eq!(p.a.status()[0].state, "ESTABLISHED");
}

#[test]
fn child_sa_rekeys_at_its_rekey_time_minus_jitter() {
    init_logs();
    let (mut a, mut b) = configs();
    a.timers.rekey_jitter_percent = 10;
    b.timers.child_rekey_time = Duration::from_secs(7200);
    b.timers.child_life_time = Duration::from_secs(7300);
    let mut p = up(a, b);
    let due = p.a.status()[0].children[0].next_rekey.unwrap();
    assert!(due >= Timestamp::from_secs(3240) && due <= Timestamp::from_secs(3600), "{due:?}");
    let ike_due = p.a.status()[0].next_rekey.unwrap();
    assert!(ike_due >= Timestamp::from_secs(4 * 3240) && ike_due <= Timestamp::from_secs(4 * 3600));
    assert_eq!(p.a.poll_timeout(), Some(due));
    p.tick(due - Duration::from_millis(1));
    assert_eq!(creates_sent(&p, Side::A), 0);
    p.tick(due);
    assert_eq!(creates_sent(&p, Side::A), 1);
    p.run();
    settle(&mut p);
    assert_one_pair(&p);
    assert_eq!(creates_sent(&p, Side::B), 0);
}

#[test]
fn volume_limits_reach_the_datapath_and_soft_expiry_rekeys() {
    init_logs();
    let (mut a, b) = configs();
    a.timers.child_rekey_bytes = Some(1_000_000);
    a.timers.child_rekey_packets = Some(1000);
    let mut p = up(a, b);
    let sas = installed(&p.datapath(Side::A), Direction::Outbound);
    let l = sas[0].limits;
    assert_eq!((l.soft_bytes, l.hard_bytes), (Some(1_000_000), Some(1_100_000)));
    assert_eq!((l.soft_packets, l.hard_packets), (Some(1000), Some(1100)));
    assert_eq!(installed(&p.datapath(Side::B), Direction::Inbound)[0].limits.soft_bytes, None);
    for (reason, n) in [(ExpiryReason::Bytes, 1), (ExpiryReason::SeqExhausted, 2)] {
        let (_, out) = live(&p.datapath(Side::A));
        let ev = DatapathEvent::Expired {
            tunnel: "site-b".into(),
            spi: out[0],
            direction: Direction::Outbound,
            hard: false,
            reason,
        };
        p.a.handle_datapath_event(p.now, ev.clone());
        // A second soft event for the same SA does not start a second rekey.
        p.a.handle_datapath_event(p.now, ev);
        p.run();
        settle(&mut p);
        assert_eq!(creates_sent(&p, Side::A), n);
        assert_one_pair(&p);
    }
}

#[test]
fn ike_rekey_moves_the_child_sas_and_touches_no_esp_sa() {
    init_logs();
    for by in [Side::A, Side::B] {
        let (a, b) = configs();
        let mut p = up(a, b);
        let before = (p.a.status()[0].spi_i, p.a.status()[0].spi_r);
        let child = assert_one_pair(&p);
        let name = p.ep(by).status()[0].tunnel.clone();
        p.command(by, Command::Rekey { peer: name.clone(), ike: true });
        p.run();
        for side in [Side::A, Side::B] {
            let st = p.ep(side).status();
            assert_eq!(st.len(), 1, "old IKE SA deleted");
            assert_ne!((st[0].spi_i, st[0].spi_r), before);
            assert_eq!(st[0].initiator, side == by, "the rekey initiator is the new IKE SA's initiator");
            assert_eq!(st[0].children.len(), 1);
            assert_eq!(st[0].next_rekey, Some(p.now + Duration::from_secs(4 * 3600)));
        }
        assert_eq!(p.datapath(Side::A).len(), 2, "no datapath change");
        assert_eq!(p.datapath(Side::B).len(), 2);
        assert!(p.events(Side::A).iter().all(|e| !matches!(e, ike::Event::IkeDown { .. })));
        assert_eq!(assert_one_pair(&p), child);
        // The new IKE SA works (message IDs from 0): rekey the CHILD SA over it, then
        // the IKE SA again.
        p.command(by, Command::Rekey { peer: name.clone(), ike: false });
        p.run();
        settle(&mut p);
        assert_ne!(assert_one_pair(&p), child);
        p.command(by, Command::Rekey { peer: name, ike: true });
        p.run();
        assert_eq!(p.a.status().len(), 1);
        assert_eq!(p.b.status().len(), 1);
        assert_eq!(p.a.status()[0].children.len(), 1);
    }
}

#[test]
fn ike_sa_rekeys_on_its_timer_and_expires_without_rekey() {
    init_logs();
    let (mut a, b) = configs();
    a.timers.ike_rekey_time = Duration::from_secs(1000);
    let mut p = up(a, b);
    let first = p.a.status()[0].spi_i;
    p.tick(Timestamp::from_secs(1000));
    p.run();
    assert_eq!(p.a.status().len(), 1);
    assert_ne!(p.a.status()[0].spi_i, first);
    assert_eq!(p.a.status()[0].next_rekey, Some(Timestamp::from_secs(2000)));
    assert_eq!(p.b.status()[0].next_rekey, Some(Timestamp::from_secs(1000 + 4 * 3600)));
    assert_eq!(p.a.status()[0].children.len(), 1);
}

#[test]
fn ike_sa_hard_lifetime_deletes_it_and_the_initiator_starts_over() {
    init_logs();
    let (mut a, b) = configs();
    // A degenerate configuration where the hard lifetime comes with the rekey time.
    a.timers.ike_rekey_time = Duration::from_secs(1000);
    a.timers.ike_life_time = Duration::from_secs(1000);
    let mut p = up(a, b);
    let first = p.a.status()[0].spi_i;
    assert_eq!(p.a.status()[0].next_rekey, Some(Timestamp::from_secs(1000)));
    p.tick(Timestamp::from_secs(1000));
    assert!(p
        .events(Side::A)
        .iter()
        .any(|e| matches!(e, ike::Event::IkeDown { reason, .. } if *reason == ike::DownReason::LifetimeExpired)));
    p.run();
    assert_eq!(p.a.status().len(), 1);
    assert_ne!(p.a.status()[0].spi_i, first);
    assert_eq!(p.a.status()[0].state, "ESTABLISHED");
    assert_eq!(p.b.status().len(), 1, "B got the DELETE");
    assert_eq!(live(&p.datapath(Side::A)).0.len(), 1);
    assert_eq!(live(&p.datapath(Side::B)).0.len(), 1);
}

#[test]
fn responder_moves_to_the_new_sa_when_the_old_one_hits_a_limit_before_the_delete() {
    init_logs();
    let (a, b) = configs();
    let mut p = up(a, b);
    let (old_in, old_out) = live(&p.datapath(Side::B));
    p.command(Side::A, Command::Rekey { peer: "site-b".into(), ike: false });
    assert!(p.deliver_to(Side::B));
    assert!(p.deliver_to(Side::A));
    let n = p.datapath(Side::B).len();
    let [Dp::In(new_in)] = dp(&p.datapath(Side::B)[n - 1..])[..] else { panic!() };
    // The old outbound SA of B reaches its soft limit before A's DELETE arrives.
    let ev = DatapathEvent::Expired {
        tunnel: "site-a".into(),
        spi: old_out[0],
        direction: Direction::Outbound,
        hard: false,
        reason: ExpiryReason::Packets,
    };
    p.b.handle_datapath_event(p.now, ev);
    p.drain();
    let moved = dp(&p.datapath(Side::B)[n..]);
    assert!(matches!(moved[..], [Dp::Out(_)]), "{moved:?}");
    assert_eq!(creates_sent(&p, Side::B), 0, "no rekey of a rekeyed SA");
    settle(&mut p);
    let after = dp(&p.datapath(Side::B)[n..]);
    assert_eq!(after.len(), 3, "{after:?}");
    assert_eq!(after[1..], [Dp::RmOut(old_out[0]), Dp::RmIn(old_in[0])]);
    assert_one_pair(&p);
    assert_eq!(p.b.status()[0].children[0].spi_in, new_in);
}
