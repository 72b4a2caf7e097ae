//! The scaffolding every interop scenario shares: a work directory for configs, logs and
//! captures (removed on success, kept and printed on failure), a fresh topology, the
//! standard site configs for vpngw and strongSwan, and the checks that prove a tunnel
//! carries traffic and that the WAN carries only ESP.
//!
//! Does not own: the scenarios themselves (`tests/scenarios.rs`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::capture::{Capture, Pcap, WanSummary};
use crate::netns::{self, Topology, WAN_IF};
use crate::strongswan::{SwanConfig, SwanTimers};
use crate::traffic::{self, PingStats, Transfer};
use crate::vpngw::{Encap, GatewayConfig, Lifetimes, Start, TunnelConfig};
use crate::{ensure, read_text, tail, Result};
use testkit::Need;

/// The PSK both sites share in the passing scenarios.
pub const PSK: &str = "interop-test-psk-0123456789abcdef";
/// IKE proposal both sites use unless a scenario says otherwise.
pub const IKE_PROPOSAL: &str = "aes256gcm16-prfsha256-x25519";
/// ESP proposal both sites use unless a scenario says otherwise.
pub const ESP_PROPOSAL: &str = "aes256gcm16";
/// Site A's IKE identity.
pub const ID_A: &str = "gw-a.example.net";
/// Site B's IKE identity.
pub const ID_B: &str = "gw-b.example.net";
/// Size of the verified TCP transfer (10 MiB).
pub const TRANSFER_BYTES: u64 = 10 * 1024 * 1024;
/// How long an SA may take to come up.
pub const SA_TIMEOUT: Duration = Duration::from_secs(30);

/// Which ESP framing the WAN must show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WanExpect {
    /// Raw ESP (protocol 50) and no ESP-in-UDP.
    RawEsp,
    /// ESP-in-UDP on port 4500 and no raw ESP.
    EspInUdp,
    /// No ESP at all (no tunnel should exist).
    NoEsp,
}

/// One scenario's topology and work directory (kept after the run if it failed or if
/// `VG_KEEP_LOGS` is set).
pub struct Scenario {
    /// Scenario name (used in messages and the work directory name).
    pub name: String,
    /// Configs, logs and captures of this run.
    pub dir: PathBuf,
    /// The four namespaces.
    pub topo: Topology,
    keep: bool,
}

impl Scenario {
    /// A fresh uniquely-named topology and work directory.
    pub fn new(name: &str) -> Result<Self> {
        Self::with_topology(name, Topology::create)
    }

    /// [`Scenario::new`] with the topology built by `build` from a fresh unique prefix
    /// (e.g. [`Topology::create_v6_wan`]).
    pub fn with_topology(name: &str, build: impl FnOnce(&str) -> Result<Topology>) -> Result<Self> {
        let id = crate::unique_id();
        let dir = std::env::temp_dir().join(format!("vg-interop-{name}-{id}"));
        std::fs::create_dir_all(&dir)?;
        let topo = match build(&format!("vg{id}")) {
            Ok(t) => t,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        Ok(Self { name: name.to_owned(), dir, topo, keep: false })
    }

    /// A subdirectory of the work directory (for one daemon's files).
    pub fn subdir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Starts a capture on gateway A's WAN interface.
    pub fn capture_wan(&self) -> Result<Capture> {
        Capture::start(&self.topo.gw_a, WAN_IF, &self.dir, "wan")
    }

    /// Pings both ways (5 from lanA to lanB, 3 back); `Err` unless every reply arrives.
    pub fn ping_both_ways(&self) -> Result<(PingStats, PingStats)> {
        self.ping_hosts_both_ways(netns::LAN_B_HOST, netns::LAN_A_HOST)
    }

    /// [`Scenario::ping_both_ways`] to the given addresses of lanB and lanA (e.g. their
    /// IPv6 addresses).
    pub fn ping_hosts_both_ways(&self, lan_b_host: &str, lan_a_host: &str) -> Result<(PingStats, PingStats)> {
        let ab = traffic::ping(&self.topo.lan_a, lan_b_host, 5)?;
        let ba = traffic::ping(&self.topo.lan_b, lan_a_host, 3)?;
        ensure!(
            ab.received == ab.transmitted && ba.received == ba.transmitted,
            "ping across the tunnel lost replies: lanA->lanB {ab:?}, lanB->lanA {ba:?}\n{}",
            self.topo.describe()
        );
        Ok((ab, ba))
    }

    /// `Err` if any ping from lanA reaches lanB (used when no tunnel may exist).
    pub fn ping_fails(&self) -> Result<PingStats> {
        let st = traffic::ping(&self.topo.lan_a, netns::LAN_B_HOST, 3)?;
        ensure!(st.received == 0, "ping crossed although no CHILD SA should exist: {st:?}");
        Ok(st)
    }

    /// Sends [`TRANSFER_BYTES`] over TCP from lanA to lanB and checks length and SHA-256.
    pub fn transfer(&self, nettool: &Path) -> Result<Transfer> {
        self.transfer_to(nettool, netns::LAN_B_HOST, 5001)
    }

    /// [`Scenario::transfer`] to the given address of lanB (e.g. its IPv6 address) and port.
    pub fn transfer_to(&self, nettool: &Path, lan_b_host: &str, port: u16) -> Result<Transfer> {
        let t = traffic::tcp_transfer(
            nettool,
            &self.topo.lan_b,
            lan_b_host,
            &self.topo.lan_a,
            port,
            TRANSFER_BYTES,
            &self.dir,
            Duration::from_secs(180),
        )?;
        ensure!(t.bytes == TRANSFER_BYTES, "receiver of {lan_b_host} got {} bytes, expected {TRANSFER_BYTES}", t.bytes);
        Ok(t)
    }

    /// Pings both ways and transfers; prints what crossed.
    pub fn prove_traffic(&self, nettool: &Path) -> Result<()> {
        let (ab, ba) = self.ping_both_ways()?;
        let t = self.transfer(nettool)?;
        let secs = t.elapsed.as_secs_f64().max(1e-3);
        println!(
            "[{}] ping lanA->lanB {}/{}, lanB->lanA {}/{}; TCP {} bytes in {:.2} s ({:.0} Mbit/s), sha256 {} matches",
            self.name,
            ab.received,
            ab.transmitted,
            ba.received,
            ba.transmitted,
            t.bytes,
            secs,
            t.bytes as f64 * 8.0 / secs / 1e6,
            t.sha256
        );
        Ok(())
    }

    /// Stops the capture and checks the WAN: every packet captured (no kernel drops), never
    /// cleartext between the LANs, and the expected kind of ESP.
    pub fn check_wan(&self, capture: Capture, expect: WanExpect) -> Result<WanSummary> {
        self.check_wan_pcap(capture, expect).map(|(s, _)| s)
    }

    /// [`Scenario::check_wan`], also handing back the pcap for further counts.
    pub fn check_wan_pcap(&self, capture: Capture, expect: WanExpect) -> Result<(WanSummary, Pcap)> {
        let pcap: Pcap = capture.stop()?;
        let s = pcap.summary()?;
        println!("[{}] {s}", self.name);
        ensure!(
            s.missed == 0,
            "the WAN capture missed {} packets, so it cannot prove the absence of cleartext",
            s.missed
        );
        ensure!(s.clear == 0, "cleartext LAN<->LAN packets on the WAN ({s}):\n{}", pcap.clear_sample());
        match expect {
            WanExpect::RawEsp => {
                ensure!(s.esp > 0, "no raw ESP on the WAN ({s})");
                ensure!(s.esp_in_udp == 0, "ESP-in-UDP on the WAN although raw ESP was expected ({s})");
            }
            WanExpect::EspInUdp => {
                ensure!(s.esp_in_udp > 0, "no ESP-in-UDP on the WAN ({s})");
                ensure!(s.esp == 0, "raw ESP on the WAN although ESP-in-UDP was expected ({s})");
            }
            WanExpect::NoEsp => ensure!(s.esp + s.esp_in_udp == 0, "ESP on the WAN without a tunnel ({s})"),
        }
        Ok((s, pcap))
    }

    /// Logs and captures of this scenario are kept (and their path printed) when it ends.
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if self.keep || std::thread::panicking() || std::env::var_os("VG_KEEP_LOGS").is_some() {
            eprintln!("[{}] logs, configs and captures kept in {}", self.name, self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Every failed check of a run, so one run reports all of them.
#[derive(Default)]
pub struct Checks(Vec<String>);

impl Checks {
    /// Records `r`'s error, if any.
    pub fn check(&mut self, r: Result<()>) {
        if let Err(e) = r {
            self.0.push(e.to_string());
        }
    }

    /// The failures so far.
    pub fn failures(&self) -> &[String] {
        &self.0
    }

    /// `Ok` if every check passed, else one error listing every failure.
    pub fn finish(self) -> Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        Err(crate::Error::new(format!("{} check(s) failed:\n- {}", self.0.len(), self.0.join("\n- "))))
    }
}

/// Runs one scenario: unless root with `ip` at hand it is skipped by `testkit`'s rule
/// (`SKIPPED <name>: <reason>`, or a failure under `CI=true`); on `Err` keeps the work
/// directory, prints the tails of every log in it, and panics so the test fails.
pub fn run_scenario(name: &str, body: impl FnOnce(&Scenario) -> Result<()>) {
    run_scenario_on(name, Topology::create, body);
}

/// [`run_scenario`] on the topology `build` makes (see [`Scenario::with_topology`]).
pub fn run_scenario_on(
    name: &str,
    build: impl FnOnce(&str) -> Result<Topology>,
    body: impl FnOnce(&Scenario) -> Result<()>,
) {
    if !testkit::require(name, &[Need::Root, Need::Command("ip")]) {
        return;
    }
    let mut sc =
        Scenario::with_topology(name, build).unwrap_or_else(|e| panic!("{name}: cannot build the topology: {e}"));
    // Daemons and captures live inside `body`, so they are stopped when it returns.
    let result = body(&sc);
    if let Err(e) = result {
        sc.keep();
        let logs = log_tails(&sc.dir);
        let dir = sc.dir.display().to_string();
        drop(sc);
        panic!("{name} FAILED: {e}\n\n{logs}\nlogs kept in {dir}");
    }
    println!("[{name}] PASSED");
}

/// The last lines of every `*.log` (and charon's log) below `dir`.
pub fn log_tails(dir: &Path) -> String {
    let mut out = String::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "log") {
                out.push_str(&format!("--- {} ---\n{}\n", p.display(), tail(&read_text(&p), 25)));
            }
        }
    }
    out
}

/// Site A's vpngw config (WAN 192.0.2.1, protects 10.1.0.0/24).
pub fn vpngw_site_a(start: Start, encapsulation: Encap) -> GatewayConfig {
    vpngw_site(netns::GW_A_WAN, netns::GW_B_WAN, ID_A, ID_B, netns::LAN_A_NET, netns::LAN_B_NET, start, encapsulation)
}

/// Site B's vpngw config (WAN 192.0.2.2, protects 10.2.0.0/24).
pub fn vpngw_site_b(start: Start, encapsulation: Encap) -> GatewayConfig {
    vpngw_site(netns::GW_B_WAN, netns::GW_A_WAN, ID_B, ID_A, netns::LAN_B_NET, netns::LAN_A_NET, start, encapsulation)
}

#[allow(clippy::too_many_arguments)] // a private helper mirroring the two sites
fn vpngw_site(
    local: &str,
    remote: &str,
    local_id: &str,
    remote_id: &str,
    local_net: &str,
    remote_net: &str,
    start: Start,
    encapsulation: Encap,
) -> GatewayConfig {
    GatewayConfig {
        local_address: local.into(),
        tun_name: "vpn0".into(),
        env: Vec::new(),
        gateway_extra: Vec::new(),
        tunnels: vec![TunnelConfig {
            name: "peer".into(),
            remote_address: remote.into(),
            local_id: local_id.into(),
            remote_id: remote_id.into(),
            psk: PSK.into(),
            local_subnets: vec![local_net.into()],
            remote_subnets: vec![remote_net.into()],
            start,
            ike_proposals: vec![IKE_PROPOSAL.into()],
            esp_proposals: vec![ESP_PROPOSAL.into()],
            encapsulation,
            lifetimes: Lifetimes::default(),
            extra: Vec::new(),
            child_sa_per_subnet_pair: false,
            ike_version: None,
        }],
    }
}

/// Site A's strongSwan config.
pub fn swan_site_a(initiate: bool) -> SwanConfig {
    SwanConfig {
        local_addr: netns::GW_A_WAN.into(),
        remote_addr: netns::GW_B_WAN.into(),
        local_id: ID_A.into(),
        remote_id: ID_B.into(),
        psk: PSK.into(),
        local_ts: netns::LAN_A_NET.into(),
        remote_ts: netns::LAN_B_NET.into(),
        ike_proposal: IKE_PROPOSAL.into(),
        esp_proposal: ESP_PROPOSAL.into(),
        initiate,
        version: 2,
        timers: SwanTimers::default(),
    }
}

/// Site B's strongSwan config.
pub fn swan_site_b(initiate: bool) -> SwanConfig {
    SwanConfig {
        local_addr: netns::GW_B_WAN.into(),
        remote_addr: netns::GW_A_WAN.into(),
        local_id: ID_B.into(),
        remote_id: ID_A.into(),
        local_ts: netns::LAN_B_NET.into(),
        remote_ts: netns::LAN_A_NET.into(),
        ..swan_site_a(initiate)
    }
}

/// True if `log` mentions the IKE notify `name` (e.g. `AUTHENTICATION_FAILED`), in its
/// IANA spelling or with spaces, case-insensitively.
pub fn log_mentions(log: &str, name: &str) -> bool {
    let log = log.to_ascii_lowercase();
    let name = name.to_ascii_lowercase();
    log.contains(&name) || log.contains(&name.replace('_', " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_mentions_accepts_iana_and_prose_spelling() {
        assert!(log_mentions("WARN peer sent AUTHENTICATION_FAILED", "AUTHENTICATION_FAILED"));
        assert!(log_mentions("error: Authentication failed for gw-a", "AUTHENTICATION_FAILED"));
        assert!(!log_mentions("auth ok", "AUTHENTICATION_FAILED"));
    }

    #[test]
    fn site_configs_mirror_each_other() {
        let a = vpngw_site_a(Start::Initiate, Encap::Auto);
        let b = vpngw_site_b(Start::Respond, Encap::Auto);
        let (ta, tb) = (&a.tunnels[0], &b.tunnels[0]);
        assert_eq!(a.local_address, tb.remote_address);
        assert_eq!(b.local_address, ta.remote_address);
        assert_eq!(ta.local_subnets, tb.remote_subnets);
        assert_eq!(ta.local_id, tb.remote_id);
        let (sa, sb) = (swan_site_a(true), swan_site_b(false));
        assert_eq!(sa.local_ts, sb.remote_ts);
        assert_eq!(sa.local_id, sb.remote_id);
        assert!(sa.initiate && !sb.initiate);
    }
}
