//! A new set of tunnels while running (a configuration reload), compared with the
//! current one by name: an unchanged tunnel keeps its IKE and CHILD SAs, its retry
//! state and whether the operator stopped it, and nothing is output for it; a removed
//! tunnel's IKE SAs are deleted (DELETE sent, CHILD SAs out of the datapath at once); a
//! changed tunnel is deleted the same way and starts again with its new settings; an
//! added tunnel starts as at start-up (initiating now if it initiates).
//!
//! The same for IKEv1 and IKEv2 tunnels, and for a tunnel that changes version.

use super::retry::PeerSlot;
use super::Endpoint;
use crate::api::PeerConfig;
use crate::down::DownReason;
use ipsec_types::Timestamp;
use std::collections::{HashMap, HashSet};

/// What [`Endpoint::reconfigure`] did, by tunnel name: `added`, `changed` and
/// `unchanged` in the order of the new tunnels, `removed` in the order of the old ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reconfigured {
    /// New names: started.
    pub added: Vec<String>,
    /// Names no longer configured: their IKE SAs deleted.
    pub removed: Vec<String>,
    /// Same name, other settings: deleted and started again.
    pub changed: Vec<String>,
    /// Same name, same settings: left alone.
    pub unchanged: Vec<String>,
}

impl Reconfigured {
    /// True when nothing was added, removed or changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

impl Endpoint {
    /// Replaces the configured tunnels with `peers` (names unique; a repeated name is
    /// ignored with a warning) and applies the difference as described in this module.
    /// Outputs (DELETEs, datapath removals, new initiations, events) are queued for
    /// `poll_output` as after any other input.
    pub fn reconfigure(&mut self, now: Timestamp, peers: Vec<PeerConfig>) -> Reconfigured {
        let mark = self.shared.out.len();
        self.shared.now = now;
        let mut report = Reconfigured::default();
        let mut old: HashMap<String, PeerSlot> = HashMap::with_capacity(self.peers.len());
        let mut old_order = Vec::with_capacity(self.peers.len());
        for slot in std::mem::take(&mut self.peers) {
            if !old.contains_key(&slot.cfg.name) {
                old_order.push(slot.cfg.name.clone());
                old.insert(slot.cfg.name.clone(), slot);
            }
        }
        let mut seen = HashSet::with_capacity(peers.len());
        for cfg in peers {
            if !seen.insert(cfg.name.clone()) {
                tracing::warn!(tunnel = %cfg.name, "reconfigure: tunnel named twice; the second one is ignored");
                continue;
            }
            match old.remove(&cfg.name) {
                Some(slot) if slot.cfg == cfg => {
                    report.unchanged.push(cfg.name.clone());
                    self.peers.push(slot);
                }
                Some(_) => {
                    super::warn_about(&cfg);
                    report.changed.push(cfg.name.clone());
                    self.peers.push(PeerSlot::new(cfg, now));
                }
                None => {
                    super::warn_about(&cfg);
                    report.added.push(cfg.name.clone());
                    self.peers.push(PeerSlot::new(cfg, now));
                }
            }
        }
        report.removed = old_order.into_iter().filter(|n| old.contains_key(n)).collect();
        self.index_peers();

        for name in report.removed.iter().chain(&report.changed) {
            tracing::info!(tunnel = %name, "configuration reload: deleting the tunnel's SAs");
            self.terminate_where(now, DownReason::Reconfigured, |sa| sa.peer.name == *name);
            self.v1_terminate_where(now, DownReason::Reconfigured, |sa| sa.peer.name == *name);
        }
        for name in &report.removed {
            self.active_out.remove(name);
        }
        for name in report.added.iter().chain(&report.changed) {
            let Some(&i) = self.peer_by_name.get(name) else { continue };
            let Some(slot) = self.peers.get_mut(i) else { continue };
            tracing::info!(tunnel = %name, initiate = slot.cfg.initiate, "configuration reload: tunnel (re)configured");
            if slot.retry_at.take().is_some() {
                self.start_initiator(now, i);
            }
        }
        self.after_input(mark);
        report
    }

    /// The names of the configured tunnels, in configuration order.
    pub fn tunnel_names(&self) -> Vec<&str> {
        self.peers.iter().map(|p| p.cfg.name.as_str()).collect()
    }
}
