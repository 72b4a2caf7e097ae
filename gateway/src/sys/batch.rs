//! Batched datagram I/O, the system calls that let one call move many packets:
//! UDP GSO sends (`sendmsg` with a UDP_SEGMENT control message: one buffer of
//! equal-sized datagrams), UDP GRO receives (UDP_GRO socket option: the kernel hands
//! over a run of datagrams of one flow in one buffer, with the segment size), and
//! `sendmmsg`/`recvmmsg` for the raw ESP socket, which has no segmentation offload.
//!
//! This module only wraps the calls; which packets form a batch is `datapath`'s business.

use socket2::SockAddr;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd};

/// Most datagrams in one UDP GSO send (the kernel's UDP_MAX_SEGMENTS).
pub const MAX_GSO_SEGMENTS: usize = 64;
/// Most payload bytes in one UDP GSO send (an IPv4 datagram of 65535 bytes minus
/// IPv4 and UDP headers; conservative for IPv6 too).
pub const MAX_GSO_BYTES: usize = 65_535 - 20 - 8;
/// Most packets handed to one `sendmmsg`/`recvmmsg`.
pub const MAX_MMSG: usize = 64;

/// Room for one control message carrying up to 20 bytes (an `in6_pktinfo`), 8-byte aligned.
#[repr(C, align(8))]
struct CmsgBuf([u8; 64]);

/// Enables UDP_GRO on a UDP socket (Linux 5.0+).
pub fn enable_udp_gro(fd: BorrowedFd<'_>) -> io::Result<()> {
    super::set_int_sockopt(fd, libc::SOL_UDP, libc::UDP_GRO, 1)
}

/// Sends `buf` as datagrams of `seg` bytes each (the last may be shorter) to `to`, in
/// one `sendmsg` with UDP_SEGMENT. Returns the bytes sent.
pub fn send_gso(fd: BorrowedFd<'_>, buf: &[u8], seg: u16, to: SocketAddr) -> io::Result<usize> {
    let addr = SockAddr::from(to);
    let mut iov = libc::iovec { iov_base: buf.as_ptr().cast_mut().cast(), iov_len: buf.len() };
    let mut cbuf = CmsgBuf([0; 64]);
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(2) } as usize;
    // SAFETY: msghdr is plain data; every pointer field is set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = addr.as_ptr().cast_mut().cast();
    msg.msg_namelen = addr.len();
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.0.as_mut_ptr().cast();
    msg.msg_controllen = space.min(cbuf.0.len());
    // SAFETY: msg_control points at `cbuf`, 8-byte aligned and at least CMSG_SPACE(2)
    // bytes long, so CMSG_FIRSTHDR returns a header inside it with room for 2 data bytes.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null() {
            return Err(io::Error::other("no room for UDP_SEGMENT"));
        }
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = libc::UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(2) as usize;
        std::ptr::copy_nonoverlapping(seg.to_ne_bytes().as_ptr(), libc::CMSG_DATA(c), 2);
    }
    // SAFETY: `msg` points at `addr`, `iov` (which covers `buf`) and `cbuf`, all alive
    // for the call; the kernel only reads them.
    let rc = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize)
}

fn sockaddr_to_std(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is
            // large and aligned enough for.
            let sin = unsafe { &*std::ptr::from_ref(ss).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &*std::ptr::from_ref(ss).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::new(IpAddr::V6(ip), u16::from_be(sin6.sin6_port)))
        }
        _ => None,
    }
}

/// Receives one datagram, or with UDP_GRO enabled a run of coalesced datagrams, into
/// `buf`. Returns the bytes received, the sender, and the size of each datagram in the
/// buffer (the last may be shorter; equal to the length when nothing was coalesced).
/// Blocks for the datagram if `wait`, else fails with `WouldBlock` when none is queued.
pub fn recv_gro(fd: BorrowedFd<'_>, buf: &mut [u8], wait: bool) -> io::Result<(usize, SocketAddr, usize)> {
    // SAFETY: sockaddr_storage is plain data.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut cbuf = CmsgBuf([0; 64]);
    // SAFETY: msghdr is plain data; every pointer field is set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = std::ptr::addr_of_mut!(ss).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.0.as_mut_ptr().cast();
    msg.msg_controllen = cbuf.0.len();
    let flags = if wait { 0 } else { libc::MSG_DONTWAIT };
    // SAFETY: every buffer `msg` points at is alive, writable and as long as stated.
    let rc = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, flags) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = rc as usize;
    let mut seg = n;
    // SAFETY: the kernel filled `msg_controllen` bytes of `cbuf` with well-formed
    // control messages; CMSG_FIRSTHDR/NXTHDR stay within them and CMSG_DATA of a
    // UDP_GRO message holds one int (read unaligned).
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                if let Ok(v) = usize::try_from(v) {
                    if v > 0 {
                        seg = v;
                    }
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let from = sockaddr_to_std(&ss).ok_or_else(|| io::Error::other("unknown address family"))?;
    Ok((n, from, seg))
}

/// Sends each of `packets` as its own datagram to `to` with `sendmmsg` (as few calls
/// as the kernel allows). Returns how many were sent; stops at the first error, which
/// is returned if nothing was sent.
pub fn send_many(fd: BorrowedFd<'_>, packets: &[&[u8]], to: &SockAddr) -> io::Result<usize> {
    let mut sent = 0;
    while sent < packets.len() {
        let chunk = packets.get(sent..).unwrap_or_default();
        let chunk = chunk.get(..chunk.len().min(MAX_MMSG)).unwrap_or_default();
        let mut iovs = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; MAX_MMSG];
        // SAFETY: mmsghdr is plain data; the used entries are filled below.
        let mut msgs: [libc::mmsghdr; MAX_MMSG] = unsafe { std::mem::zeroed() };
        for ((p, iov), m) in chunk.iter().zip(iovs.iter_mut()).zip(msgs.iter_mut()) {
            *iov = libc::iovec { iov_base: p.as_ptr().cast_mut().cast(), iov_len: p.len() };
            m.msg_hdr.msg_name = to.as_ptr().cast_mut().cast();
            m.msg_hdr.msg_namelen = to.len();
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: the first `chunk.len()` entries of `msgs` point at `to` and at iovecs
        // covering live packet slices; the kernel only reads them (and writes msg_len).
        let rc = unsafe { libc::sendmmsg(fd.as_raw_fd(), msgs.as_mut_ptr(), chunk.len() as libc::c_uint, 0) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return if sent == 0 { Err(e) } else { Ok(sent) };
        }
        if rc == 0 {
            break;
        }
        sent += rc as usize;
    }
    Ok(sent)
}

/// Reusable buffers for [`recv_many`]: `slots` datagrams of up to `slot_len` bytes,
/// each with its sender and, on a socket with IP_PKTINFO / IPV6_RECVPKTINFO enabled,
/// the destination address it was sent to.
pub struct RecvMany {
    buf: Vec<u8>,
    slot_len: usize,
    lens: Vec<usize>,
    names: Vec<libc::sockaddr_storage>,
    controls: Vec<CmsgBuf>,
    meta: Vec<RecvMeta>,
    count: usize,
}

/// Where one datagram of a [`recv_many`] batch came from and went to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecvMeta {
    /// The sender (port 0 on raw sockets), if the kernel named one.
    pub from: Option<SocketAddr>,
    /// The local destination address, if the socket asked for packet info.
    pub dst: Option<IpAddr>,
}

impl RecvMany {
    /// Allocates the buffers once.
    pub fn new(slots: usize, slot_len: usize) -> Self {
        let slots = slots.clamp(1, MAX_MMSG);
        // SAFETY: sockaddr_storage is plain data, all zeros is a valid (AF_UNSPEC) value.
        let name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        Self {
            buf: vec![0; slots * slot_len],
            slot_len,
            lens: vec![0; slots],
            names: vec![name; slots],
            controls: (0..slots).map(|_| CmsgBuf([0; 64])).collect(),
            meta: vec![RecvMeta::default(); slots],
            count: 0,
        }
    }

    /// The datagrams of the last [`recv_many`].
    pub fn packets(&self) -> impl Iterator<Item = &[u8]> {
        self.packets_with_meta().map(|(p, _)| p)
    }

    /// The datagrams of the last [`recv_many`], each with its sender and destination.
    pub fn packets_with_meta(&self) -> impl Iterator<Item = (&[u8], RecvMeta)> {
        self.buf
            .chunks(self.slot_len.max(1))
            .zip(&self.lens)
            .zip(&self.meta)
            .take(self.count)
            .filter_map(|((s, n), m)| s.get(..*n).map(|p| (p, *m)))
    }
}

/// The destination address in an IP_PKTINFO or IPV6_PKTINFO control message of `msg`.
///
/// # Safety
/// `msg` must be a header the kernel has just filled by `recvmsg`/`recvmmsg`: its
/// `msg_control` points at `msg_controllen` bytes of well-formed control messages.
unsafe fn pktinfo_dst(msg: &libc::msghdr) -> Option<IpAddr> {
    if msg.msg_control.is_null() || msg.msg_controllen == 0 {
        return None;
    }
    let mut found = None;
    // SAFETY: per this function's contract; CMSG_FIRSTHDR/NXTHDR stay within the
    // control buffer, and the data of each message is read unaligned with the size of
    // the structure its level and type announce, which the kernel wrote in full.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            let (level, ty) = ((*c).cmsg_level, (*c).cmsg_type);
            if level == libc::IPPROTO_IPV6 && ty == libc::IPV6_PKTINFO {
                let info = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::in6_pktinfo>());
                found = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
            } else if level == libc::IPPROTO_IP && ty == libc::IP_PKTINFO {
                let info = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::in_pktinfo>());
                found = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr))));
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    found
}

/// Receives up to as many datagrams as `batch` has slots: blocks for the first if
/// `wait` (else fails with `WouldBlock` when none is queued), then takes what is queued
/// (MSG_WAITFORONE). Truncated datagrams are dropped (length 0).
pub fn recv_many(fd: BorrowedFd<'_>, batch: &mut RecvMany, wait: bool) -> io::Result<usize> {
    let slots = batch.lens.len().min(MAX_MMSG);
    let slot_len = batch.slot_len;
    let mut iovs = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; MAX_MMSG];
    // SAFETY: mmsghdr is plain data; the used entries are filled below.
    let mut msgs: [libc::mmsghdr; MAX_MMSG] = unsafe { std::mem::zeroed() };
    let slices = batch.buf.chunks_mut(slot_len.max(1)).zip(batch.names.iter_mut()).zip(batch.controls.iter_mut());
    for (((s, name), control), (iov, m)) in slices.zip(iovs.iter_mut().zip(msgs.iter_mut())).take(slots) {
        *iov = libc::iovec { iov_base: s.as_mut_ptr().cast(), iov_len: s.len() };
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
        m.msg_hdr.msg_name = std::ptr::from_mut(name).cast();
        m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        m.msg_hdr.msg_control = control.0.as_mut_ptr().cast();
        m.msg_hdr.msg_controllen = control.0.len();
    }
    // SAFETY: the first `slots` entries point at iovecs covering disjoint, writable
    // slots of `batch.buf`, and at a name and a control buffer of their own, each alive,
    // writable and as long as stated for the call.
    let rc = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            msgs.as_mut_ptr(),
            slots as libc::c_uint,
            if wait { libc::MSG_WAITFORONE } else { libc::MSG_DONTWAIT },
            std::ptr::null_mut(),
        )
    };
    if rc < 0 {
        batch.count = 0;
        return Err(io::Error::last_os_error());
    }
    let n = (rc as usize).min(slots);
    for (((len, meta), name), m) in
        batch.lens.iter_mut().zip(batch.meta.iter_mut()).zip(&batch.names).zip(&msgs).take(n)
    {
        let truncated = m.msg_hdr.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0;
        *len = if truncated { 0 } else { (m.msg_len as usize).min(slot_len) };
        let named = m.msg_hdr.msg_namelen > 0;
        // SAFETY: `m` was filled by the recvmmsg above, its control buffer is one of
        // `batch.controls`, still alive and unchanged.
        let dst = unsafe { pktinfo_dst(&m.msg_hdr) };
        *meta = RecvMeta { from: if named { sockaddr_to_std(name) } else { None }, dst };
    }
    batch.count = n;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    #[test]
    fn gso_send_arrives_as_gro_batch_or_datagrams() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        enable_udp_gro(rx.as_fd()).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let buf: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let sent = send_gso(tx.as_fd(), &buf, 300, rx.local_addr().unwrap()).unwrap();
        assert_eq!(sent, 1000);
        let mut got = Vec::new();
        let mut sizes = Vec::new();
        let mut rbuf = vec![0u8; 65_536];
        while got.len() < 1000 {
            let (n, from, seg) = recv_gro(rx.as_fd(), &mut rbuf, true).unwrap();
            assert_eq!(from, tx.local_addr().unwrap());
            for d in rbuf[..n].chunks(seg) {
                sizes.push(d.len());
            }
            got.extend_from_slice(&rbuf[..n]);
        }
        assert_eq!(got, buf);
        assert_eq!(sizes, vec![300, 300, 300, 100], "datagram boundaries preserved");
    }

    #[test]
    fn mmsg_round_trip() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let pkts: Vec<Vec<u8>> = (0..70u8).map(|i| vec![i; usize::from(i) + 1]).collect();
        let refs: Vec<&[u8]> = pkts.iter().map(Vec::as_slice).collect();
        let to = SockAddr::from(rx.local_addr().unwrap());
        assert_eq!(send_many(tx.as_fd(), &refs, &to).unwrap(), 70);
        let mut batch = RecvMany::new(16, 128);
        let mut got: Vec<Vec<u8>> = Vec::new();
        while got.len() < 70 {
            let n = recv_many(rx.as_fd(), &mut batch, true).unwrap();
            assert!((1..=16).contains(&n));
            got.extend(batch.packets().map(<[u8]>::to_vec));
        }
        assert_eq!(got, pkts);
    }
}
