//! `nettool ikeflood`: spoofed IKE_SA_INIT requests, as a flood from the internet sends
//! them (RFC 7296 2.6 is the defence): each with a fresh random SPIi, one IKE proposal
//! `aes256gcm16-prfsha256-<group>` (x25519 = group 31 unless `--group` says otherwise), a
//! KE payload of the group's size (random bytes: any 32 bytes are an x25519 public value)
//! and a 32-byte nonce, from random source addresses of a prefix or from one address,
//! paced at `--rate` per second. On port 4500 each carries the non-ESP marker.
//!
//! Output, one line: `ikeflood sent=N errors=E seconds=S target=IP:PORT sources=CIDR,...`.
//! Also the IKE message builders `nettool hostile` starts from.

use std::fmt;
use std::net::SocketAddrV4;

use crate::spoof::{Pacer, RawSender, Sources};
use crate::XorShift;

/// IKE exchange types (RFC 7296 3.1).
pub const IKE_SA_INIT: u8 = 34;
/// IKE_AUTH.
pub const IKE_AUTH: u8 = 35;
/// CREATE_CHILD_SA.
pub const CREATE_CHILD_SA: u8 = 36;
/// INFORMATIONAL.
pub const INFORMATIONAL: u8 = 37;
/// Header flag: sent by the original initiator.
pub const FLAG_INITIATOR: u8 = 0x08;
/// Header flag: a response.
pub const FLAG_RESPONSE: u8 = 0x20;

/// Payload types (RFC 7296 3.2).
pub mod pt {
    /// Security Association.
    pub const SA: u8 = 33;
    /// Key Exchange.
    pub const KE: u8 = 34;
    /// Nonce.
    pub const NONCE: u8 = 40;
    /// Notify.
    pub const NOTIFY: u8 = 41;
    /// Delete.
    pub const DELETE: u8 = 42;
    /// Traffic Selector - Initiator.
    pub const TSI: u8 = 44;
    /// Traffic Selector - Responder.
    pub const TSR: u8 = 45;
    /// Encrypted and Authenticated.
    pub const SK: u8 = 46;
    /// Encrypted and Authenticated Fragment (RFC 7383).
    pub const SKF: u8 = 53;
}

/// The size of a KE payload's key data for a Diffie-Hellman group, if known.
pub fn ke_len(group: u16) -> Option<usize> {
    Some(match group {
        14 => 256,
        15 => 384,
        16 => 512,
        19 => 64,
        20 => 96,
        21 => 132,
        31 => 32,
        32 => 56,
        _ => return None,
    })
}

/// An IKE header (28 bytes); the length is set by [`finish`].
pub fn header(spi_i: u64, spi_r: u64, next: u8, exchange: u8, flags: u8, msg_id: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(1500);
    h.extend_from_slice(&spi_i.to_be_bytes());
    h.extend_from_slice(&spi_r.to_be_bytes());
    h.extend_from_slice(&[next, 0x20, exchange, flags]);
    h.extend_from_slice(&msg_id.to_be_bytes());
    h.extend_from_slice(&[0; 4]);
    h
}

/// Appends a payload with a generic header (`next`, not critical, length of `body` + 4).
pub fn payload(msg: &mut Vec<u8>, next: u8, body: &[u8]) {
    let len = (body.len() + 4).min(usize::from(u16::MAX)) as u16;
    msg.extend_from_slice(&[next, 0]);
    msg.extend_from_slice(&len.to_be_bytes());
    msg.extend_from_slice(body);
}

/// Sets the header's length field to the message's length.
pub fn finish(mut msg: Vec<u8>) -> Vec<u8> {
    let len = msg.len() as u32;
    if let Some(f) = msg.get_mut(24..28) {
        f.copy_from_slice(&len.to_be_bytes());
    }
    msg
}

/// One transform (RFC 7296 3.3.2) with optional attribute bytes; `last` ends the list.
fn transform(out: &mut Vec<u8>, last: bool, kind: u8, id: u16, attrs: &[u8]) {
    let len = (8 + attrs.len()) as u16;
    out.extend_from_slice(&[if last { 0 } else { 3 }, 0]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[kind, 0]);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(attrs);
}

/// The SA payload body of one IKE proposal AES-GCM-16-256 / PRF-HMAC-SHA2-256 / `group`.
pub fn sa_body(group: u16) -> Vec<u8> {
    let mut transforms = Vec::new();
    // ENCR_AES_GCM_16 (20) with Key Length (TV attribute 14) 256.
    transform(&mut transforms, false, 1, 20, &[0x80, 0x0e, 0x01, 0x00]);
    transform(&mut transforms, false, 2, 5, &[]);
    transform(&mut transforms, true, 4, group, &[]);
    let mut body = vec![0, 0];
    body.extend_from_slice(&((8 + transforms.len()) as u16).to_be_bytes());
    // Proposal 1, protocol IKE, no SPI, three transforms.
    body.extend_from_slice(&[1, 1, 0, 3]);
    body.extend_from_slice(&transforms);
    body
}

/// A complete IKE_SA_INIT request: random SPIi, SA, KE of `group`'s size, 32-byte nonce.
pub fn ike_sa_init(rng: &mut XorShift, group: u16) -> Option<Vec<u8>> {
    let key = ke_len(group)?;
    let spi_i = rng.next() | 1;
    let mut msg = header(spi_i, 0, pt::SA, IKE_SA_INIT, FLAG_INITIATOR, 0);
    payload(&mut msg, pt::KE, &sa_body(group));
    let mut ke = vec![0u8; 4 + key];
    ke[..2].copy_from_slice(&group.to_be_bytes());
    rng.fill(&mut ke[4..]);
    payload(&mut msg, pt::NONCE, &ke);
    let mut nonce = [0u8; 32];
    rng.fill(&mut nonce);
    payload(&mut msg, 0, &nonce);
    Some(finish(msg))
}

/// The UDP payload for an IKE message to `port`: on 4500 behind the non-ESP marker.
pub fn on_port(port: u16, ike: &[u8]) -> Vec<u8> {
    let mut d = Vec::with_capacity(ike.len() + 4);
    if port == 4500 {
        d.extend_from_slice(&[0; 4]);
    }
    d.extend_from_slice(ike);
    d
}

/// What to send.
pub struct FloodOpts {
    /// Destination.
    pub target: SocketAddrV4,
    /// How many requests.
    pub count: u64,
    /// Requests per second (`None`: as fast as the socket takes them).
    pub rate: Option<f64>,
    /// Source addresses.
    pub sources: Sources,
    /// Key exchange group of the proposal and the KE payload.
    pub group: u16,
    /// Random seed (SPIs, keys, nonces, sources).
    pub seed: u64,
}

/// What was sent.
pub struct FloodReport {
    sent: u64,
    errors: u64,
    seconds: f64,
    target: SocketAddrV4,
    sources: String,
}

impl fmt::Display for FloodReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ikeflood sent={} errors={} seconds={:.3} target={} sources={}",
            self.sent, self.errors, self.seconds, self.target, self.sources
        )
    }
}

/// Sends the flood.
pub fn run(opts: &FloodOpts) -> Result<FloodReport, String> {
    ke_len(opts.group).ok_or_else(|| format!("unsupported --group {}", opts.group))?;
    let mut tx = RawSender::open()?;
    let mut rng = XorShift::new(opts.seed);
    let pacer = Pacer::new(opts.rate);
    let port = opts.target.port();
    for i in 0..opts.count {
        pacer.wait(i);
        let msg = ike_sa_init(&mut rng, opts.group).ok_or("unsupported group")?;
        let src = SocketAddrV4::new(opts.sources.pick(&mut rng), port);
        tx.send_udp(src, opts.target, &on_port(port, &msg));
    }
    Ok(FloodReport {
        sent: opts.count,
        errors: tx.errors,
        seconds: pacer.elapsed().as_secs_f64(),
        target: opts.target,
        sources: opts.sources.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks a message's payload chain: `(type, body)` of each, or `None` if a length is off.
    fn payloads(msg: &[u8]) -> Option<Vec<(u8, &[u8])>> {
        let mut next = *msg.get(16)?;
        let mut rest = msg.get(28..)?;
        let mut out = Vec::new();
        while next != 0 {
            let len = usize::from(u16::from_be_bytes(rest.get(2..4)?.try_into().ok()?));
            out.push((next, rest.get(4..len)?));
            next = rest[0];
            rest = &rest[len..];
        }
        rest.is_empty().then_some(out)
    }

    #[test]
    fn ike_sa_init_is_well_formed_with_fresh_spis() {
        let mut rng = XorShift::new(9);
        let a = ike_sa_init(&mut rng, 31).unwrap();
        let b = ike_sa_init(&mut rng, 31).unwrap();
        assert_ne!(a[..8], b[..8], "fresh SPIi each time");
        assert_eq!(a[8..16], [0; 8]);
        assert_eq!((a[17], a[18], a[19]), (0x20, IKE_SA_INIT, FLAG_INITIATOR));
        assert_eq!(u32::from_be_bytes(a[24..28].try_into().unwrap()) as usize, a.len());
        let p = payloads(&a).unwrap();
        let kinds: Vec<u8> = p.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, [pt::SA, pt::KE, pt::NONCE]);
        assert_eq!(p[1].1.len(), 4 + 32);
        assert_eq!(u16::from_be_bytes([p[1].1[0], p[1].1[1]]), 31);
        assert_eq!(p[2].1.len(), 32);
        // The proposal: length matches, three transforms, the last names the group.
        let sa = p[0].1;
        assert_eq!(usize::from(u16::from_be_bytes([sa[2], sa[3]])), sa.len());
        assert_eq!(sa[7], 3);
        assert_eq!(sa[sa.len() - 4..], [4, 0, 0, 31]);
        let modp = ike_sa_init(&mut rng, 14).unwrap();
        assert_eq!(payloads(&modp).unwrap()[1].1.len(), 4 + 256);
        assert!(ike_sa_init(&mut rng, 99).is_none());
    }

    #[test]
    fn port_4500_gets_the_marker() {
        assert_eq!(on_port(4500, &[1, 2]), [0, 0, 0, 0, 1, 2]);
        assert_eq!(on_port(500, &[1, 2]), [1, 2]);
    }
}
