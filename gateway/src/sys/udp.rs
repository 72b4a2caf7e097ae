//! WAN sockets: UDP for IKE (500) and NAT-T (4500, IKE and ESP-in-UDP), and a raw IP
//! socket for protocol 50 (ESP without UDP encapsulation).
//!
//! Socket buffers are made large (16 MiB, forced past `rmem_max` when we are root) so a
//! burst does not overflow the queue while a datapath thread is busy or descheduled:
//! with UDP GRO one queued skb carries up to 64 KiB, and a 4 MiB buffer still
//! overflowed in the benchmark on a busy 2-core machine.
//! This module opens sockets; which thread reads which socket is `datapath`'s business.

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;

use super::batch::RecvMeta;

/// Socket buffer size asked for on the WAN sockets.
pub const SOCKET_BUFFER: usize = 16 << 20;

/// IP protocol number of ESP.
pub const IPPROTO_ESP: i32 = 50;

fn domain_of(ip: IpAddr) -> Domain {
    if ip.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    }
}

/// Enlarges both socket buffers. SO_*BUFFORCE (root) ignores `net.core.[rw]mem_max`;
/// if that is refused, the plain options still get as much as the sysctl allows.
fn enlarge_buffers(sock: &Socket) {
    let size = libc::c_int::try_from(SOCKET_BUFFER).unwrap_or(libc::c_int::MAX);
    if super::set_int_sockopt(sock.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, size).is_err() {
        let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
    }
    if super::set_int_sockopt(sock.as_fd(), libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, size).is_err() {
        let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
    }
}

/// Binds a UDP socket to `addr` with large buffers.
pub fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let sock = Socket::new(domain_of(addr.ip()), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    enlarge_buffers(&sock);
    sock.bind(&SockAddr::from(addr)).map_err(|e| {
        let hint = match e.kind() {
            io::ErrorKind::AddrNotAvailable => " (is this address configured on an interface?)",
            io::ErrorKind::AddrInUse => " (is another vpngw or an IKE daemon such as charon running?)",
            _ => "",
        };
        io::Error::new(e.kind(), format!("cannot bind UDP {addr}: {e}{hint}"))
    })?;
    Ok(sock.into())
}

/// A raw socket for IP protocol 50, bound to our WAN address.
#[derive(Debug)]
pub struct RawEsp {
    sock: Socket,
    local: IpAddr,
}

impl RawEsp {
    /// Opens the socket (needs CAP_NET_RAW).
    pub fn open(local: IpAddr) -> io::Result<Self> {
        let sock = Socket::new(domain_of(local), Type::RAW, Some(Protocol::from(IPPROTO_ESP)))
            .map_err(|e| io::Error::new(e.kind(), format!("cannot open raw ESP socket: {e}")))?;
        enlarge_buffers(&sock);
        if local.is_ipv6() {
            // IPv6 raw sockets deliver the payload only: the destination of each packet
            // comes in an IPV6_PKTINFO control message instead, checked in `esp_range`.
            super::set_int_sockopt(sock.as_fd(), libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot enable IPV6_RECVPKTINFO on the raw ESP socket: {e}"))
            })?;
        }
        // Binding filters inbound packets to our WAN address and fixes the source.
        sock.bind(&SockAddr::from(SocketAddr::new(local, 0)))
            .map_err(|e| io::Error::new(e.kind(), format!("cannot bind raw ESP socket to {local}: {e}")))?;
        Ok(Self { sock, local })
    }

    /// The address the socket is bound to.
    pub fn local(&self) -> IpAddr {
        self.local
    }

    /// Sends one ESP packet (SPI onwards) to `remote`; the kernel adds the IP header.
    pub fn send_to(&self, esp: &[u8], remote: IpAddr) -> io::Result<usize> {
        self.sock.send_to(esp, &SockAddr::from(SocketAddr::new(remote, 0)))
    }

    /// The socket, for batched calls (`sys::batch`).
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Sends several ESP packets to `remote` with `sendmmsg`; returns how many went.
    pub fn send_many(&self, packets: &[&[u8]], remote: IpAddr) -> io::Result<usize> {
        super::batch::send_many(self.sock.as_fd(), packets, &SockAddr::from(SocketAddr::new(remote, 0)))
    }

    /// Where the ESP packet is inside a datagram read from this socket with
    /// `sys::batch::recv_many`, and its sender, or `None` for a packet that is not ours
    /// or is truncated. IPv4 datagrams carry their IP header, which is checked and
    /// skipped; IPv6 ones are the payload only, and `meta` must name our address as the
    /// destination (the socket asks for IPV6_PKTINFO) and a sender.
    pub fn esp_range(&self, data: &[u8], meta: RecvMeta) -> Option<(std::ops::Range<usize>, IpAddr)> {
        match self.local {
            IpAddr::V4(local) => strip_ipv4_header(data, local),
            IpAddr::V6(_) => check_ipv6_meta(data, self.local, meta),
        }
    }
}

/// An inbound IPv6 raw ESP datagram (payload only) is ours if its destination, from
/// IPV6_PKTINFO, is `local`; returns the whole datagram and the sender. A datagram
/// without packet info or sender is refused rather than trusted.
pub fn check_ipv6_meta(data: &[u8], local: IpAddr, meta: RecvMeta) -> Option<(std::ops::Range<usize>, IpAddr)> {
    let from = meta.from?.ip();
    (meta.dst? == local && from.is_ipv6()).then_some((0..data.len(), from))
}

/// Inbound IPv4 raw packets carry the IP header: checks it is IPv4 protocol 50 to
/// `local` and returns the payload range and the source address.
pub fn strip_ipv4_header(pkt: &[u8], local: std::net::Ipv4Addr) -> Option<(std::ops::Range<usize>, IpAddr)> {
    let first = *pkt.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(first & 0x0f) * 4;
    if ihl < 20 || pkt.len() < ihl {
        return None;
    }
    if *pkt.get(9)? != 50 {
        return None;
    }
    let src: [u8; 4] = pkt.get(12..16)?.try_into().ok()?;
    let dst: [u8; 4] = pkt.get(16..20)?.try_into().ok()?;
    if std::net::Ipv4Addr::from(dst) != local {
        return None;
    }
    Some((ihl..pkt.len(), IpAddr::V4(std::net::Ipv4Addr::from(src))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// An IPv4 packet of protocol `proto` whose header is `ihl_words` 32-bit words long
    /// (options of zero bytes fill it out).
    fn ipv4(ihl_words: u8, proto: u8, src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
        let options = vec![0; (usize::from(ihl_words) - 5) * 4];
        testkit::packet::Ipv4 { options, ..testkit::packet::Ipv4::new(src.into(), dst.into()) }.raw(proto, payload)
    }

    #[test]
    fn strips_header_including_options() {
        let local = Ipv4Addr::new(192, 0, 2, 1);
        let p = ipv4(5, 50, [192, 0, 2, 2], [192, 0, 2, 1], b"esp!");
        let (r, src) = strip_ipv4_header(&p, local).unwrap();
        assert_eq!(&p[r], b"esp!");
        assert_eq!(src, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)));
        let p = ipv4(6, 50, [192, 0, 2, 2], [192, 0, 2, 1], b"x");
        assert_eq!(&p[strip_ipv4_header(&p, local).unwrap().0], b"x");
    }

    #[test]
    fn rejects_foreign_truncated_and_non_esp() {
        let local = Ipv4Addr::new(192, 0, 2, 1);
        assert!(strip_ipv4_header(&ipv4(5, 50, [1, 1, 1, 1], [192, 0, 2, 9], b"x"), local).is_none());
        assert!(strip_ipv4_header(&ipv4(5, 17, [1, 1, 1, 1], [192, 0, 2, 1], b"x"), local).is_none());
        assert!(strip_ipv4_header(&[0x45, 0, 0], local).is_none());
        assert!(strip_ipv4_header(&[0x4f; 20], local).is_none());
        assert!(strip_ipv4_header(&[0x44; 40], local).is_none());
        assert!(strip_ipv4_header(&[], local).is_none());
    }

    #[test]
    fn ipv6_datagrams_need_our_address_as_destination_and_a_sender() {
        let local: IpAddr = "2001:db8::1".parse().unwrap();
        let peer: SocketAddr = "[2001:db8::2]:0".parse().unwrap();
        let meta =
            |dst: Option<&str>, from: Option<SocketAddr>| RecvMeta { from, dst: dst.map(|d| d.parse().unwrap()) };
        let (r, src) = check_ipv6_meta(b"esp!", local, meta(Some("2001:db8::1"), Some(peer))).unwrap();
        assert_eq!((r, src), (0..4, peer.ip()));
        // Another of the host's addresses, no packet info, no sender, a mapped IPv4 sender.
        assert!(check_ipv6_meta(b"esp!", local, meta(Some("2001:db8::3"), Some(peer))).is_none());
        assert!(check_ipv6_meta(b"esp!", local, meta(None, Some(peer))).is_none());
        assert!(check_ipv6_meta(b"esp!", local, meta(Some("2001:db8::1"), None)).is_none());
        let v4: SocketAddr = "192.0.2.2:0".parse().unwrap();
        assert!(check_ipv6_meta(b"esp!", local, meta(Some("2001:db8::1"), Some(v4))).is_none());
    }

    #[test]
    fn udp_bind_on_loopback() {
        let s = bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
        assert!(s.local_addr().unwrap().port() != 0);
    }

    #[test]
    fn bind_errors_carry_a_hint() {
        let e = bind_udp("192.0.2.254:0".parse().unwrap()).unwrap_err();
        assert!(e.to_string().contains("configured on an interface"), "{e}");
        let s = bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
        let e = bind_udp(s.local_addr().unwrap()).unwrap_err();
        assert!(e.to_string().contains("another vpngw"), "{e}");
    }
}
