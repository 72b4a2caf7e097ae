//! AES-GCM-16 for ESP (RFC 4106): nonce = salt(4) || IV(8), AAD = SPI || seq
//! (or SPI || seq_hi || seq_lo with extended sequence numbers), 16-byte ICV.
//!
//! Owns: the expanded key and salt of one SA and the exact nonce/AAD layout. Does not
//! own: the ESP header, padding or sequence numbers (see `tunnel`).
//!
//! Built on `ring::aead::LessSafeKey`, working in place on the caller's buffer (no heap
//! allocation per packet). ring rather than RustCrypto's `aes-gcm`: ring's AES-NI +
//! PCLMULQDQ (and VAES/AVX2 where available) assembly runs about twice as fast as the
//! RustCrypto crate on this kind of 1400-byte packet, and the datapath is bound by it.

use ipsec_types::{AeadKey, EncrAlg};
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_128_GCM, AES_256_GCM};
use std::fmt;

/// Length of the explicit IV carried in each packet.
pub const IV_LEN: usize = 8;
/// Length of the ICV (AES-GCM-16).
pub const ICV_LEN: usize = 16;

/// The ICV did not verify (or the buffer was unusable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthError;

/// One direction's AES-GCM-16 key and salt.
pub struct AesGcm16 {
    key: LessSafeKey,
    salt: [u8; 4],
}

impl fmt::Debug for AesGcm16 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AesGcm16(<redacted>)")
    }
}

/// The AAD of RFC 4106 section 5: 8 bytes, or 12 with ESN. Kept on the stack.
struct EspAad {
    buf: [u8; 12],
    len: usize,
}

impl EspAad {
    fn new(spi: u32, seq: u64, esn: bool) -> Self {
        let mut buf = [0u8; 12];
        buf[..4].copy_from_slice(&spi.to_be_bytes());
        if esn {
            buf[4..12].copy_from_slice(&seq.to_be_bytes());
            Self { buf, len: 12 }
        } else {
            // Only the low 32 bits travel without ESN.
            buf[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
            Self { buf, len: 8 }
        }
    }
}

impl AsRef<[u8]> for EspAad {
    fn as_ref(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

impl AesGcm16 {
    /// Expands `key`. Returns `None` only if ring refuses the key length.
    pub fn new(key: &AeadKey) -> Option<Self> {
        let alg = match key.alg() {
            EncrAlg::AesGcm16_128 => &AES_128_GCM,
            EncrAlg::AesGcm16_256 => &AES_256_GCM,
        };
        let unbound = UnboundKey::new(alg, key.key()).ok()?;
        Some(Self { key: LessSafeKey::new(unbound), salt: key.salt() })
    }

    fn nonce(&self, iv: [u8; IV_LEN]) -> Nonce {
        let mut n = [0u8; 12];
        n[..4].copy_from_slice(&self.salt);
        n[4..].copy_from_slice(&iv);
        Nonce::assume_unique_for_key(n)
    }

    /// Encrypts `buf` (ESP payload: inner packet, padding, pad length, next header) in
    /// place and returns the ICV.
    pub fn seal_in_place(
        &self,
        spi: u32,
        seq: u64,
        esn: bool,
        iv: [u8; IV_LEN],
        buf: &mut [u8],
    ) -> Result<[u8; ICV_LEN], AuthError> {
        let aad = EspAad::new(spi, seq, esn);
        let tag = self.key.seal_in_place_separate_tag(self.nonce(iv), Aad::from(aad), buf).map_err(|_| AuthError)?;
        let mut out = [0u8; ICV_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Decrypts `buf` in place if `icv` verifies (constant-time, inside ring).
    pub fn open_in_place<'b>(
        &self,
        spi: u32,
        seq: u64,
        esn: bool,
        iv: [u8; IV_LEN],
        icv: [u8; ICV_LEN],
        buf: &'b mut [u8],
    ) -> Result<&'b mut [u8], AuthError> {
        let aad = EspAad::new(spi, seq, esn);
        let tag = Tag::from(icv);
        self.key.open_in_place_separate_tag(self.nonce(iv), Aad::from(aad), tag, buf, 0..).map_err(|_| AuthError)
    }
}
