//! Ephemeral key exchange: X25519 (group 31, RFC 8031), ECP-256/384/521 (groups 19, 20,
//! 21, RFC 5903) and the MODP groups 1, 2, 5, 14, 15, 16 (RFC 2409, RFC 3526; in `modp.rs`).
//!
//! Owns private key generation from the caller's [`Rng`], the KE payload encoding of our
//! public value, peer public value validation and the shared secret g^ir. Private keys
//! zeroize on drop (x25519-dalek `StaticSecret`, elliptic-curve `SecretKey`, a
//! `Zeroizing` crypto-bigint exponent).
//!
//! The ECP groups use the RustCrypto `p256`, `p384` and `p521` crates rather than
//! `ring::agreement`: ring's ECDH draws its private key from its own `SecureRandom` and
//! cannot be built from given key bytes, so it could not take the injected [`Rng`] that
//! makes the sans-I/O endpoint and the RFC 5903 known-answer tests deterministic (and ring
//! has no P-521 agreement).

use super::modp::{self, ModpKey};
use super::CryptoError;
use crate::Rng;
use ipsec_types::DhGroup;
use p256::elliptic_curve::sec1::{EncodedPoint, FromEncodedPoint, ModulusSize, ToEncodedPoint};
use p256::elliptic_curve::{AffinePoint, CurveArithmetic, FieldBytesSize, PublicKey, SecretKey};
use std::fmt;
use zeroize::Zeroizing;

/// X25519 public value / private key length.
const X25519_LEN: usize = 32;
/// Private key candidates drawn from the Rng before falling back to hashing (see `ecp_secret`).
const ECP_RNG_ATTEMPTS: u32 = 64;

enum Inner {
    X25519 { secret: x25519_dalek::StaticSecret, public: [u8; X25519_LEN] },
    Ecp256(Ecp<p256::NistP256>),
    Ecp384(Ecp<p384::NistP384>),
    Ecp521(Ecp<p521::NistP521>),
    Modp(Box<ModpKey>),
}

/// One side of a key exchange. The private key is zeroized on drop.
pub struct KeyExchange {
    inner: Inner,
}

impl fmt::Debug for KeyExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyExchange").field("group", &self.group()).finish_non_exhaustive()
    }
}

/// A NIST curve as RFC 5903 carries it: KE data x || y, shared secret x.
trait EcpCurve: CurveArithmetic
where
    AffinePoint<Self>: FromEncodedPoint<Self> + ToEncodedPoint<Self>,
    FieldBytesSize<Self>: ModulusSize,
{
    /// Field element (coordinate, scalar) length in bytes.
    const COORD_LEN: usize;
    /// Mask for the first byte of a drawn scalar: P-521's order has 521 bits, so the top
    /// 7 bits of its 66-byte scalar are cleared (otherwise 127 of 128 draws would be >= n).
    const TOP_BYTE_MASK: u8;
}

impl EcpCurve for p256::NistP256 {
    const COORD_LEN: usize = 32;
    const TOP_BYTE_MASK: u8 = 0xff;
}
impl EcpCurve for p384::NistP384 {
    const COORD_LEN: usize = 48;
    const TOP_BYTE_MASK: u8 = 0xff;
}
impl EcpCurve for p521::NistP521 {
    const COORD_LEN: usize = 66;
    const TOP_BYTE_MASK: u8 = 0x01;
}

/// Our side of an ECP exchange.
struct Ecp<C: EcpCurve>
where
    AffinePoint<C>: FromEncodedPoint<C> + ToEncodedPoint<C>,
    FieldBytesSize<C>: ModulusSize,
{
    secret: SecretKey<C>,
    public: Vec<u8>,
}

impl<C: EcpCurve> Ecp<C>
where
    AffinePoint<C>: FromEncodedPoint<C> + ToEncodedPoint<C>,
    FieldBytesSize<C>: ModulusSize,
{
    fn generate(rng: &mut dyn Rng) -> Self {
        let secret = ecp_secret::<C>(rng);
        let point = secret.public_key().to_encoded_point(false);
        let mut public = vec![0u8; 2 * C::COORD_LEN];
        // Uncompressed SEC1 is 0x04 || x || y; the KE payload carries x || y.
        if let (Some(x), Some(y)) = (point.x(), point.y()) {
            public[..C::COORD_LEN].copy_from_slice(x);
            public[C::COORD_LEN..].copy_from_slice(y);
        }
        Self { secret, public }
    }

    /// The peer's point if `peer` is x || y of exactly the right length, on the curve and
    /// not the identity (which x || y cannot encode anyway).
    fn peer_point(peer: &[u8]) -> Option<PublicKey<C>> {
        if peer.len() != 2 * C::COORD_LEN {
            return None;
        }
        // Uncompressed SEC1: 0x04 || x || y.
        let mut sec1 = Vec::with_capacity(1 + peer.len());
        sec1.push(0x04);
        sec1.extend_from_slice(peer);
        let encoded = EncodedPoint::<C>::from_bytes(&sec1).ok()?;
        // from_encoded_point checks that the coordinates are below p and the point is on the curve.
        Option::from(PublicKey::<C>::from_encoded_point(&encoded))
    }

    fn agree(&self, peer: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let peer = Self::peer_point(peer).ok_or(CryptoError::InvalidPublicKey)?;
        let scalar = Zeroizing::new(self.secret.to_nonzero_scalar());
        let shared = p256::elliptic_curve::ecdh::diffie_hellman(*scalar, peer.as_affine());
        Ok(Zeroizing::new(shared.raw_secret_bytes().to_vec()))
    }
}

/// An ECP private key from the rng: `COORD_LEN` bytes taken as a big-endian scalar (the
/// first masked for P-521), drawn again if not in [1, n-1] (probability about 2^-32 per
/// draw for P-256, less for the others).
fn ecp_secret<C: EcpCurve>(rng: &mut dyn Rng) -> SecretKey<C>
where
    AffinePoint<C>: FromEncodedPoint<C> + ToEncodedPoint<C>,
    FieldBytesSize<C>: ModulusSize,
{
    let mut bytes = Zeroizing::new(vec![0u8; C::COORD_LEN]);
    for _ in 0..ECP_RNG_ATTEMPTS {
        rng.fill(&mut bytes[..]);
        bytes[0] &= C::TOP_BYTE_MASK;
        if let Ok(sk) = SecretKey::<C>::from_slice(&bytes[..]) {
            return sk;
        }
    }
    // Only a broken Rng (e.g. a test Rng that yields only zeros) gets here: 64 invalid draws
    // from a working one has probability below 2^-2000. Terminate anyway, deterministically,
    // by hashing the last draw with a counter rather than looping forever.
    let mut counter: u32 = 0;
    loop {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA512);
        ctx.update(&bytes[..]);
        ctx.update(&counter.to_be_bytes());
        let digest = ctx.finish();
        let mut candidate = Zeroizing::new(vec![0u8; C::COORD_LEN]);
        for (i, b) in candidate.iter_mut().enumerate() {
            *b = digest.as_ref()[i % digest.as_ref().len()];
        }
        candidate[0] &= C::TOP_BYTE_MASK;
        if let Ok(sk) = SecretKey::<C>::from_slice(&candidate[..]) {
            return sk;
        }
        counter = counter.wrapping_add(1);
    }
}

impl KeyExchange {
    /// Generates a key pair for `group` from `rng`.
    ///
    /// X25519 takes 32 bytes from `rng` as the private key (clamped at use, RFC 7748);
    /// ECP takes a field element's length as the big-endian private scalar, drawing again
    /// if it is not a valid scalar; MODP takes the private exponent's length (see `modp.rs`).
    pub fn generate(group: DhGroup, rng: &mut dyn Rng) -> Self {
        let inner = match group {
            DhGroup::Curve25519 => {
                let mut bytes = Zeroizing::new([0u8; X25519_LEN]);
                rng.fill(&mut bytes[..]);
                let secret = x25519_dalek::StaticSecret::from(*bytes);
                let public = x25519_dalek::PublicKey::from(&secret).to_bytes();
                Inner::X25519 { secret, public }
            }
            DhGroup::Ecp256 => Inner::Ecp256(Ecp::generate(rng)),
            DhGroup::Ecp384 => Inner::Ecp384(Ecp::generate(rng)),
            DhGroup::Ecp521 => Inner::Ecp521(Ecp::generate(rng)),
            DhGroup::Modp768
            | DhGroup::Modp1024
            | DhGroup::Modp1536
            | DhGroup::Modp2048
            | DhGroup::Modp3072
            | DhGroup::Modp4096 => match ModpKey::generate(group, rng) {
                Some(k) => Inner::Modp(Box::new(k)),
                None => unreachable!("every MODP group has a key type"),
            },
        };
        Self { inner }
    }

    /// The group.
    pub fn group(&self) -> DhGroup {
        match &self.inner {
            Inner::X25519 { .. } => DhGroup::Curve25519,
            Inner::Ecp256(_) => DhGroup::Ecp256,
            Inner::Ecp384(_) => DhGroup::Ecp384,
            Inner::Ecp521(_) => DhGroup::Ecp521,
            Inner::Modp(k) => k.group(),
        }
    }

    /// Our public value as carried in the KE payload ([`DhGroup::public_len`] bytes: 32 for
    /// X25519, x || y for ECP, the prime's length for MODP).
    pub fn public_value(&self) -> Vec<u8> {
        match &self.inner {
            Inner::X25519 { public, .. } => public.to_vec(),
            Inner::Ecp256(k) => k.public.clone(),
            Inner::Ecp384(k) => k.public.clone(),
            Inner::Ecp521(k) => k.public.clone(),
            Inner::Modp(k) => k.public_value().to_vec(),
        }
    }

    /// Whether `peer_public` can be a public value of `group`: the right length and, for
    /// ECP, a point on the curve; for MODP, 1 < y < p - 1. Cheap next to a key exchange: a
    /// responder checks it before it spends a key generation on an unauthenticated request.
    pub fn plausible_public(group: DhGroup, peer_public: &[u8]) -> bool {
        if peer_public.len() != group.public_len() {
            return false;
        }
        match group {
            DhGroup::Curve25519 => true,
            DhGroup::Ecp256 => Ecp::<p256::NistP256>::peer_point(peer_public).is_some(),
            DhGroup::Ecp384 => Ecp::<p384::NistP384>::peer_point(peer_public).is_some(),
            DhGroup::Ecp521 => Ecp::<p521::NistP521>::peer_point(peer_public).is_some(),
            DhGroup::Modp768
            | DhGroup::Modp1024
            | DhGroup::Modp1536
            | DhGroup::Modp2048
            | DhGroup::Modp3072
            | DhGroup::Modp4096 => modp::plausible_public(group, peer_public).unwrap_or(false),
        }
    }

    /// The shared secret g^ir with the peer's public value ([`DhGroup::shared_len`] bytes:
    /// for ECP the x coordinate, RFC 5903; for MODP zero-padded to the prime's length).
    ///
    /// Rejects a public value of the wrong length, an ECP point that is not on the curve
    /// (or is the identity), a MODP value outside 1 < y < p - 1, and an all-zero X25519
    /// result (RFC 8031 section 2.3).
    pub fn agree(&self, peer_public: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        match &self.inner {
            Inner::X25519 { secret, .. } => {
                let peer: [u8; X25519_LEN] = peer_public.try_into().map_err(|_| CryptoError::InvalidPublicKey)?;
                let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(peer));
                // was_contributory() is false exactly when the output is all zeros
                // (a small-order peer point); the comparison is constant time.
                if !shared.was_contributory() {
                    return Err(CryptoError::InvalidPublicKey);
                }
                Ok(Zeroizing::new(shared.as_bytes().to_vec()))
            }
            Inner::Ecp256(k) => k.agree(peer_public),
            Inner::Ecp384(k) => k.agree(peer_public),
            Inner::Ecp521(k) => k.agree(peer_public),
            Inner::Modp(k) => k.agree(peer_public),
        }
    }
}
