//! Every ESP suite through `SaTable::seal` / `open`: round trips, layout (IV, padding,
//! ICV lengths), tampering, the order of checks (replay check, ICV before decryption,
//! replay commit), ESN in the CBC ICV, CBC IVs.

mod common;

use common::*;
use esp::cipher::{EspCipher, OpenError};
use esp::DropReason;
use ipsec_types::{EncrAlg, IntegAlg};

/// IV length, ICV length, what the ciphertext is padded to (AES-GCM and AES-CBC: the
/// 16-byte block; ChaCha20-Poly1305: 4 bytes).
fn layout(s: Suite) -> (usize, usize, usize) {
    match s {
        (EncrAlg::ChaCha20Poly1305, _) => (8, 16, 4),
        (_, None) => (8, 16, 16),
        (_, Some(i)) => (16, i.icv_len(), 16),
    }
}

#[test]
fn every_suite_round_trips_with_its_layout() {
    for suite in suites() {
        for esn in [false, true] {
            let (left, right) = pair(0x2000, |p| {
                p.key = suite_key(suite, 3);
                p.esn = esn;
            });
            let (iv_len, icv_len, align) = layout(suite);
            for len in [28, 29, 30, 31, 32, 33, 46, 47, 48, 100, 1400, 1500] {
                for inner in [ipv4("10.1.0.5", "10.2.0.9", len), ipv6("2001:db8:1::1", "2001:db8:2::1", len + 20)] {
                    let esp = seal(&left, &inner);
                    let ct_len = esp.len() - 8 - iv_len - icv_len;
                    assert_eq!(ct_len % align, 0, "{suite:?} len {len}");
                    assert!(ct_len >= inner.len() + 2 && ct_len < inner.len() + 2 + align, "{suite:?} len {len}");
                    assert!(esp.len() <= inner.len() + esp::MAX_OVERHEAD);
                    assert_eq!(open(&right, &esp), Ok(inner), "{suite:?} esn {esn} len {len}");
                }
            }
        }
    }
}

#[test]
fn the_layout_of_a_suite_is_the_layout_of_its_cipher() {
    for suite in suites() {
        let want = esp::cipher::Layout::of(suite.0, suite.1).unwrap();
        assert_eq!(EspCipher::new(&suite_key(suite, 1)).unwrap().layout(), want, "{suite:?}");
        let (iv_len, icv_len, align) = layout(suite);
        assert_eq!((want.iv_len, want.icv_len, want.align), (iv_len, icv_len, align), "{suite:?}");
        assert_eq!(want.max_overhead(), 8 + iv_len + align - 1 + 2 + icv_len, "{suite:?}");
        assert!(want.max_overhead() <= esp::MAX_OVERHEAD, "{suite:?}");
    }
    // AES-CBC needs an integrity algorithm: no layout without one.
    assert_eq!(esp::cipher::Layout::of(EncrAlg::AesCbc128, None), None);
}

#[test]
fn every_byte_after_the_spi_is_authenticated() {
    for suite in suites() {
        let (left, right) = pair(0x2000, |p| p.key = suite_key(suite, 5));
        let inner = ipv4("10.1.0.5", "10.2.0.9", 61);
        let esp = seal(&left, &inner);
        for i in 4..esp.len() {
            let mut bad = esp.clone();
            bad[i] ^= 0x80;
            assert_eq!(open(&right, &bad), Err(DropReason::AuthFailed), "{suite:?} byte {i}");
        }
        // Forgeries did not consume the sequence number: the genuine packet opens once.
        assert_eq!(open(&right, &esp), Ok(inner));
        assert_eq!(open(&right, &esp), Err(DropReason::Replay));
        let st = &right.stats()[0].counters;
        assert_eq!((st.auth_failed, st.replay, st.packets), ((esp.len() - 4) as u64, 1, 1), "{suite:?}");
    }
}

#[test]
fn cbc_checks_lengths_and_the_icv_before_decrypting() {
    for integ in IntegAlg::ALL {
        let suite = (EncrAlg::AesCbc256, Some(integ));
        let (left, right) = pair(0x2000, |p| p.key = suite_key(suite, 9));
        let esp = seal(&left, &ipv4("10.1.0.5", "10.2.0.9", 100));
        let icv = integ.icv_len();
        // Not a whole number of blocks, or no block at all: malformed, before any MAC.
        for cut in [1, 15, 17] {
            let short = [&esp[..esp.len() - icv - cut], &esp[esp.len() - icv..]].concat();
            assert_eq!(open(&right, &short), Err(DropReason::Malformed), "{integ} cut {cut}");
        }
        assert_eq!(open(&right, &esp[..8 + 16 + icv]), Err(DropReason::Malformed));
        // A whole block less: the lengths fit, the ICV does not.
        let short = [&esp[..esp.len() - icv - 16], &esp[esp.len() - icv..]].concat();
        assert_eq!(open(&right, &short), Err(DropReason::AuthFailed));
        // A ciphertext that would decrypt to a broken trailer, under a wrong ICV: the
        // ICV decides (decryption never ran), so it counts as an ICV failure.
        let mut garbage = esp.clone();
        let n = garbage.len();
        garbage[n - icv - 16..n - icv].fill(0xa5);
        assert_eq!(open(&right, &garbage), Err(DropReason::AuthFailed));
        assert_eq!(right.global_drops().malformed, 4);
        assert_eq!(open(&right, &esp).map(|p| p.len()), Ok(100));
    }
}

#[test]
fn cbc_ivs_are_fresh_per_packet_and_per_key() {
    let suite = (EncrAlg::AesCbc128, Some(IntegAlg::HmacSha1_96));
    let (left, _) = pair(0x2000, |p| p.key = suite_key(suite, 1));
    let (other, _) = pair(0x2000, |p| p.key = suite_key(suite, 2));
    let inner = ipv4("10.1.0.5", "10.2.0.9", 100);
    let ivs: Vec<Vec<u8>> = (0..64).map(|_| seal(&left, &inner)[8..24].to_vec()).collect();
    let mut uniq = ivs.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), ivs.len());
    // Not the sequence number, and another key gives another IV for the same number.
    assert!(ivs.iter().all(|iv| iv[..8] != [0; 8]));
    assert_ne!(seal(&other, &inner)[8..24], ivs[0][..]);
    // Same plaintext, different IV: different ciphertext.
    let (a, b) = (seal(&left, &inner), seal(&left, &inner));
    assert_ne!(a[24..40], b[24..40]);
}

#[test]
fn esn_high_bits_are_in_every_icv() {
    // With ESN the high half of the sequence number is authenticated but not sent: a
    // receiver that infers another high half must fail the ICV.
    for suite in suites() {
        let k = suite_key(suite, 4);
        let c = EspCipher::new(&k).unwrap();
        let l = c.layout();
        let ct_len = 32;
        let mut pkt = vec![0u8; l.header_len() + ct_len + l.icv_len];
        pkt[..4].copy_from_slice(&0x77u32.to_be_bytes());
        let seq = (3u64 << 32) | 9;
        pkt[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
        c.seal(0x77, seq, true, &mut pkt).unwrap();
        let mut out = vec![0u8; pkt.len()];
        assert_eq!(c.open(0x77, seq, true, &pkt, &mut out).map(|p| p.len()), Ok(ct_len), "{suite:?}");
        assert_eq!(c.open(0x77, 9 | (4 << 32), true, &pkt, &mut out).err(), Some(OpenError::Auth), "{suite:?}");
        // The receiver's output buffer too short: refused, no panic.
        assert_eq!(c.open(0x77, seq, true, &pkt, &mut out[..ct_len - 1]).err(), Some(OpenError::Malformed));
        // Each direction derives its own keys from its own KEYMAT: another key fails.
        let other = EspCipher::new(&suite_key(suite, 5)).unwrap();
        assert_eq!(other.open(0x77, seq, true, &pkt, &mut out).err(), Some(OpenError::Auth), "{suite:?}");
    }
}

#[test]
fn keys_of_the_wrong_kind_are_refused_at_install() {
    // An `EspKey` can only be built with a valid pair, so a table never sees a CBC key
    // without an integrity key; the cipher refuses a mismatch all the same.
    for suite in suites() {
        assert!(EspCipher::new(&suite_key(suite, 1)).is_some(), "{suite:?}");
    }
    let gcm = suite_key((EncrAlg::AesGcm16_128, None), 1);
    assert!(esp::cipher::CbcHmac::new(&gcm).is_none());
    let cbc = suite_key((EncrAlg::AesCbc128, Some(IntegAlg::HmacSha256_128)), 1);
    assert!(esp::cipher::Aead::new(&cbc).is_none());
}

#[test]
fn debug_output_shows_no_key_bytes() {
    for suite in suites() {
        let k = suite_key(suite, 0xa0);
        let c = EspCipher::new(&k).unwrap();
        for text in [format!("{k:?}"), format!("{c:?}")] {
            assert!(text.contains("redacted"), "{text}");
            assert!(!text.to_lowercase().contains("a0a1"), "{text}");
            assert!(!text.contains("160, 161"), "{text}");
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Arbitrary bytes after a known SPI, for every suite: never a panic, never a
    /// delivery (nothing forged verifies), and the output buffer may be short.
    #[test]
    fn arbitrary_packets_never_panic_or_deliver(
        body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        out_len in 0usize..256,
        which in 0usize..15,
    ) {
        let suite = suites()[which % suites().len()];
        let (_, right) = pair(0x2000, |p| p.key = suite_key(suite, 6));
        let pkt = [&0x2000u32.to_be_bytes()[..], &body].concat();
        let mut out = vec![0u8; out_len];
        let r = right.open(NOW, &pkt, &mut out);
        proptest::prop_assert!(matches!(r, esp::Opened::Drop(_)), "{:?}", r);
    }

    /// A genuine packet with a splice of arbitrary bytes: refused, never a panic.
    #[test]
    fn spliced_packets_are_refused(
        at in 4usize..120,
        junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..40),
        which in 0usize..15,
    ) {
        let suite = suites()[which % suites().len()];
        let (left, right) = pair(0x2000, |p| p.key = suite_key(suite, 6));
        let esp = seal(&left, &ipv4("10.1.0.5", "10.2.0.9", 64));
        let at = at.min(esp.len());
        let bad = [&esp[..at], &junk, &esp[at..]].concat();
        proptest::prop_assert!(open(&right, &bad).is_err());
    }
}
