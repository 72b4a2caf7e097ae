use super::*;
use crate::message::{emit_chain, exchange, flags, Header, Message, Payload};
use ipsec_types::{EncrAlg, IntegAlg, TrafficSelector};

fn cipher(k: u8) -> SkCipher {
    SkCipher::new(EncrAlg::AesGcm16_256, None, &[k; 36], &[]).expect("36 octets of keymat")
}

/// One cipher of each kind the SK payload knows: AES-GCM, ChaCha20-Poly1305 and AES-CBC
/// with HMAC (16-octet IV and block, 12-octet ICV).
fn every_cipher(k: u8) -> Vec<SkCipher> {
    vec![
        cipher(k),
        SkCipher::new(EncrAlg::ChaCha20Poly1305, None, &[k; 36], &[]).expect("ChaCha20 keymat"),
        SkCipher::new(EncrAlg::AesCbc256, Some(IntegAlg::HmacSha1_96), &[k; 32], &[k; 20]).expect("CBC keymat"),
        SkCipher::new(EncrAlg::AesCbc128, Some(IntegAlg::HmacSha256_128), &[k; 16], &[k; 32]).expect("CBC keymat"),
    ]
}

fn header(mid: u32) -> Header {
    Header {
        spi_i: 0x0102_0304_0506_0708,
        spi_r: 0x1112_1314_1516_1718,
        next_payload: 0,
        exchange: exchange::IKE_AUTH,
        flags: flags::INITIATOR,
        message_id: mid,
        length: 0,
    }
}

/// An IKE_AUTH-like payload list of about 4 KiB: 100 selectors each way and a Vendor ID.
fn payloads() -> Vec<Payload> {
    let ts = |n: u8| -> Vec<TrafficSelector> {
        (0..100u8).map(|i| TrafficSelector::parse_cidr(&format!("10.{n}.{i}.0/24")).expect("cidr")).collect()
    };
    vec![Payload::Vendor(b"fragment test".to_vec()), Payload::TsI(ts(1)), Payload::TsR(ts(2))]
}

/// The fragments of `payloads()` at `max_len` octets each, with message ID `mid`.
fn fragments(mid: u32, max_len: usize, c: &SkCipher) -> Vec<Vec<u8>> {
    let mut chain = Vec::new();
    let first = emit_chain(&payloads(), &mut chain);
    let mut n = 0u8;
    split(header(mid), first, &chain, c, max_len, &mut |iv: &mut [u8]| {
        n += 1;
        iv.fill(n);
    })
}

fn add(r: &mut Reassembly, data: &[u8], c: &SkCipher) -> Result<Option<Message>, FragDrop> {
    let msg = Message::parse(data).expect("a fragment parses");
    assert!(msg.skf.is_some() && msg.sk.is_none());
    r.add(data, &msg, c)
}

#[test]
fn split_fits_the_limit_and_reassembles_in_order() {
    for c in every_cipher(1) {
        split_and_reassemble(&c);
    }
}

fn split_and_reassemble(c: &SkCipher) {
    let frags = fragments(1, 500, c);
    assert!(frags.len() >= 8, "{} fragments", frags.len());
    let total = u16::try_from(frags.len()).unwrap();
    for (i, f) in frags.iter().enumerate() {
        assert!(f.len() <= 500, "fragment {} is {} octets", i + 1, f.len());
        let h = Header::parse(f).unwrap();
        assert_eq!((h.next_payload, h.message_id, h.exchange), (ptype::SKF, 1, exchange::IKE_AUTH));
        let (number, t, next) = numbers(f, HEADER_LEN).unwrap();
        assert_eq!((usize::from(number), t), (i + 1, total));
        // Only fragment 1 names the first inner payload.
        assert_eq!(next, if i == 0 { ptype::VENDOR } else { 0 });
    }
    // All but the last are as full as the limit allows (to the cipher block).
    let block = c.block_len();
    assert!(frags[..frags.len() - 1].iter().all(|f| f.len() > 500 - block), "{:?}", c.encr());
    let mut r = Reassembly::default();
    for f in &frags[..frags.len() - 1] {
        assert!(add(&mut r, f, c).unwrap().is_none());
    }
    assert!(r.held_bytes() > 0);
    let m = add(&mut r, frags.last().unwrap(), c).unwrap().expect("complete");
    assert_eq!(m.payloads, payloads());
    assert_eq!(m.header.message_id, 1);
    assert_eq!(r.held_bytes(), 0, "nothing held after completion");
}

#[test]
fn out_of_order_and_duplicates() {
    for c in every_cipher(2) {
        out_of_order(&c);
    }
}

fn out_of_order(c: &SkCipher) {
    let frags = fragments(7, 600, c);
    let mut r = Reassembly::default();
    // Reverse order, every fragment twice: the second copy is a duplicate and nothing
    // changes.
    let n = frags.len();
    for (i, f) in frags.iter().enumerate().rev() {
        let got = add(&mut r, f, c).unwrap();
        if i > 0 {
            assert!(got.is_none());
            let held = r.held_bytes();
            assert_eq!(add(&mut r, f, c).unwrap_err(), FragDrop::Duplicate);
            assert_eq!(r.held_bytes(), held);
        } else {
            assert_eq!(got.unwrap_or_else(|| panic!("complete after {n} fragments")).payloads, payloads());
        }
    }
}

#[test]
fn tampered_or_foreign_fragments_are_not_stored() {
    for (c, foreign) in every_cipher(3).into_iter().zip(every_cipher(4)) {
        tampered(c, &foreign);
    }
}

fn tampered(c: SkCipher, foreign_key: &SkCipher) {
    let frags = fragments(1, 400, &c);
    let mut r = Reassembly::default();
    assert!(add(&mut r, &frags[0], &c).unwrap().is_none());
    let held = r.held_bytes();
    // A flipped octet anywhere after the SKF header: ciphertext, IV or ICV.
    for pos in [HEADER_LEN + 8, HEADER_LEN + 20, frags[1].len() - 1] {
        let mut bad = frags[1].clone();
        bad[pos] ^= 1;
        assert_eq!(add(&mut r, &bad, &c).unwrap_err(), FragDrop::Unauthenticated, "octet {pos}");
    }
    // The authenticated header: message ID and Total Fragments are covered by the ICV.
    let mut bad = frags[1].clone();
    bad[HEADER_LEN + 7] ^= 0x01;
    let got = add(&mut r, &bad, &c).unwrap_err();
    assert!(matches!(got, FragDrop::Unauthenticated | FragDrop::Malformed), "{got:?}");
    // Sealed with another key (an attacker who knows the SPIs, not the keys).
    let foreign = fragments(1, 400, foreign_key);
    assert_eq!(add(&mut r, &foreign[1], &c).unwrap_err(), FragDrop::Unauthenticated);
    // Not even a restart with more Total Fragments or another message ID is taken
    // without the keys.
    let foreign_more = fragments(1, 300, foreign_key);
    assert_eq!(add(&mut r, &foreign_more[0], &c).unwrap_err(), FragDrop::Unauthenticated);
    let foreign_next = fragments(2, 400, foreign_key);
    assert_eq!(add(&mut r, &foreign_next[0], &c).unwrap_err(), FragDrop::Unauthenticated);
    assert_eq!(r.held_bytes(), held, "nothing stored, nothing discarded");
    // The genuine rest still completes the message.
    let mut done = None;
    for f in &frags[1..] {
        done = add(&mut r, f, &c).unwrap();
    }
    assert_eq!(done.expect("complete").payloads, payloads());
}

#[test]
fn bad_numbers_are_malformed() {
    let c = cipher(5);
    let frags = fragments(1, 400, &c);
    let mut r = Reassembly::default();
    for (number, total) in [(0u16, 3u16), (1, 0), (4, 3), (0, 0)] {
        let mut bad = frags[0].clone();
        bad[HEADER_LEN + 4..HEADER_LEN + 6].copy_from_slice(&number.to_be_bytes());
        bad[HEADER_LEN + 6..HEADER_LEN + 8].copy_from_slice(&total.to_be_bytes());
        assert_eq!(add(&mut r, &bad, &c).unwrap_err(), FragDrop::Malformed, "{number}/{total}");
    }
    // Too short to hold IV and ICV.
    let mut short = frags[0][..HEADER_LEN + 8 + 8].to_vec();
    let len = u32::try_from(short.len()).unwrap();
    short[24..28].copy_from_slice(&len.to_be_bytes());
    short[HEADER_LEN + 2..HEADER_LEN + 4].copy_from_slice(&16u16.to_be_bytes());
    assert_eq!(add(&mut r, &short, &c).unwrap_err(), FragDrop::Malformed);
    assert_eq!(r.held_bytes(), 0);
}

#[test]
fn more_total_fragments_restart_fewer_are_stale() {
    // RFC 7383 2.6: the sender went to smaller fragments (more of them) on
    // retransmission: what is held is discarded and reassembly starts over; a fragment
    // with fewer Total Fragments than held is dropped.
    let c = cipher(6);
    let big = fragments(3, 900, &c);
    let small = fragments(3, 400, &c);
    assert!(small.len() > big.len());
    let mut r = Reassembly::default();
    assert!(add(&mut r, &big[0], &c).unwrap().is_none());
    assert!(add(&mut r, &big[1], &c).unwrap().is_none());
    assert!(add(&mut r, &small[1], &c).unwrap().is_none());
    assert!(r.held_bytes() < 400, "the big fragments went: {}", r.held_bytes());
    assert_eq!(add(&mut r, &big[2], &c).unwrap_err(), FragDrop::Malformed);
    let mut done = None;
    for (i, f) in small.iter().enumerate() {
        if i != 1 {
            done = add(&mut r, f, &c).unwrap();
        }
    }
    assert_eq!(done.expect("complete").payloads, payloads());
}

#[test]
fn another_message_id_replaces_the_one_held() {
    let c = cipher(7);
    let old = fragments(4, 500, &c);
    let new = fragments(5, 500, &c);
    let mut r = Reassembly::default();
    assert!(add(&mut r, &old[0], &c).unwrap().is_none());
    let mut done = None;
    for f in &new {
        done = add(&mut r, f, &c).unwrap();
    }
    assert_eq!(done.expect("complete").header.message_id, 5);
    // The old message's fragments start a fresh reassembly of their own.
    assert!(add(&mut r, &old[1], &c).unwrap().is_none());
    assert!(r.held_bytes() < 500);
}

#[test]
fn caps_on_fragments_and_octets() {
    let c = cipher(8);
    // More Total Fragments than we accept: refused before decryption.
    let mut n = 0u64;
    let mut iv = |b: &mut [u8]| {
        n += 1;
        b.copy_from_slice(&n.to_be_bytes()[..b.len()]);
    };
    let tiny = split(header(1), ptype::VENDOR, &[0u8; 8000], &c, 120, &mut iv);
    assert!(tiny.len() > usize::from(MAX_FRAGMENTS), "{}", tiny.len());
    let mut r = Reassembly::default();
    assert_eq!(add(&mut r, &tiny[0], &c).unwrap_err(), FragDrop::Limit);
    assert_eq!(r.held_bytes(), 0);
    // More plaintext than MAX_REASSEMBLED in at most MAX_FRAGMENTS fragments: refused
    // when the cap would be passed, and what was held goes too.
    let big_chain = vec![0u8; MAX_REASSEMBLED + 2000];
    let big = split(header(2), ptype::VENDOR, &big_chain, &c, 1400, &mut iv);
    assert!(big.len() <= usize::from(MAX_FRAGMENTS), "{}", big.len());
    let mut refused = false;
    for f in &big {
        match add(&mut r, f, &c) {
            Ok(got) => assert!(got.is_none()),
            Err(e) => {
                assert_eq!(e, FragDrop::Limit);
                refused = true;
                break;
            }
        }
        assert!(r.held_bytes() <= MAX_REASSEMBLED);
    }
    assert!(refused);
    assert_eq!(r.held_bytes(), 0);
}

#[test]
fn sealed_len_matches_an_unfragmented_message() {
    for c in every_cipher(9) {
        for n in [0, 1, 2, 3, 50, 100] {
            let p = &vec![payloads()[0].clone(); n];
            let mut chain = Vec::new();
            emit_chain(p, &mut chain);
            let whole = crate::message::emit_encrypted(header(1), p, &c, &vec![1; c.iv_len()]);
            assert_eq!(sealed_len(chain.len(), &c), whole.len(), "{:?} x{n}", c.encr());
        }
    }
}

#[test]
fn an_empty_chain_is_one_fragment() {
    let c = cipher(10);
    let frags = split(header(1), 0, &[], &c, 500, &mut |b: &mut [u8]| b.fill(1));
    assert_eq!(frags.len(), 1);
    let mut r = Reassembly::default();
    let m = add(&mut r, &frags[0], &c).unwrap().expect("complete");
    assert!(m.payloads.is_empty());
}
