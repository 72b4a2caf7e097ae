//! Every system call the gateway makes that needs `unsafe`: the TUN device, socket
//! options the standard library lacks, CLOCK_BOOTTIME, signal masks, peer credentials,
//! the host's addresses, and dropping privileges ([`privs`]). Each `unsafe` block carries a `// SAFETY:` comment.
//!
//! Routes are installed by spawning `ip` (see [`route`]); sockets are built with
//! `socket2` (see [`udp`]); the service manager is told of start-up and shutdown by
//! [`notify`]. This module does not decide anything: callers own policy.
#![allow(unsafe_code)]

pub mod batch;
pub mod notify;
pub mod privs;
pub mod route;
pub mod tun;
pub mod udp;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, BorrowedFd};

/// True when the process runs with effective uid 0.
pub fn is_root() -> bool {
    euid() == 0
}

/// The process's effective uid.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Nanoseconds of CLOCK_BOOTTIME: monotonic, and keeps counting across suspend, so SA
/// lifetimes expire on time after a laptop-style sleep.
pub fn boottime_nanos() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_BOOTTIME exists on every Linux
    // this builds for (2.6.39+).
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if rc != 0 {
        // Only EINVAL/EFAULT are possible, neither of which can happen here; fall back
        // to zero rather than panic (timers then fire early, which is harmless).
        return 0;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// The uid of the process at the other end of a connected Unix stream socket.
pub fn peer_uid(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut cred = libc::ucred { pid: 0, uid: u32::MAX, gid: u32::MAX };
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::ucred>()).unwrap_or(0);
    // SAFETY: `fd` is a live socket borrowed for the call; `cred` and `len` are valid
    // for writes and `len` holds the size of `cred`, as SO_PEERCRED requires.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            std::ptr::addr_of_mut!(cred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// Sets an integer socket option (for options `socket2` does not cover, such as
/// SO_RCVBUFFORCE).
pub fn set_int_sockopt(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(4);
    // SAFETY: `fd` is a live socket; the value pointer is valid for `len` bytes for the
    // duration of the call.
    let rc = unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, std::ptr::addr_of!(value).cast(), len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets O_NONBLOCK on `fd`.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `fd` is a live descriptor borrowed for the calls; F_GETFL/F_SETFL take
    // and return plain integers.
    let rc = unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 {
            flags
        } else {
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK)
        }
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits until `fd` is readable or `timeout_ms` passes (-1: no timeout).
pub fn wait_readable(fd: BorrowedFd<'_>, timeout_ms: i32) -> io::Result<()> {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: `p` is one valid pollfd for the duration of the call.
    let rc = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The signals the daemon acts on: SIGINT and SIGTERM (shut down) and SIGHUP (reload
/// the configuration), blocked in every thread so that one dedicated thread can
/// receive them synchronously with [`DaemonSignals::wait`].
pub struct DaemonSignals {
    set: libc::sigset_t,
}

impl DaemonSignals {
    /// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread. Call it before spawning any
    /// thread: threads inherit the mask, so no other thread is interrupted.
    pub fn block() -> io::Result<Self> {
        // SAFETY: sigset_t is plain data; it is initialized by sigemptyset right away.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t; SIGINT, SIGTERM and SIGHUP are valid signals.
        let rc = unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGHUP);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(Self { set })
    }

    /// Waits for the next SIGINT, SIGTERM or SIGHUP and returns its number.
    pub fn wait(&self) -> io::Result<i32> {
        let mut sig: libc::c_int = 0;
        // SAFETY: `self.set` was initialized in `block`; `sig` is valid for writes.
        let rc = unsafe { libc::sigwait(&self.set, &mut sig) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(sig)
    }
}

/// Whether `sig` (from [`DaemonSignals::wait`]) asks for a configuration reload.
pub fn is_reload_signal(sig: i32) -> bool {
    sig == libc::SIGHUP
}

/// Name of a daemon signal for logs.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "signal",
    }
}

/// Every address configured on this host's interfaces (in the current namespace).
pub fn local_addresses() -> io::Result<Vec<IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `head` is valid for writes; on success it points to a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a non-null node of the list getifaddrs returned, alive until
        // freeifaddrs below.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr is non-null and points to a sockaddr whose family field
            // is always readable.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: the family says this sockaddr is a sockaddr_in.
                let sin = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in>() };
                out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))));
            } else if family == libc::AF_INET6 {
                // SAFETY: the family says this sockaddr is a sockaddr_in6.
                let sin6 = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in6>() };
                out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed exactly once; no
    // reference into the list outlives this point.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// Reads `/proc/sys/net/ipv4/ip_forward`: `Some(true)` if forwarding is on.
pub fn ipv4_forwarding() -> Option<bool> {
    let s = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").ok()?;
    Some(s.trim() != "0")
}

/// Reads `/proc/sys/net/ipv6/conf/all/forwarding`: `Some(true)` if forwarding is on,
/// `None` if the kernel or namespace has no IPv6.
pub fn ipv6_forwarding() -> Option<bool> {
    let s = std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/forwarding").ok()?;
    Some(s.trim() != "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boottime_is_monotonic_and_nonzero() {
        let a = boottime_nanos();
        let b = boottime_nanos();
        assert!(a > 0);
        assert!(b >= a);
    }

    #[test]
    fn loopback_is_a_local_address() {
        let addrs = local_addresses().unwrap();
        assert!(addrs.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)), "{addrs:?}");
    }

    #[test]
    fn peer_uid_of_a_socketpair_is_our_euid() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let uid = peer_uid(std::os::fd::AsFd::as_fd(&a)).unwrap();
        // SAFETY: geteuid has no preconditions.
        assert_eq!(uid, unsafe { libc::geteuid() });
    }
}
