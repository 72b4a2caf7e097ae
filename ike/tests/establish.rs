//! IKE_SA_INIT + IKE_AUTH + first CHILD SA between two in-memory endpoints.

use ike::testing::{peer_config, Pair, Side};
use ike::{Command, Event, Output};
use ipsec_types::{DatapathCommand, Direction, SaParams, Spi};
use std::time::Duration;

fn init_logs() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("ike=debug").try_init();
}

fn installs(cmds: &[DatapathCommand]) -> (SaParams, SaParams) {
    match cmds {
        [DatapathCommand::InstallInbound(i), DatapathCommand::InstallOutbound(o)] => (i.clone(), o.clone()),
        other => panic!("expected InstallInbound then InstallOutbound, got {other:?}"),
    }
}

/// Both sides installed matching SAs: A's outbound is B's inbound and vice versa.
fn assert_keys_cross_match(p: &Pair) -> (SaParams, SaParams, SaParams, SaParams) {
    let (a_in, a_out) = installs(&p.datapath(Side::A));
    let (b_in, b_out) = installs(&p.datapath(Side::B));
    assert_eq!(a_out.spi, b_in.spi);
    assert_eq!(b_out.spi, a_in.spi);
    assert_eq!(a_out.key.key(), b_in.key.key());
    assert_eq!(a_out.key.salt(), b_in.key.salt());
    assert_eq!(b_out.key.key(), a_in.key.key());
    assert_ne!(a_out.key.key(), a_in.key.key());
    assert_eq!(a_in.direction, Direction::Inbound);
    assert_eq!(a_out.direction, Direction::Outbound);
    assert_eq!(a_in.child, a_out.child);
    (a_in, a_out, b_in, b_out)
}

#[test]
fn handshake_installs_matching_child_sas() {
    init_logs();
    let mut p = Pair::standard();
    assert_eq!(p.a.poll_timeout(), Some(ipsec_types::Timestamp::ZERO));
    p.run();
    let (a_in, a_out, b_in, _) = assert_keys_cross_match(&p);
    assert_eq!(a_in.child.tunnel, "site-b");
    assert_eq!(b_in.child.tunnel, "site-a");
    assert_eq!(a_out.local_ts[0].to_string(), "10.1.0.0/24");
    assert_eq!(a_out.remote_ts[0].to_string(), "10.2.0.0/24");
    assert_eq!(b_in.local_ts[0].to_string(), "10.2.0.0/24");
    assert_eq!(a_in.endpoints.encap, None, "no NAT: raw ESP");
    assert_eq!(a_in.replay_window, 64);
    assert!(!a_in.esn);
    assert_eq!(
        p.events(Side::A),
        vec![
            Event::IkeUp { peer: "site-b".into() },
            Event::ChildUp { peer: "site-b".into(), spi_in: a_in.spi, spi_out: a_out.spi }
        ]
    );
    // The responder installs before its IKE_AUTH response leaves.
    let log = p.log(Side::B);
    let pos = |f: &dyn Fn(&Output) -> bool| log.iter().position(f).unwrap();
    let inbound = pos(&|o| matches!(o, Output::Datapath(DatapathCommand::InstallInbound(_))));
    let last_tx = log.iter().rposition(|o| matches!(o, Output::Transmit(_))).unwrap();
    assert!(inbound < last_tx);
    let st = p.a.status();
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].state, "ESTABLISHED");
    assert!(st[0].initiator);
    assert_eq!(st[0].children.len(), 1);
    assert_eq!(st[0].children[0].spi_in, a_in.spi);
    assert!(!st[0].nat_detected);
    let sb = p.b.status();
    assert_eq!((sb[0].spi_i, sb[0].spi_r), (st[0].spi_i, st[0].spi_r));
    assert!(!sb[0].initiator);
    assert_eq!(
        p.a.poll_timeout(),
        Some(ipsec_types::Timestamp::from_secs(3600)),
        "nothing outstanding; the CHILD SA rekey is the next timer"
    );
    assert_eq!(st[0].next_rekey, Some(ipsec_types::Timestamp::from_secs(4 * 3600)));
    assert_eq!(st[0].children[0].next_rekey, Some(ipsec_types::Timestamp::from_secs(3600)));
    assert_eq!(st[0].children[0].expires_at, Some(ipsec_types::Timestamp::from_secs(3960)));
}

#[test]
fn handshake_with_b_as_initiator_and_ipv6_identities() {
    init_logs();
    let mut a = peer_config("site-b", "2001:db8::1", "2001:db8::2", true, false);
    let mut b = peer_config("site-a", "2001:db8::2", "2001:db8::1", false, true);
    a.local_id = ipsec_types::Identity::parse("2001:db8::1").unwrap();
    b.remote_id = a.local_id.clone();
    a.remote_id = ipsec_types::Identity::parse("ops@b.example").unwrap();
    b.local_id = a.remote_id.clone();
    let mut p = Pair::new(a, b);
    p.run();
    let (a_in, _, _, _) = assert_keys_cross_match(&p);
    assert!(a_in.endpoints.local.is_ipv6());
    assert!(!p.a.status()[0].initiator);
    assert!(p.b.status()[0].initiator);
}

#[test]
fn invalid_ke_payload_makes_the_initiator_retry_with_the_wanted_group() {
    init_logs();
    let mut a = peer_config("site-b", "192.0.2.1", "192.0.2.2", true, true);
    a.ike_proposals = vec![ipsec_types::IkeProposal::parse("aes256gcm16-prfsha256-ecp256-x25519").unwrap()];
    let b = peer_config("site-a", "192.0.2.2", "192.0.2.1", false, false);
    let mut p = Pair::new(a, b);
    p.run();
    assert_keys_cross_match(&p);
    let tx = p.transmits(Side::A);
    assert_eq!(tx.len(), 3, "IKE_SA_INIT (ecp256), IKE_SA_INIT (x25519), IKE_AUTH");
    assert_eq!(tx[0].data[..8], tx[1].data[..8], "same SPIi on the retry");
    assert_eq!(p.a.status()[0].dh, Some(ipsec_types::DhGroup::Curve25519));
    assert_eq!(p.b.status().len(), 1, "no state kept for the refused attempt");
}

#[test]
fn no_proposal_chosen_fails_both_sides_and_retries_slowly() {
    init_logs();
    let mut a = peer_config("site-b", "192.0.2.1", "192.0.2.2", true, true);
    a.ike_proposals = vec![ipsec_types::IkeProposal::parse("aes128gcm16-prfsha384-x25519").unwrap()];
    let b = peer_config("site-a", "192.0.2.2", "192.0.2.1", false, false);
    let mut p = Pair::new(a, b);
    p.run();
    // The NO_PROPOSAL_CHOSEN answer is unprotected: A waits 2 s for a valid response
    // (RFC 7296 2.21.1) before it gives up, without retransmitting meanwhile.
    assert!(p.events(Side::A).is_empty() && !p.a.is_idle());
    assert_eq!(p.a.poll_timeout(), Some(ipsec_types::Timestamp::from_secs(2)));
    p.advance(Duration::from_secs(2));
    assert!(p.a.is_idle() && p.b.is_idle());
    assert!(p.datapath(Side::A).is_empty() && p.datapath(Side::B).is_empty());
    assert!(matches!(&p.events(Side::A)[..], [Event::IkeDown { .. }]));
    assert_eq!(p.a.poll_timeout(), Some(ipsec_types::Timestamp::from_secs(62)));
    p.advance(Duration::from_secs(59));
    assert_eq!(p.transmits(Side::A).len(), 1, "no hammering");
    p.advance(Duration::from_secs(1));
    assert_eq!(p.transmits(Side::A).len(), 2, "retried after 60 s");
}

#[test]
fn wrong_psk_is_authentication_failed_and_nothing_installed() {
    init_logs();
    let a = peer_config("site-b", "192.0.2.1", "192.0.2.2", true, true);
    let mut b = peer_config("site-a", "192.0.2.2", "192.0.2.1", false, false);
    b.psk = zeroize::Zeroizing::new(b"another".to_vec());
    let mut p = Pair::new(a, b);
    p.run();
    assert!(p.a.is_idle(), "initiator dropped the IKE SA");
    assert!(p.b.is_idle(), "responder deleted the half-open SA");
    assert!(p.datapath(Side::A).is_empty() && p.datapath(Side::B).is_empty());
    assert!(matches!(&p.events(Side::A)[..], [Event::IkeDown { .. }]));
    assert!(p.events(Side::B).is_empty());
    p.advance(Duration::from_secs(30));
    assert_eq!(p.transmits(Side::A).len(), 2, "no immediate re-initiation");
    assert_eq!(p.a.poll_timeout(), Some(ipsec_types::Timestamp::from_secs(60)));
}

#[test]
fn unexpected_identity_is_authentication_failed() {
    init_logs();
    let mut a = peer_config("site-b", "192.0.2.1", "192.0.2.2", true, true);
    a.local_id = ipsec_types::Identity::Fqdn("mallory.test".into());
    let b = peer_config("site-a", "192.0.2.2", "192.0.2.1", false, false);
    let mut p = Pair::new(a, b);
    p.run();
    assert!(p.a.is_idle() && p.b.is_idle());
    assert!(p.datapath(Side::B).is_empty());
}

#[test]
fn responder_narrows_traffic_selectors() {
    init_logs();
    let mut a = peer_config("site-b", "192.0.2.1", "192.0.2.2", true, true);
    a.local_ts = vec![ipsec_types::TrafficSelector::parse_cidr("10.1.0.0/16").unwrap()];
    let b = peer_config("site-a", "192.0.2.2", "192.0.2.1", false, false);
    let mut p = Pair::new(a, b);
    p.run();
    let (a_in, a_out, b_in, _) = assert_keys_cross_match(&p);
    assert_eq!(a_out.local_ts.iter().map(ToString::to_string).collect::<Vec<_>>(), ["10.1.0.0/24"]);
    assert_eq!(a_in.local_ts, a_out.local_ts);
    assert_eq!(b_in.remote_ts.iter().map(ToString::to_string).collect::<Vec<_>>(), ["10.1.0.0/24"]);
}

#[test]
fn ts_unacceptable_keeps_the_ike_sa_without_child() {
    init_logs();
    let a = peer_config("site-b", "192.0.2.1", "192.0.2.2", true, true);
    let mut b = peer_config("site-a", "192.0.2.2", "192.0.2.1", false, false);
    b.remote_ts = vec![ipsec_types::TrafficSelector::parse_cidr("10.9.0.0/24").unwrap()];
    let mut p = Pair::new(a, b);
    p.run();
    assert!(p.datapath(Side::A).is_empty() && p.datapath(Side::B).is_empty());
    assert_eq!(p.a.status()[0].state, "ESTABLISHED");
    assert_eq!(p.b.status()[0].state, "ESTABLISHED");
    assert!(p.a.status()[0].children.is_empty());
    assert_eq!(p.events(Side::A), vec![Event::IkeUp { peer: "site-b".into() }]);
}

#[test]
fn esp_proposal_mismatch_keeps_the_ike_sa_without_child() {
    init_logs();
    let a = peer_config("site-b", "192.0.2.1", "192.0.2.2", true, true);
    let mut b = peer_config("site-a", "192.0.2.2", "192.0.2.1", false, false);
    b.esp_proposals = vec![ipsec_types::EspProposal::parse("aes128gcm16").unwrap()];
    let mut p = Pair::new(a, b);
    p.run();
    assert!(p.datapath(Side::A).is_empty() && p.datapath(Side::B).is_empty());
    assert_eq!(p.a.status()[0].state, "ESTABLISHED");
    assert!(p.b.status()[0].children.is_empty());
}

#[test]
fn forced_encapsulation_floats_to_4500_and_encapsulates_esp() {
    init_logs();
    let mut a = peer_config("site-b", "192.0.2.1", "192.0.2.2", true, true);
    a.force_encap = true;
    let b = peer_config("site-a", "192.0.2.2", "192.0.2.1", false, false);
    let mut p = Pair::new(a, b);
    p.run();
    let (a_in, a_out, b_in, b_out) = assert_keys_cross_match(&p);
    let enc = Some(ipsec_types::UdpEncap { local_port: 4500, remote_port: 4500 });
    for sa in [&a_in, &a_out, &b_in, &b_out] {
        assert_eq!(sa.endpoints.encap, enc);
    }
    let ta = p.transmits(Side::A);
    assert_eq!((ta[0].local.port(), ta[0].remote.port()), (500, 500));
    assert_eq!((ta[1].local.port(), ta[1].remote.port()), (4500, 4500), "IKE_AUTH floated");
    let tb = p.transmits(Side::B);
    assert_eq!((tb[1].local.port(), tb[1].remote.port()), (4500, 4500), "answered on the socket it came in");
    assert!(p.a.status()[0].nat_detected && p.b.status()[0].nat_detected, "the peer saw the faked NAT");
    assert_eq!(p.b.status()[0].remote.port(), 4500);
}

#[test]
fn lost_response_is_retransmitted_and_answered_from_cache() {
    init_logs();
    let mut p = Pair::standard();
    p.a.handle_timeout(p.now);
    assert!(p.deliver_next()); // IKE_SA_INIT -> B
    assert!(p.deliver_next()); // response -> A, which sends IKE_AUTH
    assert!(p.deliver_next()); // IKE_AUTH -> B
    let lost = p.drop_next().expect("IKE_AUTH response");
    assert_eq!(p.datapath(Side::B).len(), 2);
    assert!(p.datapath(Side::A).is_empty());
    p.advance(Duration::from_millis(999));
    assert_eq!(p.transmits(Side::A).len(), 2, "no retransmit before 1 s");
    p.advance(Duration::from_millis(1));
    let tb = p.transmits(Side::B);
    assert_eq!(tb.last().unwrap().data, lost.data, "duplicate answered with the cached response");
    assert_eq!(p.datapath(Side::B).len(), 2, "responder did not process the request twice");
    assert_keys_cross_match(&p);
}

#[test]
fn unanswered_requests_fail_after_five_retransmits() {
    init_logs();
    let mut p = Pair::standard();
    p.a.handle_timeout(p.now);
    p.drain();
    let mut sent = 0;
    let mut t = 0;
    while let Some(deadline) = p.a.poll_timeout() {
        p.in_flight.clear();
        t += 1;
        assert!(t < 20);
        p.now = deadline;
        p.a.handle_timeout(p.now);
        p.drain();
        sent = p.transmits(Side::A).len();
        if p.a.is_idle() {
            break;
        }
    }
    assert_eq!(sent, 6, "initial + 5 retransmits");
    assert_eq!(p.now, ipsec_types::Timestamp::from_secs(63));
    assert!(matches!(&p.events(Side::A)[..], [Event::IkeDown { .. }]));
    assert_eq!(p.a.poll_timeout(), Some(ipsec_types::Timestamp::from_secs(73)), "retry after 10 s");
}

#[test]
fn terminate_all_deletes_and_tears_down_both_sides() {
    init_logs();
    let mut p = Pair::standard();
    p.run();
    let (a_in, a_out, b_in, b_out) = assert_keys_cross_match(&p);
    p.a.handle_command(p.now, Command::TerminateAll);
    p.drain();
    let a_cmds = p.datapath(Side::A);
    assert!(matches!(&a_cmds[2..], [
        DatapathCommand::Remove { spi: s1, direction: Direction::Outbound, .. },
        DatapathCommand::Remove { spi: s2, direction: Direction::Inbound, .. },
    ] if *s1 == a_out.spi && *s2 == a_in.spi));
    assert!(!p.a.is_idle(), "waits for the DELETE response");
    p.run();
    assert!(p.a.is_idle() && p.b.is_idle());
    let b_cmds = p.datapath(Side::B);
    assert!(matches!(&b_cmds[2..], [
        DatapathCommand::Remove { spi: s1, direction: Direction::Outbound, .. },
        DatapathCommand::Remove { spi: s2, direction: Direction::Inbound, .. },
    ] if *s1 == b_out.spi && *s2 == b_in.spi));
    assert!(matches!(p.events(Side::B).last(), Some(Event::IkeDown { .. })));
    assert!(p.events(Side::A).contains(&Event::ChildDown { peer: "site-b".into(), spi_in: a_in.spi }));
    assert_eq!(p.a.poll_timeout(), None, "no re-initiation after shutdown");
}

#[test]
fn terminate_does_not_wait_longer_than_one_timeout_for_the_delete_response() {
    init_logs();
    let mut p = Pair::standard();
    p.run();
    p.a.handle_command(p.now, Command::Terminate { peer: "site-b".into() });
    p.drop_next();
    assert!(!p.a.is_idle());
    p.advance(Duration::from_secs(1));
    assert!(p.a.is_idle());
    assert_eq!(p.a.poll_timeout(), None);
}

#[test]
fn hard_expiry_deletes_the_child_sa_on_both_sides_and_the_initiator_creates_a_new_one() {
    init_logs();
    let mut p = Pair::standard();
    p.run();
    let (a_in, _, b_in, _) = assert_keys_cross_match(&p);
    p.a.handle_datapath_event(
        p.now,
        ipsec_types::DatapathEvent::Expired {
            tunnel: "site-b".into(),
            spi: a_in.spi,
            direction: Direction::Inbound,
            hard: true,
            reason: ipsec_types::ExpiryReason::Packets,
        },
    );
    p.run();
    let b_cmds = p.datapath(Side::B);
    assert!(
        matches!(&b_cmds[2..], [
            DatapathCommand::Remove { .. },
            DatapathCommand::Remove { spi, .. },
            DatapathCommand::InstallInbound(_),
            DatapathCommand::InstallOutbound(_),
        ] if *spi == b_in.spi),
        "{b_cmds:?}"
    );
    assert!(p.events(Side::B).contains(&Event::ChildDown { peer: "site-a".into(), spi_in: b_in.spi }));
    assert_eq!(p.a.status()[0].state, "ESTABLISHED", "IKE SA stays");
    assert_eq!(p.b.status()[0].children.len(), 1, "a new CHILD SA from scratch");
    assert_ne!(p.b.status()[0].children[0].spi_in, b_in.spi);
    // As responder, B does not recreate CHILD SAs it deletes itself.
    let spi = p.b.status()[0].children[0].spi_in;
    let ev = ipsec_types::DatapathEvent::Expired {
        tunnel: "site-a".into(),
        spi,
        direction: Direction::Inbound,
        hard: true,
        reason: ipsec_types::ExpiryReason::Bytes,
    };
    p.b.handle_datapath_event(p.now, ev);
    p.run();
    assert_eq!(p.b.status()[0].children.len(), 1, "A, the IKE initiator, creates it again");
    assert_eq!(p.a.status()[0].children.len(), 1);
    let _ = Spi(0);
}

#[test]
fn garbage_datagrams_change_nothing() {
    init_logs();
    let mut p = Pair::standard();
    p.run();
    let before_b = p.log_b.len();
    let mut rng = ike::testing::TestRng::new(99);
    let st = p.b.status();
    let from = "192.0.2.1:500".parse().unwrap();
    let to = "192.0.2.2:500".parse().unwrap();
    for len in 0..600usize {
        let mut buf = vec![0u8; len % 300];
        ike::Rng::fill(&mut rng, &mut buf);
        if len % 3 == 0 && buf.len() >= 28 {
            // Valid-looking header for the established SA, garbage inside.
            buf[..8].copy_from_slice(&st[0].spi_i.to_be_bytes());
            buf[8..16].copy_from_slice(&st[0].spi_r.to_be_bytes());
            buf[16] = 46;
            buf[17] = 0x20;
            buf[18] = 37;
            buf[19] = 0x08;
            let l = (buf.len() as u32).to_be_bytes();
            buf[24..28].copy_from_slice(&l);
        }
        p.b.handle_datagram(p.now, to, from, &buf);
    }
    p.drain();
    assert_eq!(p.log_b.len(), before_b, "no output");
    assert_eq!(p.b.status().len(), 1);
    assert_eq!(p.b.status()[0].children.len(), 1);
}

#[test]
fn initiator_rejecting_the_responder_tells_it_and_both_tear_down() {
    init_logs();
    let a = peer_config("site-b", "192.0.2.1", "192.0.2.2", true, true);
    let mut b = peer_config("site-a", "192.0.2.2", "192.0.2.1", false, false);
    b.local_id = ipsec_types::Identity::Fqdn("impostor.test".into());
    let mut p = Pair::new(a, b);
    p.run();
    assert!(p.a.is_idle() && p.b.is_idle());
    assert!(p.datapath(Side::A).is_empty());
    let b_cmds = p.datapath(Side::B);
    assert_eq!(b_cmds.len(), 4, "B installed, then removed after our AUTHENTICATION_FAILED: {b_cmds:?}");
    assert!(matches!(&b_cmds[2..], [DatapathCommand::Remove { .. }, DatapathCommand::Remove { .. }]));
    assert_eq!(p.a.poll_timeout(), Some(ipsec_types::Timestamp::from_secs(60)));
}

#[test]
fn wildcard_local_address_is_replaced_by_the_configured_one() {
    init_logs();
    let mut p = Pair::standard();
    p.a.handle_timeout(p.now);
    p.drain();
    let (_, t) = p.in_flight.pop_front().unwrap();
    p.b.handle_datagram(p.now, "0.0.0.0:500".parse().unwrap(), t.local, &t.data);
    p.drain();
    let tb = p.transmits(Side::B);
    assert_eq!(tb[0].local, "192.0.2.2:500".parse().unwrap());
    p.run();
    assert_keys_cross_match(&p);
    assert!(!p.a.status()[0].nat_detected);
}

#[test]
fn half_open_responder_sa_expires_after_30_s() {
    init_logs();
    let mut p = Pair::standard();
    p.a.handle_timeout(p.now);
    assert!(p.deliver_next()); // IKE_SA_INIT -> B
    assert_eq!(p.b.status()[0].state, "AUTHENTICATING");
    p.drop_next(); // B's response is lost, A keeps retransmitting; drop all of them.
    for _ in 0..29 {
        p.now = p.now + Duration::from_secs(1);
        p.b.handle_timeout(p.now);
    }
    assert_eq!(p.b.status().len(), 1);
    p.now = p.now + Duration::from_secs(1);
    p.b.handle_timeout(p.now);
    assert!(p.b.is_idle());
    p.drain();
    assert!(p.events(Side::B).is_empty(), "a half-open SA going away is not an IkeDown");
}

#[test]
fn restarted_peer_with_initial_contact_replaces_the_stale_ike_sa() {
    init_logs();
    let mut p = Pair::standard();
    p.run();
    let (_, _, b_in, b_out) = assert_keys_cross_match(&p);
    // A restarts: all its state is gone, it initiates again with INITIAL_CONTACT.
    p.restart(Side::A, peer_config("site-b", "192.0.2.1", "192.0.2.2", true, true), 42);
    p.run();
    assert_eq!(p.b.status().len(), 1, "the stale IKE SA is gone");
    let b_cmds = p.datapath(Side::B);
    assert!(
        matches!(&b_cmds[2..6], [
        DatapathCommand::InstallInbound(_),
        DatapathCommand::InstallOutbound(_),
        DatapathCommand::Remove { spi: o, direction: Direction::Outbound, .. },
        DatapathCommand::Remove { spi: i, direction: Direction::Inbound, .. },
    ] if *o == b_out.spi && *i == b_in.spi),
        "{b_cmds:?}"
    );
}

#[test]
fn simultaneous_initiation_leaves_both_sides_with_working_sas() {
    init_logs();
    let a = peer_config("site-b", "192.0.2.1", "192.0.2.2", true, true);
    let b = peer_config("site-a", "192.0.2.2", "192.0.2.1", false, true);
    let mut p = Pair::new(a, b);
    p.run();
    assert_eq!(p.a.status().len(), 2);
    assert_eq!(p.b.status().len(), 2);
    let spis = |side, inbound: bool| -> Vec<Spi> {
        p.datapath(side)
            .iter()
            .filter_map(|c| match c {
                DatapathCommand::InstallInbound(s) if inbound => Some(s.spi),
                DatapathCommand::InstallOutbound(s) if !inbound => Some(s.spi),
                _ => None,
            })
            .collect()
    };
    let (a_in, a_out, b_in, b_out) =
        (spis(Side::A, true), spis(Side::A, false), spis(Side::B, true), spis(Side::B, false));
    assert_eq!(a_in.len(), 2);
    assert!(a_out.iter().all(|s| b_in.contains(s)) && b_out.iter().all(|s| a_in.contains(s)));
    assert!(p.datapath(Side::A).iter().all(|c| !matches!(c, DatapathCommand::Remove { .. })));
}

#[test]
fn losing_the_outbound_sa_in_use_puts_a_duplicate_back_in_the_seal_path() {
    init_logs();
    let a = peer_config("site-b", "192.0.2.1", "192.0.2.2", true, true);
    let b = peer_config("site-a", "192.0.2.2", "192.0.2.1", false, true);
    let mut p = Pair::new(a, b);
    p.run();
    assert_eq!(p.a.status().len(), 2, "duplicate IKE SAs, one CHILD SA each");
    let outs: Vec<Spi> = p
        .datapath(Side::A)
        .iter()
        .filter_map(|c| if let DatapathCommand::InstallOutbound(s) = c { Some(s.spi) } else { None })
        .collect();
    let (other, active) = (outs[0], outs[1]);
    let n = p.datapath(Side::A).len();
    // The CHILD SA A seals with is deleted by B (its peer): A seals with the other one.
    let ev = ipsec_types::DatapathEvent::Expired {
        tunnel: "site-a".into(),
        spi: active,
        direction: Direction::Inbound,
        hard: true,
        reason: ipsec_types::ExpiryReason::Bytes,
    };
    p.b.handle_datapath_event(p.now, ev);
    p.deliver_to(Side::A);
    let after = p.datapath(Side::A)[n..].to_vec();
    assert!(
        matches!(&after[..], [
            DatapathCommand::Remove { spi: r, direction: Direction::Outbound, .. },
            DatapathCommand::InstallOutbound(o),
            DatapathCommand::Remove { direction: Direction::Inbound, .. },
        ] if *r == active && o.spi == other),
        "{after:?}"
    );
}

#[test]
fn esn_negotiated_when_both_sides_offer_it_survives_a_rekey() {
    init_logs();
    let mut a = peer_config("site-b", "192.0.2.1", "192.0.2.2", true, true);
    let mut b = peer_config("site-a", "192.0.2.2", "192.0.2.1", false, false);
    for c in [&mut a, &mut b] {
        c.esp_proposals = vec![ipsec_types::EspProposal::parse("aes256gcm16-x25519-esn").unwrap()];
    }
    let mut p = Pair::new(a, b);
    p.run();
    let (a_in, a_out, b_in, b_out) = assert_keys_cross_match(&p);
    assert!(a_in.esn && a_out.esn && b_in.esn && b_out.esn);
    p.command(Side::A, Command::Rekey { peer: "site-b".into(), ike: false });
    p.run();
    // B moves outbound when A deletes the old SA, shortly after the rekey.
    p.advance(Duration::from_secs(1));
    let rekeyed = p.datapath(Side::B);
    let esn: Vec<bool> = rekeyed
        .iter()
        .filter_map(|c| match c {
            DatapathCommand::InstallInbound(s) | DatapathCommand::InstallOutbound(s) => Some(s.esn),
            _ => None,
        })
        .collect();
    assert_eq!(esn, vec![true; 4], "first CHILD SA and its rekeyed successor, both directions");
}
