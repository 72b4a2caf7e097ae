//! The endpoint's IKEv1 SAs: routing by cookie, admission of Main Mode message 1,
//! timers, commands, and the work an ISAKMP SA hands back (moving IPsec SA pairs to a
//! newer ISAKMP SA of the tunnel, re-authentication).
//!
//! IKEv1 has no COOKIE exchange: an unauthenticated message 1 costs a proposal choice
//! and one small responder SA (its SA payload, at most the datagram) and nothing more;
//! the key exchange waits for message 3, which only a sender that received our message
//! 2 (with our cookie) can send. Message 1 is admitted under the same half-open caps as
//! IKE_SA_INIT (per source and in total, with IKEv2's half-open SAs counted too); above them it
//! is dropped and counted, and the initiator retransmits.

use super::Endpoint;
use crate::api::{EncapReason, IkeSaStatus, IkeVersion};
use crate::down::{DownReason, Failure};
use crate::log::warn_unauth;
use crate::v1::message::{exchange, Header};
use crate::v1::sa::{V1Action, V1Sa};
use ipsec_types::{Direction, Spi, Timestamp};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// How long a peer-initiated re-authentication leaves the old ISAKMP SA for the peer to
/// delete before we do.
const REPLACED_WAIT: Duration = Duration::from_secs(30);

/// The IKEv1 SAs, with indexes by our cookie and by (source, initiator cookie) for
/// retransmitted first messages.
#[derive(Default)]
pub(super) struct V1Set {
    sas: Vec<V1Sa>,
    by_ours: HashMap<u64, usize>,
    by_init: HashMap<(IpAddr, u64), usize>,
}

impl V1Set {
    fn reindex(&mut self) {
        self.by_ours.clear();
        self.by_init.clear();
        for (i, sa) in self.sas.iter().enumerate() {
            self.by_ours.insert(sa.ours(), i);
            if !sa.initiator {
                self.by_init.insert((sa.remote.ip(), sa.cookies().0), i);
            }
        }
    }

    fn push(&mut self, sa: V1Sa) -> bool {
        if self.by_ours.contains_key(&sa.ours()) {
            return false;
        }
        let i = self.sas.len();
        self.by_ours.insert(sa.ours(), i);
        if !sa.initiator {
            self.by_init.insert((sa.remote.ip(), sa.cookies().0), i);
        }
        self.sas.push(sa);
        true
    }

    fn remove(&mut self, i: usize) -> Option<V1Sa> {
        if i >= self.sas.len() {
            return None;
        }
        let sa = self.sas.remove(i);
        self.reindex();
        Some(sa)
    }

    pub(super) fn half_open_from(&self, ip: IpAddr) -> usize {
        self.sas.iter().filter(|s| s.half_open() && s.remote.ip() == ip).count()
    }

    pub(super) fn half_open_total(&self) -> usize {
        self.sas.iter().filter(|s| s.half_open()).count()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.sas.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.sas.len()
    }

    pub(super) fn next_deadline(&self) -> Option<Timestamp> {
        self.sas.iter().filter_map(V1Sa::poll_timeout).min()
    }

    /// Finds the SA a message with header `h` belongs to.
    fn route(&self, h: &Header) -> Option<usize> {
        let mine_i = self.by_ours.get(&h.cky_i).copied().filter(|&i| {
            self.sas.get(i).is_some_and(|s| {
                let (ci, cr) = s.cookies();
                s.initiator && ci == h.cky_i && (cr == h.cky_r || cr == 0 || h.cky_r == 0)
            })
        });
        mine_i.or_else(|| {
            self.by_ours
                .get(&h.cky_r)
                .copied()
                .filter(|&i| self.sas.get(i).is_some_and(|s| !s.initiator && s.cookies() == (h.cky_i, h.cky_r)))
        })
    }
}

impl Endpoint {
    /// An IKEv1 datagram (version 1.x in the ISAKMP header).
    pub(super) fn v1_datagram(&mut self, now: Timestamp, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        let h = match Header::parse(data) {
            Ok(h) => h,
            Err(e) => {
                self.shared.drops.malformed += 1;
                tracing::debug!(from = %remote, error = %e, "unparsable IKEv1 datagram dropped");
                return;
            }
        };
        if matches!(h.exchange, exchange::MAIN | exchange::AGGRESSIVE) && h.cky_r == 0 {
            match self.v1.by_init.get(&(remote.ip(), h.cky_i)).copied() {
                Some(i) => self.run_v1(now, i, |sa, ctx| sa.handle_message(ctx, local, remote, data)),
                None => self.v1_responder(now, local, remote, data),
            }
            return;
        }
        match self.v1.route(&h) {
            Some(i) => self.run_v1(now, i, |sa, ctx| sa.handle_message(ctx, local, remote, data)),
            None => {
                self.shared.drops.unknown_spi += 1;
                tracing::debug!(from = %remote, "IKEv1 message for unknown cookies dropped");
            }
        }
    }

    /// Main Mode message 1 for a new ISAKMP SA: a configured IKEv1 peer at that address,
    /// within the half-open caps and the per-peer cap.
    fn v1_responder(&mut self, now: Timestamp, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        if self.shutting_down {
            return;
        }
        self.shared.now = now;
        let ip = remote.ip();
        let Some(&peer_idx) = self.peer_by_addr.get(&ip) else {
            self.shared.drops.unknown_spi += 1;
            tracing::debug!(from = %remote, "IKEv1 Main Mode from an address with no configured tunnel dropped");
            return;
        };
        let Some(slot) = self.peers.get(peer_idx) else { return };
        if slot.cfg.ike_version != IkeVersion::V1 {
            self.shared.drops.unknown_spi += 1;
            let name = &slot.cfg.name;
            warn_unauth!(
                self.shared,
                "tunnel {name}: IKEv1 Main Mode from {ip} dropped: the tunnel speaks IKEv2 (ike_version = 2)"
            );
            return;
        }
        let limits = self.shared.limits;
        let from = self.v1.half_open_from(ip) + self.sas.half_open_from(ip);
        let total = self.v1.half_open_total() + self.sas.half_open_total();
        if from >= limits.half_open_per_source || total >= limits.half_open_max {
            self.shared.drops.half_open_cap += 1;
            warn_unauth!(
                self.shared,
                "IKEv1 Main Mode from {ip} dropped: {from} half-open SAs from it, {total} in all (limits {} and {})",
                limits.half_open_per_source,
                limits.half_open_max
            );
            return;
        }
        let name = slot.cfg.name.clone();
        let held = self.v1.sas.iter().filter(|s| s.peer.name == name && !s.half_open()).count();
        if held >= limits.ike_sa_per_peer_max {
            self.shared.drops.half_open_cap += 1;
            warn_unauth!(self.shared, "tunnel {name}: IKEv1 Main Mode from {ip} dropped: the peer holds {held} ISAKMP SAs already (ike_sa_per_peer_max)");
            return;
        }
        let local = crate::sa::unspecified_to(local, slot.cfg.local_addr);
        let mut ctx = self.shared.ctx(now, 0);
        let Some(sa) = V1Sa::respond(&slot.cfg, &mut ctx, local, remote, data) else { return };
        if !self.v1.push(sa) {
            tracing::error!("IKEv1 responder SA dropped: cookie in use");
        }
    }

    /// Starts Main Mode with tunnel `peer_idx` unless one of ours is running or up.
    pub(super) fn start_v1_initiator(&mut self, now: Timestamp, peer_idx: usize, reauth: bool) {
        let Some(slot) = self.peers.get(peer_idx) else { return };
        let name = slot.cfg.name.clone();
        let mine = |s: &&V1Sa| s.peer.name == name && !s.dead && s.replaced_at.is_none();
        let connecting = self.v1.sas.iter().filter(mine).any(|s| s.initiator && !s.is_up());
        let up = self.v1.sas.iter().filter(mine).any(V1Sa::is_up);
        if self.shutting_down || connecting || (up && !reauth) {
            return;
        }
        let first_contact = !self.v1.sas.iter().any(|s| s.peer.name == name && s.established_at.is_some());
        let cfg = slot.cfg.clone();
        let mut ctx = self.shared.ctx(now, 0);
        let sa = V1Sa::initiate(cfg, &mut ctx, first_contact);
        if !self.v1.push(sa) {
            tracing::error!("IKEv1 initiation dropped: cookie in use");
        }
    }

    /// Runs `f` on v1 SA `idx`; removes it if it fails; then does what it asked.
    fn run_v1(
        &mut self,
        now: Timestamp,
        idx: usize,
        f: impl FnOnce(&mut V1Sa, &mut crate::sa::Ctx<'_>) -> Result<(), Failure>,
    ) {
        let Some(sa) = self.v1.sas.get_mut(idx) else { return };
        let mut ctx = self.shared.ctx(now, 0);
        let result = f(sa, &mut ctx);
        let actions = std::mem::take(&mut sa.actions);
        let name = sa.peer.name.clone();
        let ours = sa.ours();
        if let Err(failure) = result {
            // Deletes of pairs elsewhere that came with the Delete of this SA still count.
            for a in actions {
                if matches!(a, V1Action::PeerDeleted(_)) {
                    self.v1_action(now, &name, idx, a);
                }
            }
            self.v1_failed(now, idx, failure);
        } else {
            for a in actions {
                // An action may remove SAs before this one: find it again by its cookie.
                let Some(idx) = self.v1.by_ours.get(&ours).copied() else { break };
                self.v1_action(now, &name, idx, a);
            }
        }
    }

    /// SA `idx` failed: its pairs go to another established SA of the tunnel if there is
    /// one (IPsec SAs outlive the ISAKMP SA that made them), else out of the datapath.
    fn v1_failed(&mut self, now: Timestamp, idx: usize, failure: Failure) {
        let Some(sa) = self.v1.sas.get_mut(idx) else { return };
        let name = sa.peer.name.clone();
        let heir = self.v1.sas.iter().position(|s| s.peer.name == name && s.is_up() && s.replaced_at.is_none());
        let heir = heir.filter(|&h| h != idx);
        if let Some(h) = heir {
            let (pairs, retiring) = self.v1.sas.get_mut(idx).map(V1Sa::take_pairs).unwrap_or_default();
            if let Some(sa) = self.v1.sas.get_mut(h) {
                sa.adopt(pairs, retiring);
            }
        }
        let Some(mut sa) = self.v1.remove(idx) else { return };
        let mut ctx = self.shared.ctx(now, 0);
        let replaced = sa.replaced_at.is_some() || heir.is_some();
        if heir.is_some() {
            sa.replaced(now);
        }
        sa.teardown(&mut ctx, failure.reason());
        let established = sa.established_at.is_some();
        tracing::debug!(tunnel = %name, reason = failure.reason().to_string().as_str(), "IKEv1 SA removed");
        if !established && !sa.initiator {
            return;
        }
        tracing::warn!(tunnel = %name, "IKEv1 SA down: {}", failure.reason());
        self.retry_after(now, &name, replaced, established, sa.initiator, &failure);
    }

    fn v1_action(&mut self, now: Timestamp, name: &str, idx: usize, action: V1Action) {
        match action {
            V1Action::Established { initial_contact } => {
                if let Some(slot) = self.slot_mut(name) {
                    slot.failures = 0;
                }
                let ours = self.v1.sas.get(idx).map(V1Sa::ours);
                let we_initiated = self.v1.sas.get(idx).is_some_and(|s| s.initiator);
                let mut i = 0;
                while i < self.v1.sas.len() {
                    let other = self.v1.sas.get(i).is_some_and(|s| {
                        s.peer.name == name && Some(s.ours()) != ours && !s.dead && s.established_at.is_some()
                    });
                    if !other {
                        i += 1;
                        continue;
                    }
                    let mut ctx = self.shared.ctx(now, 0);
                    if initial_contact {
                        tracing::info!(tunnel = %name, "peer sent INITIAL-CONTACT: dropping the SAs it had with us");
                        if let Some(mut old) = self.v1.remove(i) {
                            old.replaced(now);
                            old.teardown(&mut ctx, DownReason::ReplacedByInitialContact);
                        }
                        continue;
                    }
                    let (pairs, retiring) = self.v1.sas.get_mut(i).map(V1Sa::take_pairs).unwrap_or_default();
                    let new_idx = self.v1.sas.iter().position(|s| Some(s.ours()) == ours);
                    if let Some(new) = new_idx.and_then(|n| self.v1.sas.get_mut(n)) {
                        new.adopt(pairs, retiring);
                    }
                    if let Some(old) = self.v1.sas.get_mut(i) {
                        if we_initiated {
                            // Our re-authentication: the old SA goes now.
                            old.replaced(now);
                            old.terminate(&mut ctx, DownReason::Deleted);
                        } else {
                            old.replaced(now + REPLACED_WAIT);
                        }
                    }
                    if self.v1.sas.get(i).is_some_and(|s| s.dead) {
                        self.v1.remove(i);
                        continue;
                    }
                    i += 1;
                }
                if let Some(n) = self.v1.sas.iter().position(|s| Some(s.ours()) == ours) {
                    let mut ctx = self.shared.ctx(now, 0);
                    if let Some(sa) = self.v1.sas.get_mut(n) {
                        sa.ensure_pairs(&mut ctx);
                    }
                }
            }
            V1Action::PeerDeleted(spis) => {
                let mut ctx = self.shared.ctx(now, 0);
                for sa in self.v1.sas.iter_mut().filter(|s| s.peer.name == name && !s.dead) {
                    for spi in &spis {
                        sa.peer_deleted(&mut ctx, *spi);
                    }
                }
            }
            V1Action::Reauthenticate => {
                if let Some(&p) = self.peer_by_name.get(name) {
                    self.start_v1_initiator(now, p, true);
                }
            }
        }
    }

    /// IKEv1 SAs whose timers are due.
    pub(super) fn v1_timeouts(&mut self, now: Timestamp) {
        let mut i = 0;
        while i < self.v1.sas.len() {
            let due = self.v1.sas.get(i).and_then(V1Sa::poll_timeout).is_some_and(|t| t <= now);
            let before = self.v1.sas.len();
            if due {
                self.run_v1(now, i, |sa, ctx| sa.handle_timeout(ctx));
            }
            if self.v1.sas.len() >= before {
                i += 1;
            }
        }
    }

    /// Operator commands for an IKEv1 tunnel.
    pub(super) fn v1_rekey(&mut self, now: Timestamp, peer: &str, ike: bool) {
        let Some(idx) = self.v1.sas.iter().position(|s| s.peer.name == peer && s.is_up() && s.replaced_at.is_none())
        else {
            tracing::warn!(tunnel = %peer, "rekey: no established IKEv1 SA for this tunnel");
            return;
        };
        if ike {
            if let Some(&p) = self.peer_by_name.get(peer) {
                self.start_v1_initiator(now, p, true);
            }
            return;
        }
        self.run_v1(now, idx, |sa, ctx| {
            sa.rekey_pairs(ctx);
            Ok(())
        });
    }

    /// Sends DELETE for the v1 SAs that `pred` selects and removes them.
    pub(super) fn v1_terminate_where(&mut self, now: Timestamp, reason: DownReason, pred: impl Fn(&V1Sa) -> bool) {
        let mut i = 0;
        while i < self.v1.sas.len() {
            if self.v1.sas.get(i).is_some_and(&pred) {
                if let Some(mut sa) = self.v1.remove(i) {
                    let mut ctx = self.shared.ctx(now, 0);
                    tracing::info!(tunnel = %sa.name(), "terminating IKEv1 SA");
                    sa.terminate(&mut ctx, reason);
                }
            } else {
                i += 1;
            }
        }
    }

    /// ESP seen on inbound SPI `spi`: returns whether an IKEv1 pair has it.
    pub(super) fn v1_esp_activity(&mut self, now: Timestamp, spi: Spi) -> bool {
        let mut ctx = self.shared.ctx(now, 0);
        self.v1.sas.iter_mut().any(|sa| sa.esp_activity(&mut ctx, spi))
    }

    /// A volume limit of an IKEv1 pair (by the tunnel and SPI in `direction`).
    pub(super) fn v1_volume_expired(
        &mut self,
        now: Timestamp,
        tunnel: &str,
        spi: Spi,
        direction: Direction,
        hard: bool,
    ) -> bool {
        let Some(idx) = self.v1.sas.iter().position(|s| s.peer.name == tunnel && s.has_pair(spi, direction)) else {
            return false;
        };
        self.run_v1(now, idx, |sa, ctx| {
            sa.volume_expired(ctx, spi, direction, hard);
            Ok(())
        });
        true
    }

    pub(super) fn v1_status(&self) -> impl Iterator<Item = IkeSaStatus> + '_ {
        self.v1.sas.iter().map(|sa| {
            let (ci, cr) = sa.cookies();
            let p1 = sa.phase1();
            IkeSaStatus {
                tunnel: sa.peer.name.clone(),
                version: IkeVersion::V1,
                state: sa.state_name(),
                initiator: sa.initiator,
                spi_i: ci,
                spi_r: cr,
                local: sa.local,
                remote: sa.remote,
                local_id: sa.peer.local_id.clone(),
                remote_id: p1.map_or_else(|| sa.peer.remote_id.clone(), |p| p.peer_id.clone()),
                encr: p1.map(|p| p.algs.encr),
                integ: None,
                prf: p1.map(|p| p.algs.hash),
                dh: p1.map(|p| p.algs.dh),
                nat_detected: matches!(sa.encap_reason(), Some(EncapReason::Nat | EncapReason::Forced)),
                encap_reason: sa.encap_reason(),
                established_at: sa.established_at,
                last_heard: sa.heard(),
                next_rekey: sa.reauth_at,
                children: sa.pairs.iter().map(crate::v1::sa::Pair::status).collect(),
            }
        })
    }

    pub(super) fn v1_half_open(&self) -> usize {
        self.v1.half_open_total()
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{peer_config, Pair, Side, TestRng};
    use crate::v1::info::{isakmp_notify, notify, seal_informational};
    use crate::{Command, IkeVersion, PeerConfig, Transmit};
    use ipsec_types::{EspProposal, IkeProposal};
    use std::time::Duration;

    fn v1(mut p: PeerConfig) -> PeerConfig {
        p.ike_version = IkeVersion::V1;
        p.ike_proposals = vec![IkeProposal::parse("aes128-sha1-modp1024").expect("proposal")];
        p.esp_proposals = vec![EspProposal::parse("aes128-sha1-modp1024").expect("proposal")];
        p
    }

    /// An Informational with two INITIAL-CONTACT notifies, on A's established SA of
    /// the newest cookie, to B: the second notify must not take down the SA it came on
    /// once the first removed an older SA before it in B's list.
    #[test]
    fn repeated_initial_contact_keeps_the_sa_it_came_on() {
        let mut p = Pair::new(
            v1(peer_config("site-b", "192.0.2.1", "192.0.2.2", true, true)),
            v1(peer_config("site-a", "192.0.2.2", "192.0.2.1", false, false)),
        );
        p.run();
        p.advance(Duration::from_secs(1));
        // A re-authenticates; its Delete of the old ISAKMP SA is lost, so B holds the
        // old SA (replaced, first in its list) and the new one.
        p.command(Side::A, Command::Rekey { peer: "site-b".into(), ike: true });
        let mut lost = 0;
        for _ in 0..100 {
            p.drain();
            let Some((to, t)) = p.in_flight.front() else { break };
            if *to == Side::B && t.data.get(18) == Some(&crate::v1::message::exchange::INFORMATIONAL) {
                lost += 1;
                p.drop_next();
            } else {
                p.deliver_next();
            }
        }
        assert!(lost > 0);
        assert_eq!(p.b.v1.sas.len(), 2, "{:?}", p.b.status());
        let new_b = p.b.v1.sas.get(1).map(|s| s.ours()).expect("new SA");
        let a_sa = p.a.v1.sas.iter().find(|s| s.is_up() && s.cookies().1 == new_b).expect("A's new SA");
        let p1 = a_sa.phase1().expect("keys");
        let ic = || isakmp_notify(p1, notify::INITIAL_CONTACT, vec![]);
        let msg = seal_informational(p1, &mut TestRng::new(9), vec![ic(), ic()]).expect("sealed");
        let t = Transmit { local: a_sa.local, remote: a_sa.remote, data: msg };
        p.inject(Side::B, &t);
        let st = p.b.status();
        assert_eq!(st.len(), 1, "{st:?}");
        assert_eq!((st[0].spi_r, st[0].state), (new_b, "ESTABLISHED"), "{st:?}");
    }

    /// One Informational on the old ISAKMP SA deleting the pairs (which moved to the
    /// newer SA) and the old SA itself: both Deletes take effect.
    #[test]
    fn delete_of_moved_pairs_next_to_the_isakmp_delete_is_honoured() {
        use crate::v1::info::{delete_esp, delete_isakmp};
        let mut p = Pair::new(
            v1(peer_config("site-b", "192.0.2.1", "192.0.2.2", true, true)),
            v1(peer_config("site-a", "192.0.2.2", "192.0.2.1", false, false)),
        );
        p.run();
        p.advance(Duration::from_secs(1));
        p.command(Side::A, Command::Rekey { peer: "site-b".into(), ike: true });
        for _ in 0..100 {
            p.drain();
            let Some((to, t)) = p.in_flight.front() else { break };
            if *to == Side::B && t.data.get(18) == Some(&crate::v1::message::exchange::INFORMATIONAL) {
                p.drop_next();
            } else {
                p.deliver_next();
            }
        }
        assert_eq!(p.b.v1.sas.len(), 2, "{:?}", p.b.status());
        let old = p.b.v1.sas.first().expect("old SA");
        let spi_out = p.b.v1.sas.get(1).and_then(|s| s.pairs.first()).map(|x| x.spi_out).expect("moved pair");
        // The keys of an ISAKMP SA are the same on both sides: B's copy seals as A would.
        let p1 = old.phase1().expect("keys");
        let msg = seal_informational(p1, &mut TestRng::new(9), vec![delete_esp(&[spi_out.0]), delete_isakmp(p1)])
            .expect("sealed");
        let t = Transmit { local: old.remote, remote: old.local, data: msg };
        let mark = p.datapath(Side::B).len();
        p.inject(Side::B, &t);
        let st = p.b.status();
        assert_eq!(st.len(), 1, "{st:?}");
        assert!(st[0].children.iter().all(|c| c.spi_out != spi_out), "{st:?}");
        let removed = p.datapath(Side::B).into_iter().skip(mark).any(|c| {
            matches!(c, ipsec_types::DatapathCommand::Remove { spi, direction: ipsec_types::Direction::Outbound, .. } if spi == spi_out)
        });
        assert!(removed);
    }
}
