//! The endpoint's IKE SAs, with the indexes that keep the cost of a datagram
//! independent of how many SAs exist: lookup by our own SPI (every message after
//! IKE_SA_INIT carries it), by (source address, initiator SPI) for retransmitted
//! IKE_SA_INIT requests, half-open counts (global and per source address) and each SA's
//! next deadline.
//!
//! SAs stay in creation order (status lists them that way). Removing one rebuilds the
//! indexes (linear, and rare next to datagrams); everything a datagram needs is O(1)
//! apart from [`SaSet::next_deadline`], a scan of one timestamp per SA.
//!
//! Every mutable access marks the SA so its cached deadline and half-open state are
//! recomputed by [`SaSet::settle`], which the endpoint calls at the end of each input.

use crate::sa::IkeSa;
use ipsec_types::Timestamp;
use std::collections::HashMap;
use std::net::IpAddr;

/// What the set remembers of one SA besides the SA itself.
struct Meta {
    /// Our SPI (the one we chose): `spi_i` as initiator, `spi_r` as responder.
    ours: u64,
    /// Responder SAs: the source address and initiator SPI of the IKE_SA_INIT request.
    init_key: Option<(IpAddr, u64)>,
    /// Counted as half-open from this source address.
    half_open: Option<IpAddr>,
    /// The half-open SA was created from a request that carried a valid COOKIE (the
    /// source proved it receives our answers); unproved ones are evicted first.
    proved: bool,
    /// Cached `IkeSa::poll_timeout`.
    deadline: Option<Timestamp>,
}

/// A half-open responder SA: the peer has not authenticated yet.
fn is_half_open(sa: &IkeSa) -> bool {
    !sa.initiator && sa.state.is_authenticating()
}

fn ours(sa: &IkeSa) -> u64 {
    if sa.initiator {
        sa.spi_i
    } else {
        sa.spi_r
    }
}

#[derive(Default)]
pub(crate) struct SaSet {
    sas: Vec<IkeSa>,
    meta: Vec<Meta>,
    by_ours: HashMap<u64, usize>,
    by_init: HashMap<(IpAddr, u64), usize>,
    half_open_from: HashMap<IpAddr, usize>,
    half_open_total: usize,
    /// IKE SAs that are not half-open, per tunnel name (what a peer holds with us;
    /// half-open ones are anyone's and bounded per source address).
    per_peer: HashMap<String, usize>,
    /// Indexes handed out mutably since the last `settle`; `all_dirty` after `iter_mut`.
    dirty: Vec<usize>,
    all_dirty: bool,
}

impl SaSet {
    pub(crate) fn len(&self) -> usize {
        self.sas.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.sas.is_empty()
    }

    pub(crate) fn iter(&self) -> std::slice::Iter<'_, IkeSa> {
        self.sas.iter()
    }

    /// Mutable access to every SA: all are re-examined at the next `settle`.
    pub(crate) fn iter_mut(&mut self) -> std::slice::IterMut<'_, IkeSa> {
        self.all_dirty = true;
        self.sas.iter_mut()
    }

    pub(crate) fn get(&self, i: usize) -> Option<&IkeSa> {
        self.sas.get(i)
    }

    pub(crate) fn get_mut(&mut self, i: usize) -> Option<&mut IkeSa> {
        if i < self.sas.len() {
            self.dirty.push(i);
        }
        self.sas.get_mut(i)
    }

    pub(crate) fn position(&self, pred: impl FnMut(&IkeSa) -> bool) -> Option<usize> {
        self.sas.iter().position(pred)
    }

    /// True if our SPI `spi` is taken (a new SA must pick another).
    pub(crate) fn ours_taken(&self, spi: u64) -> bool {
        self.by_ours.contains_key(&spi)
    }

    /// Adds `sa` (its SPIs final). `proved`: a responder SA created from a request with
    /// a valid COOKIE. Returns `false` (and drops `sa`) if our SPI is already in use,
    /// which the callers prevent by drawing SPIs with `ours_taken`.
    pub(crate) fn push(&mut self, sa: IkeSa, proved: bool) -> bool {
        let our = ours(&sa);
        if self.by_ours.contains_key(&our) {
            return false;
        }
        let i = self.sas.len();
        let init_key = (!sa.initiator).then(|| (sa.remote.ip(), sa.spi_i));
        let half_open = is_half_open(&sa).then(|| sa.remote.ip());
        if let Some(ip) = half_open {
            *self.half_open_from.entry(ip).or_default() += 1;
            self.half_open_total += 1;
        }
        self.by_ours.insert(our, i);
        if half_open.is_none() {
            *self.per_peer.entry(sa.peer.name.clone()).or_default() += 1;
        }
        if let Some(k) = init_key {
            self.by_init.insert(k, i);
        }
        self.meta.push(Meta { ours: our, init_key, half_open, proved, deadline: sa.poll_timeout() });
        self.sas.push(sa);
        true
    }

    /// Removes and returns the SA at `i`.
    pub(crate) fn remove(&mut self, i: usize) -> IkeSa {
        let sa = self.sas.remove(i);
        let meta = self.meta.remove(i);
        if let Some(ip) = meta.half_open {
            self.uncount_half_open(ip);
        } else if let Some(n) = self.per_peer.get_mut(&sa.peer.name) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_peer.remove(&sa.peer.name);
            }
        }
        self.by_ours.clear();
        self.by_init.clear();
        for (j, m) in self.meta.iter().enumerate() {
            self.by_ours.insert(m.ours, j);
            if let Some(k) = m.init_key {
                self.by_init.insert(k, j);
            }
        }
        // Indexes after `i` moved down by one.
        self.dirty = std::mem::take(&mut self.dirty)
            .into_iter()
            .filter(|&d| d != i)
            .map(|d| if d > i { d - 1 } else { d })
            .collect();
        sa
    }

    fn uncount_half_open(&mut self, ip: IpAddr) {
        self.half_open_total = self.half_open_total.saturating_sub(1);
        if let Some(n) = self.half_open_from.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.half_open_from.remove(&ip);
            }
        }
    }

    /// Index of the SA whose own SPI is `spi`.
    pub(crate) fn by_ours(&self, spi: u64) -> Option<usize> {
        self.by_ours.get(&spi).copied()
    }

    /// Index of the responder SA created by the IKE_SA_INIT from `ip` with `spi_i`.
    pub(crate) fn by_init(&self, ip: IpAddr, spi_i: u64) -> Option<usize> {
        self.by_init.get(&(ip, spi_i)).copied()
    }

    /// IKE SAs of the tunnel `name` that are not half-open.
    pub(crate) fn peer_count(&self, name: &str) -> usize {
        self.per_peer.get(name).copied().unwrap_or(0)
    }

    pub(crate) fn half_open_total(&self) -> usize {
        self.half_open_total
    }

    pub(crate) fn half_open_from(&self, ip: IpAddr) -> usize {
        self.half_open_from.get(&ip).copied().unwrap_or(0)
    }

    /// The oldest half-open SA that was not proved by a COOKIE, from `ip` if given.
    pub(crate) fn oldest_unproved(&self, ip: Option<IpAddr>) -> Option<usize> {
        self.meta.iter().position(|m| !m.proved && m.half_open.is_some_and(|h| ip.is_none_or(|ip| ip == h)))
    }

    /// Recomputes what may have changed in the SAs handed out mutably since the last
    /// call (half-open state, cached deadline).
    pub(crate) fn settle(&mut self) {
        let dirty: Vec<usize> = if std::mem::take(&mut self.all_dirty) {
            self.dirty.clear();
            (0..self.sas.len()).collect()
        } else {
            let mut d = std::mem::take(&mut self.dirty);
            d.sort_unstable();
            d.dedup();
            d
        };
        for i in dirty {
            let (Some(sa), Some(m)) = (self.sas.get(i), self.meta.get_mut(i)) else { continue };
            m.deadline = sa.poll_timeout();
            if m.half_open.is_some() && !is_half_open(sa) {
                if let Some(ip) = m.half_open.take() {
                    let name = sa.peer.name.clone();
                    self.uncount_half_open(ip);
                    *self.per_peer.entry(name).or_default() += 1;
                }
            }
        }
    }

    /// The earliest cached deadline (exact after `settle`).
    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        self.meta.iter().filter_map(|m| m.deadline).min()
    }

    /// Indexes of SAs whose cached deadline is at or before `now`, last first (so that
    /// removing one does not shift the others).
    pub(crate) fn due(&self, now: Timestamp) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .meta
            .iter()
            .enumerate()
            .filter(|(_, m)| m.deadline.is_some_and(|t| t <= now))
            .map(|(i, _)| i)
            .collect();
        v.reverse();
        v
    }
}
