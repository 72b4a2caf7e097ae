//! Two subnets on each site, for tunnels with several subnet pairs:
//!
//! ```text
//!  lanA 10.1.0.10, 10.3.0.10 — gwA ═ WAN ═ gwB — lanB 10.2.0.10, 10.4.0.10
//! ```
//!
//! Owns: adding the second subnet of each site to a [`Topology`], pinging across every
//! pair, strongSwan `children` sections one per pair, and reading which pairs vpngw's
//! INSTALLED CHILD SAs (IKEv1: Quick Mode SA pairs) cover. Does not own: the scenarios
//! (`tests/subnets.rs`, `tests/ikev1.rs`).

use gateway::control::proto::StatusReport;

use crate::netns::{Netns, Topology, HOST_IF, LAN_IF};
use crate::scenario::Scenario;
use crate::traffic::{parse_ping, PingStats};
use crate::vpngw::child_sas;
use crate::{ensure, Error, Result};

/// Site A's subnets and a host in each.
pub const A_NETS: [&str; 2] = ["10.1.0.0/24", "10.3.0.0/24"];
/// The hosts of [`A_NETS`].
pub const A_HOSTS: [&str; 2] = ["10.1.0.10", "10.3.0.10"];
/// Site B's subnets and a host in each.
pub const B_NETS: [&str; 2] = ["10.2.0.0/24", "10.4.0.0/24"];
/// The hosts of [`B_NETS`].
pub const B_HOSTS: [&str; 2] = ["10.2.0.10", "10.4.0.10"];
/// The strongSwan `children` names of the four pairs (see [`pair_children`]).
pub const PAIR_CHILDREN: [&str; 4] = ["p0", "p1", "p2", "p3"];

/// Adds the second subnet of each site: 10.3.0.0/24 on lanA's link, 10.4.0.0/24 on
/// lanB's (the hosts keep their default route through their gateway).
pub fn add_second_subnets(topo: &Topology) -> Result<()> {
    for (ns, ifname, addr) in [
        (&topo.gw_a, LAN_IF, "10.3.0.1/24"),
        (&topo.lan_a, HOST_IF, "10.3.0.10/24"),
        (&topo.gw_b, LAN_IF, "10.4.0.1/24"),
        (&topo.lan_b, HOST_IF, "10.4.0.10/24"),
    ] {
        ns.ip(&["addr", "add", addr, "dev", ifname])?;
    }
    Ok(())
}

/// Site B's `children` sections, one per pair, as (name, local_ts, remote_ts) for
/// `SwanConfig::swanctl_conf_children`: `p0` = 10.2.0.0/24 === 10.1.0.0/24, `p1` =
/// 10.2.0.0/24 === 10.3.0.0/24, `p2` = 10.4.0.0/24 === 10.1.0.0/24, `p3` = 10.4.0.0/24
/// === 10.3.0.0/24.
pub fn pair_children() -> Vec<(&'static str, &'static str, &'static str)> {
    B_NETS
        .iter()
        .flat_map(|b| A_NETS.iter().map(move |a| (*b, *a)))
        .zip(PAIR_CHILDREN)
        .map(|((b, a), n)| (n, b, a))
        .collect()
}

/// `ping -I src dst` from `ns`, `count` times 0.2 s apart.
pub fn ping_from(ns: &Netns, src: &str, dst: &str, count: u32) -> Result<PingStats> {
    let c = count.to_string();
    let out = ns
        .exec(&["ping", "-n", "-c", &c, "-i", "0.2", "-W", "2", "-I", src, dst])
        .output()
        .map_err(|e| Error::new(format!("cannot run ping: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_ping(&text).ok_or_else(|| Error::new(format!("cannot parse ping output: {text}")))
}

/// Pings across every (site A subnet, site B subnet) pair in both directions; `Err`
/// unless every reply arrives.
pub fn ping_every_pair(sc: &Scenario) -> Result<()> {
    let mut report = Vec::new();
    for a in A_HOSTS {
        for b in B_HOSTS {
            let ab = ping_from(&sc.topo.lan_a, a, b, 3)?;
            let ba = ping_from(&sc.topo.lan_b, b, a, 2)?;
            ensure!(
                ab.received == ab.transmitted && ba.received == ba.transmitted,
                "ping lost replies between {a} and {b}: {a}->{b} {ab:?}, {b}->{a} {ba:?}\n{}",
                sc.topo.describe()
            );
            report.push(format!("{a}<->{b} {}/{} {}/{}", ab.received, ab.transmitted, ba.received, ba.transmitted));
        }
    }
    println!("[{}] ping across every pair: {}", sc.name, report.join(", "));
    Ok(())
}

/// (local, remote) selectors of each INSTALLED CHILD SA in a vpngw status, sorted.
pub fn vpngw_selectors(st: &StatusReport) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = child_sas(st)
        .into_iter()
        .filter(|c| c.state == "INSTALLED")
        .map(|c| (c.local_ts.join(","), c.remote_ts.join(",")))
        .collect();
    v.sort();
    v
}

/// The four pairs as vpngw on site A names them, sorted.
pub fn all_pairs() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> =
        A_NETS.iter().flat_map(|a| B_NETS.iter().map(move |b| ((*a).to_owned(), (*b).to_owned()))).collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_children_cover_every_pair_once() {
        let kids = pair_children();
        assert_eq!(kids.len(), 4);
        let mut pairs: Vec<(String, String)> =
            kids.iter().map(|(_, b, a)| ((*a).to_owned(), (*b).to_owned())).collect();
        pairs.sort();
        assert_eq!(pairs, all_pairs());
        assert_eq!(kids[0], ("p0", "10.2.0.0/24", "10.1.0.0/24"));
    }
}
