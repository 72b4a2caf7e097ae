//! Ephemeral key exchange: X25519 (group 31, RFC 8031) and ECP-256 (group 19, RFC 5903).
//!
//! Owns private key generation from the caller's [`Rng`], the KE payload encoding of our
//! public value, peer public value validation and the shared secret g^ir. Private keys
//! zeroize on drop (x25519-dalek `StaticSecret`, elliptic-curve `SecretKey`).
//!
//! ECP-256 uses the RustCrypto `p256` crate rather than `ring::agreement`: ring's ECDH
//! draws its private key from its own `SecureRandom` and cannot be built from given key
//! bytes, so it could not take the injected [`Rng`] that makes the sans-I/O endpoint and
//! the RFC 5903 known-answer tests deterministic.

use super::CryptoError;
use crate::Rng;
use ipsec_types::DhGroup;
use p256::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use std::fmt;
use zeroize::Zeroizing;

/// X25519 public value / private key length.
const X25519_LEN: usize = 32;
/// ECP-256 field element length; the KE data is x || y (RFC 5903 section 7).
const P256_COORD_LEN: usize = 32;
/// Private key candidates drawn from the Rng before falling back to hashing (see `p256_secret`).
const P256_RNG_ATTEMPTS: u32 = 64;

enum Inner {
    X25519 { secret: x25519_dalek::StaticSecret, public: [u8; X25519_LEN] },
    Ecp256 { secret: p256::SecretKey, public: [u8; 2 * P256_COORD_LEN] },
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

/// An ECP-256 private key from the rng: 32 bytes taken as a big-endian scalar, drawn again
/// if not in [1, n-1] (probability about 2^-32 per draw).
fn p256_secret(rng: &mut dyn Rng) -> p256::SecretKey {
    let mut bytes = Zeroizing::new([0u8; P256_COORD_LEN]);
    for _ in 0..P256_RNG_ATTEMPTS {
        rng.fill(&mut bytes[..]);
        if let Ok(sk) = p256::SecretKey::from_slice(&bytes[..]) {
            return sk;
        }
    }
    // Only a broken Rng (e.g. a test Rng that yields only zeros) gets here: 64 invalid draws
    // from a working one has probability below 2^-2000. Terminate anyway, deterministically,
    // by hashing the last draw with a counter rather than looping forever.
    let mut counter: u32 = 0;
    loop {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&bytes[..]);
        ctx.update(&counter.to_be_bytes());
        let digest = ctx.finish();
        if let Ok(sk) = p256::SecretKey::from_slice(digest.as_ref()) {
            return sk;
        }
        counter = counter.wrapping_add(1);
    }
}

impl KeyExchange {
    /// Generates a key pair for `group` from `rng`.
    ///
    /// X25519 takes 32 bytes from `rng` as the private key (clamped at use, RFC 7748);
    /// ECP-256 takes 32 bytes as the big-endian private scalar, drawing again if they are
    /// not a valid scalar.
    pub fn generate(group: DhGroup, rng: &mut dyn Rng) -> Self {
        let inner = match group {
            DhGroup::Curve25519 => {
                let mut bytes = Zeroizing::new([0u8; X25519_LEN]);
                rng.fill(&mut bytes[..]);
                let secret = x25519_dalek::StaticSecret::from(*bytes);
                let public = x25519_dalek::PublicKey::from(&secret).to_bytes();
                Inner::X25519 { secret, public }
            }
            DhGroup::Ecp256 => {
                let secret = p256_secret(rng);
                let point = secret.public_key().to_encoded_point(false);
                let mut public = [0u8; 2 * P256_COORD_LEN];
                // Uncompressed SEC1 is 0x04 || x || y; the KE payload carries x || y.
                if let (Some(x), Some(y)) = (point.x(), point.y()) {
                    public[..P256_COORD_LEN].copy_from_slice(x);
                    public[P256_COORD_LEN..].copy_from_slice(y);
                }
                Inner::Ecp256 { secret, public }
            }
        };
        Self { inner }
    }

    /// The group.
    pub fn group(&self) -> DhGroup {
        match self.inner {
            Inner::X25519 { .. } => DhGroup::Curve25519,
            Inner::Ecp256 { .. } => DhGroup::Ecp256,
        }
    }

    /// Our public value as carried in the KE payload (32 bytes for X25519, x||y 64 bytes for ECP-256).
    pub fn public_value(&self) -> Vec<u8> {
        match &self.inner {
            Inner::X25519 { public, .. } => public.to_vec(),
            Inner::Ecp256 { public, .. } => public.to_vec(),
        }
    }

    /// Whether `peer_public` can be a public value of `group`: the right length and, for
    /// ECP-256, a point on the curve. Cheap next to a key exchange: a responder checks it
    /// before it spends a key generation on an unauthenticated request.
    pub fn plausible_public(group: DhGroup, peer_public: &[u8]) -> bool {
        if peer_public.len() != group.public_len() {
            return false;
        }
        match group {
            DhGroup::Curve25519 => true,
            DhGroup::Ecp256 => {
                let (x, y) = peer_public.split_at(P256_COORD_LEN);
                let (Ok(x), Ok(y)) = (<[u8; P256_COORD_LEN]>::try_from(x), <[u8; P256_COORD_LEN]>::try_from(y)) else {
                    return false;
                };
                let encoded = p256::EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
                bool::from(p256::PublicKey::from_encoded_point(&encoded).is_some())
            }
        }
    }

    /// The shared secret g^ir with the peer's public value (for ECP-256 the x coordinate, RFC 5903).
    ///
    /// Rejects a public value of the wrong length, an ECP-256 point that is not on the
    /// curve (or is the identity), and an all-zero X25519 result (RFC 8031 section 2.3).
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
            Inner::Ecp256 { secret, .. } => {
                if peer_public.len() != 2 * P256_COORD_LEN {
                    return Err(CryptoError::InvalidPublicKey);
                }
                let (x, y) = peer_public.split_at(P256_COORD_LEN);
                let x: [u8; P256_COORD_LEN] = x.try_into().map_err(|_| CryptoError::InvalidPublicKey)?;
                let y: [u8; P256_COORD_LEN] = y.try_into().map_err(|_| CryptoError::InvalidPublicKey)?;
                let encoded = p256::EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
                // from_encoded_point checks that the point is on the curve and not the identity.
                let peer = Option::<p256::PublicKey>::from(p256::PublicKey::from_encoded_point(&encoded))
                    .ok_or(CryptoError::InvalidPublicKey)?;
                let scalar = Zeroizing::new(secret.to_nonzero_scalar());
                let shared = p256::ecdh::diffie_hellman(*scalar, peer.as_affine());
                Ok(Zeroizing::new(shared.raw_secret_bytes().to_vec()))
            }
        }
    }
}
