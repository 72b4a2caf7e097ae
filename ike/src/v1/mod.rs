//! IKEv1 (RFC 2409 over the ISAKMP framework of RFC 2408 and the IPsec DOI of RFC 2407)
//! for the classic gateways that speak nothing else: a sibling of the IKEv2 tree
//! (`message`, `sa`, `task`), sharing with it what is the same in both versions and
//! nothing else:
//!
//! - `crate::crypto`: the PRF (HMAC-SHA1/SHA2 via ring; IKEv1's prf is the negotiated
//!   hash's HMAC), the key exchange (MODP and ECP groups: g^x and g^xy as IKEv2 has
//!   them), AES-CBC (`AesKey`) and constant-time comparison;
//! - `crate::message::codec`: the bounds-checked byte reader and the walker of
//!   four-octet substructure headers (proposals and transforms have IKEv2's layout);
//! - `ipsec_types`: proposals in swanctl syntax and the SA parameters handed to `esp`.
//!
//! Here: `message` (the ISAKMP header, payload chain and bodies, the encrypted body),
//! `keys` (SKEYID and its derivatives, the IV chain, HASH_I/HASH_R, Quick Mode KEYMAT
//! and hashes), `proposal` (phase-1 transforms and Quick Mode proposals from the
//! swanctl-syntax configuration, and choosing from a peer's offer), `main_mode` (the
//! PSK Main Mode exchange in both roles, ending in a `Phase1Sa`), `aggressive` (the same
//! in three messages, opt-in), `quick_mode`
//! (Quick Mode in both roles with or without PFS, selectors as ID payloads, ending in
//! a `QuickSa` with both ESP keys) and `info` (the Informational exchange: Delete,
//! DPD, INITIAL-CONTACT; the DPD and NAT-T Vendor IDs), and `sa` (one ISAKMP SA with
//! its IPsec SA pairs, timers and retransmission). `crate::endpoint::v1` routes
//! datagrams to it by cookie. `docs/ikev1.md` describes the whole.

pub(crate) mod aggressive;
pub(crate) mod info;
pub(crate) mod keys;
pub(crate) mod main_mode;
pub(crate) mod message;
pub(crate) mod proposal;
pub(crate) mod quick_mode;
pub(crate) mod sa;
#[cfg(test)]
mod test_support;

use crate::Rng;
use zeroize::Zeroizing;

/// Length of the nonces we send (RFC 2409 5 allows 8 to 256 octets).
const NONCE_LEN: usize = 32;

/// A fresh nonce from the injected RNG.
fn nonce(rng: &mut dyn Rng) -> Zeroizing<Vec<u8>> {
    let mut n = Zeroizing::new(vec![0u8; NONCE_LEN]);
    rng.fill(&mut n);
    n
}

/// `N` random octets, drawn again while all zero (a zero cookie or message ID means
/// "none" on the wire).
fn nonzero<const N: usize>(rng: &mut dyn Rng) -> [u8; N] {
    let mut b = [0u8; N];
    while b == [0; N] {
        rng.fill(&mut b);
    }
    b
}
