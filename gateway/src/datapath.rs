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
//! The parts:
//! - `workers`: scheduling. Cross-serving: a source is read only under its lock, by
//!   its own worker or, when that one is asleep and its own source has run dry, by
//!   another worker (`try_lock`, a bounded number of reads). A worker that has just
//!   written an echo request to TUN finds the reply already queued there (the kernel
//!   answers within the write) and seals it itself instead of waking `tun-rx`: one
//!   thread wake-up less per request/response round trip, and thread wake-ups are what
//!   a round trip through the gateway costs (see docs/performance.md). A worker that has
//!   just sent what it read from TUN polls for the answer for up to
//!   [`Levers::spin_us`](crate::switches::Levers::spin_us) before it sleeps (yielding
//!   the core between rounds): it opens the answer itself instead of waking the WAN
//!   reader. Whoever holds a source's lock sends everything it read before releasing
//!   it, so packets leave in the order they arrived.
//! - `send`: the send batch. `tun-rx` reads TUN non-blocking until it is empty (or
//!   [`MAX_READS_PER_SEND`]), sealing into one buffer, then sends what it sealed in one
//!   go: ESP-in-UDP as UDP GSO (`UDP_SEGMENT`, runs of equal-sized datagrams), raw ESP
//!   with `sendmmsg`.
//! - `io`: the TUN device and the WAN sockets behind two small traits, so the
//!   workers run on memory in unit tests; the daemon's workers are monomorphic over the
//!   real devices (no dynamic dispatch per packet).
//! - [`offload`]: TUN offloads (`sys::tun`): the kernel hands `tun-rx` TCP (and UDP)
//!   super-packets of up to 64 KiB, which are segmented here (each segment sealed with
//!   its own ESP sequence number), and the receive side coalesces in-order TCP
//!   segments (and runs of equal-sized UDP datagrams) into one GSO write to TUN.
//!
//! Receives are batched too: `natt-rx` with UDP_GRO (a run of datagrams per call),
//! `esp-rx` with `recvmmsg`.
//!
//! Each lever can be switched off by an environment variable for measurements
//! ([`crate::switches`], the one reader of the environment; see docs/performance.md).
//!
//! Each worker owns its reusable buffers: no allocation per ESP packet (IKE datagrams
//! are copied into a `Vec` for the channel; they are rare). Drops are counted by `esp`
//! (or in [`IoCounters`] for socket/TUN errors), never logged per packet.
//! This module does not change the SA table: only the control thread publishes new
//! snapshots into the shared [`SharedTable`].

use crate::clock::Clock;
use crate::control::proto::IoErrors;
use crate::driver::ControlMsg;
use crate::switches::Levers;
use crate::sys::batch;
use crate::sys::tun::Tun;
use crate::sys::udp::RawEsp;
use arc_swap::ArcSwap;
use io::SocketWan;
use std::net::UdpSocket;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::thread::JoinHandle;
use workers::{Shared, Source, Workers};

/// The SA table snapshot shared between the control thread and the workers.
pub type SharedTable = Arc<ArcSwap<esp::SaTable>>;

mod io;
#[cfg(test)]
mod mem;
pub mod offload;
mod send;
mod workers;

/// Largest datagram or packet handled (IPv4 maximum).
pub const BUF_LEN: usize = 65_536;

/// Most TUN reads sealed before the batch is sent.
pub const MAX_READS_PER_SEND: usize = 64;

/// Packets the TUN device queues for `tun-rx` (see [`Tun::set_tx_queue_len`]).
pub const TUN_TX_QUEUE: u32 = 5000;

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

/// What the workers share, on the daemon's devices.
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
    /// Which levers are on (`crate::switches`).
    pub levers: Levers,
}

/// Names of the workers of TUN queues 1.. (thread names must be `'static`).
const TUN_QUEUE_THREADS: [&str; crate::sys::tun::MAX_QUEUES] =
    ["tun-rx", "tun-rx-1", "tun-rx-2", "tun-rx-3", "tun-rx-4", "tun-rx-5", "tun-rx-6", "tun-rx-7"];

impl<C: Clock + 'static> Datapath<C> {
    /// Starts every worker thread. They run until the process exits.
    pub fn spawn(self) -> std::io::Result<Vec<JoinHandle<()>>> {
        let levers = self.levers;
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
            cross_serve = levers.cross_serve,
            spin_us = levers.spin_us,
            "datapath levers"
        );
        // Non-blocking TUN reads let one WAN send carry everything that queued up
        // meanwhile, and let workers look at each other's sources without blocking.
        let cross = levers.batch && self.tun.set_nonblocking().is_ok();
        let queues = self.tun.queues();
        if levers.udp_gso && batch::enable_udp_gro(self.natt.as_fd()).is_err() {
            tracing::debug!("UDP_GRO unavailable: one datagram per receive");
        }
        let shared = Shared {
            table: self.table,
            tun: self.tun,
            wan: Arc::new(SocketWan { ike: self.ike, natt: self.natt, raw: self.raw }),
            control: self.control,
            clock: self.clock,
            io: self.io,
        };
        let me = Arc::new(Workers::new(shared, levers, cross)?);
        let mut handles = Vec::new();
        let ctl = &me.control;
        let d = Arc::clone(&me);
        handles.push(spawn("tun-rx", ctl, move || d.run(Source::Tun(0)))?);
        for q in 1..queues {
            let d = Arc::clone(&me);
            handles.push(spawn(TUN_QUEUE_THREADS.get(q).copied().unwrap_or("tun-rx-n"), ctl, move || {
                d.run(Source::Tun(q))
            })?);
        }
        let d = Arc::clone(&me);
        handles.push(spawn("natt-rx", ctl, move || d.run(Source::Natt))?);
        let d = Arc::clone(&me);
        handles.push(spawn("ike-rx", ctl, move || d.ike_reader())?);
        if me.wan.raw.is_some() {
            let d = Arc::clone(&me);
            handles.push(spawn("esp-rx", ctl, move || d.run(Source::Raw))?);
        }
        Ok(handles)
    }
}

/// Starts a worker. A worker that panics (a bug) must not leave a daemon that looks
/// alive but moves no packets: the control thread is told to shut down with an error.
fn spawn(
    name: &'static str,
    control: &SyncSender<ControlMsg>,
    f: impl FnOnce() + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    let control = control.clone();
    std::thread::Builder::new().name(name.into()).spawn(move || {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
            let _ = control.send(ControlMsg::Fatal(format!("datapath thread {name} panicked")));
        }
    })
}
