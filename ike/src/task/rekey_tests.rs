//! Byte-level CREATE_CHILD_SA exchanges with a strongSwan-shaped peer: a CHILD SA rekey
//! with PFS (keys checked against an independent derivation), an IKE SA rekey (new keys,
//! message IDs from 0, the old IKE SA deleted by the peer), and authenticated but
//! malformed CREATE_CHILD_SA requests (never a panic, never a stray SA).

use super::tests::{addr, drain, n, strongswan_init, transmits, Peer};
use crate::crypto::{derive_child_keys, derive_ike_keys, derive_rekeyed_ike_keys, psk_auth, KeyExchange, SkCipher};
use crate::message::payload::{proto, ttype, Delete, IdPayload, Notify, Proposal, Transform};
use crate::message::{emit_encrypted, exchange, flags, Header, Message, Payload};
use crate::testing::{peer_config, TestRng};
use crate::{Endpoint, EndpointConfig, Event, Output};
use ipsec_types::{
    DatapathCommand, DhGroup, Direction, EncrAlg, EspProposal, Identity, PrfAlg, SaParams, Spi, Timestamp,
    TrafficSelector,
};
use proptest::prelude::*;
use std::time::Duration;

const OLD_OUT: [u8; 4] = [0xc0, 0xff, 0xee, 0x01];

fn ts(s: &str) -> TrafficSelector {
    TrafficSelector::parse_cidr(s).unwrap()
}

fn payload(m: &Message, f: fn(&Payload) -> bool) -> &Payload {
    m.payloads.iter().find(|p| f(p)).unwrap()
}

/// Our endpoint (responder, ESP with PFS x25519) with an IKE SA and a CHILD SA set up by
/// a strongSwan-shaped peer. Returns the endpoint, the peer and our inbound/outbound SAs.
fn established() -> (Endpoint, Peer, SaParams, SaParams) {
    let mut cfg = peer_config("site-a", "192.0.2.2", "192.0.2.1", false, false);
    cfg.esp_proposals = vec![EspProposal::parse("aes256gcm16-x25519").unwrap()];
    let mut ep = Endpoint::new(
        EndpointConfig { ike_port: 500, natt_port: 4500, peers: vec![cfg], limits: Default::default() },
        Box::new(TestRng::new(5)),
    );
    let mut rng = TestRng::new(77);
    let now = Timestamp::from_secs(5);
    let ke = KeyExchange::generate(DhGroup::Curve25519, &mut rng);
    let mut peer = Peer {
        spi_i: 0x1111,
        spi_r: 0,
        ni: vec![3; 32],
        nr: vec![],
        init_req: vec![],
        init_resp: vec![],
        keys: None,
        mid: 1,
    };
    peer.init_req = strongswan_init(peer.spi_i, &ke, &peer.ni, addr("192.0.2.2:500"), &mut rng);
    ep.handle_datagram(now, addr("192.0.2.2:500"), addr("192.0.2.1:500"), &peer.init_req);
    let outs = drain(&mut ep);
    let m = Message::parse(&transmits(&outs)[0].data).unwrap();
    let Payload::Ke { data: ke_r, .. } = payload(&m, |p| matches!(p, Payload::Ke { .. })) else { panic!() };
    let Payload::Nonce(nr) = payload(&m, |p| matches!(p, Payload::Nonce(_))) else { panic!() };
    peer.spi_r = m.header.spi_r;
    peer.nr = nr.clone();
    peer.init_resp = transmits(&outs)[0].data.clone();
    let shared = ke.agree(ke_r).unwrap();
    let keys = derive_ike_keys(
        PrfAlg::HmacSha256,
        EncrAlg::AesGcm16_256,
        None,
        &shared,
        &peer.ni,
        &peer.nr,
        peer.spi_i,
        peer.spi_r,
    );
    let idi = IdPayload::from_identity(&Identity::Fqdn("a.test".into()));
    let auth = psk_auth(PrfAlg::HmacSha256, b"test-psk", &peer.init_req, &peer.nr, &keys.sk_pi, &idi.body());
    peer.keys = Some(keys);
    let esp = Proposal {
        num: 1,
        protocol: proto::ESP,
        spi: OLD_OUT.to_vec(),
        transforms: vec![Transform::new(ttype::ENCR, 20, Some(256)), Transform::new(ttype::ESN, 0, None)],
    };
    let req = peer.request(
        exchange::IKE_AUTH,
        &[
            Payload::IdI(idi),
            Payload::Auth { method: 2, data: auth.to_vec() },
            Payload::Sa(vec![esp]),
            Payload::TsI(vec![ts("10.1.0.0/24")]),
            Payload::TsR(vec![ts("10.2.0.0/24")]),
        ],
    );
    ep.handle_datagram(now, addr("192.0.2.2:4500"), addr("192.0.2.1:4500"), &req);
    let outs = drain(&mut ep);
    let [Output::Datapath(DatapathCommand::InstallInbound(i)), Output::Datapath(DatapathCommand::InstallOutbound(o)), ..] =
        &outs[..]
    else {
        panic!("{outs:?}")
    };
    (ep, peer, i.clone(), o.clone())
}

/// strongSwan's CHILD rekey request with PFS: REKEY_SA, an SA with groups we do not
/// offer next to ours, nonce, KE, selectors and its usual notify.
fn child_rekey_request(peer: &mut Peer, ke: &KeyExchange, ni: &[u8]) -> Vec<u8> {
    let rekey = Notify { protocol: proto::ESP, spi: OLD_OUT.to_vec(), kind: 16393, data: vec![] };
    let esp = Proposal {
        num: 1,
        protocol: proto::ESP,
        spi: vec![0xc0, 0xff, 0xee, 0x02],
        transforms: vec![
            Transform::new(ttype::ENCR, 20, Some(256)),
            Transform::new(ttype::DH, 31, None),
            Transform::new(ttype::DH, 19, None),
            Transform::new(ttype::DH, 1234, None),
            Transform::new(ttype::ESN, 0, None),
        ],
    };
    peer.request(
        exchange::CREATE_CHILD_SA,
        &[
            Payload::Notify(rekey),
            n(16394, &[]),
            Payload::Sa(vec![esp]),
            Payload::Nonce(ni.to_vec()),
            Payload::Ke { group: 31, data: ke.public_value() },
            Payload::TsI(vec![ts("10.1.0.0/24")]),
            Payload::TsR(vec![ts("10.2.0.0/24")]),
        ],
    )
}

#[test]
fn child_rekey_with_pfs_from_a_strongswan_shaped_peer() {
    let (mut ep, mut peer, old_in, old_out) = established();
    let (now, from, to) = (Timestamp::from_secs(6), addr("192.0.2.1:4500"), addr("192.0.2.2:4500"));
    let mut rng = TestRng::new(31);
    let ke = KeyExchange::generate(DhGroup::Curve25519, &mut rng);
    let ni = vec![9u8; 32];
    let req = child_rekey_request(&mut peer, &ke, &ni);
    ep.handle_datagram(now, to, from, &req);
    let outs = drain(&mut ep);
    let new_in = match &outs[..] {
        [Output::Datapath(DatapathCommand::InstallInbound(i)), Output::Transmit(_), Output::Event(Event::ChildUp { .. })] => {
            i.clone()
        }
        other => panic!("inbound installed before the response, nothing else: {other:?}"),
    };
    let m = peer.decrypt(&transmits(&outs)[0].data);
    let Payload::Sa(sa) = payload(&m, |p| matches!(p, Payload::Sa(_))) else { panic!() };
    assert_eq!(
        sa[0].transforms,
        vec![Transform::new(1, 20, Some(256)), Transform::new(4, 31, None), Transform::new(5, 0, None)]
    );
    assert_eq!(sa[0].spi, new_in.spi.0.to_be_bytes().to_vec());
    let Payload::Nonce(nr) = payload(&m, |p| matches!(p, Payload::Nonce(_))) else { panic!() };
    let Payload::Ke { group: 31, data: ke_r } = payload(&m, |p| matches!(p, Payload::Ke { .. })) else { panic!() };
    let shared = ke.agree(ke_r).unwrap();
    let sk_d = &peer.keys.as_ref().unwrap().sk_d;
    let (i2r, r2i) = derive_child_keys(PrfAlg::HmacSha256, sk_d, EncrAlg::AesGcm16_256, None, Some(&shared), &ni, nr);
    assert_eq!(new_in.key.key(), &i2r[..32], "PFS keys: g^ir | Ni | Nr");
    assert_eq!(new_in.key.salt(), <[u8; 4]>::try_from(&i2r[32..]).unwrap());
    assert_eq!(ep.status()[0].children.len(), 2);
    // A retransmitted request is answered from the cache: no second SA.
    ep.handle_datagram(now, to, from, &req);
    let again = drain(&mut ep);
    assert!(matches!(&again[..], [Output::Transmit(_)]));
    // The peer deletes the old SA: outbound moves, the old SAs go (inbound after 2 s).
    let del = Payload::Delete(Delete { protocol: 3, spi_size: 4, spis: vec![OLD_OUT.to_vec()] });
    let req = peer.request(exchange::INFORMATIONAL, &[del]);
    ep.handle_datagram(now, to, from, &req);
    let outs = drain(&mut ep);
    let new_out = match &outs[..] {
        [Output::Datapath(DatapathCommand::InstallOutbound(o)), Output::Datapath(DatapathCommand::Remove { spi, direction: Direction::Outbound, .. }), Output::Event(Event::ChildDown { .. }), Output::Transmit(_)]
            if *spi == old_out.spi =>
        {
            o.clone()
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(new_out.spi, Spi(0xc0ff_ee02));
    assert_eq!(new_out.key.key(), &r2i[..32]);
    let m = peer.decrypt(&transmits(&outs)[0].data);
    assert_eq!(
        m.payloads,
        vec![Payload::Delete(Delete { protocol: 3, spi_size: 4, spis: vec![old_in.spi.0.to_be_bytes().to_vec()] })]
    );
    ep.handle_timeout(now + Duration::from_secs(2));
    let outs = drain(&mut ep);
    assert!(
        matches!(&outs[..], [Output::Datapath(DatapathCommand::Remove { spi, direction: Direction::Inbound, .. })] if *spi == old_in.spi)
    );
    let st = ep.status();
    assert_eq!(st[0].children.len(), 1);
    assert_eq!(st[0].children[0].dh, Some(DhGroup::Curve25519));
}

#[test]
fn ike_rekey_from_a_strongswan_shaped_peer() {
    let (mut ep, mut peer, _, _) = established();
    let (now, from, to) = (Timestamp::from_secs(6), addr("192.0.2.1:4500"), addr("192.0.2.2:4500"));
    let mut rng = TestRng::new(32);
    let ke = KeyExchange::generate(DhGroup::Curve25519, &mut rng);
    let (ni, new_spi_i) = (vec![7u8; 32], 0x2222_3333_4444_5555u64);
    let prop = Proposal {
        num: 1,
        protocol: proto::IKE,
        spi: new_spi_i.to_be_bytes().to_vec(),
        transforms: vec![
            Transform::new(ttype::ENCR, 20, Some(256)),
            Transform::new(ttype::PRF, 5, None),
            Transform::new(ttype::DH, 31, None),
        ],
    };
    let req = peer.request(
        exchange::CREATE_CHILD_SA,
        &[Payload::Sa(vec![prop]), Payload::Nonce(ni.clone()), Payload::Ke { group: 31, data: ke.public_value() }],
    );
    ep.handle_datagram(now, to, from, &req);
    let outs = drain(&mut ep);
    assert!(matches!(&outs[..], [Output::Transmit(_)]), "no datapath change, no events: {outs:?}");
    let m = peer.decrypt(&transmits(&outs)[0].data);
    let Payload::Sa(sa) = payload(&m, |p| matches!(p, Payload::Sa(_))) else { panic!() };
    let spi_r = u64::from_be_bytes(sa[0].spi.as_slice().try_into().unwrap());
    let Payload::Nonce(nr) = payload(&m, |p| matches!(p, Payload::Nonce(_))) else { panic!() };
    let Payload::Ke { data: ke_r, .. } = payload(&m, |p| matches!(p, Payload::Ke { .. })) else { panic!() };
    let shared = ke.agree(ke_r).unwrap();
    let old_sk_d = peer.keys.as_ref().unwrap().sk_d.clone();
    let new_keys = derive_rekeyed_ike_keys(
        PrfAlg::HmacSha256,
        PrfAlg::HmacSha256,
        &old_sk_d,
        EncrAlg::AesGcm16_256,
        None,
        &shared,
        &ni,
        nr,
        new_spi_i,
        spi_r,
    );
    // The peer deletes the old IKE SA: nothing goes down.
    let del = Payload::Delete(Delete { protocol: 1, spi_size: 0, spis: vec![] });
    let req = peer.request(exchange::INFORMATIONAL, &[del]);
    ep.handle_datagram(now, to, from, &req);
    let outs = drain(&mut ep);
    assert!(matches!(&outs[..], [Output::Transmit(_)]), "{outs:?}");
    let st = ep.status();
    assert_eq!(st.len(), 1);
    assert_eq!((st[0].spi_i, st[0].spi_r), (new_spi_i, spi_r));
    assert!(!st[0].initiator);
    assert_eq!(st[0].children.len(), 1, "the CHILD SA moved over");
    // The new IKE SA starts at message ID 0 with the new keys.
    let h = Header {
        spi_i: new_spi_i,
        spi_r,
        next_payload: 0,
        exchange: exchange::INFORMATIONAL,
        flags: flags::INITIATOR,
        message_id: 0,
        length: 0,
    };
    let seal = SkCipher::new(EncrAlg::AesGcm16_256, None, &new_keys.sk_ei, &[]).unwrap();
    let live = emit_encrypted(h, &[], &seal, &[0, 0, 0, 0, 0, 0, 0, 1]);
    ep.handle_datagram(now, to, from, &live);
    let outs = drain(&mut ep);
    let [t] = transmits(&outs)[..] else { panic!("{outs:?}") };
    let mut m = Message::parse(&t.data).unwrap();
    let open = SkCipher::new(EncrAlg::AesGcm16_256, None, &new_keys.sk_er, &[]).unwrap();
    m.decrypt(&t.data, &open).unwrap();
    assert_eq!((m.header.message_id, m.header.flags), (0, flags::RESPONSE));
    assert_eq!(ep.status()[0].last_heard, Some(now));
}

/// Building blocks of hostile (but authenticated) CREATE_CHILD_SA requests.
fn hostile_payload(kind: u8, a: u16, b: u16, bytes: Vec<u8>) -> Payload {
    match kind % 9 {
        0 => Payload::Notify(Notify { protocol: (a % 4) as u8, spi: bytes.clone(), kind: 16393, data: vec![] }),
        1 => Payload::Sa(vec![Proposal {
            num: (a % 3) as u8,
            protocol: (b % 4) as u8,
            spi: bytes,
            transforms: vec![
                Transform::new(ttype::ENCR, a % 25, Some(b % 300)),
                Transform::new((b % 6) as u8, a, None),
                Transform::new(ttype::DH, b % 35, None),
            ],
        }]),
        2 => Payload::Nonce(bytes),
        3 => Payload::Ke { group: a % 35, data: bytes },
        4 => Payload::TsI(vec![ts("10.1.0.0/24")]),
        5 => Payload::TsR(vec![ts(if a.is_multiple_of(2) { "10.2.0.0/24" } else { "192.168.0.0/16" })]),
        6 => Payload::Delete(Delete { protocol: (a % 4) as u8, spi_size: 4, spis: vec![OLD_OUT.to_vec()] }),
        7 => n(a, &bytes),
        _ => Payload::Sa(vec![Proposal {
            num: 1,
            protocol: proto::ESP,
            spi: vec![1, 2, 3, (a % 256) as u8],
            transforms: vec![Transform::new(ttype::ENCR, 20, Some(256)), Transform::new(ttype::DH, 31, None)],
        }]),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn hostile_create_child_sa_requests_never_panic(
        parts in proptest::collection::vec((any::<u8>(), any::<u16>(), any::<u16>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..8),
        exch in prop_oneof![Just(exchange::CREATE_CHILD_SA), Just(exchange::INFORMATIONAL)],
    ) {
        let (mut ep, mut peer, _, _) = established();
        let (now, from, to) = (Timestamp::from_secs(6), addr("192.0.2.1:4500"), addr("192.0.2.2:4500"));
        let payloads: Vec<Payload> = parts.into_iter().map(|(k, a, b, bytes)| hostile_payload(k, a, b, bytes)).collect();
        let req = peer.request(exch, &payloads);
        ep.handle_datagram(now, to, from, &req);
        for t in [7, 40, 4000] {
            ep.handle_timeout(Timestamp::from_secs(t));
        }
        let outs = drain(&mut ep);
        let installs = outs.iter().filter(|o| matches!(o, Output::Datapath(DatapathCommand::InstallInbound(_)))).count();
        prop_assert!(installs <= 1);
        prop_assert!(ep.status().len() <= 2);
        prop_assert!(ep.status().iter().all(|s| s.children.len() <= 2));
    }
}
