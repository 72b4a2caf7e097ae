//! The SK payload cipher: AES-GCM with a 16-octet ICV (ENCR_AES_GCM_16, RFC 5282).
//!
//! Owns the nonce construction (salt || explicit IV, RFC 5282 section 4) and sealing/opening
//! with `ring`. Does not own the SK payload layout, padding or IV generation (the caller's).

use super::{CryptoError, GCM_ICV_LEN, GCM_IV_LEN, GCM_SALT_LEN};
use ipsec_types::EncrAlg;
use ring::aead;
use std::fmt;
use zeroize::Zeroizing;

/// AES-GCM-16 for the SK payload (RFC 5282): 8-byte explicit IV, 4-byte salt, 16-byte ICV.
///
/// The AES key lives only inside ring's opaque `LessSafeKey` (no other copy is kept); the
/// salt zeroizes on drop.
pub struct SkCipher {
    encr: EncrAlg,
    key: aead::LessSafeKey,
    salt: Zeroizing<[u8; GCM_SALT_LEN]>,
}

impl fmt::Debug for SkCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SkCipher").field("encr", &self.encr).finish_non_exhaustive()
    }
}

impl SkCipher {
    /// From SK_e (key || salt). `None` if the length is wrong for `encr`.
    pub fn new(encr: EncrAlg, key_and_salt: &[u8]) -> Option<Self> {
        let key_len = encr.key_len();
        if key_and_salt.len() != key_len + GCM_SALT_LEN {
            return None;
        }
        let (key_bytes, salt_bytes) = key_and_salt.split_at(key_len);
        let alg = match encr {
            EncrAlg::AesGcm16_128 => &aead::AES_128_GCM,
            EncrAlg::AesGcm16_256 => &aead::AES_256_GCM,
            // Not negotiated for IKE yet (`IkeProposal::parse` refuses them).
            EncrAlg::AesCbc128 | EncrAlg::AesCbc192 | EncrAlg::AesCbc256 | EncrAlg::ChaCha20Poly1305 => return None,
        };
        let key = aead::LessSafeKey::new(aead::UnboundKey::new(alg, key_bytes).ok()?);
        let mut salt = Zeroizing::new([0u8; GCM_SALT_LEN]);
        salt.copy_from_slice(salt_bytes);
        Some(Self { encr, key, salt })
    }

    /// The algorithm.
    pub fn encr(&self) -> EncrAlg {
        self.encr
    }

    fn nonce(&self, iv: [u8; GCM_IV_LEN]) -> aead::Nonce {
        let mut nonce = [0u8; aead::NONCE_LEN];
        nonce[..GCM_SALT_LEN].copy_from_slice(&self.salt[..]);
        nonce[GCM_SALT_LEN..].copy_from_slice(&iv);
        aead::Nonce::assume_unique_for_key(nonce)
    }

    /// Encrypts in place: `buf` holds the plaintext (already padded with the Pad Length
    /// byte by the caller); appends the 16-byte ICV. `aad` is the IKE header plus the SK
    /// generic payload header, as sent.
    ///
    /// The IV must never repeat under one key. If ring refuses (only for inputs beyond
    /// GCM's 64 GiB limit) `buf` is cleared rather than left holding plaintext.
    pub fn seal(&self, iv: [u8; 8], aad: &[u8], buf: &mut Vec<u8>) {
        if self.key.seal_in_place_append_tag(self.nonce(iv), aead::Aad::from(aad), buf).is_err() {
            zeroize::Zeroize::zeroize(buf);
        }
    }

    /// Decrypts `ct_and_tag` in place, returning the plaintext length.
    ///
    /// `Malformed` if shorter than the ICV; `IntegrityCheckFailed` if the ICV does not
    /// verify, in which case the buffer's contents are unspecified (ring zeroes them).
    pub fn open(&self, iv: [u8; 8], aad: &[u8], ct_and_tag: &mut [u8]) -> Result<usize, CryptoError> {
        if ct_and_tag.len() < GCM_ICV_LEN {
            return Err(CryptoError::Malformed);
        }
        self.key
            .open_in_place(self.nonce(iv), aead::Aad::from(aad), ct_and_tag)
            .map(|plaintext| plaintext.len())
            .map_err(|_| CryptoError::IntegrityCheckFailed)
    }
}
