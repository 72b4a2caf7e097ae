//! ISAKMP payload bodies (RFC 2408 section 3.4 - 3.15, the IPsec DOI of RFC 2407 4.6,
//! NAT-D and NAT-OA of RFC 3947 3.2 and 5.1): parse from untrusted bytes (never panics,
//! `None` on malformed input) and emit.
//!
//! Every count and length is checked against the bytes present before anything is
//! allocated for it, and the parts must fill their parent exactly: proposals tile the
//! SA payload after the situation, transforms tile the proposal after its SPI and their
//! number equals `# Transforms`, attributes tile the transform, a Delete's `# of SPIs x
//! SPI Size` equals the rest of its body (the SPIs stay one byte string). So a body
//! costs a small multiple of its own length, never a multiple of a number it claims.
//!
//! Does NOT handle the generic payload chain or encryption (see the parent module).

use crate::message::codec::{patch_u16, put_u16, put_u32, Reader, Substructs};

/// Payload types (RFC 2408 3.1; NAT-D and NAT-OA from RFC 3947, and the numbers of its
/// drafts that older peers still send).
pub(crate) mod ptype {
    pub(crate) const NONE: u8 = 0;
    pub(crate) const SA: u8 = 1;
    pub(crate) const PROPOSAL: u8 = 2;
    pub(crate) const TRANSFORM: u8 = 3;
    pub(crate) const KE: u8 = 4;
    pub(crate) const ID: u8 = 5;
    pub(crate) const CERT: u8 = 6;
    #[cfg(test)]
    pub(crate) const CR: u8 = 7;
    pub(crate) const HASH: u8 = 8;
    pub(crate) const SIG: u8 = 9;
    pub(crate) const NONCE: u8 = 10;
    pub(crate) const NOTIFY: u8 = 11;
    pub(crate) const DELETE: u8 = 12;
    pub(crate) const VENDOR: u8 = 13;
    pub(crate) const NAT_D: u8 = 20;
    pub(crate) const NAT_OA: u8 = 21;
    pub(crate) const NAT_D_DRAFT: u8 = 130;
    pub(crate) const NAT_OA_DRAFT: u8 = 131;
}

/// The IPsec DOI (RFC 2407 4.2).
pub(crate) const DOI_IPSEC: u32 = 1;
/// SIT_IDENTITY_ONLY (RFC 2407 4.2), the only situation site-to-site peers use.
pub(crate) const SIT_IDENTITY_ONLY: u32 = 1;

/// Protocol IDs (RFC 2407 4.4.1).
pub(crate) mod proto {
    pub(crate) const ISAKMP: u8 = 1;
    pub(crate) const ESP: u8 = 3;
}

/// Phase 1 attribute types (RFC 2409 Appendix A).
pub(crate) mod p1attr {
    pub(crate) const ENCRYPTION: u16 = 1;
    pub(crate) const HASH: u16 = 2;
    pub(crate) const AUTH_METHOD: u16 = 3;
    pub(crate) const GROUP: u16 = 4;
    pub(crate) const LIFE_TYPE: u16 = 11;
    pub(crate) const LIFE_DURATION: u16 = 12;
    pub(crate) const KEY_LENGTH: u16 = 14;
}

/// IPsec DOI SA attribute types (RFC 2407 4.5).
pub(crate) mod p2attr {
    pub(crate) const LIFE_TYPE: u16 = 1;
    pub(crate) const LIFE_DURATION: u16 = 2;
    pub(crate) const GROUP: u16 = 3;
    pub(crate) const ENCAPSULATION: u16 = 4;
    pub(crate) const AUTH_ALG: u16 = 5;
    pub(crate) const KEY_LENGTH: u16 = 6;
}

/// Life types, the same numbers in both phases (RFC 2409 App. A, RFC 2407 4.5).
pub(crate) mod life {
    pub(crate) const SECONDS: u64 = 1;
    pub(crate) const KILOBYTES: u64 = 2;
}

/// ID types (RFC 2407 4.6.2.1).
pub(crate) mod idtype {
    pub(crate) const IPV4_ADDR: u8 = 1;
    pub(crate) const FQDN: u8 = 2;
    pub(crate) const USER_FQDN: u8 = 3;
    pub(crate) const IPV4_SUBNET: u8 = 4;
    pub(crate) const IPV6_ADDR: u8 = 5;
    pub(crate) const IPV6_SUBNET: u8 = 6;
    pub(crate) const IPV4_RANGE: u8 = 7;
    pub(crate) const IPV6_RANGE: u8 = 8;
    pub(crate) const KEY_ID: u8 = 11;
}

/// The bit that marks a basic (TV) attribute.
const AF_TV: u16 = 0x8000;
/// Nonce length limits (RFC 2409 5: between 8 and 256 octets).
pub(crate) const NONCE_MIN: usize = 8;
pub(crate) const NONCE_MAX: usize = 256;

/// A data attribute (RFC 2408 3.3). Basic attributes carry 2 octets; variable ones are
/// read as an unsigned big-endian number of up to 8 octets (life durations are the only
/// variable attributes the DOI uses); a longer one is kept as unreadable (and makes the
/// transform unusable to whoever looks at it). 16 bytes in memory for at least 4 on the
/// wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Attr {
    pub(crate) ty: u16,
    readable: bool,
    raw: u64,
}

impl Attr {
    pub(crate) fn new(ty: u16, value: u64) -> Self {
        Self { ty, readable: true, raw: value }
    }

    /// A variable attribute longer than 8 octets.
    pub(crate) fn unreadable(ty: u16) -> Self {
        Self { ty, readable: false, raw: 0 }
    }

    /// The value, unless it was longer than 8 octets.
    pub(crate) fn value(&self) -> Option<u64> {
        self.readable.then_some(self.raw)
    }

    /// Writes the attribute: TV if the value fits 2 octets and the type allows it,
    /// otherwise TLV with 4 or 8 octets. Life durations may be either (RFC 2407 4.5).
    pub(crate) fn emit(&self, out: &mut Vec<u8>) {
        let v = self.raw;
        if let Ok(short) = u16::try_from(v) {
            put_u16(out, self.ty | AF_TV);
            put_u16(out, short);
        } else if let Ok(mid) = u32::try_from(v) {
            put_u16(out, self.ty & !AF_TV);
            put_u16(out, 4);
            put_u32(out, mid);
        } else {
            put_u16(out, self.ty & !AF_TV);
            put_u16(out, 8);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

/// Parses an attribute list that must fill `buf` exactly; at most `buf.len() / 4`
/// attributes, counted before the `Vec` is allocated. (Also the data of a
/// RESPONDER-LIFETIME notify.)
pub(crate) fn parse_attrs(buf: &[u8]) -> Option<Vec<Attr>> {
    let count = attr_walk(buf, |_| ())?;
    let mut out = Vec::with_capacity(count);
    attr_walk(buf, |a| out.push(a))?;
    Some(out)
}

fn attr_walk(buf: &[u8], mut f: impl FnMut(Attr)) -> Option<usize> {
    let mut r = Reader::new(buf);
    let mut n = 0usize;
    while r.remaining() > 0 {
        let t = r.u16()?;
        let a = if t & AF_TV != 0 {
            Attr::new(t & !AF_TV, u64::from(r.u16()?))
        } else {
            let len = usize::from(r.u16()?);
            let v = r.take(len)?;
            if (1..=8).contains(&v.len()) {
                Attr::new(t, v.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
            } else {
                Attr::unreadable(t)
            }
        };
        f(a);
        n += 1;
    }
    Some(n)
}

/// A transform (RFC 2408 3.6): its number, ID (KEY_IKE = 1 in phase 1, ESP_AES = 12 ...)
/// and attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Transform {
    pub(crate) num: u8,
    pub(crate) id: u8,
    pub(crate) attrs: Vec<Attr>,
}

impl Transform {
    #[cfg(test)]
    /// The value of the first attribute of type `ty`, if any and if readable.
    pub(crate) fn attr(&self, ty: u16) -> Option<u64> {
        self.attrs.iter().find(|a| a.ty == ty).and_then(Attr::value)
    }
}

/// A proposal (RFC 2408 3.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Proposal {
    pub(crate) num: u8,
    pub(crate) protocol: u8,
    pub(crate) spi: Vec<u8>,
    pub(crate) transforms: Vec<Transform>,
}

/// An SA payload (RFC 2408 3.4) of the IPsec DOI with SIT_IDENTITY_ONLY.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Sa {
    pub(crate) proposals: Vec<Proposal>,
}

/// An ID payload (RFC 2407 4.6.2): type, protocol, port and data. The data length is
/// checked for the address types; names are kept as bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Id {
    pub(crate) id_type: u8,
    pub(crate) protocol: u8,
    pub(crate) port: u16,
    pub(crate) data: Vec<u8>,
}

/// A Notification payload (RFC 2408 3.14).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Notify {
    pub(crate) doi: u32,
    pub(crate) protocol: u8,
    pub(crate) msg_type: u16,
    pub(crate) spi: Vec<u8>,
    pub(crate) data: Vec<u8>,
}

/// A Delete payload (RFC 2408 3.15). `spis` is `# of SPIs` SPIs of `spi_size` octets
/// back to back (one string, so that many tiny SPIs cost one allocation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Delete {
    pub(crate) doi: u32,
    pub(crate) protocol: u8,
    pub(crate) spi_size: u8,
    pub(crate) spis: Vec<u8>,
}

impl Delete {
    /// The SPIs, each `spi_size` octets.
    pub(crate) fn spis(&self) -> impl Iterator<Item = &[u8]> {
        self.spis.chunks_exact(usize::from(self.spi_size).max(1))
    }
}

/// A parsed payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Payload {
    Sa(Sa),
    Ke(Vec<u8>),
    Id(Id),
    Hash(Vec<u8>),
    Nonce(Vec<u8>),
    Notify(Notify),
    Delete(Delete),
    Vendor(Vec<u8>),
    /// NAT-D (RFC 3947 3.2): a hash; `draft` if it came with the draft's type number.
    NatD {
        hash: Vec<u8>,
        draft: bool,
    },
    /// NAT-OA (RFC 3947 5.1): the original address as an ID type and data.
    NatOa {
        id_type: u8,
        addr: Vec<u8>,
        draft: bool,
    },
    /// A payload type we do not act on (CERT, CR, SIG, ...): kept as its type only.
    Other(u8),
}

impl Payload {
    /// The payload type number.
    pub(crate) fn ptype(&self) -> u8 {
        match self {
            Self::Sa(_) => ptype::SA,
            Self::Ke(_) => ptype::KE,
            Self::Id(_) => ptype::ID,
            Self::Hash(_) => ptype::HASH,
            Self::Nonce(_) => ptype::NONCE,
            Self::Notify(_) => ptype::NOTIFY,
            Self::Delete(_) => ptype::DELETE,
            Self::Vendor(_) => ptype::VENDOR,
            Self::NatD { draft: false, .. } => ptype::NAT_D,
            Self::NatD { draft: true, .. } => ptype::NAT_D_DRAFT,
            Self::NatOa { draft: false, .. } => ptype::NAT_OA,
            Self::NatOa { draft: true, .. } => ptype::NAT_OA_DRAFT,
            Self::Other(t) => *t,
        }
    }

    /// Parses the body of a payload of type `t`. `None` if malformed.
    pub(crate) fn parse(t: u8, body: &[u8]) -> Option<Self> {
        Some(match t {
            ptype::SA => Self::Sa(parse_sa(body)?),
            ptype::KE if !body.is_empty() => Self::Ke(body.to_vec()),
            ptype::ID => Self::Id(parse_id(body)?),
            ptype::HASH if !body.is_empty() => Self::Hash(body.to_vec()),
            ptype::NONCE if (NONCE_MIN..=NONCE_MAX).contains(&body.len()) => Self::Nonce(body.to_vec()),
            ptype::NOTIFY => Self::Notify(parse_notify(body)?),
            ptype::DELETE => Self::Delete(parse_delete(body)?),
            ptype::VENDOR => Self::Vendor(body.to_vec()),
            ptype::NAT_D | ptype::NAT_D_DRAFT if !body.is_empty() => {
                Self::NatD { hash: body.to_vec(), draft: t == ptype::NAT_D_DRAFT }
            }
            ptype::NAT_OA | ptype::NAT_OA_DRAFT => {
                let mut r = Reader::new(body);
                let id_type = r.u8()?;
                r.take(3)?;
                let addr = r.rest();
                let ok = match id_type {
                    idtype::IPV4_ADDR => addr.len() == 4,
                    idtype::IPV6_ADDR => addr.len() == 16,
                    _ => false,
                };
                if !ok {
                    return None;
                }
                Self::NatOa { id_type, addr: addr.to_vec(), draft: t == ptype::NAT_OA_DRAFT }
            }
            ptype::KE | ptype::HASH | ptype::NONCE | ptype::NAT_D | ptype::NAT_D_DRAFT => return None,
            // Proposal and transform payloads only ever appear inside an SA payload.
            ptype::PROPOSAL | ptype::TRANSFORM | ptype::NONE => return None,
            other => Self::Other(other),
        })
    }

    /// Appends the body (without the generic header).
    pub(crate) fn emit_body(&self, out: &mut Vec<u8>) {
        match self {
            Self::Sa(sa) => emit_sa(sa, out),
            Self::Ke(d) | Self::Hash(d) | Self::Nonce(d) | Self::Vendor(d) | Self::NatD { hash: d, .. } => {
                out.extend_from_slice(d)
            }
            Self::Id(id) => {
                out.push(id.id_type);
                out.push(id.protocol);
                put_u16(out, id.port);
                out.extend_from_slice(&id.data);
            }
            Self::Notify(n) => {
                put_u32(out, n.doi);
                out.push(n.protocol);
                out.push(u8::try_from(n.spi.len()).unwrap_or(0));
                put_u16(out, n.msg_type);
                if n.spi.len() <= usize::from(u8::MAX) {
                    out.extend_from_slice(&n.spi);
                }
                out.extend_from_slice(&n.data);
            }
            Self::Delete(d) => {
                put_u32(out, d.doi);
                out.push(d.protocol);
                out.push(d.spi_size);
                let n = d.spis.len() / usize::from(d.spi_size).max(1);
                put_u16(out, u16::try_from(n).unwrap_or(u16::MAX));
                out.extend_from_slice(&d.spis);
            }
            Self::NatOa { id_type, addr, .. } => {
                out.extend_from_slice(&[*id_type, 0, 0, 0]);
                out.extend_from_slice(addr);
            }
            Self::Other(_) => {}
        }
    }
}

fn parse_sa(body: &[u8]) -> Option<Sa> {
    let mut r = Reader::new(body);
    if r.u32()? != DOI_IPSEC || r.u32()? != SIT_IDENTITY_ONLY {
        // Other DOIs, and situations with secrecy or integrity labels, are not ours.
        return None;
    }
    let rest = r.rest();
    let count = Substructs::count(rest)?;
    let mut proposals = Vec::with_capacity(count);
    let mut last_next = ptype::PROPOSAL;
    for s in Substructs::new(rest) {
        let (next, _, pbody) = s?;
        // Every proposal but the last says another proposal follows.
        if last_next != ptype::PROPOSAL {
            return None;
        }
        last_next = next;
        proposals.push(parse_proposal(pbody)?);
    }
    if proposals.is_empty() || last_next != ptype::NONE {
        return None;
    }
    Some(Sa { proposals })
}

fn parse_proposal(body: &[u8]) -> Option<Proposal> {
    let mut r = Reader::new(body);
    let num = r.u8()?;
    let protocol = r.u8()?;
    let spi_size = r.u8()?;
    let n_transforms = r.u8()?;
    let spi = r.take(usize::from(spi_size))?;
    let rest = r.rest();
    if n_transforms == 0 || Substructs::count(rest)? != usize::from(n_transforms) {
        return None;
    }
    let mut transforms = Vec::with_capacity(usize::from(n_transforms));
    let mut last_next = ptype::TRANSFORM;
    for s in Substructs::new(rest) {
        let (next, _, tbody) = s?;
        if last_next != ptype::TRANSFORM {
            return None;
        }
        last_next = next;
        let mut tr = Reader::new(tbody);
        let tnum = tr.u8()?;
        let id = tr.u8()?;
        tr.take(2)?;
        transforms.push(Transform { num: tnum, id, attrs: parse_attrs(tr.rest())? });
    }
    if last_next != ptype::NONE {
        return None;
    }
    Some(Proposal { num, protocol, spi: spi.to_vec(), transforms })
}

fn emit_sa(sa: &Sa, out: &mut Vec<u8>) {
    put_u32(out, DOI_IPSEC);
    put_u32(out, SIT_IDENTITY_ONLY);
    let np = sa.proposals.len();
    for (i, p) in sa.proposals.iter().enumerate() {
        let start = out.len();
        out.push(if i + 1 < np { ptype::PROPOSAL } else { ptype::NONE });
        out.push(0);
        put_u16(out, 0);
        out.push(p.num);
        out.push(p.protocol);
        out.push(u8::try_from(p.spi.len()).unwrap_or(0));
        out.push(u8::try_from(p.transforms.len()).unwrap_or(u8::MAX));
        if p.spi.len() <= usize::from(u8::MAX) {
            out.extend_from_slice(&p.spi);
        }
        let nt = p.transforms.len();
        for (j, t) in p.transforms.iter().enumerate() {
            let tstart = out.len();
            out.push(if j + 1 < nt { ptype::TRANSFORM } else { ptype::NONE });
            out.push(0);
            put_u16(out, 0);
            out.push(t.num);
            out.push(t.id);
            put_u16(out, 0);
            for a in &t.attrs {
                a.emit(out);
            }
            let tlen = out.len() - tstart;
            patch_u16(out, tstart + 2, tlen);
        }
        let plen = out.len() - start;
        patch_u16(out, start + 2, plen);
    }
}

fn parse_id(body: &[u8]) -> Option<Id> {
    let mut r = Reader::new(body);
    let id_type = r.u8()?;
    let protocol = r.u8()?;
    let port = r.u16()?;
    let data = r.rest();
    let ok = match id_type {
        idtype::IPV4_ADDR => data.len() == 4,
        idtype::IPV4_SUBNET | idtype::IPV4_RANGE => data.len() == 8,
        idtype::IPV6_ADDR => data.len() == 16,
        idtype::IPV6_SUBNET | idtype::IPV6_RANGE => data.len() == 32,
        idtype::FQDN | idtype::USER_FQDN | idtype::KEY_ID => !data.is_empty(),
        // DER_ASN1_DN and friends: certificates are not supported; the payload is
        // well-formed, the identity will simply not match.
        _ => true,
    };
    ok.then(|| Id { id_type, protocol, port, data: data.to_vec() })
}

fn parse_notify(body: &[u8]) -> Option<Notify> {
    let mut r = Reader::new(body);
    let doi = r.u32()?;
    let protocol = r.u8()?;
    let spi_size = r.u8()?;
    let msg_type = r.u16()?;
    let spi = r.take(usize::from(spi_size))?.to_vec();
    let data = r.rest().to_vec();
    Some(Notify { doi, protocol, msg_type, spi, data })
}

fn parse_delete(body: &[u8]) -> Option<Delete> {
    let mut r = Reader::new(body);
    let doi = r.u32()?;
    let protocol = r.u8()?;
    let spi_size = r.u8()?;
    let n = usize::from(r.u16()?);
    let rest = r.rest();
    if spi_size == 0 || n == 0 || n.checked_mul(usize::from(spi_size))? != rest.len() {
        return None;
    }
    Some(Delete { doi, protocol, spi_size, spis: rest.to_vec() })
}
