//! Active/standby tunnels against two strongSwan gateways in front of one remote LAN
//! (`interop::twopeers`): vpngw's tunnel `aws-1` goes to b1 (198.51.100.1), `aws-2` to
//! b2 (203.0.113.1) with `standby_for = "aws-1"`, both protecting 10.1.0.0/24 <->
//! 10.2.0.0/24, DPD after 1 s of silence and dead after 4 s (`dpd_timeout`). The host H
//! on the remote LAN routes site A back through b1 (metric 10) before b2 (metric 20),
//! as the remote end of such a service prefers one of its tunnel endpoints.
//!
//! What each test proves (docs/interop.md has the table):
//! - `failover_under_load_and_failback`: both tunnels up, aws-1 active and aws-2
//!   standby in `vpnctl status` (JSON and text) and in the metrics, and the traffic of a
//!   bidirectional load (sequenced UDP at 500 datagrams/s each way, ping at 100/s)
//!   crosses aws-1 and b1 only (ESP counters of both gateways). Then b1 dies (charon
//!   SIGKILLed, its links taken down, so H's route through it goes as a dead neighbour's
//!   would): vpngw declares the peer dead (`dpd_failed`, no sooner than `dpd_timeout` after
//!   the kill, as b1's ESP flowed until then), a `failover` event names aws-2,
//!   the status and metrics show aws-2 active, and the traffic crosses aws-2 and b2. The
//!   UDP datagrams lost site A -> H must fit in (dpd_timeout + 1.5 s) x rate; the other
//!   direction loses at most 1 s worth (the standby accepts ESP all along). Then b1 comes
//!   back (a fresh namespace wired the same way, charon initiating as a restarted peer
//!   does), H's route through it is restored once its CHILD SA is up, and with
//!   `failback = true` a `failover` event names aws-1 again, the traffic crosses b1, and
//!   the move loses (almost) nothing.
//! - `recovered_primary_stays_standby_without_failback`: the same failover with
//!   `failback = false`; when b1 is back and aws-1 has its CHILD SA, aws-1 shows
//!   `standby`, no further `failover` event comes, and pings still cross aws-2 only.
//! - `esp_from_the_active_peer_keeps_it_alive_while_its_ike_is_held`: b1 stays alive
//!   and its ESP keeps arriving, but the IKE requests vpngw sends it are dropped on b1's
//!   WAN (`interop::hold`) for dpd_timeout + 2 s: since something (ESP) is heard from it
//!   all along, the peer is not declared dead, no failover happens and nothing is lost.
//!
//! Every wait is for a state or an event (generous timeouts), then the counts are
//! asserted; each test prints the loss it measured and the time from the kill to the
//! `failover` event. The file takes about 75 s.
//!
//! Needs root: as another user it prints `SKIPPED <name>: <reason>` and passes, except
//! under `CI=true`, where it fails. Namespaces and daemons are removed by their guards,
//! also when a check fails (the work directory is then kept and its logs printed).
//! `cargo test --release -p interop --test failover -- --nocapture`

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use interop::hold::{Held, IkeHold};
use interop::scenario::{log_tails, Checks, ESP_PROPOSAL, ID_A, IKE_PROPOSAL, PSK, SA_TIMEOUT};
use interop::stream::{Load, LoadReport, LoadSpec};
use interop::strongswan::{parse_list_sas, StrongSwan, SwanConfig, SwanTimers, CHARON};
use interop::twopeers::{self as tp, TwoPeers};
use interop::vpngw::{
    failover_of, tunnel_installed, tunnel_packets, Encap, Failover, GatewayConfig, Lifetimes, Start, TunnelConfig,
    Vpngw, Watch,
};
use interop::{ensure, wait_for, Binaries, Error, Result};
use testkit::Need;

/// The primary tunnel (to b1); also the group's name.
const PRIMARY: &str = "aws-1";
/// The standby tunnel (to b2).
const STANDBY: &str = "aws-2";
/// b1's IKE identity.
const ID_B1: &str = "b1.example.net";
/// b2's IKE identity.
const ID_B2: &str = "b2.example.net";
/// vpngw's `dpd_delay` (seconds).
const DPD_DELAY_S: u64 = 1;
/// vpngw's `dpd_timeout` (seconds): the peer is dead after this long unheard.
const DPD_TIMEOUT_S: u64 = 4;
/// UDP payload per datagram.
const UDP_SIZE: usize = 1000;
/// UDP rate per direction, Mbit/s: 500 datagrams per second.
const UDP_MBIT: f64 = 4.0;
/// Pings per second per direction.
const PING_RATE: u32 = 100;
/// vpngw's Prometheus endpoint inside gateway A's namespace.
const METRICS: &str = "127.0.0.1:9750";
/// How long a state change or an event may take to show (generous: they are awaited).
const SETTLE: Duration = Duration::from_secs(30);

/// One namespace test at a time within this file (the tests measure loss).
static SERIAL: Mutex<()> = Mutex::new(());

fn nettool() -> PathBuf {
    std::env::var_os("NETTOOL_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_nettool")), PathBuf::from)
}

/// UDP datagrams per second in each direction.
fn udp_pps() -> f64 {
    UDP_MBIT * 1e6 / (UDP_SIZE as f64 * 8.0)
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn tunnel(name: &str, remote: &str, remote_id: &str) -> TunnelConfig {
    TunnelConfig {
        name: name.into(),
        remote_address: remote.into(),
        local_id: ID_A.into(),
        remote_id: remote_id.into(),
        psk: PSK.into(),
        local_subnets: vec![tp::LAN_A_NET.into()],
        remote_subnets: vec![tp::REMOTE_NET.into()],
        start: Start::Initiate,
        ike_proposals: vec![IKE_PROPOSAL.into()],
        esp_proposals: vec![ESP_PROPOSAL.into()],
        encapsulation: Encap::Auto,
        lifetimes: Lifetimes {
            dpd_delay: Some(format!("{DPD_DELAY_S}s")),
            dpd_timeout: Some(format!("{DPD_TIMEOUT_S}s")),
            dpd_action: Some("restart".into()),
            ..Lifetimes::default()
        },
        extra: Vec::new(),
        child_sa_per_subnet_pair: false,
        ike_version: None,
    }
}

/// Gateway A: aws-1 to b1, aws-2 to b2 standing by for aws-1, metrics on.
fn vpngw_config(failback: bool) -> GatewayConfig {
    let mut standby = tunnel(STANDBY, tp::B2_WAN, ID_B2);
    standby.extra = vec![("standby_for".into(), format!("\"{PRIMARY}\"")), ("failback".into(), failback.to_string())];
    GatewayConfig {
        local_address: tp::GW_A_WAN.into(),
        tun_name: "vpn0".into(),
        tunnels: vec![tunnel(PRIMARY, tp::B1_WAN, ID_B1), standby],
        env: Vec::new(),
        gateway_extra: vec![("metrics_listen".into(), format!("\"{METRICS}\""))],
    }
}

/// A peer gateway protecting the remote LAN; `initiate` as a restarted peer does.
fn swan_config(wan: &str, id: &str, initiate: bool) -> SwanConfig {
    SwanConfig {
        local_addr: wan.into(),
        remote_addr: tp::GW_A_WAN.into(),
        local_id: id.into(),
        remote_id: ID_A.into(),
        psk: PSK.into(),
        local_ts: tp::REMOTE_NET.into(),
        remote_ts: tp::LAN_A_NET.into(),
        ike_proposal: IKE_PROPOSAL.into(),
        esp_proposal: ESP_PROPOSAL.into(),
        initiate,
        version: 2,
        timers: SwanTimers::default(),
    }
}

/// Builds the topology and work directory, runs `body`, and on `Err` keeps the
/// directory, prints every log's tail and fails; skips as `testkit::require` says.
fn run_lab(name: &str, body: impl FnOnce(&mut TwoPeers, &Path) -> Result<()>) {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !testkit::require(name, &[Need::Root, Need::Command("ip"), Need::Command("swanctl"), Need::Command(CHARON)]) {
        return;
    }
    let id = interop::unique_id();
    let dir = std::env::temp_dir().join(format!("vg-interop-{name}-{id}"));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{name}: cannot create {}: {e}", dir.display()));
    let mut topo = match TwoPeers::create(&format!("vg{id}")) {
        Ok(t) => t,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            panic!("{name}: cannot build the topology: {e}");
        }
    };
    // Daemons live inside `body`, so they are stopped before the namespaces go.
    let result = body(&mut topo, &dir);
    if let Err(e) = result {
        let state = topo.describe();
        drop(topo);
        panic!("{name} FAILED: {e}\n\n{}\n{state}\nlogs kept in {}", log_tails(&dir), dir.display());
    }
    drop(topo);
    if std::env::var_os("VG_KEEP_LOGS").is_some() {
        eprintln!("[{name}] logs kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!("[{name}] PASSED");
}

/// The running gateways of one test.
struct Lab {
    name: String,
    dir: PathBuf,
    gw: Vpngw,
    watch: Watch,
    b1: StrongSwan,
    b2: StrongSwan,
    /// How many times b1 was started (names its directory).
    b1_starts: u32,
    /// Gateway A's namespace (for the metrics endpoint).
    gw_ns: String,
    /// Failed checks that do not stop the run (reported when the test ends).
    checks: Checks,
}

impl Lab {
    /// b1 and b2 (responders), then vpngw, the watch, and both tunnels up.
    fn start(name: &str, topo: &TwoPeers, dir: &Path, failback: bool) -> Result<Self> {
        let bins = Binaries::locate(nettool())?;
        let b1 = StrongSwan::start(&topo.b1, &swan_config(tp::B1_WAN, ID_B1, false), &dir.join("b1"))?;
        let b2 = StrongSwan::start(&topo.b2, &swan_config(tp::B2_WAN, ID_B2, false), &dir.join("b2"))?;
        let gw = Vpngw::start(&topo.gw_a, &vpngw_config(failback), &dir.join("gwa"), &bins)?;
        let watch = gw.watch(&dir.join("gwa"))?;
        let mut lab = Lab {
            name: name.to_owned(),
            dir: dir.to_owned(),
            gw,
            watch,
            b1,
            b2,
            b1_starts: 1,
            gw_ns: topo.gw_a.name().to_owned(),
            checks: Checks::default(),
        };
        lab.b1.wait_child_sa(SA_TIMEOUT)?;
        lab.b2.wait_child_sa(SA_TIMEOUT)?;
        for t in [PRIMARY, STANDBY] {
            lab.wait_installed(t)?;
        }
        Ok(lab)
    }

    fn say(&self, what: impl std::fmt::Display) {
        println!("[{}] {what}", self.name);
    }

    fn status_json(&self) -> Result<String> {
        self.gw.status_json_text()
    }

    /// Waits until tunnel `t` has an INSTALLED CHILD SA in vpngw's status.
    fn wait_installed(&self, t: &str) -> Result<()> {
        wait_for(SA_TIMEOUT, &format!("an INSTALLED CHILD SA of {t} in vpngw"), || {
            self.gw.status().ok().filter(|s| tunnel_installed(s, t) > 0).map(drop)
        })
        .map_err(|e| self.with_status(e))
    }

    fn with_status(&self, e: Error) -> Error {
        Error::new(format!(
            "{e}\nstatus: {}\n--- vpngw log ---\n{}",
            self.status_json().unwrap_or_else(|e| e.to_string()),
            self.gw.log_tail(30)
        ))
    }

    /// Both tunnels' `failover` blocks.
    fn roles(&self) -> Result<(Option<Failover>, Option<Failover>)> {
        let json = self.status_json()?;
        Ok((failover_of(&json, PRIMARY)?, failover_of(&json, STANDBY)?))
    }

    /// Waits until aws-1 is in `primary` state and aws-2 in `standby` state (`active`,
    /// `standby`, `down`), then checks both blocks in full, the text status and the
    /// metrics.
    fn wait_states(&self, primary: &str, standby: &str, failback: bool) -> Result<()> {
        let (p, s) = wait_for(SETTLE, &format!("{PRIMARY} {primary} and {STANDBY} {standby} in vpnctl status"), || {
            match self.roles().ok()? {
                (Some(p), Some(s)) if p.state == primary && s.state == standby => Some((p, s)),
                _ => None,
            }
        })
        .map_err(|e| self.with_status(e))?;
        // Group and roles exactly; `failback` is the standby's setting (what the
        // primary's block says of it is the implementation's choice).
        ensure!(
            (p.group.as_str(), p.role.as_str(), s.group.as_str(), s.role.as_str(), s.failback)
                == (PRIMARY, "primary", PRIMARY, "standby", failback),
            "failover blocks: {PRIMARY} {p:?}, {STANDBY} {s:?}"
        );
        let text = self.gw.status_text()?;
        // e.g. `  failover     active (carries the group's outbound traffic); primary of group aws-1; ...`
        for (f, t) in [(&p, PRIMARY), (&s, STANDBY)] {
            let (head, part) = (format!("failover     {} ", f.state), format!("; {} of group {}", f.role, f.group));
            ensure!(
                text.lines().any(|l| l.trim_start().starts_with(&head) && l.contains(&part)),
                "vpnctl status shows no `{head}...{part}` line for {t}:\n{text}"
            );
        }
        let active = |f: &Failover| u64::from(f.state == "active");
        for (f, t) in [(&p, PRIMARY), (&s, STANDBY)] {
            let m = self.metric_active(t)?;
            ensure!(m == active(f), "vpngw_tunnel_active for {t} is {m}, the status says {}", f.state);
        }
        Ok(())
    }

    /// `vpngw_tunnel_active{tunnel="T",...}` from the metrics endpoint (which listens
    /// inside gateway A's namespace).
    fn metric_active(&self, t: &str) -> Result<u64> {
        let url = format!("http://{METRICS}/metrics");
        let text = interop::run(&mut interop::command(&[
            &testkit::netns::ip_program(),
            "netns",
            "exec",
            &self.gw_ns,
            "curl",
            "-sS",
            "--max-time",
            "5",
            &url,
        ]))?;
        metric_value(&text, "vpngw_tunnel_active", t)
            .ok_or_else(|| Error::new(format!("no vpngw_tunnel_active for {t} in the metrics:\n{text}")))
    }

    /// Sealed (out) and delivered (in) packets of tunnel `t`.
    fn packets(&self, t: &str) -> Result<(u64, u64)> {
        Ok(tunnel_packets(&self.gw.status()?, t))
    }

    /// Waits until tunnel `t` has sealed `n` more packets than `from` (its sealed count
    /// then); returns the new (out, in) counts.
    fn wait_sealed(&self, t: &str, from: u64, n: u64) -> Result<(u64, u64)> {
        wait_for(SETTLE, &format!("{n} packets sealed on {t}"), || {
            self.packets(t).ok().filter(|(out, _)| *out >= from + n)
        })
        .map_err(|e| self.with_status(e))
    }

    /// Waits until tunnel `t` has sealed a second of datagrams from now, and checks
    /// that its peer (b1 for aws-1, b2 for aws-2) received ESP meanwhile.
    fn wait_carried(&self, t: &str, after: &str) -> Result<()> {
        let (peer, label) = if t == PRIMARY { (&self.b1, "b1") } else { (&self.b2, "b2") };
        let (sealed, got) = (self.packets(t)?.0, swan_packets(peer)?.0);
        self.wait_sealed(t, sealed, udp_pps() as u64)?;
        let now = swan_packets(peer)?.0;
        ensure!(now > got, "{label} received no ESP after {after}: {got} -> {now} packets");
        Ok(())
    }

    /// A failover event after the first `skip`, making tunnel `to` active.
    fn wait_failover(&mut self, skip: usize, to: &str) -> Result<interop::vpngw::Event> {
        let what = format!("a failover event making {to} active");
        let ev =
            self.watch.wait_event(SETTLE, skip, &what, |e| e.kind == "failover" && e.tunnel.as_deref() == Some(to));
        let ev = ev.map_err(|e| self.with_status(e))?;
        ensure!(
            ev.message.contains(&format!("group {PRIMARY}")) && ev.message.contains(to),
            "the failover event does not name the group and the tunnel: {ev:?}"
        );
        Ok(ev)
    }

    /// The IKE SAs of tunnel `t` in vpngw's status.
    fn ike_sas(&self, t: &str) -> Result<usize> {
        Ok(self.gw.status()?.tunnels.iter().filter(|x| x.name == t).map(|x| x.ike_sas.len()).sum())
    }

    /// Prints how many IKE SAs each tunnel has, and the checks that failed along the
    /// way (as the test's error).
    fn finish(mut self) -> Result<()> {
        self.say(format!(
            "at the end: {PRIMARY} has {} IKE SA(s), {STANDBY} {}",
            self.ike_sas(PRIMARY)?,
            self.ike_sas(STANDBY)?
        ));
        ensure!(self.gw.is_running(), "vpngw exited:\n{}", self.gw.log_tail(30));
        self.gw.stop()?;
        std::mem::take(&mut self.checks).finish()
    }

    /// How many events the watch has seen.
    fn events_seen(&self) -> usize {
        self.watch.events().len()
    }
}

/// The value of `metric{...tunnel="T"...}` in Prometheus text.
fn metric_value(text: &str, metric: &str, tunnel: &str) -> Option<u64> {
    let label = format!("tunnel=\"{tunnel}\"");
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(&label))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Packets (in, out) of strongSwan's INSTALLED CHILD SAs.
fn swan_packets(swan: &StrongSwan) -> Result<(u64, u64)> {
    let sas = parse_list_sas(&swan.list_sas()?);
    let installed = sas.iter().flat_map(|sa| &sa.children).filter(|c| c.state == "INSTALLED");
    Ok(installed.fold((0, 0), |(i, o), c| (i + c.packets_in, o + c.packets_out)))
}

/// Both directions of the load: sequenced UDP and ping, site A -> H and H -> site A.
struct Loads {
    a_to_h: Load,
    h_to_a: Load,
}

impl Loads {
    fn start(topo: &TwoPeers, dir: &Path, tag: &str, seconds: f64) -> Result<Self> {
        let spec = LoadSpec { seconds, udp_mbit: UDP_MBIT, udp_size: UDP_SIZE, ping_rate: PING_RATE, idle: SETTLE };
        let tool = nettool();
        let a_to_h =
            Load::start_between(&tool, &topo.lan_a, &topo.host, tp::HOST_H, &dir.join(format!("{tag}-a-to-h")), spec)?;
        let h_to_a = Load::start_between(
            &tool,
            &topo.host,
            &topo.lan_a,
            tp::LAN_A_HOST,
            &dir.join(format!("{tag}-h-to-a")),
            spec,
        )?;
        Ok(Self { a_to_h, h_to_a })
    }

    fn ensure_running(&mut self, what: &str) -> Result<()> {
        ensure!(self.a_to_h.is_running() && self.h_to_a.is_running(), "the load ended before {what}: make it longer");
        Ok(())
    }

    fn finish(self) -> Result<(LoadReport, LoadReport)> {
        Ok((self.a_to_h.finish()?, self.h_to_a.finish()?))
    }
}

/// The steady state before anything fails: aws-1 carries everything (vpngw's ESP
/// counters and b1's), aws-2 and b2 nothing, while the load runs.
fn check_traffic_on_primary(lab: &Lab) -> Result<()> {
    let (p0, s0) = (lab.packets(PRIMARY)?, lab.packets(STANDBY)?);
    let (b1_0, b2_0) = (swan_packets(&lab.b1)?, swan_packets(&lab.b2)?);
    // A second of each direction's datagrams, sealed by aws-1.
    let n = udp_pps() as u64;
    let p1 = lab.wait_sealed(PRIMARY, p0.0, n)?;
    wait_for(SETTLE, "a second of H's datagrams delivered by aws-1", || {
        lab.packets(PRIMARY).ok().filter(|(_, i)| *i >= p1.1 + n)
    })?;
    let (p2, s2) = (lab.packets(PRIMARY)?, lab.packets(STANDBY)?);
    let (b1_2, b2_2) = (swan_packets(&lab.b1)?, swan_packets(&lab.b2)?);
    lab.say(format!(
        "steady: {PRIMARY} sealed {} delivered {}, {STANDBY} sealed {} delivered {}; b1 in {} out {}, b2 in {} out {}",
        p2.0 - p0.0,
        p2.1 - p0.1,
        s2.0 - s0.0,
        s2.1 - s0.1,
        b1_2.0 - b1_0.0,
        b1_2.1 - b1_0.1,
        b2_2.0 - b2_0.0,
        b2_2.1 - b2_0.1
    ));
    ensure!(s2.0 == s0.0, "the standby {STANDBY} sealed {} packets while {PRIMARY} was active", s2.0 - s0.0);
    ensure!(s2.1 == s0.1, "{STANDBY} delivered {} packets although H routes through b1", s2.1 - s0.1);
    ensure!(b1_2.0 >= b1_0.0 + n && b1_2.1 >= b1_0.1 + n, "b1's CHILD SA did not carry the load: {b1_0:?} -> {b1_2:?}");
    ensure!(b2_2 == b2_0, "b2's CHILD SA carried traffic while {PRIMARY} was active: {b2_0:?} -> {b2_2:?}");
    Ok(())
}

/// Both tunnels up, the load on aws-1, then b1 dies: failover to aws-2 under the load.
/// Returns the lab with aws-2 active.
fn fail_over(name: &str, topo: &TwoPeers, dir: &Path, failback: bool) -> Result<Lab> {
    let mut lab = Lab::start(name, topo, dir, failback)?;
    lab.wait_states("active", "standby", failback)?;
    lab.say(format!("both tunnels up: {PRIMARY} active, {STANDBY} standby (status, text, metrics)"));

    let mut loads = Loads::start(topo, dir, "failover", 16.0)?;
    check_traffic_on_primary(&lab)?;

    // b1 dies.
    let skip = lab.events_seen();
    let killed_ms = unix_ms();
    lab.b1.kill();
    topo.take_down_b1()?;
    lab.say("b1 killed (charon SIGKILLed, links down)");

    let dead = lab.watch.wait_event(SETTLE, skip, "dpd_failed for aws-1", |e| {
        e.kind == "dpd_failed" && e.tunnel.as_deref() == Some(PRIMARY)
    });
    let dead = dead.map_err(|e| lab.with_status(e))?;
    let ev = lab.wait_failover(skip, STANDBY)?;
    loads.ensure_running("the failover")?;
    lab.wait_states("down", "active", failback)?;
    lab.wait_carried(STANDBY, "the failover")?;
    loads.ensure_running("the traffic crossed aws-2")?;
    let (ah, ha) = loads.finish()?;

    let after_kill = |ms: u64| ms.saturating_sub(killed_ms) as f64 / 1000.0;
    let dead_after = after_kill(dead.unix_ms);
    lab.say(format!(
        "peer declared dead {dead_after:.2} s after the kill, failover event {:.2} s after it: {}",
        after_kill(ev.unix_ms),
        ev.message
    ));
    let counters = lab.gw.status()?.tunnels.iter().find(|t| t.name == PRIMARY).map(|t| t.counters.clone());
    ensure!(
        counters.as_ref().is_some_and(|c| c.dpd_failures == 1),
        "{PRIMARY}'s counters do not show one DPD failure: {counters:?}"
    );
    // Dead means nothing heard for dpd_timeout, and b1 sent ESP (H's datagrams) until
    // the kill: the verdict may not come sooner. 0.5 s of slack: on a loaded machine b1's
    // last ESP may reach vpngw some time before the kill is recorded; a verdict from the
    // time the check went out (the bug this catches) came a whole second early.
    lab.checks.check((|| {
        ensure!(
            dead_after + 0.5 >= DPD_TIMEOUT_S as f64,
            "{PRIMARY}'s peer was declared dead {dead_after:.2} s after its last packet, before dpd_timeout \
             ({DPD_TIMEOUT_S} s) of silence"
        );
        Ok(())
    })());
    report_loss(&lab, "failover", &ah, &ha);
    let bound = (udp_pps() * (DPD_TIMEOUT_S as f64 + 1.5)) as u64;
    ensure!(
        ah.udp.lost() <= bound,
        "site A -> H lost {} datagrams in the failover, more than {bound} (rate x (dpd_timeout + 1.5 s)): {ah}",
        ah.udp.lost()
    );
    let bound_ha = udp_pps() as u64;
    ensure!(
        ha.udp.lost() <= bound_ha,
        "H -> site A lost {} datagrams, more than a second's worth ({bound_ha}); the standby accepts ESP all along: {ha}",
        ha.udp.lost()
    );
    ensure!(lab.gw.is_running(), "vpngw exited:\n{}", lab.gw.log_tail(30));
    Ok(lab)
}

fn report_loss(lab: &Lab, phase: &str, ah: &LoadReport, ha: &LoadReport) {
    // When the lost datagrams were sent (seconds into the load).
    let windows = |r: &LoadReport| {
        r.loss_windows()
            .iter()
            .filter(|w| w.what == "UDP")
            .map(|w| format!("{} at {:.2}-{:.2} s", w.packets, w.from_s, w.to_s))
            .collect::<Vec<_>>()
            .join(", ")
    };
    lab.say(format!("{phase}: UDP lost site A -> H [{}], H -> site A [{}]", windows(ah), windows(ha)));
    lab.say(format!(
        "{phase}: site A -> H: UDP {} of {} lost (longest gap {} ms), ping {} of {} lost; \
         H -> site A: UDP {} of {} lost (longest gap {} ms), ping {} of {} lost",
        ah.udp.lost(),
        ah.udp.sent,
        ah.udp.longest_gap_ms,
        ah.ping.lost(),
        ah.ping.transmitted,
        ha.udp.lost(),
        ha.udp.sent,
        ha.udp.longest_gap_ms,
        ha.ping.lost(),
        ha.ping.transmitted
    ));
}

/// b1 comes back: a fresh namespace, charon initiating (as a restarted peer does), and
/// H's route through it once its CHILD SA is up.
fn revive_b1(lab: &mut Lab, topo: &mut TwoPeers) -> Result<()> {
    lab.b1.stop();
    topo.replace_b1()?;
    lab.b1_starts += 1;
    let dir = lab.dir.join(format!("b1-{}", lab.b1_starts));
    lab.b1 = StrongSwan::start(&topo.b1, &swan_config(tp::B1_WAN, ID_B1, true), &dir)?;
    lab.b1.wait_child_sa(SA_TIMEOUT)?;
    lab.wait_installed(PRIMARY)?;
    topo.add_route_via_b1()?;
    lab.say("b1 is back: its CHILD SA is up, H routes through it again");
    Ok(())
}

#[test]
fn failover_under_load_and_failback() {
    let name = "failover_under_load_and_failback";
    run_lab(name, |topo, dir| {
        let mut lab = fail_over(name, topo, dir, true)?;

        // b1 comes back; with failback the traffic returns to aws-1.
        let mut loads = Loads::start(topo, dir, "failback", 12.0)?;
        let skip = lab.events_seen();
        revive_b1(&mut lab, topo)?;
        let ev = lab.wait_failover(skip, PRIMARY)?;
        lab.say(format!("failback event: {}", ev.message));
        lab.wait_states("active", "standby", true)?;
        lab.wait_carried(PRIMARY, "the failback")?;
        // Sealing stopped on aws-2: two reads a quarter second apart show the same count.
        let s1 = lab.packets(STANDBY)?;
        std::thread::sleep(Duration::from_millis(250));
        let s2 = lab.packets(STANDBY)?;
        ensure!(s2.0 == s1.0, "{STANDBY} still seals after the failback: {} -> {}", s1.0, s2.0);
        loads.ensure_running("the traffic returned to aws-1")?;
        let (ah, ha) = loads.finish()?;
        report_loss(&lab, "failback", &ah, &ha);
        let bound = (udp_pps() * 0.2) as u64;
        ensure!(
            ah.udp.lost() <= bound && ha.udp.lost() <= bound,
            "the failback lost more than 0.2 s worth ({bound}) of datagrams: A -> H {ah}; H -> A {ha}"
        );
        lab.finish()
    });
}

#[test]
fn recovered_primary_stays_standby_without_failback() {
    let name = "recovered_primary_stays_standby_without_failback";
    run_lab(name, |topo, dir| {
        let mut lab = fail_over(name, topo, dir, false)?;
        let skip = lab.events_seen();
        revive_b1(&mut lab, topo)?;
        lab.wait_states("standby", "active", false)?;
        // Traffic keeps to aws-2: a second of pings and datagrams each way.
        let (p0, s0) = (lab.packets(PRIMARY)?, lab.packets(STANDBY)?);
        let loads = Loads::start(topo, dir, "stay", 2.0)?;
        let (ah, ha) = loads.finish()?;
        let (p1, s1) = (lab.packets(PRIMARY)?, lab.packets(STANDBY)?);
        report_loss(&lab, "primary back, no failback", &ah, &ha);
        ensure!(p1.0 == p0.0, "{PRIMARY} sealed {} packets although failback is off", p1.0 - p0.0);
        ensure!(s1.0 >= s0.0 + ah.udp.sent, "{STANDBY} did not seal the load: {} -> {}", s0.0, s1.0);
        ensure!(ah.udp.lost() == 0, "traffic was lost while nothing changed: {ah}");
        let moved: Vec<_> = lab.watch.events().into_iter().skip(skip).filter(|e| e.kind == "failover").collect();
        ensure!(moved.is_empty(), "failover events although failback is off: {moved:?}");
        lab.wait_states("standby", "active", false)?;
        lab.finish()
    });
}

#[test]
fn esp_from_the_active_peer_keeps_it_alive_while_its_ike_is_held() {
    let name = "esp_from_the_active_peer_keeps_it_alive_while_its_ike_is_held";
    run_lab(name, |topo, dir| {
        let mut lab = Lab::start(name, topo, dir, false)?;
        lab.wait_states("active", "standby", false)?;
        // The load outlasts the hold by several seconds, however slow the setup is.
        let mut loads = Loads::start(topo, dir, "held", (DPD_TIMEOUT_S + 12) as f64)?;
        check_traffic_on_primary(&lab)?;

        // b1 stays alive and keeps sending ESP (H's datagrams), but hears no IKE request
        // from vpngw any more. ESP counts as liveness, so vpngw has no reason to check on
        // b1; any check it sends (after a pause in the ESP) goes unanswered.
        let skip = lab.events_seen();
        let hold = IkeHold::inbound(&topo.b1, tp::GW_A_WAN, Held::Requests, dir)?;
        let first_dropped = std::time::Instant::now();
        // Nothing can be heard of IKE for longer than dpd_timeout (plus the 1 s of ESP
        // accounting); ESP keeps arriving all along, so the peer is not dead.
        std::thread::sleep(Duration::from_secs(DPD_TIMEOUT_S + 2));
        let dropped = hold.release()?;
        loads.ensure_running("the hold was released")?;
        let moved: Vec<_> = lab
            .watch
            .events()
            .into_iter()
            .skip(skip)
            .filter(|e| e.kind == "dpd_failed" || e.kind == "failover" || e.kind == "ike_down")
            .collect();
        lab.say(format!(
            "IKE requests to b1 held for {:.1} s ({dropped} dropped) while its ESP flowed; events: {moved:?}",
            first_dropped.elapsed().as_secs_f64()
        ));
        let (ah, ha) = loads.finish()?;
        report_loss(&lab, "IKE held", &ah, &ha);
        lab.checks.check((|| {
            ensure!(moved.is_empty(), "{PRIMARY}'s peer was declared dead although its ESP kept arriving: {moved:?}");
            ensure!(ah.udp.lost() == 0 && ha.udp.lost() == 0, "traffic was lost while b1 was alive: {ah}; {ha}");
            Ok(())
        })());
        lab.finish()
    });
}
