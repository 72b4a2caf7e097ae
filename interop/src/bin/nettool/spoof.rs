//! Sending IPv4 packets with any source address (a raw socket with IP_HDRINCL, packets
//! built with etherparse), paced at a fixed rate, from address sets given as CIDR
//! prefixes. Shared by `nettool ikeflood` and `nettool hostile`.
//!
//! Needs root (CAP_NET_RAW). The kernel fills in the IPv4 checksum and total length (and
//! the identification when it is 0) of every packet sent this way.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use etherparse::{IpNumber, PacketBuilder};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::XorShift;

/// Largest UDP payload in one unfragmented IPv4 packet on a 1500-byte link.
pub const MTU_UDP_PAYLOAD: usize = 1500 - 20 - 8;
/// Largest UDP payload at all (sent as IPv4 fragments).
pub const MAX_UDP_PAYLOAD: usize = 65_535 - 20 - 8;
/// IP protocol number of ESP.
pub const ESP_PROTO: u8 = 50;

/// A uniformly random value below `n` (0 when `n` is 0).
pub fn below(rng: &mut XorShift, n: usize) -> usize {
    if n == 0 {
        0
    } else {
        (rng.next() % n as u64) as usize
    }
}

/// An IPv4 prefix, `ADDR/LEN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    /// The network address (host bits cleared).
    pub net: u32,
    /// Prefix length, 0..=32.
    pub len: u8,
}

impl std::str::FromStr for Prefix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, len) = s.split_once('/').unwrap_or((s, "32"));
        let addr: Ipv4Addr = addr.parse().map_err(|_| format!("bad address in prefix {s:?}"))?;
        let len: u8 = len.parse().ok().filter(|l| *l <= 32).ok_or_else(|| format!("bad length in prefix {s:?}"))?;
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        Ok(Self { net: u32::from(addr) & mask, len })
    }
}

impl From<Ipv4Addr> for Prefix {
    fn from(addr: Ipv4Addr) -> Self {
        Self { net: u32::from(addr), len: 32 }
    }
}

impl Prefix {
    /// A random host address: for prefixes of 30 bits or less the network and broadcast
    /// addresses are never picked.
    pub fn pick(&self, rng: &mut XorShift) -> Ipv4Addr {
        let host_bits = 32 - u32::from(self.len);
        if host_bits == 0 {
            return Ipv4Addr::from(self.net);
        }
        let span = 1u64 << host_bits;
        let host = if host_bits >= 2 { 1 + rng.next() % (span - 2) } else { rng.next() % span };
        Ipv4Addr::from(self.net | host as u32)
    }
}

/// Where spoofed packets claim to come from: random hosts of some prefixes (single
/// addresses are /32 prefixes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sources(pub Vec<Prefix>);

impl Sources {
    /// One source address, uniformly over the prefixes, then over the prefix's hosts.
    pub fn pick(&self, rng: &mut XorShift) -> Ipv4Addr {
        self.0.get(below(rng, self.0.len())).map_or(Ipv4Addr::UNSPECIFIED, |p| p.pick(rng))
    }
}

impl std::fmt::Display for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list: Vec<String> = self.0.iter().map(|p| format!("{}/{}", Ipv4Addr::from(p.net), p.len)).collect();
        f.write_str(&list.join(","))
    }
}

/// Sends request `i` at `start + i / rate` (no pacing without a rate).
pub struct Pacer {
    start: Instant,
    interval: Option<Duration>,
}

impl Pacer {
    /// Starts the clock now; `rate` in packets per second.
    pub fn new(rate: Option<f64>) -> Self {
        let interval = rate.filter(|r| *r > 0.0 && r.is_finite()).map(|r| Duration::from_secs_f64(1.0 / r));
        Self { start: Instant::now(), interval }
    }

    /// Sleeps until packet `i` is due.
    pub fn wait(&self, i: u64) {
        let Some(interval) = self.interval else { return };
        let due = self.start + interval.saturating_mul(u32::try_from(i).unwrap_or(u32::MAX));
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// A raw IPv4 socket that sends whole packets, headers included.
pub struct RawSender {
    socket: Socket,
    /// Send calls the kernel refused (ENOBUFS, EPERM from a firewall, ...).
    pub errors: u64,
    /// IPv4 identification of the next fragmented datagram.
    next_id: u16,
}

impl RawSender {
    /// Opens the socket (`IPPROTO_RAW`, which implies IP_HDRINCL; set explicitly too).
    pub fn open() -> Result<Self, String> {
        let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255)))
            .map_err(|e| format!("raw socket (needs root): {e}"))?;
        socket.set_header_included_v4(true).map_err(|e| format!("IP_HDRINCL: {e}"))?;
        let _ = socket.set_send_buffer_size(4 << 20);
        Ok(Self { socket, errors: 0, next_id: 1 })
    }

    fn send_packet(&mut self, packet: &[u8], dst: Ipv4Addr) {
        let to = SockAddr::from(SocketAddrV4::new(dst, 0));
        if self.socket.send_to(packet, &to).is_err() {
            self.errors += 1;
        }
    }

    /// Sends `payload` as one IPv4 packet of protocol `proto` (fragmented when it does
    /// not fit a 1500-byte link).
    pub fn send_ip(&mut self, src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) {
        let mut packet = Vec::with_capacity(20 + payload.len());
        let built =
            PacketBuilder::ipv4(src.octets(), dst.octets(), 64).write(&mut packet, IpNumber(proto), payload).is_ok();
        if !built {
            self.errors += 1;
            return;
        }
        self.send_whole(&packet, dst);
    }

    /// Sends `payload` in a UDP datagram (with a correct checksum), fragmented when needed.
    pub fn send_udp(&mut self, src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) {
        let mut packet = Vec::with_capacity(28 + payload.len());
        let built = PacketBuilder::ipv4(src.ip().octets(), dst.ip().octets(), 64)
            .udp(src.port(), dst.port())
            .write(&mut packet, payload)
            .is_ok();
        if !built {
            self.errors += 1;
            return;
        }
        self.send_whole(&packet, *dst.ip());
    }

    fn send_whole(&mut self, packet: &[u8], dst: Ipv4Addr) {
        if packet.len() <= 1500 {
            self.send_packet(packet, dst);
            return;
        }
        self.next_id = self.next_id.wrapping_add(1).max(1);
        for frag in fragments(packet, self.next_id, 1500) {
            self.send_packet(&frag, dst);
        }
    }
}

/// Splits a whole IPv4 packet (20-byte header, no options) into fragments of at most
/// `mtu` bytes, all with identification `id`. Checksum and total length are left for the
/// kernel to fill in (IP_HDRINCL).
pub fn fragments(packet: &[u8], id: u16, mtu: usize) -> Vec<Vec<u8>> {
    let Some((header, body)) = packet.split_at_checked(20) else { return Vec::new() };
    let chunk = (mtu.saturating_sub(20) / 8).max(1) * 8;
    let pieces = body.len().div_ceil(chunk);
    body.chunks(chunk)
        .enumerate()
        .map(|(i, data)| {
            let mut f = header.to_vec();
            let len = (20 + data.len()) as u16;
            f[2..4].copy_from_slice(&len.to_be_bytes());
            f[4..6].copy_from_slice(&id.to_be_bytes());
            let more = if i + 1 < pieces { 0x2000 } else { 0 };
            let offset = ((i * chunk) / 8) as u16 | more;
            f[6..8].copy_from_slice(&offset.to_be_bytes());
            f[10..12].copy_from_slice(&[0, 0]);
            f.extend_from_slice(data);
            f
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_and_pick_hosts_inside() {
        let p: Prefix = "198.51.100.77/24".parse().unwrap();
        assert_eq!(p, Prefix { net: u32::from(Ipv4Addr::new(198, 51, 100, 0)), len: 24 });
        let single: Prefix = "192.0.2.2".parse().unwrap();
        assert_eq!(single.len, 32);
        assert!("1.2.3.4/33".parse::<Prefix>().is_err());
        assert!("x/8".parse::<Prefix>().is_err());
        let mut rng = XorShift::new(5);
        for _ in 0..2000 {
            let a = p.pick(&mut rng).octets();
            assert_eq!(a[..3], [198, 51, 100]);
            assert!(a[3] != 0 && a[3] != 255);
        }
        assert_eq!(single.pick(&mut rng), Ipv4Addr::new(192, 0, 2, 2));
        let s = Sources(vec![p, single]);
        assert_eq!(s.to_string(), "198.51.100.0/24,192.0.2.2/32");
        let picks: Vec<Ipv4Addr> = (0..100).map(|_| s.pick(&mut rng)).collect();
        assert!(picks.contains(&Ipv4Addr::new(192, 0, 2, 2)));
        assert!(picks.iter().any(|a| a.octets()[2] == 100));
    }

    #[test]
    fn fragments_cover_the_datagram_in_8_byte_units() {
        let (src, dst) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let packet = testkit::packet::ipv4_udp(src, dst, 1, 2, &testkit::packet::pattern(0, 3992));
        let frags = fragments(&packet, 77, 1500);
        assert_eq!(frags.len(), 3);
        let mut body = Vec::new();
        for (i, f) in frags.iter().enumerate() {
            assert!(f.len() <= 1500);
            assert_eq!(u16::from_be_bytes([f[4], f[5]]), 77);
            let word = u16::from_be_bytes([f[6], f[7]]);
            assert_eq!(usize::from(word & 0x1fff) * 8, body.len());
            assert_eq!(word & 0x2000 != 0, i < 2);
            assert_eq!(usize::from(u16::from_be_bytes([f[2], f[3]])), f.len());
            body.extend_from_slice(&f[20..]);
        }
        assert_eq!(body, packet[20..]);
        assert!(fragments(&[0x45], 1, 1500).is_empty());
    }
}
