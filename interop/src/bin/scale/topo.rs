//! The scale topology: one gateway namespace and one namespace that holds every peer.
//!
//! ```text
//!  gw ns                                          peers ns
//!  lan0 10.255.0.1/16 (veth to lan1, both here)   local routes (AnyIP):
//!  wan0 2001:db8::1/64  ════ veth ════  wan0 2001:db8::2/64
//!   route 2001:db8::/32 via 2001:db8::2           2001:db8:1::/64 peers (tunnel i: 2001:db8:1::i+1)
//!                                                 2001:db8:2::/64 flood sources with no tunnel
//! ```
//!
//! 1,000 peers need 1,000 WAN addresses, and vpngw tells peers apart by address. The IPv4
//! documentation ranges hold 3 x 256 addresses, so the WAN is IPv6 (2001:db8::/32, the
//! documentation prefix); the tunnels carry IPv4 subnets (10.x, only in these namespaces).
//! The peers' addresses are a local route on `lo` (Linux "AnyIP"): the peers namespace
//! owns the whole /64 and the load generator sends from any address in it with
//! `IPV6_PKTINFO` (its sockets are `IPV6_FREEBIND`).
//!
//! Owns: creating and (through [`Netns`]'s drop) deleting the two namespaces.

use std::net::{Ipv6Addr, SocketAddr};

use interop::netns::{Netns, WAN_IF};
use interop::Result;

/// The gateway's WAN address.
pub const GW_WAN: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// The peers namespace's own WAN address (the gateway's next hop to every peer).
const PEERS_WAN: &str = "2001:db8::2";
/// Where tunnel i's peer lives: 2001:db8:1::(i+1).
const PEER_NET: &str = "2001:db8:1::/64";
/// Flood sources that match no tunnel: 2001:db8:2::/64.
const STRANGER_NET: &str = "2001:db8:2::/64";
/// The gateway's protected network (its "LAN"): every tunnel's local subnet.
pub const GW_LAN_NET: &str = "10.255.0.0/16";
/// The gateway's address on it (charon installs routes with a source address inside
/// the local traffic selector).
const GW_LAN_ADDR: &str = "10.255.0.1/16";
/// Most tunnels [`peer_subnet`] can number (10.0.0.0/24 .. 10.254.255.0/24).
pub const MAX_TUNNELS: usize = 255 * 256;

/// Tunnel `i`'s peer address.
pub fn peer_addr(i: usize) -> Ipv6Addr {
    let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
    Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, (n >> 16) as u16, n as u16)
}

/// A flood source address with no tunnel (`host` is the interface identifier).
pub fn stranger_addr(host: u64) -> Ipv6Addr {
    let h = host.to_be_bytes();
    let mut o = [0u8; 16];
    o[..6].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 2]);
    o[8..].copy_from_slice(&h);
    Ipv6Addr::from(o)
}

/// Tunnel `i`'s protected subnet behind the peer: 10.(i / 256).(i % 256).0/24.
pub fn peer_subnet(i: usize) -> String {
    format!("10.{}.{}.0/24", i / 256, i % 256)
}

/// The gateway's IKE port as a socket address.
pub fn gw_ike() -> SocketAddr {
    SocketAddr::new(GW_WAN.into(), 500)
}

/// The two namespaces; dropping it deletes them (after killing what still runs inside).
pub struct ScaleTopo {
    /// The gateway under test.
    pub gw: Netns,
    /// Every peer (the load generator).
    pub peers: Netns,
}

impl ScaleTopo {
    /// Creates `vs<id>-gw` and `vs<id>-peers` and wires them.
    pub fn create() -> Result<Self> {
        let prefix = format!("vs{}", interop::unique_id());
        let topo =
            Self { gw: Netns::create(&format!("{prefix}-gw"))?, peers: Netns::create(&format!("{prefix}-peers"))? };
        topo.wire()?;
        Ok(topo)
    }

    fn wire(&self) -> Result<()> {
        let (gw, peers) = (&self.gw, &self.peers);
        for ns in [gw, peers] {
            // `Netns::create` turns IPv6 off (the two-site tests capture IPv4 only); this
            // topology's WAN is IPv6. No duplicate address detection: the addresses are ours.
            for key in ["all", "default"] {
                ns.sysctl(&format!("net.ipv6.conf.{key}.disable_ipv6"), "0")?;
                ns.sysctl(&format!("net.ipv6.conf.{key}.accept_dad"), "0")?;
            }
        }
        gw.ip(&["link", "add", WAN_IF, "type", "veth", "peer", "name", WAN_IF, "netns", peers.name()])?;
        gw.ip(&["link", "add", "lan0", "type", "veth", "peer", "name", "lan1"])?;
        gw.ip(&["-6", "addr", "add", &format!("{GW_WAN}/64"), "dev", WAN_IF, "nodad"])?;
        peers.ip(&["-6", "addr", "add", &format!("{PEERS_WAN}/64"), "dev", WAN_IF, "nodad"])?;
        gw.ip(&["addr", "add", GW_LAN_ADDR, "dev", "lan0"])?;
        for (ns, dev) in [(gw, WAN_IF), (gw, "lan0"), (gw, "lan1"), (peers, WAN_IF)] {
            ns.ip(&["link", "set", dev, "up"])?;
        }
        gw.ip(&["-6", "route", "add", "2001:db8::/32", "via", PEERS_WAN, "dev", WAN_IF])?;
        for net in [PEER_NET, STRANGER_NET] {
            peers.ip(&["-6", "route", "add", "local", net, "dev", "lo"])?;
        }
        gw.sysctl("net.ipv4.ip_forward", "1")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_subnets_are_distinct_and_documentation_only() {
        assert_eq!(peer_addr(0).to_string(), "2001:db8:1::1");
        assert_eq!(peer_addr(999).to_string(), "2001:db8:1::3e8");
        assert_eq!(peer_addr(70_000).to_string(), "2001:db8:1::1:1171");
        assert_eq!(stranger_addr(0x1234).to_string(), "2001:db8:2::1234");
        assert_eq!(peer_subnet(0), "10.0.0.0/24");
        assert_eq!(peer_subnet(999), "10.3.231.0/24");
        assert_eq!(peer_subnet(MAX_TUNNELS - 1), "10.254.255.0/24");
        let subnets: std::collections::HashSet<_> = (0..MAX_TUNNELS).map(peer_subnet).collect();
        assert_eq!(subnets.len(), MAX_TUNNELS);
        assert!(!subnets.contains("10.255.0.0/24"), "the gateway's own network");
    }
}
