//! The N tunnels, seen from both ends: tunnel `i` is named `p<i>` (4 digits at least),
//! joins the gateway (2001:db8::1, FQDN `gw.scale.example`, 10.255.0.0/16) and peer `i`
//! ([`topo::peer_addr`], FQDN `p<i>.scale.example`, [`topo::peer_subnet`]), with its own
//! pre-shared key derived from a per-run seed. Both ends use `aes256gcm16-prfsha256-x25519`
//! and ESP `aes256gcm16`, and no dead peer detection (nothing but the flood should cost
//! CPU while the flood is measured).
//!
//! Owns: the load generator's `ike::PeerConfig`s, the vpngw `[[tunnel]]`s and the
//! swanctl.conf with the same tunnels. Does not own: starting anything.

use std::fmt::Write as _;
use std::time::Duration;

use interop::strongswan::SwanConfig;
use interop::vpngw::{Encap, GatewayConfig, Lifetimes, Start, TunnelConfig};
use ipsec_types::{EspProposal, Identity, IkeProposal, TrafficSelector};
use sha2::{Digest, Sha256};

use super::topo;

/// IKE proposal on both ends.
pub const IKE_PROPOSAL: &str = "aes256gcm16-prfsha256-x25519";
/// ESP proposal on both ends.
pub const ESP_PROPOSAL: &str = "aes256gcm16";
/// The gateway's identity.
pub const GW_ID: &str = "gw.scale.example";

/// Tunnel `i`'s name.
pub fn name(i: usize) -> String {
    format!("p{i:04}")
}

/// The tunnel index in a name made by [`name`].
pub fn index(name: &str) -> Option<usize> {
    name.strip_prefix('p')?.parse().ok()
}

/// Peer `i`'s identity.
pub fn peer_id(i: usize) -> String {
    format!("{}.scale.example", name(i))
}

/// Tunnel `i`'s pre-shared key: 32 hex digits of SHA-256(seed | i).
pub fn psk(seed: &str, i: usize) -> String {
    let digest = Sha256::new().chain_update(seed.as_bytes()).chain_update((i as u64).to_be_bytes()).finalize();
    digest.iter().take(16).fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The load generator's side of tunnel `i` (it initiates on command only).
pub fn peer_config(seed: &str, i: usize) -> Option<ike::PeerConfig> {
    Some(ike::PeerConfig {
        name: name(i),
        local_addr: topo::peer_addr(i).into(),
        remote_addr: topo::GW_WAN.into(),
        local_id: Identity::Fqdn(peer_id(i)),
        remote_id: Identity::Fqdn(GW_ID.into()),
        psk: zeroize::Zeroizing::new(psk(seed, i).into_bytes()),
        local_ts: vec![TrafficSelector::parse_cidr(&topo::peer_subnet(i)).ok()?],
        remote_ts: vec![TrafficSelector::parse_cidr(topo::GW_LAN_NET).ok()?],
        child_sa_per_subnet_pair: false,
        initiate: false,
        ike_proposals: vec![IkeProposal::parse(IKE_PROPOSAL).ok()?],
        esp_proposals: vec![EspProposal::parse(ESP_PROPOSAL).ok()?],
        force_encap: false,
        announce_vpngw: false,
        replay_window: 64,
        timers: ipsec_types::SaTimers { rekey_jitter_percent: 0, ..ipsec_types::SaTimers::default() },
        dpd: ipsec_types::Dpd { delay: None, timeout: Duration::from_secs(150), action: ipsec_types::DpdAction::Clear },
        fragment_size: Some(ike::DEFAULT_FRAGMENT_SIZE),
        ike_version: ike::IkeVersion::V2,
        aggressive: false,
    })
}

/// vpngw with `n` responder tunnels (DPD off, otherwise defaults).
pub fn vpngw_config(seed: &str, n: usize) -> GatewayConfig {
    let tunnels = (0..n)
        .map(|i| TunnelConfig {
            name: name(i),
            remote_address: topo::peer_addr(i).to_string(),
            local_id: GW_ID.into(),
            remote_id: peer_id(i),
            psk: psk(seed, i),
            local_subnets: vec![topo::GW_LAN_NET.into()],
            remote_subnets: vec![topo::peer_subnet(i)],
            start: Start::Respond,
            ike_proposals: vec![IKE_PROPOSAL.into()],
            esp_proposals: vec![ESP_PROPOSAL.into()],
            encapsulation: Encap::Auto,
            lifetimes: Lifetimes { dpd_delay: Some("0s".into()), ..Lifetimes::default() },
            extra: Vec::new(),
            child_sa_per_subnet_pair: false,
            ike_version: None,
        })
        .collect();
    GatewayConfig {
        local_address: topo::GW_WAN.to_string(),
        tun_name: "vpn0".into(),
        tunnels,
        env: Vec::new(),
        gateway_extra: Vec::new(),
    }
}

/// Tunnel 0 alone as a [`SwanConfig`] (what `StrongSwan::start` loads first; the full
/// [`swanctl_conf`] replaces it).
pub fn swan_first(seed: &str) -> SwanConfig {
    SwanConfig {
        local_addr: topo::GW_WAN.to_string(),
        remote_addr: topo::peer_addr(0).to_string(),
        local_id: GW_ID.into(),
        remote_id: peer_id(0),
        psk: psk(seed, 0),
        local_ts: topo::GW_LAN_NET.into(),
        remote_ts: topo::peer_subnet(0),
        ike_proposal: IKE_PROPOSAL.into(),
        esp_proposal: ESP_PROPOSAL.into(),
        initiate: false,
        version: 2,
        timers: Default::default(),
    }
}

/// swanctl.conf with the `n` tunnels as responder connections (strongSwan's defaults
/// otherwise: no DPD, 4 h IKE / 1 h CHILD rekeying) and their secrets.
pub fn swanctl_conf(seed: &str, n: usize) -> String {
    let mut s = String::from("connections {\n");
    for i in 0..n {
        let _ = write!(
            s,
            "    {name} {{\n        version = 2\n        local_addrs = {gw}\n        remote_addrs = {peer}\n        \
             proposals = {IKE_PROPOSAL}\n        mobike = no\n        local {{\n            auth = psk\n            \
             id = {GW_ID}\n        }}\n        remote {{\n            auth = psk\n            id = {pid}\n        \
             }}\n        children {{\n            net {{\n                local_ts = {lan}\n                \
             remote_ts = {sub}\n                esp_proposals = {ESP_PROPOSAL}\n                \
             start_action = none\n            }}\n        }}\n    }}\n",
            name = name(i),
            gw = topo::GW_WAN,
            peer = topo::peer_addr(i),
            pid = peer_id(i),
            lan = topo::GW_LAN_NET,
            sub = topo::peer_subnet(i),
        );
    }
    s.push_str("}\nsecrets {\n");
    for i in 0..n {
        let _ = write!(
            s,
            "    ike-{name} {{\n        id-a = {GW_ID}\n        id-b = {pid}\n        secret = \"{psk}\"\n    }}\n",
            name = name(i),
            pid = peer_id(i),
            psk = psk(seed, i),
        );
    }
    s.push_str("}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_ids_and_keys_per_tunnel() {
        assert_eq!(name(7), "p0007");
        assert_eq!(name(12345), "p12345");
        assert_eq!(index("p0007"), Some(7));
        assert_eq!(index("p12345"), Some(12345));
        assert_eq!(index("site-b"), None);
        assert_eq!(peer_id(3), "p0003.scale.example");
        assert_eq!(psk("s", 1).len(), 32);
        assert_ne!(psk("s", 1), psk("s", 2));
        assert_ne!(psk("s", 1), psk("t", 1));
    }

    #[test]
    fn both_ends_describe_the_same_tunnel() {
        let p = peer_config("seed", 5).unwrap();
        let g = vpngw_config("seed", 6);
        let t = &g.tunnels[5];
        assert_eq!(p.name, t.name);
        assert_eq!(p.local_addr.to_string(), t.remote_address);
        assert_eq!(p.remote_addr.to_string(), g.local_address);
        assert_eq!(p.psk.as_slice(), t.psk.as_bytes());
        assert_eq!(Identity::Fqdn(t.remote_id.clone()), p.local_id);
        assert_eq!(t.remote_subnets, vec!["10.0.5.0/24".to_owned()]);
        assert_eq!(t.lifetimes.dpd_delay.as_deref(), Some("0s"));
        let conf = swanctl_conf("seed", 6);
        assert!(conf.contains(
            "    p0005 {\n        version = 2\n        local_addrs = 2001:db8::1\n        remote_addrs = 2001:db8:1::6\n"
        ));
        assert!(conf.contains("remote_ts = 10.0.5.0/24\n"));
        assert!(conf.contains(&format!("id-b = p0005.scale.example\n        secret = \"{}\"", psk("seed", 5))));
        assert_eq!(conf.matches("start_action = none").count(), 6);
        assert_eq!(swan_first("seed").psk, psk("seed", 0));
    }
}
