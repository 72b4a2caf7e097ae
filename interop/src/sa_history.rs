//! Watching SAs change during a run: either kind of peer ([`Peer`]: vpngw or strongSwan)
//! is sampled over and over (`vpnctl status --json` / `swanctl --list-sas`), and a
//! [`SaHistory`] keeps every distinct IKE SA and CHILD SA (by SPIs) with when it was first
//! seen and its PFS group, and the most SAs seen at once.
//!
//! Owns: the samples and the history. Does not own: the daemons or reading their output
//! (see [`crate::vpngw`], and [`crate::strongswan::parse_list_sas`]).

use std::fmt;
use std::time::Duration;

use gateway::control::proto::StatusReport;

use crate::strongswan::{parse_list_sas, StrongSwan};
use crate::vpngw::Vpngw;
use crate::{ensure, Result};

/// A CHILD SA as seen in one sample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildSeen {
    /// Our inbound SPI.
    pub spi_in: String,
    /// Our outbound SPI.
    pub spi_out: String,
    /// State as the peer names it.
    pub state: String,
    /// PFS group, if the peer shows one.
    pub dh: Option<String>,
}

/// One sample of a peer: its IKE SAs (`spi_i/spi_r`) and CHILD SAs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// `(spi_i, spi_r, state)` of every IKE SA.
    pub ike: Vec<(String, String, String)>,
    /// Every CHILD SA.
    pub children: Vec<ChildSeen>,
}

impl Sample {
    /// From `vpnctl status --json`.
    pub fn from_vpngw(status: &StatusReport) -> Self {
        let mut s = Sample::default();
        for ike in status.tunnels.iter().flat_map(|t| &t.ike_sas) {
            s.ike.push((ike.spi_i.clone(), ike.spi_r.clone(), ike.state.clone()));
            for c in &ike.children {
                s.children.push(ChildSeen {
                    spi_in: c.spi_in.clone(),
                    spi_out: c.spi_out.clone(),
                    state: c.state.clone(),
                    dh: c.dh.clone().filter(|d| !d.is_empty()),
                });
            }
        }
        s
    }

    /// From `swanctl --list-sas`.
    pub fn from_swan(list_sas: &str) -> Self {
        let mut s = Sample::default();
        for sa in parse_list_sas(list_sas) {
            s.ike.push((sa.spi_i.clone(), sa.spi_r.clone(), sa.state.clone()));
            for c in &sa.children {
                s.children.push(ChildSeen {
                    spi_in: c.spi_in.clone(),
                    spi_out: c.spi_out.clone(),
                    state: c.state.clone(),
                    dh: c.dh(),
                });
            }
        }
        s
    }

    /// CHILD SAs in state INSTALLED.
    pub fn installed(&self) -> usize {
        self.children.iter().filter(|c| c.state.eq_ignore_ascii_case("installed")).count()
    }
}

/// A distinct SA and when it was first seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// `spi_i/spi_r` (IKE) or `in/out` (CHILD).
    pub spis: String,
    /// When it first appeared, since the history began.
    pub at: Duration,
    /// PFS group (CHILD SAs; the group shown in any sample).
    pub dh: Option<String>,
}

/// Every distinct SA one peer showed during a run.
#[derive(Clone, Debug, Default)]
pub struct SaHistory {
    /// Distinct established IKE SAs, in order of appearance.
    pub ike: Vec<Seen>,
    /// Distinct CHILD SAs (both SPIs known), in order of appearance.
    pub children: Vec<Seen>,
    /// Most IKE SAs in one sample.
    pub max_ike: usize,
    /// Most CHILD SAs in one sample.
    pub max_children: usize,
    /// Samples taken.
    pub samples: usize,
    /// The latest sample.
    pub last: Sample,
}

fn known_spi(s: &str) -> bool {
    !s.is_empty() && s.chars().any(|c| c != '0')
}

impl SaHistory {
    /// Adds a sample taken at `at`.
    pub fn add(&mut self, sample: Sample, at: Duration) {
        self.samples += 1;
        self.max_ike = self.max_ike.max(sample.ike.len());
        self.max_children = self.max_children.max(sample.children.len());
        for (i, r, _) in sample.ike.iter().filter(|(i, r, _)| known_spi(i) && known_spi(r)) {
            let spis = format!("{i}/{r}");
            if !self.ike.iter().any(|s| s.spis == spis) {
                self.ike.push(Seen { spis, at, dh: None });
            }
        }
        for c in sample.children.iter().filter(|c| known_spi(&c.spi_in) && known_spi(&c.spi_out)) {
            let spis = format!("{}/{}", c.spi_in, c.spi_out);
            match self.children.iter_mut().find(|s| s.spis == spis) {
                Some(seen) => {
                    if seen.dh.is_none() {
                        seen.dh = c.dh.clone();
                    }
                }
                None => self.children.push(Seen { spis, at, dh: c.dh.clone() }),
            }
        }
        self.last = sample;
    }

    /// CHILD rekeys seen (distinct CHILD SAs after the first).
    pub fn child_rekeys(&self) -> usize {
        self.children.len().saturating_sub(1)
    }

    /// IKE rekeys seen (distinct IKE SAs after the first).
    pub fn ike_rekeys(&self) -> usize {
        self.ike.len().saturating_sub(1)
    }

    /// `Err` unless every CHILD SA after the first (created by a rekey) shows a group
    /// containing `group` (e.g. `25519`).
    pub fn ensure_pfs(&self, side: &str, group: &str) -> Result<()> {
        for c in self.children.iter().skip(1) {
            ensure!(
                c.dh.as_deref().is_some_and(|d| d.to_ascii_uppercase().contains(&group.to_ascii_uppercase())),
                "{side}: rekeyed CHILD SA {} (first seen at {:.1} s) shows PFS group {:?}, expected {group}",
                c.spis,
                c.at.as_secs_f64(),
                c.dh
            );
        }
        Ok(())
    }

    /// `Err` unless at least `child` CHILD rekeys and `ike` IKE rekeys were seen.
    pub fn ensure_rekeys(&self, side: &str, child: usize, ike: usize) -> Result<()> {
        ensure!(
            self.child_rekeys() >= child && self.ike_rekeys() >= ike,
            "{side}: saw {} CHILD and {} IKE rekeys (new SPIs), expected at least {child} and {ike}: {self}",
            self.child_rekeys(),
            self.ike_rekeys()
        );
        Ok(())
    }
}

impl fmt::Display for SaHistory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[Seen]| {
            v.iter()
                .map(|s| match &s.dh {
                    Some(dh) => format!("{}@{:.1}s[{dh}]", s.spis, s.at.as_secs_f64()),
                    None => format!("{}@{:.1}s", s.spis, s.at.as_secs_f64()),
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        write!(
            f,
            "{} IKE SAs ({}), {} CHILD SAs ({}); at most {} IKE / {} CHILD SAs at once in {} samples",
            self.ike.len(),
            list(&self.ike),
            self.children.len(),
            list(&self.children),
            self.max_ike,
            self.max_children,
            self.samples
        )
    }
}

/// Either kind of gateway, so one scenario body drives both.
pub enum Peer {
    /// vpngw under test.
    Vpngw(Vpngw),
    /// strongSwan reference peer.
    Swan(StrongSwan),
}

impl Peer {
    /// A sample of the peer's SAs.
    pub fn sample(&self) -> Result<Sample> {
        match self {
            Peer::Vpngw(g) => Ok(Sample::from_vpngw(&g.status()?)),
            Peer::Swan(s) => Ok(Sample::from_swan(&s.list_sas()?)),
        }
    }

    /// Waits for an INSTALLED CHILD SA.
    pub fn wait_child_sa(&mut self, timeout: Duration) -> Result<()> {
        match self {
            Peer::Vpngw(g) => g.wait_child_sa(timeout).map(drop),
            Peer::Swan(s) => s.wait_child_sa(timeout).map(drop),
        }
    }

    /// True while the daemon runs.
    pub fn is_running(&mut self) -> bool {
        match self {
            Peer::Vpngw(g) => g.is_running(),
            Peer::Swan(s) => s.is_running(),
        }
    }

    /// `vpngw` or `strongSwan`.
    pub fn kind(&self) -> &'static str {
        match self {
            Peer::Vpngw(_) => "vpngw",
            Peer::Swan(_) => "strongSwan",
        }
    }

    /// The human status (`vpnctl status` / `swanctl --list-sas`), for reports.
    pub fn status_text(&self) -> String {
        let r = match self {
            Peer::Vpngw(g) => g.status_text(),
            Peer::Swan(s) => s.list_sas(),
        };
        r.unwrap_or_else(|e| e.to_string())
    }

    /// Stops the daemon (vpngw: `Err` unless it exits cleanly on SIGTERM).
    pub fn stop(&mut self) -> Result<()> {
        match self {
            Peer::Vpngw(g) => g.stop().map(drop),
            Peer::Swan(s) => {
                s.stop();
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vpngw_status(children: &[(&str, &str, Option<&str>)]) -> StatusReport {
        use gateway::control::proto::{ChildSaInfo, IkeSaInfo, TunnelStatus};
        let children = children
            .iter()
            .map(|(i, o, dh)| ChildSaInfo {
                state: "INSTALLED".into(),
                spi_in: (*i).into(),
                spi_out: (*o).into(),
                dh: dh.map(str::to_owned),
                ..ChildSaInfo::default()
            })
            .collect();
        let ike = IkeSaInfo {
            state: "ESTABLISHED".into(),
            spi_i: "00000000000000aa".into(),
            spi_r: "00000000000000bb".into(),
            children,
            ..IkeSaInfo::default()
        };
        let mut st = StatusReport::default();
        st.tunnels.push(TunnelStatus { ike_sas: vec![ike], ..TunnelStatus::default() });
        st
    }

    #[test]
    fn history_counts_distinct_sas_and_checks_pfs() {
        let mut h = SaHistory::default();
        h.add(Sample::from_vpngw(&vpngw_status(&[("c1", "d1", None)])), Duration::from_secs(0));
        h.add(Sample::from_vpngw(&vpngw_status(&[("c1", "d1", None)])), Duration::from_secs(1));
        h.add(
            Sample::from_vpngw(&vpngw_status(&[("c1", "d1", None), ("c2", "d2", Some("CURVE_25519"))])),
            Duration::from_secs(10),
        );
        h.add(Sample::from_vpngw(&vpngw_status(&[("c3", "00000000", None)])), Duration::from_secs(11));
        assert_eq!(h.child_rekeys(), 1);
        assert_eq!(h.ike_rekeys(), 0);
        assert_eq!((h.max_children, h.max_ike, h.samples), (2, 1, 4));
        assert!(h.ensure_pfs("gwA", "25519").is_ok());
        assert!(h.ensure_rekeys("gwA", 1, 0).is_ok());
        assert!(h.ensure_rekeys("gwA", 2, 0).is_err());
        h.add(Sample::from_vpngw(&vpngw_status(&[("c4", "d4", None)])), Duration::from_secs(20));
        let err = h.ensure_pfs("gwA", "25519").unwrap_err().to_string();
        assert!(err.contains("c4/d4"), "{err}");
        assert!(h.to_string().contains("c2/d2@10.0s[CURVE_25519]"), "{h}");
    }
}
