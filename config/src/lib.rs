//! vpngw configuration: TOML text to validated, typed settings.
//!
//! Owns the file format (`[gateway]` + `[[tunnel]]`, documented in
//! the README's configuration reference), defaults, and all validation: every error names the file,
//! the line and the key. Does not own runtime state, reloading or logging: warnings are
//! returned in [`Config::warnings`] for the gateway to log. `raw` mirrors the file with
//! spans; `validate` turns it into the typed structs below, with `timers` parsing the
//! lifetime and liveness keys into `ipsec_types`' [`SaTimers`] and [`Dpd`].
#![forbid(unsafe_code)]

mod effective;
mod failover;
mod ikev1;
mod raw;
mod socket;
mod timers;
mod validate;

pub use effective::HIDDEN;
pub use ikev1::DEFAULT_IKE_PROPOSAL_V1;
pub use ipsec_types::{Dpd, DpdAction, SaTimers};
pub use socket::control_socket;
pub use timers::MAX_LIFETIME;
pub use validate::{
    DEFAULT_CHILD_SA_MAX, DEFAULT_CONTROL_SOCKET, DEFAULT_COOKIE_THRESHOLD, DEFAULT_ESP_PROPOSAL,
    DEFAULT_FRAGMENT_SIZE, DEFAULT_HALF_OPEN_MAX, DEFAULT_HALF_OPEN_PER_SOURCE, DEFAULT_IKE_PORT, DEFAULT_IKE_PROPOSAL,
    DEFAULT_IKE_SA_PER_PEER_MAX, DEFAULT_NATT_PORT, DEFAULT_REPLAY_WINDOW, DEFAULT_TUN_MTU, DEFAULT_TUN_NAME,
    MAX_LIMIT, MAX_REPLAY_WINDOW, MIN_RECOMMENDED_PSK_BYTES,
};

use ipsec_types::{EspProposal, Identity, IkeProposal, TrafficSelector};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// A configuration error. Displays as `{file}:{line}: {section} ({tunnel name}) `{key}`: {message}`,
/// e.g. ``/etc/vpngw/a.toml:12: tunnel[0] (site-b) `local_subnets`: "10.1.0/24" is not a CIDR subnet``.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (the configuration file, or a `psk_file` that cannot be read: then the
    /// message names it too).
    pub file: PathBuf,
    /// 1-based line in the configuration file, when known.
    pub line: Option<usize>,
    /// Dotted key path, e.g. `tunnel[0].local_subnets` or `gateway.tun_name`.
    pub key: Option<String>,
    /// The tunnel's `name`, when the error concerns a `[[tunnel]]` whose name is known.
    pub tunnel: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:", self.file.display())?;
        match self.line {
            Some(l) => write!(f, "{l}: ")?,
            None => f.write_str(" ")?,
        }
        if let Some(key) = &self.key {
            let (section, leaf) = match key.rsplit_once('.') {
                Some((s, l)) => (Some(s), l),
                None => (None, key.as_str()),
            };
            if let Some(s) = section {
                write!(f, "{s} ")?;
            }
            if let Some(name) = &self.tunnel {
                write!(f, "({name}) ")?;
            }
            write!(f, "`{leaf}`: ")?;
        } else if let Some(name) = &self.tunnel {
            write!(f, "({name}): ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[gateway]`.
    pub gateway: GatewayConfig,
    /// `[[tunnel]]` entries, in file order; names are unique.
    pub tunnels: Vec<TunnelConfig>,
    /// Non-fatal findings for the gateway to log at start (short PSK, subnet with host
    /// bits set, overlapping `remote_subnets`, no tunnels, limits that cannot take effect,
    /// and key files with loose permissions when `allow_insecure_key_files` is set).
    /// Never contain key material.
    pub warnings: Vec<String>,
}

impl Config {
    /// The tunnel called `name`.
    pub fn tunnel(&self, name: &str) -> Option<&TunnelConfig> {
        self.tunnels.iter().find(|t| t.name == name)
    }
}

/// `[gateway]`.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// WAN address: IKE on UDP 500 and 4500.
    pub local_address: IpAddr,
    /// TUN interface name.
    pub tun_name: String,
    /// TUN MTU (default 1400).
    pub tun_mtu: u16,
    /// Control socket path.
    pub control_socket: PathBuf,
    /// IKE port (default 500).
    pub ike_port: u16,
    /// NAT-T port (default 4500).
    pub natt_port: u16,
    /// Limits on IKE state (`cookie_threshold`, `half_open_max`, ...).
    pub limits: Limits,
    /// A `psk_file` (or this file, holding an inline `psk`) with permissions for group or
    /// others, or owned by neither root nor the daemon's user, is a warning instead of an
    /// error (default false).
    pub allow_insecure_key_files: bool,
    /// Where the Prometheus metrics endpoint listens (`GET /metrics`), e.g.
    /// `127.0.0.1:9750`; `None` (the default): no endpoint.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// `[gateway]` limits on IKE state: what unauthenticated senders and authenticated peers
/// may make the daemon hold. The gateway hands them to `ike` unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Half-open IKE SAs at or above which a new IKE_SA_INIT must return a COOKIE
    /// (RFC 7296 2.6); 0 asks every initiator for one (default 10).
    pub cookie_threshold: usize,
    /// Half-open IKE SAs the gateway holds at most (default 1000).
    pub half_open_max: usize,
    /// Half-open IKE SAs from one source address at most (default 5).
    pub half_open_per_source: usize,
    /// CHILD SAs one IKE SA carries at most (default 32).
    pub child_sa_max: usize,
    /// IKE SAs one tunnel's peer holds with us at once at most (default 5).
    pub ike_sa_per_peer_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            cookie_threshold: DEFAULT_COOKIE_THRESHOLD,
            half_open_max: DEFAULT_HALF_OPEN_MAX,
            half_open_per_source: DEFAULT_HALF_OPEN_PER_SOURCE,
            child_sa_max: DEFAULT_CHILD_SA_MAX,
            ike_sa_per_peer_max: DEFAULT_IKE_SA_PER_PEER_MAX,
        }
    }
}

/// How the tunnel starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAction {
    /// Initiate at start.
    Initiate,
    /// Wait for the peer.
    Respond,
}

/// The IKE version a tunnel speaks (`ike_version`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IkeVersion {
    /// IKEv1 (RFC 2409): Main Mode with a pre-shared key, then Quick Mode; only for peers
    /// that speak nothing else.
    V1,
    /// IKEv2 (RFC 7296), the default.
    #[default]
    V2,
}

/// ESP encapsulation policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encapsulation {
    /// ESP-in-UDP when a NAT is detected or the peer is vpngw too (both announce it in
    /// IKE_SA_INIT: the UDP path is the faster one); raw ESP with every other peer.
    Auto,
    /// Raw ESP (IP protocol 50) unless a NAT is detected (then UDP is the only way
    /// through); we do not announce vpngw, so a vpngw peer stays raw too.
    Raw,
    /// Always ESP-in-UDP.
    Udp,
}

impl Encapsulation {
    /// The configuration's word: `auto`, `raw` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Raw => "raw",
            Self::Udp => "udp",
        }
    }
}

/// A pre-shared key; zeroized on drop, never printed.
#[derive(Clone)]
pub struct Psk(pub Zeroizing<Vec<u8>>);

impl std::fmt::Debug for Psk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Psk(<redacted>)")
    }
}

/// `[[tunnel]]`.
#[derive(Debug, Clone)]
pub struct TunnelConfig {
    /// Unique name.
    pub name: String,
    /// Peer WAN address.
    pub remote_address: IpAddr,
    /// IKEv2 (default) or IKEv1. With IKEv1 the proposals, subnets and fragmentation
    /// settings have passed the IKEv1 rules (see the README's configuration reference):
    /// `fragmentation` is false and `child_sa_per_subnet_pair` true, as IKEv1 does it.
    pub ike_version: IkeVersion,
    /// IKEv1 only: Aggressive Mode instead of Main Mode when we initiate, and accepted
    /// besides Main Mode when we respond (default false). Identities travel in cleartext
    /// and the exchange exposes a hash of the PSK to offline guessing; the daemon warns
    /// at start-up.
    pub aggressive: bool,
    /// Our identity (default: local_address).
    pub local_id: Identity,
    /// Peer identity (default: remote_address).
    pub remote_id: Identity,
    /// The key (from `psk` or `psk_file`).
    pub psk: Psk,
    /// Local protected subnets.
    pub local_subnets: Vec<TrafficSelector>,
    /// Remote protected subnets (routed into TUN).
    pub remote_subnets: Vec<TrafficSelector>,
    /// One CHILD SA per (local, remote) subnet pair instead of one for all subnets
    /// (always true with IKEv1, whose Quick Mode negotiates one subnet pair per SA).
    pub child_sa_per_subnet_pair: bool,
    /// Initiate or respond.
    pub start: StartAction,
    /// IKE proposals.
    pub ike_proposals: Vec<IkeProposal>,
    /// ESP proposals.
    pub esp_proposals: Vec<EspProposal>,
    /// Encapsulation policy.
    pub encapsulation: Encapsulation,
    /// Anti-replay window (default 1024).
    pub replay_window: u32,
    /// IKE fragmentation (RFC 7383) announced and used (default true; false with IKEv1,
    /// which has no fragmentation in vpngw).
    pub fragmentation: bool,
    /// Largest IP datagram of an IKE message we send, IP and UDP headers and the
    /// non-ESP marker included: larger messages are fragmented when the peer supports it
    /// (default 1280; at least 576 for IPv4, 1280 for IPv6).
    pub fragment_size: u16,
    /// When the SAs are rekeyed and expire (`ike_rekey_time`, `ike_life_time`,
    /// `child_rekey_time`, `child_life_time`, `rekey_jitter`, `child_rekey_bytes`,
    /// `child_rekey_packets`; rekey times at least 1 s, jitter below 100 %).
    pub timers: SaTimers,
    /// Dead peer detection (`dpd_delay`, `dpd_timeout` at least 1 s and at least
    /// `dpd_delay` when DPD is on, `dpd_action`).
    pub dpd: Dpd,
    /// Active/standby: this tunnel stands by for the named tunnel (its primary), which
    /// protects the same subnets through another peer; outbound traffic uses one tunnel
    /// of the group at a time (see `failover`). The primary has no `standby_for`.
    pub standby_for: Option<String>,
    /// A standby only: once this tunnel carries the group's traffic, hand it back to a
    /// tunnel earlier in the group (the primary first) as soon as that one is up again
    /// (default false: stay until this tunnel fails).
    pub failback: bool,
}

impl Config {
    /// The active/standby groups: each primary tunnel's name, then its members in
    /// preference order (the primary, then its standbys in file order). Tunnels in no
    /// group are not listed.
    pub fn failover_groups(&self) -> Vec<Vec<&TunnelConfig>> {
        let mut groups = Vec::new();
        for p in self.tunnels.iter().filter(|t| t.standby_for.is_none()) {
            let standbys = self.tunnels.iter().filter(|t| t.standby_for.as_deref() == Some(p.name.as_str()));
            let members: Vec<&TunnelConfig> = std::iter::once(p).chain(standbys).collect();
            if members.len() > 1 {
                groups.push(members);
            }
        }
        groups
    }
}

/// Largest configuration file `load` accepts.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Reads and validates a configuration file. Unlike [`parse`], also checks the file's
/// own owner and permissions when it holds an inline `psk` (see [`parse`] for the
/// rules of `psk_file`s).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let fail = |message: String| ConfigError { file: path.to_path_buf(), line: None, key: None, tunnel: None, message };
    let (bytes, meta) = read_limited(path, MAX_CONFIG_BYTES).map_err(fail)?;
    let text =
        std::str::from_utf8(&bytes).map_err(|e| fail(format!("not UTF-8 text (at byte {})", e.valid_up_to())))?;
    let text = Zeroizing::new(text.to_owned());
    parse_with(&text, path, Some(&meta))
}

/// Validates configuration text; `path` is used in errors and to resolve relative
/// `psk_file` and `control_socket` paths (against its directory). Reads `psk_file`s,
/// and refuses one that grants any permission to group or others or that is owned by
/// neither root nor this process's effective user (a warning instead with
/// `allow_insecure_key_files = true`); otherwise pure. The text's own file is not
/// examined (use [`load`] for that). Never panics.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    parse_with(text, path, None)
}

/// [`parse`], with the metadata of the file the text came from (checked like a
/// `psk_file` if the text holds an inline `psk`).
fn parse_with(text: &str, path: &Path, meta: Option<&std::fs::Metadata>) -> Result<Config, ConfigError> {
    let raw: raw::RawConfig = toml::from_str(text).map_err(|e| validate::toml_error(text, path, &e))?;
    validate::validate(raw, text, path, meta)
}

/// Reads a regular file of at most `max` bytes into zeroizing memory, with the metadata
/// of the file actually read (from the open descriptor). Refuses non-regular files
/// (FIFOs, devices) so a bad path can neither block nor read forever.
pub(crate) fn read_limited(path: &Path, max: u64) -> Result<(Zeroizing<Vec<u8>>, std::fs::Metadata), String> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("cannot read {}: not a regular file", path.display()));
    }
    if meta.len() > max {
        return Err(format!("{} is too large ({} bytes, at most {max})", path.display(), meta.len()));
    }
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // The file now open may not be the one examined above if the path changed meanwhile:
    // its own metadata is what the permission checks look at.
    let meta = file.metadata().map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("cannot read {}: not a regular file", path.display()));
    }
    // Sized up front so reading does not reallocate and leave unzeroized copies behind.
    let mut buf = Zeroizing::new(Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0).saturating_add(1)));
    file.take(max.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if buf.len() as u64 > max {
        return Err(format!("{} is too large (more than {max} bytes)", path.display()));
    }
    Ok((buf, meta))
}
