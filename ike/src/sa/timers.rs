//! The timers of one IKE SA: retransmission (via the task manager), the half-open and
//! rekeyed-SA deadlines, IKE and CHILD SA rekey times and hard lifetimes, the grace
//! period of old inbound SAs, and dead peer detection (RFC 7296 2.4, 2.8).
//!
//! Timers only queue work (rekeys, deletes, liveness checks); the exchanges themselves
//! are in `task`.

use super::child::{self, ChildState};
use super::task_manager::{self, TaskKind, Timeout};
use super::{Ctx, IkeSa, IkeState};
use crate::down::{DownReason, Failure};
use crate::task::{informational, ActiveTask};
use ipsec_types::Timestamp;

impl IkeSa {
    /// When dead peer detection should check the peer (nothing else in flight).
    fn dpd_at(&self) -> Option<Timestamp> {
        let delay = self.peer.dpd.delay?;
        if !self.state.is_established()
            || self.tasks.outstanding.is_some()
            || self.tasks.queue.contains(&TaskKind::Liveness)
        {
            return None;
        }
        Some(self.heard().or(self.established_at)? + delay)
    }

    /// CHILD and IKE SA rekey and expiry times (established SAs only).
    fn lifetime_deadline(&self) -> Option<Timestamp> {
        let IkeState::Established { rekey_at, expire_at, adoption_due, .. } = &self.state else { return None };
        let children = self.children.iter().flat_map(|c| {
            let next = match c.state {
                ChildState::Installed { rekey_at: at }
                | ChildState::Rekeyed { delete_at: at }
                | ChildState::Redundant { delete_at: at, .. } => at,
                ChildState::Rekeying | ChildState::Deleting { .. } => None,
            };
            [next, (!c.state.is_deleting()).then_some(c.expire_at).flatten()]
        });
        let ike = [*rekey_at, *expire_at, *adoption_due];
        children.chain(ike).flatten().min()
    }

    /// The half-open deadline, or the end of the wait for the peer's DELETE of a
    /// rekeyed SA.
    fn deadline(&self) -> Option<Timestamp> {
        match self.state {
            IkeState::Authenticating { deadline, .. } | IkeState::Rekeyed { deadline, .. } => deadline,
            _ => None,
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Timestamp> {
        let retiring = self.retiring.iter().map(|(_, t)| *t).min();
        [self.tasks.deadline(), self.deadline(), retiring, self.lifetime_deadline(), self.dpd_at()]
            .into_iter()
            .flatten()
            .min()
    }

    pub(crate) fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) -> Result<(), Failure> {
        let now = ctx.now;
        if self.deadline().is_some_and(|d| d <= now) {
            match &mut self.state {
                IkeState::Rekeyed { deadline, .. } => {
                    *deadline = None;
                    tracing::debug!(tunnel = %self.name(), "peer did not delete the rekeyed IKE SA; forgetting it");
                    return Err(Failure::Deleted(DownReason::RekeyedExpired));
                }
                IkeState::Authenticating { deadline, .. } => {
                    *deadline = None;
                    let (name, peer) = (self.name(), self.remote.ip());
                    crate::log::warn_unauth!(
                        ctx,
                        "tunnel {name}: peer {peer} did not complete IKE_AUTH in time; dropping half-open IKE SA"
                    );
                    return Err(Failure::Transient(DownReason::HalfOpenTimeout));
                }
                _ => {}
            }
        }
        child::expire_retiring(self, ctx, false);
        self.lifetimes(ctx)?;
        if self.dpd_at().is_some_and(|t| t <= now) {
            tracing::debug!(tunnel = %self.name(), "nothing heard from the peer for a while; checking liveness");
            self.tasks.queue_once(TaskKind::Liveness);
        }
        if let Some(result) = crate::task::ike_init::deferred_error_due(self, ctx) {
            return result;
        }
        let result = match self.tasks.on_timeout(now) {
            Timeout::Nothing => Ok(()),
            Timeout::Retransmit(p) => {
                tracing::debug!(tunnel = %self.name(), datagrams = p.len(), "retransmitting request");
                self.transmit_all(ctx, &p);
                Ok(())
            }
            Timeout::GiveUp(ActiveTask::IkeDelete) => Err(Failure::Deleted(DownReason::DeleteUnanswered)),
            Timeout::GiveUp(task) => {
                let (name, peer, what) = (self.name(), self.remote.ip(), task.name());
                if matches!(task, ActiveTask::Liveness) {
                    let secs = self.peer.dpd.timeout.as_secs();
                    tracing::warn!(
                        "tunnel {name}: peer {peer} did not answer liveness checks for {secs}s; peer is dead"
                    );
                    Err(Failure::Transient(DownReason::DeadPeer))
                } else {
                    let tries = task_manager::RETRANSMIT_LIMIT;
                    tracing::warn!(
                        "tunnel {name}: peer {peer} did not answer {what} after {tries} retransmits; IKE SA failed"
                    );
                    Err(Failure::Transient(DownReason::Unanswered(what)))
                }
            }
        };
        result?;
        self.kick(ctx);
        Ok(())
    }

    /// Rekey and expiry of the IKE SA and its CHILD SAs.
    fn lifetimes(&mut self, ctx: &mut Ctx<'_>) -> Result<(), Failure> {
        let now = ctx.now;
        let IkeState::Established { rekey_at, expire_at, adoption_due, .. } = &self.state else { return Ok(()) };
        let (rekey_at, expire_at, adoption_due) = (*rekey_at, *expire_at, *adoption_due);
        if expire_at.is_some_and(|t| t <= now) {
            if let IkeState::Established { expire_at, .. } = &mut self.state {
                *expire_at = None;
            }
            tracing::warn!(tunnel = %self.name(), "IKE SA reached its hard lifetime without a rekey; deleting it");
            informational::start_ike_delete(self, ctx);
            return Err(Failure::Expired(DownReason::LifetimeExpired));
        }
        if adoption_due.is_some_and(|t| t <= now) {
            tracing::info!(tunnel = %self.name(), "redundant IKE SA from a rekey collision was not deleted by the peer; deleting it");
            self.become_deleting(true);
            self.tasks.queue.clear();
            informational::start_ike_delete(self, ctx);
            return Ok(());
        }
        if rekey_at.is_some_and(|t| t <= now) {
            if let IkeState::Established { rekey_at, .. } = &mut self.state {
                *rekey_at = None;
            }
            self.tasks.queue_once(TaskKind::IkeRekey);
        }
        let mut work = Vec::new();
        for c in &mut self.children {
            if let ChildState::Rekeyed { delete_at } = &mut c.state {
                if delete_at.is_some_and(|t| t <= now) {
                    *delete_at = None;
                    work.push(TaskKind::ChildDelete(c.spi_in));
                    continue;
                }
            }
            if !c.state.is_deleting() && c.expire_at.is_some_and(|t| t <= now) {
                tracing::warn!(tunnel = %self.peer.name, spi_in = %c.spi_in, "CHILD SA reached its hard lifetime; deleting it");
                c.expire_at = None;
                if let ChildState::Installed { rekey_at: at } | ChildState::Redundant { delete_at: at, .. } =
                    &mut c.state
                {
                    *at = None;
                }
                work.push(TaskKind::ChildDelete(c.spi_in));
                continue;
            }
            match &mut c.state {
                ChildState::Installed { rekey_at } if rekey_at.is_some_and(|t| t <= now) => {
                    if c.halves.awaiting_outbound() {
                        // Its predecessor is not deleted yet: look again a little later.
                        *rekey_at = Some(now + std::time::Duration::from_secs(10));
                    } else {
                        *rekey_at = None;
                        work.push(TaskKind::ChildRekey(c.spi_in));
                    }
                }
                ChildState::Redundant { delete_at, .. } if delete_at.is_some_and(|t| t <= now) => {
                    *delete_at = None;
                    work.push(TaskKind::ChildDelete(c.spi_in));
                }
                _ => {}
            }
        }
        for w in work {
            self.tasks.queue_once(w);
        }
        Ok(())
    }
}
