//! The effective settings of a validated [`Config`] as TOML in the file's own format
//! (what `vpngw --check` prints): every key with the value in force, defaults filled in,
//! each pre-shared key shown as `"<hidden>"`. With real keys put back, the text parses
//! to the same settings. Keys that a tunnel's IKE version refuses are left out (IKEv1
//! takes no `fragmentation` or `fragment_size`; `aggressive` is shown only for IKEv1; `standby_for` and `failback` only for a
//! standby).

use crate::{Config, IkeVersion, StartAction};
use ipsec_types::{DpdAction, Identity};
use std::fmt::Write as _;
use std::time::Duration;

/// What a pre-shared key is shown as.
pub const HIDDEN: &str = "<hidden>";

impl Config {
    /// The effective settings as TOML; see the module documentation. Never contains a key.
    pub fn effective_toml(&self) -> String {
        let mut s = String::new();
        let g = &self.gateway;
        let l = &g.limits;
        s.push_str("[gateway]\n");
        kv(&mut s, "local_address", &quote(&g.local_address.to_string()));
        kv(&mut s, "tun_name", &quote(&g.tun_name));
        kv(&mut s, "tun_mtu", &g.tun_mtu.to_string());
        kv(&mut s, "control_socket", &quote(&g.control_socket.display().to_string()));
        kv(&mut s, "ike_port", &g.ike_port.to_string());
        kv(&mut s, "natt_port", &g.natt_port.to_string());
        kv(&mut s, "cookie_threshold", &l.cookie_threshold.to_string());
        kv(&mut s, "half_open_max", &l.half_open_max.to_string());
        kv(&mut s, "half_open_per_source", &l.half_open_per_source.to_string());
        kv(&mut s, "child_sa_max", &l.child_sa_max.to_string());
        kv(&mut s, "ike_sa_per_peer_max", &l.ike_sa_per_peer_max.to_string());
        kv(&mut s, "allow_insecure_key_files", &g.allow_insecure_key_files.to_string());
        for t in &self.tunnels {
            let v1 = t.ike_version == IkeVersion::V1;
            s.push_str("\n[[tunnel]]\n");
            kv(&mut s, "name", &quote(&t.name));
            kv(&mut s, "remote_address", &quote(&t.remote_address.to_string()));
            kv(&mut s, "ike_version", if v1 { "1" } else { "2" });
            if v1 {
                kv(&mut s, "aggressive", &t.aggressive.to_string());
            }
            kv(&mut s, "local_id", &quote(&identity(&t.local_id)));
            kv(&mut s, "remote_id", &quote(&identity(&t.remote_id)));
            kv(&mut s, "psk", &quote(HIDDEN));
            kv(&mut s, "local_subnets", &list(t.local_subnets.iter().map(ToString::to_string)));
            kv(&mut s, "remote_subnets", &list(t.remote_subnets.iter().map(ToString::to_string)));
            kv(&mut s, "child_sa_per_subnet_pair", &t.child_sa_per_subnet_pair.to_string());
            let start = match t.start {
                StartAction::Initiate => "initiate",
                StartAction::Respond => "respond",
            };
            kv(&mut s, "start", &quote(start));
            kv(&mut s, "ike_proposals", &list(t.ike_proposals.iter().map(ToString::to_string)));
            kv(&mut s, "esp_proposals", &list(t.esp_proposals.iter().map(ToString::to_string)));
            kv(&mut s, "encapsulation", &quote(t.encapsulation.as_str()));
            kv(&mut s, "replay_window", &t.replay_window.to_string());
            if !v1 {
                kv(&mut s, "fragmentation", &t.fragmentation.to_string());
                kv(&mut s, "fragment_size", &t.fragment_size.to_string());
            }
            let tm = &t.timers;
            kv(&mut s, "ike_rekey_time", &quote(&duration(tm.ike_rekey_time)));
            kv(&mut s, "ike_life_time", &quote(&duration(tm.ike_life_time)));
            kv(&mut s, "child_rekey_time", &quote(&duration(tm.child_rekey_time)));
            kv(&mut s, "child_life_time", &quote(&duration(tm.child_life_time)));
            kv(&mut s, "rekey_jitter", &quote(&format!("{}%", tm.rekey_jitter_percent)));
            // 0 is off.
            kv(&mut s, "child_rekey_bytes", &tm.child_rekey_bytes.unwrap_or(0).to_string());
            kv(&mut s, "child_rekey_packets", &tm.child_rekey_packets.unwrap_or(0).to_string());
            kv(&mut s, "dpd_delay", &quote(&t.dpd.delay.map_or_else(|| "0s".into(), duration)));
            kv(&mut s, "dpd_timeout", &quote(&duration(t.dpd.timeout)));
            let action = match t.dpd.action {
                DpdAction::Restart => "restart",
                DpdAction::Clear => "clear",
            };
            kv(&mut s, "dpd_action", &quote(action));
            if let Some(primary) = &t.standby_for {
                kv(&mut s, "standby_for", &quote(primary));
                kv(&mut s, "failback", &t.failback.to_string());
            }
        }
        s
    }
}

fn kv(s: &mut String, key: &str, value: &str) {
    let _ = writeln!(s, "{key} = {value}");
}

/// A TOML basic string (escaped as TOML wants).
fn quote(v: &str) -> String {
    toml::Value::String(v.to_owned()).to_string()
}

fn list(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.map(|i| quote(&i)).collect();
    format!("[{}]", items.join(", "))
}

/// An identity as the file writes it: an FQDN that would read as an address or an
/// e-mail address gets the `@` prefix.
fn identity(id: &Identity) -> String {
    match id {
        Identity::Fqdn(f) if f.parse::<std::net::IpAddr>().is_ok() || f.contains('@') => format!("@{f}"),
        Identity::Fqdn(f) | Identity::Rfc822(f) => f.clone(),
        Identity::Ipv4(a) => a.to_string(),
        Identity::Ipv6(a) => a.to_string(),
    }
}

/// A duration in the largest whole unit (`"4h"`, `"66m"`, `"90s"`).
fn duration(d: Duration) -> String {
    crate::timers::show(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_read_back_as_the_same_kind() {
        for id in [
            Identity::Fqdn("gw.example.net".into()),
            Identity::Fqdn("10.0.0.1".into()),
            Identity::Rfc822("ops@example.net".into()),
            Identity::Ipv4("192.0.2.1".parse().unwrap()),
            Identity::Ipv6("2001:db8::1".parse().unwrap()),
        ] {
            assert_eq!(Identity::parse(&identity(&id)), Ok(id.clone()), "{}", identity(&id));
        }
    }

    #[test]
    fn strings_read_back_unchanged() {
        for v in ["plain", "a\"b\\c", "it's", "tab\there", "/run/vpngw/vpngw.sock"] {
            let table: toml::Table = toml::from_str(&format!("k = {}", quote(v))).unwrap();
            assert_eq!(table.get("k").and_then(toml::Value::as_str), Some(v), "{}", quote(v));
        }
        assert_eq!(list(["x".to_string(), "y".to_string()].into_iter()), "[\"x\", \"y\"]");
    }
}
