//! An active/standby group end to end through three control threads (real `ike` and
//! `esp`, in-memory channels instead of sockets): gateway A has tunnel `primary` to B1
//! and tunnel `backup` (`standby_for = "primary"`) to B2, both protecting 10.2.0.0/24.
//! Both come up; A's published SA table seals for the primary. B1 is cut off (a dead
//! peer): A's DPD declares it dead after `dpd_timeout` of silence, the table seals for
//! the standby, and status and `vpnctl watch` say so. B1 comes back: with `failback`
//! the traffic returns to the primary. No root, no network.

mod common;

use arc_swap::ArcSwap;
use common::{wait_for, A};
use esp::Sealed;
use gateway::clock::{BootClock, Clock};
use gateway::control::proto::{EventKind, Reply, StatusReport};
use gateway::datapath::{IoCounters, SharedTable};
use gateway::driver::{ControlMsg, Driver, IkeTransmit};
use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;
use std::time::Duration;

const B1: &str = "192.0.2.2";
const B2: &str = "192.0.2.3";
const PSK: &str = "an in-memory test key, 32 bytes!";

/// Delivers IKE messages to the control thread owning the destination address, unless
/// the sender or the receiver is cut off.
struct Router {
    me: IpAddr,
    peers: HashMap<IpAddr, SyncSender<ControlMsg>>,
    cut: Arc<HashMap<IpAddr, AtomicBool>>,
}

impl IkeTransmit for Router {
    fn transmit(&self, t: &ike::Transmit) -> io::Result<()> {
        let is_cut = |ip: &IpAddr| self.cut.get(ip).is_some_and(|c| c.load(Ordering::Relaxed));
        let Some(to) = self.peers.get(&t.remote.ip()) else { return Ok(()) };
        if is_cut(&self.me) || is_cut(&t.remote.ip()) {
            return Ok(());
        }
        let m = ControlMsg::Datagram { local: t.remote, remote: t.local, data: t.data.clone() };
        to.send(m).map_err(|_| io::Error::other("peer gone"))
    }
}

fn tunnel(name: &str, remote: &str, local_subnet: &str, remote_subnet: &str, extra: &str) -> String {
    format!(
        "\n[[tunnel]]\nname = \"{name}\"\nremote_address = \"{remote}\"\npsk = \"{PSK}\"\n\
         local_subnets = [\"{local_subnet}\"]\nremote_subnets = [\"{remote_subnet}\"]\n{extra}\n"
    )
}

fn config(local: &str, tunnels: &str) -> config::Config {
    let text = format!(
        "[gateway]\nlocal_address = \"{local}\"\ntun_name = \"vpn0\"\ncontrol_socket = \"/nonexistent/vpngw.sock\"\n{tunnels}"
    );
    config::parse(&text, std::path::Path::new("/etc/vpngw/test.toml")).unwrap()
}

struct Gw {
    tx: SyncSender<ControlMsg>,
    table: SharedTable,
}

fn side(gw: &Gw) -> common::Side {
    // `common`'s helpers take a `Side`; they use only `tx` and `table`.
    common::Side {
        tx: gw.tx.clone(),
        table: Arc::clone(&gw.table),
        thread: std::thread::spawn(|| gateway::driver::Exit::Requested),
        cut: Arc::new(AtomicBool::new(false)),
    }
}

fn active(s: &StatusReport, tunnel: &str) -> bool {
    s.tunnels.iter().any(|t| t.name == tunnel && t.failover.as_ref().is_some_and(|f| f.state == "active"))
}

fn up(s: &StatusReport, tunnel: &str) -> bool {
    s.tunnels
        .iter()
        .any(|t| t.name == tunnel && t.ike_sas.iter().any(|sa| sa.state == "ESTABLISHED" && !sa.children.is_empty()))
}

/// The peer address A's published table seals a packet from 10.1.0.10 to 10.2.0.10 for.
fn sealed_to(a: &Gw) -> IpAddr {
    let inner = testkit::packet::ipv4_echo_request([10, 1, 0, 10].into(), [10, 2, 0, 10].into(), 1, 1, &[]);
    let mut wire = vec![0u8; 2048];
    match a.table.load().seal(BootClock.now(), &inner, &mut wire) {
        Sealed::Send { to, .. } => to.remote,
        Sealed::Drop(r) => panic!("A cannot seal: {r:?}"),
    }
}

#[test]
fn the_standby_takes_over_when_the_primary_peer_dies_and_hands_back_with_failback() {
    let b1_ip: IpAddr = B1.parse().unwrap();
    let a_ip: IpAddr = A.wan.parse().unwrap();
    let b2_ip: IpAddr = B2.parse().unwrap();
    let dpd = "dpd_delay = \"1s\"\ndpd_timeout = \"3s\"";
    let cfg_a = config(
        A.wan,
        &format!(
            "{}{}",
            tunnel("primary", B1, "10.1.0.0/24", "10.2.0.0/24", &format!("start = \"initiate\"\n{dpd}")),
            tunnel(
                "backup",
                B2,
                "10.1.0.0/24",
                "10.2.0.0/24",
                &format!("start = \"initiate\"\nstandby_for = \"primary\"\nfailback = true\n{dpd}")
            ),
        ),
    );
    let cfg_b = |me: &str| config(me, &tunnel("site-a", A.wan, "10.2.0.0/24", "10.1.0.0/24", ""));
    let cut: Arc<HashMap<IpAddr, AtomicBool>> =
        Arc::new([a_ip, b1_ip, b2_ip].into_iter().map(|ip| (ip, AtomicBool::new(false))).collect());
    let queues: HashMap<IpAddr, (SyncSender<ControlMsg>, mpsc::Receiver<ControlMsg>)> =
        [a_ip, b1_ip, b2_ip].into_iter().map(|ip| (ip, mpsc::sync_channel(1024))).collect();
    let senders: HashMap<IpAddr, SyncSender<ControlMsg>> =
        queues.iter().map(|(ip, (tx, _))| (*ip, tx.clone())).collect();
    let mut gws = HashMap::new();
    let mut threads = Vec::new();
    // B1 and B2 first, so A's first messages find them.
    for (ip, cfg) in [(b1_ip, cfg_b(B1)), (b2_ip, cfg_b(B2)), (a_ip, cfg_a)] {
        let clock = Arc::new(BootClock);
        let table: SharedTable = Arc::new(ArcSwap::from_pointee(esp::SaTable::new()));
        let endpoint =
            ike::Endpoint::new(gateway::ike_config::endpoint_config(&cfg), Box::new(gateway::rng::SystemRng::new()));
        let peers = senders.iter().filter(|(p, _)| **p != ip).map(|(p, tx)| (*p, tx.clone())).collect();
        gws.insert(ip, Gw { tx: senders[&ip].clone(), table: Arc::clone(&table) });
        threads.push((ip, clock, table, endpoint, peers, cfg));
    }
    let mut queues = queues;
    let mut joins = Vec::new();
    for (ip, clock, table, endpoint, peers, cfg) in threads {
        let (_, rx) = queues.remove(&ip).unwrap();
        let driver = Driver {
            endpoint,
            table,
            tx: Router { me: ip, peers, cut: Arc::clone(&cut) },
            started: clock.now(),
            clock,
            rx,
            config: Arc::new(cfg),
            io: Arc::new(IoCounters::default()),
            reload: None,
        };
        joins.push(std::thread::spawn(move || driver.run()));
    }
    let a = side(&gws[&a_ip]);

    // Both tunnels up; the primary carries the traffic.
    let s = wait_for(&a, "both tunnels up, primary active", |s| {
        up(s, "primary") && up(s, "backup") && active(s, "primary")
    });
    let activations = |s: &StatusReport, t: &str| {
        s.tunnels.iter().find(|x| x.name == t).and_then(|x| x.failover.as_ref()).map_or(0, |f| f.activations)
    };
    // Whichever tunnel came up first carried the traffic until the primary was up.
    let primary_before = activations(&s, "primary");
    let backup = s.tunnels.iter().find(|t| t.name == "backup").unwrap().failover.clone().unwrap();
    assert_eq!((backup.group.as_str(), backup.role.as_str(), backup.state.as_str()), ("primary", "standby", "standby"));
    assert_eq!(sealed_to(&gws[&a_ip]), b1_ip);

    // Watch A's events from here on.
    let (sub_tx, watcher) = gateway::watch::channel(256);
    let (reply_tx, reply_rx) = mpsc::channel();
    gws[&a_ip].tx.send(ControlMsg::Watch { subscriber: sub_tx, reply: reply_tx }).unwrap();
    assert!(matches!(reply_rx.recv_timeout(Duration::from_secs(5)).unwrap(), Reply::Watching(_)));

    // B1 dies (nothing from or to it any more).
    cut[&b1_ip].store(true, Ordering::Relaxed);
    let s = wait_for(&a, "the standby to take over", |s| active(s, "backup"));
    let primary = s.tunnels.iter().find(|t| t.name == "primary").unwrap();
    assert!(primary.counters.dpd_failures >= 1, "{primary:?}");
    assert_eq!(primary.failover.as_ref().unwrap().state, "down");
    assert_eq!(sealed_to(&gws[&a_ip]), b2_ip, "the datapath seals for B2");
    let events: Vec<_> = watcher.events.try_iter().collect();
    let fo = events.iter().find(|e| e.kind == EventKind::Failover).unwrap_or_else(|| panic!("{events:#?}"));
    assert_eq!(fo.tunnel.as_deref(), Some("backup"));
    assert!(fo.message.contains("from primary to backup"), "{}", fo.message);

    // B1 is back: A restarts the primary (dpd_action restart) and, with failback, the
    // traffic returns to it once its CHILD SA is up.
    cut[&b1_ip].store(false, Ordering::Relaxed);
    let s = wait_for(&a, "failback to the primary", |s| active(s, "primary"));
    assert!(up(&s, "backup"), "the standby stays up");
    assert_eq!(sealed_to(&gws[&a_ip]), b1_ip);
    assert_eq!(activations(&s, "primary"), primary_before + 1, "one failback");

    for gw in gws.values() {
        gw.tx.send(ControlMsg::Shutdown).unwrap();
    }
    for j in joins {
        j.join().unwrap();
    }
}
