//! bench: throughput, loss, latency and CPU cost of the site-to-site path, measured on the
//! namespace topology of [`interop::netns`] for up to five cases, one after another:
//! plain routing (the ceiling), strongSwan <-> strongSwan (the anchor), vpngw <-> vpngw
//! with the default configuration, with raw ESP and with ESP-in-UDP forced, and vpngw <->
//! strongSwan. Prints a table with the
//! ratios to the anchor and to plain routing, and writes everything as JSON. See
//! docs/benchmark.md.
//!
//! A benchmark, not a test: nothing is asserted about the numbers. The exit status is 0
//! when every selected case was measured, 1 if one failed (the others still run and are
//! reported), 2 on bad usage, 130 when interrupted. Every case builds its own namespaces
//! and tears them down (daemons first) when it ends, fails or is interrupted.
#![forbid(unsafe_code)]

// A binary's root file resolves `mod x;` next to itself (src/bin/x.rs would be another
// binary), hence the explicit paths into src/bin/bench/.
#[path = "bench/cases.rs"]
mod cases;
#[path = "bench/interrupt.rs"]
mod interrupt;
#[path = "bench/measure.rs"]
mod measure;
#[path = "bench/report.rs"]
mod report;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use interop::netns::{self, Topology};
use interop::{command, kernel_drops, run, Binaries, Result};

use cases::Case;
use measure::CpuSnapshot;
use report::{CaseResult, Environment, Settings};

const USAGE: &str = "\
usage: bench [--only plain,strongswan,vpngw,...] [--tcp-seconds N] [--runs N] [--tcp-streams N]
             [--udp-seconds N] [--udp-rate RATE] [--udp-len BYTES] [--udp-buffer SIZE]
             [--ping-count N] [--ping-interval S] [--idle-seconds N] [--encap auto|udp]
             [--json-out PATH] [--keep-logs]

  --only LIST        cases to run, comma-separated, in this order (default: all ten:
                     plain, strongswan, vpngw, vpngw-raw, vpngw-udp, mixed,
                     strongswan-aes128-sha1, vpngw-udp-aes128-sha1, strongswan-aes256-sha256,
                     vpngw-udp-aes256-sha256);
                     vpngw = vpngw <-> vpngw as installed (encapsulation auto: ESP-in-UDP,
                     agreed between two vpngw), vpngw-raw = raw ESP (encapsulation raw),
                     vpngw-udp = ESP-in-UDP forced (encapsulation udp, like strongSwan);
                     the -aes128-sha1 / -aes256-sha256 pairs use that ESP suite
  --tcp-seconds N    length of each iperf3 TCP run (default 10)
  --runs N           TCP runs per case; the median is reported (default 3)
  --tcp-streams N    parallel TCP streams per run, iperf3 -P (default 1; 1..16)
  --udp-seconds N    length of the iperf3 UDP run (default: --tcp-seconds)
  --udp-rate RATE    offered UDP rate, iperf3 -b syntax (default 1G)
  --udp-len BYTES    UDP payload per datagram (default 1300: fits a 1400-byte tunnel MTU)
  --udp-buffer SIZE  socket buffers of both iperf3 UDP ends, iperf3 -w syntax (default 4M,
                     capped by net.core.rmem_max); 0 keeps iperf3's default (the kernel's
                     rmem_default, 208 KiB), which overflows in bursts even without a tunnel
  --ping-count N     pings for the round-trip time (default 50)
  --ping-interval S  seconds between pings (default 0.02)
  --idle-seconds N   after the pings, measure the gateways' CPU over N s without traffic
                     (default 0: not measured)
  --encap auto|udp   old alias: udp replaces the vpngw case by vpngw-udp, auto changes nothing
  --json-out PATH    where to write the JSON report (default target/bench/throughput.json)
  --keep-logs        keep configs and daemon logs of every case (failed cases always keep them)

Runs as root (network namespaces). Binaries vpngw and vpnctl are taken from next to this
executable unless VPNGW_BIN / VPNCTL_BIN are set.";

/// Parsed command line.
struct Args {
    settings: Settings,
    json_out: PathBuf,
    keep_logs: bool,
}

fn parse_args(args: &[String]) -> std::result::Result<Option<Args>, String> {
    let mut settings = Settings::default();
    let mut udp_seconds = None;
    let mut encap_udp = false;
    let mut json_out = PathBuf::from("target/bench/throughput.json");
    let mut keep_logs = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = || inline.clone().or_else(|| it.next().cloned()).ok_or(format!("{name} needs a value"));
        match name {
            "-h" | "--help" => return Ok(None),
            "--keep-logs" => keep_logs = true,
            "--only" => {
                let list = value()?;
                let mut cases = Vec::new();
                for key in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let c = Case::parse(key).ok_or(format!("unknown case {key:?} ({})", case_names()))?;
                    if !cases.contains(&c) {
                        cases.push(c);
                    }
                }
                if cases.is_empty() {
                    return Err("--only needs at least one case".into());
                }
                settings.cases = cases;
            }
            "--tcp-seconds" => settings.tcp_seconds = positive(name, &value()?)?,
            "--runs" => settings.runs = positive(name, &value()?)?,
            "--tcp-streams" => {
                let n = positive(name, &value()?)?;
                if n > 16 {
                    return Err("--tcp-streams must be 1..16".into());
                }
                settings.tcp_streams = n;
            }
            "--udp-seconds" => udp_seconds = Some(positive(name, &value()?)?),
            "--udp-rate" => {
                let v = value()?;
                let ok = !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '.');
                if !ok {
                    return Err(format!("--udp-rate {v:?}: expected e.g. 1G, 500M"));
                }
                settings.udp_rate = v;
            }
            "--udp-len" => {
                let n = positive(name, &value()?)?;
                if !(16..=65_000).contains(&n) {
                    return Err("--udp-len must be 16..65000".into());
                }
                settings.udp_len = n;
            }
            "--udp-buffer" => {
                let v = value()?;
                let ok = !v.is_empty() && v.len() < 12 && v.chars().all(|c| c.is_ascii_alphanumeric());
                if !ok {
                    return Err(format!("--udp-buffer {v:?}: expected e.g. 4M, 512K or 0"));
                }
                settings.udp_buffer = v;
            }
            "--idle-seconds" => {
                settings.idle_seconds = value()?.parse().map_err(|_| format!("{name}: expected seconds"))?
            }
            "--ping-count" => settings.ping_count = positive(name, &value()?)?,
            "--ping-interval" => {
                let v = value()?;
                settings.ping_interval = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| (0.002..=10.0).contains(s))
                    .ok_or(format!("--ping-interval {v:?}: expected seconds in 0.002..10"))?;
            }
            "--encap" => {
                encap_udp = match value()?.as_str() {
                    "auto" => false,
                    "udp" => true,
                    other => return Err(format!("--encap {other:?}: expected auto or udp")),
                }
            }
            "--json-out" => json_out = PathBuf::from(value()?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    settings.udp_seconds = udp_seconds.unwrap_or(settings.tcp_seconds);
    if encap_udp {
        // The old `--encap udp`: the vpngw pair runs ESP-in-UDP, i.e. case vpngw-udp.
        let mut cases = Vec::new();
        for c in settings.cases.iter().map(|&c| if c == Case::Vpngw { Case::VpngwUdp } else { c }) {
            if !cases.contains(&c) {
                cases.push(c);
            }
        }
        settings.cases = cases;
    }
    Ok(Some(Args { settings, json_out, keep_logs }))
}

/// Bytes of an iperf3 size (`4M`, `512K`, `1G`, plain bytes; powers of 1024); `None`
/// for 0 (iperf3's default) or anything else.
fn iperf_size(v: &str) -> Option<u64> {
    let (num, mult) = match v.chars().last()? {
        'K' | 'k' => (&v[..v.len() - 1], 1u64 << 10),
        'M' | 'm' => (&v[..v.len() - 1], 1 << 20),
        'G' | 'g' => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    num.parse::<u64>().ok().filter(|n| *n > 0)?.checked_mul(mult)
}

fn case_names() -> String {
    Case::ALL.iter().map(|c| c.key()).collect::<Vec<_>>().join(", ")
}

fn positive(name: &str, v: &str) -> std::result::Result<u32, String> {
    v.parse::<u32>().ok().filter(|n| *n > 0).ok_or(format!("{name} {v:?}: expected a positive integer"))
}

fn main() -> ExitCode {
    if let Some(code) = interrupt::supervise() {
        return code;
    }
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&argv) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("bench: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match bench(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::from(if interrupt::stopped() { 130 } else { 1 })
        }
    }
}

/// Checks the prerequisites, runs the cases, prints and writes the report.
fn bench(args: &Args) -> Result<ExitCode> {
    interop::ensure!(interop::is_root(), "run as root (network namespaces): sudo ./scripts/bench.sh");
    let cases = &args.settings.cases;
    let mut tools = vec!["ip", "ping", "iperf3", "ss", "getconf"];
    if cases.iter().any(|c| c.needs_strongswan()) {
        tools.extend(["swanctl", "unshare"]);
        interop::ensure!(
            Path::new(interop::strongswan::CHARON).is_file(),
            "{} missing: run ./scripts/install-deps.sh",
            interop::strongswan::CHARON
        );
    }
    for tool in tools {
        interop::ensure!(
            run(&mut command(&["sh", "-c", &format!("command -v {tool}")])).is_ok(),
            "{tool} not found: run ./scripts/install-deps.sh"
        );
    }
    // The daemon's per-packet paths must not log; debug logging still costs, so default to info.
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "info");
    }
    // Located once; if that fails, each vpngw case fails with this reason.
    let bins = if cases.iter().any(|c| c.needs_vpngw()) {
        vpngw_binaries().map(Some).map_err(|e| {
            eprintln!("bench: {e}\nbench: the vpngw cases will fail");
            e.to_string()
        })
    } else {
        Ok(None)
    };
    let env = environment(bins.as_ref().ok().and_then(Option::as_ref));
    let work = std::env::temp_dir().join(format!("vg-bench-{}", interop::unique_id()));
    std::fs::create_dir_all(&work)?;
    println!("bench {} on {} ({} CPUs); logs under {}", env.date, env.cpu, env.cpus, work.display());
    let rmem_max = std::fs::read_to_string("/proc/sys/net/core/rmem_max").ok().and_then(|v| v.trim().parse().ok());
    if let (Some(want), Some(max)) = (iperf_size(&args.settings.udp_buffer), rmem_max) {
        if want > max {
            println!(
                "note: net.core.rmem_max is {max} bytes: the kernel caps the iperf3 UDP socket buffers \
                 (--udp-buffer {}) there",
                args.settings.udp_buffer
            );
        }
    }
    println!(
        "cases: {}; TCP {} x {} s{} (congestion control {}), UDP {} s at {} ({}-byte datagrams, socket buffers {}), \
         {} pings every {} s",
        cases.iter().map(|c| c.key()).collect::<Vec<_>>().join(","),
        args.settings.runs,
        args.settings.tcp_seconds,
        if args.settings.tcp_streams > 1 { format!(" ({} streams)", args.settings.tcp_streams) } else { String::new() },
        if env.tcp_congestion_control.is_empty() { "unknown" } else { &env.tcp_congestion_control },
        args.settings.udp_seconds,
        args.settings.udp_rate,
        args.settings.udp_len,
        if args.settings.udp_buffer == "0" { "iperf3 default" } else { &args.settings.udp_buffer },
        args.settings.ping_count,
        args.settings.ping_interval
    );

    let ticks = measure::clock_ticks();
    let mut results = Vec::new();
    for &case in cases {
        if interrupt::stopped() {
            break;
        }
        println!("\n== {} ==", case.label());
        let dir = work.join(case.key());
        let mut res = CaseResult::new(case);
        let started = Instant::now();
        res.load.0 = loadavg();
        let outcome = match (&bins, case.needs_vpngw()) {
            (Err(e), true) => Err(interop::Error::new(e.clone())),
            (Ok(b), _) => run_case(case, args, b.as_ref(), &dir, ticks, &mut res),
            (Err(_), false) => run_case(case, args, None, &dir, ticks, &mut res),
        };
        res.load.1 = loadavg();
        res.wall_seconds = started.elapsed().as_secs_f64();
        if let Err(e) = outcome {
            eprintln!("[{}] FAILED: {e}", case.key());
            res.error = Some(e.to_string());
        }
        // Failed cases keep their logs; an interrupted one is not a failure.
        let failed = res.error.is_some() && !interrupt::stopped();
        if (failed || args.keep_logs) && dir.is_dir() {
            res.logs = Some(dir.display().to_string());
            println!("[{}] logs kept in {}", case.key(), dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&dir);
        }
        results.push(res);
    }
    if !args.keep_logs && results.iter().all(|r| r.logs.is_none()) {
        let _ = std::fs::remove_dir_all(&work);
    }

    println!("\n{}", report::table(&results));
    if let Some(w) = env.thread_wakeup_us {
        println!(
            "thread wake-up on this machine: {w:.0} us (median); a round trip through two userspace \
             gateways wakes at least 3 threads that plain routing does not: about {:.3} ms added\n",
            3.0 * w / 1000.0
        );
    }
    if interrupt::stopped() {
        eprintln!("bench: interrupted; {} not written", args.json_out.display());
        return Ok(ExitCode::from(130));
    }
    let doc = report::to_json(&env, &args.settings, &results);
    if let Some(parent) = args.json_out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let text = serde_json::to_string_pretty(&doc).map_err(|e| interop::Error::new(e.to_string()))?;
    std::fs::write(&args.json_out, text + "\n")?;
    println!("JSON written to {}", args.json_out.display());
    Ok(if results.iter().any(|r| r.error.is_some()) { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// The vpngw binaries, refusing a stale build (scripts/bench.sh sets
/// `VG_BENCH_VPNGW_BUILD_FAILED` when the workspace did not build).
fn vpngw_binaries() -> Result<Binaries> {
    interop::ensure!(
        std::env::var_os("VG_BENCH_VPNGW_BUILD_FAILED").is_none(),
        "the workspace (vpngw) did not build; not benchmarking a stale binary"
    );
    cases::vpngw_binaries()
}

/// One case on a fresh topology; fills `res` as it goes (so a failure keeps what was
/// measured). The gateways are stopped before the namespaces are deleted.
fn run_case(
    case: Case,
    args: &Args,
    bins: Option<&Binaries>,
    dir: &Path,
    ticks: f64,
    res: &mut CaseResult,
) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let s = &args.settings;
    let topo = Topology::create_unique()?;
    let mut gws = cases::setup(case, &topo, dir, bins)?;
    res.procs = gws.procs.clone();
    res.sa_info = gws.sa_info.clone();
    for line in &res.sa_info {
        println!("[{}] {line}", case.key());
    }
    let (la, lb) = (&topo.lan_a, &topo.lan_b);
    measure::wait_reachable(la, netns::LAN_B_HOST, cases::REACH_TIMEOUT)?;

    let pids = gws.pids();
    let ms_since = |before: Option<u64>| {
        before.zip(measure::gateways_cpu_ns(&pids)).map(|(b, a)| a.saturating_sub(b) as f64 / 1e6)
    };
    let cpu_before = measure::gateways_cpu_ns(&pids);
    let rtt = measure::ping(la, netns::LAN_B_HOST, s.ping_count, s.ping_interval, dir)?;
    res.ping_gateway_cpu_ms = ms_since(cpu_before);
    println!(
        "[{}] ping: {}/{} replies, median {} ms, avg {:.3} ms, min {:.3} ms",
        case.key(),
        rtt.received,
        rtt.transmitted,
        rtt.median_ms.map_or_else(|| "n/a".to_owned(), |m| format!("{m:.3}")),
        rtt.avg_ms,
        rtt.min_ms
    );
    res.rtt = Some(rtt);
    if let Some(ms) = res.ping_gateway_cpu_ms {
        println!("[{}] gateway CPU during the pings: {ms:.1} ms", case.key());
    }
    if s.idle_seconds > 0 {
        let cpu_before = measure::gateways_cpu_ns(&pids);
        pause(Duration::from_secs(s.idle_seconds.into()))?;
        res.idle_gateway_cpu_ms = ms_since(cpu_before);
        if let Some(ms) = res.idle_gateway_cpu_ms {
            println!("[{}] gateway CPU idle over {} s: {ms:.1} ms", case.key(), s.idle_seconds);
        }
    }
    let nss = topo.all();
    let tcp_drops_before: Vec<_> = nss.iter().map(|ns| kernel_drops::kernel_drops(ns)).collect();
    let sender_before = kernel_drops::tcp_counters(&topo.lan_a);
    for i in 1..=s.runs {
        interrupt::check()?;
        let before = CpuSnapshot::take(&pids);
        let run = measure::tcp_run(la, lb, netns::LAN_B_HOST, s.tcp_seconds, s.tcp_streams, dir)?;
        let after = CpuSnapshot::take(&pids);
        gws.check_alive()?;
        res.tcp_cpu.add(&before, &after, run.bytes, ticks);
        println!(
            "[{}] TCP run {i}/{}: {:.0} Mbit/s, {} retransmits",
            case.key(),
            s.runs,
            run.bits_per_second / 1e6,
            run.retransmits.map_or_else(|| "?".to_owned(), |r| r.to_string())
        );
        res.tcp.push(run);
        pause(Duration::from_secs(1))?;
    }

    let per_gb = |secs: f64| secs / (res.tcp_cpu.bytes.max(1) as f64 / 1e9);
    let cpu: Vec<String> = res
        .procs
        .iter()
        .zip(&res.tcp_cpu.per_process_seconds)
        .map(|(p, s)| match s {
            Some(s) => format!("{} {} {s:.2} s ({:.1} s/GB)", p.kind, p.site, per_gb(*s)),
            None => format!("{} {} n/a", p.kind, p.site),
        })
        .collect();
    if let Some(m) = res.tcp_cpu.machine_busy_seconds {
        println!(
            "[{}] CPU during TCP: {}machine busy {m:.2} s ({:.1} s/GB)",
            case.key(),
            cpu.iter().map(|c| format!("{c}, ")).collect::<String>(),
            per_gb(m)
        );
    }

    // Where the TCP runs lost packets (each loss is a retransmission and a window cut).
    let tcp_lost = lost_since(&nss, &tcp_drops_before);
    if !tcp_lost.is_empty() {
        println!("[{}] kernel drop counters during TCP: {}", case.key(), tcp_lost.join(", "));
    }
    // The sender's view: retransmissions the receiver reported as duplicates (DSACK) were
    // spurious, caused by reordering on the path rather than by a loss.
    let sender = kernel_drops::grown(&sender_before, &kernel_drops::tcp_counters(&topo.lan_a));
    let got = |k: &str| sender.iter().find(|(n, _)| n == k).map_or(0, |(_, d)| *d);
    println!(
        "[{}] TCP sender: {} segments retransmitted, {} of them spurious (DSACK); reordering detected {} times",
        case.key(),
        got("TcpRetransSegs"),
        got("TcpExtTCPDSACKRecvSegs"),
        got("TcpExtTCPSACKReorder") + got("TcpExtTCPTSReorder")
    );

    let (udp, where_lost) = udp_flood(case, s, &topo, false, dir, &mut gws)?;
    res.udp = Some(udp);
    res.udp_kernel_drops = where_lost;
    if case.udp_both_ways() {
        res.udp_reverse = Some(udp_flood(case, s, &topo, true, dir, &mut gws)?);
    }
    if args.keep_logs {
        std::fs::write(dir.join("sa-state-after.txt"), gws.sa_state().join("\n---\n"))?;
    }
    // gws (declared after topo) drops first: daemons stop, then the namespaces go.
    Ok(())
}

/// One UDP run lanA -> lanB (lanB -> lanA if `reverse`), printed with the kernel drop
/// counters that grew during it in each namespace of `topo`: where the loss happened.
fn udp_flood(
    case: Case,
    s: &Settings,
    topo: &Topology,
    reverse: bool,
    dir: &Path,
    gws: &mut cases::Gateways,
) -> Result<(measure::UdpRun, Vec<String>)> {
    interrupt::check()?;
    let nss = topo.all();
    let drops_before: Vec<_> = nss.iter().map(|ns| kernel_drops::kernel_drops(ns)).collect();
    let udp = measure::udp_run(&topo.lan_a, &topo.lan_b, netns::LAN_B_HOST, s, reverse, dir)?;
    gws.check_alive()?;
    let what = if reverse { "UDP lanB -> lanA" } else { "UDP" };
    println!(
        "[{}] {what} at {}: sent {:.0} Mbit/s, received {:.0} Mbit/s, loss {:.1} %",
        case.key(),
        s.udp_rate,
        udp.sent_bps / 1e6,
        udp.received_bps / 1e6,
        udp.lost_percent
    );
    let where_lost = lost_since(&nss, &drops_before);
    if !where_lost.is_empty() {
        println!("[{}] kernel drop counters during {what}: {}", case.key(), where_lost.join(", "));
    }
    Ok((udp, where_lost))
}

/// What grew in each namespace's drop counters since `before` (taken for `nss` in order),
/// as `"<namespace> <counter> +<n>"`.
fn lost_since(nss: &[&netns::Netns], before: &[std::collections::BTreeMap<String, u64>]) -> Vec<String> {
    let mut lost = Vec::new();
    for (ns, before) in nss.iter().zip(before) {
        for (k, d) in kernel_drops::grown(before, &kernel_drops::kernel_drops(ns)) {
            lost.push(format!("{} {k} +{d}", ns.name()));
        }
    }
    lost
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

/// The 1-minute load average.
fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// First line of a command's stdout, or "" if it fails.
fn first_line(argv: &[&str]) -> String {
    run(&mut command(argv)).map(|s| s.lines().next().unwrap_or_default().trim().to_owned()).unwrap_or_default()
}

fn environment(bins: Option<&Binaries>) -> Environment {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let vpngw_binary = bins.map(|b| {
        let mtime = std::fs::metadata(&b.vpngw)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or_else(String::new, |d| first_line(&["date", "-u", "-d", &format!("@{}", d.as_secs()), "+%FT%TZ"]));
        format!("{} (built {mtime})", b.vpngw.display())
    });
    Environment {
        date: first_line(&["date", "-u", "+%FT%TZ"]),
        kernel: first_line(&["uname", "-r"]),
        cpu,
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        strongswan: first_line(&["dpkg-query", "-W", "-f", "strongswan-charon ${Version}\n", "strongswan-charon"]),
        iperf3: first_line(&["iperf3", "--version"]),
        git: first_line(&["git", "-c", "safe.directory=*", "describe", "--always", "--dirty"]),
        vpngw_binary,
        thread_wakeup_us: measure::thread_wakeup_us(),
        tcp_congestion_control: std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use interop::vpngw::Encap;

    fn parse(args: &[&str]) -> std::result::Result<Option<Args>, String> {
        parse_args(&args.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn defaults_run_everything_for_ten_seconds_three_times() {
        let a = parse(&[]).unwrap().unwrap();
        assert_eq!(a.settings.cases, Case::ALL.to_vec());
        assert_eq!((a.settings.tcp_seconds, a.settings.runs, a.settings.udp_seconds), (10, 3, 10));
        assert_eq!(a.settings.udp_rate, "1G");
        assert_eq!(a.json_out, PathBuf::from("target/bench/throughput.json"));
        // The three vpngw pairs by default: as installed, raw ESP and ESP-in-UDP forced.
        for c in [Case::Vpngw, Case::VpngwRaw, Case::VpngwUdp] {
            assert!(a.settings.cases.contains(&c), "{c:?}");
        }
        assert_eq!(Case::Vpngw.vpngw_encap(), Some(Encap::Auto));
        assert_eq!(Case::VpngwRaw.vpngw_encap(), Some(Encap::Raw));
        assert_eq!(Case::VpngwUdp.vpngw_encap(), Some(Encap::Udp));
        assert_eq!(Case::StrongSwan.vpngw_encap(), None);
    }

    #[test]
    fn options_select_cases_and_durations() {
        let a = parse(&["--only", "strongswan,plain,plain", "--tcp-seconds=3", "--runs", "1"]).unwrap().unwrap();
        assert_eq!(a.settings.cases, vec![Case::StrongSwan, Case::Plain]);
        assert_eq!((a.settings.tcp_seconds, a.settings.runs, a.settings.udp_seconds), (3, 1, 3));
        let u = parse(&["--only", "vpngw-udp,strongswan,vpngw"]).unwrap().unwrap();
        assert_eq!(u.settings.cases, vec![Case::VpngwUdp, Case::StrongSwan, Case::Vpngw]);
        let b = parse(&["--udp-seconds", "2", "--json-out", "/tmp/x.json", "--udp-rate", "500M"]).unwrap().unwrap();
        assert_eq!((b.settings.udp_seconds, b.settings.udp_rate.as_str()), (2, "500M"));
        assert_eq!(b.json_out, PathBuf::from("/tmp/x.json"));
        assert_eq!(b.settings.udp_buffer, "4M", "the default");
        assert_eq!(b.settings.tcp_streams, 1, "the default");
        assert_eq!(parse(&["--tcp-streams", "4"]).unwrap().unwrap().settings.tcp_streams, 4);
        let w = parse(&["--udp-buffer", "0"]).unwrap().unwrap();
        assert_eq!(w.settings.udp_buffer, "0");
        assert_eq!(
            (b.settings.idle_seconds, parse(&["--idle-seconds", "10"]).unwrap().unwrap().settings.idle_seconds),
            (0, 10)
        );
        assert!(parse(&["--idle-seconds", "ten"]).is_err());
        assert!(parse(&["--help"]).unwrap().is_none());
    }

    #[test]
    fn encap_udp_is_an_alias_for_the_vpngw_udp_case() {
        let a = parse(&["--only", "strongswan,vpngw", "--encap", "udp"]).unwrap().unwrap();
        assert_eq!(a.settings.cases, vec![Case::StrongSwan, Case::VpngwUdp]);
        // Given after --only too, and without duplicating a case already selected.
        let b = parse(&["--encap=udp"]).unwrap().unwrap();
        let mut expected = vec![Case::Plain, Case::StrongSwan, Case::VpngwUdp, Case::VpngwRaw, Case::Mixed];
        expected.extend_from_slice(&Case::ALL[6..]);
        assert_eq!(b.settings.cases, expected);
        let c = parse(&["--only", "vpngw", "--encap", "auto"]).unwrap().unwrap();
        assert_eq!(c.settings.cases, vec![Case::Vpngw]);
    }

    #[test]
    fn iperf_sizes() {
        assert_eq!(iperf_size("4M"), Some(4 << 20));
        assert_eq!(iperf_size("512k"), Some(512 << 10));
        assert_eq!(iperf_size("1000"), Some(1000));
        assert_eq!(iperf_size("0"), None);
        assert_eq!(iperf_size("M"), None);
        assert_eq!(iperf_size("x"), None);
    }

    #[test]
    fn bad_arguments_are_rejected() {
        for bad in [
            &["--only", "wireguard"][..],
            &["--only", "vpngw_udp"],
            &["--only", ","],
            &["--runs", "0"],
            &["--tcp-seconds", "-1"],
            &["--runs"],
            &["--encap", "raw"],
            &["--udp-rate", "1G; rm"],
            &["--udp-buffer", "-w"],
            &["--udp-buffer", ""],
            &["--tcp-streams", "17"],
            &["--ping-interval", "0"],
            &["--frobnicate"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
