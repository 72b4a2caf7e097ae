//! The contract between the IKE negotiator (`ike`) and the ESP datapath (`esp`).
//!
//! `ike` never depends on `esp` and `esp` never depends on `ike`: everything that
//! crosses the seam between them is defined here, as plain data. The gateway is the
//! only crate that sees both sides (like strongSwan's `kernel_ipsec_t`, but as data).
//! It also declares the settings that `config` and `ike` share, so that each is
//! declared once: a peer's lifetime and liveness timers ([`SaTimers`], [`Dpd`]).
//!
//! This crate does no I/O and holds no clock: [`Timestamp`] values are handed in by the
//! caller.
#![forbid(unsafe_code)]

mod algorithms;
mod identity;
mod selector;
mod time;
mod timers;

pub use algorithms::{DhGroup, EncrAlg, EspProposal, IkeProposal, IntegAlg, PrfAlg};
pub use identity::Identity;
pub use selector::TrafficSelector;
pub use time::Timestamp;
pub use timers::{Dpd, DpdAction, SaTimers};

use std::fmt;
use std::net::IpAddr;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// An IPsec Security Parameter Index (RFC 4303 section 2.1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Spi(pub u32);

impl fmt::Debug for Spi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}
impl fmt::Display for Spi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// Direction of an SA as seen from this gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Direction {
    /// Packets we receive and open.
    Inbound,
    /// Packets we seal and send.
    Outbound,
}

/// UDP encapsulation of ESP (RFC 3948): the ports used on each side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct UdpEncap {
    /// Our UDP port (normally 4500).
    pub local_port: u16,
    /// The peer's UDP port (4500, or whatever a NAT mapped it to).
    pub remote_port: u16,
}

/// The outer addresses of an SA, and whether ESP is carried in UDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct SaEndpoints {
    /// Our WAN address.
    pub local: IpAddr,
    /// The peer's WAN address.
    pub remote: IpAddr,
    /// `Some` when ESP travels in UDP (RFC 3948), `None` for raw IP protocol 50.
    pub encap: Option<UdpEncap>,
}

/// ESP key material for one direction of a CHILD_SA: the encryption key (with the
/// 4-byte salt of the AEADs, RFC 4106 section 8.1, RFC 7634 section 2) and, for
/// AES-CBC, the integrity key.
///
/// `ike` fills it from its KEYMAT slice for the direction, which RFC 7296 section 2.17
/// orders encryption key first, then integrity key: [`EspKey::keymat_len`] says how long
/// that slice is, [`EspKey::from_keymat`] splits it ([`EspKey::pair_from_keymat`] both
/// directions of a whole KEYMAT, initiator-to-responder first). The key bytes are zeroized on drop
/// and never printed by `Debug`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct EspKey {
    #[zeroize(skip)]
    encr: EncrAlg,
    #[zeroize(skip)]
    integ: Option<IntegAlg>,
    key: Vec<u8>,
    salt: [u8; 4],
    integ_key: Vec<u8>,
}

impl EspKey {
    /// Length of one direction's KEYMAT for this pair, or `None` if the pair is not
    /// valid (an AEAD with an integrity algorithm, AES-CBC without one).
    pub fn keymat_len(encr: EncrAlg, integ: Option<IntegAlg>) -> Option<usize> {
        match (encr.is_aead(), integ) {
            (true, None) => Some(encr.keymat_len()),
            (false, Some(i)) => Some(encr.keymat_len() + i.key_len()),
            _ => None,
        }
    }
    /// Splits one direction's KEYMAT (RFC 7296 2.17): the cipher key, the salt (AEADs
    /// only), then the integrity key (AES-CBC only). Returns `None` if the length does
    /// not match or the pair is not valid (see [`Self::keymat_len`]).
    pub fn from_keymat(encr: EncrAlg, integ: Option<IntegAlg>, keymat: &[u8]) -> Option<Self> {
        if keymat.len() != Self::keymat_len(encr, integ)? {
            return None;
        }
        let (key, rest) = keymat.split_at(encr.key_len());
        let (salt_bytes, integ_key) = rest.split_at(encr.salt_len());
        let mut salt = [0u8; 4];
        salt.get_mut(..salt_bytes.len())?.copy_from_slice(salt_bytes);
        Some(Self { encr, integ, key: key.to_vec(), salt, integ_key: integ_key.to_vec() })
    }
    /// Splits a CHILD SA's whole KEYMAT (RFC 7296 2.17): the initiator-to-responder
    /// keys first, then the responder-to-initiator keys, each encryption key (and salt)
    /// then integrity key. Returns (initiator-to-responder, responder-to-initiator), or
    /// `None` if `keymat` is not exactly `2 * keymat_len` bytes or the pair is invalid.
    pub fn pair_from_keymat(encr: EncrAlg, integ: Option<IntegAlg>, keymat: &[u8]) -> Option<(Self, Self)> {
        let len = Self::keymat_len(encr, integ)?;
        if keymat.len() != 2 * len {
            return None;
        }
        let (i_to_r, r_to_i) = keymat.split_at(len);
        Some((Self::from_keymat(encr, integ, i_to_r)?, Self::from_keymat(encr, integ, r_to_i)?))
    }
    /// The encryption algorithm.
    pub fn alg(&self) -> EncrAlg {
        self.encr
    }
    /// The integrity algorithm (`Some` exactly for AES-CBC).
    pub fn integ(&self) -> Option<IntegAlg> {
        self.integ
    }
    /// The cipher key (16, 24 or 32 bytes).
    pub fn key(&self) -> &[u8] {
        &self.key
    }
    /// The 4-byte implicit nonce salt of the AEADs (zero for AES-CBC).
    pub fn salt(&self) -> [u8; 4] {
        self.salt
    }
    /// The integrity key (empty for the AEADs).
    pub fn integ_key(&self) -> &[u8] {
        &self.integ_key
    }
}

impl fmt::Debug for EspKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.integ {
            Some(i) => write!(f, "EspKey({}, {i}, <redacted>)", self.encr),
            None => write!(f, "EspKey({}, <redacted>)", self.encr),
        }
    }
}

/// Identifies the CHILD_SA an ESP SA belongs to, for counters and status.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ChildRef {
    /// The tunnel name from the configuration.
    pub tunnel: String,
    /// A gateway-unique id of the CHILD_SA (both directions share it).
    pub child_id: u64,
}

/// Everything the datapath needs to run one direction of a CHILD_SA.
#[derive(Clone, Debug)]
pub struct SaParams {
    /// The SPI carried in the ESP header (the receiver's choice).
    pub spi: Spi,
    /// Inbound or outbound.
    pub direction: Direction,
    /// Which CHILD_SA this belongs to.
    pub child: ChildRef,
    /// Outer addresses and encapsulation.
    pub endpoints: SaEndpoints,
    /// Algorithms and keys.
    pub key: EspKey,
    /// Anti-replay window size in packets (inbound only; 0 disables the check).
    pub replay_window: u32,
    /// Extended (64-bit) sequence numbers negotiated.
    pub esn: bool,
    /// Our side's traffic selectors (inner source for outbound, inner destination for inbound).
    pub local_ts: Vec<TrafficSelector>,
    /// The peer's traffic selectors (inner destination for outbound, inner source for inbound).
    pub remote_ts: Vec<TrafficSelector>,
    /// Volume limits counted by the datapath (time limits stay in `ike`).
    pub limits: VolumeLimits,
}

/// Byte and packet limits of one SA direction. The datapath raises a soft
/// [`DatapathEvent::Expired`] (rekey now) at a soft limit and refuses the SA at a hard one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VolumeLimits {
    /// Soft byte limit (inner bytes), `None` = off.
    pub soft_bytes: Option<u64>,
    /// Soft packet limit, `None` = off.
    pub soft_packets: Option<u64>,
    /// Hard byte limit, `None` = off.
    pub hard_bytes: Option<u64>,
    /// Hard packet limit, `None` = off.
    pub hard_packets: Option<u64>,
}

/// What `ike` asks of the datapath. Applied in order.
///
/// Make-before-break: a new inbound SA is installed before the peer can use it;
/// outbound moves to a new SA only with `InstallOutbound`; `Remove` comes last.
///
/// SPI namespaces: an outbound SPI is chosen by the peer of one tunnel, so outbound SAs
/// are named by (tunnel, SPI) — two tunnels may use the same outbound SPI and never
/// touch each other's SA. Inbound SPIs are ours and unique across the gateway; the
/// datapath refuses an inbound SPI that another tunnel holds.
#[derive(Clone, Debug)]
pub enum DatapathCommand {
    /// Accept ESP packets with this SPI (`SaParams::child` names the tunnel).
    InstallInbound(SaParams),
    /// Send traffic matching the selectors with this SA (replaces an older outbound SA
    /// of the same tunnel and CHILD_SA / selectors).
    InstallOutbound(SaParams),
    /// Forget an SA.
    Remove {
        /// The tunnel that owns the SA (`ChildRef::tunnel`).
        tunnel: String,
        /// The SPI.
        spi: Spi,
        /// Which direction's table.
        direction: Direction,
    },
    /// The peer's address or port changed (NAT mapping update).
    UpdateEndpoints {
        /// The tunnel that owns the SA (`ChildRef::tunnel`).
        tunnel: String,
        /// The SPI.
        spi: Spi,
        /// Which direction's table.
        direction: Direction,
        /// New endpoints.
        endpoints: SaEndpoints,
    },
}

/// Why the datapath reports an SA as expiring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ExpiryReason {
    /// Byte limit reached.
    Bytes,
    /// Packet limit reached.
    Packets,
    /// Sequence number space nearly exhausted.
    SeqExhausted,
}

/// What the datapath reports back to `ike` (through the gateway).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatapathEvent {
    /// A volume limit was hit: `hard == false` asks for a rekey, `true` means the SA is unusable.
    Expired {
        /// The tunnel that owns the SA (`ChildRef::tunnel`).
        tunnel: String,
        /// The SPI.
        spi: Spi,
        /// Direction of the SA.
        direction: Direction,
        /// Soft (rekey now) or hard (SA is dead).
        hard: bool,
        /// What ran out.
        reason: ExpiryReason,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esp_key_splits_keymat_in_rfc7296_order() {
        let km: Vec<u8> = (0..36).collect();
        let g = EspKey::from_keymat(EncrAlg::AesGcm16_256, None, &km).unwrap();
        assert_eq!((g.key(), g.salt(), g.integ_key()), (&km[..32], [32, 33, 34, 35], &[][..]));
        let c = EspKey::from_keymat(EncrAlg::ChaCha20Poly1305, None, &km).unwrap();
        assert_eq!((c.key(), c.salt()), (&km[..32], [32, 33, 34, 35]));
        let km: Vec<u8> = (0..36).collect();
        let k = EspKey::from_keymat(EncrAlg::AesCbc128, Some(IntegAlg::HmacSha1_96), &km).unwrap();
        assert_eq!((k.key(), k.salt(), k.integ_key()), (&km[..16], [0; 4], &km[16..]));
        assert_eq!(EspKey::keymat_len(EncrAlg::AesCbc256, Some(IntegAlg::HmacSha512_256)), Some(96));
        assert_eq!(EspKey::keymat_len(EncrAlg::AesCbc192, None), None);
        assert_eq!(EspKey::keymat_len(EncrAlg::AesGcm16_128, Some(IntegAlg::HmacSha256_128)), None);
        assert!(EspKey::from_keymat(EncrAlg::AesCbc128, Some(IntegAlg::HmacSha1_96), &km[..35]).is_none());
        assert!(EspKey::from_keymat(EncrAlg::AesCbc128, None, &km[..16]).is_none());
        assert!(!format!("{k:?}").contains("16"), "no key bytes in Debug: {k:?}");
        // Both directions: i->r (encryption key, integrity key), then r->i.
        let km: Vec<u8> = (0..2 * 48).collect();
        let (ir, ri) = EspKey::pair_from_keymat(EncrAlg::AesCbc128, Some(IntegAlg::HmacSha256_128), &km).unwrap();
        assert_eq!((ir.key(), ir.integ_key()), (&km[..16], &km[16..48]));
        assert_eq!((ri.key(), ri.integ_key()), (&km[48..64], &km[64..96]));
        assert!(EspKey::pair_from_keymat(EncrAlg::AesCbc128, Some(IntegAlg::HmacSha256_128), &km[1..]).is_none());
        let (ir, ri) = EspKey::pair_from_keymat(EncrAlg::AesGcm16_128, None, &km[..40]).unwrap();
        assert_eq!(
            (ir.key(), ir.salt(), ri.key(), ri.salt()),
            (&km[..16], [16, 17, 18, 19], &km[20..36], [36, 37, 38, 39])
        );
    }
}
