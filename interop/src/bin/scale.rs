//! scale: one gateway with N tunnels (default 1,000) to N peer addresses, for vpngw and
//! for strongSwan, one after the other, each in fresh namespaces: how fast the tunnels
//! come up, what each established tunnel costs in memory, and what a flood of spoofed
//! IKE_SA_INIT requests (default 100,000 from the peers' addresses, then 100,000 from
//! addresses with no tunnel) costs the daemon in CPU seconds and peak RSS. The peers are
//! ONE load generator process (`scale loadgen`, see `scale/loadgen.rs`) that drives the
//! `ike` crate. See docs/scale.md.
//!
//! A benchmark, not a test: nothing is asserted about the numbers. Exit status 0 when
//! every selected daemon was measured, 1 if one failed (the other still runs), 2 on bad
//! usage, 130 when interrupted (Ctrl-C tears down as in `bench`).
#![forbid(unsafe_code)]

#[path = "scale/flood.rs"]
mod flood;
#[path = "scale/gateway.rs"]
mod gateway;
#[path = "bench/interrupt.rs"]
mod interrupt;
#[path = "scale/loadgen.rs"]
mod loadgen;
#[path = "scale/procstat.rs"]
mod procstat;
#[path = "scale/report.rs"]
mod report;
#[path = "scale/run.rs"]
mod run;
#[path = "scale/topo.rs"]
mod topo;
#[path = "scale/tunnels.rs"]
mod tunnels;
#[path = "scale/wire.rs"]
mod wire;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use interop::{command, run as run_cmd, Binaries, Result};

use gateway::Kind;
use run::{DaemonResult, Settings};

const USAGE: &str = "\
usage: scale [--only vpngw,strongswan] [--tunnels N] [--concurrency N] [--rounds N] [--establish-timeout S]
             [--floods peers,strangers|none] [--flood-count N] [--flood-rate PPS] [--tail S]
             [--json-out PATH] [--keep-logs]

  --only LIST            daemons to measure, in this order (default vpngw,strongswan)
  --tunnels N            tunnels = peer addresses (default 1000)
  --concurrency N        negotiations the load generator keeps in flight (default 64)
  --rounds N             bring all tunnels up N times, deleting them in between (default 3;
                         tunnels per second is their median, memory is measured after the first)
  --establish-timeout S  give up bringing the tunnels up after S seconds (default 180)
  --floods LIST          IKE_SA_INIT floods, in order (default peers,strangers): peers = from
                         the configured peers' addresses, strangers = from addresses with no
                         tunnel; none = no flood
  --flood-count N        requests per flood (default 100000)
  --flood-rate PPS       requests per second (default 10000)
  --tail S               the flood's window goes on S seconds after the last request
                         (default 35: half-open IKE SAs expire after 30 s)
  --json-out PATH        the JSON report (default target/bench/scale.json)
  --keep-logs            keep configs and daemon logs (a failed daemon always keeps them)

Runs as root (network namespaces). vpngw and vpnctl are taken from next to this
executable unless VPNGW_BIN / VPNCTL_BIN are set.";

struct Args {
    settings: Settings,
    json_out: PathBuf,
    keep_logs: bool,
}

fn number(name: &str, v: &str, min: u64, max: u64) -> std::result::Result<u64, String> {
    v.parse::<u64>().ok().filter(|n| (min..=max).contains(n)).ok_or(format!("{name} {v:?}: expected {min}..{max}"))
}

fn parse_args(args: &[String]) -> std::result::Result<Option<Args>, String> {
    let mut s = Settings::default();
    let mut json_out = PathBuf::from("target/bench/scale.json");
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
                let mut daemons = Vec::new();
                for key in value()?.split(',').map(str::trim).filter(|k| !k.is_empty()) {
                    let k = Kind::parse(key).ok_or(format!("unknown daemon {key:?} (vpngw, strongswan)"))?;
                    if !daemons.contains(&k) {
                        daemons.push(k);
                    }
                }
                if daemons.is_empty() {
                    return Err("--only needs vpngw and/or strongswan".into());
                }
                s.daemons = daemons;
            }
            "--tunnels" => s.tunnels = number(name, &value()?, 1, topo::MAX_TUNNELS as u64)? as usize,
            "--concurrency" => s.concurrency = number(name, &value()?, 1, 10_000)? as usize,
            "--rounds" => s.rounds = number(name, &value()?, 1, 100)? as usize,
            "--establish-timeout" => s.establish_timeout = Duration::from_secs(number(name, &value()?, 1, 3600)?),
            "--floods" => {
                let mut floods = Vec::new();
                for key in value()?.split(',').map(str::trim).filter(|k| !k.is_empty()) {
                    match key {
                        "none" => {}
                        "peers" => floods.push("peers"),
                        "strangers" => floods.push("strangers"),
                        other => return Err(format!("unknown flood {other:?} (peers, strangers, none)")),
                    }
                }
                floods.dedup();
                s.floods = floods;
            }
            "--flood-count" => s.flood_count = number(name, &value()?, 1, 100_000_000)?,
            "--flood-rate" => s.flood_rate = number(name, &value()?, 1, 10_000_000)?,
            "--tail" => s.tail = Duration::from_secs(number(name, &value()?, 0, 3600)?),
            "--json-out" => json_out = PathBuf::from(value()?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(Args { settings: s, json_out, keep_logs }))
}

fn main() -> ExitCode {
    // The load generator is this binary run again inside the peers namespace.
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("loadgen") {
        return ExitCode::from(loadgen::main(&argv[1..]));
    }
    if let Some(code) = interrupt::supervise() {
        return code;
    }
    let args = match parse_args(&argv) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("scale: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match scale(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("scale: {e}");
            ExitCode::from(if interrupt::stopped() { 130 } else { 1 })
        }
    }
}

fn scale(args: &Args) -> Result<ExitCode> {
    interop::ensure!(interop::is_root(), "run as root (network namespaces): sudo ./scripts/scale.sh");
    let s = &args.settings;
    let mut tools = vec!["ip", "getconf"];
    if s.daemons.contains(&Kind::StrongSwan) {
        tools.extend(["swanctl", "unshare"]);
        interop::ensure!(
            Path::new(interop::strongswan::CHARON).is_file(),
            "{} missing: run ./scripts/install-deps.sh",
            interop::strongswan::CHARON
        );
    }
    for tool in tools {
        interop::ensure!(
            run_cmd(&mut command(&["sh", "-c", &format!("command -v {tool}")])).is_ok(),
            "{tool} not found: run ./scripts/install-deps.sh"
        );
    }
    // Per-packet logging would dominate a flood: info, unless the caller says otherwise.
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "info");
    }
    let bins = if s.daemons.contains(&Kind::Vpngw) {
        let b = vpngw_binaries();
        if let Err(e) = &b {
            eprintln!("scale: {e}\nscale: the vpngw run will fail");
        }
        b.ok()
    } else {
        None
    };
    let env = environment(bins.as_ref());
    let work = std::env::temp_dir().join(format!("vg-scale-{}", interop::unique_id()));
    std::fs::create_dir_all(&work)?;
    println!("scale {} on {} ({} CPUs); logs under {}", env.date, env.cpu, env.cpus, work.display());
    println!(
        "{} tunnels ({} negotiations in flight); floods: {} of {} IKE_SA_INIT at {}/s, window until {} s after the last",
        s.tunnels,
        s.concurrency,
        if s.floods.is_empty() { "none".to_owned() } else { s.floods.join(", ") },
        s.flood_count,
        s.flood_rate,
        s.tail.as_secs()
    );
    let mut results = Vec::new();
    for &kind in &s.daemons {
        if interrupt::stopped() {
            break;
        }
        println!("\n== {} ==", kind.key());
        let dir = work.join(kind.key());
        let mut res = DaemonResult {
            kind,
            establish: None,
            floods: Vec::new(),
            error: None,
            logs: None,
            load: (run::loadavg(), None),
        };
        let outcome = match (kind, &bins) {
            (Kind::Vpngw, None) => Err(interop::Error::new("vpngw binaries not available")),
            _ => run::measure(kind, s, bins.as_ref(), &dir, &mut res),
        };
        res.load.1 = run::loadavg();
        if let Err(e) = outcome {
            eprintln!("[{}] FAILED: {e}", kind.key());
            res.error = Some(e.to_string());
        }
        let failed = res.error.is_some() && !interrupt::stopped();
        if (failed || args.keep_logs) && dir.is_dir() {
            res.logs = Some(dir.display().to_string());
            println!("[{}] logs kept in {}", kind.key(), dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&dir);
        }
        results.push(res);
    }
    if results.iter().all(|r| r.logs.is_none()) {
        let _ = std::fs::remove_dir_all(&work);
    }
    println!("\n{}", report::table(s, &results));
    if interrupt::stopped() {
        eprintln!("scale: interrupted; {} not written", args.json_out.display());
        return Ok(ExitCode::from(130));
    }
    let doc = report::to_json(&env, s, &results);
    if let Some(parent) = args.json_out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let text = serde_json::to_string_pretty(&doc).map_err(|e| interop::Error::new(e.to_string()))?;
    std::fs::write(&args.json_out, text + "\n")?;
    println!("JSON written to {}", args.json_out.display());
    Ok(if results.iter().any(|r| r.error.is_some()) { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// vpngw and vpnctl (refusing a stale build when scripts/scale.sh could not build them).
fn vpngw_binaries() -> Result<Binaries> {
    interop::ensure!(
        std::env::var_os("VG_BENCH_VPNGW_BUILD_FAILED").is_none(),
        "the workspace (vpngw) did not build; not benchmarking a stale binary"
    );
    Binaries::locate(PathBuf::new())
}

fn first_line(argv: &[&str]) -> String {
    run_cmd(&mut command(argv)).map(|s| s.lines().next().unwrap_or_default().trim().to_owned()).unwrap_or_default()
}

fn environment(bins: Option<&Binaries>) -> report::Environment {
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
    report::Environment {
        date: first_line(&["date", "-u", "+%FT%TZ"]),
        kernel: first_line(&["uname", "-r"]),
        cpu,
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        strongswan: first_line(&["dpkg-query", "-W", "-f", "strongswan-charon ${Version}\n", "strongswan-charon"]),
        git: first_line(&["git", "-c", "safe.directory=*", "describe", "--always", "--dirty"]),
        vpngw_binary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> std::result::Result<Option<Args>, String> {
        parse_args(&args.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn defaults_are_the_documented_numbers() {
        let a = parse(&[]).unwrap().unwrap();
        assert_eq!(a.settings, Settings::default());
        assert_eq!((a.settings.tunnels, a.settings.flood_count), (1000, 100_000));
        assert_eq!(a.settings.daemons, vec![Kind::Vpngw, Kind::StrongSwan]);
        assert_eq!(a.settings.floods, vec!["peers", "strangers"]);
        assert_eq!(a.json_out, PathBuf::from("target/bench/scale.json"));
    }

    #[test]
    fn options_and_bad_arguments() {
        let a = parse(&["--only", "strongswan", "--tunnels=10", "--floods", "none", "--tail", "0"]).unwrap().unwrap();
        assert_eq!(a.settings.daemons, vec![Kind::StrongSwan]);
        assert_eq!(a.settings.tunnels, 10);
        assert!(a.settings.floods.is_empty());
        assert_eq!(a.settings.tail, Duration::ZERO);
        let b = parse(&["--floods", "strangers", "--flood-count", "5", "--flood-rate", "7", "--keep-logs"])
            .unwrap()
            .unwrap();
        assert_eq!(
            (b.settings.floods.clone(), b.settings.flood_count, b.settings.flood_rate),
            (vec!["strangers"], 5, 7)
        );
        assert!(b.keep_logs);
        assert!(parse(&["--help"]).unwrap().is_none());
        for bad in [
            &["--only", "wireguard"][..],
            &["--only", ""],
            &["--tunnels", "0"],
            &["--tunnels", "70000"],
            &["--floods", "everyone"],
            &["--flood-rate", "x"],
            &["--concurrency"],
            &["--frobnicate"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
