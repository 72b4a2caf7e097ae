//! IKEv1 messages on the wire: the ISAKMP header (RFC 2408 3.1), the payload chain
//! (3.2) and the encrypted body (3.1 E flag, RFC 2409 Appendix B: AES-CBC with the
//! IKEv1 IV chain; the IVs themselves come from `v1::keys`).
//!
//! Bounded like the IKEv2 codec (`crate::message`): parsing never panics, the generic
//! headers are walked first (at most [`MAX_PAYLOADS`], each type allowed where it
//! stands), and only then are the bodies parsed into a list of exactly that many; every
//! count inside a body is checked against its bytes (`payload`). Before decryption only
//! the payloads that may travel in cleartext are parsed (`Chain`). Parsing a datagram
//! allocates at most `8 * len + 8 KiB` (`ike/tests/v1_parse_alloc.rs`).
//!
//! Integrity is not the codec's: IKEv1 has no ICV; a decrypted message is trusted only
//! once its HASH payload verified, so the next IV is returned, not stored, and the
//! caller commits it then.

pub(crate) mod payload;
#[cfg(any(test, feature = "testing"))]
pub(crate) mod probe;
#[cfg(test)]
mod tests;

use crate::crypto::AesKey;
use crate::message::codec::{patch_u16, put_u32, Reader};
pub(crate) use crate::message::ParseError;
pub(crate) use payload::{ptype, Payload};
use std::ops::Range;
use zeroize::Zeroizing;

/// Length of the ISAKMP header.
pub(crate) const HEADER_LEN: usize = 28;
/// Most payloads one chain may hold (as for IKEv2: a Main Mode message 1 from a busy
/// peer holds an SA and about a dozen Vendor IDs).
pub(crate) const MAX_PAYLOADS: usize = 64;
/// The cipher block (AES), and so the IV length.
pub(crate) const BLOCK: usize = 16;
/// ISAKMP version 1.0 (major 1, minor 0).
const VERSION: u8 = 0x10;

/// Exchange types (RFC 2408 3.1, RFC 2409 5 and 5.5).
pub(crate) mod exchange {
    /// Identity Protection: Main Mode.
    pub(crate) const MAIN: u8 = 2;
    pub(crate) const AGGRESSIVE: u8 = 4;
    pub(crate) const INFORMATIONAL: u8 = 5;
    pub(crate) const QUICK: u8 = 32;
}

/// Header flags (RFC 2408 3.1).
pub(crate) mod flags {
    pub(crate) const ENCRYPTED: u8 = 0x01;
    // Commit (0x02) and Authentication Only (0x04) are never set when sending. Commit
    // is ignored when received (our responder installs its inbound SA before message 2
    // and outbound after message 3 anyway, which is what the bit asks for); nothing
    // else reads the flags.
}

/// The ISAKMP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) cky_i: u64,
    pub(crate) cky_r: u64,
    pub(crate) next_payload: u8,
    pub(crate) exchange: u8,
    pub(crate) flags: u8,
    pub(crate) message_id: u32,
    pub(crate) length: u32,
}

impl Header {
    /// Parses and checks the header of `data`: version 1.x, length equal to `data.len()`.
    pub(crate) fn parse(data: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(data);
        let cky_i = r.u64().ok_or(ParseError::Truncated)?;
        let cky_r = r.u64().ok_or(ParseError::Truncated)?;
        let next_payload = r.u8().ok_or(ParseError::Truncated)?;
        let version = r.u8().ok_or(ParseError::Truncated)?;
        let exchange = r.u8().ok_or(ParseError::Truncated)?;
        let flags = r.u8().ok_or(ParseError::Truncated)?;
        let message_id = r.u32().ok_or(ParseError::Truncated)?;
        let length = r.u32().ok_or(ParseError::Truncated)?;
        if version >> 4 != 1 {
            return Err(ParseError::Version(version));
        }
        let l = usize::try_from(length).map_err(|_| ParseError::Truncated)?;
        if l < HEADER_LEN || l > data.len() {
            return Err(ParseError::Truncated);
        }
        if l < data.len() {
            return Err(ParseError::TrailingBytes);
        }
        Ok(Self { cky_i, cky_r, next_payload, exchange, flags, message_id, length })
    }

    pub(crate) fn encrypted(&self) -> bool {
        self.flags & flags::ENCRYPTED != 0
    }

    fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.cky_i.to_be_bytes());
        out.extend_from_slice(&self.cky_r.to_be_bytes());
        out.push(self.next_payload);
        out.push(VERSION);
        out.push(self.exchange);
        out.push(self.flags);
        put_u32(out, self.message_id);
        put_u32(out, self.length);
    }
}

/// Which payloads a chain may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chain {
    /// A cleartext Main Mode message (1 - 4) or Informational (a notify before keys
    /// exist): SA, KE, Nonce, Vendor ID, NAT-D, CR, Notify, and types we do not know.
    /// Never ID, HASH, SIG, CERT or Delete, which are protected in Main Mode.
    Clear,
    /// Cleartext Aggressive Mode: its first two messages also carry ID and HASH.
    ClearAggressive,
    /// A decrypted body: anything but a proposal or transform payload outside an SA
    /// (`Payload::parse` refuses those).
    Inner,
}

impl Chain {
    fn allows(self, t: u8) -> Result<(), ParseError> {
        use ptype::*;
        let protected = matches!(t, ID | HASH | SIG | CERT | DELETE | NAT_OA | NAT_OA_DRAFT);
        match self {
            Self::Clear if protected => Err(ParseError::Cleartext(t)),
            Self::ClearAggressive if matches!(t, SIG | CERT | DELETE) => Err(ParseError::Cleartext(t)),
            _ => Ok(()),
        }
    }
}

/// A parsed message: the header, the payloads, and the chain as received (decrypted,
/// without padding) with each payload's span in it, which HASH_I/R (SAi_b, IDii_b) and
/// the Quick Mode and Informational HASH payloads are computed over.
#[derive(Debug)]
pub(crate) struct Message {
    pub(crate) header: Header,
    pub(crate) payloads: Vec<Payload>,
    /// The payload chain, generic headers included.
    pub(crate) chain: Zeroizing<Vec<u8>>,
    /// Span of each payload (generic header and body) in `chain`, in order.
    pub(crate) spans: Vec<Range<usize>>,
}

/// A payload's type and its span (generic header and body) in the chain.
type Span = (u8, Range<usize>);

/// Walks the chain of generic headers in `data` starting with type `first`: at most
/// `MAX_PAYLOADS`, each allowed by `chain`; returns the spans and where the chain ended.
/// Bytes after the last payload are allowed only when `padded` (a decrypted body).
fn walk(first: u8, data: &[u8], chain: Chain, padded: bool) -> Result<(Vec<Span>, usize), ParseError> {
    // Count first, so the span list is allocated once, for what is there.
    let mut count = 0usize;
    let end = walk_with(first, data, chain, &mut |_, _| count += 1)?;
    if !padded && end != data.len() {
        return Err(ParseError::TrailingBytes);
    }
    let mut spans = Vec::with_capacity(count);
    walk_with(first, data, chain, &mut |t, r| spans.push((t, r)))?;
    Ok((spans, end))
}

fn walk_with(first: u8, data: &[u8], chain: Chain, f: &mut dyn FnMut(u8, Range<usize>)) -> Result<usize, ParseError> {
    let mut this = first;
    let mut pos = 0usize;
    let mut count = 0usize;
    while this != ptype::NONE {
        count += 1;
        if count > MAX_PAYLOADS {
            return Err(ParseError::TooManyPayloads);
        }
        chain.allows(this)?;
        let mut r = Reader::new(data.get(pos..).ok_or(ParseError::Truncated)?);
        let next = r.u8().ok_or(ParseError::Truncated)?;
        r.u8().ok_or(ParseError::Truncated)?;
        let len = usize::from(r.u16().ok_or(ParseError::Truncated)?);
        if len < 4 || r.take(len - 4).is_none() {
            return Err(ParseError::Truncated);
        }
        f(this, pos..pos + len);
        pos += len;
        this = next;
    }
    Ok(pos)
}

/// Parses the bodies of a walked chain.
fn parse_bodies(chain: &[u8], spans: &[Span]) -> Result<Vec<Payload>, ParseError> {
    let mut out = Vec::with_capacity(spans.len());
    for (t, r) in spans {
        let body = chain.get(r.start + 4..r.end).ok_or(ParseError::Truncated)?;
        out.push(Payload::parse(*t, body).ok_or(ParseError::Payload(*t))?);
    }
    Ok(out)
}

impl Message {
    /// Parses a datagram. An encrypted message (E flag) comes back with no payloads and
    /// an empty chain: call [`Message::decrypt`] with the IV of its exchange. A Quick
    /// Mode message without the E flag is refused (`NotProtected`).
    pub(crate) fn parse(data: &[u8]) -> Result<Self, ParseError> {
        let header = Header::parse(data)?;
        let body = data.get(HEADER_LEN..).ok_or(ParseError::Truncated)?;
        if header.encrypted() {
            if body.is_empty() || body.len() % BLOCK != 0 {
                return Err(ParseError::Truncated);
            }
            return Ok(Self { header, payloads: Vec::new(), chain: Zeroizing::new(Vec::new()), spans: Vec::new() });
        }
        let chain = match header.exchange {
            exchange::QUICK => return Err(ParseError::NotProtected),
            exchange::AGGRESSIVE => Chain::ClearAggressive,
            _ => Chain::Clear,
        };
        let (walked, _) = walk(header.next_payload, body, chain, false)?;
        let payloads = parse_bodies(body, &walked)?;
        let spans = walked.into_iter().map(|(_, r)| r).collect();
        Ok(Self { header, payloads, chain: Zeroizing::new(body.to_vec()), spans })
    }

    /// Decrypts the body of `data` (the bytes given to `parse`, which must have had the
    /// E flag) with `key` and `iv`, and parses the chain inside; padding after the last
    /// payload is ignored (RFC 2408 3.5 does not fix its form). Returns the IV for the
    /// next message of this exchange (the last ciphertext block), which the caller keeps
    /// only once the message's HASH verified.
    pub(crate) fn decrypt(&mut self, data: &[u8], key: &AesKey, iv: &[u8; BLOCK]) -> Result<[u8; BLOCK], ParseError> {
        if !self.header.encrypted() {
            return Err(ParseError::NotProtected);
        }
        let ct = data.get(HEADER_LEN..).ok_or(ParseError::Truncated)?;
        let next_iv = last_block(ct).ok_or(ParseError::Truncated)?;
        let mut pt = Zeroizing::new(ct.to_vec());
        if !key.decrypt(iv, &mut pt) {
            return Err(ParseError::Decrypt);
        }
        let (walked, end) = walk(self.header.next_payload, &pt, Chain::Inner, true)?;
        let payloads = parse_bodies(&pt, &walked)?;
        pt.truncate(end);
        self.payloads = payloads;
        self.spans = walked.into_iter().map(|(_, r)| r).collect();
        self.chain = pt;
        Ok(next_iv)
    }

    /// The body (after the generic header) of the `i`th payload as received.
    pub(crate) fn body(&self, i: usize) -> Option<&[u8]> {
        let r = self.spans.get(i)?;
        self.chain.get(r.start + 4..r.end)
    }

    /// The chain after the `i`th payload (what a Quick Mode or Informational HASH
    /// payload in first place covers).
    pub(crate) fn after(&self, i: usize) -> Option<&[u8]> {
        let r = self.spans.get(i)?;
        self.chain.get(r.end..)
    }
}

/// The last block of `ct`, the IV of the next message.
fn last_block(ct: &[u8]) -> Option<[u8; BLOCK]> {
    let start = ct.len().checked_sub(BLOCK)?;
    ct.get(start..)?.try_into().ok()
}

/// Writes the payload chain of `payloads` (generic headers linked in order); the first
/// type is `payloads[0].ptype()`.
pub(crate) fn emit_chain(payloads: &[Payload]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        let start = out.len();
        out.push(payloads.get(i + 1).map_or(ptype::NONE, Payload::ptype));
        out.push(0);
        out.extend_from_slice(&[0, 0]);
        p.emit_body(&mut out);
        let len = out.len() - start;
        patch_u16(&mut out, start + 2, len);
    }
    out
}

/// A cleartext message: `header` (its next payload and length are filled in) and the
/// chain of `payloads`.
pub(crate) fn emit_clear(mut header: Header, payloads: &[Payload]) -> Vec<u8> {
    let chain = emit_chain(payloads);
    header.next_payload = payloads.first().map_or(ptype::NONE, Payload::ptype);
    header.flags &= !flags::ENCRYPTED;
    let mut out = Vec::with_capacity(HEADER_LEN + chain.len());
    header.length = u32::try_from(HEADER_LEN + chain.len()).unwrap_or(u32::MAX);
    header.emit(&mut out);
    out.extend_from_slice(&chain);
    out
}

/// An encrypted message: `header` with the E flag, the `chain` whose first payload
/// has type `first`, zero-padded to the block and encrypted with `key` from `iv`.
/// Returns the datagram and the IV of the next message of this exchange (its last
/// ciphertext block).
pub(crate) fn seal(
    mut header: Header,
    first: u8,
    chain: &[u8],
    key: &AesKey,
    iv: &[u8; BLOCK],
) -> (Vec<u8>, [u8; BLOCK]) {
    let padded = chain.len().div_ceil(BLOCK).max(1) * BLOCK;
    header.next_payload = first;
    header.flags |= flags::ENCRYPTED;
    header.length = u32::try_from(HEADER_LEN + padded).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(HEADER_LEN + padded);
    header.emit(&mut out);
    let mut body = Zeroizing::new(vec![0u8; padded]);
    if let Some(head) = body.get_mut(..chain.len()) {
        head.copy_from_slice(chain);
    }
    // Whole blocks by construction: encryption cannot fail.
    key.encrypt(iv, &mut body);
    out.extend_from_slice(&body);
    let next = last_block(&body).unwrap_or(*iv);
    (out, next)
}
