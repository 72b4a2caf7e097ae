//! Aggressive Mode with pre-shared keys (RFC 2409 5, 5.4), both roles, only for tunnels
//! that opt in (`aggressive = true`): three messages instead of six, but the identities
//! travel in cleartext and message 2 carries HASH_R, a value anyone who sees it can use
//! to guess the pre-shared key offline. The endpoint warns about it at start-up.
//!
//! ```text
//!  1  HDR, SA, KE, Ni, IDii, VID, VID [,VID]      -->
//!  2          <--  HDR, SA, KE, Nr, IDir, HASH_R, VID [,VID] [,VID] [, NAT-D x2]
//!  3  HDR*, HASH_I [, NAT-D x2]                   -->   IV = hash(g^xi | g^xr)
//! ```
//!
//! The responder computes the key exchange for an unauthenticated message 1 (it must,
//! to send HASH_R): one key exchange per admitted half-open SA, under the endpoint's
//! half-open caps. Message 3 is sent encrypted (most implementations do) and accepted
//! either way; NAT detection (RFC 3947), or the vpngw Vendor ID from both sides, moves
//! message 3 to the NAT-T port.

use super::info::{VID_DPD, VID_NAT_T};
use super::keys::{phase1_iv, Phase1Keys};
use super::main_mode::{
    detect_nat, has_vid, id_payload, ke_and_nonce, nat_d_payloads, one, peer_identity, vendor_ids, Ending, Keyed,
    MainModeConfig, MainModeError, Nat, Step,
};
use super::message::payload::Payload;
use super::message::{emit_chain, emit_clear, exchange, ptype, seal, Header, Message, BLOCK};
use super::proposal::{accept_phase1_answer, phase1_offer, select_phase1};
use super::{nonce, nonzero};
use crate::api::VPNGW_VENDOR_ID;
use crate::crypto::{ct_eq, KeyExchange};
use crate::Rng;
use ipsec_types::Identity;
use zeroize::Zeroizing;

fn header(cky_i: u64, cky_r: u64) -> Header {
    Header { cky_i, cky_r, next_payload: 0, exchange: exchange::AGGRESSIVE, flags: 0, message_id: 0, length: 0 }
}

/// Aggressive Mode as initiator, waiting for message 2.
/// Message 2s the initiator computes the key exchange for per attempt: anyone who saw
/// message 1 can forge one, and its HASH_R can only be checked after the key exchange.
const MAX_ANSWERS_TRIED: u8 = 4;

pub(crate) struct Initiator {
    cky_i: u64,
    sai_b: Vec<u8>,
    idii_b: Vec<u8>,
    kex: KeyExchange,
    ni: Zeroizing<Vec<u8>>,
    nat: Nat,
    done: bool,
    /// Answers that reached the key exchange (each costs one before HASH_R can be checked).
    tried: u8,
}

impl Initiator {
    /// Message 1: our transforms (one group: the KE is for the first proposal's first).
    pub(crate) fn start(cfg: &MainModeConfig<'_>, rng: &mut dyn Rng) -> Option<(Self, Vec<u8>)> {
        let group = *cfg.proposals.first()?.dh.first()?;
        // Only the transforms of that group can be chosen with our KE.
        let props: Vec<_> = cfg
            .proposals
            .iter()
            .filter(|p| p.dh.contains(&group))
            .map(|p| ipsec_types::IkeProposal { dh: vec![group], ..p.clone() })
            .collect();
        let cky_i = u64::from_be_bytes(nonzero(rng));
        let sa = Payload::Sa(phase1_offer(&props, cfg.life_secs));
        let sai_b = emit_chain(std::slice::from_ref(&sa)).get(4..).unwrap_or_default().to_vec();
        let kex = KeyExchange::generate(group, rng);
        let ni = nonce(rng);
        let id = Payload::Id(id_payload(cfg.local_id));
        let idii_b = emit_chain(std::slice::from_ref(&id)).get(4..).unwrap_or_default().to_vec();
        let payloads = [
            sa,
            Payload::Ke(kex.public_value()),
            Payload::Nonce(ni.to_vec()),
            id,
            Payload::Vendor(VID_NAT_T.to_vec()),
            Payload::Vendor(VID_DPD.to_vec()),
        ];
        let vpngw = cfg.announce_vpngw.then(|| Payload::Vendor(VPNGW_VENDOR_ID.to_vec()));
        let msg = emit_clear(header(cky_i, 0), &[&payloads[..], vpngw.as_slice()].concat());
        Some((Self { cky_i, sai_b, idii_b, kex, ni, nat: Nat::default(), done: false, tried: 0 }, msg))
    }

    pub(crate) fn cookie(&self) -> u64 {
        self.cky_i
    }

    /// Takes message 2: verifies HASH_R and gives message 3 with the established SA. An
    /// error leaves the exchange waiting (message 2 is unauthenticated until HASH_R).
    pub(crate) fn handle(
        &mut self,
        cfg: &MainModeConfig<'_>,
        _rng: &mut dyn Rng,
        data: &[u8],
    ) -> Result<Step, MainModeError> {
        if self.done {
            return Err(MainModeError::Unexpected("Aggressive Mode is over"));
        }
        let m = Message::parse(data)?;
        let (ci, cr) = (self.cky_i, m.header.cky_r);
        if m.header.exchange != exchange::AGGRESSIVE || m.header.cky_i != ci || cr == 0 {
            return Err(MainModeError::Unexpected("not this Aggressive Mode"));
        }
        let (_, sa) = one(&m, ptype::SA, "no SA payload")?;
        let Payload::Sa(sa) = sa else { return Err(MainModeError::Unexpected("no SA payload")) };
        let (algs, life) = accept_phase1_answer(sa, cfg.proposals).ok_or(MainModeError::NoProposalChosen)?;
        if algs.dh != self.kex.group() {
            return Err(MainModeError::NoProposalChosen);
        }
        let (g_xr, nr) = ke_and_nonce(&m)?;
        if self.tried >= MAX_ANSWERS_TRIED {
            return Err(MainModeError::Unexpected("too many unauthenticated answers"));
        }
        self.tried += 1;
        let g_xy = self.kex.agree(&g_xr).map_err(|_| MainModeError::InvalidKe)?;
        let (id_at, _) = one(&m, ptype::ID, "no ID payload")?;
        let (_, hash) = one(&m, ptype::HASH, "no HASH payload")?;
        let Payload::Hash(got) = hash else { return Err(MainModeError::Unexpected("no HASH payload")) };
        let idir_b = m.body(id_at).ok_or(MainModeError::Unexpected("no ID payload"))?;
        let keys = Phase1Keys::derive_psk(algs.hash, algs.encr, cfg.psk, &self.ni, &nr, &g_xy, ci, cr);
        let keyed = Keyed { algs, keys, g_xi: self.kex.public_value(), g_xr };
        let want = keyed.keys.hash_r(&keyed.g_xi, &keyed.g_xr, ci, cr, &self.sai_b, idir_b);
        if !ct_eq(got, &want) {
            return Err(MainModeError::AuthenticationFailed);
        }
        let peer_id = peer_identity(&m, id_at, cfg)?;
        if has_vid(&m, &VID_NAT_T) {
            self.nat = detect_nat(&m, algs, (ci, cr), cfg, has_vid(&m, &VPNGW_VENDOR_ID));
        }
        let hash_i = keyed.keys.hash_i(&keyed.g_xi, &keyed.g_xr, ci, cr, &self.sai_b, &self.idii_b);
        let mut payloads = vec![Payload::Hash(hash_i.to_vec())];
        if self.nat.supported {
            payloads.extend(nat_d_payloads(algs, ci, cr, cfg));
        }
        let cipher = keyed.keys.cipher().ok_or(MainModeError::NoProposalChosen)?;
        let iv = phase1_iv(algs.hash, &keyed.g_xi, &keyed.g_xr);
        let (msg3, last_block) = seal(header(ci, cr), ptype::HASH, &emit_chain(&payloads), &cipher, &iv);
        self.done = true;
        let end =
            Ending { cookies: (ci, cr), last_block, peer_id, life_secs: life, nat: self.nat, initial_contact: false };
        Ok(Step::Done(keyed.established(end), Some(msg3)))
    }
}

/// Aggressive Mode as responder, waiting for message 3.
pub(crate) struct Responder {
    cky_i: u64,
    cky_r: u64,
    sai_b: Vec<u8>,
    idii_b: Vec<u8>,
    peer_id: Identity,
    /// Until message 3 verified.
    keyed: Option<Box<Keyed>>,
    life: Option<u64>,
    nat_t: bool,
    /// The initiator sent the vpngw Vendor ID.
    peer_vpngw: bool,
}

impl Responder {
    /// Takes message 1 and gives message 2 (computing the key exchange).
    pub(crate) fn accept(
        cfg: &MainModeConfig<'_>,
        rng: &mut dyn Rng,
        data: &[u8],
    ) -> Result<(Self, Vec<u8>), MainModeError> {
        let m = Message::parse(data)?;
        if m.header.exchange != exchange::AGGRESSIVE || m.header.cky_r != 0 || m.header.message_id != 0 {
            return Err(MainModeError::Unexpected("not an Aggressive Mode message 1"));
        }
        let (sa_at, sa) = one(&m, ptype::SA, "no SA payload")?;
        let Payload::Sa(sa) = sa else { return Err(MainModeError::Unexpected("no SA payload")) };
        let choice = select_phase1(sa, cfg.proposals).ok_or(MainModeError::NoProposalChosen)?;
        let (g_xi, ni) = ke_and_nonce(&m)?;
        if !KeyExchange::plausible_public(choice.algs.dh, &g_xi) {
            return Err(MainModeError::InvalidKe);
        }
        let (id_at, _) = one(&m, ptype::ID, "no ID payload")?;
        let peer_id = peer_identity(&m, id_at, cfg)?;
        let sai_b = m.body(sa_at).unwrap_or_default().to_vec();
        let idii_b = m.body(id_at).unwrap_or_default().to_vec();
        let kex = KeyExchange::generate(choice.algs.dh, rng);
        let g_xy = kex.agree(&g_xi).map_err(|_| MainModeError::InvalidKe)?;
        let (ci, cr) = (m.header.cky_i, u64::from_be_bytes(nonzero(rng)));
        let nr = nonce(rng);
        let algs = choice.algs;
        let keys = Phase1Keys::derive_psk(algs.hash, algs.encr, cfg.psk, &ni, &nr, &g_xy, ci, cr);
        let keyed = Box::new(Keyed { algs, keys, g_xi, g_xr: kex.public_value() });
        let id = Payload::Id(id_payload(cfg.local_id));
        let idir_b = emit_chain(std::slice::from_ref(&id)).get(4..).unwrap_or_default().to_vec();
        let hash_r = keyed.keys.hash_r(&keyed.g_xi, &keyed.g_xr, ci, cr, &sai_b, &idir_b);
        let nat_t = has_vid(&m, &VID_NAT_T);
        let peer_vpngw = has_vid(&m, &VPNGW_VENDOR_ID);
        let mut payloads = vec![
            Payload::Sa(choice.answer),
            Payload::Ke(keyed.g_xr.clone()),
            Payload::Nonce(nr.to_vec()),
            id,
            Payload::Hash(hash_r.to_vec()),
        ];
        payloads.extend(vendor_ids(cfg, nat_t));
        if nat_t {
            payloads.extend(nat_d_payloads(algs, ci, cr, cfg));
        }
        let msg = emit_clear(header(ci, cr), &payloads);
        let life = choice.life_secs;
        let me = Self { cky_i: ci, cky_r: cr, sai_b, idii_b, peer_id, keyed: Some(keyed), life, nat_t, peer_vpngw };
        Ok((me, msg))
    }

    pub(crate) fn cookie(&self) -> u64 {
        self.cky_r
    }

    pub(crate) fn peer_cookie(&self) -> u64 {
        self.cky_i
    }

    /// Takes message 3 (encrypted or not): HASH_I verified, the SA is established.
    pub(crate) fn handle(&mut self, cfg: &MainModeConfig<'_>, data: &[u8]) -> Result<Step, MainModeError> {
        let Some(k) = self.keyed.as_ref() else { return Err(MainModeError::Unexpected("Aggressive Mode is over")) };
        let mut m = Message::parse(data)?;
        let (ci, cr) = (self.cky_i, self.cky_r);
        if m.header.exchange != exchange::AGGRESSIVE || (m.header.cky_i, m.header.cky_r) != (ci, cr) {
            return Err(MainModeError::Unexpected("not this Aggressive Mode"));
        }
        let iv = phase1_iv(k.algs.hash, &k.g_xi, &k.g_xr);
        let last_block: [u8; BLOCK] = if m.header.encrypted() {
            let cipher = k.keys.cipher().ok_or(MainModeError::NoProposalChosen)?;
            m.decrypt(data, &cipher, &iv).map_err(|_| MainModeError::AuthenticationFailed)?
        } else {
            iv
        };
        let (_, hash) = one(&m, ptype::HASH, "no HASH payload").map_err(|_| MainModeError::AuthenticationFailed)?;
        let Payload::Hash(got) = hash else { return Err(MainModeError::AuthenticationFailed) };
        let want = k.keys.hash_i(&k.g_xi, &k.g_xr, ci, cr, &self.sai_b, &self.idii_b);
        if !ct_eq(got, &want) {
            return Err(MainModeError::AuthenticationFailed);
        }
        let nat = if self.nat_t { detect_nat(&m, k.algs, (ci, cr), cfg, self.peer_vpngw) } else { Nat::default() };
        let Some(keyed) = self.keyed.take() else { return Err(MainModeError::Unexpected("Aggressive Mode is over")) };
        let peer_id = self.peer_id.clone();
        let end = Ending { cookies: (ci, cr), last_block, peer_id, life_secs: self.life, nat, initial_contact: false };
        Ok(Step::Done(keyed.established(end), None))
    }
}

#[cfg(test)]
mod tests;
