//! Packets for tests, built by etherparse with correct lengths and checksums: the only
//! place tests make IPv4, IPv6, UDP, TCP and ICMP headers, and check their checksums.
//!
//! [`Ipv4`] and [`Ipv6`] hold the header fields a test chooses and build UDP, TCP
//! ([`Tcp`]) or raw payloads on top; [`ipv4_udp`] and friends are the common cases. A
//! test that needs a wrong checksum or a malformed header builds the valid packet here
//! and corrupts the bytes itself, saying so.

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::checksum::Sum16BitWords;
use etherparse::err::packet::BuildWriteError;
use etherparse::{
    IcmpEchoHeader, Icmpv4Header, Icmpv4Type, IpEcn, IpHeaders, IpNumber, Ipv4Extensions, Ipv4Header, Ipv4HeaderSlice,
    Ipv4Options, Ipv6Extensions, Ipv6Header, Ipv6RawExtHeader, NetSlice, PacketBuilder, PacketBuilderStep,
    SlicedPacket, TcpHeader, TcpOptionElement, TransportSlice,
};

/// Hop limit / TTL of every built packet unless a test sets its own.
pub const TTL: u8 = 64;

/// `len` payload bytes counting up from `start` (wrapping), so a corrupted or shifted
/// payload shows.
pub fn pattern(start: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| start.wrapping_add(i as u8)).collect()
}

/// The IPv4 header fields a test chooses; etherparse fills in the lengths, the protocol
/// and the header checksum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub id: u16,
    pub dont_fragment: bool,
    pub ttl: u8,
    /// The two ECN bits (2 is ECT(0)).
    pub ecn: u8,
    /// Header options: a multiple of 4 bytes, at most 40 (the IHL grows with them).
    pub options: Vec<u8>,
}

impl Ipv4 {
    /// `src` to `dst` with ID 0, DF set, TTL [`TTL`], no ECN and no options.
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        Self { src, dst, id: 0, dont_fragment: true, ttl: TTL, ecn: 0, options: Vec::new() }
    }

    /// The header fields of the IPv4 packet `ip` (`None` if it does not start with a
    /// well-formed IPv4 header), to build packets like it.
    pub fn of(ip: &[u8]) -> Option<Self> {
        let h = Ipv4HeaderSlice::from_slice(ip).ok()?;
        Some(Self {
            src: h.source_addr(),
            dst: h.destination_addr(),
            id: h.identification(),
            dont_fragment: h.dont_fragment(),
            ttl: h.ttl(),
            ecn: h.ecn().value(),
            options: h.options().to_vec(),
        })
    }

    fn builder(&self) -> PacketBuilderStep<IpHeaders> {
        let header = Ipv4Header {
            source: self.src.octets(),
            destination: self.dst.octets(),
            identification: self.id,
            dont_fragment: self.dont_fragment,
            time_to_live: self.ttl,
            ecn: IpEcn::try_new(self.ecn).expect("ECN is two bits"),
            options: Ipv4Options::try_from(&self.options[..]).expect("IPv4 options: a multiple of 4, at most 40 bytes"),
            ..Ipv4Header::default()
        };
        PacketBuilder::ip(IpHeaders::Ipv4(header, Ipv4Extensions::default()))
    }

    /// A UDP datagram with correct lengths and checksums.
    ///
    /// Panics if the payload does not fit one IPv4 packet (a test's own mistake).
    pub fn udp(&self, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        udp_on(self.builder(), sport, dport, payload)
    }

    /// A TCP segment with correct lengths and checksums.
    ///
    /// Panics if the payload does not fit one IPv4 packet (a test's own mistake).
    pub fn tcp(&self, tcp: &Tcp, payload: &[u8]) -> Vec<u8> {
        tcp_on(self.builder(), tcp, payload)
    }

    /// `payload` as it is behind the IPv4 header, with protocol number `proto` (e.g.
    /// 50 for ESP): no transport header is built.
    pub fn raw(&self, proto: u8, payload: &[u8]) -> Vec<u8> {
        let b = self.builder();
        build(b.size(payload.len()), |p| b.write(p, IpNumber(proto), payload))
    }
}

/// The IPv6 header fields a test chooses; etherparse fills in the payload length and
/// the next-header numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv6 {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub hop_limit: u8,
    /// An 8-byte hop-by-hop options header (a PadN option) before the transport header.
    pub hop_by_hop: bool,
}

impl Ipv6 {
    /// `src` to `dst` with hop limit [`TTL`] and no extension headers.
    pub fn new(src: Ipv6Addr, dst: Ipv6Addr) -> Self {
        Self { src, dst, hop_limit: TTL, hop_by_hop: false }
    }

    fn builder(&self) -> PacketBuilderStep<IpHeaders> {
        let header = Ipv6Header {
            source: self.src.octets(),
            destination: self.dst.octets(),
            hop_limit: self.hop_limit,
            ..Ipv6Header::default()
        };
        let pad_n = [1, 4, 0, 0, 0, 0];
        let exts = Ipv6Extensions {
            hop_by_hop_options: self
                .hop_by_hop
                .then(|| Ipv6RawExtHeader::new_raw(IpNumber::TCP, &pad_n).expect("a 6-byte option area is valid")),
            ..Ipv6Extensions::default()
        };
        PacketBuilder::ip(IpHeaders::Ipv6(header, exts))
    }

    /// A UDP datagram with correct lengths and checksum.
    ///
    /// Panics if the payload does not fit one IPv6 packet (a test's own mistake).
    pub fn udp(&self, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        udp_on(self.builder(), sport, dport, payload)
    }

    /// A TCP segment with correct lengths and checksum.
    ///
    /// Panics if the payload does not fit one IPv6 packet (a test's own mistake).
    pub fn tcp(&self, tcp: &Tcp, payload: &[u8]) -> Vec<u8> {
        tcp_on(self.builder(), tcp, payload)
    }
}

/// TCP flag bits as they are on the wire (the 14th header byte).
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

/// The TCP header fields a test chooses; etherparse fills in the data offset and the
/// checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tcp {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    /// The acknowledgment number, written whether or not the ACK flag is set.
    pub ack: u32,
    /// Flag bits as on the wire ([`tcp_flags`]).
    pub flags: u8,
    pub window: u16,
    /// A timestamp option (value, echo reply) after two NOPs, as Linux sends it.
    pub timestamp: Option<(u32, u32)>,
}

impl Tcp {
    /// `sport` to `dport`, sequence and acknowledgment numbers 0, no flags, window
    /// 65535, no options.
    pub fn new(sport: u16, dport: u16) -> Self {
        Self { sport, dport, seq: 0, ack: 0, flags: 0, window: 65_535, timestamp: None }
    }

    fn header(&self) -> TcpHeader {
        use tcp_flags::*;
        let mut h = TcpHeader::new(self.sport, self.dport, self.seq, self.window);
        h.acknowledgment_number = self.ack;
        let f = |bit: u8| self.flags & bit != 0;
        (h.fin, h.syn, h.rst, h.psh, h.ack, h.urg, h.ece, h.cwr) =
            (f(FIN), f(SYN), f(RST), f(PSH), f(ACK), f(URG), f(ECE), f(CWR));
        if let Some((value, echo)) = self.timestamp {
            let options = [TcpOptionElement::Noop, TcpOptionElement::Noop, TcpOptionElement::Timestamp(value, echo)];
            h.set_options(&options).expect("12 option bytes fit");
        }
        h
    }
}

/// Writes a packet of `size` bytes with `write` (a [`PacketBuilder`]'s last step).
///
/// Panics if the payload does not fit one IP packet (a test's own mistake).
fn build(size: usize, write: impl FnOnce(&mut Vec<u8>) -> Result<(), BuildWriteError>) -> Vec<u8> {
    let mut p = Vec::with_capacity(size);
    write(&mut p).expect("the payload fits one IP packet");
    p
}

fn udp_on(ip: PacketBuilderStep<IpHeaders>, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = ip.udp(sport, dport);
    build(b.size(payload.len()), |p| b.write(p, payload))
}

fn tcp_on(ip: PacketBuilderStep<IpHeaders>, tcp: &Tcp, payload: &[u8]) -> Vec<u8> {
    let b = ip.tcp_header(tcp.header());
    build(b.size(payload.len()), |p| b.write(p, payload))
}

/// The RFC 1071 Internet checksum of `data` (etherparse's sum, complemented): zero for
/// data that carries its own correct checksum.
pub fn internet_checksum(data: &[u8]) -> u16 {
    // etherparse sums in native byte order: `to_be` turns the result into the number
    // the two checksum bytes spell on the wire.
    Sum16BitWords::new().add_slice(data).ones_complement().to_be()
}

/// True if `ip` starts with an IPv4 header whose checksum is correct.
pub fn ipv4_header_checksum_ok(ip: &[u8]) -> bool {
    Ipv4HeaderSlice::from_slice(ip).is_ok_and(|h| h.header_checksum() == h.to_header().calc_header_checksum())
}

/// True if the IP packet `ip` (IPv4 or IPv6, lengths consistent) carries TCP or UDP
/// whose checksum is correct. A UDP checksum of zero ("none") is not correct here.
pub fn transport_checksum_ok(ip: &[u8]) -> bool {
    let Ok(s) = SlicedPacket::from_ip(ip) else { return false };
    let expected = match (&s.net, &s.transport) {
        (Some(NetSlice::Ipv4(v4)), Some(TransportSlice::Tcp(t))) => {
            t.to_header().calc_checksum_ipv4(&v4.header().to_header(), t.payload()).ok()
        }
        (Some(NetSlice::Ipv6(v6)), Some(TransportSlice::Tcp(t))) => {
            t.to_header().calc_checksum_ipv6(&v6.header().to_header(), t.payload()).ok()
        }
        (Some(NetSlice::Ipv4(v4)), Some(TransportSlice::Udp(u))) => {
            u.to_header().calc_checksum_ipv4(&v4.header().to_header(), u.payload()).ok()
        }
        (Some(NetSlice::Ipv6(v6)), Some(TransportSlice::Udp(u))) => {
            u.to_header().calc_checksum_ipv6(&v6.header().to_header(), u.payload()).ok()
        }
        _ => None,
    };
    let actual = match &s.transport {
        Some(TransportSlice::Tcp(t)) => t.checksum(),
        Some(TransportSlice::Udp(u)) => u.checksum(),
        _ => return false,
    };
    expected == Some(actual) && actual != 0
}

/// An IPv4/UDP packet with correct header and UDP checksums ([`Ipv4::new`]'s fields).
///
/// Panics if the payload does not fit one IPv4 packet (a test's own mistake).
pub fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    Ipv4::new(src, dst).udp(sport, dport, payload)
}

/// An IPv6/UDP packet with a correct UDP checksum ([`Ipv6::new`]'s fields).
///
/// Panics if the payload does not fit one IPv6 packet (a test's own mistake).
pub fn ipv6_udp(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    Ipv6::new(src, dst).udp(sport, dport, payload)
}

/// An IPv4 ICMP echo request with correct checksums ([`Ipv4::new`]'s fields).
///
/// Panics if the payload does not fit one IPv4 packet (a test's own mistake).
pub fn ipv4_echo_request(src: Ipv4Addr, dst: Ipv4Addr, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let b = Ipv4::new(src, dst).builder().icmpv4_echo_request(id, seq);
    build(b.size(payload.len()), |p| b.write(p, payload))
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

    #[test]
    fn internet_checksum_of_the_rfc1071_example() {
        // RFC 1071 section 3: these words sum to 0xddf2; the checksum is its complement.
        assert_eq!(internet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), !0xddf2);
        assert_eq!(internet_checksum(&[0x00, 0x01, 0xf2]), !0xf201, "an odd byte is the high half of a word");
    }

    #[test]
    fn ipv4_udp_has_valid_lengths_and_checksums() {
        let p = ipv4_udp(Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(10, 2, 0, 1), 4000, 5000, &pattern(0, 33));
        assert_eq!(p.len(), 20 + 8 + 33);
        assert_eq!(internet_checksum(&p[..20]), 0, "IPv4 header checksum");
        assert!(ipv4_header_checksum_ok(&p));
        assert!(transport_checksum_ok(&p));
        let s = SlicedPacket::from_ip(&p).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &s.net else { panic!("not IPv4") };
        assert_eq!(ip.header().total_len(), 61);
        let Some(TransportSlice::Udp(udp)) = &s.transport else { panic!("not UDP") };
        assert_eq!((udp.source_port(), udp.destination_port(), udp.length()), (4000, 5000, 41));
    }

    #[test]
    fn ipv6_udp_has_valid_lengths() {
        let p = ipv6_udp("2001:db8:1::1".parse().unwrap(), "2001:db8:2::1".parse().unwrap(), 1, 2, &[7; 10]);
        assert_eq!(p.len(), 40 + 8 + 10);
        assert_eq!((p[0] >> 4, u16::from_be_bytes([p[4], p[5]]), p[6]), (6, 18, 17));
        assert!(transport_checksum_ok(&p));
    }

    #[test]
    fn echo_requests_checksum_to_zero() {
        let m = icmpv4_echo_request(0x1234, 7, &pattern(8, 56));
        assert_eq!(internet_checksum(&m), 0);
        assert_eq!((m[0], &m[4..8]), (8, &[0x12, 0x34, 0, 7][..]));
        let p = ipv4_echo_request(Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(10, 2, 0, 1), 0x1234, 7, &pattern(8, 56));
        assert_eq!((p[9], &p[20..]), (1, &m[..]));
        assert!(ipv4_header_checksum_ok(&p));
    }

    #[test]
    fn ipv4_fields_land_in_the_header() {
        let ip = Ipv4 {
            id: 0xbeef,
            dont_fragment: false,
            ttl: 9,
            ecn: 2,
            options: vec![0; 4],
            ..Ipv4::new(Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(10, 2, 0, 1))
        };
        let p = ip.raw(50, b"esp!");
        assert_eq!(p.len(), 24 + 4);
        assert_eq!((p[0], p[1], &p[4..7], p[8], p[9]), (0x46, 2, &[0xbe, 0xef, 0][..], 9, 50));
        assert_eq!(&p[24..], b"esp!");
        assert!(ipv4_header_checksum_ok(&p));
        assert_eq!(Ipv4::of(&p), Some(ip));
        assert_eq!(Ipv4::of(&p[..19]), None);
    }

    #[test]
    fn tcp_segments_carry_flags_options_and_checksums() {
        use tcp_flags::*;
        let tcp =
            Tcp { seq: 7, ack: 9, flags: ACK | PSH | CWR, window: 512, timestamp: Some((1, 2)), ..Tcp::new(443, 5555) };
        let p = Ipv4::new(Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(10, 2, 0, 1)).tcp(&tcp, &pattern(0, 10));
        assert_eq!((p.len(), p[9], p[20 + 12], p[20 + 13]), (20 + 32 + 10, 6, 8 << 4, ACK | PSH | CWR));
        assert_eq!(&p[24..32], &[0, 0, 0, 7, 0, 0, 0, 9]);
        assert_eq!(&p[40..52], &[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2], "NOP, NOP, timestamp");
        assert!(ipv4_header_checksum_ok(&p) && transport_checksum_ok(&p));
        let v6 = Ipv6 { hop_by_hop: true, ..Ipv6::new(Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST) };
        let p = v6.tcp(&Tcp::new(1, 2), &[]);
        assert_eq!((p.len(), p[6], p[40], p[41]), (40 + 8 + 20, 0, 6, 0), "hop-by-hop, then TCP");
        assert!(transport_checksum_ok(&p));
        let mut bad = p.clone();
        bad[40 + 8 + 16] ^= 1; // the TCP checksum, corrupted
        assert!(!transport_checksum_ok(&bad));
    }
}
