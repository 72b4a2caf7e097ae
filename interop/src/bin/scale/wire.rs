//! A UDP/IPv6 socket that sends from any source address of the peers namespace: bound to
//! `[::]:port`, `IPV6_FREEBIND`, and each datagram carries its source in an
//! `IPV6_PKTINFO` control message (built as bytes here; the crate forbids `unsafe`).
//!
//! Owns: the socket options and the control-message layout (Linux, 64-bit). Does not
//! own: what is sent.

use std::io::{self, IoSlice};
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::time::Duration;

use socket2::{Domain, MsgHdr, Protocol, SockAddr, Socket, Type};

/// `IPPROTO_IPV6`.
const SOL_IPV6: i32 = 41;
/// `IPV6_PKTINFO` (the sendmsg control message type, `struct in6_pktinfo`).
const IPV6_PKTINFO: i32 = 50;
/// `struct cmsghdr`: `size_t cmsg_len; int cmsg_level; int cmsg_type;`.
const CMSG_HDR: usize = std::mem::size_of::<usize>() + 8;
/// `struct in6_pktinfo`: 16-byte address + interface index.
const PKTINFO_LEN: usize = 20;
/// `CMSG_SPACE(sizeof(struct in6_pktinfo))`.
const CMSG_SPACE: usize = CMSG_HDR + PKTINFO_LEN.next_multiple_of(std::mem::size_of::<usize>());

/// The `IPV6_PKTINFO` control message choosing `src` as the source address.
pub fn pktinfo(src: Ipv6Addr) -> [u8; CMSG_SPACE] {
    let mut b = [0u8; CMSG_SPACE];
    let ptr = std::mem::size_of::<usize>();
    b[..ptr].copy_from_slice(&(CMSG_HDR + PKTINFO_LEN).to_ne_bytes());
    b[ptr..ptr + 4].copy_from_slice(&SOL_IPV6.to_ne_bytes());
    b[ptr + 4..ptr + 8].copy_from_slice(&IPV6_PKTINFO.to_ne_bytes());
    b[CMSG_HDR..CMSG_HDR + 16].copy_from_slice(&src.octets());
    // Interface index 0: routed as usual.
    b
}

/// One bound socket: send with [`Wan::send_from`], receive on [`Wan::reader`].
pub struct Wan {
    sock: Socket,
}

impl Wan {
    /// Binds `[::]:port` (IPv6 only), free-bind, with `rcvbuf` bytes of receive buffer
    /// (the kernel caps it at `net.core.rmem_max`).
    pub fn bind(port: u16, rcvbuf: usize) -> io::Result<Self> {
        let sock = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
        sock.set_only_v6(true)?;
        sock.set_freebind_ipv6(true)?;
        sock.set_recv_buffer_size(rcvbuf)?;
        sock.set_send_buffer_size(rcvbuf)?;
        sock.bind(&SockAddr::from(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0)))?;
        Ok(Self { sock })
    }

    /// Sends `parts` (concatenated) from `src` to `dst`.
    pub fn send_from(&self, src: Ipv6Addr, dst: SocketAddr, parts: &[&[u8]]) -> io::Result<usize> {
        let cmsg = pktinfo(src);
        let bufs: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        let to = SockAddr::from(dst);
        let msg = MsgHdr::new().with_addr(&to).with_buffers(&bufs).with_control(&cmsg);
        self.sock.sendmsg(&msg, 0)
    }

    /// A second handle for a reader thread (`recv_from` with a timeout).
    pub fn reader(&self, timeout: Duration) -> io::Result<UdpSocket> {
        let s: UdpSocket = self.sock.try_clone()?.into();
        s.set_read_timeout(Some(timeout))?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pktinfo_layout_matches_linux_64_bit() {
        let src: Ipv6Addr = "2001:db8:1::7".parse().unwrap();
        let b = pktinfo(src);
        assert_eq!(b.len(), 40, "CMSG_SPACE(20) on 64-bit");
        assert_eq!(u64::from_ne_bytes(b[..8].try_into().unwrap()), 36, "CMSG_LEN(20)");
        assert_eq!(i32::from_ne_bytes(b[8..12].try_into().unwrap()), 41);
        assert_eq!(i32::from_ne_bytes(b[12..16].try_into().unwrap()), 50);
        assert_eq!(&b[16..32], &src.octets());
        assert_eq!(&b[32..], &[0u8; 8]);
    }

    #[test]
    fn sends_from_a_chosen_local_source() {
        // Loopback owns ::1 only; free-bind lets any source through the sendmsg check,
        // but only ::1 can come back over lo, so that is what we choose here.
        let rx = UdpSocket::bind("[::1]:0").expect("IPv6 loopback");
        let tx = Wan::bind(0, 1 << 16).unwrap();
        let n = tx.send_from(Ipv6Addr::LOCALHOST, rx.local_addr().unwrap(), &[b"ab", b"cd"]).unwrap();
        assert_eq!(n, 4);
        let mut buf = [0u8; 8];
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (len, from) = rx.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"abcd");
        assert_eq!(from.ip(), std::net::IpAddr::V6(Ipv6Addr::LOCALHOST));
    }
}
