//! IKEv2 messages on the wire: the header (RFC 7296 section 3.1), the generic payload
//! chain (3.2) and the SK payload with AES-GCM (3.14, RFC 5282).
//!
//! Parsing never panics on arbitrary bytes. This module owns the byte layout only:
//! what a message means is decided in `sa` and `task`.

pub(crate) mod codec;
pub(crate) mod payload;

use crate::crypto::SkCipher;
use codec::{patch_u16, put_u32, Reader};
pub(crate) use payload::{ptype, Payload};

/// Length of the IKE header.
pub(crate) const HEADER_LEN: usize = 28;
/// Explicit IV length of AES-GCM in the SK payload.
const IV_LEN: usize = 8;
/// GCM ICV length.
const ICV_LEN: usize = 16;

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
    /// The SK payload is not the last payload.
    #[error("SK payload not last")]
    SkNotLast,
    /// The SK payload did not decrypt.
    #[error("SK payload failed to decrypt")]
    Decrypt,
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
    /// Parses and checks the header of `data` (length field must not exceed `data`).
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
        Ok(Self { spi_i, spi_r, next_payload, exchange, flags, message_id, length })
    }

    pub(crate) fn is_response(&self) -> bool {
        self.flags & flags::RESPONSE != 0
    }

    /// Sent by the original initiator of the IKE SA.
    pub(crate) fn sent_by_initiator(&self) -> bool {
        self.flags & flags::INITIATOR != 0
    }

    fn emit(&self, out: &mut Vec<u8>) {
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

/// A parsed message. `sk` is set when the payload chain ends in an SK payload.
#[derive(Debug)]
pub(crate) struct Message {
    pub(crate) header: Header,
    pub(crate) payloads: Vec<Payload>,
    /// Inner first payload type and the offset of the SK payload's generic header.
    pub(crate) sk: Option<SkRef>,
}

/// Parses a payload chain starting with type `first`. Stops at an SK payload, which must
/// be last, returning its inner first-payload type and offset (relative to `base`).
/// Inner first payload type and offset of the SK payload's generic header.
type SkRef = (u8, usize);

fn parse_chain(first: u8, data: &[u8], base: usize) -> Result<(Vec<Payload>, Option<SkRef>), ParseError> {
    let mut r = Reader::new(data);
    let mut next = first;
    let mut out = Vec::new();
    while next != ptype::NONE {
        let offset = base + data.len() - r.remaining();
        let this = next;
        next = r.u8().ok_or(ParseError::Truncated)?;
        let crit = r.u8().ok_or(ParseError::Truncated)? & 0x80 != 0;
        let len = usize::from(r.u16().ok_or(ParseError::Truncated)?);
        let body = r.take(len.checked_sub(4).ok_or(ParseError::Payload(this))?).ok_or(ParseError::Truncated)?;
        if this == ptype::SK {
            if r.remaining() != 0 {
                return Err(ParseError::SkNotLast);
            }
            return Ok((out, Some((next, offset))));
        }
        out.push(Payload::parse(this, crit, body).ok_or(ParseError::Payload(this))?);
    }
    Ok((out, None))
}

impl Message {
    /// Parses the header and the unencrypted payload chain.
    pub(crate) fn parse(data: &[u8]) -> Result<Self, ParseError> {
        let header = Header::parse(data)?;
        let end = usize::try_from(header.length).map_err(|_| ParseError::Truncated)?;
        let body = data.get(HEADER_LEN..end).ok_or(ParseError::Truncated)?;
        let (payloads, sk) = parse_chain(header.next_payload, body, HEADER_LEN)?;
        Ok(Self { header, payloads, sk })
    }

    /// Decrypts the SK payload of `data` (the same bytes given to `parse`) and appends
    /// the inner payloads.
    pub(crate) fn decrypt(&mut self, data: &[u8], cipher: &SkCipher) -> Result<(), ParseError> {
        let Some((inner_first, off)) = self.sk else { return Ok(()) };
        let end = usize::try_from(self.header.length).map_err(|_| ParseError::Truncated)?;
        let aad = data.get(..off + 4).ok_or(ParseError::Truncated)?;
        let iv: [u8; IV_LEN] =
            data.get(off + 4..off + 4 + IV_LEN).and_then(|s| s.try_into().ok()).ok_or(ParseError::Truncated)?;
        let mut ct = data.get(off + 4 + IV_LEN..end).ok_or(ParseError::Truncated)?.to_vec();
        if ct.len() < ICV_LEN + 1 {
            return Err(ParseError::Truncated);
        }
        let n = cipher.open(iv, aad, &mut ct).map_err(|_| ParseError::Decrypt)?;
        let pt = ct.get(..n).ok_or(ParseError::Decrypt)?;
        let pad = usize::from(*pt.last().ok_or(ParseError::Decrypt)?);
        let inner_len = pt.len().checked_sub(1 + pad).ok_or(ParseError::Payload(ptype::SK))?;
        let inner = pt.get(..inner_len).ok_or(ParseError::Payload(ptype::SK))?;
        let (inner, sk) = parse_chain(inner_first, inner, 0)?;
        if sk.is_some() {
            return Err(ParseError::SkNotLast);
        }
        self.payloads.extend(inner);
        self.sk = None;
        Ok(())
    }
}

/// Encodes a payload chain; returns the first payload type.
fn emit_chain(payloads: &[Payload], out: &mut Vec<u8>) -> u8 {
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

/// Builds a message whose payloads all travel inside one SK payload.
pub(crate) fn emit_encrypted(mut header: Header, payloads: &[Payload], cipher: &SkCipher, iv: [u8; 8]) -> Vec<u8> {
    let mut pt = Vec::new();
    let inner_first = emit_chain(payloads, &mut pt);
    pt.push(0); // Pad Length: no padding needed for GCM.
    let sk_len = 4 + IV_LEN + pt.len() + ICV_LEN;
    header.next_payload = ptype::SK;
    header.length = u32::try_from(HEADER_LEN + sk_len).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(HEADER_LEN + sk_len);
    header.emit(&mut out);
    out.push(inner_first);
    out.push(0);
    out.extend_from_slice(&u16::try_from(sk_len).unwrap_or(u16::MAX).to_be_bytes());
    let aad = out.clone();
    out.extend_from_slice(&iv);
    cipher.seal(iv, &aad, &mut pt);
    out.extend_from_slice(&pt);
    out
}

#[cfg(test)]
mod tests;
