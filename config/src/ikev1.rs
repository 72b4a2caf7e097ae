//! `ike_version` and the rules a tunnel with `ike_version = 1` must satisfy on top of
//! the IKEv2 ones. Owns what IKEv1 (RFC 2409, Main Mode with a pre-shared key and Quick
//! Mode, as `ike` speaks it) cannot express; everything else (PSK, identities, subnets,
//! start, encapsulation, lifetimes, DPD, replay window) is checked as for IKEv2.
//!
//! - IKE proposals: phase 1 has no AEAD cipher, so each proposal names AES-CBC and an
//!   integrity algorithm, whose HMAC is also the phase-1 PRF (IKEv1 negotiates no
//!   separate PRF). A `prf...` keyword is therefore accepted only when it says exactly
//!   that: the HMACs of the proposal's integrity algorithms.
//! - ESP proposals: no ChaCha20-Poly1305 (no IPsec DOI number in use among IKEv1 peers)
//!   and no `esn` (not negotiated over IKEv1 here). AES-GCM is fine.
//! - Subnets: Quick Mode carries one subnet pair per SA, so every (local, remote) pair is
//!   its own SA pair: `child_sa_per_subnet_pair` is implied, and setting it to `false`
//!   with more than one pair is refused, as are subnets with no pair of the same address
//!   family (nothing Quick Mode could negotiate). The subnets themselves need no rule: they are
//!   CIDR prefixes for all protocols and ports, each an IKEv1 ID payload as it is (IKEv1
//!   has no form for a port range, but configured subnets never have one).
//! - Fragmentation: IKEv1 fragmentation is not implemented, so `fragmentation = true`
//!   and any `fragment_size` are refused rather than silently ignored; unset (or
//!   `fragmentation = false`) the tunnel simply does not fragment.
//! - The default IKE proposal ([`DEFAULT_IKE_PROPOSAL_V1`]) replaces IKEv2's AEAD one.
//! - `aggressive = true` (Aggressive Mode, an explicit opt-in) is accepted with IKEv1
//!   only (`validate` refuses it with IKEv2); `ike` warns about it at start-up, so it
//!   draws no configuration warning of its own.

use crate::raw::RawTunnel;
use crate::validate::Ctx;
use crate::{ConfigError, IkeVersion};
use ipsec_types::{EncrAlg, EspProposal, IkeProposal};
use std::ops::Range;
use toml::Spanned;

/// Default `[[tunnel]] ike_proposals` with `ike_version = 1`: IKEv2's default is an AEAD,
/// which IKEv1 phase 1 does not have; group 14 is the strongest group classic IKEv1
/// gateways commonly support.
pub const DEFAULT_IKE_PROPOSAL_V1: &str = "aes256-sha256-modp2048";

/// The `ike_version` key: 1 or 2, default 2.
pub(crate) fn version(
    cx: &Ctx<'_>,
    v: Option<&Spanned<i64>>,
    key: String,
    n: Option<&str>,
) -> Result<IkeVersion, ConfigError> {
    match v.map(|v| (*v.get_ref(), v.span())) {
        None | Some((2, _)) => Ok(IkeVersion::V2),
        Some((1, _)) => Ok(IkeVersion::V1),
        Some((other, span)) => Err(cx.err(
            Some(span),
            key,
            n,
            format!(
                "{other} is not an IKE version: 2 (IKEv2, the default) or 1 (IKEv1, for peers that speak nothing else)"
            ),
        )),
    }
}

/// Each entry of a proposal list as written, with its span (the default, `None` and as
/// parsed, has no line).
fn entries<T: std::fmt::Display>(
    v: Option<&Spanned<Vec<Spanned<String>>>>,
    parsed: &[T],
) -> Vec<(Option<Range<usize>>, String)> {
    match v {
        Some(v) => v.get_ref().iter().map(|s| (Some(s.span()), s.get_ref().clone())).collect(),
        None => parsed.iter().map(|p| (None, p.to_string())).collect(),
    }
}

/// Why IKEv1 cannot offer this IKE proposal (written `text`), if it cannot.
fn ike_problem(p: &IkeProposal, text: &str) -> Option<String> {
    if let Some(e) = p.encr.iter().find(|e| e.is_aead()) {
        return Some(format!(
            "{text:?} uses the AEAD cipher {}, which IKEv1 phase 1 does not have (ike_version = 1): use AES-CBC with \
             an integrity algorithm, e.g. {DEFAULT_IKE_PROPOSAL_V1:?}",
            e.keyword()
        ));
    }
    // Without an AEAD, `IkeProposal::parse` has made sure of an integrity algorithm: the
    // phase-1 hash. IKEv1's PRF is the HMAC of the negotiated hash: the PRFs must be
    // exactly those.
    let hmacs: Vec<_> = p.integ.iter().map(|i| i.prf()).collect();
    if let Some(f) = p.prf.iter().find(|f| !hmacs.contains(f)) {
        let per_hash: Vec<String> =
            p.integ.iter().map(|i| format!("{} for {}", i.prf().keyword(), i.keyword())).collect();
        return Some(format!(
            "{text:?} names {}, but IKEv1 (ike_version = 1) has no separate PRF: it is the HMAC of the hash, here \
             {}; leave the prf keyword out",
            f.keyword(),
            per_hash.join(", ")
        ));
    }
    if let Some(i) = p.integ.iter().find(|i| !p.prf.contains(&i.prf())) {
        return Some(format!(
            "{text:?} does not name {}, yet IKEv1 (ike_version = 1) uses it with {}: its PRF is the HMAC of the \
             hash; leave the prf keywords out",
            i.prf().keyword(),
            i.keyword()
        ));
    }
    None
}

/// Why Quick Mode cannot offer this ESP proposal (written `text`), if it cannot.
fn esp_problem(p: &EspProposal, text: &str) -> Option<String> {
    if p.encr.contains(&EncrAlg::ChaCha20Poly1305) {
        return Some(format!(
            "{text:?} uses chacha20poly1305, for which IKEv1 peers use no transform number (ike_version = 1): use \
             aes256gcm16 or aes256-sha256"
        ));
    }
    if p.esn {
        return Some(format!(
            "{text:?} asks for extended sequence numbers, which vpngw does not negotiate over IKEv1 (ike_version = 1): \
             drop \"esn\""
        ));
    }
    None
}

/// The IKEv1 rules for tunnel `i` (named `n`), after its keys have passed the common
/// checks and been parsed into `ike` and `esp`; `subnet_pairs` counts the (local,
/// remote) subnet pairs of the same address family.
pub(crate) fn check(
    cx: &Ctx<'_>,
    t: &RawTunnel,
    i: usize,
    n: Option<&str>,
    ike: &[IkeProposal],
    esp: &[EspProposal],
    subnet_pairs: usize,
) -> Result<(), ConfigError> {
    let key = |k: &str| format!("tunnel[{i}].{k}");
    for (p, (span, text)) in ike.iter().zip(entries(t.ike_proposals.as_ref(), ike)) {
        if let Some(why) = ike_problem(p, &text) {
            return Err(cx.err(span, key("ike_proposals"), n, why));
        }
    }
    for (p, (span, text)) in esp.iter().zip(entries(t.esp_proposals.as_ref(), esp)) {
        if let Some(why) = esp_problem(p, &text) {
            return Err(cx.err(span, key("esp_proposals"), n, why));
        }
    }
    if subnet_pairs == 0 {
        let span = t.remote_subnets.as_ref().map(Spanned::span);
        return Err(cx.err(
            span,
            key("remote_subnets"),
            n,
            "none is of the address family of a local subnet, and IKEv1 Quick Mode negotiates one local and one \
             remote subnet of the same family per SA (ike_version = 1)"
                .into(),
        ));
    }
    if let Some(v) = t.child_sa_per_subnet_pair.as_ref().filter(|v| !*v.get_ref()) {
        if subnet_pairs > 1 {
            return Err(cx.err(
                Some(v.span()),
                key("child_sa_per_subnet_pair"),
                n,
                format!(
                    "IKEv1 Quick Mode negotiates one subnet pair per SA, so the {subnet_pairs} pairs of local_subnets \
                     and remote_subnets get one SA each (ike_version = 1); remove this key"
                ),
            ));
        }
    }
    if let Some(v) = t.fragmentation.as_ref().filter(|v| *v.get_ref()) {
        return Err(cx.err(
            Some(v.span()),
            key("fragmentation"),
            n,
            "vpngw does not fragment IKEv1 messages (ike_version = 1); remove this key".into(),
        ));
    }
    if let Some(v) = t.fragment_size.as_ref() {
        return Err(cx.err(
            Some(v.span()),
            key("fragment_size"),
            n,
            "vpngw does not fragment IKEv1 messages (ike_version = 1); remove this key".into(),
        ));
    }
    Ok(())
}
