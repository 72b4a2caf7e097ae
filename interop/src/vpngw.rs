//! The gateway under test: writes a `vpngw` TOML config and PSK file, starts `vpngw` in a
//! namespace and queries it with `vpnctl status [--json]`.
//!
//! Owns: the config text the harness generates and reading `vpnctl status --json`, into
//! the gateway's own [`StatusReport`] (the one typed reader of it). Does not own: the
//! namespace.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};
use std::time::Duration;

use gateway::control::proto::{ChildSaInfo, Encapsulation, Reply, ResponseFrame, StatusReport};
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
    /// The default: ESP-in-UDP with another vpngw or behind a NAT, raw ESP otherwise.
    Auto,
    /// Raw ESP unless a NAT is detected; no vpngw announcement.
    Raw,
    /// Always ESP-in-UDP.
    Udp,
}

impl Encap {
    /// The configuration's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Raw => "raw",
            Self::Udp => "udp",
        }
    }
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
    /// Further `[[tunnel]]` keys, as (key, TOML value) (e.g. `("fragment_size", "576")`).
    pub extra: Vec<(String, String)>,
    /// `child_sa_per_subnet_pair`: one CHILD SA per subnet pair instead of one for all.
    pub child_sa_per_subnet_pair: bool,
    /// `ike_version` (1: IKEv1 Main Mode and Quick Mode); unset keeps the default, 2.
    pub ike_version: Option<u8>,
}

/// The lifetime and DPD keys of a tunnel, each written as given (`"10s"`, `"0%"`, `"restart"`) when set.
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
    /// `child_rekey_packets` (a number, written as a TOML integer).
    pub child_rekey_packets: Option<u64>,
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
        .chain(self.child_rekey_packets.map(|n| format!("child_rekey_packets = {n}\n")))
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
                toml_str(t.encapsulation.as_str()),
            ));
            if t.child_sa_per_subnet_pair {
                s.push_str("child_sa_per_subnet_pair = true\n");
            }
            if let Some(v) = t.ike_version {
                s.push_str(&format!("ike_version = {v}\n"));
            }
            s.push_str(&t.lifetimes.toml_lines());
            for (k, v) in &t.extra {
                s.push_str(&format!("{k} = {v}\n"));
            }
        }
        s
    }
}

/// Writes `DIR/vpngw.toml` and its PSK files (mode 0600) for `cfg`, the control socket
/// at `DIR/vpngw.sock`; returns both paths. `Vpngw::start` writes its files so, and a test
/// that reloads a running daemon writes the new configuration the same way.
pub fn write_config(cfg: &GatewayConfig, dir: &Path) -> Result<(PathBuf, PathBuf)> {
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
    Ok((conf, socket))
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
        let (conf, socket) = write_config(cfg, dir)?;
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
            gw.status().ok().map(|_| true)
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

    fn vpnctl_command(&self, args: &[&str]) -> Command {
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

    /// Runs `vpnctl ARGS` against this daemon, whatever its exit code: the whole output.
    pub fn ctl(&self, args: &[&str]) -> Result<Output> {
        self.vpnctl_command(args).output().map_err(|e| Error::new(format!("cannot run vpnctl {args:?}: {e}")))
    }

    /// `vpnctl status` (human form).
    pub fn status_text(&self) -> Result<String> {
        self.vpnctl(&["status"])
    }

    /// `vpnctl status --json`, read into the gateway's [`StatusReport`].
    pub fn status(&self) -> Result<StatusReport> {
        parse_status(&self.vpnctl(&["status", "--json"])?)
    }

    /// `vpnctl status --json` as the daemon printed it (for byte counts).
    pub fn status_json_text(&self) -> Result<String> {
        self.vpnctl(&["status", "--json"])
    }

    /// Waits until `vpnctl status --json` shows an INSTALLED CHILD SA; returns that status.
    pub fn wait_child_sa(&mut self, timeout: Duration) -> Result<StatusReport> {
        let res = wait_for(timeout, "vpngw CHILD SA", || {
            if !self.proc.is_running() {
                return Some(Err(Error::new("vpngw exited")));
            }
            let st = self.status().ok()?;
            (installed_child_sas(&st) > 0).then_some(Ok(st))
        });
        match res {
            Ok(Ok(st)) => Ok(st),
            Ok(Err(e)) | Err(e) => Err(Error::new(format!(
                "{e} (vpngw in {}); status: {}\n--- vpngw log ---\n{}",
                self.ns_name,
                self.status_json_text().unwrap_or_else(|e| e.to_string()),
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

    /// Starts `vpnctl watch --json` against this daemon (output in `DIR/vpnctl-watch.out`)
    /// and returns once the subscription is in place, so every later event is seen.
    pub fn watch(&self, dir: &Path) -> Result<Watch> {
        let mut proc = Proc::spawn("vpnctl-watch", self.vpnctl_command(&["watch", "--json"]), dir)?;
        wait_for(Duration::from_secs(10), "vpnctl watch to subscribe", || {
            (proc.out_text().contains("\"watching\"") || !proc.is_running()).then_some(())
        })?;
        ensure!(proc.is_running(), "vpnctl watch exited: {}{}", proc.out_text(), proc.log_text());
        Ok(Watch { proc })
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

/// A running `vpnctl watch --json`; dropping it stops the client.
pub struct Watch {
    proc: Proc,
}

/// One event `vpnctl watch --json` printed (read from the JSON by name, so that kinds
/// this harness does not know yet are still seen).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// `kind`, e.g. `child_up`, `dpd_failed`, `failover`.
    pub kind: String,
    /// The tunnel, if any.
    pub tunnel: Option<String>,
    /// The one-line message.
    pub message: String,
}

impl Watch {
    /// Every event so far, in order.
    pub fn events(&self) -> Vec<Event> {
        parse_events(&self.proc.out_text())
    }

    /// Waits until an event after the first `skip` ones satisfies `pred`; returns it.
    pub fn wait_event(
        &mut self,
        timeout: Duration,
        skip: usize,
        what: &str,
        pred: impl Fn(&Event) -> bool,
    ) -> Result<Event> {
        let res = wait_for(timeout, what, || {
            if !self.proc.is_running() {
                return Some(None);
            }
            self.events().into_iter().skip(skip).find(|e| pred(e)).map(Some)
        });
        match res {
            Ok(Some(e)) => Ok(e),
            Ok(None) => {
                Err(Error::new(format!("vpnctl watch exited while waiting for {what}: {}", self.proc.log_text())))
            }
            Err(e) => Err(Error::new(format!("{e}; events seen:\n{}", self.describe(skip)))),
        }
    }

    /// The events after the first `skip`, one per line, for messages.
    pub fn describe(&self, skip: usize) -> String {
        self.events()
            .iter()
            .skip(skip)
            .map(|e| format!("  {} {} {:?} {}", e.unix_ms, e.kind, e.tunnel.as_deref().unwrap_or("-"), e.message))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The `event` frames of `vpnctl watch --json` output (`{"v":1,"event":{...}}` lines).
pub fn parse_events(text: &str) -> Vec<Event> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            let e = v.get("event")?;
            Some(Event {
                unix_ms: e.get("unix_ms")?.as_u64()?,
                kind: e.get("kind")?.as_str()?.to_owned(),
                tunnel: e.get("tunnel").and_then(Value::as_str).map(str::to_owned),
                message: e.get("message").and_then(Value::as_str).unwrap_or("").to_owned(),
            })
        })
        .collect()
}

/// A tunnel's `failover` block in `vpnctl status --json` (read by name from the JSON).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failover {
    /// The group: the primary tunnel's name.
    pub group: String,
    /// `primary` or `standby`.
    pub role: String,
    /// `active`, `standby` or `down`.
    pub state: String,
    /// Whether traffic returns to the primary when it is up again.
    pub failback: bool,
}

/// The `failover` block of tunnel `name` in `vpnctl status --json` output, `None` if the
/// tunnel has none (or is not there).
pub fn failover_of(status_json: &str, name: &str) -> Result<Option<Failover>> {
    let v: Value = serde_json::from_str(status_json)
        .map_err(|e| Error::new(format!("vpnctl status --json is not JSON ({e}): {status_json}")))?;
    let tunnels = v.pointer("/status/tunnels").and_then(Value::as_array).cloned().unwrap_or_default();
    let Some(f) =
        tunnels.iter().find(|t| t.get("name").and_then(Value::as_str) == Some(name)).and_then(|t| t.get("failover"))
    else {
        return Ok(None);
    };
    let text = |k: &str| f.get(k).and_then(Value::as_str).map(str::to_owned);
    match (text("group"), text("role"), text("state"), f.get("failback").and_then(Value::as_bool)) {
        (Some(group), Some(role), Some(state), Some(failback)) => Ok(Some(Failover { group, role, state, failback })),
        _ => Err(Error::new(format!("tunnel {name}'s failover block is incomplete: {f}"))),
    }
}

/// Packets sealed (`out`) and delivered (`in`) by tunnel `name` over all its CHILD SAs.
pub fn tunnel_packets(status: &StatusReport, name: &str) -> (u64, u64) {
    let mut sums = (0, 0);
    for c in status.tunnels.iter().filter(|t| t.name == name).flat_map(|t| &t.ike_sas).flat_map(|i| &i.children) {
        sums.0 += c.outbound.as_ref().map_or(0, |t| t.packets);
        sums.1 += c.inbound.as_ref().map_or(0, |t| t.packets);
    }
    sums
}

/// How many CHILD SAs of tunnel `name` are INSTALLED.
pub fn tunnel_installed(status: &StatusReport, name: &str) -> usize {
    status
        .tunnels
        .iter()
        .filter(|t| t.name == name)
        .flat_map(|t| &t.ike_sas)
        .flat_map(|i| &i.children)
        .filter(installed)
        .count()
}

/// Reads `vpnctl status --json` output (`{"v":1,"status":{...}}`) into a [`StatusReport`].
pub fn parse_status(text: &str) -> Result<StatusReport> {
    match serde_json::from_str::<ResponseFrame>(text) {
        Ok(ResponseFrame { reply: Reply::Status(st), .. }) => Ok(st),
        Ok(other) => Err(Error::new(format!("vpnctl status --json answered {other:?}"))),
        Err(e) => Err(Error::new(format!("vpnctl status --json is not a status report ({e}): {text}"))),
    }
}

/// A status report as one line of JSON, for failure messages.
pub fn one_line(status: &StatusReport) -> String {
    serde_json::to_string(status).unwrap_or_else(|e| format!("(status not encodable: {e})"))
}

/// All CHILD SAs in a status report.
pub fn child_sas(status: &StatusReport) -> Vec<&ChildSaInfo> {
    status.tunnels.iter().flat_map(|t| &t.ike_sas).flat_map(|ike| &ike.children).collect()
}

fn installed(c: &&ChildSaInfo) -> bool {
    c.state.eq_ignore_ascii_case("installed")
}

/// How many CHILD SAs are in state `INSTALLED`.
pub fn installed_child_sas(status: &StatusReport) -> usize {
    child_sas(status).into_iter().filter(installed).count()
}

/// `(encr, encapsulation mode)` of each INSTALLED CHILD SA, e.g. `("AES_GCM_16-256", "raw")`.
pub fn installed_child_details(status: &StatusReport) -> Vec<(String, String)> {
    child_sas(status).into_iter().filter(installed).map(|c| (c.encr.clone(), encap_mode(&c.encapsulation))).collect()
}

/// `raw` or `udp`, as the JSON spells the mode.
pub fn encap_mode(e: &Encapsulation) -> String {
    match e {
        Encapsulation::Raw => "raw",
        Encapsulation::Udp { .. } => "udp",
    }
    .to_owned()
}

/// The numeric fields of a block of counters (any serializable struct of them), by name.
pub fn counters(block: &impl serde::Serialize) -> BTreeMap<String, u64> {
    let v = serde_json::to_value(block).unwrap_or(Value::Null);
    v.as_object().into_iter().flatten().filter_map(|(k, n)| n.as_u64().map(|n| (k.clone(), n))).collect()
}

/// The datapath's drops: `global_drops` by reason, plus each reason of every SA's
/// `drops` summed over all SAs (keys `sa.replay`, `sa.icv_failure`, ...).
pub fn datapath_drops(status: &StatusReport) -> BTreeMap<String, u64> {
    let mut out = counters(&status.global_drops);
    for c in child_sas(status) {
        for t in [&c.inbound, &c.outbound].into_iter().flatten() {
            for (k, n) in counters(&t.drops) {
                *out.entry(format!("sa.{k}")).or_insert(0) += n;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use gateway::control::proto::{IkeSaInfo, SaDrops, SaTraffic, TunnelStatus};

    fn child(state: &str, encapsulation: Encapsulation, replay: u64) -> ChildSaInfo {
        let drops = SaDrops { replay, icv_failure: 2, ..SaDrops::default() };
        ChildSaInfo {
            state: state.into(),
            encr: "AES_GCM_16-256".into(),
            encapsulation,
            inbound: Some(SaTraffic { drops, ..SaTraffic::default() }),
            ..ChildSaInfo::default()
        }
    }

    fn sample(children: Vec<ChildSaInfo>) -> StatusReport {
        let ike = IkeSaInfo { state: "ESTABLISHED".into(), children, ..IkeSaInfo::default() };
        let mut st = StatusReport::default();
        st.tunnels.push(TunnelStatus { name: "site-b".into(), ike_sas: vec![ike], ..TunnelStatus::default() });
        st.global_drops.unknown_spi = 5;
        st
    }

    #[test]
    fn reads_the_status_vpnctl_prints() {
        let udp = Encapsulation::Udp { local_port: 4500, remote_port: 4500 };
        let st = sample(vec![child("INSTALLED", Encapsulation::Raw, 3), child("REKEYED", udp, 1)]);
        let frame = ResponseFrame { v: 1, reply: Reply::Status(st.clone()) };
        let text = serde_json::to_string_pretty(&frame).unwrap();
        assert_eq!(parse_status(&text).unwrap(), st);
        assert!(parse_status("{\"v\":1,\"error\":{\"code\":\"unavailable\",\"message\":\"x\"}}").is_err());
        assert!(parse_status("not json").is_err());
        assert_eq!(installed_child_sas(&st), 1);
        assert_eq!(installed_child_details(&st), vec![("AES_GCM_16-256".to_owned(), "raw".to_owned())]);
        let d = datapath_drops(&st);
        assert_eq!((d["unknown_spi"], d["malformed"], d["sa.replay"], d["sa.icv_failure"]), (5, 0, 4, 4));
        assert_eq!(child_sas(&StatusReport::default()).len(), 0);
    }

    #[test]
    fn reads_watch_events_and_failover_blocks() {
        let out = "{\"v\":1,\"watching\":{\"queue\":256}}\n\
                   {\"v\":1,\"event\":{\"unix_ms\":5,\"kind\":\"dpd_failed\",\"tunnel\":\"aws-1\",\"message\":\"dead\"}}\n\
                   {\"v\":1,\"event\":{\"unix_ms\":6,\"kind\":\"failover\",\"tunnel\":\"aws-2\",\
                   \"message\":\"group aws-1: traffic moves from aws-1 to aws-2 (aws-1 down)\"}}\n\
                   {\"v\":1,\"event\":{\"unix_ms\":7,\"kind\":\"lost\",\"message\":\"3 events lost\",\"lost\":3}}\n\
                   {\"v\":1,\"event\":{\"unix_ms\":8,\"kind\":";
        let ev = parse_events(out);
        assert_eq!(ev.len(), 3, "the cut last line is not an event: {ev:?}");
        assert_eq!((ev[0].kind.as_str(), ev[0].tunnel.as_deref()), ("dpd_failed", Some("aws-1")));
        assert_eq!((ev[1].unix_ms, ev[1].kind.as_str(), ev[1].tunnel.as_deref()), (6, "failover", Some("aws-2")));
        assert!(ev[1].message.starts_with("group aws-1: "));
        assert_eq!(ev[2].tunnel, None);

        let status = r#"{"v":1,"status":{"tunnels":[
            {"name":"aws-1","failover":{"group":"aws-1","role":"primary","state":"down","failback":true}},
            {"name":"aws-2","failover":{"group":"aws-1","role":"standby","state":"active","failback":true}},
            {"name":"plain"},
            {"name":"broken","failover":{"group":"aws-1"}}]}}"#;
        let f = failover_of(status, "aws-2").unwrap().unwrap();
        assert_eq!(
            f,
            Failover { group: "aws-1".into(), role: "standby".into(), state: "active".into(), failback: true }
        );
        assert_eq!(failover_of(status, "aws-1").unwrap().unwrap().state, "down");
        assert_eq!(failover_of(status, "plain").unwrap(), None);
        assert_eq!(failover_of(status, "absent").unwrap(), None);
        assert!(failover_of(status, "broken").is_err());
        assert!(failover_of("not json", "aws-1").is_err());
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
                    child_rekey_packets: Some(100),
                    ..Lifetimes::default()
                },
                extra: vec![("fragment_size".into(), "576".into())],
                child_sa_per_subnet_pair: false,
                ike_version: None,
            }],
        };
        let text = cfg.to_toml(Path::new("/d"), Path::new("/d/vpngw.sock"));
        assert!(
            text.ends_with(
                "child_rekey_time = \"10s\"\nrekey_jitter = \"0%\"\nchild_rekey_packets = 100\nfragment_size = 576\n"
            ),
            "{text}"
        );
        assert!(!text.contains("dpd_delay"));
        assert!(!text.contains("child_sa_per_subnet_pair"), "only written when set");
        assert!(!text.contains("ike_version"), "only written when set");
        let mut v1 = cfg.clone();
        v1.tunnels[0].ike_version = Some(1);
        assert!(v1.to_toml(Path::new("/d"), Path::new("/d/s")).contains("\nike_version = 1\n"));
        assert!(text.contains("control_socket = \"/d/vpngw.sock\""));
        assert!(text.contains("psk_file = \"/d/site-b.psk\""));
        assert!(text.contains("local_subnets = [\"10.1.0.0/24\"]"));
        assert!(text.contains("start = \"initiate\""));
        assert!(text.contains("encapsulation = \"udp\""));
        assert!(!text.contains("secret"), "the PSK goes to its file, not the config");
    }
}
