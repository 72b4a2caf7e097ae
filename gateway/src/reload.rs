//! Configuration reload (`vpnctl reload`, SIGHUP), run on the control thread: the file
//! is read and validated again and refused whole, the running configuration staying in
//! force, if it is invalid (the usual `file:line: key` error) or changes a `[gateway]`
//! key that only a restart can change. Otherwise the difference is applied in
//! make-before-break order: routes of new remote subnets first, then
//! `ike::Endpoint::reconfigure` (unchanged tunnels untouched, removed ones deleted with
//! DELETE, changed ones negotiated again, added ones started) and the new limits, then
//! the removal of routes no tunnel needs any more.
//!
//! `[gateway]`: the limits (`cookie_threshold`, `half_open_max`, `half_open_per_source`,
//! `child_sa_max`, `ike_sa_per_peer_max`) and `allow_insecure_key_files` apply at once;
//! [`RESTART_KEYS`] name the sockets, device and paths opened before privileges were
//! dropped, and a change to one of them is refused naming the key. The log level is not
//! in the file (`--log-level`, `RUST_LOG`) and is not reloaded.

use crate::control::proto::{ErrorCode, ErrorReply, ReloadReport};
use crate::sys::route::{route_for, Route, Routes};
use crate::sys::tun::Tun;
use config::{Config, GatewayConfig};
use ipsec_types::Timestamp;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// `[gateway]` keys that take effect only when vpngw restarts.
pub const RESTART_KEYS: &[&str] = &["local_address", "tun_name", "tun_mtu", "control_socket", "ike_port", "natt_port"];

/// What a reload changes on the host besides `ike` and `esp`: the routes into the TUN
/// device, and IPv6 on that device.
pub trait Host {
    /// The routes installed now.
    fn routes(&self) -> Vec<Route>;
    /// Installs a route (replacing one to the same destination through the same device).
    fn add_route(&mut self, route: Route) -> io::Result<()>;
    /// Removes a route.
    fn remove_route(&mut self, route: &Route) -> io::Result<()>;
    /// The host's addresses (a route's preferred source is picked among them).
    fn local_addresses(&self) -> Vec<IpAddr>;
    /// Switches IPv6 on on the TUN device (it is off while no IPv6 subnet is tunnelled).
    fn enable_ipv6(&mut self) -> io::Result<()>;
}

/// The real host: routes through `ip`, the TUN device's sysctls.
pub struct SystemHost {
    /// The routes the daemon installed (removed when dropped).
    pub routes: Routes,
    /// The TUN device.
    pub tun: Arc<Tun>,
}

impl Host for SystemHost {
    fn routes(&self) -> Vec<Route> {
        self.routes.installed().to_vec()
    }

    fn add_route(&mut self, route: Route) -> io::Result<()> {
        self.routes.add(route)
    }

    fn remove_route(&mut self, route: &Route) -> io::Result<()> {
        self.routes.remove(route)
    }

    fn local_addresses(&self) -> Vec<IpAddr> {
        crate::sys::local_addresses().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot list local addresses; routes get no preferred source");
            Vec::new()
        })
    }

    fn enable_ipv6(&mut self) -> io::Result<()> {
        self.tun.quiet_ipv6(false)
    }
}

/// The routes a configuration asks for: each tunnel's remote subnets through `dev`,
/// with a preferred source among `host_addrs` inside its local subnets; no duplicates.
pub fn wanted_routes(cfg: &Config, dev: &str, host_addrs: &[IpAddr]) -> Vec<Route> {
    let mut wanted = Vec::new();
    for t in &cfg.tunnels {
        for subnet in &t.remote_subnets {
            let r = route_for(subnet, dev, &t.local_subnets, host_addrs);
            if r.src.is_none() {
                tracing::info!(
                    tunnel = %t.name,
                    subnet = %subnet,
                    "no local address inside local_subnets: traffic from this host itself will not use the tunnel"
                );
            }
            if !wanted.contains(&r) {
                wanted.push(r);
            }
        }
    }
    wanted
}

/// The first [`RESTART_KEYS`] key whose value differs, as a message naming it.
pub fn restart_needed(old: &GatewayConfig, new: &GatewayConfig) -> Option<String> {
    let changed = |key: &str, a: String, b: String| {
        (a != b).then(|| format!("`gateway.{key}` changed from {a} to {b}: it takes effect only when vpngw restarts"))
    };
    changed("local_address", old.local_address.to_string(), new.local_address.to_string())
        .or_else(|| changed("tun_name", format!("{:?}", old.tun_name), format!("{:?}", new.tun_name)))
        .or_else(|| changed("tun_mtu", old.tun_mtu.to_string(), new.tun_mtu.to_string()))
        .or_else(|| {
            let show = |g: &GatewayConfig| format!("{:?}", g.control_socket.display().to_string());
            changed("control_socket", show(old), show(new))
        })
        .or_else(|| changed("ike_port", old.ike_port.to_string(), new.ike_port.to_string()))
        .or_else(|| changed("natt_port", old.natt_port.to_string(), new.natt_port.to_string()))
}

/// The `[gateway]` keys that apply at once and changed.
pub fn live_changes(old: &GatewayConfig, new: &GatewayConfig) -> Vec<String> {
    let (a, b) = (&old.limits, &new.limits);
    let keys = [
        ("cookie_threshold", a.cookie_threshold != b.cookie_threshold),
        ("half_open_max", a.half_open_max != b.half_open_max),
        ("half_open_per_source", a.half_open_per_source != b.half_open_per_source),
        ("child_sa_max", a.child_sa_max != b.child_sa_max),
        ("ike_sa_per_peer_max", a.ike_sa_per_peer_max != b.ike_sa_per_peer_max),
        ("allow_insecure_key_files", old.allow_insecure_key_files != new.allow_insecure_key_files),
    ];
    keys.iter().filter(|(_, changed)| *changed).map(|(k, _)| format!("gateway.{k}")).collect()
}

/// Reloads the configuration file of a running daemon.
pub struct Reloader {
    /// The configuration file (as given to `vpngw --config`).
    pub path: PathBuf,
    /// Routes and the TUN device.
    pub host: Box<dyn Host + Send>,
}

impl Reloader {
    /// Reads the file again and applies it (see the module documentation). Returns the
    /// new configuration and what changed, or the error for `vpnctl` (nothing changed).
    pub fn reload(
        &mut self,
        now: Timestamp,
        endpoint: &mut ike::Endpoint,
        current: &Config,
    ) -> Result<(Config, ReloadReport), ErrorReply> {
        let file = self.path.display().to_string();
        let refuse = |code, message: String| ErrorReply { code, message };
        let new = config::load(&self.path).map_err(|e| refuse(ErrorCode::InvalidConfig, e.to_string()))?;
        if let Some(why) = restart_needed(&current.gateway, &new.gateway) {
            return Err(refuse(ErrorCode::RestartRequired, format!("{file}: {why}")));
        }

        // Routes for the new subnets before any SA could carry them.
        let dev = &current.gateway.tun_name;
        let installed = self.host.routes();
        let wanted = wanted_routes(&new, dev, &self.host.local_addresses());
        let had_ipv6 = installed.iter().any(|r| r.dest.contains(':'));
        if !had_ipv6 && wanted.iter().any(|r| r.dest.contains(':')) {
            self.host.enable_ipv6().map_err(|e| {
                refuse(ErrorCode::Unavailable, format!("cannot switch IPv6 on on {dev} for the new IPv6 subnets: {e}"))
            })?;
        }
        let mut routes = Vec::new();
        let mut added: Vec<Route> = Vec::new();
        for r in wanted.iter().filter(|r| !installed.contains(r)) {
            if let Err(e) = self.host.add_route(r.clone()) {
                self.undo(&added, &installed);
                return Err(refuse(ErrorCode::Unavailable, format!("cannot install the route to {}: {e}", r.dest)));
            }
            routes.push(format!("+{}", r.dest));
            added.push(r.clone());
        }

        let outcome = endpoint.reconfigure(now, crate::ike_config::endpoint_config(&new).peers);
        endpoint.set_limits(crate::ike_config::limits(&new.gateway.limits));

        for r in installed.iter().filter(|r| !wanted.iter().any(|w| w.same_destination(r))) {
            if let Err(e) = self.host.remove_route(r) {
                tracing::warn!(route = %r.dest, error = %e, "route removal");
            }
            routes.push(format!("-{}", r.dest));
        }
        let report = ReloadReport {
            file,
            added: outcome.added,
            removed: outcome.removed,
            changed: outcome.changed,
            unchanged: outcome.unchanged,
            gateway: live_changes(&current.gateway, &new.gateway),
            routes,
            warnings: new.warnings.clone(),
        };
        Ok((new, report))
    }

    /// Takes back the routes `added` by a reload that failed half way, putting back the
    /// ones they replaced.
    fn undo(&mut self, added: &[Route], before: &[Route]) {
        for r in added.iter().rev() {
            let result = match before.iter().find(|b| b.same_destination(r)) {
                Some(old) => self.host.add_route(old.clone()),
                None => self.host.remove_route(r),
            };
            if let Err(e) = result {
                tracing::warn!(route = %r.dest, error = %e, "route rollback");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BASE: &str = r#"[gateway]
local_address = "192.0.2.1"
tun_name = "vpn0"
control_socket = "/nonexistent/vpngw.sock"

[[tunnel]]
name = "site-b"
remote_address = "192.0.2.2"
psk = "0123456789abcdef0123456789abcdef"
local_subnets = ["10.1.0.0/24"]
remote_subnets = ["10.2.0.0/24"]
"#;

    fn cfg(text: &str) -> Config {
        config::parse(text, Path::new("/etc/vpngw/vpngw.toml")).unwrap()
    }

    fn with_gateway_key(line: &str) -> Config {
        cfg(&BASE.replace("[gateway]\n", &format!("[gateway]\n{line}\n")))
    }

    #[test]
    fn every_restart_key_is_named() {
        let old = cfg(BASE);
        for (line, key) in [
            ("", None),
            ("half_open_max = 3", None),
            ("tun_mtu = 1300", Some("tun_mtu")),
            ("ike_port = 1500", Some("ike_port")),
            ("natt_port = 14500", Some("natt_port")),
        ] {
            let why = restart_needed(&old.gateway, &with_gateway_key(line).gateway);
            match key {
                None => assert_eq!(why, None, "{line}"),
                Some(k) => {
                    let why = why.unwrap_or_default();
                    assert!(why.starts_with(&format!("`gateway.{k}` changed from ")), "{why}");
                }
            }
        }
        let moved = cfg(&BASE.replace("192.0.2.1", "192.0.2.9"));
        assert_eq!(
            restart_needed(&old.gateway, &moved.gateway).unwrap(),
            "`gateway.local_address` changed from 192.0.2.1 to 192.0.2.9: it takes effect only when vpngw restarts"
        );
        let renamed = cfg(&BASE.replace("vpn0", "vpn1"));
        assert!(restart_needed(&old.gateway, &renamed.gateway)
            .unwrap()
            .contains("`gateway.tun_name` changed from \"vpn0\" to \"vpn1\""));
        let socket = cfg(&BASE.replace("/nonexistent/vpngw.sock", "/nonexistent/other.sock"));
        assert!(restart_needed(&old.gateway, &socket.gateway).unwrap().starts_with("`gateway.control_socket`"));
    }

    #[test]
    fn live_keys_are_listed() {
        let old = cfg(BASE);
        let new = with_gateway_key("half_open_max = 3\ncookie_threshold = 0\nallow_insecure_key_files = true");
        assert_eq!(
            live_changes(&old.gateway, &new.gateway),
            ["gateway.cookie_threshold", "gateway.half_open_max", "gateway.allow_insecure_key_files"]
        );
        assert!(live_changes(&old.gateway, &old.gateway).is_empty());
    }

    /// Routes in memory; `add_route` fails for `fail_on`.
    struct Table {
        routes: Vec<Route>,
        fail_on: &'static str,
    }

    impl Host for Table {
        fn routes(&self) -> Vec<Route> {
            self.routes.clone()
        }
        fn add_route(&mut self, route: Route) -> io::Result<()> {
            if route.dest == self.fail_on {
                return Err(io::Error::other("RTNETLINK answers: File exists"));
            }
            self.routes.retain(|r| !r.same_destination(&route));
            self.routes.push(route);
            Ok(())
        }
        fn remove_route(&mut self, route: &Route) -> io::Result<()> {
            self.routes.retain(|r| !r.same_destination(route));
            Ok(())
        }
        fn local_addresses(&self) -> Vec<IpAddr> {
            Vec::new()
        }
        fn enable_ipv6(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_route_that_cannot_be_installed_refuses_the_reload_and_takes_back_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vpngw.toml");
        let more = BASE.replace(
            "remote_subnets = [\"10.2.0.0/24\"]",
            "remote_subnets = [\"10.2.0.0/24\", \"10.4.0.0/24\", \"10.5.0.0/24\"]",
        );
        std::fs::write(&path, &more).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let current = cfg(BASE);
        let routes = wanted_routes(&current, "vpn0", &[]);
        let host = Table { routes: routes.clone(), fail_on: "10.5.0.0/24" };
        let mut reloader = Reloader { path, host: Box::new(host) };
        let mut ep =
            ike::Endpoint::new(crate::ike_config::endpoint_config(&current), Box::new(crate::rng::SystemRng::new()));
        let e = reloader.reload(Timestamp::ZERO, &mut ep, &current).unwrap_err();
        assert_eq!(e.code, ErrorCode::Unavailable);
        assert!(e.message.contains("10.5.0.0/24") && e.message.contains("File exists"), "{}", e.message);
        assert_eq!(reloader.host.routes(), routes, "10.4.0.0/24 taken back");
        // The endpoint still has the old tunnel only, untouched.
        assert_eq!(ep.tunnel_names(), ["site-b"]);
    }
}
