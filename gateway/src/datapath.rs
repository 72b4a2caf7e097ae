//! The datapath workers: blocking OS threads moving packets between TUN and the WAN
//! through the current `esp::SaTable` snapshot.
//!
//! - `tun-rx`: TUN read -> `seal` -> UDP 4500 (ESP-in-UDP) or the raw ESP socket.
//! - `natt-rx`: UDP 4500 -> `classify_udp4500` -> ESP: `open` -> TUN; IKE: to the
//!   control thread; keepalive: ignored.
//! - `ike-rx`: UDP 500 -> the control thread.
//! - `esp-rx`: raw ESP -> `open` -> TUN.
//!
//! Each worker owns one reusable buffer pair: no allocation per ESP packet (IKE
//! datagrams are copied into a `Vec` for the channel; they are rare). Drops are counted
//! by `esp` (or in [`IoCounters`] for socket/TUN errors), never logged per packet.
//! This module does not change the SA table: only the control thread publishes new
//! snapshots into the shared [`SharedTable`].

use crate::clock::Clock;
use crate::control::proto::IoErrors;
use crate::driver::ControlMsg;
use crate::sys::tun::Tun;
use crate::sys::udp::RawEsp;
use arc_swap::ArcSwap;
use esp::{Opened, Sealed, Udp4500};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The SA table snapshot shared between the control thread and the workers.
pub type SharedTable = Arc<ArcSwap<esp::SaTable>>;

/// Largest datagram or packet handled (IPv4 maximum).
pub const BUF_LEN: usize = 65_536;

/// Errors the gateway itself lost packets to. Relaxed atomics: statistics only.
#[derive(Debug, Default)]
pub struct IoCounters {
    wan_send: AtomicU64,
    tun_write: AtomicU64,
    ike_queue_full: AtomicU64,
}

impl IoCounters {
    /// A snapshot for the status report.
    pub fn snapshot(&self) -> IoErrors {
        IoErrors {
            wan_send: self.wan_send.load(Ordering::Relaxed),
            tun_write: self.tun_write.load(Ordering::Relaxed),
            ike_queue_full: self.ike_queue_full.load(Ordering::Relaxed),
        }
    }
    /// Counts a failed WAN send.
    pub fn wan_send_failed(&self) {
        Self::inc(&self.wan_send);
    }
    fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the workers share.
pub struct Datapath<C: Clock + 'static> {
    /// The SA table.
    pub table: SharedTable,
    /// The TUN device.
    pub tun: Arc<Tun>,
    /// UDP 500.
    pub ike: Arc<UdpSocket>,
    /// UDP 4500.
    pub natt: Arc<UdpSocket>,
    /// Raw ESP (IP protocol 50), if it could be opened.
    pub raw: Option<Arc<RawEsp>>,
    /// To the control thread.
    pub control: SyncSender<ControlMsg>,
    /// The clock.
    pub clock: Arc<C>,
    /// Error counters.
    pub io: Arc<IoCounters>,
}

impl<C: Clock + 'static> Datapath<C> {
    /// Starts every worker thread. They run until the process exits.
    pub fn spawn(self) -> io::Result<Vec<JoinHandle<()>>> {
        let me = Arc::new(self);
        let mut handles = Vec::new();
        let ctl = &me.control;
        let d = Arc::clone(&me);
        handles.push(spawn("tun-rx", ctl, move || d.tun_reader())?);
        let d = Arc::clone(&me);
        handles.push(spawn("natt-rx", ctl, move || d.natt_reader())?);
        let d = Arc::clone(&me);
        handles.push(spawn("ike-rx", ctl, move || d.ike_reader())?);
        if let Some(raw) = me.raw.clone() {
            let d = Arc::clone(&me);
            handles.push(spawn("esp-rx", ctl, move || d.raw_reader(&raw))?);
        }
        Ok(handles)
    }

    fn tun_reader(&self) {
        let mut inner = vec![0u8; BUF_LEN];
        let mut out = vec![0u8; BUF_LEN + esp::MAX_OVERHEAD];
        let mut errors = ErrorLog::new("TUN read");
        loop {
            let n = match self.tun.recv(&mut inner) {
                Ok(n) => n,
                Err(e) => {
                    errors.record(&e);
                    continue;
                }
            };
            let Some(pkt) = inner.get(..n) else { continue };
            let table = self.table.load();
            match table.seal(self.clock.now(), pkt, &mut out) {
                Sealed::Send { to, packet } => {
                    let sent = match to.encap {
                        Some(encap) => self.natt.send_to(packet, SocketAddr::new(to.remote, encap.remote_port)),
                        None => match &self.raw {
                            Some(raw) => raw.send_to(packet, to.remote),
                            None => Err(io::Error::other("raw ESP socket unavailable")),
                        },
                    };
                    if sent.is_err() {
                        IoCounters::inc(&self.io.wan_send);
                    }
                }
                // Counted inside esp.
                Sealed::Drop(_) => {}
            }
        }
    }

    fn natt_reader(&self) {
        let mut buf = vec![0u8; BUF_LEN];
        let mut out = vec![0u8; BUF_LEN];
        let mut errors = ErrorLog::new("UDP 4500 receive");
        let Ok(local) = self.natt.local_addr() else { return };
        loop {
            let (n, from) = match self.natt.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e) => {
                    errors.record(&e);
                    continue;
                }
            };
            let Some(payload) = buf.get(..n) else { continue };
            match esp::classify_udp4500(payload) {
                Udp4500::Esp(esp_pkt) => self.open_and_deliver(esp_pkt, &mut out),
                Udp4500::Ike(msg) => self.to_control(local, from, msg),
                // NAT keepalives only refresh NAT mappings; malformed are too short to count.
                Udp4500::Keepalive | Udp4500::Malformed => {}
            }
        }
    }

    fn ike_reader(&self) {
        let mut buf = vec![0u8; BUF_LEN];
        let mut errors = ErrorLog::new("UDP 500 receive");
        let Ok(local) = self.ike.local_addr() else { return };
        loop {
            match self.ike.recv_from(&mut buf) {
                Ok((n, from)) => {
                    if let Some(msg) = buf.get(..n) {
                        self.to_control(local, from, msg);
                    }
                }
                Err(e) => errors.record(&e),
            }
        }
    }

    fn raw_reader(&self, raw: &RawEsp) {
        let mut buf = vec![0u8; BUF_LEN];
        let mut out = vec![0u8; BUF_LEN];
        let mut errors = ErrorLog::new("raw ESP receive");
        loop {
            match raw.recv(&mut buf) {
                Ok(Some((range, _from))) => {
                    if let Some(esp_pkt) = buf.get(range) {
                        self.open_and_deliver(esp_pkt, &mut out);
                    }
                }
                Ok(None) => {}
                Err(e) => errors.record(&e),
            }
        }
    }

    fn open_and_deliver(&self, esp_pkt: &[u8], out: &mut [u8]) {
        let table = self.table.load();
        match table.open(self.clock.now(), esp_pkt, out) {
            Opened::Deliver { packet, .. } => {
                if self.tun.send(packet).is_err() {
                    IoCounters::inc(&self.io.tun_write);
                }
            }
            // Counted inside esp.
            Opened::Drop(_) => {}
        }
    }

    fn to_control(&self, local: SocketAddr, remote: SocketAddr, msg: &[u8]) {
        let m = ControlMsg::Datagram { local, remote, data: msg.to_vec() };
        match self.control.try_send(m) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => IoCounters::inc(&self.io.ike_queue_full),
            // The control thread is gone: we are shutting down.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// Starts a worker. A worker that panics (a bug) must not leave a daemon that looks
/// alive but moves no packets: the control thread is told to shut down with an error.
fn spawn(
    name: &'static str,
    control: &SyncSender<ControlMsg>,
    f: impl FnOnce() + Send + 'static,
) -> io::Result<JoinHandle<()>> {
    let control = control.clone();
    std::thread::Builder::new().name(name.into()).spawn(move || {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
            let _ = control.send(ControlMsg::Fatal(format!("datapath thread {name} panicked")));
        }
    })
}

/// Logs a worker's I/O errors without flooding: the first one, then every 1000th.
struct ErrorLog {
    what: &'static str,
    count: u64,
}

impl ErrorLog {
    fn new(what: &'static str) -> Self {
        Self { what, count: 0 }
    }
    fn record(&mut self, e: &io::Error) {
        if e.kind() == io::ErrorKind::Interrupted {
            return;
        }
        self.count += 1;
        if self.count == 1 || self.count % 1000 == 0 {
            tracing::warn!(error = %e, count = self.count, "{} failed", self.what);
        }
        // A persistently failing fd must not spin a core.
        if self.count % 100 == 0 {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
