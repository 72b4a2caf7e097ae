//! The scale report: a table with vpngw and strongSwan side by side and their ratio, and
//! the JSON document (`vpngw-scale/1`).

use serde_json::{json, Value};

use super::gateway::Kind;
use super::procstat::mib;
use super::run::{self, DaemonResult, Flood, Settings};

/// Machine and versions, recorded with the numbers.
#[derive(Clone, Debug, Default)]
pub struct Environment {
    /// UTC start time.
    pub date: String,
    /// `uname -r`.
    pub kernel: String,
    /// CPU model.
    pub cpu: String,
    /// Logical CPUs.
    pub cpus: usize,
    /// strongSwan package version.
    pub strongswan: String,
    /// `git describe` of the checkout.
    pub git: String,
    /// The vpngw binary measured and its build time.
    pub vpngw_binary: Option<String>,
}

fn f(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.digits$}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b.abs() > 1e-9 => format!("{:.2}", a / b),
        _ => "n/a".to_owned(),
    }
}

fn replies(fl: &Flood) -> String {
    let r = fl.loadgen.get("replies");
    let n = |k: &str| r.and_then(|r| r.get(k)).and_then(Value::as_u64).unwrap_or(0);
    format!("{} / {} / {}", n("sa_init"), n("cookie"), n("other_notify") + n("other"))
}

/// vpngw's status counters that grew during the flood; for charon (which counts no
/// drops) its `swanctl --stats` SA line afterwards.
fn counters_grown(fl: &Flood) -> String {
    if let Some(lines) = fl.counters.1.as_array() {
        let sas = lines.iter().filter_map(Value::as_str).find(|l| l.starts_with("IKE_SAs:"));
        return format!("(swanctl --stats: {})", sas.unwrap_or("?"));
    }
    let grown = run::counter_growth(&fl.counters.0, &fl.counters.1);
    if grown.is_empty() {
        return "none".to_owned();
    }
    grown.iter().map(|(k, v)| format!("{k} +{v}")).collect::<Vec<_>>().join(", ")
}

/// One row: label, one cell per daemon, and the vpngw/strongSwan ratio of `num` if both exist.
struct Row {
    label: String,
    cells: Vec<String>,
    ratio: String,
}

fn row(
    label: &str,
    results: &[DaemonResult],
    cell: impl Fn(&DaemonResult) -> String,
    num: impl Fn(&DaemonResult) -> Option<f64>,
) -> Row {
    let by = |k: Kind| results.iter().find(|r| r.kind == k);
    Row {
        label: label.to_owned(),
        cells: results.iter().map(&cell).collect(),
        ratio: ratio(by(Kind::Vpngw).and_then(&num), by(Kind::StrongSwan).and_then(&num)),
    }
}

fn flood_of<'a>(r: &'a DaemonResult, sources: &str) -> Option<&'a Flood> {
    r.floods.iter().find(|f| f.sources == sources)
}

/// The table (Markdown), one column per daemon and the vpngw/strongSwan ratio.
pub fn table(s: &Settings, results: &[DaemonResult]) -> String {
    let est = |r: &DaemonResult| r.establish.clone();
    let mut rows = vec![
        row(
            "machine load (1 min) before / after",
            results,
            |r| format!("{} / {}", f(r.load.0, 1), f(r.load.1, 1)),
            |_| None,
        ),
        row(
            "tunnels up (load generator / daemon IKE / daemon CHILD)",
            results,
            |r| {
                est(r).map_or("n/a".into(), |e| {
                    format!("{} / {} / {}", e.up, e.counts.ike_established, e.counts.children_installed)
                })
            },
            |_| None,
        ),
        row(
            "round 1: first IKE_SA_INIT to last CHILD SA, s",
            results,
            |r| f(est(r).and_then(|e| e.seconds), 2),
            |r| est(r).and_then(|e| e.seconds),
        ),
        row(
            "tunnels established per second: median of the rounds (each round)",
            results,
            |r| {
                est(r).map_or("n/a".into(), |e| {
                    let each: Vec<String> = e.rounds_per_second().iter().map(|v| format!("{v:.0}")).collect();
                    format!("{} ({})", f(e.median_per_second(), 0), each.join(", "))
                })
            },
            |r| est(r).and_then(|e| e.median_per_second()),
        ),
        row(
            "round 1: setup latency p50 / p99, ms",
            results,
            |r| {
                est(r).map_or("n/a".into(), |e| {
                    let p = |k: &str| e.loadgen.get("setup_ms").and_then(|m| m.get(k)).and_then(Value::as_f64);
                    format!("{} / {}", f(p("p50"), 1), f(p("p99"), 1))
                })
            },
            |r| est(r).and_then(|e| e.loadgen.get("setup_ms")?.get("p50")?.as_f64()),
        ),
        row(
            "round 1: daemon CPU per tunnel, ms",
            results,
            |r| f(est(r).and_then(|e| e.cpu_ms_per_tunnel()), 2),
            |r| est(r).and_then(|e| e.cpu_ms_per_tunnel()),
        ),
        row(
            "round 1: load generator CPU, s",
            results,
            |r| f(est(r).and_then(|e| e.loadgen.get("loadgen_cpu_seconds")?.as_f64()), 2),
            |_| None,
        ),
        row(
            "daemon RSS before / after, MiB",
            results,
            |r| est(r).map_or("n/a".into(), |e| format!("{:.1} / {:.1}", mib(e.rss_before_kib), mib(e.rss_after_kib))),
            |_| None,
        ),
        row(
            "memory per established tunnel, KiB",
            results,
            |r| f(est(r).and_then(|e| e.kib_per_tunnel()), 1),
            |r| est(r).and_then(|e| e.kib_per_tunnel()),
        ),
    ];
    rows.push(row(
        "vpnctl status --json reply with every tunnel up, KiB",
        results,
        |r| f(est(r).and_then(|e| e.status_bytes).map(|b| b as f64 / 1024.0), 0),
        |_| None,
    ));
    for sources in &s.floods {
        let fl = |r: &DaemonResult| flood_of(r, sources).cloned();
        let p = format!("flood from {sources}:");
        rows.extend([
            row(
                &format!("{p} requests sent in s"),
                results,
                |r| {
                    fl(r).map_or("n/a".into(), |x| {
                        format!(
                            "{} in {}",
                            x.loadgen.get("sent").and_then(Value::as_u64).unwrap_or(0),
                            f(x.loadgen.get("seconds").and_then(Value::as_f64), 1)
                        )
                    })
                },
                |_| None,
            ),
            row(
                &format!("{p} daemon CPU s (window)"),
                results,
                |r| fl(r).map_or("n/a".into(), |x| format!("{:.2} ({:.0} s)", x.cpu_s, x.window_s)),
                |r| fl(r).map(|x| x.cpu_s),
            ),
            row(
                &format!("{p} daemon CPU s while sending"),
                results,
                |r| f(fl(r).map(|x| x.cpu_send_s), 2),
                |r| fl(r).map(|x| x.cpu_send_s),
            ),
            row(
                &format!("{p} busy until, s after start"),
                results,
                |r| f(fl(r).and_then(|x| x.busy_until_s), 1),
                |_| None,
            ),
            row(
                // The ratio is of the peaks: growths of a few KiB would make a meaningless one.
                &format!("{p} peak RSS (growth over the start), MiB"),
                results,
                |r| {
                    fl(r).map_or("n/a".into(), |x| {
                        format!("{:.1} (+{:.1})", mib(x.peak_kib), mib(x.peak_kib.saturating_sub(x.rss_before_kib)))
                    })
                },
                |r| fl(r).map(|x| mib(x.peak_kib)),
            ),
            row(
                &format!("{p} RSS after the window, MiB"),
                results,
                |r| fl(r).map_or("n/a".into(), |x| format!("{:.1}", mib(x.rss_after_kib))),
                |_| None,
            ),
            row(
                &format!("{p} answers SA_INIT / COOKIE / other"),
                results,
                |r| fl(r).map_or("n/a".into(), |x| replies(&x)),
                |_| None,
            ),
            row(
                &format!("{p} counters of the daemon that grew"),
                results,
                |r| fl(r).map_or("n/a".into(), |x| counters_grown(&x)),
                |_| None,
            ),
            row(
                &format!("{p} kernel UDP receive-buffer drops"),
                results,
                |r| fl(r).map_or("n/a".into(), |x| x.udp_rcvbuf_errors.to_string()),
                |_| None,
            ),
            row(
                &format!("{p} after: IKE SAs established / CHILD SAs"),
                results,
                |r| {
                    fl(r).map_or("n/a".into(), |x| match (x.alive, &x.counts_after) {
                        (false, _) => "DIED".into(),
                        (true, Ok(c)) => format!("{} / {}", c.ike_established, c.children_installed),
                        (true, Err(_)) => "status query failed".into(),
                    })
                },
                |_| None,
            ),
        ]);
    }
    let mut out = format!(
        "| {} tunnels, {} in flight | {} | vpngw/strongSwan |\n|---|{}---|\n",
        s.tunnels,
        s.concurrency,
        results.iter().map(|r| r.kind.key()).collect::<Vec<_>>().join(" | "),
        "---|".repeat(results.len())
    );
    for r in rows {
        out.push_str(&format!("| {} | {} | {} |\n", r.label, r.cells.join(" | "), r.ratio));
    }
    out
}

/// The whole report as JSON.
pub fn to_json(env: &Environment, s: &Settings, results: &[DaemonResult]) -> Value {
    json!({
        "schema": "vpngw-scale/1",
        "date": env.date,
        "environment": {
            "kernel": env.kernel, "cpu": env.cpu, "cpus": env.cpus, "strongswan": env.strongswan,
            "git": env.git, "vpngw_binary": env.vpngw_binary,
        },
        "settings": {
            "rounds": s.rounds,
            "daemons": s.daemons.iter().map(|k| k.key()).collect::<Vec<_>>(),
            "tunnels": s.tunnels,
            "concurrency": s.concurrency,
            "establish_timeout_seconds": s.establish_timeout.as_secs(),
            "floods": s.floods,
            "flood_count": s.flood_count,
            "flood_rate": s.flood_rate,
            "tail_seconds": s.tail.as_secs(),
        },
        "daemons": results.iter().map(run::to_json).collect::<Vec<_>>(),
    })
}
