//! Tunnel commands (`vpnctl up`, `down`, `rekey`, `status TUNNEL`) against two real
//! control threads (`gateway::driver::Driver` with real `ike` and `esp`) wired through
//! in-memory channels: the requests become `ike::Command`s for that tunnel only, the
//! answers wait for the effect and say what happened. No root, no network.

use arc_swap::ArcSwap;
use gateway::clock::{BootClock, Clock};
use gateway::control::proto::{Action, ActionReport, ErrorCode, ErrorReply, Outcome, Reply, Request, StatusReport};
use gateway::datapath::{IoCounters, SharedTable};
use gateway::driver::{ControlMsg, Driver, Exit, IkeTransmit};
use std::io;
use std::path::Path;
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Two tunnels on each side: `peer` (the pair under test, both sides only respond
/// until told otherwise) and `other` (its peer never answers).
fn config(local: &str, remote: &str, lsub: &str, rsub: &str) -> config::Config {
    let text = format!(
        r#"
[gateway]
local_address = "{local}"
tun_name = "vpn0"
control_socket = "/nonexistent/vpngw.sock"

[[tunnel]]
name = "peer"
remote_address = "{remote}"
psk = "an in-memory test key, 32 bytes!"
local_subnets = ["{lsub}"]
remote_subnets = ["{rsub}"]
start = "respond"

[[tunnel]]
name = "other"
remote_address = "203.0.113.99"
psk = "another in-memory test key, 32 b"
local_subnets = ["{lsub}"]
remote_subnets = ["10.99.0.0/24"]
start = "respond"
"#
    );
    config::parse(&text, Path::new("/etc/vpngw/test.toml")).unwrap()
}

/// Delivers IKE messages straight into the other control thread's queue; messages to
/// anyone else are lost.
struct ChannelTransmit {
    peer_ip: std::net::IpAddr,
    to_peer: SyncSender<ControlMsg>,
}

impl IkeTransmit for ChannelTransmit {
    fn transmit(&self, t: &ike::Transmit) -> io::Result<()> {
        if t.remote.ip() != self.peer_ip {
            return Ok(());
        }
        let m = ControlMsg::Datagram { local: t.remote, remote: t.local, data: t.data.clone() };
        self.to_peer.send(m).map_err(|_| io::Error::other("peer gone"))
    }
}

struct Side {
    tx: SyncSender<ControlMsg>,
    thread: std::thread::JoinHandle<Exit>,
}

fn start(
    cfg: config::Config,
    rx: mpsc::Receiver<ControlMsg>,
    to_peer: SyncSender<ControlMsg>,
    me: SyncSender<ControlMsg>,
) -> Side {
    let clock = Arc::new(BootClock);
    let table: SharedTable = Arc::new(ArcSwap::from_pointee(esp::SaTable::new()));
    let endpoint =
        ike::Endpoint::new(gateway::mapping::endpoint_config(&cfg), Box::new(gateway::rng::SystemRng::new()));
    let peer_ip = cfg.tunnels[0].remote_address;
    let driver = Driver {
        endpoint,
        table,
        tx: ChannelTransmit { peer_ip, to_peer },
        started: clock.now(),
        clock,
        rx,
        config: Arc::new(cfg),
        io: Arc::new(IoCounters::default()),
    };
    let thread = std::thread::spawn(move || driver.run());
    Side { tx: me, thread }
}

fn pair() -> (Side, Side) {
    let (tx_a, rx_a) = mpsc::sync_channel(1024);
    let (tx_b, rx_b) = mpsc::sync_channel(1024);
    let b = start(config("192.0.2.2", "192.0.2.1", "10.2.0.0/24", "10.1.0.0/24"), rx_b, tx_a.clone(), tx_b.clone());
    let a = start(config("192.0.2.1", "192.0.2.2", "10.1.0.0/24", "10.2.0.0/24"), rx_a, tx_b, tx_a);
    (a, b)
}

fn ask(side: &Side, request: Request) -> Reply {
    let (tx, rx) = mpsc::channel();
    let bound = request.wait() + Duration::from_secs(10);
    side.tx.send(ControlMsg::Request { request, reply: tx }).unwrap();
    rx.recv_timeout(bound).expect("the driver answers within the wait")
}

fn action(side: &Side, request: Request) -> ActionReport {
    match ask(side, request) {
        Reply::Action(a) => a,
        other => panic!("expected an action report: {other:?}"),
    }
}

fn error(side: &Side, request: Request) -> ErrorReply {
    match ask(side, request) {
        Reply::Error(e) => e,
        other => panic!("expected an error: {other:?}"),
    }
}

fn status(side: &Side) -> StatusReport {
    match ask(side, Request::Status { tunnel: None }) {
        Reply::Status(s) => s,
        other => panic!("status failed: {other:?}"),
    }
}

fn wait_for(side: &Side, what: &str, pred: impl Fn(&StatusReport) -> bool) -> StatusReport {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(side);
        if pred(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {s:#?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const WAIT: u64 = 15_000;

fn up(side: &Side) -> ActionReport {
    action(side, Request::Up { tunnel: "peer".into(), wait_ms: WAIT })
}

fn shutdown(a: Side, b: Side) {
    for s in [a, b] {
        s.tx.send(ControlMsg::Shutdown).unwrap();
        assert_eq!(s.thread.join().unwrap(), Exit::Requested);
    }
}

#[test]
fn up_down_and_status_of_one_tunnel() {
    let (a, b) = pair();
    // Both sides only respond: nothing comes up by itself.
    let s = status(&a);
    assert!(s.tunnels.iter().all(|t| t.ike_sas.is_empty() && !t.stopped));

    let r = up(&a);
    assert_eq!((r.action, r.outcome), (Action::Up, Outcome::Done), "{r:#?}");
    assert!(r.message.starts_with("peer is up: IKE SA "), "{}", r.message);
    assert!(r.events.iter().any(|e| e == "IKE SA established"), "{:?}", r.events);
    assert!(r.events.iter().any(|e| e.starts_with("CHILD SA installed: in ")), "{:?}", r.events);
    let t = r.tunnel_status.expect("the tunnel's status comes with the answer");
    assert_eq!(t.name, "peer");
    assert_eq!(t.ike_sas[0].state, "ESTABLISHED");
    assert_eq!(t.ike_sas[0].role, "initiator");
    // Only that tunnel was initiated.
    let s = status(&a);
    assert!(s.tunnels[1].ike_sas.is_empty(), "other tunnel untouched: {:#?}", s.tunnels[1]);
    wait_for(&b, "B established", |s| s.tunnels[0].ike_sas.iter().any(|sa| sa.state == "ESTABLISHED"));

    // Again: nothing to do.
    let r = up(&a);
    assert_eq!(r.outcome, Outcome::Unchanged, "{r:#?}");
    assert!(r.message.starts_with("peer is already up"), "{}", r.message);

    // status TUNNEL filters; an unknown one is an error.
    match ask(&a, Request::Status { tunnel: Some("other".into()) }) {
        Reply::Status(s) => assert_eq!(s.tunnels.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["other"]),
        other => panic!("{other:?}"),
    }
    let e = error(&a, Request::Status { tunnel: Some("nope".into()) });
    assert_eq!(e.code, ErrorCode::UnknownTunnel);
    assert!(e.message.contains("\"nope\"") && e.message.contains("peer, other"), "{}", e.message);

    // down: DELETE confirmed by B, the tunnel is gone on both sides and marked stopped.
    let r = action(&a, Request::Down { tunnel: "peer".into(), wait_ms: WAIT });
    assert_eq!((r.action, r.outcome), (Action::Down, Outcome::Done), "{r:#?}");
    assert!(r.message.contains("peer is down"), "{}", r.message);
    let t = r.tunnel_status.unwrap();
    assert!(t.ike_sas.is_empty() && t.stopped, "{t:#?}");
    wait_for(&b, "B to drop the tunnel", |s| s.tunnels[0].ike_sas.is_empty());
    let r = action(&a, Request::Down { tunnel: "peer".into(), wait_ms: WAIT });
    assert_eq!(r.outcome, Outcome::Unchanged, "{r:#?}");

    // rekey of a tunnel that is down is refused.
    let e = error(&a, Request::Rekey { tunnel: "peer".into(), ike: false, wait_ms: WAIT });
    assert_eq!(e.code, ErrorCode::NotEstablished, "{e:?}");

    // up again clears the stopped mark.
    assert_eq!(up(&a).outcome, Outcome::Done);
    assert!(!status(&a).tunnels[0].stopped);
    shutdown(a, b);
}

#[test]
fn unknown_tunnel_is_refused_for_every_command() {
    let (a, b) = pair();
    for request in [
        Request::Up { tunnel: "nope".into(), wait_ms: WAIT },
        Request::Down { tunnel: "nope".into(), wait_ms: WAIT },
        Request::Rekey { tunnel: "nope".into(), ike: false, wait_ms: WAIT },
        Request::Rekey { tunnel: "nope".into(), ike: true, wait_ms: WAIT },
    ] {
        let e = error(&a, request);
        assert_eq!(e.code, ErrorCode::UnknownTunnel);
        assert!(e.message.contains("no tunnel named \"nope\""), "{}", e.message);
    }
    assert!(status(&a).tunnels.iter().all(|t| t.ike_sas.is_empty()));
    shutdown(a, b);
}

#[test]
fn up_towards_a_silent_peer_answers_pending_after_the_wait() {
    let (a, b) = pair();
    let r = action(&a, Request::Up { tunnel: "other".into(), wait_ms: 300 });
    assert_eq!(r.outcome, Outcome::Pending, "{r:#?}");
    assert!(r.message.contains("initiation started") && r.message.contains("vpngw keeps trying"), "{}", r.message);
    assert!(r.elapsed_ms >= 300);
    // The first tunnel is unaffected.
    assert!(status(&a).tunnels[0].ike_sas.is_empty());
    shutdown(a, b);
}

fn rekey(side: &Side, ike: bool) -> ActionReport {
    action(side, Request::Rekey { tunnel: "peer".into(), ike, wait_ms: WAIT })
}

#[test]
fn rekey_child_sa_replaces_it_on_both_sides() {
    let (a, b) = pair();
    let r = up(&a);
    assert_eq!(r.outcome, Outcome::Done);
    let old = r.tunnel_status.unwrap().ike_sas[0].children[0].spi_in.clone();
    let r = rekey(&a, false);
    assert_eq!((r.action, r.outcome), (Action::RekeyChild, Outcome::Done), "{r:#?}");
    assert!(r.message.starts_with(&format!("peer: rekeyed CHILD SA {old}: new SAs in ")), "{}", r.message);
    // The new CHILD SA carries traffic state on both sides; the old one is removed.
    let s = wait_for(&a, "old CHILD SA removed on A", |s| {
        s.tunnels[0].ike_sas.iter().flat_map(|sa| &sa.children).all(|c| c.spi_in != old)
    });
    let child = &s.tunnels[0].ike_sas[0].children[0];
    assert_ne!(child.spi_in, old);
    let new_out = child.spi_out.clone();
    wait_for(&b, "B uses the new CHILD SA", |s| {
        s.tunnels[0].ike_sas.iter().flat_map(|sa| &sa.children).any(|c| c.spi_in == new_out)
    });
    shutdown(a, b);
}

#[test]
fn rekey_ike_sa_replaces_it_and_keeps_the_child_sa() {
    let (a, b) = pair();
    let r = up(&a);
    let before = r.tunnel_status.unwrap();
    let (old_spi, child) = (before.ike_sas[0].spi_i.clone(), before.ike_sas[0].children[0].spi_in.clone());
    let r = rekey(&a, true);
    assert_eq!((r.action, r.outcome), (Action::RekeyIke, Outcome::Done), "{r:#?}");
    assert!(r.message.starts_with(&format!("peer: rekeyed IKE SA {old_spi}_i")), "{}", r.message);
    let s = wait_for(&a, "one IKE SA left on A", |s| s.tunnels[0].ike_sas.len() == 1);
    let sa = &s.tunnels[0].ike_sas[0];
    assert_ne!(sa.spi_i, old_spi);
    assert_eq!(sa.state, "ESTABLISHED");
    assert_eq!(sa.children[0].spi_in, child, "CHILD SAs move to the new IKE SA unchanged");
    shutdown(a, b);
}
