//! The types the gateway speaks to the endpoint with: configuration (`EndpointConfig`,
//! `PeerConfig`), randomness (`Rng`), operator `Command`s, and what comes out
//! (`Output`: `Transmit`, datapath commands, `Event`s) plus the status snapshot.

use ipsec_types::{
    DatapathCommand, DhGroup, Dpd, EncrAlg, EspProposal, Identity, IkeProposal, IntegAlg, PrfAlg, SaTimers, Spi,
    Timestamp, TrafficSelector, UdpEncap,
};
use std::net::{IpAddr, SocketAddr};
use zeroize::Zeroizing;

use crate::endpoint::Limits;

/// Source of randomness (SPIs, nonces, DH private keys, IVs). The gateway passes a
/// CSPRNG; tests pass a deterministic one.
pub trait Rng: Send {
    /// Fills `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]);
}

/// Endpoint-wide settings.
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    /// IKE port (500).
    pub ike_port: u16,
    /// NAT-T port (4500): IKE with the non-ESP marker, and ESP-in-UDP.
    pub natt_port: u16,
    /// The configured peers (tunnels).
    pub peers: Vec<PeerConfig>,
    /// Caps on half-open and per-peer state, COOKIE threshold.
    pub limits: Limits,
}

/// One configured tunnel. Two are equal when every setting, the key included, is the
/// same (what `Endpoint::reconfigure` calls an unchanged tunnel).
#[derive(Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// Tunnel name (unique).
    pub name: String,
    /// Our WAN address.
    pub local_addr: IpAddr,
    /// The peer's WAN address.
    pub remote_addr: IpAddr,
    /// Our identity (IDi/IDr we send).
    pub local_id: Identity,
    /// The identity we expect from the peer.
    pub remote_id: Identity,
    /// The pre-shared key.
    pub psk: Zeroizing<Vec<u8>>,
    /// Our protected subnets.
    pub local_ts: Vec<TrafficSelector>,
    /// The peer's protected subnets.
    pub remote_ts: Vec<TrafficSelector>,
    /// One CHILD SA per (local, remote) subnet pair of the same family instead of one
    /// CHILD SA carrying all of them (what policy-based peers expect).
    pub child_sa_per_subnet_pair: bool,
    /// Initiate at start (`true`) or only respond.
    pub initiate: bool,
    /// IKE proposals in preference order.
    pub ike_proposals: Vec<IkeProposal>,
    /// ESP proposals in preference order.
    pub esp_proposals: Vec<EspProposal>,
    /// Always UDP-encapsulate ESP, even without a NAT (RFC 7296 2.23: fake NAT detection).
    pub force_encap: bool,
    /// Announce that we are vpngw ([`VPNGW_VENDOR_ID`] in IKE_SA_INIT, IKEv1 in Main or
    /// Aggressive Mode messages 1 and 2) and, when the peer announces it too, carry ESP
    /// in UDP on the NAT-T port as if a NAT had been detected ([`EncapReason::VpngwPeer`]):
    /// the UDP path has segmentation offload on Linux, raw ESP has not. Both sides decide
    /// alike, each from the Vendor ID it sent and the one it received; a peer that sends
    /// none (every other implementation, or vpngw with `encapsulation = "raw"`) keeps
    /// raw ESP. The Vendor ID is not authenticated when it arrives and decides nothing
    /// but the encapsulation (`docs/security.md`).
    pub announce_vpngw: bool,
    /// Anti-replay window for inbound CHILD_SAs.
    pub replay_window: u32,
    /// When its SAs are rekeyed and expire.
    pub timers: SaTimers,
    /// Dead peer detection.
    pub dpd: Dpd,
    /// IKE fragmentation (RFC 7383): `Some(size)` announces support in IKE_SA_INIT and,
    /// once the peer announced it too, splits encrypted messages whose IP datagram
    /// would exceed `size` octets (IP and UDP headers and the non-ESP marker included)
    /// and reassembles the peer's fragments. `None`: neither announced nor accepted.
    pub fragment_size: Option<u16>,
    /// IKE version the tunnel speaks: IKEv2 (RFC 7296, the default) or IKEv1 (RFC 2409
    /// Main Mode with a pre-shared key and Quick Mode) for peers that speak nothing else.
    pub ike_version: IkeVersion,
    /// IKEv1 only: initiate with Aggressive Mode and accept it as responder (Main Mode is
    /// still accepted). Identities travel in cleartext and an eavesdropper can guess the
    /// pre-shared key offline; `Endpoint::new` warns.
    pub aggressive: bool,
}

/// vpngw's private Vendor ID (RFC 7296 3.12, RFC 2408 3.16): the first 16 octets of
/// SHA-256("vpngw esp-in-udp v1"). It says "this peer is vpngw and carries ESP in UDP
/// with another vpngw" ([`PeerConfig::announce_vpngw`]); a later meaning would take a
/// new version tag, so an old peer sees an unknown Vendor ID and ignores it.
pub const VPNGW_VENDOR_ID: [u8; 16] =
    [0xd3, 0xc7, 0x14, 0x1d, 0x39, 0xa9, 0xc9, 0x39, 0x18, 0x7d, 0x56, 0xfb, 0x36, 0x48, 0x57, 0x61];

/// Why an IKE SA carries ESP in UDP (RFC 3948) instead of raw ESP (IP protocol 50).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EncapReason {
    /// NAT detection (RFC 7296 2.23, RFC 3947) found a NAT between the peers, or the
    /// peer faked one to force encapsulation (which looks the same from here).
    Nat,
    /// Our configuration forces it (`force_encap`, `encapsulation = "udp"`).
    Forced,
    /// Both sides are vpngw and announced it ([`PeerConfig::announce_vpngw`]).
    VpngwPeer,
}

impl EncapReason {
    /// `nat`, `forced` or `vpngw_peer` (the JSON status and the metrics say this).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nat => "nat",
            Self::Forced => "forced",
            Self::VpngwPeer => "vpngw_peer",
        }
    }

    /// The reason ESP goes in UDP, if it does: our own `force_encap` first, then a NAT
    /// seen by NAT detection, then the vpngw pair (both sent [`VPNGW_VENDOR_ID`]).
    pub(crate) fn decide(forced: bool, nat: bool, vpngw_pair: bool) -> Option<Self> {
        if forced {
            Some(Self::Forced)
        } else if nat {
            Some(Self::Nat)
        } else if vpngw_pair {
            Some(Self::VpngwPeer)
        } else {
            None
        }
    }
}

/// The IKE version of a tunnel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum IkeVersion {
    /// IKEv1 (RFC 2409).
    V1,
    /// IKEv2 (RFC 7296).
    #[default]
    V2,
}

impl IkeVersion {
    /// 1 or 2.
    pub fn number(self) -> u8 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
        }
    }
}

/// The default `fragment_size`: the IPv6 minimum MTU, which every IPv6 path carries
/// and nearly every IPv4 path too (strongSwan's default).
pub const DEFAULT_FRAGMENT_SIZE: u16 = 1280;

impl PeerConfig {
    /// The legacy groups (MODP 768/1024/1536, [`DhGroup::is_legacy`]) its IKE or ESP
    /// proposals name, each once, in the order named. They are negotiated only because a
    /// proposal names them; [`Endpoint::new`](crate::Endpoint::new) warns about each.
    pub fn legacy_groups(&self) -> Vec<DhGroup> {
        let named = self.ike_proposals.iter().flat_map(|p| &p.dh).chain(self.esp_proposals.iter().flat_map(|p| &p.dh));
        let mut out: Vec<DhGroup> = Vec::new();
        for g in named {
            if g.is_legacy() && !out.contains(g) {
                out.push(*g);
            }
        }
        out
    }
}

impl std::fmt::Debug for PeerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConfig")
            .field("name", &self.name)
            .field("local_addr", &self.local_addr)
            .field("remote_addr", &self.remote_addr)
            .field("local_id", &self.local_id)
            .field("remote_id", &self.remote_id)
            .field("psk", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Operator commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Bring up the tunnel now (no-op if it is up or connecting).
    Initiate {
        /// Tunnel name.
        peer: String,
    },
    /// Rekey the tunnel's CHILD SAs (`ike == false`) or its IKE SA (`ike == true`) now.
    Rekey {
        /// Tunnel name.
        peer: String,
        /// Rekey the IKE SA instead of the CHILD SAs.
        ike: bool,
    },
    /// Send DELETE for the tunnel's IKE SA and tear it down.
    Terminate {
        /// Tunnel name.
        peer: String,
    },
    /// Shutdown: send DELETE for every IKE SA and tear all down.
    TerminateAll,
}

/// A datagram to send. `data` is the IKE message itself: when `local.port()` is the
/// NAT-T port the gateway prepends the 4-byte non-ESP marker (RFC 3948 section 2.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Source address and port.
    pub local: SocketAddr,
    /// Destination address and port.
    pub remote: SocketAddr,
    /// The IKE message.
    pub data: Vec<u8>,
}

/// A NAT-keepalive (RFC 3948 2.3): `Transmit::data` of exactly this one octet on the
/// NAT-T port is sent as it is, without the non-ESP marker.
pub const NAT_KEEPALIVE: [u8; 1] = [0xff];

/// Something that happened, for logs and the control socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// IKE SA established.
    IkeUp {
        /// Tunnel name.
        peer: String,
    },
    /// IKE SA gone (deleted, failed, or shut down).
    IkeDown {
        /// Tunnel name.
        peer: String,
        /// Why (`Display` gives the text for logs).
        reason: crate::DownReason,
    },
    /// CHILD SA established.
    ChildUp {
        /// Tunnel name.
        peer: String,
        /// Inbound SPI.
        spi_in: Spi,
        /// Outbound SPI.
        spi_out: Spi,
    },
    /// CHILD SA removed.
    ChildDown {
        /// Tunnel name.
        peer: String,
        /// Inbound SPI.
        spi_in: Spi,
    },
}

/// Output drained by the gateway.
#[must_use]
#[derive(Debug)]
pub enum Output {
    /// Send a datagram.
    Transmit(Transmit),
    /// Apply to the datapath, in order.
    Datapath(DatapathCommand),
    /// Report.
    Event(Event),
}

/// Status of one IKE SA, for `vpnctl status`.
#[derive(Clone, Debug)]
pub struct IkeSaStatus {
    /// Tunnel name.
    pub tunnel: String,
    /// The IKE version of this SA.
    pub version: IkeVersion,
    /// `CONNECTING`, `ESTABLISHED`, `DELETING`, ...
    pub state: &'static str,
    /// True if we initiated this IKE SA.
    pub initiator: bool,
    /// Initiator's SPI.
    pub spi_i: u64,
    /// Responder's SPI (0 until known).
    pub spi_r: u64,
    /// Our address and port in use.
    pub local: SocketAddr,
    /// The peer's address and port in use.
    pub remote: SocketAddr,
    /// Our identity.
    pub local_id: Identity,
    /// The peer's identity (as configured until authenticated).
    pub remote_id: Identity,
    /// Negotiated algorithms, once known.
    pub encr: Option<EncrAlg>,
    /// The SK payload's integrity algorithm (AES-CBC only).
    pub integ: Option<IntegAlg>,
    /// PRF.
    pub prf: Option<PrfAlg>,
    /// Key exchange group.
    pub dh: Option<DhGroup>,
    /// Whether a NAT was detected (or encapsulation forced); false when ESP goes in UDP
    /// only because both sides are vpngw (`encap_reason` says why ESP goes in UDP).
    pub nat_detected: bool,
    /// Why ESP goes in UDP; `None`: raw ESP (IP protocol 50), or not decided yet.
    pub encap_reason: Option<EncapReason>,
    /// When the IKE SA was established.
    pub established_at: Option<Timestamp>,
    /// When we last received a valid message from the peer.
    pub last_heard: Option<Timestamp>,
    /// When the next IKE rekey is due.
    pub next_rekey: Option<Timestamp>,
    /// CHILD SAs.
    pub children: Vec<ChildSaStatus>,
}

/// Status of one CHILD SA.
#[derive(Clone, Debug)]
pub struct ChildSaStatus {
    /// The gateway-unique child id (matches `ipsec_types::ChildRef::child_id`).
    pub child_id: u64,
    /// `INSTALLED`, `REKEYING`, ...
    pub state: &'static str,
    /// Inbound SPI (ours).
    pub spi_in: Spi,
    /// Outbound SPI (the peer's).
    pub spi_out: Spi,
    /// Negotiated local selectors.
    pub local_ts: Vec<TrafficSelector>,
    /// Negotiated remote selectors.
    pub remote_ts: Vec<TrafficSelector>,
    /// Cipher.
    pub encr: EncrAlg,
    /// Integrity algorithm (AES-CBC only; `None` with an AEAD).
    pub integ: Option<IntegAlg>,
    /// PFS group, if the CHILD SA was created with a key exchange.
    pub dh: Option<DhGroup>,
    /// UDP encapsulation in use.
    pub encap: Option<UdpEncap>,
    /// When it was installed.
    pub established_at: Timestamp,
    /// When the next rekey of this CHILD SA is due.
    pub next_rekey: Option<Timestamp>,
    /// When it expires hard (deleted if not rekeyed by then).
    pub expires_at: Option<Timestamp>,
}
