//! The SK payload cipher (RFC 7296 section 3.14) of one direction of an IKE SA:
//!
//! - AEADs: AES-GCM-16 (RFC 5282) and ChaCha20-Poly1305 (RFC 7634 section 3). Nonce =
//!   salt(4, the end of SK_e) || IV(8, explicit), AAD = the IKE header and the SK
//!   payload's generic header as sent (RFC 5282 section 5.1), 16-byte ICV.
//! - AES-CBC 128/192/256 (RFC 3602 as used by RFC 7296 3.14) with HMAC-SHA1-96 (RFC
//!   2404) or HMAC-SHA2-256-128 / -384-192 / -512-256 (RFC 4868): a 16-byte IV, the
//!   plaintext padded to the AES block, the ICV over everything from the IKE header to
//!   the end of the ciphertext (the AAD, then the IV, then the ciphertext), verified in
//!   constant time before anything is decrypted.
//!
//! Owns: the expanded keys, the nonce construction and the ICV computation. Does not own:
//! the SK payload layout, padding or IVs (the caller's: IVs for CBC must be
//! unpredictable, drawn from the injected `Rng`; AEAD IVs must never repeat under a key).
//!
//! Crates, and why: the AEADs use ring's `LessSafeKey` (its AES-NI/CLMUL and ChaCha20
//! assembly, already used for ESP). ring has no CBC and its HMAC-SHA1 has no SHA-NI
//! backend, so AES-CBC is RustCrypto `aes` (AES-NI picked at run time, round keys
//! zeroized on drop) with `cbc`, and the SK integrity HMACs are RustCrypto `hmac` with
//! `sha1`/`sha2`, as in the ESP datapath. The keyed HMAC state is cloned per message.
//! RustCrypto's HMAC state and ring's AEAD key are not zeroized (neither crate offers
//! it); the raw key bytes (`IkeKeys`) are.

use super::CryptoError;
use aes::cipher::{
    block_padding::NoPadding, consts::U16, BlockCipher, BlockDecrypt, BlockDecryptMut, BlockEncrypt, BlockEncryptMut,
    BlockSizeUser, InnerIvInit, KeyInit,
};
use hmac::Mac;
use ipsec_types::{EncrAlg, IntegAlg};
use ring::aead;
use std::fmt;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Salt length of the AEADs (RFC 5282 section 7.1, RFC 7634 section 3).
const AEAD_SALT_LEN: usize = 4;
/// Explicit IV length of the AEADs.
const AEAD_IV_LEN: usize = 8;
/// ICV length of the AEADs.
const AEAD_ICV_LEN: usize = 16;
/// AES block, and the CBC IV.
const AES_BLOCK: usize = 16;
/// The longest ICV of any transform (HMAC-SHA2-512-256).
pub const MAX_ICV_LEN: usize = 32;
/// The longest IV of any transform (AES-CBC).
pub const MAX_IV_LEN: usize = AES_BLOCK;

/// An expanded AES key of one of the three sizes (zeroized on drop by `aes`): the CBC
/// half of the SK payload cipher, and the whole of IKEv1's body encryption (`v1`).
pub(crate) enum AesKey {
    A128(aes::Aes128),
    A192(aes::Aes192),
    A256(aes::Aes256),
}

/// A keyed HMAC state of one hash.
#[derive(Clone)]
enum MacState {
    Sha1(hmac::Hmac<sha1::Sha1>),
    Sha256(hmac::Hmac<sha2::Sha256>),
    Sha384(hmac::Hmac<sha2::Sha384>),
    Sha512(hmac::Hmac<sha2::Sha512>),
}

/// An HMAC keyed with `key`. HMAC takes keys of any length (RFC 2104 section 3), so
/// `new_from_slice` never fails; the fallback only keeps this free of panics.
fn keyed<M: hmac::digest::KeyInit>(key: &[u8]) -> M {
    M::new_from_slice(key).unwrap_or_else(|_| M::new(&Default::default()))
}

/// The full HMAC of the concatenation of `parts` from a clone of `m`, into `out`;
/// returns the hash length.
fn full_mac<M: Mac + Clone>(m: &M, parts: &[&[u8]], out: &mut [u8; 64]) -> usize {
    let mut m = m.clone();
    for p in parts {
        m.update(p);
    }
    let tag = m.finalize().into_bytes();
    let n = tag.len().min(out.len());
    out[..n].copy_from_slice(&tag[..n]);
    n
}

impl MacState {
    fn new(alg: IntegAlg, key: &[u8]) -> Self {
        match alg {
            IntegAlg::HmacSha1_96 => Self::Sha1(keyed(key)),
            IntegAlg::HmacSha256_128 => Self::Sha256(keyed(key)),
            IntegAlg::HmacSha384_192 => Self::Sha384(keyed(key)),
            IntegAlg::HmacSha512_256 => Self::Sha512(keyed(key)),
        }
    }

    /// The truncated ICV (`icv_len` bytes) over the concatenation of `parts`.
    fn icv(&self, parts: &[&[u8]], icv_len: usize) -> Zeroizing<Vec<u8>> {
        let mut tag = Zeroizing::new([0u8; 64]);
        let n = match self {
            Self::Sha1(m) => full_mac(m, parts, &mut tag),
            Self::Sha256(m) => full_mac(m, parts, &mut tag),
            Self::Sha384(m) => full_mac(m, parts, &mut tag),
            Self::Sha512(m) => full_mac(m, parts, &mut tag),
        };
        Zeroizing::new(tag.get(..icv_len.min(n)).unwrap_or_default().to_vec())
    }
}

/// AES-CBC with HMAC: the state of one direction.
struct CbcHmac {
    aes: AesKey,
    mac: MacState,
    icv_len: usize,
}

fn cbc_encrypt<C>(c: &C, iv: &[u8; AES_BLOCK], buf: &mut [u8]) -> bool
where
    C: BlockEncrypt + BlockCipher + BlockSizeUser<BlockSize = U16>,
{
    let len = buf.len();
    // `inner_iv_init` on a reference: no key schedule and no key copy per message.
    cbc::Encryptor::<&C>::inner_iv_init(c, &(*iv).into()).encrypt_padded_mut::<NoPadding>(buf, len).is_ok()
}

fn cbc_decrypt<C>(c: &C, iv: &[u8; AES_BLOCK], buf: &mut [u8]) -> bool
where
    C: BlockDecrypt + BlockCipher + BlockSizeUser<BlockSize = U16>,
{
    cbc::Decryptor::<&C>::inner_iv_init(c, &(*iv).into()).decrypt_padded_mut::<NoPadding>(buf).is_ok()
}

impl AesKey {
    /// `None` unless `alg` is AES-CBC and `key` has its length.
    pub(crate) fn new(alg: EncrAlg, key: &[u8]) -> Option<Self> {
        Some(match alg {
            EncrAlg::AesCbc128 => Self::A128(aes::Aes128::new_from_slice(key).ok()?),
            EncrAlg::AesCbc192 => Self::A192(aes::Aes192::new_from_slice(key).ok()?),
            EncrAlg::AesCbc256 => Self::A256(aes::Aes256::new_from_slice(key).ok()?),
            _ => return None,
        })
    }
    /// CBC-encrypts `buf` (whole blocks) in place.
    pub(crate) fn encrypt(&self, iv: &[u8; AES_BLOCK], buf: &mut [u8]) -> bool {
        match self {
            Self::A128(k) => cbc_encrypt(k, iv, buf),
            Self::A192(k) => cbc_encrypt(k, iv, buf),
            Self::A256(k) => cbc_encrypt(k, iv, buf),
        }
    }
    /// CBC-decrypts `buf` (whole blocks) in place.
    pub(crate) fn decrypt(&self, iv: &[u8; AES_BLOCK], buf: &mut [u8]) -> bool {
        match self {
            Self::A128(k) => cbc_decrypt(k, iv, buf),
            Self::A192(k) => cbc_decrypt(k, iv, buf),
            Self::A256(k) => cbc_decrypt(k, iv, buf),
        }
    }
}

// The AEAD key stays inline, as it always did (one per direction of an IKE SA); the
// larger CBC state (round keys and two HMAC states) is boxed.
#[allow(clippy::large_enum_variant)]
enum Inner {
    Aead { key: aead::LessSafeKey, salt: Zeroizing<[u8; AEAD_SALT_LEN]> },
    Cbc(Box<CbcHmac>),
}

/// The SK payload cipher of one direction of an IKE SA (see the module documentation).
pub struct SkCipher {
    encr: EncrAlg,
    integ: Option<IntegAlg>,
    inner: Inner,
}

impl fmt::Debug for SkCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SkCipher").field("encr", &self.encr).field("integ", &self.integ).finish_non_exhaustive()
    }
}

impl SkCipher {
    /// From SK_e (the cipher key, then the 4-byte salt for the AEADs) and SK_a (the
    /// integrity key, empty for the AEADs). `None` if a length is wrong for the
    /// algorithms, or the pair is not valid (an AEAD with an integrity algorithm,
    /// AES-CBC without one).
    pub fn new(encr: EncrAlg, integ: Option<IntegAlg>, sk_e: &[u8], sk_a: &[u8]) -> Option<Self> {
        let inner = match (encr, integ) {
            (EncrAlg::AesGcm16_128 | EncrAlg::AesGcm16_256 | EncrAlg::ChaCha20Poly1305, None) => {
                if sk_e.len() != encr.key_len() + AEAD_SALT_LEN || !sk_a.is_empty() {
                    return None;
                }
                let alg = match encr {
                    EncrAlg::AesGcm16_128 => &aead::AES_128_GCM,
                    EncrAlg::AesGcm16_256 => &aead::AES_256_GCM,
                    _ => &aead::CHACHA20_POLY1305,
                };
                let (key_bytes, salt_bytes) = sk_e.split_at(encr.key_len());
                let key = aead::LessSafeKey::new(aead::UnboundKey::new(alg, key_bytes).ok()?);
                let mut salt = Zeroizing::new([0u8; AEAD_SALT_LEN]);
                salt.copy_from_slice(salt_bytes);
                Inner::Aead { key, salt }
            }
            (EncrAlg::AesCbc128 | EncrAlg::AesCbc192 | EncrAlg::AesCbc256, Some(i)) => {
                if sk_e.len() != encr.key_len() || sk_a.len() != i.key_len() {
                    return None;
                }
                let aes = AesKey::new(encr, sk_e)?;
                Inner::Cbc(Box::new(CbcHmac { aes, mac: MacState::new(i, sk_a), icv_len: i.icv_len() }))
            }
            _ => return None,
        };
        Some(Self { encr, integ, inner })
    }

    /// The encryption algorithm.
    pub fn encr(&self) -> EncrAlg {
        self.encr
    }

    /// The integrity algorithm (`Some` exactly for AES-CBC).
    pub fn integ(&self) -> Option<IntegAlg> {
        self.integ
    }

    /// Length of the explicit IV at the start of the SK payload body: 8 for the AEADs,
    /// 16 for AES-CBC.
    pub fn iv_len(&self) -> usize {
        match self.inner {
            Inner::Aead { .. } => AEAD_IV_LEN,
            Inner::Cbc(_) => AES_BLOCK,
        }
    }

    /// Length of the ICV at the end of the SK payload: 16 for the AEADs, the truncated
    /// HMAC length for AES-CBC (12, 16, 24 or 32).
    pub fn icv_len(&self) -> usize {
        match &self.inner {
            Inner::Aead { .. } => AEAD_ICV_LEN,
            Inner::Cbc(c) => c.icv_len,
        }
    }

    /// The plaintext (payloads, padding and the Pad Length octet) must be a multiple of
    /// this: 16 for AES-CBC, 1 for the AEADs (they need no padding).
    pub fn block_len(&self) -> usize {
        match self.inner {
            Inner::Aead { .. } => 1,
            Inner::Cbc(_) => AES_BLOCK,
        }
    }

    fn nonce(salt: &[u8; AEAD_SALT_LEN], iv: &[u8]) -> Option<aead::Nonce> {
        let mut nonce = [0u8; aead::NONCE_LEN];
        nonce[..AEAD_SALT_LEN].copy_from_slice(salt);
        nonce.get_mut(AEAD_SALT_LEN..)?.copy_from_slice(<&[u8; AEAD_IV_LEN]>::try_from(iv).ok()?);
        Some(aead::Nonce::assume_unique_for_key(nonce))
    }

    /// Encrypts in place: `buf` holds the plaintext (payloads, padding and the Pad
    /// Length octet, a multiple of [`Self::block_len`]); the ICV is appended. `iv` is
    /// the explicit IV sent before the ciphertext ([`Self::iv_len`] bytes), `aad` the
    /// IKE header plus the SK (or SKF) payload header as sent. With AES-CBC the ICV
    /// covers `aad || iv || ciphertext` (RFC 7296 3.14).
    ///
    /// AEAD IVs must never repeat under one key; CBC IVs must be unpredictable. If the
    /// input is unusable (IV or plaintext length wrong, beyond GCM's limits) `buf` is
    /// cleared rather than left holding plaintext: the peer then drops the message.
    pub fn seal(&self, iv: &[u8], aad: &[u8], buf: &mut Vec<u8>) {
        let ok = match &self.inner {
            Inner::Aead { key, salt } => match Self::nonce(salt, iv) {
                Some(n) => key.seal_in_place_append_tag(n, aead::Aad::from(aad), buf).is_ok(),
                None => false,
            },
            Inner::Cbc(c) => match <&[u8; AES_BLOCK]>::try_from(iv) {
                Ok(iv) if buf.len().is_multiple_of(AES_BLOCK) && !buf.is_empty() && c.aes.encrypt(iv, buf) => {
                    let icv = c.mac.icv(&[aad, iv, buf], c.icv_len);
                    buf.extend_from_slice(&icv);
                    true
                }
                _ => false,
            },
        };
        if !ok {
            zeroize::Zeroize::zeroize(buf);
            buf.clear();
        }
    }

    /// Verifies and decrypts `ct_and_icv` (the ciphertext followed by the ICV) in place,
    /// returning the plaintext length (the plaintext is `ct_and_icv[..n]`). `iv` and
    /// `aad` as for [`Self::seal`].
    ///
    /// `Malformed` if the IV has the wrong length, the input is shorter than the ICV, or
    /// (AES-CBC) the ciphertext is empty or not whole blocks; `IntegrityCheckFailed` if
    /// the ICV does not verify. With AES-CBC the ICV is checked in constant time before
    /// anything is decrypted; after a failure the buffer's contents are unspecified.
    pub fn open(&self, iv: &[u8], aad: &[u8], ct_and_icv: &mut [u8]) -> Result<usize, CryptoError> {
        let icv_len = self.icv_len();
        let ct_len = ct_and_icv.len().checked_sub(icv_len).ok_or(CryptoError::Malformed)?;
        match &self.inner {
            Inner::Aead { key, salt } => {
                let nonce = Self::nonce(salt, iv).ok_or(CryptoError::Malformed)?;
                key.open_in_place(nonce, aead::Aad::from(aad), ct_and_icv)
                    .map(|plaintext| plaintext.len())
                    .map_err(|_| CryptoError::IntegrityCheckFailed)
            }
            Inner::Cbc(c) => {
                let iv = <&[u8; AES_BLOCK]>::try_from(iv).map_err(|_| CryptoError::Malformed)?;
                if ct_len == 0 || !ct_len.is_multiple_of(AES_BLOCK) {
                    return Err(CryptoError::Malformed);
                }
                let (ct, icv) = ct_and_icv.split_at_mut(ct_len);
                let ours = c.mac.icv(&[aad, iv, ct], c.icv_len);
                if ours.len() != icv.len() || !bool::from(ours.as_slice().ct_eq(icv)) {
                    return Err(CryptoError::IntegrityCheckFailed);
                }
                if !c.aes.decrypt(iv, ct) {
                    return Err(CryptoError::Malformed);
                }
                Ok(ct_len)
            }
        }
    }
}
