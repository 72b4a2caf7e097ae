//! WAN captures: `tcpdump -w` on an interface while a scenario runs, then counting the
//! packets that match classifying filters (`tcpdump -r FILE FILTER`).
//!
//! Owns: the tcpdump process and the pcap file's analysis. Does not own: the namespace.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::netns::Netns;
use crate::process::Proc;
use crate::{command, ensure, run, tail, wait_for, Error, Result};

/// Cleartext IP between the two protected LANs, IPv4 or IPv6 (must never appear on the WAN).
pub const CLEAR_FILTER: &str =
    "(ip and ((src net 10.1.0.0/24 and dst net 10.2.0.0/24) or (src net 10.2.0.0/24 and dst net 10.1.0.0/24))) or \
     (ip6 and ((src net fd00:a::/64 and dst net fd00:b::/64) or (src net fd00:b::/64 and dst net fd00:a::/64)))";
/// Raw ESP (IPv4 protocol 50, or IPv6 next header 50 right after the fixed header).
pub const ESP_FILTER: &str = "ip proto 50 or ip6 proto 50";
/// ESP in UDP (RFC 3948): port 4500 without the 4-byte zero non-ESP marker that IKE
/// carries. libpcap cannot index `udp[]` behind an IPv6 header, so over IPv6 the marker
/// is read at its fixed offset (40-byte header, no extension headers, then UDP's 8).
pub const ESP_IN_UDP_FILTER: &str =
    "(ip and udp port 4500 and not udp[8:4] = 0) or (ip6 and udp port 4500 and not ip6[48:4] = 0)";
/// IKE: port 500, or port 4500 with the non-ESP marker.
pub const IKE_FILTER: &str =
    "udp port 500 or (ip and udp port 4500 and udp[8:4] = 0) or (ip6 and udp port 4500 and ip6[48:4] = 0)";
/// IP fragments: IPv4 with more-fragments set or an offset, IPv6 with a fragment header
/// right after the fixed header.
pub const FRAGMENT_FILTER: &str = "(ip6 and ip6[6] = 44) or (ip and ip[6:2] & 0x3fff != 0)";
/// Anything carried over IPv6 on the WAN (ESP, ESP-in-UDP or IKE).
pub const WAN_V6_FILTER: &str = "ip6 and (ip6 proto 50 or udp port 4500 or udp port 500)";
/// Anything carried over IPv4 on the WAN (ESP, ESP-in-UDP or IKE).
pub const WAN_V4_FILTER: &str = "ip and (ip proto 50 or udp port 4500 or udp port 500)";

/// A running capture; [`Capture::stop`] yields the pcap.
pub struct Capture {
    proc: Proc,
    file: PathBuf,
}

impl Capture {
    /// Starts `tcpdump` on `iface` inside `ns`, writing `DIR/LABEL.pcap`; returns once
    /// tcpdump reports it is listening. Keeps the first 200 bytes of each packet.
    pub fn start(ns: &Netns, iface: &str, dir: &Path, label: &str) -> Result<Self> {
        Self::start_snaplen(ns, iface, dir, label, 200)
    }

    /// [`Capture::start`] keeping whole packets (for replaying them).
    pub fn start_full(ns: &Netns, iface: &str, dir: &Path, label: &str) -> Result<Self> {
        Self::start_snaplen(ns, iface, dir, label, 65_535)
    }

    fn start_snaplen(ns: &Netns, iface: &str, dir: &Path, label: &str, snaplen: u32) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let snaplen = snaplen.to_string();
        let file = dir.join(format!("{label}.pcap"));
        let file_s = file.to_string_lossy().into_owned();
        // --immediate-mode: packets leave the kernel ring at once, so stopping loses none;
        // -s 200 (default): headers are all the filters read (keeps up with bulk transfers);
        // -B: a 64 MiB ring so bursts are not dropped; -Z root: keep the right to write here.
        let cmd = ns.exec(&[
            "tcpdump",
            "-i",
            iface,
            "-n",
            "--immediate-mode",
            "-s",
            &snaplen,
            "-B",
            "65536",
            "-Z",
            "root",
            "-w",
            &file_s,
        ]);
        let mut proc = Proc::spawn(label, cmd, dir)?;
        let listening = wait_for(Duration::from_secs(15), "tcpdump to listen", || {
            (proc.log_text().contains("listening on") || !proc.is_running()).then_some(())
        });
        ensure!(
            listening.is_ok() && proc.is_running(),
            "tcpdump did not start on {iface} in {}: {}",
            ns.name(),
            tail(&proc.log_text(), 5)
        );
        Ok(Self { proc, file })
    }

    /// Stops tcpdump (flushing the file) and returns the pcap for analysis.
    pub fn stop(mut self) -> Result<Pcap> {
        self.proc.signal("INT");
        ensure!(
            self.proc.wait_timeout(Duration::from_secs(10)).is_some(),
            "tcpdump did not exit on SIGINT: {}",
            tail(&self.proc.log_text(), 5)
        );
        let log = self.proc.log_text();
        let dropped = log
            .lines()
            .find_map(|l| l.strip_suffix(" packets dropped by kernel"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        Ok(Pcap { file: self.file.clone(), dropped })
    }
}

/// A finished capture file.
#[derive(Clone, Debug)]
pub struct Pcap {
    /// The pcap file.
    pub file: PathBuf,
    /// Packets the kernel dropped before tcpdump saw them (they are in no count).
    pub dropped: usize,
}

/// Packet counts on the WAN by class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WanSummary {
    /// Every packet captured.
    pub total: usize,
    /// Cleartext packets between the protected LANs.
    pub clear: usize,
    /// Raw ESP packets (IP protocol 50).
    pub esp: usize,
    /// ESP-in-UDP packets (port 4500, not IKE).
    pub esp_in_udp: usize,
    /// IKE packets (ports 500 and 4500).
    pub ike: usize,
    /// Packets the capture missed (kernel drops); non-zero weakens "no cleartext".
    pub missed: usize,
}

impl std::fmt::Display for WanSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "WAN: {} packets: {} cleartext LAN<->LAN, {} ESP, {} ESP-in-UDP, {} IKE ({} missed by the capture)",
            self.total, self.clear, self.esp, self.esp_in_udp, self.ike, self.missed
        )
    }
}

impl Pcap {
    /// How many packets match a tcpdump filter expression.
    pub fn count(&self, filter: &str) -> Result<usize> {
        let file = self.file.to_string_lossy();
        let mut cmd = command(&["tcpdump", "-r", &file, "-n", "-q"]);
        if !filter.is_empty() {
            cmd.arg(filter);
        }
        let out = run(&mut cmd).map_err(|e| Error::new(format!("reading {file}: {e}")))?;
        Ok(out.lines().filter(|l| !l.trim().is_empty()).count())
    }

    /// Counts every class of [`WanSummary`].
    pub fn summary(&self) -> Result<WanSummary> {
        Ok(WanSummary {
            total: self.count("")?,
            clear: self.count(CLEAR_FILTER)?,
            esp: self.count(ESP_FILTER)?,
            esp_in_udp: self.count(ESP_IN_UDP_FILTER)?,
            ike: self.count(IKE_FILTER)?,
            missed: self.dropped,
        })
    }

    /// A few cleartext packets as tcpdump prints them (for failure messages).
    pub fn clear_sample(&self) -> String {
        let file = self.file.to_string_lossy();
        run(&mut command(&["tcpdump", "-r", &file, "-n", "-c", "5", CLEAR_FILTER])).unwrap_or_else(|e| e.to_string())
    }
}
