//! Finite-field Diffie-Hellman over the MODP groups 1, 2 (RFC 2409), 5, 14, 15 and 16
//! (RFC 3526), generator 2.
//!
//! Big integers come from RustCrypto's `crypto-bigint`: fixed-size `Uint`s (one size per
//! group, the prime's exact width) and Montgomery arithmetic whose modular exponentiation
//! is constant time in the exponent (a fixed 4-bit window over a fixed number of exponent
//! bits, every table entry read with a constant-time select, a multiplication for every
//! window). It is maintained (RustCrypto), `no_std`, `#![deny(unsafe_code)]` (two
//! limb/word casts aside, not used here), and already in the tree under `elliptic-curve`.
//! ring has no finite-field DH; `num-bigint` and friends are variable time and would leak
//! the private exponent. `DynResidue` (the runtime-modulus form) is used rather than the
//! compile-time `Residue` because it zeroizes; its Montgomery parameters are computed once
//! per group on first use.
//!
//! Private exponents are short, as RFC 3526 section 8 and NIST SP 800-56A (5.6.1.1.4)
//! allow for safe primes: at least twice the group's strength, rounded up. The exponent's
//! length is public and fixed per group, so the exponentiation's timing reveals nothing.
//!
//! Peer values are checked as RFC 6989 section 2.2 asks of MODP groups with safe primes:
//! exactly the prime's length, and 1 < y < p - 1 (rejecting 0, 1, p - 1 and y >= p).

use super::CryptoError;
use crate::Rng;
use crypto_bigint::modular::runtime_mod::{DynResidue, DynResidueParams};
use crypto_bigint::{Limb, Uint, Word, U1024, U1536, U2048, U3072, U4096, U768};
use ipsec_types::DhGroup;
use std::sync::OnceLock;
use zeroize::{Zeroize, Zeroizing};

/// Draws of the private exponent before forcing its top bit (only a broken Rng gets there).
const EXPONENT_ATTEMPTS: u32 = 64;

/// Group 1: the prime of RFC 2409.
const MODP768_P: U768 = U768::from_be_hex(concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A63A3620FFFFFFFFFFFFFFFF",
));

/// Group 2: the prime of RFC 2409.
const MODP1024_P: U1024 = U1024::from_be_hex(concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF",
));

/// Group 5: the prime of RFC 3526.
const MODP1536_P: U1536 = U1536::from_be_hex(concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA237327FFFFFFFFFFFFFFFF",
));

/// Group 14: the prime of RFC 3526.
const MODP2048_P: U2048 = U2048::from_be_hex(concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
));

/// Group 15: the prime of RFC 3526.
const MODP3072_P: U3072 = U3072::from_be_hex(concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33",
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7",
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864",
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2",
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF",
));

/// Group 16: the prime of RFC 3526.
const MODP4096_P: U4096 = U4096::from_be_hex(concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33",
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7",
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864",
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2",
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7",
    "88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8",
    "DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2",
    "233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9",
    "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C934063199FFFFFFFFFFFFFFFF",
));

/// One MODP group: its prime, the private exponent's length, Montgomery parameters.
struct Group<const L: usize> {
    id: DhGroup,
    prime: Uint<L>,
    exponent_bits: usize,
    params: OnceLock<DynResidueParams<L>>,
}

impl<const L: usize> Group<L> {
    const fn new(id: DhGroup, prime: Uint<L>, exponent_bits: usize) -> Self {
        Self { id, prime, exponent_bits, params: OnceLock::new() }
    }

    fn params(&self) -> DynResidueParams<L> {
        // The prime is odd (checked by a test), so `new` cannot panic.
        *self.params.get_or_init(|| DynResidueParams::new(&self.prime))
    }

    /// Length of the prime, the public value and the shared secret, in bytes.
    const fn len(&self) -> usize {
        L * Limb::BYTES
    }

    /// The peer's public value as an integer if it is exactly the prime's length and
    /// 1 < y < p - 1. The value is public: comparing it in variable time is fine.
    fn peer_value(&self, peer: &[u8]) -> Option<Uint<L>> {
        if peer.len() != self.len() {
            return None;
        }
        let y = Uint::<L>::from_be_slice(peer);
        let p_minus_1 = self.prime.wrapping_sub(&Uint::ONE);
        (y > Uint::ONE && y < p_minus_1).then_some(y)
    }
}

/// Big-endian bytes of `x`, exactly `L * Limb::BYTES` long (zero-padded on the left).
fn to_be_bytes<const L: usize>(x: &Uint<L>) -> Vec<u8> {
    let mut out = Vec::with_capacity(L * Limb::BYTES);
    for limb in x.as_limbs().iter().rev() {
        out.extend_from_slice(&Word::to_be_bytes(limb.0));
    }
    out
}

static MODP768: Group<{ U768::LIMBS }> = Group::new(DhGroup::Modp768, MODP768_P, 256);
static MODP1024: Group<{ U1024::LIMBS }> = Group::new(DhGroup::Modp1024, MODP1024_P, 256);
static MODP1536: Group<{ U1536::LIMBS }> = Group::new(DhGroup::Modp1536, MODP1536_P, 256);
// RFC 3526 section 8 puts the exponent for 2048, 3072 and 4096 bits at 220-320, 260-420 and
// 300-480 bits; these take the top of each range (rounded up to a 64-bit word), which is
// also at least twice each group's SP 800-56A strength (112, 128, 152).
static MODP2048: Group<{ U2048::LIMBS }> = Group::new(DhGroup::Modp2048, MODP2048_P, 320);
static MODP3072: Group<{ U3072::LIMBS }> = Group::new(DhGroup::Modp3072, MODP3072_P, 448);
static MODP4096: Group<{ U4096::LIMBS }> = Group::new(DhGroup::Modp4096, MODP4096_P, 512);

/// Our side of one MODP exchange: the private exponent (zeroized on drop) and g^x.
pub(super) struct Key<const L: usize> {
    group: &'static Group<L>,
    secret: Zeroizing<Uint<L>>,
    public: Vec<u8>,
}

impl<const L: usize> Key<L> {
    fn generate(group: &'static Group<L>, rng: &mut dyn Rng) -> Self {
        let len = group.len();
        let exp_len = group.exponent_bits / 8;
        let mut bytes = Zeroizing::new(vec![0u8; len]);
        let mut secret = Zeroizing::new(Uint::<L>::ZERO);
        for _ in 0..EXPONENT_ATTEMPTS {
            rng.fill(&mut bytes[len - exp_len..]);
            *secret = Uint::from_be_slice(&bytes);
            // x in [2, 2^bits - 1]: 0 and 1 would give g^x = 1 or g.
            if *secret > Uint::ONE {
                break;
            }
        }
        if *secret <= Uint::ONE {
            // Only a broken Rng (one that yields zeros) gets here: 64 draws of 0 or 1 from a
            // working one has probability below 2^-16000. Terminate with a valid exponent.
            *secret = secret.bitor(&Uint::ONE.shl_vartime(group.exponent_bits - 1));
        }
        let g = DynResidue::new(&Uint::from_u8(2), group.params());
        let mut y = g.pow_bounded_exp(&*secret, group.exponent_bits);
        let public = to_be_bytes(&y.retrieve());
        y.zeroize();
        Self { group, secret, public }
    }

    fn agree(&self, peer: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let y = self.group.peer_value(peer).ok_or(CryptoError::InvalidPublicKey)?;
        let mut s = DynResidue::new(&y, self.group.params()).pow_bounded_exp(&*self.secret, self.group.exponent_bits);
        let mut shared = Zeroizing::new(s.retrieve());
        s.zeroize();
        // With 1 < y < p - 1 and a safe prime, y^x is never 1 for 0 < x < q; check anyway.
        if *shared <= Uint::ONE {
            shared.zeroize();
            return Err(CryptoError::InvalidPublicKey);
        }
        Ok(Zeroizing::new(to_be_bytes(&shared)))
    }
}

/// A MODP key pair of any supported group.
pub(super) enum ModpKey {
    G1(Key<{ U768::LIMBS }>),
    G2(Key<{ U1024::LIMBS }>),
    G5(Key<{ U1536::LIMBS }>),
    G14(Key<{ U2048::LIMBS }>),
    G15(Key<{ U3072::LIMBS }>),
    G16(Key<{ U4096::LIMBS }>),
}

macro_rules! each {
    ($self:expr, $k:ident => $e:expr) => {
        match $self {
            ModpKey::G1($k) => $e,
            ModpKey::G2($k) => $e,
            ModpKey::G5($k) => $e,
            ModpKey::G14($k) => $e,
            ModpKey::G15($k) => $e,
            ModpKey::G16($k) => $e,
        }
    };
}

impl ModpKey {
    /// A key pair for `group`, or `None` if it is not a MODP group.
    pub(super) fn generate(group: DhGroup, rng: &mut dyn Rng) -> Option<Self> {
        Some(match group {
            DhGroup::Modp768 => Self::G1(Key::generate(&MODP768, rng)),
            DhGroup::Modp1024 => Self::G2(Key::generate(&MODP1024, rng)),
            DhGroup::Modp1536 => Self::G5(Key::generate(&MODP1536, rng)),
            DhGroup::Modp2048 => Self::G14(Key::generate(&MODP2048, rng)),
            DhGroup::Modp3072 => Self::G15(Key::generate(&MODP3072, rng)),
            DhGroup::Modp4096 => Self::G16(Key::generate(&MODP4096, rng)),
            _ => return None,
        })
    }

    pub(super) fn group(&self) -> DhGroup {
        each!(self, k => k.group.id)
    }

    /// g^x, zero-padded to the prime's length.
    pub(super) fn public_value(&self) -> &[u8] {
        each!(self, k => &k.public)
    }

    /// g^xy, zero-padded to the prime's length (RFC 7296 section 2.14).
    pub(super) fn agree(&self, peer: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        each!(self, k => k.agree(peer))
    }
}

/// Whether `peer` is a valid public value of MODP group `group` (exact length, 1 < y < p - 1);
/// `None` if `group` is not a MODP group.
pub(super) fn plausible_public(group: DhGroup, peer: &[u8]) -> Option<bool> {
    Some(match group {
        DhGroup::Modp768 => MODP768.peer_value(peer).is_some(),
        DhGroup::Modp1024 => MODP1024.peer_value(peer).is_some(),
        DhGroup::Modp1536 => MODP1536.peer_value(peer).is_some(),
        DhGroup::Modp2048 => MODP2048.peer_value(peer).is_some(),
        DhGroup::Modp3072 => MODP3072.peer_value(peer).is_some(),
        DhGroup::Modp4096 => MODP4096.peer_value(peer).is_some(),
        _ => return None,
    })
}

/// The prime of a MODP group, big-endian (for tests).
#[cfg(test)]
pub(super) fn prime(group: DhGroup) -> Option<Vec<u8>> {
    Some(match group {
        DhGroup::Modp768 => to_be_bytes(&MODP768.prime),
        DhGroup::Modp1024 => to_be_bytes(&MODP1024.prime),
        DhGroup::Modp1536 => to_be_bytes(&MODP1536.prime),
        DhGroup::Modp2048 => to_be_bytes(&MODP2048.prime),
        DhGroup::Modp3072 => to_be_bytes(&MODP3072.prime),
        DhGroup::Modp4096 => to_be_bytes(&MODP4096.prime),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODP: [DhGroup; 6] = [
        DhGroup::Modp768,
        DhGroup::Modp1024,
        DhGroup::Modp1536,
        DhGroup::Modp2048,
        DhGroup::Modp3072,
        DhGroup::Modp4096,
    ];

    /// A counter-based Rng, different per seed.
    struct SeqRng(u8);
    impl Rng for SeqRng {
        fn fill(&mut self, buf: &mut [u8]) {
            for b in buf {
                self.0 = self.0.wrapping_mul(181).wrapping_add(101);
                *b = self.0;
            }
        }
    }

    /// Checks one group's constants: 64 leading and trailing one bits (the RFC 2409 / 3526
    /// form), p passes a Fermat test to base 2, q = (p-1)/2 passes one to base 3 (a typo in
    /// the hex would fail both), and 2 generates the subgroup of order q (2^q = 1 mod p, as
    /// p = 7 mod 8), so a valid public value never has small order.
    fn check_group<const L: usize>(g: &Group<L>, bits: usize) {
        assert_eq!(L * Limb::BITS, bits);
        let bytes = to_be_bytes(&g.prime);
        assert_eq!(bytes.len(), g.id.public_len());
        assert!(bytes[..8].iter().chain(&bytes[bytes.len() - 8..]).all(|b| *b == 0xff), "{}", g.id);
        assert_eq!(g.exponent_bits % 64, 0);
        let p_minus_1 = g.prime.wrapping_sub(&Uint::ONE);
        let two = DynResidue::new(&Uint::from_u8(2), g.params());
        assert_eq!(two.pow(&p_minus_1).retrieve(), Uint::ONE, "{} is not prime", g.id);
        let q = p_minus_1.shr_vartime(1);
        assert_eq!(two.pow(&q).retrieve(), Uint::ONE, "2 does not generate the order-q subgroup of {}", g.id);
        let q_params = DynResidueParams::new(&q);
        let three = DynResidue::new(&Uint::from_u8(3), q_params);
        assert_eq!(three.pow(&q.wrapping_sub(&Uint::ONE)).retrieve(), Uint::ONE, "(p-1)/2 of {} is not prime", g.id);
    }

    #[test]
    fn group_constants_are_safe_primes_of_the_rfc_form() {
        check_group(&MODP768, 768);
        check_group(&MODP1024, 1024);
        check_group(&MODP1536, 1536);
        check_group(&MODP2048, 2048);
        check_group(&MODP3072, 3072);
        check_group(&MODP4096, 4096);
    }

    #[test]
    fn round_trip_in_every_group() {
        for (i, group) in MODP.into_iter().enumerate() {
            let a = ModpKey::generate(group, &mut SeqRng(i as u8)).expect("MODP");
            let b = ModpKey::generate(group, &mut SeqRng(100 + i as u8)).expect("MODP");
            assert_eq!(a.group(), group);
            assert_eq!(a.public_value().len(), group.public_len());
            assert_ne!(a.public_value(), b.public_value());
            assert_eq!(plausible_public(group, a.public_value()), Some(true));
            let s1 = a.agree(b.public_value()).expect("valid");
            let s2 = b.agree(a.public_value()).expect("valid");
            assert_eq!(&s1[..], &s2[..]);
            assert_eq!(s1.len(), group.shared_len());
            assert_ne!(&s1[..], a.public_value());
        }
        assert!(ModpKey::generate(DhGroup::Ecp256, &mut SeqRng(0)).is_none());
        assert_eq!(plausible_public(DhGroup::Curve25519, &[9; 32]), None);
    }

    /// Big-endian `v` as `len` bytes (v < 2^64).
    fn small(v: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        out[len - 8..].copy_from_slice(&v.to_be_bytes());
        out
    }

    /// The prime plus `d` (a small signed offset), big-endian, the prime's length.
    fn p_plus(group: DhGroup, d: i64) -> Vec<u8> {
        let mut p = prime(group).expect("MODP");
        let mut carry = d;
        for b in p.iter_mut().rev() {
            let v = i64::from(*b) + carry;
            *b = v.rem_euclid(256) as u8;
            carry = v.div_euclid(256);
            if carry == 0 {
                break;
            }
        }
        p
    }

    #[test]
    fn rejects_out_of_range_and_wrong_length_values() {
        for (i, group) in MODP.into_iter().enumerate() {
            let k = ModpKey::generate(group, &mut SeqRng(i as u8)).expect("MODP");
            let len = group.public_len();
            let good = ModpKey::generate(group, &mut SeqRng(50 + i as u8)).expect("MODP").public_value().to_vec();
            let p = prime(group).expect("MODP");
            let mut bad = vec![
                small(0, len),
                small(1, len),
                p_plus(group, -1), // p - 1, of order 2
                p.clone(),
                p_plus(group, 1),
                vec![0xff; len],
                vec![],
                good[1..].to_vec(),
                [&[0u8][..], &good].concat(),
                [&good[..], &[0u8][..]].concat(),
            ];
            // 2 and p - 2 are in range, hence accepted.
            for ok in [small(2, len), p_plus(group, -2), good.clone()] {
                assert_eq!(plausible_public(group, &ok), Some(true), "{group}");
                assert!(k.agree(&ok).is_ok(), "{group}");
            }
            for v in bad.drain(..) {
                assert_eq!(plausible_public(group, &v), Some(false), "{group} {}", v.len());
                assert_eq!(k.agree(&v), Err(CryptoError::InvalidPublicKey), "{group}");
            }
        }
    }

    #[test]
    fn exponent_is_the_groups_length_and_a_zero_rng_still_terminates() {
        /// Counts the bytes asked for, all zero.
        struct Zeros(usize);
        impl Rng for Zeros {
            fn fill(&mut self, buf: &mut [u8]) {
                buf.fill(0);
                self.0 += buf.len();
            }
        }
        let mut rng = Zeros(0);
        let k = ModpKey::generate(DhGroup::Modp2048, &mut rng).expect("MODP");
        assert_eq!(rng.0, EXPONENT_ATTEMPTS as usize * 320 / 8);
        let other = ModpKey::generate(DhGroup::Modp2048, &mut SeqRng(7)).expect("MODP");
        let s1 = k.agree(other.public_value()).expect("valid");
        assert_eq!(&s1[..], &other.agree(k.public_value()).expect("valid")[..]);

        /// Yields the exponent 1 (invalid: g^1 = g), then 3.
        struct OneThenThree(u8);
        impl Rng for OneThenThree {
            fn fill(&mut self, buf: &mut [u8]) {
                buf.fill(0);
                self.0 += 2;
                if let Some(last) = buf.last_mut() {
                    *last = self.0 - 1;
                }
            }
        }
        let k = ModpKey::generate(DhGroup::Modp768, &mut OneThenThree(0)).expect("MODP");
        assert_eq!(k.public_value(), &small(8, 96)[..], "2^3");
    }
}
