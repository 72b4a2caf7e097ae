//! Main Mode with pre-shared keys (RFC 2409 5, 5.4) and NAT detection (RFC 3947: the
//! Vendor IDs of NAT-T and DPD in messages 1 and 2, NAT-D in 3 and 4 when both
//! announced NAT-T; the vpngw Vendor ID, `ike::VPNGW_VENDOR_ID`, in 1 and 2 when the
//! tunnel announces it, with which two vpngw peers float to UDP without a NAT), both
//! roles, as an exchange object:
//! it takes the peer's messages and gives ours, and ends in a [`Phase1Sa`]. Timers,
//! retransmission, admission and routing by cookie belong to the SA and the endpoint,
//! which are in `v1::sa` and `endpoint::v1`.
//!
//! ```text
//!  1  HDR, SA, VID, VID [,VID]     -->                     (cookie I, our transforms)
//!  2                     <--  HDR, SA, VID [,VID] [,VID]   (cookie R, the chosen one)
//!  3  HDR, KE, Ni [, NAT-D x2]     -->
//!  4                               <--  HDR, KE, Nr [, NAT-D x2]  keys from here on
//!  5  HDR*, IDii, HASH_I           -->                     IV = hash(g^xi | g^xr)
//!  6                               <--  HDR*, IDir, HASH_R IV = last block of 5
//! ```
//!
//! With a pre-shared key, the responder must know the key before it can read message 5
//! (which carries the initiator's identity), so the key is the peer's, chosen by its
//! address: the configuration handed in. A message 5 or 6 that does not decrypt or
//! whose HASH does not verify is reported as an authentication failure, which with
//! pre-shared keys nearly always means the two sides hold different keys.

use super::info::{notify::INITIAL_CONTACT, VID_DPD, VID_NAT_T};
use super::keys::{nat_d, phase1_iv, Phase1Keys};
use super::message::payload::{proto, Id, Notify, Payload, DOI_IPSEC};
use super::message::{emit_chain, emit_clear, exchange, ptype, seal, Header, Message, ParseError, BLOCK};
use super::proposal::{accept_phase1_answer, phase1_offer, select_phase1, Phase1Algs};
use super::{nonce, nonzero};
use crate::api::{EncapReason, VPNGW_VENDOR_ID};
use crate::crypto::{ct_eq, KeyExchange};
use crate::Rng;
use ipsec_types::{Identity, IkeProposal};
use std::net::SocketAddr;
use zeroize::Zeroizing;

/// What Main Mode needs from the tunnel's configuration.
pub(crate) struct MainModeConfig<'a> {
    pub(crate) proposals: &'a [IkeProposal],
    pub(crate) psk: &'a [u8],
    pub(crate) local_id: &'a Identity,
    /// The identity the peer must prove; `None` accepts any (the key still must match).
    pub(crate) remote_id: Option<&'a Identity>,
    /// The phase-1 lifetime we offer, in seconds.
    pub(crate) life_secs: u64,
    /// Our address and port as the datagrams carry them (NAT-D, RFC 3947 3.2).
    pub(crate) local: SocketAddr,
    /// The peer's address and port as the datagrams carry them.
    pub(crate) remote: SocketAddr,
    /// Send a NAT-D payload for our address that cannot match, so that both sides see a
    /// NAT and use UDP encapsulation (what `encapsulation = "udp"` asks for; strongSwan's
    /// `encap = yes` does the same).
    pub(crate) fake_nat: bool,
    /// Send the vpngw Vendor ID in message 1 or 2 and float to UDP when the peer sends it
    /// too (`PeerConfig::announce_vpngw`).
    pub(crate) announce_vpngw: bool,
    /// Send INITIAL-CONTACT with message 5 (RFC 2407 4.6.3.3): we hold no other ISAKMP SA
    /// with this peer, so the peer may drop whatever it still holds for us.
    pub(crate) initial_contact: bool,
}

/// What NAT detection (RFC 3947 3.2) found in messages 3 and 4.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Nat {
    /// Both sides announced RFC 3947 (Vendor ID) and sent NAT-D payloads.
    pub(crate) supported: bool,
    /// Our address is translated: the peer saw another one.
    pub(crate) local_behind: bool,
    /// The peer's address is translated: none of the ones it knows is what we see.
    pub(crate) remote_behind: bool,
    /// Both sides sent the vpngw Vendor ID in messages 1 and 2: no NAT is needed to float.
    pub(crate) vpngw_pair: bool,
}

impl Nat {
    /// Whether messages from 5 on, and ESP, go over UDP 4500 (RFC 3947 4, 5).
    pub(crate) fn detected(&self) -> bool {
        self.reason(false).is_some()
    }

    /// Why ESP goes in UDP (`forced`: our configuration faked the NAT), if it does.
    pub(crate) fn reason(&self, forced: bool) -> Option<EncapReason> {
        if !self.supported {
            return None;
        }
        EncapReason::decide(forced, self.local_behind || self.remote_behind, self.vpngw_pair)
    }
}

/// Our Vendor IDs in message 1 (or 2, `nat_t`: the initiator announced RFC 3947).
pub(super) fn vendor_ids(cfg: &MainModeConfig<'_>, nat_t: bool) -> Vec<Payload> {
    let mut v = vec![Payload::Vendor(VID_DPD.to_vec())];
    if nat_t {
        v.push(Payload::Vendor(VID_NAT_T.to_vec()));
    }
    if cfg.announce_vpngw {
        v.push(Payload::Vendor(VPNGW_VENDOR_ID.to_vec()));
    }
    v
}

/// Our NAT-D payloads: the peer's address as we send to it, then ours (with
/// `fake_nat`, a hash of our address with its octets inverted, which matches nothing).
pub(super) fn nat_d_payloads(algs: Phase1Algs, ci: u64, cr: u64, cfg: &MainModeConfig<'_>) -> [Payload; 2] {
    let mut ours = nat_d(algs.hash, ci, cr, cfg.local);
    if cfg.fake_nat {
        ours.iter_mut().for_each(|b| *b = !*b);
    }
    [
        Payload::NatD { hash: nat_d(algs.hash, ci, cr, cfg.remote), draft: false },
        Payload::NatD { hash: ours, draft: false },
    ]
}

/// NAT detection from the peer's NAT-D payloads in `m`: the first names our address as
/// the peer sent to it, the others the peer's own addresses. `peer_vpngw`: the peer's
/// message 1 or 2 carried the vpngw Vendor ID (unauthenticated, like NAT-D itself: it
/// decides the encapsulation and nothing else).
pub(super) fn detect_nat(
    m: &Message,
    algs: Phase1Algs,
    (ci, cr): (u64, u64),
    cfg: &MainModeConfig<'_>,
    peer_vpngw: bool,
) -> Nat {
    let hashes: Vec<&[u8]> = m
        .payloads
        .iter()
        .filter_map(|p| match p {
            Payload::NatD { hash, .. } => Some(hash.as_slice()),
            _ => None,
        })
        .collect();
    let Some((first, rest)) = hashes.split_first() else { return Nat::default() };
    let local = nat_d(algs.hash, ci, cr, cfg.local);
    let remote = nat_d(algs.hash, ci, cr, cfg.remote);
    Nat {
        supported: true,
        local_behind: cfg.fake_nat || *first != local.as_slice(),
        remote_behind: !rest.contains(&remote.as_slice()),
        vpngw_pair: cfg.announce_vpngw && peer_vpngw,
    }
}

/// Whether `m` carries the Vendor ID `vid`.
pub(super) fn has_vid(m: &Message, vid: &[u8]) -> bool {
    m.payloads.iter().any(|p| matches!(p, Payload::Vendor(v) if v.as_slice() == vid))
}

/// Why Main Mode failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MainModeError {
    #[error("malformed message: {0}")]
    Malformed(ParseError),
    #[error("unexpected message: {0}")]
    Unexpected(&'static str),
    #[error("no proposal chosen")]
    NoProposalChosen,
    #[error("invalid key exchange payload")]
    InvalidKe,
    /// Message 5 or 6 did not decrypt, or its HASH did not verify.
    #[error("authentication failed (pre-shared key mismatch?)")]
    AuthenticationFailed,
    #[error("peer identity {0} is not the one configured")]
    WrongIdentity(String),
}

impl From<ParseError> for MainModeError {
    fn from(e: ParseError) -> Self {
        Self::Malformed(e)
    }
}

/// An established ISAKMP SA, as Main Mode hands it on.
#[derive(Debug)]
pub(crate) struct Phase1Sa {
    pub(crate) cky_i: u64,
    pub(crate) cky_r: u64,
    pub(crate) algs: Phase1Algs,
    pub(crate) keys: Phase1Keys,
    /// The last CBC block of phase 1, from which each phase 2 exchange's IV comes.
    pub(crate) last_block: [u8; BLOCK],
    pub(crate) peer_id: Identity,
    /// The lifetime the responder's chosen transform names, if in seconds.
    pub(crate) life_secs: Option<u64>,
    pub(crate) nat: Nat,
    /// The peer sent INITIAL-CONTACT with its authentication: it holds no other SA with us.
    pub(crate) initial_contact: bool,
}

/// Keying state shared by both roles from message 3/4 on.
pub(super) struct Keyed {
    pub(super) algs: Phase1Algs,
    pub(super) keys: Phase1Keys,
    pub(super) g_xi: Vec<u8>,
    pub(super) g_xr: Vec<u8>,
}

/// How phase 1 ended, besides the keys: what `Keyed::established` needs.
pub(super) struct Ending {
    pub(super) cookies: (u64, u64),
    pub(super) last_block: [u8; BLOCK],
    pub(super) peer_id: Identity,
    pub(super) life_secs: Option<u64>,
    pub(super) nat: Nat,
    pub(super) initial_contact: bool,
}

impl Keyed {
    /// The established ISAKMP SA (Main or Aggressive Mode).
    pub(super) fn established(self, end: Ending) -> Box<Phase1Sa> {
        let Ending { cookies: (cky_i, cky_r), last_block, peer_id, life_secs, nat, initial_contact } = end;
        Box::new(Phase1Sa {
            cky_i,
            cky_r,
            algs: self.algs,
            keys: self.keys,
            last_block,
            peer_id,
            life_secs,
            nat,
            initial_contact,
        })
    }
}

pub(super) fn id_payload(id: &Identity) -> Id {
    // Protocol and port as most gateways send them for phase 1: UDP, 500.
    Id { id_type: id.id_type(), protocol: 17, port: 500, data: id.data() }
}

fn header(cky_i: u64, cky_r: u64) -> Header {
    Header { cky_i, cky_r, next_payload: 0, exchange: exchange::MAIN, flags: 0, message_id: 0, length: 0 }
}

/// The one payload of type `t`, or an error naming what is missing.
pub(super) fn one<'m>(m: &'m Message, t: u8, what: &'static str) -> Result<(usize, &'m Payload), MainModeError> {
    let mut it = m.payloads.iter().enumerate().filter(|(_, p)| p.ptype() == t);
    match (it.next(), it.next()) {
        (Some(x), None) => Ok(x),
        _ => Err(MainModeError::Unexpected(what)),
    }
}

pub(super) fn ke_and_nonce(m: &Message) -> Result<(Vec<u8>, Vec<u8>), MainModeError> {
    let (_, ke) = one(m, ptype::KE, "no KE payload")?;
    let (_, n) = one(m, ptype::NONCE, "no Nonce payload")?;
    match (ke, n) {
        (Payload::Ke(k), Payload::Nonce(n)) => Ok((k.clone(), n.clone())),
        _ => Err(MainModeError::Unexpected("no KE or Nonce payload")),
    }
}

fn check_cookies(m: &Message, cky_i: u64, cky_r: u64) -> Result<(), MainModeError> {
    if m.header.exchange != exchange::MAIN || m.header.cky_i != cky_i || m.header.cky_r != cky_r {
        return Err(MainModeError::Unexpected("not this Main Mode"));
    }
    Ok(())
}

/// Opens message 5 or 6: decrypts with `iv`, finds ID and HASH, checks the identity and
/// the HASH computed by `expected` over the ID body. Returns the peer identity and the
/// next IV.
fn open_auth(
    data: &[u8],
    key: &Keyed,
    iv: &[u8; BLOCK],
    cfg: &MainModeConfig<'_>,
    expected: impl Fn(&[u8]) -> Zeroizing<Vec<u8>>,
) -> Result<(Identity, [u8; BLOCK], bool), MainModeError> {
    let mut m = Message::parse(data)?;
    let cipher = key.keys.cipher().ok_or(MainModeError::NoProposalChosen)?;
    if !m.header.encrypted() {
        return Err(MainModeError::Unexpected("message 5/6 not encrypted"));
    }
    let next_iv = m.decrypt(data, &cipher, iv).map_err(|_| MainModeError::AuthenticationFailed)?;
    let (id_at, _) = one(&m, ptype::ID, "no ID payload").map_err(|_| MainModeError::AuthenticationFailed)?;
    let (_, hash) = one(&m, ptype::HASH, "no HASH payload").map_err(|_| MainModeError::AuthenticationFailed)?;
    let id_b = m.body(id_at).ok_or(MainModeError::AuthenticationFailed)?;
    let Payload::Hash(got) = hash else { return Err(MainModeError::AuthenticationFailed) };
    if !ct_eq(got, &expected(id_b)) {
        return Err(MainModeError::AuthenticationFailed);
    }
    let peer = peer_identity(&m, id_at, cfg)?;
    let contact = m.payloads.iter().any(|p| matches!(p, Payload::Notify(n) if n.msg_type == INITIAL_CONTACT));
    Ok((peer, next_iv, contact))
}

/// The peer's identity from the ID payload at `at` of `m`, checked against the
/// configured one.
pub(super) fn peer_identity(m: &Message, at: usize, cfg: &MainModeConfig<'_>) -> Result<Identity, MainModeError> {
    let Some(Payload::Id(id)) = m.payloads.get(at) else { return Err(MainModeError::Unexpected("no ID payload")) };
    let peer = Identity::from_wire(id.id_type, &id.data)
        .ok_or(MainModeError::WrongIdentity(format!("of type {}", id.id_type)))?;
    if cfg.remote_id.is_some_and(|want| *want != peer) {
        return Err(MainModeError::WrongIdentity(peer.to_string()));
    }
    Ok(peer)
}

/// Seals message 5 or 6: our ID and `hash(IDi/r_b)` under `iv`. Returns it and the next IV.
fn seal_auth(
    hdr: Header,
    key: &Keyed,
    iv: &[u8; BLOCK],
    cfg: &MainModeConfig<'_>,
    hash: impl Fn(&[u8]) -> Zeroizing<Vec<u8>>,
    contact: bool,
) -> Result<(Vec<u8>, [u8; BLOCK]), MainModeError> {
    let id = Payload::Id(id_payload(cfg.local_id));
    let id_chain = emit_chain(std::slice::from_ref(&id));
    let h = hash(id_chain.get(4..).unwrap_or_default());
    let mut payloads = vec![id, Payload::Hash(h.to_vec())];
    if contact {
        let spi = [hdr.cky_i.to_be_bytes(), hdr.cky_r.to_be_bytes()].concat();
        payloads.push(Payload::Notify(Notify {
            doi: DOI_IPSEC,
            protocol: proto::ISAKMP,
            msg_type: INITIAL_CONTACT,
            spi,
            data: vec![],
        }));
    }
    let chain = emit_chain(&payloads);
    let cipher = key.keys.cipher().ok_or(MainModeError::NoProposalChosen)?;
    Ok(seal(hdr, ptype::ID, &chain, &cipher, iv))
}

/// The initiator's stage.
enum IStage {
    Sent1 { sai_b: Vec<u8> },
    Sent3 { sai_b: Vec<u8>, algs: Phase1Algs, life: Option<u64>, kex: KeyExchange, ni: Zeroizing<Vec<u8>> },
    Sent5 { sai_b: Vec<u8>, keyed: Box<Keyed>, life: Option<u64>, iv: [u8; BLOCK] },
    Done,
}

/// Main Mode as initiator.
pub(crate) struct Initiator {
    cky_i: u64,
    cky_r: u64,
    stage: IStage,
    /// The responder announced RFC 3947.
    nat_t: bool,
    /// The responder sent the vpngw Vendor ID.
    peer_vpngw: bool,
    nat: Nat,
}

/// What the next step of an exchange gives.
#[derive(Debug)]
pub(crate) enum Step {
    /// Send this message and wait for the next.
    Send(Vec<u8>),
    /// Established; send this message (the responder's message 6) if any.
    Done(Box<Phase1Sa>, Option<Vec<u8>>),
}

impl Initiator {
    /// Message 1.
    pub(crate) fn start(cfg: &MainModeConfig<'_>, rng: &mut dyn Rng) -> (Self, Vec<u8>) {
        let cky_i = u64::from_be_bytes(nonzero(rng));
        let sa = Payload::Sa(phase1_offer(cfg.proposals, cfg.life_secs));
        let sai_b = emit_chain(std::slice::from_ref(&sa)).get(4..).unwrap_or_default().to_vec();
        let mut payloads = vec![sa, Payload::Vendor(VID_NAT_T.to_vec()), Payload::Vendor(VID_DPD.to_vec())];
        if cfg.announce_vpngw {
            payloads.push(Payload::Vendor(VPNGW_VENDOR_ID.to_vec()));
        }
        let msg = emit_clear(header(cky_i, 0), &payloads);
        let stage = IStage::Sent1 { sai_b };
        let me = Self { cky_i, cky_r: 0, stage, nat_t: false, peer_vpngw: false, nat: Nat::default() };
        (me, msg)
    }

    /// Our cookie.
    pub(crate) fn cookie(&self) -> u64 {
        self.cky_i
    }

    /// The responder's cookie (0 until message 2).
    pub(crate) fn peer_cookie(&self) -> u64 {
        self.cky_r
    }

    /// NAT detection so far (known from message 4 on): from message 5 on, a detected NAT
    /// moves the exchange to the NAT-T port (RFC 3947 4).
    pub(crate) fn nat(&self) -> Nat {
        self.nat
    }

    /// Message 5 is out: the next message is the responder's authenticated answer.
    pub(crate) fn authenticating(&self) -> bool {
        matches!(self.stage, IStage::Sent5 { .. })
    }

    /// Takes message 2, 4 or 6.
    pub(crate) fn handle(
        &mut self,
        cfg: &MainModeConfig<'_>,
        rng: &mut dyn Rng,
        data: &[u8],
    ) -> Result<Step, MainModeError> {
        // Messages 2 and 4 are unauthenticated: one that does not fit leaves the stage
        // as it was, to wait for the real one.
        match &self.stage {
            IStage::Sent1 { sai_b } => {
                let m = Message::parse(data)?;
                if m.header.cky_r == 0 {
                    return Err(MainModeError::Unexpected("no responder cookie"));
                }
                check_cookies(&m, self.cky_i, m.header.cky_r)?;
                let (_, sa) = one(&m, ptype::SA, "no SA payload")?;
                let Payload::Sa(sa) = sa else { return Err(MainModeError::Unexpected("no SA payload")) };
                let (algs, life) = accept_phase1_answer(sa, cfg.proposals).ok_or(MainModeError::NoProposalChosen)?;
                let sai_b = sai_b.clone();
                self.cky_r = m.header.cky_r;
                self.nat_t = has_vid(&m, &VID_NAT_T);
                self.peer_vpngw = has_vid(&m, &VPNGW_VENDOR_ID);
                let kex = KeyExchange::generate(algs.dh, rng);
                let ni = nonce(rng);
                let mut payloads = vec![Payload::Ke(kex.public_value()), Payload::Nonce(ni.to_vec())];
                if self.nat_t {
                    payloads.extend(nat_d_payloads(algs, self.cky_i, self.cky_r, cfg));
                }
                let msg = emit_clear(header(self.cky_i, self.cky_r), &payloads);
                self.stage = IStage::Sent3 { sai_b, algs, life, kex, ni };
                Ok(Step::Send(msg))
            }
            IStage::Sent3 { sai_b, algs, life, kex, ni } => {
                let m = Message::parse(data)?;
                check_cookies(&m, self.cky_i, self.cky_r)?;
                let (g_xr, nr) = ke_and_nonce(&m)?;
                let g_xy = kex.agree(&g_xr).map_err(|_| MainModeError::InvalidKe)?;
                let (algs, life) = (*algs, *life);
                if self.nat_t {
                    self.nat = detect_nat(&m, algs, (self.cky_i, self.cky_r), cfg, self.peer_vpngw);
                }
                let keys =
                    Phase1Keys::derive_psk(algs.hash, algs.encr, cfg.psk, ni, &nr, &g_xy, self.cky_i, self.cky_r);
                let keyed = Box::new(Keyed { algs, keys, g_xi: kex.public_value(), g_xr });
                let iv = phase1_iv(algs.hash, &keyed.g_xi, &keyed.g_xr);
                let (ci, cr) = (self.cky_i, self.cky_r);
                let (msg, next) = seal_auth(
                    header(ci, cr),
                    &keyed,
                    &iv,
                    cfg,
                    |id_b| keyed.keys.hash_i(&keyed.g_xi, &keyed.g_xr, ci, cr, sai_b, id_b),
                    cfg.initial_contact,
                )?;
                self.stage = IStage::Sent5 { sai_b: sai_b.clone(), keyed, life, iv: next };
                Ok(Step::Send(msg))
            }
            IStage::Sent5 { .. } | IStage::Done => self.finish(cfg, data),
        }
    }

    /// Takes message 6.
    fn finish(&mut self, cfg: &MainModeConfig<'_>, data: &[u8]) -> Result<Step, MainModeError> {
        match std::mem::replace(&mut self.stage, IStage::Done) {
            IStage::Sent5 { sai_b, keyed, life, iv } => {
                let (ci, cr) = (self.cky_i, self.cky_r);
                let checked = Message::parse(data)
                    .map_err(MainModeError::from)
                    .and_then(|m| check_cookies(&m, ci, cr))
                    .and_then(|()| {
                        open_auth(data, &keyed, &iv, cfg, |id_b| {
                            keyed.keys.hash_r(&keyed.g_xi, &keyed.g_xr, ci, cr, &sai_b, id_b)
                        })
                    });
                let (peer_id, last_block, initial_contact) = match checked {
                    Ok(x) => x,
                    Err(e) => {
                        // Unauthenticated: keep waiting for the real message 6.
                        self.stage = IStage::Sent5 { sai_b, keyed, life, iv };
                        return Err(e);
                    }
                };
                let end =
                    Ending { cookies: (ci, cr), last_block, peer_id, life_secs: life, nat: self.nat, initial_contact };
                Ok(Step::Done(keyed.established(end), None))
            }
            other => {
                self.stage = other;
                Err(MainModeError::Unexpected("Main Mode is over"))
            }
        }
    }
}

/// The responder's stage.
enum RStage {
    Sent2 { sai_b: Vec<u8>, algs: Phase1Algs, life: Option<u64> },
    Sent4 { sai_b: Vec<u8>, keyed: Box<Keyed>, life: Option<u64> },
    Done,
}

/// Main Mode as responder.
pub(crate) struct Responder {
    cky_i: u64,
    cky_r: u64,
    stage: RStage,
    /// The initiator announced RFC 3947.
    nat_t: bool,
    /// The initiator sent the vpngw Vendor ID.
    peer_vpngw: bool,
    nat: Nat,
}

impl Responder {
    /// Takes message 1 and gives message 2.
    pub(crate) fn accept(
        cfg: &MainModeConfig<'_>,
        rng: &mut dyn Rng,
        data: &[u8],
    ) -> Result<(Self, Vec<u8>), MainModeError> {
        let m = Message::parse(data)?;
        if m.header.exchange != exchange::MAIN || m.header.cky_r != 0 || m.header.message_id != 0 {
            return Err(MainModeError::Unexpected("not a Main Mode message 1"));
        }
        let (sa_at, sa) = one(&m, ptype::SA, "no SA payload")?;
        let Payload::Sa(sa) = sa else { return Err(MainModeError::Unexpected("no SA payload")) };
        let choice = select_phase1(sa, cfg.proposals).ok_or(MainModeError::NoProposalChosen)?;
        let sai_b = m.body(sa_at).unwrap_or_default().to_vec();
        let cky_r = u64::from_be_bytes(nonzero(rng));
        let nat_t = has_vid(&m, &VID_NAT_T);
        let peer_vpngw = has_vid(&m, &VPNGW_VENDOR_ID);
        let mut payloads = vec![Payload::Sa(choice.answer)];
        payloads.extend(vendor_ids(cfg, nat_t));
        let msg = emit_clear(header(m.header.cky_i, cky_r), &payloads);
        let stage = RStage::Sent2 { sai_b, algs: choice.algs, life: choice.life_secs };
        Ok((Self { cky_i: m.header.cky_i, cky_r, stage, nat_t, peer_vpngw, nat: Nat::default() }, msg))
    }

    /// Our cookie.
    pub(crate) fn cookie(&self) -> u64 {
        self.cky_r
    }

    /// The initiator's cookie.
    pub(crate) fn peer_cookie(&self) -> u64 {
        self.cky_i
    }

    /// Message 4 is out: the next message is the initiator's authentication.
    pub(crate) fn authenticating(&self) -> bool {
        matches!(self.stage, RStage::Sent4 { .. })
    }

    /// Takes message 3 or 5.
    pub(crate) fn handle(
        &mut self,
        cfg: &MainModeConfig<'_>,
        rng: &mut dyn Rng,
        data: &[u8],
    ) -> Result<Step, MainModeError> {
        let (ci, cr) = (self.cky_i, self.cky_r);
        match std::mem::replace(&mut self.stage, RStage::Done) {
            RStage::Sent2 { sai_b, algs, life } => {
                let parsed = Message::parse(data).map_err(MainModeError::from).and_then(|m| {
                    check_cookies(&m, ci, cr)?;
                    let nat =
                        if self.nat_t { detect_nat(&m, algs, (ci, cr), cfg, self.peer_vpngw) } else { Nat::default() };
                    ke_and_nonce(&m).map(|(k, n)| (k, n, nat))
                });
                let (g_xi, ni, nat) = match parsed {
                    Ok(x) if KeyExchange::plausible_public(algs.dh, &x.0) => x,
                    other => {
                        self.stage = RStage::Sent2 { sai_b, algs, life };
                        return Err(other.err().unwrap_or(MainModeError::InvalidKe));
                    }
                };
                let kex = KeyExchange::generate(algs.dh, rng);
                let g_xy = match kex.agree(&g_xi) {
                    Ok(s) => s,
                    Err(_) => {
                        self.stage = RStage::Sent2 { sai_b, algs, life };
                        return Err(MainModeError::InvalidKe);
                    }
                };
                let nr = nonce(rng);
                let keys = Phase1Keys::derive_psk(algs.hash, algs.encr, cfg.psk, &ni, &nr, &g_xy, ci, cr);
                let g_xr = kex.public_value();
                let mut payloads = vec![Payload::Ke(g_xr.clone()), Payload::Nonce(nr.to_vec())];
                if self.nat_t {
                    payloads.extend(nat_d_payloads(algs, ci, cr, cfg));
                }
                let msg = emit_clear(header(ci, cr), &payloads);
                self.nat = nat;
                self.stage = RStage::Sent4 { sai_b, keyed: Box::new(Keyed { algs, keys, g_xi, g_xr }), life };
                Ok(Step::Send(msg))
            }
            RStage::Sent4 { sai_b, keyed, life } => {
                let iv = phase1_iv(keyed.algs.hash, &keyed.g_xi, &keyed.g_xr);
                let checked = Message::parse(data)
                    .map_err(MainModeError::from)
                    .and_then(|m| check_cookies(&m, ci, cr))
                    .and_then(|()| {
                        open_auth(data, &keyed, &iv, cfg, |id_b| {
                            keyed.keys.hash_i(&keyed.g_xi, &keyed.g_xr, ci, cr, &sai_b, id_b)
                        })
                    });
                let (peer_id, iv6, initial_contact) = match checked {
                    Ok(x) => x,
                    Err(e) => {
                        self.stage = RStage::Sent4 { sai_b, keyed, life };
                        return Err(e);
                    }
                };
                let (msg, last_block) = seal_auth(
                    header(ci, cr),
                    &keyed,
                    &iv6,
                    cfg,
                    |id_b| keyed.keys.hash_r(&keyed.g_xi, &keyed.g_xr, ci, cr, &sai_b, id_b),
                    false,
                )?;
                let end =
                    Ending { cookies: (ci, cr), last_block, peer_id, life_secs: life, nat: self.nat, initial_contact };
                Ok(Step::Done(keyed.established(end), Some(msg)))
            }
            RStage::Done => Err(MainModeError::Unexpected("Main Mode is over")),
        }
    }
}

#[cfg(test)]
mod tests;
