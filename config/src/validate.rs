//! Raw (spanned) configuration to typed [`Config`]: defaults, range and consistency
//! checks, `psk_file` reading, and error locations (byte span to line, key path).
//! Owns every rule a configuration must satisfy; does not own the file format (`raw`).

use crate::ikev1::{self, DEFAULT_IKE_PROPOSAL_V1};
use crate::raw::{RawConfig, RawGateway, RawTunnel};
use crate::timers::timers;
use crate::{
    read_limited, Config, ConfigError, Encapsulation, GatewayConfig, IkeVersion, Limits, Psk, StartAction, TunnelConfig,
};
use ipsec_types::{EspProposal, Identity, IkeProposal, TrafficSelector};
use std::collections::HashSet;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;
use zeroize::Zeroizing;

/// Default `[gateway] tun_name`.
pub const DEFAULT_TUN_NAME: &str = "vpn0";
/// Default `[gateway] tun_mtu`.
pub const DEFAULT_TUN_MTU: u16 = 1400;
/// Default `[gateway] control_socket`.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/vpngw/vpngw.sock";
/// Default `[gateway] ike_port`.
pub const DEFAULT_IKE_PORT: u16 = 500;
/// Default `[gateway] natt_port`.
pub const DEFAULT_NATT_PORT: u16 = 4500;
/// Default `[[tunnel]] replay_window`.
pub const DEFAULT_REPLAY_WINDOW: u32 = 1024;
/// Largest `replay_window`.
pub const MAX_REPLAY_WINDOW: u32 = 1 << 20;
/// Default `[[tunnel]] fragment_size`: the IPv6 minimum MTU (strongSwan's default too).
pub const DEFAULT_FRAGMENT_SIZE: u16 = 1280;
/// Default `[[tunnel]] ike_proposals`.
pub const DEFAULT_IKE_PROPOSAL: &str = "aes256gcm16-prfsha256-x25519";
/// Default `[[tunnel]] esp_proposals`.
pub const DEFAULT_ESP_PROPOSAL: &str = "aes256gcm16";
/// Default `[gateway] cookie_threshold`.
pub const DEFAULT_COOKIE_THRESHOLD: usize = 10;
/// Default `[gateway] half_open_max`.
pub const DEFAULT_HALF_OPEN_MAX: usize = 1000;
/// Default `[gateway] half_open_per_source`.
pub const DEFAULT_HALF_OPEN_PER_SOURCE: usize = 5;
/// Default `[gateway] child_sa_max`.
pub const DEFAULT_CHILD_SA_MAX: usize = 32;
/// Default `[gateway] ike_sa_per_peer_max`.
pub const DEFAULT_IKE_SA_PER_PEER_MAX: usize = 5;
/// Largest value of any of the limits above (a guard against typos: a million half-open
/// SAs already cost gigabytes).
pub const MAX_LIMIT: usize = 1_000_000;
/// PSKs shorter than this draw a warning.
pub const MIN_RECOMMENDED_PSK_BYTES: usize = 16;
/// Largest `psk_file`.
const MAX_PSK_FILE_BYTES: u64 = 64 * 1024;
/// Longest tunnel name.
const MAX_TUNNEL_NAME: usize = 64;
/// Linux IFNAMSIZ - 1.
const MAX_TUN_NAME: usize = 15;
const MIN_MTU_V4: u16 = 576;
const MIN_MTU_V6: u16 = 1280;

/// 1-based line of a byte offset (clamped to the text).
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes().get(..end).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count()) + 1
}

/// A `toml` syntax or type error, located: line from the span; for type and unknown-key
/// errors also the key path, from the message or the text around the span (section
/// headers above, `key =` on or above the line). Syntax errors get no key: the parser
/// stops where it noticed the problem, which may already be the next key.
pub(crate) fn toml_error(text: &str, file: &Path, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim().replace('\n', "; ");
    let line = e.span().map(|s| line_of(text, s.start));
    let syntax = text.parse::<toml::Table>().is_err();
    let named = field_in_message(&message);
    let (section, key_on_line) = match line {
        Some(l) => locate(text, l),
        None => (None, None),
    };
    let section = section.filter(|s| !s.is_empty());
    let key = match (section, named, key_on_line) {
        // A header naming an unknown table, e.g. `[extra]` or `[gateway.extra]`.
        (Some(s), Some(k), _) if s == k || s.ends_with(&format!(".{k}")) => Some(s),
        (Some(s), Some(k), _) => Some(format!("{s}.{k}")),
        (None, Some(k), _) => Some(k),
        _ if syntax => None,
        (Some(s), None, Some(k)) => Some(format!("{s}.{k}")),
        (None, None, Some(k)) => Some(k),
        (s, None, None) => s,
    };
    let message =
        if syntax && !message.starts_with("duplicate key") { format!("invalid TOML: {message}") } else { message };
    ConfigError { file: file.to_path_buf(), line, key, tunnel: None, message }
}

/// The key named in serde's "unknown field `x`" / "missing field `x`" / "duplicate key `x`".
fn field_in_message(msg: &str) -> Option<String> {
    for prefix in ["unknown field `", "missing field `", "duplicate key `"] {
        if let Some(rest) = msg.find(prefix).and_then(|i| msg.get(i + prefix.len()..)) {
            if let Some(end) = rest.find('`') {
                return rest.get(..end).map(str::to_string);
            }
        }
    }
    None
}

/// For 1-based `line`: the table path in effect there (`gateway`, `tunnel[2]`) and the
/// key assigned on that line or the nearest `key =` line above it within the table.
fn locate(text: &str, line: usize) -> (Option<String>, Option<String>) {
    let mut section: Option<String> = None;
    let mut tunnels = 0usize;
    let mut key = None;
    for l in text.lines().take(line) {
        let t = l.trim();
        if let Some(h) = t.strip_prefix("[[") {
            let name = h.split("]]").next().unwrap_or("").trim().to_string();
            section = Some(if name == "tunnel" {
                tunnels += 1;
                format!("tunnel[{}]", tunnels - 1)
            } else {
                name
            });
            key = None;
        } else if let Some(h) = t.strip_prefix('[') {
            section = Some(h.split(']').next().unwrap_or("").trim().to_string());
            key = None;
        } else if let Some((k, _)) = t.split_once('=') {
            let k = k.trim();
            if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                key = Some(k.to_string());
            }
        }
    }
    (section, key)
}

pub(crate) struct Ctx<'a> {
    text: &'a str,
    file: &'a Path,
    warnings: Vec<String>,
    /// The configuration file's metadata, when the text was read from it.
    meta: Option<&'a std::fs::Metadata>,
    /// `[gateway] allow_insecure_key_files`.
    allow_insecure_key_files: bool,
}

impl Ctx<'_> {
    pub(crate) fn err(
        &self,
        span: Option<Range<usize>>,
        key: String,
        tunnel: Option<&str>,
        message: String,
    ) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            line: span.map(|s| line_of(self.text, s.start)),
            key: Some(key),
            tunnel: tunnel.map(str::to_string),
            message,
        }
    }

    /// Relative paths resolve against the configuration file's directory.
    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            return p.to_path_buf();
        }
        match self.file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join(p),
            _ => p.to_path_buf(),
        }
    }
}

pub(crate) fn validate(
    raw: RawConfig,
    text: &str,
    file: &Path,
    meta: Option<&std::fs::Metadata>,
) -> Result<Config, ConfigError> {
    let mut cx = Ctx { text, file, warnings: Vec::new(), meta, allow_insecure_key_files: false };
    let Some(gw) = raw.gateway else {
        return Err(cx.err(None, "gateway".into(), None, "missing [gateway] table".into()));
    };
    let gw_span = gw.span();
    let mtu_span = gw.get_ref().tun_mtu.as_ref().map(Spanned::span);
    let gateway = gateway(&mut cx, gw.into_inner(), gw_span)?;
    cx.allow_insecure_key_files = gateway.allow_insecure_key_files;
    let mut tunnels: Vec<TunnelConfig> = Vec::with_capacity(raw.tunnel.len());
    let mut names = HashSet::new();
    let mut group_spans = Vec::with_capacity(raw.tunnel.len());
    for (i, t) in raw.tunnel.into_iter().enumerate() {
        let span = t.span();
        let name_span = t.get_ref().name.as_ref().map(Spanned::span);
        group_spans.push(crate::failover::Spans::of(t.get_ref()));
        let tc = tunnel(&mut cx, &gateway, i, t.into_inner(), span)?;
        if !names.insert(tc.name.clone()) {
            return Err(cx.err(
                name_span,
                format!("tunnel[{i}].name"),
                Some(&tc.name),
                format!("duplicate tunnel name {:?}", tc.name),
            ));
        }
        tunnels.push(tc);
    }
    if tunnels.is_empty() {
        cx.warnings.push(format!("{}: no [[tunnel]] defined", file.display()));
    }
    crate::failover::check(&cx, &tunnels, &group_spans)?;
    overlap_warnings(&mut cx, &tunnels);
    let mtu_v6 = tunnels.iter().flat_map(|t| t.local_subnets.iter().chain(&t.remote_subnets)).any(|s| !s.is_ipv4());
    if mtu_v6 && gateway.tun_mtu < MIN_MTU_V6 {
        return Err(cx.err(
            mtu_span,
            "gateway.tun_mtu".into(),
            None,
            format!("{} is below {MIN_MTU_V6}, the IPv6 minimum, and IPv6 subnets are configured", gateway.tun_mtu),
        ));
    }
    Ok(Config { gateway, tunnels, warnings: cx.warnings })
}

fn overlap_warnings(cx: &mut Ctx<'_>, tunnels: &[TunnelConfig]) {
    for (i, a) in tunnels.iter().enumerate() {
        // Members of one active/standby group protect the same subnets on purpose.
        for b in tunnels.iter().skip(i + 1).filter(|b| !crate::failover::same_group(a, b)) {
            for sa in &a.remote_subnets {
                for sb in &b.remote_subnets {
                    if sa.intersect(sb).is_some() {
                        cx.warnings.push(format!(
                            "{}: remote_subnets {sa} of tunnel {:?} overlaps {sb} of tunnel {:?}: \
                             traffic to the overlap goes to the first matching tunnel",
                            cx.file.display(),
                            a.name,
                            b.name
                        ));
                    }
                }
            }
        }
    }
}

fn address(cx: &Ctx<'_>, v: &Spanned<String>, key: String, tunnel: Option<&str>) -> Result<IpAddr, ConfigError> {
    let s = v.get_ref().trim();
    let ip: IpAddr = s
        .parse()
        .map_err(|_| cx.err(Some(v.span()), key.clone(), tunnel, format!("{:?} is not an IP address", v.get_ref())))?;
    let bad = ip.is_unspecified() || ip.is_multicast() || matches!(ip, IpAddr::V4(a) if a.is_broadcast());
    if bad {
        return Err(cx.err(Some(v.span()), key, tunnel, format!("{ip} is not a unicast address")));
    }
    Ok(ip)
}

fn gateway(cx: &mut Ctx<'_>, g: RawGateway, span: Range<usize>) -> Result<GatewayConfig, ConfigError> {
    let key = |k: &str| format!("gateway.{k}");
    let Some(la) = g.local_address.as_ref() else {
        return Err(cx.err(Some(span), key("local_address"), None, "missing; the WAN address IKE listens on".into()));
    };
    let local_address = address(cx, la, key("local_address"), None)?;
    let limits = limits(cx, &g)?;

    let tun_name = match g.tun_name {
        None => DEFAULT_TUN_NAME.to_string(),
        Some(v) => {
            let s = v.get_ref();
            let why = if s.is_empty() {
                Some("is empty")
            } else if s.len() > MAX_TUN_NAME {
                Some("is longer than 15 bytes (Linux IFNAMSIZ)")
            } else if s.contains('/') || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
                Some("contains '/', whitespace or a control character")
            } else if s == "." || s == ".." {
                Some("is not a valid interface name")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(cx.err(Some(v.span()), key("tun_name"), None, format!("{s:?} {why}")));
            }
            v.into_inner()
        }
    };

    let tun_mtu = match g.tun_mtu {
        None => DEFAULT_TUN_MTU,
        Some(v) if *v.get_ref() < MIN_MTU_V4 => {
            return Err(cx.err(Some(v.span()), key("tun_mtu"), None, format!("{} is below {MIN_MTU_V4}", v.get_ref())))
        }
        Some(v) => v.into_inner(),
    };

    let control_socket = match g.control_socket {
        None => PathBuf::from(DEFAULT_CONTROL_SOCKET),
        Some(v) if v.get_ref().trim().is_empty() => {
            return Err(cx.err(Some(v.span()), key("control_socket"), None, "is empty".into()))
        }
        Some(v) => cx.resolve(v.get_ref()),
    };

    let port = |v: Option<Spanned<u16>>, k: &str, default: u16| -> Result<(u16, Option<Range<usize>>), ConfigError> {
        match v {
            None => Ok((default, None)),
            Some(v) if *v.get_ref() == 0 => Err(cx.err(Some(v.span()), key(k), None, "port 0 is not allowed".into())),
            Some(v) => Ok((*v.get_ref(), Some(v.span()))),
        }
    };
    let (ike_port, ike_span) = port(g.ike_port, "ike_port", DEFAULT_IKE_PORT)?;
    let (natt_port, natt_span) = port(g.natt_port, "natt_port", DEFAULT_NATT_PORT)?;
    if ike_port == natt_port {
        // Blame the key that was set (natt_port if both were).
        let (at, k) = match natt_span {
            Some(s) => (Some(s), "natt_port"),
            None => (ike_span, "ike_port"),
        };
        return Err(cx.err(
            at,
            key(k),
            None,
            format!("ike_port and natt_port are both {ike_port}; IKE and NAT-T need distinct ports"),
        ));
    }
    let allow_insecure_key_files = g.allow_insecure_key_files.is_some_and(|v| *v.get_ref());
    let metrics_listen = match g.metrics_listen {
        None => None,
        Some(v) => Some(metrics_listen(cx, &v, key("metrics_listen"))?),
    };
    Ok(GatewayConfig {
        local_address,
        tun_name,
        tun_mtu,
        control_socket,
        ike_port,
        natt_port,
        limits,
        allow_insecure_key_files,
        metrics_listen,
    })
}

/// `metrics_listen`: an address and a port, e.g. `127.0.0.1:9750` or `[::1]:9750`.
fn metrics_listen(cx: &Ctx<'_>, v: &Spanned<String>, key: String) -> Result<std::net::SocketAddr, ConfigError> {
    let s = v.get_ref().trim();
    let addr: std::net::SocketAddr = s.parse().map_err(|_| {
        cx.err(
            Some(v.span()),
            key.clone(),
            None,
            format!("{:?} is not an address and port (e.g. \"127.0.0.1:9750\" or \"[::1]:9750\")", v.get_ref()),
        )
    })?;
    if addr.port() == 0 {
        return Err(cx.err(Some(v.span()), key, None, "port 0 is not allowed".into()));
    }
    if addr.ip().is_multicast() {
        return Err(cx.err(Some(v.span()), key, None, format!("{} is not a unicast address", addr.ip())));
    }
    Ok(addr)
}

/// The limits on IKE state, each within its range; warns about combinations in which
/// one cannot take effect.
fn limits(cx: &mut Ctx<'_>, g: &RawGateway) -> Result<Limits, ConfigError> {
    let one = |v: &Option<Spanned<i64>>, k: &str, min: usize, default: usize| -> Result<usize, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        match usize::try_from(*v.get_ref()) {
            Ok(n) if (min..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(cx.err(
                Some(v.span()),
                format!("gateway.{k}"),
                None,
                format!("{} is outside {min}..={MAX_LIMIT}", v.get_ref()),
            )),
        }
    };
    let l = Limits {
        cookie_threshold: one(&g.cookie_threshold, "cookie_threshold", 0, DEFAULT_COOKIE_THRESHOLD)?,
        half_open_max: one(&g.half_open_max, "half_open_max", 1, DEFAULT_HALF_OPEN_MAX)?,
        half_open_per_source: one(&g.half_open_per_source, "half_open_per_source", 1, DEFAULT_HALF_OPEN_PER_SOURCE)?,
        child_sa_max: one(&g.child_sa_max, "child_sa_max", 1, DEFAULT_CHILD_SA_MAX)?,
        ike_sa_per_peer_max: one(&g.ike_sa_per_peer_max, "ike_sa_per_peer_max", 1, DEFAULT_IKE_SA_PER_PEER_MAX)?,
    };
    let line = |v: &Option<Spanned<i64>>| v.as_ref().map_or(0, |v| line_of(cx.text, v.span().start));
    if l.cookie_threshold >= l.half_open_max {
        let at = line(&g.cookie_threshold).max(line(&g.half_open_max));
        cx.warnings.push(format!(
            "{}:{at}: gateway: cookie_threshold ({}) is not below half_open_max ({}): COOKIEs are then asked \
             for only once the cap is reached",
            cx.file.display(),
            l.cookie_threshold,
            l.half_open_max
        ));
    }
    if l.half_open_per_source > l.half_open_max {
        let at = line(&g.half_open_per_source).max(line(&g.half_open_max));
        cx.warnings.push(format!(
            "{}:{at}: gateway: half_open_per_source ({}) is above half_open_max ({}), which caps it",
            cx.file.display(),
            l.half_open_per_source,
            l.half_open_max
        ));
    }
    Ok(l)
}

fn tunnel(
    cx: &mut Ctx<'_>,
    gw: &GatewayConfig,
    i: usize,
    t: RawTunnel,
    span: Range<usize>,
) -> Result<TunnelConfig, ConfigError> {
    let key = |k: &str| format!("tunnel[{i}].{k}");

    let Some(name_v) = t.name.as_ref() else {
        return Err(cx.err(Some(span), key("name"), None, "missing; every tunnel needs a unique name".into()));
    };
    let name = name_v.get_ref().clone();
    let why = if name.is_empty() {
        Some("is empty")
    } else if name.len() > MAX_TUNNEL_NAME {
        Some("is longer than 64 bytes")
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("contains whitespace or a control character")
    } else {
        None
    };
    if let Some(why) = why {
        return Err(cx.err(Some(name_v.span()), key("name"), None, format!("{name:?} {why}")));
    }
    let n = Some(name.as_str());

    let Some(ra) = t.remote_address.as_ref() else {
        return Err(cx.err(Some(span.clone()), key("remote_address"), n, "missing; the peer's WAN address".into()));
    };
    let remote_address = address(cx, ra, key("remote_address"), n)?;
    if remote_address.is_ipv4() != gw.local_address.is_ipv4() {
        return Err(cx.err(
            Some(ra.span()),
            key("remote_address"),
            n,
            format!("{remote_address} is not of the same address family as gateway.local_address {}", gw.local_address),
        ));
    }
    if remote_address == gw.local_address {
        return Err(cx.err(Some(ra.span()), key("remote_address"), n, "equals gateway.local_address".into()));
    }
    let ike_version = ikev1::version(cx, t.ike_version.as_ref(), key("ike_version"), n)?;

    let ident = |v: &Option<Spanned<String>>, k: &str, default: IpAddr| -> Result<Identity, ConfigError> {
        match v {
            None => Ok(Identity::from(default)),
            Some(v) => Identity::parse(v.get_ref()).map_err(|e| cx.err(Some(v.span()), key(k), n, e)),
        }
    };
    let local_id = ident(&t.local_id, "local_id", gw.local_address)?;
    let remote_id = ident(&t.remote_id, "remote_id", remote_address)?;

    let psk = match (&t.psk, &t.psk_file) {
        (Some(_), Some(f)) => {
            return Err(cx.err(Some(f.span()), key("psk_file"), n, "set only one of `psk` and `psk_file`".into()))
        }
        (None, None) => {
            return Err(cx.err(
                Some(span.clone()),
                key("psk"),
                n,
                "no PSK: set exactly one of `psk` or `psk_file`".into(),
            ))
        }
        (Some(p), None) => {
            let bytes = p.get_ref().0.as_bytes();
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Err(cx.err(Some(p.span()), key("psk"), n, "is empty".into()));
            }
            if let Some(why) = cx.meta.and_then(key_file_exposure) {
                let problem = format!("{} holds this key inline and {}", cx.file.display(), why.text);
                let fix = if why.owner { "chown root" } else { "chmod 600 (or move the key to a psk_file)" };
                cx.key_file_finding(p.span(), key("psk"), n, problem, fix)?;
            }
            Psk(Zeroizing::new(bytes.to_vec()))
        }
        (None, Some(f)) => psk_file(cx, f, key("psk_file"), n)?,
    };
    if psk.0.len() < MIN_RECOMMENDED_PSK_BYTES {
        cx.warnings.push(format!(
            "{}: tunnel {name:?}: the PSK is shorter than {MIN_RECOMMENDED_PSK_BYTES} bytes; use a long random key",
            cx.file.display()
        ));
    }

    let local_subnets = subnets(cx, t.local_subnets.as_ref(), &key("local_subnets"), n, &span)?;
    let remote_subnets = subnets(cx, t.remote_subnets.as_ref(), &key("remote_subnets"), n, &span)?;

    let start = match &t.start {
        None => StartAction::Respond,
        Some(v) => match v.get_ref().as_str() {
            "initiate" => StartAction::Initiate,
            "respond" => StartAction::Respond,
            other => {
                return Err(cx.err(
                    Some(v.span()),
                    key("start"),
                    n,
                    format!("{other:?} is not one of \"initiate\", \"respond\""),
                ))
            }
        },
    };
    let encapsulation = match &t.encapsulation {
        None => Encapsulation::Auto,
        Some(v) => match v.get_ref().as_str() {
            "auto" => Encapsulation::Auto,
            "raw" => Encapsulation::Raw,
            "udp" => Encapsulation::Udp,
            other => {
                return Err(cx.err(
                    Some(v.span()),
                    key("encapsulation"),
                    n,
                    format!("{other:?} is not one of \"auto\", \"raw\", \"udp\""),
                ))
            }
        },
    };

    let default_ike = if ike_version == IkeVersion::V1 { DEFAULT_IKE_PROPOSAL_V1 } else { DEFAULT_IKE_PROPOSAL };
    let ike_proposals =
        proposals(cx, t.ike_proposals.as_ref(), &key("ike_proposals"), n, default_ike, IkeProposal::parse)?;
    let esp_proposals =
        proposals(cx, t.esp_proposals.as_ref(), &key("esp_proposals"), n, DEFAULT_ESP_PROPOSAL, EspProposal::parse)?;
    if let Some(v) = t.aggressive.as_ref().filter(|v| *v.get_ref() && ike_version == IkeVersion::V2) {
        return Err(cx.err(
            Some(v.span()),
            key("aggressive"),
            n,
            "Aggressive Mode is IKEv1's, and this tunnel speaks IKEv2: set ike_version = 1 or remove this key".into(),
        ));
    }
    if ike_version == IkeVersion::V1 {
        let pairs =
            local_subnets.iter().map(|l| remote_subnets.iter().filter(|r| r.is_ipv4() == l.is_ipv4()).count()).sum();
        ikev1::check(cx, &t, i, n, &ike_proposals, &esp_proposals, pairs)?;
    }

    let replay_window = match &t.replay_window {
        None => DEFAULT_REPLAY_WINDOW,
        Some(v) if !(1..=MAX_REPLAY_WINDOW).contains(v.get_ref()) => {
            return Err(cx.err(
                Some(v.span()),
                key("replay_window"),
                n,
                format!("{} is outside 1..={MAX_REPLAY_WINDOW} (anti-replay cannot be disabled)", v.get_ref()),
            ))
        }
        Some(v) => *v.get_ref(),
    };

    // IKEv1 does not fragment (`ikev1::check` refused the keys that would ask for it).
    let fragmentation = ike_version == IkeVersion::V2 && t.fragmentation.as_ref().is_none_or(|v| *v.get_ref());
    // The smallest datagram every path of the family carries (RFC 791, RFC 8200).
    let min_size = if remote_address.is_ipv4() { MIN_MTU_V4 } else { MIN_MTU_V6 };
    let fragment_size = match &t.fragment_size {
        None => DEFAULT_FRAGMENT_SIZE,
        Some(v) => match u16::try_from(*v.get_ref()) {
            Ok(s) if s >= min_size => s,
            _ => {
                return Err(cx.err(
                    Some(v.span()),
                    key("fragment_size"),
                    n,
                    format!(
                        "{} is outside {min_size}..=65535 (the IP datagram size of an IKE fragment; {min_size} is the \
                         smallest every {} path carries)",
                        v.get_ref(),
                        if remote_address.is_ipv4() { "IPv4" } else { "IPv6" }
                    ),
                ))
            }
        },
    };

    let (timers, dpd) = timers(cx, &t, i, n)?;

    Ok(TunnelConfig {
        name,
        remote_address,
        ike_version,
        aggressive: t.aggressive.as_ref().is_some_and(|v| *v.get_ref()),
        local_id,
        remote_id,
        psk,
        local_subnets,
        remote_subnets,
        // IKEv1's Quick Mode negotiates one subnet pair per SA.
        child_sa_per_subnet_pair: ike_version == IkeVersion::V1
            || t.child_sa_per_subnet_pair.as_ref().is_some_and(|v| *v.get_ref()),
        start,
        ike_proposals,
        esp_proposals,
        encapsulation,
        replay_window,
        fragmentation,
        fragment_size,
        timers,
        dpd,
        standby_for: t.standby_for.as_ref().map(|v| v.get_ref().trim().to_string()),
        failback: t.failback.as_ref().is_some_and(|v| *v.get_ref()),
    })
}

fn psk_file(cx: &mut Ctx<'_>, f: &Spanned<String>, key: String, n: Option<&str>) -> Result<Psk, ConfigError> {
    if f.get_ref().trim().is_empty() {
        return Err(cx.err(Some(f.span()), key, n, "is empty".into()));
    }
    let path = cx.resolve(f.get_ref());
    let (bytes, meta) =
        read_limited(&path, MAX_PSK_FILE_BYTES).map_err(|e| cx.err(Some(f.span()), key.clone(), n, e))?;
    let trimmed = bytes.trim_ascii();
    if trimmed.is_empty() {
        return Err(cx.err(Some(f.span()), key, n, format!("{} holds no key", path.display())));
    }
    if let Some(why) = key_file_exposure(&meta) {
        let fix = if why.owner { "chown root" } else { "chmod 600" };
        cx.key_file_finding(f.span(), key, n, format!("{} {}", path.display(), why.text), fix)?;
    }
    Ok(Psk(Zeroizing::new(trimmed.to_vec())))
}

/// How a file holding a key is open to other users.
struct Exposure {
    /// The owner is wrong (rather than the permissions).
    owner: bool,
    /// E.g. `grants permissions to group or others (mode 0644)`.
    text: String,
}

/// Why a file holding a key is open to other users: any permission bit for group or
/// others (as OpenSSH refuses private keys), or an owner other than root and this
/// process's effective user (who could change its permissions, or the key). `None` if
/// the file is private.
fn key_file_exposure(meta: &std::fs::Metadata) -> Option<Exposure> {
    use std::os::unix::fs::MetadataExt;
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Some(Exposure {
            owner: false,
            text: format!("grants permissions to group or others (mode {mode:04o})"),
        });
    }
    let euid = rustix::process::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != euid {
        let us = if euid == 0 { String::new() } else { format!(" or uid {euid} (the user reading it)") };
        return Some(Exposure { owner: true, text: format!("is owned by uid {}, not by root{us}", meta.uid()) });
    }
    None
}

impl Ctx<'_> {
    /// A key file open to other users: an error at `span`, or with
    /// `allow_insecure_key_files` a warning.
    fn key_file_finding(
        &mut self,
        span: Range<usize>,
        key: String,
        tunnel: Option<&str>,
        problem: String,
        fix: &str,
    ) -> Result<(), ConfigError> {
        if self.allow_insecure_key_files {
            self.warnings.push(format!(
                "{}:{}: {key}: {problem} (accepted because allow_insecure_key_files = true)",
                self.file.display(),
                line_of(self.text, span.start)
            ));
            return Ok(());
        }
        Err(self.err(
            Some(span),
            key,
            tunnel,
            format!("{problem}: {fix} it, or set [gateway] allow_insecure_key_files = true"),
        ))
    }
}

fn subnets(
    cx: &mut Ctx<'_>,
    v: Option<&Spanned<Vec<Spanned<String>>>>,
    key: &str,
    n: Option<&str>,
    table: &Range<usize>,
) -> Result<Vec<TrafficSelector>, ConfigError> {
    let Some(v) = v else {
        return Err(cx.err(Some(table.clone()), key.into(), n, "missing; list at least one CIDR subnet".into()));
    };
    if v.get_ref().is_empty() {
        return Err(cx.err(Some(v.span()), key.into(), n, "is empty; list at least one CIDR subnet".into()));
    }
    let mut out = Vec::with_capacity(v.get_ref().len());
    for s in v.get_ref() {
        let text = s.get_ref();
        let ts = TrafficSelector::parse_cidr(text).map_err(|e| cx.err(Some(s.span()), key.into(), n, e))?;
        let addr = text.split('/').next().and_then(|a| a.trim().parse::<IpAddr>().ok());
        if addr.is_some_and(|a| a != ts.start) {
            cx.warnings.push(format!(
                "{}:{}: {key}: {text:?} has host bits set; using {ts}",
                cx.file.display(),
                line_of(cx.text, s.span().start)
            ));
        }
        if !out.contains(&ts) {
            out.push(ts);
        }
    }
    Ok(out)
}

fn proposals<T>(
    cx: &Ctx<'_>,
    v: Option<&Spanned<Vec<Spanned<String>>>>,
    key: &str,
    n: Option<&str>,
    default: &str,
    parse: fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, ConfigError> {
    let Some(v) = v else {
        return parse(default).map(|p| vec![p]).map_err(|e| cx.err(None, key.into(), n, e));
    };
    if v.get_ref().is_empty() {
        return Err(cx.err(Some(v.span()), key.into(), n, "is empty; list at least one proposal".into()));
    }
    v.get_ref().iter().map(|s| parse(s.get_ref()).map_err(|e| cx.err(Some(s.span()), key.into(), n, e))).collect()
}
