//! strongSwan (charon 5.9 with kernel-libipsec) as the reference peer inside a namespace.
//!
//! Owns: writing `strongswan.conf` and `swanctl/swanctl.conf` into a private directory,
//! starting charon with a private `/run` (`unshare -m` + tmpfs, so several charons can
//! run at once), loading the config with `swanctl --load-all --uri`, and reading SA state
//! back with `swanctl --list-sas`. strongSwan uses kernel-libipsec here (the kernel has no
//! ESP in XFRM): its ESP runs in userspace on a TUN device of its own.
//!
//! Does not own: the namespace (see [`crate::netns`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::netns::{Netns, WAN_IF};
use crate::process::Proc;
use crate::{command, ensure, read_text, run, tail, wait_for, Error, Result};

/// Where Debian installs the daemon.
pub const CHARON: &str = "/usr/lib/ipsec/charon";

/// One strongSwan site-to-site connection (`s2s`, child `net`).
#[derive(Clone, Debug)]
pub struct SwanConfig {
    /// This gateway's WAN address.
    pub local_addr: String,
    /// The peer's WAN address.
    pub remote_addr: String,
    /// Our IKE identity (FQDN).
    pub local_id: String,
    /// The peer's IKE identity (FQDN).
    pub remote_id: String,
    /// The pre-shared key.
    pub psk: String,
    /// Local traffic selector (subnet).
    pub local_ts: String,
    /// Remote traffic selector (subnet).
    pub remote_ts: String,
    /// IKE proposal, swanctl syntax.
    pub ike_proposal: String,
    /// ESP proposal, swanctl syntax.
    pub esp_proposal: String,
    /// `start_action = start` (initiator) or `none` (responder).
    pub initiate: bool,
    /// IKE `version` of the connection: 2, or 1 (Main Mode with PSK, Quick Mode).
    pub version: u8,
    /// Rekeying, lifetime and DPD settings (unset ones keep strongSwan's defaults).
    pub timers: SwanTimers,
}

/// swanctl timers, each written as given (`"10s"`) when set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SwanTimers {
    /// IKE SA `rekey_time`.
    pub ike_rekey_time: Option<String>,
    /// IKE SA `over_time` (hard lifetime = rekey_time + over_time).
    pub ike_over_time: Option<String>,
    /// IKE SA `rand_time` (`0s`: no jitter).
    pub ike_rand_time: Option<String>,
    /// CHILD SA `rekey_time`.
    pub child_rekey_time: Option<String>,
    /// CHILD SA `life_time` (hard).
    pub child_life_time: Option<String>,
    /// CHILD SA `rand_time`.
    pub child_rand_time: Option<String>,
    /// IKE SA `dpd_delay`.
    pub dpd_delay: Option<String>,
    /// IKE SA `dpd_timeout` (IKEv1 only: when an unanswered R-U-THERE declares the peer
    /// dead; IKEv2 uses the retransmission timeouts).
    pub dpd_timeout: Option<String>,
    /// CHILD SA `dpd_action` (`clear`, `trap`, `restart`).
    pub dpd_action: Option<String>,
    /// IKE SA `keyingtries` (`0`: forever).
    pub keyingtries: Option<String>,
}

impl SwanTimers {
    /// Both SAs rekeyed by strongSwan at exactly these times (no jitter), hard limits at
    /// twice the rekey time.
    pub fn rekeying(child_secs: u64, ike_secs: u64) -> Self {
        Self {
            ike_rekey_time: Some(format!("{ike_secs}s")),
            ike_over_time: Some(format!("{ike_secs}s")),
            ike_rand_time: Some("0s".into()),
            child_rekey_time: Some(format!("{child_secs}s")),
            child_life_time: Some(format!("{}s", child_secs * 2)),
            child_rand_time: Some("0s".into()),
            ..Self::default()
        }
    }

    fn lines(pairs: &[(&str, &Option<String>)], indent: &str) -> String {
        pairs.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{indent}{k} = {v}\n"))).collect()
    }

    fn ike_lines(&self) -> String {
        Self::lines(
            &[
                ("rekey_time", &self.ike_rekey_time),
                ("over_time", &self.ike_over_time),
                ("rand_time", &self.ike_rand_time),
                ("dpd_delay", &self.dpd_delay),
                ("dpd_timeout", &self.dpd_timeout),
                ("keyingtries", &self.keyingtries),
            ],
            "        ",
        )
    }

    fn child_lines(&self) -> String {
        Self::lines(
            &[
                ("rekey_time", &self.child_rekey_time),
                ("life_time", &self.child_life_time),
                ("rand_time", &self.child_rand_time),
                ("dpd_action", &self.dpd_action),
            ],
            "                ",
        )
    }
}

impl SwanConfig {
    /// The `swanctl.conf` text for this connection.
    pub fn swanctl_conf(&self) -> String {
        self.swanctl_conf_children(&[("net", &self.local_ts, &self.remote_ts)])
    }

    /// The `swanctl.conf` text with these `children` sections instead of the one `net`:
    /// (name, local_ts, remote_ts) each, all with this config's ESP proposal, start
    /// action and timers (several children of one connection: one CHILD SA each, as a
    /// policy-based peer negotiates one per subnet pair).
    pub fn swanctl_conf_children(&self, children: &[(&str, &str, &str)]) -> String {
        let start = if self.initiate { "start" } else { "none" };
        let children: String = children
            .iter()
            .map(|(name, lts, rts)| {
                format!(
                    r#"            {name} {{
                local_ts = {lts}
                remote_ts = {rts}
                esp_proposals = {esp}
                start_action = {start}
{child_timers}            }}
"#,
                    esp = self.esp_proposal,
                    child_timers = self.timers.child_lines(),
                )
            })
            .collect();
        let secret = self.psk.replace('\\', "\\\\").replace('"', "\\\"");
        format!(
            r#"connections {{
    s2s {{
        version = {version}
        local_addrs = {la}
        remote_addrs = {ra}
        proposals = {ike}
        mobike = no
{ike_timers}        local {{
            auth = psk
            id = {lid}
        }}
        remote {{
            auth = psk
            id = {rid}
        }}
        children {{
{children}        }}
    }}
}}
secrets {{
    ike-s2s {{
        id-a = {lid}
        id-b = {rid}
        secret = "{secret}"
    }}
}}
"#,
            la = self.local_addr,
            ra = self.remote_addr,
            ike = self.ike_proposal,
            lid = self.local_id,
            rid = self.remote_id,
            ike_timers = self.timers.ike_lines(),
            version = self.version,
        )
    }
}

/// The `strongswan.conf` text for an instance whose files live in `dir`.
pub fn strongswan_conf(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"charon {{
    load = random nonce aesni openssl gcm aes sha1 sha2 hmac kdf curve25519 pem pkcs1 x509 pubkey kernel-libipsec kernel-netlink socket-default vici
    install_routes = yes
    routing_table = 220
    routing_table_prio = 220
    interfaces_use = {WAN_IF}
    plugins {{
        vici {{
            socket = unix://{d}/charon.vici
        }}
    }}
    filelog {{
        charon {{
            path = {d}/charon.log
            time_format = %F %T
            time_add_ms = yes
            ike_name = yes
            flush_line = yes
            default = 1
        }}
    }}
}}
swanctl {{
    load = pem pkcs1 x509 pubkey random nonce
}}
"#
    )
}

/// Settings beyond [`SwanConfig`], each line written as given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SwanExtra {
    /// `charon { KEY = VALUE }` lines of strongswan.conf (e.g. `fragment_size = 576`).
    pub charon: Vec<(String, String)>,
    /// Lines of the connection `s2s` in swanctl.conf (e.g. `fragmentation = yes`).
    pub connection: Vec<(String, String)>,
}

impl SwanExtra {
    /// `strongswan_conf(dir)` with the `charon` lines added.
    pub fn strongswan_conf(&self, dir: &Path) -> String {
        let lines: String = self.charon.iter().map(|(k, v)| format!("    {k} = {v}\n")).collect();
        strongswan_conf(dir).replacen("charon {\n", &format!("charon {{\n{lines}"), 1)
    }

    /// `cfg.swanctl_conf()` with the connection lines added.
    pub fn swanctl_conf(&self, cfg: &SwanConfig) -> String {
        let lines: String = self.connection.iter().map(|(k, v)| format!("        {k} = {v}\n")).collect();
        cfg.swanctl_conf().replacen("        mobike = no\n", &format!("        mobike = no\n{lines}"), 1)
    }
}

/// A running charon; dropping it stops charon by PID.
pub struct StrongSwan {
    dir: PathBuf,
    proc: Proc,
}

impl StrongSwan {
    /// Writes the config into `dir`, starts charon in `ns`, waits for its vici socket and
    /// loads the connection. An initiator starts negotiating right after the load.
    /// Starting again in the same `dir` (after [`StrongSwan::kill`]) is a restart: charon
    /// comes up with no state, its log continues.
    pub fn start(ns: &Netns, cfg: &SwanConfig, dir: &Path) -> Result<Self> {
        Self::start_with(ns, cfg, &SwanExtra::default(), dir)
    }

    /// [`StrongSwan::start`] with the settings of `extra` added to both files.
    pub fn start_with(ns: &Netns, cfg: &SwanConfig, extra: &SwanExtra, dir: &Path) -> Result<Self> {
        Self::launch(ns, &extra.strongswan_conf(dir), &extra.swanctl_conf(cfg), dir)
    }

    /// [`StrongSwan::start`] with this `swanctl.conf` text (e.g. from
    /// [`SwanConfig::swanctl_conf_children`]).
    pub fn start_conf(ns: &Netns, swanctl_conf: &str, dir: &Path) -> Result<Self> {
        Self::launch(ns, &strongswan_conf(dir), swanctl_conf, dir)
    }

    /// Writes both files into `dir`, starts charon and loads the connections.
    fn launch(ns: &Netns, strongswan_conf: &str, swanctl_conf: &str, dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir.join("swanctl"))?;
        // A killed charon leaves its socket behind; its presence means "ready" below.
        let _ = std::fs::remove_file(dir.join("charon.vici"));
        std::fs::write(dir.join("strongswan.conf"), strongswan_conf)?;
        std::fs::write(dir.join("swanctl/swanctl.conf"), swanctl_conf)?;
        let script = format!("mount -t tmpfs tmpfs /run && exec {CHARON}");
        let mut cmd = ns.exec(&["unshare", "-m", "--propagation", "private", "sh", "-c", &script]);
        cmd.env("STRONGSWAN_CONF", dir.join("strongswan.conf"));
        let proc = Proc::spawn("charon-stderr", cmd, dir)?;
        let mut swan = Self { dir: dir.to_owned(), proc };
        let sock = dir.join("charon.vici");
        let ready = wait_for(Duration::from_secs(20), "charon's vici socket", || {
            (sock.exists() || !swan.proc.is_running()).then_some(())
        });
        if let Err(e) = ready {
            return Err(Error::new(format!("{e}\n{}", swan.diagnostics())));
        }
        ensure!(swan.proc.is_running(), "charon exited at start:\n{}", swan.diagnostics());
        run(&mut swan.swanctl(&["--load-all"])).map_err(|e| Error::new(format!("{e}\n{}", swan.diagnostics())))?;
        Ok(swan)
    }

    /// `swanctl ARGS --uri unix://DIR/charon.vici`, with this instance's config.
    pub fn swanctl(&self, args: &[&str]) -> Command {
        let mut cmd = command(&["swanctl"]);
        cmd.args(args)
            .arg("--uri")
            .arg(format!("unix://{}/charon.vici", self.dir.display()))
            .env("STRONGSWAN_CONF", self.dir.join("strongswan.conf"))
            .env("SWANCTL_DIR", self.dir.join("swanctl"));
        cmd
    }

    /// `swanctl --rekey`: starts a rekey of the CHILD SA `net` (or of the IKE SA `s2s`
    /// with `ike`). charon queues the rekey and swanctl returns without waiting for it.
    pub fn rekey(&self, ike: bool) -> Result<()> {
        let which = if ike { ["--ike", "s2s"] } else { ["--child", "net"] };
        run(&mut self.swanctl(&["--rekey", which[0], which[1]])).map(drop)
    }

    /// `swanctl --rekey --child NAME`: starts a rekey of one CHILD SA of that children
    /// section (charon queues it; swanctl returns without waiting).
    pub fn rekey_child(&self, name: &str) -> Result<()> {
        run(&mut self.swanctl(&["--rekey", "--child", name])).map(drop)
    }

    /// `swanctl --list-sas` output.
    pub fn list_sas(&self) -> Result<String> {
        run(&mut self.swanctl(&["--list-sas"]))
    }

    /// Waits until a CHILD_SA is INSTALLED; returns the `--list-sas` text.
    pub fn wait_child_sa(&mut self, timeout: Duration) -> Result<String> {
        let res = wait_for(timeout, "strongSwan CHILD_SA", || {
            if !self.proc.is_running() {
                return Some(Err(Error::new("charon exited")));
            }
            let sas = self.list_sas().ok()?;
            (installed_child_sas(&sas) > 0).then_some(Ok(sas))
        });
        match res {
            Ok(Ok(sas)) => Ok(sas),
            Ok(Err(e)) | Err(e) => Err(Error::new(format!("{e}\n{}", self.diagnostics()))),
        }
    }

    /// The charon PID.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// True while charon runs.
    pub fn is_running(&mut self) -> bool {
        self.proc.is_running()
    }

    /// charon's own log file.
    pub fn log_text(&self) -> String {
        read_text(&self.dir.join("charon.log"))
    }

    /// The tail of charon's log and stderr, for error messages.
    pub fn diagnostics(&self) -> String {
        format!(
            "--- charon.log ({}) ---\n{}\n--- charon stderr ---\n{}",
            self.dir.display(),
            tail(&self.log_text(), 40),
            tail(&self.proc.log_text(), 10)
        )
    }

    /// Kills charon with SIGKILL (no DELETE, no cleanup: a crash) and reaps it.
    pub fn kill(&mut self) {
        self.proc.signal("KILL");
        let _ = self.proc.wait_timeout(Duration::from_secs(10));
    }

    /// Stops charon (SIGTERM, then SIGKILL after 5 s).
    pub fn stop(&mut self) {
        let _ = self.proc.terminate(Duration::from_secs(5));
    }
}

/// One IKE SA as `swanctl --list-sas` shows it, with its CHILD SAs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SwanSa {
    /// `ESTABLISHED`, `REKEYING`, `REKEYED`, `DELETING`, ...
    pub state: String,
    /// Initiator SPI (16 hex digits).
    pub spi_i: String,
    /// Responder SPI.
    pub spi_r: String,
    /// The negotiated IKE algorithms as charon prints them, e.g.
    /// `AES_CBC-128/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024` (empty until negotiated).
    pub proposal: String,
    /// The CHILD SAs.
    pub children: Vec<SwanChild>,
}

/// One CHILD SA in `swanctl --list-sas`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SwanChild {
    /// `INSTALLED`, `REKEYING`, `REKEYED`, `DELETING`, ...
    pub state: String,
    /// The ESP proposal, e.g. `AES_GCM_16-256/CURVE_25519`.
    pub proposal: String,
    /// Inbound SPI (8 hex digits).
    pub spi_in: String,
    /// Outbound SPI.
    pub spi_out: String,
    /// Packets received on the inbound SA.
    pub packets_in: u64,
    /// Packets sent on the outbound SA.
    pub packets_out: u64,
}

impl SwanChild {
    /// The key exchange group in the proposal (PFS), if any: the part after the cipher
    /// that is not an integrity algorithm or ESN flag.
    pub fn dh(&self) -> Option<String> {
        self.proposal
            .split('/')
            .skip(1)
            .find(|p| !p.starts_with("HMAC") && !p.starts_with("AES_XCBC") && !p.contains("ESN"))
            .map(str::to_owned)
    }
}

/// Parses `swanctl --list-sas`:
///
/// ```text
/// s2s: #1, ESTABLISHED, IKEv2, 5c1e6a3f0b9d2c71_i* 0d3e5a7f9b1c2e4d_r
///   net: #2, reqid 1, INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16-256/CURVE_25519
///     in  c2b4d6f8,      0 bytes,     0 packets
///     out c8a6e4d2,      0 bytes,     0 packets
/// ```
pub fn parse_list_sas(text: &str) -> Vec<SwanSa> {
    let mut sas: Vec<SwanSa> = Vec::new();
    for line in text.lines() {
        let indented = line.starts_with(char::is_whitespace);
        let t = line.trim();
        let parts: Vec<&str> = t.split(", ").collect();
        if !indented && t.contains(": #") && parts.get(2).is_some_and(|p| p.starts_with("IKEv")) {
            let spis = parts.get(3).copied().unwrap_or("");
            let spi = |suffix: &str| {
                spis.split_whitespace()
                    .map(|s| s.trim_end_matches('*'))
                    .find_map(|s| s.strip_suffix(suffix))
                    .unwrap_or("")
                    .to_owned()
            };
            sas.push(SwanSa {
                state: parts.get(1).copied().unwrap_or("").to_owned(),
                spi_i: spi("_i"),
                spi_r: spi("_r"),
                proposal: String::new(),
                children: Vec::new(),
            });
            continue;
        }
        let Some(sa) = sas.last_mut() else { continue };
        // The IKE SA's algorithms: the one indented line of a single word with a `/`
        // before the first CHILD SA (the others are `local ...`, `remote ...`, times).
        if indented && sa.children.is_empty() && !t.contains(char::is_whitespace) && t.contains('/') {
            t.clone_into(&mut sa.proposal);
            continue;
        }
        if indented && t.contains(": #") && parts.get(1).is_some_and(|p| p.starts_with("reqid ")) {
            let proposal = parts.iter().find_map(|p| p.strip_prefix("ESP:")).unwrap_or("").to_owned();
            sa.children.push(SwanChild {
                state: parts.get(2).copied().unwrap_or("").to_owned(),
                proposal,
                ..SwanChild::default()
            });
        } else if let Some(child) = sa.children.last_mut() {
            let spi = |rest: &str| rest.split_whitespace().next().unwrap_or("").trim_end_matches(',').to_owned();
            // `in  c2b4d6f8,  12000 bytes,    10 packets,     0s ago`
            let packets = |rest: &str| {
                rest.split(',')
                    .find_map(|p| p.trim().strip_suffix(" packets").and_then(|n| n.trim().parse().ok()))
                    .unwrap_or(0)
            };
            if let Some(rest) = t.strip_prefix("in ") {
                child.spi_in = spi(rest);
                child.packets_in = packets(rest);
            } else if let Some(rest) = t.strip_prefix("out ") {
                child.spi_out = spi(rest);
                child.packets_out = packets(rest);
            }
        }
    }
    sas
}

/// Counts CHILD_SAs in state INSTALLED in `swanctl --list-sas` output ([`parse_list_sas`]).
pub fn installed_child_sas(list_sas: &str) -> usize {
    parse_list_sas(list_sas).iter().flat_map(|sa| &sa.children).filter(|c| c.state == "INSTALLED").count()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST_SAS: &str = "s2s: #1, ESTABLISHED, IKEv2, 5c1e6a3f0b9d2c71_i* 0d3e5a7f9b1c2e4d_r
  local  'gw-a.example.net' @ 192.0.2.1[4500]
  remote 'gw-b.example.net' @ 192.0.2.2[4500]
  AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE_25519
  established 2s ago, rekeying in 14125s
  net: #1, reqid 1, INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16-256
    installed 2s ago, rekeying in 3300s, expires in 3960s
    in  c2b4d6f8,      0 bytes,     0 packets
    out c8a6e4d2,      0 bytes,     0 packets
    local  10.1.0.0/24
    remote 10.2.0.0/24
";

    const REKEYING: &str = "s2s: #3, ESTABLISHED, IKEv2, 1111222233334444_i 5555666677778888_r*
  local  'gw-b.example.net' @ 192.0.2.2[4500]
  remote 'gw-a.example.net' @ 192.0.2.1[4500]
  AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE_25519
  established 3s ago, rekeying in 22s
  net: #4, reqid 1, INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16-256/CURVE_25519
    installed 1s ago, rekeying in 9s, expires in 19s
    in  c0000002,  12000 bytes,    10 packets,     0s ago
    out c0000003,  12000 bytes,    10 packets,     0s ago
    local  10.2.0.0/24
    remote 10.1.0.0/24
  net: #3, reqid 1, REKEYED, TUNNEL-in-UDP, ESP:AES_GCM_16-256
    installed 11s ago, expires in 9s
    in  c0000000,  99000 bytes,    80 packets
    out c0000001,  99000 bytes,    80 packets
    local  10.2.0.0/24
    remote 10.1.0.0/24
";

    const CBC: &str = "s2s: #1, ESTABLISHED, IKEv2, 5c1e6a3f0b9d2c71_i* 0d3e5a7f9b1c2e4d_r
  local  'gw-a.example.net' @ 192.0.2.1[4500]
  remote 'gw-b.example.net' @ 192.0.2.2[4500]
  AES_CBC-128/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024
  established 2s ago, rekeying in 14125s
  net: #2, reqid 1, INSTALLED, TUNNEL-in-UDP, ESP:AES_CBC-128/HMAC_SHA1_96/MODP_1024
    in  c2b4d6f8,      0 bytes,     0 packets
    out c8a6e4d2,      0 bytes,     0 packets
";

    #[test]
    fn parses_list_sas_with_two_children() {
        let sas = parse_list_sas(REKEYING);
        assert_eq!(sas.len(), 1);
        assert_eq!((sas[0].spi_i.as_str(), sas[0].spi_r.as_str()), ("1111222233334444", "5555666677778888"));
        assert_eq!(sas[0].proposal, "AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE_25519");
        assert_eq!(parse_list_sas(CBC)[0].proposal, "AES_CBC-128/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024");
        assert_eq!(parse_list_sas(CBC)[0].children[0].proposal, "AES_CBC-128/HMAC_SHA1_96/MODP_1024");
        assert_eq!(parse_list_sas(CBC)[0].children[0].dh().as_deref(), Some("MODP_1024"));
        let c = &sas[0].children;
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[0].state.as_str(), c[0].spi_in.as_str(), c[0].spi_out.as_str()),
            ("INSTALLED", "c0000002", "c0000003")
        );
        assert_eq!(c[0].dh().as_deref(), Some("CURVE_25519"));
        assert_eq!((c[0].packets_in, c[0].packets_out, c[1].packets_in, c[1].packets_out), (10, 10, 80, 80));
        assert_eq!(c[1].dh(), None);
        assert_eq!(installed_child_sas(REKEYING), 1);
        assert!(parse_list_sas("").is_empty());
    }

    #[test]
    fn counts_installed_child_sas_only() {
        assert_eq!(installed_child_sas(LIST_SAS), 1);
        assert_eq!(installed_child_sas(&LIST_SAS.replace("INSTALLED", "INSTALLING")), 0);
        assert_eq!(installed_child_sas(""), 0);
    }

    #[test]
    fn swanctl_conf_carries_role_and_escapes_secret() {
        let cfg = SwanConfig {
            local_addr: "192.0.2.1".into(),
            remote_addr: "192.0.2.2".into(),
            local_id: "gw-a.example.net".into(),
            remote_id: "gw-b.example.net".into(),
            psk: "a\"b".into(),
            local_ts: "10.1.0.0/24".into(),
            remote_ts: "10.2.0.0/24".into(),
            ike_proposal: "aes256gcm16-prfsha256-x25519".into(),
            esp_proposal: "aes256gcm16".into(),
            initiate: true,
            version: 2,
            timers: SwanTimers::default(),
        };
        let text = cfg.swanctl_conf();
        assert!(text.contains("start_action = start"));
        assert!(!text.contains("rekey_time"));
        let timed = SwanConfig { timers: SwanTimers::rekeying(10, 25), ..cfg.clone() }.swanctl_conf();
        assert!(
            timed.contains("        rekey_time = 25s\n        over_time = 25s\n        rand_time = 0s\n"),
            "{timed}"
        );
        assert!(
            timed.contains("start_action = start\n                rekey_time = 10s\n                life_time = 20s\n")
        );
        assert!(text.contains(r#"secret = "a\"b""#));
        assert!(text.contains("        version = 2\n"));
        let v1 = SwanConfig { version: 1, ..cfg.clone() }.swanctl_conf();
        assert!(v1.contains("        version = 1\n") && !v1.contains("version = 2"), "{v1}");
        let dpd = SwanTimers { dpd_delay: Some("2s".into()), dpd_timeout: Some("6s".into()), ..SwanTimers::default() };
        let dpd = SwanConfig { timers: dpd, ..cfg.clone() }.swanctl_conf();
        assert!(dpd.contains("        dpd_delay = 2s\n        dpd_timeout = 6s\n"), "{dpd}");
        let responder = SwanConfig { initiate: false, ..cfg.clone() }.swanctl_conf();
        assert!(responder.contains("start_action = none"));
        // One children section per subnet pair.
        let pairs =
            cfg.swanctl_conf_children(&[("p0", "10.1.0.0/24", "10.2.0.0/24"), ("p1", "10.3.0.0/24", "10.4.0.0/24")]);
        assert!(
            pairs.contains("        children {\n            p0 {\n                local_ts = 10.1.0.0/24\n"),
            "{pairs}"
        );
        assert!(pairs.contains(
            "            p1 {\n                local_ts = 10.3.0.0/24\n                remote_ts = 10.4.0.0/24\n"
        ));
        assert_eq!(pairs.matches("esp_proposals = aes256gcm16\n").count(), 2);
        assert!(!pairs.contains(" net {"));
    }

    #[test]
    fn extra_settings_land_in_their_sections() {
        let cfg = crate::scenario::swan_site_a(true);
        let extra = SwanExtra {
            charon: vec![("fragment_size".into(), "576".into())],
            connection: vec![("fragmentation".into(), "yes".into())],
        };
        let conf = extra.strongswan_conf(Path::new("/tmp/x"));
        assert!(conf.starts_with("charon {\n    fragment_size = 576\n    load = "), "{conf}");
        let swanctl = extra.swanctl_conf(&cfg);
        assert!(swanctl.contains("        mobike = no\n        fragmentation = yes\n"), "{swanctl}");
        assert_eq!(SwanExtra::default().swanctl_conf(&cfg), cfg.swanctl_conf());
    }

    #[test]
    fn strongswan_conf_loads_libipsec_before_netlink() {
        let text = strongswan_conf(Path::new("/tmp/x"));
        let libipsec = text.find("kernel-libipsec").unwrap();
        let netlink = text.find("kernel-netlink").unwrap();
        assert!(libipsec < netlink);
        assert!(text.contains("socket = unix:///tmp/x/charon.vici"));
    }
}
