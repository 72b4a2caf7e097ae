//! Packets for tests, built by etherparse with correct lengths and checksums: the only
//! place tests make IPv4, IPv6, UDP and ICMP headers.

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{IcmpEchoHeader, Icmpv4Header, Icmpv4Type, PacketBuilder};

/// Hop limit / TTL of every built packet.
pub const TTL: u8 = 64;

/// `len` payload bytes counting up from `start` (wrapping), so a corrupted or shifted
/// payload shows.
pub fn pattern(start: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| start.wrapping_add(i as u8)).collect()
}

/// An IPv4/UDP packet with correct header and UDP checksums.
///
/// Panics if the payload does not fit one IPv4 packet (a test's own mistake).
pub fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ipv4(src.octets(), dst.octets(), TTL).udp(sport, dport);
    let mut p = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut p, payload).expect("the payload fits one IPv4/UDP packet");
    p
}

/// An IPv6/UDP packet with a correct UDP checksum.
///
/// Panics if the payload does not fit one IPv6 packet (a test's own mistake).
pub fn ipv6_udp(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ipv6(src.octets(), dst.octets(), TTL).udp(sport, dport);
    let mut p = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut p, payload).expect("the payload fits one IPv6/UDP packet");
    p
}

/// An IPv4 ICMP echo request with correct checksums.
///
/// Panics if the payload does not fit one IPv4 packet (a test's own mistake).
pub fn ipv4_echo_request(src: Ipv4Addr, dst: Ipv4Addr, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ipv4(src.octets(), dst.octets(), TTL).icmpv4_echo_request(id, seq);
    let mut p = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut p, payload).expect("the payload fits one IPv4 packet");
    p
}

/// An ICMP echo request message alone (no IP header, for an ICMP socket), checksummed.
pub fn icmpv4_echo_request(id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let header = Icmpv4Header::with_checksum(Icmpv4Type::EchoRequest(IcmpEchoHeader { id, seq }), payload);
    let mut p = header.to_bytes().to_vec();
    p.extend_from_slice(payload);
    p
}

/// `ip` (an IPv4 packet) in an Ethernet II frame with zero MAC addresses, as a capture
/// on a veth shows it.
pub fn ethernet_ipv4(ip: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.extend_from_slice(ip);
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    /// RFC 1071 sum over `data`, folded; 0xffff for data that carries its own checksum.
    fn ones_complement_sum(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for pair in data.chunks(2) {
            acc += u32::from(pair[0]) << 8 | u32::from(*pair.get(1).unwrap_or(&0));
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn ipv4_udp_has_valid_lengths_and_checksums() {
        let p = ipv4_udp(Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(10, 2, 0, 1), 4000, 5000, &pattern(0, 33));
        assert_eq!(p.len(), 20 + 8 + 33);
        assert_eq!(ones_complement_sum(&p[..20]), 0xffff, "IPv4 header checksum");
        let s = SlicedPacket::from_ip(&p).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &s.net else { panic!("not IPv4") };
        assert_eq!(ip.header().total_len(), 61);
        let Some(TransportSlice::Udp(udp)) = &s.transport else { panic!("not UDP") };
        assert_eq!((udp.source_port(), udp.destination_port(), udp.length()), (4000, 5000, 41));
        let h = udp.to_header();
        assert_eq!(h.checksum, h.calc_checksum_ipv4(&ip.header().to_header(), udp.payload()).unwrap());
    }

    #[test]
    fn ipv6_udp_has_valid_lengths() {
        let p = ipv6_udp("2001:db8:1::1".parse().unwrap(), "2001:db8:2::1".parse().unwrap(), 1, 2, &[7; 10]);
        assert_eq!(p.len(), 40 + 8 + 10);
        assert_eq!((p[0] >> 4, u16::from_be_bytes([p[4], p[5]]), p[6]), (6, 18, 17));
    }

    #[test]
    fn echo_requests_checksum_to_zero() {
        let m = icmpv4_echo_request(0x1234, 7, &pattern(8, 56));
        assert_eq!(ones_complement_sum(&m), 0xffff);
        assert_eq!((m[0], &m[4..8]), (8, &[0x12, 0x34, 0, 7][..]));
        let p = ipv4_echo_request(Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(10, 2, 0, 1), 0x1234, 7, &pattern(8, 56));
        assert_eq!((p[9], &p[20..]), (1, &m[..]));
        assert_eq!(ones_complement_sum(&p[..20]), 0xffff);
    }
}
