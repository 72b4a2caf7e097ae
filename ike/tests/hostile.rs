//! What an attacker who does not know the PSK can do to an endpoint: spoofed
//! IKE_SA_INIT floods (from the peer's address and from anywhere), forged unprotected
//! answers, garbage; and what an authenticated peer may not do (unlimited CHILD SAs).
//! Each test makes the attack happen in memory and checks the bound or the outcome.

use ike::testing::{peer_config, Pair, Side};
use ike::{Command, Event, Limits, Output, Transmit};
use ipsec_types::{DatapathCommand, Timestamp};
use std::net::SocketAddr;
use std::time::Duration;

fn init_logs() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("ike=debug").try_init();
}

const A: &str = "192.0.2.1";
const B: &str = "192.0.2.2";

fn addr(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

/// A real IKE_SA_INIT request as A would send it (from a separate endpoint with A's
/// configuration), to be replayed with other SPIs by the attacker.
fn init_template(seed: u64) -> Vec<u8> {
    let mut p = Pair::with_seeds(
        peer_config("site-b", A, B, true, true),
        peer_config("site-a", B, A, false, false),
        seed,
        seed + 1,
    );
    p.tick(Timestamp::ZERO);
    p.take_to(Side::B).expect("A sends IKE_SA_INIT").data
}

/// `template` with initiator SPI `spi`.
fn with_spi(template: &[u8], spi: u64) -> Vec<u8> {
    let mut d = template.to_vec();
    d[..8].copy_from_slice(&spi.to_be_bytes());
    d
}

/// Feeds `data` to `side` as coming from `from` and returns what it sent back.
fn hit(p: &mut Pair, side: Side, from: SocketAddr, data: &[u8]) -> Vec<Transmit> {
    let now = p.now;
    let local = addr(if side == Side::A { A } else { B }, 500);
    let ep = p.ep(side);
    ep.handle_datagram(now, local, from, data);
    let mut sent = Vec::new();
    while let Some(o) = ep.poll_output() {
        if let Output::Transmit(t) = o {
            sent.push(t);
        }
    }
    sent
}

/// The notify types (16390 = COOKIE) of an unencrypted answer.
fn notify_types(data: &[u8]) -> Vec<u16> {
    // Header 28 bytes, then payloads; only plain Notify chains are answered statelessly.
    let mut out = Vec::new();
    let mut next = data.get(16).copied().unwrap_or(0);
    let mut off = 28;
    while next != 0 {
        let Some(h) = data.get(off..off + 8) else { break };
        let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        if next == 41 {
            out.push(u16::from_be_bytes([h[6], h[7]]));
        }
        next = h[0];
        off += len.max(4);
    }
    out
}

#[test]
fn spoofed_init_flood_from_the_peers_address_is_bounded_and_the_peer_still_gets_in() {
    init_logs();
    let mut p = Pair::standard();
    let template = init_template(77);
    let limits = Limits::default();
    let mut cookies = 0;
    for i in 0..20_000u64 {
        let sent = hit(&mut p, Side::B, addr(A, 500), &with_spi(&template, 0x1000 + i));
        cookies += sent.iter().filter(|t| notify_types(&t.data) == [16390]).count();
        assert!(p.b.half_open() <= limits.half_open_per_source, "half-open bounded per source");
    }
    let d = p.b.drops();
    assert_eq!(p.b.half_open(), limits.half_open_per_source);
    assert_eq!(p.b.ike_sa_count(), limits.half_open_per_source, "the rest cost a COOKIE each, no state");
    assert_eq!(cookies as u64, 20_000 - limits.half_open_per_source as u64);
    assert_eq!(d.cookies_sent, cookies as u64);
    // The real peer now initiates: it is asked for a COOKIE, comes back with it, and the
    // proved request evicts one unproved half-open SA.
    p.run();
    let st = p.a.status();
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].state, "ESTABLISHED");
    assert_eq!(st[0].children.len(), 1);
    assert_eq!(p.b.half_open(), limits.half_open_per_source - 1);
    // The spoofed half-open SAs time out (30 s); the tunnel stays.
    p.advance(Duration::from_secs(31));
    assert_eq!(p.b.half_open(), 0);
    assert_eq!(p.b.status().len(), 1);
}

#[test]
fn init_from_an_address_without_tunnel_costs_nothing_and_garbage_is_counted() {
    init_logs();
    let mut p = Pair::standard();
    let template = init_template(5);
    for i in 0..1000u64 {
        let src = addr(&format!("198.51.100.{}", i % 250 + 1), 500);
        assert!(hit(&mut p, Side::B, src, &with_spi(&template, i + 1)).is_empty());
    }
    assert_eq!(p.b.ike_sa_count(), 0);
    assert_eq!(p.b.drops().unknown_spi, 1000);
    for junk in [&b""[..], &[0u8; 27][..], &template[..40], &[0xffu8; 1400][..]] {
        assert!(hit(&mut p, Side::B, addr(A, 500), junk).is_empty());
    }
    assert_eq!(p.b.drops().malformed, 4);
    assert_eq!(p.b.ike_sa_count(), 0);
}

#[test]
fn global_half_open_cap_holds_across_many_peers() {
    init_logs();
    // B has 50 tunnels; the attacker spoofs IKE_SA_INITs from all 50 peer addresses.
    let mut peers = Vec::new();
    for i in 0..50 {
        let mut c = peer_config(&format!("t{i}"), B, &format!("203.0.113.{}", i + 1), false, false);
        c.remote_ts = vec![ipsec_types::TrafficSelector::parse_cidr(&format!("10.9.{i}.0/24")).unwrap()];
        peers.push(c);
    }
    let mut b = ike::Endpoint::new(
        ike::EndpointConfig {
            ike_port: 500,
            natt_port: 4500,
            peers,
            limits: Limits { cookie_threshold: 10, half_open_max: 20, ..Limits::default() },
        },
        Box::new(ike::testing::TestRng::new(3)),
    );
    let template = init_template(9);
    let mut answered = 0;
    for i in 0..5000u64 {
        let src = addr(&format!("203.0.113.{}", i % 50 + 1), 500);
        b.handle_datagram(Timestamp::from_secs(1), addr(B, 500), src, &with_spi(&template, i + 1));
        while let Some(o) = b.poll_output() {
            answered += usize::from(matches!(o, Output::Transmit(_)));
        }
        assert!(b.half_open() <= 10);
    }
    assert_eq!(b.half_open(), 10, "COOKIEs from the threshold on");
    assert_eq!(b.drops().cookies_sent, 4990);
    assert_eq!(answered, 5000);
}

#[test]
fn a_spoofed_half_open_sa_never_blocks_our_initiation() {
    init_logs();
    let mut a_cfg = peer_config("site-b", A, B, true, true);
    a_cfg.dpd.delay = Some(Duration::from_secs(5));
    a_cfg.dpd.timeout = Duration::from_secs(10);
    let mut p = Pair::new(a_cfg, peer_config("site-a", B, A, false, false));
    p.run();
    assert_eq!(p.a.status()[0].state, "ESTABLISHED");
    // B goes silent; A's liveness checks go unanswered. Every 5 s the attacker sends A
    // an IKE_SA_INIT "from B", so A always holds a half-open responder SA for B.
    let a_template = {
        // A request as B would send it: B's configuration initiating towards A.
        let mut q = Pair::with_seeds(
            peer_config("site-a", B, A, false, true),
            peer_config("site-b", A, B, true, false),
            11,
            12,
        );
        q.tick(Timestamp::ZERO);
        q.take_to(Side::B).expect("request").data
    };
    let before = p.transmits(Side::A).len();
    for sec in 0..60u64 {
        if sec % 5 == 0 {
            hit(&mut p, Side::A, addr(B, 500), &with_spi(&a_template, 0x5000 + sec));
        }
        let t = p.now + Duration::from_secs(1);
        p.tick(t);
        // Nothing A sends reaches B.
        while p.take_to(Side::A).is_some() || p.take_to(Side::B).is_some() {}
    }
    assert!(p.a.half_open() >= 1, "a half-open SA for B exists");
    // A declared B dead and initiated again, despite the half-open SA for the same peer.
    let events = p.events(Side::A);
    assert!(events.iter().any(|e| matches!(e, Event::IkeDown { .. })), "{events:?}");
    let inits = p.transmits(Side::A)[before..]
        .iter()
        .filter(|t| t.data.get(18) == Some(&34) && t.data.get(19) == Some(&0x08))
        .count();
    assert!(inits >= 1, "A sent a new IKE_SA_INIT request after the dead peer detection");
    // B answers again: the tunnel comes back (within the retry delay).
    for _ in 0..40 {
        p.advance(Duration::from_secs(1));
    }
    assert!(p.a.status().iter().any(|s| s.state == "ESTABLISHED" && s.initiator));
}

/// An unprotected IKE_SA_INIT response with only NO_PROPOSAL_CHOSEN, for `request`'s SPI.
fn forged_no_proposal_chosen(request: &[u8]) -> Vec<u8> {
    let mut forged = request[..8].to_vec();
    forged.extend_from_slice(&[0; 8]);
    forged.extend_from_slice(&[41, 0x20, 34, 0x20, 0, 0, 0, 0, 0, 0, 0, 36]);
    forged.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 14]);
    forged
}

#[test]
fn a_forged_error_answer_does_not_end_the_attempt() {
    init_logs();
    let mut p = Pair::standard();
    p.tick(Timestamp::ZERO);
    let request = p.take_to(Side::B).expect("IKE_SA_INIT");
    // The attacker saw the request and answers first with NO_PROPOSAL_CHOSEN.
    let forged = forged_no_proposal_chosen(&request.data);
    assert!(hit(&mut p, Side::A, addr(B, 500), &forged).is_empty());
    assert!(p.events(Side::A).is_empty());
    // The real answer arrives 1.5 s later, within the 2 s wait.
    p.advance(Duration::from_millis(1500));
    p.inject(Side::B, &request);
    p.run();
    assert_eq!(p.a.status()[0].state, "ESTABLISHED");
    assert!(!p.events(Side::A).iter().any(|e| matches!(e, Event::IkeDown { .. })));
}

#[test]
fn a_forged_error_is_acted_on_when_no_valid_answer_comes() {
    init_logs();
    let mut p = Pair::standard();
    p.tick(Timestamp::ZERO);
    let request = p.take_to(Side::B).expect("IKE_SA_INIT");
    let forged = forged_no_proposal_chosen(&request.data);
    hit(&mut p, Side::A, addr(B, 500), &forged);
    // Malformed answers (no SA/KE/nonce) are ignored, and so are further errors.
    let mut empty = forged.clone();
    empty[16] = 0;
    empty[24..28].copy_from_slice(&28u32.to_be_bytes());
    empty.truncate(28);
    hit(&mut p, Side::A, addr(B, 500), &empty);
    p.advance(Duration::from_secs(2));
    assert!(p.events(Side::A).iter().any(|e| matches!(e, Event::IkeDown { .. })));
    assert!(p.a.is_idle());
}

#[test]
fn child_sa_cap_refuses_the_excess_with_no_additional_sas() {
    init_logs();
    let mut p = Pair::standard();
    p.b.set_limits(Limits { child_sa_max: 1, ..Limits::default() });
    p.run();
    let spi = p.b.status()[0].children[0].spi_in;
    // A rekeys: the rekey would be a second CHILD SA on B.
    p.command(Side::A, Command::Rekey { peer: "site-b".into(), ike: false });
    p.run();
    assert_eq!(p.b.drops().child_sa_cap, 1);
    let st = p.b.status();
    assert_eq!(st[0].children.len(), 1);
    assert_eq!(st[0].children[0].spi_in, spi, "the CHILD SA in use is kept");
    assert_eq!(st[0].state, "ESTABLISHED");
}

#[test]
fn unknown_spi_answers_are_rate_limited_per_peer() {
    init_logs();
    let mut p = Pair::standard();
    p.run();
    // Encrypted-looking requests for an IKE SA B does not know, from A's address.
    let mut req = vec![0x11; 8];
    req.extend_from_slice(&[0x22; 8]);
    req.extend_from_slice(&[46, 0x20, 37, 0x08, 0, 0, 0, 5, 0, 0, 0, 60]);
    req.extend_from_slice(&[0, 0, 0, 32]);
    req.extend_from_slice(&[0u8; 28]);
    let answers: usize = (0..100).map(|_| hit(&mut p, Side::B, addr(A, 500), &req).len()).sum();
    assert_eq!(answers, 1, "one INVALID_IKE_SPI a second");
    let d = p.b.drops();
    assert_eq!(d.unknown_spi, 100);
    assert_eq!(d.rate_limited, 99);
    assert_eq!(p.b.status()[0].state, "ESTABLISHED");
}

#[test]
fn datapath_commands_never_reuse_an_inbound_spi() {
    // Every inbound SPI installed over many rekeys is distinct from those still installed.
    init_logs();
    let mut p = Pair::standard();
    p.run();
    for _ in 0..50 {
        p.command(Side::A, Command::Rekey { peer: "site-b".into(), ike: false });
        p.run();
        p.advance(Duration::from_secs(10));
    }
    let mut live = std::collections::HashSet::new();
    for c in p.datapath(Side::A) {
        match c {
            DatapathCommand::InstallInbound(s) => assert!(live.insert(s.spi), "inbound SPI {} installed twice", s.spi),
            DatapathCommand::Remove { spi, direction: ipsec_types::Direction::Inbound, .. } => {
                live.remove(&spi);
            }
            _ => {}
        }
    }
}

#[test]
fn a_spoofed_init_does_not_take_initial_contact_away_from_our_attempt() {
    init_logs();
    let mut p = Pair::standard();
    p.run();
    assert_eq!(p.b.status().len(), 1);
    // A restarts and initiates again; B still holds the old IKE SA.
    p.restart(Side::A, peer_config("site-b", A, B, true, true), 99);
    let t = p.now + Duration::from_secs(1);
    p.tick(t);
    // Before B answers, the attacker sends A an IKE_SA_INIT "from B".
    let spoofed = {
        let mut q = Pair::with_seeds(
            peer_config("site-a", B, A, false, true),
            peer_config("site-b", A, B, true, false),
            21,
            22,
        );
        q.tick(Timestamp::ZERO);
        q.take_to(Side::B).expect("request").data
    };
    hit(&mut p, Side::A, addr(B, 500), &spoofed);
    assert_eq!(p.a.half_open(), 1);
    p.run();
    // A's IKE_AUTH still carried INITIAL_CONTACT: B dropped the IKE SA of A's past life.
    let st = p.b.status();
    assert_eq!(st.len(), 1, "{st:?}");
    assert_eq!(st[0].state, "ESTABLISHED");
    assert!(p.a.status().iter().any(|s| s.initiator && s.state == "ESTABLISHED"));
}

#[test]
fn spoofed_half_open_sas_do_not_count_against_the_peers_ike_sa_cap() {
    init_logs();
    let mut p = Pair::standard();
    p.run();
    let old = (p.b.status()[0].spi_i, p.b.status()[0].spi_r);
    // The attacker fills B's half-open slots for A's address...
    let template = init_template(31);
    for i in 0..20u64 {
        hit(&mut p, Side::B, addr(A, 500), &with_spi(&template, 0x9000 + i));
    }
    assert_eq!(p.b.half_open(), Limits::default().half_open_per_source);
    // ...and A rekeys its IKE SA: B accepts.
    p.command(Side::A, Command::Rekey { peer: "site-b".into(), ike: true });
    p.run();
    assert_eq!(p.b.drops().half_open_cap, 0);
    let st: Vec<_> = p.b.status().into_iter().filter(|s| s.state == "ESTABLISHED").collect();
    assert_eq!(st.len(), 1);
    assert_ne!((st[0].spi_i, st[0].spi_r), old, "the IKE SA was rekeyed");
    assert_eq!(st[0].children.len(), 1);
}

#[test]
fn bad_key_exchange_values_turn_cookies_on_instead_of_costing_key_generations() {
    init_logs();
    let mut p = Pair::standard();
    let template = init_template(13);
    // The KE payload (x25519: 32 bytes) set to zeros: refused, but only after the checks.
    let ke_at = template.windows(4).position(|w| w == [0, 31, 0, 0]).expect("KE group 31") + 4;
    let mut bad = template.clone();
    bad[ke_at..ke_at + 32].fill(0);
    let mut cookies = 0;
    for i in 0..2000u64 {
        let sent = hit(&mut p, Side::B, addr(A, 500), &with_spi(&bad, 0x7000 + i));
        cookies += sent.iter().filter(|t| notify_types(&t.data) == [16390]).count();
    }
    assert_eq!(p.b.half_open(), 0);
    // At most cookie_threshold requests reached the key exchange in the half-open timeout.
    assert_eq!(cookies as u64, 2000 - Limits::default().cookie_threshold as u64);
    // The real peer still gets in (with a COOKIE).
    p.run();
    assert_eq!(p.a.status()[0].state, "ESTABLISHED");
}

#[test]
fn a_cookie_proved_request_evicts_one_unproved_sa_of_its_own_source() {
    init_logs();
    // B serves two tunnels; the attacker fills the half-open slots of A's address, and
    // one of peer C's address.
    let c_addr = "192.0.2.3";
    let mut p = Pair::standard();
    p.b.set_limits(Limits { half_open_per_source: 3, half_open_max: 4, cookie_threshold: 100, ..Limits::default() });
    let template = init_template(17);
    for i in 0..3u64 {
        hit(&mut p, Side::B, addr(A, 500), &with_spi(&template, 0xa000 + i));
    }
    assert_eq!(p.b.half_open(), 3);
    // (C is not configured on B: it only shows that foreign slots are not touched.)
    hit(&mut p, Side::B, addr(c_addr, 500), &with_spi(&template, 0xb000));
    assert_eq!(p.b.half_open(), 3);
    // The real A gets a COOKIE, comes back proved and replaces exactly one spoofed SA.
    p.run();
    assert_eq!(p.a.status()[0].state, "ESTABLISHED");
    assert_eq!(p.b.half_open(), 2);
    assert_eq!(p.b.drops().half_open_cap, 0);
}

#[test]
fn a_forged_invalid_ike_spi_answer_changes_nothing_while_the_peer_is_alive() {
    init_logs();
    let mut p = Pair::standard();
    p.run();
    let before = p.a.status();
    // A rekeys a CHILD SA; an on-path attacker answers the request first with an
    // unprotected INVALID_IKE_SPI (same SPIs and message ID), then the real answer comes.
    p.command(Side::A, Command::Rekey { peer: "site-b".into(), ike: false });
    let request = p.take_to(Side::B).expect("CREATE_CHILD_SA request");
    let mut forged = request.data[..16].to_vec();
    forged.extend_from_slice(&[41, 0x20, 37, 0x20]);
    forged.extend_from_slice(&request.data[20..24]);
    forged.extend_from_slice(&36u32.to_be_bytes());
    forged.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 4]);
    assert!(hit(&mut p, Side::A, addr(B, 500), &forged).is_empty());
    p.inject(Side::B, &request);
    p.run();
    for _ in 0..10 {
        p.advance(Duration::from_secs(1));
    }
    let after = p.a.status();
    assert_eq!(after.len(), 1, "no second IKE SA: {after:?}");
    assert_eq!((after[0].spi_i, after[0].spi_r), (before[0].spi_i, before[0].spi_r), "the IKE SA is the same");
    assert_eq!(after[0].state, "ESTABLISHED");
    assert!(!p.events(Side::A).iter().any(|e| matches!(e, Event::IkeDown { .. })));
}

#[test]
fn an_ike_sa_init_beyond_the_peers_ike_sa_cap_is_refused_with_no_additional_sas() {
    init_logs();
    let mut p = Pair::standard();
    p.b.set_limits(Limits { ike_sa_per_peer_max: 1, ..Limits::default() });
    p.run();
    let sent = hit(&mut p, Side::B, addr(A, 500), &with_spi(&init_template(3), 0xc000));
    assert_eq!(sent.len(), 1);
    assert_eq!(notify_types(&sent[0].data), [35], "NO_ADDITIONAL_SAS");
    assert_eq!(p.b.drops().half_open_cap, 1);
    assert_eq!(p.b.ike_sa_count(), 1);
}
