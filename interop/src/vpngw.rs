//! The gateway under test: writes a `vpngw` TOML config and PSK file, starts `vpngw` in a
//! namespace and queries it with `vpnctl status [--json]`.
//!
//! Owns: the config text the harness generates and reading CHILD SA state out of
//! `vpnctl status --json` (`{"tunnels":[{"ike_sas":[{"state", "children":[{"state"}]}]}]}`,
//! optionally wrapped in `{"v":1,"status":{...}}`). Does not own: the namespace.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use serde_json::Value;

use crate::netns::Netns;
use crate::process::Proc;
use crate::{ensure, tail, wait_for, Binaries, Error, Result};

/// `start` of a tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Negotiate at start-up.
    Initiate,
    /// Wait for the peer.
    Respond,
}

/// `encapsulation` of a tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encap {
    /// Raw ESP unless a NAT is detected.
    Auto,
    /// Always ESP-in-UDP.
    Udp,
}

/// One `[[tunnel]]`.
#[derive(Clone, Debug)]
pub struct TunnelConfig {
    /// Tunnel name.
    pub name: String,
    /// Peer WAN address.
    pub remote_address: String,
    /// Our IKE identity.
    pub local_id: String,
    /// Peer IKE identity.
    pub remote_id: String,
    /// The pre-shared key (written to a 0600 `psk_file`).
    pub psk: String,
    /// Protected local subnets.
    pub local_subnets: Vec<String>,
    /// Protected remote subnets.
    pub remote_subnets: Vec<String>,
    /// Initiate or respond.
    pub start: Start,
    /// IKE proposals, swanctl syntax.
    pub ike_proposals: Vec<String>,
    /// ESP proposals, swanctl syntax.
    pub esp_proposals: Vec<String>,
    /// Raw ESP or ESP-in-UDP.
    pub encapsulation: Encap,
    /// Rekeying, lifetime and DPD keys (unset ones keep vpngw's defaults).
    pub lifetimes: Lifetimes,
}

/// The issue #3 tunnel keys, each written as given (`"10s"`, `"0%"`, `"restart"`) when set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lifetimes {
    /// `ike_rekey_time`.
    pub ike_rekey_time: Option<String>,
    /// `ike_life_time`.
    pub ike_life_time: Option<String>,
    /// `child_rekey_time`.
    pub child_rekey_time: Option<String>,
    /// `child_life_time`.
    pub child_life_time: Option<String>,
    /// `rekey_jitter`.
    pub rekey_jitter: Option<String>,
    /// `dpd_delay`.
    pub dpd_delay: Option<String>,
    /// `dpd_timeout`.
    pub dpd_timeout: Option<String>,
    /// `dpd_action`.
    pub dpd_action: Option<String>,
}

impl Lifetimes {
    /// The `key = "value"` lines of the keys that are set.
    pub fn toml_lines(&self) -> String {
        [
            ("ike_rekey_time", &self.ike_rekey_time),
            ("ike_life_time", &self.ike_life_time),
            ("child_rekey_time", &self.child_rekey_time),
            ("child_life_time", &self.child_life_time),
            ("rekey_jitter", &self.rekey_jitter),
            ("dpd_delay", &self.dpd_delay),
            ("dpd_timeout", &self.dpd_timeout),
            ("dpd_action", &self.dpd_action),
        ]
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} = {}\n", toml_str(v))))
        .collect()
    }
}

/// A whole gateway config (the control socket is placed by the harness).
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// WAN address.
    pub local_address: String,
    /// TUN device name.
    pub tun_name: String,
    /// The tunnels.
    pub tunnels: Vec<TunnelConfig>,
    /// Extra environment of the daemon (datapath switches such as `VPNGW_TUN_QUEUES`).
    pub env: Vec<(String, String)>,
    /// Extra `[gateway]` keys, as (key, TOML value) (e.g. `("cookie_threshold", "0")`).
    pub gateway_extra: Vec<(String, String)>,
}

fn toml_str(s: &str) -> String {
    // serde_json's string escaping is valid TOML basic-string escaping for these inputs.
    Value::String(s.to_owned()).to_string()
}

fn toml_list(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|s| toml_str(s)).collect::<Vec<_>>().join(", "))
}

impl GatewayConfig {
    /// The TOML text, with PSK files `DIR/<tunnel>.psk` and the control socket `socket`.
    pub fn to_toml(&self, dir: &Path, socket: &Path) -> String {
        let mut s = format!(
            "[gateway]\nlocal_address = {}\ntun_name = {}\ncontrol_socket = {}\n",
            toml_str(&self.local_address),
            toml_str(&self.tun_name),
            toml_str(&socket.to_string_lossy())
        );
        for (k, v) in &self.gateway_extra {
            s.push_str(&format!("{k} = {v}\n"));
        }
        for t in &self.tunnels {
            let psk_file = dir.join(format!("{}.psk", t.name));
            s.push_str(&format!(
                "\n[[tunnel]]\nname = {}\nremote_address = {}\nlocal_id = {}\nremote_id = {}\npsk_file = {}\n\
                 local_subnets = {}\nremote_subnets = {}\nstart = {}\nike_proposals = {}\nesp_proposals = {}\n\
                 encapsulation = {}\n",
                toml_str(&t.name),
                toml_str(&t.remote_address),
                toml_str(&t.local_id),
                toml_str(&t.remote_id),
                toml_str(&psk_file.to_string_lossy()),
                toml_list(&t.local_subnets),
                toml_list(&t.remote_subnets),
                toml_str(match t.start {
                    Start::Initiate => "initiate",
                    Start::Respond => "respond",
                }),
                toml_list(&t.ike_proposals),
                toml_list(&t.esp_proposals),
                toml_str(match t.encapsulation {
                    Encap::Auto => "auto",
                    Encap::Udp => "udp",
                }),
            ));
            s.push_str(&t.lifetimes.toml_lines());
        }
        s
    }
}

/// A running `vpngw`; dropping it stops the daemon by PID.
pub struct Vpngw {
    proc: Proc,
    ns_name: String,
    socket: PathBuf,
    vpnctl: PathBuf,
}

impl Vpngw {
    /// Writes config and PSK files into `dir`, starts `vpngw --config` in `ns` (stderr to
    /// `DIR/vpngw.log`) and waits until `vpnctl status` answers.
    pub fn start(ns: &Netns, cfg: &GatewayConfig, dir: &Path, bins: &Binaries) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        for t in &cfg.tunnels {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(dir.join(format!("{}.psk", t.name)))?;
            f.write_all(t.psk.as_bytes())?;
        }
        let socket = dir.join("vpngw.sock");
        let conf = dir.join("vpngw.toml");
        std::fs::write(&conf, cfg.to_toml(dir, &socket))?;
        let vpngw = bins.vpngw.to_string_lossy();
        let conf_s = conf.to_string_lossy();
        let mut cmd = ns.exec(&[&vpngw, "--config", &conf_s]);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "debug");
        }
        // The log is a file: keep it free of terminal colour codes.
        cmd.env("NO_COLOR", "1");
        for (k, v) in &cfg.env {
            cmd.env(k, v);
        }
        let proc = Proc::spawn("vpngw", cmd, dir)?;
        let mut gw = Self { proc, ns_name: ns.name().to_owned(), socket, vpnctl: bins.vpnctl.clone() };
        let ready = wait_for(Duration::from_secs(20), "vpnctl status to answer", || {
            if !gw.proc.is_running() {
                return Some(false);
            }
            gw.status_json().ok().map(|_| true)
        });
        match ready {
            Ok(true) => Ok(gw),
            Ok(false) => Err(Error::new(format!(
                "vpngw in {} exited at start ({:?}):\n{}",
                gw.ns_name,
                gw.proc.try_exit(),
                gw.log_tail(30)
            ))),
            Err(e) => Err(Error::new(format!("{e} (vpngw in {}):\n{}", gw.ns_name, gw.log_tail(30)))),
        }
    }

    fn vpnctl_command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = crate::command(&[&self.vpnctl.to_string_lossy(), "--socket", &self.socket.to_string_lossy()]);
        cmd.args(args);
        cmd
    }

    fn vpnctl(&self, args: &[&str]) -> Result<String> {
        crate::run(&mut self.vpnctl_command(args))
    }

    /// `vpnctl rekey TUNNEL [--ike] --wait 0`: starts a rekey of the tunnel's CHILD SAs
    /// (or of its IKE SA) and returns at once, without waiting for the new SA (vpnctl
    /// then exits 3, "not completed within the wait", after saying the rekey started).
    pub fn rekey(&self, tunnel: &str, ike: bool) -> Result<()> {
        let mut cmd = self.vpnctl_command(&["rekey", tunnel, "--wait", "0"]);
        if ike {
            cmd.arg("--ike");
        }
        let out = cmd.output().map_err(|e| Error::new(format!("cannot run {cmd:?}: {e}")))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let started = matches!(out.status.code(), Some(0 | 3)) && stdout.contains("started");
        ensure!(started, "{cmd:?} ({}): {}{}", out.status, String::from_utf8_lossy(&out.stderr).trim(), stdout.trim());
        Ok(())
    }

    /// `vpnctl status` (human form).
    pub fn status_text(&self) -> Result<String> {
        self.vpnctl(&["status"])
    }

    /// `vpnctl status --json`, parsed.
    pub fn status_json(&self) -> Result<Value> {
        let text = self.vpnctl(&["status", "--json"])?;
        serde_json::from_str(&text).map_err(|e| Error::new(format!("vpnctl status --json is not JSON ({e}): {text}")))
    }

    /// Waits until `vpnctl status --json` shows an INSTALLED CHILD SA; returns that status.
    pub fn wait_child_sa(&mut self, timeout: Duration) -> Result<Value> {
        let res = wait_for(timeout, "vpngw CHILD SA", || {
            if !self.proc.is_running() {
                return Some(Err(Error::new("vpngw exited")));
            }
            let st = self.status_json().ok()?;
            (installed_child_sas(&st) > 0).then_some(Ok(st))
        });
        match res {
            Ok(Ok(st)) => Ok(st),
            Ok(Err(e)) | Err(e) => Err(Error::new(format!(
                "{e} (vpngw in {}); status: {}\n--- vpngw log ---\n{}",
                self.ns_name,
                self.status_json().map_or_else(|e| e.to_string(), |v| v.to_string()),
                self.log_tail(40)
            ))),
        }
    }

    /// Waits until the log matches `pred` (e.g. an error name); returns the log.
    pub fn wait_log(&mut self, timeout: Duration, what: &str, pred: impl Fn(&str) -> bool) -> Result<String> {
        wait_for(timeout, what, || {
            let log = self.proc.log_text();
            pred(&log).then_some(log)
        })
        .map_err(|e| Error::new(format!("{e} in vpngw's log ({}):\n{}", self.ns_name, self.log_tail(40))))
    }

    /// The daemon's PID.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// True while the daemon runs.
    pub fn is_running(&mut self) -> bool {
        self.proc.is_running()
    }

    /// The daemon's stderr so far.
    pub fn log_text(&self) -> String {
        self.proc.log_text()
    }

    /// The last `n` lines of the daemon's stderr.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.proc.log_text(), n)
    }

    /// SIGTERM and wait (10 s) for a clean exit; `Err` if it had to be killed or exited non-zero.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        let (status, clean) = self.proc.terminate(Duration::from_secs(10));
        let status = status.ok_or_else(|| Error::new("vpngw could not be reaped"))?;
        ensure!(clean, "vpngw in {} ignored SIGTERM for 10 s and was killed:\n{}", self.ns_name, self.log_tail(20));
        ensure!(status.success(), "vpngw in {} exited with {status} on SIGTERM:\n{}", self.ns_name, self.log_tail(20));
        Ok(status)
    }
}

/// The status report inside `vpnctl status --json` output (accepts the bare report or the
/// `{"v":1,"status":{...}}` frame).
fn report(status: &Value) -> &Value {
    status.get("status").filter(|s| s.get("tunnels").is_some()).unwrap_or(status)
}

/// The elements of the array at `key` in `v` (none if absent or not an array).
fn items<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

/// All IKE SA objects in a status report.
fn ike_sas(status: &Value) -> impl Iterator<Item = &Value> {
    items(report(status), "tunnels").flat_map(|t| items(t, "ike_sas"))
}

/// All CHILD SA objects in a status report.
pub fn child_sas(status: &Value) -> Vec<&Value> {
    ike_sas(status).flat_map(|ike| items(ike, "children")).collect()
}

/// How many CHILD SAs are in state `INSTALLED`.
pub fn installed_child_sas(status: &Value) -> usize {
    child_sas(status)
        .iter()
        .filter(|c| c.get("state").and_then(Value::as_str).is_some_and(|s| s.eq_ignore_ascii_case("installed")))
        .count()
}

/// `(encr, encapsulation mode)` of each INSTALLED CHILD SA, e.g. `("AES_GCM_16-256", "raw")`.
pub fn installed_child_details(status: &Value) -> Vec<(String, String)> {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("?").to_owned();
    child_sas(status)
        .into_iter()
        .filter(|c| c.get("state").and_then(Value::as_str).is_some_and(|s| s.eq_ignore_ascii_case("installed")))
        .map(|c| (text(c.get("encr")), text(c.get("encapsulation").and_then(|e| e.get("mode")))))
        .collect()
}

/// The numeric fields of a JSON object (a block of counters), by name.
pub fn counters(v: Option<&Value>) -> BTreeMap<String, u64> {
    v.and_then(Value::as_object).into_iter().flatten().filter_map(|(k, n)| n.as_u64().map(|n| (k.clone(), n))).collect()
}

/// `ike.drops` of a status report: IKE datagrams and requests refused, by reason
/// (`malformed`, `unknown_spi`, `cookie_required`, `half_open_cap`, `rate_limited`,
/// `refused_proposal`, `child_sa_cap`, `cookies_sent`); `None` when the daemon does not
/// report them.
pub fn ike_drops(status: &Value) -> Option<BTreeMap<String, u64>> {
    report(status).get("ike")?.get("drops").map(|d| counters(Some(d)))
}

/// `ike.half_open` of a status report: responder IKE SAs whose peer has not authenticated.
pub fn ike_half_open(status: &Value) -> Option<u64> {
    report(status).get("ike")?.get("half_open")?.as_u64()
}

/// The datapath's drops: `global_drops` by reason, plus each reason of every SA's
/// `drops` summed over all SAs (keys `sa.replay`, `sa.icv_failure`, ...).
pub fn datapath_drops(status: &Value) -> BTreeMap<String, u64> {
    let mut out = counters(report(status).get("global_drops"));
    for c in child_sas(status) {
        for dir in ["inbound", "outbound"] {
            for (k, n) in counters(c.get(dir).and_then(|t| t.get("drops"))) {
                *out.entry(format!("sa.{k}")).or_insert(0) += n;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_drop_counters() {
        let st = serde_json::json!({
            "tunnels": [{"ike_sas": [{"children": [
                {"inbound": {"drops": {"replay": 3, "icv_failure": 2}}, "outbound": {"drops": {"replay": 0}}},
                {"inbound": {"drops": {"replay": 1}}, "outbound": null}
            ]}]}],
            "global_drops": {"malformed": 4, "unknown_spi": 5, "no_sa": 0},
            "ike": {"half_open": 7, "drops": {"cookies_sent": 9, "malformed": 1}}
        });
        let d = datapath_drops(&st);
        assert_eq!((d["malformed"], d["unknown_spi"], d["sa.replay"], d["sa.icv_failure"]), (4, 5, 4, 2));
        assert_eq!(ike_drops(&st).unwrap()["cookies_sent"], 9);
        assert_eq!(ike_half_open(&st), Some(7));
        assert_eq!(ike_drops(&serde_json::json!({"tunnels": []})), None);
    }

    fn sample(child_state: &str) -> Value {
        serde_json::json!({
            "daemon": {"pid": 1},
            "tunnels": [{"name": "site-b", "ike_sas": [{"state": "ESTABLISHED", "children": [
                {"child_id": 1, "state": child_state, "encapsulation": {"mode": "raw"}}
            ]}]}],
            "global_drops": {}
        })
    }

    #[test]
    fn finds_installed_child_sas_bare_and_framed() {
        assert_eq!(installed_child_sas(&sample("INSTALLED")), 1);
        assert_eq!(installed_child_sas(&sample("REKEYING")), 0);
        assert_eq!(installed_child_details(&sample("INSTALLED")), vec![("?".to_owned(), "raw".to_owned())]);
        let framed = serde_json::json!({"v": 1, "status": sample("INSTALLED")});
        assert_eq!(installed_child_sas(&framed), 1);
        assert_eq!(child_sas(&serde_json::json!({"tunnels": [{"ike_sas": []}]})).len(), 0);
    }

    #[test]
    fn config_is_toml_with_psk_file_and_socket() {
        let cfg = GatewayConfig {
            local_address: "192.0.2.1".into(),
            tun_name: "vpn0".into(),
            env: Vec::new(),
            gateway_extra: Vec::new(),
            tunnels: vec![TunnelConfig {
                name: "site-b".into(),
                remote_address: "192.0.2.2".into(),
                local_id: "gw-a.example.net".into(),
                remote_id: "gw-b.example.net".into(),
                psk: "secret".into(),
                local_subnets: vec!["10.1.0.0/24".into()],
                remote_subnets: vec!["10.2.0.0/24".into()],
                start: Start::Initiate,
                ike_proposals: vec!["aes256gcm16-prfsha256-x25519".into()],
                esp_proposals: vec!["aes256gcm16".into()],
                encapsulation: Encap::Udp,
                lifetimes: Lifetimes {
                    child_rekey_time: Some("10s".into()),
                    rekey_jitter: Some("0%".into()),
                    ..Lifetimes::default()
                },
            }],
        };
        let text = cfg.to_toml(Path::new("/d"), Path::new("/d/vpngw.sock"));
        assert!(text.ends_with("child_rekey_time = \"10s\"\nrekey_jitter = \"0%\"\n"), "{text}");
        assert!(!text.contains("dpd_delay"));
        assert!(text.contains("control_socket = \"/d/vpngw.sock\""));
        assert!(text.contains("psk_file = \"/d/site-b.psk\""));
        assert!(text.contains("local_subnets = [\"10.1.0.0/24\"]"));
        assert!(text.contains("start = \"initiate\""));
        assert!(text.contains("encapsulation = \"udp\""));
        assert!(!text.contains("secret"), "the PSK goes to its file, not the config");
    }
}
