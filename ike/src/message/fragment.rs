//! IKE message fragmentation (RFC 7383): the Encrypted Fragment payload (SKF), splitting
//! the plaintext of an SK payload into fragments that each fit one datagram, and
//! reassembling fragments with bounded memory.
//!
//! Each fragment is a message of its own: the IKE header of the original message (its
//! Length adjusted), then one SKF payload, whose generic header is followed by the
//! Fragment Number and Total Fragments (2 octets each), then IV, a chunk of the
//! original SK plaintext encrypted, padding and ICV. The associated data (or what the
//! ICV covers) is the IKE header and those 8 octets of SKF header, so every fragment
//! is authenticated on its own, through the same [`SkCipher`] as SK payloads.
//!
//! Reassembly never stores anything an attacker without the IKE SA's keys could have
//! sent: a fragment is authenticated before it is kept (RFC 7383 2.6). Its caps bound
//! what even a peer with keys can make us hold: [`MAX_FRAGMENTS`] fragments and
//! [`MAX_REASSEMBLED`] plaintext octets per message, and one message per direction per
//! IKE SA (the window is one: the peer's next request, the response to ours).
//!
//! This module owns the byte layout and the bookkeeping; `sa` decides which message ID
//! may be reassembled and what happens to the result.

use super::{Header, Message, ParseError, HEADER_LEN};
use crate::crypto::SkCipher;
use crate::message::ptype;
use zeroize::Zeroizing;

/// Total Fragments we accept in one message. With the smallest fragments anyone sends
/// (576-octet IPv4 datagrams, about 480 octets of plaintext each) 64 fragments carry
/// 30 KiB, more than [`MAX_REASSEMBLED`] holds anyway.
pub const MAX_FRAGMENTS: u16 = 64;

/// Plaintext octets one message in reassembly holds at most. The largest messages we
/// know (an IKE_AUTH request with a hundred IPv6 selectors each way, or a certificate
/// chain from a peer that sends one) stay under 16 KiB; strongSwan refuses reassembled
/// messages over 10,000 octets by default. Twice that leaves room and bounds what one
/// IKE SA can make us hold to 2 x 32 KiB.
pub const MAX_REASSEMBLED: usize = 32 * 1024;

/// Generic payload header plus Fragment Number and Total Fragments.
const SKF_HEADER_LEN: usize = 8;

/// The smallest plaintext chunk we put in a fragment, whatever `fragment_size` says.
const MIN_CHUNK: usize = 64;

/// IP, UDP and non-ESP marker octets in front of an IKE message: `fragment_size` is the
/// size of the whole IP datagram (as strongSwan's `charon.fragment_size`), and we
/// always leave room for the 4-octet marker of port 4500.
pub(crate) fn datagram_overhead(ipv6: bool) -> usize {
    (if ipv6 { 40 } else { 20 }) + 8 + 4
}

/// Length of the whole message if `chain_len` octets of payload chain travel in one SK
/// payload (with the fewest padding octets the cipher needs).
pub(crate) fn sealed_len(chain_len: usize, cipher: &SkCipher) -> usize {
    HEADER_LEN + 4 + cipher.iv_len() + padded(chain_len, cipher.block_len()) + cipher.icv_len()
}

/// `len` plaintext octets plus the Pad Length octet, rounded up to the block length.
fn padded(len: usize, block: usize) -> usize {
    let block = block.max(1);
    (len + 1).div_ceil(block) * block
}

/// The most plaintext octets one fragment of at most `max_len` octets (IKE header
/// included) carries.
fn chunk_len(max_len: usize, cipher: &SkCipher) -> usize {
    let block = cipher.block_len().max(1);
    let room = max_len.saturating_sub(HEADER_LEN + SKF_HEADER_LEN + cipher.iv_len() + cipher.icv_len());
    // Whole blocks, one octet of which is the Pad Length.
    ((room / block) * block).saturating_sub(1).max(MIN_CHUNK)
}

/// Splits the payload chain `chain` (first payload type `inner_first`) of a message
/// with header `header` into fragments of at most `max_len` octets each (IKE header
/// included), each sealed with its own IV from `next_iv`.
pub(crate) fn split(
    header: Header,
    inner_first: u8,
    chain: &[u8],
    cipher: &SkCipher,
    max_len: usize,
    next_iv: &mut dyn FnMut(&mut [u8]),
) -> Vec<Vec<u8>> {
    let chunk = chunk_len(max_len, cipher);
    let total = chain.len().div_ceil(chunk).max(1);
    let total16 = u16::try_from(total).unwrap_or(u16::MAX);
    let block = cipher.block_len().max(1);
    let mut out = Vec::with_capacity(total);
    for (i, piece) in chain.chunks(chunk).chain(chain.is_empty().then_some(&[][..])).enumerate() {
        let number = u16::try_from(i + 1).unwrap_or(u16::MAX);
        let body_len = padded(piece.len(), block);
        let skf_len = SKF_HEADER_LEN + cipher.iv_len() + body_len + cipher.icv_len();
        let mut h = header;
        h.next_payload = ptype::SKF;
        h.length = u32::try_from(HEADER_LEN + skf_len).unwrap_or(u32::MAX);
        let mut msg = Vec::with_capacity(HEADER_LEN + skf_len);
        h.emit(&mut msg);
        msg.push(if number == 1 { inner_first } else { ptype::NONE });
        msg.push(0);
        msg.extend_from_slice(&u16::try_from(skf_len).unwrap_or(u16::MAX).to_be_bytes());
        msg.extend_from_slice(&number.to_be_bytes());
        msg.extend_from_slice(&total16.to_be_bytes());
        let aad_len = msg.len();
        let mut iv = vec![0u8; cipher.iv_len()];
        next_iv(&mut iv);
        msg.extend_from_slice(&iv);
        let mut pt = Zeroizing::new(Vec::with_capacity(body_len + cipher.icv_len()));
        pt.extend_from_slice(piece);
        let pad = body_len - piece.len() - 1;
        pt.resize(piece.len() + pad, 0);
        pt.push(u8::try_from(pad).unwrap_or(0));
        cipher.seal(&iv, msg.get(..aad_len).unwrap_or_default(), &mut pt);
        msg.extend_from_slice(&pt);
        out.push(msg);
    }
    out
}

/// Why a fragment was not kept (counted in `IkeDrops`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FragDrop {
    /// Fragment Number or Total Fragments zero or out of order, fewer Total Fragments
    /// than the fragments already held, a different exchange under the same message ID,
    /// a reassembled message that does not parse, or too short to hold IV and ICV.
    Malformed,
    /// The ICV did not verify.
    Unauthenticated,
    /// Beyond [`MAX_FRAGMENTS`] or [`MAX_REASSEMBLED`].
    Limit,
    /// A fragment already held.
    Duplicate,
}

/// Fragment Number, Total Fragments and Next Payload of the SKF payload at `off` in
/// `data`, checked for consistency (neither zero, the number at most the total).
pub(crate) fn numbers(data: &[u8], off: usize) -> Result<(u16, u16, u8), FragDrop> {
    let hdr = data.get(off..off + SKF_HEADER_LEN).ok_or(FragDrop::Malformed)?;
    let next = hdr.first().copied().ok_or(FragDrop::Malformed)?;
    let number = u16::from_be_bytes([hdr.get(4).copied().unwrap_or(0), hdr.get(5).copied().unwrap_or(0)]);
    let total = u16::from_be_bytes([hdr.get(6).copied().unwrap_or(0), hdr.get(7).copied().unwrap_or(0)]);
    if number == 0 || total == 0 || number > total {
        return Err(FragDrop::Malformed);
    }
    Ok((number, total, next))
}

/// Authenticates and decrypts the SKF payload at `off` in `data` (the whole datagram as
/// received, its IKE header's Length checked by `Message::parse`); returns the
/// plaintext chunk without padding.
pub(crate) fn open_fragment(data: &[u8], off: usize, cipher: &SkCipher) -> Result<Zeroizing<Vec<u8>>, FragDrop> {
    let (iv_l, icv_l) = (cipher.iv_len(), cipher.icv_len());
    let aad = data.get(..off + SKF_HEADER_LEN).ok_or(FragDrop::Malformed)?;
    let iv = data.get(off + SKF_HEADER_LEN..off + SKF_HEADER_LEN + iv_l).ok_or(FragDrop::Malformed)?;
    let ct = data.get(off + SKF_HEADER_LEN + iv_l..).ok_or(FragDrop::Malformed)?;
    if ct.len() < icv_l + 1 {
        return Err(FragDrop::Malformed);
    }
    let mut buf = Zeroizing::new(ct.to_vec());
    let n = cipher.open(iv, aad, &mut buf).map_err(|_| FragDrop::Unauthenticated)?;
    buf.truncate(n);
    let pad = usize::from(*buf.last().ok_or(FragDrop::Malformed)?);
    let len = buf.len().checked_sub(1 + pad).ok_or(FragDrop::Malformed)?;
    buf.truncate(len);
    Ok(buf)
}

/// One message being reassembled.
struct Partial {
    mid: u32,
    exchange: u8,
    total: u16,
    /// The first inner payload type, from fragment 1.
    first: Option<u8>,
    /// By Fragment Number - 1.
    pieces: Vec<Option<Zeroizing<Vec<u8>>>>,
    held: usize,
    bytes: usize,
}

/// Fragments of one message per direction (see the module documentation).
#[derive(Default)]
pub(crate) struct Reassembly {
    partial: Option<Partial>,
}

impl Reassembly {
    /// Takes the fragment `msg` (`data` as received, `msg.skf` set) of the message with
    /// message ID `msg.header.message_id`, which the caller has checked is the one it
    /// expects. Returns the whole message once every fragment is in, `None` while some
    /// are missing. A fragment of another message ID than the one held replaces it.
    pub(crate) fn add(&mut self, data: &[u8], msg: &Message, cipher: &SkCipher) -> Result<Option<Message>, FragDrop> {
        let Some((_, off)) = msg.skf else { return Err(FragDrop::Malformed) };
        let h = msg.header;
        let (number, total, next) = numbers(data, off)?;
        if total > MAX_FRAGMENTS {
            return Err(FragDrop::Limit);
        }
        let index = usize::from(number - 1);
        // Checks that need no decryption: nothing is stored yet.
        if let Some(p) = self.partial.as_ref().filter(|p| p.mid == h.message_id) {
            if p.exchange != h.exchange || total < p.total {
                // RFC 7383 2.6: fewer Total Fragments than held: the sender has moved on to
                // larger fragments; this one is stale.
                return Err(FragDrop::Malformed);
            }
            if total == p.total && p.pieces.get(index).is_some_and(Option::is_some) {
                return Err(FragDrop::Duplicate);
            }
        }
        let piece = open_fragment(data, off, cipher)?;
        let restart = match self.partial.as_ref() {
            Some(p) => p.mid != h.message_id || total > p.total,
            None => true,
        };
        if restart {
            // RFC 7383 2.6: more Total Fragments than held: start over with this one.
            self.partial = Some(Partial {
                mid: h.message_id,
                exchange: h.exchange,
                total,
                first: None,
                pieces: (0..total).map(|_| None).collect(),
                held: 0,
                bytes: 0,
            });
        }
        let Some(p) = self.partial.as_mut() else { return Err(FragDrop::Malformed) };
        if p.bytes + piece.len() > MAX_REASSEMBLED {
            // This message cannot complete within the cap: drop what is held too.
            self.partial = None;
            return Err(FragDrop::Limit);
        }
        if number == 1 {
            p.first = Some(next);
        }
        p.bytes += piece.len();
        p.held += 1;
        if let Some(slot) = p.pieces.get_mut(index) {
            *slot = Some(piece);
        }
        if p.held < usize::from(p.total) {
            return Ok(None);
        }
        let Some(p) = self.partial.take() else { return Err(FragDrop::Malformed) };
        let mut chain = Zeroizing::new(Vec::with_capacity(p.bytes));
        for piece in p.pieces.iter().flatten() {
            chain.extend_from_slice(piece);
        }
        let first = p.first.ok_or(FragDrop::Malformed)?;
        Message::reassembled(h, first, &chain).map(Some).map_err(|_: ParseError| FragDrop::Malformed)
    }

    /// Forgets whatever is held.
    pub(crate) fn clear(&mut self) {
        self.partial = None;
    }

    /// Plaintext octets held (for tests and the memory bound).
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn held_bytes(&self) -> usize {
        self.partial.as_ref().map_or(0, |p| p.bytes)
    }
}

/// Fragmentation state of an IKE SA.
#[derive(Default)]
pub(crate) struct Fragmentation {
    /// Both sides sent IKEV2_FRAGMENTATION_SUPPORTED in IKE_SA_INIT (or the IKE SA this
    /// one rekeyed had negotiated it).
    pub(crate) negotiated: bool,
    /// The peer's next request.
    pub(crate) requests: Reassembly,
    /// The response to our outstanding request.
    pub(crate) responses: Reassembly,
}

/// Splitting and reassembly as an IKE SA runs them, reachable from outside the crate for
/// the allocation test and the `ike_parse` fuzz target. Feature `testing` only; not an
/// API.
#[cfg(any(test, feature = "testing"))]
pub(crate) mod probe {
    use super::{FragDrop, Reassembly};
    use crate::crypto::SkCipher;
    use crate::message::{exchange, flags, Header, Message};

    /// The fragments, of at most `max_len` octets each, of an IKE_AUTH request whose SK
    /// payload would hold `chain` (any bytes) as a chain starting with type `first`.
    pub fn fragment_probe(first: u8, chain: &[u8], max_len: usize, cipher: &SkCipher) -> Vec<Vec<u8>> {
        let header = Header {
            spi_i: 0x0102_0304_0506_0708,
            spi_r: 0x1112_1314_1516_1718,
            next_payload: 0,
            exchange: exchange::IKE_AUTH,
            flags: flags::INITIATOR,
            message_id: 1,
            length: 0,
        };
        let mut iv = 0u64;
        super::split(header, first, chain, cipher, max_len, &mut |b: &mut [u8]| {
            iv += 1;
            let c = iv.to_be_bytes();
            for (d, s) in b.iter_mut().rev().zip(c.iter().rev()) {
                *d = *s;
            }
        })
    }

    /// One direction's reassembly, fed datagrams as an IKE SA feeds it.
    #[derive(Default)]
    pub struct ReassemblyProbe(Reassembly);

    /// What one datagram did to a [`ReassemblyProbe`].
    #[derive(Debug, PartialEq, Eq)]
    pub enum ProbeResult {
        /// Not an IKE fragment (or did not parse).
        NotFragment,
        /// Kept; more fragments missing.
        Held,
        /// The message is complete: this many payloads.
        Complete(usize),
        /// Dropped.
        Dropped(FragDrop),
    }

    impl ReassemblyProbe {
        /// Parses `data` (`Message::parse`) and, if it is an IKE fragment, adds it.
        pub fn add(&mut self, data: &[u8], cipher: &SkCipher) -> ProbeResult {
            let Ok(msg) = Message::parse(data) else { return ProbeResult::NotFragment };
            if msg.skf.is_none() {
                return ProbeResult::NotFragment;
            }
            match self.0.add(data, &msg, cipher) {
                Ok(Some(m)) => ProbeResult::Complete(m.payloads.len()),
                Ok(None) => ProbeResult::Held,
                Err(e) => ProbeResult::Dropped(e),
            }
        }

        /// Plaintext octets held.
        pub fn held_bytes(&self) -> usize {
            self.0.held_bytes()
        }
    }
}

#[cfg(test)]
mod tests;
