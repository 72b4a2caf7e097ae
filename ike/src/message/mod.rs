//! IKEv2 messages on the wire: the header (RFC 7296 section 3.1), the generic payload
//! chain (3.2) and the SK payload (3.14) through [`SkCipher`] (AES-GCM per RFC 5282,
//! ChaCha20-Poly1305 per RFC 7634, AES-CBC with HMAC).
//!
//! Parsing never panics on arbitrary bytes and costs what the bytes carry: every count
//! and length is checked against the bytes present before anything is allocated for it
//! (see `payload`), a chain holds at most [`MAX_PAYLOADS`] payloads, and before
//! decryption only the payloads that may travel in cleartext are parsed at all (see
//! [`Chain`]). Parsing any datagram allocates at most `8 * len + 8 KiB`
//! (`ike/tests/parse_alloc.rs` proves it; the `ike_parse` fuzz target checks it).
//!
//! This module owns the byte layout only: what a message means is decided in `sa` and
//! `task`.

pub(crate) mod codec;
pub(crate) mod fragment;
pub(crate) mod payload;
#[cfg(any(test, feature = "testing"))]
pub(crate) mod probe;

use crate::crypto::SkCipher;
use codec::{patch_u16, put_u32, Reader, Substructs};
pub(crate) use payload::{ptype, Payload};
use zeroize::Zeroizing;

/// Length of the IKE header.
pub(crate) const HEADER_LEN: usize = 28;

/// Most payloads one chain may hold: the cleartext chain, and again the chain inside the
/// SK payload. The largest legitimate messages we know hold about 25: an IKE_AUTH
/// request from strongSwan with IDi, IDr, AUTH, a certificate chain, CERTREQ, CP, SA,
/// TSi, TSr, half a dozen notifies and MOBIKE's ADDITIONAL_*_ADDRESS notifies (at most
/// 8); an IKE_SA_INIT with a dozen notifies and a handful of vendor IDs. 64 leaves more
/// than twice that, and keeps the payload list of any message under 4 KiB. A chain with
/// more is malformed (`ParseError::TooManyPayloads`): the bomb of 180 Delete payloads
/// in one 1,472-byte datagram is refused before a single body is parsed.
pub(crate) const MAX_PAYLOADS: usize = 64;

/// Exchange types (section 3.1).
pub(crate) mod exchange {
    pub(crate) const IKE_SA_INIT: u8 = 34;
    pub(crate) const IKE_AUTH: u8 = 35;
    pub(crate) const CREATE_CHILD_SA: u8 = 36;
    pub(crate) const INFORMATIONAL: u8 = 37;
}

/// Header flags.
pub(crate) mod flags {
    pub(crate) const INITIATOR: u8 = 0x08;
    pub(crate) const RESPONSE: u8 = 0x20;
}

/// Why a message could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Shorter than its headers or declared lengths.
    #[error("truncated")]
    Truncated,
    /// Major version not 2.
    #[error("unsupported IKE version {0:#x}")]
    Version(u8),
    /// A payload body is malformed.
    #[error("malformed payload type {0}")]
    Payload(u8),
    /// The SK (or SKF) payload is not the last payload.
    #[error("SK payload not last")]
    SkNotLast,
    /// The SK payload did not decrypt.
    #[error("SK payload failed to decrypt")]
    Decrypt,
    /// Bytes after the last payload, or after the length the IKE header gives.
    #[error("trailing bytes")]
    TrailingBytes,
    /// More than `MAX_PAYLOADS` payloads in one chain.
    #[error("more than {MAX_PAYLOADS} payloads")]
    TooManyPayloads,
    /// A payload that may not travel in cleartext in this message (section 1.2 - 1.5:
    /// only IKE_SA_INIT is unprotected, and unprotected error notifies in responses).
    #[error("payload type {0} not allowed unprotected here")]
    Cleartext(u8),
    /// A message outside IKE_SA_INIT with no payloads at all.
    #[error("no SK payload")]
    NotProtected,
}

/// The fixed IKE header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) spi_i: u64,
    pub(crate) spi_r: u64,
    pub(crate) next_payload: u8,
    pub(crate) exchange: u8,
    pub(crate) flags: u8,
    pub(crate) message_id: u32,
    pub(crate) length: u32,
}

impl Header {
    /// Parses and checks the header of `data` (the length field must equal `data.len()`).
    pub(crate) fn parse(data: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(data);
        let spi_i = r.u64().ok_or(ParseError::Truncated)?;
        let spi_r = r.u64().ok_or(ParseError::Truncated)?;
        let next_payload = r.u8().ok_or(ParseError::Truncated)?;
        let version = r.u8().ok_or(ParseError::Truncated)?;
        let exchange = r.u8().ok_or(ParseError::Truncated)?;
        let flags = r.u8().ok_or(ParseError::Truncated)?;
        let message_id = r.u32().ok_or(ParseError::Truncated)?;
        let length = r.u32().ok_or(ParseError::Truncated)?;
        if version >> 4 != 2 {
            return Err(ParseError::Version(version));
        }
        let l = usize::try_from(length).map_err(|_| ParseError::Truncated)?;
        if l < HEADER_LEN || l > data.len() {
            return Err(ParseError::Truncated);
        }
        if l < data.len() {
            return Err(ParseError::TrailingBytes);
        }
        Ok(Self { spi_i, spi_r, next_payload, exchange, flags, message_id, length })
    }

    pub(crate) fn is_response(&self) -> bool {
        self.flags & flags::RESPONSE != 0
    }

    /// Sent by the original initiator of the IKE SA.
    pub(crate) fn sent_by_initiator(&self) -> bool {
        self.flags & flags::INITIATOR != 0
    }

    pub(crate) fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.spi_i.to_be_bytes());
        out.extend_from_slice(&self.spi_r.to_be_bytes());
        out.push(self.next_payload);
        out.push(0x20);
        out.push(self.exchange);
        out.push(self.flags);
        put_u32(out, self.message_id);
        put_u32(out, self.length);
    }
}

/// A parsed message. `sk` is set when the payload chain ends in an SK payload, `skf`
/// when it ends in an Encrypted Fragment payload (RFC 7383, see `fragment`).
#[derive(Debug)]
pub(crate) struct Message {
    pub(crate) header: Header,
    pub(crate) payloads: Vec<Payload>,
    /// Inner first payload type and the offset of the SK payload's generic header.
    pub(crate) sk: Option<SkRef>,
    /// Next Payload field and the offset of the SKF payload's generic header.
    pub(crate) skf: Option<SkRef>,
}

/// Inner first payload type and offset of the SK payload's generic header.
type SkRef = (u8, usize);

/// The payloads before an SK (or SKF) payload and, if the chain ends in one, its type
/// and [`SkRef`].
type ParsedChain = (Vec<Payload>, Option<(u8, SkRef)>);

/// Which payloads a chain may hold. Before decryption only what may travel in cleartext
/// is parsed at all; anything else makes the message malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chain {
    /// IKE_SA_INIT (section 1.2): SA, KE, Nonce, Notify, Vendor ID, CERTREQ, and
    /// payload types we do not know (a critical one is answered with
    /// UNSUPPORTED_CRITICAL_PAYLOAD by `task::ike_init`). Not SK: IKE_SA_INIT is never
    /// encrypted.
    Init,
    /// Any other exchange: the SK (or SKF, RFC 7383) payload alone; or, in a response,
    /// only Notify payloads (an unprotected INVALID_IKE_SPI answer, section 2.21.4).
    Outer { response: bool },
    /// Inside the SK payload (or a reassembled message): anything but SK or SKF.
    Inner,
}

impl Chain {
    /// Whether a payload of type `t` may appear in this chain.
    fn allows(self, t: u8) -> Result<(), ParseError> {
        use ptype::*;
        let ok = match self {
            Self::Init => match t {
                SA | KE | NONCE | NOTIFY | VENDOR | CERTREQ => true,
                IDI | IDR | CERT | AUTH | DELETE | TSI | TSR | SK | CP | EAP | SKF => false,
                _ => true,
            },
            Self::Outer { response } => t == SK || t == SKF || (response && t == NOTIFY),
            Self::Inner => t != SK && t != SKF,
        };
        match (ok, self) {
            (true, _) => Ok(()),
            (false, Self::Inner) => Err(ParseError::Payload(t)),
            (false, _) => Err(ParseError::Cleartext(t)),
        }
    }

    /// Checks the chain as a whole: `count` payloads, ending in an SK payload or not.
    fn complete(self, count: usize, sk: bool) -> Result<(), ParseError> {
        match self {
            Self::Outer { .. } if count == 0 => Err(ParseError::NotProtected),
            // Notify payloads next to the SK payload would be unprotected.
            Self::Outer { .. } if sk && count > 1 => Err(ParseError::Cleartext(ptype::NOTIFY)),
            _ => Ok(()),
        }
    }
}

/// Parses the payload chain `data` whose first payload has type `first`. Walks the
/// generic headers first (they must tile `data` exactly, at most `MAX_PAYLOADS` of
/// them, each allowed by `chain`, an SK payload only last), and only then parses the
/// bodies into a list of exactly that many. Returns the payloads before the SK (or SKF)
/// payload and, if the chain ends in one, its type, its Next Payload field and the offset
/// of its generic header (`base` + its position in `data`).
fn parse_chain(first: u8, data: &[u8], base: usize, chain: Chain) -> Result<ParsedChain, ParseError> {
    let mut count = 0;
    let mut this = first;
    let mut offset = base;
    let mut sk = None;
    for s in Substructs::new(data) {
        let (next, _, body) = s.ok_or(ParseError::Truncated)?;
        if sk.is_some() {
            return Err(ParseError::SkNotLast);
        }
        if this == ptype::NONE {
            return Err(ParseError::TrailingBytes);
        }
        count += 1;
        if count > MAX_PAYLOADS {
            return Err(ParseError::TooManyPayloads);
        }
        chain.allows(this)?;
        if this == ptype::SK || this == ptype::SKF {
            sk = Some((this, (next, offset)));
        }
        offset += 4 + body.len();
        this = next;
    }
    if sk.is_none() && this != ptype::NONE {
        // The last header names a next payload that is not there.
        return Err(ParseError::Truncated);
    }
    chain.complete(count, sk.is_some())?;
    let mut out = Vec::with_capacity(count - usize::from(sk.is_some()));
    let mut this = first;
    for s in Substructs::new(data) {
        let (next, flags, body) = s.ok_or(ParseError::Truncated)?;
        if this == ptype::SK || this == ptype::SKF {
            break;
        }
        out.push(Payload::parse(this, flags & 0x80 != 0, body).ok_or(ParseError::Payload(this))?);
        this = next;
    }
    Ok((out, sk))
}

impl Message {
    /// Parses the header and the unencrypted payload chain.
    pub(crate) fn parse(data: &[u8]) -> Result<Self, ParseError> {
        let header = Header::parse(data)?;
        let body = data.get(HEADER_LEN..).ok_or(ParseError::Truncated)?;
        let chain = if header.exchange == exchange::IKE_SA_INIT {
            Chain::Init
        } else {
            Chain::Outer { response: header.is_response() }
        };
        let (payloads, last) = parse_chain(header.next_payload, body, HEADER_LEN, chain)?;
        let (sk, skf) = match last {
            Some((ptype::SKF, r)) => (None, Some(r)),
            Some((_, r)) => (Some(r), None),
            None => (None, None),
        };
        Ok(Self { header, payloads, sk, skf })
    }

    /// The message whose SK payload's plaintext chain (first payload type `inner_first`)
    /// was reassembled from fragments sent with `header`.
    pub(crate) fn reassembled(header: Header, inner_first: u8, chain: &[u8]) -> Result<Self, ParseError> {
        let (payloads, _) = parse_chain(inner_first, chain, 0, Chain::Inner)?;
        Ok(Self { header, payloads, sk: None, skf: None })
    }

    /// Decrypts the SK payload of `data` (the same bytes given to `parse`) and appends
    /// the inner payloads. The ICV is checked before anything is decrypted or parsed;
    /// then the Pad Length (any value that fits the plaintext, RFC 7296 3.14).
    pub(crate) fn decrypt(&mut self, data: &[u8], cipher: &SkCipher) -> Result<(), ParseError> {
        let Some((inner_first, off)) = self.sk else { return Ok(()) };
        let end = usize::try_from(self.header.length).map_err(|_| ParseError::Truncated)?;
        let aad = data.get(..off + 4).ok_or(ParseError::Truncated)?;
        let iv_len = cipher.iv_len();
        let iv = data.get(off + 4..off + 4 + iv_len).ok_or(ParseError::Truncated)?;
        let ct = data.get(off + 4 + iv_len..end).ok_or(ParseError::Truncated)?;
        if ct.len() < cipher.icv_len() + 1 {
            return Err(ParseError::Truncated);
        }
        let mut ct = Zeroizing::new(ct.to_vec());
        let n = cipher.open(iv, aad, &mut ct).map_err(|_| ParseError::Decrypt)?;
        let pt = ct.get(..n).ok_or(ParseError::Decrypt)?;
        // Pad Length counts padding octets before it, within the plaintext.
        let pad = usize::from(*pt.last().ok_or(ParseError::Decrypt)?);
        let inner_len = pt.len().checked_sub(1 + pad).ok_or(ParseError::Payload(ptype::SK))?;
        let inner = pt.get(..inner_len).ok_or(ParseError::Payload(ptype::SK))?;
        let (mut inner, _) = parse_chain(inner_first, inner, 0, Chain::Inner)?;
        if self.payloads.is_empty() {
            self.payloads = inner;
        } else {
            self.payloads.append(&mut inner);
        }
        self.sk = None;
        Ok(())
    }
}

/// Encodes a payload chain; returns the first payload type.
pub(crate) fn emit_chain(payloads: &[Payload], out: &mut Vec<u8>) -> u8 {
    for (i, p) in payloads.iter().enumerate() {
        let start = out.len();
        out.push(payloads.get(i + 1).map_or(ptype::NONE, Payload::ptype));
        out.push(if matches!(p, Payload::Unknown { critical: true, .. }) { 0x80 } else { 0 });
        out.extend_from_slice(&[0, 0]);
        p.emit_body(out);
        let len = out.len() - start;
        patch_u16(out, start + 2, len);
    }
    payloads.first().map_or(ptype::NONE, Payload::ptype)
}

/// Builds an unencrypted message (IKE_SA_INIT).
pub(crate) fn emit_plain(mut header: Header, payloads: &[Payload]) -> Vec<u8> {
    let mut body = Vec::new();
    header.next_payload = emit_chain(payloads, &mut body);
    header.length = u32::try_from(HEADER_LEN + body.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    header.emit(&mut out);
    out.extend_from_slice(&body);
    out
}

/// Appends the Padding and the Pad Length octet to `pt` so that it fills whole blocks
/// of `block_len` (RFC 7296 3.14; the AEADs need none: `block_len` 1). The padding is
/// zeros (its content is not specified; the receiver ignores it).
pub(crate) fn pad_plaintext(pt: &mut Vec<u8>, block_len: usize) {
    let block = block_len.max(1);
    let pad = (block - (pt.len() + 1) % block) % block;
    pt.resize(pt.len() + pad, 0);
    pt.push(u8::try_from(pad).unwrap_or(0));
}

/// Builds a message whose payloads all travel inside one SK payload. `iv` is the
/// explicit IV, `cipher.iv_len()` bytes (never repeated under the key for the AEADs,
/// unpredictable for AES-CBC).
pub(crate) fn emit_encrypted(header: Header, payloads: &[Payload], cipher: &SkCipher, iv: &[u8]) -> Vec<u8> {
    let mut pt = Vec::new();
    let inner_first = emit_chain(payloads, &mut pt);
    pad_plaintext(&mut pt, cipher.block_len());
    seal_plaintext(header, inner_first, pt, cipher, iv)
}

/// Builds a message whose SK payload holds the plaintext `pt`: the encoded chain (first
/// payload type `inner_first`), any padding and the Pad Length octet.
pub(crate) fn seal_plaintext(
    mut header: Header,
    inner_first: u8,
    mut pt: Vec<u8>,
    cipher: &SkCipher,
    iv: &[u8],
) -> Vec<u8> {
    let sk_len = 4 + iv.len() + pt.len() + cipher.icv_len();
    header.next_payload = ptype::SK;
    header.length = u32::try_from(HEADER_LEN + sk_len).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(HEADER_LEN + sk_len);
    header.emit(&mut out);
    out.push(inner_first);
    out.push(0);
    out.extend_from_slice(&u16::try_from(sk_len).unwrap_or(u16::MAX).to_be_bytes());
    let aad = out.clone();
    out.extend_from_slice(iv);
    cipher.seal(iv, &aad, &mut pt);
    out.extend_from_slice(&pt);
    out
}

#[cfg(test)]
mod tests;
