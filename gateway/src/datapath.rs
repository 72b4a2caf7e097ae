//! The datapath workers: OS threads moving packets between TUN and the WAN through the
//! current `esp::SaTable` snapshot. Each worker owns one source and sleeps on it:
//!
//! - `tun-rx`: TUN read -> `seal` -> UDP 4500 (ESP-in-UDP) or the raw ESP socket. With
//!   a multi-queue TUN (`VPNGW_TUN_QUEUES=N`, default 1) one such worker per queue
//!   (`tun-rx-1`, ...): the kernel spreads flows over the queues by hash.
//! - `natt-rx`: UDP 4500 -> `classify_udp4500` -> ESP: `open` -> TUN; IKE: to the
//!   control thread; keepalive: ignored.
//! - `esp-rx`: raw ESP -> `open` -> TUN.
//! - `ike-rx`: UDP 500 -> the control thread.
//!
//! Cross-serving: a source is read only under its lock, by its own worker or, when that
//! one is asleep and its own source has run dry, by another worker (`try_lock`, a bounded
//! number of reads). A worker that has just written an echo request to TUN finds the
//! reply already queued there (the kernel answers within the write) and seals it itself
//! instead of waking `tun-rx`: one thread wake-up less per request/response round trip,
//! and thread wake-ups are what a round trip through the gateway costs (see
//! docs/performance.md). Whoever holds a source's lock sends everything it read before
//! releasing it, so packets leave in the order they arrived.
//!
//! Batching and offloads (issue #4, see docs/performance.md), each switchable off by an
//! environment variable for measurements ([`Levers`]):
//! - TUN offloads (`sys::tun`, [`offload`]): the kernel hands `tun-rx` TCP (and UDP)
//!   super-packets of up to 64 KiB, which are segmented here (each segment sealed with its own ESP
//!   sequence number), and the receive side coalesces in-order TCP segments (and runs
//!   of equal-sized UDP datagrams) into one GSO write to TUN.
//! - `tun-rx` reads TUN non-blocking until it is empty (or [`MAX_READS_PER_SEND`]),
//!   then sends what it sealed in one go: ESP-in-UDP as UDP GSO (`UDP_SEGMENT`, runs of
//!   equal-sized datagrams), raw ESP with `sendmmsg`.
//! - `natt-rx` receives with UDP_GRO (a run of datagrams per call), `esp-rx` with
//!   `recvmmsg`.
//! - Cross-serving (above).
//!
//! Each worker owns its reusable buffers: no allocation per ESP packet (IKE datagrams
//! are copied into a `Vec` for the channel; they are rare). Drops are counted by `esp`
//! (or in [`IoCounters`] for socket/TUN errors), never logged per packet.
//! This module does not change the SA table: only the control thread publishes new
//! snapshots into the shared [`SharedTable`].

use crate::clock::Clock;
use crate::control::proto::IoErrors;
use crate::driver::ControlMsg;
use crate::sys::batch;
use crate::sys::tun::Tun;
use crate::sys::udp::RawEsp;
use arc_swap::ArcSwap;
use esp::{Opened, Sealed, Udp4500};
use ipsec_types::SaEndpoints;
use offload::{Gro, VnetHdr, VNET_HDR_LEN};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The SA table snapshot shared between the control thread and the workers.
pub type SharedTable = Arc<ArcSwap<esp::SaTable>>;

pub mod offload;

/// Largest datagram or packet handled (IPv4 maximum).
pub const BUF_LEN: usize = 65_536;

/// Most TUN reads sealed before the batch is sent.
pub const MAX_READS_PER_SEND: usize = 64;

/// Packets the TUN device queues for `tun-rx` (see [`Tun::set_tx_queue_len`]).
pub const TUN_TX_QUEUE: u32 = 5000;

/// Datagrams per `recvmmsg` on the raw ESP socket.
const RAW_BATCH: usize = 32;

/// Which of the issue #4 levers are on. All are, unless switched off in the
/// environment (any value but `0`): `VPNGW_NO_OFFLOAD` (TUN offloads; read in
/// `sys::tun`), `VPNGW_NO_TUN_GRO` (coalescing of TUN writes), `VPNGW_NO_TUN_UDP_GRO`
/// (coalescing of UDP datagrams only), `VPNGW_NO_UDP_GSO` (UDP
/// GSO sends and UDP GRO receives), `VPNGW_NO_BATCH` (non-blocking TUN read batches,
/// `sendmmsg`/`recvmmsg`, and with them cross-serving), `VPNGW_NO_TXQUEUE` (the longer
/// TUN queue), `VPNGW_NO_CROSS_SERVE` (workers serve only their own source).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Levers {
    /// Coalesce TCP segments into GSO writes to TUN (needs TUN offloads).
    pub tun_gro: bool,
    /// Coalesce UDP datagrams too (UDP_L4 GSO writes to TUN).
    pub tun_udp_gro: bool,
    /// UDP GSO/GRO on the NAT-T socket.
    pub udp_gso: bool,
    /// Batched TUN reads and mmsg calls.
    pub batch: bool,
    /// A TUN transmit queue of [`TUN_TX_QUEUE`] packets instead of the default 500.
    pub txqueue: bool,
    /// Workers serve each other's sources when their own runs dry.
    pub cross_serve: bool,
}

impl Levers {
    /// From the environment (see above).
    pub fn from_env() -> Self {
        let off = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty() && v != "0");
        Self {
            tun_gro: !off("VPNGW_NO_TUN_GRO"),
            tun_udp_gro: !off("VPNGW_NO_TUN_UDP_GRO"),
            udp_gso: !off("VPNGW_NO_UDP_GSO"),
            batch: !off("VPNGW_NO_BATCH"),
            txqueue: !off("VPNGW_NO_TXQUEUE"),
            cross_serve: !off("VPNGW_NO_CROSS_SERVE"),
        }
    }
}

/// Errors the gateway itself lost packets to. Relaxed atomics: statistics only.
#[derive(Debug, Default)]
pub struct IoCounters {
    wan_send: AtomicU64,
    tun_write: AtomicU64,
    ike_queue_full: AtomicU64,
    tun_read_malformed: AtomicU64,
}

impl IoCounters {
    /// A snapshot for the status report.
    pub fn snapshot(&self) -> IoErrors {
        IoErrors {
            wan_send: self.wan_send.load(Ordering::Relaxed),
            tun_write: self.tun_write.load(Ordering::Relaxed),
            ike_queue_full: self.ike_queue_full.load(Ordering::Relaxed),
            tun_read_malformed: self.tun_read_malformed.load(Ordering::Relaxed),
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

/// Names of the workers of TUN queues 1.. (thread names must be `'static`).
const TUN_QUEUE_THREADS: [&str; crate::sys::tun::MAX_QUEUES] =
    ["tun-rx", "tun-rx-1", "tun-rx-2", "tun-rx-3", "tun-rx-4", "tun-rx-5", "tun-rx-6", "tun-rx-7"];

/// Reads a worker may make from another worker's source in one go.
const CROSS_BUDGET: usize = 64;

/// What a worker reads from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// A queue of the TUN device (to be sealed).
    Tun(usize),
    /// UDP 4500 (ESP-in-UDP to be opened, IKE).
    Natt,
    /// The raw ESP socket (to be opened).
    Raw,
}

impl Source {
    /// Every source of a device with `queues` TUN queues.
    fn all(queues: usize) -> impl Iterator<Item = Source> {
        (0..queues).map(Source::Tun).chain([Source::Natt, Source::Raw])
    }
}

/// A worker's reusable buffers, for every source it may serve (allocated once).
struct Bufs {
    tun_rx: Vec<u8>,
    scratch: Vec<u8>,
    tx: TxBatch,
    /// TUN reads sealed into `tx` since it was last sent.
    reads: usize,
    wan_rx: Vec<u8>,
    out: Vec<u8>,
    gro: Gro,
    /// Allocated the first time the raw ESP socket is served.
    raw_rx: Option<batch::RecvMany>,
    tun_errors: ErrorLog,
    natt_errors: ErrorLog,
    raw_errors: ErrorLog,
}

impl Bufs {
    fn new<C: Clock + 'static>(w: &Workers<C>) -> Self {
        Self {
            tun_rx: vec![0; VNET_HDR_LEN + BUF_LEN],
            scratch: vec![0; BUF_LEN],
            tx: TxBatch::new(),
            reads: 0,
            wan_rx: vec![0; BUF_LEN],
            out: vec![0; BUF_LEN],
            gro: Gro::with_udp(w.levers.tun_udp_gro && w.tun.udp_gso_writes()),
            raw_rx: None,
            tun_errors: ErrorLog::new("TUN read"),
            natt_errors: ErrorLog::new("UDP 4500 receive"),
            raw_errors: ErrorLog::new("raw ESP receive"),
        }
    }

    fn errors(&mut self, src: Source) -> &mut ErrorLog {
        match src {
            Source::Tun(_) => &mut self.tun_errors,
            Source::Natt => &mut self.natt_errors,
            Source::Raw => &mut self.raw_errors,
        }
    }
}

/// The workers' view: the [`Datapath`] plus what they decide at start.
struct Workers<C: Clock + 'static> {
    d: Datapath<C>,
    levers: Levers,
    /// Set when the kernel refused a UDP GSO send: datagrams go one by one after that.
    gso_broken: AtomicBool,
    /// Held by whoever is reading the source (and sending on what it read).
    /// One per TUN queue.
    tun_locks: Vec<Mutex<()>>,
    natt_lock: Mutex<()>,
    raw_lock: Mutex<()>,
    /// Non-blocking reads (then workers may serve each other's sources).
    cross: bool,
    /// The local address of UDP 4500 (for IKE messages handed to the control thread).
    natt_local: SocketAddr,
}

impl<C: Clock + 'static> std::ops::Deref for Workers<C> {
    type Target = Datapath<C>;
    fn deref(&self) -> &Datapath<C> {
        &self.d
    }
}

impl<C: Clock + 'static> Datapath<C> {
    /// Starts every worker thread. They run until the process exits.
    pub fn spawn(self) -> io::Result<Vec<JoinHandle<()>>> {
        let levers = Levers::from_env();
        if levers.txqueue {
            if let Err(e) = self.tun.set_tx_queue_len(TUN_TX_QUEUE) {
                tracing::warn!(error = %e, "cannot lengthen the TUN queue");
            }
        }
        tracing::info!(
            tun_offload = self.tun.tso(),
            tun_queues = self.tun.queues(),
            vnet_hdr = self.tun.vnet_hdr(),
            tun_gro = levers.tun_gro,
            tun_udp_gro = levers.tun_udp_gro && self.tun.udp_gso_writes(),
            udp_gso = levers.udp_gso,
            batch = levers.batch,
            txqueue = levers.txqueue,
            "datapath levers"
        );
        // Non-blocking TUN reads let one WAN send carry everything that queued up
        // meanwhile, and let workers look at each other's sources without blocking.
        let cross = levers.batch && self.tun.set_nonblocking().is_ok();
        let natt_local = self.natt.local_addr()?;
        let queues = self.tun.queues();
        if levers.udp_gso && batch::enable_udp_gro(self.natt.as_fd()).is_err() {
            tracing::debug!("UDP_GRO unavailable: one datagram per receive");
        }
        let me = Arc::new(Workers {
            d: self,
            levers,
            gso_broken: AtomicBool::new(false),
            tun_locks: (0..queues).map(|_| Mutex::new(())).collect(),
            natt_lock: Mutex::new(()),
            raw_lock: Mutex::new(()),
            cross,
            natt_local,
        });
        let mut handles = Vec::new();
        let ctl = &me.control;
        let d = Arc::clone(&me);
        handles.push(spawn("tun-rx", ctl, move || d.worker(Source::Tun(0)))?);
        for q in 1..queues {
            let d = Arc::clone(&me);
            handles.push(spawn(TUN_QUEUE_THREADS.get(q).copied().unwrap_or("tun-rx-n"), ctl, move || {
                d.worker(Source::Tun(q))
            })?);
        }
        let d = Arc::clone(&me);
        handles.push(spawn("natt-rx", ctl, move || d.worker(Source::Natt))?);
        let d = Arc::clone(&me);
        handles.push(spawn("ike-rx", ctl, move || d.ike_reader())?);
        if me.raw.is_some() {
            let d = Arc::clone(&me);
            handles.push(spawn("esp-rx", ctl, move || d.worker(Source::Raw))?);
        }
        Ok(handles)
    }
}

impl<C: Clock + 'static> Workers<C> {
    /// A worker: serves its own source until it runs dry, then (if cross-serving) whatever
    /// the other sources hold and nobody is serving, and sleeps until its own source is
    /// readable once all are dry.
    fn worker(&self, own: Source) {
        let mut b = Bufs::new(self);
        loop {
            let mut n = self.serve(own, &mut b, true);
            if self.cross && self.levers.cross_serve {
                for s in Source::all(self.tun.queues()) {
                    if s != own {
                        n += self.serve(s, &mut b, false);
                    }
                }
            }
            if n > 0 {
                continue;
            }
            if self.cross {
                let fd = match own {
                    Source::Tun(q) => self.tun.queue_fd(q),
                    Source::Natt => Some(self.natt.as_fd()),
                    Source::Raw => self.raw.as_deref().map(RawEsp::fd),
                };
                if let Some(Err(e)) = fd.map(|fd| crate::sys::wait_readable(fd, -1)) {
                    b.errors(own).record(&e);
                }
            }
        }
    }

    /// Serves `src` under its lock (taken if `own`, tried otherwise; a source someone
    /// else is serving is skipped): reads until it would block, at most
    /// [`CROSS_BUDGET`] reads when not `own`; one blocking read without cross-serving.
    /// Everything read is sent on before the lock is released, so packets leave in the
    /// order they came. Returns the number of reads that brought something.
    fn serve(&self, src: Source, b: &mut Bufs, own: bool) -> usize {
        let lock = match src {
            Source::Tun(q) => match self.tun_locks.get(q) {
                Some(l) => l,
                None => return 0,
            },
            Source::Natt => &self.natt_lock,
            Source::Raw if self.raw.is_some() => &self.raw_lock,
            Source::Raw => return 0,
        };
        let _guard = if own {
            lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
        } else {
            match lock.try_lock() {
                Ok(g) => g,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return 0,
            }
        };
        let budget = if !self.cross {
            1
        } else if own {
            usize::MAX
        } else {
            CROSS_BUDGET
        };
        let mut n = 0;
        while n < budget {
            let got = match src {
                Source::Tun(q) => self.tun_once(q, b),
                Source::Natt => self.natt_once(b),
                Source::Raw => self.raw_once(b),
            };
            match got {
                Ok(()) => n += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    b.errors(src).record(&e);
                    break;
                }
            }
        }
        if matches!(src, Source::Tun(_)) {
            self.flush(&mut b.tx);
            b.reads = 0;
        }
        n
    }

    /// One TUN read, sealed into the batch (sent every [`MAX_READS_PER_SEND`] reads).
    fn tun_once(&self, q: usize, b: &mut Bufs) -> io::Result<()> {
        let n = self.tun.recv_queue(q, &mut b.tun_rx)?;
        let table = self.table.load();
        let now = self.clock.now();
        let Bufs { tun_rx, scratch, tx, .. } = b;
        if self.tun.vnet_hdr() {
            if let (Some(hdr), Some(pkt)) = (VnetHdr::parse(tun_rx), tun_rx.get_mut(VNET_HDR_LEN..n)) {
                if hdr.gso_type != offload::GSO_NONE {
                    let r = offload::segment(&hdr, pkt, scratch, |seg| self.seal_one(&table, now, seg, tx));
                    if r.is_err() {
                        IoCounters::inc(&self.io.tun_read_malformed);
                    }
                } else if hdr.flags & offload::F_NEEDS_CSUM != 0 && offload::complete_checksum(&hdr, pkt).is_err() {
                    IoCounters::inc(&self.io.tun_read_malformed);
                } else {
                    self.seal_one(&table, now, pkt, tx);
                }
            }
        } else if let Some(pkt) = tun_rx.get(..n) {
            self.seal_one(&table, now, pkt, tx);
        }
        b.reads += 1;
        if b.reads >= MAX_READS_PER_SEND {
            self.flush(&mut b.tx);
            b.reads = 0;
        }
        Ok(())
    }

    /// One receive on UDP 4500 (a UDP GRO run of datagrams): ESP opened and written to
    /// TUN, IKE to the control thread.
    fn natt_once(&self, b: &mut Bufs) -> io::Result<()> {
        let (n, from, seg) = batch::recv_gro(self.natt.as_fd(), &mut b.wan_rx, !self.cross)?;
        let Bufs { wan_rx, out, gro, .. } = b;
        for payload in wan_rx.get(..n).unwrap_or_default().chunks(seg.max(1)) {
            match esp::classify_udp4500(payload) {
                Udp4500::Esp(esp_pkt) => self.open_and_deliver(esp_pkt, out, gro),
                Udp4500::Ike(msg) => self.to_control(self.natt_local, from, msg),
                // NAT keepalives only refresh NAT mappings; malformed are too short to count.
                Udp4500::Keepalive | Udp4500::Malformed => {}
            }
        }
        self.flush_gro(gro);
        Ok(())
    }

    /// One `recvmmsg` on the raw ESP socket, each packet opened and written to TUN.
    fn raw_once(&self, b: &mut Bufs) -> io::Result<()> {
        let Some(raw) = self.raw.as_deref() else { return Err(io::ErrorKind::WouldBlock.into()) };
        let many = b
            .raw_rx
            .get_or_insert_with(|| batch::RecvMany::new(if self.levers.batch { RAW_BATCH } else { 1 }, BUF_LEN));
        batch::recv_many(raw.fd(), many, !self.cross)?;
        for pkt in many.packets() {
            if let Some(esp_pkt) = raw.esp_range(pkt).and_then(|(range, _from)| pkt.get(range)) {
                self.open_and_deliver(esp_pkt, &mut b.out, &mut b.gro);
            }
        }
        self.flush_gro(&mut b.gro);
        Ok(())
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

    /// Seals one inner packet into the batch, sending the batch first if the packet
    /// cannot join it.
    fn seal_one(&self, table: &esp::SaTable, now: ipsec_types::Timestamp, inner: &[u8], tx: &mut TxBatch) {
        if tx.room() < inner.len() + esp::MAX_OVERHEAD {
            self.flush(tx);
        }
        let Some(out) = tx.buf.get_mut(tx.used..) else { return };
        // Drops are counted inside esp.
        if let Sealed::Send { to, packet } = table.seal(now, inner, out) {
            let len = packet.len();
            if !tx.fits(&to, len, self.levers.udp_gso) {
                self.flush_keeping_last(tx, len);
            }
            tx.push(to, len);
        }
    }

    /// Sends the batch.
    fn flush(&self, tx: &mut TxBatch) {
        if let Some(to) = tx.to {
            self.send_batch(&to, tx);
        }
        tx.clear();
    }

    /// Sends the batch except a just-sealed `len`-byte packet after it, which becomes
    /// the start of the next batch.
    fn flush_keeping_last(&self, tx: &mut TxBatch, len: usize) {
        let at = tx.used;
        self.flush(tx);
        tx.buf.copy_within(at..at + len, 0);
    }

    fn send_batch(&self, to: &SaEndpoints, tx: &TxBatch) {
        let mut failed = 0u64;
        match to.encap {
            Some(encap) => {
                let dst = SocketAddr::new(to.remote, encap.remote_port);
                let data = tx.buf.get(..tx.used).unwrap_or_default();
                let seg = tx.lens.first().copied().unwrap_or(0);
                if tx.count > 1 && self.levers.udp_gso && !self.gso_broken.load(Ordering::Relaxed) {
                    match batch::send_gso(self.natt.as_fd(), data, seg as u16, dst) {
                        Ok(_) => return,
                        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP | libc::EIO)) => {
                            // No UDP GSO on this kernel or route: per datagram from now on.
                            self.gso_broken.store(true, Ordering::Relaxed);
                        }
                        Err(_) => {
                            failed = tx.count as u64;
                        }
                    }
                }
                if failed == 0 {
                    for p in tx.packets() {
                        if self.natt.send_to(p, dst).is_err() {
                            failed += 1;
                        }
                    }
                }
            }
            None => match &self.raw {
                Some(raw) if self.levers.batch && tx.count > 1 => {
                    let mut refs: [&[u8]; batch::MAX_MMSG] = [&[]; batch::MAX_MMSG];
                    for (r, p) in refs.iter_mut().zip(tx.packets()) {
                        *r = p;
                    }
                    let n = tx.count.min(batch::MAX_MMSG);
                    let sent = raw.send_many(refs.get(..n).unwrap_or_default(), to.remote).unwrap_or(0);
                    failed = (n - sent.min(n)) as u64;
                }
                Some(raw) => {
                    for p in tx.packets() {
                        if raw.send_to(p, to.remote).is_err() {
                            failed += 1;
                        }
                    }
                }
                None => failed = tx.count as u64,
            },
        }
        if failed > 0 {
            self.io.wan_send.fetch_add(failed, Ordering::Relaxed);
        }
    }

    fn open_and_deliver(&self, esp_pkt: &[u8], out: &mut [u8], gro: &mut Gro) {
        let table = self.table.load();
        // Drops are counted inside esp.
        if let Opened::Deliver { packet, .. } = table.open(self.clock.now(), esp_pkt, out) {
            if !self.tun.vnet_hdr() {
                if self.tun.send(packet).is_err() {
                    IoCounters::inc(&self.io.tun_write);
                }
            } else if self.levers.tun_gro {
                gro.push(packet, &mut |h: &[u8], p: &[u8]| self.tun_write(h, p));
            } else {
                self.tun_write(&offload::PLAIN_HDR, packet);
            }
        }
    }

    fn flush_gro(&self, gro: &mut Gro) {
        gro.flush(&mut |h: &[u8], p: &[u8]| self.tun_write(h, p));
    }

    fn tun_write(&self, vnet_hdr: &[u8], packet: &[u8]) {
        if self.tun.send_parts(vnet_hdr, packet).is_err() {
            IoCounters::inc(&self.io.tun_write);
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

/// ESP packets sealed back to back in one buffer, waiting to be sent together to one
/// destination: as one UDP GSO send (so all but the last have the same length) or one
/// `sendmmsg`.
struct TxBatch {
    buf: Vec<u8>,
    used: usize,
    lens: [usize; batch::MAX_MMSG],
    count: usize,
    to: Option<SaEndpoints>,
}

impl TxBatch {
    fn new() -> Self {
        Self {
            buf: vec![0; batch::MAX_GSO_BYTES + BUF_LEN + esp::MAX_OVERHEAD],
            used: 0,
            lens: [0; batch::MAX_MMSG],
            count: 0,
            to: None,
        }
    }

    /// Free bytes after the batch.
    fn room(&self) -> usize {
        self.buf.len() - self.used
    }

    /// True if a `len`-byte packet for `to`, sealed right after the batch, may join it.
    fn fits(&self, to: &SaEndpoints, len: usize, gso: bool) -> bool {
        let Some(cur) = self.to else { return true };
        if cur != *to || self.count >= batch::MAX_MMSG {
            return false;
        }
        if to.encap.is_none() || !gso {
            return true;
        }
        // UDP GSO: equal sizes, only the last may be shorter; bounded total.
        let first = self.lens.first().copied().unwrap_or(0);
        let last = self.lens.get(self.count.wrapping_sub(1)).copied().unwrap_or(0);
        last == first && len <= first && self.used + len <= batch::MAX_GSO_BYTES
    }

    /// Records the packet sealed at `used..used + len`.
    fn push(&mut self, to: SaEndpoints, len: usize) {
        if let Some(l) = self.lens.get_mut(self.count) {
            *l = len;
            self.count += 1;
            self.used += len;
            self.to = Some(to);
        }
    }

    fn clear(&mut self) {
        self.used = 0;
        self.count = 0;
        self.to = None;
    }

    fn packets(&self) -> impl Iterator<Item = &[u8]> {
        let mut at = 0usize;
        self.lens.iter().take(self.count).filter_map(move |l| {
            let p = self.buf.get(at..at + l);
            at += l;
            p
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use ipsec_types::UdpEncap;

    fn ep(last: u8, encap: bool) -> SaEndpoints {
        SaEndpoints {
            local: "192.0.2.1".parse().unwrap(),
            remote: std::net::IpAddr::from([192, 0, 2, last]),
            encap: encap.then_some(UdpEncap { local_port: 4500, remote_port: 4500 }),
        }
    }

    /// Simulates sealing `len` bytes at the end of the batch, as `seal_one` does.
    fn add(tx: &mut TxBatch, to: SaEndpoints, len: usize, gso: bool) -> bool {
        let fits = tx.fits(&to, len, gso);
        if !fits {
            tx.clear();
        }
        tx.push(to, len);
        fits
    }

    #[test]
    fn udp_gso_batches_equal_sizes_and_a_shorter_last() {
        let a = ep(2, true);
        let mut tx = TxBatch::new();
        assert!(add(&mut tx, a, 1436, true));
        assert!(add(&mut tx, a, 1436, true));
        assert!(add(&mut tx, a, 500, true), "a shorter last datagram may join");
        assert!(!add(&mut tx, a, 500, true), "nothing may follow the shorter one");
        assert!(!add(&mut tx, a, 600, true), "a longer one starts a new batch");
        assert!(!add(&mut tx, ep(3, true), 600, true), "another peer starts a new batch");
        // Without GSO, ESP-in-UDP and raw ESP batch any sizes to one peer.
        let mut tx = TxBatch::new();
        for len in [100, 1436, 60] {
            assert!(add(&mut tx, a, len, false));
        }
        let r = ep(2, false);
        assert!(!add(&mut tx, r, 100, true), "raw and UDP to one host differ");
        assert!(add(&mut tx, r, 1436, true));
        assert_eq!(tx.packets().map(<[u8]>::len).collect::<Vec<_>>(), vec![100, 1436]);
    }

    #[test]
    fn batches_are_bounded() {
        let a = ep(2, true);
        let mut tx = TxBatch::new();
        let mut batches = 1;
        for _ in 0..200 {
            if !add(&mut tx, a, 1436, true) {
                batches += 1;
            }
            assert!(tx.used <= batch::MAX_GSO_BYTES && tx.count <= batch::MAX_MMSG);
        }
        // 45 datagrams of 1436 bytes fit in one UDP GSO send (64 KiB).
        assert_eq!(batches, 200usize.div_ceil(45));
        let r = ep(2, false);
        let mut tx = TxBatch::new();
        let mut batches = 1;
        for _ in 0..200 {
            if !add(&mut tx, r, 100, true) {
                batches += 1;
            }
        }
        assert_eq!(batches, 200usize.div_ceil(batch::MAX_MMSG));
    }
}
