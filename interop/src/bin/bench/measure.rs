//! The measurements: iperf3 TCP and UDP runs, ping round trips, and CPU time read from
//! `/proc` (per gateway process and for the whole machine), with their parsers.
//!
//! Owns: running `iperf3`/`ping` inside the host namespaces (interruptibly, see
//! [`super::interrupt`]) and turning their output into numbers. Does not own: the
//! topology or the gateways (see [`super::cases`]), nor the report.

use std::path::Path;
use std::time::{Duration, Instant};

use interop::netns::Netns;
use interop::process::Proc;
use interop::{Error, Result};
use serde_json::Value;

use super::interrupt;
use super::report::Settings;

/// TCP port of the iperf3 server in lanB.
const IPERF_PORT: &str = "5201";

/// One iperf3 TCP run, as the receiver saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct TcpRun {
    /// Goodput at the receiver, bit/s.
    pub bits_per_second: f64,
    /// Payload bytes the receiver got.
    pub bytes: u64,
    /// Sender retransmissions, if iperf3 reported them.
    pub retransmits: Option<u64>,
}

/// One iperf3 UDP run.
#[derive(Clone, Debug, PartialEq)]
pub struct UdpRun {
    /// What the sender managed to send, bit/s (can be below the offered rate).
    pub sent_bps: f64,
    /// What arrived at the receiver, bit/s.
    pub received_bps: f64,
    /// Datagrams sent.
    pub packets: u64,
    /// Datagrams lost (sent but not received).
    pub lost_packets: u64,
    /// `lost_packets / packets`, percent.
    pub lost_percent: f64,
    /// Receiver jitter, ms.
    pub jitter_ms: f64,
}

/// A ping run's summary.
#[derive(Clone, Debug, PartialEq)]
pub struct Rtt {
    /// Echo requests sent.
    pub transmitted: u32,
    /// Echo replies received.
    pub received: u32,
    /// Minimum round trip, ms.
    pub min_ms: f64,
    /// Average round trip, ms.
    pub avg_ms: f64,
    /// Maximum round trip, ms.
    pub max_ms: f64,
    /// Standard deviation, ms.
    pub mdev_ms: f64,
    /// Median of the individual replies' times, ms (robust against the scheduling
    /// outliers of a busy machine, which dominate the average).
    pub median_ms: Option<f64>,
}

/// The cost of waking a sleeping thread on this machine, in microseconds (median): a
/// token passed around a ring of four threads blocked in `recv` on Unix datagram
/// sockets, 200 rounds 5 ms apart so that every hop wakes a cold thread, as a packet
/// arriving at an idle gateway does. A round trip through two gateways needs at least
/// three such wake-ups that plain routing does not (see docs/performance.md). `None`
/// if a socket or thread could not be set up.
pub fn thread_wakeup_us() -> Option<f64> {
    use std::os::unix::net::UnixDatagram;
    const HOPS: usize = 4;
    const ROUNDS: usize = 200;
    let pairs: Vec<(UnixDatagram, UnixDatagram)> =
        (0..HOPS).map(|_| UnixDatagram::pair()).collect::<std::io::Result<_>>().ok()?;
    let timeout = Some(Duration::from_secs(2));
    let mut threads = Vec::new();
    // Thread i receives on pair i and sends on pair i + 1; the last sends back on pair 0's
    // other end, where this thread waits.
    let (first_tx, back_rx) = UnixDatagram::pair().ok()?;
    let mut senders: Vec<UnixDatagram> =
        pairs.iter().skip(1).map(|(tx, _)| tx.try_clone()).collect::<std::io::Result<_>>().ok()?;
    senders.push(first_tx);
    let entry = pairs.first()?.0.try_clone().ok()?;
    for ((_, rx), tx) in pairs.iter().zip(senders) {
        let rx = rx.try_clone().ok()?;
        rx.set_read_timeout(timeout).ok()?;
        threads.push(std::thread::spawn(move || {
            let mut b = [0u8; 8];
            for _ in 0..ROUNDS {
                if rx.recv(&mut b).is_err() || tx.send(&b[..1]).is_err() {
                    return;
                }
            }
        }));
    }
    back_rx.set_read_timeout(timeout).ok()?;
    let mut rounds = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        std::thread::sleep(Duration::from_millis(5));
        let t = Instant::now();
        entry.send(b"x").ok()?;
        let mut b = [0u8; 8];
        back_rx.recv(&mut b).ok()?;
        rounds.push(t.elapsed().as_secs_f64() * 1e6 / (HOPS + 1) as f64);
    }
    for t in threads {
        let _ = t.join();
    }
    median(&rounds)
}

/// Runs `cmd` under a guard, polling every 50 ms; kills it on timeout or interrupt.
/// Returns its exit success and stdout.
fn run_guarded(label: &str, cmd: std::process::Command, dir: &Path, timeout: Duration) -> Result<(bool, String)> {
    let mut p = Proc::spawn(label, cmd, dir)?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = p.try_exit() {
            return Ok((st.success(), p.out_text()));
        }
        interrupt::check()?;
        if Instant::now() >= deadline {
            return Err(Error::new(format!(
                "{label} did not finish within {timeout:?}; stderr: {}",
                interop::tail(&p.log_text(), 5)
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Pings `dst` from `ns` `count` times at `interval` seconds (root allows < 0.2 s).
pub fn ping(ns: &Netns, dst: &str, count: u32, interval: f64, dir: &Path) -> Result<Rtt> {
    let (count_s, int_s) = (count.to_string(), format!("{interval}"));
    let cmd = ns.exec(&["ping", "-n", "-c", &count_s, "-i", &int_s, "-W", "2", dst]);
    let timeout = Duration::from_secs_f64(f64::from(count) * interval + 10.0);
    let (_, out) = run_guarded("ping", cmd, dir, timeout)?;
    parse_ping(&out).ok_or_else(|| Error::new(format!("cannot parse ping output (no replies?):\n{out}")))
}

/// Polls with single pings until `dst` answers (the tunnel carries traffic) or `timeout`.
pub fn wait_reachable(ns: &Netns, dst: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        interrupt::check()?;
        let ok = ns
            .exec(&["ping", "-n", "-q", "-c", "1", "-W", "1", dst])
            .output()
            .map_err(|e| Error::new(format!("cannot run ping: {e}")))?
            .status
            .success();
        if ok {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::new(format!("{dst} not reachable from {} within {timeout:?}", ns.name())));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Parses ping's summary (`N packets transmitted, M received` and `rtt min/avg/max/mdev`)
/// and the per-reply `time=X ms` fields (for the median).
pub fn parse_ping(text: &str) -> Option<Rtt> {
    let counts = text.lines().find(|l| l.contains("packets transmitted"))?;
    let mut nums = counts.split(',').map(|p| p.split_whitespace().next().and_then(|n| n.parse().ok()));
    let (transmitted, received) = (nums.next()??, nums.next()??);
    let rtt = text.lines().find_map(|l| l.split_once("min/avg/max/mdev = ").map(|(_, r)| r))?;
    let vals: Vec<f64> = rtt.split_whitespace().next()?.split('/').filter_map(|v| v.parse().ok()).collect();
    let [min_ms, avg_ms, max_ms, mdev_ms] = vals[..] else { return None };
    let times: Vec<f64> = text
        .lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| l.split_once(" time=").and_then(|(_, t)| t.split_whitespace().next()?.parse().ok()))
        .collect();
    Some(Rtt { transmitted, received, min_ms, avg_ms, max_ms, mdev_ms, median_ms: median(&times) })
}

/// A one-off iperf3 server in `ns` bound to `addr`, listening when this returns.
fn iperf_server(ns: &Netns, addr: &str, dir: &Path) -> Result<Proc> {
    let cmd = ns.exec(&["iperf3", "-s", "-1", "-B", addr, "-p", IPERF_PORT]);
    let mut server = Proc::spawn("iperf3-server", cmd, dir)?;
    let filter = format!("sport = :{IPERF_PORT}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        interrupt::check()?;
        if !server.is_running() {
            return Err(Error::new(format!("iperf3 server exited: {}", server.log_text())));
        }
        let listening = ns.run(&["ss", "-Hltn", &filter]).map(|s| !s.trim().is_empty()).unwrap_or(false);
        if listening {
            return Ok(server);
        }
        if Instant::now() >= deadline {
            return Err(Error::new("iperf3 server not listening after 10 s"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs one iperf3 client (`extra` args) from `client` to the server at `addr` in
/// `server_ns` for `seconds`; returns its JSON report.
fn iperf(client: &Netns, server_ns: &Netns, addr: &str, seconds: u32, extra: &[&str], dir: &Path) -> Result<Value> {
    let _server = iperf_server(server_ns, addr, dir)?;
    let secs = seconds.to_string();
    let mut argv = vec!["iperf3", "-c", addr, "-p", IPERF_PORT, "-t", &secs, "-J", "--connect-timeout", "5000"];
    argv.extend_from_slice(extra);
    let timeout = Duration::from_secs(u64::from(seconds) + 30);
    let (ok, out) = run_guarded("iperf3-client", client.exec(&argv), dir, timeout)?;
    let json: Value = serde_json::from_str(&out)
        .map_err(|e| Error::new(format!("iperf3 output is not JSON ({e}): {}", interop::tail(&out, 5))))?;
    if let Some(err) = json.get("error").and_then(Value::as_str) {
        return Err(Error::new(format!("iperf3: {err}")));
    }
    if !ok {
        return Err(Error::new(format!("iperf3 failed: {}", interop::tail(&out, 5))));
    }
    Ok(json)
}

/// One TCP run of `seconds` with `streams` parallel streams from `client` to `addr` in
/// `server_ns`.
pub fn tcp_run(
    client: &Netns,
    server_ns: &Netns,
    addr: &str,
    seconds: u32,
    streams: u32,
    dir: &Path,
) -> Result<TcpRun> {
    let p = streams.max(1).to_string();
    let extra: &[&str] = if streams > 1 { &["-P", &p] } else { &[] };
    let json = iperf(client, server_ns, addr, seconds, extra, dir)?;
    parse_tcp(&json).ok_or_else(|| Error::new(format!("unexpected iperf3 TCP report: {json}")))
}

/// One UDP run from `client` to `addr` in `server_ns`, offered at `s.udp_rate` (iperf3
/// `-b` syntax, e.g. `1G`) with `s.udp_len`-byte datagrams and `s.udp_buffer` socket
/// buffers at both ends; with `reverse` the server sends and the client receives
/// (`iperf3 -R`).
pub fn udp_run(
    client: &Netns,
    server_ns: &Netns,
    addr: &str,
    s: &Settings,
    reverse: bool,
    dir: &Path,
) -> Result<UdpRun> {
    let len = s.udp_len.to_string();
    let mut extra = vec!["-u", "-b", &s.udp_rate, "-l", &len];
    if reverse {
        extra.push("-R");
    }
    if s.udp_buffer != "0" {
        extra.extend(["-w", &s.udp_buffer]);
    }
    let json = iperf(client, server_ns, addr, s.udp_seconds, &extra, dir)?;
    parse_udp(&json).ok_or_else(|| Error::new(format!("unexpected iperf3 UDP report: {json}")))
}

fn num(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

fn count(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

/// Receiver-side numbers of an iperf3 TCP report (`end.sum_received`, retransmits from
/// `end.sum_sent`).
pub fn parse_tcp(json: &Value) -> Option<TcpRun> {
    let end = json.get("end")?;
    let rx = end.get("sum_received")?;
    Some(TcpRun {
        bits_per_second: num(rx, "bits_per_second")?,
        bytes: count(rx, "bytes")?,
        retransmits: end.get("sum_sent").and_then(|s| count(s, "retransmits")),
    })
}

/// An iperf3 UDP report: `end.sum_sent` and `end.sum_received` (iperf3 >= 3.12); falls
/// back to `end.sum` (sender rate and the receiver's loss) for older versions.
pub fn parse_udp(json: &Value) -> Option<UdpRun> {
    let end = json.get("end")?;
    if let (Some(tx), Some(rx)) = (end.get("sum_sent"), end.get("sum_received")) {
        return Some(UdpRun {
            sent_bps: num(tx, "bits_per_second")?,
            received_bps: num(rx, "bits_per_second")?,
            packets: count(rx, "packets")?,
            lost_packets: count(rx, "lost_packets")?,
            lost_percent: num(rx, "lost_percent")?,
            jitter_ms: num(rx, "jitter_ms").unwrap_or(0.0),
        });
    }
    let sum = end.get("sum")?;
    let sent_bps = num(sum, "bits_per_second")?;
    let lost_percent = num(sum, "lost_percent")?;
    Some(UdpRun {
        sent_bps,
        received_bps: sent_bps * (1.0 - lost_percent / 100.0),
        packets: count(sum, "packets")?,
        lost_packets: count(sum, "lost_packets")?,
        lost_percent,
        jitter_ms: num(sum, "jitter_ms").unwrap_or(0.0),
    })
}

/// The median (mean of the middle two for an even count); `None` if empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => v.get(n / 2).copied(),
        _ => Some((v.get(n / 2 - 1)? + v.get(n / 2)?) / 2.0),
    }
}

pub use interop::procstat::{clock_ticks, process_ticks};

/// Whole-machine CPU ticks from `/proc/stat`: (busy, total). Busy = user + nice + system
/// + irq + softirq (guest time is already inside user); total adds idle, iowait, steal.
pub fn machine_ticks() -> Option<(u64, u64)> {
    parse_machine_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// See [`machine_ticks`].
pub fn parse_machine_stat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).take(8).filter_map(|x| x.parse().ok()).collect();
    let [user, nice, system, idle, iowait, irq, softirq, steal] = v[..] else { return None };
    let busy = user + nice + system + irq + softirq;
    Some((busy, busy + idle + iowait + steal))
}

/// CPU time of every thread of `pid` so far, ns (the scheduler's `/proc/PID/task/*/schedstat`,
/// precise where `/proc/PID/stat` counts 10 ms ticks). `None` if unreadable.
pub fn threads_cpu_ns(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let text = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// CPU time of every thread of all `pids` so far, ns; `None` if there are none or one is
/// unreadable.
pub fn gateways_cpu_ns(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|p| threads_cpu_ns(*p)).sum()
}

/// CPU counters at one instant: each gateway process's ticks (`None` if unreadable) and
/// the machine's (busy, total).
#[derive(Clone, Debug)]
pub struct CpuSnapshot {
    procs: Vec<Option<u64>>,
    machine: Option<(u64, u64)>,
}

impl CpuSnapshot {
    /// Reads the counters for `pids`.
    pub fn take(pids: &[u32]) -> Self {
        Self { procs: pids.iter().map(|p| process_ticks(*p)).collect(), machine: machine_ticks() }
    }
}

/// CPU spent between two snapshots, accumulated over several runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CpuUse {
    /// Gateway processes' CPU seconds (`None` = no gateway processes, or unreadable).
    pub gateway_seconds: Option<f64>,
    /// The same per gateway process, in the order of the PIDs given to [`CpuSnapshot::take`].
    pub per_process_seconds: Vec<Option<f64>>,
    /// The whole machine's busy CPU seconds (includes iperf3, forwarding, and anything
    /// else running on the machine).
    pub machine_busy_seconds: Option<f64>,
    /// The machine's elapsed CPU capacity (all cores) in seconds.
    pub machine_total_seconds: Option<f64>,
    /// Payload bytes carried while measuring.
    pub bytes: u64,
    /// Runs added.
    pub runs: u32,
}

impl CpuUse {
    /// Adds the difference `after - before` and `bytes` carried in between. A run whose
    /// counters could not be read makes that total unknown.
    pub fn add(&mut self, before: &CpuSnapshot, after: &CpuSnapshot, bytes: u64, ticks_per_s: f64) {
        let secs = |a: u64, b: u64| a.saturating_sub(b) as f64 / ticks_per_s;
        let first = self.runs == 0;
        let acc =
            |total: Option<f64>, more: Option<f64>| if first { more } else { total.zip(more).map(|(t, m)| t + m) };
        let per: Vec<Option<f64>> =
            before.procs.iter().zip(&after.procs).map(|(b, a)| b.zip(*a).map(|(b, a)| secs(a, b))).collect();
        let gw = if per.is_empty() { None } else { per.iter().copied().sum::<Option<f64>>() };
        let m = before.machine.zip(after.machine);
        self.gateway_seconds = acc(self.gateway_seconds, gw);
        self.per_process_seconds = if first {
            per
        } else {
            self.per_process_seconds.iter().zip(per).map(|(t, m)| t.zip(m).map(|(t, m)| t + m)).collect()
        };
        self.machine_busy_seconds = acc(self.machine_busy_seconds, m.map(|((b, _), (a, _))| secs(a, b)));
        self.machine_total_seconds = acc(self.machine_total_seconds, m.map(|((_, b), (_, a))| secs(a, b)));
        self.bytes += bytes;
        self.runs += 1;
    }

    /// Gateway CPU seconds per 10^9 payload bytes.
    pub fn gateway_s_per_gb(&self) -> Option<f64> {
        per_gb(self.gateway_seconds, self.bytes)
    }

    /// Machine busy CPU seconds per 10^9 payload bytes.
    pub fn machine_s_per_gb(&self) -> Option<f64> {
        per_gb(self.machine_busy_seconds, self.bytes)
    }
}

fn per_gb(seconds: Option<f64>, bytes: u64) -> Option<f64> {
    (bytes > 0).then_some(())?;
    seconds.map(|s| s / (bytes as f64 / 1e9))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ping_with_rtt() {
        let out = "PING 10.2.0.10 (10.2.0.10) 56(84) bytes of data.\n\
                   64 bytes from 10.2.0.10: icmp_seq=1 ttl=62 time=0.131 ms\n\
                   64 bytes from 10.2.0.10: icmp_seq=2 ttl=62 time=0.047 ms\n\
                   64 bytes from 10.2.0.10: icmp_seq=4 ttl=62 time=0.050 ms\n\n--- 10.2.0.10 ping statistics ---\n\
                   4 packets transmitted, 3 received, 25% packet loss, time 1003ms\n\
                   rtt min/avg/max/mdev = 0.047/0.076/0.131/0.018 ms\n";
        let r = parse_ping(out).unwrap();
        assert_eq!((r.transmitted, r.received), (4, 3));
        assert_eq!((r.min_ms, r.avg_ms, r.max_ms, r.mdev_ms), (0.047, 0.076, 0.131, 0.018));
        assert_eq!(r.median_ms, Some(0.050));
        // -q output: no per-reply lines, no median.
        let quiet = "1 packets transmitted, 1 received, 0% packet loss\nrtt min/avg/max/mdev = 1/2/3/4 ms\n";
        assert_eq!(parse_ping(quiet).map(|r| (r.avg_ms, r.median_ms)), Some((2.0, None)));
        // No replies: no rtt line, so no result.
        assert_eq!(parse_ping("3 packets transmitted, 0 received, 100% packet loss, time 2041ms\n"), None);
        assert_eq!(parse_ping("garbage"), None);
    }

    #[test]
    fn parses_iperf_tcp_receiver_side() {
        let json = serde_json::json!({"end": {
            "sum_sent": {"bytes": 1000, "bits_per_second": 800.0, "retransmits": 7},
            "sum_received": {"bytes": 990, "bits_per_second": 792.0}
        }});
        assert_eq!(parse_tcp(&json), Some(TcpRun { bits_per_second: 792.0, bytes: 990, retransmits: Some(7) }));
        assert_eq!(parse_tcp(&serde_json::json!({"error": "x"})), None);
    }

    #[test]
    fn parses_iperf_udp_both_layouts() {
        let json = serde_json::json!({"end": {
            "sum": {"bits_per_second": 1e9, "lost_percent": 40.0, "packets": 100, "lost_packets": 40, "jitter_ms": 0.1},
            "sum_sent": {"bits_per_second": 1e9, "packets": 100, "lost_packets": 0, "lost_percent": 0.0},
            "sum_received": {"bits_per_second": 6e8, "packets": 100, "lost_packets": 40, "lost_percent": 40.0, "jitter_ms": 0.1}
        }});
        let u = parse_udp(&json).unwrap();
        assert_eq!((u.sent_bps, u.received_bps, u.lost_packets, u.lost_percent), (1e9, 6e8, 40, 40.0));
        let old = serde_json::json!({"end": {"sum":
            {"bits_per_second": 1e9, "lost_percent": 25.0, "packets": 100, "lost_packets": 25, "jitter_ms": 0.1}}});
        let u = parse_udp(&old).unwrap();
        assert_eq!((u.sent_bps, u.received_bps, u.packets), (1e9, 7.5e8, 100));
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[5.0]), Some(5.0));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 1.0]), Some(1.0));
    }

    #[test]
    fn parses_machine_stat_busy_and_total() {
        let text = "cpu  100 5 50 1000 20 3 7 2 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(parse_machine_stat(text), Some((165, 1187)));
        assert_eq!(parse_machine_stat("intr 1 2 3\n"), None);
    }

    #[test]
    fn cpu_use_accumulates_and_normalises_per_gb() {
        let snap = |g: &[u64], b: u64, t: u64| CpuSnapshot {
            procs: g.iter().map(|x| Some(*x)).collect(),
            machine: Some((b, t)),
        };
        let mut u = CpuUse::default();
        u.add(&snap(&[100, 10], 1000, 5000), &snap(&[250, 60], 1400, 5400), 1_000_000_000, 100.0);
        u.add(&snap(&[250, 60], 1400, 5400), &snap(&[300, 110], 1600, 5600), 1_000_000_000, 100.0);
        assert_eq!(u.gateway_seconds, Some(3.0));
        assert_eq!(u.per_process_seconds, vec![Some(2.0), Some(1.0)]);
        assert_eq!(u.machine_busy_seconds, Some(6.0));
        assert_eq!(u.machine_total_seconds, Some(6.0));
        assert_eq!(u.gateway_s_per_gb(), Some(1.5));
        assert_eq!(u.machine_s_per_gb(), Some(3.0));
        // No gateway processes (plain routing): gateway CPU stays unknown.
        let mut plain = CpuUse::default();
        plain.add(&snap(&[], 0, 0), &snap(&[], 100, 200), 2_000_000_000, 100.0);
        assert_eq!(plain.gateway_s_per_gb(), None);
        assert_eq!(plain.machine_s_per_gb(), Some(0.5));
        assert_eq!(CpuUse::default().machine_s_per_gb(), None);
        // An unreadable process makes the gateway total unknown.
        let mut gone = CpuUse::default();
        let lost = CpuSnapshot { procs: vec![None], machine: None };
        gone.add(&snap(&[5], 0, 0), &lost, 1, 100.0);
        assert_eq!((gone.gateway_seconds, gone.machine_busy_seconds), (None, None));
    }
}
