//! The TOML file as written: serde structs mirroring the file, every value wrapped in
//! `toml::Spanned` so validation can point at its line. Owns the key names and
//! `deny_unknown_fields`; does not validate or apply defaults (see `validate`).

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub gateway: Option<Spanned<RawGateway>>,
    #[serde(default)]
    pub tunnel: Vec<Spanned<RawTunnel>>,
}

/// `[gateway]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGateway {
    pub local_address: Option<Spanned<String>>,
    pub tun_name: Option<Spanned<String>>,
    pub tun_mtu: Option<Spanned<u16>>,
    pub control_socket: Option<Spanned<String>>,
    pub ike_port: Option<Spanned<u16>>,
    pub natt_port: Option<Spanned<u16>>,
}

/// `[[tunnel]]`. Room for the lifetime keys of issue #3 (`ike_rekey_time`, ...): add
/// them here as `Option<Spanned<_>>` and convert them in `validate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTunnel {
    pub name: Option<Spanned<String>>,
    pub remote_address: Option<Spanned<String>>,
    pub local_id: Option<Spanned<String>>,
    pub remote_id: Option<Spanned<String>>,
    pub psk: Option<Spanned<Secret>>,
    pub psk_file: Option<Spanned<String>>,
    pub local_subnets: Option<Spanned<Vec<Spanned<String>>>>,
    pub remote_subnets: Option<Spanned<Vec<Spanned<String>>>>,
    pub start: Option<Spanned<String>>,
    pub ike_proposals: Option<Spanned<Vec<Spanned<String>>>>,
    pub esp_proposals: Option<Spanned<Vec<Spanned<String>>>>,
    pub encapsulation: Option<Spanned<String>>,
    pub replay_window: Option<Spanned<u32>>,
}

/// An inline `psk`: zeroized on drop, never printed.
pub(crate) struct Secret(pub zeroize::Zeroizing<String>);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| Self(zeroize::Zeroizing::new(s)))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}
