//! Peers that lost their state (RFC 7296 2.21.4): answering requests for IKE SAs we do
//! not know with INVALID_IKE_SPI, and bringing up a new IKE SA next to one whose peer
//! answered INVALID_IKE_SPI (the old one is replaced once the new one is up).
//!
//! A liveness check that stays unanswered for [`RESTART_PROBE_AFTER`] also brings up a new
//! IKE SA next to the old one: a peer that restarted without telling us (strongSwan 5.9
//! ignores requests for IKE SAs it does not know) answers a fresh IKE_SA_INIT at once,
//! so traffic flows again a few seconds after `dpd_delay` instead of after `dpd_timeout`.
//! If the old peer was only slow, the new IKE SA replaces it make-before-break.
//!
//! INITIAL_CONTACT (the other sign of a restarted peer), seen where IKE_AUTH completes
//! (`Endpoint::run`), makes `drop_stale` forget the older IKE SAs with that peer.

use super::Endpoint;
use crate::api::{Output, Transmit};
use crate::down::DownReason;
use crate::message::payload::Notify;
use crate::message::{emit_plain, exchange, flags, Header, Message, Payload};
use crate::notify;
use crate::sa::IkeState;
use crate::task::ActiveTask;
use ipsec_types::DpdAction;
use ipsec_types::Timestamp;
use std::net::SocketAddr;
use std::time::Duration;

/// How long a liveness check may go unanswered before a new IKE SA is tried in parallel
/// (the check itself keeps going until `dpd_timeout`).
pub(crate) const RESTART_PROBE_AFTER: Duration = Duration::from_secs(3);

impl Endpoint {
    /// Established IKE SAs whose liveness check went unanswered for
    /// [`RESTART_PROBE_AFTER`]: bring up a new IKE SA next to each (tunnels with
    /// `dpd_action = restart`; `clear` only ever waits for `dpd_timeout`).
    pub(super) fn probe_silent_peers(&mut self, now: Timestamp) {
        // A request unanswered for RESTART_PROBE_AFTER: a liveness check, or any request
        // the peer (or someone in its name: unauthenticated) answered INVALID_IKE_SPI.
        let sas = &self.sas;
        self.invalid_spi_hints.retain(|ours, _| sas.by_ours(*ours).is_some());
        let hints = &self.invalid_spi_hints;
        let probing = |sa: &crate::sa::IkeSa| {
            let ours = if sa.initiator { sa.spi_i } else { sa.spi_r };
            sa.state.is_established()
                && !sa.state.stale()
                && sa.tasks.outstanding.as_ref().is_some_and(|o| {
                    o.sent_at + RESTART_PROBE_AFTER <= now
                        && (matches!(o.task, ActiveTask::Liveness) || hints.get(&ours) == Some(&o.mid))
                })
        };
        let candidates: Vec<usize> = (0..self.sas.len()).filter(|&i| self.sas.get(i).is_some_and(probing)).collect();
        for i in candidates {
            let Some((name, ours)) =
                self.sas.get(i).map(|sa| (sa.peer.name.clone(), if sa.initiator { sa.spi_i } else { sa.spi_r }))
            else {
                continue;
            };
            let hinted = self.invalid_spi_hints.remove(&ours).is_some();
            let go = self
                .slot_mut(&name)
                .is_some_and(|slot| slot.cfg.dpd.action == DpdAction::Restart || (hinted && slot.wanted));
            if !go {
                continue;
            }
            let Some(sa) = self.sas.get_mut(i) else { continue };
            if let IkeState::Established { stale, .. } = &mut sa.state {
                *stale = true;
            }
            let remote = sa.remote.ip();
            let Some(slot) = self.slot_mut(&name) else { continue };
            slot.wanted = true;
            slot.retry_at = Some(now);
            let why =
                if hinted { "answered INVALID_IKE_SPI and then nothing" } else { "not answered a liveness check" };
            tracing::warn!(
                tunnel = %slot.cfg.name,
                "peer {remote} has {why} for {}s: trying a new IKE SA next to the old one (it may have restarted)",
                RESTART_PROBE_AFTER.as_secs()
            );
        }
    }

    /// A message for an IKE SA we do not know (RFC 7296 2.21.4). A request from a
    /// configured peer is answered, at most once a second per peer, with an unprotected
    /// INVALID_IKE_SPI notify: the peer learns that we lost that IKE SA (we restarted).
    pub(super) fn unknown_spi(&mut self, now: Timestamp, local: SocketAddr, remote: SocketAddr, msg: &Message) {
        let h = msg.header;
        self.shared.drops.unknown_spi += 1;
        let Some(slot) = self.peer_by_addr.get(&remote.ip()).and_then(|&i| self.peers.get_mut(i)) else {
            tracing::debug!(from = %remote, "message for unknown IKE SA dropped");
            return;
        };
        if h.is_response() || (msg.sk.is_none() && msg.skf.is_none()) {
            tracing::debug!(from = %remote, "message for unknown IKE SA dropped");
            return;
        }
        if slot.invalid_spi_at.is_some_and(|t| now < t + Duration::from_secs(1)) {
            self.shared.drops.rate_limited += 1;
            tracing::debug!(from = %remote, "message for unknown IKE SA dropped (INVALID_IKE_SPI answered within the last second)");
            return;
        }
        slot.invalid_spi_at = Some(now);
        tracing::info!(tunnel = %slot.cfg.name, "peer {} uses an IKE SA we do not know; answering INVALID_IKE_SPI", remote.ip());
        let local = crate::sa::unspecified_to(local, slot.cfg.local_addr);
        let flags = flags::RESPONSE | if h.sent_by_initiator() { 0 } else { flags::INITIATOR };
        let header = Header { exchange: exchange::INFORMATIONAL, flags, next_payload: 0, length: 0, ..h };
        let n = Notify::new(notify::INVALID_IKE_SPI, vec![]);
        let data = emit_plain(header, &[Payload::Notify(n)]);
        self.shared.out.push_back(Output::Transmit(Transmit { local, remote, data }));
    }

    /// An unprotected INFORMATIONAL response: INVALID_IKE_SPI for our outstanding request
    /// means the peer probably restarted. Unauthenticated, so it only makes us bring up a
    /// new IKE SA next to the old one (which is replaced once the new one is up).
    pub(super) fn invalid_spi_answer(&mut self, remote: SocketAddr, msg: &Message) {
        let h = msg.header;
        let invalid = crate::task::notifies(&msg.payloads).any(|n| n.kind == notify::INVALID_IKE_SPI);
        // The answer to our request: our SPI is the initiator's if the peer answers as
        // responder, the responder's otherwise.
        let ours = if h.sent_by_initiator() { h.spi_r } else { h.spi_i };
        let idx = self.sas.by_ours(ours).filter(|&i| {
            self.sas.get(i).is_some_and(|s| {
                (s.spi_i, s.spi_r) == (h.spi_i, h.spi_r)
                    && s.remote.ip() == remote.ip()
                    && s.state.is_established()
                    && s.tasks.outstanding.as_ref().is_some_and(|o| o.mid == h.message_id)
            })
        });
        let Some(sa) = idx.and_then(|i| self.sas.get_mut(i)) else {
            self.shared.drops.unknown_spi += 1;
            return;
        };
        if !invalid || sa.state.stale() {
            return;
        }
        // Unauthenticated: the IKE SA is left alone. If our request then stays unanswered
        // for RESTART_PROBE_AFTER, a new IKE SA is brought up next to it (`probe_silent_peers`);
        // a live peer's real answer makes the hint moot.
        let name = sa.peer.name.clone();
        tracing::info!(tunnel = %name, "peer {} answered INVALID_IKE_SPI (unprotected): if it stays silent for {}s, a new IKE SA is brought up", remote.ip(), RESTART_PROBE_AFTER.as_secs());
        self.invalid_spi_hints.insert(ours, h.message_id);
    }

    /// INITIAL_CONTACT (RFC 7296 2.4): the peer lost its state; forget our other
    /// established IKE SAs with it, without sending DELETE.
    pub(super) fn drop_stale(&mut self, now: Timestamp, name: &str, spi_i: u64, spi_r: u64) {
        let mut i = 0;
        while i < self.sas.len() {
            let stale = self.sas.get(i).is_some_and(|s| {
                s.peer.name == name && (s.spi_i, s.spi_r) != (spi_i, spi_r) && s.state.is_established()
            });
            if !stale {
                i += 1;
                continue;
            }
            let mut sa = self.sas.remove(i);
            tracing::info!(tunnel = %name, "peer sent INITIAL_CONTACT; dropping the older IKE SA {:016x}_i", sa.spi_i);
            let mut ctx = self.shared.ctx(now, 0);
            sa.teardown(&mut ctx, DownReason::ReplacedByInitialContact);
        }
    }
}
