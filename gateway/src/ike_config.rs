//! The configuration as `ike` sees it: [`ike::EndpointConfig`] and its
//! [`ike::PeerConfig`]s. Nothing else translates configuration for `ike`, so a new
//! setting has exactly one place to be wired; the lifetime and liveness settings
//! (`ipsec_types::SaTimers` and `ipsec_types::Dpd`) are handed over as they are.

use config::{Config, Encapsulation, IkeVersion, StartAction, TunnelConfig};

/// The endpoint configuration for `ike` from the whole configuration.
pub fn endpoint_config(cfg: &Config) -> ike::EndpointConfig {
    ike::EndpointConfig {
        ike_port: cfg.gateway.ike_port,
        natt_port: cfg.gateway.natt_port,
        peers: cfg.tunnels.iter().map(|t| peer_config(cfg, t)).collect(),
        limits: limits(&cfg.gateway.limits),
    }
}

/// `[gateway]`'s limits on IKE state, as `ike` enforces them.
pub fn limits(l: &config::Limits) -> ike::Limits {
    ike::Limits {
        cookie_threshold: l.cookie_threshold,
        half_open_max: l.half_open_max,
        half_open_per_source: l.half_open_per_source,
        child_sa_max: l.child_sa_max,
        ike_sa_per_peer_max: l.ike_sa_per_peer_max,
    }
}

/// One tunnel as an `ike` peer.
pub fn peer_config(cfg: &Config, t: &TunnelConfig) -> ike::PeerConfig {
    ike::PeerConfig {
        name: t.name.clone(),
        local_addr: cfg.gateway.local_address,
        remote_addr: t.remote_address,
        local_id: t.local_id.clone(),
        remote_id: t.remote_id.clone(),
        psk: t.psk.0.clone(),
        local_ts: t.local_subnets.clone(),
        remote_ts: t.remote_subnets.clone(),
        child_sa_per_subnet_pair: t.child_sa_per_subnet_pair,
        initiate: t.start == StartAction::Initiate,
        ike_proposals: t.ike_proposals.clone(),
        esp_proposals: t.esp_proposals.clone(),
        force_encap: t.encapsulation == Encapsulation::Udp,
        // "raw" keeps quiet, so a vpngw peer with "auto" stays on raw ESP too.
        announce_vpngw: t.encapsulation != Encapsulation::Raw,
        replay_window: t.replay_window,
        timers: t.timers,
        dpd: t.dpd,
        fragment_size: t.fragmentation.then_some(t.fragment_size),
        ike_version: ike_version(t.ike_version),
        aggressive: t.aggressive,
    }
}

/// A tunnel's `ike_version` as `ike` names it.
pub fn ike_version(v: IkeVersion) -> ike::IkeVersion {
    match v {
        IkeVersion::V1 => ike::IkeVersion::V1,
        IkeVersion::V2 => ike::IkeVersion::V2,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ipsec_types::{Dpd, DpdAction, Identity, SaTimers};

    /// A two-tunnel configuration for tests across the crate (parsed from TOML, so it
    /// keeps up with new configuration fields and their defaults).
    pub(crate) fn sample_config() -> Config {
        let text = r#"
[gateway]
local_address = "192.0.2.1"
tun_name = "vpn0"
control_socket = "/run/vpngw/vpngw.sock"

[[tunnel]]
name = "site-b"
remote_address = "192.0.2.2"
local_id = "gw-a.example.net"
psk = "correct horse battery staple"
local_subnets = ["10.1.0.0/24"]
remote_subnets = ["10.2.0.0/24"]
start = "initiate"
ike_proposals = ["aes256gcm16-prfsha256-x25519"]
esp_proposals = ["aes256gcm16"]
encapsulation = "udp"

[[tunnel]]
name = "site-c"
remote_address = "192.0.2.3"
local_id = "gw-a.example.net"
psk = "correct horse battery staple"
local_subnets = ["10.1.0.0/24"]
remote_subnets = ["10.3.0.0/24"]
start = "respond"
encapsulation = "auto"
fragmentation = false
"#;
        match config::parse(text, std::path::Path::new("/etc/vpngw/test.toml")) {
            Ok(c) => c,
            Err(e) => panic!("sample config: {e}"),
        }
    }

    #[test]
    fn maps_every_field_once() {
        let cfg = sample_config();
        let ep = endpoint_config(&cfg);
        assert_eq!((ep.ike_port, ep.natt_port, ep.peers.len()), (500, 4500, 2));
        let b = &ep.peers[0];
        assert_eq!(b.name, "site-b");
        assert!(b.initiate && b.force_encap);
        assert_eq!(b.local_addr, cfg.gateway.local_address);
        assert_eq!(b.remote_addr, cfg.tunnels[0].remote_address);
        assert_eq!(b.local_id, Identity::Fqdn("gw-a.example.net".into()));
        assert_eq!(b.psk.as_slice(), b"correct horse battery staple");
        assert_eq!(b.local_ts, cfg.tunnels[0].local_subnets);
        assert_eq!(b.remote_ts, cfg.tunnels[0].remote_subnets);
        assert_eq!(b.replay_window, 1024);
        assert_eq!(b.ike_proposals, cfg.tunnels[0].ike_proposals);
        // Fragmentation on by default, at the default size `ike` uses too.
        assert_eq!(b.fragment_size, Some(ike::DEFAULT_FRAGMENT_SIZE));
        assert_eq!(b.ike_version, ike::IkeVersion::V2);
        let c = &ep.peers[1];
        assert!(!c.initiate && !c.force_encap);
        // "udp" and "auto" announce vpngw; "raw" does not, and forces nothing.
        assert!(b.announce_vpngw && c.announce_vpngw);
        let mut raw = cfg.clone();
        raw.tunnels[1].encapsulation = config::Encapsulation::Raw;
        let r = peer_config(&raw, &raw.tunnels[1]);
        assert!(!r.announce_vpngw && !r.force_encap);
        assert_eq!(c.fragment_size, None);
        // The PSK never shows in Debug output.
        assert!(!format!("{ep:?}").contains("horse"));
    }

    #[test]
    fn ike_version_reaches_ike() {
        let text = "[gateway]\nlocal_address = \"192.0.2.1\"\n\n[[tunnel]]\nname = \"classic\"\n\
                    remote_address = \"198.51.100.1\"\nike_version = 1\npsk = \"correct horse battery staple\"\n\
                    local_subnets = [\"10.1.0.0/24\", \"10.3.0.0/24\"]\nremote_subnets = [\"10.2.0.0/24\"]\n\
                    ike_proposals = [\"aes128-sha1-modp1024\"]\nesp_proposals = [\"aes128-sha1-modp1024\"]\n";
        let cfg = config::parse(text, std::path::Path::new("/etc/vpngw/test.toml")).unwrap();
        let p = &endpoint_config(&cfg).peers[0];
        assert_eq!(p.ike_version, ike::IkeVersion::V1);
        // IKEv1 does not fragment, and Quick Mode negotiates one SA pair per subnet pair.
        assert_eq!(p.fragment_size, None);
        assert!(p.child_sa_per_subnet_pair);
        assert!(!p.aggressive, "Main Mode unless asked for");
        let aggressive = text.replace("ike_version = 1\n", "ike_version = 1\naggressive = true\n");
        let cfg = config::parse(&aggressive, std::path::Path::new("/etc/vpngw/test.toml")).unwrap();
        assert!(endpoint_config(&cfg).peers[0].aggressive);
        assert_eq!(p.ike_proposals[0].to_string(), "aes128-sha1-prfsha1-modp1024");
        assert_eq!(endpoint_config(&sample_config()).peers[0].ike_version, ike::IkeVersion::V2);
    }

    #[test]
    fn timers_and_dpd_reach_ike() {
        let mut cfg = sample_config();
        let secs = std::time::Duration::from_secs;
        let timers = SaTimers {
            ike_rekey_time: secs(100),
            ike_life_time: secs(200),
            child_rekey_time: secs(30),
            child_life_time: secs(40),
            rekey_jitter_percent: 5,
            child_rekey_bytes: Some(1 << 20),
            child_rekey_packets: Some(1000),
        };
        let dpd = Dpd { delay: None, timeout: secs(9), action: DpdAction::Clear };
        (cfg.tunnels[1].timers, cfg.tunnels[1].dpd) = (timers, dpd);
        let ep = endpoint_config(&cfg);
        let (b, c) = (&ep.peers[0], &ep.peers[1]);
        assert_eq!((b.timers, b.dpd), (SaTimers::default(), Dpd::default()));
        assert_eq!((c.timers, c.dpd), (timers, dpd));
    }

    #[test]
    fn limits_reach_ike_and_the_defaults_agree() {
        // Unset keys: the configuration's documented defaults are `ike`'s.
        assert_eq!(endpoint_config(&sample_config()).limits, ike::Limits::default());
        let text = "[gateway]\nlocal_address = \"192.0.2.1\"\ncookie_threshold = 0\nhalf_open_max = 7\n\
                    half_open_per_source = 3\nchild_sa_max = 2\nike_sa_per_peer_max = 4\n";
        let cfg = config::parse(text, std::path::Path::new("/etc/vpngw/test.toml")).unwrap();
        let l = endpoint_config(&cfg).limits;
        assert_eq!(
            (l.cookie_threshold, l.half_open_max, l.half_open_per_source, l.child_sa_max, l.ike_sa_per_peer_max),
            (0, 7, 3, 2, 4)
        );
    }
}
