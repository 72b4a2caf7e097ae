//! Traffic checks across the tunnel: `ping` and a verified TCP bulk transfer (nettool).
//!
//! Owns: running and parsing `ping` and `nettool` inside the host namespaces.
//! Does not own: deciding whether a tunnel should be up (the scenarios do).

use std::path::Path;
use std::time::Duration;

use crate::netns::Netns;
use crate::process::Proc;
use crate::{ensure, tail, wait_for, Error, Result};

/// Outcome of a `ping` run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PingStats {
    /// Echo requests sent.
    pub transmitted: u32,
    /// Echo replies received.
    pub received: u32,
}

/// Pings `dst` from `ns` `count` times, 0.2 s apart, waiting at most 2 s for each reply.
/// A run with no replies is a result, not an error.
pub fn ping(ns: &Netns, dst: &str, count: u32) -> Result<PingStats> {
    let count_s = count.to_string();
    let out = ns
        .exec(&["ping", "-n", "-c", &count_s, "-i", "0.2", "-W", "2", dst])
        .output()
        .map_err(|e| Error::new(format!("cannot run ping: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_ping(&text)
        .ok_or_else(|| Error::new(format!("cannot parse ping output: {text}{}", String::from_utf8_lossy(&out.stderr))))
}

/// Parses `N packets transmitted, M received` from ping's summary.
pub fn parse_ping(text: &str) -> Option<PingStats> {
    let line = text.lines().find(|l| l.contains("packets transmitted"))?;
    let mut nums = line.split(',').map(|part| part.split_whitespace().next().and_then(|n| n.parse().ok()));
    Some(PingStats { transmitted: nums.next()??, received: nums.next()?? })
}

/// A finished, verified TCP transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// Bytes the receiver got.
    pub bytes: u64,
    /// SHA-256 of the stream (same at both ends).
    pub sha256: String,
    /// How long the sender took.
    pub elapsed: Duration,
}

/// Sends `bytes` deterministic bytes over TCP from `client_ns` to `server_addr:port` in
/// `server_ns` with nettool; `Err` unless the receiver got exactly the bytes sent (same
/// length and SHA-256 at both ends).
#[allow(clippy::too_many_arguments)] // each is one independent knob of the transfer
pub fn tcp_transfer(
    nettool: &Path,
    server_ns: &Netns,
    server_addr: &str,
    client_ns: &Netns,
    port: u16,
    bytes: u64,
    dir: &Path,
    timeout: Duration,
) -> Result<Transfer> {
    let tool = nettool.to_string_lossy();
    let port_s = port.to_string();
    let ip: std::net::IpAddr =
        server_addr.parse().map_err(|_| Error::new(format!("not an IP address: {server_addr:?}")))?;
    // An IPv6 destination needs a listener on the IPv6 wildcard.
    let bind = if ip.is_ipv6() { "::" } else { "0.0.0.0" };
    let mut server =
        Proc::spawn("nettool-serve", server_ns.exec(&[&tool, "serve", "--port", &port_s, "--bind", bind]), dir)?;
    wait_for(Duration::from_secs(10), "nettool to listen", || {
        (server.out_text().contains("listening") || !server.is_running()).then_some(())
    })?;
    ensure!(server.is_running(), "nettool serve failed: {}", server.log_text());

    let to = std::net::SocketAddr::new(ip, port).to_string();
    let bytes_s = bytes.to_string();
    let started = std::time::Instant::now();
    let mut client =
        Proc::spawn("nettool-send", client_ns.exec(&[&tool, "send", "--to", &to, "--bytes", &bytes_s]), dir)?;
    let status = client.wait_timeout(timeout);
    let elapsed = started.elapsed();
    let diag = |c: &Proc, s: &Proc| {
        format!(
            "sender: {}{}\nreceiver: {}{}",
            c.out_text(),
            tail(&c.log_text(), 5),
            s.out_text(),
            tail(&s.log_text(), 5)
        )
    };
    let Some(status) = status else {
        return Err(Error::new(format!(
            "TCP transfer of {bytes} bytes to {to} timed out after {timeout:?}\n{}",
            diag(&client, &server)
        )));
    };
    ensure!(status.success(), "TCP transfer to {to} failed ({status})\n{}", diag(&client, &server));
    server.wait_timeout(Duration::from_secs(10));

    let sent = field_line(&client.out_text(), "sent ");
    let received = field_line(&server.out_text(), "received ");
    let (Some(sent), Some(received)) = (sent, received) else {
        return Err(Error::new(format!("transfer output incomplete\n{}", diag(&client, &server))));
    };
    ensure!(
        sent == received,
        "transfer corrupted: sender {sent:?} != receiver {received:?}\n{}",
        diag(&client, &server)
    );
    Ok(Transfer { bytes: received.0, sha256: received.1, elapsed })
}

/// Parses `PREFIXbytes=N sha256=HEX` from the first line starting with `prefix`.
fn field_line(text: &str, prefix: &str) -> Option<(u64, String)> {
    let line = text.lines().find_map(|l| l.strip_prefix(prefix))?;
    let mut bytes = None;
    let mut sha = None;
    for kv in line.split_whitespace() {
        match kv.split_once('=') {
            Some(("bytes", v)) => bytes = v.parse().ok(),
            Some(("sha256", v)) if v.len() == 64 => sha = Some(v.to_owned()),
            _ => {}
        }
    }
    Some((bytes?, sha?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ping_summary() {
        let out = "PING 10.2.0.10 (10.2.0.10) 56(84) bytes of data.\n\n--- 10.2.0.10 ping statistics ---\n\
                   5 packets transmitted, 4 received, 20% packet loss, time 803ms\n";
        assert_eq!(parse_ping(out), Some(PingStats { transmitted: 5, received: 4 }));
        let none = "3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 2041ms\n";
        assert_eq!(parse_ping(none), Some(PingStats { transmitted: 3, received: 0 }));
        assert_eq!(parse_ping("garbage"), None);
    }

    #[test]
    fn parses_nettool_lines() {
        let sha = "ab".repeat(32);
        let out = format!("sent bytes=10485760 sha256={sha}\npeer received bytes=10485760 sha256={sha}\n");
        assert_eq!(field_line(&out, "sent "), Some((10_485_760, sha.clone())));
        assert_eq!(field_line(&format!("received bytes=1 sha256={sha}\n"), "received "), Some((1, sha)));
        assert_eq!(field_line("sent bytes=1 sha256=short\n", "sent "), None);
    }
}
