//! What the workers read from and write to, as two small traits: [`TunIo`] (the TUN
//! device's queues) and [`WanIo`] (UDP 500, UDP 4500 and the raw ESP socket). The
//! daemon runs the workers on [`Tun`] and [`SocketWan`]; the unit tests of scheduling
//! and batching run them on in-memory versions (`datapath::mem`). The workers are
//! generic over both: every call is resolved at compile time and inlined, nothing is
//! dispatched through a vtable per packet.

use crate::sys::batch;
use crate::sys::tun::Tun;
use crate::sys::udp::RawEsp;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::Arc;

/// The TUN device as the workers use it.
pub trait TunIo: Send + Sync + 'static {
    /// Number of queues (each one source, read by its own worker).
    fn queues(&self) -> usize;
    /// True if every read and write starts with a `virtio_net_hdr`.
    fn vnet_hdr(&self) -> bool;
    /// True if UDP_L4 GSO packets may be written.
    fn udp_gso_writes(&self) -> bool;
    /// Reads one packet from queue `q` (`WouldBlock` when it is empty and non-blocking).
    fn recv_queue(&self, q: usize, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes one packet (starting with the vnet header, if any).
    fn send(&self, packet: &[u8]) -> io::Result<usize>;
    /// Writes one packet given as a vnet header and the IP packet.
    fn send_parts(&self, head: &[u8], packet: &[u8]) -> io::Result<usize>;
    /// Sleeps until queue `q` is readable.
    fn wait_readable(&self, q: usize) -> io::Result<()>;
}

/// The WAN sockets as the workers use them.
pub trait WanIo: Send + Sync + 'static {
    /// A worker's reusable receive buffers for the raw ESP socket.
    type RawRx: Send;
    /// True if there is a raw ESP socket (else only ESP-in-UDP works).
    fn has_raw(&self) -> bool;
    /// The local address of UDP 4500.
    fn natt_local(&self) -> io::Result<SocketAddr>;
    /// The local address of UDP 500.
    fn ike_local(&self) -> io::Result<SocketAddr>;
    /// Receives one IKE datagram on UDP 500 (blocking).
    fn recv_ike(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)>;
    /// Receives on UDP 4500: the bytes, the sender, the size of each datagram in them
    /// (a UDP GRO run; the last may be shorter). Blocks if `wait`, else `WouldBlock`.
    fn recv_natt(&self, buf: &mut [u8], wait: bool) -> io::Result<(usize, SocketAddr, usize)>;
    /// Receive buffers for up to `slots` raw ESP packets per call.
    fn raw_rx(&self, slots: usize) -> Self::RawRx;
    /// Receives a batch on the raw ESP socket and calls `each` with every ESP packet in
    /// it (IP header stripped, packets not for us skipped). Blocks if `wait`.
    fn recv_raw(&self, rx: &mut Self::RawRx, wait: bool, each: impl FnMut(&[u8])) -> io::Result<()>;
    /// Sends `data` as datagrams of `seg` bytes (the last may be shorter) from UDP 4500
    /// in one call.
    fn send_gso(&self, data: &[u8], seg: u16, to: SocketAddr) -> io::Result<usize>;
    /// Sends one datagram from UDP 4500.
    fn send_udp(&self, datagram: &[u8], to: SocketAddr) -> io::Result<usize>;
    /// Sends ESP packets on the raw socket in one call; returns how many went.
    fn send_raw_many(&self, packets: &[&[u8]], to: IpAddr) -> io::Result<usize>;
    /// Sends one ESP packet on the raw socket.
    fn send_raw(&self, packet: &[u8], to: IpAddr) -> io::Result<usize>;
    /// Sleeps until UDP 4500 is readable.
    fn wait_natt(&self) -> io::Result<()>;
    /// Sleeps until the raw ESP socket is readable.
    fn wait_raw(&self) -> io::Result<()>;
}

impl TunIo for Tun {
    #[inline]
    fn queues(&self) -> usize {
        Tun::queues(self)
    }
    #[inline]
    fn vnet_hdr(&self) -> bool {
        Tun::vnet_hdr(self)
    }
    #[inline]
    fn udp_gso_writes(&self) -> bool {
        Tun::udp_gso_writes(self)
    }
    #[inline]
    fn recv_queue(&self, q: usize, buf: &mut [u8]) -> io::Result<usize> {
        Tun::recv_queue(self, q, buf)
    }
    #[inline]
    fn send(&self, packet: &[u8]) -> io::Result<usize> {
        Tun::send(self, packet)
    }
    #[inline]
    fn send_parts(&self, head: &[u8], packet: &[u8]) -> io::Result<usize> {
        Tun::send_parts(self, head, packet)
    }
    fn wait_readable(&self, q: usize) -> io::Result<()> {
        match self.queue_fd(q) {
            Some(fd) => crate::sys::wait_readable(fd, -1),
            None => Ok(()),
        }
    }
}

/// The daemon's WAN sockets.
pub struct SocketWan {
    /// UDP 500.
    pub ike: Arc<UdpSocket>,
    /// UDP 4500.
    pub natt: Arc<UdpSocket>,
    /// Raw ESP (IP protocol 50), if it could be opened.
    pub raw: Option<Arc<RawEsp>>,
}

/// No raw ESP socket.
fn no_raw() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "no raw ESP socket")
}

impl WanIo for SocketWan {
    type RawRx = batch::RecvMany;

    #[inline]
    fn has_raw(&self) -> bool {
        self.raw.is_some()
    }
    fn natt_local(&self) -> io::Result<SocketAddr> {
        self.natt.local_addr()
    }
    fn ike_local(&self) -> io::Result<SocketAddr> {
        self.ike.local_addr()
    }
    fn recv_ike(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.ike.recv_from(buf)
    }
    #[inline]
    fn recv_natt(&self, buf: &mut [u8], wait: bool) -> io::Result<(usize, SocketAddr, usize)> {
        batch::recv_gro(self.natt.as_fd(), buf, wait)
    }
    fn raw_rx(&self, slots: usize) -> batch::RecvMany {
        batch::RecvMany::new(slots, super::BUF_LEN)
    }
    #[inline]
    fn recv_raw(&self, rx: &mut batch::RecvMany, wait: bool, mut each: impl FnMut(&[u8])) -> io::Result<()> {
        // Without the socket there is nothing to read (the raw worker is not started).
        let Some(raw) = self.raw.as_deref() else { return Err(io::ErrorKind::WouldBlock.into()) };
        batch::recv_many(raw.fd(), rx, wait)?;
        for (pkt, meta) in rx.packets_with_meta() {
            if let Some(esp_pkt) = raw.esp_range(pkt, meta).and_then(|(range, _from)| pkt.get(range)) {
                each(esp_pkt);
            }
        }
        Ok(())
    }
    #[inline]
    fn send_gso(&self, data: &[u8], seg: u16, to: SocketAddr) -> io::Result<usize> {
        batch::send_gso(self.natt.as_fd(), data, seg, to)
    }
    #[inline]
    fn send_udp(&self, datagram: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.natt.send_to(datagram, to)
    }
    #[inline]
    fn send_raw_many(&self, packets: &[&[u8]], to: IpAddr) -> io::Result<usize> {
        self.raw.as_deref().ok_or_else(no_raw)?.send_many(packets, to)
    }
    #[inline]
    fn send_raw(&self, packet: &[u8], to: IpAddr) -> io::Result<usize> {
        self.raw.as_deref().ok_or_else(no_raw)?.send_to(packet, to)
    }
    fn wait_natt(&self) -> io::Result<()> {
        crate::sys::wait_readable(self.natt.as_fd(), -1)
    }
    fn wait_raw(&self) -> io::Result<()> {
        match self.raw.as_deref() {
            Some(raw) => crate::sys::wait_readable(raw.fd(), -1),
            None => Ok(()),
        }
    }
}
