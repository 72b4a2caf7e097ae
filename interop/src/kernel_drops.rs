//! Kernel counters of dropped packets inside the namespaces, for failure analysis and
//! for checks that nothing was dropped where it must not be: the drop counters of
//! `/proc/net/snmp` and `/proc/net/netstat` and every interface's rx/tx drops.
//!
//! Owns: reading and diffing those counters. Does not own: deciding which growth is
//! acceptable (the scenarios do).

use std::collections::BTreeMap;

use crate::netns::{self, Topology};

/// Where packets were dropped inside the namespaces, for failure analysis: UDP receive
/// buffer overflows (`RcvbufErrors`, per namespace) and interface drops, e.g.
/// `gwb: udp rcvbuf 0, vpn0 rx/tx dropped 0/12`. Only non-zero interface counters are listed.
pub fn drop_counters(topo: &Topology) -> String {
    topo.all()
        .iter()
        .map(|ns| {
            let d = kernel_drops(ns);
            let rcvbuf = d.get(UDP_RCVBUF).map_or_else(|| "?".to_owned(), u64::to_string);
            let mut s = format!("{}: udp rcvbuf errors {rcvbuf}", ns.name());
            let links = ns.ip(&["-s", "-o", "link"]).unwrap_or_default();
            for (dev, rx, tx) in link_drops(&links) {
                if rx + tx > 0 {
                    s.push_str(&format!(", {dev} rx/tx dropped {rx}/{tx}"));
                }
            }
            s
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The [`kernel_drops`] key of UDP receive buffer overflows.
pub const UDP_RCVBUF: &str = "snmp:UdpRcvbufErrors";

/// Kernel counters of one namespace that count dropped packets: the counters of
/// `/proc/net/snmp` and `/proc/net/netstat` whose name says so (`UdpRcvbufErrors`,
/// `IpOutDiscards`, `TcpExtTCPBacklogDrop`, ...; named as `nstat` names them) and every
/// interface's rx/tx drops, keyed `snmp:NAME` and `IFNAME:rx_dropped` / `IFNAME:tx_dropped`.
/// Unreadable counters are left out.
pub fn kernel_drops(ns: &netns::Netns) -> BTreeMap<String, u64> {
    const DROPISH: [&str; 6] = ["Errors", "Discards", "Drop", "Overflow", "Prune", "Collapsed"];
    let mut out: BTreeMap<String, u64> = proc_counters(ns)
        .into_iter()
        .filter(|(name, _)| DROPISH.iter().any(|d| name.contains(d)))
        .map(|(name, n)| (format!("snmp:{name}"), n))
        .collect();
    for (dev, rx, tx) in link_drops(&ns.ip(&["-s", "-o", "link"]).unwrap_or_default()) {
        out.insert(format!("{dev}:rx_dropped"), rx);
        out.insert(format!("{dev}:tx_dropped"), tx);
    }
    out
}

/// The TCP counters of one namespace that tell a sender's retransmissions apart
/// (`TcpRetransSegs`, `TcpExtTCPDSACKRecvSegs`: retransmitted segments the receiver
/// reports it already had, i.e. spurious; `TcpExtTCPSACKReorder`/`TCPTSReorder`:
/// reordering detected), keyed as `nstat` names them. Unreadable counters are left out.
pub fn tcp_counters(ns: &netns::Netns) -> BTreeMap<String, u64> {
    const NAMES: [&str; 4] = ["TcpRetransSegs", "TcpExtTCPDSACKRecvSegs", "TcpExtTCPSACKReorder", "TcpExtTCPTSReorder"];
    proc_counters(ns).into_iter().filter(|(name, _)| NAMES.contains(&name.as_str())).collect()
}

/// Every counter of `/proc/net/snmp` and `/proc/net/netstat` inside `ns` (unreadable
/// files give none).
fn proc_counters(ns: &netns::Netns) -> Vec<(String, u64)> {
    ["/proc/net/snmp", "/proc/net/netstat"]
        .iter()
        .flat_map(|file| snmp_counters(&ns.run(&["cat", file]).unwrap_or_default()))
        .collect()
}

/// The counters that grew between two [`kernel_drops`] snapshots, with the growth.
pub fn grown(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> Vec<(String, u64)> {
    after
        .iter()
        .filter_map(|(k, a)| {
            let d = a.saturating_sub(before.get(k).copied().unwrap_or(0));
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

/// Every counter of `/proc/net/snmp` or `/proc/net/netstat` text (pairs of lines: `Udp:
/// names...` then `Udp: values...`), named prefix + name (`UdpRcvbufErrors`).
fn snmp_counters(text: &str) -> Vec<(String, u64)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for pair in lines.chunks_exact(2) {
        let (Some((prefix, names)), Some((prefix2, values))) = (pair[0].split_once(':'), pair[1].split_once(':'))
        else {
            continue;
        };
        if prefix != prefix2 {
            continue;
        }
        for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
            if let Ok(n) = value.parse() {
                out.push((format!("{prefix}{name}"), n));
            }
        }
    }
    out
}

/// `(device, rx dropped, tx dropped)` from `ip -s -o link` (one line per device; `\`
/// separates the lines of each device's statistics).
fn link_drops(text: &str) -> Vec<(String, u64, u64)> {
    text.lines()
        .filter_map(|line| {
            let dev = line.split(": ").nth(1)?.split('@').next()?.to_owned();
            let parts: Vec<&str> = line.split('\\').map(str::trim).collect();
            let stat = |label: &str| {
                let i = parts.iter().position(|p| p.starts_with(label))?;
                parts.get(i + 1)?.split_whitespace().nth(3)?.parse::<u64>().ok()
            };
            Some((dev, stat("RX:")?, stat("TX:")?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_drop_counters() {
        let snmp = "Ip: Forwarding InDiscards\nIp: 1 4\n\
                    Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\nUdp: 10 0 3 5 3 0\n";
        let c = snmp_counters(snmp);
        assert!(c.contains(&("UdpRcvbufErrors".to_owned(), 3)), "{c:?}");
        assert!(c.contains(&("IpInDiscards".to_owned(), 4)), "{c:?}");
        assert_eq!(c.len(), 8);
        assert!(snmp_counters("Tcp: 1\n").is_empty());
        let before = BTreeMap::from([("a".to_owned(), 1), ("b".to_owned(), 5)]);
        let after = BTreeMap::from([("a".to_owned(), 1), ("b".to_owned(), 7), ("c".to_owned(), 2)]);
        assert_eq!(grown(&before, &after), vec![("b".to_owned(), 2), ("c".to_owned(), 2)]);
        let links = "2: wan0@if3: <BROADCAST,UP> mtu 1500 qdisc noqueue\\    link/ether 00:00:00:00:00:01 \
                     \\    RX:  bytes packets errors dropped  missed   mcast           \\    100 2 0 7 0 0 \
                     \\    TX:  bytes packets errors dropped carrier collsns           \\    50 1 0 9 0 0 \n";
        assert_eq!(link_drops(links), vec![("wan0".to_owned(), 7, 9)]);
    }
}
