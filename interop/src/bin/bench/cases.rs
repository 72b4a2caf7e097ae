//! The benchmark cases and how each one brings the path lanA -> lanB up on a fresh
//! topology: plain routes, strongSwan pair, vpngw pair with the default configuration
//! (ESP-in-UDP, agreed between two vpngw), with raw ESP and with ESP-in-UDP forced,
//! vpngw (A) with strongSwan (B); then a strongSwan pair and a vpngw pair
//! (ESP-in-UDP) for each AES-CBC + HMAC suite, each compared with its own strongSwan pair.
//!
//! Owns: starting the gateways of a case and knowing which PIDs do its packet work.
//! Does not own: the topology (the caller builds and drops it, after the [`Gateways`]),
//! nor measuring.

use std::path::{Path, PathBuf};
use std::time::Duration;

use interop::netns::{self, Topology};
use interop::scenario::{self, SA_TIMEOUT};
use interop::strongswan::StrongSwan;
use interop::vpngw::{self, Encap, Start, Vpngw};
use interop::{Binaries, Error, Result};

use super::interrupt;

/// One benchmark case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// Routing between the sites without a tunnel: the ceiling.
    Plain,
    /// strongSwan <-> strongSwan (kernel-libipsec): the anchor.
    StrongSwan,
    /// vpngw <-> vpngw with the default `encapsulation = "auto"`: ESP-in-UDP, which two
    /// vpngw agree on (their Vendor IDs) although no NAT is between them.
    Vpngw,
    /// vpngw <-> vpngw with `encapsulation = "raw"`: raw ESP (IP protocol 50).
    VpngwRaw,
    /// vpngw <-> vpngw with `encapsulation = "udp"`: ESP-in-UDP, the framing strongSwan
    /// uses here (like for like), and the one the datapath's UDP GSO/GRO applies to.
    VpngwUdp,
    /// vpngw on site A (initiator) <-> strongSwan on site B (responder).
    Mixed,
    /// strongSwan <-> strongSwan with ESP `aes128-sha1`: the anchor of that suite.
    StrongSwanAes128Sha1,
    /// vpngw <-> vpngw, ESP-in-UDP, ESP `aes128-sha1`.
    VpngwUdpAes128Sha1,
    /// strongSwan <-> strongSwan with ESP `aes256-sha256`: the anchor of that suite.
    StrongSwanAes256Sha256,
    /// vpngw <-> vpngw, ESP-in-UDP, ESP `aes256-sha256`.
    VpngwUdpAes256Sha256,
}

impl Case {
    /// All cases, in run order.
    pub const ALL: [Case; 10] = [
        Case::Plain,
        Case::StrongSwan,
        Case::Vpngw,
        Case::VpngwRaw,
        Case::VpngwUdp,
        Case::Mixed,
        Case::StrongSwanAes128Sha1,
        Case::VpngwUdpAes128Sha1,
        Case::StrongSwanAes256Sha256,
        Case::VpngwUdpAes256Sha256,
    ];

    /// The name used by `--only` and in the JSON.
    pub fn key(self) -> &'static str {
        match self {
            Case::Plain => "plain",
            Case::StrongSwan => "strongswan",
            Case::Vpngw => "vpngw",
            Case::VpngwRaw => "vpngw-raw",
            Case::VpngwUdp => "vpngw-udp",
            Case::Mixed => "mixed",
            Case::StrongSwanAes128Sha1 => "strongswan-aes128-sha1",
            Case::VpngwUdpAes128Sha1 => "vpngw-udp-aes128-sha1",
            Case::StrongSwanAes256Sha256 => "strongswan-aes256-sha256",
            Case::VpngwUdpAes256Sha256 => "vpngw-udp-aes256-sha256",
        }
    }

    /// A human label for the table.
    pub fn label(self) -> &'static str {
        match self {
            Case::Plain => "plain routing (no tunnel)",
            Case::StrongSwan => "strongSwan <-> strongSwan",
            Case::Vpngw => "vpngw <-> vpngw (default config)",
            Case::VpngwRaw => "vpngw <-> vpngw (raw ESP)",
            Case::VpngwUdp => "vpngw <-> vpngw (ESP-in-UDP)",
            Case::Mixed => "vpngw <-> strongSwan",
            Case::StrongSwanAes128Sha1 => "strongSwan <-> strongSwan, aes128-sha1",
            Case::VpngwUdpAes128Sha1 => "vpngw <-> vpngw (ESP-in-UDP), aes128-sha1",
            Case::StrongSwanAes256Sha256 => "strongSwan <-> strongSwan, aes256-sha256",
            Case::VpngwUdpAes256Sha256 => "vpngw <-> vpngw (ESP-in-UDP), aes256-sha256",
        }
    }

    /// The ESP proposal of both gateways: `aes256gcm16` (the scenario default) unless the
    /// case names a suite.
    pub fn esp_proposal(self) -> &'static str {
        match self {
            Case::StrongSwanAes128Sha1 | Case::VpngwUdpAes128Sha1 => "aes128-sha1",
            Case::StrongSwanAes256Sha256 | Case::VpngwUdpAes256Sha256 => "aes256-sha256",
            _ => scenario::ESP_PROPOSAL,
        }
    }

    /// The strongSwan pair this case's ratios are taken against: the one with the same
    /// ESP suite (itself for a strongSwan pair).
    pub fn anchor(self) -> Case {
        match self {
            Case::StrongSwanAes128Sha1 | Case::VpngwUdpAes128Sha1 => Case::StrongSwanAes128Sha1,
            Case::StrongSwanAes256Sha256 | Case::VpngwUdpAes256Sha256 => Case::StrongSwanAes256Sha256,
            _ => Case::StrongSwan,
        }
    }

    /// Parses a `--only` name.
    pub fn parse(s: &str) -> Option<Case> {
        Case::ALL.into_iter().find(|c| c.key() == s)
    }

    /// True if the case also floods UDP the other way (lanB -> lanA): in `mixed` that is
    /// strongSwan sealing and vpngw opening, the direction the forward run does not show.
    pub fn udp_both_ways(self) -> bool {
        self == Case::Mixed
    }

    /// True if the case runs vpngw.
    pub fn needs_vpngw(self) -> bool {
        matches!(
            self,
            Case::Vpngw
                | Case::VpngwRaw
                | Case::VpngwUdp
                | Case::Mixed
                | Case::VpngwUdpAes128Sha1
                | Case::VpngwUdpAes256Sha256
        )
    }

    /// The `encapsulation` setting of the case's vpngw configs (`None`: no vpngw).
    pub fn vpngw_encap(self) -> Option<Encap> {
        match self {
            Case::Plain | Case::StrongSwan | Case::StrongSwanAes128Sha1 | Case::StrongSwanAes256Sha256 => None,
            // In `mixed` strongSwan floats to ESP-in-UDP anyway (see docs/benchmark.md).
            Case::Vpngw | Case::Mixed => Some(Encap::Auto),
            Case::VpngwRaw => Some(Encap::Raw),
            Case::VpngwUdp | Case::VpngwUdpAes128Sha1 | Case::VpngwUdpAes256Sha256 => Some(Encap::Udp),
        }
    }

    /// True if the case runs charon.
    pub fn needs_strongswan(self) -> bool {
        matches!(self, Case::StrongSwan | Case::Mixed | Case::StrongSwanAes128Sha1 | Case::StrongSwanAes256Sha256)
    }
}

/// A process doing the gateway work of a case.
#[derive(Clone, Debug)]
pub struct GatewayProc {
    /// `vpngw` or `charon`.
    pub kind: &'static str,
    /// `A` or `B`.
    pub site: &'static str,
    /// Its PID.
    pub pid: u32,
}

/// The running gateways of a case; dropping stops them (by PID). Drop before the topology.
pub struct Gateways {
    // Guards, dropped (stopped) with this value.
    swans: Vec<StrongSwan>,
    vpngws: Vec<Vpngw>,
    /// Processes whose CPU time is the case's gateway cost.
    pub procs: Vec<GatewayProc>,
    /// What the SAs look like (encapsulation, algorithms), for the report.
    pub sa_info: Vec<String>,
}

impl Gateways {
    fn none() -> Self {
        Self { swans: Vec::new(), vpngws: Vec::new(), procs: Vec::new(), sa_info: Vec::new() }
    }

    /// The gateway PIDs.
    pub fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(|p| p.pid).collect()
    }

    /// `Err` if a daemon has exited (it would make the numbers meaningless).
    pub fn check_alive(&mut self) -> Result<()> {
        for s in &mut self.swans {
            if !s.is_running() {
                return Err(Error::new(format!("charon {} exited:\n{}", s.pid(), s.diagnostics())));
            }
        }
        for v in &mut self.vpngws {
            if !v.is_running() {
                return Err(Error::new(format!("vpngw {} exited:\n{}", v.pid(), v.log_tail(30))));
            }
        }
        Ok(())
    }

    /// Current SA state of every daemon (after the runs: byte counters, rekeys).
    pub fn sa_state(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.swans {
            out.push(s.list_sas().unwrap_or_else(|e| e.to_string()));
        }
        for v in &self.vpngws {
            out.push(v.status_text().unwrap_or_else(|e| e.to_string()));
        }
        out
    }

    fn add_swan(&mut self, site: &'static str, swan: StrongSwan) {
        self.procs.push(GatewayProc { kind: "charon", site, pid: swan.pid() });
        self.swans.push(swan);
    }

    fn add_vpngw(&mut self, site: &'static str, gw: Vpngw) {
        self.procs.push(GatewayProc { kind: "vpngw", site, pid: gw.pid() });
        self.vpngws.push(gw);
    }
}

/// The vpngw and vpnctl binaries (nettool is not needed by the bench).
pub fn vpngw_binaries() -> Result<Binaries> {
    Binaries::locate(PathBuf::new())
}

/// Brings up `case` on `topo` (configs and logs under `dir`) and returns its running
/// gateways once a CHILD SA is installed on both sides. The path may still need a moment
/// before it carries traffic (the caller pings until it does).
pub fn setup(case: Case, topo: &Topology, dir: &Path, bins: Option<&Binaries>) -> Result<Gateways> {
    let mut gws = Gateways::none();
    let bins = || bins.ok_or_else(|| Error::new("vpngw binaries not available"));
    match case {
        Case::Plain => {
            // Each gateway routes the far LAN via the other's WAN address.
            topo.gw_a.ip(&["route", "add", netns::LAN_B_NET, "via", netns::GW_B_WAN])?;
            topo.gw_b.ip(&["route", "add", netns::LAN_A_NET, "via", netns::GW_A_WAN])?;
        }
        Case::StrongSwan | Case::StrongSwanAes128Sha1 | Case::StrongSwanAes256Sha256 => {
            let swan = |initiate: bool| {
                let mut c = if initiate { scenario::swan_site_a(true) } else { scenario::swan_site_b(false) };
                case.esp_proposal().clone_into(&mut c.esp_proposal);
                c
            };
            // Responder first, so the initiator's first IKE_SA_INIT finds it listening.
            let b = StrongSwan::start(&topo.gw_b, &swan(false), &sub(dir, "charon-b"))?;
            gws.add_swan("B", b);
            interrupt::check()?;
            let a = StrongSwan::start(&topo.gw_a, &swan(true), &sub(dir, "charon-a"))?;
            gws.add_swan("A", a);
            wait_swans(&mut gws)?;
        }
        Case::Vpngw | Case::VpngwRaw | Case::VpngwUdp | Case::VpngwUdpAes128Sha1 | Case::VpngwUdpAes256Sha256 => {
            let bins = bins()?;
            let encap = case.vpngw_encap().unwrap_or(Encap::Auto);
            let site = |initiate: bool| {
                let mut c = if initiate {
                    scenario::vpngw_site_a(Start::Initiate, encap)
                } else {
                    scenario::vpngw_site_b(Start::Respond, encap)
                };
                c.tunnels[0].esp_proposals = vec![case.esp_proposal().to_owned()];
                c
            };
            let b = Vpngw::start(&topo.gw_b, &site(false), &sub(dir, "vpngw-b"), bins)?;
            gws.add_vpngw("B", b);
            interrupt::check()?;
            let a = Vpngw::start(&topo.gw_a, &site(true), &sub(dir, "vpngw-a"), bins)?;
            gws.add_vpngw("A", a);
            wait_vpngws(&mut gws)?;
        }
        Case::Mixed => {
            let bins = bins()?;
            let b = StrongSwan::start(&topo.gw_b, &scenario::swan_site_b(false), &sub(dir, "charon-b"))?;
            gws.add_swan("B", b);
            interrupt::check()?;
            let a = Vpngw::start(
                &topo.gw_a,
                &scenario::vpngw_site_a(Start::Initiate, case.vpngw_encap().unwrap_or(Encap::Auto)),
                &sub(dir, "vpngw-a"),
                bins,
            )?;
            gws.add_vpngw("A", a);
            wait_vpngws(&mut gws)?;
            wait_swans(&mut gws)?;
        }
    }
    interrupt::check()?;
    Ok(gws)
}

fn sub(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// Waits for an installed CHILD_SA on every charon; records its SA line.
fn wait_swans(gws: &mut Gateways) -> Result<()> {
    for s in &mut gws.swans {
        interrupt::check()?;
        let sas = s.wait_child_sa(SA_TIMEOUT)?;
        if let Some(line) = sas.lines().find(|l| l.contains("INSTALLED")) {
            gws.sa_info.push(format!("charon: {}", line.trim()));
        }
    }
    Ok(())
}

/// Waits for an installed CHILD SA on every vpngw; records its encapsulation.
fn wait_vpngws(gws: &mut Gateways) -> Result<()> {
    for v in &mut gws.vpngws {
        interrupt::check()?;
        let st = v.wait_child_sa(SA_TIMEOUT)?;
        let encap: Vec<String> = vpngw::child_sas(&st)
            .iter()
            .filter_map(|c| serde_json::to_value(&c.encapsulation).ok().map(|e| format!("{} {e}", c.encr)))
            .collect();
        gws.sa_info.push(format!("vpngw: child SA installed, {}", encap.join(", ")));
    }
    Ok(())
}

/// How long the path may take to carry traffic after the SAs are installed.
pub const REACH_TIMEOUT: Duration = Duration::from_secs(20);
