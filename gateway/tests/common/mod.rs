//! The harness shared by the driver tests: two control threads (`gateway::driver::Driver`
//! with real `ike` and `esp`) wired to each other through in-memory channels instead of
//! UDP sockets, their configurations, and requests to them as `vpnctl` would send.
//!
//! Does not check anything about the tunnel itself: the test files do.

// Each test file uses its own subset of these helpers.
#![allow(dead_code)]

use arc_swap::ArcSwap;
use gateway::clock::{BootClock, Clock};
use gateway::control::proto::{Reply, Request, StatusReport};
use gateway::datapath::{IoCounters, SharedTable};
use gateway::driver::{ControlMsg, Driver, Exit, IkeTransmit};
use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;
use std::time::Duration;

/// One gateway's addresses.
pub struct Site {
    /// The WAN address.
    pub wan: &'static str,
    /// The protected LAN.
    pub lan: &'static str,
}

/// Gateway A.
pub const A: Site = Site { wan: "192.0.2.1", lan: "10.1.0.0/24" };
/// Gateway B.
pub const B: Site = Site { wan: "192.0.2.2", lan: "10.2.0.0/24" };

/// The configuration of `local` with the tunnel `peer` towards `remote` (both sides share
/// its PSK); `extra` is TOML appended to it: more settings of `peer`, then more tunnels.
pub fn config(local: &Site, remote: &Site, extra: &str) -> config::Config {
    config::parse(&config_text(local, remote, extra), Path::new("/etc/vpngw/test.toml")).unwrap()
}

/// The text of [`config`].
pub fn config_text(local: &Site, remote: &Site, extra: &str) -> String {
    let peer = tunnel("peer", remote.wan, "an in-memory test key, 32 bytes!", local.lan, remote.lan);
    format!(
        r#"
[gateway]
local_address = "{}"
tun_name = "vpn0"
control_socket = "/nonexistent/vpngw.sock"
{peer}
{extra}
"#,
        local.wan
    )
}

/// A `[[tunnel]]` table with one subnet each side, open for more settings.
pub fn tunnel(name: &str, remote_address: &str, psk: &str, local_subnet: &str, remote_subnet: &str) -> String {
    format!(
        r#"
[[tunnel]]
name = "{name}"
remote_address = "{remote_address}"
psk = "{psk}"
local_subnets = ["{local_subnet}"]
remote_subnets = ["{remote_subnet}"]"#
    )
}

/// Delivers IKE messages to the first tunnel's peer straight into the other control
/// thread's queue; messages to anyone else are lost, and so are all once `cut` is set.
struct ChannelTransmit {
    peer_ip: IpAddr,
    to_peer: SyncSender<ControlMsg>,
    cut: Arc<AtomicBool>,
}

impl IkeTransmit for ChannelTransmit {
    fn transmit(&self, t: &ike::Transmit) -> io::Result<()> {
        if t.remote.ip() != self.peer_ip || self.cut.load(Ordering::Relaxed) {
            return Ok(());
        }
        let m = ControlMsg::Datagram { local: t.remote, remote: t.local, data: t.data.clone() };
        self.to_peer.send(m).map_err(|_| io::Error::other("peer gone"))
    }
}

/// One running control thread.
pub struct Side {
    /// Its input queue.
    pub tx: SyncSender<ControlMsg>,
    /// The SA tables it publishes.
    pub table: SharedTable,
    /// The thread; it returns how the control loop ended.
    pub thread: std::thread::JoinHandle<Exit>,
    /// Set: this side's IKE messages no longer reach the peer (a dead link or peer).
    pub cut: Arc<AtomicBool>,
}

impl Side {
    /// Asks the control loop to stop and checks that it ended as requested.
    pub fn shutdown(self) {
        self.tx.send(ControlMsg::Shutdown).unwrap();
        assert_eq!(self.thread.join().unwrap(), Exit::Requested);
    }
}

fn start(
    cfg: config::Config,
    rx: mpsc::Receiver<ControlMsg>,
    to_peer: SyncSender<ControlMsg>,
    me: SyncSender<ControlMsg>,
    reload: Option<gateway::reload::Reloader>,
) -> Side {
    let clock = Arc::new(BootClock);
    let table: SharedTable = Arc::new(ArcSwap::from_pointee(esp::SaTable::new()));
    let endpoint =
        ike::Endpoint::new(gateway::ike_config::endpoint_config(&cfg), Box::new(gateway::rng::SystemRng::new()));
    let peer_ip = cfg.tunnels[0].remote_address;
    let cut = Arc::new(AtomicBool::new(false));
    let driver = Driver {
        endpoint,
        table: Arc::clone(&table),
        tx: ChannelTransmit { peer_ip, to_peer, cut: Arc::clone(&cut) },
        started: clock.now(),
        clock,
        rx,
        config: Arc::new(cfg),
        io: Arc::new(IoCounters::default()),
        reload,
    };
    let thread = std::thread::spawn(move || driver.run());
    Side { tx: me, table, thread, cut }
}

/// Starts B's control thread, then A's, each delivering to the other.
pub fn pair(cfg_a: config::Config, cfg_b: config::Config) -> (Side, Side) {
    pair_with_reload(cfg_a, cfg_b, None)
}

/// [`pair`], A reloading its configuration with `reload_a`.
pub fn pair_with_reload(
    cfg_a: config::Config,
    cfg_b: config::Config,
    reload_a: Option<gateway::reload::Reloader>,
) -> (Side, Side) {
    let (tx_a, rx_a) = mpsc::sync_channel(1024);
    let (tx_b, rx_b) = mpsc::sync_channel(1024);
    let b = start(cfg_b, rx_b, tx_a.clone(), tx_b.clone(), None);
    let a = start(cfg_a, rx_a, tx_b, tx_a, reload_a);
    (a, b)
}

/// Sends a control request and waits for its answer (the request's own wait, plus a
/// generous bound so a broken build does not hang).
pub fn ask(side: &Side, request: Request) -> Reply {
    let (tx, rx) = mpsc::channel();
    let bound = request.wait() + Duration::from_secs(10);
    side.tx.send(ControlMsg::Request { request, reply: tx }).unwrap();
    rx.recv_timeout(bound).expect("the driver answers within the wait")
}

/// The status of every tunnel.
pub fn status(side: &Side) -> StatusReport {
    match ask(side, Request::Status { tunnel: None }) {
        Reply::Status(s) => s,
        other => panic!("status failed: {other:?}"),
    }
}

/// Polls until `pred` holds (the exchanges are asynchronous); fails after a generous
/// bound so a broken build does not hang.
pub fn wait_for(side: &Side, what: &str, pred: impl Fn(&StatusReport) -> bool) -> StatusReport {
    let every = Duration::from_millis(20);
    testkit::wait_for_every(every, Duration::from_secs(20), what, || Some(status(side)).filter(&pred))
        .unwrap_or_else(|e| panic!("{e}: {:#?}", status(side)))
}
