//! IKEv1 parsing costs what the bytes carry, as IKEv2's does (`parse_alloc.rs`):
//! parsing ANY datagram, and decrypting and parsing an encrypted body, allocates at most
//!
//!     8 * len + 8 KiB   (every allocation and reallocation summed, on this thread)
//!
//! The worst cases known are measured by name (`worst_cases_stay_within_the_bound`),
//! the rest by property: random datagrams, random chains behind a valid header in the
//! clear and encrypted, and structured SA / Delete / Notify bodies with lying counts,
//! up to 65,535 bytes. `ike::testing::v1_parse_cost_probe` parses as an IKEv1 SA will
//! (and decrypts an encrypted body with the probe's key).

use ike::testing::{v1_parse_cost_probe, v1_seal_probe, ParseError};
use proptest::collection::vec;
use proptest::prelude::*;

const PER_BYTE: u64 = 8;
const CONSTANT: u64 = 8192;
const MAX_DATAGRAM: usize = 65_535;

/// Payload and exchange numbers (RFC 2408 3.1, RFC 2409).
const SA: u8 = 1;
const NOTIFY: u8 = 11;
const DELETE: u8 = 12;
const VENDOR: u8 = 13;
const MAIN: u8 = 2;
const INFORMATIONAL: u8 = 5;

fn bound(len: usize) -> u64 {
    PER_BYTE * len as u64 + CONSTANT
}

/// Bytes allocated parsing `data`; fails the test past the bound.
fn cost(data: &[u8]) -> (u64, Result<usize, ParseError>) {
    let mut r = Err(ParseError::Truncated);
    let bytes = allocation_counter::measure(|| r = v1_parse_cost_probe(data)).bytes_total;
    assert!(bytes <= bound(data.len()), "parsing {} bytes allocated {bytes} ({r:?})", data.len());
    (bytes, r)
}

/// A chain of `(type, body)` payloads, linked in order.
fn chain(payloads: &[(u8, Vec<u8>)]) -> (u8, Vec<u8>) {
    let mut out = Vec::new();
    for (i, (_, body)) in payloads.iter().enumerate() {
        out.push(payloads.get(i + 1).map_or(0, |p| p.0));
        out.push(0);
        out.extend_from_slice(&u16::try_from(body.len() + 4).unwrap_or(u16::MAX).to_be_bytes());
        out.extend_from_slice(body);
    }
    (payloads.first().map_or(0, |p| p.0), out)
}

/// A cleartext message of `exchange` with the chain.
fn clear(exchange: u8, first: u8, chain: &[u8]) -> Vec<u8> {
    let mut m = vec![0x11; 8];
    m.extend_from_slice(&[0; 8]);
    m.extend_from_slice(&[first, 0x10, exchange, 0, 0, 0, 0, 0]);
    m.extend_from_slice(&u32::try_from(28 + chain.len()).unwrap_or(u32::MAX).to_be_bytes());
    m.extend_from_slice(chain);
    m
}

/// An SA body: one ISAKMP proposal with `n` transforms of `attrs` TV attributes each.
fn sa_body(n: usize, attrs: usize) -> Vec<u8> {
    let mut transforms = Vec::new();
    for i in 0..n {
        let mut t = vec![u8::from(i + 1 < n) * 3, 0, 0, 0, (i % 256) as u8, 1, 0, 0];
        for _ in 0..attrs {
            t.extend_from_slice(&[0x80, 1, 0, 7]);
        }
        let len = u16::try_from(t.len()).unwrap_or(u16::MAX).to_be_bytes();
        t[2..4].copy_from_slice(&len);
        transforms.extend_from_slice(&t);
    }
    let mut p = vec![0, 0, 0, 0, 1, 1, 0, u8::try_from(n).unwrap_or(u8::MAX)];
    p.extend_from_slice(&transforms);
    let len = u16::try_from(p.len()).unwrap_or(u16::MAX).to_be_bytes();
    p[2..4].copy_from_slice(&len);
    let mut body = vec![0, 0, 0, 1, 0, 0, 0, 1];
    body.extend_from_slice(&p);
    body
}

#[test]
fn the_counter_counts() {
    let (first, c) = chain(&[(VENDOR, vec![1; 100])]);
    let (bytes, r) = cost(&clear(MAIN, first, &c));
    assert_eq!(r, Ok(1));
    assert!(bytes >= 100, "the vendor ID's copy is counted: {bytes}");
}

#[test]
fn worst_cases_stay_within_the_bound() {
    let mut report = Vec::new();
    // 64 empty Vendor IDs: the payload list at its longest, for the fewest bytes.
    let (first, c) = chain(&vec![(VENDOR, vec![]); 64]);
    let m = clear(MAIN, first, &c);
    report.push(("64 empty vendor IDs", m.len(), cost(&m)));
    // 255 transforms without attributes (8 octets on the wire, a struct each).
    let (first, c) = chain(&[(SA, sa_body(255, 0))]);
    let m = clear(MAIN, first, &c);
    assert_eq!(cost(&m).1, Ok(1));
    report.push(("255 bare transforms", m.len(), cost(&m)));
    // 255 transforms of 60 attributes (4 octets on the wire, a struct each).
    let (first, c) = chain(&[(SA, sa_body(255, 60))]);
    let m = clear(MAIN, first, &c);
    assert_eq!(cost(&m).1, Ok(1));
    report.push(("255 transforms x 60 attributes", m.len(), cost(&m)));
    // The same, encrypted (the decrypted copy on top).
    let m = v1_seal_probe(SA, &chain(&[(SA, sa_body(255, 60))]).1);
    assert_eq!(cost(&m).1, Ok(1));
    report.push(("encrypted 255 x 60", m.len(), cost(&m)));
    // A Delete with 16,000 4-octet SPIs.
    let mut d = vec![0, 0, 0, 1, 3, 4];
    d.extend_from_slice(&16_000u16.to_be_bytes());
    d.extend_from_slice(&[7; 64_000]);
    let m = v1_seal_probe(DELETE, &chain(&[(DELETE, d)]).1);
    assert_eq!(cost(&m).1, Ok(1));
    report.push(("encrypted delete, 16,000 SPIs", m.len(), cost(&m)));
    for (name, len, (bytes, _)) in report {
        println!("{name}: {len} bytes -> {bytes} allocated ({:.1}x)", bytes as f64 / len as f64);
    }
}

fn any_body() -> impl Strategy<Value = (u8, Vec<u8>)> {
    prop_oneof![
        (1usize..40, 0usize..20).prop_map(|(n, a)| (SA, sa_body(n, a))),
        (1usize..40, 0usize..20, any::<prop::sample::Index>(), any::<u8>()).prop_map(|(n, a, i, b)| {
            let mut s = sa_body(n, a);
            let i = i.index(s.len());
            s[i] = b;
            (SA, s)
        }),
        (any::<u16>(), vec(any::<u8>(), 0..512)).prop_map(|(n, spis)| {
            let mut d = vec![0, 0, 0, 1, 3, 4];
            d.extend_from_slice(&n.to_be_bytes());
            d.extend_from_slice(&spis);
            (DELETE, d)
        }),
        (any::<u8>(), vec(any::<u8>(), 0..256)).prop_map(|(spi, rest)| {
            let mut n = vec![0, 0, 0, 1, 3, spi, 0x60, 0];
            n.extend_from_slice(&rest);
            (NOTIFY, n)
        }),
        (any::<u8>(), vec(any::<u8>(), 0..256)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_datagrams(data in vec(any::<u8>(), 0..=MAX_DATAGRAM)) {
        let _ = cost(&data);
    }

    #[test]
    fn random_chains_behind_a_valid_header(
        first in any::<u8>(),
        exchange in prop_oneof![Just(MAIN), Just(4u8), Just(INFORMATIONAL), Just(32u8)],
        body in vec(any::<u8>(), 0..=4096),
        encrypted in any::<bool>(),
    ) {
        let m = if encrypted { v1_seal_probe(first, &body) } else { clear(exchange, first, &body) };
        let _ = cost(&m);
    }

    #[test]
    fn structured_chains_with_lying_counts(payloads in vec(any_body(), 1..70), encrypted in any::<bool>()) {
        let (first, c) = chain(&payloads);
        let m = if encrypted { v1_seal_probe(first, &c) } else { clear(INFORMATIONAL, first, &c) };
        let _ = cost(&m);
    }
}
