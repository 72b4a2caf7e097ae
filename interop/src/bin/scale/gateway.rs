//! The gateway under test, vpngw or strongSwan's charon, with the N responder tunnels of
//! [`super::tunnels`], and what can be asked of either: its PID, whether it still runs,
//! how many IKE SAs are established and CHILD SAs installed, and its own counters.
//!
//! Owns: starting each daemon with the scale config (charon: loaded first with tunnel 0
//! by `StrongSwan::start`, then the full swanctl.conf with `swanctl --load-all --clear`).

use std::path::Path;
use std::time::Instant;

use gateway::control::proto::StatusReport;
use interop::strongswan::{self, StrongSwan};
use interop::vpngw::{self, Vpngw};
use interop::{run, Binaries, Error, Result};
use serde_json::{json, Value};

use super::topo::ScaleTopo;
use super::tunnels;

/// Which daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// vpngw.
    Vpngw,
    /// charon 5.9 with kernel-libipsec.
    StrongSwan,
}

impl Kind {
    /// Both, in the order they run.
    pub const ALL: [Kind; 2] = [Kind::Vpngw, Kind::StrongSwan];

    /// Command-line and JSON name.
    pub fn key(self) -> &'static str {
        match self {
            Self::Vpngw => "vpngw",
            Self::StrongSwan => "strongswan",
        }
    }

    /// From [`Kind::key`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.key() == s)
    }
}

/// A running gateway daemon; dropping it stops the daemon by PID.
pub enum Gateway {
    /// vpngw.
    Vpngw(Vpngw),
    /// charon.
    StrongSwan(StrongSwan),
}

/// SA counts as the daemon reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// IKE SAs in state ESTABLISHED.
    pub ike_established: usize,
    /// CHILD SAs in state INSTALLED.
    pub children_installed: usize,
    /// IKE SAs in any state.
    pub ike_total: usize,
}

impl Gateway {
    /// Starts `kind` in the gateway namespace with `n` tunnels (files under `dir`);
    /// returns it and how long loading the configuration took.
    pub fn start(
        kind: Kind,
        topo: &ScaleTopo,
        dir: &Path,
        seed: &str,
        n: usize,
        bins: Option<&Binaries>,
    ) -> Result<(Self, f64)> {
        let t0 = Instant::now();
        match kind {
            Kind::Vpngw => {
                let bins = bins.ok_or_else(|| Error::new("vpngw binaries not available"))?;
                let gw = Vpngw::start(&topo.gw, &tunnels::vpngw_config(seed, n), dir, bins)?;
                Ok((Self::Vpngw(gw), t0.elapsed().as_secs_f64()))
            }
            Kind::StrongSwan => {
                let swan = StrongSwan::start(&topo.gw, &tunnels::swan_first(seed), dir)?;
                std::fs::write(dir.join("swanctl/swanctl.conf"), tunnels::swanctl_conf(seed, n))?;
                run(&mut swan.swanctl(&["--load-all", "--clear"]))
                    .map_err(|e| Error::new(format!("{e}\n{}", swan.diagnostics())))?;
                Ok((Self::StrongSwan(swan), t0.elapsed().as_secs_f64()))
            }
        }
    }

    /// The daemon's PID.
    pub fn pid(&self) -> u32 {
        match self {
            Self::Vpngw(g) => g.pid(),
            Self::StrongSwan(s) => s.pid(),
        }
    }

    /// True while it runs.
    pub fn is_running(&mut self) -> bool {
        match self {
            Self::Vpngw(g) => g.is_running(),
            Self::StrongSwan(s) => s.is_running(),
        }
    }

    /// The tail of its log, for errors.
    pub fn diagnostics(&self) -> String {
        match self {
            Self::Vpngw(g) => g.log_tail(30),
            Self::StrongSwan(s) => s.diagnostics(),
        }
    }

    /// SA counts (`vpnctl status --json` / `swanctl --list-sas`).
    pub fn counts(&self) -> Result<Counts> {
        match self {
            Self::Vpngw(g) => Ok(vpngw_counts(&g.status()?)),
            Self::StrongSwan(s) => Ok(swan_counts(&s.list_sas()?)),
        }
    }

    /// Bytes of vpngw's `vpnctl status --json` reply as one compact JSON line (the control
    /// protocol caps a line at 4 MiB); `None` for charon.
    pub fn status_bytes(&self) -> Option<usize> {
        match self {
            Self::Vpngw(g) => g
                .status_json_text()
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .map(|v| v.to_string().len()),
            Self::StrongSwan(_) => None,
        }
    }

    /// The daemon's own counters relevant to a flood: vpngw's `ike` section and
    /// `io_errors` of `vpnctl status --json`, charon's `swanctl --stats` lines.
    pub fn counters(&self) -> Value {
        match self {
            Self::Vpngw(g) => match g.status() {
                Ok(st) => json!({ "ike": st.ike, "io_errors": st.io_errors }),
                Err(e) => json!({ "error": e.to_string() }),
            },
            Self::StrongSwan(s) => match run(&mut s.swanctl(&["--stats"])) {
                Ok(text) => Value::from(text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>()),
                Err(e) => json!({ "error": e.to_string() }),
            },
        }
    }

    /// Stops the daemon (vpngw: SIGTERM, DELETEs sent to the peers that still answer).
    pub fn stop(&mut self) {
        match self {
            Self::Vpngw(g) => drop(g.stop()),
            Self::StrongSwan(s) => s.stop(),
        }
    }
}

/// Counts in `vpnctl status --json`.
pub fn vpngw_counts(status: &StatusReport) -> Counts {
    let ike: Vec<_> = status.tunnels.iter().flat_map(|t| &t.ike_sas).collect();
    Counts {
        ike_established: ike.iter().filter(|s| s.state == "ESTABLISHED").count(),
        children_installed: vpngw::installed_child_sas(status),
        ike_total: ike.len(),
    }
}

/// Counts in `swanctl --list-sas`.
pub fn swan_counts(list: &str) -> Counts {
    let ike = strongswan::parse_list_sas(list);
    Counts {
        ike_established: ike.iter().filter(|s| s.state == "ESTABLISHED").count(),
        children_installed: strongswan::installed_child_sas(list),
        ike_total: ike.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_both_status_formats() {
        use gateway::control::proto::{ChildSaInfo, IkeSaInfo, TunnelStatus};
        let child = ChildSaInfo { state: "INSTALLED".into(), ..ChildSaInfo::default() };
        let ike = |state: &str, children| IkeSaInfo { state: state.into(), children, ..IkeSaInfo::default() };
        let tunnels = vec![
            TunnelStatus {
                ike_sas: vec![ike("ESTABLISHED", vec![child]), ike("CONNECTING", vec![])],
                ..Default::default()
            },
            TunnelStatus::default(),
        ];
        let st = StatusReport { tunnels, ..StatusReport::default() };
        assert_eq!(vpngw_counts(&st), Counts { ike_established: 1, children_installed: 1, ike_total: 2 });
        let list = "p0000: #1, ESTABLISHED, IKEv2, 1_i 2_r*\n  local  'gw' @ 2001:db8::1[4500]\n  \
                    net: #1, reqid 1, INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16-256\n\
                    p0001: #2, CONNECTING, IKEv2, 3_i 0_r*\n";
        assert_eq!(swan_counts(list), Counts { ike_established: 1, children_installed: 1, ike_total: 2 });
        assert_eq!(Kind::parse("strongswan"), Some(Kind::StrongSwan));
        assert_eq!(Kind::parse("charon"), None);
    }
}
