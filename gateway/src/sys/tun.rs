//! The TUN device: a raw fd on `/dev/net/tun` configured with TUNSETIFF
//! (IFF_TUN | IFF_NO_PI), plus MTU and link state through SIOCSIFMTU/SIOCSIFFLAGS.
//!
//! We drive the fd directly instead of using the `tun` crate because that crate cannot
//! batch or offload: issue #4 adds IFF_VNET_HDR (GSO/GRO super-packets) and
//! IFF_MULTI_QUEUE (one queue per datapath thread), which need the TUNSETIFF flags,
//! TUNSETOFFLOAD and per-queue fds under our control.
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

/// An open TUN device. Reads and writes carry one bare IP packet each.
#[derive(Debug)]
pub struct Tun {
    file: File,
    name: String,
}

impl Tun {
    /// Creates (or attaches to) the TUN interface `name`.
    pub fn create(name: &str) -> io::Result<Self> {
        let mut req = IfReq::new(name)?;
        let file = OpenOptions::new().read(true).write(true).open("/dev/net/tun").map_err(|e| {
            io::Error::new(e.kind(), format!("cannot open /dev/net/tun: {e} (is the tun module loaded?)"))
        })?;
        let flags = i16::try_from(libc::IFF_TUN | libc::IFF_NO_PI).unwrap_or(0x1001);
        req.set_short(flags);
        ifreq_ioctl(file.as_fd(), libc::TUNSETIFF, &mut req)
            .map_err(|e| io::Error::new(e.kind(), format!("TUNSETIFF {name}: {e}")))?;
        Ok(Self { name: req.name(), file })
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
    /// altogether (no IPv6 subnet is tunnelled). Call before [`Tun::set_up`].
    pub fn quiet_ipv6(&self, disable: bool) -> io::Result<()> {
        let dir = std::path::Path::new("/proc/sys/net/ipv6/conf").join(&self.name);
        if !dir.exists() {
            // IPv6 is disabled in this kernel or namespace: nothing to quiet.
            return Ok(());
        }
        std::fs::write(dir.join("addr_gen_mode"), "1")?;
        if disable {
            std::fs::write(dir.join("disable_ipv6"), "1")?;
        }
        Ok(())
    }

    /// Reads one packet into `buf`; returns its length. Blocks.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Writes one packet. Safe to call from several threads at once.
    pub fn send(&self, packet: &[u8]) -> io::Result<usize> {
        (&self.file).write(packet)
    }
}

/// A throwaway datagram socket for interface ioctls.
fn control_socket() -> io::Result<socket2::Socket> {
    socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_rejects_bad_names() {
        assert!(IfReq::new("").is_err());
        assert!(IfReq::new("a-name-that-is-too-long").is_err());
        assert!(IfReq::new("a/b").is_err());
        let r = IfReq::new("vpn0").unwrap();
        assert_eq!(r.name(), "vpn0");
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
    }
}
