//! IKEv2 cryptography: PRFs, prf+, key derivation (RFC 7296 sections 2.13, 2.14, 2.17),
//! PSK authentication data (2.15), key exchange (X25519 per RFC 8031, ECP-256 per
//! RFC 5903) and the AES-GCM SK payload cipher (RFC 5282).
//!
//! All secrets are held in `Zeroizing` buffers. Randomness comes from the caller.
//! (Skeleton: signatures the state machine codes against.)

use crate::Rng;
use ipsec_types::{DhGroup, EncrAlg, PrfAlg};
use zeroize::Zeroizing;

/// A crypto failure (bad peer public value, failed ICV, ...).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// The peer's key exchange data is invalid (wrong length, not on the curve, all-zero shared secret).
    #[error("invalid key exchange data")]
    InvalidPublicKey,
    /// AEAD tag did not verify.
    #[error("integrity check failed")]
    IntegrityCheckFailed,
    /// Input too short or otherwise unusable.
    #[error("malformed input")]
    Malformed,
}

/// prf(key, data).
pub fn prf(alg: PrfAlg, key: &[u8], data: &[u8]) -> Zeroizing<Vec<u8>> {
    let _ = (alg, key, data);
    todo!()
}

/// prf+(key, seed) truncated to `len` bytes (RFC 7296 section 2.13).
pub fn prf_plus(alg: PrfAlg, key: &[u8], seed: &[u8], len: usize) -> Zeroizing<Vec<u8>> {
    let _ = (alg, key, seed, len);
    todo!()
}

/// The IKE SA keys (AEAD: no SK_a*). Encryption keys include the 4-byte salt.
pub struct IkeKeys {
    /// SK_d, for CHILD_SA keys and IKE rekey.
    pub sk_d: Zeroizing<Vec<u8>>,
    /// SK_ei: key || salt.
    pub sk_ei: Zeroizing<Vec<u8>>,
    /// SK_er: key || salt.
    pub sk_er: Zeroizing<Vec<u8>>,
    /// SK_pi.
    pub sk_pi: Zeroizing<Vec<u8>>,
    /// SK_pr.
    pub sk_pr: Zeroizing<Vec<u8>>,
}

/// SKEYSEED = prf(Ni | Nr, g^ir); {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}
/// = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr). (RFC 7296 section 2.14; AEAD has no SK_a.)
pub fn derive_ike_keys(
    prf: PrfAlg,
    encr: EncrAlg,
    shared_secret: &[u8],
    ni: &[u8],
    nr: &[u8],
    spi_i: u64,
    spi_r: u64,
) -> IkeKeys {
    let _ = (prf, encr, shared_secret, ni, nr, spi_i, spi_r);
    todo!()
}

/// For an IKE SA rekey (section 2.18): SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr).
pub fn derive_rekeyed_ike_keys(
    prf: PrfAlg,
    old_sk_d: &[u8],
    encr: EncrAlg,
    shared_secret: &[u8],
    ni: &[u8],
    nr: &[u8],
    spi_i: u64,
    spi_r: u64,
) -> IkeKeys {
    let _ = (prf, old_sk_d, encr, shared_secret, ni, nr, spi_i, spi_r);
    todo!()
}

/// CHILD_SA KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr) (section 2.17), split into
/// (initiator-to-responder, responder-to-initiator), each key || 4-byte salt.
pub fn derive_child_keys(
    prf: PrfAlg,
    sk_d: &[u8],
    encr: EncrAlg,
    shared_secret: Option<&[u8]>,
    ni: &[u8],
    nr: &[u8],
) -> (Zeroizing<Vec<u8>>, Zeroizing<Vec<u8>>) {
    let _ = (prf, sk_d, encr, shared_secret, ni, nr);
    todo!()
}

/// The AUTH payload data for PSK authentication (section 2.15):
/// prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>), where SignedOctets =
/// RealMessage | Nonce of the other side | prf(SK_p, IDType | RESERVED | IDData).
/// `id_payload_body` is the ID payload body after the generic header.
pub fn psk_auth(
    prf: PrfAlg,
    psk: &[u8],
    real_message: &[u8],
    peer_nonce: &[u8],
    sk_p: &[u8],
    id_payload_body: &[u8],
) -> Zeroizing<Vec<u8>> {
    let _ = (prf, psk, real_message, peer_nonce, sk_p, id_payload_body);
    todo!()
}

/// Constant-time comparison of two byte strings (AUTH values).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let _ = (a, b);
    todo!()
}

/// One side of a key exchange. The private key is zeroized on drop.
pub struct KeyExchange {
    _private: (),
}

impl KeyExchange {
    /// Generates a key pair for `group` from `rng`.
    pub fn generate(group: DhGroup, rng: &mut dyn Rng) -> Self {
        let _ = (group, rng);
        todo!()
    }
    /// The group.
    pub fn group(&self) -> DhGroup {
        todo!()
    }
    /// Our public value as carried in the KE payload (32 bytes for X25519, x||y 64 bytes for ECP-256).
    pub fn public_value(&self) -> Vec<u8> {
        todo!()
    }
    /// The shared secret g^ir with the peer's public value (for ECP-256 the x coordinate, RFC 5903).
    pub fn agree(&self, peer_public: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let _ = peer_public;
        todo!()
    }
}

/// AES-GCM-16 for the SK payload (RFC 5282): 8-byte explicit IV, 4-byte salt, 16-byte ICV.
pub struct SkCipher {
    _private: (),
}

impl SkCipher {
    /// From SK_e (key || salt). `None` if the length is wrong for `encr`.
    pub fn new(encr: EncrAlg, key_and_salt: &[u8]) -> Option<Self> {
        let _ = (encr, key_and_salt);
        todo!()
    }
    /// Encrypts in place: `buf` holds the plaintext (already padded with the Pad Length
    /// byte by the caller); appends the 16-byte ICV. `aad` is the IKE header plus the SK
    /// generic payload header, as sent.
    pub fn seal(&self, iv: [u8; 8], aad: &[u8], buf: &mut Vec<u8>) {
        let _ = (iv, aad, buf);
        todo!()
    }
    /// Decrypts `ct_and_tag` in place, returning the plaintext length.
    pub fn open(&self, iv: [u8; 8], aad: &[u8], ct_and_tag: &mut [u8]) -> Result<usize, CryptoError> {
        let _ = (iv, aad, ct_and_tag);
        todo!()
    }
}
