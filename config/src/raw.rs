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
    pub cookie_threshold: Option<Spanned<i64>>,
    pub half_open_max: Option<Spanned<i64>>,
    pub half_open_per_source: Option<Spanned<i64>>,
    pub child_sa_max: Option<Spanned<i64>>,
    pub ike_sa_per_peer_max: Option<Spanned<i64>>,
    pub allow_insecure_key_files: Option<Spanned<bool>>,
    pub metrics_listen: Option<Spanned<String>>,
}

/// `[[tunnel]]`. The lifetime and liveness keys are converted in `timers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTunnel {
    pub name: Option<Spanned<String>>,
    pub remote_address: Option<Spanned<String>>,
    pub ike_version: Option<Spanned<i64>>,
    pub aggressive: Option<Spanned<bool>>,
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
    pub fragmentation: Option<Spanned<bool>>,
    pub fragment_size: Option<Spanned<i64>>,
    pub child_sa_per_subnet_pair: Option<Spanned<bool>>,
    pub standby_for: Option<Spanned<String>>,
    pub failback: Option<Spanned<bool>>,
    pub ike_rekey_time: Option<Spanned<NumOrText>>,
    pub ike_life_time: Option<Spanned<NumOrText>>,
    pub child_rekey_time: Option<Spanned<NumOrText>>,
    pub child_life_time: Option<Spanned<NumOrText>>,
    pub rekey_jitter: Option<Spanned<NumOrText>>,
    pub child_rekey_bytes: Option<Spanned<NumOrText>>,
    pub child_rekey_packets: Option<Spanned<NumOrText>>,
    pub dpd_delay: Option<Spanned<NumOrText>>,
    pub dpd_timeout: Option<Spanned<NumOrText>>,
    pub dpd_action: Option<Spanned<String>>,
}

/// A TOML integer or string: durations (`"4h"` or seconds), percentages (`"10%"` or
/// `10`) and volumes (`"500M"` or a count). Parsed by `lifetime`, which knows the unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NumOrText {
    Num(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for NumOrText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = NumOrText;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an integer or a string such as \"4h\", \"10%\" or \"500M\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<NumOrText, E> {
                Ok(NumOrText::Num(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<NumOrText, E> {
                i64::try_from(v).map(NumOrText::Num).map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<NumOrText, E> {
                Ok(NumOrText::Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
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
