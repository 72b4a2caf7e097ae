//! The TUN device: a raw fd on `/dev/net/tun` configured with TUNSETIFF
//! (IFF_TUN | IFF_NO_PI | IFF_TUN_EXCL), plus MTU and link state through
//! SIOCSIFMTU/SIOCSIFFLAGS. IFF_TUN_EXCL makes the kernel refuse a name that is already
//! an interface, so a second daemon (or a typo naming `eth0`) fails at start instead of
//! attaching to, and stealing packets from, a device it does not own.
//!
//! We drive the fd directly instead of using the `tun` crate because that crate cannot
//! offload or open several queues: IFF_VNET_HDR (GSO/GRO super-packets) and
//! IFF_MULTI_QUEUE (one queue fd per worker, [`TunOptions::queues`]) need the TUNSETIFF
//! flags and TUNSETOFFLOAD under our control.
//!
//! With [`TunOptions::offload`] the device is opened with IFF_VNET_HDR: every read and
//! write starts with a 10-byte `virtio_net_hdr`, and TUNSETOFFLOAD (checksum, TSO4,
//! TSO6, and USO4/USO6 where the kernel knows them, Linux 6.2+) lets the kernel hand over
//! TCP and UDP super-packets of up to 64 KiB with partial checksums, and accept them.
//! `datapath::offload` segments and coalesces them. If the kernel refuses the offloads,
//! the header stays (with nothing to announce).
//! The daemon's options come from the environment (`crate::switches`:
//! `VPNGW_NO_OFFLOAD=1` turns all of it off for measurements, `VPNGW_TUN_QUEUES` sets
//! the queues); this module reads no variable itself.
//!
//! The device is not persistent: the kernel deletes it (and every route through it)
//! when the last fd closes, so a crashed daemon leaves nothing behind.
//! This module owns the device only; routes live in `sys::route`.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// Longest interface name (IFNAMSIZ without the terminating NUL).
pub const MAX_NAME_LEN: usize = 15;

/// `struct ifreq`: the interface name, then a 24-byte union of which we use the first
/// `short` (ifr_flags) or `int` (ifr_mtu).
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    data: [u8; 24],
}

impl IfReq {
    fn new(name: &str) -> io::Result<Self> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() > MAX_NAME_LEN || bytes.contains(&0) || bytes.contains(&b'/') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid interface name {name:?} (1 to {MAX_NAME_LEN} bytes, no '/' or NUL)"),
            ));
        }
        let mut req = Self { name: [0; 16], data: [0; 24] };
        req.name[..bytes.len()].copy_from_slice(bytes);
        Ok(req)
    }
    fn set_short(&mut self, v: i16) {
        self.data[..2].copy_from_slice(&v.to_ne_bytes());
    }
    fn short(&self) -> i16 {
        i16::from_ne_bytes([self.data[0], self.data[1]])
    }
    fn set_int(&mut self, v: i32) {
        self.data[..4].copy_from_slice(&v.to_ne_bytes());
    }
    fn name(&self) -> String {
        let end = self.name.iter().position(|b| *b == 0).unwrap_or(self.name.len());
        String::from_utf8_lossy(&self.name[..end]).into_owned()
    }
}

/// Issues one interface ioctl taking a `struct ifreq`.
fn ifreq_ioctl(fd: BorrowedFd<'_>, request: libc::Ioctl, req: &mut IfReq) -> io::Result<()> {
    // SAFETY: `fd` is a live descriptor borrowed for the call; `req` is a valid,
    // writable `struct ifreq` (same size and layout: 16-byte name, 24-byte union) that
    // the kernel reads and may write for the interface ioctls used in this module.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request, std::ptr::from_mut(req)) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How to open the device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunOptions {
    /// IFF_VNET_HDR + TUNSETOFFLOAD (TCP and UDP segmentation offload, partial checksums).
    pub offload: bool,
    /// Queues (IFF_MULTI_QUEUE when more than 1): the kernel spreads flows over them by
    /// hash, each read by its own worker. 0 counts as 1.
    pub queues: usize,
}

/// Most TUN queues we open.
pub const MAX_QUEUES: usize = 8;

/// An open TUN device. Without a vnet header, reads and writes carry one bare IP
/// packet each; with one ([`Tun::vnet_hdr`]) each starts with a `virtio_net_hdr`.
#[derive(Debug)]
pub struct Tun {
    /// Queue 0; also used for every write.
    file: File,
    /// Queues 1.. of a multi-queue device.
    more: Vec<File>,
    name: String,
    vnet_hdr: bool,
    tso: bool,
    udp_gso_writes: bool,
}

/// TUNSETOFFLOAD flags we ask for: the kernel may hand us partial checksums and
/// TCP (v4 and v6) super-packets. No ECN-flagged TSO. (UDP segmentation offload is
/// added on top where the kernel knows it, see `create_with`.)
const OFFLOADS: libc::c_uint = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;

impl Tun {
    /// Creates the TUN interface `name`, one bare packet per read/write.
    pub fn create(name: &str) -> io::Result<Self> {
        Self::create_with(name, TunOptions::default())
    }

    /// Creates the TUN interface `name` with `opts`. Fails (`AlreadyExists`) if an
    /// interface of that name exists.
    pub fn create_with(name: &str, opts: TunOptions) -> io::Result<Self> {
        let mut req = IfReq::new(name)?;
        let file = OpenOptions::new().read(true).write(true).open("/dev/net/tun").map_err(|e| {
            io::Error::new(e.kind(), format!("cannot open /dev/net/tun: {e} (is the tun module loaded?)"))
        })?;
        let mut flags = libc::IFF_TUN | libc::IFF_NO_PI;
        if opts.offload {
            flags |= libc::IFF_VNET_HDR;
        }
        let queues = opts.queues.clamp(1, MAX_QUEUES);
        if queues > 1 {
            flags |= libc::IFF_MULTI_QUEUE;
        }
        // Only the first fd creates: the further queues attach to it (without EXCL).
        req.set_short(ifr_flags(flags | libc::IFF_TUN_EXCL)?);
        let flags = ifr_flags(flags)?;
        ifreq_ioctl(file.as_fd(), libc::TUNSETIFF, &mut req).map_err(|e| {
            if e.raw_os_error() == Some(libc::EBUSY) {
                io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "an interface named {name} already exists (another vpngw with the same tun_name?); \
                         refusing to share it"
                    ),
                )
            } else {
                io::Error::new(e.kind(), format!("TUNSETIFF {name}: {e}"))
            }
        })?;
        let mut tun = Self {
            name: req.name(),
            file,
            more: Vec::new(),
            vnet_hdr: opts.offload,
            tso: false,
            udp_gso_writes: false,
        };
        // Further queues: the same TUNSETIFF on new fds attaches them to the device.
        for q in 1..queues {
            let f = OpenOptions::new().read(true).write(true).open("/dev/net/tun")?;
            let mut r = IfReq::new(&tun.name)?;
            r.set_short(flags);
            ifreq_ioctl(f.as_fd(), libc::TUNSETIFF, &mut r)
                .map_err(|e| io::Error::new(e.kind(), format!("TUNSETIFF {} queue {q}: {e}", tun.name)))?;
            tun.more.push(f);
        }
        if opts.offload {
            // The default header size is already 10; set it anyway so a changed default
            // cannot shift our packets.
            let size: libc::c_int = 10;
            // SAFETY: `file` is our open TUN fd; TUNSETVNETHDRSZ reads one int from the
            // pointer, which is valid for the call.
            let rc = unsafe { libc::ioctl(file_fd(&tun.file), libc::TUNSETVNETHDRSZ, std::ptr::addr_of!(size)) };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
            // Kernels that know TUN_F_USO4/6 (6.2+) accept UDP_L4 GSO packets written to
            // the device and hand us UDP super-packets on reads (from applications that
            // send with UDP_SEGMENT, or forwarded after UDP GRO), which the workers split
            // like TSO packets: one read instead of up to 64. Older kernels refuse the
            // flags; then TSO and checksum offload alone.
            let set = |flags: libc::c_uint| {
                // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned long of
                // flags) on our open TUN fd.
                unsafe { libc::ioctl(file_fd(&tun.file), libc::TUNSETOFFLOAD, libc::c_ulong::from(flags)) >= 0 }
            };
            let uso = set(OFFLOADS | libc::TUN_F_USO4 | libc::TUN_F_USO6);
            let tso = uso || set(OFFLOADS);
            tun.tso = tso;
            tun.udp_gso_writes = uso;
        }
        Ok(tun)
    }

    /// True if the kernel accepts UDP_L4 GSO packets written to the device (Linux 6.2+).
    pub fn udp_gso_writes(&self) -> bool {
        self.udp_gso_writes
    }

    /// True if every read and write carries a 10-byte `virtio_net_hdr` first.
    pub fn vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }

    /// True if the kernel accepted TSO/checksum offload (reads may be super-packets).
    pub fn tso(&self) -> bool {
        self.tso
    }

    /// Puts every queue's fd in non-blocking mode (reads return `WouldBlock`; poll
    /// [`Tun::queue_fd`] to wait).
    pub fn set_nonblocking(&self) -> io::Result<()> {
        for f in std::iter::once(&self.file).chain(&self.more) {
            super::set_nonblocking(f.as_fd())?;
        }
        Ok(())
    }

    /// The number of queues (1 unless opened with [`TunOptions::queues`] > 1).
    pub fn queues(&self) -> usize {
        1 + self.more.len()
    }

    fn queue(&self, q: usize) -> io::Result<&File> {
        match q {
            0 => Ok(&self.file),
            _ => self.more.get(q - 1).ok_or_else(|| io::Error::other(format!("no TUN queue {q}"))),
        }
    }

    /// The queue to write the IP packet `ip` on ([`flow_queue`]).
    fn queue_for(&self, ip: &[u8]) -> &File {
        self.queue(flow_queue(ip, self.queues())).unwrap_or(&self.file)
    }

    /// The file descriptor of queue `q`, if it exists.
    pub fn queue_fd(&self, q: usize) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.queue(q).ok().map(AsFd::as_fd)
    }

    /// Reads one packet from queue `q` (see [`Tun::recv`]).
    pub fn recv_queue(&self, q: usize, buf: &mut [u8]) -> io::Result<usize> {
        let mut f = self.queue(q)?;
        f.read(buf)
    }

    /// Writes one packet given as two parts (a vnet header and the IP packet) in one
    /// `writev`, on the packet's flow queue ([`flow_queue`]). Safe to call from several
    /// threads at once.
    pub fn send_parts(&self, head: &[u8], packet: &[u8]) -> io::Result<usize> {
        self.queue_for(packet).write_vectored(&[io::IoSlice::new(head), io::IoSlice::new(packet)])
    }

    /// The interface name the kernel gave us.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the MTU.
    pub fn set_mtu(&self, mtu: u16) -> io::Result<()> {
        let sock = control_socket()?;
        let mut req = IfReq::new(&self.name)?;
        req.set_int(i32::from(mtu));
        ifreq_ioctl(sock.as_fd(), libc::SIOCSIFMTU, &mut req)
            .map_err(|e| io::Error::new(e.kind(), format!("SIOCSIFMTU {} {mtu}: {e}", self.name)))
    }

    /// Sets the length of the device's transmit queue: the packets the kernel holds for
    /// our reader before it drops (the default, 500, overflows when the reader is
    /// descheduled for a few milliseconds at ~100k packets/s).
    pub fn set_tx_queue_len(&self, len: u32) -> io::Result<()> {
        let sock = control_socket()?;
        let mut req = IfReq::new(&self.name)?;
        req.set_int(i32::try_from(len).unwrap_or(i32::MAX));
        ifreq_ioctl(sock.as_fd(), libc::SIOCSIFTXQLEN, &mut req)
            .map_err(|e| io::Error::new(e.kind(), format!("SIOCSIFTXQLEN {} {len}: {e}", self.name)))
    }

    /// Sets the link up (IFF_UP), keeping the other flags.
    pub fn set_up(&self) -> io::Result<()> {
        let sock = control_socket()?;
        let mut req = IfReq::new(&self.name)?;
        ifreq_ioctl(sock.as_fd(), libc::SIOCGIFFLAGS, &mut req)
            .map_err(|e| io::Error::new(e.kind(), format!("SIOCGIFFLAGS {}: {e}", self.name)))?;
        let up = i16::try_from(libc::IFF_UP).unwrap_or(1);
        req.set_short(req.short() | up);
        ifreq_ioctl(sock.as_fd(), libc::SIOCSIFFLAGS, &mut req)
            .map_err(|e| io::Error::new(e.kind(), format!("SIOCSIFFLAGS {} up: {e}", self.name)))
    }

    /// Stops the kernel from giving the device an IPv6 link-local address (and so from
    /// sending router solicitations and MLD reports into the tunnel, which would only be
    /// counted as "no SA" drops). With `disable` IPv6 is switched off on the device
    /// altogether (no IPv6 subnet is tunnelled); without, it is switched on, whatever
    /// `net.ipv6.conf.default.disable_ipv6` gave the new device, since routes of IPv6
    /// subnets cannot be installed into a device without IPv6. Duplicate address
    /// detection is off: the device never has an address of its own to defend. Call
    /// before [`Tun::set_up`].
    pub fn quiet_ipv6(&self, disable: bool) -> io::Result<()> {
        let dir = std::path::Path::new("/proc/sys/net/ipv6/conf").join(&self.name);
        if !dir.exists() {
            // IPv6 is disabled in this kernel or namespace: nothing to quiet.
            return Ok(());
        }
        std::fs::write(dir.join("addr_gen_mode"), "1")?;
        std::fs::write(dir.join("accept_dad"), "0")?;
        std::fs::write(dir.join("disable_ipv6"), if disable { "1" } else { "0" })
    }

    /// Reads one packet (with its vnet header, if any) into `buf`; returns its length.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Writes one packet (starting with a vnet header, if any). Safe to call from
    /// several threads at once.
    pub fn send(&self, packet: &[u8]) -> io::Result<usize> {
        let ip = if self.vnet_hdr { packet.get(10..).unwrap_or_default() } else { packet };
        self.queue_for(ip).write(packet)
    }
}

/// The queue to write an IP packet on, of `queues`: a hash of its addresses (and TCP/UDP
/// ports) that is the same for both directions of a flow. The kernel sends a flow's
/// packets to the queue its packets were last written on (TUN "automq" steering), so each
/// flow stays on one queue and one worker, and different flows spread over all of them.
/// 0 for anything unparsable or a single queue.
pub fn flow_queue(packet: &[u8], queues: usize) -> usize {
    if queues <= 1 {
        return 0;
    }
    let (addrs, proto, l4) = match packet.first().map(|b| (b >> 4, usize::from(b & 0x0f) * 4)) {
        Some((4, ihl)) => (packet.get(12..20), packet.get(9), ihl),
        Some((6, _)) => (packet.get(8..40), packet.get(6), 40),
        _ => return 0,
    };
    let Some(addrs) = addrs else { return 0 };
    let (src, dst) = addrs.split_at(addrs.len() / 2);
    let word = |c: &[u8]| c.iter().fold(0u32, |w, b| w << 8 | u32::from(*b));
    let mut h = src.chunks(4).zip(dst.chunks(4)).fold(0u32, |h, (a, b)| h ^ word(a) ^ word(b));
    if matches!(proto, Some(6 | 17)) {
        if let Some(ports) = packet.get(l4..l4 + 4) {
            h ^= word(&ports[..2]) ^ word(&ports[2..]);
        }
    }
    // Fibonacci hashing spreads the (often similar) low bits.
    (h.wrapping_mul(0x9E37_79B1) >> 16) as usize % queues
}

/// `ifr_flags` is a C `short` whose top bit is IFF_TUN_EXCL (0x8000): the 16 flag bits
/// as that short.
fn ifr_flags(flags: libc::c_int) -> io::Result<i16> {
    u16::try_from(flags)
        .map(|f| i16::from_ne_bytes(f.to_ne_bytes()))
        .map_err(|_| io::Error::other(format!("TUN flags {flags:#x} do not fit ifr_flags")))
}

fn file_fd(f: &File) -> libc::c_int {
    f.as_raw_fd()
}

/// A throwaway datagram socket for interface ioctls.
fn control_socket() -> io::Result<socket2::Socket> {
    socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
}

#[cfg(test)]
mod tests {
    use super::flow_queue;

    use testkit::packet::{Ipv4, Tcp};

    fn tcp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        Ipv4::new(src.into(), dst.into()).tcp(&Tcp::new(sport, dport), &[])
    }

    #[test]
    fn flow_queue_is_symmetric_in_range_and_spreads() {
        let mut used = [0usize; 4];
        for port in 40_000..40_064u16 {
            let out = tcp4([10, 1, 0, 10], [10, 2, 0, 10], port, 5201);
            let back = tcp4([10, 2, 0, 10], [10, 1, 0, 10], 5201, port);
            let q = flow_queue(&out, 4);
            assert_eq!(q, flow_queue(&back, 4), "both directions of a flow on one queue");
            used[q] += 1;
        }
        assert!(used.iter().all(|&n| n > 0), "64 flows over 4 queues: {used:?}");
        assert_eq!(flow_queue(&testkit::packet::ipv4_udp([1, 2, 3, 4].into(), [5, 6, 7, 8].into(), 1, 2, &[]), 1), 0);
        for junk in [&[][..], &[0x45][..], &[0x60, 0, 0][..], &[0xff; 64][..]] {
            assert!(flow_queue(junk, 3) < 3);
        }
    }

    use super::*;

    #[test]
    fn ifreq_rejects_bad_names() {
        assert!(IfReq::new("").is_err());
        assert!(IfReq::new("a-name-that-is-too-long").is_err());
        assert!(IfReq::new("a/b").is_err());
        let r = IfReq::new("vpn0").unwrap();
        assert_eq!(r.name(), "vpn0");
        let mut r = r;
        r.set_short(ifr_flags(libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_TUN_EXCL).unwrap());
        assert_eq!(r.data[..2], (0x9001u16).to_ne_bytes());
        assert!(ifr_flags(0x1_0000).is_err());
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
    }
}
