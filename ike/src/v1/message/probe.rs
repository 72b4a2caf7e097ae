//! The IKEv1 parser as an IKEv1 SA will run it, reachable from outside the crate for the
//! allocation test (`ike/tests/v1_parse_alloc.rs`). Feature `testing` only; not an API.

use super::{exchange, seal, Header, Message, ParseError, BLOCK};
use crate::crypto::AesKey;
use ipsec_types::EncrAlg;

/// The key and IV of the probes (AES-128, fixed bytes).
fn probe_key() -> Option<AesKey> {
    AesKey::new(EncrAlg::AesCbc128, &[0x5a; 16])
}
const PROBE_IV: [u8; BLOCK] = [0xa5; BLOCK];

/// Parses `data` (`Message::parse`) and, if it is encrypted, decrypts it with the probe
/// key; the number of payloads.
pub fn v1_parse_cost_probe(data: &[u8]) -> Result<usize, ParseError> {
    let mut m = Message::parse(data)?;
    if m.header.encrypted() {
        let key = probe_key().ok_or(ParseError::Decrypt)?;
        m.decrypt(data, &key, &PROBE_IV)?;
    }
    Ok(m.payloads.len())
}

/// A Quick Mode message whose encrypted body is `chain` (any bytes, first payload type
/// `first`) under the probe key; at most 65,535 bytes (`chain` is cut to fit).
pub fn v1_seal_probe(first: u8, chain: &[u8]) -> Vec<u8> {
    let header =
        Header { cky_i: 1, cky_r: 2, next_payload: 0, exchange: exchange::QUICK, flags: 0, message_id: 3, length: 0 };
    let room = (usize::from(u16::MAX) - super::HEADER_LEN) / BLOCK * BLOCK;
    let chain = chain.get(..room).unwrap_or(chain);
    match probe_key() {
        Some(key) => seal(header, first, chain, &key, &PROBE_IV).0,
        None => Vec::new(),
    }
}
