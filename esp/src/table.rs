//! The SA table: an immutable snapshot built by applying `DatapathCommand`s, plus the
//! per-SA state that survives from one snapshot to the next.
//!
//! Owns: SA lookup structures (inbound by SPI, outbound by (tunnel, SPI) in selection
//! order), the SA cores (key, sequence counter, replay window, counters) shared by `Arc`
//! between snapshots, the global drop counters and the event queue. Does not own: the
//! packet transforms (see `tunnel`).

use crate::cipher::{EspCipher, Layout};
use crate::replay::SharedWindow;
use crate::select::OutIndex;
use crate::{ApplyError, GlobalDrops, SaCounters, SaStats};
use ipsec_types::{
    ChildRef, DatapathCommand, DatapathEvent, Direction, EspKey, SaEndpoints, SaParams, Spi, TrafficSelector,
    VolumeLimits,
};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use subtle::ConstantTimeEq;

/// Atomic counters of one SA, shared by every snapshot holding the SA.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) bytes: AtomicU64,
    pub(crate) packets: AtomicU64,
    pub(crate) replay: AtomicU64,
    pub(crate) auth_failed: AtomicU64,
    pub(crate) selector_mismatch: AtomicU64,
    pub(crate) expired: AtomicU64,
}

/// Drop counters not tied to an SA plus the event queue, shared by every table
/// derived from one [`SaTable::new`].
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) malformed: AtomicU64,
    pub(crate) unknown_spi: AtomicU64,
    pub(crate) no_sa: AtomicU64,
    pub(crate) events: Mutex<Vec<DatapathEvent>>,
}

impl Shared {
    pub(crate) fn push_event(&self, ev: DatapathEvent) {
        lock(&self.events).push(ev);
    }
}

/// Locks a mutex, ignoring poisoning (nothing panics while these locks are held).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What an SA keeps across snapshots.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) cipher: EspCipher,
    /// `cipher.layout()`, kept beside it for the hot path.
    pub(crate) layout: Layout,
    /// Kept (zeroized on drop) only to recognise a re-install of the same SA.
    key: EspKey,
    pub(crate) esn: bool,
    pub(crate) counters: Counters,
    /// Outbound: the next sequence number to use (starts at 1).
    pub(crate) next_seq: AtomicU64,
    /// Inbound: the anti-replay window.
    pub(crate) window: SharedWindow,
    /// Which volume-limit events were raised ([`RAISED_SOFT`], [`RAISED_HARD`]), so
    /// each is raised once per SA even across snapshots.
    pub(crate) raised: AtomicU8,
}

/// [`Core::raised`]: the soft volume event was raised.
pub(crate) const RAISED_SOFT: u8 = 1;
/// [`Core::raised`]: the hard volume event was raised.
pub(crate) const RAISED_HARD: u8 = 2;

impl Core {
    fn new(p: &SaParams, inbound: bool) -> Option<Self> {
        let cipher = EspCipher::new(&p.key)?;
        Some(Self {
            layout: cipher.layout(),
            cipher,
            key: p.key.clone(),
            esn: p.esn,
            counters: Counters::default(),
            next_seq: AtomicU64::new(1),
            window: SharedWindow::new(if inbound { p.replay_window } else { 0 }),
            raised: AtomicU8::new(0),
        })
    }

    /// Same algorithms, keys, salt and ESN mode: a re-install of the same SA, whose sequence
    /// counter and replay window must carry on (restarting either would reuse nonces
    /// or accept replays).
    fn same_sa(&self, p: &SaParams) -> bool {
        self.esn == p.esn
            && self.key.alg() == p.key.alg()
            && self.key.integ() == p.key.integ()
            && bool::from(self.key.key().ct_eq(p.key.key()))
            && bool::from(self.key.integ_key().ct_eq(p.key.integ_key()))
            && self.key.salt() == p.key.salt()
    }
}

/// One SA as seen by one snapshot.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) spi: Spi,
    pub(crate) child: ChildRef,
    pub(crate) endpoints: SaEndpoints,
    pub(crate) local_ts: Arc<[TrafficSelector]>,
    pub(crate) remote_ts: Arc<[TrafficSelector]>,
    /// Outbound only: still in the seal path (not superseded by a newer SA).
    pub(crate) active: bool,
    pub(crate) limits: Limits,
    pub(crate) core: Arc<Core>,
}

/// [`VolumeLimits`] in the form the hot path compares against: `u64::MAX` for "off"
/// (never reached), and at least 1 (a limit of 0 behaves as 1: the first packet
/// reaches it and raises the event).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) soft_bytes: u64,
    pub(crate) soft_packets: u64,
    pub(crate) hard_bytes: u64,
    pub(crate) hard_packets: u64,
}

impl From<&VolumeLimits> for Limits {
    fn from(v: &VolumeLimits) -> Self {
        let f = |l: Option<u64>| l.map_or(u64::MAX, |l| l.max(1));
        Self {
            soft_bytes: f(v.soft_bytes),
            soft_packets: f(v.soft_packets),
            hard_bytes: f(v.hard_bytes),
            hard_packets: f(v.hard_packets),
        }
    }
}

impl Entry {
    fn from_params(p: &SaParams, core: Arc<Core>) -> Self {
        Self {
            spi: p.spi,
            child: p.child.clone(),
            endpoints: p.endpoints,
            local_ts: p.local_ts.as_slice().into(),
            remote_ts: p.remote_ts.as_slice().into(),
            active: true,
            limits: Limits::from(&p.limits),
            core,
        }
    }
}

/// A cheap hasher for SPIs (chosen by us at random, so no flooding concern).
#[derive(Default)]
pub(crate) struct SpiHasher(u64);

impl Hasher for SpiHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.0 = u64::from(v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// An immutable snapshot of the SAs (RCU style): the control plane builds a new table
/// with [`SaTable::apply`] (sharing unchanged SAs and their counters) and publishes it.
#[derive(Clone, Debug, Default)]
pub struct SaTable {
    pub(crate) inbound: HashMap<u32, Entry, BuildHasherDefault<SpiHasher>>,
    /// By tunnel rank (see [`SaTable::with_ranks`]), then newest first; the first
    /// active entry whose selectors match seals the packet.
    pub(crate) outbound: Vec<Entry>,
    /// Outbound preference of tunnels (lower first; tunnels not listed are 0).
    pub(crate) ranks: Arc<HashMap<String, u32>>,
    /// Where to look in `outbound` for a destination address (rebuilt with every
    /// change of `outbound`).
    pub(crate) out_index: Arc<OutIndex>,
    pub(crate) shared: Arc<Shared>,
}

impl SaTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new table with `cmd` applied; SAs not touched keep their state and counters.
    ///
    /// Outbound SAs are named by (tunnel, SPI), the tunnel being `ChildRef::tunnel`:
    /// the peer of each tunnel picks its outbound SPIs, so two tunnels may share one and
    /// a command of one tunnel never touches another tunnel's SA. Inbound SAs are named
    /// by SPI alone (the SPI is all an ESP packet carries); an `InstallInbound` of an SPI
    /// that another tunnel holds is refused ([`ApplyError::InboundSpiInUse`]), and
    /// `Remove` / `UpdateEndpoints` of an inbound SPI act only if the tunnel matches.
    ///
    /// Installing an SA that already exists (same tunnel and SPI in that direction)
    /// replaces it; if the key is the same, the SA's sequence counter, replay window and
    /// counters carry over (the volume limits are the new ones, counted against the
    /// carried-over totals). `InstallOutbound` takes the older outbound SAs of the same
    /// tunnel with the same CHILD_SA or the same selectors out of the seal path (they
    /// stay for statistics until `Remove`). `Remove` and `UpdateEndpoints` of an SA that
    /// is not there change nothing.
    ///
    /// On error the table is unchanged (the caller keeps the snapshot it has).
    pub fn apply(&self, cmd: &DatapathCommand) -> Result<Self, ApplyError> {
        let mut t = self.clone();
        match cmd {
            DatapathCommand::InstallInbound(p) => {
                let old = match t.inbound.get(&p.spi.0) {
                    Some(e) if e.child.tunnel != p.child.tunnel => {
                        return Err(ApplyError::InboundSpiInUse {
                            spi: p.spi,
                            tunnel: p.child.tunnel.clone(),
                            owner: e.child.tunnel.clone(),
                        })
                    }
                    e => e.map(|e| e.core.clone()),
                };
                let core = reuse_or_new(old, p, true)?;
                t.inbound.insert(p.spi.0, Entry::from_params(p, core));
            }
            DatapathCommand::InstallOutbound(p) => {
                let tunnel = &p.child.tunnel;
                let old_pos = t.outbound.iter().position(|e| e.child.tunnel == *tunnel && e.spi == p.spi);
                let old = old_pos.map(|i| t.outbound.remove(i).core);
                let core = reuse_or_new(old, p, false)?;
                for e in t.outbound.iter_mut().filter(|e| e.child.tunnel == *tunnel) {
                    if e.child == p.child
                        || (*e.local_ts == *p.local_ts.as_slice() && *e.remote_ts == *p.remote_ts.as_slice())
                    {
                        e.active = false;
                    }
                }
                let rank = t.rank(tunnel);
                let at = t.outbound.iter().position(|e| t.rank(&e.child.tunnel) >= rank).unwrap_or(t.outbound.len());
                t.outbound.insert(at, Entry::from_params(p, core));
                t.out_index = Arc::new(OutIndex::build(&t.outbound));
            }
            DatapathCommand::Remove { tunnel, spi, direction } => match direction {
                Direction::Inbound => {
                    if t.inbound.get(&spi.0).is_some_and(|e| e.child.tunnel == *tunnel) {
                        t.inbound.remove(&spi.0);
                    }
                }
                Direction::Outbound => {
                    let before = t.outbound.len();
                    t.outbound.retain(|e| !(e.child.tunnel == *tunnel && e.spi == *spi));
                    if t.outbound.len() != before {
                        t.out_index = Arc::new(OutIndex::build(&t.outbound));
                    }
                }
            },
            DatapathCommand::UpdateEndpoints { tunnel, spi, direction, endpoints } => match direction {
                Direction::Inbound => {
                    if let Some(e) = t.inbound.get_mut(&spi.0).filter(|e| e.child.tunnel == *tunnel) {
                        e.endpoints = *endpoints;
                    }
                }
                Direction::Outbound => {
                    for e in t.outbound.iter_mut().filter(|e| e.child.tunnel == *tunnel && e.spi == *spi) {
                        e.endpoints = *endpoints;
                    }
                }
            },
        }
        Ok(t)
    }

    /// The outbound preference of `tunnel` (0 unless [`SaTable::with_ranks`] set one).
    fn rank(&self, tunnel: &str) -> u32 {
        rank_in(&self.ranks, tunnel)
    }

    /// A new table in which the outbound SAs of lower-ranked tunnels come first: where
    /// the selectors of two tunnels' SAs cover the same packet, the lower rank seals it,
    /// and the other tunnel's SAs take over at once when it has none left (active/standby
    /// tunnels protecting the same subnets). Tunnels not in `ranks` are 0; within one
    /// rank the newest SA comes first, as without ranks.
    pub fn with_ranks(&self, ranks: HashMap<String, u32>) -> Self {
        let mut t = self.clone();
        t.ranks = Arc::new(ranks);
        let ranks = Arc::clone(&t.ranks);
        t.outbound.sort_by_key(|e| rank_in(&ranks, &e.child.tunnel));
        t.out_index = Arc::new(OutIndex::build(&t.outbound));
        t
    }

    /// Whether `tunnel` has an outbound SA in the seal path.
    pub fn has_outbound(&self, tunnel: &str) -> bool {
        self.outbound.iter().any(|e| e.active && e.child.tunnel == tunnel)
    }

    /// Per-SA counters: inbound SAs (by SPI), then outbound SAs (in selection order).
    pub fn stats(&self) -> Vec<SaStats> {
        let mut inbound: Vec<&Entry> = self.inbound.values().collect();
        inbound.sort_by_key(|e| e.spi);
        let ins = inbound.into_iter().map(|e| stats_of(e, Direction::Inbound, e.core.window.top()));
        let outs = self.outbound.iter().map(|e| {
            let limit = seq_limit(e.core.esn);
            let sent = e.core.next_seq.load(Relaxed).saturating_sub(1).min(limit);
            stats_of(e, Direction::Outbound, sent)
        });
        ins.chain(outs).collect()
    }

    /// Drops not tied to an SA (shared across snapshots).
    pub fn global_drops(&self) -> GlobalDrops {
        GlobalDrops {
            malformed: self.shared.malformed.load(Relaxed),
            unknown_spi: self.shared.unknown_spi.load(Relaxed),
            no_sa: self.shared.no_sa.load(Relaxed),
        }
    }

    /// Volume-limit events raised since the last call (shared across snapshots).
    pub fn drain_events(&self) -> Vec<DatapathEvent> {
        std::mem::take(&mut *lock(&self.shared.events))
    }
}

/// `tunnel`'s rank in `ranks` (0 if not listed).
fn rank_in(ranks: &HashMap<String, u32>, tunnel: &str) -> u32 {
    ranks.get(tunnel).copied().unwrap_or(0)
}

fn reuse_or_new(old: Option<Arc<Core>>, p: &SaParams, inbound: bool) -> Result<Arc<Core>, ApplyError> {
    match old {
        Some(core) if core.same_sa(p) => Ok(core),
        _ => Core::new(p, inbound).map(Arc::new).ok_or_else(|| ApplyError::BadKey {
            tunnel: p.child.tunnel.clone(),
            spi: p.spi,
            direction: p.direction,
        }),
    }
}

fn stats_of(e: &Entry, direction: Direction, seq: u64) -> SaStats {
    let c = &e.core.counters;
    SaStats {
        spi: e.spi,
        direction,
        child: e.child.clone(),
        counters: SaCounters {
            bytes: c.bytes.load(Relaxed),
            packets: c.packets.load(Relaxed),
            replay: c.replay.load(Relaxed),
            auth_failed: c.auth_failed.load(Relaxed),
            selector_mismatch: c.selector_mismatch.load(Relaxed),
            expired: c.expired.load(Relaxed),
            seq,
        },
        active: e.active,
    }
}

/// The last outbound sequence number an SA may use: 2^32 - 1 without ESN (RFC 4303
/// section 3.3.3: the counter must not cycle); with ESN 2^64 - 2^32, leaving headroom
/// so that refused attempts can never wrap the `AtomicU64` (see `tunnel`).
pub(crate) const fn seq_limit(esn: bool) -> u64 {
    if esn {
        u64::MAX - u32::MAX as u64
    } else {
        u32::MAX as u64
    }
}

/// The sequence number at which a soft expiry asks for a rekey: 2^32 - 2^30 without
/// ESN, 2^64 - 2^62 with ESN.
pub(crate) const fn seq_soft(esn: bool) -> u64 {
    if esn {
        u64::MAX - (1u64 << 62) + 1
    } else {
        (1u64 << 32) - (1u64 << 30)
    }
}
