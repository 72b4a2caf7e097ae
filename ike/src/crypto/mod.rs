//! IKEv2 cryptography: PRFs, prf+, key derivation (RFC 7296 sections 2.13, 2.14, 2.17,
//! 2.18), PSK authentication data (2.15), key exchange (X25519 per RFC 8031, ECP-256 per
//! RFC 5903, MODP per RFC 3526) and the SK payload cipher (AES-GCM per RFC 5282,
//! ChaCha20-Poly1305 per RFC 7634, AES-CBC with HMAC-SHA1/SHA2 per RFC 7296 3.14).
//!
//! Owns: every cryptographic primitive the IKE state machine uses, and the layout of the
//! derived key material. Does not own: message parsing, nonce/SPI/IV generation (the
//! caller supplies randomness through [`Rng`](crate::Rng)), or the ESP datapath cipher.
//!
//! All secrets are held in `Zeroizing` buffers or types that zeroize on drop. No type here
//! prints secret material through `Debug`. Randomness comes from the caller.
//! Limitation: ring's HMAC and AES key schedules are opaque and ring does not zeroize them;
//! HMAC keys live only for the duration of one `prf`/`prf_plus` call.

mod kex;
mod modp;
mod sk_cipher;

pub use kex::KeyExchange;
pub(crate) use sk_cipher::AesKey;
pub use sk_cipher::{SkCipher, MAX_ICV_LEN, MAX_IV_LEN};

use ipsec_types::{EncrAlg, IntegAlg, PrfAlg};
use ring::hmac;
use std::fmt;
use subtle::ConstantTimeEq;
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

/// Length of the salt appended to every AES-GCM key (RFC 5282 section 7.1, RFC 4106 section 8.1).
pub const GCM_SALT_LEN: usize = 4;
/// Length of the explicit IV carried in each AES-GCM SK payload / ESP packet.
pub const GCM_IV_LEN: usize = 8;
/// Length of the AES-GCM-16 ICV.
pub const GCM_ICV_LEN: usize = 16;

fn hmac_alg(alg: PrfAlg) -> hmac::Algorithm {
    match alg {
        // PRF_HMAC_SHA1 (RFC 2104 with SHA-1): still what many peers' phase 1 defaults
        // name. Only used as a PRF (collision resistance does not matter for HMAC).
        PrfAlg::HmacSha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        PrfAlg::HmacSha256 => hmac::HMAC_SHA256,
        PrfAlg::HmacSha384 => hmac::HMAC_SHA384,
        PrfAlg::HmacSha512 => hmac::HMAC_SHA512,
    }
}

/// prf over the concatenation of `parts`, without building the concatenation.
pub(crate) fn prf_parts(alg: PrfAlg, key: &[u8], parts: &[&[u8]]) -> Zeroizing<Vec<u8>> {
    let key = hmac::Key::new(hmac_alg(alg), key);
    let mut ctx = hmac::Context::with_key(&key);
    for part in parts {
        ctx.update(part);
    }
    Zeroizing::new(ctx.sign().as_ref().to_vec())
}

/// prf(key, data).
pub fn prf(alg: PrfAlg, key: &[u8], data: &[u8]) -> Zeroizing<Vec<u8>> {
    prf_parts(alg, key, &[data])
}

/// The most prf+ can produce: the one-octet counter limits it to 255 blocks.
pub fn prf_plus_max_len(alg: PrfAlg) -> usize {
    255 * alg.output_len()
}

/// prf+(key, seed) truncated to `len` bytes (RFC 7296 section 2.13).
///
/// T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n). prf+ is undefined past 255 blocks;
/// a larger `len` is clamped to [`prf_plus_max_len`] (no IKE key layout comes near it:
/// the largest one here needs 4 blocks).
pub fn prf_plus(alg: PrfAlg, key: &[u8], seed: &[u8], len: usize) -> Zeroizing<Vec<u8>> {
    let len = len.min(prf_plus_max_len(alg));
    let hkey = hmac::Key::new(hmac_alg(alg), key);
    let mut out = Zeroizing::new(Vec::with_capacity(len));
    let mut prev = Zeroizing::new(Vec::new());
    let mut counter: u8 = 1;
    while out.len() < len {
        let mut ctx = hmac::Context::with_key(&hkey);
        ctx.update(&prev);
        ctx.update(seed);
        ctx.update(&[counter]);
        let tag = ctx.sign();
        let block = tag.as_ref();
        let take = block.len().min(len - out.len());
        out.extend_from_slice(block.get(..take).unwrap_or_default());
        prev.clear();
        prev.extend_from_slice(block);
        counter = counter.wrapping_add(1);
    }
    out
}

/// Splits `keymat` into consecutive pieces of the given lengths (short pieces if it runs out).
fn split_keymat<const N: usize>(keymat: &[u8], lens: [usize; N]) -> [Zeroizing<Vec<u8>>; N] {
    let mut rest = keymat;
    lens.map(|n| {
        let (piece, tail) = rest.split_at(n.min(rest.len()));
        rest = tail;
        Zeroizing::new(piece.to_vec())
    })
}

/// The IKE SA keys. Encryption keys of the AEADs include the 4-byte salt; SK_ai and
/// SK_ar are empty with an AEAD (RFC 5282 section 7.1).
pub struct IkeKeys {
    /// SK_d, for CHILD_SA keys and IKE rekey.
    pub sk_d: Zeroizing<Vec<u8>>,
    /// SK_ai: the initiator's integrity key (empty with an AEAD).
    pub sk_ai: Zeroizing<Vec<u8>>,
    /// SK_ar: the responder's integrity key (empty with an AEAD).
    pub sk_ar: Zeroizing<Vec<u8>>,
    /// SK_ei: key (|| salt for the AEADs).
    pub sk_ei: Zeroizing<Vec<u8>>,
    /// SK_er: key (|| salt for the AEADs).
    pub sk_er: Zeroizing<Vec<u8>>,
    /// SK_pi.
    pub sk_pi: Zeroizing<Vec<u8>>,
    /// SK_pr.
    pub sk_pr: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for IkeKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Lengths only: the key bytes never leave this type through Debug.
        f.debug_struct("IkeKeys")
            .field("sk_d_len", &self.sk_d.len())
            .field("sk_a_len", &self.sk_ai.len())
            .field("sk_e_len", &self.sk_ei.len())
            .field("sk_p_len", &self.sk_pi.len())
            .finish_non_exhaustive()
    }
}

impl IkeKeys {
    /// The SK payload ciphers of our role: (seal, open). The initiator seals with
    /// SK_ei/SK_ai and opens with SK_er/SK_ar; the responder the other way round. `None`
    /// if the keys do not fit the algorithms.
    pub fn ciphers(&self, encr: EncrAlg, integ: Option<IntegAlg>, initiator: bool) -> Option<(SkCipher, SkCipher)> {
        let i = SkCipher::new(encr, integ, &self.sk_ei, &self.sk_ai)?;
        let r = SkCipher::new(encr, integ, &self.sk_er, &self.sk_ar)?;
        Some(if initiator { (i, r) } else { (r, i) })
    }
}

/// {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr).
#[allow(clippy::too_many_arguments)]
fn expand_ike_keys(
    prf: PrfAlg,
    encr: EncrAlg,
    integ: Option<IntegAlg>,
    skeyseed: &[u8],
    ni: &[u8],
    nr: &[u8],
    spi_i: u64,
    spi_r: u64,
) -> IkeKeys {
    let mut seed = Zeroizing::new(Vec::with_capacity(ni.len() + nr.len() + 16));
    seed.extend_from_slice(ni);
    seed.extend_from_slice(nr);
    seed.extend_from_slice(&spi_i.to_be_bytes());
    seed.extend_from_slice(&spi_r.to_be_bytes());
    let p = prf.output_len();
    // SK_e: the cipher key, then the salt of the AEADs (RFC 5282 7.1, RFC 7634 3).
    let e = encr.keymat_len();
    // SK_a: the integrity key, as long as the HMAC's output (RFC 2404, RFC 4868 2.1.1);
    // none with an AEAD cipher (RFC 5282 section 7.1).
    let a = integ.map_or(0, IntegAlg::key_len);
    let keymat = prf_plus(prf, skeyseed, &seed, 3 * p + 2 * a + 2 * e);
    let [sk_d, sk_ai, sk_ar, sk_ei, sk_er, sk_pi, sk_pr] = split_keymat(&keymat, [p, a, a, e, e, p, p]);
    IkeKeys { sk_d, sk_ai, sk_ar, sk_ei, sk_er, sk_pi, sk_pr }
}

/// SKEYSEED = prf(Ni | Nr, g^ir); {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}
/// = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr). (RFC 7296 section 2.14; `integ` is `None`
/// with an AEAD cipher, which has no SK_a.)
#[allow(clippy::too_many_arguments)]
pub fn derive_ike_keys(
    prf: PrfAlg,
    encr: EncrAlg,
    integ: Option<IntegAlg>,
    shared_secret: &[u8],
    ni: &[u8],
    nr: &[u8],
    spi_i: u64,
    spi_r: u64,
) -> IkeKeys {
    // For HMAC PRFs the key is all of Ni | Nr (the halving rule of 2.14 is for fixed-key PRFs).
    let mut nonces = Zeroizing::new(Vec::with_capacity(ni.len() + nr.len()));
    nonces.extend_from_slice(ni);
    nonces.extend_from_slice(nr);
    let skeyseed = prf_parts(prf, &nonces, &[shared_secret]);
    expand_ike_keys(prf, encr, integ, &skeyseed, ni, nr, spi_i, spi_r)
}

/// For an IKE SA rekey (section 2.18): SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr).
///
/// The rekeying exchange belongs to the old IKE SA, so SKEYSEED is computed with the old
/// SA's PRF (`old_prf`); prf+ and the key lengths use the new SA's PRF (`new_prf`). Pass
/// the same PRF twice when the new SA kept it. The SPIs are the new SA's.
#[allow(clippy::too_many_arguments)]
pub fn derive_rekeyed_ike_keys(
    old_prf: PrfAlg,
    new_prf: PrfAlg,
    old_sk_d: &[u8],
    encr: EncrAlg,
    integ: Option<IntegAlg>,
    shared_secret: &[u8],
    ni: &[u8],
    nr: &[u8],
    spi_i: u64,
    spi_r: u64,
) -> IkeKeys {
    let skeyseed = prf_parts(old_prf, old_sk_d, &[shared_secret, ni, nr]);
    expand_ike_keys(new_prf, encr, integ, &skeyseed, ni, nr, spi_i, spi_r)
}

/// CHILD_SA KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr) (section 2.17), split into
/// (initiator-to-responder, responder-to-initiator): each the encryption key (with the
/// 4-byte salt of the AEADs), then the integrity key (AES-CBC), as
/// `ipsec_types::EspKey::from_keymat` takes them. Empty if the pair is not valid (an
/// AEAD with an integrity algorithm, AES-CBC without).
pub fn derive_child_keys(
    prf: PrfAlg,
    sk_d: &[u8],
    encr: EncrAlg,
    integ: Option<IntegAlg>,
    shared_secret: Option<&[u8]>,
    ni: &[u8],
    nr: &[u8],
) -> (Zeroizing<Vec<u8>>, Zeroizing<Vec<u8>>) {
    let g_ir = shared_secret.unwrap_or_default();
    let mut seed = Zeroizing::new(Vec::with_capacity(g_ir.len() + ni.len() + nr.len()));
    seed.extend_from_slice(g_ir);
    seed.extend_from_slice(ni);
    seed.extend_from_slice(nr);
    let e = ipsec_types::EspKey::keymat_len(encr, integ).unwrap_or(0);
    let keymat = prf_plus(prf, sk_d, &seed, 2 * e);
    let [i_to_r, r_to_i] = split_keymat(&keymat, [e, e]);
    (i_to_r, r_to_i)
}

/// The key pad of RFC 7296 section 2.15.
const KEY_PAD: &[u8] = b"Key Pad for IKEv2";

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
    SignedOctets::new(prf, psk, real_message).auth(peer_nonce, sk_p, id_payload_body)
}

/// The PSK AUTH computation with its RealMessage (an IKE_SA_INIT message) already
/// absorbed: what an IKE SA keeps of an IKE_SA_INIT message instead of the message, so a
/// half-open SA holds a fixed-size MAC state, not the peer's datagram.
#[derive(Clone)]
pub struct SignedOctets {
    prf: PrfAlg,
    mac: hmac::Context,
}

impl SignedOctets {
    /// prf(prf(`psk`, "Key Pad for IKEv2"), `real_message` | ...), to be finished by `auth`.
    pub fn new(prf: PrfAlg, psk: &[u8], real_message: &[u8]) -> Self {
        let padded_key = prf_parts(prf, psk, &[KEY_PAD]);
        let mut mac = hmac::Context::with_key(&hmac::Key::new(hmac_alg(prf), &padded_key));
        mac.update(real_message);
        Self { prf, mac }
    }

    /// The AUTH value for the other side's nonce, SK_p and the ID payload body.
    pub fn auth(&self, peer_nonce: &[u8], sk_p: &[u8], id_payload_body: &[u8]) -> Zeroizing<Vec<u8>> {
        let maced_id = prf_parts(self.prf, sk_p, &[id_payload_body]);
        let mut mac = self.mac.clone();
        mac.update(peer_nonce);
        mac.update(&maced_id);
        Zeroizing::new(mac.sign().as_ref().to_vec())
    }
}

impl std::fmt::Debug for SignedOctets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SignedOctets({:?}, <redacted>)", self.prf)
    }
}

/// SHA-256 of `data`: how a responder recognises a retransmitted IKE_SA_INIT request
/// (or IKEv1 message) without keeping it.
pub fn digest(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Constant-time comparison of two byte strings (AUTH values). The lengths are not
/// secret: strings of different length compare unequal at once.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests;
