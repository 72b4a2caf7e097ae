//! Configuration reload through the control thread (`vpnctl reload` and SIGHUP), with two
//! real drivers wired back to back in memory and A's routes in an in-memory table: a
//! reload that adds and then removes another tunnel leaves the running tunnel's SAs
//! alone, and every packet sealed with A's published table while the reloads happen
//! opens at B; the other tunnel's route comes and goes; a changed tunnel is negotiated
//! again; an invalid file and a `[gateway]` change that needs a restart are refused with
//! the running configuration kept. A `watch` client sees each reload that changed
//! something as one `reload` event naming the tunnels, the SAs it ends and starts as
//! their own events after it, and a refused reload as an `error`. No root, no network.

mod common;

use common::{status, wait_for, Side, A, B};
use esp::{Opened, Sealed};
use gateway::clock::{BootClock, Clock};
use gateway::control::proto::{ErrorCode, EventKind, Reply, Request, StatusReport, WatchEvent};
use gateway::driver::ControlMsg;
use gateway::reload::{Host, Reloader};
use gateway::sys::route::Route;
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A routing table in memory (what `ip route` would hold), shared with the test.
#[derive(Clone, Default)]
struct MemRoutes(Arc<Mutex<Vec<Route>>>);

impl MemRoutes {
    fn dests(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().map(|r| r.dest.clone()).collect()
    }
}

impl Host for MemRoutes {
    fn routes(&self) -> Vec<Route> {
        self.0.lock().unwrap().clone()
    }
    fn add_route(&mut self, route: Route) -> io::Result<()> {
        let mut t = self.0.lock().unwrap();
        t.retain(|r| !r.same_destination(&route));
        t.push(route);
        Ok(())
    }
    fn remove_route(&mut self, route: &Route) -> io::Result<()> {
        let mut t = self.0.lock().unwrap();
        let before = t.len();
        t.retain(|r| !r.same_destination(route));
        if t.len() == before {
            return Err(io::Error::other("no such route"));
        }
        Ok(())
    }
    fn local_addresses(&self) -> Vec<IpAddr> {
        vec!["10.1.0.1".parse().unwrap()]
    }
    fn enable_ipv6(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A second tunnel of A, towards a gateway that never answers.
fn other_tunnel() -> String {
    common::tunnel("other", "192.0.2.3", "another in-memory test key, 32 b", "10.1.0.0/24", "10.3.0.0/24")
        + "\nstart = \"initiate\""
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn reload(side: &Side) -> Reply {
    common::ask(side, Request::Reload)
}

/// Subscribes to `side`'s events, as `vpnctl watch` does.
fn watch(side: &Side) -> gateway::watch::Watcher {
    let (subscriber, watcher) = gateway::watch::channel(gateway::watch::QUEUE);
    let (reply, answer) = std::sync::mpsc::channel();
    side.tx.send(ControlMsg::Watch { subscriber, reply }).unwrap();
    match answer.recv_timeout(std::time::Duration::from_secs(5)).unwrap() {
        Reply::Watching(_) => watcher,
        other => panic!("watch refused: {other:?}"),
    }
}

/// The next event of `w` for which `pred` holds, the ones before it skipped (at most 10 s).
fn next_event(w: &gateway::watch::Watcher, what: &str, pred: impl Fn(&WatchEvent) -> bool) -> WatchEvent {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match w.events.recv_timeout(left) {
            Ok(e) if pred(&e) => return e,
            Ok(e) => seen.push(e.message),
            Err(_) => panic!("no {what} event within 10 s; seen: {seen:?}"),
        }
    }
}

fn established(s: &StatusReport) -> bool {
    s.tunnels
        .iter()
        .any(|t| t.name == "peer" && t.ike_sas.iter().any(|sa| sa.state == "ESTABLISHED" && !sa.children.is_empty()))
}

/// (spi_in, spi_out) of tunnel `peer`'s CHILD SAs.
fn spis(s: &StatusReport) -> Vec<(String, String)> {
    s.tunnels
        .iter()
        .filter(|t| t.name == "peer")
        .flat_map(|t| &t.ike_sas)
        .flat_map(|sa| &sa.children)
        .map(|c| (c.spi_in.clone(), c.spi_out.clone()))
        .collect()
}

struct Setup {
    a: Side,
    b: Side,
    routes: MemRoutes,
    file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vpngw.toml");
    let text = common::config_text(&A, &B, "start = \"initiate\"");
    write(&file, &text);
    let cfg_a = config::load(&file).unwrap();
    let routes = MemRoutes::default();
    let mut host = routes.clone();
    for r in gateway::reload::wanted_routes(&cfg_a, "vpn0", &host.local_addresses()) {
        host.add_route(r).unwrap();
    }
    let reloader = Reloader { path: file.clone(), host: Box::new(routes.clone()) };
    let (a, b) = common::pair_with_reload(cfg_a, common::config(&B, &A, "start = \"respond\""), Some(reloader));
    wait_for(&a, "A established", established);
    wait_for(&b, "B established", established);
    Setup { a, b, routes, file, _dir: dir }
}

#[test]
fn unchanged_tunnel_loses_no_packet_while_another_is_added_and_removed() {
    let Setup { a, b, routes, file, _dir } = setup();
    assert_eq!(routes.dests(), ["10.2.0.0/24"]);
    let before = spis(&status(&a));
    assert_eq!(before.len(), 1);

    // Load: a thread seals packets from A's LAN to B's LAN with whatever table A has
    // published at the moment and opens each at B, counting what does not arrive.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, lost) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (table_a, table_b) = (Arc::clone(&a.table), Arc::clone(&b.table));
        let (stop, sent, lost) = (Arc::clone(&stop), Arc::clone(&sent), Arc::clone(&lost));
        std::thread::spawn(move || {
            let inner = testkit::packet::ipv4_echo_request([10, 1, 0, 10].into(), [10, 2, 0, 10].into(), 1, 1, &[]);
            let (mut wire, mut out) = (vec![0u8; 2048], vec![0u8; 2048]);
            while !stop.load(Ordering::Relaxed) {
                let now = BootClock.now();
                sent.fetch_add(1, Ordering::Relaxed);
                let arrived = match table_a.load().seal(now, &inner, &mut wire) {
                    Sealed::Send { packet, .. } => {
                        matches!(table_b.load().open(now, packet, &mut out), Opened::Deliver { .. })
                    }
                    _ => false,
                };
                if !arrived {
                    lost.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let under_way = || {
        let n = sent.load(Ordering::Relaxed);
        testkit::wait_for_every(
            std::time::Duration::from_millis(5),
            std::time::Duration::from_secs(20),
            "packets flowing",
            || (sent.load(Ordering::Relaxed) >= n + 200).then_some(()),
        )
        .unwrap();
    };
    under_way();
    let events = watch(&a);

    // Add a tunnel.
    write(&file, &common::config_text(&A, &B, &format!("start = \"initiate\"\n{}", other_tunnel())));
    let Reply::Reload(r) = reload(&a) else { panic!("reload refused") };
    assert_eq!((r.added.as_slice(), r.unchanged.as_slice()), (&["other".to_string()][..], &["peer".to_string()][..]));
    assert!(r.removed.is_empty() && r.changed.is_empty());
    assert_eq!(r.routes, ["+10.3.0.0/24"]);
    assert_eq!(routes.dests(), ["10.2.0.0/24", "10.3.0.0/24"]);
    let s = status(&a);
    assert_eq!(s.tunnels.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["peer", "other"]);
    let e = events.events.try_recv().expect("the reload event is queued before vpnctl gets its answer");
    assert_eq!((e.kind, e.tunnel.as_deref()), (EventKind::Reload, None));
    assert_eq!((e.added.as_slice(), e.removed.as_slice()), (&["other".to_string()][..], &[][..]));
    assert_eq!(
        e.message,
        format!("configuration reloaded from {} (by vpnctl): added other; routes +10.3.0.0/24", file.display())
    );
    under_way();

    // Remove it again (SIGHUP this time).
    write(&file, &common::config_text(&A, &B, "start = \"initiate\""));
    a.tx.send(ControlMsg::Reload).unwrap();
    wait_for(&a, "the other tunnel gone", |s| s.tunnels.len() == 1);
    assert_eq!(routes.dests(), ["10.2.0.0/24"]);
    let e = next_event(&events, "reload", |e| e.kind == EventKind::Reload);
    assert_eq!((e.added.as_slice(), e.removed.as_slice()), (&[][..], &["other".to_string()][..]));
    assert!(e.message.contains("(by SIGHUP): removed other; routes -10.3.0.0/24"), "{}", e.message);
    // The running tunnel was not touched: nothing about it was told.
    while let Ok(e) = events.events.try_recv() {
        assert_ne!(e.tunnel.as_deref(), Some("peer"), "{e:?}");
    }
    under_way();

    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let (sent, lost) = (sent.load(Ordering::Relaxed), lost.load(Ordering::Relaxed));
    assert!(sent >= 600, "{sent} packets");
    assert_eq!(lost, 0, "{lost} of {sent} packets lost across the reloads");
    assert_eq!(spis(&status(&a)), before, "the unchanged tunnel kept its SAs");
    let inbound = status(&b).tunnels[0].ike_sas[0].children[0].inbound.clone().unwrap();
    assert_eq!(inbound.packets, sent, "B opened every packet on the same SA");
    a.shutdown();
    b.shutdown();
}

#[test]
fn changed_tunnel_is_negotiated_again() {
    let Setup { a, b, routes, file, _dir } = setup();
    let before = spis(&status(&a));
    let events = watch(&a);
    write(&file, &common::config_text(&A, &B, "start = \"initiate\"\nreplay_window = 2048"));
    let Reply::Reload(r) = reload(&a) else { panic!("reload refused") };
    assert_eq!(r.changed, ["peer"]);
    // Watched: the reload, the old SAs going for it, the new ones coming up.
    let e = next_event(&events, "reload", |_| true);
    assert_eq!((e.kind, e.changed.as_slice()), (EventKind::Reload, &["peer".to_string()][..]));
    let down = next_event(&events, "ike_down", |e| e.kind == EventKind::IkeDown);
    assert_eq!(down.reason.as_deref(), Some("tunnel removed or changed by a configuration reload"));
    next_event(&events, "ike_up", |e| e.kind == EventKind::IkeUp && e.tunnel.as_deref() == Some("peer"));
    next_event(&events, "child_up", |e| e.kind == EventKind::ChildUp && e.tunnel.as_deref() == Some("peer"));
    assert!(r.routes.is_empty(), "same subnets, same routes: {:?}", r.routes);
    let after = wait_for(&a, "new SAs", |s| established(s) && !spis(s).is_empty() && spis(s) != before);
    let new = spis(&after);
    assert!(new.iter().all(|sa| !before.contains(sa)), "{before:?} -> {new:?}");
    assert_eq!(after.tunnels[0].ike_sas[0].children[0].replay_window, 2048);
    // B saw the DELETE and took the new SAs.
    wait_for(&b, "B on the new SAs", |s| {
        s.tunnels[0].ike_sas.len() == 1 && spis(s).iter().map(|(i, o)| (o.clone(), i.clone())).eq(new.clone())
    });
    assert_eq!(routes.dests(), ["10.2.0.0/24"]);
    a.shutdown();
    b.shutdown();
}

#[test]
fn bad_configurations_are_refused_and_the_running_one_stays() {
    let Setup { a, b, routes, file, _dir } = setup();
    let before = spis(&status(&a));
    let events = watch(&a);

    // Invalid: the usual file:line: key error.
    let mut text = common::config_text(&A, &B, &format!("start = \"initiate\"\n{}", other_tunnel()));
    text = text.replace("remote_subnets = [\"10.3.0.0/24\"]", "remote_subnets = [\"10.3.0/24\"]");
    write(&file, &text);
    let Reply::Error(e) = reload(&a) else { panic!("an invalid file was taken") };
    assert_eq!(e.code, ErrorCode::InvalidConfig);
    let line = text.lines().position(|l| l.contains("10.3.0/24")).unwrap() + 1;
    let expected = format!("{}:{line}: tunnel[1] (other) `remote_subnets`:", file.display());
    assert!(e.message.starts_with(&expected), "{} does not start with {expected}", e.message);
    let told = events.events.try_recv().expect("an error event for the refused reload");
    assert_eq!(told.kind, EventKind::Error);
    assert!(told.message.starts_with("configuration reload (by vpnctl) refused"), "{}", told.message);
    assert!(told.message.ends_with(&e.message), "{}", told.message);

    // A key that needs a restart.
    write(
        &file,
        &common::config_text(&A, &B, "start = \"initiate\"").replace("tun_name = \"vpn0\"", "tun_name = \"vpn1\""),
    );
    let Reply::Error(e) = reload(&a) else { panic!("a new tun_name was taken") };
    assert_eq!(e.code, ErrorCode::RestartRequired);
    assert!(e.message.contains("`gateway.tun_name` changed from \"vpn0\" to \"vpn1\""), "{}", e.message);

    // Also by SIGHUP: refused, logged, nothing changes.
    a.tx.send(ControlMsg::Reload).unwrap();
    let s = status(&a);
    assert_eq!(s.tunnels.len(), 1);
    assert_eq!(spis(&s), before);
    assert_eq!(routes.dests(), ["10.2.0.0/24"]);

    // A limit applies live.
    write(
        &file,
        &common::config_text(&A, &B, "start = \"initiate\"").replace("[gateway]", "[gateway]\nhalf_open_max = 7"),
    );
    let Reply::Reload(r) = reload(&a) else { panic!("reload refused") };
    assert_eq!(r.gateway, ["gateway.half_open_max"]);
    assert_eq!(r.unchanged, ["peer"]);
    let e = next_event(&events, "reload", |e| e.kind == EventKind::Reload);
    assert!(e.message.ends_with("(by vpnctl): gateway gateway.half_open_max"), "{}", e.message);
    assert!(e.added.is_empty() && e.removed.is_empty() && e.changed.is_empty());
    assert_eq!(spis(&status(&a)), before);
    a.shutdown();
    b.shutdown();
}
