//! The Prometheus endpoint (`[gateway] metrics_listen`): `GET /metrics` answers with
//! the status report of `vpnctl status --json`, taken from the control thread at that
//! moment, in the Prometheus text exposition format (version 0.0.4). Every metric is
//! listed in `docs/metrics.md`.
//!
//! [`render`] is pure (a [`StatusReport`] to text) and tested without I/O. The server
//! is one thread on a `std::net::TcpListener` serving one connection at a time: it
//! reads at most [`MAX_REQUEST`] bytes within [`READ_TIMEOUT`], answers once with
//! `Connection: close`, and closes. A scrape costs one status request to the control
//! thread, like `vpnctl status`. No HTTP library: a server this small (GET and HEAD of
//! one path, no keep-alive, no TLS, no chunking) is shorter to read than the
//! configuration of one, and adds no dependency to a daemon that holds keys. Bind it to
//! a loopback or management address: it has no authentication (like node_exporter's
//! default), and what it shows (tunnel names, SPIs, traffic) is no secret but is not
//! for everyone either.

use crate::control::proto::{IkeSaInfo, Reply, Request, SaTraffic, StatusReport, TunnelStatus};
use crate::driver::ControlMsg;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, SyncSender};
use std::time::{Duration, Instant};

/// The longest request (line and headers) read; longer ones get 431.
pub const MAX_REQUEST: usize = 8 * 1024;
/// How long a client may take to send its request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How long writing the answer may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the control thread may take to produce the status.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);
/// The media type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The bound endpoint.
#[derive(Debug)]
pub struct MetricsServer {
    listener: TcpListener,
}

impl MetricsServer {
    /// Binds `addr` (before privileges are dropped, like every socket of the daemon).
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot bind metrics_listen {addr}: {e}")))?;
        Ok(Self { listener })
    }

    /// The address bound (the port, if 0 was asked for).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves scrapes on a new thread until the process exits; the status comes from
    /// `control`.
    pub fn serve(self, control: SyncSender<ControlMsg>) -> io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new().name("metrics".into()).spawn(move || {
            for conn in self.listener.incoming() {
                match conn {
                    Ok(stream) => {
                        if let Err(e) = serve_connection(stream, &control) {
                            tracing::debug!(error = %e, "metrics connection");
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "metrics accept");
                        // E.g. out of file descriptors: do not spin.
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
    }
}

/// Reads one request and answers it.
fn serve_connection(mut stream: TcpStream, control: &SyncSender<ControlMsg>) -> io::Result<()> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let response = match read_request(&mut stream) {
        Ok(head) => respond(&head, || status(control)),
        Err(RequestError::TooLarge) => Response::text(431, "Request Header Fields Too Large", "request too large\n"),
        Err(RequestError::Malformed) => Response::text(400, "Bad Request", "malformed request\n"),
        Err(RequestError::Io(e)) => return Err(e),
    };
    stream.write_all(&response.encode())?;
    stream.flush()
}

/// Why no request could be read.
#[derive(Debug)]
enum RequestError {
    TooLarge,
    Malformed,
    Io(io::Error),
}

/// Reads the request line and headers (up to the blank line), at most [`MAX_REQUEST`]
/// bytes within [`READ_TIMEOUT`] in all. A body is never read (GET and HEAD have none).
fn read_request(stream: &mut TcpStream) -> Result<String, RequestError> {
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(RequestError::Io(io::Error::new(io::ErrorKind::TimedOut, "request not received in time")));
        }
        stream.set_read_timeout(Some(left)).map_err(RequestError::Io)?;
        let n = stream.read(&mut chunk).map_err(RequestError::Io)?;
        if n == 0 {
            return Err(RequestError::Malformed);
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(end);
            return String::from_utf8(buf).map_err(|_| RequestError::Malformed);
        }
        if buf.len() > MAX_REQUEST {
            return Err(RequestError::TooLarge);
        }
    }
}

/// One HTTP response.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub code: u16,
    /// Reason phrase.
    pub reason: &'static str,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Extra header lines (`Name: value`).
    pub headers: Vec<String>,
    /// The body (sent for GET; for HEAD only its length).
    pub body: String,
    /// HEAD: headers only.
    pub head_only: bool,
}

impl Response {
    fn text(code: u16, reason: &'static str, body: &str) -> Self {
        Self {
            code,
            reason,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: body.into(),
            head_only: false,
        }
    }

    /// The bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.code,
            self.reason,
            self.content_type,
            self.body.len()
        );
        for h in &self.headers {
            head.push_str(h);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if !self.head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

/// The answer to a request head (request line and headers); `status` is asked only
/// for a scrape.
pub fn respond(head: &str, status: impl FnOnce() -> Result<StatusReport, String>) -> Response {
    let line = head.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Response::text(400, "Bad Request", "malformed request line\n");
    };
    if !version.starts_with("HTTP/1.") {
        return Response::text(505, "HTTP Version Not Supported", "HTTP/1.x only\n");
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            let mut r = Response::text(405, "Method Not Allowed", "GET or HEAD only\n");
            r.headers.push("Allow: GET, HEAD".into());
            return r;
        }
    };
    let path = target.split('?').next().unwrap_or_default();
    let mut r = match path {
        "/metrics" => match status() {
            Ok(report) => Response {
                code: 200,
                reason: "OK",
                content_type: CONTENT_TYPE,
                headers: Vec::new(),
                body: render(&report),
                head_only: false,
            },
            Err(e) => Response::text(503, "Service Unavailable", &format!("{e}\n")),
        },
        "/" => Response::text(200, "OK", "vpngw: metrics at /metrics\n"),
        _ => Response::text(404, "Not Found", "not found; metrics are at /metrics\n"),
    };
    r.head_only = head_only;
    r
}

/// Asks the control thread for the status, as `vpnctl status` does.
fn status(control: &SyncSender<ControlMsg>) -> Result<StatusReport, String> {
    let (tx, rx) = mpsc::channel();
    control
        .send(ControlMsg::Request { request: Request::Status { tunnel: None }, reply: tx })
        .map_err(|_| "vpngw is shutting down".to_string())?;
    match rx.recv_timeout(STATUS_TIMEOUT) {
        Ok(Reply::Status(r)) => Ok(r),
        Ok(other) => Err(format!("unexpected status answer: {other:?}")),
        Err(_) => Err("vpngw did not answer in time".into()),
    }
}

/// A metric family being written: its samples follow one `# HELP` and one `# TYPE`.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl Family<'_> {
    fn sample(&mut self, labels: &[(&str, &str)], value: u64) {
        self.out.push_str(self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

fn family<'a>(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Family<'a> {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    Family { out, name }
}

/// A label value with `\`, `"` and newlines escaped, as the format asks.
fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// Reads one counter of an ESP SA from the report.
type SaValue = fn(&SaTraffic) -> u64;

/// Reads one per-tunnel value from the report.
type TunnelValue = fn(&TunnelStatus) -> u64;

/// Reads one per-IKE-SA gauge from the report (`None`: no sample for that SA).
type IkeGauge = fn(&IkeSaInfo) -> Option<u64>;

/// The status report in the text exposition format. Counters end in `_total`; times
/// are in seconds, sizes in bytes; the SPIs are labels in the hex of `vpnctl status`.
pub fn render(r: &StatusReport) -> String {
    let mut o = String::new();
    family(&mut o, "vpngw_build_info", "gauge", "The vpngw version (always 1).")
        .sample(&[("version", &r.daemon.version)], 1);
    family(&mut o, "vpngw_uptime_seconds", "gauge", "Seconds since the daemon started.").sample(&[], r.daemon.uptime_s);

    // IKE, gateway-wide.
    family(&mut o, "vpngw_ike_half_open_sas", "gauge", "Responder IKE SAs not yet authenticated.")
        .sample(&[], r.ike.half_open);
    let d = &r.ike.drops;
    let mut f = family(
        &mut o,
        "vpngw_ike_drops_total",
        "counter",
        "IKE datagrams and requests refused, by reason (cookie_required: answered with a COOKIE request instead of state).",
    );
    for (reason, v) in [
        ("malformed", d.malformed),
        ("unknown_spi", d.unknown_spi),
        ("cookie_required", d.cookie_required),
        ("half_open_cap", d.half_open_cap),
        ("rate_limited", d.rate_limited),
        ("refused_proposal", d.refused_proposal),
        ("child_sa_cap", d.child_sa_cap),
        ("fragment_malformed", d.fragment_malformed),
        ("fragment_unauthenticated", d.fragment_unauthenticated),
        ("fragment_limit", d.fragment_limit),
        ("fragment_duplicate", d.fragment_duplicate),
    ] {
        f.sample(&[("reason", reason)], v);
    }
    family(&mut o, "vpngw_ike_cookies_sent_total", "counter", "COOKIE notifies sent.").sample(&[], d.cookies_sent);

    // The datapath, gateway-wide.
    let g = &r.global_drops;
    let mut f =
        family(&mut o, "vpngw_esp_drops_total", "counter", "Datapath drops not attributable to one SA, by reason.");
    for (reason, v) in [("malformed", g.malformed), ("unknown_spi", g.unknown_spi), ("no_sa", g.no_sa)] {
        f.sample(&[("reason", reason)], v);
    }
    let io = &r.io_errors;
    let mut f = family(
        &mut o,
        "vpngw_io_errors_total",
        "counter",
        "Packets lost to socket or TUN errors in the gateway, by reason.",
    );
    for (reason, v) in [
        ("wan_send", io.wan_send),
        ("tun_write", io.tun_write),
        ("ike_queue_full", io.ike_queue_full),
        ("tun_read_malformed", io.tun_read_malformed),
    ] {
        f.sample(&[("reason", reason)], v);
    }

    // Per tunnel.
    let up = |t: &TunnelStatus| {
        t.ike_sas.iter().any(|sa| sa.state == "ESTABLISHED" && sa.children.iter().any(|c| c.state == "INSTALLED"))
    };
    let per_tunnel: [(&'static str, &str, &str, TunnelValue); 5] = [
        ("vpngw_tunnel_stopped", "gauge", "1 if the tunnel was stopped with `vpnctl down`.", |t| u64::from(t.stopped)),
        (
            "vpngw_tunnel_ike_established_total",
            "counter",
            "IKE SAs established by authentication (IKEv1: Main or Aggressive Mode); rekeys not included.",
            |t| t.counters.ike_up,
        ),
        ("vpngw_tunnel_ike_rekeys_total", "counter", "IKE SAs rekeyed (IKEv1: re-authenticated).", |t| {
            t.counters.ike_rekeys
        }),
        (
            "vpngw_tunnel_child_rekeys_total",
            "counter",
            "CHILD SAs (IKEv1: Quick Mode SA pairs) replaced by a new one with the same traffic selectors.",
            |t| t.counters.child_rekeys,
        ),
        ("vpngw_tunnel_dpd_failures_total", "counter", "IKE SAs ended by dead peer detection.", |t| {
            t.counters.dpd_failures
        }),
    ];
    let mut f = family(
        &mut o,
        "vpngw_tunnel_up",
        "gauge",
        "1 if the tunnel has an established IKE SA with an installed CHILD SA.",
    );
    for t in &r.tunnels {
        f.sample(&[("tunnel", &t.name)], u64::from(up(t)));
    }
    for (name, kind, help, value) in per_tunnel {
        let mut f = family(&mut o, name, kind, help);
        for t in &r.tunnels {
            f.sample(&[("tunnel", &t.name)], value(t));
        }
    }

    // Active/standby groups: labels tunnel, group (the primary's name).
    let grouped = || r.tunnels.iter().filter_map(|t| t.failover.as_ref().map(|f| (t, f)));
    let mut f = family(
        &mut o,
        "vpngw_tunnel_active",
        "gauge",
        "Tunnels in an active/standby group: 1 if this tunnel carries the group's outbound traffic.",
    );
    for (t, g) in grouped() {
        f.sample(&[("tunnel", &t.name), ("group", &g.group)], u64::from(g.state == "active"));
    }
    let mut f = family(
        &mut o,
        "vpngw_tunnel_activations_total",
        "counter",
        "Tunnels in an active/standby group: times this tunnel became the group's active tunnel.",
    );
    for (t, g) in grouped() {
        f.sample(&[("tunnel", &t.name), ("group", &g.group)], g.activations);
    }

    // Per IKE SA: labels tunnel, ike_version, spi (the initiator's SPI or cookie).
    let ike_sas = || r.tunnels.iter().flat_map(|t| t.ike_sas.iter().map(move |sa| (t, sa)));
    let mut f = family(
        &mut o,
        "vpngw_ike_sa_info",
        "gauge",
        "One per IKE SA (IKEv1: ISAKMP SA), always 1; state and role as labels.",
    );
    for (t, sa) in ike_sas() {
        let v = sa.ike_version.to_string();
        f.sample(
            &[("tunnel", &t.name), ("ike_version", &v), ("spi", &sa.spi_i), ("state", &sa.state), ("role", &sa.role)],
            1,
        );
    }
    let ike_gauges: [(&'static str, &str, IkeGauge); 3] = [
        ("vpngw_ike_sa_age_seconds", "Seconds since the IKE SA was established.", |sa| sa.established_ago_s),
        (
            "vpngw_ike_sa_last_heard_age_seconds",
            "Seconds since the last valid message from the peer on this IKE SA.",
            |sa| sa.last_heard_ago_s,
        ),
        ("vpngw_ike_sa_nat_detected", "1 if a NAT was detected (or encapsulation forced).", |sa| {
            Some(u64::from(sa.nat_detected))
        }),
    ];
    for (name, help, value) in ike_gauges {
        let mut f = family(&mut o, name, "gauge", help);
        for (t, sa) in ike_sas() {
            if let Some(x) = value(sa) {
                let ver = sa.ike_version.to_string();
                f.sample(&[("tunnel", &t.name), ("ike_version", &ver), ("spi", &sa.spi_i)], x);
            }
        }
    }
    let mut f = family(
        &mut o,
        "vpngw_ike_sa_esp_in_udp",
        "gauge",
        "1 if ESP goes in UDP, with the reason (nat, forced, vpngw_peer) as a label; 0 with reason none: raw ESP.",
    );
    for (t, sa) in ike_sas() {
        let ver = sa.ike_version.to_string();
        let reason = sa.encap_reason.as_deref().unwrap_or("none");
        let labels = [("tunnel", t.name.as_str()), ("ike_version", &ver), ("spi", &sa.spi_i), ("reason", reason)];
        f.sample(&labels, u64::from(sa.encap_reason.is_some()));
    }

    // Per CHILD SA: labels tunnel, ike_version, spi (its inbound SPI).
    let children = || ike_sas().flat_map(|(t, sa)| sa.children.iter().map(move |c| (t, sa, c)));
    let mut f = family(
        &mut o,
        "vpngw_child_sa_info",
        "gauge",
        "One per CHILD SA (IKEv1: Quick Mode SA pair), always 1; state and the outbound SPI as labels.",
    );
    for (t, sa, c) in children() {
        let v = sa.ike_version.to_string();
        f.sample(
            &[
                ("tunnel", &t.name),
                ("ike_version", &v),
                ("spi", &c.spi_in),
                ("spi_out", &c.spi_out),
                ("state", &c.state),
            ],
            1,
        );
    }
    let mut f = family(&mut o, "vpngw_child_sa_age_seconds", "gauge", "Seconds since the CHILD SA was installed.");
    for (t, sa, c) in children() {
        let v = sa.ike_version.to_string();
        f.sample(&[("tunnel", &t.name), ("ike_version", &v), ("spi", &c.spi_in)], c.established_ago_s);
    }

    // Per ESP SA: labels tunnel, spi, direction (in: our SPI, out: the peer's).
    let esp = || {
        children().flat_map(|(t, _, c)| {
            [("in", &c.spi_in, c.inbound.as_ref()), ("out", &c.spi_out, c.outbound.as_ref())]
                .into_iter()
                .filter_map(move |(dir, spi, tr)| tr.map(|tr| (t, dir, spi, tr)))
        })
    };
    let traffic: [(&'static str, &str, SaValue); 2] = [
        ("vpngw_esp_sa_bytes_total", "Inner bytes sealed (out) or opened and delivered (in) by the ESP SA.", |tr| {
            tr.bytes
        }),
        ("vpngw_esp_sa_packets_total", "Packets sealed (out) or delivered (in) by the ESP SA.", |tr| tr.packets),
    ];
    for (name, help, value) in traffic {
        let mut f = family(&mut o, name, "counter", help);
        for (t, dir, spi, tr) in esp() {
            f.sample(&[("tunnel", &t.name), ("spi", spi), ("direction", dir)], value(tr));
        }
    }
    let mut f = family(
        &mut o,
        "vpngw_esp_sa_drops_total",
        "counter",
        "Packets the ESP SA dropped, by reason (replay, icv_failure and selector_mismatch are inbound only).",
    );
    for (t, dir, spi, tr) in esp() {
        let d = &tr.drops;
        let reasons: &[(&str, u64)] = if dir == "in" {
            &[
                ("replay", d.replay),
                ("icv_failure", d.icv_failure),
                ("selector_mismatch", d.selector_mismatch),
                ("expired", d.expired),
            ]
        } else {
            &[("expired", d.expired)]
        };
        for (reason, v) in reasons {
            f.sample(&[("tunnel", &t.name), ("spi", spi), ("direction", dir), ("reason", reason)], *v);
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::tests::sample_report;

    #[test]
    fn every_family_has_help_and_type_once_and_samples_follow_it() {
        let mut report = sample_report();
        for (t, state) in report.tunnels.iter_mut().zip(["active", "down"]) {
            t.failover = Some(crate::control::proto::FailoverStatus {
                group: "site-b".into(),
                role: if state == "active" { "primary" } else { "standby" }.into(),
                state: state.into(),
                failback: false,
                activations: 1,
            });
        }
        let text = render(&report);
        let mut current = None;
        let mut seen = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap().to_string();
                assert!(seen.insert(name.clone()), "{name} described twice");
                current = Some(name);
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert_eq!(Some(name), current.as_deref());
                assert!(kind == "counter" || kind == "gauge", "{line}");
                assert_eq!(name.ends_with("_total"), kind == "counter", "{line}");
            } else {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(Some(name), current.as_deref(), "sample outside its family: {line}");
                assert!(name.starts_with("vpngw_"), "{line}");
            }
        }
        for want in [
            "vpngw_ike_drops_total{reason=\"cookie_required\"} 3",
            "vpngw_tunnel_up{tunnel=\"site-b\"} 1",
            "vpngw_tunnel_up{tunnel=\"site-c\"} 0",
            "vpngw_tunnel_active{tunnel=\"site-b\",group=\"site-b\"} 1",
            "vpngw_tunnel_active{tunnel=\"site-c\",group=\"site-b\"} 0",
            "vpngw_tunnel_activations_total{tunnel=\"site-c\",group=\"site-b\"} 1",
            "vpngw_ike_sa_info{tunnel=\"site-b\",ike_version=\"2\",spi=\"9f1c2e0a4b3d2c1a\",state=\"ESTABLISHED\",role=\"initiator\"} 1",
            "vpngw_ike_sa_esp_in_udp{tunnel=\"site-b\",ike_version=\"2\",spi=\"9f1c2e0a4b3d2c1a\",reason=\"forced\"} 1",
            "vpngw_esp_sa_bytes_total{tunnel=\"site-b\",spi=\"c7cceebf\",direction=\"in\"} 1234567",
            "vpngw_esp_sa_packets_total{tunnel=\"site-b\",spi=\"e2b83fd5\",direction=\"out\"} 827",
            "vpngw_esp_sa_drops_total{tunnel=\"site-b\",spi=\"c7cceebf\",direction=\"in\",reason=\"replay\"} 2",
            "vpngw_esp_sa_drops_total{tunnel=\"site-b\",spi=\"e2b83fd5\",direction=\"out\",reason=\"expired\"} 0",
        ] {
            assert!(text.lines().any(|l| l == want), "missing {want}\n{text}");
        }
        assert!(!text.contains("direction=\"out\",reason=\"replay\""), "replay is inbound only");
    }

    #[test]
    fn odd_request_heads_get_an_error_not_a_panic_nor_a_status() {
        let never = || -> Result<StatusReport, String> { panic!("no status for this request") };
        for head in [
            " ",
            "   ",
            "GET",
            "GET  HTTP/1.1",
            "GET /metrics HTTP/1.1 extra",
            "\u{0}\u{0}\u{0}",
            "GET /metrics\tHTTP/1.1",
            "GET /métrics HTTP/1.1",
            "PUT / HTTP/1.1",
            "GET /metricsx HTTP/1.1",
        ] {
            let r = respond(head, never);
            assert!((400..=505).contains(&r.code), "{head:?}: {}", r.code);
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn http_answers() {
        let ok = || Ok(sample_report());
        let r = respond("GET /metrics HTTP/1.1\r\nHost: x", ok);
        assert_eq!((r.code, r.content_type), (200, CONTENT_TYPE));
        let wire = String::from_utf8(r.encode()).unwrap();
        assert!(wire.starts_with("HTTP/1.1 200 OK\r\n"), "{wire}");
        assert!(wire.contains(&format!("Content-Length: {}\r\n", r.body.len())));
        assert!(wire.contains("Connection: close\r\n\r\n# HELP vpngw_build_info"));
        let r = respond("HEAD /metrics?x=1 HTTP/1.0", ok);
        assert_eq!(r.code, 200);
        assert!(String::from_utf8(r.encode()).unwrap().ends_with("\r\n\r\n"), "HEAD has no body");
        let never = || -> Result<StatusReport, String> { panic!("no status for this request") };
        let r = respond("POST /metrics HTTP/1.1", never);
        assert_eq!(r.code, 405);
        assert!(r.headers.contains(&"Allow: GET, HEAD".to_string()));
        assert_eq!(respond("GET /other HTTP/1.1", never).code, 404);
        assert_eq!(respond("GET /metrics", never).code, 400);
        assert_eq!(respond("GET /metrics HTTP/2.0", never).code, 505);
        assert_eq!(respond("", never).code, 400);
        assert_eq!(respond("GET /metrics HTTP/1.1", || Err("vpngw is shutting down".into())).code, 503);
    }
}
