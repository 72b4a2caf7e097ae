//! The Informational exchange (RFC 2409 5.7) of an established ISAKMP SA: one
//! protected message, `HDR*, HASH(1), N/D`, with a fresh message ID and its own IV
//! chain; and what travels in it: Delete (RFC 2408 3.15) for IPsec and ISAKMP SAs,
//! INITIAL-CONTACT (RFC 2407 4.6.3.3), dead peer detection's R-U-THERE and
//! R-U-THERE-ACK (RFC 3706 5), and the Vendor IDs that announce DPD and NAT-T.

use super::keys::phase2_iv;
use super::main_mode::Phase1Sa;
use super::message::payload::{proto, Delete, Notify, Payload, DOI_IPSEC};
use super::message::{emit_chain, exchange, ptype, seal, Header, Message, ParseError};
use crate::crypto::ct_eq;
use crate::Rng;

/// Notify types.
pub(crate) mod notify {
    /// RFC 2408 3.14.1.
    pub(crate) const NO_PROPOSAL_CHOSEN: u16 = 14;
    pub(crate) const INVALID_HASH_INFORMATION: u16 = 23;
    pub(crate) const AUTHENTICATION_FAILED: u16 = 24;
    /// RFC 2407 4.6.3.3.
    pub(crate) const INITIAL_CONTACT: u16 = 24578;
    /// RFC 3706 5.
    pub(crate) const R_U_THERE: u16 = 36136;
    pub(crate) const R_U_THERE_ACK: u16 = 36137;
}

/// The Vendor ID announcing DPD support (RFC 3706 5: major 1, minor 0).
pub(crate) const VID_DPD: [u8; 16] =
    [0xaf, 0xca, 0xd7, 0x13, 0x68, 0xa1, 0xf1, 0xc9, 0x6b, 0x86, 0x96, 0xfc, 0x77, 0x57, 0x01, 0x00];
/// The Vendor ID announcing RFC 3947 NAT traversal: MD5("RFC 3947").
pub(crate) const VID_NAT_T: [u8; 16] =
    [0x4a, 0x13, 0x1c, 0x81, 0x07, 0x03, 0x58, 0x45, 0x5c, 0x57, 0x28, 0xf2, 0x0e, 0x95, 0x45, 0x2f];

/// The ISAKMP SA's SPI as Notify and Delete payloads carry it: CKY-I | CKY-R.
pub(crate) fn isakmp_spi(p1: &Phase1Sa) -> Vec<u8> {
    [p1.cky_i.to_be_bytes(), p1.cky_r.to_be_bytes()].concat()
}

/// A notify about the ISAKMP SA itself (INITIAL-CONTACT, R-U-THERE and its ACK).
pub(crate) fn isakmp_notify(p1: &Phase1Sa, msg_type: u16, data: Vec<u8>) -> Payload {
    Payload::Notify(Notify { doi: DOI_IPSEC, protocol: proto::ISAKMP, msg_type, spi: isakmp_spi(p1), data })
}

/// R-U-THERE (or its ACK) with sequence number `seq`.
pub(crate) fn dpd(p1: &Phase1Sa, ack: bool, seq: u32) -> Payload {
    let t = if ack { notify::R_U_THERE_ACK } else { notify::R_U_THERE };
    isakmp_notify(p1, t, seq.to_be_bytes().to_vec())
}

/// A Delete of our inbound ESP SAs `spis` (the peer's outbound).
pub(crate) fn delete_esp(spis: &[u32]) -> Payload {
    Payload::Delete(Delete {
        doi: DOI_IPSEC,
        protocol: proto::ESP,
        spi_size: 4,
        spis: spis.iter().flat_map(|s| s.to_be_bytes()).collect(),
    })
}

/// A Delete of the ISAKMP SA.
pub(crate) fn delete_isakmp(p1: &Phase1Sa) -> Payload {
    Payload::Delete(Delete { doi: DOI_IPSEC, protocol: proto::ISAKMP, spi_size: 16, spis: isakmp_spi(p1) })
}

/// What a verified Informational message said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Info {
    /// ESP SAs the peer deleted (its inbound: our outbound SPIs).
    DeleteEsp(Vec<u32>),
    /// The peer deleted this ISAKMP SA.
    DeleteIsakmp,
    /// A DPD probe or its answer with its sequence number.
    RUThere {
        ack: bool,
        seq: u32,
    },
    InitialContact,
    /// Any other notify, by type (errors are logged, never acted on).
    Notify(u16),
}

/// Why an Informational message was dropped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InfoError {
    #[error("malformed message: {0}")]
    Malformed(ParseError),
    #[error("not an informational message of this SA")]
    Unexpected,
    #[error("message not authenticated")]
    NotAuthenticated,
}

impl From<ParseError> for InfoError {
    fn from(e: ParseError) -> Self {
        Self::Malformed(e)
    }
}

/// Seals an Informational message with `payloads` (Notify or Delete) under a fresh
/// message ID.
pub(crate) fn seal_informational(p1: &Phase1Sa, rng: &mut dyn Rng, payloads: Vec<Payload>) -> Option<Vec<u8>> {
    let mid = u32::from_be_bytes(super::nonzero(rng));
    let rest = emit_chain(&payloads);
    let mut all = vec![Payload::Hash(p1.keys.informational_hash(mid, &rest).to_vec())];
    all.extend(payloads);
    let hdr = Header {
        cky_i: p1.cky_i,
        cky_r: p1.cky_r,
        next_payload: 0,
        exchange: exchange::INFORMATIONAL,
        flags: 0,
        message_id: mid,
        length: 0,
    };
    let iv = phase2_iv(p1.algs.hash, &p1.last_block, mid);
    Some(seal(hdr, ptype::HASH, &emit_chain(&all), &p1.keys.cipher()?, &iv).0)
}

/// Opens an Informational message of this SA: decrypts it, checks HASH(1) over the rest,
/// and reads what we act on. A message that is not encrypted or does not verify says
/// nothing (RFC 2409 5.7: unprotected informational messages are not trusted).
pub(crate) fn open_informational(p1: &Phase1Sa, data: &[u8]) -> Result<Vec<Info>, InfoError> {
    let mut m = Message::parse(data)?;
    let h = m.header;
    if h.exchange != exchange::INFORMATIONAL || (h.cky_i, h.cky_r) != (p1.cky_i, p1.cky_r) || !h.encrypted() {
        return Err(InfoError::Unexpected);
    }
    let iv = phase2_iv(p1.algs.hash, &p1.last_block, h.message_id);
    let cipher = p1.keys.cipher().ok_or(InfoError::NotAuthenticated)?;
    m.decrypt(data, &cipher, &iv).map_err(|_| InfoError::NotAuthenticated)?;
    let Some(Payload::Hash(got)) = m.payloads.first() else { return Err(InfoError::NotAuthenticated) };
    let rest = m.after(0).ok_or(InfoError::NotAuthenticated)?;
    if !ct_eq(got, &p1.keys.informational_hash(h.message_id, rest)) {
        return Err(InfoError::NotAuthenticated);
    }
    let ours = isakmp_spi(p1);
    let mut out = Vec::new();
    for p in m.payloads.iter().skip(1) {
        match p {
            Payload::Delete(d) if d.protocol == proto::ESP && d.spi_size == 4 => out.push(Info::DeleteEsp(
                d.spis().filter_map(|s| <[u8; 4]>::try_from(s).ok()).map(u32::from_be_bytes).collect(),
            )),
            Payload::Delete(d) if d.protocol == proto::ISAKMP && d.spis().any(|s| s == ours.as_slice()) => {
                out.push(Info::DeleteIsakmp)
            }
            Payload::Notify(n) => out.push(match n.msg_type {
                notify::R_U_THERE | notify::R_U_THERE_ACK if n.spi == ours => {
                    match <[u8; 4]>::try_from(n.data.as_slice()) {
                        Ok(seq) => {
                            Info::RUThere { ack: n.msg_type == notify::R_U_THERE_ACK, seq: u32::from_be_bytes(seq) }
                        }
                        Err(_) => Info::Notify(n.msg_type),
                    }
                }
                notify::INITIAL_CONTACT => Info::InitialContact,
                t => Info::Notify(t),
            }),
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
