//! The one place where the configuration becomes `ike`'s view of the world
//! ([`ike::EndpointConfig`] / [`ike::PeerConfig`]). Nothing else translates config
//! fields for `ike`, so a new config knob has exactly one place to be wired.

use config::{Config, DpdAction, Encapsulation, StartAction, TunnelConfig};

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
        initiate: t.start == StartAction::Initiate,
        ike_proposals: t.ike_proposals.clone(),
        esp_proposals: t.esp_proposals.clone(),
        force_encap: t.encapsulation == Encapsulation::Udp,
        replay_window: t.replay_window,
        timers: ipsec_types::SaTimers {
            ike_rekey_time: t.ike_rekey_time,
            ike_life_time: t.ike_life_time,
            child_rekey_time: t.child_rekey_time,
            child_life_time: t.child_life_time,
            rekey_jitter_percent: t.rekey_jitter_percent,
            child_rekey_bytes: t.child_rekey_bytes,
            child_rekey_packets: t.child_rekey_packets,
        },
        dpd: ipsec_types::Dpd {
            delay: t.dpd_delay,
            timeout: t.dpd_timeout,
            action: match t.dpd_action {
                DpdAction::Restart => ipsec_types::DpdAction::Restart,
                DpdAction::Clear => ipsec_types::DpdAction::Clear,
            },
        },
    }
}

/// `initiate` / `respond`, as shown by `vpnctl status`.
pub fn start_keyword(s: StartAction) -> &'static str {
    match s {
        StartAction::Initiate => "initiate",
        StartAction::Respond => "respond",
    }
}

/// `restart` / `clear`, as shown by `vpnctl status`.
pub fn dpd_action_keyword(a: DpdAction) -> &'static str {
    match a {
        DpdAction::Restart => "restart",
        DpdAction::Clear => "clear",
    }
}

/// `auto` / `udp`, as shown by `vpnctl status`.
pub fn encapsulation_keyword(e: Encapsulation) -> &'static str {
    match e {
        Encapsulation::Auto => "auto",
        Encapsulation::Udp => "udp",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ipsec_types::Identity;

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
        let c = &ep.peers[1];
        assert!(!c.initiate && !c.force_encap);
        // The PSK never shows in Debug output.
        assert!(!format!("{ep:?}").contains("horse"));
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
