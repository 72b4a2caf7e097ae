//! Wire views used by the datapath: the inner IPv4/IPv6 packet (addresses, protocol,
//! ports for selector checks), the ESP header, and the RFC 3948 UDP-4500 classifier.
//!
//! Owns: bounds-checked parsing that never panics on any input. Does not own:
//! cryptography or SA state.

use crate::Udp4500;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Next header value for an inner IPv4 packet (IP-in-IP).
pub(crate) const NH_IPV4: u8 = 4;
/// Next header value for an inner IPv6 packet.
pub(crate) const NH_IPV6: u8 = 41;

/// What the selector checks need from an inner packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Inner {
    pub(crate) src: IpAddr,
    pub(crate) dst: IpAddr,
    /// Upper-layer protocol (after IPv6 extension headers).
    pub(crate) proto: u8,
    /// Ports, for TCP/UDP/SCTP/UDP-Lite when this is the first (or only) fragment.
    pub(crate) src_port: Option<u16>,
    pub(crate) dst_port: Option<u16>,
    /// Length of the IP packet from its header (<= the slice it came in).
    pub(crate) len: usize,
    /// ESP next header value for this packet (4 or 41).
    pub(crate) next_header: u8,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([*s.first()?, *s.get(1)?]))
}

fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 132 | 136)
}

fn ports(b: &[u8], at: usize, end: usize) -> (Option<u16>, Option<u16>) {
    if at.checked_add(4).is_some_and(|e| e <= end) {
        (be16(b, at), be16(b, at + 2))
    } else {
        (None, None)
    }
}

/// Parses the inner packet's IP header. `None` if it is not a well-formed IPv4 or
/// IPv6 header whose length fits in `pkt`.
pub(crate) fn parse_inner(pkt: &[u8]) -> Option<Inner> {
    match pkt.first()? >> 4 {
        4 => parse_v4(pkt),
        6 => parse_v6(pkt),
        _ => None,
    }
}

fn parse_v4(pkt: &[u8]) -> Option<Inner> {
    let ihl = usize::from(pkt.first()? & 0x0f) * 4;
    let len = usize::from(be16(pkt, 2)?);
    if ihl < 20 || len < ihl || len > pkt.len() {
        return None;
    }
    let a: [u8; 4] = pkt.get(12..16)?.try_into().ok()?;
    let b: [u8; 4] = pkt.get(16..20)?.try_into().ok()?;
    let proto = *pkt.get(9)?;
    let frag_offset = be16(pkt, 6)? & 0x1fff;
    let (src_port, dst_port) = if has_ports(proto) && frag_offset == 0 { ports(pkt, ihl, len) } else { (None, None) };
    Some(Inner {
        src: IpAddr::V4(Ipv4Addr::from(a)),
        dst: IpAddr::V4(Ipv4Addr::from(b)),
        proto,
        src_port,
        dst_port,
        len,
        next_header: NH_IPV4,
    })
}

fn parse_v6(pkt: &[u8]) -> Option<Inner> {
    let payload = usize::from(be16(pkt, 4)?);
    let len = 40usize.checked_add(payload)?;
    if payload == 0 || len > pkt.len() {
        // payload 0 would be a jumbogram, which tunnels never carry.
        return None;
    }
    let a: [u8; 16] = pkt.get(8..24)?.try_into().ok()?;
    let b: [u8; 16] = pkt.get(24..40)?.try_into().ok()?;
    // Walk a bounded number of extension headers to find the upper-layer protocol.
    let mut nh = *pkt.get(6)?;
    let mut off = 40usize;
    let mut first_fragment = true;
    for _ in 0..8 {
        match nh {
            0 | 43 | 60 => {
                let hlen = (usize::from(*pkt.get(off + 1)?) + 1) * 8;
                nh = *pkt.get(off)?;
                off = off.checked_add(hlen)?;
            }
            44 => {
                first_fragment = be16(pkt, off + 2)? >> 3 == 0;
                nh = *pkt.get(off)?;
                off = off.checked_add(8)?;
            }
            51 => {
                let hlen = (usize::from(*pkt.get(off + 1)?) + 2) * 4;
                nh = *pkt.get(off)?;
                off = off.checked_add(hlen)?;
            }
            _ => break,
        }
        if off > len {
            return None;
        }
    }
    let (src_port, dst_port) = if has_ports(nh) && first_fragment { ports(pkt, off, len) } else { (None, None) };
    Some(Inner {
        src: IpAddr::V6(Ipv6Addr::from(a)),
        dst: IpAddr::V6(Ipv6Addr::from(b)),
        proto: nh,
        src_port,
        dst_port,
        len,
        next_header: NH_IPV6,
    })
}

/// RFC 3948 section 2.2 demultiplexing of a UDP-4500 payload.
pub(crate) fn classify(payload: &[u8]) -> Udp4500<'_> {
    match payload {
        [0xff] => Udp4500::Keepalive,
        [0, 0, 0, 0, rest @ ..] => Udp4500::Ike(rest),
        p if p.len() >= 8 => Udp4500::Esp(p),
        _ => Udp4500::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_with_ports_and_fragment() {
        let mut p = testkit::packet::ipv4_udp(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), 5000, 53, &[]);
        let i = parse_inner(&p).unwrap();
        assert_eq!((i.src_port, i.dst_port, i.proto, i.len), (Some(5000), Some(53), 17, 28));
        // Each change below breaks the valid packet on purpose.
        p[7] = 1; // non-first fragment: no ports
        assert_eq!(parse_inner(&p).unwrap().src_port, None);
        p[2..4].copy_from_slice(&29u16.to_be_bytes()); // longer than the slice
        assert_eq!(parse_inner(&p), None);
        p[2..4].copy_from_slice(&28u16.to_be_bytes());
        p[0] = 0x44; // IHL 16 bytes
        assert_eq!(parse_inner(&p), None);
    }

    #[test]
    fn v6_walks_extension_headers() {
        use testkit::packet::{Ipv6, Tcp};
        // A hop-by-hop options header, then TCP.
        let ip = Ipv6 { hop_by_hop: true, ..Ipv6::new(Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST) };
        let mut p = ip.tcp(&Tcp::new(443, 1234), &[]);
        let i = parse_inner(&p).unwrap();
        assert_eq!((i.proto, i.src_port, i.dst_port, i.next_header), (6, Some(443), Some(1234), NH_IPV6));
        p[41] = 9; // corrupted: extension header longer than the packet
        assert_eq!(parse_inner(&p), None);
    }

    #[test]
    fn classify_udp4500() {
        assert_eq!(classify(&[0xff]), Udp4500::Keepalive);
        assert_eq!(classify(&[0, 0, 0, 0, 1, 2]), Udp4500::Ike(&[1, 2]));
        assert_eq!(classify(&[0, 0, 0, 0]), Udp4500::Ike(&[]));
        assert_eq!(classify(&[1, 2, 3, 4, 5, 6, 7, 8]), Udp4500::Esp(&[1, 2, 3, 4, 5, 6, 7, 8]));
        assert_eq!(classify(&[1, 2, 3, 4, 5, 6, 7]), Udp4500::Malformed);
        assert_eq!(classify(&[]), Udp4500::Malformed);
        assert_eq!(classify(&[0, 0, 0]), Udp4500::Malformed);
    }
}
