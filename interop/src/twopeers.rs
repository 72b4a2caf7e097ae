//! Two peer gateways in front of one remote LAN, the topology of an active/standby pair
//! of tunnels (one cloud VPN connection with two tunnel endpoints):
//!
//! ```text
//!                                               ┌ 198.51.100.254 ─wan0─ b1 198.51.100.1 ─lan0 10.2.0.1─h1┐
//!  lanA 10.1.0.10 ─ gwA 10.1.0.1 │ 192.0.2.1 ── inet 192.0.2.254                                       H 10.2.0.10
//!                                               └ 203.0.113.254  ─wan0─ b2 203.0.113.1  ─lan0 10.2.0.2─h2┘
//! ```
//!
//! `inet` is a plain router between the three WAN links. The host H holds 10.2.0.10 on
//! its loopback and reaches the two gateways over one link each (`h1`, `h2`); it routes
//! site A's LAN back through b1 with metric 10 and through b2 with metric 20 (the
//! remote side of such a service prefers one tunnel endpoint). H ignores routes whose
//! link is down (`ignore_routes_with_linkdown`), so when b1 dies and its links go down,
//! H's traffic falls to the route through b2 by itself, as a router loses a dead
//! neighbour's route.
//!
//! b1 can die and come back: [`TwoPeers::take_down_b1`] takes its links down,
//! [`TwoPeers::replace_b1`] deletes its namespace and wires a fresh one the same way
//! (the preferred route through it is added separately, with
//! [`TwoPeers::add_route_via_b1`], once the caller knows its tunnel is up).
//!
//! Owns: the namespaces, links, addresses and routes above. Does not own: the gateways'
//! IPsec stacks (they install the routes into the tunnels).

pub use testkit::netns::Netns;

use crate::netns::{HOST_IF, LAN_IF, WAN_IF};
use crate::Result;

/// Host on site A.
pub const LAN_A_HOST: &str = "10.1.0.10";
/// Site A's LAN.
pub const LAN_A_NET: &str = "10.1.0.0/24";
/// Gateway A, LAN side.
pub const GW_A_LAN: &str = "10.1.0.1";
/// Gateway A, WAN side.
pub const GW_A_WAN: &str = "192.0.2.1";
/// The router's address on gateway A's link.
pub const ROUTER_A: &str = "192.0.2.254";
/// Peer gateway 1 (the primary's peer), WAN side.
pub const B1_WAN: &str = "198.51.100.1";
/// The router's address on b1's link.
pub const ROUTER_B1: &str = "198.51.100.254";
/// Peer gateway 2 (the standby's peer), WAN side.
pub const B2_WAN: &str = "203.0.113.1";
/// The router's address on b2's link.
pub const ROUTER_B2: &str = "203.0.113.254";
/// b1 on the remote LAN.
pub const B1_LAN: &str = "10.2.0.1";
/// b2 on the remote LAN.
pub const B2_LAN: &str = "10.2.0.2";
/// The remote LAN both peers protect.
pub const REMOTE_NET: &str = "10.2.0.0/24";
/// The host on the remote LAN.
pub const HOST_H: &str = "10.2.0.10";
/// H's link to b1.
pub const H_TO_B1: &str = "h1";
/// H's link to b2.
pub const H_TO_B2: &str = "h2";
/// Metric of H's route to site A through b1 (preferred).
pub const METRIC_B1: &str = "10";
/// Metric of H's route to site A through b2.
pub const METRIC_B2: &str = "20";

/// The namespaces of the module docs. Fields drop in declaration order; each namespace
/// deletes itself (and its veth links with it).
pub struct TwoPeers {
    /// Name prefix of every namespace.
    pub prefix: String,
    /// Host on site A.
    pub lan_a: Netns,
    /// Gateway A (vpngw).
    pub gw_a: Netns,
    /// The router between the WAN links.
    pub inet: Netns,
    /// Peer gateway 1 (the current incarnation, see [`TwoPeers::replace_b1`]).
    pub b1: Netns,
    /// Peer gateway 2.
    pub b2: Netns,
    /// The host on the remote LAN.
    pub host: Netns,
    b1_generation: u32,
}

impl TwoPeers {
    /// Builds the topology with namespaces `PREFIX-lana`, `-gwa`, `-inet`, `-b1`, `-b2`,
    /// `-h`; on error whatever was created is deleted again.
    pub fn create(prefix: &str) -> Result<Self> {
        let topo = Self {
            prefix: prefix.to_owned(),
            lan_a: Netns::create(&format!("{prefix}-lana"))?,
            gw_a: Netns::create(&format!("{prefix}-gwa"))?,
            inet: Netns::create(&format!("{prefix}-inet"))?,
            b1: Netns::create(&format!("{prefix}-b1"))?,
            b2: Netns::create(&format!("{prefix}-b2"))?,
            host: Netns::create(&format!("{prefix}-h"))?,
            b1_generation: 0,
        };
        topo.wire()?;
        Ok(topo)
    }

    fn wire(&self) -> Result<()> {
        let (la, ga, inet, h) = (&self.lan_a, &self.gw_a, &self.inet, &self.host);
        ga.ip(&["link", "add", LAN_IF, "type", "veth", "peer", "name", HOST_IF, "netns", la.name()])?;
        ga.ip(&["link", "add", WAN_IF, "type", "veth", "peer", "name", "to-a", "netns", inet.name()])?;
        for (ns, ifname, addr) in [
            (ga, LAN_IF, format!("{GW_A_LAN}/24")),
            (la, HOST_IF, format!("{LAN_A_HOST}/24")),
            (ga, WAN_IF, format!("{GW_A_WAN}/24")),
            (inet, "to-a", format!("{ROUTER_A}/24")),
        ] {
            ns.ip(&["addr", "add", &addr, "dev", ifname])?;
            ns.ip(&["link", "set", ifname, "up"])?;
        }
        la.ip(&["route", "add", "default", "via", GW_A_LAN])?;
        ga.ip(&["route", "add", "default", "via", ROUTER_A])?;
        ga.sysctl("net.ipv4.ip_forward", "1")?;
        inet.sysctl("net.ipv4.ip_forward", "1")?;
        // H: its address on the loopback, one link per gateway; a route whose link is
        // down is not used.
        h.ip(&["addr", "add", &format!("{HOST_H}/32"), "dev", "lo"])?;
        for scope in ["all", "default"] {
            h.sysctl(&format!("net.ipv4.conf.{scope}.ignore_routes_with_linkdown"), "1")?;
            h.sysctl(&format!("net.ipv4.conf.{scope}.rp_filter"), "0")?;
        }
        self.wire_peer(&self.b1, "to-b1", B1_WAN, ROUTER_B1, B1_LAN, H_TO_B1)?;
        self.wire_peer(&self.b2, "to-b2", B2_WAN, ROUTER_B2, B2_LAN, H_TO_B2)?;
        self.add_route_via_b1()?;
        h.ip(&["route", "add", LAN_A_NET, "via", B2_LAN, "dev", H_TO_B2, "src", HOST_H, "metric", METRIC_B2])?;
        Ok(())
    }

    /// Links `peer` to the router (interface `router_if` there) and to H (`h_if`).
    fn wire_peer(&self, peer: &Netns, router_if: &str, wan: &str, router: &str, lan: &str, h_if: &str) -> Result<()> {
        let (inet, h) = (&self.inet, &self.host);
        peer.ip(&["link", "add", WAN_IF, "type", "veth", "peer", "name", router_if, "netns", inet.name()])?;
        peer.ip(&["link", "add", LAN_IF, "type", "veth", "peer", "name", h_if, "netns", h.name()])?;
        for (ns, ifname, addr) in [
            (peer, WAN_IF, format!("{wan}/24")),
            (inet, router_if, format!("{router}/24")),
            (peer, LAN_IF, format!("{lan}/24")),
        ] {
            ns.ip(&["addr", "add", &addr, "dev", ifname])?;
            ns.ip(&["link", "set", ifname, "up"])?;
        }
        h.ip(&["link", "set", h_if, "up"])?;
        h.ip(&["route", "add", lan, "dev", h_if, "src", HOST_H])?;
        peer.ip(&["route", "add", "default", "via", router])?;
        peer.sysctl("net.ipv4.ip_forward", "1")?;
        h.sysctl(&format!("net.ipv4.conf.{h_if}.rp_filter"), "0")?;
        Ok(())
    }

    /// H's preferred route to site A, through b1.
    pub fn add_route_via_b1(&self) -> Result<()> {
        self.host
            .ip(&["route", "add", LAN_A_NET, "via", B1_LAN, "dev", H_TO_B1, "src", HOST_H, "metric", METRIC_B1])
            .map(drop)
    }

    /// b1 dies as a machine does: both of its links go down (so the router and H see
    /// no carrier, and H stops using its route through b1). Whatever runs in b1 is the
    /// caller's to kill first.
    pub fn take_down_b1(&self) -> Result<()> {
        for ifname in [WAN_IF, LAN_IF] {
            self.b1.ip(&["link", "set", ifname, "down"])?;
        }
        Ok(())
    }

    /// A new b1: a fresh namespace `PREFIX-b1-N` wired like the first (same addresses,
    /// H's link to it and the route to its address), after the old one (and its links)
    /// is deleted. H's preferred route through it is not added (see
    /// [`TwoPeers::add_route_via_b1`]). Whatever ran in the old b1 is killed with it.
    pub fn replace_b1(&mut self) -> Result<()> {
        self.b1_generation += 1;
        let fresh = Netns::create(&format!("{}-b1-{}", self.prefix, self.b1_generation))?;
        // Dropping the old namespace deletes its veths and with them their far ends.
        drop(std::mem::replace(&mut self.b1, fresh));
        self.wire_peer(&self.b1, "to-b1", B1_WAN, ROUTER_B1, B1_LAN, H_TO_B1)
    }

    /// Every namespace, for dumping state on failure.
    pub fn all(&self) -> [&Netns; 6] {
        [&self.lan_a, &self.gw_a, &self.inet, &self.b1, &self.b2, &self.host]
    }

    /// H's routes (main table), as text.
    pub fn host_routes(&self) -> Result<String> {
        self.host.ip(&["route", "show"])
    }

    /// Addresses, links and routes of every namespace, for failure messages.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for ns in self.all() {
            s.push_str(&format!("### {}\n", ns.name()));
            for args in [&["-br", "link"][..], &["-br", "addr"][..], &["route", "show", "table", "all"][..]] {
                s.push_str(&ns.ip(args).unwrap_or_else(|e| format!("{e}\n")));
            }
        }
        s
    }
}
