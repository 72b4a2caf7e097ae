//! IKEv1 proposals from the same swanctl-syntax configuration as IKEv2
//! (`ipsec_types::IkeProposal` / `EspProposal`), and choosing from a peer's offer.
//!
//! IKEv1 nests differently from IKEv2: a phase-1 proposal holds alternative
//! *transforms*, each naming one cipher, hash, auth method and group as attributes
//! (RFC 2409 Appendix A), so every combination of a configured proposal becomes one
//! transform, in the order written. A Quick Mode proposal holds ESP transforms with the
//! integrity algorithm, the encapsulation mode, the lifetime and the PFS group as
//! attributes (RFC 2407 4.5); all transforms of one proposal carry the same group
//! (RFC 2409 5.5), so each PFS group of an `EspProposal` is one proposal of its own.
//!
//! Policy as for IKEv2: our configured order decides. A responder answers with the one
//! transform it chose, as offered (RFC 2408 4.2: the attributes are returned
//! unchanged, lifetime included). Transforms with attributes we do not know, or cannot
//! read, are skipped, never a reason to reject the message. The phase-1 hash is the
//! HMAC of an IKE proposal's integrity algorithm (`sha1` means OAKLEY hash SHA and its
//! HMAC as the prf); the proposal's `prf` list is not consulted (IKEv1 negotiates no
//! separate prf). AEADs are not offered in phase 1 (RFC 2409 has none).

use super::message::payload::{life, p1attr, p2attr, proto, Attr, Proposal, Sa, Transform};
use ipsec_types::{DhGroup, EncrAlg, EspProposal, IkeProposal, IntegAlg, PrfAlg};

/// Phase-1 attribute values (RFC 2409 Appendix A).
const P1_ENCR_AES_CBC: u64 = 7;
const P1_AUTH_PSK: u64 = 1;
/// The phase-1 transform ID KEY_IKE (RFC 2407 4.4.2).
const KEY_IKE: u8 = 1;
/// ESP transform IDs (RFC 2407 4.4.4, RFC 3602, RFC 4106).
const ESP_AES_CBC: u8 = 12;
const ESP_AES_GCM_16: u8 = 20;
/// Encapsulation modes: tunnel (RFC 2407 4.5) and UDP-encapsulated tunnel (RFC 3947 5).
pub(crate) const ENCAP_TUNNEL: u64 = 1;
pub(crate) const ENCAP_UDP_TUNNEL: u64 = 3;
/// The draft number of UDP-encapsulated tunnel mode, which older peers still send.
pub(crate) const ENCAP_UDP_TUNNEL_DRAFT: u64 = 61443;

/// The OAKLEY hash number of a phase-1 hash (RFC 2409 Appendix A, RFC 4868 for SHA2).
fn p1_hash_id(h: PrfAlg) -> u64 {
    match h {
        PrfAlg::HmacSha1 => 2,
        PrfAlg::HmacSha256 => 4,
        PrfAlg::HmacSha384 => 5,
        PrfAlg::HmacSha512 => 6,
    }
}

/// The IPsec DOI authentication algorithm number of an ESP integrity algorithm (RFC
/// 2407 4.5, RFC 4868 for SHA2).
fn p2_auth_id(i: IntegAlg) -> u64 {
    match i {
        IntegAlg::HmacSha1_96 => 2,
        IntegAlg::HmacSha256_128 => 5,
        IntegAlg::HmacSha384_192 => 6,
        IntegAlg::HmacSha512_256 => 7,
    }
}

/// The algorithms of an ISAKMP SA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Phase1Algs {
    /// AES-CBC of one key size.
    pub(crate) encr: EncrAlg,
    /// The hash, and its HMAC as the prf.
    pub(crate) hash: PrfAlg,
    pub(crate) dh: DhGroup,
}

impl Phase1Algs {
    /// As swanctl writes it: `aes128-sha1-modp1024`.
    pub(crate) fn keywords(&self) -> String {
        let hash = IntegAlg::ALL.iter().find(|i| i.prf() == self.hash).map_or("?", |i| i.keyword());
        format!("{}-{hash}-{}", self.encr.keyword(), self.dh.keyword())
    }

    fn attrs(&self, life_secs: u64) -> Vec<Attr> {
        vec![
            Attr::new(p1attr::ENCRYPTION, P1_ENCR_AES_CBC),
            Attr::new(p1attr::KEY_LENGTH, u64::from(self.encr.key_bits())),
            Attr::new(p1attr::HASH, p1_hash_id(self.hash)),
            Attr::new(p1attr::AUTH_METHOD, P1_AUTH_PSK),
            Attr::new(p1attr::GROUP, u64::from(self.dh.transform_id())),
            Attr::new(p1attr::LIFE_TYPE, life::SECONDS),
            Attr::new(p1attr::LIFE_DURATION, life_secs),
        ]
    }

    /// Reads a phase-1 transform: `None` if it is not KEY_IKE, names something we do not
    /// do (another cipher, hash or auth method), or carries an attribute we do not know
    /// or cannot read. Returns the algorithms and the lifetime in seconds, if it gives
    /// one (a lifetime in kilobytes is accepted and not enforced).
    fn from_transform(t: &Transform) -> Option<(Self, Option<u64>)> {
        if t.id != KEY_IKE {
            return None;
        }
        let mut encr = None;
        let mut bits = None;
        let mut hash = None;
        let mut auth = None;
        let mut dh = None;
        let mut life_type = None;
        let mut secs = None;
        for a in &t.attrs {
            let v = a.value()?;
            match a.ty {
                p1attr::ENCRYPTION => encr = Some(v),
                p1attr::KEY_LENGTH => bits = Some(v),
                p1attr::HASH => hash = Some(v),
                p1attr::AUTH_METHOD => auth = Some(v),
                p1attr::GROUP => dh = Some(v),
                p1attr::LIFE_TYPE => life_type = Some(v),
                p1attr::LIFE_DURATION if life_type == Some(life::SECONDS) => secs = Some(v),
                p1attr::LIFE_DURATION if life_type == Some(life::KILOBYTES) => {}
                _ => return None,
            }
        }
        if encr? != P1_ENCR_AES_CBC || auth? != P1_AUTH_PSK {
            return None;
        }
        // AES without a Key Length attribute is AES-128 (RFC 3602 5.3).
        let encr = match bits.unwrap_or(128) {
            128 => EncrAlg::AesCbc128,
            192 => EncrAlg::AesCbc192,
            256 => EncrAlg::AesCbc256,
            _ => return None,
        };
        let hash = [PrfAlg::HmacSha1, PrfAlg::HmacSha256, PrfAlg::HmacSha384, PrfAlg::HmacSha512]
            .into_iter()
            .find(|h| Some(p1_hash_id(*h)) == hash)?;
        let dh = DhGroup::from_iana(u16::try_from(dh?).ok()?)?;
        Some((Self { encr, hash, dh }, secs))
    }
}

/// Every phase-1 combination of our proposals, in our order.
fn phase1_combinations(props: &[IkeProposal]) -> impl Iterator<Item = Phase1Algs> + '_ {
    props.iter().flat_map(|p| {
        p.encr.iter().filter(|e| !e.is_aead()).flat_map(move |&encr| {
            p.integ.iter().flat_map(move |&i| p.dh.iter().map(move |&dh| Phase1Algs { encr, hash: i.prf(), dh }))
        })
    })
}

/// Our phase-1 SA payload: one ISAKMP proposal, one transform per combination (at most
/// 255, numbered from 1), each with our lifetime in seconds.
pub(crate) fn phase1_offer(props: &[IkeProposal], life_secs: u64) -> Sa {
    let transforms = phase1_combinations(props)
        .take(usize::from(u8::MAX))
        .enumerate()
        .map(|(n, a)| Transform { num: u8::try_from(n + 1).unwrap_or(u8::MAX), id: KEY_IKE, attrs: a.attrs(life_secs) })
        .collect();
    Sa { proposals: vec![Proposal { num: 1, protocol: proto::ISAKMP, spi: vec![], transforms }] }
}

/// A phase-1 choice: the algorithms, the peer's lifetime in seconds if it gave one, and
/// the SA payload to answer with (the chosen transform as offered).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Phase1Choice {
    pub(crate) algs: Phase1Algs,
    pub(crate) life_secs: Option<u64>,
    pub(crate) answer: Sa,
}

/// Chooses from a peer's phase-1 offer, our order deciding.
pub(crate) fn select_phase1(offered: &Sa, ours: &[IkeProposal]) -> Option<Phase1Choice> {
    let theirs: Vec<(&Proposal, &Transform, Phase1Algs, Option<u64>)> = offered
        .proposals
        .iter()
        .filter(|p| p.protocol == proto::ISAKMP)
        .flat_map(|p| p.transforms.iter().map(move |t| (p, t)))
        .filter_map(|(p, t)| Phase1Algs::from_transform(t).map(|(a, l)| (p, t, a, l)))
        .collect();
    phase1_combinations(ours).find_map(|want| {
        let (p, t, algs, life_secs) = theirs.iter().find(|(_, _, a, _)| *a == want)?;
        let answer = Sa {
            proposals: vec![Proposal {
                num: p.num,
                protocol: p.protocol,
                spi: p.spi.clone(),
                transforms: vec![(*t).clone()],
            }],
        };
        Some(Phase1Choice { algs: *algs, life_secs: *life_secs, answer })
    })
}

/// Checks a responder's phase-1 answer: one proposal with one transform, the same
/// algorithms as one we offered. Returns them and the lifetime it names.
pub(crate) fn accept_phase1_answer(answer: &Sa, ours: &[IkeProposal]) -> Option<(Phase1Algs, Option<u64>)> {
    let [p] = answer.proposals.as_slice() else { return None };
    let [t] = p.transforms.as_slice() else { return None };
    if p.protocol != proto::ISAKMP {
        return None;
    }
    let (algs, life) = Phase1Algs::from_transform(t)?;
    phase1_combinations(ours).any(|a| a == algs).then_some((algs, life))
}

/// The algorithms of a Quick Mode SA pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct QuickAlgs {
    pub(crate) encr: EncrAlg,
    /// `Some` exactly for AES-CBC.
    pub(crate) integ: Option<IntegAlg>,
    /// The PFS group, if any.
    pub(crate) pfs: Option<DhGroup>,
}

/// What a Quick Mode transform says besides its algorithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct QuickTerms {
    /// The encapsulation mode attribute (tunnel, or UDP-encapsulated tunnel).
    pub(crate) encap: u64,
    /// The lifetime in seconds, if given.
    pub(crate) life_secs: Option<u64>,
    /// The lifetime in kilobytes, if given.
    pub(crate) life_kb: Option<u64>,
}

fn esp_transform_id(e: EncrAlg) -> Option<u8> {
    match e {
        EncrAlg::AesCbc128 | EncrAlg::AesCbc192 | EncrAlg::AesCbc256 => Some(ESP_AES_CBC),
        EncrAlg::AesGcm16_128 | EncrAlg::AesGcm16_256 => Some(ESP_AES_GCM_16),
        // No IPsec DOI number is in use for it among IKEv1 peers.
        EncrAlg::ChaCha20Poly1305 => None,
    }
}

impl QuickAlgs {
    fn transform(&self, num: u8, terms: QuickTerms) -> Option<Transform> {
        let mut attrs = Vec::with_capacity(7);
        attrs.push(Attr::new(p2attr::LIFE_TYPE, life::SECONDS));
        attrs.push(Attr::new(p2attr::LIFE_DURATION, terms.life_secs.unwrap_or(3600)));
        if let Some(kb) = terms.life_kb {
            attrs.push(Attr::new(p2attr::LIFE_TYPE, life::KILOBYTES));
            attrs.push(Attr::new(p2attr::LIFE_DURATION, kb));
        }
        if let Some(g) = self.pfs {
            attrs.push(Attr::new(p2attr::GROUP, u64::from(g.transform_id())));
        }
        attrs.push(Attr::new(p2attr::ENCAPSULATION, terms.encap));
        if let Some(i) = self.integ {
            attrs.push(Attr::new(p2attr::AUTH_ALG, p2_auth_id(i)));
        }
        attrs.push(Attr::new(p2attr::KEY_LENGTH, u64::from(self.encr.key_bits())));
        Some(Transform { num, id: esp_transform_id(self.encr)?, attrs })
    }

    /// Reads an ESP transform; `None` for anything we do not do or cannot read.
    fn from_transform(t: &Transform) -> Option<(Self, QuickTerms)> {
        let mut bits = None;
        let mut auth = None;
        let mut group = None;
        let mut encap = None;
        let mut life_type = None;
        let mut terms = QuickTerms { encap: 0, life_secs: None, life_kb: None };
        for a in &t.attrs {
            let v = a.value()?;
            match a.ty {
                p2attr::LIFE_TYPE => life_type = Some(v),
                p2attr::LIFE_DURATION => match life_type? {
                    life::SECONDS => terms.life_secs = Some(v),
                    life::KILOBYTES => terms.life_kb = Some(v),
                    _ => return None,
                },
                p2attr::GROUP => group = Some(v),
                p2attr::ENCAPSULATION => encap = Some(v),
                p2attr::AUTH_ALG => auth = Some(v),
                p2attr::KEY_LENGTH => bits = Some(v),
                _ => return None,
            }
        }
        terms.encap = encap?;
        if ![ENCAP_TUNNEL, ENCAP_UDP_TUNNEL, ENCAP_UDP_TUNNEL_DRAFT].contains(&terms.encap) {
            return None;
        }
        let encr = match (t.id, bits.unwrap_or(128)) {
            (ESP_AES_CBC, 128) => EncrAlg::AesCbc128,
            (ESP_AES_CBC, 192) => EncrAlg::AesCbc192,
            (ESP_AES_CBC, 256) => EncrAlg::AesCbc256,
            (ESP_AES_GCM_16, 128) => EncrAlg::AesGcm16_128,
            (ESP_AES_GCM_16, 256) => EncrAlg::AesGcm16_256,
            _ => return None,
        };
        let integ = match auth {
            None => None,
            Some(id) => Some(IntegAlg::ALL.into_iter().find(|i| p2_auth_id(*i) == id)?),
        };
        // AES-CBC needs an integrity algorithm, GCM must not have one.
        if encr.is_aead() == integ.is_some() {
            return None;
        }
        let pfs = match group {
            None => None,
            Some(g) => Some(DhGroup::from_iana(u16::try_from(g).ok()?)?),
        };
        Some((Self { encr, integ, pfs }, terms))
    }
}

/// Every Quick Mode combination of one of our proposals for one PFS choice.
fn quick_combinations(p: &EspProposal, pfs: Option<DhGroup>) -> Vec<QuickAlgs> {
    let mut out = Vec::new();
    for &encr in &p.encr {
        if encr.is_aead() {
            out.push(QuickAlgs { encr, integ: None, pfs });
        } else {
            out.extend(p.integ.iter().map(|&i| QuickAlgs { encr, integ: Some(i), pfs }));
        }
    }
    out
}

/// The PFS choices of a proposal: each group, or none.
fn pfs_choices(p: &EspProposal) -> Vec<Option<DhGroup>> {
    if p.dh.is_empty() {
        vec![None]
    } else {
        p.dh.iter().copied().map(Some).collect()
    }
}

/// Our Quick Mode SA payload: one ESP proposal per configured proposal and PFS group
/// (numbered from 1), each with our `spi` and one transform per cipher combination.
pub(crate) fn quick_offer(props: &[EspProposal], spi: u32, terms: QuickTerms) -> Sa {
    let mut proposals = Vec::new();
    for p in props {
        for pfs in pfs_choices(p) {
            let transforms: Vec<Transform> = quick_combinations(p, pfs)
                .iter()
                .take(usize::from(u8::MAX))
                .enumerate()
                .filter_map(|(n, a)| a.transform(u8::try_from(n + 1).unwrap_or(u8::MAX), terms))
                .collect();
            if transforms.is_empty() || proposals.len() >= usize::from(u8::MAX) {
                continue;
            }
            proposals.push(Proposal {
                num: u8::try_from(proposals.len() + 1).unwrap_or(u8::MAX),
                protocol: proto::ESP,
                spi: spi.to_be_bytes().to_vec(),
                transforms,
            });
        }
    }
    Sa { proposals }
}

/// A Quick Mode choice: the algorithms, the peer's SPI and terms, and the SA payload to
/// answer with (the chosen transform as offered, under our `spi`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct QuickChoice {
    pub(crate) algs: QuickAlgs,
    pub(crate) peer_spi: u32,
    pub(crate) terms: QuickTerms,
    pub(crate) answer: Sa,
}

fn spi32(spi: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(spi).ok().map(u32::from_be_bytes)
}

/// Chooses from a peer's Quick Mode offer, our order deciding; the answer carries our
/// `spi`.
pub(crate) fn select_quick(offered: &Sa, ours: &[EspProposal], spi: u32) -> Option<QuickChoice> {
    let theirs: Vec<(&Proposal, &Transform, QuickAlgs, QuickTerms, u32)> = offered
        .proposals
        .iter()
        .filter(|p| p.protocol == proto::ESP)
        .filter_map(|p| spi32(&p.spi).map(|s| (p, s)))
        .flat_map(|(p, s)| p.transforms.iter().map(move |t| (p, t, s)))
        .filter_map(|(p, t, s)| QuickAlgs::from_transform(t).map(|(a, terms)| (p, t, a, terms, s)))
        .collect();
    ours.iter().flat_map(|p| pfs_choices(p).into_iter().flat_map(move |g| quick_combinations(p, g))).find_map(|want| {
        let (p, t, algs, terms, peer_spi) = theirs.iter().find(|(_, _, a, _, _)| *a == want)?;
        let answer = Sa {
            proposals: vec![Proposal {
                num: p.num,
                protocol: proto::ESP,
                spi: spi.to_be_bytes().to_vec(),
                transforms: vec![(*t).clone()],
            }],
        };
        Some(QuickChoice { algs: *algs, peer_spi: *peer_spi, terms: *terms, answer })
    })
}

/// Checks a responder's Quick Mode answer: one ESP proposal with one transform whose
/// algorithms we offered. Returns them, the responder's SPI and its terms (a
/// RESPONDER-LIFETIME notify may still shorten the lifetime).
pub(crate) fn accept_quick_answer(answer: &Sa, ours: &[EspProposal]) -> Option<(QuickAlgs, u32, QuickTerms)> {
    let [p] = answer.proposals.as_slice() else { return None };
    let [t] = p.transforms.as_slice() else { return None };
    if p.protocol != proto::ESP {
        return None;
    }
    let spi = spi32(&p.spi)?;
    let (algs, terms) = QuickAlgs::from_transform(t)?;
    let offered = ours.iter().any(|o| pfs_choices(o).into_iter().any(|g| quick_combinations(o, g).contains(&algs)));
    offered.then_some((algs, spi, terms))
}

#[cfg(test)]
mod tests;
