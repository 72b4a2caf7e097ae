//! Continuous traffic through the tunnel while SAs change underneath it: a 100-per-second
//! `ping` and a sequenced UDP stream (`nettool udpsend`/`udprecv`), both lanA -> lanB,
//! measuring what was lost and the longest silence.
//!
//! Owns: starting both generators, waiting for them, and parsing their output into
//! [`LoadReport`]. Does not own: deciding what loss is acceptable (the scenarios do).

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::netns::{self, Topology};
use crate::process::Proc;
use crate::{ensure, tail, wait_for, Error, Result};

/// UDP port of the stream receiver in lanB.
pub const UDP_PORT: u16 = 5002;

/// What to send.
#[derive(Clone, Copy, Debug)]
pub struct LoadSpec {
    /// How long both generators run.
    pub seconds: f64,
    /// UDP payload rate in Mbit/s.
    pub udp_mbit: f64,
    /// UDP payload size in bytes.
    pub udp_size: usize,
    /// Pings per second.
    pub ping_rate: u32,
    /// The UDP receiver gives up after this long without data (must exceed any outage a
    /// scenario provokes).
    pub idle: Duration,
}

impl LoadSpec {
    /// The load: ping at 100/s and UDP at 20 Mbit/s in 1200-byte datagrams.
    pub fn standard(seconds: f64) -> Self {
        Self { seconds, udp_mbit: 20.0, udp_size: 1200, ping_rate: 100, idle: Duration::from_secs(40) }
    }
}

/// The UDP stream's outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UdpResult {
    /// Datagrams the sender numbered (including any the kernel refused).
    pub sent: u64,
    /// Of those, refused by the sender's kernel.
    pub send_errors: u64,
    /// Datagrams received (with duplicates).
    pub received: u64,
    /// Distinct datagrams received.
    pub unique: u64,
    /// Extra copies received.
    pub dup: u64,
    /// Datagrams that arrived after a later one.
    pub reordered: u64,
    /// Longest silence between two arrivals, ms.
    pub longest_gap_ms: u64,
    /// When it began, ms after the first arrival.
    pub longest_gap_at_ms: u64,
    /// Every silence of at least 50 ms: `(began at ms, lasted ms)`.
    pub gaps: Vec<(u64, u64)>,
}

impl UdpResult {
    /// Datagrams sent but never received (the tail included).
    pub fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.unique)
    }
}

/// The ping's outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PingResult {
    /// Echo requests sent.
    pub transmitted: u64,
    /// Distinct echo replies.
    pub received: u64,
    /// Duplicate replies.
    pub dups: u64,
    /// Longest silence between two replies, ms (from `ping -D` timestamps).
    pub longest_gap_ms: u64,
    /// When it began, ms after the first reply.
    pub longest_gap_at_ms: u64,
}

impl PingResult {
    /// Echo requests without a reply.
    pub fn lost(&self) -> u64 {
        self.transmitted.saturating_sub(self.received)
    }
}

/// Both generators' outcomes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// The ping.
    pub ping: PingResult,
    /// The UDP stream.
    pub udp: UdpResult,
}

impl LoadReport {
    /// `Err` unless neither the ping nor the UDP stream lost anything.
    pub fn ensure_lossless(&self) -> Result<()> {
        ensure!(
            self.ping.lost() == 0 && self.udp.lost() == 0,
            "traffic was lost: {self}; UDP silences >= 50 ms (at ms, lasted ms): {:?}",
            self.udp.gaps
        );
        Ok(())
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (p, u) = (&self.ping, &self.udp);
        write!(
            f,
            "ping {}/{} replies, {} lost, longest gap {} ms (at {:.1} s); UDP {} sent, {} lost, {} dup, {} reordered, \
             longest gap {} ms (at {:.1} s)",
            p.received,
            p.transmitted,
            p.lost(),
            p.longest_gap_ms,
            p.longest_gap_at_ms as f64 / 1000.0,
            u.sent,
            u.lost(),
            u.dup,
            u.reordered,
            u.longest_gap_ms,
            u.longest_gap_at_ms as f64 / 1000.0
        )
    }
}

/// The running generators; dropping stops them.
pub struct Load {
    spec: LoadSpec,
    recv: Proc,
    send: Proc,
    ping: Proc,
    started: Instant,
}

impl Load {
    /// Starts the UDP receiver in lanB, then the UDP sender and the ping in lanA.
    pub fn start(nettool: &Path, topo: &Topology, dir: &Path, spec: LoadSpec) -> Result<Self> {
        let tool = nettool.to_string_lossy();
        let port = UDP_PORT.to_string();
        let idle = spec.idle.as_millis().to_string();
        let mut recv = Proc::spawn(
            "udprecv",
            topo.lan_b.exec(&[&tool, "udprecv", "--port", &port, "--idle-ms", &idle, "--gap-report-ms", "50"]),
            dir,
        )?;
        wait_for(Duration::from_secs(10), "udprecv to listen", || {
            (recv.out_text().contains("listening") || !recv.is_running()).then_some(())
        })?;
        ensure!(recv.is_running(), "nettool udprecv failed: {}", recv.log_text());
        let to = format!("{}:{}", netns::LAN_B_HOST, UDP_PORT);
        let (secs, mbit, size) = (spec.seconds.to_string(), spec.udp_mbit.to_string(), spec.udp_size.to_string());
        let send = Proc::spawn(
            "udpsend",
            topo.lan_a.exec(&[
                &tool,
                "udpsend",
                "--to",
                &to,
                "--rate-mbit",
                &mbit,
                "--seconds",
                &secs,
                "--size",
                &size,
            ]),
            dir,
        )?;
        let count = ((spec.seconds * f64::from(spec.ping_rate)).round() as u64).max(1).to_string();
        let interval = format!("{:.3}", 1.0 / f64::from(spec.ping_rate.max(1)));
        let ping = Proc::spawn(
            "ping",
            topo.lan_a.exec(&["ping", "-n", "-D", "-i", &interval, "-c", &count, "-W", "2", netns::LAN_B_HOST]),
            dir,
        )?;
        Ok(Self { spec, recv, send, ping, started: Instant::now() })
    }

    /// Time since the generators started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// True while the UDP sender or the ping still sends.
    pub fn is_running(&mut self) -> bool {
        self.send.is_running() || self.ping.is_running()
    }

    /// Waits for all three processes and parses their reports.
    pub fn finish(mut self) -> Result<LoadReport> {
        let limit = Duration::from_secs_f64(self.spec.seconds) + self.spec.idle + Duration::from_secs(30);
        for p in [&mut self.send, &mut self.ping, &mut self.recv] {
            let left = limit.saturating_sub(self.started.elapsed()).max(Duration::from_secs(5));
            ensure!(
                p.wait_timeout(left).is_some(),
                "{} did not finish within {limit:?}: {}",
                p.label(),
                tail(&p.log_text(), 5)
            );
        }
        let sender = self.send.out_text();
        let receiver = self.recv.out_text();
        let ping_out = self.ping.out_text();
        let udp = parse_udp(&sender, &receiver).ok_or_else(|| {
            Error::new(format!(
                "cannot read the UDP stream's results:\nsender: {sender}{}\nreceiver: {}{}",
                self.send.log_text(),
                tail(&receiver, 5),
                self.recv.log_text()
            ))
        })?;
        let ping = parse_fast_ping(&ping_out)
            .ok_or_else(|| Error::new(format!("cannot parse ping's output: {}", tail(&ping_out, 5))))?;
        Ok(LoadReport { ping, udp })
    }
}

/// `key=value` pairs of the first line starting with `prefix`.
fn kv_line<'a>(text: &'a str, prefix: &str) -> Option<Vec<(&'a str, &'a str)>> {
    let line = text.lines().find(|l| l.starts_with(prefix))?;
    Some(line.split_whitespace().filter_map(|kv| kv.split_once('=')).collect())
}

fn num(kvs: &[(&str, &str)], key: &str) -> Option<u64> {
    kvs.iter().find(|(k, _)| *k == key).and_then(|(_, v)| v.parse().ok())
}

/// Combines `udpsend ...` and `udprecv ...` (plus its `gap ...` lines).
pub fn parse_udp(sender: &str, receiver: &str) -> Option<UdpResult> {
    let s = kv_line(sender, "udpsend ")?;
    let r = kv_line(receiver, "udprecv ")?;
    let gaps = receiver
        .lines()
        .filter(|l| l.starts_with("gap "))
        .filter_map(|l| {
            let kv: Vec<_> = l.split_whitespace().filter_map(|kv| kv.split_once('=')).collect();
            Some((num(&kv, "at_ms")?, num(&kv, "ms")?))
        })
        .collect();
    Some(UdpResult {
        sent: num(&s, "sent")?,
        send_errors: num(&s, "errors")?,
        received: num(&r, "received")?,
        unique: num(&r, "unique")?,
        dup: num(&r, "dup")?,
        reordered: num(&r, "reordered")?,
        longest_gap_ms: num(&r, "longest_gap_ms")?,
        longest_gap_at_ms: num(&r, "longest_gap_at_ms")?,
        gaps,
    })
}

/// Parses `ping -D` output: the summary, duplicate replies and the longest silence
/// between consecutive replies (`[EPOCH.micros] 64 bytes from ...: icmp_seq=N ...`).
pub fn parse_fast_ping(text: &str) -> Option<PingResult> {
    let stats = crate::traffic::parse_ping(text)?;
    let mut times = Vec::new();
    let mut dups = 0;
    for line in text.lines().filter(|l| l.contains(" bytes from ")) {
        if line.contains("DUP!") {
            dups += 1;
            continue;
        }
        let stamp = line.strip_prefix('[').and_then(|l| l.split_once(']')).and_then(|(t, _)| t.parse::<f64>().ok());
        if let Some(t) = stamp {
            times.push(t);
        }
    }
    let (mut longest, mut at) = (0u64, 0u64);
    let first = times.first().copied().unwrap_or(0.0);
    for w in times.windows(2) {
        if let [a, b] = w {
            let gap = ((b - a) * 1000.0).round().max(0.0) as u64;
            if gap > longest {
                longest = gap;
                at = ((a - first) * 1000.0).round().max(0.0) as u64;
            }
        }
    }
    Some(PingResult {
        transmitted: u64::from(stats.transmitted),
        received: u64::from(stats.received),
        dups,
        longest_gap_ms: longest,
        longest_gap_at_ms: at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_udp_stream_reports() {
        let sender = "udpsend sent=1000 errors=2 seconds=1.000\n";
        let receiver = "listening on 0.0.0.0:5002\ngap at_ms=400 ms=75\ngap at_ms=800 ms=51\n\
                        udprecv received=996 unique=995 lost=5 dup=1 reordered=3 total=1000 longest_gap_ms=75 \
                        longest_gap_at_ms=400\n";
        let r = parse_udp(sender, receiver).unwrap();
        assert_eq!((r.sent, r.send_errors, r.received, r.unique, r.dup, r.reordered), (1000, 2, 996, 995, 1, 3));
        assert_eq!(r.lost(), 5);
        assert_eq!((r.longest_gap_ms, r.longest_gap_at_ms), (75, 400));
        assert_eq!(r.gaps, vec![(400, 75), (800, 51)]);
        assert_eq!(parse_udp("", receiver), None);
        assert_eq!(parse_udp(sender, "listening\n"), None);
    }

    #[test]
    fn parses_fast_ping_with_gaps_and_duplicates() {
        let out = "PING 10.2.0.10 (10.2.0.10) 56(84) bytes of data.\n\
            [1000.000000] 64 bytes from 10.2.0.10: icmp_seq=1 ttl=62 time=0.3 ms\n\
            [1000.010000] 64 bytes from 10.2.0.10: icmp_seq=2 ttl=62 time=0.3 ms\n\
            [1000.010500] 64 bytes from 10.2.0.10: icmp_seq=2 ttl=62 time=0.4 ms (DUP!)\n\
            [1000.250000] 64 bytes from 10.2.0.10: icmp_seq=5 ttl=62 time=0.3 ms\n\
            \n--- 10.2.0.10 ping statistics ---\n\
            5 packets transmitted, 3 received, +1 duplicates, 40% packet loss, time 40ms\n";
        let p = parse_fast_ping(out).unwrap();
        assert_eq!((p.transmitted, p.received, p.dups, p.lost()), (5, 3, 1, 2));
        assert_eq!((p.longest_gap_ms, p.longest_gap_at_ms), (240, 10));
        let report = LoadReport { ping: p, udp: UdpResult::default() };
        assert!(report.ensure_lossless().is_err());
        assert!(report.to_string().contains("ping 3/5 replies, 2 lost, longest gap 240 ms"));
    }

    #[test]
    fn lossless_report_passes() {
        let report = LoadReport {
            ping: PingResult { transmitted: 10, received: 10, ..PingResult::default() },
            udp: UdpResult { sent: 5, received: 5, unique: 5, ..UdpResult::default() },
        };
        assert!(report.ensure_lossless().is_ok());
    }
}
