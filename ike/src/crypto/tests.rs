//! Unit tests of the crypto module. Published known-answer vectors are in `tests/crypto_kat.rs`.

use super::*;
use crate::Rng;
use ::hmac::{Hmac, Mac};
use ipsec_types::DhGroup;

const PRFS: [PrfAlg; 4] = PrfAlg::ALL;
/// Every SK payload cipher: the AEADs, and AES-CBC of each key size with each HMAC.
const SUITES: [(EncrAlg, Option<IntegAlg>); 15] = {
    use EncrAlg::*;
    use IntegAlg::*;
    [
        (AesGcm16_128, None),
        (AesGcm16_256, None),
        (ChaCha20Poly1305, None),
        (AesCbc128, Some(HmacSha1_96)),
        (AesCbc128, Some(HmacSha256_128)),
        (AesCbc128, Some(HmacSha384_192)),
        (AesCbc128, Some(HmacSha512_256)),
        (AesCbc192, Some(HmacSha1_96)),
        (AesCbc192, Some(HmacSha256_128)),
        (AesCbc192, Some(HmacSha384_192)),
        (AesCbc192, Some(HmacSha512_256)),
        (AesCbc256, Some(HmacSha1_96)),
        (AesCbc256, Some(HmacSha256_128)),
        (AesCbc256, Some(HmacSha384_192)),
        (AesCbc256, Some(HmacSha512_256)),
    ]
};
/// Length of SK_e (key, then salt for the AEADs) and SK_a.
fn sk_lens(encr: EncrAlg, integ: Option<IntegAlg>) -> (usize, usize) {
    (encr.key_len() + if encr.is_aead() { 4 } else { 0 }, integ.map_or(0, |i| i.key_len()))
}
/// The groups the cheap and property tests loop over; every group is in `both_sides_derive_equal_keys`.
const GROUPS: [DhGroup; 4] = [DhGroup::Curve25519, DhGroup::Ecp256, DhGroup::Ecp384, DhGroup::Ecp521];

/// An independent HMAC (RustCrypto) to check ring-based code against.
fn rc_hmac(alg: PrfAlg, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    fn run<M: Mac + ::hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut m = <M as Mac>::new_from_slice(key).expect("HMAC takes any key length");
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().to_vec()
    }
    match alg {
        PrfAlg::HmacSha1 => run::<Hmac<sha1::Sha1>>(key, parts),
        PrfAlg::HmacSha256 => run::<Hmac<sha2::Sha256>>(key, parts),
        PrfAlg::HmacSha384 => run::<Hmac<sha2::Sha384>>(key, parts),
        PrfAlg::HmacSha512 => run::<Hmac<sha2::Sha512>>(key, parts),
    }
}

/// prf+ written straight from the RFC 7296 2.13 definition, on the independent HMAC.
fn rc_prf_plus(alg: PrfAlg, key: &[u8], seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut t: Vec<u8> = Vec::new();
    let mut n = 1u8;
    while out.len() < len {
        t = rc_hmac(alg, key, &[&t, seed, &[n]]);
        out.extend_from_slice(&t);
        n = n.wrapping_add(1);
    }
    out.truncate(len);
    out
}

/// A deterministic Rng: a counter-mode byte stream from a seed.
struct TestRng(u64);
impl Rng for TestRng {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            *b = (self.0 >> 33) as u8;
        }
    }
}

/// An Rng that only yields zero bytes (a broken one).
struct ZeroRng;
impl Rng for ZeroRng {
    fn fill(&mut self, buf: &mut [u8]) {
        buf.fill(0);
    }
}

#[test]
fn prf_matches_independent_hmac() {
    for alg in PRFS {
        let out = prf(alg, b"some key", b"some data");
        assert_eq!(out.len(), alg.output_len());
        assert_eq!(&out[..], &rc_hmac(alg, b"some key", &[b"some data"])[..]);
    }
}

#[test]
fn prf_plus_matches_independent_computation() {
    let key: Vec<u8> = (0u8..70).collect();
    let seed: Vec<u8> = (100u8..180).collect();
    for alg in PRFS {
        for len in [0, 1, 31, 32, 33, 48, 64, 65, 200, 264, 1000] {
            let ours = prf_plus(alg, &key, &seed, len);
            assert_eq!(&ours[..], &rc_prf_plus(alg, &key, &seed, len)[..], "{alg} len {len}");
        }
    }
}

#[test]
fn prf_plus_is_clamped_at_255_blocks() {
    let out = prf_plus(PrfAlg::HmacSha256, b"k", b"s", 100_000);
    assert_eq!(out.len(), 255 * 32);
    assert_eq!(out.len(), prf_plus_max_len(PrfAlg::HmacSha256));
    assert_eq!(&out[..], &rc_prf_plus(PrfAlg::HmacSha256, b"k", b"s", 255 * 32)[..]);
}

#[test]
fn ike_key_lengths_for_every_combination() {
    for prf_alg in PRFS {
        for (encr, integ) in SUITES {
            let k = derive_ike_keys(prf_alg, encr, integ, &[7; 32], &[1; 32], &[2; 32], 0x1122, 0x3344);
            let p = prf_alg.output_len();
            let (e, a) = sk_lens(encr, integ);
            assert_eq!(k.sk_d.len(), p);
            assert_eq!(k.sk_pi.len(), p);
            assert_eq!(k.sk_pr.len(), p);
            assert_eq!((k.sk_ai.len(), k.sk_ar.len()), (a, a));
            assert_eq!(k.sk_ei.len(), e);
            assert_eq!(k.sk_er.len(), e);
            assert!(SkCipher::new(encr, integ, &k.sk_ei, &k.sk_ai).is_some());
            assert!(SkCipher::new(encr, integ, &k.sk_er, &k.sk_ar).is_some());
            assert!(k.ciphers(encr, integ, true).is_some());
            let r = derive_rekeyed_ike_keys(prf_alg, prf_alg, &k.sk_d, encr, integ, &[9; 32], &[3; 32], &[4; 32], 5, 6);
            assert_eq!((r.sk_d.len(), r.sk_ai.len(), r.sk_ei.len(), r.sk_pr.len()), (p, a, e, p));
            // ESP KEYMAT: each direction as `EspKey::keymat_len` says.
            let esp = ipsec_types::EspKey::keymat_len(encr, integ).expect("valid pair");
            for pfs in [None, Some(&[8u8; 32][..])] {
                let (i2r, r2i) = derive_child_keys(prf_alg, &k.sk_d, encr, integ, pfs, &[1; 32], &[2; 32]);
                assert_eq!((i2r.len(), r2i.len()), (esp, esp));
                assert_ne!(&i2r[..], &r2i[..]);
                assert!(ipsec_types::EspKey::from_keymat(encr, integ, &i2r).is_some());
            }
            // An invalid pair yields no keys rather than wrong ones.
            let wrong = if integ.is_some() { None } else { Some(IntegAlg::HmacSha256_128) };
            assert!(derive_child_keys(prf_alg, &k.sk_d, encr, wrong, None, &[1; 32], &[2; 32]).0.is_empty());
            assert!(k.ciphers(encr, wrong, true).is_none());
        }
    }
}

#[test]
fn ike_keys_match_independent_layout() {
    let (ni, nr, gir) = ([0xa1u8; 32], [0xb2u8; 24], [0xc3u8; 32]);
    let (spi_i, spi_r) = (0x0102_0304_0506_0708u64, 0x1112_1314_1516_1718u64);
    for prf_alg in PRFS {
        for (encr, integ) in SUITES {
            let k = derive_ike_keys(prf_alg, encr, integ, &gir, &ni, &nr, spi_i, spi_r);
            let nonces = [&ni[..], &nr[..]].concat();
            let skeyseed = rc_hmac(prf_alg, &nonces, &[&gir]);
            let seed = [&ni[..], &nr[..], &spi_i.to_be_bytes(), &spi_r.to_be_bytes()].concat();
            let p = prf_alg.output_len();
            let (e, a) = sk_lens(encr, integ);
            // {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} (RFC 7296 2.14).
            let km = rc_prf_plus(prf_alg, &skeyseed, &seed, 3 * p + 2 * a + 2 * e);
            let mut rest = &km[..];
            for (name, got) in [
                ("SK_d", &k.sk_d),
                ("SK_ai", &k.sk_ai),
                ("SK_ar", &k.sk_ar),
                ("SK_ei", &k.sk_ei),
                ("SK_er", &k.sk_er),
                ("SK_pi", &k.sk_pi),
                ("SK_pr", &k.sk_pr),
            ] {
                let (want, tail) = rest.split_at(got.len());
                assert_eq!(&got[..], want, "{name} {prf_alg} {encr} {integ:?}");
                rest = tail;
            }
            assert!(rest.is_empty());

            // Rekey: SKEYSEED = prf(SK_d(old), g^ir | Ni | Nr), new SPIs.
            let r = derive_rekeyed_ike_keys(prf_alg, prf_alg, &k.sk_d, encr, integ, &gir, &ni, &nr, 77, 88);
            let skeyseed = rc_hmac(prf_alg, &k.sk_d, &[&gir, &ni, &nr]);
            let seed = [&ni[..], &nr[..], &77u64.to_be_bytes(), &88u64.to_be_bytes()].concat();
            let km = rc_prf_plus(prf_alg, &skeyseed, &seed, 3 * p + 2 * a + 2 * e);
            assert_eq!(&r.sk_d[..], &km[..p]);
            assert_eq!(&r.sk_ai[..], &km[p..p + a]);
            assert_eq!(&r.sk_pr[..], &km[2 * p + 2 * a + 2 * e..]);

            // CHILD_SA: KEYMAT = prf+(SK_d, [g^ir |] Ni | Nr), i->r first, each direction
            // encryption key (and salt) then integrity key.
            let esp = ipsec_types::EspKey::keymat_len(encr, integ).expect("valid pair");
            for pfs in [None, Some(&gir[..])] {
                let (i2r, r2i) = derive_child_keys(prf_alg, &k.sk_d, encr, integ, pfs, &ni, &nr);
                let seed = [pfs.unwrap_or_default(), &ni[..], &nr[..]].concat();
                let km = rc_prf_plus(prf_alg, &k.sk_d, &seed, 2 * esp);
                assert_eq!(&i2r[..], &km[..esp]);
                assert_eq!(&r2i[..], &km[esp..]);
                let (ki, kr) = ipsec_types::EspKey::pair_from_keymat(encr, integ, &km).expect("split");
                assert_eq!((ki.key(), kr.integ_key()), (&km[..encr.key_len()], &km[2 * esp - a..]));
            }
        }
    }
}

#[test]
fn rekey_with_distinct_prfs_uses_old_prf_for_skeyseed() {
    let r = derive_rekeyed_ike_keys(
        PrfAlg::HmacSha512,
        PrfAlg::HmacSha256,
        &[5; 64],
        EncrAlg::AesGcm16_256,
        None,
        &[6; 32],
        &[1; 32],
        &[2; 32],
        3,
        4,
    );
    let skeyseed = rc_hmac(PrfAlg::HmacSha512, &[5; 64], &[&[6; 32], &[1; 32], &[2; 32]]);
    let seed = [&[1u8; 32][..], &[2; 32], &3u64.to_be_bytes(), &4u64.to_be_bytes()].concat();
    let km = rc_prf_plus(PrfAlg::HmacSha256, &skeyseed, &seed, 3 * 32 + 2 * 36);
    assert_eq!(r.sk_d.len(), 32);
    assert_eq!(&r.sk_d[..], &km[..32]);
    assert_eq!(&r.sk_ei[..], &km[32..68]);
}

#[test]
fn both_sides_derive_equal_keys() {
    let mut rng_i = TestRng(1);
    let mut rng_r = TestRng(2);
    for group in DhGroup::ALL {
        let ki = KeyExchange::generate(group, &mut rng_i);
        let kr = KeyExchange::generate(group, &mut rng_r);
        assert_eq!(ki.group(), group);
        assert_eq!(ki.public_value().len(), group.public_len());
        let gir_i = ki.agree(&kr.public_value()).expect("valid responder KE");
        let gir_r = kr.agree(&ki.public_value()).expect("valid initiator KE");
        assert_eq!(&gir_i[..], &gir_r[..]);
        assert_eq!(gir_i.len(), group.shared_len());
        assert!(KeyExchange::plausible_public(group, &kr.public_value()));
        for prf_alg in PRFS {
            for (encr, integ) in SUITES {
                let (ni, nr) = ([0x11u8; 32], [0x22u8; 32]);
                let a = derive_ike_keys(prf_alg, encr, integ, &gir_i, &ni, &nr, 42, 43);
                let b = derive_ike_keys(prf_alg, encr, integ, &gir_r, &ni, &nr, 42, 43);
                for (x, y) in [(&a.sk_d, &b.sk_d), (&a.sk_ei, &b.sk_ei), (&a.sk_er, &b.sk_er), (&a.sk_ai, &b.sk_ai)] {
                    assert_eq!(&x[..], &y[..]);
                }
                assert_eq!(&a.sk_pi[..], &b.sk_pi[..]);
                assert_eq!(&a.sk_pr[..], &b.sk_pr[..]);
                assert_ne!(&a.sk_ei[..], &a.sk_er[..]);

                // The initiator's seal is what the responder's open takes, both ways.
                let (seal_i, open_i) = a.ciphers(encr, integ, true).expect("key lengths");
                let (seal_r, open_r) = b.ciphers(encr, integ, false).expect("key lengths");
                for (seal, open) in [(&seal_i, &open_r), (&seal_r, &open_i)] {
                    let mut buf = vec![0x42; 3 * seal.block_len()];
                    let iv = vec![9; seal.iv_len()];
                    seal.seal(&iv, b"hdr", &mut buf);
                    assert_eq!(buf.len(), 3 * seal.block_len() + seal.icv_len());
                    let n = open.open(&iv, b"hdr", &mut buf).expect("same key");
                    assert_eq!(&buf[..n], &vec![0x42; 3 * seal.block_len()][..]);
                }
                // And not with its own direction's key.
                let mut buf = vec![0x42; 16];
                seal_i.seal(&vec![9; seal_i.iv_len()], b"hdr", &mut buf);
                assert!(open_i.open(&vec![9; seal_i.iv_len()], b"hdr", &mut buf).is_err());
            }
        }
    }
}

#[test]
fn different_nonces_or_spis_give_different_keys() {
    let base = derive_ike_keys(PrfAlg::HmacSha256, EncrAlg::AesGcm16_128, None, &[1; 32], &[2; 32], &[3; 32], 4, 5);
    let spi = derive_ike_keys(PrfAlg::HmacSha256, EncrAlg::AesGcm16_128, None, &[1; 32], &[2; 32], &[3; 32], 4, 6);
    let swapped = derive_ike_keys(PrfAlg::HmacSha256, EncrAlg::AesGcm16_128, None, &[1; 32], &[3; 32], &[2; 32], 4, 5);
    assert_ne!(&base.sk_d[..], &spi.sk_d[..]);
    assert_ne!(&base.sk_d[..], &swapped.sk_d[..]);
}

#[test]
fn psk_auth_matches_rfc_formula() {
    for alg in PRFS {
        let (psk, msg, nonce, sk_p, id) =
            (b"secret".as_slice(), b"IKE_SA_INIT msg", [7u8; 32], [8u8; 32], b"\x02\0\0\0gw");
        let ours = psk_auth(alg, psk, msg, &nonce, &sk_p, id);
        let key = rc_hmac(alg, psk, &[b"Key Pad for IKEv2"]);
        let maced_id = rc_hmac(alg, &sk_p, &[id]);
        let expected = rc_hmac(alg, &key, &[msg, &nonce, &maced_id]);
        assert_eq!(&ours[..], &expected[..]);
        assert!(ct_eq(&ours, &expected));
        let other = psk_auth(alg, b"Secret", msg, &nonce, &sk_p, id);
        assert!(!ct_eq(&ours, &other));
    }
}

#[test]
fn ct_eq_semantics() {
    assert!(ct_eq(b"", b""));
    assert!(ct_eq(b"abc", b"abc"));
    assert!(!ct_eq(b"abc", b"abd"));
    assert!(!ct_eq(b"abc", b"ab"));
    assert!(!ct_eq(b"", b"a"));
}

#[test]
fn x25519_rejects_wrong_length_and_small_order_points() {
    let kx = KeyExchange::generate(DhGroup::Curve25519, &mut TestRng(3));
    assert_eq!(kx.agree(&[9; 31]), Err(CryptoError::InvalidPublicKey));
    assert_eq!(kx.agree(&[9; 33]), Err(CryptoError::InvalidPublicKey));
    assert_eq!(kx.agree(&[]), Err(CryptoError::InvalidPublicKey));
    // u = 0 and u = 1 are of small order: the shared secret would be all zeros.
    assert_eq!(kx.agree(&[0; 32]), Err(CryptoError::InvalidPublicKey));
    let mut one = [0u8; 32];
    one[0] = 1;
    assert_eq!(kx.agree(&one), Err(CryptoError::InvalidPublicKey));
}

#[test]
fn ecp256_rejects_invalid_points() {
    let kx = KeyExchange::generate(DhGroup::Ecp256, &mut TestRng(4));
    let peer = KeyExchange::generate(DhGroup::Ecp256, &mut TestRng(5)).public_value();
    assert!(kx.agree(&peer).is_ok());
    // With the SEC1 prefix (65 bytes), truncated, or empty: wrong length.
    let mut tagged = vec![4u8];
    tagged.extend_from_slice(&peer);
    assert_eq!(kx.agree(&tagged), Err(CryptoError::InvalidPublicKey));
    assert_eq!(kx.agree(&peer[..63]), Err(CryptoError::InvalidPublicKey));
    assert_eq!(kx.agree(&[]), Err(CryptoError::InvalidPublicKey));
    // Not on the curve.
    let mut off = peer.clone();
    off[63] ^= 1;
    assert_eq!(kx.agree(&off), Err(CryptoError::InvalidPublicKey));
    // All zeros (the "identity" encoding some stacks use) and coordinates >= p.
    assert_eq!(kx.agree(&[0; 64]), Err(CryptoError::InvalidPublicKey));
    assert_eq!(kx.agree(&[0xff; 64]), Err(CryptoError::InvalidPublicKey));
}

#[test]
fn ecp256_scalar_rejection_draws_again() {
    /// Yields 32 bytes of 0xff (>= n, invalid), then a valid scalar 0..01.
    struct TwoDraws(u8);
    impl Rng for TwoDraws {
        fn fill(&mut self, buf: &mut [u8]) {
            if self.0 == 0 {
                buf.fill(0xff);
            } else {
                buf.fill(0);
                if let Some(last) = buf.last_mut() {
                    *last = 1;
                }
            }
            self.0 += 1;
        }
    }
    let kx = KeyExchange::generate(DhGroup::Ecp256, &mut TwoDraws(0));
    // Private key 1: the public value is the generator G.
    let g = hex::decode(concat!(
        "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296",
        "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"
    ))
    .expect("hex");
    assert_eq!(kx.public_value(), g);
}

#[test]
fn broken_zero_rng_still_terminates_with_valid_keys() {
    for group in DhGroup::ALL {
        let a = KeyExchange::generate(group, &mut ZeroRng);
        let b = KeyExchange::generate(group, &mut TestRng(6));
        let s1 = a.agree(&b.public_value()).expect("valid");
        let s2 = b.agree(&a.public_value()).expect("valid");
        assert_eq!(&s1[..], &s2[..]);
    }
}

/// ECP-384 and ECP-521 refuse what ECP-256 refuses: SEC1-tagged or cut values, points off
/// the curve, all zeros, coordinates >= p; `plausible_public` agrees with `agree`.
#[test]
fn ecp384_and_ecp521_reject_invalid_points() {
    for group in [DhGroup::Ecp384, DhGroup::Ecp521] {
        let kx = KeyExchange::generate(group, &mut TestRng(4));
        let peer = KeyExchange::generate(group, &mut TestRng(5)).public_value();
        let len = group.public_len();
        assert_eq!(peer.len(), len);
        assert!(kx.agree(&peer).is_ok());
        assert!(KeyExchange::plausible_public(group, &peer));
        let mut tagged = vec![4u8];
        tagged.extend_from_slice(&peer);
        let mut off = peer.clone();
        off[len - 1] ^= 1;
        let mut x_too_big = peer.clone();
        x_too_big[..len / 2].fill(0xff);
        for bad in [tagged, peer[..len - 1].to_vec(), vec![], off, vec![0; len], vec![0xff; len], x_too_big] {
            assert_eq!(kx.agree(&bad), Err(CryptoError::InvalidPublicKey), "{group} {}", bad.len());
            assert!(!KeyExchange::plausible_public(group, &bad), "{group}");
        }
        // The other curves' values are the wrong length.
        for other in [DhGroup::Ecp256, DhGroup::Ecp384, DhGroup::Ecp521].into_iter().filter(|g| *g != group) {
            let v = KeyExchange::generate(other, &mut TestRng(6)).public_value();
            assert_eq!(kx.agree(&v), Err(CryptoError::InvalidPublicKey));
        }
    }
}

/// P-521 scalars are 66 bytes of which the top 7 bits are cleared, so nearly every draw is
/// a valid scalar and the key is what the Rng gave.
#[test]
fn ecp521_masks_the_top_bits_of_its_scalar() {
    struct Ones;
    impl Rng for Ones {
        fn fill(&mut self, buf: &mut [u8]) {
            buf.fill(0x11);
        }
    }
    let kx = KeyExchange::generate(DhGroup::Ecp521, &mut Ones);
    let mut scalar = [0x11u8; 66];
    scalar[0] = 0x01;
    let sk = p521::SecretKey::from_slice(&scalar).expect("valid scalar");
    let point = p521::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&sk.public_key(), false);
    assert_eq!(kx.public_value(), point.as_bytes()[1..].to_vec());
}

/// The MODP groups go through `KeyExchange` like the others, and their range check is the
/// one `plausible_public` applies.
#[test]
fn modp_through_key_exchange() {
    for group in [DhGroup::Modp768, DhGroup::Modp1024, DhGroup::Modp1536, DhGroup::Modp2048] {
        let kx = KeyExchange::generate(group, &mut TestRng(7));
        assert_eq!(kx.group(), group);
        let len = group.public_len();
        let mut one = vec![0u8; len];
        one[len - 1] = 1;
        for bad in [vec![0; len], one, vec![0xff; len], vec![2; len - 1], vec![2; len + 1]] {
            assert!(!KeyExchange::plausible_public(group, &bad), "{group}");
            assert_eq!(kx.agree(&bad), Err(CryptoError::InvalidPublicKey), "{group}");
        }
        assert!(KeyExchange::plausible_public(group, &kx.public_value()));
    }
}

/// SK_e and SK_a for a suite, from counting bytes.
fn suite_keys(encr: EncrAlg, integ: Option<IntegAlg>) -> (Vec<u8>, Vec<u8>) {
    let (e, a) = sk_lens(encr, integ);
    ((0..e as u8).collect(), (100..100 + a as u8).collect())
}

#[test]
fn sk_cipher_round_trip_and_tamper() {
    for (encr, integ) in SUITES {
        let (sk_e, sk_a) = suite_keys(encr, integ);
        let c = SkCipher::new(encr, integ, &sk_e, &sk_a).expect("length");
        assert_eq!((c.encr(), c.integ()), (encr, integ));
        let (iv_len, icv_len, block) = (c.iv_len(), c.icv_len(), c.block_len());
        match integ {
            None => assert_eq!((iv_len, icv_len, block), (8, 16, 1)),
            Some(i) => assert_eq!((iv_len, icv_len, block), (16, i.icv_len(), 16)),
        }
        let iv: Vec<u8> = (1..=iv_len as u8).collect();
        let aad = b"ike header + sk payload header";
        let plain = b"some payloads, padded to 32 B\x00\x00\x02".to_vec();
        assert_eq!(plain.len(), 32);
        let mut buf = plain.clone();
        c.seal(&iv, aad, &mut buf);
        assert_eq!(buf.len(), plain.len() + icv_len);
        assert_ne!(&buf[..plain.len()], &plain[..]);
        let sealed = buf.clone();

        let mut ok = sealed.clone();
        assert_eq!(c.open(&iv, aad, &mut ok), Ok(plain.len()));
        assert_eq!(&ok[..plain.len()], &plain[..]);

        // Every single-bit flip, of ciphertext or ICV, fails the integrity check.
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(c.open(&iv, aad, &mut bad), Err(CryptoError::IntegrityCheckFailed), "{encr} byte {i}");
        }
        // Wrong IV, wrong AAD, another salt or integrity key.
        let mut other_iv = iv.clone();
        other_iv[iv_len - 1] ^= 1;
        let mut bad = sealed.clone();
        assert_eq!(c.open(&other_iv, aad, &mut bad), Err(CryptoError::IntegrityCheckFailed));
        let mut bad = sealed.clone();
        assert_eq!(c.open(&iv, b"other", &mut bad), Err(CryptoError::IntegrityCheckFailed));
        let (mut e2, mut a2) = (sk_e.clone(), sk_a.clone());
        if let Some(last) = if integ.is_some() { a2.last_mut() } else { e2.last_mut() } {
            *last ^= 0x80;
        }
        let c2 = SkCipher::new(encr, integ, &e2, &a2).expect("length");
        let mut bad = sealed.clone();
        assert_eq!(c2.open(&iv, aad, &mut bad), Err(CryptoError::IntegrityCheckFailed));

        // A wrong IV length, or less than an ICV.
        assert_eq!(c.open(&iv[1..], aad, &mut sealed.clone()), Err(CryptoError::Malformed));
        assert_eq!(c.open(&iv, aad, &mut vec![0u8; icv_len - 1]), Err(CryptoError::Malformed));
        assert_eq!(c.open(&iv, aad, &mut []), Err(CryptoError::Malformed));
        let mut short_iv = plain.clone();
        c.seal(&iv[1..], aad, &mut short_iv);
        assert!(short_iv.is_empty(), "a wrong IV length seals nothing");

        if let Some(integ) = integ {
            // CBC: the ICV is HMAC(SK_a, AAD | IV | ciphertext), truncated (RFC 7296 3.14).
            let full = rc_hmac(integ.prf(), &sk_a, &[aad, &iv, &sealed[..plain.len()]]);
            assert_eq!(&sealed[plain.len()..], &full[..icv_len]);
            // Only whole blocks decrypt; the length is refused before any MAC.
            assert_eq!(c.open(&iv, aad, &mut vec![0u8; 15 + icv_len]), Err(CryptoError::Malformed));
            assert_eq!(c.open(&iv, aad, &mut vec![0u8; icv_len]), Err(CryptoError::Malformed));
            assert_eq!(c.open(&iv, aad, &mut vec![0u8; 16 + icv_len]), Err(CryptoError::IntegrityCheckFailed));
            // Misaligned or empty plaintext is not sealed (and not left in the buffer).
            for n in [0, 1, 15, 17] {
                let mut buf = vec![7u8; n];
                c.seal(&iv, aad, &mut buf);
                assert!(buf.is_empty(), "{n} bytes");
            }
            // A random IV changes the whole ciphertext.
            let mut again = plain.clone();
            c.seal(&other_iv, aad, &mut again);
            assert_ne!(&again[..16], &sealed[..16]);
        } else {
            // AEAD: empty plaintext is just the ICV.
            let mut empty = Vec::new();
            c.seal(&iv, aad, &mut empty);
            assert_eq!(empty.len(), icv_len);
            assert_eq!(c.open(&iv, aad, &mut empty), Ok(0));
        }
    }
}

#[test]
fn sk_cipher_rejects_wrong_key_lengths() {
    assert!(SkCipher::new(EncrAlg::AesGcm16_128, None, &[0; 16], &[]).is_none());
    assert!(SkCipher::new(EncrAlg::AesGcm16_128, None, &[0; 36], &[]).is_none());
    assert!(SkCipher::new(EncrAlg::AesGcm16_256, None, &[0; 20], &[]).is_none());
    assert!(SkCipher::new(EncrAlg::AesGcm16_256, None, &[], &[]).is_none());
    assert!(SkCipher::new(EncrAlg::AesGcm16_128, None, &[0; 20], &[]).is_some());
    assert!(SkCipher::new(EncrAlg::AesGcm16_256, None, &[0; 36], &[]).is_some());
    assert!(SkCipher::new(EncrAlg::ChaCha20Poly1305, None, &[0; 36], &[]).is_some());
    assert!(SkCipher::new(EncrAlg::ChaCha20Poly1305, None, &[0; 32], &[]).is_none());
    // AEADs take no integrity key; AES-CBC needs one of the HMAC's length.
    assert!(SkCipher::new(EncrAlg::AesGcm16_128, None, &[0; 20], &[0; 20]).is_none());
    assert!(SkCipher::new(EncrAlg::AesGcm16_128, Some(IntegAlg::HmacSha1_96), &[0; 20], &[0; 20]).is_none());
    assert!(SkCipher::new(EncrAlg::AesCbc128, None, &[0; 16], &[]).is_none());
    assert!(SkCipher::new(EncrAlg::AesCbc128, Some(IntegAlg::HmacSha1_96), &[0; 16], &[0; 20]).is_some());
    assert!(SkCipher::new(EncrAlg::AesCbc128, Some(IntegAlg::HmacSha1_96), &[0; 16], &[0; 32]).is_none());
    assert!(SkCipher::new(EncrAlg::AesCbc128, Some(IntegAlg::HmacSha1_96), &[0; 20], &[0; 20]).is_none());
    assert!(SkCipher::new(EncrAlg::AesCbc192, Some(IntegAlg::HmacSha384_192), &[0; 24], &[0; 48]).is_some());
    assert!(SkCipher::new(EncrAlg::AesCbc256, Some(IntegAlg::HmacSha512_256), &[0; 32], &[0; 64]).is_some());
}

#[test]
fn debug_output_holds_no_secrets() {
    let keys = derive_ike_keys(PrfAlg::HmacSha256, EncrAlg::AesGcm16_128, None, &[1; 32], &[2; 32], &[3; 32], 4, 5);
    assert_eq!(format!("{keys:?}"), "IkeKeys { sk_d_len: 32, sk_a_len: 0, sk_e_len: 20, sk_p_len: 32, .. }");

    let mut rng = TestRng(9);
    let kx = KeyExchange::generate(DhGroup::Curve25519, &mut rng);
    assert_eq!(format!("{kx:?}"), "KeyExchange { group: Curve25519, .. }");
    let kx = KeyExchange::generate(DhGroup::Ecp256, &mut rng);
    assert_eq!(format!("{kx:?}"), "KeyExchange { group: Ecp256, .. }");
    let kx = KeyExchange::generate(DhGroup::Ecp521, &mut rng);
    assert_eq!(format!("{kx:?}"), "KeyExchange { group: Ecp521, .. }");
    let kx = KeyExchange::generate(DhGroup::Modp2048, &mut rng);
    assert_eq!(format!("{kx:?}"), "KeyExchange { group: Modp2048, .. }");

    let c = SkCipher::new(EncrAlg::AesGcm16_128, None, &[0xab; 20], &[]).expect("length");
    assert_eq!(format!("{c:?}"), "SkCipher { encr: AesGcm16_128, integ: None, .. }");
    let c = SkCipher::new(EncrAlg::AesCbc128, Some(IntegAlg::HmacSha1_96), &[0xab; 16], &[0xcd; 20]).expect("length");
    assert_eq!(format!("{c:?}"), "SkCipher { encr: AesCbc128, integ: Some(HmacSha1_96), .. }");
}

proptest::proptest! {
    #[test]
    fn sk_cipher_round_trips_any_input(
        key in proptest::collection::vec(proptest::num::u8::ANY, 36),
        iv in proptest::array::uniform8(proptest::num::u8::ANY),
        aad in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        plain in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
    ) {
        let c = SkCipher::new(EncrAlg::AesGcm16_256, None, &key, &[]).expect("length");
        let mut buf = plain.clone();
        c.seal(&iv, &aad, &mut buf);
        proptest::prop_assert_eq!(buf.len(), plain.len() + GCM_ICV_LEN);
        proptest::prop_assert_eq!(c.open(&iv, &aad, &mut buf), Ok(plain.len()));
        proptest::prop_assert_eq!(&buf[..plain.len()], &plain[..]);
    }

    #[test]
    fn sk_cipher_cbc_round_trips_any_input(
        suite in 3usize..15,
        iv in proptest::array::uniform16(proptest::num::u8::ANY),
        aad in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        blocks in proptest::collection::vec(proptest::array::uniform16(proptest::num::u8::ANY), 1..40),
    ) {
        let (encr, integ) = SUITES[suite];
        let (sk_e, sk_a) = suite_keys(encr, integ);
        let c = SkCipher::new(encr, integ, &sk_e, &sk_a).expect("length");
        let plain = blocks.concat();
        let mut buf = plain.clone();
        c.seal(&iv, &aad, &mut buf);
        proptest::prop_assert_eq!(buf.len(), plain.len() + c.icv_len());
        proptest::prop_assert_eq!(c.open(&iv, &aad, &mut buf), Ok(plain.len()));
        proptest::prop_assert_eq!(&buf[..plain.len()], &plain[..]);
    }

    /// Network input: arbitrary bytes under an AES-CBC key never panic, never verify.
    #[test]
    fn sk_cipher_cbc_open_rejects_arbitrary_bytes(
        suite in 3usize..15,
        iv in proptest::collection::vec(proptest::num::u8::ANY, 0..20),
        mut data in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
    ) {
        let (encr, integ) = SUITES[suite];
        let (sk_e, sk_a) = suite_keys(encr, integ);
        let c = SkCipher::new(encr, integ, &sk_e, &sk_a).expect("length");
        let ct = data.len().saturating_sub(c.icv_len());
        let malformed = iv.len() != 16 || data.len() < c.icv_len() || ct == 0 || ct % 16 != 0;
        let expected = if malformed { CryptoError::Malformed } else { CryptoError::IntegrityCheckFailed };
        proptest::prop_assert_eq!(c.open(&iv, b"aad", &mut data), Err(expected));
    }

    /// Network input: opening arbitrary bytes never panics and never authenticates.
    #[test]
    fn sk_cipher_open_rejects_arbitrary_bytes(
        iv in proptest::array::uniform8(proptest::num::u8::ANY),
        mut data in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
    ) {
        let c = SkCipher::new(EncrAlg::AesGcm16_128, None, &[0x5a; 20], &[]).expect("length");
        let expected = if data.len() < GCM_ICV_LEN { CryptoError::Malformed } else { CryptoError::IntegrityCheckFailed };
        proptest::prop_assert_eq!(c.open(&iv, b"aad", &mut data), Err(expected));
    }

    /// Network input: arbitrary KE data never panics; what is accepted gives a 32-byte secret.
    #[test]
    fn agree_handles_arbitrary_peer_values(
        x in proptest::collection::vec(proptest::num::u8::ANY, 0..140),
        seed in proptest::num::u64::ANY,
    ) {
        for group in GROUPS {
            let kx = KeyExchange::generate(group, &mut TestRng(seed));
            match kx.agree(&x) {
                Ok(s) => proptest::prop_assert_eq!(s.len(), group.shared_len()),
                Err(e) => proptest::prop_assert_eq!(e, CryptoError::InvalidPublicKey),
            }
            if x.len() != group.public_len() {
                proptest::prop_assert!(kx.agree(&x).is_err());
            }
        }
    }

    /// Network input: arbitrary MODP-768 values (right length, or one byte off) never panic;
    /// `agree` accepts exactly what `plausible_public` accepts.
    #[test]
    fn modp_agree_matches_plausible_public(
        x in proptest::collection::vec(proptest::num::u8::ANY, 95..=97),
        top in proptest::num::u8::ANY,
    ) {
        let mut x = x;
        if let Some(first) = x.first_mut() {
            // Values >= p start with 0xff bytes: make them likely.
            if top < 128 { *first = 0xff; }
        }
        let kx = KeyExchange::generate(DhGroup::Modp768, &mut TestRng(u64::from(top)));
        let plausible = KeyExchange::plausible_public(DhGroup::Modp768, &x);
        match kx.agree(&x) {
            Ok(s) => { proptest::prop_assert!(plausible); proptest::prop_assert_eq!(s.len(), 96); }
            Err(e) => { proptest::prop_assert!(!plausible); proptest::prop_assert_eq!(e, CryptoError::InvalidPublicKey); }
        }
    }
}
