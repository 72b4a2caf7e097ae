//! Algorithms this gateway negotiates, with their IANA numbers (RFC 7296 section 3.3.2)
//! and swanctl-style proposal keywords (`aes256gcm16-prfsha256-x25519`).

use std::fmt;

/// Encryption transforms (type 1): the AEADs AES-GCM-16 (RFC 4106, RFC 5282) and
/// ChaCha20-Poly1305 (RFC 7634), and AES-CBC (RFC 3602), which needs an integrity
/// algorithm ([`IntegAlg`]) beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum EncrAlg {
    /// ENCR_AES_GCM_16 with a 128-bit key.
    AesGcm16_128,
    /// ENCR_AES_GCM_16 with a 256-bit key.
    AesGcm16_256,
    /// ENCR_AES_CBC with a 128-bit key.
    AesCbc128,
    /// ENCR_AES_CBC with a 192-bit key.
    AesCbc192,
    /// ENCR_AES_CBC with a 256-bit key.
    AesCbc256,
    /// ENCR_CHACHA20_POLY1305 (256-bit key, no Key Length attribute).
    ChaCha20Poly1305,
}

impl EncrAlg {
    /// IANA transform ID of ENCR_AES_GCM_16.
    pub const AES_GCM_16_ID: u16 = 20;
    /// IANA transform ID of ENCR_AES_CBC.
    pub const AES_CBC_ID: u16 = 12;
    /// IANA transform ID of ENCR_CHACHA20_POLY1305.
    pub const CHACHA20_POLY1305_ID: u16 = 28;
    /// Every encryption algorithm, AEADs first.
    pub const ALL: [Self; 6] = [
        Self::AesGcm16_128,
        Self::AesGcm16_256,
        Self::ChaCha20Poly1305,
        Self::AesCbc128,
        Self::AesCbc192,
        Self::AesCbc256,
    ];
    /// Transform ID (type 1).
    pub fn transform_id(self) -> u16 {
        match self {
            Self::AesGcm16_128 | Self::AesGcm16_256 => Self::AES_GCM_16_ID,
            Self::AesCbc128 | Self::AesCbc192 | Self::AesCbc256 => Self::AES_CBC_ID,
            Self::ChaCha20Poly1305 => Self::CHACHA20_POLY1305_ID,
        }
    }
    /// Cipher key length in bits.
    pub fn key_bits(self) -> u16 {
        match self {
            Self::AesGcm16_128 | Self::AesCbc128 => 128,
            Self::AesCbc192 => 192,
            Self::AesGcm16_256 | Self::AesCbc256 | Self::ChaCha20Poly1305 => 256,
        }
    }
    /// The Key Length attribute a transform of this algorithm carries (RFC 7296
    /// 3.3.5): the key bits for AES, none for ChaCha20-Poly1305 (RFC 7634 section 4).
    pub fn key_length_attr(self) -> Option<u16> {
        match self {
            Self::ChaCha20Poly1305 => None,
            _ => Some(self.key_bits()),
        }
    }
    /// Cipher key length in bytes (without any salt).
    pub fn key_len(self) -> usize {
        usize::from(self.key_bits() / 8)
    }
    /// Length of the salt taken from KEYMAT after the key: 4 for the AEADs (RFC 4106
    /// section 8.1, RFC 7634 section 2), 0 for AES-CBC.
    pub fn salt_len(self) -> usize {
        if self.is_aead() {
            4
        } else {
            0
        }
    }
    /// Length of the encryption part of KEYMAT: key then salt.
    pub fn keymat_len(self) -> usize {
        self.key_len() + self.salt_len()
    }
    /// An AEAD (integrity included; no integrity transform, RFC 7296 3.3).
    pub fn is_aead(self) -> bool {
        !matches!(self, Self::AesCbc128 | Self::AesCbc192 | Self::AesCbc256)
    }
    /// From transform ID and key-length attribute.
    pub fn from_iana(id: u16, key_bits: Option<u16>) -> Option<Self> {
        match (id, key_bits) {
            (Self::AES_GCM_16_ID, Some(128)) => Some(Self::AesGcm16_128),
            (Self::AES_GCM_16_ID, Some(256)) => Some(Self::AesGcm16_256),
            (Self::AES_CBC_ID, Some(128)) => Some(Self::AesCbc128),
            (Self::AES_CBC_ID, Some(192)) => Some(Self::AesCbc192),
            (Self::AES_CBC_ID, Some(256)) => Some(Self::AesCbc256),
            (Self::CHACHA20_POLY1305_ID, None) => Some(Self::ChaCha20Poly1305),
            _ => None,
        }
    }
    /// swanctl keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Self::AesGcm16_128 => "aes128gcm16",
            Self::AesGcm16_256 => "aes256gcm16",
            Self::AesCbc128 => "aes128",
            Self::AesCbc192 => "aes192",
            Self::AesCbc256 => "aes256",
            Self::ChaCha20Poly1305 => "chacha20poly1305",
        }
    }
    fn from_keyword(s: &str) -> Option<Self> {
        // strongSwan's spellings: `aes` alone is AES-CBC-128.
        match s {
            "aes128gcm16" | "aes128gcm128" => Some(Self::AesGcm16_128),
            "aes256gcm16" | "aes256gcm128" => Some(Self::AesGcm16_256),
            "aes" | "aes128" | "aes128cbc" => Some(Self::AesCbc128),
            "aes192" | "aes192cbc" => Some(Self::AesCbc192),
            "aes256" | "aes256cbc" => Some(Self::AesCbc256),
            "chacha20poly1305" => Some(Self::ChaCha20Poly1305),
            _ => None,
        }
    }
}

impl fmt::Display for EncrAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AesGcm16_128 => f.write_str("AES_GCM_16-128"),
            Self::AesGcm16_256 => f.write_str("AES_GCM_16-256"),
            Self::AesCbc128 => f.write_str("AES_CBC-128"),
            Self::AesCbc192 => f.write_str("AES_CBC-192"),
            Self::AesCbc256 => f.write_str("AES_CBC-256"),
            Self::ChaCha20Poly1305 => f.write_str("CHACHA20_POLY1305"),
        }
    }
}

/// Integrity algorithms (transform type 3) for AES-CBC, in ESP and in the IKE SA's SK
/// payload: HMAC-SHA1-96 (RFC 2404) and HMAC-SHA2 truncated to half the hash (RFC 4868).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum IntegAlg {
    /// AUTH_HMAC_SHA1_96 (2).
    HmacSha1_96,
    /// AUTH_HMAC_SHA2_256_128 (12).
    HmacSha256_128,
    /// AUTH_HMAC_SHA2_384_192 (13).
    HmacSha384_192,
    /// AUTH_HMAC_SHA2_512_256 (14).
    HmacSha512_256,
}

impl IntegAlg {
    /// Every integrity algorithm.
    pub const ALL: [Self; 4] = [Self::HmacSha1_96, Self::HmacSha256_128, Self::HmacSha384_192, Self::HmacSha512_256];
    /// Transform ID (type 3).
    pub fn transform_id(self) -> u16 {
        match self {
            Self::HmacSha1_96 => 2,
            Self::HmacSha256_128 => 12,
            Self::HmacSha384_192 => 13,
            Self::HmacSha512_256 => 14,
        }
    }
    /// From transform ID.
    pub fn from_iana(id: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.transform_id() == id)
    }
    /// Key length in bytes: the hash output length (RFC 2404 section 3, RFC 4868 2.1.1).
    pub fn key_len(self) -> usize {
        match self {
            Self::HmacSha1_96 => 20,
            Self::HmacSha256_128 => 32,
            Self::HmacSha384_192 => 48,
            Self::HmacSha512_256 => 64,
        }
    }
    /// Length of the truncated ICV in bytes.
    pub fn icv_len(self) -> usize {
        match self {
            Self::HmacSha1_96 => 12,
            Self::HmacSha256_128 => 16,
            Self::HmacSha384_192 => 24,
            Self::HmacSha512_256 => 32,
        }
    }
    /// swanctl keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Self::HmacSha1_96 => "sha1",
            Self::HmacSha256_128 => "sha256",
            Self::HmacSha384_192 => "sha384",
            Self::HmacSha512_256 => "sha512",
        }
    }
    fn from_keyword(s: &str) -> Option<Self> {
        // strongSwan's spellings: `sha` is SHA1, `sha2_256` etc. the SHA2 ones.
        match s {
            "sha" | "sha1" => Some(Self::HmacSha1_96),
            "sha256" | "sha2_256" => Some(Self::HmacSha256_128),
            "sha384" | "sha2_384" => Some(Self::HmacSha384_192),
            "sha512" | "sha2_512" => Some(Self::HmacSha512_256),
            _ => None,
        }
    }
    /// The PRF an IKE proposal takes when it names this integrity algorithm and no PRF
    /// (strongSwan's rule): the HMAC with the same hash.
    pub fn prf(self) -> PrfAlg {
        match self {
            Self::HmacSha1_96 => PrfAlg::HmacSha1,
            Self::HmacSha256_128 => PrfAlg::HmacSha256,
            Self::HmacSha384_192 => PrfAlg::HmacSha384,
            Self::HmacSha512_256 => PrfAlg::HmacSha512,
        }
    }
}

impl fmt::Display for IntegAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::HmacSha1_96 => "HMAC_SHA1_96",
            Self::HmacSha256_128 => "HMAC_SHA2_256_128",
            Self::HmacSha384_192 => "HMAC_SHA2_384_192",
            Self::HmacSha512_256 => "HMAC_SHA2_512_256",
        })
    }
}

/// Pseudo-random functions (transform type 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum PrfAlg {
    /// PRF_HMAC_SHA1 (2), RFC 2104 with SHA-1.
    HmacSha1,
    /// PRF_HMAC_SHA2_256 (5).
    HmacSha256,
    /// PRF_HMAC_SHA2_384 (6).
    HmacSha384,
    /// PRF_HMAC_SHA2_512 (7).
    HmacSha512,
}

impl PrfAlg {
    /// Every PRF.
    pub const ALL: [Self; 4] = [Self::HmacSha1, Self::HmacSha256, Self::HmacSha384, Self::HmacSha512];
    /// Transform ID.
    pub fn transform_id(self) -> u16 {
        match self {
            Self::HmacSha1 => 2,
            Self::HmacSha256 => 5,
            Self::HmacSha384 => 6,
            Self::HmacSha512 => 7,
        }
    }
    /// From transform ID.
    pub fn from_iana(id: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.transform_id() == id)
    }
    /// Output (and preferred key) length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Self::HmacSha1 => 20,
            Self::HmacSha256 => 32,
            Self::HmacSha384 => 48,
            Self::HmacSha512 => 64,
        }
    }
    /// swanctl keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Self::HmacSha1 => "prfsha1",
            Self::HmacSha256 => "prfsha256",
            Self::HmacSha384 => "prfsha384",
            Self::HmacSha512 => "prfsha512",
        }
    }
    fn from_keyword(s: &str) -> Option<Self> {
        match s {
            "prfsha1" => Some(Self::HmacSha1),
            "prfsha256" => Some(Self::HmacSha256),
            "prfsha384" => Some(Self::HmacSha384),
            "prfsha512" => Some(Self::HmacSha512),
            _ => None,
        }
    }
}

impl fmt::Display for PrfAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HmacSha1 => f.write_str("PRF_HMAC_SHA1"),
            Self::HmacSha256 => f.write_str("PRF_HMAC_SHA2_256"),
            Self::HmacSha384 => f.write_str("PRF_HMAC_SHA2_384"),
            Self::HmacSha512 => f.write_str("PRF_HMAC_SHA2_512"),
        }
    }
}

/// Key exchange methods (transform type 4).
///
/// MODP 768/1024/1536 (groups 1, 2, 5) are legacy: weak, kept only to reach old peers.
/// They are negotiated only when a proposal names them (no default contains them); see
/// [`DhGroup::is_legacy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum DhGroup {
    /// 768-bit MODP group (1), RFC 2409 (legacy).
    Modp768,
    /// 1024-bit MODP group (2), RFC 2409 (legacy).
    Modp1024,
    /// 1536-bit MODP group (5), RFC 3526 (legacy).
    Modp1536,
    /// 2048-bit MODP group (14), RFC 3526.
    Modp2048,
    /// 3072-bit MODP group (15), RFC 3526.
    Modp3072,
    /// 4096-bit MODP group (16), RFC 3526.
    Modp4096,
    /// 256-bit random ECP group (19), RFC 5903.
    Ecp256,
    /// 384-bit random ECP group (20), RFC 5903.
    Ecp384,
    /// 521-bit random ECP group (21), RFC 5903.
    Ecp521,
    /// Curve25519 (31), RFC 8031.
    Curve25519,
}

impl DhGroup {
    /// Every group, in IANA order.
    pub const ALL: [Self; 10] = [
        Self::Modp768,
        Self::Modp1024,
        Self::Modp1536,
        Self::Modp2048,
        Self::Modp3072,
        Self::Modp4096,
        Self::Ecp256,
        Self::Ecp384,
        Self::Ecp521,
        Self::Curve25519,
    ];
    /// Transform ID / group number.
    pub fn transform_id(self) -> u16 {
        match self {
            Self::Modp768 => 1,
            Self::Modp1024 => 2,
            Self::Modp1536 => 5,
            Self::Modp2048 => 14,
            Self::Modp3072 => 15,
            Self::Modp4096 => 16,
            Self::Ecp256 => 19,
            Self::Ecp384 => 20,
            Self::Ecp521 => 21,
            Self::Curve25519 => 31,
        }
    }
    /// From group number.
    pub fn from_iana(id: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.transform_id() == id)
    }
    /// Length of the KE payload's key exchange data: the prime's length for MODP (the
    /// value zero-padded on the left), x || y for ECP (RFC 5903 section 7), 32 for X25519.
    pub fn public_len(self) -> usize {
        match self {
            Self::Modp768 => 96,
            Self::Modp1024 => 128,
            Self::Modp1536 => 192,
            Self::Modp2048 => 256,
            Self::Modp3072 => 384,
            Self::Modp4096 => 512,
            Self::Ecp256 => 64,
            Self::Ecp384 => 96,
            Self::Ecp521 => 132,
            Self::Curve25519 => 32,
        }
    }
    /// Length of the shared secret g^ir: the prime's length for MODP, the x coordinate
    /// for ECP, 32 for X25519.
    pub fn shared_len(self) -> usize {
        match self {
            Self::Ecp256 | Self::Ecp384 | Self::Ecp521 => self.public_len() / 2,
            _ => self.public_len(),
        }
    }
    /// Whether the group is a legacy one (MODP 768, 1024, 1536: below 112-bit strength),
    /// accepted only when a proposal names it, and worth a warning when one does.
    pub fn is_legacy(self) -> bool {
        matches!(self, Self::Modp768 | Self::Modp1024 | Self::Modp1536)
    }
    /// swanctl keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Self::Modp768 => "modp768",
            Self::Modp1024 => "modp1024",
            Self::Modp1536 => "modp1536",
            Self::Modp2048 => "modp2048",
            Self::Modp3072 => "modp3072",
            Self::Modp4096 => "modp4096",
            Self::Ecp256 => "ecp256",
            Self::Ecp384 => "ecp384",
            Self::Ecp521 => "ecp521",
            Self::Curve25519 => "x25519",
        }
    }
    fn from_keyword(s: &str) -> Option<Self> {
        match s {
            "curve25519" => Some(Self::Curve25519),
            _ => Self::ALL.into_iter().find(|g| g.keyword() == s),
        }
    }
}

impl fmt::Display for DhGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Modp768 => "MODP_768",
            Self::Modp1024 => "MODP_1024",
            Self::Modp1536 => "MODP_1536",
            Self::Modp2048 => "MODP_2048",
            Self::Modp3072 => "MODP_3072",
            Self::Modp4096 => "MODP_4096",
            Self::Ecp256 => "ECP_256",
            Self::Ecp384 => "ECP_384",
            Self::Ecp521 => "ECP_521",
            Self::Curve25519 => "CURVE_25519",
        })
    }
}

/// One IKE proposal: any of the listed algorithms of each type may be chosen.
///
/// Either every encryption algorithm is an AEAD and `integ` is empty, or none is and
/// `integ` names at least one integrity algorithm ([`IkeProposal::parse`] checks).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IkeProposal {
    /// Encryption algorithms, in preference order.
    pub encr: Vec<EncrAlg>,
    /// Integrity algorithms of the SK payload, in preference order (empty with AEADs).
    #[serde(default)]
    pub integ: Vec<IntegAlg>,
    /// PRFs, in preference order.
    pub prf: Vec<PrfAlg>,
    /// Key exchange groups, in preference order.
    pub dh: Vec<DhGroup>,
}

/// One ESP proposal. A non-empty `dh` asks for PFS on CREATE_CHILD_SA.
///
/// Either every encryption algorithm is an AEAD and `integ` is empty, or none is and
/// `integ` names at least one integrity algorithm ([`EspProposal::parse`] checks).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EspProposal {
    /// Encryption algorithms, in preference order.
    pub encr: Vec<EncrAlg>,
    /// Integrity algorithms, in preference order (empty with AEADs).
    #[serde(default)]
    pub integ: Vec<IntegAlg>,
    /// PFS groups, in preference order (empty: no PFS).
    pub dh: Vec<DhGroup>,
    /// Extended sequence numbers offered.
    pub esn: bool,
}

fn split_keywords(s: &str) -> impl Iterator<Item = &str> {
    s.split('-').map(str::trim)
}

fn unknown(kw: &str, s: &str) -> String {
    format!("unknown proposal keyword {kw:?} in {s:?}")
}

/// strongSwan's cipher rules for an IKE or ESP proposal (`kind`) written as `s`: at least
/// one encryption algorithm; AES-CBC with at least one integrity algorithm, the AEADs
/// with none, the two kinds not mixed.
fn check_ciphers(kind: &str, s: &str, encr: &[EncrAlg], integ: &[IntegAlg]) -> Result<(), String> {
    if encr.is_empty() {
        return Err(format!("{kind} proposal {s:?} names no encryption algorithm (e.g. aes256gcm16)"));
    }
    let aeads = encr.iter().filter(|e| e.is_aead()).count();
    if aeads != 0 && aeads != encr.len() {
        return Err(format!("{kind} proposal {s:?} mixes AEAD and non-AEAD ciphers; write one proposal for each"));
    }
    if aeads == 0 && integ.is_empty() {
        return Err(format!("{kind} proposal {s:?} names AES-CBC but no integrity algorithm (e.g. sha256)"));
    }
    if aeads != 0 && !integ.is_empty() {
        return Err(format!("{kind} proposal {s:?} names an integrity algorithm with an AEAD cipher"));
    }
    Ok(())
}

impl IkeProposal {
    /// Parses a swanctl-style IKE proposal, e.g. `aes256gcm16-prfsha256-x25519`,
    /// `aes128-sha1-modp1024` or `aes256-sha256-prfsha384-ecp384`.
    ///
    /// strongSwan's rules: an encryption algorithm and a key exchange group are
    /// mandatory; AES-CBC needs at least one integrity algorithm, the AEADs take none,
    /// and the two kinds are not mixed in one proposal; a proposal that names no PRF
    /// takes the PRFs of its integrity algorithms (`sha1` gives `prfsha1`, `sha256`
    /// `prfsha256`, ...), so an AEAD proposal must name its PRF.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut p = Self { encr: vec![], integ: vec![], prf: vec![], dh: vec![] };
        for kw in split_keywords(s) {
            if let Some(e) = EncrAlg::from_keyword(kw) {
                p.encr.push(e);
            } else if let Some(i) = IntegAlg::from_keyword(kw) {
                p.integ.push(i);
            } else if let Some(f) = PrfAlg::from_keyword(kw) {
                p.prf.push(f);
            } else if let Some(g) = DhGroup::from_keyword(kw) {
                p.dh.push(g);
            } else {
                return Err(unknown(kw, s));
            }
        }
        check_ciphers("IKE", s, &p.encr, &p.integ)?;
        if p.prf.is_empty() {
            for i in &p.integ {
                if !p.prf.contains(&i.prf()) {
                    p.prf.push(i.prf());
                }
            }
        }
        if p.prf.is_empty() {
            return Err(format!("IKE proposal {s:?} names no PRF (e.g. prfsha256; AEAD proposals must name one)"));
        }
        if p.dh.is_empty() {
            return Err(format!("IKE proposal {s:?} names no key exchange group (e.g. x25519)"));
        }
        Ok(p)
    }
}

impl fmt::Display for IkeProposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<&str> = self
            .encr
            .iter()
            .map(|e| e.keyword())
            .chain(self.integ.iter().map(|i| i.keyword()))
            .chain(self.prf.iter().map(|p| p.keyword()))
            .chain(self.dh.iter().map(|d| d.keyword()))
            .collect();
        f.write_str(&parts.join("-"))
    }
}

impl EspProposal {
    /// Parses a swanctl-style ESP proposal, e.g. `aes256gcm16`, `aes256gcm16-x25519-esn`
    /// or `aes128-sha1-modp...`. AES-CBC needs at least one integrity keyword; the
    /// AEADs take none, and the two kinds are not mixed in one proposal (write two).
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut p = Self { encr: vec![], integ: vec![], dh: vec![], esn: false };
        for kw in split_keywords(s) {
            if let Some(e) = EncrAlg::from_keyword(kw) {
                p.encr.push(e);
            } else if let Some(i) = IntegAlg::from_keyword(kw) {
                p.integ.push(i);
            } else if let Some(g) = DhGroup::from_keyword(kw) {
                p.dh.push(g);
            } else if kw == "esn" {
                p.esn = true;
            } else if kw == "noesn" {
                p.esn = false;
            } else {
                return Err(unknown(kw, s));
            }
        }
        check_ciphers("ESP", s, &p.encr, &p.integ)?;
        Ok(p)
    }
}

impl fmt::Display for EspProposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<&str> = self
            .encr
            .iter()
            .map(|e| e.keyword())
            .chain(self.integ.iter().map(|i| i.keyword()))
            .chain(self.dh.iter().map(|d| d.keyword()))
            .collect();
        if self.esn {
            parts.push("esn");
        }
        f.write_str(&parts.join("-"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_swanctl_strings() {
        let p = IkeProposal::parse("aes256gcm16-prfsha256-x25519").unwrap();
        assert_eq!(p.encr, vec![EncrAlg::AesGcm16_256]);
        assert_eq!(p.prf, vec![PrfAlg::HmacSha256]);
        assert_eq!(p.dh, vec![DhGroup::Curve25519]);
        assert_eq!(p.to_string(), "aes256gcm16-prfsha256-x25519");
        let e = EspProposal::parse("aes128gcm16-ecp256").unwrap();
        assert_eq!(e.dh, vec![DhGroup::Ecp256]);
        assert!(IkeProposal::parse("aes256gcm16-prfsha256").unwrap_err().contains("key exchange"));
        assert!(IkeProposal::parse("aes256cbc-prfsha256-x25519").unwrap_err().contains("integrity"));
        assert!(IkeProposal::parse("aes3-prfsha256-x25519").unwrap_err().contains("aes3"));
        assert!(EspProposal::parse("3des").is_err());
    }

    #[test]
    fn parses_esp_cbc_and_chacha() {
        let e = EspProposal::parse("aes128-sha1").unwrap();
        assert_eq!(
            (e.encr.as_slice(), e.integ.as_slice()),
            ([EncrAlg::AesCbc128].as_slice(), [IntegAlg::HmacSha1_96].as_slice())
        );
        let e = EspProposal::parse("aes256-aes192-sha512-sha384-sha256-ecp256-esn").unwrap();
        assert_eq!(e.encr, vec![EncrAlg::AesCbc256, EncrAlg::AesCbc192]);
        assert_eq!(e.integ, vec![IntegAlg::HmacSha512_256, IntegAlg::HmacSha384_192, IntegAlg::HmacSha256_128]);
        assert_eq!(e.to_string(), "aes256-aes192-sha512-sha384-sha256-ecp256-esn");
        assert_eq!(EspProposal::parse("aes-sha").unwrap(), EspProposal::parse("aes128-sha1").unwrap());
        let c = EspProposal::parse("chacha20poly1305").unwrap();
        assert_eq!((c.encr, c.integ.is_empty()), (vec![EncrAlg::ChaCha20Poly1305], true));
        assert!(EspProposal::parse("aes128").unwrap_err().contains("integrity"));
        assert!(EspProposal::parse("aes128gcm16-sha256").unwrap_err().contains("AEAD"));
        assert!(EspProposal::parse("aes128gcm16-aes128-sha256").unwrap_err().contains("mixes"));
        assert!(IkeProposal::parse("aes128-prfsha256-x25519").unwrap_err().contains("integrity"));
    }

    #[test]
    fn key_material_lengths() {
        let lens: Vec<(usize, usize, Option<u16>)> =
            EncrAlg::ALL.iter().map(|e| (e.key_len(), e.keymat_len(), e.key_length_attr())).collect();
        assert_eq!(
            lens,
            [
                (16, 20, Some(128)),
                (32, 36, Some(256)),
                (32, 36, None),
                (16, 16, Some(128)),
                (24, 24, Some(192)),
                (32, 32, Some(256))
            ]
        );
        let integ: Vec<(u16, usize, usize)> =
            IntegAlg::ALL.iter().map(|i| (i.transform_id(), i.key_len(), i.icv_len())).collect();
        assert_eq!(integ, [(2, 20, 12), (12, 32, 16), (13, 48, 24), (14, 64, 32)]);
    }

    #[test]
    fn iana_round_trip() {
        for e in EncrAlg::ALL {
            assert_eq!(EncrAlg::from_iana(e.transform_id(), e.key_length_attr()), Some(e));
        }
        assert_eq!(EncrAlg::from_iana(EncrAlg::CHACHA20_POLY1305_ID, Some(256)), None);
        assert_eq!(EncrAlg::from_iana(EncrAlg::AES_CBC_ID, None), None);
        for i in IntegAlg::ALL {
            assert_eq!(IntegAlg::from_iana(i.transform_id()), Some(i));
        }
        for p in PrfAlg::ALL {
            assert_eq!(PrfAlg::from_iana(p.transform_id()), Some(p));
        }
        assert_eq!(PrfAlg::from_iana(1), None, "PRF_HMAC_MD5 is not supported");
        for g in DhGroup::ALL {
            assert_eq!(DhGroup::from_iana(g.transform_id()), Some(g));
        }
        for id in [0, 3, 4, 17, 18, 22, 30, 32, 0xffff] {
            assert_eq!(DhGroup::from_iana(id), None);
        }
    }

    #[test]
    fn group_keywords_numbers_and_lengths() {
        let expected = [
            ("modp768", 1, 96, true),
            ("modp1024", 2, 128, true),
            ("modp1536", 5, 192, true),
            ("modp2048", 14, 256, false),
            ("modp3072", 15, 384, false),
            ("modp4096", 16, 512, false),
            ("ecp256", 19, 64, false),
            ("ecp384", 20, 96, false),
            ("ecp521", 21, 132, false),
            ("x25519", 31, 32, false),
        ];
        assert_eq!(expected.len(), DhGroup::ALL.len());
        for (g, (kw, id, len, legacy)) in DhGroup::ALL.into_iter().zip(expected) {
            assert_eq!((g.keyword(), g.transform_id(), g.public_len(), g.is_legacy()), (kw, id, len, legacy), "{g}");
            assert_eq!(DhGroup::from_keyword(kw), Some(g));
        }
        assert_eq!(DhGroup::Ecp521.shared_len(), 66);
        assert_eq!(DhGroup::Modp2048.shared_len(), 256);
        let p = IkeProposal::parse("aes128gcm16-prfsha256-modp1024-modp2048-ecp384-ecp521").unwrap();
        assert_eq!(p.dh, vec![DhGroup::Modp1024, DhGroup::Modp2048, DhGroup::Ecp384, DhGroup::Ecp521]);
        assert_eq!(p.to_string(), "aes128gcm16-prfsha256-modp1024-modp2048-ecp384-ecp521");
        let e = EspProposal::parse("aes256gcm16-modp3072-modp4096-modp768-modp1536").unwrap();
        assert_eq!(e.dh, vec![DhGroup::Modp3072, DhGroup::Modp4096, DhGroup::Modp768, DhGroup::Modp1536]);
        assert!(IkeProposal::parse("aes128gcm16-prfsha256-modp8192").is_err());
    }

    #[test]
    fn ike_proposals_with_integrity() {
        let p = IkeProposal::parse("aes128-sha1-modp1024").unwrap();
        assert_eq!(p.encr, vec![EncrAlg::AesCbc128]);
        assert_eq!(p.integ, vec![IntegAlg::HmacSha1_96]);
        assert_eq!(p.prf, vec![PrfAlg::HmacSha1], "the PRF follows the integrity algorithm");
        assert_eq!(p.dh, vec![DhGroup::Modp1024]);
        assert_eq!(p.to_string(), "aes128-sha1-prfsha1-modp1024");
        assert_eq!(IkeProposal::parse(&p.to_string()).unwrap(), p, "Display round-trips");
        let p = IkeProposal::parse("aes256-sha256-modp2048").unwrap();
        assert_eq!(
            (p.integ.as_slice(), p.prf.as_slice()),
            ([IntegAlg::HmacSha256_128].as_slice(), [PrfAlg::HmacSha256].as_slice())
        );
        // An explicit PRF wins over the integrity rule.
        let p = IkeProposal::parse("aes128-sha256-prfsha1-ecp256").unwrap();
        assert_eq!(p.prf, vec![PrfAlg::HmacSha1]);
        // Several integrity algorithms give several PRFs, in order, without repeats.
        let p = IkeProposal::parse("aes256-aes128-sha512-sha384-sha1-sha-x25519").unwrap();
        assert_eq!(p.prf, vec![PrfAlg::HmacSha512, PrfAlg::HmacSha384, PrfAlg::HmacSha1]);
        assert_eq!(p.integ.len(), 4);
        // AEADs: no integrity, and the PRF must be named.
        let p = IkeProposal::parse("chacha20poly1305-prfsha256-x25519").unwrap();
        assert_eq!((p.encr.as_slice(), p.integ.is_empty()), ([EncrAlg::ChaCha20Poly1305].as_slice(), true));
        assert!(IkeProposal::parse("aes256gcm16-x25519").unwrap_err().contains("no PRF"));
        assert!(IkeProposal::parse("aes256gcm16-sha256-x25519").unwrap_err().contains("AEAD"));
        assert!(IkeProposal::parse("aes256gcm16-aes256-sha256-prfsha256-x25519").unwrap_err().contains("mixes"));
        assert!(IkeProposal::parse("aes256-prfsha256-x25519").unwrap_err().contains("integrity"));
        assert!(IkeProposal::parse("aes256-sha256").unwrap_err().contains("key exchange"));
        assert!(IkeProposal::parse("sha256-prfsha256-x25519").unwrap_err().contains("encryption"));
        for i in IntegAlg::ALL {
            assert_eq!(i.prf().output_len(), i.key_len(), "{i}: PRF and HMAC share the hash");
        }
        assert_eq!(PrfAlg::HmacSha1.to_string(), "PRF_HMAC_SHA1");
    }
}
