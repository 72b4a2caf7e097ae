//! One daemon's run: fresh namespaces, the gateway with N tunnels, the load generator
//! bringing them all up (timed, with the gateway's CPU and memory before and after),
//! then each flood with the tunnels up: the gateway's CPU seconds and peak RSS over the
//! flood and its aftermath (sampled every 250 ms), what it answered, what the kernel
//! dropped, and whether the tunnels survived.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use interop::{Binaries, Error, Result};
use serde_json::{json, Value};

use super::gateway::{Counts, Gateway, Kind};
use super::interrupt;
use super::loadgen::{self, Options};
use super::procstat::{self, Sample};
use super::topo::ScaleTopo;

/// What the bench was asked to do.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Daemons to measure, in order.
    pub daemons: Vec<Kind>,
    /// Tunnels (peers).
    pub tunnels: usize,
    /// Negotiations the load generator keeps in flight.
    pub concurrency: usize,
    /// Times every tunnel is brought up (deleted in between); memory is measured after the first.
    pub rounds: usize,
    /// Give up establishing after this long.
    pub establish_timeout: Duration,
    /// Floods to send, in order (`peers`, `strangers`).
    pub floods: Vec<&'static str>,
    /// IKE_SA_INIT requests per flood.
    pub flood_count: u64,
    /// Requests per second.
    pub flood_rate: u64,
    /// How long the window goes on after the last request (half-open SAs expire after 30 s).
    pub tail: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            daemons: Kind::ALL.to_vec(),
            tunnels: 1000,
            concurrency: 64,
            rounds: 3,
            establish_timeout: Duration::from_secs(180),
            floods: vec!["peers", "strangers"],
            flood_count: 100_000,
            flood_rate: 10_000,
            tail: Duration::from_secs(35),
        }
    }
}

/// Bringing the tunnels up.
#[derive(Clone, Debug, Default)]
pub struct Establish {
    /// The load generator's report (`seconds`, `tunnels_per_second`, `setup_ms`, ...).
    pub loadgen: Value,
    /// Tunnels up as the load generator saw them (CHILD SA established).
    pub up: usize,
    /// First IKE_SA_INIT to last CHILD SA, seconds.
    pub seconds: Option<f64>,
    /// What the daemon reports afterwards.
    pub counts: Counts,
    /// Size of vpngw's status reply with every tunnel up.
    pub status_bytes: Option<usize>,
    /// The daemon's CPU seconds from before the load generator started to after the last tunnel.
    pub gw_cpu_s: f64,
    /// Its resident set before (all tunnels configured, none up) and after, KiB.
    pub rss_before_kib: u64,
    /// After all are up.
    pub rss_after_kib: u64,
    /// Seconds the daemon took to start with the configuration loaded.
    pub config_load_s: f64,
    /// Every round (the first and the `again`s): the load generator's report with the
    /// daemon's CPU seconds of the round added (`daemon_cpu_seconds`; from round 2 on it
    /// includes deleting the previous round's tunnels).
    pub rounds: Vec<Value>,
}

impl Establish {
    /// Tunnels per second of the first round.
    pub fn per_second(&self) -> Option<f64> {
        self.seconds.filter(|s| *s > 0.0).map(|s| self.up as f64 / s)
    }

    /// Tunnels per second of each round.
    pub fn rounds_per_second(&self) -> Vec<f64> {
        self.rounds.iter().filter_map(|r| r.get("tunnels_per_second")?.as_f64()).collect()
    }

    /// The median of [`Establish::rounds_per_second`] (the lower middle one of an even count).
    pub fn median_per_second(&self) -> Option<f64> {
        let mut v = self.rounds_per_second();
        v.sort_by(f64::total_cmp);
        v.get(v.len().checked_sub(1)? / 2).copied()
    }

    /// Resident KiB per established tunnel.
    pub fn kib_per_tunnel(&self) -> Option<f64> {
        (self.up > 0).then(|| (self.rss_after_kib as f64 - self.rss_before_kib as f64) / self.up as f64)
    }

    /// Gateway CPU milliseconds per tunnel.
    pub fn cpu_ms_per_tunnel(&self) -> Option<f64> {
        (self.up > 0).then(|| self.gw_cpu_s * 1000.0 / self.up as f64)
    }
}

/// One flood.
#[derive(Clone, Debug)]
pub struct Flood {
    /// `peers` or `strangers`.
    pub sources: String,
    /// The load generator's report (`sent`, `seconds`, `replies`).
    pub loadgen: Value,
    /// Seconds from the first request to the end of the window.
    pub window_s: f64,
    /// Gateway CPU seconds over the window.
    pub cpu_s: f64,
    /// Gateway CPU seconds while the requests were being sent.
    pub cpu_send_s: f64,
    /// Last moment (seconds after the first request) the gateway used more than 5 % of a core.
    pub busy_until_s: Option<f64>,
    /// Resident set when the flood started, KiB.
    pub rss_before_kib: u64,
    /// Peak resident set during the window (VmHWM, reset at the start), KiB.
    pub peak_kib: u64,
    /// Resident set at the end of the window, KiB.
    pub rss_after_kib: u64,
    /// The kernel's UDP drops in the gateway namespace during the window (receive buffer full).
    pub udp_rcvbuf_errors: u64,
    /// The daemon's counters before and after.
    pub counters: (Value, Value),
    /// SA counts after the window, or why the daemon's status query failed.
    pub counts_after: std::result::Result<Counts, String>,
    /// The daemon still ran at the end.
    pub alive: bool,
    /// (seconds since the flood started, CPU cores used in the last interval, RSS MiB).
    pub timeline: Vec<(f64, f64, f64)>,
}

/// Everything measured for one daemon.
#[derive(Debug)]
pub struct DaemonResult {
    /// Which daemon.
    pub kind: Kind,
    /// Bringing the tunnels up (`None` if that failed before).
    pub establish: Option<Establish>,
    /// The floods.
    pub floods: Vec<Flood>,
    /// Why the run stopped early.
    pub error: Option<String>,
    /// Where its logs were kept.
    pub logs: Option<String>,
    /// The machine's 1-minute load average before and after (other work on the machine
    /// shows here: the numbers of a run with a load far above the core count are noisy).
    pub load: (Option<f64>, Option<f64>),
}

/// The 1-minute load average.
pub fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// The load generator child process: commands on stdin, JSON lines on stdout. Dropping
/// it says `quit`, then kills it by PID if it has not exited within 2 s.
struct Loadgen {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Loadgen {
    fn spawn(topo: &ScaleTopo, opts: &Options, seed: &str, dir: &Path) -> Result<Self> {
        let exe = std::env::current_exe()?;
        let mut cmd: Command = topo.peers.exec(&[&exe.to_string_lossy(), "loadgen"]);
        cmd.args(opts.to_args())
            .env(loadgen::SEED_ENV, seed)
            .env_remove("VG_BENCH_WORKER")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("loadgen.log"))?);
        let mut child = cmd.spawn().map_err(|e| Error::new(format!("cannot start the load generator: {e}")))?;
        let stdout = child.stdout.take().ok_or_else(|| Error::new("load generator without stdout"))?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(std::result::Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(Self { stdin: child.stdin.take(), child, lines })
    }

    fn send(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().ok_or_else(|| Error::new("load generator stdin closed"))?;
        writeln!(stdin, "{line}").and_then(|()| stdin.flush()).map_err(|e| Error::new(format!("load generator: {e}")))
    }

    /// The next `{key: ...}` line's value, if one arrived; `Err` on `{"error": ...}` or exit.
    fn poll(&mut self, key: &str, wait: Duration) -> Result<Option<Value>> {
        match self.lines.recv_timeout(wait) {
            Ok(line) => {
                let v: Value = serde_json::from_str(&line)
                    .map_err(|e| Error::new(format!("load generator said {line:?} ({e})")))?;
                if let Some(e) = v.get("error") {
                    return Err(Error::new(format!("load generator: {e}")));
                }
                Ok(v.get(key).cloned())
            }
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => {
                Err(Error::new(format!("the load generator exited ({:?})", self.child.try_wait().ok().flatten())))
            }
        }
    }

    /// Waits for `{key: ...}` (interruptibly).
    fn expect(&mut self, key: &str, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            interrupt::check()?;
            if let Some(v) = self.poll(key, Duration::from_millis(100))? {
                return Ok(v);
            }
        }
        Err(Error::new(format!("no {key:?} from the load generator within {timeout:?}")))
    }
}

impl Drop for Loadgen {
    fn drop(&mut self) {
        let _ = self.send("quit");
        self.stdin = None;
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sample(gw: &Gateway, ticks: f64) -> Result<Sample> {
    procstat::sample(gw.pid(), ticks).ok_or_else(|| Error::new(format!("the gateway (PID {}) is gone", gw.pid())))
}

/// `Udp6RcvbufErrors` of the namespace.
fn udp6_rcvbuf_errors(topo: &ScaleTopo) -> u64 {
    let text = topo.gw.run(&["cat", "/proc/net/snmp6"]).unwrap_or_default();
    text.lines().find_map(|l| l.strip_prefix("Udp6RcvbufErrors")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// Sleeps, unless interrupted.
fn pause(d: Duration) -> Result<()> {
    let deadline = Instant::now() + d;
    while Instant::now() < deadline {
        interrupt::check()?;
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Measures `kind`; fills `res` as it goes, so a failure keeps what was measured.
pub fn measure(kind: Kind, s: &Settings, bins: Option<&Binaries>, dir: &Path, res: &mut DaemonResult) -> Result<()> {
    let ticks = procstat::clock_ticks();
    let seed = format!("{}-{}", interop::unique_id(), interop::unique_id());
    std::fs::create_dir_all(dir)?;
    let topo = ScaleTopo::create()?;
    let (mut gw, config_load_s) = Gateway::start(kind, &topo, &dir.join(kind.key()), &seed, s.tunnels, bins)?;
    let tag = kind.key();
    println!("[{tag}] started with {} tunnels configured in {config_load_s:.1} s (PID {})", s.tunnels, gw.pid());
    pause(Duration::from_secs(1))?;

    // Bring every tunnel up.
    let s0 = sample(&gw, ticks)?;
    let opts = Options { tunnels: s.tunnels, concurrency: s.concurrency, timeout: s.establish_timeout };
    let mut lg = Loadgen::spawn(&topo, &opts, &seed, dir)?;
    let est_timeout = s.establish_timeout + Duration::from_secs(30);
    let mut est = lg.expect("established", est_timeout)?;
    let s1 = sample(&gw, ticks)?;
    est["daemon_cpu_seconds"] = (s1.cpu_s - s0.cpu_s).into();
    pause(Duration::from_secs(1))?;
    let s1b = sample(&gw, ticks)?;
    let mut e = Establish {
        up: est.get("up").and_then(Value::as_u64).unwrap_or(0) as usize,
        seconds: est.get("seconds").and_then(Value::as_f64),
        loadgen: est.clone(),
        counts: Counts::default(),
        status_bytes: None,
        gw_cpu_s: s1.cpu_s - s0.cpu_s,
        rss_before_kib: s0.rss_kib,
        rss_after_kib: s1b.rss_kib,
        config_load_s,
        rounds: vec![est],
    };
    // More rounds: delete every tunnel, bring them all up again.
    for _ in 1..s.rounds {
        let r0 = sample(&gw, ticks)?;
        lg.send("again")?;
        let mut r = lg.expect("established", est_timeout + Duration::from_secs(30))?;
        let r1 = sample(&gw, ticks)?;
        r["daemon_cpu_seconds"] = (r1.cpu_s - r0.cpu_s).into();
        println!(
            "[{tag}] round {}: {} tunnels up in {} s",
            e.rounds.len() + 1,
            r.get("up").and_then(Value::as_u64).unwrap_or(0),
            r.get("seconds").and_then(Value::as_f64).map_or("?".into(), |v| format!("{v:.2}"))
        );
        e.rounds.push(r);
    }
    let counts = gw.counts()?;
    e.counts = counts;
    e.status_bytes = gw.status_bytes();
    println!(
        "[{tag}] {}/{} tunnels up in {} s ({} /s; median of {} rounds {} /s); daemon reports {} IKE SAs established, {} CHILD SAs installed; \
         daemon CPU {:.2} s ({} ms/tunnel), RSS {:.1} -> {:.1} MiB ({} KiB/tunnel)",
        e.up,
        s.tunnels,
        e.seconds.map_or("?".into(), |v| format!("{v:.2}")),
        e.per_second().map_or("?".into(), |v| format!("{v:.0}")),
        e.rounds.len(),
        e.median_per_second().map_or("?".into(), |v| format!("{v:.0}")),
        counts.ike_established,
        counts.children_installed,
        e.gw_cpu_s,
        e.cpu_ms_per_tunnel().map_or("?".into(), |v| format!("{v:.2}")),
        procstat::mib(e.rss_before_kib),
        procstat::mib(e.rss_after_kib),
        e.kib_per_tunnel().map_or("?".into(), |v| format!("{v:.1}")),
    );
    res.establish = Some(e);

    for &sources in &s.floods {
        interrupt::check()?;
        let f = flood(&mut gw, &topo, &mut lg, sources, s, ticks)?;
        let replies = f.loadgen.get("replies").cloned().unwrap_or(Value::Null);
        println!(
            "[{tag}] flood from {sources}: {} requests in {:.1} s; daemon CPU {:.2} s ({:.2} s while sending), busy until \
             {} s; RSS {:.1} MiB, peak {:.1} MiB, after {:.1} MiB; replies {replies}; kernel UDP drops {}; {}",
            f.loadgen.get("sent").and_then(Value::as_u64).unwrap_or(0),
            f.loadgen.get("seconds").and_then(Value::as_f64).unwrap_or(0.0),
            f.cpu_s,
            f.cpu_send_s,
            f.busy_until_s.map_or("?".into(), |v| format!("{v:.1}")),
            procstat::mib(f.rss_before_kib),
            procstat::mib(f.peak_kib),
            procstat::mib(f.rss_after_kib),
            f.udp_rcvbuf_errors,
            match (f.alive, &f.counts_after) {
                (false, _) => "THE DAEMON DIED".to_owned(),
                (true, Ok(c)) => format!("after: {} IKE SAs ({} established), {} CHILD SAs", c.ike_total, c.ike_established, c.children_installed),
                (true, Err(e)) => format!("after: status query failed: {e}"),
            }
        );
        let dead = !f.alive;
        res.floods.push(f);
        if dead {
            return Err(Error::new(format!("{tag} died during the flood:\n{}", gw.diagnostics())));
        }
    }
    drop(lg);
    gw.stop();
    Ok(())
}

/// One flood against the running gateway; the window runs until `tail` after the last
/// request, longer (up to 60 s more) while the daemon is still busy.
fn flood(
    gw: &mut Gateway,
    topo: &ScaleTopo,
    lg: &mut Loadgen,
    sources: &str,
    s: &Settings,
    ticks: f64,
) -> Result<Flood> {
    let counters_before = gw.counters();
    let drops_before = udp6_rcvbuf_errors(topo);
    procstat::reset_peak(gw.pid())?;
    let f0 = sample(gw, ticks)?;
    lg.send(&format!("flood {sources} {} {}", s.flood_count, s.flood_rate))?;
    let mut timeline = Vec::new();
    let mut report: Option<Value> = None;
    let mut prev = f0;
    let mut last = f0;
    // (seconds since the start, CPU seconds used since the start) per sample.
    let mut cumulative: Vec<(f64, f64)> = Vec::new();
    let mut busy_until = None;
    let send_limit =
        Duration::from_secs_f64(s.flood_count as f64 / s.flood_rate.max(1) as f64) * 3 + Duration::from_secs(30);
    loop {
        interrupt::check()?;
        if report.is_none() {
            report = lg.poll("flood", Duration::from_millis(250))?;
        } else {
            std::thread::sleep(Duration::from_millis(250));
        }
        let Some(now) = procstat::sample(gw.pid(), ticks) else { break };
        let dt = now.at.duration_since(prev.at).as_secs_f64().max(1e-3);
        let cores = (now.cpu_s - prev.cpu_s) / dt;
        let t = now.at.duration_since(f0.at).as_secs_f64();
        timeline.push((t, cores, procstat::mib(now.rss_kib)));
        if cores > 0.05 {
            busy_until = Some(t);
        }
        cumulative.push((t, now.cpu_s - f0.cpu_s));
        prev = now;
        last = now;
        let sent_s = report.as_ref().and_then(|r| r.get("seconds")).and_then(Value::as_f64);
        match sent_s {
            None if now.at.duration_since(f0.at) > send_limit => {
                return Err(Error::new("the flood did not finish sending"));
            }
            None => {}
            Some(sent_s) => {
                let end = Duration::from_secs_f64(sent_s) + s.tail;
                let idle = busy_until.is_none_or(|b| t - b > 1.0);
                let elapsed = now.at.duration_since(f0.at);
                if (elapsed >= end && idle) || elapsed >= end + Duration::from_secs(60) {
                    break;
                }
            }
        }
    }
    // CPU used up to the first sample after the last request.
    let sent_s = report.as_ref().and_then(|r| r.get("seconds")).and_then(Value::as_f64).unwrap_or(f64::INFINITY);
    let cpu_send = cumulative.iter().find(|(t, _)| *t >= sent_s).map(|(_, c)| *c);
    let alive = gw.is_running();
    let counts_after = if alive { gw.counts().map_err(|e| e.to_string()) } else { Err("the daemon died".into()) };
    let counters_after = if alive { gw.counters() } else { Value::Null };
    Ok(Flood {
        sources: sources.to_owned(),
        loadgen: report.unwrap_or(Value::Null),
        window_s: last.at.duration_since(f0.at).as_secs_f64(),
        cpu_s: last.cpu_s - f0.cpu_s,
        cpu_send_s: cpu_send.unwrap_or(last.cpu_s - f0.cpu_s),
        busy_until_s: busy_until,
        rss_before_kib: f0.rss_kib,
        peak_kib: last.hwm_kib,
        rss_after_kib: last.rss_kib,
        udp_rcvbuf_errors: udp6_rcvbuf_errors(topo).saturating_sub(drops_before),
        counters: (counters_before, counters_after),
        counts_after,
        alive,
        timeline,
    })
}

/// The numeric leaves of `after` that grew since `before`, named by their path
/// (`io_errors.ike_queue_full`), with the growth.
pub fn counter_growth(before: &Value, after: &Value) -> Vec<(String, u64)> {
    fn walk(path: &str, b: Option<&Value>, a: &Value, out: &mut Vec<(String, u64)>) {
        match a {
            Value::Object(map) => {
                for (k, v) in map {
                    let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                    walk(&p, b.and_then(|b| b.get(k)), v, out);
                }
            }
            Value::Number(n) => {
                let grew = n.as_u64().unwrap_or(0).saturating_sub(b.and_then(Value::as_u64).unwrap_or(0));
                if grew > 0 {
                    out.push((path.to_owned(), grew));
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", Some(before), after, &mut out);
    out
}

/// The JSON of one daemon's results.
pub fn to_json(r: &DaemonResult) -> Value {
    let counts = |c: &Counts| json!({"ike_established": c.ike_established, "children_installed": c.children_installed, "ike_total": c.ike_total});
    json!({
        "daemon": r.kind.key(),
        "ok": r.error.is_none(),
        "error": r.error,
        "logs": r.logs,
        "loadavg_1min": { "before": r.load.0, "after": r.load.1 },
        "establish": r.establish.as_ref().map(|e| json!({
            "tunnels_up": e.up,
            "seconds": e.seconds,
            "tunnels_per_second": e.per_second(),
            "tunnels_per_second_rounds": e.rounds_per_second(),
            "tunnels_per_second_median": e.median_per_second(),
            "rounds": e.rounds,
            "daemon_cpu_seconds": e.gw_cpu_s,
            "daemon_cpu_ms_per_tunnel": e.cpu_ms_per_tunnel(),
            "rss_before_mib": procstat::mib(e.rss_before_kib),
            "rss_after_mib": procstat::mib(e.rss_after_kib),
            "kib_per_tunnel": e.kib_per_tunnel(),
            "config_load_seconds": e.config_load_s,
            "daemon_counts": counts(&e.counts),
            "vpnctl_status_json_bytes": e.status_bytes,
            "loadgen": e.loadgen,
        })),
        "floods": r.floods.iter().map(|f| json!({
            "sources": f.sources,
            "loadgen": f.loadgen,
            "window_seconds": f.window_s,
            "daemon_cpu_seconds": f.cpu_s,
            "daemon_cpu_seconds_while_sending": f.cpu_send_s,
            "busy_until_seconds": f.busy_until_s,
            "rss_before_mib": procstat::mib(f.rss_before_kib),
            "peak_rss_mib": procstat::mib(f.peak_kib),
            "peak_growth_mib": procstat::mib(f.peak_kib.saturating_sub(f.rss_before_kib)),
            "rss_after_mib": procstat::mib(f.rss_after_kib),
            "kernel_udp_rcvbuf_drops": f.udp_rcvbuf_errors,
            "daemon_counters_grown": counter_growth(&f.counters.0, &f.counters.1).into_iter().map(|(k, v)| (k, Value::from(v))).collect::<serde_json::Map<_, _>>(),
            "daemon_counters_before": f.counters.0,
            "daemon_counters_after": f.counters.1,
            "daemon_counts_after": f.counts_after.as_ref().ok().map(counts),
            "daemon_status_error": f.counts_after.as_ref().err(),
            "alive": f.alive,
            "timeline": f.timeline.iter().map(|(t, c, m)| json!([ (t * 100.0).round() / 100.0, (c * 1000.0).round() / 1000.0, (m * 10.0).round() / 10.0 ])).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_growth_names_what_grew() {
        let before = json!({"ike": null, "io_errors": {"ike_queue_full": 5, "wan_send": 0}});
        let after = json!({"ike": {"half_open": 3, "drops": {"cookie_required": 0}}, "io_errors": {"ike_queue_full": 12, "wan_send": 0}});
        assert_eq!(
            counter_growth(&before, &after),
            vec![("ike.half_open".to_owned(), 3), ("io_errors.ike_queue_full".to_owned(), 7)]
        );
        assert!(counter_growth(&json!(["a"]), &json!(["b"])).is_empty());
    }
}
