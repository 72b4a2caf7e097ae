//! Building SA payload proposals from the configuration, and choosing one from a peer's
//! offer (RFC 7296 sections 2.7, 3.3). Unknown transforms and transforms with unknown
//! attributes are skipped, never a reason to reject the whole message.

use crate::message::payload::{proto, ttype, Proposal, Transform};
use ipsec_types::{DhGroup, EncrAlg, EspProposal, IkeProposal, IntegAlg, PrfAlg};

/// The algorithms of an IKE SA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IkeAlgs {
    pub(crate) encr: EncrAlg,
    /// The SK payload's integrity algorithm: `Some` exactly for AES-CBC.
    pub(crate) integ: Option<IntegAlg>,
    pub(crate) prf: PrfAlg,
    pub(crate) dh: DhGroup,
}

impl IkeAlgs {
    pub(crate) fn keywords(&self) -> String {
        let integ = self.integ.map(|i| format!("{}-", i.keyword())).unwrap_or_default();
        format!("{}-{integ}{}-{}", self.encr.keyword(), self.prf.keyword(), self.dh.keyword())
    }
}

/// The algorithms of a CHILD SA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EspAlgs {
    pub(crate) encr: EncrAlg,
    /// The integrity algorithm: `Some` exactly for AES-CBC.
    pub(crate) integ: Option<IntegAlg>,
    pub(crate) dh: Option<DhGroup>,
    /// Extended (64-bit) sequence numbers: chosen when our proposal says `esn` and the
    /// peer offers them (RFC 7296 3.3.2, transform type 5).
    pub(crate) esn: bool,
}

/// The ESN transform ID of a proposal of ours (1 = ESN, 0 = no ESN).
fn esn_id(esn: bool) -> u16 {
    u16::from(esn)
}

/// Whether the peer's proposal allows our ESN setting (no ESN transform means no ESN).
fn esn_ok(p: &Proposal, esn: bool) -> bool {
    let ids: Vec<u16> = usable(p).filter(|t| t.ttype == ttype::ESN).map(|t| t.id).collect();
    if ids.is_empty() {
        !esn
    } else {
        ids.contains(&esn_id(esn))
    }
}

/// The ESN setting of a responder's answer: exactly one ESN transform (or none: no ESN).
fn answer_esn(p: &Proposal) -> Option<bool> {
    let ids: Vec<u16> = p.transforms.iter().filter(|t| t.ttype == ttype::ESN).map(|t| t.id).collect();
    match ids.as_slice() {
        [] | [0] => Some(false),
        [1] => Some(true),
        _ => None,
    }
}

/// An encryption transform: with the Key Length attribute for AES, without for
/// ChaCha20-Poly1305 (RFC 7634 section 4).
fn encr_transform(e: EncrAlg) -> Transform {
    Transform::new(ttype::ENCR, e.transform_id(), e.key_length_attr())
}

fn integ_transform(i: IntegAlg) -> Transform {
    Transform::new(ttype::INTEG, i.transform_id(), None)
}

/// The encryption transform, then the integrity transform if there is one.
fn cipher_transforms(encr: EncrAlg, integ: Option<IntegAlg>) -> Vec<Transform> {
    let mut t = vec![encr_transform(encr)];
    t.extend(integ.map(integ_transform));
    t
}

/// Our IKE SA payload: one proposal per configured `IkeProposal`, numbered from 1.
pub(crate) fn ike_offer(props: &[IkeProposal], spi: &[u8]) -> Vec<Proposal> {
    props
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut t: Vec<Transform> = p.encr.iter().map(|e| encr_transform(*e)).collect();
            t.extend(p.integ.iter().map(|i| integ_transform(*i)));
            t.extend(p.prf.iter().map(|f| Transform::new(ttype::PRF, f.transform_id(), None)));
            t.extend(p.dh.iter().map(|d| Transform::new(ttype::DH, d.transform_id(), None)));
            Proposal {
                num: u8::try_from(i + 1).unwrap_or(u8::MAX),
                protocol: proto::IKE,
                spi: spi.to_vec(),
                transforms: t,
            }
        })
        .collect()
}

/// Our ESP SA payload: integrity transforms with AES-CBC (none with the AEADs), KE
/// transforms only when `with_dh` (never in IKE_AUTH, RFC 7296 1.2).
pub(crate) fn esp_offer(props: &[EspProposal], spi: u32, with_dh: bool) -> Vec<Proposal> {
    props
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut t: Vec<Transform> = p.encr.iter().map(|e| encr_transform(*e)).collect();
            t.extend(p.integ.iter().map(|i| integ_transform(*i)));
            if with_dh {
                t.extend(p.dh.iter().map(|d| Transform::new(ttype::DH, d.transform_id(), None)));
            }
            t.push(Transform::new(ttype::ESN, esn_id(p.esn), None));
            Proposal {
                num: u8::try_from(i + 1).unwrap_or(u8::MAX),
                protocol: proto::ESP,
                spi: spi.to_be_bytes().to_vec(),
                transforms: t,
            }
        })
        .collect()
}

fn usable(p: &Proposal) -> impl Iterator<Item = &Transform> {
    p.transforms.iter().filter(|t| !t.unknown_attrs)
}

fn encrs(p: &Proposal) -> Vec<EncrAlg> {
    usable(p).filter(|t| t.ttype == ttype::ENCR).filter_map(|t| EncrAlg::from_iana(t.id, t.key_len)).collect()
}

/// Picks the cipher of a peer's proposal `p` within one of ours (`encr`, `integ`), in
/// our order: an AEAD only if `p` has no integrity transform or offers NONE (RFC 5282
/// section 8), AES-CBC only with an integrity algorithm both sides name.
fn pick_cipher(encr: &[EncrAlg], integ: &[IntegAlg], p: &Proposal) -> Option<(EncrAlg, Option<IntegAlg>)> {
    let theirs = encrs(p);
    let ids: Vec<u16> = p.transforms.iter().filter(|t| t.ttype == ttype::INTEG).map(|t| t.id).collect();
    let their_integ: Vec<IntegAlg> =
        usable(p).filter(|t| t.ttype == ttype::INTEG).filter_map(|t| IntegAlg::from_iana(t.id)).collect();
    encr.iter().copied().filter(|e| theirs.contains(e)).find_map(|e| {
        if e.is_aead() {
            (ids.is_empty() || ids.contains(&0)).then_some((e, None))
        } else {
            first_common(integ, &their_integ).map(|i| (e, Some(i)))
        }
    })
}

/// The cipher of a responder's answer: exactly one encryption transform and, with it,
/// exactly one integrity transform for AES-CBC, none (or NONE) for an AEAD. An answer
/// that mixes the two is refused.
fn answer_cipher(p: &Proposal) -> Option<(EncrAlg, Option<IntegAlg>)> {
    let e = encrs(p);
    let [encr] = e.as_slice() else { return None };
    if p.transforms.iter().filter(|t| t.ttype == ttype::ENCR).count() != 1 {
        return None;
    }
    let ids: Vec<u16> = p.transforms.iter().filter(|t| t.ttype == ttype::INTEG).map(|t| t.id).collect();
    let integ = match (encr.is_aead(), ids.as_slice()) {
        (true, [] | [0]) => None,
        (false, [id]) => Some(IntegAlg::from_iana(*id)?),
        _ => return None,
    };
    Some((*encr, integ))
}

/// Whether our proposal's ciphers include `encr` with `integ`.
fn offers_cipher(o_encr: &[EncrAlg], o_integ: &[IntegAlg], encr: EncrAlg, integ: Option<IntegAlg>) -> bool {
    o_encr.contains(&encr) && integ.is_none_or(|i| o_integ.contains(&i))
}

fn first_common<T: Copy + PartialEq>(ours: &[T], theirs: &[T]) -> Option<T> {
    ours.iter().copied().find(|o| theirs.contains(o))
}

/// Chooses an IKE proposal. Our configured order decides; the group in the peer's KE
/// payload is preferred when acceptable. Returns the chosen algorithms and the peer's
/// proposal number.
pub(crate) fn select_ike(offered: &[Proposal], ours: &[IkeProposal], ke_group: Option<u16>) -> Option<(IkeAlgs, u8)> {
    for o in ours {
        for p in offered.iter().filter(|p| p.protocol == proto::IKE) {
            let Some((encr, integ)) = pick_cipher(&o.encr, &o.integ, p) else { continue };
            let prfs: Vec<PrfAlg> =
                usable(p).filter(|t| t.ttype == ttype::PRF).filter_map(|t| PrfAlg::from_iana(t.id)).collect();
            let Some(prf) = first_common(&o.prf, &prfs) else { continue };
            let dhs: Vec<DhGroup> =
                usable(p).filter(|t| t.ttype == ttype::DH).filter_map(|t| DhGroup::from_iana(t.id)).collect();
            let ke_dh = ke_group.and_then(DhGroup::from_iana).filter(|g| o.dh.contains(g) && dhs.contains(g));
            let Some(dh) = ke_dh.or_else(|| first_common(&o.dh, &dhs)) else { continue };
            return Some((IkeAlgs { encr, integ, prf, dh }, p.num));
        }
    }
    None
}

/// The responder's single-proposal answer.
pub(crate) fn ike_answer(algs: IkeAlgs, num: u8, spi: &[u8]) -> Vec<Proposal> {
    vec![Proposal {
        num,
        protocol: proto::IKE,
        spi: spi.to_vec(),
        transforms: [
            cipher_transforms(algs.encr, algs.integ),
            vec![
                Transform::new(ttype::PRF, algs.prf.transform_id(), None),
                Transform::new(ttype::DH, algs.dh.transform_id(), None),
            ],
        ]
        .concat(),
    }]
}

/// Checks the responder's answer: exactly one proposal, one of each type, all offered by us.
pub(crate) fn accept_ike_answer(answer: &[Proposal], ours: &[IkeProposal]) -> Option<IkeAlgs> {
    let [p] = answer else { return None };
    if p.protocol != proto::IKE {
        return None;
    }
    let one = |tt: u8| {
        let v: Vec<&Transform> = p.transforms.iter().filter(|t| t.ttype == tt).collect();
        match v.as_slice() {
            [t] => Some((*t).clone()),
            _ => None,
        }
    };
    let (encr, integ) = answer_cipher(p)?;
    let prf = one(ttype::PRF).and_then(|t| PrfAlg::from_iana(t.id))?;
    let dh = one(ttype::DH).and_then(|t| DhGroup::from_iana(t.id))?;
    let offered = ours
        .iter()
        .any(|o| offers_cipher(&o.encr, &o.integ, encr, integ) && o.prf.contains(&prf) && o.dh.contains(&dh));
    offered.then_some(IkeAlgs { encr, integ, prf, dh })
}

/// Chooses an ESP proposal; returns the algorithms, the peer's proposal number and SPI.
/// KE transforms are ignored (IKE_AUTH); ESN as our proposal says.
pub(crate) fn select_esp(offered: &[Proposal], ours: &[EspProposal]) -> Option<(EspAlgs, u8, u32)> {
    for o in ours {
        for p in offered.iter().filter(|p| p.protocol == proto::ESP) {
            let Some(spi) = crate::message::payload::spi32(&p.spi) else { continue };
            let Some((encr, integ)) = pick_cipher(&o.encr, &o.integ, p) else { continue };
            if !esn_ok(p, o.esn) {
                continue;
            }
            return Some((EspAlgs { encr, integ, dh: None, esn: o.esn }, p.num, spi));
        }
    }
    None
}

/// The responder's single ESP proposal.
pub(crate) fn esp_answer(algs: EspAlgs, num: u8, spi: u32) -> Vec<Proposal> {
    vec![Proposal {
        num,
        protocol: proto::ESP,
        spi: spi.to_be_bytes().to_vec(),
        transforms: [
            cipher_transforms(algs.encr, algs.integ),
            vec![Transform::new(ttype::ESN, esn_id(algs.esn), None)],
        ]
        .concat(),
    }]
}

/// Checks the responder's ESP answer; returns the algorithms and the peer's SPI.
pub(crate) fn accept_esp_answer(answer: &[Proposal], ours: &[EspProposal]) -> Option<(EspAlgs, u32)> {
    let [p] = answer else { return None };
    if p.protocol != proto::ESP {
        return None;
    }
    let spi = crate::message::payload::spi32(&p.spi)?;
    let (encr, integ) = answer_cipher(p)?;
    let esn = answer_esn(p)?;
    ours.iter()
        .any(|o| offers_cipher(&o.encr, &o.integ, encr, integ) && o.esn == esn)
        .then_some((EspAlgs { encr, integ, dh: None, esn }, spi))
}

/// Why a CREATE_CHILD_SA proposal was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Nothing acceptable.
    NoProposal,
    /// Acceptable with this key exchange group, but the KE payload is for another one.
    InvalidKe(DhGroup),
}

/// Chooses an ESP proposal for CREATE_CHILD_SA, where the DH transform decides PFS
/// (RFC 7296 1.3.1, 1.3.3). A proposal of ours without groups accepts only offers
/// without DH (or with NONE); one with groups needs a common group, and the peer's KE
/// must be for it (else `InvalidKe` with the group we want). A KE sent for a proposal
/// we accept without DH is ignored.
pub(crate) fn select_esp_pfs(
    offered: &[Proposal],
    ours: &[EspProposal],
    ke_group: Option<u16>,
) -> Result<(EspAlgs, u8, u32), Refusal> {
    let mut wanted = None;
    for o in ours {
        for p in offered.iter().filter(|p| p.protocol == proto::ESP) {
            let Some(spi) = crate::message::payload::spi32(&p.spi) else { continue };
            let Some((encr, integ)) = pick_cipher(&o.encr, &o.integ, p) else { continue };
            if !esn_ok(p, o.esn) {
                continue;
            }
            let dh_ids: Vec<u16> = usable(p).filter(|t| t.ttype == ttype::DH).map(|t| t.id).collect();
            if o.dh.is_empty() {
                if dh_ids.is_empty() || dh_ids.contains(&0) {
                    return Ok((EspAlgs { encr, integ, dh: None, esn: o.esn }, p.num, spi));
                }
                continue;
            }
            let theirs: Vec<DhGroup> = dh_ids.iter().filter_map(|id| DhGroup::from_iana(*id)).collect();
            let ke = ke_group.and_then(DhGroup::from_iana).filter(|g| o.dh.contains(g) && theirs.contains(g));
            if let Some(g) = ke {
                return Ok((EspAlgs { encr, integ, dh: Some(g), esn: o.esn }, p.num, spi));
            }
            if let Some(g) = first_common(&o.dh, &theirs) {
                wanted.get_or_insert(g);
            }
        }
    }
    Err(wanted.map_or(Refusal::NoProposal, Refusal::InvalidKe))
}

/// The responder's single ESP proposal, with the DH transform when PFS was chosen.
pub(crate) fn esp_answer_pfs(algs: EspAlgs, num: u8, spi: u32) -> Vec<Proposal> {
    let mut t = cipher_transforms(algs.encr, algs.integ);
    if let Some(g) = algs.dh {
        t.push(Transform::new(ttype::DH, g.transform_id(), None));
    }
    t.push(Transform::new(ttype::ESN, esn_id(algs.esn), None));
    vec![Proposal { num, protocol: proto::ESP, spi: spi.to_be_bytes().to_vec(), transforms: t }]
}

/// Checks a CREATE_CHILD_SA ESP answer: one proposal, one cipher, at most one group, all
/// within one of our proposals. Returns the algorithms and the peer's SPI.
pub(crate) fn accept_esp_answer_pfs(answer: &[Proposal], ours: &[EspProposal]) -> Option<(EspAlgs, u32)> {
    let [p] = answer else { return None };
    if p.protocol != proto::ESP {
        return None;
    }
    let esn = answer_esn(p)?;
    let spi = crate::message::payload::spi32(&p.spi)?;
    let (encr, integ) = answer_cipher(p)?;
    let dh_ids: Vec<u16> = p.transforms.iter().filter(|t| t.ttype == ttype::DH && t.id != 0).map(|t| t.id).collect();
    let dh = match dh_ids.as_slice() {
        [] => None,
        [id] => Some(DhGroup::from_iana(*id)?),
        _ => return None,
    };
    let offered = ours.iter().any(|o| {
        offers_cipher(&o.encr, &o.integ, encr, integ)
            && o.esn == esn
            && dh.map_or(o.dh.is_empty(), |g| o.dh.contains(&g))
    });
    offered.then_some((EspAlgs { encr, integ, dh, esn }, spi))
}

/// The SPI of an IKE proposal (8 bytes, non-zero), as in an IKE SA rekey.
pub(crate) fn ike_spi(p: &Proposal) -> Option<u64> {
    let b: [u8; 8] = p.spi.as_slice().try_into().ok()?;
    Some(u64::from_be_bytes(b)).filter(|s| *s != 0)
}

/// Human-readable form of a peer's proposals for logs, swanctl style where known.
pub(crate) fn describe(offered: &[Proposal]) -> String {
    let mut out = Vec::new();
    // A peer may offer hundreds of proposals: name the first few, count the rest, so a
    // log line stays short whatever was sent.
    const SHOWN: usize = 4;
    for p in offered.iter().take(SHOWN) {
        let mut parts = Vec::new();
        for t in &p.transforms {
            let known = match t.ttype {
                ttype::ENCR => EncrAlg::from_iana(t.id, t.key_len).map(|e| e.keyword().to_string()),
                ttype::INTEG => IntegAlg::from_iana(t.id).map(|i| i.keyword().to_string()),
                ttype::PRF => PrfAlg::from_iana(t.id).map(|f| f.keyword().to_string()),
                ttype::DH => DhGroup::from_iana(t.id).map(|d| d.keyword().to_string()),
                ttype::ESN => Some(if t.id == 0 { "noesn".into() } else { "esn".into() }),
                _ => None,
            };
            parts.push(known.unwrap_or_else(|| match t.key_len {
                Some(k) => format!("T{}:{}/{}", t.ttype, t.id, k),
                None => format!("T{}:{}", t.ttype, t.id),
            }));
        }
        out.push(parts.join("-"));
    }
    if offered.len() > SHOWN {
        out.push(format!("and {} more proposals", offered.len() - SHOWN));
    }
    if out.is_empty() {
        "nothing".into()
    } else {
        crate::log::clip(&out.join(", ")).into_owned()
    }
}

/// Our configured proposals for logs.
pub(crate) fn describe_ours<T: std::fmt::Display>(ours: &[T]) -> String {
    ours.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_first_acceptable_and_skips_unknown() {
        let ours = vec![IkeProposal::parse("aes256gcm16-prfsha256-x25519-ecp256").unwrap()];
        let mut peer = ike_offer(&[IkeProposal::parse("aes128gcm16-prfsha384-ecp256").unwrap()], &[]);
        assert_eq!(select_ike(&peer, &ours, Some(19)), None);
        peer.extend(ike_offer(&[IkeProposal::parse("aes256gcm16-prfsha256-ecp256-x25519").unwrap()], &[]));
        peer[1].num = 2;
        // Unknown transform type 99 and an ENCR with an unknown attribute are skipped.
        peer[1].transforms.insert(0, Transform::new(99, 7, None));
        peer[1].transforms.insert(0, Transform { ttype: ttype::ENCR, id: 20, key_len: Some(256), unknown_attrs: true });
        let (algs, num) = select_ike(&peer, &ours, Some(19)).unwrap();
        assert_eq!(num, 2);
        assert_eq!(
            algs,
            IkeAlgs { encr: EncrAlg::AesGcm16_256, integ: None, prf: PrfAlg::HmacSha256, dh: DhGroup::Ecp256 }
        );
        let (algs, _) = select_ike(&peer, &ours, Some(31)).unwrap();
        assert_eq!(algs.dh, DhGroup::Curve25519);
        assert_eq!(accept_ike_answer(&ike_answer(algs, 2, &[]), &ours), Some(algs));
    }

    #[test]
    fn esp_requires_no_esn() {
        let ours = vec![EspProposal::parse("aes128gcm16").unwrap()];
        let mut offer = esp_offer(&ours, 0x1234_5678, false);
        assert_eq!(select_esp(&offer, &ours).map(|s| s.2), Some(0x1234_5678));
        offer[0].transforms.retain(|t| t.ttype != ttype::ESN);
        offer[0].transforms.push(Transform::new(ttype::ESN, 1, None));
        assert_eq!(select_esp(&offer, &ours), None);
    }

    #[test]
    fn esn_is_chosen_only_when_both_sides_want_it() {
        let esn = vec![EspProposal::parse("aes128gcm16-esn").unwrap()];
        let no_esn = vec![EspProposal::parse("aes128gcm16").unwrap()];
        let offer = esp_offer(&esn, 9, false);
        assert!(offer[0].transforms.contains(&Transform::new(ttype::ESN, 1, None)));
        let (algs, num, spi) = select_esp(&offer, &esn).unwrap();
        assert!(algs.esn);
        assert_eq!(select_esp(&offer, &no_esn), None, "we refuse ESN unless configured");
        assert_eq!(select_esp(&esp_offer(&no_esn, 9, false), &esn), None);
        // An offer of both lets either side's setting win.
        let mut both = esp_offer(&no_esn, 9, false);
        both[0].transforms.push(Transform::new(ttype::ESN, 1, None));
        assert!(select_esp(&both, &esn).unwrap().0.esn);
        assert!(!select_esp(&both, &no_esn).unwrap().0.esn);
        // The initiator checks the answer against what it offered.
        let answer = esp_answer(algs, num, spi);
        assert_eq!(accept_esp_answer(&answer, &esn).map(|a| a.0.esn), Some(true));
        assert_eq!(accept_esp_answer(&answer, &no_esn), None);
        let answer = esp_answer_pfs(algs, num, spi);
        assert_eq!(accept_esp_answer_pfs(&answer, &esn).map(|a| a.0.esn), Some(true));
    }

    #[test]
    fn pfs_selection_follows_the_ke_group() {
        let ours = vec![EspProposal::parse("aes256gcm16-x25519-ecp256").unwrap()];
        let offer = esp_offer(&[EspProposal::parse("aes256gcm16-ecp256-x25519").unwrap()], 7, true);
        let (algs, _, spi) = select_esp_pfs(&offer, &ours, Some(19)).unwrap();
        assert_eq!((algs.dh, spi), (Some(DhGroup::Ecp256), 7));
        assert_eq!(select_esp_pfs(&offer, &ours, None), Err(Refusal::InvalidKe(DhGroup::Curve25519)));
        // We want no PFS: an offer that only has groups is refused, one with NONE accepted.
        let no_pfs = vec![EspProposal::parse("aes256gcm16").unwrap()];
        assert_eq!(select_esp_pfs(&offer, &no_pfs, Some(31)), Err(Refusal::NoProposal));
        let plain = esp_offer(&no_pfs, 8, true);
        assert_eq!(select_esp_pfs(&plain, &no_pfs, None).unwrap().0.dh, None);
        // PFS wanted, peer offers none: refused.
        assert_eq!(select_esp_pfs(&plain, &ours, None), Err(Refusal::NoProposal));
        let answer = esp_answer_pfs(algs, 1, 9);
        assert_eq!(accept_esp_answer_pfs(&answer, &ours), Some((algs, 9)));
        assert_eq!(accept_esp_answer_pfs(&answer, &no_pfs), None);
    }

    fn ike(s: &str) -> IkeProposal {
        IkeProposal::parse(s).unwrap()
    }
    fn esp(s: &str) -> EspProposal {
        EspProposal::parse(s).unwrap()
    }
    fn integ_ids(p: &Proposal) -> Vec<u16> {
        p.transforms.iter().filter(|t| t.ttype == ttype::INTEG).map(|t| t.id).collect()
    }

    #[test]
    fn cbc_offers_carry_integrity_and_chacha_no_key_length() {
        let offer = ike_offer(&[ike("aes128-sha1-sha256-modp1024")], &[]);
        assert_eq!(integ_ids(&offer[0]), vec![2, 12]);
        let prfs: Vec<u16> = offer[0].transforms.iter().filter(|t| t.ttype == ttype::PRF).map(|t| t.id).collect();
        assert_eq!(prfs, vec![2, 5], "PRFs from the integrity algorithms");
        assert!(integ_ids(&ike_offer(&[ike("aes256gcm16-prfsha256-x25519")], &[])[0]).is_empty());
        let offer = esp_offer(&[esp("aes256-sha512-modp2048")], 1, true);
        assert_eq!(integ_ids(&offer[0]), vec![14]);
        let offer = esp_offer(&[esp("chacha20poly1305")], 1, false);
        assert_eq!(offer[0].transforms[0], Transform::new(ttype::ENCR, 28, None));
        assert!(integ_ids(&offer[0]).is_empty());
        assert_eq!(describe(&offer), "chacha20poly1305-noesn");
        assert_eq!(describe(&ike_offer(&[ike("aes128-sha1-modp1024")], &[])), "aes128-sha1-prfsha1-modp1024");
    }

    #[test]
    fn cbc_selection_needs_a_common_integrity_algorithm() {
        let ours = vec![ike("aes256-aes128-sha256-sha1-modp2048")];
        // Our order decides: aes256, then sha256.
        let peer = ike_offer(&[ike("aes128-aes256-sha1-sha256-prfsha256-modp2048")], &[]);
        let (algs, _) = select_ike(&peer, &ours, Some(14)).unwrap();
        assert_eq!((algs.encr, algs.integ), (EncrAlg::AesCbc256, Some(IntegAlg::HmacSha256_128)));
        assert_eq!(algs.keywords(), "aes256-sha256-prfsha256-modp2048");
        assert_eq!(accept_ike_answer(&ike_answer(algs, 1, &[]), &ours), Some(algs));
        // No common integrity algorithm, or none offered at all: nothing.
        let peer = ike_offer(&[ike("aes256-sha512-prfsha256-modp2048")], &[]);
        assert_eq!(select_ike(&peer, &ours, Some(14)), None);
        let mut bare = ike_offer(&[ike("aes256-sha256-prfsha256-modp2048")], &[]);
        bare[0].transforms.retain(|t| t.ttype != ttype::INTEG);
        assert_eq!(select_ike(&bare, &ours, Some(14)), None);
    }

    #[test]
    fn aead_selection_refuses_integrity_but_takes_none() {
        let ours = vec![ike("aes128gcm16-prfsha256-x25519")];
        let mut peer = ike_offer(&[ike("aes128gcm16-prfsha256-x25519")], &[]);
        peer[0].transforms.push(Transform::new(ttype::INTEG, 12, None));
        assert_eq!(select_ike(&peer, &ours, Some(31)), None, "AEAD with a real integrity transform");
        peer[0].transforms.push(Transform::new(ttype::INTEG, 0, None));
        assert!(select_ike(&peer, &ours, Some(31)).is_some(), "NONE among them is fine (RFC 5282 8)");
        // A peer proposal mixing AEAD and CBC (not valid, but seen): each cipher on its own terms.
        let both = vec![ike("aes128gcm16-prfsha256-x25519"), ike("aes128-sha256-x25519")];
        let mut mixed = ike_offer(&[ike("aes128-sha256-prfsha256-x25519")], &[]);
        mixed[0].transforms.insert(0, Transform::new(ttype::ENCR, 20, Some(128)));
        let (algs, _) = select_ike(&mixed, &both, Some(31)).unwrap();
        assert_eq!((algs.encr, algs.integ), (EncrAlg::AesCbc128, Some(IntegAlg::HmacSha256_128)));
    }

    #[test]
    fn answers_that_mix_aead_and_integrity_are_refused() {
        let ours = vec![ike("aes128-sha256-x25519"), ike("aes128gcm16-prfsha256-x25519")];
        let cbc = IkeAlgs {
            encr: EncrAlg::AesCbc128,
            integ: Some(IntegAlg::HmacSha256_128),
            prf: PrfAlg::HmacSha256,
            dh: DhGroup::Curve25519,
        };
        let gcm = IkeAlgs { encr: EncrAlg::AesGcm16_128, integ: None, ..cbc };
        assert_eq!(accept_ike_answer(&ike_answer(cbc, 1, &[]), &ours), Some(cbc));
        assert_eq!(accept_ike_answer(&ike_answer(gcm, 2, &[]), &ours), Some(gcm));
        // CBC without its integrity transform.
        let mut a = ike_answer(cbc, 1, &[]);
        a[0].transforms.retain(|t| t.ttype != ttype::INTEG);
        assert_eq!(accept_ike_answer(&a, &ours), None);
        // CBC with two.
        let mut a = ike_answer(cbc, 1, &[]);
        a[0].transforms.push(Transform::new(ttype::INTEG, 2, None));
        assert_eq!(accept_ike_answer(&a, &ours), None);
        // AEAD with one.
        let mut a = ike_answer(gcm, 2, &[]);
        a[0].transforms.push(Transform::new(ttype::INTEG, 12, None));
        assert_eq!(accept_ike_answer(&a, &ours), None);
        // An integrity algorithm we did not offer.
        let sha1 = IkeAlgs { integ: Some(IntegAlg::HmacSha1_96), ..cbc };
        assert_eq!(accept_ike_answer(&ike_answer(sha1, 1, &[]), &ours), None);
        // Two ciphers.
        let mut a = ike_answer(cbc, 1, &[]);
        a[0].transforms.push(Transform::new(ttype::ENCR, 12, Some(256)));
        assert_eq!(accept_ike_answer(&a, &ours), None);
    }

    #[test]
    fn esp_integrity_in_both_exchanges() {
        let ours = vec![esp("aes128-sha1-modp1024")];
        // IKE_AUTH: no KE transforms; the integrity transform comes along.
        let offer = esp_offer(&ours, 5, false);
        let (algs, num, spi) = select_esp(&offer, &ours).unwrap();
        assert_eq!((algs.encr, algs.integ, algs.dh), (EncrAlg::AesCbc128, Some(IntegAlg::HmacSha1_96), None));
        let answer = esp_answer(algs, num, spi);
        assert_eq!(integ_ids(&answer[0]), vec![2]);
        assert_eq!(accept_esp_answer(&answer, &ours), Some((algs, 5)));
        // CREATE_CHILD_SA with PFS.
        let offer = esp_offer(&ours, 6, true);
        let (algs, num, spi) = select_esp_pfs(&offer, &ours, Some(2)).unwrap();
        assert_eq!((algs.integ, algs.dh), (Some(IntegAlg::HmacSha1_96), Some(DhGroup::Modp1024)));
        let answer = esp_answer_pfs(algs, num, spi);
        assert_eq!(accept_esp_answer_pfs(&answer, &ours), Some((algs, 6)));
        // Mixed answers are refused in both exchanges.
        let mut bad = answer.clone();
        bad[0].transforms.retain(|t| t.ttype != ttype::INTEG);
        assert_eq!(accept_esp_answer_pfs(&bad, &ours), None);
        let gcm = vec![esp("aes128gcm16-modp1024")];
        let mut bad = esp_answer_pfs(EspAlgs { encr: EncrAlg::AesGcm16_128, integ: None, ..algs }, 1, 6);
        assert_eq!(accept_esp_answer_pfs(&bad, &gcm).map(|a| a.0.encr), Some(EncrAlg::AesGcm16_128));
        bad[0].transforms.push(Transform::new(ttype::INTEG, 2, None));
        assert_eq!(accept_esp_answer_pfs(&bad, &gcm), None);
        assert_eq!(accept_esp_answer(&bad, &gcm), None);
        // Integrity mismatch: NO_PROPOSAL_CHOSEN, not INVALID_KE_PAYLOAD.
        let theirs = esp_offer(&[esp("aes128-sha256-modp1024")], 7, true);
        assert_eq!(select_esp_pfs(&theirs, &ours, Some(2)), Err(Refusal::NoProposal));
        assert_eq!(select_esp(&theirs, &ours), None);
        // An AEAD offer against our CBC proposal, and the reverse.
        assert_eq!(select_esp(&esp_offer(&gcm, 8, false), &ours), None);
        assert_eq!(select_esp(&esp_offer(&ours, 8, false), &gcm), None);
    }
}
