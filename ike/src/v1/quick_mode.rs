//! Quick Mode (RFC 2409 5.5) with or without PFS, tunnel mode, both roles, as an
//! exchange object under an established [`Phase1Sa`]:
//!
//! ```text
//!  1  HDR*, HASH(1), SA, Ni [, KE] , IDci, IDcr            -->
//!  2      <--  HDR*, HASH(2), SA, Nr [, KE] , IDci, IDcr [, N(RESPONDER-LIFETIME)]
//!  3  HDR*, HASH(3)                                        -->
//! ```
//!
//! The IDs carry the traffic selectors (RFC 2407 4.6.2: an address, a subnet or a
//! range, one protocol, one port or any). The responder takes the initiator's selectors
//! when our configuration contains them (IKEv1 has no narrowing) and knows both SAs'
//! keys once message 1 is in: it installs inbound before sending message 2 and outbound
//! once message 3 proves the initiator has both (make-before-break as with IKEv2).
//! The commit bit is never set and ignored when received. Each exchange has its own
//! IV chain from the last phase-1 block and its message ID.

use super::keys::phase2_iv;
use super::main_mode::Phase1Sa;
use super::message::payload::{idtype, life, p2attr, parse_attrs, proto, Attr, Id, Notify, Payload, DOI_IPSEC};
use super::message::{emit_chain, exchange, ptype, seal, Header, Message, ParseError, BLOCK};
use super::proposal::{accept_quick_answer, quick_offer, select_quick, QuickAlgs, QuickTerms};
use super::{nonce, nonzero};
use crate::crypto::{ct_eq, KeyExchange};
use crate::Rng;
use ipsec_types::{EspKey, EspProposal, TrafficSelector};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use zeroize::Zeroizing;

/// The RESPONDER-LIFETIME notify (RFC 2407 4.6.3.1).
pub(crate) const RESPONDER_LIFETIME: u16 = 24576;

/// What Quick Mode needs from the tunnel's configuration.
pub(crate) struct QuickConfig<'a> {
    pub(crate) proposals: &'a [EspProposal],
    pub(crate) local_ts: &'a TrafficSelector,
    pub(crate) remote_ts: &'a TrafficSelector,
    pub(crate) life_secs: u64,
    /// Tunnel, or UDP-encapsulated tunnel behind a NAT.
    pub(crate) encap: u64,
}

/// Why Quick Mode failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum QuickError {
    #[error("malformed message: {0}")]
    Malformed(ParseError),
    #[error("unexpected message: {0}")]
    Unexpected(&'static str),
    /// The HASH payload did not verify (or the message did not decrypt).
    #[error("message not authenticated")]
    NotAuthenticated,
    #[error("no proposal chosen")]
    NoProposalChosen,
    #[error("traffic selectors not acceptable")]
    TsUnacceptable,
    #[error("invalid key exchange payload")]
    InvalidKe,
}

impl From<ParseError> for QuickError {
    fn from(e: ParseError) -> Self {
        Self::Malformed(e)
    }
}

/// A negotiated pair of ESP SAs.
pub(crate) struct QuickSa {
    pub(crate) algs: QuickAlgs,
    /// Our SPI: the peer sends to it.
    pub(crate) spi_in: u32,
    /// The peer's SPI: we send to it.
    pub(crate) spi_out: u32,
    pub(crate) key_in: EspKey,
    pub(crate) key_out: EspKey,
    pub(crate) local_ts: TrafficSelector,
    pub(crate) remote_ts: TrafficSelector,
    /// The lifetime agreed (the responder's if it asked for a shorter one).
    pub(crate) life_secs: Option<u64>,
    pub(crate) encap: u64,
}

impl std::fmt::Debug for QuickSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuickSa")
            .field("algs", &self.algs)
            .field("spi_in", &format_args!("{:08x}", self.spi_in))
            .field("spi_out", &format_args!("{:08x}", self.spi_out))
            .field("life_secs", &self.life_secs)
            .finish_non_exhaustive()
    }
}

/// The ID payload of a traffic selector: an address for a single host, a subnet for a
/// prefix, a range otherwise; one port or any. `None` if a port range cannot be said.
pub(crate) fn ts_to_id(ts: &TrafficSelector) -> Option<Id> {
    let port = match (ts.start_port, ts.end_port) {
        (0, 65535) => 0,
        (a, b) if a == b => a,
        _ => return None,
    };
    let (id_type, data) = match (ts.start, ts.end, ts.prefix_len()) {
        (IpAddr::V4(a), _, Some(32)) => (idtype::IPV4_ADDR, a.octets().to_vec()),
        (IpAddr::V6(a), _, Some(128)) => (idtype::IPV6_ADDR, a.octets().to_vec()),
        (IpAddr::V4(a), _, Some(p)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(p)).unwrap_or(0);
            (idtype::IPV4_SUBNET, [a.octets(), mask.to_be_bytes()].concat())
        }
        (IpAddr::V6(a), _, Some(p)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(p)).unwrap_or(0);
            (idtype::IPV6_SUBNET, [a.octets().to_vec(), mask.to_be_bytes().to_vec()].concat())
        }
        (IpAddr::V4(a), IpAddr::V4(b), None) => (idtype::IPV4_RANGE, [a.octets(), b.octets()].concat()),
        (IpAddr::V6(a), IpAddr::V6(b), None) => {
            (idtype::IPV6_RANGE, [a.octets().to_vec(), b.octets().to_vec()].concat())
        }
        _ => return None,
    };
    Some(Id { id_type, protocol: ts.protocol, port, data })
}

/// The traffic selector of an ID payload; `None` for a name, a non-contiguous mask or
/// an empty range.
pub(crate) fn id_to_ts(id: &Id) -> Option<TrafficSelector> {
    let v4 = |b: &[u8]| <[u8; 4]>::try_from(b).ok().map(|a| IpAddr::V4(Ipv4Addr::from(a)));
    let v6 = |b: &[u8]| <[u8; 16]>::try_from(b).ok().map(|a| IpAddr::V6(Ipv6Addr::from(a)));
    let mut ts = match id.id_type {
        idtype::IPV4_ADDR => TrafficSelector::from_prefix(v4(&id.data)?, 32)?,
        idtype::IPV6_ADDR => TrafficSelector::from_prefix(v6(&id.data)?, 128)?,
        idtype::IPV4_SUBNET => {
            let (a, m) = id.data.split_at_checked(4)?;
            let m = u32::from_be_bytes(m.try_into().ok()?);
            if m.leading_ones() + m.trailing_zeros() != 32 {
                return None;
            }
            TrafficSelector::from_prefix(v4(a)?, u8::try_from(m.leading_ones()).ok()?)?
        }
        idtype::IPV6_SUBNET => {
            let (a, m) = id.data.split_at_checked(16)?;
            let m = u128::from_be_bytes(m.try_into().ok()?);
            if m.leading_ones() + m.trailing_zeros() != 128 {
                return None;
            }
            TrafficSelector::from_prefix(v6(a)?, u8::try_from(m.leading_ones()).ok()?)?
        }
        idtype::IPV4_RANGE | idtype::IPV6_RANGE => {
            let half = id.data.len() / 2;
            let (a, b) = id.data.split_at_checked(half)?;
            let (start, end) = if id.id_type == idtype::IPV4_RANGE { (v4(a)?, v4(b)?) } else { (v6(a)?, v6(b)?) };
            let probe = TrafficSelector { protocol: 0, start_port: 0, end_port: 65535, start, end };
            // An empty range (start after end) selects nothing.
            probe.contains_addr(start).then_some(probe)?
        }
        _ => return None,
    };
    ts.protocol = id.protocol;
    if id.port != 0 {
        ts.start_port = id.port;
        ts.end_port = id.port;
    }
    Some(ts)
}

fn quick_header(p1: &Phase1Sa, message_id: u32) -> Header {
    Header {
        cky_i: p1.cky_i,
        cky_r: p1.cky_r,
        next_payload: 0,
        exchange: exchange::QUICK,
        flags: 0,
        message_id,
        length: 0,
    }
}

/// Seals `HASH(hash(rest)) | rest`.
fn seal_hashed(
    p1: &Phase1Sa,
    message_id: u32,
    iv: &[u8; BLOCK],
    payloads: Vec<Payload>,
    hash: impl Fn(&[u8]) -> Zeroizing<Vec<u8>>,
) -> Result<(Vec<u8>, [u8; BLOCK]), QuickError> {
    let rest = emit_chain(&payloads);
    let h = hash(&rest);
    let mut all = Vec::with_capacity(payloads.len() + 1);
    all.push(Payload::Hash(h.to_vec()));
    all.extend(payloads);
    let cipher = p1.keys.cipher().ok_or(QuickError::NoProposalChosen)?;
    Ok(seal(quick_header(p1, message_id), ptype::HASH, &emit_chain(&all), &cipher, iv))
}

/// Decrypts a Quick Mode message of `message_id` with `iv` and checks that it starts
/// with a HASH payload equal to `hash(message after it)`. Returns it and the next IV.
fn open_hashed(
    p1: &Phase1Sa,
    message_id: u32,
    iv: &[u8; BLOCK],
    data: &[u8],
    hash: impl Fn(&[u8]) -> Zeroizing<Vec<u8>>,
) -> Result<(Message, [u8; BLOCK]), QuickError> {
    let mut m = Message::parse(data)?;
    if m.header.exchange != exchange::QUICK
        || m.header.message_id != message_id
        || (m.header.cky_i, m.header.cky_r) != (p1.cky_i, p1.cky_r)
    {
        return Err(QuickError::Unexpected("not this Quick Mode"));
    }
    let cipher = p1.keys.cipher().ok_or(QuickError::NoProposalChosen)?;
    let next = m.decrypt(data, &cipher, iv).map_err(|_| QuickError::NotAuthenticated)?;
    let Some(Payload::Hash(got)) = m.payloads.first() else { return Err(QuickError::NotAuthenticated) };
    let rest = m.after(0).ok_or(QuickError::NotAuthenticated)?;
    if !ct_eq(got, &hash(rest)) {
        return Err(QuickError::NotAuthenticated);
    }
    Ok((m, next))
}

/// The SA, nonce, optional KE and optional two IDs of a Quick Mode message.
struct Parts<'m> {
    sa: &'m super::message::payload::Sa,
    nonce: &'m [u8],
    ke: Option<&'m [u8]>,
    ids: Option<(&'m Id, &'m Id)>,
    notifies: Vec<&'m Notify>,
}

fn parts(m: &Message) -> Result<Parts<'_>, QuickError> {
    let mut sa = None;
    let mut nonce = None;
    let mut ke = None;
    let mut ids = Vec::new();
    let mut notifies = Vec::new();
    for p in m.payloads.iter().skip(1) {
        match p {
            Payload::Sa(s) if sa.is_none() => sa = Some(s),
            Payload::Nonce(n) if nonce.is_none() => nonce = Some(n.as_slice()),
            Payload::Ke(k) if ke.is_none() => ke = Some(k.as_slice()),
            Payload::Id(id) => ids.push(id),
            Payload::Notify(n) => notifies.push(n),
            Payload::Vendor(_) | Payload::NatOa { .. } | Payload::Other(_) => {}
            _ => return Err(QuickError::Unexpected("duplicate or misplaced payload")),
        }
    }
    let ids = match ids.as_slice() {
        [] => None,
        [a, b] => Some((*a, *b)),
        _ => return Err(QuickError::Unexpected("not two ID payloads")),
    };
    Ok(Parts {
        sa: sa.ok_or(QuickError::Unexpected("no SA payload"))?,
        nonce: nonce.ok_or(QuickError::Unexpected("no Nonce payload"))?,
        ke,
        ids,
        notifies,
    })
}

/// Both directions' keys: KEYMAT under each receiver's SPI.
#[allow(clippy::too_many_arguments)]
fn esp_keys(
    p1: &Phase1Sa,
    algs: QuickAlgs,
    g_qm: Option<&[u8]>,
    spi_in: u32,
    spi_out: u32,
    ni: &[u8],
    nr: &[u8],
) -> Result<(EspKey, EspKey), QuickError> {
    let len = EspKey::keymat_len(algs.encr, algs.integ).ok_or(QuickError::NoProposalChosen)?;
    let km = |spi| p1.keys.quick_keymat(g_qm, proto::ESP, spi, ni, nr, len);
    let key_in = EspKey::from_keymat(algs.encr, algs.integ, &km(spi_in)).ok_or(QuickError::NoProposalChosen)?;
    let key_out = EspKey::from_keymat(algs.encr, algs.integ, &km(spi_out)).ok_or(QuickError::NoProposalChosen)?;
    Ok((key_in, key_out))
}

/// The lifetime in seconds a RESPONDER-LIFETIME notify for ESP names, if any (its data
/// is an attribute list: life type, then duration, TV or TLV).
fn responder_lifetime(notifies: &[&Notify]) -> Option<u64> {
    notifies.iter().filter(|n| n.msg_type == RESPONDER_LIFETIME && n.protocol == proto::ESP).find_map(|n| {
        let mut secs = None;
        let mut seconds = false;
        for a in parse_attrs(&n.data)? {
            match a.ty {
                p2attr::LIFE_TYPE => seconds = a.value() == Some(life::SECONDS),
                p2attr::LIFE_DURATION if seconds => secs = a.value(),
                _ => {}
            }
        }
        secs
    })
}

/// Quick Mode as initiator, waiting for message 2.
pub(crate) struct QuickInitiator {
    message_id: u32,
    iv: [u8; BLOCK],
    spi_in: u32,
    ni: Zeroizing<Vec<u8>>,
    kex: Option<KeyExchange>,
    local_ts: TrafficSelector,
    remote_ts: TrafficSelector,
}

impl QuickInitiator {
    /// Message 1, offering our proposals under our SPI `spi_in`. With PFS, the KE is
    /// for the first proposal's group.
    pub(crate) fn start(
        p1: &Phase1Sa,
        cfg: &QuickConfig<'_>,
        rng: &mut dyn Rng,
        spi_in: u32,
    ) -> Result<(Self, Vec<u8>), QuickError> {
        let message_id = u32::from_be_bytes(nonzero(rng));
        let terms = QuickTerms { encap: cfg.encap, life_secs: Some(cfg.life_secs), life_kb: None };
        let sa = quick_offer(cfg.proposals, spi_in, terms);
        let ni = nonce(rng);
        let kex = cfg.proposals.first().and_then(|p| p.dh.first()).map(|g| KeyExchange::generate(*g, rng));
        let (idci, idcr) = match (ts_to_id(cfg.local_ts), ts_to_id(cfg.remote_ts)) {
            (Some(a), Some(b)) => (a, b),
            _ => return Err(QuickError::TsUnacceptable),
        };
        let mut payloads = vec![Payload::Sa(sa), Payload::Nonce(ni.to_vec())];
        payloads.extend(kex.as_ref().map(|k| Payload::Ke(k.public_value())));
        payloads.extend([Payload::Id(idci), Payload::Id(idcr)]);
        let iv0 = phase2_iv(p1.algs.hash, &p1.last_block, message_id);
        let (msg, iv) = seal_hashed(p1, message_id, &iv0, payloads, |rest| p1.keys.quick_hash1(message_id, rest))?;
        let me = Self { message_id, iv, spi_in, ni, kex, local_ts: *cfg.local_ts, remote_ts: *cfg.remote_ts };
        Ok((me, msg))
    }

    /// The exchange's message ID.
    pub(crate) fn message_id(&self) -> u32 {
        self.message_id
    }

    /// Our selector (IDci).
    pub(crate) fn local_ts(&self) -> &TrafficSelector {
        &self.local_ts
    }

    /// The peer's selector (IDcr).
    pub(crate) fn remote_ts(&self) -> &TrafficSelector {
        &self.remote_ts
    }

    /// Takes message 2: the SA pair and message 3. On an error the exchange is unchanged
    /// (a message that does not verify is not the peer's).
    pub(crate) fn handle(
        &self,
        p1: &Phase1Sa,
        cfg: &QuickConfig<'_>,
        data: &[u8],
    ) -> Result<(QuickSa, Vec<u8>), QuickError> {
        let mid = self.message_id;
        let (m, iv) = open_hashed(p1, mid, &self.iv, data, |rest| p1.keys.quick_hash2(mid, &self.ni, rest))?;
        let parts = parts(&m)?;
        let (algs, spi_out, terms) =
            accept_quick_answer(parts.sa, cfg.proposals).ok_or(QuickError::NoProposalChosen)?;
        if let Some((idci, idcr)) = parts.ids {
            let same =
                id_to_ts(idci).as_ref() == Some(&self.local_ts) && id_to_ts(idcr).as_ref() == Some(&self.remote_ts);
            if !same {
                return Err(QuickError::TsUnacceptable);
            }
        }
        let g_qm = match (algs.pfs, &self.kex, parts.ke) {
            (None, _, None) => None,
            (Some(g), Some(k), Some(ke)) if k.group() == g => Some(k.agree(ke).map_err(|_| QuickError::InvalidKe)?),
            _ => return Err(QuickError::InvalidKe),
        };
        let (key_in, key_out) =
            esp_keys(p1, algs, g_qm.as_deref().map(|v| v.as_slice()), self.spi_in, spi_out, &self.ni, parts.nonce)?;
        let life_secs = match (terms.life_secs, responder_lifetime(&parts.notifies)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let cipher = p1.keys.cipher().ok_or(QuickError::NoProposalChosen)?;
        let h3 = Payload::Hash(p1.keys.quick_hash3(mid, &self.ni, parts.nonce).to_vec());
        let (msg3, _) = seal(quick_header(p1, mid), ptype::HASH, &emit_chain(&[h3]), &cipher, &iv);
        let sa = QuickSa {
            algs,
            spi_in: self.spi_in,
            spi_out,
            key_in,
            key_out,
            local_ts: self.local_ts,
            remote_ts: self.remote_ts,
            life_secs,
            encap: terms.encap,
        };
        Ok((sa, msg3))
    }
}

/// Quick Mode as responder, waiting for message 3.
pub(crate) struct QuickResponder {
    message_id: u32,
    iv: [u8; BLOCK],
    ni: Vec<u8>,
    nr: Zeroizing<Vec<u8>>,
}

impl QuickResponder {
    /// Takes message 1 (decrypted with the IV of its message ID): the SA pair (to install
    /// inbound before sending message 2), message 2, and the exchange waiting for
    /// message 3. Our SPI is `spi_in`.
    pub(crate) fn accept(
        p1: &Phase1Sa,
        cfg: &QuickConfig<'_>,
        rng: &mut dyn Rng,
        data: &[u8],
        spi_in: u32,
    ) -> Result<(Self, QuickSa, Vec<u8>), QuickError> {
        let mid = Message::parse(data)?.header.message_id;
        if mid == 0 {
            return Err(QuickError::Unexpected("Quick Mode with message ID 0"));
        }
        let iv0 = phase2_iv(p1.algs.hash, &p1.last_block, mid);
        let (m, iv) = open_hashed(p1, mid, &iv0, data, |rest| p1.keys.quick_hash1(mid, rest))?;
        let parts = parts(&m)?;
        let choice = select_quick(parts.sa, cfg.proposals, spi_in).ok_or(QuickError::NoProposalChosen)?;
        // IDci is the initiator's side: our remote. Without IDs, the peers' addresses
        // (RFC 2409 5.5), which a site-to-site tunnel does not use.
        let (idci, idcr) = parts.ids.ok_or(QuickError::TsUnacceptable)?;
        let (their_local, their_remote) = match (id_to_ts(idci), id_to_ts(idcr)) {
            (Some(a), Some(b)) => (a, b),
            _ => return Err(QuickError::TsUnacceptable),
        };
        if !cfg.remote_ts.is_superset_of(&their_local) || !cfg.local_ts.is_superset_of(&their_remote) {
            return Err(QuickError::TsUnacceptable);
        }
        let (kex, g_qm) = match (choice.algs.pfs, parts.ke) {
            (None, None) => (None, None),
            (Some(g), Some(ke)) if KeyExchange::plausible_public(g, ke) => {
                let k = KeyExchange::generate(g, rng);
                let s = k.agree(ke).map_err(|_| QuickError::InvalidKe)?;
                (Some(k), Some(s))
            }
            _ => return Err(QuickError::InvalidKe),
        };
        let nr = nonce(rng);
        let (key_in, key_out) = esp_keys(
            p1,
            choice.algs,
            g_qm.as_deref().map(|v| v.as_slice()),
            spi_in,
            choice.peer_spi,
            parts.nonce,
            &nr,
        )?;
        let life_secs = match choice.terms.life_secs {
            Some(t) => Some(t.min(cfg.life_secs)),
            None => Some(cfg.life_secs),
        };
        let mut payloads = vec![Payload::Sa(choice.answer), Payload::Nonce(nr.to_vec())];
        payloads.extend(kex.as_ref().map(|k| Payload::Ke(k.public_value())));
        payloads.extend([Payload::Id(idci.clone()), Payload::Id(idcr.clone())]);
        if choice.terms.life_secs.is_some_and(|t| t > cfg.life_secs) {
            let mut data = Vec::new();
            Attr::new(p2attr::LIFE_TYPE, life::SECONDS).emit(&mut data);
            Attr::new(p2attr::LIFE_DURATION, cfg.life_secs).emit(&mut data);
            payloads.push(Payload::Notify(Notify {
                doi: DOI_IPSEC,
                protocol: proto::ESP,
                msg_type: RESPONDER_LIFETIME,
                spi: spi_in.to_be_bytes().to_vec(),
                data,
            }));
        }
        let ni = parts.nonce.to_vec();
        let (msg, iv) = seal_hashed(p1, mid, &iv, payloads, |rest| p1.keys.quick_hash2(mid, &ni, rest))?;
        let sa = QuickSa {
            algs: choice.algs,
            spi_in,
            spi_out: choice.peer_spi,
            key_in,
            key_out,
            local_ts: their_remote,
            remote_ts: their_local,
            life_secs,
            encap: choice.terms.encap,
        };
        Ok((Self { message_id: mid, iv, ni, nr }, sa, msg))
    }

    /// The exchange's message ID.
    pub(crate) fn message_id(&self) -> u32 {
        self.message_id
    }

    /// Takes message 3: the initiator has both SAs; install outbound now.
    pub(crate) fn handle(&self, p1: &Phase1Sa, data: &[u8]) -> Result<(), QuickError> {
        let mid = self.message_id;
        let mut m = Message::parse(data)?;
        let h = m.header;
        if h.exchange != exchange::QUICK || h.message_id != mid || (h.cky_i, h.cky_r) != (p1.cky_i, p1.cky_r) {
            return Err(QuickError::Unexpected("not this Quick Mode"));
        }
        let cipher = p1.keys.cipher().ok_or(QuickError::NoProposalChosen)?;
        m.decrypt(data, &cipher, &self.iv).map_err(|_| QuickError::NotAuthenticated)?;
        match m.payloads.as_slice() {
            [Payload::Hash(h)] if ct_eq(h, &p1.keys.quick_hash3(mid, &self.ni, &self.nr)) => Ok(()),
            _ => Err(QuickError::NotAuthenticated),
        }
    }
}

#[cfg(test)]
mod tests;
