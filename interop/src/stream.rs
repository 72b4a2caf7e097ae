//! Continuous traffic through the tunnel while SAs change underneath it: a 100-per-second
//! ICMP ping (`nettool ping`, paced exactly, unlike iputils `ping -i 0.01` which drifts
//! to ~60/s under load) and a sequenced UDP stream (`nettool udpsend`/`udprecv`), both
//! lanA -> lanB (or between any two namespaces, [`Load::start_between`]), measuring what
//! was lost and the longest silence.
//!
//! Owns: starting both generators, waiting for them, and parsing their output into
//! [`LoadReport`]. Does not own: deciding what loss is acceptable (the scenarios do).

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::netns::{self, Netns, Topology};
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
    /// The standard load: ping at 100/s and UDP at 20 Mbit/s in 1200-byte datagrams.
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
    /// Runs of datagrams never received: `(first, last)` sequence numbers.
    pub lost_ranges: Vec<(u64, u64)>,
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
    /// Runs of unanswered requests: `(first, last)` sequence numbers.
    pub lost_ranges: Vec<(u64, u64)>,
}

impl PingResult {
    /// Echo requests without a reply.
    pub fn lost(&self) -> u64 {
        self.transmitted.saturating_sub(self.received)
    }
}

/// Both generators' outcomes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadReport {
    /// The ping.
    pub ping: PingResult,
    /// The UDP stream.
    pub udp: UdpResult,
    /// Seconds between two echo requests (maps a ping sequence number to its send time).
    pub ping_interval_s: f64,
    /// Seconds between two datagrams.
    pub udp_interval_s: f64,
}

/// A run of lost packets and when they were sent.
#[derive(Clone, Debug, PartialEq)]
pub struct LossWindow {
    /// `ping` or `UDP`.
    pub what: &'static str,
    /// Send time of the first lost packet, seconds after the generators started.
    pub from_s: f64,
    /// Send time of the last one.
    pub to_s: f64,
    /// How many.
    pub packets: u64,
}

impl LoadReport {
    /// Every run of lost packets with its send times (from the sequence numbers and the
    /// fixed send rates).
    pub fn loss_windows(&self) -> Vec<LossWindow> {
        let win = |what, ranges: &[(u64, u64)], interval: f64| {
            ranges
                .iter()
                .map(move |(a, b)| LossWindow {
                    what,
                    from_s: *a as f64 * interval,
                    to_s: *b as f64 * interval,
                    packets: b.saturating_sub(*a) + 1,
                })
                .collect::<Vec<_>>()
        };
        let mut all = win("ping", &self.ping.lost_ranges, self.ping_interval_s);
        all.extend(win("UDP", &self.udp.lost_ranges, self.udp_interval_s));
        all
    }

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
        Self::start_between(nettool, &topo.lan_a, &topo.lan_b, netns::LAN_B_HOST, dir, spec)
    }

    /// Starts the UDP receiver (port [`UDP_PORT`]) in `to`, then the UDP sender and the
    /// ping towards `to_addr` in `from`; their output files go to `dir` (one directory per
    /// load, as the file names are fixed).
    pub fn start_between(
        nettool: &Path,
        from: &Netns,
        to: &Netns,
        to_addr: &str,
        dir: &Path,
        spec: LoadSpec,
    ) -> Result<Self> {
        let tool = nettool.to_string_lossy();
        let port = UDP_PORT.to_string();
        let idle = spec.idle.as_millis().to_string();
        let mut recv = Proc::spawn(
            "udprecv",
            to.exec(&[&tool, "udprecv", "--port", &port, "--idle-ms", &idle, "--gap-report-ms", "50"]),
            dir,
        )?;
        wait_for(Duration::from_secs(10), "udprecv to listen", || {
            (recv.out_text().contains("listening") || !recv.is_running()).then_some(())
        })?;
        ensure!(recv.is_running(), "nettool udprecv failed: {}", recv.log_text());
        let dst = format!("{to_addr}:{UDP_PORT}");
        let (secs, mbit, size) = (spec.seconds.to_string(), spec.udp_mbit.to_string(), spec.udp_size.to_string());
        let send = Proc::spawn(
            "udpsend",
            from.exec(&[&tool, "udpsend", "--to", &dst, "--rate-mbit", &mbit, "--seconds", &secs, "--size", &size]),
            dir,
        )?;
        let rate = spec.ping_rate.max(1).to_string();
        let ping = Proc::spawn(
            "ping",
            from.exec(&[&tool, "ping", "--to", to_addr, "--rate", &rate, "--seconds", &secs]),
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
        let ping = parse_nettool_ping(&ping_out).ok_or_else(|| {
            Error::new(format!("cannot parse nettool ping's output: {}{}", tail(&ping_out, 5), self.ping.log_text()))
        })?;
        Ok(LoadReport {
            ping,
            udp,
            ping_interval_s: 1.0 / f64::from(self.spec.ping_rate.max(1)),
            udp_interval_s: self.spec.udp_size as f64 * 8.0 / (self.spec.udp_mbit * 1e6),
        })
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

/// `(from, to)` of every `lost from=A to=B` line.
fn lost_ranges(text: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter(|l| l.starts_with("lost "))
        .filter_map(|l| {
            let kv: Vec<_> = l.split_whitespace().filter_map(|kv| kv.split_once('=')).collect();
            Some((num(&kv, "from")?, num(&kv, "to")?))
        })
        .collect()
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
        lost_ranges: lost_ranges(receiver),
    })
}

/// Parses `nettool ping`'s `ping sent=.. received=.. dup=.. longest_gap_ms=.. ...` line.
pub fn parse_nettool_ping(text: &str) -> Option<PingResult> {
    let kv = kv_line(text, "ping ")?;
    Some(PingResult {
        transmitted: num(&kv, "sent")?,
        received: num(&kv, "received")?,
        dups: num(&kv, "dup")?,
        longest_gap_ms: num(&kv, "longest_gap_ms")?,
        longest_gap_at_ms: num(&kv, "longest_gap_at_ms")?,
        lost_ranges: lost_ranges(text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_udp_stream_reports() {
        let sender = "udpsend sent=1000 errors=2 seconds=1.000\n";
        let receiver = "listening on 0.0.0.0:5002\ngap at_ms=400 ms=75\ngap at_ms=800 ms=51\nlost from=10 to=14\n\
                        udprecv received=996 unique=995 lost=5 dup=1 reordered=3 total=1000 longest_gap_ms=75 \
                        longest_gap_at_ms=400\n";
        let r = parse_udp(sender, receiver).unwrap();
        assert_eq!((r.sent, r.send_errors, r.received, r.unique, r.dup, r.reordered), (1000, 2, 996, 995, 1, 3));
        assert_eq!(r.lost(), 5);
        assert_eq!((r.longest_gap_ms, r.longest_gap_at_ms), (75, 400));
        assert_eq!(r.gaps, vec![(400, 75), (800, 51)]);
        assert_eq!(r.lost_ranges, vec![(10, 14)]);
        let report = LoadReport { udp: r, udp_interval_s: 0.5, ..LoadReport::default() };
        assert_eq!(report.loss_windows(), vec![LossWindow { what: "UDP", from_s: 5.0, to_s: 7.0, packets: 5 }]);
        assert_eq!(parse_udp("", receiver), None);
        assert_eq!(parse_udp(sender, "listening\n"), None);
    }

    #[test]
    fn report_shows_loss_and_gaps() {
        let ping = PingResult {
            transmitted: 5,
            received: 3,
            dups: 1,
            longest_gap_ms: 240,
            longest_gap_at_ms: 10,
            lost_ranges: vec![(1, 2)],
        };
        let report = LoadReport { ping, ping_interval_s: 0.01, ..LoadReport::default() };
        assert!(report.ensure_lossless().is_err());
        assert!(report.to_string().contains("ping 3/5 replies, 2 lost, longest gap 240 ms"), "{report}");
    }

    #[test]
    fn parses_nettool_ping() {
        let out = "lost from=7 to=8\nping sent=6000 received=5998 dup=1 longest_gap_ms=31 longest_gap_at_ms=10250 \
                   seconds=60.001\n";
        let p = parse_nettool_ping(out).unwrap();
        assert_eq!((p.transmitted, p.received, p.dups, p.lost()), (6000, 5998, 1, 2));
        assert_eq!((p.longest_gap_ms, p.longest_gap_at_ms), (31, 10250));
        assert_eq!(p.lost_ranges, vec![(7, 8)]);
        assert_eq!(parse_nettool_ping("pong\n"), None);
    }

    #[test]
    fn lossless_report_passes() {
        let report = LoadReport {
            ping: PingResult { transmitted: 10, received: 10, ..PingResult::default() },
            udp: UdpResult { sent: 5, received: 5, unique: 5, ..UdpResult::default() },
            ..LoadReport::default()
        };
        assert!(report.ensure_lossless().is_ok());
    }
}
