//! Two vpngw endpoints that both announce it (the vpngw Vendor ID in IKE_SA_INIT, IKEv1
//! in Main or Aggressive Mode messages 1 and 2) carry ESP in UDP on 4500 without a NAT;
//! one that does not announce it (`encapsulation = "raw"`, or any other implementation)
//! keeps raw ESP on both sides; the decision survives rekeys; a Vendor ID added or
//! stripped on the way makes authentication fail instead of splitting the two sides'
//! decisions; forged IKE_SA_INIT messages with Vendor IDs change nothing on an
//! established SA.

use ike::testing::{peer_config, Pair, Side};
use ike::{Command, EncapReason, IkeVersion, PeerConfig, Transmit, VPNGW_VENDOR_ID};
use ipsec_types::{DatapathCommand, EspProposal, IkeProposal, SaParams, UdpEncap};
use std::time::Duration;

fn init_logs() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("ike=debug").try_init();
}

/// A (192.0.2.1, initiates) and B (192.0.2.2) with the given announcements.
fn configs(a_vid: bool, b_vid: bool) -> (PeerConfig, PeerConfig) {
    let mut a = peer_config("site-b", "192.0.2.1", "192.0.2.2", true, true);
    let mut b = peer_config("site-a", "192.0.2.2", "192.0.2.1", false, false);
    a.announce_vpngw = a_vid;
    b.announce_vpngw = b_vid;
    (a, b)
}

fn v1(mut p: PeerConfig) -> PeerConfig {
    p.ike_version = IkeVersion::V1;
    p.ike_proposals = vec![IkeProposal::parse("aes128-sha256-modp2048").expect("proposal")];
    p.esp_proposals = vec![EspProposal::parse("aes128gcm16-modp2048").expect("proposal")];
    p
}

fn installed(p: &Pair, side: Side) -> Vec<SaParams> {
    p.datapath(side)
        .into_iter()
        .filter_map(|c| match c {
            DatapathCommand::InstallInbound(s) | DatapathCommand::InstallOutbound(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn contains_vid(data: &[u8]) -> bool {
    data.windows(VPNGW_VENDOR_ID.len()).any(|w| w == VPNGW_VENDOR_ID)
}

/// Every installed SA of both sides has `encap`, and both report `reason`.
fn assert_encap(p: &mut Pair, encap: Option<UdpEncap>, reason: Option<EncapReason>) {
    for side in [Side::A, Side::B] {
        let sas = installed(p, side);
        assert!(sas.len() >= 2, "{side:?}: {sas:?}");
        for sa in &sas {
            assert_eq!(sa.endpoints.encap, encap, "{side:?} {:?}", sa.spi);
        }
        let st = p.ep(side).status();
        assert_eq!(st.len(), 1, "{side:?}");
        assert_eq!(st[0].state, "ESTABLISHED", "{side:?}");
        assert_eq!(st[0].encap_reason, reason, "{side:?}");
        assert!(!st[0].nat_detected, "{side:?}: no NAT, none faked");
        for c in &st[0].children {
            assert_eq!(c.encap, encap, "{side:?}");
        }
    }
}

const UDP: Option<UdpEncap> = Some(UdpEncap { local_port: 4500, remote_port: 4500 });

#[test]
fn two_vpngw_carry_esp_in_udp_without_a_nat() {
    init_logs();
    let (a, b) = configs(true, true);
    let mut p = Pair::new(a, b);
    p.run();
    assert_encap(&mut p, UDP, Some(EncapReason::VpngwPeer));
    let (ta, tb) = (p.transmits(Side::A), p.transmits(Side::B));
    assert!(contains_vid(&ta[0].data) && contains_vid(&tb[0].data), "both IKE_SA_INIT messages announce");
    assert_eq!((ta[0].local.port(), ta[0].remote.port()), (500, 500));
    assert_eq!((ta[1].local.port(), ta[1].remote.port()), (4500, 4500), "IKE_AUTH floated");
    assert_eq!((tb[1].local.port(), tb[1].remote.port()), (4500, 4500));
    for side in [Side::A, Side::B] {
        let st = p.ep(side).status();
        assert_eq!((st[0].local.port(), st[0].remote.port()), (4500, 4500), "{side:?}");
    }
    // A CHILD rekey and an IKE rekey keep the encapsulation (the new IKE SA inherits it).
    p.command(Side::A, Command::Rekey { peer: "site-b".into(), ike: false });
    p.run();
    p.advance(Duration::from_secs(5));
    p.command(Side::B, Command::Rekey { peer: "site-a".into(), ike: true });
    p.run();
    p.advance(Duration::from_secs(5));
    assert!(installed(&p, Side::A).len() >= 4, "the CHILD rekey installed new SAs");
    assert_encap(&mut p, UDP, Some(EncapReason::VpngwPeer));
}

#[test]
fn one_side_without_the_vendor_id_keeps_raw_esp_on_both() {
    init_logs();
    // (A announces, B does not) as with encapsulation = "raw" on B, or any other
    // implementation on B; and the other way round.
    for (a_vid, b_vid) in [(true, false), (false, true), (false, false)] {
        let (a, b) = configs(a_vid, b_vid);
        let mut p = Pair::new(a, b);
        p.run();
        assert_encap(&mut p, None, None);
        let (ta, tb) = (p.transmits(Side::A), p.transmits(Side::B));
        assert_eq!(contains_vid(&ta[0].data), a_vid, "A's IKE_SA_INIT announces only if configured");
        assert_eq!(contains_vid(&tb[0].data), b_vid, "B's IKE_SA_INIT announces only if configured");
        assert!(ta.iter().chain(&tb).all(|t| t.local.port() == 500 && t.remote.port() == 500), "no float");
    }
}

#[test]
fn forced_encapsulation_and_a_nat_take_precedence_in_the_reason() {
    init_logs();
    let (mut a, b) = configs(true, true);
    a.force_encap = true;
    let mut p = Pair::new(a, b);
    p.run();
    assert_eq!(p.a.status()[0].encap_reason, Some(EncapReason::Forced));
    // B cannot tell A's faked NAT-D from a real NAT.
    assert_eq!(p.b.status()[0].encap_reason, Some(EncapReason::Nat));
    assert!(installed(&p, Side::A).iter().chain(&installed(&p, Side::B)).all(|s| s.endpoints.encap == UDP));
}

#[test]
fn ikev1_main_mode_pair_floats_and_a_lone_vpngw_does_not() {
    init_logs();
    for (a_vid, b_vid) in [(true, true), (true, false), (false, true)] {
        let (a, b) = configs(a_vid, b_vid);
        let mut p = Pair::new(v1(a), v1(b));
        p.run();
        p.advance(Duration::from_secs(1));
        let pair = a_vid && b_vid;
        let (encap, reason) = if pair { (UDP, Some(EncapReason::VpngwPeer)) } else { (None, None) };
        assert_encap(&mut p, encap, reason);
        let ta = p.transmits(Side::A);
        assert_eq!(contains_vid(&ta[0].data), a_vid, "Main Mode message 1");
        let last = ta.last().expect("sent");
        assert_eq!(last.remote.port(), if pair { 4500 } else { 500 }, "{a_vid} {b_vid}");
    }
}

#[test]
fn ikev1_aggressive_mode_pair_floats_too() {
    init_logs();
    for (a_vid, b_vid) in [(true, true), (true, false)] {
        let (a, b) = configs(a_vid, b_vid);
        let (mut a, mut b) = (v1(a), v1(b));
        (a.aggressive, b.aggressive) = (true, true);
        let mut p = Pair::new(a, b);
        p.run();
        p.advance(Duration::from_secs(1));
        let (encap, reason) = if a_vid && b_vid { (UDP, Some(EncapReason::VpngwPeer)) } else { (None, None) };
        assert_encap(&mut p, encap, reason);
        assert_eq!(contains_vid(&p.transmits(Side::A)[0].data), a_vid, "Aggressive Mode message 1");
        assert_eq!(contains_vid(&p.transmits(Side::B)[0].data), b_vid, "Aggressive Mode message 2");
    }
}

/// Rewrites an IKEv2 message's cleartext payload chain: `edit` gets (type, body) pairs.
fn edit_payloads(data: &[u8], edit: impl FnOnce(&mut Vec<(u8, Vec<u8>)>)) -> Vec<u8> {
    let mut payloads = Vec::new();
    let (mut next, mut at) = (data[16], 28);
    while next != 0 {
        let len = usize::from(u16::from_be_bytes([data[at + 2], data[at + 3]]));
        payloads.push((next, data[at + 4..at + len].to_vec()));
        next = data[at];
        at += len;
    }
    edit(&mut payloads);
    let mut out = data[..28].to_vec();
    out[16] = payloads.first().map_or(0, |p| p.0);
    for (i, (_, body)) in payloads.iter().enumerate() {
        out.push(payloads.get(i + 1).map_or(0, |p| p.0));
        out.push(0);
        out.extend_from_slice(&u16::try_from(body.len() + 4).expect("small").to_be_bytes());
        out.extend_from_slice(body);
    }
    let total = u32::try_from(out.len()).expect("small").to_be_bytes();
    out[24..28].copy_from_slice(&total);
    out
}

const VENDOR: u8 = 43;

fn strip_vid(payloads: &mut Vec<(u8, Vec<u8>)>) {
    payloads.retain(|(t, b)| !(*t == VENDOR && b.as_slice() == VPNGW_VENDOR_ID));
}

/// Neither side stays up: no IKE SA established, and whatever a side installed (the
/// responder installs its inbound SA before the initiator checks the responder's AUTH)
/// was removed again.
fn assert_nothing_up(p: &mut Pair) {
    for side in [Side::A, Side::B] {
        assert!(!p.ep(side).status().iter().any(|s| s.state == "ESTABLISHED"), "{side:?}: {:?}", p.ep(side).status());
        let cmds = p.datapath(side);
        for sa in installed(p, side) {
            assert!(
                cmds.iter().any(|c| matches!(c, DatapathCommand::Remove { spi, .. } if *spi == sa.spi)),
                "{side:?}: {:?} left installed",
                sa.spi
            );
        }
    }
}

#[test]
fn a_vendor_id_stripped_or_added_on_the_way_fails_authentication() {
    init_logs();
    // Stripped from A's request: B sees a stranger, A sees a vpngw answer. AUTH signs the
    // IKE_SA_INIT messages as sent, so B refuses A's AUTH rather than the two sides
    // settling on different encapsulations.
    let (a, b) = configs(true, true);
    let mut p = Pair::new(a, b);
    p.tick(p.now);
    let req = p.take_to(Side::B).expect("IKE_SA_INIT");
    let stripped = Transmit { data: edit_payloads(&req.data, strip_vid), ..req };
    assert!(!contains_vid(&stripped.data));
    p.inject(Side::B, &stripped);
    p.run();
    assert_nothing_up(&mut p);
    // Stripped from B's response.
    let (a, b) = configs(true, true);
    let mut p = Pair::new(a, b);
    p.tick(p.now);
    assert!(p.deliver_to(Side::B));
    let resp = p.take_to(Side::A).expect("response");
    p.inject(Side::A, &Transmit { data: edit_payloads(&resp.data, strip_vid), ..resp });
    p.run();
    assert_nothing_up(&mut p);
    assert!(installed(&p, Side::A).is_empty(), "A refused B's AUTH before installing anything");
    // Added to the request of a peer that does not announce it.
    let (a, b) = configs(false, true);
    let mut p = Pair::new(a, b);
    p.tick(p.now);
    let req = p.take_to(Side::B).expect("IKE_SA_INIT");
    let added = edit_payloads(&req.data, |v| v.push((VENDOR, VPNGW_VENDOR_ID.to_vec())));
    p.inject(Side::B, &Transmit { data: added, ..req });
    p.run();
    assert_nothing_up(&mut p);
}

#[test]
fn forged_init_messages_with_vendor_ids_leave_an_established_sa_alone() {
    init_logs();
    let (a, b) = configs(false, true);
    let mut p = Pair::new(a, b);
    p.run();
    assert_encap(&mut p, None, None);
    let (before_a, before_b) = (p.datapath(Side::A).len(), p.datapath(Side::B).len());
    let (spis_a, spis_b) =
        ((p.a.status()[0].spi_i, p.a.status()[0].spi_r), (p.b.status()[0].spi_i, p.b.status()[0].spi_r));
    let init_req = p.transmits(Side::A)[0].clone();
    let init_resp = p.transmits(Side::B)[0].clone();
    let hostile = |v: &mut Vec<(u8, Vec<u8>)>| {
        // Our Vendor ID three times, one of 60,000 octets that starts with it, one that
        // is a prefix of it, and an empty one.
        for _ in 0..3 {
            v.push((VENDOR, VPNGW_VENDOR_ID.to_vec()));
        }
        v.push((VENDOR, [&VPNGW_VENDOR_ID[..], &[0x55; 60_000][..]].concat()));
        v.push((VENDOR, VPNGW_VENDOR_ID[..8].to_vec()));
        v.push((VENDOR, vec![]));
    };
    // A replay of the request with Vendor IDs added (a new initiation attempt, as far as
    // B can tell), and of the response to A, which is waiting for nothing.
    p.inject(Side::B, &Transmit { data: edit_payloads(&init_req.data, hostile), ..init_req.clone() });
    p.inject(Side::A, &Transmit { data: edit_payloads(&init_resp.data, hostile), ..init_resp });
    // Whatever B answered goes to A, which has no such attempt.
    p.run();
    p.advance(Duration::from_secs(60));
    assert_eq!(p.datapath(Side::A).len(), before_a, "A: {:?}", &p.datapath(Side::A)[before_a..]);
    assert_eq!(p.datapath(Side::B).len(), before_b, "B: {:?}", &p.datapath(Side::B)[before_b..]);
    let est = |p: &mut Pair, side| {
        p.ep(side).status().into_iter().find(|s| s.state == "ESTABLISHED").map(|s| (s.spi_i, s.spi_r, s.encap_reason))
    };
    assert_eq!(est(&mut p, Side::A), Some((spis_a.0, spis_a.1, None)));
    assert_eq!(est(&mut p, Side::B), Some((spis_b.0, spis_b.1, None)));
}
