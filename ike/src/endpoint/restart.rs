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
//! INITIAL_CONTACT (the other sign of a restarted peer) is handled where IKE_AUTH
//! completes (`Endpoint::run`).

use super::{DpdAction, Endpoint, Output, Transmit};
use crate::error::notify;
use crate::message::payload::Notify;
use crate::message::{emit_plain, exchange, flags, Header, Message, Payload};
use crate::sa::IkeState;
use crate::task::ActiveTask;
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
        for sa in &mut self.sas {
            let probing =
                sa.state == IkeState::Established
                    && !sa.stale
                    && sa.tasks.outstanding.as_ref().is_some_and(|o| {
                        matches!(o.task, ActiveTask::Liveness) && o.sent_at + RESTART_PROBE_AFTER <= now
                    });
            if !probing {
                continue;
            }
            let Some(slot) = self.peers.iter_mut().find(|p| p.cfg.name == sa.peer.name) else { continue };
            if slot.cfg.dpd_action != DpdAction::Restart {
                continue;
            }
            sa.stale = true;
            slot.wanted = true;
            slot.retry_at = Some(now);
            tracing::warn!(
                tunnel = %slot.cfg.name,
                "peer {} has not answered a liveness check for {}s: trying a new IKE SA next to the old one (it may have restarted)",
                sa.remote.ip(),
                RESTART_PROBE_AFTER.as_secs()
            );
        }
    }

    /// A message for an IKE SA we do not know (RFC 7296 2.21.4). A request from a
    /// configured peer is answered, at most once a second per peer, with an unprotected
    /// INVALID_IKE_SPI notify: the peer learns that we lost that IKE SA (we restarted).
    pub(super) fn unknown_spi(&mut self, now: Timestamp, local: SocketAddr, remote: SocketAddr, msg: &Message) {
        let h = msg.header;
        let Some(slot) = self.peers.iter_mut().find(|p| p.cfg.remote_addr == remote.ip()) else {
            tracing::debug!(from = %remote, "message for unknown IKE SA dropped");
            return;
        };
        if h.is_response() || msg.sk.is_none() || slot.invalid_spi_at.is_some_and(|t| now < t + Duration::from_secs(1))
        {
            tracing::debug!(from = %remote, "message for unknown IKE SA dropped");
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
    pub(super) fn invalid_spi_answer(&mut self, now: Timestamp, remote: SocketAddr, msg: &Message) {
        let h = msg.header;
        let invalid = crate::task::notifies(&msg.payloads).any(|n| n.kind == notify::INVALID_IKE_SPI);
        let Some(sa) = self.sas.iter_mut().find(|s| {
            (s.spi_i, s.spi_r) == (h.spi_i, h.spi_r)
                && s.remote.ip() == remote.ip()
                && s.state == IkeState::Established
                && s.tasks.outstanding.as_ref().is_some_and(|o| o.mid == h.message_id)
        }) else {
            return;
        };
        if !invalid || sa.stale {
            return;
        }
        sa.stale = true;
        let name = sa.peer.name.clone();
        let Some(slot) = self.peers.iter_mut().find(|p| p.cfg.name == name) else { return };
        tracing::warn!(tunnel = %name, "peer {} answered INVALID_IKE_SPI: it probably restarted; bringing up a new IKE SA", remote.ip());
        if slot.wanted || slot.cfg.dpd_action == DpdAction::Restart {
            slot.wanted = true;
            slot.retry_at = Some(now);
            self.handle_timeout_inner(now);
        }
    }
}
