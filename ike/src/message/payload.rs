//! IKEv2 payload bodies (RFC 7296 section 3.2 - 3.16): parse from untrusted bytes
//! (never panics, returns `None` on malformed input) and emit.
//!
//! Every count and length in a body is checked against the bytes present before anything
//! is allocated for it, and the parts must fill the body exactly (no trailing bytes):
//! proposals, transforms and attributes tile their parents, `Num Transforms` and
//! `Number of TSs` equal what is there, a Delete's `Num of SPIs * SPI Size` equals the
//! rest of its body. So a body costs a small multiple of its own length (at most 7x, a
//! Delete's 4-octet SPIs each in a `Vec`), never a multiple of a number it claims.
//!
//! Does NOT handle the generic payload header chain or the SK payload (see `message`).

use super::codec::{patch_u16, put_u16, put_u32, Reader, Substructs};
use ipsec_types::{Identity, TrafficSelector};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Payload type numbers (RFC 7296 section 3.2, RFC 7383 for SKF).
pub(crate) mod ptype {
    pub(crate) const NONE: u8 = 0;
    pub(crate) const SA: u8 = 33;
    pub(crate) const KE: u8 = 34;
    pub(crate) const IDI: u8 = 35;
    pub(crate) const IDR: u8 = 36;
    pub(crate) const CERT: u8 = 37;
    pub(crate) const CERTREQ: u8 = 38;
    pub(crate) const AUTH: u8 = 39;
    pub(crate) const NONCE: u8 = 40;
    pub(crate) const NOTIFY: u8 = 41;
    pub(crate) const DELETE: u8 = 42;
    pub(crate) const VENDOR: u8 = 43;
    pub(crate) const TSI: u8 = 44;
    pub(crate) const TSR: u8 = 45;
    pub(crate) const SK: u8 = 46;
    pub(crate) const CP: u8 = 47;
    pub(crate) const EAP: u8 = 48;
    pub(crate) const SKF: u8 = 53;
}

/// Transform types (section 3.3.2).
pub(crate) mod ttype {
    pub(crate) const ENCR: u8 = 1;
    pub(crate) const PRF: u8 = 2;
    pub(crate) const INTEG: u8 = 3;
    pub(crate) const DH: u8 = 4;
    pub(crate) const ESN: u8 = 5;
}

/// Protocol IDs (section 3.3.1).
pub(crate) mod proto {
    pub(crate) const IKE: u8 = 1;
    pub(crate) const AH: u8 = 2;
    pub(crate) const ESP: u8 = 3;
}

/// Attribute type "Key Length" (section 3.3.5).
const ATTR_KEY_LENGTH: u16 = 14;

/// One transform of a proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Transform {
    pub(crate) ttype: u8,
    pub(crate) id: u16,
    pub(crate) key_len: Option<u16>,
    /// The transform carried attributes we do not understand (then it is unusable).
    pub(crate) unknown_attrs: bool,
}

impl Transform {
    pub(crate) fn new(ttype: u8, id: u16, key_len: Option<u16>) -> Self {
        Self { ttype, id, key_len, unknown_attrs: false }
    }
}

/// One proposal of an SA payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Proposal {
    pub(crate) num: u8,
    pub(crate) protocol: u8,
    pub(crate) spi: Vec<u8>,
    pub(crate) transforms: Vec<Transform>,
}

/// An ID payload (IDi / IDr), kept raw: the AUTH computation needs the exact body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IdPayload {
    pub(crate) id_type: u8,
    pub(crate) data: Vec<u8>,
}

impl IdPayload {
    pub(crate) fn from_identity(id: &Identity) -> Self {
        Self { id_type: id.id_type(), data: id.data() }
    }
    /// ID Type | RESERVED | Identification Data: what the AUTH prf covers.
    pub(crate) fn body(&self) -> Vec<u8> {
        let mut b = vec![self.id_type, 0, 0, 0];
        b.extend_from_slice(&self.data);
        b
    }
    pub(crate) fn identity(&self) -> Option<Identity> {
        Identity::from_wire(self.id_type, &self.data)
    }
}

/// A Notify payload (section 3.10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Notify {
    pub(crate) protocol: u8,
    pub(crate) spi: Vec<u8>,
    pub(crate) kind: u16,
    pub(crate) data: Vec<u8>,
}

impl Notify {
    pub(crate) fn new(kind: u16, data: Vec<u8>) -> Self {
        Self { protocol: 0, spi: vec![], kind, data }
    }

    /// The DH group number an INVALID_KE_PAYLOAD notify asks for (section 3.10.1: the
    /// first two octets of the data, big-endian); `None` when the data is shorter. The
    /// number is returned as sent, whether or not it names a group we know.
    pub(crate) fn dh_group(&self) -> Option<u16> {
        self.data.get(..2).and_then(|b| b.try_into().ok()).map(u16::from_be_bytes)
    }
}

/// A Delete payload (section 3.11).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Delete {
    pub(crate) protocol: u8,
    pub(crate) spi_size: u8,
    pub(crate) spis: Vec<Vec<u8>>,
}

/// A parsed payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Payload {
    Sa(Vec<Proposal>),
    Ke {
        group: u16,
        data: Vec<u8>,
    },
    IdI(IdPayload),
    IdR(IdPayload),
    Auth {
        method: u8,
        data: Vec<u8>,
    },
    Nonce(Vec<u8>),
    Notify(Notify),
    Delete(Delete),
    Vendor(Vec<u8>),
    TsI(Vec<TrafficSelector>),
    TsR(Vec<TrafficSelector>),
    /// Anything else (CERTREQ, CP, EAP, ...): kept so critical ones can be refused.
    /// `body` is what `emit_body` writes; parsing leaves it empty (nobody reads it, so
    /// the bytes are not copied).
    Unknown {
        ptype: u8,
        critical: bool,
        body: Vec<u8>,
    },
}

impl Payload {
    pub(crate) fn ptype(&self) -> u8 {
        match self {
            Self::Sa(_) => ptype::SA,
            Self::Ke { .. } => ptype::KE,
            Self::IdI(_) => ptype::IDI,
            Self::IdR(_) => ptype::IDR,
            Self::Auth { .. } => ptype::AUTH,
            Self::Nonce(_) => ptype::NONCE,
            Self::Notify(_) => ptype::NOTIFY,
            Self::Delete(_) => ptype::DELETE,
            Self::Vendor(_) => ptype::VENDOR,
            Self::TsI(_) => ptype::TSI,
            Self::TsR(_) => ptype::TSR,
            Self::Unknown { ptype, .. } => *ptype,
        }
    }

    /// Parses a payload body of type `pt`. `None` if malformed.
    pub(crate) fn parse(pt: u8, critical: bool, body: &[u8]) -> Option<Self> {
        let mut r = Reader::new(body);
        Some(match pt {
            ptype::SA => Self::Sa(parse_proposals(body)?),
            ptype::KE => {
                let group = r.u16()?;
                r.u16()?;
                Self::Ke { group, data: r.rest().to_vec() }
            }
            ptype::IDI | ptype::IDR => {
                let id_type = r.u8()?;
                r.take(3)?;
                let id = IdPayload { id_type, data: r.rest().to_vec() };
                if pt == ptype::IDI {
                    Self::IdI(id)
                } else {
                    Self::IdR(id)
                }
            }
            ptype::AUTH => {
                let method = r.u8()?;
                r.take(3)?;
                Self::Auth { method, data: r.rest().to_vec() }
            }
            ptype::NONCE => Self::Nonce(body.to_vec()),
            ptype::NOTIFY => {
                let protocol = r.u8()?;
                let spi_size = r.u8()?;
                let kind = r.u16()?;
                // Section 3.10: no SPI, or a CHILD SA's (4 octets, AH/ESP). An IKE SPI
                // (8 octets, protocol IKE) is tolerated: RFC 4306 senders used it.
                if !matches!((spi_size, protocol), (0, _) | (4, proto::AH | proto::ESP) | (8, proto::IKE)) {
                    return None;
                }
                let spi = r.take(usize::from(spi_size))?.to_vec();
                Self::Notify(Notify { protocol, spi, kind, data: r.rest().to_vec() })
            }
            ptype::DELETE => Self::Delete(parse_delete(body)?),
            ptype::VENDOR => Self::Vendor(body.to_vec()),
            ptype::TSI | ptype::TSR => {
                let ts = parse_ts(body)?;
                if pt == ptype::TSI {
                    Self::TsI(ts)
                } else {
                    Self::TsR(ts)
                }
            }
            _ => Self::Unknown { ptype: pt, critical, body: Vec::new() },
        })
    }

    /// Appends the payload body (without the generic header).
    pub(crate) fn emit_body(&self, out: &mut Vec<u8>) {
        match self {
            Self::Sa(props) => emit_proposals(props, out),
            Self::Ke { group, data } => {
                put_u16(out, *group);
                put_u16(out, 0);
                out.extend_from_slice(data);
            }
            Self::IdI(id) | Self::IdR(id) => out.extend_from_slice(&id.body()),
            Self::Auth { method, data } => {
                out.extend_from_slice(&[*method, 0, 0, 0]);
                out.extend_from_slice(data);
            }
            Self::Nonce(n) | Self::Vendor(n) => out.extend_from_slice(n),
            Self::Notify(n) => {
                out.push(n.protocol);
                out.push(u8::try_from(n.spi.len()).unwrap_or(0));
                put_u16(out, n.kind);
                if n.spi.len() <= usize::from(u8::MAX) {
                    out.extend_from_slice(&n.spi);
                }
                out.extend_from_slice(&n.data);
            }
            Self::Delete(d) => {
                out.push(d.protocol);
                out.push(d.spi_size);
                put_u16(out, u16::try_from(d.spis.len()).unwrap_or(0));
                for s in d.spis.iter().take(usize::from(u16::MAX)) {
                    out.extend_from_slice(s);
                }
            }
            Self::TsI(ts) | Self::TsR(ts) => emit_ts(ts, out),
            Self::Unknown { body, .. } => out.extend_from_slice(body),
        }
    }
}

/*  Proposal substructure (section 3.3.1):
| Last Substruc |   RESERVED    |         Proposal Length       |
| Proposal Num  |  Protocol ID  |    SPI Size   |Num  Transforms|
~                        SPI (variable)                         ~
~                        <Transforms>                           ~
Transform substructure (3.3.2):
| Last Substruc |   RESERVED    |        Transform Length       |
|Transform Type |   RESERVED    |          Transform ID         |
~                      Transform Attributes                     ~      */
fn parse_proposals(body: &[u8]) -> Option<Vec<Proposal>> {
    // The proposals must tile the body; at least one.
    let n = Substructs::count(body).filter(|&n| n > 0)?;
    let mut props = Vec::with_capacity(n);
    for s in Substructs::new(body) {
        // "Last Substruc" (0 or 2) repeats what the lengths already tell: not trusted.
        let (_last, _, pbody) = s?;
        props.push(parse_proposal(pbody)?);
    }
    Some(props)
}

fn parse_proposal(pbody: &[u8]) -> Option<Proposal> {
    let mut p = Reader::new(pbody);
    let num = p.u8()?;
    let protocol = p.u8()?;
    let spi_size = p.u8()?;
    let ntrans = usize::from(p.u8()?);
    // Section 3.3.1: SPI Size 0 (initial IKE SA) or 8 for IKE, 4 for AH and ESP.
    let spi_ok = match protocol {
        proto::IKE => matches!(spi_size, 0 | 8),
        proto::AH | proto::ESP => spi_size == 4,
        _ => true,
    };
    if !spi_ok {
        return None;
    }
    let spi = p.take(usize::from(spi_size))?.to_vec();
    // Exactly `Num Transforms` transforms fill the rest of the proposal.
    let tbytes = p.rest();
    if Substructs::count(tbytes)? != ntrans {
        return None;
    }
    let mut transforms = Vec::with_capacity(ntrans);
    for s in Substructs::new(tbytes) {
        let (_last, _, tbody) = s?;
        transforms.push(parse_transform(tbody)?);
    }
    Some(Proposal { num, protocol, spi, transforms })
}

/// A transform body; its attributes must fill it exactly.
fn parse_transform(tbody: &[u8]) -> Option<Transform> {
    let mut t = Reader::new(tbody);
    let tt = t.u8()?;
    t.u8()?;
    let id = t.u16()?;
    let mut tr = Transform::new(tt, id, None);
    while t.remaining() > 0 {
        let af_type = t.u16()?;
        if af_type & 0x8000 != 0 {
            let v = t.u16()?;
            if af_type & 0x7fff == ATTR_KEY_LENGTH && tr.key_len.is_none() {
                tr.key_len = Some(v);
            } else {
                tr.unknown_attrs = true;
            }
        } else {
            let alen = usize::from(t.u16()?);
            t.take(alen)?;
            tr.unknown_attrs = true;
        }
    }
    Some(tr)
}

/*  Delete payload (section 3.11):
| Protocol ID   |   SPI Size    |          Num of SPIs          |
~               Security Parameter Index(es) (SPI)              ~
IKE has SPI Size 0 (the IKE SA is the one the message belongs to), AH and ESP 4; the
SPIs fill the rest exactly (Num of SPIs * SPI Size). With SPI Size 0 the count names
nothing: no SPIs, nothing allocated, whatever it says.                  */
fn parse_delete(body: &[u8]) -> Option<Delete> {
    let mut r = Reader::new(body);
    let protocol = r.u8()?;
    let spi_size = r.u8()?;
    let n = usize::from(r.u16()?);
    let rest = r.rest();
    let size_ok = match protocol {
        proto::IKE => spi_size == 0,
        proto::AH | proto::ESP => spi_size == 4,
        _ => false,
    };
    if !size_ok || n.checked_mul(usize::from(spi_size))? != rest.len() {
        return None;
    }
    let spis = match usize::from(spi_size) {
        0 => Vec::new(),
        size => rest.chunks_exact(size).map(<[u8]>::to_vec).collect(),
    };
    Some(Delete { protocol, spi_size, spis })
}

fn emit_proposals(props: &[Proposal], out: &mut Vec<u8>) {
    for (i, p) in props.iter().enumerate() {
        let start = out.len();
        out.push(if i + 1 == props.len() { 0 } else { 2 });
        out.push(0);
        put_u16(out, 0);
        out.push(p.num);
        out.push(p.protocol);
        out.push(u8::try_from(p.spi.len()).unwrap_or(0));
        out.push(u8::try_from(p.transforms.len()).unwrap_or(0));
        if p.spi.len() <= usize::from(u8::MAX) {
            out.extend_from_slice(&p.spi);
        }
        for (j, t) in p.transforms.iter().take(usize::from(u8::MAX)).enumerate() {
            let tstart = out.len();
            out.push(if j + 1 == p.transforms.len() { 0 } else { 3 });
            out.push(0);
            put_u16(out, 0);
            out.push(t.ttype);
            out.push(0);
            put_u16(out, t.id);
            if let Some(k) = t.key_len {
                put_u16(out, 0x8000 | ATTR_KEY_LENGTH);
                put_u16(out, k);
            }
            let tlen = out.len() - tstart;
            patch_u16(out, tstart + 2, tlen);
        }
        let plen = out.len() - start;
        patch_u16(out, start + 2, plen);
    }
}

const TS_IPV4_ADDR_RANGE: u8 = 7;
const TS_IPV6_ADDR_RANGE: u8 = 8;

/// Selector Length of the two TS types we know.
const TS_IPV4_LEN: u16 = 16;
const TS_IPV6_LEN: u16 = 40;

/*  Traffic selector (section 3.13.1):
|   TS Type     |IP Protocol ID*|       Selector Length         |
|           Start Port*         |           End Port*           |
~                         Starting Address*                     ~
~                         Ending Address*                       ~
Exactly `Number of TSs` selectors fill the payload. Unknown TS types are skipped; the
two we know have a fixed length.                                        */
fn parse_ts(body: &[u8]) -> Option<Vec<TrafficSelector>> {
    let mut r = Reader::new(body);
    let n = r.u8()?;
    r.take(3)?;
    // Every selector kept took at least 16 octets: no room reserved beyond what the
    // bytes can fill, whatever the count says.
    let mut out = Vec::with_capacity(usize::from(n).min(r.remaining() / usize::from(TS_IPV4_LEN)));
    for _ in 0..n {
        let ts_type = r.u8()?;
        let protocol = r.u8()?;
        let len = r.u16()?;
        let mut t = Reader::new(r.take(usize::from(len).checked_sub(4)?)?);
        let known = match ts_type {
            TS_IPV4_ADDR_RANGE => TS_IPV4_LEN,
            TS_IPV6_ADDR_RANGE => TS_IPV6_LEN,
            _ => continue,
        };
        if len != known {
            return None;
        }
        let start_port = t.u16()?;
        let end_port = t.u16()?;
        let (start, end) = if ts_type == TS_IPV4_ADDR_RANGE {
            let s: [u8; 4] = t.take(4)?.try_into().ok()?;
            let e: [u8; 4] = t.take(4)?.try_into().ok()?;
            (IpAddr::V4(Ipv4Addr::from(s)), IpAddr::V4(Ipv4Addr::from(e)))
        } else {
            let s: [u8; 16] = t.take(16)?.try_into().ok()?;
            let e: [u8; 16] = t.take(16)?.try_into().ok()?;
            (IpAddr::V6(Ipv6Addr::from(s)), IpAddr::V6(Ipv6Addr::from(e)))
        };
        out.push(TrafficSelector { protocol, start_port, end_port, start, end });
    }
    (r.remaining() == 0).then_some(out)
}

fn emit_ts(ts: &[TrafficSelector], out: &mut Vec<u8>) {
    out.push(u8::try_from(ts.len()).unwrap_or(0));
    out.extend_from_slice(&[0, 0, 0]);
    for t in ts.iter().take(usize::from(u8::MAX)) {
        let (ty, len) = if t.is_ipv4() { (TS_IPV4_ADDR_RANGE, TS_IPV4_LEN) } else { (TS_IPV6_ADDR_RANGE, TS_IPV6_LEN) };
        out.push(ty);
        out.push(t.protocol);
        put_u16(out, len);
        put_u16(out, t.start_port);
        put_u16(out, t.end_port);
        for a in [t.start, t.end] {
            match a {
                IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
            }
        }
    }
}

/// Reads a 4-byte SPI.
pub(crate) fn spi32(b: &[u8]) -> Option<u32> {
    b.try_into().ok().map(u32::from_be_bytes)
}

/// A helper used by emitters of Notify data carrying a u16 (INVALID_KE_PAYLOAD).
pub(crate) fn u16_data(v: u16) -> Vec<u8> {
    let mut d = Vec::with_capacity(2);
    put_u16(&mut d, v);
    d
}

#[allow(dead_code)]
pub(crate) fn u32_data(v: u32) -> Vec<u8> {
    let mut d = Vec::with_capacity(4);
    put_u32(&mut d, v);
    d
}
