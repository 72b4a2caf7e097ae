//! Sans-I/O ESP datapath: tunnel mode, AES-GCM-16 (RFC 4106), ChaCha20-Poly1305 (RFC
//! 7634), AES-CBC (RFC 3602) with HMAC-SHA1-96 (RFC 2404) or HMAC-SHA2 (RFC 4868), anti-replay (RFC 4303
//! section 3.4.3), UDP encapsulation classification (RFC 3948).
//!
//! The crate does no I/O and reads no clock. The gateway owns an [`SaTable`] snapshot
//! (built from `ipsec_types::DatapathCommand`s) and calls [`SaTable::seal`] on packets
//! read from TUN and [`SaTable::open`] on ESP packets from the network, with buffers it
//! owns. Counters are atomics inside the SAs, so a snapshot is shared by `&self`
//! across threads (`SaTable` is `Send + Sync`; put it in an `ArcSwap`).
//!
//! Modules: `tunnel` (seal/open), `table` (snapshot + apply), [`replay`] (anti-replay
//! window), [`cipher`] (the transforms: nonce/AAD/IV/ICV layout), `packet` (inner IP header and
//! UDP-4500 parsing).
#![forbid(unsafe_code)]

pub mod cipher;
mod packet;
pub mod replay;
mod select;
mod table;
mod tunnel;

pub use table::SaTable;

use ipsec_types::{ChildRef, Direction, SaEndpoints, Spi};

/// Why a packet was dropped. Counted, never logged per packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Too short, bad padding, bad next header, not IP inside (or the caller's `out`
    /// buffer too small for the result).
    Malformed,
    /// No inbound SA with this SPI.
    UnknownSpi,
    /// Sequence number already seen or left of the window.
    Replay,
    /// ICV did not verify.
    AuthFailed,
    /// Inner addresses outside the SA's traffic selectors.
    SelectorMismatch,
    /// Outbound: no SA covers the packet (no policy or tunnel not up).
    NoSa,
    /// The SA reached a hard limit (`SaParams::limits` bytes or packets, or sequence
    /// numbers exhausted). Counted per SA.
    Expired,
}

/// Outcome of sealing one inner packet.
#[derive(Debug)]
pub enum Sealed<'o> {
    /// Send `packet` (the ESP packet: SPI onwards; the gateway adds UDP/IP) to `to`.
    Send {
        /// Outer endpoints and encapsulation.
        to: SaEndpoints,
        /// The ESP packet inside the caller's buffer.
        packet: &'o [u8],
    },
    /// Not sent.
    Drop(DropReason),
}

/// Outcome of opening one ESP packet.
#[derive(Debug)]
pub enum Opened<'o> {
    /// Write `packet` (the inner IP packet) to TUN.
    Deliver {
        /// The inner packet inside the caller's buffer.
        packet: &'o [u8],
        /// The SA it came in on.
        spi: Spi,
    },
    /// Not delivered.
    Drop(DropReason),
}

/// Counters of one SA.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SaCounters {
    /// Inner bytes sealed or delivered.
    pub bytes: u64,
    /// Packets sealed or delivered.
    pub packets: u64,
    /// Inbound drops: replay.
    pub replay: u64,
    /// Inbound drops: ICV failure.
    pub auth_failed: u64,
    /// Inbound drops: selector mismatch.
    pub selector_mismatch: u64,
    /// Drops because the SA reached a hard limit (volume or sequence numbers), either
    /// direction.
    pub expired: u64,
    /// Highest sequence number sent (outbound) or received (inbound).
    pub seq: u64,
}

/// Status of one SA in the table. An SA is named by (`child.tunnel`, `spi`,
/// `direction`): two tunnels may have an outbound SA with the same SPI.
#[derive(Clone, Debug)]
pub struct SaStats {
    /// SPI.
    pub spi: Spi,
    /// Direction.
    pub direction: Direction,
    /// Owning CHILD_SA (and its tunnel).
    pub child: ChildRef,
    /// Counters.
    pub counters: SaCounters,
    /// Outbound: still in the seal path (`false` once a newer SA of the same CHILD_SA
    /// or selectors was installed). Always `true` inbound.
    pub active: bool,
}

/// Why [`SaTable::apply`] refused a command (the table is left as it was).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyError {
    /// `InstallInbound` of an SPI that an inbound SA of another tunnel holds: an ESP
    /// packet names its SA by SPI alone, so installing it would take the other tunnel's
    /// traffic (and replay window). `ike` never asks for this; refusing it is defence
    /// in depth.
    InboundSpiInUse {
        /// The SPI.
        spi: Spi,
        /// The tunnel that asked for it.
        tunnel: String,
        /// The tunnel whose inbound SA has it.
        owner: String,
    },
    /// The cipher refused the key (wrong length for the algorithm).
    BadKey {
        /// The tunnel that asked for it.
        tunnel: String,
        /// The SPI.
        spi: Spi,
        /// The direction.
        direction: Direction,
    },
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InboundSpiInUse { spi, tunnel, owner } => {
                write!(f, "tunnel {tunnel:?} asked for inbound SPI {spi}, which tunnel {owner:?} holds; refused")
            }
            Self::BadKey { tunnel, spi, direction } => {
                write!(f, "tunnel {tunnel:?}: the cipher refused the key of the {direction:?} SA {spi}; not installed")
            }
        }
    }
}

impl std::error::Error for ApplyError {}

/// Drops not attributable to one SA.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GlobalDrops {
    /// Malformed packets.
    pub malformed: u64,
    /// Unknown SPI.
    pub unknown_spi: u64,
    /// Outbound packets with no SA.
    pub no_sa: u64,
}

/// Largest number of bytes `seal` adds to an inner packet with any transform (ESP
/// header, IV, padding, trailer, ICV): AES-CBC with HMAC-SHA2-512-256, 8 + 16 + 15 + 2 +
/// 32 bytes. AES-GCM-16 adds at most 8 + 8 + 15 + 2 + 16 = 49 (it is padded to whole
/// blocks, see [`cipher::GCM_ALIGN`]), ChaCha20-Poly1305 8 + 8 + 3 + 2 + 16 = 37.
pub const MAX_OVERHEAD: usize = 8 + cipher::MAX_IV_LEN + (cipher::AES_BLOCK - 1) + 2 + cipher::MAX_ICV_LEN;

/// What arrived on the NAT-T port (RFC 3948 section 2.2).
#[derive(Debug, PartialEq, Eq)]
pub enum Udp4500<'a> {
    /// An IKE message (after the 4-byte non-ESP marker).
    Ike(&'a [u8]),
    /// An ESP packet.
    Esp(&'a [u8]),
    /// A NAT-keepalive (one 0xFF byte).
    Keepalive,
    /// Too short to be anything.
    Malformed,
}

/// Classifies a UDP payload received on port 4500.
/// Four zero bytes (the non-ESP marker) -> `Ike(rest)`; a single 0xFF -> `Keepalive`;
/// otherwise `Esp` if at least SPI and sequence number are there (a zero SPI cannot
/// occur, as those four bytes would be the marker), else `Malformed`.
pub fn classify_udp4500(payload: &[u8]) -> Udp4500<'_> {
    packet::classify(payload)
}
