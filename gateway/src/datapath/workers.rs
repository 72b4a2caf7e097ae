//! Worker scheduling: which worker reads which source, when it serves the others', and
//! what it does with each packet it reads. A source is read only under its lock, by its
//! own worker or, when that one is asleep and its own source has run dry, by another
//! worker (`try_lock`, at most [`CROSS_BUDGET`] reads). Whoever holds a source's lock
//! sends everything it read before releasing it, so packets leave in the order they
//! arrived.
//!
//! A worker that has just sent what it read from TUN, and delivered nothing, is waiting
//! for an answer from the far side: it keeps doing rounds for up to
//! [`Levers::spin_us`] before it sleeps ([`Spin`]), so that the answer is opened by a
//! worker that is already running instead of waking the reader of the WAN socket.
//!
//! The workers are generic over the clock and both kinds of I/O ([`TunIo`], [`WanIo`]):
//! the daemon's instance is monomorphic, the unit tests run the same code on memory.

use super::io::{TunIo, WanIo};
use super::offload::{self, Gro, VnetHdr, VNET_HDR_LEN};
use super::send::{Sender, TxBatch};
use super::{IoCounters, SharedTable, BUF_LEN, MAX_READS_PER_SEND};
use crate::clock::Clock;
use crate::driver::ControlMsg;
use crate::switches::Levers;
use esp::{Opened, Udp4500};
use ipsec_types::Timestamp;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

/// Reads a worker may make from another worker's source in one go.
pub const CROSS_BUDGET: usize = 64;

/// Datagrams per `recvmmsg` on the raw ESP socket.
const RAW_BATCH: usize = 32;

/// What a worker reads from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
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

/// What one round moved: reads that brought something, by direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Moved {
    /// TUN reads (sealed and sent on the WAN).
    pub sealed: usize,
    /// WAN receives (opened and delivered to TUN, or IKE handed on).
    pub opened: usize,
}

impl Moved {
    /// Every read that brought something.
    pub fn total(self) -> usize {
        self.sealed + self.opened
    }
}

/// What a worker did in one [`Workers::step`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// A round moved packets.
    Moved(Moved),
    /// A round found nothing, but the worker is waiting for an answer: it goes on.
    Spun,
    /// A round found nothing: the worker slept until its own source was readable.
    Slept,
}

/// The busy-poll window of one worker. It opens when a round sealed packets and
/// delivered none, and the worker has delivered nothing since it last slept: what left
/// may be a request whose answer comes back within a round trip over the WAN (what a
/// worker seals right after delivering is more likely the answer to that). It closes when the answer, or anything else, has been delivered
/// to TUN by any worker (then a worker is awake on the WAN side anyway), or when it runs
/// out. An idle worker never spins: only a round that moved packets opens the window.
/// While it is open, the worker yields the core between rounds, so that a spinning
/// worker never delays a thread that has work (the next hop, the far gateway, the
/// application).
#[derive(Debug)]
pub struct Spin {
    window: Duration,
    until: Option<Instant>,
    /// The workers' delivery count when the window opened.
    seen: u64,
    /// This worker delivered something since it last slept.
    answering: bool,
}

impl Spin {
    /// A window of `window` (zero: never spins).
    pub fn new(window: Duration) -> Self {
        Self { window, until: None, seen: 0, answering: false }
    }

    /// After a round that moved `moved` at `now`, when the workers have delivered in
    /// `delivered` rounds so far: opens or closes the window.
    pub fn moved(&mut self, moved: Moved, delivered: u64, now: impl FnOnce() -> Instant) {
        if moved.opened > 0 {
            self.until = None;
            self.answering = true;
        } else if moved.sealed > 0 && !self.answering && !self.window.is_zero() {
            let now = now();
            self.until = Some(now.checked_add(self.window).unwrap_or(now));
            self.seen = delivered;
        }
    }

    /// After a round that found nothing at `now`, when the workers have delivered in
    /// `delivered` rounds so far: true to go on polling, false to sleep (the window is
    /// closed then).
    pub fn go_on(&mut self, delivered: u64, now: impl FnOnce() -> Instant) -> bool {
        match self.until {
            Some(until) if delivered == self.seen && now() < until => true,
            _ => {
                self.until = None;
                self.answering = false;
                false
            }
        }
    }
}

/// What every worker shares: the SA table, the I/O, the way to the control thread.
pub struct Shared<C, T, W> {
    /// The SA table.
    pub table: SharedTable,
    /// The TUN device.
    pub tun: Arc<T>,
    /// The WAN sockets.
    pub wan: Arc<W>,
    /// To the control thread.
    pub control: SyncSender<ControlMsg>,
    /// The clock.
    pub clock: Arc<C>,
    /// Error counters.
    pub io: Arc<IoCounters>,
}

/// The workers' view: the [`Shared`] parts plus what was decided at start.
pub struct Workers<C, T, W> {
    s: Shared<C, T, W>,
    levers: Levers,
    sender: Sender,
    /// Held by whoever is reading the source (and sending on what it read).
    /// One per TUN queue.
    tun_locks: Vec<Mutex<()>>,
    natt_lock: Mutex<()>,
    raw_lock: Mutex<()>,
    /// Non-blocking reads (then workers may serve each other's sources).
    cross: bool,
    /// The local address of UDP 4500 (for IKE messages handed to the control thread).
    natt_local: SocketAddr,
    /// Rounds (of any worker) that delivered something: closes the others' [`Spin`]s.
    delivered: AtomicU64,
}

impl<C, T, W> std::ops::Deref for Workers<C, T, W> {
    type Target = Shared<C, T, W>;
    fn deref(&self) -> &Shared<C, T, W> {
        &self.s
    }
}

/// A worker's reusable buffers, for every source it may serve (allocated once).
pub struct Bufs<R> {
    tun_rx: Vec<u8>,
    scratch: Vec<u8>,
    tx: TxBatch,
    /// TUN reads sealed into `tx` since it was last sent.
    reads: usize,
    wan_rx: Vec<u8>,
    out: Vec<u8>,
    gro: Gro,
    /// Allocated the first time the raw ESP socket is served.
    raw_rx: Option<R>,
    tun_errors: ErrorLog,
    natt_errors: ErrorLog,
    raw_errors: ErrorLog,
}

impl<R> Bufs<R> {
    fn errors(&mut self, src: Source) -> &mut ErrorLog {
        match src {
            Source::Tun(_) => &mut self.tun_errors,
            Source::Natt => &mut self.natt_errors,
            Source::Raw => &mut self.raw_errors,
        }
    }
}

/// Takes `lock`: waits for it if `own`, else only if nobody holds it.
fn take(lock: &Mutex<()>, own: bool) -> Option<MutexGuard<'_, ()>> {
    if own {
        return Some(lock.lock().unwrap_or_else(PoisonError::into_inner));
    }
    match lock.try_lock() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

impl<C: Clock + 'static, T: TunIo, W: WanIo> Workers<C, T, W> {
    /// The workers of `s` with `levers`; `cross` if reads are non-blocking (then workers
    /// may serve each other's sources).
    pub fn new(s: Shared<C, T, W>, levers: Levers, cross: bool) -> io::Result<Self> {
        let natt_local = s.wan.natt_local()?;
        let queues = s.tun.queues();
        Ok(Self {
            s,
            levers,
            sender: Sender::new(levers.udp_gso, levers.batch),
            tun_locks: (0..queues).map(|_| Mutex::new(())).collect(),
            natt_lock: Mutex::new(()),
            raw_lock: Mutex::new(()),
            cross,
            natt_local,
            delivered: AtomicU64::new(0),
        })
    }

    /// A worker's buffers.
    pub fn bufs(&self) -> Bufs<W::RawRx> {
        Bufs {
            tun_rx: vec![0; VNET_HDR_LEN + BUF_LEN],
            scratch: vec![0; BUF_LEN],
            tx: TxBatch::new(),
            reads: 0,
            wan_rx: vec![0; BUF_LEN],
            out: vec![0; BUF_LEN],
            gro: Gro::with_udp(self.levers.tun_udp_gro && self.tun.udp_gso_writes()),
            raw_rx: None,
            tun_errors: ErrorLog::new("TUN read"),
            natt_errors: ErrorLog::new("UDP 4500 receive"),
            raw_errors: ErrorLog::new("raw ESP receive"),
        }
    }

    /// A worker: serves its own source until it runs dry, then (if cross-serving) whatever
    /// the other sources hold and nobody is serving, and sleeps until its own source is
    /// readable once all are dry. Never returns.
    pub fn run(&self, own: Source) {
        let mut b = self.bufs();
        let mut spin = self.spin();
        loop {
            self.step(own, &mut b, &mut spin);
        }
    }

    /// A worker's busy-poll window: [`Levers::spin_us`] if reads are non-blocking.
    pub fn spin(&self) -> Spin {
        let us = if self.cross { self.levers.spin_us } else { 0 };
        Spin::new(Duration::from_micros(us.into()))
    }

    /// One round; if it found nothing and `spin` does not say go on, sleeps until `own`
    /// is readable (blocking reads sleep inside the round instead).
    pub fn step(&self, own: Source, b: &mut Bufs<W::RawRx>, spin: &mut Spin) -> Step {
        let moved = self.round(own, b);
        if moved.total() > 0 {
            spin.moved(moved, self.delivered(), Instant::now);
            return Step::Moved(moved);
        }
        if spin.go_on(self.delivered(), Instant::now) {
            std::thread::yield_now();
            return Step::Spun;
        }
        if self.cross {
            let slept = match own {
                Source::Tun(q) => self.tun.wait_readable(q),
                Source::Natt => self.wan.wait_natt(),
                Source::Raw => self.wan.wait_raw(),
            };
            if let Err(e) = slept {
                b.errors(own).record(&e);
            }
        }
        Step::Slept
    }

    /// One round of the worker of `own`: its own source, then (if cross-serving) the
    /// others that nobody is serving. Returns the reads that brought something.
    pub fn round(&self, own: Source, b: &mut Bufs<W::RawRx>) -> Moved {
        let mut moved = Moved::default();
        let mut count = |s: Source, n: usize| match s {
            Source::Tun(_) => moved.sealed += n,
            Source::Natt | Source::Raw => moved.opened += n,
        };
        count(own, self.serve(own, b, true));
        if self.cross && self.levers.cross_serve {
            for s in Source::all(self.tun.queues()) {
                if s != own {
                    count(s, self.serve(s, b, false));
                }
            }
        }
        if moved.opened > 0 {
            self.delivered.fetch_add(1, Ordering::Relaxed);
        }
        moved
    }

    /// Rounds (of any worker) that delivered something so far.
    fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// The lock of `src`, if it exists.
    pub fn lock_of(&self, src: Source) -> Option<&Mutex<()>> {
        match src {
            Source::Tun(q) => self.tun_locks.get(q),
            Source::Natt => Some(&self.natt_lock),
            Source::Raw => self.wan.has_raw().then_some(&self.raw_lock),
        }
    }

    /// Serves `src` under its lock (taken if `own`, tried otherwise; a source someone
    /// else is serving is skipped): reads until it would block, at most
    /// [`CROSS_BUDGET`] reads when not `own`; one blocking read without cross-serving.
    /// Everything read is sent on before the lock is released, so packets leave in the
    /// order they came. Returns the number of reads that brought something.
    fn serve(&self, src: Source, b: &mut Bufs<W::RawRx>, own: bool) -> usize {
        let Some(lock) = self.lock_of(src) else { return 0 };
        let Some(_guard) = take(lock, own) else { return 0 };
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
    fn tun_once(&self, q: usize, b: &mut Bufs<W::RawRx>) -> io::Result<()> {
        let n = self.tun.recv_queue(q, &mut b.tun_rx)?;
        let table = self.table.load();
        let now = self.clock.now();
        let gso = self.sender.udp_gso();
        let send = &mut |tx: &TxBatch| self.send(tx);
        let Bufs { tun_rx, scratch, tx, .. } = b;
        if self.tun.vnet_hdr() {
            if let (Some(hdr), Some(pkt)) = (VnetHdr::parse(tun_rx), tun_rx.get_mut(VNET_HDR_LEN..n)) {
                if hdr.gso_type != offload::GSO_NONE {
                    let r = offload::segment(&hdr, pkt, scratch, |seg| tx.seal(&table, now, seg, gso, send));
                    if r.is_err() {
                        IoCounters::inc(&self.io.tun_read_malformed);
                    }
                } else if hdr.flags & offload::F_NEEDS_CSUM != 0 && offload::complete_checksum(&hdr, pkt).is_err() {
                    IoCounters::inc(&self.io.tun_read_malformed);
                } else {
                    tx.seal(&table, now, pkt, gso, send);
                }
            }
        } else if let Some(pkt) = tun_rx.get(..n) {
            tx.seal(&table, now, pkt, gso, send);
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
    fn natt_once(&self, b: &mut Bufs<W::RawRx>) -> io::Result<()> {
        let (n, from, seg) = self.wan.recv_natt(&mut b.wan_rx, !self.cross)?;
        let Bufs { wan_rx, out, gro, .. } = b;
        // One table snapshot and one clock read for the run (up to 64 datagrams).
        let (table, now) = (self.table.load(), self.clock.now());
        for payload in wan_rx.get(..n).unwrap_or_default().chunks(seg.max(1)) {
            match esp::classify_udp4500(payload) {
                Udp4500::Esp(esp_pkt) => self.open_and_deliver(&table, now, esp_pkt, out, gro),
                Udp4500::Ike(msg) => self.to_control(self.natt_local, from, msg),
                // NAT keepalives only refresh NAT mappings; malformed are too short to count.
                Udp4500::Keepalive | Udp4500::Malformed => {}
            }
        }
        self.flush_gro(gro);
        Ok(())
    }

    /// One batch received on the raw ESP socket, each packet opened and written to TUN.
    fn raw_once(&self, b: &mut Bufs<W::RawRx>) -> io::Result<()> {
        let slots = if self.levers.batch { RAW_BATCH } else { 1 };
        let Bufs { raw_rx, out, gro, .. } = b;
        let rx = raw_rx.get_or_insert_with(|| self.wan.raw_rx(slots));
        // The snapshot is taken when the first packet is there, not before the receive:
        // with blocking reads (no cross-serving) it may wait long, while SAs change.
        let mut snap = None;
        self.wan.recv_raw(rx, !self.cross, |esp_pkt| {
            let (table, now) = snap.get_or_insert_with(|| (self.table.load(), self.clock.now()));
            self.open_and_deliver(table, *now, esp_pkt, out, gro);
        })?;
        self.flush_gro(gro);
        Ok(())
    }

    /// The UDP 500 reader: every datagram goes to the control thread. Never returns.
    pub fn ike_reader(&self) {
        let mut buf = vec![0u8; BUF_LEN];
        let mut errors = ErrorLog::new("UDP 500 receive");
        let Ok(local) = self.wan.ike_local() else { return };
        loop {
            match self.wan.recv_ike(&mut buf) {
                Ok((n, from)) => {
                    if let Some(msg) = buf.get(..n) {
                        self.to_control(local, from, msg);
                    }
                }
                Err(e) => errors.record(&e),
            }
        }
    }

    /// Sends the batch on the WAN, counting what was lost.
    fn send(&self, tx: &TxBatch) {
        let failed = self.sender.send(&*self.wan, tx);
        if failed > 0 {
            self.io.wan_send.fetch_add(failed, Ordering::Relaxed);
        }
    }

    /// Sends the batch and empties it.
    fn flush(&self, tx: &mut TxBatch) {
        tx.flush(&mut |tx: &TxBatch| self.send(tx));
    }

    /// Opens one ESP packet with `table` (the snapshot of the batch it came in) and
    /// delivers it to TUN (through the coalescer when TUN GRO is on).
    fn open_and_deliver(&self, table: &esp::SaTable, now: Timestamp, esp_pkt: &[u8], out: &mut [u8], gro: &mut Gro) {
        // Drops are counted inside esp.
        if let Opened::Deliver { packet, .. } = table.open(now, esp_pkt, out) {
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
#[path = "workers_tests.rs"]
mod tests;
