//! A scripted, byte-level peer shaped like strongSwan 5.9 (extra notifies, vendor IDs,
//! proposals with transforms we do not know, faked NAT, NAT-mapped ports) driving our
//! endpoint, plus the initiator's COOKIE handling.

use crate::crypto::{derive_child_keys, derive_ike_keys, psk_auth, IkeKeys, KeyExchange, SkCipher};
use crate::message::payload::{proto, ttype, Delete, IdPayload, Notify, Proposal, Transform};
use crate::message::{emit_encrypted, emit_plain, exchange, flags, Header, Message, Payload};
use crate::testing::{peer_config, TestRng};
use crate::{Endpoint, EndpointConfig, Event, Output, Rng};
use ipsec_types::{DatapathCommand, Direction, EncrAlg, Identity, PrfAlg, Spi, Timestamp, TrafficSelector, UdpEncap};
use std::net::SocketAddr;

pub(super) fn drain(ep: &mut Endpoint) -> Vec<Output> {
    std::iter::from_fn(|| ep.poll_output()).collect()
}

pub(super) fn transmits(outs: &[Output]) -> Vec<&crate::Transmit> {
    outs.iter().filter_map(|o| if let Output::Transmit(t) = o { Some(t) } else { None }).collect()
}

pub(super) fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub(super) fn responder() -> Endpoint {
    let b = peer_config("site-a", "192.0.2.2", "192.0.2.1", false, false);
    Endpoint::new(
        EndpointConfig { ike_port: 500, natt_port: 4500, peers: vec![b], limits: Default::default() },
        Box::new(TestRng::new(5)),
    )
}

pub(super) fn n(kind: u16, data: &[u8]) -> Payload {
    Payload::Notify(Notify::new(kind, data.to_vec()))
}

pub(super) struct Peer {
    pub(super) spi_i: u64,
    pub(super) spi_r: u64,
    pub(super) ni: Vec<u8>,
    pub(super) nr: Vec<u8>,
    pub(super) init_req: Vec<u8>,
    pub(super) init_resp: Vec<u8>,
    pub(super) keys: Option<IkeKeys>,
    pub(super) mid: u32,
}

impl Peer {
    pub(super) fn seal(&self) -> SkCipher {
        SkCipher::new(EncrAlg::AesGcm16_256, None, &self.keys.as_ref().unwrap().sk_ei, &[]).unwrap()
    }
    pub(super) fn open(&self) -> SkCipher {
        SkCipher::new(EncrAlg::AesGcm16_256, None, &self.keys.as_ref().unwrap().sk_er, &[]).unwrap()
    }
    pub(super) fn request(&mut self, exch: u8, payloads: &[Payload]) -> Vec<u8> {
        let h = Header {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            next_payload: 0,
            exchange: exch,
            flags: flags::INITIATOR,
            message_id: self.mid,
            length: 0,
        };
        self.mid += 1;
        emit_encrypted(h, payloads, &self.seal(), &[0, 0, 0, 0, 0, 0, 0, self.mid as u8])
    }
    pub(super) fn decrypt(&self, data: &[u8]) -> Message {
        let mut m = Message::parse(data).unwrap();
        m.decrypt(data, &self.open()).unwrap();
        m
    }
}

/// strongSwan-like IKE_SA_INIT: an AES-CBC proposal first, then GCM with a 128-bit
/// variant, extra PRFs, unknown groups and an unknown transform type.
pub(super) fn strongswan_init(spi_i: u64, ke: &KeyExchange, ni: &[u8], ours: SocketAddr, rng: &mut TestRng) -> Vec<u8> {
    let mut fake = [0u8; 20];
    rng.fill(&mut fake);
    let props = vec![
        Proposal {
            num: 1,
            protocol: proto::IKE,
            spi: vec![],
            transforms: vec![
                Transform::new(ttype::ENCR, 12, Some(256)),
                Transform::new(ttype::INTEG, 12, None),
                Transform::new(ttype::PRF, 5, None),
                Transform::new(ttype::DH, 31, None),
            ],
        },
        Proposal {
            num: 2,
            protocol: proto::IKE,
            spi: vec![],
            transforms: vec![
                Transform::new(ttype::ENCR, 20, Some(128)),
                Transform::new(ttype::ENCR, 20, Some(256)),
                Transform::new(ttype::PRF, 7, None),
                Transform::new(ttype::PRF, 5, None),
                Transform::new(ttype::DH, 14, None),
                Transform::new(ttype::DH, 31, None),
                Transform::new(ttype::DH, 19, None),
                Transform::new(99, 1, None),
            ],
        },
    ];
    let h = Header {
        spi_i,
        spi_r: 0,
        next_payload: 0,
        exchange: exchange::IKE_SA_INIT,
        flags: flags::INITIATOR,
        message_id: 0,
        length: 0,
    };
    emit_plain(
        h,
        &[
            Payload::Sa(props),
            Payload::Ke { group: 31, data: ke.public_value() },
            Payload::Nonce(ni.to_vec()),
            n(16388, &fake),
            n(16389, &super::natd::hash(spi_i, 0, ours)),
            n(16430, &[]),
            n(16431, &[0, 2, 0, 3, 0, 4]),
            n(16406, &[]),
            Payload::Vendor(b"strongSwan".to_vec()),
        ],
    )
}

#[test]
fn responder_interoperates_with_a_strongswan_style_initiator_behind_nat() {
    let mut ep = responder();
    let mut rng = TestRng::new(77);
    let now = Timestamp::from_secs(5);
    let (b500, b4500) = (addr("192.0.2.2:500"), addr("192.0.2.2:4500"));
    let (a_mapped, a_natt) = (addr("192.0.2.1:1500"), addr("192.0.2.1:40000"));
    let ke = KeyExchange::generate(ipsec_types::DhGroup::Curve25519, &mut rng);
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
    peer.init_req = strongswan_init(peer.spi_i, &ke, &peer.ni, b500, &mut rng);
    ep.handle_datagram(now, b500, a_mapped, &peer.init_req);
    let outs = drain(&mut ep);
    let [t] = transmits(&outs)[..] else { panic!("one response: {outs:?}") };
    assert_eq!((t.local, t.remote), (b500, a_mapped));
    let m = Message::parse(&t.data).unwrap();
    let Some(Payload::Sa(chosen)) = m.payloads.iter().find(|p| matches!(p, Payload::Sa(_))) else { panic!() };
    assert_eq!(chosen[0].num, 2);
    assert_eq!(
        chosen[0].transforms,
        vec![Transform::new(1, 20, Some(256)), Transform::new(2, 5, None), Transform::new(4, 31, None)]
    );
    let Some(Payload::Ke { data: ke_r, .. }) = m.payloads.iter().find(|p| matches!(p, Payload::Ke { .. })) else {
        panic!()
    };
    let Some(Payload::Nonce(nr)) = m.payloads.iter().find(|p| matches!(p, Payload::Nonce(_))) else { panic!() };
    peer.spi_r = m.header.spi_r;
    peer.nr = nr.clone();
    peer.init_resp = t.data.clone();
    let shared = ke.agree(ke_r).unwrap();
    peer.keys = Some(derive_ike_keys(
        PrfAlg::HmacSha256,
        EncrAlg::AesGcm16_256,
        None,
        &shared,
        &peer.ni,
        &peer.nr,
        peer.spi_i,
        peer.spi_r,
    ));
    assert_eq!(ep.status()[0].state, "AUTHENTICATING");
    assert!(ep.status()[0].nat_detected, "faked NAT-D source detected");

    // IKE_AUTH from the floated, NAT-mapped port, with strongSwan's notifies.
    let idi = IdPayload::from_identity(&Identity::Fqdn("a.test".into()));
    let keys = peer.keys.take().unwrap();
    peer.keys = Some(derive_ike_keys(
        PrfAlg::HmacSha256,
        EncrAlg::AesGcm16_256,
        None,
        &shared,
        &peer.ni,
        &peer.nr,
        peer.spi_i,
        peer.spi_r,
    ));
    let auth = psk_auth(PrfAlg::HmacSha256, b"test-psk", &peer.init_req, &peer.nr, &keys.sk_pi, &idi.body());
    let ts = |s| TrafficSelector::parse_cidr(s).unwrap();
    let esp = Proposal {
        num: 1,
        protocol: proto::ESP,
        spi: vec![0xc0, 0xff, 0xee, 0x01],
        transforms: vec![
            Transform::new(ttype::ENCR, 20, Some(128)),
            Transform::new(ttype::ENCR, 20, Some(256)),
            Transform::new(ttype::ESN, 0, None),
        ],
    };
    let packet_ts = TrafficSelector { protocol: 1, ..ts("10.1.0.5/32") };
    let req = peer.request(
        exchange::IKE_AUTH,
        &[
            Payload::IdI(idi),
            n(16384, &[]),
            n(16394, &[]),
            n(16396, &[]),
            Payload::Auth { method: 2, data: auth.to_vec() },
            Payload::Sa(vec![esp]),
            Payload::TsI(vec![packet_ts, ts("10.1.0.0/16")]),
            Payload::TsR(vec![ts("10.2.0.0/16")]),
            n(16404, &[]),
            n(16417, &[]),
        ],
    );
    ep.handle_datagram(now, b4500, a_natt, &req);
    let outs = drain(&mut ep);
    let (inb, outb) = match &outs[..] {
        [Output::Datapath(DatapathCommand::InstallInbound(i)), Output::Datapath(DatapathCommand::InstallOutbound(o)), Output::Transmit(_), Output::Event(Event::IkeUp { .. }), Output::Event(Event::ChildUp { .. })] => {
            (i.clone(), o.clone())
        }
        other => panic!("unexpected outputs {other:?}"),
    };
    let enc = Some(UdpEncap { local_port: 4500, remote_port: 40000 });
    assert_eq!((inb.endpoints.encap, outb.endpoints.encap), (enc, enc));
    assert_eq!(outb.spi, Spi(0xc0ff_ee01));
    let (i2r, r2i) =
        derive_child_keys(PrfAlg::HmacSha256, &keys.sk_d, EncrAlg::AesGcm16_256, None, None, &peer.ni, &peer.nr);
    assert_eq!(inb.key.key(), &i2r[..32]);
    assert_eq!(outb.key.key(), &r2i[..32]);
    let [t] = transmits(&outs)[..] else { panic!() };
    assert_eq!((t.local, t.remote), (b4500, a_natt), "answered where the request came from");
    let m = peer.decrypt(&t.data);
    assert_eq!(m.header.flags, flags::RESPONSE);
    let Some(Payload::IdR(idr)) = m.payloads.iter().find(|p| matches!(p, Payload::IdR(_))) else { panic!() };
    assert_eq!(idr.identity(), Some(Identity::Fqdn("b.test".into())));
    let expect = psk_auth(PrfAlg::HmacSha256, b"test-psk", &peer.init_resp, &peer.ni, &keys.sk_pr, &idr.body());
    assert!(m.payloads.contains(&Payload::Auth { method: 2, data: expect.to_vec() }));
    assert!(m.payloads.contains(&Payload::TsI(vec![ts("10.1.0.0/24")])), "narrowed, packet TS folded in");
    assert!(m.payloads.contains(&Payload::TsR(vec![ts("10.2.0.0/24")])));
    let Some(Payload::Sa(esp)) = m.payloads.iter().find(|p| matches!(p, Payload::Sa(_))) else { panic!() };
    assert_eq!(esp[0].spi, inb.spi.0.to_be_bytes().to_vec());
    assert_eq!(esp[0].transforms, vec![Transform::new(1, 20, Some(256)), Transform::new(5, 0, None)]);

    // Liveness check, answered; its retransmission answered from the cache.
    let live = peer.request(exchange::INFORMATIONAL, &[]);
    ep.handle_datagram(now, b4500, a_natt, &live);
    let r1 = drain(&mut ep);
    let [t1] = transmits(&r1)[..] else { panic!() };
    assert!(peer.decrypt(&t1.data).payloads.is_empty());
    ep.handle_datagram(now, b4500, a_natt, &live);
    let r2 = drain(&mut ep);
    assert_eq!(transmits(&r2)[0].data, t1.data);

    // An unknown critical payload is refused; the SA stays.
    let crit = Payload::Unknown { ptype: 99, critical: true, body: vec![] };
    let req = peer.request(exchange::INFORMATIONAL, &[crit]);
    ep.handle_datagram(now, b4500, a_natt, &req);
    let r = drain(&mut ep);
    assert_eq!(peer.decrypt(&transmits(&r)[0].data).payloads, vec![n(1, &[99])]);

    // The peer deletes the CHILD SA: we remove ours and answer with our SPI.
    let del = Payload::Delete(Delete { protocol: 3, spi_size: 4, spis: vec![vec![0xc0, 0xff, 0xee, 0x01]] });
    let req = peer.request(exchange::INFORMATIONAL, &[del]);
    ep.handle_datagram(now, b4500, a_natt, &req);
    let r = drain(&mut ep);
    assert!(matches!(&r[..3], [
        Output::Datapath(DatapathCommand::Remove { spi: o, direction: Direction::Outbound, .. }),
        Output::Datapath(DatapathCommand::Remove { spi: i, direction: Direction::Inbound, .. }),
        Output::Event(Event::ChildDown { .. }),
    ] if *o == outb.spi && *i == inb.spi));
    let m = peer.decrypt(&transmits(&r)[0].data);
    assert_eq!(
        m.payloads,
        vec![Payload::Delete(Delete { protocol: 3, spi_size: 4, spis: vec![inb.spi.0.to_be_bytes().to_vec()] })]
    );

    // The peer deletes the IKE SA.
    let del = Payload::Delete(Delete { protocol: 1, spi_size: 0, spis: vec![] });
    let req = peer.request(exchange::INFORMATIONAL, &[del]);
    ep.handle_datagram(now, b4500, a_natt, &req);
    let r = drain(&mut ep);
    assert!(peer.decrypt(&transmits(&r)[0].data).payloads.is_empty());
    assert!(matches!(r.last(), Some(Output::Event(Event::IkeDown { .. }))));
    assert!(ep.is_idle());
}

#[test]
fn initiator_resends_ike_sa_init_with_the_cookie() {
    let a = peer_config("site-b", "192.0.2.1", "192.0.2.2", true, true);
    let mut ep = Endpoint::new(
        EndpointConfig { ike_port: 500, natt_port: 4500, peers: vec![a], limits: Default::default() },
        Box::new(TestRng::new(9)),
    );
    ep.handle_timeout(Timestamp::ZERO);
    let first = drain(&mut ep);
    let [t] = transmits(&first)[..] else { panic!() };
    let req = Message::parse(&t.data).unwrap();
    let h = Header {
        spi_i: req.header.spi_i,
        spi_r: 0,
        next_payload: 0,
        exchange: exchange::IKE_SA_INIT,
        flags: flags::RESPONSE,
        message_id: 0,
        length: 0,
    };
    let cookie = vec![0xab; 16];
    ep.handle_datagram(Timestamp::ZERO, t.local, t.remote, &emit_plain(h, &[n(16390, &cookie)]));
    let second = drain(&mut ep);
    let [t2] = transmits(&second)[..] else { panic!() };
    let again = Message::parse(&t2.data).unwrap();
    assert_eq!(again.header.spi_i, req.header.spi_i);
    assert_eq!(again.header.message_id, 0);
    assert_eq!(again.payloads[0], n(16390, &cookie));
    assert_eq!(&again.payloads[1..], &req.payloads[..], "same SA, KE, nonce and NAT-D otherwise");
}

#[test]
fn responder_refuses_unknown_critical_payloads_and_ignores_unknown_peers() {
    let mut ep = responder();
    let mut rng = TestRng::new(1);
    let ke = KeyExchange::generate(ipsec_types::DhGroup::Curve25519, &mut rng);
    let mut req = strongswan_init(0x2222, &ke, &[4; 32], addr("192.0.2.2:500"), &mut rng);
    // Unknown addresses get nothing.
    ep.handle_datagram(Timestamp::ZERO, addr("192.0.2.2:500"), addr("198.51.100.7:500"), &req);
    assert!(drain(&mut ep).is_empty());
    // Make the vendor ID payload (last) an unknown critical payload type 99.
    let m = Message::parse(&req).unwrap();
    let mut off = crate::message::HEADER_LEN;
    let mut next = m.header.next_payload;
    let mut prev_hdr = 16;
    while next != 43 {
        prev_hdr = off;
        next = req[off];
        let len = u16::from_be_bytes([req[off + 2], req[off + 3]]) as usize;
        off += len;
    }
    req[prev_hdr] = 99;
    req[off + 1] = 0x80;
    ep.handle_datagram(Timestamp::ZERO, addr("192.0.2.2:500"), addr("192.0.2.1:500"), &req);
    let outs = drain(&mut ep);
    let resp = Message::parse(&transmits(&outs)[0].data).unwrap();
    assert_eq!(resp.payloads, vec![n(1, &[99])]);
    assert!(ep.is_idle());
}

#[test]
fn the_vpngw_vendor_id_is_its_documented_hash_and_matches_only_exactly() {
    use sha2::{Digest, Sha256};
    let want = Sha256::digest(b"vpngw esp-in-udp v1");
    assert_eq!(crate::VPNGW_VENDOR_ID[..], want[..16]);
    let h = Header {
        spi_i: 1,
        spi_r: 0,
        next_payload: 0,
        exchange: exchange::IKE_SA_INIT,
        flags: 0,
        message_id: 0,
        length: 0,
    };
    let vid = crate::VPNGW_VENDOR_ID.to_vec();
    let msg = |vids: Vec<Vec<u8>>| {
        Message::parse(&emit_plain(h, &vids.into_iter().map(Payload::Vendor).collect::<Vec<_>>())).unwrap()
    };
    let mut peer = peer_config("site-a", "192.0.2.2", "192.0.2.1", false, false);
    peer.announce_vpngw = true;
    let no_nat = Some((false, false));
    let reason = |peer: &crate::PeerConfig, m: &Message| super::ike_init::encap_reason(peer, no_nat, m);
    // Ours among others, or several times: the same single decision.
    for m in [msg(vec![b"strongSwan".to_vec(), vid.clone()]), msg(vec![vid.clone(); 5])] {
        assert_eq!(reason(&peer, &m), Some(crate::EncapReason::VpngwPeer));
    }
    // Longer, shorter, empty or other Vendor IDs are somebody else's.
    let longer = [&vid[..], &[0u8; 4000][..]].concat();
    for m in [msg(vec![longer]), msg(vec![vid[..15].to_vec(), vec![]]), msg(vec![b"strongSwan".to_vec()]), msg(vec![])]
    {
        assert_eq!(reason(&peer, &m), None);
    }
    // Without our own announcement the peer's changes nothing; a NAT or our own force
    // says so first.
    peer.announce_vpngw = false;
    assert_eq!(reason(&peer, &msg(vec![vid.clone()])), None);
    peer.announce_vpngw = true;
    assert_eq!(
        super::ike_init::encap_reason(&peer, Some((true, false)), &msg(vec![vid.clone()])),
        Some(crate::EncapReason::Nat)
    );
    peer.force_encap = true;
    assert_eq!(reason(&peer, &msg(vec![vid])), Some(crate::EncapReason::Forced));
}
