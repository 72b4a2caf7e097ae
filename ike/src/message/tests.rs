use super::payload::{proto, ttype, Delete, IdPayload, Notify, Proposal, Transform};
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

/// What parsing `p` gives: the same, except that an unknown payload's body is not kept.
fn parsed(p: &Payload) -> Payload {
    match p {
        Payload::Unknown { ptype, critical, .. } => {
            Payload::Unknown { ptype: *ptype, critical: *critical, body: vec![] }
        }
        p => p.clone(),
    }
}

fn cipher() -> SkCipher {
    SkCipher::new(EncrAlg::AesGcm16_256, None, &[3u8; 36], &[]).unwrap()
}

/// Parses and decrypts `bytes` with `cipher()`.
fn open(bytes: &[u8]) -> Result<Message, ParseError> {
    let mut m = Message::parse(bytes)?;
    m.decrypt(bytes, &cipher())?;
    Ok(m)
}

/// One payload on the wire: generic header (next type, flags, length) and body.
fn raw(next: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![next, 0];
    v.extend_from_slice(&u16::try_from(body.len() + 4).unwrap().to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// A message with header `h` (its next payload `first`) and the raw chain `chain`.
fn raw_msg(mut h: Header, first: u8, chain: &[u8]) -> Vec<u8> {
    h.next_payload = first;
    let mut out = emit_plain(h, &[]);
    out[16] = first;
    out.extend_from_slice(chain);
    let l = u32::try_from(out.len()).unwrap().to_be_bytes();
    out[24..28].copy_from_slice(&l);
    out
}

/// `n` payloads of type `t` with body `body`, chained.
fn repeat(t: u8, n: usize, body: &[u8]) -> Vec<u8> {
    (0..n).flat_map(|i| raw(if i + 1 == n { 0 } else { t }, body)).collect()
}

/// An IKE_AUTH message whose SK payload holds the raw chain `chain` (first type `first`).
fn sealed(first: u8, chain: &[u8]) -> Vec<u8> {
    let mut pt = chain.to_vec();
    pt.push(0);
    seal_plaintext(header(exchange::IKE_AUTH), first, pt, &cipher(), &[0; 8])
}

#[test]
fn every_payload_type_round_trips_alone_and_chained() {
    let init_ok = |p: &Payload| Chain::Init.allows(p.ptype()).is_ok();
    for p in samples() {
        let bytes = emit_encrypted(header(exchange::IKE_AUTH), std::slice::from_ref(&p), &cipher(), &[0; 8]);
        assert_eq!(open(&bytes).unwrap().payloads, vec![parsed(&p)], "round trip of {p:?}");
        if init_ok(&p) {
            let bytes = emit_plain(header(exchange::IKE_SA_INIT), std::slice::from_ref(&p));
            let m = Message::parse(&bytes).unwrap();
            assert_eq!(m.payloads, vec![parsed(&p)], "round trip of {p:?}");
            assert_eq!(m.header.length as usize, bytes.len());
        }
    }
    let all = samples();
    let bytes = emit_encrypted(header(exchange::IKE_AUTH), &all, &cipher(), &[0; 8]);
    let m = open(&bytes).unwrap();
    assert_eq!(m.payloads, all.iter().map(parsed).collect::<Vec<_>>());
    assert_eq!(m.header.message_id, 7);
    assert!(m.header.sent_by_initiator() && !m.header.is_response());
    let clear: Vec<_> = all.into_iter().filter(init_ok).collect();
    assert_eq!(clear.len(), 6, "SA, KE, Nonce, 2 Notify, Vendor, unknown");
    let bytes = emit_plain(header(exchange::IKE_SA_INIT), &clear);
    assert_eq!(Message::parse(&bytes).unwrap().payloads, clear.iter().map(parsed).collect::<Vec<_>>());
}

#[test]
fn sk_payload_round_trips_and_detects_tampering() {
    let key = [3u8; 36];
    let c = SkCipher::new(EncrAlg::AesGcm16_256, None, &key, &[]).unwrap();
    let all = samples();
    let bytes = emit_encrypted(header(exchange::IKE_AUTH), &all, &c, &[0, 0, 0, 0, 0, 0, 0, 1]);
    let mut m = Message::parse(&bytes).unwrap();
    assert!(m.payloads.is_empty());
    assert_eq!(m.sk.map(|s| s.1), Some(HEADER_LEN));
    m.decrypt(&bytes, &c).unwrap();
    assert_eq!(m.payloads, all.iter().map(parsed).collect::<Vec<_>>());
    // Empty (liveness) message.
    let bytes = emit_encrypted(header(exchange::INFORMATIONAL), &[], &c, &[0; 8]);
    let mut m = Message::parse(&bytes).unwrap();
    m.decrypt(&bytes, &c).unwrap();
    assert!(m.payloads.is_empty());
    // Any flipped bit, in the header (AAD) or the ciphertext, fails.
    let bytes = emit_encrypted(header(exchange::IKE_AUTH), &all, &c, &[1; 8]);
    for i in [0, 20, 29, 33, 45, bytes.len() - 1] {
        let mut t = bytes.clone();
        t[i] ^= 0x10;
        if let Ok(mut m) = Message::parse(&t) {
            assert!(m.decrypt(&t, &c).is_err(), "tamper at {i}");
        }
    }
}

/// One SK cipher of every kind: GCM, ChaCha20-Poly1305, AES-CBC with each HMAC.
fn all_ciphers() -> Vec<SkCipher> {
    use ipsec_types::IntegAlg::*;
    let mut v = vec![
        SkCipher::new(EncrAlg::AesGcm16_128, None, &[5u8; 20], &[]).unwrap(),
        SkCipher::new(EncrAlg::ChaCha20Poly1305, None, &[6u8; 36], &[]).unwrap(),
    ];
    for (encr, integ) in [
        (EncrAlg::AesCbc128, HmacSha1_96),
        (EncrAlg::AesCbc192, HmacSha384_192),
        (EncrAlg::AesCbc256, HmacSha256_128),
        (EncrAlg::AesCbc256, HmacSha512_256),
    ] {
        v.push(SkCipher::new(encr, Some(integ), &vec![7u8; encr.key_len()], &vec![8u8; integ.key_len()]).unwrap());
    }
    v
}

#[test]
fn every_sk_cipher_round_trips_pads_and_detects_tampering() {
    let all = samples();
    for c in all_ciphers() {
        let what = format!("{:?} {:?}", c.encr(), c.integ());
        let iv: Vec<u8> = (0..c.iv_len() as u8).collect();
        for payloads in [&all[..], &all[..1], &[]] {
            let bytes = emit_encrypted(header(exchange::IKE_AUTH), payloads, &c, &iv);
            // Header, SK header, IV, whole blocks of plaintext, ICV.
            let body = bytes.len() - HEADER_LEN - 4 - c.iv_len() - c.icv_len();
            assert_eq!(body % c.block_len(), 0, "{what}");
            assert_eq!(&bytes[HEADER_LEN + 4..HEADER_LEN + 4 + c.iv_len()], &iv[..], "{what}: IV sent as given");
            let mut m = Message::parse(&bytes).unwrap();
            m.decrypt(&bytes, &c).unwrap();
            assert_eq!(m.payloads, payloads.iter().map(parsed).collect::<Vec<_>>(), "{what}");
            // Any flipped bit in the header (AAD), IV, ciphertext or ICV fails.
            for i in (0..bytes.len()).step_by(7).chain([bytes.len() - 1]) {
                let mut t = bytes.clone();
                t[i] ^= 0x04;
                if let Ok(mut m) = Message::parse(&t) {
                    assert!(m.decrypt(&t, &c).is_err(), "{what}: tamper at {i}");
                }
            }
            // A cipher of another suite (or key) does not open it.
            for other in all_ciphers().iter().filter(|o| (o.encr(), o.integ()) != (c.encr(), c.integ())) {
                let mut m = Message::parse(&bytes).unwrap();
                let e = m.decrypt(&bytes, other).unwrap_err();
                assert!(matches!(e, ParseError::Decrypt | ParseError::Truncated), "{what}: {e}");
            }
        }
    }
}

#[test]
fn pad_plaintext_fills_whole_blocks() {
    for block in [1usize, 16] {
        for len in 0..40 {
            let mut pt = vec![0xee; len];
            pad_plaintext(&mut pt, block);
            assert_eq!(pt.len() % block, 0);
            let pad = usize::from(*pt.last().unwrap());
            assert_eq!(pt.len(), len + pad + 1, "block {block} len {len}");
            assert!(pad < block.max(1), "no more padding than needed");
        }
    }
}

#[test]
fn cbc_sk_payload_length_and_padding_checks() {
    let c = SkCipher::new(EncrAlg::AesCbc128, Some(ipsec_types::IntegAlg::HmacSha256_128), &[1; 16], &[2; 32]).unwrap();
    let h = header(exchange::INFORMATIONAL);
    let iv = [9u8; 16];
    let pt = |pad: &[u8]| [raw(0, b"vid"), pad.to_vec()].concat();
    let open_c = |bytes: &[u8]| {
        let mut m = Message::parse(bytes)?;
        m.decrypt(bytes, &c).map(|()| m)
    };
    // Any padding that fills the block is accepted (RFC 7296 3.14: the receiver MUST
    // accept any length that results in proper alignment), whatever it holds.
    for pad in [8usize, 24, 200] {
        let mut p = pt(&vec![0x5a; pad]);
        p.push(u8::try_from(pad).unwrap());
        assert_eq!(p.len() % 16, 0);
        let bytes = seal_plaintext(h, ptype::VENDOR, p, &c, &iv);
        assert_eq!(open_c(&bytes).unwrap().payloads, vec![Payload::Vendor(b"vid".to_vec())], "pad {pad}");
    }
    // A Pad Length beyond the plaintext: refused after the ICV verified.
    let mut p = pt(&[0; 8]);
    p.push(250);
    let bytes = seal_plaintext(h, ptype::VENDOR, p, &c, &iv);
    assert_eq!(open_c(&bytes).unwrap_err(), ParseError::Payload(ptype::SK));
    // Ciphertext not whole blocks, or no block at all: refused (as undecryptable).
    let good = seal_plaintext(h, ptype::VENDOR, [pt(&[0; 8]), vec![8]].concat(), &c, &iv);
    for cut in [1usize, 15, 16, 17] {
        let sk_len = good.len() - HEADER_LEN - cut;
        let mut t = good[..good.len() - cut].to_vec();
        let total = u32::try_from(t.len()).unwrap().to_be_bytes();
        t[24..28].copy_from_slice(&total);
        t[HEADER_LEN + 2..HEADER_LEN + 4].copy_from_slice(&u16::try_from(sk_len).unwrap().to_be_bytes());
        assert!(open_c(&t).is_err(), "cut {cut}");
    }
    // Too short for IV and ICV.
    let bytes = raw_msg(h, ptype::SK, &raw(0, &[0; 32]));
    let mut m = Message::parse(&bytes).unwrap();
    assert_eq!(m.decrypt(&bytes, &c).unwrap_err(), ParseError::Truncated);
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
    // A datagram longer than the message it carries.
    let mut extra = bytes.clone();
    extra.push(0);
    assert_eq!(Message::parse(&extra).unwrap_err(), ParseError::TrailingBytes);
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
    let p = Payload::Unknown { ptype: 99, critical: true, body: vec![1, 2, 3] };
    let bytes = emit_plain(header(exchange::IKE_SA_INIT), &[p]);
    assert_eq!(bytes[HEADER_LEN + 1], 0x80);
    let m = Message::parse(&bytes).unwrap();
    // Its body is not kept: nobody reads it.
    assert_eq!(m.payloads, vec![Payload::Unknown { ptype: 99, critical: true, body: vec![] }]);
}

#[test]
fn invalid_ke_notify_names_the_wanted_group() {
    let n = |data: &[u8]| Notify::new(crate::notify::INVALID_KE_PAYLOAD, data.to_vec());
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
            let c = SkCipher::new(EncrAlg::AesGcm16_128, None, &[1u8; 20], &[]).unwrap();
            let _ = m.decrypt(&data, &c);
        }
    }

    #[test]
    fn notify_and_nonce_round_trip(kind in any::<u16>(), data in proptest::collection::vec(any::<u8>(), 0..100)) {
        let p = vec![Payload::Notify(Notify::new(kind, data.clone())), Payload::Nonce(data)];
        let bytes = emit_plain(header(exchange::IKE_SA_INIT), &p);
        prop_assert_eq!(Message::parse(&bytes).unwrap().payloads, p);
    }
}

/// The Delete bomb: Delete payloads with SPI size 0 and 65535 SPIs, 4-octet bodies,
/// 180 of them in one 1,472-octet datagram.
fn delete_bomb(n: usize) -> Vec<u8> {
    repeat(ptype::DELETE, n, &[proto::IKE, 0, 0xff, 0xff])
}

#[test]
fn delete_bomb_is_refused_or_reduced_to_nothing() {
    let chain = delete_bomb(180);
    let bytes = raw_msg(header(exchange::INFORMATIONAL), ptype::DELETE, &chain);
    assert_eq!(bytes.len(), 1468);
    // In cleartext a Delete is never parsed; in IKE_SA_INIT neither.
    assert_eq!(Message::parse(&bytes).unwrap_err(), ParseError::Cleartext(ptype::DELETE));
    let bytes = raw_msg(header(exchange::IKE_SA_INIT), ptype::DELETE, &chain);
    assert_eq!(Message::parse(&bytes).unwrap_err(), ParseError::Cleartext(ptype::DELETE));
    // Inside the SK payload: more payloads than a chain may hold.
    assert_eq!(open(&sealed(ptype::DELETE, &chain)).unwrap_err(), ParseError::TooManyPayloads);
    // As many as allowed: each names no SPI (SPI size 0), and nothing is allocated for them.
    let m = open(&sealed(ptype::DELETE, &delete_bomb(MAX_PAYLOADS))).unwrap();
    assert_eq!(m.payloads.len(), MAX_PAYLOADS);
    for p in &m.payloads {
        assert_eq!(p, &Payload::Delete(Delete { protocol: proto::IKE, spi_size: 0, spis: vec![] }));
    }
}

#[test]
fn delete_spis_must_fill_the_body_exactly() {
    let del = |body: &[u8]| Payload::parse(ptype::DELETE, false, body);
    let esp = |n: u16, spis: &[u8]| {
        let mut b = vec![proto::ESP, 4];
        b.extend_from_slice(&n.to_be_bytes());
        b.extend_from_slice(spis);
        b
    };
    let two = [1, 2, 3, 4, 5, 6, 7, 8];
    assert_eq!(
        del(&esp(2, &two)),
        Some(Payload::Delete(Delete {
            protocol: proto::ESP,
            spi_size: 4,
            spis: vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8]]
        }))
    );
    assert_eq!(del(&esp(3, &two)), None, "count beyond the SPIs present");
    assert_eq!(del(&esp(1, &two)), None, "bytes after the counted SPIs");
    assert_eq!(del(&esp(0xffff, &two)), None);
    assert_eq!(del(&esp(2, &two[..7])), None, "a partial SPI");
    assert_eq!(del(&esp(0, &[])), Some(Payload::Delete(Delete { protocol: proto::ESP, spi_size: 4, spis: vec![] })));
    // SPI size must fit the protocol: IKE 0, AH and ESP 4; no other protocol.
    assert_eq!(del(&[proto::ESP, 0, 0, 5]), None);
    assert_eq!(del(&[proto::ESP, 8, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8]), None);
    assert_eq!(del(&[proto::IKE, 4, 0, 1, 1, 2, 3, 4]), None);
    assert_eq!(del(&[proto::IKE, 8, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8]), None);
    assert_eq!(del(&[0, 0, 0, 0]), None);
    assert_eq!(del(&[4, 4, 0, 1, 1, 2, 3, 4]), None);
    assert!(matches!(del(&[proto::AH, 4, 0, 1, 1, 2, 3, 4]), Some(Payload::Delete(d)) if d.spis.len() == 1));
    // SPI size 0: the count names nothing, and the body must end there.
    assert_eq!(
        del(&[proto::IKE, 0, 0xff, 0xff]),
        Some(Payload::Delete(Delete { protocol: 1, spi_size: 0, spis: vec![] }))
    );
    assert_eq!(del(&[proto::IKE, 0, 0, 0, 9]), None);
    assert_eq!(del(&[proto::IKE, 0, 0]), None);
}

#[test]
fn traffic_selector_count_must_match_the_selectors_present() {
    let v4 = [7u8, 6, 0, 16, 0, 0, 255, 255, 10, 0, 0, 0, 10, 0, 0, 255];
    let ts = |n: u8, sels: &[&[u8]]| {
        let mut b = vec![n, 0, 0, 0];
        for s in sels {
            b.extend_from_slice(s);
        }
        Payload::parse(ptype::TSI, false, &b)
    };
    let one = TrafficSelector { protocol: 6, ..TrafficSelector::parse_cidr("10.0.0.0/24").unwrap() };
    assert_eq!(ts(1, &[&v4]), Some(Payload::TsI(vec![one])));
    assert_eq!(ts(2, &[&v4, &v4]), Some(Payload::TsI(vec![one, one])));
    assert_eq!(ts(2, &[&v4]), None, "count beyond the selectors present");
    assert_eq!(ts(1, &[&v4, &v4]), None, "a selector beyond the count");
    assert_eq!(ts(255, &[]), None);
    assert_eq!(ts(0, &[]), Some(Payload::TsI(vec![])));
    assert_eq!(ts(0, &[&[0]]), None, "trailing byte");
    // A known type has its fixed length: 16 (IPv4) or 40 (IPv6).
    let mut long = v4.to_vec();
    long[3] = 20;
    long.extend_from_slice(&[0; 4]);
    assert_eq!(ts(1, &[&long]), None);
    let mut v6 = vec![8u8, 0, 0, 16];
    v6.extend_from_slice(&[0; 12]);
    assert_eq!(ts(1, &[&v6]), None, "IPv6 type with an IPv4 length");
    // An unknown type is skipped by its length, which may be as short as its header,
    // and still counts.
    assert_eq!(ts(2, &[&[99, 0, 0, 4], &v4]), Some(Payload::TsI(vec![one])));
    assert_eq!(ts(1, &[&[99, 0, 0, 4], &v4]), None);
    assert_eq!(ts(1, &[&[99, 0, 0, 3]]), None);
    assert_eq!(ts(1, &[&[99, 0, 0, 9, 1]]), None);
}

/// An SA payload body with one proposal: protocol, SPI, Num Transforms as given, and
/// the raw transform bytes.
fn proposal(protocol: u8, spi: &[u8], ntrans: u8, transforms: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 0, 0, 1, protocol, u8::try_from(spi.len()).unwrap(), ntrans];
    b.extend_from_slice(spi);
    b.extend_from_slice(transforms);
    let l = u16::try_from(b.len()).unwrap().to_be_bytes();
    b[2..4].copy_from_slice(&l);
    b
}

#[test]
fn proposal_and_transform_counts_and_lengths_must_match() {
    let sa = |b: &[u8]| Payload::parse(ptype::SA, false, b);
    let t = |last: u8| [last, 0, 0, 8, ttype::ENCR, 0, 0, 20];
    let two: Vec<u8> = [t(3), t(0)].concat();
    assert!(matches!(sa(&proposal(proto::IKE, &[], 2, &two)), Some(Payload::Sa(p)) if p[0].transforms.len() == 2));
    assert_eq!(sa(&proposal(proto::IKE, &[], 3, &two)), None, "Num Transforms beyond those present");
    assert_eq!(sa(&proposal(proto::IKE, &[], 1, &two)), None, "a transform beyond Num Transforms");
    assert_eq!(sa(&proposal(proto::IKE, &[], 255, &[])), None);
    let mut trailing = two.clone();
    trailing.push(0);
    assert_eq!(sa(&proposal(proto::IKE, &[], 2, &trailing)), None, "bytes after the transforms");
    // A transform whose length runs past the proposal, or is shorter than its header.
    let mut past = two.clone();
    past[11] = 12;
    assert_eq!(sa(&proposal(proto::IKE, &[], 2, &past)), None);
    let mut short = two.clone();
    short[3] = 3;
    assert_eq!(sa(&proposal(proto::IKE, &[], 2, &short)), None);
    // Attributes fill the transform exactly.
    let attr = |a: &[u8]| {
        let mut tr = vec![0, 0, 0, 0, ttype::ENCR, 0, 0, 20];
        tr.extend_from_slice(a);
        tr[3] = u8::try_from(tr.len()).unwrap();
        sa(&proposal(proto::IKE, &[], 1, &tr))
    };
    assert!(matches!(attr(&[0x80, 14, 1, 0]), Some(Payload::Sa(p)) if p[0].transforms[0].key_len == Some(256)));
    assert_eq!(attr(&[0x80, 14, 1]), None, "half an attribute");
    assert_eq!(attr(&[0, 99, 0, 5, 1, 2, 3, 4]), None, "TLV attribute longer than the transform");
    assert!(matches!(attr(&[0, 99, 0, 4, 1, 2, 3, 4]), Some(Payload::Sa(p)) if p[0].transforms[0].unknown_attrs));
    // SPI Size fits the protocol: IKE 0 or 8, AH and ESP 4.
    let esn = [0, 0, 0, 8, ttype::ESN, 0, 0, 0];
    assert!(sa(&proposal(proto::ESP, &[1, 2, 3, 4], 1, &esn)).is_some());
    assert!(sa(&proposal(proto::IKE, &[1; 8], 1, &esn)).is_some());
    assert_eq!(sa(&proposal(proto::ESP, &[], 1, &esn)), None);
    assert_eq!(sa(&proposal(proto::ESP, &[1; 8], 1, &esn)), None);
    assert_eq!(sa(&proposal(proto::AH, &[1; 2], 1, &esn)), None);
    assert_eq!(sa(&proposal(proto::IKE, &[1; 4], 1, &esn)), None);
    // SPI Size beyond the proposal.
    let mut spi_past = proposal(proto::ESP, &[1, 2, 3, 4], 0, &[]);
    spi_past[6] = 200;
    assert_eq!(sa(&spi_past), None);
    // Proposals tile the body: at least one, none cut short, nothing after them.
    assert_eq!(sa(&[]), None);
    let p = proposal(proto::ESP, &[1, 2, 3, 4], 1, &esn);
    assert!(matches!(sa(&[p.clone(), p.clone()].concat()), Some(Payload::Sa(v)) if v.len() == 2));
    assert_eq!(sa(&[p.clone(), vec![0]].concat()), None);
    assert_eq!(sa(&p[..p.len() - 1]), None);
    let mut p_long = p.clone();
    p_long[3] += 1;
    assert_eq!(sa(&p_long), None);
}

#[test]
fn notify_spi_size_fits_the_protocol_and_the_bytes() {
    let n = |b: &[u8]| Payload::parse(ptype::NOTIFY, false, b);
    assert!(
        matches!(n(&[proto::ESP, 4, 0, 44, 1, 2, 3, 4]), Some(Payload::Notify(x)) if x.spi == [1, 2, 3, 4] && x.data.is_empty())
    );
    assert!(matches!(n(&[0, 0, 0x40, 0, 9, 9]), Some(Payload::Notify(x)) if x.spi.is_empty() && x.data == [9, 9]));
    assert!(matches!(n(&[proto::IKE, 8, 0, 4, 1, 2, 3, 4, 5, 6, 7, 8]), Some(Payload::Notify(x)) if x.spi.len() == 8));
    assert_eq!(n(&[proto::ESP, 4, 0, 44, 1, 2, 3]), None, "SPI cut short");
    assert_eq!(n(&[proto::ESP, 8, 0, 44, 1, 2, 3, 4, 5, 6, 7, 8]), None);
    assert_eq!(n(&[0, 4, 0, 44, 1, 2, 3, 4]), None);
    assert_eq!(n(&[proto::IKE, 4, 0, 44, 1, 2, 3, 4]), None);
    assert_eq!(n(&[proto::ESP, 255, 0, 44]), None);
    assert_eq!(n(&[proto::ESP, 4, 0]), None);
}

#[test]
fn the_chain_must_fill_the_message_and_hold_at_most_max_payloads() {
    let h = header(exchange::IKE_SA_INIT);
    let vid = |n| repeat(ptype::VENDOR, n, b"vid");
    assert_eq!(Message::parse(&raw_msg(h, ptype::VENDOR, &vid(MAX_PAYLOADS))).unwrap().payloads.len(), MAX_PAYLOADS);
    assert_eq!(
        Message::parse(&raw_msg(h, ptype::VENDOR, &vid(MAX_PAYLOADS + 1))).unwrap_err(),
        ParseError::TooManyPayloads
    );
    assert_eq!(open(&sealed(ptype::VENDOR, &vid(MAX_PAYLOADS))).unwrap().payloads.len(), MAX_PAYLOADS);
    assert_eq!(open(&sealed(ptype::VENDOR, &vid(MAX_PAYLOADS + 1))).unwrap_err(), ParseError::TooManyPayloads);
    // Bytes after the last payload (next payload NONE).
    let trailing = [vid(1), vec![0, 0, 0, 4]].concat();
    assert_eq!(Message::parse(&raw_msg(h, ptype::VENDOR, &trailing)).unwrap_err(), ParseError::TrailingBytes);
    assert_eq!(open(&sealed(ptype::VENDOR, &trailing)).unwrap_err(), ParseError::TrailingBytes);
    // The last payload names a next one that is not there.
    let dangling = raw(ptype::VENDOR, b"vid");
    assert_eq!(Message::parse(&raw_msg(h, ptype::VENDOR, &dangling)).unwrap_err(), ParseError::Truncated);
    assert_eq!(open(&sealed(ptype::VENDOR, &dangling)).unwrap_err(), ParseError::Truncated);
    assert_eq!(Message::parse(&raw_msg(h, ptype::VENDOR, &[])).unwrap_err(), ParseError::Truncated);
    // A payload length shorter than the generic header or past the end.
    assert_eq!(Message::parse(&raw_msg(h, ptype::VENDOR, &[0, 0, 0, 3])).unwrap_err(), ParseError::Truncated);
    assert_eq!(Message::parse(&raw_msg(h, ptype::VENDOR, &[0, 0, 0, 9, 1])).unwrap_err(), ParseError::Truncated);
    // A malformed body is named by its type.
    assert_eq!(Message::parse(&raw_msg(h, ptype::SA, &raw(0, &[]))).unwrap_err(), ParseError::Payload(ptype::SA));
}

#[test]
fn before_decryption_only_cleartext_payloads_are_parsed() {
    let init = header(exchange::IKE_SA_INIT);
    let msg = |h: Header, first: u8, body: &[u8]| Message::parse(&raw_msg(h, first, &raw(0, body)));
    // IKE_SA_INIT: SA, KE, Nonce, Notify, Vendor ID, CERTREQ and unknown types.
    let ok: [(u8, &[u8]); 4] = [(ptype::NONCE, &[1; 16]), (ptype::VENDOR, b"v"), (ptype::CERTREQ, &[4]), (99, &[])];
    for (t, body) in ok {
        assert_eq!(msg(init, t, body).unwrap().payloads.len(), 1, "type {t}");
    }
    for t in [
        ptype::IDI,
        ptype::IDR,
        ptype::CERT,
        ptype::AUTH,
        ptype::DELETE,
        ptype::TSI,
        ptype::TSR,
        ptype::CP,
        ptype::EAP,
        ptype::SKF,
    ] {
        assert_eq!(msg(init, t, &[0; 8]).unwrap_err(), ParseError::Cleartext(t), "type {t}");
    }
    // IKE_SA_INIT is never encrypted.
    let sk = emit_encrypted(init, &[], &cipher(), &[0; 8]);
    assert_eq!(Message::parse(&sk).unwrap_err(), ParseError::Cleartext(ptype::SK));
    // Other exchanges: the SK payload alone.
    for ex in [exchange::IKE_AUTH, exchange::CREATE_CHILD_SA, exchange::INFORMATIONAL, 43] {
        let h = header(ex);
        assert!(Message::parse(&emit_encrypted(h, &[], &cipher(), &[0; 8])).unwrap().sk.is_some());
        for t in
            [ptype::SA, ptype::KE, ptype::NONCE, ptype::IDI, ptype::AUTH, ptype::DELETE, ptype::TSI, ptype::VENDOR, 99]
        {
            assert_eq!(msg(h, t, &[0; 8]).unwrap_err(), ParseError::Cleartext(t), "exchange {ex} type {t}");
        }
        assert_eq!(Message::parse(&emit_plain(h, &[])).unwrap_err(), ParseError::NotProtected);
        // A Notify in cleartext: only in a response (INVALID_IKE_SPI, 2.21.4), and never
        // next to an SK payload.
        let n = Payload::Notify(Notify::new(crate::notify::INVALID_IKE_SPI, vec![]));
        assert_eq!(
            Message::parse(&emit_plain(h, std::slice::from_ref(&n))).unwrap_err(),
            ParseError::Cleartext(ptype::NOTIFY)
        );
        let resp = Header { flags: flags::RESPONSE, ..h };
        assert_eq!(
            Message::parse(&emit_plain(resp, &[n.clone(), n.clone()])).unwrap().payloads,
            vec![n.clone(), n.clone()]
        );
        let mut chain = raw(ptype::SK, &[0, 0, 0, 4]);
        chain.extend_from_slice(&raw(0, &[0; 25]));
        assert_eq!(
            Message::parse(&raw_msg(resp, ptype::NOTIFY, &chain)).unwrap_err(),
            ParseError::Cleartext(ptype::NOTIFY)
        );
        let bytes = raw_msg(resp, ptype::SK, &[raw(ptype::NOTIFY, &[0; 25]), raw(0, &[0, 0, 0, 4])].concat());
        assert_eq!(Message::parse(&bytes).unwrap_err(), ParseError::SkNotLast);
    }
}

#[test]
fn sk_padding_and_the_inner_chain_are_checked() {
    let c = cipher();
    let h = header(exchange::INFORMATIONAL);
    let pt = |pad: &[u8]| [raw(0, b"vid"), pad.to_vec()].concat();
    // Pad Length counts padding octets before it; they are skipped, whatever they hold.
    let bytes = seal_plaintext(h, ptype::VENDOR, pt(&[0xaa, 0xbb, 2]), &c, &[0; 8]);
    assert_eq!(open(&bytes).unwrap().payloads, vec![Payload::Vendor(b"vid".to_vec())]);
    // Fewer padding octets than counted: they eat into the chain.
    let bytes = seal_plaintext(h, ptype::VENDOR, pt(&[0xaa, 2]), &c, &[0; 8]);
    assert_eq!(open(&bytes).unwrap_err(), ParseError::Truncated);
    // More than the whole plaintext.
    let bytes = seal_plaintext(h, ptype::VENDOR, pt(&[200]), &c, &[0; 8]);
    assert_eq!(open(&bytes).unwrap_err(), ParseError::Payload(ptype::SK));
    // More padding than counted: the chain has trailing bytes.
    let bytes = seal_plaintext(h, ptype::VENDOR, pt(&[0xaa, 0xbb, 1]), &c, &[0; 8]);
    assert_eq!(open(&bytes).unwrap_err(), ParseError::Truncated);
    let bytes = seal_plaintext(h, ptype::VENDOR, pt(&[0, 0, 0, 4, 0]), &c, &[0; 8]);
    assert_eq!(open(&bytes).unwrap_err(), ParseError::TrailingBytes);
    // No SK payload inside the SK payload.
    assert_eq!(open(&sealed(ptype::SK, &raw(0, &[0; 30]))).unwrap_err(), ParseError::Payload(ptype::SK));
    // An SK payload too short for IV and ICV.
    let bytes = raw_msg(h, ptype::SK, &raw(0, &[0; 24]));
    let mut m = Message::parse(&bytes).unwrap();
    assert_eq!(m.decrypt(&bytes, &c).unwrap_err(), ParseError::Truncated);
}
