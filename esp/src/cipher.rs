//! The ESP transforms of one SA direction, behind one enum ([`EspCipher`], matched per
//! packet, nothing dispatched dynamically):
//!
//! - AEADs ([`Aead`]): AES-GCM-16 (RFC 4106) and ChaCha20-Poly1305 (RFC 7634). Nonce =
//!   salt(4) || IV(8), AAD = SPI || seq (or SPI || seq_hi || seq_lo with extended
//!   sequence numbers), 16-byte ICV. The IV is the 64-bit sequence number (unique per
//!   key, RFC 4106 section 3.1, RFC 7634 section 2).
//! - AES-CBC (RFC 3602) with HMAC-SHA1-96 (RFC 2404) or HMAC-SHA2 (RFC 4868)
//!   ([`CbcHmac`]): encrypt-then-MAC as RFC 4303 section 3.3.2 orders it, the ICV over
//!   ESP header || IV || ciphertext (|| seq_hi with ESN, section 2.2.1), verified in
//!   constant time before anything is decrypted.
//!
//! Owns: the expanded keys of one SA direction, the exact nonce/AAD/ICV layout, the IVs.
//! Does not own: the ESP header, padding or sequence numbers (see `tunnel`).
//!
//! Crates, and why:
//! - AEADs: `ring::aead::LessSafeKey`, in place on the caller's buffer. ring rather than
//!   RustCrypto's `aes-gcm`: ring's AES-NI + PCLMULQDQ (and VAES/AVX2 where available)
//!   assembly runs about twice as fast as the RustCrypto crate on this kind of
//!   1400-byte packet, and the datapath is bound by it. ChaCha20-Poly1305 is ring's too
//!   (its AVX2 assembly).
//! - AES-CBC: RustCrypto `aes` (AES-NI picked at run time, round keys zeroized on drop
//!   with its `zeroize` feature) and `cbc` (the mode; decryption runs 8 blocks in
//!   parallel). ring has no CBC.
//! - HMAC: RustCrypto `hmac` + `sha1` / `sha2`, not ring's `hmac`: measured over one ESP
//!   packet's ICV input (1432 bytes, `seal_open` bench, interleaved CPU time), RustCrypto
//!   takes 28% of ring's time for SHA-1 (its SHA-NI backend; ring has none for SHA-1),
//!   92% for SHA-256 and the same time (102%) for SHA-384/512 on this machine's CPUs
//!   (SHA-NI, no SHA-512 extensions). The keyed state (inner and outer hash after the
//!   key block) is cloned per packet, so no key schedule runs per packet. Neither
//!   crate zeroizes its expanded state (nor does ring's AEAD key); the raw key bytes
//!   (`EspKey`) are zeroized.
//!
//! CBC IVs (RFC 3602 section 3: random and unpredictable). `esp` is sans-I/O and has no
//! RNG (the AEADs need none), and one `getrandom` per packet would cost a system call.
//! Each CBC SA therefore owns its IV generator: IV = AES-128(K_iv, 0^64 || seq), a block
//! cipher over a counter that never repeats within the SA (the first of the two methods
//! of NIST SP 800-38A appendix C, with a key of its own). K_iv is derived once, when the
//! SA is installed, from the SA's secret KEYMAT (encryption and integrity keys) with
//! HKDF-SHA256 and a label of its own, so nobody without the SA's keys can predict an IV.

use aes::cipher::{
    block_padding::NoPadding, BlockCipher, BlockDecrypt, BlockDecryptMut, BlockEncrypt, BlockEncryptMut, BlockSizeUser,
    InnerIvInit, KeyInit,
};
use hmac::Mac;
use ipsec_types::{EncrAlg, EspKey, IntegAlg};
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_128_GCM, AES_256_GCM, CHACHA20_POLY1305};
use ring::hkdf;
use std::fmt;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Length of the explicit IV of the AEADs.
pub const IV_LEN: usize = 8;
/// Length of the AEAD ICV.
pub const ICV_LEN: usize = 16;
/// AES block (and CBC IV) length.
pub const AES_BLOCK: usize = 16;
/// The longest IV of any transform.
pub const MAX_IV_LEN: usize = AES_BLOCK;
/// The longest ICV of any transform (HMAC-SHA2-512-256).
pub const MAX_ICV_LEN: usize = 32;

/// The ICV did not verify (or the buffer was unusable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthError;

/// Why [`EspCipher::open`] refused a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// The ICV did not verify.
    Auth,
    /// The lengths do not fit the transform (or the caller's buffer is too short).
    Malformed,
}

/// Where the parts of an ESP packet sit for one transform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Explicit IV length (8 for the AEADs, 16 for AES-CBC).
    pub iv_len: usize,
    /// ICV length.
    pub icv_len: usize,
    /// `seal` pads the ciphertext (payload, padding, pad length, next header) to a
    /// multiple of this (a power of two): the AES block for AES-GCM ([`GCM_ALIGN`]) and CBC
    /// (RFC 3602 2.4), 4 for ChaCha20-Poly1305 (RFC 4303 2.4).
    pub align: usize,
    /// `open` refuses a ciphertext that is not a multiple of this (a power of two): the AES block for
    /// CBC, which cannot decrypt anything else; 1 for the AEADs (a peer's odd length
    /// is left for the ICV to judge, as before).
    pub block: usize,
}

impl Layout {
    /// The layout of the ESP suite `encr` (with `integ` for AES-CBC, ignored for the
    /// AEADs): the one place that says how each transform pads. `None` for AES-CBC
    /// without an integrity algorithm, which no SA has.
    pub fn of(encr: EncrAlg, integ: Option<IntegAlg>) -> Option<Layout> {
        let aead = |align| Layout { iv_len: IV_LEN, icv_len: ICV_LEN, align, block: 1 };
        match (encr, integ) {
            (EncrAlg::AesGcm16_128 | EncrAlg::AesGcm16_256, _) => Some(aead(GCM_ALIGN)),
            (EncrAlg::ChaCha20Poly1305, _) => Some(aead(4)),
            (EncrAlg::AesCbc128 | EncrAlg::AesCbc192 | EncrAlg::AesCbc256, Some(i)) => {
                Some(Layout { iv_len: AES_BLOCK, icv_len: i.icv_len(), align: AES_BLOCK, block: AES_BLOCK })
            }
            (EncrAlg::AesCbc128 | EncrAlg::AesCbc192 | EncrAlg::AesCbc256, None) => None,
        }
    }
    /// The most bytes `seal` adds to an inner packet with this layout: SPI and sequence
    /// number, IV, padding (at most `align - 1`), pad length and next header, ICV.
    pub fn max_overhead(self) -> usize {
        self.header_len() + (self.align - 1) + 2 + self.icv_len
    }
    /// SPI + sequence number + IV.
    pub fn header_len(self) -> usize {
        8 + self.iv_len
    }
    /// Shortest ciphertext `open` considers: pad length and next header, rounded up to
    /// `block`.
    pub fn min_ct_len(self) -> usize {
        2usize.next_multiple_of(self.block)
    }
}

/// The AAD of RFC 4106 section 5 / RFC 7634 section 2.1: 8 bytes, or 12 with ESN.
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

/// One direction's AEAD key and salt (AES-GCM-16 or ChaCha20-Poly1305).
pub struct Aead {
    key: LessSafeKey,
    salt: [u8; 4],
    /// [`Layout::of`] its algorithm.
    layout: Layout,
}

/// AES-GCM ciphertexts are padded to whole 16-byte blocks (RFC 4303 2.4 allows up to
/// 255 padding bytes; 4 is the minimum): ring's AES-GCM then skips its separate
/// partial-block step (one more AES block and one more GHASH call per packet), which cost
/// about 1 % of all CPU of a TCP run through two gateways (docs/performance.md). At most
/// 12 bytes more per packet on the wire. ChaCha20-Poly1305 has no such step (it pads
/// internally), so it keeps the minimum.
pub const GCM_ALIGN: usize = 16;

/// The former name, when AES-GCM-16 was the only transform.
pub type AesGcm16 = Aead;

impl fmt::Debug for Aead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Aead({:?}, <redacted>)", self.key.algorithm())
    }
}

impl Aead {
    /// Expands `key`. `None` if it is not an AEAD key or ring refuses its length.
    pub fn new(key: &EspKey) -> Option<Self> {
        let alg = match key.alg() {
            EncrAlg::AesGcm16_128 => &AES_128_GCM,
            EncrAlg::AesGcm16_256 => &AES_256_GCM,
            EncrAlg::ChaCha20Poly1305 => &CHACHA20_POLY1305,
            EncrAlg::AesCbc128 | EncrAlg::AesCbc192 | EncrAlg::AesCbc256 => return None,
        };
        let layout = Layout::of(key.alg(), None)?;
        let unbound = UnboundKey::new(alg, key.key()).ok()?;
        Some(Self { key: LessSafeKey::new(unbound), salt: key.salt(), layout })
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

/// An expanded AES key of one of the three sizes (encryption and decryption round
/// keys, zeroized on drop by the `aes` crate).
enum AesKey {
    A128(aes::Aes128),
    A192(aes::Aes192),
    A256(aes::Aes256),
}

fn cbc_encrypt<C>(c: &C, iv: &[u8; AES_BLOCK], buf: &mut [u8]) -> Result<(), AuthError>
where
    C: BlockEncrypt + BlockCipher + BlockSizeUser<BlockSize = aes::cipher::consts::U16>,
{
    let len = buf.len();
    cbc::Encryptor::<&C>::inner_iv_init(c, &(*iv).into())
        .encrypt_padded_mut::<NoPadding>(buf, len)
        .map(|_| ())
        .map_err(|_| AuthError)
}

fn cbc_decrypt<C>(c: &C, iv: &[u8; AES_BLOCK], ct: &[u8], out: &mut [u8]) -> Result<(), AuthError>
where
    C: BlockDecrypt + BlockCipher + BlockSizeUser<BlockSize = aes::cipher::consts::U16>,
{
    cbc::Decryptor::<&C>::inner_iv_init(c, &(*iv).into())
        .decrypt_padded_b2b_mut::<NoPadding>(ct, out)
        .map(|_| ())
        .map_err(|_| AuthError)
}

impl AesKey {
    fn new(alg: EncrAlg, key: &[u8]) -> Option<Self> {
        Some(match alg {
            EncrAlg::AesCbc128 => Self::A128(aes::Aes128::new_from_slice(key).ok()?),
            EncrAlg::AesCbc192 => Self::A192(aes::Aes192::new_from_slice(key).ok()?),
            EncrAlg::AesCbc256 => Self::A256(aes::Aes256::new_from_slice(key).ok()?),
            _ => return None,
        })
    }
    fn encrypt(&self, iv: &[u8; AES_BLOCK], buf: &mut [u8]) -> Result<(), AuthError> {
        match self {
            Self::A128(k) => cbc_encrypt(k, iv, buf),
            Self::A192(k) => cbc_encrypt(k, iv, buf),
            Self::A256(k) => cbc_encrypt(k, iv, buf),
        }
    }
    fn decrypt(&self, iv: &[u8; AES_BLOCK], ct: &[u8], out: &mut [u8]) -> Result<(), AuthError> {
        match self {
            Self::A128(k) => cbc_decrypt(k, iv, ct, out),
            Self::A192(k) => cbc_decrypt(k, iv, ct, out),
            Self::A256(k) => cbc_decrypt(k, iv, ct, out),
        }
    }
}

/// A keyed HMAC state of one hash.
#[derive(Clone)]
enum MacState {
    Sha1(hmac::Hmac<sha1::Sha1>),
    Sha256(hmac::Hmac<sha2::Sha256>),
    Sha384(hmac::Hmac<sha2::Sha384>),
    Sha512(hmac::Hmac<sha2::Sha512>),
}

/// The full HMAC of the concatenation of `parts` from a clone of the keyed state `m`,
/// written into `out`; returns the number of bytes written (the hash length).
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

/// An HMAC keyed with `key`. HMAC takes keys of any length (RFC 2104 section 3), so
/// `new_from_slice` never fails; the fallback only keeps this free of panics.
fn keyed<M: hmac::digest::KeyInit>(key: &[u8]) -> M {
    M::new_from_slice(key).unwrap_or_else(|_| M::new(&Default::default()))
}

/// One direction's HMAC key with the truncation of its ESP integrity algorithm.
pub struct Integ {
    state: MacState,
    icv_len: usize,
}

impl fmt::Debug for Integ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Integ({}, <redacted>)", self.icv_len)
    }
}

impl Integ {
    /// An HMAC key for `alg` (HMAC takes a key of any length).
    pub fn new(alg: IntegAlg, key: &[u8]) -> Self {
        let state = match alg {
            IntegAlg::HmacSha1_96 => MacState::Sha1(keyed(key)),
            IntegAlg::HmacSha256_128 => MacState::Sha256(keyed(key)),
            IntegAlg::HmacSha384_192 => MacState::Sha384(keyed(key)),
            IntegAlg::HmacSha512_256 => MacState::Sha512(keyed(key)),
        };
        Self { state, icv_len: alg.icv_len() }
    }

    /// The full HMAC over the concatenation of `parts` (no concatenation is built).
    fn tag(&self, parts: &[&[u8]], out: &mut [u8; 64]) -> usize {
        match &self.state {
            MacState::Sha1(m) => full_mac(m, parts, out),
            MacState::Sha256(m) => full_mac(m, parts, out),
            MacState::Sha384(m) => full_mac(m, parts, out),
            MacState::Sha512(m) => full_mac(m, parts, out),
        }
    }

    /// Writes the truncated ICV over `parts` into `out` (`icv_len` bytes).
    pub fn icv_into(&self, parts: &[&[u8]], out: &mut [u8]) -> Result<(), AuthError> {
        let mut tag = [0u8; 64];
        let n = self.tag(parts, &mut tag);
        let icv = tag.get(..self.icv_len.min(n)).ok_or(AuthError)?;
        out.get_mut(..icv.len()).ok_or(AuthError)?.copy_from_slice(icv);
        Ok(())
    }

    /// Whether `icv` is the truncated ICV over `parts`, compared in constant time (an
    /// `icv` of another length never verifies).
    pub fn verify(&self, parts: &[&[u8]], icv: &[u8]) -> bool {
        let mut tag = [0u8; 64];
        let n = self.tag(parts, &mut tag);
        let ours = tag.get(..self.icv_len.min(n)).unwrap_or(&[]);
        icv.len() == self.icv_len && bool::from(ours.ct_eq(icv))
    }

    /// ICV length in bytes.
    pub fn icv_len(&self) -> usize {
        self.icv_len
    }
}

/// One direction's AES-CBC key, IV generator and HMAC key.
pub struct CbcHmac {
    aes: AesKey,
    iv_gen: aes::Aes128Enc,
    integ: Integ,
    /// [`Layout::of`] its algorithms.
    layout: Layout,
}

impl fmt::Debug for CbcHmac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CbcHmac(<redacted>)")
    }
}

/// The HKDF salt (a public label) of the CBC IV generator key.
const IV_KEY_LABEL: &[u8] = b"vpngw ESP AES-CBC IV generator key v1";

struct Len16;
impl hkdf::KeyType for Len16 {
    fn len(&self) -> usize {
        16
    }
}

impl CbcHmac {
    /// Expands `key`. `None` if it is not an AES-CBC key with an integrity key.
    pub fn new(key: &EspKey) -> Option<Self> {
        let aes = AesKey::new(key.alg(), key.key())?;
        let layout = Layout::of(key.alg(), key.integ())?;
        let integ = Integ::new(key.integ()?, key.integ_key());
        // K_iv = HKDF-SHA256(salt = label, IKM = encryption key || integrity key).
        let mut ikm = Zeroizing::new(Vec::with_capacity(key.key().len() + key.integ_key().len()));
        ikm.extend_from_slice(key.key());
        ikm.extend_from_slice(key.integ_key());
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, IV_KEY_LABEL).extract(&ikm);
        let mut k_iv = Zeroizing::new([0u8; 16]);
        prk.expand(&[], Len16).ok()?.fill(k_iv.as_mut()).ok()?;
        let iv_gen = aes::Aes128Enc::new_from_slice(k_iv.as_ref()).ok()?;
        Some(Self { aes, iv_gen, integ, layout })
    }

    /// The IV of the packet with sequence number `seq`: AES-128(K_iv, 0^64 || seq).
    pub fn iv(&self, seq: u64) -> [u8; AES_BLOCK] {
        let mut counter = [0u8; AES_BLOCK];
        counter[8..].copy_from_slice(&seq.to_be_bytes());
        let mut block = counter.into();
        self.iv_gen.encrypt_block(&mut block);
        block.into()
    }

    /// AES-CBC encryption of `buf` (a whole number of blocks) in place.
    pub fn encrypt(&self, iv: &[u8; AES_BLOCK], buf: &mut [u8]) -> Result<(), AuthError> {
        self.aes.encrypt(iv, buf)
    }

    /// AES-CBC decryption of `ct` (a whole number of blocks) into `out` (as long).
    pub fn decrypt(&self, iv: &[u8; AES_BLOCK], ct: &[u8], out: &mut [u8]) -> Result<(), AuthError> {
        self.aes.decrypt(iv, ct, out)
    }

    /// The integrity half.
    pub fn integ(&self) -> &Integ {
        &self.integ
    }
}

/// The high 32 bits of `seq` that RFC 4303 section 2.2.1 appends to the ICV input with
/// ESN (nothing without).
fn seq_hi(seq: u64, esn: bool) -> ([u8; 4], usize) {
    (((seq >> 32) as u32).to_be_bytes(), if esn { 4 } else { 0 })
}

/// The transform of one SA direction.
// The AEAD variant stays inline: it is the common case and the hot path reads its key
// straight from the SA core; the rarer CBC state is boxed instead.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum EspCipher {
    /// AES-GCM-16 or ChaCha20-Poly1305.
    Aead(Aead),
    /// AES-CBC with HMAC (boxed: its round keys and HMAC states are about 1 KiB, which
    /// would otherwise sit in every SA's core beside the AEAD key).
    Cbc(Box<CbcHmac>),
}

impl EspCipher {
    /// Expands `key`. `None` if the key does not fit its algorithms.
    pub fn new(key: &EspKey) -> Option<Self> {
        if key.alg().is_aead() {
            key.integ().is_none().then(|| Aead::new(key)).flatten().map(Self::Aead)
        } else {
            CbcHmac::new(key).map(|c| Self::Cbc(Box::new(c)))
        }
    }

    /// The packet layout of this transform.
    #[inline]
    pub fn layout(&self) -> Layout {
        match self {
            Self::Aead(a) => a.layout,
            Self::Cbc(c) => c.layout,
        }
    }

    /// Protects `packet`, a whole ESP packet whose SPI and sequence number fields are
    /// written and whose ciphertext part holds the plaintext (payload, padding, pad
    /// length, next header; a multiple of `layout().align`): writes the IV, encrypts,
    /// writes the ICV. `seq` is the full (64-bit with ESN) sequence number.
    #[inline]
    pub fn seal(&self, spi: u32, seq: u64, esn: bool, packet: &mut [u8]) -> Result<(), AuthError> {
        let l = self.layout();
        let ct_end = packet.len().checked_sub(l.icv_len).ok_or(AuthError)?;
        let (body, icv_out) = packet.split_at_mut(ct_end);
        let (hdr, ct) = body.split_at_mut(l.header_len().min(ct_end));
        let iv_out = hdr.get_mut(8..).ok_or(AuthError)?;
        match self {
            Self::Aead(a) => {
                // Fixed-size views, so these copies compile to moves, not memmove calls.
                let (Ok(iv_out), Ok(icv_out)) =
                    (<&mut [u8; IV_LEN]>::try_from(iv_out), <&mut [u8; ICV_LEN]>::try_from(icv_out))
                else {
                    return Err(AuthError);
                };
                let iv = seq.to_be_bytes();
                *iv_out = iv;
                *icv_out = a.seal_in_place(spi, seq, esn, iv, ct)?;
            }
            Self::Cbc(c) => {
                let iv = c.iv(seq);
                let Ok(iv_out) = <&mut [u8; AES_BLOCK]>::try_from(iv_out) else { return Err(AuthError) };
                *iv_out = iv;
                c.encrypt(&iv, ct)?;
                let (hi, n) = seq_hi(seq, esn);
                c.integ.icv_into(&[hdr, ct, hi.get(..n).unwrap_or(&[])], icv_out)?;
            }
        }
        Ok(())
    }

    /// Opens `esp` (a whole ESP packet) into `out`, returning the plaintext part (payload,
    /// padding, pad length, next header). The ICV is verified before anything is
    /// decrypted; with AES-CBC, in constant time over ESP header, IV and ciphertext.
    #[inline]
    pub fn open<'o>(
        &self,
        spi: u32,
        seq: u64,
        esn: bool,
        esp: &[u8],
        out: &'o mut [u8],
    ) -> Result<&'o mut [u8], OpenError> {
        let l = self.layout();
        let ct_end = esp.len().checked_sub(l.icv_len).ok_or(OpenError::Malformed)?;
        let hdr_len = l.header_len();
        let (Some(auth), Some(icv), Some(ct)) = (esp.get(..ct_end), esp.get(ct_end..), esp.get(hdr_len..ct_end)) else {
            return Err(OpenError::Malformed);
        };
        let iv = esp.get(8..hdr_len).ok_or(OpenError::Malformed)?;
        let pt = out.get_mut(..ct.len()).ok_or(OpenError::Malformed)?;
        match self {
            Self::Aead(a) => {
                let (Ok(iv), Ok(icv)) = (<[u8; IV_LEN]>::try_from(iv), <[u8; ICV_LEN]>::try_from(icv)) else {
                    return Err(OpenError::Malformed);
                };
                pt.copy_from_slice(ct);
                a.open_in_place(spi, seq, esn, iv, icv, pt).map_err(|_| OpenError::Auth)
            }
            Self::Cbc(c) => {
                if ct.is_empty() || ct.len() % AES_BLOCK != 0 {
                    return Err(OpenError::Malformed);
                }
                let Ok(iv) = <[u8; AES_BLOCK]>::try_from(iv) else { return Err(OpenError::Malformed) };
                let (hi, n) = seq_hi(seq, esn);
                if !c.integ.verify(&[auth, hi.get(..n).unwrap_or(&[])], icv) {
                    return Err(OpenError::Auth);
                }
                c.decrypt(&iv, ct, pt).map_err(|_| OpenError::Malformed)?;
                Ok(pt)
            }
        }
    }
}
