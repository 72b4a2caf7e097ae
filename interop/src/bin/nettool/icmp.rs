//! `nettool ping`: ICMP echo at an exact rate (iputils `ping -i 0.01` drifts to ~60/s on
//! a loaded 2-core machine, because it schedules each request after the previous one).
//! Request `i` leaves at `start + i / rate`; replies are matched by identifier and
//! sequence number; the longest silence between two replies is measured.
//!
//! Needs root (a raw ICMP socket). Output, one line:
//! `ping sent=N received=R dup=D longest_gap_ms=G longest_gap_at_ms=T seconds=S`.

use std::fmt;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// What to send.
pub struct PingOpts {
    /// Destination.
    pub to: Ipv4Addr,
    /// Requests per second.
    pub rate: f64,
    /// How long to send.
    pub seconds: f64,
    /// How long to wait for late replies after the last request.
    pub linger: Duration,
}

/// What came back.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PingReport {
    /// Requests sent.
    pub sent: u64,
    /// Distinct replies.
    pub received: u64,
    /// Duplicate replies.
    pub dup: u64,
    /// Longest silence between two replies, ms.
    pub longest_gap_ms: u64,
    /// When it began, ms after the first reply.
    pub longest_gap_at_ms: u64,
    /// How long sending took.
    pub elapsed: Duration,
    /// Runs of unanswered requests, `(first, last)` inclusive (at most 100).
    pub lost_ranges: Vec<(u64, u64)>,
}

impl fmt::Display for PingReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ping sent={} received={} dup={} longest_gap_ms={} longest_gap_at_ms={} seconds={:.3}",
            self.sent,
            self.received,
            self.dup,
            self.longest_gap_ms,
            self.longest_gap_at_ms,
            self.elapsed.as_secs_f64()
        )
    }
}

/// An echo request with this identifier and sequence number and 56 bytes of payload.
fn echo_request(id: u16, seq: u16) -> Vec<u8> {
    testkit::packet::icmpv4_echo_request(id, seq, &testkit::packet::pattern(8, 56))
}

/// `(identifier, sequence)` of an echo reply in a raw-socket read (IPv4 header first).
fn parse_reply(packet: &[u8]) -> Option<(u16, u16)> {
    let ihl = usize::from(*packet.first()? & 0x0f) * 4;
    let icmp = packet.get(ihl..)?;
    if *icmp.first()? != 0 {
        return None;
    }
    let id = u16::from_be_bytes(icmp.get(4..6)?.try_into().ok()?);
    let seq = u16::from_be_bytes(icmp.get(6..8)?.try_into().ok()?);
    Some((id, seq))
}

/// Sequence numbers are 16 bits on the wire; this tracks which requests were answered.
struct Replies {
    seen: Vec<bool>,
    first: Option<Instant>,
    last: Option<Instant>,
    report: PingReport,
}

impl Replies {
    /// A reply to wire sequence `seq` arrived at `now`; `sent` requests have gone out, so
    /// it answers the latest request with that low 16-bit number.
    fn add(&mut self, seq: u16, sent: u64, now: Instant) {
        let Some(idx) = (0..sent).rev().find(|i| (*i as u16) == seq) else { return };
        let Some(slot) = self.seen.get_mut(idx as usize) else { return };
        if *slot {
            self.report.dup += 1;
            return;
        }
        *slot = true;
        self.report.received += 1;
        let first = *self.first.get_or_insert(now);
        if let Some(last) = self.last {
            let gap = now.saturating_duration_since(last).as_millis() as u64;
            if gap > self.report.longest_gap_ms {
                self.report.longest_gap_ms = gap;
                self.report.longest_gap_at_ms = last.saturating_duration_since(first).as_millis() as u64;
            }
        }
        self.last = Some(now);
    }
}

/// Runs of `false` in `seen`, at most `max` of them.
fn unanswered(seen: &[bool], max: usize) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, ok) in seen.iter().enumerate() {
        match (ok, start) {
            (false, None) => start = Some(i as u64),
            (true, Some(s)) => {
                out.push((s, i as u64 - 1));
                start = None;
            }
            _ => {}
        }
        if out.len() >= max {
            return out;
        }
    }
    if let Some(s) = start {
        out.push((s, seen.len() as u64 - 1));
    }
    out
}

/// Runs the pinger.
pub fn run(opts: &PingOpts) -> Result<PingReport, String> {
    if !(opts.rate > 0.0 && opts.seconds >= 0.0) {
        return Err("--rate must be positive and --seconds not negative".to_owned());
    }
    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))
        .map_err(|e| format!("raw ICMP socket (needs root): {e}"))?;
    let _ = socket.set_recv_buffer_size(1 << 20);
    let dest = SockAddr::from(SocketAddrV4::new(opts.to, 0));
    // Connected: the kernel only hands us ICMP from the destination.
    socket.connect(&dest).map_err(|e| format!("connect {}: {e}", opts.to))?;
    let id = (std::process::id() & 0xffff) as u16;
    let interval = Duration::from_secs_f64(1.0 / opts.rate);
    let count = (opts.seconds * opts.rate).round() as u64;
    let mut replies =
        Replies { seen: vec![false; count as usize], first: None, last: None, report: PingReport::default() };
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    let mut sent = 0u64;
    let mut end: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if sent < count {
            let due = start + interval.mul_f64(sent as f64);
            if now >= due {
                // A failed send (no route for a moment) is a lost request all the same.
                let _ = socket.send(&echo_request(id, sent as u16));
                sent += 1;
                if sent == count {
                    end = Some(Instant::now() + opts.linger);
                }
                continue;
            }
        }
        let deadline = if sent < count { start + interval.mul_f64(sent as f64) } else { end.unwrap_or(now) };
        if sent >= count && now >= deadline {
            break;
        }
        let wait = deadline.saturating_duration_since(now).max(Duration::from_micros(100));
        socket.set_read_timeout(Some(wait)).map_err(|e| format!("set timeout: {e}"))?;
        match (&socket).read(&mut buf) {
            Ok(n) => {
                if let Some((rid, seq)) = parse_reply(buf.get(..n).unwrap_or_default()) {
                    if rid == id {
                        replies.add(seq, sent, Instant::now());
                    }
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            // ICMP errors (unreachable) surface as read errors on a connected socket.
            Err(_) => {}
        }
    }
    replies.report.sent = sent;
    replies.report.lost_ranges = unanswered(&replies.seen, 100);
    replies.report.elapsed = start.elapsed().saturating_sub(opts.linger);
    Ok(replies.report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_carries_id_and_sequence() {
        let p = echo_request(0x1234, 7);
        assert_eq!(p.len(), 64);
        assert_eq!((p[0], &p[4..8]), (8, &[0x12, 0x34, 0, 7][..]));
    }

    #[test]
    fn parses_replies_behind_the_ip_header() {
        let (a, b) = (std::net::Ipv4Addr::new(10, 2, 0, 10), std::net::Ipv4Addr::new(10, 1, 0, 10));
        let mut pkt = testkit::packet::ipv4_echo_request(a, b, 9, 300, &[0; 56]);
        pkt[20] = 0; // an echo reply
        assert_eq!(parse_reply(&pkt), Some((9, 300)));
        pkt[20] = 8;
        assert_eq!(parse_reply(&pkt), None);
        assert_eq!(parse_reply(&[0x45]), None);
    }

    #[test]
    fn replies_count_duplicates_wraps_and_gaps() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let mut r = Replies { seen: vec![false; 70_000], first: None, last: None, report: PingReport::default() };
        r.add(0, 1, ms(0));
        r.add(0, 1, ms(1));
        r.add(1, 2, ms(10));
        // Sequence 65536 goes out as 0 on the wire and maps to the latest request.
        r.add(0, 65_537, ms(300));
        assert_eq!((r.report.received, r.report.dup), (3, 1));
        assert_eq!((r.report.longest_gap_ms, r.report.longest_gap_at_ms), (290, 10));
        assert!(r.seen[65_536]);
        assert_eq!(unanswered(&[true, false, false, true, false], 10), vec![(1, 2), (4, 4)]);
        assert_eq!(unanswered(&[false, true, false], 1), vec![(0, 0)]);
    }
}
