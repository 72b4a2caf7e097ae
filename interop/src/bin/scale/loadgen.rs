//! The load generator (`scale loadgen ...`, run by the bench inside the peers namespace):
//! ONE process playing all N peers with the `ike` crate as a sans-I/O library, one
//! `ike::Endpoint` holding N `PeerConfig`s, each with its own `local_addr`.
//!
//! It brings the tunnels up with at most `--concurrency` negotiations in flight (a new
//! one starts whenever one finishes), then prints one JSON line `{"established": {...}}`
//! (first IKE_SA_INIT to last CHILD SA, per-tunnel setup latencies, its own CPU time),
//! and keeps the tunnels (answers whatever the gateway sends) while it reads commands on
//! stdin: `again` deletes every tunnel (DELETE exchanges) and, once all are gone, brings
//! them up again as a new round, with a new `established` line; `flood SOURCES COUNT
//! RATE` runs [`flood::run`] in a thread and prints `{"flood": {...}}`; `quit` or the end
//! of stdin ends it.
//!
//! I/O: two UDP sockets, `[::]:500` and `[::]:4500` (IKE after NAT detection, behind the
//! non-ESP marker), each with a reader thread feeding the one thread that owns the
//! endpoint. Datagrams leave from the address the endpoint names (`IPV6_PKTINFO`); an
//! answer is handed back with the local address of the IKE SA it belongs to, found by
//! its initiator SPI (every IKE SA here was initiated by us).

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ike::{Command, Endpoint, EndpointConfig, Event, Output};
use ipsec_types::Timestamp;
use serde_json::{json, Value};

use super::flood::{self, Sources};
use super::procstat;
use super::topo;
use super::tunnels;
use super::wire::Wan;

/// The environment variable carrying the PSK seed (kept off the command line).
pub const SEED_ENV: &str = "VG_SCALE_PSK_SEED";
/// The 4-byte non-ESP marker before IKE on port 4500 (RFC 3948 2.2).
const NON_ESP_MARKER: [u8; 4] = [0; 4];

/// Options of `scale loadgen`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Tunnels (peers) to bring up.
    pub tunnels: usize,
    /// Negotiations in flight at most.
    pub concurrency: usize,
    /// Give up establishing after this long.
    pub timeout: Duration,
}

impl Options {
    /// The arguments that [`Options::parse`] reads back.
    pub fn to_args(&self) -> Vec<String> {
        vec![
            "--tunnels".into(),
            self.tunnels.to_string(),
            "--concurrency".into(),
            self.concurrency.to_string(),
            "--timeout".into(),
            self.timeout.as_secs().to_string(),
        ]
    }

    /// Parses `--tunnels N --concurrency C --timeout S`.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut o = Self { tunnels: 0, concurrency: 1, timeout: Duration::from_secs(60) };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let v: u64 = it.next().and_then(|v| v.parse().ok()).ok_or(format!("{a} needs a number"))?;
            match a.as_str() {
                "--tunnels" => o.tunnels = v as usize,
                "--concurrency" => o.concurrency = (v as usize).max(1),
                "--timeout" => o.timeout = Duration::from_secs(v),
                other => return Err(format!("unknown loadgen argument {other:?}")),
            }
        }
        Ok(o)
    }
}

enum Msg {
    Datagram { port: u16, remote: SocketAddr, data: Vec<u8> },
    Line(String),
    FloodDone(Value),
    Eof,
}

/// `ike::Rng` over the OS generator.
struct OsRng(ring::rand::SystemRandom);

impl ike::Rng for OsRng {
    fn fill(&mut self, buf: &mut [u8]) {
        if ring::rand::SecureRandom::fill(&self.0, buf).is_err() {
            eprintln!("loadgen: the OS random generator failed");
            std::process::exit(1);
        }
    }
}

fn reader(port: u16, wan: &Wan, tx: Sender<Msg>) -> std::io::Result<()> {
    let sock = wan.reader(Duration::from_secs(3600))?;
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        loop {
            let (n, remote) = match sock.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
            };
            let data = buf.get(..n).unwrap_or_default();
            let ike = if port == 4500 {
                // IKE only behind the marker; ESP and NAT keepalives are not ours to read.
                match data.strip_prefix(&NON_ESP_MARKER[..]) {
                    Some(ike) => ike,
                    None => continue,
                }
            } else {
                data
            };
            if tx.send(Msg::Datagram { port, remote, data: ike.to_vec() }).is_err() {
                return;
            }
        }
    });
    Ok(())
}

fn say(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// Percentile of sorted values (nearest rank).
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Runs the load generator; the process exit code.
pub fn main(args: &[String]) -> u8 {
    let opts = match Options::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return 2;
        }
    };
    match run(&opts) {
        Ok(()) => 0,
        Err(e) => {
            say(&json!({ "error": e }));
            1
        }
    }
}

fn run(opts: &Options) -> Result<(), String> {
    let seed = std::env::var(SEED_ENV).map_err(|_| format!("{SEED_ENV} not set"))?;
    let peers: Vec<ike::PeerConfig> =
        (0..opts.tunnels).map(|i| tunnels::peer_config(&seed, i)).collect::<Option<_>>().ok_or("bad peer config")?;
    let cfg = EndpointConfig { ike_port: 500, natt_port: 4500, peers, limits: Default::default() };
    let mut ep = Endpoint::new(cfg, Box::new(OsRng(ring::rand::SystemRandom::new())));
    let io_err = |e: std::io::Error| e.to_string();
    let ike = Wan::bind(500, 8 << 20).map_err(io_err)?;
    let natt = Wan::bind(4500, 8 << 20).map_err(io_err)?;
    let (tx, rx) = mpsc::channel();
    reader(500, &ike, tx.clone()).map_err(io_err)?;
    reader(4500, &natt, tx.clone()).map_err(io_err)?;
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(Msg::Line(line)).is_err() {
                    return;
                }
            }
            let _ = tx.send(Msg::Eof);
        });
    }
    let stop_flood = Arc::new(AtomicBool::new(false));
    let epoch = Instant::now();
    let stamp =
        |at: Instant| Timestamp::from_nanos(u64::try_from(at.duration_since(epoch).as_nanos()).unwrap_or(u64::MAX));
    // The local address of each IKE SA, by initiator SPI.
    let mut local_of: HashMap<u64, Ipv6Addr> = HashMap::new();
    let n = opts.tunnels;
    let mut round = Round::new(n, Instant::now() + opts.timeout);
    // `again`: every tunnel is being deleted before the next round starts (until then).
    let mut draining: Option<Instant> = None;
    let (mut send_errors, mut unknown) = (0u64, 0u64);
    loop {
        let now = Instant::now();
        if draining.is_some_and(|until| ep.is_idle() || now >= until) {
            if !ep.is_idle() {
                say(
                    &json!({ "error": format!("{} IKE SAs still open 30 s after deleting them all", ep.ike_sa_count()) }),
                );
            }
            draining = None;
            local_of.clear();
            round = Round::new(n, now + opts.timeout);
        }
        while draining.is_none() && !round.reported && round.next < n && round.in_flight < opts.concurrency {
            round.started_at[round.next] = Some(now);
            round.first_init.get_or_insert(now);
            ep.handle_command(stamp(now), Command::Initiate { peer: tunnels::name(round.next) });
            round.next += 1;
            round.in_flight += 1;
        }
        while let Some(out) = ep.poll_output() {
            match out {
                Output::Transmit(t) => {
                    let (IpAddr::V6(src), Some(spi)) = (t.local.ip(), t.data.get(..8)) else { continue };
                    local_of.insert(u64::from_be_bytes(spi.try_into().unwrap_or_default()), src);
                    let sent = if t.local.port() == 4500 {
                        natt.send_from(src, t.remote, &[&NON_ESP_MARKER, &t.data])
                    } else {
                        ike.send_from(src, t.remote, &[&t.data])
                    };
                    if sent.is_err() {
                        send_errors += 1;
                    }
                }
                Output::Datapath(_) => {}
                Output::Event(ev) => round.event(&ev),
            }
        }
        if draining.is_none() && !round.reported && (round.up == n || Instant::now() >= round.deadline) {
            round.reported = true;
            let mut v = round.report(opts.concurrency);
            let me = procstat::sample(std::process::id(), procstat::clock_ticks());
            v["send_errors"] = send_errors.into();
            v["unmatched_datagrams"] = unknown.into();
            v["loadgen_cpu_seconds_total"] = me.map(|s| s.cpu_s).into();
            v["loadgen_rss_mib"] = me.map(|s| procstat::mib(s.rss_kib)).into();
            say(&json!({ "established": v }));
        }
        let wake = ep
            .poll_timeout()
            .map_or(Duration::from_millis(200), |t| {
                Duration::from_nanos(t.as_nanos().saturating_sub(stamp(Instant::now()).as_nanos()))
            })
            .min(Duration::from_millis(if draining.is_some() { 20 } else { 200 }));
        let msg = rx.recv_timeout(wake);
        let now = stamp(Instant::now());
        match msg {
            Ok(Msg::Datagram { port, remote, data }) => {
                let spi = data.get(..8).map(|s| u64::from_be_bytes(s.try_into().unwrap_or_default()));
                match spi.and_then(|s| local_of.get(&s)) {
                    Some(&ip) => ep.handle_datagram(now, SocketAddr::new(ip.into(), port), remote, &data),
                    None => unknown += 1,
                }
            }
            Ok(Msg::Line(line)) => {
                let words: Vec<&str> = line.split_whitespace().collect();
                match words.as_slice() {
                    ["quit"] => break,
                    ["again"] if round.reported && draining.is_none() => {
                        for i in 0..n {
                            ep.handle_command(now, Command::Terminate { peer: tunnels::name(i) });
                        }
                        draining = Some(Instant::now() + Duration::from_secs(30));
                    }
                    ["flood", sources, count, rate] => {
                        let sources = match *sources {
                            "peers" => Sources::Peers(n),
                            "strangers" => Sources::Strangers,
                            other => {
                                say(&json!({ "error": format!("unknown flood sources {other:?}") }));
                                continue;
                            }
                        };
                        let (Ok(count), Ok(rate)) = (count.parse(), rate.parse()) else {
                            say(&json!({ "error": format!("bad flood command {line:?}") }));
                            continue;
                        };
                        let spec = flood::Spec { count, rate, sources, target: topo::gw_ike() };
                        let (tx, stop) = (tx.clone(), Arc::clone(&stop_flood));
                        std::thread::spawn(move || {
                            let v = flood::run(&spec, &stop).unwrap_or_else(|e| json!({ "error": e.to_string() }));
                            let _ = tx.send(Msg::FloodDone(v));
                        });
                    }
                    _ => say(&json!({ "error": format!("unknown or untimely command {line:?}") })),
                }
            }
            Ok(Msg::FloodDone(v)) => say(&json!({ "flood": v })),
            Ok(Msg::Eof) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
        if ep.poll_timeout().is_some_and(|t| t <= now) {
            ep.handle_timeout(now);
        }
    }
    stop_flood.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// One round of bringing every tunnel up.
struct Round {
    /// When each tunnel's initiation started.
    started_at: Vec<Option<Instant>>,
    /// When each tunnel's CHILD SA came up.
    up_at: Vec<Option<Instant>>,
    /// The next tunnel to start.
    next: usize,
    /// Started and not up yet.
    in_flight: usize,
    /// Up.
    up: usize,
    /// IKE SAs that failed before their tunnel was up (the endpoint retries them).
    failures: usize,
    /// The first IKE_SA_INIT.
    first_init: Option<Instant>,
    /// The round's report was printed.
    reported: bool,
    /// Report even if not every tunnel is up by then.
    deadline: Instant,
    /// This process's CPU seconds when the round started.
    cpu_at_start: Option<f64>,
}

impl Round {
    fn new(n: usize, deadline: Instant) -> Self {
        Self {
            started_at: vec![None; n],
            up_at: vec![None; n],
            next: 0,
            in_flight: 0,
            up: 0,
            failures: 0,
            first_init: None,
            reported: false,
            deadline,
            cpu_at_start: procstat::sample(std::process::id(), procstat::clock_ticks()).map(|s| s.cpu_s),
        }
    }

    fn event(&mut self, ev: &Event) {
        match ev {
            Event::ChildUp { peer, .. } => {
                if let Some(slot) = tunnels::index(peer).and_then(|i| self.up_at.get_mut(i)) {
                    if slot.is_none() {
                        *slot = Some(Instant::now());
                        self.up += 1;
                        self.in_flight = self.in_flight.saturating_sub(1);
                    }
                }
            }
            Event::IkeDown { peer, .. }
                if !self.reported
                    && tunnels::index(peer).and_then(|i| self.up_at.get(i)).is_some_and(Option::is_none) =>
            {
                // The endpoint retries it (10 s later); it stays in flight.
                self.failures += 1;
            }
            _ => {}
        }
    }

    fn report(&self, concurrency: usize) -> Value {
        let last_up = self.up_at.iter().flatten().max().copied();
        let mut latencies: Vec<f64> = self
            .started_at
            .iter()
            .zip(&self.up_at)
            .filter_map(|(s, u)| Some(u.as_ref()?.duration_since(*s.as_ref()?).as_secs_f64() * 1000.0))
            .collect();
        latencies.sort_by(f64::total_cmp);
        let seconds = match (self.first_init, last_up) {
            (Some(a), Some(b)) => Some(b.duration_since(a).as_secs_f64()),
            _ => None,
        };
        let cpu_now = procstat::sample(std::process::id(), procstat::clock_ticks()).map(|s| s.cpu_s);
        json!({
            "tunnels": self.up_at.len(),
            "up": self.up,
            "seconds": seconds,
            "tunnels_per_second": seconds.filter(|s| *s > 0.0).map(|s| self.up as f64 / s),
            "concurrency": concurrency,
            "failed_attempts": self.failures,
            "setup_ms": {
                "p50": percentile(&latencies, 50.0),
                "p90": percentile(&latencies, 90.0),
                "p99": percentile(&latencies, 99.0),
                "max": latencies.last(),
            },
            "loadgen_cpu_seconds": cpu_now.zip(self.cpu_at_start).map(|(a, b)| a - b),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_round_trip() {
        let o = Options { tunnels: 1000, concurrency: 32, timeout: Duration::from_secs(120) };
        assert_eq!(Options::parse(&o.to_args()).unwrap(), o);
        assert!(Options::parse(&["--tunnels".into()]).is_err());
        assert!(Options::parse(&["--frob".into(), "1".into()]).is_err());
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[3.0], 90.0), Some(3.0));
    }
}
