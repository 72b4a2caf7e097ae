//! Parsing costs what the bytes carry: parsing ANY datagram, and decrypting
//! and parsing the chain inside its SK payload, allocates at most
//!
//!     8 * len + 8 KiB   (bytes asked of the allocator, every allocation and
//!                        reallocation summed, on this thread)
//!
//! where `len` is the datagram's length. 7x is what a Delete's 4-octet SPIs cost
//! (a 24-byte `Vec` header and 4 bytes each), 1x the copy of the SK payload decrypted in
//! place; the constant covers the payload list (at most 64 entries). The worst cases
//! known are measured by name below (`worst_cases_stay_within_the_bound`), the rest by
//! property: random bytes, random chains behind a valid header, structured payloads
//! with lying counts and lengths, and mutations of real IKE_SA_INIT and IKE_AUTH
//! messages, up to 65,535 bytes, each parsed the way the endpoint parses it
//! (`ike::testing::parse_cost_probe` runs `Message::parse`; `decrypt_cost_probe` also
//! `Message::decrypt` with a known key).
//!
//! The counting allocator is the `allocation-counter` crate's (per thread, so the test
//! threads do not disturb each other).

use ike::crypto::SkCipher;
use ike::testing::{decrypt_cost_probe, parse_cost_probe, seal_probe, Pair, ParseError, Side, PROBE_MAX_PAYLOADS};
use ipsec_types::EncrAlg;
use proptest::collection::vec;
use proptest::prelude::*;
use std::sync::OnceLock;

const PER_BYTE: u64 = 8;
const CONSTANT: u64 = 8192;
const MAX_DATAGRAM: usize = 65_535;

/// Payload and exchange type numbers (RFC 7296 3.1, 3.2).
const SA: u8 = 33;
const KE: u8 = 34;
const IDI: u8 = 35;
const AUTH: u8 = 39;
const NONCE: u8 = 40;
const NOTIFY: u8 = 41;
const DELETE: u8 = 42;
const VENDOR: u8 = 43;
const TSI: u8 = 44;
const TSR: u8 = 45;
const IKE_SA_INIT: u8 = 34;
const IKE_AUTH: u8 = 35;
const INFORMATIONAL: u8 = 37;

fn bound(len: usize) -> u64 {
    PER_BYTE * len as u64 + CONSTANT
}

fn cipher() -> &'static SkCipher {
    static C: OnceLock<SkCipher> = OnceLock::new();
    C.get_or_init(|| SkCipher::new(EncrAlg::AesGcm16_256, None, &[7u8; 36], &[]).expect("key"))
}

/// Bytes allocated by `Message::parse` of `data`; fails the test past the bound.
fn parse_cost(data: &[u8]) -> (u64, Result<usize, ParseError>) {
    let mut r = Err(ParseError::Truncated);
    let bytes = allocation_counter::measure(|| r = parse_cost_probe(data)).bytes_total;
    assert!(bytes <= bound(data.len()), "parsing {} bytes allocated {bytes} ({r:?})", data.len());
    (bytes, r)
}

/// Bytes allocated by `Message::parse` and `Message::decrypt` of `data`; fails the test
/// past the bound.
fn decrypt_cost(data: &[u8]) -> (u64, Result<usize, ParseError>) {
    let c = cipher();
    let mut r = Err(ParseError::Truncated);
    let bytes = allocation_counter::measure(|| r = decrypt_cost_probe(data, c)).bytes_total;
    assert!(bytes <= bound(data.len()), "decrypting {} bytes allocated {bytes} ({r:?})", data.len());
    (bytes, r)
}

/// A payload on the wire: generic header and body (the length field as given, or true).
fn payload(next: u8, body: &[u8], len: Option<u16>) -> Vec<u8> {
    let mut v = vec![next, 0];
    let true_len = u16::try_from(body.len() + 4).unwrap_or(u16::MAX);
    v.extend_from_slice(&len.unwrap_or(true_len).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// Chains `(type, body, length)` payloads; returns the first type and the bytes.
fn chain(payloads: &[(u8, Vec<u8>, Option<u16>)]) -> (u8, Vec<u8>) {
    let mut out = Vec::new();
    for (i, (_, body, len)) in payloads.iter().enumerate() {
        let next = payloads.get(i + 1).map_or(0, |p| p.0);
        out.extend_from_slice(&payload(next, body, *len));
    }
    (payloads.first().map_or(0, |p| p.0), out)
}

/// An unencrypted message: IKE header (length = the whole datagram) and `chain`, cut to
/// 65,535 bytes.
fn message(exchange: u8, flags: u8, first: u8, chain: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(28 + chain.len());
    m.extend_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
    m.extend_from_slice(&0u64.to_be_bytes());
    m.extend_from_slice(&[first, 0x20, exchange, flags]);
    m.extend_from_slice(&0u32.to_be_bytes());
    m.extend_from_slice(&0u32.to_be_bytes());
    m.extend_from_slice(chain);
    m.truncate(MAX_DATAGRAM);
    fix_length(&mut m);
    m
}

fn fix_length(m: &mut [u8]) {
    let l = u32::try_from(m.len()).unwrap().to_be_bytes();
    if let Some(f) = m.get_mut(24..28) {
        f.copy_from_slice(&l);
    }
}

/// Parses `first`/`chain` every way a datagram reaches the parser: as IKE_SA_INIT, as an
/// unprotected INFORMATIONAL response, and inside the SK payload of an IKE_AUTH request.
fn every_way(first: u8, chain: &[u8]) {
    let _ = parse_cost(&message(IKE_SA_INIT, 0x08, first, chain));
    let _ = parse_cost(&message(INFORMATIONAL, 0x20, first, chain));
    let _ = decrypt_cost(&seal_probe(true, first, chain, cipher()));
}

/// A's IKE_SA_INIT request and B's response from a real handshake.
fn init_messages() -> &'static [Vec<u8>; 2] {
    static M: OnceLock<[Vec<u8>; 2]> = OnceLock::new();
    M.get_or_init(|| {
        let mut p = Pair::standard();
        p.run();
        [p.transmits(Side::A)[0].data.clone(), p.transmits(Side::B)[0].data.clone()]
    })
}

/// The plaintext chain of a valid IKE_AUTH request: IDi, N(INITIAL_CONTACT), IDr, AUTH,
/// SA (one ESP proposal), TSi, TSr, N(ESP_TFC_PADDING_NOT_SUPPORTED), N(NON_FIRST_FRAGMENTS_ALSO).
fn auth_chain() -> (u8, Vec<u8>) {
    let id = |s: &str| [&[2u8, 0, 0, 0][..], s.as_bytes()].concat();
    let notify = |kind: u16| [&[0u8, 0][..], &kind.to_be_bytes()].concat();
    let transform = |last: u8, t: u8, id: u16, attr: &[u8]| {
        let mut v = vec![last, 0, 0, 0, t, 0];
        v.extend_from_slice(&id.to_be_bytes());
        v.extend_from_slice(attr);
        v[3] = u8::try_from(v.len()).unwrap();
        v
    };
    let mut prop = vec![0, 0, 0, 0, 1, 3, 4, 2, 0xc0, 0xff, 0xee, 0x01];
    prop.extend_from_slice(&transform(3, 1, 20, &[0x80, 14, 1, 0]));
    prop.extend_from_slice(&transform(0, 5, 0, &[]));
    prop[3] = u8::try_from(prop.len()).unwrap();
    let ts = [1u8, 0, 0, 0, 7, 0, 0, 16, 0, 0, 255, 255, 10, 1, 0, 0, 10, 1, 0, 255];
    chain(&[
        (IDI, id("a.test"), None),
        (NOTIFY, notify(16384), None),
        (36, id("b.test"), None),
        (AUTH, [&[2u8, 0, 0, 0][..], &[0x5a; 32]].concat(), None),
        (SA, prop, None),
        (TSI, ts.to_vec(), None),
        (TSR, ts.to_vec(), None),
        (NOTIFY, notify(16394), None),
        (NOTIFY, notify(16395), None),
    ])
}

#[test]
fn the_counter_counts() {
    let info = allocation_counter::measure(|| drop(std::hint::black_box(vec![0u8; 1000])));
    assert_eq!(info.bytes_total, 1000);
    // A valid IKE_AUTH costs something, and decrypts to the nine payloads it holds.
    let (first, c) = auth_chain();
    let (bytes, r) = decrypt_cost(&seal_probe(true, first, &c, cipher()));
    assert_eq!(r, Ok(9));
    assert!(bytes > c.len() as u64, "{bytes}");
    for m in init_messages() {
        let (bytes, r) = parse_cost(m);
        assert!(r.is_ok_and(|n| n >= 3) && bytes > 0, "{r:?} {bytes}");
    }
}

#[test]
fn worst_cases_stay_within_the_bound() {
    let report = |what: &str, len: usize, (bytes, r): (u64, Result<usize, ParseError>)| {
        println!("{what}: {len} bytes -> {bytes} allocated ({:.2}x), {r:?}", bytes as f64 / len as f64);
        r
    };
    // The Delete bomb: 180 Delete payloads, SPI size 0 and 65535 SPIs, in a
    // 1,472-byte datagram.
    let bomb = |n: usize| chain(&vec![(DELETE, vec![1, 0, 0xff, 0xff], None); n]);
    let (first, c) = bomb(180);
    let m = message(INFORMATIONAL, 0x08, first, &c);
    assert_eq!(report("180 Delete bomb, cleartext", m.len(), parse_cost(&m)), Err(ParseError::Cleartext(DELETE)));
    let m = message(IKE_SA_INIT, 0x08, first, &c);
    assert_eq!(report("180 Delete bomb, IKE_SA_INIT", m.len(), parse_cost(&m)), Err(ParseError::Cleartext(DELETE)));
    let m = seal_probe(false, first, &c, cipher());
    assert_eq!(report("180 Delete bomb, encrypted", m.len(), decrypt_cost(&m)), Err(ParseError::TooManyPayloads));
    let (first, c) = bomb(PROBE_MAX_PAYLOADS);
    let m = seal_probe(false, first, &c, cipher());
    assert_eq!(report("64 Delete bomb, encrypted", m.len(), decrypt_cost(&m)), Ok(PROBE_MAX_PAYLOADS));
    // 65,535 bytes: one Delete of ESP SPIs filling the SK payload (the most allocated
    // per byte: 7x the SPIs plus the copy decrypted), as IKE_SA_INIT it is refused.
    let room = MAX_DATAGRAM - 28 - 4 - 8 - 1 - 16 - 4 - 4;
    let n = u16::try_from(room / 4).unwrap();
    let body = [&[3u8, 4][..], &n.to_be_bytes(), &vec![0xab; usize::from(n) * 4]].concat();
    let (first, c) = chain(&[(DELETE, body, None)]);
    let m = seal_probe(false, first, &c, cipher());
    assert_eq!(report("Delete of 16367 ESP SPIs, encrypted", m.len(), decrypt_cost(&m)), Ok(1));
    // 65,535 bytes of the smallest payloads: refused at the 65th header.
    let (first, c) = chain(&vec![(VENDOR, vec![], None); (MAX_DATAGRAM - 28) / 4]);
    let m = message(IKE_SA_INIT, 0x08, first, &c);
    assert_eq!(report("16376 empty payloads, IKE_SA_INIT", m.len(), parse_cost(&m)), Err(ParseError::TooManyPayloads));
    let m = seal_probe(true, first, &c, cipher());
    assert_eq!(report("16376 empty payloads, encrypted", m.len(), decrypt_cost(&m)), Err(ParseError::TooManyPayloads));
    // 64 empty payloads (the largest payload list) in the smallest datagram that holds them.
    let (first, c) = chain(&vec![(VENDOR, vec![], None); PROBE_MAX_PAYLOADS]);
    let m = message(IKE_SA_INIT, 0x08, first, &c);
    report("64 empty payloads, IKE_SA_INIT", m.len(), parse_cost(&m)).unwrap();
    let m = seal_probe(true, first, &c, cipher());
    report("64 empty payloads, encrypted", m.len(), decrypt_cost(&m)).unwrap();
    // An SA payload of 8,184 empty proposals in 65,535 bytes (7x: a `Proposal` per 8 bytes).
    let props: Vec<u8> = (0..(MAX_DATAGRAM - 32) / 8).flat_map(|_| [0u8, 0, 0, 8, 1, 1, 0, 0]).collect();
    let (first, c) = chain(&[(SA, props, None)]);
    let m = message(IKE_SA_INIT, 0x08, first, &c);
    assert_eq!(report("8187 empty proposals, IKE_SA_INIT", m.len(), parse_cost(&m)), Ok(1));
    // Traffic selectors: 255 counted, none present; 255 present in a payload.
    let (first, c) = chain(&[(TSI, vec![255, 0, 0, 0], None)]);
    let m = seal_probe(true, first, &c, cipher());
    assert_eq!(report("TS count 255, no selectors", m.len(), decrypt_cost(&m)), Err(ParseError::Payload(TSI)));
    let sel = [7u8, 0, 0, 16, 0, 0, 255, 255, 10, 0, 0, 0, 10, 0, 0, 255];
    let body = [&[255u8, 0, 0, 0][..], &sel.repeat(255)].concat();
    let (first, c) = chain(&vec![(TSI, body, None); 16]);
    let m = seal_probe(true, first, &c, cipher());
    assert_eq!(report("16 TS payloads of 255 selectors", m.len(), decrypt_cost(&m)), Ok(16));
}

/// A Delete body: protocol, SPI size and count often plausible, often lying.
fn delete_body() -> impl Strategy<Value = Vec<u8>> {
    let proto = prop_oneof![Just(1u8), Just(2), Just(3), any::<u8>()];
    let size = prop_oneof![Just(0u8), Just(4), Just(8), any::<u8>()];
    let count = prop_oneof![Just(0u16), Just(1), Just(0xffff), any::<u16>()];
    (proto, size, count, vec(any::<u8>(), 0..64), any::<bool>()).prop_map(|(p, s, n, spis, honest)| {
        // Honest: the count and the SPIs agree (for a nonzero SPI size).
        let (n, spis) = match usize::from(s) {
            size if honest && size > 0 => {
                let k = spis.len() / size;
                (u16::try_from(k).unwrap(), &spis[..k * size])
            }
            _ => (n, &spis[..]),
        };
        [&[p, s][..], &n.to_be_bytes(), spis].concat()
    })
}

/// A TS body: a count and selectors whose types and lengths may lie.
fn ts_body() -> impl Strategy<Value = Vec<u8>> {
    let ty = prop_oneof![Just(7u8), Just(8), any::<u8>()];
    let sel = (ty, vec(any::<u8>(), 0..40), any::<Option<u16>>()).prop_map(|(t, body, len)| {
        let len = len.unwrap_or(u16::try_from(body.len() + 4).unwrap());
        [&[t, 0][..], &len.to_be_bytes(), &body].concat()
    });
    (any::<u8>(), vec(sel, 0..12)).prop_map(|(n, sels)| [vec![n, 0, 0, 0], sels.concat()].concat())
}

/// An SA body: proposals whose transform counts, SPI sizes and lengths may lie.
fn sa_body() -> impl Strategy<Value = Vec<u8>> {
    let attr = vec(any::<u8>(), 0..12);
    let transform = (any::<u8>(), any::<u16>(), attr, any::<Option<u16>>()).prop_map(|(t, id, a, len)| {
        let len = len.unwrap_or(u16::try_from(a.len() + 8).unwrap());
        [&[3u8, 0][..], &len.to_be_bytes(), &[t, 0], &id.to_be_bytes(), &a].concat()
    });
    let proto = prop_oneof![Just(1u8), Just(3), any::<u8>()];
    let proposal = (proto, vec(any::<u8>(), 0..9), any::<u8>(), vec(transform, 0..8), any::<Option<u16>>()).prop_map(
        |(p, spi, ntrans, ts, len)| {
            let body = [&[1u8, p, u8::try_from(spi.len()).unwrap(), ntrans][..], &spi, &ts.concat()].concat();
            let len = len.unwrap_or(u16::try_from(body.len() + 4).unwrap());
            [&[2u8, 0][..], &len.to_be_bytes(), &body].concat()
        },
    );
    vec(proposal, 0..6).prop_map(|p| p.concat())
}

/// Any payload: a structured body of its type, or random bytes under any type.
fn any_payload() -> impl Strategy<Value = (u8, Vec<u8>, Option<u16>)> {
    let len = prop_oneof![8 => Just(None), 1 => any::<u16>().prop_map(Some)];
    let typed = prop_oneof![
        delete_body().prop_map(|b| (DELETE, b)),
        ts_body().prop_map(|b| (TSI, b)),
        sa_body().prop_map(|b| (SA, b)),
        (
            prop_oneof![Just(NOTIFY), Just(KE), Just(NONCE), Just(IDI), Just(AUTH), Just(VENDOR), Just(TSR)],
            vec(any::<u8>(), 0..80)
        ),
        (any::<u8>(), vec(any::<u8>(), 0..80)),
    ];
    (typed, len).prop_map(|((t, b), l)| (t, b, l))
}

/// A chain of up to 100 payloads, or one payload repeated to fill up to 65,535 bytes.
fn any_chain() -> impl Strategy<Value = (u8, Vec<u8>)> {
    prop_oneof![
        vec(any_payload(), 0..100).prop_map(|p| chain(&p)),
        (any_payload(), 1usize..20_000).prop_map(|(p, n)| {
            let n = n.min(MAX_DATAGRAM / (p.1.len() + 4));
            chain(&vec![p; n])
        }),
    ]
}

/// Mutations of a valid message.
#[derive(Clone, Debug)]
enum Mutation {
    /// XOR a byte.
    Flip(usize, u8),
    /// Write a 16-bit value (counts and lengths are 8 or 16 bits).
    Put16(usize, u16),
    /// Repeat the bytes at [start, start + len) `times` times in place.
    Repeat(usize, usize, usize),
    /// Cut the message.
    Truncate(usize),
    /// Append bytes.
    Append(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(i, v)| Mutation::Flip(i, v)),
        (any::<usize>(), prop_oneof![Just(0u16), Just(0xffff), Just(4), any::<u16>()])
            .prop_map(|(i, v)| Mutation::Put16(i, v)),
        (any::<usize>(), 1usize..200, 1usize..2000).prop_map(|(i, l, n)| Mutation::Repeat(i, l, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        vec(any::<u8>(), 0..300).prop_map(Mutation::Append),
    ]
}

fn mutate(m: &mut Vec<u8>, muts: &[Mutation]) {
    for mu in muts {
        let n = m.len().max(1);
        match mu {
            Mutation::Flip(i, v) => {
                if let Some(b) = m.get_mut(i % n) {
                    *b ^= v;
                }
            }
            Mutation::Put16(i, v) => {
                if let Some(b) = m.get_mut(i % n..i % n + 2) {
                    b.copy_from_slice(&v.to_be_bytes());
                }
            }
            Mutation::Repeat(i, l, times) => {
                let s = i % n;
                let part = m.get(s..(s + l).min(m.len())).unwrap_or_default().to_vec();
                let times = (*times).min(MAX_DATAGRAM.saturating_sub(m.len()) / part.len().max(1));
                let tail = m.split_off(s);
                for _ in 0..times {
                    m.extend_from_slice(&part);
                }
                m.extend_from_slice(&tail);
            }
            Mutation::Truncate(c) => m.truncate(c % n),
            Mutation::Append(b) => m.extend_from_slice(b),
        }
        m.truncate(MAX_DATAGRAM);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_datagrams(data in vec(any::<u8>(), 0..=MAX_DATAGRAM)) {
        let _ = parse_cost(&data);
        let _ = decrypt_cost(&data);
    }

    #[test]
    fn random_chains_behind_a_valid_header(
        exchange in prop_oneof![Just(IKE_SA_INIT), Just(IKE_AUTH), Just(36u8), Just(INFORMATIONAL), any::<u8>()],
        flags in any::<u8>(),
        first in 0u8..60,
        body in prop_oneof![vec(any::<u8>(), 0..2000), vec(any::<u8>(), 0..=MAX_DATAGRAM - 28)],
    ) {
        let m = message(exchange, flags, first, &body);
        let _ = parse_cost(&m);
        let _ = decrypt_cost(&m);
        let _ = decrypt_cost(&seal_probe(exchange & 1 == 0, first, &body, cipher()));
    }

    #[test]
    fn structured_chains_with_lying_counts((first, c) in any_chain()) {
        every_way(first, &c);
    }

    #[test]
    fn mutated_ike_sa_init(which in 0usize..2, muts in vec(mutation(), 1..6), fix in any::<bool>()) {
        let mut m = init_messages()[which].clone();
        mutate(&mut m, &muts);
        if fix {
            fix_length(&mut m);
        }
        let _ = parse_cost(&m);
    }

    #[test]
    fn mutated_ike_auth(muts in vec(mutation(), 1..6)) {
        let (first, mut c) = auth_chain();
        mutate(&mut c, &muts);
        every_way(first, &c);
    }
}
