//! Traffic selectors (RFC 7296 section 3.13.1): an address range, an IP protocol and a
//! port range. Subnets from the configuration become selectors with any protocol/port.

use std::fmt;
use std::net::IpAddr;

/// One traffic selector. `start` and `end` are of the same address family.
#[derive(Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TrafficSelector {
    /// IP protocol number, 0 for any.
    pub protocol: u8,
    /// First port (0 for any).
    pub start_port: u16,
    /// Last port (65535 for any).
    pub end_port: u16,
    /// First address of the range.
    pub start: IpAddr,
    /// Last address of the range.
    pub end: IpAddr,
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(v: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(std::net::Ipv4Addr::from(u32::try_from(v).unwrap_or(u32::MAX)))
    } else {
        IpAddr::V6(std::net::Ipv6Addr::from(v))
    }
}

impl TrafficSelector {
    /// A selector covering a whole subnet, any protocol and port. The host bits of
    /// `addr` are ignored.
    pub fn from_prefix(addr: IpAddr, prefix_len: u8) -> Option<Self> {
        let bits: u32 = if addr.is_ipv4() { 32 } else { 128 };
        let plen = u32::from(prefix_len);
        if plen > bits {
            return None;
        }
        let host_bits = bits - plen;
        let all: u128 = if bits == 128 { u128::MAX } else { (1u128 << bits) - 1 };
        let host_mask: u128 = if host_bits == 128 { u128::MAX } else { (1u128 << host_bits) - 1 };
        let a = to_u128(addr) & all & !host_mask;
        let v4 = addr.is_ipv4();
        Some(Self {
            protocol: 0,
            start_port: 0,
            end_port: 65535,
            start: from_u128(a, v4),
            end: from_u128(a | host_mask, v4),
        })
    }

    /// Parses `10.1.0.0/24` (or a bare address, meaning a host).
    pub fn parse_cidr(s: &str) -> Result<Self, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().map_err(|_| format!("{s:?} is not a CIDR subnet (bad address {a:?})"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let plen = match p {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("{s:?} is not a CIDR subnet (bad prefix length {p:?})"))?,
            None => max,
        };
        Self::from_prefix(addr, plen).ok_or_else(|| format!("{s:?} is not a CIDR subnet"))
    }

    /// True for IPv4 selectors.
    pub fn is_ipv4(&self) -> bool {
        self.start.is_ipv4()
    }

    /// Whether `ip` lies within the address range.
    pub fn contains_addr(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.is_ipv4() && to_u128(self.start) <= to_u128(ip) && to_u128(ip) <= to_u128(self.end)
    }

    /// Whether a packet's address, protocol and port fall within this selector
    /// (`port` is `None` for protocols without ports, which match only `0..=65535`).
    pub fn matches(&self, ip: IpAddr, protocol: u8, port: Option<u16>) -> bool {
        if !self.contains_addr(ip) {
            return false;
        }
        if self.protocol != 0 && self.protocol != protocol {
            return false;
        }
        match port {
            Some(p) => self.start_port <= p && p <= self.end_port,
            None => self.start_port == 0 && self.end_port == 65535,
        }
    }

    /// The intersection of two selectors (for narrowing, RFC 7296 section 2.9).
    pub fn intersect(&self, other: &Self) -> Option<Self> {
        if self.is_ipv4() != other.is_ipv4() {
            return None;
        }
        let protocol = match (self.protocol, other.protocol) {
            (0, p) | (p, 0) => p,
            (a, b) if a == b => a,
            _ => return None,
        };
        let start_port = self.start_port.max(other.start_port);
        let end_port = self.end_port.min(other.end_port);
        let start = to_u128(self.start).max(to_u128(other.start));
        let end = to_u128(self.end).min(to_u128(other.end));
        if start_port > end_port || start > end {
            return None;
        }
        let v4 = self.is_ipv4();
        Some(Self { protocol, start_port, end_port, start: from_u128(start, v4), end: from_u128(end, v4) })
    }

    /// Whether `other` lies entirely within `self`.
    pub fn is_superset_of(&self, other: &Self) -> bool {
        self.intersect(other).as_ref() == Some(other)
    }

    /// The prefix length if the address range is exactly one CIDR block.
    pub fn prefix_len(&self) -> Option<u8> {
        let (s, e) = (to_u128(self.start), to_u128(self.end));
        let size = e.checked_sub(s)?.checked_add(1);
        let bits: u32 = if self.is_ipv4() { 32 } else { 128 };
        match size {
            None => (s == 0 && bits == 128).then_some(0),
            Some(n) if n.is_power_of_two() && s % n == 0 => u8::try_from(bits - n.trailing_zeros()).ok(),
            _ => None,
        }
    }
}

impl fmt::Display for TrafficSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.prefix_len() {
            Some(p) => write!(f, "{}/{}", self.start, p)?,
            None => write!(f, "{}..{}", self.start, self.end)?,
        }
        if self.protocol != 0 || self.start_port != 0 || self.end_port != 65535 {
            write!(f, "[{}/{}-{}]", self.protocol, self.start_port, self.end_port)?;
        }
        Ok(())
    }
}

impl fmt::Debug for TrafficSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parse_display_and_narrowing() {
        let a = TrafficSelector::parse_cidr("10.1.0.0/16").unwrap();
        let b = TrafficSelector::parse_cidr("10.1.2.77/24").unwrap();
        assert_eq!(b.to_string(), "10.1.2.0/24");
        assert_eq!(a.intersect(&b), Some(b));
        assert!(a.is_superset_of(&b) && !b.is_superset_of(&a));
        assert!(a.contains_addr("10.1.255.255".parse().unwrap()));
        assert!(!a.contains_addr("10.2.0.0".parse().unwrap()));
        let all = TrafficSelector::parse_cidr("0.0.0.0/0").unwrap();
        assert_eq!(all.to_string(), "0.0.0.0/0");
        let v6 = TrafficSelector::parse_cidr("2001:db8::/32").unwrap();
        assert_eq!(v6.to_string(), "2001:db8::/32");
        assert_eq!(a.intersect(&v6), None);
        assert!(TrafficSelector::parse_cidr("10.1.0.0/33").is_err());
        assert!(TrafficSelector::parse_cidr("10.1.0/24").is_err());
        assert_eq!(TrafficSelector::parse_cidr("::/0").unwrap().prefix_len(), Some(0));
    }
}
