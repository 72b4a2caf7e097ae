//! IKE identities (RFC 7296 section 3.5) used for PSK lookup and authentication.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IKE identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Identity {
    /// ID_IPV4_ADDR (1).
    Ipv4(Ipv4Addr),
    /// ID_FQDN (2).
    Fqdn(String),
    /// ID_RFC822_ADDR (3).
    Rfc822(String),
    /// ID_IPV6_ADDR (5).
    Ipv6(Ipv6Addr),
}

impl Identity {
    /// Parses an identity the way swanctl does: an IP address, `user@domain` (RFC822),
    /// `@fqdn` (forced FQDN) or a plain host name (FQDN).
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty identity".into());
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Self::from(ip));
        }
        if let Some(rest) = s.strip_prefix('@') {
            if rest.is_empty() {
                return Err("empty FQDN identity".into());
            }
            return Ok(Self::Fqdn(rest.to_string()));
        }
        if s.contains('@') {
            return Ok(Self::Rfc822(s.to_string()));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("identity {s:?} contains whitespace or control characters"));
        }
        Ok(Self::Fqdn(s.to_string()))
    }

    /// IANA ID type.
    pub fn id_type(&self) -> u8 {
        match self {
            Self::Ipv4(_) => 1,
            Self::Fqdn(_) => 2,
            Self::Rfc822(_) => 3,
            Self::Ipv6(_) => 5,
        }
    }

    /// Identification data as carried on the wire.
    pub fn data(&self) -> Vec<u8> {
        match self {
            Self::Ipv4(a) => a.octets().to_vec(),
            Self::Ipv6(a) => a.octets().to_vec(),
            Self::Fqdn(s) | Self::Rfc822(s) => s.as_bytes().to_vec(),
        }
    }

    /// From an ID payload's type and data; `None` for unsupported types or bad lengths.
    pub fn from_wire(id_type: u8, data: &[u8]) -> Option<Self> {
        match id_type {
            1 => <[u8; 4]>::try_from(data).ok().map(|o| Self::Ipv4(Ipv4Addr::from(o))),
            5 => <[u8; 16]>::try_from(data).ok().map(|o| Self::Ipv6(Ipv6Addr::from(o))),
            2 => std::str::from_utf8(data).ok().map(|s| Self::Fqdn(s.to_string())),
            3 => std::str::from_utf8(data).ok().map(|s| Self::Rfc822(s.to_string())),
            _ => None,
        }
    }
}

impl From<IpAddr> for Identity {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => Self::Ipv4(a),
            IpAddr::V6(a) => Self::Ipv6(a),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ipv4(a) => write!(f, "{a}"),
            Self::Ipv6(a) => write!(f, "{a}"),
            // A peer's identity comes off the wire: control characters are escaped so
            // that it cannot forge log lines or terminal output.
            Self::Fqdn(s) | Self::Rfc822(s) if s.chars().any(char::is_control) => s.chars().try_for_each(|c| {
                if c.is_control() {
                    write!(f, "{}", c.escape_default())
                } else {
                    write!(f, "{c}")
                }
            }),
            Self::Fqdn(s) | Self::Rfc822(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_from_the_wire_are_escaped_when_shown() {
        let id = Identity::from_wire(2, b"gw\nFAKE log line\x1b[31m").unwrap();
        assert_eq!(id.to_string(), "gw\\nFAKE log line\\u{1b}[31m");
    }

    #[test]
    fn parse_and_wire_round_trip() {
        for (s, t) in [("192.0.2.1", 1), ("gw-a.example.net", 2), ("ops@example.net", 3), ("2001:db8::1", 5)] {
            let id = Identity::parse(s).unwrap();
            assert_eq!(id.id_type(), t);
            assert_eq!(Identity::from_wire(id.id_type(), &id.data()), Some(id.clone()));
            assert_eq!(id.to_string(), s);
        }
        assert_eq!(Identity::parse("@10.0.0.1").unwrap(), Identity::Fqdn("10.0.0.1".into()));
        assert!(Identity::parse("").is_err());
        assert_eq!(Identity::from_wire(1, &[1, 2, 3]), None);
    }
}
