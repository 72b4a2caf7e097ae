//! Dead peer detection and peers that restart: liveness checks after `dpd_delay` of
//! silence, `dpd_action` restart / clear after `dpd_timeout`, INVALID_IKE_SPI from a
//! restarted peer, and INITIAL_CONTACT towards a tunnel configured to initiate.

use ike::testing::{peer_config, Pair, Side};
use ike::{Event, PeerConfig};
use ipsec_types::DpdAction;
use ipsec_types::{DatapathCommand, Direction, Spi, Timestamp};
use std::time::Duration;

fn init_logs() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("ike=debug").try_init();
}

fn configs() -> (PeerConfig, PeerConfig) {
    let mut a = peer_config("site-b", "192.0.2.1", "192.0.2.2", true, true);
    a.dpd.delay = Some(Duration::from_secs(30));
    (a, peer_config("site-a", "192.0.2.2", "192.0.2.1", false, false))
}

fn secs(s: u64) -> Timestamp {
    Timestamp::from_secs(s)
}

/// Exchange type and response flag of a datagram.
fn kind(data: &[u8]) -> (u8, bool) {
    (data.get(18).copied().unwrap_or(0), data.get(19).is_some_and(|f| f & 0x20 != 0))
}

/// Runs A's timers until `until`, losing everything A sends.
fn a_alone_until(p: &mut Pair, until: Timestamp) {
    while let Some(t) = p.a.poll_timeout().filter(|t| *t <= until) {
        p.tick(t);
        while p.take_to(Side::B).is_some() {}
    }
    p.now = until;
}

fn live(cmds: &[DatapathCommand]) -> Vec<(Direction, Spi)> {
    let mut v = Vec::new();
    for c in cmds {
        match c {
            DatapathCommand::InstallInbound(s) => v.push((Direction::Inbound, s.spi)),
            DatapathCommand::InstallOutbound(s) => v.push((Direction::Outbound, s.spi)),
            DatapathCommand::Remove { spi, direction, .. } => v.retain(|x| *x != (*direction, *spi)),
            DatapathCommand::UpdateEndpoints { .. } => {}
        }
    }
    v
}

/// The standard pair after B restarted, forgetting everything: the tunnel was up, then
/// B's endpoint is replaced by a fresh one. Also A's live SAs from before the restart.
fn b_restarted() -> (Pair, Vec<(Direction, Spi)>) {
    let (a, b) = configs();
    let mut p = Pair::new(a, b.clone());
    p.run();
    let old = live(&p.datapath(Side::A));
    p.restart(Side::B, b, 7);
    (p, old)
}

#[test]
fn silence_triggers_a_liveness_check_which_the_peer_answers() {
    init_logs();
    let (a, b) = configs();
    let mut p = Pair::new(a, b);
    p.run();
    assert_eq!(p.a.poll_timeout(), Some(secs(30)));
    assert_eq!(p.b.poll_timeout(), Some(secs(3600)), "B has no DPD configured");
    let before = p.transmits(Side::A).len();
    p.tick(secs(30));
    let tx = p.transmits(Side::A);
    assert_eq!(tx.len(), before + 1);
    assert_eq!(kind(&tx[before].data), (37, false), "an INFORMATIONAL request");
    p.run();
    assert_eq!(p.a.status()[0].last_heard, Some(secs(30)));
    assert_eq!(p.a.poll_timeout(), Some(secs(60)));
    // Any valid message from the peer counts: B's CHILD rekey at 50 s postpones the check.
    p.now = secs(50);
    p.command(Side::B, ike::Command::Rekey { peer: "site-a".into(), ike: false });
    p.run();
    assert_eq!(p.a.status()[0].last_heard, Some(secs(50)));
    assert_eq!(p.a.poll_timeout(), Some(secs(80)));
    // B deletes the old CHILD SA a second later; A keeps its old inbound SA 2 s more.
    p.advance(Duration::from_secs(1));
    assert_eq!(p.a.status()[0].last_heard, Some(secs(51)));
    assert_eq!(p.a.poll_timeout(), Some(secs(53)), "old inbound SA's grace period");
    p.advance(Duration::from_secs(2));
    assert_eq!(p.a.poll_timeout(), Some(secs(81)));
}

#[test]
fn dead_peer_is_restarted_until_it_comes_back() {
    init_logs();
    let (a, b) = configs();
    let mut p = Pair::new(a, b);
    p.run();
    let first = p.a.status()[0].spi_i;
    // Last heard at 0 s; dpd_delay 30 s, dpd_timeout 150 s: dead at 150 s of silence.
    a_alone_until(&mut p, secs(149));
    assert_eq!(p.a.status()[0].state, "ESTABLISHED");
    let sent: Vec<(u8, bool)> = p.transmits(Side::A).iter().skip(2).map(|t| kind(&t.data)).collect();
    let checks = sent.iter().filter(|k| **k == (37, false)).count();
    assert_eq!(checks, 7, "liveness at 30 s and retransmits at 31, 33, 37, 45, 61, 93");
    // From 33 s (3 s without an answer) a new IKE SA is tried next to the old one, in
    // case the peer restarted silently; nothing else is sent.
    assert!(sent.contains(&(34, false)), "restart probe: IKE_SA_INIT");
    assert!(sent.iter().all(|k| *k == (37, false) || *k == (34, false)), "{sent:?}");
    a_alone_until(&mut p, secs(150));
    assert!(p
        .events(Side::A)
        .iter()
        .any(|e| matches!(e, Event::IkeDown { reason, .. } if *reason == ike::DownReason::DeadPeer)));
    assert!(live(&p.datapath(Side::A)).is_empty(), "dead peer's SAs removed");
    let init_at_150 = p.transmits(Side::A).last().map(|t| kind(&t.data));
    assert_eq!(init_at_150, Some((34, false)), "IKE_SA_INIT again at once");
    // Still dead: the initiation fails (63 s), then is retried after 10 s, 30 s, ...
    a_alone_until(&mut p, secs(600));
    let inits = p.transmits(Side::A).iter().filter(|t| kind(&t.data) == (34, false)).count();
    assert!(inits >= 3 * 6, "kept trying: {inits} IKE_SA_INIT datagrams");
    // The peer is back (it kept its old state): the tunnel comes up with a new IKE SA,
    // and INITIAL_CONTACT makes B drop the old one.
    p.run();
    for _ in 0..7 {
        p.advance(Duration::from_secs(10));
    }
    assert_eq!(p.a.status().len(), 1);
    assert_ne!(p.a.status()[0].spi_i, first);
    assert_eq!(p.a.status()[0].state, "ESTABLISHED");
    assert_eq!(p.b.status().len(), 1, "B dropped the stale IKE SA");
    assert_eq!(live(&p.datapath(Side::A)).len(), 2);
    assert_eq!(live(&p.datapath(Side::B)).len(), 2);
}

#[test]
fn dpd_action_clear_tears_down_and_waits() {
    init_logs();
    let (mut a, b) = configs();
    a.dpd.action = DpdAction::Clear;
    a.dpd.timeout = Duration::from_secs(40);
    let mut p = Pair::new(a, b);
    p.run();
    a_alone_until(&mut p, secs(70));
    assert!(p.a.is_idle());
    assert!(live(&p.datapath(Side::A)).is_empty());
    assert_eq!(p.a.poll_timeout(), None, "no re-initiation");
}

#[test]
fn responder_with_restart_initiates_after_its_peer_died() {
    init_logs();
    let (a, mut b) = configs();
    b.dpd.delay = Some(Duration::from_secs(30));
    let mut p = Pair::new(a, b);
    p.run();
    // A vanishes; B (configured to respond only) detects it and initiates.
    while let Some(t) = p.b.poll_timeout().filter(|t| *t <= secs(180)) {
        p.now = t;
        p.b.handle_timeout(t);
        p.drain();
        p.in_flight.clear();
    }
    assert!(p.b.status().iter().all(|s| s.initiator && s.state == "CONNECTING"), "{:?}", p.b.status());
}

#[test]
fn restarted_peer_answering_invalid_ike_spi_is_replaced_make_before_break() {
    init_logs();
    let (mut p, old) = b_restarted();
    p.tick(secs(30));
    assert!(p.deliver_to(Side::B), "liveness check");
    let answer = p.transmits(Side::B);
    assert_eq!(answer.len(), 1);
    assert_eq!(kind(&answer[0].data), (37, true), "unprotected INFORMATIONAL response");
    assert_eq!(answer[0].data.get(16), Some(&41), "a Notify payload, not SK");
    p.run();
    // The answer is unprotected: A changes nothing until its check has gone unanswered
    // for 3 s (a live peer would have answered it by then).
    assert_eq!(p.datapath(Side::A).len(), 2, "nothing happens at once");
    p.advance(Duration::from_secs(3));
    let a_cmds = p.datapath(Side::A);
    assert_eq!(a_cmds.len(), 6, "{a_cmds:?}");
    let new = live(&a_cmds);
    assert_eq!(new.len(), 2);
    assert!(new.iter().all(|x| !old.contains(x)));
    assert!(
        matches!(
            &a_cmds[2..],
            [
                DatapathCommand::InstallInbound(_),
                DatapathCommand::InstallOutbound(_),
                DatapathCommand::Remove { direction: Direction::Outbound, .. },
                DatapathCommand::Remove { direction: Direction::Inbound, .. },
            ]
        ),
        "new SAs before the stale ones go: {a_cmds:?}"
    );
    assert_eq!(p.a.status().len(), 2, "the stale IKE SA waits one timeout for its DELETE response");
    p.advance(Duration::from_secs(1));
    assert_eq!(p.a.status().len(), 1);
    assert_eq!(p.b.status().len(), 1);
    assert_eq!(live(&p.datapath(Side::B)).len(), 2);
}

#[test]
fn unknown_spi_requests_are_answered_at_most_once_a_second() {
    init_logs();
    let (mut p, _) = b_restarted();
    p.tick(secs(30));
    let req = p.take_to(Side::B).expect("liveness");
    for _ in 0..5 {
        p.inject(Side::B, &req);
    }
    assert_eq!(p.transmits(Side::B).len(), 1);
    p.now = secs(31);
    p.inject(Side::B, &req);
    assert_eq!(p.transmits(Side::B).len(), 2);
    // From an address without a tunnel: nothing.
    let mut other = req.clone();
    other.local = "198.51.100.7:500".parse().unwrap();
    p.now = secs(40);
    p.inject(Side::B, &other);
    assert_eq!(p.transmits(Side::B).len(), 2);
}

#[test]
fn initial_contact_replaces_stale_sas_of_a_tunnel_we_initiate_too() {
    init_logs();
    let a = peer_config("site-b", "192.0.2.1", "192.0.2.2", true, true);
    let b = peer_config("site-a", "192.0.2.2", "192.0.2.1", false, true);
    let mut p = Pair::new(a.clone(), b);
    p.run();
    assert_eq!(p.b.status().len(), 2, "both initiated");
    p.restart(Side::A, a, 9);
    p.run();
    assert_eq!(p.b.status().len(), 1, "B (configured to initiate) dropped both stale IKE SAs");
    assert_eq!(live(&p.datapath(Side::B)).len(), 2);
}

#[test]
fn esp_from_the_peer_postpones_the_liveness_check() {
    init_logs();
    let (a, b) = configs();
    let mut p = Pair::new(a, b);
    p.run();
    let spi_in = p.a.status()[0].children[0].spi_in;
    p.now = secs(25);
    p.a.handle_esp_activity(p.now, spi_in);
    p.a.handle_esp_activity(p.now, Spi(12345));
    assert_eq!(p.a.poll_timeout(), Some(secs(55)));
    assert_eq!(p.a.status()[0].last_heard, Some(secs(25)));
    let before = p.transmits(Side::A).len();
    p.tick(secs(30));
    assert_eq!(p.transmits(Side::A).len(), before, "no liveness check while ESP arrives");
    p.tick(secs(55));
    assert_eq!(p.transmits(Side::A).len(), before + 1);
}

#[test]
fn esp_while_a_liveness_check_goes_unanswered_postpones_the_verdict() {
    init_logs();
    let (a, b) = configs();
    let mut p = Pair::new(a, b);
    p.run();
    let spi_in = p.a.status()[0].children[0].spi_in;
    // The check goes out at 30 s and every IKE message is lost from then on, but ESP
    // from the peer is reported at 100 s: dead only after dpd_timeout (150 s) of that.
    a_alone_until(&mut p, secs(100));
    p.a.handle_esp_activity(p.now, spi_in);
    a_alone_until(&mut p, secs(249));
    assert_eq!(p.a.status()[0].state, "ESTABLISHED", "alive: ESP heard at 100 s");
    let dead = |p: &mut Pair| {
        p.events(Side::A)
            .iter()
            .any(|e| matches!(e, Event::IkeDown { reason, .. } if *reason == ike::DownReason::DeadPeer))
    };
    assert!(!dead(&mut p));
    a_alone_until(&mut p, secs(250));
    assert!(dead(&mut p), "dead at 250 s: nothing heard since 100 s");
}

#[test]
fn silently_restarted_peer_is_back_a_few_seconds_after_dpd_delay() {
    init_logs();
    let (mut p, old) = b_restarted();
    // B (like strongSwan 5.9) ignores requests for IKE SAs it does not know: only
    // IKE_SA_INIT gets through to it.
    let until = secs(36);
    while let Some(t) = p.a.poll_timeout().filter(|t| *t <= until) {
        p.tick(t);
        loop {
            if let Some(msg) = p.take_to(Side::B) {
                if matches!(kind(&msg.data).0, 34 | 35) {
                    p.inject(Side::B, &msg);
                }
            } else if let Some(msg) = p.take_to(Side::A) {
                p.inject(Side::A, &msg);
            } else {
                break;
            }
        }
    }
    let now_live = live(&p.datapath(Side::A));
    assert_eq!(now_live.len(), 2, "a new CHILD SA pair by {until:?}: {:?}", p.datapath(Side::A));
    assert!(now_live.iter().all(|x| !old.contains(x)), "the stale SAs were replaced");
    assert_eq!(p.a.status().iter().filter(|s| s.state == "ESTABLISHED").count(), 1);
}

#[test]
fn a_peer_is_dead_after_dpd_timeout_of_silence_with_at_least_one_retransmission() {
    init_logs();
    for (delay, timeout, dead_at, checks) in [(1, 4, 4, 2), (10, 10, 12, 2), (5, 60, 60, 6)] {
        let (mut a, b) = configs();
        a.dpd.delay = Some(Duration::from_secs(delay));
        a.dpd.timeout = Duration::from_secs(timeout);
        let mut p = Pair::new(a, b);
        p.run();
        let established = p.now;
        let before = p.transmits(Side::A).len();
        a_alone_until(&mut p, established + Duration::from_secs(dead_at) - Duration::from_millis(1));
        assert_eq!(p.a.status()[0].state, "ESTABLISHED", "delay {delay} timeout {timeout}");
        let sent = p.transmits(Side::A);
        let n = sent[before..].iter().filter(|t| kind(&t.data) == (37, false)).count();
        assert_eq!(n, checks, "liveness checks before death, delay {delay} timeout {timeout}");
        a_alone_until(&mut p, established + Duration::from_secs(dead_at));
        let dead = p
            .events(Side::A)
            .iter()
            .any(|e| matches!(e, Event::IkeDown { reason, .. } if *reason == ike::DownReason::DeadPeer));
        assert!(dead, "dead at {dead_at} s, delay {delay} timeout {timeout}");
    }
}
