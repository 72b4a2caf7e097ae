//! Algorithms this gateway negotiates, with their IANA numbers (RFC 7296 section 3.3.2)
//! and swanctl-style proposal keywords (`aes256gcm16-prfsha256-x25519`).

use std::fmt;

/// Encryption (AEAD) transforms. Only AES-GCM with a 16-byte ICV (RFC 4106, RFC 5282).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum EncrAlg {
    /// ENCR_AES_GCM_16 with a 128-bit key.
    AesGcm16_128,
    /// ENCR_AES_GCM_16 with a 256-bit key.
    AesGcm16_256,
}

impl EncrAlg {
    /// IANA transform ID of ENCR_AES_GCM_16.
    pub const AES_GCM_16_ID: u16 = 20;
    /// Transform ID (type 1).
    pub fn transform_id(self) -> u16 {
        Self::AES_GCM_16_ID
    }
    /// Key length attribute in bits.
    pub fn key_bits(self) -> u16 {
        match self {
            Self::AesGcm16_128 => 128,
            Self::AesGcm16_256 => 256,
        }
    }
    /// Cipher key length in bytes (without the 4-byte salt).
    pub fn key_len(self) -> usize {
        usize::from(self.key_bits() / 8)
    }
    /// From transform ID and key-length attribute.
    pub fn from_iana(id: u16, key_bits: Option<u16>) -> Option<Self> {
        match (id, key_bits) {
            (Self::AES_GCM_16_ID, Some(128)) => Some(Self::AesGcm16_128),
            (Self::AES_GCM_16_ID, Some(256)) => Some(Self::AesGcm16_256),
            _ => None,
        }
    }
    /// swanctl keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Self::AesGcm16_128 => "aes128gcm16",
            Self::AesGcm16_256 => "aes256gcm16",
        }
    }
    fn from_keyword(s: &str) -> Option<Self> {
        match s {
            "aes128gcm16" | "aes128gcm128" => Some(Self::AesGcm16_128),
            "aes256gcm16" | "aes256gcm128" => Some(Self::AesGcm16_256),
            _ => None,
        }
    }
}

impl fmt::Display for EncrAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AesGcm16_128 => f.write_str("AES_GCM_16-128"),
            Self::AesGcm16_256 => f.write_str("AES_GCM_16-256"),
        }
    }
}

/// Pseudo-random functions (transform type 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum PrfAlg {
    /// PRF_HMAC_SHA2_256 (5).
    HmacSha256,
    /// PRF_HMAC_SHA2_384 (6).
    HmacSha384,
    /// PRF_HMAC_SHA2_512 (7).
    HmacSha512,
}

impl PrfAlg {
    /// Transform ID.
    pub fn transform_id(self) -> u16 {
        match self {
            Self::HmacSha256 => 5,
            Self::HmacSha384 => 6,
            Self::HmacSha512 => 7,
        }
    }
    /// From transform ID.
    pub fn from_iana(id: u16) -> Option<Self> {
        match id {
            5 => Some(Self::HmacSha256),
            6 => Some(Self::HmacSha384),
            7 => Some(Self::HmacSha512),
            _ => None,
        }
    }
    /// Output (and preferred key) length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Self::HmacSha256 => 32,
            Self::HmacSha384 => 48,
            Self::HmacSha512 => 64,
        }
    }
    /// swanctl keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Self::HmacSha256 => "prfsha256",
            Self::HmacSha384 => "prfsha384",
            Self::HmacSha512 => "prfsha512",
        }
    }
    fn from_keyword(s: &str) -> Option<Self> {
        match s {
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
            Self::HmacSha256 => f.write_str("PRF_HMAC_SHA2_256"),
            Self::HmacSha384 => f.write_str("PRF_HMAC_SHA2_384"),
            Self::HmacSha512 => f.write_str("PRF_HMAC_SHA2_512"),
        }
    }
}

/// Key exchange methods (transform type 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum DhGroup {
    /// 256-bit random ECP group (19), RFC 5903.
    Ecp256,
    /// Curve25519 (31), RFC 8031.
    Curve25519,
}

impl DhGroup {
    /// Transform ID / group number.
    pub fn transform_id(self) -> u16 {
        match self {
            Self::Ecp256 => 19,
            Self::Curve25519 => 31,
        }
    }
    /// From group number.
    pub fn from_iana(id: u16) -> Option<Self> {
        match id {
            19 => Some(Self::Ecp256),
            31 => Some(Self::Curve25519),
            _ => None,
        }
    }
    /// Length of the KE payload's key exchange data.
    pub fn public_len(self) -> usize {
        match self {
            Self::Ecp256 => 64,
            Self::Curve25519 => 32,
        }
    }
    /// swanctl keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Self::Ecp256 => "ecp256",
            Self::Curve25519 => "x25519",
        }
    }
    fn from_keyword(s: &str) -> Option<Self> {
        match s {
            "ecp256" => Some(Self::Ecp256),
            "x25519" | "curve25519" => Some(Self::Curve25519),
            _ => None,
        }
    }
}

impl fmt::Display for DhGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ecp256 => f.write_str("ECP_256"),
            Self::Curve25519 => f.write_str("CURVE_25519"),
        }
    }
}

/// One IKE proposal: any of the listed algorithms of each type may be chosen.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IkeProposal {
    /// Encryption algorithms, in preference order.
    pub encr: Vec<EncrAlg>,
    /// PRFs, in preference order.
    pub prf: Vec<PrfAlg>,
    /// Key exchange groups, in preference order.
    pub dh: Vec<DhGroup>,
}

/// One ESP proposal. A non-empty `dh` asks for PFS on CREATE_CHILD_SA.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EspProposal {
    /// Encryption algorithms, in preference order.
    pub encr: Vec<EncrAlg>,
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

impl IkeProposal {
    /// Parses a swanctl-style IKE proposal, e.g. `aes256gcm16-prfsha256-x25519`.
    /// Every transform type must appear at least once.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut p = Self { encr: vec![], prf: vec![], dh: vec![] };
        for kw in split_keywords(s) {
            if let Some(e) = EncrAlg::from_keyword(kw) {
                p.encr.push(e);
            } else if let Some(f) = PrfAlg::from_keyword(kw) {
                p.prf.push(f);
            } else if let Some(g) = DhGroup::from_keyword(kw) {
                p.dh.push(g);
            } else {
                return Err(unknown(kw, s));
            }
        }
        if p.encr.is_empty() {
            return Err(format!("IKE proposal {s:?} names no encryption algorithm (e.g. aes256gcm16)"));
        }
        if p.prf.is_empty() {
            return Err(format!("IKE proposal {s:?} names no PRF (e.g. prfsha256)"));
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
            .chain(self.prf.iter().map(|p| p.keyword()))
            .chain(self.dh.iter().map(|d| d.keyword()))
            .collect();
        f.write_str(&parts.join("-"))
    }
}

impl EspProposal {
    /// Parses a swanctl-style ESP proposal, e.g. `aes256gcm16` or `aes256gcm16-x25519-esn`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut p = Self { encr: vec![], dh: vec![], esn: false };
        for kw in split_keywords(s) {
            if let Some(e) = EncrAlg::from_keyword(kw) {
                p.encr.push(e);
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
        if p.encr.is_empty() {
            return Err(format!("ESP proposal {s:?} names no encryption algorithm (e.g. aes256gcm16)"));
        }
        Ok(p)
    }
}

impl fmt::Display for EspProposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<&str> =
            self.encr.iter().map(|e| e.keyword()).chain(self.dh.iter().map(|d| d.keyword())).collect();
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
        assert!(IkeProposal::parse("aes256cbc-prfsha256-x25519").unwrap_err().contains("aes256cbc"));
        assert!(EspProposal::parse("3des").is_err());
    }

    #[test]
    fn iana_round_trip() {
        for e in [EncrAlg::AesGcm16_128, EncrAlg::AesGcm16_256] {
            assert_eq!(EncrAlg::from_iana(e.transform_id(), Some(e.key_bits())), Some(e));
        }
        for p in [PrfAlg::HmacSha256, PrfAlg::HmacSha384, PrfAlg::HmacSha512] {
            assert_eq!(PrfAlg::from_iana(p.transform_id()), Some(p));
        }
        for g in [DhGroup::Ecp256, DhGroup::Curve25519] {
            assert_eq!(DhGroup::from_iana(g.transform_id()), Some(g));
        }
    }
}
