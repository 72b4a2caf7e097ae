//! The gateway under attack: a vpngw <-> strongSwan tunnel (vpngw initiates) carries a
//! 100-per-second ping while a hostile generator in its own namespace (the "internet",
//! wired to gwA only, rp_filter off on gwA so spoofed sources arrive) sends, bounded in
//! count and time:
//!
//! - `nettool hostile`: payload bombs (180 Delete payloads claiming 65,535 SPIs each in
//!   one datagram, a few 64 KiB ones as IPv4 fragments, SA/TS/notify payloads claiming
//!   what they do not carry, ...), truncated and mutated IKE messages (starting from the
//!   real IKE_SA_INIT and IKE_AUTH captured when the tunnel came up) to UDP 500 and 4500,
//!   and ESP captured from the WAN replayed as is, from another port or address, as raw
//!   ESP, tampered, with unknown SPIs and truncated;
//! - `nettool ikeflood`: 100,000 spoofed IKE_SA_INITs, from random hosts of
//!   198.51.100.0/24 and 203.0.113.128/25 and from the peer's own address.
//!
//! Pass: the same daemon (PID), its resident memory peak (VmHWM, reset before the attack)
//! less than 64 MiB above its RSS before, the same CHILD SA (SPIs) afterwards, under 1 %
//! ping loss, COOKIEs sent (`ike.drops.cookies_sent` in `vpnctl status --json`, and COOKIE
//! requests from gwA on the wire). Then a forced DPD failure: nftables on gwA drops
//! everything between the two gateways until vpngw's DPD (2 s / 6 s, action restart)
//! has removed the IKE SA, is lifted, and the tunnel must come back (a new CHILD SA, ping
//! both ways) while a spoofed IKE_SA_INIT flood from the peer's address goes on.
//!
//! vpngw's address space is capped (prlimit, 2 GiB above its size at start) so that a
//! bomb that works makes it abort (failing the test on its PID) instead of starving the
//! machine. Needs root: as another user it prints `SKIPPED vpngw_under_attack: <reason>`
//! and passes, except under `CI=true`, where it fails.
//! `cargo test --release -p interop --test attack -- --nocapture`

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gateway::control::proto::StatusReport;
use interop::capture::Capture;
use interop::netns::{self, Netns, HOST_IF, WAN_IF};
use interop::process::Proc;
use interop::procstat::{self, mib};
use interop::sa_history::Sample;
use interop::scenario::{run_scenario, swan_site_b, vpngw_site_a, Checks, Scenario, SA_TIMEOUT};
use interop::strongswan::StrongSwan;
use interop::vpngw::{self, Encap, Lifetimes, Start, Vpngw};
use interop::{ensure, ikewire, kernel_drops, wait_for, Binaries, Error, Result};

/// How long the ping runs; the attack (hostile mix and floods) fits inside it.
const PING_SECONDS: f64 = 32.0;
/// Pings per second.
const PING_RATE: u32 = 100;
/// The hostile mix: datagrams, rate, time bound, 64 KiB bombs.
const HOSTILE_COUNT: u64 = 20_000;
const HOSTILE_RATE: u32 = 1_000;
const HOSTILE_SECONDS: f64 = 25.0;
const HOSTILE_BIG: u64 = 10;
/// The spoofed IKE_SA_INIT floods: (target port, sources, count, rate); 100,000 in all.
const FLOODS: [(u16, &str, u64, u32); 3] = [
    (500, "198.51.100.0/24", 40_000, 2_000),
    (4500, "203.0.113.128/25", 30_000, 1_500),
    (500, netns::GW_B_WAN, 30_000, 1_500),
];
/// The attackers must be done this long after they started.
const ATTACK_BOUND: Duration = Duration::from_secs(30);
/// Most the daemon's resident memory may grow during the attack.
const RSS_GROWTH_MAX_KIB: u64 = 64 * 1024;
/// Most ping loss allowed during the attack.
const LOSS_MAX_PERCENT: f64 = 1.0;
/// vpngw's dead peer detection in this run.
const DPD_DELAY: u64 = 2;
const DPD_TIMEOUT: u64 = 6;
/// The flood from the peer's address during the DPD phase: rate and time bound.
const DPD_FLOOD_RATE: u32 = 300;
const DPD_FLOOD_SECONDS: u64 = 90;
/// Address space vpngw may add to its size at start.
const ADDRESS_SPACE_HEADROOM: u64 = 2 << 30;
/// Fixed seeds: a failing run can be repeated packet for packet.
const SEED: u64 = 8;

fn nettool() -> PathBuf {
    std::env::var_os("NETTOOL_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_nettool")), PathBuf::from)
}

fn tool(ns: &Netns, args: &[&str]) -> std::process::Command {
    let t = nettool();
    let mut argv = vec![t.to_str().unwrap_or("nettool")];
    argv.extend_from_slice(args);
    ns.exec(&argv)
}

/// `nettool ikeflood` in the internet namespace.
/// The seed is derived from the label, so every flood sends its own SPIs and keys.
fn flood(sc: &Scenario, inet: &Netns, label: &str, port: u16, source: &str, count: u64, rate: u32) -> Result<Proc> {
    let target = format!("{}:{port}", netns::GW_A_WAN);
    let src_flag = if source.contains('/') { "--source-prefix" } else { "--source" };
    let seed = label.bytes().fold(SEED, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let (count, rate, seed) = (count.to_string(), rate.to_string(), seed.to_string());
    let args = ["ikeflood", "--target", &target, "--count", &count, "--rate", &rate, src_flag, source, "--seed", &seed];
    Proc::spawn(label, tool(inet, &args), &sc.dir)
}

/// `nettool ping` lanA -> lanB at [`PING_RATE`].
fn ping(sc: &Scenario, label: &str, seconds: f64) -> Result<Proc> {
    let (rate, secs) = (PING_RATE.to_string(), seconds.to_string());
    Proc::spawn(
        label,
        tool(&sc.topo.lan_a, &["ping", "--to", netns::LAN_B_HOST, "--rate", &rate, "--seconds", &secs]),
        &sc.dir,
    )
}

/// Waits for a tool to exit 0 within `timeout`; its stdout.
fn finish(p: &mut Proc, timeout: Duration) -> Result<String> {
    let st =
        p.wait_timeout(timeout).ok_or_else(|| Error::new(format!("{} still running after {timeout:?}", p.label())))?;
    ensure!(st.success(), "{} failed ({st}): {}{}", p.label(), p.out_text(), p.log_text());
    Ok(p.out_text())
}

/// `key=value` of the line starting with `prefix`.
fn field(text: &str, prefix: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(prefix))?;
    line.split_whitespace().find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

/// `(spi_in, spi_out)` of every INSTALLED CHILD SA, lowercase.
fn installed_spis(status: &StatusReport) -> Vec<(String, String)> {
    let mut v: Vec<_> = Sample::from_vpngw(status)
        .children
        .into_iter()
        .filter(|c| c.state.eq_ignore_ascii_case("installed"))
        .map(|c| (c.spi_in.to_ascii_lowercase(), c.spi_out.to_ascii_lowercase()))
        .collect();
    v.sort();
    v
}

/// Initiator SPIs of vpngw's IKE SAs.
fn ike_spis(status: &StatusReport) -> Vec<String> {
    Sample::from_vpngw(status).ike.into_iter().map(|(i, _, _)| i.to_ascii_lowercase()).collect()
}

/// Drops everything between the two gateways on gwA's WAN (both ways); the internet
/// link is untouched, so spoofed packets still arrive.
fn hold_wan(gw_a: &Netns, dir: &Path) -> Result<()> {
    let rules = format!(
        "add table inet vghold\n\
         add chain inet vghold in {{ type filter hook input priority -10; }}\n\
         add chain inet vghold out {{ type filter hook output priority -10; }}\n\
         add rule inet vghold in iifname {WAN_IF} ip saddr {b} counter drop\n\
         add rule inet vghold out oifname {WAN_IF} ip daddr {b} counter drop\n",
        b = netns::GW_B_WAN
    );
    let file = dir.join("hold.nft");
    std::fs::write(&file, rules)?;
    gw_a.run(&["nft", "-f", &file.to_string_lossy()]).map(drop)
}

fn release_wan(gw_a: &Netns) -> Result<String> {
    let counters = gw_a.run(&["nft", "list", "table", "inet", "vghold"]).unwrap_or_default();
    gw_a.run(&["nft", "delete", "table", "inet", "vghold"])?;
    Ok(counters.lines().filter(|l| l.contains("counter")).map(str::trim).collect::<Vec<_>>().join("; "))
}

fn fmt_map(m: &BTreeMap<String, u64>) -> String {
    let v: Vec<String> = m.iter().map(|(k, n)| format!("{k} {n}")).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// What phase one measured, for the closing note.
struct AttackNumbers {
    rss_before_kib: u64,
    /// `None` when the daemon was gone.
    peak_kib: Option<u64>,
    cpu_seconds: Option<f64>,
    ping_sent: u64,
    ping_received: u64,
    cookies_sent: Option<u64>,
    cookies_on_wire: usize,
}

#[test]
fn vpngw_under_attack() {
    run_scenario("vpngw_under_attack", |sc| {
        let bins = Binaries::locate(nettool())?;
        let inet = sc.topo.attach_internet()?;
        let t0 = Instant::now();
        let name = sc.name.clone();
        let say = |what: String| println!("[{name}] {:6.1}s {what}", t0.elapsed().as_secs_f64());

        // The tunnel, captured whole from its first packet (the templates of the attack).
        let setup_cap = Capture::start_full(&sc.topo.gw_a, WAN_IF, &sc.dir, "setup")?;
        let mut swan = StrongSwan::start(&sc.topo.gw_b, &swan_site_b(false), &sc.subdir("gwb"))?;
        let mut cfg = vpngw_site_a(Start::Initiate, Encap::Auto);
        cfg.tunnels[0].lifetimes = Lifetimes {
            dpd_delay: Some(format!("{DPD_DELAY}s")),
            dpd_timeout: Some(format!("{DPD_TIMEOUT}s")),
            dpd_action: Some("restart".into()),
            ..Lifetimes::default()
        };
        let mut gw = Vpngw::start(&sc.topo.gw_a, &cfg, &sc.subdir("gwa"), &bins)?;
        let pid = gw.pid();
        let size = procstat::mem(pid)?.size_kib * 1024;
        procstat::limit_address_space(pid, size + ADDRESS_SPACE_HEADROOM)?;
        gw.wait_child_sa(SA_TIMEOUT)?;
        swan.wait_child_sa(SA_TIMEOUT)?;
        // Real ESP both ways, for the replays.
        let mut warm = ping(sc, "ping-warmup", 1.0)?;
        finish(&mut warm, Duration::from_secs(15))?;
        let setup = setup_cap.stop()?;
        say(format!("tunnel up (vpngw PID {pid}), setup captured in {}", setup.file.display()));

        let mut checks = Checks::default();
        let numbers = attack(sc, &inet, &mut gw, &setup.file, &mut checks, &say)?;
        let peak = numbers.peak_kib.map_or_else(
            || "n/a (daemon gone)".to_owned(),
            |p| format!("{:.1} MiB (+{:.1} MiB)", mib(p), mib(p.saturating_sub(numbers.rss_before_kib))),
        );
        println!(
            "[{name}] RESULT under attack: vpngw RSS before {:.1} MiB, peak {peak}, growth limit {} MiB, CPU {} s; \
             ping lost {} of {} ({:.2} %); cookies sent {} (status), {} COOKIE requests on the wire",
            mib(numbers.rss_before_kib),
            RSS_GROWTH_MAX_KIB / 1024,
            numbers.cpu_seconds.map_or_else(|| "n/a".into(), |c| format!("{c:.2}")),
            numbers.ping_sent - numbers.ping_received,
            numbers.ping_sent,
            100.0 * (numbers.ping_sent - numbers.ping_received) as f64 / numbers.ping_sent.max(1) as f64,
            numbers.cookies_sent.map_or_else(|| "n/a".into(), |n| n.to_string()),
            numbers.cookies_on_wire
        );
        if gw.is_running() {
            checks.check(dpd_phase(sc, &inet, &mut gw, &mut swan, &say));
        } else {
            checks.check(Err(Error::new("the DPD phase did not run: vpngw is gone")));
        }
        if gw.is_running() {
            checks.check(gw.stop().map(drop));
        }
        checks.finish()
    });
}

/// Phase one: ping through the tunnel while the hostile mix and the 100,000 spoofed
/// IKE_SA_INITs arrive; every pass criterion is checked (failures collected in `checks`).
fn attack(
    sc: &Scenario,
    inet: &Netns,
    gw: &mut Vpngw,
    setup_pcap: &Path,
    checks: &mut Checks,
    say: &dyn Fn(String),
) -> Result<AttackNumbers> {
    let pid = gw.pid();
    let wan_cap = sc.capture_wan()?;
    let inet_cap = Capture::start(inet, HOST_IF, &sc.dir, "internet")?;
    let before = gw.status()?;
    let spis_before = installed_spis(&before);
    ensure!(!spis_before.is_empty(), "no INSTALLED CHILD SA before the attack: {}", vpngw::one_line(&before));
    let kernel_before = kernel_drops::kernel_drops(&sc.topo.gw_a);
    procstat::reset_peak(pid)?;
    let mem_before = procstat::mem(pid)?;
    let cpu_before = procstat::cpu_seconds(pid)?;
    say(format!("before the attack: {mem_before}; CHILD SA {spis_before:?}"));

    let mut ping = ping(sc, "ping-attack", PING_SECONDS)?;
    let started = Instant::now();
    let (count, rate, secs, big, seed) = (
        HOSTILE_COUNT.to_string(),
        HOSTILE_RATE.to_string(),
        HOSTILE_SECONDS.to_string(),
        HOSTILE_BIG.to_string(),
        SEED.to_string(),
    );
    let replay = setup_pcap.to_string_lossy();
    let hostile_args = [
        "hostile",
        "--target",
        netns::GW_A_WAN,
        "--peer",
        netns::GW_B_WAN,
        "--spoof",
        netns::SPOOFED_NETS[0],
        "--spoof",
        "203.0.113.128/25",
        "--count",
        &count,
        "--rate",
        &rate,
        "--seconds",
        &secs,
        "--big",
        &big,
        "--replay",
        &replay,
        "--seed",
        &seed,
    ];
    let mut attackers = vec![Proc::spawn("hostile", tool(inet, &hostile_args), &sc.dir)?];
    for (i, (port, source, count, rate)) in FLOODS.iter().enumerate() {
        attackers.push(flood(sc, inet, &format!("ikeflood-{i}"), *port, source, *count, *rate)?);
    }
    say(format!(
        "attack started: hostile mix ({HOSTILE_COUNT} datagrams at {HOSTILE_RATE}/s) and {} spoofed IKE_SA_INITs",
        FLOODS.iter().map(|f| f.2).sum::<u64>()
    ));
    // Sample while the attackers run: the daemon answers its control socket throughout.
    let (mut samples, mut failed_samples, mut max_half_open) = (0u32, 0u32, None::<u64>);
    let attack_done = wait_for(ATTACK_BOUND, "the attackers to finish", || {
        if !gw.is_running() {
            return Some(false);
        }
        match gw.status() {
            Ok(st) => {
                samples += 1;
                let h = st.ike.half_open;
                max_half_open = Some(max_half_open.map_or(h, |m| m.max(h)));
            }
            Err(_) => failed_samples += 1,
        }
        std::thread::sleep(Duration::from_millis(400));
        attackers.iter_mut().all(|p| !p.is_running()).then_some(true)
    });
    let attack_secs = started.elapsed().as_secs_f64();
    let ping_covered = ping.is_running();
    let how = match attack_done {
        Ok(false) => "vpngw died",
        Ok(true) => "attackers done",
        Err(_) => "attackers still running",
    };
    say(format!(
        "{how} after {attack_secs:.1} s; {samples} status samples ({failed_samples} unanswered), most \
         half-open IKE SAs seen: {}",
        max_half_open.map_or_else(|| "n/a".into(), |h| h.to_string())
    ));
    for a in &mut attackers {
        if !gw.is_running() {
            // Nothing left to attack: stop the rest (the daemon's death is the failure).
            let _ = a.terminate(Duration::from_secs(3));
            continue;
        }
        let out = finish(a, Duration::from_secs(5));
        checks.check(out.as_ref().map(drop).map_err(|e| Error::new(e.to_string())));
        if let Ok(out) = out {
            for line in out.lines() {
                say(format!("{}: {line}", a.label()));
            }
        }
    }
    let died_during = matches!(attack_done, Ok(false));
    checks.check(match attack_done {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::new(format!("vpngw (PID {pid}) died during the attack:\n{}", gw.log_tail(30)))),
        Err(e) => Err(e),
    });
    checks.check((|| {
        ensure!(ping_covered, "the ping ended before the attackers did: it must cover the whole attack");
        Ok(())
    })());
    let ping_out = finish(&mut ping, Duration::from_secs_f64(PING_SECONDS + 15.0))?;
    let ping_sent = field(&ping_out, "ping ", "sent").unwrap_or(0);
    let ping_received = field(&ping_out, "ping ", "received").unwrap_or(0);

    let alive = gw.is_running();
    let mem_after = if alive { procstat::mem(pid).ok() } else { None };
    let cpu_after = if alive { procstat::cpu_seconds(pid).ok() } else { None };
    let after = if alive { gw.status().ok() } else { None };
    let wan = wan_cap.stop()?;
    let internet = inet_cap.stop()?;
    let a_addr: Ipv4Addr = netns::GW_A_WAN.parse().map_err(|e| Error::new(format!("{e}")))?;
    let cookies_on_wire =
        ikewire::count_cookie_requests(&wan.file, a_addr)? + ikewire::count_cookie_requests(&internet.file, a_addr)?;

    // Same daemon (a death during the attack is reported above; the checks that need
    // the daemon's own figures are left out then).
    checks.check((|| {
        ensure!(alive || died_during, "vpngw (PID {pid}) is gone after the attack:\n{}", gw.log_tail(30));
        if !alive {
            return Ok(());
        }
        let reported = after.as_ref().map(|s| s.daemon.pid);
        ensure!(reported == Some(pid), "vpnctl status reports PID {reported:?}, expected {pid}");
        Ok(())
    })());
    // Memory.
    let peak_kib = mem_after.map(|m| m.hwm_kib);
    checks.check((|| {
        let growth = peak_kib.unwrap_or(0).saturating_sub(mem_before.rss_kib);
        if !alive {
            return Ok(());
        }
        ensure!(
            mem_after.is_some() && growth < RSS_GROWTH_MAX_KIB,
            "vpngw's resident memory peaked {:.1} MiB above its RSS before the attack (limit {} MiB): before {}, \
             after {:?}",
            mib(growth),
            RSS_GROWTH_MAX_KIB / 1024,
            mem_before,
            mem_after
        );
        Ok(())
    })());
    // The CHILD SA kept.
    let spis_after = after.as_ref().map(installed_spis).unwrap_or_default();
    checks.check((|| {
        ensure!(
            spis_after == spis_before,
            "the CHILD SA changed under attack: before {spis_before:?}, after {spis_after:?}"
        );
        Ok(())
    })());
    // Ping loss.
    checks.check((|| {
        let lost = ping_sent.saturating_sub(ping_received);
        ensure!(ping_sent > 0, "no ping result: {ping_out}");
        let pct = 100.0 * lost as f64 / ping_sent as f64;
        ensure!(
            pct < LOSS_MAX_PERCENT,
            "ping through the tunnel lost {lost} of {ping_sent} ({pct:.2} %, limit {LOSS_MAX_PERCENT} %) under attack:\n{}",
            ping_out.lines().take(20).collect::<Vec<_>>().join("\n")
        );
        Ok(())
    })());
    // COOKIEs.
    let ike_drops = after.as_ref().map(|st| vpngw::counters(&st.ike.drops));
    let cookies_sent = ike_drops.as_ref().and_then(|d| d.get("cookies_sent").copied());
    checks.check((|| {
        if !alive {
            return Ok(());
        }
        ensure!(
            ike_drops.is_some(),
            "vpnctl status --json could not be read after the attack, so its ike.drops are unknown"
        );
        ensure!(
            cookies_sent.unwrap_or(0) > 0,
            "no COOKIE sent under a 100,000 IKE_SA_INIT flood: ike.drops {ike_drops:?}"
        );
        Ok(())
    })());
    checks.check((|| {
        ensure!(
            cookies_on_wire > 0,
            "no COOKIE request from gwA on the wire (WAN and internet captures) under the IKE_SA_INIT flood"
        );
        Ok(())
    })());

    // Drops by reason, for the closing note.
    if let Some(st) = &after {
        say(format!("IKE drops: {}", ike_drops.as_ref().map_or_else(|| "not reported".into(), fmt_map)));
        say(format!("IKE half-open now: {:?}", st.ike.half_open));
        let dp_before = vpngw::datapath_drops(&before);
        let dp_after = vpngw::datapath_drops(st);
        let grown: BTreeMap<String, u64> = kernel_drops::grown(&dp_before, &dp_after).into_iter().collect();
        say(format!("datapath drops during the attack: {}", fmt_map(&grown)));
        say(format!("gateway I/O errors: {}", fmt_map(&vpngw::counters(&st.io_errors))));
    }
    let kernel: BTreeMap<String, u64> =
        kernel_drops::grown(&kernel_before, &kernel_drops::kernel_drops(&sc.topo.gw_a)).into_iter().collect();
    say(format!("gwA kernel drop counters that grew: {}", fmt_map(&kernel)));
    let cpu_seconds = cpu_after.map(|c| c - cpu_before);
    Ok(AttackNumbers {
        rss_before_kib: mem_before.rss_kib,
        peak_kib,
        cpu_seconds,
        ping_sent,
        ping_received,
        cookies_sent,
        cookies_on_wire,
    })
}

/// Phase two: with a spoofed IKE_SA_INIT flood from the peer's address running, hold
/// everything between the gateways until vpngw's DPD removes the IKE SA, release, and
/// require a new CHILD SA (ping both ways) while the flood still runs.
fn dpd_phase(sc: &Scenario, inet: &Netns, gw: &mut Vpngw, swan: &mut StrongSwan, say: &dyn Fn(String)) -> Result<()> {
    let before = gw.status()?;
    let old_ike = ike_spis(&before);
    let old_children = installed_spis(&before);
    let count = u64::from(DPD_FLOOD_RATE) * DPD_FLOOD_SECONDS;
    let mut peer_flood = flood(sc, inet, "ikeflood-dpd", 500, netns::GW_B_WAN, count, DPD_FLOOD_RATE)?;
    hold_wan(&sc.topo.gw_a, &sc.dir)?;
    let held = Instant::now();
    say(format!("DPD phase: WAN between the gateways held; spoofed flood from {} running", netns::GW_B_WAN));
    let bound = Duration::from_secs(DPD_DELAY + DPD_TIMEOUT + 15);
    let dead = wait_for(bound, "vpngw's DPD to remove the held IKE SA", || {
        let st = gw.status().ok()?;
        let now = ike_spis(&st);
        old_ike.iter().all(|spi| !now.contains(spi)).then_some(())
    });
    let counters = release_wan(&sc.topo.gw_a)?;
    say(format!("released after {:.1} s (nft: {counters})", held.elapsed().as_secs_f64()));
    dead.map_err(|e| {
        Error::new(format!("{e}; status: {}\n{}", gw.status_text().unwrap_or_default(), gw.log_tail(30)))
    })?;
    let released = Instant::now();
    let up = wait_for(Duration::from_secs(45), "a new CHILD SA after the DPD failure", || {
        let st = gw.status().ok()?;
        let now = installed_spis(&st);
        now.iter().any(|c| !old_children.iter().any(|o| o.0 == c.0)).then_some(now)
    });
    let flood_running = peer_flood.is_running();
    let new = up.map_err(|e| {
        Error::new(format!(
            "{e} (the spoofed flood from the peer's address was running: {flood_running}); status: {}\n{}",
            gw.status_text().unwrap_or_default(),
            gw.log_tail(40)
        ))
    })?;
    say(format!(
        "tunnel re-initiated {:.1} s after the release: CHILD SA {new:?} (old {old_children:?})",
        released.elapsed().as_secs_f64()
    ));
    ensure!(flood_running, "the spoofed flood from the peer's address ended before the tunnel came back");
    swan.wait_child_sa(Duration::from_secs(10))?;
    let (ab, ba) = sc.ping_both_ways()?;
    say(format!("ping lanA->lanB {}/{}, lanB->lanA {}/{}", ab.received, ab.transmitted, ba.received, ba.transmitted));
    ensure!(peer_flood.is_running(), "the spoofed flood from the peer's address ended before the ping did");
    let _ = peer_flood.terminate(Duration::from_secs(3));
    say(format!("DPD phase done; the peer-address flood was stopped after {:.1} s", held.elapsed().as_secs_f64()));
    Ok(())
}
