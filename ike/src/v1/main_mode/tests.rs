//! Main Mode in memory, both roles against each other: the walkthrough's profile and a
//! SHA-256 / MODP-2048 one establish the same keys on both sides; a wrong key, a
//! proposal mismatch and an unexpected identity fail by name; an unauthenticated forged
//! message leaves the exchange waiting for the real one.

use super::*;
use crate::testing::TestRng;
use crate::v1::keys::phase2_iv;

struct Side {
    proposals: Vec<IkeProposal>,
    psk: Vec<u8>,
    local: Identity,
    remote: Option<Identity>,
    local_addr: SocketAddr,
    remote_addr: SocketAddr,
    vpngw: bool,
}

impl Side {
    fn new(proposal: &str, psk: &str, local: &str, remote: Option<&str>) -> Self {
        Self {
            proposals: vec![IkeProposal::parse(proposal).expect("proposal")],
            psk: psk.as_bytes().to_vec(),
            local: Identity::parse(local).expect("id"),
            remote: remote.map(|r| Identity::parse(r).expect("id")),
            local_addr: "192.0.2.1:500".parse().expect("addr"),
            remote_addr: "198.51.100.1:500".parse().expect("addr"),
            vpngw: false,
        }
    }

    /// Announces the vpngw Vendor ID.
    fn vpngw(self) -> Self {
        Self { vpngw: true, ..self }
    }

    /// The other end of the default addresses.
    fn responder(self) -> Self {
        Self { local_addr: self.remote_addr, remote_addr: self.local_addr, ..self }
    }

    /// Addresses as this side sees them.
    fn at(self, local: &str, remote: &str) -> Self {
        Self { local_addr: local.parse().expect("addr"), remote_addr: remote.parse().expect("addr"), ..self }
    }

    fn cfg(&self) -> MainModeConfig<'_> {
        MainModeConfig {
            proposals: &self.proposals,
            psk: &self.psk,
            local_id: &self.local,
            remote_id: self.remote.as_ref(),
            life_secs: 28_800,
            local: self.local_addr,
            remote: self.remote_addr,
            fake_nat: false,
            announce_vpngw: self.vpngw,
            initial_contact: true,
        }
    }
}

fn send(step: Result<Step, MainModeError>) -> Vec<u8> {
    match step {
        Ok(Step::Send(m)) => m,
        other => panic!("expected a message to send: {other:?}"),
    }
}

/// Runs Main Mode to the end; (initiator's SA, responder's SA, message 5).
fn establish(i: &Side, r: &Side) -> (Phase1Sa, Phase1Sa, Vec<u8>) {
    let (mut ri, mut rr) = (TestRng::new(1), TestRng::new(2));
    let (mut init, m1) = Initiator::start(&i.cfg(), &mut ri);
    let (mut resp, m2) = Responder::accept(&r.cfg(), &mut rr, &m1).expect("message 1");
    let m3 = send(init.handle(&i.cfg(), &mut ri, &m2));
    let m4 = send(resp.handle(&r.cfg(), &mut rr, &m3));
    let m5 = send(init.handle(&i.cfg(), &mut ri, &m4));
    let Ok(Step::Done(sa_r, Some(m6))) = resp.handle(&r.cfg(), &mut rr, &m5) else { panic!("responder done") };
    let Ok(Step::Done(sa_i, None)) = init.handle(&i.cfg(), &mut ri, &m6) else { panic!("initiator done") };
    assert_eq!((init.cookie(), resp.cookie()), (sa_i.cky_i, sa_i.cky_r));
    (*sa_i, *sa_r, m5)
}

#[test]
fn nat_detection_finds_the_translated_side() {
    // Without a NAT both sides see the same two addresses.
    let i = Side::new("aes128-sha1-modp1024", "k", "a.example", None);
    let r = Side::new("aes128-sha1-modp1024", "k", "b.example", None).responder();
    let (a, b, _) = establish(&i, &r);
    let none = Nat { supported: true, local_behind: false, remote_behind: false, vpngw_pair: false };
    assert_eq!((a.nat, b.nat), (none, none));
    assert!(!a.nat.detected());
    // The initiator sits at 10.0.0.1 behind a NAT that the responder sees as 203.0.113.5:1025.
    let i = Side::new("aes128-sha1-modp1024", "k", "a.example", None).at("10.0.0.1:500", "198.51.100.1:500");
    let r = Side::new("aes128-sha1-modp1024", "k", "b.example", None).at("198.51.100.1:500", "203.0.113.5:1025");
    let (a, b, _) = establish(&i, &r);
    assert_eq!(a.nat, Nat { supported: true, local_behind: true, remote_behind: false, vpngw_pair: false });
    assert_eq!(b.nat, Nat { supported: true, local_behind: false, remote_behind: true, vpngw_pair: false });
    assert!(a.nat.detected() && b.nat.detected());
}

#[test]
fn two_vpngw_float_without_a_nat_and_one_alone_does_not() {
    let side = |vpngw: bool, id: &str| {
        let s = Side::new("aes128-sha256-modp2048", "k", id, None);
        if vpngw {
            s.vpngw()
        } else {
            s
        }
    };
    for (vi, vr) in [(true, true), (true, false), (false, true), (false, false)] {
        let (i, r) = (side(vi, "a.example"), side(vr, "b.example").responder());
        let (a, b, _) = establish(&i, &r);
        let pair = vi && vr;
        assert!(!a.nat.local_behind && !a.nat.remote_behind && !b.nat.local_behind && !b.nat.remote_behind);
        assert_eq!((a.nat.vpngw_pair, b.nat.vpngw_pair), (pair, pair), "{vi} {vr}");
        assert_eq!((a.nat.detected(), b.nat.detected()), (pair, pair), "{vi} {vr}");
        let want = pair.then_some(EncapReason::VpngwPeer);
        assert_eq!((a.nat.reason(false), b.nat.reason(false)), (want, want), "{vi} {vr}");
    }
    // Message 1 carries the Vendor ID only when announced.
    let (_, m1) = Initiator::start(&side(true, "a.example").cfg(), &mut TestRng::new(1));
    assert!(has_vid(&Message::parse(&m1).expect("1"), &VPNGW_VENDOR_ID));
    let (_, m1) = Initiator::start(&side(false, "a.example").cfg(), &mut TestRng::new(1));
    assert!(!has_vid(&Message::parse(&m1).expect("1"), &VPNGW_VENDOR_ID));
}

#[test]
fn a_peer_without_nat_t_gets_no_nat_d() {
    let i = Side::new("aes128-sha1-modp1024", "k", "a.example", None);
    let r = Side::new("aes128-sha1-modp1024", "k", "b.example", None).responder();
    let (mut ri, mut rr) = (TestRng::new(1), TestRng::new(2));
    let (mut init, m1) = Initiator::start(&i.cfg(), &mut ri);
    let parsed = Message::parse(&m1).expect("1");
    assert!(has_vid(&parsed, &VID_NAT_T) && has_vid(&parsed, &VID_DPD));
    // Message 1 without its Vendor IDs: a peer that does not know NAT-T.
    let Some(Payload::Sa(sa)) = parsed.payloads.first().cloned() else { panic!("SA") };
    let m1_plain = emit_clear(parsed.header, &[Payload::Sa(sa)]);
    let (mut resp, m2) = Responder::accept(&r.cfg(), &mut rr, &m1_plain).expect("1");
    assert!(!has_vid(&Message::parse(&m2).expect("2"), &VID_NAT_T));
    let m3 = send(init.handle(&i.cfg(), &mut ri, &m2));
    assert!(!Message::parse(&m3).expect("3").payloads.iter().any(|p| matches!(p, Payload::NatD { .. })));
    let m4 = send(resp.handle(&r.cfg(), &mut rr, &m3));
    let m5 = send(init.handle(&i.cfg(), &mut ri, &m4));
    let Ok(Step::Done(b, Some(m6))) = resp.handle(&r.cfg(), &mut rr, &m5) else { panic!("6") };
    let Ok(Step::Done(a, None)) = init.handle(&i.cfg(), &mut ri, &m6) else { panic!("done") };
    assert_eq!((a.nat, b.nat), (Nat::default(), Nat::default()));
}

/// Both SAs hold the same keys: same Quick Mode KEYMAT, HASH(3) and phase-2 IV.
fn assert_same_keys(a: &Phase1Sa, b: &Phase1Sa) {
    assert_eq!((a.cky_i, a.cky_r, a.algs), (b.cky_i, b.cky_r, b.algs));
    let (ni, nr) = ([1u8; 16], [2u8; 16]);
    assert_eq!(*a.keys.quick_keymat(None, 3, 7, &ni, &nr, 36), *b.keys.quick_keymat(None, 3, 7, &ni, &nr, 36));
    assert_eq!(*a.keys.quick_hash3(5, &ni, &nr), *b.keys.quick_hash3(5, &ni, &nr));
    assert_eq!(a.last_block, b.last_block);
    assert_eq!(phase2_iv(a.algs.hash, &a.last_block, 5), phase2_iv(b.algs.hash, &b.last_block, 5));
}

#[test]
fn walkthrough_profile_establishes() {
    let i = Side::new("aes128-sha1-modp1024", "walkthrough", "classic.example", Some("cloud.example"));
    let r = Side::new("aes128-sha1-modp1024", "walkthrough", "cloud.example", Some("classic.example")).responder();
    let (a, b, m5) = establish(&i, &r);
    assert_same_keys(&a, &b);
    assert_eq!(a.algs.keywords(), "aes128-sha1-modp1024");
    assert_eq!((a.peer_id.to_string(), b.peer_id.to_string()), ("cloud.example".into(), "classic.example".into()));
    assert_eq!((a.life_secs, b.life_secs), (Some(28_800), Some(28_800)));
    // Identity protection: the initiator's identity is not readable in message 5.
    assert!(!m5.windows(15).any(|w| w == b"classic.example"));
}

#[test]
fn sha256_modp2048_establishes_with_any_peer_identity() {
    let i = Side::new("aes256-sha256-modp2048", "k", "192.0.2.1", None);
    let r = Side::new("aes256-sha256-modp2048", "k", "198.51.100.1", None).responder();
    let (a, b, _) = establish(&i, &r);
    assert_same_keys(&a, &b);
    assert_eq!(a.algs.keywords(), "aes256-sha256-modp2048");
    assert_eq!(b.peer_id.to_string(), "192.0.2.1");
}

#[test]
fn wrong_psk_is_an_authentication_failure() {
    let i = Side::new("aes128-sha1-modp1024", "one key", "a.example", None);
    let r = Side::new("aes128-sha1-modp1024", "another key", "b.example", None).responder();
    let (mut ri, mut rr) = (TestRng::new(1), TestRng::new(2));
    let (mut init, m1) = Initiator::start(&i.cfg(), &mut ri);
    let (mut resp, m2) = Responder::accept(&r.cfg(), &mut rr, &m1).expect("message 1");
    let m3 = send(init.handle(&i.cfg(), &mut ri, &m2));
    let m4 = send(resp.handle(&r.cfg(), &mut rr, &m3));
    let m5 = send(init.handle(&i.cfg(), &mut ri, &m4));
    let e = resp.handle(&r.cfg(), &mut rr, &m5).unwrap_err();
    assert_eq!(e, MainModeError::AuthenticationFailed);
    assert_eq!(e.to_string(), "authentication failed (pre-shared key mismatch?)");
}

#[test]
fn no_common_proposal() {
    let i = Side::new("aes128-sha1-modp1024", "k", "a.example", None);
    let r = Side::new("aes256-sha256-modp2048", "k", "b.example", None).responder();
    let (_, m1) = Initiator::start(&i.cfg(), &mut TestRng::new(1));
    let e = Responder::accept(&r.cfg(), &mut TestRng::new(2), &m1).err();
    assert_eq!(e, Some(MainModeError::NoProposalChosen));
}

#[test]
fn unexpected_identity_is_refused() {
    let i = Side::new("aes128-sha1-modp1024", "k", "intruder.example", None);
    let r = Side::new("aes128-sha1-modp1024", "k", "b.example", Some("classic.example")).responder();
    let (mut ri, mut rr) = (TestRng::new(1), TestRng::new(2));
    let (mut init, m1) = Initiator::start(&i.cfg(), &mut ri);
    let (mut resp, m2) = Responder::accept(&r.cfg(), &mut rr, &m1).expect("message 1");
    let m3 = send(init.handle(&i.cfg(), &mut ri, &m2));
    let m4 = send(resp.handle(&r.cfg(), &mut rr, &m3));
    let m5 = send(init.handle(&i.cfg(), &mut ri, &m4));
    let e = resp.handle(&r.cfg(), &mut rr, &m5).unwrap_err();
    assert_eq!(e, MainModeError::WrongIdentity("intruder.example".into()));
}

#[test]
fn forged_cleartext_messages_do_not_end_the_exchange() {
    let i = Side::new("aes128-sha1-modp1024", "k", "a.example", None);
    let r = Side::new("aes128-sha1-modp1024", "k", "b.example", None).responder();
    let (mut ri, mut rr) = (TestRng::new(1), TestRng::new(2));
    let (mut init, m1) = Initiator::start(&i.cfg(), &mut ri);
    let (mut resp, m2) = Responder::accept(&r.cfg(), &mut rr, &m1).expect("message 1");
    // A message 2 naming a transform we never offered.
    let forged = emit_clear(
        header(init.cookie(), 99),
        &[Payload::Sa(phase1_offer(&[IkeProposal::parse("aes256-sha512-modp4096").expect("p")], 1))],
    );
    assert_eq!(init.handle(&i.cfg(), &mut ri, &forged).unwrap_err(), MainModeError::NoProposalChosen);
    let m3 = send(init.handle(&i.cfg(), &mut ri, &m2));
    // A message 3 with a KE of the wrong length, then garbage.
    let mut bad = Vec::from(&m3[..28]);
    bad.extend_from_slice(&[10, 0, 0, 8, 1, 2, 3, 4]);
    assert!(resp.handle(&r.cfg(), &mut rr, &bad).is_err());
    assert!(resp.handle(&r.cfg(), &mut rr, &[0u8; 40]).is_err());
    let m4 = send(resp.handle(&r.cfg(), &mut rr, &m3));
    // A message 4 from someone else's exchange.
    let mut other = m4.clone();
    other[0] ^= 1;
    assert!(init.handle(&i.cfg(), &mut ri, &other).is_err());
    let m5 = send(init.handle(&i.cfg(), &mut ri, &m4));
    // A message 6 that does not decrypt leaves the initiator waiting.
    let mut m5_garbled = m5.clone();
    let n = m5_garbled.len();
    m5_garbled[n - 20] ^= 0xff;
    assert_eq!(resp.handle(&r.cfg(), &mut rr, &m5_garbled).unwrap_err(), MainModeError::AuthenticationFailed);
    let Ok(Step::Done(_, Some(m6))) = resp.handle(&r.cfg(), &mut rr, &m5) else { panic!("responder done") };
    let mut m6_garbled = m6.clone();
    let n6 = m6_garbled.len();
    m6_garbled[n6 - 20] ^= 0xff;
    assert!(init.handle(&i.cfg(), &mut ri, &m6_garbled).is_err());
    assert!(matches!(init.handle(&i.cfg(), &mut ri, &m6), Ok(Step::Done(_, None))));
    assert!(init.handle(&i.cfg(), &mut ri, &m6).is_err(), "over");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Mutated copies of each message, delivered before the genuine one, never make an
    /// exchange panic; when the genuine messages still complete it, both sides agree.
    #[test]
    fn mutated_messages_never_panic(
        which in 2usize..=6,
        flips in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>()), 1..6),
    ) {
        let i = Side::new("aes128-sha1-modp1024", "k", "a.example", None);
        let r = Side::new("aes128-sha1-modp1024", "k", "b.example", None).responder();
        let (mut ri, mut rr) = (TestRng::new(1), TestRng::new(2));
        let mutate = |m: &[u8]| {
            let mut v = m.to_vec();
            for (at, b) in &flips {
                let n = at.index(v.len());
                v[n] = *b;
            }
            v
        };
        let (mut init, m1) = Initiator::start(&i.cfg(), &mut ri);
        let (mut resp, m2) = Responder::accept(&r.cfg(), &mut rr, &m1).expect("1");
        if which == 2 { let _ = init.handle(&i.cfg(), &mut ri, &mutate(&m2)); }
        let Ok(Step::Send(m3)) = init.handle(&i.cfg(), &mut ri, &m2) else { return Ok(()) };
        if which == 3 { let _ = resp.handle(&r.cfg(), &mut rr, &mutate(&m3)); }
        let Ok(Step::Send(m4)) = resp.handle(&r.cfg(), &mut rr, &m3) else { return Ok(()) };
        if which == 4 { let _ = init.handle(&i.cfg(), &mut ri, &mutate(&m4)); }
        let Ok(Step::Send(m5)) = init.handle(&i.cfg(), &mut ri, &m4) else { return Ok(()) };
        if which == 5 { let _ = resp.handle(&r.cfg(), &mut rr, &mutate(&m5)); }
        let Ok(Step::Done(b, Some(m6))) = resp.handle(&r.cfg(), &mut rr, &m5) else { return Ok(()) };
        if which == 6 { let _ = init.handle(&i.cfg(), &mut ri, &mutate(&m6)); }
        let Ok(Step::Done(a, None)) = init.handle(&i.cfg(), &mut ri, &m6) else { return Ok(()) };
        assert_same_keys(&a, &b);
    }
}
