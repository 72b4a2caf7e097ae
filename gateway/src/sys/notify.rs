//! The service manager's readiness protocol (systemd's `sd_notify`): one datagram of
//! `KEY=VALUE` lines sent to the Unix datagram socket named by `NOTIFY_SOCKET`
//! (a path, or `@name` for a socket in the abstract namespace).
//!
//! Written here rather than linked from libsystemd or taken from a crate: the protocol
//! is one `sendto` of a few bytes, needs no `unsafe` (the standard library reaches
//! abstract sockets), and this way the daemon reads the variable once at start, before
//! any thread exists, and removes it from the environment so that nothing it spawns
//! (`ip`) can speak for it. Without `NOTIFY_SOCKET` every call does nothing.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};

/// The environment variable the service manager sets for `Type=notify` services.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Where to send notifications, taken from the environment once.
#[derive(Debug)]
pub struct Notifier {
    target: Option<SocketAddr>,
    stopping: AtomicBool,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` and removes it from the environment. Call it before any
    /// thread starts (changing the environment is not thread-safe). An unusable value
    /// (empty, relative path, too long) is an error; no variable gives a notifier that
    /// sends nothing.
    pub fn from_env() -> io::Result<Self> {
        let value = std::env::var_os(NOTIFY_SOCKET);
        std::env::remove_var(NOTIFY_SOCKET);
        let Some(value) = value else {
            return Ok(Self::disabled());
        };
        let target = parse_target(std::os::unix::ffi::OsStrExt::as_bytes(value.as_os_str()))?;
        Ok(Self { target: Some(target), stopping: AtomicBool::new(false) })
    }

    /// A notifier that sends nothing (not started by a service manager).
    pub fn disabled() -> Self {
        Self { target: None, stopping: AtomicBool::new(false) }
    }

    /// A notifier that sends to the socket named as `NOTIFY_SOCKET` would name it.
    pub fn to(socket: &str) -> io::Result<Self> {
        Ok(Self { target: Some(parse_target(socket.as_bytes())?), stopping: AtomicBool::new(false) })
    }

    /// True when a service manager is listening.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// `READY=1` with a status line: start-up is complete.
    pub fn ready(&self, status: &str) -> io::Result<()> {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)))
    }

    /// `STOPPING=1` with a status line, once however often it is called: shutdown has begun.
    pub fn stopping(&self, status: &str) -> io::Result<()> {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.send(&format!("STOPPING=1\nSTATUS={}", one_line(status)))
    }

    /// A free-form `STATUS=` line (`systemctl status` shows it).
    pub fn status(&self, status: &str) -> io::Result<()> {
        self.send(&format!("STATUS={}", one_line(status)))
    }

    /// Sends one notification datagram (`KEY=VALUE` lines).
    pub fn send(&self, message: &str) -> io::Result<()> {
        let Some(target) = &self.target else {
            return Ok(());
        };
        let sock = UnixDatagram::unbound()?;
        let sent = sock.send_to_addr(message.as_bytes(), target)?;
        if sent != message.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "notification datagram truncated"));
        }
        Ok(())
    }
}

/// A status text fit for one `STATUS=` line.
fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// `NOTIFY_SOCKET`'s value as a socket address: an absolute path, or `@name` for the
/// abstract namespace.
fn parse_target(value: &[u8]) -> io::Result<SocketAddr> {
    let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{NOTIFY_SOCKET}: {why}"));
    match value.first() {
        None => Err(invalid("empty")),
        Some(b'@') => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(&value[1..]).map_err(|e| invalid(&e.to_string()))
        }
        Some(b'/') => {
            use std::os::unix::ffi::OsStrExt;
            SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(value)).map_err(|e| invalid(&e.to_string()))
        }
        Some(_) => Err(invalid("neither an absolute path nor an abstract socket name (@...)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::linux::net::SocketAddrExt;
    use std::time::Duration;

    fn recv(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn ready_and_stopping_reach_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::to(path.to_str().unwrap()).unwrap();
        assert!(n.is_enabled());
        n.ready("2 tunnels\non vpn0").unwrap();
        assert_eq!(recv(&sock), "READY=1\nSTATUS=2 tunnels on vpn0");
        n.stopping("shutting down").unwrap();
        n.stopping("again").unwrap();
        n.status("last").unwrap();
        // STOPPING=1 went once: the next datagram is the status line.
        assert_eq!(recv(&sock), "STOPPING=1\nSTATUS=shutting down");
        assert_eq!(recv(&sock), "STATUS=last");
    }

    #[test]
    fn abstract_socket_names_start_with_at() {
        let name = format!("vpngw-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        Notifier::to(&format!("@{name}")).unwrap().ready("up").unwrap();
        assert_eq!(recv(&sock), "READY=1\nSTATUS=up");
    }

    #[test]
    fn unusable_values_are_errors_and_no_socket_sends_nothing() {
        for bad in ["", "relative/path", "notify"] {
            assert_eq!(Notifier::to(bad).unwrap_err().kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
        let long = format!("/{}", "x".repeat(200));
        assert!(Notifier::to(&long).is_err());
        let off = Notifier::disabled();
        assert!(!off.is_enabled());
        off.ready("nobody listens").unwrap();
    }
}
