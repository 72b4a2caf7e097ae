//! IKEv1 key material for pre-shared keys (RFC 2409 section 5, 5.4, 5.5, 5.7 and
//! Appendix B): SKEYID and its three derivatives, the cipher key (expanded from
//! SKEYID_e when the cipher needs more bits than the prf gives), HASH_I / HASH_R, the
//! CBC IVs of phase 1 and of each phase 2 or informational exchange, the Quick Mode
//! and Informational HASH payloads, Quick Mode KEYMAT with and without PFS, and the
//! NAT-D hashes of RFC 3947.
//!
//! The prf is the HMAC of the negotiated phase-1 hash (`PrfAlg` names both: the IVs use
//! the plain digest); it is `crate::crypto::prf_parts`, shared with IKEv2. All
//! secrets are `Zeroizing`; `Debug` prints lengths only.

use crate::crypto::{prf_parts, AesKey};
use crate::v1::message::BLOCK;
use ipsec_types::{EncrAlg, PrfAlg};
use std::fmt;
use zeroize::Zeroizing;

/// The phase-1 keys of one ISAKMP SA.
pub(crate) struct Phase1Keys {
    prf: PrfAlg,
    skeyid: Zeroizing<Vec<u8>>,
    /// Keys phase 2: Quick Mode KEYMAT.
    skeyid_d: Zeroizing<Vec<u8>>,
    /// Authenticates phase 2 and informational messages (their HASH payloads).
    skeyid_a: Zeroizing<Vec<u8>>,
    /// The encryption key of the ISAKMP SA, `encr.key_len()` octets.
    enc_key: Zeroizing<Vec<u8>>,
    encr: EncrAlg,
}

impl fmt::Debug for Phase1Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Phase1Keys")
            .field("prf", &self.prf)
            .field("encr", &self.encr)
            .field("skeyid_len", &self.skeyid.len())
            .finish_non_exhaustive()
    }
}

/// The cipher key from SKEYID_e (Appendix B): its first `len` octets if it is long
/// enough, otherwise the first `len` octets of K1 | K2 | ... with K1 = prf(SKEYID_e, 0)
/// (one zero octet) and Kn = prf(SKEYID_e, Kn-1).
fn expand_enc_key(prf: PrfAlg, skeyid_e: &[u8], len: usize) -> Zeroizing<Vec<u8>> {
    if skeyid_e.len() >= len {
        return Zeroizing::new(skeyid_e.get(..len).unwrap_or_default().to_vec());
    }
    let mut out = Zeroizing::new(Vec::with_capacity(len + prf.output_len()));
    let mut k = prf_parts(prf, skeyid_e, &[&[0]]);
    loop {
        out.extend_from_slice(&k);
        if out.len() >= len {
            break;
        }
        k = prf_parts(prf, skeyid_e, &[&k]);
    }
    out.truncate(len);
    out
}

impl Phase1Keys {
    /// RFC 2409 5: SKEYID = prf(PSK, Ni_b | Nr_b); SKEYID_d = prf(SKEYID, g^xy | CKY-I |
    /// CKY-R | 0); SKEYID_a = prf(SKEYID, SKEYID_d | g^xy | CKY-I | CKY-R | 1); SKEYID_e
    /// = prf(SKEYID, SKEYID_a | g^xy | CKY-I | CKY-R | 2); the cipher key from SKEYID_e
    /// (Appendix B). Ni_b and Nr_b are nonce payload bodies; g^xy as `KeyExchange` gives
    /// it (padded to the group's length).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn derive_psk(
        prf: PrfAlg,
        encr: EncrAlg,
        psk: &[u8],
        ni_b: &[u8],
        nr_b: &[u8],
        g_xy: &[u8],
        cky_i: u64,
        cky_r: u64,
    ) -> Self {
        let (ci, cr) = (cky_i.to_be_bytes(), cky_r.to_be_bytes());
        let skeyid = prf_parts(prf, psk, &[ni_b, nr_b]);
        let skeyid_d = prf_parts(prf, &skeyid, &[g_xy, &ci, &cr, &[0]]);
        let skeyid_a = prf_parts(prf, &skeyid, &[&skeyid_d, g_xy, &ci, &cr, &[1]]);
        let skeyid_e = prf_parts(prf, &skeyid, &[&skeyid_a, g_xy, &ci, &cr, &[2]]);
        let enc_key = expand_enc_key(prf, &skeyid_e, encr.key_len());
        Self { prf, skeyid, skeyid_d, skeyid_a, enc_key, encr }
    }

    /// The ISAKMP SA's cipher (both directions use the same key in IKEv1). `None` unless
    /// the algorithm is AES-CBC.
    pub(crate) fn cipher(&self) -> Option<AesKey> {
        AesKey::new(self.encr, &self.enc_key)
    }

    /// HASH_I = prf(SKEYID, g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b) (RFC 2409 5).
    /// `sai_b` is the body of the SA payload of the initiator's first message as sent,
    /// `idii_b` the body of the initiator's ID payload.
    pub(crate) fn hash_i(
        &self,
        g_xi: &[u8],
        g_xr: &[u8],
        cky_i: u64,
        cky_r: u64,
        sai_b: &[u8],
        idii_b: &[u8],
    ) -> Zeroizing<Vec<u8>> {
        let (ci, cr) = (cky_i.to_be_bytes(), cky_r.to_be_bytes());
        prf_parts(self.prf, &self.skeyid, &[g_xi, g_xr, &ci, &cr, sai_b, idii_b])
    }

    /// HASH_R = prf(SKEYID, g^xr | g^xi | CKY-R | CKY-I | SAi_b | IDir_b): the same
    /// arguments as [`hash_i`](Self::hash_i) (initiator's values first), the responder's
    /// ID body last.
    pub(crate) fn hash_r(
        &self,
        g_xi: &[u8],
        g_xr: &[u8],
        cky_i: u64,
        cky_r: u64,
        sai_b: &[u8],
        idir_b: &[u8],
    ) -> Zeroizing<Vec<u8>> {
        let (ci, cr) = (cky_i.to_be_bytes(), cky_r.to_be_bytes());
        prf_parts(self.prf, &self.skeyid, &[g_xr, g_xi, &cr, &ci, sai_b, idir_b])
    }

    /// Quick Mode HASH(1) = prf(SKEYID_a, M-ID | SA | Ni [| KE] [| IDci | IDcr]) (RFC 2409
    /// 5.5): `rest` is the message after the HASH payload (`Message::after(0)`).
    pub(crate) fn quick_hash1(&self, message_id: u32, rest: &[u8]) -> Zeroizing<Vec<u8>> {
        prf_parts(self.prf, &self.skeyid_a, &[&message_id.to_be_bytes(), rest])
    }

    /// Quick Mode HASH(2) = prf(SKEYID_a, M-ID | Ni_b | SA | Nr [| KE] [| IDci | IDcr]):
    /// the initiator's nonce body, then the responder's message after its HASH payload.
    pub(crate) fn quick_hash2(&self, message_id: u32, ni_b: &[u8], rest: &[u8]) -> Zeroizing<Vec<u8>> {
        prf_parts(self.prf, &self.skeyid_a, &[&message_id.to_be_bytes(), ni_b, rest])
    }

    /// Quick Mode HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b) (one zero octet first).
    pub(crate) fn quick_hash3(&self, message_id: u32, ni_b: &[u8], nr_b: &[u8]) -> Zeroizing<Vec<u8>> {
        prf_parts(self.prf, &self.skeyid_a, &[&[0], &message_id.to_be_bytes(), ni_b, nr_b])
    }

    /// The HASH of an Informational exchange (RFC 2409 5.7) = prf(SKEYID_a, M-ID | N/D):
    /// `rest` is the message after the HASH payload.
    pub(crate) fn informational_hash(&self, message_id: u32, rest: &[u8]) -> Zeroizing<Vec<u8>> {
        self.quick_hash1(message_id, rest)
    }

    /// Quick Mode KEYMAT for the SA whose SPI is `spi` (chosen by the SA's receiver),
    /// `len` octets (RFC 2409 5.5): K1 | K2 | ... with K1 = prf(SKEYID_d, [g(qm)^xy |]
    /// protocol | SPI | Ni_b | Nr_b) and Kn = prf(SKEYID_d, Kn-1 | [g(qm)^xy |] protocol |
    /// SPI | Ni_b | Nr_b); `g_qm` is the Quick Mode shared secret with PFS. The encryption
    /// key comes first, then the integrity key (as `ipsec_types::EspKey::from_keymat`
    /// takes them).
    pub(crate) fn quick_keymat(
        &self,
        g_qm: Option<&[u8]>,
        protocol: u8,
        spi: u32,
        ni_b: &[u8],
        nr_b: &[u8],
        len: usize,
    ) -> Zeroizing<Vec<u8>> {
        let g = g_qm.unwrap_or_default();
        let spi = spi.to_be_bytes();
        let mut out = Zeroizing::new(Vec::with_capacity(len + self.prf.output_len()));
        let mut k = Zeroizing::new(Vec::new());
        while out.len() < len {
            k = prf_parts(self.prf, &self.skeyid_d, &[&k, g, &[protocol], &spi, ni_b, nr_b]);
            out.extend_from_slice(&k);
        }
        out.truncate(len);
        out
    }
}

/// The plain digest of the phase-1 hash over the concatenation of `parts`.
fn digest(hash: PrfAlg, parts: &[&[u8]]) -> ring::digest::Digest {
    let alg = match hash {
        // OAKLEY hash SHA: still what the classic gateways' phase 1 names; only used to
        // derive IVs here, where collision resistance does not matter.
        PrfAlg::HmacSha1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        PrfAlg::HmacSha256 => &ring::digest::SHA256,
        PrfAlg::HmacSha384 => &ring::digest::SHA384,
        PrfAlg::HmacSha512 => &ring::digest::SHA512,
    };
    let mut ctx = ring::digest::Context::new(alg);
    for p in parts {
        ctx.update(p);
    }
    ctx.finish()
}

/// The first block of a digest (every hash here is longer than the AES block).
fn first_block(d: &ring::digest::Digest) -> [u8; BLOCK] {
    let mut iv = [0u8; BLOCK];
    if let Some(b) = d.as_ref().get(..BLOCK) {
        iv.copy_from_slice(b);
    }
    iv
}

/// The IV of the first encrypted phase-1 message (Main Mode message 5): hash(g^xi |
/// g^xr) cut to the block (RFC 2409 Appendix B). Later phase-1 messages chain: each
/// one's IV is the previous message's last ciphertext block.
pub(crate) fn phase1_iv(hash: PrfAlg, g_xi: &[u8], g_xr: &[u8]) -> [u8; BLOCK] {
    first_block(&digest(hash, &[g_xi, g_xr]))
}

/// The IV of the first message of a Quick Mode or Informational exchange with message
/// ID `message_id`: hash(last phase-1 CBC output block | M-ID) cut to the block. The
/// exchange's later messages chain from there; each exchange has its own chain.
pub(crate) fn phase2_iv(hash: PrfAlg, last_phase1_block: &[u8; BLOCK], message_id: u32) -> [u8; BLOCK] {
    first_block(&digest(hash, &[last_phase1_block, &message_id.to_be_bytes()]))
}

/// A NAT-D hash (RFC 3947 3.2): hash(CKY-I | CKY-R | IP | Port) with the phase-1
/// hash, for one address as this side sees it on the wire.
pub(crate) fn nat_d(hash: PrfAlg, cky_i: u64, cky_r: u64, addr: std::net::SocketAddr) -> Vec<u8> {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(a) => a.octets().to_vec(),
        std::net::IpAddr::V6(a) => a.octets().to_vec(),
    };
    digest(hash, &[&cky_i.to_be_bytes(), &cky_r.to_be_bytes(), &ip, &addr.port().to_be_bytes()]).as_ref().to_vec()
}

#[cfg(test)]
mod tests;
