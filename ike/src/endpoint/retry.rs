//! Bringing tunnels up and up again: starting our initiations, and after an IKE SA
//! failed, deciding whether and when to try again (by `Failure` kind and
//! `dpd_action`).

use super::Endpoint;
use crate::api::PeerConfig;
use crate::down::Failure;
use crate::sa::IkeSa;
use crate::task::ike_init;
use ipsec_types::{DpdAction, Timestamp};
use std::time::Duration;

/// Retry delays after a failed initiation.
const RETRY_FIRST: Duration = Duration::from_secs(10);
const RETRY_LATER: Duration = Duration::from_secs(30);
/// After NO_PROPOSAL_CHOSEN / AUTHENTICATION_FAILED: a configuration problem, retry slowly.
const RETRY_NEGOTIATION: Duration = Duration::from_secs(60);

pub(super) struct PeerSlot {
    pub(super) cfg: PeerConfig,
    /// When to (re)initiate, if we should.
    pub(super) retry_at: Option<Timestamp>,
    pub(super) failures: u32,
    /// The operator wants this tunnel up (initiate or Command::Initiate).
    pub(super) wanted: bool,
    /// When we last answered an unknown-SPI request from this peer with INVALID_IKE_SPI.
    pub(super) invalid_spi_at: Option<Timestamp>,
}

impl PeerSlot {
    /// A tunnel as configured: an initiator is due at `start`.
    pub(super) fn new(cfg: PeerConfig, start: Timestamp) -> Self {
        Self { retry_at: cfg.initiate.then_some(start), failures: 0, wanted: cfg.initiate, invalid_spi_at: None, cfg }
    }
}

impl Endpoint {
    pub(super) fn after_failure(&mut self, now: Timestamp, sa: &IkeSa, failure: &Failure) {
        tracing::debug!(tunnel = %sa.name(), reason = failure.reason().to_string().as_str(), "IKE SA removed");
        self.retry_after(now, &sa.peer.name, sa.state.replaced(), sa.established_at.is_some(), sa.initiator, failure);
    }

    /// After an IKE SA of tunnel `name` failed (either version): whether and when to
    /// initiate again. `replaced`: a newer SA took over (nothing to do).
    pub(super) fn retry_after(
        &mut self,
        now: Timestamp,
        name: &str,
        replaced: bool,
        established: bool,
        initiator: bool,
        failure: &Failure,
    ) {
        if self.shutting_down || replaced {
            return;
        }
        let Some(slot) = self.slot_mut(name) else { return };
        if established && matches!(failure, Failure::Transient(_)) {
            // The peer is dead (DPD, unanswered retransmissions) or the IKE SA expired.
            if slot.cfg.dpd.action == DpdAction::Clear {
                tracing::info!(tunnel = %slot.cfg.name, "dpd_action clear: not initiating again");
                return;
            }
            slot.wanted = true;
            tracing::info!(tunnel = %slot.cfg.name, "initiating the tunnel again");
            slot.retry_at = Some(now);
            return;
        }
        if matches!(failure, Failure::Expired(_)) && slot.wanted {
            tracing::info!(tunnel = %slot.cfg.name, "initiating the tunnel again");
            slot.retry_at = Some(now);
            return;
        }
        if !slot.wanted || !(initiator || established) {
            return;
        }
        let delay = match failure {
            Failure::Negotiation(_) => RETRY_NEGOTIATION,
            Failure::Transient(_) | Failure::Deleted(_) | Failure::Expired(_) => {
                slot.failures = slot.failures.saturating_add(1);
                if slot.failures <= 1 {
                    RETRY_FIRST
                } else {
                    RETRY_LATER
                }
            }
        };
        tracing::info!(tunnel = %slot.cfg.name, "will try to bring the tunnel up again in {}s", delay.as_secs());
        let at = now + delay;
        slot.retry_at = Some(slot.retry_at.map_or(at, |t| t.min(at)));
    }

    pub(super) fn start_initiator(&mut self, now: Timestamp, peer_idx: usize) {
        let Some(slot) = self.peers.get(peer_idx) else { return };
        if slot.cfg.ike_version == crate::api::IkeVersion::V1 {
            self.start_v1_initiator(now, peer_idx, false);
            return;
        }
        // Only our own attempts and authenticated IKE SAs make the tunnel busy: a
        // half-open responder SA (anyone can create one by spoofing the peer's address)
        // never holds our initiation back.
        let name = &slot.cfg.name;
        let busy = self.sas.iter().any(|s| {
            s.peer.name == *name
                && !s.state.is_deleting()
                && !s.state.stale()
                && (s.initiator || s.established_at.is_some())
        });
        if busy || self.shutting_down {
            return;
        }
        let cfg = slot.cfg.clone();
        let first_contact = !self.sas.iter().any(|s| s.peer.name == cfg.name && s.established_at.is_some());
        let mut ctx = self.shared.ctx(now, 0);
        let mut sa = ike_init::start(cfg, &mut ctx);
        sa.send_initial_contact = first_contact;
        while self.sas.ours_taken(sa.spi_i) {
            // 2^-64 per SA; drawn again before anything is sent for it.
            sa.spi_i = ctx.random_u64();
        }
        if !self.sas.push(sa, true) {
            tracing::error!("initiation dropped: IKE SPI in use");
        }
    }
}
