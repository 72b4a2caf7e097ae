//! The metrics endpoint and `vpnctl watch` against two real control threads
//! (`gateway::driver::Driver` with real `ike` and `esp`, wired through in-memory
//! channels as in `driver_pair.rs`): `GET /metrics` over TCP is parsed as the Prometheus
//! text format and its counters follow the tunnel through up, traffic, rekeys, a dead
//! peer and down; `vpnctl watch` (the binary, over a real control socket) prints each
//! of those state changes. Needs root only for the control socket (`vpnctl` talks to
//! root's daemon); no network namespaces.

mod common;

use common::{ask, status, Side, A, B};
use esp::{Opened, Sealed};
use gateway::clock::{BootClock, Clock};
use gateway::control::proto::{Outcome, Reply, Request, WatchEvent};
use gateway::control::server::ControlSocket;
use gateway::driver::ControlMsg;
use gateway::metrics::MetricsServer;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use testkit::Need;

/// One sample: metric name and labels.
type Key = (String, BTreeMap<String, String>);

/// A parsed scrape: the samples, and each family's type.
struct Scrape {
    samples: HashMap<Key, f64>,
    types: HashMap<String, String>,
}

impl Scrape {
    /// The value of `name` with exactly these labels.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let l = labels.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect();
        self.samples.get(&(name.to_string(), l)).copied()
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
    }

    /// The samples of `name` whose labels include these.
    fn matching(&self, name: &str, labels: &[(&str, &str)]) -> Vec<(&BTreeMap<String, String>, f64)> {
        self.samples
            .iter()
            .filter(|((n, l), _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
            .map(|((_, l), v)| (l, *v))
            .collect()
    }
}

/// Parses the text exposition format strictly: every sample belongs to the family whose
/// `# HELP` and `# TYPE` came last, counters end in `_total`, label values are quoted
/// with `\\`, `\"` and `\n` escapes, and no series appears twice.
fn parse(text: &str) -> Scrape {
    let mut samples = HashMap::new();
    let mut types = HashMap::new();
    let mut family: Option<String> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or_else(|| panic!("HELP without text: {line}"));
            assert!(!help.trim().is_empty(), "{line}");
            assert!(!types.contains_key(name), "{name} described twice");
            family = Some(name.to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert_eq!(Some(name), family.as_deref(), "TYPE without HELP: {line}");
            assert!(matches!(kind, "counter" | "gauge"), "{line}");
            assert_eq!(name.ends_with("_total"), kind == "counter", "{line}");
            types.insert(name.to_string(), kind.to_string());
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "unexpected line {line:?}");
        let name_end = line.find(['{', ' ']).unwrap();
        let name = &line[..name_end];
        assert_eq!(Some(name), family.as_deref(), "sample outside its family: {line}");
        assert!(types.contains_key(name), "sample before TYPE: {line}");
        assert!(name.starts_with("vpngw_") && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(r) = rest.strip_prefix('{') {
            rest = r;
            loop {
                let eq = rest.find('=').unwrap();
                let key = &rest[..eq];
                assert!(key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
                rest = rest[eq + 1..].strip_prefix('"').unwrap_or_else(|| panic!("unquoted label: {line}"));
                let mut value = String::new();
                let mut chars = rest.char_indices();
                let end = loop {
                    match chars.next().unwrap() {
                        (_, '\\') => match chars.next().unwrap().1 {
                            'n' => value.push('\n'),
                            c @ ('\\' | '"') => value.push(c),
                            c => panic!("bad escape \\{c}: {line}"),
                        },
                        (i, '"') => break i,
                        (_, c) => value.push(c),
                    }
                };
                assert!(labels.insert(key.to_string(), value).is_none(), "label twice: {line}");
                rest = &rest[end + 1..];
                if let Some(r) = rest.strip_prefix(',') {
                    rest = r;
                } else {
                    rest = rest.strip_prefix('}').unwrap_or_else(|| panic!("unterminated labels: {line}"));
                    break;
                }
            }
        }
        let value: f64 = rest.strip_prefix(' ').unwrap().parse().unwrap_or_else(|_| panic!("bad value: {line}"));
        assert!(samples.insert((name.to_string(), labels), value).is_none(), "series twice: {line}");
    }
    Scrape { samples, types }
}

/// `GET /metrics` as Prometheus sends it; checks the HTTP framing and parses the body.
fn scrape(addr: SocketAddr) -> Scrape {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain;version=0.0.4\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8"), "{head}");
    assert!(head.contains("\r\nConnection: close"), "{head}");
    assert!(head.contains(&format!("\r\nContent-Length: {}", body.len())), "{head}");
    parse(body)
}

/// Other paths and methods are refused with the usual codes, and an oversized request
/// is cut off.
fn refusals(addr: SocketAddr) {
    let ask = |req: &[u8]| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // The server may answer (and close) before reading all of an oversized request.
        let _ = s.write_all(req);
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        String::from_utf8_lossy(&raw).lines().next().unwrap_or_default().to_string()
    };
    assert_eq!(ask(b"GET /nothing HTTP/1.1\r\n\r\n"), "HTTP/1.1 404 Not Found");
    assert_eq!(ask(b"DELETE /metrics HTTP/1.1\r\n\r\n"), "HTTP/1.1 405 Method Not Allowed");
    let mut big = b"GET /metrics HTTP/1.1\r\nX-Filler: ".to_vec();
    big.resize(64 * 1024, b'a');
    assert_eq!(ask(&big), "HTTP/1.1 431 Request Header Fields Too Large");
}

/// A metrics endpoint on an ephemeral loopback port and a control socket, both served
/// from `side`'s control thread, as the daemon serves them.
fn serve(side: &Side, dir: &std::path::Path) -> (SocketAddr, ControlSocket) {
    let m = MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = m.local_addr().unwrap();
    m.serve(side.tx.clone()).unwrap();
    let sock = ControlSocket::bind(&dir.join("run/vpngw.sock")).unwrap();
    sock.serve(side.tx.clone()).unwrap();
    (addr, sock)
}

/// A running `vpnctl watch`, its stdout lines coming through a channel.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    /// Starts `vpnctl watch` (with `--json` if asked) and waits until it is subscribed:
    /// the first JSON line, or the note on stderr.
    fn start(socket: &std::path::Path, json: bool) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vpnctl"));
        cmd.arg("--socket").arg(socket).arg("watch");
        if json {
            cmd.arg("--json");
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let (tx, lines) = mpsc::channel();
        let out = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let w = Self { child, lines };
        if json {
            let first = w.lines.recv_timeout(Duration::from_secs(10)).expect("vpnctl watch --json subscribes");
            assert_eq!(first, "{\"v\":1,\"watching\":{\"queue\":256}}");
        } else {
            let mut note = String::new();
            err.read_line(&mut note).unwrap();
            assert!(note.starts_with("vpnctl: watching "), "{note}");
        }
        w
    }

    /// The next line, within a generous bound.
    fn line(&self) -> String {
        self.lines.recv_timeout(Duration::from_secs(20)).expect("vpnctl watch prints the event")
    }

    /// Reads JSON events until one of `kind` arrives; returns it and those before it.
    fn until(&self, kind: &str) -> (WatchEvent, Vec<WatchEvent>) {
        let mut before = Vec::new();
        loop {
            let line = self.line();
            let e = match gateway::control::proto::decode_response(&line).unwrap().reply {
                Reply::Event(e) => e,
                other => panic!("not an event: {other:?}"),
            };
            if serde_json::to_value(e.kind).unwrap() == kind {
                return (e, before);
            }
            before.push(e);
        }
    }

    /// Stops it (it runs until killed, like an operator's `vpnctl watch`).
    fn stop(mut self) -> Vec<String> {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.lines.try_iter().collect()
    }
}

fn config(extra: &str) -> (config::Config, config::Config) {
    let opts = format!("start = \"respond\"\n{extra}");
    (common::config(&A, &B, &opts), common::config(&B, &A, "start = \"respond\""))
}

fn action(side: &Side, request: Request) {
    match ask(side, request) {
        Reply::Action(a) => assert_eq!(a.outcome, Outcome::Done, "{a:#?}"),
        other => panic!("expected an action report: {other:?}"),
    }
}

/// Seals `n` packets on `from`'s table and opens them on `to`'s.
fn carry(from: &Side, to: &Side, src: [u8; 4], dst: [u8; 4], n: u16) -> Vec<u8> {
    let (mut wire, mut out) = (vec![0u8; 2048], vec![0u8; 2048]);
    let now = BootClock.now();
    let mut last = Vec::new();
    for i in 0..n {
        let inner = testkit::packet::ipv4_echo_request(src.into(), dst.into(), 1, i, &[]);
        let Sealed::Send { packet, .. } = from.table.load().seal(now, &inner, &mut wire) else { panic!("no SA") };
        last = packet.to_vec();
        assert!(matches!(to.table.load().open(now, &last, &mut out), Opened::Deliver { .. }));
    }
    last
}

const PEER: (&str, &str) = ("tunnel", "peer");

#[test]
fn metrics_and_watch_follow_a_tunnel_through_traffic_rekeys_and_down() {
    if !testkit::require("metrics_and_watch_follow_a_tunnel_through_traffic_rekeys_and_down", &[Need::Root]) {
        return;
    }
    let (cfg_a, cfg_b) = config("");
    let (a, b) = common::pair(cfg_a, cfg_b);
    let dir = tempfile::tempdir().unwrap();
    let (addr, sock) = serve(&a, dir.path());
    refusals(addr);

    let s0 = scrape(addr);
    for (name, kind) in [
        ("vpngw_build_info", "gauge"),
        ("vpngw_uptime_seconds", "gauge"),
        ("vpngw_ike_half_open_sas", "gauge"),
        ("vpngw_ike_drops_total", "counter"),
        ("vpngw_esp_drops_total", "counter"),
        ("vpngw_io_errors_total", "counter"),
        ("vpngw_tunnel_up", "gauge"),
        ("vpngw_tunnel_child_rekeys_total", "counter"),
        ("vpngw_ike_sa_info", "gauge"),
        ("vpngw_ike_sa_last_heard_age_seconds", "gauge"),
        ("vpngw_child_sa_age_seconds", "gauge"),
        ("vpngw_esp_sa_bytes_total", "counter"),
        ("vpngw_esp_sa_drops_total", "counter"),
    ] {
        assert_eq!(s0.types.get(name).map(String::as_str), Some(kind), "{name}");
    }
    assert_eq!(s0.value("vpngw_tunnel_up", &[PEER]), 0.0);
    assert_eq!(s0.value("vpngw_ike_drops_total", &[("reason", "half_open_cap")]), 0.0);
    assert!(s0.matching("vpngw_ike_sa_info", &[PEER]).is_empty());

    let json = Watch::start(sock.path(), true);
    let human = Watch::start(sock.path(), false);

    // Up: the watchers see the IKE SA, then the CHILD SA.
    action(&a, Request::Up { tunnel: "peer".into(), wait_ms: 15_000 });
    let (up, _) = json.until("ike_up");
    assert_eq!((up.tunnel.as_deref(), up.ike_version), (Some("peer"), Some(2)));
    let (child, _) = json.until("child_up");
    let st = status(&a);
    let c = &st.tunnels[0].ike_sas[0].children[0];
    assert_eq!(
        (child.spi_in.as_deref(), child.spi_out.as_deref()),
        (Some(c.spi_in.as_str()), Some(c.spi_out.as_str()))
    );
    let (spi_in, spi_out) = (c.spi_in.clone(), c.spi_out.clone());
    let spi_i = st.tunnels[0].ike_sas[0].spi_i.clone();

    let s1 = scrape(addr);
    assert_eq!(s1.value("vpngw_tunnel_up", &[PEER]), 1.0);
    assert_eq!(s1.value("vpngw_tunnel_ike_established_total", &[PEER]), 1.0);
    let info = [PEER, ("ike_version", "2"), ("spi", &spi_i), ("state", "ESTABLISHED"), ("role", "initiator")];
    assert_eq!(s1.value("vpngw_ike_sa_info", &info), 1.0);
    let child_info = [PEER, ("ike_version", "2"), ("spi", &spi_in), ("spi_out", &spi_out), ("state", "INSTALLED")];
    assert_eq!(s1.value("vpngw_child_sa_info", &child_info), 1.0);
    let esp_in = [PEER, ("spi", spi_in.as_str()), ("direction", "in")];
    let esp_out = [PEER, ("spi", spi_out.as_str()), ("direction", "out")];
    assert_eq!(s1.value("vpngw_esp_sa_packets_total", &esp_out), 0.0);
    assert_eq!(s1.value("vpngw_esp_sa_packets_total", &esp_in), 0.0);

    // Traffic both ways through the published tables (an echo request is 28 bytes),
    // and a replay of B's last packet on A.
    carry(&a, &b, [10, 1, 0, 10], [10, 2, 0, 10], 3);
    let replayed = carry(&b, &a, [10, 2, 0, 10], [10, 1, 0, 10], 2);
    let mut out = vec![0u8; 2048];
    assert!(matches!(a.table.load().open(BootClock.now(), &replayed, &mut out), Opened::Drop(esp::DropReason::Replay)));
    let s2 = scrape(addr);
    assert_eq!(s2.value("vpngw_esp_sa_packets_total", &esp_out), 3.0);
    assert_eq!(s2.value("vpngw_esp_sa_bytes_total", &esp_out), 84.0);
    assert_eq!(s2.value("vpngw_esp_sa_packets_total", &esp_in), 2.0);
    assert_eq!(s2.value("vpngw_esp_sa_bytes_total", &esp_in), 56.0);
    let replay = [PEER, ("spi", spi_in.as_str()), ("direction", "in"), ("reason", "replay")];
    assert_eq!(s2.value("vpngw_esp_sa_drops_total", &replay), 1.0);
    assert!(s2.value("vpngw_uptime_seconds", &[]) >= s1.value("vpngw_uptime_seconds", &[]));

    // A CHILD rekey: told as such, naming the SA it replaced; counted.
    action(&a, Request::Rekey { tunnel: "peer".into(), ike: false, wait_ms: 15_000 });
    let (rekeyed, before) = json.until("child_rekeyed");
    assert!(before.is_empty(), "nothing else happened first: {before:?}");
    assert_eq!(rekeyed.old_spi_in.as_deref(), Some(spi_in.as_str()));
    let s3 = scrape(addr);
    assert_eq!(s3.value("vpngw_tunnel_child_rekeys_total", &[PEER]), 1.0);
    let new_in = rekeyed.spi_in.clone().unwrap();
    assert_eq!(s3.value("vpngw_esp_sa_packets_total", &[PEER, ("spi", new_in.as_str()), ("direction", "in")]), 0.0);

    // An IKE rekey (IKEv2 hands over without an `ike` event; the daemon notices).
    action(&a, Request::Rekey { tunnel: "peer".into(), ike: true, wait_ms: 15_000 });
    let (ike_rekeyed, _) = json.until("ike_rekeyed");
    assert!(ike_rekeyed.message.starts_with(&format!("IKE SA rekeyed: {spi_i}_i ")), "{}", ike_rekeyed.message);
    assert_eq!(scrape(addr).value("vpngw_tunnel_ike_rekeys_total", &[PEER]), 1.0);

    // Down: the CHILD SAs go, then the IKE SA, with the reason.
    action(&a, Request::Down { tunnel: "peer".into(), wait_ms: 15_000 });
    let (down, before) = json.until("ike_down");
    assert!(before.iter().any(|e| serde_json::to_value(e.kind).unwrap() == "child_down"), "{before:?}");
    assert!(down.reason.is_some() && down.message.starts_with("IKE SA down: "), "{down:?}");
    let s4 = scrape(addr);
    assert_eq!(s4.value("vpngw_tunnel_up", &[PEER]), 0.0);
    assert_eq!(s4.value("vpngw_tunnel_stopped", &[PEER]), 1.0);
    assert!(s4.matching("vpngw_esp_sa_bytes_total", &[PEER]).is_empty(), "the SAs' series are gone");
    assert_eq!(s4.value("vpngw_tunnel_child_rekeys_total", &[PEER]), 1.0, "counters stay");

    // The terminal form: one line per event, time, tunnel, kind, message.
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l.contains(" peer ike_down: IKE SA down: ")) {
        lines.push(human.line());
    }
    lines.extend(human.stop());
    json.stop();
    let kinds: Vec<&str> =
        lines.iter().map(|l| l.split(' ').nth(2).unwrap_or_else(|| panic!("{l}")).trim_end_matches(':')).collect();
    for want in ["ike_up", "child_up", "child_rekeyed", "ike_rekeyed", "child_down", "ike_down"] {
        assert!(kinds.contains(&want), "{want} not in {lines:#?}");
    }
    for l in &lines {
        let time = l.split(' ').next().unwrap();
        assert!(time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T', "{l}");
    }
    a.shutdown();
    b.shutdown();
}

#[test]
fn a_dead_peer_is_told_and_counted() {
    if !testkit::require("a_dead_peer_is_told_and_counted", &[Need::Root]) {
        return;
    }
    let (cfg_a, cfg_b) = config("dpd_delay = \"1s\"\ndpd_timeout = \"2s\"\ndpd_action = \"clear\"");
    let (a, b) = common::pair(cfg_a, cfg_b);
    let dir = tempfile::tempdir().unwrap();
    let (addr, _sock) = serve(&a, dir.path());
    // Subscribed in process, as the control socket does it.
    let (subscriber, watcher) = gateway::watch::channel(gateway::watch::QUEUE);
    let (tx, rx) = mpsc::channel();
    a.tx.send(ControlMsg::Watch { subscriber, reply: tx }).unwrap();
    assert!(matches!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), Reply::Watching(_)));
    action(&a, Request::Up { tunnel: "peer".into(), wait_ms: 15_000 });
    assert_eq!(scrape(addr).value("vpngw_tunnel_dpd_failures_total", &[PEER]), 0.0);

    // The link dies both ways: A's liveness checks go unanswered.
    a.cut.store(true, std::sync::atomic::Ordering::Relaxed);
    b.cut.store(true, std::sync::atomic::Ordering::Relaxed);
    let next = || watcher.events.recv_timeout(Duration::from_secs(20)).expect("an event");
    let mut seen = Vec::new();
    let dpd = loop {
        let e = next();
        if serde_json::to_value(e.kind).unwrap() == "dpd_failed" {
            break e;
        }
        seen.push(e);
    };
    assert_eq!(dpd.tunnel.as_deref(), Some("peer"));
    let down = loop {
        let e = next();
        if serde_json::to_value(e.kind).unwrap() == "ike_down" {
            break e;
        }
    };
    assert_eq!(down.reason.as_deref(), Some("dead peer detected"));
    let s = scrape(addr);
    assert_eq!(s.value("vpngw_tunnel_dpd_failures_total", &[PEER]), 1.0);
    assert_eq!(s.value("vpngw_tunnel_up", &[PEER]), 0.0);
    assert_eq!(status(&a).tunnels[0].counters.dpd_failures, 1, "vpnctl status counts it too");
    a.shutdown();
    b.shutdown();
}

#[test]
fn a_slow_watcher_loses_events_and_is_told_how_many() {
    let (subscriber, watcher) = gateway::watch::channel(2);
    let mut subs = gateway::watch::Subscribers::default();
    subs.add(subscriber).unwrap();
    let ev =
        |i: u64| WatchEvent::new(i, gateway::control::proto::EventKind::ChildUp, Some("peer"), format!("event {i}"));
    // Five events for a queue of two: the publisher does not wait, three are lost.
    subs.publish(&[ev(1), ev(2), ev(3), ev(4), ev(5)]);
    drop(subs);
    let mut out = Vec::new();
    gateway::control::server::forward(&watcher, &mut out, || false).unwrap();
    let lines: Vec<WatchEvent> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| match gateway::control::proto::decode_response(l).unwrap().reply {
            Reply::Event(e) => e,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert_eq!((lines[0].unix_ms, lines[1].unix_ms), (1, 2));
    assert_eq!(serde_json::to_value(lines[2].kind).unwrap(), "lost");
    assert_eq!(lines[2].lost, Some(3));
    assert_eq!(lines[2].message, "3 event(s) lost: this client read too slowly");
}
