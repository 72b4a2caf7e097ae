//! Holds on a gateway's WAN, so a test makes an event happen instead of waiting for it.
//!
//! An [`IkeHold`] is an nftables table in one gateway's namespace that drops the IKE
//! messages arriving from the other gateway (UDP 500, and UDP 4500 datagrams that start
//! with the four-byte non-ESP marker of RFC 3948) and counts them. ESP, raw or in UDP,
//! passes, so the tunnel keeps carrying traffic while IKE is held. The capture on the WAN
//! interface still sees the held messages (packet taps run before netfilter), so a
//! request that is dropped was nevertheless "on the wire".
//!
//! With requests held on each gateway, two requests sent at once cross for certain: each
//! side sends its own and neither receives the other's. Holding requests and responses
//! separately lets the test then decide who hears what first, by releasing one hold after
//! the other ([`IkeHold::wait_dropped`] tells when a retransmission or an answer has
//! arrived), so that each side receives the other's request while its own is outstanding.
//!
//! An [`IkeWatch`] counts, without dropping, what a gateway really received: it tells when
//! an exchange has its answer and when IKE has gone quiet. A [`PacketCounter`] counts any
//! other kind of WAN packet the same way (e.g. NAT-keepalives).
//!
//! Owns: the nftables rules and their counters. Dropping a guard deletes its table.

use std::path::Path;
use std::time::Duration;

use crate::netns::{Netns, WAN_IF};
use crate::{wait_for, Error, Result};

/// Which IKE messages a hold counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// Requests (Response flag clear).
    Requests,
    /// Responses (Response flag set).
    Responses,
}

impl Held {
    fn counter(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::Responses => "responses",
        }
    }
}

/// Drops (and counts) IKE messages of one kind arriving at one gateway from one peer
/// address, until released.
pub struct IkeHold<'a> {
    ns: &'a Netns,
    table: String,
    kind: Held,
    released: bool,
}

impl<'a> IkeHold<'a> {
    /// Installs the hold in `ns` for IKE `kind` from `peer` arriving on the WAN interface;
    /// `dir` receives the rules file (kept with the scenario's logs).
    pub fn inbound(ns: &'a Netns, peer: &str, kind: Held, dir: &Path) -> Result<Self> {
        let table = format!("vghold_{}_{}", kind.counter(), ns.name().replace('-', "_"));
        install(ns, &table, peer, -10, &[(kind, "held", "drop")], dir)?;
        Ok(Self { ns, table, kind, released: false })
    }

    /// Messages dropped so far.
    pub fn dropped(&self) -> Result<u64> {
        read_counter(self.ns, &self.table, "held")
    }

    /// Waits (up to `timeout`) until at least `n` messages have been dropped.
    pub fn wait_dropped(&self, n: u64, timeout: Duration) -> Result<u64> {
        let what = format!("{n} IKE {} held in {}", self.kind.counter(), self.ns.name());
        wait_for(timeout, &what, || self.dropped().ok().filter(|&d| d >= n))
    }

    /// Removes the hold; returns how many messages it dropped.
    pub fn release(mut self) -> Result<u64> {
        let dropped = self.dropped()?;
        self.ns.run(&["nft", "delete", "table", "inet", &self.table])?;
        self.released = true;
        Ok(dropped)
    }
}

impl Drop for IkeHold<'_> {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.ns.run(&["nft", "delete", "table", "inet", &self.table]);
        }
    }
}

/// Counts, without dropping, the IKE requests and responses that reach one gateway from
/// one peer address after every hold: what the gateway really received. It tells when an
/// exchange completed (its response arrived) and when IKE has gone quiet.
pub struct IkeWatch<'a> {
    ns: &'a Netns,
    table: String,
}

impl<'a> IkeWatch<'a> {
    /// Installs the counters in `ns` for IKE from `peer`; `dir` receives the rules file.
    pub fn inbound(ns: &'a Netns, peer: &str, dir: &Path) -> Result<Self> {
        let table = format!("vgwatch_{}", ns.name().replace('-', "_"));
        let counters = [(Held::Requests, "requests", "accept"), (Held::Responses, "responses", "accept")];
        install(ns, &table, peer, 0, &counters, dir)?;
        Ok(Self { ns, table })
    }

    /// IKE messages of `kind` received so far.
    pub fn received(&self, kind: Held) -> Result<u64> {
        read_counter(self.ns, &self.table, kind.counter())
    }

    /// IKE messages of either kind received so far.
    pub fn total(&self) -> Result<u64> {
        Ok(self.received(Held::Requests)? + self.received(Held::Responses)?)
    }
}

impl Drop for IkeWatch<'_> {
    fn drop(&mut self) {
        let _ = self.ns.run(&["nft", "delete", "table", "inet", &self.table]);
    }
}

/// Counts, without dropping, the packets arriving at one namespace on the WAN interface
/// that match an nftables expression (e.g. NAT-keepalives: `udp dport 4500 udp length 9
/// @th,64,8 0xff`). Dropping the guard deletes its table.
pub struct PacketCounter<'a> {
    ns: &'a Netns,
    table: String,
}

impl<'a> PacketCounter<'a> {
    /// Installs the counter `name` in `ns` for WAN input matching `expr`; `dir` receives
    /// the rules file.
    pub fn inbound(ns: &'a Netns, name: &str, expr: &str, dir: &Path) -> Result<Self> {
        let table = format!("vgcount_{name}_{}", ns.name().replace('-', "_"));
        let text = format!(
            "add table inet {table}
             add counter inet {table} seen
             add chain inet {table} in {{ type filter hook input priority 0; }}
             add rule inet {table} in iifname {WAN_IF} {expr} counter name seen accept
"
        );
        let file = dir.join(format!("{table}.nft"));
        std::fs::write(&file, text)?;
        ns.run(&["nft", "-f", &file.to_string_lossy()])?;
        Ok(Self { ns, table })
    }

    /// Packets counted so far.
    pub fn count(&self) -> Result<u64> {
        read_counter(self.ns, &self.table, "seen")
    }

    /// Waits (up to `timeout`) until at least `n` packets have been counted.
    pub fn wait_count(&self, n: u64, timeout: Duration, what: &str) -> Result<u64> {
        wait_for(timeout, what, || self.count().ok().filter(|&c| c >= n))
    }
}

impl Drop for PacketCounter<'_> {
    fn drop(&mut self) {
        let _ = self.ns.run(&["nft", "delete", "table", "inet", &self.table]);
    }
}

/// Writes and loads an nftables table `table` in `ns` whose input chain (at `priority`)
/// counts the IKE messages from `peer` on the WAN interface, each kind in its counter,
/// with the given verdict.
fn install(ns: &Netns, table: &str, peer: &str, priority: i32, rules: &[(Held, &str, &str)], dir: &Path) -> Result<()> {
    let mut text = format!("add table inet {table}\n");
    for (_, counter, _) in rules {
        text.push_str(&format!("add counter inet {table} {counter}\n"));
    }
    text.push_str(&format!("add chain inet {table} in {{ type filter hook input priority {priority}; }}\n"));
    // The IKE header's flags are its 20th byte: at UDP payload offset 19 on port 500,
    // 23 on port 4500 (after the marker); 0x20 is the Response flag.
    let from = format!("add rule inet {table} in iifname {WAN_IF} ip saddr {peer} udp dport");
    for (kind, counter, verdict) in rules {
        let flag = match kind {
            Held::Requests => "0",
            Held::Responses => "0x20",
        };
        for (port, flags_bit) in [("500", (8 + 19) * 8), ("4500 @th,64,32 0", (8 + 23) * 8)] {
            text.push_str(&format!(
                "{from} {port} @th,{flags_bit},8 & 0x20 == {flag} counter name {counter} {verdict}\n"
            ));
        }
    }
    let file = dir.join(format!("{table}.nft"));
    std::fs::write(&file, text)?;
    ns.run(&["nft", "-f", &file.to_string_lossy()]).map(drop)
}

/// The packet count of a named counter.
fn read_counter(ns: &Netns, table: &str, counter: &str) -> Result<u64> {
    let text = ns.run(&["nft", "list", "counter", "inet", table, counter])?;
    parse_packets(&text).ok_or_else(|| Error::new(format!("no packet count in `nft list counter`: {text}")))
}

/// The `packets N` figure of `nft list counter` output.
fn parse_packets(text: &str) -> Option<u64> {
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "packets" {
            return words.next()?.parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::parse_packets;

    #[test]
    fn reads_the_packet_count_of_a_named_counter() {
        let text = "table inet vgikehold_a {\n\tcounter held {\n\t\tpackets 3 bytes 812\n\t}\n}\n";
        assert_eq!(parse_packets(text), Some(3));
        assert_eq!(parse_packets("table inet x {\n}\n"), None);
    }
}
