//! Tunnel commands (`vpnctl up`, `down`, `rekey`, `status TUNNEL`) against two real
//! control threads (`gateway::driver::Driver` with real `ike` and `esp`) wired through
//! in-memory channels: the requests become `ike::Command`s for that tunnel only, the
//! answers wait for the effect and say what happened. No root, no network.

mod common;

use common::{ask, status, wait_for, Side, Site, A, B};
use gateway::control::proto::{Action, ActionReport, ErrorCode, ErrorReply, Outcome, Reply, Request};

/// Two tunnels on each side: `peer` (the pair under test, both sides only respond
/// until told otherwise) and `other` (its peer never answers).
fn config(local: &Site, remote: &Site) -> config::Config {
    let other = common::tunnel("other", "203.0.113.99", "another in-memory test key, 32 b", local.lan, "10.99.0.0/24");
    common::config(local, remote, &format!("start = \"respond\"\n{other}\nstart = \"respond\""))
}

fn pair() -> (Side, Side) {
    common::pair(config(&A, &B), config(&B, &A))
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

const WAIT: u64 = 15_000;

fn up(side: &Side) -> ActionReport {
    action(side, Request::Up { tunnel: "peer".into(), wait_ms: WAIT })
}

fn shutdown(a: Side, b: Side) {
    a.shutdown();
    b.shutdown();
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
