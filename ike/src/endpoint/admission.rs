//! Admission of unauthenticated IKE_SA_INIT requests: who gets a half-open IKE SA, who
//! must return a COOKIE first, who is refused (see `new_responder`).

use super::Endpoint;
use crate::down::DownReason;
use crate::log::warn_unauth;
use crate::message::{Message, Payload};
use crate::notify;
use crate::task::ike_init;
use ipsec_types::Timestamp;
use std::net::SocketAddr;

impl Endpoint {
    /// An IKE_SA_INIT request for a new IKE SA. Anyone can send one with any source
    /// address, so before it costs a key exchange and a slot it must pass, in order: a
    /// configured peer at that address; a valid COOKIE once `cookie_threshold` half-open
    /// SAs exist or the source (or the gateway) is at its half-open cap (RFC 7296 2.6);
    /// the per-source and global half-open caps (a request with a valid COOKIE evicts the
    /// oldest half-open SA that had none); and the cap on IKE SAs per peer.
    pub(super) fn new_responder(
        &mut self,
        now: Timestamp,
        local: SocketAddr,
        remote: SocketAddr,
        msg: &Message,
        data: &[u8],
    ) {
        if self.shutting_down {
            return;
        }
        self.shared.now = now;
        let Some(&peer_idx) = self.peer_by_addr.get(&remote.ip()) else {
            self.shared.drops.unknown_spi += 1;
            tracing::debug!(from = %remote, "IKE_SA_INIT from an address with no configured tunnel dropped");
            return;
        };
        // A socket bound to the wildcard address: we answer from the configured address.
        let local = match self.peers.get(peer_idx) {
            Some(slot) if slot.cfg.ike_version == crate::api::IkeVersion::V1 => {
                self.shared.drops.unknown_spi += 1;
                let (name, ip) = (&slot.cfg.name, remote.ip());
                warn_unauth!(
                    self.shared,
                    "tunnel {name}: IKE_SA_INIT from {ip} dropped: the tunnel speaks IKEv1 (ike_version = 1)"
                );
                return;
            }
            Some(slot) => crate::sa::unspecified_to(local, slot.cfg.local_addr),
            None => return,
        };
        let limits = self.shared.limits;
        let ip = remote.ip();
        let nonce = msg.payloads.iter().find_map(|p| match p {
            Payload::Nonce(n) => Some(n.as_slice()),
            _ => None,
        });
        let cookie = crate::task::notifies(&msg.payloads).find(|n| n.kind == notify::COOKIE).map(|n| n.data.as_slice());
        // The secret is drawn (and rotated) only when COOKIEs are in use, so that the RNG
        // sequence of a gateway that never needs them is unchanged.
        let proved = match (cookie, nonce) {
            (Some(c), Some(ni)) => {
                self.cookies.rotate(now, &mut *self.shared.rng);
                self.cookies.verify(c, ni, ip, msg.header.spi_i)
            }
            _ => false,
        };
        // Only a request that could create an IKE SA is answered at all: SA, KE and a
        // nonce of a valid length (so a COOKIE answer is never larger than the request).
        let has = |f: fn(&Payload) -> bool| msg.payloads.iter().any(f);
        let Some(ni) = nonce.filter(|n| (16..=256).contains(&n.len())) else {
            self.shared.drops.malformed += 1;
            return;
        };
        if !has(|p| matches!(p, Payload::Sa(_))) || !has(|p| matches!(p, Payload::Ke { .. })) {
            self.shared.drops.malformed += 1;
            return;
        }
        // COOKIEs are required above the threshold, from a source at its own cap (or at
        // the global cap), and once `cookie_threshold` unproved requests reached the key
        // exchange within the half-open timeout (requests refused after it, e.g. for a bad
        // KE value, cost a key generation but leave no half-open SA to count).
        let need_cookie = self.sas.half_open_total() >= limits.cookie_threshold.min(limits.half_open_max)
            || self.sas.half_open_from(ip) >= limits.half_open_per_source
            || self.recent_unproved(now) >= limits.cookie_threshold;
        if !proved && need_cookie {
            self.cookies.rotate(now, &mut *self.shared.rng);
            let c = self.cookies.make(ni, ip, msg.header.spi_i);
            self.shared.drops.cookie_required += 1;
            self.shared.drops.cookies_sent += 1;
            ike_init::send_cookie(&mut self.shared.out, &msg.header, local, remote, c);
            return;
        }
        // At a cap, a proved request takes the place of the oldest unproved half-open SA
        // (of the same source first); it is evicted only once the new SA exists.
        let at_cap = if self.sas.half_open_from(ip) >= limits.half_open_per_source {
            Some((self.sas.half_open_from(ip), limits.half_open_per_source, Some(ip)))
        } else if self.sas.half_open_total() >= limits.half_open_max {
            Some((self.sas.half_open_total(), limits.half_open_max, None))
        } else {
            None
        };
        let mut evict = None;
        if let Some((count, cap, scope)) = at_cap {
            match self.sas.oldest_unproved(scope).filter(|_| proved) {
                Some(victim) => evict = Some(victim),
                None => {
                    self.shared.drops.half_open_cap += 1;
                    let per = if scope.is_some() { " from this address" } else { "" };
                    warn_unauth!(
                        self.shared,
                        "IKE_SA_INIT from {ip} dropped: {count} half-open IKE SAs{per} (limit {cap})"
                    );
                    return;
                }
            }
        }
        let Some(slot) = self.peers.get(peer_idx) else { return };
        // IKE SAs past the half-open stage (authenticated ones and our own attempts).
        let authenticated = self.sas.peer_count(&slot.cfg.name);
        if authenticated >= limits.ike_sa_per_peer_max {
            self.shared.drops.half_open_cap += 1;
            let name = &slot.cfg.name;
            warn_unauth!(self.shared, "tunnel {name}: IKE_SA_INIT from {ip} refused with NO_ADDITIONAL_SAS: the peer holds {authenticated} IKE SAs already (ike_sa_per_peer_max)");
            let mut ctx = self.shared.ctx(now, 0);
            ike_init::refuse(&mut ctx, &msg.header, local, remote, notify::NO_ADDITIONAL_SAS, vec![]);
            return;
        }
        if !proved {
            self.unproved_at.push_back(now);
        }
        let mut ctx = self.shared.ctx(now, 0);
        let Some(mut sa) = ike_init::respond(&slot.cfg, &mut ctx, local, remote, msg, data) else { return };
        if self.sas.ours_taken(sa.spi_r) {
            // 2^-64: the response went out with an SPI in use; let the peer retry.
            tracing::error!("half-open IKE SA dropped: IKE SPI in use");
            sa.teardown(&mut ctx, DownReason::SpiCollision);
            return;
        }
        if let Some(victim) = evict {
            let mut old = self.sas.remove(victim);
            let mut ctx = self.shared.ctx(now, 0);
            old.teardown(&mut ctx, DownReason::Evicted);
        }
        self.sas.push(sa, proved);
    }

    /// Unproved IKE_SA_INITs that reached the key exchange within the half-open timeout
    /// (the window holds at most `cookie_threshold` + 1 entries: beyond, COOKIEs are
    /// required and nothing is added).
    fn recent_unproved(&mut self, now: Timestamp) -> usize {
        while self.unproved_at.front().is_some_and(|t| now.saturating_since(*t) >= crate::sa::HALF_OPEN_TIMEOUT) {
            self.unproved_at.pop_front();
        }
        self.unproved_at.len()
    }
}
