//! Network namespaces and the two-site topology, built with `ip` commands.
//!
//! ```text
//!  lanA 10.1.0.10 ─eth0──lan0─ gwA ─wan0══════wan0─ gwB ─lan0──eth0─ lanB 10.2.0.10
//!        10.1.0.0/24  10.1.0.1   192.0.2.1   192.0.2.2   10.2.0.1   10.2.0.0/24
//! ```
//!
//! Scenarios that play an attacker add a fifth namespace, the hostile internet, wired to
//! gwA only ([`Topology::attach_internet`]):
//!
//! ```text
//!  internet 203.0.113.2 ─eth0──inet0─ gwA      routes 198.51.100.0/24 and 203.0.113.0/24
//!                  203.0.113.0/29   203.0.113.1    back to the internet; rp_filter off
//! ```
//!
//! [`Topology::insert_nat`] puts a NAT router between the gateways instead of the direct
//! WAN link: gwA moves behind it, and gwB sees gwA's traffic from the router's public
//! address (gwA's usual WAN address), with UDP ports rewritten:
//!
//! ```text
//!  gwA 198.51.100.1 ─wan0──in0─ nat 198.51.100.254 │ 192.0.2.1 ─out0──wan0─ 192.0.2.2 gwB
//!                                source NAT to 192.0.2.1, UDP ports 40000-40999
//! ```
//!
//! [`Topology::add_ipv6`] gives every link IPv6 addresses as well (dual stack), and
//! [`Topology::create_v6_wan`] builds a topology whose WAN is IPv6 only:
//!
//! ```text
//!  lanA fd00:a::10 ─ gwA fd00:a::1 │ 2001:db8:ff::1 ══ 2001:db8:ff::2 │ fd00:b::1 ─ lanB fd00:b::10
//!       fd00:a::/64                │       2001:db8:ff::/64          │           fd00:b::/64
//! ```
//!
//! Duplicate address detection is off on every interface of such a topology, and
//! [`Topology::add_ipv6`] returns only once no address is tentative any more, so the
//! first packet of a test never meets an address that cannot be used yet.
//!
//! Owns: wiring namespaces together (veth pairs, addresses, routes and sysctls). Each
//! namespace is a [`Netns`] guard (from `testkit`): deleted on drop, after killing by PID
//! whatever this harness started inside it.
//!
//! Does not own: routes to the remote site (each gateway's IPsec stack installs those).

pub use testkit::netns::Netns;

use crate::Result;

/// Name of the WAN veth in each gateway namespace.
pub const WAN_IF: &str = "wan0";
/// Name of the LAN veth in each gateway namespace.
pub const LAN_IF: &str = "lan0";
/// Name of the interface in each host namespace.
pub const HOST_IF: &str = "eth0";

/// Host on site A.
pub const LAN_A_HOST: &str = "10.1.0.10";
/// Site A's LAN.
pub const LAN_A_NET: &str = "10.1.0.0/24";
/// Gateway A, LAN side.
pub const GW_A_LAN: &str = "10.1.0.1";
/// Gateway A, WAN side.
pub const GW_A_WAN: &str = "192.0.2.1";
/// Gateway B, WAN side.
pub const GW_B_WAN: &str = "192.0.2.2";
/// Gateway B, LAN side.
pub const GW_B_LAN: &str = "10.2.0.1";
/// Site B's LAN.
pub const LAN_B_NET: &str = "10.2.0.0/24";
/// Host on site B.
pub const LAN_B_HOST: &str = "10.2.0.10";

/// gwA's WAN address behind the NAT of [`Topology::insert_nat`].
pub const GW_A_BEHIND_NAT: &str = "198.51.100.1";
/// The NAT router's inside address (gwA's default route).
pub const NAT_INSIDE: &str = "198.51.100.254";
/// The NAT router's public address: what gwB sees as gwA's (gwA's usual WAN address).
pub const NAT_PUBLIC: &str = GW_A_WAN;
/// The UDP source ports the NAT maps gwA's ports 500 and 4500 to.
pub const NAT_PORTS: (u16, u16) = (40000, 40999);
/// The NAT router's interface towards gwA.
pub const NAT_IN_IF: &str = "in0";
/// The NAT router's interface towards gwB.
pub const NAT_OUT_IF: &str = "out0";

/// Host on site A, IPv6.
pub const LAN_A_HOST6: &str = "fd00:a::10";
/// Site A's IPv6 LAN.
pub const LAN_A_NET6: &str = "fd00:a::/64";
/// Gateway A, LAN side, IPv6.
pub const GW_A_LAN6: &str = "fd00:a::1";
/// Gateway A, WAN side, IPv6.
pub const GW_A_WAN6: &str = "2001:db8:ff::1";
/// Gateway B, WAN side, IPv6.
pub const GW_B_WAN6: &str = "2001:db8:ff::2";
/// Gateway B, LAN side, IPv6.
pub const GW_B_LAN6: &str = "fd00:b::1";
/// Site B's IPv6 LAN.
pub const LAN_B_NET6: &str = "fd00:b::/64";
/// Host on site B, IPv6.
pub const LAN_B_HOST6: &str = "fd00:b::10";

/// gwA's interface towards the hostile internet.
pub const INET_IF: &str = "inet0";
/// gwA's address on the internet link.
pub const GW_A_INET: &str = "203.0.113.1";
/// The internet namespace's own address (its default route is gwA).
pub const INTERNET_HOST: &str = "203.0.113.2";
/// Source networks an attacker in the internet namespace may spoof: gwA routes both back
/// to it (their addresses outside the link itself answer nothing).
pub const SPOOFED_NETS: [&str; 2] = ["198.51.100.0/24", "203.0.113.0/24"];

/// The four namespaces of the site-to-site topology (see the module docs).
///
/// Fields drop in declaration order; each namespace deletes itself.
pub struct Topology {
    /// Name prefix shared by the four namespaces (`vg<id>`).
    pub prefix: String,
    /// Host on site A.
    pub lan_a: Netns,
    /// Gateway A.
    pub gw_a: Netns,
    /// Gateway B.
    pub gw_b: Netns,
    /// Host on site B.
    pub lan_b: Netns,
}

impl Topology {
    /// Builds the topology with namespaces `PREFIX-lana`, `PREFIX-gwa`, `PREFIX-gwb`,
    /// `PREFIX-lanb`. On error, whatever was created is torn down again.
    pub fn create(prefix: &str) -> Result<Self> {
        let topo = Self {
            prefix: prefix.to_owned(),
            lan_a: Netns::create(&format!("{prefix}-lana"))?,
            gw_a: Netns::create(&format!("{prefix}-gwa"))?,
            gw_b: Netns::create(&format!("{prefix}-gwb"))?,
            lan_b: Netns::create(&format!("{prefix}-lanb"))?,
        };
        topo.wire()?;
        Ok(topo)
    }

    /// A topology with a fresh unique prefix `vg<6 hex>`.
    pub fn create_unique() -> Result<Self> {
        Self::create(&format!("vg{}", crate::unique_id()))
    }

    /// [`Topology::create`], then [`Topology::add_ipv6`]: dual stack on every link.
    pub fn create_dual_stack(prefix: &str) -> Result<Self> {
        let topo = Self::create(prefix)?;
        topo.add_ipv6()?;
        Ok(topo)
    }

    /// [`Topology::create_dual_stack`] whose WAN link then carries IPv6 only (the IPv4
    /// WAN addresses are removed); the LANs stay dual stack (see the module docs).
    pub fn create_v6_wan(prefix: &str) -> Result<Self> {
        let topo = Self::create_dual_stack(prefix)?;
        for (ns, addr) in [(&topo.gw_a, GW_A_WAN), (&topo.gw_b, GW_B_WAN)] {
            ns.ip(&["addr", "del", &format!("{addr}/24"), "dev", WAN_IF])?;
        }
        Ok(topo)
    }

    /// Adds the IPv6 addresses of the module docs to every link (the IPv4 ones stay),
    /// default routes of the hosts through their gateway, and IPv6 forwarding on both
    /// gateways; duplicate address detection is turned off, and this returns once no
    /// address in any namespace is tentative.
    pub fn add_ipv6(&self) -> Result<()> {
        let (la, ga, gb, lb) = (&self.lan_a, &self.gw_a, &self.gw_b, &self.lan_b);
        // Namespaces start with IPv6 off (`Netns::create`). Duplicate address detection
        // goes off first, so that the link-local addresses IPv6 brings are usable at
        // once; `default` also covers the devices the daemons create later (TUN).
        for (ns, ifs) in [(la, &[HOST_IF][..]), (ga, &[WAN_IF, LAN_IF]), (gb, &[WAN_IF, LAN_IF]), (lb, &[HOST_IF])] {
            for scope in ["all", "default"].iter().chain(ifs) {
                ns.sysctl(&format!("net.ipv6.conf.{scope}.accept_dad"), "0")?;
            }
            for scope in ["default", "all"] {
                ns.sysctl(&format!("net.ipv6.conf.{scope}.disable_ipv6"), "0")?;
            }
        }
        for gw in [ga, gb] {
            gw.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        }
        for (ns, ifname, addr) in [
            (ga, WAN_IF, "2001:db8:ff::1/64"),
            (gb, WAN_IF, "2001:db8:ff::2/64"),
            (ga, LAN_IF, "fd00:a::1/64"),
            (gb, LAN_IF, "fd00:b::1/64"),
            (la, HOST_IF, "fd00:a::10/64"),
            (lb, HOST_IF, "fd00:b::10/64"),
        ] {
            ns.ip(&["-6", "addr", "add", addr, "dev", ifname, "nodad"])?;
        }
        la.ip(&["-6", "route", "add", "default", "via", GW_A_LAN6])?;
        lb.ip(&["-6", "route", "add", "default", "via", GW_B_LAN6])?;
        // Checked rather than assumed: a tentative address would drop the first packets.
        crate::wait_for(std::time::Duration::from_secs(10), "IPv6 addresses to leave the tentative state", || {
            self.all()
                .iter()
                .all(|ns| ns.ip(&["-6", "addr", "show", "tentative"]).is_ok_and(|o| o.trim().is_empty()))
                .then_some(())
        })
    }

    fn wire(&self) -> Result<()> {
        let (la, ga, gb, lb) = (&self.lan_a, &self.gw_a, &self.gw_b, &self.lan_b);
        // The veth peers are created in one namespace and the far end moved at once.
        ga.ip(&["link", "add", WAN_IF, "type", "veth", "peer", "name", WAN_IF, "netns", gb.name()])?;
        ga.ip(&["link", "add", LAN_IF, "type", "veth", "peer", "name", HOST_IF, "netns", la.name()])?;
        gb.ip(&["link", "add", LAN_IF, "type", "veth", "peer", "name", HOST_IF, "netns", lb.name()])?;
        for (ns, ifname, addr) in [
            (ga, WAN_IF, "192.0.2.1/24"),
            (gb, WAN_IF, "192.0.2.2/24"),
            (ga, LAN_IF, "10.1.0.1/24"),
            (gb, LAN_IF, "10.2.0.1/24"),
            (la, HOST_IF, "10.1.0.10/24"),
            (lb, HOST_IF, "10.2.0.10/24"),
        ] {
            ns.ip(&["addr", "add", addr, "dev", ifname])?;
            ns.ip(&["link", "set", ifname, "up"])?;
        }
        la.ip(&["route", "add", "default", "via", GW_A_LAN])?;
        lb.ip(&["route", "add", "default", "via", GW_B_LAN])?;
        for gw in [ga, gb] {
            gw.sysctl("net.ipv4.ip_forward", "1")?;
        }
        Ok(())
    }

    /// Creates the hostile internet `PREFIX-inet` (see the module docs) and wires it to
    /// gwA: a /29 link, gwA routing [`SPOOFED_NETS`] to it, and reverse-path filtering off
    /// on gwA (explicitly: `all`, `default` and both WAN-side interfaces), so packets with
    /// spoofed sources, including the peer's own address, reach gwA's sockets as they
    /// would from the internet. The caller drops it before the topology.
    pub fn attach_internet(&self) -> Result<Netns> {
        let inet = Netns::create(&format!("{}-inet", self.prefix))?;
        let ga = &self.gw_a;
        ga.ip(&["link", "add", INET_IF, "type", "veth", "peer", "name", HOST_IF, "netns", inet.name()])?;
        ga.ip(&["addr", "add", &format!("{GW_A_INET}/29"), "dev", INET_IF])?;
        ga.ip(&["link", "set", INET_IF, "up"])?;
        inet.ip(&["addr", "add", &format!("{INTERNET_HOST}/29"), "dev", HOST_IF])?;
        inet.ip(&["link", "set", HOST_IF, "up"])?;
        inet.ip(&["route", "add", "default", "via", GW_A_INET])?;
        for net in SPOOFED_NETS {
            ga.ip(&["route", "add", net, "via", INTERNET_HOST])?;
        }
        for scope in ["all", "default", INET_IF, WAN_IF] {
            ga.sysctl(&format!("net.ipv4.conf.{scope}.rp_filter"), "0")?;
        }
        Ok(inet)
    }

    /// Replaces the direct WAN link by a NAT router `PREFIX-nat` (see the module docs):
    /// gwA gets [`GW_A_BEHIND_NAT`] and a default route via [`NAT_INSIDE`]; the router
    /// source-NATs everything from gwA to [`NAT_PUBLIC`], UDP to ports in [`NAT_PORTS`]
    /// (so neither 500 nor 4500 survives, as behind many home routers), and lets nothing
    /// in from gwB's side that is not an answer (conntrack). gwB keeps 192.0.2.2. The
    /// caller keeps the returned namespace for the scenario's length.
    pub fn insert_nat(&self) -> Result<Netns> {
        let (ga, gb) = (&self.gw_a, &self.gw_b);
        let nat = Netns::create(&format!("{}-nat", self.prefix))?;
        // Deleting one end of the direct WAN veth deletes both.
        ga.ip(&["link", "del", WAN_IF])?;
        ga.ip(&["link", "add", WAN_IF, "type", "veth", "peer", "name", NAT_IN_IF, "netns", nat.name()])?;
        gb.ip(&["link", "add", WAN_IF, "type", "veth", "peer", "name", NAT_OUT_IF, "netns", nat.name()])?;
        let inside = format!("{GW_A_BEHIND_NAT}/24");
        let nat_in = format!("{NAT_INSIDE}/24");
        let nat_out = format!("{NAT_PUBLIC}/24");
        for (ns, ifname, addr) in [
            (ga, WAN_IF, inside.as_str()),
            (&nat, NAT_IN_IF, nat_in.as_str()),
            (&nat, NAT_OUT_IF, nat_out.as_str()),
            (gb, WAN_IF, "192.0.2.2/24"),
        ] {
            ns.ip(&["addr", "add", addr, "dev", ifname])?;
            ns.ip(&["link", "set", ifname, "up"])?;
        }
        ga.ip(&["route", "add", "default", "via", NAT_INSIDE])?;
        nat.sysctl("net.ipv4.ip_forward", "1")?;
        let (lo, hi) = NAT_PORTS;
        // nft joins its arguments into one command line.
        for rule in [
            "add table ip vgnat".to_owned(),
            "add chain ip vgnat nat_post { type nat hook postrouting priority 100; }".to_owned(),
            format!("add rule ip vgnat nat_post oifname {NAT_OUT_IF} meta l4proto udp snat to {NAT_PUBLIC}:{lo}-{hi}"),
            format!("add rule ip vgnat nat_post oifname {NAT_OUT_IF} snat to {NAT_PUBLIC}"),
            "add chain ip vgnat filter_fw { type filter hook forward priority 0; policy drop; }".to_owned(),
            format!("add rule ip vgnat filter_fw iifname {NAT_IN_IF} oifname {NAT_OUT_IF} accept"),
            format!("add rule ip vgnat filter_fw iifname {NAT_OUT_IF} ct state established,related accept"),
        ] {
            nat.run(&["nft", &rule])?;
        }
        Ok(nat)
    }

    /// Both hosts and gateways, for dumping state on failure.
    pub fn all(&self) -> [&Netns; 4] {
        [&self.lan_a, &self.gw_a, &self.gw_b, &self.lan_b]
    }

    /// Addresses, routes (all tables) and rules of every namespace, as text, for failure logs.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for ns in self.all() {
            s.push_str(&format!("### {}\n", ns.name()));
            for args in [&["-br", "addr"][..], &["route", "show", "table", "all"][..], &["rule"][..]] {
                s.push_str(&ns.ip(args).unwrap_or_else(|e| format!("{e}\n")));
            }
        }
        s
    }
}
