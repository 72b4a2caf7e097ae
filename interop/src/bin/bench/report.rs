//! Results of a bench run: per-case numbers, the ratios to the strongSwan anchor and to
//! plain routing, the printed table and the JSON document.
//!
//! Owns: the result types and their presentation. Does not own: measuring.

use serde_json::{json, Value};

use interop::vpngw::Encap;

use super::cases::{Case, GatewayProc};
use super::measure::{median, CpuUse, Rtt, TcpRun, UdpRun};

/// Settings of a run, echoed into the report.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Cases to run, in order.
    pub cases: Vec<Case>,
    /// Length of each TCP run, s.
    pub tcp_seconds: u32,
    /// Number of TCP runs (the median is reported).
    pub runs: u32,
    /// Parallel TCP streams per run (iperf3 `-P`).
    pub tcp_streams: u32,
    /// Length of the UDP run, s.
    pub udp_seconds: u32,
    /// Offered UDP rate, iperf3 `-b` syntax.
    pub udp_rate: String,
    /// UDP datagram payload, bytes.
    pub udp_len: u32,
    /// Socket buffer size of both iperf3 UDP ends (`-w`), "0" for iperf3's default.
    pub udp_buffer: String,
    /// Pings per RTT measurement.
    pub ping_count: u32,
    /// Seconds between pings.
    pub ping_interval: f64,
    /// Seconds the gateways' CPU is measured without traffic after the pings (0: not).
    pub idle_seconds: u32,
}

impl Default for Settings {
    /// The bench's defaults (`udp_seconds` 0: the same as `tcp_seconds`, filled in by the
    /// argument parser).
    fn default() -> Self {
        Self {
            cases: Case::ALL.to_vec(),
            tcp_seconds: 10,
            runs: 3,
            tcp_streams: 1,
            udp_seconds: 0,
            udp_rate: "1G".into(),
            udp_len: 1300,
            udp_buffer: "4M".into(),
            ping_count: 50,
            ping_interval: 0.02,
            idle_seconds: 0,
        }
    }
}

impl Settings {
    fn to_json(&self) -> Value {
        json!({
            "cases": self.cases.iter().map(|c| c.key()).collect::<Vec<_>>(),
            "tcp_seconds": self.tcp_seconds,
            "tcp_runs": self.runs,
            "tcp_streams": self.tcp_streams,
            "udp_seconds": self.udp_seconds,
            "udp_offered_rate": self.udp_rate,
            "udp_payload_bytes": self.udp_len,
            "udp_socket_buffer": self.udp_buffer,
            "ping_count": self.ping_count,
            "ping_interval_s": self.ping_interval,
            "idle_seconds": self.idle_seconds,
        })
    }
}

/// Everything measured for one case (partial if it failed part-way).
#[derive(Clone, Debug)]
pub struct CaseResult {
    /// Which case.
    pub case: Case,
    /// `None` if it completed, else what went wrong.
    pub error: Option<String>,
    /// Gateway processes whose CPU was counted.
    pub procs: Vec<GatewayProc>,
    /// SA summaries.
    pub sa_info: Vec<String>,
    /// Ping summary.
    pub rtt: Option<Rtt>,
    /// CPU time of all gateway threads during the pings, ms (`None`: no gateways, or
    /// unreadable).
    pub ping_gateway_cpu_ms: Option<f64>,
    /// CPU time of all gateway threads over `Settings::idle_seconds` without traffic, ms.
    pub idle_gateway_cpu_ms: Option<f64>,
    /// Each TCP run.
    pub tcp: Vec<TcpRun>,
    /// CPU over all TCP runs.
    pub tcp_cpu: CpuUse,
    /// The UDP run.
    pub udp: Option<UdpRun>,
    /// Kernel drop counters that grew during the UDP run, as "namespace counter +n".
    pub udp_kernel_drops: Vec<String>,
    /// The UDP run lanB -> lanA (cases that flood both ways, see
    /// `Case::udp_both_ways`), with its drop counters.
    pub udp_reverse: Option<(UdpRun, Vec<String>)>,
    /// `/proc/loadavg` (1-minute) before and after the case.
    pub load: (Option<f64>, Option<f64>),
    /// Wall time of the case including set-up, s.
    pub wall_seconds: f64,
    /// Where logs were kept, if they were.
    pub logs: Option<String>,
}

impl CaseResult {
    /// An empty result for `case`.
    pub fn new(case: Case) -> Self {
        Self {
            case,
            error: None,
            procs: Vec::new(),
            sa_info: Vec::new(),
            rtt: None,
            ping_gateway_cpu_ms: None,
            idle_gateway_cpu_ms: None,
            tcp: Vec::new(),
            tcp_cpu: CpuUse::default(),
            udp: None,
            udp_kernel_drops: Vec::new(),
            udp_reverse: None,
            load: (None, None),
            wall_seconds: 0.0,
            logs: None,
        }
    }

    /// Median TCP goodput, Mbit/s.
    pub fn tcp_mbps(&self) -> Option<f64> {
        median(&self.tcp.iter().map(|r| r.bits_per_second / 1e6).collect::<Vec<_>>())
    }

    /// UDP received rate, Mbit/s.
    pub fn udp_mbps(&self) -> Option<f64> {
        self.udp.as_ref().map(|u| u.received_bps / 1e6)
    }

    /// The RTT the ratios use: the median of the replies (the average if unknown), ms.
    pub fn rtt_ms(&self) -> Option<f64> {
        self.rtt.as_ref().map(|r| r.median_ms.unwrap_or(r.avg_ms))
    }

    fn to_json(&self) -> Value {
        json!({
            "case": self.case.key(),
        "label": self.case.label(),
            "vpngw_encapsulation": self.case.vpngw_encap().map(Encap::as_str),
            "ok": self.error.is_none(),
            "error": self.error,
            "gateway_processes": self.procs.iter().enumerate().map(|(i, p)| json!({
                "kind": p.kind,
                "site": p.site,
                "pid": p.pid,
                "cpu_seconds_during_tcp": self.tcp_cpu.per_process_seconds.get(i).copied().flatten(),
                "cpu_s_per_gb": self.tcp_cpu.per_process_seconds.get(i).copied().flatten()
                    .and_then(|s| (self.tcp_cpu.bytes > 0).then(|| s / (self.tcp_cpu.bytes as f64 / 1e9))),
            })).collect::<Vec<_>>(),
            "sa": self.sa_info,
            "tcp": {
                "median_mbps": self.tcp_mbps(),
                "runs_mbps": self.tcp.iter().map(|r| r.bits_per_second / 1e6).collect::<Vec<_>>(),
                "runs_bytes": self.tcp.iter().map(|r| r.bytes).collect::<Vec<_>>(),
                "runs_retransmits": self.tcp.iter().map(|r| r.retransmits).collect::<Vec<_>>(),
            },
            "udp": self.udp.as_ref().map(|u| udp_json(u, &self.udp_kernel_drops)),
            "udp_reverse": self.udp_reverse.as_ref().map(|(u, drops)| udp_json(u, drops)),
            "rtt": self.rtt.as_ref().map(|r| json!({
                "transmitted": r.transmitted,
                "received": r.received,
                "min_ms": r.min_ms,
                "avg_ms": r.avg_ms,
                "max_ms": r.max_ms,
                "mdev_ms": r.mdev_ms,
                "median_ms": r.median_ms,
                "gateway_cpu_ms": self.ping_gateway_cpu_ms,
            })),
            "idle_gateway_cpu_ms": self.idle_gateway_cpu_ms,
            "cpu_during_tcp": {
                "bytes": self.tcp_cpu.bytes,
                "gateway_cpu_seconds": self.tcp_cpu.gateway_seconds,
                "gateway_cpu_s_per_gb": self.tcp_cpu.gateway_s_per_gb(),
                "machine_busy_cpu_seconds": self.tcp_cpu.machine_busy_seconds,
                "machine_capacity_cpu_seconds": self.tcp_cpu.machine_total_seconds,
                "machine_cpu_s_per_gb": self.tcp_cpu.machine_s_per_gb(),
            },
            "loadavg_1min": {"before": self.load.0, "after": self.load.1},
            "wall_seconds": self.wall_seconds,
            "logs": self.logs,
        })
    }
}

/// One metric of one case divided by the same metric of a reference case.
#[derive(Clone, Debug, PartialEq)]
pub struct Ratio {
    /// The case measured.
    pub case: Case,
    /// The reference (strongSwan or plain).
    pub reference: Case,
    /// TCP median / reference's (higher is better).
    pub tcp: Option<f64>,
    /// UDP received / reference's (higher is better).
    pub udp: Option<f64>,
    /// RTT average / reference's (lower is better).
    pub rtt: Option<f64>,
    /// Gateway CPU s/GB / reference's (lower is better; `None` against plain routing).
    pub cpu: Option<f64>,
}

fn div(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    let (a, b) = (a?, b?);
    (b > 0.0 && a.is_finite()).then(|| a / b)
}

/// Ratios of every tunnel case to its strongSwan anchor (the strongSwan pair with the
/// same ESP suite, [`Case::anchor`]) and to plain routing (when those were measured in
/// the same run).
pub fn ratios(results: &[CaseResult]) -> Vec<Ratio> {
    let find = |c: Case| results.iter().find(|r| r.case == c);
    let mut out = Vec::new();
    let mut add = |r: &CaseResult, base: &CaseResult| {
        out.push(Ratio {
            case: r.case,
            reference: base.case,
            tcp: div(r.tcp_mbps(), base.tcp_mbps()),
            udp: div(r.udp_mbps(), base.udp_mbps()),
            rtt: div(r.rtt_ms(), base.rtt_ms()),
            cpu: div(r.tcp_cpu.gateway_s_per_gb(), base.tcp_cpu.gateway_s_per_gb()),
        });
    };
    for r in results.iter().filter(|r| r.case != r.case.anchor() && r.case != Case::Plain) {
        if let Some(base) = find(r.case.anchor()) {
            add(r, base);
        }
    }
    if let Some(base) = find(Case::Plain) {
        for r in results.iter().filter(|r| r.case != Case::Plain) {
            add(r, base);
        }
    }
    out
}

/// The headline: vpngw <-> vpngw TCP / strongSwan TCP with the default configuration,
/// like for like (ESP-in-UDP forced, the framing strongSwan uses here) and with raw ESP.
/// `None` where not measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Headline {
    /// `vpngw` (the default configuration) TCP / `strongswan` TCP.
    pub tcp_default: Option<f64>,
    /// `vpngw-udp` TCP / `strongswan` TCP.
    pub tcp_esp_in_udp: Option<f64>,
    /// `vpngw-raw` TCP / `strongswan` TCP.
    pub tcp_raw_esp: Option<f64>,
    /// `vpngw-udp-aes128-sha1` TCP / `strongswan-aes128-sha1` TCP.
    pub tcp_aes128_sha1: Option<f64>,
    /// `vpngw-udp-aes256-sha256` TCP / `strongswan-aes256-sha256` TCP.
    pub tcp_aes256_sha256: Option<f64>,
}

/// The headline ratios, if an anchor and at least one vpngw pair of its suite were run.
pub fn headline(results: &[CaseResult]) -> Option<Headline> {
    let q = ratios(results);
    let tcp = |c: Case| q.iter().find(|q| q.case == c && q.reference == c.anchor()).map(|q| q.tcp);
    let (default, udp, raw) = (tcp(Case::Vpngw), tcp(Case::VpngwUdp), tcp(Case::VpngwRaw));
    let (sha1, sha256) = (tcp(Case::VpngwUdpAes128Sha1), tcp(Case::VpngwUdpAes256Sha256));
    [default, udp, raw, sha1, sha256].iter().any(Option::is_some).then(|| Headline {
        tcp_default: default.flatten(),
        tcp_esp_in_udp: udp.flatten(),
        tcp_raw_esp: raw.flatten(),
        tcp_aes128_sha1: sha1.flatten(),
        tcp_aes256_sha256: sha256.flatten(),
    })
}

fn f(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "n/a".to_owned(), |x| format!("{x:.prec$}"))
}

/// The results table and the ratios, as printed at the end of a run.
pub fn table(results: &[CaseResult]) -> String {
    let mut s = format!(
        "{:<44} {:>8} {:<20} {:>11} {:>6} {:>19} {:>8} {:>9}\n",
        "case", "TCP Mb/s", "(runs)", "UDP tx/rx", "loss%", "RTT med/avg/min ms", "gw s/GB", "mach s/GB"
    );
    for r in results {
        let runs = r.tcp.iter().map(|t| format!("{:.0}", t.bits_per_second / 1e6)).collect::<Vec<_>>().join(" ");
        let rtt = r
            .rtt
            .as_ref()
            .map_or_else(|| "n/a".to_owned(), |x| format!("{}/{:.3}/{:.3}", f(x.median_ms, 3), x.avg_ms, x.min_ms));
        let udp = r
            .udp
            .as_ref()
            .map_or_else(|| "n/a".to_owned(), |u| format!("{:.0}/{:.0}", u.sent_bps / 1e6, u.received_bps / 1e6));
        s.push_str(&format!(
            "{:<44} {:>8} {:<20} {:>11} {:>6} {:>19} {:>8} {:>9}\n",
            r.case.label(),
            f(r.tcp_mbps(), 0),
            format!("({runs})"),
            udp,
            f(r.udp.as_ref().map(|u| u.lost_percent), 1),
            rtt,
            f(r.tcp_cpu.gateway_s_per_gb(), 2),
            f(r.tcp_cpu.machine_s_per_gb(), 2),
        ));
        if let Some(e) = &r.error {
            s.push_str(&format!("    FAILED: {}\n", e.lines().next().unwrap_or_default()));
        }
    }
    let ratios = ratios(results);
    if !ratios.is_empty() {
        s.push_str(&format!(
            "\n{:<44} {:>26} {:>8} {:>8} {:>8} {:>8}\n",
            "ratio", "reference", "TCP", "UDP rx", "RTT med", "gw CPU"
        ));
        for q in &ratios {
            s.push_str(&format!(
                "{:<44} {:>26} {:>8} {:>8} {:>8} {:>8}\n",
                q.case.label(),
                format!("/ {}", q.reference.key()),
                f(q.tcp, 2),
                f(q.udp, 2),
                f(q.rtt, 2),
                f(q.cpu, 2)
            ));
        }
        s.push_str("(TCP, UDP: higher is better; RTT, gw CPU per GB: lower is better)\n");
    }
    for r in results {
        if let Some((u, _)) = &r.udp_reverse {
            s.push_str(&format!(
                "\nUDP the other way (lanB -> lanA), {}: tx/rx {:.0}/{:.0} Mbit/s, loss {:.1} %\n",
                r.case.label(),
                u.sent_bps / 1e6,
                u.received_bps / 1e6,
                u.lost_percent
            ));
        }
    }
    let added = added_rtt_ms(results);
    if !added.is_empty() {
        let list: Vec<String> = added.iter().map(|(c, ms)| format!("{} {ms:+.3}", c.key())).collect();
        s.push_str(&format!("\nround trip added over plain routing (median, ms): {}\n", list.join(", ")));
    }
    if let Some(h) =
        headline(results).filter(|h| [h.tcp_default, h.tcp_esp_in_udp, h.tcp_raw_esp].iter().any(Option::is_some))
    {
        s.push_str(&format!(
            "\nvpngw/strongSwan TCP: {}x with the default configuration (vpngw); {}x with ESP-in-UDP \
             forced (vpngw-udp, like for like: strongSwan uses ESP-in-UDP here); {}x with raw ESP \
             (vpngw-raw)\n",
            f(h.tcp_default, 2),
            f(h.tcp_esp_in_udp, 2),
            f(h.tcp_raw_esp, 2)
        ));
    }
    if let Some(h) = headline(results).filter(|h| h.tcp_aes128_sha1.is_some() || h.tcp_aes256_sha256.is_some()) {
        s.push_str(&format!(
            "vpngw/strongSwan TCP with AES-CBC + HMAC (ESP-in-UDP at both ends, each against the \
             strongSwan pair of the same suite): {}x aes128-sha1, {}x aes256-sha256\n",
            f(h.tcp_aes128_sha1, 2),
            f(h.tcp_aes256_sha256, 2)
        ));
    }
    s
}

/// Median round trip of each case minus plain routing's, ms (needs the plain case).
pub fn added_rtt_ms(results: &[CaseResult]) -> Vec<(Case, f64)> {
    let med = |r: &CaseResult| r.rtt.as_ref().and_then(|x| x.median_ms);
    let Some(plain) = results.iter().find(|r| r.case == Case::Plain).and_then(med) else { return Vec::new() };
    results.iter().filter(|r| r.case != Case::Plain).filter_map(|r| Some((r.case, med(r)? - plain))).collect()
}

/// Facts about the machine and the build, for the JSON.
#[derive(Clone, Debug, Default)]
pub struct Environment {
    /// UTC time of the run (RFC 3339).
    pub date: String,
    /// `uname -r`.
    pub kernel: String,
    /// CPU model name.
    pub cpu: String,
    /// Online CPUs.
    pub cpus: usize,
    /// strongSwan package version (`dpkg-query`).
    pub strongswan: String,
    /// iperf3 version line.
    pub iperf3: String,
    /// `git describe` of the tree, if known.
    pub git: String,
    /// vpngw binary and its modification time, if used.
    pub vpngw_binary: Option<String>,
    /// Median cost of waking a sleeping thread, µs (see `measure::thread_wakeup_us`).
    pub thread_wakeup_us: Option<f64>,
    /// The machine's TCP congestion control (`net.ipv4.tcp_congestion_control`), which
    /// the bench's namespaces inherit and the iperf3 TCP runs use.
    pub tcp_congestion_control: String,
}

/// One UDP run and the drop counters that grew during it.
fn udp_json(u: &UdpRun, kernel_drops: &[String]) -> Value {
    json!({
        "sent_mbps": u.sent_bps / 1e6,
        "received_mbps": u.received_bps / 1e6,
        "packets": u.packets,
        "lost_packets": u.lost_packets,
        "loss_percent": u.lost_percent,
        "jitter_ms": u.jitter_ms,
        "kernel_drops": kernel_drops,
    })
}

/// The whole JSON document.
pub fn to_json(env: &Environment, settings: &Settings, results: &[CaseResult]) -> Value {
    json!({
        "schema": "vpngw-bench/1",
        "date": env.date,
        "environment": {
            "kernel": env.kernel,
            "cpu": env.cpu,
            "cpus": env.cpus,
            "strongswan": env.strongswan,
            "iperf3": env.iperf3,
            "git": env.git,
            "vpngw_binary": env.vpngw_binary,
            "thread_wakeup_us": env.thread_wakeup_us,
            "tcp_congestion_control": env.tcp_congestion_control,
        },
        "settings": settings.to_json(),
        "cases": results.iter().map(CaseResult::to_json).collect::<Vec<_>>(),
        "rtt_added_over_plain_ms": added_rtt_ms(results).iter().map(|(c, ms)| json!({
            "case": c.key(),
            "median_ms": ms,
        })).collect::<Vec<_>>(),
        "ratios": ratios(results).iter().map(|q| json!({
            "case": q.case.key(),
            "reference": q.reference.key(),
            "tcp": q.tcp,
            "udp": q.udp,
            "rtt": q.rtt,
            "gateway_cpu_per_gb": q.cpu,
        })).collect::<Vec<_>>(),
        "headline": headline(results).map(|h| json!({
            "tcp_vpngw_default_over_strongswan": h.tcp_default,
            "tcp_vpngw_udp_over_strongswan": h.tcp_esp_in_udp,
            "tcp_vpngw_raw_esp_over_strongswan": h.tcp_raw_esp,
            "tcp_vpngw_udp_aes128_sha1_over_strongswan_aes128_sha1": h.tcp_aes128_sha1,
            "tcp_vpngw_udp_aes256_sha256_over_strongswan_aes256_sha256": h.tcp_aes256_sha256,
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(case: Case, tcp: &[f64], udp: f64, rtt: f64, cpu: Option<f64>) -> CaseResult {
        let mut r = CaseResult::new(case);
        r.tcp = tcp.iter().map(|m| TcpRun { bits_per_second: m * 1e6, bytes: 1, retransmits: None }).collect();
        r.udp = Some(UdpRun {
            sent_bps: 1e9,
            received_bps: udp * 1e6,
            packets: 10,
            lost_packets: 1,
            lost_percent: 10.0,
            jitter_ms: 0.0,
        });
        r.rtt = Some(Rtt {
            transmitted: 5,
            received: 5,
            min_ms: rtt / 2.0,
            avg_ms: rtt * 3.0,
            max_ms: rtt * 9.0,
            mdev_ms: 0.0,
            median_ms: Some(rtt),
        });
        r.tcp_cpu = CpuUse { gateway_seconds: cpu, bytes: 1_000_000_000, runs: 1, ..CpuUse::default() };
        r
    }

    #[test]
    fn ratios_against_anchor_and_plain() {
        let results = vec![
            result(Case::Plain, &[1000.0, 3000.0, 2000.0], 900.0, 0.05, None),
            result(Case::StrongSwan, &[200.0, 300.0, 100.0], 100.0, 0.2, Some(4.0)),
            result(Case::Vpngw, &[400.0], 300.0, 0.1, Some(2.0)),
        ];
        let q = ratios(&results);
        assert_eq!(q.len(), 3, "{q:?}"); // vpngw/strongswan, strongswan/plain, vpngw/plain
        let v_s = q.iter().find(|q| q.case == Case::Vpngw && q.reference == Case::StrongSwan).unwrap();
        assert_eq!((v_s.tcp, v_s.udp, v_s.rtt, v_s.cpu), (Some(2.0), Some(3.0), Some(0.5), Some(0.5)));
        let v_p = q.iter().find(|q| q.case == Case::Vpngw && q.reference == Case::Plain).unwrap();
        assert_eq!((v_p.tcp, v_p.rtt, v_p.cpu), (Some(0.2), Some(2.0), None));
        assert!(q.iter().all(|q| q.case != Case::Plain));
    }

    #[test]
    fn cbc_suites_are_compared_with_the_strongswan_pair_of_their_suite() {
        let results = vec![
            result(Case::StrongSwan, &[900.0], 100.0, 0.2, Some(4.0)),
            result(Case::StrongSwanAes128Sha1, &[300.0], 100.0, 0.2, Some(6.0)),
            result(Case::VpngwUdpAes128Sha1, &[1200.0], 100.0, 0.1, Some(2.0)),
            result(Case::StrongSwanAes256Sha256, &[400.0], 100.0, 0.2, Some(5.0)),
            result(Case::VpngwUdpAes256Sha256, &[1000.0], 100.0, 0.1, Some(1.0)),
        ];
        let q = ratios(&results);
        let of = |c: Case| q.iter().filter(|q| q.case == c).map(|q| (q.reference, q.tcp)).collect::<Vec<_>>();
        assert_eq!(of(Case::VpngwUdpAes128Sha1), [(Case::StrongSwanAes128Sha1, Some(4.0))]);
        assert_eq!(of(Case::VpngwUdpAes256Sha256), [(Case::StrongSwanAes256Sha256, Some(2.5))]);
        // The suites' own strongSwan pairs are anchors, not compared with the GCM anchor.
        assert!(of(Case::StrongSwanAes128Sha1).is_empty() && of(Case::StrongSwan).is_empty());
        let h = headline(&results).unwrap();
        assert_eq!((h.tcp_aes128_sha1, h.tcp_aes256_sha256, h.tcp_esp_in_udp), (Some(4.0), Some(2.5), None));
        let text = table(&results);
        assert!(text.contains("4.00x aes128-sha1, 2.50x aes256-sha256"), "{text}");
        assert!(!text.contains("with raw ESP"), "no GCM headline without the GCM pairs: {text}");
        assert_eq!(h.tcp_default, None);
        for c in [Case::StrongSwanAes128Sha1, Case::VpngwUdpAes256Sha256] {
            assert_eq!(Case::parse(c.key()), Some(c));
        }
        assert_eq!(Case::VpngwUdpAes128Sha1.esp_proposal(), "aes128-sha1");
        assert_eq!(Case::VpngwUdp.esp_proposal(), "aes256gcm16");
    }

    #[test]
    fn headline_is_the_default_with_forced_udp_and_raw_esp_beside_it() {
        let results = vec![
            result(Case::StrongSwan, &[200.0], 100.0, 0.2, Some(4.0)),
            result(Case::Vpngw, &[1400.0], 100.0, 0.1, Some(1.0)),
            result(Case::VpngwRaw, &[600.0], 100.0, 0.1, Some(2.0)),
            result(Case::VpngwUdp, &[1600.0], 100.0, 0.1, Some(1.0)),
        ];
        let h = headline(&results).unwrap();
        assert_eq!((h.tcp_default, h.tcp_esp_in_udp, h.tcp_raw_esp), (Some(7.0), Some(8.0), Some(3.0)));
        let t = table(&results);
        assert!(t.contains("vpngw/strongSwan TCP: 7.00x with the default configuration (vpngw)"), "{t}");
        assert!(t.contains("8.00x with ESP-in-UDP forced"), "{t}");
        assert!(t.contains("3.00x with raw ESP (vpngw-raw)"), "{t}");
        for label in ["vpngw <-> vpngw (default config)", "vpngw <-> vpngw (ESP-in-UDP)", "vpngw <-> vpngw (raw ESP)"] {
            assert!(t.contains(label), "{label}: {t}");
        }
        let settings = Settings {
            cases: vec![Case::StrongSwan, Case::Vpngw, Case::VpngwRaw, Case::VpngwUdp],
            runs: 1,
            udp_seconds: 10,
            ..Settings::default()
        };
        let j = to_json(&Environment::default(), &settings, &results);
        assert_eq!(j["headline"]["tcp_vpngw_default_over_strongswan"], json!(7.0));
        assert_eq!(j["headline"]["tcp_vpngw_udp_over_strongswan"], json!(8.0));
        assert_eq!(j["headline"]["tcp_vpngw_raw_esp_over_strongswan"], json!(3.0));
        for (i, case, encap) in [(1, "vpngw", "auto"), (2, "vpngw-raw", "raw"), (3, "vpngw-udp", "udp")] {
            assert_eq!(j["cases"][i]["case"], json!(case));
            assert_eq!(j["cases"][i]["vpngw_encapsulation"], json!(encap));
        }
        assert_eq!(j["cases"][0]["vpngw_encapsulation"], json!(null));
        // Without the anchor or without a vpngw pair there is no headline.
        assert!(headline(&results[1..]).is_none());
        assert!(headline(&results[..1]).is_none());
    }

    #[test]
    fn missing_cases_give_no_or_unknown_ratios() {
        assert!(ratios(&[result(Case::Vpngw, &[1.0], 1.0, 1.0, None)]).is_empty());
        let mut failed = CaseResult::new(Case::Vpngw);
        failed.error = Some("vpngw exited".into());
        let q = ratios(&[result(Case::StrongSwan, &[1.0], 1.0, 1.0, Some(1.0)), failed]);
        assert_eq!((q[0].tcp, q[0].udp, q[0].rtt), (None, None, None));
    }

    #[test]
    fn table_and_json_carry_the_numbers() {
        let mut failed = CaseResult::new(Case::Mixed);
        failed.error = Some("no CHILD SA\nmore".into());
        let results = vec![result(Case::StrongSwan, &[250.0], 120.0, 0.25, Some(3.0)), failed];
        let t = table(&results);
        assert!(t.contains("strongSwan <-> strongSwan") && t.contains("250"), "{t}");
        assert!(t.contains("FAILED: no CHILD SA") && !t.contains("more"), "{t}");
        let settings =
            Settings { cases: vec![Case::StrongSwan, Case::Mixed], runs: 1, udp_seconds: 10, ..Settings::default() };
        let j = to_json(&Environment::default(), &settings, &results);
        assert_eq!(j["cases"][0]["tcp"]["median_mbps"], json!(250.0));
        assert_eq!(j["cases"][0]["cpu_during_tcp"]["gateway_cpu_s_per_gb"], json!(3.0));
        assert_eq!(j["cases"][1]["ok"], json!(false));
        assert_eq!(j["ratios"][0]["case"], json!("mixed"));
        assert_eq!(j["settings"]["cases"], json!(["strongswan", "mixed"]));
    }

    #[test]
    fn the_other_way_is_reported_where_it_was_measured() {
        let mut mixed = result(Case::Mixed, &[300.0], 990.0, 0.2, Some(3.0));
        let back = UdpRun {
            sent_bps: 1e9,
            received_bps: 999e6,
            packets: 96_000,
            lost_packets: 96,
            lost_percent: 0.1,
            jitter_ms: 0.0,
        };
        mixed.udp_reverse = Some((back, vec!["vg1-gwa snmp:UdpRcvbufErrors +96".into()]));
        let results = vec![result(Case::StrongSwan, &[250.0], 120.0, 0.25, Some(3.0)), mixed];
        let t = table(&results);
        assert!(
            t.contains("UDP the other way (lanB -> lanA), vpngw <-> strongSwan: tx/rx 1000/999 Mbit/s, loss 0.1 %"),
            "{t}"
        );
        assert_eq!(t.matches("UDP the other way").count(), 1, "{t}");
        let j = to_json(&Environment::default(), &Settings::default(), &results);
        assert_eq!(j["cases"][1]["udp_reverse"]["loss_percent"], json!(0.1));
        assert_eq!(j["cases"][1]["udp_reverse"]["kernel_drops"], json!(["vg1-gwa snmp:UdpRcvbufErrors +96"]));
        assert_eq!(j["cases"][0]["udp_reverse"], json!(null));
        assert_eq!(j["cases"][1]["udp"]["received_mbps"], json!(990.0));
        assert!(Case::Mixed.udp_both_ways() && !Case::Vpngw.udp_both_ways());
    }
}
