//! The IKEv1 codec: round trips, every refusal by name, and arbitrary bytes never panic.

use super::payload::{idtype, life, p1attr, proto, Attr, Delete, Id, Notify, Proposal, Sa, Transform};
use super::*;
use proptest::prelude::*;

fn header(exchange: u8, message_id: u32) -> Header {
    Header { cky_i: 0x0102_0304_0506_0708, cky_r: 0, next_payload: 0, exchange, flags: 0, message_id, length: 0 }
}

/// A Main Mode first message as a classic gateway sends it: one ISAKMP proposal with
/// two transforms (aes128-sha1-modp1024 and aes256-sha256-modp2048, 8 hours), a Vendor ID
/// and two NAT-D payloads.
fn main_mode_1() -> Vec<Payload> {
    let t = |num, bits, hash, group, life_secs| Transform {
        num,
        id: 1, // KEY_IKE
        attrs: vec![
            Attr::new(p1attr::ENCRYPTION, 7),
            Attr::new(p1attr::KEY_LENGTH, bits),
            Attr::new(p1attr::HASH, hash),
            Attr::new(p1attr::AUTH_METHOD, 1),
            Attr::new(p1attr::GROUP, group),
            Attr::new(p1attr::LIFE_TYPE, life::SECONDS),
            Attr::new(p1attr::LIFE_DURATION, life_secs),
        ],
    };
    vec![
        Payload::Sa(Sa {
            proposals: vec![Proposal {
                num: 1,
                protocol: proto::ISAKMP,
                spi: vec![],
                transforms: vec![t(1, 128, 2, 2, 28_800), t(2, 256, 4, 14, 86_400)],
            }],
        }),
        Payload::Vendor(vec![0xaf, 0xca, 0xd7, 0x13, 0x68, 0xa1, 0xf1, 0xc9]),
        Payload::NatD { hash: vec![1; 20], draft: false },
        Payload::NatD { hash: vec![2; 20], draft: false },
    ]
}

#[test]
fn main_mode_message_round_trips() {
    let wire = emit_clear(header(exchange::MAIN, 0), &main_mode_1());
    let m = Message::parse(&wire).expect("parse");
    assert_eq!(m.payloads, main_mode_1());
    assert_eq!(m.header.exchange, exchange::MAIN);
    assert_eq!(m.header.length as usize, wire.len());
    // The SA body as received (SAi_b for HASH_I/R) starts with DOI and situation.
    let sa_b = m.body(0).expect("SA body");
    assert_eq!(&sa_b[..8], &[0, 0, 0, 1, 0, 0, 0, 1]);
    assert_eq!(m.after(3), Some(&[][..]));
}

#[test]
fn life_durations_are_tv_when_short_and_tlv_when_long() {
    let mut out = Vec::new();
    Attr::new(p1attr::LIFE_DURATION, 28_800).emit(&mut out);
    assert_eq!(out, [0x80, 12, 0x70, 0x80]);
    out.clear();
    Attr::new(p1attr::LIFE_DURATION, 86_400).emit(&mut out);
    assert_eq!(out, [0, 12, 0, 4, 0x00, 0x01, 0x51, 0x80]);
    // A peer's 3-octet variable value is read too.
    let t = [0, 12, 0, 3, 0x01, 0x51, 0x80];
    assert_eq!(super::payload::parse_attrs(&t), Some(vec![Attr::new(p1attr::LIFE_DURATION, 86_400)]));
    // A variable value longer than 8 octets is unreadable, not an error.
    let t = [0, 12, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9];
    assert_eq!(super::payload::parse_attrs(&t), Some(vec![Attr::unreadable(12)]));
}

#[test]
fn every_payload_kind_round_trips_encrypted() {
    let key = AesKey::new(ipsec_types::EncrAlg::AesCbc128, &[9u8; 16]).expect("key");
    let iv = [3u8; BLOCK];
    let payloads = vec![
        Payload::Hash(vec![7; 20]),
        Payload::Sa(Sa {
            proposals: vec![Proposal {
                num: 1,
                protocol: proto::ESP,
                spi: vec![0xc0, 0, 0, 1],
                transforms: vec![Transform { num: 1, id: 12, attrs: vec![Attr::new(4, 1), Attr::new(6, 128)] }],
            }],
        }),
        Payload::Nonce(vec![5; 32]),
        Payload::Ke(vec![6; 128]),
        Payload::Id(Id { id_type: idtype::IPV4_SUBNET, protocol: 0, port: 0, data: vec![10, 1, 0, 0, 255, 255, 0, 0] }),
        Payload::Id(Id { id_type: idtype::FQDN, protocol: 17, port: 500, data: b"gw.example".to_vec() }),
        Payload::Notify(Notify {
            doi: 1,
            protocol: 3,
            msg_type: 24576,
            spi: vec![0xc0, 0, 0, 1],
            data: vec![0, 0, 0x70, 0x80],
        }),
        Payload::Delete(Delete { doi: 1, protocol: 3, spi_size: 4, spis: vec![1, 2, 3, 4, 5, 6, 7, 8] }),
        Payload::NatOa { id_type: idtype::IPV4_ADDR, addr: vec![192, 0, 2, 1], draft: false },
        Payload::Other(ptype::CR),
    ];
    let chain = emit_chain(&payloads);
    let (wire, next_sent) = seal(header(exchange::QUICK, 0x1234_5678), ptype::HASH, &chain, &key, &iv);
    assert_eq!((wire.len() - HEADER_LEN) % BLOCK, 0);
    let mut m = Message::parse(&wire).expect("parse");
    assert!(m.payloads.is_empty(), "nothing is parsed before decryption");
    let next_received = m.decrypt(&wire, &key, &iv).expect("decrypt");
    assert_eq!(m.payloads, payloads);
    assert_eq!(next_received, next_sent);
    assert_eq!(&next_sent[..], &wire[wire.len() - BLOCK..]);
    // What HASH(1) covers: everything after the HASH payload, without the padding.
    assert_eq!(m.after(0), Some(&chain[24..]));
    let Payload::Delete(d) = &m.payloads[7] else { panic!("not a delete") };
    assert_eq!(d.spis().collect::<Vec<_>>(), [&[1, 2, 3, 4][..], &[5, 6, 7, 8]]);
}

#[test]
fn header_refusals() {
    let wire = emit_clear(header(exchange::MAIN, 0), &main_mode_1());
    assert_eq!(Message::parse(&wire[..20]).unwrap_err(), ParseError::Truncated);
    let mut v2 = wire.clone();
    v2[17] = 0x20;
    assert_eq!(Message::parse(&v2).unwrap_err(), ParseError::Version(0x20));
    let mut longer = wire.clone();
    longer.push(0);
    assert_eq!(Message::parse(&longer).unwrap_err(), ParseError::TrailingBytes);
    let mut short = wire.clone();
    short.pop();
    assert_eq!(Message::parse(&short).unwrap_err(), ParseError::Truncated);
}

#[test]
fn protected_payloads_are_refused_in_cleartext() {
    let id = Payload::Id(Id { id_type: idtype::IPV4_ADDR, protocol: 0, port: 0, data: vec![192, 0, 2, 1] });
    let wire = emit_clear(header(exchange::MAIN, 0), &[Payload::Nonce(vec![1; 16]), id.clone()]);
    assert_eq!(Message::parse(&wire).unwrap_err(), ParseError::Cleartext(ptype::ID));
    // Aggressive Mode carries ID and HASH in the clear.
    let wire =
        emit_clear(header(exchange::AGGRESSIVE, 0), &[Payload::Nonce(vec![1; 16]), id, Payload::Hash(vec![1; 20])]);
    assert_eq!(Message::parse(&wire).expect("aggressive").payloads.len(), 3);
    // Quick Mode must be encrypted.
    let wire = emit_clear(header(exchange::QUICK, 1), &[Payload::Nonce(vec![1; 16])]);
    assert_eq!(Message::parse(&wire).unwrap_err(), ParseError::NotProtected);
    // Encrypted bodies are whole blocks.
    let mut wire = emit_clear(header(exchange::MAIN, 0), &[Payload::Nonce(vec![1; 16])]);
    wire[25] |= flags::ENCRYPTED;
    assert_eq!(Message::parse(&wire).unwrap_err(), ParseError::Truncated);
}

#[test]
fn too_many_payloads() {
    let vids = vec![Payload::Vendor(vec![1]); MAX_PAYLOADS + 1];
    let wire = emit_clear(header(exchange::MAIN, 0), &vids);
    assert_eq!(Message::parse(&wire).unwrap_err(), ParseError::TooManyPayloads);
    let wire = emit_clear(header(exchange::MAIN, 0), &vids[..MAX_PAYLOADS]);
    assert_eq!(Message::parse(&wire).expect("64").payloads.len(), MAX_PAYLOADS);
}

/// The body of the first payload of a cleartext Main Mode message replaced by `body`.
fn with_body(t: u8, body: &[u8]) -> Result<Message, ParseError> {
    let mut h = header(exchange::MAIN, 0);
    h.next_payload = t;
    let mut wire = Vec::new();
    h.length = (HEADER_LEN + 4 + body.len()) as u32;
    h.emit(&mut wire);
    wire.extend_from_slice(&[0, 0]);
    wire.extend_from_slice(&((4 + body.len()) as u16).to_be_bytes());
    wire.extend_from_slice(body);
    Message::parse(&wire)
}

#[test]
fn lying_counts_and_lengths_are_refused() {
    let sa_body = |m: &[Payload]| {
        let c = emit_chain(&m[..1]);
        c[4..].to_vec()
    };
    let good = sa_body(&main_mode_1());
    assert!(with_body(ptype::SA, &good).is_ok());
    // # Transforms says 3, two are there (proposal body: num, proto, spi size, count).
    let mut b = good.clone();
    b[8 + 4 + 3] = 3;
    assert_eq!(with_body(ptype::SA, &b).unwrap_err(), ParseError::Payload(ptype::SA));
    // A proposal length past the SA body.
    let mut b = good.clone();
    b[8 + 2] = 0xff;
    assert_eq!(with_body(ptype::SA, &b).unwrap_err(), ParseError::Payload(ptype::SA));
    // A TLV attribute length past its transform (the second transform's life duration).
    let mut b = good.clone();
    let n = b.len();
    b[n - 5] = 0x40;
    assert_eq!(with_body(ptype::SA, &b).unwrap_err(), ParseError::Payload(ptype::SA));
    // Another DOI.
    let mut b = good.clone();
    b[3] = 2;
    assert_eq!(with_body(ptype::SA, &b).unwrap_err(), ParseError::Payload(ptype::SA));
    // A proposal outside an SA payload.
    assert_eq!(with_body(ptype::PROPOSAL, &good[8..]).unwrap_err(), ParseError::Payload(ptype::PROPOSAL));
    // Nonces of 7 and 257 octets.
    assert!(with_body(ptype::NONCE, &[1; 8]).is_ok());
    assert_eq!(with_body(ptype::NONCE, &[1; 7]).unwrap_err(), ParseError::Payload(ptype::NONCE));
    assert_eq!(with_body(ptype::NONCE, &[1; 257]).unwrap_err(), ParseError::Payload(ptype::NONCE));
    // A notify whose SPI size runs past the body.
    assert_eq!(
        with_body(ptype::NOTIFY, &[0, 0, 0, 1, 3, 16, 0x60, 0, 1, 2]).unwrap_err(),
        ParseError::Payload(ptype::NOTIFY)
    );
}

#[test]
fn delete_counts_must_match_the_bytes() {
    let key = AesKey::new(ipsec_types::EncrAlg::AesCbc256, &[1u8; 32]).expect("key");
    let iv = [0u8; BLOCK];
    let try_delete = |body: &[u8]| {
        let mut chain = vec![0, 0];
        chain.extend_from_slice(&((4 + body.len()) as u16).to_be_bytes());
        chain.extend_from_slice(body);
        let (wire, _) = seal(header(exchange::INFORMATIONAL, 7), ptype::DELETE, &chain, &key, &iv);
        let mut m = Message::parse(&wire)?;
        m.decrypt(&wire, &key, &iv).map(|_| m)
    };
    // 2 ESP SPIs of 4 octets.
    assert!(try_delete(&[0, 0, 0, 1, 3, 4, 0, 2, 1, 1, 1, 1, 2, 2, 2, 2]).is_ok());
    // Claims 1,000 SPIs, carries 2.
    let e = try_delete(&[0, 0, 0, 1, 3, 4, 0x03, 0xe8, 1, 1, 1, 1, 2, 2, 2, 2]).unwrap_err();
    assert_eq!(e, ParseError::Payload(ptype::DELETE));
    // SPI size 0.
    assert_eq!(try_delete(&[0, 0, 0, 1, 3, 0, 0, 2]).unwrap_err(), ParseError::Payload(ptype::DELETE));
}

#[test]
fn seal_pads_to_whole_blocks_and_chains_ivs() {
    let key = AesKey::new(ipsec_types::EncrAlg::AesCbc192, &[4u8; 24]).expect("key");
    let iv0 = [8u8; BLOCK];
    let chain = emit_chain(&[Payload::Hash(vec![1; 20]), Payload::Nonce(vec![2; 16])]);
    let (m1, iv1) = seal(header(exchange::QUICK, 5), ptype::HASH, &chain, &key, &iv0);
    assert_eq!(m1.len(), HEADER_LEN + 48); // 44 octets of chain -> 3 blocks
    let (m2, _) = seal(header(exchange::QUICK, 5), ptype::HASH, &chain, &key, &iv1);
    assert_ne!(m1[HEADER_LEN..], m2[HEADER_LEN..], "the same plaintext under the chained IV differs");
    // The second message opens only with the first one's last block as IV.
    let mut m = Message::parse(&m2).expect("parse");
    m.decrypt(&m2, &key, &iv1).expect("decrypt");
    assert_eq!(m.payloads.len(), 2);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Message::parse(&data);
    }

    #[test]
    fn arbitrary_chains_behind_a_valid_header_never_panic(
        first in any::<u8>(),
        exch in prop_oneof![Just(exchange::MAIN), Just(exchange::AGGRESSIVE), Just(exchange::INFORMATIONAL), Just(exchange::QUICK)],
        body in proptest::collection::vec(any::<u8>(), 0..1024),
    ) {
        let mut h = header(exch, 0);
        h.next_payload = first;
        h.length = (HEADER_LEN + body.len()) as u32;
        let mut wire = Vec::new();
        h.emit(&mut wire);
        wire.extend_from_slice(&body);
        let _ = Message::parse(&wire);
    }

    #[test]
    fn arbitrary_plaintext_decrypts_without_panic(
        first in any::<u8>(),
        chain in proptest::collection::vec(any::<u8>(), 0..1024),
    ) {
        let key = AesKey::new(ipsec_types::EncrAlg::AesCbc128, &[9u8; 16]).expect("key");
        let iv = [1u8; BLOCK];
        let (wire, _) = seal(header(exchange::QUICK, 9), first, &chain, &key, &iv);
        if let Ok(mut m) = Message::parse(&wire) {
            let _ = m.decrypt(&wire, &key, &iv);
        }
    }

    #[test]
    fn mutated_main_mode_messages_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut wire = emit_clear(header(exchange::MAIN, 0), &main_mode_1());
        for (i, b) in flips {
            let i = i.index(wire.len());
            wire[i] = b;
        }
        let _ = Message::parse(&wire);
    }
}
