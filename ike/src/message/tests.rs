use super::payload::{Delete, IdPayload, Notify, Proposal, Transform};
use super::*;
use crate::crypto::SkCipher;
use ipsec_types::{DhGroup, EncrAlg, Identity, TrafficSelector};
use proptest::prelude::*;

fn header(exchange: u8) -> Header {
    Header {
        spi_i: 0x0102_0304_0506_0708,
        spi_r: 0x1112_1314_1516_1718,
        next_payload: 0,
        exchange,
        flags: flags::INITIATOR,
        message_id: 7,
        length: 0,
    }
}

fn samples() -> Vec<Payload> {
    let ts = |s| TrafficSelector::parse_cidr(s).unwrap();
    vec![
        Payload::Sa(vec![
            Proposal {
                num: 1,
                protocol: 1,
                spi: vec![],
                transforms: vec![
                    Transform::new(1, 20, Some(256)),
                    Transform::new(2, 5, None),
                    Transform::new(4, 31, None),
                ],
            },
            Proposal { num: 2, protocol: 3, spi: vec![1, 2, 3, 4], transforms: vec![Transform::new(5, 0, None)] },
        ]),
        Payload::Ke { group: 31, data: vec![9; 32] },
        Payload::Nonce(vec![7; 32]),
        Payload::IdI(IdPayload::from_identity(&Identity::Fqdn("a.test".into()))),
        Payload::IdR(IdPayload::from_identity(&Identity::Ipv6("2001:db8::1".parse().unwrap()))),
        Payload::Auth { method: 2, data: vec![5; 32] },
        Payload::Notify(Notify::new(16388, vec![1; 20])),
        Payload::Notify(Notify { protocol: 3, spi: vec![0, 0, 1, 0], kind: 44, data: vec![] }),
        Payload::Delete(Delete { protocol: 3, spi_size: 4, spis: vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8]] }),
        Payload::Delete(Delete { protocol: 1, spi_size: 0, spis: vec![] }),
        Payload::Vendor(b"vendor-id".to_vec()),
        Payload::TsI(vec![ts("10.1.0.0/24"), ts("2001:db8::/64")]),
        Payload::TsR(vec![TrafficSelector { protocol: 6, start_port: 80, end_port: 80, ..ts("10.2.0.7/32") }]),
        Payload::Unknown { ptype: 47, critical: false, body: vec![1, 0, 0, 0] },
    ]
}

#[test]
fn every_payload_type_round_trips_alone_and_chained() {
    for p in samples() {
        let bytes = emit_plain(header(exchange::IKE_SA_INIT), std::slice::from_ref(&p));
        let m = Message::parse(&bytes).unwrap();
        assert_eq!(m.payloads, vec![p.clone()], "round trip of {p:?}");
        assert_eq!(m.header.length as usize, bytes.len());
    }
    let all = samples();
    let bytes = emit_plain(header(exchange::IKE_AUTH), &all);
    let m = Message::parse(&bytes).unwrap();
    assert_eq!(m.payloads, all);
    assert_eq!(m.header.message_id, 7);
    assert!(m.header.sent_by_initiator() && !m.header.is_response());
}

#[test]
fn sk_payload_round_trips_and_detects_tampering() {
    let key = [3u8; 36];
    let c = SkCipher::new(EncrAlg::AesGcm16_256, &key).unwrap();
    let all = samples();
    let bytes = emit_encrypted(header(exchange::IKE_AUTH), &all, &c, [0, 0, 0, 0, 0, 0, 0, 1]);
    let mut m = Message::parse(&bytes).unwrap();
    assert!(m.payloads.is_empty());
    assert_eq!(m.sk.map(|s| s.1), Some(HEADER_LEN));
    m.decrypt(&bytes, &c).unwrap();
    assert_eq!(m.payloads, all);
    // Empty (liveness) message.
    let bytes = emit_encrypted(header(exchange::INFORMATIONAL), &[], &c, [0; 8]);
    let mut m = Message::parse(&bytes).unwrap();
    m.decrypt(&bytes, &c).unwrap();
    assert!(m.payloads.is_empty());
    // Any flipped bit, in the header (AAD) or the ciphertext, fails.
    let bytes = emit_encrypted(header(exchange::IKE_AUTH), &all, &c, [1; 8]);
    for i in [0, 20, 29, 33, 45, bytes.len() - 1] {
        let mut t = bytes.clone();
        t[i] ^= 0x10;
        if let Ok(mut m) = Message::parse(&t) {
            assert!(m.decrypt(&t, &c).is_err(), "tamper at {i}");
        }
    }
}

#[test]
fn header_checks() {
    let bytes = emit_plain(header(exchange::IKE_SA_INIT), &[]);
    assert_eq!(bytes.len(), HEADER_LEN);
    assert_eq!(Message::parse(&bytes[..27]).unwrap_err(), ParseError::Truncated);
    let mut v1 = bytes.clone();
    v1[17] = 0x10;
    assert_eq!(Message::parse(&v1).unwrap_err(), ParseError::Version(0x10));
    let mut long = bytes.clone();
    long[27] = 29;
    assert_eq!(Message::parse(&long).unwrap_err(), ParseError::Truncated);
}

#[test]
fn unknown_transforms_attributes_and_ts_types_are_kept_or_skipped() {
    // Proposal with a transform carrying a TLV attribute and a TV attribute of unknown type.
    let mut body = vec![0, 0, 0, 0, 1, 1, 0, 2];
    let t1 = [3u8, 0, 0, 16, 1, 0, 0, 20, 0x80, 14, 1, 0, 0x00, 99, 0, 0];
    let t2 = [0u8, 0, 0, 12, 1, 0, 0, 20, 0x80, 99, 0, 1];
    body.extend_from_slice(&t1);
    body.extend_from_slice(&t2);
    let len = body.len() as u8;
    body[3] = len;
    let Some(Payload::Sa(p)) = Payload::parse(ptype::SA, false, &body) else { panic!() };
    assert_eq!(p[0].transforms.len(), 2);
    assert!(p[0].transforms.iter().all(|t| t.unknown_attrs));
    assert_eq!(p[0].transforms[0].key_len, Some(256));
    // A TS payload with an unknown TS type (9) next to an IPv4 range.
    let mut ts = vec![2, 0, 0, 0, 9, 0, 0, 8, 1, 2, 3, 4];
    ts.extend_from_slice(&[7, 0, 0, 16, 0, 0, 255, 255, 10, 0, 0, 0, 10, 0, 0, 255]);
    let Some(Payload::TsI(t)) = Payload::parse(ptype::TSI, false, &ts) else { panic!() };
    assert_eq!(t, vec![TrafficSelector::parse_cidr("10.0.0.0/24").unwrap()]);
}

#[test]
fn critical_unknown_payload_is_flagged() {
    let bytes = emit_plain(header(exchange::IKE_AUTH), &[Payload::Unknown { ptype: 99, critical: true, body: vec![] }]);
    assert_eq!(bytes[HEADER_LEN + 1], 0x80);
    let m = Message::parse(&bytes).unwrap();
    assert_eq!(m.payloads, vec![Payload::Unknown { ptype: 99, critical: true, body: vec![] }]);
}

#[test]
fn invalid_ke_notify_names_the_wanted_group() {
    let n = |data: &[u8]| Notify::new(crate::error::notify::INVALID_KE_PAYLOAD, data.to_vec());
    // Two octets, big-endian (as we emit them), whether or not further data follows.
    assert_eq!(n(&payload::u16_data(31)).dh_group(), Some(31));
    assert_eq!(n(&[0x00, 0x13, 0xff]).dh_group(), Some(19));
    assert_eq!(n(&payload::u16_data(31)).dh_group().and_then(DhGroup::from_iana), Some(DhGroup::Curve25519));
    // Short data: no group.
    assert_eq!(n(&[]).dh_group(), None);
    assert_eq!(n(&[0x13]).dh_group(), None);
    // A number we do not know is returned as sent; mapping it to a group gives nothing.
    assert_eq!(n(&[0xfe, 0xdc]).dh_group(), Some(0xfedc));
    assert_eq!(n(&[0xfe, 0xdc]).dh_group().and_then(DhGroup::from_iana), None);
}

proptest! {
    #[test]
    fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Message::parse(&data);
        for pt in [33u8, 34, 35, 39, 40, 41, 42, 44] {
            let _ = Payload::parse(pt, false, &data);
        }
    }

    #[test]
    fn parse_never_panics_with_a_plausible_header(body in proptest::collection::vec(any::<u8>(), 0..400), next in 30u8..50) {
        let mut data = emit_plain(header(exchange::IKE_AUTH), &[]);
        data[16] = next;
        data.extend_from_slice(&body);
        let l = u32::try_from(data.len()).unwrap().to_be_bytes();
        data[24..28].copy_from_slice(&l);
        if let Ok(mut m) = Message::parse(&data) {
            let c = SkCipher::new(EncrAlg::AesGcm16_128, &[1u8; 20]).unwrap();
            let _ = m.decrypt(&data, &c);
        }
    }

    #[test]
    fn notify_and_nonce_round_trip(kind in any::<u16>(), data in proptest::collection::vec(any::<u8>(), 0..100)) {
        let p = vec![Payload::Notify(Notify::new(kind, data.clone())), Payload::Nonce(data)];
        let bytes = emit_plain(header(exchange::INFORMATIONAL), &p);
        prop_assert_eq!(Message::parse(&bytes).unwrap().payloads, p);
    }
}
