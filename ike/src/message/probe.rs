//! The message parser as the endpoint runs it, reachable from outside the crate for the
//! allocation test (`ike/tests/parse_alloc.rs`) and the `ike_parse` fuzz target. Feature
//! `testing` only; not an API.

use super::{exchange, flags, seal_plaintext, Header, Message, ParseError, HEADER_LEN, MAX_PAYLOADS};
use crate::crypto::SkCipher;

/// Most payloads one chain may hold.
pub const PROBE_MAX_PAYLOADS: usize = MAX_PAYLOADS;

/// Parses `data` as `Endpoint::handle_datagram` does (`Message::parse`); the number of
/// payloads parsed.
pub fn parse_cost_probe(data: &[u8]) -> Result<usize, ParseError> {
    Message::parse(data).map(|m| m.payloads.len())
}

/// Parses `data` and decrypts its SK payload with `cipher`, as an IKE SA does with a
/// message for it (`Message::parse`, then `Message::decrypt`); the number of payloads.
pub fn decrypt_cost_probe(data: &[u8], cipher: &SkCipher) -> Result<usize, ParseError> {
    let mut m = Message::parse(data)?;
    m.decrypt(data, cipher)?;
    Ok(m.payloads.len())
}

/// An INFORMATIONAL request (or IKE_AUTH with `auth`) whose SK payload holds `chain`,
/// any bytes, as the payload chain that starts with type `first`, sealed with `cipher`.
/// The message is at most 65,535 bytes: `chain` is cut to fit.
pub fn seal_probe(auth: bool, first: u8, chain: &[u8], cipher: &SkCipher) -> Vec<u8> {
    let header = Header {
        spi_i: 0x0102_0304_0506_0708,
        spi_r: 0x1112_1314_1516_1718,
        next_payload: 0,
        exchange: if auth { exchange::IKE_AUTH } else { exchange::INFORMATIONAL },
        flags: flags::INITIATOR,
        message_id: 1,
        length: 0,
    };
    // Header, SK header, IV, padding to the block and the pad length octet, ICV.
    let block = cipher.block_len();
    let room = (usize::from(u16::MAX) - HEADER_LEN - 4 - cipher.iv_len() - cipher.icv_len()) / block * block - 1;
    let mut pt = chain.get(..room).unwrap_or(chain).to_vec();
    super::pad_plaintext(&mut pt, block);
    let mut iv = vec![0u8; cipher.iv_len()];
    if let Some(last) = iv.last_mut() {
        *last = 1;
    }
    seal_plaintext(header, first, pt, cipher, &iv)
}
